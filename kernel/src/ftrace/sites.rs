//! The patch-site records: one per `__patchable_function_entries` entry, sorted by address.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, Ordering};

unsafe extern "C" {
    static __start_patchable_function_entries: u64;
    static __stop_patchable_function_entries: u64;
}

/// The compiler's records: for each patchable function, the address of its first prefix `nop`
/// (8 bytes before the entry; see [`function_entries`]).
pub fn patchable_entries() -> &'static [u64] {
    // SAFETY: the linker script brackets the section, an array of 8-byte absolute addresses.
    unsafe {
        let start = core::ptr::addr_of!(__start_patchable_function_entries);
        let n = (core::ptr::addr_of!(__stop_patchable_function_entries) as usize - start as usize) / 8;
        core::slice::from_raw_parts(start, n)
    }
}

/// The entry address of every patchable function.
pub fn function_entries() -> impl Iterator<Item = u64> {
    patchable_entries().iter().map(|&r| arch::ftrace::site_ip(r))
}

/// An immutable record of one patch site (state that changes lives in the core, under its lock).
/// Kept to the entry and the name: the module a site belongs to is a range of indices in the
/// table (`Table::modules`), not a field of every site.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Function entry: the first of the two patchable words (0 for a vacant module slot).
    pub ip: u64,
    /// Demangled symbol name (`?` if the symbol table has none for this address). For a module
    /// function the name lives in the module's memory and is valid while the module is loaded
    /// (its sites are removed from the table before it is freed).
    pub name: &'static str,
}

impl Site {
    /// A slot of the module part of the table that no module uses.
    pub const VACANT: Site = Site { ip: 0, name: "" };
}

/// The site table: kernel sites first (indices `0..kernel_len`, sorted by `ip`), then module
/// sites at stable indices (a module's sites keep their indices while it is loaded; slots of
/// unloaded modules are vacant and reused). `by_ip` lists the indices of the module entries
/// sorted by entry; `modules` names the index range of every loaded module.
pub struct Table {
    pub sites: Vec<Site>,
    pub kernel_len: usize,
    pub by_ip: Vec<u32>,
    pub modules: Vec<(core::ops::Range<usize>, &'static str)>,
}

impl Table {
    /// A table with `sites` as its module part (kernel part copied from `self`) and `modules`
    /// as the index ranges of the loaded modules.
    pub fn with_module_part(&self, module: Vec<Site>, modules: Vec<(core::ops::Range<usize>, &'static str)>) -> Table {
        let mut sites = Vec::with_capacity(self.kernel_len + module.len());
        sites.extend_from_slice(&self.sites[..self.kernel_len]);
        sites.extend(module);
        let mut by_ip: Vec<u32> = (self.kernel_len..sites.len()).filter(|&i| sites[i].ip != 0).map(|i| i as u32).collect();
        by_ip.sort_unstable_by_key(|&i| sites[i as usize].ip);
        Table { sites, kernel_len: self.kernel_len, by_ip, modules }
    }

    /// The module site `i` belongs to (`""` for the kernel and vacant slots).
    pub fn module_of(&self, i: usize) -> &'static str {
        if i < self.kernel_len {
            return "";
        }
        self.modules.iter().find(|(r, _)| r.contains(&i)).map_or("", |m| m.1)
    }
}

/// The published table (null before boot-time init). Replaced only under the core lock; a
/// replaced table is freed once no CPU can be inside a tracing call that began before.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());

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
    "loongtrace_kernel::selftest::on_*",
    // The allocator shims every allocation enters through, and the panic entry.
    "__rustc::*",
    // Arch code instantiated or inlined into the kernel crate (unwinding, decoding), and the
    // shared formats (symbol-table lookups used by the tracer's output).
    "arch::*",
    "<arch::*",
    "formats::*",
    "<formats::*",
];

/// Whether `name` is covered by [`NOTRACE_POLICY`]. A site without a symbol (`?`, e.g. an image
/// without the embedded table) cannot be checked against the policy and is never traced either.
pub fn notrace_by_policy(name: &str) -> bool {
    static POLICY: spin::Once<crate::glob::PrefixSet<'static>> = spin::Once::new();
    name == "?" || POLICY.call_once(|| crate::glob::PrefixSet::new(NOTRACE_POLICY)).matches(name)
}

/// Builds the table from the compiler's list (once, at boot).
pub fn build(entries: impl Iterator<Item = u64>) -> &'static [Site] {
    if TABLE.load(Ordering::Acquire).is_null() {
        let mut v: Vec<Site> = entries.map(|ip| Site { ip, name: "" }).collect();
        v.sort_unstable_by_key(|s| s.ip);
        v.dedup_by_key(|s| s.ip);
        v.shrink_to_fit();
        // The names in one walk over the symbol table (both ascending by address).
        let mut cursor = 0;
        for s in &mut v {
            s.name = crate::ksyms::lookup_ascending(s.ip, &mut cursor).map_or("?", |(sym, _)| sym.name);
        }
        let kernel_len = v.len();
        let table = Box::new(Table { sites: v, kernel_len, by_ip: Vec::new(), modules: Vec::new() });
        TABLE.store(Box::into_raw(table), Ordering::Release);
    }
    all()
}

/// The current table.
#[inline(always)]
pub fn table() -> Option<&'static Table> {
    let p = TABLE.load(Ordering::Acquire);
    // SAFETY: a published table stays valid until every CPU left the tracing calls that may have
    // loaded it (see `publish`); callers outside tracing calls hold the core lock, under which
    // tables are replaced.
    if p.is_null() { None } else { Some(unsafe { &*p }) }
}

/// Publishes `new` and returns the old table, to be freed with [`free_table`] after waiting
/// until no CPU can still be reading it.
pub(crate) fn publish(new: Table) -> *mut Table {
    TABLE.swap(Box::into_raw(Box::new(new)), Ordering::AcqRel)
}

/// Frees a table returned by [`publish`].
///
/// # Safety
/// `old` came from `publish`, and every CPU has left the tracing calls that began before it was
/// replaced.
pub(crate) unsafe fn free_table(old: *mut Table) {
    if !old.is_null() {
        // SAFETY: per the contract, from Box::into_raw and no longer read by anyone.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// All sites, by index (empty before boot-time init). Module slots may be vacant (`ip` 0).
#[inline(always)]
pub fn all() -> &'static [Site] {
    table().map_or(&[], |t| t.sites.as_slice())
}

/// The module site `i` belongs to (`""` for the kernel).
pub fn module_of(i: usize) -> &'static str {
    table().map_or("", |t| t.module_of(i))
}

/// Position of `ip` among `len` ascending keys read by `key` (a binary search the hot path can
/// call: inlined, nothing traceable).
#[inline(always)]
fn search(len: usize, key: impl Fn(usize) -> u64, ip: u64) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let v = key(mid);
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

/// Index of the site whose entry is `ip` (kernel part, then module part).
#[inline(always)]
pub fn index_of(ip: u64) -> Option<usize> {
    let t = table()?;
    search(t.kernel_len, |i| t.sites[i].ip, ip)
        .or_else(|| search(t.by_ip.len(), |k| t.sites[t.by_ip[k] as usize].ip, ip).map(|k| t.by_ip[k] as usize))
}

/// A set of site indices (bitmap).
#[derive(Clone, Debug, Default)]
pub struct SiteSet {
    bits: Vec<u64>,
}

impl SiteSet {
    /// An empty set sized for the site table.
    /// The set whose bit `i % 64` of word `i / 64` says whether it contains `i`.
    pub fn from_bits(bits: Vec<u64>) -> Self {
        SiteSet { bits }
    }
    /// The words of the set (bit `i % 64` of word `i / 64` is site `i`).
    #[inline]
    pub fn words(&self) -> &[u64] {
        &self.bits
    }
    /// Word `w` of the set (sites `64 * w ..= 64 * w + 63`), 0 beyond its end.
    #[inline(always)]
    pub fn word(&self, w: usize) -> u64 {
        self.bits.get(w).copied().unwrap_or(0)
    }
    /// A set that contains nothing (usable in a `static`).
    pub const fn empty() -> Self {
        SiteSet { bits: Vec::new() }
    }
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
    /// Removes every index in `range`; returns whether any was in the set.
    pub fn remove_range(&mut self, range: core::ops::Range<usize>) -> bool {
        let mut any = false;
        for i in range {
            any |= self.contains(i);
            self.remove(i);
        }
        any
    }
    /// Whether any index in `range` is in the set.
    pub fn intersects(&self, range: core::ops::Range<usize>) -> bool {
        range.into_iter().any(|i| self.contains(i))
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
