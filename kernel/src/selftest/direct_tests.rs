//! Suite `ftrace_direct`: direct-call trampolines on both routes, with ordinary ops, modified
//! live, the no-op stub, old-convention trampolines, and bad input.

use super::targets::*;
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::{kassert, kassert_eq, kdiag, ktest};
use arch::insn::{self, Insn};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the probe trampoline saw at its entry (word indices used by the asm).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSeen {
    pub t0: u64,
    pub ra: u64,
    pub sp: u64,
    pub args: [u64; 8],
    pub entries: u64,
}

/// The context of one call made by `loongtrace_direct_call`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CallCtx {
    pub args: [u64; 8],
    /// sp at the call instruction.
    pub sp: u64,
    /// Return address of the call (the parent return address the site saves).
    pub ret_addr: u64,
    pub ret: u64,
}

// loongtrace_direct_probe: a direct trampoline (new convention) that records t0, ra, sp and
//   a0-a7 at entry into `loongtrace_direct_seen`, counts itself, and resumes the traced function.
//   Clobbers t1-t3; with poisoning on (selftest::poison) also poisons t0 and t2-t8.
// loongtrace_tramp_a / loongtrace_tramp_b: count themselves in loongtrace_tramp_counts[0/1] and
//   resume the traced function. Clobber t1-t3 (poisoning: t0, t2-t8).
// loongtrace_legacy_tramp: an old-convention trampoline (expects t0 = body, ra = parent): counts
//   itself in loongtrace_tramp_counts[2] and returns with `jr t0` (poisoning: t1-t8 first).
// loongtrace_direct_call(ctx: a0, target: a1): loads a0-a7 from ctx, records sp and the return
//   address of its call, calls target, stores a0 into ctx.ret. C ABI.
// All carry unwind information (.cfi_*, docs/debugging.md); the legacy trampoline resumes at t0
// with the parent in ra, which it describes as the traced function's t0 (as the new convention
// leaves it), so a debugger finds the parent the same way on both conventions.
core::arch::global_asm!(concat!(
    r#"
    .text
    .global loongtrace_direct_probe
    .type loongtrace_direct_probe, @function
loongtrace_direct_probe:
    .cfi_startproc
    la.pcrel $t2, loongtrace_direct_seen
    st.d    $t0, $t2, 0
    st.d    $ra, $t2, 8
    st.d    $sp, $t2, 16
    .irp n, 0,1,2,3,4,5,6,7
    st.d    $a\n, $t2, 24 + \n * 8
    .endr
    ld.d    $t3, $t2, 88
    addi.d  $t3, $t3, 1
    st.d    $t3, $t2, 88
"#,
    super::poison::direct_tramp_exit!(),
    r#"
    .cfi_endproc
    .size loongtrace_direct_probe, . - loongtrace_direct_probe

    .irp name, a, b
    .global loongtrace_tramp_\name
    .type loongtrace_tramp_\name, @function
loongtrace_tramp_\name:
    .cfi_startproc
    la.pcrel $t2, loongtrace_tramp_counts
    .ifc \name, b
    addi.d  $t2, $t2, 8
    .endif
    ld.d    $t3, $t2, 0
    addi.d  $t3, $t3, 1
    st.d    $t3, $t2, 0
"#,
    super::poison::direct_tramp_exit!(),
    r#"
    .cfi_endproc
    .size loongtrace_tramp_\name, . - loongtrace_tramp_\name
    .endr

    .global loongtrace_legacy_tramp
    .type loongtrace_legacy_tramp, @function
loongtrace_legacy_tramp:
    .cfi_startproc
    .cfi_register 1, 12
    .cfi_register 12, 1
    la.pcrel $t2, loongtrace_tramp_counts
    ld.d    $t3, $t2, 16
    addi.d  $t3, $t3, 1
    st.d    $t3, $t2, 16
"#,
    super::poison::legacy_tramp_exit!(),
    r#"
    .cfi_endproc
    .size loongtrace_legacy_tramp, . - loongtrace_legacy_tramp

    .global loongtrace_direct_call
    .type loongtrace_direct_call, @function
loongtrace_direct_call:
    .cfi_startproc
    addi.d  $sp, $sp, -16
    .cfi_adjust_cfa_offset 16
    st.d    $ra, $sp, 8
    .cfi_rel_offset 1, 8
    st.d    $a0, $sp, 0
    move    $t2, $a0
    move    $t3, $a1
    st.d    $sp, $t2, 64
    la.pcrel $t4, 1f
    st.d    $t4, $t2, 72
    .irp n, 1,2,3,4,5,6,7
    ld.d    $a\n, $t2, \n * 8
    .endr
    ld.d    $a0, $t2, 0
    jirl    $ra, $t3, 0
1:
    ld.d    $t2, $sp, 0
    st.d    $a0, $t2, 80
    ld.d    $ra, $sp, 8
    .cfi_restore 1
    addi.d  $sp, $sp, 16
    .cfi_adjust_cfa_offset -16
    jr      $ra
    .cfi_endproc
    .size loongtrace_direct_call, . - loongtrace_direct_call
"#
));

#[unsafe(no_mangle)]
static mut loongtrace_direct_seen: ProbeSeen = ProbeSeen { t0: 0, ra: 0, sp: 0, args: [0; 8], entries: 0 };
#[unsafe(no_mangle)]
static loongtrace_tramp_counts: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

unsafe extern "C" {
    fn loongtrace_direct_probe();
    fn loongtrace_tramp_a();
    fn loongtrace_tramp_b();
    fn loongtrace_legacy_tramp();
    fn loongtrace_direct_call(ctx: *mut CallCtx, target: u64);
}

pub fn probe_addr() -> u64 {
    loongtrace_direct_probe as *const () as u64
}
pub fn tramp_a() -> u64 {
    loongtrace_tramp_a as *const () as u64
}
pub fn tramp_b() -> u64 {
    loongtrace_tramp_b as *const () as u64
}
fn legacy_tramp() -> u64 {
    loongtrace_legacy_tramp as *const () as u64
}
pub(crate) fn tramp_count(i: usize) -> u64 {
    loongtrace_tramp_counts[i].load(Relaxed)
}
pub(crate) fn reset_counts() {
    loongtrace_tramp_counts.iter().for_each(|c| c.store(0, Relaxed));
}

pub(crate) fn seen() -> ProbeSeen {
    // SAFETY: written only by the probe trampoline on this CPU, read after the call returned.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(loongtrace_direct_seen)) }
}

pub(crate) fn reset_seen() {
    // SAFETY: as above; no call is in flight.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(loongtrace_direct_seen), ProbeSeen::default()) }
}

/// Calls `target` (an 8-argument C function) from assembly with known arguments.
pub fn call8(target: u64, args: [u64; 8]) -> CallCtx {
    let mut ctx = CallCtx { args, ..Default::default() };
    // SAFETY: `target` is an `extern "C" fn(u64 x 8) -> u64`; the asm follows the C ABI.
    unsafe { loongtrace_direct_call(&mut ctx, target) };
    ctx
}

fn target() -> u64 {
    direct_target as *const () as u64
}

fn fail(e: FtraceError) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(alloc::format!("ftrace error: {e}"))
}

static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());
static DIRECT2: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());
static LEGACY: FtraceOps = FtraceOps::new_direct(OpsFlags::LEGACY_ABI);
/// Records the probe's entry count at the moment the ordinary callback runs.
static ORDER: AtomicU64 = AtomicU64::new(u64::MAX);

extern "C" fn ordinary(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
    ORDER.store(seen().entries, Relaxed);
}
super::poison::poisoning_fn!(fn loongtrace_direct_ordinary(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) => ordinary);
static ORDINARY: FtraceOps = FtraceOps::new(loongtrace_direct_ordinary, OpsFlags::RECURSION);

fn cleanup() {
    for (ops, t) in [(&DIRECT, 0), (&DIRECT2, 0), (&LEGACY, 0)] {
        let tramp = if t == 0 { ops.direct.load(Relaxed) } else { t };
        let _ = ftrace::unregister_ftrace_direct(ops, tramp);
        let _ = ftrace::ftrace_reset_filters(ops);
    }
    let _ = ftrace::unregister_ftrace_function(&ORDINARY);
    let _ = ftrace::ftrace_reset_filters(&ORDINARY);
    ORDINARY.private.store(0, Relaxed);
}

fn site_word() -> Insn {
    let ip = target();
    insn::decode(ip + 4, arch::patch::read_insn(ip + 4).unwrap())
}

const ARGS: [u64; 8] = [11, 22, 33, 44, 55, 66, 77, 88];

/// Calls the target through the asm caller and checks what the probe saw.
fn check_probe_call(route: &str) -> crate::selftest::TestResult {
    reset_seen();
    let runs = direct_target_runs();
    let ctx = call8(target(), ARGS);
    let s = seen();
    kassert_eq!(s.entries, 1, "{route}: probe entries");
    kassert_eq!(s.t0, ctx.ret_addr, "{route}: t0 = parent return address");
    kassert_eq!(s.ra, target() + 8, "{route}: ra = function body");
    kassert_eq!(s.sp, ctx.sp, "{route}: sp = caller's sp");
    kassert_eq!(s.args, ARGS, "{route}: argument registers");
    kassert_eq!(direct_target_runs(), runs + 1, "{route}: the function runs exactly once");
    kassert_eq!(ctx.ret, direct_target_expected(&ARGS), "{route}: return value");
    Ok(())
}

ktest! {
    /// Straight from the site and through ftrace_regs_caller, a trampoline sees t0 = parent,
    /// ra = body, the caller's sp and the arguments; an ordinary ops on the same function runs first.
    fn ftrace_direct::probe_sees_the_same_on_both_routes() {
        super::poison::each_flavour(|_| {
            cleanup();
            let r = (|| {
                ftrace::ftrace_set_filter_ip(&DIRECT, target(), false, true).map_err(fail)?;
                ftrace::register_ftrace_direct(&DIRECT, probe_addr()).map_err(fail)?;
                kassert_eq!(site_word(), Insn::Bl { target: probe_addr() }, "straight route");
                check_probe_call("straight")?;
                ftrace::ftrace_set_filter_ip(&ORDINARY, target(), false, true).map_err(fail)?;
                ftrace::register_ftrace_function(&ORDINARY).map_err(fail)?;
                kassert_eq!(site_word(), Insn::Bl { target: arch::ftrace::addr::regs_caller() }, "regs route");
                ORDER.store(u64::MAX, Relaxed);
                check_probe_call("via ftrace_regs_caller")?;
                kassert_eq!(ORDINARY.private.load(Relaxed), 1, "ordinary ops calls");
                kassert_eq!(ORDER.load(Relaxed), 0, "the ordinary callback ran before the trampoline");
                // The ordinary ops leaves: back to the straight route.
                ftrace::unregister_ftrace_function(&ORDINARY).map_err(fail)?;
                kassert_eq!(site_word(), Insn::Bl { target: probe_addr() });
                check_probe_call("straight again")?;
                ftrace::unregister_ftrace_direct(&DIRECT, probe_addr()).map_err(fail)?;
                kassert_eq!(site_word(), Insn::Nop, "unregister restores the site");
                Ok(())
            })();
            cleanup();
            r
        })
    }
}

ktest! {
    /// A second direct trampoline on the same function is refused and nothing changes.
    fn ftrace_direct::second_trampoline_refused() {
        cleanup();
        let r = (|| {
            ftrace::ftrace_set_filter_ip(&DIRECT, target(), false, true).map_err(fail)?;
            ftrace::register_ftrace_direct(&DIRECT, tramp_a()).map_err(fail)?;
            ftrace::ftrace_set_filter(&DIRECT2, "direct_target patch_target_b", true).map_err(fail)?;
            let e = ftrace::register_ftrace_direct(&DIRECT2, tramp_b());
            kdiag!("{}", e.clone().unwrap_err());
            kassert!(matches!(e, Err(FtraceError::DirectBusy(_))), "{e:?}");
            kassert!(!DIRECT2.is_registered());
            kassert_eq!(site_word(), Insn::Bl { target: tramp_a() });
            let b = patch_target_b as *const () as u64;
            kassert_eq!(arch::patch::read_insn(b + 4), Ok(insn::NOP), "no site of the refused ops was patched");
            reset_counts();
            call8(target(), ARGS);
            kassert_eq!((tramp_count(0), tramp_count(1)), (1, 0));
            Ok(())
        })();
        cleanup();
        r
    }
}

fn modify_loop(with_ordinary: bool) -> crate::selftest::TestResult {
    cleanup();
    reset_counts();
    ftrace::ftrace_set_filter_ip(&DIRECT, target(), false, true).map_err(fail)?;
    ftrace::register_ftrace_direct(&DIRECT, tramp_a()).map_err(fail)?;
    if with_ordinary {
        ftrace::ftrace_set_filter_ip(&ORDINARY, target(), false, true).map_err(fail)?;
        ftrace::register_ftrace_function(&ORDINARY).map_err(fail)?;
    }
    const N: u64 = 400;
    let mut at_switch = (0, 0);
    for i in 0..N {
        if i == N / 2 {
            at_switch = (tramp_count(0), tramp_count(1));
            ftrace::modify_ftrace_direct(&DIRECT, tramp_b()).map_err(fail)?;
        }
        let ctx = call8(target(), ARGS);
        kassert_eq!(ctx.ret, direct_target_expected(&ARGS));
    }
    let word = site_word();
    let counts = (tramp_count(0), tramp_count(1));
    cleanup();
    kassert_eq!(counts.0 + counts.1, N, "every call reached a trampoline");
    kassert_eq!(at_switch, (N / 2, 0));
    kassert_eq!(counts, (N / 2, N / 2), "after the change only the new trampoline");
    let want = if with_ordinary { arch::ftrace::addr::regs_caller() } else { tramp_b() };
    kassert_eq!(word, Insn::Bl { target: want });
    Ok(())
}

ktest! {
    /// modify_ftrace_direct while the function is being called: no call is lost.
    fn ftrace_direct::modify_while_calling() {
        super::poison::each_flavour(|_| {
            modify_loop(false)
        })
    }
}

ktest! {
    /// The same with an ordinary ops sharing the function (the site stays on ftrace_regs_caller).
    fn ftrace_direct::modify_shared_with_ops() {
        super::poison::each_flavour(|_| {
            modify_loop(true)
        })
    }
}

ktest! {
    /// ftrace_stub_direct_tramp as the trampoline changes nothing the function computes.
    fn ftrace_direct::stub_trampoline_is_transparent() {
        super::poison::each_flavour(|_| {
            cleanup();
            let stub = arch::ftrace::addr::stub_direct_tramp();
            let r = (|| {
                ftrace::ftrace_set_filter(&DIRECT, "regs_target direct_target", true).map_err(fail)?;
                ftrace::register_ftrace_direct(&DIRECT, stub).map_err(fail)?;
                kassert_eq!(regs_target(1, 2, 3), 123);
                let ctx = call8(target(), ARGS);
                kassert_eq!(ctx.ret, direct_target_expected(&ARGS));
                ftrace::ftrace_set_filter(&ORDINARY, "regs_target", true).map_err(fail)?;
                ftrace::register_ftrace_function(&ORDINARY).map_err(fail)?;
                kassert_eq!(regs_target(4, 5, 6), 456);
                kassert_eq!(ORDINARY.private.load(Relaxed), 1);
                Ok(())
            })();
            cleanup();
            r
        })
    }
}

ktest! {
    /// An old-convention trampoline (`jr t0`) skips the traced function under the new convention
    /// (the failure mode the v6.19 review asked about); with LEGACY_ABI it works on both routes.
    fn ftrace_direct::legacy_trampoline() {
        super::poison::each_flavour(|_| {
            cleanup();
            reset_counts();
            let r = (|| {
                ftrace::ftrace_set_filter_ip(&DIRECT, target(), false, true).map_err(fail)?;
                ftrace::register_ftrace_direct(&DIRECT, legacy_tramp()).map_err(fail)?;
                let runs = direct_target_runs();
                let ctx = call8(target(), ARGS);
                ftrace::unregister_ftrace_direct(&DIRECT, legacy_tramp()).map_err(fail)?;
                kassert_eq!(tramp_count(2), 1);
                kassert_eq!(direct_target_runs(), runs, "without LEGACY_ABI the function is skipped");
                kassert_eq!(ctx.ret, ARGS[0], "the caller gets back its own first argument");
                // With the flag, through the adapter:
                ftrace::ftrace_set_filter_ip(&LEGACY, target(), false, true).map_err(fail)?;
                ftrace::register_ftrace_direct(&LEGACY, legacy_tramp()).map_err(fail)?;
                let straight = matches!(site_word(), Insn::Bl { target } if target == LEGACY.thunk.load(Relaxed));
                kassert!(straight, "the site calls the adapter: {:?}", site_word());
                let ctx = call8(target(), ARGS);
                kassert_eq!(ctx.ret, direct_target_expected(&ARGS));
                kassert_eq!(direct_target_runs(), runs + 1);
                kassert_eq!(tramp_count(2), 2);
                ftrace::ftrace_set_filter_ip(&ORDINARY, target(), false, true).map_err(fail)?;
                ftrace::register_ftrace_function(&ORDINARY).map_err(fail)?;
                let ctx = call8(target(), ARGS);
                kassert_eq!(ctx.ret, direct_target_expected(&ARGS), "legacy via ftrace_regs_caller");
                kassert_eq!(direct_target_runs(), runs + 2);
                kassert_eq!(tramp_count(2), 3);
                Ok(())
            })();
            cleanup();
            r
        })
    }
}

ktest! {
    /// Bad input: each a clear error with nothing changed.
    fn ftrace_direct::bad_input() {
        cleanup();
        ftrace::ftrace_set_filter_ip(&DIRECT, target(), false, true).map_err(fail)?;
        let heap = alloc::boxed::Box::new(0u64);
        let errs = [
            ftrace::register_ftrace_direct(&DIRECT, 0),
            ftrace::register_ftrace_direct(&DIRECT, tramp_a() + 2),
            ftrace::register_ftrace_direct(&DIRECT, &*heap as *const u64 as u64),
            ftrace::modify_ftrace_direct(&DIRECT, tramp_b()),
            ftrace::unregister_ftrace_direct(&DIRECT, tramp_a()),
            ftrace::register_ftrace_direct(&DIRECT2, tramp_a()),
            ftrace::register_ftrace_direct(&ORDINARY, tramp_a()),
        ];
        let nomatch = ftrace::ftrace_set_filter(&DIRECT2, "no_function_is_called_this", true);
        for e in &errs {
            if let Err(e) = e {
                kdiag!("{e}");
            }
        }
        kassert!(matches!(errs[0], Err(FtraceError::BadTrampoline(0))), "{:?}", errs[0]);
        kassert!(matches!(errs[1], Err(FtraceError::BadTrampoline(_))), "{:?}", errs[1]);
        kassert!(matches!(errs[2], Err(FtraceError::BadTrampoline(_))), "{:?}", errs[2]);
        kassert_eq!(errs[3], Err(FtraceError::NotRegistered));
        kassert_eq!(errs[4], Err(FtraceError::NotRegistered));
        kassert_eq!(errs[5], Err(FtraceError::EmptyFilter));
        kassert_eq!(errs[6], Err(FtraceError::WrongKind));
        kassert!(matches!(nomatch, Err(FtraceError::NoMatch(_))), "{nomatch:?}");
        kassert_eq!(site_word(), Insn::Nop);
        cleanup();
        Ok(())
    }
}
