//! NS16550 UART of the `virt` board, polled, through the uncached window.

use core::ptr::NonNull;
use volatile::VolatilePtr;

/// UART base: physical 0x1fe0_01e0 in the uncached DMW0 window.
const UART_BASE: usize = 0x8000_0000_1fe0_01e0;
const THR: usize = 0;
const RBR: usize = 0;
const LSR: usize = 5;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;

fn reg(off: usize) -> VolatilePtr<'static, u8> {
    // SAFETY: UART_BASE + off (off < 8) is an MMIO byte register of the board's 16550.
    unsafe { VolatilePtr::new(NonNull::new_unchecked((UART_BASE + off) as *mut u8)) }
}

/// Sends one byte, waiting for room in the transmitter.
#[inline]
pub fn put_byte(b: u8) {
    while reg(LSR).read() & LSR_THR_EMPTY == 0 {
        core::hint::spin_loop();
    }
    reg(THR).write(b);
}

/// Sends `s`, turning `\n` into `\r\n`.
pub fn put_str(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            put_byte(b'\r');
        }
        put_byte(b);
    }
}

/// Returns a received byte, if one is waiting.
pub fn try_get_byte() -> Option<u8> {
    if reg(LSR).read() & LSR_DATA_READY != 0 { Some(reg(RBR).read()) } else { None }
}

/// FIFO control register (write-only, shares the offset of the interrupt identification).
const FCR: usize = 2;
/// FCR: enable both FIFOs, clear them, receive trigger level 14 bytes (QEMU hands the UART
/// input up to the trigger level at a time).
const FCR_ENABLE_CLEAR: u8 = 0b1100_0111;

/// Turns on the 16-byte receive and transmit FIFOs, so a burst of input is taken 16 bytes at a
/// time (QEMU hands the UART as many bytes as its FIFO has room for).
pub fn enable_fifo() {
    reg(FCR).write(FCR_ENABLE_CLEAR);
}
