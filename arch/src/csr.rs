//! Control and status registers: numbers, bit fields and `csrrd`/`csrwr` accessors.

/// Current mode (PLV, IE, DA, PG, ...).
pub const CRMD: u32 = 0x0;
/// Mode before the last exception.
pub const PRMD: u32 = 0x1;
/// Extended unit enable (FPU and vector units).
pub const EUEN: u32 = 0x2;
/// Exception configuration: vector spacing and local interrupt enables.
pub const ECFG: u32 = 0x4;
/// Exception status: pending interrupts and the exception code.
pub const ESTAT: u32 = 0x5;
/// Exception return address.
pub const ERA: u32 = 0x6;
/// Bad virtual address of the last address exception.
pub const BADV: u32 = 0x7;
/// Exception entry base address (4 KiB aligned).
pub const EENTRY: u32 = 0xc;
/// This CPU's number.
pub const CPUID: u32 = 0x20;
/// Kernel scratch registers.
pub const KS0: u32 = 0x30;
/// Timer configuration.
pub const TCFG: u32 = 0x41;
/// Timer value.
pub const TVAL: u32 = 0x42;
/// Timer interrupt clear.
pub const TICLR: u32 = 0x44;
/// TLB refill exception entry (physical).
pub const TLBRENTRY: u32 = 0x88;
/// TLB refill: bad virtual address.
pub const TLBRBADV: u32 = 0x89;
/// TLB refill: return address.
pub const TLBRERA: u32 = 0x8a;
/// TLB refill: scratch.
pub const TLBRSAVE: u32 = 0x8b;
/// TLB refill: PRMD.
pub const TLBRPRMD: u32 = 0x8f;
/// Direct mapping windows 0 and 1.
pub const DMW0: u32 = 0x180;
pub const DMW1: u32 = 0x181;

/// CRMD.IE: global interrupt enable.
pub const CRMD_IE: u64 = 1 << 2;
/// ECFG/ESTAT bit of the timer interrupt.
pub const INT_TIMER: u64 = 1 << 11;
/// ECFG/ESTAT bit of the inter-processor interrupt.
pub const INT_IPI: u64 = 1 << 12;

/// Reads CSR `N`.
#[inline(always)]
pub fn read<const N: u32>() -> u64 {
    let v: u64;
    // SAFETY: reading a CSR has no side effect on memory; the CSRs used here are readable at PLV0.
    unsafe { core::arch::asm!("csrrd {0}, {csr}", out(reg) v, csr = const N, options(nomem, nostack)) };
    v
}

/// Writes CSR `N`.
///
/// # Safety
/// The caller must know what the new value does to the machine state (for example, writing
/// CRMD can switch address translation off).
#[inline(always)]
pub unsafe fn write<const N: u32>(v: u64) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { core::arch::asm!("csrwr {0}, {csr}", inout(reg) v => _, csr = const N, options(nostack)) };
}

/// Sets the bits of `mask` in CSR `N` and returns the old value of those bits.
///
/// # Safety
/// As for [`write`].
#[inline(always)]
pub unsafe fn set_bits<const N: u32>(mask: u64) -> u64 {
    let old: u64;
    // SAFETY: `csrxchg` with value = mask and mask = mask sets exactly these bits; the caller upholds
    // the contract of `write`.
    unsafe {
        core::arch::asm!("csrxchg {v}, {m}, {csr}", v = inout(reg) mask => old, m = in(reg) mask,
            csr = const N, options(nostack))
    };
    old & mask
}

/// Clears the bits of `mask` in CSR `N` and returns the old value of those bits.
///
/// # Safety
/// As for [`write`].
#[inline(always)]
pub unsafe fn clear_bits<const N: u32>(mask: u64) -> u64 {
    let old: u64;
    // SAFETY: `csrxchg` with value = 0 and mask = mask clears exactly these bits.
    unsafe {
        core::arch::asm!("csrxchg {v}, {m}, {csr}", v = inout(reg) 0u64 => old, m = in(reg) mask,
            csr = const N, options(nostack))
    };
    old & mask
}
