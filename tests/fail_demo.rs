//! Real boots with the deliberately failing suite switched on (`fail_demo=1`): the host must
//! notice a failed assertion, a panic and an exception inside cases, and a hanging kernel.

use loongtrace_tools::ktap::{self, Problem};
use loongtrace_tools::runner::{self, RunConfig};
use std::time::Duration;

fn boot(cmdline: &str, timeout: u64) -> (runner::RunOutput, ktap::Report) {
    let kernel = loongtrace_tests::kernel_image().expect("kernel image");
    let mut cfg = RunConfig::new(kernel);
    cfg.cmdline = cmdline.to_string();
    cfg.timeout = Duration::from_secs(timeout);
    cfg.echo = false;
    let out = runner::run(&cfg).expect("QEMU runs");
    let mut report = ktap::parse_lines(&out.lines);
    if out.timed_out {
        report.mark_timed_out(cfg.timeout);
    }
    (out, report)
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
