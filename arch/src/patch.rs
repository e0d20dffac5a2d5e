//! Text patching: replace one aligned instruction word after checking the old one, then `ibar 0`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Why a patch was refused. Nothing was written in either case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchError {
    /// The address is not 4-byte aligned or not inside the kernel's (or a module's) text.
    BadAddress(u64),
    /// The word in memory is not the one the caller expected.
    Mismatch { addr: u64, expected: u32, found: u32 },
}

impl core::fmt::Display for PatchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PatchError::BadAddress(a) => write!(f, "{a:#x} is not an aligned kernel text address"),
            PatchError::Mismatch { addr, expected, found } => {
                write!(f, "text at {addr:#x} is {found:#010x}, expected {expected:#010x}")
            }
        }
    }
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __kernel_start: u8;
}

/// Bounds `[start, end)` of the kernel text that may be patched.
pub fn text_bounds() -> (u64, u64) {
    (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__text_end) as u64)
}

/// Most text ranges outside the image (module text, executable allocations) at once.
pub const MAX_EXTRA_TEXT: usize = 64;
/// Text outside the kernel image that may be patched, as `[start, end)` pairs (0, 0 = free).
static EXTRA_TEXT: [[AtomicU64; 2]; MAX_EXTRA_TEXT] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_EXTRA_TEXT];

/// Makes `[start, end)` (memory the caller owns, mapped read-write-execute for the kernel's life,
/// e.g. a loaded module's text) patchable text. Returns false when the table is full.
pub fn register_text(start: u64, end: u64) -> bool {
    for r in EXTRA_TEXT.iter() {
        if r[0].compare_exchange(0, start, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            r[1].store(end, Ordering::Release);
            return true;
        }
    }
    false
}

/// Stops treating the range that starts at `start` as text (before its memory is freed).
pub fn unregister_text(start: u64) {
    for r in EXTRA_TEXT.iter() {
        if r[0].load(Ordering::Acquire) == start {
            r[1].store(0, Ordering::Release);
            r[0].store(0, Ordering::Release);
            return;
        }
    }
}

/// Whether `addr` is an aligned address inside the kernel text or a registered text range.
pub fn is_text(addr: u64) -> bool {
    let (start, end) = text_bounds();
    if addr & 3 != 0 {
        return false;
    }
    if addr >= start && addr + 4 <= end {
        return true;
    }
    EXTRA_TEXT.iter().any(|r| {
        let s = r[0].load(Ordering::Acquire);
        s != 0 && addr >= s && addr + 4 <= r[1].load(Ordering::Acquire)
    })
}

fn word(addr: u64) -> &'static AtomicU32 {
    // SAFETY: callers check `is_text(addr)`: the address is aligned, inside the image, and mapped
    // read-write through the cached DMW window for the kernel's whole life.
    unsafe { AtomicU32::from_ptr(addr as *mut u32) }
}

/// [`patch_insn`] for an address the caller already knows to be text (a patch site that was
/// validated when it was set up): the old word is still checked, the address is not.
///
/// # Safety
/// `addr` must be 4-byte aligned, mapped, writable kernel or module text that stays mapped for
/// the duration of the call.
#[unsafe(link_section = ".text.patcher")]
pub unsafe fn patch_insn_unchecked(addr: u64, old: u32, new: u32) -> Result<(), PatchError> {
    // SAFETY: per the contract, `addr` is aligned, mapped text.
    let w = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
    let found = w.load(Ordering::Relaxed);
    if found != old {
        return Err(PatchError::Mismatch { addr, expected: old, found });
    }
    w.store(new, Ordering::Release);
    crate::cpu::ibar();
    Ok(())
}

/// Reads the instruction word at `addr`.
pub fn read_insn(addr: u64) -> Result<u32, PatchError> {
    if !is_text(addr) {
        return Err(PatchError::BadAddress(addr));
    }
    Ok(word(addr).load(Ordering::Relaxed))
}

/// Replaces the instruction at `addr` with `new` if it currently is `old`.
///
/// The store is a single aligned 32-bit write, so a CPU fetching the word concurrently sees
/// either the old or the new instruction, never a mix; `ibar 0` then makes this CPU's later
/// fetches see the new word. (Other CPUs are synchronised by the caller, see the ftrace core.)
pub fn patch_insn(addr: u64, old: u32, new: u32) -> Result<(), PatchError> {
    if !is_text(addr) {
        return Err(PatchError::BadAddress(addr));
    }
    let w = word(addr);
    let found = w.load(Ordering::Relaxed);
    if found != old {
        return Err(PatchError::Mismatch { addr, expected: old, found });
    }
    w.store(new, Ordering::Release);
    crate::cpu::ibar();
    Ok(())
}

/// Stores the word at `addr` again, unchanged, then `ibar 0`.
///
/// Used after every other CPU has synchronised following a patch. On real hardware the first
/// store and `ibar` suffice; under QEMU's multi-threaded TCG another CPU may have been
/// translating the page while the first store landed, keeping a translation of the old word that
/// the store did not invalidate (the page was not write-protected yet). A second store, made
/// once no translation can be in progress, is seen by QEMU's write protection and drops such
/// stale translations. It never changes what the word is.
pub fn recommit_insn(addr: u64) -> Result<(), PatchError> {
    if !is_text(addr) {
        return Err(PatchError::BadAddress(addr));
    }
    let w = word(addr);
    w.store(w.load(Ordering::Relaxed), Ordering::Release);
    crate::cpu::ibar();
    Ok(())
}
