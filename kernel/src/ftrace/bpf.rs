//! Generated fentry/fexit/fmod_ret trampolines and the `Attach` API (Linux's BPF trampolines).
//!
//! Attaching a program (a C-ABI Rust function) to a traceable function generates, at run time, a
//! direct-call trampoline that calls every program attached to that function (the code and its
//! register contract are described in `arch::bpf_tramp` and docs/trampolines.md), writes it near
//! the function — into the executable area the linker script reserves inside the kernel text for
//! a kernel function (every kernel function reaches it with one `bl`), into the module area for a
//! module function — and makes it the function's direct trampoline with
//! `register_ftrace_direct`. Attaching or detaching another program generates a new trampoline
//! and swaps it in with `modify_ftrace_direct` (every call runs either the old or the new one, so
//! no call is lost or doubled); the old code is freed once every CPU was seen outside it, and
//! leaked (with an error) if one never is. Detaching the last program unregisters the trampoline.
//!
//! ```ignore
//! extern "C" fn count(ctx: &TraceCtx) -> u64 { HITS.fetch_add(1, Relaxed); 0 }
//! let link = Attach::fexit(Func::named("dyn_func1", 0)?, count)?;
//! dyn_func1();            // count runs once, after dyn_func1, and sees its return value
//! link.detach()?;         // or drop(link)
//! ```
//!
//! Rules (each refused with an [`AttachError`], nothing changed): the function must be a
//! traceable patch site (not notrace, not a failed site); it takes at most 8 integer argument
//! registers; at most [`MAX_LINKS`] programs (all kinds together, Linux's
//! `BPF_MAX_TRAMP_LINKS`) per function; at most one fmod_ret program per function (see
//! [`AttachError::FmodRetBusy`]); the function may not already have another direct trampoline
//! (e.g. a sample's); a module function's module must not be unloading, and stays loaded while a
//! program is attached.

use super::direct;
use super::ops::{FtraceError, FtraceOps, OpsFlags};
use super::sites;
use crate::execmem::ExecArea;
use crate::execmem::area::{self as execmem, ExecMem};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use arch::bpf_tramp::{self as tgen, GenError, Handler, TrampSpec};
use core::sync::atomic::{AtomicU64, Ordering};

/// Most programs on one function, all kinds together (Linux's `BPF_MAX_TRAMP_LINKS`).
pub const MAX_LINKS: usize = 38;
/// Units of the generated-code area (`BPF_TRAMP_AREA_SIZE` in linker/kernel.ld / 64).
const AREA_UNITS: usize = 4096;
/// What freed trampoline code is overwritten with: `break 0x4254` ("BT"), so a CPU that ran
/// into freed code would stop with a clear exception instead of running stale instructions.
pub const POISON: u32 = arch::insn::BREAK0 | 0x4254;

/// A program: gets the function's context; the result matters for fmod_ret programs only
/// (non-zero: skip the function and return this value).
pub type ProgFn = extern "C" fn(ctx: &TraceCtx) -> u64;

/// What a program sees: the trampoline's frame (`arch::bpf_tramp`).
///
/// Only the first `nargs` arguments (the largest count given by the programs attached to the
/// function) are saved; the others read as stale stack words. The return value is meaningful in
/// fexit programs, and in fmod_ret programs (0, or the value an earlier one chose).
#[repr(C)]
pub struct TraceCtx {
    args: [u64; 8],
    ret: [u64; 2],
    body: u64,
    _unused: u64,
    fp: u64,
    parent: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(TraceCtx, args) as i64 == tgen::CTX_ARGS);
    assert!(core::mem::offset_of!(TraceCtx, ret) as i64 == tgen::CTX_RET);
    assert!(core::mem::offset_of!(TraceCtx, body) as i64 == tgen::CTX_BODY);
    assert!(core::mem::offset_of!(TraceCtx, fp) as i64 == tgen::CTX_FP);
    assert!(core::mem::offset_of!(TraceCtx, parent) as i64 == tgen::CTX_PARENT);
    assert!(core::mem::size_of::<TraceCtx>() as i64 == tgen::FRAME_SIZE);
};

impl TraceCtx {
    /// Argument register `a<n>` as the function received it (n < 8).
    #[inline(always)]
    pub fn arg(&self, n: usize) -> u64 {
        self.args[n & 7]
    }
    /// The return value in `a0`.
    #[inline(always)]
    pub fn ret(&self) -> u64 {
        self.ret[0]
    }
    /// The return value in `a0` (low half) and `a1` (high half).
    #[inline(always)]
    pub fn ret128(&self) -> u128 {
        (self.ret[1] as u128) << 64 | self.ret[0] as u128
    }
    /// The traced function's entry.
    #[inline(always)]
    pub fn func_ip(&self) -> u64 {
        self.body - 8
    }
    /// Where the traced function returns (in its parent, or the graph tracer's return hook).
    #[inline(always)]
    pub fn parent_ip(&self) -> u64 {
        self.parent
    }
}

/// Kinds of programs, in the order the trampoline calls them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fentry,
    FmodRet,
    Fexit,
}

impl Kind {
    /// The program kind as BPF names its section (`fentry`, `fmod_ret`, `fexit`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fentry => "fentry",
            Kind::FmodRet => "fmod_ret",
            Kind::Fexit => "fexit",
        }
    }
}

/// Why an attach or detach was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// No traceable function has that name.
    NoSuchFunction(String),
    /// Several functions end with that name; use the full path.
    Ambiguous(String),
    /// The function is not a patch site, is notrace, or its site failed.
    NotTraceable(String),
    /// More than 8 argument registers.
    TooManyArgs(usize),
    /// The function already has [`MAX_LINKS`] programs.
    TooManyLinks(String),
    /// The function already has an fmod_ret program. One program owns a function's return value
    /// at a time (Linux lets several run, each seeing the previous one's choice; here the second
    /// is refused so that which result wins never depends on attach order).
    FmodRetBusy(String),
    /// The function's module is being unloaded.
    ModuleGoing(String),
    /// The generated-code area is full.
    NoSpace,
    /// The link was already detached.
    NotAttached,
    /// The ftrace core refused (e.g. another direct trampoline owns the function).
    Ftrace(FtraceError),
    /// A program that reads the return value right after the arguments (a BPF fexit or fmod_ret
    /// program, at `ctx[nargs]`) cannot share the function with one that takes more arguments
    /// (that word is an argument for it).
    RetSlot { func: String, nargs: usize, max: usize },
    /// The code generator refused.
    Gen(GenError),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::NoSuchFunction(n) => write!(f, "no traceable function named '{n}'"),
            AttachError::Ambiguous(n) => write!(f, "'{n}' names several functions; give the full path"),
            AttachError::NotTraceable(n) => write!(f, "{n} cannot be traced"),
            AttachError::TooManyArgs(n) => write!(f, "{n} arguments: trampolines pass at most 8 argument registers"),
            AttachError::TooManyLinks(n) => write!(f, "{n} already has {MAX_LINKS} programs (BPF_MAX_TRAMP_LINKS)"),
            AttachError::FmodRetBusy(n) => write!(f, "{n} already has an fmod_ret program"),
            AttachError::ModuleGoing(n) => write!(f, "the module of {n} is being unloaded"),
            AttachError::NoSpace => write!(f, "the trampoline area is full"),
            AttachError::NotAttached => write!(f, "the program is not attached"),
            AttachError::Ftrace(e) => write!(f, "{e}"),
            AttachError::RetSlot { func, nargs, max } => write!(
                f,
                "{func}: a program reads the return value at ctx[{nargs}], where another program of the function takes {max} arguments"
            ),
            AttachError::Gen(e) => write!(f, "cannot generate the trampoline: {e}"),
        }
    }
}

impl From<GenError> for AttachError {
    fn from(e: GenError) -> Self {
        AttachError::Gen(e)
    }
}

/// Where a function's trampoline code goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Within `bl` reach of the function: the kernel's reserved area for a kernel function, the
    /// module area for a module function (the site then calls the trampoline straight). When no
    /// such space is left, anywhere in the module area (the site then takes the regs route).
    Near,
    /// The module area, also for a kernel function (out of `bl` reach of kernel text: the site
    /// reaches the trampoline through `ftrace_regs_caller`).
    ModuleArea,
}

/// A traced function: its entry, name and how many argument registers programs see.
#[derive(Clone, Copy, Debug)]
pub struct Func {
    ip: u64,
    nargs: usize,
    name: &'static str,
    placement: Placement,
}

impl Func {
    /// The function whose entry is `ip` (e.g. `f as *const () as u64`), taking `nargs`
    /// argument registers (a 128-bit argument takes two).
    pub fn at(ip: u64, nargs: usize) -> Func {
        let name = sites::index_of(ip).map_or("?", |i| sites::all()[i].name);
        Func { ip, nargs, name, placement: Placement::Near }
    }

    /// The kernel function named `name`: its full path, or a unique last part (`dyn_func1`,
    /// `targets::dyn_func1`). Module functions are never matched (see [`Func::in_module`]).
    pub fn named(name: &str, nargs: usize) -> Result<Func, AttachError> {
        let mut found = sites::all()
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.ip != 0 && sites::module_of(i).is_empty())
            .map(|(_, s)| s)
            .filter(|s| s.name == name || s.name.strip_suffix(name).is_some_and(|p| p.ends_with("::")));
        let first = found.next().ok_or_else(|| AttachError::NoSuchFunction(name.to_string()))?;
        if found.next().is_some() {
            return Err(AttachError::Ambiguous(name.to_string()));
        }
        Ok(Func { ip: first.ip, nargs, name: first.name, placement: Placement::Near })
    }

    /// Function `name` of the loaded module `module` (BPF's `module:function` attach target),
    /// even when the kernel has a function of the same name.
    pub fn in_module(module: &str, name: &str, nargs: usize) -> Result<Func, AttachError> {
        let what = || alloc::format!("{module}:{name}");
        let ip = crate::ksyms::resolve_in(module, name).ok_or_else(|| AttachError::NoSuchFunction(what()))?;
        Ok(Func::at(ip, nargs))
    }

    /// The same function with its trampoline placed as `p` says.
    pub fn placed(self, p: Placement) -> Func {
        Func { placement: p, ..self }
    }

    /// The function's entry.
    pub fn ip(&self) -> u64 {
        self.ip
    }

    /// The function's name (`?` when it has no symbol).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[derive(Clone, Copy, Debug)]
struct Link {
    id: u64,
    kind: Kind,
    handler: Handler,
    nargs: usize,
    /// The handler reads the return value at `ctx[nargs]` (BPF's layout).
    ret_after_args: bool,
}

/// Code of one trampoline: in the kernel's reserved area, or in the module area.
enum Image {
    Kernel { at: u64, words: usize },
    Module { mem: ExecMem, words: usize },
}

impl Image {
    fn at(&self) -> u64 {
        match self {
            Image::Kernel { at, .. } => *at,
            Image::Module { mem, .. } => mem.addr,
        }
    }
    fn words(&self) -> usize {
        match self {
            Image::Kernel { words, .. } | Image::Module { words, .. } => *words,
        }
    }
}

/// The trampoline of one function.
struct Tramp {
    ip: u64,
    name: &'static str,
    ops: &'static FtraceOps,
    links: Vec<Link>,
    image: Image,
    placement: Placement,
    /// Keeps the function's module loaded while the trampoline exists.
    _module: Option<crate::ksyms::Hold>,
}

static REG: spin::Mutex<Vec<Tramp>> = spin::Mutex::new(Vec::new());
static AREA: spin::Mutex<ExecArea<AREA_UNITS>> = spin::Mutex::new(ExecArea::new());
/// Live trampolines in the module area, as `[start, end)`.
static MODULE_IMAGES: spin::Mutex<Vec<(u64, u64)>> = spin::Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Trampolines generated, and old ones that could not be freed (a CPU never left them).
pub static GENERATED: AtomicU64 = AtomicU64::new(0);
pub static LEAKED: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static __bpf_tramp_area_start: u8;
    static __bpf_tramp_area_end: u8;
}

fn area() -> spin::MutexGuard<'static, ExecArea<AREA_UNITS>> {
    let mut a = AREA.lock();
    if a.bounds().0 == 0 {
        let s = core::ptr::addr_of!(__bpf_tramp_area_start) as u64;
        let e = core::ptr::addr_of!(__bpf_tramp_area_end) as u64;
        a.init(s, e);
    }
    a
}

/// `[start, end)` of the generated trampoline containing `addr`, if any.
pub fn image_range(addr: u64) -> Option<(u64, u64)> {
    AREA.try_lock().and_then(|a| a.range_of(addr)).or_else(|| MODULE_IMAGES.try_lock()?.iter().copied().find(|r| (r.0..r.1).contains(&addr)))
}

/// Bounds of the generated-code area.
pub fn area_bounds() -> (u64, u64) {
    area().bounds()
}

/// Bytes of the area in use.
pub fn area_used() -> u64 {
    area().used_bytes()
}

/// Test support: takes every free byte of the kernel's trampoline area, as if it were full of
/// trampolines; [`release_area`] gives the blocks back.
pub fn exhaust_area() -> alloc::vec::Vec<u64> {
    let mut a = area();
    let mut blocks = alloc::vec::Vec::new();
    let mut size = (a.bounds().1 - a.bounds().0) as usize;
    while size >= crate::execmem::UNIT as usize {
        while let Some(at) = a.alloc(size) {
            blocks.push(at);
        }
        size /= 2;
    }
    blocks
}

/// Test support: frees what [`exhaust_area`] took.
pub fn release_area(blocks: alloc::vec::Vec<u64>) {
    let mut a = area();
    for b in blocks {
        let _ = a.free(b);
    }
}

fn write_words(at: u64, words: &[u32]) {
    for (i, &w) in words.iter().enumerate() {
        // SAFETY: `at` is an allocation of the reserved area (inside the kernel image, mapped
        // read-write-execute through the cached window) owned by the caller and at least
        // `words.len()` words long; no CPU executes it (new, or retired after a quiescence wait).
        unsafe { core::ptr::write_volatile((at + 4 * i as u64) as *mut u32, w) };
    }
    arch::cpu::dbar();
    arch::cpu::ibar();
}

/// Executable space for `bytes` of code for the function at `ip`.
fn alloc_code(ip: u64, placement: Placement, bytes: usize) -> Result<Image, AttachError> {
    let in_module = execmem::in_area(ip);
    if placement == Placement::Near && !in_module {
        if let Some(at) = area().alloc(bytes) {
            return Ok(Image::Kernel { at, words: 0 });
        }
        // The reserved area is full: anywhere in the module area, reached by the regs route.
        log::info!("bpf: the kernel's trampoline area is full; {:#x} gets a module-area trampoline (regs route)", ip);
    }
    let mem = match in_module {
        // Near its module function if possible, else anywhere (the regs route reaches it).
        true => execmem::alloc_exec_near(ip, bytes, 64).or_else(|_| execmem::alloc_exec(bytes, 64)),
        false => execmem::alloc_exec(bytes, 64),
    };
    let mem = mem.map_err(|_| AttachError::NoSpace)?;
    MODULE_IMAGES.lock().push((mem.addr, mem.addr + mem.size as u64));
    Ok(Image::Module { mem, words: 0 })
}

/// Gives the space back (no CPU may run it any more).
fn free_code(image: Image) {
    match image {
        Image::Kernel { at, .. } => {
            if let Err(e) = area().free(at) {
                log::error!("bpf: freeing the trampoline at {at:#x}: {e}");
            }
        }
        Image::Module { mem, .. } => {
            MODULE_IMAGES.lock().retain(|r| r.0 != mem.addr);
            // SAFETY: the caller waited until no CPU can run the code (or it was never published).
            unsafe { execmem::free_exec(mem) };
        }
    }
}

/// Generates and writes the trampoline for `links` of the function at `ip`.
fn build_image(ip: u64, placement: Placement, links: &[Link]) -> Result<Image, AttachError> {
    let of = |k: Kind| -> Vec<Handler> { links.iter().filter(|l| l.kind == k).map(|l| l.handler).collect() };
    let (fentry, fmod_ret, fexit) = (of(Kind::Fentry), of(Kind::FmodRet), of(Kind::Fexit));
    let nargs = links.iter().map(|l| l.nargs).max().unwrap_or(0);
    let ret_after_args = links.iter().any(|l| l.ret_after_args);
    let spec = TrampSpec { nargs, fentry: &fentry, fmod_ret: &fmod_ret, fexit: &fexit, ret_after_args };
    let mut buf = vec![0u32; spec.max_words()];
    let mut image = alloc_code(ip, placement, buf.len() * 4)?;
    match tgen::generate(&spec, image.at(), &mut buf) {
        Ok(n) => {
            write_words(image.at(), &buf[..n]);
            let name = sites::index_of(ip).map_or("?", |i| sites::all()[i].name);
            let shape = crate::jitsyms::Shape::Trampoline { size: tgen::FRAME_SIZE as u32 };
            crate::jitsyms::register(alloc::format!("bpf_trampoline_{name}"), image.at(), 4 * n as u64, shape);
            match &mut image {
                Image::Kernel { words, .. } | Image::Module { words, .. } => *words = n,
            }
            GENERATED.fetch_add(1, Ordering::Relaxed);
            Ok(image)
        }
        Err(e) => {
            free_code(image);
            Err(e.into())
        }
    }
}

/// Frees code no CPU can still be running (`quiet`), or leaks it with an error.
fn retire(image: Image, quiet: bool) {
    crate::jitsyms::unregister(image.at());
    if !quiet {
        LEAKED.fetch_add(1, Ordering::Relaxed);
        log::error!("bpf: a CPU stayed inside the trampoline at {:#x}; its code is leaked", image.at());
        core::mem::forget(image);
        return;
    }
    write_words(image.at(), &vec![POISON; image.words()]);
    free_code(image);
}

fn ftrace_err(name: &str, e: FtraceError) -> AttachError {
    match e {
        FtraceError::NotTraceable(_) | FtraceError::NotASite(_) => AttachError::NotTraceable(name.to_string()),
        e => AttachError::Ftrace(e),
    }
}

fn attach(kind: Kind, func: Func, handler: Handler, ret_after_args: bool) -> Result<BpfLink, AttachError> {
    if func.nargs > tgen::MAX_ARGS {
        return Err(AttachError::TooManyArgs(func.nargs));
    }
    let name = if func.name == "?" { alloc::format!("{:#x}", func.ip) } else { func.name.to_string() };
    let link = Link { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), kind, handler, nargs: func.nargs, ret_after_args };
    let mut reg = REG.lock();
    if let Some(t) = reg.iter_mut().find(|t| t.ip == func.ip) {
        if t.links.len() >= MAX_LINKS {
            return Err(AttachError::TooManyLinks(name));
        }
        if kind == Kind::FmodRet && t.links.iter().any(|l| l.kind == Kind::FmodRet) {
            return Err(AttachError::FmodRetBusy(name));
        }
        let mut links = t.links.clone();
        links.push(link);
        check_ret_slot(&name, &links)?;
        swap_image(t, links)?;
        crate::tracepoint::trace!(crate::tracepoint::points::BPF_ATTACH, func.ip, kind.name(), t.links.len());
        return Ok(BpfLink { ip: func.ip, id: link.id, kind, attached: true });
    }
    let info = super::core::site_info(func.ip).ok_or_else(|| AttachError::NotTraceable(name.clone()))?;
    // A module function: hold its module while the trampoline exists (Linux's
    // `bpf_trampoline_module_get`); a module on its way out is refused.
    let module = if info.module.is_empty() {
        None
    } else {
        match crate::ksyms::hold(info.module) {
            Some(m) if !info.state.flags.contains(super::core::SiteFlags::GOING) => Some(m),
            _ => return Err(AttachError::ModuleGoing(name)),
        }
    };
    let ops: &'static FtraceOps = Box::leak(Box::new(FtraceOps::new_direct(OpsFlags::empty())));
    let free_ops = |ops: &'static FtraceOps| {
        let _ = super::ftrace_reset_filters(ops);
        // SAFETY: leaked just above, never registered, no other reference kept.
        let _ = unsafe { FtraceOps::free(ops) };
    };
    if let Err(e) = super::ftrace_set_filter_ip(ops, func.ip, false, true) {
        free_ops(ops);
        return Err(ftrace_err(&name, e));
    }
    let links = vec![link];
    let image = match build_image(func.ip, func.placement, &links) {
        Ok(x) => x,
        Err(e) => {
            free_ops(ops);
            return Err(e);
        }
    };
    if let Err(e) = super::register_ftrace_direct(ops, image.at()) {
        retire(image, true);
        free_ops(ops);
        return Err(ftrace_err(&name, e));
    }
    reg.push(Tramp { ip: func.ip, name: info.site.name, ops, links, image, placement: func.placement, _module: module });
    crate::tracepoint::trace!(crate::tracepoint::points::BPF_ATTACH, func.ip, kind.name(), 1usize);
    Ok(BpfLink { ip: func.ip, id: link.id, kind, attached: true })
}

/// Refuses a set of links where one keeps the return value at `ctx[n]` and another takes more
/// than `n` arguments.
fn check_ret_slot(name: &str, links: &[Link]) -> Result<(), AttachError> {
    let max = links.iter().map(|l| l.nargs).max().unwrap_or(0);
    match links.iter().find(|l| l.ret_after_args && l.nargs < max) {
        Some(l) => Err(AttachError::RetSlot { func: name.to_string(), nargs: l.nargs, max }),
        None => Ok(()),
    }
}

/// Generates the trampoline for `links` and swaps it in for `t`'s.
fn swap_image(t: &mut Tramp, links: Vec<Link>) -> Result<(), AttachError> {
    let image = build_image(t.ip, t.placement, &links)?;
    match direct::modify_direct_quiet(t.ops, image.at()) {
        Ok(quiet) => {
            let old = core::mem::replace(&mut t.image, image);
            retire(old, quiet);
            t.links = links;
            Ok(())
        }
        Err(e) => {
            retire(image, true);
            Err(AttachError::Ftrace(e))
        }
    }
}

fn detach(ip: u64, id: u64) -> Result<(), AttachError> {
    let mut reg = REG.lock();
    let i = reg.iter().position(|t| t.ip == ip).ok_or(AttachError::NotAttached)?;
    let t = &mut reg[i];
    let j = t.links.iter().position(|l| l.id == id).ok_or(AttachError::NotAttached)?;
    let kind = t.links[j].kind;
    if t.links.len() > 1 {
        let mut links = t.links.clone();
        links.remove(j);
        swap_image(t, links)?;
        crate::tracepoint::trace!(crate::tracepoint::points::BPF_DETACH, ip, kind.name(), t.links.len());
        return Ok(());
    }
    let quiet = direct::unregister_direct_quiet(t.ops, t.image.at()).map_err(AttachError::Ftrace)?;
    let t = reg.remove(i);
    let _ = super::ftrace_reset_filters(t.ops);
    // SAFETY: leaked by `attach`, unregistered just above (which waited until no CPU runs its
    // callback), and the registry entry that referred to it is gone.
    let _ = unsafe { FtraceOps::free(t.ops) };
    retire(t.image, quiet);
    crate::tracepoint::trace!(crate::tracepoint::points::BPF_DETACH, ip, kind.name(), 0usize);
    Ok(())
}

/// An attached program. Detaches when dropped (errors are logged), or explicitly with
/// [`BpfLink::detach`].
#[must_use = "dropping the link detaches the program"]
#[derive(Debug)]
pub struct BpfLink {
    ip: u64,
    id: u64,
    kind: Kind,
    attached: bool,
}

impl BpfLink {
    /// Detaches the program: when this returns, no CPU runs it for this link any more.
    pub fn detach(mut self) -> Result<(), AttachError> {
        self.detach_in_place().map(drop)
    }

    /// [`BpfLink::detach`] that keeps the link on an error (it is still attached then, and may be
    /// detached again). `Ok(false)`: detached, but a CPU was never seen leaving the old trampoline,
    /// whose code was leaked (see [`LEAKED`]): what it calls must stay too.
    pub fn detach_in_place(&mut self) -> Result<bool, AttachError> {
        if !self.attached {
            return Err(AttachError::NotAttached);
        }
        let leaked = LEAKED.load(Ordering::Relaxed);
        detach(self.ip, self.id)?;
        self.attached = false;
        Ok(LEAKED.load(Ordering::Relaxed) == leaked)
    }
    /// The traced function's entry.
    pub fn func_ip(&self) -> u64 {
        self.ip
    }
    /// The program's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl Drop for BpfLink {
    fn drop(&mut self) {
        if self.attached
            && let Err(e) = detach(self.ip, self.id)
        {
            log::error!("bpf: detaching link {} from {:#x}: {e}", self.id, self.ip);
        }
    }
}

/// The attach points, named after BPF's (`BPF_TRACE_FENTRY`, `BPF_TRACE_FEXIT`,
/// `BPF_MODIFY_RETURN`).
pub struct Attach;

impl Attach {
    /// Runs `prog` at the function's entry, before its body, with its arguments.
    pub fn fentry(func: Func, prog: ProgFn) -> Result<BpfLink, AttachError> {
        attach(Kind::Fentry, func, Handler::plain(prog as usize as u64), false)
    }
    /// Runs `prog` after the function returned, with its arguments and return value.
    pub fn fexit(func: Func, prog: ProgFn) -> Result<BpfLink, AttachError> {
        attach(Kind::Fexit, func, Handler::plain(prog as usize as u64), false)
    }
    /// Runs `prog` before the function; a non-zero result skips the function and is returned to
    /// its caller instead (fexit programs still run and see it).
    pub fn fmod_ret(func: Func, prog: ProgFn) -> Result<BpfLink, AttachError> {
        attach(Kind::FmodRet, func, Handler::plain(prog as usize as u64), false)
    }

    /// Runs `handler` as a program of `kind` (a BPF program's code, or a runner of it, with its
    /// recursion guard; see `arch::bpf_tramp::Handler`). With `ret_after_args` the return value
    /// is also kept at `ctx[nargs]`, where BPF's fexit and fmod_ret programs read it.
    pub fn handler(kind: Kind, func: Func, handler: Handler, ret_after_args: bool) -> Result<BpfLink, AttachError> {
        attach(kind, func, handler, ret_after_args)
    }
}

/// Executable memory for code that a trampoline of `ip` calls (a JITed BPF program), placed as
/// near as the trampoline is: in the kernel's reserved area for a kernel function (one `bl`
/// from the trampoline and from kernel text), near a module function in the module area, or
/// anywhere in the module area when neither has room. Freed by [`free_text`].
pub struct Text {
    image: Image,
}

impl Text {
    /// Where the code starts.
    pub fn addr(&self) -> u64 {
        self.image.at()
    }

    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        match &self.image {
            Image::Kernel { words, .. } | Image::Module { words, .. } => 4 * *words,
        }
    }

    /// Writes `words` at the start (at most [`Text::bytes`] / 4 of them) and makes them visible
    /// to this CPU's instruction fetch; other CPUs see them once the code is published with a
    /// barrier of their own (a trampoline swap's).
    pub fn write(&mut self, words: &[u32]) {
        let n = words.len().min(self.bytes() / 4);
        write_words(self.addr(), &words[..n]);
    }
}

/// Space for `bytes` of code called by the trampoline of `ip` (kernel text if `ip` is `None`);
/// see [`Text`].
pub fn alloc_text(ip: Option<u64>, bytes: usize) -> Result<Text, AttachError> {
    let ip = ip.unwrap_or(area().bounds().0);
    let mut image = alloc_code(ip, Placement::Near, bytes)?;
    match &mut image {
        Image::Kernel { words, .. } | Image::Module { words, .. } => *words = bytes.div_ceil(4),
    }
    Ok(Text { image })
}

/// Frees code from [`alloc_text`], poisoning it first.
///
/// # Safety
/// No CPU may run the code any more, and no trampoline may call it.
pub unsafe fn free_text(text: Text) {
    retire(text.image, true);
}

/// What a function's trampoline looks like now: (code address, instruction words, programs).
pub fn trampoline_of(ip: u64) -> Option<(u64, Vec<u32>, usize)> {
    let reg = REG.lock();
    let t = reg.iter().find(|t| t.ip == ip)?;
    let at = t.image.at();
    // SAFETY: the image is live (the registry lock keeps it from being retired) and `words` long.
    let words = (0..t.image.words()).map(|i| unsafe { core::ptr::read_volatile((at + 4 * i as u64) as *const u32) }).collect();
    Some((at, words, t.links.len()))
}

/// Prints the current trampoline of `ip` as `prefix` lines: a header, then the code as hex
/// words (little-endian bytes, 8 words a line), in the form docs/trampolines.md turns into an
/// ELF for `llvm-objdump`.
pub fn dump(ip: u64, prefix: &str) {
    let Some((at, words, n)) = trampoline_of(ip) else {
        println!("{prefix}no trampoline on {ip:#x}");
        return;
    };
    let name = sites::index_of(ip).map_or("?", |i| sites::all()[i].name);
    println!("{prefix}bpf_trampoline for {name} at {at:#x}: {} words, {n} programs", words.len());
    for chunk in words.chunks(8) {
        let mut line = String::new();
        for w in chunk {
            for b in w.to_le_bytes() {
                line.push_str(&alloc::format!("{b:02x}"));
            }
            line.push(' ');
        }
        println!("{prefix}BPF-TRAMP-HEX {}", line.trim_end());
    }
}

/// Name for a backtrace: `bpf_trampoline[<function>]` and the offset, for an address inside a
/// live generated trampoline (None otherwise, or when the registry is busy).
pub fn describe(addr: u64) -> Option<(&'static str, u64)> {
    let (start, _) = image_range(addr)?;
    let reg = REG.try_lock()?;
    reg.iter().find(|t| t.image.at() == start).map(|t| (t.name, addr - start))
}

/// The trampolines as `ksyms` sees them: their extent (for quiescence) and their names in
/// backtraces (`bpf_trampoline[function]+offset`).
static GENERATED_TEXT: crate::ksyms::GeneratedText =
    crate::ksyms::GeneratedText { range: image_range, describe: |addr| describe(addr).map(|(f, off)| ("bpf_trampoline", f, off)) };

/// What must hold after a self-test case (checked by the harness with the core's checks).
pub const ISOLATION_CHECKS: &[(&str, fn() -> Result<(), String>)] = &[("bpf trampolines detached", check_none_attached)];

/// Functions that have a trampoline now.
pub fn attached_functions() -> usize {
    REG.lock().len()
}

/// Isolation check: no trampoline left behind by a test case.
pub fn check_none_attached() -> Result<(), String> {
    let reg = REG.lock();
    match reg.first() {
        None => Ok(()),
        Some(t) => Err(alloc::format!("{} functions still have a generated trampoline, first {}", reg.len(), t.name)),
    }
}

/// After an abandoned self-test case: the core has unregistered every ops (ours too, waiting for
/// the CPUs), so forget the trampolines and free their code and ops.
pub fn recover_after_abort() {
    if REG.is_locked() {
        // SAFETY: only the self-test CPU attaches and detaches while cases run; the holder was the
        // case that was just abandoned on this CPU and will never release the lock.
        unsafe { REG.force_unlock() };
    }
    if AREA.is_locked() {
        // SAFETY: as above.
        unsafe { AREA.force_unlock() };
    }
    if MODULE_IMAGES.is_locked() {
        // SAFETY: as above.
        unsafe { MODULE_IMAGES.force_unlock() };
    }
    let tramps: Vec<Tramp> = core::mem::take(&mut *REG.lock());
    for t in tramps {
        if t.ops.is_registered() {
            let _ = direct::unregister_direct_quiet(t.ops, t.image.at());
        }
        let _ = super::ftrace_reset_filters(t.ops);
        // SAFETY: unregistered (by the core's recovery or just above), no reference left.
        let _ = unsafe { FtraceOps::free(t.ops) };
        retire(t.image, true);
    }
}

/// Boot-time: registers the isolation check and the abort hook (after the core's).
pub fn init() {
    crate::ksyms::register_generated_text(&GENERATED_TEXT);
    let (s, e) = area_bounds();
    log::info!("bpf: trampoline area {s:#x}..{e:#x} ({} KiB)", (e - s) / 1024);
}
