//! BPF objects as clang writes them (`clang -O2 -g -target bpf -c`, libbpf-style C), turned into
//! loongtrace's *load plan*: the programs with their attach kind and target and their
//! instructions, relocated and linked; the maps (BTF-defined ones and the global-data sections);
//! the global variables; the license. Nothing is created here: the plan is what a loader needs
//! to create the maps (their indices are the numbers the instructions use), verify the programs
//! and attach them. See docs/bpf-objects.md.
//!
//! The ELF, BTF and relocation work is aya-obj's ([`aya_obj::Object::parse`],
//! [`aya_obj::Object::relocate_maps`], [`aya_obj::Object::relocate_calls`]). Around it, this
//! module
//! - checks what aya-obj's parser takes for granted (symbols inside their sections, relocations
//!   on the instructions they claim to patch, immediates that do not overflow), so that a
//!   malformed object is an [`ObjectError`] and never a panic (a panic is fatal in the kernel);
//! - shows aya-obj program sections under a name it knows when it does not know theirs
//!   (aya-obj 0.2.1 refuses `fmod_ret/` and any name outside its list): the object's section
//!   name table is copied to the end of a private copy of the file with the new names added;
//! - orders maps and programs as libbpf does and names global-data maps as libbpf does;
//! - refuses what it cannot honour: CO-RE relocations (there is no kernel BTF), externs
//!   (kfuncs, `__ksym`, `.kconfig`), legacy `maps` sections, map types the runtime lacks.
//!
//! The plan's instructions are raw 8-byte words, as Linux's `struct bpf_insn` in the byte
//! order of the machine: `code` in bits 0..8, `dst_reg` 8..12, `src_reg` 12..16, `off` 16..32,
//! `imm` 32..64 ([`Insn`] decodes one). Map references are Linux's: an `ld_imm64` whose
//! `src_reg` is [`BPF_PSEUDO_MAP_FD`] with `imm` = the map's index in [`LoadPlan::maps`], or
//! [`BPF_PSEUDO_MAP_VALUE`] with `imm` = the map's index and the second half's `imm` = the byte
//! offset in the map's (only) value, for globals. BPF-to-BPF calls (`src_reg` =
//! [`BPF_PSEUDO_CALL`]) and function references (`ld_imm64`, `src_reg` = [`BPF_PSEUDO_FUNC`])
//! are relative to the next instruction, into the callees appended after each program's own
//! code.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, RelocationFlags, RelocationTarget,
    SectionKind, SymbolKind,
};

/// `src_reg` of an `ld_imm64` that loads a map (`imm` = map index).
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `ld_imm64` that loads the address of a map value (`imm` = map index, the
/// second half's `imm` = offset in the value).
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of a `call` to a BPF function (`imm` = instructions from the next one).
pub const BPF_PSEUDO_CALL: u8 = 1;
/// `src_reg` of an `ld_imm64` that loads a BPF function's address (`imm` as for calls).
pub const BPF_PSEUDO_FUNC: u8 = 4;

/// Opcode of `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`), the first of its two slots.
pub const LD_IMM64: u8 = 0x18;
/// Opcode of `call` (`BPF_JMP | BPF_CALL`).
pub const CALL: u8 = 0x85;

/// Linux's map type numbers (`enum bpf_map_type`) of the maps the runtime supports.
pub mod map_type {
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const RINGBUF: u32 = 27;

    /// bpftool's name of a map type (`"hash"`, ...), `"unknown"` for others.
    pub fn name(t: u32) -> &'static str {
        match t {
            HASH => "hash",
            ARRAY => "array",
            PERCPU_ARRAY => "percpu_array",
            RINGBUF => "ringbuf",
            _ => "unknown",
        }
    }
}

/// `map_flags` of the global-data maps (libbpf's): programs may not write `.rodata`.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `map_flags` of the global-data maps (libbpf's): user space may map them.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Largest global-data section accepted (as an ARRAY map's value; Linux's `KMALLOC_MAX_SIZE`
/// is of this order). Also bounds what a `.bss` header can make the loader allocate.
pub const MAX_GLOBAL_SECTION: u64 = 4 << 20;

/// How a program attaches, from its section name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgKind {
    /// `fentry/FUNC`: before FUNC, with its arguments.
    Fentry,
    /// `fexit/FUNC`: after FUNC, with its arguments and return value.
    Fexit,
    /// `fmod_ret/FUNC`: before FUNC; a non-zero return skips FUNC and is its return value.
    FmodRet,
    /// `kprobe/FUNC[+OFFSET]`: at an instruction, with the registers.
    Kprobe,
    /// `kretprobe/FUNC`: when FUNC returns, with the registers.
    Kretprobe,
    /// Any other section name (kept, not attachable by loongtrace).
    Other,
}

impl ProgKind {
    /// The section prefix (`"fentry"`, ...; `"other"`).
    pub fn name(self) -> &'static str {
        match self {
            ProgKind::Fentry => "fentry",
            ProgKind::Fexit => "fexit",
            ProgKind::FmodRet => "fmod_ret",
            ProgKind::Kprobe => "kprobe",
            ProgKind::Kretprobe => "kretprobe",
            ProgKind::Other => "other",
        }
    }
}

/// One program of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgSpec {
    /// The C function's name.
    pub name: String,
    /// The ELF section it is in (`"fentry/bpf_fentry_test1"`).
    pub section: String,
    pub kind: ProgKind,
    /// The function it attaches to (`None` for [`ProgKind::Other`] and for a section that names
    /// none, such as `SEC("kprobe")`).
    pub target: Option<String>,
    /// For `kprobe/FUNC+OFFSET`: OFFSET bytes into FUNC (0 otherwise).
    pub offset: u64,
    /// The instructions, relocated, with the BPF functions it calls appended.
    pub insns: Vec<u64>,
    /// How many of [`Self::insns`] are the program's own (the callees follow).
    pub own_len: usize,
}

/// Where a map comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOrigin {
    /// A BTF-defined map of `SEC(".maps")`.
    Btf,
    /// A global-data section (`.data`, `.rodata`, `.bss`, `.data.NAME`, ...), one element.
    Global { section: String },
}

/// One map of the plan. Its index in [`LoadPlan::maps`] is the number the programs'
/// `ld_imm64` instructions use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// The C variable's name (BTF maps), or libbpf's name of a global-data map
    /// (`fentry_t.bss` for `.bss` of `fentry_test.bpf.o`).
    pub name: String,
    /// Linux's map type number ([`map_type`]).
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub origin: MapOrigin,
    /// The initial value of element 0 of a global-data map (the section's bytes, zeroes for
    /// `.bss`); empty for BTF maps.
    pub initial: Vec<u8>,
}

/// A global variable: where it lives in a global-data map's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalVar {
    pub name: String,
    /// Index of its map in [`LoadPlan::maps`].
    pub map: usize,
    /// Byte offset in the map's value.
    pub offset: u32,
    pub size: u32,
}

/// A map reference of a program: instruction `insn` (an `ld_imm64`) loads map `map`, or with
/// `value_offset` the address of that byte of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRef {
    pub insn: usize,
    pub map: usize,
    pub value_offset: Option<u32>,
}

/// What loading an object means: everything a loader creates, verifies and attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// The object's name, as libbpf derives it from the file name (`fentry_test` for
    /// `fentry_test.bpf.o`).
    pub name: String,
    /// The `license` section's text.
    pub license: String,
    /// Programs in section order, then by offset in the section (libbpf's order).
    pub programs: Vec<ProgSpec>,
    /// BTF-defined maps in `.maps` order, then the global-data maps in section order
    /// (libbpf's order).
    pub maps: Vec<MapSpec>,
    /// The named variables of the global-data sections.
    pub globals: Vec<GlobalVar>,
}

/// Why an object cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectError {
    /// Not an ELF file, or a malformed one (headers, a symbol outside its section, ...).
    BadElf(String),
    /// An ELF file, but not a 64-bit little-endian BPF relocatable object.
    NotBpf(String),
    /// A section that has no place in a BPF object (an executable section with a reserved
    /// name, code referring into a section that is neither code, maps nor global data).
    UnknownSection { section: String, reason: String },
    /// A section whose name or size is wrong (`kretprobe/f+8`, a too large `.bss`).
    BadSection { section: String, reason: String },
    /// A section of a feature the loader does not have (legacy `maps`, CO-RE relocations).
    UnsupportedSection { section: String, reason: String },
    /// A relocation the loader cannot apply, at `offset` in `section`.
    UnsupportedRelocation {
        section: String,
        offset: u64,
        reason: String,
    },
    /// A map of a type the runtime does not have.
    UnsupportedMap { name: String, map_type: u32 },
    /// No `license` section (`char LICENSE[] SEC("license") = "GPL";`).
    NoLicense,
    /// A `license` section that is not one NUL-terminated UTF-8 string.
    BadLicense(String),
    /// No program in the object.
    NoPrograms,
    /// aya-obj's parser refused the object (its message).
    Parse(String),
    /// aya-obj could not relocate or link a program (its message).
    Relocation(String),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::BadElf(m) => write!(f, "bad ELF object: {m}"),
            ObjectError::NotBpf(m) => write!(f, "not a BPF object: {m}"),
            ObjectError::UnknownSection { section, reason } => {
                write!(f, "unknown section `{section}`: {reason}")
            }
            ObjectError::BadSection { section, reason } => {
                write!(f, "bad section `{section}`: {reason}")
            }
            ObjectError::UnsupportedSection { section, reason } => {
                write!(f, "unsupported section `{section}`: {reason}")
            }
            ObjectError::UnsupportedRelocation {
                section,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "unsupported relocation at `{section}`+{offset:#x}: {reason}"
                )
            }
            ObjectError::UnsupportedMap { name, map_type: t } => {
                write!(
                    f,
                    "map `{name}`: unsupported map type {t} (supported: hash, array, percpu_array, ringbuf)"
                )
            }
            ObjectError::NoLicense => write!(
                f,
                "no license: add `char LICENSE[] SEC(\"license\") = \"GPL\";` to the program"
            ),
            ObjectError::BadLicense(m) => write!(f, "bad license section: {m}"),
            ObjectError::NoPrograms => write!(f, "no program in the object"),
            ObjectError::Parse(m) => write!(f, "cannot parse the object: {m}"),
            ObjectError::Relocation(m) => write!(f, "cannot relocate: {m}"),
        }
    }
}

/// One instruction word, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn decode(word: u64) -> Insn {
        Insn {
            code: word as u8,
            dst: (word >> 8) as u8 & 0xf,
            src: (word >> 12) as u8 & 0xf,
            off: (word >> 16) as u16 as i16,
            imm: (word >> 32) as u32 as i32,
        }
    }

    pub fn encode(self) -> u64 {
        self.code as u64
            | ((self.dst as u64 & 0xf) << 8)
            | ((self.src as u64 & 0xf) << 12)
            | ((self.off as u16 as u64) << 16)
            | ((self.imm as u32 as u64) << 32)
    }
}

impl ProgSpec {
    /// The program's map references, from its `ld_imm64` instructions.
    pub fn map_refs(&self) -> Vec<MapRef> {
        let mut refs = Vec::new();
        let mut i = 0;
        while i < self.insns.len() {
            let insn = Insn::decode(self.insns[i]);
            if insn.code == LD_IMM64 {
                let map = insn.imm as u32 as usize;
                match insn.src {
                    BPF_PSEUDO_MAP_FD => refs.push(MapRef {
                        insn: i,
                        map,
                        value_offset: None,
                    }),
                    BPF_PSEUDO_MAP_VALUE => {
                        let off = self.insns.get(i + 1).map(|w| Insn::decode(*w).imm as u32);
                        refs.push(MapRef {
                            insn: i,
                            map,
                            value_offset: Some(off.unwrap_or(0)),
                        });
                    }
                    _ => {}
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        refs
    }
}

impl LoadPlan {
    /// Parses a BPF object and plans its loading. `file_name` names the object as libbpf does
    /// (its base name up to the first `.`), which names the global-data maps.
    pub fn parse(file_name: &str, bytes: &[u8]) -> Result<LoadPlan, ObjectError> {
        parse(file_name, bytes)
    }

    pub fn program(&self, name: &str) -> Option<&ProgSpec> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// A map by name, with its index.
    pub fn map(&self, name: &str) -> Option<(usize, &MapSpec)> {
        self.maps.iter().enumerate().find(|(_, m)| m.name == name)
    }

    pub fn global(&self, name: &str) -> Option<&GlobalVar> {
        self.globals.iter().find(|g| g.name == name)
    }

    /// A global's initial bytes (zeroes in `.bss`).
    pub fn global_initial(&self, name: &str) -> Option<&[u8]> {
        let g = self.global(name)?;
        let start = g.offset as usize;
        self.maps
            .get(g.map)?
            .initial
            .get(start..start.checked_add(g.size as usize)?)
    }

    /// Whether the license lets the programs call GPL-only helpers (Linux's
    /// `license_is_gpl_compatible` list).
    pub fn gpl_compatible(&self) -> bool {
        matches!(
            self.license.as_str(),
            "GPL"
                | "GPL v2"
                | "GPL and additional rights"
                | "Dual BSD/GPL"
                | "Dual MIT/GPL"
                | "Dual MPL/GPL"
        )
    }
}

/// libbpf's object name: the file's base name up to its first `.`.
pub fn object_name(file_name: &str) -> String {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    base.split('.').next().unwrap_or(base).to_owned()
}

/// libbpf's name of the map of a global-data section (`internal_map_name`): at most 15
/// characters, the object name's first characters then the section name (`fentry_t.bss`); a
/// section with a second `.` (`.data.counters`) keeps its own name only; characters other than
/// letters, digits, `_` and `.` become `_`.
pub fn global_map_name(object: &str, section: &str) -> String {
    const BPF_OBJ_NAME_LEN: usize = 16;
    let sfx_len = section.len().max(7);
    let pfx_len = if section.len() > 1 && section[1..].contains('.') {
        0
    } else {
        (BPF_OBJ_NAME_LEN - 1)
            .saturating_sub(sfx_len)
            .min(object.len())
    };
    let mut name: String = object.chars().take(pfx_len).collect();
    name.extend(section.chars().take(sfx_len));
    name.chars()
        .take(BPF_OBJ_NAME_LEN - 1)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Attach kind, target and offset of a program section name.
fn parse_section_name(section: &str) -> Result<(ProgKind, Option<String>, u64), ObjectError> {
    let (prefix, rest) = match section.split_once('/') {
        Some((p, r)) => (p, Some(r)),
        None => (section, None),
    };
    let kind = match prefix {
        "fentry" => ProgKind::Fentry,
        "fexit" => ProgKind::Fexit,
        "fmod_ret" => ProgKind::FmodRet,
        "kprobe" => ProgKind::Kprobe,
        "kretprobe" => ProgKind::Kretprobe,
        _ => return Ok((ProgKind::Other, None, 0)),
    };
    let bad = |reason: &str| ObjectError::BadSection {
        section: section.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(rest) = rest.filter(|r| !r.is_empty()) else {
        return Ok((kind, None, 0));
    };
    let (func, offset) = match rest.split_once('+') {
        Some((func, off)) if kind == ProgKind::Kprobe => {
            let parsed = match off.strip_prefix("0x").or_else(|| off.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => off.parse::<u64>(),
            };
            (
                func,
                parsed.map_err(|_| bad("the offset after `+` is not a number"))?,
            )
        }
        Some(_) => return Err(bad("only kprobe sections take a `+OFFSET`")),
        None => (rest, 0),
    };
    if func.is_empty() || func.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad("the target is not a function name"));
    }
    Ok((kind, Some(func.to_owned()), offset))
}

/// What the loader knows of one ELF section.
struct Sec {
    name: String,
    /// Code (aya-obj's test: executable, with contents).
    code: bool,
    size: u64,
    class: SecClass,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SecClass {
    /// A program section (code, not `.text*`).
    Program,
    /// `.text*`: BPF functions the programs call.
    Text,
    /// `.data*`, `.rodata*`, `.bss*`: global data.
    Global,
    /// `.maps`: BTF-defined maps.
    BtfMaps,
    /// Anything else (license, BTF, debug info, symbol tables...).
    Other,
}

/// What the loader knows of one ELF symbol.
struct Sym {
    name: String,
    section: Option<usize>,
    undefined: bool,
    address: u64,
    size: u64,
    kind: SymbolKind,
}

const R_BPF_64_64: u32 = 1;
const R_BPF_64_32: u32 = 10;
const EM_BPF: u16 = 247;

fn bad_elf(e: impl fmt::Display) -> ObjectError {
    ObjectError::BadElf(e.to_string())
}

fn parse(file_name: &str, bytes: &[u8]) -> Result<LoadPlan, ObjectError> {
    let elf = object::File::parse(bytes).map_err(bad_elf)?;
    check_header(&elf, bytes)?;

    // Sections: their class, the checks aya-obj's parser relies on, the names to show it.
    let mut secs: Vec<Option<Sec>> = Vec::new();
    let mut renames: Vec<(usize, &'static str)> = Vec::new();
    let mut have_license = false;
    for s in elf.sections() {
        let index = s.index().0;
        let name = s.name().map_err(bad_elf)?.to_owned();
        let size = s.size();
        let code = s.kind() == SectionKind::Text && size > 0;
        let class = if code {
            if name.starts_with(".text") {
                SecClass::Text
            } else {
                SecClass::Program
            }
        } else if name.starts_with(".data")
            || name.starts_with(".rodata")
            || name.starts_with(".bss")
        {
            SecClass::Global
        } else if name.starts_with(".maps") {
            SecClass::BtfMaps
        } else {
            SecClass::Other
        };
        let bad = |reason: String| ObjectError::BadSection {
            section: name.clone(),
            reason,
        };
        if code && s.address() != 0 {
            return Err(bad(format!(
                "code section at address {:#x}, not 0",
                s.address()
            )));
        }
        if code && size % 8 != 0 {
            return Err(bad(format!("{size} bytes of code, not whole instructions")));
        }
        match class {
            SecClass::Program => {
                // aya-obj classifies code sections by name prefix before it sees they are code.
                for reserved in [
                    "license", "version", "maps", ".maps", ".bss", ".data", ".rodata", ".BTF",
                ] {
                    if name.starts_with(reserved) {
                        return Err(ObjectError::UnknownSection {
                            section: name,
                            reason: format!("code in a section named like `{reserved}`"),
                        });
                    }
                }
                parse_section_name(&name)?;
                if aya_obj::ProgramSection::from_str(&name).is_err() {
                    // aya-obj 0.2.1 refuses section names outside its list (`fmod_ret/` among
                    // them); it gets one it takes, the plan keeps the real one.
                    renames.push((index, "kprobe"));
                }
            }
            SecClass::Global if size > MAX_GLOBAL_SECTION => {
                return Err(bad(format!(
                    "{size} bytes of global data (at most {MAX_GLOBAL_SECTION})"
                )));
            }
            _ => {}
        }
        if !code && name.starts_with("maps") {
            return Err(ObjectError::UnsupportedSection {
                section: name,
                reason:
                    "legacy `struct bpf_map_def` maps: declare BTF-defined maps in SEC(\".maps\")"
                        .to_owned(),
            });
        }
        if name == "license" {
            have_license = true;
        }
        if name == ".BTF" {
            check_btf(s.data().map_err(bad_elf)?)?;
        }
        if name == ".BTF.ext" {
            check_btf_ext(s.data().map_err(bad_elf)?)?;
            // Its function and line records only matter to a kernel that loads BTF, and
            // aya-obj's reader of them trusts their lengths: it does not see the section.
            renames.push((index, ".BTF.ext.unused"));
        }
        if secs.len() <= index {
            secs.resize_with(index + 1, || None);
        }
        secs[index] = Some(Sec {
            name,
            code,
            size,
            class,
        });
    }
    // aya-obj's linker knows a callee by its address alone: the functions called must all be
    // in one section.
    let texts: Vec<&str> = secs
        .iter()
        .flatten()
        .filter(|s| s.class == SecClass::Text)
        .map(|s| s.name.as_str())
        .collect();
    if texts.len() > 1 {
        return Err(ObjectError::UnsupportedSection {
            section: texts[1].to_owned(),
            reason:
                "BPF functions in several .text sections (-ffunction-sections): keep them in .text"
                    .to_owned(),
        });
    }
    if !have_license {
        return Err(ObjectError::NoLicense);
    }

    // Symbols: those of code must lie inside their section (aya-obj slices by them).
    let mut syms: Vec<Option<Sym>> = Vec::new();
    for sym in elf.symbols() {
        let index = sym.index().0;
        let name = sym.name().map_err(bad_elf)?.to_owned();
        let section = sym.section_index().map(|i| i.0);
        let (address, size) = (sym.address(), sym.size());
        if let Some(sec) = section.and_then(|i| secs.get(i)).and_then(|s| s.as_ref()) {
            let inside = address.checked_add(size).is_some_and(|end| end <= sec.size);
            if sec.code && !inside {
                return Err(ObjectError::BadElf(format!(
                    "symbol `{name}` ({address:#x}+{size:#x}) is outside its section `{}` ({:#x} bytes)",
                    sec.name, sec.size
                )));
            }
            if sec.code && sym.kind() == SymbolKind::Text && (address % 8 != 0 || size % 8 != 0) {
                return Err(ObjectError::BadElf(format!(
                    "function `{name}` is not made of whole instructions"
                )));
            }
        }
        if syms.len() <= index {
            syms.resize_with(index + 1, || None);
        }
        syms[index] = Some(Sym {
            name,
            section,
            undefined: sym.is_undefined(),
            address,
            size,
            kind: sym.kind(),
        });
    }

    let renamed;
    let aya_bytes = if renames.is_empty() {
        bytes
    } else {
        renamed = rename_sections(bytes, &renames)?;
        &renamed[..]
    };
    let mut obj = aya_obj::Object::parse(aya_bytes).map_err(parse_error)?;

    // The maps, in libbpf's order: BTF maps by their place in `.maps`, then global data.
    let object = object_name(file_name);
    let mut btf_maps: Vec<(u64, usize, String, aya_obj::Map)> = Vec::new();
    let mut global_maps: Vec<(usize, String, aya_obj::Map)> = Vec::new();
    for (name, map) in obj.maps.iter() {
        match map {
            aya_obj::Map::Btf(_) => {
                let sym = map.symbol_index().unwrap_or(usize::MAX);
                let address = syms
                    .get(sym)
                    .and_then(|s| s.as_ref())
                    .map_or(0, |s| s.address);
                btf_maps.push((address, sym, name.clone(), map.clone()));
            }
            aya_obj::Map::Legacy(m) => match m.section_kind {
                aya_obj::EbpfSectionKind::Data
                | aya_obj::EbpfSectionKind::Rodata
                | aya_obj::EbpfSectionKind::Bss => {
                    if map.value_size() > 0 {
                        global_maps.push((m.section_index, name.clone(), map.clone()));
                    }
                }
                _ => {
                    return Err(ObjectError::UnsupportedSection {
                        section: name.clone(),
                        reason: "legacy map definitions".to_owned(),
                    });
                }
            },
        }
    }
    btf_maps.sort_by_key(|m| (m.0, m.1));
    global_maps.sort_by_key(|m| m.0);

    let mut maps: Vec<MapSpec> = Vec::new();
    for (_, _, name, m) in &btf_maps {
        let t = m.map_type();
        if !matches!(
            t,
            map_type::HASH | map_type::ARRAY | map_type::PERCPU_ARRAY | map_type::RINGBUF
        ) {
            return Err(ObjectError::UnsupportedMap {
                name: name.clone(),
                map_type: t,
            });
        }
        maps.push(MapSpec {
            name: name.clone(),
            map_type: t,
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            flags: m.map_flags(),
            origin: MapOrigin::Btf,
            initial: Vec::new(),
        });
    }
    for (_, section, m) in &global_maps {
        let initial = m.data().to_vec();
        if initial.len() != m.value_size() as usize {
            return Err(ObjectError::BadSection {
                section: section.clone(),
                reason: format!(
                    "{} bytes of data for {} bytes",
                    initial.len(),
                    m.value_size()
                ),
            });
        }
        maps.push(MapSpec {
            name: global_map_name(&object, section),
            map_type: map_type::ARRAY,
            key_size: 4,
            value_size: m.value_size(),
            max_entries: 1,
            flags: m.map_flags() | BPF_F_MMAPABLE,
            origin: MapOrigin::Global {
                section: section.clone(),
            },
            initial,
        });
    }

    // Relocations: check each before aya-obj applies it.
    let map_symbols: Vec<usize> = btf_maps.iter().map(|m| m.1).collect();
    let global_sections: Vec<usize> = global_maps.iter().map(|m| m.0).collect();
    for s in elf.sections() {
        let Some(sec) = secs.get(s.index().0).and_then(|s| s.as_ref()) else {
            continue;
        };
        if !sec.code {
            continue;
        }
        let data = s.data().map_err(bad_elf)?;
        let mut relocated = BTreeSet::new();
        for (offset, rel) in s.relocations() {
            let at = (s.index().0, sec, data, offset);
            check_relocation(at, &rel, &secs, &syms, &map_symbols, &global_sections)?;
            relocated.insert(offset);
        }
        // Calls without a relocation, which aya-obj resolves inside their own section: only
        // between the functions of `.text` (libbpf's rule too), and `imm + 1` must not overflow.
        for (i, word) in data.chunks_exact(8).enumerate() {
            let insn = Insn::decode(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
            if insn.code != CALL
                || insn.src != BPF_PSEUDO_CALL
                || relocated.contains(&(i as u64 * 8))
            {
                continue;
            }
            if sec.class != SecClass::Text || insn.imm == i32::MAX {
                return Err(ObjectError::UnsupportedRelocation {
                    section: sec.name.clone(),
                    offset: i as u64 * 8,
                    reason: "BPF-to-BPF call to a function outside .text".to_owned(),
                });
            }
        }
    }

    // aya-obj relocates: map "fds" are the plan's map indices.
    let text_sections: hashbrown::HashSet<usize> = obj.functions.keys().map(|k| k.0).collect();
    let mut aya_maps: Vec<(String, i32, aya_obj::Map)> = Vec::new();
    for (i, (_, _, name, m)) in btf_maps.iter().enumerate() {
        aya_maps.push((name.clone(), i as i32, m.clone()));
    }
    for (i, (_, name, m)) in global_maps.iter().enumerate() {
        aya_maps.push((name.clone(), (btf_maps.len() + i) as i32, m.clone()));
    }
    obj.relocate_maps(
        aya_maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
        &text_sections,
    )
    .map_err(|e| ObjectError::Relocation(format!("{e}: {e:?}")))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| ObjectError::Relocation(format!("{e}: {e:?}")))?;

    // Programs in libbpf's order.
    let mut progs: Vec<(&String, &aya_obj::Program)> = obj.programs.iter().collect();
    progs.sort_by_key(|(_, p)| p.function_key());
    let mut programs = Vec::new();
    for (name, p) in progs {
        let section = secs
            .get(p.section_index)
            .and_then(|s| s.as_ref())
            .map(|s| s.name.clone())
            .ok_or_else(|| ObjectError::BadElf(format!("program `{name}` in no section")))?;
        let (kind, target, offset) = parse_section_name(&section)?;
        let function = obj.functions.get(&p.function_key()).ok_or_else(|| {
            ObjectError::Relocation(format!("program `{name}` has no linked function"))
        })?;
        let own_len = syms
            .iter()
            .flatten()
            .find(|s| {
                s.section == Some(p.section_index) && s.address == p.address && &s.name == name
            })
            .map_or(function.instructions.len(), |s| (s.size / 8) as usize);
        let insns = function
            .instructions
            .iter()
            .map(|i| {
                Insn {
                    code: i.code,
                    dst: i.dst_reg(),
                    src: i.src_reg(),
                    off: i.off,
                    imm: i.imm,
                }
                .encode()
            })
            .collect::<Vec<u64>>();
        check_linked(name, &insns, &maps)?;
        programs.push(ProgSpec {
            name: name.clone(),
            section,
            kind,
            target,
            offset,
            insns,
            own_len,
        });
    }
    if programs.is_empty() {
        return Err(ObjectError::NoPrograms);
    }

    // Globals: the named data symbols of the global-data sections.
    let mut globals = Vec::new();
    for sym in syms.iter().flatten() {
        if sym.name.is_empty() || sym.kind != SymbolKind::Data {
            continue;
        }
        let Some(pos) = sym
            .section
            .and_then(|s| global_sections.iter().position(|g| *g == s))
        else {
            continue;
        };
        let map = btf_maps.len() + pos;
        let fits = sym
            .address
            .checked_add(sym.size)
            .is_some_and(|end| end <= maps[map].value_size as u64);
        if !fits {
            return Err(ObjectError::BadElf(format!(
                "global `{}` is outside its section",
                sym.name
            )));
        }
        globals.push(GlobalVar {
            name: sym.name.clone(),
            map,
            offset: sym.address as u32,
            size: sym.size as u32,
        });
    }
    globals.sort_by(|a, b| (a.map, a.offset, &a.name).cmp(&(b.map, b.offset, &b.name)));

    let license = obj
        .license
        .to_str()
        .map_err(|_| ObjectError::BadLicense("not UTF-8".to_owned()))?
        .to_owned();

    Ok(LoadPlan {
        name: object,
        license,
        programs,
        maps,
        globals,
    })
}

/// The linked program's map references name maps of the plan, inside their values, and its
/// BPF-to-BPF calls land inside it: whatever the object held that no relocation rewrote.
fn check_linked(name: &str, insns: &[u64], maps: &[MapSpec]) -> Result<(), ObjectError> {
    let fail = |i: usize, what: String| {
        Err(ObjectError::Relocation(format!(
            "program `{name}`, instruction {i}: {what}"
        )))
    };
    let mut i = 0;
    while i < insns.len() {
        let insn = Insn::decode(insns[i]);
        if insn.code == LD_IMM64 && matches!(insn.src, BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE) {
            let Some(map) = maps.get(insn.imm as u32 as usize) else {
                return fail(
                    i,
                    format!("loads map {}, and the object has {}", insn.imm, maps.len()),
                );
            };
            if insn.src == BPF_PSEUDO_MAP_VALUE {
                let off = insns.get(i + 1).map_or(-1, |w| Insn::decode(*w).imm as i64);
                if off < 0 || off as u64 > map.value_size as u64 {
                    return fail(
                        i,
                        format!(
                            "offset {off} in the {}-byte value of `{}`",
                            map.value_size, map.name
                        ),
                    );
                }
            }
        }
        if (insn.code == CALL && insn.src == BPF_PSEUDO_CALL)
            || (insn.code == LD_IMM64 && insn.src == BPF_PSEUDO_FUNC)
        {
            let to = i as i64 + 1 + insn.imm as i64;
            if to < 0 || to >= insns.len() as i64 {
                return fail(i, format!("calls instruction {to}, outside the program"));
            }
        }
        i += if insn.code == LD_IMM64 { 2 } else { 1 };
    }
    Ok(())
}

/// A 64-bit little-endian BPF relocatable object.
fn check_header(elf: &object::File<'_>, bytes: &[u8]) -> Result<(), ObjectError> {
    if elf.format() != object::BinaryFormat::Elf {
        return Err(ObjectError::NotBpf("not an ELF file".to_owned()));
    }
    if !elf.is_64() || !elf.is_little_endian() {
        return Err(ObjectError::NotBpf(
            "not a 64-bit little-endian ELF file".to_owned(),
        ));
    }
    let machine = bytes
        .get(18..20)
        .map_or(0, |m| u16::from_le_bytes([m[0], m[1]]));
    if machine != EM_BPF {
        return Err(ObjectError::NotBpf(format!(
            "ELF machine {machine}, not BPF ({EM_BPF})"
        )));
    }
    if elf.kind() != object::ObjectKind::Relocatable {
        return Err(ObjectError::NotBpf(
            "not a relocatable object (`clang -target bpf -c`)".to_owned(),
        ));
    }
    Ok(())
}

/// Checks the `.BTF` section as far as aya-obj relies on it: the header's ranges inside the
/// section, every type record whole and of a known kind, every name offset inside the string
/// table (aya-obj's `string_at` bound is the section's, not the table's), and the sizes
/// aya-obj's `type_size` computes for pointed-to types (map keys and values) within `u32`.
fn check_btf(data: &[u8]) -> Result<(), ObjectError> {
    let bad = |reason: &str| ObjectError::BadSection {
        section: ".BTF".to_owned(),
        reason: reason.to_owned(),
    };
    let word = |at: usize| -> Option<u32> {
        data.get(at..at.checked_add(4)?)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len, str_off, str_len
    let header = (|| Some([word(4)?, word(8)?, word(12)?, word(16)?, word(20)?]))()
        .ok_or_else(|| bad("truncated header"))?;
    let [hdr_len, type_off, type_len, str_off, str_len] = header.map(|v| v as u64);
    if data.get(..2) != Some(&0xeb9fu16.to_le_bytes()[..]) || hdr_len < 24 {
        return Err(bad("bad magic or header length"));
    }
    let (types_start, types_end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    let strings_end = hdr_len + str_off + str_len;
    if types_end > data.len() as u64
        || strings_end > data.len() as u64
        || strings_end > u32::MAX as u64
    {
        return Err(bad("type or string table outside the section"));
    }
    let types = &data[types_start as usize..types_end as usize];

    // (kind, size or type, array element, array length), id 0 being void
    let mut all: Vec<(u32, u32, u32, u32)> = alloc::vec![(0, 0, 0, 0)];
    let name_ok = |off: u32| (off as u64) < str_len || off == 0;
    let mut at = 0usize;
    while at < types.len() {
        let field = |i: usize| -> Option<u32> {
            let p = at.checked_add(i * 4)?;
            types
                .get(p..p + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (name, info, size_type) = match (field(0), field(1), field(2)) {
            (Some(n), Some(i), Some(t)) => (n, i, t),
            _ => return Err(bad("truncated type")),
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        // record length after the 12-byte common part, and the stride and presence of names
        let (extra, stride, named) = match kind {
            1 | 14 | 17 => (4, 0, false),          // INT, VAR, DECL_TAG
            2 | 7..=12 | 16 | 18 => (0, 0, false), // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            3 => (12, 0, false),                   // ARRAY
            4 | 5 => (vlen * 12, 12, true),        // STRUCT, UNION: members
            6 | 13 => (vlen * 8, 8, true),         // ENUM, FUNC_PROTO: values, parameters
            15 => (vlen * 12, 12, false),          // DATASEC
            19 => (vlen * 12, 12, true),           // ENUM64
            _ => return Err(bad("type of an unknown kind")),
        };
        if !name_ok(name) {
            return Err(bad("type name outside the string table"));
        }
        let end = at + 12 + extra;
        if end > types.len() {
            return Err(bad("truncated type"));
        }
        if named {
            for i in 0..vlen {
                let off = field(3 + i * stride / 4).ok_or_else(|| bad("truncated type"))?;
                if !name_ok(off) {
                    return Err(bad("member name outside the string table"));
                }
            }
        }
        let (elem, len) = if kind == 3 {
            (field(3).unwrap_or(0), field(5).unwrap_or(0))
        } else {
            (0, 0)
        };
        all.push((kind, size_type, elem, len));
        at = end;
    }
    // aya-obj's type_size: through arrays (the last length seen) and modifiers to a sized
    // type, then size * length in u32.
    for &(kind, target, _, _) in &all {
        if kind != 2 {
            continue;
        }
        let (mut id, mut n) = (target, 1u64);
        for _ in 0..32 {
            let Some(&(k, size_type, elem, len)) = all.get(id as usize) else {
                break;
            };
            match k {
                3 => {
                    n = len as u64;
                    id = elem;
                }
                1 | 4 | 5 | 6 | 15 | 16 | 19 => {
                    if size_type as u64 * n > u32::MAX as u64 {
                        return Err(bad("a type larger than 4 GiB"));
                    }
                    break;
                }
                2 => break,
                8..=11 | 13 | 14 | 17 | 18 => id = size_type,
                _ => break,
            }
        }
    }
    Ok(())
}

/// Refuses CO-RE relocations: loongtrace has no kernel BTF to resolve them against, and
/// ignoring them would leave offsets of the compiler's headers in the code.
fn check_btf_ext(data: &[u8]) -> Result<(), ObjectError> {
    let word = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(hdr_len) = word(4) else {
        return Ok(());
    };
    // btf_ext_header: magic, version, flags, hdr_len, func_info off/len, line_info off/len,
    // then (hdr_len >= 32) core_relo_off, core_relo_len.
    if hdr_len >= 32 && word(28).is_some_and(|len| len > 4) {
        return Err(ObjectError::UnsupportedSection {
            section: ".BTF.ext".to_owned(),
            reason: "CO-RE relocations (BPF_CORE_READ, preserve_access_index): loongtrace has no kernel BTF"
                .to_owned(),
        });
    }
    Ok(())
}

/// One relocation of a code section: what aya-obj will do with it must be sound and must not
/// panic. Mirrors libbpf's `bpf_program__record_reloc`.
fn check_relocation(
    (sec_index, sec, data, offset): (usize, &Sec, &[u8], u64),
    rel: &object::Relocation,
    secs: &[Option<Sec>],
    syms: &[Option<Sym>],
    map_symbols: &[usize],
    global_sections: &[usize],
) -> Result<(), ObjectError> {
    let fail = |reason: String| ObjectError::UnsupportedRelocation {
        section: sec.name.clone(),
        offset,
        reason,
    };
    let r_type = match rel.flags() {
        RelocationFlags::Elf { r_type } => r_type,
        _ => return Err(fail("not an ELF relocation".to_owned())),
    };
    let insn_at = |off: u64| -> Option<Insn> {
        let at = usize::try_from(off).ok()?;
        let bytes = data.get(at..at.checked_add(8)?)?;
        Some(Insn::decode(u64::from_le_bytes(bytes.try_into().ok()?)))
    };
    if offset % 8 != 0 {
        return Err(fail("not on an instruction boundary".to_owned()));
    }
    let Some(insn) = insn_at(offset) else {
        return Err(fail("past the end of the section".to_owned()));
    };
    let RelocationTarget::Symbol(sym_index) = rel.target() else {
        return Err(fail("not against a symbol".to_owned()));
    };
    let Some(sym) = syms.get(sym_index.0).and_then(|s| s.as_ref()) else {
        return Err(fail(format!(
            "against symbol #{} that does not exist",
            sym_index.0
        )));
    };
    let Some(target_index) = sym.section else {
        return Err(fail(if sym.undefined {
            format!(
                "extern `{}`: kfuncs, __ksym and .kconfig externs are not supported",
                sym.name
            )
        } else {
            format!("against `{}`, which is in no section", sym.name)
        }));
    };
    let Some(target) = secs.get(target_index).and_then(|s| s.as_ref()) else {
        return Err(fail(format!(
            "against `{}` in section #{target_index}",
            sym.name
        )));
    };
    // Where in a code section a call or function reference lands; None if outside.
    let code_target = |imm: i64, call: bool| -> Option<u64> {
        let address = match sym.kind {
            SymbolKind::Text => sym.address as i128,
            SymbolKind::Section if call => sym.address as i128 + (imm as i128 + 1) * 8,
            SymbolKind::Section => sym.address as i128 + imm as i128,
            _ => return None,
        };
        (address >= 0 && address < target.size as i128 && address % 8 == 0)
            .then_some(address as u64)
    };
    match r_type {
        R_BPF_64_32 => {
            if insn.code != CALL || insn.src != BPF_PSEUDO_CALL || insn.dst != 0 || insn.off != 0 {
                return Err(fail(
                    "R_BPF_64_32 on an instruction that is not a BPF-to-BPF call".to_owned(),
                ));
            }
            if target.class != SecClass::Text {
                return Err(fail(format!(
                    "call into `{}`: BPF-to-BPF calls go to functions of .text (static, not programs)",
                    target.name
                )));
            }
            if code_target(insn.imm as i64, true).is_none() {
                return Err(fail(format!("call to `{}` outside its section", sym.name)));
            }
        }
        R_BPF_64_64 => {
            let second = insn_at(offset + 8);
            if insn.code != LD_IMM64 || second.is_none_or(|s| s.code != 0) {
                return Err(fail(
                    "R_BPF_64_64 on an instruction that is not ld_imm64".to_owned(),
                ));
            }
            // aya-obj patches both halves inside one function: the pair must not straddle two.
            let straddles = syms.iter().flatten().any(|s| {
                s.section == Some(sec_index)
                    && s.kind == SymbolKind::Text
                    && s.address.checked_add(s.size) == Some(offset + 8)
            });
            if straddles {
                return Err(fail("ld_imm64 split between two functions".to_owned()));
            }
            match target.class {
                SecClass::Program => {
                    return Err(fail(format!(
                        "reference to `{}` in program section `{}`: function references go to .text",
                        sym.name, target.name
                    )));
                }
                SecClass::Text => {
                    if code_target(insn.imm as i64, false).is_none() {
                        return Err(fail(format!(
                            "reference to `{}` outside its section",
                            sym.name
                        )));
                    }
                }
                SecClass::BtfMaps => {
                    if !map_symbols.contains(&sym_index.0) {
                        return Err(fail(format!(
                            "reference to `{}` in .maps, which is not a map",
                            sym.name
                        )));
                    }
                }
                SecClass::Global => {
                    if !global_sections.contains(&target_index) {
                        return Err(fail(format!(
                            "reference into the empty section `{}`",
                            target.name
                        )));
                    }
                    let at = insn.imm as i64 + sym.address as i64;
                    if sym.address > target.size || at < 0 || at as u64 > target.size {
                        return Err(fail(format!(
                            "reference to `{}`{:+} outside `{}`",
                            sym.name, insn.imm, target.name
                        )));
                    }
                }
                _ => {
                    return Err(ObjectError::UnknownSection {
                        section: target.name.clone(),
                        reason: format!(
                            "code at `{}`+{offset:#x} refers to `{}` in it, and it is neither code, .maps nor global data",
                            sec.name, sym.name
                        ),
                    });
                }
            }
        }
        other => return Err(fail(format!("relocation type {other} in code"))),
    }
    Ok(())
}

fn parse_error(e: aya_obj::ParseError) -> ObjectError {
    match &e {
        aya_obj::ParseError::BtfError(inner) => ObjectError::Parse(format!("BTF: {inner}")),
        aya_obj::ParseError::MissingLicenseNullTerminator { .. }
        | aya_obj::ParseError::InvalidLicense { .. } => ObjectError::BadLicense(e.to_string()),
        _ => ObjectError::Parse(e.to_string()),
    }
}

fn read<const N: usize>(bytes: &[u8], at: u64) -> Option<[u8; N]> {
    let at = usize::try_from(at).ok()?;
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A copy of the object in which the sections `renames` names show other names: the section
/// name table is copied to the end of the file with the new names after it, and its header
/// and those sections' `sh_name` point there. Symbols' names (in the same table, often) are
/// unchanged.
fn rename_sections(bytes: &[u8], renames: &[(usize, &str)]) -> Result<Vec<u8>, ObjectError> {
    let malformed = || ObjectError::BadElf("malformed section header table".to_owned());
    let shoff = u64::from_le_bytes(read(bytes, 0x28).ok_or_else(malformed)?);
    let shentsize = u16::from_le_bytes(read(bytes, 0x3a).ok_or_else(malformed)?) as u64;
    let shstrndx = u16::from_le_bytes(read(bytes, 0x3e).ok_or_else(malformed)?) as u64;
    if shentsize != 64 || shstrndx >= 0xff00 {
        return Err(malformed());
    }
    let header = |i: u64| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx).ok_or_else(malformed)?;
    let str_off = u64::from_le_bytes(read(bytes, strtab + 24).ok_or_else(malformed)?);
    let str_size = u64::from_le_bytes(read(bytes, strtab + 32).ok_or_else(malformed)?);
    let old = usize::try_from(str_off)
        .ok()
        .zip(usize::try_from(str_size).ok())
        .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?))
        .ok_or_else(malformed)?;

    let mut out = bytes.to_vec();
    out.resize(out.len().next_multiple_of(8), 0);
    let new_off = out.len();
    out.extend_from_slice(old);
    for (index, name) in renames {
        let name_off = u32::try_from(out.len() - new_off).map_err(|_| malformed())?;
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        let at = header(*index as u64)
            .and_then(|h| usize::try_from(h).ok())
            .ok_or_else(malformed)?;
        out.get_mut(at..at + 4)
            .ok_or_else(malformed)?
            .copy_from_slice(&name_off.to_le_bytes());
    }
    let new_size = (out.len() - new_off) as u64;
    let at = usize::try_from(strtab).map_err(|_| malformed())?;
    out.get_mut(at + 24..at + 32)
        .ok_or_else(malformed)?
        .copy_from_slice(&(new_off as u64).to_le_bytes());
    out.get_mut(at + 32..at + 40)
        .ok_or_else(malformed)?
        .copy_from_slice(&new_size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_as_libbpf() {
        assert_eq!(object_name("fentry_test.bpf.o"), "fentry_test");
        assert_eq!(object_name("/some/dir/maps.o"), "maps");
        assert_eq!(object_name("plain"), "plain");
    }

    #[test]
    fn global_map_names_as_libbpf() {
        assert_eq!(global_map_name("fentry_test", ".bss"), "fentry_t.bss");
        assert_eq!(global_map_name("fentry_test", ".data"), "fentry_t.data");
        assert_eq!(global_map_name("fentry_test", ".rodata"), "fentry_t.rodata");
        assert_eq!(global_map_name("x", ".bss"), "x.bss");
        // a second dot: the section's own name, cut to 15 characters
        assert_eq!(
            global_map_name("fentry_test", ".data.counters"),
            ".data.counters"
        );
        assert_eq!(global_map_name("o", ".rodata.str1.1"), ".rodata.str1.1");
        assert_eq!(
            global_map_name("o", ".data.a_very_long_name"),
            ".data.a_very_lo"
        );
        assert_eq!(global_map_name("a-b", ".bss"), "a_b.bss");
    }

    #[test]
    fn section_names() {
        let p = |s| parse_section_name(s).unwrap();
        assert_eq!(p("fentry/f"), (ProgKind::Fentry, Some("f".into()), 0));
        assert_eq!(p("fexit/f"), (ProgKind::Fexit, Some("f".into()), 0));
        assert_eq!(p("fmod_ret/f"), (ProgKind::FmodRet, Some("f".into()), 0));
        assert_eq!(p("kprobe/f+0x10"), (ProgKind::Kprobe, Some("f".into()), 16));
        assert_eq!(p("kprobe/f+12"), (ProgKind::Kprobe, Some("f".into()), 12));
        assert_eq!(p("kretprobe/f"), (ProgKind::Kretprobe, Some("f".into()), 0));
        assert_eq!(p("kprobe"), (ProgKind::Kprobe, None, 0));
        assert_eq!(p("xdp"), (ProgKind::Other, None, 0));
        assert_eq!(p("fentry.s/f"), (ProgKind::Other, None, 0));
        for bad in ["kretprobe/f+8", "kprobe/f+zz", "fentry/f/g", "kprobe/+8"] {
            assert!(
                matches!(parse_section_name(bad), Err(ObjectError::BadSection { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn insn_words_round_trip() {
        let i = Insn {
            code: LD_IMM64,
            dst: 1,
            src: BPF_PSEUDO_MAP_VALUE,
            off: -3,
            imm: -7,
        };
        assert_eq!(Insn::decode(i.encode()), i);
        // Linux's byte layout: code, dst | src << 4, off (LE), imm (LE)
        assert_eq!(
            i.encode().to_le_bytes(),
            [0x18, 0x21, 0xfd, 0xff, 0xf9, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn not_elf() {
        assert!(matches!(
            LoadPlan::parse("x.o", b""),
            Err(ObjectError::BadElf(_))
        ));
        assert!(matches!(
            LoadPlan::parse("x.o", b"\x7fELF"),
            Err(ObjectError::BadElf(_))
        ));
        assert!(matches!(
            LoadPlan::parse("x.o", &[0u8; 200]),
            Err(ObjectError::BadElf(_))
        ));
    }
}
