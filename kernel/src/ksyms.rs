//! The kernel's own symbol table (embedded by `tools/ltsym`) and symbolised backtraces.

use crate::symtab::{SymDisplay, Symbol, SymbolTable};
use spin::Once;

unsafe extern "C" {
    static __ksyms_start: u8;
    static __ksyms_end: u8;
}

static TABLE: Once<SymbolTable<'static>> = Once::new();
static RAW: Once<&'static [u8]> = Once::new();

/// The embedded table's bytes exactly as the image holds them (header, entries and names, without
/// the zero fill after them); empty when the image has no valid table.
pub fn raw_table() -> &'static [u8] {
    RAW.get().copied().unwrap_or(&[])
}

/// Parses the embedded table. Returns the number of symbols, or an error text.
pub fn init() -> Result<usize, crate::symtab::SymtabError> {
    // SAFETY: `__ksyms_start..__ksyms_end` is a region of the loaded image reserved by the linker
    // script and never written at run time.
    let blob = unsafe {
        let start = core::ptr::addr_of!(__ksyms_start);
        let len = core::ptr::addr_of!(__ksyms_end) as usize - start as usize;
        core::slice::from_raw_parts(start, len)
    };
    let t = SymbolTable::parse(blob);
    if let Ok(t) = &t {
        RAW.call_once(|| &blob[..t.encoded_len()]);
    }
    let r = t.as_ref().map(|t| t.len()).map_err(|e| *e);
    TABLE.call_once(|| t.unwrap_or_else(|_| SymbolTable::empty()));
    r
}

/// The table (empty before `init` or when the image has none).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn table() -> &'static SymbolTable<'static> {
    static EMPTY: Once<SymbolTable<'static>> = Once::new();
    TABLE.get().unwrap_or_else(|| EMPTY.call_once(SymbolTable::empty))
}

/// The symbol containing `addr` and the offset into it.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn lookup(addr: u64) -> Option<(Symbol<'static>, u64)> {
    if let Some((_, name, start, size)) = crate::module::lookup(addr) {
        return Some((Symbol { addr: start, size: size as u32, name }, addr - start));
    }
    if crate::module::in_area(addr) {
        return None;
    }
    table().lookup(addr)
}

/// [`lookup`] for a walk over ascending addresses: `cursor` (0 at first) carries the position
/// in the kernel's table from one call to the next (see `SymbolTable::lookup_ascending`).
pub fn lookup_ascending(addr: u64, cursor: &mut usize) -> Option<(Symbol<'static>, u64)> {
    if crate::module::in_area(addr) {
        return lookup(addr);
    }
    table().lookup_ascending(addr, cursor)
}

/// The symbol named `name` (full path, or last path segment).
pub fn find(name: &str) -> Option<Symbol<'static>> {
    table().find(name)
}

/// `name+0xoff/0xsize`, or the bare address.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn sym(addr: u64) -> SymDisplay<'static> {
    SymDisplay(lookup(addr), addr)
}

/// Just the name of the function containing `addr` (or `?`).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn name(addr: u64) -> &'static str {
    lookup(addr).map_or("?", |(s, _)| s.name)
}

/// Prints a backtrace starting at frame pointer `fp`, one `prefix#n  addr  symbol` line per frame.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn print_backtrace(prefix: &str, pc: Option<u64>, fp: u64) {
    let mut n = 0;
    if let Some(pc) = pc {
        println!("{prefix}#{n:<2} {pc:#018x} {}", sym(pc));
        n += 1;
    }
    let stack = arch::boot::stack_bounds(arch::cpu::id());
    arch::unwind::walk(fp, stack, 64, |f| {
        let ret = crate::ftrace::fgraph::real_return_address(f.ret, f.fp);
        // The return address points after the call; name the call itself.
        match crate::ftrace::bpf::describe(ret - 4) {
            Some((func, off)) => println!("{prefix}#{n:<2} {ret:#018x} bpf_trampoline[{func}]+{off:#x}"),
            None => println!("{prefix}#{n:<2} {ret:#018x} {}", sym(ret - 4)),
        }
        n += 1;
        true
    });
}
