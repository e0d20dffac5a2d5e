//! Suite `bpf_core`: the BPF runtime in the kernel (issue 24, part 1). Every object built from
//! bpf/progs reaches the kernel as a fw_cfg file and is loaded through the registry; the
//! programs run in the interpreter on contexts built here, and the results are read back from
//! their maps and globals, the ring buffer and the trace; refusals (corrupted objects, the
//! verifier's, GPL-only helpers) leave nothing behind; per-CPU maps and a hash map are driven
//! from every CPU at once; the environment's own checks stop what the verifier would have
//! refused; the `bpf` shell command speaks bpftool's words.

use crate::bpfrt::{self, BpfProg, Context, LoadError};
use crate::selftest::{TestError, TestResult};
use crate::{kassert, kassert_eq, kdiag, kskip, ktest};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use bpf::insn::{BPF_ADD, BPF_JEQ, BPF_JNE, BPF_SUB, Insn, Size};
use bpf::maps::{BPF_F_RDONLY_PROG, Map, MapDef};
use bpf::object::{LoadPlan, ProgKind};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The objects of bpf/progs that must load (bad_null_check must not).
const GOOD: [&str; 6] = ["fentry_test", "fexit_test", "kprobe_test", "maps_test", "modify_return", "subprog_test"];

/// Drops every BPF object when the case ends, however it ends.
struct UnloadAll;

impl Drop for UnloadAll {
    fn drop(&mut self) {
        bpfrt::unload_all();
    }
}

pub(crate) fn err(what: impl core::fmt::Display) -> TestError {
    TestError::Fail(alloc::format!("{what}"))
}

/// Skips the case when QEMU was given no BPF objects; fails when some are missing.
fn need_objects() -> TestResult {
    let have: Vec<String> = bpfrt::fw_cfg_objects().into_iter().map(|(n, _)| n).collect();
    if have.is_empty() {
        kskip!("QEMU was given no BPF objects (make build builds bpf/progs; make qemu, ltrun and make test pass target/bpf-progs/*.bpf.o)");
    }
    for n in GOOD.iter().chain(&["bad_null_check"]) {
        kassert!(have.iter().any(|h| h == n), "no fw_cfg object {n} among {have:?}");
    }
    Ok(())
}

fn load(name: &str) -> Result<bpfrt::Loaded, TestError> {
    bpfrt::load(name).map_err(|e| err(alloc::format!("load {name}: {e}\n{}", e.log())))
}

fn prog(object: &str, name: &str) -> Result<Arc<BpfProg>, TestError> {
    bpfrt::prog_named(object, name).ok_or_else(|| err(alloc::format!("no program {name} in {object}")))
}

/// Runs `p` on a call of its target with `args` (and `ret` for fexit/fmod_ret); returns r0.
fn call(p: &BpfProg, args: &[u64], ret: u64) -> Result<u64, TestError> {
    let ctx = Context::call(p, args, ret).map_err(err)?;
    bpfrt::run(p, &ctx).map(|e| e.r0).map_err(|f| err(alloc::format!("{} faulted: {f}", p.name)))
}

fn global(object: &str, var: &str) -> Result<u64, TestError> {
    bpfrt::global_u64(object, var).ok_or_else(|| err(alloc::format!("no global {var} in {object}")))
}

fn set_global(object: &str, var: &str, bytes: &[u8]) -> TestResult {
    bpfrt::set_global(object, var, bytes).map_err(|e| err(alloc::format!("set {object}.{var}: {e}")))
}

fn map_of(object: &str, name: &str) -> Result<Arc<bpfrt::BpfMap>, TestError> {
    bpfrt::map_named(object, name).ok_or_else(|| err(alloc::format!("no map {name} in {object}")))
}

/// The value of `key` as the syscall side reads it (every CPU's for a per-CPU map).
fn value(m: &bpfrt::BpfMap, key: u32) -> Result<Vec<u8>, TestError> {
    m.map.lookup_user_vec(&key.to_ne_bytes(), 0).map_err(|e| err(alloc::format!("lookup {key} in {}: {e}", m.map.name())))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}

/// Runs one shell line; returns what it printed.
pub(crate) fn sh(line: &str) -> String {
    let mut out = String::new();
    crate::tracefs::execute(line, &mut out);
    out
}

/// The lines of the trace that are events (not the header).
fn trace_lines() -> Vec<String> {
    sh("cat trace").lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
}

ktest! {
    /// Every object of bpf/progs loads from fw_cfg: its programs and maps are in the registry as
    /// its load plan says, with consecutive ids, the instructions relocated and verified; after
    /// an unload nothing of it is left.
    fn bpf_core::load_every_object() {
        need_objects()?;
        let _g = UnloadAll;
        let mut programs = 0;
        for name in GOOD {
            let bytes = bpfrt::fw_cfg_read(name).map_err(err)?;
            let plan = LoadPlan::parse(&alloc::format!("{name}.bpf.o"), &bytes).map_err(err)?;
            let l = load(name)?;
            kassert_eq!(l.progs.len(), plan.programs.len(), "{name}");
            kassert_eq!(l.maps.len(), plan.maps.len(), "{name}");
            kassert!(l.progs.windows(2).all(|w| w[1] == w[0] + 1), "{name}: program ids {:?}", l.progs);
            kassert!(l.maps.windows(2).all(|w| w[1] == w[0] + 1), "{name}: map ids {:?}", l.maps);
            for (id, spec) in l.progs.iter().zip(&plan.programs) {
                let p = bpfrt::prog(*id).ok_or_else(|| err(alloc::format!("prog {id} not registered")))?;
                kassert_eq!((p.name.as_str(), p.kind, p.target.as_deref()), (spec.name.as_str(), spec.kind, spec.target.as_deref()));
                let words: Vec<u64> = p.insns.iter().map(|i| u64::from_le_bytes(i.to_bytes())).collect();
                kassert!(words == spec.insns, "{name} {}: instructions differ from the plan", p.name);
                kassert!(p.verified_insns > 0);
                kassert_eq!(p.used_maps, {
                    let mut v: Vec<u32> = spec.map_refs().iter().map(|r| l.maps[r.map]).collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                });
                programs += 1;
            }
            for (id, spec) in l.maps.iter().zip(&plan.maps) {
                let m = bpfrt::map(*id).ok_or_else(|| err(alloc::format!("map {id} not registered")))?;
                kassert_eq!((m.map.name(), m.map.def().map_type, m.map.def().value_size), (spec.name.as_str(), spec.map_type, spec.value_size));
            }
            kdiag!("{name}: prog ids {:?}, map ids {:?}", l.progs, l.maps);
        }
        kassert_eq!(programs, 16, "programs in bpf/progs' good objects");
        kassert_eq!(bpfrt::objects().len(), GOOD.len());
        for name in GOOD {
            bpfrt::unload(name).map_err(err)?;
        }
        kassert!(bpfrt::progs().is_empty() && bpfrt::maps().is_empty());
        Ok(())
    }
}

ktest! {
    /// fentry_test: each program checks the arguments of its context and writes its verdict into
    /// `.bss`, which the test reads back by the global's name.
    fn bpf_core::fentry_test() {
        need_objects()?;
        let _g = UnloadAll;
        load("fentry_test")?;
        for (t, args, good) in [
            ("test1", vec![1u64], true),
            ("test1", vec![2], false),
            ("test2", vec![2, 3], true),
            ("test2", vec![2, 4], false),
            ("test3", vec![4, 5, 6, (-7i64) as u64, (-8i64) as u64, 9], true),
            ("test3", vec![4, 5, 6, 7, (-8i64) as u64, 9], false),
            ("test4", (1..=8).collect(), true),
            ("test4", vec![8, 7, 6, 5, 4, 3, 2, 1], false),
        ] {
            let p = prog("fentry_test", t)?;
            kassert_eq!(call(&p, &args, 0)?, 0, "{t}");
            let var = alloc::format!("{t}_result");
            kassert_eq!(global("fentry_test", &var)?, good as u64, "{t} on {args:?}");
        }
        Ok(())
    }
}

ktest! {
    /// fexit_test: the arguments and the return value after them; `.data`'s initial value.
    fn bpf_core::fexit_test() {
        need_objects()?;
        let _g = UnloadAll;
        load("fexit_test")?;
        kassert_eq!(global("fexit_test", "last_ret")?, u64::MAX, ".data's initial value is -1");
        let t1 = prog("fexit_test", "test1")?;
        call(&t1, &[1], 2)?;
        kassert_eq!(global("fexit_test", "test1_result")?, 1);
        call(&t1, &[1], 3)?;
        kassert_eq!(global("fexit_test", "test1_result")?, 0);
        call(&*prog("fexit_test", "test2")?, &[2, 3], 5)?;
        kassert_eq!(global("fexit_test", "test2_result")?, 1);
        call(&*prog("fexit_test", "test4")?, &(1..=8).collect::<Vec<u64>>(), (-9i64) as u64)?;
        kassert_eq!(global("fexit_test", "last_ret")? as i64, -9);
        Ok(())
    }
}

ktest! {
    /// modify_return: fentry, fmod_ret and fexit in their order through the shared sequence
    /// counter; fmod_ret returns `input_retval`, which a loader sets in `.bss`.
    fn bpf_core::modify_return() {
        need_objects()?;
        let _g = UnloadAll;
        load("modify_return")?;
        let (fentry, fmod, fexit) = (prog("modify_return", "fentry_test")?, prog("modify_return", "fmod_ret_test")?, prog("modify_return", "fexit_test")?);
        // The function runs (fmod_ret returns 0): it returns a + b.
        call(&fentry, &[1, 2], 0)?;
        kassert_eq!(call(&fmod, &[1, 2], 0)?, 0);
        call(&fexit, &[1, 2], 3)?;
        for r in ["fentry_result", "fmod_ret_result", "fexit_result"] {
            kassert_eq!(global("modify_return", r)?, 1, "{r}");
        }
        kassert_eq!(global("modify_return", "sequence")?, 3);
        // fmod_ret skips the function and returns 7.
        set_global("modify_return", "sequence", &0i32.to_le_bytes())?;
        set_global("modify_return", "input_retval", &7i32.to_le_bytes())?;
        call(&fentry, &[1, 2], 0)?;
        kassert_eq!(call(&fmod, &[1, 2], 0)?, 7);
        call(&fexit, &[1, 2], 7)?;
        kassert_eq!(global("modify_return", "fexit_result")?, 1);
        // Out of order: fexit first sees sequence 1.
        set_global("modify_return", "sequence", &0i32.to_le_bytes())?;
        call(&fexit, &[1, 2], 7)?;
        kassert_eq!(global("modify_return", "fexit_result")?, 0);
        Ok(())
    }
}

ktest! {
    /// kprobe_test on `struct pt_regs` contexts: the eight argument registers and `era`, the
    /// return value register, a counter.
    fn bpf_core::kprobe_test() {
        need_objects()?;
        let _g = UnloadAll;
        load("kprobe_test")?;
        let mut regs = [0u64; 40];
        for i in 0..8 {
            regs[4 + i] = i as u64 + 1;
        }
        regs[33] = 0x9000_0000_0020_1234; // era, at byte 264
        let kp = prog("kprobe_test", "handle_kprobe")?;
        bpfrt::run(&kp, &Context::words(ProgKind::Kprobe, &regs).map_err(err)?).map_err(err)?;
        kassert_eq!(global("kprobe_test", "kprobe_sum")?, 36);
        kassert_eq!(global("kprobe_test", "kprobe_arg8")?, 8);
        kassert_eq!(global("kprobe_test", "kprobe_ip")?, 0x9000_0000_0020_1234);
        regs[4] = (-5i64) as u64;
        let kr = prog("kprobe_test", "handle_kretprobe")?;
        bpfrt::run(&kr, &Context::words(ProgKind::Kretprobe, &regs).map_err(err)?).map_err(err)?;
        kassert_eq!(global("kprobe_test", "kretprobe_rc")? as i64, -5);
        let off = prog("kprobe_test", "handle_kprobe_offset")?;
        kassert_eq!(off.offset, 8);
        for _ in 0..2 {
            bpfrt::run(&off, &Context::words(ProgKind::Kprobe, &[]).map_err(err)?).map_err(err)?;
        }
        kassert_eq!(global("kprobe_test", "kprobe_offset_hits")?, 2);
        // A pt_regs context larger than struct pt_regs is refused before running.
        kassert!(Context::words(ProgKind::Kprobe, &[0; 41]).is_err());
        Ok(())
    }
}

ktest! {
    /// maps_test's program updates a HASH (insert with BPF_NOEXIST, then in place), an ARRAY, a
    /// PERCPU_ARRAY (this CPU's value only) and writes ring-buffer records, read back here as
    /// the syscall side and a consumer would; a full ring buffer makes reservations fail, which
    /// the program counts.
    fn bpf_core::maps_test() {
        need_objects()?;
        let _g = UnloadAll;
        load("maps_test")?;
        let p = prog("maps_test", "count_calls")?;
        let cpu = arch::cpu::id();
        let t0 = crate::time::ticks_to_ns(arch::time::ticks());
        for a in [5u64, 5, 13] {
            kassert_eq!(call(&p, &[a], 0)?, 0);
        }
        let pairs = map_of("maps_test", "pairs")?;
        let v = value(&pairs, 5)?;
        kassert_eq!((u64_at(&v, 0), u64_at(&v, 8)), (2, 5), "pairs[5] = {{calls, last_arg}}");
        let v = value(&pairs, 13)?;
        kassert_eq!((u64_at(&v, 0), u64_at(&v, 8)), (1, 13));
        kassert!(pairs.map.lookup_user_vec(&6u32.to_ne_bytes(), 0).is_err(), "no element 6");
        let counters = map_of("maps_test", "counters")?;
        for i in 0..8 {
            kassert_eq!(u64_at(&value(&counters, i)?, 0), if i == 5 { 3 } else { 0 }, "counters[{i}]");
        }
        let percpu = map_of("maps_test", "percpu_calls")?;
        let v = value(&percpu, 0)?;
        for c in 0..percpu.map.ncpus() as usize {
            kassert_eq!(u64_at(&v, 8 * c), if c == cpu { 3 } else { 0 }, "percpu_calls on cpu{c}");
        }
        let events = map_of("maps_test", "events")?;
        let rb = events.map.as_ringbuf().ok_or_else(|| err("events is no ring buffer"))?;
        let mut recs = Vec::new();
        rb.consume(|r| recs.push(r.to_vec()));
        kassert_eq!(recs.len(), 3);
        let mut last = t0;
        for (r, a) in recs.iter().zip([5u32, 5, 13]) {
            kassert_eq!(r.len(), 16);
            kassert_eq!((u32_at(r, 0), u32_at(r, 4)), (cpu as u32, a), "record {{cpu, arg}}");
            let t = u64_at(r, 8);
            kassert!(t >= last, "ktime_get_ns went back: {t} after {last}");
            last = t;
        }
        kassert!(last <= crate::time::ticks_to_ns(arch::time::ticks()) + 1000);
        kassert_eq!(global("maps_test", "lost_events")?, 0);
        // A deleted element waits for a quiescent point (no run in progress), which the end of
        // the next run is, then it is free again.
        let stats = |m: &bpfrt::BpfMap| m.map.hash_stats().unwrap_or_default();
        let before = stats(&pairs);
        pairs.map.delete_user(&13u32.to_ne_bytes(), 0).map_err(err)?;
        kassert_eq!((stats(&pairs).entries, stats(&pairs).retired), (before.entries - 1, 1), "{:?}", stats(&pairs));
        kassert_eq!(call(&p, &[13], 0)?, 0);
        let after = stats(&pairs);
        kassert_eq!((after.entries, after.retired, after.free), (before.entries, 0, before.free), "{after:?} after {before:?}");
        kassert_eq!(rb.consume(|_| {}), 1);
        // 4096 bytes hold 170 records of 16 bytes and their 8-byte headers (the producer may
        // not get 4096 bytes ahead of the consumer); the other 30 reservations fail.
        for _ in 0..200 {
            call(&p, &[1], 0)?;
        }
        let n = rb.consume(|_| {});
        kdiag!("200 runs on an empty ring: {n} records, {} lost", global("maps_test", "lost_events")?);
        kassert_eq!(n, 170);
        kassert_eq!(global("maps_test", "lost_events")?, 30);
        // After consuming, reservations work again.
        call(&p, &[1], 0)?;
        kassert_eq!(rb.consume(|_| {}), 1);
        Ok(())
    }
}

static SHARED_PROG: spin::Mutex<Option<Arc<BpfProg>>> = spin::Mutex::new(None);
static WORKER_FAULT: AtomicBool = AtomicBool::new(false);
static WORKER_RUNS: [AtomicU64; arch::boot::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::boot::MAX_CPUS];
/// Runs per CPU in `maps_on_every_cpu`: every other one with the CPU's own key, the rest with
/// the key all CPUs share.
const ROUNDS: u64 = 300;
const SHARED_KEY: u64 = 7;

fn own_key(cpu: usize) -> u64 {
    96 + cpu as u64 // 96 & 7 == 0: counters[cpu]
}

/// What each CPU runs: maps_test's program, ROUNDS times.
fn map_worker(cpu: usize) {
    let Some(p) = SHARED_PROG.lock().clone() else {
        WORKER_FAULT.store(true, Ordering::Relaxed);
        return;
    };
    for i in 0..ROUNDS {
        let a = if i % 2 == 0 { own_key(cpu) } else { SHARED_KEY };
        let ok = Context::call(&p, &[a], 0).ok().is_some_and(|ctx| bpfrt::run(&p, &ctx).is_ok());
        if !ok {
            WORKER_FAULT.store(true, Ordering::Relaxed);
            return;
        }
        WORKER_RUNS[cpu].fetch_add(1, Ordering::Relaxed);
    }
}

ktest! {
    /// maps_test's program on every CPU at once: per-CPU values stay apart, array counters
    /// (atomic adds) are exact, hash elements of each CPU's own key are exact and the shared
    /// key's count loses at most the racing first inserts (BPF_NOEXIST: one wins), ring-buffer
    /// records are whole and carry the CPU that wrote them.
    fn bpf_core::maps_on_every_cpu() {
        need_objects()?;
        let n = crate::smp::online();
        if n < 2 {
            kskip!("only one CPU; run with -smp 4 (make test does)");
        }
        let _g = UnloadAll;
        load("maps_test")?;
        let p = prog("maps_test", "count_calls")?;
        *SHARED_PROG.lock() = Some(p);
        WORKER_FAULT.store(false, Ordering::Relaxed);
        WORKER_RUNS.iter().for_each(|r| r.store(0, Ordering::Relaxed));
        let others: Vec<usize> = (1..arch::boot::MAX_CPUS).filter(|&c| crate::smp::run_on(c, map_worker)).collect();
        map_worker(0);
        let t0 = arch::time::ticks();
        while others.iter().any(|&c| crate::smp::work_running(c)) {
            kassert!(arch::time::ticks() - t0 < 60 * crate::time::counter_hz(), "workers did not finish within 60 s");
            core::hint::spin_loop();
        }
        *SHARED_PROG.lock() = None;
        let cpus: Vec<usize> = core::iter::once(0).chain(others.iter().copied()).collect();
        kdiag!("{} CPUs ran the program {ROUNDS} times each", cpus.len());
        kassert!(!WORKER_FAULT.load(Ordering::Relaxed), "a run faulted");
        for &c in &cpus {
            kassert_eq!(WORKER_RUNS[c].load(Ordering::Relaxed), ROUNDS, "runs on cpu{c}");
        }
        let half = ROUNDS / 2;
        let total_shared = half * cpus.len() as u64;
        let pairs = map_of("maps_test", "pairs")?;
        for &c in &cpus {
            let v = value(&pairs, own_key(c) as u32)?;
            kassert_eq!((u64_at(&v, 0), u64_at(&v, 8)), (half, own_key(c)), "pairs[{}] of cpu{c}", own_key(c));
        }
        let shared = u64_at(&value(&pairs, SHARED_KEY as u32)?, 0);
        kdiag!("shared key: {shared} of {total_shared} calls counted (racing first inserts lose theirs)");
        kassert!(shared <= total_shared && shared + cpus.len() as u64 > total_shared, "shared key counted {shared} of {total_shared}");
        let counters = map_of("maps_test", "counters")?;
        for &c in &cpus {
            kassert_eq!(u64_at(&value(&counters, c as u32)?, 0), half, "counters[{c}]");
        }
        kassert_eq!(u64_at(&value(&counters, SHARED_KEY as u32)?, 0), total_shared, "counters[7]");
        let percpu = map_of("maps_test", "percpu_calls")?;
        let v = value(&percpu, 0)?;
        for c in 0..percpu.map.ncpus() as usize {
            let want = if cpus.contains(&c) { ROUNDS } else { 0 };
            kassert_eq!(u64_at(&v, 8 * c), want, "percpu_calls of cpu{c}");
        }
        let rb = map_of("maps_test", "events")?;
        let rb = rb.map.as_ringbuf().ok_or_else(|| err("no ring buffer"))?;
        let mut bad = Vec::new();
        let mut per_cpu = [0u64; arch::boot::MAX_CPUS];
        let records = rb.consume(|r| {
            let (c, a) = (u32_at(r, 0) as usize, u32_at(r, 4) as u64);
            if r.len() != 16 || !cpus.contains(&c) || (a != SHARED_KEY && a != own_key(c)) {
                bad.push(alloc::format!("{r:02x?}"));
            } else {
                per_cpu[c] += 1;
            }
        });
        kdiag!("ring buffer: {records} records ({:?} per CPU), the rest lost (full)", &per_cpu[..cpus.len()]);
        kassert!(bad.is_empty(), "records not written whole by their CPU: {bad:?}");
        kassert!(records > 0 && records <= 170);
        Ok(())
    }
}

ktest! {
    /// subprog_test: BPF-to-BPF calls (each program has its own copy of `scale` and `clamp`),
    /// `.data`, `.rodata` (frozen) and `.bss` globals, and bpf_trace_printk's line in the trace.
    fn bpf_core::subprog_and_trace_printk() {
        need_objects()?;
        let _g = UnloadAll;
        crate::tracefs::reset();
        load("subprog_test")?;
        let entry = prog("subprog_test", "entry_scale")?;
        kassert!(entry.insns.len() > 20, "the callees are appended");
        kassert_eq!(global("subprog_test", "calls")?, 7);
        let ctx = Context::call(&entry, &[7], 0).map_err(err)?;
        let exit = bpfrt::run(&entry, &ctx).map_err(err)?;
        kassert_eq!(exit.r0, 0);
        kassert_eq!(global("subprog_test", "calls")?, 8);
        kassert_eq!(global("subprog_test", "last_result")?, 16, "clamp(7 * 3 - 5)");
        call(&entry, &[1000], 0)?;
        kassert_eq!(global("subprog_test", "last_result")?, 1000, "clamped to limit");
        let lines = trace_lines();
        kdiag!("trace: {lines:?}");
        kassert_eq!(lines.len(), 2);
        kassert!(lines[0].ends_with(": bpf_trace_printk: entry_scale: 7 -> 16"), "{}", lines[0]);
        kassert!(lines[1].ends_with(": bpf_trace_printk: entry_scale: 1000 -> 1000"), "{}", lines[1]);
        kassert!(lines[0].trim_start().starts_with(&alloc::format!("loongtrace/{}-", arch::cpu::id())), "{}", lines[0]);
        // In the function_graph layout the event is a comment (the tracer on one function only).
        sh("echo chain_root > set_ftrace_filter");
        sh("echo function_graph > current_tracer");
        sh("echo > trace");
        call(&entry, &[2], 0)?;
        let graph = sh("cat trace");
        sh("echo nop > current_tracer");
        kassert!(graph.contains("/* bpf_trace_printk: entry_scale: 2 -> 1 */"), "{graph}");
        let exit_p = prog("subprog_test", "exit_scale")?;
        call(&exit_p, &[7], 400)?;
        kassert_eq!(global("subprog_test", "exit_result")?, 1007, "clamp(400 * 3 - 5) + clamp(7)");
        // .rodata is frozen: the syscall side may not change it.
        kassert_eq!(bpfrt::set_global("subprog_test", "factor", &5u64.to_le_bytes()), Err(bpf::maps::MapError::Perm));
        crate::tracefs::reset();
        Ok(())
    }
}

/// A program from instructions, verified.
fn program(kind: ProgKind, insns: Vec<Insn>, maps: Vec<Arc<Map>>) -> Result<BpfProg, TestError> {
    bpfrt::program("test", kind, insns, maps).map_err(|e| err(alloc::format!("refused: {e}\n{}", e.log)))
}

fn run_words(p: &BpfProg, words: &[u64]) -> Result<u64, TestError> {
    let ctx = Context::words(p.kind, words).map_err(err)?;
    bpfrt::run(p, &ctx).map(|e| e.r0).map_err(err)
}

fn ld_imm64(dst: u8, v: u64) -> [Insn; 2] {
    Insn::ld_imm64(dst, v)
}

static KERNEL_WORD: u64 = 0x1122_3344_5566_7788;
static KERNEL_STR: [u8; 7] = *b"kernel\0";

/// `*(u64 *)(r10 - 8) = helper 113 (probe_read_kernel) of 8 bytes at src; r0 = result or slot`.
fn probe_read_prog(src: u64, return_slot: bool) -> Vec<Insn> {
    let mut v = vec![
        Insn::st_mem(Size::DW, 10, -8, -1),
        Insn::mov64_reg(1, 10),
        Insn::alu64_imm(BPF_ADD, 1, -8),
        Insn::mov64_imm(2, 8),
    ];
    v.extend(ld_imm64(3, src));
    v.push(Insn::call_helper(113));
    if !return_slot {
        v.push(Insn::jmp_imm(BPF_JNE, 0, 0, 1));
    }
    v.push(Insn::ldx_mem(Size::DW, 0, 10, -8));
    v.push(Insn::exit());
    v
}

/// `bpf_trace_printk(fmt (on the stack), 16, arg3, arg4)`.
fn printk_prog(fmt: &[u8; 16], a3: u64, a4: u64) -> Vec<Insn> {
    let mut v = Vec::new();
    v.extend(ld_imm64(1, u64::from_le_bytes(fmt[..8].try_into().unwrap_or([0; 8]))));
    v.push(Insn::stx_mem(Size::DW, 10, 1, -16));
    v.extend(ld_imm64(1, u64::from_le_bytes(fmt[8..].try_into().unwrap_or([0; 8]))));
    v.push(Insn::stx_mem(Size::DW, 10, 1, -8));
    v.push(Insn::mov64_reg(1, 10));
    v.push(Insn::alu64_imm(BPF_ADD, 1, -16));
    v.push(Insn::mov64_imm(2, 16));
    v.extend(ld_imm64(3, a3));
    v.extend(ld_imm64(4, a4));
    v.push(Insn::call_helper(6));
    v.push(Insn::exit());
    v
}

ktest! {
    /// Every helper's value in the kernel, from programs built here: CPU, pid/tgid, ktime,
    /// get_func_ip/arg/ret/arg_cnt from the context, probe_read_kernel (kernel RAM only),
    /// trace_printk (%s read from the kernel, a bad format refused).
    fn bpf_core::helpers() {
        let cpu = arch::cpu::id() as u64;
        let simple = |id: u32| program(ProgKind::Fentry, vec![Insn::call_helper(id), Insn::exit()], vec![]);
        kassert_eq!(run_words(&simple(8)?, &[])?, cpu, "bpf_get_smp_processor_id");
        let pid = formats::task::pid(cpu as u32) as u64;
        kassert_eq!(run_words(&simple(14)?, &[])?, pid << 32 | pid, "bpf_get_current_pid_tgid: the CPU context's pid");
        let now = || crate::time::ticks_to_ns(arch::time::ticks());
        let t0 = now();
        let t = run_words(&simple(5)?, &[])?;
        let t1 = now();
        kassert!(t0 <= t && t <= t1, "bpf_ktime_get_ns {t} not within [{t0}, {t1}]");
        let delta = program(ProgKind::Fentry, vec![Insn::call_helper(5), Insn::mov64_reg(6, 0), Insn::call_helper(5), Insn::alu64_reg(BPF_SUB, 0, 6), Insn::exit()], vec![])?;
        kassert!(run_words(&delta, &[])? < 1_000_000_000, "two ktime_get_ns a second apart");
        // The get_func_* helpers read the context's layout: nargs, the words, the return value.
        let mut ctx = Context::words(ProgKind::Fexit, &[10, 20, 30]).map_err(err)?;
        ctx.func_ip = 0x9000_0000_0020_4000;
        let fx = |insns: Vec<Insn>| program(ProgKind::Fexit, insns, vec![]);
        let on = |p: &BpfProg| bpfrt::run(p, &ctx).map(|e| e.r0).map_err(err);
        kassert_eq!(on(&fx(vec![Insn::call_helper(173), Insn::exit()])?)?, 0x9000_0000_0020_4000, "bpf_get_func_ip");
        kassert_eq!(on(&fx(vec![Insn::call_helper(185), Insn::exit()])?)?, 2, "bpf_get_func_arg_cnt: fexit's last word is the return value");
        let get_arg = |n: i32| {
            fx(vec![
                Insn::mov64_imm(2, n),
                Insn::mov64_reg(3, 10),
                Insn::alu64_imm(BPF_ADD, 3, -8),
                Insn::call_helper(183),
                Insn::jmp_imm(BPF_JNE, 0, 0, 1),
                Insn::ldx_mem(Size::DW, 0, 10, -8),
                Insn::exit(),
            ])
        };
        kassert_eq!(on(&get_arg(1)?)?, 20, "bpf_get_func_arg(ctx, 1)");
        kassert_eq!(on(&get_arg(2)?)? as i64, -22, "bpf_get_func_arg past the arguments: -EINVAL");
        let get_ret = vec![
            Insn::mov64_reg(2, 10),
            Insn::alu64_imm(BPF_ADD, 2, -8),
            Insn::call_helper(184),
            Insn::jmp_imm(BPF_JNE, 0, 0, 1),
            Insn::ldx_mem(Size::DW, 0, 10, -8),
            Insn::exit(),
        ];
        kassert_eq!(on(&fx(get_ret.clone())?)?, 30, "bpf_get_func_ret");
        let fentry_ret = program(ProgKind::Fentry, get_ret, vec![])?;
        kassert_eq!(run_words(&fentry_ret, &[1])? as i64, -95, "bpf_get_func_ret in fentry: -EOPNOTSUPP");
        // probe_read_kernel: kernel RAM is read; anything else is -EFAULT and zeroes the buffer.
        let word = &KERNEL_WORD as *const u64 as u64;
        kassert_eq!(run_words(&program(ProgKind::Fentry, probe_read_prog(word, false), vec![])?, &[])?, KERNEL_WORD);
        for bad in [0x1000, 0x8000_0000_1fe0_01e0 /* the UART, uncached */, bpfrt::env::KERNEL_RAM.end - 4, u64::MAX - 3] {
            kassert_eq!(run_words(&program(ProgKind::Fentry, probe_read_prog(bad, false), vec![])?, &[])? as i64, -14, "probe_read_kernel of {bad:#x}");
            kassert_eq!(run_words(&program(ProgKind::Fentry, probe_read_prog(bad, true), vec![])?, &[])?, 0, "{bad:#x}: the buffer is zeroed");
        }
        // trace_printk: %s from kernel memory, %d of an int; a bad format prints nothing.
        crate::tracefs::reset();
        let s = KERNEL_STR.as_ptr() as u64;
        kassert_eq!(run_words(&program(ProgKind::Fentry, printk_prog(b"s=%s d=%d\0\0\0\0\0\0\0", s, (-3i64) as u64), vec![])?, &[])?, 13);
        kassert_eq!(run_words(&program(ProgKind::Fentry, printk_prog(b"[%s] %lx\0\0\0\0\0\0\0\0", 0x10, 0xbeef), vec![])?, &[])?, 7, "an unreadable %s prints empty");
        let printed = bpfrt::printk::count();
        kassert_eq!(run_words(&program(ProgKind::Fentry, printk_prog(b"%n\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 0, 0), vec![])?, &[])? as i64, -22, "%n: -EINVAL");
        kassert_eq!(bpfrt::printk::count(), printed, "a refused format prints nothing");
        let lines = trace_lines();
        crate::tracefs::reset();
        kassert_eq!(lines.len(), 2, "{lines:?}");
        kassert!(lines[0].ends_with("bpf_trace_printk: s=kernel d=-3"), "{}", lines[0]);
        kassert!(lines[1].ends_with("bpf_trace_printk: [] beef"), "{}", lines[1]);
        Ok(())
    }
}

ktest! {
    /// The environment checks every access itself, whatever the verifier proved: programs it
    /// would refuse, run without it, fault at the access (naming the instruction), and the
    /// memory they aimed at is unchanged.
    fn bpf_core::env_checks_every_access() {
        let ro = Arc::new(Map::new("ro", MapDef::new(2, 4, 8, 1, BPF_F_RDONLY_PROG), 1).map_err(err)?);
        let small = Arc::new(Map::new("small", MapDef::new(2, 4, 4, 1, 0), 1).map_err(err)?);
        let ring = Arc::new(Map::new("ring", MapDef::new(27, 0, 0, 4096, 0), 1).map_err(err)?);
        let word = &KERNEL_WORD as *const u64 as u64;
        let mut cases: Vec<(&str, Vec<Insn>, &str)> = vec![
            ("read past the context", vec![Insn::ldx_mem(Size::DW, 0, 1, 64), Insn::exit()], "insn 0: invalid read of 8 bytes"),
            ("write the context", vec![Insn::st_mem(Size::DW, 1, 0, 1), Insn::mov64_imm(0, 0), Insn::exit()], "insn 0: invalid write of 8 bytes"),
            ("read below the stack", vec![Insn::ldx_mem(Size::DW, 0, 10, -520), Insn::exit()], "insn 0: invalid read of 8 bytes"),
            ("read the frame pointer's own word", vec![Insn::ldx_mem(Size::DW, 0, 10, 0), Insn::exit()], "insn 0: invalid read"),
            ("a returned frame", vec![
                Insn::call_rel(2), Insn::ldx_mem(Size::DW, 0, 0, 0), Insn::exit(),
                Insn::mov64_reg(0, 10), Insn::alu64_imm(BPF_ADD, 0, -8), Insn::st_mem(Size::DW, 0, 0, 5), Insn::exit(),
            ], "insn 1: invalid read of 8 bytes"),
            ("unknown helper", vec![Insn::call_helper(999), Insn::exit()], "insn 0: invalid func unknown#999"),
            ("a map argument that is no map", vec![Insn::mov64_imm(1, 1234), Insn::call_helper(1), Insn::exit()], "is not a map of this program"),
        ];
        let mut v = ld_imm64(1, word).to_vec();
        v.extend([Insn::ldx_mem(Size::DW, 0, 1, 0), Insn::exit()]);
        cases.push(("kernel memory outside the program's regions", v, "insn 2: invalid read of 8 bytes"));
        let mut v = Insn::ld_map_value(1, 0, 0).to_vec();
        v.extend([Insn::st_mem(Size::DW, 1, 0, 7), Insn::mov64_imm(0, 0), Insn::exit()]);
        cases.push(("write .rodata (BPF_F_RDONLY_PROG)", v, "insn 2: invalid write of 8 bytes"));
        let mut v = Insn::ld_map_value(1, 1, 0).to_vec();
        v.extend([Insn::ldx_mem(Size::W, 0, 1, 4), Insn::exit()]);
        cases.push(("past a map value (its padding)", v, "insn 2: invalid read of 4 bytes"));
        let mut v = Insn::ld_map_fd(1, 2).to_vec();
        v.extend([
            Insn::mov64_imm(2, 8),
            Insn::mov64_imm(3, 0),
            Insn::call_helper(131),
            Insn::jmp_imm(BPF_JEQ, 0, 0, 2),
            Insn::st_mem(Size::DW, 0, 8, 1),
            Insn::exit(),
            Insn::mov64_imm(0, 0),
            Insn::exit(),
        ]);
        cases.push(("past a reserved ring-buffer record", v, "insn 6: invalid write of 8 bytes"));
        let mut v = Insn::ld_map_fd(1, 2).to_vec();
        v.extend([
            Insn::mov64_imm(2, 8),
            Insn::mov64_imm(3, 0),
            Insn::call_helper(131),
            Insn::jmp_imm(BPF_JEQ, 0, 0, 5),
            Insn::mov64_reg(6, 0),
            Insn::mov64_reg(1, 6),
            Insn::mov64_imm(2, 0),
            Insn::call_helper(132),
            Insn::st_mem(Size::DW, 6, 0, 1),
            Insn::mov64_imm(0, 0),
            Insn::exit(),
        ]);
        cases.push(("a submitted ring-buffer record", v, "insn 10: invalid write of 8 bytes"));
        for (what, insns, want) in cases {
            let p = bpfrt::unverified("unsafe", ProgKind::Fentry, insns, vec![ro.clone(), small.clone(), ring.clone()]);
            let ctx = Context::words(ProgKind::Fentry, &[1, 2]).map_err(err)?;
            match bpfrt::run(&p, &ctx) {
                Ok(e) => kassert!(false, "{what}: ran to the end (r0 {:#x})", e.r0),
                Err(f) => {
                    let text = alloc::format!("{f}");
                    kassert!(text.contains(want), "{what}: fault '{text}', expected '{want}'");
                }
            }
            kassert_eq!((ctx.word(0), ctx.word(1)), (1, 2), "{what}: the context is unchanged");
        }
        kassert_eq!(ro.lookup_user_vec(&0u32.to_ne_bytes(), 0).map_err(err)?, vec![0; 8], ".rodata unchanged");
        kassert_eq!(KERNEL_WORD, 0x1122_3344_5566_7788);
        // The record a faulted run left reserved was discarded: the ring holds only the one
        // submitted before the other fault, and is usable.
        let rb = ring.as_ringbuf().ok_or_else(|| err("no ring"))?;
        kassert_eq!(rb.consume(|_| {}), 1);
        kassert!(rb.reserve(8, 0, 0).is_some_and(|r| rb.discard(r.as_ptr(), 0).is_ok()));
        Ok(())
    }
}

ktest! {
    /// Refusals leave nothing: corrupted objects, the verifier's refusal of bad_null_check (its
    /// log names the instruction and the reason), a program from instructions the verifier
    /// refuses, a GPL-only helper in a non-GPL object, a duplicate, an unknown name. No id is
    /// used by a refused load, and the heap comes back.
    fn bpf_core::refusals() {
        need_objects()?;
        let _g = UnloadAll;
        let good = bpfrt::fw_cfg_read("fentry_test").map_err(err)?;
        let first = load("fentry_test")?;
        bpfrt::unload("fentry_test").map_err(err)?;
        let mut corrupt: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("truncated to its ELF header", good[..64].to_vec()),
            ("truncated to half", good[..good.len() / 2].to_vec()),
        ];
        let mut v = good.clone();
        v[0] = b'#';
        corrupt.push(("not ELF", v));
        let mut v = good.clone();
        v[18] = 62; // e_machine: x86-64
        corrupt.push(("another machine", v));
        let mut v = good.clone();
        v[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes()); // e_shoff
        corrupt.push(("section headers out of the file", v));
        let sub = bpfrt::fw_cfg_read("subprog_test").map_err(err)?;
        let mut proprietary = sub.clone();
        let lic = b"Dual MIT/GPL\0";
        let at = sub.windows(lic.len()).position(|w| w == lic).ok_or_else(|| err("no license text in subprog_test"))?;
        proprietary[at..at + lic.len()].copy_from_slice(b"Proprietary\0\0");
        let mut heap = [0usize; 2];
        for (pass, h) in heap.iter_mut().enumerate() {
            *h = crate::heap::used();
            for (what, bytes) in &corrupt {
                match bpfrt::load_bytes("fentry_test.bpf.o", bytes) {
                    Err(LoadError::Object(e)) => {
                        if pass == 0 {
                            kdiag!("{what}: {e}");
                        }
                    }
                    other => kassert!(false, "{what}: {other:?}"),
                }
            }
            match bpfrt::load("bad_null_check") {
                Err(LoadError::Verify { prog, error, .. }) => {
                    kassert_eq!(prog, "no_null_check");
                    kassert_eq!((error.insn, error.reason.as_str()), (8, "R0 invalid mem access 'map_value_or_null'"));
                    kassert!(error.log.contains("8: (79) r1 = *(u64 *)(r0 +0)\nR0=map_value_or_null"), "{}", error.log);
                    if pass == 0 {
                        kdiag!("bad_null_check: insn {}: {}", error.insn, error.reason);
                    }
                }
                other => kassert!(false, "bad_null_check: {other:?}"),
            }
            match bpfrt::load_bytes("subprog_test.bpf.o", &proprietary) {
                Err(e @ LoadError::Gpl { helper: 6, .. }) => {
                    kassert!(alloc::format!("{e}").contains("cannot call GPL-restricted function bpf_trace_printk#6"), "{e}");
                }
                other => kassert!(false, "a non-GPL program calling bpf_trace_printk: {other:?}"),
            }
            kassert_eq!(bpfrt::load("nosuch"), Err(LoadError::NotFound("nosuch".into())));
            kassert!(bpfrt::objects().is_empty(), "a refusal left {:?}", bpfrt::objects());
        }
        kassert_eq!(heap[1], crate::heap::used(), "heap leaked by refused loads");
        // A program from instructions: an uninitialised stack read.
        match bpfrt::program("uninit", ProgKind::Fentry, vec![Insn::ldx_mem(Size::DW, 0, 10, -8), Insn::exit()], vec![]) {
            Err(e) => kassert_eq!((e.insn, e.reason.as_str()), (0, "invalid read from stack off -8+0 size 8")),
            Ok(_) => kassert!(false, "an uninitialised stack read was accepted"),
        }
        // The refusals used no id: the next load continues where the first one stopped.
        let again = load("fentry_test")?;
        kassert_eq!(again.progs[0], first.progs.last().copied().unwrap_or(0) + 1);
        kassert_eq!(again.maps[0], first.maps.last().copied().unwrap_or(0) + 1);
        // A second load of a loaded object is refused, and the first stays.
        kassert_eq!(bpfrt::load("fentry_test.bpf.o"), Err(LoadError::Exists("fentry_test".into())));
        kassert_eq!(bpfrt::progs().len(), 4);
        Ok(())
    }
}

ktest! {
    /// Unloading leaves nothing: the registry empties, every byte of the heap comes back over a
    /// round of loading everything and running every program; a program still held by a run
    /// keeps its maps until it is dropped; ids are never reused.
    fn bpf_core::unload_leaves_nothing() {
        need_objects()?;
        let _g = UnloadAll;
        let round = || -> Result<u32, TestError> {
            let mut last = 0;
            for name in GOOD {
                let l = load(name)?;
                last = last.max(l.progs.iter().copied().max().unwrap_or(0));
                for id in &l.progs {
                    let p = bpfrt::prog(*id).ok_or_else(|| err("gone"))?;
                    let ctx = Context::words(p.kind, &[1]).map_err(err)?;
                    bpfrt::run(&p, &ctx).map_err(|f| err(alloc::format!("{name} {}: {f}", p.name)))?;
                }
            }
            for name in GOOD {
                bpfrt::unload(name).map_err(err)?;
            }
            Ok(last)
        };
        crate::tracefs::reset();
        crate::tracefs::reset();
        let h0 = crate::heap::used();
        let last1 = round()?;
        let h1 = crate::heap::used();
        let last2 = round()?;
        let h2 = crate::heap::used();
        kdiag!("heap in use: {h0} before, {h1} after one round, {h2} after two");
        kassert_eq!(h2, h1, "heap returned");
        kassert!(last2 > last1, "ids are not reused ({last2} after {last1})");
        kassert!(bpfrt::progs().is_empty() && bpfrt::maps().is_empty() && bpfrt::objects().is_empty());
        kassert_eq!(bpfrt::unload("maps_test"), Err(bpfrt::UnloadError::NotLoaded("maps_test".into())));
        // Unloaded while held: the program and its maps live until the holder drops them.
        load("maps_test")?;
        let p = prog("maps_test", "count_calls")?;
        let pairs_id = map_of("maps_test", "pairs")?.id;
        bpfrt::unload("maps_test").map_err(err)?;
        kassert!(bpfrt::prog(p.id).is_none() && bpfrt::map(pairs_id).is_none());
        kassert_eq!(call(&p, &[5], 0)?, 0);
        let events = p.maps.iter().find_map(|m| m.as_ringbuf().map(|r| r.consume(|_| {})));
        kassert_eq!(events, Some(1));
        drop(p);
        kassert_eq!(crate::heap::used(), h2, "heap returned after the last holder");
        crate::tracefs::reset();
        Ok(())
    }
}

ktest! {
    /// The `bpf` shell command: each subcommand's text, and an `Error:` line for every kind of
    /// bad input, with nothing changed.
    fn bpf_core::shell_command() {
        need_objects()?;
        let _g = UnloadAll;
        crate::tracefs::reset();
        kassert!(sh("bpf").starts_with("usage: bpf OBJECT COMMAND"));
        let out = sh("bpf prog load maps_test");
        kassert!(out.starts_with("loaded maps_test: prog_ids "), "{out}");
        let p = prog("maps_test", "count_calls")?;
        let id = p.id;
        let ids = |name: &str| map_of("maps_test", name).map(|m| m.id);
        let (pairs, counters, events) = (ids("pairs")?, ids("counters")?, ids("events")?);
        let list = sh("bpf prog list");
        let tag: String = bpf::insn::tag(&p.insns).iter().map(|b| alloc::format!("{b:02x}")).collect();
        let jited = p.jited.as_ref().map_or(0, |j| j.len());
        kassert!(jited > 0, "maps_test's program is JITed: {:?}", p.jit_error);
        kassert!(
            list.starts_with(&alloc::format!(
                "{id}: fentry  name count_calls  target bpf_fentry_test1  gpl\n\tobject maps_test  tag {tag}  xlated {}B  jited {jited}B  insns {}",
                p.insns.len() * 8,
                p.insns.len()
            )),
            "{list}"
        );
        let j = sh(&alloc::format!("bpf prog dump jited {id}"));
        kassert!(j.starts_with(&alloc::format!("bpf_prog_{tag}_count_calls:\n    0:\taddi.d $sp, $sp, -")), "{j}");
        kassert!(j.contains("\n; r7 = *(u64 *)(r1 +0)\n"), "{j}");
        kassert_eq!(j.lines().filter(|l| !l.starts_with(';')).count(), jited / 4 + 1);
        kassert!(j.contains("\tbl ") && j.contains("\tret\n"), "helpers called with bl: {j}");
        kassert!(list.contains(&alloc::format!("map_ids {pairs},{counters},")), "{list}");
        kassert_eq!(sh(&alloc::format!("bpf prog show id {id}")), list);
        let x = sh(&alloc::format!("bpf prog dump xlated id {id}"));
        kassert!(x.starts_with("   0: (79) r7 = *(u64 *)(r1 +0)\n"), "{x}");
        kassert!(x.contains(&alloc::format!("(18) r1 = map[id:{pairs}]\n")) && x.contains("call bpf_ringbuf_reserve#131"), "{x}");
        kassert_eq!(x.lines().count() + x.matches("(18)").count(), p.insns.len());
        let run = sh(&alloc::format!("bpf prog run {id} 5"));
        kassert!(run.starts_with("Return value: 0 (0x0), ") && run.ends_with(" instructions executed\n"), "{run}");
        let maps = sh("bpf map list");
        kassert!(maps.contains(&alloc::format!("{pairs}: hash  name pairs  flags 0x1\n\tkey 4B  value 16B  max_entries 64  memlock ")), "{maps}");
        kassert!(maps.contains("percpu_array  name percpu_calls") && maps.contains("ringbuf  name events"), "{maps}");
        kassert_eq!(sh(&alloc::format!("bpf map dump {pairs}")), "key: 05 00 00 00  value: 01 00 00 00 00 00 00 00  05 00 00 00 00 00 00 00\nFound 1 element\n");
        let rb = sh(&alloc::format!("bpf map dump {events}"));
        kassert!(rb.contains("\nrecord (16 bytes): ") && rb.ends_with("Consumed 1 record\n"), "{rb}");
        kassert_eq!(sh(&alloc::format!("bpf map update {counters} key 2 0 0 0 value hex 2a 00 00 00 00 00 00 00")), "");
        kassert_eq!(sh(&alloc::format!("bpf map lookup id {counters} key 0x2 0 0 0")), "key: 02 00 00 00  value: 2a 00 00 00 00 00 00 00\n");
        kassert_eq!(sh(&alloc::format!("bpf map update {pairs} key 9 0 0 0 value 1 0 0 0 0 0 0 0 9 0 0 0 0 0 0 0 noexist")), "");
        kassert!(sh(&alloc::format!("bpf map update {pairs} key 9 0 0 0 value 1 0 0 0 0 0 0 0 9 0 0 0 0 0 0 0 noexist")).starts_with("Error: update failed: File exists"));
        kassert_eq!(sh(&alloc::format!("bpf map delete {pairs} key 9 0 0 0")), "");
        let refused = sh("bpf prog load bad_null_check");
        kassert!(refused.starts_with("-- BEGIN PROG LOAD LOG --\n0: (79) r1 = *(u64 *)(r1 +0)\n"), "{refused}");
        kassert!(refused.ends_with("Error: failed to load object bad_null_check: program no_null_check (fentry/bpf_fentry_test1) refused by the verifier: insn 8: R0 invalid mem access 'map_value_or_null'\n"), "{refused}");
        let before = (sh("bpf prog list"), sh("bpf map list"), sh(&alloc::format!("bpf map dump {counters}")));
        for (line, want) in [
            ("bpf frob", "Error: unknown command `bpf frob`"),
            ("bpf prog load", "Error: expected exactly one object name"),
            ("bpf prog load nosuch", "Error: failed to load object nosuch: no BPF object nosuch"),
            ("bpf prog load maps_test", "Error: failed to load object maps_test: object maps_test is loaded already"),
            ("bpf prog run 999", "Error: get by id (999): No such file or directory"),
            ("bpf prog run x", "Error: invalid program id 'x'"),
            ("bpf prog dump xlated", "Error: expected a program id"),
            ("bpf prog dump source 1", "Error: expected `bpf prog dump xlated ID` or `bpf prog dump jited ID`"),
            ("bpf map dump 999", "Error: get map by id (999): No such file or directory"),
            ("bpf obj unload nosuch", "Error: object nosuch is not loaded"),
        ] {
            let out = sh(line);
            kassert!(out.starts_with(want) && out.lines().count() == 1, "'{line}' printed '{out}', expected '{want}...'");
        }
        for (line, want) in [
            (alloc::format!("bpf prog run {id} 1 2 3 4 5 6 7 8 9"), "Error: a context of 72 bytes: a fentry program reads at most 64"),
            (alloc::format!("bpf prog run {id} 12z"), "Error: '12z' is not a number"),
            (alloc::format!("bpf prog run {id} hex 0g"), "Error: '0g' is not bytes in hex"),
            (alloc::format!("bpf prog list {id} extra"), "Error: unexpected 'extra'"),
            (alloc::format!("bpf map update {counters} key 1 value 1"), "Error: key has 1 bytes, the map's key size is 4"),
            (alloc::format!("bpf map update {counters} key 1 0 0 0 value 256 0 0 0 0 0 0 0"), "Error: '256' is not a byte (value)"),
            (alloc::format!("bpf map update {counters} key 1 0 0 0 value 1 0 0 0 0 0 0 0 sometimes"), "Error: 'sometimes' is not a byte (value)"),
            (alloc::format!("bpf map update {counters} key 1 0 0 0 value 1 0 0 0 0 0 0 0 any exist"), "Error: unexpected 'any' (any, exist or noexist)"),
            (alloc::format!("bpf map lookup {counters} key 9 0 0 0"), "Error: lookup failed: No such file or directory"),
            (alloc::format!("bpf map lookup {counters}"), "Error: expected `key BYTES...`"),
            (alloc::format!("bpf map delete {counters} key 1 0 0 0"), "Error: delete failed: Invalid argument"),
            (alloc::format!("bpf map lookup {events} key 0"), "Error: map "),
        ] {
            let out = sh(&line);
            kassert!(out.starts_with(want) && out.lines().count() == 1, "'{line}' printed '{out}', expected '{want}...'");
        }
        let after = (sh("bpf prog list"), sh("bpf map list"), sh(&alloc::format!("bpf map dump {counters}")));
        kassert!(before == after, "bad input changed something");
        let objs = sh("bpf obj list");
        kassert!(objs.lines().any(|l| l.starts_with("maps_test") && l.contains("loaded: prog_ids")), "{objs}");
        kassert!(objs.lines().any(|l| l.starts_with("bad_null_check") && !l.contains("loaded")), "{objs}");
        kassert_eq!(sh("bpf obj unload maps_test"), "");
        kassert_eq!(sh("bpf prog list"), "");
        kassert_eq!(sh("bpf map list"), "");
        crate::tracefs::reset();
        Ok(())
    }
}

/// A random program of numbers and the stack for the JIT's differential test: every register
/// set first, the stack slots zeroed, then ALU operations (64 and 32 bits, every operation,
/// register and immediate operands), negation and byte order, stores and loads of every size
/// through `r10`, and forward conditional jumps (so it ends), then `exit`.
fn random_numbers_program(rng: &mut bpf::rng::Rng) -> Vec<Insn> {
    use bpf::insn::*;
    const EDGES: [u64; 8] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 63, u64::MAX, 0x1234_5678_9abc_def0];
    let mut p = Vec::new();
    for r in 0..10u8 {
        let v = if rng.chance(40) { rng.pick(&EDGES) } else { rng.next() >> rng.below(64) };
        p.push(Insn::new(BPF_LD | BPF_DW | BPF_IMM, r, 0, 0, v as u32 as i32));
        p.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
    }
    for k in 1..=8i16 {
        p.push(Insn::new(BPF_ST | BPF_MEM | BPF_DW, 10, 0, -8 * k, 0));
    }
    let ops: [(u8, i16); 17] = [
        (BPF_ADD, 0), (BPF_SUB, 0), (BPF_MUL, 0), (BPF_DIV, 0), (BPF_DIV, 1), (BPF_OR, 0), (BPF_AND, 0), (BPF_LSH, 0),
        (BPF_RSH, 0), (BPF_MOD, 0), (BPF_MOD, 1), (BPF_XOR, 0), (BPF_MOV, 0), (BPF_ARSH, 0), (BPF_MOV, 8), (BPF_MOV, 16), (BPF_MOV, 32),
    ];
    let conds = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE, BPF_JSET];
    let sizes = [BPF_B, BPF_H, BPF_W, BPF_DW];
    let body = 20 + rng.index(20);
    for i in 0..body {
        let (dst, src) = (rng.index(10) as u8, rng.index(10) as u8);
        let imm = if rng.chance(30) { rng.pick(&[0i32, 1, -1, 31, 63, 2047, -2048, 4096, i32::MIN, i32::MAX]) } else { rng.next() as i32 >> rng.below(32) };
        let insn = match rng.index(10) {
            0..=4 => {
                let (op, off) = rng.pick(&ops);
                let class = if rng.chance(50) || off == 32 { BPF_ALU64 } else { BPF_ALU };
                if off > 1 || rng.chance(50) {
                    Insn::new(class | op | BPF_X, dst, src, off, 0)
                } else {
                    Insn::new(class | op | BPF_K, dst, 0, off, imm)
                }
            }
            5 => {
                let left = (body - i - 1) as i16;
                let off = rng.index(left.min(6) as usize + 1) as i16;
                let class = if rng.chance(50) { BPF_JMP } else { BPF_JMP32 };
                if rng.chance(50) { Insn::new(class | rng.pick(&conds) | BPF_X, dst, src, off, 0) } else { Insn::new(class | rng.pick(&conds) | BPF_K, dst, 0, off, imm) }
            }
            6 => Insn::new(BPF_STX | BPF_MEM | rng.pick(&sizes), 10, src, -8 * (1 + rng.index(8) as i16), 0),
            7 => {
                let size = rng.pick(&sizes);
                let mode = if size != BPF_DW && rng.chance(50) { BPF_MEMSX } else { BPF_MEM };
                Insn::new(BPF_LDX | mode | size, dst, 10, -8 * (1 + rng.index(8) as i16), 0)
            }
            8 => Insn::new(if rng.chance(50) { BPF_ALU64 } else { BPF_ALU } | BPF_NEG, dst, 0, 0, 0),
            _ => {
                let (class, kind) = rng.pick(&[(BPF_ALU, BPF_TO_LE), (BPF_ALU, BPF_TO_BE), (BPF_ALU64, BPF_TO_LE)]);
                Insn::new(class | BPF_END | kind, dst, 0, 0, rng.pick(&[16, 32, 64]))
            }
        };
        p.push(insn);
    }
    p.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    p
}

ktest! {
    /// The JIT on the real (emulated) CPU: 2,000 random programs of numbers and the stack, each
    /// run natively (from the generated-code area) and in the interpreter, give the same `r0`; and a
    /// program the JIT does not compile is refused with the reason (it stays interpreted).
    fn bpf_core::jit_matches_the_interpreter() {
        let mut rng = bpf::rng::Rng(0x0b5e_55ed_0f_1a7e);
        let mut words = 0;
        for n in 0..2000 {
            let p = random_numbers_program(&mut rng);
            let jited = bpfrt::jit::JitedProg::compile(&p, None, None, None).map_err(|e| TestError::Fail(alloc::format!("program {n}: {e}")))?;
            words += jited.code.len();
            // SAFETY: the program touches only its registers and its 64 bytes of stack, calls no
            // helper and ends (its jumps go forward).
            let native = unsafe { jited.call(0) };
            let mut env = bpf::interp::SimpleEnv::new();
            let interp = bpf::interp::run(&p, &mut env, 0).map_err(|e| TestError::Fail(alloc::format!("program {n}: interpreter {e:?}")))?;
            kassert!(native == interp, "program {n}: native {native:#x}, interpreter {interp:#x}: {p:?}");
        }
        kdiag!("2000 programs, {words} native words");
        let kfunc = [Insn::new(bpf::insn::BPF_JMP | bpf::insn::BPF_CALL, 0, bpf::insn::BPF_PSEUDO_KFUNC_CALL, 0, 7), Insn::new(bpf::insn::BPF_JMP | bpf::insn::BPF_EXIT, 0, 0, 0, 0)];
        let e = bpfrt::jit::JitedProg::compile(&kfunc, None, None, None).err().unwrap_or_default();
        kassert!(e.contains("kfunc"), "{e}");
        Ok(())
    }
}
