//! The generic ftrace core: registered ops, the state of every site, and the ordered updates
//! that move the text from one configuration to the next.
//!
//! All policy lives here; the arch layer only rewrites single words (`arch::ftrace`).
//!
//! An update goes through fixed steps, each followed by a synchronisation of all CPUs, so that a
//! call in flight always finds a valid target (the order of Linux's `ftrace_modify_all_code`):
//! 1. `ftrace_call` is pointed at the list function, which checks every ops' filter itself;
//! 2. the new ops list and the new per-ops site sets are published;
//! 3. the sites are patched (`nop` ↔ `bl caller` ↔ `bl regs_caller` ↔ `bl trampoline`);
//! 4. the ops pointer and then `ftrace_call` are set for the final configuration: the stub (no
//!    ops), the single ops' callback (straight, or through the recursion-guarding assist function),
//!    or the list function;
//! 5. what the old configuration used (site sets, lists) is freed.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsConfig, OpsFlags};
use super::recursion;
use super::sites::{self, Site, SiteSet};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

bitflags::bitflags! {
    /// State of one site.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct SiteFlags: u16 {
        /// The call slot holds a `bl`.
        const ENABLED = 1 << 0;
        /// ... to `ftrace_regs_caller`.
        const REGS = 1 << 1;
        /// ... straight to a direct trampoline.
        const DIRECT = 1 << 2;
        /// Patching failed once; the site is never touched again.
        const FAILED = 1 << 3;
        /// Never traced (see `sites::NOTRACE_POLICY`).
        const NOTRACE = 1 << 4;
        /// A module site whose module is being unloaded: no ops may want it any more.
        const GOING = 1 << 5;
        /// A vacant slot of the module part of the table (no site).
        const ABSENT = 1 << 6;
        /// The call slot was changed at least once since boot (tracefs' `touched_functions`).
        const TOUCHED = 1 << 7;
    }
}

/// What the core keeps per site (under the core lock), 16 bytes: the ops literal's value, the
/// call slot's target as an offset from the site, the flags, and how many ops want the site.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct State {
    /// Current value of the site's ops literal.
    pub ops: u64,
    /// Current target of the call slot, in instructions from the site's entry (0 = `nop`; every
    /// target is kernel or module-area text, within 8 GiB either way, see [`State::offset`]).
    target: i32,
    pub flags: SiteFlags,
    /// Registered ops that want the site (at most `u16::MAX` are counted).
    refs: u16,
}

impl State {
    /// The offset [`State`] keeps for target `t` of the site at `ip` (None: not representable).
    #[inline(always)]
    fn offset(ip: u64, t: u64) -> Option<i32> {
        if t == 0 {
            return Some(0);
        }
        let d = t.wrapping_sub(ip) as i64;
        if d & 3 != 0 || d == 0 {
            return None;
        }
        i32::try_from(d >> 2).ok()
    }
    /// The call slot's target (0 = `nop`) of the site at `ip`.
    #[inline(always)]
    fn target(&self, ip: u64) -> u64 {
        if self.target == 0 { 0 } else { ip.wrapping_add_signed(self.target as i64 * 4) }
    }
    fn refs(&self) -> u32 {
        self.refs as u32
    }
    fn set_refs(&mut self, n: u32) {
        self.refs = n.min(u16::MAX as u32) as u16;
    }
}

/// The state of a site for inspection and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteState {
    pub flags: SiteFlags,
    /// Registered ops that want the site.
    pub refs: u32,
    /// Current target of the call slot (0 = `nop`).
    pub target: u64,
    /// Current value of the site's ops literal.
    pub ops: u64,
    /// The trampoline of the direct ops attached to the function (0: none), whichever route
    /// reaches it: called straight (`DIRECT`) or from `ftrace_regs_caller` beside other ops.
    pub direct: u64,
}

/// A snapshot of one site for inspection and tests.
#[derive(Clone, Copy, Debug)]
pub struct SiteInfo {
    pub site: Site,
    /// The module of the site (`""` for the kernel).
    pub module: &'static str,
    pub state: SiteState,
}

pub(crate) struct Core {
    pub state: Vec<State>,
    pub ops: Vec<&'static FtraceOps>,
    /// Every ops that ever got a filter or notrace list (registered or not), so that a module's
    /// site indices can be dropped from all of them when it unloads.
    pub configured: Vec<&'static FtraceOps>,
    /// Current target of the `bl` at `ftrace_call`.
    pub call_target: u64,
    /// The argument-only caller sites use: `ftrace_caller`, or `ftrace_caller_smp` once other
    /// CPUs run (it counts calls in flight for the quiescence wait).
    pub fast_caller: u64,
    pub init_ticks: u64,
    /// Guest instructions boot-time init took (exact, under `qemu -icount shift=0` only).
    pub init_insns: Option<u64>,
    /// Heap bytes boot-time init allocated (site table and site states).
    pub init_bytes: usize,
    /// Every site list some literal may still point to (freed once unreferenced and quiet).
    pub lists: Vec<*mut SiteList>,
}

// SAFETY: the raw pointers in `Core` are owned by it (site lists from `Box::into_raw`) and only
// touched under the core lock.
unsafe impl Send for Core {}

pub(crate) static CORE: spin::Mutex<Option<Core>> = spin::Mutex::new(None);
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Makes every CPU see earlier text and data changes before the caller goes on (a cross-call
/// that runs `ibar 0` on each).
#[inline]
pub(crate) fn sync_all_cpus() {
    crate::smp::sync_all_cpus();
}

/// Makes every CPU execute the new words at `patched`: synchronise, store each word once more
/// (see `arch::patch::recommit_insn`), synchronise again.
pub(crate) fn publish_text(patched: &[u64]) {
    sync_all_cpus();
    if crate::smp::online() > 1 && !patched.is_empty() {
        for &a in patched {
            let _ = arch::patch::recommit_insn(a);
        }
        sync_all_cpus();
    }
}

/// Reports a site that could not be patched, once, in the manner of Linux's `ftrace_bug`.
fn ftrace_bug(site: &Site, what: &str, err: &arch::ftrace::FtraceArchError) {
    let w0 = arch::patch::read_insn(site.ip).unwrap_or(0);
    let w1 = arch::patch::read_insn(site.ip + 4).unwrap_or(0);
    log::error!(
        "ftrace bug: {what} failed at {} ({:#x}): {err}; site words {w0:#010x} {w1:#010x}; the site is disabled for good",
        site.name,
        site.ip
    );
}

/// Boot-time init: writes `move t0, ra` into every site. Returns (sites, notrace, failed).
pub fn init(entries: impl Iterator<Item = u64>) -> (usize, usize, usize) {
    let t0 = arch::time::ticks();
    let heap0 = crate::heap::used();
    let (init_insns, (state, notrace, failed)) = crate::icount::instructions(|| {
        let all = sites::build(entries);
        let mut state = alloc::vec![State::default(); all.len()];
        let (mut notrace, mut failed) = (0, 0);
        for (site, st) in all.iter().zip(state.iter_mut()) {
            if sites::notrace_by_policy(site.name) {
                st.flags |= SiteFlags::NOTRACE;
                notrace += 1;
            }
            st.ops = &NOP_OPS as *const FtraceOps as u64;
            if let Err(e) = arch::ftrace::init_site(site.ip, st.ops) {
                ftrace_bug(site, "init", &e);
                st.flags |= SiteFlags::FAILED;
                failed += 1;
            }
        }
        (state, notrace, failed)
    });
    let init_bytes = crate::heap::used().saturating_sub(heap0);
    let init_ticks = arch::time::ticks() - t0;
    let fast_caller = arch::ftrace::addr::caller();
    let n = state.len();
    *CORE.lock() = Some(Core {
        state,
        ops: Vec::new(),
        configured: Vec::new(),
        call_target: arch::ftrace::addr::stub(),
        fast_caller,
        init_ticks,
        init_insns,
        init_bytes,
        lists: Vec::new(),
    });
    (n, notrace, failed)
}

/// Counter ticks boot-time init took.
pub fn init_ticks() -> u64 {
    CORE.lock().as_ref().map_or(0, |c| c.init_ticks)
}

/// What boot-time init cost: guest instructions (exact, only under `qemu -icount shift=0`) and
/// heap bytes it allocated for the site table and the sites' state (every per-site allocation
/// of the core; the names are not on the heap).
pub fn init_cost() -> (Option<u64>, usize) {
    CORE.lock().as_ref().map_or((None, 0), |c| (c.init_insns, c.init_bytes))
}

pub(crate) fn with_core<R>(f: impl FnOnce(&mut Core) -> Result<R, FtraceError>) -> Result<R, FtraceError> {
    let mut g = CORE.lock();
    let core = g.as_mut().ok_or(FtraceError::NotInitialised)?;
    f(core)
}

/// Whether a site can be traced at all.
fn traceable(st: &State) -> bool {
    !st.flags.intersects(SiteFlags::NOTRACE | SiteFlags::FAILED | SiteFlags::GOING | SiteFlags::ABSENT)
}

/// Whether `update` must look at the site: a traceable one, or a going one still patched.
fn needs_update(st: &State, nop_ops: u64) -> bool {
    traceable(st) || (st.flags.contains(SiteFlags::GOING) && (st.target != 0 || st.ops != nop_ops))
}

/// The address the `bl` at site `ip` branches to for the logical target `target`: the target
/// itself when in reach, else the far-jump stub of the module the site belongs to.
#[inline]
fn route(ip: u64, target: u64) -> u64 {
    if arch::insn::bl_reachable(ip + 4, target) {
        target
    } else {
        super::stubs::stub_for(ip, target).unwrap_or(target)
    }
}


/// The word at the call slot of site `ip` calling `target` (None = `nop`), routed like
/// [`route`] but encoding the branch once when it is in reach.
#[inline(always)]
fn site_word(ip: u64, target: Option<u64>) -> Result<u32, arch::insn::InsnError> {
    match target {
        None => Ok(arch::insn::NOP),
        Some(t) => arch::insn::encode_bl(ip + 4, t).or_else(|_| arch::insn::encode_bl(ip + 4, route(ip, t))),
    }
}

/// [`modify_routed`] for a site of the table that `update` may touch (it passed `init_site` and
/// is not failed; a going module site stays mapped until it is unpatched and the module freed).
#[unsafe(link_section = ".text.patcher")]
fn modify_site(site: &Site, have: Option<u64>, want: Option<u64>) -> Result<(), arch::ftrace::FtraceArchError> {
    let (old, new) = (site_word(site.ip, have)?, site_word(site.ip, want)?);
    // SAFETY: see above: the call slot at `ip + 4` is valid, mapped text.
    unsafe { arch::patch::patch_insn_unchecked(site.ip + 4, old, new)? };
    // Not `trace!`: its argument list could be built before the jump label; here the patch loop
    // pays the `nop` and nothing else.
    if arch::static_branch_unlikely!(crate::tracepoint::points::SITE_UPDATE) {
        fire_site_update(site.ip, old, new);
    }
    Ok(())
}

/// Fires `ftrace:site_update` (out of line: see `modify_site`).
#[cold]
#[inline(never)]
fn fire_site_update(ip: u64, old: u32, new: u32) {
    crate::tracepoint::points::SITE_UPDATE.fire(&[ip.into(), old.into(), new.into()]);
}

/// The sites an ops wants under `cfg`.
pub(crate) fn compute_wants(core: &Core, cfg: &OpsConfig) -> SiteSet {
    let mut bits = Vec::new();
    wants_into(&traceable_mask(core), cfg, &mut bits);
    SiteSet::from_bits(bits)
}

/// The traceable sites as a bit set (word `w` covers sites `64 * w ..`).
fn traceable_mask(core: &Core) -> Vec<u64> {
    core.state
        .chunks(64)
        .map(|chunk| chunk.iter().enumerate().fold(0u64, |w, (b, st)| w | ((traceable(st) as u64) << b)))
        .collect()
}

/// The words of the set an ops wants under `cfg`, given the traceable sites, into `bits`
/// (cleared first): word by word, so the cost is per 64 sites, not per site.
fn wants_into(traceable: &[u64], cfg: &OpsConfig, bits: &mut Vec<u64>) {
    bits.clear();
    bits.extend(
        traceable
            .iter()
            .enumerate()
            .map(|(w, &t)| t & cfg.filter.as_ref().map_or(u64::MAX, |f| f.word(w)) & !cfg.notrace.word(w)),
    );
}

/// Applies the words of a `set_ftrace_filter`-style line to `set`. `!word` removes functions;
/// it is refused when `can_remove` is false (an ops without a filter already traces everything,
/// and removing from "everything" is what `ftrace_set_notrace` is for).
fn apply_words(core: &Core, set: &mut SiteSet, text: &str, can_remove: bool) -> Result<(), FtraceError> {
    let all = sites::all();
    let mut any = false;
    for word in crate::glob::filter_tokens(text) {
        any = true;
        let (neg, pat) = crate::glob::parse_filter_token(word).map_err(|_| FtraceError::BadFilter(word.to_string()))?;
        if neg && !can_remove {
            return Err(FtraceError::NothingToRemove(word.to_string()));
        }
        let (pat, module) = crate::glob::split_module(pat);
        if module == Some("") {
            return Err(FtraceError::BadFilter(word.to_string()));
        }
        let (mut hits, mut notrace_hits) = (0usize, 0usize);
        for (i, site) in all.iter().enumerate() {
            if site.ip == 0 || module.is_some_and(|m| m != sites::module_of(i)) || !crate::glob::name_matches(pat, site.name) {
                continue;
            }
            if !traceable(&core.state[i]) {
                notrace_hits += 1;
                continue;
            }
            if neg && !set.contains(i) {
                continue;
            }
            hits += 1;
            if neg {
                set.remove(i);
            } else {
                set.insert(i);
            }
        }
        if hits == 0 {
            return Err(if neg {
                FtraceError::NothingToRemove(word.to_string())
            } else if notrace_hits > 0 {
                FtraceError::NotTraceable(word.to_string())
            } else {
                FtraceError::NoMatch(word.to_string())
            });
        }
    }
    if any { Ok(()) } else { Err(FtraceError::BadFilter(text.to_string())) }
}

/// Which list an edit goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Filter,
    Notrace,
}

fn edit_config(
    ops: &'static FtraceOps,
    which: Which,
    edit: impl FnOnce(&Core, &mut SiteSet, bool) -> Result<(), FtraceError>,
    reset: bool,
) -> Result<(), FtraceError> {
    with_core(|core| {
        let mut cfg = ops.config.lock().clone().unwrap_or_default();
        // Removing from a filter needs a filter; an ops without one wants everything.
        let can_remove = which == Which::Notrace || (cfg.filter.is_some() && !reset);
        let list = match which {
            Which::Filter => cfg.filter.get_or_insert_with(SiteSet::new),
            Which::Notrace => &mut cfg.notrace,
        };
        let mut edited = if reset { SiteSet::new() } else { list.clone() };
        edit(core, &mut edited, can_remove)?;
        *list = edited;
        *ops.config.lock() = Some(cfg);
        if !core.configured.iter().any(|o| core::ptr::eq(*o, ops)) {
            core.configured.push(ops);
        }
        if ops.is_registered() {
            let list = core.ops.clone();
            update(core, list);
        }
        Ok(())
    })
}

/// Adds (or with `!word` removes) the functions named by the globs in `text` to the ops'
/// filter, like writing to Linux's `set_ftrace_filter`. `reset` starts from an empty filter.
/// An ops with no filter traces every function; once it has a filter, it traces exactly the
/// functions in it (an emptied filter traces nothing, unlike Linux, where it means "all").
pub fn ftrace_set_filter(ops: &'static FtraceOps, text: &str, reset: bool) -> Result<(), FtraceError> {
    edit_config(ops, Which::Filter, |core, set, can_remove| apply_words(core, set, text, can_remove), reset)
}

/// Adds functions the ops must never trace, like Linux's `set_ftrace_notrace`.
pub fn ftrace_set_notrace(ops: &'static FtraceOps, text: &str, reset: bool) -> Result<(), FtraceError> {
    edit_config(ops, Which::Notrace, |core, set, _| apply_words(core, set, text, true), reset)
}

/// Adds (or removes) one function by its entry address.
pub fn ftrace_set_filter_ip(ops: &'static FtraceOps, ip: u64, remove: bool, reset: bool) -> Result<(), FtraceError> {
    let i = sites::index_of(ip).ok_or(FtraceError::NotASite(ip))?;
    edit_config(
        ops,
        Which::Filter,
        |core, set, can_remove| {
            let name = sites::all()[i].name;
            if !traceable(&core.state[i]) {
                return Err(FtraceError::NotTraceable(name.to_string()));
            }
            if remove {
                if !can_remove || !set.contains(i) {
                    return Err(FtraceError::NothingToRemove(name.to_string()));
                }
                set.remove(i);
            } else {
                set.insert(i);
            }
            Ok(())
        },
        reset,
    )
}

/// Replaces the ops' filter (`None`: every function) and notrace list with ready-made site
/// sets, in one update (what tracefs uses after resolving a whole `set_ftrace_filter` write).
pub fn ftrace_set_filter_sites(ops: &'static FtraceOps, filter: Option<SiteSet>, notrace: SiteSet) -> Result<(), FtraceError> {
    with_core(|core| {
        *ops.config.lock() = Some(OpsConfig { filter, notrace });
        if ops.is_registered() {
            let list = core.ops.clone();
            update(core, list);
        }
        Ok(())
    })
}

/// Whether site `index` can be traced at all (not notrace by policy, patching never failed).
pub fn site_traceable(index: usize) -> bool {
    CORE.lock().as_ref().is_some_and(|c| c.state.get(index).is_some_and(traceable))
}

/// Drops the ops' filter and notrace lists (it then wants every function).
pub fn ftrace_reset_filters(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    with_core(|core| {
        *ops.config.lock() = None;
        if ops.is_registered() {
            let list = core.ops.clone();
            update(core, list);
        }
        Ok(())
    })
}

/// Starts calling `ops` for the functions it wants.
pub fn register_ftrace_function(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    if ops.flags.contains(OpsFlags::DIRECT) {
        return Err(FtraceError::WrongKind);
    }
    register_locked(ops)
}

pub(crate) fn register_locked(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    with_core(|core| {
        if core.ops.iter().any(|o| core::ptr::eq(*o, ops)) {
            return Err(FtraceError::AlreadyRegistered);
        }
        let mut list = core.ops.clone();
        list.push(ops);
        update(core, list);
        Ok(())
    })
}

/// Stops calling `ops`. When this returns no CPU is running its callback, so it may be freed.
pub fn unregister_ftrace_function(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    if ops.flags.contains(OpsFlags::DIRECT) {
        return Err(FtraceError::WrongKind);
    }
    unregister_locked(ops)
}

pub(crate) fn unregister_locked(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    with_core(|core| {
        if !core.ops.iter().any(|o| core::ptr::eq(*o, ops)) {
            return Err(FtraceError::NotRegistered);
        }
        let list: Vec<_> = core.ops.iter().copied().filter(|o| !core::ptr::eq(*o, ops)).collect();
        update(core, list);
        Ok(())
    })
}

/// Writes a site's ops literal; a failure marks the site failed. Returns whether it worked.
fn set_literal(site: &Site, st: &mut State, ops: u64) -> bool {
    if st.ops == ops {
        return true;
    }
    // SAFETY: only called for sites `update` may touch, which passed `init_site` and stay mapped
    // (see `modify_site`).
    unsafe { arch::ftrace::set_site_ops_unchecked(site.ip, ops) };
    st.ops = ops;
    true
}

/// What a site's literal should name.
#[derive(Clone, Copy)]
enum LiteralWant {
    /// `NOP_OPS` (the site does not go through either caller).
    Nop,
    /// The one ops that wants the site.
    Single(&'static FtraceOps),
    /// A site list of exactly the users (in registration order).
    List,
}

/// Who wants one site, as far as routing needs to know: how many ops, the first of them, and
/// whether any needs the full frame.
#[derive(Clone, Copy)]
struct Wanted {
    count: u32,
    first: Option<&'static FtraceOps>,
    regs: bool,
}

/// The ops of `sets` (each with its published site set) that want site `i`, summarised; with
/// `users`, also listed (only needed when several want it).
#[inline(always)]
fn wanted(sets: &[(&'static FtraceOps, &SiteSet)], i: usize, mut users: Option<&mut Vec<&'static FtraceOps>>) -> Wanted {
    let mut w = Wanted { count: 0, first: None, regs: false };
    if let Some(u) = users.as_deref_mut() {
        u.clear();
    }
    for &(o, set) in sets {
        if set.contains(i) {
            w.count += 1;
            w.first.get_or_insert(o);
            w.regs |= o.flags.intersects(OpsFlags::SAVE_REGS.union(OpsFlags::DIRECT));
            if let Some(u) = users.as_deref_mut() {
                u.push(o);
            }
        }
    }
    w
}

/// The published site set of every ops in `ops` (an ops without one wants nothing).
fn published_sets(ops: &[&'static FtraceOps]) -> Vec<(&'static FtraceOps, &'static SiteSet)> {
    static EMPTY: SiteSet = SiteSet::empty();
    ops.iter()
        .map(|&o| {
            let p = o.wants.load(Ordering::Acquire);
            // SAFETY: a published set stays alive until an update replaces and later frees it;
            // callers hold the core lock, under which updates run, for as long as they use it.
            (o, if p.is_null() { &EMPTY } else { unsafe { &*p } })
        })
        .collect()
}

/// What site `i` (entry `ip`) should look like: its call-slot target (None = `nop`) and what
/// its literal names.
#[inline(always)]
fn desired_of(w: Wanted, ip: u64, caller: u64) -> (Option<u64>, LiteralWant) {
    let want = match w.first {
        None => None,
        Some(only) if w.count == 1 && only.flags.contains(OpsFlags::DIRECT) && !only.modifying.load(Ordering::Acquire) => {
            let tramp = super::direct::site_entry(only);
            if arch::insn::bl_reachable(ip + 4, tramp) { Some(tramp) } else { Some(arch::ftrace::addr::regs_caller()) }
        }
        Some(_) if w.regs => Some(arch::ftrace::addr::regs_caller()),
        Some(_) => Some(caller),
    };
    let through_callers = want == Some(caller) || want == Some(arch::ftrace::addr::regs_caller());
    let literal = match w.first {
        _ if !through_callers => LiteralWant::Nop,
        Some(only) if w.count == 1 => LiteralWant::Single(only),
        _ => LiteralWant::List,
    };
    (want, literal)
}

/// What site `i` (entry `ip`) should look like with `ops` registered, and who wants it (filled
/// into `users`).
fn desired(
    ops: &[&'static FtraceOps],
    i: usize,
    ip: u64,
    caller: u64,
    users: &mut Vec<&'static FtraceOps>,
) -> (Option<u64>, LiteralWant) {
    let sets = published_sets(ops);
    desired_of(wanted(&sets, i, Some(users)), ip, caller)
}

/// Whether two ops lists name the same ops in the same order.
fn same_ops(a: &[&'static FtraceOps], b: &[&'static FtraceOps]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| core::ptr::eq(*x, *y))
}

/// Whether the literal value `lit` is what `want` asks for with these `users`.
fn literal_matches(lit: u64, want: LiteralWant, users: &[&'static FtraceOps]) -> bool {
    match want {
        LiteralWant::Nop => lit == &NOP_OPS as *const FtraceOps as u64,
        LiteralWant::Single(o) => lit == o as *const FtraceOps as u64,
        // SAFETY: a literal whose first word is the list function is a live site list (lists
        // are freed only once no literal names them).
        LiteralWant::List => SiteList::is_list(lit) && same_ops(unsafe { (*(lit as *const SiteList)).ops() }, users),
    }
}

fn set_call_target(core: &mut Core, target: u64) {
    if core.call_target == target {
        return;
    }
    match arch::ftrace::update_ftrace_func(core.call_target, target) {
        Ok(()) => core.call_target = target,
        Err(e) => log::error!("ftrace bug: cannot retarget ftrace_call: {e}"),
    }
    publish_text(&[arch::ftrace::addr::ftrace_call()]);
}

/// Moves text and published state to the configuration where exactly `new_ops` are registered.
#[unsafe(link_section = ".text.patcher")]
pub(crate) fn update(core: &mut Core, new_ops: Vec<&'static FtraceOps>) {
    let list_func = ftrace_ops_list_func as *const () as u64;
    // 1. Route every call through the list function while anything changes.
    if core.call_target != arch::ftrace::addr::stub() {
        set_call_target(core, list_func);
    }
    // 2. Publish the new site sets and ops list.
    let mut retired_sets: Vec<*mut SiteSet> = Vec::new();
    for ops in core.ops.iter().filter(|o| !new_ops.iter().any(|n| core::ptr::eq(*n, **o))) {
        ops.registered.store(false, Ordering::Release);
        retired_sets.push(ops.wants.swap(core::ptr::null_mut(), Ordering::AcqRel));
    }
    // An ops whose set comes out as published keeps it (nothing allocated, nothing to retire):
    // registering one ops among many costs a few words per other ops, not a new set each.
    let traceable = if new_ops.is_empty() { Vec::new() } else { traceable_mask(core) };
    let mut bits: Vec<u64> = Vec::new();
    let no_config = OpsConfig::default();
    for ops in &new_ops {
        wants_into(&traceable, ops.config.lock().as_ref().unwrap_or(&no_config), &mut bits);
        let cur = ops.wants.load(Ordering::Acquire);
        // SAFETY: a published set stays alive until an update (which runs under the core lock,
        // held here) replaces it.
        if !cur.is_null() && unsafe { (*cur).words() } == bits.as_slice() {
            ops.registered.store(true, Ordering::Release);
            continue;
        }
        let set = Box::into_raw(Box::new(SiteSet::from_bits(bits.clone())));
        retired_sets.push(ops.wants.swap(set, Ordering::AcqRel));
        ops.registered.store(true, Ordering::Release);
    }
    core.ops = new_ops;
    sync_all_cpus();
    // 3. Patch the sites. A site that is to go through ftrace_caller or ftrace_regs_caller gets
    //    its literal (the one ops that wants it, or a site list of all of them) before its call
    //    slot is pointed there, and a site leaves both callers before its literal changes, so
    //    the callers only ever find the users of the site before or after the update.
    let all = sites::all();
    let mut users: Vec<&'static FtraceOps> = Vec::new();
    let mut patched: Vec<u64> = Vec::new();
    let caller = core.fast_caller;
    let regs_caller = arch::ftrace::addr::regs_caller();
    let nop_ops = &NOP_OPS as *const FtraceOps as u64;
    // Only other CPUs need the patched words stored again (`publish_text`).
    let smp = crate::smp::online() > 1;
    let sets = published_sets(&core.ops);
    // Per 64 sites, the ops that want any of them and the union of their words: a site no ops
    // wants is settled without looking at any ops, and the others only look at the ops wanting
    // something in their word (so the cost grows with the users of a site, not with every ops
    // registered).
    let mut active: Vec<(&'static FtraceOps, &SiteSet)> = Vec::new();
    let (mut active_word, mut any) = (usize::MAX, 0u64);
    let Core { state, lists, .. } = core;
    for (i, site) in all.iter().enumerate() {
        let st = &mut state[i];
        if !needs_update(st, nop_ops) {
            continue;
        }
        if i / 64 != active_word {
            active_word = i / 64;
            active.clear();
            active.extend(sets.iter().copied().filter(|(_, set)| set.word(active_word) != 0));
            any = active.iter().fold(0, |a, (_, set)| a | set.word(active_word));
        }
        let w = if any & (1 << (i % 64)) == 0 { Wanted { count: 0, first: None, regs: false } } else { wanted(&active, i, None) };
        if w.count > 1 {
            wanted(&active, i, Some(&mut users));
        }
        let (want, lit_want) = desired_of(w, site.ip, caller);
        st.set_refs(w.count);
        let have = (st.target != 0).then(|| st.target(site.ip));
        let lit_ok = literal_matches(st.ops, lit_want, &users);
        if want == have && lit_ok {
            continue;
        }
        if want == Some(caller) || want == Some(regs_caller) {
            let lit = match lit_want {
                _ if lit_ok => st.ops,
                LiteralWant::Nop => nop_ops,
                LiteralWant::Single(o) => o as *const FtraceOps as u64,
                LiteralWant::List => SiteList::find_or_make(lists, &users),
            };
            if !set_literal(site, st, lit) || want == have {
                continue;
            }
        } else if want == have {
            // Not through a caller and already patched right: the literal is reset in step 5.
            continue;
        }
        let Some(want_off) = want.map_or(Some(0), |t| State::offset(site.ip, t)) else {
            log::error!("ftrace bug: {} ({:#x}): target {:#x} too far to record; the site is disabled for good", site.name, site.ip, want.unwrap_or(0));
            st.flags |= SiteFlags::FAILED;
            continue;
        };
        match modify_site(site, have, want) {
            Ok(()) => {
                if smp {
                    patched.push(site.ip + 4);
                }
                st.target = want_off;
                st.flags.remove(SiteFlags::ENABLED | SiteFlags::REGS | SiteFlags::DIRECT);
                st.flags |= SiteFlags::TOUCHED;
                if let Some(t) = want {
                    st.flags |= SiteFlags::ENABLED;
                    if t == regs_caller {
                        st.flags |= SiteFlags::REGS;
                    } else if t != caller {
                        st.flags |= SiteFlags::DIRECT;
                    }
                }
            }
            Err(e) => {
                ftrace_bug(site, if want.is_some() { "enable" } else { "disable" }, &e);
                st.flags |= SiteFlags::FAILED;
                continue;
            }
        }
        // A site that left both callers keeps its literal for now: a call that went through the
        // old `bl` may still be about to load it. It is reset in step 5.
    }
    publish_text(&patched);
    // 4. The final function at ftrace_call. A CPU may have loaded the old ops pointer in
    //    ftrace_common and be stopped just before `ftrace_call`; so after publishing the new
    //    pointer, wait until every CPU was seen outside the trampolines before pointing
    //    `ftrace_call` at a function that uses it (the list function and the stub ignore it).
    let (op, target) = match core.ops.as_slice() {
        [] => (core::ptr::null(), arch::ftrace::addr::stub()),
        [only] if only.flags.contains(OpsFlags::RECURSION) => (*only as *const FtraceOps, ftrace_ops_assist_func as *const () as u64),
        [only] => (*only as *const FtraceOps, only.func as *const () as u64),
        _ => (core::ptr::null(), list_func),
    };
    if core.call_target != target {
        set_call_target(core, list_func);
        arch::ftrace::set_function_trace_op(op as *const ());
        sync_all_cpus();
        // If some CPU never leaves its call, stay on the list function (safe with any pointer).
        if op.is_null() || super::quiesce::synchronize_tracing() {
            set_call_target(core, target);
        }
    } else {
        arch::ftrace::set_function_trace_op(op as *const ());
        sync_all_cpus();
    }
    // 5. Reset the literals of sites that left both callers (a CPU that went through an old
    //    `bl` but has not counted itself yet then finds `NOP_OPS`), wait until no CPU is still
    //    inside a call that began before, then free what the old state used: retired site sets
    //    and site lists no literal names any more. (If a CPU never leaves, leak rather than free
    //    under it; unreferenced lists stay tracked and go with a later update.)
    let regs_caller = arch::ftrace::addr::regs_caller();
    let mut named: Vec<*mut SiteList> = Vec::new();
    let mut not_list = nop_ops;
    for (site, st) in all.iter().zip(core.state.iter_mut()) {
        if st.ops != nop_ops && needs_update(st, nop_ops) && {
            let t = st.target(site.ip);
            t != caller && t != regs_caller
        } {
            set_literal(site, st, nop_ops);
        }
        if st.ops != nop_ops && st.ops != not_list && named.last() != Some(&(st.ops as *mut SiteList)) {
            if SiteList::is_list(st.ops) {
                named.push(st.ops as *mut SiteList);
            } else {
                not_list = st.ops;
            }
        }
    }
    arch::cpu::dbar();
    if !super::quiesce::synchronize_tracing() {
        return;
    }
    for p in retired_sets.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: `p` came from `Box::into_raw` above (an earlier update) and was unpublished in
        // step 2; every CPU has synchronised since, so no hot path still reads it.
        drop(unsafe { Box::from_raw(p) });
    }
    named.sort_unstable();
    core.lists.retain(|&l| {
        let keep = named.binary_search(&l).is_ok();
        if !keep {
            // SAFETY: made by `SiteList::find_or_make` (Box::into_raw); no literal names it any
            // more and every CPU left the calls that began before (quiescence above).
            drop(unsafe { Box::from_raw(l) });
        }
        keep
    });
}

/// The ops that want one site, for sites several ops want (or that go through
/// `ftrace_regs_caller` while several ops are registered): what the site's literal points to.
/// `ftrace_caller` calls its first word ([`ftrace_ops_site_list_args`]) like an ops' callback,
/// and the list function of `ftrace_regs_caller` walks it, so neither looks up filters or walks
/// ops that do not want the site. Lists are immutable, shared by every site with the same users,
/// and freed by the update that leaves no literal naming them (after the quiescence wait).
#[repr(C)]
pub struct SiteList {
    /// What `ftrace_caller` calls (the offset of `FtraceOps::call_fast`).
    call: extern "C" fn(ip: u64, parent_ip: u64, list: &SiteList, regs: &mut FtraceRegs),
    /// What the list function of `ftrace_regs_caller` calls (the offset of `FtraceOps::func`).
    call_regs: extern "C" fn(ip: u64, parent_ip: u64, list: &SiteList, regs: &mut FtraceRegs),
    ops: Box<[&'static FtraceOps]>,
}

const _: () = assert!(core::mem::offset_of!(SiteList, call) == arch::ftrace::SITE_OPS_CALL_OFFSET);
const _: () = assert!(core::mem::offset_of!(SiteList, call_regs) == core::mem::offset_of!(FtraceOps, func));
const _: () = assert!(core::mem::offset_of!(FtraceOps, func) == 8);

impl SiteList {
    /// The ops of the list, in registration order.
    #[inline(always)]
    pub fn ops(&self) -> &[&'static FtraceOps] {
        &self.ops
    }

    /// Whether the literal value `lit` (an `FtraceOps` or a `SiteList`) is a site list.
    #[inline(always)]
    pub fn is_list(lit: u64) -> bool {
        // SAFETY: every literal points to a live `FtraceOps` or `SiteList`; both are `repr(C)`
        // with a function pointer as first word.
        lit != 0 && unsafe { *(lit as *const usize) } == ftrace_ops_site_list_args as *const () as usize
    }

    /// A list of exactly `users`: an existing one (lists are immutable) or a new one.
    fn find_or_make(lists: &mut Vec<*mut SiteList>, users: &[&'static FtraceOps]) -> u64 {
        // SAFETY: tracked lists are alive until removed from `lists`.
        if let Some(&l) = lists.iter().find(|&&l| same_ops(unsafe { (*l).ops() }, users)) {
            return l as u64;
        }
        let l = Box::into_raw(Box::new(SiteList { call: ftrace_ops_site_list_args, call_regs: ftrace_ops_site_list_regs, ops: users.into() }));
        lists.push(l);
        l as u64
    }
}

/// What a site literal points to when no single ops owns the site: nothing to call.
pub static NOP_OPS: FtraceOps = FtraceOps::new(ftrace_ops_skip, OpsFlags::empty());
/// A callback that does nothing (what `ftrace_caller` calls for a site whose literal names no
/// usable ops).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_skip(_ip: u64, _parent: u64, _op: &FtraceOps, _regs: &mut FtraceRegs) {}

/// The first word of every [`SiteList`]: what `ftrace_caller` calls for a site several ops want.
/// Calls each ops of the list that can run on an argument frame (not `SAVE_REGS` or direct ops,
/// whose sites go through `ftrace_regs_caller`; one is only met here for a call that began
/// before its site moved there), under one recursion guard for all of them.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_site_list_args(ip: u64, parent_ip: u64, list: &SiteList, regs: &mut FtraceRegs) {
    // This frame's `$r0` slot is not written by ftrace_caller.
    regs.clear_full_mark();
    let Some(held) = recursion::trylock() else { return };
    CALLS.fetch_add(1, Ordering::Relaxed);
    for ops in list.ops().iter() {
        if !ops.flags.intersects(OpsFlags::SAVE_REGS.union(OpsFlags::DIRECT)) {
            (ops.func)(ip, parent_ip, ops, regs);
        }
    }
    recursion::unlock(held);
}

/// The second word of every [`SiteList`]: what [`ftrace_ops_list_func`] calls for a site of
/// `ftrace_regs_caller` that several ops want (full frame: every ops of the list runs).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_site_list_regs(ip: u64, parent_ip: u64, list: &SiteList, regs: &mut FtraceRegs) {
    for ops in list.ops().iter() {
        (ops.func)(ip, parent_ip, ops, regs);
    }
}

/// The `ftrace_call` target when several ops are registered, and during every update (so only
/// for sites of `ftrace_regs_caller`): under one recursion guard, calls the second word of what
/// the site's literal names, which is the callback of the one ops that wants the site
/// ([`FtraceOps::func`]), [`ftrace_ops_site_list_regs`] for a [`SiteList`], or nothing for
/// `NOP_OPS`. (Sites through `ftrace_regs_caller` have such a literal while they are.)
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_list_func(ip: u64, parent_ip: u64, _op: &FtraceOps, regs: &mut FtraceRegs) {
    let Some(held) = recursion::trylock() else { return };
    CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `ip` is the entry of the site that called ftrace_regs_caller (ftrace_common passes
    // ra - 8), so its literal is the aligned word at ip - 8; it names a live ops or site list
    // (see `SiteList`), both `repr(C)` with the full-frame callback as second word.
    unsafe {
        let lit = arch::ftrace::site_literal_unchecked(ip);
        let call = *(lit as *const SiteFunc).add(1);
        call(ip, parent_ip, lit as *const (), regs);
    }
    recursion::unlock(held);
}

/// The type of the first two words of an ops and of a site list, seen from the callers.
type SiteFunc = extern "C" fn(ip: u64, parent_ip: u64, owner: *const (), regs: &mut FtraceRegs);

/// The `ftrace_call` target for a single ops that asked for recursion protection.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_assist_func(ip: u64, parent_ip: u64, op: &FtraceOps, regs: &mut FtraceRegs) {
    let Some(held) = recursion::trylock() else { return };
    CALLS.fetch_add(1, Ordering::Relaxed);
    if let Some(i) = sites::index_of(ip)
        && op.wants_index(i)
        && (!op.flags.contains(OpsFlags::SAVE_REGS) || regs.has_full_regs())
    {
        (op.func)(ip, parent_ip, op, regs);
    }
    recursion::unlock(held);
}

/// What `ftrace_caller` calls for a site owned by one ops that asked for recursion protection
/// (its `call_fast`): the literal already says the ops wants the site, so no filter lookup.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub extern "C" fn ftrace_ops_assist_site(ip: u64, parent_ip: u64, op: &FtraceOps, regs: &mut FtraceRegs) {
    let Some(held) = recursion::trylock() else { return };
    CALLS.fetch_add(1, Ordering::Relaxed);
    (op.func)(ip, parent_ip, op, regs);
    recursion::unlock(held);
}

/// Calls through the list or assist function so far.
pub fn dispatched_calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// A snapshot of the site with entry `ip`.
pub fn site_info(ip: u64) -> Option<SiteInfo> {
    let i = sites::index_of(ip)?;
    let g = CORE.lock();
    let site = sites::all()[i];
    let state = snapshot(g.as_ref()?, i, &site);
    Some(SiteInfo { site, module: sites::module_of(i), state })
}

/// Visits every site with its state.
pub fn for_each_site(mut f: impl FnMut(SiteInfo)) {
    let g = CORE.lock();
    let Some(core) = g.as_ref() else { return };
    let Some(table) = sites::table() else { return };
    for (i, site) in table.sites.iter().enumerate().take(core.state.len()) {
        f(SiteInfo { site: *site, module: table.module_of(i), state: snapshot(core, i, site) });
    }
}

/// The inspectable state of site `i`.
fn snapshot(core: &Core, i: usize, site: &Site) -> SiteState {
    let st = &core.state[i];
    let direct = match st.refs() {
        0 => 0,
        _ => core
            .ops
            .iter()
            .find(|o| o.flags.contains(OpsFlags::DIRECT) && o.wants_index(i))
            .map_or(0, |o| o.direct.load(Ordering::Acquire)),
    };
    SiteState { flags: st.flags, refs: st.refs(), target: st.target(site.ip), ops: st.ops, direct }
}

/// Number of registered ops.
pub fn registered_ops() -> usize {
    CORE.lock().as_ref().map_or(0, |c| c.ops.len())
}

/// The current target of `ftrace_call`.
pub fn call_target() -> u64 {
    CORE.lock().as_ref().map_or(0, |c| c.call_target)
}

/// Test support: puts a failed site back to its disabled words and makes it usable again.
/// `found` is the word currently in the call slot.
pub fn repair_site(ip: u64, found: u32) -> Result<(), FtraceError> {
    with_core(|core| {
        let i = sites::index_of(ip).ok_or(FtraceError::NotASite(ip))?;
        arch::patch::patch_insn(ip + 4, found, arch::insn::NOP).map_err(|_| FtraceError::NotASite(ip))?;
        let st = &mut core.state[i];
        st.flags.remove(SiteFlags::FAILED | SiteFlags::ENABLED | SiteFlags::REGS | SiteFlags::DIRECT);
        st.target = 0;
        st.ops = &NOP_OPS as *const FtraceOps as u64;
        arch::ftrace::set_site_ops(ip, st.ops).map_err(|_| FtraceError::NotASite(ip))?;
        Ok(())
    })
}

/// Checks that the text matches the disabled state everywhere: every usable site is
/// `move t0, ra; nop`, no ops is registered and `ftrace_call` calls the stub.
pub fn check_all_disabled() -> Result<(), alloc::string::String> {
    let g = CORE.lock();
    let Some(core) = g.as_ref() else { return Ok(()) };
    if !core.ops.is_empty() {
        return Err(alloc::format!("{} ops still registered", core.ops.len()));
    }
    if core.call_target != arch::ftrace::addr::stub() {
        return Err("ftrace_call does not call ftrace_stub".into());
    }
    let pc = arch::ftrace::addr::ftrace_call();
    let word = arch::patch::read_insn(pc).unwrap_or(0);
    if arch::insn::decode(pc, word) != (arch::insn::Insn::Bl { target: arch::ftrace::addr::stub() }) {
        return Err(alloc::format!("the word at ftrace_call is {word:#010x}, not bl ftrace_stub"));
    }
    if recursion::any_held() {
        return Err("a recursion bit is still held".into());
    }
    // A heap ops still on the configured list after its user finished was freed (or leaked)
    // without `ftrace_free_filter`: the next module unload would touch freed memory.
    let heap_ops = core.configured.iter().filter(|o| crate::heap::contains(**o as *const FtraceOps as usize)).count();
    if heap_ops != 0 {
        return Err(alloc::format!("{heap_ops} heap-allocated ops still configured (freed without ftrace_free_filter?)"));
    }
    let mut bad = 0;
    let mut first = None;
    for (site, st) in sites::all().iter().zip(core.state.iter()) {
        if st.flags.intersects(SiteFlags::FAILED | SiteFlags::ABSENT) {
            continue;
        }
        let w0 = arch::patch::read_insn(site.ip);
        let w1 = arch::patch::read_insn(site.ip + 4);
        let lit = arch::ftrace::site_ops(site.ip);
        let nop_ops = &NOP_OPS as *const FtraceOps as u64;
        if w0 != Ok(arch::ftrace::SITE_MOVE) || w1 != Ok(arch::insn::NOP) || st.target != 0 || lit != Ok(nop_ops) {
            bad += 1;
            first.get_or_insert(site.name);
        }
    }
    if bad > 0 {
        return Err(alloc::format!("{bad} sites not disabled, first {}", first.unwrap_or("?")));
    }
    Ok(())
}

/// The set of traceable sites named by a filter line (for filters that are not an ops', such as
/// the graph tracer's `set_graph_function`).
pub fn resolve_filter(text: &str) -> Result<SiteSet, FtraceError> {
    with_core(|core| {
        let mut set = SiteSet::new();
        apply_words(core, &mut set, text, false)?;
        Ok(set)
    })
}

/// Puts ftrace back in order after a self-test case was abandoned (panic or exception) while it
/// may have been inside a callback or an ftrace call: drops this CPU's recursion bits, takes the
/// core lock back if the abandoned case held it, and unregisters every ops.
pub fn recover_after_abort() {
    recursion::reset_this_cpu();
    // The abandoned case may have left this CPU counted as inside a tracing call.
    let me = arch::boot::percpu(arch::cpu::id());
    if me.tracing_depth.swap(0, Ordering::AcqRel) != 0 {
        me.tracing_exits.fetch_add(1, Ordering::AcqRel);
    }
    if CORE.is_locked() {
        // SAFETY: only the self-test CPU calls the ftrace API while cases run; the holder was
        // the case that was just abandoned on this CPU, and will never release it.
        unsafe { CORE.force_unlock() };
    }
    let ops: Vec<&'static FtraceOps> = CORE.lock().as_ref().map(|c| c.ops.clone()).unwrap_or_default();
    for o in ops {
        let r = if o.flags.contains(OpsFlags::DIRECT) {
            super::direct::unregister_ftrace_direct(o, o.direct.load(Ordering::Acquire))
        } else {
            unregister_locked(o)
        };
        if let Err(e) = r {
            log::error!("ftrace: cannot unregister an ops left by an aborted case: {e}");
        }
        o.modifying.store(false, Ordering::Release);
    }
}

/// The argument-only caller enabled sites use (see [`Core::fast_caller`]).
pub fn fast_caller() -> u64 {
    CORE.lock().as_ref().map_or(arch::ftrace::addr::caller(), |c| c.fast_caller)
}

/// Switches sites to `ftrace_caller_smp` once secondary CPUs run. Called at boot before any
/// ops is registered (refused otherwise: sites would have to move while in use).
pub fn use_smp_caller() -> Result<(), FtraceError> {
    with_core(|core| {
        if !core.ops.is_empty() {
            return Err(FtraceError::AlreadyRegistered);
        }
        core.fast_caller = arch::ftrace::addr::caller_smp();
        // The full path counts from now on too.
        match arch::ftrace::enable_regs_counting() {
            Ok(words) => publish_text(&words),
            Err(e) => log::error!("ftrace: cannot make ftrace_regs_caller count calls in flight: {e}"),
        }
        Ok(())
    })
}

/// Checks that every site's text, literal and recorded state match what the registered ops
/// want (an invariant the update procedure maintains between calls).
pub fn check_consistency() -> Result<(), alloc::string::String> {
    let g = CORE.lock();
    let Some(core) = g.as_ref() else { return Ok(()) };
    let caller = core.fast_caller;
    for (i, site) in sites::all().iter().enumerate() {
        let st = &core.state[i];
        if !traceable(st) {
            continue;
        }
        let mut users = Vec::new();
        let (want, want_lit) = desired(&core.ops, i, site.ip, caller, &mut users);
        let word = arch::patch::read_insn(site.ip + 4).unwrap_or(0);
        let want_word = arch::ftrace::call_word(site.ip, want.map(|t| route(site.ip, t))).unwrap_or(1);
        let lit = arch::ftrace::site_ops(site.ip).unwrap_or(0);
        let lit_ok = literal_matches(lit, want_lit, &users);
        if word != want_word || !lit_ok || st.target(site.ip) != want.unwrap_or(0) || st.ops != lit || st.refs() as usize != users.len().min(u16::MAX as usize) {
            return Err(alloc::format!(
                "{}: word {word:#010x} (want {want_word:#010x}), literal {lit:#x} (right: {lit_ok}), state {st:?}, {} users",
                site.name,
                users.len()
            ));
        }
    }
    Ok(())
}

/// Drops an unregistered ops' filter and notrace list and forgets it (Linux's
/// `ftrace_free_filter`): call it before freeing an ops whose filters were set, since ftrace keeps
/// every configured ops' lists up to date when module sites come and go. Refused while the ops is
/// registered.
pub fn ftrace_free_filter(ops: &'static FtraceOps) -> Result<(), FtraceError> {
    with_core(|core| {
        if ops.is_registered() {
            return Err(FtraceError::AlreadyRegistered);
        }
        core.configured.retain(|o| !core::ptr::eq(*o, ops));
        *ops.config.lock() = None;
        Ok(())
    })
}

/// Waits until no CPU can still read `old` (a replaced site table), then frees it (or leaks it
/// when some CPU never leaves its tracing call).
fn retire_table(old: *mut sites::Table) {
    if super::quiesce::synchronize_tracing() {
        // SAFETY: `old` came from `sites::publish`, and every CPU left the tracing calls that
        // began before it was replaced; callers outside tracing calls hold the core lock.
        unsafe { sites::free_table(old) };
    }
}

/// Adds a loaded module's functions as sites (Linux's `ftrace_module_init` and
/// `ftrace_module_enable`): `funcs` are (entry, name) pairs; each site is initialised to
/// `move t0, ra; nop` with the do-nothing literal, gets a stable index, and is enabled for every
/// registered ops that wants all functions. Returns the indices given to the module (a range).
pub fn add_module_sites(module: &'static str, funcs: &[(u64, &'static str)]) -> Result<core::ops::Range<usize>, FtraceError> {
    with_core(|core| {
        let table = sites::table().ok_or(FtraceError::NotInitialised)?;
        let kernel_len = table.kernel_len;
        let n = funcs.len();
        // First run of `n` vacant slots in the module part, or the end of the table.
        let mut start = table.sites.len();
        let mut run = 0;
        for i in kernel_len..table.sites.len() {
            if core.state[i].flags.contains(SiteFlags::ABSENT) {
                run += 1;
                if run == n {
                    start = i + 1 - n;
                    break;
                }
            } else {
                run = 0;
            }
        }
        let mut module_part: Vec<Site> = table.sites[kernel_len..].to_vec();
        let end = start + n;
        if module_part.len() < end - kernel_len {
            module_part.resize(end - kernel_len, Site::VACANT);
            core.state.resize(end, State { flags: SiteFlags::ABSENT, ..State::default() });
        }
        let nop_ops = &NOP_OPS as *const FtraceOps as u64;
        let mut failed = 0;
        for (k, &(ip, name)) in funcs.iter().enumerate() {
            let site = Site { ip, name };
            module_part[start + k - kernel_len] = site;
            let mut st = State { ops: nop_ops, ..State::default() };
            if sites::notrace_by_policy(name) {
                st.flags |= SiteFlags::NOTRACE;
            }
            if let Err(e) = arch::ftrace::init_site(ip, nop_ops) {
                ftrace_bug(&site, "init", &e);
                st.flags |= SiteFlags::FAILED;
                failed += 1;
            }
            core.state[start + k] = st;
        }
        if failed > 0 {
            log::warn!("ftrace: {failed} of {n} sites of module {module} could not be initialised");
        }
        sync_all_cpus();
        let mut modules = table.modules.clone();
        modules.push((start..end, module));
        let old = sites::publish(table.with_module_part(module_part, modules));
        // Ops without a filter want the new functions too (ops with one cannot name them yet).
        if core.ops.iter().any(|o| o.config.lock().as_ref().is_none_or(|c| c.filter.is_none())) {
            let list = core.ops.clone();
            update(core, list);
        }
        retire_table(old);
        Ok(start..end)
    })
}

/// Users of site indices outside the ops (the graph tracer's `set_graph_function`), asked by
/// [`module_sites_going`] whether a range of sites is in use: the user's name, or `None`.
static MODULE_SITE_USERS: spin::Once<fn(core::ops::Range<usize>) -> Option<String>> = spin::Once::new();

/// Registers the question [`module_sites_going`] asks of the users above the core (once, at boot).
pub fn set_module_site_users(users: fn(core::ops::Range<usize>) -> Option<String>) {
    MODULE_SITE_USERS.call_once(|| users);
}

/// First step of removing a module's sites (`range`, as returned by [`add_module_sites`]): fails
/// with [`FtraceError::InUse`] when a registered ops names one of them in its filter (it is
/// attached to the module); otherwise marks them going, which stops every ops from wanting them
/// and patches them back to `nop`. Undo with [`module_sites_stay`] if the unload is abandoned.
pub fn module_sites_going(range: core::ops::Range<usize>) -> Result<(), FtraceError> {
    with_core(|core| {
        for ops in &core.ops {
            let cfg = ops.config.lock();
            if let Some(f) = cfg.as_ref().and_then(|c| c.filter.as_ref())
                && let Some(i) = range.clone().find(|&i| f.contains(i))
            {
                return Err(FtraceError::InUse(sites::all()[i].name.to_string()));
            }
        }
        if let Some(user) = MODULE_SITE_USERS.get().and_then(|users| users(range.clone())) {
            return Err(FtraceError::InUse(user));
        }
        let nop_ops = &NOP_OPS as *const FtraceOps as u64;
        let used = range.clone().any(|i| {
            let st = &core.state[i];
            st.target != 0 || st.ops != nop_ops || core.ops.iter().any(|o| o.wants_index(i))
        });
        for i in range.clone() {
            core.state[i].flags |= SiteFlags::GOING;
        }
        // Sites nobody wants are `nop` already: no text to change, no CPU to wait for.
        if used {
            let list = core.ops.clone();
            update(core, list);
        }
        Ok(())
    })
}

/// Makes going sites ordinary again (an unload that was abandoned after `module_sites_going`).
pub fn module_sites_stay(range: core::ops::Range<usize>) {
    let _ = with_core(|core| {
        for i in range.clone() {
            core.state[i].flags.remove(SiteFlags::GOING);
        }
        let list = core.ops.clone();
        update(core, list);
        Ok(())
    });
}

/// Last step (Linux's `ftrace_release_mod`): drops the going sites in `range` from the table,
/// from every ops' filter and notrace list, and waits until no CPU can still look them up.
/// Afterwards the module's text may be freed.
pub fn remove_module_sites(range: core::ops::Range<usize>) -> Result<(), FtraceError> {
    with_core(|core| {
        let table = sites::table().ok_or(FtraceError::NotInitialised)?;
        let nop_ops = &NOP_OPS as *const FtraceOps as u64;
        for i in range.clone() {
            let st = &core.state[i];
            if !st.flags.contains(SiteFlags::GOING) || st.target != 0 || st.ops != nop_ops {
                return Err(FtraceError::InUse(table.sites[i].name.to_string()));
            }
        }
        let mut module_part: Vec<Site> = table.sites[table.kernel_len..].to_vec();
        for i in range.clone() {
            module_part[i - table.kernel_len] = Site::VACANT;
            core.state[i] = State { flags: SiteFlags::ABSENT, ..State::default() };
        }
        // Trailing vacant slots are dropped, so the table shrinks back when the last module goes.
        while module_part.last().is_some_and(|s| s.ip == 0) {
            module_part.pop();
        }
        core.state.truncate(table.kernel_len + module_part.len());
        core.state.shrink_to_fit();
        for ops in &core.configured {
            if let Some(cfg) = ops.config.lock().as_mut() {
                if let Some(f) = cfg.filter.as_mut() {
                    f.remove_range(range.clone());
                }
                cfg.notrace.remove_range(range.clone());
            }
        }
        let modules = table.modules.iter().filter(|(r, _)| *r != range).cloned().collect();
        let old = sites::publish(table.with_module_part(module_part, modules));
        sync_all_cpus();
        retire_table(old);
        Ok(())
    })
}

/// Whether any ops (registered or not) still has one of the sites in `range` in a filter or
/// notrace list (the module tests check that an unload left nothing behind).
pub fn filters_mention(range: core::ops::Range<usize>) -> bool {
    with_core(|core| {
        Ok(core.configured.iter().any(|o| {
            o.config.lock().as_ref().is_some_and(|c| {
                c.filter.as_ref().is_some_and(|f| f.intersects(range.clone())) || c.notrace.intersects(range.clone())
            })
        }))
    })
    .unwrap_or(false)
}
