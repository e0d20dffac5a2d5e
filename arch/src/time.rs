//! The stable counter (`rdtime.d`) and the per-CPU timer.

use crate::csr;

/// Reads the stable counter.
#[inline(always)]
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: `rdtime.d` only reads the counter (and the counter id into the second register).
    unsafe { core::arch::asm!("rdtime.d {0}, $zero", out(reg) t, options(nomem, nostack)) };
    t
}

fn cpucfg(word: u32) -> u32 {
    let v: u64;
    // SAFETY: `cpucfg` reads a configuration word; no side effects.
    unsafe { core::arch::asm!("cpucfg {0}, {1}", out(reg) v, in(reg) word as u64, options(nomem, nostack)) };
    v as u32
}

/// Frequency of the stable counter in Hz, from CPUCFG words 4 and 5.
pub fn frequency() -> u64 {
    let base = cpucfg(4) as u64;
    let cfg5 = cpucfg(5);
    let mul = (cfg5 & 0xffff) as u64;
    let div = (cfg5 >> 16) as u64;
    if mul == 0 || div == 0 { base } else { base * mul / div }
}

const TCFG_EN: u64 = 1 << 0;
const TCFG_PERIODIC: u64 = 1 << 1;

/// Starts this CPU's timer: an interrupt every `period` counter ticks (rounded down to 4).
pub fn start_periodic(period: u64) {
    // SAFETY: programming the timer only makes timer interrupts pending; they are delivered only
    // when ECFG.LIE and CRMD.IE allow it.
    unsafe {
        csr::write::<{ csr::TCFG }>((period & !3) | TCFG_EN | TCFG_PERIODIC);
        csr::set_bits::<{ csr::ECFG }>(csr::INT_TIMER);
    }
}

/// Stops this CPU's timer.
pub fn stop() {
    // SAFETY: disabling the timer has no effect beyond stopping its interrupts.
    unsafe { csr::write::<{ csr::TCFG }>(0) };
    ack();
}

/// Acknowledges a timer interrupt.
#[inline(always)]
pub fn ack() {
    // SAFETY: writing 1 to TICLR bit 0 clears the pending timer interrupt.
    unsafe { csr::write::<{ csr::TICLR }>(1) };
}
