//! Inter-processor interrupts and secondary-CPU start-up through the IOCSR IPI block of the
//! `virt` board's CPUs.
//!
//! Each CPU has an IPI status/enable/clear register set (IOCSR 0x1000-0x100c), four 64-bit
//! mailboxes (0x1020-0x1038), and can send to any CPU through the IPI-send (0x1040) and
//! mailbox-send (0x1048) registers. Run-time IPIs never use the "blocking" bit (it deadlocks
//! when the target has interrupts off).

const IPI_STATUS: u64 = 0x1000;
const IPI_ENABLE: u64 = 0x1004;
const IPI_CLEAR: u64 = 0x100c;
const IPI_SEND: u64 = 0x1040;
const MAIL_SEND: u64 = 0x1048;

fn iocsr_read32(addr: u64) -> u32 {
    let v: u64;
    // SAFETY: reading an IPI register of this CPU has no side effect.
    unsafe { core::arch::asm!("iocsrrd.w {0}, {1}", out(reg) v, in(reg) addr, options(nostack)) };
    v as u32
}

fn iocsr_write32(addr: u64, v: u32) {
    // SAFETY: the IPI registers written here only raise or clear IPIs and enable them.
    unsafe { core::arch::asm!("iocsrwr.w {0}, {1}", in(reg) v as u64, in(reg) addr, options(nostack)) };
}

fn iocsr_write64(addr: u64, v: u64) {
    // SAFETY: as above (the send registers are 64 bits wide).
    unsafe { core::arch::asm!("iocsrwr.d {0}, {1}", in(reg) v, in(reg) addr, options(nostack)) };
}

/// Enables IPIs on this CPU (all vectors, and the IPI line in ECFG).
pub fn init_this_cpu() {
    iocsr_write32(IPI_ENABLE, u32::MAX);
    // SAFETY: enables the IPI interrupt line; the trap vector handles it.
    unsafe { crate::csr::set_bits::<{ crate::csr::ECFG }>(crate::csr::INT_IPI) };
}

/// Raises IPI vector `vector` (0..32) on `cpu`.
pub fn send_ipi(cpu: usize, vector: u32) {
    iocsr_write32(IPI_SEND, ((cpu as u32 & 0x3ff) << 16) | (vector & 0x1f));
}

/// Reads and clears this CPU's pending IPI vectors.
pub fn take_ipis() -> u32 {
    let pending = iocsr_read32(IPI_STATUS);
    iocsr_write32(IPI_CLEAR, pending);
    pending
}

/// Writes `value` into `cpu`'s mailbox 0, 32 bits at a time (high half first, so a CPU that
/// polls the mailbox for a nonzero value sees the complete address once the low half lands).
pub fn mailbox_send(cpu: usize, value: u64) {
    let target = (cpu as u64 & 0x3ff) << 16;
    // Box field (bits 4:2) = 2 * mailbox + half.
    iocsr_write64(MAIL_SEND, (value & 0xffff_ffff_0000_0000) | target | (1 << 2));
    iocsr_write64(MAIL_SEND, (value << 32) | target);
}

unsafe extern "C" {
    fn _start();
}

/// Releases the secondary CPUs. Under QEMU 7.2 every CPU entered `_start` by itself and waits
/// for `go`; under newer QEMU the secondaries sit in QEMU's boot stub until their mailbox holds
/// an entry address and an IPI arrives, so they are sent `_start` (physical) too.
pub fn start_secondaries(ncpus: usize) {
    crate::boot::release_secondaries();
    let entry = (_start as *const () as u64) & 0x0000_ffff_ffff_ffff;
    for cpu in 1..ncpus.min(crate::boot::MAX_CPUS) {
        mailbox_send(cpu, entry);
        send_ipi(cpu, 0);
    }
}
