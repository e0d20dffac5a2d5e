//! Kernel start-up on the boot CPU: console, traps, heap, symbols, command line, self-tests.

use alloc::string::String;
use spin::Once;

use crate::cmdline::{Cmdline, Options, Severity};

static CMDLINE: Once<String> = Once::new();
static OPTIONS: Once<Options<'static>> = Once::new();

/// What the command line set (the defaults before it was read).
pub fn options() -> Options<'static> {
    OPTIONS.get().copied().unwrap_or_default()
}

/// Printed before each command-line error; the host fails a run that shows one.
pub const CMDLINE_ERROR_MARKER: &str = "# loongtrace: command-line error:";

/// What the boot CPU found at the patch sites before anything touched them.
pub struct EarlyScan {
    pub sites: usize,
    /// Sites whose four words (two before the entry, two at it) were not all `nop`.
    pub not_nop: usize,
    pub first_bad: u64,
}

static EARLY: Once<EarlyScan> = Once::new();

/// The scan of the patch sites taken at boot.
pub fn early_scan() -> &'static EarlyScan {
    EARLY.get().expect("early scan runs at boot")
}

fn scan_sites() -> EarlyScan {
    let mut scan = EarlyScan { sites: 0, not_nop: 0, first_bad: 0 };
    for ip in crate::ftrace::sites::function_entries() {
        scan.sites += 1;
        let all_nop = [ip - 8, ip - 4, ip, ip + 4].iter().all(|&a| arch::patch::read_insn(a) == Ok(arch::insn::NOP));
        if !all_nop {
            if scan.not_nop == 0 {
                scan.first_bad = ip;
            }
            scan.not_nop += 1;
        }
    }
    scan
}

fn read_cmdline() -> String {
    let mut buf = [0u8; 512];
    let n = arch::fw_cfg::read_file("opt/loongtrace/cmdline", &mut buf).unwrap_or(0);
    String::from(core::str::from_utf8(&buf[..n]).unwrap_or("").trim_end_matches('\0').trim())
}


/// Rust entry of the boot CPU, called by `_start` with the stack set up and BSS cleared.
#[unsafe(no_mangle)]
pub extern "C" fn loongtrace_kernel_main(cpu: usize) -> ! {
    crate::irq::init();
    // The self-test harness recovers a case that panics or takes an exception.
    crate::panic::set_hooks(crate::panic::FatalHooks {
        on_panic: crate::selftest::on_panic,
        on_exception: crate::selftest::on_exception,
    });
    crate::cpu::plant_stack_canary(cpu);
    crate::time::init();
    crate::cpu::CPUS_UP.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    crate::heap::init();
    crate::execmem::area::init();
    crate::module::init();
    EARLY.call_once(scan_sites);
    let cmd = Cmdline::new(CMDLINE.call_once(read_cmdline));
    let (opts, complaints) = cmd.options();
    let opts = *OPTIONS.call_once(|| opts);
    crate::logger::init(opts.log);
    println!();
    log::info!("loongtrace {} booting on cpu{cpu}", env!("CARGO_PKG_VERSION"));
    // Whatever the log level: the host checks that the image was built from its tree.
    println!("# loongtrace: sources {}", env!("LOONGTRACE_SOURCES"));
    log::info!("stable counter {} Hz, heap {} MiB", crate::time::counter_hz(), crate::heap::HEAP_SIZE >> 20);
    match crate::ksyms::init() {
        Ok(n) => log::info!("symbol table: {n} symbols"),
        Err(e) => log::warn!("no usable symbol table ({e:?}): addresses will not be symbolised"),
    }
    log::info!("command line: '{}'", cmd.as_str());
    for c in &complaints {
        match c.severity {
            Severity::Warning => log::warn!("command line: {c}"),
            // Printed whatever the log level: the host must see it.
            Severity::Error => println!("{CMDLINE_ERROR_MARKER} {c}"),
        }
    }
    let cmdline_ok = complaints.iter().all(|c| c.severity != Severity::Error);
    let scan = early_scan();
    log::info!("{} patchable function entries", scan.sites);
    let ring_entries = match opts.trace_buf_size {
        None => crate::ftrace::tracer::DEFAULT_ENTRIES,
        Some(bytes) => crate::ftrace::tracer::entries_for_kb(bytes.div_ceil(1024)).unwrap_or_else(|| {
            log::warn!(
                "trace_buf_size={bytes}: more than a ring holds; using the largest ring ({} KiB per CPU)",
                crate::ftrace::tracer::RING_ROOM * crate::ftrace::tracer::SLOT_BYTES / 1024
            );
            crate::ftrace::tracer::RING_ROOM
        }),
    };
    crate::ftrace::tracer::init_buffers(ring_entries);
    crate::ftrace::init();
    crate::ftrace::graph_tracer::init();
    crate::ftrace::bpf::init();
    crate::kprobes::init();
    crate::events::init();
    crate::workloads::init();
    arch::smp::init_this_cpu();
    crate::cpu::mark_online();
    let want = crate::smp::start_secondaries();
    log::info!("smp: {} of {want} CPUs online", crate::smp::online());
    // Decided on the CPUs QEMU has, not on those that made it in time: a late one must not find
    // sites on the uncounted caller.
    if want > 1 && crate::ftrace::core::use_smp_caller().is_err() {
        log::error!("ftrace: cannot switch to the SMP caller");
    }
    crate::irq::start_tick();
    if opts.bench {
        crate::bench::run();
        arch::power::power_off();
    }

    if let Some(list) = opts.modules {
        crate::module::load_from_cmdline(list);
    }
    let sel = if cmdline_ok {
        crate::selftest::Selection { tests: opts.tests, fail_demo: opts.fail_demo != crate::cmdline::FailDemo::Off }
    } else {
        log::error!("no self-tests: the command line has errors (see above)");
        crate::selftest::Selection { tests: crate::cmdline::Tests::None, fail_demo: false }
    };
    if opts.list_tests {
        crate::selftest::list(&sel);
        arch::power::power_off();
    }
    if opts.record.tracer.is_some() && cmdline_ok {
        crate::record::run(&opts.record, opts.script);
        log::info!("powering off");
        arch::power::power_off();
    }

    let sum = crate::selftest::run(&sel);
    log::info!("self-tests: {} passed, {} failed, {} skipped", sum.passed, sum.failed, sum.skipped);
    if opts.demo {
        crate::demo::run_all();
    }
    if opts.gdbdemo {
        crate::gdbdemo::run();
    }
    crate::shell::console::boot_hook(opts.shell, opts.script);
    log::info!("powering off");
    arch::power::power_off()
}
