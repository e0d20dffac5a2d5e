//! The kernel's one-way layers: reads the floor table of `docs/architecture.md` and every
//! `crate::`/`super::`/`self::` path of `kernel/src`, and reports each import that points up a
//! floor, each file the table does not place, and each table entry with no file.
//!
//! Paths are read from the token stream (`proc-macro2`), not from the text, so comments and string
//! literals never count, `use` trees with nested braces are expanded, and paths inside macro
//! invocations (`log::info!("{}", crate::time::ticks())`) count like any other. Inline modules
//! (`mod tests { use super::*; }`) resolve `super` and `self` the way rustc does. Floors belong to
//! files: an import is attributed to the file that contains it, and its target to the longest
//! module path of a file that prefixes it (`crate::ftrace::core::SiteFlags` → `ftrace::core`).

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One floor of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    pub number: u32,
    pub name: String,
    /// Kernel module paths (`ftrace::core`), or crate directories on floor 0 (`arch`).
    pub modules: Vec<String>,
}

/// The floor table: which floor each module is on.
#[derive(Clone, Debug, Default)]
pub struct Layers {
    pub floors: Vec<Floor>,
    by_module: BTreeMap<String, u32>,
}

impl Layers {
    /// The floor of kernel module `module`, if the table places it.
    pub fn floor_of(&self, module: &str) -> Option<u32> {
        self.by_module.get(module).copied()
    }

    /// The name of floor `n` (`?` if there is none).
    pub fn floor_name(&self, n: u32) -> &str {
        self.floors.iter().find(|f| f.number == n).map_or("?", |f| f.name.as_str())
    }
}

/// Reads the floor table: the first Markdown table after the heading `The floors`,
/// whose rows are `| N | name | `module`, `module`, ... | what it owns |`. Module names are the
/// back-quoted words of the third column.
pub fn parse_table(markdown: &str) -> Result<Layers, String> {
    let is_heading = |l: &str| l.starts_with('#') && l.trim_start_matches('#').trim().eq_ignore_ascii_case("the floors");
    let mut lines = markdown.lines().enumerate().skip_while(|(_, l)| !is_heading(l));
    if lines.next().is_none() {
        return Err("no heading 'The floors' in the document".into());
    }
    let mut layers = Layers::default();
    let mut in_table = false;
    for (i, line) in lines {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(number) = cells[0].parse::<u32>() else {
            continue; // the header and the separator row
        };
        if cells.len() < 3 {
            return Err(format!("line {}: a floor row needs a number, a name and its modules", i + 1));
        }
        let modules: Vec<String> = cells[2].split('`').skip(1).step_by(2).map(str::to_string).collect();
        if modules.is_empty() {
            return Err(format!("line {}: floor {number} lists no modules", i + 1));
        }
        if layers.floors.last().is_some_and(|f| f.number >= number) {
            return Err(format!("line {}: floors must be listed lowest first (floor {number})", i + 1));
        }
        for m in &modules {
            if let Some(other) = layers.by_module.insert(m.clone(), number) {
                return Err(format!("line {}: `{m}` is on floor {other} and floor {number}", i + 1));
            }
        }
        layers.floors.push(Floor { number, name: cells[1].to_string(), modules });
    }
    if layers.floors.is_empty() {
        return Err("the floors heading has no table with numbered rows".into());
    }
    Ok(layers)
}

/// The module path of a source file relative to the crate's `src/` (`ftrace/core.rs` →
/// `ftrace::core`, `ftrace/mod.rs` → `ftrace`, `lib.rs` → `lib`).
pub fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.last_mut() {
        if let Some(stem) = last.strip_suffix(".rs") {
            *last = stem.to_string();
        }
    }
    if parts.len() > 1 && parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// One import of a file: the full path it names (after `crate::`, resolved) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub line: usize,
    /// Segments after `crate`, e.g. `["ftrace", "core", "SiteFlags"]`.
    pub path: Vec<String>,
}

/// Every crate-relative path in Rust source `src` of module `module` (`a::b`), in order.
pub fn imports(src: &str, module: &str) -> Result<Vec<Import>, String> {
    let tokens: TokenStream = src.parse().map_err(|e| format!("cannot tokenize: {e:?}"))?;
    let here: Vec<String> = if module == "lib" || module == "main" { Vec::new() } else { module.split("::").map(str::to_string).collect() };
    let mut out = Vec::new();
    scan(tokens, &here, &mut out);
    Ok(out)
}

fn is_path_sep(t: &[TokenTree], i: usize) -> bool {
    matches!((t.get(i), t.get(i + 1)), (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
        if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
}

fn ident_at(t: &[TokenTree], i: usize) -> Option<String> {
    match t.get(i) {
        Some(TokenTree::Ident(id)) => Some(id.to_string()),
        _ => None,
    }
}

/// Walks a token stream. `here` is the module the tokens are in (for `self` and `super`).
fn scan(tokens: TokenStream, here: &[String], out: &mut Vec<Import>) {
    let t: Vec<TokenTree> = tokens.into_iter().collect();
    // Child modules declared in this module (`mod x;`): a path `x::f` names `self::x::f`.
    let children: BTreeSet<String> = (0..t.len())
        .filter(|&i| ident_at(&t, i).as_deref() == Some("mod") && matches!(t.get(i + 2), Some(TokenTree::Punct(p)) if p.as_char() == ';'))
        .filter_map(|i| ident_at(&t, i + 1))
        .collect();
    scan_in(t, here, &children, out);
}

/// Walks the tokens of module `here` (at its top level or inside any item of it).
fn scan_in(t: Vec<TokenTree>, here: &[String], children: &BTreeSet<String>, out: &mut Vec<Import>) {
    let mut i = 0;
    while i < t.len() {
        // `mod name { ... }`: an inline module.
        if ident_at(&t, i).as_deref() == Some("mod") {
            if let (Some(name), Some(TokenTree::Group(g))) = (ident_at(&t, i + 1), t.get(i + 2)) {
                if g.delimiter() == Delimiter::Brace {
                    let mut inner = here.to_vec();
                    inner.push(name);
                    scan(g.stream(), &inner, out);
                    i += 3;
                    continue;
                }
            }
        }
        let after_sep = i >= 2 && is_path_sep(&t, i - 2);
        let start = match ident_at(&t, i).as_deref() {
            Some("crate") if !after_sep && is_path_sep(&t, i + 1) => Some(Vec::new()),
            Some("self") if !after_sep && is_path_sep(&t, i + 1) => Some(here.to_vec()),
            Some(child) if children.contains(child) && !after_sep && is_path_sep(&t, i + 1) => {
                let line = span_line(&t[i]);
                i = path_tail(&t, i, here.to_vec(), line, out);
                continue;
            }
            Some("super") if !after_sep && is_path_sep(&t, i + 1) => {
                // `super::super::x`: one level per `super`.
                let mut base = here.to_vec();
                let mut j = i;
                while ident_at(&t, j).as_deref() == Some("super") && is_path_sep(&t, j + 1) {
                    base.pop();
                    j += 3;
                }
                let line = span_line(&t[i]);
                i = path_tail(&t, j, base, line, out);
                continue;
            }
            _ => None,
        };
        if let Some(base) = start {
            let line = span_line(&t[i]);
            i = path_tail(&t, i + 3, base, line, out);
            continue;
        }
        if let TokenTree::Group(g) = &t[i] {
            scan_in(g.stream().into_iter().collect(), here, children, out);
        }
        i += 1;
    }
}

fn span_line(t: &TokenTree) -> usize {
    t.span().start().line
}

/// Reads the rest of a path after `prefix::` starting at token `i` (idents separated by `::`,
/// possibly ending in a `{...}` use group or `*`); records it; returns the index after it.
fn path_tail(t: &[TokenTree], mut i: usize, mut prefix: Vec<String>, line: usize, out: &mut Vec<Import>) -> usize {
    loop {
        match t.get(i) {
            Some(TokenTree::Ident(id)) => {
                let s = id.to_string();
                if s != "self" {
                    prefix.push(s);
                }
                if is_path_sep(t, i + 1) {
                    i += 3;
                    continue;
                }
                out.push(Import { line, path: prefix });
                return i + 1;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                use_group(g.stream(), &prefix, line, out);
                return i + 1;
            }
            // `crate::a::*`, `crate::a::<T>` (turbofish), or anything else: the path so far.
            _ => {
                out.push(Import { line, path: prefix });
                return i;
            }
        }
    }
}

/// The items of a `use prefix::{a, b::c, d::{e, self}, f as g}` group.
fn use_group(tokens: TokenStream, prefix: &[String], line: usize, out: &mut Vec<Import>) {
    let t: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < t.len() {
        match &t[i] {
            TokenTree::Punct(p) if p.as_char() == ',' => i += 1,
            TokenTree::Ident(id) if id.to_string() == "as" => i += 2,
            TokenTree::Ident(_) | TokenTree::Group(_) => {
                let item_line = span_line(&t[i]).max(line);
                i = path_tail(&t, i, prefix.to_vec(), item_line, out);
            }
            _ => i += 1,
        }
    }
}

/// One import that points up a floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub file: PathBuf,
    pub line: usize,
    pub from: String,
    pub from_floor: u32,
    pub to: String,
    pub to_floor: u32,
}

/// Everything the check found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Files whose module the table does not place: (file, module).
    pub unplaced: Vec<(PathBuf, String)>,
    /// Table entries that name no file of the crate.
    pub stale: Vec<String>,
    /// Problems reading the sources.
    pub errors: Vec<String>,
    /// Module → the modules it imports (for counting circles).
    pub graph: BTreeMap<String, BTreeSet<String>>,
    /// The table's names for the floors, by number.
    pub floor_names: BTreeMap<u32, String>,
}

impl Report {
    /// True when the tree keeps to the table.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.unplaced.is_empty() && self.stale.is_empty() && self.errors.is_empty()
    }

    /// The import circles: strongly connected groups of more than one module, each sorted.
    pub fn circles(&self) -> Vec<Vec<String>> {
        strongly_connected(&self.graph).into_iter().filter(|c| c.len() > 1).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |n: &u32| self.floor_names.get(n).map_or("?", String::as_str);
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for v in &self.violations {
            writeln!(
                f,
                "{}:{}: `{}` (floor {} {}) imports `{}` (floor {} {}), a floor above it",
                v.file.display(),
                v.line,
                v.from,
                v.from_floor,
                name(&v.from_floor),
                v.to,
                v.to_floor,
                name(&v.to_floor)
            )?;
        }
        for (file, m) in &self.unplaced {
            writeln!(f, "{}: module `{m}` is on no floor of the table (add it to docs/architecture.md)", file.display())?;
        }
        for m in &self.stale {
            writeln!(f, "docs/architecture.md: `{m}` is in the table but no file of kernel/src is that module")?;
        }
        Ok(())
    }
}

/// The longest module of `modules` that prefixes `path` (the crate root `lib` when none does).
fn target_module(path: &[String], modules: &BTreeSet<String>) -> String {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains(m)).unwrap_or_else(|| "lib".into())
}

/// Checks the sources `files` (path relative to the crate's `src/`, text) against `layers`.
/// `crate_dirs` are floor-0 entries that are crates, not modules (not checked for files).
pub fn check(layers: &Layers, files: &[(PathBuf, String)], crate_dirs: &[&str]) -> Report {
    let mut report = Report { floor_names: layers.floors.iter().map(|f| (f.number, f.name.clone())).collect(), ..Report::default() };
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    for (rel, src) in files {
        let from = module_of(rel);
        let from_floor = layers.floor_of(&from);
        if from_floor.is_none() {
            report.unplaced.push((rel.clone(), from.clone()));
        }
        let imports = match imports(src, &from) {
            Ok(v) => v,
            Err(e) => {
                report.errors.push(format!("{}: {e}", rel.display()));
                continue;
            }
        };
        let edges = report.graph.entry(from.clone()).or_default();
        let mut seen = BTreeSet::new();
        for imp in imports {
            let to = target_module(&imp.path, &modules);
            if to == from {
                continue;
            }
            edges.insert(to.clone());
            if let (Some(ff), Some(tf)) = (from_floor, layers.floor_of(&to)) {
                if tf > ff && seen.insert((imp.line, to.clone())) {
                    report.violations.push(Violation { file: rel.clone(), line: imp.line, from: from.clone(), from_floor: ff, to, to_floor: tf });
                }
            }
        }
    }
    for f in &layers.floors {
        for m in &f.modules {
            if !modules.contains(m) && !crate_dirs.contains(&m.as_str()) {
                report.stale.push(m.clone());
            }
        }
    }
    report
}

/// Reads every `.rs` file under `src` (sorted), as (path relative to `src`, text).
pub fn read_sources(src: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out)?;
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.push((rel, std::fs::read_to_string(&p)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(src, src, &mut out)?;
    Ok(out)
}

/// The crates on floor 0 of the table: what `check` accepts without a file in `kernel/src`.
pub const FLOOR0_CRATES: &[&str] = &["arch", "formats", "bpf", "modules/api"];

/// Checks the workspace at `root`: `docs/architecture.md` against `kernel/src`, and that no
/// floor-0 crate depends on the kernel crate.
pub fn check_workspace(root: &Path) -> Result<Report, String> {
    let doc = root.join("docs/architecture.md");
    let md = std::fs::read_to_string(&doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let layers = parse_table(&md).map_err(|e| format!("{}: {e}", doc.display()))?;
    let files = read_sources(&root.join("kernel/src")).map_err(|e| format!("kernel/src: {e}"))?;
    let mut report = check(&layers, &files, FLOOR0_CRATES);
    for c in FLOOR0_CRATES {
        let toml = root.join(c).join("Cargo.toml");
        match std::fs::read_to_string(&toml) {
            Ok(t) if t.contains("loongtrace-kernel") => {
                report.errors.push(format!("{}: a floor-0 crate depends on the kernel crate", toml.display()))
            }
            Ok(_) => {}
            Err(e) => report.errors.push(format!("{}: {e}", toml.display())),
        }
    }
    Ok(report)
}

/// Tarjan's strongly connected components of `graph` (each component sorted; order unspecified).
pub fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(ws) = s.graph.get(v) {
            for w in ws {
                let w = w.as_str();
                if !s.graph.contains_key(w) {
                    continue;
                }
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), next: 0, out: Vec::new() };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod test {
    use super::*;

    const TABLE: &str = "# Arch\n\n## The floors\n\n| floor | name | modules | owns |\n|---|---|---|---|\n\
        | 0 | crates | `arch` | below |\n| 1 | base | `time`, `ksyms` | base |\n| 3 | ftrace core | `ftrace`, `ftrace::core` | core |\n\
        | 5 | loader | `module` | loader |\n\nAfter the table.\n| 9 | not | `ignored` | x |\n";

    fn paths(src: &str, module: &str) -> Vec<String> {
        imports(src, module).unwrap().into_iter().map(|i| i.path.join("::")).collect()
    }

    #[test]
    fn table_rows_give_floors() {
        let l = parse_table(TABLE).unwrap();
        assert_eq!(l.floors.len(), 4);
        assert_eq!(l.floor_of("ftrace::core"), Some(3));
        assert_eq!(l.floor_of("ksyms"), Some(1));
        assert_eq!(l.floor_of("ignored"), None, "rows after the table are not read");
        assert_eq!(l.floor_name(5), "loader");
    }

    #[test]
    fn table_refuses_a_module_twice_unordered_floors_and_no_table() {
        assert!(parse_table("## The floors\n| 1 | a | `x` | |\n| 2 | b | `x` | |\n").unwrap_err().contains("floor 1 and floor 2"));
        assert!(parse_table("## The floors\n| 2 | a | `x` | |\n| 1 | b | `y` | |\n").unwrap_err().contains("lowest first"));
        assert!(parse_table("## The floors\n| 1 | a | none | |\n").unwrap_err().contains("no modules"));
        assert!(parse_table("# nothing here\n").is_err());
    }

    #[test]
    fn module_paths_of_files() {
        assert_eq!(module_of(Path::new("ftrace/core.rs")), "ftrace::core");
        assert_eq!(module_of(Path::new("ftrace/mod.rs")), "ftrace");
        assert_eq!(module_of(Path::new("execmem/area.rs")), "execmem::area");
        assert_eq!(module_of(Path::new("lib.rs")), "lib");
    }

    #[test]
    fn use_trees_are_expanded() {
        let p = paths("use crate::ftrace::{self, core::{SiteFlags, x as y}, ops::*};\nuse crate::time;", "bench");
        assert_eq!(p, ["ftrace", "ftrace::core::SiteFlags", "ftrace::core::x", "ftrace::ops", "time"]);
    }

    #[test]
    fn paths_in_expressions_macros_and_relative_paths() {
        let src = "fn f() { log::info!(\"{}\", crate::time::ticks()); let a = super::ops::X; self::inner::g(); }\n\
                   // crate::commented::out\nconst S: &str = \"crate::in_a_string\";\npub(crate) fn g() {}";
        assert_eq!(paths(src, "ftrace::core"), ["time::ticks", "ftrace::ops::X", "ftrace::core::inner::g"]);
    }

    #[test]
    fn super_in_an_inline_module_is_the_file_module() {
        let src = "mod tests { use super::helper; fn t() { super::super::other::x(); } }";
        assert_eq!(paths(src, "ftrace::core"), ["ftrace::core::helper", "ftrace::other::x"]);
    }

    #[test]
    fn dollar_crate_in_a_macro_counts_and_foreign_paths_do_not() {
        let src = "macro_rules! p { () => { $crate::console::print() } }\nuse alloc::vec::Vec; use arch::cpu; fn f(){ ::core::hint::spin_loop(); }";
        assert_eq!(paths(src, "console"), ["console::print"]);
    }

    #[test]
    fn a_declared_child_module_is_a_relative_path() {
        let src = "pub mod bpf;\nmod core;\npub fn init() { bpf::init(); other::f(); }\nfn g() { x::core::y(); }";
        assert_eq!(paths(src, "ftrace"), ["ftrace::bpf::init"]);
    }

    #[test]
    fn lines_are_reported() {
        let v = imports("\n\nuse crate::{\n  a,\n  b,\n};", "x").unwrap();
        assert_eq!(v.iter().map(|i| i.line).collect::<Vec<_>>(), [4, 5]);
    }

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter().map(|(p, s)| (PathBuf::from(p), s.to_string())).collect()
    }

    #[test]
    fn an_upward_import_is_a_violation_naming_file_line_and_floors() {
        let l = parse_table(TABLE).unwrap();
        let f = files(&[
            ("time.rs", ""),
            ("ksyms.rs", "fn f() {\n crate::module::lookup(0);\n crate::time::now();\n}"),
            ("ftrace/mod.rs", "pub use self::core::X;"),
            ("ftrace/core.rs", "use super::super::time;"),
            ("module.rs", "use crate::ftrace::core::X; use crate::ksyms;"),
        ]);
        let r = check(&l, &f, &["arch"]);
        assert_eq!(r.violations.len(), 1, "{r}");
        let v = &r.violations[0];
        assert_eq!((v.file.to_str().unwrap(), v.line, v.from.as_str(), v.from_floor, v.to.as_str(), v.to_floor), ("ksyms.rs", 2, "ksyms", 1, "module", 5));
        assert!(r.to_string().contains("ksyms.rs:2: `ksyms` (floor 1 base) imports `module` (floor 5 loader)"), "{r}");
        assert!(!r.ok());
        assert_eq!(r.circles(), vec![vec!["ksyms".to_string(), "module".to_string()]]);
    }

    #[test]
    fn unplaced_files_and_stale_entries_are_reported() {
        let l = parse_table(TABLE).unwrap();
        let r = check(&l, &files(&[("time.rs", ""), ("ksyms.rs", ""), ("ftrace/mod.rs", ""), ("module.rs", ""), ("kprobes.rs", "")]), &["arch"]);
        assert_eq!(r.unplaced, vec![(PathBuf::from("kprobes.rs"), "kprobes".to_string())]);
        assert_eq!(r.stale, vec!["ftrace::core".to_string()]);
        assert!(r.violations.is_empty());
    }

    #[test]
    fn circles_are_found() {
        let l = parse_table(TABLE).unwrap();
        let r = check(
            &l,
            &files(&[("time.rs", "use crate::ksyms;"), ("ksyms.rs", "use crate::time;"), ("ftrace/mod.rs", ""), ("ftrace/core.rs", ""), ("module.rs", "")]),
            &["arch"],
        );
        assert!(r.ok(), "same-floor imports are allowed: {r}");
        assert_eq!(r.circles(), vec![vec!["ksyms".to_string(), "time".to_string()]]);
    }
}
