//! The exception vector, the TLB-refill vector and dispatch to the kernel's handlers.

use crate::csr;
use crate::frame::*;
use core::sync::atomic::{AtomicUsize, Ordering};

// `loongtrace_trap_entry`: every exception and interrupt (ECFG.VS = 0, one entry), PLV0 only.
//   in:   any register state; CSR ERA/PRMD/ESTAT/BADV describe the event.
//   does: pushes a full `PtRegs` frame (PT_SIZE bytes) on the current stack, calls
//         `loongtrace_trap_dispatch(frame)`, then restores every GPR, ERA and PRMD from the frame
//         (so a handler may change them, e.g. skip a `break` or redirect ERA) and returns with `ertn`.
//   clobbers: nothing visible to the interrupted code.
//
// `loongtrace_tlbr_entry`: TLB refill (any access outside the two DMW windows). Runs in
//   direct-address mode; saves a frame like the one above with ERA = TLBRERA (without its IsTLBR
//   bit), PRMD = TLBRPRMD, BADV = TLBRBADV and ESTAT's code set to 0x3f, and calls
//   `loongtrace_trap_refill(frame)`. Nothing maps such addresses, so that only returns when the
//   kernel's handler redirected ERA (a self-test recovering); the vector then restores the frame
//   and leaves refill mode with `ertn` through TLBRERA/TLBRPRMD.
//
// Unwind information (`.cfi_*`, docs/debugging.md): the CFA is the interrupted sp and every saved
// GPR is at its `PtRegs` slot, except that the return-address column (`ra`) names the saved ERA,
// the interrupted pc, so a debugger's backtrace from a handler continues into the interrupted
// code. (DWARF has one return column per object file here; the gdb helper recovers the
// interrupted `ra` itself from the frame.)
core::arch::global_asm!(
    r#"
    .section .text.trap, "ax"
    .balign 4096
    .global loongtrace_trap_entry
    .type loongtrace_trap_entry, @function
loongtrace_trap_entry:
    .cfi_startproc
    addi.d  $sp, $sp, -{size}
    .cfi_adjust_cfa_offset {size}
    .irp n, 1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    st.d    $r\n, $sp, \n * 8
    .ifne \n - 1
    .cfi_rel_offset \n, \n * 8
    .endif
    .endr
    addi.d  $t0, $sp, {size}
    st.d    $t0, $sp, {sp}
    st.d    $zero, $sp, 0
    csrrd   $t0, {c_era}
    st.d    $t0, $sp, {era}
    .cfi_rel_offset 1, {era}
    csrrd   $t0, {c_badv}
    st.d    $t0, $sp, {badv}
    csrrd   $t0, {c_crmd}
    st.d    $t0, $sp, {crmd}
    csrrd   $t0, {c_prmd}
    st.d    $t0, $sp, {prmd}
    csrrd   $t0, {c_euen}
    st.d    $t0, $sp, {euen}
    csrrd   $t0, {c_ecfg}
    st.d    $t0, $sp, {ecfg}
    csrrd   $t0, {c_estat}
    st.d    $t0, $sp, {estat}
    st.d    $a0, $sp, {orig_a0}
    move    $a0, $sp
    bl      loongtrace_trap_dispatch
    ld.d    $t0, $sp, {era}
    csrwr   $t0, {c_era}
    ld.d    $t0, $sp, {prmd}
    csrwr   $t0, {c_prmd}
    .irp n, 1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld.d    $r\n, $sp, \n * 8
    .endr
    ld.d    $sp, $sp, {sp}
    ertn
    .cfi_endproc
    .size loongtrace_trap_entry, . - loongtrace_trap_entry

    .balign 4096
    .global loongtrace_tlbr_entry
    .type loongtrace_tlbr_entry, @function
loongtrace_tlbr_entry:
    .cfi_startproc
    csrwr   $t0, {c_tlbrsave}
    .cfi_undefined 12
    addi.d  $sp, $sp, -{size}
    .cfi_adjust_cfa_offset {size}
    .irp n, 1,2,4,5,6,7,8,9,10,11,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    st.d    $r\n, $sp, \n * 8
    .ifne \n - 1
    .cfi_rel_offset \n, \n * 8
    .endif
    .endr
    csrrd   $t0, {c_tlbrsave}
    st.d    $t0, $sp, {t0}
    .cfi_rel_offset 12, {t0}
    addi.d  $t0, $sp, {size}
    st.d    $t0, $sp, {sp}
    csrrd   $t0, {c_tlbrera}
    srli.d  $t0, $t0, 2
    slli.d  $t0, $t0, 2
    st.d    $t0, $sp, {era}
    .cfi_rel_offset 1, {era}
    csrrd   $t0, {c_tlbrbadv}
    st.d    $t0, $sp, {badv}
    csrrd   $t0, {c_tlbrprmd}
    st.d    $t0, $sp, {prmd}
    csrrd   $t0, {c_crmd}
    st.d    $t0, $sp, {crmd}
    csrrd   $t0, {c_euen}
    st.d    $t0, $sp, {euen}
    csrrd   $t0, {c_ecfg}
    st.d    $t0, $sp, {ecfg}
    li.d    $t0, 0x3f0000
    st.d    $t0, $sp, {estat}
    st.d    $zero, $sp, 0
    st.d    $a0, $sp, {orig_a0}
    move    $a0, $sp
    la.abs  $t0, loongtrace_trap_refill
    jirl    $ra, $t0, 0
    ld.d    $t0, $sp, {era}
    ori     $t0, $t0, 1
    csrwr   $t0, {c_tlbrera}
    ld.d    $t0, $sp, {prmd}
    csrwr   $t0, {c_tlbrprmd}
    .irp n, 1,2,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld.d    $r\n, $sp, \n * 8
    .endr
    ld.d    $sp, $sp, {sp}
    ertn
    .cfi_endproc
    .size loongtrace_tlbr_entry, . - loongtrace_tlbr_entry
"#,
    size = const PT_SIZE,
    sp = const PT_SP,
    t0 = const PT_T0,
    era = const PT_ERA,
    badv = const PT_BADV,
    crmd = const PT_CRMD,
    prmd = const PT_PRMD,
    euen = const PT_EUEN,
    ecfg = const PT_ECFG,
    estat = const PT_ESTAT,
    orig_a0 = const PT_ORIG_A0,
    c_era = const csr::ERA,
    c_badv = const csr::BADV,
    c_crmd = const csr::CRMD,
    c_prmd = const csr::PRMD,
    c_euen = const csr::EUEN,
    c_ecfg = const csr::ECFG,
    c_estat = const csr::ESTAT,
    c_tlbrsave = const csr::TLBRSAVE,
    c_tlbrera = const csr::TLBRERA,
    c_tlbrbadv = const csr::TLBRBADV,
    c_tlbrprmd = const csr::TLBRPRMD,
);

unsafe extern "C" {
    fn loongtrace_trap_entry();
    fn loongtrace_tlbr_entry();
}

/// Exception code meaning "TLB refill" in frames built by the refill vector.
pub const ECODE_TLB_REFILL: u64 = 0x3f;
/// Exception code of `break`.
pub const ECODE_BRK: u64 = 0xc;

/// Exception code (ESTAT.Ecode) of a frame.
pub fn ecode(f: &PtRegs) -> u64 {
    (f.estat >> 16) & 0x3f
}

/// Exception sub-code (ESTAT.EsubCode) of a frame.
/// The word at ERA of a breakpoint (BRK) exception's frame, as it is now (another CPU may have
/// rewritten it since this one trapped); 0 for any other exception.
#[inline]
pub fn break_word(f: &PtRegs) -> u32 {
    if ecode(f) != ECODE_BRK {
        return 0;
    }
    // SAFETY: a BRK exception is raised by executing the instruction at ERA, so the CPU has just
    // fetched that aligned word from mapped memory (kernel or module text, which is never
    // unmapped while it can run); `f` is the unmodified frame of that exception.
    unsafe { core::ptr::read_volatile(f.era as *const u32) }
}

pub fn esubcode(f: &PtRegs) -> u64 {
    (f.estat >> 22) & 0x1ff
}

/// The name of an exception, in words.
pub fn exception_name(ecode: u64, subcode: u64) -> &'static str {
    match (ecode, subcode) {
        (0x0, _) => "interrupt",
        (0x1, _) => "page invalid on load (PIL)",
        (0x2, _) => "page invalid on store (PIS)",
        (0x3, _) => "page invalid on fetch (PIF)",
        (0x4, _) => "page modification (PME)",
        (0x5, _) => "page not readable (PNR)",
        (0x6, _) => "page not executable (PNX)",
        (0x7, _) => "page privilege illegal (PPI)",
        (0x8, 0) => "address error on fetch (ADEF)",
        (0x8, _) => "address error on memory access (ADEM)",
        (0x9, _) => "unaligned access (ALE)",
        (0xa, _) => "bound check (BCE)",
        (0xb, _) => "system call (SYS)",
        (0xc, _) => "breakpoint (BRK)",
        (0xd, _) => "instruction not defined (INE)",
        (0xe, _) => "instruction privilege error (IPE)",
        (0xf, _) => "floating-point disabled (FPD)",
        (0x10, _) => "128-bit vector disabled (SXD)",
        (0x11, _) => "256-bit vector disabled (ASXD)",
        (0x12, 0) => "floating-point error (FPE)",
        (0x12, _) => "vector floating-point error (VFPE)",
        (0x13, 0) => "watchpoint on fetch (WPEF)",
        (0x13, _) => "watchpoint on memory access (WPEM)",
        (0x14, _) => "binary translation disabled (BTD)",
        (0x15, _) => "binary translation error (BTE)",
        (0x16, _) => "guest privileged error (GSPR)",
        (0x17, _) => "hypervisor call (HVC)",
        (0x18, _) => "guest CSR change (GCSC)",
        (ECODE_TLB_REFILL, _) => "TLB refill (address outside the direct-mapped windows)",
        _ => "reserved exception code",
    }
}

/// The kernel's policy for traps, registered with [`set_handlers`].
#[derive(Clone, Copy)]
pub struct TrapHandlers {
    /// Called for each pending, enabled interrupt line (bit number of ESTAT.IS).
    pub interrupt: fn(line: u32, frame: &mut PtRegs),
    /// Called for every exception. It may change the frame (ERA, registers) and return;
    /// it must not return for an exception it cannot handle.
    pub exception: fn(frame: &mut PtRegs),
}

static INTERRUPT: AtomicUsize = AtomicUsize::new(0);
static EXCEPTION: AtomicUsize = AtomicUsize::new(0);

/// Installs the vectors on this CPU and registers the kernel's handlers.
pub fn init(handlers: TrapHandlers) {
    INTERRUPT.store(handlers.interrupt as usize, Ordering::Release);
    EXCEPTION.store(handlers.exception as usize, Ordering::Release);
    init_this_cpu();
}

/// Installs the vectors on the calling CPU (handlers must already be registered).
pub fn init_this_cpu() {
    let refill_phys = (loongtrace_tlbr_entry as *const () as u64) & 0x0000_ffff_ffff_ffff;
    // SAFETY: both entries are 4 KiB aligned routines in `.text.trap` that follow the contract
    // above; ECFG.VS = 0 sends all exceptions to EENTRY.
    unsafe {
        csr::write::<{ csr::EENTRY }>(loongtrace_trap_entry as *const () as u64);
        csr::write::<{ csr::TLBRENTRY }>(refill_phys);
        csr::clear_bits::<{ csr::ECFG }>(0x7 << 16);
    }
}

fn exception_handler() -> Option<fn(&mut PtRegs)> {
    let p = EXCEPTION.load(Ordering::Acquire);
    // SAFETY: a nonzero value was stored from a `fn(&mut PtRegs)` in `init`.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, fn(&mut PtRegs)>(p) })
}

/// How many exception or interrupt handlers are running on this CPU (0 in normal context): one
/// load through the per-CPU area.
#[inline(always)]
pub fn depth() -> usize {
    crate::boot::this_cpu_load::<{ crate::boot::PERCPU_TRAP_DEPTH }>() as usize
}

#[unsafe(no_mangle)]
extern "C" fn loongtrace_trap_dispatch(frame: &mut PtRegs) {
    let d = &crate::boot::this_cpu().trap_depth;
    d.fetch_add(1, Ordering::Relaxed);
    dispatch(frame);
    d.fetch_sub(1, Ordering::Relaxed);
}

fn dispatch(frame: &mut PtRegs) {
    if ecode(frame) == 0 {
        let pending = frame.estat & frame.ecfg & 0x1fff;
        let p = INTERRUPT.load(Ordering::Acquire);
        for line in 0..13 {
            if pending & (1 << line) != 0 && p != 0 {
                // SAFETY: a nonzero value was stored from a `fn(u32, &mut PtRegs)` in `init`.
                let f = unsafe { core::mem::transmute::<usize, fn(u32, &mut PtRegs)>(p) };
                f(line, frame);
            }
        }
        return;
    }
    match exception_handler() {
        Some(f) => f(frame),
        None => fatal_without_kernel(frame),
    }
}

#[unsafe(no_mangle)]
extern "C" fn loongtrace_trap_refill(frame: &mut PtRegs) {
    let d = &crate::boot::this_cpu().trap_depth;
    d.fetch_add(1, Ordering::Relaxed);
    match exception_handler() {
        Some(f) => f(frame),
        None => fatal_without_kernel(frame),
    }
    d.fetch_sub(1, Ordering::Relaxed);
}

fn fatal_without_kernel(frame: &PtRegs) -> ! {
    crate::uart::put_str("\n!!! FATAL EXCEPTION before the kernel installed its handler\n");
    let _ = frame;
    crate::power::power_off()
}

/// Writes the register dump of `frame`: the exception in words, ERA, BADV and all 32 GPRs.
pub fn dump(frame: &PtRegs, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let (c, s) = (ecode(frame), esubcode(frame));
    writeln!(out, "exception {c:#x}.{s}: {}", exception_name(c, s))?;
    writeln!(out, "ERA  {:#018x}  BADV {:#018x}  PRMD {:#x}  ESTAT {:#x}", frame.era, frame.badv, frame.prmd, frame.estat)?;
    for row in 0..8 {
        for col in 0..4 {
            let n = row * 4 + col;
            write!(out, "{:>4} {:016x}  ", GPR_NAMES[n], frame.regs[n])?;
        }
        writeln!(out)?;
    }
    Ok(())
}
