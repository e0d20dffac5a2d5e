//! Boots a kernel image under QEMU (LoongArch `virt`) and collects its serial output, with a timeout.
//!
//! The command line is
//!
//! ```text
//! <qemu> -M virt -m 1G -smp <n> -nographic -net none -no-reboot -kernel <elf>
//!        [-fw_cfg name=opt/loongtrace/cmdline,string=<cmdline>]
//!        [-fw_cfg name=opt/loongtrace/modules/<stem>,file=<module.o> ...]
//!        [-fw_cfg name=opt/loongtrace/bpf/<name>.bpf.o,file=<object> ...]
//!        [-icount shift=0,sleep=off] [extra args...]
//! ```
//!
//! With `-nographic` the first serial port is QEMU's stdout; stdin is `/dev/null`. QEMU's exit
//! status means nothing (it is 0 after the kernel powers off, whatever happened before), so only
//! the output counts: parse it with [`crate::ktap`].
//!
//! The kernel command line travels through `fw_cfg`, whose option syntax uses commas as separators,
//! so it may not contain a comma; the kernel separates its options with spaces or `;`. QEMU refuses
//! an empty `string=`, so an empty command line leaves the option out (the kernel reads a missing
//! file as an empty command line).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The QEMU binary used when neither `QEMU` nor an explicit path is given.
pub const DEFAULT_QEMU: &str = "qemu-system-loongarch64";
/// The `fw_cfg` file the kernel reads its command line from.
pub const CMDLINE_FW_CFG: &str = "opt/loongtrace/cmdline";
/// Default for [`RunConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the rest of the output once QEMU has been killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

/// How to boot the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The QEMU binary (default: env `QEMU`, else `qemu-system-loongarch64` from `PATH`).
    pub qemu: PathBuf,
    /// The kernel ELF image passed to `-kernel`.
    pub kernel: PathBuf,
    /// Kill QEMU after this long (default 60 s).
    pub timeout: Duration,
    /// Number of CPUs (default 1).
    pub smp: u32,
    /// The kernel command line, handed over via `fw_cfg`; must not contain a comma.
    pub cmdline: String,
    /// Add `-icount shift=0,sleep=off` (deterministic instruction counting: one virtual ns per
    /// guest instruction, and an idle guest skips to the next timer instead of following host
    /// time).
    pub icount: bool,
    /// Print each serial line to stdout as it arrives (and QEMU's stderr to stderr).
    pub echo: bool,
    /// Appended to the QEMU command line as they are.
    pub extra_args: Vec<String>,
    /// Module objects handed to the kernel as fw_cfg files `opt/loongtrace/modules/<stem>`
    /// (default: the `*.o` files in `modules/` beside the kernel image, which `make build` fills).
    pub modules: Vec<PathBuf>,
    /// BPF objects handed to the kernel as fw_cfg files `opt/loongtrace/bpf/<file name>`
    /// (default: the `*.bpf.o` files in `bpf-progs/` beside the kernel image, which `make build`
    /// fills from bpf/progs; `bpf prog load NAME` and suite `bpf_core` load them).
    pub bpf_objects: Vec<PathBuf>,
}

/// The fw_cfg directory the kernel finds module objects in.
pub const MODULES_FW_CFG: &str = "opt/loongtrace/modules";
/// The fw_cfg directory the kernel finds BPF objects in.
pub const BPF_FW_CFG: &str = "opt/loongtrace/bpf";

/// The `*.bpf.o` files in the `bpf-progs` directory beside `kernel`, sorted (none if it does not
/// exist).
pub fn default_bpf_objects(kernel: &std::path::Path) -> Vec<PathBuf> {
    let dir = kernel.parent().unwrap_or(std::path::Path::new(".")).join("bpf-progs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.to_string_lossy().ends_with(".bpf.o")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The `*.o` files in the `modules` directory beside `kernel`, sorted (none if it does not exist).
pub fn default_modules(kernel: &std::path::Path) -> Vec<PathBuf> {
    let dir = kernel.parent().unwrap_or(std::path::Path::new(".")).join("modules");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "o")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

impl RunConfig {
    /// A configuration with the defaults and the QEMU binary taken from env `QEMU` if set.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        let qemu = std::env::var_os("QEMU")
            .filter(|q| !q.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU));
        let kernel: PathBuf = kernel.into();
        RunConfig {
            qemu,
            modules: default_modules(&kernel),
            bpf_objects: default_bpf_objects(&kernel),
            kernel,
            timeout: DEFAULT_TIMEOUT,
            smp: 1,
            cmdline: String::new(),
            icount: false,
            echo: false,
            extra_args: Vec::new(),
        }
    }

    /// Checks the parts of the configuration that QEMU would trip over.
    pub fn validate(&self) -> Result<(), RunError> {
        if self.cmdline.contains(',') {
            return Err(RunError::CommaInCmdline(self.cmdline.clone()));
        }
        if self.smp == 0 {
            return Err(RunError::ZeroCpus);
        }
        Ok(())
    }

    /// The arguments passed to QEMU (without the binary itself).
    pub fn args(&self) -> Result<Vec<OsString>, RunError> {
        self.validate()?;
        let mut args: Vec<OsString> = ["-M", "virt", "-m", "1G", "-smp"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(self.smp.to_string().into());
        args.extend(
            ["-nographic", "-net", "none", "-no-reboot", "-kernel"]
                .iter()
                .map(OsString::from),
        );
        args.push(self.kernel.clone().into_os_string());
        // QEMU rejects an empty `string=`; no fw_cfg file reads as an empty command line.
        if !self.cmdline.is_empty() {
            args.push("-fw_cfg".into());
            args.push(format!("name={CMDLINE_FW_CFG},string={}", self.cmdline).into());
        }
        for m in &self.modules {
            let stem = m.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let mut a = OsString::from(format!("name={MODULES_FW_CFG}/{stem},file="));
            a.push(m.as_os_str());
            args.push("-fw_cfg".into());
            args.push(a);
        }
        for o in &self.bpf_objects {
            let file = o.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            // QEMU's option parser reads `,,` as a comma inside a value.
            let path = o.to_string_lossy().replace(',', ",,");
            args.push("-fw_cfg".into());
            args.push(format!("name={BPF_FW_CFG}/{file},file={path}").into());
        }
        if self.icount {
            args.push("-icount".into());
            args.push("shift=0,sleep=off".into());
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        Ok(args)
    }

    /// The whole command, ready to spawn (stdin is null, stdout and stderr are piped).
    pub fn command(&self) -> Result<Command, RunError> {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(self.args()?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// The command line as a shell would show it (for messages).
    pub fn command_line(&self) -> Result<String, RunError> {
        let mut words = vec![self.qemu.to_string_lossy().into_owned()];
        words.extend(
            self.args()?
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        Ok(words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "))
    }
}

/// Reads a positive number of seconds (`--timeout` of the host tools).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

/// Checks a kernel command line for what `-fw_cfg` cannot carry (`--cmdline` of the host tools).
pub fn parse_cmdline(text: &str) -> Result<String, String> {
    match text.contains(',') {
        true => Err(RunError::CommaInCmdline(text.to_string()).to_string()),
        false => Ok(text.to_string()),
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What a run printed.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// The serial output, line by line, without line endings.
    pub lines: Vec<String>,
    /// What QEMU itself printed on stderr (option errors, "could not load kernel", ...).
    pub stderr: Vec<String>,
    /// QEMU was killed because it ran longer than [`RunConfig::timeout`].
    pub timed_out: bool,
    /// QEMU's exit status (meaningless for the test result; `None` if it could not be collected).
    pub exit_status: Option<ExitStatus>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl RunOutput {
    /// The last non-empty serial line.
    pub fn last_line(&self) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }

    /// The serial output joined with newlines.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }
}

/// Why a run could not be done at all.
#[derive(Debug)]
pub enum RunError {
    /// The kernel command line contains a comma, which `-fw_cfg ...,string=` cannot carry.
    CommaInCmdline(String),
    /// `smp` was 0.
    ZeroCpus,
    /// The kernel image does not exist.
    KernelMissing(PathBuf),
    /// The QEMU binary could not be started.
    Spawn { qemu: PathBuf, source: io::Error },
    /// Talking to QEMU failed.
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::CommaInCmdline(cmdline) => write!(
                f,
                "the kernel command line may not contain a comma (QEMU's -fw_cfg option splits on it); \
                 separate options with spaces or `;` instead: {cmdline:?}"
            ),
            RunError::ZeroCpus => write!(f, "smp must be at least 1"),
            RunError::KernelMissing(path) => {
                write!(
                    f,
                    "kernel image {} not found (build it with `make build`)",
                    path.display()
                )
            }
            RunError::Spawn { qemu, source } => write!(
                f,
                "cannot start QEMU `{}`: {source}; run `make setup` to install it, or pass \
                 QEMU=/path/to/qemu-system-loongarch64",
                qemu.display()
            ),
            RunError::Io(e) => write!(f, "reading QEMU's output failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spawn { source, .. } | RunError::Io(source) => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

enum Event {
    Stdout(String),
    Stderr(String),
    /// The stdout pipe closed.
    StdoutClosed,
}

/// Reads lines (lossily decoded, `\r` stripped) from `pipe` and sends them as events.
fn pump<R: Read + Send + 'static>(
    pipe: R,
    tx: mpsc::Sender<Event>,
    wrap: fn(String) -> Event,
    closed: Option<Event>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if tx
                        .send(wrap(String::from_utf8_lossy(&buf).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        if let Some(event) = closed {
            let _ = tx.send(event);
        }
    });
}

/// Boots the kernel and collects its output until QEMU exits or the timeout expires (then QEMU is
/// killed and `timed_out` is set). Fails only if QEMU cannot be run at all.
pub fn run(config: &RunConfig) -> Result<RunOutput, RunError> {
    let mut cmd = config.command()?;
    if !config.kernel.is_file() {
        return Err(RunError::KernelMissing(config.kernel.clone()));
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        qemu: config.qemu.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    pump(stdout, tx.clone(), Event::Stdout, Some(Event::StdoutClosed));
    pump(stderr, tx, Event::Stderr, None);

    let deadline = start + config.timeout;
    let mut out = RunOutput::default();
    let mut stdout_open = true;
    while stdout_open {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => stdout_open = record(&mut out, event, config.echo),
            Err(RecvTimeoutError::Timeout) => {
                out.timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // stdout is closed (QEMU is exiting) or the time is up: wait for the exit, within the deadline.
    if !out.timed_out {
        out.exit_status = wait_until(&mut child, deadline)?;
        out.timed_out = out.exit_status.is_none();
    }
    if out.timed_out {
        let _ = child.kill();
        out.exit_status = child.wait().ok();
    }
    // Collect what is still in flight (stderr, or stdout after a kill), briefly: a grandchild may
    // still hold the pipes open.
    let drain_until = Instant::now() + DRAIN_AFTER_KILL;
    loop {
        let left = drain_until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => {
                record(&mut out, event, config.echo);
            }
            Err(_) => break,
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Boots the kernel with [`run`] and reads its output as a test run: KTAP parsed, a timeout
/// recorded, and an empty run failed unless the command line asked for one
/// ([`crate::ktap::Report::check_selection`]).
pub fn run_tests(config: &RunConfig) -> Result<(RunOutput, crate::ktap::Report), RunError> {
    let output = run(config)?;
    let mut report = crate::ktap::parse_lines(&output.lines);
    if output.timed_out {
        report.mark_timed_out(config.timeout);
    }
    report.check_selection(&config.cmdline);
    Ok((output, report))
}

/// Stores one event; returns false once stdout has closed.
fn record(out: &mut RunOutput, event: Event, echo: bool) -> bool {
    match event {
        Event::Stdout(line) => {
            if echo {
                let mut stdout = io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
            out.lines.push(line);
            true
        }
        Event::Stderr(line) => {
            if echo {
                eprintln!("{line}");
            }
            out.stderr.push(line);
            true
        }
        Event::StdoutClosed => false,
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, RunError> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        let mut c = RunConfig::new("target/loongtrace.elf");
        c.qemu = PathBuf::from(DEFAULT_QEMU);
        c
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn default_command_line() {
        let c = config();
        assert_eq!(c.smp, 1);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(
            c.command_line().unwrap(),
            "qemu-system-loongarch64 -M virt -m 1G -smp 1 -nographic -net none -no-reboot \
             -kernel target/loongtrace.elf"
        );
    }

    #[test]
    fn all_options() {
        let mut c = config();
        c.smp = 4;
        c.cmdline = "trace=kmain;log=debug verbose".into();
        c.icount = true;
        c.extra_args = vec!["-s".into(), "-S".into()];
        assert_eq!(
            strings(c.args().unwrap()),
            [
                "-M",
                "virt",
                "-m",
                "1G",
                "-smp",
                "4",
                "-nographic",
                "-net",
                "none",
                "-no-reboot",
                "-kernel",
                "target/loongtrace.elf",
                "-fw_cfg",
                "name=opt/loongtrace/cmdline,string=trace=kmain;log=debug verbose",
                "-icount",
                "shift=0,sleep=off",
                "-s",
                "-S",
            ]
        );
        let shown = c.command_line().unwrap();
        assert!(
            shown.contains(
                " -fw_cfg 'name=opt/loongtrace/cmdline,string=trace=kmain;log=debug verbose' "
            ),
            "{shown}"
        );
    }

    #[test]
    fn comma_in_cmdline_is_rejected() {
        let mut c = config();
        c.cmdline = "a=1,b=2".into();
        let err = c.args().unwrap_err();
        assert!(matches!(err, RunError::CommaInCmdline(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("may not contain a comma") && msg.contains("a=1,b=2"),
            "{msg}"
        );
    }

    #[test]
    fn zero_cpus_is_rejected() {
        let mut c = config();
        c.smp = 0;
        assert!(matches!(c.validate(), Err(RunError::ZeroCpus)));
    }

    #[test]
    fn modules_become_fw_cfg_files() {
        let mut c = config();
        c.modules = vec![PathBuf::from("target/modules/sample_mod.o"), PathBuf::from("/tmp/my mod.o")];
        let args = strings(c.args().unwrap());
        let pos = args.iter().position(|a| a == "name=opt/loongtrace/modules/sample_mod,file=target/modules/sample_mod.o");
        assert!(pos.is_some_and(|p| args[p - 1] == "-fw_cfg"), "{args:?}");
        assert!(args.contains(&"name=opt/loongtrace/modules/my mod,file=/tmp/my mod.o".to_string()));
        // Beside a kernel image, `modules/*.o` is found by default (none here).
        assert!(default_modules(std::path::Path::new("/nonexistent/loongtrace.elf")).is_empty());
    }

    #[test]
    fn bpf_objects_become_fw_cfg_files() {
        let mut c = config();
        c.bpf_objects = vec![PathBuf::from("target/bpf-progs/maps_test.bpf.o"), PathBuf::from("/tmp/a,b/x.bpf.o")];
        let args = strings(c.args().unwrap());
        let pos = args.iter().position(|a| a == "name=opt/loongtrace/bpf/maps_test.bpf.o,file=target/bpf-progs/maps_test.bpf.o");
        assert!(pos.is_some_and(|p| args[p - 1] == "-fw_cfg"), "{args:?}");
        assert!(args.contains(&"name=opt/loongtrace/bpf/x.bpf.o,file=/tmp/a,,b/x.bpf.o".to_string()), "{args:?}");
        // Beside a kernel image, `bpf-progs/*.bpf.o` is found by default (none here), and only those.
        assert!(default_bpf_objects(std::path::Path::new("/nonexistent/loongtrace.elf")).is_empty());
        let dir = std::env::temp_dir().join(format!("loongtrace-bpf-default-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bpf-progs")).unwrap();
        for f in ["b.bpf.o", "a.bpf.o", "notes.txt", "c.o"] {
            std::fs::write(dir.join("bpf-progs").join(f), b"").unwrap();
        }
        let found = default_bpf_objects(&dir.join("loongtrace.elf"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(found, [dir.join("bpf-progs/a.bpf.o"), dir.join("bpf-progs/b.bpf.o")]);
    }

    #[test]
    fn option_values() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-1", "x", "inf", "NaN", ""] {
            assert!(parse_secs(bad).unwrap_err().contains("not a positive number of seconds"), "{bad}");
        }
        assert_eq!(parse_cmdline("a=1 b;c").as_deref(), Ok("a=1 b;c"));
        assert!(parse_cmdline("a,b").unwrap_err().contains("may not contain a comma"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain-word_1.elf"), "plain-word_1.elf");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
