//! The debugger test: boots the kernel halted (`gdbdemo=1`, QEMU's gdb stub on a free port), runs
//! the LoongArch GDB in batch mode with the loongtrace helpers, and checks backtraces through
//! every tracing route, `lt-ftrace` against the kernel's own view of the enabled sites, `lt-trace`
//! against the trace the kernel prints, and `lt-sym`.
//!
//! The GDB is `LOONGTRACE_GDB`, else `.venv-gdb/bin/gdb` (installed by `make setup`). Only when
//! neither exists, or it lacks LoongArch, is the test skipped, with a message saying so.

use loongtrace_tools::runner::RunConfig;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GDB_TIMEOUT: Duration = Duration::from_secs(180);

/// The GDB to use, or why there is none.
fn find_gdb() -> Result<PathBuf, String> {
    let gdb = std::env::var_os("LOONGTRACE_GDB")
        .filter(|g| !g.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| loongtrace_tests::workspace_dir().join(".venv-gdb/bin/gdb"));
    let out = Command::new(&gdb)
        .args(["-q", "-nx", "-batch", "-ex", "set architecture Loongarch64"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", gdb.display()))?;
    if !out.status.success() || !out.stderr.is_empty() {
        return Err(format!("{} does not know LoongArch: {}", gdb.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(gdb)
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Whether something listens on `port` (Linux's /proc/net/tcp, state 0A = LISTEN).
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        }))
        .unwrap_or(false)
}

/// The GDB script: one breakpoint per checked spot, each printing its section between markers.
fn script(port: u16, helpers: &Path) -> String {
    let mut s = format!(
        "set pagination off\nset confirm off\nset width 0\nsource {}\ntarget remote 127.0.0.1:{port}\n",
        helpers.display()
    );
    let spots = [
        ("sample_direct_func", "bt sample", "bt"),
        ("gdbdemo_ops_callback", "bt ops", "bt"),
        ("gdbdemo_graph_leaf", "bt graph", "bt"),
        ("gdbdemo_check_ftrace", "lt-ftrace", "lt-ftrace"),
        ("gdbdemo_check_trace", "lt-trace", "lt-trace\nlt-trace 0"),
        ("gdbdemo_bpf_attached", "bpf attached", "lt-bt-at $a0 bt-bpf"),
    ];
    for (bp, name, cmds) in spots {
        s += &format!("break {bp}\ncommands\nsilent\necho @@{name}\\n\n{cmds}\necho @@end\\n\ncontinue\nend\n");
    }
    s += "break gdbdemo_done\ncommands\nsilent\necho @@lt-sym\\n\nlt-sym gdbdemo_work_a\nlt-sym (long)&gdbdemo_work_b + 8\necho @@end\\n\necho @@done\\n\nkill\nquit\nend\ncontinue\n";
    s
}

/// The sections `@@name` ... `@@end` of GDB's output, in order.
fn gdb_sections(out: &str) -> Vec<(String, Vec<String>)> {
    let mut v = Vec::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    for line in out.lines() {
        if line == "@@end" {
            v.extend(cur.take());
        } else if let Some(name) = line.strip_prefix("@@") {
            cur = Some((name.to_string(), Vec::new()));
        } else if let Some((_, lines)) = cur.as_mut() {
            lines.push(line.to_string());
        }
    }
    v
}

/// The kernel's section `gdbdemo: <name> begin` ... `gdbdemo: <name> end`.
fn kernel_section(serial: &[String], name: &str) -> Vec<String> {
    let begin = format!("gdbdemo: {name} begin");
    let end = format!("gdbdemo: {name} end");
    serial.iter().skip_while(|l| **l != begin).skip(1).take_while(|l| **l != end).cloned().collect()
}

/// Function names of a backtrace's frames (`elided` frames, indented by GDB's frame filter,
/// included only when asked), reduced to their last path segment.
fn frames(bt: &[String], with_elided: bool) -> Vec<String> {
    bt.iter()
        .filter(|l| l.starts_with('#') || (with_elided && l.trim_start().starts_with('#')))
        .filter_map(|l| {
            let rest = l.trim_start().split_once(char::is_whitespace)?.1.trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, f)) if addr.starts_with("0x") => f,
                _ => rest,
            };
            let name = rest.split([' ', '(']).next()?;
            Some(name.rsplit("::").next().unwrap_or(name).to_string())
        })
        .collect()
}

/// Asserts that the frames `want` appear in the backtrace one right after the other, that the walk
/// goes on to `loongtrace_kernel_main` and ends at `_start`, and that GDB did not give up early.
fn assert_chain(what: &str, bt: &[String], want: &[&str]) {
    let got = frames(bt, false);
    let text = bt.join("\n");
    let start = got.iter().position(|f| f == want[0]).unwrap_or_else(|| panic!("{what}: no frame {} in\n{text}", want[0]));
    for (i, w) in want.iter().enumerate() {
        assert_eq!(got.get(start + i).map(String::as_str), Some(*w), "{what}: frame {} should be {w}:\n{text}", start + i);
    }
    let main = got.iter().position(|f| f == "loongtrace_kernel_main");
    assert!(main.is_some_and(|m| m > start), "{what}: the backtrace does not reach loongtrace_kernel_main:\n{text}");
    assert_eq!(got.last().map(String::as_str), Some("_start"), "{what}: the walk should end at _start:\n{text}");
    for bad in ["Backtrace stopped", "corrupt stack", "previous frame identical"] {
        assert!(!text.contains(bad), "{what}: '{bad}':\n{text}");
    }
}

#[test]
fn gdb_unwinds_every_route_and_reads_ftrace_state() {
    let gdb = match find_gdb() {
        Ok(g) => g,
        Err(why) => {
            eprintln!("SKIPPED gdb test: no LoongArch GDB ({why}); `make setup` installs one into .venv-gdb/");
            return;
        }
    };
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let workspace = loongtrace_tests::workspace_dir();
    let port = free_port();
    let mut cfg = RunConfig::new(&kernel);
    cfg.cmdline = "tests=none gdbdemo=1".into();
    cfg.extra_args = vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}"), "-S".into()];
    let mut qemu = cfg.command().expect("QEMU command").spawn().expect("QEMU starts");
    let stdout = qemu.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());

    let t0 = Instant::now();
    while !listening(port) {
        if t0.elapsed() > Duration::from_secs(20) || qemu.try_wait().ok().flatten().is_some() {
            let _ = qemu.kill();
            panic!("QEMU's gdb stub did not come up on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = workspace.join("target/tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    let script_path = dir.join(format!("gdb-test-{port}.gdb"));
    std::fs::write(&script_path, script(port, &workspace.join("tools/gdb/loongtrace.py"))).expect("script");
    let mut child = Command::new(&gdb)
        .args(["-q", "-nx", "-batch", "-x"])
        .arg(&script_path)
        .arg(&kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdb starts");
    let (gdb_out, gdb_err) = {
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let o = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
        let e = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
        let t0 = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > GDB_TIMEOUT {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (o.join().unwrap(), e.join().unwrap())
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    let serial = reader.join().unwrap();
    let _ = std::fs::remove_file(&script_path);
    let context = format!("--- gdb stdout\n{gdb_out}\n--- gdb stderr\n{gdb_err}\n--- serial\n{}", serial.join("\n"));
    assert!(gdb_out.contains("@@done"), "gdb did not reach gdbdemo_done\n{context}");
    assert!(serial.iter().any(|l| l == "gdbdemo: ok"), "the kernel's gdbdemo run failed\n{context}");
    assert!(!gdb_err.contains("Python Exception"), "a helper failed\n{context}");

    let sections = gdb_sections(&gdb_out);
    let section = |name: &str, nth: usize| -> Vec<String> {
        sections.iter().filter(|(n, _)| n == name).nth(nth).map(|(_, l)| l.clone()).unwrap_or_else(|| panic!("no section {name} #{nth}\n{context}"))
    };

    // Direct trampoline called straight from the site, then through ftrace_regs_caller.
    assert_chain("direct, straight", &section("bt sample", 0), &["sample_direct_func", "sample_direct_tramp", "wake_up_process", "gdbdemo_direct_straight"]);
    assert_chain("direct, via ftrace_regs_caller", &section("bt sample", 1), &["sample_direct_func", "sample_direct_tramp", "wake_up_process", "gdbdemo_direct_via_regs"]);
    // An ops callback on the full-register path (several ops: through the list function).
    let ops = section("bt ops", 0);
    let names = frames(&ops, false);
    let cb = names.iter().position(|f| f == "gdbdemo_ops_callback").unwrap_or_else(|| panic!("no callback frame\n{}", ops.join("\n")));
    let common = names.iter().position(|f| f == "ftrace_common").unwrap_or_else(|| panic!("no ftrace_common frame\n{}", ops.join("\n")));
    assert!(cb < common, "{}", ops.join("\n"));
    assert_chain("ops callback", &ops, &["ftrace_common", "wake_up_process", "gdbdemo_direct_via_regs"]);
    // A function hooked by the graph tracer: its caller is the real one, not return_to_handler.
    let graph = section("bt graph", 0);
    assert_chain("graph-hooked", &graph, &["gdbdemo_graph_leaf", "gdbdemo_graph_outer", "gdbdemo_graph_caller"]);
    assert!(frames(&graph, true).iter().any(|f| f == "return_to_handler"), "the hook frame is shown folded:\n{}", graph.join("\n"));

    // Inside a JITed BPF fexit program (GDB knows it and its trampoline through the JIT
    // interface): the walk goes through the trampoline to the traced function's caller.
    let bpf = section("bt-bpf", 0);
    let names = frames(&bpf, false);
    assert!(names[0].starts_with("bpf_prog_") && names[0].ends_with("_test4"), "frame 0 is the JITed program:\n{}", bpf.join("\n"));
    assert_chain("JITed BPF program", &bpf, &[&names[0], "bpf_trampoline_bpf_fentry_test4", "gdbdemo_bpf_caller"]);
    assert!(serial.iter().any(|l| l == "gdbdemo: bpf caller returned 37, the fexit program saw Some(36)"), "{context}");

    // lt-ftrace lists what the kernel's own view lists.
    let kernel_sites = kernel_section(&serial, "enabled_functions");
    assert!(kernel_sites.iter().any(|l| l.contains("wake_up_process (2) R")), "{kernel_sites:?}");
    assert!(kernel_sites.len() >= 3, "{kernel_sites:?}");
    assert_eq!(section("lt-ftrace", 0), kernel_sites, "lt-ftrace vs the kernel's enabled sites\n{context}");

    // lt-trace prints the events the kernel prints for the same run (all CPUs, then CPU 0 alone).
    let kernel_trace = kernel_section(&serial, "trace");
    assert_eq!(kernel_trace.len(), 7, "three calls of gdbdemo_work_b, each calling gdbdemo_work_a, and a marker: {kernel_trace:?}");
    assert!(kernel_trace[4].ends_with(": tracing_mark_write: gdbdemo: between the calls"), "{kernel_trace:?}");
    let lt = section("lt-trace", 0);
    assert_eq!(lt.len(), 14, "lt-trace, then lt-trace 0:\n{}", lt.join("\n"));
    assert_eq!(lt[..7], kernel_trace[..], "lt-trace vs the kernel's trace\n{context}");
    assert_eq!(lt[7..], kernel_trace[..], "lt-trace 0 vs the kernel's trace\n{context}");

    // lt-sym answers like the kernel's symboliser.
    let sym = section("lt-sym", 0);
    assert_eq!(sym.len(), 2, "{sym:?}");
    assert!(sym[0].starts_with("gdbdemo_work_a+0x0/0x"), "{sym:?}");
    assert!(sym[1].starts_with("gdbdemo_work_b+0x8/0x"), "{sym:?}");
}
