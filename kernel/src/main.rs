//! The loongtrace kernel image: everything lives in the `loongtrace_kernel` library.
#![no_std]
#![no_main]

extern crate loongtrace_kernel;
