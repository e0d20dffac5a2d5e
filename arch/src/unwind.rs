//! Frame-pointer stack walking.
//!
//! With `-Cforce-frame-pointers=yes` every Rust function's prologue stores the return address at
//! `fp - 8` and the caller's frame pointer at `fp - 16`, where `fp` is the stack pointer at entry.

/// One step of a walk: the return address found and the frame pointer it was found under.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub ret: u64,
    pub fp: u64,
}

/// Walks at most `max` frames starting at frame pointer `fp`, calling `visit` for each return
/// address; stops at a null, misaligned, non-increasing or out-of-range frame pointer, or when
/// `visit` returns false. `stack` bounds the valid range of frame pointers.
pub fn walk(mut fp: u64, stack: (u64, u64), max: usize, mut visit: impl FnMut(Frame) -> bool) {
    let (low, high) = stack;
    for _ in 0..max {
        if fp == 0 || fp & 7 != 0 || fp < low + 16 || fp > high {
            return;
        }
        // SAFETY: fp - 16 .. fp lies inside the stack range checked above, which is mapped memory.
        let (ret, next) = unsafe { (*((fp - 8) as *const u64), *((fp - 16) as *const u64)) };
        if ret == 0 || !visit(Frame { ret, fp }) {
            return;
        }
        if next <= fp {
            return;
        }
        fp = next;
    }
}
