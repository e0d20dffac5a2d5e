//! Suite `bpf_selftests`: the seed series' BPF selftests as real programs (issue 25). The
//! objects of bpf/progs, compiled from C by clang, are loaded, JITed and attached to the kernel's
//! test functions (and a module's) through the generated trampolines and kprobes; the test
//! functions are called; each case then reads the programs' globals and maps from the kernel
//! side, as the selftests' user space does with a skeleton. The ideas are those of Linux's
//! `tools/testing/selftests/bpf/prog_tests/{fentry_test,fexit_test,fentry_fexit,modify_return,
//! fexit_stress,trampoline_count,module_attach,module_fentry_shadow,fexit_bpf2bpf,
//! test_overhead,kprobe,recursion}.c`.

use super::bpf_core_tests::err;
use super::bpf_tests::{ROUTES, Route, on_route};
use crate::bpfrt::{self, BpfProg, link, test_run};
use crate::selftest::{TestError, TestResult};
use crate::{kassert, kassert_eq, kdiag, kskip, ktest};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;

/// An object loaded and all its programs attached; detached and unloaded when dropped.
struct Attached {
    object: String,
    links: Vec<u32>,
}

impl Attached {
    /// Loads `object` and attaches every program of it (each must be JITed unless `interp`).
    fn new(object: &str) -> Result<Attached, TestError> {
        Self::some(object, |_| true)
    }

    /// Loads `object` and attaches the programs `which` picks.
    fn some(object: &str, which: impl Fn(&BpfProg) -> bool) -> Result<Attached, TestError> {
        if bpfrt::fw_cfg_objects().is_empty() {
            kskip!("QEMU was given no BPF objects (make build builds bpf/progs)");
        }
        let loaded = bpfrt::load(object).map_err(|e| err(alloc::format!("load {object}: {e}\n{}", e.log())))?;
        let mut a = Attached { object: String::from(object), links: Vec::new() };
        for id in loaded.progs {
            let p = bpfrt::prog(id).ok_or_else(|| err("program gone"))?;
            if bpfrt::jit::enabled() {
                kassert!(p.jited.is_some(), "{} is not JITed: {:?}", p.name, p.jit_error);
            }
            if which(&p) {
                a.links.push(link::attach(&p).map_err(|e| err(alloc::format!("attach {}: {e}", p.name)))?);
            }
        }
        Ok(a)
    }

    fn global(&self, var: &str) -> Result<u64, TestError> {
        bpfrt::global_u64(&self.object, var).ok_or_else(|| err(alloc::format!("no global {var} in {}", self.object)))
    }

    fn prog(&self, name: &str) -> Result<Arc<BpfProg>, TestError> {
        bpfrt::prog_named(&self.object, name).ok_or_else(|| err(alloc::format!("no program {name} in {}", self.object)))
    }

    fn set(&self, var: &str, bytes: &[u8]) -> TestResult {
        bpfrt::set_global(&self.object, var, bytes).map_err(|e| err(alloc::format!("set {var}: {e}")))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for l in self.links.drain(..) {
            if let Err(e) = link::detach(l) {
                log::error!("detach link {l}: {e}");
            }
        }
        let _ = bpfrt::unload(&self.object);
    }
}

ktest! {
    /// fentry programs see the arguments of bpf_fentry_test1..4 (1, 2, 6 and 8 arguments of
    /// mixed widths and signs), JITed, from the generated trampolines.
    fn bpf_selftests::fentry_test() {
        let a = Attached::new("fentry_test")?;
        let r = test_run::call_all();
        kassert_eq!(r[..4], [2, 5, 9, 36]);
        for t in ["test1_result", "test2_result", "test3_result", "test4_result"] {
            kassert_eq!(a.global(t)?, 1, "{t}");
        }
        Ok(())
    }
}

ktest! {
    /// fexit programs see the arguments and the return value (right after the arguments).
    fn bpf_selftests::fexit_test() {
        let a = Attached::new("fexit_test")?;
        test_run::call_all();
        kassert_eq!(a.global("test1_result")?, 1);
        kassert_eq!(a.global("test2_result")?, 1);
        kassert_eq!(a.global("last_ret")?, 36);
        Ok(())
    }
}

ktest! {
    /// fentry and fexit programs on the same functions at once, then each kind alone after the
    /// other detached (the trampolines are regenerated live).
    fn bpf_selftests::fentry_fexit() {
        let entry = Attached::new("fentry_test")?;
        let exit = Attached::new("fexit_test")?;
        kassert_eq!(test_run::call_all()[..4], [2, 5, 9, 36]);
        kassert_eq!((entry.global("test1_result")?, entry.global("test4_result")?), (1, 1));
        kassert_eq!((exit.global("test1_result")?, exit.global("last_ret")?), (1, 36));
        drop(entry);
        exit.set("last_ret", &0i64.to_le_bytes())?;
        kassert_eq!(test_run::bpf_fentry_test4(black_box(2), 2, 2, 2, 2, 2, 2, 2), 16);
        kassert_eq!(exit.global("last_ret")?, 16, "fexit alone");
        Ok(())
    }
}

ktest! {
    /// fentry, fmod_ret and fexit on one function run in order; fmod_ret's non-zero result
    /// replaces the function's, which is then not called, and fexit sees it.
    fn bpf_selftests::modify_return() {
        let a = Attached::new("modify_return")?;
        kassert_eq!(test_run::bpf_modify_return_test(black_box(1), 2), 3, "fmod_ret returned 0: the function ran");
        kassert_eq!((a.global("fentry_result")?, a.global("fmod_ret_result")?, a.global("fexit_result")?), (1, 1, 1));
        a.set("sequence", &0i32.to_le_bytes())?;
        a.set("input_retval", &42i32.to_le_bytes())?;
        kassert_eq!(test_run::bpf_modify_return_test(black_box(1), 2), 42, "fmod_ret's value");
        kassert_eq!((a.global("fentry_result")?, a.global("fmod_ret_result")?, a.global("fexit_result")?), (1, 1, 1));
        Ok(())
    }
}

ktest! {
    /// 38 fexit programs (Linux's BPF_MAX_TRAMP_LINKS) on one function all run, every call.
    fn bpf_selftests::fexit_stress() {
        let a = Attached::new("fexit_stress")?;
        kassert_eq!(a.links.len(), 38);
        for _ in 0..10 {
            kassert_eq!(test_run::bpf_fentry_test1(black_box(1)), 2);
        }
        kassert_eq!((a.global("fexit_hits")?, a.global("fexit_bad")?), (380, 0));
        Ok(())
    }
}

ktest! {
    /// A function takes at most 38 programs: the 39th is refused with nothing changed, and
    /// attaches once one of the 38 is detached.
    fn bpf_selftests::trampoline_count() {
        let mut stress = Attached::new("fexit_stress")?;
        let extra = Attached::some("fentry_test", |_| false)?;
        let p = extra.prog("test1")?;
        let e = link::attach(&p).err().map(|e| alloc::format!("{e}")).unwrap_or_default();
        kassert!(e.contains("already has 38 programs"), "{e}");
        kassert_eq!(test_run::bpf_fentry_test1(black_box(1)), 2);
        kassert_eq!(stress.global("fexit_hits")?, 38, "the 38 still run");
        link::detach(stress.links.pop().unwrap_or(0)).map_err(err)?;
        let l = link::attach(&p).map_err(err)?;
        kassert_eq!(test_run::bpf_fentry_test1(black_box(1)), 2);
        kassert_eq!((stress.global("fexit_hits")?, extra.global("test1_result")?), (38 + 37, 1));
        link::detach(l).map_err(err)?;
        Ok(())
    }
}

/// Loads sample_far (unloaded when the result drops).
struct FarModule;

impl FarModule {
    fn load() -> Result<FarModule, TestError> {
        drop(super::module_tests::load("sample_far")?);
        Ok(FarModule)
    }
    fn func(&self, name: &str) -> Result<u64, TestError> {
        crate::ksyms::resolve_in("sample_far", name).ok_or_else(|| err(alloc::format!("no {name} in sample_far")))
    }
}

impl Drop for FarModule {
    fn drop(&mut self) {
        if let Err(e) = crate::module::unload("sample_far") {
            log::error!("unload sample_far: {e}");
        }
    }
}

ktest! {
    /// Programs on a function of a module loaded out of `bl` reach of the kernel: on the
    /// straight route (the module function calls its trampoline) and on the regs route (an
    /// ordinary ftrace ops on the same function). The module stays loaded while they are
    /// attached.
    fn bpf_selftests::module_attach() {
        let m = FarModule::load()?;
        let ip = m.func("sample_far_double")?;
        // SAFETY: sample_far_double is `extern "C" fn(u64) -> u64`, loaded while `m` lives.
        let double: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(ip as usize) };
        let a = Attached::new("module_attach")?;
        kassert!(matches!(crate::module::unload("sample_far"), Err(_)), "unload refused while programs are attached");
        let mut n = 0;
        for route in ROUTES {
            on_route(route, ip, || {
                kassert_eq!(double(black_box(21 + n)), 42 + 2 * n, "{route:?}");
                Ok(())
            })?;
            n += 1;
            kassert_eq!((a.global("fentry_hits")?, a.global("fentry_arg")?), (n, 20 + n), "{route:?}");
            kassert_eq!((a.global("fexit_hits")?, a.global("fexit_arg")?, a.global("fexit_ret")?), (n, 20 + n, 40 + 2 * n), "{route:?}");
        }
        kassert_eq!(n, 2);
        let _ = Route::Straight;
        drop(a);
        drop(m);
        Ok(())
    }
}

ktest! {
    /// A module function with a kernel function's name: `sample_far:bpf_fentry_test1` is the
    /// module's, `bpf_fentry_test1` the kernel's, and each program sees only its own.
    fn bpf_selftests::module_fentry_shadow() {
        let m = FarModule::load()?;
        // SAFETY: sample_far's bpf_fentry_test1 is `extern "C" fn(i32) -> i32`.
        let module_fn: extern "C" fn(i32) -> i32 = unsafe { core::mem::transmute(m.func("bpf_fentry_test1")? as usize) };
        let a = Attached::new("module_fentry_shadow")?;
        kassert_eq!(test_run::bpf_fentry_test1(black_box(1)), 2);
        kassert_eq!(module_fn(black_box(1)), 101);
        kassert_eq!(module_fn(black_box(5)), 105);
        kassert_eq!((a.global("kernel_hits")?, a.global("kernel_ret")?), (1, 2));
        kassert_eq!((a.global("module_hits")?, a.global("module_ret")?), (2, 105));
        drop(a);
        drop(m);
        Ok(())
    }
}

ktest! {
    /// Programs that make BPF-to-BPF calls (subprog_test: `scale` calls `clamp`; each program has
    /// its own copy), JITed as functions of their own, attached as fentry and fexit, with
    /// globals in .data, .rodata and .bss and bpf_printk in the trace.
    fn bpf_selftests::fexit_bpf2bpf() {
        let a = Attached::new("subprog_test")?;
        kassert_eq!(test_run::bpf_fentry_test1(black_box(1)), 2);
        // entry: calls 7 -> 8, last_result = clamp(1 * 3 - 5) = the limit (-2 is huge unsigned)
        kassert_eq!((a.global("calls")?, a.global("last_result")?), (8, 1000));
        // exit: scale(2) + clamp(1) = clamp(1) + 1 = 2
        kassert_eq!(a.global("exit_result")?, 2);
        kassert_eq!(test_run::bpf_fentry_test1(black_box(400)), 401);
        kassert_eq!((a.global("calls")?, a.global("last_result")?, a.global("exit_result")?), (9, 1000, 1000 + 400));
        kassert_eq!(test_run::bpf_fentry_test1(black_box(100)), 101);
        kassert_eq!((a.global("last_result")?, a.global("exit_result")?), (295, 298 + 100));
        Ok(())
    }
}

ktest! {
    /// kprobe and kretprobe programs read the probed function's registers through
    /// `PT_REGS_PARM1..8`/`PT_REGS_RC`/`PT_REGS_IP` (lt_tracing.h): arguments, the probed address,
    /// the return value; and a probe inside a function (`kprobe/FUNC+0x8`).
    fn bpf_selftests::kprobe() {
        let entry = bpfrt::target_addr("bpf_fentry_test4").unwrap_or(0);
        {
            let a = Attached::some("kprobe_test", |p| p.name == "handle_kprobe" || p.name == "handle_kprobe_offset")?;
            kassert_eq!(test_run::call_all()[3], 36);
            kassert_eq!((a.global("kprobe_sum")?, a.global("kprobe_arg8")?, a.global("kprobe_ip")?), (36, 8, entry));
            kassert_eq!(a.global("kprobe_offset_hits")?, 1);
        }
        let mut a = Attached::some("kprobe_test", |p| p.name == "handle_kretprobe")?;
        kassert_eq!(test_run::bpf_fentry_test4(black_box(10), 1, 1, 1, 1, 1, 1, 1), 17);
        kassert_eq!(a.global("kretprobe_rc")?, 17);
        // Detached and attached again, the kretprobe program runs each time (its probe is reused).
        let p = a.prog("handle_kretprobe")?;
        for i in 0..3u64 {
            link::detach(a.links.pop().unwrap_or(0)).map_err(err)?;
            kassert_eq!(test_run::bpf_fentry_test4(black_box(20 + i), 1, 1, 1, 1, 1, 1, 1), 27 + i);
            kassert!(a.global("kretprobe_rc")? != 27 + i, "detached: not run");
            a.links.push(link::attach(&p).map_err(err)?);
            kassert_eq!(test_run::bpf_fentry_test4(black_box(30 + i), 1, 1, 1, 1, 1, 1, 1), 37 + i);
            kassert_eq!(a.global("kretprobe_rc")?, 37 + i, "attached again: run");
        }
        Ok(())
    }
}

ktest! {
    /// A program that re-enters itself (an fentry program on the native bpf_map_delete_elem that
    /// calls bpf_map_delete_elem) is not run again: the inner call counts as a miss.
    fn bpf_selftests::recursion() {
        let a = Attached::new("recursion")?;
        let map = bpfrt::map_named("recursion", "hash1").ok_or_else(|| err("no map hash1"))?;
        let key = 3i32;
        for _ in 0..3 {
            let r = bpfrt::helpers::bpf_map_delete_elem(Arc::as_ptr(&map.map) as u64, &key as *const i32 as u64, 0, 0, 0);
            kassert_eq!(r as i64, -2, "-ENOENT");
        }
        let p = a.prog("on_delete")?;
        kassert_eq!((a.global("runs")?, p.misses()), (3, 3));
        kassert_eq!(a.global("inner_result")? as i64, -2, "the inner call still deleted (nothing)");
        let list = super::bpf_core_tests::sh("bpf prog list");
        kassert!(list.contains("recursion_misses 3"), "{list}");
        Ok(())
    }
}

ktest! {
    /// With the JIT off (Linux's bpf_jit_enable=0) programs load interpreted and run from the
    /// same trampolines and probes, with the same results.
    fn bpf_selftests::interpreted() {
        let was = bpfrt::jit::set_enabled(false);
        let r = (|| {
            let e = Attached::new("fentry_test")?;
            let x = Attached::new("fexit_test")?;
            let k = Attached::some("kprobe_test", |p| p.name == "handle_kprobe")?;
            kassert!(e.prog("test1")?.jited.is_none());
            kassert!(link::links().iter().all(|l| !l.jited));
            test_run::call_all();
            for t in ["test1_result", "test2_result", "test3_result", "test4_result"] {
                kassert_eq!(e.global(t)?, 1, "{t}");
            }
            kassert_eq!((x.global("test1_result")?, x.global("last_ret")?), (1, 36));
            kassert_eq!(k.global("kprobe_sum")?, 36);
            kassert_eq!(link::FAULTS.load(core::sync::atomic::Ordering::Relaxed), 0);
            Ok(())
        })();
        bpfrt::jit::set_enabled(was);
        r
    }
}

ktest! {
    /// What an attached empty program costs a call, per attach kind (the exact figures are
    /// `make bench`'s `bpf_*` rows); every kind runs its program on every call.
    fn bpf_selftests::test_overhead() {
        const N: u64 = 20_000;
        let time = || {
            let t0 = arch::time::ticks();
            for i in 0..N {
                black_box(test_run::bpf_overhead_test(black_box(i)));
            }
            crate::time::ticks_to_ns(arch::time::ticks() - t0) / N
        };
        let base = time();
        kdiag!("no program: {base} ns a call");
        for name in ["prog_fentry", "prog_fexit", "prog_fmod_ret", "prog_kprobe", "prog_kretprobe"] {
            let a = Attached::some("overhead", |p| p.name == name)?;
            let ns = time();
            let p = a.prog(name)?;
            kdiag!("{name}: {ns} ns a call ({} ns more), {} bytes of native code", ns.saturating_sub(base), p.jited.as_ref().map_or(0, |j| j.len()));
            kassert_eq!(p.misses(), 0);
        }
        Ok(())
    }
}

ktest! {
    /// The shell: attach, list, dump the JITed code, detach; bad input changes nothing.
    fn bpf_selftests::shell() {
        let sh = super::bpf_core_tests::sh;
        if bpfrt::fw_cfg_objects().is_empty() {
            kskip!("QEMU was given no BPF objects");
        }
        let _unload = Attached { object: String::from("fentry_test"), links: Vec::new() };
        kassert!(sh("bpf prog load fentry_test").starts_with("loaded fentry_test"));
        let p = bpfrt::prog_named("fentry_test", "test1").ok_or_else(|| err("no test1"))?;
        let out = sh(&alloc::format!("bpf prog attach {}", p.id));
        kassert!(out.starts_with("link ") && out.contains(&alloc::format!("program {} (fentry bpf_fentry_test1) attached, JITed", p.id)), "{out}");
        let l = link::link_of(p.id).ok_or_else(|| err("no link"))?;
        let list = sh("bpf link list");
        kassert!(list.starts_with(&alloc::format!("{l}: fentry  prog {}  name test1  target bpf_fentry_test1  addr 0x", p.id)) && list.ends_with("jited\n"), "{list}");
        kassert!(sh(&alloc::format!("bpf prog attach {}", p.id)).starts_with(&alloc::format!("Error: program {}: the program is attached already (link {l})", p.id)));
        kassert!(sh("bpf link detach 999999").starts_with("Error: no link 999999"));
        kassert_eq!(link::links().len(), 1, "nothing changed");
        test_run::call_all();
        kassert_eq!(bpfrt::global_u64("fentry_test", "test1_result"), Some(1));
        kassert_eq!(sh(&alloc::format!("bpf link detach {l}")), "");
        kassert_eq!(sh("bpf link list"), "");
        Ok(())
    }
}

/// A map's contents as the syscall side sees them (`None` for a ring buffer).
fn contents(m: &bpf::maps::Map) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if m.as_ringbuf().is_some() {
        return None;
    }
    m.entries(0).ok()
}

/// Puts `m` back to `snap` (what [`contents`] read), and empties a ring buffer.
fn restore(m: &bpf::maps::Map, snap: &Option<Vec<(Vec<u8>, Vec<u8>)>>) {
    let Some(snap) = snap else {
        while m.as_ringbuf().and_then(|rb| rb.consume_one()).is_some() {}
        return;
    };
    if m.is_frozen() {
        return;
    }
    for (k, _) in m.entries(0).unwrap_or_default() {
        if !snap.iter().any(|(s, _)| *s == k) {
            let _ = m.delete_user(&k, 0);
        }
    }
    for (k, v) in snap {
        let _ = m.update_user(k, v, bpf::maps::BPF_ANY, 0);
    }
}

/// What a run left behind: every map's contents, a ring buffer's records (consumed).
fn outcome(maps: &[Arc<bpf::maps::Map>]) -> Vec<(Option<Vec<(Vec<u8>, Vec<u8>)>>, Vec<Vec<u8>>)> {
    maps.iter()
        .map(|m| {
            let mut recs = Vec::new();
            if let Some(rb) = m.as_ringbuf() {
                while let Some(r) = rb.consume_one() {
                    recs.push(r);
                }
            }
            (contents(m), recs)
        })
        .collect()
}

/// Helper calls of the last [`differential`] run.
static LAST_CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Runs `p` interpreted and JITed on the same context bytes from the same map state; fails
/// unless r0, every map and ring buffer, the number of bpf_trace_printk lines and the helpers
/// called (ids, in order) agree.
fn differential(p: &BpfProg, jited: &bpfrt::jit::JitedProg, ctx: &mut [u64], nargs: u32, func_ip: u64) -> Result<u64, TestError> {
    let before: Vec<_> = p.maps.iter().map(|m| contents(m)).collect();
    let addr = ctx.as_mut_ptr() as u64;
    let len = (p.ctx_size as usize).min(ctx.len() * 8);
    let printed = bpfrt::printk::count();
    // SAFETY: `ctx` outlives the context; its `len` bytes are the program's.
    let c = unsafe { bpfrt::Context::at(p.kind, addr, len, nargs, func_ip) };
    bpfrt::env::CALLS.lock().clear();
    let interp = bpfrt::env::run_attached(p, &c).ok_or_else(|| err("deferred"))?.map_err(|f| err(alloc::format!("{} faulted in the interpreter: {f}", p.name)))?.r0;
    let calls_interp = core::mem::take(&mut *bpfrt::env::CALLS.lock());
    let printed_interp = bpfrt::printk::count() - printed;
    let after_interp = outcome(&p.maps);
    for (m, s) in p.maps.iter().zip(&before) {
        restore(m, s);
    }
    let printed = bpfrt::printk::count();
    // SAFETY: the verifier accepted the program for this kind of context, which `ctx` holds (a
    // trampoline frame or a register frame, as large as the program's context), and its maps
    // are alive.
    let native = unsafe { jited.call(addr) };
    let calls_native = core::mem::take(&mut *bpfrt::env::CALLS.lock());
    let printed_native = bpfrt::printk::count() - printed;
    let after_native = outcome(&p.maps);
    for (m, s) in p.maps.iter().zip(&before) {
        restore(m, s);
    }
    kassert_eq!(native, interp, "{}: r0", p.name);
    kassert!(after_native == after_interp, "{}: the maps differ: JITed {after_native:?}, interpreted {after_interp:?}", p.name);
    kassert_eq!(printed_native, printed_interp, "{}: bpf_trace_printk lines", p.name);
    kassert_eq!(calls_native, calls_interp, "{}: the helpers called, in order", p.name);
    LAST_CALLS.store(calls_native.len() as u64, core::sync::atomic::Ordering::Relaxed);
    Ok(native)
}

ktest! {
    /// Differential testing of the JIT: every program of the suites, and 2,000 generated
    /// programs the verifier accepts (context, stack and map-value accesses, lookups, bounds
    /// checks, arithmetic, jumps), run JITed and interpreted on the same inputs from the same map
    /// state: the same r0, map contents, ring-buffer records, trace_printk lines and helper calls.
    fn bpf_selftests::jit_differential() {
        if bpfrt::fw_cfg_objects().is_empty() {
            kskip!("QEMU was given no BPF objects");
        }
        bpfrt::env::FIXED_CLOCK.store(123_456_789, core::sync::atomic::Ordering::Relaxed);
        bpfrt::env::LOG_CALLS.store(true, core::sync::atomic::Ordering::Relaxed);
        struct Clock;
        impl Drop for Clock {
            fn drop(&mut self) {
                bpfrt::env::FIXED_CLOCK.store(0, core::sync::atomic::Ordering::Relaxed);
                bpfrt::env::LOG_CALLS.store(false, core::sync::atomic::Ordering::Relaxed);
                bpfrt::env::CALLS.lock().clear();
            }
        }
        let _clock = Clock;
        let mut r = bpf::rng::Rng(0xd1ff_e4e7_1a15_0001);
        let (mut suite, mut helper_calls) = (0, 0);
        for object in ["fentry_test", "fexit_test", "kprobe_test", "maps_test", "modify_return", "subprog_test", "fexit_stress", "overhead", "recursion"] {
            let a = Attached::some(object, |_| false)?;
            for id in bpfrt::progs().iter().filter(|p| p.object == object).map(|p| p.id) {
                let p = bpfrt::prog(id).ok_or_else(|| err("gone"))?;
                let Some(j) = &p.jited else { return Err(err(alloc::format!("{} not JITed", p.name))) };
                for _ in 0..20 {
                    let mut ctx = [0u64; 40];
                    let nargs = p.nargs.unwrap_or(0);
                    let func_ip = p.target.as_deref().and_then(bpfrt::target_addr).unwrap_or(0);
                    for w in ctx.iter_mut() {
                        *w = match r.below(4) {
                            0 => r.below(16),
                            1 => r.next(),
                            2 => (r.below(16) as i64 - 8) as u64,
                            _ => r.below(1000),
                        };
                    }
                    if p.is_tracing() {
                        ctx[arch::bpf_tramp::CTX_BODY as usize / 8] = func_ip + 8;
                    }
                    differential(&p, j, &mut ctx, nargs, func_ip)?;
                    suite += 1;
                    helper_calls += LAST_CALLS.load(core::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(a);
        }
        // Generated programs, on a hash map with a few elements.
        let def = bpf::maps::MapDef::new(bpf::object::map_type::HASH, 4, bpf::fuzz::VALUE_SIZE, 16, 0);
        let map = Arc::new(bpf::maps::Map::new("fuzz", def, bpfrt::map_cpus()).map_err(err)?);
        let (mut accepted, mut tries) = (0, 0);
        while accepted < 2000 && tries < 50_000 {
            tries += 1;
            let mut p = bpf::fuzz::generate(&mut r);
            if tries % 2 == 0 {
                bpf::fuzz::mutate(&mut r, &mut p);
            }
            // End with r0 = r7 ^ r8 (scalars the program loaded and computed) instead of 0.
            let n = p.len();
            p[n - 2] = bpf::insn::Insn::mov64_reg(0, 7);
            p.insert(n - 1, bpf::insn::Insn::alu64_reg(bpf::insn::BPF_XOR, 0, 8));
            let Ok(prog) = bpfrt::program("fuzz", bpf::object::ProgKind::Fentry, p, alloc::vec![map.clone()]) else { continue };
            accepted += 1;
            for k in 0..4u32 {
                let _ = map.delete_user(&k.to_le_bytes(), 0);
            }
            for k in 0..2u32 {
                let v: Vec<u8> = (0..bpf::fuzz::VALUE_SIZE).map(|_| r.next() as u8).collect();
                map.update_user(&k.to_le_bytes(), &v, bpf::maps::BPF_ANY, 0).map_err(err)?;
            }
            let insns = bpfrt::jit::resolve(&prog.insns, &prog.maps).map_err(err)?;
            let j = bpfrt::jit::JitedProg::compile(&insns, Some(arch::bpf_jit::FuncCtx { nargs: 8, has_ret: false }), None, None).map_err(err)?;
            let mut ctx = [0u64; 14];
            for w in ctx.iter_mut() {
                *w = r.next();
            }
            differential(&prog, &j, &mut ctx, 8, 0)?;
        }
        kdiag!("{suite} runs of the suites' programs ({helper_calls} helper calls); {accepted} generated programs accepted of {tries}, each the same JITed and interpreted");
        kassert!(helper_calls > 100, "the suites' programs call helpers ({helper_calls})");
        kassert!(accepted >= 2000, "{accepted} accepted of {tries}");
        Ok(())
    }
}

/// The names `jitsyms` gives the return addresses above [`jit_bt_prog`], taken while it runs.
static JIT_BT: spin::Mutex<Vec<String>> = spin::Mutex::new(Vec::new());
static JIT_BT_TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// A Rust program that records (once) the return addresses of the frames above it.
extern "C" fn jit_bt_prog(_ctx: &crate::ftrace::bpf::TraceCtx) -> u64 {
    use core::sync::atomic::Ordering::Relaxed;
    if JIT_BT_TAKEN.swap(true, Relaxed) {
        return 0;
    }
    // Printed first, so that this function makes a real call and has its own frame record.
    crate::ksyms::print_backtrace("    #   ", None, arch::cpu::frame_pointer());
    let mut names = Vec::new();
    arch::unwind::walk(arch::cpu::frame_pointer(), arch::boot::stack_bounds(arch::cpu::id()), 4, |f| {
        let mut s = String::new();
        crate::jitsyms::describe(f.ret - 4, |n, _| s = String::from(n));
        names.push(s);
        true
    });
    *JIT_BT.lock() = names;
    0
}

ktest! {
    /// The kernel's backtraces name JITed code: a backtrace taken inside a call made by a JITed
    /// program (recursion's on_delete calling bpf_map_delete_elem, whose trampoline also runs a
    /// Rust program that walks the frame records) passes `bpf_trampoline_bpf_map_delete_elem`,
    /// then `bpf_prog_<tag>_on_delete`, then the trampoline again, each named by
    /// `jitsyms` (what GDB gets too); the names go when the code does.
    fn bpf_selftests::backtrace_names_jited_code() {
        use core::sync::atomic::Ordering::Relaxed;
        let a = Attached::new("recursion")?;
        let p = a.prog("on_delete")?;
        let name = bpfrt::cmd::jited_name(&p);
        kassert!(crate::jitsyms::list().iter().any(|(n, s, _)| *n == name && Some(*s) == p.jited.as_ref().map(|j| j.addr())), "{name} registered");
        let at = p.jited.as_ref().map_or(0, |j| j.addr());
        let text = alloc::format!("{}", crate::ksyms::sym(at + 8));
        kassert_eq!(text, alloc::format!("{name}+0x8"), "the symboliser names it");
        JIT_BT_TAKEN.store(false, Relaxed);
        let func = crate::ftrace::bpf::Func::named("bpf_map_delete_elem", 2).map_err(err)?;
        let l = crate::ftrace::bpf::Attach::fentry(func, jit_bt_prog).map_err(err)?;
        let map = bpfrt::map_named("recursion", "hash1").ok_or_else(|| err("no map hash1"))?;
        let key = 1i32;
        bpfrt::helpers::bpf_map_delete_elem(Arc::as_ptr(&map.map) as u64, &key as *const i32 as u64, 0, 0, 0);
        l.detach().map_err(err)?;
        let names = core::mem::take(&mut *JIT_BT.lock());
        let tramp = String::from("bpf_trampoline_bpf_map_delete_elem");
        kassert!(names.len() >= 4, "{names:?}");
        kassert_eq!(names[..3], [tramp.clone(), name.clone(), tramp], "{names:?}");
        drop(p);
        drop(a);
        kassert!(!crate::jitsyms::list().iter().any(|(n, _, _)| *n == name || n.starts_with("bpf_trampoline_bpf_map_delete")), "names gone after unload");
        Ok(())
    }
}

static LIVE_STOP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static LIVE_CALLS: [core::sync::atomic::AtomicU64; arch::boot::MAX_CPUS] = [const { core::sync::atomic::AtomicU64::new(0) }; arch::boot::MAX_CPUS];
static LIVE_BAD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn live_worker(cpu: usize) {
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    let mut n = 0u64;
    while !LIVE_STOP.load(Acquire) {
        if test_run::bpf_fentry_test1(black_box(1)) != 2 {
            LIVE_BAD.fetch_add(1, Relaxed);
        }
        n += 1;
        LIVE_CALLS[cpu].store(n, Release);
    }
}

ktest! {
    /// Attaching and detaching is live: while other CPUs call bpf_fentry_test1 without pause, this
    /// CPU attaches and detaches programs on it (fentry and fexit, JITed and interpreted) again and
    /// again; a program attached the whole time (an atomic counter) sees every call exactly once,
    /// no call returns a wrong value, no old trampoline is leaked.
    fn bpf_selftests::live_attach_detach() {
        use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        let workers: Vec<usize> = (1..crate::smp::online().min(4)).collect();
        if workers.is_empty() {
            kskip!("needs at least 2 CPUs");
        }
        let keep = Attached::some("fexit_stress", |p| p.name == "fexit_0")?;
        let entry = Attached::some("fentry_test", |_| false)?;
        let exit = Attached::some("fexit_test", |_| false)?;
        let was = bpfrt::jit::set_enabled(false);
        let interp = Attached::some("modify_return", |_| false);
        bpfrt::jit::set_enabled(was);
        let interp = interp?;
        let flips = [entry.prog("test1")?, exit.prog("test1")?, interp.prog("fexit_test")?];
        let leaked = crate::ftrace::bpf::LEAKED.load(Relaxed);
        LIVE_STOP.store(false, Release);
        LIVE_CALLS.iter().for_each(|c| c.store(0, Relaxed));
        LIVE_BAD.store(0, Relaxed);
        keep.set("fexit_hits", &0u64.to_le_bytes())?;
        let started = workers.iter().filter(|&&c| crate::smp::run_on(c, live_worker)).count();
        let mut r: TestResult = Ok(());
        let t0 = arch::time::ticks();
        let mut rounds = 0;
        for i in 0..200 {
            if i >= 12 && arch::time::ticks() - t0 > 3 * crate::time::counter_hz() {
                break;
            }
            rounds += 1;
            let p = &flips[i % flips.len()];
            if let Err(e) = link::attach(p).map_err(|e| alloc::format!("{e}")).and_then(link::detach) {
                r = Err(err(e));
                break;
            }
        }
        LIVE_STOP.store(true, Release);
        for &c in &workers {
            while crate::smp::work_running(c) {
                core::hint::spin_loop();
            }
        }
        let calls: u64 = LIVE_CALLS.iter().map(|c| c.load(Acquire)).sum();
        let hits = keep.global("fexit_hits")?;
        drop(keep);
        r?;
        kdiag!("{started} CPUs made {calls} calls during {rounds} attach/detach rounds");
        kassert_eq!(started, workers.len());
        kassert!(calls > 0);
        kassert_eq!(hits, calls, "the program attached throughout saw every call exactly once");
        kassert_eq!(LIVE_BAD.load(Relaxed), 0, "wrong results");
        kassert_eq!(crate::ftrace::bpf::LEAKED.load(Relaxed), leaked, "old trampolines could all be freed");
        Ok(())
    }
}

extern "C" fn empty_rust_prog(_ctx: &crate::ftrace::bpf::TraceCtx) -> u64 {
    0
}

ktest! {
    /// A BPF fexit program reads the return value at ctx[nargs]: it cannot share its function with
    /// a program that takes more arguments (that word is an argument for it); either order is
    /// refused with nothing changed, and a program with as many arguments is fine.
    fn bpf_selftests::ret_slot_conflict() {
        use crate::ftrace::bpf::{Attach, Func};
        let a = Attached::some("modify_return", |_| false)?;
        let p = a.prog("fexit_test")?;
        let wide = Attach::fexit(Func::named("bpf_modify_return_test", 8).map_err(err)?, empty_rust_prog).map_err(err)?;
        let e = link::attach(&p).err().map(|e| alloc::format!("{e}")).unwrap_or_default();
        kassert!(e.contains("reads the return value at ctx[2], where another program of the function takes 8 arguments"), "{e}");
        kassert!(link::links().is_empty());
        wide.detach().map_err(err)?;
        let l = link::attach(&p).map_err(err)?;
        let r = Attach::fexit(Func::named("bpf_modify_return_test", 8).map_err(err)?, empty_rust_prog).err().map(|e| alloc::format!("{e}")).unwrap_or_default();
        kassert!(r.contains("takes 8 arguments"), "{r}");
        let same = Attach::fexit(Func::named("bpf_modify_return_test", 2).map_err(err)?, empty_rust_prog).map_err(err)?;
        // The program checks it runs third (after fentry and fmod_ret, not attached here).
        a.set("sequence", &2i32.to_le_bytes())?;
        kassert_eq!(test_run::bpf_modify_return_test(black_box(1), 2), 3);
        kassert_eq!(a.global("fexit_result")?, 1, "the BPF program saw the return value");
        same.detach().map_err(err)?;
        link::detach(l).map_err(err)?;
        Ok(())
    }
}
