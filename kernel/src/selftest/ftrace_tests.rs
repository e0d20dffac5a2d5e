//! Suites `ftrace_patch`, `ftrace_ops`, `ftrace_regs` and `function_tracer`.

use super::targets::*;
use crate::ftrace::core::{SiteFlags, site_info};
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, tracer};
use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use arch::insn::{self, Insn};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn addr(f: *const ()) -> u64 {
    f as u64
}

/// Counts its calls in `ops.private`.
extern "C" fn count_private(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}

fn count(ops: &FtraceOps) -> usize {
    ops.private.load(Relaxed)
}

/// Unregisters (ignoring "not registered") and clears filters and counters.
fn cleanup(list: &[&'static FtraceOps]) {
    for ops in list {
        let _ = ftrace::unregister_ftrace_function(ops);
        let _ = ftrace::ftrace_reset_filters(ops);
        ops.private.store(0, Relaxed);
    }
}

// ---------------------------------------------------------------- ftrace_patch

static PATCH_OPS: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);
static PATCH_REGS_OPS: FtraceOps = FtraceOps::new(count_private, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));

ktest! {
    /// Every usable site is `move t0, ra; nop` once boot-time init has run.
    fn ftrace_patch::sites_start_disabled() {
        let (mut n, mut notrace, mut failed) = (0, 0, 0);
        ftrace::core::for_each_site(|s| {
            n += 1;
            if s.state.flags.contains(SiteFlags::NOTRACE) { notrace += 1; }
            if s.state.flags.contains(SiteFlags::FAILED) { failed += 1; }
        });
        kdiag!("{n} sites, {notrace} notrace by policy, {failed} failed");
        kassert!(n == crate::boot::early_scan().sites, "table has {n} of {} sites", crate::boot::early_scan().sites);
        kassert_eq!(failed, 0);
        ftrace::core::check_all_disabled().map_err(|e| crate::selftest::TestError::Fail(e))?;
        Ok(())
    }
}

ktest! {
    /// Enabling writes `bl ftrace_caller` (or `bl ftrace_regs_caller`) and disabling restores `nop`.
    fn ftrace_patch::enable_and_disable() {
        let ip = addr(patch_target_a as *const ());
        let read = |a| arch::patch::read_insn(a).unwrap();
        kassert_eq!(read(ip), arch::ftrace::SITE_MOVE);
        kassert_eq!(read(ip + 4), insn::NOP);
        ftrace::ftrace_set_filter_ip(&PATCH_OPS, ip, false, true).map_err(fail)?;
        ftrace::register_ftrace_function(&PATCH_OPS).map_err(fail)?;
        kassert_eq!(insn::decode(ip + 4, read(ip + 4)), Insn::Bl { target: ftrace::core::fast_caller() });
        kassert_eq!(read(ip), arch::ftrace::SITE_MOVE);
        let info = site_info(ip).unwrap();
        kassert!(info.state.flags.contains(SiteFlags::ENABLED) && info.state.refs == 1, "{:?}", info.state);
        kassert_eq!(patch_target_a(5), 6);
        kassert_eq!(count(&PATCH_OPS), 1);
        // A SAVE_REGS ops on the same site moves it to ftrace_regs_caller.
        ftrace::ftrace_set_filter_ip(&PATCH_REGS_OPS, ip, false, true).map_err(fail)?;
        ftrace::register_ftrace_function(&PATCH_REGS_OPS).map_err(fail)?;
        kassert_eq!(insn::decode(ip + 4, read(ip + 4)), Insn::Bl { target: arch::ftrace::addr::regs_caller() });
        kassert_eq!(site_info(ip).unwrap().state.refs, 2);
        kassert_eq!(patch_target_a(5), 6);
        kassert_eq!((count(&PATCH_OPS), count(&PATCH_REGS_OPS)), (2, 1));
        ftrace::unregister_ftrace_function(&PATCH_REGS_OPS).map_err(fail)?;
        kassert_eq!(insn::decode(ip + 4, read(ip + 4)), Insn::Bl { target: ftrace::core::fast_caller() });
        ftrace::unregister_ftrace_function(&PATCH_OPS).map_err(fail)?;
        kassert_eq!(read(ip + 4), insn::NOP);
        kassert_eq!(patch_target_a(5), 6);
        kassert_eq!(count(&PATCH_OPS), 2);
        cleanup(&[&PATCH_OPS, &PATCH_REGS_OPS]);
        Ok(())
    }
}

/// A harmless word that is not the `nop` the core expects (`andi $zero, $zero, 1`).
const CORRUPT: u32 = 0x0340_0400;

ktest! {
    /// A site whose text was damaged is refused and reported; the other sites keep working.
    fn ftrace_patch::corrupted_site_refused() {
        let victim = addr(patch_victim as *const ());
        let other = addr(patch_target_b as *const ());
        kdiag!("damaging patch_victim's call slot on purpose: the 'ftrace bug' log line below is expected");
        arch::patch::patch_insn(victim + 4, insn::NOP, CORRUPT).map_err(|e| fail_str(alloc::format!("{e}")))?;
        let r = ftrace::ftrace_set_filter(&PATCH_OPS, "patch_victim patch_target_b", true)
            .and_then(|_| ftrace::register_ftrace_function(&PATCH_OPS));
        let victim_state = site_info(victim).unwrap().state;
        let other_state = site_info(other).unwrap().state;
        let victim_word = arch::patch::read_insn(victim + 4).unwrap();
        let (v, o) = (patch_victim(1), patch_target_b(1));
        let calls = count(&PATCH_OPS);
        cleanup(&[&PATCH_OPS]);
        ftrace::core::repair_site(victim, CORRUPT).map_err(fail)?;
        kassert!(r.is_ok(), "{r:?}");
        kassert!(victim_state.flags.contains(SiteFlags::FAILED), "{victim_state:?}");
        kassert_eq!(victim_word, CORRUPT, "the damaged word was overwritten");
        kassert!(other_state.flags.contains(SiteFlags::ENABLED), "{other_state:?}");
        kassert_eq!((v, o), (4, 3));
        kassert_eq!(calls, 1, "only patch_target_b is traced");
        Ok(())
    }
}

fn fail(e: FtraceError) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(alloc::format!("ftrace error: {e}"))
}

fn fail_str(s: String) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(s)
}

// ---------------------------------------------------------------- ftrace_ops

static PROBE1: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);
static PROBE2: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);
static PROBE3: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);
static GLOBAL: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);

/// Counts only calls of `dyn_func1` (for an ops that traces everything).
extern "C" fn count_func1(ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    if ip == dyn_func1 as *const () as u64 {
        ops.private.fetch_add(1, Relaxed);
    }
}

fn counts() -> (usize, usize, usize, usize) {
    (count(&PROBE1), count(&PROBE2), count(&PROBE3), count(&GLOBAL))
}

ktest! {
    /// Linux's dynamic ops start-up sequence (trace_selftest_ops) with its exact counters.
    fn ftrace_ops::linux_startup_sequence() {
        let all = [&PROBE1, &PROBE2, &PROBE3, &GLOBAL];
        cleanup(&all);
        let r = (|| -> Result<(), crate::selftest::TestError> {
            ftrace::ftrace_set_filter(&PROBE1, "dyn_func1", true).map_err(fail)?;
            ftrace::ftrace_set_filter(&PROBE2, "dyn_func2", true).map_err(fail)?;
            ftrace::ftrace_set_filter(&PROBE3, "dyn_func1 dyn_func2", true).map_err(fail)?;
            ftrace::ftrace_set_filter(&GLOBAL, "dyn_func?", true).map_err(fail)?;
            for ops in all {
                ftrace::register_ftrace_function(ops).map_err(fail)?;
            }
            dyn_func1();
            kassert_eq!(counts(), (1, 0, 1, 1));
            dyn_func2();
            kassert_eq!(counts(), (1, 1, 2, 2));
            // A heap-allocated ops with no filter traces everything; it counts dyn_func1 calls.
            let dynops = FtraceOps::new_boxed(count_func1, OpsFlags::RECURSION);
            ftrace::register_ftrace_function(dynops).map_err(fail)?;
            dyn_func1();
            kassert_eq!(counts(), (2, 1, 3, 3));
            kassert_eq!(count(dynops), 1, "the unfiltered ops saw dyn_func1");
            dyn_func2();
            kassert_eq!(counts(), (2, 2, 4, 4));
            kassert_eq!(count(dynops), 1);
            ftrace::unregister_ftrace_function(dynops).map_err(fail)?;
            // SAFETY: made by new_boxed, unregistered above, no other reference kept.
            unsafe { FtraceOps::free(dynops) }.map_err(fail)?;
            // Remove func1 from probe3 while it is registered.
            ftrace::ftrace_set_filter(&PROBE3, "!dyn_func1", false).map_err(fail)?;
            dyn_func1();
            kassert_eq!(counts(), (3, 2, 4, 5));
            dyn_func2();
            kassert_eq!(counts(), (3, 3, 5, 6));
            for ops in all {
                ftrace::unregister_ftrace_function(ops).map_err(fail)?;
                ops.private.store(0, Relaxed);
            }
            dyn_func1();
            dyn_func2();
            kassert_eq!(counts(), (0, 0, 0, 0), "callbacks ran after unregister");
            Ok(())
        })();
        cleanup(&all);
        r
    }
}

ktest! {
    /// The function tracer with a filter on func1: nothing before the call, exactly one event after.
    fn ftrace_ops::filter_filters() {
        tracer::reset_buffers();
        tracer::start(Some("dyn_func1")).map_err(fail)?;
        dyn_func2();
        patch_target_a(1);
        let t0 = arch::time::ticks();
        while arch::time::ticks() - t0 < crate::time::counter_hz() / 100 {}
        let before = tracer::collect().events.len();
        dyn_func1();
        tracer::stop().map_err(fail)?;
        let after = tracer::collect();
        kassert_eq!(before, 0, "filter did not filter");
        kassert_eq!(after.events.len(), 1);
        kassert_eq!(after.events[0].ip, addr(dyn_func1 as *const ()));
        Ok(())
    }
}

extern "C" fn recursing_callback(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    let n = ops.private.fetch_add(1, Relaxed);
    if n < 10 {
        dyn_func1();
    }
}

static RECURSION_OPS: FtraceOps = FtraceOps::new(recursing_callback, OpsFlags::RECURSION);

ktest! {
    /// A guarded callback that calls its own traced function is entered once or twice, never more.
    fn ftrace_ops::recursion_guarded() {
        ftrace::ftrace_set_filter(&RECURSION_OPS, "dyn_func1", true).map_err(fail)?;
        ftrace::register_ftrace_function(&RECURSION_OPS).map_err(fail)?;
        let blocked = ftrace::recursion::blocked();
        dyn_func1();
        let n = count(&RECURSION_OPS);
        let blocked = ftrace::recursion::blocked() - blocked;
        cleanup(&[&RECURSION_OPS]);
        kassert!(n == 1, "entered {n} times (the guard must stop the nested call)");
        kassert!(blocked >= 1, "the guard never blocked");
        Ok(())
    }
}

extern "C" fn recursion_safe_callback(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    // Recursion-safe by itself: only the first entry calls the traced function again.
    if ops.private.fetch_add(1, Relaxed) == 0 {
        dyn_func1();
    }
}

static RECURSION_SAFE_OPS: FtraceOps = FtraceOps::new(recursion_safe_callback, OpsFlags::empty());

ktest! {
    /// An ops without RECURSION is called straight from ftrace_call and sees its own nested call.
    fn ftrace_ops::recursion_safe_ops_called_straight() {
        ftrace::ftrace_set_filter(&RECURSION_SAFE_OPS, "dyn_func1", true).map_err(fail)?;
        ftrace::register_ftrace_function(&RECURSION_SAFE_OPS).map_err(fail)?;
        let straight = ftrace::core::call_target() == addr(recursion_safe_callback as *const ());
        dyn_func1();
        let n = count(&RECURSION_SAFE_OPS);
        cleanup(&[&RECURSION_SAFE_OPS]);
        kassert!(straight, "ftrace_call does not call the single ops directly");
        kassert_eq!(n, 2);
        Ok(())
    }
}

static BAD_OPS: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);

static UNFILTERED_OPS: FtraceOps = FtraceOps::new(count_private, OpsFlags::RECURSION);

ktest! {
    /// Bad input gives clear errors and changes nothing, on a registered, live ops: the sites it
    /// traces stay patched and no other site is touched.
    fn ftrace_ops::bad_input() {
        let e4 = ftrace::unregister_ftrace_function(&BAD_OPS);
        ftrace::ftrace_set_filter(&BAD_OPS, "dyn_func2", true).map_err(fail)?;
        ftrace::register_ftrace_function(&BAD_OPS).map_err(fail)?;
        let words = |f: *const ()| arch::patch::read_insn(addr(f) + 4).unwrap_or(0);
        let before = (words(dyn_func1 as *const ()), words(dyn_func2 as *const ()));
        let e1 = ftrace::ftrace_set_filter(&BAD_OPS, "no_such_function_anywhere", false);
        let e2 = ftrace::ftrace_set_filter(&BAD_OPS, "loongtrace_kernel::ftrace::core::update", false);
        let e3 = ftrace::ftrace_set_filter_ip(&BAD_OPS, addr(dyn_func1 as *const ()) + 4, false, false);
        let e5 = ftrace::ftrace_set_filter(&BAD_OPS, "dyn_func1 nothing_like_this", false);
        let e6 = ftrace::register_ftrace_function(&BAD_OPS);
        let e7 = ftrace::ftrace_set_filter(&BAD_OPS, "!dyn_func1", false);
        let e8 = ftrace::ftrace_set_filter(&BAD_OPS, "dyn_func1 bad\tword", false);
        let e9 = ftrace::ftrace_set_filter_ip(&UNFILTERED_OPS, addr(dyn_func1 as *const ()), true, false);
        let e10 = ftrace::ftrace_set_filter(&UNFILTERED_OPS, "!dyn_func1", false);
        let after = (words(dyn_func1 as *const ()), words(dyn_func2 as *const ()));
        dyn_func1();
        dyn_func2();
        let n = count(&BAD_OPS);
        cleanup(&[&BAD_OPS, &UNFILTERED_OPS]);
        for e in [&e1, &e2, &e3, &e4, &e5, &e6, &e7, &e8, &e9, &e10] {
            if let Err(e) = e {
                kdiag!("{e}");
            }
        }
        kassert!(matches!(e1, Err(FtraceError::NoMatch(_))), "{e1:?}");
        kassert!(matches!(e2, Err(FtraceError::NotTraceable(_))), "{e2:?}");
        kassert!(matches!(e3, Err(FtraceError::NotASite(_))), "{e3:?}");
        kassert_eq!(e4, Err(FtraceError::NotRegistered));
        kassert!(matches!(e5, Err(FtraceError::NoMatch(_))), "{e5:?}");
        kassert_eq!(e6, Err(FtraceError::AlreadyRegistered));
        kassert!(matches!(e7, Err(FtraceError::NothingToRemove(_))), "{e7:?}");
        kassert!(matches!(e8, Err(FtraceError::NoMatch(_)) | Err(FtraceError::BadFilter(_))), "{e8:?}");
        kassert!(matches!(e9, Err(FtraceError::NothingToRemove(_))), "{e9:?}");
        kassert!(matches!(e10, Err(FtraceError::NothingToRemove(_))), "{e10:?}");
        kassert_eq!(before, after, "a failed edit patched a site");
        kassert_eq!(n, 1, "the failed edits changed the filter (only dyn_func2 should be traced)");
        Ok(())
    }
}

ktest! {
    /// Starting the function tracer twice fails and leaves the running tracer's filter alone.
    fn function_tracer::start_twice_changes_nothing() {
        tracer::reset_buffers();
        tracer::start(Some("dyn_func1")).map_err(fail)?;
        let again = tracer::start(Some("dyn_func2"));
        dyn_func1();
        dyn_func2();
        tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        kassert_eq!(again, Err(FtraceError::AlreadyRegistered));
        kassert_eq!(c.events.len(), 1);
        kassert_eq!(c.events[0].ip, addr(dyn_func1 as *const ()));
        Ok(())
    }
}

// ---------------------------------------------------------------- ftrace_regs

static SEEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

extern "C" fn regs_probe(ip: u64, _parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) {
    let full = regs.full().map_or(0, |r| r.regs[4] + r.regs[5] * 10 + r.regs[6] * 100);
    SEEN[0].store(full, Relaxed);
    SEEN[1].store(regs.arg(0) + regs.arg(1) * 10 + regs.arg(2) * 100, Relaxed);
    SEEN[2].store(ip, Relaxed);
    SEEN[3].store(regs.resume_address(), Relaxed);
    match ops.private.load(Relaxed) {
        1 => regs.set_arg(0, 9),
        2 => regs.set_resume_address(regs_replacement as *const () as u64),
        _ => {}
    }
}

static REGS_OPS: FtraceOps = FtraceOps::new(regs_probe, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));

ktest! {
    /// A SAVE_REGS ops sees the true arguments in the full frame.
    fn ftrace_regs::sees_arguments() {
        ftrace::ftrace_set_filter(&REGS_OPS, "regs_target", true).map_err(fail)?;
        ftrace::register_ftrace_function(&REGS_OPS).map_err(fail)?;
        let r = regs_target(1, 2, 3);
        cleanup(&[&REGS_OPS]);
        let ip = addr(regs_target as *const ());
        kassert_eq!(r, 123);
        kassert_eq!(SEEN[0].load(Relaxed), 321, "full regs a0..a2");
        kassert_eq!(SEEN[1].load(Relaxed), 321, "arg accessors");
        kassert_eq!(SEEN[2].load(Relaxed), ip);
        kassert_eq!(SEEN[3].load(Relaxed), ip + 8);
        Ok(())
    }
}

ktest! {
    /// Changing an argument changes what the traced function computes.
    fn ftrace_regs::changes_an_argument() {
        ftrace::ftrace_set_filter(&REGS_OPS, "regs_target", true).map_err(fail)?;
        REGS_OPS.private.store(1, Relaxed);
        ftrace::register_ftrace_function(&REGS_OPS).map_err(fail)?;
        let r = regs_target(1, 2, 3);
        cleanup(&[&REGS_OPS]);
        kassert_eq!(r, 923);
        kassert_eq!(regs_target(1, 2, 3), 123);
        Ok(())
    }
}

ktest! {
    /// Setting the resume address runs a replacement function instead (live-patch style).
    fn ftrace_regs::redirects_to_replacement() {
        ftrace::ftrace_set_filter(&REGS_OPS, "regs_target", true).map_err(fail)?;
        REGS_OPS.private.store(2, Relaxed);
        ftrace::register_ftrace_function(&REGS_OPS).map_err(fail)?;
        let r = regs_target(1, 2, 3);
        cleanup(&[&REGS_OPS]);
        kassert_eq!(r, 1006);
        kassert_eq!(regs_target(1, 2, 3), 123);
        Ok(())
    }
}

// ---------------------------------------------------------------- function_tracer

ktest! {
    /// Tracing a known call chain gives exactly its `func <-parent` lines, in order.
    fn function_tracer::call_chain() {
        tracer::reset_buffers();
        tracer::start(Some("chain_?")).map_err(fail)?;
        let v = chain_root(1);
        tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        let mut lines = Vec::new();
        for e in &c.events {
            let mut s = String::new();
            let _ = tracer::write_function_line(&mut s, e);
            kdiag!("{}", s.trim_end());
            lines.push(s);
        }
        kassert_eq!(v, 9);
        kassert_eq!(c.events.len(), 3);
        let want = [("chain_a", "chain_root"), ("chain_b", "chain_a"), ("chain_c", "chain_b")];
        for (line, (f, p)) in lines.iter().zip(want) {
            let tail = alloc::format!(": selftest::targets::{f} <-selftest::targets::{p}\n");
            kassert!(line.ends_with(&tail), "line '{}' does not end with '{}'", line.trim_end(), tail.trim_end());
            kassert!(line.contains("loongtrace/0-1       [000] "), "line '{}'", line.trim_end());
        }
        kassert_eq!(c.lost, 0);
        Ok(())
    }
}

ktest! {
    /// Tracing every site at once while a workload runs: no crash, and every event written is
    /// either read or counted as lost.
    fn function_tracer::trace_everything() {
        tracer::reset_buffers();
        tracer::start(None).map_err(fail)?;
        let mut enabled = 0;
        ftrace::core::for_each_site(|s| if s.state.flags.contains(SiteFlags::ENABLED) { enabled += 1 });
        let mut sum = 0u64;
        for i in 0..50u64 {
            let v: Vec<u64> = (0..i).collect();
            sum += v.iter().sum::<u64>() + chain_root(i) + regs_target(i, 1, 2);
            sum += crate::ksyms::lookup(addr(chain_a as *const ())).map_or(0, |(s, _)| s.size as u64);
            let s = alloc::format!("{i}:{sum}");
            sum += s.len() as u64;
        }
        tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        kdiag!("{enabled} sites enabled; {} events written, {} read, {} lost", c.written, c.events.len(), c.lost);
        kassert!(enabled > 20, "only {enabled} sites enabled");
        kassert!(c.events.len() > 100, "only {} events", c.events.len());
        kassert_eq!(c.events.len() as u64 + c.lost, c.written, "events unaccounted for");
        kassert!(sum > 0);
        Ok(())
    }
}

ktest! {
    /// When the buffer wraps, the oldest events are overwritten and counted as lost.
    fn function_tracer::lost_events_on_wrap() {
        tracer::reset_buffers();
        tracer::start(Some("dyn_func1")).map_err(fail)?;
        let cap = tracer::BUFFERS[arch::cpu::id()].capacity();
        let n = cap as u64 + 100;
        for _ in 0..n {
            dyn_func1();
        }
        tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        kassert_eq!(c.written, n);
        kassert_eq!(c.events.len(), cap);
        kassert_eq!(c.lost, 100);
        Ok(())
    }
}
