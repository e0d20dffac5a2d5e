//! `bench=1`: the per-call cost of every tracing mode in guest instructions.
//!
//! Run under `qemu -icount shift=0`, where the stable counter advances once per 10 guest
//! instructions, so `ticks * 10` counts instructions exactly and the same image gives the same
//! numbers on every run. Each row calls a small traced function (`bench_target`) `CALLS` times
//! and subtracts the same loop calling an identical function compiled without patchable NOPs
//! (`bench_target_notrace`). Rows are printed as `BENCH <row> <instructions>` for `tools/ltbench`.

use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, graph_tracer, tracer};
use alloc::vec::Vec;
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

/// Counter ticks of one call of `f(CALLS)` with interrupts off.
fn ticks_of(f: fn(u64) -> u64) -> u64 {
    arch::cpu::without_irqs(|| {
        let t0 = arch::time::ticks();
        black_box(f(black_box(CALLS)));
        arch::time::ticks() - t0
    })
}

/// Overhead per call, in tenths of an instruction.
fn overhead_tenths() -> i64 {
    // Warm up (first-execution effects), then measure both loops.
    ticks_of(loop_traced);
    ticks_of(loop_notrace);
    let traced = ticks_of(loop_traced) as i64;
    let base = ticks_of(loop_notrace) as i64;
    tenths_per(traced - base, CALLS as i64)
}

/// `ticks` counter ticks (10 instructions each) over `n` operations, in tenths of an instruction
/// per operation, rounded to nearest: each reading is exact to ±1 tick (the counter's phase at
/// the start), which rounding absorbs, so runs agree to the last digit.
fn tenths_per(ticks: i64, n: i64) -> i64 {
    let scaled = ticks * 100;
    (scaled + scaled.signum() * n / 2) / n
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
    match setup(&mut c) {
        Ok(()) => report(name, overhead_tenths()),
        Err(e) => println!("BENCH-ERROR {name} {e}"),
    }
    c.done();
}

static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

/// Runs every row and prints the results.
pub fn run() {
    let target = "bench_target";
    println!("BENCH-START calls={CALLS}");
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

/// `enable_all` / `disable_all`: instructions per site to patch every traceable site.
fn patch_all() {
    let all = empty_ops(OpsFlags::empty());
    let t0 = arch::time::ticks();
    let r = ftrace::register_ftrace_function(all);
    let t1 = arch::time::ticks();
    let mut enabled = 0i64;
    ftrace::core::for_each_site(|s| enabled += s.state.flags.contains(ftrace::core::SiteFlags::ENABLED) as i64);
    let t2 = arch::time::ticks();
    let u = ftrace::unregister_ftrace_function(all);
    let t3 = arch::time::ticks();
    match (r, u) {
        (Ok(()), Ok(())) if enabled > 0 => {
            println!("BENCH-INFO enable_all sites={enabled}");
            report("enable_all", tenths_per((t1 - t0) as i64, enabled));
            report("disable_all", tenths_per((t3 - t2) as i64, enabled));
        }
        (r, u) => println!("BENCH-ERROR enable_all {r:?} {u:?} sites={enabled}"),
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
