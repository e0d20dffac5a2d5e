//! The serial console: an interrupt-safe, re-entrant-on-one-CPU lock around the UART.
//!
//! Everything here is `notrace`: the function tracer and the fault paths print through it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Owner of the console lock: 0 = free, else CPU number + 1.
static OWNER: AtomicUsize = AtomicUsize::new(0);

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        arch::uart::put_str(s);
        Ok(())
    }
}

/// Runs `f` with exclusive use of the console. A CPU that already holds it (an exception or
/// interrupt taken while printing) enters again instead of deadlocking.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn with_console<R>(f: impl FnOnce(&mut dyn Write) -> R) -> R {
    let me = arch::cpu::id() + 1;
    let irq = arch::cpu::irq_save();
    let nested = OWNER.load(Ordering::Relaxed) == me;
    if !nested {
        while OWNER.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
    }
    let r = f(&mut Uart);
    if !nested {
        OWNER.store(0, Ordering::Release);
    }
    arch::cpu::irq_restore(irq);
    r
}

/// Takes the console away from whoever holds it (used only on the way to power-off).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn force_unlock() {
    OWNER.store(0, Ordering::Release);
}

#[doc(hidden)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn print_fmt(args: fmt::Arguments) {
    with_console(|w| {
        let _ = w.write_fmt(args);
    });
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
