//! Suite `bpf_tramp`: generated fentry/fexit/fmod_ret trampolines on both routes (straight from
//! the site, and through `ftrace_regs_caller`'s direct return), named after the BPF selftests that
//! exercised Linux's LoongArch trampolines.

use super::abi_oracle;
use super::direct_tests::call8;
use super::targets::{direct_target, direct_target_expected, direct_target_runs};
use crate::ftrace::bpf::{self, Attach, AttachError, BpfLink, Func, TraceCtx};
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::selftest::{TestError, TestResult};
use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::vec::Vec;
use arch::insn::{self, Insn};
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

fn fail(e: AttachError) -> TestError {
    TestError::Fail(alloc::format!("attach error: {e}"))
}

fn ffail(e: FtraceError) -> TestError {
    TestError::Fail(alloc::format!("ftrace error: {e}"))
}

// ---- traced functions: 0..8 arguments of mixed widths, and a 128-bit result ----

static RUNS: AtomicU64 = AtomicU64::new(0);

fn ran() {
    RUNS.fetch_add(1, Relaxed);
}

fn mix(v: &[u64]) -> u64 {
    v.iter().enumerate().fold(0x5151, |acc, (i, &x)| acc.rotate_left(9) ^ x.wrapping_mul(2 * i as u64 + 7))
}

#[inline(never)]
pub extern "C" fn bt_args0() -> u64 {
    ran();
    black_box(mix(&[]))
}
#[inline(never)]
pub extern "C" fn bt_args1(a: u8) -> u64 {
    ran();
    black_box(mix(&[a as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args2(a: u8, b: i16) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args3(a: u8, b: i16, c: u32) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args4(a: u8, b: i16, c: u32, d: i32) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64, d as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args5(a: u8, b: i16, c: u32, d: i32, e: u64) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64, d as u64, e]))
}
#[inline(never)]
pub extern "C" fn bt_args6(a: u8, b: i16, c: u32, d: i32, e: u64, f: i64) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64, d as u64, e, f as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args7(a: u8, b: i16, c: u32, d: i32, e: u64, f: i64, g: u16) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64, d as u64, e, f as u64, g as u64]))
}
#[inline(never)]
pub extern "C" fn bt_args8(a: u8, b: i16, c: u32, d: i32, e: u64, f: i64, g: u16, h: i8) -> u64 {
    ran();
    black_box(mix(&[a as u64, b as u64, c as i32 as u64, d as u64, e, f as u64, g as u64, h as u64]))
}

/// Returns a 128-bit value in a0 (low) and a1 (high).
#[inline(never)]
#[allow(improper_ctypes_definitions)]
pub extern "C" fn bt_ret128(a: u64, b: u64) -> u128 {
    ran();
    black_box(((a as u128) << 64 | b as u128).wrapping_mul(0x1_0000_0001))
}

const A: u8 = 0xfe;
const B: i16 = -3;
const C: u32 = 0x8000_0001;
const D: i32 = -5;
const E: u64 = 0x1234_5678_9abc_def0;
const F: i64 = -0x1111;
const G: u16 = 0xfff0;
const H: i8 = -128;

/// The argument registers as the psABI passes the values above: `u8`/`u16` zero-extended,
/// signed types sign-extended, `u32` sign-extended from bit 31.
const REGS: [u64; 8] = [0xfe, -3i64 as u64, 0xffff_ffff_8000_0001, -5i64 as u64, E, -0x1111i64 as u64, 0xfff0, -128i64 as u64];

/// One traced function of the table: entry, argument count, and a call with the values above.
struct Target {
    ip: u64,
    nargs: usize,
    call: fn() -> u64,
}

fn targets() -> [Target; 9] {
    [
        Target { ip: bt_args0 as *const () as u64, nargs: 0, call: || bt_args0() },
        Target { ip: bt_args1 as *const () as u64, nargs: 1, call: || bt_args1(black_box(A)) },
        Target { ip: bt_args2 as *const () as u64, nargs: 2, call: || bt_args2(black_box(A), black_box(B)) },
        Target { ip: bt_args3 as *const () as u64, nargs: 3, call: || bt_args3(black_box(A), black_box(B), black_box(C)) },
        Target { ip: bt_args4 as *const () as u64, nargs: 4, call: || bt_args4(black_box(A), black_box(B), black_box(C), black_box(D)) },
        Target { ip: bt_args5 as *const () as u64, nargs: 5, call: || bt_args5(black_box(A), black_box(B), black_box(C), black_box(D), black_box(E)) },
        Target { ip: bt_args6 as *const () as u64, nargs: 6, call: || bt_args6(black_box(A), black_box(B), black_box(C), black_box(D), black_box(E), black_box(F)) },
        Target {
            ip: bt_args7 as *const () as u64,
            nargs: 7,
            call: || bt_args7(black_box(A), black_box(B), black_box(C), black_box(D), black_box(E), black_box(F), black_box(G)),
        },
        Target {
            ip: bt_args8 as *const () as u64,
            nargs: 8,
            call: || bt_args8(black_box(A), black_box(B), black_box(C), black_box(D), black_box(E), black_box(F), black_box(G), black_box(H)),
        },
    ]
}

// ---- programs: record what they saw ----

/// What the recording programs saw, and in which order things happened.
struct Seen {
    args: [AtomicU64; 8],
    ret: [AtomicU64; 2],
    func: AtomicU64,
    hits: AtomicU64,
    /// `RUNS` when the program ran (to order it against the function).
    runs_at: AtomicU64,
}

impl Seen {
    const fn new() -> Self {
        Seen {
            args: [const { AtomicU64::new(0) }; 8],
            ret: [const { AtomicU64::new(0) }; 2],
            func: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            runs_at: AtomicU64::new(0),
        }
    }
    fn record(&self, ctx: &TraceCtx) {
        for (i, a) in self.args.iter().enumerate() {
            a.store(ctx.arg(i), Relaxed);
        }
        self.ret[0].store(ctx.ret128() as u64, Relaxed);
        self.ret[1].store((ctx.ret128() >> 64) as u64, Relaxed);
        self.func.store(ctx.func_ip(), Relaxed);
        self.runs_at.store(RUNS.load(Relaxed), Relaxed);
        self.hits.fetch_add(1, Relaxed);
    }
    fn reset(&self) {
        self.hits.store(0, Relaxed);
        self.func.store(0, Relaxed);
        self.args.iter().chain(self.ret.iter()).for_each(|a| a.store(0, Relaxed));
    }
    fn args(&self, n: usize) -> Vec<u64> {
        self.args[..n].iter().map(|a| a.load(Relaxed)).collect()
    }
    fn ret(&self) -> [u64; 2] {
        [self.ret[0].load(Relaxed), self.ret[1].load(Relaxed)]
    }
}

static SEEN_ENTRY: Seen = Seen::new();
static SEEN_EXIT: Seen = Seen::new();
static SEEN_MOD: Seen = Seen::new();
/// What the fmod_ret program returns.
static MOD_RESULT: AtomicU64 = AtomicU64::new(0);

extern "C" fn rec_entry(ctx: &TraceCtx) -> u64 {
    SEEN_ENTRY.record(ctx);
    0xbad
}
extern "C" fn rec_exit(ctx: &TraceCtx) -> u64 {
    SEEN_EXIT.record(ctx);
    0xbad
}
extern "C" fn rec_mod(ctx: &TraceCtx) -> u64 {
    SEEN_MOD.record(ctx);
    MOD_RESULT.load(Relaxed)
}

fn reset_seen() {
    [&SEEN_ENTRY, &SEEN_EXIT, &SEEN_MOD].iter().for_each(|s| s.reset());
}

// ---- routes ----

/// A SAVE_REGS ops on the same function moves its site from the straight call to
/// `ftrace_regs_caller`, which reaches the trampoline through the direct return (`t1`).
extern "C" fn route_cb(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}
static ROUTE_OPS: FtraceOps = FtraceOps::new(route_cb, OpsFlags::SAVE_REGS);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    Straight,
    Regs,
}
pub(crate) const ROUTES: [Route; 2] = [Route::Straight, Route::Regs];

fn site_word(ip: u64) -> Insn {
    insn::decode(ip + 4, arch::patch::read_insn(ip + 4).unwrap_or(0))
}

/// Runs `f` with the function's site on `route`, after checking the site calls what that route
/// should call.
pub(crate) fn on_route(route: Route, ip: u64, f: impl FnOnce() -> TestResult) -> TestResult {
    if route == Route::Regs {
        ROUTE_OPS.private.store(0, Relaxed);
        ftrace::ftrace_set_filter_ip(&ROUTE_OPS, ip, false, true)
            .and_then(|_| ftrace::register_ftrace_function(&ROUTE_OPS))
            .map_err(ffail)?;
    }
    let r = (|| {
        let image = bpf::trampoline_of(ip).map(|t| t.0).unwrap_or(0);
        // A module site out of reach of ftrace_regs_caller calls its module's stub for it.
        let regs = arch::ftrace::addr::regs_caller();
        let want = if route == Route::Regs { crate::ftrace::stubs::stub_for(ip, regs).unwrap_or(regs) } else { image };
        kassert_eq!(site_word(ip), Insn::Bl { target: want }, "{route:?} route");
        f()
    })();
    if route == Route::Regs {
        let calls = ROUTE_OPS.private.load(Relaxed);
        let _ = ftrace::unregister_ftrace_function(&ROUTE_OPS);
        let _ = ftrace::ftrace_reset_filters(&ROUTE_OPS);
        r?;
        kassert!(calls > 0, "the SAVE_REGS ops ran");
        return Ok(());
    }
    r
}

/// Calls `t` once and checks that it ran once and returned what it returns untraced.
fn call_once(t: &Target, want: u64, what: &str) -> TestResult {
    let runs = RUNS.load(Relaxed);
    let got = (t.call)();
    kassert_eq!(RUNS.load(Relaxed), runs + 1, "{what}: the function runs exactly once");
    kassert_eq!(got, want, "{what}: return value");
    Ok(())
}

/// Attaches `prog` of `kind` to every function of the table, calls each once on both routes and
/// checks what `seen` recorded: the arguments, the function ran once (after the program for
/// fentry, before it for fexit, which also sees the result), and the caller got the result.
fn each_target(kind: bpf::Kind, prog: bpf::ProgFn, seen: &Seen) -> TestResult {
    for t in targets() {
        let want = (t.call)();
        let f = Func::at(t.ip, t.nargs);
        let link = if kind == bpf::Kind::Fentry { Attach::fentry(f, prog) } else { Attach::fexit(f, prog) }.map_err(fail)?;
        for route in ROUTES {
            on_route(route, t.ip, || {
                reset_seen();
                let what = alloc::format!("{kind:?}, {} args, {route:?}", t.nargs);
                call_once(&t, want, &what)?;
                kassert_eq!(seen.hits.load(Relaxed), 1, "{what}: the program runs once");
                kassert_eq!(seen.args(t.nargs), REGS[..t.nargs].to_vec(), "{what}: arguments");
                kassert_eq!(seen.func.load(Relaxed), t.ip, "{what}: func_ip");
                let after = (kind == bpf::Kind::Fexit) as u64;
                kassert_eq!(seen.runs_at.load(Relaxed), RUNS.load(Relaxed) - 1 + after, "{what}: before/after the function");
                if kind == bpf::Kind::Fexit {
                    kassert_eq!(seen.ret()[0], want, "{what}: return value seen");
                }
                Ok(())
            })?;
        }
        link.detach().map_err(fail)?;
        kassert_eq!(site_word(t.ip), Insn::Nop, "detach restores the site");
    }
    Ok(())
}

// ---- cases ----

ktest! {
    /// fentry on functions of 0..8 arguments of mixed widths, on both routes: the program runs
    /// once, before the function, and sees the argument registers as the caller passed them.
    fn bpf_tramp::fentry_test() {
        each_target(bpf::Kind::Fentry, rec_entry, &SEEN_ENTRY)
    }
}

ktest! {
    /// fexit on functions of 0..8 arguments and on a 128-bit result, on both routes: the
    /// program runs once, after the function, with its arguments and return value (a0, a0+a1).
    fn bpf_tramp::fexit_test() {
        each_target(bpf::Kind::Fexit, rec_exit, &SEEN_EXIT)?;
        let ip = bt_ret128 as *const () as u64;
        let want = bt_ret128(black_box(0x1122_3344_5566_7788), black_box(0x99aa_bbcc_ddee_ff00));
        let link = Attach::fexit(Func::at(ip, 2), rec_exit).map_err(fail)?;
        for route in ROUTES {
            on_route(route, ip, || {
                reset_seen();
                let got = bt_ret128(black_box(0x1122_3344_5566_7788), black_box(0x99aa_bbcc_ddee_ff00));
                kassert_eq!(got, want, "{route:?}: 128-bit result reaches the caller");
                let r = SEEN_EXIT.ret();
                kassert_eq!((r[1] as u128) << 64 | r[0] as u128, want, "{route:?}: 128-bit result seen by fexit");
                kassert_eq!(SEEN_EXIT.args(2), [0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00].to_vec());
                Ok(())
            })?;
        }
        link.detach().map_err(fail)
    }
}

ktest! {
    /// fentry and fexit on one function, attached one after the other (the second attach swaps
    /// the trampoline live): fentry before the function, fexit after, each once per call; the
    /// parent is the call's return address.
    fn bpf_tramp::fentry_fexit() {
        let ip = direct_target as *const () as u64;
        let args = [1, 2, 3, 4, 5, 6, 7, 0x8000_0000_0000_0008];
        let f = Func::at(ip, 8);
        let entry = Attach::fentry(f, rec_entry).map_err(fail)?;
        let first = bpf::trampoline_of(ip).map(|t| t.0);
        let exit = Attach::fexit(f, rec_exit).map_err(fail)?;
        kassert!(bpf::trampoline_of(ip).map(|t| t.0) != first, "a new trampoline was swapped in");
        for route in ROUTES {
            on_route(route, ip, || {
                reset_seen();
                let runs = direct_target_runs();
                let ctx = call8(ip, args);
                kassert_eq!(direct_target_runs(), runs + 1, "{route:?}: runs once");
                kassert_eq!(ctx.ret, direct_target_expected(&args), "{route:?}: result");
                kassert_eq!((SEEN_ENTRY.hits.load(Relaxed), SEEN_EXIT.hits.load(Relaxed)), (1, 1), "{route:?}: programs");
                kassert_eq!(SEEN_ENTRY.args(8), args.to_vec());
                kassert_eq!(SEEN_EXIT.args(8), args.to_vec());
                kassert_eq!(SEEN_EXIT.ret()[0], ctx.ret);
                Ok(())
            })?;
        }
        // The parent each program sees is the return address of the call.
        static PARENT: AtomicU64 = AtomicU64::new(0);
        extern "C" fn parent_of(ctx: &TraceCtx) -> u64 {
            PARENT.store(ctx.parent_ip(), Relaxed);
            0
        }
        let p = Attach::fentry(f, parent_of).map_err(fail)?;
        let ctx = call8(ip, args);
        kassert_eq!(PARENT.load(Relaxed), ctx.ret_addr, "parent_ip");
        p.detach().map_err(fail)?;
        entry.detach().map_err(fail)?;
        reset_seen();
        call8(ip, args);
        kassert_eq!((SEEN_ENTRY.hits.load(Relaxed), SEEN_EXIT.hits.load(Relaxed)), (0, 1), "only fexit is left");
        drop(exit);
        kassert_eq!(site_word(ip), Insn::Nop, "dropping the last link restores the site");
        kassert_eq!(bpf::attached_functions(), 0);
        Ok(())
    }
}

ktest! {
    /// fmod_ret: a non-zero result skips the function and reaches the caller (fexit sees it);
    /// with 0 the function runs and fexit sees its value. A second fmod_ret is refused.
    fn bpf_tramp::modify_return() {
        let t = &targets()[3];
        let want = (t.call)();
        let f = Func::at(t.ip, t.nargs);
        let m = Attach::fmod_ret(f, rec_mod).map_err(fail)?;
        let x = Attach::fexit(f, rec_exit).map_err(fail)?;
        let second = Attach::fmod_ret(f, rec_mod);
        kassert!(matches!(second, Err(AttachError::FmodRetBusy(_))), "second fmod_ret: {second:?}");
        kdiag!("{}", second.unwrap_err());
        for route in ROUTES {
            on_route(route, t.ip, || {
                reset_seen();
                MOD_RESULT.store(0x4242, Relaxed);
                let runs = RUNS.load(Relaxed);
                let got = (t.call)();
                kassert_eq!(RUNS.load(Relaxed), runs, "{route:?}: the function was skipped");
                kassert_eq!(got, 0x4242, "{route:?}: the caller gets the fmod_ret result");
                kassert_eq!(SEEN_MOD.args(3), REGS[..3].to_vec(), "{route:?}: fmod_ret sees the arguments");
                kassert_eq!(SEEN_MOD.ret(), [0, 0], "{route:?}: fmod_ret starts from 0");
                kassert_eq!(SEEN_EXIT.ret(), [0x4242, 0], "{route:?}: fexit sees the chosen result");
                reset_seen();
                MOD_RESULT.store(0, Relaxed);
                call_once(t, want, "fmod_ret 0")?;
                kassert_eq!(SEEN_MOD.hits.load(Relaxed), 1);
                kassert_eq!(SEEN_EXIT.ret()[0], want, "{route:?}: fexit sees the function's value");
                Ok(())
            })?;
        }
        m.detach().map_err(fail)?;
        // With the fmod_ret gone another may attach.
        let m2 = Attach::fmod_ret(f, rec_mod).map_err(fail)?;
        MOD_RESULT.store(7, Relaxed);
        kassert_eq!((t.call)(), 7);
        drop(m2);
        drop(x);
        call_once(t, want, "after detach")?;
        Ok(())
    }
}

ktest! {
    /// Refusals change nothing: unknown, notrace and site-less functions, too many arguments, a
    /// function that already has another direct trampoline.
    fn bpf_tramp::attach_errors() {
        let e = Func::named("no_such_function_anywhere", 0);
        kassert!(matches!(e, Err(AttachError::NoSuchFunction(_))), "{e:?}");
        let mut notrace = None;
        ftrace::core::for_each_site(|s| {
            if notrace.is_none() && s.state.flags.contains(ftrace::core::SiteFlags::NOTRACE) && s.site.name != "?" {
                notrace = Some(s.site.ip);
            }
        });
        let Some(notrace) = notrace else { crate::kfail!("no notrace site found") };
        let e = Attach::fentry(Func::at(notrace, 1), rec_entry);
        kassert!(matches!(e, Err(AttachError::NotTraceable(_))), "policy notrace: {e:?}");
        kdiag!("{}", e.unwrap_err());
        let no_site = crate::ftrace::core::ftrace_ops_skip as *const () as u64;
        let e = Attach::fexit(Func::at(no_site, 4), rec_exit);
        kassert!(matches!(e, Err(AttachError::NotTraceable(_))), "no patch site: {e:?}");
        let f = Func::at(bt_args1 as *const () as u64, 9);
        let e = Attach::fentry(f, rec_entry);
        kassert_eq!(e.unwrap_err(), AttachError::TooManyArgs(9));
        // A function that a sample-style direct ops owns.
        static OTHER: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());
        let ip = bt_args2 as *const () as u64;
        let stub = arch::ftrace::addr::stub_direct_tramp();
        ftrace::ftrace_set_filter_ip(&OTHER, ip, false, true).and_then(|_| ftrace::register_ftrace_direct(&OTHER, stub)).map_err(ffail)?;
        let used = bpf::area_used();
        let e = Attach::fexit(Func::at(ip, 2), rec_exit);
        let word = site_word(ip);
        let _ = ftrace::unregister_ftrace_direct(&OTHER, stub);
        let _ = ftrace::ftrace_reset_filters(&OTHER);
        kassert!(matches!(e, Err(AttachError::Ftrace(FtraceError::DirectBusy(_)))), "direct busy: {e:?}");
        kdiag!("{}", e.unwrap_err());
        kassert_eq!(word, Insn::Bl { target: stub }, "the other trampoline keeps the site");
        kassert_eq!(bpf::area_used(), used, "the refused trampoline's code was freed");
        kassert_eq!(bpf::attached_functions(), 0);
        ftrace::core::check_consistency().map_err(TestError::Fail)?;
        Ok(())
    }
}

/// Programs 0..37 of `trampoline_count`: each counts its own runs.
static COUNT_HITS: [AtomicU64; bpf::MAX_LINKS + 1] = [const { AtomicU64::new(0) }; bpf::MAX_LINKS + 1];

extern "C" fn counter<const N: usize>(_ctx: &TraceCtx) -> u64 {
    COUNT_HITS[N].fetch_add(1, Relaxed);
    0
}

macro_rules! counters {
    ($($n:literal)*) => { [$(counter::<$n> as bpf::ProgFn),*] };
}

ktest! {
    /// Up to BPF_MAX_TRAMP_LINKS (38) programs of all kinds on one function; the next is
    /// refused; every attached one runs once per call on both routes.
    fn bpf_tramp::trampoline_count() {
        let progs = counters!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38);
        COUNT_HITS.iter().for_each(|c| c.store(0, Relaxed));
        let t = &targets()[2];
        let want = (t.call)();
        let f = Func::at(t.ip, t.nargs);
        let mut links: Vec<BpfLink> = Vec::new();
        for (i, &p) in progs[..bpf::MAX_LINKS].iter().enumerate() {
            let l = match i % 3 {
                0 => Attach::fentry(f, p),
                1 => Attach::fexit(f, p),
                _ if i == 2 => Attach::fmod_ret(f, p),
                _ => Attach::fentry(f, p),
            };
            links.push(l.map_err(fail)?);
        }
        let e = Attach::fexit(f, progs[bpf::MAX_LINKS]);
        kassert!(matches!(e, Err(AttachError::TooManyLinks(_))), "{e:?}");
        kdiag!("{}", e.unwrap_err());
        if let Some((at, words, n)) = bpf::trampoline_of(t.ip) {
            kdiag!("{n} programs: {} instructions at {at:#x}", words.len());
        }
        for route in ROUTES {
            on_route(route, t.ip, || call_once(t, want, "38 programs"))?;
        }
        let hits: Vec<u64> = COUNT_HITS.iter().map(|c| c.load(Relaxed)).collect();
        let mut expect = alloc::vec![2u64; bpf::MAX_LINKS];
        expect.push(0);
        kassert_eq!(hits, expect, "each program ran once per call");
        // Detach in a mixed order; the rest keep running.
        while !links.is_empty() {
            let i = (links.len() * 5 + 3) % links.len();
            links.swap_remove(i).detach().map_err(fail)?;
            if links.len() % 9 == 0 {
                call_once(t, want, "while detaching")?;
            }
        }
        kassert_eq!(site_word(t.ip), Insn::Nop);
        Ok(())
    }
}

// ---- fexit_stress ----

static STRESS_STOP: AtomicBool = AtomicBool::new(false);
static STRESS_CALLS: [AtomicU64; arch::boot::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::boot::MAX_CPUS];
static STRESS_BAD: AtomicU64 = AtomicU64::new(0);
static STRESS_KEEP: AtomicU64 = AtomicU64::new(0);
static STRESS_FLIP: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
pub extern "C" fn bt_stress_target(x: u64) -> u64 {
    black_box(x).wrapping_mul(3) + 1
}

fn stress_worker(cpu: usize) {
    let mut i = 0u64;
    while !STRESS_STOP.load(Acquire) {
        if bt_stress_target(i) != i.wrapping_mul(3) + 1 {
            STRESS_BAD.fetch_add(1, Relaxed);
        }
        i += 1;
        STRESS_CALLS[cpu].store(i, Release);
    }
}

extern "C" fn stress_keep(ctx: &TraceCtx) -> u64 {
    if ctx.ret() != ctx.arg(0).wrapping_mul(3) + 1 {
        STRESS_BAD.fetch_add(1, Relaxed);
    }
    STRESS_KEEP.fetch_add(1, Relaxed);
    0
}

extern "C" fn stress_flip(_ctx: &TraceCtx) -> u64 {
    STRESS_FLIP.fetch_add(1, Relaxed);
    0
}

ktest! {
    /// Three CPUs call a function in a loop while this CPU attaches and detaches fentry/fexit
    /// programs on it; a program attached throughout counts exactly every call, and every result
    /// is right.
    fn bpf_tramp::fexit_stress() {
        let workers: Vec<usize> = (1..crate::smp::online().min(4)).collect();
        if workers.is_empty() {
            crate::kskip!("needs at least 2 CPUs");
        }
        let ip = bt_stress_target as *const () as u64;
        let f = Func::at(ip, 1);
        STRESS_STOP.store(false, Release);
        STRESS_CALLS.iter().for_each(|c| c.store(0, Relaxed));
        [&STRESS_BAD, &STRESS_KEEP, &STRESS_FLIP].iter().for_each(|c| c.store(0, Relaxed));
        let leaked = bpf::LEAKED.load(Relaxed);
        // Attached before the workers start and detached after they stop: sees every call.
        let keep = Attach::fexit(f, stress_keep).map_err(fail)?;
        let started = workers.iter().filter(|&&c| crate::smp::run_on(c, stress_worker)).count();
        let mut r: TestResult = Ok(());
        // Every swap waits for all CPUs a few times (cross-calls), which is slow on an overloaded
        // host: at least MIN_ROUNDS rounds, then stop after about 3 s, at most MAX_ROUNDS.
        const MIN_ROUNDS: usize = 10;
        const MAX_ROUNDS: usize = 200;
        let t0 = arch::time::ticks();
        let mut rounds = 0;
        for i in 0..MAX_ROUNDS {
            if i >= MIN_ROUNDS && arch::time::ticks() - t0 > 3 * crate::time::counter_hz() {
                break;
            }
            rounds += 1;
            let l = if i % 2 == 0 { Attach::fexit(f, stress_flip) } else { Attach::fentry(f, stress_flip) };
            match l.and_then(|l| l.detach()) {
                Ok(()) => {}
                Err(e) => {
                    r = Err(fail(e));
                    break;
                }
            }
        }
        STRESS_STOP.store(true, Release);
        for &c in &workers {
            while crate::smp::work_running(c) {
                core::hint::spin_loop();
            }
        }
        let calls: u64 = STRESS_CALLS.iter().map(|c| c.load(Acquire)).sum();
        keep.detach().map_err(fail)?;
        r?;
        kdiag!("{started} CPUs made {calls} calls during {rounds} attach/detach rounds; flipping programs ran {} times", STRESS_FLIP.load(Relaxed));
        kassert_eq!(started, workers.len(), "workers started");
        kassert!(calls > 0, "the workers made calls");
        kassert_eq!(STRESS_KEEP.load(Relaxed), calls, "the permanent fexit saw every call exactly once");
        kassert_eq!(STRESS_BAD.load(Relaxed), 0, "wrong results");
        kassert_eq!(bpf::LEAKED.load(Relaxed), leaked, "old trampolines could all be freed");
        Ok(())
    }
}

ktest! {
    /// The function_graph tracer and a generated fexit trampoline on one function: one graph
    /// entry/return pair and one fexit per call, whichever was enabled first.
    fn bpf_tramp::graph_and_tramp() {
        use crate::ftrace::{graph_tracer, tracer};
        let t = &targets()[4];
        let want = (t.call)();
        let name = crate::ksyms::name(t.ip);
        let cfg = graph_tracer::GraphConfig { ftrace_filter: Some(name), ..Default::default() };
        tracer::reset_buffers();
        reset_seen();
        let x = Attach::fexit(Func::at(t.ip, t.nargs), rec_exit).map_err(fail)?;
        let r = (|| {
            graph_tracer::start(&cfg).map_err(ffail)?;
            call_once(t, want, "graph after fexit")?;
            x.detach().map_err(fail)?;
            call_once(t, want, "graph alone")?;
            let x = Attach::fexit(Func::at(t.ip, t.nargs), rec_exit).map_err(fail)?;
            kassert_eq!(site_word(t.ip), Insn::Bl { target: arch::ftrace::addr::regs_caller() }, "graph + trampoline use the regs route");
            call_once(t, want, "fexit after graph")?;
            drop(x);
            Ok(())
        })();
        let _ = graph_tracer::stop();
        r?;
        kassert_eq!(SEEN_EXIT.hits.load(Relaxed), 2, "fexit runs");
        kassert_eq!(SEEN_EXIT.ret()[0], want);
        let c = tracer::collect();
        let kinds: Vec<(u8, u64)> = c.events.iter().map(|e| (e.kind, e.ip)).collect();
        let pair = [(crate::ringbuf::KIND_GRAPH_ENTRY, t.ip), (crate::ringbuf::KIND_GRAPH_RETURN, t.ip)];
        kassert_eq!(kinds, pair.repeat(3), "one graph entry/return pair per call");
        Ok(())
    }
}

static ORACLE_HITS: AtomicU64 = AtomicU64::new(0);
extern "C" fn oracle_prog(ctx: &TraceCtx) -> u64 {
    // The oracle's canary arguments: 0xa000_000i_0000_a0a0.
    let ok = (0..8).all(|i| ctx.arg(i) == 0xa000_0000_0000_0000 | (i as u64) << 32 | 0xa0a0);
    ORACLE_HITS.fetch_add(if ok { 1 } else { 1000 }, Relaxed);
    0
}

extern "C" fn oracle_prog_void(ctx: &TraceCtx) {
    oracle_prog(ctx);
}
super::poison::poisoning_fn!(fn loongtrace_bpf_oracle_prog(ctx: &TraceCtx) => oracle_prog_void);

/// `oracle_prog` behind the poisoning wrapper (a0-a7, t0-t7 and ra poisoned on return when
/// poisoning is on), as a program.
fn poisoning_oracle_prog() -> bpf::ProgFn {
    let f: extern "C" fn(&TraceCtx) = loongtrace_bpf_oracle_prog;
    // SAFETY: the generated trampoline calls programs with the C ABI and ignores the result of
    // fentry and fexit programs (arch::bpf_tramp::TrampSpec), so a program that leaves garbage in
    // a0 is a valid fentry/fexit program; Rust never calls it through this type.
    unsafe { core::mem::transmute::<extern "C" fn(&TraceCtx), bpf::ProgFn>(f) }
}

ktest! {
    /// The ABI oracle (arguments, result, callee-saved registers, sp) through a generated
    /// fentry+fexit trampoline, straight and through ftrace_regs_caller, with polite programs and
    /// with programs that poison every caller-saved register before they return.
    fn bpf_tramp::abi_oracle() {
        let ip = abi_oracle::abi_oracle_target as *const () as u64;
        let f = Func::at(ip, 8);
        let prog = poisoning_oracle_prog();
        let a = Attach::fentry(f, prog).map_err(fail)?;
        let b = Attach::fexit(f, prog).map_err(fail)?;
        let r = super::poison::each_flavour(|_| {
            for route in ROUTES {
                on_route(route, ip, || {
                    ORACLE_HITS.store(0, Relaxed);
                    abi_oracle::check(if route == Route::Regs { "generated trampoline via ftrace_regs_caller" } else { "generated trampoline, straight" }, abi_oracle::abi_oracle_target)?;
                    kassert_eq!(ORACLE_HITS.load(Relaxed), 2, "{route:?}: both programs saw the canary arguments");
                    Ok(())
                })?;
            }
            Ok(())
        });
        drop(a);
        drop(b);
        r
    }
}

static BT_RETS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
extern "C" fn backtrace_prog(_ctx: &TraceCtx) -> u64 {
    // Printed first, so that this function makes a real (not a tail) call and has its own frame
    // record; the walk below then starts with the return into the trampoline.
    crate::ksyms::print_backtrace("    #   ", None, arch::cpu::frame_pointer());
    let mut n = 0;
    arch::unwind::walk(arch::cpu::frame_pointer(), arch::boot::stack_bounds(arch::cpu::id()), 4, |f| {
        BT_RETS[n].store(f.ret, Relaxed);
        n += 1;
        true
    });
    0
}

ktest! {
    /// A backtrace from a program walks through the trampoline's frame record to the traced
    /// function's caller (straight and through ftrace_regs_caller), and names the trampoline.
    fn bpf_tramp::backtrace() {
        let ip = direct_target as *const () as u64;
        let l = Attach::fexit(Func::at(ip, 8), backtrace_prog).map_err(fail)?;
        for route in ROUTES {
            on_route(route, ip, || {
                BT_RETS.iter().for_each(|r| r.store(0, Relaxed));
                let ctx = call8(ip, [0; 8]);
                let (image, words, _) = bpf::trampoline_of(ip).unwrap_or_default();
                let r0 = BT_RETS[0].load(Relaxed);
                kassert!((image..image + 4 * words.len() as u64).contains(&r0), "{route:?}: first frame returns into the trampoline ({r0:#x})");
                kassert_eq!(bpf::describe(r0).map(|d| d.0), Some(crate::ksyms::name(ip)), "{route:?}: trampoline name");
                kassert_eq!(BT_RETS[1].load(Relaxed), ctx.ret_addr, "{route:?}: then the traced function's caller");
                Ok(())
            })?;
        }
        l.detach().map_err(fail)
    }
}

ktest! {
    /// Prints the code of one fexit trampoline (1 fentry + 1 fexit, 2 arguments) as hex for
    /// docs/trampolines.md, and checks its first and last instructions.
    fn bpf_tramp::dump() {
        let ip = bt_args2 as *const () as u64;
        let a = Attach::fentry(Func::at(ip, 2), rec_entry).map_err(fail)?;
        let b = Attach::fexit(Func::at(ip, 2), rec_exit).map_err(fail)?;
        bpf::dump(ip, "    # ");
        let (at, words, _) = bpf::trampoline_of(ip).unwrap_or_default();
        kassert_eq!(words.first().copied(), insn::encode_addi_d(insn::Reg::Sp, insn::Reg::Sp, -arch::bpf_tramp::FRAME_SIZE).ok());
        kassert_eq!(words.last().copied(), Some(insn::encode_jr(insn::Reg::Ra)), "returns with jr ra");
        kassert_eq!(site_word(ip), Insn::Bl { target: at });
        drop(a);
        drop(b);
        // The freed code is poisoned.
        // SAFETY: reads one word of the reserved area.
        let w = unsafe { core::ptr::read_volatile(at as *const u32) };
        kassert_eq!(w, bpf::POISON, "freed trampoline code is poisoned");
        Ok(())
    }
}

// ---- modules ----

use crate::module;

/// Loads sample_mod from the fw_cfg file QEMU was given; returns a reference (drop it before
/// unloading).
fn load_sample() -> Result<module::ModuleRef, TestError> {
    let bytes = module::fw_cfg_read("sample_mod")
        .ok_or_else(|| TestError::Fail("no fw_cfg file for sample_mod: boot with the sample modules (make build; ltrun and make test pass them)".into()))?;
    module::load(&bytes).map_err(|e| TestError::Fail(alloc::format!("loading sample_mod: {e}")))?;
    module::try_get("sample_mod").ok_or_else(|| TestError::Fail("sample_mod not loaded".into()))
}

fn unload_sample() -> TestResult {
    module::unload("sample_mod").map_err(|e| TestError::Fail(alloc::format!("unloading sample_mod: {e}")))
}

fn module_fn<T>(m: &module::Module, name: &str) -> Result<(u64, T), TestError> {
    let ip = m.symbol(name).ok_or_else(|| TestError::Fail(alloc::format!("sample_mod has no {name}")))?;
    // SAFETY: the caller names a function of that signature; the reference keeps it loaded while
    // the case calls it.
    Ok((ip, unsafe { core::mem::transmute_copy::<u64, T>(&ip) }))
}

/// Runs `f` with sample_mod loaded, then unloads it (also when `f` failed).
fn with_sample(f: impl FnOnce(&module::Module) -> TestResult) -> TestResult {
    let m = load_sample()?;
    let r = f(&m);
    drop(m);
    let u = unload_sample();
    r?;
    u
}

ktest! {
    /// fentry + fexit on a module function (trampoline in the module area, called straight from
    /// the module's site, and through ftrace_regs_caller) and on a kernel function whose
    /// trampoline is placed in the module area (out of bl reach: through ftrace_regs_caller).
    /// The programs see the same arguments and results, the function runs once per call, and the
    /// module cannot unload while a program is attached to it.
    fn bpf_tramp::module_attach() {
        with_sample(|m| {
            let (work, work_fn) = module_fn::<extern "C" fn(u64) -> u64>(m, "sample_mod_work")?;
            let (_, calls_fn) = module_fn::<extern "C" fn() -> u64>(m, "sample_mod_work_calls")?;
            let want = work_fn(3);
            let f = Func::in_module("sample_mod", "sample_mod_work", 1).map_err(fail)?;
            kassert_eq!(f.ip(), work);
            let a = Attach::fentry(f, rec_entry).map_err(fail)?;
            let b = Attach::fexit(f, rec_exit).map_err(fail)?;
            let (image, _, _) = bpf::trampoline_of(work).unwrap_or_default();
            kassert!(crate::execmem::area::in_area(image), "module function's trampoline in the module area ({image:#x})");
            for route in ROUTES {
                on_route(route, work, || {
                    reset_seen();
                    let c0 = calls_fn();
                    kassert_eq!(work_fn(3), want, "{route:?}: result");
                    kassert_eq!(calls_fn(), c0 + 1, "{route:?}: runs once");
                    kassert_eq!((SEEN_ENTRY.hits.load(Relaxed), SEEN_EXIT.hits.load(Relaxed)), (1, 1), "{route:?}: programs");
                    kassert_eq!((SEEN_ENTRY.args(1), SEEN_EXIT.args(1)), ([3].to_vec(), [3].to_vec()), "{route:?}: arguments");
                    kassert_eq!(SEEN_EXIT.ret()[0], want, "{route:?}: result seen");
                    Ok(())
                })?;
            }
            let busy = module::unload("sample_mod");
            kassert!(busy.is_err(), "unload refused while a program is attached: {busy:?}");
            drop(a);
            drop(b);
            // A kernel function with its trampoline in the module area.
            let t = &targets()[2];
            let want = (t.call)();
            let f = Func::at(t.ip, t.nargs).placed(bpf::Placement::ModuleArea);
            let a = Attach::fentry(f, rec_entry).map_err(fail)?;
            let b = Attach::fexit(f, rec_exit).map_err(fail)?;
            let (image, _, _) = bpf::trampoline_of(t.ip).unwrap_or_default();
            kassert!(crate::execmem::area::in_area(image), "placed in the module area ({image:#x})");
            kassert_eq!(site_word(t.ip), Insn::Bl { target: arch::ftrace::addr::regs_caller() }, "out of reach: regs route");
            reset_seen();
            call_once(t, want, "kernel function, module-area trampoline")?;
            kassert_eq!((SEEN_ENTRY.hits.load(Relaxed), SEEN_EXIT.hits.load(Relaxed)), (1, 1));
            kassert_eq!(SEEN_ENTRY.args(2), REGS[..2].to_vec());
            kassert_eq!(SEEN_EXIT.args(2), REGS[..2].to_vec());
            kassert_eq!(SEEN_EXIT.ret()[0], want);
            drop(a);
            drop(b);
            // The kernel's area full: a Near trampoline falls back to the module area and the
            // regs route, and works the same.
            let blocks = bpf::exhaust_area();
            let full = Attach::fentry(Func::at(t.ip, t.nargs), rec_entry);
            let fb = full.as_ref().map(|_| (bpf::trampoline_of(t.ip).unwrap_or_default().0, site_word(t.ip))).map_err(|e| alloc::format!("attach with the area full: {e}"));
            let ran = full.as_ref().is_ok().then(|| {
                reset_seen();
                call_once(t, want, "kernel function, area full")
            });
            drop(full);
            bpf::release_area(blocks);
            let (image, word) = fb.map_err(TestError::Fail)?;
            kassert!(crate::execmem::area::in_area(image), "fell back to the module area ({image:#x})");
            kassert_eq!(word, Insn::Bl { target: arch::ftrace::addr::regs_caller() }, "fallback: regs route");
            ran.unwrap_or(Ok(()))?;
            kassert_eq!(SEEN_ENTRY.hits.load(Relaxed), 1, "fallback trampoline ran its program");
            kassert_eq!(bpf::area_used(), 0, "the area is given back");
            Ok(())
        })
    }
}

/// A kernel function with the same symbol name as sample_mod's `sample_mod_add`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_add(a: u64, b: u64) -> u64 {
    ran();
    black_box(a.wrapping_mul(b))
}

static SHADOW: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
extern "C" fn shadow_kernel(ctx: &TraceCtx) -> u64 {
    SHADOW[0].store(ctx.func_ip(), Relaxed);
    0
}
extern "C" fn shadow_module(ctx: &TraceCtx) -> u64 {
    SHADOW[1].store(ctx.func_ip(), Relaxed);
    0
}

ktest! {
    /// sample_mod's `sample_mod_add` and a kernel function of the same name: a name alone means
    /// the kernel's, (module, name) the module's, and each program runs only for its function.
    /// A module on its way out is refused.
    fn bpf_tramp::module_fentry_shadow() {
        with_sample(|m| {
            let (mod_ip, mod_fn) = module_fn::<extern "C" fn(u64, u64) -> u64>(m, "sample_mod_add")?;
            let k = Func::named("sample_mod_add", 2).map_err(fail)?;
            let mm = Func::in_module("sample_mod", "sample_mod_add", 2).map_err(fail)?;
            kassert_eq!(k.ip(), sample_mod_add as *const () as u64, "the name alone is the kernel's");
            kassert_eq!(mm.ip(), mod_ip, "(module, name) is the module's");
            kassert!(crate::execmem::area::in_area(mm.ip()) && !crate::execmem::area::in_area(k.ip()));
            let a = Attach::fentry(mm, shadow_module).map_err(fail)?;
            let b = Attach::fentry(k, shadow_kernel).map_err(fail)?;
            SHADOW.iter().for_each(|s| s.store(0, Relaxed));
            kassert_eq!(sample_mod_add(black_box(6), black_box(7)), 42);
            kassert_eq!((SHADOW[0].load(Relaxed), SHADOW[1].load(Relaxed)), (k.ip(), 0), "kernel call: only the kernel's program");
            SHADOW.iter().for_each(|s| s.store(0, Relaxed));
            kassert_eq!(mod_fn(6, 7), 13);
            kassert_eq!((SHADOW[0].load(Relaxed), SHADOW[1].load(Relaxed)), (0, mm.ip()), "module call: only the module's program");
            drop(a);
            drop(b);
            // Unloading marks the module's sites going first: an attach then is refused.
            let range = m.site_range();
            ftrace::core::module_sites_going(range.clone()).map_err(ffail)?;
            let e = Attach::fentry(mm, shadow_module);
            ftrace::core::module_sites_stay(range);
            kassert!(matches!(e, Err(AttachError::ModuleGoing(_))), "attach while the module goes: {e:?}");
            kdiag!("{}", e.unwrap_err());
            Ok(())
        })
    }
}
