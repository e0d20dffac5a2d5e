//! Suite `modules`: loading the sample modules into the module area (out of `bl` range of kernel
//! text), tracing their functions like kernel functions, both direct-call routes, reference
//! counts, bad input, and load/unload while other CPUs trace.

use super::abi_oracle;
use super::direct_tests::{call8, probe_addr, reset_seen, seen};
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::modload::{LoadError, reloc};
use crate::execmem::area as execmem;
use crate::module::{self, UnloadError};
use crate::{kassert, kassert_eq, kdiag, kfail, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use arch::insn::{self, Insn, Reg};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

type TestResult = crate::selftest::TestResult;

fn fail(what: &str) -> impl Fn(FtraceError) -> crate::selftest::TestError + '_ {
    move |e| crate::selftest::TestError::Fail(alloc::format!("{what}: {e}"))
}

/// The object of sample module `name` as QEMU handed it over.
fn object(name: &str) -> Result<Vec<u8>, crate::selftest::TestError> {
    module::fw_cfg_read(name).ok_or_else(|| {
        crate::selftest::TestError::Fail(alloc::format!(
            "no fw_cfg file {}{name}: boot with the sample modules (make build; ltrun and make test pass them)",
            module::FW_CFG_PREFIX
        ))
    })
}

/// Loads sample `name`; returns a reference (drop it before unloading).
pub(crate) fn load(name: &str) -> Result<module::ModuleRef, crate::selftest::TestError> {
    let bytes = object(name)?;
    // A case that failed half-way may have left it loaded; start clean.
    if module::unload(name).is_ok() {
        kdiag!("{name} was still loaded (left by an earlier failure); unloaded it");
    }
    match module::load(&bytes) {
        Ok(n) if n == name => {}
        Ok(n) => kfail!("loaded {n}, expected {name}"),
        Err(e) => kfail!("loading {name}: {e}"),
    }
    module::try_get(name).ok_or_else(|| crate::selftest::TestError::Fail("loaded module not found".into()))
}

/// Unloads `name` and checks nothing of it is left.
fn unload(name: &str, range: core::ops::Range<usize>) -> TestResult {
    if let Err(e) = module::unload(name) {
        kfail!("unloading {name}: {e}");
    }
    let mut left = 0;
    ftrace::core::for_each_site(|s| left += (s.module == name) as usize);
    kassert_eq!(left, 0, "sites of {name} left after unload");
    kassert!(!ftrace::core::filters_mention(range), "a filter still names a site of {name}");
    kassert!(module::try_get(name).is_none(), "{name} still loaded");
    if let Err(e) = ftrace::core::check_consistency() {
        kfail!("after unloading {name}: {e}");
    }
    Ok(())
}

fn func(m: &module::Module, name: &str) -> Result<u64, crate::selftest::TestError> {
    m.symbol(name).ok_or_else(|| crate::selftest::TestError::Fail(alloc::format!("{} has no symbol {name}", m.name)))
}

fn site_word(ip: u64) -> Insn {
    insn::decode(ip + 4, arch::patch::read_insn(ip + 4).unwrap_or(0))
}

/// Where the module's stub for `target` jumps (checks the stub really is a far jump there).
fn stub(m: &module::Module, ip: u64, target: u64) -> Result<u64, crate::selftest::TestError> {
    let s = crate::ftrace::stubs::stub_for(ip, target).ok_or_else(|| crate::selftest::TestError::Fail("no stub".into()))?;
    let words = [arch::patch::read_insn(s).unwrap_or(0), arch::patch::read_insn(s + 4).unwrap_or(0)];
    kassert_eq!(reloc::far_jump_target(s, words), target, "stub at {s:#x} of {}", m.name);
    Ok(s)
}

ktest! {
    /// sample_mod loads more than 128 MiB from kernel text, its functions are sites with their
    /// names and module, it runs, it is traced by the function tracer through its stubs, and it
    /// unloads leaving nothing behind.
    fn modules::load_trace_unload_sample_mod() {
        // Round 1 lets bookkeeping vectors reach their size with one module; round 2 must then
        // give back exactly what it took.
        let mut heap = [0; 3];
        heap[0] = crate::heap::used();
        load_trace_unload_round()?;
        heap[1] = crate::heap::used();
        let area0 = execmem::area_used();
        load_trace_unload_round()?;
        heap[2] = crate::heap::used();
        kdiag!("heap in use: {} before, {} after one round, {} after two", heap[0], heap[1], heap[2]);
        kassert_eq!(heap[2], heap[1], "heap returned");
        kassert_eq!(execmem::area_used(), area0, "module area returned");
        Ok(())
    }
}

fn load_trace_unload_round() -> TestResult {
    {
        let m = load("sample_mod")?;
        let range = m.site_range();
        let work = func(&m, "sample_mod_work")?;
        let (ktext, _) = arch::patch::text_bounds();
        let dist = execmem::distance_from_kernel_text(m.base);
        kdiag!("sample_mod at {:#x}: {} MiB from kernel text at {ktext:#x}; ftrace_caller {} MiB away", m.base, dist >> 20,
            work.abs_diff(arch::ftrace::addr::caller()) >> 20);
        kassert!(dist > insn::B_REACH, "module text within bl reach of kernel text");
        kassert!(!insn::bl_reachable(work + 4, arch::ftrace::addr::caller()), "a module site reaches ftrace_caller");
        let mut names = Vec::new();
        ftrace::core::for_each_site(|s| if s.module == "sample_mod" { names.push(s.site.name) });
        for f in ["sample_mod_add", "sample_mod_step", "sample_mod_work", "sample_mod_oracle"] {
            kassert!(names.contains(&f), "{f} is not a site: {names:?}");
        }
        // SAFETY: sample_mod_work is `extern "C" fn(u64) -> u64`; the reference keeps it loaded.
        let work_fn: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(work) };
        let shared0 = module::exports::lt_shared_counter.load(Relaxed);
        let expect = work_fn(3);
        kassert_eq!(module::exports::lt_shared_counter.load(Relaxed), shared0 + 1, "module wrote kernel data");
        // The function tracer on every function of the module (Linux's `:mod:` form).
        ftrace::tracer::reset_buffers();
        ftrace::tracer::start(Some("*:mod:sample_mod")).map_err(fail("function tracer"))?;
        let w = site_word(work);
        let got = work_fn(3);
        let _ = ftrace::tracer::stop();
        let c = ftrace::tracer::collect();
        kassert_eq!(got, expect, "traced result");
        let caller = ftrace::core::fast_caller();
        kassert_eq!(w, Insn::Bl { target: stub(&m, work, caller)? }, "enabled module site calls its stub");
        let evs: Vec<&str> = c.events.iter().map(|e| ftrace::tracer::short_name(e.ip)).collect();
        kdiag!("traced: {evs:?}");
        kassert_eq!(evs, ["sample_mod_work", "sample_mod_step", "sample_mod_add", "sample_mod_step", "sample_mod_add", "sample_mod_step", "sample_mod_add"]);
        kassert_eq!(site_word(work), Insn::Nop, "disabled again");
        // The other `:mod:` forms, and mistakes in them.
        kassert!(matches!(ftrace::ftrace_set_filter(&OPS[0], "*:mod:no_such_module", true), Err(FtraceError::NoMatch(_))));
        kassert!(matches!(ftrace::ftrace_set_filter(&OPS[0], "sample_mod_add:mod:", true), Err(FtraceError::BadFilter(_))));
        kassert!(matches!(ftrace::ftrace_set_filter(&OPS[0], "patch_target_a:mod:sample_mod", true), Err(FtraceError::NoMatch(_))), "kernel functions are in no module");
        ftrace::ftrace_set_filter(&OPS[0], ":mod:sample_mod", true).map_err(fail("filter"))?;
        ftrace::ftrace_set_filter(&OPS[0], "!sample_mod_add:mod:sample_mod", false).map_err(fail("filter"))?;
        OPS[0].private.store(0, Relaxed);
        ftrace::register_ftrace_function(&OPS[0]).map_err(fail("register"))?;
        let add = func(&m, "sample_mod_add")?;
        let (w_work, w_add) = (site_word(work), site_word(add));
        let _ = work_fn(1);
        let _ = ftrace::unregister_ftrace_function(&OPS[0]);
        let _ = ftrace::ftrace_reset_filters(&OPS[0]);
        kassert!(w_work != Insn::Nop && w_add == Insn::Nop, "`!func:mod:` removed only sample_mod_add: {w_work:?} {w_add:?}");
        kassert_eq!(OPS[0].private.load(Relaxed), 2, "work and step traced, add not");
        drop(m);
        unload("sample_mod", range)
    }
}

ktest! {
    /// The function_graph tracer on module functions: entries and returns nest as called.
    fn modules::graph_on_module() {
        let m = load("sample_mod")?;
        let range = m.site_range();
        let work = func(&m, "sample_mod_work")?;
        // SAFETY: as above.
        let work_fn: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(work) };
        ftrace::tracer::reset_buffers();
        let cfg = ftrace::graph_tracer::GraphConfig { ftrace_filter: Some("sample_mod_work:mod:sample_mod sample_mod_step:mod:sample_mod"), ..Default::default() };
        let r = ftrace::graph_tracer::start(&cfg).map_err(fail("graph"));
        let v = work_fn(2);
        let _ = ftrace::graph_tracer::stop();
        r?;
        let c = ftrace::tracer::collect();
        let seq: Vec<(u8, &str, u16)> = c.events.iter().map(|e| (e.kind, ftrace::tracer::short_name(e.ip), e.depth)).collect();
        use crate::ringbuf::{KIND_GRAPH_ENTRY as E, KIND_GRAPH_RETURN as R};
        kassert_eq!(seq, [(E, "sample_mod_work", 0), (E, "sample_mod_step", 1), (R, "sample_mod_step", 1), (E, "sample_mod_step", 1), (R, "sample_mod_step", 1), (R, "sample_mod_work", 0)]);
        kassert_eq!(c.events.last().map(|e| e.parent), Some(v), "return value recorded");
        drop(m);
        unload("sample_mod", range)
    }
}

ktest! {
    /// sample_far: kernel data through its GOT, a table of absolute function pointers; its
    /// functions traced by the function and graph tracers.
    fn modules::sample_far_got_and_pointers() {
        let m = load("sample_far")?;
        let range = m.site_range();
        let apply = func(&m, "sample_far_apply")?;
        // SAFETY: `extern "C" fn(u64, u64) -> u64`, kept loaded by the reference.
        let apply_fn: extern "C" fn(u64, u64) -> u64 = unsafe { core::mem::transmute(apply) };
        let c0 = module::exports::lt_shared_counter.load(Relaxed);
        let r = [apply_fn(0, 21), apply_fn(1, 9), apply_fn(2, 5)];
        kassert_eq!(r, [42, 81, 5u64.wrapping_neg()]);
        kassert_eq!(module::exports::lt_shared_counter.load(Relaxed), c0 + 3);
        // The function tracer on every function of sample_far: the calls through its pointer
        // table are traced like direct calls.
        ftrace::tracer::reset_buffers();
        ftrace::tracer::start(Some("*:mod:sample_far")).map_err(fail("function tracer"))?;
        let traced = [apply_fn(0, 4), apply_fn(1, 4)];
        let _ = ftrace::tracer::stop();
        kassert_eq!(traced, [8, 16], "traced results");
        let c = ftrace::tracer::collect();
        let evs: Vec<(&str, &str)> = c.events.iter().map(|e| (ftrace::tracer::short_name(e.ip), ftrace::tracer::short_name(e.parent))).collect();
        kdiag!("traced: {evs:?}");
        kassert_eq!(evs.iter().map(|e| e.0).collect::<Vec<_>>(), ["sample_far_apply", "sample_far_double", "sample_far_apply", "sample_far_square"]);
        kassert_eq!(evs[1].1, "sample_far_apply", "the parent of a call through the table");
        // The graph tracer: entries and returns nest, return values recorded.
        ftrace::tracer::reset_buffers();
        let cfg = ftrace::graph_tracer::GraphConfig { ftrace_filter: Some("*:mod:sample_far"), ..Default::default() };
        let g = ftrace::graph_tracer::start(&cfg).map_err(fail("graph"));
        let v = apply_fn(2, 7);
        let _ = ftrace::graph_tracer::stop();
        g?;
        kassert_eq!(v, 7u64.wrapping_neg());
        let c = ftrace::tracer::collect();
        let seq: Vec<(u8, &str, u16, u64)> = c.events.iter().map(|e| (e.kind, ftrace::tracer::short_name(e.ip), e.depth, if e.kind == crate::ringbuf::KIND_GRAPH_RETURN { e.parent } else { 0 })).collect();
        use crate::ringbuf::{KIND_GRAPH_ENTRY as E, KIND_GRAPH_RETURN as R};
        kassert_eq!(seq, [(E, "sample_far_apply", 0, 0), (E, "sample_far_negate", 1, 0), (R, "sample_far_negate", 1, v), (R, "sample_far_apply", 0, v)]);
        drop(m);
        unload("sample_far", range)
    }
}

extern "C" fn count_cb(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}
// count_cb, poisoning every caller-saved register on return while poisoning is on.
super::poison::poisoning_fn!(fn loongtrace_module_count_cb(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) => count_cb);
static OPS: [FtraceOps; 3] = [
    FtraceOps::new(loongtrace_module_count_cb, OpsFlags::empty()),
    FtraceOps::new(loongtrace_module_count_cb, OpsFlags::RECURSION),
    FtraceOps::new(loongtrace_module_count_cb, OpsFlags::RECURSION),
];
static REGS_OPS: FtraceOps = FtraceOps::new(loongtrace_module_count_cb, OpsFlags::SAVE_REGS.union(OpsFlags::RECURSION));
static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

/// `n` instructions of code in the module area within `bl` reach of `near`, made by `words` from
/// the address they land at.
fn tramp_code(near: u64, n: usize, words: impl Fn(u64) -> Option<Vec<u32>>) -> Result<execmem::ExecMem, crate::selftest::TestError> {
    let mem = execmem::alloc_exec_near(near, 4 * n, 8).map_err(|e| crate::selftest::TestError::Fail(alloc::format!("alloc_exec: {e}")))?;
    let Some(code) = words(mem.addr).filter(|c| c.len() == n) else {
        // SAFETY: never executed or published.
        unsafe { execmem::free_exec(mem) };
        kfail!("cannot encode the trampoline");
    };
    for (k, word) in code.iter().enumerate() {
        let _ = arch::patch::patch_insn(mem.addr + 4 * k as u64, 0, *word);
    }
    crate::smp::sync_all_cpus();
    Ok(mem)
}

/// A direct trampoline in the module area: `pcaddu18i t1; jirl zero, t1` to `target` (so it
/// behaves exactly as `target`, which may clobber t1 anyway), reachable from module sites.
fn far_tramp(near: u64, target: u64) -> Result<execmem::ExecMem, crate::selftest::TestError> {
    tramp_code(near, 2, |at| reloc::far_jump(at, target).ok().map(|w| w.to_vec()))
}

/// A do-nothing direct trampoline (`move t1, ra; move ra, t0; jr t1`) in the module area.
fn stub_tramp(near: u64) -> Result<execmem::ExecMem, crate::selftest::TestError> {
    tramp_code(near, 3, |_| Some(alloc::vec![insn::encode_move(Reg::T1, Reg::Ra), insn::encode_move(Reg::Ra, Reg::T0), insn::encode_jr(Reg::T1)]))
}

fn free_tramp(mem: execmem::ExecMem) {
    if ftrace::quiesce::synchronize_trampolines() {
        // SAFETY: detached before this was called, and no CPU is inside it any more.
        unsafe { execmem::free_exec(mem) };
    }
}

fn oracle_fn(addr: u64) -> extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64 {
    // SAFETY: sample_mod_oracle has this signature; callers keep the module loaded.
    unsafe { core::mem::transmute(addr) }
}

/// The ABI oracle on sample_mod_oracle in one mode, set up by `on` and torn down by `off`.
fn oracle_mode(what: &str, ip: u64, on: impl FnOnce() -> Result<(), FtraceError>, off: impl FnOnce(), want_calls: &[&FtraceOps]) -> TestResult {
    for o in want_calls {
        o.private.store(0, Relaxed);
    }
    let r = on().map_err(fail(what));
    let word = site_word(ip);
    let r = r.and_then(|_| abi_oracle::check(what, oracle_fn(ip)));
    off();
    r?;
    kdiag!("{what}: site word {word:?}");
    kassert!(word != Insn::Nop, "{what}: site not enabled");
    for o in want_calls {
        kassert_eq!(o.private.load(Relaxed), 1, "{what}: callbacks");
    }
    Ok(())
}

ktest! {
    /// abi_oracle on a module function in every mode: one ops, three ops, SAVE_REGS, direct on
    /// both routes, graph, graph + direct; with polite and with poisoning probes.
    fn modules::abi_oracle_on_module_function() {
        let m = load("sample_mod")?;
        let range = m.site_range();
        let ip = func(&m, "sample_mod_oracle")?;
        // Every mode with polite probes, then with probes that poison every caller-saved
        // register before they return (the ops callbacks and the graph hooks).
        let r = super::poison::each_flavour(|_| {
            let set = |o: &'static FtraceOps| ftrace::ftrace_set_filter_ip(o, ip, false, true);
            let reset = |o: &'static FtraceOps| { let _ = ftrace::unregister_ftrace_function(o); let _ = ftrace::ftrace_reset_filters(o); };
            abi_oracle::check("module, disabled", oracle_fn(ip))?;
            oracle_mode("module, one ops", ip, || set(&OPS[0]).and_then(|_| ftrace::register_ftrace_function(&OPS[0])), || reset(&OPS[0]), &[&OPS[0]])?;
            oracle_mode(
                "module, three ops", ip,
                || OPS.iter().try_for_each(|o| set(o).and_then(|_| ftrace::register_ftrace_function(o))),
                || OPS.iter().for_each(|o| reset(o)),
                &[&OPS[0], &OPS[1], &OPS[2]],
            )?;
            oracle_mode("module, SAVE_REGS", ip, || set(&REGS_OPS).and_then(|_| ftrace::register_ftrace_function(&REGS_OPS)), || reset(&REGS_OPS), &[&REGS_OPS])?;
            // Direct, straight: a do-nothing trampoline in the module area.
            let t = stub_tramp(ip)?;
            let ta = t.addr;
            let r = oracle_mode("module, direct straight", ip, || set(&DIRECT).and_then(|_| ftrace::register_ftrace_direct(&DIRECT, ta)), || {}, &[]);
            let w = site_word(ip);
            let _ = ftrace::unregister_ftrace_direct(&DIRECT, ta);
            let _ = ftrace::ftrace_reset_filters(&DIRECT);
            free_tramp(t);
            r?;
            kassert_eq!(w, Insn::Bl { target: ta }, "straight route");
            // Direct through ftrace_regs_caller: kernel text's stub trampoline is out of reach.
            let kt = arch::ftrace::addr::stub_direct_tramp();
            let r = oracle_mode("module, direct via regs", ip, || set(&DIRECT).and_then(|_| ftrace::register_ftrace_direct(&DIRECT, kt)), || {}, &[]);
            let w = site_word(ip);
            let _ = ftrace::unregister_ftrace_direct(&DIRECT, kt);
            let _ = ftrace::ftrace_reset_filters(&DIRECT);
            r?;
            kassert_eq!(w, Insn::Bl { target: stub(&m, ip, arch::ftrace::addr::regs_caller())? }, "regs route through the stub");
            for direct in [false, true] {
                let what = if direct { "module, graph + direct" } else { "module, graph" };
                ftrace::tracer::reset_buffers();
                let r = oracle_mode(what, ip, || {
                    if direct {
                        set(&DIRECT).and_then(|_| ftrace::register_ftrace_direct(&DIRECT, kt))?;
                    }
                    let cfg = ftrace::graph_tracer::GraphConfig { ftrace_filter: Some("sample_mod_oracle:mod:sample_mod"), ..Default::default() };
                    ftrace::graph_tracer::start(&cfg)
                }, || {
                    let _ = ftrace::graph_tracer::stop();
                    let _ = ftrace::unregister_ftrace_direct(&DIRECT, kt);
                    let _ = ftrace::ftrace_reset_filters(&DIRECT);
                }, &[]);
                r?;
                let c = ftrace::tracer::collect();
                let kinds: Vec<(u8, u64)> = c.events.iter().map(|e| (e.kind, e.ip)).collect();
                kassert_eq!(kinds, [(crate::ringbuf::KIND_GRAPH_ENTRY, ip), (crate::ringbuf::KIND_GRAPH_RETURN, ip)], "{what}: graph events");
            }
            Ok(())
        });
        drop(m);
        unload("sample_mod", range)?;
        r
    }
}

const ARGS: [u64; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

ktest! {
    /// The same probe trampoline attached to a module function by both routes: from kernel text
    /// (out of reach: through the stub and ftrace_regs_caller) and from the module area
    /// (straight): it sees the same t0, ra, sp and arguments.
    fn modules::probe_sees_the_same_on_both_routes() {
        let m = load("sample_mod")?;
        let range = m.site_range();
        let ip = func(&m, "sample_mod_oracle")?;
        let near = far_tramp(ip, probe_addr())?;
        let near_addr = near.addr;
        let mut seen_by = Vec::new();
        let mut result = Ok(());
        for (route, tramp) in [("regs route (kernel-text probe)", probe_addr()), ("straight (module-area trampoline)", near.addr)] {
            let r = ftrace::ftrace_set_filter_ip(&DIRECT, ip, false, true).and_then(|_| ftrace::register_ftrace_direct(&DIRECT, tramp));
            if let Err(e) = r {
                result = Err(crate::selftest::TestError::Fail(alloc::format!("{route}: {e}")));
                break;
            }
            let w = site_word(ip);
            reset_seen();
            let ctx = call8(ip, ARGS);
            let s = seen();
            let _ = ftrace::unregister_ftrace_direct(&DIRECT, tramp);
            let _ = ftrace::ftrace_reset_filters(&DIRECT);
            kdiag!("{route}: site {w:?}, probe saw t0 {:#x} ra {:#x} sp {:#x}", s.t0, s.ra, s.sp);
            seen_by.push((route, w, s, ctx));
        }
        free_tramp(near);
        result?;
        for (route, w, s, ctx) in &seen_by {
            kassert_eq!(s.entries, 1, "{route}: probe entries");
            kassert_eq!(s.t0, ctx.ret_addr, "{route}: t0 = parent");
            kassert_eq!(s.ra, ip + 8, "{route}: ra = body");
            kassert_eq!(s.sp, ctx.sp, "{route}: sp");
            kassert_eq!(s.args, ARGS, "{route}: arguments");
            kassert_eq!(ctx.ret, abi_oracle::abi_oracle_target(ARGS[0], ARGS[1], ARGS[2], ARGS[3], ARGS[4], ARGS[5], ARGS[6], ARGS[7]), "{route}: result");
            let _ = w;
        }
        let regs_stub = stub(&m, ip, arch::ftrace::addr::regs_caller())?;
        kassert_eq!(seen_by[0].1, Insn::Bl { target: regs_stub }, "kernel-text trampoline: regs route via the stub");
        kassert_eq!(seen_by[1].1, Insn::Bl { target: near_addr }, "module-area trampoline: straight");
        drop(m);
        unload("sample_mod", range)
    }
}

ktest! {
    /// Unload is refused while a reference, an ops or a direct trampoline uses the module, and
    /// allowed once they are gone.
    fn modules::unload_refused_while_in_use() {
        let m = load("sample_mod")?;
        let range = m.site_range();
        let ip = func(&m, "sample_mod_add")?;
        kassert!(matches!(module::unload("sample_mod"), Err(UnloadError::Busy(_, 1))), "refused while referenced");
        drop(m);
        ftrace::ftrace_set_filter(&OPS[1], "sample_mod_add:mod:sample_mod", true).map_err(fail("filter"))?;
        ftrace::register_ftrace_function(&OPS[1]).map_err(fail("register"))?;
        let r = module::unload("sample_mod");
        let _ = ftrace::unregister_ftrace_function(&OPS[1]);
        kassert!(matches!(r, Err(UnloadError::InUse(..))), "refused while an ops uses it: {r:?}");
        // An unregistered ops' filter does not hold the module, but loses the entry on unload.
        ftrace::ftrace_set_filter_ip(&DIRECT, ip, false, true).map_err(fail("direct filter"))?;
        ftrace::register_ftrace_direct(&DIRECT, arch::ftrace::addr::stub_direct_tramp()).map_err(fail("direct"))?;
        let r = module::unload("sample_mod");
        let _ = ftrace::unregister_ftrace_direct(&DIRECT, arch::ftrace::addr::stub_direct_tramp());
        let _ = ftrace::ftrace_reset_filters(&DIRECT);
        kassert!(matches!(r, Err(UnloadError::InUse(..))), "refused while a trampoline is attached: {r:?}");
        // A direct trampoline inside the module's image, attached to a kernel function (never
        // called here): the module cannot go while it is attached.
        let kfn = super::targets::patch_target_b as *const () as u64;
        ftrace::ftrace_set_filter_ip(&DIRECT, kfn, false, true).map_err(fail("direct filter"))?;
        ftrace::register_ftrace_direct(&DIRECT, ip).map_err(fail("direct in the module"))?;
        let r = module::unload("sample_mod");
        let _ = ftrace::unregister_ftrace_direct(&DIRECT, ip);
        let _ = ftrace::ftrace_reset_filters(&DIRECT);
        kdiag!("trampoline in the module: {r:?}");
        kassert!(matches!(r, Err(UnloadError::InUse(..))), "refused while a trampoline in it is attached: {r:?}");
        if let Err(e) = ftrace::core::check_consistency() {
            kfail!("after refused unloads: {e}");
        }
        kassert!(ftrace::core::filters_mention(range.clone()), "OPS[1] keeps its filter entry while loaded");
        unload("sample_mod", range)?;
        let _ = ftrace::ftrace_reset_filters(&OPS[1]);
        kassert!(matches!(module::unload("sample_mod"), Err(UnloadError::NotLoaded(_))));
        Ok(())
    }
}

/// Offsets of relocation entries of type `rtype` in `obj`.
fn relas_of(obj: &[u8], rtype: u32) -> Vec<usize> {
    let rd = |at: usize, n: usize| obj.get(at..at + n).map_or(0u64, |b| b.iter().rev().fold(0, |a, &x| a << 8 | x as u64));
    let (shoff, count) = (rd(0x28, 8) as usize, rd(0x3c, 2) as usize);
    let mut out = Vec::new();
    for k in 0..count {
        let sh = shoff + 64 * k;
        if rd(sh + 4, 4) == 4 {
            let (o, n) = (rd(sh + 24, 8) as usize, rd(sh + 32, 8) as usize / 24);
            out.extend((0..n).map(|i| o + 24 * i).filter(|&at| rd(at + 8, 4) == rtype as u64));
        }
    }
    out
}

ktest! {
    /// Bad objects: each a clear error, nothing loaded, nothing leaked, tracing intact.
    fn modules::bad_input_is_refused() {
        let good = object("sample_mod")?;
        // Warm-up (see load_trace_unload_sample_mod), then every bad load must leave the heap as is.
        let m = load("sample_mod")?;
        let range = m.site_range();
        drop(m);
        unload("sample_mod", range)?;
        let heap0 = crate::heap::used();
        let area0 = execmem::area_used();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        cases.push(("not ELF".into(), b"#!/bin/sh\necho not a module\n".to_vec()));
        let shoff = u64::from_le_bytes(good[0x28..0x30].try_into().unwrap_or([0; 8])) as usize;
        for cut in [0, 4, 16, 63, 64, shoff, shoff + 64, shoff + 640, good.len() - 1] {
            cases.push((alloc::format!("truncated at {cut}"), good[..cut.min(good.len())].to_vec()));
        }
        let mutate = |f: &dyn Fn(&mut Vec<u8>)| { let mut v = good.clone(); f(&mut v); v };
        cases.push(("wrong machine".into(), mutate(&|v| { v[18] = 62; v[19] = 0; })));
        cases.push(("32-bit class".into(), mutate(&|v| v[4] = 1)));
        cases.push(("ET_EXEC".into(), mutate(&|v| v[16] = 2)));
        let calls = relas_of(&good, reloc::R_LARCH_CALL36);
        kassert!(!calls.is_empty(), "sample_mod has CALL36 relocations");
        cases.push(("unknown relocation".into(), mutate(&|v| v[calls[0] + 8..calls[0] + 12].copy_from_slice(&201u32.to_le_bytes()))));
        cases.push(("B26 out of range".into(), mutate(&|v| for &c in &calls { v[c + 8..c + 12].copy_from_slice(&reloc::R_LARCH_B26.to_le_bytes()) })));
        let pos = good.windows(7).position(|w| w == b"lt_log\0").unwrap_or(0);
        cases.push(("undefined symbol".into(), mutate(&|v| v[pos + 3] = b'x')));
        // The .bss section made larger than the module area.
        let bss = (0..u16::from_le_bytes([good[0x3c], good[0x3d]]) as usize).map(|k| shoff + 64 * k).find(|&sh| good[sh + 4] == 8);
        if let Some(sh) = bss {
            cases.push(("section larger than the module area".into(), mutate(&|v| v[sh + 32..sh + 40].copy_from_slice(&(execmem::AREA_SIZE + 4096).to_le_bytes()))));
        }
        // Two passes: the first lets one-time bookkeeping reach its size, the second must
        // leave the heap exactly as it found it.
        let mut heap_pass = [0usize; 2];
        for pass in 0..2 {
        heap_pass[pass] = crate::heap::used();
        for (what, bytes) in &cases {
            let before = module::loaded();
            match module::load(bytes) {
                Ok(n) => {
                    let _ = module::unload(&n);
                    kfail!("{what}: loaded as {n}");
                }
                Err(e) => if pass == 0 { kdiag!("{what}: {e}") },
            }
            kassert_eq!(module::loaded(), before, "{what}: module list changed");
            kassert_eq!(execmem::area_used(), area0, "{what}: module area leaked");
        }
        }
        kassert_eq!(crate::heap::used(), heap_pass[1], "heap leaked by a refused load");
        drop(cases);
        // A duplicate name.
        let m = load("sample_mod")?;
        let range = m.site_range();
        let r = module::load(&good);
        drop(m);
        kdiag!("duplicate: {:?}", r);
        let dup = r == Err(LoadError::Duplicate("sample_mod".into()));
        drop(r);
        unload("sample_mod", range)?;
        kassert!(dup, "a second sample_mod is refused as a duplicate");
        kdiag!("heap in use: {heap0} at the start, {} after the duplicate", crate::heap::used());
        kassert_eq!(execmem::area_used(), area0, "module area leaked");
        Ok(())
    }
}

static STRESS_STOP: AtomicBool = AtomicBool::new(false);
const NCPU: usize = arch::boot::MAX_CPUS;
/// Per CPU: module calls and kernel calls the workers made, and callbacks seen for each.
static MOD_CALLS: [AtomicU64; NCPU] = [const { AtomicU64::new(0) }; NCPU];
static KERNEL_CALLS: [AtomicU64; NCPU] = [const { AtomicU64::new(0) }; NCPU];
static MOD_CBS: [AtomicU64; NCPU] = [const { AtomicU64::new(0) }; NCPU];
static KERNEL_CBS: [AtomicU64; NCPU] = [const { AtomicU64::new(0) }; NCPU];
/// Callbacks for a function the ops did not ask for.
static STRAY: AtomicU64 = AtomicU64::new(0);
static STRESS_BAD: AtomicU64 = AtomicU64::new(0);

/// Worker: calls a module function (through a counted reference, when the module is there) and
/// a traced kernel function, counting both.
fn stress_worker(cpu: usize) {
    let mut i = 0u64;
    while !STRESS_STOP.load(Acquire) {
        if let Some(m) = module::try_get("sample_mod")
            && let Some(f) = m.symbol("sample_mod_add")
        {
            // SAFETY: `extern "C" fn(u64, u64) -> u64`; the reference keeps the module loaded.
            let add: extern "C" fn(u64, u64) -> u64 = unsafe { core::mem::transmute(f) };
            if add(i, 7) != i.wrapping_add(7) {
                STRESS_BAD.fetch_add(1, Relaxed);
            }
            MOD_CALLS[cpu].fetch_add(1, Relaxed);
        }
        // Kernel calls between module calls leave the loader windows with no reference held.
        for k in 0..64 {
            if super::targets::patch_target_a(i + k) != (i + k).wrapping_add(1) {
                STRESS_BAD.fetch_add(1, Relaxed);
            }
        }
        KERNEL_CALLS[cpu].fetch_add(64, Relaxed);
        i += 1;
    }
}

/// Counts callbacks on `patch_target_a` per CPU.
extern "C" fn kernel_cb(ip: u64, _parent: u64, _ops: &FtraceOps, _regs: &mut FtraceRegs) {
    if ip == super::targets::patch_target_a as *const () as u64 {
        KERNEL_CBS[arch::cpu::id() % NCPU].fetch_add(1, Relaxed);
    } else {
        STRAY.fetch_add(1, Relaxed);
    }
}

/// Counts callbacks on module functions per CPU (its notrace list holds every kernel function).
extern "C" fn module_cb(ip: u64, _parent: u64, _ops: &FtraceOps, _regs: &mut FtraceRegs) {
    if execmem::in_area(ip) {
        MOD_CBS[arch::cpu::id() % NCPU].fetch_add(1, Relaxed);
    } else {
        STRAY.fetch_add(1, Relaxed);
    }
}

static KERNEL_OPS: FtraceOps = FtraceOps::new(kernel_cb, OpsFlags::RECURSION);
static MODULE_OPS: FtraceOps = FtraceOps::new(module_cb, OpsFlags::RECURSION);

/// Loads and unloads sample_mod `rounds` times while the other CPUs call `sample_mod_add` (when
/// they get a reference) and `patch_target_a`, with an ops counting the kernel calls and, with
/// `trace_module`, an ops that traces every module function as it loads. Every call is counted
/// by exactly one callback on its CPU; nothing leaks.
fn churn(rounds: u32, trace_module: bool, linger_calls: u64) -> TestResult {
    // One round first: bookkeeping vectors grow to their size with one module loaded.
    let m = load("sample_mod")?;
    let range = m.site_range();
    drop(m);
    unload("sample_mod", range)?;
    let bytes = object("sample_mod")?;
    // Filters are made before measuring the heap (they stay until the end).
    let mut r = ftrace::ftrace_set_filter(&KERNEL_OPS, "patch_target_a", true).map_err(fail("filter"));
    if trace_module && r.is_ok() {
        // Every function there is now: what loads later is all the ops traces.
        r = ftrace::ftrace_set_notrace(&MODULE_OPS, "*", true).map_err(fail("notrace"));
    }
    // The first registration of a boot allocates the published ops list: do it before measuring.
    r = r.and_then(|_| ftrace::register_ftrace_function(&KERNEL_OPS).map_err(fail("kernel ops")));
    let _ = ftrace::unregister_ftrace_function(&KERNEL_OPS);
    let heap0 = crate::heap::used();
    let area0 = execmem::area_used();
    STRESS_STOP.store(false, Release);
    STRESS_BAD.store(0, Relaxed);
    STRAY.store(0, Relaxed);
    for a in [&MOD_CALLS, &KERNEL_CALLS, &MOD_CBS, &KERNEL_CBS] {
        a.iter().for_each(|c| c.store(0, Relaxed));
    }
    r = r.and_then(|_| ftrace::register_ftrace_function(&KERNEL_OPS).map_err(fail("kernel ops")));
    if trace_module {
        r = r.and_then(|_| ftrace::register_ftrace_function(&MODULE_OPS).map_err(fail("module ops")));
    }
    let workers = if r.is_ok() { (1..crate::smp::online()).filter(|&c| crate::smp::run_on(c, stress_worker)).count() } else { 0 };
    // Four log lines per round would dominate the run time on the serial console.
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Warn);
    let t0 = arch::time::ticks();
    let mut refused = 0;
    for round in 0..rounds {
        if r.is_err() {
            break;
        }
        if let Err(e) = module::load(&bytes) {
            r = Err(crate::selftest::TestError::Fail(alloc::format!("round {round}: load: {e}")));
            break;
        }
        // Let the workers use the module for a while (until `linger_calls` more module calls
        // or 100 ms), then unload while they may hold references: Busy is expected, retry.
        let calls = || MOD_CALLS.iter().map(|c| c.load(Relaxed)).sum::<u64>();
        let (c0, tw) = (calls(), arch::time::ticks());
        while workers > 0 && calls() < c0 + linger_calls && arch::time::ticks() - tw < crate::time::counter_hz() / 10 {
            core::hint::spin_loop();
        }
        loop {
            match module::unload("sample_mod") {
                Ok(()) => break,
                Err(UnloadError::Busy(..)) => {
                    refused += 1;
                    core::hint::spin_loop()
                }
                Err(e) => {
                    r = Err(crate::selftest::TestError::Fail(alloc::format!("round {round}: unload: {e}")));
                    break;
                }
            }
        }
    }
    log::set_max_level(level);
    let ms = (arch::time::ticks() - t0) * 1000 / crate::time::counter_hz();
    STRESS_STOP.store(true, Release);
    for cpu in 1..NCPU {
        while crate::smp::work_running(cpu) {
            core::hint::spin_loop();
        }
    }
    let _ = ftrace::unregister_ftrace_function(&KERNEL_OPS);
    let _ = ftrace::unregister_ftrace_function(&MODULE_OPS);
    let heap1 = crate::heap::used();
    let _ = ftrace::ftrace_reset_filters(&KERNEL_OPS);
    let _ = ftrace::ftrace_reset_filters(&MODULE_OPS);
    r?;
    let load = |a: &[AtomicU64; NCPU]| -> Vec<u64> { a.iter().skip(1).take(workers).map(|c| c.load(Relaxed)).collect() };
    let (mc, kc) = (load(&MOD_CALLS), load(&KERNEL_CALLS));
    kdiag!("{rounds} loads and unloads in {ms} ms; workers' module calls {mc:?}, kernel calls {kc:?}; {refused} unloads refused as busy and retried");
    kassert_eq!(STRESS_BAD.load(Relaxed), 0, "wrong results");
    kassert!(workers == 0 || mc.iter().sum::<u64>() > 0, "workers never got the module");
    kassert_eq!(load(&KERNEL_CBS), kc, "kernel callbacks per worker CPU");
    if trace_module {
        kassert_eq!(load(&MOD_CBS), mc, "module callbacks per worker CPU");
    }
    kassert_eq!(STRAY.load(Relaxed), 0, "stray callbacks");
    kassert_eq!(execmem::area_used(), area0, "module area leaked");
    kassert_eq!(heap1, heap0, "heap leaked");
    if let Err(e) = ftrace::core::check_consistency() {
        kfail!("{e}");
    }
    Ok(())
}

ktest! {
    /// 200 loads and unloads of sample_mod while the other CPUs call its functions (through
    /// references) and a traced kernel function, with an ops tracing every module function as
    /// it loads: no lost or stray callback, no leak.
    fn modules::load_unload_200_while_tracing() {
        churn(200, true, 0)
    }
}

ktest! {
    /// Fewer rounds with an ops that traces every module function as it loads (each load then
    /// patches the new sites): every module call on every CPU reaches its callback exactly once.
    fn modules::module_calls_traced_across_reloads() {
        churn(10, true, 30)
    }
}
