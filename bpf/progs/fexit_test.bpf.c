// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fexit programs: the context holds the target's arguments, then its return value (the word
 * after the last argument, as on Linux). Each records whether both were what the test function
 * bpf_fentry_testN was called with and returned.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 test1_result = 0;
SEC("fexit/bpf_fentry_test1")
int BPF_PROG(test1, int a, int ret)
{
	test1_result = a == 1 && ret == 2;
	return 0;
}

__u64 test2_result = 0;
SEC("fexit/bpf_fentry_test2")
int BPF_PROG(test2, int a, __u64 b, int ret)
{
	test2_result = a == 2 && b == 3 && ret == 5;
	return 0;
}

/* The last return value seen, for tests that only want to look at it. */
__s64 last_ret = -1;
SEC("fexit/bpf_fentry_test4")
int BPF_PROG(test4, __u64 a, __u64 b, __u64 c, __u64 d, __u64 e, __u64 f, __u64 g, __u64 h,
	     __s64 ret)
{
	last_ret = ret;
	return 0;
}
