//! `make bench-linux`: real Linux's tracing costs on the same QEMU, and the side-by-side table.
//!
//! The driver (`tools/bench-linux/bench-linux.sh`) fetches Debian's current loong64 kernel and
//! busybox, boots them under QEMU 10 with `-icount shift=0` and an initramfs whose `/init`
//! (`tools/bench-linux/init.sh`) sets each tracing mode through tracefs and runs
//! `getppid-bench` (`tools/bench-linux/guest`). This module is the host side, pure and tested:
//! the zboot header of Debian's `vmlinuz` ([`zboot_payload`]), the initramfs ([`cpio_newc`]),
//! the guest's console ([`parse_console`]), `bench/linux.json` ([`LinuxRun::to_json`],
//! [`LinuxRun::from_json`]) and the table ([`side_by_side`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The payload of a Linux EFI zboot image (`vmlinuz` of arm64/loongarch/riscv distributions):
/// `MZ` at 0, `zimg` at 4, the payload's offset and size (u32, little-endian) at 8 and 12, the
/// compression's name (NUL-padded) at 24. Returns (offset, size, compression).
pub fn zboot_payload(img: &[u8]) -> Result<(usize, usize, String), String> {
    if img.len() < 32 || &img[0..2] != b"MZ" || &img[4..8] != b"zimg" {
        return Err("not an EFI zboot image (no MZ ... zimg header)".into());
    }
    let word = |at: usize| u32::from_le_bytes([img[at], img[at + 1], img[at + 2], img[at + 3]]) as usize;
    let (offset, size) = (word(8), word(12));
    let comp: String = img[24..32].iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    if offset.checked_add(size).is_none_or(|end| end > img.len()) {
        return Err(format!("payload {offset:#x}+{size:#x} runs past the image's {:#x} bytes", img.len()));
    }
    Ok((offset, size, comp))
}

/// One member of an initramfs.
#[derive(Clone, Debug)]
pub enum CpioEntry {
    Dir(String),
    /// A regular file: path, mode bits (e.g. 0o755), contents.
    File(String, u32, Vec<u8>),
    /// A symbolic link: path, target.
    Symlink(String, String),
    /// A character device: path, major, minor.
    CharDev(String, u32, u32),
}

/// An uncompressed `newc` cpio archive of `entries` and the trailer (what Linux unpacks as an
/// initramfs).
pub fn cpio_newc(entries: &[CpioEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |ino: u32, name: &str, mode: u32, data: &[u8], nlink: u32, rdev: (u32, u32)| {
        let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    for (i, e) in entries.iter().enumerate() {
        let ino = 1000 + i as u32;
        match e {
            CpioEntry::Dir(p) => put(ino, p, 0o040755, &[], 2, (0, 0)),
            CpioEntry::File(p, mode, data) => put(ino, p, 0o100000 | mode, data, 1, (0, 0)),
            CpioEntry::Symlink(p, target) => put(ino, p, 0o120777, target.as_bytes(), 1, (0, 0)),
            CpioEntry::CharDev(p, major, minor) => put(ino, p, 0o020600, &[], 1, (*major, *minor)),
        }
    }
    put(0, "TRAILER!!!", 0, &[], 1, (0, 0));
    out
}

/// A measured row: guest instructions per call (or per traceable function) over the untraced
/// call, the mean and the spread of its parts (chunks of calls, or rounds of a per-site write).
#[derive(Clone, Debug, PartialEq)]
pub struct LinuxRow {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// How many parts the mean is of.
    pub parts: usize,
}

impl LinuxRow {
    /// The row of parts `v` (not empty).
    fn of(v: &[f64]) -> LinuxRow {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        LinuxRow { mean: v.iter().sum::<f64>() / v.len() as f64, min, max, parts: v.len() }
    }
}

/// What a `make bench-linux` run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinuxRun {
    /// `uname -r` of the guest.
    pub kernel: String,
    /// Debian package versions used (kernel, busybox, QEMU).
    pub packages: Vec<String>,
    /// `qemu-system-loongarch64 --version`'s first line.
    pub qemu: String,
    /// The kernel config's lines for the tracing options.
    pub config: Vec<String>,
    /// Traceable functions (`available_filter_functions`).
    pub functions: u64,
    pub rows: BTreeMap<String, LinuxRow>,
    /// Modes the guest could not set (`=== error:` lines).
    pub errors: Vec<String>,
}

/// The config options `bench/linux.json` quotes.
pub const CONFIG_OPTIONS: &[&str] = &[
    "CONFIG_FUNCTION_TRACER",
    "CONFIG_FUNCTION_GRAPH_TRACER",
    "CONFIG_DYNAMIC_FTRACE",
    "CONFIG_DYNAMIC_FTRACE_WITH_REGS",
    "CONFIG_DYNAMIC_FTRACE_WITH_ARGS",
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
    "CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS",
    "CONFIG_KPROBES",
    "CONFIG_KPROBES_ON_FTRACE",
    "CONFIG_KPROBE_EVENTS",
    "CONFIG_FPROBE",
    "CONFIG_FPROBE_EVENTS",
    "CONFIG_HZ",
];

/// The lines of a kernel `.config` for [`CONFIG_OPTIONS`] (set or `is not set`).
pub fn config_lines(config: &str) -> Vec<String> {
    config
        .lines()
        .filter(|l| {
            let name = l.trim_start_matches("# ").split(['=', ' ']).next().unwrap_or("");
            CONFIG_OPTIONS.contains(&name)
        })
        .map(str::to_string)
        .collect()
}

/// Reads the guest's console: getppid-bench's `LABEL CHUNK i calls=N ticks=T` lines (the
/// counter's frequency from its `# LABEL: ... counter_hz=F` line) and `init.sh`'s `===` lines.
/// Per-call rows are over the mean of the untraced runs (`base`, `base_again`); per-site rows
/// divide each round's nanoseconds (one instruction each under `-icount shift=0`) by the
/// traceable functions.
pub fn parse_console(text: &str) -> Result<LinuxRun, String> {
    let mut run = LinuxRun::default();
    let mut hz = 0u64;
    // label -> per-chunk instructions per call
    let mut chunks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut persite: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')).and_then(|v| v.parse().ok()))
    };
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r').trim();
        if let Some(rest) = line.strip_prefix("=== ") {
            if let Some(k) = rest.strip_prefix("kernel ") {
                run.kernel = k.trim().to_string();
            } else if let Some(n) = rest.strip_prefix("functions ") {
                run.functions = n.trim().parse().map_err(|_| format!("bad line: {line}"))?;
            } else if let Some(e) = rest.strip_prefix("error: ") {
                run.errors.push(e.to_string());
            } else if let Some(p) = rest.strip_prefix("persite ") {
                let name = p.split_whitespace().next().unwrap_or("").to_string();
                let (Some(ns), Some(f)) = (field(p, "ns"), field(p, "functions")) else { return Err(format!("bad line: {line}")) };
                if f == 0 {
                    return Err(format!("no traceable functions: {line}"));
                }
                if ns == 0 {
                    // A write that patches every function takes time: 0 means the clock read wrong.
                    return Err(format!("no CPU time measured: {line}"));
                }
                persite.entry(name).or_default().push(ns as f64 / f as f64);
            }
            continue;
        }
        if line.starts_with('#') && line.contains("counter_hz=") {
            hz = field(line, "counter_hz").unwrap_or(0);
            continue;
        }
        let mut words = line.split_whitespace();
        if let (Some(label), Some("CHUNK")) = (words.next(), words.next()) {
            let (Some(calls), Some(ticks)) = (field(line, "calls"), field(line, "ticks")) else { return Err(format!("bad line: {line}")) };
            if hz == 0 || calls == 0 {
                return Err(format!("no counter frequency before: {line}"));
            }
            let insns = ticks as f64 * 1e9 / hz as f64 / calls as f64;
            if !chunks.contains_key(label) {
                order.push(label.to_string());
            }
            chunks.entry(label.to_string()).or_default().push(insns);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let base: Vec<f64> = ["base", "base_again"].iter().filter_map(|l| chunks.get(*l)).flatten().copied().collect();
    if base.is_empty() {
        return Err("no untraced run (`base`) in the console".into());
    }
    let base = mean(&base);
    for label in order.iter().filter(|l| !matches!(l.as_str(), "base" | "base_again")) {
        let v: Vec<f64> = chunks[label].iter().map(|x| x - base).collect();
        run.rows.insert(label.clone(), LinuxRow::of(&v));
    }
    for (name, v) in persite {
        run.rows.insert(format!("{name}_per_site"), LinuxRow::of(&v));
    }
    if run.kernel.is_empty() {
        return Err("no `=== kernel` line: did the guest's /init run?".into());
    }
    Ok(run)
}

impl LinuxRun {
    /// `bench/linux.json`.
    pub fn to_json(&self) -> String {
        let rows: serde_json::Map<String, serde_json::Value> = self
            .rows
            .iter()
            .map(|(k, r)| {
                let round = |x: f64| (x * 10.0).round() / 10.0;
                (k.clone(), serde_json::json!({ "mean": round(r.mean), "min": round(r.min), "max": round(r.max), "parts": r.parts }))
            })
            .collect();
        let v = serde_json::json!({
            "unit": "guest instructions per call over the untraced getppid() (per traceable function: *_per_site)",
            "measured_with": "qemu-system-loongarch64 -icount shift=0 -accel tcg,one-insn-per-tb=on -smp 1",
            "kernel": self.kernel,
            "packages": self.packages,
            "qemu": self.qemu,
            "config": self.config,
            "functions": self.functions,
            "rows": rows,
            "errors": self.errors,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads `bench/linux.json`.
    pub fn from_json(text: &str) -> Result<LinuxRun, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let list = |k: &str| -> Vec<String> { v.get(k).and_then(|x| x.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default() };
        let rows = v.get("rows").and_then(|r| r.as_object()).ok_or("no \"rows\" object")?;
        let mut out = BTreeMap::new();
        for (k, r) in rows {
            let n = |f: &str| r.get(f).and_then(|x| x.as_f64()).ok_or_else(|| format!("row {k}: no number {f}"));
            let parts = r.get("parts").and_then(|x| x.as_u64()).ok_or_else(|| format!("row {k}: no parts"))? as usize;
            out.insert(k.clone(), LinuxRow { mean: n("mean")?, min: n("min")?, max: n("max")?, parts });
        }
        Ok(LinuxRun {
            kernel: s("kernel"),
            packages: list("packages"),
            qemu: s("qemu"),
            config: list("config"),
            functions: v.get("functions").and_then(|x| x.as_u64()).unwrap_or(0),
            rows: out,
            errors: list("errors"),
        })
    }
}

/// The rows both kernels measure: loongtrace's row, Linux's row, and what each figure includes.
pub const PAIRS: &[(&str, &str, &str)] = &[
    ("function_tracer", "function_tracer", "function tracer, one traced function per call: loongtrace's event is ip, parent, time, flags; Linux's adds the common fields (pid, preempt count)"),
    ("graph", "graph", "function_graph on one function: entry and return events"),
    ("kprobe_event", "kprobe_event", "kprobe event at the entry, through ftrace: loongtrace records two fetch args (%a0, +8(%a1):u32), Linux none"),
    ("kprobe_break_event", "kprobe_break_event", "kprobe event on a `break` at `+8` (the body's first instruction), no fetch args"),
    ("kretprobe_event", "kretprobe_event", "kretprobe event, no fetch args"),
    ("enable_all", "enable_all_per_site", "`function` tracer on over every traceable function, per function (Linux: CPU time of all tasks)"),
    ("disable_all", "disable_all_per_site", "back to `nop`, per function"),
    ("filter_exact_per_site", "filter_exact_per_site", "`set_ftrace_filter` with one exact name, per function"),
    ("filter_glob_per_site", "filter_exact_per_site", "loongtrace: the glob `*chain_?*`; Linux: one exact name (a glob was not measured on Linux), per function"),
];

/// Rows only Linux measures here (no loongtrace counterpart yet), shown under the table.
pub const LINUX_ONLY: &[(&str, &str)] = &[
    ("fprobe_entry_event", "fprobe event at the entry"),
    ("fprobe_exit_event", "fprobe event at the return"),
    ("function_pid_filtered_out", "function tracer with the caller filtered out by `set_ftrace_pid`"),
];

/// The side-by-side Markdown table: for every pair both sides have, loongtrace's figure,
/// Linux's (with the spread of its parts) and Linux ÷ loongtrace.
pub fn side_by_side(ours: &BTreeMap<String, f64>, linux: &LinuxRun) -> String {
    let mut s = format!(
        "Linux {} ({} traceable functions) on {}; instructions per call over the untraced call (per function for the `*_all` and filter rows).\n\n",
        linux.kernel, linux.functions, linux.qemu
    );
    s.push_str("| row | loongtrace | Linux (spread) | Linux ÷ loongtrace | what each figure includes |\n|---|---:|---:|---:|---|\n");
    for (our, their, what) in PAIRS {
        let (Some(o), Some(l)) = (ours.get(*our), linux.rows.get(*their)) else { continue };
        let ratio = if *o > 0.0 { format!("{:.1}×", l.mean / o) } else { "–".into() };
        let _ = writeln!(s, "| `{our}` | {o:.1} | {:.1} ({:.1}–{:.1}) | {ratio} | {what} |", l.mean, l.min, l.max);
    }
    let only: Vec<String> = LINUX_ONLY
        .iter()
        .filter_map(|(r, what)| linux.rows.get(*r).map(|l| format!("{what} {:.1}", l.mean)))
        .collect();
    if !only.is_empty() {
        let _ = writeln!(s, "\nLinux only: {}.", only.join("; "));
    }
    s
}

/// Markers of the generated table in README.md and docs/performance.md.
pub const TABLE_BEGIN: &str = "<!-- linux-table: generated from bench/results.json and bench/linux.json by `ltlinux table`; do not edit -->";
pub const TABLE_END: &str = "<!-- end of linux-table -->";

/// `doc` with the text between [`TABLE_BEGIN`] and [`TABLE_END`] replaced by `table`.
pub fn replace_table(doc: &str, table: &str) -> Result<String, String> {
    let b = doc.find(TABLE_BEGIN).ok_or("no linux-table begin marker")? + TABLE_BEGIN.len();
    let e = b + doc[b..].find(TABLE_END).ok_or("no linux-table end marker")?;
    Ok(format!("{}\n{}{}", &doc[..b], table, &doc[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.5] Run /init as init process\r
=== kernel 7.2.13+deb14-loong64
=== cpus 1
=== functions 39359
# base: calls=20000 chunk=10000 counter_hz=100000000
base CHUNK 0 calls=10000 ticks=284000
base CHUNK 1 calls=10000 ticks=284000
base TOTAL calls=20000 ticks=568000 counter_hz=100000000
# function_tracer: calls=20000 chunk=10000 counter_hz=100000000
function_tracer CHUNK 0 calls=10000 ticks=906000
function_tracer CHUNK 1 calls=10000 ticks=908000
=== error: sh -c echo 'f:fe sys_getppid' > /sys/kernel/tracing/dynamic_events
# base_again: calls=20000 chunk=10000 counter_hz=100000000
base_again CHUNK 0 calls=10000 ticks=284000
base_again CHUNK 1 calls=10000 ticks=284000
=== persite enable_all ns=35462459 functions=39359
=== persite enable_all ns=35501818 functions=39359
=== done
";

    #[test]
    fn the_console_gives_rows_over_the_untraced_call() {
        let run = parse_console(CONSOLE).unwrap();
        assert_eq!((run.kernel.as_str(), run.functions), ("7.2.13+deb14-loong64", 39359));
        let f = &run.rows["function_tracer"];
        // 9.06 and 9.08 ticks of 10 ns per call, less the untraced 2.84.
        assert_eq!((f.parts, (f.min * 10.0).round(), (f.max * 10.0).round(), (f.mean * 10.0).round()), (2, 6220.0, 6240.0, 6230.0));
        let e = &run.rows["enable_all_per_site"];
        assert_eq!((e.parts, (e.min * 10.0).round() / 10.0, (e.max * 10.0).round() / 10.0), (2, 901.0, 902.0));
        assert!(!run.rows.contains_key("base") && !run.rows.contains_key("base_again"));
        assert_eq!(run.errors.len(), 1);
    }

    #[test]
    fn bad_consoles_are_refused() {
        assert!(parse_console("").is_err(), "no base");
        assert!(parse_console("=== kernel x\nbase CHUNK 0 calls=1 ticks=2\n").is_err(), "no counter frequency");
        assert!(parse_console(&CONSOLE.replace("=== kernel 7.2.13+deb14-loong64\n", "")).is_err(), "no kernel line");
        assert!(parse_console(&CONSOLE.replace("functions=39359", "functions=0")).is_err());
        assert!(parse_console(&CONSOLE.replace("ns=35501818", "ns=0")).is_err(), "a round of no CPU time");
    }

    #[test]
    fn linux_json_round_trips() {
        let mut run = parse_console(CONSOLE).unwrap();
        run.qemu = "QEMU emulator version 10.0.2".into();
        run.packages = vec!["busybox-static 1:1.38.0-3+b1".into()];
        run.config = config_lines("CONFIG_KPROBES=y\nCONFIG_FOO=y\n# CONFIG_FPROBE is not set\nCONFIG_HZ=250\n");
        assert_eq!(run.config, ["CONFIG_KPROBES=y", "# CONFIG_FPROBE is not set", "CONFIG_HZ=250"]);
        let back = LinuxRun::from_json(&run.to_json()).unwrap();
        assert_eq!((back.kernel, back.qemu, back.config, back.packages, back.functions), (run.kernel, run.qemu, run.config, run.packages, run.functions));
        assert_eq!(back.rows["function_tracer"].mean, 623.0);
        assert_eq!(back.rows["function_tracer"].parts, 2);
        assert!(LinuxRun::from_json("{}").is_err());
        assert!(LinuxRun::from_json("{\"rows\": {\"x\": {\"mean\": 1}}}").is_err());
    }

    #[test]
    fn the_table_pairs_rows_both_sides_have() {
        let linux = parse_console(CONSOLE).unwrap();
        let ours: BTreeMap<String, f64> = [("function_tracer".to_string(), 139.0), ("enable_all".to_string(), 242.2), ("graph".to_string(), 595.0)].into();
        let t = side_by_side(&ours, &linux);
        assert!(t.contains("| `function_tracer` | 139.0 | 623.0 (622.0–624.0) | 4.5× |"), "{t}");
        assert!(t.contains("| `enable_all` | 242.2 | 901.5 (901.0–902.0) | 3.7× |"), "{t}");
        assert!(!t.contains("`graph`"), "Linux has no graph row here: {t}");
        let doc = format!("a\n{TABLE_BEGIN}\nold\n{TABLE_END}\nb\n");
        let new = replace_table(&doc, &t).unwrap();
        assert!(new.starts_with(&format!("a\n{TABLE_BEGIN}\nLinux 7.2.13")) && new.ends_with(&format!("{TABLE_END}\nb\n")));
        assert!(replace_table("no markers", &t).is_err());
    }

    /// The committed README and docs/performance.md show exactly what the committed
    /// bench/results.json and bench/linux.json say (`make bench` and `make bench-linux` rewrite
    /// them; `ltlinux table README.md docs/performance.md` does only that).
    #[test]
    fn committed_tables_match_the_json() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).unwrap();
        let Ok(linux) = std::fs::read_to_string(format!("{root}/bench/linux.json")) else { return };
        let table = side_by_side(&crate::bench::rows_from_json(&read("bench/results.json")).unwrap(), &LinuxRun::from_json(&linux).unwrap());
        for doc in ["README.md", "docs/performance.md"] {
            let text = read(doc);
            assert_eq!(replace_table(&text, &table).unwrap(), text, "{doc}'s linux-table is stale: run `ltlinux table README.md docs/performance.md`");
        }
    }

    #[test]
    fn zboot_header_and_cpio() {
        let mut img = vec![0u8; 64];
        img[0..2].copy_from_slice(b"MZ");
        img[4..8].copy_from_slice(b"zimg");
        img[8..12].copy_from_slice(&40u32.to_le_bytes());
        img[12..16].copy_from_slice(&20u32.to_le_bytes());
        img[24..28].copy_from_slice(b"zstd");
        assert_eq!(zboot_payload(&img).unwrap(), (40, 20, "zstd".to_string()));
        img[12..16].copy_from_slice(&30u32.to_le_bytes());
        assert!(zboot_payload(&img).is_err(), "past the end");
        assert!(zboot_payload(b"MZ\0\0ximg").is_err());
        let a = cpio_newc(&[CpioEntry::Dir("bin".into()), CpioEntry::File("init".into(), 0o755, b"#!/bin/sh\n".to_vec()), CpioEntry::Symlink("bin/sh".into(), "busybox".into())]);
        assert!(a.starts_with(b"070701") && a.len() % 4 == 0);
        // The file's header: mode 0o100755 and size 10, then its name and data 4-aligned.
        let at = a.windows(5).position(|w| w == b"init\0").unwrap();
        let hdr = &a[at - 110..at];
        assert_eq!(&hdr[14..22], format!("{:08X}", 0o100755).as_bytes());
        assert_eq!(&hdr[54..62], b"0000000A");
        assert!(a.windows(11).any(|w| w == b"TRAILER!!!\0"));
    }
}
