//! Host-side tooling for loongtrace: KTAP parsing, booting QEMU, and the embedded symbol table.
//!
//! - [`ktap`] turns the kernel's serial output into a tree of suites and cases plus a list of
//!   [`ktap::Problem`]s (panics, hangs, plan mismatches, ...).
//! - [`runner`] boots a kernel image under `qemu-system-loongarch64` and collects its output.
//! - [`symtab`] builds the `.ksyms` blob described in `docs/formats.md`, writes it into a linked
//!   kernel image, and reads it back.
//! - [`bench`] reads the kernel's `BENCH` lines and checks the speed targets.

pub mod bench;
pub mod ktap;
pub mod runner;
pub mod session;
pub mod symtab;
