//! Real boots that must fail: the deliberately failing suite switched on (`fail_demo=1`), where the
//! host must notice a failed assertion, a panic and an exception inside cases, and a hanging kernel;
//! a `tests=` selection that matches nothing; bad command-line words.

use loongtrace_tools::ktap::{self, Problem};
use loongtrace_tools::runner::{self, RunConfig};
use std::time::Duration;

fn boot(cmdline: &str, timeout: u64) -> (runner::RunOutput, ktap::Report) {
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let mut cfg = RunConfig::new(kernel);
    cfg.cmdline = cmdline.to_string();
    cfg.timeout = Duration::from_secs(timeout);
    cfg.echo = false;
    runner::run_tests(&cfg).expect("QEMU runs")
}

#[test]
fn failing_cases_are_reported_with_what_and_where() {
    let (out, report) = boot("tests=fail_demo fail_demo=1", 60);
    assert!(!out.timed_out, "the kernel should finish: {:?}", out.last_line());
    assert!(!report.ok(), "a run with failing cases must not be ok");
    assert!(report.finished, "the kernel goes on after failed cases");
    let failed: Vec<_> = report.cases().filter(|(_, c)| c.outcome.is_fail()).map(|(_, c)| c).collect();
    let names: Vec<_> = failed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["assertion_fails", "panics", "unexpected_break", "null_deref"]);
    let diag = |i: usize| failed[i].diagnostics.join("\n");
    assert!(diag(0).contains("fail_demo.rs") && diag(0).contains("deliberately wrong"), "{}", diag(0));
    assert!(diag(1).contains("panicked at kernel/src/selftest/fail_demo.rs"), "{}", diag(1));
    assert!(diag(1).contains("index out of bounds"), "{}", diag(1));
    assert!(diag(2).contains("breakpoint (BRK)"), "{}", diag(2));
    assert!(diag(2).contains("fail_demo"), "the backtrace names the case: {}", diag(2));
    assert!(diag(3).contains("TLB refill") && diag(3).contains("BADV 0x0000000000000010"), "{}", diag(3));
    assert_eq!(report.passed(), 1, "the case after the failures still runs");
}

#[test]
fn a_selection_matching_nothing_fails_and_names_the_suites() {
    let (_, report) = boot("tests=ftarce_*", 60);
    assert!(report.finished, "{:?}", report.last_line);
    let problems: Vec<String> = report.fatal_problems().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("no test case matches `tests=ftarce_*`; the suites are: boot, "), "{}", problems[0]);
    assert!(problems[0].contains("ftrace_ops") && problems[0].contains("tests=none"), "{}", problems[0]);
    // A plain boot asked for with `tests=none` passes.
    let (_, report) = boot("tests=none", 60);
    assert!(report.ok() && report.finished, "{:?}", report.problems);
    assert_eq!(report.cases().count(), 0);
}

#[test]
fn a_bad_command_line_word_fails_the_run_with_the_word() {
    let (out, report) = boot("tests=[[[[ log=bogus stress=-5", 60);
    let problems: Vec<String> = report.fatal_problems().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "kernel command line: 'tests=[[[[': `[` cannot appear in glob `[[[[`; accepted: `none`, or \
             `|`-separated globs over `suite` or `suite.case` made of letters, digits, `_`, `*` and `?`",
            "kernel command line: 'stress=-5': `-5` is not a number of switches; accepted: `long` \
             (20000 switches) or a number of switches from 1 to 100000000",
        ]
    );
    assert_eq!(report.cases().count(), 0, "no case runs after a command-line error");
    let warning = out.lines.iter().find(|l| l.contains("'log=bogus'")).expect("a warning about log=bogus");
    assert!(warning.contains("WARN") && warning.contains("accepted: error, warn, info, debug, trace, off"), "{warning}");
}

#[test]
fn a_hanging_kernel_is_a_timeout() {
    let (out, report) = boot("tests=fail_demo fail_demo=hang", 8);
    assert!(out.timed_out);
    assert!(!report.ok());
    assert!(
        report.problems.iter().any(|p| matches!(p, Problem::TimedOut { .. })),
        "{:?}",
        report.problems
    );
}
