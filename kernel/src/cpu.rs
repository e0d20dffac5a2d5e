//! CPU bookkeeping: which CPUs reached Rust code and are online, and each boot stack's canary.

use alloc::string::String;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of CPUs that reached Rust code.
pub static CPUS_UP: AtomicUsize = AtomicUsize::new(0);

/// Bit per CPU that finished its start-up.
static ONLINE: AtomicU64 = AtomicU64::new(0);

/// CPUs online (bit mask).
#[inline]
pub fn online_mask() -> u64 {
    ONLINE.load(Ordering::Acquire)
}

/// Number of CPUs online.
pub fn online() -> usize {
    online_mask().count_ones() as usize
}

/// Marks this CPU online (end of its start-up).
pub fn mark_online() {
    ONLINE.fetch_or(1 << arch::cpu::id(), Ordering::AcqRel);
}

/// Written at the low end of every boot stack; a stack that overflowed has overwritten it.
const STACK_CANARY: u64 = 0x57ac_c0de_57ac_c0de;
const CANARY_WORDS: usize = 8;

fn canary_words(cpu: usize) -> &'static [AtomicU64] {
    let (low, _) = arch::boot::stack_bounds(cpu);
    // SAFETY: the lowest 64 bytes of this CPU's boot stack: mapped, 8-byte aligned, and only
    // reached by the stack if it overflows, which is what the canary detects.
    unsafe { core::slice::from_raw_parts(low as *const AtomicU64, CANARY_WORDS) }
}

/// Puts the canary at the bottom of `cpu`'s stack.
pub fn plant_stack_canary(cpu: usize) {
    canary_words(cpu).iter().for_each(|w| w.store(STACK_CANARY, Ordering::Relaxed));
}

/// Checks this CPU's stack canary.
pub fn check_stack_canary() -> Result<(), String> {
    let cpu = arch::cpu::id();
    match canary_words(cpu).iter().position(|w| w.load(Ordering::Relaxed) != STACK_CANARY) {
        None => Ok(()),
        Some(i) => Err(alloc::format!("cpu{cpu}'s boot stack overflowed (canary word {i} overwritten)")),
    }
}

/// What the self-test harness checks after every case on behalf of the CPU bookkeeping.
pub const ISOLATION_CHECKS: &[(&str, fn() -> Result<(), String>)] = &[("boot stack canary", check_stack_canary)];
