//! The ftrace assembly (`ftrace_caller`, `ftrace_regs_caller`, `ftrace_common`,
//! `ftrace_common_return`, `ftrace_stub`, `ftrace_stub_direct_tramp`) and the small arch hooks the
//! generic core calls to rewrite patch sites (`init_nop`, `make_call`, `make_nop`, `modify_call`,
//! `update_ftrace_func`).
//!
//! # Patch sites
//!
//! Every traceable function is compiled with two `nop`s before its entry and two at it
//! (`-Zpatchable-function-entry=4,2`, 8-byte aligned):
//!
//! | address  | compiled | disabled      | enabled                     |
//! |----------|----------|---------------|-----------------------------|
//! | `ip - 8` | `nop`    | ops literal   | ops literal (64-bit, data)  |
//! | `ip - 4` | `nop`    | (literal)     | (literal)                   |
//! | `ip`     | `nop`    | `move t0, ra` | `move t0, ra`               |
//! | `ip + 4` | `nop`    | `nop`         | `bl <caller or trampoline>` |
//!
//! `init_site` writes the literal and the first word once at boot; enabling and disabling only
//! ever rewrite the word at `ip + 4` (and the literal, a data word the caller reads). After
//! `move t0, ra; bl X`: `t0` = the parent's return address, `ra` = `ip + 8` (the function body),
//! where `ip` is the function's entry.
//!
//! The literal points to the ops that wants the site (or to a list ops when several do, or to a
//! do-nothing ops); its first word is the function `ftrace_caller` calls for it. So with one ops on
//! a site, `ftrace_caller` reaches that ops' callback without walking any list, however many other
//! ops are registered (Linux's `CALL_OPS` on arm64 and RISC-V).
//!
//! # Register contract of the return paths (v6.19 convention)
//!
//! | exit of `ftrace_common_return` | t0 | ra | jumps to |
//! |---|---|---|---|
//! | normal (`t1` slot = 0) | resume address (`ip + 8` or a redirect) | parent (or the graph return hook) | `t0` |
//! | direct (`t1` slot != 0) | parent (or the graph return hook) | resume address | `t1` |
//!
//! A direct trampoline therefore sees `t0` = parent and `ra` = body whether it is called straight
//! from the site or through `ftrace_regs_caller`, and ends with `move t1, ra; move ra, t0; jr t1`.

use crate::frame::*;
use crate::insn::{self, InsnError};
use crate::patch::{self, PatchError};
use core::sync::atomic::{AtomicPtr, Ordering};

/// Value `ftrace_regs_caller` stores in the (otherwise unused) `$r0` slot of its frame while the
/// frame is live (it is cleared on the way out), so that callbacks can tell a full register frame
/// from the argument-only one of `ftrace_caller`.
/// (12 bits, so that one `ori` makes it, in the trampoline and in every check.)
pub const FULL_REGS_MARK: u64 = 0x7e5;

/// Bytes of patchable space before a function's entry (the ops literal).
pub const SITE_PREFIX: u64 = 8;
/// Offset, in the structure a site literal points to, of the function `ftrace_caller` calls.
pub const SITE_OPS_CALL_OFFSET: usize = 0;

/// The function entry of a `__patchable_function_entries` record (which names the first prefix
/// `nop`); Linux calls this `ftrace_call_adjust`.
#[inline]
pub const fn site_ip(record: u64) -> u64 {
    record + SITE_PREFIX
}

/// The ops pointer handed to the function patched into `ftrace_call` (third argument).
#[unsafe(no_mangle)]
static LOONGTRACE_FUNCTION_TRACE_OP: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

// ftrace_caller (the fast path: arguments only, per-site ops)
//   in:   t0 = parent return address, ra = traced function body (ip + 8), a0-a7 = its arguments,
//         sp = the traced function's caller's sp.
//   does: pushes a PtRegs-shaped frame of PT_SIZE bytes holding only PT_RA = parent,
//         PT_ERA = body and a0-a7; loads the site's ops literal (at ip - 8 = ra - 16) and calls
//         the function in its first word with a0 = ip, a1 = parent, a2 = ops, a3 = frame;
//         restores a0-a7 from the frame and resumes at PT_ERA with ra = PT_RA.
//   clobbers: t0, t1 and whatever the callback clobbers of the temporaries; fp and the other
//         callee-saved registers are preserved by the callback itself (C ABI), so they are not
//         saved here. 29 instructions besides the callback.
//
// ftrace_caller_smp: ftrace_caller plus TRACING_ENTER/TRACING_EXIT around it (used when more
//   than one CPU runs; also clobbers t2). The full path and return_to_handler count once
//   `enable_regs_counting` ran (at boot, when other CPUs start).
//
// ftrace_regs_caller (the full path)
//   in:   as ftrace_caller.
//   does: pushes a full PtRegs frame: PT_RA = parent, PT_ERA = body, all GPRs (tp, r21, t0,
//         t2-t8, s0-s8, a0-a7, fp), PT_SP = sp at entry, PT_T1 = 0 (direct-call slot),
//         PT_R0 = FULL_REGS_MARK. Then continues in ftrace_common.
//
// ftrace_common (the rest of the full path)
//   in:   the frame of ftrace_regs_caller at sp.
//   does: builds two frame records inside the frame so that a backtrace from a callback shows
//         the traced function and then its parent; calls the word at `ftrace_call` with
//         a0 = ip, a1 = parent, a2 = LOONGTRACE_FUNCTION_TRACE_OP, a3 = frame, and falls
//         through to ftrace_common_return. (The function-graph tracer is an ordinary ops whose
//         callback replaces PT_RA, as with Linux's DYNAMIC_FTRACE_WITH_ARGS: there is no
//         separate graph call slot.)
//
// ftrace_common_return
//   in:   sp = the frame (callbacks may have changed PT_A0-A7, PT_RA, PT_ERA, PT_T1).
//   does: restores a0-a7 and fp, clears the PT_R0 mark, pops the frame and leaves as in the
//         table in the module docs.
//   clobbers: t0, t1 (and ra, which it sets); every other register is as the traced function's
//         caller left it, so the traced function sees its real arguments.
//
// ftrace_graph_func (the callback of the function-graph tracer's site ops)
//   in:   a0 = ip, a1 = parent, a2 = ops, a3 = frame, as any ops callback.
//   does: tail-calls the graph entry hook (LOONGTRACE_GRAPH_ENTRY_HOOK) with them, which may
//         replace the frame's PT_RA slot with `return_to_handler`.
//   clobbers: t1, and whatever the hook clobbers (as any callback).
//
// return_to_handler (where a hooked function returns instead of to its parent)
//   in:   a0/a1 = the function's return values, sp = the sp the function was entered with.
//   does: saves a0, a1 and fp in a 32-byte frame, calls the graph return hook with a0 = that
//         frame (a0 and a1 at offsets 0 and 8) and a1 = the sp at return; the hook answers with
//         the real return address. Restores a0, a1, fp and jumps to it with ra = that address.
//   clobbers: t0-t8 (the function has returned; its caller expects them clobbered anyway).
//
// Unwind information: every routine above carries `.cfi_*` directives (docs/debugging.md). The
// frame a caller or trampoline returns to is the traced function at its body, whose return
// address is the parent: `ra` (the DWARF return column) is described as the body, `t0` as the
// parent. return_to_handler's return address is on the shadow stack, which DWARF cannot name
// (`.cfi_undefined ra`); the gdb helper (tools/gdb/loongtrace.py) takes it from there.
//
// ftrace_stub: `jr ra`, the do-nothing callback.
// ftrace_stub_direct_tramp: the do-nothing direct trampoline (t0 = parent, ra = body on entry;
//   resumes the body with ra = parent; clobbers t1).
core::arch::global_asm!(
    r#"
    // TRACING_ENTER / TRACING_EXIT: count this CPU's tracing calls in its per-CPU area (r21),
    // so another CPU can wait until calls in flight are over (kernel `ftrace::quiesce`).
    // ENTER clobbers t1; EXIT clobbers the two scratch registers it is given.
    .macro TRACING_ENTER
    ld.d    $t1, $r21, {depth}
    addi.d  $t1, $t1, 1
    st.d    $t1, $r21, {depth}
    dbar    0
    .endm
    .macro TRACING_EXIT s1, s2
    dbar    0
    ld.d    \s1, $r21, {depth}
    addi.d  \s1, \s1, -1
    st.d    \s1, $r21, {depth}
    bnez    \s1, 99f
    ld.d    \s2, $r21, {exits}
    addi.d  \s2, \s2, 1
    st.d    \s2, $r21, {exits}
99:
    .endm

    // The full path counts calls in flight only once other CPUs run (enable_regs_counting
    // turns each `b` at a loongtrace_regs_count_* label into a `nop`), as ftrace_caller_smp does.
    .macro FTRACE_REGS_ENTRY
    .global loongtrace_regs_count_enter
loongtrace_regs_count_enter:
    b       77f
    TRACING_ENTER
77:
    addi.d  $sp, $sp, -{size}
    .cfi_adjust_cfa_offset {size}
    st.d    $t0, $sp, {ra}
    .cfi_rel_offset 12, {ra}
    st.d    $a0, $sp, {a0} + 0
    st.d    $a1, $sp, {a0} + 8
    st.d    $a2, $sp, {a0} + 16
    st.d    $a3, $sp, {a0} + 24
    st.d    $a4, $sp, {a0} + 32
    st.d    $a5, $sp, {a0} + 40
    st.d    $a6, $sp, {a0} + 48
    st.d    $a7, $sp, {a0} + 56
    st.d    $fp, $sp, {fp}
    .cfi_rel_offset 22, {fp}
    st.d    $tp, $sp, {tp}
    st.d    $t0, $sp, {t0}
    .irp n, 14,15,16,17,18,19,20,21,23,24,25,26,27,28,29,30,31
    st.d    $r\n, $sp, \n * 8
    .endr
    ori     $t1, $zero, {full}
    st.d    $t1, $sp, {r0}
    st.d    $ra, $sp, {era}
    .cfi_rel_offset 1, {era}
    st.d    $zero, $sp, {t1}
    addi.d  $t1, $sp, {size}
    st.d    $t1, $sp, {sp}
    .endm

    // Unwind information for a routine entered by a branch with sp = the full frame pushed by
    // ftrace_regs_caller: the traced function's caller's sp is sp + size, the body (where the
    // frame resumes) is in the era slot, the parent (the traced function's t0) in the ra slot.
    .macro CFI_IN_FULL_FRAME
    .cfi_def_cfa_offset {size}
    .cfi_rel_offset 12, {ra}
    .cfi_rel_offset 1, {era}
    .cfi_rel_offset 22, {fp}
    .endm

    .text
    .balign 4
    .global loongtrace_ftrace_text_start
loongtrace_ftrace_text_start:
    .global ftrace_stub
    .type ftrace_stub, @function
ftrace_stub:
    .cfi_startproc
    jr      $ra
    .cfi_endproc
    .size ftrace_stub, . - ftrace_stub

    // The argument-only caller; `counted` adds TRACING_ENTER/TRACING_EXIT (ftrace_caller_smp).
    .macro FTRACE_ARGS_CALLER name, counted
    .global \name
    .type \name, @function
\name:
    .cfi_startproc
    .if \counted
    TRACING_ENTER
    .endif
    addi.d  $sp, $sp, -{size}
    .cfi_adjust_cfa_offset {size}
    st.d    $t0, $sp, {ra}
    .cfi_rel_offset 12, {ra}
    st.d    $ra, $sp, {era}
    .cfi_rel_offset 1, {era}
    .irp n, 0,1,2,3,4,5,6,7
    st.d    $a\n, $sp, {a0} + \n * 8
    .endr
    ld.d    $a2, $ra, -16
    ld.d    $t1, $a2, {ops_call}
    addi.d  $a0, $ra, -8
    move    $a1, $t0
    move    $a3, $sp
    jirl    $ra, $t1, 0
    .irp n, 0,1,2,3,4,5,6,7
    ld.d    $a\n, $sp, {a0} + \n * 8
    .endr
    ld.d    $ra, $sp, {ra}
    ld.d    $t0, $sp, {era}
    .cfi_register 1, 12
    .cfi_register 12, 1
    addi.d  $sp, $sp, {size}
    .cfi_adjust_cfa_offset -{size}
    .if \counted
    TRACING_EXIT $t1, $t2
    .endif
    jr      $t0
    .cfi_endproc
    .size \name, . - \name
    .endm

    FTRACE_ARGS_CALLER ftrace_caller, 0
    FTRACE_ARGS_CALLER ftrace_caller_smp, 1

    .global ftrace_regs_caller
    .type ftrace_regs_caller, @function
ftrace_regs_caller:
    .cfi_startproc
    FTRACE_REGS_ENTRY
    b       ftrace_common
    .cfi_endproc
    .size ftrace_regs_caller, . - ftrace_regs_caller

    .global ftrace_common
    .type ftrace_common, @function
ftrace_common:
    .cfi_startproc
    CFI_IN_FULL_FRAME
    st.d    $fp, $sp, {crmd}
    st.d    $t0, $sp, {prmd}
    addi.d  $t1, $sp, {prmd} + 8
    st.d    $t1, $sp, {orig_a0}
    addi.d  $fp, $sp, {era} + 8
    addi.d  $a0, $ra, -8
    move    $a1, $t0
    la.pcrel $t1, LOONGTRACE_FUNCTION_TRACE_OP
    ld.d    $a2, $t1, 0
    move    $a3, $sp
    .global ftrace_call
ftrace_call:
    bl      ftrace_stub
    .global ftrace_common_return
ftrace_common_return:
    ld.d    $a0, $sp, {a0} + 0
    ld.d    $a1, $sp, {a0} + 8
    ld.d    $a2, $sp, {a0} + 16
    ld.d    $a3, $sp, {a0} + 24
    ld.d    $a4, $sp, {a0} + 32
    ld.d    $a5, $sp, {a0} + 40
    ld.d    $a6, $sp, {a0} + 48
    ld.d    $a7, $sp, {a0} + 56
    ld.d    $fp, $sp, {fp}
    st.d    $zero, $sp, {r0}
    ld.d    $t1, $sp, {t1}
    .cfi_remember_state
    bnez    $t1, 1f
    ld.d    $ra, $sp, {ra}
    ld.d    $t0, $sp, {era}
    .cfi_register 1, 12
    .cfi_register 12, 1
    addi.d  $sp, $sp, {size}
    .cfi_adjust_cfa_offset -{size}
    .global loongtrace_regs_count_exit
loongtrace_regs_count_exit:
    b       78f
    TRACING_EXIT $t2, $t3
78:
    jr      $t0
1:
    .cfi_restore_state
    ld.d    $t0, $sp, {ra}
    ld.d    $ra, $sp, {era}
    .cfi_restore 1
    .cfi_restore 12
    addi.d  $sp, $sp, {size}
    .cfi_adjust_cfa_offset -{size}
    .global loongtrace_regs_count_exit_direct
loongtrace_regs_count_exit_direct:
    b       79f
    TRACING_EXIT $t2, $t3
79:
    jr      $t1
    .cfi_endproc
    .size ftrace_common, . - ftrace_common

    .global ftrace_graph_func
    .type ftrace_graph_func, @function
ftrace_graph_func:
    .cfi_startproc
    la.pcrel $t1, LOONGTRACE_GRAPH_ENTRY_HOOK
    ld.d    $t1, $t1, 0
    jr      $t1
    .cfi_endproc
    .size ftrace_graph_func, . - ftrace_graph_func

    .global return_to_handler
    .type return_to_handler, @function
return_to_handler:
    .cfi_startproc
    .cfi_undefined 1
    .global loongtrace_rth_count_enter
loongtrace_rth_count_enter:
    b       75f
    TRACING_ENTER
75:
    addi.d  $sp, $sp, -32
    .cfi_adjust_cfa_offset 32
    st.d    $a0, $sp, 0
    st.d    $a1, $sp, 8
    st.d    $fp, $sp, 16
    .cfi_rel_offset 22, 16
    move    $a0, $sp
    addi.d  $a1, $sp, 32
    la.pcrel $t1, LOONGTRACE_GRAPH_RETURN_HOOK
    ld.d    $t1, $t1, 0
    jirl    $ra, $t1, 0
    move    $ra, $a0
    ld.d    $a0, $sp, 0
    ld.d    $a1, $sp, 8
    ld.d    $fp, $sp, 16
    .cfi_restore 22
    addi.d  $sp, $sp, 32
    .cfi_adjust_cfa_offset -32
    .global loongtrace_rth_count_exit
loongtrace_rth_count_exit:
    b       76f
    TRACING_EXIT $t1, $t2
76:
    jr      $ra
    .cfi_endproc
    .size return_to_handler, . - return_to_handler

    .global ftrace_stub_direct_tramp
    .type ftrace_stub_direct_tramp, @function
ftrace_stub_direct_tramp:
    .cfi_startproc
    move    $t1, $ra
    .cfi_register 1, 13
    move    $ra, $t0
    jr      $t1
    .cfi_endproc
    .size ftrace_stub_direct_tramp, . - ftrace_stub_direct_tramp
    .global loongtrace_ftrace_text_end
loongtrace_ftrace_text_end:
"#,
    size = const PT_SIZE,
    ra = const PT_RA,
    tp = const PT_TP,
    sp = const PT_SP,
    a0 = const PT_A0,
    t0 = const PT_T0,
    t1 = const PT_T1,
    fp = const PT_FP,
    r0 = const PT_R0,
    orig_a0 = const PT_ORIG_A0,
    era = const PT_ERA,
    crmd = const PT_CRMD,
    prmd = const PT_PRMD,
    full = const FULL_REGS_MARK,
    ops_call = const SITE_OPS_CALL_OFFSET,
    depth = const crate::boot::PERCPU_TRACING_DEPTH,
    exits = const crate::boot::PERCPU_TRACING_EXITS,
);

/// The graph entry hook `ftrace_graph_func` calls: a [`GraphEntryHook`].
#[unsafe(no_mangle)]
static LOONGTRACE_GRAPH_ENTRY_HOOK: AtomicPtr<()> = AtomicPtr::new(ftrace_stub as *mut ());
/// The graph return hook: `fn(saved: *mut [u64; 2], sp: u64) -> u64` (the real return address).
#[unsafe(no_mangle)]
static LOONGTRACE_GRAPH_RETURN_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// The graph tracer's entry hook, called through `ftrace_graph_func` like an ops callback
/// (`fn(ip, parent, ops, frame)`); it may replace the frame's return-address slot.
pub type GraphEntryHook = extern "C" fn(ip: u64, parent: u64, ops: *const (), frame: *mut PtRegs);
/// The graph tracer's return hook, called from `return_to_handler`; returns where to go.
pub type GraphReturnHook = extern "C" fn(saved: *mut [u64; 2], sp: u64) -> u64;

/// Installs the kernel's graph hooks (before any return address is replaced by
/// `return_to_handler`; tests may wrap them later).
pub fn set_graph_hooks(entry: GraphEntryHook, ret: GraphReturnHook) {
    LOONGTRACE_GRAPH_RETURN_HOOK.store(ret as *mut (), Ordering::Release);
    LOONGTRACE_GRAPH_ENTRY_HOOK.store(entry as *mut (), Ordering::Release);
}

/// Replaces the graph hooks `old` by `new`, unless other hooks are installed (a test's wrappers,
/// which keep calling the pair they wrapped). Returns whether it did. The entry and return hook
/// change one after the other: every pair the kernel installs works with any other.
pub fn replace_graph_hooks(old: (GraphEntryHook, GraphReturnHook), new: (GraphEntryHook, GraphReturnHook)) -> bool {
    let swap = |hook: &AtomicPtr<()>, old: *mut (), new: *mut ()| hook.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok();
    if !swap(&LOONGTRACE_GRAPH_ENTRY_HOOK, old.0 as *mut (), new.0 as *mut ()) {
        return false;
    }
    swap(&LOONGTRACE_GRAPH_RETURN_HOOK, old.1 as *mut (), new.1 as *mut ());
    true
}

/// The frame pointer a traced function was entered with, for a callback running on `frame`,
/// the live frame of the trampoline that started the callback chain.
///
/// The function a trampoline calls (the ops callback, or a list function calling it) keeps a
/// frame record like every function built with frame pointers: the caller's fp at its entry
/// sp minus 16, and its entry sp is `frame`. `ftrace_caller` calls with fp untouched, the traced
/// function's; `ftrace_common` calls with fp at its frame's fake record (`PT_ERA + 8`) and keeps
/// the real one in the `PT_FP` slot. (The record must be written before the read: LLVM's
/// LoongArch backend stores it in the prologue, it does not shrink-wrap it.)
///
/// # Safety
/// The caller runs in the callback chain of the trampoline that pushed `frame` (so the word at
/// `frame - 16` is the record of a function that has not returned).
#[inline(always)]
pub unsafe fn traced_entry_fp(frame: &PtRegs) -> u64 {
    let at = frame as *const PtRegs as u64;
    // SAFETY: the record sits on this stack right below the frame, written by the prologue of
    // a function still running (the caller's contract).
    let saved = unsafe { core::ptr::read_volatile((at - 16) as *const u64) };
    if saved != at + crate::frame::PT_ERA as u64 + 8 {
        return saved;
    }
    frame.regs[22]
}

/// Whether `addr` lies inside the assembly above (any of the trampolines).
#[inline]
pub fn in_trampolines(addr: u64) -> bool {
    let start = core::ptr::addr_of!(loongtrace_ftrace_text_start) as u64;
    let end = core::ptr::addr_of!(loongtrace_ftrace_text_end) as u64;
    (start..end).contains(&addr)
}

unsafe extern "C" {
    static loongtrace_regs_count_enter: u32;
    static loongtrace_regs_count_exit: u32;
    static loongtrace_regs_count_exit_direct: u32;
    static loongtrace_rth_count_enter: u32;
    static loongtrace_rth_count_exit: u32;
    fn ftrace_caller_smp();
    static loongtrace_ftrace_text_start: u8;
    static loongtrace_ftrace_text_end: u8;
    fn return_to_handler();
    fn ftrace_graph_func();
    fn ftrace_stub();
    fn ftrace_caller();
    fn ftrace_regs_caller();
    fn ftrace_common();
    fn ftrace_stub_direct_tramp();
    static ftrace_call: u32;
    static ftrace_common_return: u32;
}

/// Addresses of the assembly entry points.
pub mod addr {
    macro_rules! fn_addr {
        ($($(#[$m:meta])* $name:ident => $sym:ident;)*) => {$(
            $(#[$m])*
            #[inline]
            pub fn $name() -> u64 {
                super::$sym as *const () as u64
            }
        )*};
    }
    fn_addr! {
        /// `ftrace_caller`: the argument-saving entry (one CPU).
        caller => ftrace_caller;
        /// `ftrace_caller_smp`: the same, counting calls in flight for other CPUs to wait on.
        caller_smp => ftrace_caller_smp;
        /// `ftrace_regs_caller`: the full-register entry.
        regs_caller => ftrace_regs_caller;
        /// `ftrace_common`.
        common => ftrace_common;
        /// `ftrace_stub`: returns at once.
        stub => ftrace_stub;
        /// `ftrace_stub_direct_tramp`: the no-op direct trampoline.
        stub_direct_tramp => ftrace_stub_direct_tramp;
        /// `return_to_handler`: where hooked functions return.
        return_to_handler => return_to_handler;
        /// `ftrace_graph_func`: the callback of the graph tracer's site ops.
        graph_func => ftrace_graph_func;
    }
    /// The patchable `bl` inside `ftrace_common` that calls the tracer function.
    #[inline]
    pub fn ftrace_call() -> u64 {
        core::ptr::addr_of!(super::ftrace_call) as u64
    }
    /// `ftrace_common_return`.
    #[inline]
    pub fn common_return() -> u64 {
        core::ptr::addr_of!(super::ftrace_common_return) as u64
    }
}

/// Makes `ftrace_regs_caller`/`ftrace_common_return` and `return_to_handler` count the calls in
/// flight (`tracing_depth`, `tracing_exits`) for other CPUs to wait on: the five `b` words that
/// skip the counting become `nop`s. Called once, when other CPUs start and before anything is
/// traced (so no call is between a counted and an uncounted half; the caller then makes every
/// CPU see the words it returns). Idempotent.
pub fn enable_regs_counting() -> Result<[u64; 5], FtraceArchError> {
    let words = [
        core::ptr::addr_of!(loongtrace_regs_count_enter) as u64,
        core::ptr::addr_of!(loongtrace_regs_count_exit) as u64,
        core::ptr::addr_of!(loongtrace_regs_count_exit_direct) as u64,
        core::ptr::addr_of!(loongtrace_rth_count_enter) as u64,
        core::ptr::addr_of!(loongtrace_rth_count_exit) as u64,
    ];
    for at in words {
        let w = patch::read_insn(at)?;
        if w == insn::NOP {
            continue;
        }
        if w & 0xfc00_0000 != 0x5000_0000 {
            return Err(PatchError::Mismatch { addr: at, expected: 0x5000_0000, found: w }.into());
        }
        patch::patch_insn(at, w, insn::NOP)?;
    }
    Ok(words)
}

/// Whether the full path counts calls in flight (see [`enable_regs_counting`]).
pub fn regs_counting() -> bool {
    patch::read_insn(core::ptr::addr_of!(loongtrace_regs_count_enter) as u64) == Ok(insn::NOP)
}

/// Sets the ops pointer passed as the third argument of the `ftrace_call` function.
#[inline]
pub fn set_function_trace_op(op: *const ()) {
    LOONGTRACE_FUNCTION_TRACE_OP.store(op as *mut (), Ordering::Release);
}

/// Why an arch hook refused to patch. Nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtraceArchError {
    /// The branch cannot be encoded (target misaligned or beyond ±128 MiB).
    Insn(InsnError),
    /// The text is not what was expected, or the address is not kernel text.
    Patch(PatchError),
}

impl core::fmt::Display for FtraceArchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FtraceArchError::Insn(e) => write!(f, "{e}"),
            FtraceArchError::Patch(e) => write!(f, "{e}"),
        }
    }
}

impl From<InsnError> for FtraceArchError {
    fn from(e: InsnError) -> Self {
        FtraceArchError::Insn(e)
    }
}
impl From<PatchError> for FtraceArchError {
    fn from(e: PatchError) -> Self {
        FtraceArchError::Patch(e)
    }
}

/// The word at the call slot (`ip + 4`) of a site calling `target` (`nop` when `None`).
pub fn call_word(ip: u64, target: Option<u64>) -> Result<u32, InsnError> {
    match target {
        Some(t) => insn::encode_bl(ip + 4, t),
        None => Ok(insn::NOP),
    }
}

/// `move t0, ra`, the first word of every initialised site.
pub const SITE_MOVE: u32 = insn::encode_move(insn::Reg::T0, insn::Reg::Ra);

fn literal(ip: u64) -> Result<&'static core::sync::atomic::AtomicU64, FtraceArchError> {
    let at = ip.wrapping_sub(SITE_PREFIX);
    if at & 7 != 0 || !patch::is_text(at) || !patch::is_text(at + 4) {
        return Err(PatchError::BadAddress(at).into());
    }
    // SAFETY: `at` is 8-byte aligned kernel text (checked above), mapped read-write for the
    // kernel's whole life; the two prefix words are never executed.
    Ok(unsafe { core::sync::atomic::AtomicU64::from_ptr(at as *mut u64) })
}

/// Boot-time initialisation of the site at `ip` (Linux's `ftrace_init_nop`): checks that the two
/// prefix words and the call slot are still the compiler's `nop`s, stores `ops` in the literal,
/// and turns the first entry word into `move t0, ra`.
#[unsafe(link_section = ".text.patcher")]
pub fn init_site(ip: u64, ops: u64) -> Result<(), FtraceArchError> {
    for at in [ip - 8, ip - 4, ip + 4] {
        let found = patch::read_insn(at)?;
        if found != insn::NOP {
            return Err(PatchError::Mismatch { addr: at, expected: insn::NOP, found }.into());
        }
    }
    literal(ip)?.store(ops, Ordering::Release);
    patch::patch_insn(ip, insn::NOP, SITE_MOVE)?;
    Ok(())
}

/// Points the site's ops literal at `ops` (one aligned 64-bit store; `ftrace_caller` reads it
/// with one load, so it sees the old or the new pointer). Followed by a full barrier so the
/// literal is visible before a later patch of the call slot.
pub fn set_site_ops(ip: u64, ops: u64) -> Result<(), FtraceArchError> {
    literal(ip)?.store(ops, Ordering::Release);
    crate::cpu::dbar();
    Ok(())
}

/// [`set_site_ops`] for a site the caller knows is valid (the ftrace core's own sites).
///
/// # Safety
/// `ip` must be the entry of a site [`init_site`] accepted, whose text is still mapped.
#[inline]
#[unsafe(link_section = ".text.patcher")]
pub unsafe fn set_site_ops_unchecked(ip: u64, ops: u64) {
    // SAFETY: per the contract the literal at ip - 8 is aligned and mapped.
    unsafe { core::sync::atomic::AtomicU64::from_ptr((ip - SITE_PREFIX) as *mut u64).store(ops, Ordering::Release) };
    crate::cpu::dbar();
}

/// The site's ops literal, read without checking `ip` (for the hot path).
///
/// # Safety
/// `ip` must be the entry of a patch site (so `ip - 8` is its aligned, mapped literal).
#[inline(always)]
pub unsafe fn site_literal_unchecked(ip: u64) -> u64 {
    // SAFETY: per the contract; the literal is only ever written with single aligned stores.
    unsafe { core::sync::atomic::AtomicU64::from_ptr((ip - SITE_PREFIX) as *mut u64).load(Ordering::Acquire) }
}

/// The site's ops literal.
pub fn site_ops(ip: u64) -> Result<u64, FtraceArchError> {
    Ok(literal(ip)?.load(Ordering::Acquire))
}

/// Rewrites the call slot of the site at `ip` from calling `old` to calling `new` (`None` =
/// `nop`), validating the old word first. Covers Linux's `ftrace_make_call` (None → Some),
/// `ftrace_make_nop` (Some → None) and `ftrace_modify_call` (Some → Some).
pub fn modify_call(ip: u64, old: Option<u64>, new: Option<u64>) -> Result<(), FtraceArchError> {
    let old_w = call_word(ip, old)?;
    let new_w = call_word(ip, new)?;
    patch::patch_insn(ip + 4, old_w, new_w)?;
    Ok(())
}

/// Enables the site at `ip`: `nop` → `bl target`.
pub fn make_call(ip: u64, target: u64) -> Result<(), FtraceArchError> {
    modify_call(ip, None, Some(target))
}

/// Disables the site at `ip`: `bl target` → `nop`.
pub fn make_nop(ip: u64, target: u64) -> Result<(), FtraceArchError> {
    modify_call(ip, Some(target), None)
}

/// Points the `bl` at `ftrace_call` from `old` to `new` (both function addresses).
pub fn update_ftrace_func(old: u64, new: u64) -> Result<(), FtraceArchError> {
    let pc = addr::ftrace_call();
    patch::patch_insn(pc, insn::encode_bl(pc, old)?, insn::encode_bl(pc, new)?)?;
    Ok(())
}
