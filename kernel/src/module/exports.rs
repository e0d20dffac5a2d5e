//! The kernel symbols a module may use (Linux's `EXPORT_SYMBOL`): an explicit table
//! (`ksyms::export_symbol!`), so a module links against a stable, small interface rather than
//! against every kernel symbol. The loader's own exports are here; other floors export theirs
//! where they are defined (the self-tests' `lt_abi_oracle_record`).

use core::sync::atomic::AtomicU64;

/// A counter modules may read and write (shows module access to kernel data).
#[unsafe(no_mangle)]
pub static lt_shared_counter: AtomicU64 = AtomicU64::new(0);

/// `lt_log(level, msg, len)`: prints a module's message through the kernel log.
#[unsafe(no_mangle)]
pub extern "C" fn lt_log(level: u32, msg: *const u8, len: usize) {
    // SAFETY: the module API documents that `msg` points to `len` readable bytes.
    let bytes = unsafe { core::slice::from_raw_parts(msg, len.min(4096)) };
    let text = core::str::from_utf8(bytes).unwrap_or("<message is not UTF-8>");
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        4 => log::Level::Debug,
        5 => log::Level::Trace,
        _ => log::Level::Info,
    };
    log::log!(target: "module", level, "{text}");
}

/// `lt_module_panic(msg, len)`: a module's panic handler ends here (a kernel panic).
#[unsafe(no_mangle)]
pub extern "C" fn lt_module_panic(msg: *const u8, len: usize) -> ! {
    // SAFETY: as for `lt_log`.
    let bytes = unsafe { core::slice::from_raw_parts(msg, len.min(4096)) };
    panic!("module panic: {}", core::str::from_utf8(bytes).unwrap_or("?"))
}

unsafe extern "C" {
    fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
    fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32;
}

use crate::ksyms::export_symbol;

export_symbol!(lt_log, lt_log);
export_symbol!(lt_module_panic, lt_module_panic);
export_symbol!(lt_shared_counter, core::ptr::addr_of!(lt_shared_counter));
export_symbol!(memcpy, memcpy);
export_symbol!(memmove, memmove);
export_symbol!(memset, memset);
export_symbol!(memcmp, memcmp);
export_symbol!(bcmp, bcmp);

/// The address of exported symbol `name` (from any floor's `export_symbol!`).
pub fn resolve(name: &str) -> Option<u64> {
    crate::ksyms::exported(name)
}

/// Names of every exported symbol.
pub fn names() -> impl Iterator<Item = &'static str> {
    crate::ksyms::exports().iter().map(|e| e.name)
}
