//! sample_far: a loadable module built position-independent, so kernel data is reached through
//! the module's GOT (`R_LARCH_GOT_PC_HI20/LO12`), with a table of function pointers
//! (`R_LARCH_64`) and a dispatcher that calls through it.
#![no_std]

use core::sync::atomic::Ordering;
use loongtrace_module as lt;

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_far_double(x: u64) -> u64 {
    x.wrapping_mul(2)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_far_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_far_negate(x: u64) -> u64 {
    x.wrapping_neg()
}

/// Absolute addresses of three module functions (relocated with `R_LARCH_64`).
#[unsafe(no_mangle)]
pub static SAMPLE_FAR_OPS: [extern "C" fn(u64) -> u64; 3] = [sample_far_double, sample_far_square, sample_far_negate];

/// Applies operation `which % 3` to `x`, through the table; counts in the kernel's counter.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_far_apply(which: u64, x: u64) -> u64 {
    // SAFETY: `lt_shared_counter` is a kernel static exported to modules.
    unsafe { lt::lt_shared_counter.fetch_add(1, Ordering::Relaxed) };
    let table = core::hint::black_box(&SAMPLE_FAR_OPS);
    let f = table[(which % 3) as usize];
    f(x)
}

/// The ABI oracle's target (see sample_mod): a far call into the kernel.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_far_oracle(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64 {
    // SAFETY: a kernel function exported to modules, C ABI, no preconditions.
    let r = unsafe { lt::lt_abi_oracle_record(a0, a1, a2, a3, a4, a5, a6, a7) };
    core::hint::black_box(r)
}

/// A function with a kernel function's name (the kernel's returns `a + 1`): BPF programs name
/// this one `sample_far:bpf_fentry_test1` (the module_fentry_shadow selftest).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_fentry_test1(a: i32) -> i32 {
    core::hint::black_box(a.wrapping_add(100))
}

lt::bpf_protos!(sample_far_double: 1, sample_far_square: 1, sample_far_negate: 1, sample_far_apply: 2, bpf_fentry_test1: 1);

fn init() -> i32 {
    lt::info("sample_far: loaded");
    0
}

fn exit() {
    lt::info("sample_far: unloaded");
}

lt::module!(name: "sample_far", init: init, exit: exit);
