//! The eBPF runtime of loongtrace, `no_std` and host-testable: the instruction set
//! ([`insn`]), the interpreter ([`interp`]), maps ([`maps`]), objects as clang writes them
//! ([`object`], with the BTF they carry: [`btf`]), the text of `bpf_trace_printk` ([`printk`]), the verifier ([`verifier`]) and its abstract
//! domain: bits ([`tnum`]), scalars with bounds ([`scalar`]) and machine states ([`state`]).
//! The kernel uses it; see docs/bpf.md.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod btf;
pub mod fuzz;
pub mod insn;
pub mod interp;
pub mod maps;
pub mod object;
pub mod printk;
#[doc(hidden)]
pub mod rng;
pub mod scalar;
pub mod state;
pub mod tnum;
pub mod verifier;
