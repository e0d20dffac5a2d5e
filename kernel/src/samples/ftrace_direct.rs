//! `ftrace-direct`: a trampoline on `wake_up_process` whose handler sees its first argument.

use super::{Sample, targets};
use crate::ftrace::{self, FtraceError, FtraceOps, OpsFlags};

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(
    /// Handler: the task being woken up.
    fn sample_direct_func(pid: u64) => sample_direct_func_impl);

extern "C" fn sample_direct_func_impl(pid: u64) {
    super::log(alloc::format!("ftrace-direct: waking up task-{pid}"));
}

// sample_direct_tramp: entered with t0 = parent, ra = body, a0 = pid. Saves a0, t0 and ra in a
// 32-byte frame, calls the handler with a0, restores them and resumes the function.
// Clobbers t1 (and what the handler may clobber of the temporaries).
core::arch::global_asm!(
    r#"
    .text
    .global sample_direct_tramp
    .type sample_direct_tramp, @function
sample_direct_tramp:
    .cfi_startproc
    addi.d  $sp, $sp, -32
    .cfi_adjust_cfa_offset 32
    st.d    $a0, $sp, 0
    st.d    $t0, $sp, 8
    st.d    $ra, $sp, 16
    .cfi_rel_offset 12, 8
    .cfi_rel_offset 1, 16
    bl      sample_direct_func
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
    .size sample_direct_tramp, . - sample_direct_tramp
"#
);

unsafe extern "C" {
    fn sample_direct_tramp();
}

pub static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

fn tramp() -> u64 {
    sample_direct_tramp as *const () as u64
}

pub fn load() -> Result<(), FtraceError> {
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::wake_up_process as *const () as u64, false, true)?;
    ftrace::register_ftrace_direct(&DIRECT, tramp())
}

pub fn unload() -> Result<(), FtraceError> {
    ftrace::unregister_ftrace_direct(&DIRECT, tramp())?;
    ftrace::ftrace_reset_filters(&DIRECT)
}

fn exercise() {
    for pid in [1, 7, 42] {
        targets::wake_up_process(pid);
    }
}

pub const SAMPLE: Sample = Sample { name: "ftrace-direct", load, unload, exercise };
