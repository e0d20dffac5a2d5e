//! Suite `events`: trace events through the shell's command layer — kprobe and kretprobe events
//! with every fetch form, static tracepoint events with their fields, filters with string globs
//! and nested logic, triggers (traceoff, hist with known counts), errors that change nothing, and
//! random definition lines and filters typed at the prompt.

use super::targets::{EventArg, chain_root, event_target};
use super::tracefs_tests::{ok, sh};
use crate::selftest::{TestError, TestResult};
use crate::tracefs;
use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::string::String;
use alloc::vec::Vec;
use core::hint::black_box;

/// The event lines of `trace` (the part after `NAME: `), oldest first.
fn events(name: &str) -> Vec<String> {
    let key = alloc::format!(" {name}: ");
    sh("cat trace").lines().filter_map(|l| l.find(&key).map(|i| String::from(&l[i + 1..]))).collect()
}

fn clean(f: impl FnOnce() -> TestResult) -> TestResult {
    tracefs::reset();
    let r = f();
    tracefs::reset();
    r
}

fn arg(x: u64, small: u32, name: &str) -> EventArg {
    let mut a = EventArg { word: x * 10, small, _pad: 0, name: [0; 16] };
    a.name[..name.len()].copy_from_slice(name.as_bytes());
    a
}

ktest! {
    /// A kprobe event with register, memory (`+8(%a1):u32`), string, signed, symbol, `$comm`,
    /// immediate and stack fetches; the trace lines as Linux prints them.
    fn events::kprobe_event_fetch_args() {
        clean(|| {
            ok("echo 'p:evt event_target x=%a0 small=+8(%a1):u32 word=+0(%a1):u64 name=+16(%a1):string neg=%a0:s8 c=$comm imm=\\7 hex=%a0:x16 sym=%ra:symbol' > kprobe_events")?;
            ok("echo 1 > events/kprobes/evt/enable")?;
            let a = arg(255, 42, "hello");
            black_box(event_target(black_box(255), &a));
            let ev = events("evt");
            kassert_eq!(ev.len(), 1, "{ev:?}");
            let line = &ev[0];
            kassert!(line.starts_with("evt: (selftest::targets::event_target+0x0/0x"), "{line}");
            kassert!(line.contains(") x=0xff small=42 word=2550 name=\"hello\" neg=-1 c=\"loongtrace/"), "{line}");
            kassert!(line.contains(" imm=0x7 hex=0xff sym=selftest::events_tests::"), "{line}");
            // The format file names every field with Linux's types.
            let f = sh("cat events/kprobes/evt/format");
            kassert!(f.contains("\tfield:u32 small;\toffset:24;\tsize:4;\tsigned:0;"), "{f}");
            kassert!(f.contains("\tfield:__data_loc char[] name;"), "{f}");
            kassert!(f.contains("\tfield:s8 neg;"), "{f}");
            Ok(())
        })
    }
}

ktest! {
    /// A kretprobe event: `$retval`, `$arg1` from the entry, the caller in the line.
    fn events::kretprobe_event() {
        clean(|| {
            ok("echo 'r:ret event_target rv=$retval a=$arg1 s=$stack' > kprobe_events")?;
            ok("echo 1 > events/kprobes/ret/enable")?;
            let a = arg(1, 5, "x");
            let r = black_box(event_target(black_box(10), &a));
            kassert_eq!(r, 15);
            let ev = events("ret");
            kassert_eq!(ev.len(), 1, "{ev:?}");
            kassert!(ev[0].contains(" <- selftest::targets::event_target) rv=0xf a=0xa s=0x"), "{}", ev[0]);
            kassert!(ev[0].starts_with("ret: (selftest::events_tests::"), "{}", ev[0]);
            Ok(())
        })
    }
}

ktest! {
    /// Filters: numbers, string globs, nested logic and `!`; a bad filter is refused, logged
    /// with its caret, and the old one stays.
    fn events::filters() {
        clean(|| {
            ok("echo 'p:f event_target x=%a0 small=+8(%a1):u32 name=+16(%a1):string' > kprobe_events")?;
            ok("echo 1 > events/kprobes/f/enable")?;
            ok("echo '(small > 5 && name ~ \"he*\") || x == 1' > events/kprobes/f/filter")?;
            for (x, small, name) in [(1, 0, "zz"), (2, 9, "hello"), (3, 9, "world"), (4, 2, "help"), (5, 6, "heap")] {
                let a = arg(x, small, name);
                black_box(event_target(black_box(x), &a));
            }
            let xs: Vec<String> = events("f").iter().map(|l| String::from(l.split(' ').nth(2).unwrap_or(""))).collect();
            kassert_eq!(xs, ["x=0x1", "x=0x2", "x=0x5"]);
            kassert_eq!(sh("cat events/kprobes/f/filter"), "(small > 5 && name ~ \"he*\") || x == 1\n");
            kassert_eq!(sh("echo 'small >' > events/kprobes/f/filter"), "sh: write error: filter: Invalid argument\n");
            kassert_eq!(sh("cat events/kprobes/f/filter"), "(small > 5 && name ~ \"he*\") || x == 1\n");
            let log = sh("cat error_log");
            kassert!(log.contains("event filter parse error: error: "), "{log}");
            kassert!(log.contains("  Command: small >\n"), "{log}");
            ok("echo '!(x & 1)' > events/kprobes/f/filter")?;
            ok("echo > trace")?;
            for x in 1..=4 {
                let a = arg(x, 0, "");
                black_box(event_target(black_box(x), &a));
            }
            kassert_eq!(events("f").len(), 2);
            ok("echo 0 > events/kprobes/f/filter")?;
            kassert_eq!(sh("cat events/kprobes/f/filter"), "none\n");
            Ok(())
        })
    }
}

ktest! {
    /// Static tracepoint events: ftrace:site_update with the old and new word of the site the
    /// function tracer enables; set_event globs and `!`; events/enable reads X when mixed.
    fn events::static_tracepoints() {
        clean(|| {
            let avail = sh("cat available_events");
            for e in ["irq:timer_tick", "module:module_load", "module:module_free", "ftrace:site_update", "bpf:trampoline_attach", "bpf:trampoline_detach"] {
                kassert!(avail.lines().any(|l| l == e), "{e} missing: {avail}");
            }
            ok("echo 'ftrace:site_*' > set_event")?;
            kassert_eq!(sh("cat set_event"), "ftrace:site_update\n");
            kassert_eq!(sh("cat events/enable"), "X\n");
            kassert_eq!(sh("cat events/ftrace/enable"), "1\n");
            // A function probe patches the site (switching tracers would clear the trace).
            ok("echo 'chain_c:traceon' > set_ftrace_filter")?;
            ok("echo '!chain_c:traceon' >> set_ftrace_filter")?;
            let ev = events("site_update");
            kassert_eq!(ev.len(), 2, "{ev:?}");
            kassert!(ev[0].starts_with("site_update: ip=selftest::targets::chain_c+0x0/0x"), "{}", ev[0]);
            kassert!(ev[0].ends_with(" old=0x3400000 new=0x") || ev[0].contains(" old=0x3400000 new=0x5"), "{}", ev[0]);
            kassert!(ev[1].contains(" new=0x3400000"), "{}", ev[1]);
            ok("echo '!ftrace:*' >> set_event")?;
            kassert_eq!(sh("cat set_event"), "");
            kassert_eq!(sh("echo no_such:event > set_event"), "sh: write error: set_event: Invalid argument\n");
            kassert_eq!(sh("cat events/ftrace/site_update/id"), "4\n");
            Ok(())
        })
    }
}

ktest! {
    /// Triggers: traceoff with a count and an if-filter stops tracing at the right call; a
    /// hist trigger counts a workload with known numbers; `!` removes them.
    fn events::triggers() {
        clean(|| {
            ok("echo 'p:t event_target x=%a0 small=+8(%a1):u32' > kprobe_events")?;
            ok("echo 'traceoff:1 if x == 7' > events/kprobes/t/trigger")?;
            kassert_eq!(sh("cat events/kprobes/t/trigger"), "traceoff:count=1 if x == 7\n");
            for x in 5..10 {
                let a = arg(x, 0, "");
                black_box(event_target(black_box(x), &a));
            }
            kassert_eq!(sh("cat tracing_on"), "0\n", "traceoff fired");
            kassert_eq!(sh("cat events/kprobes/t/trigger"), "traceoff:count=0 if x == 7\n");
            ok("echo 1 > tracing_on")?;
            ok("echo '!traceoff' > events/kprobes/t/trigger")?;
            ok("echo 'hist:keys=small:vals=x:sort=small' > events/kprobes/t/trigger")?;
            // small = x % 3, 30 calls: each key 10 times; x sums per key known.
            let mut sums = [0u64; 3];
            for x in 0..30u64 {
                sums[(x % 3) as usize] += x;
                let a = arg(x, (x % 3) as u32, "");
                black_box(event_target(black_box(x), &a));
            }
            let h = sh("cat events/kprobes/t/hist");
            for k in 0..3 {
                let want = alloc::format!("{{ small:          {k} }} hitcount:         10  x: {:>10}", sums[k]);
                kassert!(h.contains(&want), "{want} missing in\n{h}");
            }
            kassert!(h.contains("    Hits: 30\n    Entries: 3\n    Dropped: 0\n"), "{h}");
            kassert_eq!(sh("echo 'hist:keys=nope' > events/kprobes/t/trigger"), "sh: write error: trigger: Invalid argument\n");
            ok("echo '!hist' > events/kprobes/t/trigger")?;
            kassert_eq!(sh("cat events/kprobes/t/trigger"), crate::events::trigger::AVAILABLE);
            Ok(())
        })
    }
}

ktest! {
    /// Bad definitions: the errno, the error_log entry with its caret, and nothing changed;
    /// removal of an enabled event is refused.
    fn events::errors_change_nothing() {
        clean(|| {
            ok("echo 'p:keep chain_c' > kprobe_events")?;
            let before = sh("cat kprobe_events");
            for (line, reason) in [
                ("p:bad no_such_function_xyz", "Invalid probed address or symbol"),
                ("p:bad chain_c x=%nosuchreg", "Invalid register name"),
                ("p:bad chain_c $retval", "$retval is not available on probe"),
                ("r:bad chain_c+4", "Retprobe address must be an function entry"),
                ("p:ftrace/site_update chain_b", "Given group/event name is already used by another event"),
                ("r:keep chain_b", "Probe type is different from existing probe"),
                ("p:bad chain_c x=+0(%a0", "Dereference brace is not closed"),
            ] {
                let out = sh(&alloc::format!("echo '{line}' >> kprobe_events"));
                kassert!(out.starts_with("sh: write error: kprobe_events: "), "{line}: {out}");
                let log = sh("cat error_log");
                kassert!(log.contains(&alloc::format!("trace_kprobe: error: {reason}\n  Command: {line}\n")), "{line}:\n{log}");
                kassert_eq!(sh("cat kprobe_events"), before, "{line} changed the definitions");
            }
            ok("echo 1 > events/kprobes/keep/enable")?;
            kassert_eq!(sh("echo > kprobe_events"), "sh: write error: kprobe_events: Device or resource busy\n");
            kassert_eq!(sh("cat kprobe_events"), before);
            ok("echo 0 > events/kprobes/keep/enable")?;
            ok("echo '-:keep' >> kprobe_events")?;
            kassert_eq!(sh("cat kprobe_events"), "");
            kassert_eq!(sh("ls events/kprobes"), "ls: cannot access 'events/kprobes': No such file or directory\n");
            Ok(())
        })
    }
}

ktest! {
    /// 10,000 random definition lines and filter strings typed at the prompt: each accepted or
    /// refused, no panic, and the kernel still answers (and a chain run still traces).
    fn events::random_lines() {
        clean(|| {
            const DEF: &[&str] = &[
                "p", "r", "p:", "r4:", "-:", "kprobes/", "ev", "x", " ", "chain_c", "chain_b", "+4", "+3", "0x", "ffff", "%a0", "%a1",
                "%r4", "$retval", "$stack0", "$arg1", "$comm", "+8(", ")", ":u32", ":s8", ":string", ":symbol", "=", "@", "\\\"t\"", "[2]",
                "b3@2/", "'", "\\", "#", "event_target", "-", "(", ":x64",
            ];
            const FLT: &[&str] = &["x", "small", "name", "==", "!=", "<", ">=", "&", "~", "\"he*\"", "'a'", "7", "-1", "0x10", "&&", "||", "!", "(", ")", " ", "CPU", "comm", "common_pid", ".function"];
            // In a group of its own: a random `-:kprobes/` removes every event of `kprobes`.
            ok("echo 'p:keep/rnd event_target x=%a0 small=+8(%a1):u32 name=+16(%a1):string' > kprobe_events")?;
            let mut rng = bpf::rng::Rng(0x9e37_79b9_7f4a_7c15);
            let (mut accepted, mut refused) = (0, 0);
            for i in 0..10_000 {
                let (parts, file) = if i % 2 == 0 { (DEF, "kprobe_events") } else { (FLT, "events/keep/rnd/filter") };
                let n = 1 + rng.below(7);
                let mut line = String::new();
                for _ in 0..n {
                    line.push_str(rng.pick(parts));
                    if rng.below(3) == 0 {
                        line.push(' ');
                    }
                }
                let line = line.replace('\'', "");
                let out = sh(&alloc::format!("echo '{line}' >> {file}"));
                if out.is_empty() { accepted += 1 } else { refused += 1 }
                if i % 2 == 0 {
                    // Keep only `rnd`: drop whatever an accepted line added.
                    let defs = sh("cat kprobe_events");
                    for d in defs.lines().filter(|d| !d.contains("keep/rnd ")) {
                        if let Some(name) = d.split_whitespace().next().and_then(|w| w.split_once(':')).map(|(_, n)| n) {
                            sh(&alloc::format!("echo '-:{name}' >> kprobe_events"));
                        }
                    }
                }
            }
            kdiag!("10000 random lines: {accepted} accepted, {refused} refused");
            kassert!(refused > 1000 && accepted > 100, "{accepted} accepted, {refused} refused");
            ok("echo 0 > events/keep/rnd/filter")?;
            ok("echo 1 > events/keep/rnd/enable")?;
            let a = arg(3, 1, "ok");
            black_box(event_target(black_box(3), &a));
            kassert_eq!(events("rnd").len(), 1, "the kernel still records");
            black_box(chain_root(black_box(1)));
            Ok(())
        })
    }
}

ktest! {
    /// The fast path of number-only events: packed fields that straddle words (`u8` then `u64`
    /// at offset 17), narrow and signed ones, with and without a filter and a trigger.
    fn events::packed_numbers() {
        clean(|| {
            ok("echo 'p:pk event_target a=%a0:u8 w=+0(%a1):u64 s=+8(%a1):u16 n=%a0:s32' > kprobe_events")?;
            let f = sh("cat events/kprobes/pk/format");
            kassert!(f.contains("\tfield:u64 w;\toffset:17;\tsize:8;\tsigned:0;"), "{f}");
            ok("echo 1 > events/kprobes/pk/enable")?;
            for x in [3u64, 0x1_0000_0101] {
                let a = arg(x, 0xbeef, "");
                black_box(event_target(black_box(x), &a));
            }
            let ev = events("pk");
            kassert_eq!(ev.len(), 2, "{ev:?}");
            kassert!(ev[0].ends_with(" a=3 w=30 s=48879 n=3"), "{}", ev[0]);
            kassert!(ev[1].ends_with(" a=1 w=42949675530 s=48879 n=257"), "{}", ev[1]);
            ok("echo > trace")?;
            ok("echo 'w == 30' > events/kprobes/pk/filter")?;
            ok("echo 'hist:keys=a' > events/kprobes/pk/trigger")?;
            for x in [3u64, 4, 3] {
                let a = arg(x, 1, "");
                black_box(event_target(black_box(x), &a));
            }
            kassert_eq!(events("pk").len(), 2);
            let h = sh("cat events/kprobes/pk/hist");
            kassert!(h.contains("    Hits: 3\n    Entries: 2\n"), "{h}");
            Ok(())
        })
    }
}

extern "C" fn empty_prog(_ctx: &crate::ftrace::bpf::TraceCtx) -> u64 {
    0
}

ktest! {
    /// The other static tracepoints' events with their fields: module load and free, BPF
    /// trampoline attach and detach, the timer tick; and a stacktrace trigger.
    fn events::module_bpf_timer_and_stacktrace() {
        clean(|| {
            ok("echo 'module:*' > set_event")?;
            ok("echo 'bpf:*' >> set_event")?;
            let m = super::module_tests::load("sample_mod")?;
            let base = m.base;
            drop(m);
            crate::module::unload("sample_mod").map_err(|e| TestError::Fail(alloc::format!("unload: {e}")))?;
            let f = crate::ftrace::bpf::Func::named("chain_c", 1).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            let link = crate::ftrace::bpf::Attach::fentry(f, empty_prog).map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            link.detach().map_err(|e| TestError::Fail(alloc::format!("{e}")))?;
            kassert_eq!(events("module_load"), [alloc::format!("module_load: name=\"sample_mod\" base={base:#x}")]);
            kassert_eq!(events("module_free"), ["module_free: name=\"sample_mod\""]);
            let att = events("trampoline_attach");
            kassert_eq!(att.len(), 1, "{att:?}");
            kassert!(att[0].starts_with("trampoline_attach: ip=selftest::targets::chain_c+0x0/0x") && att[0].ends_with(" kind=\"fentry\" progs=1"), "{}", att[0]);
            let det = events("trampoline_detach");
            kassert!(det.len() == 1 && det[0].ends_with(" kind=\"fentry\" progs=0"), "{det:?}");
            // The timer tick of this CPU.
            ok("echo > trace")?;
            ok("echo irq:timer_tick > set_event")?;
            let t0 = arch::time::ticks();
            while events("timer_tick").is_empty() && arch::time::ticks() - t0 < crate::time::counter_hz() / 2 {
                core::hint::spin_loop();
            }
            let ticks = events("timer_tick");
            kassert!(!ticks.is_empty() && ticks[0].starts_with("timer_tick: cpu="), "{ticks:?}");
            ok("echo > set_event")?;
            // stacktrace:1: one `<stack trace>` whose frames name this test's function.
            ok("echo > trace")?;
            ok("echo 'p:st event_target x=%a0' > kprobe_events")?;
            ok("echo 'stacktrace:1' > events/kprobes/st/trigger")?;
            for x in 0..3 {
                let a = arg(x, 0, "");
                black_box(event_target(black_box(x), &a));
            }
            let t = sh("cat trace");
            kassert_eq!(t.matches("<stack trace>").count(), 1, "{t}");
            kassert!(t.contains(" => selftest::events_tests::"), "{t}");
            kassert_eq!(sh("cat events/kprobes/st/trigger"), "stacktrace:count=0\n");
            Ok(())
        })
    }
}

ktest! {
    /// One-slot records (`events::inline`): an event whose record fits one ring slot takes the
    /// fast path; the same definition with a filter that keeps everything takes the general
    /// one. Both print the same fields and store the same record bytes (common fields included):
    /// sizes 8, 4, 2 and 1, a read outside kernel RAM (0), and, in a second definition, an
    /// unaligned read (which leaves the call-free fetch for the general one's).
    fn events::one_slot_records_match_the_general_path() {
        for (def, d) in [("event_target a=%a0 b=+8(%a1):u32 e=+0(%a0):u8", ""), ("event_target a=%a0 b=+8(%a1):u32 d=+9(%a1):u16 e=+0(%a0):u8", " d=770")] {
            clean(|| {
                ok(&alloc::format!("echo 'p:fast {def}' > kprobe_events"))?;
                ok(&alloc::format!("echo 'p:slow {def}' >> kprobe_events"))?;
                ok("echo 'a != 12345' > events/kprobes/slow/filter")?;
                ok("echo 1 > events/kprobes/fast/enable")?;
                ok("echo 1 > events/kprobes/slow/enable")?;
                // `+0(%a0)` reads address x: 0 outside kernel RAM, a byte of the argument inside.
                let a = arg(7, 0x0403_0201, "");
                let inside = &a.small as *const u32 as u64 + 1;
                let cpu = arch::cpu::id() % arch::boot::MAX_CPUS;
                let start = crate::ftrace::tracer::BUFFERS[cpu].head();
                for x in [0u64, 1, 0xffff_ffff_ffff_ffff, inside] {
                    black_box(event_target(black_box(x), &a));
                }
                let (fast, slow) = (events("fast"), events("slow"));
                kassert_eq!(fast.len(), 4, "{fast:?}");
                let strip = |l: &String| String::from(l.split_once(") ").map_or("", |(_, f)| f));
                let f: Vec<String> = fast.iter().map(strip).collect();
                let s: Vec<String> = slow.iter().map(strip).collect();
                kassert_eq!(f, s, "the one-slot path prints what the general path does");
                kassert_eq!(f[0], alloc::format!("a=0x0 b=67305985{d} e=0"));
                kassert_eq!(f[3], alloc::format!("a={inside:#x} b=67305985{d} e=2"));
                let mut kinds = Vec::new();
                crate::ftrace::tracer::BUFFERS[cpu].read_from(start, |_, e| kinds.push(e.kind));
                let (ev, inline, cont) = (crate::events::inline::KIND_EVENT, crate::events::inline::KIND_EVENT_INLINE, crate::ringbuf::KIND_CONT);
                kassert_eq!(kinds, [inline, ev, cont].repeat(4), "one slot for the fast event's records, two for the filtered one's");
                // `trace` counts records, not slots (12 slots here).
                let t = sh("cat trace");
                kassert!(t.contains("# entries-in-buffer/entries-written: 8/8 "), "{t}");
                // As the readers see them: the same bytes but for the event id (bytes 0..2).
                let mut slots = Vec::new();
                crate::ftrace::tracer::BUFFERS[cpu].read_from(start, |_, e| crate::events::registry::push_expanded(&mut slots, e));
                let ids = [crate::events::registry::find("kprobes", "fast"), crate::events::registry::find("kprobes", "slow")].map(|e| e.map_or(0, |e| u64::from(e.id)));
                for (i, pair) in slots.chunks(4).enumerate() {
                    kassert_eq!(pair.iter().map(|e| e.kind).collect::<Vec<_>>(), [ev, cont, ev, cont]);
                    kassert_eq!([pair[0].parent, pair[2].parent], ids);
                    let (fb, sb) = (pair[1].payload(), pair[3].payload());
                    kassert_eq!(u16::from_le_bytes([fb[0], fb[1]]) as u64, ids[0]);
                    kassert_eq!(fb[2..], sb[2..], "call {i}: common fields (flags, pid), ip and arguments");
                    kassert_eq!((pair[0].extra, pair[0].depth, pair[0].cpu), (pair[2].extra, pair[2].depth, pair[2].cpu), "call {i}: length, flags, CPU");
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}
