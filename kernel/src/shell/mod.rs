//! The serial console shell: a line editor and a small `sh` that reads and writes tracefs.
//!
//! [`line`] and [`parse`] are pure and host-tested; [`console`] (kernel only) drives the UART.

pub mod line;
pub mod parse;

#[cfg(target_os = "none")]
pub mod console;
