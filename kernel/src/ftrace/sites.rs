//! The patch-site records: one per `__patchable_function_entries` entry, sorted by address.

use alloc::vec::Vec;
use spin::Once;

/// An immutable record of one patch site (state that changes lives in the core, under its lock).
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Function entry: the first of the two patchable words.
    pub ip: u64,
    /// Demangled symbol name (`?` if the symbol table has none for this address).
    pub name: &'static str,
}

static SITES: Once<&'static [Site]> = Once::new();

/// Symbols that are never traced, whatever a filter says: the tracing machinery itself, the
/// console and logger it prints through, the heap its callbacks may use, the fault paths, and
/// trait methods of those (which `#[patchable_function_entry]` cannot mark). Matched as globs
/// against the full demangled path.
pub const NOTRACE_POLICY: &[&str] = &[
    "loongtrace_kernel::ftrace::*",
    "<loongtrace_kernel::ftrace::*",
    "loongtrace_kernel::ringbuf::*",
    "<loongtrace_kernel::ringbuf::*",
    "loongtrace_kernel::console::*",
    "<loongtrace_kernel::console::*",
    "loongtrace_kernel::logger::*",
    "<loongtrace_kernel::logger::*",
    "loongtrace_kernel::heap::*",
    "<loongtrace_kernel::heap::*",
    "loongtrace_kernel::panic::*",
    "<loongtrace_kernel::panic::*",
    "loongtrace_kernel::ksyms::*",
    "loongtrace_kernel::symtab::*",
    "<loongtrace_kernel::symtab::*",
    "loongtrace_kernel::selftest::on_*",
    // The allocator shims every allocation enters through, and the panic entry.
    "__rustc::*",
    // Arch code instantiated or inlined into the kernel crate (unwinding, decoding).
    "arch::*",
    "<arch::*",
];

/// Whether `name` is covered by [`NOTRACE_POLICY`]. A site without a symbol (`?`, e.g. an image
/// without the embedded table) cannot be checked against the policy and is never traced either.
pub fn notrace_by_policy(name: &str) -> bool {
    name == "?" || NOTRACE_POLICY.iter().any(|p| crate::glob::glob_match(p, name))
}

/// Builds the table from the compiler's list (once, at boot).
pub fn build(entries: impl Iterator<Item = u64>) -> &'static [Site] {
    SITES.call_once(|| {
        let mut v: Vec<Site> = entries
            .map(|ip| Site { ip, name: crate::ksyms::lookup(ip).map_or("?", |(s, _)| s.name) })
            .collect();
        v.sort_unstable_by_key(|s| s.ip);
        v.dedup_by_key(|s| s.ip);
        v.leak()
    })
}

/// All sites, sorted by `ip` (empty before boot-time init).
#[inline(always)]
pub fn all() -> &'static [Site] {
    SITES.get().copied().unwrap_or(&[])
}

/// Index of the site whose entry is `ip`. Hand-written so the hot path calls nothing traceable.
#[inline(always)]
pub fn index_of(ip: u64) -> Option<usize> {
    let s = all();
    let (mut lo, mut hi) = (0usize, s.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let v = s[mid].ip;
        if v == ip {
            return Some(mid);
        } else if v < ip {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// A set of site indices (bitmap).
#[derive(Clone, Debug, Default)]
pub struct SiteSet {
    bits: Vec<u64>,
}

impl SiteSet {
    /// An empty set sized for the site table.
    pub fn new() -> Self {
        SiteSet { bits: alloc::vec![0; all().len().div_ceil(64)] }
    }
    #[inline(always)]
    pub fn contains(&self, i: usize) -> bool {
        match self.bits.get(i / 64) {
            Some(w) => w & (1 << (i % 64)) != 0,
            None => false,
        }
    }
    pub fn insert(&mut self, i: usize) {
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
    }
    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
    }
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }
    /// Indices in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| wi * 64 + b)
        })
    }
}
