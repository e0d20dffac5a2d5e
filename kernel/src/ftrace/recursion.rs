//! Per-CPU, per-context recursion protection for callbacks.
//!
//! Each CPU has one flag per context (normal code, an exception or interrupt handler, a handler
//! nested in another, ...) in each of two guards: the core's (the list and assist functions; bits
//! of one word of the per-CPU area) and the tracer callbacks' that guard themselves (the function
//! tracer, the graph entry and return; one byte per context, so that taking and giving back the
//! flag is a byte load and a store on the hottest path). A callback that (directly or not) calls a traced function finds
//! its bit taken and that nested call is not traced; an interrupt that arrives while a callback
//! runs is a different context and is traced normally. The ranges are independent: a function
//! called from inside an ops callback that the core guards (a kprobe handler, say) is still
//! traced by the function tracer, as in Linux, and one called from inside the function or graph
//! tracer is not.

use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

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
    // One bit per trap depth (the normal context, a handler, a handler nested in it, ...): a
    // shift by the depth (depths of 32 and more share the bits of the lower ones, which only
    // turns away calls, never lets one recurse).
    let bit = 1u64 << (arch::trap::depth() & 31);
    let cur = bits();
    if cur & bit != 0 {
        blocked_here();
        return None;
    }
    // Only this CPU writes its word; an interrupt in between restores what it changed.
    set_bits(cur | bit);
    Some(Held { bit })
}

/// A held flag of the callbacks' guard; give it back with [`unlock_callback`].
#[derive(Clone, Copy)]
pub struct HeldCallback {
    flag: &'static AtomicU8,
}

/// [`trylock`] for a tracer callback that guards itself (the function tracer): a guard of its
/// own, so that a callback called by the core's list function, which holds the core's flag,
/// still runs. One byte per trap depth (depths of 8 and more share the bytes of the lower ones,
/// which only turns away calls, never lets one recurse).
#[inline(always)]
pub fn trylock_callback() -> Option<HeldCallback> {
    trylock_callback_at(arch::trap::depth())
}

/// [`trylock_callback`] for a caller that has read the trap depth already (`trap_depth`).
#[inline(always)]
pub fn trylock_callback_at(trap_depth: usize) -> Option<HeldCallback> {
    let flag = arch::boot::this_cpu_byte::<{ arch::boot::PERCPU_CALLBACK_GUARD }>(trap_depth);
    if flag.load(Ordering::Relaxed) != 0 {
        blocked_here();
        return None;
    }
    // Only this CPU writes its bytes; an interrupt in between gives back what it took.
    flag.store(1, Ordering::Relaxed);
    Some(HeldCallback { flag })
}

/// Gives back a flag taken by [`trylock_callback`] (on the CPU that took it).
#[inline(always)]
pub fn unlock_callback(h: HeldCallback) {
    h.flag.store(0, Ordering::Relaxed);
}

/// Counts a call turned away (in line: a call here would make the callers save registers).
#[inline(always)]
fn blocked_here() {
    BLOCKED[arch::cpu::id() % MAX_CPUS].fetch_add(1, Ordering::Relaxed);
}

/// Releases a bit taken by [`trylock`] (on the CPU that took it: callbacks do not migrate).
#[inline(always)]
pub fn unlock(h: Held) {
    set_bits(bits() & !h.bit);
}

/// Whether any recursion flag of this CPU is held.
pub fn any_held() -> bool {
    bits() != 0 || arch::boot::this_cpu().callback_guard.load(Ordering::Relaxed) != 0
}

/// Drops this CPU's recursion flags (after a test case was abandoned inside a callback).
pub fn reset_this_cpu() {
    set_bits(0);
    arch::boot::this_cpu().callback_guard.store(0, Ordering::Relaxed);
}

/// Calls blocked by the guard on every CPU so far.
pub fn blocked() -> u64 {
    BLOCKED.iter().map(|b| b.load(Ordering::Relaxed) as u64).sum()
}
