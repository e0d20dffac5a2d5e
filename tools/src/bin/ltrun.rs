//! `ltrun`: boots the kernel under QEMU, parses its KTAP output and summarises the result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use loongtrace_tools::ktap::Report;
use loongtrace_tools::runner::{self, RunConfig};

const USAGE: &str = "\
usage: ltrun [--qemu PATH] [--timeout SECS] [--smp N] [--cmdline STR] [--icount] [--quiet] <kernel.elf>

Boots <kernel.elf> under qemu-system-loongarch64 (virt), echoes the serial output, parses the
kernel's KTAP test report and prints a summary. Exits 0 only if every case passed and the run
finished cleanly.

  --qemu PATH      QEMU binary (default: $QEMU, else qemu-system-loongarch64)
  --timeout SECS   kill QEMU after SECS seconds (default 60)
  --smp N          number of CPUs (default 1)
  --cmdline STR    kernel command line (no commas; separate options with spaces or ';')
  --icount         deterministic instruction counting (-icount shift=0)
  --quiet          do not echo the serial output
  --               pass the remaining arguments to QEMU";

#[derive(Debug)]
struct Args {
    config: RunConfig,
    quiet: bool,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut kernel: Option<PathBuf> = None;
    let mut qemu = None;
    let mut timeout = runner::DEFAULT_TIMEOUT;
    let mut smp = 1;
    let mut cmdline = String::new();
    let mut icount = false;
    let mut quiet = false;
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--qemu" => qemu = Some(PathBuf::from(value(flag)?)),
            "--timeout" => {
                let v = value(flag)?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--timeout: `{v}` is not a number of seconds"))?;
                if !(secs > 0.0 && secs.is_finite()) {
                    return Err(format!(
                        "--timeout: `{v}` must be a positive number of seconds"
                    ));
                }
                timeout = Duration::from_secs_f64(secs);
            }
            "--smp" => {
                let v = value(flag)?;
                smp = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--smp: `{v}` is not a CPU count"))?;
            }
            "--cmdline" => cmdline = value(flag)?,
            "--icount" => icount = true,
            "-q" | "--quiet" => quiet = true,
            "--" => {
                extra.extend(it.by_ref().cloned());
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option `{arg}`")),
            _ if kernel.is_none() => kernel = Some(PathBuf::from(arg)),
            _ => {
                return Err(format!(
                    "unexpected argument `{arg}` (the kernel is already {})",
                    kernel.as_ref().unwrap().display()
                ));
            }
        }
    }
    let kernel = kernel.ok_or("missing <kernel.elf>")?;
    let mut config = RunConfig::new(kernel);
    if let Some(qemu) = qemu {
        config.qemu = qemu;
    }
    config.timeout = timeout;
    config.smp = smp;
    config.cmdline = cmdline;
    config.icount = icount;
    config.echo = !quiet;
    config.extra_args = extra;
    config.validate().map_err(|e| e.to_string())?;
    Ok(Some(Args { config, quiet }))
}

/// The summary lines printed after the run; the last one is `N passed, N failed`.
fn summary(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    for problem in report.fatal_problems() {
        lines.push(format!("ltrun: error: {problem}"));
    }
    for (suite, case) in report.cases().filter(|(_, c)| c.outcome.is_fail()) {
        lines.push(format!("ltrun: FAILED {}.{}", suite.name, case.name));
        for diag in &case.diagnostics {
            lines.push(format!("    # {diag}"));
        }
    }
    let failed = report.failed() + report.fatal_problems().count();
    // Worded differently from the closing line so that only one line has the `N passed, N failed` form.
    lines.push(format!(
        "ltrun: {} suites, {} cases ({} ok, {} not ok, {} skipped): {}",
        report.suites.len(),
        report.cases().count(),
        report.passed(),
        report.failed(),
        report.skipped(),
        if report.ok() { "ok" } else { "FAILED" }
    ));
    lines.push(format!("{} passed, {} failed", report.passed(), failed));
    lines
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ltrun: error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (output, report) = match runner::run_tests(&args.config) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("ltrun: error: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    if !report.ok() && args.quiet && !output.stderr.is_empty() {
        for line in &output.stderr {
            eprintln!("ltrun: qemu: {line}");
        }
    }
    for line in summary(&report) {
        println!("{line}");
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let a = args(&[
            "--qemu",
            "/opt/q",
            "--timeout=2.5",
            "--smp",
            "2",
            "--cmdline",
            "a=1 b",
            "--icount",
            "-q",
            "k.elf",
            "--",
            "-s",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.config.qemu, PathBuf::from("/opt/q"));
        assert_eq!(a.config.timeout, Duration::from_millis(2500));
        assert_eq!(a.config.smp, 2);
        assert_eq!(a.config.cmdline, "a=1 b");
        assert!(a.config.icount && a.quiet && !a.config.echo);
        assert_eq!(a.config.kernel, PathBuf::from("k.elf"));
        assert_eq!(a.config.extra_args, ["-s"]);
    }

    #[test]
    fn bad_options() {
        assert!(args(&[]).unwrap_err().contains("missing <kernel.elf>"));
        assert!(
            args(&["--timeout", "x", "k"])
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            args(&["--smp", "0", "k"])
                .unwrap_err()
                .contains("not a CPU count")
        );
        assert!(
            args(&["--bogus", "k"])
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(
            args(&["--cmdline", "a,b", "k"])
                .unwrap_err()
                .contains("comma")
        );
        assert!(args(&["--qemu"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn summary_counts_fatal_problems_as_failures() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: a\n    1..2\n    ok 1 x\n    # boom\n    not ok 2 y\n";
        let mut report = loongtrace_tools::ktap::parse(text);
        report.mark_timed_out(Duration::from_secs(60));
        let lines = summary(&report);
        assert_eq!(
            lines[0],
            "ltrun: error: kernel did not finish within 60 s (hang?) — last line: not ok 2 y"
        );
        assert_eq!(lines[1], "ltrun: FAILED a.y");
        assert_eq!(lines[2], "    # boom");
        assert_eq!(lines.last().unwrap(), "1 passed, 2 failed");
    }

    #[test]
    fn summary_of_a_clean_run() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: a\n    1..1\n    ok 1 x\nok 1 a\n# loongtrace: tests done: 1 passed, 0 failed, 0 skipped\n";
        let lines = summary(&loongtrace_tools::ktap::parse(text));
        assert_eq!(
            lines,
            [
                "ltrun: 1 suites, 1 cases (1 ok, 0 not ok, 0 skipped): ok",
                "1 passed, 0 failed"
            ]
        );
    }
}
