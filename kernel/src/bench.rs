//! `bench=1`: the per-call cost of every tracing mode in guest instructions.
//!
//! Run under `qemu -icount shift=0,sleep=off`, where the stable counter advances once per 10
//! guest instructions; every measurement window is read exactly (to the instruction, see
//! `crate::icount`) and runs with interrupts off, so the same image gives the same numbers on
//! every run and every host. Each row calls a small traced function (`bench_target`) `CALLS` times
//! and subtracts the same loop calling an identical function compiled without patchable NOPs
//! (`bench_target_notrace`). Rows are printed as `BENCH <row> <instructions>` for `tools/ltbench`.

use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, graph_tracer, tracer};
use alloc::vec::Vec;
use crate::icount::{self, READS};
use core::hint::black_box;

/// Calls per measurement: resolution is 10 / CALLS instructions per call.
const CALLS: u64 = 20_000;

/// The traced function of every row.
#[inline(never)]
pub fn bench_target(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5)
}

/// The same function without a patch site: the baseline.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn bench_target_notrace(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5)
}

#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn loop_traced(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(bench_target(black_box(i)));
    }
    acc
}

#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn loop_notrace(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(bench_target_notrace(black_box(i)));
    }
    acc
}

// loongtrace_bench_empty_callback: the empty callback of the ops rows (`jr ra`, one instruction),
// the same cost a Linux ops with an empty callback pays.
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_bench_empty_callback
    .type loongtrace_bench_empty_callback, @function
loongtrace_bench_empty_callback:
    jr      $ra
    .size loongtrace_bench_empty_callback, . - loongtrace_bench_empty_callback
"#
);

// SAFETY: the asm routine returns at once and touches no register or memory, so calling it
// with any arguments is safe. (It never looks behind the references, hence the allow.)
#[allow(improper_ctypes)]
unsafe extern "C" {
    safe fn loongtrace_bench_empty_callback(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs);
}

fn empty_ops(flags: OpsFlags) -> &'static FtraceOps {
    FtraceOps::new_boxed(loongtrace_bench_empty_callback, flags)
}

// One exact reading (see `crate::icount`): ten blocks `rdtime.d; st.d; b next`, each its own
// translation block, aligned so that no block crosses a page.
#[inline(always)]
fn reading() -> [u64; READS] {
    let mut r = [0u64; READS];
    // SAFETY: `rdtime.d` only reads the stable counter; the stores go to `r`, ten words.
    unsafe {
        core::arch::asm!(
            ".p2align 7",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 0",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 8",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 16",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 24",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 32",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 40",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 48",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 56",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 64",
            "b 1f",
            "1:",
            "rdtime.d {t}, $zero",
            "st.d {t}, {buf}, 72",
            "b 1f",
            "1:",
            buf = in(reg) r.as_mut_ptr(),
            t = out(reg) _,
            options(nostack)
        )
    };
    r
}

/// The exact guest instruction count now (call with interrupts off). `None` when the reads do
/// not fit (not running under `-icount shift=0`).
#[inline(always)]
fn now() -> Option<u64> {
    icount::exact_count(&reading())
}

/// Guest instructions `f` takes, with interrupts off, without the cost of the readings
/// themselves. `None` when not running under `-icount shift=0`.
fn instructions<R>(f: impl FnOnce() -> R) -> Option<(u64, R)> {
    arch::cpu::without_irqs(|| {
        let e0 = now();
        let e1 = now();
        let a = now();
        let r = black_box(f());
        let b = now();
        Some((b?.checked_sub(a?)?.checked_sub(e1?.checked_sub(e0?)?)?, r))
    })
}

/// Overhead per call, in tenths of an instruction.
fn overhead_tenths() -> Option<i64> {
    let run = |f: fn(u64) -> u64| instructions(|| f(black_box(CALLS))).map(|(n, _)| n as i64);
    // Warm up (first-execution effects), then measure both loops.
    run(loop_traced)?;
    run(loop_notrace)?;
    let traced = run(loop_traced)?;
    let base = run(loop_notrace)?;
    Some(tenths_per(traced - base, CALLS as i64))
}

/// `n` instructions over `ops` operations, in tenths of an instruction per operation, rounded to
/// nearest (exact counts, so every run rounds the same way).
fn tenths_per(n: i64, ops: i64) -> i64 {
    let scaled = n * 10;
    (scaled + scaled.signum() * ops / 2) / ops
}

fn report(row: &str, tenths: i64) {
    let sign = if tenths < 0 { "-" } else { "" };
    println!("BENCH {row} {sign}{}.{}", tenths.abs() / 10, tenths.abs() % 10);
}

struct Cleanup(Vec<&'static FtraceOps>);

impl Cleanup {
    fn ops(&mut self, flags: OpsFlags, filter: Option<&str>) -> Result<&'static FtraceOps, FtraceError> {
        let o = empty_ops(flags);
        self.0.push(o);
        if let Some(f) = filter {
            ftrace::ftrace_set_filter(o, f, true)?;
        }
        ftrace::register_ftrace_function(o)?;
        Ok(o)
    }
    fn done(self) {
        for o in self.0 {
            let _ = ftrace::unregister_ftrace_function(o);
            // SAFETY: made by new_boxed, unregistered just above, no other reference kept.
            let _ = unsafe { FtraceOps::free(o) };
        }
    }
}

/// Measures one row: `setup` registers what the row needs into `c`.
fn row(name: &str, setup: impl FnOnce(&mut Cleanup) -> Result<(), FtraceError>) {
    let mut c = Cleanup(Vec::new());
    match setup(&mut c).map(|()| overhead_tenths()) {
        Ok(Some(t)) => report(name, t),
        Ok(None) => println!("BENCH-ERROR {name} the counter does not count instructions (not under -icount shift=0?)"),
        Err(e) => println!("BENCH-ERROR {name} {e}"),
    }
    c.done();
}

static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

/// Runs every row and prints the results.
pub fn run() {
    let target = "bench_target";
    println!("BENCH-START calls={CALLS}");
    // Where the bench starts, in guest instructions since reset: it differs from run to run when
    // the console had to wait for the host (see docs/performance.md), the rows do not.
    if let Some(n) = arch::cpu::without_irqs(now) {
        println!("BENCH-INFO started at guest instruction {n}");
    }
    row("nop_site", |_| Ok(()));
    row("ops_1", |c| c.ops(OpsFlags::empty(), Some(target)).map(drop));
    row("ops_1_plus_100_irrelevant", |c| {
        c.ops(OpsFlags::empty(), Some(target))?;
        for _ in 0..100 {
            c.ops(OpsFlags::empty(), Some("dyn_func2"))?;
        }
        Ok(())
    });
    row("ops_10_relevant", |c| (0..10).try_for_each(|_| c.ops(OpsFlags::empty(), Some(target)).map(drop)));
    row("ops_regs", |c| c.ops(OpsFlags::SAVE_REGS, Some(target)).map(drop));
    let stub = arch::ftrace::addr::stub_direct_tramp();
    let direct = |c: &mut Cleanup, shared: bool| -> Result<(), FtraceError> {
        ftrace::ftrace_set_filter(&DIRECT, target, true)?;
        ftrace::register_ftrace_direct(&DIRECT, stub)?;
        if shared {
            c.ops(OpsFlags::empty(), Some(target))?;
        }
        Ok(())
    };
    row("direct_straight", |c| direct(c, false));
    let _ = ftrace::unregister_ftrace_direct(&DIRECT, stub);
    row("direct_via_regs", |c| direct(c, true));
    let _ = ftrace::unregister_ftrace_direct(&DIRECT, stub);
    let _ = ftrace::ftrace_reset_filters(&DIRECT);
    tramp_rows();
    row("function_tracer", |_| {
        tracer::reset_buffers();
        tracer::start(Some(target))
    });
    let _ = tracer::stop();
    row("graph", |_| {
        tracer::reset_buffers();
        graph_tracer::start(&graph_tracer::GraphConfig { ftrace_filter: Some(target), ..Default::default() })
    });
    let _ = graph_tracer::stop();
    tracer::reset_buffers();
    patch_all();
    println!("BENCH-DONE");
}

/// `enable_all` / `disable_all`: instructions per site to patch every traceable site, measured
/// with interrupts off (a timer interrupt inside the window would add its handler's cost, and
/// where it lands depends on everything before).
fn patch_all() {
    let all = empty_ops(OpsFlags::empty());
    let r = instructions(|| ftrace::register_ftrace_function(all));
    let mut enabled = 0i64;
    ftrace::core::for_each_site(|s| enabled += s.state.flags.contains(ftrace::core::SiteFlags::ENABLED) as i64);
    let u = instructions(|| ftrace::unregister_ftrace_function(all));
    match (r, u) {
        (Some((on, Ok(()))), Some((off, Ok(())))) if enabled > 0 => {
            println!("BENCH-INFO enable_all sites={enabled}");
            report("enable_all", tenths_per(on as i64, enabled));
            report("disable_all", tenths_per(off as i64, enabled));
        }
        (r, u) => println!("BENCH-ERROR enable_all {:?} {:?} sites={enabled}", r.map(|x| x.1), u.map(|x| x.1)),
    }
    // SAFETY: made by new_boxed, unregistered above.
    let _ = unsafe { FtraceOps::free(all) };
}

// loongtrace_bench_empty_prog: the empty program of the trampoline rows (`jr ra`).
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_bench_empty_prog
    .type loongtrace_bench_empty_prog, @function
loongtrace_bench_empty_prog:
    jr      $ra
    .size loongtrace_bench_empty_prog, . - loongtrace_bench_empty_prog
"#
);

unsafe extern "C" {
    // SAFETY: returns at once without touching memory; callers ignore its result.
    safe fn loongtrace_bench_empty_prog(ctx: &ftrace::bpf::TraceCtx) -> u64;
}

/// `fentry`, `fexit`, `fexit_regs_route`: a generated trampoline with one empty program on
/// `bench_target` (one argument), called straight from the site, or (with an empty SAVE_REGS ops
/// on the function too) through `ftrace_regs_caller`'s direct return.
fn tramp_rows() {
    use ftrace::bpf::{Attach, Func};
    let ip = bench_target as *const () as u64;
    for (name, fexit, regs) in [("fentry", false, false), ("fexit", true, false), ("fexit_regs_route", true, true)] {
        let f = Func::at(ip, 1);
        let link = if fexit { Attach::fexit(f, loongtrace_bench_empty_prog) } else { Attach::fentry(f, loongtrace_bench_empty_prog) };
        let link = match link {
            Ok(l) => l,
            Err(e) => {
                println!("BENCH-ERROR {name} {e}");
                continue;
            }
        };
        row(name, |c| if regs { c.ops(OpsFlags::SAVE_REGS, Some("bench_target")).map(drop) } else { Ok(()) });
        if let Err(e) = link.detach() {
            println!("BENCH-ERROR {name} detach: {e}");
        }
    }
}
