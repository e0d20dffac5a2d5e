//! The ELF entry point: direct-mapping windows, paging mode, per-CPU stacks, BSS, then Rust.

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 8;
/// Boot stack size of each CPU.
pub const STACK_SIZE: usize = 128 * 1024;

// `_start`: entered by QEMU's direct ELF boot in direct-address mode (CRMD.DA = 1) at the
// physical load address, with interrupts off. Under QEMU 7.2 every CPU enters here at once;
// under newer QEMU only CPU 0 does, and the others come here when CPU 0 mails them this address.
//
// Contract:
//   in:   nothing is relied on (QEMU 7.2 passes a0 = a1 = a2 = 0, newer QEMU a0 = 1, a1 = cmdline).
//   does: DMW0 = uncached window 0x8000_..., DMW1 = cached window 0x9000_..., jumps to the linked
//         (virtual) address, switches CRMD to paging mode (PG = 1, DA = 0, cached accesses).
//         CPU 0 clears BSS; every other CPU waits until `loongtrace_secondaries_go` (in .data, so
//         the clearing does not touch it) is nonzero. Then each CPU sets sp to the top of its boot
//         stack, r21 to its per-CPU area (whose first word it sets to its CPU number), fp = ra = 0,
//         and calls `loongtrace_kernel_main(0)` or `loongtrace_secondary_main(cpu)`, which never
//         return.
//   clobbers: everything.
//   unwind: `ra` is undefined here (`.cfi_undefined`), so a debugger's backtrace ends at `_start`.
core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
    .type _start, @function
_start:
    .cfi_startproc
    .cfi_undefined 1
    li.d        $t0, 0x8000000000000001
    csrwr       $t0, {dmw0}
    li.d        $t0, 0x9000000000000011
    csrwr       $t0, {dmw1}
    la.abs      $t0, 1f
    jirl        $zero, $t0, 0
1:
    li.w        $t0, 0xb0
    csrwr       $t0, {crmd}
    csrrd       $s0, {cpuid}
    andi        $s0, $s0, 0x1ff
    li.d        $t0, {max_cpus}
    bgeu        $s0, $t0, .Lpark
    bnez        $s0, .Lwait

    la.pcrel    $t1, __bss_start
    la.pcrel    $t2, __bss_end
2:
    bgeu        $t1, $t2, .Lsetup
    st.d        $zero, $t1, 0
    addi.d      $t1, $t1, 8
    b           2b
.Lwait:
    la.pcrel    $t1, loongtrace_secondaries_go
4:
    ld.d        $t2, $t1, 0
    beqz        $t2, 4b
    dbar        0
.Lsetup:
    li.d        $t0, {stack_size}
    addi.d      $t1, $s0, 1
    mul.d       $t1, $t1, $t0
    la.pcrel    $sp, __boot_stacks
    add.d       $sp, $sp, $t1
    li.d        $t0, {percpu_size}
    mul.d       $t1, $s0, $t0
    la.pcrel    $r21, loongtrace_percpu
    add.d       $r21, $r21, $t1
    st.d        $s0, $r21, 0
    move        $fp, $zero
    move        $ra, $zero
    move        $a0, $s0
    bnez        $s0, 5f
    bl          loongtrace_kernel_main
5:
    bl          loongtrace_secondary_main
.Lpark:
    idle        0
    b           .Lpark
    .cfi_endproc
    .size _start, . - _start

    .data
    .balign 8
    .global loongtrace_secondaries_go
loongtrace_secondaries_go:
    .dword 0

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
    max_cpus = const MAX_CPUS,
    percpu_size = const core::mem::size_of::<PerCpu>(),
);

/// The per-CPU area `r21` points at on every CPU. Rust code never allocates `r21` (the psABI
/// reserves it), so it stays valid everywhere, including the trap path.
#[repr(C, align(64))]
pub struct PerCpu {
    /// This CPU's number (written by `_start`).
    pub cpu: core::sync::atomic::AtomicU64,
    /// Tracing calls this CPU is inside (the SMP trampolines count them; see `arch::ftrace`).
    pub tracing_depth: core::sync::atomic::AtomicU64,
    /// Times this CPU left its outermost tracing call.
    pub tracing_exits: core::sync::atomic::AtomicU64,
    /// The kprobe this CPU is handling (0: none), the kernel's per-CPU `current_kprobe`: one
    /// load through `r21` on the probe paths.
    pub kprobe_current: core::sync::atomic::AtomicU64,
    /// How many exception or interrupt handlers this CPU is running (0: normal context); see
    /// [`crate::trap::depth`].
    pub trap_depth: core::sync::atomic::AtomicU64,
    /// The kernel's recursion bits for tracing callbacks (`ftrace::recursion`), one per context.
    pub recursion: core::sync::atomic::AtomicU64,
    /// Eight more recursion flags, one byte per context (`ftrace::recursion`'s guard of the
    /// tracers' own callbacks: a byte load and store through `r21`).
    pub callback_guard: core::sync::atomic::AtomicU64,
    /// A pointer the kernel keeps per CPU for its hottest path (its trace ring buffer while
    /// tracing writes, else 0): one load through `r21` instead of an index computation. Unlike
    /// the fields above, any CPU may change it; a reader that loads it once per use (as the
    /// tracer does) sees the change at its next load.
    pub trace_ring: core::sync::atomic::AtomicU64,
    /// Another such pointer: the kernel's per-CPU function-graph state (its shadow stack).
    pub graph: core::sync::atomic::AtomicU64,
    /// BPF programs' recursion guards (Linux's per-CPU `prog->active`), one word per guard slot:
    /// non-zero while this CPU runs the program from a generated trampoline (see
    /// `arch::bpf_tramp::Guard`; one `ld.d`/`st.d` off `r21` each).
    pub bpf_active: [core::sync::atomic::AtomicU64; BPF_GUARD_SLOTS],
}

/// Guard slots of [`PerCpu::bpf_active`]: programs attached to trampolines at once, at most.
pub const BPF_GUARD_SLOTS: usize = 128;
/// Offset of [`PerCpu::bpf_active`].
pub const PERCPU_BPF_ACTIVE: usize = 72;

/// Offset of [`PerCpu::kprobe_current`] (for [`this_cpu_load`] / [`this_cpu_store`]).
pub const PERCPU_KPROBE_CURRENT: usize = 24;
/// Offset of [`PerCpu::trap_depth`].
pub const PERCPU_TRAP_DEPTH: usize = 32;
/// Offset of [`PerCpu::recursion`].
pub const PERCPU_RECURSION: usize = 40;
/// Offset of [`PerCpu::callback_guard`].
pub const PERCPU_CALLBACK_GUARD: usize = 48;
/// Offset of [`PerCpu::trace_ring`].
pub const PERCPU_TRACE_RING: usize = 56;
/// Offset of [`PerCpu::graph`].
pub const PERCPU_GRAPH: usize = 64;

/// Offset of [`PerCpu::tracing_depth`] (used by the assembly).
pub const PERCPU_TRACING_DEPTH: usize = 8;
/// Offset of [`PerCpu::tracing_exits`] (used by the assembly).
pub const PERCPU_TRACING_EXITS: usize = 16;

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, tracing_depth) == PERCPU_TRACING_DEPTH);
    assert!(core::mem::offset_of!(PerCpu, tracing_exits) == PERCPU_TRACING_EXITS);
    assert!(core::mem::offset_of!(PerCpu, kprobe_current) == PERCPU_KPROBE_CURRENT);
    assert!(core::mem::offset_of!(PerCpu, trap_depth) == PERCPU_TRAP_DEPTH);
    assert!(core::mem::offset_of!(PerCpu, recursion) == PERCPU_RECURSION);
    assert!(core::mem::offset_of!(PerCpu, callback_guard) == PERCPU_CALLBACK_GUARD);
    assert!(core::mem::offset_of!(PerCpu, trace_ring) == PERCPU_TRACE_RING);
    assert!(core::mem::offset_of!(PerCpu, graph) == PERCPU_GRAPH);
    assert!(core::mem::offset_of!(PerCpu, bpf_active) == PERCPU_BPF_ACTIVE);
    // Every slot within reach of one `ld.d`/`st.d` off `r21`.
    assert!(PERCPU_BPF_ACTIVE + 8 * BPF_GUARD_SLOTS <= 2048);
};

/// One area per possible CPU.
#[unsafe(no_mangle)]
static loongtrace_percpu: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        cpu: core::sync::atomic::AtomicU64::new(0),
        tracing_depth: core::sync::atomic::AtomicU64::new(0),
        tracing_exits: core::sync::atomic::AtomicU64::new(0),
        kprobe_current: core::sync::atomic::AtomicU64::new(0),
        trap_depth: core::sync::atomic::AtomicU64::new(0),
        recursion: core::sync::atomic::AtomicU64::new(0),
        callback_guard: core::sync::atomic::AtomicU64::new(0),
        trace_ring: core::sync::atomic::AtomicU64::new(0),
        graph: core::sync::atomic::AtomicU64::new(0),
        bpf_active: [const { core::sync::atomic::AtomicU64::new(0) }; BPF_GUARD_SLOTS],
    }
}; MAX_CPUS];

/// The per-CPU area of `cpu` (readable from any CPU).
pub fn percpu(cpu: usize) -> &'static PerCpu {
    &loongtrace_percpu[cpu % MAX_CPUS]
}

/// This CPU's per-CPU area (the pointer in `r21`: one register move).
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    let p: u64;
    // SAFETY: r21 points at this CPU's `PerCpu` from `_start` on and is never changed (Rust code
    // never allocates it); reading a register has no other effect.
    unsafe { core::arch::asm!("move {0}, $r21", out(reg) p, options(nomem, nostack, preserves_flags)) };
    // SAFETY: as above: a valid, 'static element of `loongtrace_percpu`.
    unsafe { &*(p as *const PerCpu) }
}

/// The word at offset `OFF` of this CPU's area (a relaxed atomic load of that field), with one
/// instruction (`ld.d` off `r21`). `OFF` is one of the `PERCPU_*` offsets.
///
/// The compiler may reuse one load for two reads with no write to memory between (`pure`): most
/// fields read this way are changed only by this CPU, by [`this_cpu_store`] (a write to memory
/// as the compiler sees it) or by an interrupt handler, which gives back the value it found
/// before the interrupted code resumes. (`trace_ring` is written by other CPUs too: a reused
/// load only sees their change a little later.)
#[inline(always)]
pub fn this_cpu_load<const OFF: usize>() -> u64 {
    const { assert!(OFF % 8 == 0 && OFF < core::mem::size_of::<PerCpu>()) };
    let v: u64;
    // SAFETY: r21 points at this CPU's `PerCpu` (see `this_cpu`); an aligned 64-bit load of one of
    // its atomic fields (checked above) is a relaxed atomic load.
    unsafe { core::arch::asm!("ld.d {0}, $r21, {off}", out(reg) v, off = const OFF, options(pure, readonly, nostack, preserves_flags)) };
    v
}

/// Stores `v` at offset `OFF` of this CPU's area (a relaxed atomic store), with one instruction.
#[inline(always)]
pub fn this_cpu_store<const OFF: usize>(v: u64) {
    const { assert!(OFF % 8 == 0 && OFF < core::mem::size_of::<PerCpu>()) };
    // SAFETY: as in `this_cpu_load`: an aligned 64-bit store to one of this CPU's atomic fields.
    unsafe { core::arch::asm!("st.d {0}, $r21, {off}", in(reg) v, off = const OFF, options(nostack, preserves_flags)) };
}

/// Byte `i` of the field at offset `OFF` of this CPU's area, as an atomic (`i` < 8; one
/// `add.d` off `r21`, which the compiler keeps for the byte's later loads and stores).
#[inline(always)]
pub fn this_cpu_byte<const OFF: usize>(i: usize) -> &'static core::sync::atomic::AtomicU8 {
    const { assert!(OFF % 8 == 0 && OFF < core::mem::size_of::<PerCpu>()) };
    let p: u64;
    // SAFETY: computing an address has no effect; `r21` points at this CPU's `PerCpu`.
    unsafe { core::arch::asm!("add.d {0}, $r21, {1}", out(reg) p, in(reg) i & 7, options(pure, nomem, nostack, preserves_flags)) };
    // SAFETY: `r21 + (i & 7) + OFF` is a byte of the 8-byte atomic field at `OFF` of this CPU's
    // 'static area (checked above); bytes of atomics are only accessed atomically.
    unsafe { &*((p as usize + OFF) as *const core::sync::atomic::AtomicU8) }
}

unsafe extern "C" {
    static loongtrace_secondaries_go: core::sync::atomic::AtomicU64;
}

/// Lets secondary CPUs waiting in `_start` go on into `loongtrace_secondary_main`.
pub fn release_secondaries() {
    // SAFETY: a word in .data defined by the asm above, only accessed atomically.
    unsafe { loongtrace_secondaries_go.store(1, core::sync::atomic::Ordering::Release) };
}

unsafe extern "C" {
    static __boot_stacks: u8;
}

const _: () = assert!(core::mem::offset_of!(PerCpu, cpu) == 0);

/// Bounds `[low, high)` of CPU `cpu`'s boot stack.
pub fn stack_bounds(cpu: usize) -> (u64, u64) {
    let base = core::ptr::addr_of!(__boot_stacks) as u64;
    let low = base + (cpu * STACK_SIZE) as u64;
    (low, low + STACK_SIZE as u64)
}

/// The physical address of kernel address `va`: the image, its statics and the heap are reached
/// through the direct-mapped windows set up at entry (`0x8000_...` uncached, `0x9000_...`
/// cached), which drop the top bits and keep the low 48 (the `virt` CPU's `PALEN`).
pub const fn phys_addr(va: u64) -> u64 {
    va & ((1 << 48) - 1)
}
