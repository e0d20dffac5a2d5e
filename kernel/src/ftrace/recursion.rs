//! Per-CPU, per-context recursion protection for callbacks.
//!
//! Each CPU has one bit per context: normal code, an exception or interrupt handler, and a
//! handler nested in another. A callback that (directly or not) calls a traced function finds its
//! bit taken and that nested call is not traced; an interrupt that arrives while a callback runs
//! is a different context and is traced normally.

use core::sync::atomic::{AtomicU32, Ordering};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;
static BITS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static BLOCKED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// A held recursion bit; give it back with [`unlock`].
#[derive(Clone, Copy)]
pub struct Held {
    cpu: usize,
    bit: u32,
}

/// Takes this CPU's bit for the current context, or returns `None` when it is already taken
/// (the caller is tracing from inside a callback).
#[inline(always)]
pub fn trylock() -> Option<Held> {
    let cpu = arch::cpu::id() % MAX_CPUS;
    let bit = 1u32 << arch::trap::depth().min(2);
    let bits = &BITS[cpu];
    let cur = bits.load(Ordering::Relaxed);
    if cur & bit != 0 {
        BLOCKED[cpu].fetch_add(1, Ordering::Relaxed);
        return None;
    }
    // Only this CPU writes its word; an interrupt in between restores what it changed.
    bits.store(cur | bit, Ordering::Relaxed);
    Some(Held { cpu, bit })
}

/// Releases a bit taken by [`trylock`].
#[inline(always)]
pub fn unlock(h: Held) {
    let bits = &BITS[h.cpu];
    bits.store(bits.load(Ordering::Relaxed) & !h.bit, Ordering::Relaxed);
}

/// Whether any recursion bit of this CPU is held.
pub fn any_held() -> bool {
    BITS[arch::cpu::id() % MAX_CPUS].load(Ordering::Relaxed) != 0
}

/// Drops this CPU's recursion bits (after a test case was abandoned inside a callback).
pub fn reset_this_cpu() {
    BITS[arch::cpu::id() % MAX_CPUS].store(0, Ordering::Relaxed);
}

/// Calls blocked by the guard on every CPU so far.
pub fn blocked() -> u64 {
    BLOCKED.iter().map(|b| b.load(Ordering::Relaxed) as u64).sum()
}
