//! Suite `removal`: "when the removal returns, no CPU is running the callback, and nothing the
//! removal freed is used again", tested so that it fails when the wait is missing.
//!
//! Worker CPUs call [`removal_target`] in a loop. Its probe (an ops callback, a direct
//! trampoline, a graph ops, a tracer) *lingers*: it counts itself in a per-CPU in-probe count,
//! spins for [`LINGER_US`] µs — and, while CPU 0 is inside a removal, on until the removal has
//! returned or twice the time a registration took (`HOLD`) — with interrupts as the traced call
//! had them (on, except in graph entry callbacks, which the graph core runs with interrupts
//! off), and counts itself out. CPU 0 waits until a probe is running, removes it, and checks
//! *the moment the removal returns* that no CPU is inside it. It then poisons what it removed: the ops (or graph ops) memory is dropped and
//! filled with [`crate::heap::FREED_BYTE`] (kept aside until the end, so it is not reused), and
//! the heap fills every block it frees meanwhile (old ops lists, site sets, legacy adapters)
//! the same way. A call that still reaches a removed probe is counted ("late"), and one that
//! reads poisoned ops or lists, or executes a freed adapter, takes an exception, which fails the
//! run. Each path runs [`rounds`] times (1,000; `stress=long`: 10,000).

use crate::ftrace::fgraph::{self, FgraphData, FgraphEnt, FgraphOps, FgraphRet};
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, graph_tracer, tracer};
use crate::selftest::{TestError, TestResult};
use crate::{kassert, kassert_eq, kdiag, kskip, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;
/// How long a probe lingers.
pub const LINGER_US: u64 = 4;
/// What a live ops' `private` holds (a poisoned one holds `FREED_BYTE`s).
const ALIVE: usize = 0xa11e_a11e;

/// Removals per path: 1,000, or 10,000 with `stress=long`.
pub fn rounds() -> usize {
    let opts = crate::boot::options();
    match opts.removal_rounds {
        Some(n) => n,
        None if opts.stress == crate::cmdline::STRESS_LONG => 10_000,
        None => 1_000,
    }
}

/// The traced function the workers call. While [`BODY_HOLD`] is set (graph removals), its body
/// lingers like a probe, so that calls are hooked and still running when the removal begins.
#[inline(never)]
pub fn removal_target(x: u64) -> u64 {
    if BODY_HOLD.load(Relaxed) {
        linger_body();
    }
    core::hint::black_box(x).wrapping_mul(3) + 1
}

/// Set during graph removals: [`removal_target`]'s body lingers like a probe.
static BODY_HOLD: AtomicBool = AtomicBool::new(false);
/// Graph entry callbacks that hooked their call, and return callbacks run, in the current round.
static GRAPH_HOOKED: AtomicU64 = AtomicU64::new(0);
static GRAPH_RETURNED: AtomicU64 = AtomicU64::new(0);

/// Spins for [`LINGER_US`] µs and, while CPU 0 is inside a removal ([`HOLD`]), on until the
/// removal has returned or `HOLD_TICKS` have passed.
#[inline(never)]
fn linger_body() {
    let t0 = arch::time::ticks();
    let ticks = crate::time::counter_hz() * LINGER_US / 1_000_000;
    loop {
        let e = arch::time::ticks() - t0;
        if e >= ticks && (!HOLD.load(Acquire) || e >= HOLD_TICKS.load(Relaxed)) {
            break;
        }
        core::hint::spin_loop();
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static BAD_RESULTS: AtomicU64 = AtomicU64::new(0);
static WORKER_CALLS: AtomicU64 = AtomicU64::new(0);

fn worker(_cpu: usize) {
    let mut i = 0u64;
    while !STOP.load(Acquire) {
        if removal_target(i) != i.wrapping_mul(3) + 1 {
            BAD_RESULTS.fetch_add(1, Relaxed);
        }
        i += 1;
        if i % 64 == 0 {
            WORKER_CALLS.fetch_add(64, Relaxed);
        }
    }
}

/// Probe kinds, each with its own in-probe counts.
const CB: usize = 0;
/// Trampolines 0/1 (new convention) and 2/3 (old convention): slots 1..=4.
const TRAMP: usize = 1;
const GRAPH: usize = 5;
const SLOTS: usize = 6;

/// Per slot and CPU: probes running now.
static INSIDE: [[AtomicU64; MAX_CPUS]; SLOTS] = [const { [const { AtomicU64::new(0) }; MAX_CPUS] }; SLOTS];
/// Per slot: probe entries so far.
static ENTRIES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Per slot: set once the slot's probe was removed (a trampoline slot: until it is used again).
static RETIRED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// Entries into a removed probe, or into an ops whose memory was poisoned.
static LATE: AtomicU64 = AtomicU64::new(0);

/// Set by CPU 0 from just before a removal until it has read the in-probe counts after the
/// removal returned: meanwhile probes keep lingering, up to `HOLD_TICKS` after their entry.
/// A fixed few microseconds are not enough: under QEMU the rest of a removal after the last
/// call could enter (more cross-CPU calls) takes far longer, so a missing wait would go unseen.
static HOLD: AtomicBool = AtomicBool::new(false);
static HOLD_TICKS: AtomicU64 = AtomicU64::new(0);

/// Sets how long probes hold on during a removal from the duration of a comparable call made
/// without holding (a registration): twice that plus 50 µs, at most 200 ms (below the graph
/// core's 1 s patience with hooked calls that do not return).
fn set_hold(reference_ticks: u64) {
    let hz = crate::time::counter_hz();
    HOLD_TICKS.store((2 * reference_ticks + hz / 20_000).min(hz / 5), Relaxed);
}

/// Runs `f` and returns its result and how many counter ticks it took.
fn timed<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let t0 = arch::time::ticks();
    let r = f();
    (r, arch::time::ticks() - t0)
}

fn inside(slot: usize) -> u64 {
    INSIDE[slot].iter().map(|c| c.load(Acquire)).sum()
}

/// The body of every probe: counts itself in, lingers, counts itself out. `alive` says whether
/// the probe's ops is still valid, asked on the way in and on the way out.
#[inline(always)]
fn linger(slot: usize, alive: impl Fn() -> bool) {
    let cpu = arch::cpu::id() % MAX_CPUS;
    INSIDE[slot][cpu].fetch_add(1, AcqRel);
    ENTRIES[slot].fetch_add(1, Relaxed);
    if !alive() || RETIRED[slot].load(Acquire) {
        LATE.fetch_add(1, Relaxed);
    }
    linger_body();
    if !alive() {
        LATE.fetch_add(1, Relaxed);
    }
    INSIDE[slot][cpu].fetch_sub(1, AcqRel);
}

extern "C" fn linger_cb(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    linger(CB, || ops.private.load(Acquire) == ALIVE);
}

/// Called by the trampolines below with their number.
extern "C" fn linger_tramp(which: u64) {
    linger(TRAMP + which as usize % 4, || true);
}

// loongtrace_linger_tramp_0 / _1: direct trampolines (t0 = parent, ra = body) that save ra, t0
//   and a0-a7, call linger_tramp(n), restore them and resume the body with ra = parent.
//   Clobber t1 and what linger_tramp clobbers.
// loongtrace_linger_tramp_2 / _3: the same for the old convention (t0 = body, ra = parent),
//   ending in `jr t0`; used with LEGACY_ABI ops, whose adapter is heap memory freed on removal.
core::arch::global_asm!(
    r#"
    .macro LINGER_TRAMP n, legacy
    .text
    .global loongtrace_linger_tramp_\n
    .type loongtrace_linger_tramp_\n, @function
loongtrace_linger_tramp_\n:
    addi.d  $sp, $sp, -96
    st.d    $ra, $sp, 0
    st.d    $t0, $sp, 8
    st.d    $a0, $sp, 16
    st.d    $a1, $sp, 24
    st.d    $a2, $sp, 32
    st.d    $a3, $sp, 40
    st.d    $a4, $sp, 48
    st.d    $a5, $sp, 56
    st.d    $a6, $sp, 64
    st.d    $a7, $sp, 72
    li.w    $a0, \n
    bl      {body}
    ld.d    $ra, $sp, 0
    ld.d    $t0, $sp, 8
    ld.d    $a0, $sp, 16
    ld.d    $a1, $sp, 24
    ld.d    $a2, $sp, 32
    ld.d    $a3, $sp, 40
    ld.d    $a4, $sp, 48
    ld.d    $a5, $sp, 56
    ld.d    $a6, $sp, 64
    ld.d    $a7, $sp, 72
    addi.d  $sp, $sp, 96
    .if \legacy
    jr      $t0
    .else
    move    $t1, $ra
    move    $ra, $t0
    jr      $t1
    .endif
    .size loongtrace_linger_tramp_\n, . - loongtrace_linger_tramp_\n
    .endm
    LINGER_TRAMP 0, 0
    LINGER_TRAMP 1, 0
    LINGER_TRAMP 2, 1
    LINGER_TRAMP 3, 1
"#,
    body = sym linger_tramp,
);

unsafe extern "C" {
    fn loongtrace_linger_tramp_0();
    fn loongtrace_linger_tramp_1();
    fn loongtrace_linger_tramp_2();
    fn loongtrace_linger_tramp_3();
}

fn tramp(which: usize) -> u64 {
    [loongtrace_linger_tramp_0 as *const () as u64, loongtrace_linger_tramp_1 as *const () as u64, loongtrace_linger_tramp_2 as *const () as u64, loongtrace_linger_tramp_3 as *const () as u64][which]
}

fn fail(e: FtraceError) -> TestError {
    TestError::Fail(alloc::format!("ftrace error: {e}"))
}

/// Heap objects removed during the case: dropped and poisoned, freed at the end.
struct Quarantine {
    held: Vec<(*mut u8, core::alloc::Layout)>,
}

impl Quarantine {
    fn new() -> Self {
        Quarantine { held: Vec::new() }
    }
    /// Drops `*p` and fills its memory with `FREED_BYTE`; the memory stays allocated.
    ///
    /// # Safety
    /// `p` comes from `Box::into_raw` and nothing may use it as a `T` any more.
    unsafe fn poison<T>(&mut self, p: *mut T) {
        // SAFETY: per the contract, `p` is a live, owned, no longer used `T`.
        unsafe {
            core::ptr::drop_in_place(p);
            (p as *mut u8).write_bytes(crate::heap::FREED_BYTE, core::mem::size_of::<T>());
        }
        self.held.push((p as *mut u8, core::alloc::Layout::new::<T>()));
    }
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        for (p, l) in self.held.drain(..) {
            // SAFETY: allocated by `Box::new` with layout `l`, dropped already (no drop again).
            unsafe { alloc::alloc::dealloc(p, l) };
        }
    }
}

/// Host time one path may take before it stops early (a loaded host runs QEMU's CPUs slowly;
/// `make test` must still finish). 15 s, or 600 s with `stress=long`.
fn budget_ticks() -> u64 {
    let secs = if crate::boot::options().stress == crate::cmdline::STRESS_LONG { 600 } else { 15 };
    crate::time::counter_hz() * secs
}

/// Fewest rounds a path makes: it goes on past the time budget until it has made them (a loaded
/// host can make a round take over a second), up to [`hard_limit_ticks`].
const MIN_ROUNDS: usize = 10;

/// Host time after which a path stops even short of [`MIN_ROUNDS`] (and fails): 8 budgets.
fn hard_limit_ticks() -> u64 {
    budget_ticks() * 8
}

/// What one path's rounds found.
#[derive(Default)]
struct Report {
    rounds: usize,
    /// Rounds where a probe was running when the removal began.
    in_flight: usize,
    errors: Vec<String>,
    start: u64,
    /// The path stopped before `rounds()` because its time ran out.
    cut: bool,
}

impl Report {
    /// Whether to make another round (false once `rounds()` are done or the time is up).
    fn more(&mut self) -> bool {
        if self.rounds >= rounds() {
            return false;
        }
        let used = arch::time::ticks() - self.start;
        if (used > budget_ticks() && self.rounds >= MIN_ROUNDS) || used > hard_limit_ticks() {
            self.cut = true;
            return false;
        }
        true
    }
    fn error(&mut self, e: String) {
        if self.errors.len() < 8 {
            self.errors.push(e);
        }
    }
}

/// Waits (up to 100 ms) until a probe of `slot` is running on some CPU; true if one is.
fn wait_inside(slot: usize) -> bool {
    let t0 = arch::time::ticks();
    while inside(slot) == 0 {
        if arch::time::ticks() - t0 > crate::time::counter_hz() / 10 {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Runs `path` with the workers calling `removal_target` on every other CPU and the heap
/// poisoning what it frees; then checks the report.
fn with_workers(what: &str, path: impl FnOnce(&mut Report, &mut Quarantine) -> Result<(), FtraceError>) -> TestResult {
    if crate::smp::online() < 2 {
        kskip!("needs at least 2 CPUs");
    }
    for s in 0..SLOTS {
        RETIRED[s].store(false, Release);
    }
    LATE.store(0, Relaxed);
    BAD_RESULTS.store(0, Relaxed);
    STOP.store(false, Release);
    let workers = (1..crate::smp::online()).filter(|&c| crate::smp::run_on(c, worker)).count();
    let mut report = Report { start: arch::time::ticks(), ..Default::default() };
    let mut quarantine = Quarantine::new();
    crate::heap::poison_frees(true);
    let t0 = arch::time::ticks();
    let calls0 = crate::smp::CROSS_CALLS.load(Relaxed);
    let r = path(&mut report, &mut quarantine);
    let ms = (arch::time::ticks() - t0) * 1000 / crate::time::counter_hz();
    let cross = crate::smp::CROSS_CALLS.load(Relaxed) - calls0;
    // Late calls would show up in this time.
    let t1 = arch::time::ticks();
    while arch::time::ticks() - t1 < crate::time::counter_hz() / 100 {
        core::hint::spin_loop();
    }
    STOP.store(true, Release);
    for cpu in 1..MAX_CPUS {
        while crate::smp::work_running(cpu) {
            core::hint::spin_loop();
        }
    }
    drop(quarantine);
    crate::heap::poison_frees(false);
    r.map_err(fail)?;
    kdiag!(
        "{what}: {} removals in {ms} ms ({cross} cross-CPU calls) with {workers} workers; a probe was running when {} of them began; {} late entries",
        report.rounds,
        report.in_flight,
        LATE.load(Relaxed)
    );
    for e in &report.errors {
        kdiag!("{e}");
    }
    kassert!(report.errors.is_empty(), "{what}: a probe was still running, or ran again, after its removal returned");
    kassert_eq!(LATE.load(Relaxed), 0, "{what}: entries into removed probes or poisoned ops");
    kassert_eq!(BAD_RESULTS.load(Relaxed), 0, "{what}: removal_target returned a wrong value");
    if report.cut {
        kdiag!("{what}: stopped after {} of {} rounds: the {} s time budget ran out (slow or loaded host)", report.rounds, rounds(), budget_ticks() / crate::time::counter_hz());
    }
    kassert!(report.rounds >= rounds() || (report.cut && report.rounds >= MIN_ROUNDS), "{what}: only {} rounds", report.rounds);
    // A removal that never overlapped a running probe would prove nothing.
    kassert!(report.in_flight * 10 >= report.rounds, "{what}: the window was hit in only {} of {} rounds", report.in_flight, report.rounds);
    Ok(())
}

fn target_ip() -> u64 {
    removal_target as *const () as u64
}

ktest! {
    /// unregister_ftrace_function with the callback running on other CPUs (plain, recursion-
    /// guarded and SAVE_REGS ops in turn).
    fn removal::unregister_ftrace_function() {
        with_workers("unregister_ftrace_function", |rep, q| {
            let flags = [OpsFlags::empty(), OpsFlags::RECURSION, OpsFlags::SAVE_REGS];
            while rep.more() {
                let r = rep.rounds;
                let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(FtraceOps::new(linger_cb, flags[r % 3])));
                // SAFETY: `p` stays allocated (quarantined) until the workers stopped.
                let ops: &'static FtraceOps = unsafe { &*p };
                ops.private.store(ALIVE, Release);
                ftrace::ftrace_set_filter_ip(ops, target_ip(), false, true)?;
                let (res, t) = timed(|| ftrace::register_ftrace_function(ops));
                res?;
                set_hold(t);
                rep.in_flight += wait_inside(CB) as usize;
                HOLD.store(true, Release);
                let res = ftrace::unregister_ftrace_function(ops);
                let n = inside(CB);
                HOLD.store(false, Release);
                res?;
                if n != 0 {
                    rep.error(alloc::format!("round {r}: {n} callbacks still running when unregister returned"));
                }
                // Unregistered: ftrace must forget its filter before the memory goes.
                ftrace::ftrace_free_filter(ops)?;
                // SAFETY: unregistered; nothing refers to the ops any more (the point of the test).
                unsafe { q.poison(p) };
                rep.rounds += 1;
            }
            Ok(())
        })
    }
}

ktest! {
    /// unregister_ftrace_direct with the trampoline running on other CPUs (new-convention and
    /// LEGACY_ABI ops in turn; the latter's adapter is freed by the removal).
    fn removal::unregister_ftrace_direct() {
        with_workers("unregister_ftrace_direct", |rep, q| {
            while rep.more() {
                let r = rep.rounds;
                let which = if r % 2 == 0 { 0 } else { 2 };
                let flags = if which == 2 { OpsFlags::LEGACY_ABI } else { OpsFlags::empty() };
                let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(FtraceOps::new_direct(flags)));
                // SAFETY: as for the ops above.
                let ops: &'static FtraceOps = unsafe { &*p };
                ftrace::ftrace_set_filter_ip(ops, target_ip(), false, true)?;
                RETIRED[TRAMP + which].store(false, Release);
                let (res, t) = timed(|| ftrace::register_ftrace_direct(ops, tramp(which)));
                res?;
                set_hold(t);
                rep.in_flight += wait_inside(TRAMP + which) as usize;
                HOLD.store(true, Release);
                let res = ftrace::unregister_ftrace_direct(ops, tramp(which));
                let n = inside(TRAMP + which);
                HOLD.store(false, Release);
                res?;
                RETIRED[TRAMP + which].store(true, Release);
                if n != 0 {
                    rep.error(alloc::format!("round {r}: {n} trampoline calls still running when unregister returned"));
                }
                // Unregistered: ftrace must forget its filter before the memory goes.
                ftrace::ftrace_free_filter(ops)?;
                // SAFETY: unregistered.
                unsafe { q.poison(p) };
                rep.rounds += 1;
            }
            Ok(())
        })
    }
}

ktest! {
    /// modify_ftrace_direct between two trampolines while they run on other CPUs: when it
    /// returns, nobody is in the old one and nobody enters it again (blocks of 50 modifies,
    /// alternating new-convention and LEGACY_ABI ops; the latter free the old adapter).
    fn removal::modify_ftrace_direct() {
        with_workers("modify_ftrace_direct", |rep, q| {
            let mut legacy = false;
            while rep.more() {
                let share = rep.rounds + 50;
                let base = if legacy { 2 } else { 0 };
                let flags = if legacy { OpsFlags::LEGACY_ABI } else { OpsFlags::empty() };
                let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(FtraceOps::new_direct(flags)));
                // SAFETY: as above.
                let ops: &'static FtraceOps = unsafe { &*p };
                ftrace::ftrace_set_filter_ip(ops, target_ip(), false, true)?;
                RETIRED[TRAMP + base].store(false, Release);
                let (res, t) = timed(|| ftrace::register_ftrace_direct(ops, tramp(base)));
                res?;
                // A modify makes two updates.
                set_hold(2 * t);
                let mut cur = base;
                while rep.rounds < share && rep.more() {
                    let r = rep.rounds;
                    let next = base + (cur - base + 1) % 2;
                    rep.in_flight += wait_inside(TRAMP + cur) as usize;
                    RETIRED[TRAMP + next].store(false, Release);
                    HOLD.store(true, Release);
                    let res = ftrace::modify_ftrace_direct(ops, tramp(next));
                    let n = inside(TRAMP + cur);
                    HOLD.store(false, Release);
                    res?;
                    RETIRED[TRAMP + cur].store(true, Release);
                    if n != 0 {
                        rep.error(alloc::format!("round {r}: {n} calls still in the old trampoline when modify returned"));
                    }
                    cur = next;
                    rep.rounds += 1;
                }
                ftrace::unregister_ftrace_direct(ops, tramp(cur))?;
                RETIRED[TRAMP + cur].store(true, Release);
                // Unregistered: ftrace must forget its filter before the memory goes.
                ftrace::ftrace_free_filter(ops)?;
                // SAFETY: unregistered.
                unsafe { q.poison(p) };
                legacy = !legacy;
            }
            Ok(())
        })
    }
}

fn graph_entry(_e: &FgraphEnt, ops: &FgraphOps, _d: &mut FgraphData) -> bool {
    linger(GRAPH, || ops.private.load(Acquire) == ALIVE);
    GRAPH_HOOKED.fetch_add(1, AcqRel);
    true
}

fn graph_return(_r: &FgraphRet, ops: &FgraphOps, _d: &FgraphData) {
    linger(GRAPH, || ops.private.load(Acquire) == ALIVE);
    GRAPH_RETURNED.fetch_add(1, AcqRel);
}

ktest! {
    /// unregister_ftrace_graph with entry and return callbacks running on other CPUs, and
    /// calls hooked and still in the traced function's body: each of those gets its return
    /// callback before the removal returns (none is lost).
    fn removal::unregister_ftrace_graph() {
        BODY_HOLD.store(true, Release);
        let r = with_workers("unregister_ftrace_graph", |rep, q| {
            ftrace::ftrace_set_filter_ip(&fgraph::GRAPH_SITE_OPS, target_ip(), false, true)?;
            let mut r = Ok(());
            while rep.more() {
                let i = rep.rounds;
                GRAPH_HOOKED.store(0, Release);
                GRAPH_RETURNED.store(0, Release);
                let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(FgraphOps::new(graph_entry, graph_return)));
                // SAFETY: as above.
                let ops: &'static FgraphOps = unsafe { &*p };
                ops.private.store(ALIVE, Release);
                let (rr, t) = timed(|| fgraph::register_ftrace_graph(ops));
                r = rr;
                if r.is_err() {
                    break;
                }
                set_hold(t);
                rep.in_flight += wait_inside(GRAPH) as usize;
                HOLD.store(true, Release);
                r = fgraph::unregister_ftrace_graph(ops);
                let n = inside(GRAPH);
                let (hooked, returned) = (GRAPH_HOOKED.load(Acquire), GRAPH_RETURNED.load(Acquire));
                HOLD.store(false, Release);
                if n != 0 {
                    rep.error(alloc::format!("round {i}: {n} graph callbacks still running when unregister returned"));
                }
                if hooked != returned {
                    rep.error(alloc::format!("round {i}: {hooked} calls hooked but {returned} return callbacks run when unregister returned"));
                }
                // SAFETY: unregistered (or the error below ends the case with the workers stopped
                // before the quarantine is freed).
                unsafe { q.poison(p) };
                rep.rounds += 1;
                if r.is_err() {
                    break;
                }
            }
            let _ = ftrace::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS);
            r
        });
        BODY_HOLD.store(false, Release);
        r
    }
}

/// Events written to every CPU's buffer so far.
fn written() -> u64 {
    tracer::BUFFERS.iter().map(|b| b.written()).sum()
}

/// Starts and stops a tracer `rounds()` times while the workers call the traced function:
/// after `stop` returns, no event may be written (a callback still running would write one).
fn tracer_rounds(rep: &mut Report, start: impl Fn() -> Result<(), FtraceError>, stop: impl Fn() -> Result<(), FtraceError>) -> Result<(), FtraceError> {
    tracer::reset_buffers();
    let mut last_stop = written();
    while rep.more() {
        let r = rep.rounds;
        let now = written();
        if now != last_stop {
            rep.error(alloc::format!("round {r}: {} events written after stop returned", now - last_stop));
        }
        start()?;
        let w0 = written();
        let t0 = arch::time::ticks();
        while written() == w0 && arch::time::ticks() - t0 < crate::time::counter_hz() / 50 {
            core::hint::spin_loop();
        }
        rep.in_flight += (written() != w0) as usize;
        stop()?;
        last_stop = written();
        rep.rounds += 1;
    }
    let t0 = arch::time::ticks();
    while arch::time::ticks() - t0 < crate::time::counter_hz() / 1000 {
        core::hint::spin_loop();
    }
    if written() != last_stop {
        rep.error(alloc::format!("{} events written after the last stop returned", written() - last_stop));
    }
    let _ = tracer::collect();
    Ok(())
}

ktest! {
    /// Stopping the function tracer while it records on other CPUs.
    fn removal::function_tracer_stop() {
        with_workers("function tracer stop", |rep, _| tracer_rounds(rep, || tracer::start(Some("removal_target")), tracer::stop))
    }
}

ktest! {
    /// Stopping the function_graph tracer while it records on other CPUs.
    fn removal::function_graph_tracer_stop() {
        with_workers("function_graph tracer stop", |rep, _| {
            let cfg = graph_tracer::GraphConfig { ftrace_filter: Some("removal_target"), ..Default::default() };
            tracer_rounds(rep, || graph_tracer::start(&cfg), graph_tracer::stop)
        })
    }
}
