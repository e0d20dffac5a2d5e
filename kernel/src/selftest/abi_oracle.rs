//! Suite `abi_oracle`: calls a traced function from assembly with a canary in every argument
//! and callee-saved register, and checks what the function received, what it returned (in one
//! register or two) and that every register the psABI says survives a call did survive — in each
//! tracing mode, with polite and with poisoning probes (`selftest::poison`).
//!
//! The modes are the table in [`oracle_modes!`] at the bottom: one line per mode (case name and
//! a [`Mode`] value: how to arm it on a target, disarm it, and what it must have observed), each
//! becoming the case `abi_oracle.<name>`. Every mode runs on every target its `targets` function
//! gives ([`kernel_targets`]: a `u64`, a `u128` and a two-word struct return) once with polite and
//! once with poisoning probes.

use super::poison;
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::selftest::{TestError, TestResult};
use crate::{kassert, kassert_eq, ktest};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Inputs and outputs of one oracle call (indices in u64 words, used by the asm below).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OracleCtx {
    /// a0-a7 for the call.
    pub args: [u64; 8],
    /// s0-s8, fp, tp, r21 before the call.
    pub saved_in: [u64; 12],
    /// a0 and a1 after the call.
    pub ret: [u64; 2],
    /// s0-s8, fp, tp, r21 after the call.
    pub saved_out: [u64; 12],
    pub sp_before: u64,
    pub sp_after: u64,
}

const ARGS: usize = 0;
const SAVED_IN: usize = 8 * 8;
const RET: usize = 20 * 8;
const SAVED_OUT: usize = 22 * 8;
const SP_BEFORE: usize = 34 * 8;
const SP_AFTER: usize = 35 * 8;
const _: () = {
    assert!(core::mem::offset_of!(OracleCtx, saved_in) == SAVED_IN);
    assert!(core::mem::offset_of!(OracleCtx, ret) == RET);
    assert!(core::mem::offset_of!(OracleCtx, saved_out) == SAVED_OUT);
    assert!(core::mem::offset_of!(OracleCtx, sp_before) == SP_BEFORE);
    assert!(core::mem::offset_of!(OracleCtx, sp_after) == SP_AFTER);
};

// loongtrace_abi_oracle(ctx: a0, target: a1)
//   Saves its own caller's ra, fp, s0-s8, tp, r21 on the stack; loads s0-s8, fp, tp, r21 and
//   a0-a7 from *ctx; calls target; stores a0, a1, s0-s8, fp, tp, r21 and sp into *ctx; restores
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
    st.d    $a1, $t2, {ret} + 8
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
    fn loongtrace_abi_oracle(ctx: *mut OracleCtx, target: u64);
}

/// What the target received, per CPU (the SMP stress runs the oracle on several CPUs at once).
static RECEIVED: [[AtomicU64; 8]; arch::boot::MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 8] }; arch::boot::MAX_CPUS];

fn record_args(args: &[u64; 8]) {
    for (slot, &v) in RECEIVED[arch::cpu::id() % arch::boot::MAX_CPUS].iter().zip(args) {
        slot.store(v, Relaxed);
    }
}

/// The two result words every target computes from its arguments (a target returning one
/// register returns the first).
pub fn expected_result(args: &[u64; 8]) -> [u64; 2] {
    let lo = args.iter().enumerate().fold(0x5eed, |acc: u64, (i, &v)| acc.rotate_left(7) ^ v.wrapping_mul(i as u64 + 3));
    let hi = args.iter().rev().fold(0xf00d, |acc: u64, &v| acc.rotate_left(13).wrapping_add(v ^ 0x0123_4567_89ab_cdef));
    [lo, hi]
}

/// A traced function with eight arguments returning one register: records its arguments and
/// mixes them into its result. Modules call it as `lt_abi_oracle_record`.
#[inline(never)]
pub extern "C" fn abi_oracle_target(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64 {
    let args = [a0, a1, a2, a3, a4, a5, a6, a7];
    record_args(&args);
    expected_result(&args)[0]
}

crate::ksyms::export_symbol!(lt_abi_oracle_record, abi_oracle_target);

/// The same returning a `u128` (in a0 = low half, a1 = high half).
#[inline(never)]
#[allow(improper_ctypes_definitions)]
pub extern "C" fn abi_oracle_target_u128(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u128 {
    let args = [a0, a1, a2, a3, a4, a5, a6, a7];
    record_args(&args);
    let [lo, hi] = expected_result(&args);
    (hi as u128) << 64 | lo as u128
}

/// A two-word struct, returned in a0 and a1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OraclePair {
    pub first: u64,
    pub second: u64,
}

/// The same returning a two-word struct (in a0 and a1).
#[inline(never)]
pub extern "C" fn abi_oracle_target_pair(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> OraclePair {
    let args = [a0, a1, a2, a3, a4, a5, a6, a7];
    record_args(&args);
    let [first, second] = expected_result(&args);
    OraclePair { first: core::hint::black_box(first), second }
}

/// A function the oracle calls: eight u64 arguments, its result in a0 (and a1).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// A filter word that names it alone (for kernel functions the last path segment).
    pub name: &'static str,
    /// Its entry address.
    pub addr: u64,
    /// Registers that carry its result: 1 (a0) or 2 (a0 and a1).
    pub words: usize,
}

/// The kernel's oracle targets, run in every mode.
pub fn kernel_targets() -> alloc::vec::Vec<Target> {
    alloc::vec![
        Target { name: "abi_oracle_target", addr: abi_oracle_target as *const () as u64, words: 1 },
        Target { name: "abi_oracle_target_u128", addr: abi_oracle_target_u128 as *const () as u64, words: 2 },
        Target { name: "abi_oracle_target_pair", addr: abi_oracle_target_pair as *const () as u64, words: 2 },
    ]
}

/// Describes a value for messages: names the register it is the poison of.
fn show(v: &[u64]) -> alloc::string::String {
    let mut s = alloc::string::String::from("[");
    for (i, &x) in v.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        match poison::which(x) {
            Some(r) => s += &alloc::format!("{sep}{x:#x} (poison of {r})"),
            None => s += &alloc::format!("{sep}{x:#x}"),
        }
    }
    s + "]"
}

/// The argument canaries of every oracle call.
fn oracle_args() -> [u64; 8] {
    core::array::from_fn(|i| 0xa000_0000_0000_0000 | (i as u64) << 32 | 0xa0a0)
}

/// Runs one oracle call of `f` (which returns in a0) and checks every observation.
pub fn check(what: &str, f: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64) -> TestResult {
    check_target(what, &Target { name: "the function", addr: f as *const () as u64, words: 1 })
}

/// Runs one oracle call of `t` and checks every observation. `what` names the mode in messages.
pub fn check_target(what: &str, t: &Target) -> TestResult {
    let r21: u64;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("move {0}, $r21", out(reg) r21) };
    let mut ctx = OracleCtx { args: oracle_args(), ..Default::default() };
    for i in 0..11 {
        ctx.saved_in[i] = 0x5000_0000_0000_0000 | (i as u64) << 32 | 0x5a5a;
    }
    // r21 keeps its real value: it is reserved for per-CPU data, which interrupts may use.
    ctx.saved_in[11] = r21;
    let received = &RECEIVED[arch::cpu::id() % arch::boot::MAX_CPUS];
    received.iter().for_each(|r| r.store(0, Relaxed));
    // SAFETY: the asm follows the C ABI and restores every callee-saved register it loads;
    // every target takes eight u64 arguments and returns in a0 (and a1).
    unsafe { loongtrace_abi_oracle(&mut ctx, t.addr) };
    let received: [u64; 8] = core::array::from_fn(|i| received[i].load(Relaxed));
    let name = t.name;
    kassert!(received == ctx.args, "{what}, {name}: arguments the function saw {} != {}", show(&received), show(&ctx.args));
    let want = expected_result(&ctx.args);
    let words = t.words.min(2);
    kassert!(
        ctx.ret[..words] == want[..words],
        "{what}, {name}: return value {} != {} (a0{})",
        show(&ctx.ret[..words]),
        show(&want[..words]),
        if words == 2 { ", a1" } else { "" }
    );
    kassert_eq!(ctx.saved_out, ctx.saved_in, "{what}, {name}: s0-s8, fp, tp, r21 after the call");
    kassert_eq!(ctx.sp_after, ctx.sp_before, "{what}, {name}: sp after the call");
    Ok(())
}

/// A tracing mode: how to arm it on a target, disarm it, and what one call must have done.
pub struct Mode {
    /// Names the mode in messages.
    pub name: &'static str,
    /// The functions to run it on ([`kernel_targets`], or e.g. a module's functions).
    pub targets: fn() -> alloc::vec::Vec<Target>,
    /// Sets the mode up on the target (and resets the mode's counters). On error the runner
    /// still calls `disarm`.
    pub arm: fn(&Target) -> TestResult,
    /// Undoes `arm`, also a partial one; ignores what is not there.
    pub disarm: fn(&Target),
    /// Called after one oracle call and `disarm`: checks what the mode's probes observed.
    pub verify: fn(&Target) -> TestResult,
}

fn nothing(_: &Target) -> TestResult {
    Ok(())
}
fn no_disarm(_: &Target) {}

/// Runs `mode` on every target with polite and with poisoning probes.
pub fn run(mode: &Mode) -> TestResult {
    poison::each_flavour(|_| {
        for t in &(mode.targets)() {
            let armed = (mode.arm)(t);
            let called = armed.and_then(|_| check_target(mode.name, t));
            (mode.disarm)(t);
            called?;
            (mode.verify)(t)?;
        }
        Ok(())
    })
}

fn fail(what: &str) -> impl Fn(FtraceError) -> TestError + '_ {
    move |e| TestError::Fail(alloc::format!("{what}: {e}"))
}

/// The callback every oracle ops uses: counts its calls in the ops' `private`.
extern "C" fn oracle_probe(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}
poison::poisoning_fn!(fn loongtrace_oracle_cb(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) => oracle_probe);

/// The oracle's ordinary ops, by role.
static PLAIN: FtraceOps = FtraceOps::new(loongtrace_oracle_cb, OpsFlags::empty());
static GUARDED: [FtraceOps; 2] = [
    FtraceOps::new(loongtrace_oracle_cb, OpsFlags::RECURSION),
    FtraceOps::new(loongtrace_oracle_cb, OpsFlags::RECURSION),
];
static REGS: FtraceOps = FtraceOps::new(loongtrace_oracle_cb, OpsFlags::SAVE_REGS);
static REGS_GUARDED: FtraceOps = FtraceOps::new(loongtrace_oracle_cb, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));

fn register_ops(set: &[&'static FtraceOps], t: &Target) -> TestResult {
    for o in set {
        o.private.store(0, Relaxed);
        ftrace::ftrace_set_filter_ip(o, t.addr, false, true)
            .and_then(|_| ftrace::register_ftrace_function(o))
            .map_err(fail(t.name))?;
    }
    Ok(())
}

fn unregister_ops(set: &[&'static FtraceOps]) {
    for o in set {
        let _ = ftrace::unregister_ftrace_function(o);
        let _ = ftrace::ftrace_reset_filters(o);
    }
}

fn verify_ops(set: &[&'static FtraceOps], t: &Target) -> TestResult {
    let calls: alloc::vec::Vec<usize> = set.iter().map(|o| o.private.load(Relaxed)).collect();
    kassert_eq!(calls, alloc::vec![1usize; set.len()], "{}: callbacks per call", t.name);
    Ok(())
}

/// The word at the target's call slot must be `bl want`.
fn expect_route(t: &Target, want: u64, route: &str) -> TestResult {
    let ip = t.addr;
    let word = arch::patch::read_insn(ip + 4).unwrap_or(0);
    kassert_eq!(arch::insn::decode(ip + 4, word), arch::insn::Insn::Bl { target: want }, "{}: route {route}", t.name);
    Ok(())
}

/// An ops-only mode over a fixed set of ops.
macro_rules! ops_mode {
    ($name:expr, [$($ops:expr),*], $route:expr) => {
        Mode {
            name: $name,
            targets: kernel_targets,
            arm: |t| {
                register_ops(&[$(&$ops),*], t)?;
                let route: fn() -> u64 = $route;
                expect_route(t, route(), $name)
            },
            disarm: |_| unregister_ops(&[$(&$ops),*]),
            verify: |t| verify_ops(&[$(&$ops),*], t),
        }
    };
}

// loongtrace_oracle_tramp: a direct trampoline (v6.19 convention) that counts its entries in
//   loongtrace_oracle_tramp_count[0] (atomically) and resumes the body through
//   `direct_tramp_exit` (poisons t0, t2-t8 when poisoning is on). Clobbers t1-t8.
// loongtrace_oracle_legacy_tramp: an old-convention trampoline (t0 = body, ra = parent) that
//   counts in loongtrace_oracle_tramp_count[1] and jumps to the body through
//   `legacy_tramp_exit` (poisons t1-t8 when poisoning is on).
// Both carry unwind information like the direct_tests trampolines (docs/debugging.md).
core::arch::global_asm!(concat!(
    r#"
    .text
    .global loongtrace_oracle_tramp
    .type loongtrace_oracle_tramp, @function
loongtrace_oracle_tramp:
    .cfi_startproc
    la.pcrel $t2, loongtrace_oracle_tramp_count
    li.d    $t3, 1
    amadd_db.d $t4, $t3, $t2
"#,
    poison::direct_tramp_exit!(),
    r#"
    .cfi_endproc
    .size loongtrace_oracle_tramp, . - loongtrace_oracle_tramp

    .global loongtrace_oracle_legacy_tramp
    .type loongtrace_oracle_legacy_tramp, @function
loongtrace_oracle_legacy_tramp:
    .cfi_startproc
    .cfi_register 1, 12
    .cfi_register 12, 1
    la.pcrel $t2, loongtrace_oracle_tramp_count
    addi.d  $t2, $t2, 8
    li.d    $t3, 1
    amadd_db.d $t4, $t3, $t2
"#,
    poison::legacy_tramp_exit!(),
    r#"
    .cfi_endproc
    .size loongtrace_oracle_legacy_tramp, . - loongtrace_oracle_legacy_tramp
"#
));

#[unsafe(no_mangle)]
static loongtrace_oracle_tramp_count: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

unsafe extern "C" {
    fn loongtrace_oracle_tramp();
    fn loongtrace_oracle_legacy_tramp();
}

fn tramp() -> u64 {
    loongtrace_oracle_tramp as *const () as u64
}
fn legacy_tramp() -> u64 {
    loongtrace_oracle_legacy_tramp as *const () as u64
}

static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());
static LEGACY: FtraceOps = FtraceOps::new_direct(OpsFlags::LEGACY_ABI);

/// Arms a direct ops (`legacy`: the LEGACY_ABI one with the old-convention trampoline) on the
/// target, with the guarded ordinary ops too when `shared` (route: ftrace_regs_caller).
fn arm_direct(t: &Target, legacy: bool, shared: bool) -> TestResult {
    let (ops, tr) = if legacy { (&LEGACY, legacy_tramp()) } else { (&DIRECT, tramp()) };
    loongtrace_oracle_tramp_count.iter().for_each(|c| c.store(0, Relaxed));
    ftrace::ftrace_set_filter_ip(ops, t.addr, false, true)
        .and_then(|_| ftrace::register_ftrace_direct(ops, tr))
        .map_err(fail(t.name))?;
    if shared {
        register_ops(&[&GUARDED[0]], t)?;
        return expect_route(t, arch::ftrace::addr::regs_caller(), "ftrace_regs_caller");
    }
    let straight = if legacy { LEGACY.thunk.load(Relaxed) } else { tr };
    expect_route(t, straight, if legacy { "the legacy adapter" } else { "the trampoline" })
}

fn disarm_direct(_: &Target) {
    unregister_ops(&[&GUARDED[0]]);
    for ops in [&DIRECT, &LEGACY] {
        let _ = ftrace::unregister_ftrace_direct(ops, ops.direct.load(Relaxed));
        let _ = ftrace::ftrace_reset_filters(ops);
    }
}

fn verify_direct(t: &Target, legacy: bool, shared: bool) -> TestResult {
    let counts = [0, 1].map(|i| loongtrace_oracle_tramp_count[i].load(Relaxed));
    let want = if legacy { [0, 1] } else { [1, 0] };
    kassert_eq!(counts, want, "{}: trampoline entries (new, legacy)", t.name);
    if shared {
        verify_ops(&[&GUARDED[0]], t)?;
    }
    Ok(())
}

/// A direct mode: `arm_direct`/`verify_direct` with fixed arguments.
macro_rules! direct_mode {
    ($name:expr, $legacy:expr, $shared:expr) => {
        Mode {
            name: $name,
            targets: kernel_targets,
            arm: |t| arm_direct(t, $legacy, $shared),
            disarm: disarm_direct,
            verify: |t| verify_direct(t, $legacy, $shared),
        }
    };
}

/// Starts the function_graph tracer on the target; with `direct`, the counting trampoline too.
fn arm_graph(t: &Target, direct: bool) -> TestResult {
    use crate::ftrace::{graph_tracer, tracer};
    tracer::reset_buffers();
    if direct {
        arm_direct(t, false, false)?;
    }
    let cfg = graph_tracer::GraphConfig { ftrace_filter: Some(t.name), ..Default::default() };
    graph_tracer::start(&cfg).map_err(fail(t.name))?;
    // The graph tracer is an argument-frame ops: ftrace_caller alone, ftrace_regs_caller with a
    // direct trampoline on the site.
    if direct {
        expect_route(t, arch::ftrace::addr::regs_caller(), "ftrace_regs_caller")
    } else {
        expect_route(t, crate::ftrace::core::fast_caller(), "ftrace_caller")
    }
}

fn disarm_graph(t: &Target) {
    let _ = crate::ftrace::graph_tracer::stop();
    disarm_direct(t);
}

/// The graph tracer saw one entry and one return of the target, with its first result word.
fn verify_graph(t: &Target, direct: bool) -> TestResult {
    let c = crate::ftrace::tracer::collect();
    let ip = t.addr;
    let kinds: alloc::vec::Vec<(u8, u64)> = c.events.iter().map(|e| (e.kind, e.ip)).collect();
    kassert_eq!(kinds, alloc::vec![(crate::ringbuf::KIND_GRAPH_ENTRY, ip), (crate::ringbuf::KIND_GRAPH_RETURN, ip)], "{}: graph events", t.name);
    kassert_eq!(c.events[1].parent, expected_result(&oracle_args())[0], "{}: return value the graph tracer recorded", t.name);
    if direct {
        verify_direct(t, false, false)?;
    }
    Ok(())
}

// kprobes on the oracle targets: at the entry (on ftrace), at the first body instruction (a
// break, stepped out of line), and a kretprobe. One probe per kernel target, by name.
use crate::kprobes::kretprobe::{self, Kretprobe, KretprobeInstance};
use crate::kprobes::{self, Kprobe};
use arch::frame::PtRegs;

static KP_HITS: AtomicU64 = AtomicU64::new(0);
static KRET_SEEN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

extern "C" fn kp_oracle_count(_p: *const Kprobe, _r: *mut PtRegs) {
    KP_HITS.fetch_add(1, Relaxed);
}
poison::poisoning_fn!(fn loongtrace_oracle_kp(p: *const Kprobe, r: *mut PtRegs) => kp_oracle_count);

/// The pre handler: counts, through the poisoning wrapper when poisoning is on.
fn kp_oracle_pre(p: &Kprobe, r: &mut PtRegs) -> bool {
    if poison::on() { loongtrace_oracle_kp(p, r) } else { kp_oracle_count(p, r) }
    false
}

/// The return handler: keeps a0 and a1 and counts.
fn kret_oracle(_ri: &KretprobeInstance, r: &mut PtRegs) {
    KRET_SEEN[0].store(r.regs[4], Relaxed);
    KRET_SEEN[1].store(r.regs[5], Relaxed);
    KRET_SEEN[2].fetch_add(1, Relaxed);
    if poison::on() {
        // Clobbers every caller-saved register on the way back, as a careless handler may.
        loongtrace_oracle_kp(core::ptr::null(), r);
    }
}

const ORACLE_NAMES: [&str; 3] = ["abi_oracle_target", "abi_oracle_target_u128", "abi_oracle_target_pair"];
static KP_ENTRY: [Kprobe; 3] = [
    Kprobe::new(ORACLE_NAMES[0], 0, Some(kp_oracle_pre), None),
    Kprobe::new(ORACLE_NAMES[1], 0, Some(kp_oracle_pre), None),
    Kprobe::new(ORACLE_NAMES[2], 0, Some(kp_oracle_pre), None),
];
static KP_BODY: [Kprobe; 3] = [
    Kprobe::new(ORACLE_NAMES[0], 8, Some(kp_oracle_pre), None),
    Kprobe::new(ORACLE_NAMES[1], 8, Some(kp_oracle_pre), None),
    Kprobe::new(ORACLE_NAMES[2], 8, Some(kp_oracle_pre), None),
];
static KRET: [Kretprobe; 3] = [
    Kretprobe::new(ORACLE_NAMES[0], None, Some(kret_oracle), 0),
    Kretprobe::new(ORACLE_NAMES[1], None, Some(kret_oracle), 0),
    Kretprobe::new(ORACLE_NAMES[2], None, Some(kret_oracle), 0),
];

fn oracle_index(t: &Target) -> Result<usize, TestError> {
    ORACLE_NAMES.iter().position(|n| *n == t.name).ok_or_else(|| TestError::Fail(alloc::format!("no kprobe for {}", t.name)))
}

/// Registers the entry (`body` false: on ftrace) or body (a break) probe of `t`.
fn arm_kprobe(t: &Target, body: bool) -> TestResult {
    let p = if body { &KP_BODY[oracle_index(t)?] } else { &KP_ENTRY[oracle_index(t)?] };
    KP_HITS.store(0, Relaxed);
    kprobes::register_kprobe(p).map_err(|e| TestError::Fail(alloc::format!("{}: {e}", t.name)))?;
    kassert_eq!(p.on_ftrace(), !body, "{}: kprobe on ftrace", t.name);
    Ok(())
}

fn disarm_kprobes(t: &Target) {
    if let Ok(i) = oracle_index(t) {
        let _ = kprobes::unregister_kprobe(&KP_ENTRY[i]);
        let _ = kprobes::unregister_kprobe(&KP_BODY[i]);
        let _ = kretprobe::unregister_kretprobe(&KRET[i]);
    }
}

fn verify_kprobe(t: &Target) -> TestResult {
    kassert_eq!(KP_HITS.load(Relaxed), 1, "{}: pre handler runs", t.name);
    Ok(())
}

fn arm_kretprobe(t: &Target) -> TestResult {
    KRET_SEEN.iter().for_each(|a| a.store(0, Relaxed));
    kretprobe::register_kretprobe(&KRET[oracle_index(t)?]).map_err(|e| TestError::Fail(alloc::format!("{}: {e}", t.name)))
}

/// The return handler ran once and saw the function's result in a0 (and a1).
fn verify_kretprobe(t: &Target) -> TestResult {
    kassert_eq!(KRET_SEEN[2].load(Relaxed), 1, "{}: return handler runs", t.name);
    let seen = [KRET_SEEN[0].load(Relaxed), KRET_SEEN[1].load(Relaxed)];
    let words = t.words.min(2);
    kassert_eq!(seen[..words], expected_result(&oracle_args())[..words], "{}: the result the return handler saw", t.name);
    Ok(())
}

/// Declares the modes: each line `case => Mode` becomes case `abi_oracle.<case>` and an entry of
/// [`MODES`]. Adding a mode is adding a line.
macro_rules! oracle_modes {
    ($($(#[$m:meta])* $case:ident => $mode:expr;)*) => {
        /// Every mode, in the order its case runs.
        #[allow(dead_code)]
        pub static MODES: &[Mode] = &[$($mode),*];
        $(
            ktest! {
                $(#[$m])*
                fn abi_oracle::$case() {
                    run(&$mode)
                }
            }
        )*
    };
}

oracle_modes! {
    /// No tracing: the site is `move t0, ra; nop`.
    site_disabled => Mode { name: "disabled", targets: kernel_targets, arm: nothing, disarm: no_disarm, verify: nothing };
    /// One ops without recursion guard: ftrace_caller calls the callback straight.
    one_ops => ops_mode!("one ops", [PLAIN], crate::ftrace::core::fast_caller);
    /// One recursion-guarded ops: ftrace_caller calls the assist function, which calls the callback.
    one_ops_recursion => ops_mode!("one recursion-guarded ops", [GUARDED[0]], crate::ftrace::core::fast_caller);
    /// Three ops: ftrace_caller calls the list function through the site's list literal.
    three_ops => ops_mode!("three ops", [PLAIN, GUARDED[0], GUARDED[1]], crate::ftrace::core::fast_caller);
    /// One SAVE_REGS ops: ftrace_regs_caller, ftrace_common, the callback straight from ftrace_call.
    save_regs_ops => ops_mode!("SAVE_REGS ops", [REGS], arch::ftrace::addr::regs_caller);
    /// One SAVE_REGS ops with recursion guard: ftrace_call calls the assist function.
    save_regs_recursion => ops_mode!("SAVE_REGS recursion-guarded ops", [REGS_GUARDED], arch::ftrace::addr::regs_caller);
    /// An argument-only and a SAVE_REGS ops: ftrace_regs_caller and the list function.
    mixed_ops => ops_mode!("plain + SAVE_REGS ops", [PLAIN, REGS_GUARDED], arch::ftrace::addr::regs_caller);
    /// A direct trampoline called straight from the site.
    direct_straight => direct_mode!("direct, straight", false, false);
    /// A direct trampoline reached through ftrace_regs_caller (an ordinary ops shares the site).
    direct_via_regs_caller => direct_mode!("direct via ftrace_regs_caller", false, true);
    /// An old-convention trampoline behind the LEGACY_ABI adapter, called straight.
    legacy_straight => direct_mode!("legacy adapter, straight", true, false);
    /// The same through ftrace_regs_caller.
    legacy_via_regs_caller => direct_mode!("legacy adapter via ftrace_regs_caller", true, true);
    /// The function_graph tracer hooks the return (ftrace_graph_func, return_to_handler).
    graph => Mode { name: "function_graph", targets: kernel_targets, arm: |t| arm_graph(t, false), disarm: disarm_graph, verify: |t| verify_graph(t, false) };
    /// A kprobe at the entry: on ftrace (ftrace_regs_caller, the kprobe's ops).
    kprobe_on_ftrace => Mode { name: "kprobe on ftrace", targets: kernel_targets, arm: |t| arm_kprobe(t, false), disarm: disarm_kprobes, verify: verify_kprobe };
    /// A kprobe on the first instruction of the body: a break, the instruction stepped out of line.
    kprobe_break => Mode { name: "break kprobe", targets: kernel_targets, arm: |t| arm_kprobe(t, true), disarm: disarm_kprobes, verify: verify_kprobe };
    /// A kretprobe: the entry on ftrace, the return through kretprobe_trampoline.
    kretprobe => Mode { name: "kretprobe", targets: kernel_targets, arm: arm_kretprobe, disarm: disarm_kprobes, verify: verify_kretprobe };
    /// The function_graph tracer plus a direct trampoline on the same function.
    graph_and_direct => Mode {
        name: "function_graph + direct",
        targets: kernel_targets,
        arm: |t| arm_graph(t, true),
        disarm: disarm_graph,
        verify: |t| verify_graph(t, true),
    };
}
