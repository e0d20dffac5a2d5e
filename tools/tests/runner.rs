//! Runs `runner` and the `ltrun` binary against fake QEMU scripts that replay recorded outputs.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use loongtrace_tools::ktap::{self, Problem};
use loongtrace_tools::runner::{self, RunConfig, RunError};

fn here(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// A fake QEMU script, made executable in case the checkout lost the mode bit.
fn fake(name: &str) -> PathBuf {
    let path = here(name);
    let mut perms = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    path
}

fn config(qemu: &str, fixture: &str) -> RunConfig {
    let mut c = RunConfig::new(here(&format!("fixtures/{fixture}")));
    c.qemu = fake(qemu);
    c.timeout = Duration::from_secs(20);
    c
}

#[test]
fn collects_the_serial_output() {
    let mut c = config("fake-qemu.sh", "good.txt");
    c.smp = 2;
    c.cmdline = "trace=kmain;log=debug verbose".into();
    c.icount = true;
    let out = runner::run(&c).unwrap();
    assert!(!out.timed_out);
    assert!(out.exit_status.is_some_and(|s| s.success()));
    let kernel = c.kernel.display().to_string();
    assert_eq!(
        out.lines[0],
        format!(
            "fake-qemu: -M virt -m 1G -smp 2 -nographic -net none -no-reboot -kernel {kernel} \
             -fw_cfg name=opt/loongtrace/cmdline,string=trace=kmain;log=debug verbose -icount shift=0,sleep=off"
        )
    );
    assert_eq!(out.stderr, ["fake-qemu: a message on stderr"]);
    let recorded = std::fs::read_to_string(&c.kernel).unwrap();
    assert_eq!(out.lines[1..], recorded.lines().collect::<Vec<_>>()[..]);
    let report = ktap::parse_lines(&out.lines);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(
        (report.passed(), report.failed(), report.skipped()),
        (6, 0, 1)
    );
}

#[test]
fn a_failing_run_is_parsed() {
    let out = runner::run(&config("fake-qemu.sh", "kernel_panic.txt")).unwrap();
    assert!(!out.timed_out);
    let report = ktap::parse_lines(&out.lines);
    assert!(
        matches!(report.problems[0], Problem::KernelPanic { .. }),
        "{:#?}",
        report.problems
    );
}

#[test]
fn a_hang_is_killed_at_the_timeout() {
    let mut c = config("fake-qemu-hang.sh", "hang.txt");
    c.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let out = runner::run(&c).unwrap();
    let took = start.elapsed();
    assert!(out.timed_out);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert_eq!(
        out.last_line(),
        Some("[    0.120000] INFO  cpu0: waiting for cpu1 to answer IPI")
    );
    let mut report = ktap::parse_lines(&out.lines);
    report.mark_timed_out(c.timeout);
    assert_eq!(
        report
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        [
            "kernel did not finish within 1 s (hang?) — last line: [    0.120000] INFO  cpu0: waiting for cpu1 to answer IPI"
        ]
    );
}

#[test]
fn missing_qemu_says_how_to_get_it() {
    let mut c = config("fake-qemu.sh", "good.txt");
    c.qemu = PathBuf::from("/nonexistent/qemu-system-loongarch64");
    let err = runner::run(&c).unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("make setup") && msg.contains("QEMU=/path"),
        "{msg}"
    );
}

#[test]
fn missing_kernel_and_bad_cmdline_are_errors() {
    let mut c = config("fake-qemu.sh", "no-such-file.txt");
    assert!(matches!(runner::run(&c), Err(RunError::KernelMissing(_))));
    c.kernel = here("fixtures/good.txt");
    c.cmdline = "a,b".into();
    assert!(matches!(runner::run(&c), Err(RunError::CommaInCmdline(_))));
}

fn ltrun(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ltrun"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture_arg(name: &str) -> String {
    here(&format!("fixtures/{name}")).display().to_string()
}

#[test]
fn ltrun_passes_a_good_run() {
    let qemu = fake("fake-qemu.sh");
    let (code, stdout, _) = ltrun(&["--qemu", qemu.to_str().unwrap(), &fixture_arg("good.txt")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("    ok 1 heap_alloc # 112us\n"),
        "serial output is echoed: {stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("6 passed, 0 failed"));
}

#[test]
fn ltrun_reports_failures() {
    let qemu = fake("fake-qemu.sh");
    let (code, stdout, _) = ltrun(&[
        "--quiet",
        "--qemu",
        qemu.to_str().unwrap(),
        &fixture_arg("failing.txt"),
    ]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("heap_alloc"), "--quiet: {stdout}");
    assert!(
        stdout.contains("ltrun: FAILED boot.symbols\n    # some diagnostic\n"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("2 passed, 1 failed"));

    let (code, stdout, _) = ltrun(&[
        "-q",
        "--qemu",
        qemu.to_str().unwrap(),
        &fixture_arg("kernel_panic.txt"),
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("ltrun: error: kernel panic: !!! KERNEL PANIC on cpu0 !!!"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn ltrun_reports_a_timeout() {
    let qemu = fake("fake-qemu-hang.sh");
    let (code, stdout, _) = ltrun(&[
        "-q",
        "--timeout",
        "1",
        "--qemu",
        qemu.to_str().unwrap(),
        &fixture_arg("hang.txt"),
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("ltrun: error: kernel did not finish within 1 s (hang?) — last line: [    0.120000] INFO  cpu0: waiting"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("4 passed, 1 failed"));
}

#[test]
fn ltrun_without_qemu() {
    let (code, stdout, stderr) = ltrun(&["--qemu", "/nonexistent/qemu", &fixture_arg("good.txt")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("make setup"), "{stderr}");
    assert_eq!(stdout.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn ltsym_reports_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_ltsym"))
        .args([&fixture_arg("good.txt"), "/tmp/never-written.elf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ltsym: error: ") && stderr.contains("not a usable ELF64"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ltsym")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_arguments_exit_2_and_name_the_option() {
    let (code, _, stderr) = ltrun(&["--smp", "0", "k.elf"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid value '0' for '--smp <N>'"), "{stderr}");
    let (code, _, stderr) = ltrun(&["--frobnicate", "k.elf"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unexpected argument '--frobnicate'"), "{stderr}");
    let (code, stdout, _) = ltrun(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: ltrun [OPTIONS] <KERNEL> [-- <QEMU ARGS>...]"), "{stdout}");
    for bin in [env!("CARGO_BIN_EXE_ltbench"), env!("CARGO_BIN_EXE_ltsym")] {
        let out = Command::new(bin).arg("--no-such-option").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("'--no-such-option'"), "{bin}");
    }
}
