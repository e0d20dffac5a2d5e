//! Parses the kernel's `BENCH` lines, checks the speed targets, renders the table and JSON.
//!
//! The kernel (`bench=1`, under `qemu -icount shift=0`) prints `BENCH <row> <instructions>` for
//! every row, `BENCH-ERROR <row> <why>` for a row it could not set up, and `BENCH-DONE` at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Every row `make bench` must produce, in table order, with what it measures.
pub const ROWS: &[(&str, &str)] = &[
    ("nop_site", "site disabled (move t0, ra; nop)"),
    ("ops_1", "one ops, empty callback"),
    ("ops_1_plus_100_irrelevant", "the same + 100 ops filtering other functions"),
    ("ops_10_relevant", "ten ops on the function"),
    ("ops_regs", "one SAVE_REGS ops"),
    ("direct_straight", "ftrace_stub_direct_tramp called from the site"),
    ("direct_via_regs", "the same + an ordinary ops (ftrace_regs_caller)"),
    ("fentry", "generated trampoline, one empty fentry program, called straight"),
    ("fexit", "generated trampoline, one empty fexit program, called straight"),
    ("fexit_regs_route", "the fexit trampoline reached through ftrace_regs_caller"),
    ("function_tracer", "function tracer, one ring-buffer event"),
    ("graph", "function_graph tracer, entry + return"),
    ("enable_all", "patching every site (per site)"),
    ("disable_all", "unpatching every site (per site)"),
];

/// Instructions of Linux's LoongArch path for `ops_1` (one ops, `ftrace_call` patched straight
/// to an empty one-instruction callback), counted from `arch/loongarch/kernel/mcount_dyn.S`:
/// site 2 + `ftrace_regs_entry` 16 + `b ftrace_common` 1 + `ftrace_common` up to the call 7
/// + the graph `nop` 1 + `ftrace_common_return` 15 = 42, plus the callback's 1. See README.
pub const LINUX_OPS_1: f64 = 43.0;

/// A parsed run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchRun {
    /// Row name → instructions per call (or per site).
    pub rows: BTreeMap<String, f64>,
    /// Rows the kernel reported it could not measure, with the reason.
    pub errors: Vec<(String, String)>,
    pub done: bool,
    /// Other `BENCH-INFO` lines.
    pub info: Vec<String>,
}

/// Reads the `BENCH` lines out of serial output.
pub fn parse<S: AsRef<str>>(lines: &[S]) -> BenchRun {
    let mut run = BenchRun::default();
    for line in lines {
        let line = line.as_ref().trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("BENCH") => {
                if let (Some(name), Some(v)) = (words.next(), words.next()) {
                    match v.parse::<f64>() {
                        Ok(v) => {
                            run.rows.insert(name.to_string(), v);
                        }
                        Err(_) => run.errors.push((name.to_string(), format!("unparsable value '{v}'"))),
                    }
                }
            }
            Some("BENCH-ERROR") => {
                let name = words.next().unwrap_or("?").to_string();
                run.errors.push((name, words.collect::<Vec<_>>().join(" ")));
            }
            Some("BENCH-INFO") => run.info.push(words.collect::<Vec<_>>().join(" ")),
            Some("BENCH-DONE") => run.done = true,
            _ => {}
        }
    }
    run
}

/// One checked target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub text: String,
    pub ok: bool,
}

/// Problems that make the bench fail: rows missing, errors, no `BENCH-DONE`.
pub fn problems(run: &BenchRun) -> Vec<String> {
    let mut p: Vec<String> = ROWS
        .iter()
        .filter(|(r, _)| !run.rows.contains_key(*r))
        .map(|(r, _)| format!("row {r} was not measured"))
        .collect();
    p.extend(run.errors.iter().map(|(r, why)| format!("row {r} failed: {why}")));
    if !run.done {
        p.push("the kernel did not finish the bench (no BENCH-DONE)".into());
    }
    p
}

/// Figures of the heavy paths before issue 15 (guest instructions per call, per site for the
/// patching rows): no row may get worse than this.
pub const BEFORE: &[(&str, f64)] = &[
    ("nop_site", 2.0),
    ("ops_1", 32.0),
    ("ops_1_plus_100_irrelevant", 32.0),
    ("ops_10_relevant", 588.0),
    ("ops_regs", 82.0),
    ("direct_straight", 5.0),
    ("direct_via_regs", 401.0),
    ("function_tracer", 324.0),
    ("graph", 1417.0),
    ("enable_all", 340.0),
    ("disable_all", 216.0),
];

/// Upper limits of issue 15 for the heavy paths.
pub const LIMITS: &[(&str, f64)] = &[
    ("function_tracer", 200.0),
    ("graph", 700.0),
    ("ops_10_relevant", 320.0),
    ("direct_via_regs", 200.0),
    ("enable_all", 250.0),
    ("disable_all", 160.0),
];

/// The speed targets of the project.
pub fn targets(run: &BenchRun) -> Vec<Target> {
    let get = |r: &str| run.rows.get(r).copied().unwrap_or(f64::NAN);
    let (nop, ops1, ops100, direct) = (get("nop_site"), get("ops_1"), get("ops_1_plus_100_irrelevant"), get("direct_straight"));
    let limit = 0.75 * LINUX_OPS_1;
    let mut t = vec![
        Target { text: format!("nop_site {nop:.1} <= 2"), ok: nop <= 2.0 },
        Target { text: format!("ops_1_plus_100_irrelevant {ops100:.1} <= ops_1 {ops1:.1} + 5"), ok: ops100 <= ops1 + 5.0 },
        Target {
            text: format!("ops_1 {ops1:.1} <= 75% of Linux's {LINUX_OPS_1:.0} = {limit:.2} ({:.1}%)", 100.0 * ops1 / LINUX_OPS_1),
            ok: ops1 <= limit,
        },
        Target { text: format!("direct_straight {direct:.1} <= 8"), ok: direct <= 8.0 },
        Target { text: format!("fentry {:.1} <= direct_straight {direct:.1} + 12", get("fentry")), ok: get("fentry") <= direct + 12.0 },
    ];
    for &(row, max) in LIMITS {
        let v = get(row);
        t.push(Target { text: format!("{row} {v:.1} <= {max:.0}"), ok: v <= max });
    }
    for &(row, before) in BEFORE {
        let v = get(row);
        t.push(Target { text: format!("{row} {v:.1} not worse than before ({before:.1})"), ok: v <= before });
    }
    t
}

/// The table as printed by `ltbench`.
pub fn table(run: &BenchRun) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<28} {:>12}  {}", "row", "instructions", "configuration");
    for (row, what) in ROWS {
        let v = run.rows.get(*row).map_or("-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(s, "{row:<28} {v:>12}  {what}");
    }
    s
}

/// Marks the start of the generated bench table in README.md (`ltbench --readme`).
pub const README_BEGIN: &str = "<!-- bench-table: generated from bench/results.json by `ltbench --readme README.md`; do not edit -->";
/// Marks its end.
pub const README_END: &str = "<!-- end of bench-table -->";

/// The rows of a `bench/results.json` written by [`json`].
pub fn rows_from_json(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let rows = v.get("rows").and_then(|r| r.as_object()).ok_or("no \"rows\" object")?;
    rows.iter()
        .map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)).ok_or_else(|| format!("row {k} is not a number")))
        .collect()
}

/// The Markdown table README.md shows: every row of [`ROWS`] that `rows` has, in table order.
pub fn readme_table(rows: &BTreeMap<String, f64>) -> String {
    let mut s = String::from("| row | instructions | configuration |\n|---|---:|---|\n");
    for (row, what) in ROWS {
        if let Some(v) = rows.get(*row) {
            let _ = writeln!(s, "| `{row}` | {v:.1} | {what} |");
        }
    }
    s
}

/// `readme` with the text between [`README_BEGIN`] and [`README_END`] replaced by `table`.
pub fn replace_readme_table(readme: &str, table: &str) -> Result<String, String> {
    let b = readme.find(README_BEGIN).ok_or("README has no bench-table begin marker")?;
    let after = b + README_BEGIN.len();
    let e = after + readme[after..].find(README_END).ok_or("README has no bench-table end marker")?;
    Ok(format!("{}\n{}{}", &readme[..after], table, &readme[e..]))
}

/// The table currently between the markers of `readme`.
pub fn readme_table_of(readme: &str) -> Option<&str> {
    let b = readme.find(README_BEGIN)? + README_BEGIN.len();
    let e = b + readme[b..].find(README_END)?;
    Some(readme[b..e].trim_start_matches('\n'))
}

/// The routines each row's path runs through (symbol names: plain for assembly, Rust paths
/// without the hash), for `docs/performance.md`. The site's own two words (`move t0, ra; bl`)
/// come on top of every row but `nop_site`.
pub const PATHS: &[(&str, &[&str])] = &[
    ("nop_site", &[]),
    ("ops_1", &["ftrace_caller", "loongtrace_bench_empty_callback"]),
    ("ops_1_plus_100_irrelevant", &["ftrace_caller", "loongtrace_bench_empty_callback"]),
    (
        "ops_10_relevant",
        &["ftrace_caller", "loongtrace_kernel::ftrace::core::ftrace_ops_site_list_args", "loongtrace_bench_empty_callback"],
    ),
    ("ops_regs", &["ftrace_regs_caller", "ftrace_common", "loongtrace_bench_empty_callback"]),
    ("direct_straight", &["ftrace_stub_direct_tramp"]),
    (
        "direct_via_regs",
        &[
            "ftrace_regs_caller",
            "ftrace_common",
            "loongtrace_kernel::ftrace::core::ftrace_ops_list_func",
            "loongtrace_kernel::ftrace::core::ftrace_ops_site_list_regs",
            "loongtrace_kernel::ftrace::direct::call_direct_funcs",
            "loongtrace_bench_empty_callback",
            "ftrace_stub_direct_tramp",
        ],
    ),
    (
        "function_tracer",
        &["ftrace_caller", "loongtrace_kernel::ftrace::core::ftrace_ops_assist_site", "loongtrace_kernel::ftrace::tracer::function_trace_call"],
    ),
    (
        "graph",
        &[
            "ftrace_caller",
            "loongtrace_kernel::ftrace::core::ftrace_ops_assist_site",
            "ftrace_graph_func",
            "loongtrace_kernel::ftrace::fgraph::graph_entry",
            "loongtrace_kernel::ftrace::graph_tracer::entry",
            "return_to_handler",
            "loongtrace_kernel::ftrace::fgraph::graph_return",
            "loongtrace_kernel::ftrace::graph_tracer::ret",
        ],
    ),
    (
        "enable_all",
        &[
            "loongtrace_kernel::ftrace::core::update",
            "loongtrace_kernel::ftrace::core::compute_wants",
            "arch::patch::patch_insn_unchecked",
        ],
    ),
    ("disable_all", &["loongtrace_kernel::ftrace::core::update", "arch::patch::patch_insn_unchecked"]),
];

/// Whether the ELF symbol `sym` is the routine `path`: equal for a plain name, or a legacy-mangled
/// Rust symbol (`_ZN` + length-prefixed segments + hash, maybe a `.llvm.N` suffix) of that path.
pub fn symbol_is(sym: &str, path: &str) -> bool {
    if !path.contains("::") {
        return sym == path;
    }
    let mangled: String = path.split("::").map(|seg| format!("{}{seg}", seg.len())).collect();
    sym.strip_prefix("_ZN").and_then(|r| r.strip_prefix(mangled.as_str())).is_some_and(|r| r.starts_with("17h"))
}

/// Instructions in each routine of `paths` in the image `elf` (its `.symtab` sizes divided by
/// four: every LoongArch instruction is four bytes). Routines not found are left out.
pub fn routine_sizes(elf: &[u8], paths: &[&str]) -> Result<BTreeMap<String, u64>, String> {
    use xmas_elf::sections::SectionData;
    use xmas_elf::symbol_table::Entry;
    // xmas-elf wants the image 8-byte aligned.
    let mut words = vec![0u64; elf.len().div_ceil(8)];
    // SAFETY: `words` has at least `elf.len()` bytes; u64 has no invalid bit patterns.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, elf.len()) };
    bytes.copy_from_slice(elf);
    let file = xmas_elf::ElfFile::new(bytes)?;
    let symtab = file.find_section_by_name(".symtab").ok_or("the image has no .symtab")?;
    let Ok(SectionData::SymbolTable64(syms)) = symtab.get_data(&file) else {
        return Err("the .symtab is not a 64-bit symbol table".into());
    };
    let mut out = BTreeMap::new();
    for sym in syms {
        let (Ok(name), size) = (sym.get_name(&file), sym.size()) else { continue };
        if size == 0 {
            continue;
        }
        if let Some(p) = paths.iter().find(|p| symbol_is(name, p)) {
            out.insert(p.to_string(), size / 4);
        }
    }
    Ok(out)
}

/// Marks the start of the generated routine table in docs/performance.md (`ltbench --doc`).
pub const DOC_BEGIN: &str = "<!-- routine-table: generated by `ltbench --doc docs/performance.md <kernel>` (make bench); do not edit -->";
/// Marks its end.
pub const DOC_END: &str = "<!-- end of routine-table -->";

/// The table of docs/performance.md: per row its measured figure and the routines of its path
/// with their instruction counts in the image.
pub fn routine_table(rows: &BTreeMap<String, f64>, sizes: &BTreeMap<String, u64>) -> String {
    let mut s = String::from("| row | measured | routines on the path (instructions in the image) |\n|---|---:|---|\n");
    for (row, path) in PATHS {
        let v = rows.get(*row).map_or("-".to_string(), |v| format!("{v:.1}"));
        let list: Vec<String> = path
            .iter()
            .map(|p| {
                let short = p.rsplit("::").next().unwrap_or(p);
                sizes.get(*p).map_or(format!("`{short}` ?"), |n| format!("`{short}` {n}"))
            })
            .collect();
        let list = if list.is_empty() { "the site's `move t0, ra; nop`".to_string() } else { list.join(", ") };
        let _ = writeln!(s, "| `{row}` | {v} | {list} |");
    }
    s
}

/// `doc` with the text between [`DOC_BEGIN`] and [`DOC_END`] replaced by `table`.
pub fn replace_doc_table(doc: &str, table: &str) -> Result<String, String> {
    let b = doc.find(DOC_BEGIN).ok_or("no routine-table begin marker")?;
    let after = b + DOC_BEGIN.len();
    let e = after + doc[after..].find(DOC_END).ok_or("no routine-table end marker")?;
    Ok(format!("{}\n{}{}", &doc[..after], table, &doc[e..]))
}

/// The JSON written to `bench/results.json`.
pub fn json(run: &BenchRun) -> String {
    let mut s = String::from("{\n  \"unit\": \"guest instructions per call (enable_all/disable_all: per site)\",\n");
    let _ = writeln!(s, "  \"measured_with\": \"qemu-system-loongarch64 -icount shift=0,sleep=off -smp 1\",");
    let _ = writeln!(s, "  \"linux_ops_1_counted\": {LINUX_OPS_1:.1},");
    s.push_str("  \"rows\": {\n");
    let rows: Vec<String> = ROWS
        .iter()
        .filter_map(|(r, _)| run.rows.get(*r).map(|v| format!("    \"{r}\": {v:.1}")))
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str("\n  },\n  \"targets\": [\n");
    let t: Vec<String> = targets(run)
        .iter()
        .map(|t| format!("    {{ \"target\": \"{}\", \"ok\": {} }}", t.text, t.ok))
        .collect();
    s.push_str(&t.join(",\n"));
    s.push_str("\n  ]\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<String> {
        let mut v = vec!["BENCH-START calls=20000".to_string()];
        for (i, (r, _)) in ROWS.iter().enumerate() {
            v.push(format!("BENCH {r} {}.{}", i + 2, i % 10));
        }
        v.push("[    0.1] INFO cpu0: noise".into());
        v.push("BENCH-DONE".into());
        v
    }

    #[test]
    fn parses_rows_and_done() {
        let run = parse(&sample());
        assert!(run.done);
        assert_eq!(run.rows.len(), ROWS.len());
        assert_eq!(run.rows["nop_site"], 2.0);
        assert_eq!(run.rows["ops_1"], 3.1);
        assert!(problems(&run).is_empty());
    }

    #[test]
    fn missing_row_error_and_unfinished_are_problems() {
        let mut lines = sample();
        lines.retain(|l| !l.starts_with("BENCH graph") && l != "BENCH-DONE");
        lines.push("BENCH-ERROR graph cannot register".into());
        let p = problems(&parse(&lines));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("graph was not measured"));
        assert!(p[1].contains("cannot register"));
        assert!(p[2].contains("BENCH-DONE"));
    }

    #[test]
    fn targets_are_checked() {
        let lines: Vec<String> = ["BENCH nop_site 2.0", "BENCH ops_1 31.9", "BENCH ops_1_plus_100_irrelevant 32.0", "BENCH direct_straight 5.0", "BENCH fentry 17.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = targets(&parse(&lines));
        assert!(t[..5].iter().all(|t| t.ok), "{t:?}");
        let bad: Vec<String> = ["BENCH nop_site 3.0", "BENCH ops_1 40", "BENCH ops_1_plus_100_irrelevant 50", "BENCH direct_straight 9", "BENCH fentry 21.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(targets(&parse(&bad))[..5].iter().all(|t| !t.ok));
        let heavy: Vec<String> = ["BENCH function_tracer 145.0", "BENCH graph 701", "BENCH enable_all 251"].iter().map(|s| s.to_string()).collect();
        let t = targets(&parse(&heavy));
        let ok = |prefix: &str| t.iter().filter(|t| t.text.starts_with(prefix)).all(|t| t.ok);
        assert!(ok("function_tracer") && !ok("graph") && !ok("enable_all"), "{t:?}");
    }

    #[test]
    fn readme_table_round_trips_through_json() {
        let run = parse(&sample());
        let rows = rows_from_json(&json(&run)).unwrap();
        assert_eq!(rows, run.rows);
        let table = readme_table(&rows);
        assert!(table.contains("| `nop_site` | 2.0 |"), "{table}");
        let readme = format!("intro\n{README_BEGIN}\nold table\n{README_END}\nrest\n");
        let new = replace_readme_table(&readme, &table).unwrap();
        assert_eq!(readme_table_of(&new), Some(table.as_str()));
        assert!(new.starts_with("intro\n") && new.ends_with(&format!("{README_END}\nrest\n")));
        assert!(replace_readme_table("no markers", &table).is_err());
    }

    /// The committed README shows exactly what the committed bench/results.json says: rerun
    /// `make bench` (or `ltbench --readme README.md`) after changing either.
    #[test]
    fn committed_readme_matches_results_json() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        let json = std::fs::read_to_string(format!("{root}/bench/results.json")).unwrap();
        let rows = rows_from_json(&json).unwrap();
        let shown = readme_table_of(&readme).expect("README.md has no generated bench table");
        assert_eq!(shown, readme_table(&rows), "README.md's bench table differs from bench/results.json; run `ltbench --readme README.md`");
    }

    #[test]
    fn symbols_match_paths() {
        assert!(symbol_is("ftrace_caller", "ftrace_caller"));
        assert!(!symbol_is("ftrace_caller_smp", "ftrace_caller"));
        let m = "_ZN17loongtrace_kernel6ftrace4core22ftrace_ops_assist_site17h186953d4823763aaE";
        assert!(symbol_is(m, "loongtrace_kernel::ftrace::core::ftrace_ops_assist_site"));
        assert!(!symbol_is(m, "loongtrace_kernel::ftrace::core::ftrace_ops_assist"));
        let llvm = "_ZN17loongtrace_kernel6ftrace6fgraph12graph_return17hdac86304e7344e8aE.llvm.67";
        assert!(symbol_is(llvm, "loongtrace_kernel::ftrace::fgraph::graph_return"));
        let doc = format!("a\n{DOC_BEGIN}\nold\n{DOC_END}\nb\n");
        let mut rows = BTreeMap::new();
        rows.insert("ops_1".to_string(), 32.0);
        let mut sizes = BTreeMap::new();
        sizes.insert("ftrace_caller".to_string(), 29);
        let t = routine_table(&rows, &sizes);
        assert!(t.contains("| `ops_1` | 32.0 | `ftrace_caller` 29, `loongtrace_bench_empty_callback` ? |"), "{t}");
        let new = replace_doc_table(&doc, &t).unwrap();
        assert!(new.contains(&t) && !new.contains("old"));
    }

    #[test]
    fn json_lists_rows_and_targets() {
        let j = json(&parse(&sample()));
        assert!(j.contains("\"nop_site\": 2.0"));
        assert!(j.contains("\"targets\""));
        assert!(j.trim_end().ends_with('}'));
    }
}
