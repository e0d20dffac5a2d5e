//! Suite `smp`: all CPUs up, tracing on every CPU while CPU 0 reconfigures it thousands of
//! times, safe removal, and the traced timer interrupt.
//!
//! Accounting (see `Item`): counters are read with the workers paused between two loop
//! iterations. Between the reading right after an ops' `register` returned and the one right
//! before its `unregister`, callbacks must equal calls exactly; over the whole period they may
//! also include calls made while the switch ran, and none may happen while it is unregistered.

use super::abi_oracle;
use super::targets::*;
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, fgraph, tracer};
use crate::{kassert, kassert_eq, kdiag, kskip, ktest};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

fn fail(e: FtraceError) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(alloc::format!("ftrace error: {e}"))
}

fn expected_cpus() -> usize {
    arch::fw_cfg::cpu_count().unwrap_or(1)
}

ktest! {
    /// Every CPU QEMU was given came up (under QEMU 7.2 they all enter `_start` at once).
    fn smp::all_cpus_up() {
        let want = expected_cpus();
        kdiag!("{} of {want} CPUs online (mask {:#x})", crate::smp::online(), crate::smp::online_mask());
        kassert_eq!(crate::smp::online(), want);
        kassert_eq!(crate::cpu::CPUS_UP.load(Relaxed), want);
        if want < 2 {
            kskip!("only one CPU; run with -smp 4 (make test does)");
        }
        let t0 = arch::time::ticks();
        while (0..want).any(|cpu| crate::irq::ticks(cpu) == 0) && arch::time::ticks() - t0 < crate::time::counter_hz() / 5 {
            core::hint::spin_loop();
        }
        for cpu in 0..want {
            kassert!(crate::irq::ticks(cpu) > 0, "cpu{cpu} has no timer ticks within 200 ms");
        }
        Ok(())
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
/// Asks the workers to wait at the top of their loop (no call in flight) while CPU 0 reads counters.
static PAUSE: AtomicU64 = AtomicU64::new(0);
/// The pause generation each worker last acknowledged.
static PAUSED: [AtomicU64; arch::boot::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::boot::MAX_CPUS];
static ITERATIONS: [AtomicU64; arch::boot::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::boot::MAX_CPUS];
static ORACLE_FAILURES: AtomicU64 = AtomicU64::new(0);
static BAD_RESULTS: AtomicU64 = AtomicU64::new(0);

/// The worker loop of CPUs 1..n.
fn worker(cpu: usize) {
    let mut i = 0u64;
    while !STOP.load(Acquire) {
        let pgen = PAUSE.load(Acquire);
        if pgen & 1 == 1 {
            PAUSED[cpu].store(pgen, Release);
            while PAUSE.load(Acquire) == pgen && !STOP.load(Acquire) {
                core::hint::spin_loop();
            }
        }
        let ok = smp_work_a(i) == i.wrapping_mul(3) + 1 && smp_work_b(i) == i.wrapping_mul(5) + 2 && smp_work_c(i) == i.wrapping_mul(7) + 3;
        if !ok {
            BAD_RESULTS.fetch_add(1, Relaxed);
        }
        if i % 512 == 0 && abi_oracle::check_target("smp worker", &abi_oracle::kernel_targets()[(i / 512 % 3) as usize]).is_err() {
            ORACLE_FAILURES.fetch_add(1, Relaxed);
        }
        i += 1;
        ITERATIONS[cpu].store(i, Relaxed);
    }
}

/// Runs `f` while every worker waits between two loop iterations, so no call is in flight.
fn paused<R>(f: impl FnOnce() -> R) -> R {
    // Odd generation: pause requested; each worker acknowledges with that generation.
    let pgen = PAUSE.fetch_add(1, AcqRel) + 1;
    for cpu in 1..crate::smp::online() {
        while crate::smp::work_running(cpu) && PAUSED[cpu].load(Acquire) != pgen {
            core::hint::spin_loop();
        }
    }
    let r = f();
    PAUSE.fetch_add(1, AcqRel);
    r
}

fn start_workers() -> usize {
    STOP.store(false, Release);
    let n = crate::smp::online();
    (1..n).filter(|&cpu| crate::smp::run_on(cpu, worker)).count()
}

fn stop_workers() {
    STOP.store(true, Release);
    for cpu in 1..arch::boot::MAX_CPUS {
        while crate::smp::work_running(cpu) {
            core::hint::spin_loop();
        }
    }
}

extern "C" fn count_cb(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}

static OPS_A: FtraceOps = FtraceOps::new(count_cb, OpsFlags::empty());
static OPS_B: FtraceOps = FtraceOps::new(count_cb, OpsFlags::RECURSION);
static OPS_C: FtraceOps = FtraceOps::new(count_cb, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));
static OPS_TICK: FtraceOps = FtraceOps::new(count_cb, OpsFlags::RECURSION);
static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

// loongtrace_smp_tramp_a / _b: direct trampolines that count themselves atomically in
// loongtrace_smp_tramp_counts[0] / [1] and resume the traced function. Clobber t1-t4.
core::arch::global_asm!(
    r#"
    .text
    .irp n, 0,1
    .global loongtrace_smp_tramp_\n
    .type loongtrace_smp_tramp_\n, @function
loongtrace_smp_tramp_\n:
    la.pcrel $t2, loongtrace_smp_tramp_counts
    addi.d  $t2, $t2, \n * 8
    li.d    $t3, 1
    amadd_db.d $t4, $t3, $t2
    move    $t1, $ra
    move    $ra, $t0
    jr      $t1
    .size loongtrace_smp_tramp_\n, . - loongtrace_smp_tramp_\n
    .endr
"#
);

#[unsafe(no_mangle)]
static loongtrace_smp_tramp_counts: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

unsafe extern "C" {
    fn loongtrace_smp_tramp_0();
    fn loongtrace_smp_tramp_1();
}

fn tramps() -> [u64; 2] {
    [loongtrace_smp_tramp_0 as *const () as u64, loongtrace_smp_tramp_1 as *const () as u64]
}

fn tramp_total() -> u64 {
    loongtrace_smp_tramp_counts.iter().map(|c| c.load(Relaxed)).sum()
}

static GRAPH_ENTRIES: AtomicU64 = AtomicU64::new(0);
static GRAPH_RETURNS: AtomicU64 = AtomicU64::new(0);
static GRAPH_WANT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn g_entry(ent: &fgraph::FgraphEnt, _o: &fgraph::FgraphOps, _d: &mut fgraph::FgraphData) -> bool {
    let hook = GRAPH_WANT.iter().any(|w| w.load(Relaxed) == ent.func);
    if hook {
        GRAPH_ENTRIES.fetch_add(1, Relaxed);
    }
    hook
}

fn g_return(_r: &fgraph::FgraphRet, _o: &fgraph::FgraphOps, _d: &fgraph::FgraphData) {
    GRAPH_RETURNS.fetch_add(1, Relaxed);
}

static GRAPH: fgraph::FgraphOps = fgraph::FgraphOps::new(g_entry, g_return);

/// One toggled configuration item and the accounting of its registration periods.
///
/// Counters are read with the workers paused between loop iterations (no call in flight), at
/// four points of each period: before the registering call (`pre`), after it (`begin`), before
/// the unregistering call (`end`) and after it. Between `begin` and `end` the ops is live on every
/// CPU, so callbacks must equal calls exactly. Over the whole period, callbacks may also count
/// calls that ran while `register`/`unregister` were switching (with the workers running); so
/// they must lie between the window's calls and the whole period's calls.
struct Item {
    on: bool,
    pre: (u64, u64),
    begin: (u64, u64),
    /// Function indices (0..3) whose calls the item's counter should match; empty = unchecked.
    funcs: &'static [usize],
    periods: u64,
    /// Largest number of switch-time calls the callback saw in one period.
    switch_calls: u64,
    /// Callback count read after the last unregister (it must not move until the next register).
    last_post: Option<u64>,
    errors: alloc::vec::Vec<alloc::string::String>,
}

impl Item {
    const fn new(funcs: &'static [usize]) -> Self {
        Item { on: false, pre: (0, 0), begin: (0, 0), funcs, periods: 0, switch_calls: 0, last_post: None, errors: alloc::vec::Vec::new() }
    }
    fn snap(&self, counter: &dyn Fn() -> u64) -> (u64, u64) {
        paused(|| (self.funcs.iter().map(|&f| smp_calls(f)).sum(), counter()))
    }
    /// Registers with `switch`, recording the period's start.
    fn register(&mut self, counter: &dyn Fn() -> u64, switch: impl FnOnce() -> Result<(), FtraceError>) -> Result<(), FtraceError> {
        self.pre = self.snap(counter);
        if let Some(p) = self.last_post
            && self.pre.1 != p
        {
            self.errors.push(alloc::format!("{} callbacks ran while unregistered", self.pre.1 - p));
        }
        switch()?;
        self.begin = self.snap(counter);
        self.on = true;
        Ok(())
    }
    /// Unregisters with `switch` and checks the period.
    fn unregister(&mut self, counter: &dyn Fn() -> u64, switch: impl FnOnce() -> Result<(), FtraceError>) -> Result<(), FtraceError> {
        let end = self.snap(counter);
        switch()?;
        let post = self.snap(counter);
        self.last_post = Some(post.1);
        self.on = false;
        self.periods += 1;
        let window = (end.0 - self.begin.0, end.1 - self.begin.1);
        let whole = (post.0 - self.pre.0, post.1 - self.pre.1);
        if window.0 != window.1 {
            self.errors.push(alloc::format!("live window: {} calls, {} callbacks", window.0, window.1));
        }
        if whole.1 < window.1 || whole.1 > whole.0 {
            self.errors.push(alloc::format!("whole period: {} calls, {} callbacks (window {})", whole.0, whole.1, window.0));
        }
        self.switch_calls = self.switch_calls.max(whole.1 - window.1);
        Ok(())
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}


ktest! {
    /// Workers on every other CPU call traced functions in tight loops while CPU 0 switches
    /// tracing configurations at random at least 2,000 times (`stress=long`: 20,000).
    fn smp::stress() {
        if crate::smp::online() < 2 {
            kskip!("needs at least 2 CPUs");
        }
        let names = "smp_work_a smp_work_b smp_work_c";
        let fa = smp_work_a as *const () as u64;
        let (fb, fc) = (smp_work_b as *const () as u64, smp_work_c as *const () as u64);
        for (w, f) in GRAPH_WANT.iter().zip([fa, fb, fc]) {
            w.store(f, Relaxed);
        }
        ftrace::ftrace_set_filter(&OPS_A, "smp_work_a", true).map_err(fail)?;
        ftrace::ftrace_set_filter(&OPS_B, "smp_work_a smp_work_b", true).map_err(fail)?;
        ftrace::ftrace_set_filter(&OPS_C, "smp_work_b", true).map_err(fail)?;
        ftrace::ftrace_set_filter(&OPS_TICK, "timer_tick", true).map_err(fail)?;
        ftrace::ftrace_set_filter(&DIRECT, "smp_work_c", true).map_err(fail)?;
        for o in [&OPS_A, &OPS_B, &OPS_C, &OPS_TICK] {
            o.private.store(0, Relaxed);
        }
        ORACLE_FAILURES.store(0, Relaxed);
        BAD_RESULTS.store(0, Relaxed);
        GRAPH_ENTRIES.store(0, Relaxed);
        GRAPH_RETURNS.store(0, Relaxed);
        let timeouts0 = ftrace::quiesce::TIMEOUTS.load(Relaxed);
        let mut traced_events = 0usize;
        let workers = start_workers() as u64;
        kassert!(workers > 0, "no worker started");
        let mut items = [Item::new(&[0]), Item::new(&[0, 1]), Item::new(&[1]), Item::new(&[2]), Item::new(&[]), Item::new(&[]), Item::new(&[])];
        let count = |i: usize| -> u64 {
            match i {
                0 => OPS_A.private.load(Relaxed) as u64,
                1 => OPS_B.private.load(Relaxed) as u64,
                2 => OPS_C.private.load(Relaxed) as u64,
                3 => tramp_total(),
                _ => 0,
            }
        };
        let counters: [&dyn Fn() -> u64; 4] = [&|| count(0), &|| count(1), &|| count(2), &|| count(3)];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut switches = 0u64;
        let mut modifies = 0u64;
        let t0 = arch::time::ticks();
        let target = crate::boot::options().stress;
        let mask = u64::from(crate::boot::options().stress_mask);
        let mut result: crate::selftest::TestResult = Ok(());
        while switches < target && result.is_ok() {
            let pick = (xorshift(&mut seed) % 8) as usize;
            if mask & (1 << pick) == 0 {
                continue;
            }
            let r: Result<(), FtraceError> = (|| {
                match pick {
                    0..=2 => {
                        let ops = [&OPS_A, &OPS_B, &OPS_C][pick];
                        if items[pick].on {
                            items[pick].unregister(counters[pick], || ftrace::unregister_ftrace_function(ops))?;
                        } else {
                            items[pick].register(counters[pick], || ftrace::register_ftrace_function(ops))?;
                        }
                    }
                    3 | 4 if items[3].on => {
                        if pick == 3 {
                            let t = DIRECT.direct.load(Acquire);
                            items[3].unregister(counters[3], || ftrace::unregister_ftrace_direct(&DIRECT, t))?;
                        } else {
                            let [t0, t1] = tramps();
                            let next = if DIRECT.direct.load(Acquire) == t0 { t1 } else { t0 };
                            ftrace::modify_ftrace_direct(&DIRECT, next)?;
                            modifies += 1;
                            // After the change only the new trampoline may run.
                            let old = (next == t0) as usize;
                            let before = paused(|| loongtrace_smp_tramp_counts[old].load(Relaxed));
                            let t = arch::time::ticks();
                            while arch::time::ticks() - t < 20_000 {
                                core::hint::spin_loop();
                            }
                            let after = paused(|| loongtrace_smp_tramp_counts[old].load(Relaxed));
                            if after != before {
                                items[3].errors.push(alloc::format!("old trampoline ran {} times after modify returned", after - before));
                            }
                        }
                    }
                    3 | 4 => items[3].register(counters[3], || ftrace::register_ftrace_direct(&DIRECT, tramps()[pick - 3]))?,
                    5 => {
                        if items[4].on {
                            fgraph::unregister_ftrace_graph(&GRAPH)?;
                            ftrace::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS)?;
                        } else {
                            ftrace::ftrace_set_filter(&fgraph::GRAPH_SITE_OPS, names, true)?;
                            fgraph::register_ftrace_graph(&GRAPH)?;
                        }
                        items[4].on = !items[4].on;
                    }
                    6 => {
                        if items[5].on {
                            tracer::stop()?;
                            traced_events += tracer::collect().events.len();
                        } else {
                            tracer::start(Some(names))?;
                        }
                        items[5].on = !items[5].on;
                    }
                    _ => {
                        if items[6].on {
                            ftrace::unregister_ftrace_function(&OPS_TICK)?;
                        } else {
                            ftrace::register_ftrace_function(&OPS_TICK)?;
                        }
                        items[6].on = !items[6].on;
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                result = Err(fail(e));
            }
            if let Err(e) = ftrace::core::check_consistency() {
                result = Err(crate::selftest::TestError::Fail(alloc::format!("after switch {switches} (pick {pick}): {e}")));
            }
            switches += 1;
        }
        // Turn everything off, then stop the workers.
        for (i, ops) in [&OPS_A, &OPS_B, &OPS_C].into_iter().enumerate() {
            if items[i].on {
                let _ = items[i].unregister(counters[i], || ftrace::unregister_ftrace_function(ops));
            }
        }
        if items[3].on {
            let t = DIRECT.direct.load(Acquire);
            let _ = items[3].unregister(counters[3], || ftrace::unregister_ftrace_direct(&DIRECT, t));
        }
        if items[4].on {
            let _ = fgraph::unregister_ftrace_graph(&GRAPH);
        }
        if items[5].on {
            let _ = tracer::stop();
        }
        if items[6].on {
            let _ = ftrace::unregister_ftrace_function(&OPS_TICK);
        }
        let secs_x100 = (arch::time::ticks() - t0) * 100 / crate::time::counter_hz();
        stop_workers();
        for o in [&OPS_A, &OPS_B, &OPS_C, &OPS_TICK, &DIRECT, &fgraph::GRAPH_SITE_OPS] {
            let _ = ftrace::ftrace_reset_filters(o);
        }
        let _ = tracer::collect();
        result?;
        kdiag!("{switches} switches ({modifies} direct modifies) in {}.{:02} s with {workers} workers", secs_x100 / 100, secs_x100 % 100);
        for cpu in 1..=workers as usize {
            let calls: alloc::vec::Vec<u64> = (0..3).map(|f| SMP_CALLS[f][cpu].load(Relaxed)).collect();
            kdiag!("cpu{cpu}: {} loop iterations, calls a/b/c {calls:?}", ITERATIONS[cpu].load(Relaxed));
        }
        let names = ["ops A (smp_work_a)", "ops B RECURSION (a, b)", "ops C SAVE_REGS (b)", "direct (c)"];
        for (it, name) in items.iter().take(4).zip(names) {
            kdiag!("{name}: {} periods, live windows exact, at most {} calls traced while switching", it.periods, it.switch_calls);
            for e in it.errors.iter().take(6) {
                kdiag!("  {name}: {e}");
            }
        }
        kdiag!("bad results {}, abi_oracle failures {}", BAD_RESULTS.load(Relaxed), ORACLE_FAILURES.load(Relaxed));
        kdiag!("graph: {} entries, {} returns; timer_tick callbacks {}; quiescence retries {}; recursion blocked {}",
            GRAPH_ENTRIES.load(Relaxed), GRAPH_RETURNS.load(Relaxed), OPS_TICK.private.load(Relaxed), ftrace::quiesce::RETRIES.load(Relaxed),
            ftrace::recursion::blocked());
        kassert!(switches >= target, "only {switches} switches");
        kassert!(items.iter().all(|it| it.errors.is_empty()), "callback counts do not match the calls (see above)");
        kassert_eq!(BAD_RESULTS.load(Relaxed), 0, "a traced function returned a wrong value");
        kassert_eq!(ORACLE_FAILURES.load(Relaxed), 0, "abi_oracle failed on a worker CPU");
        kassert_eq!(GRAPH_ENTRIES.load(Relaxed), GRAPH_RETURNS.load(Relaxed), "graph entries != returns");
        kassert!(items.iter().take(4).all(|it| it.periods > 10), "some configuration was hardly used");
        kassert!(GRAPH_ENTRIES.load(Relaxed) > 0, "the graph tracer never hooked a call");
        kassert!(traced_events > 0, "the function tracer never recorded an event");
        kassert_eq!(ftrace::quiesce::TIMEOUTS.load(Relaxed), timeouts0, "a quiescence wait gave up");
        Ok(())
    }
}

const FREED: usize = usize::MAX;
static AFTER_FREE: AtomicU64 = AtomicU64::new(0);
static REMOVAL_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn removal_cb(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    if ops.private.load(Acquire) == FREED {
        AFTER_FREE.fetch_add(1, Relaxed);
    } else {
        REMOVAL_CALLS.fetch_add(1, Relaxed);
    }
}

static REMOVAL: [FtraceOps; 2] = [FtraceOps::new(removal_cb, OpsFlags::empty()), FtraceOps::new(removal_cb, OpsFlags::RECURSION)];

ktest! {
    /// A callback unregistered while other CPUs call it is never entered after `unregister`
    /// returns (it checks a "freed" marker set right after).
    fn smp::removal_is_safe() {
        if crate::smp::online() < 2 {
            kskip!("needs at least 2 CPUs");
        }
        AFTER_FREE.store(0, Relaxed);
        REMOVAL_CALLS.store(0, Relaxed);
        let workers = start_workers();
        let mut rounds = 0;
        let mut r = Ok(());
        for round in 0..100 {
            let ops = &REMOVAL[round % 2];
            ops.private.store(0, Release);
            r = ftrace::ftrace_set_filter(ops, "smp_work_a smp_work_b", true).and_then(|_| ftrace::register_ftrace_function(ops));
            if r.is_err() {
                break;
            }
            let t0 = arch::time::ticks();
            while arch::time::ticks() - t0 < 20_000 {}
            r = ftrace::unregister_ftrace_function(ops);
            ops.private.store(FREED, Release);
            let t0 = arch::time::ticks();
            while arch::time::ticks() - t0 < 20_000 {}
            rounds += 1;
            if r.is_err() {
                break;
            }
        }
        stop_workers();
        for ops in &REMOVAL {
            let _ = ftrace::ftrace_reset_filters(ops);
            ops.private.store(0, Relaxed);
        }
        r.map_err(fail)?;
        kdiag!("{rounds} rounds, {workers} workers, {} callbacks while registered", REMOVAL_CALLS.load(Relaxed));
        kassert!(REMOVAL_CALLS.load(Relaxed) > 0, "the callback never ran: nothing was tested");
        kassert_eq!(AFTER_FREE.load(Relaxed), 0, "a callback ran after unregister returned");
        Ok(())
    }
}

ktest! {
    /// The timer interrupt's own function is traced on every CPU while workers run.
    fn smp::timer_tick_traced() {
        let workers = start_workers();
        OPS_TICK.private.store(0, Relaxed);
        ftrace::ftrace_set_filter(&OPS_TICK, "timer_tick", true).map_err(fail)?;
        let r = ftrace::register_ftrace_function(&OPS_TICK);
        let ticks0: alloc::vec::Vec<u64> = (0..crate::smp::online()).map(crate::irq::ticks).collect();
        let t0 = arch::time::ticks();
        while arch::time::ticks() - t0 < crate::time::counter_hz() / 10 {
            core::hint::spin_loop();
        }
        // Counted while the ops is still registered: ticks after the unregister are not traced,
        // and on a loaded host this CPU may be descheduled for many ticks in between.
        let ticks: u64 = (0..crate::smp::online()).map(|c| crate::irq::ticks(c) - ticks0[c]).sum();
        let _ = ftrace::unregister_ftrace_function(&OPS_TICK);
        stop_workers();
        let _ = ftrace::ftrace_reset_filters(&OPS_TICK);
        r.map_err(fail)?;
        let traced = OPS_TICK.private.load(Relaxed) as u64;
        kdiag!("{workers} workers; {ticks} ticks on {} CPUs, {traced} traced", crate::smp::online());
        kassert!(traced > 0, "no tick was traced");
        kassert!(traced + 2 * crate::smp::online() as u64 >= ticks, "ticks {ticks} but only {traced} traced");
        Ok(())
    }
}

ktest! {
    /// The function tracer records on every CPU into per-CPU buffers, and the output merges them
    /// in timestamp order; the function_graph tracer pairs entries and returns on each CPU.
    fn smp::merged_trace_output() {
        if crate::smp::online() < 2 {
            kskip!("needs at least 2 CPUs");
        }
        tracer::reset_buffers();
        let workers = start_workers();
        let r = tracer::start(Some("smp_work_a"));
        let t0 = arch::time::ticks();
        while arch::time::ticks() - t0 < crate::time::counter_hz() / 50 {
            core::hint::spin_loop();
        }
        let _ = tracer::stop();
        let c = tracer::collect();
        let g = ftrace::graph_tracer::GraphConfig { ftrace_filter: Some("smp_work_b"), ..Default::default() };
        let rg = ftrace::graph_tracer::start(&g);
        let t0 = arch::time::ticks();
        while arch::time::ticks() - t0 < crate::time::counter_hz() / 50 {
            core::hint::spin_loop();
        }
        let _ = ftrace::graph_tracer::stop();
        stop_workers();
        let cg = tracer::collect();
        r.map_err(fail)?;
        rg.map_err(fail)?;
        let mut cpus = 0u64;
        c.events.iter().for_each(|e| cpus |= 1 << e.cpu);
        kdiag!("{} function events ({} lost) from CPUs {cpus:#x}; {} graph events", c.events.len(), c.lost, cg.events.len());
        kassert!(cpus.count_ones() as usize >= workers, "events from CPUs {cpus:#x} only");
        kassert!(c.events.windows(2).all(|w| w[0].ts <= w[1].ts), "merged output is not in timestamp order");
        // Per CPU, after its first entry (older events may have been overwritten), every return
        // closes an entry made on that CPU.
        let mut open = [0i64; arch::boot::MAX_CPUS];
        let mut started = [false; arch::boot::MAX_CPUS];
        for e in &cg.events {
            let cpu = e.cpu as usize;
            match e.kind {
                crate::ringbuf::KIND_GRAPH_ENTRY => {
                    started[cpu] = true;
                    open[cpu] += 1;
                }
                crate::ringbuf::KIND_GRAPH_RETURN if started[cpu] => open[cpu] -= 1,
                _ => {}
            }
            kassert!(open[cpu] >= 0, "a return without its entry on cpu{cpu}");
        }
        kassert!(cg.lost > 0 || open.iter().all(|&o| o == 0), "unbalanced graph events: {open:?}");
        kassert!(!cg.events.is_empty(), "no graph events");
        Ok(())
    }
}

/// Toggles `tracing_on` 20,000 times with a per-CPU pseudo-random sequence.
fn toggle_tracing_on(cpu: usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ cpu as u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        crate::ftrace::tracer::set_tracing_on(x & 1 != 0);
    }
}

ktest! {
    /// `set_tracing_on` from every CPU at once (as triggers may do) leaves each CPU's per-CPU
    /// mirror (the buffer pointer the writers load) in step with the flag, without waiting.
    fn smp::tracing_on_mirror_in_step() {
        if crate::smp::online() < 2 {
            kskip!("needs at least 2 CPUs");
        }
        let n = crate::smp::online();
        let started = (1..n).filter(|&cpu| crate::smp::run_on(cpu, toggle_tracing_on)).count();
        toggle_tracing_on(0);
        for cpu in 1..arch::boot::MAX_CPUS {
            while crate::smp::work_running(cpu) {
                core::hint::spin_loop();
            }
        }
        let on = crate::ftrace::tracer::tracing_on();
        let mirrored: alloc::vec::Vec<bool> = (0..arch::boot::MAX_CPUS).map(|c| arch::boot::percpu(c).trace_ring.load(Acquire) != 0).collect();
        crate::ftrace::tracer::set_tracing_on(true);
        kdiag!("{} CPUs toggled 20,000 times each; tracing_on ended {on}", started + 1);
        kassert!(started > 0, "no other CPU ran: nothing was tested");
        kassert!(mirrored.iter().all(|&m| m == on), "mirror {mirrored:?} vs tracing_on {on}");
        Ok(())
    }
}
