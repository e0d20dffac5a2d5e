//! `kretprobe_trampoline`: where a function whose return a kretprobe hooked returns instead of
//! to its caller (Linux's `arch_rethook_trampoline`).
//!
//! The kernel's kretprobe entry handler replaces the function's return address (`ra` at entry)
//! with this trampoline's address and remembers the real one. When the function returns here,
//! the trampoline saves every register in a [`PtRegs`] frame, calls the installed hook with it
//! (the hook sets `era` to the real return address and runs the return handlers, which may
//! change the return values `a0`/`a1` and `era`) and resumes at `era` with `ra` = `era`, exactly
//! as if the function had returned there.
//!
//! The frame is also a frame record: `fp` points just above it, where `fp - 8` holds the
//! trampoline's own address and `fp - 16` the caller's `fp`. So a backtrace taken in a return
//! handler walks through it, and the kernel's return-address fix-up turns the trampoline's
//! address (found at `fp`, the function's stack pointer at entry) back into the real caller.

use crate::frame::*;
use core::sync::atomic::{AtomicPtr, Ordering};

// kretprobe_trampoline
//   in:   a0/a1 = the returning function's return values, sp = the sp it was entered with (and
//         left with), fp = its caller's fp, every other register as the function left it.
//   does: pushes PT_SIZE + 16 bytes: a PtRegs frame at sp (all 32 GPRs, PT_SP = the sp at
//         entry, PT_ERA = 0) and above it a frame record {fp, kretprobe_trampoline}; sets
//         fp = the sp at entry; calls the hook (LOONGTRACE_RETHOOK) with a0 = the frame; then
//         takes a0, a1 (the return values, which a handler may have changed) and fp from the
//         frame, sets ra = PT_ERA (where the hook says the function really returns) and jumps
//         there.
//   clobbers: ra (set to the real return address) and the temporaries t0-t8, a2-a7 (the caller
//         of a returning function holds nothing in them); s0-s8, tp and r21 are what the
//         function returned with (the hook preserves them by the calling convention), so a
//         handler's writes to them, or to the temporaries, in the frame have no effect.
//   The return column is undefined for DWARF (the real address is in the kernel's instance
//   list until the hook has run); frame-pointer backtraces get it through the fix-up.
core::arch::global_asm!(
    r#"
    .text
    .balign 4
    .global kretprobe_trampoline
    .type kretprobe_trampoline, @function
kretprobe_trampoline:
    .cfi_startproc
    .cfi_undefined 1
    addi.d  $sp, $sp, -({size} + 16)
    .cfi_adjust_cfa_offset {size} + 16
    st.d    $fp, $sp, {size}
    .cfi_rel_offset 22, {size}
    .irp n, 0,1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    st.d    $r\n, $sp, \n * 8
    .endr
    la.pcrel $t0, kretprobe_trampoline
    st.d    $t0, $sp, {size} + 8
    addi.d  $fp, $sp, {size} + 16
    st.d    $fp, $sp, {sp}
    st.d    $zero, $sp, {era}
    move    $a0, $sp
    la.pcrel $t0, LOONGTRACE_RETHOOK
    ld.d    $t0, $t0, 0
    jirl    $ra, $t0, 0
    ld.d    $ra, $sp, {era}
    ld.d    $a0, $sp, 4 * 8
    ld.d    $a1, $sp, 5 * 8
    ld.d    $fp, $sp, 22 * 8
    .cfi_restore 22
    addi.d  $sp, $sp, {size} + 16
    .cfi_adjust_cfa_offset -({size} + 16)
    jr      $ra
    .cfi_endproc
    .size kretprobe_trampoline, . - kretprobe_trampoline
"#,
    size = const PT_SIZE,
    sp = const PT_SP,
    era = const PT_ERA,
);

/// The hook `kretprobe_trampoline` calls: `fn(frame)`; it must set `frame.era` to the real
/// return address.
pub type RethookHandler = extern "C" fn(frame: &mut PtRegs);

/// Where the trampoline goes; a function that returns to the trampoline before the kernel
/// installed its hook would jump to 0, which the kernel prevents by installing it at boot,
/// before any kretprobe exists.
#[unsafe(no_mangle)]
static LOONGTRACE_RETHOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the kernel's return hook (at boot).
pub fn set_rethook_handler(handler: RethookHandler) {
    LOONGTRACE_RETHOOK.store(handler as *mut (), Ordering::Release);
}

unsafe extern "C" {
    fn kretprobe_trampoline();
}

/// The trampoline's address (what a hooked function returns to).
#[inline]
pub fn trampoline() -> u64 {
    kretprobe_trampoline as *const () as u64
}
