//! Real recordings through `ltrace record`'s library: trace.dat read back by Debian's
//! `trace-cmd report` must list exactly what the kernel printed in its own trace text; the flame
//! graph and Chrome JSON of a real run must hold the calls; `trace_marker` writes of a recorded
//! script come out as Linux's `print` events; a corrupted or cut transfer must fail.

use loongtrace_tools::capture::{self, CaptureError, Recording};
use loongtrace_tools::record::{self, RecordConfig, RecordError};
use loongtrace_tools::runner::RunConfig;
use loongtrace_tools::{chrome, flame, tracedat};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn config(tracer: &str, smp: u32) -> RecordConfig {
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let mut run = RunConfig::new(kernel);
    run.smp = smp;
    run.timeout = Duration::from_secs(180);
    RecordConfig::new(run, tracer)
}

fn record(cfg: &RecordConfig) -> (String, Recording) {
    let (console, rec) = record::record(cfg, |_| {}).unwrap_or_else(|e| panic!("recording failed: {e}"));
    (capture::kernel_trace_text(&console), rec)
}

fn scratch(name: &str) -> PathBuf {
    let dir = loongtrace_tests::workspace_dir().join("target/export-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `trace-cmd report` of `rec` written as trace.dat: stdout lines, after checking it printed no
/// warning.
fn trace_cmd_report(rec: &Recording, name: &str, extra: &[&str]) -> Vec<String> {
    let path = scratch(name);
    std::fs::write(&path, tracedat::write(rec).unwrap()).unwrap();
    let out = Command::new("trace-cmd")
        .arg("report")
        .args(extra)
        .arg("-i")
        .arg(&path)
        .output()
        .expect("trace-cmd runs (make setup installs Debian's trace-cmd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "trace-cmd failed: {stderr}");
    assert!(stderr.trim().is_empty(), "trace-cmd printed warnings: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for bad in ["warning", "Warning", "failed", "ERROR", "bad ", "unknown"] {
        assert!(!stdout.contains(bad), "trace-cmd output mentions '{bad}':\n{stdout}");
    }
    assert_eq!(stdout.lines().next(), Some(format!("cpus={}", rec.cpus.len()).as_str()));
    stdout.lines().skip(1).map(str::to_string).collect()
}

/// A kernel symbol name as kallsyms carries it (one word).
fn word(name: &str) -> String {
    name.trim().replace(char::is_whitespace, "_")
}

/// The task column (`comm-pid`) of a function-layout line names the CPU's context as
/// `formats::task` does: `loongtrace/<cpu>-<cpu + 1>`, in the kernel's text and in trace-cmd's.
fn check_task(line: &str, cpu: u32) {
    let task = line[..line.find('[').unwrap()].trim();
    assert_eq!(task, format!("loongtrace/{cpu}-{}", cpu + 1), "task column of '{line}'");
}

/// One line of a function trace: a traced call, or a `trace_marker` write.
#[derive(Debug, PartialEq, Eq)]
enum FnLine {
    Call { cpu: u32, ts: String, func: String, parent: String },
    Marker { cpu: u32, ts: String, text: String },
}

impl FnLine {
    fn cpu(&self) -> u32 {
        match self {
            FnLine::Call { cpu, .. } | FnLine::Marker { cpu, .. } => *cpu,
        }
    }
}

/// The body lines of the kernel's function-layout text: (CPU, timestamp, the rest after it),
/// each line's task column checked.
fn kernel_lines(text: &str) -> Vec<(u32, &str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cpu = l[l.find('[').unwrap() + 1..l.find(']').unwrap()].parse().unwrap();
            check_task(l, cpu);
            let after = &l[l.find(']').unwrap() + 1..];
            let (ts, rest) = after.trim_start().split_once(' ').unwrap().1.trim_start().split_once(": ").unwrap();
            (cpu, ts, rest)
        })
        .collect()
}

/// The kernel's function trace lines (`func <-parent`, or `tracing_mark_write: text`).
fn kernel_function_lines(text: &str) -> Vec<FnLine> {
    kernel_lines(text)
        .into_iter()
        .map(|(cpu, ts, rest)| {
            let ts = ts.to_string();
            if let Some(text) = rest.strip_prefix("tracing_mark_write: ") {
                return FnLine::Marker { cpu, ts, text: text.to_string() };
            }
            let (func, parent) = rest.split_once(" <-").unwrap();
            FnLine::Call { cpu, ts, func: word(func), parent: word(parent) }
        })
        .collect()
}

/// The event lines of a `trace-cmd report`: (CPU, timestamp, the rest after it), each line's
/// task column checked.
fn trace_cmd_lines(lines: &[String]) -> Vec<(u32, &str, &str)> {
    lines
        .iter()
        .filter(|l| !l.trim_start().starts_with("CPU:"))
        .map(|l| {
            let cpu = l[l.find('[').unwrap() + 1..l.find(']').unwrap()].parse().unwrap();
            check_task(l, cpu);
            let (ts, rest) = l[l.find(']').unwrap() + 1..].trim_start().split_once(": ").unwrap();
            (cpu, ts, rest)
        })
        .collect()
}

/// The same from `trace-cmd report -O parent=1 -O indent=0` (`function:` and `print:` events).
fn trace_cmd_function_lines(lines: &[String]) -> Vec<FnLine> {
    trace_cmd_lines(lines)
        .into_iter()
        .map(|(cpu, ts, rest)| {
            let l = rest;
            let ts = ts.to_string();
            if let Some(print) = rest.strip_prefix("print:") {
                let text = print.trim_start().strip_prefix("tracing_mark_write: ").unwrap_or_else(|| panic!("print event not from trace_marker: {l}"));
                return FnLine::Marker { cpu, ts, text: text.to_string() };
            }
            let rest = rest.strip_prefix("function:").unwrap_or_else(|| panic!("not a function event: {l}"));
            let (func, parent) = rest.trim().split_once(" <-- ").unwrap();
            FnLine::Call { cpu, ts, func: func.to_string(), parent: parent.to_string() }
        })
        .collect()
}

#[test]
fn function_trace_dat_matches_the_kernels_trace() {
    let mut cfg = config("function", 2);
    cfg.workload = "smp_chain".into();
    cfg.duration_ms = 30;
    let (text, rec) = record(&cfg);
    let want = kernel_function_lines(&text);
    let events: usize = rec.cpus.iter().map(|c| c.events.len()).sum();
    assert_eq!(want.len(), events, "the kernel printed every event it sent");
    assert!(want.len() > 20, "a real trace, not a handful of lines: {text}");
    for f in ["selftest::targets::chain_c", "irq::timer_tick", "record::chain_on_cpu"] {
        assert!(want.iter().any(|w| matches!(w, FnLine::Call { func, .. } if func == f)), "{f} traced:\n{text}");
    }
    assert!(want.iter().any(|w| w.cpu() == 1), "CPU 1 traced too");
    let got = trace_cmd_function_lines(&trace_cmd_report(&rec, "function.dat", &["-O", "parent=1", "-O", "indent=0"]));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i} differs");
    }
}

#[derive(Debug, PartialEq, Eq)]
enum GraphLine {
    Entry { cpu: u32, depth: usize, func: String },
    Leaf { cpu: u32, depth: usize, func: String, dur: String },
    Exit { cpu: u32, depth: usize, dur: String },
    /// A `trace_marker` write: `/* text */` in the kernel's text, a `print` event in trace-cmd's.
    Marker { cpu: u32, text: String },
}

/// Splits `<duration column>|<indent><call>` into the duration, depth and call text.
fn graph_body(cpu: u32, dur: &str, body: &str) -> GraphLine {
    let dur = dur.trim().trim_start_matches(['+', '!', '#', '*', '@', '$']).trim().to_string();
    let indent = body.len() - body.trim_start().len();
    let depth = indent / 2 - 1;
    let call = body.trim();
    if let Some(text) = call.strip_prefix("/* ").and_then(|c| c.strip_suffix(" */")) {
        GraphLine::Marker { cpu, text: text.to_string() }
    } else if call.starts_with('}') {
        GraphLine::Exit { cpu, depth, dur }
    } else if let Some(f) = call.strip_suffix("();") {
        GraphLine::Leaf { cpu, depth, func: word(f), dur }
    } else {
        GraphLine::Entry { cpu, depth, func: word(call.strip_suffix("() {").unwrap()) }
    }
}

fn kernel_graph_lines(text: &str) -> Vec<GraphLine> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (cpu, rest) = l.trim_start().split_once(") ").unwrap();
            let (dur, body) = rest.split_once('|').unwrap();
            graph_body(cpu.parse().unwrap(), dur, body)
        })
        .collect()
}

fn trace_cmd_graph_lines(lines: &[String]) -> Vec<GraphLine> {
    lines
        .iter()
        .filter(|l| !l.trim_start().starts_with("CPU:"))
        .map(|l| {
            let cpu = l[l.find('[').unwrap() + 1..l.find(']').unwrap()].parse().unwrap();
            if let Some((_, text)) = l.split_once(" print: ") {
                let text = text.trim_start().strip_prefix("tracing_mark_write: ").unwrap_or_else(|| panic!("print event not from trace_marker: {l}"));
                return GraphLine::Marker { cpu, text: text.to_string() };
            }
            let rest = l.split_once("funcgraph_").unwrap().1;
            let rest = rest.split_once(':').unwrap().1;
            let (dur, body) = rest.split_once('|').unwrap();
            graph_body(cpu, dur, body)
        })
        .collect()
}

/// The duration of an exit or leaf line in ns (0 for the others).
fn graph_ns(l: &GraphLine) -> u64 {
    match l {
        GraphLine::Exit { dur, .. } | GraphLine::Leaf { dur, .. } => {
            let (us, frac) = dur.trim_end_matches(" us").trim().split_once('.').unwrap();
            us.parse::<u64>().unwrap() * 1000 + frac.parse::<u64>().unwrap()
        }
        GraphLine::Entry { .. } | GraphLine::Marker { .. } => 0,
    }
}

/// Total ns of the calls to the function whose name ends with `func`: its leaf lines, and the exit
/// lines paired with its entries (per CPU, by depth), for the calls something nested in.
fn call_ns(lines: &[GraphLine], func: &str) -> u64 {
    let mut open: Vec<(u32, usize, &str)> = Vec::new();
    let mut total = 0;
    for l in lines {
        match l {
            GraphLine::Entry { cpu, depth, func } => open.push((*cpu, *depth, func)),
            GraphLine::Exit { cpu, depth, .. } => {
                let at = open.iter().rposition(|(c, d, _)| c == cpu && d == depth).expect("an exit without its entry");
                if open.remove(at).2.ends_with(func) {
                    total += graph_ns(l);
                }
            }
            GraphLine::Leaf { func: f, .. } if f.ends_with(func) => total += graph_ns(l),
            GraphLine::Leaf { .. } | GraphLine::Marker { .. } => {}
        }
    }
    total
}

/// CI once caught a timer tick inside chain_c, which made it an entry/exit pair; the total must
/// come from the pair then (this checks the helper on such a trace, without booting).
#[test]
fn call_time_pairs_an_exit_with_its_entry_when_an_interrupt_nests() {
    let text = "\
 0)                 |  selftest::targets::chain_root() {
 0)                 |    selftest::targets::chain_a() {
 0)                 |      selftest::targets::chain_b() {
 0)       42.200 us  |        selftest::targets::chain_c();
 0)                 |        selftest::targets::chain_c() {
 0)        5.710 us  |          irq::timer_tick();
 0)       30.160 us  |        } /* selftest::targets::chain_c */
 0)      359.240 us  |      } /* selftest::targets::chain_b */
 0)      382.460 us  |    } /* selftest::targets::chain_a */
 1)        1.000 us  |  selftest::targets::chain_c();
 0)      507.190 us  |  } /* selftest::targets::chain_root */
";
    let lines = kernel_graph_lines(text);
    assert_eq!(call_ns(&lines, "chain_c"), 42_200 + 30_160 + 1_000);
    assert_eq!(call_ns(&lines, "timer_tick"), 5_710);
    assert_eq!(call_ns(&lines, "chain_root"), 507_190);
    assert_eq!(call_ns(&lines, "chain_b"), 359_240);
}

#[test]
fn graph_trace_dat_flame_graph_and_json_match_the_kernels_trace() {
    // One chain at a time, so the text can be compared line for line: trace-cmd folds a call and
    // its return into one leaf line only when the return is the very next event of the whole
    // file, where the kernel (like Linux) looks at the next event of the same CPU; when two CPUs'
    // events interleave, the two texts fold differently (both right; the next test compares
    // them per CPU). The chain runs on a 2-CPU guest, from a script that writes a marker before
    // and after it (Linux prints them as comments).
    let script = scratch("graph.sh");
    std::fs::write(&script, "echo before the chain > trace_marker\nrun chain\necho after the chain > trace_marker\n").unwrap();
    let mut cfg = config("function_graph", 2);
    cfg.workload = "script".into();
    cfg.script = Some(script);
    cfg.graph_function = vec!["chain_root".into()];
    let (text, rec) = record(&cfg);
    std::fs::write(scratch("graph.txt"), &text).unwrap();
    let want = kernel_graph_lines(&text);
    assert!(want.len() >= 9, "the chain and the markers:\n{text}");
    assert_eq!(want.first(), Some(&GraphLine::Marker { cpu: 0, text: "before the chain".into() }), "{text}");
    assert_eq!(want.last(), Some(&GraphLine::Marker { cpu: 0, text: "after the chain".into() }), "{text}");
    let got = trace_cmd_graph_lines(&trace_cmd_report(&rec, "graph.dat", &[]));
    assert_eq!(got, want, "trace-cmd report and the kernel's function_graph text differ");
    let roots: Vec<&GraphLine> = want.iter().filter(|l| matches!(l, GraphLine::Exit { depth: 0, .. })).collect();
    assert_eq!(roots.len(), 1, "chain_root returned once:\n{text}");

    // Flame graph: valid XML; the frames of chain_root and chain_c carry their calls' durations.
    let svg = String::from_utf8(flame::svg(&rec, "test").unwrap()).unwrap();
    std::fs::write(scratch("graph.svg"), &svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&svg);
    let mut titles = Vec::new();
    let mut in_title = false;
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("flame graph is not valid XML: {e}")) {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(s) => in_title = s.name().as_ref() == b"title",
            quick_xml::events::Event::Text(t) if in_title => titles.push(t.decode().unwrap().into_owned()),
            quick_xml::events::Event::End(_) => in_title = false,
            _ => {}
        }
    }
    let root_ns: u64 = roots.iter().map(|l| graph_ns(l)).sum();
    let with_commas = |n: u64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let root_title = format!("selftest::targets::chain_root ({} ns", with_commas(root_ns));
    assert!(titles.iter().any(|t| t.starts_with(&root_title)), "no frame '{root_title}' in {titles:?}");
    // chain_c is usually a leaf, but a timer interrupt taken inside it nests `timer_tick` there.
    let leaf_ns = call_ns(&want, "chain_c");
    let leaf_title = format!("selftest::targets::chain_c ({} ns", with_commas(leaf_ns));
    assert!(titles.iter().any(|t| t.starts_with(&leaf_title)), "no frame '{leaf_title}' in {titles:?}");

    // Chrome JSON: valid trace events, one X slice per call, one instant per marker.
    let doc = chrome::json(&rec).unwrap();
    std::fs::write(scratch("graph.json"), &doc).unwrap();
    let n = chrome::check(&doc).unwrap_or_else(|e| panic!("bad trace-event JSON: {e}"));
    let calls = want.iter().filter(|l| matches!(l, GraphLine::Entry { .. } | GraphLine::Leaf { .. })).count();
    let markers = want.iter().filter(|l| matches!(l, GraphLine::Marker { .. })).count();
    assert_eq!((n, markers), (1 + rec.cpus.len() + calls + 2, 2));
    assert_eq!(doc.matches("\"ph\": \"i\"").count(), 2, "the two markers are the only instants");
}

/// One CPU's calls in order, with a leaf `f();` written as `f() {` and `}`: what two renderings
/// of the same events must agree on however they fold leaves.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Call { depth: usize, func: String },
    Return { depth: usize, dur: String },
    Marker(String),
}

fn per_cpu_steps(lines: &[GraphLine]) -> std::collections::BTreeMap<u32, Vec<Step>> {
    let mut out: std::collections::BTreeMap<u32, Vec<Step>> = Default::default();
    for l in lines {
        match l {
            GraphLine::Entry { cpu, depth, func } => out.entry(*cpu).or_default().push(Step::Call { depth: *depth, func: func.clone() }),
            GraphLine::Leaf { cpu, depth, func, dur } => {
                let steps = out.entry(*cpu).or_default();
                steps.push(Step::Call { depth: *depth, func: func.clone() });
                steps.push(Step::Return { depth: *depth, dur: dur.clone() });
            }
            GraphLine::Exit { cpu, depth, dur } => out.entry(*cpu).or_default().push(Step::Return { depth: *depth, dur: dur.clone() }),
            GraphLine::Marker { cpu, text } => out.entry(*cpu).or_default().push(Step::Marker(text.clone())),
        }
    }
    out
}

/// The interleaving that misled trace-cmd when all CPUs shared PID 0, made on purpose (no boot):
/// CPU 1 enters and leaves `chain_c` while CPU 0 is inside it, so right after CPU 0's call the
/// file's next event is CPU 1's return of the same function.
#[test]
fn trace_cmd_pairs_calls_per_cpu_when_cpus_interleave() {
    use loongtrace_tools::capture::CpuTrace;
    use loongtrace_tools::symtab::{self, Symbol};
    use formats::wire::{KIND_GRAPH_ENTRY, KIND_GRAPH_RETURN, Record};
    const ROOT: u64 = 0x9000_0000_0020_0000;
    const C: u64 = 0x9000_0000_0020_0100;
    let syms = [
        Symbol { addr: ROOT, size: 0x100, name: "selftest::targets::chain_root".into() },
        Symbol { addr: C, size: 0x100, name: "selftest::targets::chain_c".into() },
    ];
    let ev = |cpu: u8, ts: u64, ip: u64, kind: u8, depth: u16, extra: u64| Record { ts, ip, parent: 0, kind, cpu, depth, extra };
    // Ticks of a 100 MHz counter: 10 ns each.
    let cpu0 = vec![
        ev(0, 100, ROOT, KIND_GRAPH_ENTRY, 0, 0),
        ev(0, 110, C, KIND_GRAPH_ENTRY, 1, 0),
        ev(0, 300, C, KIND_GRAPH_RETURN, 1, 190),
        ev(0, 400, ROOT, KIND_GRAPH_RETURN, 0, 300),
    ];
    let cpu1 = vec![
        ev(1, 101, ROOT, KIND_GRAPH_ENTRY, 0, 0),
        ev(1, 105, C, KIND_GRAPH_ENTRY, 1, 0),
        ev(1, 120, C, KIND_GRAPH_RETURN, 1, 15),
        ev(1, 500, ROOT, KIND_GRAPH_RETURN, 0, 399),
    ];
    let rec = Recording {
        tracer: "function_graph".into(),
        counter_hz: 100_000_000,
        cpus: vec![CpuTrace { events: cpu0, lost: 0, written: 4 }, CpuTrace { events: cpu1, lost: 0, written: 4 }],
        symtab: symtab::encode(&syms),
        markers: Default::default(),
        formats: Vec::new(),
    };
    let lines = trace_cmd_report(&rec, "interleaved.dat", &[]);
    let us = |ticks: u64| format!("{}.{:03} us", ticks * 10 / 1000, ticks * 10 % 1000);
    let call = |func: &str| Step::Call { depth: 0, func: format!("selftest::targets::{func}") };
    let inner = |func: &str| Step::Call { depth: 1, func: format!("selftest::targets::{func}") };
    let want: std::collections::BTreeMap<u32, Vec<Step>> = [
        (0, vec![call("chain_root"), inner("chain_c"), Step::Return { depth: 1, dur: us(190) }, Step::Return { depth: 0, dur: us(300) }]),
        (1, vec![call("chain_root"), inner("chain_c"), Step::Return { depth: 1, dur: us(15) }, Step::Return { depth: 0, dur: us(399) }]),
    ]
    .into();
    assert_eq!(per_cpu_steps(&trace_cmd_graph_lines(&lines)), want, "trace-cmd report:\n{}", lines.join("\n"));
    for l in lines.iter().filter(|l| !l.trim_start().starts_with("CPU:")) {
        check_task(l, l[l.find('[').unwrap() + 1..l.find(']').unwrap()].parse().unwrap());
    }
}

#[test]
fn graph_of_two_cpus_at_once_keeps_each_cpus_calls_in_trace_cmd() {
    // Both CPUs run the chain at the same time. trace-cmd pairs a call with the next event of the
    // file if it is a return of the same function by the same PID; when every CPU's events
    // carried PID 0 it printed CPU 0's chain_c with CPU 1's return time and CPU 1's chain_c
    // without one. Each CPU's context has its own PID now (formats::task).
    let mut cfg = config("function_graph", 2);
    cfg.workload = "smp_chain".into();
    cfg.graph_function = vec!["chain_root".into()];
    let (text, rec) = record(&cfg);
    let want = per_cpu_steps(&kernel_graph_lines(&text));
    assert_eq!(want.len(), 2, "both CPUs ran the chain:\n{text}");
    for (cpu, steps) in &want {
        let calls = steps.iter().filter(|s| matches!(s, Step::Call { func, .. } if func.ends_with("chain_c"))).count();
        assert!(calls >= 1, "CPU {cpu} called chain_c:\n{text}");
    }
    let lines = trace_cmd_report(&rec, "smp_graph.dat", &[]);
    for l in lines.iter().filter(|l| !l.trim_start().starts_with("CPU:")) {
        let cpu: u32 = l[l.find('[').unwrap() + 1..l.find(']').unwrap()].parse().unwrap();
        check_task(l, cpu);
    }
    let got = per_cpu_steps(&trace_cmd_graph_lines(&lines));
    assert_eq!(got, want, "per CPU, trace-cmd report and the kernel's text differ:\n{}\n{text}", lines.join("\n"));
}

/// A script that writes markers between workload runs on both CPUs (`run timer` calls
/// `timer_work` on every CPU), one of them longer than a short ring-buffer event holds.
const MARKER_SCRIPT: &str = "\
echo first marker > trace_marker
run chain
echo between the runs > trace_marker
run timer 2
echo 'quoted:  two  blanks, a long one: 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 end' > trace_marker
run chain
echo -n last > trace_marker
";

/// The markers `MARKER_SCRIPT` writes, in order.
const MARKERS: [&str; 4] = [
    "first marker",
    "between the runs",
    "quoted:  two  blanks, a long one: 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 end",
    "last",
];

#[test]
fn markers_of_a_recorded_script_are_print_events_in_every_format() {
    let script = scratch("markers.sh");
    std::fs::write(&script, MARKER_SCRIPT).unwrap();
    let mut cfg = config("function", 2);
    cfg.workload = "script".into();
    cfg.script = Some(script);
    cfg.filter = vec!["chain_*".into(), "timer_work".into()];
    let (text, rec) = record(&cfg);
    let want = kernel_function_lines(&text);
    let events: usize = rec.cpus.iter().map(|c| c.events.len()).sum();
    assert_eq!(want.len(), events, "the kernel printed every event it sent:\n{text}");
    let marks: Vec<&str> = want.iter().filter_map(|l| if let FnLine::Marker { text, .. } = l { Some(text.as_str()) } else { None }).collect();
    assert_eq!(marks, MARKERS, "the kernel's trace holds the script's markers in order:\n{text}");
    let from_shell = want
        .iter()
        .filter(|l| matches!(l, FnLine::Call { func, parent, .. } if func.ends_with("chain_root") && parent == "workloads::run"))
        .count();
    assert_eq!(from_shell, 2, "the script's two `run chain`:\n{text}");
    assert!(
        want.iter().any(|l| matches!(l, FnLine::Call { cpu: 1, func, .. } if func.ends_with("timer_work"))),
        "`run timer` ran timer_work on CPU 1 too:\n{text}"
    );
    // The markers' events name the kernel's tracing_mark_write, which kallsyms must resolve.
    assert_eq!(rec.markers.len(), 4);

    let lines = trace_cmd_report(&rec, "markers.dat", &["-O", "parent=1", "-O", "indent=0"]);
    let got = trace_cmd_function_lines(&lines);
    assert_eq!(got.len(), want.len(), "trace-cmd report:\n{}", lines.join("\n"));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i} differs");
    }
    assert!(lines.iter().any(|l| l.contains("print:") && l.ends_with("tracing_mark_write: between the runs")), "{lines:?}");

    // Chrome JSON: the markers are instants on their CPU's track, at their time.
    let doc = chrome::json(&rec).unwrap();
    std::fs::write(scratch("markers.json"), &doc).unwrap();
    chrome::check(&doc).unwrap_or_else(|e| panic!("bad trace-event JSON: {e}"));
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let instants: Vec<(i64, String, String)> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "trace_marker")
        .map(|e| {
            assert_eq!((e["ph"].as_str(), e["s"].as_str()), (Some("i"), Some("t")), "{e}");
            // ts is in µs with ns precision; the kernel rounds to the nearest µs.
            let ns = (e["ts"].as_f64().unwrap() * 1000.0).round() as u64;
            let us = (ns + 500) / 1000;
            let ts = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
            (e["tid"].as_i64().unwrap(), ts, e["name"].as_str().unwrap().to_string())
        })
        .collect();
    let kernel_marks: Vec<(i64, String, String)> = want
        .iter()
        .filter_map(|l| match l {
            // The JSON's track of a CPU is its context's task (tid = PID = cpu + 1).
            FnLine::Marker { cpu, ts, text } => Some((*cpu as i64 + 1, ts.clone(), text.clone())),
            FnLine::Call { .. } => None,
        })
        .collect();
    assert_eq!(instants, kernel_marks);
}

fn failed_recording(fault: &str) -> String {
    let mut cfg = config("function", 1);
    cfg.extra_cmdline = vec![format!("record_fault={fault}")];
    match record::record(&cfg, |_| {}) {
        Ok(_) => panic!("record_fault={fault}: the recording must fail"),
        Err(RecordError::Capture { error, .. }) => {
            let msg = error.to_string();
            match (fault, &error) {
                ("corrupt", CaptureError::Checksum { .. }) | ("die", CaptureError::Truncated { .. }) => msg,
                _ => panic!("record_fault={fault}: wrong error {msg}"),
            }
        }
        Err(e) => panic!("record_fault={fault}: wrong error {e}"),
    }
}

#[test]
fn corrupted_transfer_is_caught_by_the_checksum() {
    let msg = failed_recording("corrupt");
    assert!(msg.contains("checksum") && msg.contains("corrupted"), "{msg}");
}

#[test]
fn guest_dying_mid_transfer_is_a_clear_error() {
    let msg = failed_recording("die");
    assert!(msg.contains("stopped after") && msg.contains("died"), "{msg}");
}

/// One trace event line: CPU, timestamp, event name, the function(s) in its `(...)` part, and
/// the fields after it.
#[derive(Debug, PartialEq, Eq)]
struct EventLine {
    cpu: u32,
    ts: String,
    name: String,
    funcs: Vec<String>,
    fields: String,
}

/// Splits `name: (a <- b) fields` (the `(...)` part optional).
fn event_line(cpu: u32, ts: &str, rest: &str, func: &dyn Fn(&str) -> String) -> EventLine {
    let (name, body) = rest.split_once(':').unwrap();
    let body = body.trim_start();
    let (funcs, fields) = match body.strip_prefix('(') {
        Some(b) => {
            let (inside, after) = b.split_once(')').unwrap();
            (inside.split(" <- ").map(func).collect(), after.trim().to_string())
        }
        None => (Vec::new(), body.to_string()),
    };
    EventLine { cpu, ts: ts.to_string(), name: name.to_string(), funcs, fields }
}

#[test]
fn kprobe_events_in_trace_dat_match_the_kernels_trace() {
    let mut cfg = config("nop", 2);
    cfg.workload = "smp_chain".into();
    cfg.kprobes = vec!["p:myprobe chain_c x=%a0 s=+0($stack):u32 c=$comm".into(), "r:myret chain_b ret=$retval arg=$arg1".into()];
    cfg.events = vec!["ftrace:*".into()];
    let (text, rec) = record(&cfg);
    assert_eq!(rec.formats.len(), 2, "the formats of the two events that fired: {:?}", rec.formats);
    // The kernel's lines: `(sym+0xoff/0xsize)` names a function.
    let kernel_func = |s: &str| s.split('+').next().unwrap().trim().to_string();
    let kernel: Vec<EventLine> = kernel_lines(&text).into_iter().map(|(cpu, ts, rest)| event_line(cpu, ts, rest, &kernel_func)).collect();
    assert_eq!(kernel.iter().filter(|l| l.name == "myprobe").count(), 2, "{text}");
    assert_eq!(kernel.iter().filter(|l| l.name == "myret").count(), 2, "{text}");
    // trace-cmd prints the addresses in hex (the events' print fmt): name them from the symbols.
    let names = loongtrace_tools::calls::Names::new(&rec).unwrap();
    let tc_func = |s: &str| names.name(u64::from_str_radix(s.trim(), 16).unwrap());
    let report = trace_cmd_report(&rec, "events.dat", &[]);
    let tc: Vec<EventLine> = trace_cmd_lines(&report)
        .into_iter()
        .map(|(cpu, ts, rest)| {
            let mut e = event_line(cpu, ts, rest.trim_start(), &tc_func);
            // As in Linux, a kretprobe's print fmt is `(func <- ret_ip)` while the kernel's
            // own text prints `(ret_ip <- func)`.
            e.funcs.reverse();
            e
        })
        .collect();
    let by_cpu = |v: &[EventLine], cpu: u32| v.iter().filter(|l| l.cpu == cpu).map(|l| format!("{l:?}")).collect::<Vec<_>>();
    for cpu in 0..2 {
        let k = by_cpu(&kernel, cpu);
        assert!(!k.is_empty(), "cpu {cpu} recorded nothing:\n{text}");
        assert_eq!(k, by_cpu(&tc, cpu), "cpu {cpu}: the kernel's trace and trace-cmd's report differ");
    }
    // The Chrome JSON has them as instants with their fields.
    let json: serde_json::Value = serde_json::from_str(&chrome::json(&rec).unwrap()).unwrap();
    let probes: Vec<&serde_json::Value> = json["traceEvents"].as_array().unwrap().iter().filter(|e| e["name"] == "kprobes:myprobe").collect();
    assert_eq!(probes.len(), 2);
    assert_eq!(probes[0]["args"]["__probe_ip"], "selftest::targets::chain_c");
    assert!(probes[0]["args"]["c"].as_str().unwrap().starts_with("loongtrace/"));
}
