//! CPU identity, interrupt masking and barriers.

use crate::csr;

/// This CPU's number, from its per-CPU area (`r21`, set up by `_start`).
#[inline(always)]
pub fn id() -> usize {
    let id: u64;
    // SAFETY: r21 points at this CPU's `boot::PerCpu` from `_start` on and is never changed;
    // its first word is the CPU number.
    unsafe { core::arch::asm!("ld.d {0}, $r21, 0", out(reg) id, options(readonly, nostack, preserves_flags)) };
    id as usize
}

/// This CPU's number as the hardware reports it (CSR CPUID).
#[inline(always)]
pub fn hw_id() -> usize {
    (csr::read::<{ csr::CPUID }>() & 0x1ff) as usize
}

/// Disables interrupts on this CPU and returns whether they were enabled.
#[inline(always)]
pub fn irq_save() -> bool {
    // SAFETY: clearing CRMD.IE only masks interrupts; it is undone by `irq_restore`.
    unsafe { csr::clear_bits::<{ csr::CRMD }>(csr::CRMD_IE) != 0 }
}

/// Re-enables interrupts if `was_enabled`.
#[inline(always)]
pub fn irq_restore(was_enabled: bool) {
    if was_enabled {
        // SAFETY: interrupts were enabled when the matching `irq_save` ran.
        unsafe { csr::set_bits::<{ csr::CRMD }>(csr::CRMD_IE) };
    }
}

/// Enables interrupts on this CPU.
#[inline(always)]
pub fn irq_enable() {
    // SAFETY: the trap vector is installed before the kernel calls this.
    unsafe { csr::set_bits::<{ csr::CRMD }>(csr::CRMD_IE) };
}

/// Whether interrupts are enabled on this CPU.
#[inline(always)]
pub fn irq_enabled() -> bool {
    csr::read::<{ csr::CRMD }>() & csr::CRMD_IE != 0
}

/// Runs `f` with interrupts disabled on this CPU.
#[inline(always)]
pub fn without_irqs<R>(f: impl FnOnce() -> R) -> R {
    let was = irq_save();
    let r = f();
    irq_restore(was);
    r
}

/// Waits for an interrupt.
#[inline(always)]
pub fn idle() {
    // SAFETY: `idle 0` only stalls this CPU until an interrupt is pending.
    unsafe { core::arch::asm!("idle 0", options(nomem, nostack)) };
}

/// Instruction barrier: later instruction fetches see earlier stores (`ibar 0`).
#[inline(always)]
pub fn ibar() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { core::arch::asm!("ibar 0", options(nostack)) };
}

/// Full memory barrier (`dbar 0`).
#[inline(always)]
pub fn dbar() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { core::arch::asm!("dbar 0", options(nostack)) };
}

/// Reads the current frame pointer.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let fp: u64;
    // SAFETY: copies a register.
    unsafe { core::arch::asm!("move {0}, $fp", out(reg) fp, options(nomem, nostack)) };
    fp
}

/// Reads the stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: copies a register.
    unsafe { core::arch::asm!("move {0}, $sp", out(reg) sp, options(nomem, nostack)) };
    sp
}
