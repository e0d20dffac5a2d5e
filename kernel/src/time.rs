//! Time: the stable counter's frequency and conversions from counter ticks.
//!
//! Everything here is `notrace` (no patchable entry): the logger and the tracers' output use it.

use core::sync::atomic::{AtomicU64, Ordering};

static COUNTER_HZ: AtomicU64 = AtomicU64::new(100_000_000);

/// Reads the counter frequency from the CPU (boot CPU, before anything converts ticks).
pub fn init() {
    COUNTER_HZ.store(arch::time::frequency(), Ordering::Relaxed);
}

/// Frequency of the stable counter in Hz.
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn counter_hz() -> u64 {
    COUNTER_HZ.load(Ordering::Relaxed)
}

/// `ticks` in whole microseconds.
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn ticks_to_us(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000 / counter_hz() as u128) as u64
}

/// `ticks` in whole nanoseconds (in 128 bits: `ticks * 10^9` leaves 64 bits after about three
/// minutes of a 100 MHz counter).
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / counter_hz() as u128) as u64
}

/// `ticks` as whole seconds and the microseconds after them (log and trace timestamps).
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn secs_and_us(ticks: u64) -> (u64, u64) {
    let hz = counter_hz();
    (ticks / hz, (ticks % hz) * 1_000_000 / hz)
}
