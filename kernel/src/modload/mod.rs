//! The module loader's pure part: reads a relocatable LoongArch64 ELF object (`ET_REL`) with
//! `xmas-elf`, lays its sections out in one image, resolves its symbols and applies its
//! relocations into a byte buffer for a given load address.
//!
//! Nothing here touches memory other than the buffers it is given, so the whole link runs on the
//! host (`cargo test -p loongtrace-kernel --lib modload`), including the fuzz tests that feed it
//! mutated copies of a real module object. The kernel side (`crate::module`) allocates the module
//! area, calls [`link`] into it, and turns the result into ftrace sites.
//!
//! Layout of a module image (offsets from its base, each part aligned as its sections ask):
//!
//! | part | contents |
//! |---|---|
//! | text | every `SHF_ALLOC | SHF_EXECINSTR` section, in file order |
//! | stubs | one 8-byte far jump (`pcaddu18i t1; jirl zero, t1`) per ftrace target the kernel asked for |
//! | GOT | one 8-byte entry per symbol named by a `R_LARCH_GOT_PC_*` relocation |
//! | data | the other `SHF_ALLOC` sections (rodata, data, `__patchable_function_entries`, bss) |

pub mod reloc;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use reloc::RelocError;
use xmas_elf::ElfFile;
use xmas_elf::header::{Class, Machine, Type};
use xmas_elf::sections::{SectionData, SectionHeader, ShType};
use xmas_elf::symbol_table::Entry;

/// `EM_LOONGARCH`.
pub const EM_LOONGARCH: u16 = 258;
const SHF_ALLOC: u64 = 0x2;
const SHF_EXECINSTR: u64 = 0x4;
const SHN_UNDEF: u16 = 0;
const SHN_LORESERVE: u16 = 0xff00;
const SHN_ABS: u16 = 0xfff1;
const SHN_COMMON: u16 = 0xfff2;
const STB_WEAK: u8 = 2;
const STT_FUNC: u8 = 2;
const STT_OBJECT: u8 = 1;
/// Largest section alignment accepted (one page).
pub const MAX_ALIGN: u64 = 4096;
/// Size of one ftrace stub.
pub const STUB_SIZE: u64 = 8;
/// The section whose entries name the patchable functions.
pub const PATCHABLE_SECTION: &str = "__patchable_function_entries";
/// Bytes before a function entry that the patchable-entry record points at (the ops literal).
pub const SITE_PREFIX: u64 = 8;
/// Longest module name.
pub const MAX_NAME: usize = 55;

/// Why an object was refused. Nothing was loaded when one is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not an ELF file (no `\x7fELF`).
    NotElf,
    /// The file ends before the named structure does.
    Truncated(&'static str),
    /// Not a 64-bit little-endian ELF.
    WrongClass,
    /// Not `ET_REL` (the value found).
    NotRelocatable(u16),
    /// Not `EM_LOONGARCH`.
    WrongMachine(u16),
    /// The section header table is malformed.
    BadSectionTable(&'static str),
    /// Section `index` is malformed.
    BadSection(usize, &'static str),
    /// No (or more than one) symbol table, or a malformed one.
    BadSymtab(&'static str),
    /// Symbol `index` is malformed (bad section index, name, or an unsupported kind).
    BadSymbol(usize, &'static str),
    /// An undefined symbol the kernel does not export.
    UndefinedSymbol(String),
    /// A relocation type the loader does not implement.
    UnknownRelocation { rtype: u32, section: String },
    /// A relocation that cannot be applied (out of range, misaligned, outside its section).
    Relocation { section: String, offset: u64, symbol: String, error: RelocError },
    /// The image is larger than the space available.
    TooLarge { size: u64, max: u64 },
    /// No `.modinfo` `name=` entry (declare the module with `loongtrace_module::module!`).
    NoName,
    /// The module name is empty, too long or has characters other than `[A-Za-z0-9_]`.
    BadName(String),
    /// A `__patchable_function_entries` record that names no function entry in the module's text.
    BadPatchableEntry(u64),
    /// The kernel side: a module with this name is loaded already.
    Duplicate(String),
    /// The kernel side: no room left in the module area.
    NoSpace(u64),
    /// The kernel side: the module's init returned this non-zero value.
    InitFailed(i32),
    /// The kernel side: registering the module's functions with ftrace failed.
    Ftrace(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotElf => write!(f, "not an ELF file"),
            LoadError::Truncated(what) => write!(f, "file truncated: {what} lies beyond its end"),
            LoadError::WrongClass => write!(f, "not a 64-bit little-endian ELF object"),
            LoadError::NotRelocatable(t) => write!(f, "ELF type {t} is not ET_REL (a module is a relocatable object)"),
            LoadError::WrongMachine(m) => write!(f, "ELF machine {m} is not LoongArch ({EM_LOONGARCH})"),
            LoadError::BadSectionTable(why) => write!(f, "bad section header table: {why}"),
            LoadError::BadSection(i, why) => write!(f, "bad section {i}: {why}"),
            LoadError::BadSymtab(why) => write!(f, "bad symbol table: {why}"),
            LoadError::BadSymbol(i, why) => write!(f, "bad symbol {i}: {why}"),
            LoadError::UndefinedSymbol(s) => write!(f, "undefined symbol '{s}' is not exported by the kernel"),
            LoadError::UnknownRelocation { rtype, section } => {
                write!(f, "unknown relocation type {rtype} in {section}")
            }
            LoadError::Relocation { section, offset, symbol, error } => {
                write!(f, "cannot relocate {section}+{offset:#x} against '{symbol}': {error}")
            }
            LoadError::TooLarge { size, max } => write!(f, "module image of {size} bytes exceeds the {max} bytes available"),
            LoadError::NoName => write!(f, "no module name (.modinfo name=...; use loongtrace_module::module!)"),
            LoadError::BadName(n) => write!(f, "bad module name '{n}' (1 to {MAX_NAME} of [A-Za-z0-9_])"),
            LoadError::BadPatchableEntry(a) => write!(f, "patchable-entry record {a:#x} is not a function entry in module text"),
            LoadError::Duplicate(n) => write!(f, "a module named '{n}' is already loaded"),
            LoadError::NoSpace(n) => write!(f, "no room for {n} bytes in the module area"),
            LoadError::InitFailed(r) => write!(f, "module init failed with {r}"),
            LoadError::Ftrace(e) => write!(f, "ftrace: {e}"),
        }
    }
}

/// One section of the object, as the loader sees it.
#[derive(Clone, Debug)]
pub struct SectionInfo {
    pub name: String,
    pub kind: ShType,
    pub flags: u64,
    pub size: u64,
    pub align: u64,
    /// Offset in the image (`None` = not loaded).
    pub image_offset: Option<u64>,
}

/// A validated object with its layout planned (independent of the load address).
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub sections: Vec<SectionInfo>,
    /// Image size in bytes.
    pub size: u64,
    /// `[start, end)` offsets of the executable part (text and stubs).
    pub text: (u64, u64),
    /// Offset of the first stub, and how many.
    pub stubs: (u64, usize),
    /// Offset of the GOT and the symbol index (with addend) of each entry.
    pub got: (u64, Vec<(u32, i64)>),
    /// Largest section alignment (the image base must be aligned to it).
    pub align: u64,
    symtab: usize,
    strtab: usize,
}

/// A symbol the module defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModSymbol {
    /// Demangled name (with no hash suffix).
    pub name: String,
    /// Offset from the image base.
    pub offset: u64,
    pub size: u64,
    pub is_func: bool,
    pub global: bool,
}

/// The result of [`link`]: everything the kernel needs besides the image bytes.
#[derive(Debug)]
pub struct Linked {
    /// Function entries (offsets from the base) of the patchable functions, sorted.
    pub sites: Vec<u64>,
    /// Defined function and data symbols, sorted by offset.
    pub symbols: Vec<ModSymbol>,
    /// Offsets of `lt_module_init` and `lt_module_exit`, when defined.
    pub init: Option<u64>,
    pub exit: Option<u64>,
    /// Relocations applied.
    pub relocations: usize,
    /// Count per relocation type name, for the load log.
    pub reloc_kinds: Vec<(&'static str, usize)>,
}

/// The object's bytes in an 8-byte aligned buffer (what `xmas-elf` needs to read the headers
/// and tables in place).
pub struct Object {
    words: Vec<u64>,
    len: usize,
}

impl Object {
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = alloc::vec![0u64; bytes.len().div_ceil(8)];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Object { words, len: bytes.len() }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
}

/// The NUL-terminated string at `off` in `table`, if it is one (valid UTF-8).
fn cstr(table: &[u8], off: u64) -> Option<&str> {
    let rest = table.get(usize::try_from(off).ok()?..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..end]).ok()
}

/// The bytes of section `sh`, checked against the file.
fn section_bytes<'a>(file: &'a [u8], i: usize, sh: &SectionHeader) -> Result<&'a [u8], LoadError> {
    if sh.get_type() == Ok(ShType::NoBits) || sh.get_type() == Ok(ShType::Null) {
        return Ok(&[]);
    }
    let start = usize::try_from(sh.offset()).map_err(|_| LoadError::Truncated("a section"))?;
    let len = usize::try_from(sh.size()).map_err(|_| LoadError::Truncated("a section"))?;
    let end = start.checked_add(len).ok_or(LoadError::BadSection(i, "offset + size overflows"))?;
    file.get(start..end).ok_or(LoadError::Truncated("a section's contents"))
}

/// Checks the ELF and section headers; returns the parsed file.
fn open(file: &[u8]) -> Result<ElfFile<'_>, LoadError> {
    if file.len() < 4 || file[..4] != [0x7f, b'E', b'L', b'F'] {
        return Err(LoadError::NotElf);
    }
    if file.len() < 64 {
        return Err(LoadError::Truncated("the ELF header"));
    }
    if file[4] != 2 || file[5] != 1 {
        return Err(LoadError::WrongClass);
    }
    if (file.as_ptr() as usize) % 8 != 0 {
        return Err(LoadError::BadSectionTable("object buffer not 8-byte aligned"));
    }
    let elf = ElfFile::new(file).map_err(|_| LoadError::Truncated("the ELF header"))?;
    if elf.header.pt1.class() != Class::SixtyFour {
        return Err(LoadError::WrongClass);
    }
    let h = &elf.header.pt2;
    match h.type_().as_type() {
        Type::Relocatable => {}
        _ => return Err(LoadError::NotRelocatable(h.type_().0)),
    }
    match h.machine().as_machine() {
        Machine::Other(EM_LOONGARCH) => {}
        _ => return Err(LoadError::WrongMachine(u16::from_le_bytes([file[18], file[19]]))),
    }
    if h.sh_entry_size() != 64 {
        return Err(LoadError::BadSectionTable("entry size is not 64"));
    }
    let count = h.sh_count() as u64;
    if count == 0 || count >= SHN_LORESERVE as u64 {
        return Err(LoadError::BadSectionTable("no sections, or extended section numbering"));
    }
    if h.sh_offset() % 8 != 0 {
        return Err(LoadError::BadSectionTable("table not 8-byte aligned"));
    }
    let end = h.sh_offset().checked_add(count * 64).ok_or(LoadError::BadSectionTable("offset overflows"))?;
    if end > file.len() as u64 {
        return Err(LoadError::Truncated("the section header table"));
    }
    if h.sh_str_index() as u64 >= count {
        return Err(LoadError::BadSectionTable("section-name table index out of range"));
    }
    Ok(elf)
}

/// All section headers (validated by `open`).
fn headers<'a>(elf: &ElfFile<'a>) -> Result<Vec<SectionHeader<'a>>, LoadError> {
    (0..elf.header.pt2.sh_count()).map(|i| elf.section_header(i).map_err(|_| LoadError::Truncated("a section header"))).collect()
}

/// Symbols of the object (validated table).
fn symbols<'a>(elf: &ElfFile<'a>, shs: &[SectionHeader<'a>], symtab: usize) -> Result<&'a [xmas_elf::symbol_table::Entry64], LoadError> {
    let sh = &shs[symtab];
    if sh.entry_size() != 24 || sh.size() % 24 != 0 || sh.offset() % 8 != 0 {
        return Err(LoadError::BadSymtab("entry size, size or alignment"));
    }
    section_bytes(elf.input, symtab, sh)?;
    match sh.get_data(elf) {
        Ok(SectionData::SymbolTable64(s)) => Ok(s),
        _ => Err(LoadError::BadSymtab("not a 64-bit symbol table")),
    }
}

fn relas<'a>(elf: &ElfFile<'a>, shs: &[SectionHeader<'a>], i: usize) -> Result<&'a [xmas_elf::sections::Rela<u64>], LoadError> {
    let sh = &shs[i];
    if sh.entry_size() != 24 || sh.size() % 24 != 0 || sh.offset() % 8 != 0 {
        return Err(LoadError::BadSection(i, "relocation table entry size, size or alignment"));
    }
    section_bytes(elf.input, i, sh)?;
    match sh.get_data(elf) {
        Ok(SectionData::Rela64(r)) => Ok(r),
        _ => Err(LoadError::BadSection(i, "not a 64-bit RELA table")),
    }
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Validates the object and plans its layout with `stubs` ftrace stubs. `max` is the largest
/// image the caller can place.
pub fn plan(file: &[u8], stubs: usize, max: u64) -> Result<Plan, LoadError> {
    let elf = open(file)?;
    let shs = headers(&elf)?;
    let shstr = section_bytes(file, elf.header.pt2.sh_str_index() as usize, &shs[elf.header.pt2.sh_str_index() as usize])?;
    let mut sections = Vec::with_capacity(shs.len());
    let mut symtab = None;
    for (i, sh) in shs.iter().enumerate() {
        let kind = sh.get_type().map_err(|_| LoadError::BadSection(i, "unknown section type"))?;
        let name = if kind == ShType::Null { "" } else { cstr(shstr, sh.name() as u64).ok_or(LoadError::BadSection(i, "bad name"))? };
        section_bytes(file, i, sh)?;
        let align = sh.align().max(1);
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(LoadError::BadSection(i, "alignment is not a power of two up to 4096"));
        }
        if kind == ShType::SymTab {
            if symtab.is_some() {
                return Err(LoadError::BadSymtab("more than one symbol table"));
            }
            symtab = Some(i);
        }
        if kind == ShType::Rel {
            return Err(LoadError::BadSection(i, "REL relocations (without addend) are not used on LoongArch"));
        }
        sections.push(SectionInfo { name: name.to_string(), kind, flags: sh.flags(), size: sh.size(), align, image_offset: None });
    }
    let symtab = symtab.ok_or(LoadError::BadSymtab("no symbol table"))?;
    let strtab = shs[symtab].link() as usize;
    if strtab >= shs.len() || sections[strtab].kind != ShType::StrTab {
        return Err(LoadError::BadSymtab("its string table link is not a string table"));
    }
    let syms = symbols(&elf, &shs, symtab)?;
    let name = module_name(file, &shs, &sections)?;

    let loaded = |s: &SectionInfo| s.flags & SHF_ALLOC != 0 && s.size > 0 && s.name != ".modinfo";
    // GOT entries: one per (symbol, addend) named by a GOT relocation in a loaded section.
    let mut got: Vec<(u32, i64)> = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        if s.kind != ShType::Rela {
            continue;
        }
        let target = shs[i].info() as usize;
        if target >= sections.len() || !loaded(&sections[target]) {
            continue;
        }
        if shs[i].link() as usize != symtab {
            return Err(LoadError::BadSection(i, "relocations refer to another symbol table"));
        }
        for r in relas(&elf, &shs, i)? {
            if reloc::needs_got(r.get_type()) {
                let key = (r.get_symbol_table_index(), r.get_addend() as i64);
                if r.get_symbol_table_index() as usize >= syms.len() {
                    return Err(LoadError::BadSymbol(r.get_symbol_table_index() as usize, "index out of range"));
                }
                if !got.contains(&key) {
                    got.push(key);
                }
            }
        }
    }

    let mut off = 0u64;
    let mut max_align = 8u64;
    let too_large = |size: u64| LoadError::TooLarge { size, max };
    let mut place = |s: &mut SectionInfo, off: &mut u64| -> Result<(), LoadError> {
        let start = align_up(*off, s.align);
        let end = start.checked_add(s.size).filter(|&e| e <= max).ok_or(too_large(start.saturating_add(s.size)))?;
        s.image_offset = Some(start);
        max_align = max_align.max(s.align);
        *off = end;
        Ok(())
    };
    for s in sections.iter_mut().filter(|s| loaded(s) && s.flags & SHF_EXECINSTR != 0) {
        place(s, &mut off)?;
    }
    let stub_off = align_up(off, 8);
    off = stub_off + STUB_SIZE * stubs as u64;
    let text = (0, off);
    let got_off = align_up(off, 8);
    off = got_off + 8 * got.len() as u64;
    for s in sections.iter_mut().filter(|s| loaded(s) && s.flags & SHF_EXECINSTR == 0) {
        place(s, &mut off)?;
    }
    if off > max {
        return Err(too_large(off));
    }
    Ok(Plan { name, sections, size: off.max(8), text, stubs: (stub_off, stubs), got: (got_off, got), align: max_align, symtab, strtab })
}

/// The `name=` entry of `.modinfo`, validated.
fn module_name(file: &[u8], shs: &[SectionHeader], sections: &[SectionInfo]) -> Result<String, LoadError> {
    let i = sections.iter().position(|s| s.name == ".modinfo").ok_or(LoadError::NoName)?;
    let data = section_bytes(file, i, &shs[i])?;
    let entry = data.split(|&b| b == 0).find_map(|e| e.strip_prefix(b"name=")).ok_or(LoadError::NoName)?;
    let name = core::str::from_utf8(entry).map_err(|_| LoadError::BadName(String::from_utf8_lossy(entry).into_owned()))?;
    if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(LoadError::BadName(name.to_string()));
    }
    Ok(name.to_string())
}

/// Demangles a Rust symbol name (legacy or v0) without its hash; other names are kept.
pub fn demangle(name: &str) -> String {
    alloc::format!("{:#}", rustc_demangle::demangle(name))
}

/// Links the object planned by `plan` into `image` (`plan.size` zeroed bytes that will live at
/// address `base`): copies the sections, writes a far jump to each of `stub_targets` in the stub
/// area and the GOT, resolves undefined symbols with `resolve` and applies every relocation of
/// the loaded sections. On error `image` holds garbage and must not be run.
pub fn link(
    file: &[u8],
    plan: &Plan,
    base: u64,
    image: &mut [u8],
    stub_targets: &[u64],
    resolve: &dyn Fn(&str) -> Option<u64>,
) -> Result<Linked, LoadError> {
    let elf = open(file)?;
    let shs = headers(&elf)?;
    if image.len() as u64 != plan.size || base % plan.align != 0 || stub_targets.len() != plan.stubs.1 {
        return Err(LoadError::TooLarge { size: plan.size, max: image.len() as u64 });
    }
    let strtab = section_bytes(file, plan.strtab, &shs[plan.strtab])?;
    let syms = symbols(&elf, &shs, plan.symtab)?;
    for (i, (s, sh)) in plan.sections.iter().zip(shs.iter()).enumerate() {
        if let Some(off) = s.image_offset
            && s.kind != ShType::NoBits
        {
            let src = section_bytes(file, i, sh)?;
            let dst = image.get_mut(off as usize..(off + s.size) as usize).ok_or(LoadError::BadSection(i, "outside the planned image"))?;
            if src.len() != dst.len() {
                return Err(LoadError::BadSection(i, "a loaded section without contents"));
            }
            dst.copy_from_slice(src);
        }
    }
    // Symbol values.
    let sym_name = |i: usize| -> &str {
        syms.get(i).and_then(|s| cstr(strtab, s.name() as u64)).unwrap_or("?")
    };
    let mut values: Vec<Option<u64>> = Vec::with_capacity(syms.len());
    for (i, s) in syms.iter().enumerate() {
        let v = match s.shndx() {
            SHN_UNDEF if i == 0 => Some(0),
            SHN_UNDEF => {
                let name = cstr(strtab, s.name() as u64).ok_or(LoadError::BadSymbol(i, "bad name"))?;
                match resolve(name) {
                    Some(a) => Some(a),
                    None if s.info() >> 4 == STB_WEAK => Some(0),
                    // Only an error if a relocation uses it.
                    None => None,
                }
            }
            SHN_ABS => Some(s.value()),
            SHN_COMMON => return Err(LoadError::BadSymbol(i, "common symbols are not supported")),
            n if n >= SHN_LORESERVE => return Err(LoadError::BadSymbol(i, "reserved section index")),
            n => match plan.sections.get(n as usize) {
                None => return Err(LoadError::BadSymbol(i, "section index out of range")),
                Some(sec) => sec.image_offset.map(|o| base.wrapping_add(o).wrapping_add(s.value())),
            },
        };
        values.push(v);
    }
    let (got_off, got) = (&plan.got.0, &plan.got.1);
    for (k, &(sym, addend)) in got.iter().enumerate() {
        let v = values.get(sym as usize).copied().flatten().ok_or_else(|| LoadError::UndefinedSymbol(sym_name(sym as usize).to_string()))?;
        let at = (got_off + 8 * k as u64) as usize;
        image[at..at + 8].copy_from_slice(&v.wrapping_add(addend as u64).to_le_bytes());
    }
    for (k, &t) in stub_targets.iter().enumerate() {
        let at = plan.stubs.0 + STUB_SIZE * k as u64;
        let words = reloc::far_jump(base + at, t).map_err(|error| LoadError::Relocation {
            section: "ftrace stubs".to_string(),
            offset: at,
            symbol: alloc::format!("{t:#x}"),
            error,
        })?;
        image[at as usize..at as usize + 4].copy_from_slice(&words[0].to_le_bytes());
        image[at as usize + 4..at as usize + 8].copy_from_slice(&words[1].to_le_bytes());
    }
    // Relocations.
    let mut count = 0usize;
    let mut kinds: Vec<(&'static str, usize)> = Vec::new();
    for (i, s) in plan.sections.iter().enumerate() {
        if s.kind != ShType::Rela {
            continue;
        }
        let target = shs[i].info() as usize;
        let Some(tsec) = plan.sections.get(target) else { continue };
        let Some(toff) = tsec.image_offset else { continue };
        let bytes = image.get_mut(toff as usize..(toff + tsec.size) as usize).ok_or(LoadError::BadSection(target, "outside the planned image"))?;
        for r in relas(&elf, &shs, i)? {
            let rtype = r.get_type();
            if !reloc::supported(rtype) {
                return Err(LoadError::UnknownRelocation { rtype, section: tsec.name.clone() });
            }
            let si = r.get_symbol_table_index() as usize;
            if si >= syms.len() {
                return Err(LoadError::BadSymbol(si, "index out of range"));
            }
            let needs_symbol = !matches!(rtype, reloc::R_LARCH_NONE | reloc::R_LARCH_RELAX | reloc::R_LARCH_ALIGN);
            let sv = match values[si] {
                Some(v) => v,
                None if !needs_symbol => 0,
                None if syms[si].shndx() == SHN_UNDEF => return Err(LoadError::UndefinedSymbol(sym_name(si).to_string())),
                None => return Err(LoadError::BadSymbol(si, "defined in a section that is not loaded")),
            };
            let addend = r.get_addend() as i64;
            let got_at = got.iter().position(|&k| k == (si as u32, addend)).map_or(0, |k| base + got_off + 8 * k as u64);
            let input = reloc::RelocInput {
                rtype,
                offset: r.get_offset(),
                place: base.wrapping_add(toff).wrapping_add(r.get_offset()),
                value: sv.wrapping_add(addend as u64),
                got: got_at,
            };
            reloc::apply(bytes, &input).map_err(|error| LoadError::Relocation {
                section: tsec.name.clone(),
                offset: r.get_offset(),
                symbol: sym_name(si).to_string(),
                error,
            })?;
            if needs_symbol {
                count += 1;
                let n = reloc::name(rtype);
                match kinds.iter_mut().find(|(k, _)| *k == n) {
                    Some((_, c)) => *c += 1,
                    None => kinds.push((n, 1)),
                }
            }
        }
    }
    // Patch sites.
    let mut sites = Vec::new();
    for s in plan.sections.iter().filter(|s| s.name == PATCHABLE_SECTION) {
        let Some(off) = s.image_offset else { continue };
        if s.size % 8 != 0 {
            return Err(LoadError::BadPatchableEntry(s.size));
        }
        let entries = image.get(off as usize..(off + s.size) as usize).ok_or(LoadError::BadPatchableEntry(off))?;
        for chunk in entries.chunks_exact(8) {
            let rec = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let entry = rec.wrapping_sub(base).wrapping_add(SITE_PREFIX);
            // The record names the first of two prefix words; the entry's two words follow.
            if rec % 8 != 0 || rec < base || entry + 8 > plan.stubs.0 || entry < SITE_PREFIX {
                return Err(LoadError::BadPatchableEntry(rec));
            }
            sites.push(entry);
        }
    }
    sites.sort_unstable();
    sites.dedup();
    // Symbols.
    let mut symbols = Vec::new();
    let (mut init, mut exit) = (None, None);
    for (i, s) in syms.iter().enumerate() {
        let ty = s.info() & 0xf;
        if ty != STT_FUNC && ty != STT_OBJECT {
            continue;
        }
        let Some(Some(addr)) = (s.shndx() != SHN_UNDEF && s.shndx() < SHN_LORESERVE).then(|| values[i]) else { continue };
        let raw = cstr(strtab, s.name() as u64).ok_or(LoadError::BadSymbol(i, "bad name"))?;
        let offset = addr.wrapping_sub(base);
        let global = s.info() >> 4 != 0;
        if ty == STT_FUNC && global {
            match raw {
                "lt_module_init" => init = Some(offset),
                "lt_module_exit" => exit = Some(offset),
                _ => {}
            }
        }
        if offset < plan.size {
            symbols.push(ModSymbol { name: demangle(raw), offset, size: s.size(), is_func: ty == STT_FUNC, global });
        }
    }
    symbols.sort_by_key(|s| s.offset);
    Ok(Linked { sites, symbols, init, exit, relocations: count, reloc_kinds: kinds })
}

/// Plans and links in one go into a fresh buffer (what the host tests and tools use).
pub fn link_to_vec(
    file: &[u8],
    base: u64,
    max: u64,
    stub_targets: &[u64],
    resolve: &dyn Fn(&str) -> Option<u64>,
) -> Result<(Plan, Vec<u8>, Linked), LoadError> {
    let plan = plan(file, stub_targets.len(), max)?;
    let mut image = alloc::vec![0u8; plan.size as usize];
    let linked = link(file, &plan, base, &mut image, stub_targets, resolve)?;
    Ok((plan, image, linked))
}
