// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fexit_stress: as many fexit programs on one function as a trampoline takes (38, Linux's
 * BPF_MAX_TRAMP_LINKS). Each counts the calls it saw with the right argument and return value;
 * a test attaches them all, calls bpf_fentry_test1(1) and expects every one to have counted.
 * trampoline_count uses them too: a 39th program on the function is refused.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 fexit_hits = 0;
__u64 fexit_bad = 0;

#define P(n)                                                  \
	SEC("fexit/bpf_fentry_test1")                         \
	int BPF_PROG(fexit_##n, int a, int ret)               \
	{                                                     \
		if (a == 1 && ret == 2)                        \
			__sync_fetch_and_add(&fexit_hits, 1);  \
		else                                           \
			__sync_fetch_and_add(&fexit_bad, 1);   \
		return 0;                                      \
	}

P(0)
P(1)
P(2)
P(3)
P(4)
P(5)
P(6)
P(7)
P(8)
P(9)
P(10)
P(11)
P(12)
P(13)
P(14)
P(15)
P(16)
P(17)
P(18)
P(19)
P(20)
P(21)
P(22)
P(23)
P(24)
P(25)
P(26)
P(27)
P(28)
P(29)
P(30)
P(31)
P(32)
P(33)
P(34)
P(35)
P(36)
P(37)
