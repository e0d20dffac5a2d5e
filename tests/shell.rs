//! Host tests of the serial shell: boot the kernel, type at its prompt through QEMU's serial
//! line, and check what tracefs answers (`tools::session`).

use loongtrace_tools::runner::RunConfig;
use loongtrace_tools::session::{PROMPT, Session};
use std::time::Duration;

const CMD: Duration = Duration::from_secs(60);

fn config(cmdline: &str) -> RunConfig {
    let (kernel, _) = loongtrace_tests::kernel_image().expect("kernel image");
    let mut cfg = RunConfig::new(kernel);
    cfg.smp = std::env::var("LOONGTRACE_SMP").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    cfg.timeout = Duration::from_secs(120);
    cfg.cmdline = cmdline.into();
    cfg
}

/// Boots with only the quick `boot` suite and waits for the prompt.
fn boot() -> Session {
    Session::start(&config("tests=boot")).unwrap_or_else(|e| panic!("no prompt: {e}"))
}

fn run(s: &mut Session, line: &str) -> String {
    s.command(line, CMD).unwrap_or_else(|e| panic!("'{line}': {e}"))
}

/// Lines that are not `#` comments.
fn body(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn function_graph_session_with_a_filter() {
    let mut s = boot();
    assert_eq!(run(&mut s, "cat available_tracers"), "function_graph function nop\n");
    assert_eq!(run(&mut s, "echo 'chain_*' > set_ftrace_filter"), "");
    let filter = run(&mut s, "cat set_ftrace_filter");
    for f in ["chain_root", "chain_a", "chain_b", "chain_c"] {
        assert!(filter.lines().any(|l| l.ends_with(f)), "{f} missing from {filter}");
    }
    assert_eq!(run(&mut s, "echo chain_root > set_graph_function"), "");
    assert_eq!(run(&mut s, "echo function_graph > current_tracer"), "");
    assert_eq!(run(&mut s, "run chain"), "chain_root called 1 times (sum 7)\n");
    let t = run(&mut s, "cat trace");
    assert!(t.starts_with("# tracer: function_graph\n"), "{t}");
    let b = body(&t);
    assert_eq!(b.len(), 7, "{t}");
    assert!(b[0].ends_with("|  selftest::targets::chain_root() {"), "{t}");
    assert!(b[3].ends_with("|        selftest::targets::chain_c();") && b[3].contains(" us "), "{t}");
    assert!(b[6].ends_with("|  }"), "{t}");
    // An error leaves everything as it was.
    assert_eq!(run(&mut s, "echo chain_a bogus_fn > set_ftrace_filter"), "sh: write error: set_ftrace_filter: Invalid argument\n");
    assert_eq!(run(&mut s, "cat set_ftrace_filter"), filter);
}

#[test]
fn trace_pipe_until_ctrl_c() {
    let mut s = boot();
    assert_eq!(run(&mut s, "echo timer_tick > set_ftrace_filter"), "");
    assert_eq!(run(&mut s, "echo function > current_tracer"), "");
    s.send_line("cat trace_pipe");
    // The timer ticks 100 times a second on every CPU: events keep coming.
    let mut seen = String::new();
    for _ in 0..3 {
        seen += &s.wait_for("irq::timer_tick <-", CMD).unwrap_or_else(|e| panic!("{e}"));
    }
    s.send(b"\x03");
    s.wait_for("^C\n", CMD).unwrap_or_else(|e| panic!("Ctrl-C not seen: {e}"));
    s.wait_for(PROMPT, CMD).unwrap_or_else(|e| panic!("no prompt after Ctrl-C: {e}"));
    assert!(seen.contains("loongtrace/0-1       [000] ") || seen.contains("loongtrace/1-2       [001] "), "{seen}");
    assert_eq!(run(&mut s, "echo nop > current_tracer"), "");
    assert_eq!(run(&mut s, "cat current_tracer"), "nop\n");
}

#[test]
fn profiler_table_after_run() {
    let mut s = boot();
    run(&mut s, "echo 'chain_*' > set_ftrace_filter");
    assert_eq!(run(&mut s, "echo 1 > function_profile_enabled"), "");
    assert_eq!(run(&mut s, "run chain 5"), "chain_root called 5 times (sum 55)\n");
    assert_eq!(run(&mut s, "echo 0 > function_profile_enabled"), "");
    let t = run(&mut s, "cat trace_stat/function0");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "  Function                               Hit    Time            Avg             s^2", "{t}");
    assert_eq!(lines.len(), 6, "{t}");
    assert!(lines[2].starts_with("  selftest::targets::chain_root            5    "), "sorted by time: {t}");
    for l in &lines[2..] {
        assert_eq!(l.split_whitespace().nth(1), Some("5"), "{l}");
    }
}

#[test]
fn stack_tracer_maximum() {
    let mut s = boot();
    run(&mut s, "echo fgraph_recurse > stack_trace_filter");
    assert_eq!(run(&mut s, "echo 1 > /proc/sys/kernel/stack_tracer_enabled"), "");
    run(&mut s, "run recurse 30");
    let max: u64 = run(&mut s, "cat stack_max_size").trim().parse().expect("a number");
    let t = run(&mut s, "cat stack_trace");
    assert!(t.starts_with("        Depth    Size   Location    ("), "{t}");
    let first = t.lines().nth(2).unwrap_or("");
    assert!(first.starts_with(&format!("  0) {max:>8}       0   selftest::targets::fgraph_recurse+0x0/")), "{t}");
    assert!(t.matches("fgraph_recurse+").count() >= 31, "{t}");
}

#[test]
fn insmod_rmmod_of_a_sample_and_a_module() {
    let mut s = boot();
    assert_eq!(run(&mut s, "insmod ftrace-direct"), "");
    assert_eq!(run(&mut s, "lsmod"), "Module                  Size  Used by\nftrace_direct              0  0\n");
    let e = run(&mut s, "cat enabled_functions");
    assert!(e.contains(" D ") && e.contains("\n\tdirect-->"), "{e}");
    assert!(run(&mut s, "run samples").contains("ftrace-direct"));
    assert_eq!(run(&mut s, "insmod ftrace-direct"), "insmod: ERROR: could not insert module ftrace-direct: File exists\n");
    assert_eq!(run(&mut s, "rmmod ftrace_direct"), "");
    assert_eq!(run(&mut s, "rmmod ftrace_direct"), "rmmod: ERROR: Module ftrace_direct is not currently loaded\n");
    assert_eq!(run(&mut s, "cat enabled_functions"), "");

    // A loadable module: traced through a :mod: filter, busy while traced.
    // The loader logs to the console, as Linux's printk does.
    let log = run(&mut s, "insmod sample_mod.o");
    assert!(log.contains("module sample_mod: loaded at ") && !log.contains("ERROR"), "{log}");
    assert_eq!(run(&mut s, "echo 'sample_mod_add:mod:sample_mod' > set_ftrace_filter"), "");
    assert_eq!(run(&mut s, "echo function > current_tracer"), "");
    assert!(run(&mut s, "run module 1").starts_with("sample_mod_work(1) = 0x"));
    let t = run(&mut s, "cat trace");
    assert_eq!(body(&t).len(), 1, "{t}");
    assert!(body(&t)[0].contains(": sample_mod_add <-sample_mod_"), "{t}");
    assert!(run(&mut s, "rmmod sample_mod").starts_with("rmmod: ERROR: Module sample_mod is in use"));
    assert_eq!(run(&mut s, "echo nop > current_tracer"), "");
    let log = run(&mut s, "rmmod sample_mod");
    assert!(log.contains("module sample_mod: unloaded") && !log.contains("ERROR"), "{log}");
    assert_eq!(run(&mut s, "lsmod"), "Module                  Size  Used by\n");
}

#[test]
fn bpf_objects_load_run_dump_and_a_refusal() {
    let mut s = boot();
    let objs = run(&mut s, "bpf obj list");
    for o in ["fentry_test", "maps_test", "subprog_test", "bad_null_check"] {
        assert!(objs.lines().any(|l| l.starts_with(o)), "{o} missing from {objs}");
    }
    assert_eq!(run(&mut s, "bpf prog load maps_test"), "loaded maps_test: prog_ids 1  map_ids 1,2,3,4,5\n");
    let list = run(&mut s, "bpf prog list");
    assert!(list.starts_with("1: fentry  name count_calls  target bpf_fentry_test1  gpl\n\tobject maps_test  tag "), "{list}");
    assert!(list.ends_with("  map_ids 1,2,3,4,5\n"), "{list}");
    let x = run(&mut s, "bpf prog dump xlated 1");
    assert!(x.starts_with("   0: (79) r7 = *(u64 *)(r1 +0)\n") && x.contains("(18) r1 = map[id:1]\n"), "{x}");
    for _ in 0..2 {
        let r = run(&mut s, "bpf prog run 1 5");
        assert!(r.starts_with("Return value: 0 (0x0), ") && r.ends_with(" instructions executed\n"), "{r}");
    }
    assert_eq!(run(&mut s, "bpf map dump 1"), "key: 05 00 00 00  value: 02 00 00 00 00 00 00 00  05 00 00 00 00 00 00 00\nFound 1 element\n");
    let rb = run(&mut s, "bpf map dump 4");
    assert!(rb.starts_with("ring buffer: 4096 bytes, consumer 0, producer 48\nrecord (16 bytes): 00 00 00 00 05 00 00 00  "), "{rb}");
    assert!(rb.ends_with("Consumed 2 records\n"), "{rb}");
    // BPF-to-BPF calls and bpf_trace_printk's line in the trace.
    assert_eq!(run(&mut s, "bpf prog load subprog_test"), "loaded subprog_test: prog_ids 2,3  map_ids 6,7,8\n");
    let r = run(&mut s, "bpf prog run 2 7");
    assert!(r.ends_with(" instructions executed\n1 bpf_trace_printk line in the trace (cat trace)\n"), "{r}");
    let t = run(&mut s, "cat trace");
    assert_eq!(body(&t).len(), 1, "{t}");
    assert!(body(&t)[0].ends_with(": bpf_trace_printk: entry_scale: 7 -> 16"), "{t}");
    // The verifier's refusal: its log, the error, and nothing loaded.
    let e = run(&mut s, "bpf prog load bad_null_check");
    assert!(e.starts_with("-- BEGIN PROG LOAD LOG --\n") && e.contains("\nR0 invalid mem access 'map_value_or_null'\n-- END PROG LOAD LOG --\n"), "{e}");
    assert!(e.ends_with("refused by the verifier: insn 8: R0 invalid mem access 'map_value_or_null'\n"), "{e}");
    assert_eq!(run(&mut s, "bpf prog run 4"), "Error: get by id (4): No such file or directory (bpf prog list shows the programs)\n");
    assert_eq!(run(&mut s, "bpf map list").lines().filter(|l| !l.starts_with('\t')).count(), 8);
    assert_eq!(run(&mut s, "bpf obj unload maps_test"), "");
    assert_eq!(run(&mut s, "bpf obj unload subprog_test"), "");
    assert_eq!(run(&mut s, "bpf prog list"), "");
    assert_eq!(run(&mut s, "bpf obj unload maps_test"), "Error: object maps_test is not loaded\n");
}

#[test]
fn poweroff_ends_the_session() {
    let mut s = boot();
    s.send_line("poweroff");
    s.wait_for("powering off", CMD).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.wait_exit(CMD).is_some(), "QEMU should exit after poweroff");
}

#[test]
fn a_boot_script_runs_and_the_machine_powers_off() {
    let dir = std::env::temp_dir().join(format!("loongtrace-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("session.sh");
    std::fs::write(&script, "echo chain_c > set_ftrace_filter\necho function > current_tracer\nrun chain 2\ncat trace\n").unwrap();
    let mut cfg = config("tests=boot script");
    cfg.extra_args = vec!["-fw_cfg".into(), format!("name=opt/loongtrace/script,file={}", script.display())];
    // No shell=1: `runner::run` boots without it, and the kernel powers off after the script.
    cfg.timeout = Duration::from_secs(120);
    let out = loongtrace_tools::runner::run(&cfg).expect("QEMU runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = out.text();
    assert!(!out.timed_out, "{text}");
    assert!(text.contains(&format!("{PROMPT}run chain 2\nchain_root called 2 times")), "{text}");
    assert!(text.contains("entries-in-buffer/entries-written: 2/"), "{text}");
    assert_eq!(text.matches("selftest::targets::chain_c <-selftest::targets::chain_b").count(), 2, "{text}");
    assert!(text.contains("powering off"));
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn survives_random_bytes_overlong_lines_and_busy_cpus() {
    let mut s = boot();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // 10,000 lines of 0 to 24 random bytes (any value but the line ends), in large writes.
    let mut batch = Vec::new();
    for i in 0..10_000 {
        let len = (rng.next() % 25) as usize;
        for _ in 0..len {
            let b = rng.next() as u8;
            batch.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        batch.push(if i % 2 == 0 { b'\r' } else { b'\n' });
        if batch.len() > 64 * 1024 {
            s.send(&batch);
            batch.clear();
        }
    }
    s.send(&batch);
    // Overlong lines (three times the 4095-byte line) and every control character.
    s.send(&vec![b'x'; 3 * 4096]);
    s.send(b"\r");
    s.send(&vec![b'>'; 5000]);
    s.send(b"\r");
    s.send(&(0u8..32).collect::<Vec<u8>>());
    s.send(b"\x15\x1b[A\x1b[1;5C\x7f\x08\r");
    // Resynchronise: Ctrl-C drops any partial line, then a marker.
    s.send(b"\x03");
    s.send_line("echo ROBUST-MARKER-1");
    let t0 = std::time::Instant::now();
    s.wait_for("\nROBUST-MARKER-1\n", Duration::from_secs(600)).unwrap_or_else(|e| panic!("after random input: {e}"));
    eprintln!("random input taken in {:?}", t0.elapsed());
    s.wait_for(PROMPT, CMD).unwrap_or_else(|e| panic!("{e}"));
    assert!(!s.transcript().contains("panicked"), "the kernel panicked");

    // Every CPU traces every function while commands are typed.
    assert_eq!(run(&mut s, "echo function > current_tracer"), "");
    s.send_line("run timer 50");
    for line in ["cat tracing_on", "ls per_cpu", "cat enabled_functions", "cat per_cpu/cpu1/trace", "echo > trace"] {
        s.send_line(line);
    }
    s.send_line("echo ROBUST-MARKER-2");
    let t0 = std::time::Instant::now();
    s.wait_for("\nROBUST-MARKER-2\n", Duration::from_secs(600)).unwrap_or_else(|e| panic!("while tracing: {e}"));
    eprintln!("commands while tracing took {:?}", t0.elapsed());
    s.wait_for(PROMPT, CMD).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.transcript().contains("timer_work ran "), "the timer workload ran");
    assert_eq!(run(&mut s, "echo nop > current_tracer"), "");

    // A normal session still works.
    run(&mut s, "echo 'chain_?' > set_ftrace_filter");
    run(&mut s, "echo function > current_tracer");
    run(&mut s, "run chain");
    let t = run(&mut s, "cat trace");
    assert_eq!(body(&t).len(), 3, "{t}");
    assert!(!s.transcript().contains("panicked") && !s.transcript().contains("PANIC"), "the kernel panicked");
    s.send_line("poweroff");
    assert!(s.wait_exit(CMD).is_some());
}

#[test]
fn kprobe_events_define_enable_filter_trigger_and_remove() {
    let mut s = boot();
    // Definitions: a kprobe on the entry with register and memory fetches, a kretprobe.
    assert_eq!(run(&mut s, "echo 'p:myprobe chain_c x=%a0 s=$stack0:x64 c=$comm' > kprobe_events"), "");
    assert_eq!(run(&mut s, "echo 'r:myret chain_b ret=$retval arg=$arg1' >> kprobe_events"), "");
    let defs = run(&mut s, "cat kprobe_events");
    println!("{defs}");
    assert_eq!(defs.lines().count(), 2, "{defs}");
    println!("{}", run(&mut s, "ls events/kprobes"));
    println!("{}", run(&mut s, "cat events/kprobes/myprobe/format"));
    assert_eq!(run(&mut s, "echo 1 > events/kprobes/myprobe/enable"), "");
    assert_eq!(run(&mut s, "echo 1 > events/kprobes/myret/enable"), "");
    println!("{}", run(&mut s, "cat set_event"));
    assert!(run(&mut s, "run chain 3").starts_with("chain_root called 3 times"));
    let t = run(&mut s, "cat trace");
    println!("{t}");
    let lines: Vec<&str> = body(&t);
    assert_eq!(lines.iter().filter(|l| l.contains("myprobe: (selftest::targets::chain_c+0x0/")).count(), 3, "{t}");
    assert_eq!(lines.iter().filter(|l| l.contains("myret: (")).count(), 3, "{t}");
    // A filter keeps one call in three.
    assert_eq!(run(&mut s, "echo > trace"), "");
    assert_eq!(run(&mut s, "echo 'x == 3' > events/kprobes/myprobe/filter"), "");
    assert_eq!(run(&mut s, "cat events/kprobes/myprobe/filter"), "x == 3\n");
    // A bad filter is refused, logged, and the old one stays.
    assert_eq!(run(&mut s, "echo 'x == ' > events/kprobes/myprobe/filter"), "sh: write error: filter: Invalid argument\n");
    println!("{}", run(&mut s, "cat error_log"));
    assert_eq!(run(&mut s, "cat events/kprobes/myprobe/filter"), "x == 3\n");
    // A hist trigger on the kretprobe.
    assert_eq!(run(&mut s, "echo 'hist:keys=ret:vals=arg' > events/kprobes/myret/trigger"), "");
    run(&mut s, "run chain 2");
    let t = run(&mut s, "cat trace");
    println!("{t}");
    println!("{}", run(&mut s, "cat events/kprobes/myret/hist"));
    println!("{}", run(&mut s, "cat events/kprobes/myret/trigger"));
    println!("{}", run(&mut s, "cat kprobe_profile"));
    // Removal is refused while enabled, then works.
    assert_eq!(run(&mut s, "echo '-:myprobe' >> kprobe_events"), "sh: write error: kprobe_events: Device or resource busy\n");
    assert_eq!(run(&mut s, "echo 0 > events/kprobes/enable"), "");
    assert_eq!(run(&mut s, "echo '!hist:keys=ret:vals=arg' > events/kprobes/myret/trigger"), "");
    assert_eq!(run(&mut s, "echo '-:myprobe' >> kprobe_events"), "");
    assert_eq!(run(&mut s, "cat kprobe_events").lines().count(), 1);
    // A bad definition: EINVAL and an error_log entry with a caret.
    assert_eq!(run(&mut s, "echo 'p:bad no_such_function_xyz' >> kprobe_events"), "sh: write error: kprobe_events: Invalid argument\n");
    let log = run(&mut s, "cat error_log");
    println!("{log}");
    assert!(log.contains("trace_kprobe: error: Invalid probed address or symbol"), "{log}");
    assert_eq!(run(&mut s, "echo > kprobe_events"), "");
    assert_eq!(run(&mut s, "cat kprobe_events"), "");
}

#[test]
fn random_event_definitions_and_filters_typed_at_the_prompt() {
    let mut s = boot();
    const DEF: &[&str] = &[
        "p", "r", "p:", "r4:", "-:", "kprobes/", "ev", "x", " ", "chain_c", "chain_b", "+4", "+3", "0x", "%a0", "%a1", "$retval",
        "$stack0", "$arg1", "$comm", "+8(", ")", ":u32", ":s8", ":string", ":symbol", "=", "@", "[2]", "b3@2/", "#", "-", "(", ":x64",
    ];
    const FLT: &[&str] = &["x", "name", "==", "!=", "<", ">=", "&", "~", "\"he*\"", "7", "-1", "0x10", "&&", "||", "!", "(", ")", " ", "CPU", "comm"];
    assert_eq!(run(&mut s, "echo 'p:rnd chain_c x=%a0 name=$comm' > kprobe_events"), "");
    let mut rng = Rng(0x5eed_0000_e7e7_0023);
    // 10,000 lines in large writes, through the serial line and the line editor (the in-kernel
    // suite `events` types 10,000 more through the shell's command layer).
    let mut batch = String::new();
    let t0 = std::time::Instant::now();
    for i in 0..10_000 {
        let (parts, file) = if i % 2 == 0 { (DEF, "kprobe_events") } else { (FLT, "events/kprobes/rnd/filter") };
        let mut line = String::new();
        for _ in 0..1 + rng.next() % 7 {
            line.push_str(parts[(rng.next() % parts.len() as u64) as usize]);
        }
        // Never define more than one extra probe at a time: remove whatever was defined.
        batch.push_str(&format!("echo '{line}' >> {file}\r"));
        if i % 2 == 0 {
            batch.push_str("echo '-:ev' >> kprobe_events\r");
        }
        if batch.len() > 16 * 1024 {
            s.send(batch.as_bytes());
            batch.clear();
        }
    }
    s.send(batch.as_bytes());
    s.send_line("echo EVENTS-MARKER");
    s.wait_for("\nEVENTS-MARKER\n", Duration::from_secs(600)).unwrap_or_else(|e| panic!("after the random lines: {e}"));
    s.wait_for(PROMPT, CMD).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("10,000 random lines taken in {:?}", t0.elapsed());
    assert!(!s.transcript().contains("panicked"), "the kernel panicked");
    // The kernel still records the event (its filter reset) and lists its definitions.
    assert_eq!(run(&mut s, "echo 0 > events/kprobes/rnd/filter"), "");
    assert_eq!(run(&mut s, "echo 1 > events/kprobes/rnd/enable"), "");
    assert!(run(&mut s, "run chain").starts_with("chain_root called"));
    let t = run(&mut s, "cat trace");
    assert_eq!(body(&t).iter().filter(|l| l.contains(" rnd: (selftest::targets::chain_c+0x0/")).count(), 1, "{t}");
    assert!(run(&mut s, "cat kprobe_events").contains("p:kprobes/rnd chain_c x=%a0 name=$comm"));
    let log = run(&mut s, "cat error_log");
    assert!(log.lines().filter(|l| l.contains("error: ")).count() > 5, "{log}");
}
