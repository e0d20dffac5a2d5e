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
//! The shadow stack is touched only by its own CPU, with interrupts on: an entry is reserved
//! (the depth raised) before it is filled and released only after the return callbacks ran, so
//! an interrupt that hooks calls meanwhile uses the entries above, and gives them back before
//! the interrupted code resumes. Each CPU counts the calls it hooked per graph ops that have not
//! returned yet; `unregister_ftrace_graph` waits for those sums.
//!
//! Shadow entries are matched by the stack pointer the function was entered with, which the
//! function has when it returns. Entries above the match belong to frames that were abandoned
//! (a test harness recovering from a panic) and are dropped; no match at all means the shadow
//! stack is corrupt: the graph tracer stops, reports it, and returns to the top entry's address.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use super::recursion;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence};

/// Graph ops that may be registered at once.
pub const FGRAPH_MAX_OPS: usize = 16;
/// Hooked calls each CPU can have outstanding.
pub const SHADOW_ENTRIES: usize = 256;
/// Largest per-call value a graph ops can store.
pub const FGRAPH_MAX_DATA: usize = 8;
const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// A call about to be hooked. (The callbacks get it in place in the shadow stack: it is the
/// first part of the [`FgraphRet`] the return callbacks get.)
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct FgraphEnt {
    /// Entry address of the function.
    pub func: u64,
    /// Return address in the caller.
    pub parent: u64,
    /// Hooked calls outstanding on this CPU below this one.
    pub depth: u32,
    /// Counter ticks at entry.
    pub calltime: u64,
}

/// A hooked call that returned.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct FgraphRet {
    pub func: u64,
    pub parent: u64,
    pub depth: u32,
    /// Counter ticks at entry and at return.
    pub calltime: u64,
    pub rettime: u64,
    /// Its return value (a0).
    pub retval: u64,
    /// The second return register (a1): the high half of a `u128` or the second word of a
    /// two-word struct (meaningless for functions that return one register or nothing).
    pub retval_hi: u64,
}

// An `FgraphEnt` is read in place from the start of an `FgraphRet`.
const _: () = {
    assert!(core::mem::offset_of!(FgraphEnt, func) == core::mem::offset_of!(FgraphRet, func));
    assert!(core::mem::offset_of!(FgraphEnt, parent) == core::mem::offset_of!(FgraphRet, parent));
    assert!(core::mem::offset_of!(FgraphEnt, depth) == core::mem::offset_of!(FgraphRet, depth));
    assert!(core::mem::offset_of!(FgraphEnt, calltime) == core::mem::offset_of!(FgraphRet, calltime));
    assert!(core::mem::size_of::<FgraphEnt>() <= core::mem::offset_of!(FgraphRet, rettime));
};

/// The per-call store of one graph ops: up to 8 bytes reserved at entry, read back at return
/// (it lives in the call's shadow-stack entry).
pub struct FgraphData {
    size: u8,
    bytes: [u8; FGRAPH_MAX_DATA],
}

impl FgraphData {
    /// Reserves `size` bytes (1..=8) for this call; `None` if too large.
    pub fn reserve(&mut self, size: usize) -> Option<&mut [u8]> {
        if size == 0 || size > FGRAPH_MAX_DATA {
            return None;
        }
        self.size = size as u8;
        Some(&mut self.bytes[..size])
    }
    /// What was reserved at entry.
    pub fn retrieve(&self) -> Option<&[u8]> {
        (self.size != 0).then(|| &self.bytes[..self.size as usize])
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
    /// The ops' direct hooks (see [`FgraphCallbacks`]), if it has them.
    direct: Option<(arch::ftrace::GraphEntryHook, arch::ftrace::GraphReturnHook)>,
    /// While its direct hooks are installed: the value of [`LIVE`] they were chosen for (this
    /// ops live alone), else [`NOT_DIRECT`]. A direct hook that finds another value takes the
    /// general path.
    direct_live: AtomicU32,
}

impl FgraphOps {
    pub const fn new(entry: FgraphEntryFunc, ret: FgraphRetFunc) -> Self {
        FgraphOps { entry, ret, private: AtomicUsize::new(0), direct: None, direct_live: AtomicU32::new(NOT_DIRECT) }
    }

    /// An ops with direct hooks: while it is the only graph ops registered, the arch hooks are
    /// copies of the graph entry and return hooks made for `C`, which call its callbacks in line
    /// (Linux calls the only graph ops' callbacks directly too, through a static call).
    /// `C::ops()` must return this ops, and `C`'s callbacks do what `entry` and `ret` do (they
    /// are the same functions, the ones here called through pointers: give notrace ones).
    pub const fn with_direct_hooks<C: FgraphCallbacks>(entry: FgraphEntryFunc, ret: FgraphRetFunc) -> Self {
        FgraphOps { direct: Some((direct_entry::<C>, direct_return::<C>)), ..Self::new(entry, ret) }
    }
}

/// Callbacks known when the kernel is built, for an ops with direct hooks
/// ([`FgraphOps::with_direct_hooks`]), inlined into those hooks (so they should be small and call
/// nothing: the hooks are then leaf functions).
pub trait FgraphCallbacks: 'static {
    /// Whether the callbacks use their per-call data ([`FgraphData`]); if not, the direct entry
    /// hook does not clear it.
    const USES_DATA: bool = true;
    /// The ops made from these callbacks.
    fn ops() -> &'static FgraphOps;
    /// The entry callback ([`FgraphEntryFunc`]).
    fn entry(ent: &FgraphEnt, ops: &FgraphOps, data: &mut FgraphData) -> bool;
    /// The return callback ([`FgraphRetFunc`]).
    fn ret(ret: &FgraphRet, ops: &FgraphOps, data: &FgraphData);
}

/// [`FgraphOps::direct_live`] of an ops whose direct hooks are not in use: no value of [`LIVE`].
const NOT_DIRECT: u32 = u32::MAX;

/// One hooked call: 256 bytes, so finding one is a shift.
#[repr(C, align(256))]
struct ShadowEntry {
    /// What the callbacks see: the entry callbacks its first part (an [`FgraphEnt`]), the
    /// return callbacks all of it once the return fields are filled in.
    call: FgraphRet,
    sp: u64,
    mask: u16,
    data: [FgraphData; FGRAPH_MAX_OPS],
}

const EMPTY: ShadowEntry = ShadowEntry {
    call: FgraphRet { func: 0, parent: 0, depth: 0, calltime: 0, rettime: 0, retval: 0, retval_hi: 0 },
    sp: 0,
    mask: 0,
    data: [const { FgraphData { size: 0, bytes: [0; FGRAPH_MAX_DATA] } }; FGRAPH_MAX_OPS],
};

/// One CPU's graph state: its shadow stack and its count of hooked calls outstanding per ops.
#[repr(C)]
struct CpuGraph {
    /// Entries in use (reserved or filled).
    depth: AtomicUsize,
    /// Per ops slot: calls this CPU hooked for it that have not returned yet. Only this CPU
    /// changes them (a load and a store: an interrupt in between gives back what it added);
    /// `unregister_ftrace_graph` and `register_ftrace_graph` read them from anywhere.
    outstanding: [AtomicU64; FGRAPH_MAX_OPS],
    entries: UnsafeCell<[ShadowEntry; SHADOW_ENTRIES]>,
}

// SAFETY: `entries` is only accessed by its own CPU, which reserves an entry (raising `depth`)
// before it writes it and releases it after its last use; code that interrupts it works on the
// entries above and restores `depth` before the interrupted code resumes. The other fields are
// atomics.
unsafe impl Sync for CpuGraph {}

impl CpuGraph {
    const fn new() -> Self {
        CpuGraph {
            depth: AtomicUsize::new(0),
            outstanding: [const { AtomicU64::new(0) }; FGRAPH_MAX_OPS],
            entries: UnsafeCell::new([EMPTY; SHADOW_ENTRIES]),
        }
    }

    /// Entry `i` (< [`SHADOW_ENTRIES`]) as a raw pointer: its fields are read and written in
    /// place, each access under the reservation rule above.
    #[inline(always)]
    fn entry(&self, i: usize) -> *mut ShadowEntry {
        // SAFETY: in bounds for `i < SHADOW_ENTRIES`, which every caller checks or knows (an
        // index below `depth`).
        unsafe { self.entries.get().cast::<ShadowEntry>().add(i % SHADOW_ENTRIES) }
    }

    /// `(sp, mask, real return address)` of entry `k`, read in place (this CPU only; a mask of 0
    /// means reserved but not filled).
    #[inline(always)]
    fn fields(&self, k: usize) -> (u64, u16, u64) {
        let e = self.entry(k);
        // SAFETY: `entry` is in bounds; this CPU's entries are only written by this CPU, and a
        // context that interrupts the reader gives back what it changed before the reader resumes.
        unsafe { ((*e).sp, (*e).mask, (*e).call.parent) }
    }

    /// Counts one more outstanding call of ops slot `i` (this CPU only).
    #[inline(always)]
    fn hooked(&self, i: usize) {
        let c = &self.outstanding[i % FGRAPH_MAX_OPS];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Counts the hooked call of the ops in `mask` as finished (this CPU only).
    #[inline(always)]
    fn returned(&self, mask: u16) {
        let mut m = mask;
        while m != 0 {
            self.returned_one(m.trailing_zeros() as usize);
            m &= m - 1;
        }
    }

    /// [`returned`](Self::returned) for the ops in slot `i`.
    #[inline(always)]
    fn returned_one(&self, i: usize) {
        let c = &self.outstanding[i % FGRAPH_MAX_OPS];
        // Release: an unregistering CPU that sees the count drop sees the callbacks done.
        c.store(c.load(Ordering::Relaxed).saturating_sub(1), Ordering::Release);
    }

    /// Hooked calls on this CPU's shadow stack whose mask has bit `i`.
    fn hooked_here(&self, i: usize) -> u64 {
        let d = self.depth.load(Ordering::Relaxed).min(SHADOW_ENTRIES);
        // SAFETY: entries below `depth` are filled; this CPU's own, read in place.
        (0..d).filter(|&k| unsafe { (*self.entry(k)).mask } & (1 << i) != 0).count() as u64
    }
}

static GRAPH_CPUS: [CpuGraph; MAX_CPUS] = [const { CpuGraph::new() }; MAX_CPUS];

/// This CPU's graph state, through the pointer `init` left in its per-CPU area (one load).
#[inline(always)]
fn this_cpu_graph() -> &'static CpuGraph {
    let p = arch::boot::this_cpu_load::<{ arch::boot::PERCPU_GRAPH }>();
    if p == 0 {
        return &GRAPH_CPUS[arch::cpu::id() % MAX_CPUS];
    }
    // SAFETY: a non-zero pointer was stored by `init`: this CPU's element of `GRAPH_CPUS`.
    unsafe { &*(p as *const CpuGraph) }
}

static GRAPH_OPS: [AtomicPtr<FgraphOps>; FGRAPH_MAX_OPS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; FGRAPH_MAX_OPS];
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
/// Slots whose ops takes new calls (a bit is cleared when its ops starts unregistering: no new
/// calls are hooked for it), and [`STOPPED`]: the entry path reads both in one load.
static LIVE: AtomicU32 = AtomicU32::new(0);
/// The bit of [`LIVE`] set when the graph tracer stopped itself (a corrupt shadow stack).
const STOPPED: u32 = 1 << 31;
const LIVE_OPS: u32 = (1 << FGRAPH_MAX_OPS) - 1;
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

/// Installs the arch hooks and points each CPU's per-CPU area at its graph state (boot).
pub fn init() {
    for (cpu, g) in GRAPH_CPUS.iter().enumerate() {
        arch::boot::percpu(cpu).graph.store(g as *const CpuGraph as u64, Ordering::Release);
    }
    crate::ksyms::set_return_address_fixup(real_return_address);
    arch::ftrace::set_graph_hooks(graph_entry, graph_return);
}

/// The hooks in use: the general pair, or the direct hooks of the only graph ops registered.
static SELECTED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// The entry and return hooks in use (tests wrap them, see `selftest::poison`).
pub fn hooks() -> (arch::ftrace::GraphEntryHook, arch::ftrace::GraphReturnHook) {
    match SELECTED[0].load(Ordering::Acquire) {
        0 => (graph_entry, graph_return),
        e => {
            let r = SELECTED[1].load(Ordering::Acquire);
            // SAFETY: both words were stored by `select_hooks` from hooks of these types.
            unsafe {
                (
                    core::mem::transmute::<usize, arch::ftrace::GraphEntryHook>(e),
                    core::mem::transmute::<usize, arch::ftrace::GraphReturnHook>(r),
                )
            }
        }
    }
}

/// Whether the direct hooks of a graph ops are chosen (it is the only one registered).
pub fn direct_hooks_in_use() -> bool {
    SELECTED[0].load(Ordering::Acquire) != 0
}

/// Chooses the hooks for the graph ops now live (under `GRAPH_LOCK`): the direct hooks of an
/// ops live alone that has them, the general ones otherwise. Every pair handles whatever the
/// shadow stacks hold (a direct hook passes what is not its own to the general one), so CPUs
/// may switch at any time. The arch hooks are replaced only if they are still the previous
/// choice: a test that wrapped them keeps its wrappers (which call the pair it found).
fn select_hooks() {
    let live = LIVE.load(Ordering::Acquire);
    let bits = live & LIVE_OPS;
    for slot in GRAPH_OPS.iter() {
        // SAFETY: registered graph ops are `'static`.
        if let Some(ops) = unsafe { slot.load(Ordering::Acquire).as_ref() } {
            ops.direct_live.store(NOT_DIRECT, Ordering::Release);
        }
    }
    let mut want = (graph_entry as arch::ftrace::GraphEntryHook, graph_return as arch::ftrace::GraphReturnHook);
    if bits != 0 && bits & (bits - 1) == 0 && live & STOPPED == 0 {
        // SAFETY: as above.
        let ops = unsafe { GRAPH_OPS[bits.trailing_zeros() as usize % FGRAPH_MAX_OPS].load(Ordering::Acquire).as_ref() };
        if let Some((ops, direct)) = ops.and_then(|o| o.direct.map(|d| (o, d))) {
            ops.direct_live.store(live, Ordering::Release);
            want = direct;
        }
    }
    let old = hooks();
    let general = want.0 as usize == graph_entry as *const () as usize;
    SELECTED[1].store(if general { 0 } else { want.1 as usize }, Ordering::Release);
    SELECTED[0].store(if general { 0 } else { want.0 as usize }, Ordering::Release);
    arch::ftrace::replace_graph_hooks(old, want);
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
        .enumerate()
        .find(|&(i, s)| s.load(Ordering::Acquire).is_null() && outstanding(i) == 0)
        .map(|(_, s)| s)
        .ok_or(FtraceError::TooManyGraphOps)?;
    if REGISTERED.load(Ordering::Acquire) == 0 {
        LIVE.fetch_and(!STOPPED, Ordering::AcqRel);
        super::register_ftrace_function(&GRAPH_SITE_OPS)?;
    }
    let i = GRAPH_OPS.iter().position(|s| core::ptr::eq(s, slot)).unwrap_or(0);
    slot.store(ops as *const FgraphOps as *mut FgraphOps, Ordering::Release);
    REGISTERED.fetch_add(1, Ordering::AcqRel);
    LIVE.fetch_or(1 << i, Ordering::AcqRel);
    select_hooks();
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
    select_hooks();
    // Entries in flight on other CPUs read LIVE before we cleared the bit and may still hook a
    // call for the ops (their count goes up after): wait until each has finished.
    if !super::quiesce::synchronize_tracing() {
        log::warn!("fgraph: a CPU stayed inside a tracing call; a call it hooks meanwhile may outlive the unregistration");
    }
    super::core::sync_all_cpus();
    let here = this_cpu_graph().hooked_here(i);
    let t0 = arch::time::ticks();
    while outstanding(i) > here {
        if arch::time::ticks() - t0 > RETURN_WAIT_SECS * crate::time::counter_hz() {
            log::warn!(
                "fgraph: {} hooked calls still running after {RETURN_WAIT_SECS} s; their returns are not reported",
                outstanding(i) - here
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

/// Calls hooked for ops slot `i` that have not returned yet, on all CPUs.
fn outstanding(i: usize) -> u64 {
    GRAPH_CPUS.iter().map(|g| g.outstanding[i].load(Ordering::Acquire)).sum()
}

/// Whether `ops` is registered.
pub fn is_registered(ops: &FgraphOps) -> bool {
    GRAPH_OPS.iter().any(|s| core::ptr::eq(s.load(Ordering::Acquire), ops))
}

/// Whether the graph tracer stopped itself after finding a corrupt shadow stack.
pub fn stopped() -> bool {
    LIVE.load(Ordering::Acquire) & STOPPED != 0
}

/// Hooked calls outstanding on this CPU.
pub fn shadow_depth() -> usize {
    this_cpu_graph().depth.load(Ordering::Relaxed)
}

/// Test support: damages the top shadow entry's stack pointer so its return cannot be matched.
pub fn corrupt_top_entry_for_test() -> bool {
    let g = this_cpu_graph();
    match g.depth.load(Ordering::Relaxed) {
        0 => false,
        d => {
            // SAFETY: this CPU's filled top entry; the call it belongs to is the caller's.
            unsafe { (*g.entry(d - 1)).sp ^= 0x10 };
            true
        }
    }
}

/// Maps a return address found at frame pointer `fp` back to the real one when it is
/// `return_to_handler` (for backtraces).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn real_return_address(ret: u64, fp: u64) -> u64 {
    if ret != arch::ftrace::addr::return_to_handler() {
        return ret;
    }
    let g = this_cpu_graph();
    let d = g.depth.load(Ordering::Relaxed).min(SHADOW_ENTRIES);
    // An entry reserved but not filled yet has no mask: it is skipped.
    (0..d)
        .rev()
        .map(|k| g.fields(k))
        .find(|&(sp, mask, _)| sp == fp && mask != 0)
        .map_or(ret, |(_, _, r)| r)
}

/// The graph entry hook: the callback of [`GRAPH_SITE_OPS`] through `ftrace_graph_func` (with the
/// arguments of any ops callback; it takes the callbacks' recursion guard itself): asks the graph
/// ops that take new calls whether they want this one, and if one does, hooks its return (the
/// frame's return-address slot, restored into `ra` by either caller, becomes
/// `return_to_handler`).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_entry(ip: u64, parent: u64, _ops: *const (), frame: *mut arch::frame::PtRegs) {
    let live = LIVE.load(Ordering::Acquire);
    let ops_bits = live & LIVE_OPS;
    if live & STOPPED != 0 || ops_bits == 0 {
        return;
    }
    // One graph ops (the usual case) is called straight, the loop for several is out of line:
    // so the hook keeps few registers live across the callback.
    // SAFETY: `hook_entry` passes this CPU's entry reserved for the call and filled. (`ops_bits`
    // is not 0; the test is not `is_power_of_two`, which counts bits in software here.)
    hook_entry(ip, parent, frame, |g, e| unsafe {
        if ops_bits & ops_bits.wrapping_sub(1) == 0 {
            call_entry(g, e, ops_bits.trailing_zeros() as usize % FGRAPH_MAX_OPS)
        } else {
            call_entries(g, e, ops_bits)
        }
    });
}

/// The direct entry hook of `C`'s ops (see [`FgraphOps::with_direct_hooks`]): [`graph_entry`]
/// with `C`'s entry callback in line, while that ops is live alone; the general hook otherwise.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn direct_entry<C: FgraphCallbacks>(ip: u64, parent: u64, ops: *const (), frame: *mut arch::frame::PtRegs) {
    let live = LIVE.load(Ordering::Acquire);
    let me = C::ops();
    if live != me.direct_live.load(Ordering::Relaxed) {
        return graph_entry(ip, parent, ops, frame);
    }
    // `live` is this ops' bit alone (NOT_DIRECT is never a value of LIVE).
    let i = live.trailing_zeros() as usize % FGRAPH_MAX_OPS;
    hook_entry(ip, parent, frame, |g, e| {
        // SAFETY: `hook_entry` passes this CPU's entry reserved for the call and filled; the
        // callback sees the call in place (`FgraphEnt` is `FgraphRet`'s start).
        let (ent, data) = unsafe { (&*(e as *const FgraphEnt), &mut (*e).data[i]) };
        if C::USES_DATA {
            data.size = 0;
        }
        if !C::entry(ent, me, data) {
            return 0;
        }
        g.hooked(i);
        1 << i
    });
}

/// The body of the entry hooks: takes the callbacks' recursion guard, reserves and fills this
/// CPU's next shadow entry and lets `call` ask the ops (it returns the mask of those that hooked
/// the call); if one did, the frame's return-address slot becomes `return_to_handler`, else the
/// entry is given back.
#[inline(always)]
fn hook_entry(ip: u64, parent: u64, frame: *mut arch::frame::PtRegs, call: impl FnOnce(&CpuGraph, *mut ShadowEntry) -> u16) {
    let Some(held) = recursion::trylock_callback() else { return };
    let g = this_cpu_graph();
    let d = g.depth.load(Ordering::Relaxed);
    if d >= SHADOW_ENTRIES {
        OVERFLOWS.fetch_add(1, Ordering::Relaxed);
        recursion::unlock_callback(held);
        return;
    }
    // Reserve the entry before filling it: an interrupt that hooks a call meanwhile takes the
    // next one (and gives it back before we resume).
    g.depth.store(d + 1, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    let e = g.entry(d);
    // SAFETY: entry `d` is reserved for this call (see `CpuGraph`); the caller passes its live
    // frame (`FtraceRegs` is a transparent `PtRegs`), which nothing else uses meanwhile.
    unsafe {
        (*e).call.func = ip;
        (*e).call.parent = parent;
        (*e).call.depth = d as u32;
        (*e).call.calltime = arch::time::ticks();
        (*e).sp = (*(frame as *const FtraceRegs)).stack_pointer();
        // (`mask` is 0 here: every entry is given back with a mask of 0, so code that looks at
        // the shadow stack meanwhile sees this one as not filled.)
    }
    let mask = call(g, e);
    if mask != 0 {
        // SAFETY: as above.
        unsafe {
            (*e).mask = mask;
            *(*(frame as *mut FtraceRegs)).parent_slot() = arch::ftrace::addr::return_to_handler();
        }
    } else {
        compiler_fence(Ordering::SeqCst);
        g.depth.store(d, Ordering::Relaxed);
    }
    recursion::unlock_callback(held);
}

/// Asks graph ops slot `i` whether it wants the call in entry `e` (of `g`, reserved for it and
/// filled); returns the mask bit of the slot if it does (counted outstanding), 0 otherwise.
///
/// # Safety
/// `e` is this CPU's entry reserved for the call being hooked, filled by `graph_entry`.
#[inline(always)]
unsafe fn call_entry(g: &CpuGraph, e: *mut ShadowEntry, i: usize) -> u16 {
    // Relaxed: the slot was stored before its LIVE bit was set, which graph_entry's acquire
    // load saw.
    let p = GRAPH_OPS[i].load(Ordering::Relaxed);
    if p.is_null() {
        return 0;
    }
    // SAFETY: registered graph ops are `'static`.
    let ops = unsafe { &*p };
    // SAFETY: (the caller's) this call's entry, nobody else's while the callback runs; the
    // callbacks see the call in place (`FgraphEnt` is `FgraphRet`'s start).
    let (ent, data) = unsafe { (&*(e as *const FgraphEnt), &mut (*e).data[i]) };
    data.size = 0;
    if !(ops.entry)(ent, ops, data) {
        return 0;
    }
    g.hooked(i);
    1 << i
}

/// [`call_entry`] for each graph ops in `bits` (several).
///
/// # Safety
/// As for [`call_entry`].
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
unsafe fn call_entries(g: &CpuGraph, e: *mut ShadowEntry, bits: u32) -> u16 {
    let mut mask = 0;
    let mut m = bits;
    while m != 0 {
        let i = m.trailing_zeros() as usize % FGRAPH_MAX_OPS;
        m &= m - 1;
        // SAFETY: the caller's promise.
        mask |= unsafe { call_entry(g, e, i) };
    }
    mask
}

/// Runs the return callback of graph ops slot `k` on the call in entry `e`.
///
/// # Safety
/// `e` is this CPU's entry of the returning call, still reserved, its return fields filled in;
/// `k` is in its mask.
#[inline(always)]
unsafe fn call_return(e: *mut ShadowEntry, k: usize) {
    // Relaxed: this CPU loaded the slot (acquire) when it hooked the call, and the slot is not
    // reused while the call is outstanding.
    let p = GRAPH_OPS[k].load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // SAFETY: registered graph ops are `'static`; the entry is the caller's promise, and the
    // data of an ops in its mask was written by that ops' entry callback.
    unsafe { ((*p).ret)(&(*e).call, &*p, &(*e).data[k]) };
}

/// [`call_return`] for each graph ops in `mask` (several).
///
/// # Safety
/// As for [`call_return`], for every ops in `mask`.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
unsafe fn call_returns(e: *mut ShadowEntry, mask: u16) {
    let mut m = mask;
    while m != 0 {
        let k = m.trailing_zeros() as usize % FGRAPH_MAX_OPS;
        m &= m - 1;
        // SAFETY: the caller's promise.
        unsafe { call_return(e, k) };
    }
}

/// Where `graph_return` found the returning call when it was not the top entry: `Ok(i)` for a
/// match at `i` (the entries above were abandoned: they are dropped and `depth` is `i + 1`), or
/// `Err(ret)` for a corrupt stack (the top entry was popped, its return address is `ret`, and
/// the graph tracer stopped).
#[cold]
#[inline(never)]
fn find_returning(g: &CpuGraph, d: usize, sp: u64) -> Result<usize, u64> {
    let sp_at = |k: usize| g.fields(k).0;
    let mask_at = |k: usize| g.fields(k).1;
    let d = d.min(SHADOW_ENTRIES);
    // (An entry with no mask is reserved by an entry hook this code interrupted, not filled.)
    if let Some(i) = (0..d).rev().find(|&k| sp_at(k) == sp && mask_at(k) != 0) {
        ABANDONED.fetch_add((d - 1 - i) as u64, Ordering::Relaxed);
        (i + 1..d).for_each(|k| {
            g.returned(mask_at(k));
            // SAFETY: this CPU's entry below `depth`, given back with no mask.
            unsafe { (*g.entry(k)).mask = 0 };
        });
        compiler_fence(Ordering::SeqCst);
        g.depth.store(i + 1, Ordering::Relaxed);
        return Ok(i);
    }
    if d == 0 {
        panic!("return_to_handler reached with an empty shadow stack (sp {sp:#x})");
    }
    let top = d - 1;
    // SAFETY: this CPU's filled top entry, read in place.
    let (ret, func, entry_sp) = unsafe { ((*g.entry(top)).call.parent, (*g.entry(top)).call.func, (*g.entry(top)).sp) };
    g.returned(mask_at(top));
    // SAFETY: this CPU's entry below `depth`, given back with no mask.
    unsafe { (*g.entry(top)).mask = 0 };
    compiler_fence(Ordering::SeqCst);
    g.depth.store(top, Ordering::Relaxed);
    LIVE.fetch_or(STOPPED, Ordering::AcqRel);
    CORRUPTIONS.fetch_add(1, Ordering::Relaxed);
    log::error!(
        "fgraph: shadow stack mismatch returning from {} (sp {sp:#x}, entry sp {entry_sp:#x}); graph tracing stopped",
        crate::ksyms::name(func),
    );
    Err(ret)
}

/// The graph return hook, called by `return_to_handler` with its frame (`saved`: the return
/// registers a0 and a1) and the stack pointer the returning function was entered with: runs the
/// return callbacks of the ops that hooked the call and gives back its real return address.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn graph_return(saved: *mut [u64; 2], sp: u64) -> u64 {
    let rettime = arch::time::ticks();
    let g = this_cpu_graph();
    let d = g.depth.load(Ordering::Relaxed);
    let top = d.wrapping_sub(1);
    // SAFETY: entry `top` is this CPU's, filled when `d > 0`.
    let i = if top < SHADOW_ENTRIES && unsafe { (*g.entry(top)).sp } == sp {
        top
    } else {
        match find_returning(g, d, sp) {
            Ok(i) => i,
            Err(ret) => return ret,
        }
    };
    // SAFETY: the filled entry `i`, this call's: `hook_return`'s contract, and `call`'s
    // (`mask` is not 0: only entries an ops hooked match; the test is not `is_power_of_two`,
    // which counts bits in software here).
    unsafe {
        hook_return(g, i, saved, rettime, None, |e, mask| {
            if mask & mask.wrapping_sub(1) == 0 {
                call_return(e, mask.trailing_zeros() as usize % FGRAPH_MAX_OPS);
            } else {
                call_returns(e, mask);
            }
        })
    }
}

/// The direct return hook of `C`'s ops (see [`FgraphOps::with_direct_hooks`]): [`graph_return`]
/// with `C`'s return callback in line for the calls only that ops hooked, when the returning
/// call is the top entry; the general hook otherwise.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn direct_return<C: FgraphCallbacks>(saved: *mut [u64; 2], sp: u64) -> u64 {
    let rettime = arch::time::ticks();
    let g = this_cpu_graph();
    let d = g.depth.load(Ordering::Relaxed);
    let top = d.wrapping_sub(1);
    if top >= SHADOW_ENTRIES {
        return graph_return(saved, sp);
    }
    let e = g.entry(top);
    // SAFETY: entry `top` is this CPU's, filled (`d > 0`).
    let (entry_sp, mask) = unsafe { ((*e).sp, (*e).mask) };
    // While `C`'s direct hooks are chosen, `direct_live` is its slot's bit alone; a call hooked
    // by that ops alone has that mask (a slot is not reused while a call it hooked is
    // outstanding). Anything else goes the general way.
    let me = C::ops();
    if entry_sp != sp || mask as u32 != me.direct_live.load(Ordering::Relaxed) {
        return graph_return(saved, sp);
    }
    let k = mask.trailing_zeros() as usize % FGRAPH_MAX_OPS;
    // SAFETY: the filled top entry, this call's, hooked by `C`'s ops alone (slot `k`).
    unsafe { hook_return(g, top, saved, rettime, Some(k), |e, _| C::ret(&(*e).call, me, &(*e).data[k])) }
}

/// The body of the return hooks once the returning call was found at entry `i`: fills in the
/// return fields, lets `call` run the return callbacks (given the entry and its mask) under
/// the callbacks' recursion guard, counts the call returned and gives back its entry and its
/// real return address. The entry stays reserved while the callbacks run (interrupts on).
/// `only`: the slot of the one ops that hooked the call, when the caller knows it.
///
/// # Safety
/// Entry `i` of `g` (this CPU's) is filled and belongs to the returning call; `saved` is
/// `return_to_handler`'s frame holding a0 and a1. `call` may rely on the same.
#[inline(always)]
unsafe fn hook_return(
    g: &CpuGraph,
    i: usize,
    saved: *mut [u64; 2],
    rettime: u64,
    only: Option<usize>,
    call: impl FnOnce(*mut ShadowEntry, u16),
) -> u64 {
    let e = g.entry(i);
    // SAFETY: the caller's promise.
    let mask = unsafe { (*e).mask };
    // The same guard as the entry's: a call the entry hooked has its return callbacks run even
    // while the core's guard is held (a traced function returning inside another ops' callback).
    if let Some(held) = recursion::trylock_callback() {
        // SAFETY: the caller's promise; the entry is reserved until released below.
        unsafe {
            let [retval, retval_hi] = *saved;
            (*e).call.retval = retval;
            (*e).call.retval_hi = retval_hi;
            (*e).call.rettime = rettime;
        }
        call(e, mask);
        recursion::unlock_callback(held);
    }
    // Only now may an unregistering ops' slot be cleared (see unregister_ftrace_graph).
    match only {
        Some(k) => g.returned_one(k),
        None => g.returned(mask),
    }
    // SAFETY: as above (read before the release; an entry given back has no mask).
    let parent = unsafe {
        (*e).mask = 0;
        (*e).call.parent
    };
    compiler_fence(Ordering::SeqCst);
    g.depth.store(i, Ordering::Relaxed);
    parent
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
    let g = this_cpu_graph();
    let d = g.depth.load(Ordering::Relaxed).min(SHADOW_ENTRIES);
    // SAFETY: this CPU's entries below `depth`, read in place and given back with no mask.
    (0..d).for_each(|k| unsafe {
        g.returned((*g.entry(k)).mask);
        (*g.entry(k)).mask = 0;
    });
    g.depth.store(0, Ordering::Relaxed);
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
    LIVE.fetch_and(!STOPPED, Ordering::AcqRel);
}
