//! Power-off through the `virt` board's GED sleep-control register.

use core::ptr::NonNull;
use volatile::VolatilePtr;

/// GED sleep control, physical 0x100e_001c, through the uncached window.
const GED_SLEEP_CTL: usize = 0x8000_0000_100e_001c;
/// SLP_EN | SLP_TYP = 5 (S5, soft off).
const SLEEP_S5: u8 = 0x34;

/// Turns the machine off. QEMU exits with status 0 whatever the kernel reported.
pub fn power_off() -> ! {
    // SAFETY: the GED register is a valid MMIO byte in the uncached window on QEMU `virt`.
    let reg = unsafe { VolatilePtr::new(NonNull::new_unchecked(GED_SLEEP_CTL as *mut u8)) };
    reg.write(SLEEP_S5);
    loop {
        crate::cpu::idle();
    }
}
