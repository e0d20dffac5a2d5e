//! Ordinary traceable functions that the tracing tests call and trace.
//!
//! They are `#[inline(never)]` and do their work through `black_box` so each keeps its own patch
//! site and makes real calls (no tail calls), which keeps the expected traces exact. Bodies
//! differ so that LLVM cannot merge two of them into one function.

use core::hint::black_box;

/// Linux's `trace_selftest_dynamic_test_func`.
#[inline(never)]
pub fn dyn_func1() -> u64 {
    black_box(1)
}

/// Linux's `trace_selftest_dynamic_test_func2`.
#[inline(never)]
pub fn dyn_func2() -> u64 {
    black_box(2)
}

/// A function whose site the patching tests enable and disable.
#[inline(never)]
pub fn patch_target_a(x: u64) -> u64 {
    black_box(x) + 1
}

/// A second patchable function.
#[inline(never)]
pub fn patch_target_b(x: u64) -> u64 {
    black_box(x) + 2
}

/// The function whose text the corruption test damages on purpose.
#[inline(never)]
pub fn patch_victim(x: u64) -> u64 {
    black_box(x) + 3
}

/// Computes `a*100 + b*10 + c`; the regs tests read and change its arguments.
#[inline(never)]
pub fn regs_target(a: u64, b: u64, c: u64) -> u64 {
    black_box(a) * 100 + black_box(b) * 10 + black_box(c)
}

/// Same signature as [`regs_target`], different result: where a redirect lands.
#[inline(never)]
pub fn regs_replacement(a: u64, b: u64, c: u64) -> u64 {
    black_box(a) + black_box(b) + black_box(c) + 1000
}

/// The top of the function tracer's known call chain (not matched by `chain_?`).
#[inline(never)]
pub fn chain_root(x: u64) -> u64 {
    black_box(chain_a(black_box(x))) + 1
}

#[inline(never)]
pub fn chain_a(x: u64) -> u64 {
    black_box(chain_b(black_box(x) + 1)) + 1
}

#[inline(never)]
pub fn chain_b(x: u64) -> u64 {
    black_box(chain_c(black_box(x) + 1)) + 1
}

#[inline(never)]
pub fn chain_c(x: u64) -> u64 {
    black_box(x) * 2
}

static DIRECT_TARGET_RUNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The direct-call tests' target: eight arguments, counts its runs.
#[inline(never)]
pub extern "C" fn direct_target(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64 {
    DIRECT_TARGET_RUNS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    direct_target_expected(&[a0, a1, a2, a3, a4, a5, a6, a7])
}

/// What [`direct_target`] returns for `args`.
pub fn direct_target_expected(args: &[u64; 8]) -> u64 {
    args.iter().fold(7, |acc, &v| acc.wrapping_mul(31).wrapping_add(v))
}

/// How many times [`direct_target`] has run.
pub fn direct_target_runs() -> u64 {
    DIRECT_TARGET_RUNS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Recursion for the graph tests: `n` nested calls below the first.
#[inline(never)]
pub fn fgraph_recurse(n: u64) -> u64 {
    if black_box(n) == 0 { 0 } else { black_box(fgraph_recurse(n - 1)) + 1 }
}

/// Ends in a tail call to a traced function (`pcaddu18i $t8; jr $t8` in the medium code model).
#[inline(never)]
pub fn tail_caller(x: u64) -> u64 {
    tail_callee(x.wrapping_add(1))
}

#[inline(never)]
pub fn tail_callee(x: u64) -> u64 {
    black_box(x) * 3
}

/// Takes an (expected) `break 0` exception in its body.
#[inline(never)]
pub fn fgraph_breaks(x: u64) -> u64 {
    let before = crate::irq::expect_break(0);
    // SAFETY: the trap handler skips the expected `break 0`.
    unsafe { core::arch::asm!("break 0") };
    black_box(x) + crate::irq::breaks_seen() - before
}

/// Calls `leaf` and returns its result plus one.
#[inline(never)]
pub fn fgraph_bt_mid(leaf: fn() -> u64) -> u64 {
    black_box(leaf()) + 1
}

/// Damages its own shadow-stack entry (graph tests only), then returns 77.
#[inline(never)]
pub fn fgraph_corrupt_me() -> u64 {
    crate::ftrace::fgraph::corrupt_top_entry_for_test();
    black_box(77)
}

/// Calls of the SMP work functions, per function and per CPU.
pub static SMP_CALLS: [[core::sync::atomic::AtomicU64; arch::boot::MAX_CPUS]; 3] =
    [const { [const { core::sync::atomic::AtomicU64::new(0) }; arch::boot::MAX_CPUS] }; 3];

fn smp_count(f: usize) {
    SMP_CALLS[f][arch::cpu::id() % arch::boot::MAX_CPUS].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// Total calls of SMP work function `f` on all CPUs.
pub fn smp_calls(f: usize) -> u64 {
    SMP_CALLS[f].iter().map(|c| c.load(core::sync::atomic::Ordering::Relaxed)).sum()
}

/// SMP stress work functions: each counts its call, then computes.
#[inline(never)]
pub fn smp_work_a(x: u64) -> u64 {
    smp_count(0);
    black_box(x).wrapping_mul(3) + 1
}

#[inline(never)]
pub fn smp_work_b(x: u64) -> u64 {
    smp_count(1);
    black_box(x).wrapping_mul(5) + 2
}

#[inline(never)]
pub fn smp_work_c(x: u64) -> u64 {
    smp_count(2);
    black_box(x).wrapping_mul(7) + 3
}

/// What [`event_target`] gets a pointer to: a number at 0, a `u32` at 8, a name at 16.
#[repr(C)]
pub struct EventArg {
    pub word: u64,
    pub small: u32,
    pub _pad: u32,
    pub name: [u8; 16],
}

/// The trace-event tests' probe target: a number and a pointer to an [`EventArg`].
#[inline(never)]
pub fn event_target(x: u64, p: &EventArg) -> u64 {
    black_box(x) + black_box(p.small) as u64
}
