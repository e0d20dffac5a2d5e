//! Formats shared by the kernel and the host tools: the symbol table, the trace-export frames and
//! the task name every trace output gives an event.
//!
//! Each format has exactly one definition here; the kernel reads the symbol table and writes
//! export frames, the host tools write the symbol table and read export frames. The crate uses
//! `alloc` only for the symbol-table writer.
#![no_std]

extern crate alloc;

pub mod jitelf;
pub mod ring;
pub mod stream;
pub mod symtab;
pub mod task;
pub mod wire;
