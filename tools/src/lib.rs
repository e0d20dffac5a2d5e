//! Host-side tooling for loongtrace: KTAP parsing, booting QEMU, and the embedded symbol table.
//!
//! - [`ktap`] turns the kernel's serial output into a tree of suites and cases plus a list of
//!   [`ktap::Problem`]s (panics, hangs, plan mismatches, ...).
//! - [`runner`] boots a kernel image under `qemu-system-loongarch64` and collects its output.
//! - [`symtab`] builds the `.ksyms` blob described in `docs/formats.md`, writes it into a linked
//!   kernel image, and reads it back.
//! - [`record`], [`capture`], [`tracedat`], [`flame`], [`chrome`] and [`calls`]: `ltrace record`
//!   fetches a recording from the kernel and writes `trace.dat`, flame graphs and Chrome JSON.
//! - [`bench`] reads the kernel's `BENCH` lines and checks the speed targets.
//! - [`layers`] checks that kernel modules import only their own floor or those below
//!   (`docs/architecture.md`).
//! - [`srchash`] fingerprints the kernel sources, to check that the booted image is current.

pub mod bench;
pub mod calls;
pub mod capture;
pub mod chrome;
pub mod events;
pub mod flame;
pub mod ktap;
pub mod layers;
pub mod linux;
pub mod record;
pub mod runner;
pub mod srchash;
pub mod stream;
pub mod session;
pub mod symtab;
pub mod tracedat;
