//! What the shell runs to give the tracers something to see (`run`), and the sample modules
//! (`insmod`, `rmmod`, `lsmod`): shell commands on the top floor (they call the self-test
//! targets, the bench target and the samples), registered with tracefs at boot, with the BPF
//! runtime's `bpf` command.

use crate::selftest::targets::{chain_root, fgraph_recurse};
use crate::tracefs::Command;
use alloc::string::String;
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

/// Deepest `run recurse` (the graph tracer's shadow stack holds 256 calls).
pub const MAX_RECURSE: u64 = 200;
/// Longest `run timer`, in ticks.
pub const MAX_TIMER_TICKS: u64 = 1000;

const USAGE: &str = "usage: run WORKLOAD [N]
  chain [N]     call chain_root -> chain_a -> chain_b -> chain_c, N times (1)
  recurse [N]   fgraph_recurse(N): N nested calls (5, at most 200)
  timer [N]     on every CPU, call timer_work once per timer tick for N ticks (10, at most 1000)
  bench [N]     call bench_target N times (1000)
  samples       run the code the loaded ftrace-direct samples trace, print their log
  module [N]    call sample_mod_work(N) in the loaded module sample_mod (3)
  bpf_test [N]  call the BPF test functions bpf_fentry_test1..4 and bpf_modify_return_test, N times (1)
";

/// Registers `run`, `insmod`, `rmmod`, `lsmod` and `bpf` with the shell (at boot).
pub fn init() {
    static COMMANDS: [Command; 5] = [
        Command { name: "run", run: |_, args, out| run(args, out) },
        Command { name: "insmod", run: modules },
        Command { name: "rmmod", run: modules },
        Command { name: "lsmod", run: modules },
        // The BPF runtime's command (bpftool's words); the runtime sits below tracefs.
        Command { name: "bpf", run: |_, args, out| crate::bpfrt::cmd::run(args, out) },
    ];
    crate::tracefs::register_commands(&COMMANDS);
}

/// `run WORKLOAD [N]`.
pub fn run(args: &[&str], out: &mut String) {
    let n = match args.get(1).map(|a| crate::shell::parse::parse_ulong(a)) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            let _ = writeln!(out, "run: {}: {e}", args[1]);
            return;
        }
    };
    match args.first().copied() {
        Some("chain") => {
            let n = n.unwrap_or(1);
            let sum = (0..n).fold(0u64, |a, i| a.wrapping_add(chain_root(black_box(i))));
            let _ = writeln!(out, "chain_root called {n} times (sum {sum})");
        }
        Some("recurse") => {
            let n = n.unwrap_or(5);
            if n > MAX_RECURSE {
                let _ = writeln!(out, "run: recurse: at most {MAX_RECURSE}");
                return;
            }
            let _ = writeln!(out, "fgraph_recurse({n}) = {}", fgraph_recurse(black_box(n)));
        }
        Some("timer") => {
            let n = n.unwrap_or(10);
            if n == 0 || n > MAX_TIMER_TICKS {
                let _ = writeln!(out, "run: timer: 1 to {MAX_TIMER_TICKS} ticks");
                return;
            }
            let calls = timer_on_every_cpu(n);
            let _ = writeln!(out, "timer_work ran {calls} times on {} CPUs", crate::smp::online());
        }
        Some("bench") => {
            let n = n.unwrap_or(1000);
            let sum = (0..n).fold(0u64, |a, i| a.wrapping_add(crate::bench::bench_target(black_box(i))));
            let _ = writeln!(out, "bench_target called {n} times (sum {sum})");
        }
        Some("samples") => {
            let loaded = crate::tracefs::with_state(|s| s.loaded.clone());
            if loaded.is_empty() {
                let _ = writeln!(out, "run: samples: no sample is loaded (insmod one; lsmod lists them)");
                return;
            }
            crate::samples::take_log();
            for i in loaded {
                (crate::samples::ALL[i].exercise)();
            }
            for l in crate::samples::take_log() {
                let _ = writeln!(out, "{l}");
            }
        }
        Some("module") => {
            let n = n.unwrap_or(3).min(1000);
            let Some(m) = crate::module::try_get("sample_mod") else {
                let _ = writeln!(out, "run: module: sample_mod is not loaded (insmod sample_mod)");
                return;
            };
            let Some(addr) = m.symbol("sample_mod_work") else {
                let _ = writeln!(out, "run: module: sample_mod has no sample_mod_work");
                return;
            };
            // SAFETY: `sample_mod_work` is `extern "C" fn(u64) -> u64` in the module's text; the
            // reference `m` keeps the module loaded during the call.
            let f: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(addr) };
            let _ = writeln!(out, "sample_mod_work({n}) = {:#x}", f(n));
            drop(m);
        }
        Some("bpf_test") => {
            // What Linux's BPF_PROG_TEST_RUN of a tracing program does: call the test functions.
            let n = n.unwrap_or(1).min(1_000_000);
            let mut r = [0; 5];
            for _ in 0..n {
                r = crate::bpfrt::test_run::call_all();
            }
            let _ = writeln!(out, "bpf test functions called {n} times: test1..4 = {}, {}, {}, {}; modify_return = {}", r[0], r[1], r[2], r[3], r[4]);
        }
        _ => out.push_str(USAGE),
    }
}

/// Why `insmod` of a module file failed, as Linux's `insmod` words it.
fn load_error_text(e: &crate::modload::LoadError) -> String {
    use crate::modload::LoadError as L;
    match e {
        L::Duplicate(_) => String::from("File exists"),
        L::NoSpace(_) => String::from("Cannot allocate memory"),
        L::UndefinedSymbol(s) => alloc::format!("Unknown symbol in module ({s})"),
        other => alloc::format!("Invalid module format ({other})"),
    }
}

static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
static TIMER_CALLS: AtomicU64 = AtomicU64::new(0);

/// One unit of the timer workload (traceable).
#[inline(never)]
pub fn timer_work(cpu: usize) -> u64 {
    TIMER_CALLS.fetch_add(1, Ordering::Relaxed);
    chain_root(black_box(cpu as u64))
}

/// Calls `timer_work` each time this CPU's tick count moves, for the requested number of ticks.
fn timer_loop(cpu: usize) {
    let want = TIMER_TICKS.load(Ordering::Relaxed);
    let mut last = crate::irq::ticks(cpu);
    let mut seen = 0;
    while seen < want {
        arch::cpu::idle();
        let now = crate::irq::ticks(cpu);
        if now != last {
            last = now;
            seen += 1;
            timer_work(cpu);
        }
    }
}

fn timer_on_every_cpu(ticks: u64) -> u64 {
    TIMER_TICKS.store(ticks, Ordering::Relaxed);
    TIMER_CALLS.store(0, Ordering::Relaxed);
    let others: alloc::vec::Vec<usize> = (1..arch::boot::MAX_CPUS).filter(|&c| crate::smp::run_on(c, timer_loop)).collect();
    timer_loop(arch::cpu::id());
    while others.iter().any(|&c| crate::smp::work_running(c)) {
        arch::cpu::idle();
    }
    TIMER_CALLS.load(Ordering::Relaxed)
}

fn sample_index(name: &str) -> Option<usize> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.strip_suffix(".ko").unwrap_or(base).replace('_', "-");
    crate::samples::ALL.iter().position(|s| s.name == base)
}

/// Linux's module name for a sample (`ftrace_direct`).
fn module_name(i: usize) -> String {
    crate::samples::ALL[i].name.replace('-', "_")
}

/// The fw_cfg file name of a module given to `insmod` (`sample_mod`, `sample_mod.o`, a path).
fn module_file(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.strip_suffix(".o").or_else(|| base.strip_suffix(".ko")).unwrap_or(base)
}

/// `insmod NAME`, `rmmod NAME`, `lsmod`: the ftrace-direct samples (built into the kernel) and
/// loadable modules (object files QEMU provides under fw_cfg `opt/loongtrace/modules/`).
pub fn modules(cmd: &str, args: &[&str], out: &mut String) {
    use crate::shell::parse::Errno;
    match cmd {
        "lsmod" => {
            let _ = writeln!(out, "Module                  Size  Used by");
            for name in crate::module::loaded().iter().rev() {
                if let Some(m) = crate::module::try_get(name) {
                    // Our own reference does not count.
                    let _ = writeln!(out, "{:<19} {:>8}  {}", name, m.size, m.refs() - 1);
                }
            }
            for i in crate::tracefs::with_state(|s| s.loaded.clone()) {
                let _ = writeln!(out, "{:<19} {:>8}  0", module_name(i), 0);
            }
        }
        "insmod" => {
            let Some(name) = args.first() else {
                let _ = writeln!(out, "insmod: ERROR: missing filename.");
                return;
            };
            let Some(i) = sample_index(name) else {
                let file = module_file(name);
                match crate::module::fw_cfg_read(file) {
                    None => {
                        let _ = writeln!(out, "insmod: ERROR: could not load module {name}: {}", Errno::ENOENT);
                    }
                    Some(bytes) => {
                        if let Err(e) = crate::module::load(&bytes) {
                            let _ = writeln!(out, "insmod: ERROR: could not insert module {name}: {}", load_error_text(&e));
                        }
                    }
                }
                return;
            };
            crate::tracefs::with_state(|s| {
                if s.loaded.contains(&i) {
                    let _ = writeln!(out, "insmod: ERROR: could not insert module {name}: {}", Errno::EEXIST);
                    return;
                }
                crate::samples::take_log();
                match (crate::samples::ALL[i].load)() {
                    Ok(()) => s.loaded.push(i),
                    Err(e) => {
                        let _ = writeln!(out, "insmod: ERROR: could not insert module {name}: {}", crate::tracefs::errno_of(&e));
                    }
                }
            });
        }
        "rmmod" => {
            let Some(name) = args.first() else {
                let _ = writeln!(out, "rmmod: ERROR: missing module name.");
                return;
            };
            let found = sample_index(name);
            let sample_loaded = crate::tracefs::with_state(|s| found.is_some_and(|i| s.loaded.contains(&i)));
            if !sample_loaded {
                let modname = module_file(name);
                let range = crate::module::try_get(modname).map(|m| m.site_range());
                match crate::module::unload(modname) {
                    Ok(()) => {
                        if let Some(r) = range {
                            crate::tracefs::forget_sites(r);
                        }
                    }
                    Err(crate::module::UnloadError::NotLoaded(_)) => {
                        let _ = writeln!(out, "rmmod: ERROR: Module {name} is not currently loaded");
                    }
                    Err(e) => {
                        // Linux's rmmod says only "in use" for EBUSY; the reason follows.
                        let _ = writeln!(out, "rmmod: ERROR: Module {name} is in use ({e})");
                    }
                }
                return;
            }
            crate::tracefs::with_state(|s| {
                let Some(pos) = found.and_then(|i| s.loaded.iter().position(|&l| l == i)) else { return };
                match (crate::samples::ALL[s.loaded[pos]].unload)() {
                    Ok(()) => {
                        s.loaded.remove(pos);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "rmmod: ERROR: could not remove module {name}: {}", crate::tracefs::errno_of(&e));
                    }
                }
            });
        }
        _ => {}
    }
}
