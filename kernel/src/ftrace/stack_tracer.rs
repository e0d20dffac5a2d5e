//! The stack tracer (Linux's `stack_trace`, `stack_max_size`, `stack_trace_filter`): at every
//! traced function's entry, the depth of the stack; the deepest seen is kept with the frames
//! that made it up, found by walking the frame pointers.

use super::ops::{FtraceOps, FtraceRegs, OpsFlags};
use core::sync::atomic::{AtomicU64, Ordering};

/// Frames kept for the deepest stack.
pub const MAX_ENTRIES: usize = 64;

/// The deepest stack: per frame, the code address and the stack depth (bytes from the top of
/// the CPU's stack) at which that frame begins.
#[derive(Clone, Copy)]
pub struct MaxStack {
    pub len: usize,
    pub location: [u64; MAX_ENTRIES],
    pub depth: [u64; MAX_ENTRIES],
}

static MAX: spin::Mutex<MaxStack> = spin::Mutex::new(MaxStack { len: 0, location: [0; MAX_ENTRIES], depth: [0; MAX_ENTRIES] });
/// `stack_max_size`: the deepest stack seen, in bytes.
static MAX_SIZE: AtomicU64 = AtomicU64::new(0);

extern "C" fn stack_trace_call(ip: u64, parent_ip: u64, _ops: &FtraceOps, regs: &mut FtraceRegs) {
    let sp = regs.stack_pointer();
    let (low, high) = arch::boot::stack_bounds(arch::cpu::id());
    if sp <= low || sp > high {
        return;
    }
    let depth = high - sp;
    if depth <= MAX_SIZE.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut m) = MAX.try_lock() else { return };
    if depth <= MAX_SIZE.load(Ordering::Relaxed) {
        return;
    }
    // Row 0 is the traced function at its entry (no frame of its own yet); row 1 its caller,
    // whose frame starts at the entry's stack pointer; row k+1 the caller found in row k's frame.
    m.location[0] = ip;
    m.depth[0] = depth;
    m.location[1] = crate::ftrace::fgraph::real_return_address(parent_ip, sp);
    m.depth[1] = depth;
    let mut n = 2;
    if let Some(fp) = regs.frame_pointer() {
        let m = &mut *m;
        arch::unwind::walk(fp, (low, high), MAX_ENTRIES - 2, |f| {
            m.location[n] = crate::ftrace::fgraph::real_return_address(f.ret, f.fp);
            m.depth[n] = high - f.fp;
            n += 1;
            true
        });
    }
    m.len = n;
    MAX_SIZE.store(depth, Ordering::Relaxed);
}

/// The stack tracer's ops (full registers, for the frame pointer at entry).
pub static STACK_OPS: FtraceOps = FtraceOps::new(stack_trace_call, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));

/// `stack_max_size`.
pub fn max_size() -> u64 {
    MAX_SIZE.load(Ordering::Relaxed)
}

/// Writing `stack_max_size` (usually 0, to start measuring again); the frames are dropped with 0.
pub fn set_max_size(v: u64) {
    let mut m = MAX.lock();
    if v == 0 {
        m.len = 0;
    }
    MAX_SIZE.store(v, Ordering::Relaxed);
}

/// A copy of the deepest stack.
pub fn max_stack() -> MaxStack {
    *MAX.lock()
}
