//! The kernel's symbol table format `LTKSYM01`: the reader the kernel uses and the writer `ltsym` uses.
//!
//! After linking, the host tool `ltsym` writes a blob into the zero-filled `.ksyms` region of the
//! image (see `docs/formats.md`). All integers are little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LTKSYM01` |
//! | 8 | 4 | `count` |
//! | 12 | 4 | `names_len` |
//! | 16 | 16 × count | entries sorted by `addr`: `addr: u64`, `size: u32`, `name_off: u32` |
//! | 16 + 16 × count | names_len | name pool, each name UTF-8 + NUL |
//!
//! [`SymbolTable::parse`] validates the whole blob once (bounds, NUL termination, UTF-8, sort
//! order), after which lookups are infallible, allocation-free and never panic. Bytes after the
//! name pool (the rest of the zero-filled region) are ignored. [`encode`] writes a blob.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// Magic bytes at the start of a symbol table blob.
pub const MAGIC: [u8; 8] = *b"LTKSYM01";
/// Size of the fixed header (magic, count, names_len).
pub const HEADER_LEN: usize = 16;
/// Size of one entry.
pub const ENTRY_LEN: usize = 16;

/// Why a blob was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymtabError {
    /// Shorter than the 16-byte header.
    TooShort,
    /// Does not start with `LTKSYM01`.
    BadMagic,
    /// The header announces more entries or name bytes than the blob holds.
    Truncated,
    /// An entry's `name_off` is outside the pool or its name has no terminating NUL in the pool.
    BadNameOffset(u32),
    /// Entries are not sorted by ascending address.
    NotSorted,
    /// A name is not valid UTF-8.
    BadUtf8,
}

impl fmt::Display for SymtabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymtabError::TooShort => f.write_str("symbol table shorter than its header"),
            SymtabError::BadMagic => f.write_str("symbol table has bad magic (expected LTKSYM01)"),
            SymtabError::Truncated => f.write_str("symbol table truncated"),
            SymtabError::BadNameOffset(off) => {
                write!(
                    f,
                    "symbol table name offset {off:#x} out of bounds or unterminated"
                )
            }
            SymtabError::NotSorted => f.write_str("symbol table entries not sorted by address"),
            SymtabError::BadUtf8 => f.write_str("symbol table name is not valid UTF-8"),
        }
    }
}

/// One symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Start address.
    pub addr: u64,
    /// Size in bytes (0 if unknown).
    pub size: u32,
    /// Demangled name, e.g. `loongtrace_kernel::boot::kmain`.
    pub name: &'a str,
}

impl Symbol<'_> {
    /// The last `::` segment of the name (`a::b::c` → `c`).
    pub fn short_name(&self) -> &str {
        last_segment(self.name)
    }
}

fn last_segment(path: &str) -> &str {
    match path.rfind("::") {
        Some(i) => &path[i + 2..],
        None => path,
    }
}

#[inline]
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[inline]
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Index of the first NUL byte of `b`, eight bytes per step (a word has a zero byte when
/// `(w - 0x01..01) & !w & 0x80..80` is not zero): a lookup's cost grows with the name's length
/// an eighth as fast as with a byte loop, and does not depend on the name's alignment.
#[inline]
fn find_nul(b: &[u8]) -> Option<usize> {
    const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let z = w.wrapping_sub(LOW) & !w & HIGH;
        if z != 0 {
            // The lowest flagged byte is the first zero (a borrow only runs upwards).
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == 0).map(|k| i + k)
}

/// A validated, borrowed symbol table.
#[derive(Clone, Copy, Debug)]
pub struct SymbolTable<'a> {
    /// Exactly `count * ENTRY_LEN` bytes.
    entries: &'a [u8],
    /// Exactly `names_len` bytes, checked to be UTF-8 as a whole once by `parse`, so that a
    /// lookup only finds the name's end (and its cost does not depend on where it lies).
    names: &'a str,
    count: usize,
}

/// Which kind of name problem, if any (internal).
enum NameErr {
    Offset,
    Utf8,
}

impl<'a> SymbolTable<'a> {
    /// A table with no symbols (every lookup fails).
    pub const fn empty() -> Self {
        SymbolTable {
            entries: &[],
            names: "",
            count: 0,
        }
    }

    /// Parse and fully validate `blob`. Trailing bytes after the name pool are ignored.
    pub fn parse(blob: &'a [u8]) -> Result<Self, SymtabError> {
        if blob.len() < HEADER_LEN {
            return Err(SymtabError::TooShort);
        }
        if blob.get(..8) != Some(&MAGIC[..]) {
            return Err(SymtabError::BadMagic);
        }
        let count = le_u32(blob, 8).ok_or(SymtabError::TooShort)? as usize;
        let names_len = le_u32(blob, 12).ok_or(SymtabError::TooShort)? as usize;
        let entries_end = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(SymtabError::Truncated)?;
        let names_end = entries_end
            .checked_add(names_len)
            .ok_or(SymtabError::Truncated)?;
        let entries = blob
            .get(HEADER_LEN..entries_end)
            .ok_or(SymtabError::Truncated)?;
        let names = blob
            .get(entries_end..names_end)
            .ok_or(SymtabError::Truncated)?;
        let names = core::str::from_utf8(names).map_err(|_| SymtabError::BadUtf8)?;
        let table = SymbolTable {
            entries,
            names,
            count,
        };

        let mut prev: Option<u64> = None;
        for i in 0..count {
            let (addr, _size, off) = table.raw(i).ok_or(SymtabError::Truncated)?;
            if prev.is_some_and(|p| addr < p) {
                return Err(SymtabError::NotSorted);
            }
            prev = Some(addr);
            match table.name_at(off) {
                Ok(_) => {}
                Err(NameErr::Offset) => return Err(SymtabError::BadNameOffset(off)),
                Err(NameErr::Utf8) => return Err(SymtabError::BadUtf8),
            }
        }
        Ok(table)
    }

    /// Parse the contents of the `.ksyms` region: a region that still starts with zeros (the tool
    /// has not filled it in) yields an empty table; anything else must be a valid blob.
    pub fn parse_region(region: &'a [u8]) -> Result<Self, SymtabError> {
        let head = region.get(..8).unwrap_or(region);
        if head.iter().all(|&b| b == 0) {
            return Ok(Self::empty());
        }
        Self::parse(region)
    }

    /// Bytes of the blob the table was parsed from that belong to it (header, entries, names).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.entries.len() + self.names.len()
    }

    /// Number of symbols.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table has no symbols.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `(addr, size, name_off)` of entry `i`.
    #[inline]
    fn raw(&self, i: usize) -> Option<(u64, u32, u32)> {
        let at = i.checked_mul(ENTRY_LEN)?;
        Some((
            le_u64(self.entries, at)?,
            le_u32(self.entries, at + 8)?,
            le_u32(self.entries, at + 12)?,
        ))
    }

    #[inline]
    fn addr_at(&self, i: usize) -> u64 {
        // Entries were validated by `parse`; the fallback is unreachable.
        le_u64(self.entries, i.wrapping_mul(ENTRY_LEN)).unwrap_or(u64::MAX)
    }

    fn name_at(&self, off: u32) -> Result<&'a str, NameErr> {
        let names: &'a str = self.names;
        let start = off as usize;
        let tail = names.as_bytes().get(start..).ok_or(NameErr::Offset)?;
        let nul = find_nul(tail).ok_or(NameErr::Offset)?;
        // The pool is UTF-8 (checked by `parse`) and the NUL is ASCII, so only a start inside a
        // multi-byte character can make this slice fail.
        names.get(start..start + nul).ok_or(NameErr::Utf8)
    }

    /// Symbol number `i` (in address order).
    pub fn get(&self, i: usize) -> Option<Symbol<'a>> {
        if i >= self.count {
            return None;
        }
        let (addr, size, off) = self.raw(i)?;
        let name = self.name_at(off).ok()?;
        Some(Symbol { addr, size, name })
    }

    /// The symbol containing `addr` and the offset of `addr` into it.
    ///
    /// A symbol covers `[addr, addr + max(size, 1))`; a symbol of size 0 instead covers everything
    /// up to the next symbol's address (the last symbol, if of size 0, only its own address).
    pub fn lookup(&self, addr: u64) -> Option<(Symbol<'a>, u64)> {
        self.resolve(addr, self.count_at_or_below(addr, 0, self.count))
    }

    /// [`lookup`](Self::lookup) for addresses in ascending order: `cursor` (0 at first) keeps
    /// where the previous address was found, and the search gallops on from there, so a walk over
    /// ascending addresses costs the logarithm of the gap between them, not of the table. An
    /// address below the previous one starts over from the beginning.
    pub fn lookup_ascending(&self, addr: u64, cursor: &mut usize) -> Option<(Symbol<'a>, u64)> {
        // Entries before the cursor start at or below the previous address.
        if *cursor > self.count || (*cursor > 0 && self.addr_at(*cursor - 1) > addr) {
            *cursor = 0;
        }
        let (mut lo, mut step) = (*cursor, 1usize);
        while lo + step <= self.count && self.addr_at(lo + step - 1) <= addr {
            lo += step;
            step *= 2;
        }
        let lo = self.count_at_or_below(addr, lo, (lo + step - 1).min(self.count));
        *cursor = lo;
        self.resolve(addr, lo)
    }

    /// The number of entries starting at or below `addr`, knowing that it lies in `lo..=hi`.
    fn count_at_or_below(&self, addr: u64, mut lo: usize, mut hi: usize) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.addr_at(mid) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The symbol containing `addr`, given that `lo` entries start at or below it.
    fn resolve(&self, addr: u64, lo: usize) -> Option<(Symbol<'a>, u64)> {
        let has_next = lo < self.count;
        let mut i = lo.checked_sub(1)?;
        let start = self.addr_at(i);
        // Several entries may share a start address; take the first of them that covers `addr`.
        loop {
            let sym = self.get(i)?;
            let off = addr.wrapping_sub(sym.addr);
            let covers = if sym.size == 0 {
                has_next || off == 0
            } else {
                off < sym.size as u64
            };
            if covers {
                return Some((sym, off));
            }
            i = i.checked_sub(1)?;
            if self.addr_at(i) != start {
                return None;
            }
        }
    }

    /// Look a symbol up by name: an exact full-name match if there is one, else the first symbol
    /// (in address order) whose last `::` segment equals `name`.
    pub fn find(&self, name: &str) -> Option<Symbol<'a>> {
        let mut by_segment = None;
        for sym in self.iter() {
            if sym.name == name {
                return Some(sym);
            }
            if by_segment.is_none() && last_segment(sym.name) == name {
                by_segment = Some(sym);
            }
        }
        by_segment
    }

    /// All symbols in address order.
    pub fn iter(&self) -> impl Iterator<Item = Symbol<'a>> + '_ {
        (0..self.count).filter_map(move |i| self.get(i))
    }

    /// A displayable `name+off/size` (or raw address) for `addr`.
    pub fn display(&self, addr: u64) -> SymDisplay<'a> {
        SymDisplay(self.lookup(addr), addr)
    }
}

impl Default for SymbolTable<'_> {
    fn default() -> Self {
        Self::empty()
    }
}

/// Formats a lookup result like the kernel's backtraces: `name+0x1c/0x80` (or `name+0x1c` for a
/// symbol of unknown size), or the raw address `0x9000000000201234` (the second field) when the
/// lookup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymDisplay<'a>(pub Option<(Symbol<'a>, u64)>, pub u64);

impl fmt::Display for SymDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((sym, off)) if sym.size != 0 => {
                write!(f, "{}+{:#x}/{:#x}", sym.name, off, sym.size)
            }
            Some((sym, off)) => write!(f, "{}+{:#x}", sym.name, off),
            None => write!(f, "{:#x}", self.1),
        }
    }
}

/// Encodes symbols `(addr, size, name)` into a blob, sorted by address (stably: symbols at the same
/// address keep their order). Identical names share one copy in the name pool.
pub fn encode<'n>(symbols: impl IntoIterator<Item = (u64, u32, &'n str)>) -> Vec<u8> {
    let mut sorted: Vec<(u64, u32, &str)> = symbols.into_iter().collect();
    sorted.sort_by_key(|s| s.0);
    let mut pool = Vec::new();
    let mut offsets: BTreeMap<&str, u32> = BTreeMap::new();
    let mut blob = Vec::with_capacity(HEADER_LEN + sorted.len() * ENTRY_LEN);
    blob.extend_from_slice(&MAGIC);
    blob.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    blob.extend_from_slice(&[0; 4]); // names_len, filled in below
    for &(addr, size, name) in &sorted {
        let off = *offsets.entry(name).or_insert_with(|| {
            let off = pool.len() as u32;
            pool.extend_from_slice(name.as_bytes());
            pool.push(0);
            off
        });
        blob.extend_from_slice(&addr.to_le_bytes());
        blob.extend_from_slice(&size.to_le_bytes());
        blob.extend_from_slice(&off.to_le_bytes());
    }
    blob[12..16].copy_from_slice(&(pool.len() as u32).to_le_bytes());
    blob.extend_from_slice(&pool);
    blob
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_nul_agrees_with_a_byte_loop() {
        // Every length up to 40 and every position of the first NUL (or none), with bytes that
        // provoke the borrow of the word test: 0x01 and 0x80..0xff around the zero.
        for len in 0..40usize {
            for first in 0..=len {
                for fill in [b'a', 0x01, 0x80, 0xff] {
                    let mut b = std::vec![fill; len];
                    if first < len {
                        b[first] = 0;
                        for x in b.iter_mut().skip(first + 1).step_by(3) {
                            *x = 0;
                        }
                    }
                    assert_eq!(super::find_nul(&b), b.iter().position(|&c| c == 0), "len {len} first {first} fill {fill:#x}");
                }
            }
        }
    }

    extern crate std;
    use super::*;
    use std::string::ToString;

    /// Test-only writer of the `LTKSYM01` format (entries in the given order).
    fn build(syms: &[(u64, u32, &str)]) -> Vec<u8> {
        let mut names = Vec::new();
        let mut entries = Vec::new();
        for &(addr, size, name) in syms {
            let off = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            entries.extend_from_slice(&addr.to_le_bytes());
            entries.extend_from_slice(&size.to_le_bytes());
            entries.extend_from_slice(&off.to_le_bytes());
        }
        raw(syms.len() as u32, &entries, &names)
    }

    fn raw(count: u32, entries: &[u8], names: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&(names.len() as u32).to_le_bytes());
        b.extend_from_slice(entries);
        b.extend_from_slice(names);
        b
    }

    fn entry(addr: u64, size: u32, off: u32) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&addr.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&off.to_le_bytes());
        e
    }

    const BASE: u64 = 0x9000_0000_0020_0000;

    fn sample() -> Vec<u8> {
        build(&[
            (BASE, 0x80, "loongtrace_kernel::boot::kmain"),
            (BASE + 0x80, 0x40, "loongtrace_kernel::tests::func1"),
            (BASE + 0xC0, 0x40, "loongtrace_kernel::tests::func2"),
            // gap 0x100..0x200
            (BASE + 0x200, 0, "_start_asm"),
            (BASE + 0x280, 0x10, "other::func1"),
            (BASE + 0x300, 0x20, "last"),
        ])
    }

    #[test]
    fn parse_and_get() {
        let blob = sample();
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.len(), 6);
        assert!(!t.is_empty());
        assert_eq!(
            t.get(0),
            Some(Symbol {
                addr: BASE,
                size: 0x80,
                name: "loongtrace_kernel::boot::kmain"
            })
        );
        assert_eq!(t.get(5).unwrap().name, "last");
        assert_eq!(t.get(6), None);
        assert_eq!(t.get(usize::MAX), None);
        let names: Vec<&str> = t.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names[3], "_start_asm");
        assert_eq!(t.get(1).unwrap().short_name(), "func1");
    }

    #[test]
    fn lookup_cases() {
        let blob = sample();
        let t = SymbolTable::parse(&blob).unwrap();
        let name = |a: u64| t.lookup(a).map(|(s, o)| (s.name, o));
        // before first
        assert_eq!(name(0), None);
        assert_eq!(name(BASE - 1), None);
        // starts, middles, ends
        assert_eq!(name(BASE), Some(("loongtrace_kernel::boot::kmain", 0)));
        assert_eq!(
            name(BASE + 0x1c),
            Some(("loongtrace_kernel::boot::kmain", 0x1c))
        );
        assert_eq!(
            name(BASE + 0x7f),
            Some(("loongtrace_kernel::boot::kmain", 0x7f))
        );
        assert_eq!(
            name(BASE + 0x80),
            Some(("loongtrace_kernel::tests::func1", 0))
        );
        assert_eq!(
            name(BASE + 0xBF),
            Some(("loongtrace_kernel::tests::func1", 0x3f))
        );
        assert_eq!(
            name(BASE + 0xC0),
            Some(("loongtrace_kernel::tests::func2", 0))
        );
        assert_eq!(
            name(BASE + 0xFF),
            Some(("loongtrace_kernel::tests::func2", 0x3f))
        );
        // gap
        assert_eq!(name(BASE + 0x100), None);
        assert_eq!(name(BASE + 0x1FF), None);
        // size 0: extends to the next symbol
        assert_eq!(name(BASE + 0x200), Some(("_start_asm", 0)));
        assert_eq!(name(BASE + 0x27F), Some(("_start_asm", 0x7f)));
        assert_eq!(name(BASE + 0x280), Some(("other::func1", 0)));
        assert_eq!(name(BASE + 0x290), None);
        assert_eq!(name(BASE + 0x31F), Some(("last", 0x1f)));
        // after last
        assert_eq!(name(BASE + 0x320), None);
        assert_eq!(name(u64::MAX), None);
    }

    #[test]
    fn lookup_zero_size_last_and_extremes() {
        let blob = build(&[
            (0x1000, 0, "a"),
            (u64::MAX - 0xF, 0x10, "top"),
            (u64::MAX, 0, "end"),
        ]);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.lookup(0x1000).unwrap().0.name, "a");
        assert_eq!(
            t.lookup(u64::MAX - 0x10).unwrap(),
            (t.get(0).unwrap(), u64::MAX - 0x1010)
        );
        assert_eq!(t.lookup(u64::MAX - 1).unwrap().0.name, "top");
        assert_eq!(t.lookup(u64::MAX).unwrap(), (t.get(2).unwrap(), 0));

        let blob = build(&[(0x1000, 0x10, "a"), (0x2000, 0, "z")]);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.lookup(0x2000).unwrap().0.name, "z");
        assert_eq!(t.lookup(0x2001), None);
        assert_eq!(t.lookup(0x1010), None);

        // Duplicate start addresses: the first covering one wins.
        let blob = build(&[(0x1000, 0x100, "big"), (0x1000, 0x10, "small")]);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.lookup(0x1008).unwrap().0.name, "small");
        assert_eq!(t.lookup(0x1080).unwrap().0.name, "big");
        assert_eq!(t.lookup(0x1100), None);
    }

    #[test]
    fn ascending_lookups_agree_with_lookup() {
        let names: Vec<std::string::String> = (0..300).map(|i| std::format!("f{i}")).collect();
        let syms: Vec<(u64, u32, &str)> = (0..300u64)
            .map(|i| (0x1000 + (i / 3) * 0x40 + (i % 3) * 8, if i % 7 == 0 { 0 } else { 8 }, names[i as usize].as_str()))
            .collect();
        let blob = build(&syms);
        let t = SymbolTable::parse(&blob).unwrap();
        let mut cursor = 0;
        for addr in (0xff0..0x1000 + 100 * 0x40 + 16).step_by(4) {
            assert_eq!(t.lookup_ascending(addr, &mut cursor), t.lookup(addr), "{addr:#x}");
        }
        // Going back starts over.
        for addr in [0x1800, 0x1004, 0x2000, 0x1000] {
            assert_eq!(t.lookup_ascending(addr, &mut cursor), t.lookup(addr), "{addr:#x}");
        }
        // A cursor past the end (e.g. left from a larger table) starts over too.
        let mut stale = 1000;
        assert_eq!(t.lookup_ascending(0x1804, &mut stale), t.lookup(0x1804));
        let empty = SymbolTable::empty();
        assert_eq!(empty.lookup_ascending(5, &mut cursor), None);
    }

    #[test]
    fn lookup_many_symbols() {
        let names: Vec<std::string::String> = (0..1000).map(|i| std::format!("f{i}")).collect();
        let syms: Vec<(u64, u32, &str)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (BASE + i as u64 * 0x100, 0x80, n.as_str()))
            .collect();
        let blob = build(&syms);
        let t = SymbolTable::parse(&blob).unwrap();
        for i in 0..1000u64 {
            let a = BASE + i * 0x100;
            assert_eq!(t.lookup(a).unwrap().0.name, names[i as usize]);
            assert_eq!(t.lookup(a + 0x7f).unwrap().1, 0x7f);
            assert_eq!(t.lookup(a + 0x80), None);
        }
    }

    #[test]
    fn find_by_name() {
        let blob = sample();
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(
            t.find("loongtrace_kernel::tests::func2").unwrap().addr,
            BASE + 0xC0
        );
        assert_eq!(t.find("kmain").unwrap().addr, BASE);
        // first by address among segment matches
        assert_eq!(
            t.find("func1").unwrap().name,
            "loongtrace_kernel::tests::func1"
        );
        // exact full name beats segment match
        assert_eq!(t.find("other::func1").unwrap().addr, BASE + 0x280);
        assert_eq!(t.find("last").unwrap().addr, BASE + 0x300);
        assert_eq!(t.find("tests::func1"), None);
        assert_eq!(t.find("nope"), None);
        assert_eq!(t.find(""), None);

        let blob = build(&[(0x10, 1, "m::x"), (0x20, 1, "x")]);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.find("x").unwrap().addr, 0x20);
    }

    #[test]
    fn empty_tables() {
        let t = SymbolTable::empty();
        assert_eq!(t.len(), 0);
        assert!(t.is_empty());
        assert_eq!(t.get(0), None);
        assert_eq!(t.lookup(BASE), None);
        assert_eq!(t.find("x"), None);
        assert_eq!(t.iter().count(), 0);
        assert_eq!(SymbolTable::default().len(), 0);

        let blob = build(&[]);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(0), None);

        let zeros = [0u8; 64];
        assert_eq!(SymbolTable::parse_region(&zeros).unwrap().len(), 0);
        assert_eq!(SymbolTable::parse_region(&[]).unwrap().len(), 0);
        assert_eq!(
            SymbolTable::parse(&zeros).unwrap_err(),
            SymtabError::BadMagic
        );
        let blob = sample();
        assert_eq!(SymbolTable::parse_region(&blob).unwrap().len(), 6);
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(
            SymbolTable::parse_region(&bad).unwrap_err(),
            SymtabError::BadMagic
        );
    }

    #[test]
    fn trailing_padding_ignored() {
        let mut blob = sample();
        blob.resize(blob.len() + 4096, 0);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(t.lookup(BASE + 0x300).unwrap().0.name, "last");
    }

    #[test]
    fn errors() {
        assert_eq!(SymbolTable::parse(&[]).unwrap_err(), SymtabError::TooShort);
        assert_eq!(
            SymbolTable::parse(b"LTKSYM01\0\0\0").unwrap_err(),
            SymtabError::TooShort
        );
        let mut b = build(&[]);
        b[7] = b'2';
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::BadMagic);

        // Truncated entries / names.
        let full = sample();
        for cut in [17, 16 + 16 * 6 - 1, full.len() - 1] {
            assert_eq!(
                SymbolTable::parse(&full[..cut]).unwrap_err(),
                SymtabError::Truncated,
                "{cut}"
            );
        }
        // Enormous counts must not overflow.
        let b = raw(u32::MAX, &[], &[]);
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::Truncated);
        let mut b = raw(0, &[], &[]);
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::Truncated);

        // Name offset outside the pool.
        let b = raw(1, &entry(0x10, 4, 5), b"abc\0");
        assert_eq!(
            SymbolTable::parse(&b).unwrap_err(),
            SymtabError::BadNameOffset(5)
        );
        let b = raw(1, &entry(0x10, 4, 4), b"abc\0");
        assert_eq!(
            SymbolTable::parse(&b).unwrap_err(),
            SymtabError::BadNameOffset(4)
        );
        // Unterminated name (NUL only in the trailing padding, outside the pool).
        let mut b = raw(1, &entry(0x10, 4, 0), b"abc");
        b.push(0);
        assert_eq!(
            SymbolTable::parse(&b).unwrap_err(),
            SymtabError::BadNameOffset(0)
        );

        // Not sorted.
        let mut es = entry(0x20, 4, 0);
        es.extend(entry(0x10, 4, 0));
        let b = raw(2, &es, b"a\0");
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::NotSorted);
        // Equal addresses are fine.
        let mut es = entry(0x20, 4, 0);
        es.extend(entry(0x20, 8, 0));
        assert!(SymbolTable::parse(&raw(2, &es, b"a\0")).is_ok());

        // Bad UTF-8.
        let b = raw(1, &entry(0x10, 4, 0), b"a\xFF\0");
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::BadUtf8);
        // A valid pool, but a name starting inside a two-byte character.
        let b = raw(1, &entry(0x10, 4, 1), "\u{e9}x\0".as_bytes());
        assert_eq!(SymbolTable::parse(&b).unwrap_err(), SymtabError::BadUtf8);
        // Bytes after the pool (the zero-filled rest of the region) are not checked.
        let mut b = raw(1, &entry(0x10, 4, 0), b"a\0");
        b.push(0xFF);
        assert!(SymbolTable::parse(&b).is_ok());

        // Names may share bytes (suffix sharing) and be empty.
        let mut es = entry(0x10, 4, 0);
        es.extend(entry(0x20, 4, 2));
        es.extend(entry(0x30, 4, 3));
        let b = raw(3, &es, b"a::b\0");
        let t = SymbolTable::parse(&b).unwrap();
        let names: Vec<&str> = t.iter().map(|s| s.name).collect();
        assert_eq!(names, ["a::b", ":b", "b"]);
        let t_b = raw(1, &entry(0x10, 4, 0), b"\0");
        assert_eq!(SymbolTable::parse(&t_b).unwrap().get(0).unwrap().name, "");

        assert!(
            SymtabError::BadNameOffset(0x20)
                .to_string()
                .contains("0x20")
        );
        assert!(SymtabError::BadMagic.to_string().contains("LTKSYM01"));
    }

    #[test]
    fn display() {
        let blob = sample();
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(
            t.display(BASE + 0x1c).to_string(),
            "loongtrace_kernel::boot::kmain+0x1c/0x80"
        );
        assert_eq!(
            t.display(BASE).to_string(),
            "loongtrace_kernel::boot::kmain+0x0/0x80"
        );
        assert_eq!(t.display(BASE + 0x204).to_string(), "_start_asm+0x4");
        assert_eq!(
            t.display(0x9000_0000_0020_1234).to_string(),
            "0x9000000000201234"
        );
        assert_eq!(SymDisplay(None, 0x1234).to_string(), "0x1234");
        let s = Symbol {
            addr: 0x100,
            size: 0x80,
            name: "f",
        };
        assert_eq!(
            SymDisplay(Some((s, 0x1c)), 0x11c).to_string(),
            "f+0x1c/0x80"
        );
    }

    #[test]
    fn encode_sorts_and_shares_names() {
        let blob = encode([(0x20, 4, "b"), (0x10, 8, "a"), (0x30, 0, "a")]);
        let mut want = Vec::new();
        want.extend_from_slice(b"LTKSYM01");
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(&entry(0x10, 8, 0));
        want.extend_from_slice(&entry(0x20, 4, 2));
        want.extend_from_slice(&entry(0x30, 0, 0));
        want.extend_from_slice(b"a\0b\0");
        assert_eq!(blob, want);
        let t = SymbolTable::parse(&blob).unwrap();
        assert_eq!(t.encoded_len(), blob.len());
        assert_eq!(t.lookup(0x13).map(|(s, o)| (s.name, o)), Some(("a", 3)));
        assert!(SymbolTable::parse(&encode([])).unwrap().is_empty());
    }
}
