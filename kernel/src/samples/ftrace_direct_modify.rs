//! `ftrace-direct-modify`: two trampolines on `schedule`, flipped with `modify_ftrace_direct`
//! while the function keeps being called (Linux flips from a kthread every two seconds).

use super::{Sample, targets};
use crate::ftrace::{self, FtraceError, FtraceOps, OpsFlags};
use core::sync::atomic::{AtomicU64, Ordering};

/// Calls seen by each handler.
pub static HITS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_modify_func1() => sample_modify_func1_impl);

extern "C" fn sample_modify_func1_impl() {
    HITS[0].fetch_add(1, Ordering::Relaxed);
    super::log(alloc::string::String::from("ftrace-direct-modify: my direct func1"));
}

// Reached through a wrapper that, in the self-tests' poisoning runs (`selftest::poison`),
// clobbers every register a handler may clobber before returning to the trampoline.
crate::selftest::poison::poisoning_fn!(fn sample_modify_func2() => sample_modify_func2_impl);

extern "C" fn sample_modify_func2_impl() {
    HITS[1].fetch_add(1, Ordering::Relaxed);
    super::log(alloc::string::String::from("ftrace-direct-modify: my direct func2"));
}

// sample_modify_tramp1 / sample_modify_tramp2: entered with t0 = parent, ra = body. Save t0 and
// ra (16-byte frame), call their handler, restore and resume the function.
core::arch::global_asm!(
    r#"
    .text
    .irp n, 1,2
    .global sample_modify_tramp\n
    .type sample_modify_tramp\n, @function
sample_modify_tramp\n:
    .cfi_startproc
    addi.d  $sp, $sp, -16
    .cfi_adjust_cfa_offset 16
    st.d    $t0, $sp, 0
    st.d    $ra, $sp, 8
    .cfi_rel_offset 12, 0
    .cfi_rel_offset 1, 8
    bl      sample_modify_func\n
    ld.d    $t0, $sp, 0
    ld.d    $ra, $sp, 8
    .cfi_restore 12
    .cfi_restore 1
    addi.d  $sp, $sp, 16
    .cfi_adjust_cfa_offset -16
    move    $t1, $ra
    .cfi_register 1, 13
    move    $ra, $t0
    jr      $t1
    .cfi_endproc
    .size sample_modify_tramp\n, . - sample_modify_tramp\n
    .endr
"#
);

unsafe extern "C" {
    fn sample_modify_tramp1();
    fn sample_modify_tramp2();
}

pub static DIRECT: FtraceOps = FtraceOps::new_direct(OpsFlags::empty());

pub fn tramps() -> [u64; 2] {
    [sample_modify_tramp1 as *const () as u64, sample_modify_tramp2 as *const () as u64]
}

pub fn load() -> Result<(), FtraceError> {
    HITS.iter().for_each(|h| h.store(0, Ordering::Relaxed));
    ftrace::ftrace_set_filter_ip(&DIRECT, targets::schedule as *const () as u64, false, true)?;
    ftrace::register_ftrace_direct(&DIRECT, tramps()[0])
}

pub fn unload() -> Result<(), FtraceError> {
    super::unload_direct(&DIRECT)
}

/// Points the sample at the other trampoline (what Linux's kthread does periodically).
pub fn flip() -> Result<(), FtraceError> {
    super::flip(&DIRECT, tramps())
}

fn exercise() {
    for _ in 0..2 {
        targets::schedule();
        let _ = flip();
    }
}

pub const SAMPLE: Sample = Sample { name: "ftrace-direct-modify", load, unload, exercise };
