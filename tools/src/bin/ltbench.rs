//! `ltbench`: boots the kernel with `bench=1` under `qemu -icount shift=0 -smp 1` (twice by
//! default), checks both runs agree exactly and every row was measured, prints the table and
//! the targets, and writes the results as JSON.
//! `ltbench --help` lists the options.

use clap::Parser;
use loongtrace_tools::bench;
use loongtrace_tools::runner::{self, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Boots <KERNEL> with `bench=1` under `qemu -icount shift=0 -smp 1`, checks that the runs agree
/// exactly and that every row was measured, prints the table and the targets, and writes the
/// results as JSON.
#[derive(Parser, Debug)]
#[command(name = "ltbench", after_help = "Exit status: 0 when the runs agree and every target is met, 1 otherwise, 2 for bad arguments.")]
struct Args {
    /// QEMU binary [default: $QEMU, else qemu-system-loongarch64]
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// How many runs must give identical figures
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Where to write the results
    #[arg(long, value_name = "PATH", default_value = "bench/results.json")]
    json: PathBuf,
    /// Kill QEMU after SECS seconds
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = runner::parse_secs)]
    timeout: Duration,
    /// The kernel image (target/loongtrace.elf)
    kernel: PathBuf,
}

fn main() -> ExitCode {
    let Args { qemu, runs, json, timeout, kernel } = Args::parse();
    let mut cfg = RunConfig::new(kernel);
    if let Some(q) = qemu {
        cfg.qemu = q;
    }
    cfg.icount = true;
    cfg.smp = 1;
    cfg.cmdline = "bench=1".into();
    cfg.timeout = timeout;
    cfg.echo = false;

    let mut results = Vec::new();
    for i in 0..runs {
        let out = match runner::run(&cfg) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("ltbench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if out.timed_out {
            eprintln!("ltbench: run {} timed out after {} s; last line: {:?}", i + 1, timeout.as_secs_f64(), out.last_line());
            return ExitCode::FAILURE;
        }
        let run = bench::parse(&out.lines);
        println!("run {}:\n{}", i + 1, bench::table(&run));
        let problems = bench::problems(&run);
        if !problems.is_empty() {
            for p in problems {
                eprintln!("ltbench: error: {p}");
            }
            return ExitCode::FAILURE;
        }
        results.push(run);
    }
    if let Some(diff) = results.windows(2).find(|w| w[0].rows != w[1].rows) {
        eprintln!("ltbench: error: the runs differ: {:?} vs {:?}", diff[0].rows, diff[1].rows);
        return ExitCode::FAILURE;
    }
    let run = &results[0];
    for info in &run.info {
        println!("note: {info}");
    }
    println!("all {} runs gave identical figures", results.len());
    let mut ok = true;
    for t in bench::targets(run) {
        println!("target {}: {}", if t.ok { "met   " } else { "MISSED" }, t.text);
        ok &= t.ok;
    }
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&json, bench::json(run)) {
        Ok(()) => println!("wrote {}", json.display()),
        Err(e) => {
            eprintln!("ltbench: cannot write {}: {e}", json.display());
            return ExitCode::FAILURE;
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn options() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["ltbench", "--runs", "3", "--timeout", "9", "--json", "x.json", "k.elf"]).unwrap();
        assert_eq!((a.runs, a.timeout, a.json, a.kernel), (3, Duration::from_secs(9), "x.json".into(), "k.elf".into()));
        let e = Args::try_parse_from(["ltbench", "--runs", "0", "k.elf"]).unwrap_err();
        assert!(e.to_string().contains("--runs <N>") && e.exit_code() == 2, "{e}");
        let e = Args::try_parse_from(["ltbench", "--frob", "k.elf"]).unwrap_err();
        assert!(e.to_string().contains("--frob"), "{e}");
    }
}
