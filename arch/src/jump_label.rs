//! Jump labels (Linux's static keys): a branch that costs one `nop` while it is off.
//!
//! [`static_branch_unlikely!`] puts a `nop` in the instruction stream and records it in the
//! `__jump_table` section as a [`JumpEntry`] (where the `nop` is, where the rarely taken code
//! is, and which key it belongs to). Turning the key on rewrites every such `nop` into `b target`
//! with the validated patching of the ftrace sites (the old word is checked, `ibar` follows);
//! turning it off writes the `nop` back. The caller makes other CPUs see the new words.

use crate::insn;
use crate::patch::{self, PatchError};

/// One site of a jump label, as the macro records it (three 64-bit words).
#[repr(C)]
#[derive(Debug)]
pub struct JumpEntry {
    /// The `nop` (or, while the key is on, the `b`).
    pub code: u64,
    /// Where the `b` goes.
    pub target: u64,
    /// The key: the address of the static the site was written for.
    pub key: u64,
}

unsafe extern "C" {
    static __start___jump_table: JumpEntry;
    static __stop___jump_table: JumpEntry;
}

/// Every jump-label site of the kernel image.
pub fn entries() -> &'static [JumpEntry] {
    let start = core::ptr::addr_of!(__start___jump_table);
    let stop = core::ptr::addr_of!(__stop___jump_table);
    let n = (stop as usize - start as usize) / core::mem::size_of::<JumpEntry>();
    // SAFETY: the linker script gathers the `__jump_table` sections (whole `JumpEntry` records,
    // 8-byte aligned, written by `static_branch_unlikely!`) between the two symbols; the image
    // never frees or moves them.
    unsafe { core::slice::from_raw_parts(start, n) }
}

/// Turns one site on (`nop` → `b target`) or off, checking the word that is there first.
pub fn set(entry: &JumpEntry, on: bool) -> Result<(), PatchError> {
    let branch = insn::encode_b(entry.code, entry.target).map_err(|_| PatchError::BadAddress(entry.target))?;
    let (old, new) = if on { (insn::NOP, branch) } else { (branch, insn::NOP) };
    patch::patch_insn(entry.code, old, new)
}

/// Whether a site is on (its word is the `b`).
pub fn is_on(entry: &JumpEntry) -> bool {
    patch::read_insn(entry.code).is_ok_and(|w| w != insn::NOP)
}

/// `true` while the key `$key` (a path to a `static`) is on, `false` otherwise; off, it costs
/// one `nop` and the code under it is out of line. Only [`set`] changes which.
#[macro_export]
macro_rules! static_branch_unlikely {
    ($key:path) => {
        'static_branch: {
            // SAFETY: a `nop` recorded in `__jump_table`; when the key is on it becomes a branch
            // to the label block, which only leaves this block with `true`. No register or
            // memory is touched.
            unsafe {
                core::arch::asm!(
                    "1: nop",
                    ".pushsection __jump_table, \"aw\"",
                    ".balign 8",
                    ".quad 1b, {on}, {key}",
                    ".popsection",
                    key = sym $key,
                    on = label { break 'static_branch true },
                    options(nostack, preserves_flags),
                );
            }
            false
        }
    };
}
