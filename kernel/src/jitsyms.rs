//! Symbols of code generated at run time (JITed BPF programs, BPF trampolines): the kernel's
//! backtraces name them, and GDB learns them through its JIT interface.
//!
//! GDB's JIT interface (GDB manual, "JIT Compilation Interface"): the program keeps a descriptor
//! named `__jit_debug_descriptor` with a doubly linked list of entries, each pointing at an
//! object file in memory, and calls the empty function `__jit_debug_register_code` after adding
//! or removing one, with the action in the descriptor. GDB, which finds both symbols in
//! `target/loongtrace.elf`, reads the list when it attaches and sets a breakpoint on the function
//! to follow changes; each object (`formats::jitelf`) gives the code's name and its call-frame
//! information, so `bt` inside a JITed program walks through it and its trampoline to the traced
//! function's caller.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

pub use formats::jitelf::Shape;

/// `struct jit_code_entry`.
#[repr(C)]
struct CodeEntry {
    next: *mut CodeEntry,
    prev: *mut CodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// `struct jit_descriptor`.
#[repr(C)]
struct Descriptor {
    version: u32,
    /// 0: nothing, 1: `relevant_entry` was registered, 2: it is being unregistered.
    action_flag: u32,
    relevant_entry: *mut CodeEntry,
    first_entry: *mut CodeEntry,
}

/// The descriptor GDB reads (its symbol name is the interface).
#[repr(transparent)]
pub struct JitDescriptor(UnsafeCell<Descriptor>);

// SAFETY: written only under `SYMS`' lock; GDB reads it while the CPUs are stopped.
unsafe impl Sync for JitDescriptor {}

#[unsafe(no_mangle)]
#[used]
pub static __jit_debug_descriptor: JitDescriptor =
    JitDescriptor(UnsafeCell::new(Descriptor { version: 1, action_flag: 0, relevant_entry: core::ptr::null_mut(), first_entry: core::ptr::null_mut() }));

/// The function GDB sets its breakpoint on: called after every change of the list.
#[unsafe(no_mangle)]
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty instruction sequence; it keeps the call and the function from being
    // folded away, and orders the descriptor's stores before it (GDB reads them here).
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

/// One registered piece of code.
struct Sym {
    name: String,
    start: u64,
    end: u64,
    /// The object GDB reads, and its list node (boxed: their addresses do not move).
    _elf: Box<[u8]>,
    node: Box<CodeEntry>,
}

// SAFETY: the raw pointers in `node` point into other `Sym`s of the same list, changed only under
// the lock.
unsafe impl Send for Sym {}

static SYMS: spin::Mutex<Vec<Sym>> = spin::Mutex::new(Vec::new());

/// Names `[start, start + len)` `name` (with the frame `shape`) for backtraces and GDB.
pub fn register(name: String, start: u64, len: u64, shape: Shape) {
    let elf: Box<[u8]> = formats::jitelf::object(&name, start, len, shape).into_boxed_slice();
    let mut syms = SYMS.lock();
    let d = __jit_debug_descriptor.0.get();
    // SAFETY: the descriptor and the list are changed only under `SYMS`' lock, held here.
    unsafe {
        let first = (*d).first_entry;
        let mut node = Box::new(CodeEntry { next: first, prev: core::ptr::null_mut(), symfile_addr: elf.as_ptr(), symfile_size: elf.len() as u64 });
        let p: *mut CodeEntry = &mut *node;
        if !first.is_null() {
            (*first).prev = p;
        }
        (*d).first_entry = p;
        (*d).relevant_entry = p;
        (*d).action_flag = 1;
        syms.push(Sym { name, start, end: start + len, _elf: elf, node });
    }
    __jit_debug_register_code();
}

/// Forgets the code registered at `start` (nothing if none is).
pub fn unregister(start: u64) {
    let mut syms = SYMS.lock();
    let Some(i) = syms.iter().position(|s| s.start == start) else { return };
    let d = __jit_debug_descriptor.0.get();
    let p: *mut CodeEntry = &mut *syms[i].node;
    // SAFETY: as in `register`; `p` is in the list.
    unsafe {
        let (next, prev) = ((*p).next, (*p).prev);
        if !next.is_null() {
            (*next).prev = prev;
        }
        if prev.is_null() {
            (*d).first_entry = next;
        } else {
            (*prev).next = next;
        }
        (*d).relevant_entry = p;
        (*d).action_flag = 2;
    }
    __jit_debug_register_code();
    syms.remove(i);
}

/// Calls `f` with the name of the registered code containing `addr` and the offset of `addr` in
/// it; false if there is none (or the registry is busy: backtraces must not wait).
pub fn describe(addr: u64, f: impl FnOnce(&str, u64)) -> bool {
    let Some(syms) = SYMS.try_lock() else { return false };
    match syms.iter().find(|s| (s.start..s.end).contains(&addr)) {
        Some(s) => {
            f(&s.name, addr - s.start);
            true
        }
        None => false,
    }
}

/// The registered code: (name, start, end), for tests and the shell.
pub fn list() -> Vec<(String, u64, u64)> {
    SYMS.lock().iter().map(|s| (s.name.clone(), s.start, s.end)).collect()
}
