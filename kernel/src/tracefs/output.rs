//! The text of `trace`, `trace_pipe` and `per_cpu/cpuN/trace*`: Linux's function and
//! function_graph layouts, with the `trace_options` that change them.

use super::Options;
use crate::ftrace::tracer::{self, KIND_MARKER, KIND_STACK};
use crate::ringbuf::{KIND_FUNC, KIND_GRAPH_ENTRY, KIND_GRAPH_RETURN, TraceEntry};
use crate::shell::parse::{duration_mark, write_graph_duration};
use alloc::vec::Vec;
use core::fmt::{Result, Write};

/// The tracer whose layout is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Function,
    Graph,
}

fn ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / crate::time::counter_hz() as u128) as u64
}

/// `name`, or `name+0xoff/0xsize` with `sym-offset`, then ` [addr]` with `sym-addr`.
fn write_sym(w: &mut dyn Write, addr: u64, opts: Options) -> Result {
    if opts.contains(Options::SYM_OFFSET) {
        let s = crate::ksyms::sym(addr);
        let full = alloc::format!("{s}");
        w.write_str(full.strip_prefix("loongtrace_kernel::").unwrap_or(&full))?;
    } else {
        w.write_str(tracer::short_name(addr))?;
    }
    if opts.contains(Options::SYM_ADDR) {
        write!(w, " <{addr:016x}>")?;
    }
    Ok(())
}

/// The header of the function layout (`# tracer: NAME` and the column legend).
pub fn write_function_header(w: &mut dyn Write, tracer_name: &str, entries: u64, written: u64, cpus: usize) -> Result {
    writeln!(w, "# tracer: {tracer_name}")?;
    writeln!(w, "#")?;
    writeln!(w, "# entries-in-buffer/entries-written: {entries}/{written}   #P:{cpus}")?;
    writeln!(w, "#")?;
    writeln!(w, "#                                _-----=> irqs-off/BH-disabled")?;
    writeln!(w, "#                               / _----=> need-resched")?;
    writeln!(w, "#                              | / _---=> hardirq/softirq")?;
    writeln!(w, "#                              || / _--=> preempt-depth")?;
    writeln!(w, "#                              ||| / _-=> migrate-disable")?;
    writeln!(w, "#                              |||| /     delay")?;
    writeln!(w, "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION")?;
    writeln!(w, "#              | |         |   |||||     |         |")
}

/// The header of the function_graph layout.
pub fn write_graph_header(w: &mut dyn Write, opts: Options) -> Result {
    writeln!(w, "# tracer: function_graph")?;
    writeln!(w, "#")?;
    let (mut a, mut b) = (alloc::string::String::from("#"), alloc::string::String::from("#"));
    if opts.contains(Options::FUNCGRAPH_ABSTIME) {
        a.push_str("     TIME       ");
        b.push_str("      |         ");
    }
    if opts.contains(Options::FUNCGRAPH_CPU) {
        a.push_str(" CPU");
        b.push_str(" |  ");
    }
    if opts.contains(Options::FUNCGRAPH_DURATION) {
        a.push_str("  DURATION        ");
        b.push_str("   |   |          ");
    }
    a.push_str("          FUNCTION CALLS");
    b.push_str("           |   |   |   |");
    writeln!(w, "{a}")?;
    writeln!(w, "{b}")
}


/// Sorts the entries of several CPUs (each CPU's run in buffer order) by time, keeping each
/// event record's continuation slots right after its first slot (they carry no time of their
/// own). Stable: entries of one CPU with equal times stay in buffer order.
pub fn sort_events(v: &mut Vec<TraceEntry>) {
    let mut key = (0u64, 0u8);
    let mut keyed: Vec<((u64, u8), TraceEntry)> = v
        .drain(..)
        .map(|e| {
            if e.kind != crate::ringbuf::KIND_CONT {
                key = (e.ts, e.cpu);
            }
            (key, e)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    v.extend(keyed.into_iter().map(|(_, e)| e));
}

/// Writes events in the given layout. A graph entry immediately followed by its own return is
/// one leaf line (`func();`), as Linux prints it. `markers` maps a marker event to its text.
pub fn write_events(w: &mut dyn Write, ev: &[TraceEntry], layout: Layout, opts: Options, marker: &dyn Fn(u64) -> Option<alloc::string::String>) -> Result {
    let mut i = 0;
    while i < ev.len() {
        let e = &ev[i];
        match (e.kind, layout) {
            (KIND_FUNC, _) => {
                tracer::write_line_prefix(w, e, e.depth)?;
                write_sym(w, e.ip, opts)?;
                if opts.contains(Options::PRINT_PARENT) {
                    w.write_str(" <-")?;
                    write_sym(w, e.parent, opts)?;
                }
                w.write_char('\n')?;
            }
            (KIND_MARKER, Layout::Function) => {
                tracer::write_line_prefix(w, e, e.depth)?;
                writeln!(w, "tracing_mark_write: {}", marker(e.extra).unwrap_or_else(|| formats::wire::MARKER_OVERWRITTEN.into()))?;
            }
            (KIND_MARKER, Layout::Graph) => {
                write_graph_columns(w, e, None, opts)?;
                writeln!(w, "/* {} */", marker(e.extra).unwrap_or_else(|| formats::wire::MARKER_OVERWRITTEN.into()))?;
            }
            (crate::bpfrt::printk::KIND_BPF_PRINTK, Layout::Function) => {
                tracer::write_line_prefix(w, e, e.depth)?;
                writeln!(w, "bpf_trace_printk: {}", bpf_text(e.extra))?;
            }
            (crate::bpfrt::printk::KIND_BPF_PRINTK, Layout::Graph) => {
                write_graph_columns(w, e, None, opts)?;
                writeln!(w, "/* bpf_trace_printk: {} */", bpf_text(e.extra))?;
            }
            (crate::events::registry::KIND_EVENT, Layout::Function) => {
                tracer::write_line_prefix(w, e, e.depth)?;
                let rest = &ev[i + 1..(i + 1 + e.cont as usize).min(ev.len())];
                crate::events::registry::write_event_text(w, e, rest)?;
                w.write_char('\n')?;
                i += 1 + rest.len();
                continue;
            }
            (crate::events::registry::KIND_EVENT, Layout::Graph) => {
                write_graph_columns(w, e, None, opts)?;
                let rest = &ev[i + 1..(i + 1 + e.cont as usize).min(ev.len())];
                w.write_str("/* ")?;
                crate::events::registry::write_event_text(w, e, rest)?;
                w.write_str(" */\n")?;
                i += 1 + rest.len();
                continue;
            }
            (KIND_STACK, _) => {
                if e.depth == 0 {
                    tracer::write_line_prefix(w, e, e.extra as u16)?;
                    w.write_str("<stack trace>\n => ")?;
                    write_sym(w, e.ip, opts)?;
                    w.write_char('\n')?;
                }
                w.write_str(" => ")?;
                write_sym(w, e.parent, opts)?;
                w.write_char('\n')?;
            }
            (KIND_GRAPH_ENTRY, _) | (KIND_GRAPH_RETURN, _) => {
                let indent = 2 * e.depth as usize;
                let leaf = e.kind == KIND_GRAPH_ENTRY
                    && ev.get(i + 1).is_some_and(|n| n.kind == KIND_GRAPH_RETURN && n.ip == e.ip && n.depth == e.depth && n.cpu == e.cpu);
                if leaf {
                    let r = &ev[i + 1];
                    write_graph_columns(w, e, Some(r.extra), opts)?;
                    write!(w, "{:indent$}", "")?;
                    write_sym(w, e.ip, opts)?;
                    w.write_str("();")?;
                    if opts.contains(Options::FUNCGRAPH_RETVAL) {
                        write!(w, " /* = {:#x} */", r.parent)?;
                    }
                    w.write_char('\n')?;
                    i += 2;
                    continue;
                }
                if e.kind == KIND_GRAPH_ENTRY {
                    write_graph_columns(w, e, None, opts)?;
                    write!(w, "{:indent$}", "")?;
                    write_sym(w, e.ip, opts)?;
                    w.write_str("() {\n")?;
                } else {
                    write_graph_columns(w, e, Some(e.extra), opts)?;
                    write!(w, "{:indent$}}}", "")?;
                    let tail = opts.contains(Options::FUNCGRAPH_TAIL);
                    if opts.contains(Options::FUNCGRAPH_RETVAL) {
                        w.write_str(" /* ")?;
                        write_sym(w, e.ip, opts)?;
                        write!(w, " = {:#x} */", e.parent)?;
                    } else if tail {
                        w.write_str(" /* ")?;
                        write_sym(w, e.ip, opts)?;
                        w.write_str(" */")?;
                    }
                    w.write_char('\n')?;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The text of `bpf_trace_printk` event `id`, or the overwritten marker's.
fn bpf_text(id: u64) -> alloc::string::String {
    crate::bpfrt::printk::text(id).unwrap_or_else(|| crate::bpfrt::printk::TEXT_OVERWRITTEN.into())
}

/// The columns before a graph line's function: absolute time, CPU, duration (`ticks`, or blank).
fn write_graph_columns(w: &mut dyn Write, e: &TraceEntry, ticks: Option<u64>, opts: Options) -> Result {
    if opts.contains(Options::FUNCGRAPH_ABSTIME) {
        let t = ns(e.ts);
        write!(w, "{:>6}.{:06} |  ", t / 1_000_000_000, t % 1_000_000_000 / 1000)?;
    }
    if opts.contains(Options::FUNCGRAPH_CPU) {
        write!(w, " {}) ", e.cpu)?;
    }
    if opts.contains(Options::FUNCGRAPH_DURATION) {
        match ticks {
            Some(t) => {
                let d = ns(t);
                write!(w, "{} ", duration_mark(d))?;
                write_graph_duration(w, d)?;
                w.write_str("|  ")?;
            }
            None => w.write_str("              |  ")?,
        }
    } else {
        w.write_str("  |  ")?;
    }
    Ok(())
}
