//! LoongArch64 support for loongtrace: everything that knows the instruction set or the QEMU `virt` board.
//!
//! The pure parts (`insn`, `pcrel`, `kprobe_insn`, `bpf_tramp`, `bpf_jit`, `frame` layouts) build and test on the host; the rest only exists
//! when compiling for `loongarch64`. Nothing here depends on the `kernel` crate: the kernel
//! reaches in through the functions below and registers its policy hooks (trap handler,
//! panic recovery) at boot.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod insn;
pub mod pcrel;
pub mod kprobe_insn;
pub mod bpf_tramp;
pub mod bpf_jit;
pub mod frame;

#[cfg(target_arch = "loongarch64")]
pub mod boot;
#[cfg(target_arch = "loongarch64")]
pub mod cpu;
#[cfg(target_arch = "loongarch64")]
pub mod csr;
#[cfg(target_arch = "loongarch64")]
pub mod ftrace;
#[cfg(target_arch = "loongarch64")]
pub mod fw_cfg;
#[cfg(target_arch = "loongarch64")]
pub mod jump;
#[cfg(target_arch = "loongarch64")]
pub mod jump_label;
#[cfg(target_arch = "loongarch64")]
pub mod patch;
#[cfg(target_arch = "loongarch64")]
pub mod power;
#[cfg(target_arch = "loongarch64")]
pub mod rethook;
#[cfg(target_arch = "loongarch64")]
pub mod smp;
#[cfg(target_arch = "loongarch64")]
pub mod time;
#[cfg(target_arch = "loongarch64")]
pub mod trap;
#[cfg(target_arch = "loongarch64")]
pub mod uart;
#[cfg(target_arch = "loongarch64")]
pub mod unwind;
