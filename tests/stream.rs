//! Streamed recordings (`ltrace record` reading the rings out of the guest's shared RAM while it
//! traces): every event written is in trace.dat or counted lost, per CPU; `trace-cmd report`
//! lists exactly the events of the file and shows the losses where they happened; a recording
//! killed half-way leaves a file trace-cmd opens.

use loongtrace_tools::record::{self, RecordConfig, StreamSummary};
use loongtrace_tools::runner::RunConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn config(workload: &str, smp: u32, ms: u64, extra: &[&str]) -> RecordConfig {
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let mut run = RunConfig::new(kernel);
    run.smp = smp;
    run.timeout = Duration::from_secs(300);
    let mut cfg = RecordConfig::new(run, "function");
    cfg.workload = workload.into();
    cfg.duration_ms = ms;
    cfg.extra_cmdline = extra.iter().map(|s| s.to_string()).collect();
    cfg
}

fn scratch(name: &str) -> PathBuf {
    let dir = loongtrace_tests::workspace_dir().join("target/stream-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn stream(cfg: &RecordConfig, name: &str) -> (PathBuf, StreamSummary) {
    let path = scratch(name);
    let never = std::sync::atomic::AtomicBool::new(false);
    let (_, sum) = record::record_streamed(cfg, &path, &never, |_| {}).unwrap_or_else(|e| panic!("streamed recording failed: {e}"));
    (path, sum)
}

/// What `trace-cmd report` says about a file: events per CPU, and per CPU the dropped counts in
/// the order they appear, each with the index (among that CPU's events) of the event after it.
#[derive(Default)]
struct Report {
    events: BTreeMap<u32, u64>,
    lines: Vec<String>,
    drops: BTreeMap<u32, Vec<(u64, u64)>>,
}

fn report(path: &Path) -> Report {
    report_with(path, &[])
}

/// [`report`] with more `trace-cmd report` options (`-R`: raw, one line per event, where
/// function_graph's leaves are otherwise folded into one line).
fn report_with(path: &Path, extra: &[&str]) -> Report {
    let out = Command::new("trace-cmd").arg("report").args(extra).arg("-i").arg(path).output().expect("trace-cmd runs (make setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "trace-cmd failed: {stderr}");
    let mut r = Report::default();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        if let Some(rest) = line.strip_prefix("CPU:") {
            // `CPU:3 [2590 EVENTS DROPPED]`
            let (cpu, n) = rest.split_once(" [").expect("a drop line");
            let n = n.split_whitespace().next().unwrap();
            let cpu: u32 = cpu.parse().unwrap();
            let at = *r.events.get(&cpu).unwrap_or(&0);
            r.drops.entry(cpu).or_default().push((n.parse().unwrap(), at));
            continue;
        }
        let cpu = line.split('[').nth(1).and_then(|s| s.split(']').next()).and_then(|c| c.trim().parse::<u32>().ok());
        let cpu = cpu.unwrap_or_else(|| panic!("no CPU in line {line:?}"));
        *r.events.entry(cpu).or_default() += 1;
        r.lines.push(line.to_string());
    }
    r
}

/// Every CPU's written = events + lost, the file holds each CPU's events, and its drop markers
/// add up to each CPU's lost count.
fn check_accounting(sum: &StreamSummary, rep: &Report) {
    assert!(sum.stopped);
    for (cpu, c) in sum.cpus.iter().enumerate() {
        let cpu32 = cpu as u32;
        assert_eq!(c.skipped, 0, "cpu{cpu}: every record became an event");
        assert_eq!(Some(c.slots + c.lost), c.written, "cpu{cpu}: written = in the file + lost");
        assert_eq!(rep.events.get(&cpu32).copied().unwrap_or(0), c.events, "cpu{cpu}: trace-cmd's events");
        let dropped: u64 = rep.drops.get(&cpu32).map_or(0, |d| d.iter().map(|x| x.0).sum());
        assert_eq!(dropped, c.lost, "cpu{cpu}: trace-cmd's dropped counts add up to the lost count");
    }
}

#[test]
fn streamed_smp_chain_loses_nothing() {
    let (path, sum) = stream(&config("smp_chain", 4, 0, &[]), "smp_chain.dat");
    assert_eq!(sum.cpus.len(), 4);
    for (cpu, c) in sum.cpus.iter().enumerate() {
        assert_eq!(c.lost, 0, "cpu{cpu} lost events with the default ring");
        assert!(c.events >= 5, "cpu{cpu} ran the chain: {c:?}");
    }
    check_accounting(&sum, &report(&path));
}

#[test]
fn a_streamed_graph_has_every_call_and_return() {
    // function_graph on the chain (root, a, b, c) on two CPUs: per CPU four entries and four
    // returns.
    let mut cfg = config("smp_chain", 2, 0, &[]);
    cfg.tracer = "function_graph".into();
    cfg.graph_function = vec!["chain_root".into()];
    let (path, sum) = stream(&cfg, "graph.dat");
    let rep = report_with(&path, &["-R"]);
    check_accounting(&sum, &rep);
    for cpu in 0..2u32 {
        let mine: Vec<&String> = rep.lines.iter().filter(|l| l.contains(&format!("[{cpu:03}]"))).collect();
        let entries = mine.iter().filter(|l| l.contains("funcgraph_entry:")).count();
        let exits = mine.iter().filter(|l| l.contains("funcgraph_exit:")).count();
        assert_eq!((entries, exits), (4, 4), "cpu{cpu}: {mine:#?}");
    }
    // (The cooked report folds a leaf only when no other CPU's event comes between its entry
    // and its return, which depends on how the CPUs interleave: not checked here.)
}

#[test]
fn trace_events_stream_as_linux_lays_them_out() {
    // A kprobe event with a register argument, on the chain on two CPUs, no tracer: the records
    // are written whole (the kernel's one-slot form is off while streaming), and trace-cmd
    // prints them with the format the stream's header carries.
    let mut cfg = config("smp_chain", 2, 0, &[]);
    cfg.tracer = "nop".into();
    cfg.kprobes = vec!["p:myprobe chain_c x=%a0".into()];
    let (path, sum) = stream(&cfg, "events.dat");
    let rep = report(&path);
    check_accounting(&sum, &rep);
    for (cpu, c) in sum.cpus.iter().enumerate() {
        assert!(c.events >= 1, "cpu{cpu}: no event: {c:?}");
        assert_eq!(c.slots, 2 * c.events, "cpu{cpu}: one continuation slot per record: {c:?}");
    }
    for l in &rep.lines {
        assert!(l.contains("myprobe:") && l.contains(" x=0x"), "not a myprobe event with its field: {l}");
    }
}

#[test]
fn millions_of_events_every_one_accounted_for() {
    // The chain on 4 CPUs until 2 million events were written (the guest's speed follows the
    // host's: a longer run on a slower machine).
    let mut ms = 250;
    loop {
        let (path, sum) = stream(&config("busy", 4, ms, &[]), "busy.dat");
        let written: u64 = sum.cpus.iter().map(|c| c.written.unwrap()).sum();
        if written < 2_000_000 && ms < 20_000 {
            ms *= 2;
            continue;
        }
        assert!(written >= 2_000_000, "{written} events in {ms} ms");
        let events: u64 = sum.cpus.iter().map(|c| c.events).sum();
        eprintln!("{written} written, {events} in the file, in {ms} ms of guest time; {:.1} MB/s taken out", sum.ring_bytes as f64 / 1e6 / sum.seconds);
        check_accounting(&sum, &report(&path));
        let _ = std::fs::remove_file(&path);
        break;
    }
}

#[test]
fn a_tiny_ring_loses_events_and_says_where() {
    // 16 entries per CPU (1 KiB): the host cannot keep up with the chain.
    let (path, sum) = stream(&config("busy", 2, 300, &["trace_buf_size=1k"]), "tiny.dat");
    let lost: u64 = sum.cpus.iter().map(|c| c.lost).sum();
    assert!(lost > 0, "a 16-entry ring lost nothing: {:?}", sum.cpus);
    let rep = report(&path);
    check_accounting(&sum, &rep);
    // The markers sit between events: each is followed by an event of its CPU (none at the
    // very end unless the last records were lost).
    for (cpu, drops) in &rep.drops {
        let n = rep.events[cpu];
        assert!(drops.len() > 1, "cpu{cpu}: losses at several places");
        assert!(drops.iter().filter(|d| d.1 < n).count() >= drops.len() - 1, "cpu{cpu}: markers before events");
    }
}

#[test]
fn a_killed_recording_leaves_a_file_trace_cmd_opens() {
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let ltrace = loongtrace_tests::workspace_dir().join("target/release/ltrace");
    assert!(ltrace.is_file(), "make build builds {}", ltrace.display());
    let path = scratch("killed.dat");
    let _ = std::fs::remove_file(&path);
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(&ltrace)
            // One function traced, so the file grows slowly enough to be read back quickly.
            .args(["record", "-p", "function", "-l", "chain_root", "-w", "busy", "-d", "20000", "--smp", "2", "-k"])
            .arg(&kernel)
            .arg("-o")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Wait until some pages are in the file, then kill ltrace and its QEMU at once.
    const ENOUGH: u64 = 1 << 20;
    let t0 = std::time::Instant::now();
    // The file is sparse while recording (each CPU writes into a region of its own): count the
    // bytes stored, not its length.
    let stored = |p: &Path| std::fs::metadata(p).map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
    while stored(&path) < ENOUGH {
        assert!(t0.elapsed() < Duration::from_secs(120), "the recording never wrote {ENOUGH} bytes");
        assert!(child.try_wait().unwrap().is_none(), "ltrace ended before it was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status().unwrap();
    assert!(killed.success(), "kill failed");
    let _ = child.wait();
    let rep = report(&path);
    let events: u64 = rep.events.values().sum();
    // At least the pages of ENOUGH bytes less the header's (well below 512 KiB), 145 events a page.
    assert!(events > (ENOUGH - (512 << 10)) / 4096 * 145, "the killed recording's file holds {events} events");
    let _ = std::fs::remove_file(&path);
    // The guest RAM file of the killed run is left in /dev/shm: remove it.
    for e in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&format!("ltrace-ram-{}-", child.id())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
