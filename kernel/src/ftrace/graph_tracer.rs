//! The `function_graph` tracer: entry and return events in the ring buffer, printed in Linux's
//! layout (CPU, duration, nesting with `func() {` / `}` and leaf calls as `func();`).
//!
//! `set_graph_function` ([`GraphConfig::graph_function`]) limits which functions start a graph;
//! their callees are traced too, down to [`GraphConfig::max_depth`].

use super::fgraph::{self, FgraphData, FgraphEnt, FgraphOps, FgraphRet};
use super::sites::{self, SiteSet};
use super::tracer::{self, Collected};
use super::FtraceError;
use crate::ringbuf::{KIND_GRAPH_ENTRY, KIND_GRAPH_RETURN, TraceEntry};
use alloc::boxed::Box;
use core::fmt::Write;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// Per CPU: hooked calls of this tracer outstanding (so callees of a `set_graph_function`
/// function are traced).
static ACTIVE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static GRAPH_FUNCTIONS: AtomicPtr<SiteSet> = AtomicPtr::new(core::ptr::null_mut());
/// `set_graph_notrace`: functions that, with everything they call, are not traced.
static GRAPH_NOTRACE: AtomicPtr<SiteSet> = AtomicPtr::new(core::ptr::null_mut());
/// Per CPU: hooked `set_graph_notrace` calls outstanding (nothing is recorded below them).
static NOTRACE_ACTIVE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// `max_graph_depth` (`u32::MAX`: none). Changes only while the tracer is unregistered.
static MAX_DEPTH: AtomicU32 = AtomicU32::new(u32::MAX);
/// Per-call mark (in the fgraph data) of a call hooked only to silence its callees.
const NOTRACE_MARK: u8 = 0x4e;

// The callbacks are notrace, as Linux builds kernel/trace without -pg. Two graph ops: the usual
// one records every call, and has direct hooks (the fgraph core inlines its callbacks while it
// is the only graph ops); the filtered one, used while `set_graph_function` or
// `set_graph_notrace` is set, keeps the per-CPU counts those need.

/// The usual callbacks.
struct Graph;

impl fgraph::FgraphCallbacks for Graph {
    const USES_DATA: bool = false;

    fn ops() -> &'static FgraphOps {
        &FUNCTION_GRAPH
    }

    #[inline(always)]
    fn entry(ent: &FgraphEnt, ops: &FgraphOps, data: &mut FgraphData) -> bool {
        entry(ent, ops, data)
    }

    #[inline(always)]
    fn ret(r: &FgraphRet, ops: &FgraphOps, data: &FgraphData) {
        ret(r, ops, data)
    }
}

#[inline(always)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn entry(ent: &FgraphEnt, _ops: &FgraphOps, _data: &mut FgraphData) -> bool {
    if ent.depth >= MAX_DEPTH.load(Ordering::Relaxed) {
        return false;
    }
    let Some(word) = event_word(KIND_GRAPH_ENTRY, ent.depth) else { return false };
    tracer::record_raw(ent.calltime, word, ent.func, ent.parent, 0);
    true
}

#[inline(always)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn ret(r: &FgraphRet, _ops: &FgraphOps, _data: &FgraphData) {
    let Some(word) = event_word(KIND_GRAPH_RETURN, r.depth) else { return };
    let duration = r.rettime.saturating_sub(r.calltime);
    tracer::record_raw(r.rettime, word, r.func, r.retval, duration);
}

/// The kind-and-depth word of a graph event ([`TraceEntry::kind_depth_word`]) at call depth
/// `depth`: `None` (the call is not recorded, and counted in [`TOO_DEEP`]) beyond the event's
/// 16-bit depth field. (The word is tested rather than the depth, which keeps the compiler
/// from masking the depth it already tested.)
#[inline(always)]
fn event_word(kind: u8, depth: u32) -> Option<u64> {
    let word = TraceEntry::kind_depth_word(kind, depth as u64);
    if word >> 32 != 0 {
        TOO_DEEP.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(word)
}

/// Calls too deep for an event's depth field, not recorded.
pub static TOO_DEEP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn entry_filtered(ent: &FgraphEnt, ops: &FgraphOps, data: &mut FgraphData) -> bool {
    let cpu = arch::cpu::id() % MAX_CPUS;
    if NOTRACE_ACTIVE[cpu].load(Ordering::Relaxed) != 0 {
        return false;
    }
    let notrace = GRAPH_NOTRACE.load(Ordering::Acquire);
    // SAFETY: the set is replaced only while the tracer is unregistered.
    if !notrace.is_null() && sites::index_of(ent.func).is_some_and(|i| unsafe { (*notrace).contains(i) }) {
        let Some(mark) = data.reserve(1) else { return false };
        mark[0] = NOTRACE_MARK;
        NOTRACE_ACTIVE[cpu].fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let filter = GRAPH_FUNCTIONS.load(Ordering::Acquire);
    if !filter.is_null() && ACTIVE[cpu].load(Ordering::Relaxed) == 0 {
        // SAFETY: the filter is replaced only while the tracer is unregistered.
        let wanted = sites::index_of(ent.func).is_some_and(|i| unsafe { (*filter).contains(i) });
        if !wanted {
            return false;
        }
    }
    if !entry(ent, ops, data) {
        return false;
    }
    ACTIVE[cpu].fetch_add(1, Ordering::Relaxed);
    true
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn ret_filtered(r: &FgraphRet, ops: &FgraphOps, data: &FgraphData) {
    let cpu = arch::cpu::id() % MAX_CPUS;
    if data.retrieve() == Some(&[NOTRACE_MARK]) {
        NOTRACE_ACTIVE[cpu].fetch_sub(1, Ordering::Relaxed);
        return;
    }
    ACTIVE[cpu].fetch_sub(1, Ordering::Relaxed);
    ret(r, ops, data);
}

/// The tracer's graph ops (no `set_graph_function` / `set_graph_notrace`).
pub static FUNCTION_GRAPH: FgraphOps = FgraphOps::with_direct_hooks::<Graph>(entry, ret);
/// The tracer's graph ops while `set_graph_function` or `set_graph_notrace` is set.
pub static FUNCTION_GRAPH_FILTERED: FgraphOps = FgraphOps::new(entry_filtered, ret_filtered);

/// The tracer's registered graph ops, if it runs.
fn registered() -> Option<&'static FgraphOps> {
    [&FUNCTION_GRAPH, &FUNCTION_GRAPH_FILTERED].into_iter().find(|o| fgraph::is_registered(o))
}

/// What to trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct GraphConfig<'a> {
    /// `set_graph_function`: functions that start a graph (all when `None`).
    pub graph_function: Option<&'a str>,
    /// `set_ftrace_filter`: functions whose sites are enabled at all (all when `None`).
    pub ftrace_filter: Option<&'a str>,
    /// `max_graph_depth`: deepest nesting recorded (0 = unlimited).
    pub max_depth: u32,
}

/// Starts the function_graph tracer.
pub fn start(cfg: &GraphConfig) -> Result<(), FtraceError> {
    if registered().is_some() {
        return Err(FtraceError::AlreadyRegistered);
    }
    let graph = match cfg.graph_function {
        Some(text) => Some(super::core::resolve_filter(text)?),
        None => None,
    };
    match cfg.ftrace_filter {
        Some(f) => super::ftrace_set_filter(&fgraph::GRAPH_SITE_OPS, f, true)?,
        None => super::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS)?,
    }
    start_sets(graph, None, cfg.max_depth)
}

/// Starts the tracer with `set_graph_function` (`None`: every function starts a graph) and
/// `set_graph_notrace` given as site sets; the sites enabled are whatever
/// `fgraph::GRAPH_SITE_OPS`' filter says (left as it is).
pub fn start_sets(graph: Option<SiteSet>, notrace: Option<SiteSet>, max_depth: u32) -> Result<(), FtraceError> {
    if registered().is_some() {
        return Err(FtraceError::AlreadyRegistered);
    }
    let publish = |slot: &AtomicPtr<SiteSet>, set: Option<SiteSet>| {
        let new = set.map_or(core::ptr::null_mut(), |s| Box::into_raw(Box::new(s)));
        let old = slot.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: the tracer is not registered, so nothing reads the old set.
            drop(unsafe { Box::from_raw(old) });
        }
    };
    let ops = if graph.is_some() || notrace.is_some() { &FUNCTION_GRAPH_FILTERED } else { &FUNCTION_GRAPH };
    publish(&GRAPH_FUNCTIONS, graph);
    publish(&GRAPH_NOTRACE, notrace);
    MAX_DEPTH.store(if max_depth == 0 { u32::MAX } else { max_depth }, Ordering::Relaxed);
    ACTIVE.iter().for_each(|a| a.store(0, Ordering::Relaxed));
    NOTRACE_ACTIVE.iter().for_each(|a| a.store(0, Ordering::Relaxed));
    fgraph::register_ftrace_graph(ops)
}

/// Stops the tracer (the buffers keep their events) and drops the graph sites' filter.
pub fn stop() -> Result<(), FtraceError> {
    stop_keep_filter()?;
    super::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS)
}

/// Stops the tracer, leaving `fgraph::GRAPH_SITE_OPS`' filter to its owner (tracefs).
pub fn stop_keep_filter() -> Result<(), FtraceError> {
    fgraph::unregister_ftrace_graph(registered().ok_or(FtraceError::NotRegistered)?)
}

/// Whether the tracer is registered.
pub fn is_running() -> bool {
    registered().is_some()
}

/// `   12.345 us` style duration of `ticks` counter ticks (13 columns, as Linux aligns it).
fn write_duration(w: &mut dyn Write, ticks: u64) -> core::fmt::Result {
    let ns = crate::time::ticks_to_ns(ticks);
    write!(w, "{:>7}.{:03} us", ns / 1000, ns % 1000)
}

const NO_DURATION: &str = "             ";

/// Writes graph events in Linux's `function_graph` layout.
pub fn write_graph(w: &mut dyn Write, c: &Collected) -> core::fmt::Result {
    write_graph_marked(w, c, None)
}

/// [`write_graph`], with `trace_marker` events as Linux's comment lines (`/* text */`, indented
/// as a call at that point would be) when `marker` gives their texts by number.
pub fn write_graph_marked<'m>(w: &mut dyn Write, c: &Collected, marker: Option<&dyn Fn(u64) -> &'m str>) -> core::fmt::Result {
    writeln!(w, "# tracer: function_graph")?;
    writeln!(w, "#")?;
    writeln!(w, "# CPU    DURATION       FUNCTION CALLS")?;
    writeln!(w, "# |       |   |          |   |   |   |")?;
    let ev: alloc::vec::Vec<&TraceEntry> = c
        .events
        .iter()
        .filter(|e| e.kind == KIND_GRAPH_ENTRY || e.kind == KIND_GRAPH_RETURN || (e.kind == tracer::KIND_MARKER && marker.is_some()))
        .collect();
    // Per CPU, the depth a call starting now would have (for the markers' indentation).
    let mut level = [0usize; arch::boot::MAX_CPUS];
    // A call whose return is the next event *of its CPU* prints as one leaf line (as Linux peeks
    // the same CPU's buffer); the return is then skipped when the merged walk reaches it.
    let mut leaf_returns = alloc::vec![false; ev.len()];
    for (i, &e) in ev.iter().enumerate() {
        if leaf_returns[i] {
            continue;
        }
        let cpu_level = &mut level[e.cpu as usize % arch::boot::MAX_CPUS];
        if let (tracer::KIND_MARKER, Some(text)) = (e.kind, marker) {
            let indent = 2 * (*cpu_level + 1);
            writeln!(w, " {})  {NO_DURATION}  |{:indent$}/* {} */", e.cpu, "", text(e.extra))?;
            continue;
        }
        *cpu_level = if e.kind == KIND_GRAPH_ENTRY { e.depth as usize + 1 } else { e.depth as usize };
        let indent = 2 * (e.depth as usize + 1);
        let name = tracer::short_name(e.ip);
        write!(w, " {})  ", e.cpu)?;
        let next = ev[i + 1..].iter().position(|n| n.cpu == e.cpu).map(|k| i + 1 + k);
        let leaf = next.filter(|&n| {
            e.kind == KIND_GRAPH_ENTRY && ev[n].kind == KIND_GRAPH_RETURN && ev[n].ip == e.ip && ev[n].depth == e.depth
        });
        if let Some(n) = leaf {
            leaf_returns[n] = true;
            write_duration(w, ev[n].extra)?;
            writeln!(w, "  |{:indent$}{name}();", "")?;
        } else if e.kind == KIND_GRAPH_ENTRY {
            writeln!(w, "{NO_DURATION}  |{:indent$}{name}() {{", "")?;
        } else {
            write_duration(w, e.extra)?;
            writeln!(w, "  |{:indent$}}} /* {name} */", "")?;
        }
    }
    Ok(())
}

/// Tells the ftrace core about `set_graph_function` (at boot): a module whose sites it names is
/// in use.
pub fn init() {
    super::core::set_module_site_users(|range| graph_function_filter_uses(range).then(|| "set_graph_function".into()));
}

/// Whether the running tracer's `set_graph_function` names a site in `range` (a module that is
/// about to unload is then in use).
pub fn graph_function_filter_uses(range: core::ops::Range<usize>) -> bool {
    let filter = GRAPH_FUNCTIONS.load(Ordering::Acquire);
    // SAFETY: the filter is replaced only by `start`, which runs under the same callers' lock
    // discipline as this check (self-test or shell CPU).
    registered().is_some() && !filter.is_null() && unsafe { (*filter).intersects(range) }
}
