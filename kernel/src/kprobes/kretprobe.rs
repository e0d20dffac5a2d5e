//! kretprobes: a handler at a function's return (Linux's `struct kretprobe` on its rethook).
//!
//! A kretprobe is a kprobe at the function's entry (on ftrace when the function is traceable,
//! a `break` otherwise) whose pre handler takes an *instance*: it remembers the real return
//! address (`ra` at entry) and the stack pointer, runs the entry handler, and puts
//! `kretprobe_trampoline` (`arch::rethook`) in `ra`. When the function returns there, the
//! trampoline saves every register and calls [`trampoline_handler`], which finds the instance
//! by the stack pointer (a function returns with the one it was entered with), sets `era` to
//! the real return address, runs the return handler and sends the trampoline there.
//!
//! Instances live on a per-CPU stack (this kernel runs no tasks: a CPU's calls nest), at most
//! `maxactive` of one kretprobe at once on all CPUs; a call beyond that is counted in
//! [`Kretprobe::nmissed`] and runs unhooked. A backtrace inside a return handler (or in any
//! function whose return is hooked) shows the real callers: [`real_return_address`] is
//! registered with `ksyms` as the graph tracer's is.
//!
//! Why not the function-graph return hook: its site ops enables every function the graph
//! tracer wants (all of them by default) and one kretprobe would pay for all; here only the
//! probed function's site is enabled, and the return handler gets the full register frame
//! Linux gives it. The two hooks nest: a function hooked by both returns through both, in the
//! order they hooked it, since each matches its entries by the stack pointer.
//!
//! See docs/kprobes.md.

use super::{Kprobe, KprobeError};
use crate::ftrace::{FtraceOps, FtraceRegs};
use arch::frame::PtRegs;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Per-call data an entry handler can keep for the return handler (Linux's `data_size`).
pub const KRETPROBE_DATA_WORDS: usize = 4;
/// Hooked calls each CPU can have outstanding (all kretprobes together).
pub const KRETPROBE_STACK: usize = 64;
/// Most instances a kretprobe may ask for.
pub const MAX_ACTIVE: usize = 1024;
const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// Runs at the function's entry with the probe's register frame; return `true` to hook this
/// call's return (`false`: the return handler will not run for it). `ri.data` is the call's
/// scratch space.
pub type EntryHandler = fn(ri: &mut KretprobeInstance, regs: &mut PtRegs) -> bool;
/// Runs at the function's return: `regs` holds every register the function returned with
/// (`a0`/`a1` its result), `era` the real return address. A handler may change the result
/// (`a0`, `a1`) and where the call returns (`era`); the other registers are read-only (the
/// callee-saved ones are the function's own, the temporaries dead at a return).
pub type RetHandler = fn(ri: &KretprobeInstance, regs: &mut PtRegs);

/// One hooked call (Linux's `kretprobe_instance`).
#[derive(Clone, Copy)]
pub struct KretprobeInstance {
    rp: Option<&'static Kretprobe>,
    generation: u32,
    /// The function's entry address.
    pub func: u64,
    /// Where the function really returns.
    pub ret_addr: u64,
    /// The stack pointer at entry (and at return).
    pub sp: u64,
    /// The entry handler's data for the return handler.
    pub data: [u64; KRETPROBE_DATA_WORDS],
}

const EMPTY: KretprobeInstance =
    KretprobeInstance { rp: None, generation: 0, func: 0, ret_addr: 0, sp: 0, data: [0; KRETPROBE_DATA_WORDS] };

impl KretprobeInstance {
    /// The kretprobe that hooked the call.
    pub fn kretprobe(&self) -> Option<&'static Kretprobe> {
        self.rp
    }
}

/// A kretprobe: define it as a `static`, register it, unregister it.
pub struct Kretprobe {
    kp: Kprobe,
    pub entry_handler: Option<EntryHandler>,
    pub handler: Option<RetHandler>,
    /// Instances at once on all CPUs (0: Linux's default, max(10, 2 × CPUs)).
    pub maxactive: usize,
    active: AtomicUsize,
    /// [`Kretprobe::max_instances`], fixed at registration.
    limit: AtomicUsize,
    nmissed: AtomicU64,
    /// Bumped by unregistering: instances of an older registration run no handler.
    generation: AtomicU32,
    registered: AtomicBool,
}

impl Kretprobe {
    /// A kretprobe on the return of `symbol` (a name as `Kprobe::new` takes it).
    pub const fn new(symbol: &'static str, entry_handler: Option<EntryHandler>, handler: Option<RetHandler>, maxactive: usize) -> Kretprobe {
        Kretprobe {
            kp: Kprobe::new(symbol, 0, Some(entry_pre_handler), None),
            entry_handler,
            handler,
            maxactive,
            active: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            nmissed: AtomicU64::new(0),
            generation: AtomicU32::new(0),
            registered: AtomicBool::new(false),
        }
    }

    /// Calls not hooked: more than `maxactive` were running, or this CPU's stack was full.
    pub fn nmissed(&self) -> u64 {
        self.nmissed.load(Ordering::Relaxed)
    }
    /// Hooked calls that have not returned yet.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    /// The entry probe (its address, its hits, whether it is on ftrace).
    pub fn kprobe(&self) -> &Kprobe {
        &self.kp
    }
    /// The number of instances this kretprobe may have at once.
    pub fn max_instances(&self) -> usize {
        match self.maxactive {
            0 => (2 * crate::smp::online()).max(10),
            n => n.min(MAX_ACTIVE),
        }
    }
}

/// Per CPU: the hooked calls outstanding, innermost last.
struct RetStack {
    depth: usize,
    entries: [KretprobeInstance; KRETPROBE_STACK],
    /// Return handlers running on this CPU (nested by interrupts; unregistering waits for 0).
    in_handler: u32,
}

struct PerCpu([UnsafeCell<RetStack>; MAX_CPUS]);
// SAFETY: each CPU only touches its own element, with interrupts disabled (`with_stack`), except
// `in_handler`, which other CPUs only read through a volatile load while unregistering.
unsafe impl Sync for PerCpu {}

static STACKS: PerCpu = PerCpu([const { UnsafeCell::new(RetStack { depth: 0, entries: [EMPTY; KRETPROBE_STACK], in_handler: 0 }) }; MAX_CPUS]);

/// Runs `f` on this CPU's instance stack with interrupts off.
#[inline(always)]
fn with_stack<R>(f: impl FnOnce(&mut RetStack) -> R) -> R {
    let irq = arch::cpu::irq_save();
    // SAFETY: see `PerCpu`: this CPU's element, interrupts off, no other reference alive.
    let r = f(unsafe { &mut *STACKS.0[arch::cpu::id() % MAX_CPUS].get() });
    arch::cpu::irq_restore(irq);
    r
}

/// The pre handler of every kretprobe's entry probe (Linux's `pre_handler_kretprobe`): takes an
/// instance on this CPU's stack, runs the entry handler on it, and hooks the return.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn entry_pre_handler(p: &Kprobe, regs: &mut PtRegs) -> bool {
    // SAFETY: `register_kretprobe` set `private` to the `&'static Kretprobe` that embeds `p`
    // before arming it.
    let rp: &'static Kretprobe = unsafe { &*(p.private.load(Ordering::Relaxed) as *const Kretprobe) };
    if rp.active.fetch_add(1, Ordering::Relaxed) >= rp.limit.load(Ordering::Relaxed) {
        return missed(rp);
    }
    let ri = KretprobeInstance {
        rp: Some(rp),
        generation: rp.generation.load(Ordering::Relaxed),
        func: p.addr(),
        ret_addr: regs.regs[1],
        sp: regs.regs[3],
        data: [0; KRETPROBE_DATA_WORDS],
    };
    // Pushed first, so that calls hooked by an interrupt meanwhile nest above it.
    let at = with_stack(|s| {
        let d = s.depth;
        if d == KRETPROBE_STACK {
            return None;
        }
        s.entries[d] = ri;
        s.depth = d + 1;
        Some(d)
    });
    let Some(at) = at else { return missed(rp) };
    if let Some(entry) = rp.entry_handler {
        let mut mine = ri;
        let take = entry(&mut mine, regs);
        // Interrupts nest: whatever they pushed above `at` they popped again.
        with_stack(|s| {
            if take {
                s.entries[at].data = mine.data;
            } else {
                s.depth = at;
            }
        });
        if !take {
            rp.active.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // The entry handler may have changed the return address.
        with_stack(|s| s.entries[at].ret_addr = regs.regs[1]);
    }
    regs.regs[1] = arch::rethook::trampoline();
    false
}

/// The ftrace callback of a kretprobe's entry probe when the kretprobe has no entry handler
/// (`arm_on_ftrace` chooses it with [`entry_without_regs`]): an argument-frame ops, so the entry
/// costs `ftrace_caller`, not the full path. As a probe it counts hits and misses like any.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn ftrace_entry(_ip: u64, _parent: u64, ops: &FtraceOps, fregs: &mut FtraceRegs) {
    // SAFETY: `arm_on_ftrace` set `private` to the `&'static Kprobe` owning this ops, and
    // `register_kretprobe` that probe's `private` to its `&'static Kretprobe`, before arming.
    let p: &'static Kprobe = unsafe { &*(ops.private.load(Ordering::Relaxed) as *const Kprobe) };
    // SAFETY: as above.
    let rp: &'static Kretprobe = unsafe { &*(p.private.load(Ordering::Relaxed) as *const Kretprobe) };
    if !super::cur_get().is_null() {
        p.nmissed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    p.hits.fetch_add(1, Ordering::Relaxed);
    if rp.active.fetch_add(1, Ordering::Relaxed) >= rp.limit.load(Ordering::Relaxed) {
        missed(rp);
        return;
    }
    let parent = fregs.parent_slot();
    let ri = KretprobeInstance {
        rp: Some(rp),
        generation: rp.generation.load(Ordering::Relaxed),
        func: p.addr(),
        ret_addr: *parent,
        sp: 0,
        data: [0; KRETPROBE_DATA_WORDS],
    };
    let sp = fregs.stack_pointer();
    let pushed = with_stack(|s| {
        let d = s.depth;
        if d == KRETPROBE_STACK {
            return false;
        }
        s.entries[d] = KretprobeInstance { sp, ..ri };
        s.depth = d + 1;
        true
    });
    if pushed {
        *fregs.parent_slot() = arch::rethook::trampoline();
    } else {
        missed(rp);
    }
}

/// The entry callback for probe `p` when it is the entry of a kretprobe that needs no register
/// frame there (no entry handler).
pub(super) fn entry_without_regs(p: &Kprobe) -> Option<crate::ftrace::FtraceFunc> {
    let rp = p.private.load(Ordering::Relaxed) as *const Kretprobe;
    // SAFETY: a nonzero `private` of a probe is its `&'static Kretprobe` (set before arming).
    (!rp.is_null() && unsafe { (*rp).entry_handler.is_none() }).then_some(ftrace_entry as crate::ftrace::FtraceFunc)
}

/// A call the kretprobe could not hook.
#[cold]
fn missed(rp: &Kretprobe) -> bool {
    rp.active.fetch_sub(1, Ordering::Relaxed);
    rp.nmissed.fetch_add(1, Ordering::Relaxed);
    false
}

/// Counts a finished instance (unless its kretprobe was unregistered since).
#[inline]
fn release(ri: &KretprobeInstance) {
    if let Some(rp) = ri.rp {
        if rp.generation.load(Ordering::Relaxed) == ri.generation {
            rp.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Called by `kretprobe_trampoline` with the registers the function returned with: finds the
/// call's instance, sets `era` to the real return address and runs the return handler.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn trampoline_handler(regs: &mut PtRegs) {
    let sp = regs.regs[3];
    // The instance stays on the stack while the handler runs, so a backtrace finds it. Checked
    // and marked with interrupts off, so that the synchronising IPI of `unregister_kretprobe`
    // comes before both or after both.
    let found = with_stack(|s| {
        let top = s.depth.checked_sub(1)?;
        let i = if s.entries[top].sp == sp { top } else { s.entries[..top].iter().rposition(|e| e.sp == sp)? };
        if i != top {
            // Above the match: calls whose frames were abandoned (a self-test recovering).
            s.entries[i + 1..s.depth].iter().for_each(release);
            s.depth = i + 1;
        }
        let ri = s.entries[i];
        let run = ri.rp.is_some_and(|rp| {
            rp.handler.is_some() && rp.generation.load(Ordering::Acquire) == ri.generation && rp.registered.load(Ordering::Acquire)
        });
        s.in_handler += run as u32;
        Some((ri, run))
    });
    let Some((ri, run)) = found else {
        panic!("kretprobe_trampoline reached with no instance for sp {sp:#x}");
    };
    regs.era = ri.ret_addr;
    if run {
        if let Some(handler) = ri.rp.and_then(|rp| rp.handler) {
            // Probes hit inside the return handler are missed, as inside a kprobe handler.
            let outer = super::cur_swap(&BUSY as *const Kprobe as *mut Kprobe);
            handler(&ri, regs);
            super::cur_set(outer);
        }
    }
    with_stack(|s| {
        s.in_handler -= run as u32;
        s.depth -= 1;
    });
    release(&ri);
}

/// Stands for "a kretprobe handler runs" in the per-CPU current probe (Linux's `kprobe_busy`).
static BUSY: Kprobe = Kprobe::new("", 0, None, None);

/// Maps the trampoline's address found in the frame record at `fp` to the real return address
/// (for backtraces; registered with `ksyms`).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn real_return_address(ret: u64, fp: u64) -> u64 {
    if ret != arch::rethook::trampoline() {
        return ret;
    }
    with_stack(|s| s.entries[..s.depth].iter().rev().find(|e| e.sp == fp).map_or(ret, |e| e.ret_addr))
}

/// Registers `rp` (Linux's `register_kretprobe`): its entry probe is armed at once.
pub fn register_kretprobe(rp: &'static Kretprobe) -> Result<(), KprobeError> {
    if rp.registered.swap(true, Ordering::AcqRel) {
        return Err(KprobeError::AlreadyRegistered);
    }
    rp.kp.private.store(rp as *const Kretprobe as usize, Ordering::Release);
    rp.active.store(0, Ordering::Release);
    rp.limit.store(rp.max_instances(), Ordering::Release);
    rp.nmissed.store(0, Ordering::Relaxed);
    if let Err(e) = super::register_kprobe(&rp.kp) {
        rp.registered.store(false, Ordering::Release);
        return Err(e);
    }
    Ok(())
}

/// Unregisters `rp` (Linux's `unregister_kretprobe`): no new call is hooked, and when this
/// returns no return handler of it runs on any CPU. Calls hooked before still return through
/// the trampoline to their callers, without the handler.
pub fn unregister_kretprobe(rp: &'static Kretprobe) -> Result<(), KprobeError> {
    if !rp.registered.load(Ordering::Acquire) {
        return Err(KprobeError::NotRegistered);
    }
    super::unregister_kprobe(&rp.kp)?;
    rp.generation.fetch_add(1, Ordering::AcqRel);
    rp.registered.store(false, Ordering::Release);
    crate::smp::sync_all_cpus();
    // A handler that started before the generation changed may still run on another CPU.
    let me = arch::cpu::id() % MAX_CPUS;
    for (cpu, stack) in STACKS.0.iter().enumerate() {
        if cpu == me {
            continue;
        }
        // SAFETY: a plain read of another CPU's flag, which that CPU writes with single stores.
        while unsafe { core::ptr::addr_of!((*stack.get()).in_handler).read_volatile() } != 0 {
            core::hint::spin_loop();
        }
    }
    rp.active.store(0, Ordering::Release);
    Ok(())
}

/// Disables the entry probe (Linux's `disable_kretprobe`): calls hooked already still report.
pub fn disable_kretprobe(rp: &'static Kretprobe) -> Result<(), KprobeError> {
    super::disable_kprobe(&rp.kp)
}

/// Enables the entry probe again.
pub fn enable_kretprobe(rp: &'static Kretprobe) -> Result<(), KprobeError> {
    super::enable_kprobe(&rp.kp)
}

/// Hooked calls outstanding on this CPU.
pub fn depth() -> usize {
    with_stack(|s| s.depth)
}

/// Installs the trampoline's hook and the backtrace fix-up (boot).
pub fn init() {
    arch::rethook::set_rethook_handler(trampoline_handler);
    if !crate::ksyms::set_return_address_fixup(real_return_address) {
        log::error!("kretprobes: no room for the return-address fix-up; backtraces show kretprobe_trampoline");
    }
}

/// After an abandoned self-test case: forgets this CPU's hooked calls (their frames are gone).
pub fn recover_after_abort() {
    with_stack(|s| {
        s.entries[..s.depth].iter().for_each(release);
        s.depth = 0;
        s.in_handler = 0;
    });
}

/// Isolation check: no hooked call left on this CPU.
pub fn check_idle() -> Result<(), alloc::string::String> {
    match depth() {
        0 => Ok(()),
        d => {
            recover_after_abort();
            Err(alloc::format!("{d} kretprobe instances left on this CPU"))
        }
    }
}
