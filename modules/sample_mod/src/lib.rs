//! sample_mod: a small loadable module with traceable functions, local and kernel data.
//!
//! Built with the kernel's static relocation model: calls to the kernel are `R_LARCH_CALL36`,
//! data (its own and the kernel's `lt_shared_counter`) is reached with `R_LARCH_PCALA_HI20/LO12`.
#![no_std]

use core::sync::atomic::{AtomicU64, Ordering};
use loongtrace_module as lt;

/// Calls of `sample_mod_work` since the module was loaded (module data, reset by init).
static WORK_CALLS: AtomicU64 = AtomicU64::new(0);

/// A leaf: what the function and graph tracers see as the innermost call.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// One step of `sample_mod_work`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_step(x: u64) -> u64 {
    sample_mod_add(x.rotate_left(5), 0x9e37_79b9)
}

/// Calls its callees `n` times and counts in module and kernel data; returns a checksum.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_work(n: u64) -> u64 {
    WORK_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `lt_shared_counter` is a kernel static exported to modules.
    unsafe { lt::lt_shared_counter.fetch_add(1, Ordering::Relaxed) };
    let mut acc = n;
    let mut i = 0;
    while i < n {
        acc = sample_mod_step(acc);
        i += 1;
    }
    acc
}

/// How often `sample_mod_work` ran.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_work_calls() -> u64 {
    WORK_CALLS.load(Ordering::Relaxed)
}

/// The ABI oracle's target in a module: hands its arguments to the kernel's recorder (a far call,
/// `R_LARCH_CALL36`) and returns its answer.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sample_mod_oracle(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64 {
    // SAFETY: a kernel function exported to modules, C ABI, no preconditions.
    let r = unsafe { lt::lt_abi_oracle_record(a0, a1, a2, a3, a4, a5, a6, a7) };
    core::hint::black_box(r)
}

fn init() -> i32 {
    WORK_CALLS.store(0, Ordering::Relaxed);
    lt::info("sample_mod: hello from module text");
    0
}

fn exit() {
    lt::info("sample_mod: goodbye");
}

lt::module!(name: "sample_mod", init: init, exit: exit);
