//! Suite `tracefs`: the shell's command layer called with strings, every file read and written
//! against Linux's text, and every error Linux gives.

use crate::selftest::{TestError, TestResult};
use crate::ftrace::tracer;
use crate::tracefs;
use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Runs one shell line; returns what it printed.
pub(super) fn sh(line: &str) -> String {
    let mut out = String::new();
    tracefs::execute(line, &mut out);
    out
}

/// Runs a line that must print nothing (a successful write).
pub(super) fn ok(line: &str) -> TestResult {
    let out = sh(line);
    if !out.is_empty() {
        return Err(TestError::Fail(alloc::format!("'{line}' printed: {out}")));
    }
    Ok(())
}

/// The trace body: lines that are not comments.
fn body(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
}

/// Runs `f` from a clean tracefs and puts tracefs back afterwards, whatever happened.
fn clean(f: impl FnOnce() -> TestResult) -> TestResult {
    tracefs::reset();
    let r = f();
    tracefs::reset();
    // A failed case may have left a sample loaded.
    for m in tracefs::with_state(|s| s.loaded.clone()) {
        sh(&alloc::format!("rmmod {}", crate::samples::ALL[m].name));
    }
    r
}

ktest! {
    /// available_tracers and current_tracer, with the unknown-tracer error.
    fn tracefs::tracers() {
        clean(|| {
            kassert_eq!(sh("cat available_tracers"), "function_graph function nop\n");
            kassert_eq!(sh("cat current_tracer"), "nop\n");
            ok("echo function > current_tracer")?;
            kassert_eq!(sh("cat /sys/kernel/tracing/current_tracer"), "function\n");
            kassert_eq!(sh("echo bogus > current_tracer"), "sh: write error: current_tracer: Invalid argument\n");
            kassert_eq!(sh("echo > current_tracer"), "sh: write error: current_tracer: Invalid argument\n");
            kassert_eq!(sh("cat current_tracer"), "function\n", "unchanged after the errors");
            ok("echo function_graph > current_tracer")?;
            // Another user holds the function tracer's ops: the switch is refused (EBUSY) and
            // the graph tracer keeps running.
            ok("echo nop > current_tracer")?;
            ok("echo function_graph > current_tracer")?;
            crate::ftrace::tracer::start(Some("chain_c")).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            let e = sh("echo function > current_tracer");
            let _ = crate::ftrace::tracer::stop();
            kassert_eq!(e, "sh: write error: current_tracer: Device or resource busy\n");
            kassert_eq!(sh("cat current_tracer"), "function_graph\n");
            kassert!(crate::ftrace::graph_tracer::is_running());
            ok("echo nop > current_tracer")?;
            kassert!(!crate::ftrace::tracer::FUNCTION_OPS.is_registered());
            kassert!(!crate::ftrace::graph_tracer::is_running());
            Ok(())
        })
    }
}

ktest! {
    /// The function tracer with a filter prints Linux's header and one line per call.
    fn tracefs::function_trace() {
        clean(|| {
            ok("echo 'chain_?' > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            sh("run chain");
            ok("echo nop > current_tracer").ok();
            let t = sh("cat trace");
            for l in t.lines() {
                kdiag!("{l}");
            }
            kassert!(t.starts_with("# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:"), "switching tracer clears: {t}");
            Ok(())
        })?;
        clean(|| {
            ok("echo 'chain_?' > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            sh("run chain");
            let t = sh("cat trace");
            kassert!(t.starts_with("# tracer: function\n#\n# entries-in-buffer/entries-written: 3/3   #P:"), "{t}");
            kassert!(t.contains("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"));
            let b = body(&t);
            kassert_eq!(b.len(), 3, "{b:?}");
            let want = ["selftest::targets::chain_a <-selftest::targets::chain_root", "selftest::targets::chain_b <-selftest::targets::chain_a",
                "selftest::targets::chain_c <-selftest::targets::chain_b"];
            for (l, w) in b.iter().zip(want) {
                kassert!(l.ends_with(w) && l.contains("loongtrace/0-1       [000] "), "'{l}' should end with '{w}'");
            }
            ok("echo noprint-parent > trace_options")?;
            kassert!(body(&sh("cat trace"))[0].ends_with(": selftest::targets::chain_a"));
            ok("echo 1 > options/sym-offset")?;
            kassert!(body(&sh("cat trace"))[0].contains(": selftest::targets::chain_a+0x0/0x"), "{}", sh("cat trace"));
            kassert_eq!(sh("cat options/sym-offset"), "1\n");
            kassert_eq!(sh("echo 2 > options/sym-offset"), "sh: write error: sym-offset: Invalid argument\n");
            kassert_eq!(sh("echo nosuchopt > trace_options"), "sh: write error: trace_options: Invalid argument\n");
            kassert!(sh("cat trace_options").starts_with("noprint-parent\nsym-offset\nnosym-addr\n"), "{}", sh("cat trace_options"));
            // A second run adds three; `>> trace` does not clear, `> trace` does.
            sh("run chain");
            kassert!(sh("cat trace").contains("entries-in-buffer/entries-written: 6/6 "));
            ok("echo >> trace")?;
            kassert!(sh("cat trace").contains("entries-in-buffer/entries-written: 6/6 "));
            ok("echo > trace")?;
            kassert!(sh("cat trace").contains("entries-in-buffer/entries-written: 0/0 "));
            Ok(())
        })
    }
}

ktest! {
    /// Filter files: globs, `!` removal, `>>` append, all-or-nothing errors, notrace.
    fn tracefs::filters() {
        clean(|| {
            kassert_eq!(sh("cat set_ftrace_filter"), "#### all functions enabled ####\n");
            kassert_eq!(sh("cat set_ftrace_notrace"), "#### no functions disabled ####\n");
            ok("echo chain_a chain_b > set_ftrace_filter")?;
            kassert_eq!(sh("cat set_ftrace_filter"), "selftest::targets::chain_a\nselftest::targets::chain_b\n");
            let e = sh("echo chain_c nosuch_function > set_ftrace_filter");
            kassert_eq!(e, "sh: write error: set_ftrace_filter: Invalid argument\n");
            kassert_eq!(sh("cat set_ftrace_filter"), "selftest::targets::chain_a\nselftest::targets::chain_b\n", "nothing changed");
            kassert_eq!(sh("echo nosuch >> set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            ok("echo chain_c >> set_ftrace_filter")?;
            ok("echo '!chain_a' >> set_ftrace_filter")?;
            kassert_eq!(sh("cat set_ftrace_filter"), "selftest::targets::chain_b\nselftest::targets::chain_c\n");
            ok("echo 'selftest::targets::chain_*' > set_ftrace_filter")?;
            kassert_eq!(sh("cat set_ftrace_filter").lines().count(), 4);
            ok("echo chain_b > set_ftrace_notrace")?;
            kassert_eq!(sh("cat set_ftrace_notrace"), "selftest::targets::chain_b\n");
            ok("echo function > current_tracer")?;
            sh("run chain");
            let b = body(&sh("cat trace"));
            kassert_eq!(b.len(), 3, "chain_b is notrace: {b:?}");
            kassert!(!b.iter().any(|l| l.contains("chain_b <-")));
            // Filters apply while tracing: drop chain_root.
            ok("echo '!chain_root' >> set_ftrace_filter")?;
            ok("echo > trace")?;
            sh("run chain");
            kassert_eq!(body(&sh("cat trace")).len(), 2);
            // A function of the tracing machinery cannot be traced.
            kassert_eq!(sh("echo 'ftrace::core::update' > set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            ok("echo > set_ftrace_filter")?;
            kassert_eq!(sh("cat set_ftrace_filter"), "#### all functions enabled ####\n");
            kassert!(sh("cat available_filter_functions").lines().any(|l| l == "selftest::targets::chain_c"));
            kassert!(!sh("cat available_filter_functions").contains("ftrace::core::"));
            kassert_eq!(sh("echo '*:mod:nosuchmodule' > set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            Ok(())
        })
    }
}

ktest! {
    /// function_graph with set_graph_function, set_graph_notrace, max_graph_depth and options.
    fn tracefs::function_graph() {
        clean(|| {
            ok("echo 'chain_*' > set_ftrace_filter")?;
            ok("echo chain_root > set_graph_function")?;
            ok("echo function_graph > current_tracer")?;
            sh("run chain");
            let t = sh("cat trace");
            for l in t.lines() {
                kdiag!("{l}");
            }
            kassert!(t.starts_with("# tracer: function_graph\n#\n# CPU  DURATION                  FUNCTION CALLS\n# |     |   |                     |   |   |   |\n"));
            let b = body(&t);
            let tails = ["|  selftest::targets::chain_root() {", "|    selftest::targets::chain_a() {", "|      selftest::targets::chain_b() {",
                "|        selftest::targets::chain_c();", "|      }", "|    }", "|  }"];
            kassert_eq!(b.len(), tails.len(), "{b:?}");
            for (l, w) in b.iter().zip(tails) {
                kassert!(l.starts_with(" 0) ") && l.ends_with(w), "'{l}' should end with '{w}'");
            }
            kassert!(b[0].starts_with(" 0)               |  "), "{}", b[0]);
            kassert!(b[3].contains(" us    |") || b[3].contains(" us   |") || b[3].contains(" us |"), "leaf duration: {}", b[3]);
            ok("echo 1 > options/funcgraph-retval")?;
            let b = body(&sh("cat trace"));
            kassert!(b[3].ends_with("chain_c(); /* = 0x4 */"), "{}", b[3]);
            kassert!(b[6].ends_with("} /* selftest::targets::chain_root = 0x7 */"), "{}", b[6]);
            ok("echo 0 > options/funcgraph-retval")?;
            ok("echo funcgraph-tail > trace_options")?;
            kassert!(body(&sh("cat trace"))[6].ends_with("} /* selftest::targets::chain_root */"));
            ok("echo 1 > options/funcgraph-abstime")?;
            let t = sh("cat trace");
            kassert!(t.contains("#     TIME        CPU  DURATION"), "{t}");
            kassert!(body(&t)[0].contains(" |   0) "), "{}", body(&t)[0]);
            // set_graph_notrace hides chain_b and what it calls.
            ok("echo chain_b > set_graph_notrace")?;
            ok("echo > trace")?;
            sh("run chain");
            let b = body(&sh("cat trace"));
            kassert_eq!(b.len(), 3, "root and chain_a (now a leaf) only: {b:?}");
            kassert!(b[1].ends_with("|    selftest::targets::chain_a();"), "{}", b[1]);
            ok("echo > set_graph_notrace")?;
            ok("echo 2 > max_graph_depth")?;
            kassert_eq!(sh("cat max_graph_depth"), "2\n");
            kassert_eq!(sh("echo -1 > max_graph_depth"), "sh: write error: max_graph_depth: Invalid argument\n");
            ok("echo > trace")?;
            sh("run chain");
            kassert_eq!(body(&sh("cat trace")).len(), 3, "depth 2: root and chain_a (a leaf)");
            kassert_eq!(sh("cat set_graph_function"), "selftest::targets::chain_root\n");
            kassert_eq!(sh("echo nosuch > set_graph_function"), "sh: write error: set_graph_function: Invalid argument\n");
            kassert_eq!(sh("cat set_graph_function"), "selftest::targets::chain_root\n");
            Ok(())
        })
    }
}

ktest! {
    /// tracing_on, trace_marker, trace_pipe (consuming) and the per-CPU files and sizes.
    fn tracefs::buffers_and_marker() {
        clean(|| {
            ok("echo chain_c > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            kassert_eq!(sh("cat tracing_on"), "1\n");
            kassert_eq!(sh("echo on > tracing_on"), "sh: write error: tracing_on: Invalid argument\n");
            ok("echo 0 > tracing_on")?;
            sh("run chain");
            ok("echo lost > trace_marker")?;
            kassert_eq!(body(&sh("cat trace")).len(), 0, "nothing recorded while off");
            ok("echo 1 > tracing_on")?;
            ok("echo hello tracefs > trace_marker")?;
            sh("run chain");
            let b = body(&sh("cat trace"));
            kassert_eq!(b.len(), 2, "{b:?}");
            kassert!(b[0].ends_with(": tracing_mark_write: hello tracefs"), "{}", b[0]);
            kassert_eq!(sh("cat trace_marker"), "cat: trace_marker: Permission denied\n");
            let cpu0 = sh("cat per_cpu/cpu0/trace");
            kassert_eq!(body(&cpu0).len(), 2);
            kassert_eq!(body(&sh("cat per_cpu/cpu1/trace")).len(), if tracefs::cpus() > 1 { 0 } else { 2 });
            let p = sh("cat trace_pipe");
            kassert_eq!(p.lines().count(), 2, "{p}");
            kassert!(!p.contains("# tracer"), "no header in trace_pipe");
            kassert_eq!(sh("cat trace_pipe"), "", "consumed");
            kassert_eq!(body(&sh("cat trace")).len(), 0, "trace_pipe consumed the events");
            kassert_eq!(sh("echo x > trace_pipe"), "sh: can't create trace_pipe: Permission denied\n");
            let kb = sh("cat buffer_size_kb");
            kassert_eq!(kb, alloc::format!("{}\n", tracer::boot_entries() * tracer::SLOT_BYTES / 1024));
            kassert_eq!(sh("echo 0 > buffer_size_kb"), "sh: write error: buffer_size_kb: Invalid argument\n");
            kassert_eq!(sh("echo 12x > buffer_size_kb"), "sh: write error: buffer_size_kb: Invalid argument\n");
            kassert_eq!(sh("echo 999999 > buffer_size_kb"), "sh: write error: buffer_size_kb: Cannot allocate memory\n");
            kassert_eq!(sh("cat buffer_size_kb"), kb, "unchanged");
            ok("echo 1 > per_cpu/cpu0/buffer_size_kb")?;
            if tracefs::cpus() > 1 {
                kassert_eq!(sh("cat buffer_size_kb"), "X\n");
            }
            sh("run chain 100");
            let n = body(&sh("cat trace")).len();
            kassert_eq!(n, 1024 / tracer::SLOT_BYTES, "a 1 KiB buffer keeps {} events", 1024 / tracer::SLOT_BYTES);
            kassert!(sh("cat buffer_total_size_kb").trim().parse::<u64>().is_ok());
            kassert_eq!(sh("cat per_cpu/cpu99/trace"), "cat: per_cpu/cpu99/trace: No such file or directory\n");
            Ok(())
        })
    }
}

ktest! {
    /// enabled_functions and touched_functions in Linux's format.
    fn tracefs::enabled_functions() {
        clean(|| {
            ok("echo chain_a > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            let e = sh("cat enabled_functions");
            kdiag!("{e}");
            kassert!(e.starts_with("selftest::targets::chain_a (1)       O   \tops: 0x"), "{e}");
            kassert!(e.contains("(ftrace::tracer::function_trace_call+0x0/0x") || e.contains("function_trace_call"), "{e}");
            kassert_eq!(e.lines().count(), 1);
            ok("echo function_graph > current_tracer")?;
            let e = sh("cat enabled_functions");
            // The graph entry is an ordinary argument-frame ops on `ftrace_caller` (no `R`): the
            // site's literal names it, as Linux's DYNAMIC_FTRACE_WITH_ARGS graph entry.
            kassert!(e.starts_with("selftest::targets::chain_a (1)       O   \tops: 0x"), "{e}");
            kassert!(e.contains("ftrace_graph_func"), "{e}");
            ok("echo nop > current_tracer")?;
            kassert_eq!(sh("cat enabled_functions"), "");
            kassert!(sh("cat touched_functions").lines().any(|l| l.starts_with("selftest::targets::chain_a (0)")));
            kassert_eq!(sh("echo > enabled_functions"), "sh: can't create enabled_functions: Permission denied\n");
            // A direct sample: D and the trampoline, called straight (no R).
            kassert_eq!(sh("insmod ftrace-direct"), "");
            let e = sh("cat enabled_functions");
            kdiag!("{e}");
            kassert!(e.starts_with("samples::targets::wake_up_process (1)     D     \n\tdirect-->"), "{e}");
            kassert!(e.contains("\tdirect-->sample_direct_tramp+0x0/0x"), "{e}");
            kassert_eq!(e.lines().count(), 2, "{e}");
            // With the function tracer on the same function the site goes through
            // ftrace_regs_caller: R, and still D with the same trampoline (as Linux shows it).
            ok("echo wake_up_process > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            let both = sh("cat enabled_functions");
            kdiag!("{both}");
            kassert!(both.starts_with("samples::targets::wake_up_process (2) R   D     \n\tdirect-->"), "{both}");
            kassert_eq!(both.lines().nth(1), e.lines().nth(1), "the same trampoline on both routes");
            ok("echo nop > current_tracer")?;
            kassert_eq!(sh("rmmod ftrace_direct"), "");
            Ok(())
        })
    }
}

ktest! {
    /// set_ftrace_filter commands: traceoff, traceon, stacktrace, with counts and removal.
    fn tracefs::filter_commands() {
        clean(|| {
            ok("echo 'selftest::targets::chain_*' > set_ftrace_filter")?;
            ok("echo chain_b:traceoff >> set_ftrace_filter")?;
            let f = sh("cat set_ftrace_filter");
            kassert!(f.ends_with("selftest::targets::chain_b:traceoff:unlimited\n"), "{f}");
            kassert_eq!(f.lines().count(), 5, "four functions and the probe: {f}");
            ok("echo function > current_tracer")?;
            sh("run chain");
            kassert_eq!(sh("cat tracing_on"), "0\n", "chain_b turned tracing off");
            let b = body(&sh("cat trace"));
            kassert_eq!(b.len(), 2, "only chain_root and chain_a before chain_b: {b:?}");
            kassert!(b[1].ends_with("chain_a <-selftest::targets::chain_root"), "{}", b[1]);
            ok("echo '!chain_b:traceoff' >> set_ftrace_filter")?;
            kassert!(!sh("cat set_ftrace_filter").contains("traceoff"));
            ok("echo chain_c:traceon:1 >> set_ftrace_filter")?;
            kassert!(sh("cat set_ftrace_filter").contains("selftest::targets::chain_c:traceon:count=1\n"));
            sh("run chain");
            kassert_eq!(sh("cat tracing_on"), "1\n");
            kassert!(sh("cat set_ftrace_filter").contains("chain_c:traceon:count=0\n"));
            ok("echo > trace")?;
            ok("echo chain_c:stacktrace:1 >> set_ftrace_filter")?;
            sh("run chain");
            let t = sh("cat trace");
            kdiag!("{t}");
            kassert!(t.contains(": <stack trace>\n => selftest::targets::chain_c\n => selftest::targets::chain_b\n => selftest::targets::chain_a\n => selftest::targets::chain_root\n"), "{t}");
            kassert_eq!(sh("echo chain_c:bogus >> set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            kassert_eq!(sh("echo chain_c:traceoff:x >> set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            kassert_eq!(sh("echo nosuch:traceoff >> set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            Ok(())
        })
    }
}

ktest! {
    /// The function profiler: hits and times per function, sorted by time.
    fn tracefs::function_profiler() {
        clean(|| {
            ok("echo 'chain_*' > set_ftrace_filter")?;
            kassert_eq!(sh("cat function_profile_enabled"), "0\n");
            kassert_eq!(sh("echo yes > function_profile_enabled"), "sh: write error: function_profile_enabled: Invalid argument\n");
            ok("echo 1 > function_profile_enabled")?;
            sh("run chain 3");
            ok("echo 0 > function_profile_enabled")?;
            let t = sh("cat trace_stat/function0");
            for l in t.lines() {
                kdiag!("{l}");
            }
            let lines: Vec<&str> = t.lines().collect();
            kassert_eq!(lines[0], "  Function                               Hit    Time            Avg             s^2");
            kassert_eq!(lines.len(), 6, "{t}");
            let row = |n: &str| alloc::format!("  {n:<30}  {:>10}    ", 3);
            kassert!(lines[2].starts_with(&row("selftest::targets::chain_root")), "{}", lines[2]);
            kassert!(lines[5].starts_with(&row("selftest::targets::chain_c")), "{}", lines[5]);
            kassert!(lines[2].matches(" us").count() == 3);
            sh("run chain");
            kassert_eq!(sh("cat trace_stat/function0"), t, "disabled: no change");
            kassert_eq!(sh("cat trace_stat/function99"), "cat: trace_stat/function99: No such file or directory\n");
            Ok(())
        })
    }
}

ktest! {
    /// The stack tracer: the deepest stack with frame sizes, filter and reset.
    fn tracefs::stack_tracer() {
        clean(|| {
            kassert!(sh("cat stack_trace").contains("#  Stack tracer disabled"));
            ok("echo fgraph_recurse > stack_trace_filter")?;
            ok("echo 1 > /proc/sys/kernel/stack_tracer_enabled")?;
            kassert_eq!(sh("cat /proc/sys/kernel/stack_tracer_enabled"), "1\n");
            sh("run recurse 3");
            let small = sh("cat stack_max_size").trim().parse::<u64>().unwrap_or(0);
            sh("run recurse 20");
            let big = sh("cat stack_max_size").trim().parse::<u64>().unwrap_or(0);
            let t = sh("cat stack_trace");
            for l in t.lines().take(8) {
                kdiag!("{l}");
            }
            kassert!(small > 0 && big > small, "deeper recursion, deeper stack: {small} {big}");
            kassert!(t.starts_with("        Depth    Size   Location    ("), "{t}");
            let rows: Vec<&str> = t.lines().skip(2).collect();
            kassert!(rows[0].starts_with(&alloc::format!("  0) {big:>8}       0   selftest::targets::fgraph_recurse+0x0/")), "{}", rows[0]);
            kassert!(rows.iter().filter(|r| r.contains("fgraph_recurse")).count() >= 20, "{t}");
            // Sizes add up to the depth.
            let sizes: u64 = rows.iter().filter_map(|r| r.split_whitespace().nth(2)?.parse::<u64>().ok()).sum();
            kassert_eq!(sizes, big);
            ok("echo 0 > stack_max_size")?;
            kassert_eq!(sh("cat stack_max_size"), "0\n");
            kassert_eq!(sh("echo x > stack_max_size"), "sh: write error: stack_max_size: Invalid argument\n");
            kassert_eq!(sh("echo nosuch > stack_trace_filter"), "sh: write error: stack_trace_filter: Invalid argument\n");
            kassert_eq!(sh("echo 0 > stack_trace"), "sh: can't create stack_trace: Permission denied\n");
            ok("echo 0 > /proc/sys/kernel/stack_tracer_enabled")?;
            kassert!(!crate::ftrace::stack_tracer::STACK_OPS.is_registered());
            Ok(())
        })
    }
}

ktest! {
    /// Shell commands, paths and their errors; insmod/rmmod/lsmod of the samples.
    fn tracefs::shell_commands() {
        clean(|| {
            kassert!(sh("ls").contains("available_tracers"));
            let want: Vec<String> = (0..tracefs::cpus()).map(|c| alloc::format!("cpu{c}")).collect();
            kassert_eq!(sh("ls per_cpu"), alloc::format!("{}\n", want.join("  ")));
            kassert_eq!(sh("ls per_cpu/cpu0"), "buffer_size_kb  stats  trace  trace_pipe\n");
            kassert_eq!(sh("ls nosuchdir"), "ls: cannot access 'nosuchdir': No such file or directory\n");
            kassert_eq!(sh("ls trace"), "trace\n");
            kassert_eq!(sh("cat /etc/passwd"), "cat: /etc/passwd: No such file or directory\n");
            kassert_eq!(sh("cat per_cpu"), "cat: per_cpu: Is a directory\n");
            kassert_eq!(sh("echo x > nosuchfile"), "sh: can't create nosuchfile: No such file or directory\n");
            kassert_eq!(sh("frobnicate"), "sh: frobnicate: not found (try 'help')\n");
            kassert_eq!(sh("echo 'unterminated"), "sh: syntax error: unterminated quoted string\n");
            kassert_eq!(sh("echo x >"), "sh: syntax error: unexpected newline\n");
            kassert_eq!(sh("echo hello   world"), "hello world\n");
            kassert!(sh("help").contains("cat FILE"));
            kassert_eq!(sh("lsmod"), "Module                  Size  Used by\n");
            kassert_eq!(sh("insmod ftrace-direct-too.ko"), "");
            kassert_eq!(sh("lsmod"), "Module                  Size  Used by\nftrace_direct_too          0  0\n");
            kassert_eq!(sh("insmod ftrace_direct_too"), "insmod: ERROR: could not insert module ftrace_direct_too: File exists\n");
            kassert_eq!(sh("insmod nosuch"), "insmod: ERROR: could not load module nosuch: No such file or directory\n");
            kassert!(sh("run samples").contains("ftrace-direct-too"), "{}", sh("run samples"));
            kassert_eq!(sh("rmmod ftrace_direct_too"), "");
            kassert_eq!(sh("rmmod ftrace_direct_too"), "rmmod: ERROR: Module ftrace_direct_too is not currently loaded\n");
            kassert!(sh("run").starts_with("usage: run WORKLOAD [N]"));
            kassert_eq!(sh("run recurse 1000"), "run: recurse: at most 200\n");
            kassert_eq!(sh("run chain x"), "run: x: Invalid argument\n");
            kassert!(sh("run timer 2").starts_with("timer_work ran "));
            Ok(())
        })
    }
}

ktest! {
    /// Loadable modules through the shell: insmod, :mod: filters, tracing a module function,
    /// rmmod refused (EBUSY) while traced, lsmod.
    fn tracefs::modules() {
        if crate::module::fw_cfg_read("sample_mod").is_none() {
            crate::kskip!("QEMU was given no sample_mod object (fw_cfg opt/loongtrace/modules/sample_mod)");
        }
        clean(|| {
            kassert_eq!(sh("insmod sample_mod.o"), "");
            kassert!(sh("lsmod").contains("\nsample_mod "), "{}", sh("lsmod"));
            kassert_eq!(sh("insmod sample_mod"), "insmod: ERROR: could not insert module sample_mod: File exists\n");
            kassert_eq!(sh("insmod nosuch_mod"), "insmod: ERROR: could not load module nosuch_mod: No such file or directory\n");
            kassert!(sh("cat available_filter_functions").contains("sample_mod_work [sample_mod]\n"));
            ok("echo '*:mod:sample_mod' > set_ftrace_filter")?;
            let f = sh("cat set_ftrace_filter");
            kassert!(f.lines().all(|l| l.ends_with(" [sample_mod]")) && f.contains("sample_mod_step [sample_mod]"), "{f}");
            kassert_eq!(sh("echo '*:mod:nosuch' > set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
            ok("echo 'sample_mod_step:mod:sample_mod' > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            kassert!(sh("run module 2").starts_with("sample_mod_work(2) = 0x"));
            let b = body(&sh("cat trace"));
            kassert_eq!(b.len(), 2, "{b:?}");
            kassert!(b[0].contains(": sample_mod_step <-sample_mod_work"), "{}", b[0]);
            let e = sh("rmmod sample_mod");
            kassert!(e.starts_with("rmmod: ERROR: Module sample_mod is in use"), "{e}");
            kassert!(sh("lsmod").contains("\nsample_mod "), "still loaded");
            ok("echo nop > current_tracer")?;
            kassert_eq!(sh("rmmod sample_mod"), "");
            kassert!(!sh("lsmod").contains("sample_mod"));
            kassert_eq!(sh("cat set_ftrace_filter"), "#### all functions enabled ####\n", "the module's functions left the filter");
            kassert_eq!(sh("rmmod sample_mod"), "rmmod: ERROR: Module sample_mod is not currently loaded\n");
            Ok(())
        })
    }
}

/// Calls of `dyn_func2` CPU `cpu` makes in `tracefs::per_cpu_accounting`.
fn calls_on(cpu: usize) -> u64 {
    300 + 170 * cpu as u64
}

fn call_dyn_func2(cpu: usize) {
    for _ in 0..calls_on(cpu) {
        core::hint::black_box(crate::selftest::targets::dyn_func2());
    }
}

/// One `per_cpu/cpuN/stats` field as a number.
fn stat(cpu: usize, field: &str) -> Option<u64> {
    let text = sh(&alloc::format!("cat per_cpu/cpu{cpu}/stats"));
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().parse().ok()
}

ktest! {
    /// Each CPU makes a different number of traced calls; its `per_cpu/cpuN/stats` and its
    /// profiler file `trace_stat/functionN` show exactly that CPU's work, and `trace_pipe`
    /// moves the entries to `read events`.
    fn tracefs::per_cpu_accounting() {
        clean(|| {
            let n = tracefs::cpus();
            ok("echo dyn_func2 > set_ftrace_filter")?;
            ok("echo 1 > function_profile_enabled")?;
            ok("echo function > current_tracer")?;
            let others: Vec<usize> = (1..n).filter(|&c| crate::smp::run_on(c, call_dyn_func2)).collect();
            call_dyn_func2(0);
            for c in 1..arch::boot::MAX_CPUS {
                while crate::smp::work_running(c) {
                    core::hint::spin_loop();
                }
            }
            ok("echo 0 > tracing_on")?;
            ok("echo 0 > function_profile_enabled")?;
            kdiag!("{} CPUs worked", others.len() + 1);
            for c in core::iter::once(0).chain(others.iter().copied()) {
                let want = calls_on(c);
                kassert_eq!(stat(c, "entries"), Some(want), "cpu{c} entries");
                kassert_eq!(stat(c, "bytes"), Some(want * tracer::SLOT_BYTES as u64), "cpu{c} bytes");
                kassert_eq!(stat(c, "overrun"), Some(0), "cpu{c} overrun");
                kassert_eq!(stat(c, "dropped events"), Some(0), "cpu{c} dropped");
                let prof = sh(&alloc::format!("cat trace_stat/function{c}"));
                let row = prof.lines().find(|l| l.contains("targets::dyn_func2"));
                let hits = row.and_then(|r| r.split_whitespace().nth(1)).and_then(|h| h.parse::<u64>().ok());
                kassert_eq!(hits, Some(want), "cpu{c} profile: {prof}");
            }
            let piped = sh("cat per_cpu/cpu0/trace_pipe").lines().count() as u64;
            kassert_eq!(piped, calls_on(0));
            kassert_eq!((stat(0, "entries"), stat(0, "read events")), (Some(0), Some(calls_on(0))), "after trace_pipe");
            Ok(())
        })
    }
}

/// Whether `keep_calling_dyn_func2` goes on.
static KEEP_CALLING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn keep_calling_dyn_func2(_cpu: usize) {
    while KEEP_CALLING.load(core::sync::atomic::Ordering::Acquire) {
        core::hint::black_box(crate::selftest::targets::dyn_func2());
    }
}

ktest! {
    /// `buffer_size_kb` really resizes the rings, also while other CPUs write into them: the
    /// rings stay whole, each holds what its size says, `buffer_total_size_kb` adds them up, and
    /// bad sizes change nothing.
    fn tracefs::resize_rings() {
        clean(|| {
            let n = tracefs::cpus() as u64;
            let boot_kb = (tracer::boot_entries() * tracer::SLOT_BYTES / 1024) as u64;
            kassert_eq!(sh("cat buffer_total_size_kb"), alloc::format!("{}\n", boot_kb * n));
            ok("echo dyn_func2 > set_ftrace_filter")?;
            ok("echo function > current_tracer")?;
            // Resizes while the other CPUs write: the rings stay whole and hold at most their size.
            KEEP_CALLING.store(true, core::sync::atomic::Ordering::Release);
            let others: Vec<usize> = (1..tracefs::cpus()).filter(|&c| crate::smp::run_on(c, keep_calling_dyn_func2)).collect();
            for kb in [64u64, 8, 4096, 1, 256, 2, 2048, 16].iter().cycle().take(24) {
                ok(&alloc::format!("echo {kb} > buffer_size_kb"))?;
                for _ in 0..2000 {
                    core::hint::spin_loop();
                }
            }
            KEEP_CALLING.store(false, core::sync::atomic::Ordering::Release);
            for c in 1..arch::boot::MAX_CPUS {
                while crate::smp::work_running(c) {
                    core::hint::spin_loop();
                }
            }
            for &c in &others {
                let entries = stat(c, "entries").unwrap_or(u64::MAX);
                kassert!(entries <= 16 * 1024 / tracer::SLOT_BYTES as u64, "cpu{c}: {entries} entries in a 16 KiB ring");
                kassert_eq!(body(&sh(&alloc::format!("cat per_cpu/cpu{c}/trace"))).len() as u64, entries, "cpu{c}'s trace shows its entries");
            }
            kdiag!("24 resizes while {} other CPUs wrote", others.len());
            // While tracing on CPU 0: 64 KiB (1024 slots), then 8 KiB; each size holds that many.
            for (kb, slots) in [(64u64, 1024u64), (5, 128)] {
                ok(&alloc::format!("echo {kb} > buffer_size_kb"))?;
                let shown = (slots * tracer::SLOT_BYTES as u64 / 1024).to_string();
                kassert_eq!(sh("cat buffer_size_kb").trim(), shown, "{kb} KiB rounds up to {slots} slots");
                kassert_eq!(sh("cat buffer_total_size_kb").trim(), (slots * tracer::SLOT_BYTES as u64 / 1024 * n).to_string());
                kassert_eq!(stat(0, "entries"), Some(0), "a resize empties the ring");
                for _ in 0..slots + 50 {
                    core::hint::black_box(crate::selftest::targets::dyn_func2());
                }
                kassert_eq!(stat(0, "entries"), Some(slots));
                kassert_eq!(stat(0, "overrun"), Some(50));
                kassert_eq!(body(&sh("cat per_cpu/cpu0/trace")).len() as u64, slots);
            }
            let before = sh("cat buffer_size_kb");
            kassert_eq!(sh("echo 0 > buffer_size_kb"), "sh: write error: buffer_size_kb: Invalid argument\n");
            kassert_eq!(sh(&alloc::format!("echo {} > buffer_size_kb", tracefs::MAX_BUFFER_KB + 1)), "sh: write error: buffer_size_kb: Cannot allocate memory\n");
            kassert_eq!(sh("cat buffer_size_kb"), before, "refused sizes change nothing");
            ok(&alloc::format!("echo {} > buffer_size_kb", tracefs::MAX_BUFFER_KB))?;
            kassert_eq!(sh("cat per_cpu/cpu0/buffer_size_kb").trim(), tracefs::MAX_BUFFER_KB.to_string(), "the largest size");
            ok("echo nop > current_tracer")?;
            Ok(())
        })
    }
}
