//! The kernel's embedded symbol table (`.ksyms`): build it from the ELF, write it in place, read it back.
//!
//! The format is specified in `docs/formats.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LTKSYM01` |
//! | 8 | 4 | `count` |
//! | 12 | 4 | `names_len` |
//! | 16 | 16 × count | entries sorted by `addr`: `addr: u64`, `size: u32`, `name_off: u32` |
//! | 16 + 16 × count | names_len | name pool, each name UTF-8 + NUL |
//!
//! All integers are little-endian. [`embed`] writes the blob over the zero-filled region the linker
//! script reserves (section `.ksyms`, or `__ksyms_start .. __ksyms_end`), changing no byte outside
//! it and not the file size.

use std::fmt;

use xmas_elf::ElfFile;
use xmas_elf::header;
use xmas_elf::program::Type as PhType;
use xmas_elf::sections::{SHF_EXECINSTR, SHN_LORESERVE, SHN_UNDEF, SectionHeader, ShType};

/// First bytes of an embedded table.
pub const MAGIC: &[u8; 8] = &formats::symtab::MAGIC;
/// Size of the fixed header (magic, count, names_len).
pub const HEADER_SIZE: usize = formats::symtab::HEADER_LEN;
/// Size of one entry (addr, size, name_off).
pub const ENTRY_SIZE: usize = formats::symtab::ENTRY_LEN;
/// `e_machine` of LoongArch.
pub const EM_LOONGARCH: u16 = 258;
/// The section the linker script reserves for the table.
pub const KSYMS_SECTION: &str = ".ksyms";
/// Symbols bounding the reserved region (used when there is no `.ksyms` section).
pub const KSYMS_START: &str = "__ksyms_start";
pub const KSYMS_END: &str = "__ksyms_end";

const ELF64_SYM_SIZE: usize = 24;
const STT_NOTYPE: u8 = 0;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Symbol {
    pub addr: u64,
    /// Size in bytes (0 for assembly labels without `.size`).
    pub size: u32,
    /// Demangled name.
    pub name: String,
}

/// Where the table goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Virtual address of the region in the kernel image.
    pub addr: u64,
    /// Offset of the region in the ELF file.
    pub file_offset: u64,
    /// Bytes reserved.
    pub size: u64,
}

/// What [`embed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedStats {
    /// Number of entries written.
    pub symbols: usize,
    /// Size of the blob written.
    pub bytes: usize,
    /// Size of the reserved region.
    pub reserved: u64,
    /// The region written.
    pub region: Region,
}

/// Why a table could not be built, embedded or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymtabError {
    /// The input is not a well-formed little-endian ELF64 file.
    NotElf(String),
    /// The ELF is for another architecture.
    WrongMachine(u16),
    /// The ELF has no `.symtab` (stripped?).
    NoSymbolTable,
    /// Neither a `.ksyms` section nor `__ksyms_start`/`__ksyms_end`.
    NoRegion,
    /// The region has no bytes in the file (NOBITS, or outside every loadable segment).
    RegionNotInFile(String),
    /// The region holds something other than zeros or an older table.
    RegionNotEmpty { file_offset: u64 },
    /// The table does not fit the region.
    TooLarge { needed: usize, reserved: u64 },
    /// A blob that is not a valid table.
    BadTable(String),
}

impl fmt::Display for SymtabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymtabError::NotElf(why) => write!(f, "not a usable ELF64 little-endian file: {why}"),
            SymtabError::WrongMachine(m) => write!(
                f,
                "not a LoongArch ELF (e_machine is {m}, expected {EM_LOONGARCH}); is this the kernel image?"
            ),
            SymtabError::NoSymbolTable => {
                write!(
                    f,
                    "the ELF has no .symtab section (was it stripped? link without --strip-all)"
                )
            }
            SymtabError::NoRegion => write!(
                f,
                "the ELF has no `{KSYMS_SECTION}` section and no `{KSYMS_START}`/`{KSYMS_END}` symbols; \
                 linker/kernel.ld must reserve the symbol-table region"
            ),
            SymtabError::RegionNotInFile(why) => {
                write!(f, "the symbol-table region has no bytes in the file: {why}")
            }
            SymtabError::RegionNotEmpty { file_offset } => write!(
                f,
                "the symbol-table region at file offset {file_offset:#x} is neither zero-filled nor an \
                 existing table; refusing to overwrite it"
            ),
            SymtabError::TooLarge { needed, reserved } => write!(
                f,
                "the symbol table needs {needed} bytes but only {reserved} bytes are reserved; \
                 raise KSYMS_SIZE in linker/kernel.ld"
            ),
            SymtabError::BadTable(why) => write!(f, "invalid symbol table: {why}"),
        }
    }
}

impl std::error::Error for SymtabError {}

// ---------------------------------------------------------------------------------------------
// Reading the ELF
// ---------------------------------------------------------------------------------------------

/// A raw `Elf64_Sym`.
#[derive(Debug, Clone, Copy)]
struct RawSym {
    name: u32,
    info: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

impl RawSym {
    fn kind(&self) -> u8 {
        self.info & 0xf
    }
    fn binding(&self) -> u8 {
        self.info >> 4
    }
    fn is_global(&self) -> bool {
        matches!(self.binding(), STB_GLOBAL | STB_WEAK)
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The file's bytes at an 8-byte-aligned address: xmas-elf reads headers in place and needs one.
/// A misaligned input is copied into a buffer with room to slide it to an aligned offset.
enum Aligned<'a> {
    Borrowed(&'a [u8]),
    Copied { buf: Vec<u8>, at: usize, len: usize },
}

impl<'a> Aligned<'a> {
    fn new(input: &'a [u8]) -> Self {
        if input.as_ptr().align_offset(8) == 0 {
            return Aligned::Borrowed(input);
        }
        let mut buf = vec![0u8; input.len() + 7];
        let at = buf.as_ptr().align_offset(8);
        buf[at..at + input.len()].copy_from_slice(input);
        Aligned::Copied { buf, at, len: input.len() }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Aligned::Borrowed(b) => b,
            Aligned::Copied { buf, at, len } => &buf[*at..*at + *len],
        }
    }
}

/// A parsed ELF with all the checks that keep xmas-elf from panicking done up front.
struct Elf<'a> {
    file: ElfFile<'a>,
    sections: Vec<SectionHeader<'a>>,
}

impl<'a> Elf<'a> {
    fn parse(input: &'a [u8]) -> Result<Self, SymtabError> {
        let bad = |why: &str| SymtabError::NotElf(why.to_string());
        if input.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(bad("no ELF magic"));
        }
        if input.len() < 64 {
            return Err(bad("shorter than an ELF64 header"));
        }
        if input[4] != 2 {
            return Err(bad("not a 64-bit ELF"));
        }
        if input[5] != 1 {
            return Err(bad("not little-endian"));
        }
        let file = ElfFile::new(input).map_err(bad)?;
        header::sanity_check(&file).map_err(bad)?;
        let machine = le_u16(input, 18);
        if machine != EM_LOONGARCH {
            return Err(SymtabError::WrongMachine(machine));
        }
        let pt2 = &file.header.pt2;
        if pt2.sh_count() > 0 && (pt2.sh_offset() % 8 != 0 || pt2.sh_entry_size() != 64) {
            return Err(bad(
                "section header table is misaligned or has an unexpected entry size",
            ));
        }
        if pt2.ph_count() > 0 && (pt2.ph_offset() % 8 != 0 || pt2.ph_entry_size() != 56) {
            return Err(bad(
                "program header table is misaligned or has an unexpected entry size",
            ));
        }
        let mut sections = Vec::new();
        for index in 0..pt2.sh_count() {
            let sh = file.section_header(index).map_err(bad)?;
            sh.get_type().map_err(bad)?;
            sections.push(sh);
        }
        Ok(Elf { file, sections })
    }

    /// The bytes of a section that has file contents, bounds-checked.
    fn data(&self, sh: &SectionHeader<'a>) -> Result<&'a [u8], SymtabError> {
        if sh.get_type() == Ok(ShType::NoBits) {
            return Ok(&[]);
        }
        let start = sh.offset();
        let end = start.checked_add(sh.size());
        match end {
            Some(end) if end <= self.file.input.len() as u64 => {
                Ok(&self.file.input[start as usize..end as usize])
            }
            _ => Err(SymtabError::NotElf(format!(
                "section at offset {start:#x} with size {:#x} runs past the end of the file",
                sh.size()
            ))),
        }
    }

    fn section_name(&self, sh: &SectionHeader<'a>) -> Option<&'a str> {
        let strtab = self
            .sections
            .get(self.file.header.pt2.sh_str_index() as usize)?;
        cstr(self.data(strtab).ok()?, sh.name() as usize)
    }

    fn section_by_name(&self, name: &str) -> Option<&SectionHeader<'a>> {
        self.sections
            .iter()
            .find(|sh| self.section_name(sh) == Some(name))
    }

    /// The symbols of `.symtab` with their (raw) names.
    fn symbols(&self) -> Result<Vec<(RawSym, &'a str)>, SymtabError> {
        let symtab = self
            .sections
            .iter()
            .find(|sh| sh.get_type() == Ok(ShType::SymTab))
            .ok_or(SymtabError::NoSymbolTable)?;
        let data = self.data(symtab)?;
        let strtab = self
            .sections
            .get(symtab.link() as usize)
            .ok_or_else(|| SymtabError::NotElf(".symtab links to a missing string table".into()))?;
        let names = self.data(strtab)?;
        let mut out = Vec::with_capacity(data.len() / ELF64_SYM_SIZE);
        for raw in data.chunks_exact(ELF64_SYM_SIZE) {
            let sym = RawSym {
                name: le_u32(raw, 0),
                info: raw[4],
                shndx: le_u16(raw, 6),
                value: le_u64(raw, 8),
                size: le_u64(raw, 16),
            };
            let name = cstr(names, sym.name as usize).unwrap_or("");
            out.push((sym, name));
        }
        Ok(out)
    }
}

/// The NUL-terminated UTF-8 string at `at`.
fn cstr(pool: &[u8], at: usize) -> Option<&str> {
    let bytes = pool.get(at..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Collects the kernel's text symbols: `STT_FUNC` symbols with a nonzero address, plus global
/// `STT_NOTYPE` symbols inside an executable section (assembly labels). Names are demangled;
/// the result is sorted by address with symbols at the same address collapsed to one (the
/// global one wins, then the larger size).
pub fn read_symbols(elf: &[u8]) -> Result<Vec<Symbol>, SymtabError> {
    let buf = Aligned::new(elf);
    let elf = Elf::parse(buf.bytes())?;
    // (symbol, is_global, is_func)
    let mut picked: Vec<(Symbol, bool, bool)> = Vec::new();
    for (sym, name) in elf.symbols()? {
        if sym.value == 0 || sym.shndx == SHN_UNDEF || name.is_empty() || name.starts_with(".L") {
            continue;
        }
        let wanted = match sym.kind() {
            STT_FUNC => true,
            STT_NOTYPE if sym.is_global() && sym.shndx < SHN_LORESERVE => {
                elf.sections.get(sym.shndx as usize).is_some_and(|sh| {
                    sh.flags() & SHF_EXECINSTR != 0
                        && sym.value >= sh.address()
                        && sym.value < sh.address() + sh.size()
                })
            }
            _ => false,
        };
        if !wanted {
            continue;
        }
        let symbol = Symbol {
            addr: sym.value,
            size: u32::try_from(sym.size).unwrap_or(u32::MAX),
            name: demangle(name),
        };
        picked.push((symbol, sym.is_global(), sym.kind() == STT_FUNC));
    }
    // Best first within each address: global, larger (as docs/formats.md says), then typed, then
    // not a `__`-prefixed linker-script marker (`__kernel_start` vs `_start`), then by name so the
    // result is stable.
    picked.sort_by(|(a, ag, af), (b, bg, bf)| {
        a.addr
            .cmp(&b.addr)
            .then(bg.cmp(ag))
            .then(b.size.cmp(&a.size))
            .then(bf.cmp(af))
            .then(a.name.starts_with("__").cmp(&b.name.starts_with("__")))
            .then(a.name.cmp(&b.name))
    });
    picked.dedup_by_key(|(s, _, _)| s.addr);
    Ok(picked.into_iter().map(|(s, _, _)| s).collect())
}

/// Every sized symbol of `.symtab` as the ELF names it (mangled), with its size in bytes: what
/// `ltbench` needs to count a routine's instructions, read with the same checks as
/// [`read_symbols`].
pub fn sized_symbols(elf: &[u8]) -> Result<Vec<(String, u64)>, SymtabError> {
    let buf = Aligned::new(elf);
    let elf = Elf::parse(buf.bytes())?;
    Ok(elf
        .symbols()?
        .into_iter()
        .filter(|(sym, name)| sym.size != 0 && !name.is_empty())
        .map(|(sym, name)| (name.to_string(), sym.size))
        .collect())
}

/// Finds the reserved region: the `.ksyms` section, or else `__ksyms_start .. __ksyms_end`
/// translated to a file offset through the loadable segments.
pub fn find_region(elf: &[u8]) -> Result<Region, SymtabError> {
    let buf = Aligned::new(elf);
    let elf = Elf::parse(buf.bytes())?;
    let len = elf.file.input.len() as u64;
    if let Some(sh) = elf.section_by_name(KSYMS_SECTION) {
        if sh.get_type() == Ok(ShType::NoBits) {
            return Err(SymtabError::RegionNotInFile(format!(
                "section {KSYMS_SECTION} is NOBITS; it must be PROGBITS (fill it, e.g. with LONG(0))"
            )));
        }
        if sh
            .offset()
            .checked_add(sh.size())
            .is_none_or(|end| end > len)
        {
            return Err(SymtabError::RegionNotInFile(format!(
                "section {KSYMS_SECTION} runs past the end of the file"
            )));
        }
        return Ok(Region {
            addr: sh.address(),
            file_offset: sh.offset(),
            size: sh.size(),
        });
    }
    let symbols = match elf.symbols() {
        Ok(s) => s,
        Err(SymtabError::NoSymbolTable) => return Err(SymtabError::NoRegion),
        Err(e) => return Err(e),
    };
    let find = |wanted: &str| {
        symbols
            .iter()
            .find(|(s, n)| *n == wanted && s.shndx != SHN_UNDEF)
            .map(|(s, _)| s.value)
    };
    let (Some(start), Some(end)) = (find(KSYMS_START), find(KSYMS_END)) else {
        return Err(SymtabError::NoRegion);
    };
    if end < start {
        return Err(SymtabError::RegionNotInFile(format!(
            "{KSYMS_END} ({end:#x}) lies before {KSYMS_START} ({start:#x})"
        )));
    }
    for ph in elf.file.program_iter() {
        if ph.get_type() != Ok(PhType::Load) {
            continue;
        }
        let (vaddr, filesz) = (ph.virtual_addr(), ph.file_size());
        if start >= vaddr && end <= vaddr.saturating_add(filesz) {
            let file_offset = ph.offset() + (start - vaddr);
            if file_offset.checked_add(end - start).is_none_or(|e| e > len) {
                break;
            }
            return Ok(Region {
                addr: start,
                file_offset,
                size: end - start,
            });
        }
    }
    Err(SymtabError::RegionNotInFile(format!(
        "{KSYMS_START}..{KSYMS_END} ({start:#x}..{end:#x}) is not inside the file part of any loadable segment"
    )))
}

// ---------------------------------------------------------------------------------------------
// The blob
// ---------------------------------------------------------------------------------------------

/// Encodes `symbols` (sorted here by address) into the table format (the shared writer in
/// `formats::symtab`). Identical names share one copy in the name pool.
pub fn encode(symbols: &[Symbol]) -> Vec<u8> {
    formats::symtab::encode(symbols.iter().map(|s| (s.addr, s.size, s.name.as_str())))
}

/// Builds the table from `elf` and returns a copy of `elf` with the table written into the
/// reserved region (the rest of the region zeroed). The size and every byte outside the region
/// are unchanged.
pub fn embed(elf: &[u8]) -> Result<(Vec<u8>, EmbedStats), SymtabError> {
    let region = find_region(elf)?;
    let symbols = read_symbols(elf)?;
    let blob = encode(&symbols);
    if blob.len() as u64 > region.size {
        return Err(SymtabError::TooLarge {
            needed: blob.len(),
            reserved: region.size,
        });
    }
    let start = region.file_offset as usize;
    let end = start + region.size as usize;
    let current = &elf[start..end];
    let empty = current.iter().take(HEADER_SIZE).all(|&b| b == 0);
    if !empty && !current.starts_with(MAGIC) {
        return Err(SymtabError::RegionNotEmpty {
            file_offset: region.file_offset,
        });
    }
    let mut out = elf.to_vec();
    out[start..start + blob.len()].copy_from_slice(&blob);
    out[start + blob.len()..end].fill(0);
    unallocate_generated_text(&mut out);
    let stats = EmbedStats {
        symbols: symbols.len(),
        bytes: blob.len(),
        reserved: region.size,
        region,
    };
    Ok((out, stats))
}

/// The output section that holds code generated at run time (linker/kernel.ld: the BPF
/// trampoline area and the kprobe slots).
pub const GENERATED_TEXT_SECTION: &str = ".gentext";

/// Clears `SHF_ALLOC` of the `.gentext` section header (the segment that loads the image is
/// unchanged): GDB then leaves those addresses to the objects the kernel registers through its
/// JIT interface (JITed BPF programs, trampolines), instead of naming them after the last kernel
/// symbol before them. Does nothing to an image without that section.
pub fn unallocate_generated_text(elf: &mut [u8]) {
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map_or(0, |x| u16::from_le_bytes([x[0], x[1]])) as usize;
    let u64_at = |b: &[u8], o: usize| b.get(o..o + 8).map_or(0, |x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8]))) as usize;
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(elf, 0x28), u16_at(elf, 0x3a), u16_at(elf, 0x3c), u16_at(elf, 0x3e));
    if shentsize < 64 || shstrndx >= shnum {
        return;
    }
    let strtab = u64_at(elf, shoff + shstrndx * shentsize + 0x18);
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        let name_off = strtab + elf.get(h..h + 4).map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]])) as usize;
        let name = elf.get(name_off..).and_then(|n| n.split(|&b| b == 0).next()).unwrap_or(&[]);
        if name == GENERATED_TEXT_SECTION.as_bytes() {
            if let Some(flags) = elf.get_mut(h + 8..h + 16) {
                let v = u64::from_le_bytes((&*flags).try_into().unwrap_or([0; 8])) & !2;
                flags.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// A decoded table, as the kernel sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
}

impl SymbolTable {
    /// Decodes a table with the kernel's own reader (`formats::symtab`). `blob` may be longer
    /// than the table (e.g. the whole reserved region).
    pub fn parse(blob: &[u8]) -> Result<Self, SymtabError> {
        if blob.len() >= HEADER_SIZE && blob[..8].iter().all(|&b| b == 0) {
            return Err(SymtabError::BadTable(
                "the region is still zero-filled: no table was embedded (run ltsym)".into(),
            ));
        }
        let table = formats::symtab::SymbolTable::parse(blob).map_err(|e| SymtabError::BadTable(e.to_string()))?;
        let symbols = table
            .iter()
            .map(|s| Symbol { addr: s.addr, size: s.size, name: s.name.to_string() })
            .collect();
        Ok(SymbolTable { symbols })
    }

    /// Reads the table embedded in a kernel image.
    pub fn from_elf(elf: &[u8]) -> Result<Self, SymtabError> {
        let region = find_region(elf)?;
        let start = region.file_offset as usize;
        Self::parse(&elf[start..start + region.size as usize])
    }

    /// All entries, sorted by address.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The symbol containing `addr`: `(name, offset into it, its size)`. A symbol of size 0 covers
    /// everything up to the next symbol.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64, u32)> {
        let index = self
            .symbols
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let sym = &self.symbols[index];
        let offset = addr - sym.addr;
        if sym.size != 0 && offset >= u64::from(sym.size) {
            return None;
        }
        Some((sym.name.as_str(), offset, sym.size))
    }

    /// The address of the (first) symbol called `name`.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Demangling
// ---------------------------------------------------------------------------------------------

/// Demangles a Rust symbol (legacy `_ZN...E` or v0 `_R...`) with the `rustc-demangle` crate,
/// without the hash or crate disambiguators; returns other names unchanged.
///
/// `_ZN4core3fmt5write17h0123456789abcdefE` becomes `core::fmt::write`; the allocator shims rustc
/// names in the v0 scheme (`_RNvCs..._7___rustc12___rust_alloc`) become `__rustc::__rust_alloc`.
pub fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name).map(|d| format!("{d:#}")) {
        Ok(d) if !d.is_empty() => d,
        _ => name.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Mangles path components the way rustc's legacy scheme does (no escaping: pass escaped
    /// components).
    fn mangle(parts: &[&str]) -> String {
        let mut s = String::from("_ZN");
        for p in parts {
            s.push_str(&format!("{}{p}", p.len()));
        }
        s.push('E');
        s
    }

    const HASH: &str = "h0123456789abcdef";
    const STB_LOCAL: u8 = 0;

    #[test]
    fn demangle_simple() {
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(
            demangle(&mangle(&["loongtrace_kernel", "boot", "kmain", HASH])),
            "loongtrace_kernel::boot::kmain"
        );
        // No hash: kept as is.
        assert_eq!(demangle(&mangle(&["a", "b"])), "a::b");
    }

    #[test]
    fn demangle_escapes() {
        let name = mangle(&[
            "_$LT$loongtrace_kernel..Foo$u20$as$u20$core..fmt..Debug$GT$",
            "fmt",
            HASH,
        ]);
        assert_eq!(
            demangle(&name),
            "<loongtrace_kernel::Foo as core::fmt::Debug>::fmt"
        );
        let name = mangle(&[
            "core",
            "ptr",
            "drop_in_place$LT$alloc..vec..Vec$LT$$RF$str$GT$$GT$",
            HASH,
        ]);
        assert_eq!(
            demangle(&name),
            "core::ptr::drop_in_place<alloc::vec::Vec<&str>>"
        );
        let name = mangle(&["x", "_$u7b$$u7b$closure$u7d$$u7d$", HASH]);
        assert_eq!(demangle(&name), "x::{{closure}}");
        let name = mangle(&["f$LP$$RP$$C$$BP$$SP$$u5b$$u5d$$u7e$$u27$$u22$$u3a$", HASH]);
        assert_eq!(demangle(&name), "f(),*@[]~'\":");
        let name = mangle(&[
            "_$LT$impl$u20$core..ops..Fn$LT$$LP$u8$C$$RP$$GT$$u20$for$u20$$BP$const$u20$T$GT$",
            "call",
        ]);
        assert_eq!(
            demangle(&name),
            "<impl core::ops::Fn<(u8,)> for *const T>::call"
        );
    }

    #[test]
    fn demangle_v0_shims() {
        assert_eq!(
            demangle("_RNvCseulmdZsCeCG_7___rustc26___rust_alloc_error_handler"),
            "__rustc::__rust_alloc_error_handler"
        );
        assert_eq!(
            demangle("_RNvCs1234_7___rustc12___rust_alloc"),
            "__rustc::__rust_alloc"
        );
        assert_eq!(
            demangle("_RNvNtCs1a_7mycr4te3mod4func"),
            "mycr4te::mod::func"
        );
        assert_eq!(demangle("_RNvCs1a_1a1b.llvm.99"), "a::b");
        assert_eq!(demangle("_RNCNvCs1a_1a1b0"), "a::b::{closure#0}");
    }

    #[test]
    fn demangle_suffixes_and_garbage() {
        let base = mangle(&["a", "b", HASH]);
        assert_eq!(demangle(&format!("{base}.llvm.1234567890")), "a::b");
        assert_eq!(demangle(&format!("{base}.cold")), "a::b.cold");
        for raw in ["_start", "memcpy", "_ZN", "_ZNE", "_ZN99aE", "_R"] {
            assert_eq!(demangle(raw), raw, "{raw}");
        }
    }

    // ---- a minimal LoongArch ELF64 for the tests ----

    const TEXT_ADDR: u64 = 0x9000_0000_0020_0000;
    const TEXT_SIZE: u64 = 0x1000;

    /// A symbol for [`build_elf`]: section index 1 = .text, 2 = .ksyms (or `.data` when the ELF has
    /// no .ksyms section).
    #[derive(Clone)]
    struct TestSym {
        name: String,
        value: u64,
        size: u64,
        kind: u8,
        bind: u8,
        shndx: u16,
    }

    fn func(name: &str, off: u64, size: u64, bind: u8) -> TestSym {
        TestSym {
            name: name.into(),
            value: TEXT_ADDR + off,
            size,
            kind: STT_FUNC,
            bind,
            shndx: 1,
        }
    }

    fn label(name: &str, off: u64, bind: u8) -> TestSym {
        TestSym {
            name: name.into(),
            value: TEXT_ADDR + off,
            size: 0,
            kind: STT_NOTYPE,
            bind,
            shndx: 1,
        }
    }

    fn ksyms_addr() -> u64 {
        TEXT_ADDR + TEXT_SIZE
    }

    pub(crate) struct Layout {
        pub(crate) elf: Vec<u8>,
        ksyms_offset: usize,
    }

    fn push16(v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn push32(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn push64(v: &mut Vec<u8>, x: u64) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn pad_to(v: &mut Vec<u8>, align: usize) {
        while !v.len().is_multiple_of(align) {
            v.push(0);
        }
    }

    /// Builds an ELF with sections: null, .text (AX), `region_name` (A, `ksyms_size` bytes of
    /// `fill`), .symtab, .strtab, .shstrtab, and one PT_LOAD over .text and the region.
    fn build_elf(
        syms: &[TestSym],
        region_name: &str,
        ksyms_size: u64,
        fill: u8,
        machine: u16,
    ) -> Layout {
        let text_off = 0x1000usize;
        let ksyms_off = text_off + TEXT_SIZE as usize;
        let mut elf = vec![0u8; ksyms_off];
        for (i, b) in elf[text_off..].iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1; // recognisable non-zero text bytes
        }
        elf.extend(std::iter::repeat_n(fill, ksyms_size as usize));
        pad_to(&mut elf, 8);
        // .strtab
        let mut strtab = vec![0u8];
        let mut name_offs = Vec::new();
        for s in syms {
            name_offs.push(strtab.len() as u32);
            strtab.extend_from_slice(s.name.as_bytes());
            strtab.push(0);
        }
        // .symtab (first entry null)
        let symtab_off = elf.len();
        elf.extend_from_slice(&[0u8; ELF64_SYM_SIZE]);
        for (s, &no) in syms.iter().zip(&name_offs) {
            push32(&mut elf, no);
            elf.push((s.bind << 4) | s.kind);
            elf.push(0);
            push16(&mut elf, s.shndx);
            push64(&mut elf, s.value);
            push64(&mut elf, s.size);
        }
        let symtab_size = elf.len() - symtab_off;
        let strtab_off = elf.len();
        elf.extend_from_slice(&strtab);
        let shstr_off = elf.len();
        let mut shstr = vec![0u8];
        let mut sh_names = Vec::new();
        for n in [".text", region_name, ".symtab", ".strtab", ".shstrtab"] {
            sh_names.push(shstr.len() as u32);
            shstr.extend_from_slice(n.as_bytes());
            shstr.push(0);
        }
        elf.extend_from_slice(&shstr);
        pad_to(&mut elf, 8);
        let shoff = elf.len();
        // (name, type, flags, addr, offset, size, link, info, align, entsize)
        type Shdr = (u32, u32, u64, u64, u64, u64, u32, u32, u64, u64);
        let shdrs: [Shdr; 6] = [
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
            (
                sh_names[0],
                1,
                0x6,
                TEXT_ADDR,
                text_off as u64,
                TEXT_SIZE,
                0,
                0,
                4096,
                0,
            ),
            (
                sh_names[1],
                1,
                0x2,
                ksyms_addr(),
                ksyms_off as u64,
                ksyms_size,
                0,
                0,
                8,
                0,
            ),
            (
                sh_names[2],
                2,
                0,
                0,
                symtab_off as u64,
                symtab_size as u64,
                4,
                1,
                8,
                24,
            ),
            (
                sh_names[3],
                3,
                0,
                0,
                strtab_off as u64,
                strtab.len() as u64,
                0,
                0,
                1,
                0,
            ),
            (
                sh_names[4],
                3,
                0,
                0,
                shstr_off as u64,
                shstr.len() as u64,
                0,
                0,
                1,
                0,
            ),
        ];
        for (name, ty, flags, addr, off, size, link, info, align, entsize) in shdrs {
            push32(&mut elf, name);
            push32(&mut elf, ty);
            push64(&mut elf, flags);
            push64(&mut elf, addr);
            push64(&mut elf, off);
            push64(&mut elf, size);
            push32(&mut elf, link);
            push32(&mut elf, info);
            push64(&mut elf, align);
            push64(&mut elf, entsize);
        }
        // ELF header + one program header at 64.
        let mut head = Vec::new();
        head.extend_from_slice(b"\x7fELF");
        head.extend_from_slice(&[2, 1, 1, 0]);
        head.extend_from_slice(&[0; 8]);
        push16(&mut head, 2); // ET_EXEC
        push16(&mut head, machine);
        push32(&mut head, 1);
        push64(&mut head, TEXT_ADDR);
        push64(&mut head, 64); // phoff
        push64(&mut head, shoff as u64);
        push32(&mut head, 0); // flags
        push16(&mut head, 64);
        push16(&mut head, 56);
        push16(&mut head, 1);
        push16(&mut head, 64);
        push16(&mut head, 6);
        push16(&mut head, 5);
        push32(&mut head, 1); // PT_LOAD
        push32(&mut head, 5); // R+X
        push64(&mut head, text_off as u64);
        push64(&mut head, TEXT_ADDR);
        push64(&mut head, TEXT_ADDR);
        push64(&mut head, TEXT_SIZE + ksyms_size);
        push64(&mut head, TEXT_SIZE + ksyms_size);
        push64(&mut head, 4096);
        elf[..head.len()].copy_from_slice(&head);
        Layout {
            elf,
            ksyms_offset: ksyms_off,
        }
    }

    fn kernel_syms() -> Vec<TestSym> {
        vec![
            label("_start", 0, STB_GLOBAL),
            label("__kernel_start", 0, STB_GLOBAL),
            func(
                &mangle(&["loongtrace_kernel", "boot", "kmain", HASH]),
                0x100,
                0x80,
                STB_LOCAL,
            ),
            func(
                &mangle(&["loongtrace_kernel", "trap", "handle", HASH]),
                0x200,
                0x40,
                STB_LOCAL,
            ),
            // An alias at the same address: the global one wins.
            func("trap_entry_alias", 0x200, 0x10, STB_GLOBAL),
            // Same address, both local: the larger one wins.
            func("small", 0x300, 0x8, STB_LOCAL),
            func("large", 0x300, 0x20, STB_LOCAL),
            // Local labels, data and undefined symbols are left out.
            label("local_label", 0x400, STB_LOCAL),
            label(".Ltmp0", 0x410, STB_GLOBAL),
            TestSym {
                name: "DATA".into(),
                value: TEXT_ADDR + 0x500,
                size: 8,
                kind: 1,
                bind: STB_GLOBAL,
                shndx: 1,
            },
            TestSym {
                name: "undefined".into(),
                value: 0,
                size: 0,
                kind: STT_FUNC,
                bind: STB_GLOBAL,
                shndx: 0,
            },
            TestSym {
                name: "at_zero".into(),
                value: 0,
                size: 4,
                kind: STT_FUNC,
                bind: STB_LOCAL,
                shndx: 1,
            },
            // A global label in a non-executable section is not code.
            TestSym {
                name: KSYMS_START.into(),
                value: ksyms_addr(),
                size: 0,
                kind: STT_NOTYPE,
                bind: STB_GLOBAL,
                shndx: 2,
            },
            // A label at the very end of .text is outside it.
            label("__text_end", TEXT_SIZE, STB_GLOBAL),
            func("asm_routine", 0x600, 0, STB_GLOBAL),
        ]
    }

    /// A small LoongArch kernel-like ELF (also used by the bench parser's tests).
    pub(crate) fn kernel_elf(ksyms_size: u64) -> Layout {
        build_elf(&kernel_syms(), KSYMS_SECTION, ksyms_size, 0, EM_LOONGARCH)
    }

    #[test]
    fn reads_and_collapses_symbols() {
        let elf = kernel_elf(0x1000).elf;
        let syms = read_symbols(&elf).unwrap();
        let got: Vec<(u64, u32, &str)> = syms
            .iter()
            .map(|s| (s.addr - TEXT_ADDR, s.size, s.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, "_start"),
                (0x100, 0x80, "loongtrace_kernel::boot::kmain"),
                (0x200, 0x10, "trap_entry_alias"),
                (0x300, 0x20, "large"),
                (0x600, 0, "asm_routine"),
            ]
        );
    }

    #[test]
    fn finds_region_by_section() {
        let layout = kernel_elf(0x1000);
        let region = find_region(&layout.elf).unwrap();
        assert_eq!(
            region,
            Region {
                addr: ksyms_addr(),
                file_offset: layout.ksyms_offset as u64,
                size: 0x1000
            }
        );
    }

    #[test]
    fn finds_region_by_symbols() {
        let mut syms = kernel_syms();
        syms.push(TestSym {
            name: KSYMS_END.into(),
            value: ksyms_addr() + 0x800,
            size: 0,
            kind: STT_NOTYPE,
            bind: STB_GLOBAL,
            shndx: 2,
        });
        let layout = build_elf(&syms, ".data", 0x1000, 0, EM_LOONGARCH);
        let region = find_region(&layout.elf).unwrap();
        assert_eq!(
            region,
            Region {
                addr: ksyms_addr(),
                file_offset: layout.ksyms_offset as u64,
                size: 0x800
            }
        );
    }

    #[test]
    fn no_region_is_an_error() {
        let layout = build_elf(
            &[func("f", 0, 4, STB_GLOBAL)],
            ".data",
            0x100,
            0,
            EM_LOONGARCH,
        );
        let err = find_region(&layout.elf).unwrap_err();
        assert_eq!(err, SymtabError::NoRegion);
        assert!(err.to_string().contains("linker/kernel.ld"));
    }

    #[test]
    fn embed_round_trip() {
        let layout = kernel_elf(0x1000);
        let (out, stats) = embed(&layout.elf).unwrap();
        assert_eq!(out.len(), layout.elf.len());
        assert_eq!(stats.symbols, 5);
        assert_eq!(stats.reserved, 0x1000);
        let start = layout.ksyms_offset;
        let end = start + 0x1000;
        assert_eq!(
            out[..start],
            layout.elf[..start],
            "bytes before the region changed"
        );
        assert_eq!(
            out[end..],
            layout.elf[end..],
            "bytes after the region changed"
        );
        assert_eq!(&out[start..start + 8], MAGIC);
        assert!(out[start + stats.bytes..end].iter().all(|&b| b == 0));

        let table = SymbolTable::from_elf(&out).unwrap();
        assert_eq!(table.symbols(), read_symbols(&layout.elf).unwrap());
        let kmain = TEXT_ADDR + 0x100;
        assert_eq!(
            table.address_of("loongtrace_kernel::boot::kmain"),
            Some(kmain)
        );
        assert_eq!(
            table.lookup(kmain + 0x10),
            Some(("loongtrace_kernel::boot::kmain", 0x10, 0x80))
        );
        assert_eq!(
            table.lookup(kmain + 0x80),
            None,
            "past the end of a sized symbol"
        );
        assert_eq!(
            table.lookup(TEXT_ADDR + 0x20),
            Some(("_start", 0x20, 0)),
            "size 0 reaches the next symbol"
        );
        assert_eq!(table.lookup(TEXT_ADDR - 1), None);
        assert_eq!(
            table.lookup(TEXT_ADDR + 0x700),
            Some(("asm_routine", 0x100, 0))
        );
        assert_eq!(table.address_of("nope"), None);

        // Embedding again gives the same bytes.
        let (again, _) = embed(&out).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn blob_layout_matches_the_spec() {
        let syms = vec![
            Symbol {
                addr: 0x20,
                size: 4,
                name: "b".into(),
            },
            Symbol {
                addr: 0x10,
                size: 8,
                name: "a".into(),
            },
            Symbol {
                addr: 0x30,
                size: 0,
                name: "a".into(),
            },
        ];
        let blob = encode(&syms);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            b"LTKSYM01".as_slice(),
            &3u32.to_le_bytes(), &4u32.to_le_bytes(),
            &0x10u64.to_le_bytes(), &8u32.to_le_bytes(), &0u32.to_le_bytes(),
            &0x20u64.to_le_bytes(), &4u32.to_le_bytes(), &2u32.to_le_bytes(),
            &0x30u64.to_le_bytes(), &0u32.to_le_bytes(), &0u32.to_le_bytes(),
            b"a\0b\0",
        ]
        .concat();
        assert_eq!(blob, expected);
        let table = SymbolTable::parse(&blob).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup(0x13), Some(("a", 3, 8)));
    }

    #[test]
    fn too_large_names_both_sizes() {
        let layout = kernel_elf(64);
        let err = embed(&layout.elf).unwrap_err();
        let SymtabError::TooLarge { needed, reserved } = err.clone() else {
            panic!("{err:?}")
        };
        assert_eq!(reserved, 64);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{needed} bytes")) && msg.contains("only 64 bytes"),
            "{msg}"
        );
        assert!(
            msg.contains("raise KSYMS_SIZE in linker/kernel.ld"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_a_region_with_other_data() {
        let layout = build_elf(&kernel_syms(), KSYMS_SECTION, 0x1000, 0xaa, EM_LOONGARCH);
        assert!(matches!(
            embed(&layout.elf),
            Err(SymtabError::RegionNotEmpty { .. })
        ));
    }

    #[test]
    fn rejects_malformed_headers() {
        let good = kernel_elf(0x1000).elf;
        let why = |b: &[u8]| match read_symbols(b) {
            Err(SymtabError::NotElf(w)) => w,
            other => panic!("expected NotElf, got {other:?}"),
        };
        let patched = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        assert_eq!(why(b"\x7fEL"), "no ELF magic");
        assert_eq!(why(&good[..20]), "shorter than an ELF64 header");
        assert_ne!(why(&good[..64]), "shorter than an ELF64 header");
        let shoff = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;
        // e_shentsize, e_shoff, e_phentsize, e_phoff.
        assert!(why(&patched(58, &40u16.to_le_bytes())).contains("section header table"));
        assert!(why(&patched(40, &(shoff as u64 + 4).to_le_bytes())).contains("section header table"));
        assert!(why(&patched(54, &40u16.to_le_bytes())).contains("program header table"));
        assert!(why(&patched(32, &68u64.to_le_bytes())).contains("program header table"));
        // Without program headers their entry size and offset do not matter.
        let mut no_ph = patched(56, &0u16.to_le_bytes());
        no_ph[54..56].copy_from_slice(&0u16.to_le_bytes());
        no_ph[32..40].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(read_symbols(&no_ph).unwrap().len(), 5);
        // The symbol table section (index 3) claims more bytes than the file has.
        let past = patched(shoff + 64 * 3 + 32, &(good.len() as u64).to_le_bytes());
        assert!(why(&past).contains("runs past the end of the file"));
    }

    #[test]
    fn rejects_other_files() {
        let layout = build_elf(&kernel_syms(), KSYMS_SECTION, 0x1000, 0, 62);
        assert_eq!(
            embed(&layout.elf).unwrap_err(),
            SymtabError::WrongMachine(62)
        );
        assert!(matches!(embed(b"hello"), Err(SymtabError::NotElf(_))));
        let mut truncated = kernel_elf(0x1000).elf;
        truncated.truncate(0x1800);
        assert!(
            matches!(embed(&truncated), Err(SymtabError::NotElf(_))),
            "{:?}",
            embed(&truncated)
        );
        // Misaligned input is handled by copying.
        let layout = kernel_elf(0x1000);
        let mut shifted = vec![0u8; layout.elf.len() + 1];
        shifted[1..].copy_from_slice(&layout.elf);
        assert_eq!(read_symbols(&shifted[1..]).unwrap().len(), 5);
    }

    #[test]
    fn parse_rejects_bad_blobs() {
        let zeros = [0u8; 64];
        let err = SymbolTable::parse(&zeros).unwrap_err();
        assert!(err.to_string().contains("no table was embedded"), "{err}");
        assert!(SymbolTable::parse(b"LTKSYM0").is_err());
        let mut blob = encode(&[Symbol {
            addr: 1,
            size: 1,
            name: "x".into(),
        }]);
        blob.pop(); // the NUL of the last name
        assert!(SymbolTable::parse(&blob).is_err());
        let mut blob = encode(&[
            Symbol {
                addr: 1,
                size: 1,
                name: "x".into(),
            },
            Symbol {
                addr: 2,
                size: 1,
                name: "y".into(),
            },
        ]);
        blob[16..24].copy_from_slice(&9u64.to_le_bytes());
        assert!(
            SymbolTable::parse(&blob)
                .unwrap_err()
                .to_string()
                .contains("not sorted")
        );
        let empty = SymbolTable::parse(&encode(&[])).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(5), None);
    }
}
