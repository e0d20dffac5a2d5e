//! `ftrace-direct-multi-modify`: two trampolines, each passing the traced function's address
//! (`ra - 8`) to its handler, flipped on two functions while they are called.

use super::{Sample, targets};
use crate::ftrace::{self, FtraceError, FtraceOps, OpsFlags};

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_multi_modify_func1(ip: u64) => sample_multi_modify_func1_impl);

extern "C" fn sample_multi_modify_func1_impl(ip: u64) {
    super::log(alloc::format!("ftrace-direct-multi-modify: func1 {} ({ip:#x})", crate::ksyms::name(ip)));
}

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_multi_modify_func2(ip: u64) => sample_multi_modify_func2_impl);

extern "C" fn sample_multi_modify_func2_impl(ip: u64) {
    super::log(alloc::format!("ftrace-direct-multi-modify: func2 {} ({ip:#x})", crate::ksyms::name(ip)));
}

// sample_multi_modify_tramp1 / 2: entered with t0 = parent, ra = body. Save a0, t0 and ra, call
// their handler with a0 = ra - 8, restore and resume the function.
core::arch::global_asm!(
    r#"
    .text
    .irp n, 1,2
    .global sample_multi_modify_tramp\n
    .type sample_multi_modify_tramp\n, @function
sample_multi_modify_tramp\n:
    .cfi_startproc
    addi.d  $sp, $sp, -32
    .cfi_adjust_cfa_offset 32
    st.d    $a0, $sp, 0
    st.d    $t0, $sp, 8
    st.d    $ra, $sp, 16
    .cfi_rel_offset 12, 8
    .cfi_rel_offset 1, 16
    addi.d  $a0, $ra, -8
    bl      sample_multi_modify_func\n
    ld.d    $a0, $sp, 0
    ld.d    $t0, $sp, 8
    ld.d    $ra, $sp, 16
    .cfi_restore 12
    .cfi_restore 1
    addi.d  $sp, $sp, 32
    .cfi_adjust_cfa_offset -32
    move    $t1, $ra
    .cfi_register 1, 13
    move    $ra, $t0
    jr      $t1
    .cfi_endproc
    .size sample_multi_modify_tramp\n, . - sample_multi_modify_tramp\n
    .endr
"#
);

unsafe extern "C" {
    fn sample_multi_modify_tramp1();
    fn sample_multi_modify_tramp2();
}

pub static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

pub fn tramps() -> [u64; 2] {
    [sample_multi_modify_tramp1 as *const () as u64, sample_multi_modify_tramp2 as *const () as u64]
}

pub fn load() -> Result<(), FtraceError> {
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::wake_up_process as *const () as u64, false, true)?;
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::schedule as *const () as u64, false, false)?;
    ftrace::register_ftrace_direct(&DIRECT, tramps()[0])
}

pub fn unload() -> Result<(), FtraceError> {
    super::unload_direct(&DIRECT)
}

/// Points the sample at the other trampoline.
pub fn flip() -> Result<(), FtraceError> {
    super::flip(&DIRECT, tramps())
}

fn exercise() {
    for _ in 0..2 {
        targets::wake_up_process(9);
        targets::schedule();
        let _ = flip();
    }
}

pub const SAMPLE: Sample = Sample { name: "ftrace-direct-multi-modify", load, unload, exercise };
