//! The scale build's generated traceable functions (`make bench SITES=n`, feature `scale`).
//!
//! `build.rs` writes `n` small distinct functions and a table of them; the kernel crate's flags
//! give each a patch site like every other function. Only the bench refers to the table.

include!(concat!(env!("OUT_DIR"), "/scale_fns.rs"));

/// How many functions were generated (read through the table, so that it and the functions
/// stay in the image).
pub fn count() -> usize {
    core::hint::black_box(&FUNCTIONS).len()
}
