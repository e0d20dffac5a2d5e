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
    /// Also bench this scale image (built with generated functions, `make bench SITES=n`):
    /// its per-site figures must stay within 10 % of the normal image's
    #[arg(long, value_name = "KERNEL")]
    scale: Option<PathBuf>,
    /// Where to write the scale image's results (the per-site plot reads them)
    #[arg(long, value_name = "PATH", default_value = "bench/scale.json")]
    scale_json: PathBuf,
    /// The kernel image (target/loongtrace.elf)
    kernel: Option<PathBuf>,
}

fn main() -> ExitCode {
    let Args { qemu, runs, json, timeout, readme, doc, scale, scale_json, kernel } = Args::parse();
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
    let all: Vec<&str> = bench::ROWS.iter().map(|r| r.0).collect();
    let Some(run) = bench_image(&kernel, qemu.as_ref(), runs, timeout, &all) else {
        return ExitCode::FAILURE;
    };
    let run = &run;
    let mut ok = true;
    for t in bench::targets(run) {
        println!("target {}: {}", if t.ok { "met   " } else { "MISSED" }, t.text);
        ok &= t.ok;
    }
    // The scale image: measured here, or (without --scale) the last results, for the plot.
    let scale_run = match &scale {
        Some(image) => {
            let Some(s) = bench_image(image, qemu.as_ref(), runs, timeout, bench::PER_SITE) else {
                return ExitCode::FAILURE;
            };
            let t = bench::scale_targets(run, &s);
            for t in &t {
                println!("target {}: {}", if t.ok { "met   " } else { "MISSED" }, t.text);
                ok &= t.ok;
            }
            if let Err(e) = std::fs::write(&scale_json, bench::json_with(&s, &t)) {
                eprintln!("ltbench: cannot write {}: {e}", scale_json.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", scale_json.display());
            Some((s.sites.unwrap_or(0), s.rows))
        }
        None => std::fs::read_to_string(&scale_json).ok().and_then(|t| Some((bench::sites_from_json(&t)?, bench::rows_from_json(&t).ok()?))),
    };
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
    // The cost curves as SVG plots beside the JSON.
    let dir = json.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut per_site = vec![(run.sites.unwrap_or(0), &run.rows)];
    per_site.extend(scale_run.as_ref().map(|(n, r)| (*n, r)));
    match bench::write_plots(dir, &run.rows, &per_site) {
        Ok(files) => files.iter().for_each(|f| println!("wrote {}", f.display())),
        Err(e) => {
            eprintln!("ltbench: {e}");
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

/// Boots `kernel` with `bench=1` `runs` times; the parsed run when every run finished, measured
/// every row of `rows` and agreed exactly with the others (else the errors are printed).
fn bench_image(kernel: &std::path::Path, qemu: Option<&PathBuf>, runs: usize, timeout: u64, rows: &[&str]) -> Option<bench::BenchRun> {
    let mut cfg = RunConfig::new(kernel.to_path_buf());
    if let Some(q) = qemu {
        cfg.qemu = q.clone();
    }
    cfg.icount = true;
    cfg.smp = 1;
    cfg.cmdline = "bench=1".into();
    cfg.timeout = Duration::from_secs(timeout);
    cfg.echo = false;
    let mut results: Vec<bench::BenchRun> = Vec::new();
    for i in 0..runs.max(1) {
        let out = match runner::run(&cfg) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("ltbench: {e}");
                return None;
            }
        };
        if out.timed_out {
            eprintln!("ltbench: {}: run {} timed out after {timeout} s; last line: {:?}", kernel.display(), i + 1, out.last_line());
            return None;
        }
        let run = bench::parse(&out.lines);
        println!("{} run {}:\n{}", kernel.display(), i + 1, bench::table(&run));
        let problems = bench::problems_of(&run, rows);
        if !problems.is_empty() {
            for p in problems {
                eprintln!("ltbench: error: {}: {p}", kernel.display());
            }
            return None;
        }
        results.push(run);
    }
    if let Some(diff) = results.windows(2).find(|w| w[0].rows != w[1].rows || w[0].sites != w[1].sites) {
        eprintln!("ltbench: error: {}: the runs differ: {:?} vs {:?}", kernel.display(), diff[0].rows, diff[1].rows);
        return None;
    }
    for info in &results[0].info {
        println!("note: {info}");
    }
    println!("{}: all {} runs gave identical figures", kernel.display(), results.len());
    results.into_iter().next()
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
