//! `ftrace-direct-too`: a trampoline on `handle_mm_fault` that passes its three arguments to the
//! handler, on a function that an ordinary ops traces at the same time.

use super::{Sample, targets};
use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use core::sync::atomic::Ordering;

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_direct_too_func(vma: u64, address: u64, flags: u64) => sample_direct_too_func_impl);

extern "C" fn sample_direct_too_func_impl(vma: u64, address: u64, flags: u64) {
    super::log(alloc::format!("ftrace-direct-too: handle mm fault vma={vma:#x} address={address:#x} flags={flags:#x}"));
}

// sample_direct_too_tramp: entered with t0 = parent, ra = body, a0-a2 = the arguments. Saves
// a0-a2, t0 and ra (48-byte frame), calls the handler, restores all five and resumes the
// function, which therefore sees its arguments unchanged.
core::arch::global_asm!(
    r#"
    .text
    .global sample_direct_too_tramp
    .type sample_direct_too_tramp, @function
sample_direct_too_tramp:
    .cfi_startproc
    addi.d  $sp, $sp, -48
    .cfi_adjust_cfa_offset 48
    st.d    $a0, $sp, 0
    st.d    $a1, $sp, 8
    st.d    $a2, $sp, 16
    st.d    $t0, $sp, 24
    st.d    $ra, $sp, 32
    .cfi_rel_offset 12, 24
    .cfi_rel_offset 1, 32
    bl      sample_direct_too_func
    ld.d    $a0, $sp, 0
    ld.d    $a1, $sp, 8
    ld.d    $a2, $sp, 16
    ld.d    $t0, $sp, 24
    ld.d    $ra, $sp, 32
    .cfi_restore 12
    .cfi_restore 1
    addi.d  $sp, $sp, 48
    .cfi_adjust_cfa_offset -48
    move    $t1, $ra
    .cfi_register 1, 13
    move    $ra, $t0
    jr      $t1
    .cfi_endproc
    .size sample_direct_too_tramp, . - sample_direct_too_tramp
"#
);

unsafe extern "C" {
    fn sample_direct_too_tramp();
}

pub static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

extern "C" fn count(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Ordering::Relaxed);
}
crate::selftest::poison::poisoning_fn!(fn sample_too_count(ip: u64, parent: u64, ops: &FtraceOps, regs: &mut FtraceRegs) => count);

/// The ordinary ops that shares the function (counts calls in `private`).
pub static TOO: FtraceOps = FtraceOps::new(sample_too_count, OpsFlags::RECURSION);

fn tramp() -> u64 {
    sample_direct_too_tramp as *const () as u64
}

pub fn load() -> Result<(), FtraceError> {
    let ip = targets::handle_mm_fault as *const () as u64;
    ftrace::ftrace_set_filter_ip(&DIRECT, ip, false, true)?;
    ftrace::register_ftrace_direct(&DIRECT, tramp())?;
    TOO.private.store(0, Ordering::Relaxed);
    let r = ftrace::ftrace_set_filter_ip(&TOO, ip, false, true).and_then(|_| ftrace::register_ftrace_function(&TOO));
    if r.is_err() {
        let _ = ftrace::unregister_ftrace_direct(&DIRECT, tramp());
    }
    r
}

pub fn unload() -> Result<(), FtraceError> {
    ftrace::unregister_ftrace_function(&TOO)?;
    ftrace::ftrace_reset_filters(&TOO)?;
    ftrace::unregister_ftrace_direct(&DIRECT, tramp())?;
    ftrace::ftrace_reset_filters(&DIRECT)
}

fn exercise() {
    targets::handle_mm_fault(0xffff_0000_1000, 0x7f00_1234, 0x55);
}

pub const SAMPLE: Sample = Sample { name: "ftrace-direct-too", load, unload, exercise };
