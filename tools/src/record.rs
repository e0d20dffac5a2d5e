//! `ltrace record`: boot the kernel with a tracer and a workload, fetch the recording over serial.

use crate::capture::{self, CaptureError, Progress, Recording};
use crate::runner::RunConfig;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// What to record.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// QEMU, kernel, CPUs, timeout (its `cmdline` is replaced by [`RecordConfig::cmdline`]).
    pub run: RunConfig,
    /// `function` or `function_graph`.
    pub tracer: String,
    /// `set_ftrace_filter` globs.
    pub filter: Vec<String>,
    /// `set_graph_function` globs.
    pub graph_function: Vec<String>,
    /// `max_graph_depth` (0 = unlimited).
    pub max_depth: u32,
    /// `chain`, `smp_chain`, `filter`, `script` or `idle`.
    pub workload: String,
    /// The shell lines the `script` workload runs (a file handed to the kernel through fw_cfg).
    pub script: Option<PathBuf>,
    /// Milliseconds to keep tracing after the workload.
    pub duration_ms: u64,
    /// Extra kernel command-line words.
    pub extra_cmdline: Vec<String>,
    /// Save the raw serial stream here.
    pub save_serial: Option<PathBuf>,
    /// Trace events to record: `set_event` words (`system:event`, globs).
    pub events: Vec<String>,
    /// `kprobe_events` definitions made before recording (their events are recorded).
    pub kprobes: Vec<String>,
}

impl RecordConfig {
    pub fn new(run: RunConfig, tracer: &str) -> Self {
        RecordConfig {
            run,
            tracer: tracer.to_string(),
            filter: Vec::new(),
            graph_function: Vec::new(),
            max_depth: 0,
            workload: "chain".into(),
            script: None,
            duration_ms: 0,
            extra_cmdline: Vec::new(),
            save_serial: None,
            events: Vec::new(),
            kprobes: Vec::new(),
        }
    }

    /// The shell lines that set up the trace events before recording (the kernel runs them from
    /// fw_cfg file `opt/loongtrace/record_events`), or `None` when no event is asked for.
    pub fn events_setup(&self) -> Result<Option<String>, String> {
        if self.events.is_empty() && self.kprobes.is_empty() {
            return Ok(None);
        }
        let mut lines = String::new();
        let mut events = self.events.clone();
        for d in &self.kprobes {
            if d.contains(['\'', '\n']) || d.trim().is_empty() {
                return Err(format!("kprobe definition {d:?} may not be empty or contain a quote or a newline"));
            }
            lines.push_str(&format!("echo '{d}' >> kprobe_events\n"));
            // `p:[GRP/]EVENT ...`: record that event (unnamed ones: every kprobe event).
            let name = d.split_whitespace().next().and_then(|w| w.split_once(':')).map(|(_, n)| n).filter(|n| !n.is_empty());
            events.push(match name {
                Some(n) => match n.split_once('/') {
                    Some((g, e)) => format!("{g}:{e}"),
                    None => format!("kprobes:{n}"),
                },
                None => "kprobes:*".into(),
            });
        }
        for e in &events {
            if e.is_empty() || e.contains(['\'', '\n', ' ']) {
                return Err(format!("event {e:?} may not be empty or contain blanks or quotes"));
            }
            lines.push_str(&format!("echo '{e}' >> set_event\n"));
        }
        Ok(Some(lines))
    }

    /// The kernel command line for this recording.
    pub fn cmdline(&self) -> Result<String, String> {
        if !matches!(self.tracer.as_str(), "nop" | "function" | "function_graph") {
            return Err(format!("unknown tracer '{}' (nop, function or function_graph)", self.tracer));
        }
        if self.tracer == "function" && (!self.graph_function.is_empty() || self.max_depth != 0) {
            return Err("--graph-function and --max-depth need the function_graph tracer".into());
        }
        let list = |what: &str, v: &[String]| -> Result<String, String> {
            match v.iter().find(|g| g.is_empty() || g.contains([' ', ',', '|', ';', '='])) {
                Some(bad) => Err(format!("{what} pattern {bad:?} may not be empty or contain blanks, ',', '|', ';' or '='")),
                None => Ok(v.join("|")),
            }
        };
        match (self.workload.as_str(), &self.script) {
            ("script", None) => return Err("the script workload needs a script file (--script FILE)".into()),
            ("script", Some(_)) | (_, None) => {}
            (w, Some(_)) => return Err(format!("a script is the workload: it cannot go with workload '{w}'")),
        }
        let mut words = vec![format!("record={}", self.tracer), format!("record_workload={}", self.workload)];
        if self.script.is_some() {
            words.push("script".into());
        }
        if !self.filter.is_empty() {
            words.push(format!("record_filter={}", list("filter", &self.filter)?));
        }
        if !self.graph_function.is_empty() {
            words.push(format!("record_graph={}", list("graph-function", &self.graph_function)?));
        }
        if self.max_depth != 0 {
            words.push(format!("record_depth={}", self.max_depth));
        }
        if self.duration_ms != 0 {
            words.push(format!("record_ms={}", self.duration_ms));
        }
        words.extend(self.extra_cmdline.iter().cloned());
        Ok(words.join(" "))
    }
}

/// Why a recording failed.
#[derive(Debug)]
pub enum RecordError {
    Config(String),
    Spawn(String),
    Capture { error: CaptureError, timed_out: bool, stderr: String },
    Io(io::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Config(m) | RecordError::Spawn(m) => f.write_str(m),
            RecordError::Capture { error, timed_out, stderr } => {
                if *timed_out {
                    write!(f, "QEMU was killed after the time limit; ")?;
                }
                write!(f, "{error}")?;
                if !stderr.trim().is_empty() {
                    write!(f, "\nQEMU said: {}", stderr.trim())?;
                }
                Ok(())
            }
            RecordError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Copies everything read into a file as well.
struct Tee<R> {
    inner: R,
    copy: Option<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(f) = &mut self.copy {
            f.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// The QEMU arguments that hand `script` to the kernel as its boot script (fw_cfg file
/// `opt/loongtrace/script`; a `,` in the path is doubled, as QEMU's option syntax escapes it).
pub fn script_fw_cfg(script: &std::path::Path) -> [String; 2] {
    ["-fw_cfg".into(), format!("name=opt/loongtrace/script,file={}", script.display().to_string().replace(',', ",,"))]
}

/// Boots the kernel, waits for the recording and returns the console text before it and the
/// recording. QEMU is killed after `run.timeout`.
pub fn record(cfg: &RecordConfig, progress: impl FnMut(Progress)) -> Result<(Vec<String>, Recording), RecordError> {
    let mut run = cfg.run.clone();
    run.cmdline = cfg.cmdline().map_err(RecordError::Config)?;
    if let Some(script) = &cfg.script {
        if !script.is_file() {
            return Err(RecordError::Config(format!("script {} not found", script.display())));
        }
        run.extra_args.extend(script_fw_cfg(script));
    }
    // Kept until QEMU has read it (the end of this function).
    let mut _setup_file = None;
    if let Some(lines) = cfg.events_setup().map_err(RecordError::Config)? {
        _setup_file = Some(events_setup_file(&lines, &mut run).map_err(RecordError::Io)?);
    }
    let mut qemu = Qemu::start(&run, cfg.save_serial.as_deref())?;
    let result = capture::read_capture(&mut qemu.reader, progress);
    if result.is_ok() {
        // Let the guest print its last lines and power off; keep them in the saved stream.
        let _ = io::copy(&mut qemu.reader, &mut io::sink());
    }
    let (timed_out, stderr) = qemu.finish();
    result.map_err(|error| RecordError::Capture { error, timed_out, stderr })
}

/// QEMU running a recording: its serial output (copied to a file if asked), and a watchdog that
/// kills it after the run's time limit or when [`Qemu::finish`] is called.
struct Qemu {
    reader: BufReader<Tee<std::process::ChildStdout>>,
    done_tx: mpsc::Sender<()>,
    watchdog: thread::JoinHandle<bool>,
    stderr_thread: thread::JoinHandle<String>,
}

impl Qemu {
    fn start(run: &RunConfig, save_serial: Option<&std::path::Path>) -> Result<Qemu, RecordError> {
        if !run.kernel.is_file() {
            return Err(RecordError::Config(format!("kernel image {} not found (build it with `make build`)", run.kernel.display())));
        }
        let mut cmd = run.command().map_err(|e| RecordError::Config(e.to_string()))?;
        cmd.stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| RecordError::Spawn(format!("cannot start QEMU `{}`: {e}", run.qemu.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let stderr_thread = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let timeout = run.timeout;
        let watchdog = thread::spawn(move || {
            let timed_out = matches!(done_rx.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Timeout));
            let _ = child.kill();
            let _ = child.wait();
            timed_out
        });
        let copy = match save_serial {
            Some(p) => Some(File::create(p).map_err(RecordError::Io)?),
            None => None,
        };
        let reader = BufReader::with_capacity(1 << 16, Tee { inner: stdout, copy });
        Ok(Qemu { reader, done_tx, watchdog, stderr_thread })
    }

    /// Stops QEMU (if still running); returns whether the time limit killed it, and its stderr.
    fn finish(self) -> (bool, String) {
        let _ = self.done_tx.send(());
        let timed_out = self.watchdog.join().unwrap_or(false);
        let stderr = self.stderr_thread.join().unwrap_or_default();
        (timed_out, stderr)
    }
}

/// Bytes of guest RAM (`-m 1G`, as the runner gives every boot).
pub const GUEST_RAM: u64 = 1 << 30;

/// What a streamed recording took out.
#[derive(Clone, Debug, Default)]
pub struct StreamSummary {
    /// Per CPU: events in the file, slots lost, slots skipped, slots written.
    pub cpus: Vec<crate::stream::CpuCounts>,
    /// Size of the finished file.
    pub file_bytes: u64,
    /// Slot bytes read out of the guest (64 per record read).
    pub ring_bytes: u64,
    /// Host time from the start of tracing to the last read.
    pub seconds: f64,
    /// Whether the guest stopped the stream (false: the user interrupted the recording).
    pub stopped: bool,
}

/// Progress of a streamed recording.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamProgress {
    pub seconds: f64,
    pub events: u64,
    pub lost: u64,
    pub file_bytes: u64,
}

/// Boots the kernel with the recording streamed: the host reads the trace rings out of the
/// guest's RAM (a shared memory file) while it traces, and writes `output` as it goes. Setting
/// `interrupt` (Ctrl-C) ends the recording there: what was read is finished into the file and
/// the summary says it was not stopped by the guest (the counts of records written are then
/// unknown).
pub fn record_streamed(
    cfg: &RecordConfig,
    output: &std::path::Path,
    interrupt: &std::sync::atomic::AtomicBool,
    mut progress: impl FnMut(StreamProgress),
) -> Result<(Vec<String>, StreamSummary), RecordError> {
    if cfg.script.is_some() {
        return Err(RecordError::Config("a script's trace_marker texts are kept outside the rings: a recording with a script is sent at the end (--no-stream)".into()));
    }
    let mut run = cfg.run.clone();
    run.cmdline = format!("{} record_stream", cfg.cmdline().map_err(RecordError::Config)?);
    // Kept until QEMU has read it (the end of this function).
    let mut _setup_file = None;
    if let Some(lines) = cfg.events_setup().map_err(RecordError::Config)? {
        _setup_file = Some(events_setup_file(&lines, &mut run).map_err(RecordError::Io)?);
    }
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let ram_path = dir.join(format!("ltrace-ram-{}-{nanos}", std::process::id()));
    let ram_file = crate::stream::create_ram_file(&ram_path, GUEST_RAM).map_err(|e| RecordError::Config(format!("{}: {e}", ram_path.display())))?;
    let _ram_guard = TempFile(ram_path.clone());
    let ram = crate::stream::GuestRam::map(&ram_file, GUEST_RAM).map_err(RecordError::Io)?;
    run.extra_args.extend(crate::stream::qemu_ram_args(&ram_path, GUEST_RAM));

    let mut qemu = Qemu::start(&run, cfg.save_serial.as_deref())?;
    let fail = |qemu: Qemu, error: CaptureError| {
        let (timed_out, stderr) = qemu.finish();
        RecordError::Capture { error, timed_out, stderr }
    };
    let (console, meta) = match capture::read_capture(&mut qemu.reader, |_| {}) {
        Ok(x) => x,
        Err(e) => return Err(fail(qemu, e)),
    };
    let control = console
        .iter()
        .find_map(|l| l.trim().strip_prefix(formats::stream::CONTROL_LINE))
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
    let Some(control) = control else {
        return Err(fail(qemu, CaptureError::Inconsistent("the kernel printed no stream control line".into())));
    };
    let mut streamer = match crate::stream::open(&ram, control, meta.cpus.len()) {
        Ok(s) => s,
        Err(e) => return Err(fail(qemu, CaptureError::Inconsistent(e))),
    };
    let mut file = crate::tracedat::StreamFile::create(output, &meta).map_err(RecordError::Config)?;
    // QEMU has the RAM file open and mapped by now (the guest has printed): unlink it, so that
    // nothing is left in /dev/shm however ltrace ends; the two mappings keep the memory.
    let _ = std::fs::remove_file(&ram_path);
    // The rest of the serial output (the guest's last lines) is drained beside the reader.
    let serial_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let Qemu { mut reader, done_tx, watchdog, stderr_thread } = qemu;
    let flag = serial_done.clone();
    let drain = thread::spawn(move || {
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
            line.clear();
        }
        flag.store(true, std::sync::atomic::Ordering::Release);
        lines
    });
    let stop_qemu = move || {
        let _ = done_tx.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        let stderr = stderr_thread.join().unwrap_or_default();
        (timed_out, stderr)
    };
    let t0 = std::time::Instant::now();
    let mut last_shown = t0;
    let mut stopped_at = None;
    loop {
        // Seen stopped before the poll: that poll reads up to the final heads.
        let stopped = streamer.stopped();
        let ended = serial_done.load(std::sync::atomic::Ordering::Acquire) || interrupt.load(std::sync::atomic::Ordering::Acquire);
        let before: u64 = streamer.counts.iter().map(|c| c.slots + c.skipped + c.lost).sum();
        if let Err(e) = streamer.poll(&meta, &mut file, stopped) {
            let _ = file.finish();
            let _ = stop_qemu();
            return Err(RecordError::Config(e));
        }
        let busy = streamer.counts.iter().map(|c| c.slots + c.skipped + c.lost).sum::<u64>() != before;
        let finished = stopped && (streamer.pending().is_empty() || stopped_at.is_some_and(|t: std::time::Instant| t.elapsed() > Duration::from_secs(1)));
        if stopped && stopped_at.is_none() {
            stopped_at = Some(std::time::Instant::now());
        }
        if last_shown.elapsed() >= Duration::from_millis(500) || finished || ended {
            last_shown = std::time::Instant::now();
            progress(StreamProgress {
                seconds: t0.elapsed().as_secs_f64(),
                events: streamer.counts.iter().map(|c| c.events).sum(),
                lost: streamer.counts.iter().map(|c| c.lost).sum(),
                file_bytes: file.data_bytes(),
            });
        }
        if finished || (ended && !stopped) {
            break;
        }
        // Back to the rings at once while they fill; a short nap when they are quiet (or a
        // record the final heads count is still being committed).
        if !busy {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let counts = streamer.counts.clone();
    let pending = streamer.pending();
    let stopped = counts.iter().all(|c| c.written.is_some());
    let finished = file.finish();
    let (timed_out, stderr) = stop_qemu();
    let file_bytes = finished.map_err(RecordError::Io)?;
    let mut console = console;
    console.extend(drain.join().unwrap_or_default());
    if !stopped && !interrupt.load(std::sync::atomic::Ordering::Acquire) {
        let said: Vec<&str> = console.iter().map(String::as_str).filter(|l| l.starts_with("record:")).collect();
        let error = CaptureError::Inconsistent(format!(
            "the guest did not stop the stream{}; {} keeps what was read",
            if said.is_empty() { String::new() } else { format!(" (it said: {})", said.join("; ")) },
            output.display()
        ));
        return Err(RecordError::Capture { error, timed_out, stderr });
    }
    if stopped && !pending.is_empty() {
        let error = CaptureError::Inconsistent(format!("the records of CPUs {pending:?} up to the final heads were still not committed 1 s after the stream stopped"));
        return Err(RecordError::Capture { error, timed_out, stderr });
    }
    let ring_bytes = counts.iter().map(|c| (c.slots + c.skipped) * formats::ring::SLOT_BYTES as u64).sum();
    Ok((console, StreamSummary { cpus: counts, file_bytes, ring_bytes, seconds, stopped }))
}

/// Writes the trace events' setup lines to a temporary file that `run` hands to the kernel as
/// fw_cfg file `opt/loongtrace/record_events`; the file goes when the result is dropped.
fn events_setup_file(lines: &str, run: &mut RunConfig) -> io::Result<TempFile> {
    let path = std::env::temp_dir().join(format!("ltrace-events-{}-{:?}.sh", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&path, lines)?;
    run.extra_args.extend(["-fw_cfg".into(), format!("name=opt/loongtrace/record_events,file={}", path.display().to_string().replace(',', ",,"))]);
    Ok(TempFile(path))
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The default time limit of a recording.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RecordConfig {
        RecordConfig::new(RunConfig::new("k.elf"), "function")
    }

    #[test]
    fn events_setup_lines() {
        let mut c = cfg();
        assert_eq!(c.events_setup().unwrap(), None);
        c.kprobes = vec!["p:myprobe chain_c x=%a0".into(), "r:grp/ret chain_b".into(), "p chain_a".into()];
        c.events = vec!["module:*".into()];
        assert_eq!(
            c.events_setup().unwrap().unwrap(),
            "echo 'p:myprobe chain_c x=%a0' >> kprobe_events\necho 'r:grp/ret chain_b' >> kprobe_events\necho 'p chain_a' >> kprobe_events\n\
             echo 'module:*' >> set_event\necho 'kprobes:myprobe' >> set_event\necho 'grp:ret' >> set_event\necho 'kprobes:*' >> set_event\n"
        );
        c.kprobes = vec!["p:x 'quoted'".into()];
        assert!(c.events_setup().unwrap_err().contains("quote"));
        c.kprobes.clear();
        c.events = vec!["a b".into()];
        assert!(c.events_setup().unwrap_err().contains("blanks"));
        c.tracer = "nop".into();
        assert!(c.cmdline().is_ok());
    }

    #[test]
    fn script_workload_command_line() {
        let mut c = cfg();
        c.workload = "script".into();
        assert!(c.cmdline().unwrap_err().contains("--script FILE"));
        c.script = Some("s,1.sh".into());
        c.filter = vec!["chain_*".into()];
        assert_eq!(c.cmdline().unwrap(), "record=function record_workload=script script record_filter=chain_*");
        c.workload = "chain".into();
        assert!(c.cmdline().unwrap_err().contains("cannot go with workload 'chain'"));
        assert_eq!(script_fw_cfg(std::path::Path::new("/a,b/s.sh")), ["-fw_cfg", "name=opt/loongtrace/script,file=/a,,b/s.sh"]);
        // The kernel checks that the file exists; the host first.
        let mut c = cfg();
        c.workload = "script".into();
        c.script = Some("/nonexistent/s.sh".into());
        c.run.kernel = std::env::current_exe().unwrap();
        assert!(record(&c, |_| {}).unwrap_err().to_string().contains("script /nonexistent/s.sh not found"));
    }
}
