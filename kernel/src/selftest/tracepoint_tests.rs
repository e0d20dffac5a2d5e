//! Suite `tracepoints`: jump-label sites that are one `nop` while no probe is registered, the
//! probes called with the tracepoint's arguments once one is, and the kernel's own tracepoints
//! (the timer tick, module load and free).

use super::TestError;
use crate::tracepoint::{self, TpArg, TpError, Tracepoint, points};
use crate::{kassert, kassert_eq, ktest};
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering::*};

static TEST_TP: Tracepoint = Tracepoint::new("selftest", "tp_test", &[("n", crate::tracepoint::TpType::U64), ("what", crate::tracepoint::TpType::Str)]);

/// Fires `TEST_TP` with `n` and a string; returns `n + 1` (so calls are not merged away).
#[inline(never)]
pub fn tp_site(n: u64) -> u64 {
    crate::tracepoint::trace!(TEST_TP, n, "hello");
    black_box(n) + 1
}

static SEEN_N: AtomicU64 = AtomicU64::new(0);
static SEEN_STR_OK: AtomicU64 = AtomicU64::new(0);
static CALLS_A: AtomicU64 = AtomicU64::new(0);
static CALLS_B: AtomicU64 = AtomicU64::new(0);

fn probe_a(tp: &Tracepoint, args: &[TpArg]) {
    CALLS_A.fetch_add(1, Relaxed);
    if let [TpArg::Num(n), TpArg::Str(s)] = args {
        SEEN_N.store(*n, Relaxed);
        SEEN_STR_OK.store((*s == "hello" && tp.name == "tp_test") as u64, Relaxed);
    }
}

fn probe_b(_tp: &Tracepoint, _args: &[TpArg]) {
    CALLS_B.fetch_add(1, Relaxed);
}

// Distinct bodies, so that the compiler cannot fold them into one function (one address).
static CALLS_CDE: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
fn probe_c(_tp: &Tracepoint, _args: &[TpArg]) {
    CALLS_CDE[0].fetch_add(1, Relaxed);
}
fn probe_d(_tp: &Tracepoint, _args: &[TpArg]) {
    CALLS_CDE[1].fetch_add(2, Relaxed);
}
fn probe_e(_tp: &Tracepoint, _args: &[TpArg]) {
    CALLS_CDE[2].fetch_add(3, Relaxed);
}

fn fail(e: TpError) -> TestError {
    TestError::Fail(alloc::format!("{e}"))
}

fn all_sites(tp: &Tracepoint, on: bool) -> bool {
    tp.sites().count() > 0 && tp.sites().all(|e| arch::jump_label::is_on(e) == on)
}

ktest! {
    /// Off: the site is a `nop` and no probe runs. With a probe: a `b`, the probe sees the
    /// arguments. Two probes both run; unregistering the last puts the `nop` back.
    fn tracepoints::probes_and_sites() {
        for c in [&CALLS_A, &CALLS_B, &SEEN_N, &SEEN_STR_OK] {
            c.store(0, Relaxed);
        }
        kassert!(all_sites(&TEST_TP, false), "a site is a nop while no probe is registered");
        kassert_eq!(tp_site(1), 2);
        kassert_eq!(CALLS_A.load(Relaxed), 0);
        tracepoint::register_probe(&TEST_TP, probe_a).map_err(fail)?;
        let r = (|| {
            kassert!(all_sites(&TEST_TP, true), "registering turned the sites on");
            kassert_eq!(tp_site(41), 42);
            kassert_eq!((CALLS_A.load(Relaxed), SEEN_N.load(Relaxed), SEEN_STR_OK.load(Relaxed)), (1, 41, 1));
            tracepoint::register_probe(&TEST_TP, probe_b).map_err(fail)?;
            tp_site(7);
            kassert_eq!((CALLS_A.load(Relaxed), CALLS_B.load(Relaxed)), (2, 1), "both probes");
            kassert_eq!(tracepoint::register_probe(&TEST_TP, probe_b), Err(TpError::Busy));
            tracepoint::unregister_probe(&TEST_TP, probe_b).map_err(fail)?;
            kassert!(all_sites(&TEST_TP, true), "still on with one probe");
            Ok(())
        })();
        tracepoint::unregister_probe(&TEST_TP, probe_a).map_err(fail)?;
        r?;
        kassert!(all_sites(&TEST_TP, false), "the last probe gone: a nop again");
        tp_site(3);
        kassert_eq!(CALLS_A.load(Relaxed), 2, "no call once unregistered");
        kassert_eq!(tracepoint::unregister_probe(&TEST_TP, probe_a), Err(TpError::NotRegistered));
        Ok(())
    }
}

ktest! {
    /// At most MAX_PROBES probes; the refused one changes nothing.
    fn tracepoints::too_many_probes() {
        let probes = [probe_a, probe_b, probe_c, probe_d];
        for p in probes {
            tracepoint::register_probe(&TEST_TP, p).map_err(fail)?;
        }
        let r = tracepoint::register_probe(&TEST_TP, probe_e);
        for p in probes {
            tracepoint::unregister_probe(&TEST_TP, p).map_err(fail)?;
        }
        kassert_eq!(r, Err(TpError::TooMany));
        kassert!(all_sites(&TEST_TP, false));
        Ok(())
    }
}

static TICKS_SEEN: AtomicU64 = AtomicU64::new(0);

fn count_ticks(_tp: &Tracepoint, args: &[TpArg]) {
    if let [TpArg::Num(cpu)] = args {
        if *cpu == arch::cpu::id() as u64 {
            TICKS_SEEN.fetch_add(1, Relaxed);
        }
    }
}

static LOADS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static LOAD_BASE: AtomicU64 = AtomicU64::new(0);

fn on_load(_tp: &Tracepoint, args: &[TpArg]) {
    if let [TpArg::Str("sample_mod"), TpArg::Num(base)] = args {
        LOADS.fetch_add(1, Relaxed);
        LOAD_BASE.store(*base, Relaxed);
    }
}

fn on_free(_tp: &Tracepoint, args: &[TpArg]) {
    if let [TpArg::Str("sample_mod")] = args {
        FREES.fetch_add(1, Relaxed);
    }
}

ktest! {
    /// irq:timer_tick fires on every tick of this CPU while a probe is registered.
    fn tracepoints::timer_tick() {
        TICKS_SEEN.store(0, Relaxed);
        let cpu = arch::cpu::id();
        tracepoint::register_probe(&points::TIMER_TICK, count_ticks).map_err(fail)?;
        let t0 = crate::irq::ticks(cpu);
        let start = arch::time::ticks();
        while crate::irq::ticks(cpu) < t0 + 3 && arch::time::ticks() - start < crate::time::counter_hz() {
            core::hint::spin_loop();
        }
        tracepoint::unregister_probe(&points::TIMER_TICK, count_ticks).map_err(fail)?;
        let seen = TICKS_SEEN.load(Relaxed);
        kassert!(seen >= 3, "ticks seen by the probe: {seen}");
        kassert!(all_sites(&points::TIMER_TICK, false));
        Ok(())
    }
}

ktest! {
    /// module:module_load and module:module_free fire with the module's name (and base).
    fn tracepoints::module_load_and_free() {
        for c in [&LOADS, &FREES, &LOAD_BASE] {
            c.store(0, Relaxed);
        }
        tracepoint::register_probe(&points::MODULE_LOAD, on_load).map_err(fail)?;
        tracepoint::register_probe(&points::MODULE_FREE, on_free).map_err(fail)?;
        let r = (|| {
            let m = super::module_tests::load("sample_mod")?;
            let base = m.base;
            drop(m);
            crate::module::unload("sample_mod").map_err(|e| TestError::Fail(alloc::format!("unload: {e}")))?;
            kassert_eq!((LOADS.load(Relaxed), LOAD_BASE.load(Relaxed)), (1, base), "module_load");
            kassert_eq!(FREES.load(Relaxed), 1, "module_free");
            Ok(())
        })();
        tracepoint::unregister_probe(&points::MODULE_LOAD, on_load).map_err(fail)?;
        tracepoint::unregister_probe(&points::MODULE_FREE, on_free).map_err(fail)?;
        r
    }
}
