//! `gdbdemo=1`: a fixed run of traced calls for debugging with `make gdb` and for the debugger test
//! (`tests/gdb.rs`): a direct trampoline reached straight from its site and through
//! `ftrace_regs_caller`, an ops callback on the full-register path, a function hooked by the graph
//! tracer, and function-tracer events. The kernel prints its own view of the enabled sites and of
//! the trace (between `gdbdemo: ... begin/end` lines), each right after the debugger had a chance
//! to read the same state at a `gdbdemo_check_*` breakpoint. Last, a JITed BPF fexit program on
//! its trampoline, which GDB knows through its JIT interface (`crate::jitsyms`).

use crate::ftrace::{self, FtraceError, FtraceOps, FtraceRegs, OpsFlags, core::SiteFlags};
use crate::ftrace::{graph_tracer, tracer};
use crate::samples::{ftrace_direct, targets};
use alloc::string::String;
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The callback of [`OPS`]: counts calls.
#[unsafe(no_mangle)]
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn gdbdemo_ops_callback(_ip: u64, _parent: u64, ops: &FtraceOps, _regs: &mut FtraceRegs) {
    ops.private.fetch_add(1, Relaxed);
}

/// An ordinary ops that wants all registers, so its sites go through `ftrace_regs_caller`.
static OPS: FtraceOps = FtraceOps::new(gdbdemo_ops_callback, OpsFlags::SAVE_REGS);

/// Calls the sample's traced function while its trampoline is called straight from the site.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_direct_straight() {
    targets::wake_up_process(black_box(11));
}

/// The same call while an ordinary ops shares the site (route through `ftrace_regs_caller`).
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_direct_via_regs() {
    targets::wake_up_process(black_box(12));
}

/// The function the graph tracer hooks.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_graph_outer(x: u64) -> u64 {
    gdbdemo_graph_leaf(black_box(x)) + 1
}

/// Called by the hooked function: a backtrace from here passes a `return_to_handler` frame.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_graph_leaf(x: u64) -> u64 {
    black_box(x * 2)
}

/// Calls the hooked function.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_graph_caller() -> u64 {
    gdbdemo_graph_outer(black_box(20))
}

/// Functions the function tracer records.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_work_a(x: u64) -> u64 {
    black_box(x + 1)
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_work_b(x: u64) -> u64 {
    gdbdemo_work_a(black_box(x)) * 3
}

/// How often each breakpoint spot was passed (`CHECKS[i]`). Writing it gives each spot a body of
/// its own, so the compiler cannot merge them with each other or with look-alike functions.
static CHECKS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Breakpoint spots: the state the debugger reads here is what the kernel prints next.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_check_ftrace() -> u64 {
    CHECKS[0].fetch_add(1, Relaxed)
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_check_trace() -> u64 {
    CHECKS[1].fetch_add(1, Relaxed)
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_done() -> u64 {
    CHECKS[2].fetch_add(1, Relaxed)
}

/// Called with the address of the JITed BPF program just attached (the debugger test sets a
/// breakpoint there: GDB knows the program's name and frame through its JIT interface).
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_bpf_attached(prog: u64) -> u64 {
    CHECKS[3].fetch_add(black_box(prog) & 1, Relaxed)
}

/// Calls the function the BPF program is attached to (as fexit).
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn gdbdemo_bpf_caller() -> u64 {
    crate::bpfrt::test_run::bpf_fentry_test4(black_box(1), 2, 3, 4, 5, 6, 7, 8) + 1
}

/// A JITed program on a BPF trampoline: fexit_test's `test4` on bpf_fentry_test4.
fn bpf_steps() -> Result<(), String> {
    use crate::bpfrt::{self, link};
    if bpfrt::fw_cfg_objects().is_empty() {
        println!("gdbdemo: no BPF objects; the BPF step is skipped");
        return Ok(());
    }
    bpfrt::load("fexit_test").map_err(|e| alloc::format!("{e}"))?;
    let r = (|| {
        let p = bpfrt::prog_named("fexit_test", "test4").ok_or("no program test4")?;
        let addr = p.jited.as_ref().map(|j| j.addr()).ok_or("test4 is not JITed")?;
        let l = link::attach(&p).map_err(|e| alloc::format!("{e}"))?;
        black_box(gdbdemo_bpf_attached(addr));
        let v = gdbdemo_bpf_caller();
        link::detach(l)?;
        println!("gdbdemo: bpf caller returned {v}, the fexit program saw {:?}", bpfrt::global_u64("fexit_test", "last_ret"));
        Ok::<(), String>(())
    })();
    let _ = bpfrt::unload("fexit_test");
    r
}

/// One line per enabled site, as Linux's `enabled_functions` shows them: the function (and its
/// `[module]`), the number of ops that want it, ` R` when it goes through `ftrace_regs_caller`, ` D` when it calls a
/// direct trampoline straight, the call target and the ops literal, both symbolised.
pub fn write_enabled_functions(w: &mut dyn Write) -> core::fmt::Result {
    let mut r = Ok(());
    ftrace::core::for_each_site(|s| {
        if r.is_err() || !s.state.flags.contains(SiteFlags::ENABLED) {
            return;
        }
        let f = s.state.flags;
        let name = s.site.name.strip_prefix("loongtrace_kernel::").unwrap_or(s.site.name);
        let module = if s.module.is_empty() { String::new() } else { alloc::format!(" [{}]", s.module) };
        r = writeln!(
            w,
            "{name}{module} ({}){}{}\ttramp: {}\tops: {}",
            s.state.refs,
            if f.contains(SiteFlags::REGS) { " R" } else { "  " },
            if f.contains(SiteFlags::DIRECT) { " D" } else { "  " },
            crate::ksyms::sym(s.state.target),
            crate::ksyms::sym(s.state.ops),
        );
    });
    r
}

fn section(what: &str, body: &str) {
    println!("gdbdemo: {what} begin");
    print!("{body}");
    println!("gdbdemo: {what} end");
}

fn text(e: FtraceError) -> String {
    alloc::string::ToString::to_string(&e)
}

fn steps() -> Result<(), String> {
    // Both direct routes, and an ops callback on the full-register path.
    (ftrace_direct::SAMPLE.load)().map_err(text)?;
    gdbdemo_direct_straight();
    ftrace::ftrace_set_filter(&OPS, "wake_up_process", true).map_err(text)?;
    ftrace::register_ftrace_function(&OPS).map_err(text)?;
    gdbdemo_direct_via_regs();
    tracer::start(Some("gdbdemo_work_*")).map_err(text)?;
    black_box(gdbdemo_check_ftrace());
    // The view printed is the state the consistency check vouches for.
    ftrace::core::check_consistency().map_err(|e| alloc::format!("inconsistent sites: {e}"))?;
    let mut s = String::new();
    let _ = write_enabled_functions(&mut s);
    section("enabled_functions", &s);
    // Function-tracer events for lt-trace.
    tracer::reset_buffers();
    for i in 0..3 {
        gdbdemo_work_b(black_box(i));
        if i == 1 {
            // A trace_marker write between the calls (lt-trace reads its text from tracefs).
            crate::tracefs::with_state(|s| crate::tracefs::tracing_mark_write(s, "gdbdemo: between the calls\n"));
        }
    }
    tracer::stop().map_err(text)?;
    ftrace::unregister_ftrace_function(&OPS).map_err(text)?;
    ftrace::ftrace_reset_filters(&OPS).map_err(text)?;
    (ftrace_direct::SAMPLE.unload)().map_err(text)?;
    black_box(gdbdemo_check_trace());
    let c = tracer::collect();
    let mut s = String::new();
    for e in &c.events {
        let _ = match e.kind {
            tracer::KIND_MARKER => {
                let text = crate::tracefs::marker_text(e.extra).unwrap_or_else(|| formats::wire::MARKER_OVERWRITTEN.into());
                tracer::write_marker_line(&mut s, e, &text)
            }
            _ => tracer::write_function_line(&mut s, e),
        };
    }
    section("trace", &s);
    // A function hooked by the graph tracer.
    graph_tracer::start(&graph_tracer::GraphConfig { graph_function: Some("gdbdemo_graph_outer"), ftrace_filter: Some("gdbdemo_graph_*"), max_depth: 0 }).map_err(text)?;
    let v = gdbdemo_graph_caller();
    graph_tracer::stop().map_err(text)?;
    tracer::reset_buffers();
    println!("gdbdemo: graph caller returned {v}");
    bpf_steps()
}

/// Runs the sequence and reports whether every step worked.
pub fn run() {
    match steps() {
        Ok(()) => println!("gdbdemo: ok"),
        Err(e) => {
            println!("gdbdemo: failed: {e}");
            // Leave nothing registered (each of these is a no-op error if it was not).
            let _ = tracer::stop();
            let _ = graph_tracer::stop();
            let _ = ftrace::unregister_ftrace_function(&OPS);
            let _ = ftrace::ftrace_reset_filters(&OPS);
            let _ = (ftrace_direct::SAMPLE.unload)();
            crate::bpfrt::link::detach_all();
            crate::bpfrt::unload_all();
        }
    }
    black_box(gdbdemo_done());
}
