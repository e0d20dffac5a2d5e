//! Formats shared by the kernel and the host tools: the symbol table and the trace-export frames.
//!
//! Each format has exactly one definition here; the kernel reads the symbol table and writes
//! export frames, the host tools write the symbol table and read export frames. The crate uses
//! `alloc` only for the symbol-table writer.
#![no_std]

extern crate alloc;

pub mod symtab;
pub mod wire;
