//! Linux's `samples/ftrace/ftrace-direct*.c`, re-done as kernel code: each sample is a
//! trampoline in `global_asm!` plus a Rust handler, loaded (`load`) and unloaded (`unload`) the
//! way the Linux modules' init and exit functions do.
//!
//! Every trampoline follows the v6.19 convention: it is entered with `t0` = the traced
//! function's return address (parent) and `ra` = the function's body, saves what it needs, calls
//! its handler, restores, and resumes the function with `move t1, ra; move ra, t0; jr t1`.
//! Each also describes its frame for debuggers (`.cfi_*`, see docs/debugging.md): the frame it
//! returns to is the traced function at its body (`ra`), whose `t0` holds the parent.
//! Handlers record what they saw in [`log`], which the tests check and `make qemu` prints.

use alloc::string::String;
use alloc::vec::Vec;

pub mod ftrace_direct;
pub mod ftrace_direct_modify;
pub mod ftrace_direct_multi;
pub mod ftrace_direct_multi_modify;
pub mod ftrace_direct_too;
pub mod targets;

const LOG_LIMIT: usize = 256;
static LOG: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());

/// Appends a line to the samples' log (the stand-in for Linux's `trace_printk`).
pub fn log(line: String) {
    let mut l = LOG.lock();
    if l.len() < LOG_LIMIT {
        l.push(line);
    }
}

/// Takes every line logged so far.
pub fn take_log() -> Vec<String> {
    core::mem::take(&mut *LOG.lock())
}

/// Points a direct ops registered on one of `tramps` at the other one (what Linux's modify
/// samples do from a kthread).
pub fn flip(ops: &'static crate::ftrace::FtraceOps, tramps: [u64; 2]) -> Result<(), crate::ftrace::FtraceError> {
    let current = ops.direct.load(core::sync::atomic::Ordering::Acquire);
    let next = if current == tramps[0] { tramps[1] } else { tramps[0] };
    crate::ftrace::modify_ftrace_direct(ops, next)
}

/// Unregisters a direct ops from whichever trampoline it uses now, and drops its filter.
pub fn unload_direct(ops: &'static crate::ftrace::FtraceOps) -> Result<(), crate::ftrace::FtraceError> {
    crate::ftrace::unregister_ftrace_direct(ops, ops.direct.load(core::sync::atomic::Ordering::Acquire))?;
    crate::ftrace::ftrace_reset_filters(ops)
}

/// A sample as the demo and the tests see it.
pub struct Sample {
    pub name: &'static str,
    pub load: fn() -> Result<(), crate::ftrace::FtraceError>,
    pub unload: fn() -> Result<(), crate::ftrace::FtraceError>,
    /// Calls the traced functions the way the sample's kernel activity would.
    pub exercise: fn(),
}

/// All five samples, in Linux's order.
pub const ALL: [Sample; 5] = [
    ftrace_direct::SAMPLE,
    ftrace_direct_too::SAMPLE,
    ftrace_direct_modify::SAMPLE,
    ftrace_direct_multi::SAMPLE,
    ftrace_direct_multi_modify::SAMPLE,
];
