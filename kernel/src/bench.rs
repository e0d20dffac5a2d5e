//! `bench=1`: the per-call cost of every tracing mode in guest instructions.
//!
//! Run under `qemu -icount shift=0,sleep=off`, where the stable counter advances once per 10
//! guest instructions; every measurement window is read exactly (to the instruction, see
//! `crate::icount`) and runs with interrupts off, so the same image gives the same numbers on
//! every run and every host. Each row calls a small traced function (`bench_target`) `CALLS` times
//! and subtracts the same loop calling an identical function compiled without patchable NOPs
//! (`bench_target_notrace`). Rows are printed as `BENCH <row> <instructions>` for `tools/ltbench`.

use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, graph_tracer, tracer};
use alloc::vec::Vec;
use crate::icount;
use core::hint::black_box;

/// Calls per measurement: resolution is 10 / CALLS instructions per call.
const CALLS: u64 = 20_000;
/// Ops counts of the `ops_on_one_<n>` rows.
const OPS_ON_ONE: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Counts of ops filtering other functions of the `ops_1_plus_<n>_irrelevant` rows.
const IRRELEVANT: [usize; 3] = [0, 100, 1000];

/// The traced function of every row.
#[inline(never)]
pub fn bench_target(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5)
}

/// The same function without a patch site: the baseline.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn bench_target_notrace(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5)
}

#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn loop_traced(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(bench_target(black_box(i)));
    }
    acc
}

#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn loop_notrace(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(bench_target_notrace(black_box(i)));
    }
    acc
}

// loongtrace_bench_empty_callback: the empty callback of the ops rows (`jr ra`, one instruction),
// the same cost a Linux ops with an empty callback pays.
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_bench_empty_callback
    .type loongtrace_bench_empty_callback, @function
loongtrace_bench_empty_callback:
    jr      $ra
    .size loongtrace_bench_empty_callback, . - loongtrace_bench_empty_callback
"#
);

// SAFETY: the asm routine returns at once and touches no register or memory, so calling it
// with any arguments is safe. (It never looks behind the references, hence the allow.)
#[allow(improper_ctypes)]
unsafe extern "C" {
    safe fn loongtrace_bench_empty_callback(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs);
}

fn empty_ops(flags: OpsFlags) -> &'static FtraceOps {
    FtraceOps::new_boxed(loongtrace_bench_empty_callback, flags)
}

/// Guest instructions `f` takes (see `icount::instructions`), `None` when not under
/// `-icount shift=0`.
fn instructions<R>(f: impl FnOnce() -> R) -> Option<(u64, R)> {
    let (n, r) = icount::instructions(f);
    n.map(|n| (n, r))
}

/// Overhead per call, in tenths of an instruction.
fn overhead_tenths() -> Option<i64> {
    let run = |f: fn(u64) -> u64| instructions(|| f(black_box(CALLS))).map(|(n, _)| n as i64);
    // Warm up (first-execution effects), then measure both loops.
    run(loop_traced)?;
    run(loop_notrace)?;
    let traced = run(loop_traced)?;
    let base = run(loop_notrace)?;
    Some(tenths_per(traced - base, CALLS as i64))
}

/// `n` instructions over `ops` operations, in tenths of an instruction per operation, rounded to
/// nearest (exact counts, so every run rounds the same way).
fn tenths_per(n: i64, ops: i64) -> i64 {
    let scaled = n * 10;
    (scaled + scaled.signum() * ops / 2) / ops
}

fn report(row: &str, tenths: i64) {
    let sign = if tenths < 0 { "-" } else { "" };
    println!("BENCH {row} {sign}{}.{}", tenths.abs() / 10, tenths.abs() % 10);
}

struct Cleanup(Vec<&'static FtraceOps>);

impl Cleanup {
    fn ops(&mut self, flags: OpsFlags, filter: Option<&str>) -> Result<&'static FtraceOps, FtraceError> {
        let o = empty_ops(flags);
        self.0.push(o);
        if let Some(f) = filter {
            ftrace::ftrace_set_filter(o, f, true)?;
        }
        ftrace::register_ftrace_function(o)?;
        Ok(o)
    }
    fn done(self) {
        for o in self.0 {
            let _ = ftrace::unregister_ftrace_function(o);
            // SAFETY: made by new_boxed, unregistered just above, no other reference kept.
            let _ = unsafe { FtraceOps::free(o) };
        }
    }
}

/// Measures one row: `setup` registers what the row needs into `c`.
fn row(name: &str, setup: impl FnOnce(&mut Cleanup) -> Result<(), FtraceError>) {
    let mut c = Cleanup(Vec::new());
    match setup(&mut c).map(|()| overhead_tenths()) {
        Ok(Some(t)) => report(name, t),
        Ok(None) => println!("BENCH-ERROR {name} the counter does not count instructions (not under -icount shift=0?)"),
        Err(e) => println!("BENCH-ERROR {name} {e}"),
    }
    c.done();
}

static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

/// Runs every row and prints the results.
pub fn run() {
    let target = "bench_target";
    println!("BENCH-START calls={CALLS}");
    // Where the bench starts, in guest instructions since reset: it differs from run to run when
    // the console had to wait for the host (see docs/performance.md), the rows do not.
    if let Some(n) = arch::cpu::without_irqs(icount::now) {
        println!("BENCH-INFO started at guest instruction {n}");
    }
    // The scale image (`make bench SITES=n`) is only there for the per-site rows.
    if cfg!(feature = "scale") {
        patch_all();
        println!("BENCH-DONE");
        return;
    }
    row("nop_site", |_| Ok(()));
    row("ops_1", |c| c.ops(OpsFlags::empty(), Some(target)).map(drop));
    row("ops_10_relevant", |c| (0..10).try_for_each(|_| c.ops(OpsFlags::empty(), Some(target)).map(drop)));
    // Cost curves: n ops on the function (from two on, the site list), and one ops among n that
    // filter another function.
    for n in OPS_ON_ONE {
        row(&alloc::format!("ops_on_one_{n}"), |c| (0..n).try_for_each(|_| c.ops(OpsFlags::empty(), Some(target)).map(drop)));
    }
    for n in IRRELEVANT {
        row(&alloc::format!("ops_1_plus_{n}_irrelevant"), |c| {
            c.ops(OpsFlags::empty(), Some(target))?;
            (0..n).try_for_each(|_| c.ops(OpsFlags::empty(), Some("dyn_func2")).map(drop))
        });
    }
    row("ops_regs", |c| c.ops(OpsFlags::SAVE_REGS, Some(target)).map(drop));
    let stub = arch::ftrace::addr::stub_direct_tramp();
    let direct = |c: &mut Cleanup, shared: bool| -> Result<(), FtraceError> {
        ftrace::ftrace_set_filter(&DIRECT, target, true)?;
        ftrace::register_ftrace_direct(&DIRECT, stub)?;
        if shared {
            c.ops(OpsFlags::empty(), Some(target))?;
        }
        Ok(())
    };
    row("direct_straight", |c| direct(c, false));
    let _ = ftrace::unregister_ftrace_direct(&DIRECT, stub);
    row("direct_via_regs", |c| direct(c, true));
    let _ = ftrace::unregister_ftrace_direct(&DIRECT, stub);
    let _ = ftrace::ftrace_reset_filters(&DIRECT);
    tramp_rows();
    bpf_rows();
    row("function_tracer", |_| {
        tracer::reset_buffers();
        tracer::start(Some(target))
    });
    let _ = tracer::stop();
    // The same with the rings published as for a streamed recording (`ltrace record`): the
    // reader is the host, so nothing on the tracing path may change.
    row("function_tracer_streamed", |_| {
        tracer::reset_buffers();
        ftrace::stream::publish(1);
        tracer::start(Some(target))
    });
    let _ = tracer::stop();
    ftrace::stream::stop();
    row("graph", |_| {
        tracer::reset_buffers();
        graph_tracer::start(&graph_tracer::GraphConfig { ftrace_filter: Some(target), ..Default::default() })
    });
    let _ = graph_tracer::stop();
    tracer::reset_buffers();
    kprobe_rows();
    kprobe_event_row();
    tracepoint_row();
    patch_all();
    println!("BENCH-DONE");
}

/// The `kprobe_event` row's target: a number and a pointer (the event fetches `%a0` and
/// `+8(%a1):u32`).
#[inline(never)]
pub fn bench_event_target(x: u64, p: &[u32; 4]) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5) ^ p[2] as u64
}

/// The same without a patch site: the baseline.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn bench_event_target_notrace(x: u64, p: &[u32; 4]) -> u64 {
    x.wrapping_mul(0x9e37_79b9).rotate_left(5) ^ p[2] as u64
}

/// The probe event rows, per call over the untraced function: `kprobe_event`, a kprobe event on
/// `bench_event_target`'s entry (on ftrace) recording `%a0` and `+8(%a1):u32`; and, with the
/// content of Linux's events in `make bench-linux` (no fetch arguments), `kprobe_break_event`
/// (a kprobe event at `+8`, the body's first instruction: a `break`) and `kretprobe_event`.
fn kprobe_event_row() {
    event_row("kprobe_event", "p:bench/kprobe_event bench_event_target a=%a0 b=+8(%a1):u32");
    event_row("kprobe_break_event", "p:bench/kprobe_break_event bench_event_target+8");
    event_row("kretprobe_event", "r:bench/kretprobe_event bench_event_target");
}

/// Defines the event `def` (system `bench`, named `row`), enables it and reports the row; every
/// call must write exactly one ring slot (no drop, no two-slot record).
fn event_row(row: &str, def: &str) {
    static ARG: [u32; 4] = [1, 2, 3, 4];
    let run = |f: fn(u64, &[u32; 4]) -> u64| {
        instructions(|| {
            let mut acc = 0u64;
            for i in 0..CALLS {
                acc = acc.wrapping_add(f(black_box(i), black_box(&ARG)));
            }
            acc
        })
        .map(|(n, _)| n as i64)
    };
    let iface = crate::events::probe_def::Interface::KprobeEvents;
    if let Err(e) = crate::events::kprobe_event::write(def, true, iface) {
        println!("BENCH-ERROR {row} defining it: {e}");
        return;
    }
    let measure = || -> Option<i64> {
        let ev = crate::events::registry::find("bench", row)?;
        crate::events::registry::set_enabled(&ev, true).ok()?;
        let ring = &tracer::BUFFERS[arch::cpu::id() % arch::boot::MAX_CPUS];
        let before = (ring.written(), ring.dropped());
        run(bench_event_target)?;
        run(bench_event_target_notrace)?;
        let with = run(bench_event_target)?;
        let without = run(bench_event_target_notrace)?;
        let after = (ring.written(), ring.dropped());
        let _ = crate::events::registry::set_enabled(&ev, false);
        (after.0 - before.0 == 2 * CALLS && after.1 == before.1).then(|| tenths_per(with - without, CALLS as i64))
    };
    match measure() {
        Some(t) => report(row, t),
        None => println!("BENCH-ERROR {row} not measured (no event, or not every call wrote one ring slot)"),
    }
    let _ = crate::events::kprobe_event::write(&alloc::format!("-:bench/{row}"), true, iface);
    tracer::reset_buffers();
}

/// A tracepoint for `tracepoint_off`: no probe is ever registered on it.
static BENCH_TP: crate::tracepoint::Tracepoint = crate::tracepoint::Tracepoint::new("bench", "bench_tp", &[("x", crate::tracepoint::TpType::U64)]);

/// A function that calls another (so it has its frame whatever else it does) and fires a
/// tracepoint with no probe after the call.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn bench_tp_target(x: u64) -> u64 {
    let y = bench_target_notrace(x);
    crate::tracepoint::trace!(BENCH_TP, 7u64);
    black_box(y)
}

/// The same without the tracepoint: the difference is what the disabled tracepoint costs.
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn bench_tp_plain(x: u64) -> u64 {
    let y = bench_target_notrace(x);
    black_box(y)
}

/// `tracepoint_off`: what a tracepoint with no probe costs per call (its jump-label `nop`), as
/// the difference between two functions that differ only by it.
fn tracepoint_row() {
    let run = |f: fn(u64) -> u64| {
        instructions(|| {
            let mut acc = 0u64;
            for i in 0..CALLS {
                acc = acc.wrapping_add(f(black_box(i)));
            }
            acc
        })
        .map(|(n, _)| n as i64)
    };
    let measure = || -> Option<i64> {
        run(bench_tp_target)?;
        run(bench_tp_plain)?;
        let with = run(bench_tp_target)?;
        let without = run(bench_tp_plain)?;
        Some(tenths_per(with - without, CALLS as i64))
    };
    match measure() {
        Some(t) => report("tracepoint_off", t),
        None => println!("BENCH-ERROR tracepoint_off the counter does not count instructions"),
    }
}

/// `kprobe` / `kprobe_simulated`: a break probe with an empty pre handler on an instruction in the
/// middle of `bench_target` (stepped out of line), and on its `jr ra` (simulated);
/// `kprobe_on_ftrace` at its entry; `kretprobe` with an empty return handler.
fn kprobe_rows() {
    use crate::kprobes::{self, Kprobe, Where};
    // The handlers are notrace, like the empty callbacks of the ops rows: the rows measure the
    // probe machinery, not a patch site in the handler.
    #[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
    fn empty(_p: &Kprobe, _r: &mut arch::frame::PtRegs) -> bool {
        false
    }
    let Some(sym) = crate::ksyms::find("bench_target") else {
        println!("BENCH-ERROR kprobe bench_target has no symbol");
        return;
    };
    // The body starts after the two patch-site words; the last word is `jr ra`.
    let words = sym.size as u64 / 4;
    let stepped = (2..words - 1).map(|i| sym.addr + 4 * i).find(|&a| {
        matches!(arch::patch::read_insn(a).map(arch::kprobe_insn::classify), Ok(arch::kprobe_insn::Class::Step))
    });
    let simulated = sym.addr + 4 * (words - 1);
    for (name, at) in [("kprobe", stepped), ("kprobe_simulated", Some(simulated))] {
        let Some(at) = at else {
            println!("BENCH-ERROR {name} no such instruction in bench_target");
            continue;
        };
        let p: &'static Kprobe = alloc::boxed::Box::leak(alloc::boxed::Box::new(Kprobe::with(Where::Addr(at), Some(empty), None)));
        match kprobes::register_kprobe(p) {
            Err(e) => println!("BENCH-ERROR {name} {e}"),
            Ok(()) => {
                match overhead_tenths() {
                    Some(t) => report(name, t),
                    None => println!("BENCH-ERROR {name} the counter does not count instructions"),
                }
                let _ = kprobes::unregister_kprobe(p);
            }
        }
    }
    // `kprobe_post`: the stepped instruction again with an (empty) post handler too: the slot
    // ends with `break 11`, a second trap, instead of jumping back.
    #[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
    fn empty_post(_p: &Kprobe, _r: &mut arch::frame::PtRegs) {}
    if let Some(at) = stepped {
        let p: &'static Kprobe = alloc::boxed::Box::leak(alloc::boxed::Box::new(Kprobe::with(Where::Addr(at), Some(empty), Some(empty_post))));
        match kprobes::register_kprobe(p) {
            Err(e) => println!("BENCH-ERROR kprobe_post {e}"),
            Ok(()) => {
                match overhead_tenths() {
                    Some(t) => report("kprobe_post", t),
                    None => println!("BENCH-ERROR kprobe_post the counter does not count instructions"),
                }
                let _ = kprobes::unregister_kprobe(p);
            }
        }
    }
    // `kprobe_on_ftrace`: the same empty pre handler at the entry (through ftrace_regs_caller).
    let p: &'static Kprobe = alloc::boxed::Box::leak(alloc::boxed::Box::new(Kprobe::with(Where::Addr(sym.addr), Some(empty), None)));
    match kprobes::register_kprobe(p) {
        Err(e) => println!("BENCH-ERROR kprobe_on_ftrace {e}"),
        Ok(()) if !p.on_ftrace() => {
            println!("BENCH-ERROR kprobe_on_ftrace the probe at the entry is not on ftrace");
            let _ = kprobes::unregister_kprobe(p);
        }
        Ok(()) => {
            match overhead_tenths() {
                Some(t) => report("kprobe_on_ftrace", t),
                None => println!("BENCH-ERROR kprobe_on_ftrace the counter does not count instructions"),
            }
            let _ = kprobes::unregister_kprobe(p);
        }
    }
    // `kretprobe`: an empty return handler (the entry rides ftrace; the return the trampoline).
    use crate::kprobes::kretprobe::{self, Kretprobe, KretprobeInstance};
    #[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
    fn empty_ret(_ri: &KretprobeInstance, _r: &mut arch::frame::PtRegs) {}
    static RP: Kretprobe = Kretprobe::new("bench_target", None, Some(empty_ret), 0);
    match kretprobe::register_kretprobe(&RP) {
        Err(e) => println!("BENCH-ERROR kretprobe {e}"),
        Ok(()) => {
            match overhead_tenths() {
                Some(t) => report("kretprobe", t),
                None => println!("BENCH-ERROR kretprobe the counter does not count instructions"),
            }
            let _ = kretprobe::unregister_kretprobe(&RP);
        }
    }
}

/// `enable_all` / `disable_all`: instructions per site to patch every traceable site, measured
/// with interrupts off (a timer interrupt inside the window would add its handler's cost, and
/// where it lands depends on everything before).
fn patch_all() {
    let all = empty_ops(OpsFlags::empty());
    let r = instructions(|| ftrace::register_ftrace_function(all));
    let mut enabled = 0i64;
    ftrace::core::for_each_site(|s| enabled += s.state.flags.contains(ftrace::core::SiteFlags::ENABLED) as i64);
    let u = instructions(|| ftrace::unregister_ftrace_function(all));
    match (r, u) {
        (Some((on, Ok(()))), Some((off, Ok(())))) if enabled > 0 => {
            println!("BENCH-INFO enable_all sites={enabled}");
            report("enable_all", tenths_per(on as i64, enabled));
            report("disable_all", tenths_per(off as i64, enabled));
        }
        (r, u) => println!("BENCH-ERROR enable_all {:?} {:?} sites={enabled}", r.map(|x| x.1), u.map(|x| x.1)),
    }
    // SAFETY: made by new_boxed, unregistered above.
    let _ = unsafe { FtraceOps::free(all) };
    per_site();
}

/// The glob of `filter_glob_per_site`.
const FILTER_GLOB: &str = "*chain_?*";
/// The name of `filter_exact_per_site` (a function of every image, the scale one's too).
const FILTER_EXACT: &str = "bench_target";

/// The per-site rows: boot-time init (`ftrace::init`, measured exactly at boot), a
/// `set_ftrace_filter` glob over every name ([`FILTER_GLOB`]), and the heap bytes init allocated
/// per site (every allocation of the site table and the sites' state) besides the site's name.
fn per_site() {
    let sites = ftrace::sites::all().len() as i64;
    println!("BENCH-INFO sites={sites}");
    #[cfg(feature = "scale")]
    println!("BENCH-INFO scale build: {} generated functions", crate::scale::count());
    match ftrace::core::init_cost() {
        (Some(insns), bytes) if sites > 0 => {
            report("init_per_site", tenths_per(insns as i64, sites));
            // Besides its name: the 16-byte reference to the name's text in the symbol table
            // (or a module's memory) is left out with the text.
            let name_refs = sites * core::mem::size_of::<&str>() as i64;
            report("bytes_per_site", tenths_per(bytes as i64 - name_refs, sites));
        }
        _ => println!("BENCH-ERROR init_per_site boot-time init was not measured (not under -icount shift=0?)"),
    }
    // A glob that must read every name: after the leading star it looks for `chain_` and one
    // more character anywhere in the name, which reads a name that does not match to its end (the
    // trailing star is reached only in the few that do; `*` alone is answered without reading the
    // name at all). It matches the kernel's few `chain_` functions (a glob matching nothing is an
    // error) and none of the scale image's generated ones.
    let probe = empty_ops(OpsFlags::empty());
    match instructions(|| ftrace::ftrace_set_filter(probe, FILTER_GLOB, true)) {
        Some((n, Ok(()))) if sites > 0 => report("filter_glob_per_site", tenths_per(n as i64, sites)),
        other => println!("BENCH-ERROR filter_glob_per_site {:?}", other.map(|x| x.1)),
    }
    // One exact name, as Linux's `echo sys_getppid > set_ftrace_filter` (make bench-linux).
    match instructions(|| ftrace::ftrace_set_filter(probe, FILTER_EXACT, true)) {
        Some((n, Ok(()))) if sites > 0 => report("filter_exact_per_site", tenths_per(n as i64, sites)),
        other => println!("BENCH-ERROR filter_exact_per_site {:?}", other.map(|x| x.1)),
    }
    // SAFETY: made by new_boxed, never registered.
    let _ = unsafe { FtraceOps::free(probe) };
}

// loongtrace_bench_empty_prog: the empty program of the trampoline rows (`jr ra`).
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_bench_empty_prog
    .type loongtrace_bench_empty_prog, @function
loongtrace_bench_empty_prog:
    jr      $ra
    .size loongtrace_bench_empty_prog, . - loongtrace_bench_empty_prog
"#
);

unsafe extern "C" {
    // SAFETY: returns at once without touching memory; callers ignore its result.
    safe fn loongtrace_bench_empty_prog(ctx: &ftrace::bpf::TraceCtx) -> u64;
}

/// `bpf_fentry`, `bpf_fexit`, `bpf_fmod_ret`, `bpf_kprobe`: an empty BPF program (`r0 = 0;
/// exit`), JITed and attached to `bench_target` (its trampoline with the recursion guard, or a
/// kprobe at its entry, on ftrace); `bpf_fentry_interp` the same fentry program interpreted.
fn bpf_rows() {
    use crate::bpfrt::{self, link};
    use bpf::insn::Insn;
    use bpf::object::ProgKind;
    let rows = [
        ("bpf_fentry", ProgKind::Fentry, true),
        ("bpf_fexit", ProgKind::Fexit, true),
        ("bpf_fmod_ret", ProgKind::FmodRet, true),
        ("bpf_kprobe", ProgKind::Kprobe, true),
        ("bpf_fentry_interp", ProgKind::Fentry, false),
    ];
    for (name, kind, jit) in rows {
        let was = bpfrt::jit::set_enabled(jit);
        let p = bpfrt::program_for("empty", kind, "bench_target", alloc::vec![Insn::mov64_imm(0, 0), Insn::exit()], alloc::vec![]);
        bpfrt::jit::set_enabled(was);
        let p = match p {
            Ok(p) if p.jited.is_some() == jit => alloc::sync::Arc::new(p),
            Ok(p) => {
                println!("BENCH-ERROR {name} JITed: {} ({:?})", p.jited.is_some(), p.jit_error);
                continue;
            }
            Err(e) => {
                println!("BENCH-ERROR {name} {e}");
                continue;
            }
        };
        match link::attach(&p) {
            Ok(l) => {
                row(name, |_| Ok(()));
                if let Err(e) = link::detach(l) {
                    println!("BENCH-ERROR {name} detach: {e}");
                }
            }
            Err(e) => println!("BENCH-ERROR {name} {e}"),
        }
    }
}

/// `fentry`, `fexit`, `fexit_regs_route`: a generated trampoline with one empty program on
/// `bench_target` (one argument), called straight from the site, or (with an empty SAVE_REGS ops
/// on the function too) through `ftrace_regs_caller`'s direct return.
fn tramp_rows() {
    use ftrace::bpf::{Attach, Func};
    let ip = bench_target as *const () as u64;
    for (name, fexit, regs) in [("fentry", false, false), ("fexit", true, false), ("fexit_regs_route", true, true)] {
        let f = Func::at(ip, 1);
        let link = if fexit { Attach::fexit(f, loongtrace_bench_empty_prog) } else { Attach::fentry(f, loongtrace_bench_empty_prog) };
        let link = match link {
            Ok(l) => l,
            Err(e) => {
                println!("BENCH-ERROR {name} {e}");
                continue;
            }
        };
        row(name, |c| if regs { c.ops(OpsFlags::SAVE_REGS, Some("bench_target")).map(drop) } else { Ok(()) });
        if let Err(e) = link.detach() {
            println!("BENCH-ERROR {name} detach: {e}");
        }
    }
}
