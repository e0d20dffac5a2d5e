//! `record=...` boots: run a tracer over a workload, print the trace, send it to the host in binary.
//!
//! Command-line words (all but `record` optional):
//!
//! | word | meaning |
//! |---|---|
//! | `record=function\|function_graph` | the tracer |
//! | `record_filter=<globs>` | `set_ftrace_filter` (functions whose sites are enabled; `\|`-separated) |
//! | `record_graph=<globs>` | `set_graph_function` (function_graph only; `\|`-separated) |
//! | `record_depth=<n>` | `max_graph_depth` (function_graph only, 0 = unlimited) |
//! | `record_workload=chain\|smp_chain\|filter\|script\|idle\|busy` | what runs while tracing (default `chain`; `filter` resolves a filter line against every site, as writing `set_ftrace_filter` does; `script` runs the shell lines of the boot script, see below; `busy` runs the chain over and over on every CPU for `record_ms`) |
//! | `record_ms=<n>` | keep tracing this long after the workload (timer ticks, idle loops); the `busy` workload's length |
//! | `record_stream` | publish the rings for the host to read while tracing (`ftrace::stream`) instead of sending them at the end |
//! | `record_fault=corrupt\|die` | test hook: damage one frame, or power off mid-transfer |
//!
//! With `record_workload=script` the workload is the tracefs shell running the lines of the
//! fw_cfg file that the `script` word names (as a boot script: `script` alone is
//! `opt/loongtrace/script`), e.g. `run chain` between `echo ... > trace_marker` lines; the
//! recording's tracer runs meanwhile (the script should not change `current_tracer`).
//!
//! The trace is printed in Linux's `trace` text first (what `cat trace` would show), then sent as
//! the frames of [`formats::wire`]: metadata, the symbol table, every CPU's events, the texts of
//! the `trace_marker` writes the events name, end.

use crate::cmdline::RecordOptions;
use crate::ftrace::graph_tracer::{self, GraphConfig};
use crate::ftrace::tracer::{self, Collected};
use crate::ringbuf::TraceEntry;
use crate::selftest::targets::chain_root;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use formats::wire::{self, Kind, Record};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;

// The ring buffer's kinds are the wire's kinds.
const _: () = assert!(
    crate::ringbuf::KIND_FUNC == wire::KIND_FUNC
        && crate::ringbuf::KIND_GRAPH_ENTRY == wire::KIND_GRAPH_ENTRY
        && crate::ringbuf::KIND_GRAPH_RETURN == wire::KIND_GRAPH_RETURN
        && tracer::KIND_MARKER == wire::KIND_MARKER
        && crate::events::registry::KIND_EVENT == wire::KIND_EVENT
        && crate::ringbuf::KIND_CONT == wire::KIND_CONT
        && crate::ringbuf::CONT_BYTES == wire::CONT_BYTES
        && tracer::FLAG_IRQS_OFF == wire::FLAG_IRQS_OFF
        && tracer::FLAG_IN_TRAP == wire::FLAG_IN_TRAP
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracer {
    /// No function tracer: trace events only.
    Nop,
    Function,
    Graph,
}

/// The fw_cfg file whose lines set up the recording's trace events (shell lines such as
/// `echo 'p:myprobe chain_c x=%a0' >> kprobe_events` and `echo kprobes:myprobe >> set_event`),
/// run before tracing starts; `ltrace record -e/--kprobe` writes it.
pub const EVENTS_SETUP: &str = "opt/loongtrace/record_events";

/// Runs the recording the command line asks for (its `record*` words, checked by
/// `crate::cmdline`; `script` names the boot script's fw_cfg file); prints an error line and
/// returns if it cannot.
pub fn run(rec: &RecordOptions<'_>, script: Option<&str>) {
    if let Err(e) = run_inner(rec, script) {
        println!("record: {e}");
    }
}

fn run_inner(rec: &RecordOptions<'_>, script_key: Option<&str>) -> Result<(), String> {
    let tracer = match rec.tracer {
        Some("nop") => Tracer::Nop,
        Some("function") => Tracer::Function,
        Some("function_graph") => Tracer::Graph,
        other => return Err(format!("unknown tracer {:?} (use nop, function or function_graph)", other.unwrap_or(""))),
    };
    if rec.stream && rec.workload == Some("script") {
        return Err("record_stream takes the records the rings hold; a script's trace_marker texts are kept outside them (drop record_stream)".into());
    }
    // A streamed recording's reader takes event records as Linux lays them out, never in the
    // kernel's one-slot form.
    crate::events::registry::set_whole_records(rec.stream);
    // Trace events: definitions and `set_event` lines, each of which must print nothing.
    if let Some(setup) = crate::shell::console::read_script(EVENTS_SETUP) {
        for line in setup.lines().filter(|l| !l.trim().is_empty()) {
            let mut out = String::new();
            crate::tracefs::execute(line, &mut out);
            if !out.is_empty() {
                return Err(format!("setting up events: '{line}': {}", out.trim_end()));
            }
        }
    }
    let workload = rec.workload.unwrap_or("chain");
    // Read before tracing starts, so a missing file changes nothing.
    let script = match workload {
        "script" => {
            let name = crate::shell::console::script_name(script_key);
            let text = crate::shell::console::read_script(name)
                .ok_or_else(|| format!("record_workload=script: no fw_cfg file '{name}' holds the script"))?;
            Some(text)
        }
        _ => None,
    };
    let (ms, depth, fault) = (rec.ms, rec.depth, rec.fault);
    // Lists on the command line are `|`-separated; filter lines are space-separated.
    let filter = rec.filter.map(|f| f.replace('|', " "));
    let graph = rec.graph.map(|f| f.replace('|', " "));
    let (filter, graph) = (filter.as_deref(), graph.as_deref());
    if tracer == Tracer::Function && (graph.is_some() || depth != 0) {
        return Err("record_graph and record_depth need record=function_graph".into());
    }

    tracer::reset_buffers();
    if rec.stream {
        // The host learns where the rings are, then the CPUs, the clock and the symbols (an
        // export without events).
        let cpus = crate::smp::online().clamp(1, MAX_CPUS);
        let pa = crate::ftrace::stream::publish(cpus);
        println!("{}{pa:#x}", formats::stream::CONTROL_LINE);
        let empty: Vec<CpuEvents> = (0..cpus).map(|_| CpuEvents { events: Vec::new(), lost: 0, written: 0 }).collect();
        // The formats of every enabled event (the records are not known yet).
        let enabled: Vec<u16> = crate::events::registry::all().iter().filter(|e| e.is_enabled()).map(|e| e.id).collect();
        send(tracer, &empty, &[], &enabled, None);
    }
    let started = match tracer {
        Tracer::Nop => Ok(()),
        Tracer::Function => tracer::start(filter),
        Tracer::Graph => graph_tracer::start(&GraphConfig {
            graph_function: graph,
            ftrace_filter: filter,
            max_depth: u32::try_from(depth).unwrap_or(u32::MAX),
        }),
    };
    started.map_err(|e| format!("cannot start the tracer: {e}"))?;
    run_workload(workload, script.as_deref(), ms);
    let stopped = match tracer {
        Tracer::Nop => Ok(()),
        Tracer::Function => tracer::stop(),
        Tracer::Graph => graph_tracer::stop(),
    };
    stopped.map_err(|e| format!("cannot stop the tracer: {e}"))?;
    // Events stop with the tracer.
    let _ = crate::tracefs::File::SetEvent.write("", false);
    if rec.stream {
        crate::ftrace::stream::stop();
        crate::events::registry::set_whole_records(false);
        println!("{}", formats::stream::STOPPED_LINE);
        return Ok(());
    }

    let per_cpu = take_buffers();
    let markers = marker_texts(&per_cpu);
    print_text(tracer, &per_cpu, &markers);
    send(tracer, &per_cpu, &markers, &[], fault);
    Ok(())
}

/// Counter value at which the `busy` workload stops.
static BUSY_UNTIL: AtomicU64 = AtomicU64::new(0);

/// The `busy` workload on one CPU: the chain, again and again, until [`BUSY_UNTIL`].
fn busy_on_cpu(cpu: usize) {
    while arch::time::ticks() < BUSY_UNTIL.load(Ordering::Acquire) {
        chain_on_cpu(cpu);
    }
}

#[inline(never)]
fn chain_on_cpu(cpu: usize) {
    core::hint::black_box(chain_root(cpu as u64 + 1));
}

fn run_workload(workload: &str, script: Option<&str>, ms: u64) {
    match workload {
        "script" => {
            // A `poweroff` line ends the script; the recording is still sent.
            crate::shell::console::run_script(script.unwrap_or(""));
            println!();
        }
        "chain" => chain_on_cpu(0),
        "smp_chain" => {
            let cpus: Vec<usize> = (1..MAX_CPUS).filter(|&c| crate::smp::run_on(c, chain_on_cpu)).collect();
            chain_on_cpu(arch::cpu::id());
            let t0 = arch::time::ticks();
            while cpus.iter().any(|&c| crate::smp::work_running(c)) {
                if arch::time::ticks() - t0 > crate::time::counter_hz() {
                    println!("record: a CPU did not finish the workload within 1 s");
                    break;
                }
                arch::cpu::idle();
            }
        }
        "filter" => {
            let set = crate::ftrace::core::resolve_filter("*::record::*");
            core::hint::black_box(set.is_ok());
        }
        "busy" => {
            BUSY_UNTIL.store(arch::time::ticks() + ms * crate::time::counter_hz() / 1000, Ordering::Release);
            let cpus: Vec<usize> = (1..MAX_CPUS).filter(|&c| crate::smp::run_on(c, busy_on_cpu)).collect();
            busy_on_cpu(arch::cpu::id());
            while cpus.iter().any(|&c| crate::smp::work_running(c)) {
                arch::cpu::idle();
            }
            return;
        }
        _ => {}
    }
    if ms > 0 {
        let end = arch::time::ticks() + ms * crate::time::counter_hz() / 1000;
        while arch::time::ticks() < end {
            arch::cpu::idle();
        }
    }
}

/// One CPU's events, oldest first, and its counters.
struct CpuEvents {
    events: Vec<TraceEntry>,
    lost: u64,
    written: u64,
}

fn take_buffers() -> Vec<CpuEvents> {
    let cpus = crate::smp::online().clamp(1, MAX_CPUS);
    tracer::BUFFERS[..cpus]
        .iter()
        .map(|b| {
            let mut events = Vec::new();
            let written = b.written();
            let st = b.snapshot(|_, e| crate::events::registry::push_expanded(&mut events, e));
            CpuEvents { events, lost: st.lost, written }
        })
        .collect()
}

/// The texts of the markers the events name, by number (a text the shell no longer keeps is
/// missing; both the text and the host then show it as overwritten).
fn marker_texts(per_cpu: &[CpuEvents]) -> Vec<(u64, String)> {
    let mut ids: Vec<u64> = per_cpu.iter().flat_map(|c| &c.events).filter(|e| e.kind == tracer::KIND_MARKER).map(|e| e.extra).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().filter_map(|id| crate::tracefs::marker_text(id).map(|t| (id, t))).collect()
}

/// What the trace shows for marker `id`.
fn marker_shown(markers: &[(u64, String)], id: u64) -> &str {
    match markers.binary_search_by_key(&id, |m| m.0) {
        Ok(i) => &markers[i].1,
        Err(_) => wire::MARKER_OVERWRITTEN,
    }
}

fn print_text(tracer: Tracer, per_cpu: &[CpuEvents], markers: &[(u64, String)]) {
    let mut all = Collected { events: Vec::new(), lost: 0, written: 0 };
    for c in per_cpu {
        all.events.extend_from_slice(&c.events);
        all.lost += c.lost;
        all.written += c.written;
    }
    crate::tracefs::output::sort_events(&mut all.events);
    crate::console::with_console(|w| {
        let _ = match tracer {
            Tracer::Function | Tracer::Nop => tracer::write_header(w, if tracer == Tracer::Nop { "nop" } else { "function" }, &all).and_then(|()| {
                all.events.iter().enumerate().try_for_each(|(i, e)| match e.kind {
                    tracer::KIND_MARKER => tracer::write_marker_line(w, e, marker_shown(markers, e.extra)),
                    crate::events::registry::KIND_EVENT => {
                        tracer::write_line_prefix(w, e, e.depth)?;
                        let rest = &all.events[i + 1..(i + 1 + e.cont as usize).min(all.events.len())];
                        crate::events::registry::write_event_text(w, e, rest)?;
                        w.write_char('\n')
                    }
                    crate::ringbuf::KIND_CONT => Ok(()),
                    _ => tracer::write_function_line(w, e),
                })
            }),
            Tracer::Graph => graph_tracer::write_graph_marked(w, &all, Some(&|id| marker_shown(markers, id))),
        };
    });
}

/// Sends raw bytes, counting them; the test hooks act on the way.
struct Sender {
    sent: u64,
    /// Flip the byte at this offset (`record_fault=corrupt`).
    corrupt_at: Option<u64>,
    /// Power off once this many bytes are out (`record_fault=die`).
    die_at: Option<u64>,
}

impl Sender {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.die_at == Some(self.sent) {
                arch::power::power_off();
            }
            let b = if self.corrupt_at == Some(self.sent) { b ^ 0x20 } else { b };
            arch::uart::put_byte(b);
            self.sent += 1;
        }
    }

    fn frame(&mut self, seq: &mut u32, kind: Kind, cpu: u8, payload: &[u8]) {
        wire::write_frame(kind, cpu, *seq, payload, |b| self.put(b));
        *seq += 1;
    }
}

fn frame_bytes(payload: usize) -> u64 {
    (wire::HEADER_LEN + payload + wire::CRC_LEN) as u64
}

/// Splits the markers into `Markers` frame payloads (a marker never spans two frames).
fn marker_payloads(markers: &[(u64, String)]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (id, text) in markers {
        if out.last().is_none_or(|p| p.len() + wire::marker_len(text) > wire::MAX_PAYLOAD) {
            out.push(Vec::new());
        }
        wire::encode_marker(*id, text, out.last_mut().expect("pushed"));
    }
    out
}

/// The `Format` frames: each trace event the records name, as `system\nformat text`.
/// The `Format` frames of the events the records name, and of `more`.
fn format_payloads(per_cpu: &[CpuEvents], more: &[u16]) -> Vec<Vec<u8>> {
    let mut ids: Vec<u16> = per_cpu.iter().flat_map(|c| &c.events).filter(|e| e.kind == crate::events::registry::KIND_EVENT).map(|e| e.parent as u16).collect();
    ids.extend_from_slice(more);
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(crate::events::registry::by_id)
        .map(|ev| format!("{}\n{}", ev.system(), ev.layout.format_file(ev.id)).into_bytes())
        .filter(|p| p.len() <= wire::MAX_PAYLOAD)
        .collect()
}

fn send(tracer: Tracer, per_cpu: &[CpuEvents], markers: &[(u64, String)], formats_of: &[u16], fault: Option<&str>) {
    let marker_frames = marker_payloads(markers);
    let format_frames = format_payloads(per_cpu, formats_of);
    let symtab = crate::ksyms::raw_table();
    // Everything after the metadata frame, so the host can show progress.
    let mut rest = 0u64;
    let mut frames = 1u32;
    for chunk in symtab.chunks(wire::MAX_PAYLOAD) {
        rest += frame_bytes(chunk.len());
        frames += 1;
    }
    for c in per_cpu {
        for chunk in c.events.chunks(wire::RECORDS_PER_FRAME) {
            rest += frame_bytes(chunk.len() * wire::RECORD_LEN);
            frames += 1;
        }
    }
    for p in marker_frames.iter().chain(&format_frames) {
        rest += frame_bytes(p.len());
        frames += 1;
    }
    rest += frame_bytes(4);
    frames += 1;

    let mut meta = String::new();
    let name = match tracer {
        Tracer::Nop => "nop",
        Tracer::Function => "function",
        Tracer::Graph => "function_graph",
    };
    let _ = writeln!(meta, "version=2\ntracer={name}\ncpus={}\ncounter_hz={}", per_cpu.len(), crate::time::counter_hz());
    let _ = writeln!(meta, "frames={frames}\nbytes_after_meta={rest}\nsymtab_bytes={}\nmarkers={}", symtab.len(), markers.len());
    for (cpu, c) in per_cpu.iter().enumerate() {
        let _ = writeln!(meta, "cpu{cpu}=events:{} lost:{} written:{}", c.events.len(), c.lost, c.written);
    }

    let total = frame_bytes(meta.len()) + rest;
    let mut tx = Sender {
        sent: 0,
        corrupt_at: (fault == Some("corrupt")).then(|| total / 2),
        die_at: (fault == Some("die")).then(|| total / 2),
    };
    crate::console::with_console(|w| {
        let _ = writeln!(w, "{}", wire::BEGIN_LINE);
        let mut seq = 0;
        tx.frame(&mut seq, Kind::Meta, 0, meta.as_bytes());
        for chunk in symtab.chunks(wire::MAX_PAYLOAD) {
            tx.frame(&mut seq, Kind::Symtab, 0, chunk);
        }
        let mut buf = Vec::with_capacity(wire::MAX_PAYLOAD);
        for (cpu, c) in per_cpu.iter().enumerate() {
            for chunk in c.events.chunks(wire::RECORDS_PER_FRAME) {
                buf.clear();
                for e in chunk {
                    // A continuation slot carries no CPU of its own: it is its frame's.
                    let rcpu = if e.kind == crate::ringbuf::KIND_CONT { cpu as u8 } else { e.cpu };
                    let r = Record { ts: e.ts, ip: e.ip, parent: e.parent, kind: e.kind, cpu: rcpu, depth: e.depth, extra: e.extra };
                    buf.extend_from_slice(&r.encode());
                }
                tx.frame(&mut seq, Kind::Events, cpu as u8, &buf);
            }
        }
        for p in &marker_frames {
            tx.frame(&mut seq, Kind::Markers, 0, p);
        }
        for p in &format_frames {
            tx.frame(&mut seq, Kind::Format, 0, p);
        }
        let n = seq;
        tx.frame(&mut seq, Kind::End, 0, &n.to_le_bytes());
        let _ = writeln!(w, "\n{}", wire::END_LINE);
    });
}
