//! The kernel heap: `linked_list_allocator` behind a spin lock that also masks interrupts.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use linked_list_allocator::Heap;
use spin::Mutex;

/// Heap size, carved out of low RAM right after the kernel image.
pub const HEAP_SIZE: usize = 64 * 1024 * 1024;

/// The byte freed blocks are filled with while [`poison_frees`] is on.
pub const FREED_BYTE: u8 = 0xfb;
static POISON_FREES: AtomicBool = AtomicBool::new(false);

/// While on, every freed block is filled with [`FREED_BYTE`] before it goes back to the
/// allocator, so that code still reading it (or executing it) after the free finds garbage
/// instead of the old contents (the removal tests use this).
pub fn poison_frees(on: bool) {
    POISON_FREES.store(on, Ordering::Release);
}

struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

unsafe extern "C" {
    static __kernel_end: u8;
}

// SAFETY: allocation and deallocation are serialised by the lock, taken with interrupts masked
// so an interrupt handler that allocates cannot deadlock against the code it interrupted.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        arch::cpu::without_irqs(|| {
            self.0.lock().allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if POISON_FREES.load(Ordering::Relaxed) {
            // SAFETY: the caller gives back `layout.size()` bytes at `ptr` that it owned.
            unsafe { ptr.write_bytes(FREED_BYTE, layout.size()) };
        }
        arch::cpu::without_irqs(|| {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this `layout`.
            unsafe { self.0.lock().deallocate(NonNull::new_unchecked(ptr), layout) }
        })
    }
}

/// Gives the heap its memory. Call once, before the first allocation.
pub fn init() {
    // SAFETY: the region after `__kernel_end` is unused low RAM (QEMU `virt` has 256 MiB of low
    // RAM; the image starts at 2 MiB and is far smaller than 128 MiB), owned by the heap from now on.
    unsafe {
        let start = core::ptr::addr_of!(__kernel_end) as *mut u8;
        HEAP.0.lock().init(start, HEAP_SIZE);
    }
}

/// Whether `addr` lies in the heap (an object there was allocated, not built into the image).
pub fn contains(addr: usize) -> bool {
    let start = core::ptr::addr_of!(__kernel_end) as usize;
    (start..start + HEAP_SIZE).contains(&addr)
}

/// Bytes currently allocated.
pub fn used() -> usize {
    arch::cpu::without_irqs(|| HEAP.0.lock().used())
}

/// Bytes currently free.
pub fn free() -> usize {
    arch::cpu::without_irqs(|| HEAP.0.lock().free())
}
