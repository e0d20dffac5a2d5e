// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fentry programs on the kernel's test functions bpf_fentry_test1..4 (the names of Linux's
 * selftests' targets). Each checks the arguments it is handed and records the verdict in a
 * global in .bss, which a test reads back through the `fentry_t.bss` map.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 test1_result = 0;
SEC("fentry/bpf_fentry_test1")
int BPF_PROG(test1, int a)
{
	test1_result = a == 1;
	return 0;
}

__u64 test2_result = 0;
SEC("fentry/bpf_fentry_test2")
int BPF_PROG(test2, int a, __u64 b)
{
	test2_result = a == 2 && b == 3;
	return 0;
}

__u64 test3_result = 0;
SEC("fentry/bpf_fentry_test3")
int BPF_PROG(test3, char a, int b, __u64 c, short d, __s64 e, unsigned char f)
{
	test3_result = a == 4 && b == 5 && c == 6 && d == -7 && e == -8 && f == 9;
	return 0;
}

/* LoongArch passes eight arguments in registers: the context has eight words. */
__u64 test4_result = 0;
SEC("fentry/bpf_fentry_test4")
int BPF_PROG(test4, __u64 a, __u64 b, __u64 c, __u64 d, __u64 e, __u64 f, __u64 g, __u64 h)
{
	test4_result = a + b + c + d + e + f + g + h == 36 && h == 8;
	return 0;
}
