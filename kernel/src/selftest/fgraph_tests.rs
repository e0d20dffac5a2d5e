//! Suite `fgraph`: the function-graph core and tracer.

use super::targets::*;
use crate::ftrace::fgraph::{self, FgraphData, FgraphEnt, FgraphOps, FgraphRet};
use crate::ftrace::{self, FtraceError, FtraceOps, OpsFlags, graph_tracer, tracer};
use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn fail(e: FtraceError) -> crate::selftest::TestError {
    crate::selftest::TestError::Fail(alloc::format!("ftrace error: {e}"))
}

fn addr(f: *const ()) -> u64 {
    f as u64
}

/// One observation of the recording graph ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    pub entry: bool,
    pub func: u64,
    pub depth: u32,
    pub retval: u64,
    /// The second return register (a1).
    pub retval_hi: u64,
    pub duration: u64,
}

static RECORDS: spin::Mutex<Vec<Rec>> = spin::Mutex::new(Vec::new());
/// Functions the recorder hooks (0 = unused slot).
static WANTED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn rec_entry(ent: &FgraphEnt, _ops: &FgraphOps, _d: &mut FgraphData) -> bool {
    if !WANTED.iter().any(|w| w.load(Relaxed) == ent.func) {
        return false;
    }
    RECORDS.lock().push(Rec { entry: true, func: ent.func, depth: ent.depth, retval: 0, retval_hi: 0, duration: 0 });
    true
}

fn rec_return(r: &FgraphRet, _ops: &FgraphOps, _d: &FgraphData) {
    RECORDS.lock().push(Rec {
        entry: false,
        func: r.func,
        depth: r.depth,
        retval: r.retval,
        retval_hi: r.retval_hi,
        duration: r.rettime - r.calltime,
    });
}

static RECORDER: FgraphOps = FgraphOps::new(rec_entry, rec_return);

/// Runs `body` with the recorder hooking `funcs` (sites enabled for `filter`); returns records.
fn record(funcs: &[*const ()], filter: &str, body: impl FnOnce()) -> Result<Vec<Rec>, crate::selftest::TestError> {
    RECORDS.lock().clear();
    for (slot, f) in WANTED.iter().zip(funcs.iter().map(|f| addr(*f)).chain(core::iter::repeat(0))) {
        slot.store(f, Relaxed);
    }
    ftrace::ftrace_set_filter(&fgraph::GRAPH_SITE_OPS, filter, true).map_err(fail)?;
    fgraph::register_ftrace_graph(&RECORDER).map_err(fail)?;
    body();
    let r = fgraph::unregister_ftrace_graph(&RECORDER);
    let _ = ftrace::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS);
    r.map_err(fail)?;
    Ok(core::mem::take(&mut *RECORDS.lock()))
}

/// Checks entries and returns pair up (LIFO), depths match, nested durations fit.
fn check_pairs(recs: &[Rec]) -> crate::selftest::TestResult {
    let mut stack: Vec<Rec> = Vec::new();
    let mut children: Vec<u64> = Vec::new();
    for r in recs {
        if r.entry {
            kassert_eq!(r.depth as usize, stack.len(), "entry depth of {}", crate::ksyms::name(r.func));
            stack.push(*r);
            children.push(0);
        } else {
            let e = stack.pop().ok_or_else(|| crate::selftest::TestError::Fail("return without entry".into()))?;
            kassert_eq!(e.func, r.func, "return matches entry");
            kassert_eq!(e.depth, r.depth);
            kassert!(r.duration > 0, "duration of {} is 0", crate::ksyms::name(r.func));
            let inner = children.pop().unwrap_or(0);
            kassert!(inner <= r.duration, "callees took {inner} > {} ticks", r.duration);
            if let Some(c) = children.last_mut() {
                *c += r.duration;
            }
        }
    }
    kassert!(stack.is_empty(), "{} entries without return", stack.len());
    Ok(())
}

/// An ops the core guards (`RECURSION`) whose callback calls a function the graph hooks.
static CALLS_CHAIN_C: FtraceOps = FtraceOps::new(call_chain_c, OpsFlags::RECURSION);

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn call_chain_c(_ip: u64, _parent: u64, _op: &FtraceOps, _regs: &mut crate::ftrace::FtraceRegs) {
    core::hint::black_box(chain_c(core::hint::black_box(5)));
}

ktest! {
    /// A function the graph hooks, called from inside another ops' callback (which the core's
    /// recursion guard covers, through the site's list): its entry and its return are both
    /// reported, as the graph entry and return take the same guard of their own.
    fn fgraph::hooked_call_inside_another_callback() {
        let fs = [chain_a as *const (), chain_c as *const ()];
        let mut v = 0;
        let recs = record(&fs, "chain_a chain_c", || {
            let r = ftrace::ftrace_set_filter(&CALLS_CHAIN_C, "chain_a", true).and_then(|_| ftrace::register_ftrace_function(&CALLS_CHAIN_C));
            v = chain_a(1);
            if r.is_ok() {
                let _ = ftrace::unregister_ftrace_function(&CALLS_CHAIN_C);
            }
            let _ = ftrace::ftrace_reset_filters(&CALLS_CHAIN_C);
        })?;
        kassert_eq!(v, 8);
        let c = addr(chain_c as *const ());
        let count = |entry: bool| recs.iter().filter(|r| r.func == c && r.entry == entry).count();
        kassert_eq!((count(true), count(false)), (2, 2), "chain_c from the callback and from chain_b: {recs:?}");
        check_pairs(&recs)?;
        kassert_eq!(fgraph::shadow_depth(), 0);
        Ok(())
    }
}

ktest! {
    /// Entry and return pairs of a known call chain: depths, return values, durations.
    fn fgraph::entry_return_pairs() {
        super::poison::each_flavour(|_| {
            let fs = [chain_root as *const (), chain_a as *const (), chain_b as *const (), chain_c as *const ()];
            let mut v = 0;
            let recs = record(&fs, "chain_*", || v = chain_root(1))?;
            kassert_eq!(v, 9);
            let shape: Vec<(bool, u64, u32)> = recs.iter().map(|r| (r.entry, r.func, r.depth)).collect();
            let f: Vec<u64> = fs.iter().map(|f| addr(*f)).collect();
            kassert_eq!(shape, alloc::vec![
                (true, f[0], 0), (true, f[1], 1), (true, f[2], 2), (true, f[3], 3),
                (false, f[3], 3), (false, f[2], 2), (false, f[1], 1), (false, f[0], 0),
            ]);
            let rets: Vec<u64> = recs.iter().filter(|r| !r.entry).map(|r| r.retval).collect();
            kassert_eq!(rets, alloc::vec![6, 7, 8, 9]);
            check_pairs(&recs)?;
            kassert_eq!(fgraph::shadow_depth(), 0);
            Ok(())
        })
    }
}

ktest! {
    /// Functions returning a `u128` and a two-word struct (a0 and a1): the caller gets both
    /// words back through return_to_handler, and the return callback sees both.
    fn fgraph::two_register_return_values() {
        use super::abi_oracle::{OraclePair, abi_oracle_target_pair as pair, abi_oracle_target_u128 as wide, expected_result};
        let args = [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, 0x7777, 0x8888u64];
        let [lo, hi] = expected_result(&args);
        super::poison::each_flavour(|_| {
            let mut got = (0u128, OraclePair { first: 0, second: 0 });
            let [a0, a1, a2, a3, a4, a5, a6, a7] = args.map(core::hint::black_box);
            let recs = record(&[wide as *const (), pair as *const ()], "abi_oracle_target_u128 abi_oracle_target_pair", || {
                got.0 = wide(a0, a1, a2, a3, a4, a5, a6, a7);
                got.1 = pair(a0, a1, a2, a3, a4, a5, a6, a7);
            })?;
            kassert_eq!(got.0, (hi as u128) << 64 | lo as u128, "u128 the caller got");
            kassert_eq!(got.1, OraclePair { first: lo, second: hi }, "struct the caller got");
            let rets: Vec<(u64, u64, u64)> = recs.iter().filter(|r| !r.entry).map(|r| (r.func, r.retval, r.retval_hi)).collect();
            kassert_eq!(rets, alloc::vec![(addr(wide as *const ()), lo, hi), (addr(pair as *const ()), lo, hi)], "(function, a0, a1) at return");
            check_pairs(&recs)
        })
    }
}

// Linux's fgraph storage test values (trace_selftest.c).
const STORE_VALUES: [(usize, u64); 4] = [(1, 123), (2, 12345), (4, 1234567890), (8, 1234567890123456789)];
static STORE_SEEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static STORE_SIZE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static STORE_TARGET: AtomicU64 = AtomicU64::new(0);

fn store_entry(ent: &FgraphEnt, ops: &FgraphOps, data: &mut FgraphData) -> bool {
    if ent.func != STORE_TARGET.load(Relaxed) {
        return false;
    }
    let (size, value) = STORE_VALUES[ops.private.load(Relaxed)];
    match data.reserve(size) {
        Some(buf) => buf.copy_from_slice(&value.to_le_bytes()[..size]),
        None => return false,
    }
    true
}

fn store_return(_r: &FgraphRet, ops: &FgraphOps, data: &FgraphData) {
    let i = ops.private.load(Relaxed);
    let mut bytes = [0u8; 8];
    if let Some(d) = data.retrieve() {
        bytes[..d.len()].copy_from_slice(d);
        STORE_SEEN[i].store(u64::from_le_bytes(bytes), Relaxed);
        STORE_SIZE[i].store(d.len() as u64, Relaxed);
    }
}

static STORE_OPS: [FgraphOps; 4] = [const { FgraphOps::new(store_entry, store_return) }; 4];

fn storage(which: &[usize]) -> crate::selftest::TestResult {
    STORE_TARGET.store(addr(dyn_func1 as *const ()), Relaxed);
    STORE_SEEN.iter().chain(STORE_SIZE.iter()).for_each(|s| s.store(0, Relaxed));
    ftrace::ftrace_set_filter(&fgraph::GRAPH_SITE_OPS, "dyn_func1", true).map_err(fail)?;
    for &i in which {
        STORE_OPS[i].private.store(i, Relaxed);
        fgraph::register_ftrace_graph(&STORE_OPS[i]).map_err(fail)?;
    }
    dyn_func1();
    for &i in which {
        fgraph::unregister_ftrace_graph(&STORE_OPS[i]).map_err(fail)?;
    }
    let _ = ftrace::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS);
    for &i in which {
        let (size, value) = STORE_VALUES[i];
        let want = value & if size == 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
        kassert_eq!(STORE_SEEN[i].load(Relaxed), want, "{size}-byte value");
        kassert_eq!(STORE_SIZE[i].load(Relaxed), size as u64, "{size}-byte size");
    }
    Ok(())
}

ktest! {
    /// Linux's fgraph storage test: 1, 2, 4 and 8 byte values stored at entry, read at return.
    fn fgraph::storage_one_ops() {
        for i in 0..4 {
            storage(&[i])?;
        }
        Ok(())
    }
}

ktest! {
    /// ... and four graph ops at once on one function.
    fn fgraph::storage_four_ops() {
        super::poison::each_flavour(|_| {
            storage(&[0, 1, 2, 3])
        })
    }
}

ktest! {
    /// Recursion to depth 50: 51 nested pairs with the right depths.
    fn fgraph::recursion_depth_50() {
        super::poison::each_flavour(|_| {
            let mut v = 0;
            let recs = record(&[fgraph_recurse as *const ()], "fgraph_recurse", || v = fgraph_recurse(50))?;
            kassert_eq!(v, 50);
            kassert_eq!(recs.len(), 102);
            kassert_eq!(recs.iter().filter(|r| r.entry).map(|r| r.depth).max(), Some(50));
            check_pairs(&recs)
        })
    }
}

/// Whether the function at `f` jumps to `to` without linking: `b to`, or the medium code
/// model's `pcaddu18i $rX, hi; jirl $zero, $rX, lo`.
fn ends_in_tail_call(f: u64, to: u64) -> bool {
    let words: Vec<u32> = (0..48).map(|i| arch::patch::read_insn(f + 4 * i).unwrap_or(0)).collect();
    words.iter().enumerate().any(|(i, &w)| {
        let pc = f + 4 * i as u64;
        if matches!(arch::insn::decode(pc, w), arch::insn::Insn::B { target } if target == to) {
            return true;
        }
        let Some(&next) = words.get(i + 1) else { return false };
        let is_pcaddu18i = w & 0xfe00_0000 == 0x1e00_0000;
        if let (true, arch::insn::Insn::Jirl { rd: arch::insn::Reg::Zero, rj, offset }) = (is_pcaddu18i, arch::insn::decode(pc + 4, next)) {
            let hi = arch::insn::sign_extend(((w >> 5) & 0xf_ffff) as u64, 20) << 18;
            return rj.num() == w & 0x1f && pc.wrapping_add(hi as u64).wrapping_add(offset as u64) == to;
        }
        false
    })
}

ktest! {
    /// A tail call (a jump, not a call, into a traced function) keeps both returns hooked and correct.
    fn fgraph::tail_call() {
        super::poison::each_flavour(|_| {
            let has_tail_b = ends_in_tail_call(tail_caller as *const () as u64, tail_callee as *const () as u64);
            let mut v = 0;
            let recs = record(&[tail_caller as *const (), tail_callee as *const ()], "tail_c*", || v = tail_caller(4))?;
            kassert_eq!(v, 15);
            kdiag!("tail_caller jumps to tail_callee without linking: {has_tail_b}");
            kassert!(has_tail_b, "the compiler did not emit a tail call; the test would prove nothing");
            kassert_eq!(recs.len(), 4);
            kassert_eq!(recs.iter().filter(|r| !r.entry).map(|r| r.retval).collect::<Vec<_>>(), alloc::vec![15, 15]);
            kassert_eq!(fgraph::shadow_depth(), 0);
            Ok(())
        })
    }
}

ktest! {
    /// A hooked function that takes a `break` exception returns normally.
    fn fgraph::exception_while_hooked() {
        super::poison::each_flavour(|_| {
            let mut v = 0;
            let recs = record(&[fgraph_breaks as *const ()], "fgraph_breaks", || v = fgraph_breaks(10))?;
            kassert_eq!(v, 11);
            kassert_eq!(recs.len(), 2);
            kassert_eq!(recs[1].retval, 11);
            check_pairs(&recs)
        })
    }
}

static BT_NAMES: spin::Mutex<Vec<(u64, &'static str)>> = spin::Mutex::new(Vec::new());

#[inline(never)]
fn bt_leaf() -> u64 {
    let stack = arch::boot::stack_bounds(arch::cpu::id());
    let mut v = Vec::new();
    arch::unwind::walk(arch::cpu::frame_pointer(), stack, 16, |f| {
        let real = crate::ftrace::fgraph::real_return_address(f.ret, f.fp);
        v.push((f.ret, crate::ksyms::name(real - 4)));
        true
    });
    *BT_NAMES.lock() = v;
    core::hint::black_box(5)
}

ktest! {
    /// A backtrace taken inside hooked functions names the real callers, not return_to_handler.
    fn fgraph::backtrace_through_hooked_frames() {
        let leaf = bt_leaf as fn() -> u64;
        let mut v = 0;
        let _ = record(&[fgraph_bt_mid as *const (), bt_leaf as *const ()], "fgraph_bt_mid bt_leaf", || v = fgraph_bt_mid(leaf))?;
        let names = core::mem::take(&mut *BT_NAMES.lock());
        for (raw, name) in &names {
            kdiag!("{raw:#x} {name}");
        }
        kassert_eq!(v, 6);
        let rth = arch::ftrace::addr::return_to_handler();
        kassert!(names.iter().any(|(raw, _)| *raw == rth), "no hooked frame on the stack: nothing was tested");
        kassert!(names.iter().all(|(_, n)| !n.contains("return_to_handler")), "a frame shows return_to_handler");
        kassert!(names.iter().any(|(_, n)| n.ends_with("::fgraph_bt_mid")), "the caller fgraph_bt_mid is missing");
        kassert!(names.iter().any(|(_, n)| n.ends_with("::backtrace_through_hooked_frames")), "the test function is missing");
        Ok(())
    }
}

ktest! {
    /// A full shadow stack stops hooking new calls (counted) and corrupts nothing.
    fn fgraph::shadow_stack_overflow() {
        let n = fgraph::SHADOW_ENTRIES as u64 + 20;
        let before = fgraph::OVERFLOWS.load(Relaxed);
        let mut v = 0;
        let recs = record(&[fgraph_recurse as *const ()], "fgraph_recurse", || v = fgraph_recurse(n))?;
        let overflows = fgraph::OVERFLOWS.load(Relaxed) - before;
        kdiag!("{} calls hooked, {overflows} refused", recs.len() / 2);
        kassert_eq!(v, n);
        kassert_eq!(recs.len(), 2 * fgraph::SHADOW_ENTRIES);
        kassert_eq!(overflows, n + 1 - fgraph::SHADOW_ENTRIES as u64);
        kassert_eq!(fgraph::shadow_depth(), 0);
        check_pairs(&recs)
    }
}

ktest! {
    /// A shadow entry that no longer matches stops the graph tracer with an error, and the
    /// function still returns to its caller.
    fn fgraph::shadow_stack_mismatch() {
        let before = fgraph::CORRUPTIONS.load(Relaxed);
        kdiag!("damaging a shadow-stack entry on purpose: the 'shadow stack mismatch' log line below is expected");
        let mut v = (0, 0);
        let recs = record(&[fgraph_corrupt_me as *const (), dyn_func1 as *const ()], "fgraph_corrupt_me dyn_func1", || {
            v.0 = fgraph_corrupt_me();
            v.1 = dyn_func1();
        })?;
        let stopped = fgraph::stopped();
        kassert_eq!(v, (77, 1), "returned to the right place");
        kassert_eq!(fgraph::CORRUPTIONS.load(Relaxed), before + 1);
        kassert!(stopped, "the graph tracer did not stop");
        kassert_eq!(recs.iter().filter(|r| r.entry).count(), 1, "nothing hooked after the stop: {recs:?}");
        kassert_eq!(fgraph::shadow_depth(), 0);
        Ok(())
    }
}

static GD_DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

ktest! {
    /// Graph + direct on one function: the return is still hooked through the stub trampoline.
    fn fgraph::with_direct_stub() {
        super::poison::each_flavour(|_| {
            let stub = arch::ftrace::addr::stub_direct_tramp();
            ftrace::ftrace_set_filter(&GD_DIRECT, "chain_c", true).map_err(fail)?;
            ftrace::register_ftrace_direct(&GD_DIRECT, stub).map_err(fail)?;
            let mut v = 0;
            let recs = record(&[chain_c as *const (), chain_b as *const ()], "chain_b chain_c", || v = chain_b(2));
            let _ = ftrace::unregister_ftrace_direct(&GD_DIRECT, stub);
            let _ = ftrace::ftrace_reset_filters(&GD_DIRECT);
            let recs = recs?;
            kassert_eq!(v, 7);
            kassert_eq!(recs.len(), 4, "{recs:?}");
            kassert_eq!(recs[2].func, chain_c as *const () as u64);
            kassert_eq!(recs[2].retval, 6);
            check_pairs(&recs)
        })
    }
}

ktest! {
    /// Graph + a sample trampoline (ftrace-direct on wake_up_process).
    fn fgraph::with_sample_trampoline() {
        super::poison::each_flavour(|_| {
            use crate::samples::{self, targets};
            samples::take_log();
            (samples::ftrace_direct::SAMPLE.load)().map_err(fail)?;
            let mut v = 0;
            let recs = record(&[targets::wake_up_process as *const ()], "wake_up_process", || v = targets::wake_up_process(6));
            let _ = (samples::ftrace_direct::SAMPLE.unload)();
            let recs = recs?;
            let log = samples::take_log();
            kassert_eq!(v, 6 ^ 0x5a);
            kassert_eq!(log, [String::from("ftrace-direct: waking up task-6")]);
            kassert_eq!(recs.len(), 2);
            kassert_eq!(recs[1].retval, 6 ^ 0x5a);
            Ok(())
        })
    }
}

ktest! {
    /// The function_graph tracer prints Linux's layout for the call chain.
    fn fgraph::function_graph_output() {
        tracer::reset_buffers();
        graph_tracer::start(&graph_tracer::GraphConfig { graph_function: Some("chain_root"), ftrace_filter: Some("chain_*"), max_depth: 0 })
            .map_err(fail)?;
        let v = chain_root(1);
        graph_tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        let mut out = String::new();
        let _ = graph_tracer::write_graph(&mut out, &c);
        for l in out.lines() {
            kdiag!("{l}");
        }
        kassert_eq!(v, 9);
        let body: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        kassert_eq!(body.len(), 7, "lines: {body:?}");
        let tails = ["|  selftest::targets::chain_root() {", "|    selftest::targets::chain_a() {", "|      selftest::targets::chain_b() {",
            "|        selftest::targets::chain_c();", "|      } /* selftest::targets::chain_b */", "|    } /* selftest::targets::chain_a */",
            "|  } /* selftest::targets::chain_root */"];
        for (l, t) in body.iter().zip(tails) {
            kassert!(l.ends_with(t), "'{l}' should end with '{t}'");
            kassert!(l.starts_with(" 0)  "), "'{l}'");
        }
        kassert!(body[3].contains(" us  |"), "leaf line has a duration: {}", body[3]);
        Ok(())
    }
}

ktest! {
    /// max_graph_depth cuts the graph.
    fn fgraph::max_depth() {
        tracer::reset_buffers();
        graph_tracer::start(&graph_tracer::GraphConfig { graph_function: Some("chain_root"), ftrace_filter: Some("chain_*"), max_depth: 2 })
            .map_err(fail)?;
        chain_root(1);
        graph_tracer::stop().map_err(fail)?;
        let c = tracer::collect();
        kassert_eq!(c.events.len(), 4, "root and chain_a, entry and return each");
        Ok(())
    }
}

/// Returns 5 after registering the recorder (hooking nothing), so that the graph hooks change
/// from the graph tracer's direct ones to the general ones while its caller is hooked.
#[inline(never)]
fn switch_to_general() -> u64 {
    WANTED.iter().for_each(|w| w.store(0, Relaxed));
    let ok = fgraph::register_ftrace_graph(&RECORDER).is_ok();
    core::hint::black_box(if ok { 5 } else { 0 })
}

/// Returns 5 after unregistering the recorder: the graph tracer's direct hooks come back while
/// its caller is hooked.
#[inline(never)]
fn switch_to_direct() -> u64 {
    let ok = fgraph::unregister_ftrace_graph(&RECORDER).is_ok();
    core::hint::black_box(if ok { 5 } else { 0 })
}

ktest! {
    /// The function_graph tracer alone runs on its direct hooks (its callbacks inlined into
    /// copies of the graph hooks); a second graph ops brings back the general ones, and its
    /// leaving the direct ones, even while a hooked call is in flight: a call hooked by one
    /// pair returns through the other, and is recorded whole.
    fn fgraph::direct_hooks_switch_while_hooked() {
        tracer::reset_buffers();
        graph_tracer::start(&graph_tracer::GraphConfig { ftrace_filter: Some("fgraph_bt_mid"), ..Default::default() }).map_err(fail)?;
        let direct_first = fgraph::direct_hooks_in_use();
        let v1 = fgraph_bt_mid(switch_to_general);
        let general_between = !fgraph::direct_hooks_in_use();
        let v2 = fgraph_bt_mid(switch_to_direct);
        let direct_after = fgraph::direct_hooks_in_use();
        let stopped = graph_tracer::stop();
        if fgraph::is_registered(&RECORDER) {
            let _ = fgraph::unregister_ftrace_graph(&RECORDER);
        }
        stopped.map_err(fail)?;
        kassert!(direct_first, "the graph tracer alone does not use its direct hooks");
        kassert!(general_between, "a second graph ops left the direct hooks in place");
        kassert!(direct_after, "the direct hooks did not come back");
        kassert_eq!((v1, v2), (6, 6));
        let c = tracer::collect();
        let mid = addr(fgraph_bt_mid as *const ());
        let ev: Vec<_> = c.events.iter().filter(|e| e.ip == mid).collect();
        kassert_eq!(ev.len(), 4, "two calls, entry and return each: {ev:?}");
        for pair in ev.chunks(2) {
            kassert_eq!((pair[0].kind, pair[1].kind), (crate::ringbuf::KIND_GRAPH_ENTRY, crate::ringbuf::KIND_GRAPH_RETURN));
            kassert_eq!(pair[1].parent, 6, "the return event carries the return value");
            // The return event is taken at return time and carries the duration.
            kassert_eq!(pair[0].ts + pair[1].extra, pair[1].ts, "entry time + duration = return time");
        }
        kassert_eq!(fgraph::shadow_depth(), 0);
        Ok(())
    }
}

/// Records of the nesting test's graph ops.
static NEST_RECS: spin::Mutex<Vec<(bool, u64, u32)>> = spin::Mutex::new(Vec::new());
/// What the nesting test's entry callback of `dyn_func1` saw of its data at return.
static NEST_DATA: AtomicU64 = AtomicU64::new(0);

fn nest_entry(ent: &FgraphEnt, _ops: &FgraphOps, data: &mut FgraphData) -> bool {
    let (f1, c) = (addr(dyn_func1 as *const ()), addr(chain_c as *const ()));
    if ent.func != f1 && ent.func != c {
        return false;
    }
    NEST_RECS.lock().push((true, ent.func, ent.depth));
    if ent.func == f1 {
        // chain_b takes a kprobe's `break` whose handler calls chain_c: a call hooked in an
        // exception while this entry is being filled.
        core::hint::black_box(chain_b(core::hint::black_box(1)));
        if let Some(d) = data.reserve(2) {
            d.copy_from_slice(&[0xab, 0xcd]);
        }
    }
    true
}

fn nest_return(r: &FgraphRet, _ops: &FgraphOps, data: &FgraphData) {
    NEST_RECS.lock().push((false, r.func, r.depth));
    if r.func == addr(dyn_func1 as *const ()) {
        let v = data.retrieve().map_or(0, |d| d.iter().fold(0u64, |a, &b| a << 8 | b as u64));
        NEST_DATA.store(v, Relaxed);
    }
}

static NESTER: FgraphOps = FgraphOps::new(nest_entry, nest_return);

fn nest_kprobe_pre(_p: &crate::kprobes::Kprobe, _regs: &mut arch::frame::PtRegs) -> bool {
    core::hint::black_box(chain_c(core::hint::black_box(2)));
    false
}

static NEST_KPROBE: crate::kprobes::Kprobe = crate::kprobes::Kprobe::new("targets::chain_b", 8, Some(nest_kprobe_pre), None);

ktest! {
    /// The shadow stack is used with interrupts on: an entry is reserved before the entry
    /// callbacks run, so a call hooked in an exception taken meanwhile (a kprobe's `break`,
    /// whose handler calls a hooked function) takes the entry above, and the interrupted entry's
    /// data survives.
    fn fgraph::hooking_inside_an_entry_callback() {
        NEST_RECS.lock().clear();
        NEST_DATA.store(0, Relaxed);
        crate::kprobes::register_kprobe(&NEST_KPROBE).map_err(|e| crate::selftest::TestError::Fail(alloc::format!("register_kprobe: {e}")))?;
        let r = ftrace::ftrace_set_filter(&fgraph::GRAPH_SITE_OPS, "dyn_func1 chain_c", true)
            .and_then(|_| fgraph::register_ftrace_graph(&NESTER));
        let v = if r.is_ok() { dyn_func1() } else { 0 };
        let u = if r.is_ok() { fgraph::unregister_ftrace_graph(&NESTER) } else { Ok(()) };
        let _ = ftrace::ftrace_reset_filters(&fgraph::GRAPH_SITE_OPS);
        let _ = crate::kprobes::unregister_kprobe(&NEST_KPROBE);
        r.and(u).map_err(fail)?;
        kassert_eq!(v, 1);
        let (f1, c) = (addr(dyn_func1 as *const ()), addr(chain_c as *const ()));
        let recs = core::mem::take(&mut *NEST_RECS.lock());
        kassert_eq!(recs, [(true, f1, 0), (true, c, 1), (false, c, 1), (false, f1, 0)], "the nested call nests");
        kassert_eq!(NEST_DATA.load(Relaxed), 0xabcd, "the interrupted entry's data");
        kassert_eq!(fgraph::shadow_depth(), 0);
        Ok(())
    }
}
