//! What `make qemu` shows after the self-tests (`demo=1`): short traces of a known call chain.

use crate::ftrace::tracer;
use crate::selftest::targets::chain_root;

/// Traces the call chain with the function tracer and prints Linux's `trace` text.
pub fn function_tracer() {
    println!("\n=== demo: function tracer on chain_? (set_ftrace_filter = \"chain_?\") ===");
    tracer::reset_buffers();
    if let Err(e) = tracer::start(Some("chain_?")) {
        println!("demo: cannot start the function tracer: {e}");
        return;
    }
    let v = chain_root(1);
    let _ = tracer::stop();
    let c = tracer::collect();
    crate::console::with_console(|w| {
        let _ = tracer::write_header(w, "function", &c);
        for e in &c.events {
            let _ = tracer::write_function_line(w, e);
        }
    });
    println!("chain_root(1) = {v}");
}

/// Loads each ftrace-direct sample, exercises it, prints what its handler logged, unloads it.
pub fn samples() {
    for s in crate::samples::ALL.iter() {
        println!("\n=== demo: sample {} ===", s.name);
        crate::samples::take_log();
        if let Err(e) = (s.load)() {
            println!("{}: load failed: {e}", s.name);
            continue;
        }
        (s.exercise)();
        let unloaded = (s.unload)();
        for line in crate::samples::take_log() {
            println!("  {line}");
        }
        match unloaded {
            Ok(()) => println!("{}: unloaded", s.name),
            Err(e) => println!("{}: unload failed: {e}", s.name),
        }
    }
}

/// Traces the call chain with the function_graph tracer (`set_graph_function = chain_root`).
pub fn function_graph() {
    use crate::ftrace::graph_tracer::{self, GraphConfig};
    println!("\n=== demo: function_graph tracer (set_graph_function = \"chain_root\") ===");
    tracer::reset_buffers();
    let cfg = GraphConfig { graph_function: Some("chain_root"), ftrace_filter: Some("chain_*"), max_depth: 0 };
    if let Err(e) = graph_tracer::start(&cfg) {
        println!("demo: cannot start the function_graph tracer: {e}");
        return;
    }
    let v = chain_root(2);
    let _ = graph_tracer::stop();
    let c = tracer::collect();
    crate::console::with_console(|w| {
        let _ = graph_tracer::write_graph(w, &c);
    });
    println!("chain_root(2) = {v}");
}

/// Runs every demo.
pub fn run_all() {
    function_tracer();
    function_graph();
    samples();
}
