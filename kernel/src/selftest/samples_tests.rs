//! Suite `samples`: each of Linux's five ftrace-direct samples, loaded, exercised, checked for
//! what its handler saw, and unloaded; once with polite and once with poisoning handlers.

use crate::ftrace::FtraceError;
use crate::samples::{self, targets};
use crate::{kassert, kassert_eq, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

fn fail(e: FtraceError) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(alloc::format!("ftrace error: {e}"))
}

fn addr(f: *const ()) -> u64 {
    f as u64
}

fn site_is_nop(f: *const ()) -> bool {
    arch::patch::read_insn(addr(f) + 4) == Ok(arch::insn::NOP)
}

/// Loads a sample, runs `body`, always unloads, and returns the log lines.
fn with_sample(
    s: &samples::Sample,
    body: impl FnOnce() -> crate::selftest::TestResult,
) -> Result<Vec<String>, crate::selftest::TestError> {
    samples::take_log();
    (s.load)().map_err(fail)?;
    let r = body();
    let u = (s.unload)();
    let log = samples::take_log();
    r?;
    u.map_err(fail)?;
    Ok(log)
}

ktest! {
    fn samples::ftrace_direct() {
        super::poison::each_flavour(|_| {
            let s = &samples::ftrace_direct::SAMPLE;
            let log = with_sample(s, || {
                for pid in [1, 7, 42] {
                    kassert_eq!(targets::wake_up_process(pid), pid ^ 0x5a);
                }
                Ok(())
            })?;
            kassert_eq!(log, ["ftrace-direct: waking up task-1", "ftrace-direct: waking up task-7", "ftrace-direct: waking up task-42"]);
            kassert!(site_is_nop(targets::wake_up_process as *const ()));
            targets::wake_up_process(5);
            kassert!(samples::take_log().is_empty(), "handler ran after unload");
            Ok(())
        })
    }
}

ktest! {
    fn samples::ftrace_direct_too() {
        super::poison::each_flavour(|_| {
            let s = &samples::ftrace_direct_too::SAMPLE;
            let (vma, address, flags) = (0xffff_0000_1000u64, 0x7f00_1234u64, 0x55u64);
            let expect = targets::handle_mm_fault(vma, address, flags);
            let log = with_sample(s, || {
                kassert_eq!(targets::handle_mm_fault(vma, address, flags), expect, "a0-a2 survive the detour");
                kassert_eq!(samples::ftrace_direct_too::TOO.private.load(Relaxed), 1, "the ordinary ops ran");
                Ok(())
            })?;
            kassert_eq!(log, [alloc::format!("ftrace-direct-too: handle mm fault vma={vma:#x} address={address:#x} flags={flags:#x}")]);
            kassert!(site_is_nop(targets::handle_mm_fault as *const ()));
            Ok(())
        })
    }
}

ktest! {
    fn samples::ftrace_direct_modify() {
        super::poison::each_flavour(|_| {
            use samples::ftrace_direct_modify::{HITS, flip};
            let s = &samples::ftrace_direct_modify::SAMPLE;
            let log = with_sample(s, || {
                for round in 0..10u64 {
                    for _ in 0..10 {
                        targets::schedule();
                    }
                    let want = ((round / 2 + 1) * 10, (round + 1) / 2 * 10);
                    kassert_eq!((HITS[0].load(Relaxed), HITS[1].load(Relaxed)), want, "round {round}");
                    flip().map_err(fail)?;
                }
                Ok(())
            })?;
            kassert_eq!(HITS[0].load(Relaxed) + HITS[1].load(Relaxed), 100, "every call reached one trampoline");
            kassert_eq!(log.len(), 100);
            kassert!(log[..10].iter().all(|l| l.ends_with("func1")) && log[10..20].iter().all(|l| l.ends_with("func2")));
            kassert!(site_is_nop(targets::schedule as *const ()));
            Ok(())
        })
    }
}

ktest! {
    fn samples::ftrace_direct_multi() {
        super::poison::each_flavour(|_| {
            let s = &samples::ftrace_direct_multi::SAMPLE;
            let wake = addr(targets::wake_up_process as *const ());
            let sched = addr(targets::schedule as *const ());
            let log = with_sample(s, || {
                kassert_eq!(targets::wake_up_process(3), 3 ^ 0x5a);
                targets::schedule();
                Ok(())
            })?;
            kassert_eq!(log, [
                alloc::format!("ftrace-direct-multi: samples::targets::wake_up_process ({wake:#x})").replace("samples::", "loongtrace_kernel::samples::"),
                alloc::format!("ftrace-direct-multi: samples::targets::schedule ({sched:#x})").replace("samples::", "loongtrace_kernel::samples::"),
            ]);
            kassert!(site_is_nop(targets::wake_up_process as *const ()) && site_is_nop(targets::schedule as *const ()));
            Ok(())
        })
    }
}

ktest! {
    fn samples::ftrace_direct_multi_modify() {
        super::poison::each_flavour(|_| {
            let s = &samples::ftrace_direct_multi_modify::SAMPLE;
            let wake = addr(targets::wake_up_process as *const ());
            let sched = addr(targets::schedule as *const ());
            let log = with_sample(s, || {
                targets::wake_up_process(9);
                targets::schedule();
                samples::ftrace_direct_multi_modify::flip().map_err(fail)?;
                targets::wake_up_process(9);
                targets::schedule();
                Ok(())
            })?;
            let line = |f: &str, name: &str, a: u64| alloc::format!("ftrace-direct-multi-modify: {f} loongtrace_kernel::samples::targets::{name} ({a:#x})");
            kassert_eq!(log, [
                line("func1", "wake_up_process", wake),
                line("func1", "schedule", sched),
                line("func2", "wake_up_process", wake),
                line("func2", "schedule", sched),
            ]);
            Ok(())
        })
    }
}
