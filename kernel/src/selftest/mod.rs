//! The in-kernel self-test harness: `ktest!` cases collected from the whole kernel, run in a
//! fixed order, reported over serial as KTAP version 1.
//!
//! A case returns `Ok(())`, fails with [`kassert!`]/[`kassert_eq!`] or [`kfail!`], or skips with
//! [`kskip!`]. A panic or an unexpected exception inside a case is caught: the case is reported
//! `not ok` with the message and a backtrace as diagnostics, and the run continues. After every
//! case the harness runs the isolation checks the subsystems declare (e.g. "every ftrace site is
//! disabled again") and fails the case if one does not hold.

use alloc::string::String;
use alloc::vec::Vec;
use arch::frame::PtRegs;
use arch::jump::JumpContext;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

pub(crate) mod abi_oracle;
mod boot_tests;
mod bpf_core_tests;
mod bpf_selftests;
mod bpf_tests;
pub mod direct_tests;
mod fail_demo;
mod fgraph_tests;
mod ftrace_tests;
mod insn_tests;
mod kprobes_tests;
mod module_tests;
pub mod poison;
mod removal_tests;
mod samples_tests;
mod smp_tests;
mod events_tests;
mod tracefs_tests;
mod tracepoint_tests;
pub mod targets;

/// How a case ended other than passing.
#[derive(Debug)]
pub enum TestError {
    Fail(String),
    Skip(String),
}

pub type TestResult = Result<(), TestError>;

/// One registered case (placed in the `.ktest` section by [`ktest!`]).
#[repr(C)]
pub struct KTest {
    pub suite: &'static str,
    pub name: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub func: fn() -> TestResult,
}

/// Declares a self-test: `ktest! { fn suite::case() { ...; Ok(()) } }`.
#[macro_export]
macro_rules! ktest {
    ($(#[$m:meta])* fn $suite:ident :: $name:ident () $body:block) => {
        const _: () = {
            $(#[$m])*
            fn $name() -> $crate::selftest::TestResult $body
            #[used]
            #[unsafe(link_section = ".ktest")]
            static CASE: $crate::selftest::KTest = $crate::selftest::KTest {
                suite: stringify!($suite),
                name: stringify!($name),
                file: file!(),
                line: line!(),
                func: $name,
            };
        };
    };
}

/// Fails the current case unless `cond` holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => { $crate::kassert!($cond, "{}", stringify!($cond)) };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::selftest::TestError::Fail(alloc::format!(
                "{}:{}: assertion failed: {}", file!(), line!(), alloc::format!($($fmt)+))));
        }
    };
}

/// Fails the current case unless `a == b`.
#[macro_export]
macro_rules! kassert_eq {
    ($a:expr, $b:expr) => { $crate::kassert_eq!($a, $b, "") };
    ($a:expr, $b:expr, $($fmt:tt)*) => {
        match (&$a, &$b) {
            (a, b) => if *a != *b {
                return Err($crate::selftest::TestError::Fail(alloc::format!(
                    "{}:{}: {} == {} failed: left {:?}, right {:?} {}", file!(), line!(),
                    stringify!($a), stringify!($b), a, b, alloc::format!($($fmt)*))));
            }
        }
    };
}

/// Fails the current case with a message.
#[macro_export]
macro_rules! kfail {
    ($($fmt:tt)+) => {
        return Err($crate::selftest::TestError::Fail(alloc::format!(
            "{}:{}: {}", file!(), line!(), alloc::format!($($fmt)+))))
    };
}

/// Skips the current case with a reason.
#[macro_export]
macro_rules! kskip {
    ($($fmt:tt)+) => { return Err($crate::selftest::TestError::Skip(alloc::format!($($fmt)+))) };
}

/// Prints a KTAP diagnostic line for the running case.
#[macro_export]
macro_rules! kdiag {
    ($($fmt:tt)+) => { $crate::println!("    # {}", format_args!($($fmt)+)) };
}

/// Suites in the order they run; others follow alphabetically.
const SUITE_ORDER: &[&str] = &[
    "boot", "insn", "ftrace_patch", "ftrace_ops", "ftrace_regs", "abi_oracle", "function_tracer",
    "ftrace_direct", "samples", "fgraph", "kprobes", "modules", "tracefs", "smp", "fail_demo",
];

/// A check run after every case; returns a description of what the case left behind.
pub type IsolationCheck = fn() -> Result<(), String>;

/// The checks run after every case, asked from each subsystem that keeps state a case could
/// leave behind.
fn isolation_checks() -> impl Iterator<Item = &'static (&'static str, IsolationCheck)> {
    crate::ftrace::ISOLATION_CHECKS.iter().chain(crate::ftrace::bpf::ISOLATION_CHECKS).chain(crate::kprobes::ISOLATION_CHECKS).chain(crate::bpfrt::ISOLATION_CHECKS).chain(crate::cpu::ISOLATION_CHECKS)
}

/// After a case was abandoned by a panic or an exception, each subsystem puts itself back in
/// order (locks the case held, state it left half-changed).
fn recover_after_abort() {
    crate::ftrace::recover_after_abort();
    // After the core's: it may have unregistered the trampolines' ops.
    crate::ftrace::bpf::recover_after_abort();
    crate::kprobes::kretprobe::recover_after_abort();
    crate::bpfrt::link::recover_after_abort();
    crate::bpfrt::unload_all();
    poison::reset();
}

unsafe extern "C" {
    static __start_ktest: u8;
    static __stop_ktest: u8;
}

/// Every registered case, in run order.
pub fn all_cases() -> Vec<&'static KTest> {
    // SAFETY: the linker script brackets the `.ktest` section, which holds only `KTest` statics
    // emitted by `ktest!`, each 8-byte aligned like the section.
    let cases = unsafe {
        let start = core::ptr::addr_of!(__start_ktest) as *const KTest;
        let n = (core::ptr::addr_of!(__stop_ktest) as usize - start as usize) / core::mem::size_of::<KTest>();
        core::slice::from_raw_parts(start, n)
    };
    let mut v: Vec<&KTest> = cases.iter().collect();
    let rank = |s: &str| SUITE_ORDER.iter().position(|&x| x == s).unwrap_or(SUITE_ORDER.len());
    v.sort_by(|a, b| (rank(a.suite), a.suite, a.file, a.line).cmp(&(rank(b.suite), b.suite, b.file, b.line)));
    v
}

/// Which cases to run: the `tests=` selection, and whether the `fail_demo` suite may run.
pub struct Selection<'a> {
    pub tests: crate::cmdline::Tests<'a>,
    pub fail_demo: bool,
}

impl Selection<'_> {
    fn wants(&self, t: &KTest) -> bool {
        (t.suite != "fail_demo" || self.fail_demo) && self.tests.selects(t.suite, t.name)
    }

    /// The selected cases, in run order. Prints the `suites:` line the host names when nothing
    /// was selected, and warns about each glob that selects nothing.
    fn cases(&self) -> Vec<&'static KTest> {
        let all = all_cases();
        let mut suites: Vec<&str> = all.iter().map(|t| t.suite).collect();
        suites.dedup();
        println!("# loongtrace: suites: {}", suites.join(" "));
        let cases: Vec<_> = all.into_iter().filter(|t| self.wants(t)).collect();
        for g in self.tests.globs() {
            if !cases.iter().any(|t| crate::cmdline::Tests::glob_selects(g, t.suite, t.name)) {
                log::warn!("command line: tests= glob `{g}` selects no case");
            }
        }
        cases
    }
}

/// Prints the selected cases (`# loongtrace: case <suite>.<case>`) and an empty KTAP run, for
/// hosts that want the list without running the cases (`list_tests=1`).
pub fn list(sel: &Selection) {
    for t in sel.cases() {
        println!("# loongtrace: case {}.{}", t.suite, t.name);
    }
    println!("KTAP version 1");
    println!("1..0");
    println!("# loongtrace: tests done: 0 passed, 0 failed, 0 skipped");
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The recovery point of the case running on `RUNNER_CPU` (null when none).
static RECOVERY: AtomicPtr<JumpContext> = AtomicPtr::new(core::ptr::null_mut());
static RUNNER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
const JUMP_PANIC: u64 = 1;
const JUMP_EXCEPTION: u64 = 2;

struct CaseCall {
    func: fn() -> TestResult,
    result: Option<TestResult>,
}

extern "C" fn run_case(arg: *mut u8) {
    // SAFETY: `arg` is the `CaseCall` that `run_one` passed to `call_recoverable`.
    let call = unsafe { &mut *(arg as *mut CaseCall) };
    call.result = Some((call.func)());
}

fn run_one(t: &KTest) -> TestResult {
    let mut ctx = JumpContext::default();
    let mut call = CaseCall { func: t.func, result: None };
    let irq = arch::cpu::irq_enabled();
    RUNNER_CPU.store(arch::cpu::id(), Ordering::Relaxed);
    RECOVERY.store(&mut ctx, Ordering::Release);
    // SAFETY: `ctx` and `call` outlive the call; if the case is abandoned, its frames hold no
    // values whose drop matters for the rest of the run (leaked allocations at worst).
    let how = unsafe { arch::jump::call_recoverable(&mut ctx, run_case, &mut call as *mut CaseCall as *mut u8) };
    RECOVERY.store(core::ptr::null_mut(), Ordering::Release);
    arch::cpu::irq_restore(irq);
    let mut result = match how {
        0 => call.result.unwrap_or_else(|| Err(TestError::Fail("case did not report".into()))),
        JUMP_PANIC => Err(TestError::Fail("panicked (see above)".into())),
        _ => Err(TestError::Fail("unexpected exception (see above)".into())),
    };
    if how != 0 {
        recover_after_abort();
    }
    for (name, check) in isolation_checks() {
        if let Err(e) = check() {
            kdiag!("isolation check '{name}' failed after the case: {e}");
            if result.is_ok() {
                result = Err(TestError::Fail(alloc::format!("left state behind: {e}")));
            }
        }
    }
    result
}

/// Runs the selected cases, printing KTAP; returns the totals.
pub fn run(sel: &Selection) -> Summary {
    let cases = sel.cases();
    let mut suites: Vec<(&str, Vec<&KTest>)> = Vec::new();
    for t in cases {
        match suites.last_mut() {
            Some((s, v)) if *s == t.suite => v.push(t),
            _ => suites.push((t.suite, alloc::vec![t])),
        }
    }
    let mut sum = Summary::default();
    println!("KTAP version 1");
    println!("1..{}", suites.len());
    for (i, (suite, cases)) in suites.iter().enumerate() {
        println!("    KTAP version 1");
        println!("    # Subtest: {suite}");
        println!("    1..{}", cases.len());
        let mut suite_ok = true;
        for (j, t) in cases.iter().enumerate() {
            let t0 = arch::time::ticks();
            let r = run_one(t);
            let us = crate::time::ticks_to_us(arch::time::ticks() - t0);
            match r {
                Ok(()) => {
                    sum.passed += 1;
                    println!("    ok {} {} # {}us", j + 1, t.name, us);
                }
                Err(TestError::Skip(why)) => {
                    sum.skipped += 1;
                    println!("    ok {} {} # SKIP {}", j + 1, t.name, why);
                }
                Err(TestError::Fail(why)) => {
                    sum.failed += 1;
                    suite_ok = false;
                    for line in why.lines() {
                        println!("    # {line}");
                    }
                    println!("    not ok {} {}", j + 1, t.name);
                }
            }
        }
        println!("{} {} {}", if suite_ok { "ok" } else { "not ok" }, i + 1, suite);
    }
    println!("# loongtrace: tests done: {} passed, {} failed, {} skipped", sum.passed, sum.failed, sum.skipped);
    sum
}

/// The recovery point of the case running on this CPU, if the failure happened at trap depth
/// `depth` (0 for a panic in normal context, 1 inside the handler of an exception taken there).
fn recovery_for_this_cpu(depth: u32) -> Option<*mut JumpContext> {
    let ctx = RECOVERY.load(Ordering::Acquire);
    let here = RUNNER_CPU.load(Ordering::Relaxed) == arch::cpu::id() && arch::trap::depth() == depth as usize;
    (!ctx.is_null() && here).then_some(ctx)
}

/// Called by the panic handler: a panic inside a case fails that case and resumes the harness.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn on_panic(info: &core::panic::PanicInfo) {
    let Some(ctx) = recovery_for_this_cpu(0) else { return };
    // Recover at most once per case: a panic while reporting goes to the fatal path.
    RECOVERY.store(core::ptr::null_mut(), Ordering::Release);
    let loc = info.location();
    println!(
        "    # panicked at {}:{}: {}",
        loc.map_or("?", |l| l.file()),
        loc.map_or(0, |l| l.line()),
        info.message()
    );
    println!("    # backtrace:");
    crate::ksyms::print_backtrace("    #   ", None, arch::cpu::frame_pointer());
    // SAFETY: `ctx` belongs to the `call_recoverable` in `run_one`, still running on this CPU
    // (checked above); the panic handler runs in normal mode.
    unsafe { arch::jump::jump_back(ctx, JUMP_PANIC) }
}

/// Called for an unexpected exception: inside a case, reports it and arranges for `ertn` to
/// return into the harness. Returns whether it did.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn on_exception(frame: &mut PtRegs) -> bool {
    let Some(ctx) = recovery_for_this_cpu(1) else { return false };
    RECOVERY.store(core::ptr::null_mut(), Ordering::Release);
    println!("    # unexpected exception in the case:");
    crate::panic::print_exception(frame, "    #   ");
    frame.era = arch::jump::jump_back_entry();
    frame.regs[4] = ctx as u64;
    frame.regs[5] = JUMP_EXCEPTION;
    true
}
