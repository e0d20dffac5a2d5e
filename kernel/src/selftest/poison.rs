//! Poisoning probes: callbacks, trampolines and graph hooks that, when poisoning is on, write a
//! distinct value into every register their contract lets them clobber before they return.
//!
//! A tracing path that forgets to restore a register passes every test whose probes happen to
//! leave that register alone ("polite" probes). With poisoning on, each probe leaves
//! `0xbad0_0000_0000_00NN` (NN = the register's number, so `a5` = `$r9` reads `...09`) in
//! every caller-saved register (`a0`-`a7`, `t0`-`t8`) and in `ra` where its exit allows, so the
//! missing restore shows up as that value in the traced function's arguments or its caller's
//! return value.
//!
//! One switch ([`set`]) turns poisoning on for every probe at once; the probes read it on each
//! call, so the same probe serves as the polite and the poisoning variant. The self-tests run
//! their checks under both (see [`each_flavour`]).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Nonzero while poisoning is on (read by the assembly below and in the probes of other suites).
#[unsafe(no_mangle)]
pub static LOONGTRACE_POISON: AtomicU64 = AtomicU64::new(0);

/// The poison left in register `$r<n>`.
pub const fn value(n: usize) -> u64 {
    0xbad0_0000_0000_0000 | n as u64
}

/// The poison value of a register, by name, as an assembler literal (must match [`value`]).
macro_rules! poison_value {
    (ra) => { "0xbad0000000000001" };
    (a0) => { "0xbad0000000000004" };
    (a1) => { "0xbad0000000000005" };
    (a2) => { "0xbad0000000000006" };
    (a3) => { "0xbad0000000000007" };
    (a4) => { "0xbad0000000000008" };
    (a5) => { "0xbad0000000000009" };
    (a6) => { "0xbad000000000000a" };
    (a7) => { "0xbad000000000000b" };
    (t0) => { "0xbad000000000000c" };
    (t1) => { "0xbad000000000000d" };
    (t2) => { "0xbad000000000000e" };
    (t3) => { "0xbad000000000000f" };
    (t4) => { "0xbad0000000000010" };
    (t5) => { "0xbad0000000000011" };
    (t6) => { "0xbad0000000000012" };
    (t7) => { "0xbad0000000000013" };
    (t8) => { "0xbad0000000000014" };
}
pub(crate) use poison_value;

/// Assembly that loads each named register with its poison (unconditionally).
macro_rules! poison_regs {
    ($($r:ident),* $(,)?) => {
        concat!($("    li.d    $", stringify!($r), ", ", $crate::selftest::poison::poison_value!($r), "\n",)*)
    };
}
pub(crate) use poison_regs;

/// The exit of a direct trampoline (v6.19 convention: `t0` = parent, `ra` = body): resumes the
/// body with `ra` = parent, after poisoning `t0` and `t2`-`t8` when poisoning is on (`t1` holds
/// the resume address). Uses local label 97. Carries the `.cfi_*` rules for its register moves
/// (the trampoline around it opens and closes the frame description).
macro_rules! direct_tramp_exit {
    () => {
        concat!(
            "    la.pcrel $t2, LOONGTRACE_POISON\n",
            "    ld.d    $t2, $t2, 0\n",
            "    beqz    $t2, 97f\n",
            $crate::selftest::poison::poison_regs!(t2, t3, t4, t5, t6, t7, t8),
            "    move    $t1, $ra\n",
            "    .cfi_register 1, 13\n",
            "    move    $ra, $t0\n",
            "    .cfi_register 12, 1\n",
            $crate::selftest::poison::poison_regs!(t0),
            "    jr      $t1\n",
            "97:\n",
            "    .cfi_restore 1\n",
            "    .cfi_restore 12\n",
            "    move    $t1, $ra\n",
            "    .cfi_register 1, 13\n",
            "    move    $ra, $t0\n",
            "    jr      $t1\n",
        )
    };
}
pub(crate) use direct_tramp_exit;

/// The exit of an old-convention direct trampoline (`t0` = body, `ra` = parent): jumps to the
/// body after poisoning `t1`-`t8` when poisoning is on. Uses local label 97.
macro_rules! legacy_tramp_exit {
    () => {
        concat!(
            "    la.pcrel $t2, LOONGTRACE_POISON\n",
            "    ld.d    $t2, $t2, 0\n",
            "    beqz    $t2, 97f\n",
            $crate::selftest::poison::poison_regs!(t1, t2, t3, t4, t5, t6, t7, t8),
            "97:\n",
            "    jr      $t0\n",
        )
    };
}
pub(crate) use legacy_tramp_exit;

/// The end of a poisoning C-ABI function that returns nothing: returns to `ra`, after
/// poisoning a0-a7, t0-t7 and ra when poisoning is on (t8 then holds the return address).
/// Expects its own stack frame to be gone. Uses local label 96.
macro_rules! c_return_void {
    () => {
        concat!(
            "    la.pcrel $t0, LOONGTRACE_POISON\n",
            "    ld.d    $t0, $t0, 0\n",
            "    beqz    $t0, 96f\n",
            "    move    $t8, $ra\n",
            $crate::selftest::poison::poison_regs!(a0, a1, a2, a3, a4, a5, a6, a7, t0, t1, t2, t3, t4, t5, t6, t7, ra),
            "    jr      $t8\n",
            "96:\n",
            "    jr      $ra\n",
        )
    };
}
pub(crate) use c_return_void;

/// Declares `$wrapper`, a C-ABI function with the given signature that calls `$inner` (an
/// `extern "C"` function with the same signature, returning nothing) and then, when poisoning
/// is on, poisons a0-a7, t0-t7 and ra before returning (see [`c_return_void`]).
///
/// Register contract of the generated code: what `$inner` expects; clobbers every caller-saved
/// register (C ABI); preserves the callee-saved ones through `$inner`.
macro_rules! poisoning_fn {
    ($(#[$m:meta])* $vis:vis fn $wrapper:ident($($arg:ident: $ty:ty),*) => $inner:path) => {
        core::arch::global_asm!(
            concat!(
                "    .text\n",
                "    .global ", stringify!($wrapper), "\n",
                "    .type ", stringify!($wrapper), ", @function\n",
                stringify!($wrapper), ":\n",
                "    addi.d  $sp, $sp, -16\n",
                "    st.d    $ra, $sp, 8\n",
                "    bl      {inner}\n",
                "    ld.d    $ra, $sp, 8\n",
                "    addi.d  $sp, $sp, 16\n",
                $crate::selftest::poison::c_return_void!(),
                "    .size ", stringify!($wrapper), ", . - ", stringify!($wrapper), "\n",
            ),
            inner = sym $inner,
        );
        #[allow(dead_code, improper_ctypes)]
        unsafe extern "C" {
            $(#[$m])*
            $vis safe fn $wrapper($($arg: $ty),*);
        }
    };
}
pub(crate) use poisoning_fn;

/// Polite or poisoning probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Polite,
    Poison,
}

impl Flavour {
    pub const BOTH: [Flavour; 2] = [Flavour::Polite, Flavour::Poison];
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Polite => "polite",
            Flavour::Poison => "poisoning",
        }
    }
}

/// Turns poisoning on or off for every probe.
pub fn set(f: Flavour) {
    LOONGTRACE_POISON.store((f == Flavour::Poison) as u64, Ordering::Release);
}

/// Whether poisoning is on.
pub fn on() -> bool {
    LOONGTRACE_POISON.load(Ordering::Acquire) != 0
}

// The graph hooks wrapped for poisoning: loongtrace_poison_graph_entry(ip, parent, ops, frame)
// calls the real entry hook (from LOONGTRACE_POISON_GRAPH_HOOKS[0]) and returns like
// `c_return_void`; loongtrace_poison_graph_return(saved, sp) calls the real return hook (slot 1)
// and returns its answer in a0, after poisoning a1-a7, t0-t7 and ra when poisoning is on
// (t8 = the return address then). Both clobber t1 before the call.
core::arch::global_asm!(
    concat!(
        r#"
    // Calls the hook in LOONGTRACE_POISON_GRAPH_HOOKS[slot] with the arguments as they are,
    // keeping ra in a 16-byte frame that is gone again afterwards.
    .macro CALL_REAL_HOOK slot
    addi.d  $sp, $sp, -16
    st.d    $ra, $sp, 8
    la.pcrel $t1, LOONGTRACE_POISON_GRAPH_HOOKS
    ld.d    $t1, $t1, \slot * 8
    jirl    $ra, $t1, 0
    ld.d    $ra, $sp, 8
    addi.d  $sp, $sp, 16
    .endm

    .text
    .global loongtrace_poison_graph_entry
    .type loongtrace_poison_graph_entry, @function
loongtrace_poison_graph_entry:
    CALL_REAL_HOOK 0
"#,
        c_return_void!(),
        r#"
    .size loongtrace_poison_graph_entry, . - loongtrace_poison_graph_entry

    .global loongtrace_poison_graph_return
    .type loongtrace_poison_graph_return, @function
loongtrace_poison_graph_return:
    CALL_REAL_HOOK 1
    la.pcrel $t0, LOONGTRACE_POISON
    ld.d    $t0, $t0, 0
    beqz    $t0, 1f
    move    $t8, $ra
"#,
        poison_regs!(a1, a2, a3, a4, a5, a6, a7, t0, t1, t2, t3, t4, t5, t6, t7, ra),
        r#"
    jr      $t8
1:
    jr      $ra
    .size loongtrace_poison_graph_return, . - loongtrace_poison_graph_return
"#
    )
);

/// The real graph hooks the wrappers call.
#[unsafe(no_mangle)]
static LOONGTRACE_POISON_GRAPH_HOOKS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

unsafe extern "C" {
    safe fn loongtrace_poison_graph_entry(ip: u64, parent: u64, ops: *const (), frame: *mut arch::frame::PtRegs);
    safe fn loongtrace_poison_graph_return(saved: *mut [u64; 2], sp: u64) -> u64;
}

/// Runs `f` once per flavour: polite, then poisoning with the graph hooks wrapped. Stops at
/// the first failure, whose message names the flavour.
pub fn each_flavour(mut f: impl FnMut(Flavour) -> crate::selftest::TestResult) -> crate::selftest::TestResult {
    for fl in Flavour::BOTH {
        let r = with_flavour(fl, || f(fl));
        if let Err(crate::selftest::TestError::Fail(m)) = r {
            return Err(crate::selftest::TestError::Fail(alloc::format!("[{} probes] {m}", fl.name())));
        }
        r?;
    }
    Ok(())
}

/// Runs `f` with probes of flavour `fl` (for `Poison`, the graph hooks are wrapped by the
/// poisoning wrappers for the duration), then turns poisoning off again.
pub fn with_flavour<R>(fl: Flavour, f: impl FnOnce() -> R) -> R {
    if fl == Flavour::Poison {
        let (entry, ret) = crate::ftrace::fgraph::hooks();
        LOONGTRACE_POISON_GRAPH_HOOKS[0].store(entry as usize, Ordering::Release);
        LOONGTRACE_POISON_GRAPH_HOOKS[1].store(ret as usize, Ordering::Release);
        arch::ftrace::set_graph_hooks(loongtrace_poison_graph_entry, loongtrace_poison_graph_return);
    }
    set(fl);
    let r = f();
    set(Flavour::Polite);
    if fl == Flavour::Poison {
        let (entry, ret) = crate::ftrace::fgraph::hooks();
        arch::ftrace::set_graph_hooks(entry, ret);
    }
    r
}

/// Turns poisoning off and puts the real graph hooks back (after an abandoned case).
pub fn reset() {
    set(Flavour::Polite);
    let (entry, ret) = crate::ftrace::fgraph::hooks();
    arch::ftrace::set_graph_hooks(entry, ret);
}

/// The register a value is the poison of, if it is one (for messages).
pub fn which(v: u64) -> Option<&'static str> {
    const NAMES: [(usize, &str); 18] = [
        (1, "ra"), (4, "a0"), (5, "a1"), (6, "a2"), (7, "a3"), (8, "a4"), (9, "a5"), (10, "a6"), (11, "a7"),
        (12, "t0"), (13, "t1"), (14, "t2"), (15, "t3"), (16, "t4"), (17, "t5"), (18, "t6"), (19, "t7"), (20, "t8"),
    ];
    NAMES.iter().find(|(n, _)| value(*n) == v).map(|(_, s)| *s)
}
