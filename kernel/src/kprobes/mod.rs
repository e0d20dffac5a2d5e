//! kprobes: a `break` over any instruction of a known function, a handler with the full register
//! frame, and the original instruction run out of line or simulated (Linux's `CONFIG_KPROBES`).
//!
//! Arming a probe at `addr` writes `break 10` (`BRK_KPROBE_BP`) over the instruction with the
//! validated patching of the ftrace sites (old word checked, `ibar`, every CPU synchronised).
//! When a CPU hits it, [`on_break`] (registered with `irq` at boot) finds the probe, runs its
//! `pre_handler` with the trap frame (writable: arguments, registers, the PC), then either
//! - **steps** the original instruction in a slot of executable memory (`insn; break 11`), with
//!   interrupts masked, and the second break returns to `addr + 4` and runs `post_handler`; or
//! - **simulates** it when its meaning depends on its address (`pcaddi`, `pcaddu12i`,
//!   `pcaddu18i`, `pcalau12i`, `b`, `bl`, `jirl`, the conditional branches: see
//!   `arch::kprobe_insn`), then runs `post_handler`.
//!
//! A probe on the patch site of a traceable function (offset 0 or 4) is a **kprobe on ftrace**
//! instead (Linux's `KPROBES_ON_FTRACE`): no `break`; an ftrace ops with `SAVE_REGS` on that one
//! function calls the handlers from `ftrace_regs_caller`'s full frame, with `era` = the entry
//! for the pre handler and the function body for the post handler, as if the site were one
//! instruction. It shares the site with every other ftrace user.
//!
//! A `pre_handler` that returns `true` has set `era` itself (it redirected the PC): the original
//! instruction is skipped. A probe hit while a probe handler runs on the same CPU does not call
//! handlers again: it is counted in [`Kprobe::nmissed`] and only its instruction runs.
//!
//! Disarming writes the old word back and synchronises every CPU. A CPU handles a probe with
//! interrupts off from the trap until the instruction has run (the slot is stepped with
//! interrupts masked too), so once every CPU has taken the synchronising IPI none is inside the
//! probe, and its slot can be freed. A CPU that trapped on the break just before it vanished
//! finds another word at `era` and simply runs it.
//!
//! See docs/kprobes.md.

pub mod kretprobe;

use crate::ftrace::{FtraceOps, FtraceRegs, OpsFlags};
use alloc::string::String;
use arch::frame::PtRegs;
use arch::kprobe_insn::{self, Class, KPROBE_BP_INSN, KPROBE_SSTEPBP_INSN, Refused, Simulated};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Most probes registered at once.
pub const MAX_KPROBES: usize = 32;
/// PRMD.PIE: the interrupt enable `ertn` restores.
const PRMD_PIE: u64 = 1 << 2;

/// Called before the probed instruction, with `era` = the probe's address. Return `true` when
/// the handler set `era` itself (the instruction is then skipped), else `false`.
pub type PreHandler = fn(&Kprobe, &mut PtRegs) -> bool;
/// Called after the probed instruction ran, with `era` = where execution continues.
pub type PostHandler = fn(&Kprobe, &mut PtRegs);

/// Where a probe goes.
#[derive(Clone, Copy, Debug)]
pub enum Where {
    /// `symbol + offset` (a kernel function's name: full, its last segments like `irq::tick`,
    /// or `module:function`).
    Symbol(&'static str, u64),
    /// An address.
    Addr(u64),
}

const UNREGISTERED: u8 = 0;
const ARMED: u8 = 1;
const DISABLED: u8 = 2;

/// A kprobe (Linux's `struct kprobe`): define it as a `static`, register it, unregister it.
pub struct Kprobe {
    pub at: Where,
    pub pre_handler: Option<PreHandler>,
    pub post_handler: Option<PostHandler>,
    addr: AtomicU64,
    opcode: AtomicU32,
    slot: AtomicU64,
    /// The probe's ftrace ops when it is on ftrace (null for a break probe).
    ops: AtomicPtr<FtraceOps>,
    state: AtomicU8,
    hits: AtomicU64,
    nmissed: AtomicU64,
    /// For the owner (a kretprobe keeps itself here).
    private: AtomicUsize,
    /// Keeps the module the probe is in loaded while the probe is registered.
    hold: spin::Mutex<Option<crate::ksyms::Hold>>,
    /// The decoded instruction of a simulated probe (decoded once, at registration).
    sim: UnsafeCell<Option<Simulated>>,
    /// The slot jumps back by itself (no post handler): no second trap.
    boosted: AtomicBool,
    /// The handlers need only the argument frame (see [`Kprobe::on_argument_frame`]).
    args_frame: bool,
}

// SAFETY: every field but `sim` is Sync by itself. `sim` is written only by `register_kprobe`
// (under `REG`) before the probe is published in `TABLE` with a release store, and read only by
// the trap path of a CPU that found the probe there (acquire), or under `REG`; unregistering
// removes the probe from every CPU's reach before a later registration writes it again.
unsafe impl Sync for Kprobe {}

impl Kprobe {
    /// A probe at `symbol + offset`.
    pub const fn new(symbol: &'static str, offset: u64, pre_handler: Option<PreHandler>, post_handler: Option<PostHandler>) -> Kprobe {
        Kprobe::with(Where::Symbol(symbol, offset), pre_handler, post_handler)
    }

    /// A probe at `at` whose handlers read and write no registers but `a0`-`a7`, `ra`,
    /// `sp`, `fp` and `era`. On an ftrace site such a probe rides `ftrace_caller`'s argument
    /// frame instead of `ftrace_regs_caller`'s full one (about 40 instructions less a hit; Linux's
    /// fprobes make the same trade with `ftrace_regs`), and its handlers find the other
    /// registers' slots with unspecified values. A probe on a `break` saves every register
    /// whatever this says.
    pub const fn on_argument_frame(at: Where, pre_handler: Option<PreHandler>, post_handler: Option<PostHandler>) -> Kprobe {
        Kprobe::build(at, pre_handler, post_handler, true)
    }

    /// A probe at `at`.
    pub const fn with(at: Where, pre_handler: Option<PreHandler>, post_handler: Option<PostHandler>) -> Kprobe {
        Kprobe::build(at, pre_handler, post_handler, false)
    }

    const fn build(at: Where, pre_handler: Option<PreHandler>, post_handler: Option<PostHandler>, args_frame: bool) -> Kprobe {
        Kprobe {
            at,
            pre_handler,
            post_handler,
            addr: AtomicU64::new(0),
            opcode: AtomicU32::new(0),
            slot: AtomicU64::new(0),
            ops: AtomicPtr::new(core::ptr::null_mut()),
            state: AtomicU8::new(UNREGISTERED),
            hits: AtomicU64::new(0),
            nmissed: AtomicU64::new(0),
            private: AtomicUsize::new(0),
            hold: spin::Mutex::new(None),
            sim: UnsafeCell::new(None),
            boosted: AtomicBool::new(false),
            args_frame,
        }
    }

    /// The probed address (0 while unregistered).
    pub fn addr(&self) -> u64 {
        self.addr.load(Ordering::Acquire)
    }
    /// The instruction the break replaced.
    pub fn opcode(&self) -> u32 {
        self.opcode.load(Ordering::Acquire)
    }
    /// The out-of-line slot (0 when the instruction is simulated or the probe is on ftrace).
    pub fn slot(&self) -> u64 {
        self.slot.load(Ordering::Acquire)
    }
    /// Whether the probe rides an ftrace site instead of a `break`.
    pub fn on_ftrace(&self) -> bool {
        !self.ops.load(Ordering::Acquire).is_null()
    }
    /// Hits that ran the handlers.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    /// Hits that did not run the handlers (a probe handler was running on that CPU).
    pub fn nmissed(&self) -> u64 {
        self.nmissed.load(Ordering::Relaxed)
    }
    /// Whether the probe is registered and armed.
    pub fn is_armed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ARMED
    }
}

/// Why a probe was not registered (or changed). Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KprobeError {
    NoSuchSymbol(&'static str),
    /// The offset is past the end of the function.
    OffsetPastEnd(&'static str, u64),
    /// Not an instruction boundary (unaligned) of a known function, or not text at all.
    NotAnInstruction(u64),
    /// The function is on the kprobe blacklist.
    Blacklisted(u64, String),
    /// The instruction cannot be probed.
    Refused(u64, Refused),
    /// The entry words of a patch site ftrace never enables (a `notrace` function's) belong to
    /// ftrace and cannot take a `break` either.
    FtraceSite(u64),
    /// A probe is already registered at this address.
    Busy(u64),
    AlreadyRegistered,
    NotRegistered,
    /// [`MAX_KPROBES`] are registered.
    TooMany,
    /// The module the address is in is being unloaded.
    ModuleGoing(&'static str),
    /// No executable memory for the slot.
    NoSlot,
    /// The word at the address was not what the probe expected.
    Patch(String),
    /// The ftrace site refused the probe's ops (a kprobe on ftrace).
    Ftrace(String),
}

impl core::fmt::Display for KprobeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KprobeError::NoSuchSymbol(s) => write!(f, "no function named '{s}'"),
            KprobeError::OffsetPastEnd(s, o) => write!(f, "offset {o:#x} is past the end of {s}"),
            KprobeError::NotAnInstruction(a) => write!(f, "{a:#x} is not an instruction of a known function"),
            KprobeError::Blacklisted(a, s) => write!(f, "{a:#x} ({s}) is on the kprobe blacklist"),
            KprobeError::Refused(a, r) => write!(f, "cannot probe the instruction at {a:#x}: {r}"),
            KprobeError::FtraceSite(a) => {
                write!(f, "{a:#x} is inside the patch site of a function ftrace never traces")
            }
            KprobeError::Busy(a) => write!(f, "a kprobe is already registered at {a:#x}"),
            KprobeError::AlreadyRegistered => write!(f, "the kprobe is already registered"),
            KprobeError::NotRegistered => write!(f, "the kprobe is not registered"),
            KprobeError::TooMany => write!(f, "{MAX_KPROBES} kprobes are registered already"),
            KprobeError::ModuleGoing(m) => write!(f, "module {m} is being unloaded"),
            KprobeError::NoSlot => write!(f, "no executable memory for the out-of-line slot"),
            KprobeError::Patch(e) => write!(f, "patching: {e}"),
            KprobeError::Ftrace(e) => write!(f, "ftrace: {e}"),
        }
    }
}

/// Functions no probe may go into (Linux's `NOKPROBE_SYMBOL`): the trap path, this file, the
/// ftrace trampolines and patching, and the panic path. Globs over symbol names.
pub const BLACKLIST: &[&str] = &[
    "*kprobes::*",
    "*irq::on_exception",
    "*irq::on_interrupt",
    "*trap::*",
    "loongtrace_trap_*",
    "loongtrace_tlbr_*",
    "ftrace_*",
    "return_to_handler",
    "*arch::ftrace::*",
    "*patch::*",
    "*arch::cpu::*",
    "*panic::*",
    "rust_begin_unwind",
    "*core::panicking::*",
];

/// Whether function `name` is on the blacklist.
pub fn blacklisted(name: &str) -> bool {
    BLACKLIST.iter().any(|p| crate::glob::name_matches(p, name))
}

/// The registered probes, lock-free for the trap handler; `USED` is one past the last entry
/// that was ever used, so the scan stops early.
static TABLE: [AtomicPtr<Kprobe>; MAX_KPROBES] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_KPROBES];
static USED: AtomicUsize = AtomicUsize::new(0);
/// Serialises registration, arming and disarming.
static REG: spin::Mutex<()> = spin::Mutex::new(());

/// The probe this CPU is handling (null: none), kept in the per-CPU area (`r21`).
#[inline(always)]
fn cur_get() -> *mut Kprobe {
    arch::boot::this_cpu_load::<{ arch::boot::PERCPU_KPROBE_CURRENT }>() as *mut Kprobe
}

#[inline(always)]
fn cur_set(p: *mut Kprobe) {
    arch::boot::this_cpu_store::<{ arch::boot::PERCPU_KPROBE_CURRENT }>(p as u64)
}

#[inline(always)]
fn cur_swap(p: *mut Kprobe) -> *mut Kprobe {
    arch::boot::this_cpu().kprobe_current.swap(p as u64, Ordering::Relaxed) as *mut Kprobe
}

/// Per CPU, besides the current probe: whether its instruction is being stepped, the
/// interrupt enable to give back after the step, and the probe whose handler was interrupted
/// by a re-entered hit (`outer`).
struct CpuState {
    stepping: AtomicBool,
    pie: AtomicU64,
    outer: AtomicPtr<Kprobe>,
}

static CPU: [CpuState; arch::boot::MAX_CPUS] = [const {
    CpuState {
        stepping: AtomicBool::new(false),
        pie: AtomicU64::new(0),
        outer: AtomicPtr::new(core::ptr::null_mut()),
    }
}; arch::boot::MAX_CPUS];

/// Executable memory for slots, in 64-byte units: for kernel functions the page the linker
/// script reserves at the end of kernel text (`__kprobe_slots_start`, in `b` reach of every
/// kernel function), for module functions one page of the module area.
struct Slots {
    near: crate::execmem::ExecArea<64>,
    area: crate::execmem::ExecArea<64>,
    page: Option<crate::execmem::area::ExecMem>,
}

static SLOTS: spin::Mutex<Slots> =
    spin::Mutex::new(Slots { near: crate::execmem::ExecArea::new(), area: crate::execmem::ExecArea::new(), page: None });

unsafe extern "C" {
    static __kprobe_slots_start: u8;
    static __kprobe_slots_end: u8;
}

/// A slot for the instruction at `addr`.
fn alloc_slot(addr: u64) -> Option<u64> {
    let mut s = SLOTS.lock();
    if !crate::execmem::area::in_area(addr) {
        if s.near.bounds().0 == 0 {
            let (start, end) = (core::ptr::addr_of!(__kprobe_slots_start) as u64, core::ptr::addr_of!(__kprobe_slots_end) as u64);
            s.near.init(start, end);
        }
        if let Some(at) = s.near.alloc(8) {
            return Some(at);
        }
    }
    if s.page.is_none() {
        let page = crate::execmem::area::alloc_exec(4096, 4096).ok()?;
        s.area.init(page.addr, page.addr + page.size as u64);
        s.page = Some(page);
    }
    s.area.alloc(8)
}

fn free_slot(at: u64) {
    let mut s = SLOTS.lock();
    let r = if s.near.contains(at) { s.near.free(at) } else { s.area.free(at) };
    if let Err(e) = r {
        log::error!("kprobes: freeing the slot at {at:#x}: {e}");
    }
}

/// Waits until no other CPU runs in the boosted slot at `slot` (a CPU runs it with interrupts
/// on, so it may be interrupted there): the quiescence wait of retired direct trampolines
/// (`ftrace::quiesce`), with the slot tracked as one. `false` if that gives up (the slot is then
/// leaked, not freed).
fn wait_outside_slot(slot: u64) -> bool {
    use crate::ftrace::quiesce;
    if !quiesce::track(slot, slot + 8) {
        log::error!("kprobes: no room to track the slot at {slot:#x}; it is not freed");
        return false;
    }
    let left = quiesce::synchronize_trampolines();
    quiesce::untrack(slot);
    if !left {
        log::error!("kprobes: a CPU stayed in the slot at {slot:#x}; it is not freed");
    }
    left
}

fn patch_error(e: arch::patch::PatchError) -> KprobeError {
    KprobeError::Patch(alloc::format!("{e}"))
}

fn write_word(at: u64, word: u32) -> Result<(), KprobeError> {
    let old = arch::patch::read_insn(at).map_err(patch_error)?;
    arch::patch::patch_insn(at, old, word).map_err(patch_error)
}

/// Writes `new` over `old` at `addr` and makes every CPU see it.
fn patch(addr: u64, old: u32, new: u32) -> Result<(), KprobeError> {
    arch::patch::patch_insn(addr, old, new).map_err(patch_error)?;
    crate::smp::sync_all_cpus();
    // See `arch::patch::recommit_insn`: drops translations QEMU made while the first store landed.
    let _ = arch::patch::recommit_insn(addr);
    Ok(())
}

/// Where `at` is: (address, the function's name, offset into it).
fn resolve(at: Where) -> Result<(u64, &'static str, u64), KprobeError> {
    let addr = match at {
        Where::Symbol(name, off) => {
            // `module:function`; a path's `::` is never that.
            let (base, size) = match name.split_once(':').filter(|_| !name.contains("::")) {
                Some((module, func)) => {
                    let a = crate::ksyms::resolve_in(module, func).ok_or(KprobeError::NoSuchSymbol(name))?;
                    (a, crate::ksyms::lookup(a).map_or(0, |(s, _)| s.size as u64))
                }
                None => {
                    // The full name, its last segment, or a tail of whole segments (`irq::x`).
                    let tail = |s: &str| s.strip_suffix(name).is_some_and(|p| p.ends_with("::"));
                    let s = crate::ksyms::find(name)
                        .or_else(|| crate::ksyms::table().iter().find(|s| tail(s.name)))
                        .ok_or(KprobeError::NoSuchSymbol(name))?;
                    (s.addr, s.size as u64)
                }
            };
            if off >= size {
                return Err(KprobeError::OffsetPastEnd(name, off));
            }
            base + off
        }
        Where::Addr(a) => a,
    };
    match crate::ksyms::lookup(addr) {
        Some((sym, off)) if addr % 4 == 0 && off < sym.size as u64 => Ok((addr, sym.name, off)),
        _ => Err(KprobeError::NotAnInstruction(addr)),
    }
}

/// How a probe is reached.
enum Site {
    /// A `break` over `word`, handled as `class`.
    Break(u32, Class),
    /// The ftrace site of the function entered at the probe's address.
    Ftrace,
}

/// Checks that `p` may go at its place; returns the address (the entry for a probe on ftrace)
/// and how the probe gets there.
fn prepare(p: &Kprobe) -> Result<(u64, Site), KprobeError> {
    let (addr, name, off) = resolve(p.at)?;
    if blacklisted(name) {
        return Err(KprobeError::Blacklisted(addr, name.into()));
    }
    let entry = addr - off;
    if off < 8 {
        if let Some(i) = crate::ftrace::sites::index_of(entry) {
            if !crate::ftrace::core::site_traceable(i) {
                return Err(KprobeError::FtraceSite(addr));
            }
            // Several probes may share a site: each has its own ops.
            return Ok((entry, Site::Ftrace));
        }
    }
    if lookup(addr).is_some() {
        return Err(KprobeError::Busy(addr));
    }
    let word = arch::patch::read_insn(addr).map_err(|_| KprobeError::NotAnInstruction(addr))?;
    let class = kprobe_insn::classify(word);
    if let Class::Refuse(r) = class {
        return Err(KprobeError::Refused(addr, r));
    }
    Ok((addr, Site::Break(word, class)))
}

fn ftrace_error(e: crate::ftrace::FtraceError) -> KprobeError {
    KprobeError::Ftrace(alloc::format!("{e}"))
}

/// Gives probe `p` at function entry `entry` an ftrace ops of its own, filtered on that one
/// function, and registers it.
fn arm_on_ftrace(p: &'static Kprobe, entry: u64) -> Result<&'static FtraceOps, KprobeError> {
    // A kretprobe without an entry handler needs no register frame at the entry: the argument
    // frame holds the return address and the stack pointer (ftrace_caller, not the full path).
    let ops = match kretprobe::entry_without_regs(p) {
        Some(func) => FtraceOps::new_boxed(func, OpsFlags::empty()),
        None if p.args_frame => FtraceOps::new_boxed(kprobe_ftrace_args_handler, OpsFlags::empty()),
        None => FtraceOps::new_boxed(kprobe_ftrace_handler, OpsFlags::SAVE_REGS),
    };
    ops.private.store(p as *const Kprobe as usize, Ordering::Release);
    let r = crate::ftrace::ftrace_set_filter_ip(ops, entry, false, true).and_then(|_| crate::ftrace::register_ftrace_function(ops));
    if let Err(e) = r {
        // SAFETY: `ops` came from `new_boxed`, is not registered and nothing else refers to it.
        let _ = unsafe { FtraceOps::free(ops) };
        return Err(ftrace_error(e));
    }
    Ok(ops)
}

/// Registers and arms `p` (Linux's `register_kprobe`).
pub fn register_kprobe(p: &'static Kprobe) -> Result<(), KprobeError> {
    let _g = REG.lock();
    if p.state.load(Ordering::Acquire) != UNREGISTERED {
        return Err(KprobeError::AlreadyRegistered);
    }
    let (addr, site) = prepare(p)?;
    let free = TABLE.iter().position(|e| e.load(Ordering::Acquire).is_null()).ok_or(KprobeError::TooMany)?;
    // A probe in a module keeps it loaded (Linux's kprobes take a module reference too).
    let hold = match crate::ksyms::owner_of(addr) {
        Some(m) => Some(crate::ksyms::hold(m).ok_or(KprobeError::ModuleGoing(m))?),
        None => None,
    };
    let r = arm(p, addr, site, free);
    if r.is_ok() {
        *p.hold.lock() = hold;
    }
    r
}

/// Arms `p` at `addr` in table entry `free` (registration's second half).
fn arm(p: &'static Kprobe, addr: u64, site: Site, free: usize) -> Result<(), KprobeError> {
    let (word, class) = match site {
        Site::Break(word, class) => (word, class),
        Site::Ftrace => {
            p.addr.store(addr, Ordering::Release);
            p.opcode.store(0, Ordering::Release);
            p.slot.store(0, Ordering::Release);
            p.hits.store(0, Ordering::Relaxed);
            p.nmissed.store(0, Ordering::Relaxed);
            TABLE[free].store(p as *const Kprobe as *mut Kprobe, Ordering::Release);
            USED.fetch_max(free + 1, Ordering::AcqRel);
            match arm_on_ftrace(p, addr) {
                Ok(ops) => p.ops.store(ops as *const FtraceOps as *mut FtraceOps, Ordering::Release),
                Err(e) => {
                    TABLE[free].store(core::ptr::null_mut(), Ordering::Release);
                    p.addr.store(0, Ordering::Release);
                    return Err(e);
                }
            }
            p.state.store(ARMED, Ordering::Release);
            return Ok(());
        }
    };
    let slot = match class {
        Class::Step => {
            let at = alloc_slot(addr).ok_or(KprobeError::NoSlot)?;
            // Without a post handler the slot jumps straight back (a "boosted" probe, as x86
            // Linux does): no second trap. It needs a `b` in reach.
            let back = arch::insn::encode_b(at + 4, addr + 4).ok().filter(|_| p.post_handler.is_none());
            p.boosted.store(back.is_some(), Ordering::Release);
            let [w0, w1] = match back {
                Some(b) => [word, b],
                None => kprobe_insn::slot_words(word),
            };
            if let Err(e) = write_word(at, w0).and_then(|_| write_word(at + 4, w1)) {
                free_slot(at);
                return Err(e);
            }
            at
        }
        _ => 0,
    };
    p.addr.store(addr, Ordering::Release);
    p.opcode.store(word, Ordering::Release);
    p.slot.store(slot, Ordering::Release);
    // SAFETY: see `impl Sync for Kprobe`: the probe is not in `TABLE` yet and `REG` is held.
    unsafe { *p.sim.get() = if let Class::Simulate(sim) = class { Some(sim) } else { None } };
    p.hits.store(0, Ordering::Relaxed);
    p.nmissed.store(0, Ordering::Relaxed);
    // Published before the break exists, so a CPU that hits it finds the probe and its slot.
    TABLE[free].store(p as *const Kprobe as *mut Kprobe, Ordering::Release);
    USED.fetch_max(free + 1, Ordering::AcqRel);
    if let Err(e) = patch(addr, word, KPROBE_BP_INSN) {
        TABLE[free].store(core::ptr::null_mut(), Ordering::Release);
        if slot != 0 {
            free_slot(slot);
        }
        return Err(e);
    }
    p.state.store(ARMED, Ordering::Release);
    Ok(())
}

/// Disarms and unregisters `p` (Linux's `unregister_kprobe`): when it returns no CPU is inside
/// the probe any more.
pub fn unregister_kprobe(p: &'static Kprobe) -> Result<(), KprobeError> {
    let _g = REG.lock();
    let state = p.state.load(Ordering::Acquire);
    if state == UNREGISTERED {
        return Err(KprobeError::NotRegistered);
    }
    let addr = p.addr();
    let ops = p.ops.load(Ordering::Acquire);
    if !ops.is_null() {
        // SAFETY: a non-null `ops` is the probe's own leaked ops, alive until freed below.
        let ops: &'static FtraceOps = unsafe { &*ops };
        if state == ARMED {
            crate::ftrace::unregister_ftrace_function(ops).map_err(ftrace_error)?;
        }
        // Unregistering waited until no CPU runs the callback: the ops can go.
        p.ops.store(core::ptr::null_mut(), Ordering::Release);
        // SAFETY: the ops came from `new_boxed` in `arm_on_ftrace`, is unregistered, and the
        // probe (its only holder) has just dropped it.
        let _ = unsafe { FtraceOps::free(ops) };
    } else if state == ARMED {
        patch(addr, KPROBE_BP_INSN, p.opcode())?;
    }
    // `patch` synchronised every CPU after the word went back: none is in the handler or the slot.
    if let Some(e) = TABLE.iter().find(|e| core::ptr::eq(e.load(Ordering::Acquire), p)) {
        e.store(core::ptr::null_mut(), Ordering::Release);
    }
    let slot = p.slot.swap(0, Ordering::AcqRel);
    // A boosted slot runs with interrupts on: wait until no CPU was interrupted inside it.
    if slot != 0 && (!p.boosted.load(Ordering::Acquire) || wait_outside_slot(slot)) {
        free_slot(slot);
    }
    p.state.store(UNREGISTERED, Ordering::Release);
    drop(p.hold.lock().take());
    Ok(())
}

/// Takes the break out (or the probe's ops off its ftrace site) but keeps the probe registered
/// (Linux's `disable_kprobe`).
pub fn disable_kprobe(p: &'static Kprobe) -> Result<(), KprobeError> {
    set_armed(p, false)
}

/// Puts the break (or the ops) back (Linux's `enable_kprobe`).
pub fn enable_kprobe(p: &'static Kprobe) -> Result<(), KprobeError> {
    set_armed(p, true)
}

/// Arms or disarms a registered probe; nothing changes when it already is as asked.
fn set_armed(p: &'static Kprobe, arm: bool) -> Result<(), KprobeError> {
    let _g = REG.lock();
    let want = if arm { ARMED } else { DISABLED };
    match p.state.load(Ordering::Acquire) {
        UNREGISTERED => Err(KprobeError::NotRegistered),
        s if s == want => Ok(()),
        _ => {
            match (ftrace_ops(p), arm) {
                (Some(ops), true) => crate::ftrace::register_ftrace_function(ops).map_err(ftrace_error)?,
                (Some(ops), false) => crate::ftrace::unregister_ftrace_function(ops).map_err(ftrace_error)?,
                (None, true) => patch(p.addr(), p.opcode(), KPROBE_BP_INSN)?,
                (None, false) => patch(p.addr(), KPROBE_BP_INSN, p.opcode())?,
            }
            p.state.store(want, Ordering::Release);
            Ok(())
        }
    }
}

/// The ops of a registered probe on ftrace.
fn ftrace_ops(p: &Kprobe) -> Option<&'static FtraceOps> {
    let ops = p.ops.load(Ordering::Acquire);
    // SAFETY: a non-null `ops` is the probe's own leaked ops, freed only by `unregister_kprobe`,
    // which holds `REG` as every caller of this does.
    (!ops.is_null()).then(|| unsafe { &*ops })
}

/// The callback of a kprobe on ftrace: the probe's handlers around the patch site, as if it
/// were one instruction (Linux's `kprobe_ftrace_handler`). `fregs` is `ftrace_regs_caller`'s full
/// frame (`era` = the body, `ra` = the parent): the pre handler sees `era` = `ip`; unless it
/// redirected the PC (returned `true`), the post handler sees the body, where execution goes on.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn kprobe_ftrace_handler(ip: u64, _parent: u64, ops: &FtraceOps, fregs: &mut FtraceRegs) {
    let Some(regs) = fregs.full_mut() else { return };
    on_ftrace_hit(ops, ip, regs);
}

/// The callback of a probe [on the argument frame](Kprobe::on_argument_frame), through
/// `ftrace_caller`: fills in the frame's `sp` and `fp` and runs the handlers as
/// [`kprobe_ftrace_handler`] does.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn kprobe_ftrace_args_handler(ip: u64, _parent: u64, ops: &FtraceOps, fregs: &mut FtraceRegs) {
    // SAFETY: an ops callback, running on the frame it was given.
    let regs = unsafe { fregs.argument_regs_mut() };
    on_ftrace_hit(ops, ip, regs);
}

/// A hit of the probe owning `ops` at the ftrace site `ip`: the handlers run with `era` = `ip`
/// (as if a `break` there had trapped), then the traced function resumes where `era` says.
#[inline(always)]
fn on_ftrace_hit(ops: &FtraceOps, ip: u64, regs: &mut PtRegs) {
    // SAFETY: `arm_on_ftrace` set `private` to the `&'static Kprobe` owning this ops before
    // registering it, and the ops is freed only after it is unregistered.
    let p: &'static Kprobe = unsafe { &*(ops.private.load(Ordering::Relaxed) as *const Kprobe) };
    if !cur_get().is_null() {
        p.nmissed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    p.hits.fetch_add(1, Ordering::Relaxed);
    cur_set(p as *const Kprobe as *mut Kprobe);
    let body = regs.era;
    regs.era = ip;
    if !p.pre_handler.is_some_and(|pre| pre(p, regs)) {
        regs.era = body;
        if let Some(post) = p.post_handler {
            post(p, regs);
            regs.era = body;
        }
    }
    cur_set(core::ptr::null_mut());
}

/// The registered break probe at `addr` (probes on ftrace are never at a break's address: an
/// ftrace site's words are not probed with a break).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn lookup(addr: u64) -> Option<&'static Kprobe> {
    let used = USED.load(Ordering::Acquire);
    TABLE[..used].iter().find_map(|e| {
        let p = e.load(Ordering::Acquire);
        // SAFETY: a non-null entry points to a registered `&'static Kprobe`.
        (!p.is_null() && unsafe { (*p).addr.load(Ordering::Relaxed) } == addr).then(|| unsafe { &*p })
    })
}

/// Registered probes (Linux's `kprobes/list`).
pub fn list() -> alloc::vec::Vec<&'static Kprobe> {
    let used = USED.load(Ordering::Acquire);
    TABLE[..used]
        .iter()
        .filter_map(|e| {
            let p = e.load(Ordering::Acquire);
            // SAFETY: as in `lookup`.
            (!p.is_null()).then(|| unsafe { &*p })
        })
        .collect()
}

/// A line of `kprobes/list`, as Linux prints it: the address, `k` (kprobe) or `r` (kretprobe),
/// the place, and `[DISABLED]` / `[FTRACE]` (a probe on an ftrace site).
pub fn describe(p: &Kprobe) -> String {
    let kind = if p.private.load(Ordering::Relaxed) != 0 { "r" } else { "k" };
    let mut line = alloc::format!("{:016x}  {kind}  {}", p.addr(), crate::ksyms::sym(p.addr()));
    if p.state.load(Ordering::Acquire) == DISABLED {
        line.push_str("  [DISABLED]");
    }
    if p.on_ftrace() {
        line.push_str("  [FTRACE]");
    }
    line
}

/// The `break` handler (registered with `irq` at boot). `word` is the word now at `era`.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn on_break(frame: &mut PtRegs, word: u32) -> bool {
    let st = &CPU[arch::cpu::id() % arch::boot::MAX_CPUS];
    if word == KPROBE_BP_INSN {
        let Some(p) = lookup(frame.era) else { return false };
        hit(p, frame, st);
        return true;
    }
    if word == KPROBE_SSTEPBP_INSN {
        let p = cur_get();
        // SAFETY: `cur` is a registered probe while its step runs (unregistering waits for it).
        if p.is_null() || !st.stepping.load(Ordering::Relaxed) || frame.era != unsafe { (*p).slot() } + 4 {
            return false;
        }
        // SAFETY: as above.
        let p = unsafe { &*p };
        frame.era = p.addr() + 4;
        frame.prmd |= st.pie.load(Ordering::Relaxed);
        st.stepping.store(false, Ordering::Relaxed);
        finish(p, frame, st);
        return true;
    }
    // No break any more: the probe was disarmed while this CPU trapped on it. Run what is there
    // now (only a kprobe replaces a break at run time).
    word & !0x7fff != arch::insn::BREAK0
}

/// A hit of `p` at `frame.era`.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn hit(p: &'static Kprobe, frame: &mut PtRegs, st: &CpuState) {
    let outer = cur_get();
    if !outer.is_null() {
        // Re-entered from a probe handler: no handlers, just the instruction.
        p.nmissed.fetch_add(1, Ordering::Relaxed);
        st.outer.store(outer, Ordering::Relaxed);
        cur_set(p as *const Kprobe as *mut Kprobe);
        run_instruction(p, frame, st);
        return;
    }
    p.hits.fetch_add(1, Ordering::Relaxed);
    cur_set(p as *const Kprobe as *mut Kprobe);
    if let Some(pre) = p.pre_handler {
        if pre(p, frame) {
            cur_set(core::ptr::null_mut());
            return;
        }
    }
    run_instruction(p, frame, st);
}

/// Runs `p`'s instruction: stepped in its slot (returns to the slot) when it has one, else
/// simulated here (registration gave a slot exactly to the `Step` class).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn run_instruction(p: &'static Kprobe, frame: &mut PtRegs, st: &CpuState) {
    let slot = p.slot();
    if slot != 0 && p.boosted.load(Ordering::Relaxed) {
        // The slot ends with a jump back: the probe is done once the CPU is on its way there.
        frame.era = slot;
        finish(p, frame, st);
        return;
    }
    if slot != 0 {
        st.pie.store(frame.prmd & PRMD_PIE, Ordering::Relaxed);
        frame.prmd &= !PRMD_PIE;
        st.stepping.store(true, Ordering::Relaxed);
        frame.era = slot;
        return;
    }
    // SAFETY: see `impl Sync for Kprobe`: this CPU found `p` in `TABLE`, so `sim` is written.
    if let Some(s) = unsafe { *p.sim.get() } {
        frame.era = kprobe_insn::simulate(s, p.addr(), &mut frame.regs);
        finish(p, frame, st);
    }
}

/// After `p`'s instruction ran: the post handler (unless re-entered), then back to the outer
/// probe or to none.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn finish(p: &'static Kprobe, frame: &mut PtRegs, st: &CpuState) {
    let outer = st.outer.swap(core::ptr::null_mut(), Ordering::Relaxed);
    if !outer.is_null() {
        cur_set(outer);
        return;
    }
    if let Some(post) = p.post_handler {
        post(p, frame);
    }
    cur_set(core::ptr::null_mut());
}

/// Registers the break handler (at boot).
pub fn init() {
    crate::irq::set_break_handler(on_break);
    kretprobe::init();
}

/// Isolation check: no probe left registered by a test case.
pub fn check_none_registered() -> Result<(), String> {
    match list().first() {
        None => Ok(()),
        Some(p) => Err(alloc::format!("a kprobe is still registered at {}", crate::ksyms::sym(p.addr()))),
    }
}

/// What must hold after a self-test case.
pub const ISOLATION_CHECKS: &[(&str, fn() -> Result<(), String>)] =
    &[("kprobes unregistered", check_none_registered), ("kretprobe instances returned", kretprobe::check_idle)];
