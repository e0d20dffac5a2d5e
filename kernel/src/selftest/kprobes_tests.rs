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
            // With a post handler the slot ends with `break 11` (back to the handler).
            kassert_eq!(arch::patch::read_insn(P.slot() + 4).unwrap_or(0), arch::kprobe_insn::KPROBE_SSTEPBP_INSN, "slot's second word");
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
                // A has no post handler: its slot jumps straight back (boosted); the slot is in
                // the kernel's slot page, in `b` reach.
                let s = A.slot();
                let words = [arch::patch::read_insn(s).unwrap_or(0), arch::patch::read_insn(s + 4).unwrap_or(0)];
                kdiag!("slot of kp_step+4 at {s:#x}: {:#010x} {:#010x}", words[0], words[1]);
                kassert_eq!(words[0], A.opcode(), "the slot's first word is the instruction");
                let back = arch::insn::decode(s + 4, words[1]);
                kassert!(matches!(back, arch::insn::Insn::B { target } if target == A.addr() + 4), "the slot jumps back: {back:?}");
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
    /// disable/enable take the break (or the ftrace ops) out and put it back; a disabled probe is
    /// not hit.
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
        })?;
        // The same for a probe on ftrace: its ops leaves the site and comes back.
        static F: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_record), None);
        let entry = addr_of(kpf_target as *const ());
        let enabled = || crate::ftrace::core::site_info(entry).is_some_and(|s| s.state.target != 0);
        reset();
        with_probe(&F, || {
            kprobes::disable_kprobe(&F).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            kassert!(!F.is_armed() && !enabled(), "disabled: the site is off");
            kassert_eq!(kpf_target(black_box(1), 0), 3);
            kassert_eq!(PRE_CALLS.load(Relaxed), 0, "not hit while disabled");
            kprobes::enable_kprobe(&F).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            kassert!(F.is_armed() && enabled(), "enabled: the site calls a caller again");
            kassert_eq!(kpf_target(black_box(1), 0), 3);
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
        // The entry words of a site ftrace never traces (notrace by policy) are nobody's to probe.
        let mut notrace = None;
        crate::ftrace::core::for_each_site(|s| {
            if notrace.is_none() && s.state.flags.contains(crate::ftrace::core::SiteFlags::NOTRACE) && !kprobes::blacklisted(s.site.name) {
                notrace = Some(s.site.ip);
            }
        });
        let notrace = notrace.ok_or_else(|| TestError::Fail("no notrace site to try".into()))?;
        let ft = try_at(Where::Addr(notrace + 4));
        kassert!(matches!(ft, Err(KprobeError::FtraceSite(_))), "a notrace site's call slot: {ft:?}");
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
        // 10,000 rounds (about a minute of guest time on 4 CPUs); `STRESS=long` (a larger
        // `stress=`) makes it 100,000.
        let rounds = if crate::boot::options().stress > crate::cmdline::STRESS_DEFAULT { 100_000 } else { 10_000 };
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

// ---------------------------------------------------------------------------------------------
// kprobes on ftrace and kretprobes, on traceable Rust functions.

/// `3a + b`: a traceable function (it has a patch site) for probes on ftrace.
#[inline(never)]
pub fn kpf_target(a: u64, b: u64) -> u64 {
    black_box(a).wrapping_mul(3).wrapping_add(black_box(b))
}

/// Where a pre handler sends `kpf_target`'s calls: same signature, another result.
#[inline(never)]
pub fn kpf_replacement(a: u64, b: u64) -> u64 {
    black_box(a) + black_box(b) + 1000
}

/// `x + 100`, for kretprobes.
#[inline(never)]
pub fn kret_target(x: u64) -> u64 {
    black_box(x) + 100
}

/// Calls [`kret_target`]: its return address is in here.
#[inline(never)]
pub fn kret_driver(x: u64) -> u64 {
    black_box(kret_target(black_box(x))) + 1
}

/// `2x`, called by [`kret_outer`].
#[inline(never)]
pub fn kret_inner(x: u64) -> u64 {
    black_box(x) * 2
}

/// `2x + 1` through [`kret_inner`].
#[inline(never)]
pub fn kret_outer(x: u64) -> u64 {
    black_box(kret_inner(black_box(x))) + 1
}

/// Counts down recursively: `n` nested calls under the first.
#[inline(never)]
pub fn kret_recurse(n: u64) -> u64 {
    if black_box(n) == 0 { 0 } else { black_box(kret_recurse(n - 1)) + 1 }
}

fn addr_of(f: *const ()) -> u64 {
    f as u64
}

static PRE_RA: AtomicU64 = AtomicU64::new(0);

fn pre_record_ra(p: &Kprobe, r: &mut PtRegs) -> bool {
    PRE_RA.store(r.regs[1], Relaxed);
    pre_record(p, r)
}

ktest! {
    /// A probe at a traceable function's entry rides its ftrace site (no break): the pre handler
    /// sees era = the entry, the arguments and ra = the parent, the post handler the body; an
    /// offset of 4 (the site's call slot) is the same place, and both probes run.
    fn kprobes::kprobe_on_ftrace() {
        static P: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_record_ra), Some(post_record));
        static P4: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 4, Some(pre_record), None);
        let entry = addr_of(kpf_target as *const ());
        reset();
        with_probe(&P, || {
            kassert!(P.on_ftrace(), "a traceable entry is probed through ftrace");
            kassert_eq!((P.addr(), P.slot()), (entry, 0));
            let site = crate::ftrace::core::site_info(entry).ok_or_else(|| TestError::Fail("no site".into()))?;
            kassert!(site.state.target != 0, "the site calls a caller");
            kassert!(arch::patch::read_insn(entry).ok() != Some(arch::kprobe_insn::KPROBE_BP_INSN), "no break at the entry");
            kassert_eq!(kpf_target(black_box(5), black_box(1)), 16, "probed");
            Ok(())
        })?;
        kassert_eq!((PRE_CALLS.load(Relaxed), POST_CALLS.load(Relaxed)), (1, 1));
        kassert_eq!(PRE_ERA.load(Relaxed), entry, "pre handler's era");
        kassert_eq!(PRE_A0.load(Relaxed), 5, "pre handler's a0");
        kassert_eq!(POST_ERA.load(Relaxed), entry + 8, "post handler's era: the body");
        let ra = PRE_RA.load(Relaxed);
        let size = crate::ksyms::lookup(entry).map_or(0, |(s, _)| s.size as u64);
        kassert!(!(entry..entry + size).contains(&ra) && crate::ksyms::lookup(ra).is_some(), "ra = the parent, got {}", crate::ksyms::sym(ra));
        kassert_eq!(P.hits(), 1);
        kassert!(crate::ftrace::core::site_info(entry).is_some_and(|s| s.state.target == 0), "site disabled again");
        reset();
        with_probe(&P, || {
            with_probe(&P4, || {
                kassert!(P4.on_ftrace() && P4.addr() == entry, "offset 4 rides the site too");
                kassert_eq!(kpf_target(black_box(2), black_box(0)), 6);
                Ok(())
            })
        })?;
        kassert_eq!((P.hits(), P4.hits(), PRE_CALLS.load(Relaxed)), (1, 1, 2), "two probes on one site, each once");
        kassert_eq!(PRE_ERA.load(Relaxed), entry);
        Ok(())
    }
}

/// What a probe saw: a0, a1, ra, sp, fp, era.
type Seen = [AtomicU64; 6];
static SEEN_ARGS: Seen = [const { AtomicU64::new(0) }; 6];
static SEEN_ARGS2: Seen = [const { AtomicU64::new(0) }; 6];
static SEEN_FULL: Seen = [const { AtomicU64::new(0) }; 6];

fn see(into: &Seen, r: &PtRegs) {
    for (slot, v) in into.iter().zip([r.regs[4], r.regs[5], r.regs[1], r.regs[3], r.regs[22], r.era]) {
        slot.store(v, Relaxed);
    }
}

fn seen(from: &Seen) -> [u64; 6] {
    core::array::from_fn(|i| from[i].load(Relaxed))
}

/// The sp and fp `kpf_target` was last entered with by [`call_kpf_target`].
static CALL_SP_FP: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Calls `kpf_target(7, 2)` from one place (so every call has the same ra), noting the sp and
/// fp the callee is entered with: this function's own, fixed once its prologue ran.
#[inline(never)]
fn call_kpf_target() -> u64 {
    CALL_SP_FP[0].store(arch::cpu::stack_pointer(), Relaxed);
    CALL_SP_FP[1].store(arch::cpu::frame_pointer(), Relaxed);
    black_box(kpf_target(black_box(7), black_box(2)))
}

/// What a probe at `kpf_target` should have seen in the last [`call_kpf_target`], given the ra.
fn expected(ra: u64) -> [u64; 6] {
    [7, 2, ra, CALL_SP_FP[0].load(Relaxed), CALL_SP_FP[1].load(Relaxed), addr_of(kpf_target as *const ())]
}

ktest! {
    /// A probe on the argument frame (`Kprobe::on_argument_frame`, what kprobe events whose
    /// fetches read only argument registers use) sees a0, a1, ra, sp, fp and era as a probe on
    /// the full frame does, whichever way its site reaches it: alone (`ftrace_caller` calls it),
    /// beside another argument-frame probe (through the site's list) and beside a full-frame
    /// probe (through `ftrace_regs_caller`); and a0 it changes reaches the function.
    fn kprobes::kprobe_on_argument_frame() {
        fn pre_args(_p: &Kprobe, r: &mut PtRegs) -> bool {
            see(&SEEN_ARGS, r);
            false
        }
        fn pre_args2(_p: &Kprobe, r: &mut PtRegs) -> bool {
            see(&SEEN_ARGS2, r);
            false
        }
        fn pre_full(_p: &Kprobe, r: &mut PtRegs) -> bool {
            see(&SEEN_FULL, r);
            false
        }
        fn pre_set_a0(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[4] = 10;
            false
        }
        static ARGS: Kprobe = Kprobe::on_argument_frame(Where::Symbol("kprobes_tests::kpf_target", 0), Some(pre_args), None);
        static ARGS2: Kprobe = Kprobe::on_argument_frame(Where::Symbol("kprobes_tests::kpf_target", 0), Some(pre_args2), None);
        static FULL: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_full), None);
        static SET_A0: Kprobe = Kprobe::on_argument_frame(Where::Symbol("kprobes_tests::kpf_target", 0), Some(pre_set_a0), None);
        let entry = addr_of(kpf_target as *const ());
        let callers = [arch::ftrace::addr::caller(), arch::ftrace::addr::caller_smp()];
        // The reference: a full-frame probe alone.
        with_probe(&FULL, || {
            kassert_eq!(call_kpf_target(), 23);
            Ok(())
        })?;
        let ra = SEEN_FULL[2].load(Relaxed);
        kassert_eq!(crate::ksyms::lookup(ra).map(|(s, _)| s.name), Some("loongtrace_kernel::selftest::kprobes_tests::call_kpf_target"));
        kassert_eq!(seen(&SEEN_FULL), expected(ra), "the full frame");
        // Alone: the site calls ftrace_caller, which calls the probe's callback.
        with_probe(&ARGS, || {
            let target = crate::ftrace::core::site_info(entry).map_or(0, |s| s.state.target);
            kassert!(callers.contains(&target), "the site calls ftrace_caller, not {}", crate::ksyms::sym(target));
            kassert_eq!(call_kpf_target(), 23);
            Ok(())
        })?;
        kassert_eq!(seen(&SEEN_ARGS), expected(ra), "alone");
        // Two argument-frame probes: the site's list calls both.
        SEEN_ARGS.iter().for_each(|a| a.store(0, Relaxed));
        with_probe(&ARGS, || {
            with_probe(&ARGS2, || {
                kassert_eq!(call_kpf_target(), 23);
                Ok(())
            })
        })?;
        kassert_eq!((seen(&SEEN_ARGS), seen(&SEEN_ARGS2)), (expected(ra), expected(ra)), "through the list");
        // Beside a full-frame probe: ftrace_regs_caller's frame.
        SEEN_ARGS.iter().for_each(|a| a.store(0, Relaxed));
        SEEN_FULL.iter().for_each(|a| a.store(0, Relaxed));
        with_probe(&ARGS, || {
            with_probe(&FULL, || {
                kassert_eq!(call_kpf_target(), 23);
                Ok(())
            })
        })?;
        kassert_eq!((seen(&SEEN_ARGS), seen(&SEEN_FULL)), (expected(ra), expected(ra)), "beside a full-frame probe");
        with_probe(&SET_A0, || {
            kassert_eq!(kpf_target(black_box(5), black_box(1)), 31, "a0 = 10 from the handler");
            Ok(())
        })?;
        Ok(())
    }
}

ktest! {
    /// On ftrace too, a pre handler may change an argument or send the call elsewhere (the
    /// replacement returns to the parent; no post handler).
    fn kprobes::kprobe_on_ftrace_changes_args_and_pc() {
        fn set_a0(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[4] = 10;
            false
        }
        fn redirect(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.era = addr_of(kpf_replacement as *const ());
            true
        }
        static A0: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(set_a0), None);
        static REDIRECT: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(redirect), Some(post_record));
        with_probe(&A0, || {
            kassert_eq!(kpf_target(black_box(5), black_box(1)), 31, "a0 = 10 from the handler");
            Ok(())
        })?;
        POST_CALLS.store(0, Relaxed);
        with_probe(&REDIRECT, || {
            kassert_eq!(kpf_target(black_box(5), black_box(1)), 1006, "the replacement ran");
            kassert_eq!(POST_CALLS.load(Relaxed), 0, "no post handler after a redirect");
            Ok(())
        })?;
        kassert_eq!(kpf_target(5, 1), 16);
        Ok(())
    }
}

ktest! {
    /// A probe on ftrace hit inside another probe's handler counts a miss and the function runs.
    fn kprobes::kprobe_on_ftrace_missed() {
        fn calls_probed(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[4] = kpf_target(black_box(r.regs[4]), 0);
            false
        }
        static OUTER: Kprobe = Kprobe::new("kp_step", 0, Some(calls_probed), None);
        static INNER: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_record), None);
        reset();
        reg(&INNER)?;
        let r = with_probe(&OUTER, || {
            // kp_step(kpf_target(2, 0)) = 3 * 6 + 7.
            kassert_eq!(kp_step(black_box(2)), 25);
            Ok(())
        });
        let direct = kpf_target(black_box(2), 0);
        let (hits, missed) = (INNER.hits(), INNER.nmissed());
        unreg(&INNER)?;
        r?;
        kassert_eq!(direct, 6);
        kassert_eq!((hits, missed), (1, 1), "inner on ftrace: one hit, one miss");
        Ok(())
    }
}

static GRAPH_ENTRIES: AtomicU64 = AtomicU64::new(0);
static GRAPH_RETURNS: AtomicU64 = AtomicU64::new(0);

fn graph_entry_count(ent: &crate::ftrace::fgraph::FgraphEnt, _o: &crate::ftrace::fgraph::FgraphOps, _d: &mut crate::ftrace::fgraph::FgraphData) -> bool {
    let want = ent.func == addr_of(kpf_target as *const ());
    GRAPH_ENTRIES.fetch_add(want as u64, Relaxed);
    want
}

fn graph_return_count(ret: &crate::ftrace::fgraph::FgraphRet, _o: &crate::ftrace::fgraph::FgraphOps, _d: &crate::ftrace::fgraph::FgraphData) {
    if ret.retval == 16 {
        GRAPH_RETURNS.fetch_add(1, Relaxed);
    }
}

fn tfail<E: core::fmt::Display>(what: &'static str) -> impl Fn(E) -> TestError {
    move |e| TestError::Fail(alloc::format!("{what}: {e}"))
}

ktest! {
    /// One function with everything at once: the function tracer, a graph ops, a direct
    /// trampoline, a kprobe on its ftrace site, a break kprobe in its body and a kretprobe.
    /// Each runs exactly once per call and the result is right.
    fn kprobes::kprobe_tracer_graph_direct_on_one_function() {
        use crate::ftrace::{self, fgraph, tracer};
        use super::direct_tests::{reset_counts, tramp_a, tramp_count};
        static ENTRY: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_record), None);
        static BODY: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 8, Some(pre_record), Some(post_record));
        static RET: kretprobe::Kretprobe = kretprobe::Kretprobe::new("kprobes_tests::kpf_target", None, Some(ret_record), 0);
        static GRAPH: fgraph::FgraphOps = fgraph::FgraphOps::new(graph_entry_count, graph_return_count);
        static DIRECT: ftrace::FtraceOps = ftrace::FtraceOps::new_direct(ftrace::OpsFlags::empty());
        let entry = addr_of(kpf_target as *const ());
        reset();
        reset_ret();
        reset_counts();
        for c in [&GRAPH_ENTRIES, &GRAPH_RETURNS] {
            c.store(0, Relaxed);
        }
        tracer::reset_buffers();
        tracer::start(Some("kpf_target")).map_err(tfail("function tracer"))?;
        let mut result = (|| {
            fgraph::register_ftrace_graph(&GRAPH).map_err(tfail("graph"))?;
            ftrace::ftrace_set_filter_ip(&DIRECT, entry, false, true).map_err(tfail("direct filter"))?;
            ftrace::register_ftrace_direct(&DIRECT, tramp_a()).map_err(tfail("direct"))?;
            reg(&ENTRY)?;
            reg(&BODY)?;
            kretprobe::register_kretprobe(&RET).map_err(tfail("kretprobe"))?;
            kassert_eq!(kpf_target(black_box(5), black_box(1)), 16, "the result with everything on");
            Ok(())
        })();
        let _ = kretprobe::unregister_kretprobe(&RET);
        let _ = kprobes::unregister_kprobe(&BODY);
        let _ = kprobes::unregister_kprobe(&ENTRY);
        let _ = ftrace::unregister_ftrace_direct(&DIRECT, tramp_a());
        let _ = fgraph::unregister_ftrace_graph(&GRAPH);
        let stop = tracer::stop();
        let events = tracer::collect().events.iter().filter(|e| e.ip == entry).count();
        result = result.and(stop.map_err(tfail("stop")));
        result?;
        kassert_eq!(events, 1, "function tracer events");
        kassert_eq!((GRAPH_ENTRIES.load(Relaxed), GRAPH_RETURNS.load(Relaxed)), (1, 1), "graph entry and return");
        kassert_eq!(tramp_count(0), 1, "direct trampoline runs");
        kassert_eq!((ENTRY.hits(), BODY.hits()), (1, 1), "kprobe hits");
        kassert_eq!(PRE_CALLS.load(Relaxed), 2, "both pre handlers");
        kassert_eq!(POST_CALLS.load(Relaxed), 1, "the body probe's post handler");
        kassert_eq!((RET_CALLS.load(Relaxed), RET_VAL.load(Relaxed)), (1, 16), "kretprobe handler and the value it saw");
        kassert_eq!(kpf_target(5, 1), 16, "after everything is off");
        Ok(())
    }
}

// kretprobes.

use crate::kprobes::kretprobe::{self, Kretprobe, KretprobeInstance};

static RET_CALLS: AtomicU64 = AtomicU64::new(0);
static RET_VAL: AtomicU64 = AtomicU64::new(0);
static RET_DATA: AtomicU64 = AtomicU64::new(0);
static RET_ERA: AtomicU64 = AtomicU64::new(0);
static RET_ENTRY_RA: AtomicU64 = AtomicU64::new(0);
static RET_ENTRIES: AtomicU64 = AtomicU64::new(0);

fn reset_ret() {
    for a in [&RET_CALLS, &RET_VAL, &RET_DATA, &RET_ERA, &RET_ENTRY_RA, &RET_ENTRIES] {
        a.store(0, Relaxed);
    }
}

fn entry_record(ri: &mut KretprobeInstance, r: &mut PtRegs) -> bool {
    ri.data[0] = r.regs[4];
    RET_ENTRY_RA.store(r.regs[1], Relaxed);
    RET_ENTRIES.fetch_add(1, Relaxed);
    true
}

fn ret_record(ri: &KretprobeInstance, r: &mut PtRegs) {
    RET_VAL.store(r.regs[4], Relaxed);
    RET_DATA.store(ri.data[0], Relaxed);
    RET_ERA.store(r.era, Relaxed);
    RET_CALLS.fetch_add(1, Relaxed);
}

fn kreg(rp: &'static Kretprobe) -> TestResult {
    kretprobe::register_kretprobe(rp).map_err(|e| TestError::Fail(alloc::format!("register_kretprobe: {e}")))
}

fn kunreg(rp: &'static Kretprobe) -> TestResult {
    kretprobe::unregister_kretprobe(rp).map_err(|e| TestError::Fail(alloc::format!("unregister_kretprobe: {e}")))
}

fn with_kretprobe(rp: &'static Kretprobe, f: impl FnOnce() -> TestResult) -> TestResult {
    kreg(rp)?;
    let r = f();
    kunreg(rp)?;
    r
}

ktest! {
    /// The return handler sees the return value, the entry handler's data and era = the real
    /// return address (the one the entry handler saw in ra); the caller gets the right result.
    fn kprobes::test_kretprobe() {
        static RP: Kretprobe = Kretprobe::new("kprobes_tests::kret_target", Some(entry_record), Some(ret_record), 0);
        reset_ret();
        with_kretprobe(&RP, || {
            kassert!(RP.kprobe().on_ftrace(), "the entry probe rides ftrace");
            kassert_eq!(kret_driver(black_box(7)), 108);
            kassert_eq!(kretprobe::depth(), 0, "instance released");
            Ok(())
        })?;
        kassert_eq!((RET_ENTRIES.load(Relaxed), RET_CALLS.load(Relaxed)), (1, 1));
        kassert_eq!(RET_VAL.load(Relaxed), 107, "return value");
        kassert_eq!(RET_DATA.load(Relaxed), 7, "entry handler's data");
        kassert_eq!(RET_ERA.load(Relaxed), RET_ENTRY_RA.load(Relaxed), "era = the real return address");
        kassert_eq!(crate::ksyms::name(RET_ERA.load(Relaxed)), crate::ksyms::name(addr_of(kret_driver as *const ())), "it is in the caller");
        kassert_eq!(RP.nmissed(), 0);
        kassert_eq!(kret_driver(7), 108, "after unregistering");
        Ok(())
    }
}

ktest! {
    /// Several kretprobes at once (nested functions, and one on a function without a patch
    /// site, whose entry probe is a break); each handler runs once with its function's value.
    fn kprobes::test_kretprobes() {
        static OUTER_V: AtomicU64 = AtomicU64::new(0);
        static INNER_V: AtomicU64 = AtomicU64::new(0);
        static STEP_V: AtomicU64 = AtomicU64::new(0);
        fn outer(_ri: &KretprobeInstance, r: &mut PtRegs) {
            OUTER_V.store(r.regs[4], Relaxed);
        }
        fn inner(_ri: &KretprobeInstance, r: &mut PtRegs) {
            INNER_V.store(r.regs[4], Relaxed);
        }
        fn step(_ri: &KretprobeInstance, r: &mut PtRegs) {
            STEP_V.store(r.regs[4], Relaxed);
        }
        static OUTER: Kretprobe = Kretprobe::new("kprobes_tests::kret_outer", None, Some(outer), 0);
        static INNER: Kretprobe = Kretprobe::new("kprobes_tests::kret_inner", None, Some(inner), 0);
        static STEP: Kretprobe = Kretprobe::new("kp_step", None, Some(step), 0);
        with_kretprobe(&OUTER, || {
            with_kretprobe(&INNER, || {
                with_kretprobe(&STEP, || {
                    kassert!(!STEP.kprobe().on_ftrace(), "kp_step has no site: a break at its entry");
                    kassert_eq!(kret_outer(black_box(4)), 9);
                    kassert_eq!(kp_step(black_box(4)), 19);
                    Ok(())
                })
            })
        })?;
        kassert_eq!((OUTER_V.load(Relaxed), INNER_V.load(Relaxed), STEP_V.load(Relaxed)), (9, 8, 19));
        Ok(())
    }
}

ktest! {
    /// A return handler may change the return value; an entry handler that declines leaves
    /// that call unhooked.
    fn kprobes::kretprobe_changes_return_value() {
        fn seven(_ri: &KretprobeInstance, r: &mut PtRegs) {
            r.regs[4] = 7;
        }
        fn only_odd(_ri: &mut KretprobeInstance, r: &mut PtRegs) -> bool {
            r.regs[4] % 2 == 1
        }
        static RP: Kretprobe = Kretprobe::new("kprobes_tests::kret_target", Some(only_odd), Some(seven), 0);
        with_kretprobe(&RP, || {
            kassert_eq!(kret_target(black_box(1)), 7, "odd: hooked, value replaced");
            kassert_eq!(kret_target(black_box(2)), 102, "even: declined by the entry handler");
            Ok(())
        })
    }
}

ktest! {
    /// More live calls than maxactive: the extra ones run unhooked and count in nmissed.
    fn kprobes::kretprobe_maxactive() {
        fn count(_ri: &KretprobeInstance, _r: &mut PtRegs) {
            RET_CALLS.fetch_add(1, Relaxed);
        }
        static RP: Kretprobe = Kretprobe::new("kprobes_tests::kret_recurse", None, Some(count), 3);
        reset_ret();
        with_kretprobe(&RP, || {
            // 6 nested calls (n = 5 down to 0), at most 3 hooked at once: the outer 3.
            kassert_eq!(kret_recurse(black_box(5)), 5);
            kassert_eq!(RET_CALLS.load(Relaxed), 3, "return handlers");
            kassert_eq!(RP.nmissed(), 3, "missed");
            kassert_eq!(RP.active(), 0, "all returned");
            kassert_eq!(kret_recurse(black_box(2)), 2);
            kassert_eq!(RET_CALLS.load(Relaxed), 6, "three more: the limit is on live calls");
            Ok(())
        })
    }
}

/// The return addresses a frame-pointer walk from here finds, each through the kernel's fix-ups.
fn stack_now() -> alloc::vec::Vec<u64> {
    let mut v = alloc::vec::Vec::new();
    arch::unwind::walk(arch::cpu::frame_pointer(), arch::boot::stack_bounds(arch::cpu::id()), 24, |f| {
        v.push(crate::ksyms::real_return_address(f.ret, f.fp));
        true
    });
    v
}

static STACK_OK: AtomicU64 = AtomicU64::new(0);
static STACK_BAD: AtomicU64 = AtomicU64::new(0);
static INNER_RA: AtomicU64 = AtomicU64::new(0);
static OUTER_RA: AtomicU64 = AtomicU64::new(0);

fn report_stack(stack: &[u64], want: &[u64]) {
    let tramp = arch::rethook::trampoline();
    let pos: alloc::vec::Vec<Option<usize>> = want.iter().map(|w| stack.iter().position(|a| a == w)).collect();
    let in_order = pos.iter().all(|p| p.is_some()) && pos.windows(2).all(|w| w[0] < w[1]);
    if in_order && !stack.contains(&tramp) {
        STACK_OK.fetch_add(1, Relaxed);
    } else {
        STACK_BAD.fetch_add(1, Relaxed);
        crate::println!("    # stack in the return handler (want {want:x?} in order, no {tramp:#x}):");
        for a in stack {
            crate::println!("    #   {a:#018x} {}", crate::ksyms::sym(*a - 4));
        }
    }
}

ktest! {
    /// A backtrace inside a return handler shows the real caller where the trampoline's
    /// address was (Linux's test of the same name).
    fn kprobes::test_stacktrace_on_kretprobe() {
        fn entry(_ri: &mut KretprobeInstance, r: &mut PtRegs) -> bool {
            INNER_RA.store(r.regs[1], Relaxed);
            true
        }
        fn ret(_ri: &KretprobeInstance, _r: &mut PtRegs) {
            report_stack(&stack_now(), &[INNER_RA.load(Relaxed)]);
        }
        static RP: Kretprobe = Kretprobe::new("kprobes_tests::kret_target", Some(entry), Some(ret), 0);
        STACK_OK.store(0, Relaxed);
        STACK_BAD.store(0, Relaxed);
        with_kretprobe(&RP, || {
            kassert_eq!(kret_driver(black_box(1)), 102);
            Ok(())
        })?;
        kassert_eq!((STACK_OK.load(Relaxed), STACK_BAD.load(Relaxed)), (1, 0), "backtrace in the return handler");
        Ok(())
    }
}

ktest! {
    /// In nested kretprobes the inner return handler's backtrace shows both real callers: the
    /// inner function's (in the outer one) and the outer function's, whose own saved return
    /// address is still the trampoline.
    fn kprobes::test_stacktrace_on_nested_kretprobe() {
        fn inner_entry(_ri: &mut KretprobeInstance, r: &mut PtRegs) -> bool {
            INNER_RA.store(r.regs[1], Relaxed);
            true
        }
        fn outer_entry(_ri: &mut KretprobeInstance, r: &mut PtRegs) -> bool {
            OUTER_RA.store(r.regs[1], Relaxed);
            true
        }
        fn inner_ret(_ri: &KretprobeInstance, _r: &mut PtRegs) {
            report_stack(&stack_now(), &[INNER_RA.load(Relaxed), OUTER_RA.load(Relaxed)]);
        }
        static INNER: Kretprobe = Kretprobe::new("kprobes_tests::kret_inner", Some(inner_entry), Some(inner_ret), 0);
        static OUTER: Kretprobe = Kretprobe::new("kprobes_tests::kret_outer", Some(outer_entry), None, 0);
        STACK_OK.store(0, Relaxed);
        STACK_BAD.store(0, Relaxed);
        with_kretprobe(&OUTER, || {
            with_kretprobe(&INNER, || {
                kassert_eq!(kret_outer(black_box(3)), 7);
                Ok(())
            })
        })?;
        kassert_eq!((STACK_OK.load(Relaxed), STACK_BAD.load(Relaxed)), (1, 0), "backtrace in the inner return handler");
        kassert_eq!(crate::ksyms::name(INNER_RA.load(Relaxed)), crate::ksyms::name(addr_of(kret_outer as *const ())));
        Ok(())
    }
}

ktest! {
    /// Probes in a loaded module (far from kernel text): on ftrace at a function's entry, a
    /// break in a body, and a kretprobe; the module cannot be unloaded while they are there.
    fn kprobes::probes_on_a_module_function() {
        fn plus_one(_p: &Kprobe, r: &mut PtRegs) -> bool {
            r.regs[5] += 1;
            false
        }
        static ADD: Kprobe = Kprobe::new("sample_mod:sample_mod_add", 0, Some(plus_one), None);
        static STEP: Kprobe = Kprobe::new("sample_mod:sample_mod_step", 8, Some(pre_record), Some(post_record));
        static RET: Kretprobe = Kretprobe::new("sample_mod:sample_mod_add", None, Some(ret_record), 0);
        let m = super::module_tests::load("sample_mod")?;
        let add_at = m.symbol("sample_mod_add").ok_or_else(|| TestError::Fail("no sample_mod_add".into()))?;
        // SAFETY: sample_mod_add is `extern "C" fn(u64, u64) -> u64`; `m` keeps the module loaded.
        let add: extern "C" fn(u64, u64) -> u64 = unsafe { core::mem::transmute(add_at) };
        kdiag!("sample_mod_add at {add_at:#x}, {} MiB from kernel text", crate::execmem::area::distance_from_kernel_text(add_at) >> 20);
        reset();
        reset_ret();
        let r = (|| {
            reg(&ADD)?;
            reg(&STEP)?;
            kreg(&RET)?;
            kassert!(ADD.on_ftrace() && !STEP.on_ftrace(), "entry on ftrace, body a break");
            kassert_eq!(add(black_box(2), black_box(3)), 6, "b + 1 from the handler");
            kassert_eq!((RET_CALLS.load(Relaxed), RET_VAL.load(Relaxed)), (1, 6), "the kretprobe saw the result");
            let unload = crate::module::unload("sample_mod");
            kassert!(unload.is_err(), "sample_mod unloaded under its probes");
            Ok(())
        })();
        let _ = kretprobe::unregister_kretprobe(&RET);
        let _ = kprobes::unregister_kprobe(&STEP);
        let _ = kprobes::unregister_kprobe(&ADD);
        r?;
        kassert_eq!(add(2, 3), 5, "unprobed");
        drop(m);
        crate::module::unload("sample_mod").map_err(|e| TestError::Fail(alloc::format!("unload: {e}")))?;
        Ok(())
    }
}

ktest! {
    /// A function with a generated (fentry) trampoline attached takes a kprobe on its ftrace
    /// site and a break in its body; the program and the probes each run once per call.
    fn kprobes::probes_on_a_generated_trampolines_target() {
        use crate::ftrace::bpf::{Attach, Func, TraceCtx};
        static PROG_RUNS: AtomicU64 = AtomicU64::new(0);
        extern "C" fn prog(_ctx: &TraceCtx) -> u64 {
            PROG_RUNS.fetch_add(1, Relaxed);
            0
        }
        static ENTRY: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, Some(pre_record), None);
        static BODY: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 8, Some(pre_record), None);
        let entry = addr_of(kpf_target as *const ());
        PROG_RUNS.store(0, Relaxed);
        reset();
        let link = Attach::fentry(Func::at(entry, 2), prog).map_err(tfail("fentry"))?;
        let r = (|| {
            reg(&ENTRY)?;
            let r = reg(&BODY).and_then(|_| {
                kassert_eq!(kpf_target(black_box(5), black_box(1)), 16);
                Ok(())
            });
            let _ = kprobes::unregister_kprobe(&BODY);
            let _ = kprobes::unregister_kprobe(&ENTRY);
            r
        })();
        link.detach().map_err(tfail("detach"))?;
        r?;
        kassert_eq!(PROG_RUNS.load(Relaxed), 1, "fentry program runs");
        kassert_eq!((ENTRY.hits(), BODY.hits(), PRE_CALLS.load(Relaxed)), (1, 1, 2), "probe hits");
        Ok(())
    }
}

ktest! {
    /// `/sys/kernel/debug/kprobes/blacklist` names the blacklisted functions with their ranges;
    /// `list` shows each registered probe as Linux does (`k`/`r`, `[FTRACE]`, `[DISABLED]`).
    fn kprobes::debugfs_blacklist_and_list() {
        use crate::tracefs::File;
        let read = |path: &str| -> Result<alloc::string::String, TestError> {
            let mut out = alloc::string::String::new();
            let f = File::lookup(path).map_err(|e| TestError::Fail(alloc::format!("{path}: {e:?}")))?;
            f.read(&mut out).map_err(|e| TestError::Fail(alloc::format!("reading {path}: {e:?}")))?;
            Ok(out)
        };
        let black = read("/sys/kernel/debug/kprobes/blacklist")?;
        let on_exception = sym("irq::on_exception").or_else(|_| {
            crate::ksyms::table().iter().find(|s| s.name.ends_with("irq::on_exception")).map(|s| s.addr).ok_or(TestError::Fail("no on_exception".into()))
        })?;
        kassert!(black.lines().any(|l| l.starts_with(&alloc::format!("0x{on_exception:016x}-")) && l.ends_with("irq::on_exception")), "the trap path is listed");
        kassert!(black.lines().any(|l| l.ends_with("kprobes::on_break")), "kprobes' own code is listed");
        kassert!(!black.lines().any(|l| l.ends_with("kprobes_tests::kpf_target")), "an ordinary function is not");
        static K: Kprobe = Kprobe::new("kp_step", 4, None, None);
        static F: Kprobe = Kprobe::new("kprobes_tests::kpf_target", 0, None, None);
        static R: Kretprobe = Kretprobe::new("kprobes_tests::kret_target", None, None, 0);
        reg(&K)?;
        let r = reg(&F).and_then(|_| {
            let r = kreg(&R).and_then(|_| {
                kprobes::disable_kprobe(&K).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
                let list = read("/sys/kernel/debug/kprobes/list")?;
                for l in list.lines() {
                    kdiag!("kprobes/list: {l}");
                }
                let line = |p: &Kprobe| list.lines().find(|l| l.starts_with(&alloc::format!("{:016x}  ", p.addr()))).unwrap_or("");
                kassert!(line(&K).contains("  k  ") && line(&K).ends_with("[DISABLED]"), "break probe: {}", line(&K));
                kassert!(line(&F).contains("  k  ") && line(&F).ends_with("[FTRACE]"), "probe on ftrace: {}", line(&F));
                kassert!(line(R.kprobe()).contains("  r  ") && line(R.kprobe()).contains("kret_target+0x0"), "kretprobe: {}", line(R.kprobe()));
                kassert_eq!(list.lines().count(), 3);
                Ok(())
            });
            r.and(kunreg(&R))
        });
        let r = r.and(unreg(&F)).and(unreg(&K));
        r?;
        kassert_eq!(read("/sys/kernel/debug/kprobes/list")?, "", "empty once all are gone");
        kassert!(File::lookup("/sys/kernel/debug/kprobes/blacklist").is_ok_and(|f| !f.writable()), "read-only");
        Ok(())
    }
}
