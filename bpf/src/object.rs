//! BPF objects as clang writes them (`clang -O2 -g -target bpf -c`, libbpf-style C), turned into
//! loongtrace's *load plan*: the programs with their attach kind and target and their
//! instructions, relocated and linked; the maps (BTF-defined ones and the global-data sections);
//! the global variables; the license. Nothing is created here: the plan is what a loader needs
//! to create the maps (their indices are the numbers the instructions use), verify the programs
//! and attach them. See docs/bpf-objects.md.
//!
//! The ELF file is read with the `object` crate (its `no_std` ELF reader); the rest is done
//! here, after libbpf (`tools/lib/bpf/libbpf.c`), in the parts a libbpf-style object needs:
//! - programs: the functions of the program sections, in section then offset order, named by
//!   their symbols, with attach kind and target from the section name;
//! - BTF-defined maps (`SEC(".maps")`) and global variables read from the object's BTF with the
//!   small reader of [`crate::btf`]; global-data sections as one-element array maps, named as
//!   libbpf names them;
//! - relocations (`R_BPF_64_64` on `ld_imm64` of a map, a global or a function, `R_BPF_64_32` on
//!   BPF-to-BPF calls) resolved as libbpf's `bpf_program__record_reloc` does, and each program
//!   linked with the `.text` functions it calls as `bpf_object__reloc_code` does;
//! - refusals of what cannot be honoured: CO-RE relocations (there is no kernel BTF), externs
//!   (kfuncs, `__ksym`, `.kconfig`), legacy `maps` sections, map types the runtime lacks.
//!
//! Every offset, index and size read from the file is checked before use, so that a malformed
//! object is an [`ObjectError`] and never a panic (a panic is fatal in the kernel). The
//! `object` crate is built without `std`, with its `unaligned` feature, so the object may sit
//! anywhere in memory.
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
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use object::LittleEndian;
use object::elf;
use object::read::elf::{FileHeader as _, Rel as _, SectionHeader as _, Sym as _};

use crate::btf;

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
    /// A BTF-defined map whose definition cannot be read (an unknown field, a key type without a
    /// size, no map type, ...).
    BadMap { name: String, reason: String },
    /// No `license` section (`char LICENSE[] SEC("license") = "GPL";`).
    NoLicense,
    /// A `license` section that is not one NUL-terminated UTF-8 string.
    BadLicense(String),
    /// No program in the object.
    NoPrograms,
    /// A program cannot be linked (a call to no function, a program too large, ...).
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
            ObjectError::BadMap { name, reason } => write!(f, "map `{name}`: {reason}"),
            ObjectError::NoPrograms => write!(f, "no program in the object"),
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

/// Most instructions of one linked program (its own code and the BPF functions it calls):
/// Linux's limit for a privileged program.
pub const MAX_PROG_INSNS: usize = 1_000_000;
/// Most instructions of all the plan's linked programs together. Each program gets its own copy
/// of the functions it calls, so without a limit a small object could ask for a lot of memory.
pub const MAX_PLAN_INSNS: usize = 4_000_000;

type Header = elf::FileHeader64<LittleEndian>;
const LE: LittleEndian = LittleEndian;

/// What a section is to the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecClass {
    /// Code of programs (an executable section other than `.text`).
    Program,
    /// `.text`: BPF functions the programs call.
    Text,
    /// `.data`, `.rodata`, `.bss` and `.data.NAME`, ...: global data.
    Global,
    /// `.maps`: BTF-defined maps.
    BtfMaps,
    /// Anything else (license, BTF, debug info, symbol and relocation tables...).
    Other,
}

/// What the loader knows of one ELF section.
struct Sec<'a> {
    name: String,
    class: SecClass,
    size: u64,
    /// The bytes (empty for `SHT_NOBITS`).
    data: &'a [u8],
    /// A `.rodata*` section.
    rodata: bool,
    /// The instructions, for code sections.
    code: Vec<u64>,
}

/// What the loader knows of one ELF symbol.
struct Sym {
    name: String,
    /// `STT_*`
    kind: u8,
    /// `STB_*`
    bind: u8,
    /// Its section, `SHN_UNDEF` for externs, `SHN_ABS`, `SHN_COMMON`...
    shndx: u16,
    value: u64,
    size: u64,
}

impl Sym {
    /// libbpf's `find_elf_var_sym`: a global (or weak) data symbol.
    fn is_global_object(&self) -> bool {
        self.kind == elf::STT_OBJECT && (self.bind == elf::STB_GLOBAL || self.bind == elf::STB_WEAK)
    }
}

/// A function of a code section: a program, or a BPF function of `.text`.
struct Func {
    name: String,
    sec: usize,
    /// Its first instruction's index in the section.
    start: usize,
    len: usize,
}

/// A relocation of a code instruction, resolved (libbpf's `bpf_program__record_reloc`).
#[derive(Clone, Copy, Debug)]
enum Reloc {
    /// `ld_imm64` of a BTF-defined map (its index in the plan).
    Map(usize),
    /// `ld_imm64` of the address of byte `off` of global-data map `map`'s value.
    Data { map: usize, off: u32 },
    /// `call` of the `.text` function whose first instruction is `target`.
    Call { target: usize },
    /// `ld_imm64` of the address of the `.text` function whose first instruction is `target`.
    Func { target: usize },
}

fn bad_elf(e: impl fmt::Display) -> ObjectError {
    ObjectError::BadElf(e.to_string())
}

fn btf_error(e: btf::BtfError) -> ObjectError {
    ObjectError::BadSection {
        section: ".BTF".to_owned(),
        reason: e.0,
    }
}

/// `.data` is `.data` or `.data.NAME` (libbpf's test), and so on.
fn is_data_section(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

fn parse(file_name: &str, bytes: &[u8]) -> Result<LoadPlan, ObjectError> {
    let header = check_header(bytes)?;
    let table = header.sections(LE, bytes).map_err(bad_elf)?;

    // Sections, classified as libbpf's `bpf_object__elf_collect` does.
    let mut secs: Vec<Sec> = Vec::with_capacity(table.len());
    let mut license = None;
    let mut btf_data = None;
    let mut symtabs = 0;
    let mut rel_sections = Vec::new();
    for (index, sh) in table.enumerate() {
        let raw_name = table.section_name(LE, sh).map_err(bad_elf)?;
        let name = String::from_utf8_lossy(raw_name).into_owned();
        let sh_type = sh.sh_type(LE);
        let size = sh.sh_size(LE);
        let data = sh
            .data(LE, bytes)
            .map_err(|e| ObjectError::BadElf(format!("section `{name}`: {e}")))?;
        let exec = sh_type == elf::SHT_PROGBITS
            && sh.sh_flags(LE) & elf::SHF_EXECINSTR as u64 != 0
            && size > 0;
        let bad = |reason: String| ObjectError::BadSection {
            section: name.clone(),
            reason,
        };
        let mut class = SecClass::Other;
        match name.as_str() {
            "license" => license = Some(data),
            "version" => {}
            ".maps" => class = SecClass::BtfMaps,
            ".BTF" => btf_data = Some(data),
            ".BTF.ext" => check_btf_ext(data)?,
            _ if !exec && name.starts_with("maps") => {
                return Err(ObjectError::UnsupportedSection {
                    section: name,
                    reason: "legacy `struct bpf_map_def` maps: declare BTF-defined maps in SEC(\".maps\")"
                        .to_owned(),
                });
            }
            _ if sh_type == elf::SHT_SYMTAB => symtabs += 1,
            _ if exec => {
                class = if name == ".text" {
                    if secs.iter().any(|s| s.class == SecClass::Text) {
                        return Err(ObjectError::UnsupportedSection {
                            section: name,
                            reason: "a second .text section".to_owned(),
                        });
                    }
                    SecClass::Text
                } else if name.starts_with(".text") {
                    return Err(ObjectError::UnsupportedSection {
                        section: name,
                        reason: "BPF functions in a section other than .text (-ffunction-sections): keep them in .text"
                            .to_owned(),
                    });
                } else {
                    let reserved = ["maps", ".maps", ".bss", ".data", ".rodata", ".BTF"];
                    if let Some(r) = reserved.iter().find(|r| name.starts_with(*r)) {
                        return Err(ObjectError::UnknownSection {
                            section: name,
                            reason: format!("code in a section named like `{r}`"),
                        });
                    }
                    parse_section_name(&name)?;
                    SecClass::Program
                };
                if sh.sh_addr(LE) != 0 {
                    return Err(bad(format!(
                        "code section at address {:#x}, not 0",
                        sh.sh_addr(LE)
                    )));
                }
                if size % 8 != 0 {
                    return Err(bad(format!("{size} bytes of code, not whole instructions")));
                }
            }
            _ if (sh_type == elf::SHT_PROGBITS
                && size > 0
                && (is_data_section(&name, ".data") || is_data_section(&name, ".rodata")))
                || (sh_type == elf::SHT_NOBITS && is_data_section(&name, ".bss")) =>
            {
                if size > MAX_GLOBAL_SECTION {
                    return Err(bad(format!(
                        "{size} bytes of global data (at most {MAX_GLOBAL_SECTION})"
                    )));
                }
                class = SecClass::Global;
            }
            _ if sh_type == elf::SHT_REL || sh_type == elf::SHT_RELA => {
                rel_sections.push((index.0, sh));
            }
            _ => {}
        }
        let code = if class == SecClass::Program || class == SecClass::Text {
            data.chunks_exact(8)
                .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
                .collect()
        } else {
            Vec::new()
        };
        let rodata = is_data_section(&name, ".rodata");
        secs.push(Sec {
            name,
            class,
            size,
            data,
            rodata,
            code,
        });
    }
    let license = match license {
        None => return Err(ObjectError::NoLicense),
        Some(data) => {
            let end = data
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| ObjectError::BadLicense("not NUL-terminated".to_owned()))?;
            core::str::from_utf8(&data[..end])
                .map_err(|_| ObjectError::BadLicense("not UTF-8".to_owned()))?
                .to_owned()
        }
    };
    let btf = btf_data
        .map(btf::Btf::parse)
        .transpose()
        .map_err(btf_error)?;

    // Symbols.
    if symtabs != 1 {
        return Err(ObjectError::BadElf(if symtabs == 0 {
            "no symbol table (a stripped object?)".to_owned()
        } else {
            "several symbol tables".to_owned()
        }));
    }
    let symtab = table.symbols(LE, bytes, elf::SHT_SYMTAB).map_err(bad_elf)?;
    let mut syms = Vec::with_capacity(symtab.len());
    for sym in symtab.iter() {
        let name = symtab.symbol_name(LE, sym).map_err(bad_elf)?;
        syms.push(Sym {
            name: String::from_utf8_lossy(name).into_owned(),
            kind: sym.st_type(),
            bind: sym.st_bind(),
            shndx: sym.st_shndx(LE),
            value: sym.st_value(LE),
            size: sym.st_size(LE),
        });
    }

    // Functions: programs in program sections (libbpf's `bpf_object__add_programs`), BPF
    // functions in `.text`. Each whole instructions inside its section, none overlapping.
    let mut funcs: Vec<Func> = Vec::new();
    for sym in &syms {
        let sec_index = sym.shndx as usize;
        let Some(sec) = secs
            .get(sec_index)
            .filter(|s| matches!(s.class, SecClass::Program | SecClass::Text))
        else {
            continue;
        };
        if sym.kind != elf::STT_FUNC {
            continue;
        }
        let name = &sym.name;
        if !sym
            .value
            .checked_add(sym.size)
            .is_some_and(|end| end <= sec.size)
        {
            return Err(ObjectError::BadElf(format!(
                "symbol `{name}` ({:#x}+{:#x}) is outside its section `{}` ({:#x} bytes)",
                sym.value, sym.size, sec.name, sec.size
            )));
        }
        if sym.value % 8 != 0 || sym.size % 8 != 0 || sym.size == 0 {
            return Err(ObjectError::BadElf(format!(
                "function `{name}` is not made of whole instructions"
            )));
        }
        if sec.class == SecClass::Program && sym.bind == elf::STB_LOCAL {
            return Err(ObjectError::UnsupportedSection {
                section: sec.name.clone(),
                reason: format!(
                    "static function `{name}`: programs are global functions (the functions they call go to .text)"
                ),
            });
        }
        funcs.push(Func {
            name: name.clone(),
            sec: sec_index,
            start: (sym.value / 8) as usize,
            len: (sym.size / 8) as usize,
        });
    }
    funcs.sort_by_key(|f| (f.sec, f.start));
    for pair in funcs.windows(2) {
        if pair[0].sec == pair[1].sec && pair[0].start + pair[0].len > pair[1].start {
            return Err(ObjectError::BadElf(format!(
                "functions `{}` and `{}` overlap in `{}`",
                pair[0].name, pair[1].name, secs[pair[0].sec].name
            )));
        }
    }
    let text = secs.iter().position(|s| s.class == SecClass::Text);
    // `.text` functions by their first instruction.
    let text_funcs: BTreeMap<usize, usize> = funcs
        .iter()
        .enumerate()
        .filter(|(_, f)| Some(f.sec) == text)
        .map(|(i, f)| (f.start, i))
        .collect();

    // The maps, in libbpf's order: BTF maps by their place in `.maps`, then global data by
    // section.
    let object = object_name(file_name);
    let mut maps: Vec<MapSpec> = Vec::new();
    let mut btf_map_offsets: Vec<u64> = Vec::new();
    if let Some(maps_sec) = secs.iter().position(|s| s.class == SecClass::BtfMaps) {
        for (offset, map) in btf_maps(btf.as_ref(), maps_sec, &secs, &syms)? {
            btf_map_offsets.push(offset);
            maps.push(map);
        }
    }
    let mut global_map: Vec<Option<usize>> = alloc::vec![None; secs.len()];
    for (index, sec) in secs.iter().enumerate() {
        if sec.class != SecClass::Global || sec.size == 0 {
            continue;
        }
        global_map[index] = Some(maps.len());
        // The size is bounded by MAX_GLOBAL_SECTION; `.bss` has no bytes in the file.
        let initial = if sec.data.is_empty() {
            alloc::vec![0; sec.size as usize]
        } else {
            sec.data.to_vec()
        };
        maps.push(MapSpec {
            name: global_map_name(&object, &sec.name),
            map_type: map_type::ARRAY,
            key_size: 4,
            value_size: sec.size as u32,
            max_entries: 1,
            flags: BPF_F_MMAPABLE | if sec.rodata { BPF_F_RDONLY_PROG } else { 0 },
            origin: MapOrigin::Global {
                section: sec.name.clone(),
            },
            initial,
        });
    }

    // Relocations of the code sections, resolved and checked.
    let mut relocs: Vec<BTreeMap<usize, Reloc>> =
        (0..secs.len()).map(|_| BTreeMap::new()).collect();
    for (rel_index, sh) in rel_sections {
        let target = sh.sh_info(LE) as usize;
        let Some(code_sec) = secs.get(target) else {
            return Err(ObjectError::BadElf(format!(
                "relocation section `{}` for section #{target}, which does not exist",
                secs[rel_index].name
            )));
        };
        if !matches!(code_sec.class, SecClass::Program | SecClass::Text) {
            continue; // .rel.BTF, .rel.debug_*: nothing the loader uses
        }
        if sh.sh_type(LE) == elf::SHT_RELA {
            return Err(ObjectError::UnsupportedRelocation {
                section: code_sec.name.clone(),
                offset: 0,
                reason: "RELA relocations (clang writes REL for BPF)".to_owned(),
            });
        }
        if sh.sh_entsize(LE) != 16 {
            return Err(ObjectError::BadElf(format!(
                "relocation section `{}` has entries of {} bytes, not 16",
                secs[rel_index].name,
                sh.sh_entsize(LE)
            )));
        }
        let Some((entries, _)) = sh.rel(LE, bytes).map_err(bad_elf)? else {
            continue;
        };
        for rel in entries {
            let offset = rel.r_offset(LE);
            let resolved = resolve_reloc(
                (target, offset, rel.r_type(LE), rel.r_sym(LE) as usize),
                &secs,
                &syms,
                &btf_map_offsets,
                &global_map,
                &text_funcs,
            )?;
            if relocs[target]
                .insert((offset / 8) as usize, resolved)
                .is_some()
            {
                return Err(ObjectError::UnsupportedRelocation {
                    section: secs[target].name.clone(),
                    offset,
                    reason: "two relocations of one instruction".to_owned(),
                });
            }
        }
    }

    // Programs in libbpf's order (section, then offset), each linked with the functions it
    // calls.
    let mut programs = Vec::new();
    let mut total = 0usize;
    for (index, f) in funcs.iter().enumerate() {
        let sec = &secs[f.sec];
        if sec.class != SecClass::Program {
            continue;
        }
        let (kind, target, offset) = parse_section_name(&sec.name)?;
        let insns = link(index, &funcs, &secs, &relocs, text, &text_funcs)?;
        check_linked(&f.name, &insns, &maps)?;
        total += insns.len();
        if total > MAX_PLAN_INSNS {
            return Err(ObjectError::Relocation(format!(
                "the linked programs are more than {MAX_PLAN_INSNS} instructions together"
            )));
        }
        programs.push(ProgSpec {
            name: f.name.clone(),
            section: sec.name.clone(),
            kind,
            target,
            offset,
            insns,
            own_len: f.len,
        });
    }
    if programs.is_empty() {
        return Err(ObjectError::NoPrograms);
    }

    let globals = match &btf {
        Some(btf) => global_vars(btf, &secs, &syms, &global_map, &maps)?,
        None => Vec::new(),
    };

    Ok(LoadPlan {
        name: object,
        license,
        programs,
        maps,
        globals,
    })
}

/// A 64-bit little-endian BPF relocatable object's header.
fn check_header(bytes: &[u8]) -> Result<&Header, ObjectError> {
    if bytes.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(ObjectError::BadElf("not an ELF file".to_owned()));
    }
    if bytes.len() < 64 {
        return Err(ObjectError::BadElf("truncated ELF header".to_owned()));
    }
    if bytes[4] != elf::ELFCLASS64 || bytes[5] != elf::ELFDATA2LSB {
        return Err(ObjectError::NotBpf(
            "not a 64-bit little-endian ELF file".to_owned(),
        ));
    }
    let header = Header::parse(bytes).map_err(bad_elf)?;
    let machine = header.e_machine(LE);
    if machine != elf::EM_BPF {
        return Err(ObjectError::NotBpf(format!(
            "ELF machine {machine}, not BPF ({})",
            elf::EM_BPF
        )));
    }
    if header.e_type(LE) != elf::ET_REL {
        return Err(ObjectError::NotBpf(
            "not a relocatable object (`clang -target bpf -c`)".to_owned(),
        ));
    }
    Ok(header)
}

/// The BTF-defined maps of `.maps` (section `maps_sec`), with their offsets in it, in libbpf's
/// order (by offset). Mirrors libbpf's `bpf_object__init_user_btf_map` and `parse_btf_map_def`.
fn btf_maps(
    btf: Option<&btf::Btf<'_>>,
    maps_sec: usize,
    secs: &[Sec],
    syms: &[Sym],
) -> Result<Vec<(u64, MapSpec)>, ObjectError> {
    let sec = &secs[maps_sec];
    let Some(btf) = btf else {
        if sec.size == 0 {
            return Ok(Vec::new());
        }
        return Err(ObjectError::BadSection {
            section: ".maps".to_owned(),
            reason: "BTF-defined maps need the object's BTF (.BTF): build with clang -g".to_owned(),
        });
    };
    let Some(datasec) = btf.find_datasec(".maps") else {
        if sec.size == 0 {
            return Ok(Vec::new());
        }
        return Err(btf_error(btf::BtfError(
            "no DATASEC `.maps` describing the BTF-defined maps".into(),
        )));
    };
    let mut maps = Vec::new();
    for vsi in btf.datasec_vars(datasec).map_err(btf_error)? {
        let var = btf.var(vsi.type_id).map_err(btf_error)?;
        if var.name.is_empty() {
            return Err(ObjectError::BadSection {
                section: ".maps".to_owned(),
                reason: "a map without a name".to_owned(),
            });
        }
        let name = var.name;
        let bad = |reason: String| ObjectError::BadMap {
            name: name.to_owned(),
            reason,
        };
        let btf_bad = |e: btf::BtfError| bad(e.0);
        if var.linkage != btf::VAR_GLOBAL_ALLOCATED {
            return Err(bad(
                "not a global variable (static and extern maps are not supported)".to_owned(),
            ));
        }
        // libbpf's `btf_fixup_datasec`: the offset is the ELF symbol's (clang leaves 0 in BTF).
        let sym = syms
            .iter()
            .find(|s| s.shndx as usize == maps_sec && s.is_global_object() && s.name == name)
            .ok_or_else(|| bad("no ELF symbol in .maps".to_owned()))?;
        if !sym
            .value
            .checked_add(vsi.size as u64)
            .is_some_and(|end| end <= sec.size)
        {
            return Err(bad(format!(
                "{}+{} bytes outside .maps ({} bytes)",
                sym.value, vsi.size, sec.size
            )));
        }
        let (def_id, def) = btf.skip_mods_and_typedefs(var.type_id).map_err(btf_bad)?;
        if def.kind != btf::kind::STRUCT {
            return Err(bad(format!(
                "defined by a {}, not a struct",
                btf::kind::name(def.kind)
            )));
        }
        if def.size_or_type > vsi.size {
            return Err(bad(format!(
                "its struct is {} bytes, its variable {}",
                def.size_or_type, vsi.size
            )));
        }
        // `__uint(name, N)` is `int (*name)[N]`: a pointer to an array of N elements.
        let int_field = |m: &btf::Member| -> Result<u32, ObjectError> {
            let (_, t) = btf.skip_mods_and_typedefs(m.type_id).map_err(btf_bad)?;
            if t.kind != btf::kind::PTR {
                return Err(bad(format!(
                    "`{}` is a {}, not __uint's pointer to an array",
                    m.name,
                    btf::kind::name(t.kind)
                )));
            }
            let array = btf
                .array(t.size_or_type)
                .map_err(|e| bad(format!("`{}`: {}", m.name, e.0)))?;
            Ok(array.nelems)
        };
        // `__type(name, T)` is `T *name`: the size of T.
        let type_field = |m: &btf::Member| -> Result<u32, ObjectError> {
            let t = btf.type_by_id(m.type_id).map_err(btf_bad)?;
            if t.kind != btf::kind::PTR {
                return Err(bad(format!(
                    "`{}` is a {}, not __type's pointer",
                    m.name,
                    btf::kind::name(t.kind)
                )));
            }
            btf.resolve_size(t.size_or_type)
                .map_err(|e| bad(format!("the size of `{}`: {}", m.name, e.0)))
        };
        let mut spec = MapSpec {
            name: name.to_owned(),
            map_type: 0,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            flags: 0,
            origin: MapOrigin::Btf,
            initial: Vec::new(),
        };
        let (mut key_set, mut value_set) = (false, false);
        for m in btf.members(def_id).map_err(btf_bad)? {
            let size_field = |size: u32, set: &mut bool, current: &mut u32, what: &str| {
                if *set && *current != size {
                    return Err(bad(format!(
                        "conflicting {what} size {} != {size}",
                        *current
                    )));
                }
                (*set, *current) = (true, size);
                Ok(())
            };
            match m.name {
                "type" => spec.map_type = int_field(&m)?,
                "max_entries" => spec.max_entries = int_field(&m)?,
                "map_flags" => spec.flags = int_field(&m)?,
                "numa_node" | "map_extra" => {
                    int_field(&m)?;
                }
                "pinning" => {
                    let v = int_field(&m)?;
                    if v > 1 {
                        return Err(bad(format!("invalid pinning value {v}")));
                    }
                }
                "key_size" => size_field(int_field(&m)?, &mut key_set, &mut spec.key_size, "key")?,
                "key" => size_field(type_field(&m)?, &mut key_set, &mut spec.key_size, "key")?,
                "value_size" => size_field(
                    int_field(&m)?,
                    &mut value_set,
                    &mut spec.value_size,
                    "value",
                )?,
                "value" => size_field(
                    type_field(&m)?,
                    &mut value_set,
                    &mut spec.value_size,
                    "value",
                )?,
                "values" => {
                    return Err(bad(
                        "map-in-map and program arrays (`values`) are not supported".to_owned(),
                    ));
                }
                other => return Err(bad(format!("unknown field `{other}`"))),
            }
        }
        if spec.map_type == 0 {
            return Err(bad("no map type (`__uint(type, ...)`)".to_owned()));
        }
        if !matches!(
            spec.map_type,
            map_type::HASH | map_type::ARRAY | map_type::PERCPU_ARRAY | map_type::RINGBUF
        ) {
            return Err(ObjectError::UnsupportedMap {
                name: spec.name,
                map_type: spec.map_type,
            });
        }
        maps.push((sym.value, spec));
    }
    maps.sort_by_key(|m| m.0);
    Ok(maps)
}

/// The variables of the global-data sections that became maps: their `DATASEC`s' `VAR`s, at
/// the offsets libbpf's `btf_fixup_datasec` gives them (a global's ELF symbol's; a static's as
/// BTF has it, which clang fills in).
fn global_vars(
    btf: &btf::Btf<'_>,
    secs: &[Sec],
    syms: &[Sym],
    global_map: &[Option<usize>],
    maps: &[MapSpec],
) -> Result<Vec<GlobalVar>, ObjectError> {
    let mut globals = Vec::new();
    for (index, sec) in secs.iter().enumerate() {
        let (Some(map), Some(datasec)) = (global_map[index], btf.find_datasec(&sec.name)) else {
            continue;
        };
        for vsi in btf.datasec_vars(datasec).map_err(btf_error)? {
            let var = btf.var(vsi.type_id).map_err(btf_error)?;
            let bad = |reason: String| {
                btf_error(btf::BtfError(format!(
                    "variable `{}` of `{}`: {reason}",
                    var.name, sec.name
                )))
            };
            let offset = if var.linkage == btf::VAR_GLOBAL_ALLOCATED {
                syms.iter()
                    .find(|s| {
                        s.shndx as usize == index && s.is_global_object() && s.name == var.name
                    })
                    .ok_or_else(|| bad("no ELF symbol".to_owned()))?
                    .value
            } else {
                vsi.offset as u64
            };
            let fits = offset
                .checked_add(vsi.size as u64)
                .is_some_and(|end| end <= maps[map].value_size as u64);
            if !fits {
                return Err(bad(format!(
                    "{offset}+{} bytes outside the section ({} bytes)",
                    vsi.size, maps[map].value_size
                )));
            }
            globals.push(GlobalVar {
                name: var.name.to_owned(),
                map,
                offset: offset as u32,
                size: vsi.size,
            });
        }
    }
    globals.sort_by(|a, b| (a.map, a.offset, &a.name).cmp(&(b.map, b.offset, &b.name)));
    Ok(globals)
}

/// One relocation of a code section (`target`, at byte `offset`), resolved as libbpf's
/// `bpf_program__record_reloc` does, with every index and offset checked.
fn resolve_reloc(
    (target, offset, r_type, sym_index): (usize, u64, u32, usize),
    secs: &[Sec],
    syms: &[Sym],
    btf_map_offsets: &[u64],
    global_map: &[Option<usize>],
    text_funcs: &BTreeMap<usize, usize>,
) -> Result<Reloc, ObjectError> {
    let sec = &secs[target];
    let fail = |reason: String| ObjectError::UnsupportedRelocation {
        section: sec.name.clone(),
        offset,
        reason,
    };
    if offset % 8 != 0 {
        return Err(fail("not on an instruction boundary".to_owned()));
    }
    let index = (offset / 8) as usize;
    let Some(insn) = sec.code.get(index).map(|w| Insn::decode(*w)) else {
        return Err(fail("past the end of the section".to_owned()));
    };
    let Some(sym) = syms.get(sym_index) else {
        return Err(fail(format!(
            "against symbol #{sym_index} that does not exist"
        )));
    };
    // libbpf names a section symbol (a static's reference) by its section.
    let name = match secs.get(sym.shndx as usize) {
        Some(s) if sym.kind == elf::STT_SECTION && sym.name.is_empty() => &s.name,
        _ => &sym.name,
    };
    if sym.shndx == elf::SHN_UNDEF {
        return Err(fail(if name.is_empty() {
            "against no symbol".to_owned()
        } else {
            format!("extern `{name}`: kfuncs, __ksym and .kconfig externs are not supported")
        }));
    }
    if sym.shndx >= elf::SHN_LORESERVE {
        return Err(fail(format!(
            "against `{name}`, which is in no section (an uninitialised global? initialise it)"
        )));
    }
    let Some(target_sec) = secs.get(sym.shndx as usize) else {
        return Err(fail(format!(
            "against `{name}` in section #{}, which does not exist",
            sym.shndx
        )));
    };
    // A `.text` function starting at `byte` (a byte offset, maybe negative or unaligned).
    let text_function = |byte: i128, what: &str| -> Result<usize, ObjectError> {
        let start = usize::try_from(byte / 8).ok().filter(|_| byte % 8 == 0);
        match start {
            Some(start) if text_funcs.contains_key(&start) => Ok(start),
            _ => Err(fail(format!(
                "{what} `{name}`{:+}: not the start of a function of .text",
                byte - sym.value as i128
            ))),
        }
    };
    match r_type {
        elf::R_BPF_64_32 => {
            if insn.code != CALL || insn.src != BPF_PSEUDO_CALL || insn.dst != 0 || insn.off != 0 {
                return Err(fail(
                    "R_BPF_64_32 on an instruction that is not a BPF-to-BPF call".to_owned(),
                ));
            }
            if target_sec.class != SecClass::Text {
                return Err(fail(format!(
                    "call into `{}`: BPF-to-BPF calls go to functions of .text (static, not programs)",
                    target_sec.name
                )));
            }
            if sym.value % 8 != 0 {
                return Err(fail(format!("call to `{name}` inside an instruction")));
            }
            // libbpf: the callee is instruction `st_value / 8 + imm + 1` of .text.
            let byte = sym.value as i128 + (insn.imm as i128 + 1) * 8;
            Ok(Reloc::Call {
                target: text_function(byte, "call to")?,
            })
        }
        elf::R_BPF_64_64 => {
            let second = sec.code.get(index + 1).map(|w| Insn::decode(*w));
            if insn.code != LD_IMM64 || second.is_none_or(|s| s.code != 0) {
                return Err(fail(
                    "R_BPF_64_64 on an instruction that is not ld_imm64".to_owned(),
                ));
            }
            match target_sec.class {
                SecClass::Program => Err(fail(format!(
                    "reference to `{name}` in program section `{}`: function references go to .text",
                    target_sec.name
                ))),
                SecClass::Text => {
                    // libbpf: byte `st_value + imm` of .text.
                    let byte = sym.value as i128 + insn.imm as i128;
                    Ok(Reloc::Func {
                        target: text_function(byte, "reference to")?,
                    })
                }
                SecClass::BtfMaps => btf_map_offsets
                    .iter()
                    .position(|o| *o == sym.value)
                    .map(Reloc::Map)
                    .ok_or_else(|| {
                        fail(format!(
                            "reference to `{name}` in .maps, which is not a map"
                        ))
                    }),
                SecClass::Global => {
                    let Some(map) = global_map[sym.shndx as usize] else {
                        return Err(fail(format!(
                            "reference into the empty section `{}`",
                            target_sec.name
                        )));
                    };
                    // libbpf: the value offset is `imm + st_value`.
                    let off = insn.imm as i128 + sym.value as i128;
                    if off < 0 || off > target_sec.size as i128 {
                        return Err(fail(format!(
                            "reference to `{name}`{:+} outside `{}`",
                            insn.imm, target_sec.name
                        )));
                    }
                    Ok(Reloc::Data {
                        map,
                        off: off as u32,
                    })
                }
                SecClass::Other => Err(ObjectError::UnknownSection {
                    section: target_sec.name.clone(),
                    reason: format!(
                        "code at `{}`+{offset:#x} refers to `{name}` in it, and it is neither code, .maps nor global data",
                        sec.name
                    ),
                }),
            }
        }
        other => Err(fail(format!("relocation type {other} in code"))),
    }
}

/// Links program `prog` as libbpf's `bpf_object__reloc_code` does: its code, then each BPF
/// function it reaches, appended once when the first call to it is met and linked at once
/// (depth first), every call's (and function reference's) `imm` set to its callee's copy, and
/// the map and global-data relocations applied in every copy.
fn link(
    prog: usize,
    funcs: &[Func],
    secs: &[Sec],
    relocs: &[BTreeMap<usize, Reloc>],
    text: Option<usize>,
    text_funcs: &BTreeMap<usize, usize>,
) -> Result<Vec<u64>, ObjectError> {
    let fail = |at: usize, what: String| {
        ObjectError::Relocation(format!(
            "program `{}`, instruction {at}: {what}",
            funcs[prog].name
        ))
    };
    let append = |out: &mut Vec<u64>, f: &Func| -> Result<usize, ObjectError> {
        let base = out.len();
        if base + f.len > MAX_PROG_INSNS {
            return Err(ObjectError::Relocation(format!(
                "program `{}` is more than {MAX_PROG_INSNS} instructions with the functions it calls",
                funcs[prog].name
            )));
        }
        out.extend_from_slice(&secs[f.sec].code[f.start..f.start + f.len]);
        Ok(base)
    };
    /// A function being linked: which, where its copy starts, the next instruction to look at.
    #[derive(Clone, Copy)]
    struct Frame {
        func: usize,
        base: usize,
        next: usize,
    }
    let mut out = Vec::new();
    append(&mut out, &funcs[prog])?;
    let mut placed: BTreeMap<usize, usize> = BTreeMap::new();
    let mut stack = alloc::vec![Frame {
        func: prog,
        base: 0,
        next: 0
    }];
    while let Some(mut frame) = stack.pop() {
        let f = &funcs[frame.func];
        while frame.next < f.len {
            let i = frame.next;
            let at = frame.base + i;
            let mut insn = Insn::decode(out[at]);
            let wide = insn.code == LD_IMM64;
            frame.next += if wide { 2 } else { 1 };
            let reloc = relocs[f.sec].get(&(f.start + i)).copied();
            if wide && reloc.is_some() && i + 1 >= f.len {
                return Err(fail(at, "ld_imm64 split between two functions".to_owned()));
            }
            let callee_start = match reloc {
                Some(Reloc::Map(map)) => {
                    insn.src = BPF_PSEUDO_MAP_FD;
                    insn.imm = map as i32;
                    out[at] = insn.encode();
                    continue;
                }
                Some(Reloc::Data { map, off }) => {
                    insn.src = BPF_PSEUDO_MAP_VALUE;
                    insn.imm = map as i32;
                    out[at] = insn.encode();
                    let mut second = Insn::decode(out[at + 1]);
                    second.imm = off as i32;
                    out[at + 1] = second.encode();
                    continue;
                }
                Some(Reloc::Call { target }) => target,
                Some(Reloc::Func { target }) => {
                    insn.src = BPF_PSEUDO_FUNC;
                    target
                }
                None if insn.code == CALL && insn.src == BPF_PSEUDO_CALL => {
                    // Without a relocation: a call inside .text, relative to the instruction.
                    let to = f.start as i64 + i as i64 + insn.imm as i64 + 1;
                    if Some(f.sec) != text || to < 0 {
                        return Err(fail(
                            at,
                            "BPF-to-BPF call without a relocation, outside .text".to_owned(),
                        ));
                    }
                    to as usize
                }
                None if wide && insn.src != 0 => {
                    return Err(fail(
                        at,
                        format!("ld_imm64 with src_reg {} and no relocation", insn.src),
                    ));
                }
                None => continue,
            };
            let Some(&callee) = text_funcs.get(&callee_start) else {
                return Err(fail(
                    at,
                    format!(
                        "calls instruction {callee_start} of .text, which does not start a function"
                    ),
                ));
            };
            let (callee_base, new) = match placed.get(&callee) {
                Some(&base) => (base, false),
                None => {
                    let base = append(&mut out, &funcs[callee])?;
                    placed.insert(callee, base);
                    (base, true)
                }
            };
            insn.imm = (callee_base as i64 - at as i64 - 1) as i32;
            out[at] = insn.encode();
            if new {
                stack.push(frame);
                stack.push(Frame {
                    func: callee,
                    base: callee_base,
                    next: 0,
                });
                break;
            }
        }
    }
    Ok(out)
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
