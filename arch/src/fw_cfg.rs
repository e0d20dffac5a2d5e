//! QEMU's fw_cfg device (MMIO on `virt`), used to read the kernel command line.
//!
//! QEMU 7.2's direct ELF boot passes no command line in registers, so the host hands it over as a
//! fw_cfg file: `-fw_cfg name=opt/loongtrace/cmdline,string=...`. This works on every QEMU version.

use core::ptr::NonNull;
use volatile::VolatilePtr;

const FW_CFG_BASE: usize = 0x8000_0000_1e02_0000;
const DATA: usize = 0;
const SELECTOR: usize = 8;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: the selector is a 16-bit big-endian MMIO register of the board's fw_cfg device.
    let reg = unsafe { VolatilePtr::new(NonNull::new_unchecked((FW_CFG_BASE + SELECTOR) as *mut u16)) };
    reg.write(key.to_be());
}

fn read_byte() -> u8 {
    // SAFETY: the data register is an MMIO byte of the board's fw_cfg device.
    let reg = unsafe { VolatilePtr::new(NonNull::new_unchecked((FW_CFG_BASE + DATA) as *mut u8)) };
    reg.read()
}

fn read_be32() -> u32 {
    (0..4).fold(0u32, |acc, _| (acc << 8) | read_byte() as u32)
}

fn read_be16() -> u16 {
    (0..2).fold(0u16, |acc, _| (acc << 8) | read_byte() as u16)
}

const KEY_NB_CPUS: u16 = 0x0005;

/// Number of CPUs QEMU was started with (`-smp`), if the device is there.
pub fn cpu_count() -> Option<usize> {
    if !present() {
        return None;
    }
    select(KEY_NB_CPUS);
    let lo = read_byte() as usize;
    let hi = read_byte() as usize;
    Some(lo | hi << 8)
}

/// Whether the device answers with its `QEMU` signature.
pub fn present() -> bool {
    select(KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    sig.iter_mut().for_each(|b| *b = read_byte());
    &sig == b"QEMU"
}

/// Calls `f(name, size, selector)` for every file in the fw_cfg directory (nothing when there is
/// no device).
pub fn for_each_file(mut f: impl FnMut(&str, usize, u16)) {
    if !present() {
        return;
    }
    select(KEY_FILE_DIR);
    let count = read_be32();
    // The directory is re-selected for every entry, so `f` may read other items in between.
    for i in 0..count {
        select(KEY_FILE_DIR);
        // Skip the count and the entries before this one.
        for _ in 0..4 + 64 * i {
            read_byte();
        }
        let size = read_be32();
        let key = read_be16();
        let _reserved = read_be16();
        let mut entry = [0u8; 56];
        entry.iter_mut().for_each(|b| *b = read_byte());
        let len = entry.iter().position(|&b| b == 0).unwrap_or(56);
        if let Ok(name) = core::str::from_utf8(&entry[..len]) {
            f(name, size as usize, key);
        }
    }
}

/// Copies the first `buf.len()` bytes of the fw_cfg item with selector `key` into `buf`.
pub fn read_item(key: u16, buf: &mut [u8]) {
    select(key);
    buf.iter_mut().for_each(|b| *b = read_byte());
}

/// Copies the fw_cfg file `name` into `buf`; returns the number of bytes copied, or `None` when
/// there is no device or no such file. Longer files are truncated to `buf.len()`.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<usize> {
    let mut found = None;
    for_each_file(|n, size, key| {
        if found.is_none() && n == name {
            found = Some((key, size));
        }
    });
    let (key, size) = found?;
    let n = size.min(buf.len());
    read_item(key, &mut buf[..n]);
    Some(n)
}
