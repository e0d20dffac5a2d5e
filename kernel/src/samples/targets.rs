//! Stand-ins for the kernel functions Linux's samples trace.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

static SCHEDULED: AtomicU64 = AtomicU64::new(0);

/// Stand-in for `wake_up_process(struct task_struct *p)`: "wakes" task `pid`.
#[inline(never)]
pub fn wake_up_process(pid: u64) -> u64 {
    black_box(pid) ^ 0x5a
}

/// Stand-in for `schedule()`.
#[inline(never)]
pub fn schedule() -> u64 {
    SCHEDULED.fetch_add(1, Ordering::Relaxed) + black_box(1)
}

/// Stand-in for `handle_mm_fault(vma, address, flags)`.
#[inline(never)]
pub fn handle_mm_fault(vma: u64, address: u64, flags: u64) -> u64 {
    black_box(vma) ^ black_box(address).rotate_left(12) ^ black_box(flags)
}
