//! `ltrace`: record a trace from the kernel under QEMU and turn it into files Linux's tools open.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loongtrace_tools::capture::{self, Progress, Recording};
use loongtrace_tools::record::{self, RecordConfig};
use loongtrace_tools::runner::RunConfig;
use loongtrace_tools::{chrome, flame, tracedat};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "ltrace", about = "Record loongtrace traces and write trace.dat, flame graphs and Chrome JSON")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot the kernel with a tracer and a workload, fetch the trace, write trace.dat (and more).
    Record(RecordArgs),
    /// Turn a saved serial stream (from `record`) into trace.dat, a flame graph or Chrome JSON.
    Convert {
        /// The serial stream `record` saved (`<output>.serial`).
        serial: PathBuf,
        #[command(flatten)]
        out: Outputs,
    },
}

#[derive(Args)]
struct Outputs {
    /// Write trace-cmd's trace.dat here.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write a flame graph SVG (function_graph recordings).
    #[arg(long, value_name = "SVG")]
    flamegraph: Option<PathBuf>,
    /// Write Chrome trace-event JSON (Perfetto UI, chrome://tracing).
    #[arg(long, value_name = "JSON")]
    chrome: Option<PathBuf>,
    /// Write the kernel's own trace text (what it printed before sending) here.
    #[arg(long, value_name = "TXT")]
    kernel_text: Option<PathBuf>,
}

#[derive(Args)]
struct RecordArgs {
    /// Tracer: function, function_graph, or nop (trace events only) [default: function_graph,
    /// or nop when only events are asked for].
    #[arg(short = 'p', long = "plugin", value_parser = ["nop", "function", "function_graph"])]
    tracer: Option<String>,
    /// Record trace event SYSTEM:EVENT (repeatable; globs, as `set_event` takes them).
    #[arg(short = 'e', long = "event", value_name = "SYSTEM:EVENT")]
    events: Vec<String>,
    /// Define a kprobe event first (`kprobe_events` syntax, e.g. 'p:myprobe chain_c x=%a0';
    /// repeatable) and record it.
    #[arg(long = "kprobe", value_name = "DEFINITION")]
    kprobes: Vec<String>,
    /// set_ftrace_filter glob (repeatable).
    #[arg(short = 'l', long = "filter")]
    filter: Vec<String>,
    /// set_graph_function glob (repeatable; function_graph).
    #[arg(short = 'g', long = "graph-function")]
    graph_function: Vec<String>,
    /// max_graph_depth (function_graph; 0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_depth: u32,
    /// Workload run while tracing: chain (boot CPU), smp_chain (every CPU), filter, idle, or
    /// script (the --script file's shell lines) [default: chain, script with --script].
    #[arg(short, long, value_parser = ["chain", "smp_chain", "filter", "script", "idle", "busy"])]
    workload: Option<String>,
    /// Shell lines (tracefs shell, as a boot script) to run as the workload while tracing,
    /// e.g. `run chain` and `echo text > trace_marker`.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Keep tracing this many milliseconds after the workload.
    #[arg(short, long = "duration-ms", default_value_t = 0)]
    duration_ms: u64,
    /// Kernel image.
    #[arg(short, long, default_value = "target/loongtrace.elf")]
    kernel: PathBuf,
    /// Number of CPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Kill QEMU after this many seconds.
    #[arg(long, default_value_t = record::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Extra kernel command-line word (repeatable).
    #[arg(long = "cmdline")]
    cmdline: Vec<String>,
    /// Where to save the raw serial stream (default: the output's name with `.serial`).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Read the rings while tracing (the default when only `-o` is asked for and no trace
    /// events or script are recorded).
    #[arg(long, conflicts_with = "no_stream")]
    stream: bool,
    /// Take the rings over the serial line at the end instead.
    #[arg(long)]
    no_stream: bool,
    #[command(flatten)]
    out: Outputs,
}

/// A progress bar (drawn only on a terminal) and the callback that drives it; the callback also
/// notes when the first and the last frame arrived, for the transfer rate.
fn progress_bar(timing: std::rc::Rc<std::cell::Cell<Option<(Instant, Instant, u64)>>>) -> (ProgressBar, impl FnMut(Progress)) {
    let bar = ProgressBar::hidden();
    let b = bar.clone();
    let f = move |p: Progress| {
        let now = Instant::now();
        timing.set(Some((timing.get().map_or(now, |t| t.0), now, p.bytes)));
        if let Some(t) = p.total {
            if b.is_hidden() && b.length().is_none() {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template("fetching {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                        .expect("valid template"),
                );
            }
            b.set_length(t);
        }
        b.set_position(p.bytes);
    };
    (bar, f)
}

fn write_outputs(rec: &Recording, console: &[String], out: &Outputs) -> Result<(), String> {
    let save = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()));
    if let Some(p) = &out.output {
        save(p, &tracedat::write(rec)?)?;
        // A trace event's continuation records carry its bytes; they are no events of their own.
        let events: usize = rec.cpus.iter().map(|c| c.events.iter().filter(|e| e.kind != formats::wire::KIND_CONT).count()).sum();
        eprintln!("ltrace: wrote {} ({} CPUs, {events} events)", p.display(), rec.cpus.len());
    }
    if let Some(p) = &out.flamegraph {
        save(p, &flame::svg(rec, &p.display().to_string())?)?;
        eprintln!("ltrace: wrote {}", p.display());
    }
    if let Some(p) = &out.chrome {
        save(p, chrome::json(rec)?.as_bytes())?;
        eprintln!("ltrace: wrote {}", p.display());
    }
    if let Some(p) = &out.kernel_text {
        let text = capture::kernel_trace_text(console);
        save(p, text.as_bytes())?;
        eprintln!("ltrace: wrote {}", p.display());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Record(a) => {
            let mut run = RunConfig::new(&a.kernel);
            run.smp = a.smp;
            run.timeout = Duration::from_secs(a.timeout);
            let only_events = !a.events.is_empty() || !a.kprobes.is_empty();
            let tracer = a.tracer.unwrap_or_else(|| if only_events { "nop".into() } else { "function_graph".into() });
            let mut cfg = RecordConfig::new(run, &tracer);
            cfg.events = a.events;
            cfg.kprobes = a.kprobes;
            cfg.filter = a.filter;
            cfg.graph_function = a.graph_function;
            cfg.max_depth = a.max_depth;
            cfg.workload = match (a.workload, &a.script) {
                (None, Some(_)) => "script".into(),
                (None, None) => "chain".into(),
                (Some(w), _) => w,
            };
            cfg.script = a.script;
            cfg.duration_ms = a.duration_ms;
            cfg.extra_cmdline = a.cmdline;
            let mut out = a.out;
            if out.output.is_none() && out.flamegraph.is_none() && out.chrome.is_none() {
                out.output = Some(PathBuf::from("trace.dat"));
            }
            cfg.save_serial = Some(a.serial.unwrap_or_else(|| {
                out.output.as_deref().unwrap_or(Path::new("trace.dat")).with_extension("serial")
            }));
            let can_stream = cfg.script.is_none();
            let only_file = out.flamegraph.is_none() && out.chrome.is_none() && out.kernel_text.is_none();
            if a.stream && !(can_stream && only_file) {
                return Err("--stream writes -o trace.dat as it records: it cannot go with --script (trace_marker texts), --flamegraph, --chrome or --kernel-text".into());
            }
            if (a.stream || !a.no_stream) && can_stream && only_file {
                let path = out.output.clone().unwrap_or_else(|| PathBuf::from("trace.dat"));
                return record_streamed(&cfg, &path);
            }
            let timing = std::rc::Rc::new(std::cell::Cell::new(None));
            let (bar, progress) = progress_bar(timing.clone());
            let result = record::record(&cfg, progress);
            bar.finish_and_clear();
            let (console, rec) = result.map_err(|e| e.to_string())?;
            if let Some((first, last, bytes)) = timing.get() {
                let secs = (last - first).as_secs_f64();
                eprintln!(
                    "ltrace: fetched {bytes} bytes in {:.3} s after the first frame ({:.0} KiB/s)",
                    secs,
                    bytes as f64 / 1024.0 / secs.max(1e-6)
                );
            }
            if let Some(p) = &cfg.save_serial {
                eprintln!("ltrace: serial stream saved in {}", p.display());
            }
            write_outputs(&rec, &console, &out)
        }
        Cmd::Convert { serial, out } => {
            let f = std::fs::File::open(&serial).map_err(|e| format!("{}: {e}", serial.display()))?;
            let (console, rec) = capture::read_capture(&mut BufReader::new(f), |_| {}).map_err(|e| format!("{}: {e}", serial.display()))?;
            if out.output.is_none() && out.flamegraph.is_none() && out.chrome.is_none() && out.kernel_text.is_none() {
                return Err("nothing to write: give -o, --flamegraph, --chrome or --kernel-text".into());
            }
            write_outputs(&rec, &console, &out)
        }
    }
}

/// A streamed recording: a progress line while it runs, then the counts per CPU.
fn record_streamed(cfg: &RecordConfig, path: &Path) -> Result<(), String> {
    use std::io::Write;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let show = |p: record::StreamProgress, end: bool| {
        let line = format!(
            "recording: {:6.1} s  {} events ({:.2} M/s)  {:.1} MB written  {} lost",
            p.seconds,
            p.events,
            p.events as f64 / p.seconds.max(1e-6) / 1e6,
            p.file_bytes as f64 / 1e6,
            p.lost
        );
        if tty {
            eprint!("\r{line}{}", if end { "\n" } else { "" });
            let _ = std::io::stderr().flush();
        } else if end {
            eprintln!("{line}");
        }
    };
    // Ctrl-C (QEMU, in the same process group, stops too): finish the file with what was read.
    static INTERRUPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| INTERRUPT.store(true, std::sync::atomic::Ordering::Release));
    let mut last = None;
    let result = record::record_streamed(cfg, path, &INTERRUPT, |p| {
        show(p, false);
        last = Some(p);
    });
    if let Some(p) = last {
        show(p, true);
    }
    let (_console, sum) = result.map_err(|e| e.to_string())?;
    let mb = |b: u64| b as f64 / 1e6;
    let events: u64 = sum.cpus.iter().map(|c| c.events).sum();
    eprintln!(
        "ltrace: wrote {} ({} CPUs, {events} events, {:.1} MB); took {:.1} MB of ring records out in {:.2} s ({:.1} MB/s, {:.2} M events/s)",
        path.display(),
        sum.cpus.len(),
        mb(sum.file_bytes),
        mb(sum.ring_bytes),
        sum.seconds,
        mb(sum.ring_bytes) / sum.seconds.max(1e-6),
        events as f64 / sum.seconds.max(1e-6) / 1e6
    );
    if !sum.stopped {
        for (cpu, c) in sum.cpus.iter().enumerate() {
            eprintln!("ltrace: cpu{cpu}: {} in the file + {} lost (interrupted: the guest was still writing)", c.events, c.lost);
        }
        return Ok(());
    }
    let mut whole = true;
    for (cpu, c) in sum.cpus.iter().enumerate() {
        let written = c.written.unwrap_or(0);
        let ok = c.slots + c.lost + c.skipped == written;
        whole &= ok;
        eprintln!(
            "ltrace: cpu{cpu}: written {written} = {} in the file ({} events) + {} lost + {} other records{}",
            c.slots,
            c.events,
            c.lost,
            c.skipped,
            if ok { "" } else { "  (DOES NOT ADD UP)" }
        );
    }
    if !whole {
        return Err("the per-CPU counts do not add up".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ltrace: {e}");
            ExitCode::FAILURE
        }
    }
}
