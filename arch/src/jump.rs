//! Recovery points for the self-test harness: call a function so that a later failure (panic or
//! exception) can return straight to the caller.

/// Callee-saved state: ra, sp, fp, s0-s8, tp, r21.
#[repr(C)]
#[derive(Default)]
pub struct JumpContext {
    regs: [u64; 14],
}

// `loongtrace_call_recoverable(ctx: a0, f: a1, arg: a2) -> a0`
//   Saves ra, sp, fp, s0-s8, tp, r21 into *ctx, then calls f(arg) (a0 = arg). Returns 0 when f
//   returns normally. Clobbers what a call clobbers.
// `loongtrace_jump_back(ctx: a0, value: a1) -> !`
//   Restores the registers saved in *ctx and returns `value` (nonzero) from the
//   `loongtrace_call_recoverable` that saved them. Must be called on the same CPU, from a stack
//   frame that is deeper than the saved one, in normal (not exception) mode.
// `loongtrace_call_recoverable` carries unwind information (`.cfi_*`), so a debugger's backtrace
// from inside a self-test continues into the harness.
core::arch::global_asm!(
    r#"
    .text
    .global loongtrace_call_recoverable
    .type loongtrace_call_recoverable, @function
loongtrace_call_recoverable:
    .cfi_startproc
    st.d    $ra, $a0, 0
    st.d    $sp, $a0, 8
    st.d    $fp, $a0, 16
    st.d    $s0, $a0, 24
    st.d    $s1, $a0, 32
    st.d    $s2, $a0, 40
    st.d    $s3, $a0, 48
    st.d    $s4, $a0, 56
    st.d    $s5, $a0, 64
    st.d    $s6, $a0, 72
    st.d    $s7, $a0, 80
    st.d    $s8, $a0, 88
    st.d    $tp, $a0, 96
    st.d    $r21, $a0, 104
    addi.d  $sp, $sp, -16
    .cfi_adjust_cfa_offset 16
    st.d    $ra, $sp, 8
    .cfi_rel_offset 1, 8
    st.d    $fp, $sp, 0
    .cfi_rel_offset 22, 0
    addi.d  $fp, $sp, 16
    move    $a0, $a2
    jirl    $ra, $a1, 0
    ld.d    $ra, $sp, 8
    .cfi_restore 1
    ld.d    $fp, $sp, 0
    .cfi_restore 22
    addi.d  $sp, $sp, 16
    .cfi_adjust_cfa_offset -16
    move    $a0, $zero
    jr      $ra
    .cfi_endproc
    .size loongtrace_call_recoverable, . - loongtrace_call_recoverable

    .global loongtrace_jump_back
    .type loongtrace_jump_back, @function
loongtrace_jump_back:
    ld.d    $ra, $a0, 0
    ld.d    $sp, $a0, 8
    ld.d    $fp, $a0, 16
    ld.d    $s0, $a0, 24
    ld.d    $s1, $a0, 32
    ld.d    $s2, $a0, 40
    ld.d    $s3, $a0, 48
    ld.d    $s4, $a0, 56
    ld.d    $s5, $a0, 64
    ld.d    $s6, $a0, 72
    ld.d    $s7, $a0, 80
    ld.d    $s8, $a0, 88
    ld.d    $tp, $a0, 96
    ld.d    $r21, $a0, 104
    move    $a0, $a1
    jr      $ra
    .size loongtrace_jump_back, . - loongtrace_jump_back
"#
);

unsafe extern "C" {
    fn loongtrace_call_recoverable(ctx: *mut JumpContext, f: extern "C" fn(*mut u8), arg: *mut u8) -> u64;
    fn loongtrace_jump_back(ctx: *const JumpContext, value: u64) -> !;
}

/// Calls `f(arg)`; returns 0 when it returns, or the value given to [`jump_back`].
///
/// # Safety
/// `ctx` must stay valid until this call returns, and nothing `f` owns on the stack may need
/// dropping if [`jump_back`] abandons its frames.
pub unsafe fn call_recoverable(ctx: *mut JumpContext, f: extern "C" fn(*mut u8), arg: *mut u8) -> u64 {
    // SAFETY: forwarded from this function's contract; the asm follows the C ABI.
    unsafe { loongtrace_call_recoverable(ctx, f, arg) }
}

/// Abandons the current call chain and returns `value` from the `call_recoverable` that set `ctx`.
///
/// # Safety
/// `ctx` must belong to a `call_recoverable` that is still running on this CPU, and the caller
/// must be in normal mode (not inside an exception handler). `value` must be nonzero.
pub unsafe fn jump_back(ctx: *const JumpContext, value: u64) -> ! {
    // SAFETY: forwarded from this function's contract.
    unsafe { loongtrace_jump_back(ctx, value) }
}

/// Address of the asm routine that, entered with `a0 = ctx`, jumps back (used to leave an
/// exception handler through `ertn` into normal mode first).
pub fn jump_back_entry() -> u64 {
    loongtrace_jump_back as *const () as u64
}
