//! The function-graph core: return hooking through `return_to_handler`, a per-CPU shadow stack,
//! graph ops with entry/return callbacks and per-call data.
//!
//! While at least one graph ops is registered, an internal ordinary ops ([`GRAPH_SITE_OPS`])
//! keeps the sites the graph tracer wants enabled; its callback ([`graph_entry`]) runs like any
//! other, from `ftrace_caller`'s argument frame or `ftrace_regs_caller`'s full one (as Linux's
//! `ftrace_graph_func` with `DYNAMIC_FTRACE_WITH_ARGS`: the graph path saves no more registers
//! than a plain callback). If some graph ops wants the call, the real return address (the
//! frame's `ra` slot, which both callers restore into `ra`) is pushed on this CPU's shadow stack
//! and replaced by `return_to_handler`; when the function returns there, [`graph_return`] pops
//! the entry, runs the return callbacks and hands back the real address.
//!
//! Shadow entries are matched by the stack pointer the function was entered with, which the
//! function has when it returns. Entries above the match belong to frames that were abandoned
//! (a test harness recovering from a panic) and are dropped; no match at all means the shadow
//! stack is corrupt: the graph tracer stops, reports it, and returns to the top entry's address.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use super::recursion;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
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
/// Slots whose ops takes new calls (a bit is cleared when its ops starts unregistering: no new
/// calls are hooked for it). The entry path visits only these slots.
static LIVE: AtomicU32 = AtomicU32::new(0);
/// Per slot: hooked calls that have not returned yet, on all CPUs.
static OUTSTANDING: [AtomicU64; FGRAPH_MAX_OPS] = [const { AtomicU64::new(0) }; FGRAPH_MAX_OPS];
static STOPPED: AtomicBool = AtomicBool::new(false);
static GRAPH_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Counters of unusual events.
pub static OVERFLOWS: AtomicU64 = AtomicU64::new(0);
pub static CORRUPTIONS: AtomicU64 = AtomicU64::new(0);
pub static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// The ordinary ops that enables the sites the graph tracer hooks (all traceable functions
/// unless its filter is set with `ftrace_set_filter`); its callback is the graph entry. It needs
/// no full registers: the argument frame holds the return address it replaces. Its callback
/// guards itself against recursion (as the function tracer's does), so no assist function runs
/// before it.
pub static GRAPH_SITE_OPS: FtraceOps = FtraceOps::new(ftrace_graph_func, OpsFlags::empty());

// SAFETY: `ftrace_graph_func` (arch/src/ftrace.rs) tail-calls the installed entry hook, a
// `GraphEntryHook` whose arguments are those of any ops callback. (It never looks behind the
// references itself, hence the allow.)
#[allow(improper_ctypes)]
unsafe extern "C" {
    safe fn ftrace_graph_func(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs);
}

/// Installs the arch hooks (boot).
pub fn init() {
    crate::ksyms::set_return_address_fixup(real_return_address);
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
        STOPPED.store(false, Ordering::Release);
        super::register_ftrace_function(&GRAPH_SITE_OPS)?;
    }
    let i = GRAPH_OPS.iter().position(|s| core::ptr::eq(s, slot)).unwrap_or(0);
    slot.store(ops as *const FgraphOps as *mut FgraphOps, Ordering::Release);
    REGISTERED.fetch_add(1, Ordering::AcqRel);
    LIVE.fetch_or(1 << i, Ordering::AcqRel);
    Ok(())
}

/// How long `unregister_ftrace_graph` waits for the calls it hooked to return (their return
/// callbacks run first) before it gives up on them with a warning: long enough for a host that
/// runs the guest's CPUs slowly, bounded for a hooked function that never returns.
const RETURN_WAIT_SECS: u64 = 5;

/// Stops calling `ops`. No new call is hooked for it; calls it hooked on other CPUs get their
/// return callback before this returns (waiting up to [`RETURN_WAIT_SECS`] for them to return). Calls it
/// hooked on this CPU that are still running (callers of this function) return without it.
pub fn unregister_ftrace_graph(ops: &'static FgraphOps) -> Result<(), FtraceError> {
    let _g = GRAPH_LOCK.lock();
    let i = GRAPH_OPS.iter().position(|s| core::ptr::eq(s.load(Ordering::Acquire), ops)).ok_or(FtraceError::NotRegistered)?;
    LIVE.fetch_and(!(1 << i), Ordering::AcqRel);
    super::core::sync_all_cpus();
    let here = with_shadow(|s| s.entries[..s.depth].iter().filter(|e| e.mask & (1 << i) != 0).count() as u64);
    let t0 = arch::time::ticks();
    while OUTSTANDING[i].load(Ordering::Acquire) > here {
        if arch::time::ticks() - t0 > RETURN_WAIT_SECS * crate::time::counter_hz() {
            log::warn!(
                "fgraph: {} hooked calls still running after {RETURN_WAIT_SECS} s; their returns are not reported",
                OUTSTANDING[i].load(Ordering::Acquire) - here
            );
            break;
        }
        core::hint::spin_loop();
    }
    let slot = &GRAPH_OPS[i];
    slot.store(core::ptr::null_mut(), Ordering::Release);
    if REGISTERED.fetch_sub(1, Ordering::AcqRel) == 1 {
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

/// The graph entry hook: the callback of [`GRAPH_SITE_OPS`] through `ftrace_graph_func` (with the
/// arguments of any ops callback; it takes the callbacks' recursion guard itself): asks the graph
/// ops that take new calls whether they want this one, and if one does, hooks its return (the
/// frame's return-address slot, restored into `ra` by either caller, becomes
/// `return_to_handler`).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_entry(ip: u64, parent: u64, _ops: *const (), frame: *mut arch::frame::PtRegs) {
    if STOPPED.load(Ordering::Relaxed) {
        return;
    }
    let Some(held) = recursion::trylock_callback() else { return };
    // SAFETY: the caller passes its live frame (`FtraceRegs` is a transparent `PtRegs`), which
    // nothing else uses while the callbacks run.
    let regs = unsafe { &mut *(frame as *mut FtraceRegs) };
    let calltime = arch::time::ticks();
    let sp = regs.stack_pointer();
    with_shadow(|s| {
        let depth = s.depth;
        if depth >= SHADOW_ENTRIES {
            OVERFLOWS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ent = FgraphEnt { func: ip, parent, depth: depth as u32 };
        let e = &mut s.entries[depth];
        let mut mask = 0u16;
        let mut live = LIVE.load(Ordering::Acquire);
        while live != 0 {
            let i = live.trailing_zeros() as usize % FGRAPH_MAX_OPS;
            live &= live - 1;
            let p = GRAPH_OPS[i].load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: registered graph ops are `'static`.
            let ops = unsafe { &*p };
            e.data_size[i] = 0;
            let mut data = FgraphData { size: &mut e.data_size[i], bytes: &mut e.data[i] };
            if (ops.entry)(&ent, ops, &mut data) {
                mask |= 1 << i;
                OUTSTANDING[i].fetch_add(1, Ordering::AcqRel);
            }
        }
        if mask == 0 {
            return;
        }
        e.mask = mask;
        e.ret = parent;
        e.func = ip;
        e.sp = sp;
        e.calltime = calltime;
        s.depth = depth + 1;
        *regs.parent_slot() = arch::ftrace::addr::return_to_handler();
    });
    recursion::unlock_callback(held);
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
/// Counts the hooked call of the ops in `mask` as finished.
#[inline]
fn returned(mask: u16) {
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize % FGRAPH_MAX_OPS;
        m &= m - 1;
        let _ = OUTSTANDING[i].fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(1)));
    }
}

/// What `graph_return` takes off the shadow stack: the entry's fields and, for the ops that
/// hooked the call (and only those: the rest stays uninitialised), their per-call data. It is
/// copied because an interrupt may reuse the entry while the return callbacks run with
/// interrupts on.
struct Popped {
    ret: u64,
    func: u64,
    sp: u64,
    calltime: u64,
    mask: u16,
    depth: usize,
    data_size: [MaybeUninit<u8>; FGRAPH_MAX_OPS],
    data: [MaybeUninit<[u8; FGRAPH_MAX_DATA]>; FGRAPH_MAX_OPS],
}

impl Popped {
    #[inline(always)]
    fn take(&mut self, e: &ShadowEntry, depth: usize) {
        self.ret = e.ret;
        self.func = e.func;
        self.sp = e.sp;
        self.calltime = e.calltime;
        self.mask = e.mask;
        self.depth = depth;
        let mut m = e.mask;
        while m != 0 {
            let i = m.trailing_zeros() as usize % FGRAPH_MAX_OPS;
            m &= m - 1;
            self.data_size[i].write(e.data_size[i]);
            self.data[i].write(e.data[i]);
        }
    }
}

/// How `graph_return` found the shadow stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    Match,
    Corrupt,
    Empty,
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_return(saved: *mut [u64; 2], sp: u64) -> u64 {
    let rettime = arch::time::ticks();
    let mut entry = Popped {
        ret: 0,
        func: 0,
        sp: 0,
        calltime: 0,
        mask: 0,
        depth: 0,
        data_size: [MaybeUninit::uninit(); FGRAPH_MAX_OPS],
        data: [MaybeUninit::uninit(); FGRAPH_MAX_OPS],
    };
    let found = with_shadow(|s| {
        match s.entries[..s.depth].iter().rposition(|e| e.sp == sp) {
            Some(i) => {
                if i + 1 < s.depth {
                    ABANDONED.fetch_add((s.depth - 1 - i) as u64, Ordering::Relaxed);
                    s.entries[i + 1..s.depth].iter().for_each(|e| returned(e.mask));
                }
                s.depth = i;
                entry.take(&s.entries[i], i);
                Found::Match
            }
            None if s.depth > 0 => {
                s.depth -= 1;
                entry.take(&s.entries[s.depth], s.depth);
                Found::Corrupt
            }
            None => Found::Empty,
        }
    });
    if found == Found::Empty {
        panic!("return_to_handler reached with an empty shadow stack (sp {sp:#x})");
    }
    if found == Found::Corrupt {
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
    // The same guard as the entry's: a call the entry hooked has its return callbacks run even
    // while the core's guard is held (a traced function returning inside another ops' callback).
    if let Some(held) = recursion::trylock_callback() {
        // SAFETY: `return_to_handler` passes its frame holding a0 and a1.
        let [retval, retval_hi] = unsafe { *saved };
        let ret = FgraphRet {
            func: entry.func,
            parent: entry.ret,
            retval,
            retval_hi,
            depth: entry.depth as u32,
            calltime: entry.calltime,
            rettime,
        };
        let mut m = entry.mask;
        while m != 0 {
            let i = m.trailing_zeros() as usize % FGRAPH_MAX_OPS;
            m &= m - 1;
            let p = GRAPH_OPS[i].load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: registered graph ops are `'static`.
            let ops = unsafe { &*p };
            // SAFETY: `take` wrote the data of every ops in the mask, and `i` is in it.
            let (size, bytes) = unsafe { (entry.data_size[i].assume_init_mut(), entry.data[i].assume_init_mut()) };
            let data = FgraphData { size, bytes };
            (ops.ret)(&ret, ops, &data);
        }
        recursion::unlock_callback(held);
    }
    // Only now may an unregistering ops' slot be cleared (see unregister_ftrace_graph).
    returned(entry.mask);
    entry.ret
}

/// Checks that no graph ops is registered, [`GRAPH_SITE_OPS`] is not and no hooked call is
/// outstanding on this CPU.
pub fn check_idle() -> Result<(), alloc::string::String> {
    let n = REGISTERED.load(Ordering::Acquire);
    if n != 0 {
        return Err(alloc::format!("{n} graph ops still registered"));
    }
    if GRAPH_SITE_OPS.is_registered() {
        return Err("the graph site ops is still registered".into());
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
