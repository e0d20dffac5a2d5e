//! `FtraceOps` (a callback plus the functions it wants), its flags, and `FtraceRegs`.

use super::sites::SiteSet;
use alloc::boxed::Box;
use arch::frame::PtRegs;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// A tracing callback: the traced function's entry `ip`, the return address in its caller
/// (`parent_ip`), the ops it was registered with, and the saved registers.
pub type FtraceFunc = extern "C" fn(ip: u64, parent_ip: u64, ops: &FtraceOps, regs: &mut FtraceRegs);

bitflags::bitflags! {
    /// Behaviour of an ops.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(transparent)]
    pub struct OpsFlags: u32 {
        /// The callback needs every register (`FtraceRegs::full`): sites go through
        /// `ftrace_regs_caller`.
        const SAVE_REGS = 1 << 0;
        /// The core guards the callback against recursion (per CPU and context). Without it the
        /// callback must be recursion-safe itself and may be called straight from `ftrace_call`.
        const RECURSION = 1 << 1;
        /// A direct-call ops (set by `register_ftrace_direct`, not by users).
        const DIRECT = 1 << 2;
        /// Direct trampoline written for the pre-v6.19 register roles (see docs/direct-calls.md).
        const LEGACY_ABI = 1 << 3;
    }
}

/// Errors of the ftrace API. Whenever one is returned, nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FtraceError {
    /// A filter word matched no traceable function.
    NoMatch(alloc::string::String),
    /// The function exists but is never traced (tracing machinery, console, fault paths).
    NotTraceable(alloc::string::String),
    /// The address is not the entry of a patch site.
    NotASite(u64),
    /// A malformed filter word.
    BadFilter(alloc::string::String),
    AlreadyRegistered,
    NotRegistered,
    /// Boot-time init has not run (or found no sites).
    NotInitialised,
    /// A direct trampoline address that is null, unaligned or outside kernel text.
    BadTrampoline(u64),
    /// The named function already has a direct trampoline.
    DirectBusy(&'static str),
    /// The ops has an empty filter (a direct ops must name its functions).
    EmptyFilter,
    /// The operation needs a direct ops / an ordinary ops.
    WrongKind,
    /// All 16 graph ops slots are taken.
    TooManyGraphOps,
    /// `!word` or a removal named nothing in the ops' filter (or the ops has no filter).
    NothingToRemove(alloc::string::String),
    /// A module function is in use (named by a registered ops' filter): its module cannot go.
    InUse(alloc::string::String),
}

impl core::fmt::Display for FtraceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FtraceError::NoMatch(w) => write!(f, "'{w}' matches no traceable function"),
            FtraceError::NotTraceable(w) => write!(f, "'{w}' is notrace (part of the tracing machinery)"),
            FtraceError::NotASite(a) => write!(f, "{a:#x} is not the entry of a traceable function"),
            FtraceError::BadFilter(w) => write!(f, "bad filter word '{w}'"),
            FtraceError::AlreadyRegistered => write!(f, "ops is already registered"),
            FtraceError::NotRegistered => write!(f, "ops is not registered"),
            FtraceError::NotInitialised => write!(f, "ftrace is not initialised"),
            FtraceError::BadTrampoline(a) => write!(f, "{a:#x} is not a valid trampoline address"),
            FtraceError::DirectBusy(n) => write!(f, "{n} already has a direct trampoline"),
            FtraceError::EmptyFilter => write!(f, "the ops names no function"),
            FtraceError::WrongKind => write!(f, "wrong kind of ops for this call"),
            FtraceError::TooManyGraphOps => write!(f, "too many graph ops (at most 16)"),
            FtraceError::InUse(w) => write!(f, "{w} is in use by a registered ops or trampoline"),
            FtraceError::NothingToRemove(w) => {
                write!(f, "'{w}' removes nothing: not in the ops' filter (an ops without a filter traces everything; use set_notrace)")
            }
        }
    }
}

/// Which functions an ops wants, as configured (applied when registered).
#[derive(Clone, Debug, Default)]
pub(crate) struct OpsConfig {
    /// `None`: every traceable function.
    pub filter: Option<SiteSet>,
    pub notrace: SiteSet,
}

/// A tracing client: a callback and the set of functions it wants.
///
/// Ops are registered by `&'static` reference; a heap ops may be freed once
/// `unregister_ftrace_function` has returned (no CPU is running its callback any more).
///
/// A site's ops literal points at an `FtraceOps`; `ftrace_caller` calls its first field.
#[repr(C)]
pub struct FtraceOps {
    /// What `ftrace_caller` calls when this ops alone owns a site (argument-only frame): the
    /// callback itself, the recursion-guarding assist function (without a filter lookup: the
    /// literal already says the ops wants the site), or nothing for ops that need full registers
    /// (their sites go through `ftrace_regs_caller`).
    pub(crate) call_fast: FtraceFunc,
    pub(crate) func: FtraceFunc,
    pub(crate) flags: OpsFlags,
    /// Free for the owner's use (Linux's `ops->private`).
    pub private: AtomicUsize,
    pub(crate) config: spin::Mutex<Option<OpsConfig>>,
    pub(crate) registered: AtomicBool,
    /// Published set of site indices this ops wants (null when unregistered); read by the
    /// hot path without locks, replaced under the core lock.
    pub(crate) wants: AtomicPtr<SiteSet>,
    /// Direct trampoline of a direct ops (0 otherwise).
    pub(crate) direct: AtomicU64,
    /// For a `LEGACY_ABI` direct ops: the adapter in front of the trampoline (0 otherwise).
    pub(crate) thunk: AtomicU64,
    /// Set while `modify_ftrace_direct` retargets the ops: its sites go through
    /// `ftrace_regs_caller` instead of calling a trampoline straight.
    pub(crate) modifying: AtomicBool,
}

impl FtraceOps {
    /// A new, unregistered ops with no filter (wants every traceable function).
    pub const fn new(func: FtraceFunc, flags: OpsFlags) -> Self {
        let call_fast: FtraceFunc = if flags.intersects(OpsFlags::SAVE_REGS.union(OpsFlags::DIRECT)) {
            super::core::ftrace_ops_skip
        } else if flags.contains(OpsFlags::RECURSION) {
            super::core::ftrace_ops_assist_site
        } else {
            func
        };
        FtraceOps {
            call_fast,
            func,
            flags,
            private: AtomicUsize::new(0),
            config: spin::Mutex::new(None),
            registered: AtomicBool::new(false),
            wants: AtomicPtr::new(core::ptr::null_mut()),
            direct: AtomicU64::new(0),
            thunk: AtomicU64::new(0),
            modifying: AtomicBool::new(false),
        }
    }

    /// A new direct-call ops, to be given functions with `ftrace_set_filter*` and then a
    /// trampoline with `register_ftrace_direct`. `extra` may be `OpsFlags::LEGACY_ABI`.
    pub const fn new_direct(extra: OpsFlags) -> Self {
        FtraceOps::new(
            super::direct::call_direct_funcs,
            OpsFlags::DIRECT.union(OpsFlags::SAVE_REGS).union(extra),
        )
    }

    /// Allocates an ops on the heap (freed with [`FtraceOps::free`] after unregistering).
    pub fn new_boxed(func: FtraceFunc, flags: OpsFlags) -> &'static FtraceOps {
        Box::leak(Box::new(FtraceOps::new(func, flags)))
    }

    /// Frees an ops made by [`FtraceOps::new_boxed`].
    ///
    /// # Safety
    /// The ops must come from `new_boxed`, be unregistered, and have no other live reference.
    pub unsafe fn free(ops: &'static FtraceOps) -> Result<(), FtraceError> {
        super::core::ftrace_free_filter(ops)?;
        // SAFETY: per the contract the ops was leaked from a Box and nothing else refers to it;
        // unregistering already waited until no CPU runs its callback.
        drop(unsafe { Box::from_raw(ops as *const FtraceOps as *mut FtraceOps) });
        Ok(())
    }

    pub fn flags(&self) -> OpsFlags {
        self.flags
    }

    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Whether the published set contains site `index` (hot path).
    #[inline(always)]
    pub(crate) fn wants_index(&self, index: usize) -> bool {
        let p = self.wants.load(Ordering::Acquire);
        // SAFETY: a non-null `wants` points to a SiteSet owned by the core, freed only after
        // every CPU has passed a synchronisation point following its replacement.
        !p.is_null() && unsafe { (*p).contains(index) }
    }
}

/// Registers seen by a callback: the frame pushed by `ftrace_caller` (arguments, fp, parent,
/// resume address) or by `ftrace_regs_caller` (all registers).
#[repr(transparent)]
pub struct FtraceRegs {
    regs: PtRegs,
}

impl FtraceRegs {
    /// Argument register `a<n>` (n < 8).
    #[inline(always)]
    pub fn arg(&self, n: usize) -> u64 {
        self.regs.arg(n)
    }
    /// Changes argument `a<n>` as the traced function will see it.
    #[inline(always)]
    pub fn set_arg(&mut self, n: usize, v: u64) {
        self.regs.set_arg(n, v)
    }
    /// The traced function's return address (in its caller).
    #[inline(always)]
    pub fn parent_ip(&self) -> u64 {
        self.regs.regs[1]
    }
    /// Where execution resumes after the callbacks: the traced function's body (`ip + 8`).
    #[inline(always)]
    pub fn resume_address(&self) -> u64 {
        self.regs.era
    }
    /// Resumes somewhere else instead of the traced function's body, e.g. the entry of a
    /// replacement function with the same signature (it then returns to the parent).
    #[inline(always)]
    pub fn set_resume_address(&mut self, addr: u64) {
        self.regs.era = addr;
    }
    /// The traced function's stack pointer at entry (the frame sits right below it).
    #[inline(always)]
    pub fn stack_pointer(&self) -> u64 {
        self as *const FtraceRegs as u64 + arch::frame::PT_SIZE as u64
    }
    /// The frame pointer at entry (the parent's), when the full frame was saved. (`ftrace_caller`
    /// leaves fp in its register: callbacks preserve it, so it need not be saved there.)
    #[inline(always)]
    pub fn frame_pointer(&self) -> Option<u64> {
        self.full().map(|r| r.regs[22])
    }
    /// Whether every register was saved (the site went through `ftrace_regs_caller`).
    #[inline(always)]
    pub fn has_full_regs(&self) -> bool {
        self.regs.regs[0] == arch::ftrace::FULL_REGS_MARK
    }
    /// Marks the frame as argument-only (done before callbacks of `ftrace_caller`'s list
    /// function run, since that frame's `$r0` slot is not written by the trampoline).
    #[inline(always)]
    pub(crate) fn clear_full_mark(&mut self) {
        self.regs.regs[0] = 0;
    }
    /// All registers, when the site went through `ftrace_regs_caller`.
    #[inline(always)]
    pub fn full(&self) -> Option<&PtRegs> {
        self.has_full_regs().then_some(&self.regs)
    }
    /// All registers, writable, when the site went through `ftrace_regs_caller`. What
    /// `ftrace_common_return` restores from it: `a0`-`a7`, `fp`, `ra` (the parent), `era` (where
    /// execution resumes) and the direct-call slot `t1`; the other registers are read-only views.
    #[inline(always)]
    pub fn full_mut(&mut self) -> Option<&mut PtRegs> {
        self.has_full_regs().then_some(&mut self.regs)
    }
    /// The frame as [`PtRegs`] for a callback that reads and writes no registers but `a0`-`a7`,
    /// `ra` (the parent), `sp`, `fp` and `era` (the resume address), whichever trampoline pushed
    /// it: `sp` and `fp` are filled in (`ftrace_caller` saves neither), the other registers'
    /// slots of an argument frame hold unspecified values. What `ftrace_common_return` or
    /// `ftrace_caller` restores from it is as for [`full_mut`](Self::full_mut).
    ///
    /// # Safety
    /// Called by an ops callback while it runs on this frame (see
    /// [`arch::ftrace::traced_entry_fp`]).
    #[inline(always)]
    pub unsafe fn argument_regs_mut(&mut self) -> &mut PtRegs {
        let sp = self.stack_pointer();
        // SAFETY: the caller runs in the callback chain of the trampoline that pushed this frame.
        let fp = unsafe { arch::ftrace::traced_entry_fp(&self.regs) };
        self.regs.regs[3] = sp;
        self.regs.regs[22] = fp;
        &mut self.regs
    }
    /// The slot holding the return address the traced function will return to (its parent);
    /// the graph tracer replaces it with `return_to_handler`.
    #[inline(always)]
    pub(crate) fn parent_slot(&mut self) -> &mut u64 {
        &mut self.regs.regs[1]
    }
    /// Sends control on to a direct trampoline after the callbacks (the `t1` slot).
    #[inline(always)]
    pub fn set_direct_call(&mut self, tramp: u64) {
        self.regs.regs[13] = tramp;
    }
    /// The pending direct trampoline (0 if none).
    #[inline(always)]
    pub fn direct_call(&self) -> u64 {
        self.regs.regs[13]
    }
}

const _: () = assert!(core::mem::offset_of!(FtraceOps, call_fast) == arch::ftrace::SITE_OPS_CALL_OFFSET);
