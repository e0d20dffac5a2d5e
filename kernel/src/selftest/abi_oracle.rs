//! Suite `abi_oracle`: calls a traced function from assembly with a canary in every argument
//! and callee-saved register, and checks what the function received, what it returned and that
//! every register the psABI says survives a call did survive — in each tracing mode.

use crate::ftrace::{self, FtraceOps, FtraceRegs, OpsFlags};
use crate::{kassert_eq, ktest};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Inputs and outputs of one oracle call (indices in u64 words, used by the asm below).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OracleCtx {
    /// a0-a7 for the call.
    pub args: [u64; 8],
    /// s0-s8, fp, tp, r21 before the call.
    pub saved_in: [u64; 12],
    /// a0 after the call.
    pub ret: u64,
    /// s0-s8, fp, tp, r21 after the call.
    pub saved_out: [u64; 12],
    pub sp_before: u64,
    pub sp_after: u64,
}

const ARGS: usize = 0;
const SAVED_IN: usize = 8 * 8;
const RET: usize = 20 * 8;
const SAVED_OUT: usize = 21 * 8;
const SP_BEFORE: usize = 33 * 8;
const SP_AFTER: usize = 34 * 8;
const _: () = {
    assert!(core::mem::offset_of!(OracleCtx, saved_in) == SAVED_IN);
    assert!(core::mem::offset_of!(OracleCtx, ret) == RET);
    assert!(core::mem::offset_of!(OracleCtx, saved_out) == SAVED_OUT);
    assert!(core::mem::offset_of!(OracleCtx, sp_before) == SP_BEFORE);
    assert!(core::mem::offset_of!(OracleCtx, sp_after) == SP_AFTER);
};

// loongtrace_abi_oracle(ctx: a0, target: a1)
//   Saves its own caller's ra, fp, s0-s8, tp, r21 on the stack; loads s0-s8, fp, tp, r21 and
//   a0-a7 from *ctx; calls target; stores a0, s0-s8, fp, tp, r21 and sp into *ctx; restores
//   everything it saved and returns. Clobbers t0-t8 and a0-a7 like any call.
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_abi_oracle
    .type loongtrace_abi_oracle, @function
loongtrace_abi_oracle:
    addi.d  $sp, $sp, -128
    st.d    $ra, $sp, 0
    st.d    $fp, $sp, 8
    .irp n, 0,1,2,3,4,5,6,7,8
    st.d    $s\n, $sp, 16 + \n * 8
    .endr
    st.d    $tp, $sp, 88
    st.d    $r21, $sp, 96
    st.d    $a0, $sp, 104
    move    $t2, $a0
    move    $t3, $a1
    .irp n, 0,1,2,3,4,5,6,7,8
    ld.d    $s\n, $t2, {saved_in} + \n * 8
    .endr
    ld.d    $fp, $t2, {saved_in} + 72
    ld.d    $tp, $t2, {saved_in} + 80
    ld.d    $r21, $t2, {saved_in} + 88
    st.d    $sp, $t2, {sp_before}
    .irp n, 1,2,3,4,5,6,7
    ld.d    $a\n, $t2, {args} + \n * 8
    .endr
    ld.d    $a0, $t2, {args}
    jirl    $ra, $t3, 0
    ld.d    $t2, $sp, 104
    st.d    $a0, $t2, {ret}
    .irp n, 0,1,2,3,4,5,6,7,8
    st.d    $s\n, $t2, {saved_out} + \n * 8
    .endr
    st.d    $fp, $t2, {saved_out} + 72
    st.d    $tp, $t2, {saved_out} + 80
    st.d    $r21, $t2, {saved_out} + 88
    st.d    $sp, $t2, {sp_after}
    ld.d    $ra, $sp, 0
    ld.d    $fp, $sp, 8
    .irp n, 0,1,2,3,4,5,6,7,8
    ld.d    $s\n, $sp, 16 + \n * 8
    .endr
    ld.d    $tp, $sp, 88
    ld.d    $r21, $sp, 96
    addi.d  $sp, $sp, 128
    jr      $ra
    .size loongtrace_abi_oracle, . - loongtrace_abi_oracle
"#,
    args = const ARGS,
    saved_in = const SAVED_IN,
    ret = const RET,
    saved_out = const SAVED_OUT,
    sp_before = const SP_BEFORE,
    sp_after = const SP_AFTER,
);

unsafe extern "C" {
    fn loongtrace_abi_oracle(ctx: *mut OracleCtx, target: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64);
}

/// What the target received, per CPU (the SMP stress runs the oracle on several CPUs at once).
static RECEIVED: [[AtomicU64; 8]; arch::boot::MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 8] }; arch::boot::MAX_CPUS];

/// The traced function under test: records its arguments and mixes them into its result.
#[inline(never)]
pub extern "C" fn abi_oracle_target(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64 {
    let args = [a0, a1, a2, a3, a4, a5, a6, a7];
    for (slot, v) in RECEIVED[arch::cpu::id() % arch::boot::MAX_CPUS].iter().zip(args) {
        slot.store(v, Relaxed);
    }
    expected_result(&args)
}

fn expected_result(args: &[u64; 8]) -> u64 {
    args.iter().enumerate().fold(0x5eed, |acc, (i, &v)| acc.rotate_left(7) ^ v.wrapping_mul(i as u64 + 3))
}

/// Runs one oracle call and checks every observation. `what` names the mode in messages.
pub fn check(what: &str, target: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64) -> crate::selftest::TestResult {
    let r21: u64;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("move {0}, $r21", out(reg) r21) };
    let mut ctx = OracleCtx::default();
    for i in 0..8 {
        ctx.args[i] = 0xa000_0000_0000_0000 | (i as u64) << 32 | 0xa0a0;
    }
    for i in 0..11 {
        ctx.saved_in[i] = 0x5000_0000_0000_0000 | (i as u64) << 32 | 0x5a5a;
    }
    // r21 keeps its real value: it is reserved for per-CPU data, which interrupts may use.
    ctx.saved_in[11] = r21;
    let received = &RECEIVED[arch::cpu::id() % arch::boot::MAX_CPUS];
    received.iter().for_each(|r| r.store(0, Relaxed));
    // SAFETY: the asm follows the C ABI and restores every callee-saved register it loads.
    unsafe { loongtrace_abi_oracle(&mut ctx, target) };
    let received: [u64; 8] = core::array::from_fn(|i| received[i].load(Relaxed));
    kassert_eq!(received, ctx.args, "{what}: arguments the function saw");
    kassert_eq!(ctx.ret, expected_result(&ctx.args), "{what}: return value");
    kassert_eq!(ctx.saved_out, ctx.saved_in, "{what}: s0-s8, fp, tp, r21 after the call");
    kassert_eq!(ctx.sp_after, ctx.sp_before, "{what}: sp after the call");
    Ok(())
}

extern "C" fn oracle_probe(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}

static ORACLE_OPS: [FtraceOps; 3] = [
    FtraceOps::new(oracle_probe, OpsFlags::empty()),
    FtraceOps::new(oracle_probe, OpsFlags::RECURSION),
    FtraceOps::new(oracle_probe, OpsFlags::RECURSION),
];
static ORACLE_REGS_OPS: FtraceOps = FtraceOps::new(oracle_probe, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));

fn with_ops(ops: &[&'static FtraceOps], what: &str) -> crate::selftest::TestResult {
    let fail = |e: ftrace::FtraceError| crate::selftest::TestError::Fail(alloc::format!("{what}: {e}"));
    let mut result = Ok(());
    for o in ops {
        o.private.store(0, Relaxed);
        if let Err(e) = ftrace::ftrace_set_filter(o, "abi_oracle_target", true).and_then(|_| ftrace::register_ftrace_function(o)) {
            result = Err(fail(e));
        }
    }
    if result.is_ok() {
        result = check(what, abi_oracle_target);
    }
    let calls: alloc::vec::Vec<usize> = ops.iter().map(|o| o.private.load(Relaxed)).collect();
    for o in ops {
        let _ = ftrace::unregister_ftrace_function(o);
        let _ = ftrace::ftrace_reset_filters(o);
    }
    result?;
    kassert_eq!(calls, alloc::vec![1usize; ops.len()], "{what}: callbacks per call");
    Ok(())
}

ktest! {
    fn abi_oracle::site_disabled() {
        check("disabled", abi_oracle_target)
    }
}

ktest! {
    fn abi_oracle::one_ops() {
        with_ops(&[&ORACLE_OPS[0]], "one ops")
    }
}

ktest! {
    fn abi_oracle::three_ops() {
        with_ops(&[&ORACLE_OPS[0], &ORACLE_OPS[1], &ORACLE_OPS[2]], "three ops")
    }
}

ktest! {
    fn abi_oracle::save_regs_ops() {
        with_ops(&[&ORACLE_REGS_OPS], "SAVE_REGS ops")
    }
}

static ORACLE_DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

/// The oracle with `ftrace_stub_direct_tramp` on the target; with `shared` an ordinary ops too,
/// which moves the site from the straight route to ftrace_regs_caller.
fn with_direct(shared: bool, what: &str) -> crate::selftest::TestResult {
    let fail = |e: ftrace::FtraceError| crate::selftest::TestError::Fail(alloc::format!("{what}: {e}"));
    let stub = arch::ftrace::addr::stub_direct_tramp();
    let ip = abi_oracle_target as *const () as u64;
    ftrace::ftrace_set_filter_ip(&ORACLE_DIRECT, ip, false, true).map_err(fail)?;
    let mut r = ftrace::register_ftrace_direct(&ORACLE_DIRECT, stub).map_err(fail);
    if shared && r.is_ok() {
        ORACLE_OPS[1].private.store(0, Relaxed);
        r = ftrace::ftrace_set_filter_ip(&ORACLE_OPS[1], ip, false, true)
            .and_then(|_| ftrace::register_ftrace_function(&ORACLE_OPS[1]))
            .map_err(fail);
    }
    let word = arch::patch::read_insn(ip + 4).unwrap_or(0);
    if r.is_ok() {
        r = check(what, abi_oracle_target);
    }
    let _ = ftrace::unregister_ftrace_function(&ORACLE_OPS[1]);
    let _ = ftrace::ftrace_reset_filters(&ORACLE_OPS[1]);
    let _ = ftrace::unregister_ftrace_direct(&ORACLE_DIRECT, stub);
    let _ = ftrace::ftrace_reset_filters(&ORACLE_DIRECT);
    r?;
    let want = if shared { arch::ftrace::addr::regs_caller() } else { stub };
    kassert_eq!(arch::insn::decode(ip + 4, word), arch::insn::Insn::Bl { target: want }, "{what}: route");
    if shared {
        kassert_eq!(ORACLE_OPS[1].private.load(Relaxed), 1, "{what}: ordinary callback");
    }
    Ok(())
}

ktest! {
    fn abi_oracle::direct_straight() {
        with_direct(false, "direct, straight")
    }
}

ktest! {
    fn abi_oracle::direct_via_regs_caller() {
        with_direct(true, "direct via ftrace_regs_caller")
    }
}

/// The oracle with the function_graph tracer hooking the target's return; with `direct`, a
/// direct trampoline (the stub) on the target as well.
fn with_graph(direct: bool, what: &str) -> crate::selftest::TestResult {
    use crate::ftrace::{graph_tracer, tracer};
    let fail = |e: ftrace::FtraceError| crate::selftest::TestError::Fail(alloc::format!("{what}: {e}"));
    let stub = arch::ftrace::addr::stub_direct_tramp();
    let ip = abi_oracle_target as *const () as u64;
    tracer::reset_buffers();
    let mut r = Ok(());
    if direct {
        r = ftrace::ftrace_set_filter_ip(&ORACLE_DIRECT, ip, false, true)
            .and_then(|_| ftrace::register_ftrace_direct(&ORACLE_DIRECT, stub))
            .map_err(fail);
    }
    if r.is_ok() {
        let cfg = graph_tracer::GraphConfig { ftrace_filter: Some("abi_oracle_target"), ..Default::default() };
        r = graph_tracer::start(&cfg).map_err(fail);
    }
    if r.is_ok() {
        r = check(what, abi_oracle_target);
    }
    let _ = graph_tracer::stop();
    if direct {
        let _ = ftrace::unregister_ftrace_direct(&ORACLE_DIRECT, stub);
        let _ = ftrace::ftrace_reset_filters(&ORACLE_DIRECT);
    }
    r?;
    let c = tracer::collect();
    let kinds: alloc::vec::Vec<(u8, u64)> = c.events.iter().map(|e| (e.kind, e.ip)).collect();
    kassert_eq!(kinds, alloc::vec![(crate::ringbuf::KIND_GRAPH_ENTRY, ip), (crate::ringbuf::KIND_GRAPH_RETURN, ip)], "{what}: graph events");
    Ok(())
}

ktest! {
    fn abi_oracle::graph() {
        with_graph(false, "function_graph")
    }
}

ktest! {
    fn abi_oracle::graph_and_direct() {
        with_graph(true, "function_graph + direct")
    }
}
