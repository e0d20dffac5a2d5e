//! Symbols: the kernel's own table (embedded by `tools/ltsym`), the text other floors own
//! (loaded modules, generated trampolines: registered with [`register_text_owner`] and
//! [`register_generated_text`]), the export table modules link against ([`export_symbol!`]), and
//! symbolised backtraces.

use alloc::boxed::Box;
use formats::symtab::{SymDisplay, Symbol, SymbolTable};
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
pub fn init() -> Result<usize, formats::symtab::SymtabError> {
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

/// Keeps the owner of some text (a loaded module) from going away while it lives: what
/// [`TextOwner::hold`] gives (Linux's `try_module_get`; dropping it is `module_put`).
pub struct Hold(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Hold {
    /// Wraps whatever reference keeps the owner (dropped with the `Hold`).
    pub fn new(reference: impl Send + Sync + 'static) -> Hold {
        Hold(Box::new(reference))
    }
}

/// Text outside the kernel image that an upper floor owns and describes (the module loader's
/// loaded modules, in the module area). Registered once, at boot.
pub struct TextOwner {
    /// The symbol containing `addr`: (owner name, symbol name, start, size). Must not block.
    pub lookup: fn(u64) -> Option<(&'static str, &'static str, u64, u64)>,
    /// The address of symbol `name` (full path or last segment) of owner `owner`.
    pub resolve: fn(&str, &str) -> Option<u64>,
    /// Holds owner `owner` loaded until the [`Hold`] drops; `None` if it is not loaded or going.
    pub hold: fn(&str) -> Option<Hold>,
}

/// Code generated at run time (trampolines) that has no symbol, described by its generator.
pub struct GeneratedText {
    /// `[start, end)` of the generated code containing `addr`. Must not block.
    pub range: fn(u64) -> Option<(u64, u64)>,
    /// For backtraces: (kind, the function it serves, offset of `addr` in it), printed as
    /// `kind[function]+offset`. Must not block.
    pub describe: fn(u64) -> Option<(&'static str, &'static str, u64)>,
}

static TEXT_OWNER: Once<&'static TextOwner> = Once::new();
static GENERATED: Once<&'static GeneratedText> = Once::new();
/// Return-address fix-ups (the graph tracer's `return_to_handler`, the kretprobe trampoline).
static RETURN_ADDRESS_FIXUPS: [Once<fn(u64, u64) -> u64>; 4] = [const { Once::new() }; 4];

/// Registers the owner of the module area's text (once; a second owner is refused).
pub fn register_text_owner(owner: &'static TextOwner) -> bool {
    core::ptr::eq(*TEXT_OWNER.call_once(|| owner), owner)
}

/// Registers the generator of run-time code (once; a second is refused).
pub fn register_generated_text(generated: &'static GeneratedText) -> bool {
    core::ptr::eq(*GENERATED.call_once(|| generated), generated)
}

/// Registers how a backtrace maps a return address found at frame pointer `fp` back to the real
/// one (the graph tracer replaces return addresses with `return_to_handler`, kretprobes with
/// their trampoline). Up to four, at boot; `false` when all are taken.
pub fn set_return_address_fixup(fixup: fn(u64, u64) -> u64) -> bool {
    RETURN_ADDRESS_FIXUPS.iter().any(|slot| core::ptr::fn_addr_eq(*slot.call_once(|| fixup), fixup))
}

/// The real return address for `ret`, found in the frame record at frame pointer `fp`: every
/// registered fix-up applied until none changes it (a function hooked by both the graph tracer
/// and a kretprobe had its return address replaced twice).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn real_return_address(ret: u64, fp: u64) -> u64 {
    let mut r = ret;
    for _ in 0..RETURN_ADDRESS_FIXUPS.len() {
        let next = RETURN_ADDRESS_FIXUPS.iter().filter_map(|s| s.get()).fold(r, |r, fix| fix(r, fp));
        if next == r {
            break;
        }
        r = next;
    }
    r
}

/// `[start, end)` of the generated code containing `addr`, if any.
pub fn generated_range(addr: u64) -> Option<(u64, u64)> {
    GENERATED.get().and_then(|g| (g.range)(addr))
}

/// The address of symbol `name` of owner `owner` (a loaded module's function).
pub fn resolve_in(owner: &str, name: &str) -> Option<u64> {
    TEXT_OWNER.get().and_then(|o| (o.resolve)(owner, name))
}

/// The owner (a loaded module's name) of text at `addr` outside the kernel image.
pub fn owner_of(addr: u64) -> Option<&'static str> {
    if !crate::execmem::area::in_area(addr) {
        return None;
    }
    TEXT_OWNER.get().and_then(|o| (o.lookup)(addr)).map(|(owner, ..)| owner)
}

/// Holds owner `owner` (a loaded module) until the result drops.
pub fn hold(owner: &str) -> Option<Hold> {
    TEXT_OWNER.get().and_then(|o| (o.hold)(owner))
}

/// The symbol containing `addr` and the offset into it.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn lookup(addr: u64) -> Option<(Symbol<'static>, u64)> {
    if crate::execmem::area::in_area(addr) {
        let (_, name, start, size) = TEXT_OWNER.get().and_then(|o| (o.lookup)(addr))?;
        return Some((Symbol { addr: start, size: size as u32, name }, addr - start));
    }
    table().lookup(addr)
}

/// [`lookup`] for a walk over ascending addresses: `cursor` (0 at first) carries the position
/// in the kernel's table from one call to the next (see `SymbolTable::lookup_ascending`).
pub fn lookup_ascending(addr: u64, cursor: &mut usize) -> Option<(Symbol<'static>, u64)> {
    if crate::execmem::area::in_area(addr) {
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
pub fn sym(addr: u64) -> SymText {
    SymText(addr)
}

/// [`sym`]'s text: a run-time code's name (`crate::jitsyms`: a JITed BPF program, a trampoline)
/// for an address in the generated-code area, else the symbol table's `name+0xoff/0xsize`.
pub struct SymText(u64);

impl core::fmt::Display for SymText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let addr = self.0;
        if generated_range(addr).is_some() || crate::execmem::area::in_area(addr) {
            let mut r = None;
            crate::jitsyms::describe(addr, |name, off| r = Some(write!(f, "{name}+{off:#x}")));
            if let Some(r) = r {
                return r;
            }
        }
        SymDisplay(lookup(addr), addr).fmt(f)
    }
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
        if !crate::jitsyms::describe(pc, |name, off| println!("{prefix}#{n:<2} {pc:#018x} {name}+{off:#x}")) {
            println!("{prefix}#{n:<2} {pc:#018x} {}", sym(pc));
        }
        n += 1;
    }
    let stack = arch::boot::stack_bounds(arch::cpu::id());
    arch::unwind::walk(fp, stack, 64, |f| {
        let ret = real_return_address(f.ret, f.fp);
        // The return address points after the call; name the call itself.
        match GENERATED.get().and_then(|g| (g.describe)(ret - 4)) {
            Some((kind, func, off)) => println!("{prefix}#{n:<2} {ret:#018x} {kind}[{func}]+{off:#x}"),
            None => {
                if !crate::jitsyms::describe(ret - 4, |name, off| println!("{prefix}#{n:<2} {ret:#018x} {name}+{:#x}", off + 4)) {
                    println!("{prefix}#{n:<2} {ret:#018x} {}", sym(ret - 4));
                }
            }
        }
        n += 1;
        true
    });
}

/// One entry of the export table: a kernel symbol a loadable module may link against.
#[repr(C)]
pub struct Export {
    pub name: &'static str,
    pub addr: *const (),
}

// SAFETY: an `Export` is immutable after link time; `addr` is only ever read as a number.
unsafe impl Sync for Export {}

/// Puts `$name` = `$addr` into the export table (the `.ksymtab` linker section, Linux's
/// `EXPORT_SYMBOL`): any floor can export without the module loader naming it.
macro_rules! export_symbol {
    ($name:ident, $addr:expr) => {
        const _: () = {
            #[used]
            #[unsafe(link_section = ".ksymtab")]
            static EXPORT: $crate::ksyms::Export = $crate::ksyms::Export { name: stringify!($name), addr: $addr as *const () };
        };
    };
}
pub(crate) use export_symbol;

unsafe extern "C" {
    static __start_ksymtab: u8;
    static __stop_ksymtab: u8;
}

/// The export table, in link order.
pub fn exports() -> &'static [Export] {
    // SAFETY: the linker script brackets the `.ksymtab` input sections, which hold only `Export`
    // values (8-byte aligned, written by `export_symbol!`), with these two symbols.
    unsafe {
        let start = core::ptr::addr_of!(__start_ksymtab) as *const Export;
        let end = core::ptr::addr_of!(__stop_ksymtab) as *const Export;
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

/// The address of exported symbol `name`.
pub fn exported(name: &str) -> Option<u64> {
    exports().iter().find(|e| e.name == name).map(|e| e.addr as u64)
}
