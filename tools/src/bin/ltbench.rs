//! `ltbench`: boots the kernel with `bench=1` under `qemu -icount shift=0 -smp 1` (twice by
//! default), checks both runs agree exactly and every row was measured, prints the table and
//! the targets, and writes the results as JSON.
//! `ltbench --help` lists the options.
//!
//! `--readme PATH` rewrites the bench table of that README from the JSON afterwards; without a
//! kernel, `ltbench --readme README.md` only does that (from the existing `--json` file).

use clap::Parser;
use loongtrace_tools::bench;
use loongtrace_tools::runner::{self, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Boots <KERNEL> with `bench=1` under `qemu -icount shift=0,sleep=off -smp 1`, checks that the
/// runs agree exactly and that every row was measured, prints the table and the targets, and
/// writes the results as JSON.
#[derive(Parser, Debug)]
#[command(name = "ltbench", after_help = "Exit status: 0 when the runs agree and every target is met, 1 otherwise, 2 for bad arguments.")]
struct Args {
    /// QEMU binary [default: $QEMU, else qemu-system-loongarch64]
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// How many runs must give identical figures (0 with --doc: only rewrite the routine table)
    #[arg(long, value_name = "N", default_value_t = 2)]
    runs: usize,
    /// Where to write (or, without a kernel, read) the results
    #[arg(long, value_name = "PATH", default_value = "bench/results.json")]
    json: PathBuf,
    /// Kill QEMU after SECS seconds
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// Rewrite the bench table of this README from the JSON afterwards (alone: only that)
    #[arg(long, value_name = "PATH")]
    readme: Option<PathBuf>,
    /// Rewrite the routine table of this document from the image and the JSON
    #[arg(long, value_name = "PATH")]
    doc: Option<PathBuf>,
    /// The kernel image (target/loongtrace.elf)
    kernel: Option<PathBuf>,
}

fn main() -> ExitCode {
    let Args { qemu, runs, json, timeout, readme, doc, kernel } = Args::parse();
    if let (Some(doc), Some(kernel)) = (&doc, &kernel) {
        // Only the routine table: from the image and the existing results.
        if runs == 0 {
            return write_doc(doc, kernel, &json);
        }
    }
    let Some(kernel) = kernel else {
        if let Some(readme) = readme {
            return write_readme(&readme, &json);
        }
        eprintln!("ltbench: no kernel image given");
        return ExitCode::from(2);
    };
    let mut cfg = RunConfig::new(kernel.clone());
    if let Some(q) = qemu {
        cfg.qemu = q;
    }
    cfg.icount = true;
    cfg.smp = 1;
    cfg.cmdline = "bench=1".into();
    cfg.timeout = Duration::from_secs(timeout);
    cfg.echo = false;

    let mut results = Vec::new();
    for i in 0..runs.max(1) {
        let out = match runner::run(&cfg) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("ltbench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if out.timed_out {
            eprintln!("ltbench: run {} timed out after {timeout} s; last line: {:?}", i + 1, out.last_line());
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
    if let Some(readme) = readme
        && write_readme(&readme, &json) != ExitCode::SUCCESS
    {
        return ExitCode::FAILURE;
    }
    if let Some(doc) = doc
        && write_doc(&doc, &kernel, &json) != ExitCode::SUCCESS
    {
        return ExitCode::FAILURE;
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Rewrites the routine table of `doc` from the image `kernel` and the results in `json`.
fn write_doc(doc: &std::path::Path, kernel: &std::path::Path, json: &std::path::Path) -> ExitCode {
    let r = (|| -> Result<(), String> {
        let text = std::fs::read_to_string(json).map_err(|e| format!("cannot read {}: {e}", json.display()))?;
        let rows = bench::rows_from_json(&text).map_err(|e| format!("{}: {e}", json.display()))?;
        let elf = std::fs::read(kernel).map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
        let all: Vec<&str> = bench::PATHS.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let sizes = bench::routine_sizes(&elf, &all).map_err(|e| format!("{}: {e}", kernel.display()))?;
        let old = std::fs::read_to_string(doc).map_err(|e| format!("cannot read {}: {e}", doc.display()))?;
        let new = bench::replace_doc_table(&old, &bench::routine_table(&rows, &sizes)).map_err(|e| format!("{}: {e}", doc.display()))?;
        if new != old {
            std::fs::write(doc, new).map_err(|e| format!("cannot write {}: {e}", doc.display()))?;
        }
        println!("{}: routine table from {} and {}", doc.display(), kernel.display(), json.display());
        Ok(())
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ltbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rewrites the bench table of `readme` from the results in `json`.
fn write_readme(readme: &std::path::Path, json: &std::path::Path) -> ExitCode {
    let r = (|| -> Result<(), String> {
        let text = std::fs::read_to_string(json).map_err(|e| format!("cannot read {}: {e}", json.display()))?;
        let rows = bench::rows_from_json(&text).map_err(|e| format!("{}: {e}", json.display()))?;
        let old = std::fs::read_to_string(readme).map_err(|e| format!("cannot read {}: {e}", readme.display()))?;
        let new = bench::replace_readme_table(&old, &bench::readme_table(&rows)).map_err(|e| format!("{}: {e}", readme.display()))?;
        if new != old {
            std::fs::write(readme, new).map_err(|e| format!("cannot write {}: {e}", readme.display()))?;
        }
        println!("{}: bench table from {}", readme.display(), json.display());
        Ok(())
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ltbench: {e}");
            ExitCode::FAILURE
        }
    }
}
