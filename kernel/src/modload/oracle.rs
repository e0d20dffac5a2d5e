//! A linker as the oracle of the module loader: each sample module object is linked twice at the
//! same base address, once by the loader ([`link_to_vec`]) and once by `rust-lld` (LLVM's `ld.lld`,
//! shipped with every Rust toolchain) with a linker script that puts every section exactly where
//! the loader's plan put it, and every byte of every loaded section (so every relocated word) must
//! come out the same. The hand-computed cases of `reloc.rs` and `arch::pcrel` check the
//! arithmetic against itself; this checks it against an independent implementation of the
//! LoongArch psABI.
//!
//! How the object is made linkable at the loader's addresses: a copy of it gets a unique section
//! name per loaded section (`.lt_oracle.<index>`; a module has several sections called
//! `__patchable_function_entries`, which a linker script could not tell apart), and the script
//! gives each of them an output section at `base + offset` of the loader's plan, the linker's
//! `.got` at the loader's GOT, and discards what the loader does not load (`.modinfo`, debug
//! information). The kernel symbols the module imports are defined with `--defsym` at the
//! addresses the loader's resolver gives them. The loader never rewrites an instruction, so the
//! linker must not either: relaxation is off (`--no-relax`), and the copy carries one relocation
//! that changes nothing but keeps lld from turning `pcalau12i` + `ld.d` through the GOT into
//! `pcalau12i` + `addi.d` (which it does even without relaxation; see [`renamed_object`]).
//!
//! Not compared: the loader's ftrace stubs (not a relocation; `reloc.rs` and `arch::pcrel` test
//! them by decoding), and the debug sections (never loaded).

extern crate std;

use super::reloc::{self, *};
use super::tests::{exports, BASE, KERNEL, MAX, STUBS};
use super::*;
use arch::pcrel;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::string::String;
use std::vec::Vec;
use std::{format, fs, vec};

const SAMPLES: [(&str, &[u8]); 2] =
    [("sample_mod.o", include_bytes!("testdata/sample_mod.o")), ("sample_far.o", include_bytes!("testdata/sample_far.o"))];

const SHF_MERGE: u64 = 0x10;
const SHF_STRINGS: u64 = 0x20;
const STT_SECTION: u8 = 3;

/// `rust-lld`, from the toolchain that runs the tests or any installed rustup toolchain.
/// Panics (fails the test) when there is none: the oracle must never be skipped silently.
fn rust_lld() -> PathBuf {
    if let Ok(p) = std::env::var("LOONGTRACE_RUST_LLD") {
        return PathBuf::from(p);
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut looked: Vec<String> = Vec::new();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    match Command::new(&rustc).args(["--print", "sysroot"]).output() {
        Ok(out) if out.status.success() => roots.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
        _ => looked.push(format!("the sysroot of `{rustc} --print sysroot`, which failed")),
    }
    let home = std::env::var("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".rustup")));
    match home.as_ref().map(|h| (h.join("toolchains"), fs::read_dir(h.join("toolchains")))) {
        Ok((_, Ok(dirs))) => {
            let mut more: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
            more.sort();
            roots.extend(more);
        }
        Ok((dir, Err(_))) => looked.push(format!("{}/*, which cannot be read", dir.display())),
        Err(_) => looked.push("rustup's toolchains (neither RUSTUP_HOME nor HOME is set)".into()),
    }
    for root in &roots {
        let rustlib = root.join("lib/rustlib");
        let Ok(hosts) = fs::read_dir(&rustlib) else {
            looked.push(rustlib.display().to_string());
            continue;
        };
        for host in hosts.flatten() {
            let lld = host.path().join("bin/rust-lld");
            if lld.is_file() {
                return lld;
            }
            looked.push(lld.display().to_string());
        }
    }
    panic!(
        "the linker oracle needs rust-lld, which every Rust toolchain ships in \
         <sysroot>/lib/rustlib/<host>/bin/rust-lld, and none was found (looked at: {}). Install \
         the toolchain with `make setup` (rustup), or point LOONGTRACE_RUST_LLD at an ld.lld \
         that knows LoongArch.",
        looked.join(", ")
    );
}

/// Where a relocation's symbol lives.
#[derive(Clone, Debug)]
enum SymLoc {
    /// In section `index` of the object, at `value` from its start.
    Section(usize, u64),
    /// A kernel symbol the module imports.
    Import(String),
    /// An absolute value.
    Abs(u64),
}

/// One relocation of a loaded section, as the object states it.
#[derive(Clone, Debug)]
struct Rel {
    section: usize,
    offset: u64,
    rtype: u32,
    sym_index: u32,
    sym_name: String,
    sym: SymLoc,
    addend: i64,
}

impl Rel {
    /// `S + A` for the module at `base`.
    fn value(&self, plan: &Plan, base: u64, imports: &dyn Fn(&str) -> Option<u64>) -> u64 {
        let s = match &self.sym {
            SymLoc::Section(i, v) => base + plan.sections[*i].image_offset.unwrap() + v,
            SymLoc::Import(n) => imports(n).unwrap_or_else(|| panic!("{n} is not exported")),
            SymLoc::Abs(v) => *v,
        };
        s.wrapping_add(self.addend as u64)
    }

    /// The address a `pcalau12i` pair must reach: `S + A`, or its GOT entry for `GOT_PC_*`.
    fn pcala_target(&self, plan: &Plan, base: u64, imports: &dyn Fn(&str) -> Option<u64>) -> u64 {
        if reloc::needs_got(self.rtype) {
            let k = plan.got.1.iter().position(|&g| g == (self.sym_index, self.addend)).unwrap();
            base + plan.got.0 + 8 * k as u64
        } else {
            self.value(plan, base, imports)
        }
    }

    fn place(&self, plan: &Plan, base: u64) -> u64 {
        base + plan.sections[self.section].image_offset.unwrap() + self.offset
    }

    /// Bytes the relocation writes at its place (for reports; the whole section is compared).
    fn width(&self, section: &[u8]) -> u64 {
        match self.rtype {
            R_LARCH_NONE | R_LARCH_RELAX | R_LARCH_ALIGN => 0,
            R_LARCH_ADD6 | R_LARCH_SUB6 | R_LARCH_ADD8 | R_LARCH_SUB8 => 1,
            R_LARCH_ADD16 | R_LARCH_SUB16 => 2,
            R_LARCH_ADD24 | R_LARCH_SUB24 => 3,
            R_LARCH_64 | R_LARCH_64_PCREL | R_LARCH_ADD64 | R_LARCH_SUB64 | R_LARCH_CALL36 => 8,
            R_LARCH_ADD_ULEB128 | R_LARCH_SUB_ULEB128 => {
                section.get(self.offset as usize..).and_then(read_uleb128).map_or(1, |(_, n)| n as u64)
            }
            _ => 4,
        }
    }
}

/// Every relocation of every loaded section of `obj`, in file order.
fn relocations(obj: &[u8], plan: &Plan) -> Vec<Rel> {
    let elf = open(obj).unwrap();
    let shs = headers(&elf).unwrap();
    let syms = symbols(&elf, &shs, plan.symtab).unwrap();
    let strtab = section_bytes(obj, plan.strtab, &shs[plan.strtab]).unwrap();
    let mut out = Vec::new();
    for (i, s) in plan.sections.iter().enumerate() {
        if s.kind != ShType::Rela {
            continue;
        }
        let target = shs[i].info() as usize;
        if plan.sections[target].image_offset.is_none() {
            continue;
        }
        for r in relas(&elf, &shs, i).unwrap() {
            let si = r.get_symbol_table_index() as usize;
            let sym = &syms[si];
            let name = cstr(strtab, sym.name() as u64).unwrap_or("?");
            let sym_name = if sym.info() & 0xf == STT_SECTION { plan.sections[sym.shndx() as usize].name.clone() } else { name.into() };
            let loc = match sym.shndx() {
                SHN_UNDEF => SymLoc::Import(name.into()),
                SHN_ABS => SymLoc::Abs(sym.value()),
                n => SymLoc::Section(n as usize, sym.value()),
            };
            out.push(Rel {
                section: target,
                offset: r.get_offset(),
                rtype: r.get_type(),
                sym_index: si as u32,
                sym_name,
                sym: loc,
                addend: r.get_addend() as i64,
            });
        }
    }
    out
}

/// The names of the symbols the object imports.
fn imports(obj: &[u8], plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = relocations(obj, plan)
        .into_iter()
        .filter_map(|r| match r.sym {
            SymLoc::Import(n) if !n.is_empty() => Some(n),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A copy of `obj` in which loaded section `i` is called `.lt_oracle.<i>` (and is not a
/// mergeable section, so the linker keeps its bytes where they are), and in which the linker
/// has no GOT pair to optimise (see below). The section-name table is
/// appended to the file with the new names after the old ones, so every other name (LLVM shares
/// one string table between section and symbol names) stays valid.
fn renamed_object(obj: &[u8], plan: &Plan) -> Vec<u8> {
    let mut out = obj.to_vec();
    let shoff = le64(obj, 0x28) as usize;
    let shstrndx = le16(obj, 0x3e) as usize;
    let hdr = |i: usize| shoff + 64 * i;
    let (old_off, old_size) = (le64(obj, hdr(shstrndx) + 24) as usize, le64(obj, hdr(shstrndx) + 32) as usize);
    let mut names = obj[old_off..old_off + old_size].to_vec();
    let mut renames = Vec::new();
    for (i, s) in plan.sections.iter().enumerate() {
        if s.image_offset.is_some() {
            renames.push((i, names.len() as u32));
            names.extend_from_slice(format!(".lt_oracle.{i}\0").as_bytes());
        }
    }
    for (i, name) in renames {
        let h = hdr(i);
        out[h..h + 4].copy_from_slice(&name.to_le_bytes());
        let flags = le64(obj, h + 8) & !(SHF_MERGE | SHF_STRINGS);
        out[h + 8..h + 16].copy_from_slice(&flags.to_le_bytes());
    }
    // lld rewrites a `pcalau12i` + `ld.d` pair through the GOT (`GOT_PC_HI20` + `GOT_PC_LO12` on
    // consecutive words) into `pcalau12i` + `addi.d` of the symbol itself whenever it can,
    // relaxation or not, but only in a section where every `GOT_PC_HI20` is directly followed by
    // its `GOT_PC_LO12`. The loader never rewrites instructions, so the copy puts a relocation
    // that changes nothing (`R_LARCH_ADD6` of symbol 0, i.e. add 0 to the low 6 bits of the
    // `pcalau12i`'s first byte) between the first such pair of each section: lld then applies
    // every GOT relocation as written, as the loader does.
    let mut appended: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, s) in plan.sections.iter().enumerate() {
        if s.kind != ShType::Rela {
            continue;
        }
        let h = hdr(i);
        let (off, size) = (le64(obj, h + 24) as usize, le64(obj, h + 32) as usize);
        let entries: Vec<&[u8]> = obj[off..off + size].chunks(24).collect();
        let Some(first) = entries.iter().position(|e| le32(e, 8) == R_LARCH_GOT_PC_HI20) else { continue };
        let mut table = Vec::with_capacity(size + 24);
        for (k, e) in entries.iter().enumerate() {
            table.extend_from_slice(e);
            if k == first {
                table.extend_from_slice(&e[..8]); // r_offset: the pcalau12i
                table.extend_from_slice(&(R_LARCH_ADD6 as u64).to_le_bytes()); // symbol 0
                table.extend_from_slice(&0u64.to_le_bytes()); // addend 0
            }
        }
        appended.push((i, table));
    }
    for (i, table) in appended {
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let h = hdr(i);
        let at = out.len() as u64;
        out.extend_from_slice(&table);
        out[h + 24..h + 32].copy_from_slice(&at.to_le_bytes());
        out[h + 32..h + 40].copy_from_slice(&(table.len() as u64).to_le_bytes());
    }
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let new_off = out.len() as u64;
    out.extend_from_slice(&names);
    let h = hdr(shstrndx);
    out[h + 24..h + 32].copy_from_slice(&new_off.to_le_bytes());
    out[h + 32..h + 40].copy_from_slice(&(names.len() as u64).to_le_bytes());
    out
}

/// The linker script that places every loaded section where the loader's plan does.
fn linker_script(plan: &Plan, base: u64) -> String {
    let mut placed: Vec<(u64, String)> = Vec::new();
    for (i, s) in plan.sections.iter().enumerate() {
        if let Some(off) = s.image_offset {
            placed.push((base + off, format!("  .lt_oracle.{i} {:#x} : {{ KEEP(*(.lt_oracle.{i})) }}\n", base + off)));
        }
    }
    if !plan.got.1.is_empty() {
        placed.push((base + plan.got.0, format!("  .got {:#x} : {{ *(.got) }}\n", base + plan.got.0)));
    }
    placed.sort();
    let mut script = String::from("SECTIONS\n{\n");
    for (_, line) in placed {
        script.push_str(&line);
    }
    script.push_str("  /DISCARD/ : { *(.modinfo) *(.comment) *(.debug_*) *(.note.GNU-stack) }\n}\n");
    script
}

/// A section of the linked output.
struct OutSection {
    addr: u64,
    /// `None` for `NOBITS`.
    bytes: Option<Vec<u8>>,
}

/// What the linker produced: its sections by name and its defined symbols.
struct LldOutput {
    sections: Vec<(String, OutSection)>,
    symbols: Vec<(String, u64)>,
}

impl LldOutput {
    fn section(&self, name: &str) -> Option<&OutSection> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// A scratch directory for one link (the copy of the object, the script, the output), removed
/// when dropped.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Links `obj` (named `name`) with rust-lld at the loader's addresses; `Err` holds what the
/// linker said when it refused.
fn lld_link(name: &str, obj: &[u8], plan: &Plan, base: u64, resolve: &dyn Fn(&str) -> Option<u64>) -> Result<LldOutput, String> {
    static LINKS: AtomicUsize = AtomicUsize::new(0);
    let n = LINKS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loongtrace-oracle-{}-{n}-{name}-{base:x}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir);
    let input = scratch.0.join(name);
    let script = scratch.0.join("module.ld");
    let output = scratch.0.join("linked.elf");
    fs::write(&input, renamed_object(obj, plan)).unwrap();
    fs::write(&script, linker_script(plan, base)).unwrap();
    let lld = rust_lld();
    let mut cmd = Command::new(&lld);
    cmd.args(["-flavor", "gnu", "--no-relax", "-static", "--build-id=none", "-z", "norelro", "--entry=0", "-T"])
        .arg(&script)
        .arg("-o")
        .arg(&output);
    for sym in imports(obj, plan) {
        let v = resolve(&sym).unwrap_or_else(|| panic!("{sym} is not exported"));
        cmd.arg(format!("--defsym={sym}={v:#x}"));
    }
    cmd.arg(&input);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", lld.display()));
    if !out.status.success() {
        return Err(format!(
            "{} failed on {name} at base {base:#x} ({:?}):\n{}{}",
            lld.display(),
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    let bytes = fs::read(&output).unwrap();
    let buf = Object::new(&bytes);
    let elf = xmas_elf::ElfFile::new(buf.bytes()).unwrap();
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for sh in elf.section_iter() {
        let n = sh.get_name(&elf).unwrap_or("?").to_string();
        let data = match sh.get_type() {
            Ok(ShType::Null) => continue,
            Ok(ShType::NoBits) => None,
            _ => Some(sh.raw_data(&elf).to_vec()),
        };
        if let Ok(SectionData::SymbolTable64(entries)) = sh.get_data(&elf) {
            for e in entries {
                if e.shndx() != SHN_UNDEF && e.get_type().map(|t| t == xmas_elf::symbol_table::Type::Func).unwrap_or(false) {
                    symbols.push((e.get_name(&elf).unwrap_or("?").to_string(), e.value()));
                }
            }
        }
        sections.push((n, OutSection { addr: sh.address(), bytes: data }));
    }
    Ok(LldOutput { sections, symbols })
}

/// The instruction fields a relocation of `rtype` sets in `w` (the `k`-th word it writes), for
/// reports.
fn fields(rtype: u32, k: u64, w: u32) -> String {
    let (rd, rj) = (w & 31, (w >> 5) & 31);
    match (rtype, k) {
        (R_LARCH_PCALA_HI20 | R_LARCH_GOT_PC_HI20 | R_LARCH_ABS_HI20 | R_LARCH_ABS64_LO20 | R_LARCH_PCREL20_S2, 0)
        | (R_LARCH_CALL36, 0) => {
            format!("opcode {:#04x} rd r{rd} si20 {:#07x} ({})", w >> 25, (w >> 5) & 0xf_ffff, pcrel::si20_of_field(w >> 5))
        }
        (R_LARCH_CALL36, 1) | (R_LARCH_B16, 0) => {
            format!("opcode {:#04x} rd r{rd} rj r{rj} offs16 {:#06x}", w >> 26, (w >> 10) & 0xffff)
        }
        (R_LARCH_PCALA_LO12 | R_LARCH_GOT_PC_LO12 | R_LARCH_ABS_LO12 | R_LARCH_ABS64_HI12, 0) => {
            format!("opcode {:#05x} rd r{rd} rj r{rj} imm12 {:#05x}", w >> 22, (w >> 10) & 0xfff)
        }
        (R_LARCH_B26, 0) => format!("opcode {:#04x} offs26 {:#09x}", w >> 26, ((w & 0x3ff) << 16) | ((w >> 10) & 0xffff)),
        (R_LARCH_B21, 0) => format!("opcode {:#04x} rj r{rj} offs21 {:#08x}", w >> 26, ((w & 0x1f) << 16) | ((w >> 10) & 0xffff)),
        _ => format!("data {w:#010x}"),
    }
}

/// What the pair a relocation writes points at, when that is defined by the words alone.
fn reaches(rtype: u32, place: u64, words: &[u32]) -> String {
    match rtype {
        R_LARCH_CALL36 if words.len() == 2 => format!(", jumps to {:#x}", pcrel::call36_target(place, words[0] >> 5, words[1] >> 10)),
        R_LARCH_PCALA_HI20 | R_LARCH_GOT_PC_HI20 => format!(", page {:#x}", pcrel::pcalau12i(place, pcrel::si20_of_field(words[0] >> 5))),
        _ => String::new(),
    }
}

/// What one comparison covered.
#[derive(Default, Debug)]
struct Compared {
    /// Bytes compared (loaded sections with contents, and the GOT).
    bytes: usize,
    /// Relocations compared, per type.
    relocations: Vec<(&'static str, usize)>,
    /// For every `pcalau12i` (`PCALA_HI20`, `GOT_PC_HI20`): the low 12 bits of its place and of
    /// its target, and the page delta it encodes.
    pcala: Vec<(u64, u64, i64)>,
    /// `target - place` of every `CALL36`.
    call36: Vec<i64>,
}

impl Compared {
    fn count(&mut self, rtype: u32) {
        let n = reloc::name(rtype);
        match self.relocations.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => self.relocations.push((n, 1)),
        }
    }
}

/// Links `obj` with the loader and with rust-lld at `base` and compares every loaded byte,
/// naming each relocation whose bytes differ. Returns what was compared.
fn compare(name: &str, obj: &[u8], base: u64, resolve: &dyn Fn(&str) -> Option<u64>) -> Compared {
    let obj = Object::new(obj);
    let obj = obj.bytes();
    let (plan, image, linked) = link_to_vec(obj, base, MAX, &STUBS, resolve)
        .unwrap_or_else(|e| panic!("the loader refused {name} at base {base:#x}: {e}"));
    let lld = lld_link(name, obj, &plan, base, resolve).unwrap_or_else(|e| panic!("{e}"));
    let rels = relocations(obj, &plan);
    let mut problems: Vec<String> = Vec::new();
    let mut stats = Compared::default();
    for (i, s) in plan.sections.iter().enumerate() {
        let Some(off) = s.image_offset else { continue };
        let Some(out) = lld.section(&format!(".lt_oracle.{i}")) else {
            problems.push(format!("{}: the linker produced no section for it", s.name));
            continue;
        };
        if out.addr != base + off {
            problems.push(format!("{}: the linker placed it at {:#x}, the loader at {:#x}", s.name, out.addr, base + off));
            continue;
        }
        let mine = &image[off as usize..(off + s.size) as usize];
        let theirs = match &out.bytes {
            Some(b) => b.as_slice(),
            None => {
                assert!(mine.iter().all(|&b| b == 0), "{}: loader's bss is not zero", s.name);
                continue;
            }
        };
        if theirs.len() != mine.len() {
            problems.push(format!("{}: {} bytes from the linker, {} from the loader", s.name, theirs.len(), mine.len()));
            continue;
        }
        stats.bytes += mine.len();
        let mut covered = vec![false; mine.len()];
        for r in rels.iter().filter(|r| r.section == i) {
            let w = r.width(mine);
            if w == 0 {
                continue;
            }
            let (a, b) = (r.offset as usize, (r.offset + w) as usize);
            let place = r.place(&plan, base);
            stats.count(r.rtype);
            match r.rtype {
                R_LARCH_PCALA_HI20 | R_LARCH_GOT_PC_HI20 => {
                    let t = r.pcala_target(&plan, base, resolve);
                    stats.pcala.push((place & 0xfff, t & 0xfff, pcrel::pcala_hi20(place, t)));
                }
                R_LARCH_CALL36 => stats.call36.push(r.value(&plan, base, resolve).wrapping_sub(place) as i64),
                _ => {}
            }
            covered[a..b].iter_mut().for_each(|c| *c = true);
            if mine[a..b] == theirs[a..b] {
                continue;
            }
            let words = |bytes: &[u8]| -> Vec<u32> {
                if w % 4 == 0 { bytes[a..b].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect() } else { Vec::new() }
            };
            let (lw, mw) = (words(theirs), words(mine));
            let n = reloc::name(r.rtype);
            let mut text = format!(
                "{}+{:#x} (address {place:#x}): {n} against '{}'{:+#x} (S + A = {:#x})",
                s.name,
                r.offset,
                r.sym_name,
                r.addend,
                r.value(&plan, base, resolve)
            );
            if lw.is_empty() || w == 8 && r.rtype != R_LARCH_CALL36 {
                text.push_str(&format!("\n    linker {:02x?}\n    loader {:02x?}", &theirs[a..b], &mine[a..b]));
            } else {
                for (k, (l, m)) in lw.iter().zip(&mw).enumerate() {
                    text.push_str(&format!(
                        "\n    word {k}: linker {l:#010x} [{}]\n            loader {m:#010x} [{}]",
                        fields(r.rtype, k as u64, *l),
                        fields(r.rtype, k as u64, *m)
                    ));
                }
                let (lr, mr) = (reaches(r.rtype, place, &lw), reaches(r.rtype, place, &mw));
                if !lr.is_empty() {
                    text.push_str(&format!("\n    linker{lr}; loader{mr}"));
                }
            }
            problems.push(text);
        }
        for (k, (m, t)) in mine.iter().zip(theirs).enumerate() {
            if m != t && !covered[k] {
                problems.push(format!("{}+{k:#x}: no relocation here, yet linker {t:#04x} loader {m:#04x}", s.name));
            }
        }
    }
    // The GOT: the linker's entries and the loader's, in the same order at the same address.
    if !plan.got.1.is_empty() {
        let g = plan.got.0 as usize;
        let mine = &image[g..g + 8 * plan.got.1.len()];
        match lld.section(".got") {
            Some(OutSection { addr, bytes: Some(b) }) if *addr == base + plan.got.0 => {
                stats.bytes += mine.len();
                if b.as_slice() != mine {
                    problems.push(format!("GOT at {addr:#x}: linker {b:02x?}\n    loader {mine:02x?}"));
                }
            }
            _ => problems.push(format!("the linker made no .got at {:#x}", base + plan.got.0)),
        }
    }
    // The function symbols: where the linker put them is where the loader says they are.
    for s in linked.symbols.iter().filter(|s| s.is_func && s.global) {
        match lld.symbols.iter().find(|(n, _)| demangle(n) == s.name) {
            Some((_, addr)) if *addr == base + s.offset => {}
            Some((n, addr)) => problems.push(format!("symbol {n}: linker {addr:#x}, loader {:#x}", base + s.offset)),
            None => problems.push(format!("symbol {}: not in the linker's output", s.name)),
        }
    }
    assert!(
        problems.is_empty(),
        "{name} linked at {base:#x}: the loader and rust-lld disagree in {} place(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(stats.bytes > 0 && !stats.relocations.is_empty(), "{name}: nothing was compared");
    stats
}

/// Kernel symbols moved from where [`exports`] puts them: `(name, address)`.
type Moved = Vec<(String, u64)>;

/// The kernel symbols of [`exports`], with some moved to `moved`.
fn exports_with(moved: Moved) -> impl Fn(&str) -> Option<u64> {
    move |n: &str| moved.iter().find(|(m, _)| m == n).map(|&(_, v)| v).or_else(|| exports(n))
}

/// The module's plan and relocations (independent of the base).
fn plan_and_relocations(obj: &[u8]) -> (Plan, Vec<Rel>) {
    let obj = Object::new(obj);
    let plan = plan(obj.bytes(), STUBS.len(), MAX).unwrap();
    let rels = relocations(obj.bytes(), &plan);
    (plan, rels)
}

/// A base in the module area (from `from`, in steps of the image's alignment, within one page)
/// at which some `pcalau12i` sits at page offset `low`, or `None`.
fn base_with_place_low12(obj: &[u8], from: u64, low: u64) -> Option<u64> {
    let (plan, rels) = plan_and_relocations(obj);
    (0..0x1000 / plan.align).map(|k| from + k * plan.align).find(|&base| {
        rels.iter().any(|r| matches!(r.rtype, R_LARCH_PCALA_HI20 | R_LARCH_GOT_PC_HI20) && r.place(&plan, base) & 0xfff == low)
    })
}

/// The module at several bases, with the kernel's data placed so that its low 12 bits are each
/// rounding edge: the loader and the linker agree on every byte each time.
#[test]
fn loader_matches_the_linker_at_several_bases() {
    let mut pcala = Vec::new();
    for (name, obj) in SAMPLES {
        // The usual place, then one where the image straddles a page boundary.
        let mut runs: Vec<(String, u64, Moved)> =
            vec![("standard".into(), BASE, vec![]), ("straddling a page".into(), BASE + 0x2_3f00, vec![])];
        // The kernel's data on each rounding edge, below the module (negative pages) and, as if
        // the kernel lay above it, above. (The samples' own data cannot be put on an edge: every
        // base is a multiple of 32, the image's alignment, and no target of theirs lies 0 or 31
        // bytes past a multiple of 32.) Then pcalau12i places on the page-offset edges, where a
        // base makes them so.
        for (low, base) in [(0x7ff, BASE + 0x10_0000), (0x800, BASE + 0x20_0000), (0xfff, BASE + 0x30_0000)] {
            let below = vec![("lt_shared_counter".into(), KERNEL + 0x40_0000 + low)];
            let above = vec![("lt_shared_counter".into(), base + 0x80_0000 + low)];
            runs.push((format!("kernel data below at page offset {low:#x}"), base, below));
            runs.push((format!("kernel data above at page offset {low:#x}"), base + 0x4_0100, above));
        }
        for low in [0x7fc, 0x800, 0xffc] {
            if let Some(base) = base_with_place_low12(obj, BASE + 0x40_0000, low) {
                runs.push((format!("pcalau12i at page offset {low:#x}"), base, vec![]));
            }
        }
        for (what, base, moved) in runs {
            let c = compare(name, obj, base, &exports_with(moved));
            std::eprintln!("{name} at {base:#x} ({what}): {} bytes, {:?}", c.bytes, c.relocations);
            pcala.extend(c.pcala);
        }
    }
    // What the runs covered (the sample objects decide what can be arranged; these can).
    for low in [0x7ff, 0x800, 0xfff] {
        assert!(pcala.iter().any(|&(_, t, d)| t == low && d < 0), "a target below the pc with low 12 bits {low:#x}");
        assert!(pcala.iter().any(|&(_, t, d)| t == low && d >= 0), "a target at or above the pc with low 12 bits {low:#x}");
    }
    // Page offsets 0x7fc and 0xffc would need a pcalau12i 28 bytes past a multiple of 32 (every
    // base is a multiple of 32), and the samples have none; arch::pcrel and reloc.rs test them.
    assert!(pcala.iter().any(|&(p, _, _)| p == 0x800), "a pcalau12i at page offset 0x800");
}

/// Where each kernel symbol the module imports must be for its references to sit exactly on the
/// edge of their reach: below the module (`up == false`: the farthest address every reference
/// still reaches, so the nearest reference is exactly on the edge) or above it. A `pcalau12i`
/// pair reaches `[page(pc) - 2 GiB - 0x800, page(pc) + 2 GiB - 0x800)`, a `pcaddu18i` + `jirl`
/// pair `pc + [CALL36_MIN, CALL36_END)`. Symbols reached only through the GOT or by absolute
/// relocations keep their place.
fn imports_on_the_edge(obj: &[u8], base: u64, up: bool) -> Moved {
    let (plan, rels) = plan_and_relocations(obj);
    let mut moved: Moved = Vec::new();
    for r in &rels {
        let SymLoc::Import(name) = &r.sym else { continue };
        let p = r.place(&plan, base);
        let a = r.addend as u64;
        let edge = match (r.rtype, up) {
            (R_LARCH_PCALA_HI20, false) => pcrel::page(p).wrapping_sub(pcrel::PCALA_REACH + 0x800),
            (R_LARCH_PCALA_HI20, true) => pcrel::page(p) + pcrel::PCALA_REACH - 0x801,
            (R_LARCH_CALL36, false) => p.wrapping_add(pcrel::CALL36_MIN as u64),
            (R_LARCH_CALL36, true) => p + (pcrel::CALL36_END - 4) as u64,
            _ => continue,
        }
        .wrapping_sub(a);
        match moved.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = if up { (*v).min(edge) } else { (*v).max(edge) },
            None => moved.push((name.clone(), edge)),
        }
    }
    moved
}

/// The kernel ±2 GiB (`pcalau12i`) and ±128 GiB (`pcaddu18i` + `jirl`) away, exactly on the edge
/// of reach of the module's references: the loader and the linker still agree on every byte.
/// One step further, the loader refuses; for `CALL36` so does the linker (lld does not
/// range-check `PCALA_HI20`, so there it has no say).
#[test]
fn loader_matches_the_linker_at_the_edges_of_reach() {
    let mut pcala_edges = (false, false);
    let mut call36_edges = (false, false);
    for (name, obj) in SAMPLES {
        for up in [false, true] {
            let moved = imports_on_the_edge(obj, BASE, up);
            assert!(!moved.is_empty());
            let c = compare(name, obj, BASE, &exports_with(moved.clone()));
            std::eprintln!("{name}, kernel {}: {} bytes, {:?}", if up { "above" } else { "below" }, c.bytes, c.relocations);
            for &(_, _, d) in &c.pcala {
                pcala_edges.0 |= d == -0x8_0000;
                pcala_edges.1 |= d == 0x7_ffff;
            }
            for &o in &c.call36 {
                call36_edges.0 |= o == pcrel::CALL36_MIN;
                call36_edges.1 |= o == pcrel::CALL36_END - 4;
            }
            // One step beyond, symbol by symbol.
            let (plan, rels) = plan_and_relocations(obj);
            for (k, (sym, v)) in moved.iter().enumerate() {
                let rtype = rels.iter().find(|r| matches!(&r.sym, SymLoc::Import(n) if n == sym)).map(|r| r.rtype);
                let step = match rtype {
                    Some(R_LARCH_CALL36) => 4,
                    _ => 1,
                };
                let addr = if up { v + step } else { v - step };
                let mut beyond = moved.clone();
                beyond[k].1 = addr;
                let resolve = exports_with(beyond);
                let o = Object::new(obj);
                match link_to_vec(o.bytes(), BASE, MAX, &STUBS, &resolve) {
                    Err(LoadError::Relocation { error: RelocError::Overflow { rtype: t, .. }, symbol, .. }) => {
                        assert_eq!(Some(t), rtype, "{name}: {sym} one step beyond");
                        assert_eq!(&symbol, sym);
                    }
                    other => panic!("{name}: {sym} one step beyond its reach ({addr:#x}): the loader gave {:?}", other.map(|_| ())),
                }
                if rtype == Some(R_LARCH_CALL36) {
                    let e = lld_link(name, o.bytes(), &plan, BASE, &resolve).err();
                    let e = e.unwrap_or_else(|| panic!("{name}: rust-lld linked a CALL36 to {sym} one step beyond its reach"));
                    assert!(e.contains("out of range"), "{e}");
                }
            }
        }
    }
    assert!(pcala_edges.0 && pcala_edges.1, "a pcalau12i exactly on each edge of its reach: {pcala_edges:?}");
    assert!(call36_edges.0 && call36_edges.1, "a pcaddu18i + jirl exactly on each edge of its reach: {call36_edges:?}");
}
