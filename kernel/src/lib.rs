//! loongtrace: a small LoongArch64 kernel whose centrepiece is its own dynamic ftrace.
//!
//! The pure modules (`glob`, `icount`, `ringbuf`, `symtab`, `cmdline`, `execmem`, the parsers of
//! `events`) build and test on the host;
//! everything else exists only in the kernel image (`target_os = "none"`).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(target_os = "none", feature(patchable_function_entry))]

extern crate alloc;

pub mod cmdline;
pub mod events;
pub mod execmem;
pub mod glob;
pub mod icount;
pub mod modload;
pub mod ringbuf;
/// The `LTKSYM01` symbol table reader (shared with the host tools' writer).
pub use formats::symtab;
pub mod shell;

#[cfg(target_os = "none")]
#[macro_use]
pub mod console;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod ksyms;
// Names of code generated at run time (backtraces, GDB's JIT interface).
#[cfg(target_os = "none")]
pub mod jitsyms;
#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod panic;
#[cfg(target_os = "none")]
#[macro_use]
pub mod selftest;
#[cfg(target_os = "none")]
pub mod bench;
#[cfg(all(target_os = "none", feature = "scale"))]
pub mod scale;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod bpfrt;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod demo;
#[cfg(target_os = "none")]
pub mod ftrace;
#[cfg(target_os = "none")]
pub mod gdbdemo;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod kprobes;
#[cfg(target_os = "none")]
pub mod module;
#[cfg(target_os = "none")]
pub mod record;
#[cfg(target_os = "none")]
pub mod tracepoint;
#[cfg(target_os = "none")]
pub mod samples;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod tracefs;
#[cfg(target_os = "none")]
pub mod workloads;
