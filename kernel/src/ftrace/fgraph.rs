//! The function-graph core: return hooking through `return_to_handler`, a per-CPU shadow stack,
//! graph ops with entry/return callbacks and per-call data.
//!
//! When at least one graph ops is registered, `ftrace_graph_call` branches to
//! `ftrace_graph_caller`, which calls [`graph_entry`] after the ordinary callbacks of every call
//! that goes through `ftrace_common`. If some graph ops wants the call, the real return address
//! (the frame's `ra` slot) is pushed on this CPU's shadow stack and replaced by
//! `return_to_handler`; when the function returns there, [`graph_return`] pops the entry, runs the
//! return callbacks and hands back the real address. An internal ordinary ops
//! ([`GRAPH_SITE_OPS`]) keeps the sites the graph tracer wants enabled.
//!
//! Shadow entries are matched by the stack pointer the function was entered with, which the
//! function has when it returns. Entries above the match belong to frames that were abandoned
//! (a test harness recovering from a panic) and are dropped; no match at all means the shadow
//! stack is corrupt: the graph tracer stops, reports it, and returns to the top entry's address.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use super::recursion;
use arch::frame::PtRegs;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Graph ops that may be registered at once.
pub const FGRAPH_MAX_OPS: usize = 16;
/// Hooked calls each CPU can have outstanding.
pub const SHADOW_ENTRIES: usize = 256;
/// Largest per-call value a graph ops can store.
pub const FGRAPH_MAX_DATA: usize = 8;
const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// A call about to be hooked.
#[derive(Clone, Copy, Debug)]
pub struct FgraphEnt {
    /// Entry address of the function.
    pub func: u64,
    /// Return address in the caller.
    pub parent: u64,
    /// Hooked calls outstanding on this CPU below this one.
    pub depth: u32,
}

/// A hooked call that returned.
#[derive(Clone, Copy, Debug)]
pub struct FgraphRet {
    pub func: u64,
    pub parent: u64,
    /// Its return value (a0).
    pub retval: u64,
    /// The second return register (a1): the high half of a `u128` or the second word of a
    /// two-word struct (meaningless for functions that return one register or nothing).
    pub retval_hi: u64,
    pub depth: u32,
    /// Counter ticks at entry and at return.
    pub calltime: u64,
    pub rettime: u64,
}

/// The per-call store of one graph ops: up to 8 bytes reserved at entry, read back at return.
pub struct FgraphData<'a> {
    size: &'a mut u8,
    bytes: &'a mut [u8; FGRAPH_MAX_DATA],
}

impl FgraphData<'_> {
    /// Reserves `size` bytes (1..=8) for this call; `None` if too large.
    pub fn reserve(&mut self, size: usize) -> Option<&mut [u8]> {
        if size == 0 || size > FGRAPH_MAX_DATA {
            return None;
        }
        *self.size = size as u8;
        Some(&mut self.bytes[..size])
    }
    /// What was reserved at entry.
    pub fn retrieve(&self) -> Option<&[u8]> {
        (*self.size != 0).then(|| &self.bytes[..*self.size as usize])
    }
}

/// Entry callback: return `true` to hook this call (its return callback will run).
pub type FgraphEntryFunc = fn(ent: &FgraphEnt, ops: &FgraphOps, data: &mut FgraphData) -> bool;
/// Return callback; `data` holds what the entry callback reserved.
pub type FgraphRetFunc = fn(ret: &FgraphRet, ops: &FgraphOps, data: &FgraphData);

/// A function-graph client.
pub struct FgraphOps {
    pub entry: FgraphEntryFunc,
    pub ret: FgraphRetFunc,
    /// Free for the owner's use.
    pub private: AtomicUsize,
}

impl FgraphOps {
    pub const fn new(entry: FgraphEntryFunc, ret: FgraphRetFunc) -> Self {
        FgraphOps { entry, ret, private: AtomicUsize::new(0) }
    }
}

#[derive(Clone, Copy)]
struct ShadowEntry {
    ret: u64,
    func: u64,
    sp: u64,
    calltime: u64,
    mask: u16,
    data_size: [u8; FGRAPH_MAX_OPS],
    data: [[u8; FGRAPH_MAX_DATA]; FGRAPH_MAX_OPS],
}

const EMPTY: ShadowEntry =
    ShadowEntry { ret: 0, func: 0, sp: 0, calltime: 0, mask: 0, data_size: [0; FGRAPH_MAX_OPS], data: [[0; FGRAPH_MAX_DATA]; FGRAPH_MAX_OPS] };

struct ShadowStack {
    depth: usize,
    entries: [ShadowEntry; SHADOW_ENTRIES],
}

/// One shadow stack per CPU, touched only by its own CPU with interrupts off.
struct PerCpuShadow([UnsafeCell<ShadowStack>; MAX_CPUS]);
// SAFETY: each CPU only accesses its own element, with interrupts disabled, so there is never
// more than one reference to an element at a time.
unsafe impl Sync for PerCpuShadow {}

static SHADOW: PerCpuShadow = PerCpuShadow([const { UnsafeCell::new(ShadowStack { depth: 0, entries: [EMPTY; SHADOW_ENTRIES] }) }; MAX_CPUS]);

/// Runs `f` on this CPU's shadow stack with interrupts off.
#[inline(always)]
fn with_shadow<R>(f: impl FnOnce(&mut ShadowStack) -> R) -> R {
    let irq = arch::cpu::irq_save();
    // SAFETY: see `PerCpuShadow`: this CPU's element, interrupts off, no other reference alive.
    let r = f(unsafe { &mut *SHADOW.0[arch::cpu::id() % MAX_CPUS].get() });
    arch::cpu::irq_restore(irq);
    r
}

static GRAPH_OPS: [AtomicPtr<FgraphOps>; FGRAPH_MAX_OPS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; FGRAPH_MAX_OPS];
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
/// Slots whose ops is being unregistered: no new calls are hooked for them.
static ENTRY_OFF: AtomicU32 = AtomicU32::new(0);
/// Per slot: hooked calls that have not returned yet, on all CPUs.
static OUTSTANDING: [AtomicU64; FGRAPH_MAX_OPS] = [const { AtomicU64::new(0) }; FGRAPH_MAX_OPS];
static STOPPED: AtomicBool = AtomicBool::new(false);
static GRAPH_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Counters of unusual events.
pub static OVERFLOWS: AtomicU64 = AtomicU64::new(0);
pub static CORRUPTIONS: AtomicU64 = AtomicU64::new(0);
pub static ABANDONED: AtomicU64 = AtomicU64::new(0);

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_site_noop(_ip: u64, _parent: u64, _ops: &FtraceOps, _regs: &mut FtraceRegs) {}

/// The ordinary ops that enables the sites the graph tracer hooks (all traceable functions
/// unless its filter is set with `ftrace_set_filter`). It asks for full registers so that its
/// sites go through `ftrace_regs_caller` and `ftrace_common`, where `ftrace_graph_call` is.
pub static GRAPH_SITE_OPS: FtraceOps = FtraceOps::new(graph_site_noop, OpsFlags::SAVE_REGS);

/// Installs the arch hooks (boot).
pub fn init() {
    arch::ftrace::set_graph_hooks(graph_entry, graph_return);
}

/// The entry and return hooks `init` installs (tests wrap them, see `selftest::poison`).
pub fn hooks() -> (arch::ftrace::GraphEntryHook, arch::ftrace::GraphReturnHook) {
    (graph_entry, graph_return)
}

/// Starts calling `ops` for every hooked-able call. Up to 16 graph ops at once.
pub fn register_ftrace_graph(ops: &'static FgraphOps) -> Result<(), FtraceError> {
    let _g = GRAPH_LOCK.lock();
    if GRAPH_OPS.iter().any(|s| core::ptr::eq(s.load(Ordering::Acquire), ops)) {
        return Err(FtraceError::AlreadyRegistered);
    }
    // A slot is reused only once every call hooked through it has returned.
    let slot = GRAPH_OPS
        .iter()
        .zip(OUTSTANDING.iter())
        .find(|(s, n)| s.load(Ordering::Acquire).is_null() && n.load(Ordering::Acquire) == 0)
        .map(|(s, _)| s)
        .ok_or(FtraceError::TooManyGraphOps)?;
    if REGISTERED.load(Ordering::Acquire) == 0 {
        super::register_ftrace_function(&GRAPH_SITE_OPS)?;
        STOPPED.store(false, Ordering::Release);
        if let Err(e) = arch::ftrace::set_graph_call(true) {
            log::error!("ftrace bug: cannot enable ftrace_graph_call: {e}");
            let _ = super::unregister_ftrace_function(&GRAPH_SITE_OPS);
            return Err(FtraceError::NotInitialised);
        }
        super::core::publish_text(&[arch::ftrace::addr::ftrace_graph_call()]);
    }
    let i = GRAPH_OPS.iter().position(|s| core::ptr::eq(s, slot)).unwrap_or(0);
    ENTRY_OFF.fetch_and(!(1 << i), Ordering::AcqRel);
    slot.store(ops as *const FgraphOps as *mut FgraphOps, Ordering::Release);
    REGISTERED.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// Stops calling `ops`. No new call is hooked for it; calls it hooked on other CPUs get their
/// return callback before this returns (waiting up to one second for them to return). Calls it
/// hooked on this CPU that are still running (callers of this function) return without it.
pub fn unregister_ftrace_graph(ops: &'static FgraphOps) -> Result<(), FtraceError> {
    let _g = GRAPH_LOCK.lock();
    let i = GRAPH_OPS.iter().position(|s| core::ptr::eq(s.load(Ordering::Acquire), ops)).ok_or(FtraceError::NotRegistered)?;
    ENTRY_OFF.fetch_or(1 << i, Ordering::AcqRel);
    super::core::sync_all_cpus();
    let here = with_shadow(|s| s.entries[..s.depth].iter().filter(|e| e.mask & (1 << i) != 0).count() as u64);
    let t0 = arch::time::ticks();
    while OUTSTANDING[i].load(Ordering::Acquire) > here {
        if arch::time::ticks() - t0 > crate::time::counter_hz() {
            log::warn!("fgraph: {} hooked calls still running after 1 s; their returns are not reported", OUTSTANDING[i].load(Ordering::Acquire) - here);
            break;
        }
        core::hint::spin_loop();
    }
    let slot = &GRAPH_OPS[i];
    slot.store(core::ptr::null_mut(), Ordering::Release);
    if REGISTERED.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Err(e) = arch::ftrace::set_graph_call(false) {
            log::error!("ftrace bug: cannot disable ftrace_graph_call: {e}");
        }
        super::core::publish_text(&[arch::ftrace::addr::ftrace_graph_call()]);
        super::unregister_ftrace_function(&GRAPH_SITE_OPS)?;
    }
    super::core::sync_all_cpus();
    Ok(())
}

/// Whether `ops` is registered.
pub fn is_registered(ops: &FgraphOps) -> bool {
    GRAPH_OPS.iter().any(|s| core::ptr::eq(s.load(Ordering::Acquire), ops))
}

/// Whether the graph tracer stopped itself after finding a corrupt shadow stack.
pub fn stopped() -> bool {
    STOPPED.load(Ordering::Acquire)
}

/// Hooked calls outstanding on this CPU.
pub fn shadow_depth() -> usize {
    with_shadow(|s| s.depth)
}

/// Test support: damages the top shadow entry's stack pointer so its return cannot be matched.
pub fn corrupt_top_entry_for_test() -> bool {
    with_shadow(|s| match s.depth {
        0 => false,
        d => {
            s.entries[d - 1].sp ^= 0x10;
            true
        }
    })
}

/// Maps a return address found at frame pointer `fp` back to the real one when it is
/// `return_to_handler` (for backtraces).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn real_return_address(ret: u64, fp: u64) -> u64 {
    if ret != arch::ftrace::addr::return_to_handler() {
        return ret;
    }
    with_shadow(|s| s.entries[..s.depth].iter().rev().find(|e| e.sp == fp).map_or(ret, |e| e.ret))
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_entry(ip: u64, parent_slot: *mut u64, frame: *mut PtRegs) {
    if STOPPED.load(Ordering::Relaxed) || REGISTERED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(held) = recursion::trylock() else { return };
    let calltime = arch::time::ticks();
    // SAFETY: `ftrace_graph_caller` passes its live frame and the address of its `ra` slot.
    let (parent, sp) = unsafe { (*parent_slot, (*frame).regs[3]) };
    with_shadow(|s| {
        let depth = s.depth;
        if depth >= SHADOW_ENTRIES {
            OVERFLOWS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ent = FgraphEnt { func: ip, parent, depth: depth as u32 };
        let e = &mut s.entries[depth];
        e.mask = 0;
        e.data_size = [0; FGRAPH_MAX_OPS];
        let off = ENTRY_OFF.load(Ordering::Acquire);
        for (i, slot) in GRAPH_OPS.iter().enumerate() {
            let p = slot.load(Ordering::Acquire);
            if p.is_null() || off & (1 << i) != 0 {
                continue;
            }
            // SAFETY: registered graph ops are `'static`.
            let ops = unsafe { &*p };
            let mut data = FgraphData { size: &mut e.data_size[i], bytes: &mut e.data[i] };
            if (ops.entry)(&ent, ops, &mut data) {
                e.mask |= 1 << i;
                OUTSTANDING[i].fetch_add(1, Ordering::AcqRel);
            }
        }
        if e.mask == 0 {
            return;
        }
        e.ret = parent;
        e.func = ip;
        e.sp = sp;
        e.calltime = calltime;
        s.depth = depth + 1;
        // SAFETY: as above; the slot is restored into `ra` by ftrace_common_return.
        unsafe { *parent_slot = arch::ftrace::addr::return_to_handler() };
    });
    recursion::unlock(held);
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
/// Counts the hooked call of the ops in `mask` as finished.
#[inline]
fn returned(mask: u16) {
    for (i, n) in OUTSTANDING.iter().enumerate() {
        if mask & (1 << i) != 0 {
            let _ = n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(1)));
        }
    }
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_return(saved: *mut [u64; 2], sp: u64) -> u64 {
    let rettime = arch::time::ticks();
    let popped = with_shadow(|s| {
        let found = s.entries[..s.depth].iter().rposition(|e| e.sp == sp);
        match found {
            Some(i) => {
                ABANDONED.fetch_add((s.depth - 1 - i) as u64, Ordering::Relaxed);
                s.entries[i + 1..s.depth].iter().for_each(|e| returned(e.mask));
                s.depth = i;
                Some((s.entries[i], i, false))
            }
            None if s.depth > 0 => {
                s.depth -= 1;
                Some((s.entries[s.depth], s.depth, true))
            }
            None => None,
        }
    });
    let Some((entry, depth, corrupt)) = popped else {
        panic!("return_to_handler reached with an empty shadow stack (sp {sp:#x})");
    };
    if corrupt {
        returned(entry.mask);
        STOPPED.store(true, Ordering::Release);
        CORRUPTIONS.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "fgraph: shadow stack mismatch returning from {} (sp {sp:#x}, entry sp {:#x}); graph tracing stopped",
            crate::ksyms::name(entry.func),
            entry.sp
        );
        return entry.ret;
    }
    if let Some(held) = recursion::trylock() {
        // SAFETY: `return_to_handler` passes its frame holding a0 and a1.
        let [retval, retval_hi] = unsafe { *saved };
        let ret = FgraphRet { func: entry.func, parent: entry.ret, retval, retval_hi, depth: depth as u32, calltime: entry.calltime, rettime };
        let mut e = entry;
        for (i, slot) in GRAPH_OPS.iter().enumerate() {
            let p = slot.load(Ordering::Acquire);
            if p.is_null() || e.mask & (1 << i) == 0 {
                continue;
            }
            // SAFETY: registered graph ops are `'static`.
            let ops = unsafe { &*p };
            let data = FgraphData { size: &mut e.data_size[i], bytes: &mut e.data[i] };
            (ops.ret)(&ret, ops, &data);
        }
        recursion::unlock(held);
    }
    // Only now may an unregistering ops' slot be cleared (see unregister_ftrace_graph).
    returned(entry.mask);
    entry.ret
}

/// Checks that no graph ops is registered, `ftrace_graph_call` is a `nop` and no hooked call is
/// outstanding on this CPU.
pub fn check_idle() -> Result<(), alloc::string::String> {
    let n = REGISTERED.load(Ordering::Acquire);
    if n != 0 {
        return Err(alloc::format!("{n} graph ops still registered"));
    }
    if arch::patch::read_insn(arch::ftrace::addr::ftrace_graph_call()) != Ok(arch::insn::NOP) {
        return Err("ftrace_graph_call is not a nop".into());
    }
    match shadow_depth() {
        0 => Ok(()),
        d => {
            // Drop stale entries so later cases start clean; report the leak.
            drop_shadow_entries();
            Err(alloc::format!("{d} shadow-stack entries left"))
        }
    }
}

/// Forgets this CPU's hooked calls (their frames are gone), counting them as returned.
fn drop_shadow_entries() {
    with_shadow(|s| {
        s.entries[..s.depth].iter().for_each(|e| returned(e.mask));
        s.depth = 0;
    });
}

/// After an abandoned self-test case: unregisters every graph ops and forgets this CPU's hooked
/// calls (their frames are gone).
pub fn recover_after_abort() {
    if GRAPH_LOCK.is_locked() {
        // SAFETY: as for the ftrace core lock: the holder was the abandoned case on this CPU.
        unsafe { GRAPH_LOCK.force_unlock() };
    }
    for slot in GRAPH_OPS.iter() {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: registered graph ops are `'static`.
            let _ = unregister_ftrace_graph(unsafe { &*p });
        }
    }
    drop_shadow_entries();
    STOPPED.store(false, Ordering::Release);
}
