//! The tracefs files: names, permissions, and what reading and writing each one does.

use super::output::{self, Layout};
use super::{MAX_BUFFER_KB, OPTION_NAMES, State, Tracer, apply_globs, cpus, errno_of, with_state};
use crate::ftrace::core::SiteFlags;
use crate::ftrace::probes::{self, Probe, ProbeKind};
use crate::ftrace::sites::{self, SiteSet};
use crate::ftrace::{self, fgraph, graph_tracer, profile, stack_tracer, tracer};
use crate::ringbuf::TraceEntry;
use crate::shell::parse::{self, Errno};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// One tracefs file (`Option<usize>`: a `per_cpu/cpuN` copy, `None` = all CPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    AvailableTracers,
    CurrentTracer,
    TracingOn,
    Trace(Option<usize>),
    TracePipe(Option<usize>),
    BufferSizeKb(Option<usize>),
    BufferTotalSizeKb,
    /// `per_cpu/cpuN/stats`.
    Stats(usize),
    SetFtraceFilter,
    SetFtraceNotrace,
    SetGraphFunction,
    SetGraphNotrace,
    MaxGraphDepth,
    AvailableFilterFunctions,
    EnabledFunctions,
    TouchedFunctions,
    TraceOptions,
    OptionFile(usize),
    TraceMarker,
    FunctionProfileEnabled,
    TraceStat(usize),
    StackTrace,
    StackMaxSize,
    StackTraceFilter,
    /// `/proc/sys/kernel/stack_tracer_enabled`.
    StackTracerEnabled,
    /// `/sys/kernel/debug/kprobes/blacklist`: the functions no kprobe may go into.
    KprobesBlacklist,
    /// `/sys/kernel/debug/kprobes/list`: the registered kprobes.
    KprobesList,
    AvailableEvents,
    SetEvent,
    KprobeEvents,
    DynamicEvents,
    KprobeProfile,
    ErrorLog,
    /// `events/enable` (`None`) or `events/<system>/enable` (the id of one of its events).
    EventsEnable(Option<u16>),
    /// A file of `events/<system>/<event>/` (the event's id).
    Event(u16, super::events::EvFile),
}

/// The files at the top of tracefs, by name.
const ROOT: &[(&str, File)] = &[
    ("available_filter_functions", File::AvailableFilterFunctions),
    ("available_tracers", File::AvailableTracers),
    ("buffer_size_kb", File::BufferSizeKb(None)),
    ("buffer_total_size_kb", File::BufferTotalSizeKb),
    ("current_tracer", File::CurrentTracer),
    ("enabled_functions", File::EnabledFunctions),
    ("function_profile_enabled", File::FunctionProfileEnabled),
    ("max_graph_depth", File::MaxGraphDepth),
    ("set_ftrace_filter", File::SetFtraceFilter),
    ("set_ftrace_notrace", File::SetFtraceNotrace),
    ("set_graph_function", File::SetGraphFunction),
    ("set_graph_notrace", File::SetGraphNotrace),
    ("stack_max_size", File::StackMaxSize),
    ("stack_trace", File::StackTrace),
    ("stack_trace_filter", File::StackTraceFilter),
    ("touched_functions", File::TouchedFunctions),
    ("trace", File::Trace(None)),
    ("trace_marker", File::TraceMarker),
    ("trace_options", File::TraceOptions),
    ("trace_pipe", File::TracePipe(None)),
    ("tracing_on", File::TracingOn),
];
const ROOT_DIRS: &[&str] = &["events", "options", "per_cpu", "trace_stat"];
const STACK_ENABLED_PATH: &str = "/proc/sys/kernel/stack_tracer_enabled";
/// Linux keeps the kprobe lists in debugfs, beside (not inside) tracefs.
const KPROBES_DIR: &str = "/sys/kernel/debug/kprobes";
const KPROBES_FILES: &[(&str, File)] = &[("blacklist", File::KprobesBlacklist), ("list", File::KprobesList)];

/// A path relative to tracefs' root (`""` = the root), or `None` outside tracefs.
fn relative(path: &str) -> Option<&str> {
    let p = path.trim_end_matches('/');
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if p == root {
            return Some("");
        }
        if let Some(rest) = p.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
            return Some(rest);
        }
    }
    if p.starts_with('/') {
        return None;
    }
    let mut p = p;
    while let Some(r) = p.strip_prefix("./") {
        p = r;
    }
    Some(if p == "." { "" } else { p })
}

fn cpu_dir(name: &str) -> Option<usize> {
    let n = name.strip_prefix("cpu")?;
    let cpu: usize = n.parse().ok().filter(|_| !n.starts_with('+') && !n.is_empty())?;
    (cpu < cpus()).then_some(cpu)
}

/// Names in a directory (sorted, directories included), `ENOTDIR` for a file, `ENOENT` else.
pub fn list_dir(path: &str) -> Result<Vec<String>, Errno> {
    let Some(rel) = relative(path) else {
        return if path.trim_end_matches('/') == "/proc/sys/kernel" {
            Ok(alloc::vec!["stack_tracer_enabled".into()])
        } else if path.trim_end_matches('/') == KPROBES_DIR {
            Ok(KPROBES_FILES.iter().map(|(n, _)| String::from(*n)).collect())
        } else if path == STACK_ENABLED_PATH || File::lookup(path).is_ok() {
            Err(Errno::ENOTDIR)
        } else {
            Err(Errno::ENOENT)
        };
    };
    let mut v: Vec<String> = match rel {
        "" => ROOT.iter().chain(super::events::ROOT).map(|(n, _)| *n).chain(ROOT_DIRS.iter().copied()).map(String::from).collect(),
        p if super::events::list_dir(p).is_some() => super::events::list_dir(p).unwrap_or(Err(Errno::ENOENT))?,
        "options" => OPTION_NAMES.iter().map(|(n, _)| String::from(*n)).collect(),
        "per_cpu" => (0..cpus()).map(|c| alloc::format!("cpu{c}")).collect(),
        "trace_stat" => (0..cpus()).map(|c| alloc::format!("function{c}")).collect(),
        p if p.strip_prefix("per_cpu/").and_then(cpu_dir).is_some() => {
            ["buffer_size_kb", "stats", "trace", "trace_pipe"].iter().map(|s| String::from(*s)).collect()
        }
        p => {
            File::lookup(p)?;
            return Err(Errno::ENOTDIR);
        }
    };
    v.sort();
    Ok(v)
}

impl File {
    /// The file at `path` (relative to tracefs or absolute); `EISDIR` for a directory.
    pub fn lookup(path: &str) -> Result<File, Errno> {
        if path == STACK_ENABLED_PATH {
            return Ok(File::StackTracerEnabled);
        }
        if path.trim_end_matches('/') == KPROBES_DIR {
            return Err(Errno::EISDIR);
        }
        if let Some(name) = path.strip_prefix(KPROBES_DIR).and_then(|r| r.strip_prefix('/')) {
            return KPROBES_FILES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or(Errno::ENOENT);
        }
        let rel = relative(path).ok_or(Errno::ENOENT)?;
        if rel.is_empty() || ROOT_DIRS.contains(&rel) {
            return Err(Errno::EISDIR);
        }
        if let Some((_, f)) = ROOT.iter().chain(super::events::ROOT).find(|(n, _)| *n == rel) {
            return Ok(*f);
        }
        if let Some(r) = super::events::lookup(rel) {
            return r;
        }
        if let Some(o) = rel.strip_prefix("options/") {
            return OPTION_NAMES.iter().position(|(n, _)| *n == o).map(File::OptionFile).ok_or(Errno::ENOENT);
        }
        if let Some(f) = rel.strip_prefix("trace_stat/function") {
            let cpu: usize = f.parse().map_err(|_| Errno::ENOENT)?;
            return if cpu < cpus() && !f.starts_with('+') { Ok(File::TraceStat(cpu)) } else { Err(Errno::ENOENT) };
        }
        if let Some(rest) = rel.strip_prefix("per_cpu/") {
            let (dir, file) = rest.split_once('/').unwrap_or((rest, ""));
            let cpu = cpu_dir(dir).ok_or(Errno::ENOENT)?;
            return match file {
                "" => Err(Errno::EISDIR),
                "trace" => Ok(File::Trace(Some(cpu))),
                "trace_pipe" => Ok(File::TracePipe(Some(cpu))),
                "buffer_size_kb" => Ok(File::BufferSizeKb(Some(cpu))),
                "stats" => Ok(File::Stats(cpu)),
                _ => Err(Errno::ENOENT),
            };
        }
        Err(Errno::ENOENT)
    }

    pub fn readable(self) -> bool {
        self != File::TraceMarker
    }

    pub fn writable(self) -> bool {
        !matches!(
            self,
            File::AvailableTracers
                | File::TracePipe(_)
                | File::BufferTotalSizeKb
                | File::AvailableFilterFunctions
                | File::EnabledFunctions
                | File::TouchedFunctions
                | File::TraceStat(_)
                | File::StackTrace
                | File::KprobesBlacklist
                | File::KprobesList
                | File::AvailableEvents
                | File::KprobeProfile
                | File::Event(_, super::events::EvFile::Format | super::events::EvFile::Id | super::events::EvFile::Hist)
        )
    }

    /// Writes the file's contents to `out` (non-consuming).
    pub fn read(self, out: &mut dyn Write) -> Result<(), Errno> {
        with_state(|s| read_locked(s, self, out)).map_err(|_| Errno::ENOMEM)
    }

    /// A write of `text` (`append`: opened with `>>`, else truncated). On error nothing changed.
    pub fn write(self, text: &str, append: bool) -> Result<(), Errno> {
        with_state(|s| write_locked(s, self, text, append))
    }
}

fn read_locked(s: &State, f: File, w: &mut dyn Write) -> core::fmt::Result {
    match f {
        File::AvailableEvents
        | File::SetEvent
        | File::KprobeEvents
        | File::DynamicEvents
        | File::KprobeProfile
        | File::ErrorLog
        | File::EventsEnable(_)
        | File::Event(..) => super::events::read(f, w),
        File::AvailableTracers => {
            let names: Vec<&str> = Tracer::ALL.iter().map(|t| t.name()).collect();
            writeln!(w, "{}", names.join(" "))
        }
        File::CurrentTracer => writeln!(w, "{}", s.tracer.name()),
        File::TracingOn => writeln!(w, "{}", tracer::tracing_on() as u8),
        File::Trace(cpu) => read_trace(s, cpu, w),
        File::TracePipe(_) => Ok(()),
        File::BufferSizeKb(Some(cpu)) => writeln!(w, "{}", buffer_kb(cpu)),
        File::BufferSizeKb(None) => {
            let first = buffer_kb(0);
            if (0..cpus()).all(|c| buffer_kb(c) == first) { writeln!(w, "{first}") } else { writeln!(w, "X") }
        }
        File::BufferTotalSizeKb => writeln!(w, "{}", (0..cpus()).map(buffer_kb).sum::<u64>()),
        File::Stats(cpu) => write_stats(w, cpu),
        File::SetFtraceFilter => {
            write_set(w, &s.filter, "#### all functions enabled ####")?;
            for p in probes::list() {
                write!(w, "{}:{}", tracer::short_name(p.ip), p.kind.name())?;
                match p.left {
                    None => writeln!(w, ":unlimited")?,
                    Some(n) => writeln!(w, ":count={n}")?,
                }
            }
            Ok(())
        }
        File::SetFtraceNotrace => write_set(w, &s.notrace, "#### no functions disabled ####"),
        File::SetGraphFunction => write_set(w, &s.graph_function, "#### all functions enabled ####"),
        File::SetGraphNotrace => write_set(w, &s.graph_notrace, "#### no functions disabled ####"),
        File::StackTraceFilter => write_set(w, &s.stack_filter, "#### all functions enabled ####"),
        File::MaxGraphDepth => writeln!(w, "{}", s.max_graph_depth),
        File::AvailableFilterFunctions => {
            let mut r = Ok(());
            let skip = SiteFlags::NOTRACE | SiteFlags::FAILED | SiteFlags::GOING | SiteFlags::ABSENT;
            ftrace::core::for_each_site(|i| {
                if r.is_ok() && i.site.ip != 0 && !i.state.flags.intersects(skip) {
                    r = writeln!(w, "{}", super::site_label(&i.site, i.module));
                }
            });
            r
        }
        File::EnabledFunctions => write_functions(w, SiteFlags::ENABLED),
        File::KprobesBlacklist => {
            // As Linux prints it: the address range of each blacklisted function and its name.
            for sym in crate::ksyms::table().iter().filter(|sym| crate::kprobes::blacklisted(sym.name)) {
                writeln!(w, "0x{:016x}-0x{:016x}\t{}", sym.addr, sym.addr + sym.size as u64, sym.name)?;
            }
            Ok(())
        }
        File::KprobesList => {
            for p in crate::kprobes::list() {
                writeln!(w, "{}", crate::kprobes::describe(p))?;
            }
            Ok(())
        }
        File::TouchedFunctions => write_functions(w, SiteFlags::TOUCHED),
        File::TraceOptions => {
            for (name, o) in OPTION_NAMES {
                writeln!(w, "{}{name}", if s.options.contains(*o) { "" } else { "no" })?;
            }
            Ok(())
        }
        File::OptionFile(i) => writeln!(w, "{}", s.options.contains(OPTION_NAMES[i].1) as u8),
        File::TraceMarker => Ok(()),
        File::FunctionProfileEnabled => writeln!(w, "{}", profile::enabled() as u8),
        File::TraceStat(cpu) => {
            w.write_str(parse::STAT_HEADER)?;
            for r in profile::rows(cpu) {
                parse::write_stat_row(w, tracer::short_name(r.ip), r.hits, r.time_ns, r.time_sq)?;
            }
            Ok(())
        }
        File::StackTrace => {
            let m = stack_tracer::max_stack();
            parse::write_stack_header(w, m.len)?;
            if !s.stack_enabled && stack_tracer::max_size() == 0 {
                w.write_str("#\n#  Stack tracer disabled\n#\n# To enable the stack tracer, either add 'stacktrace' to the\n# kernel command line\n# or 'echo 1 > /proc/sys/kernel/stack_tracer_enabled'\n#\n")?;
            }
            for i in 0..m.len {
                let size = if i + 1 < m.len { m.depth[i] - m.depth[i + 1].min(m.depth[i]) } else { m.depth[i] };
                let loc = crate::ksyms::sym(m.location[i]);
                let text = alloc::format!("{loc}");
                parse::write_stack_row(w, i, m.depth[i], size, &text.strip_prefix("loongtrace_kernel::").unwrap_or(&text))?;
            }
            Ok(())
        }
        File::StackMaxSize => writeln!(w, "{}", stack_tracer::max_size()),
        File::StackTracerEnabled => writeln!(w, "{}", s.stack_enabled as u8),
    }
}

fn write_set(w: &mut dyn Write, set: &SiteSet, empty: &str) -> core::fmt::Result {
    if set.is_empty() {
        return writeln!(w, "{empty}");
    }
    let all = sites::all();
    for i in set.iter() {
        if let Some(site) = all.get(i).filter(|s| s.ip != 0) {
            writeln!(w, "{}", super::site_label(site, sites::module_of(i)))?;
        }
    }
    Ok(())
}

/// `enabled_functions` / `touched_functions` in Linux's columns: `name (refs)`, then ` R` (goes
/// through `ftrace_regs_caller`), ` I` (never set: no ops modifies the ip), ` D` (a direct
/// trampoline is attached, whether the site calls it straight or `ftrace_regs_caller` does after
/// the other ops), ` O` (calls its single ops through the site's literal), ` M` (never set);
/// `\tops: literal (callback)` for `O`, and `\n\tdirect-->trampoline` for `D`.
fn write_functions(w: &mut dyn Write, which: SiteFlags) -> core::fmt::Result {
    let mut infos = Vec::new();
    ftrace::core::for_each_site(|i| {
        if i.state.flags.contains(which) {
            infos.push(i);
        }
    });
    let nop_ops = &ftrace::core::NOP_OPS as *const _ as u64;
    let fast = ftrace::core::fast_caller();
    for i in infos {
        let f = i.state.flags;
        let enabled = f.contains(SiteFlags::ENABLED);
        let single_ops = enabled && i.state.target == fast && i.state.ops != nop_ops && !ftrace::core::SiteList::is_list(i.state.ops);
        write!(
            w,
            "{} ({}){}{}{}{}{}",
            super::site_label(&i.site, i.module),
            i.state.refs,
            if f.contains(SiteFlags::REGS) { " R" } else { "  " },
            "  ",
            if i.state.direct != 0 { " D" } else { "  " },
            if single_ops { " O" } else { "  " },
            "   "
        )?;
        if single_ops {
            // SAFETY: a site's literal names a registered ops (or NOP_OPS or a site list, excluded above),
            // which stays alive while registered; the core lock is not needed to read its callback.
            let func = unsafe { (*(i.state.ops as *const ftrace::FtraceOps)).func } as *const () as u64;
            write!(w, "\tops: {:#x} ({})", i.state.ops, crate::ksyms::sym(func))?;
        }
        if i.state.direct != 0 {
            write!(w, "\n\tdirect-->{}", crate::ksyms::sym(i.state.direct))?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// Events of the selected CPUs, oldest first, without consuming them. Returns (events, entries
/// written since the last clear).
fn collect(cpu: Option<usize>) -> (Vec<TraceEntry>, u64) {
    let mut events = Vec::new();
    let mut written = 0;
    for c in (0..cpus()).filter(|c| cpu.is_none_or(|x| x == *c)) {
        let b = &tracer::BUFFERS[c];
        written += b.records_written();
        b.read_from(b.cursor(), |_, e| crate::events::registry::push_expanded(&mut events, e));
    }
    output::sort_events(&mut events);
    (events, written)
}

fn layout(s: &State) -> Layout {
    if s.tracer == Tracer::FunctionGraph { Layout::Graph } else { Layout::Function }
}

fn marker_text(s: &State, id: u64) -> Option<String> {
    s.markers.iter().find(|(i, _)| *i == id).map(|(_, t)| t.clone())
}

fn read_trace(s: &State, cpu: Option<usize>, w: &mut dyn Write) -> core::fmt::Result {
    let (events, written) = collect(cpu);
    let lay = layout(s);
    match lay {
        Layout::Graph => output::write_graph_header(w, s.options)?,
        Layout::Function => {
            // Records, not slots: a trace event's continuation slots are part of its record.
            let records = events.iter().filter(|e| e.kind != crate::ringbuf::KIND_CONT).count();
            output::write_function_header(w, s.tracer.name(), records as u64, written, cpus())?
        }
    }
    output::write_events(w, &events, lay, s.options, &|id| marker_text(s, id))
}

/// Consumes and prints what `trace_pipe` (of `cpu`, or all) has now.
pub fn read_pipe(cpu: Option<usize>, w: &mut dyn Write) {
    with_state(|s| {
        let mut events = Vec::new();
        for c in (0..cpus()).filter(|c| cpu.is_none_or(|x| x == *c)) {
            tracer::BUFFERS[c].snapshot(|_, e| crate::events::registry::push_expanded(&mut events, e));
        }
        output::sort_events(&mut events);
        let _ = output::write_events(w, &events, layout(s), s.options, &|id| marker_text(s, id));
    });
}

fn opt_set(set: &SiteSet) -> Option<SiteSet> {
    (!set.is_empty()).then(|| set.clone())
}

/// Gives the function tracer's ops and the graph sites' ops the global filter (live if running).
fn sync_filters(s: &State) -> Result<(), Errno> {
    for ops in [&tracer::FUNCTION_OPS, &fgraph::GRAPH_SITE_OPS] {
        ftrace::core::ftrace_set_filter_sites(ops, opt_set(&s.filter), s.notrace.clone()).map_err(|e| errno_of(&e))?;
    }
    Ok(())
}

fn stop_tracer(t: Tracer) {
    match t {
        Tracer::Nop => {}
        Tracer::Function => {
            let _ = ftrace::unregister_ftrace_function(&tracer::FUNCTION_OPS);
        }
        Tracer::FunctionGraph => {
            let _ = graph_tracer::stop_keep_filter();
        }
    }
}

fn start_tracer(s: &State, t: Tracer) -> Result<(), Errno> {
    sync_filters(s)?;
    let r = match t {
        Tracer::Nop => Ok(()),
        Tracer::Function => ftrace::register_ftrace_function(&tracer::FUNCTION_OPS),
        Tracer::FunctionGraph => graph_tracer::start_sets(opt_set(&s.graph_function), opt_set(&s.graph_notrace), s.max_graph_depth),
    };
    r.map_err(|e| errno_of(&e))
}

/// `buffer_size_kb` of `cpu`: its ring's slots in KiB.
fn buffer_kb(cpu: usize) -> u64 {
    (tracer::BUFFERS[cpu].capacity() * tracer::SLOT_BYTES / 1024) as u64
}

/// `per_cpu/cpuN/stats`, Linux's fields: what the ring holds now (records, their slots' bytes,
/// the oldest one's time), what it lost by wrapping (`overrun`) or by a nested writer colliding
/// with the one it interrupted (`dropped events`), and what `trace_pipe` consumed.
fn write_stats(w: &mut dyn Write, cpu: usize) -> core::fmt::Result {
    let b = &tracer::BUFFERS[cpu];
    let (mut entries, mut slots, mut oldest) = (0u64, 0u64, None);
    b.read_from(b.cursor(), |_, e| {
        slots += 1;
        if e.kind != crate::ringbuf::KIND_CONT {
            entries += 1;
            oldest.get_or_insert(e.ts);
        }
    });
    let secs = |ticks: u64| {
        let us = crate::time::ticks_to_ns(ticks) / 1000;
        alloc::format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
    };
    writeln!(w, "entries: {entries}")?;
    writeln!(w, "overrun: {}", b.lost())?;
    writeln!(w, "commit overrun: 0")?;
    writeln!(w, "bytes: {}", slots * tracer::SLOT_BYTES as u64)?;
    writeln!(w, "oldest event ts: {:>12}", secs(oldest.unwrap_or(0)))?;
    writeln!(w, "now ts: {:>12}", secs(arch::time::ticks()))?;
    writeln!(w, "dropped events: {}", b.dropped())?;
    writeln!(w, "read events: {}", b.read_events())
}

fn number(text: &str) -> Result<u64, Errno> {
    parse::parse_ulong(text.trim_end_matches([' ', '\t', '\n']))
}

fn write_locked(s: &mut State, f: File, text: &str, append: bool) -> Result<(), Errno> {
    if !f.writable() {
        return Err(Errno::EACCES);
    }
    if matches!(
        f,
        File::SetEvent | File::KprobeEvents | File::DynamicEvents | File::ErrorLog | File::EventsEnable(_) | File::Event(..)
    ) {
        return super::events::write(f, text, append);
    }
    match f {
        File::CurrentTracer => {
            let name = text.trim();
            let t = Tracer::ALL.into_iter().find(|t| t.name() == name).ok_or(Errno::EINVAL)?;
            if t == s.tracer {
                return Ok(());
            }
            let old = s.tracer;
            stop_tracer(old);
            s.tracer = Tracer::Nop;
            tracer::clear_buffers(None);
            if let Err(e) = start_tracer(s, t) {
                // Put the old tracer back, so a refused switch changes nothing.
                if start_tracer(s, old).is_ok() {
                    s.tracer = old;
                }
                return Err(e);
            }
            s.tracer = t;
            Ok(())
        }
        File::TracingOn => {
            let v = number(text)?;
            tracer::set_tracing_on(v != 0);
            Ok(())
        }
        File::Trace(cpu) => {
            if !append {
                tracer::clear_buffers(cpu);
            }
            Ok(())
        }
        File::BufferSizeKb(cpu) => {
            let v = number(text)?;
            if v == 0 {
                return Err(Errno::EINVAL);
            }
            if v > MAX_BUFFER_KB {
                return Err(Errno::ENOMEM);
            }
            let entries = tracer::entries_for_kb(v).ok_or(Errno::EINVAL)?;
            // The rings start empty, and so do their `entries-written`.
            tracer::resize_buffers(cpu, entries).map_err(|_| Errno::EINVAL)
        }
        File::SetFtraceFilter => write_ftrace_filter(s, text, append),
        File::SetFtraceNotrace => {
            let mut set = if append { s.notrace.clone() } else { SiteSet::new() };
            apply_globs(&mut set, &words(text))?;
            let old = core::mem::replace(&mut s.notrace, set);
            sync_filters(s).inspect_err(|_| s.notrace = old)
        }
        File::SetGraphFunction | File::SetGraphNotrace => {
            let cur = if f == File::SetGraphFunction { &s.graph_function } else { &s.graph_notrace };
            let mut set = if append { cur.clone() } else { SiteSet::new() };
            apply_globs(&mut set, &words(text))?;
            let slot = if f == File::SetGraphFunction { &mut s.graph_function } else { &mut s.graph_notrace };
            let old = core::mem::replace(slot, set);
            // All or nothing: a failed restart puts the old set back (and the tracer with it).
            restart_graph(s).inspect_err(|_| {
                if f == File::SetGraphFunction {
                    s.graph_function = old;
                } else {
                    s.graph_notrace = old;
                }
                let _ = restart_graph(s);
            })
        }
        File::MaxGraphDepth => {
            let v = number(text)?;
            let old = core::mem::replace(&mut s.max_graph_depth, u32::try_from(v).map_err(|_| Errno::EINVAL)?);
            restart_graph(s).inspect_err(|_| {
                s.max_graph_depth = old;
                let _ = restart_graph(s);
            })
        }
        File::TraceOptions => {
            let word = text.trim();
            let (on, name) = match word.strip_prefix("no") {
                Some(n) if OPTION_NAMES.iter().any(|(o, _)| *o == n) => (false, n),
                _ => (true, word),
            };
            let (_, o) = OPTION_NAMES.iter().find(|(n, _)| *n == name).ok_or(Errno::EINVAL)?;
            s.options.set(*o, on);
            Ok(())
        }
        File::OptionFile(i) => match number(text)? {
            v @ (0 | 1) => {
                s.options.set(OPTION_NAMES[i].1, v == 1);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        },
        File::TraceMarker => {
            super::tracing_mark_write(s, text);
            Ok(())
        }
        File::FunctionProfileEnabled => {
            let on = number(text)? != 0;
            if on == profile::enabled() {
                return Ok(());
            }
            if on {
                sync_filters(s)?;
                profile::enable().map_err(|e| errno_of(&e))
            } else {
                profile::disable().map_err(|e| errno_of(&e))
            }
        }
        File::StackMaxSize => {
            stack_tracer::set_max_size(number(text)?);
            Ok(())
        }
        File::StackTraceFilter => {
            let mut set = if append { s.stack_filter.clone() } else { SiteSet::new() };
            apply_globs(&mut set, &words(text))?;
            ftrace::core::ftrace_set_filter_sites(&stack_tracer::STACK_OPS, opt_set(&set), SiteSet::new()).map_err(|e| errno_of(&e))?;
            s.stack_filter = set;
            Ok(())
        }
        File::StackTracerEnabled => {
            let on = number(text)? != 0;
            if on == s.stack_enabled {
                return Ok(());
            }
            if on {
                ftrace::core::ftrace_set_filter_sites(&stack_tracer::STACK_OPS, opt_set(&s.stack_filter), SiteSet::new())
                    .map_err(|e| errno_of(&e))?;
                ftrace::register_ftrace_function(&stack_tracer::STACK_OPS).map_err(|e| errno_of(&e))?;
            } else {
                ftrace::unregister_ftrace_function(&stack_tracer::STACK_OPS).map_err(|e| errno_of(&e))?;
            }
            s.stack_enabled = on;
            Ok(())
        }
        // The read-only files, refused above.
        _ => Err(Errno::EACCES),
    }
}

fn words(text: &str) -> Vec<&str> {
    crate::glob::filter_tokens(text).collect()
}

/// Restarts a running function_graph tracer so it sees new graph settings.
fn restart_graph(s: &State) -> Result<(), Errno> {
    if s.tracer == Tracer::FunctionGraph {
        let _ = graph_tracer::stop_keep_filter();
        graph_tracer::start_sets(opt_set(&s.graph_function), opt_set(&s.graph_notrace), s.max_graph_depth).map_err(|e| errno_of(&e))?;
    }
    Ok(())
}

/// `set_ftrace_filter`: globs, `!globs`, and `glob:command[:count]` probes; all or nothing.
fn write_ftrace_filter(s: &mut State, text: &str, append: bool) -> Result<(), Errno> {
    let mut set = if append { s.filter.clone() } else { SiteSet::new() };
    let mut plist = probes::list();
    let mut globs = Vec::new();
    let all = sites::all();
    for word in words(text) {
        let Some(cmd) = parse::split_filter_command(word) else {
            globs.push(word);
            continue;
        };
        if cmd.command == "mod" {
            // `glob:mod:NAME`: a glob limited to one module.
            globs.push(word);
            continue;
        }
        let kind = ProbeKind::from_name(cmd.command).ok_or(Errno::EINVAL)?;
        let count = match cmd.param {
            None => None,
            Some(p) => Some(parse::parse_ulong(p)?),
        };
        let (remove, pat) = match cmd.pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, cmd.pattern),
        };
        let mut hits = SiteSet::new();
        apply_globs(&mut hits, &[pat])?;
        for i in hits.iter() {
            let ip = all[i].ip;
            plist.retain(|p| !(p.ip == ip && p.kind == kind));
            if !remove {
                plist.push(Probe { ip, kind, left: count });
            }
        }
    }
    apply_globs(&mut set, &globs)?;
    if plist.len() > probes::MAX_PROBES {
        return Err(Errno::ENOMEM);
    }
    let mut probe_sites = SiteSet::new();
    for p in &plist {
        if let Some(i) = sites::index_of(p.ip) {
            probe_sites.insert(i);
        }
    }
    let old = core::mem::replace(&mut s.filter, set);
    if let Err(e) = sync_filters(s) {
        s.filter = old;
        let _ = sync_filters(s);
        return Err(e);
    }
    let old_probes = probes::list();
    let r = apply_probes(&plist, probe_sites);
    if let Err(e) = r {
        // All or nothing: the old filter and the old probes come back.
        s.filter = old;
        let _ = sync_filters(s);
        let mut sites_of_old = SiteSet::new();
        old_probes.iter().filter_map(|p| sites::index_of(p.ip)).for_each(|i| sites_of_old.insert(i));
        let _ = apply_probes(&old_probes, sites_of_old);
        return Err(errno_of(&e));
    }
    Ok(())
}

/// Makes `plist` the function probes (`func:traceoff` and the like) and their ops' filter.
fn apply_probes(plist: &[Probe], probe_sites: SiteSet) -> Result<(), ftrace::FtraceError> {
    let _ = probes::replace(plist);
    if plist.is_empty() {
        if probes::PROBE_OPS.is_registered() { ftrace::unregister_ftrace_function(&probes::PROBE_OPS) } else { Ok(()) }
    } else {
        ftrace::core::ftrace_set_filter_sites(&probes::PROBE_OPS, Some(probe_sites), SiteSet::new()).and_then(|()| {
            if probes::PROBE_OPS.is_registered() { Ok(()) } else { ftrace::register_ftrace_function(&probes::PROBE_OPS) }
        })
    }
}

