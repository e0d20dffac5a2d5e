//! A small libtest-style harness that boots the kernel once and reports each KTAP case as a test.
//!
//! `tests/kernel.rs` (a `harness = false` test target) calls [`main`]. The flow is: parse the
//! libtest command line ([`Options::parse`]), find or build the kernel image ([`kernel_image`]),
//! boot it once with [`loongtrace_tools::runner`], parse the output with
//! [`loongtrace_tools::ktap`], turn the report into tests ([`tests_from_report`]) named
//! `kernel::<suite>::<case>` plus the pseudo-test `kernel::run`, and print them like libtest
//! ([`render`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loongtrace_tools::ktap::{Outcome, Report};
use loongtrace_tools::runner::{self, RunConfig, RunOutput};

/// Exit code of a failed run, as libtest uses.
pub const EXIT_FAILURE: i32 = 101;
/// Default for `LOONGTRACE_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Name of the pseudo-test that fails when the run as a whole went wrong.
pub const RUN_TEST: &str = "kernel::run";
/// How many serial lines `kernel::run` shows when it fails.
const TAIL_LINES: usize = 20;

/// The libtest command-line options this harness understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Positional filters: a test runs if any of them is a substring of its name (or equals it
    /// with `--exact`).
    pub filters: Vec<String>,
    /// `--skip FILTER`: tests matching any of these do not run.
    pub skip: Vec<String>,
    pub exact: bool,
    pub list: bool,
    pub quiet: bool,
    pub nocapture: bool,
    /// Warnings about options that were ignored.
    pub warnings: Vec<String>,
}

/// Options that are accepted and ignored, and whether they take a value.
const IGNORED_OPTIONS: &[(&str, bool)] = &[
    ("--ignored", false),
    ("--include-ignored", false),
    ("--show-output", false),
    ("--test", false),
    ("--bench", false),
    ("--report-time", false),
    ("--ensure-time", false),
    ("--shuffle", false),
    ("--test-threads", true),
    ("--color", true),
    ("--format", true),
    ("--logfile", true),
    ("--shuffle-seed", true),
    ("-Z", true),
];

impl Options {
    /// Parses libtest-style arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
        let mut opts = Options::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            match flag.as_str() {
                "--exact" => opts.exact = true,
                "--list" => opts.list = true,
                "-q" | "--quiet" => opts.quiet = true,
                "--nocapture" | "--no-capture" => opts.nocapture = true,
                "--skip" => {
                    let value = inline.or_else(|| it.next()).ok_or("--skip needs a value")?;
                    opts.skip.push(value);
                }
                "-h" | "--help" => return Err(String::new()),
                _ if flag.starts_with('-') && flag.len() > 1 => {
                    match IGNORED_OPTIONS.iter().find(|(name, _)| *name == flag) {
                        Some((_, takes_value)) => {
                            if *takes_value && inline.is_none() {
                                it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                            }
                        }
                        None => opts
                            .warnings
                            .push(format!("ignoring unknown option `{arg}`")),
                    }
                }
                _ => opts.filters.push(arg),
            }
        }
        Ok(opts)
    }

    fn matches_one(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    }

    /// Whether a test called `name` is selected by the filters and `--skip`.
    pub fn selects(&self, name: &str) -> bool {
        let wanted =
            self.filters.is_empty() || self.filters.iter().any(|f| self.matches_one(f, name));
        wanted && !self.skip.iter().any(|s| self.matches_one(s, name))
    }

    /// True if no kernel test can be selected, so booting can be skipped (only knowable with
    /// `--exact`, where every filter must name a `kernel::` test).
    pub fn selects_nothing(&self) -> bool {
        self.exact
            && !self.filters.is_empty()
            && !self.filters.iter().any(|f| f.starts_with("kernel::"))
    }
}

pub const USAGE: &str = "\
usage: cargo test -p loongtrace-tests -- [OPTIONS] [FILTERS...]

Boots the kernel once under QEMU and reports each in-kernel KTAP case as a test
`kernel::<suite>::<case>`, plus `kernel::run`, which fails if the run as a whole went wrong
(kernel panic, timeout, missing plan, wrong count).

  FILTERS          run tests whose name contains any FILTER
  --exact          filters must match the whole name
  --skip FILTER    do not run tests matching FILTER
  --list           list the tests (boots the kernel to learn them)
  -q, --quiet      one character per test
  --nocapture      print the serial output live

Environment: LOONGTRACE_KERNEL (image, default <workspace>/target/loongtrace.elf), QEMU,
LOONGTRACE_TIMEOUT (seconds, default 120), LOONGTRACE_SMP (default 1), LOONGTRACE_CMDLINE.";

/// The result of one reported test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Failed, with the lines shown in the `failures:` section.
    Failed(Vec<String>),
    /// Skipped by the kernel, with the reason.
    Ignored(String),
}

/// One test as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub status: Status,
}

/// The workspace root (`tests/..`).
pub fn workspace_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The kernel image: `LOONGTRACE_KERNEL`, or `<workspace>/target/loongtrace.elf`, which is built
/// with `make -C <workspace> build` if it does not exist yet.
pub fn kernel_image() -> Result<PathBuf, String> {
    let workspace = workspace_dir();
    if let Some(path) = std::env::var_os("LOONGTRACE_KERNEL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let path = if path.is_relative() && !path.exists() {
            workspace.join(path)
        } else {
            path
        };
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "LOONGTRACE_KERNEL={} does not exist",
                path.display()
            ))
        };
    }
    let path = workspace.join("target").join("loongtrace.elf");
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "loongtrace-tests: {} not found; running `make -C {} build`",
        path.display(),
        workspace.display()
    );
    let status = Command::new("make")
        .arg("-C")
        .arg(&workspace)
        .arg("build")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run `make -C {} build`: {e}", workspace.display()))?;
    if !status.success() {
        return Err(format!(
            "`make -C {} build` failed ({status}); fix the kernel build, or point LOONGTRACE_KERNEL at an image",
            workspace.display()
        ));
    }
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "`make build` succeeded but {} still does not exist",
            path.display()
        ))
    }
}

/// The run configuration from the environment (`QEMU`, `LOONGTRACE_TIMEOUT`, `LOONGTRACE_SMP`,
/// `LOONGTRACE_CMDLINE`).
pub fn config_from_env(kernel: PathBuf, echo: bool) -> Result<RunConfig, String> {
    config_from(kernel, echo, |name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

fn config_from(
    kernel: PathBuf,
    echo: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RunConfig, String> {
    let mut config = RunConfig::new(kernel);
    config.echo = echo;
    config.timeout = DEFAULT_TIMEOUT;
    if let Some(v) = env("LOONGTRACE_TIMEOUT") {
        let secs: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0 && s.is_finite())
            .ok_or_else(|| format!("LOONGTRACE_TIMEOUT={v} is not a positive number of seconds"))?;
        config.timeout = Duration::from_secs_f64(secs);
    }
    if let Some(v) = env("LOONGTRACE_SMP") {
        config.smp = v
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("LOONGTRACE_SMP={v} is not a CPU count"))?;
    }
    if let Some(v) = env("LOONGTRACE_CMDLINE") {
        config.cmdline = v;
    }
    config
        .validate()
        .map_err(|e| format!("LOONGTRACE_CMDLINE: {e}"))?;
    Ok(config)
}

/// Name of the test for one case.
pub fn test_name(suite: &str, case: &str) -> String {
    format!("kernel::{suite}::{case}")
}

fn status_of(outcome: Option<&Outcome>, details: Vec<String>) -> Status {
    match outcome {
        Some(Outcome::Pass) => Status::Ok,
        Some(Outcome::Skip(reason)) => Status::Ignored(reason.clone()),
        Some(Outcome::Fail) | None => Status::Failed(details),
    }
}

/// Turns a report into tests: one per case, one per suite without cases (a top-level test), and
/// `kernel::run` (failed when the report has fatal problems). `output` adds context to a failed
/// `kernel::run`.
pub fn tests_from_report(report: &Report, output: Option<&RunOutput>) -> Vec<TestResult> {
    let mut tests = Vec::new();
    for suite in &report.suites {
        if suite.cases.is_empty() {
            if let Some(result) = &suite.result {
                let details = suite.diagnostics.iter().map(|d| format!("# {d}")).collect();
                tests.push(TestResult {
                    name: format!("kernel::{}", suite.name),
                    status: status_of(Some(result), details),
                });
            }
            continue;
        }
        for case in &suite.cases {
            let mut details: Vec<String> = case.log.clone();
            details.extend(case.diagnostics.iter().map(|d| format!("# {d}")));
            tests.push(TestResult {
                name: test_name(&suite.name, &case.name),
                status: status_of(Some(&case.outcome), details),
            });
        }
    }
    let fatal: Vec<String> = report
        .fatal_problems()
        .map(|p| format!("error: {p}"))
        .collect();
    let status = if fatal.is_empty() {
        Status::Ok
    } else {
        let mut details = fatal;
        if let Some(out) = output {
            if !out.stderr.is_empty() {
                details.push("QEMU stderr:".into());
                details.extend(out.stderr.iter().map(|l| format!("    {l}")));
            }
            let tail = out.lines.len().saturating_sub(TAIL_LINES);
            if out.lines.is_empty() {
                details.push("the kernel printed nothing".into());
            } else {
                details.push(format!("last {} serial lines:", out.lines.len() - tail));
                details.extend(out.lines[tail..].iter().map(|l| format!("    {l}")));
            }
        }
        Status::Failed(details)
    };
    tests.push(TestResult {
        name: RUN_TEST.into(),
        status,
    });
    tests
}

/// A failed `kernel::run` standing for a run that could not happen at all.
pub fn run_error(message: &str) -> Vec<TestResult> {
    vec![TestResult {
        name: RUN_TEST.into(),
        status: Status::Failed(vec![format!("error: {message}")]),
    }]
}

/// Applies the filters. A failed `kernel::run` is kept even when the filters leave it out
/// (unless `--skip` names it), so that a crashed run is never reported as passing. Returns the
/// selected tests and how many were filtered out.
pub fn select(tests: Vec<TestResult>, opts: &Options) -> (Vec<TestResult>, usize) {
    let total = tests.len();
    let selected: Vec<TestResult> = tests
        .into_iter()
        .filter(|t| {
            opts.selects(&t.name)
                || (t.name == RUN_TEST
                    && matches!(t.status, Status::Failed(_))
                    && !opts.skip.iter().any(|s| opts.matches_one(s, &t.name)))
        })
        .collect();
    let filtered_out = total - selected.len();
    (selected, filtered_out)
}

/// What [`render`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
}

/// Prints results like libtest, ending with `test result: ...` and a plain `N passed, N failed`.
pub fn render(
    tests: &[TestResult],
    opts: &Options,
    filtered_out: usize,
    elapsed: Duration,
) -> (String, Totals) {
    let mut out = String::new();
    let mut totals = Totals::default();
    let _ = writeln!(
        out,
        "\nrunning {} test{}",
        tests.len(),
        if tests.len() == 1 { "" } else { "s" }
    );
    let mut column = 0;
    for t in tests {
        let (word, mark) = match &t.status {
            Status::Ok => {
                totals.passed += 1;
                ("ok".to_string(), '.')
            }
            Status::Failed(_) => {
                totals.failed += 1;
                ("FAILED".to_string(), 'F')
            }
            Status::Ignored(reason) => {
                totals.ignored += 1;
                let word = if reason.is_empty() {
                    "ignored".to_string()
                } else {
                    format!("ignored, {reason}")
                };
                (word, 'i')
            }
        };
        if opts.quiet {
            out.push(mark);
            column += 1;
            if column % 88 == 0 {
                out.push('\n');
            }
        } else {
            let _ = writeln!(out, "test {} ... {word}", t.name);
        }
    }
    if opts.quiet && column % 88 != 0 {
        out.push('\n');
    }
    let failures: Vec<&TestResult> = tests
        .iter()
        .filter(|t| matches!(t.status, Status::Failed(_)))
        .collect();
    if !failures.is_empty() {
        out.push_str("\nfailures:\n");
        for t in &failures {
            let Status::Failed(details) = &t.status else {
                continue;
            };
            let _ = writeln!(out, "\n---- {} stdout ----", t.name);
            if details.is_empty() {
                out.push_str("(no diagnostics)\n");
            }
            for line in details {
                let _ = writeln!(out, "{line}");
            }
        }
        out.push_str("\nfailures:\n");
        for t in &failures {
            let _ = writeln!(out, "    {}", t.name);
        }
    }
    let _ = writeln!(
        out,
        "\ntest result: {}. {} passed; {} failed; {} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if totals.failed == 0 { "ok" } else { "FAILED" },
        totals.passed,
        totals.failed,
        totals.ignored,
        filtered_out,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{} passed, {} failed", totals.passed, totals.failed);
    (out, totals)
}

/// Boots the kernel and returns the tests, or a failed `kernel::run` if that was impossible.
fn boot(opts: &Options) -> Result<Vec<TestResult>, String> {
    let kernel = kernel_image()?;
    let config = config_from_env(kernel, opts.nocapture)?;
    let (output, report) = runner::run_tests(&config).map_err(|e| e.to_string())?;
    Ok(tests_from_report(&report, Some(&output)))
}

/// The whole harness; returns the process exit code.
pub fn main<I: IntoIterator<Item = String>>(args: I) -> i32 {
    let opts = match Options::parse(args) {
        Ok(opts) => opts,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return EXIT_FAILURE;
        }
    };
    for warning in &opts.warnings {
        eprintln!("warning: {warning}");
    }
    let start = Instant::now();
    let tests = if opts.selects_nothing() {
        Vec::new()
    } else {
        match boot(&opts) {
            Ok(tests) => tests,
            Err(e) if opts.list => {
                eprintln!("error: cannot list the kernel tests: {e}");
                return EXIT_FAILURE;
            }
            Err(e) => run_error(&e),
        }
    };
    if opts.list {
        let (selected, _) = select(tests, &opts);
        for t in &selected {
            println!("{}: test", t.name);
        }
        if !opts.quiet {
            println!("\n{} tests, 0 benchmarks", selected.len());
        }
        return 0;
    }
    let (selected, filtered_out) = select(tests, &opts);
    let (text, totals) = render(&selected, &opts, filtered_out, start.elapsed());
    print!("{text}");
    if totals.failed == 0 { 0 } else { EXIT_FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::parse(args.iter().map(|s| s.to_string())).unwrap()
    }

    fn fixture(name: &str) -> Report {
        let path = workspace_dir().join("tools/tests/fixtures").join(name);
        loongtrace_tools::ktap::parse(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
    }

    #[test]
    fn parses_libtest_options() {
        let o = opts(&[
            "boot",
            "--exact",
            "--test-threads",
            "4",
            "--nocapture",
            "-q",
            "--include-ignored",
            "--ignored",
            "--skip=insn",
            "--color",
            "never",
            "--format=pretty",
            "--frobnicate",
            "insn",
        ]);
        assert_eq!(o.filters, ["boot", "insn"]);
        assert_eq!(o.skip, ["insn"]);
        assert!(o.exact && o.nocapture && o.quiet && !o.list);
        assert_eq!(o.warnings, ["ignoring unknown option `--frobnicate`"]);
        assert!(opts(&["--list"]).list);
        assert!(Options::parse(["--skip".to_string()]).is_err());
        assert_eq!(Options::parse(["--help".to_string()]), Err(String::new()));
    }

    #[test]
    fn filters() {
        let o = opts(&["heap", "timer"]);
        assert!(o.selects("kernel::boot::heap_alloc"));
        assert!(o.selects("kernel::boot::timer"));
        assert!(!o.selects("kernel::insn::encoders"));
        let o = opts(&["--exact", "kernel::boot::heap"]);
        assert!(!o.selects("kernel::boot::heap_alloc"));
        assert!(opts(&["--exact", "kernel::boot::heap_alloc"]).selects("kernel::boot::heap_alloc"));
        let o = opts(&["--skip", "boot"]);
        assert!(!o.selects("kernel::boot::heap_alloc") && o.selects("kernel::insn::encoders"));
        assert!(opts(&[]).selects("anything"));
        assert!(opts(&["--exact", "ktap::tests::x"]).selects_nothing());
        assert!(!opts(&["--exact", "kernel::run"]).selects_nothing());
        assert!(!opts(&["ktap"]).selects_nothing());
    }

    #[test]
    fn env_config() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = config_from("k.elf".into(), true, env(&[])).unwrap();
        assert_eq!(
            (c.timeout, c.smp, c.cmdline.as_str(), c.echo),
            (DEFAULT_TIMEOUT, 1, "", true)
        );
        let c = config_from(
            "k.elf".into(),
            false,
            env(&[
                ("LOONGTRACE_TIMEOUT", "30"),
                ("LOONGTRACE_SMP", "2"),
                ("LOONGTRACE_CMDLINE", "a=1;b"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.timeout, c.smp, c.cmdline.as_str()),
            (Duration::from_secs(30), 2, "a=1;b")
        );
        assert!(
            config_from("k".into(), false, env(&[("LOONGTRACE_TIMEOUT", "soon")]))
                .unwrap_err()
                .contains("TIMEOUT")
        );
        assert!(
            config_from("k".into(), false, env(&[("LOONGTRACE_SMP", "0")]))
                .unwrap_err()
                .contains("SMP")
        );
        assert!(
            config_from("k".into(), false, env(&[("LOONGTRACE_CMDLINE", "a,b")]))
                .unwrap_err()
                .contains("comma")
        );
    }

    #[test]
    fn a_good_run() {
        let tests = tests_from_report(&fixture("good.txt"), None);
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kernel::boot::heap_alloc",
                "kernel::boot::symbols",
                "kernel::boot::timer",
                "kernel::insn::encoders",
                "kernel::insn::decoders",
                "kernel::trace::patch_nop",
                "kernel::trace::ring_buffer",
                "kernel::run",
            ]
        );
        assert_eq!(tests[2].status, Status::Ignored("no timer".into()));
        let (text, totals) = render(&tests, &opts(&[]), 0, Duration::from_millis(1234));
        assert_eq!(
            totals,
            Totals {
                passed: 7,
                failed: 0,
                ignored: 1
            }
        );
        assert!(
            text.starts_with("\nrunning 8 tests\ntest kernel::boot::heap_alloc ... ok\n"),
            "{text}"
        );
        assert!(
            text.contains("test kernel::boot::timer ... ignored, no timer\n"),
            "{text}"
        );
        assert!(text.contains(
            "\ntest result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.23s\n"
        ));
        assert!(text.ends_with("\n7 passed, 0 failed\n"), "{text}");
        assert!(!text.contains("failures:"));
    }

    #[test]
    fn a_failing_case() {
        let tests = tests_from_report(&fixture("test_panic.txt"), None);
        let (text, totals) = render(&tests, &opts(&[]), 0, Duration::ZERO);
        assert_eq!(
            totals,
            Totals {
                passed: 4,
                failed: 1,
                ignored: 0
            }
        );
        assert!(text.contains("test kernel::mm::page_table ... FAILED\n"));
        assert!(
            text.contains(
                "\nfailures:\n\n---- kernel::mm::page_table stdout ----\n\
             [    0.031000] WARN  cpu0: test mm.page_table panicked, continuing\n\
             # panicked at kernel/src/mm/paging.rs:142:9:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nfailures:\n    kernel::mm::page_table\n"),
            "{text}"
        );
        assert!(text.contains("test result: FAILED. 4 passed; 1 failed;"));
        assert!(text.ends_with("\n4 passed, 1 failed\n"));
    }

    #[test]
    fn a_kernel_panic_fails_kernel_run() {
        let report = fixture("kernel_panic.txt");
        let output = RunOutput {
            lines: vec!["a".into(), "b".into()],
            stderr: vec!["qemu says hi".into()],
            ..RunOutput::default()
        };
        let tests = tests_from_report(&report, Some(&output));
        let run = tests.last().unwrap();
        assert_eq!(run.name, RUN_TEST);
        let Status::Failed(details) = &run.status else {
            panic!("{run:?}")
        };
        assert!(
            details[0].starts_with("error: kernel panic: !!! KERNEL PANIC on cpu0 !!!"),
            "{details:?}"
        );
        assert!(details.contains(&"    qemu says hi".to_string()));
        assert!(details.contains(&"last 2 serial lines:".to_string()));
        // A failed kernel::run survives a filter that does not name it, but not --skip.
        let (selected, filtered) = select(tests.clone(), &opts(&["heap_alloc"]));
        assert_eq!(
            selected.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["kernel::boot::heap_alloc", RUN_TEST]
        );
        assert_eq!(filtered, 0);
        let (selected, filtered) = select(tests, &opts(&["heap_alloc", "--skip", "kernel::run"]));
        assert_eq!(selected.len(), 1);
        assert_eq!(filtered, 1);
    }

    #[test]
    fn filtering_counts_and_quiet_output() {
        let tests = tests_from_report(&fixture("failing.txt"), None);
        let o = opts(&["-q", "boot"]);
        let (selected, filtered) = select(tests, &o);
        assert_eq!(filtered, 2); // insn::encoders and the passing kernel::run
        let (text, totals) = render(&selected, &o, filtered, Duration::ZERO);
        assert_eq!(
            totals,
            Totals {
                passed: 1,
                failed: 1,
                ignored: 1
            }
        );
        assert!(text.starts_with("\nrunning 3 tests\n.Fi\n"), "{text}");
        assert!(text.contains("1 ignored; 0 measured; 2 filtered out;"));
        assert!(text.ends_with("1 passed, 1 failed\n"));
    }

    #[test]
    fn leaf_suites_and_run_errors() {
        let report = loongtrace_tools::ktap::parse(
            "KTAP version 1\n1..2\nok 1 alone\nok 2 off # SKIP later\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n",
        );
        let tests = tests_from_report(&report, None);
        assert_eq!(
            tests,
            [
                TestResult {
                    name: "kernel::alone".into(),
                    status: Status::Ok
                },
                TestResult {
                    name: "kernel::off".into(),
                    status: Status::Ignored("later".into())
                },
                TestResult {
                    name: RUN_TEST.into(),
                    status: Status::Ok
                },
            ]
        );
        let tests = run_error("cannot start QEMU");
        let (text, totals) = render(&tests, &opts(&[]), 0, Duration::ZERO);
        assert_eq!(totals.failed, 1);
        assert!(text.contains("---- kernel::run stdout ----\nerror: cannot start QEMU\n"));
        assert!(text.ends_with("0 passed, 1 failed\n"));
    }
}
