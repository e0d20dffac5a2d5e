// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * kprobe and kretprobe programs: their context is the probed CPU's registers (`struct pt_regs`
 * of lt_tracing.h, loongtrace's PtRegs). The kprobe reads all eight argument registers and the
 * probed address; the kretprobe the return value; the third probes an instruction inside a
 * function (`kprobe/FUNC+OFFSET`).
 */
#include "lt_tracing.h"

char LICENSE[] SEC("license") = "GPL";

__u64 kprobe_sum = 0;
__u64 kprobe_arg8 = 0;
__u64 kprobe_ip = 0;
__s64 kretprobe_rc = 0;
__u32 kprobe_offset_hits = 0;

SEC("kprobe/bpf_fentry_test4")
int BPF_KPROBE(handle_kprobe, __u64 a, __u64 b, __u64 c, __u64 d, __u64 e, __u64 f, __u64 g,
	       __u64 h)
{
	kprobe_sum = a + b + c + d + e + f + g + h;
	kprobe_arg8 = h;
	kprobe_ip = PT_REGS_IP(ctx);
	return 0;
}

SEC("kretprobe/bpf_fentry_test4")
int BPF_KRETPROBE(handle_kretprobe, __s64 rc)
{
	kretprobe_rc = rc;
	return 0;
}

SEC("kprobe/bpf_fentry_test1+0x8")
int handle_kprobe_offset(struct pt_regs *ctx)
{
	kprobe_offset_hits++;
	return 0;
}
