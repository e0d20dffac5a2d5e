// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * module_attach: fentry and fexit programs on a function of the loadable module sample_far
 * (loaded far from the kernel, out of `bl` reach), named `module:function` as libbpf writes a
 * module target. Each records the argument (and the return value) of the last call it saw and
 * counts its calls.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 fentry_hits = 0;
__u64 fentry_arg = 0;
__u64 fexit_hits = 0;
__u64 fexit_arg = 0;
__u64 fexit_ret = 0;

SEC("fentry/sample_far:sample_far_double")
int BPF_PROG(mod_fentry, __u64 x)
{
	fentry_hits++;
	fentry_arg = x;
	return 0;
}

SEC("fexit/sample_far:sample_far_double")
int BPF_PROG(mod_fexit, __u64 x, __u64 ret)
{
	fexit_hits++;
	fexit_arg = x;
	fexit_ret = ret;
	return 0;
}
