//! Dynamic ftrace: patch-site records, ops with filters, direct calls and the function-graph
//! return hook (the ftrace core, floor 3 of docs/architecture.md), and what is built on them:
//! the tracers, the profiler, the stack tracer, function probes and the generated (BPF-style)
//! trampolines (floor 4). This file belongs to the core: it re-exports and starts only the core.
//!
//! See `docs/ftrace.md` for the design. The arch layer (`arch::ftrace`) owns the assembly and the
//! single-word patching hooks; everything here is architecture-independent policy.

pub mod bpf;
pub mod core;
pub mod direct;
pub mod fgraph;
pub mod graph_tracer;
pub mod ops;
pub mod probes;
pub mod profile;
pub mod quiesce;
pub mod recursion;
pub mod sites;
pub mod stack_tracer;
pub mod stream;
pub mod stubs;
pub mod tracer;

pub use self::core::{
    ftrace_free_filter, ftrace_reset_filters, ftrace_set_filter, ftrace_set_filter_ip, ftrace_set_notrace, register_ftrace_function,
    unregister_ftrace_function,
};
pub use direct::{modify_ftrace_direct, register_ftrace_direct, unregister_ftrace_direct};
pub use ops::{FtraceError, FtraceFunc, FtraceOps, FtraceRegs, OpsFlags};

/// Boot-time init of the core: builds the site table and writes `move t0, ra` into every site.
/// (The users on floor 4 that need starting, e.g. `bpf::init`, are started by `boot`.)
pub fn init() {
    let (n, notrace, failed) = self::core::init(sites::function_entries());
    let us = crate::time::ticks_to_us(self::core::init_ticks());
    log::info!("ftrace: {n} patch sites initialised in {us} us ({notrace} notrace by policy, {failed} failed)");
    fgraph::init();
}

/// What must hold again after anything that used the ftrace core has cleaned up (the self-test
/// harness checks these after every case, with those of the floors above).
pub const ISOLATION_CHECKS: &[(&str, fn() -> Result<(), alloc::string::String>)] =
    &[("ftrace sites disabled", self::core::check_all_disabled), ("function graph idle", fgraph::check_idle)];

/// Puts the ftrace core back in order after a user was abandoned half-way (a self-test case
/// that panicked or took an exception): locks it held, state it left half-changed. Users above
/// the core recover after this (it may have unregistered their ops).
pub fn recover_after_abort() {
    fgraph::recover_after_abort();
    self::core::recover_after_abort();
}
