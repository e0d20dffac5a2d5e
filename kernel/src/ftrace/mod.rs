//! Dynamic ftrace: patch-site records, ops with filters, direct calls, generated (BPF-style)
//! trampolines and the function tracer.
//!
//! See `docs/ftrace.md` for the design. The arch layer (`arch::ftrace`) owns the assembly and the
//! single-word patching hooks; everything here is architecture-independent policy.

pub mod bpf;
pub mod core;
pub mod direct;
pub mod fgraph;
pub mod graph_tracer;
pub mod ops;
pub mod quiesce;
pub mod recursion;
pub mod sites;
pub mod tracer;

pub use self::core::{
    ftrace_reset_filters, ftrace_set_filter, ftrace_set_filter_ip, ftrace_set_notrace, register_ftrace_function,
    unregister_ftrace_function,
};
pub use direct::{modify_ftrace_direct, register_ftrace_direct, unregister_ftrace_direct};
pub use ops::{FtraceError, FtraceFunc, FtraceOps, FtraceRegs, OpsFlags};

/// Boot-time init: builds the site table and writes `move t0, ra` into every site.
pub fn init() {
    let (n, notrace, failed) = self::core::init(crate::boot::function_entries());
    let us = self::core::init_ticks() * 1_000_000 / crate::boot::counter_hz();
    log::info!("ftrace: {n} patch sites initialised in {us} us ({notrace} notrace by policy, {failed} failed)");
    fgraph::init();
    crate::selftest::add_isolation_check("ftrace sites disabled", self::core::check_all_disabled);
    crate::selftest::add_isolation_check("function graph idle", fgraph::check_idle);
    crate::selftest::add_abort_hook(|| {
        fgraph::recover_after_abort();
        self::core::recover_after_abort();
    });
    bpf::init();
}
