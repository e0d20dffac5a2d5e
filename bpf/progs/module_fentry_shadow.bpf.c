// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * module_fentry_shadow: sample_far defines a function with a kernel function's name
 * (bpf_fentry_test1). A program for `sample_far:bpf_fentry_test1` must attach to the module's,
 * and one for `bpf_fentry_test1` to the kernel's: each sees only its own function's calls.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 module_hits = 0;
__s64 module_ret = 0;
__u64 kernel_hits = 0;
__s64 kernel_ret = 0;

SEC("fexit/sample_far:bpf_fentry_test1")
int BPF_PROG(in_module, int a, int ret)
{
	module_hits++;
	module_ret = ret;
	return 0;
}

SEC("fexit/bpf_fentry_test1")
int BPF_PROG(in_kernel, int a, int ret)
{
	kernel_hits++;
	kernel_ret = ret;
	return 0;
}
