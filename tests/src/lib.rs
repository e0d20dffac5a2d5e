//! Boots the kernel under QEMU and reports each in-kernel KTAP case as a `libtest-mimic` trial.
//!
//! `tests/kernel.rs` (a `harness = false` test target) calls [`main`]:
//!
//! 1. [`kernel_image`] brings `target/loongtrace.elf` up to date with `make build` (cargo decides
//!    what is stale, so an up-to-date image costs a second), unless `LOONGTRACE_KERNEL` names an
//!    image.
//! 2. With `--list`, a filter or `--skip`, a quick boot with `list_tests=1` asks the kernel for its
//!    case list (nothing runs). The test boot then runs only the selected cases
//!    (`tests=<suite>.<case>|...`), or is left out when nothing is selected. Without filters the
//!    test boot is the only boot.
//! 3. The test boot's report becomes one trial per case, `kernel::<suite>::<case>`, plus
//!    `kernel::run`, which fails when the run as a whole went wrong (panic, hang, bad plan, an
//!    empty selection, a kernel built from other sources than the tree's). The trials only hand
//!    over results, so libtest-mimic's filters, `--exact`, `--skip`, `--list` and output formats
//!    all apply. The last line is the plain `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use loongtrace_tools::ktap::{Outcome, Report};
use loongtrace_tools::runner::{self, RunConfig, RunOutput};

/// Default for `LOONGTRACE_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Name of the trial that fails when the run as a whole went wrong.
pub const RUN_TEST: &str = "kernel::run";
/// How many serial lines a failed `kernel::run` shows.
const TAIL_LINES: usize = 20;
/// The longest command line the kernel reads (it has a 512-byte buffer); a narrowed selection
/// that would not fit runs every case instead.
const CMDLINE_MAX: usize = 500;

/// The workspace root (`tests/..`).
pub fn workspace_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The kernel image to boot and whether the harness built it: `LOONGTRACE_KERNEL` as it is, or
/// `<workspace>/target/loongtrace.elf` after `make -C <workspace> build`.
pub fn kernel_image() -> Result<(PathBuf, bool), String> {
    let workspace = workspace_dir();
    if let Some(path) = std::env::var_os("LOONGTRACE_KERNEL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let path = if path.is_relative() && !path.exists() { workspace.join(path) } else { path };
        return match path.is_file() {
            true => Ok((path, false)),
            false => Err(format!("LOONGTRACE_KERNEL={} does not exist", path.display())),
        };
    }
    let make = format!("make -C {} build", workspace.display());
    let mut cmd = Command::new("make");
    cmd.args(["-s", "-C"]).arg(&workspace).arg("build").stdin(Stdio::null()).stdout(std::io::stderr());
    let status = cmd.status().map_err(|e| format!("cannot run `{make}`: {e}"))?;
    if !status.success() {
        return Err(format!("`{make}` failed ({status}); fix the kernel build, or point LOONGTRACE_KERNEL at an image"));
    }
    Ok((workspace.join("target").join("loongtrace.elf"), true))
}

/// The run configuration from the environment (`QEMU`, `LOONGTRACE_TIMEOUT`, `LOONGTRACE_SMP`,
/// `LOONGTRACE_CMDLINE`).
pub fn config_from(kernel: PathBuf, env: impl Fn(&str) -> Option<String>) -> Result<RunConfig, String> {
    let mut config = RunConfig::new(kernel);
    config.timeout = DEFAULT_TIMEOUT;
    if let Some(v) = env("LOONGTRACE_TIMEOUT") {
        config.timeout = runner::parse_secs(&v).map_err(|e| format!("LOONGTRACE_TIMEOUT: {e}"))?;
    }
    if let Some(v) = env("LOONGTRACE_SMP") {
        let smp = v.trim().parse().ok().filter(|&n| n > 0);
        config.smp = smp.ok_or_else(|| format!("LOONGTRACE_SMP={v} is not a CPU count"))?;
    }
    if let Some(v) = env("LOONGTRACE_CMDLINE") {
        config.cmdline = v;
    }
    config.validate().map_err(|e| format!("LOONGTRACE_CMDLINE: {e}"))?;
    Ok(config)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Name of the trial for one case.
pub fn test_name(suite: &str, case: &str) -> String {
    format!("kernel::{suite}::{case}")
}

/// Name of the trial for a case the kernel listed as `suite.case`.
fn listed_name(full: &str) -> String {
    let (suite, case) = full.split_once('.').unwrap_or((full, ""));
    test_name(suite, case)
}

/// What the kernel reported for one trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Failed, with the lines shown in libtest's `failures:` section.
    Failed(Vec<String>),
    /// Skipped by the kernel, with the reason.
    Ignored(String),
}

/// One trial's name and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    pub status: Status,
}

impl Verdict {
    fn new(name: String, outcome: &Outcome, details: Vec<String>) -> Verdict {
        let status = match outcome {
            Outcome::Pass => Status::Ok,
            Outcome::Skip(reason) => Status::Ignored(reason.clone()),
            Outcome::Fail => Status::Failed(details),
        };
        Verdict { name, status }
    }

    /// The libtest-mimic trial that reports this result; a kernel skip is an ignored trial.
    pub fn trial(self) -> Trial {
        let ignored = matches!(self.status, Status::Ignored(_));
        let status = self.status;
        Trial::test(self.name, move || match status {
            Status::Failed(details) if details.is_empty() => Err(Failed::from("(no diagnostics)")),
            Status::Failed(details) => Err(Failed::from(details.join("\n"))),
            _ => Ok(()),
        })
        .with_ignored_flag(ignored)
    }
}

/// The verdicts of a run: one per case (in output order, then the `listed` cases that never
/// reported), one per top-level test without cases, and `kernel::run`, failed with the report's
/// fatal problems plus `extra` (with QEMU's stderr and the last serial lines from `output`).
pub fn verdicts(report: &Report, listed: &[String], output: Option<&RunOutput>, extra: Vec<String>) -> Vec<Verdict> {
    let mut out = Vec::new();
    for suite in &report.suites {
        if suite.cases.is_empty()
            && let Some(result) = &suite.result
        {
            let details = suite.diagnostics.iter().map(|d| format!("# {d}")).collect();
            out.push(Verdict::new(format!("kernel::{}", suite.name), result, details));
        }
        for case in &suite.cases {
            let mut details = case.log.clone();
            details.extend(case.diagnostics.iter().map(|d| format!("# {d}")));
            out.push(Verdict::new(test_name(&suite.name, &case.name), &case.outcome, details));
        }
    }
    for name in listed.iter().map(|l| listed_name(l)) {
        if !out.iter().any(|v| v.name == name) {
            let why = "the kernel did not report this case (the run stopped before it: see kernel::run)";
            out.push(Verdict { name, status: Status::Failed(vec![why.into()]) });
        }
    }
    let mut problems: Vec<String> = report.fatal_problems().map(|p| format!("error: {p}")).collect();
    problems.extend(extra.into_iter().map(|e| format!("error: {e}")));
    let status = match (problems.is_empty(), output) {
        (true, _) => Status::Ok,
        (false, None) => Status::Failed(problems),
        (false, Some(out)) => {
            if !out.stderr.is_empty() {
                problems.push("QEMU stderr:".into());
                problems.extend(out.stderr.iter().map(|l| format!("    {l}")));
            }
            let tail = &out.lines[out.lines.len().saturating_sub(TAIL_LINES)..];
            match tail.is_empty() {
                true => problems.push("the kernel printed nothing".into()),
                false => problems.push(format!("last {} serial lines:", tail.len())),
            }
            problems.extend(tail.iter().map(|l| format!("    {l}")));
            Status::Failed(problems)
        }
    };
    out.push(Verdict { name: RUN_TEST.into(), status });
    out
}

/// Whether libtest-mimic will run a trial called `name` (its filter, `--exact` and `--skip`).
pub fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |f: &str| if args.exact { name == f } else { name.contains(f) };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// The fingerprint the booted kernel printed, checked against the tree it was built from.
fn check_sources(output: &RunOutput) -> Option<String> {
    let tree = loongtrace_tools::srchash::tree_hash(&workspace_dir()).map_err(|e| e.to_string());
    let booted = output.lines.iter().find_map(|l| loongtrace_tools::srchash::from_boot_line(l));
    match (tree, booted) {
        (Ok(tree), Some(booted)) if tree == booted => None,
        (Ok(tree), Some(booted)) => Some(format!(
            "the kernel that booted was built from other sources ({booted:016x}) than the tree's ({tree:016x})"
        )),
        (Ok(_), None) => Some("the kernel did not print its source fingerprint".into()),
        (Err(e), _) => Some(format!("cannot fingerprint the kernel sources: {e}")),
    }
}

/// Builds the image if needed, boots it (see the module comment) and returns the trials, and
/// `kernel::run`'s failure when the filters leave it out (it is reported anyway).
fn trials(args: &Arguments) -> Result<(Vec<Trial>, Option<Verdict>), String> {
    let (kernel, built) = kernel_image()?;
    let mut config = config_from(kernel, env_var)?;
    config.echo = args.nocapture;
    let filtered = args.filter.is_some() || !args.skip.is_empty();
    let mut listed = Vec::new();
    let mut not_wanted = Vec::new();
    if args.list || filtered {
        let mut list = config.clone();
        list.cmdline = format!("{} list_tests=1", config.cmdline);
        list.echo = false;
        let (output, report) = runner::run_tests(&list).map_err(|e| e.to_string())?;
        if !report.ok() {
            let problems: Vec<String> = report.fatal_problems().map(|p| p.to_string()).collect();
            return Err(format!("listing the kernel's cases failed: {}; last line: {:?}", problems.join("; "), output.last_line()));
        }
        listed = report.listed;
    }
    // Trials that are only listed or filtered out: never run.
    let unrun = |names: &[String]| names.iter().map(|n| Trial::test(listed_name(n), || Ok(()))).collect::<Vec<_>>();
    let wanted: Vec<String> = listed.iter().filter(|l| selected(args, &listed_name(l))).cloned().collect();
    if args.list || (filtered && wanted.is_empty() && !selected(args, RUN_TEST)) {
        return Ok((unrun(&listed).into_iter().chain([Trial::test(RUN_TEST, || Ok(()))]).collect(), None));
    }
    let narrowed = format!("{} tests={}", config.cmdline, wanted.join("|"));
    if filtered && !wanted.is_empty() && narrowed.len() <= CMDLINE_MAX {
        config.cmdline = narrowed;
        (listed, not_wanted) = listed.into_iter().partition(|l| wanted.contains(l));
    }
    let (output, report) = runner::run_tests(&config).map_err(|e| e.to_string())?;
    let extra = if built { check_sources(&output) } else { None };
    let mut verdicts = verdicts(&report, &listed, Some(&output), extra.into_iter().collect());
    let run = verdicts.pop().expect("kernel::run is always there");
    let hidden = (matches!(run.status, Status::Failed(_)) && !selected(args, RUN_TEST)).then(|| run.clone());
    verdicts.push(run);
    let trials = verdicts.into_iter().map(Verdict::trial).chain(unrun(&not_wanted));
    Ok((trials.collect(), hidden))
}

/// The whole harness.
pub fn main() -> ExitCode {
    let args = Arguments::from_args();
    let (trials, hidden) = match trials(&args) {
        Ok(t) => t,
        Err(e) if args.list => {
            eprintln!("error: cannot list the kernel tests: {e}");
            return ExitCode::from(101);
        }
        Err(e) => (vec![Verdict { name: RUN_TEST.into(), status: Status::Failed(vec![format!("error: {e}")]) }.trial()], None),
    };
    let conclusion = libtest_mimic::run(&args, trials);
    if args.list {
        return conclusion.exit_code();
    }
    let mut failed = conclusion.num_failed;
    if let Some(Verdict { status: Status::Failed(details), .. }) = hidden {
        // A crashed run never looks green, whatever the filters say.
        println!("{RUN_TEST} (left out by the filters) FAILED:\n{}\n", details.join("\n"));
        failed += 1;
    }
    println!("{} passed, {failed} failed", conclusion.num_passed);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(101) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Report {
        let path = workspace_dir().join("tools/tests/fixtures").join(name);
        loongtrace_tools::ktap::parse(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn args(list: &[&str]) -> Arguments {
        Arguments::from_iter(std::iter::once("kernel").chain(list.iter().copied()))
    }

    #[test]
    fn env_config() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let c = config_from("k.elf".into(), env(&[])).unwrap();
        assert_eq!((c.timeout, c.smp, c.cmdline.as_str()), (DEFAULT_TIMEOUT, 1, ""));
        const SET: &[(&str, &str)] = &[("LOONGTRACE_TIMEOUT", "30"), ("LOONGTRACE_SMP", "2"), ("LOONGTRACE_CMDLINE", "a=1;b")];
        let c = config_from("k.elf".into(), env(SET)).unwrap();
        assert_eq!((c.timeout, c.smp, c.cmdline.as_str()), (Duration::from_secs(30), 2, "a=1;b"));
        let err = |set: &'static [(&'static str, &'static str)]| config_from("k".into(), env(set)).unwrap_err();
        assert!(err(&[("LOONGTRACE_TIMEOUT", "soon")]).contains("TIMEOUT"));
        assert!(err(&[("LOONGTRACE_SMP", "0")]).contains("SMP"));
        assert!(err(&[("LOONGTRACE_CMDLINE", "a,b")]).contains("comma"));
    }

    #[test]
    fn a_good_run() {
        let v = verdicts(&fixture("good.txt"), &[], None, vec![]);
        let names: Vec<&str> = v.iter().map(|t| t.name.as_str()).collect();
        let cases = ["boot::heap_alloc", "boot::symbols", "boot::timer", "insn::encoders", "insn::decoders"];
        let cases = cases.iter().chain(&["trace::patch_nop", "trace::ring_buffer", "run"]).map(|c| format!("kernel::{c}"));
        assert_eq!(names, cases.collect::<Vec<_>>());
        assert_eq!(v[2].status, Status::Ignored("no timer".into()));
        assert!(v.iter().filter(|t| t.name != "kernel::boot::timer").all(|t| t.status == Status::Ok));
    }

    #[test]
    fn a_failing_case_carries_its_log_and_diagnostics() {
        let v = verdicts(&fixture("test_panic.txt"), &[], None, vec![]);
        let failed: Vec<&Verdict> = v.iter().filter(|t| matches!(t.status, Status::Failed(_))).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "kernel::mm::page_table");
        let Status::Failed(details) = &failed[0].status else { unreachable!() };
        assert_eq!(details[0], "[    0.031000] WARN  cpu0: test mm.page_table panicked, continuing");
        assert!(details[1].starts_with("# panicked at kernel/src/mm/paging.rs:142:9:"), "{details:?}");
    }

    #[test]
    fn a_kernel_panic_fails_kernel_run_and_the_cases_it_never_reached() {
        let output = RunOutput { lines: vec!["a".into(), "b".into()], stderr: vec!["qemu says hi".into()], ..RunOutput::default() };
        let listed = ["boot.heap_alloc".to_string(), "boot.late".to_string()];
        let v = verdicts(&fixture("kernel_panic.txt"), &listed, Some(&output), vec!["stale image".into()]);
        let late = v.iter().find(|t| t.name == "kernel::boot::late").expect("a listed case that never reported");
        assert!(matches!(&late.status, Status::Failed(d) if d[0].contains("did not report")));
        let run = v.last().unwrap();
        assert_eq!(run.name, RUN_TEST);
        let Status::Failed(details) = &run.status else { panic!("{run:?}") };
        assert!(details[0].starts_with("error: kernel panic: !!! KERNEL PANIC on cpu0 !!!"), "{details:?}");
        assert!(details.contains(&"error: stale image".to_string()));
        assert!(details.contains(&"    qemu says hi".to_string()));
        assert!(details.ends_with(&["last 2 serial lines:".into(), "    a".into(), "    b".into()]));
    }

    #[test]
    fn leaf_suites() {
        let report = loongtrace_tools::ktap::parse(
            "KTAP version 1\n1..2\nok 1 alone\nok 2 off # SKIP later\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n",
        );
        let v = verdicts(&report, &[], None, vec![]);
        let expect = |name: &str, status| Verdict { name: name.into(), status };
        assert_eq!(v, [expect("kernel::alone", Status::Ok), expect("kernel::off", Status::Ignored("later".into())), expect(RUN_TEST, Status::Ok)]);
    }

    #[test]
    fn filters_as_libtest_mimic_applies_them() {
        assert!(selected(&args(&[]), "kernel::boot::heap_alloc"));
        assert!(selected(&args(&["heap"]), "kernel::boot::heap_alloc"));
        assert!(!selected(&args(&["heap"]), "kernel::boot::timer"));
        assert!(!selected(&args(&["--exact", "kernel::boot::heap"]), "kernel::boot::heap_alloc"));
        assert!(selected(&args(&["--exact", "kernel::boot::heap_alloc"]), "kernel::boot::heap_alloc"));
        assert!(!selected(&args(&["--skip", "boot"]), "kernel::boot::heap_alloc"));
        assert!(selected(&args(&["--skip", "boot"]), "kernel::insn::encoders"));
    }
}
