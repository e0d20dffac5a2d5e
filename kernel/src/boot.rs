//! Kernel start-up on the boot CPU: console, traps, heap, symbols, command line, self-tests.

use alloc::string::String;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Once;

static COUNTER_HZ: AtomicU64 = AtomicU64::new(100_000_000);
static CMDLINE: Once<String> = Once::new();

/// Frequency of the stable counter in Hz.
#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn counter_hz() -> u64 {
    COUNTER_HZ.load(Ordering::Relaxed)
}

/// The kernel command line given by the host.
pub fn cmdline() -> crate::cmdline::Cmdline<'static> {
    crate::cmdline::Cmdline::new(CMDLINE.get().map_or("", |s| s.as_str()))
}

/// Maps a return address found on the stack to the real one (the function-graph tracer replaces
/// return addresses with its return hook); `fp` is the frame pointer it was found under.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn real_return_address(ret: u64, fp: u64) -> u64 {
    crate::ftrace::fgraph::real_return_address(ret, fp)
}

unsafe extern "C" {
    static __start_patchable_function_entries: u64;
    static __stop_patchable_function_entries: u64;
}

/// The compiler's records: for each patchable function, the address of its first prefix `nop`
/// (8 bytes before the entry; see [`function_entries`]).
pub fn patchable_entries() -> &'static [u64] {
    // SAFETY: the linker script brackets the section, an array of 8-byte absolute addresses.
    unsafe {
        let start = core::ptr::addr_of!(__start_patchable_function_entries);
        let n = (core::ptr::addr_of!(__stop_patchable_function_entries) as usize - start as usize) / 8;
        core::slice::from_raw_parts(start, n)
    }
}

/// The entry address of every patchable function.
pub fn function_entries() -> impl Iterator<Item = u64> {
    patchable_entries().iter().map(|&r| arch::ftrace::site_ip(r))
}

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
    for ip in function_entries() {
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

/// Written at the low end of every boot stack; a stack that overflowed has overwritten it.
const STACK_CANARY: u64 = 0x57ac_c0de_57ac_c0de;
const CANARY_WORDS: usize = 8;

fn canary_words(cpu: usize) -> &'static [core::sync::atomic::AtomicU64] {
    let (low, _) = arch::boot::stack_bounds(cpu);
    // SAFETY: the lowest 64 bytes of this CPU's boot stack: mapped, 8-byte aligned, and only
    // reached by the stack if it overflows, which is what the canary detects.
    unsafe { core::slice::from_raw_parts(low as *const core::sync::atomic::AtomicU64, CANARY_WORDS) }
}

/// Puts the canary at the bottom of `cpu`'s stack.
pub fn plant_stack_canary(cpu: usize) {
    canary_words(cpu).iter().for_each(|w| w.store(STACK_CANARY, Ordering::Relaxed));
}

/// Checks this CPU's stack canary (an isolation check between self-test cases).
pub fn check_stack_canary() -> Result<(), String> {
    let cpu = arch::cpu::id();
    match canary_words(cpu).iter().position(|w| w.load(Ordering::Relaxed) != STACK_CANARY) {
        None => Ok(()),
        Some(i) => Err(alloc::format!("cpu{cpu}'s boot stack overflowed (canary word {i} overwritten)")),
    }
}

/// Number of CPUs that reached Rust code.
pub static CPUS_UP: AtomicUsize = AtomicUsize::new(0);

const KNOWN_KEYS: &[&str] = &["tests", "log", "fail_demo", "demo", "bench", "stress", "stress_mask", "modules", "gdbdemo", "removal_rounds"];

/// Rust entry of the boot CPU, called by `_start` with the stack set up and BSS cleared.
#[unsafe(no_mangle)]
pub extern "C" fn loongtrace_kernel_main(cpu: usize) -> ! {
    crate::irq::init();
    plant_stack_canary(cpu);
    COUNTER_HZ.store(arch::time::frequency(), Ordering::Relaxed);
    CPUS_UP.fetch_add(1, Ordering::Relaxed);
    crate::heap::init();
    crate::module::init();
    EARLY.call_once(scan_sites);
    let cmd = CMDLINE.call_once(read_cmdline);
    let cmd = crate::cmdline::Cmdline::new(cmd);
    let level = match cmd.get("log") {
        Some("error") => log::LevelFilter::Error,
        Some("warn") => log::LevelFilter::Warn,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        Some("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    crate::logger::init(level);
    println!();
    log::info!("loongtrace {} booting on cpu{cpu}", env!("CARGO_PKG_VERSION"));
    log::info!("stable counter {} Hz, heap {} MiB", counter_hz(), crate::heap::HEAP_SIZE >> 20);
    match crate::ksyms::init() {
        Ok(n) => log::info!("symbol table: {n} symbols"),
        Err(e) => log::warn!("no usable symbol table ({e:?}): addresses will not be symbolised"),
    }
    log::info!("command line: '{}'", cmd.as_str());
    for w in cmd.unknown(KNOWN_KEYS).filter(|w| !crate::record::KEYS.contains(&w.split('=').next().unwrap_or(w))) {
        log::warn!("ignoring unknown command-line word '{w}'");
    }
    let scan = early_scan();
    log::info!("{} patchable function entries", scan.sites);
    crate::ftrace::init();
    crate::selftest::add_isolation_check("boot stack canary", check_stack_canary);
    arch::smp::init_this_cpu();
    crate::smp::mark_online();
    let want = crate::smp::start_secondaries();
    log::info!("smp: {} of {want} CPUs online", crate::smp::online());
    // Decided on the CPUs QEMU has, not on those that made it in time: a late one must not find
    // sites on the uncounted caller.
    if want > 1 && crate::ftrace::core::use_smp_caller().is_err() {
        log::error!("ftrace: cannot switch to the SMP caller");
    }
    crate::irq::start_tick();
    if cmd.flag("bench") {
        crate::bench::run();
        arch::power::power_off();
    }

    if let Some(list) = cmd.get("modules") {
        crate::module::load_from_cmdline(list);
    }
    if cmd.get("record").is_some() {
        crate::record::run(cmd);
        log::info!("powering off");
        arch::power::power_off();
    }

    let sel = crate::selftest::Selection { patterns: cmd.get("tests"), fail_demo: cmd.flag("fail_demo") };
    let sum = crate::selftest::run(&sel);
    log::info!("self-tests: {} passed, {} failed, {} skipped", sum.passed, sum.failed, sum.skipped);
    if cmd.flag("demo") {
        crate::demo::run_all();
    }
    if cmd.flag("gdbdemo") {
        crate::gdbdemo::run();
    }
    log::info!("powering off");
    arch::power::power_off()
}
