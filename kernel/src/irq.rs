//! Trap policy: the timer tick, `break` expectations for tests, and everything else is fatal.

use arch::frame::PtRegs;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Timer frequency of the periodic tick.
pub const TICK_HZ: u64 = 100;

const MAX_CPUS: usize = arch::boot::MAX_CPUS;
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: the code of a `break` a test expects (+1), 0 when none.
static EXPECT_BREAK: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static BREAKS_SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Handler of `break` exceptions an upper floor owns (kprobes): called with the frame and the
/// word now at `era` (a `break`, or what replaced it since this CPU trapped); `true` = handled
/// (the frame says where to resume).
static BREAK_HANDLER: spin::Once<fn(&mut PtRegs, u32) -> bool> = spin::Once::new();

/// Registers the handler of the `break` codes the floors above use (once, at boot).
pub fn set_break_handler(handler: fn(&mut PtRegs, u32) -> bool) {
    BREAK_HANDLER.call_once(|| handler);
}

/// Installs the trap handlers on the boot CPU.
pub fn init() {
    arch::trap::init(arch::trap::TrapHandlers { interrupt: on_interrupt, exception: on_exception });
}

/// Timer ticks seen by `cpu`.
pub fn ticks(cpu: usize) -> u64 {
    TICKS[cpu % MAX_CPUS].load(Ordering::Relaxed)
}

/// Starts the periodic tick on this CPU and enables interrupts.
pub fn start_tick() {
    arch::time::start_periodic(crate::time::counter_hz() / TICK_HZ);
    arch::cpu::irq_enable();
}

/// The timer tick (traceable: it is ordinary kernel code called from the trap path).
#[inline(never)]
fn timer_tick(cpu: usize) {
    TICKS[cpu % MAX_CPUS].fetch_add(1, Ordering::Relaxed);
    crate::tracepoint::trace!(crate::tracepoint::points::TIMER_TICK, cpu);
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn on_interrupt(line: u32, _frame: &mut PtRegs) {
    match line {
        11 => {
            arch::time::ack();
            timer_tick(arch::cpu::id());
        }
        12 => crate::smp::handle_ipi(_frame),
        _ => {}
    }
}

/// Lets this CPU's next `break code` be handled by skipping it. Returns the number of breaks
/// handled so far, to compare with [`breaks_seen`] later.
pub fn expect_break(code: u16) -> u64 {
    let cpu = arch::cpu::id();
    EXPECT_BREAK[cpu].store(code as usize + 1, Ordering::Relaxed);
    BREAKS_SEEN[cpu].load(Ordering::Relaxed)
}

/// Number of expected breaks this CPU has handled.
pub fn breaks_seen() -> u64 {
    BREAKS_SEEN[arch::cpu::id()].load(Ordering::Relaxed)
}

#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn on_exception(frame: &mut PtRegs) {
    let cpu = arch::cpu::id();
    if arch::trap::ecode(frame) == arch::trap::ECODE_BRK {
        let word = arch::trap::break_word(frame);
        let code = (word & 0x7fff) as usize;
        if word & !0x7fff == arch::insn::BREAK0 && EXPECT_BREAK[cpu].load(Ordering::Relaxed) == code + 1 {
            EXPECT_BREAK[cpu].store(0, Ordering::Relaxed);
            BREAKS_SEEN[cpu].fetch_add(1, Ordering::Relaxed);
            frame.era += 4;
            return;
        }
        if BREAK_HANDLER.get().is_some_and(|h| h(frame, word)) {
            return;
        }
    }
    crate::panic::unexpected_exception(frame);
}
