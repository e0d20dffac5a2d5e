//! Direct-call trampolines: `register_ftrace_direct`, `modify_ftrace_direct`,
//! `unregister_ftrace_direct`.
//!
//! A direct ops names functions with its filter and one trampoline. Where it is the only user of a
//! site and the trampoline is within `bl` range, the site calls the trampoline straight;
//! otherwise the site goes to `ftrace_regs_caller`, the ops' callback (`call_direct_funcs`) puts
//! the trampoline in the frame's `t1` slot, and `ftrace_common_return` jumps there after the
//! other callbacks. On both routes the trampoline starts with `t0` = parent return address and
//! `ra` = the traced function's body, and resumes the function with
//! `move t1, ra; move ra, t0; jr t1`.
//!
//! Trampolines written for the old convention (entered with `t0` = body, `ra` = parent, ending in
//! `jr t0`) are reached through a 4-instruction adapter when the ops has `LEGACY_ABI`
//! (see docs/direct-calls.md).

use super::core::{Core, compute_wants, sync_all_cpus, update, with_core};
use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use super::{quiesce, sites};
use alloc::boxed::Box;
use arch::insn::{self, Reg};
use core::sync::atomic::Ordering;

/// The address a site calls for a direct ops: its trampoline, or for a `LEGACY_ABI` ops the
/// adapter that swaps `t0` and `ra` before entering it.
#[inline(always)]
pub fn site_entry(ops: &FtraceOps) -> u64 {
    match ops.thunk.load(Ordering::Acquire) {
        0 => ops.direct.load(Ordering::Acquire),
        t => t,
    }
}

/// The callback of every direct ops: send control on to the trampoline after the callbacks.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn call_direct_funcs(_ip: u64, _parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) {
    let t = site_entry(ops);
    if t != 0 {
        regs.set_direct_call(t);
    }
}

/// Checks a trampoline address: nonzero, 4-byte aligned, in kernel text.
fn check_tramp(tramp: u64) -> Result<(), FtraceError> {
    if tramp == 0 || tramp & 3 != 0 || !arch::patch::is_text(tramp) {
        return Err(FtraceError::BadTrampoline(tramp));
    }
    Ok(())
}

/// Adapter for an old-convention trampoline: entered like any direct trampoline
/// (t0 = parent, ra = body), it swaps the two (clobbering t1) and branches to the trampoline.
type Thunk = [u32; 4];

fn make_thunk(tramp: u64) -> Result<u64, FtraceError> {
    let thunk: &'static mut Thunk = Box::leak(Box::new([insn::NOP; 4]));
    let at = thunk.as_ptr() as u64;
    let Ok(branch) = insn::encode_b(at + 12, tramp) else {
        // SAFETY: just leaked above, never published.
        drop(unsafe { Box::from_raw(thunk as *mut Thunk) });
        return Err(FtraceError::BadTrampoline(tramp));
    };
    *thunk = [
        insn::encode_move(Reg::T1, Reg::T0),
        insn::encode_move(Reg::T0, Reg::Ra),
        insn::encode_move(Reg::Ra, Reg::T1),
        branch,
    ];
    arch::cpu::dbar();
    arch::cpu::ibar();
    Ok(at)
}

/// Makes the quiescence wait treat the trampoline (and its adapter) as tracing code.
fn track_tramp(tramp: u64, thunk: u64) {
    let ok = quiesce::track(tramp, quiesce::code_end(tramp)) && (thunk == 0 || quiesce::track(thunk, thunk + 16));
    if !ok {
        log::warn!("ftrace: too many direct trampolines to track; removal waits may be early");
    }
}

fn untrack_tramp(tramp: u64, thunk: u64) {
    quiesce::untrack(tramp);
    if thunk != 0 {
        quiesce::untrack(thunk);
    }
}

fn free_thunk(at: u64) {
    if at != 0 {
        // SAFETY: `at` came from `make_thunk` (a leaked Box<Thunk>) and is no longer published;
        // the caller synchronised all CPUs since unpublishing it.
        drop(unsafe { Box::from_raw(at as *mut Thunk) });
    }
}

/// Fails when another registered direct ops already wants one of `ops`' sites.
fn check_conflicts(core: &Core, ops: &FtraceOps) -> Result<(), FtraceError> {
    let cfg = ops.config.lock().clone().unwrap_or_default();
    if cfg.filter.as_ref().is_none_or(|f| f.is_empty()) {
        return Err(FtraceError::EmptyFilter);
    }
    let wants = compute_wants(core, &cfg);
    for other in core.ops.iter().filter(|o| o.flags.contains(OpsFlags::DIRECT) && !core::ptr::eq(**o, ops)) {
        if let Some(i) = wants.iter().find(|&i| other.wants_index(i)) {
            return Err(FtraceError::DirectBusy(sites::all()[i].name));
        }
    }
    if wants.is_empty() {
        return Err(FtraceError::EmptyFilter);
    }
    Ok(())
}

/// Attaches trampoline `tramp` to the functions in `ops`' filter.
pub fn register_ftrace_direct(ops: &'static FtraceOps, tramp: u64) -> Result<(), FtraceError> {
    if !ops.flags.contains(OpsFlags::DIRECT) {
        return Err(FtraceError::WrongKind);
    }
    check_tramp(tramp)?;
    with_core(|core| {
        if core.ops.iter().any(|o| core::ptr::eq(*o, ops)) {
            return Err(FtraceError::AlreadyRegistered);
        }
        check_conflicts(core, ops)?;
        let thunk = if ops.flags.contains(OpsFlags::LEGACY_ABI) { make_thunk(tramp)? } else { 0 };
        track_tramp(tramp, thunk);
        ops.direct.store(tramp, Ordering::Release);
        ops.thunk.store(thunk, Ordering::Release);
        let mut list = core.ops.clone();
        list.push(ops);
        update(core, list);
        Ok(())
    })
}

/// Detaches `ops` (which must be registered with trampoline `tramp`) and restores its sites.
pub fn unregister_ftrace_direct(ops: &'static FtraceOps, tramp: u64) -> Result<(), FtraceError> {
    unregister_direct_quiet(ops, tramp).map(drop)
}

/// [`unregister_ftrace_direct`], answering whether every CPU was then seen outside `tramp` (so
/// it may be freed; false when the wait gave up).
pub(crate) fn unregister_direct_quiet(ops: &'static FtraceOps, tramp: u64) -> Result<bool, FtraceError> {
    if !ops.flags.contains(OpsFlags::DIRECT) {
        return Err(FtraceError::WrongKind);
    }
    with_core(|core| {
        if !core.ops.iter().any(|o| core::ptr::eq(*o, ops)) {
            return Err(FtraceError::NotRegistered);
        }
        if ops.direct.load(Ordering::Acquire) != tramp {
            return Err(FtraceError::BadTrampoline(tramp));
        }
        let list: alloc::vec::Vec<_> = core.ops.iter().copied().filter(|o| !core::ptr::eq(*o, ops)).collect();
        update(core, list);
        ops.direct.store(0, Ordering::Release);
        let thunk = ops.thunk.swap(0, Ordering::AcqRel);
        let quiet = quiesce::synchronize_trampolines();
        untrack_tramp(tramp, thunk);
        if quiet {
            free_thunk(thunk);
        }
        Ok(quiet)
    })
}

/// Retargets a registered direct ops to `tramp` while its functions keep being called: the sites
/// first go through `ftrace_regs_caller` (whose callback reads the current target), the target
/// changes, then the sites call the new trampoline straight again. Every call reaches either the
/// old or the new trampoline.
pub fn modify_ftrace_direct(ops: &'static FtraceOps, tramp: u64) -> Result<(), FtraceError> {
    modify_direct_quiet(ops, tramp).map(drop)
}

/// [`modify_ftrace_direct`], answering whether every CPU was then seen outside the old
/// trampoline (so it may be freed; false when the wait gave up).
pub(crate) fn modify_direct_quiet(ops: &'static FtraceOps, tramp: u64) -> Result<bool, FtraceError> {
    if !ops.flags.contains(OpsFlags::DIRECT) {
        return Err(FtraceError::WrongKind);
    }
    check_tramp(tramp)?;
    with_core(|core| {
        if !core.ops.iter().any(|o| core::ptr::eq(*o, ops)) {
            return Err(FtraceError::NotRegistered);
        }
        let thunk = if ops.flags.contains(OpsFlags::LEGACY_ABI) { make_thunk(tramp)? } else { 0 };
        track_tramp(tramp, thunk);
        let old_tramp = ops.direct.load(Ordering::Acquire);
        let list = core.ops.clone();
        ops.modifying.store(true, Ordering::Release);
        update(core, list.clone());
        ops.direct.store(tramp, Ordering::Release);
        let old_thunk = ops.thunk.swap(thunk, Ordering::AcqRel);
        sync_all_cpus();
        ops.modifying.store(false, Ordering::Release);
        update(core, list);
        let quiet = quiesce::synchronize_trampolines();
        untrack_tramp(old_tramp, old_thunk);
        if quiet {
            free_thunk(old_thunk);
        }
        Ok(quiet)
    })
}
