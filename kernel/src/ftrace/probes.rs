//! Function probes, the commands of `set_ftrace_filter` (`func:traceoff[:N]`, `func:traceon[:N]`,
//! `func:stacktrace[:N]`): an ops on the probed functions that turns tracing off or on, or writes
//! the stack into the trace, at most N times (or always).

use super::ops::{FtraceOps, FtraceRegs, OpsFlags};
use super::tracer::{self, set_tracing_on, tracing_on};
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

/// Probes that can exist at once.
pub const MAX_PROBES: usize = 64;
/// Frames a `stacktrace` probe writes at most.
const STACK_FRAMES: usize = 16;

/// What a probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ProbeKind {
    TraceOff = 1,
    TraceOn = 2,
    StackTrace = 3,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::TraceOff => "traceoff",
            ProbeKind::TraceOn => "traceon",
            ProbeKind::StackTrace => "stacktrace",
        }
    }
    pub fn from_name(n: &str) -> Option<Self> {
        [ProbeKind::TraceOff, ProbeKind::TraceOn, ProbeKind::StackTrace].into_iter().find(|k| k.name() == n)
    }
    fn from_u8(v: u8) -> Option<Self> {
        [ProbeKind::TraceOff, ProbeKind::TraceOn, ProbeKind::StackTrace].into_iter().find(|k| *k as u8 == v)
    }
}

/// One slot: the function's entry (0 = free), the kind, and the runs left (-1 = unlimited).
struct Slot {
    ip: AtomicU64,
    kind: AtomicU8,
    left: AtomicI64,
}

static SLOTS: [Slot; MAX_PROBES] =
    [const { Slot { ip: AtomicU64::new(0), kind: AtomicU8::new(0), left: AtomicI64::new(0) } }; MAX_PROBES];

/// A probe as `set_ftrace_filter` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ip: u64,
    pub kind: ProbeKind,
    /// Runs left; `None` = unlimited.
    pub left: Option<u64>,
}

/// Every probe in place.
pub fn list() -> alloc::vec::Vec<Probe> {
    SLOTS
        .iter()
        .filter_map(|s| {
            let ip = s.ip.load(Ordering::Acquire);
            let kind = ProbeKind::from_u8(s.kind.load(Ordering::Relaxed))?;
            let left = s.left.load(Ordering::Relaxed);
            (ip != 0).then_some(Probe { ip, kind, left: (left >= 0).then_some(left as u64) })
        })
        .collect()
}

/// Puts `probes` in place of the current set (the slot of a probe that stays keeps its count).
/// Fails (changing nothing) when they do not fit.
pub fn replace(probes: &[Probe]) -> Result<(), ()> {
    if probes.len() > MAX_PROBES {
        return Err(());
    }
    for (slot, p) in SLOTS.iter().zip(probes.iter().map(Some).chain(core::iter::repeat(None))) {
        match p {
            Some(p) => {
                let same = slot.ip.load(Ordering::Relaxed) == p.ip && slot.kind.load(Ordering::Relaxed) == p.kind as u8;
                if !same {
                    slot.ip.store(0, Ordering::Release);
                    slot.kind.store(p.kind as u8, Ordering::Relaxed);
                    slot.left.store(p.left.map_or(-1, |n| n.min(i64::MAX as u64) as i64), Ordering::Relaxed);
                    slot.ip.store(p.ip, Ordering::Release);
                }
            }
            None => slot.ip.store(0, Ordering::Release),
        }
    }
    Ok(())
}

/// Takes one run of a counted probe; true if it may act.
fn take_run(left: &AtomicI64) -> bool {
    let mut cur = left.load(Ordering::Relaxed);
    loop {
        if cur < 0 {
            return true;
        }
        if cur == 0 {
            return false;
        }
        match left.compare_exchange_weak(cur, cur - 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(v) => cur = v,
        }
    }
}

extern "C" fn probe_call(ip: u64, parent_ip: u64, _ops: &FtraceOps, regs: &mut FtraceRegs) {
    for slot in SLOTS.iter() {
        if slot.ip.load(Ordering::Acquire) != ip {
            continue;
        }
        let Some(kind) = ProbeKind::from_u8(slot.kind.load(Ordering::Relaxed)) else { continue };
        match kind {
            // Linux's traceoff/traceon probes only count runs that change the state.
            ProbeKind::TraceOff if tracing_on() && take_run(&slot.left) => {
                set_tracing_on(false)
            }
            ProbeKind::TraceOn if !tracing_on() && take_run(&slot.left) => {
                set_tracing_on(true)
            }
            ProbeKind::StackTrace if tracing_on() && take_run(&slot.left) => write_stack(ip, parent_ip, regs),
            _ => {}
        }
    }
}

/// Writes the stack at `ip`'s entry into the trace: the function, then each caller.
fn write_stack(ip: u64, parent_ip: u64, regs: &FtraceRegs) {
    let first = Some((parent_ip, regs.stack_pointer()));
    tracer::record_stack(ip, first, regs.frame_pointer(), STACK_FRAMES, crate::ftrace::fgraph::real_return_address);
}

/// The probes' ops (full registers, for the frame pointer a stack trace starts from).
pub static PROBE_OPS: FtraceOps = FtraceOps::new(probe_call, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));
