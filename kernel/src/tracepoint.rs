//! Tracepoints: named points in the kernel's code (Linux's `TRACE_EVENT` sites) that call the
//! probes registered on them, and cost one `nop` while none is.
//!
//! A tracepoint is a `static` [`Tracepoint`] (system, name, argument names) and a
//! `tracepoint::trace!` at the place it describes. The macro is a jump label
//! (`arch::static_branch_unlikely!`, keyed by the tracepoint): off, one `nop`; registering the
//! first probe turns every site of that tracepoint into a branch to the call of the probes
//! (validated patching, every CPU synchronised), unregistering the last turns them back. The trace
//! events (floor 5) register the probe that records an event; tests register their own.
//!
//! Arguments reach the probes as [`TpArg`]s (numbers and strings), so one probe can serve any
//! tracepoint.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Probes one tracepoint can have at once.
pub const MAX_PROBES: usize = 4;

/// One argument as probes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TpArg<'a> {
    Num(u64),
    Str(&'a str),
}

impl From<u64> for TpArg<'_> {
    fn from(v: u64) -> Self {
        TpArg::Num(v)
    }
}
impl From<u32> for TpArg<'_> {
    fn from(v: u32) -> Self {
        TpArg::Num(v as u64)
    }
}
impl From<usize> for TpArg<'_> {
    fn from(v: usize) -> Self {
        TpArg::Num(v as u64)
    }
}
impl<'a> From<&'a str> for TpArg<'a> {
    fn from(v: &'a str) -> Self {
        TpArg::Str(v)
    }
}

/// The type of a tracepoint argument, as its trace event stores and prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TpType {
    /// An unsigned number printed in decimal, 32 or 64 bits.
    U32,
    U64,
    /// A number printed in hex, 32 or 64 bits.
    X32,
    X64,
    /// A code address printed as `symbol+offset/size`.
    Sym,
    /// A string.
    Str,
}

/// A probe: called with the tracepoint and its arguments, in the order of `Tracepoint::args`.
pub type TpProbe = fn(tp: &Tracepoint, args: &[TpArg]);

/// A tracepoint (define it as a `static`; fire it with `tracepoint::trace!`).
pub struct Tracepoint {
    pub system: &'static str,
    pub name: &'static str,
    /// Its arguments: names and types.
    pub args: &'static [(&'static str, TpType)],
    probes: [AtomicUsize; MAX_PROBES],
}

/// Why a probe was not registered or unregistered; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TpError {
    /// [`MAX_PROBES`] probes are registered on it.
    TooMany,
    /// The probe is registered on it already.
    Busy,
    /// The probe is not registered on it.
    NotRegistered,
    /// A site of the tracepoint could not be patched (its word was not what it should be).
    Patch,
}

impl core::fmt::Display for TpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TpError::TooMany => "too many probes on the tracepoint",
            TpError::Busy => "the probe is registered on the tracepoint already",
            TpError::NotRegistered => "the probe is not registered on the tracepoint",
            TpError::Patch => "a site of the tracepoint could not be patched",
        })
    }
}

/// Serialises registration and the patching of sites.
static REG: spin::Mutex<()> = spin::Mutex::new(());

impl Tracepoint {
    pub const fn new(system: &'static str, name: &'static str, args: &'static [(&'static str, TpType)]) -> Tracepoint {
        Tracepoint { system, name, args, probes: [const { AtomicUsize::new(0) }; MAX_PROBES] }
    }

    /// Calls every registered probe (the out-of-line part of `trace!`).
    #[cold]
    #[inline(never)]
    pub fn fire(&self, args: &[TpArg]) {
        for slot in &self.probes {
            let p = slot.load(Ordering::Acquire);
            if p != 0 {
                // SAFETY: a nonzero slot holds a `TpProbe` stored by `register_probe`.
                let probe = unsafe { core::mem::transmute::<usize, TpProbe>(p) };
                probe(self, args);
            }
        }
    }

    /// Whether a probe is registered.
    pub fn enabled(&self) -> bool {
        self.probes.iter().any(|p| p.load(Ordering::Acquire) != 0)
    }

    fn key(&self) -> u64 {
        self as *const Tracepoint as u64
    }

    /// The jump-label sites of this tracepoint (its `trace!` calls in the image).
    pub fn sites(&self) -> impl Iterator<Item = &'static arch::jump_label::JumpEntry> + '_ {
        arch::jump_label::entries().iter().filter(move |e| e.key == self.key())
    }

    /// Turns every site on or off; all or none (a site that cannot be patched puts the others
    /// back).
    fn set_sites(&self, on: bool) -> Result<(), TpError> {
        let mut done = alloc::vec::Vec::new();
        for e in self.sites() {
            if arch::jump_label::set(e, on).is_err() {
                for d in done {
                    let _ = arch::jump_label::set(d, !on);
                }
                return Err(TpError::Patch);
            }
            done.push(e);
        }
        crate::smp::sync_all_cpus();
        Ok(())
    }
}

/// Registers `probe` on `tp` (Linux's `tracepoint_probe_register`); the first probe turns the
/// tracepoint's sites on.
pub fn register_probe(tp: &'static Tracepoint, probe: TpProbe) -> Result<(), TpError> {
    let _g = REG.lock();
    let p = probe as usize;
    if tp.probes.iter().any(|s| s.load(Ordering::Acquire) == p) {
        return Err(TpError::Busy);
    }
    let slot = tp.probes.iter().find(|s| s.load(Ordering::Acquire) == 0).ok_or(TpError::TooMany)?;
    let first = !tp.enabled();
    slot.store(p, Ordering::Release);
    if first {
        if let Err(e) = tp.set_sites(true) {
            slot.store(0, Ordering::Release);
            return Err(e);
        }
    }
    Ok(())
}

/// Unregisters `probe` from `tp`; the last one turns the sites off. A CPU may still be running
/// the probe when this returns (probes are `'static` functions, so that is safe); when it
/// returns, no call that starts later runs it.
pub fn unregister_probe(tp: &'static Tracepoint, probe: TpProbe) -> Result<(), TpError> {
    let _g = REG.lock();
    let p = probe as usize;
    let slot = tp.probes.iter().find(|s| s.load(Ordering::Acquire) == p).ok_or(TpError::NotRegistered)?;
    slot.store(0, Ordering::Release);
    if !tp.enabled() {
        if let Err(e) = tp.set_sites(false) {
            slot.store(p, Ordering::Release);
            return Err(e);
        }
    }
    crate::smp::sync_all_cpus();
    Ok(())
}

/// Fires tracepoint `$tp` (a path to a `static Tracepoint`) with the given arguments: one `nop`
/// while no probe is registered on it. Used as `crate::tracepoint::trace!`.
macro_rules! trace {
    ($tp:path $(, $arg:expr)* $(,)?) => {
        if arch::static_branch_unlikely!($tp) {
            $tp.fire(&[$($crate::tracepoint::TpArg::from($arg)),*]);
        }
    };
}
pub(crate) use trace;

/// The kernel's own tracepoints.
pub mod points {
    use super::{TpType, Tracepoint};

    /// The periodic timer tick (`irq:timer_tick`, argument the CPU).
    pub static TIMER_TICK: Tracepoint = Tracepoint::new("irq", "timer_tick", &[("cpu", TpType::U32)]);
    /// A module was loaded (`module:module_load`: its name and base address).
    pub static MODULE_LOAD: Tracepoint = Tracepoint::new("module", "module_load", &[("name", TpType::Str), ("base", TpType::X64)]);
    /// A module is being freed (`module:module_free`: its name).
    pub static MODULE_FREE: Tracepoint = Tracepoint::new("module", "module_free", &[("name", TpType::Str)]);

    /// An ftrace site's call slot was rewritten (`ftrace:site_update`: the function, the old and
    /// the new word).
    pub static SITE_UPDATE: Tracepoint =
        Tracepoint::new("ftrace", "site_update", &[("ip", TpType::Sym), ("old", TpType::X32), ("new", TpType::X32)]);
    /// A program was attached to a generated BPF trampoline (`bpf:trampoline_attach`: the
    /// function, the program kind, the programs on the trampoline now).
    pub static BPF_ATTACH: Tracepoint =
        Tracepoint::new("bpf", "trampoline_attach", &[("ip", TpType::Sym), ("kind", TpType::Str), ("progs", TpType::U32)]);
    /// A program was detached from a generated BPF trampoline (`bpf:trampoline_detach`).
    pub static BPF_DETACH: Tracepoint =
        Tracepoint::new("bpf", "trampoline_detach", &[("ip", TpType::Sym), ("kind", TpType::Str), ("progs", TpType::U32)]);

    /// Every tracepoint above.
    pub static ALL: &[&Tracepoint] = &[&TIMER_TICK, &MODULE_LOAD, &MODULE_FREE, &SITE_UPDATE, &BPF_ATTACH, &BPF_DETACH];
}
