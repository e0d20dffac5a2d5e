//! SMP: bringing up the secondary CPUs, cross-calls (run a function on every other CPU and
//! wait), per-CPU work for tests, and the quiescence wait the ftrace core uses before freeing.

use arch::frame::PtRegs;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const MAX_CPUS: usize = arch::boot::MAX_CPUS;
/// IPI vector of cross-calls.
const VEC_CALL: u32 = 1;
/// IPI vector that only wakes a CPU (new work).
const VEC_WAKE: u32 = 2;

pub use crate::cpu::{mark_online, online, online_mask};

/// Starts every other CPU QEMU has and waits (up to one second) until they are online.
pub fn start_secondaries() -> usize {
    let want = arch::fw_cfg::cpu_count().unwrap_or(1).clamp(1, MAX_CPUS);
    if want > 1 {
        arch::smp::start_secondaries(want);
        let t0 = arch::time::ticks();
        while online() < want && arch::time::ticks() - t0 < crate::time::counter_hz() {
            core::hint::spin_loop();
        }
    }
    if online() < want {
        log::error!("smp: only {} of {want} CPUs came up", online());
    }
    want
}

/// Rust entry of a secondary CPU (called by `_start` with its stack and `r21` set up).
#[unsafe(no_mangle)]
pub extern "C" fn loongtrace_secondary_main(cpu: usize) -> ! {
    arch::cpu::ibar();
    arch::trap::init_this_cpu();
    crate::cpu::plant_stack_canary(cpu);
    arch::smp::init_this_cpu();
    crate::irq::start_tick();
    crate::cpu::CPUS_UP.fetch_add(1, Ordering::AcqRel);
    mark_online();
    loop {
        match WORK[cpu].swap(0, Ordering::AcqRel) {
            0 => arch::cpu::idle(),
            f => {
                // SAFETY: a nonzero slot holds a `fn(usize)` stored by `run_on`.
                let f = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
                f(cpu);
                BUSY_WORK[cpu].store(0, Ordering::Release);
            }
        }
    }
}

static WORK: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static BUSY_WORK: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Runs `f(cpu)` on secondary `cpu` in normal context (interrupts on), without waiting.
/// Returns false if that CPU is offline or still busy.
pub fn run_on(cpu: usize, f: fn(usize)) -> bool {
    if cpu == 0 || cpu >= MAX_CPUS || online_mask() & (1 << cpu) == 0 {
        return false;
    }
    if BUSY_WORK[cpu].compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return false;
    }
    WORK[cpu].store(f as usize, Ordering::Release);
    arch::smp::send_ipi(cpu, VEC_WAKE);
    true
}

/// Whether work given with [`run_on`] is still running on `cpu`.
pub fn work_running(cpu: usize) -> bool {
    BUSY_WORK[cpu % MAX_CPUS].load(Ordering::Acquire) != 0
}

/// A function run by every other CPU from its IPI handler; it sees the interrupted context and
/// answers true ("fine") or false ("busy").
pub type CrossFn = fn(interrupted: &PtRegs) -> bool;

static CALL_LOCK: spin::Mutex<()> = spin::Mutex::new(());
static CALL_FN: AtomicUsize = AtomicUsize::new(0);
static CALL_PENDING: AtomicU64 = AtomicU64::new(0);
static CALL_BUSY: AtomicU64 = AtomicU64::new(0);
/// Cross-calls made so far.
pub static CROSS_CALLS: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on every other online CPU (in its IPI handler) and waits until all have run it.
/// Returns the mask of CPUs that answered "busy". Call with interrupts enabled, from normal
/// context, and never from `f` itself.
pub fn on_other_cpus(f: CrossFn) -> u64 {
    let me = 1u64 << arch::cpu::id();
    let others = online_mask() & !me;
    if others == 0 {
        return 0;
    }
    let _g = CALL_LOCK.lock();
    CROSS_CALLS.fetch_add(1, Ordering::Relaxed);
    CALL_FN.store(f as usize, Ordering::Relaxed);
    CALL_BUSY.store(0, Ordering::Relaxed);
    CALLER.store(arch::cpu::id(), Ordering::Relaxed);
    CALL_PENDING.store(others, Ordering::Release);
    // The IPI is an IOCSR write: order the stores above before it.
    arch::cpu::dbar();
    for cpu in 0..MAX_CPUS {
        if others & (1 << cpu) != 0 {
            arch::smp::send_ipi(cpu, VEC_CALL);
        }
    }
    let t0 = arch::time::ticks();
    let mut spins = 0u32;
    while CALL_PENDING.load(Ordering::Acquire) != 0 {
        // Spin briefly, then sleep until an interrupt (each answer sends one; the timer tick
        // bounds the wait if an answer lands just before the `idle`): under QEMU the answering
        // CPUs then get the host CPU time they need.
        spins += 1;
        if spins < 256 {
            core::hint::spin_loop();
        } else {
            arch::cpu::idle();
        }
        if arch::time::ticks() - t0 > crate::time::counter_hz() * 5 {
            // Going on would break every guarantee built on this call (text seen by all CPUs,
            // nothing freed under a running CPU); a CPU that does not answer IPIs is a kernel bug.
            panic!("smp: cross-call not answered by CPUs {:#x} within 5 s", CALL_PENDING.load(Ordering::Acquire));
        }
    }
    CALL_BUSY.load(Ordering::Acquire)
}

/// The CPU waiting for the current cross-call's answers.
static CALLER: AtomicUsize = AtomicUsize::new(0);

/// The IPI interrupt: run a pending cross-call.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn handle_ipi(frame: &mut PtRegs) {
    let pending = arch::smp::take_ipis();
    arch::cpu::dbar();
    if pending & (1 << VEC_CALL) != 0 {
        let me = 1u64 << arch::cpu::id();
        if CALL_PENDING.load(Ordering::Acquire) & me != 0 {
            // SAFETY: CALL_FN holds a `CrossFn` stored by `on_other_cpus` before CALL_PENDING.
            let f = unsafe { core::mem::transmute::<usize, CrossFn>(CALL_FN.load(Ordering::Relaxed)) };
            if !f(frame) {
                CALL_BUSY.fetch_or(me, Ordering::AcqRel);
            }
            CALL_PENDING.fetch_and(!me, Ordering::AcqRel);
            arch::smp::send_ipi(CALLER.load(Ordering::Acquire), VEC_WAKE);
        }
    }
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn ibar_here(_: &PtRegs) -> bool {
    arch::cpu::dbar();
    arch::cpu::ibar();
    true
}

/// Makes every CPU execute `ibar 0` (and a full barrier), so text and data changes made before
/// are seen by all of them before the caller goes on.
pub fn sync_all_cpus() {
    arch::cpu::dbar();
    arch::cpu::ibar();
    on_other_cpus(ibar_here);
}
