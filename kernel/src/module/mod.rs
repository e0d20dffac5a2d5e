//! Loadable modules: loading and unloading (the pure link is `crate::modload`, the memory comes
//! from the module area of `crate::execmem::area`), reference counts, and the registrations that
//! make a module's code known to the floors below: its patch sites (`ftrace::core`), its far-call
//! stubs to the ftrace callers (`ftrace::stubs`) and its symbols (`ksyms`, as a text owner).
//!
//! # Calling the tracer from a module
//!
//! Each module image has a small stub area right after its text: one far jump
//! (`pcaddu18i t1, hi20; jirl zero, t1, lo16`) each to `ftrace_caller`, `ftrace_caller_smp` and
//! `ftrace_regs_caller` (`ftrace::stubs::targets`). A module site whose target is out of reach
//! calls the stub instead (`route` in the ftrace core); see `ftrace::stubs`.

pub mod exports;

use crate::execmem::area::{self as execmem, AREA_SIZE, distance_from_kernel_text, in_area};
use crate::ftrace::stubs::{self, StubArea};
use crate::modload::{self, LoadError, ModSymbol};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI64, Ordering};

/// The fw_cfg directory modules are handed over in (`opt/loongtrace/modules/<name>`).
pub const FW_CFG_PREFIX: &str = "opt/loongtrace/modules/";
/// Most modules loaded at once (each has a stub area).
pub const MAX_MODULES: usize = crate::ftrace::stubs::MAX_AREAS;

/// Serialises loads and unloads.
static LOADER: spin::Mutex<()> = spin::Mutex::new(());
static MODULES: spin::Mutex<Vec<Arc<Module>>> = spin::Mutex::new(Vec::new());

/// Makes loaded modules known to `ksyms` (at boot, after `execmem::area::init`).
pub fn init() {
    crate::ksyms::register_text_owner(&MODULE_TEXT);
}

/// Loaded modules as `ksyms` sees them: their symbols, and holding one by name.
static MODULE_TEXT: crate::ksyms::TextOwner = crate::ksyms::TextOwner {
    lookup,
    resolve: |module, name| try_get(module).and_then(|m| m.symbol(name)),
    hold: |module| try_get(module).map(crate::ksyms::Hold::new),
};

/// A loaded module.
pub struct Module {
    pub name: String,
    /// Image start and size.
    pub base: u64,
    pub size: u64,
    /// `[start, end)` of the module's text (including the stub area).
    pub text: (u64, u64),
    /// Address of the first ftrace stub (see `ftrace::stubs::targets`).
    pub stubs: u64,
    /// Function entries of the module's patch sites, ascending.
    pub sites: Vec<u64>,
    symbols: Vec<ModSymbol>,
    site_range: core::ops::Range<usize>,
    /// Users holding the module (`try_get`); -1 while it unloads.
    refs: AtomicI64,
    exit: Option<u64>,
    align: usize,
    stub_area: StubArea,
}

impl Module {
    /// The address of the module symbol `name` (demangled full name or last path segment).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols
            .iter()
            .find(|s| s.name == name || s.name.rsplit("::").next() == Some(name))
            .map(|s| self.base + s.offset)
    }
    /// Current number of holders.
    pub fn refs(&self) -> i64 {
        self.refs.load(Ordering::Acquire)
    }
    /// The site indices the ftrace core gave the module.
    pub fn site_range(&self) -> core::ops::Range<usize> {
        self.site_range.clone()
    }
    /// Defined symbols as (name, address, size).
    pub fn symbols(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.symbols.iter().map(|s| (s.name.as_str(), self.base + s.offset, s.size))
    }
}

/// A counted reference to a loaded module: while one exists the module cannot unload.
pub struct ModuleRef(Arc<Module>);

impl core::ops::Deref for ModuleRef {
    type Target = Module;
    fn deref(&self) -> &Module {
        &self.0
    }
}

impl Clone for ModuleRef {
    fn clone(&self) -> Self {
        self.0.refs.fetch_add(1, Ordering::AcqRel);
        ModuleRef(self.0.clone())
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        self.0.refs.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a reference to module `name` (Linux's `try_module_get`): `None` if it is not loaded or
/// is unloading.
pub fn try_get(name: &str) -> Option<ModuleRef> {
    let m = MODULES.lock().iter().find(|m| m.name == name)?.clone();
    let mut n = m.refs.load(Ordering::Acquire);
    loop {
        if n < 0 {
            return None;
        }
        match m.refs.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(ModuleRef(m)),
            Err(cur) => n = cur,
        }
    }
}

/// Takes a reference to the module whose image contains `addr`.
pub fn try_get_by_addr(addr: u64) -> Option<ModuleRef> {
    let name = MODULES.lock().iter().find(|m| (m.base..m.base + m.size).contains(&addr))?.name.clone();
    try_get(&name)
}

/// Names of the loaded modules, in load order.
pub fn loaded() -> Vec<String> {
    MODULES.lock().iter().map(|m| m.name.clone()).collect()
}

/// The module symbol containing `addr`, as (module name, symbol name, symbol start, size). The
/// strings are valid while the module stays loaded. Never blocks (None if the list is busy).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn lookup(addr: u64) -> Option<(&'static str, &'static str, u64, u64)> {
    if !in_area(addr) {
        return None;
    }
    let list = MODULES.try_lock()?;
    let m = list.iter().find(|m| (m.base..m.base + m.size).contains(&addr))?;
    let off = addr - m.base;
    let i = m.symbols.partition_point(|s| s.offset <= off).checked_sub(1)?;
    let s = &m.symbols[i];
    if s.size != 0 && off >= s.offset + s.size {
        return None;
    }
    // SAFETY: both strings live in the module, which outlives its entries in the lookup (the
    // module is removed from the list before it is dropped); callers use them while printing.
    unsafe { Some((&*(m.name.as_str() as *const str), &*(s.name.as_str() as *const str), m.base + s.offset, s.size)) }
}

/// Loads module object `bytes`: links it into the module area, registers its functions with
/// ftrace and runs its init. Returns the module's name. On any error nothing stays loaded.
pub fn load(bytes: &[u8]) -> Result<String, LoadError> {
    let _serial = LOADER.lock();
    let obj = modload::Object::new(bytes);
    let targets = stubs::targets();
    let plan = modload::plan(obj.bytes(), targets.len(), AREA_SIZE)?;
    if MODULES.lock().iter().any(|m| m.name == plan.name) {
        return Err(LoadError::Duplicate(plan.name));
    }
    if MODULES.lock().len() >= MAX_MODULES {
        return Err(LoadError::NoSpace(plan.size));
    }
    let align = plan.align.max(8) as usize;
    let base = execmem::alloc_raw(plan.size as usize, align).ok_or(LoadError::NoSpace(plan.size))?;
    // SAFETY: freshly allocated from the module area, `plan.size` bytes, owned here.
    let image = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, plan.size as usize) };
    image.fill(0);
    let linked = match modload::link(obj.bytes(), &plan, base, image, &targets, &exports::resolve) {
        Ok(l) => l,
        Err(e) => {
            execmem::free_raw(base, plan.size as usize, align);
            return Err(e);
        }
    };
    let text = (base + plan.text.0, base + plan.text.1);
    if !arch::patch::register_text(text.0, text.1) {
        execmem::free_raw(base, plan.size as usize, align);
        return Err(LoadError::NoSpace(plan.size));
    }
    // Every CPU must fetch the new text, not whatever it cached of this memory before: the
    // synchronisation in `add_module_sites` (an `ibar` on every CPU) comes before any CPU can
    // find the module, and this CPU's own `ibar` before init runs.
    arch::cpu::dbar();
    arch::cpu::ibar();
    let stubs = base + plan.stubs.0;
    let Some(stub_area) = stubs::register(text, stubs) else {
        arch::patch::unregister_text(text.0);
        execmem::free_raw(base, plan.size as usize, align);
        return Err(LoadError::NoSpace(plan.size));
    };
    let mut module = Module {
        name: plan.name.clone(),
        base,
        size: plan.size,
        text,
        stubs,
        sites: linked.sites.iter().map(|o| base + o).collect(),
        symbols: linked.symbols,
        site_range: 0..0,
        refs: AtomicI64::new(0),
        exit: linked.exit,
        align,
        stub_area,
    };
    let undo = |m: &Module| {
        stubs::unregister(m.stub_area);
        arch::patch::unregister_text(m.text.0);
        execmem::free_raw(m.base, m.size as usize, m.align);
    };
    // Site names point into the module's own strings (see `sites::Site::name`).
    let funcs: Vec<(u64, &'static str)> = module
        .sites
        .iter()
        .map(|&ip| {
            let name = module.symbols.iter().find(|s| module.base + s.offset == ip && s.is_func).map_or("?", |s| s.name.as_str());
            // SAFETY: the strings live as long as the module, whose sites are removed from the
            // table before it is dropped.
            (ip, unsafe { &*(name as *const str) })
        })
        .collect();
    // SAFETY: as above, for the module name.
    let mod_name: &'static str = unsafe { &*(module.name.as_str() as *const str) };
    match crate::ftrace::core::add_module_sites(mod_name, &funcs) {
        Ok(r) => module.site_range = r,
        Err(e) => {
            undo(&module);
            return Err(LoadError::Ftrace(alloc::format!("{e}")));
        }
    }
    let module = Arc::new(module);
    let kernel_text = arch::patch::text_bounds();
    let caller_dist = module.text.0.abs_diff(arch::ftrace::addr::caller());
    log::info!(
        "module {}: loaded at {:#x}..{:#x} ({} bytes, {} sites, {} relocations), {} MiB from kernel text start {:#x}, \
         {} MiB from ftrace_caller (bl reach is 128 MiB)",
        module.name,
        module.base,
        module.base + module.size,
        module.size,
        module.sites.len(),
        linked.relocations,
        distance_from_kernel_text(module.base) >> 20,
        kernel_text.0,
        caller_dist >> 20,
    );
    MODULES.lock().push(module.clone());
    if let Some(init) = linked.init {
        // SAFETY: `lt_module_init` of a module linked above: `extern "C" fn() -> i32`.
        let f: extern "C" fn() -> i32 = unsafe { core::mem::transmute(init + base) };
        let r = f();
        if r != 0 {
            MODULES.lock().retain(|m| !Arc::ptr_eq(m, &module));
            release(&module);
            return Err(LoadError::InitFailed(r));
        }
    }
    if let Some(base) = MODULES.lock().iter().find(|m| m.name == plan.name).map(|m| m.base) {
        crate::tracepoint::trace!(crate::tracepoint::points::MODULE_LOAD, plan.name.as_str(), base);
    }
    Ok(plan.name)
}

/// Takes a module's sites out of ftrace and frees its memory (after its exit ran).
fn release(m: &Module) {
    crate::tracepoint::trace!(crate::tracepoint::points::MODULE_FREE, m.name.as_str());
    let range = m.site_range();
    if let Err(e) = crate::ftrace::core::module_sites_going(range.clone()).and_then(|_| crate::ftrace::core::remove_module_sites(range)) {
        // Only reachable if an ops attached between the checks: keep the memory rather than free
        // text that may still be called.
        log::error!("module {}: cannot remove its ftrace sites ({e}); its memory is kept", m.name);
        return;
    }
    stubs::unregister(m.stub_area);
    arch::patch::unregister_text(m.text.0);
    // `remove_module_sites` synchronised every CPU after the sites left the table.
    execmem::free_raw(m.base, m.size as usize, m.align);
}

/// Why a module could not be unloaded. The module stays loaded and working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnloadError {
    NotLoaded(String),
    /// Held by `n` references (`try_get`).
    Busy(String, i64),
    /// One of its functions is used by a registered ops or trampoline.
    InUse(String, String),
}

impl core::fmt::Display for UnloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UnloadError::NotLoaded(n) => write!(f, "no module named '{n}' is loaded"),
            UnloadError::Busy(n, r) => write!(f, "module {n} is busy ({r} references)"),
            UnloadError::InUse(n, why) => write!(f, "module {n} is in use: {why}"),
        }
    }
}

/// Unloads module `name` (Linux's `delete_module`): refused while it is referenced, while a
/// registered ops or trampoline uses one of its functions, or while a registered direct
/// trampoline lies in its image; otherwise runs its exit, removes its sites from ftrace and frees
/// its memory.
pub fn unload(name: &str) -> Result<(), UnloadError> {
    let _serial = LOADER.lock();
    let m = MODULES.lock().iter().find(|m| m.name == name).cloned().ok_or_else(|| UnloadError::NotLoaded(name.into()))?;
    if let Err(n) = m.refs.compare_exchange(0, -1, Ordering::AcqRel, Ordering::Acquire) {
        return Err(UnloadError::Busy(name.into(), n));
    }
    if let Some(user) = crate::ftrace::direct::trampoline_user(m.base, m.base + m.size) {
        m.refs.store(0, Ordering::Release);
        return Err(UnloadError::InUse(name.into(), user));
    }
    let range = m.site_range();
    if let Err(e) = crate::ftrace::core::module_sites_going(range.clone()) {
        m.refs.store(0, Ordering::Release);
        return Err(UnloadError::InUse(name.into(), alloc::format!("{e}")));
    }
    if let Some(exit) = m.exit {
        // SAFETY: `lt_module_exit` of a loaded module: `extern "C" fn()`.
        let f: extern "C" fn() = unsafe { core::mem::transmute(exit + m.base) };
        f();
    }
    MODULES.lock().retain(|x| !Arc::ptr_eq(x, &m));
    release(&m);
    log::info!("module {name}: unloaded");
    Ok(())
}

/// The module files QEMU was given (`-fw_cfg name=opt/loongtrace/modules/<name>,file=...`), as
/// (file name, size).
pub fn fw_cfg_files() -> Vec<(String, usize)> {
    let mut v = Vec::new();
    arch::fw_cfg::for_each_file(|name, size, _| {
        if let Some(n) = name.strip_prefix(FW_CFG_PREFIX) {
            v.push((String::from(n), size));
        }
    });
    v
}

/// Reads module file `name` from fw_cfg.
pub fn fw_cfg_read(name: &str) -> Option<Vec<u8>> {
    let mut found = None;
    arch::fw_cfg::for_each_file(|n, size, key| {
        if n.strip_prefix(FW_CFG_PREFIX) == Some(name) {
            found = Some((size, key));
        }
    });
    let (size, key) = found?;
    let mut buf = alloc::vec![0u8; size];
    arch::fw_cfg::read_item(key, &mut buf);
    Some(buf)
}

/// Loads the fw_cfg module files named in `list` (`+`-separated, or `all`), at boot.
pub fn load_from_cmdline(list: &str) {
    let names: Vec<String> = if list == "all" {
        fw_cfg_files().into_iter().map(|(n, _)| n).collect()
    } else {
        list.split('+').filter(|s| !s.is_empty()).map(String::from).collect()
    };
    for n in names {
        match fw_cfg_read(&n) {
            None => log::error!("module file '{n}': not found in fw_cfg ({FW_CFG_PREFIX}{n})"),
            Some(bytes) => match load(&bytes) {
                Ok(name) => {
                    if let Some(m) = try_get(&name) {
                        let sites: Vec<&str> = m.symbols.iter().filter(|s| s.is_func && m.sites.contains(&(m.base + s.offset))).map(|s| s.name.as_str()).collect();
                        log::info!("module {name}: traceable functions: {}", sites.join(" "));
                    }
                }
                Err(e) => log::error!("module file '{n}': {e}"),
            },
        }
    }
}
