/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The contexts loongtrace hands its BPF programs, for clang's `-target bpf` builds.
 *
 * fentry/fexit/fmod_ret: an array of u64 argument words, then (fexit, fmod_ret) the return
 * value, as on Linux: use BPF_PROG from <bpf/bpf_tracing.h>, which does not depend on the
 * architecture.
 *
 * kprobe/kretprobe: `struct pt_regs`, laid out as loongtrace's `PtRegs` (arch/src/frame.rs) and
 * as Linux's LoongArch `struct pt_regs`: 32 GPRs, then orig_a0 and seven CSRs. Debian 12's
 * libbpf 1.1.2 <bpf/bpf_tracing.h> has no LoongArch target, so this header replaces its
 * PT_REGS_* accessors (the BPF_KPROBE/BPF_KRETPROBE macros use them when they are expanded)
 * with LoongArch's: PARM1..PARM8 = a0..a7 (regs[4..11]), RC = a0, RET = ra (regs[1]),
 * SP = regs[3], FP = regs[22], IP = era. The _CORE variants are plain reads: loongtrace has no
 * kernel BTF to relocate against, and the layout above is fixed.
 */
#ifndef LT_TRACING_H
#define LT_TRACING_H

#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct pt_regs {
	unsigned long regs[32];
	unsigned long orig_a0;
	unsigned long era;	/* exception return address: the probed instruction */
	unsigned long badv;
	unsigned long crmd;
	unsigned long prmd;
	unsigned long euen;
	unsigned long ecfg;
	unsigned long estat;
};

#undef PT_REGS_PARM1
#undef PT_REGS_PARM2
#undef PT_REGS_PARM3
#undef PT_REGS_PARM4
#undef PT_REGS_PARM5
#undef PT_REGS_RET
#undef PT_REGS_FP
#undef PT_REGS_RC
#undef PT_REGS_SP
#undef PT_REGS_IP
#undef PT_REGS_PARM1_CORE
#undef PT_REGS_PARM2_CORE
#undef PT_REGS_PARM3_CORE
#undef PT_REGS_PARM4_CORE
#undef PT_REGS_PARM5_CORE
#undef PT_REGS_RET_CORE
#undef PT_REGS_FP_CORE
#undef PT_REGS_RC_CORE
#undef PT_REGS_SP_CORE
#undef PT_REGS_IP_CORE

#define __LT_REGS(x) ((const struct pt_regs *)(x))
#define PT_REGS_PARM1(x) (__LT_REGS(x)->regs[4])
#define PT_REGS_PARM2(x) (__LT_REGS(x)->regs[5])
#define PT_REGS_PARM3(x) (__LT_REGS(x)->regs[6])
#define PT_REGS_PARM4(x) (__LT_REGS(x)->regs[7])
#define PT_REGS_PARM5(x) (__LT_REGS(x)->regs[8])
#define PT_REGS_PARM6(x) (__LT_REGS(x)->regs[9])
#define PT_REGS_PARM7(x) (__LT_REGS(x)->regs[10])
#define PT_REGS_PARM8(x) (__LT_REGS(x)->regs[11])
#define PT_REGS_RET(x) (__LT_REGS(x)->regs[1])
#define PT_REGS_FP(x) (__LT_REGS(x)->regs[22])
#define PT_REGS_RC(x) (__LT_REGS(x)->regs[4])
#define PT_REGS_SP(x) (__LT_REGS(x)->regs[3])
#define PT_REGS_IP(x) (__LT_REGS(x)->era)

#define PT_REGS_PARM1_CORE(x) PT_REGS_PARM1(x)
#define PT_REGS_PARM2_CORE(x) PT_REGS_PARM2(x)
#define PT_REGS_PARM3_CORE(x) PT_REGS_PARM3(x)
#define PT_REGS_PARM4_CORE(x) PT_REGS_PARM4(x)
#define PT_REGS_PARM5_CORE(x) PT_REGS_PARM5(x)
#define PT_REGS_RET_CORE(x) PT_REGS_RET(x)
#define PT_REGS_FP_CORE(x) PT_REGS_FP(x)
#define PT_REGS_RC_CORE(x) PT_REGS_RC(x)
#define PT_REGS_SP_CORE(x) PT_REGS_SP(x)
#define PT_REGS_IP_CORE(x) PT_REGS_IP(x)

/* BPF_KPROBE of libbpf 1.1.2 stops at five arguments; LoongArch passes eight in registers. */
#undef ___bpf_kprobe_args
#define ___bpf_kprobe_args6(x, args...) ___bpf_kprobe_args5(args), (void *)PT_REGS_PARM6(ctx)
#define ___bpf_kprobe_args7(x, args...) ___bpf_kprobe_args6(args), (void *)PT_REGS_PARM7(ctx)
#define ___bpf_kprobe_args8(x, args...) ___bpf_kprobe_args7(args), (void *)PT_REGS_PARM8(ctx)
#define ___bpf_kprobe_args(args...) ___bpf_apply(___bpf_kprobe_args, ___bpf_narg(args))(args)

#endif /* LT_TRACING_H */
