//! `ftrace-direct-multi`: one trampoline on two functions; the handler receives the address of
//! the function that was called.
//!
//! Linux's sample hands the handler `t0`, which was the function under the old register roles.
//! Under the v6.19 convention `t0` is the parent's return address and `ra` the function's body,
//! so the traced function's own address is `ra - 8`.

use super::{Sample, targets};
use crate::ftrace::{self, FtraceError, FtraceOps, OpsFlags};

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_multi_func(ip: u64) => sample_multi_func_impl);

extern "C" fn sample_multi_func_impl(ip: u64) {
    super::log(alloc::format!("ftrace-direct-multi: {} ({ip:#x})", crate::ksyms::name(ip)));
}

// sample_multi_tramp: entered with t0 = parent, ra = body, a0 = first argument. Saves a0, t0 and
// ra, calls the handler with a0 = ra - 8 (the traced function's entry), restores and resumes.
core::arch::global_asm!(
    r#"
    .text
    .global sample_multi_tramp
    .type sample_multi_tramp, @function
sample_multi_tramp:
    .cfi_startproc
    addi.d  $sp, $sp, -32
    .cfi_adjust_cfa_offset 32
    st.d    $a0, $sp, 0
    st.d    $t0, $sp, 8
    st.d    $ra, $sp, 16
    .cfi_rel_offset 12, 8
    .cfi_rel_offset 1, 16
    addi.d  $a0, $ra, -8
    bl      sample_multi_func
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
    .size sample_multi_tramp, . - sample_multi_tramp
"#
);

unsafe extern "C" {
    fn sample_multi_tramp();
}

pub static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

fn tramp() -> u64 {
    sample_multi_tramp as *const () as u64
}

pub fn load() -> Result<(), FtraceError> {
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::wake_up_process as *const () as u64, false, true)?;
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::schedule as *const () as u64, false, false)?;
    ftrace::register_ftrace_direct(&DIRECT, tramp())
}

pub fn unload() -> Result<(), FtraceError> {
    ftrace::unregister_ftrace_direct(&DIRECT, tramp())?;
    ftrace::ftrace_reset_filters(&DIRECT)
}

fn exercise() {
    targets::wake_up_process(3);
    targets::schedule();
}

pub const SAMPLE: Sample = Sample { name: "ftrace-direct-multi", load, unload, exercise };
