//! The module area: executable memory out of `bl` range of kernel text, shared by the module
//! loader and every code generator (Linux's `execmem`).
//!
//! Physical `0x0c00_0000..0x1000_0000` (the top 64 MiB of QEMU `virt`'s 256 MiB of low RAM),
//! used through the cached DMW window. Kernel text starts at 2 MiB, so every address in the area
//! is more than 128 MiB away from every kernel instruction: no module site can `bl` to
//! `ftrace_caller`, and no kernel site can `bl` into the area; `pcalau12i` pairs (±2 GiB) and
//! `pcaddu18i + jirl` (`R_LARCH_CALL36`, ±128 GiB) reach across. Any two addresses in the area are
//! less than 64 MiB apart, so code anywhere in the area reaches code anywhere else in it with a
//! `bl`.

use core::alloc::Layout;
use core::ptr::NonNull;
use linked_list_allocator::Heap;

/// Physical start of the module area.
pub const AREA_PHYS: u64 = 0x0c00_0000;
/// Size of the module area.
pub const AREA_SIZE: u64 = 0x0400_0000;
/// Virtual start of the module area (cached DMW window).
pub const AREA_BASE: u64 = 0x9000_0000_0000_0000 | AREA_PHYS;

static AREA: spin::Mutex<Heap> = spin::Mutex::new(Heap::empty());

/// Gives the module area its memory (at boot).
pub fn init() {
    // SAFETY: the area is low RAM that nothing else uses (the heap ends at 2 MiB + image + 64 MiB,
    // far below); it is mapped read-write-execute through DMW1 for the kernel's whole life.
    unsafe { AREA.lock().init(AREA_BASE as *mut u8, AREA_SIZE as usize) };
}

/// Bytes of the module area in use.
pub fn area_used() -> usize {
    AREA.lock().used()
}

/// `[start, end)` of the module area.
pub fn area() -> (u64, u64) {
    (AREA_BASE, AREA_BASE + AREA_SIZE)
}

/// Whether `addr` lies in the module area.
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn in_area(addr: u64) -> bool {
    (AREA_BASE..AREA_BASE + AREA_SIZE).contains(&addr)
}

/// Distance in bytes from the start of kernel text to `addr`.
pub fn distance_from_kernel_text(addr: u64) -> u64 {
    addr.abs_diff(arch::patch::text_bounds().0)
}

/// Executable memory in the module area (for generated trampolines).
#[derive(Debug, PartialEq, Eq)]
pub struct ExecMem {
    pub addr: u64,
    pub size: usize,
    align: usize,
}

/// Why executable memory could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecError {
    /// Zero size, or an alignment that is not a power of two of at least 4.
    BadRequest,
    /// The area is full (or too fragmented).
    NoSpace,
    /// No memory in the area is within `bl` reach of the given address.
    OutOfReach(u64),
    /// Too many text ranges are registered.
    TooManyRanges,
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExecError::BadRequest => write!(f, "bad size or alignment"),
            ExecError::NoSpace => write!(f, "module area full"),
            ExecError::OutOfReach(a) => write!(f, "no module-area memory within bl reach of {a:#x}"),
            ExecError::TooManyRanges => write!(f, "too many executable ranges"),
        }
    }
}

/// `size` bytes of the area, not zeroed and not registered as text: for a caller that lays out
/// an image itself and registers its text part (the module loader). Free with [`free_raw`].
pub fn alloc_raw(size: usize, align: usize) -> Option<u64> {
    let layout = Layout::from_size_align(size, align).ok()?;
    AREA.lock().allocate_first_fit(layout).ok().map(|p| p.as_ptr() as u64)
}

/// Returns memory from [`alloc_raw`] (same size and alignment); no CPU may run it any more.
pub fn free_raw(addr: u64, size: usize, align: usize) {
    if let (Ok(layout), Some(p)) = (Layout::from_size_align(size, align), NonNull::new(addr as *mut u8)) {
        // SAFETY: `addr` came from `alloc_raw` with this size and alignment.
        unsafe { AREA.lock().deallocate(p, layout) };
    }
}

/// Allocates `size` bytes of executable memory (zeroed, patchable with `arch::patch`) in the
/// module area, where every module's sites can reach it with a `bl`. Free with [`free_exec`].
pub fn alloc_exec(size: usize, align: usize) -> Result<ExecMem, ExecError> {
    if size == 0 || !align.is_power_of_two() || align < 4 {
        return Err(ExecError::BadRequest);
    }
    let addr = alloc_raw(size, align).ok_or(ExecError::NoSpace)?;
    if !arch::patch::register_text(addr, addr + size as u64) {
        free_raw(addr, size, align);
        return Err(ExecError::TooManyRanges);
    }
    // SAFETY: freshly allocated from the area, owned by the caller from now on.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, size) };
    Ok(ExecMem { addr, size, align })
}

/// Like [`alloc_exec`], but fails unless the whole block is within `bl` reach of `near` (e.g. a
/// module function the trampoline will be attached to).
pub fn alloc_exec_near(near: u64, size: usize, align: usize) -> Result<ExecMem, ExecError> {
    let m = alloc_exec(size, align)?;
    if !arch::insn::bl_reachable(near, m.addr) || !arch::insn::bl_reachable(near, m.addr + size as u64 - 4) {
        // SAFETY: just allocated, never published.
        unsafe { free_exec(m) };
        return Err(ExecError::OutOfReach(near));
    }
    Ok(m)
}

/// Returns executable memory to the area.
///
/// # Safety
/// No CPU may execute or be about to execute the memory any more (e.g. the trampoline was
/// detached and `ftrace::quiesce::synchronize_trampolines` returned true).
pub unsafe fn free_exec(m: ExecMem) {
    arch::patch::unregister_text(m.addr);
    free_raw(m.addr, m.size, m.align);
}
