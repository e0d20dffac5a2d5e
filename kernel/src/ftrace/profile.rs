//! The function profiler (Linux's `function_profile_enabled`, `trace_stat/functionN`): per CPU,
//! the hits of every traced function and the time spent in it (children included, as with
//! Linux's default `graph-time`), measured by a graph ops at entry and return.
//!
//! The sites it sees are those `fgraph::GRAPH_SITE_OPS` enables (tracefs gives that ops the
//! global `set_ftrace_filter`).

use super::fgraph::{self, FgraphData, FgraphEnt, FgraphOps, FgraphRet};
use super::sites;
use super::FtraceError;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// One function's numbers on one CPU: hits, total ticks, and the sum of squared ticks (128 bits
/// as two words). Written only by its own CPU with interrupts off.
struct Rec {
    hits: AtomicU64,
    ticks: AtomicU64,
    sq_lo: AtomicU64,
    sq_hi: AtomicU64,
}

/// Per CPU, one record per site (allocated at the first enable, zeroed at each).
static STATS: spin::Once<Vec<Vec<Rec>>> = spin::Once::new();

fn stats() -> Option<&'static Vec<Vec<Rec>>> {
    STATS.get()
}

fn entry(ent: &FgraphEnt, _ops: &FgraphOps, _data: &mut FgraphData) -> bool {
    let (Some(st), Some(i)) = (stats(), sites::index_of(ent.func)) else { return false };
    let cpu = arch::cpu::id() % MAX_CPUS;
    if let Some(r) = st[cpu].get(i) {
        r.hits.fetch_add(1, Ordering::Relaxed);
    }
    true
}

fn ret(r: &FgraphRet, _ops: &FgraphOps, _data: &FgraphData) {
    let (Some(st), Some(i)) = (stats(), sites::index_of(r.func)) else { return };
    let cpu = arch::cpu::id() % MAX_CPUS;
    let Some(rec) = st[cpu].get(i) else { return };
    let d = r.rettime.saturating_sub(r.calltime);
    arch::cpu::without_irqs(|| {
        rec.ticks.fetch_add(d, Ordering::Relaxed);
        let sq = (d as u128) * (d as u128);
        let old = (rec.sq_hi.load(Ordering::Relaxed) as u128) << 64 | rec.sq_lo.load(Ordering::Relaxed) as u128;
        let new = old.saturating_add(sq);
        rec.sq_lo.store(new as u64, Ordering::Relaxed);
        rec.sq_hi.store((new >> 64) as u64, Ordering::Relaxed);
    });
}

/// The profiler's graph ops.
pub static PROFILE_GRAPH: FgraphOps = FgraphOps::new(entry, ret);

/// Starts profiling from zero.
pub fn enable() -> Result<(), FtraceError> {
    if fgraph::is_registered(&PROFILE_GRAPH) {
        return Err(FtraceError::AlreadyRegistered);
    }
    let n = sites::all().len();
    let st = STATS.call_once(|| {
        (0..MAX_CPUS)
            .map(|_| (0..n).map(|_| Rec { hits: AtomicU64::new(0), ticks: AtomicU64::new(0), sq_lo: AtomicU64::new(0), sq_hi: AtomicU64::new(0) }).collect())
            .collect()
    });
    for r in st.iter().flatten() {
        r.hits.store(0, Ordering::Relaxed);
        r.ticks.store(0, Ordering::Relaxed);
        r.sq_lo.store(0, Ordering::Relaxed);
        r.sq_hi.store(0, Ordering::Relaxed);
    }
    fgraph::register_ftrace_graph(&PROFILE_GRAPH)
}

/// Stops profiling; the numbers stay readable until the next enable.
pub fn disable() -> Result<(), FtraceError> {
    fgraph::unregister_ftrace_graph(&PROFILE_GRAPH)
}

/// Whether the profiler runs.
pub fn enabled() -> bool {
    fgraph::is_registered(&PROFILE_GRAPH)
}

/// One row of a CPU's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileRow {
    pub ip: u64,
    pub hits: u64,
    /// Nanoseconds.
    pub time_ns: u64,
    /// Sum of squared nanoseconds.
    pub time_sq: u128,
}

/// The functions hit on `cpu`, most total time first (Linux's order with the graph tracer; equal
/// times by hits, then by address).
pub fn rows(cpu: usize) -> Vec<ProfileRow> {
    let Some(st) = stats() else { return Vec::new() };
    let Some(per) = st.get(cpu) else { return Vec::new() };
    let hz = crate::time::counter_hz() as u128;
    let ns = |t: u128| t * 1_000_000_000 / hz;
    let all = sites::all();
    let mut v: Vec<ProfileRow> = per
        .iter()
        .enumerate()
        .filter(|(_, r)| r.hits.load(Ordering::Relaxed) != 0)
        .map(|(i, r)| {
            let sq = (r.sq_hi.load(Ordering::Relaxed) as u128) << 64 | r.sq_lo.load(Ordering::Relaxed) as u128;
            ProfileRow {
                ip: all[i].ip,
                hits: r.hits.load(Ordering::Relaxed),
                time_ns: ns(r.ticks.load(Ordering::Relaxed) as u128) as u64,
                time_sq: sq.saturating_mul(1_000_000_000 / hz * 1_000_000_000 / hz),
            }
        })
        .collect();
    v.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then(b.hits.cmp(&a.hits)).then(a.ip.cmp(&b.ip)));
    v
}
