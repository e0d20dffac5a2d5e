//! Attaching programs (Linux's BPF links): a fentry, fexit or fmod_ret program to its target's
//! generated trampoline (`ftrace::bpf`), a kprobe or kretprobe program to a probe (`kprobes`).
//!
//! ```ignore
//! let loaded = bpfrt::load("fentry_test")?;
//! let prog = bpfrt::prog(loaded.progs[0]).unwrap();
//! let link = bpfrt::link::attach(&prog)?;   // runs at every call of bpf_fentry_test1 from now on
//! bpfrt::link::detach(link)?;               // when this returns no CPU runs it any more
//! ```
//!
//! A program runs JITed when the JIT compiled it, else in the interpreter. Each program attached
//! has a recursion guard (Linux's per-CPU `prog->active`): a word of every CPU's per-CPU area,
//! set while the program runs there. A call that finds it set does not run the program and is
//! counted in the program's `misses` (e.g. a program on a function that its own helper calls, or
//! one interrupted by an interrupt that calls its target). On a trampoline the check is generated
//! code (`arch::bpf_tramp::Guard`: two loads and two stores); on a probe it is Rust.
//!
//! A program has at most one link (Linux refuses a second with `EBUSY`), and a link keeps its
//! program (and so its maps) alive after its object is unloaded, until it is detached.

use super::env::{self, Context};
use super::{BpfProg, ProgKind};
use crate::ftrace::bpf::{Attach, AttachError as TrampError, BpfLink, Func, Kind};
use crate::kprobes::kretprobe::{self, Kretprobe, KretprobeInstance};
use crate::kprobes::{self, Kprobe, KprobeError, Where};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch::boot::{BPF_GUARD_SLOTS, PERCPU_BPF_ACTIVE};
use arch::bpf_tramp::{Guard, Handler};
use arch::frame::PtRegs;
use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Why a program was not attached (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// Its kind has no attach point here (a program of another section).
    Kind(String),
    /// It is attached already (one link per program).
    Busy(u32),
    /// Its section names no target, or the target is not there.
    Target(String),
    /// Every recursion-guard slot is taken (programs attached at once).
    NoSlot,
    /// The trampoline refused.
    Tramp(TrampError),
    /// The probe refused.
    Probe(KprobeError),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Kind(k) => write!(f, "a program of section {k} cannot be attached (fentry, fexit, fmod_ret, kprobe, kretprobe can)"),
            AttachError::Busy(l) => write!(f, "the program is attached already (link {l})"),
            AttachError::Target(t) => write!(f, "attach target {t} not found"),
            AttachError::NoSlot => write!(f, "{BPF_GUARD_SLOTS} programs are attached already"),
            AttachError::Tramp(e) => write!(f, "{e}"),
            AttachError::Probe(e) => write!(f, "{e}"),
        }
    }
}

/// A link as listed: its id, the program's, and where it is.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub id: u32,
    pub prog: u32,
    pub prog_name: String,
    pub kind: ProgKind,
    /// The function (and `+offset` of a kprobe) it is attached to.
    pub target: String,
    /// Its address.
    pub addr: u64,
    /// Whether it runs JITed code.
    pub jited: bool,
}

/// A kprobe program's probe: the probe first, so the handler finds the rest from it.
#[repr(C)]
struct ProbeBox {
    kp: Kprobe,
    prog: Arc<BpfProg>,
    slot: usize,
}

/// A kretprobe program's probe. Instances of a call still in flight refer to the kretprobe after
/// it is unregistered (they then run no handler), so its memory is never freed; the program is
/// released at detach through `prog`, and the box is used again by the next kretprobe program
/// on the same function ([`RETPROBES`]).
#[repr(C)]
struct RetProbeBox {
    rp: Kretprobe,
    prog: AtomicPtr<BpfProg>,
    slot: core::sync::atomic::AtomicUsize,
    /// The target it was made for (what `rp` names).
    target: &'static str,
    in_use: core::sync::atomic::AtomicBool,
}

/// Every kretprobe box ever made (they are never freed), for reuse.
static RETPROBES: spin::Mutex<Vec<&'static RetProbeBox>> = spin::Mutex::new(Vec::new());

enum Hook {
    Tramp(BpfLink),
    Kprobe(&'static ProbeBox),
    Kretprobe(&'static RetProbeBox),
}

struct Link {
    info: LinkInfo,
    prog: Arc<BpfProg>,
    slot: usize,
    hook: Hook,
}

static LINKS: spin::Mutex<Vec<Link>> = spin::Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Guard slots in use, one bit each.
static SLOTS: spin::Mutex<u128> = spin::Mutex::new(0);
/// Interpreted runs from a hook that faulted (each is logged the first time) or were refused by a
/// quiescent point in progress.
pub static FAULTS: AtomicU64 = AtomicU64::new(0);
pub static DEFERRED: AtomicU64 = AtomicU64::new(0);

const _: () = assert!(BPF_GUARD_SLOTS <= 128);

fn take_slot() -> Option<usize> {
    let mut s = SLOTS.lock();
    let free = (0..BPF_GUARD_SLOTS).find(|&i| *s & (1 << i) == 0)?;
    *s |= 1 << free;
    Some(free)
}

fn give_slot(i: usize) {
    *SLOTS.lock() &= !(1u128 << i);
}

/// Links attached now.
pub fn attached() -> usize {
    LINKS.lock().len()
}

/// Every link, by id.
pub fn links() -> Vec<LinkInfo> {
    LINKS.lock().iter().map(|l| l.info.clone()).collect()
}

/// The link of program `prog`, if it is attached.
pub fn link_of(prog: u32) -> Option<u32> {
    LINKS.lock().iter().find(|l| l.prog.id == prog && prog != 0).map(|l| l.info.id)
}

/// Runs an interpreted program from a trampoline: `ctx` is the trampoline's frame, `prog` the
/// program (its guard was checked by the trampoline).
extern "C" fn run_interpreted(ctx: u64, prog: u64) -> u64 {
    // SAFETY: `prog` is the address of the `BpfProg` the link holds (its `Arc`), alive while the
    // trampoline that passes it can run (detaching waits until no CPU is in it).
    let prog = unsafe { &*(prog as *const BpfProg) };
    // SAFETY: the trampoline's frame, FRAME_SIZE bytes, alive during this call; the body
    // address is at CTX_BODY.
    let func_ip = unsafe { core::ptr::read_volatile((ctx + arch::bpf_tramp::CTX_BODY as u64) as *const u64) } - 8;
    let nargs = prog.nargs.unwrap_or(super::MAX_ARGS);
    // SAFETY: the frame holds the program's whole context (its size is at most the frame's).
    let c = unsafe { Context::at(prog.kind, ctx, (prog.ctx_size as usize).min(arch::bpf_tramp::FRAME_SIZE as usize), nargs, func_ip) };
    finish(prog, env::run_attached(prog, &c))
}

fn finish(prog: &BpfProg, r: Option<Result<bpf::interp::Exit, bpf::interp::Fault>>) -> u64 {
    match r {
        Some(Ok(exit)) => exit.r0,
        Some(Err(f)) => {
            if FAULTS.fetch_add(1, Ordering::Relaxed) == 0 {
                log::error!("bpf: program {} faulted: {f}", prog.name);
            }
            0
        }
        None => {
            DEFERRED.fetch_add(1, Ordering::Relaxed);
            0
        }
    }
}

/// Runs `prog` from a probe on `regs`, behind its guard.
fn run_on_regs(prog: &BpfProg, slot: usize, regs: &mut PtRegs) {
    let active = &arch::boot::this_cpu().bpf_active[slot];
    if active.load(Ordering::Relaxed) != 0 {
        prog.misses[arch::cpu::id() % arch::boot::MAX_CPUS].fetch_add(1, Ordering::Relaxed);
        return;
    }
    active.store(1, Ordering::Relaxed);
    let ctx = regs as *mut PtRegs as u64;
    match &prog.jited {
        // SAFETY: the verifier accepted the program for a `pt_regs` context, which `regs` is;
        // the program's maps live as long as it does.
        Some(j) => {
            unsafe { j.call(ctx) };
        }
        None => {
            // SAFETY: `regs` is the probe's frame, alive during the handler.
            let c = unsafe { Context::at(prog.kind, ctx, super::PT_REGS_SIZE as usize, 0, 0) };
            finish(prog, env::run_attached(prog, &c));
        }
    }
    active.store(0, Ordering::Relaxed);
}

fn kprobe_pre(kp: &Kprobe, regs: &mut PtRegs) -> bool {
    // SAFETY: every kprobe registered with this handler is the first field of a `ProbeBox`
    // (`repr(C)`), alive until it is unregistered, which waits for the handler.
    let b = unsafe { &*(kp as *const Kprobe as *const ProbeBox) };
    run_on_regs(&b.prog, b.slot, regs);
    false
}

fn kretprobe_ret(ri: &KretprobeInstance, regs: &mut PtRegs) {
    let Some(rp) = ri.kretprobe() else { return };
    // SAFETY: every kretprobe registered with this handler is the first field of a leaked
    // `RetProbeBox` (`repr(C)`).
    let b = unsafe { &*(rp as *const Kretprobe as *const RetProbeBox) };
    let p = b.prog.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: non-null: the link still holds the program (detach clears the pointer, waits until
    // no handler runs, then drops its reference).
    run_on_regs(unsafe { &*p }, b.slot.load(Ordering::Relaxed), regs);
}

/// The trampoline function of a target: `FUNC` or `module:FUNC`.
fn func_of(target: &str, nargs: usize) -> Result<Func, AttachError> {
    let r = match target.split_once(':') {
        Some((module, f)) => Func::in_module(module, f, nargs),
        None => Func::named(target, nargs),
    };
    r.map_err(AttachError::Tramp)
}

/// Attaches `prog` to its section's target; returns the link's id.
pub fn attach(prog: &Arc<BpfProg>) -> Result<u32, AttachError> {
    let target = prog.target.clone().ok_or_else(|| AttachError::Target(prog.section.clone()))?;
    let mut links = LINKS.lock();
    if let Some(l) = links.iter().find(|l| Arc::ptr_eq(&l.prog, prog)) {
        return Err(AttachError::Busy(l.info.id));
    }
    let slot = take_slot().ok_or(AttachError::NoSlot)?;
    let hooked = hook(prog, &target, slot);
    let (hook, addr) = match hooked {
        Ok(h) => h,
        Err(e) => {
            give_slot(slot);
            return Err(e);
        }
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let target = if prog.offset != 0 { alloc::format!("{target}+{:#x}", prog.offset) } else { target };
    let info = LinkInfo { id, prog: prog.id, prog_name: prog.name.clone(), kind: prog.kind, target, addr, jited: prog.jited.is_some() };
    links.push(Link { info, prog: prog.clone(), slot, hook });
    Ok(id)
}

fn hook(prog: &Arc<BpfProg>, target: &str, slot: usize) -> Result<(Hook, u64), AttachError> {
    let guard = Guard { percpu_off: (PERCPU_BPF_ACTIVE + 8 * slot) as u16, misses: prog.misses.as_ptr() as u64 };
    let kind = match prog.kind {
        ProgKind::Fentry => Some(Kind::Fentry),
        ProgKind::Fexit => Some(Kind::Fexit),
        ProgKind::FmodRet => Some(Kind::FmodRet),
        _ => None,
    };
    if let Some(kind) = kind {
        let func = func_of(target, prog.nargs.unwrap_or(super::MAX_ARGS) as usize)?;
        let handler = match &prog.jited {
            Some(j) => Handler { addr: j.addr(), arg: None, guard: Some(guard) },
            None => Handler { addr: run_interpreted as *const () as u64, arg: Some(Arc::as_ptr(prog) as u64), guard: Some(guard) },
        };
        let link = Attach::handler(kind, func, handler, kind != Kind::Fentry).map_err(AttachError::Tramp)?;
        return Ok((Hook::Tramp(link), func.ip()));
    }
    let addr = super::target_addr(target).ok_or_else(|| AttachError::Target(target.to_string()))?;
    match prog.kind {
        ProgKind::Kprobe => {
            let b: &'static ProbeBox = Box::leak(Box::new(ProbeBox {
                kp: Kprobe::with(Where::Addr(addr + prog.offset), Some(kprobe_pre), None),
                prog: prog.clone(),
                slot,
            }));
            if let Err(e) = kprobes::register_kprobe(&b.kp) {
                // SAFETY: leaked just above and never registered: no other reference.
                drop(unsafe { Box::from_raw(b as *const ProbeBox as *mut ProbeBox) });
                return Err(AttachError::Probe(e));
            }
            Ok((Hook::Kprobe(b), addr + prog.offset))
        }
        ProgKind::Kretprobe => {
            let b = retprobe_box(target);
            b.slot.store(slot, Ordering::Relaxed);
            b.prog.store(Arc::into_raw(prog.clone()) as *mut BpfProg, Ordering::Release);
            if let Err(e) = kretprobe::register_kretprobe(&b.rp) {
                release(b);
                return Err(AttachError::Probe(e));
            }
            Ok((Hook::Kretprobe(b), addr))
        }
        _ => Err(AttachError::Kind(prog.section.clone())),
    }
}

/// An unused kretprobe box for `target`: one made before for it, or a new one.
fn retprobe_box(target: &str) -> &'static RetProbeBox {
    let mut all = RETPROBES.lock();
    if let Some(b) = all.iter().find(|b| b.target == target && !b.in_use.load(Ordering::Relaxed)) {
        b.in_use.store(true, Ordering::Relaxed);
        return b;
    }
    // The kretprobe names its function (`FUNC`, `module:FUNC`): kept with the probe.
    let sym: &'static str = Box::leak(target.to_string().into_boxed_str());
    let b: &'static RetProbeBox = Box::leak(Box::new(RetProbeBox {
        rp: Kretprobe::new(sym, None, Some(kretprobe_ret), 0),
        prog: AtomicPtr::new(core::ptr::null_mut()),
        slot: core::sync::atomic::AtomicUsize::new(0),
        target: sym,
        in_use: core::sync::atomic::AtomicBool::new(true),
    }));
    all.push(b);
    b
}

/// Drops a kretprobe box's reference to its program and makes the box reusable.
fn release(b: &RetProbeBox) {
    let p = b.prog.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` came from `Arc::into_raw` in `hook` and is released once (swapped out).
        drop(unsafe { Arc::from_raw(p) });
    }
    b.in_use.store(false, Ordering::Relaxed);
}

/// Detaches link `id`: when this returns, no CPU runs its program from it any more. On an error
/// the link stays attached (and listed). When a CPU was never seen leaving the old trampoline
/// (its code is leaked, `ftrace::bpf::LEAKED`), the program and its guard slot are kept forever
/// too, since that code may still call them.
pub fn detach(id: u32) -> Result<(), String> {
    let mut link = {
        let mut links = LINKS.lock();
        let i = links.iter().position(|l| l.info.id == id).ok_or_else(|| alloc::format!("no link {id} (bpf link list shows them)"))?;
        links.remove(i)
    };
    match unhook(&mut link.hook) {
        Err(e) => {
            LINKS.lock().push(link);
            return Err(e);
        }
        Ok(false) => {
            log::error!("bpf: link {id}: a CPU never left the old trampoline; program {} is kept", link.prog.name);
            core::mem::forget(link.prog);
        }
        Ok(true) => {
            give_slot(link.slot);
            drop(link.prog);
        }
    }
    if attached() == 0 {
        super::reclaim_deleted();
    }
    Ok(())
}

/// Takes the program off its hook: `Ok(true)` when nothing can run it from there any more,
/// `Ok(false)` when old code that may call it had to be leaked.
fn unhook(hook: &mut Hook) -> Result<bool, String> {
    match hook {
        Hook::Tramp(l) => l.detach_in_place().map_err(|e| alloc::format!("{e}")),
        Hook::Kprobe(b) => {
            kprobes::unregister_kprobe(&b.kp).map_err(|e| alloc::format!("{e}"))?;
            // SAFETY: unregistered (which waited until no CPU runs the handler); nothing else
            // refers to the box, which `hook` leaked for this link alone.
            drop(unsafe { Box::from_raw(*b as *const ProbeBox as *mut ProbeBox) });
            Ok(true)
        }
        Hook::Kretprobe(b) => {
            kretprobe::unregister_kretprobe(&b.rp).map_err(|e| alloc::format!("{e}"))?;
            release(b);
            Ok(true)
        }
    }
}

/// Calls `f` if no program is attached, holding attachments back until it returns.
pub fn while_none_attached<R>(f: impl FnOnce() -> R) -> Option<R> {
    let links = LINKS.lock();
    let r = links.is_empty().then(f);
    drop(links);
    r
}

/// Detaches every link (recovery after an abandoned test case, and `bpf link detach all`).
pub fn detach_all() {
    let ids: Vec<u32> = LINKS.lock().iter().map(|l| l.info.id).collect();
    for id in ids {
        if let Err(e) = detach(id) {
            log::error!("bpf: detaching link {id}: {e}");
        }
    }
}

/// After an abandoned self-test case (the trampolines and probes were already torn down by their
/// own recovery): forgets every link, releasing what it held.
pub fn recover_after_abort() {
    if LINKS.is_locked() {
        // SAFETY: only the self-test CPU attaches and detaches while cases run; the holder was the
        // case that was just abandoned on this CPU and will never release the lock.
        unsafe { LINKS.force_unlock() };
    }
    if SLOTS.is_locked() {
        // SAFETY: as above.
        unsafe { SLOTS.force_unlock() };
    }
    let links = core::mem::take(&mut *LINKS.lock());
    for mut l in links {
        // The trampolines' own recovery already freed them; a probe may still be registered.
        if let Ok(true) | Err(_) = unhook(&mut l.hook) {
            give_slot(l.slot);
        }
    }
}

/// What the self-tests check after every case: no link left.
pub fn check_none_attached() -> Result<(), String> {
    match links().first() {
        None => Ok(()),
        Some(l) => Err(alloc::format!("BPF link {} (program {} on {}) still attached", l.id, l.prog_name, l.target)),
    }
}
