//! Suite `kprobes`: break probes on every instruction class (stepped out of line or simulated),
//! handlers that change registers or the PC, recursion, refused places, and arming and
//! disarming while other CPUs run the probed code. Case names follow Linux's
//! `lib/test_kprobes.c` where the idea is the same.

use super::{TestError, TestResult};
use crate::kprobes::{self, Kprobe, KprobeError, Where};
use crate::{kassert, kassert_eq, kdiag, ktest};
use arch::frame::PtRegs;
use arch::kprobe_insn::Refused;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

// Functions built for probing, each with one instruction of a class at a known offset. Every one
// returns in a0 a value that shows whether its instructions did their job.
core::arch::global_asm!(
    r#"
    .text
    .macro KP_FUNC name
    .balign 16
    .global \name
    .type \name, @function
\name:
    .endm
    .macro KP_END name
    .size \name, . - \name
    .endm

    /* a0 = 3 * a0 + 7; +4 is an ordinary instruction (stepped). Two copies: the second is
       probed inside the first one's handler. */
    .macro KP_STEP name
    KP_FUNC \name
    slli.d  $t0, $a0, 1
    add.d   $a0, $a0, $t0
    addi.d  $a0, $a0, 7
    jr      $ra
    KP_END \name
    .endm
    KP_STEP kp_step
    KP_STEP kp_step2

    /* PC-relative values: the result depends on where the instruction is. */
    KP_FUNC kp_pcaddi
    pcaddi  $a0, 3
    jr      $ra
    KP_END kp_pcaddi
    KP_FUNC kp_pcaddu12i
    pcaddu12i $a0, -2
    jr      $ra
    KP_END kp_pcaddu12i
    KP_FUNC kp_pcaddu18i
    pcaddu18i $a0, 1
    jr      $ra
    KP_END kp_pcaddu18i
    KP_FUNC kp_pcalau12i
    pcalau12i $a0, -5
    jr      $ra
    KP_END kp_pcalau12i

    /* b: 2 when taken. */
    KP_FUNC kp_b
    b       1f
    ori     $a0, $zero, 1
    jr      $ra
1:  ori     $a0, $zero, 2
    jr      $ra
    KP_END kp_b

    /* bl to a leaf (+4): a0 + 6 when the call and its return address are right. */
    KP_FUNC kp_bl
    move    $t1, $ra
    bl      kp_bl_leaf
    addi.d  $a0, $a0, 1
    move    $ra, $t1
    jr      $ra
    KP_END kp_bl
    KP_FUNC kp_bl_leaf
    addi.d  $a0, $a0, 5
    jr      $ra
    KP_END kp_bl_leaf

    /* jirl $t0, $t0, 0 at +4 (rd == rj): 2 when it jumps to +16 and links +8. */
    KP_FUNC kp_jirl
    pcaddi  $t0, 4
    jirl    $t0, $t0, 0
    ori     $a0, $zero, 1
    jr      $ra
    pcaddi  $t1, -2
    sub.d   $a0, $t0, $t1
    addi.d  $a0, $a0, 2
    jr      $ra
    KP_END kp_jirl

    /* Conditional branches at +0: 2 when taken, 1 when not. */
    .macro KP_BR2 name, op
    KP_FUNC \name
    \op     $a0, $a1, 1f
    ori     $a0, $zero, 1
    jr      $ra
1:  ori     $a0, $zero, 2
    jr      $ra
    KP_END \name
    .endm
    KP_BR2 kp_beq, beq
    KP_BR2 kp_bne, bne
    KP_BR2 kp_blt, blt
    KP_BR2 kp_bge, bge
    KP_BR2 kp_bltu, bltu
    KP_BR2 kp_bgeu, bgeu
    .macro KP_BR1 name, op
    KP_FUNC \name
    \op     $a0, 1f
    ori     $a0, $zero, 1
    jr      $ra
1:  ori     $a0, $zero, 2
    jr      $ra
    KP_END \name
    .endm
    KP_BR1 kp_beqz, beqz
    KP_BR1 kp_bnez, bnez

    /* Never called: one instruction of each refused class. */
    KP_FUNC kp_refused
    ll.w    $t0, $a0, 0
    sc.w    $t0, $a0, 0
    amswap.w $t0, $t1, $a0
    csrrd   $t0, 0
    ertn
    idle    0
    break   0
    syscall 0
    jr      $ra
    KP_END kp_refused
"#
);

// SAFETY: the routines above are leaf functions of the standard calling convention: they read
// only their argument registers, write only a0, t0 and t1 (caller-saved), touch no memory and
// return with `jr ra`, so calling them cannot break any Rust invariant (`safe fn`). `kp_refused`
// is not declared: it must never run.
unsafe extern "C" {
    safe fn kp_step(a: u64) -> u64;
    safe fn kp_step2(a: u64) -> u64;
    safe fn kp_pcaddi() -> u64;
    safe fn kp_pcaddu12i() -> u64;
    safe fn kp_pcaddu18i() -> u64;
    safe fn kp_pcalau12i() -> u64;
    safe fn kp_b() -> u64;
    safe fn kp_bl(a: u64) -> u64;
    safe fn kp_jirl() -> u64;
    safe fn kp_beq(a: u64, b: u64) -> u64;
    safe fn kp_bne(a: u64, b: u64) -> u64;
    safe fn kp_blt(a: u64, b: u64) -> u64;
    safe fn kp_bge(a: u64, b: u64) -> u64;
    safe fn kp_bltu(a: u64, b: u64) -> u64;
    safe fn kp_bgeu(a: u64, b: u64) -> u64;
    safe fn kp_beqz(a: u64) -> u64;
    safe fn kp_bnez(a: u64) -> u64;
}

/// What the handlers saw last, and how often they ran.
static PRE_ERA: AtomicU64 = AtomicU64::new(0);
static PRE_A0: AtomicU64 = AtomicU64::new(0);
static PRE_CALLS: AtomicU64 = AtomicU64::new(0);
static POST_ERA: AtomicU64 = AtomicU64::new(0);
static POST_CALLS: AtomicU64 = AtomicU64::new(0);

fn reset() {
    for a in [&PRE_ERA, &PRE_A0, &PRE_CALLS, &POST_ERA, &POST_CALLS] {
        a.store(0, Relaxed);
    }
}

fn pre_record(_p: &Kprobe, r: &mut PtRegs) -> bool {
    PRE_ERA.store(r.era, Relaxed);
    PRE_A0.store(r.regs[4], Relaxed);
    PRE_CALLS.fetch_add(1, Relaxed);
    false
}

fn post_record(_p: &Kprobe, r: &mut PtRegs) {
    POST_ERA.store(r.era, Relaxed);
    POST_CALLS.fetch_add(1, Relaxed);
}

fn sym(name: &str) -> Result<u64, TestError> {
    crate::ksyms::find(name).map(|s| s.addr).ok_or_else(|| TestError::Fail(alloc::format!("no symbol {name}")))
}

fn reg(p: &'static Kprobe) -> TestResult {
    kprobes::register_kprobe(p).map_err(|e| TestError::Fail(alloc::format!("register_kprobe: {e}")))
}

fn unreg(p: &'static Kprobe) -> TestResult {
    kprobes::unregister_kprobe(p).map_err(|e| TestError::Fail(alloc::format!("unregister_kprobe: {e}")))
}

/// Runs `f` with `p` registered, unregistering it afterwards whatever `f` returned.
fn with_probe(p: &'static Kprobe, f: impl FnOnce() -> TestResult) -> TestResult {
    reg(p)?;
    let r = f();
    unreg(p)?;
    r
}

/// One probed call of `f` compared with an unprobed one; the handlers saw the probe's address,
/// and the post handler where execution went on (`next`, None = `addr + 4`).
fn same_result(p: &'static Kprobe, what: &str, next: Option<u64>, f: &dyn Fn() -> u64) -> TestResult {
    let want = f();
    reset();
    let mut got = 0;
    with_probe(p, || {
        got = f();
        Ok(())
    })?;
    kassert_eq!(got, want, "{what}: result with the probe");
    kassert_eq!(PRE_CALLS.load(Relaxed), 1, "{what}: pre handler calls");
    kassert_eq!(POST_CALLS.load(Relaxed), 1, "{what}: post handler calls");
    kassert_eq!(PRE_ERA.load(Relaxed), p.addr(), "{what}: pre handler's era");
    kassert_eq!(POST_ERA.load(Relaxed), next.unwrap_or(p.addr() + 4), "{what}: post handler's era");
    Ok(())
}

ktest! {
    /// A probe on an ordinary instruction: the pre handler sees the probe's PC and the
    /// registers, the instruction runs in its slot, the post handler sees the next PC.
    fn kprobes::test_kprobe() {
        static P: Kprobe = Kprobe::new("kp_step", 4, Some(pre_record), Some(post_record));
        let at = sym("kp_step")? + 4;
        reset();
        with_probe(&P, || {
            kassert_eq!(P.addr(), at);
            kassert!(P.slot() != 0, "an ordinary instruction is stepped out of line");
            kassert_eq!(arch::patch::read_insn(at).unwrap_or(0), arch::kprobe_insn::KPROBE_BP_INSN, "break armed");
            kassert_eq!(kp_step(black_box(5)), 22, "probed");
            Ok(())
        })?;
        kassert_eq!(kp_step(5), 22, "unprobed");
        kassert_eq!(PRE_ERA.load(Relaxed), at, "pre handler's era");
        kassert_eq!(PRE_A0.load(Relaxed), 5, "pre handler's a0");
        kassert_eq!(POST_ERA.load(Relaxed), at + 4, "post handler's era");
        kassert_eq!((PRE_CALLS.load(Relaxed), POST_CALLS.load(Relaxed)), (1, 1));
        kassert!(arch::patch::read_insn(at).unwrap_or(0) != arch::kprobe_insn::KPROBE_BP_INSN, "break removed");
        Ok(())
    }
}

ktest! {
    /// The probed call returns what the unprobed one does (22 for 5).
    fn kprobes::stepped_instruction_keeps_the_result() {
        static P: Kprobe = Kprobe::new("kp_step", 4, Some(pre_record), Some(post_record));
        same_result(&P, "add.d", None, &|| kp_step(black_box(5)))
    }
}

ktest! {
    /// Each PC-relative instruction, simulated, gives the value it gives in place.
    fn kprobes::simulated_pc_relative() {
        static PCADDI: Kprobe = Kprobe::new("kp_pcaddi", 0, Some(pre_record), Some(post_record));
        static PCADDU12I: Kprobe = Kprobe::new("kp_pcaddu12i", 0, Some(pre_record), Some(post_record));
        static PCADDU18I: Kprobe = Kprobe::new("kp_pcaddu18i", 0, Some(pre_record), Some(post_record));
        static PCALAU12I: Kprobe = Kprobe::new("kp_pcalau12i", 0, Some(pre_record), Some(post_record));
        same_result(&PCADDI, "pcaddi", None, &|| kp_pcaddi())?;
        same_result(&PCADDU12I, "pcaddu12i", None, &|| kp_pcaddu12i())?;
        same_result(&PCADDU18I, "pcaddu18i", None, &|| kp_pcaddu18i())?;
        same_result(&PCALAU12I, "pcalau12i", None, &|| kp_pcalau12i())
    }
}

ktest! {
    /// b, bl and jirl (with rd == rj) are simulated: the right target, link and result.
    fn kprobes::simulated_jumps() {
        static B: Kprobe = Kprobe::new("kp_b", 0, Some(pre_record), Some(post_record));
        static BL: Kprobe = Kprobe::new("kp_bl", 4, Some(pre_record), Some(post_record));
        static JIRL: Kprobe = Kprobe::new("kp_jirl", 4, Some(pre_record), Some(post_record));
        let b = sym("kp_b")?;
        same_result(&B, "b", Some(b + 12), &|| kp_b())?;
        kassert_eq!(kp_b(), 2);
        same_result(&BL, "bl", Some(sym("kp_bl_leaf")?), &|| kp_bl(black_box(10)))?;
        kassert_eq!(kp_bl(10), 16);
        same_result(&JIRL, "jirl", Some(sym("kp_jirl")? + 16), &|| kp_jirl())?;
        kassert_eq!(kp_jirl(), 2);
        Ok(())
    }
}

ktest! {
    /// Every conditional branch, taken and not taken, signed and unsigned, simulated.
    fn kprobes::simulated_branches() {
        type Br = extern "C" fn(u64, u64) -> u64;
        static BEQ: Kprobe = Kprobe::new("kp_beq", 0, Some(pre_record), Some(post_record));
        static BNE: Kprobe = Kprobe::new("kp_bne", 0, Some(pre_record), Some(post_record));
        static BLT: Kprobe = Kprobe::new("kp_blt", 0, Some(pre_record), Some(post_record));
        static BGE: Kprobe = Kprobe::new("kp_bge", 0, Some(pre_record), Some(post_record));
        static BLTU: Kprobe = Kprobe::new("kp_bltu", 0, Some(pre_record), Some(post_record));
        static BGEU: Kprobe = Kprobe::new("kp_bgeu", 0, Some(pre_record), Some(post_record));
        let cases: [(&'static Kprobe, &str, Br, fn(u64, u64) -> bool); 6] = [
            (&BEQ, "kp_beq", kp_beq, |a, b| a == b),
            (&BNE, "kp_bne", kp_bne, |a, b| a != b),
            (&BLT, "kp_blt", kp_blt, |a, b| (a as i64) < (b as i64)),
            (&BGE, "kp_bge", kp_bge, |a, b| (a as i64) >= (b as i64)),
            (&BLTU, "kp_bltu", kp_bltu, |a, b| a < b),
            (&BGEU, "kp_bgeu", kp_bgeu, |a, b| a >= b),
        ];
        let pairs = [(1u64, 1u64), (1, 2), (2, 1), (u64::MAX, 1), (1, u64::MAX)];
        for (p, name, f, taken) in cases {
            let at = sym(name)?;
            for (a, b) in pairs {
                let next = if taken(a, b) { at + 12 } else { at + 4 };
                same_result(p, name, Some(next), &|| f(black_box(a), black_box(b)))?;
                kassert_eq!(f(a, b), if taken(a, b) { 2 } else { 1 }, "{name}({a:#x}, {b:#x})");
            }
        }
        static BEQZ: Kprobe = Kprobe::new("kp_beqz", 0, Some(pre_record), Some(post_record));
        static BNEZ: Kprobe = Kprobe::new("kp_bnez", 0, Some(pre_record), Some(post_record));
        for v in [0u64, 1, u64::MAX] {
            let at = sym("kp_beqz")?;
            same_result(&BEQZ, "beqz", Some(if v == 0 { at + 12 } else { at + 4 }), &|| kp_beqz(black_box(v)))?;
            let at = sym("kp_bnez")?;
            same_result(&BNEZ, "bnez", Some(if v != 0 { at + 12 } else { at + 4 }), &|| kp_bnez(black_box(v)))?;
        }
        Ok(())
    }
}

ktest! {
    /// A pre handler that changes a0 changes the function's result; one that moves the PC past
    /// an instruction (and returns true) skips it.
    fn kprobes::handler_changes_registers_and_pc() {
        fn set_a0(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[4] = 10;
            false
        }
        fn skip(p: &Kprobe, r: &mut PtRegs) -> bool {
            r.era = p.addr() + 4;
            true
        }
        static A0: Kprobe = Kprobe::new("kp_step", 0, Some(set_a0), None);
        static SKIP: Kprobe = Kprobe::new("kp_step", 4, Some(skip), Some(post_record));
        with_probe(&A0, || {
            kassert_eq!(kp_step(black_box(5)), 37, "a0 = 10 from the handler");
            Ok(())
        })?;
        POST_CALLS.store(0, Relaxed);
        with_probe(&SKIP, || {
            // The add.d is skipped: a0 = 5 + 7.
            kassert_eq!(kp_step(black_box(5)), 12, "add.d skipped");
            kassert_eq!(POST_CALLS.load(Relaxed), 0, "no post handler after a redirect");
            Ok(())
        })
    }
}

ktest! {
    /// Several probes at once, on different functions and classes.
    fn kprobes::test_kprobes() {
        static A: Kprobe = Kprobe::new("kp_step", 4, Some(pre_record), None);
        static B: Kprobe = Kprobe::new("kp_step2", 8, Some(pre_record), None);
        static C: Kprobe = Kprobe::new("kp_b", 0, Some(pre_record), None);
        reset();
        reg(&A)?;
        let r = reg(&B).and_then(|_| {
            let r = reg(&C).and_then(|_| {
                let v = kp_step(black_box(1)) + kp_step2(black_box(2)) + kp_b();
                kassert_eq!(v, 10 + 13 + 2);
                kassert_eq!((A.hits(), B.hits(), C.hits()), (1, 1, 1));
                kassert_eq!(PRE_CALLS.load(Relaxed), 3);
                Ok(())
            });
            let u = unreg(&C);
            r.and(u)
        });
        let u = unreg(&B).and(unreg(&A));
        r.and(u)
    }
}

ktest! {
    /// A probe hit while another probe's handler runs on the same CPU runs no handler, is
    /// counted in nmissed, and still executes its instruction.
    fn kprobes::test_kprobe_missed() {
        fn calls_probed(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[4] = kp_step2(black_box(r.regs[4]));
            false
        }
        static OUTER: Kprobe = Kprobe::new("kp_step", 0, Some(calls_probed), None);
        static INNER: Kprobe = Kprobe::new("kp_step2", 4, Some(pre_record), Some(post_record));
        reset();
        reg(&INNER)?;
        let r = with_probe(&OUTER, || {
            // kp_step(kp_step2(2)) = 3 * 13 + 7.
            kassert_eq!(kp_step(black_box(2)), 46);
            Ok(())
        });
        let direct = kp_step2(black_box(2));
        let (hits, missed) = (INNER.hits(), INNER.nmissed());
        unreg(&INNER)?;
        r?;
        kassert_eq!(direct, 13, "a direct call of the inner function");
        kassert_eq!((hits, missed), (1, 1), "inner: one hit from the direct call, one missed inside the handler");
        kassert_eq!(PRE_CALLS.load(Relaxed), 1, "the inner handler ran only for the direct call");
        kassert_eq!(OUTER.nmissed(), 0);
        Ok(())
    }
}

ktest! {
    /// disable/enable take the break out and put it back; a disabled probe is not hit.
    fn kprobes::disable_and_enable() {
        static P: Kprobe = Kprobe::new("kp_step", 4, Some(pre_record), None);
        reset();
        with_probe(&P, || {
            kprobes::disable_kprobe(&P).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            kassert!(!P.is_armed());
            kassert_eq!(kp_step(black_box(1)), 10);
            kassert_eq!(PRE_CALLS.load(Relaxed), 0, "not hit while disabled");
            kprobes::enable_kprobe(&P).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            kassert_eq!(kp_step(black_box(1)), 10);
            kassert_eq!(PRE_CALLS.load(Relaxed), 1, "hit again once enabled");
            Ok(())
        })
    }
}

ktest! {
    /// Refused with a clear error and nothing written: instructions that cannot be probed,
    /// addresses that are no instruction of a known function, blacklisted functions, the entry
    /// words of an ftrace site, a second probe at one address, and double registration.
    fn kprobes::bad_places_are_refused() {
        let base = sym("kp_refused")?;
        let classes = [Refused::LlSc, Refused::LlSc, Refused::Atomic, Refused::Csr, Refused::Ertn, Refused::Idle, Refused::Break, Refused::Syscall];
        for (i, want) in classes.iter().enumerate() {
            let at = base + 4 * i as u64;
            // A probe per place: `Where` is fixed at definition, so each is built here.
            let p: &'static Kprobe = alloc::boxed::Box::leak(alloc::boxed::Box::new(Kprobe::with(Where::Addr(at), None, None)));
            let before = arch::patch::read_insn(at).unwrap_or(0);
            let r = kprobes::register_kprobe(p);
            kassert_eq!(r, Err(KprobeError::Refused(at, *want)), "instruction {i} of kp_refused");
            kassert_eq!(arch::patch::read_insn(at).unwrap_or(1), before, "nothing written");
        }
        let try_at = |w: Where| kprobes::register_kprobe(alloc::boxed::Box::leak(alloc::boxed::Box::new(Kprobe::with(w, None, None))));
        kassert!(matches!(try_at(Where::Addr(sym("kp_step")? + 2)), Err(KprobeError::NotAnInstruction(_))), "unaligned");
        kassert!(matches!(try_at(Where::Symbol("kp_step", 400)), Err(KprobeError::OffsetPastEnd(..))), "past the end");
        kassert!(matches!(try_at(Where::Symbol("no_such_function_anywhere", 0)), Err(KprobeError::NoSuchSymbol(_))));
        kassert!(matches!(try_at(Where::Addr(0x9000_0000_0000_0000)), Err(KprobeError::NotAnInstruction(_))), "not text");
        let blk = try_at(Where::Symbol("irq::on_exception", 8));
        kassert!(matches!(blk, Err(KprobeError::Blacklisted(..))), "the trap path: {blk:?}");
        let ft = try_at(Where::Symbol("selftest::targets::chain_a", 0));
        kassert!(matches!(ft, Err(KprobeError::FtraceSite(_))), "an ftrace site's entry: {ft:?}");
        static FIRST: Kprobe = Kprobe::new("kp_step2", 4, None, None);
        static SECOND: Kprobe = Kprobe::new("kp_step2", 4, None, None);
        with_probe(&FIRST, || {
            kassert!(matches!(kprobes::register_kprobe(&SECOND), Err(KprobeError::Busy(_))), "a second probe at one address");
            kassert_eq!(kprobes::register_kprobe(&FIRST), Err(KprobeError::AlreadyRegistered));
            Ok(())
        })?;
        kassert_eq!(kprobes::unregister_kprobe(&FIRST), Err(KprobeError::NotRegistered));
        kassert_eq!(kp_step2(black_box(1)), 10, "the function works after all refusals");
        Ok(())
    }
}

static SMP_STOP: AtomicBool = AtomicBool::new(false);
static SMP_CALLS: AtomicU64 = AtomicU64::new(0);
static SMP_BAD: AtomicU64 = AtomicU64::new(0);
static SMP_HITS: AtomicU64 = AtomicU64::new(0);

fn smp_worker(_cpu: usize) {
    while !SMP_STOP.load(Acquire) {
        for i in 0..64u64 {
            if kp_step2(black_box(i)) != 3 * i + 7 {
                SMP_BAD.fetch_add(1, Relaxed);
            }
            SMP_CALLS.fetch_add(1, Relaxed);
        }
    }
}

ktest! {
    /// Three CPUs call the probed function while this one arms and disarms its probe; every
    /// call computes the right result, and the handler ran exactly as often as the probe counts.
    fn kprobes::arm_disarm_while_other_cpus_run_it() {
        fn count(_p: &Kprobe, _r: &mut PtRegs) -> bool {
            SMP_HITS.fetch_add(1, Relaxed);
            false
        }
        static P: Kprobe = Kprobe::new("kp_step2", 4, Some(count), None);
        let n = crate::smp::online();
        if n < 2 {
            return Err(TestError::Skip("needs 2 CPUs".into()));
        }
        SMP_STOP.store(false, Release);
        for c in [&SMP_CALLS, &SMP_BAD, &SMP_HITS] {
            c.store(0, Relaxed);
        }
        let cpus: alloc::vec::Vec<usize> = (1..n.min(4)).filter(|&c| crate::smp::run_on(c, smp_worker)).collect();
        // 1,000 rounds by default; `STRESS=long` (a larger `stress=`) makes it the full 10,000.
        let rounds = if crate::boot::options().stress > crate::cmdline::STRESS_DEFAULT { 10_000 } else { 1_000 };
        let mut hits = 0;
        let mut result = Ok(());
        for _ in 0..rounds {
            if let Err(e) = reg(&P) {
                result = Err(e);
                break;
            }
            let _ = kp_step2(black_box(1));
            if let Err(e) = unreg(&P) {
                result = Err(e);
                break;
            }
            // Final once unregistered: no CPU is inside the probe any more.
            hits += P.hits();
        }
        SMP_STOP.store(true, Release);
        for &c in &cpus {
            while crate::smp::work_running(c) {
                core::hint::spin_loop();
            }
        }
        result?;
        kdiag!("{rounds} rounds on {} CPUs: {} calls, {} handler runs", cpus.len() + 1, SMP_CALLS.load(Relaxed), SMP_HITS.load(Relaxed));
        kassert_eq!(SMP_BAD.load(Relaxed), 0, "calls with a wrong result");
        kassert!(SMP_HITS.load(Relaxed) >= rounds, "at least this CPU's own call per round");
        kassert_eq!(SMP_HITS.load(Relaxed), hits, "handler runs = the probe's hit counts");
        Ok(())
    }
}
