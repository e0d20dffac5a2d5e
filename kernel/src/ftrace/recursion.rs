//! Per-CPU, per-context recursion protection for callbacks.
//!
//! Each CPU has one bit per context (normal code, an exception or interrupt handler, a handler
//! nested in another, ...), in two ranges: the core's (the list and assist functions) and the
//! tracer callbacks' that guard themselves (the function tracer, the graph entry and return), in
//! one word of the per-CPU area. A callback that (directly or not) calls a traced function finds
//! its bit taken and that nested call is not traced; an interrupt that arrives while a callback
//! runs is a different context and is traced normally. The ranges are independent: a function
//! called from inside an ops callback that the core guards (a kprobe handler, say) is still
//! traced by the function tracer, as in Linux, and one called from inside the function or graph
//! tracer is not.

use core::sync::atomic::{AtomicU32, Ordering};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;
/// Calls each CPU's guards turned away.
static BLOCKED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The per-CPU word of recursion bits (in the per-CPU area: one load or store through `r21`).
#[inline(always)]
fn bits() -> u64 {
    arch::boot::this_cpu_load::<{ arch::boot::PERCPU_RECURSION }>()
}

#[inline(always)]
fn set_bits(v: u64) {
    arch::boot::this_cpu_store::<{ arch::boot::PERCPU_RECURSION }>(v)
}

/// A held recursion bit; give it back with [`unlock`].
#[derive(Clone, Copy)]
pub struct Held {
    bit: u64,
}

/// Takes this CPU's bit of the core's guard (the list and assist functions) for the current
/// context, or returns `None` when it is already taken (the caller is tracing from inside a
/// callback).
#[inline(always)]
pub fn trylock() -> Option<Held> {
    trylock_range(0)
}

/// [`trylock`] for a tracer callback that guards itself (the function tracer): a range of bits
/// of its own, so that a callback called by the core's list function, which holds the core's
/// bit, still runs.
#[inline(always)]
pub fn trylock_callback() -> Option<Held> {
    trylock_range(32)
}

/// One bit per trap depth (the normal context, a handler, a handler nested in it, ...) from
/// `base`: a shift by the depth, which the CPU takes modulo 64 (depths of 32 and more share the
/// bits of the lower ones, which only turns away calls, never lets one recurse).
#[inline(always)]
fn trylock_range(base: u32) -> Option<Held> {
    let bit = 1u64.wrapping_shl(base + (arch::trap::depth() & 31));
    let cur = bits();
    if cur & bit != 0 {
        BLOCKED[arch::cpu::id() % MAX_CPUS].fetch_add(1, Ordering::Relaxed);
        return None;
    }
    // Only this CPU writes its word; an interrupt in between restores what it changed.
    set_bits(cur | bit);
    Some(Held { bit })
}

/// Releases a bit taken by [`trylock`] (on the CPU that took it: callbacks do not migrate).
#[inline(always)]
pub fn unlock(h: Held) {
    set_bits(bits() & !h.bit);
}

/// Whether any recursion bit of this CPU is held.
pub fn any_held() -> bool {
    bits() != 0
}

/// Drops this CPU's recursion bits (after a test case was abandoned inside a callback).
pub fn reset_this_cpu() {
    set_bits(0);
}

/// Calls blocked by the guard on every CPU so far.
pub fn blocked() -> u64 {
    BLOCKED.iter().map(|b| b.load(Ordering::Relaxed) as u64).sum()
}
