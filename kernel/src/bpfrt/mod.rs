//! The kernel side of the eBPF runtime (issue 24, part 1): BPF objects handed to QEMU as fw_cfg
//! files are loaded (parsed into a load plan, their maps created, every program verified), kept
//! in a registry with Linux-like ids, and run by hand in the interpreter over real memory.
//!
//! ```ignore
//! let loaded = bpfrt::load("maps_test")?;            // fw_cfg opt/loongtrace/bpf/maps_test.bpf.o
//! let prog = bpfrt::prog(loaded.progs[0]).unwrap();  // by id
//! let exit = bpfrt::run(&prog, &mut bpfrt::Context::words(prog.kind, &[5]))?;
//! bpfrt::unload("maps_test")?;
//! ```
//!
//! Loading is all or nothing: the object is parsed (`bpf::object::LoadPlan`), its maps are made
//! (`bpf::maps::Map`, one value per CPU of the machine for per-CPU maps, global-data maps filled
//! with their initial bytes and `.rodata` frozen, as libbpf does), every program is verified
//! (`bpf::verifier`) for its attach kind, and only when all of that succeeded does the object
//! enter the registry and get its ids; a refusal drops what was made and returns the reason
//! (with the verifier's log for a refused program). The crate is `bpf` (floor 0); this module
//! is called `bpfrt` because `crate::ftrace::bpf` is the generated trampolines.
//!
//! The interpreter's environment over kernel memory is [`env`], `bpf_trace_printk`'s events
//! [`printk`], the `bpf` shell command [`cmd`]. See docs/bpf.md, "In the kernel".

pub mod btf;
pub mod cmd;
pub mod env;
pub mod helpers;
pub mod jit;
pub mod link;
pub mod printk;
pub mod test_run;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use bpf::insn::Insn;
use bpf::maps::{DefError, Map, MapDef, MapError, BPF_ANY, BPF_F_RDONLY_PROG};
use bpf::object::{LoadPlan, MapOrigin, ObjectError, ProgKind, map_type};
use bpf::verifier::{MapInfo, MapKind, ProgInfo, VerifyError};
use core::fmt;

pub use env::{Context, run};

/// The fw_cfg directory BPF objects are handed over in (`opt/loongtrace/bpf/<name>.bpf.o`).
pub const FW_CFG_PREFIX: &str = "opt/loongtrace/bpf/";
/// Largest object file read from fw_cfg.
pub const MAX_OBJECT_BYTES: usize = 16 << 20;
/// Argument words of a tracing program's context: LoongArch passes (and the trampolines hand
/// on) at most eight arguments in registers.
pub const MAX_ARGS: u32 = 8;
/// Bytes of a kprobe program's context: `struct pt_regs` as `arch::frame::PtRegs`.
pub const PT_REGS_SIZE: u32 = 320;

/// Bytes of context a program of `kind` may read, as the verifier is told (docs/bpf-objects.md,
/// Contexts): eight argument words for fentry, the return value after them for fexit and
/// fmod_ret, `struct pt_regs` for kprobes; none for a program of another section.
pub const fn ctx_size(kind: ProgKind) -> u32 {
    match kind {
        ProgKind::Fentry => 8 * MAX_ARGS,
        ProgKind::Fexit | ProgKind::FmodRet => 8 * (MAX_ARGS + 1),
        ProgKind::Kprobe | ProgKind::Kretprobe => PT_REGS_SIZE,
        ProgKind::Other => 0,
    }
}

/// Whether the `get_func_*` helpers are there (Linux: tracing programs of these attach types).
pub const fn has_func_helpers(kind: ProgKind) -> bool {
    matches!(kind, ProgKind::Fentry | ProgKind::Fexit | ProgKind::FmodRet)
}

/// Helpers only a GPL-compatible program may call (Linux's `gpl_only` prototypes).
pub const GPL_ONLY_HELPERS: &[u32] = &[6 /* trace_printk */, 113 /* probe_read_kernel */];

/// A map of the registry.
pub struct BpfMap {
    /// Linux-like id: 1, 2, ... in load order, never reused.
    pub id: u32,
    /// The object it belongs to.
    pub object: String,
    /// Where it came from (a BTF map of `.maps`, or a global-data section).
    pub origin: MapOrigin,
    pub map: Arc<Map>,
}

/// A program of the registry.
pub struct BpfProg {
    /// Linux-like id: 1, 2, ... in load order, never reused.
    pub id: u32,
    /// The C function's name.
    pub name: String,
    /// Its ELF section (`fentry/bpf_fentry_test1`).
    pub section: String,
    pub kind: ProgKind,
    /// The function it is for (not attached: attaching is part 2).
    pub target: Option<String>,
    /// `kprobe/FUNC+OFFSET`'s offset.
    pub offset: u64,
    /// The object it belongs to.
    pub object: String,
    /// Whether the object's license is GPL-compatible.
    pub gpl: bool,
    /// The relocated instructions (its BPF functions appended).
    pub insns: Vec<Insn>,
    /// Every map of its object, by the index its `ld_imm64` instructions carry.
    pub maps: Vec<Arc<Map>>,
    /// The ids of those maps, by the same index.
    pub map_ids: Vec<u32>,
    /// The ids of the maps it refers to, ascending.
    pub used_maps: Vec<u32>,
    /// Bytes of context it was verified for.
    pub ctx_size: u32,
    /// Instructions the verifier processed over all paths.
    pub verified_insns: usize,
    /// Argument registers of its target (fentry, fexit, fmod_ret: [`btf::nargs_of`]).
    pub nargs: Option<u32>,
    /// Its native code, when the JIT compiled it ([`jit`]); else it runs in the interpreter.
    pub jited: Option<jit::JitedProg>,
    /// Why it was not compiled (the JIT was off, or refused it).
    pub jit_error: Option<String>,
    /// Runs skipped per CPU because the program was running on that CPU already (Linux's
    /// `misses` in `bpftool prog show`'s `recursion_misses`).
    pub misses: [core::sync::atomic::AtomicU64; arch::boot::MAX_CPUS],
}

impl BpfProg {
    /// Runs skipped on every CPU because the program was running there already.
    pub fn misses(&self) -> u64 {
        self.misses.iter().map(|m| m.load(core::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Whether it is a program of a generated trampoline (fentry, fexit, fmod_ret).
    pub fn is_tracing(&self) -> bool {
        has_func_helpers(self.kind)
    }

    /// Compiles the program (if the JIT is on), placing the code near its target's trampoline
    /// (`near`); on failure it stays interpreted and [`BpfProg::jit_error`] says why.
    fn compile(&mut self, near: Option<u64>) {
        if !jit::enabled() {
            self.jit_error = Some(String::from("the JIT is off"));
            return;
        }
        // A tracing program always has its target's argument count here (`load_bytes` and
        // `program_for` refuse one without a prototype).
        let func = self.nargs.filter(|_| self.is_tracing()).map(|nargs| arch::bpf_jit::FuncCtx { nargs, has_ret: self.kind != ProgKind::Fentry });
        let name = cmd::jited_name(self);
        match jit::resolve(&self.insns, &self.maps).and_then(|insns| jit::JitedProg::compile(&insns, func, near, Some(&name))) {
            Ok(j) => self.jited = Some(j),
            Err(e) => {
                log::info!("bpf: program {} stays interpreted: {e}", self.name);
                self.jit_error = Some(e);
            }
        }
    }
}

/// The address of a program's target (`FUNC` or `module:FUNC`), if it is loaded.
pub fn target_addr(target: &str) -> Option<u64> {
    match target.split_once(':') {
        Some((module, func)) => crate::ksyms::resolve_in(module, func),
        // A full name, or (as the trampolines take it) a unique last part of a Rust path.
        None => crate::ksyms::find(target).map(|s| s.addr).or_else(|| crate::ftrace::bpf::Func::named(target, 0).ok().map(|f| f.ip())),
    }
}

/// A loaded object: its programs and maps, in the plan's order.
pub struct Object {
    pub name: String,
    pub file: String,
    pub license: String,
    pub progs: Vec<Arc<BpfProg>>,
    pub maps: Vec<Arc<BpfMap>>,
    /// Global variables: name, map index, offset, size.
    pub globals: Vec<bpf::object::GlobalVar>,
}

struct Registry {
    objects: Vec<Object>,
    next_prog_id: u32,
    next_map_id: u32,
}

static REGISTRY: spin::Mutex<Registry> = spin::Mutex::new(Registry { objects: Vec::new(), next_prog_id: 1, next_map_id: 1 });

/// Why an object was not loaded (nothing of it is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// QEMU was given no such file (`opt/loongtrace/bpf/<name>.bpf.o`).
    NotFound(String),
    /// The file is larger than [`MAX_OBJECT_BYTES`].
    TooLarge(usize),
    /// An object of this name is loaded already.
    Exists(String),
    /// The object cannot be read (`bpf::object`).
    Object(ObjectError),
    /// A map cannot be made.
    Map { name: String, error: DefError },
    /// A global-data map cannot be filled with its initial value.
    MapInit { name: String, error: MapError },
    /// A program's code is not whole instructions.
    BadCode { prog: String },
    /// A non-GPL program calls a GPL-only helper.
    Gpl { prog: String, insn: usize, helper: u32 },
    /// The verifier refused a program.
    Verify { prog: String, section: String, error: VerifyError },
    /// A tracing program's target has no prototype (Linux: no BTF for it), or is not loaded.
    Target { prog: String, target: String },
}

impl LoadError {
    /// The verifier's log of a refused program (empty for other errors).
    pub fn log(&self) -> &str {
        match self {
            LoadError::Verify { error, .. } => &error.log,
            _ => "",
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound(n) => write!(f, "no BPF object {n}: QEMU was given no fw_cfg file {FW_CFG_PREFIX}{n}.bpf.o"),
            LoadError::TooLarge(n) => write!(f, "the object is {n} bytes, more than {MAX_OBJECT_BYTES}"),
            LoadError::Exists(n) => write!(f, "object {n} is loaded already (bpf obj unload {n} first)"),
            LoadError::Object(e) => write!(f, "{e}"),
            LoadError::Map { name, error } => write!(f, "map {name}: {error}"),
            LoadError::MapInit { name, error } => write!(f, "map {name}: cannot set its initial value: {error}"),
            LoadError::BadCode { prog } => write!(f, "program {prog}: its code is not whole instructions"),
            LoadError::Gpl { prog, insn, helper } => write!(
                f,
                "program {prog}: insn {insn}: cannot call GPL-restricted function {}#{helper} from non-GPL compatible program",
                bpf::insn::helper_name(*helper).unwrap_or("unknown")
            ),
            LoadError::Verify { prog, section, error } => write!(f, "program {prog} ({section}) refused by the verifier: {error}"),
            LoadError::Target { prog, target } => write!(
                f,
                "program {prog}: attach target {target}: no prototype for it (the kernel's test functions and functions a loaded module lists with bpf_protos! have one)"
            ),
        }
    }
}

/// Why an unload did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnloadError {
    NotLoaded(String),
}

impl fmt::Display for UnloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnloadError::NotLoaded(n) => write!(f, "object {n} is not loaded"),
        }
    }
}

/// What a load made: the object's name and the ids of its programs and maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    pub progs: Vec<u32>,
    pub maps: Vec<u32>,
}

/// The name an object is asked for by: `maps_test`, `maps_test.bpf.o`, `maps_test.o` or a path
/// ending in one of them.
pub fn object_stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.strip_suffix(".bpf.o").or_else(|| base.strip_suffix(".o")).unwrap_or(base)
}

/// The BPF objects QEMU was given, as (name without `.bpf.o`, size), in fw_cfg order.
pub fn fw_cfg_objects() -> Vec<(String, usize)> {
    let mut v = Vec::new();
    arch::fw_cfg::for_each_file(|name, size, _| {
        if let Some(file) = name.strip_prefix(FW_CFG_PREFIX) {
            v.push((object_stem(file).to_string(), size));
        }
    });
    v
}

/// Reads object `name` (see [`object_stem`]) from fw_cfg.
pub fn fw_cfg_read(name: &str) -> Result<Vec<u8>, LoadError> {
    let stem = object_stem(name);
    let mut found = None;
    arch::fw_cfg::for_each_file(|n, size, key| {
        if found.is_none() && n.strip_prefix(FW_CFG_PREFIX).is_some_and(|f| object_stem(f) == stem) {
            found = Some((size, key));
        }
    });
    let (size, key) = found.ok_or_else(|| LoadError::NotFound(stem.to_string()))?;
    if size > MAX_OBJECT_BYTES {
        return Err(LoadError::TooLarge(size));
    }
    let mut buf = alloc::vec![0u8; size];
    arch::fw_cfg::read_item(key, &mut buf);
    Ok(buf)
}

/// CPUs a per-CPU map has a value for: every CPU that is online (their ids are below this).
pub fn map_cpus() -> u32 {
    (64 - crate::cpu::online_mask().leading_zeros()).max(1)
}

/// Loads object `name` from fw_cfg; see [`load_bytes`].
pub fn load(name: &str) -> Result<Loaded, LoadError> {
    let bytes = fw_cfg_read(name)?;
    load_bytes(&alloc::format!("{}.bpf.o", object_stem(name)), &bytes)
}

fn map_info(def: &MapDef) -> MapInfo {
    let kind = match def.map_type {
        map_type::HASH => MapKind::Hash,
        map_type::ARRAY => MapKind::Array,
        map_type::PERCPU_ARRAY => MapKind::PercpuArray,
        map_type::RINGBUF => MapKind::Ringbuf,
        t => MapKind::Other(t),
    };
    MapInfo { kind, key_size: def.key_size, value_size: def.value_size, max_entries: def.max_entries }
}

/// Loads an object from its bytes (`file` is its file name, which names the object as libbpf
/// names it: `maps_test.bpf.o` is `maps_test`). All or nothing: on an error nothing of it is
/// kept and no id is used.
pub fn load_bytes(file: &str, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let plan = LoadPlan::parse(file, bytes).map_err(LoadError::Object)?;
    if is_loaded(&plan.name) {
        return Err(LoadError::Exists(plan.name));
    }
    let ncpus = map_cpus();
    let cpu = arch::cpu::id() as u32 % ncpus;
    // The maps, filled and frozen as libbpf leaves global data.
    let mut maps: Vec<Arc<Map>> = Vec::with_capacity(plan.maps.len());
    for spec in &plan.maps {
        let def = MapDef::new(spec.map_type, spec.key_size, spec.value_size, spec.max_entries, spec.flags);
        let map = Map::new(&spec.name, def, ncpus).map_err(|error| LoadError::Map { name: spec.name.clone(), error })?;
        if let MapOrigin::Global { .. } = spec.origin {
            let init = |error| LoadError::MapInit { name: spec.name.clone(), error };
            map.update_user(&0u32.to_ne_bytes(), &spec.initial, BPF_ANY, cpu).map_err(init)?;
            if spec.flags & BPF_F_RDONLY_PROG != 0 {
                map.freeze().map_err(init)?;
            }
        }
        maps.push(Arc::new(map));
    }
    let infos: Vec<MapInfo> = maps.iter().map(|m| map_info(m.def())).collect();
    let gpl = plan.gpl_compatible();
    // Every program, verified for its attach kind.
    let mut progs = Vec::with_capacity(plan.programs.len());
    for spec in &plan.programs {
        let bytes: Vec<u8> = spec.insns.iter().flat_map(|w| w.to_le_bytes()).collect();
        let insns = bpf::insn::decode(&bytes).map_err(|_| LoadError::BadCode { prog: spec.name.clone() })?;
        if !gpl {
            if let Some((insn, helper)) = insns.iter().enumerate().find_map(|(i, x)| {
                (x.code == bpf::insn::BPF_JMP | bpf::insn::BPF_CALL && x.src == 0 && GPL_ONLY_HELPERS.contains(&(x.imm as u32)))
                    .then_some((i, x.imm as u32))
            }) {
                return Err(LoadError::Gpl { prog: spec.name.clone(), insn, helper });
            }
        }
        let nargs = match (has_func_helpers(spec.kind), &spec.target) {
            (false, _) => None,
            (true, Some(t)) if btf::nargs_of(t).is_some() && target_addr(t).is_some() => btf::nargs_of(t),
            (true, t) => return Err(LoadError::Target { prog: spec.name.clone(), target: t.clone().unwrap_or_default() }),
        };
        let info = ProgInfo { ctx_size: ctx_size(spec.kind), maps: infos.clone(), func_helpers: has_func_helpers(spec.kind) };
        let verified = bpf::verifier::verify(&insns, &info)
            .map_err(|error| LoadError::Verify { prog: spec.name.clone(), section: spec.section.clone(), error })?;
        let mut used: Vec<usize> = spec.map_refs().iter().map(|r| r.map).collect();
        used.sort_unstable();
        used.dedup();
        progs.push((spec, insns, used, verified.processed, nargs));
    }
    // Everything made: ids, and the registry.
    let mut reg = REGISTRY.lock();
    if reg.objects.iter().any(|o| o.name == plan.name) {
        return Err(LoadError::Exists(plan.name));
    }
    let map_ids: Vec<u32> = (0..maps.len() as u32).map(|i| reg.next_map_id + i).collect();
    reg.next_map_id += maps.len() as u32;
    let bpf_maps: Vec<Arc<BpfMap>> = maps
        .iter()
        .zip(&plan.maps)
        .zip(&map_ids)
        .map(|((m, spec), &id)| Arc::new(BpfMap { id, object: plan.name.clone(), origin: spec.origin.clone(), map: m.clone() }))
        .collect();
    let mut bpf_progs = Vec::with_capacity(progs.len());
    for (spec, insns, used, processed, nargs) in progs {
        let id = reg.next_prog_id;
        reg.next_prog_id += 1;
        let mut prog = BpfProg {
            id,
            name: spec.name.clone(),
            section: spec.section.clone(),
            kind: spec.kind,
            target: spec.target.clone(),
            offset: spec.offset,
            object: plan.name.clone(),
            gpl,
            insns,
            maps: maps.clone(),
            map_ids: map_ids.clone(),
            used_maps: used.iter().map(|&i| map_ids[i]).collect(),
            ctx_size: ctx_size(spec.kind),
            verified_insns: processed,
            nargs,
            jited: None,
            jit_error: None,
            misses: Default::default(),
        };
        prog.compile(spec.target.as_deref().and_then(target_addr));
        bpf_progs.push(Arc::new(prog));
    }
    let loaded = Loaded { name: plan.name.clone(), progs: bpf_progs.iter().map(|p| p.id).collect(), maps: map_ids.clone() };
    reg.objects.push(Object {
        name: plan.name.clone(),
        file: file.to_string(),
        license: plan.license.clone(),
        progs: bpf_progs,
        maps: bpf_maps,
        globals: plan.globals.clone(),
    });
    drop(reg);
    log::debug!("bpf: loaded {} (prog ids {:?}, map ids {:?})", loaded.name, loaded.progs, loaded.maps);
    Ok(loaded)
}

/// A program made from instructions rather than an object (Linux's `BPF_PROG_LOAD` of raw
/// instructions), for `kind` with `maps` as its maps (index = the `ld_imm64` map number),
/// verified; not in the registry (id 0, object `-`).
pub fn program(name: &str, kind: ProgKind, insns: Vec<Insn>, maps: Vec<Arc<Map>>) -> Result<BpfProg, VerifyError> {
    let info = ProgInfo { ctx_size: ctx_size(kind), maps: maps.iter().map(|m| map_info(m.def())).collect(), func_helpers: has_func_helpers(kind) };
    let verified = bpf::verifier::verify(&insns, &info)?;
    let mut p = unverified(name, kind, insns, maps);
    p.verified_insns = verified.processed;
    Ok(p)
}

/// [`program`] without the verifier: only for tests of what the environment itself refuses.
pub fn unverified(name: &str, kind: ProgKind, insns: Vec<Insn>, maps: Vec<Arc<Map>>) -> BpfProg {
    BpfProg {
        id: 0,
        name: name.to_string(),
        section: kind.name().to_string(),
        kind,
        target: None,
        offset: 0,
        object: "-".to_string(),
        gpl: true,
        insns,
        map_ids: alloc::vec![0; maps.len()],
        used_maps: Vec::new(),
        maps,
        ctx_size: ctx_size(kind),
        verified_insns: 0,
        nargs: None,
        jited: None,
        jit_error: Some(String::from("not compiled (a program made from instructions)")),
        misses: Default::default(),
    }
}

/// [`program`] for `target` (a function with a prototype, for a tracing program), compiled by
/// the JIT when it is on: what [`link::attach`] takes, as a loaded object's program.
pub fn program_for(name: &str, kind: ProgKind, target: &str, insns: Vec<Insn>, maps: Vec<Arc<Map>>) -> Result<BpfProg, String> {
    let mut p = program(name, kind, insns, maps).map_err(|e| alloc::format!("{e}"))?;
    p.section = alloc::format!("{}/{target}", kind.name());
    p.target = Some(target.to_string());
    if has_func_helpers(kind) {
        p.nargs = Some(btf::nargs_of(target).ok_or_else(|| alloc::format!("no prototype for {target}"))?);
    }
    p.jit_error = None;
    p.compile(target_addr(target));
    Ok(p)
}

/// Drops object `name`: its programs and maps leave the registry (their memory goes when the
/// last run that holds them returns).
pub fn unload(name: &str) -> Result<(), UnloadError> {
    let stem = object_stem(name);
    let obj = {
        let mut reg = REGISTRY.lock();
        let i = reg.objects.iter().position(|o| o.name == stem).ok_or_else(|| UnloadError::NotLoaded(stem.to_string()))?;
        reg.objects.remove(i)
    };
    drop(obj);
    log::debug!("bpf: unloaded {stem}");
    Ok(())
}

/// Makes the elements deleted from (or replaced in) the registry's hash maps reusable, at a
/// quiescent point ([`env::quiescent`]: no program run in progress); `None` when a run is in
/// progress, else how many elements it gave back. Called after every run and after the shell's
/// map commands.
pub fn reclaim_deleted() -> Option<u32> {
    // Attached programs run without the gate (JITed code), so while any is attached nothing is
    // reused; detaching the last one reclaims (`link::detach`). No attachment starts meanwhile.
    link::while_none_attached(|| {
        let hashes: Vec<Arc<BpfMap>> = maps().into_iter().filter(|m| m.map.map_type() == bpf::maps::MapType::Hash).collect();
        let mut n = 0;
        env::quiescent(|| {
            for m in &hashes {
                n += m.map.reclaim(arch::cpu::id() as u32 % m.map.ncpus()).unwrap_or(0);
            }
        })
        .then_some(n)
    })
    .flatten()
}

/// Drops every object (recovery after a test case that was abandoned).
pub fn unload_all() {
    let objects = core::mem::take(&mut REGISTRY.lock().objects);
    drop(objects);
}

/// Whether an object of this name is loaded.
pub fn is_loaded(name: &str) -> bool {
    let stem = object_stem(name);
    REGISTRY.lock().objects.iter().any(|o| o.name == stem)
}

/// The loaded objects' names, in load order.
pub fn objects() -> Vec<String> {
    REGISTRY.lock().objects.iter().map(|o| o.name.clone()).collect()
}

/// Every program, by id.
pub fn progs() -> Vec<Arc<BpfProg>> {
    let mut v: Vec<_> = REGISTRY.lock().objects.iter().flat_map(|o| o.progs.iter().cloned()).collect();
    v.sort_by_key(|p| p.id);
    v
}

/// Every map, by id.
pub fn maps() -> Vec<Arc<BpfMap>> {
    let mut v: Vec<_> = REGISTRY.lock().objects.iter().flat_map(|o| o.maps.iter().cloned()).collect();
    v.sort_by_key(|m| m.id);
    v
}

/// Program `id`.
pub fn prog(id: u32) -> Option<Arc<BpfProg>> {
    REGISTRY.lock().objects.iter().flat_map(|o| o.progs.iter()).find(|p| p.id == id).cloned()
}

/// Map `id`.
pub fn map(id: u32) -> Option<Arc<BpfMap>> {
    REGISTRY.lock().objects.iter().flat_map(|o| o.maps.iter()).find(|m| m.id == id).cloned()
}

/// Program `name` of object `object`.
pub fn prog_named(object: &str, name: &str) -> Option<Arc<BpfProg>> {
    let reg = REGISTRY.lock();
    let o = reg.objects.iter().find(|o| o.name == object_stem(object))?;
    o.progs.iter().find(|p| p.name == name).cloned()
}

/// Map `name` of object `object` (`pairs`, `fentry_t.bss`).
pub fn map_named(object: &str, name: &str) -> Option<Arc<BpfMap>> {
    let reg = REGISTRY.lock();
    let o = reg.objects.iter().find(|o| o.name == object_stem(object))?;
    o.maps.iter().find(|m| m.map.name() == name).cloned()
}

/// The bytes of global variable `var` of object `object` now (libbpf's skeleton reads them the
/// same way, through the global-data map's value).
pub fn global(object: &str, var: &str) -> Option<Vec<u8>> {
    let (map, offset, size) = {
        let reg = REGISTRY.lock();
        let o = reg.objects.iter().find(|o| o.name == object_stem(object))?;
        let g = o.globals.iter().find(|g| g.name == var)?;
        (o.maps.get(g.map)?.map.clone(), g.offset as usize, g.size as usize)
    };
    let value = map.lookup_user_vec(&0u32.to_ne_bytes(), arch::cpu::id() as u32 % map.ncpus()).ok()?;
    value.get(offset..offset + size).map(<[u8]>::to_vec)
}

/// A global variable of up to 8 bytes as a little-endian number.
pub fn global_u64(object: &str, var: &str) -> Option<u64> {
    let b = global(object, var)?;
    (b.len() <= 8).then(|| b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
}

/// Sets global variable `var` of object `object` (as a loader fills `.data`/`.bss` before a
/// run); `.rodata` is frozen and refuses (`EPERM`).
pub fn set_global(object: &str, var: &str, bytes: &[u8]) -> Result<(), MapError> {
    let (map, offset, size) = {
        let reg = REGISTRY.lock();
        let o = reg.objects.iter().find(|o| o.name == object_stem(object)).ok_or(MapError::NoEnt)?;
        let g = o.globals.iter().find(|g| g.name == var).ok_or(MapError::NoEnt)?;
        (o.maps.get(g.map).ok_or(MapError::NoEnt)?.map.clone(), g.offset as usize, g.size as usize)
    };
    if bytes.len() != size {
        return Err(MapError::Inval);
    }
    let cpu = arch::cpu::id() as u32 % map.ncpus();
    let mut value = map.lookup_user_vec(&0u32.to_ne_bytes(), cpu)?;
    value[offset..offset + size].copy_from_slice(bytes);
    map.update_user(&0u32.to_ne_bytes(), &value, BPF_ANY, cpu)
}

/// What the self-tests check after every case: no object left loaded.
pub const ISOLATION_CHECKS: &[(&str, fn() -> Result<(), String>)] =
    &[("bpf links detached", link::check_none_attached), ("bpf objects unloaded", check_none_loaded)];

fn check_none_loaded() -> Result<(), String> {
    let left = objects();
    if left.is_empty() { Ok(()) } else { Err(format!("BPF objects still loaded: {}", left.join(" "))) }
}
