//! `ltrun`: boots the kernel under QEMU, parses its KTAP output and summarises the result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use loongtrace_tools::ktap::Report;
use loongtrace_tools::runner::{self, RunConfig};

/// Boots <KERNEL> under qemu-system-loongarch64 (virt), echoes the serial output, parses the
/// kernel's KTAP test report and prints a summary whose last line is `N passed, N failed`.
#[derive(Parser, Debug)]
#[command(
    name = "ltrun",
    after_help = "Exit status: 0 when every case passed and the run finished cleanly, 1 otherwise, 2 for bad arguments."
)]
struct Args {
    /// QEMU binary [default: $QEMU, else qemu-system-loongarch64]
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// Kill QEMU after SECS seconds
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = runner::parse_secs)]
    timeout: Duration,
    /// Number of CPUs
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    smp: u32,
    /// Kernel command line: words separated by spaces or `;`, no commas (see README)
    #[arg(long, value_name = "STR", default_value = "", value_parser = runner::parse_cmdline)]
    cmdline: String,
    /// Deterministic instruction counting (-icount shift=0)
    #[arg(long)]
    icount: bool,
    /// Do not echo the serial output
    #[arg(short, long)]
    quiet: bool,
    /// The kernel image (target/loongtrace.elf)
    kernel: PathBuf,
    /// Passed to QEMU as they are
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

impl Args {
    fn config(&self) -> RunConfig {
        let mut config = RunConfig::new(&self.kernel);
        if let Some(qemu) = &self.qemu {
            config.qemu = qemu.clone();
        }
        config.timeout = self.timeout;
        config.smp = self.smp;
        config.cmdline = self.cmdline.clone();
        config.icount = self.icount;
        config.echo = !self.quiet;
        config.extra_args = self.qemu_args.clone();
        config
    }
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
    let args = Args::parse();
    let (output, report) = match runner::run_tests(&args.config()) {
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

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ltrun").chain(list.iter().copied()))
    }

    #[test]
    fn options() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let a = args(&["--qemu", "/opt/q", "--timeout=2.5", "--smp", "2", "--cmdline", "a=1 b", "--icount", "-q", "k.elf", "--", "-s"])
            .unwrap();
        let c = a.config();
        assert_eq!(c.qemu, PathBuf::from("/opt/q"));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!((c.smp, c.cmdline.as_str()), (2, "a=1 b"));
        assert!(c.icount && a.quiet && !c.echo);
        assert_eq!(c.kernel, PathBuf::from("k.elf"));
        assert_eq!(c.extra_args, ["-s"]);
        let d = args(&["k.elf"]).unwrap().config();
        assert_eq!((d.timeout, d.smp, d.cmdline.as_str(), d.echo), (Duration::from_secs(60), 1, "", true));
    }

    #[test]
    fn bad_options_name_the_option() {
        let err = |list: &[&str]| args(list).unwrap_err();
        assert_eq!(err(&[]).kind(), clap::error::ErrorKind::MissingRequiredArgument);
        for (list, what) in [
            (&["--timeout", "x", "k"][..], "--timeout <SECS>"),
            (&["--timeout", "0", "k"], "--timeout <SECS>"),
            (&["--smp", "0", "k"], "--smp <N>"),
            (&["--bogus", "k"], "--bogus"),
            (&["--cmdline", "a,b", "k"], "--cmdline <STR>"),
            (&["--qemu"], "--qemu <PATH>"),
        ] {
            let e = err(list);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(what), "{list:?}: {e}");
        }
        assert!(err(&["--cmdline", "a,b", "k"]).to_string().contains("comma"));
        assert_eq!(err(&["--help"]).kind(), clap::error::ErrorKind::DisplayHelp);
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
