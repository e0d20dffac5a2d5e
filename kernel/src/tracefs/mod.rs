//! tracefs: Linux's `/sys/kernel/tracing` files over loongtrace's ftrace, and the shell commands
//! that read and write them.
//!
//! [`execute`] runs one shell line and writes what it prints; it is a pure function of strings as
//! far as its caller is concerned (suite `tracefs` calls it directly). The serial console
//! (`shell::console`) feeds it typed lines. File names, contents and error numbers follow
//! Linux's Documentation/trace/ftrace.rst; `docs/tracefs.md` lists where they differ.

pub mod events;
mod files;
pub mod output;

use crate::ftrace::sites::{self, SiteSet};
use crate::ftrace::{self, FtraceError};
use crate::shell::parse::{self, Errno};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

pub use files::{File, read_pipe};

/// A shell command an upper floor provides (`run`, `insmod`, ...): `run(name, args, out)`, where
/// `args` are the words after the name and `out` collects what it prints.
pub struct Command {
    pub name: &'static str,
    pub run: fn(&str, &[&str], &mut String),
}

static COMMANDS: spin::Once<&'static [Command]> = spin::Once::new();

/// Registers the commands of the floors above tracefs (once, at boot).
pub fn register_commands(commands: &'static [Command]) {
    COMMANDS.call_once(|| commands);
}

fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.get().and_then(|cmds| cmds.iter().find(|c| c.name == name))
}

bitflags::bitflags! {
    /// `trace_options` / `options/*` that change the output.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Options: u32 {
        const PRINT_PARENT = 1 << 0;
        const SYM_OFFSET = 1 << 1;
        const SYM_ADDR = 1 << 2;
        const FUNCGRAPH_CPU = 1 << 3;
        const FUNCGRAPH_DURATION = 1 << 4;
        const FUNCGRAPH_ABSTIME = 1 << 5;
        const FUNCGRAPH_RETVAL = 1 << 6;
        const FUNCGRAPH_TAIL = 1 << 7;
    }
}

/// Option names as `trace_options` lists them.
pub const OPTION_NAMES: &[(&str, Options)] = &[
    ("print-parent", Options::PRINT_PARENT),
    ("sym-offset", Options::SYM_OFFSET),
    ("sym-addr", Options::SYM_ADDR),
    ("funcgraph-cpu", Options::FUNCGRAPH_CPU),
    ("funcgraph-duration", Options::FUNCGRAPH_DURATION),
    ("funcgraph-abstime", Options::FUNCGRAPH_ABSTIME),
    ("funcgraph-retval", Options::FUNCGRAPH_RETVAL),
    ("funcgraph-tail", Options::FUNCGRAPH_TAIL),
];

const DEFAULT_OPTIONS: Options = Options::PRINT_PARENT
    .union(Options::FUNCGRAPH_CPU)
    .union(Options::FUNCGRAPH_DURATION);

/// The tracers `available_tracers` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracer {
    Nop,
    Function,
    FunctionGraph,
}

impl Tracer {
    pub const ALL: [Tracer; 3] = [Tracer::FunctionGraph, Tracer::Function, Tracer::Nop];
    pub fn name(self) -> &'static str {
        match self {
            Tracer::Nop => "nop",
            Tracer::Function => "function",
            Tracer::FunctionGraph => "function_graph",
        }
    }
}

/// The largest `buffer_size_kb`: the room each CPU's ring reserves.
pub const MAX_BUFFER_KB: u64 = (ftrace::tracer::RING_ROOM * ftrace::tracer::SLOT_BYTES / 1024) as u64;
/// `trace_marker` texts kept (older markers print as overwritten).
const MARKERS_KEPT: usize = 256;
/// Longest `trace_marker` write kept, in bytes (Linux cuts at a page minus the event header).
const MARKER_MAX: usize = 4000;

/// Everything tracefs remembers between writes.
pub struct State {
    pub tracer: Tracer,
    /// `set_ftrace_filter` (empty = every function).
    pub filter: SiteSet,
    pub notrace: SiteSet,
    pub graph_function: SiteSet,
    pub graph_notrace: SiteSet,
    pub max_graph_depth: u32,
    pub stack_filter: SiteSet,
    pub stack_enabled: bool,
    pub options: Options,
    pub markers: Vec<(u64, String)>,
    pub next_marker: u64,
    /// Sample modules loaded (indices into `samples::ALL`).
    pub loaded: Vec<usize>,
}

impl State {
    fn new() -> Self {
        State {
            tracer: Tracer::Nop,
            filter: SiteSet::default(),
            notrace: SiteSet::default(),
            graph_function: SiteSet::default(),
            graph_notrace: SiteSet::default(),
            max_graph_depth: 0,
            stack_filter: SiteSet::default(),
            stack_enabled: false,
            options: DEFAULT_OPTIONS,
            markers: Vec::new(),
            next_marker: 0,
            loaded: Vec::new(),
        }
    }
}

static STATE: spin::Mutex<Option<State>> = spin::Mutex::new(None);

/// Runs `f` on the tracefs state (made on first use).
pub fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.lock();
    f(g.get_or_insert_with(State::new))
}

/// A `trace_marker` write: keeps the text (without its final newline, at most [`MARKER_MAX`]
/// bytes of whole characters) and records a marker event whose `ip` is this function, as Linux's
/// `print` event names `tracing_mark_write` (the export's `kallsyms` resolves it). Not traceable,
/// as Linux's tracing code is not.
#[unsafe(no_mangle)]
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn tracing_mark_write(s: &mut State, text: &str) {
    let t = formats::wire::cut_text(text.strip_suffix('\n').unwrap_or(text), MARKER_MAX);
    if ftrace::tracer::tracing_on() {
        let id = s.next_marker;
        s.next_marker += 1;
        if s.markers.len() >= MARKERS_KEPT {
            s.markers.remove(0);
        }
        s.markers.push((id, String::from(t)));
        let ip = tracing_mark_write as fn(&mut State, &str) as usize as u64;
        ftrace::tracer::record(ftrace::tracer::KIND_MARKER, ip, 0, ftrace::tracer::context_flags(), id);
    }
}

/// The text of marker number `id`, if it is still kept.
pub fn marker_text(id: u64) -> Option<String> {
    with_state(|s| s.markers.iter().find(|(i, _)| *i == id).map(|(_, t)| t.clone()))
}

/// What the console must do after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Print the prompt again.
    Prompt,
    /// Keep reading `trace_pipe` (of one CPU, or all) until Ctrl-C.
    FollowPipe(Option<usize>),
    PowerOff,
}

/// Maps an ftrace error to the error number Linux's tracefs returns for it.
pub fn errno_of(e: &FtraceError) -> Errno {
    match e {
        FtraceError::NoMatch(_) | FtraceError::NotTraceable(_) | FtraceError::BadFilter(_) | FtraceError::NothingToRemove(_) => {
            Errno::EINVAL
        }
        FtraceError::AlreadyRegistered | FtraceError::DirectBusy(_) | FtraceError::TooManyGraphOps => Errno::EBUSY,
        FtraceError::NotInitialised => Errno::ENODEV,
        _ => Errno::EINVAL,
    }
}

/// Number of CPUs with a `per_cpu/cpuN` and `trace_stat/functionN`.
pub fn cpus() -> usize {
    (64 - crate::smp::online_mask().leading_zeros() as usize).max(1)
}

/// Runs one shell line, writing its output to `out`.
pub fn execute(line: &str, out: &mut dyn Write) -> Action {
    let cmd = match parse::parse_line(line) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "sh: {e}");
            return Action::Prompt;
        }
    };
    let Some(name) = cmd.argv.first() else {
        if let Some(r) = &cmd.redirect {
            // `> file` alone truncates: like writing nothing with `>`.
            let _ = write_file_cmd(&r.path, "", r.append, out);
        }
        return Action::Prompt;
    };
    let args: Vec<&str> = cmd.argv[1..].iter().map(|s| s.as_str()).collect();
    let mut text = String::new();
    let action = match name.as_str() {
        "echo" => {
            let (newline, words) = match args.first() {
                Some(&"-n") => (false, &args[1..]),
                _ => (true, &args[..]),
            };
            text = words.join(" ");
            if newline {
                text.push('\n');
            }
            Action::Prompt
        }
        "cat" => {
            if args.is_empty() {
                let _ = writeln!(text, "cat: missing file operand");
            }
            let mut follow = Action::Prompt;
            for a in &args {
                if let Some(a) = cat(a, &mut text) {
                    follow = a;
                }
            }
            follow
        }
        "ls" => {
            ls(&args, &mut text);
            Action::Prompt
        }
        "help" => {
            text.push_str(HELP);
            Action::Prompt
        }
        "poweroff" => Action::PowerOff,
        "cd" | "pwd" => {
            if name == "pwd" {
                text.push_str("/sys/kernel/tracing\n");
            } else if !matches!(args.first(), None | Some(&"/sys/kernel/tracing") | Some(&".")) {
                let _ = writeln!(text, "sh: cd: {}: only /sys/kernel/tracing is available", args[0]);
            }
            Action::Prompt
        }
        other => match command(other) {
            Some(c) => {
                (c.run)(other, &args, &mut text);
                Action::Prompt
            }
            None => {
                let _ = writeln!(out, "sh: {other}: not found (try 'help')");
                return Action::Prompt;
            }
        },
    };
    match &cmd.redirect {
        Some(r) => {
            let _ = write_file_cmd(&r.path, &text, r.append, out);
        }
        None => {
            let _ = out.write_str(&text);
        }
    }
    action
}

/// `> path`: writes `text` to a tracefs file, printing sh's error line on failure.
fn write_file_cmd(path: &str, text: &str, append: bool, out: &mut dyn Write) -> core::fmt::Result {
    let shown = path.rsplit('/').next().unwrap_or(path);
    match File::lookup(path) {
        Err(Errno::EISDIR) => writeln!(out, "sh: can't create {path}: Is a directory"),
        Err(e) => writeln!(out, "sh: can't create {path}: {e}"),
        Ok(f) if !f.writable() => writeln!(out, "sh: can't create {path}: {}", Errno::EACCES),
        Ok(f) => match f.write(text, append) {
            Ok(()) => Ok(()),
            Err(e) => writeln!(out, "sh: write error: {shown}: {e}"),
        },
    }
}

/// `cat FILE`: returns the follow action for `trace_pipe`.
fn cat(path: &str, out: &mut String) -> Option<Action> {
    match File::lookup(path) {
        Err(e) => {
            let _ = writeln!(out, "cat: {path}: {e}");
            None
        }
        Ok(f) if !f.readable() => {
            let _ = writeln!(out, "cat: {path}: {}", Errno::EACCES);
            None
        }
        Ok(File::TracePipe(cpu)) => {
            files::read_pipe(cpu, out);
            Some(Action::FollowPipe(cpu))
        }
        Ok(f) => {
            if let Err(e) = f.read(out) {
                let _ = writeln!(out, "cat: read error: {e}");
            }
            None
        }
    }
}

fn ls(args: &[&str], out: &mut String) {
    let dirs: Vec<&str> = if args.is_empty() { alloc::vec!["."] } else { args.to_vec() };
    for (n, d) in dirs.iter().enumerate() {
        match files::list_dir(d) {
            Ok(names) => {
                if dirs.len() > 1 {
                    let _ = writeln!(out, "{}{d}:", if n > 0 { "\n" } else { "" });
                }
                let mut col = 0;
                for name in names {
                    if col > 0 && col + name.len() + 2 > 78 {
                        out.push('\n');
                        col = 0;
                    }
                    if col > 0 {
                        out.push_str("  ");
                        col += 2;
                    }
                    out.push_str(&name);
                    col += name.len();
                }
                if col > 0 {
                    out.push('\n');
                }
            }
            Err(Errno::ENOTDIR) => {
                let _ = writeln!(out, "{d}");
            }
            Err(e) => {
                let _ = writeln!(out, "ls: cannot access '{d}': {e}");
            }
        }
    }
}

/// Back to the boot state: nop tracer, no filters, probes, profiler or stack tracer, no events
/// enabled, filtered or triggered, no probe events, an empty `error_log`, tracing on,
/// default options and buffer sizes, empty buffers. Sample modules stay loaded.
pub fn reset() {
    let _ = File::CurrentTracer.write("nop", false);
    let _ = File::FunctionProfileEnabled.write("0", false);
    let _ = File::StackTracerEnabled.write("0", false);
    for f in [File::SetFtraceFilter, File::SetFtraceNotrace, File::SetGraphFunction, File::SetGraphNotrace, File::StackTraceFilter] {
        let _ = f.write("", false);
    }
    let _ = crate::ftrace::probes::replace(&[]);
    let _ = ftrace::ftrace_reset_filters(&ftrace::probes::PROBE_OPS);
    if ftrace::probes::PROBE_OPS.is_registered() {
        let _ = ftrace::unregister_ftrace_function(&ftrace::probes::PROBE_OPS);
    }
    let _ = ftrace::ftrace_reset_filters(&ftrace::tracer::FUNCTION_OPS);
    let _ = ftrace::ftrace_reset_filters(&ftrace::fgraph::GRAPH_SITE_OPS);
    let _ = ftrace::ftrace_reset_filters(&ftrace::stack_tracer::STACK_OPS);
    ftrace::stack_tracer::set_max_size(0);
    for e in crate::events::registry::all() {
        let _ = crate::events::registry::set_triggers(&e, None);
        crate::events::registry::set_filter(&e, None);
        let _ = crate::events::registry::set_enabled(&e, false);
    }
    let _ = crate::events::kprobe_event::clear();
    crate::events::clear_error_log();
    ftrace::tracer::set_tracing_on(true);
    if (0..cpus()).any(|c| ftrace::tracer::BUFFERS[c].capacity() != ftrace::tracer::boot_entries()) {
        let _ = ftrace::tracer::resize_buffers(None, ftrace::tracer::boot_entries());
    }
    with_state(|s| {
        let loaded = core::mem::take(&mut s.loaded);
        *s = State::new();
        s.loaded = loaded;
    });
    let _ = File::Trace(None).write("", false);
}

/// Resolves a filter write's words to sites, as Linux's `set_ftrace_filter` does: plain globs
/// add, `!glob` removes; a word that matches no traceable function fails the whole write.
pub fn apply_globs(set: &mut SiteSet, words: &[&str]) -> Result<(), Errno> {
    use crate::ftrace::core::SiteFlags;
    let all = sites::all();
    let mut traceable = SiteSet::new();
    let mut i = 0;
    crate::ftrace::core::for_each_site(|info| {
        let skip = SiteFlags::NOTRACE | SiteFlags::FAILED | SiteFlags::GOING | SiteFlags::ABSENT;
        if info.site.ip != 0 && !info.state.flags.intersects(skip) {
            traceable.insert(i);
        }
        i += 1;
    });
    let mut edited = set.clone();
    for word in words {
        let (neg, pat) = crate::glob::parse_filter_token(word).map_err(|_| Errno::EINVAL)?;
        // `glob:mod:NAME` (or `:mod:NAME`): only functions of module NAME.
        let (pat, module) = crate::glob::split_module(pat);
        if module == Some("") {
            return Err(Errno::EINVAL);
        }
        let mut hits = 0;
        for i in traceable.iter() {
            if module.is_some_and(|m| m != crate::ftrace::sites::module_of(i)) || !matches_name(pat, all[i].name) {
                continue;
            }
            hits += 1;
            if neg {
                edited.remove(i);
            } else {
                edited.insert(i);
            }
        }
        if hits == 0 {
            return Err(Errno::EINVAL);
        }
    }
    *set = edited;
    Ok(())
}

/// A function's name as the listings show it: the path without the kernel crate's name, and
/// ` [module]` after a module's function (as Linux's `%ps`).
pub fn site_label(site: &sites::Site, module: &str) -> String {
    let name = site.name.strip_prefix("loongtrace_kernel::").unwrap_or(site.name);
    if module.is_empty() { String::from(name) } else { alloc::format!("{name} [{module}]") }
}

/// Drops a module's sites from every tracefs set (after it unloaded: the indices are reused).
pub fn forget_sites(range: core::ops::Range<usize>) {
    with_state(|s| {
        for set in [&mut s.filter, &mut s.notrace, &mut s.graph_function, &mut s.graph_notrace, &mut s.stack_filter] {
            set.remove_range(range.clone());
        }
    });
}

/// Whether a filter glob names the function `full` (its full path, its path without the crate
/// name, as the trace prints it, or its last segment).
pub fn matches_name(pat: &str, full: &str) -> bool {
    crate::glob::name_matches(pat, full) || full.strip_prefix("loongtrace_kernel::").is_some_and(|s| crate::glob::glob_match(pat, s))
}

const HELP: &str = "\
loongtrace shell: Linux's tracefs at /sys/kernel/tracing (paths may be relative to it)
  ls [DIR]                  list files (per_cpu/, options/, trace_stat/ are directories)
  cat FILE...               print files; cat trace_pipe waits for events until Ctrl-C
  echo [-n] TEXT > FILE     write (replace);  echo TEXT >> FILE  append
  insmod NAME | rmmod NAME | lsmod     load/unload the ftrace-direct samples
  run WORKLOAD [N]          chain | recurse | timer | bench | samples (run 'run' for details)
  bpf prog load NAME | bpf prog list | bpf prog run ID ... | bpf map dump ID   BPF objects (bpf help)
  poweroff                  turn the machine off
Example: echo function_graph > current_tracer; echo chain_root > set_graph_function;
         run chain; cat trace
Line editing: Backspace, Ctrl-U (erase line), Ctrl-C (abandon line / stop trace_pipe).
";
