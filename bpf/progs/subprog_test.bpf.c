// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * BPF-to-BPF calls and global data: two programs share the static, not inlined functions
 * `scale` (which calls `clamp` in turn), each gets its own copy of them when loaded. The
 * globals are in all three sections: `.data` (initialised), `.rodata` (const volatile, set at
 * load time by a loader that wants to, and the bpf_printk format string) and `.bss`.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

const volatile __u64 factor = 3;	/* .rodata */
const volatile __u64 limit = 1000;	/* .rodata */
__u64 calls = 7;			/* .data: counts on from 7 */
__s32 offset_init = -5;			/* .data */
__u64 last_result = 0;			/* .bss */
__u64 exit_result = 0;			/* .bss */

static __noinline __u64 clamp(__u64 v)
{
	return v > limit ? limit : v;
}

static __noinline __u64 scale(__u64 v)
{
	return clamp(v * factor + offset_init);
}

SEC("fentry/bpf_fentry_test1")
int BPF_PROG(entry_scale, int a)
{
	calls++;
	last_result = scale(a);
	bpf_printk("entry_scale: %d -> %llu", a, last_result);
	return 0;
}

SEC("fexit/bpf_fentry_test1")
int BPF_PROG(exit_scale, int a, int ret)
{
	exit_result = scale(ret) + clamp(a);
	return 0;
}
