//! The kernel functions BPF tracing programs are tested on (Linux keeps the same ones in
//! `net/bpf/test_run.c`, where `BPF_PROG_TEST_RUN` of a tracing program calls them): ordinary,
//! traceable functions with the selftests' names and simple results, and [`call_all`], which
//! calls each once with the arguments the programs of `bpf/progs` expect.

use core::hint::black_box;

/// `a + 1`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_fentry_test1(a: i32) -> i32 {
    black_box(a.wrapping_add(1))
}

/// `a + b`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_fentry_test2(a: i32, b: u64) -> i32 {
    black_box((a as u64).wrapping_add(b) as i32)
}

/// The sum of its six arguments of mixed widths and signs.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_fentry_test3(a: i8, b: i32, c: u64, d: i16, e: i64, f: u8) -> i32 {
    black_box((a as i64 + b as i64 + c as i64 + d as i64 + e + f as i64) as i32)
}

/// The sum of its eight arguments (every argument register).
#[unsafe(no_mangle)]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn bpf_fentry_test4(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    black_box(a.wrapping_add(b).wrapping_add(c).wrapping_add(d).wrapping_add(e).wrapping_add(f).wrapping_add(g).wrapping_add(h))
}

/// `a + b`; the target of `modify_return`'s fentry, fmod_ret and fexit programs.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_modify_return_test(a: i32, b: i32) -> i32 {
    black_box(a.wrapping_add(b))
}

/// A function that does nothing, for the cost of an attached empty program (`test_overhead`,
/// `make bench`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_overhead_test(a: u64) -> u64 {
    black_box(a)
}

/// The prototypes of the functions above: name and argument registers (what Linux reads from
/// the kernel's BTF).
pub const PROTOS: &[(&str, u32)] = &[
    ("bpf_fentry_test1", 1),
    ("bpf_fentry_test2", 2),
    ("bpf_fentry_test3", 6),
    ("bpf_fentry_test4", 8),
    ("bpf_modify_return_test", 2),
    ("bpf_overhead_test", 1),
    // `make bench`'s traced function (kernel/src/bench.rs), for the bpf_* rows.
    ("bench_target", 1),
    // The native helper (bpfrt::helpers), for the recursion test: (map, key).
    ("bpf_map_delete_elem", 2),
];

/// Calls each test function once with the arguments the programs of `bpf/progs` check:
/// `test1(1)`, `test2(2, 3)`, `test3(4, 5, 6, -7, -8, 9)`, `test4(1..=8)`,
/// `bpf_modify_return_test(1, 2)`; returns their results in that order.
pub fn call_all() -> [i64; 5] {
    [
        bpf_fentry_test1(black_box(1)) as i64,
        bpf_fentry_test2(black_box(2), 3) as i64,
        bpf_fentry_test3(black_box(4), 5, 6, -7, -8, 9) as i64,
        bpf_fentry_test4(black_box(1), 2, 3, 4, 5, 6, 7, 8) as i64,
        bpf_modify_return_test(black_box(1), 2) as i64,
    ]
}

/// Keeps the functions in the image (they are BPF targets even when no kernel code calls them;
/// Linux's are called by `BPF_PROG_TEST_RUN`).
#[used]
static KEEP: Keep = Keep([
    bpf_fentry_test1 as *const (),
    bpf_fentry_test2 as *const (),
    bpf_fentry_test3 as *const (),
    bpf_fentry_test4 as *const (),
    bpf_modify_return_test as *const (),
    bpf_overhead_test as *const (),
]);

/// A table of function addresses, shared read-only.
struct Keep(#[allow(dead_code, reason = "read by nobody: it only keeps the functions")] [*const (); 6]);

// SAFETY: the addresses are never written or dereferenced through the table.
unsafe impl Sync for Keep {}
