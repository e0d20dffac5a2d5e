// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * test_overhead and `make bench`: an empty program of every attach kind on bpf_overhead_test,
 * so that what a call costs with one attached is the cost of attaching itself.
 */
#include "lt_tracing.h"

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/bpf_overhead_test")
int BPF_PROG(prog_fentry)
{
	return 0;
}

SEC("fexit/bpf_overhead_test")
int BPF_PROG(prog_fexit)
{
	return 0;
}

SEC("fmod_ret/bpf_overhead_test")
int BPF_PROG(prog_fmod_ret)
{
	return 0;
}

SEC("kprobe/bpf_overhead_test")
int prog_kprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("kretprobe/bpf_overhead_test")
int prog_kretprobe(struct pt_regs *ctx)
{
	return 0;
}
