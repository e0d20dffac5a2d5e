//! The task that every trace output names for an event.
//!
//! The kernel has no processes: each CPU runs one context (its boot thread, which runs the
//! self-tests, the workloads and the shell, and takes that CPU's interrupts). Trace outputs name
//! it like one of Linux's per-CPU kernel threads: `loongtrace/<cpu>` with PID `<cpu> + 1`. The
//! kernel's `trace` text, GDB's `lt-trace`, `trace.dat` (event `common_pid` and the cmdlines
//! section) and the Chrome JSON all use this module, so they agree.
//!
//! PID 0 is avoided on purpose: for Linux and trace-cmd it is the idle task, one PID shared by
//! every CPU, and trace-cmd's function_graph output pairs a call with "the next event of the same
//! PID", whatever its CPU; with one PID for all CPUs it folded one CPU's return into another CPU's
//! call.

use core::fmt;

/// The PID of the context that runs on `cpu`.
pub const fn pid(cpu: u32) -> u32 {
    cpu + 1
}

/// The CPU whose context has PID `pid`, if it is one of ours.
pub const fn cpu_of_pid(pid: u32) -> Option<u32> {
    pid.checked_sub(1)
}

/// The command name (Linux's `comm`, at most 15 characters) of the context on CPU `.0`:
/// `loongtrace/<cpu>`. Its `Display` honours width and alignment (`{:>16}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm(pub u32);

/// What every [`Comm`] starts with.
pub const COMM_PREFIX: &str = "loongtrace/";

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "loongtrace/" and at most 10 digits fit in 21 bytes.
        let mut buf = [0u8; 21];
        buf[..COMM_PREFIX.len()].copy_from_slice(COMM_PREFIX.as_bytes());
        let mut digits = [0u8; 10];
        let (mut n, mut len) = (self.0, 0);
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[COMM_PREFIX.len() + i] = digits[len - 1 - i];
        }
        let end = COMM_PREFIX.len() + len;
        // The bytes are ASCII by construction.
        f.pad(core::str::from_utf8(&buf[..end]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn names_and_pids() {
        assert_eq!(format!("{}", Comm(0)), "loongtrace/0");
        assert_eq!(format!("{}", Comm(7)), "loongtrace/7");
        assert_eq!(format!("{}", Comm(42)), "loongtrace/42");
        assert_eq!(format!("{}", Comm(u32::MAX)), "loongtrace/4294967295");
        assert_eq!(format!("{:>16}|", Comm(1)), "    loongtrace/1|");
        assert_eq!(format!("{:<14}|", Comm(1)), "loongtrace/1  |");
        assert_eq!((pid(0), pid(3)), (1, 4));
        assert_eq!((cpu_of_pid(1), cpu_of_pid(4), cpu_of_pid(0)), (Some(0), Some(3), None));
        assert!(format!("{}", Comm(255)).len() <= 15, "fits Linux's 16-byte comm with its NUL");
    }
}
