//! The ELF entry point: direct-mapping windows, paging mode, per-CPU stacks, BSS, then Rust.

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 8;
/// Boot stack size of each CPU.
pub const STACK_SIZE: usize = 128 * 1024;

// `_start`: entered by QEMU's direct ELF boot in direct-address mode (CRMD.DA = 1) at the
// physical load address, with interrupts off.
//
// Contract:
//   in:   nothing is relied on (QEMU 7.2 passes a0 = a1 = a2 = 0, newer QEMU a0 = 1, a1 = cmdline).
//   does: DMW0 = uncached window 0x8000_..., DMW1 = cached window 0x9000_..., jumps to the linked
//         (virtual) address, switches CRMD to paging mode (PG = 1, DA = 0, cached accesses),
//         parks every CPU but CPU 0, clears BSS, sets sp to CPU 0's boot stack, fp = ra = r21 = 0,
//         and calls `loongtrace_kernel_main(cpu = 0)`, which never returns.
//   clobbers: everything.
core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
    .type _start, @function
_start:
    li.d        $t0, 0x8000000000000001
    csrwr       $t0, {dmw0}
    li.d        $t0, 0x9000000000000011
    csrwr       $t0, {dmw1}
    la.abs      $t0, 1f
    jirl        $zero, $t0, 0
1:
    li.w        $t0, 0xb0
    csrwr       $t0, {crmd}
    csrrd       $t0, {cpuid}
    andi        $t0, $t0, 0x1ff
    bnez        $t0, .Lpark

    la.pcrel    $t1, __bss_start
    la.pcrel    $t2, __bss_end
2:
    bgeu        $t1, $t2, 3f
    st.d        $zero, $t1, 0
    addi.d      $t1, $t1, 8
    b           2b
3:
    la.pcrel    $sp, __boot_stacks
    li.d        $t0, {stack_size}
    add.d       $sp, $sp, $t0
    move        $fp, $zero
    move        $ra, $zero
    move        $r21, $zero
    move        $a0, $zero
    bl          loongtrace_kernel_main
.Lpark:
    idle        0
    b           .Lpark
    .size _start, . - _start

    .section .bss.stack, "aw", @nobits
    .balign 16
    .global __boot_stacks
__boot_stacks:
    .space {stacks}
"#,
    dmw0 = const crate::csr::DMW0,
    dmw1 = const crate::csr::DMW1,
    crmd = const crate::csr::CRMD,
    cpuid = const crate::csr::CPUID,
    stack_size = const STACK_SIZE,
    stacks = const STACK_SIZE * MAX_CPUS,
);

unsafe extern "C" {
    static __boot_stacks: u8;
}

/// Bounds `[low, high)` of CPU `cpu`'s boot stack.
pub fn stack_bounds(cpu: usize) -> (u64, u64) {
    let base = core::ptr::addr_of!(__boot_stacks) as u64;
    let low = base + (cpu * STACK_SIZE) as u64;
    (low, low + STACK_SIZE as u64)
}
