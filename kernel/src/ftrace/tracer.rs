//! The function tracer: one ring-buffer event per traced call, printed in Linux's `trace` format.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::ringbuf::{KIND_FUNC, RingBuffer, TraceEntry};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use formats::task;

/// Events each CPU's buffer holds before it overwrites the oldest.
pub const BUFFER_ENTRIES: usize = 4096;
const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// Per-CPU buffers shared by the function and function-graph tracers.
pub static BUFFERS: [RingBuffer<BUFFER_ENTRIES>; MAX_CPUS] = {
    let mut b = [const { RingBuffer::new() }; MAX_CPUS];
    let mut cpu = 0;
    while cpu < MAX_CPUS {
        b[cpu] = RingBuffer::for_cpu(cpu as u8);
        cpu += 1;
    }
    b
};

/// [`TraceEntry::kind`] of a `trace_marker` write: `extra` is the marker's number (see
/// `tracefs`), `ip`/`parent` unused.
pub const KIND_MARKER: u8 = 3;
/// [`TraceEntry::kind`] of one frame of a `func:stacktrace` probe's stack: `depth` is the frame
/// number (0 = the probed function, `ip`), `parent` the return address found in frame `depth`.
pub const KIND_STACK: u8 = 4;

/// `tracing_on`: whether events are written to the buffers at all (the tracers keep running).
/// Each CPU's per-CPU area mirrors it: the pointer to the CPU's buffer that [`record`] loads is
/// null while tracing is off ([`set_tracing_on`] keeps them in step).
static TRACING_ON: AtomicBool = AtomicBool::new(true);
/// Held while one caller of [`set_tracing_on`] writes the per-CPU pointers.
static MIRROR_BUSY: AtomicBool = AtomicBool::new(false);

/// Whether `tracing_on` is set.
#[inline(always)]
pub fn tracing_on() -> bool {
    TRACING_ON.load(Ordering::Relaxed)
}

/// Sets `tracing_on` and its per-CPU mirror. Callable from any context, triggers included: it
/// never waits. Two callers at once cannot leave the mirror stale: one that finds the mirror
/// being written leaves it to the writer, which checks the flag again after it let go.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn set_tracing_on(on: bool) {
    TRACING_ON.store(on, Ordering::SeqCst);
    loop {
        if MIRROR_BUSY.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // The writer checks TRACING_ON after it lets go, so it sees our store.
            return;
        }
        let on = TRACING_ON.load(Ordering::SeqCst);
        for (cpu, b) in BUFFERS.iter().enumerate() {
            let p = if on { b as *const _ as u64 } else { 0 };
            arch::boot::percpu(cpu).trace_ring.store(p, Ordering::SeqCst);
        }
        MIRROR_BUSY.store(false, Ordering::SeqCst);
        if TRACING_ON.load(Ordering::SeqCst) == on {
            return;
        }
    }
}

/// Entry flag (in `depth` of a function event): recorded with interrupts disabled.
pub const FLAG_IRQS_OFF: u16 = 1 << 0;
/// Entry flag: recorded inside an exception or interrupt handler.
pub const FLAG_IN_TRAP: u16 = 1 << 1;

/// Flags describing the context of the current CPU.
#[inline(always)]
pub fn context_flags() -> u16 {
    context_flags_at(arch::trap::depth())
}

/// [`context_flags`] for a caller that has read the trap depth already (`trap_depth`).
#[inline(always)]
pub fn context_flags_at(trap_depth: usize) -> u16 {
    // Without branches: a handful of instructions on every traced call.
    let irqs_off = u16::from(!arch::cpu::irq_enabled());
    let in_trap = u16::from(trap_depth != 0);
    irqs_off * FLAG_IRQS_OFF | in_trap * FLAG_IN_TRAP
}

/// Points every CPU's per-CPU area at its buffer (boot, before any tracing starts).
pub fn init_buffers() {
    set_tracing_on(tracing_on());
}

/// This CPU's buffer while tracing is on (`None` while it is off): one load through the
/// per-CPU area, where indexing [`BUFFERS`] by the CPU number takes seven instructions and
/// reading `tracing_on` three more.
#[inline(always)]
pub fn this_cpu_buffer_if_on() -> Option<&'static RingBuffer<BUFFER_ENTRIES>> {
    let p = arch::boot::this_cpu_load::<{ arch::boot::PERCPU_TRACE_RING }>();
    // SAFETY: a non-zero pointer was stored by `set_tracing_on`: this CPU's element of the
    // 'static `BUFFERS`.
    (p != 0).then(|| unsafe { &*(p as *const RingBuffer<BUFFER_ENTRIES>) })
}

/// Appends an event to this CPU's buffer.
#[inline(always)]
pub fn record(kind: u8, ip: u64, parent: u64, depth: u16, extra: u64) {
    let Some(buffer) = this_cpu_buffer_if_on() else { return };
    buffer.push(&TraceEntry {
        ts: arch::time::ticks(),
        ip,
        parent,
        kind,
        cpu: 0,
        depth,
        cont: 0,
        aux: 0,
        extra,
    });
}

/// [`record`] of an event taken at `ts` whose kind and depth are `kind_depth`
/// ([`TraceEntry::kind_depth_word`]).
#[inline(always)]
pub fn record_raw(ts: u64, kind_depth: u64, ip: u64, parent: u64, extra: u64) {
    let Some(buffer) = this_cpu_buffer_if_on() else { return };
    buffer.push_raw(ts, ip, parent, kind_depth, extra);
}

/// Writes a stack trace into this CPU's buffer as [`KIND_STACK`] records (Linux's `<stack
/// trace>`): `ip`, then `first` (a caller not on the stack yet: its return address and the
/// frame value `fixup` takes with it), then up to `max` frames walked from `fp`. `fixup` gives
/// a frame's real return address (return hooks replace them). At least one record.
pub fn record_stack(ip: u64, first: Option<(u64, u64)>, fp: Option<u64>, max: usize, fixup: fn(u64, u64) -> u64) {
    let flags = context_flags() as u64;
    let mut n = 0u16;
    if let Some((ret, at)) = first {
        record(KIND_STACK, ip, fixup(ret, at), n, flags);
        n += 1;
    }
    if let Some(fp) = fp {
        arch::unwind::walk(fp, arch::boot::stack_bounds(arch::cpu::id()), max, |f| {
            record(KIND_STACK, ip, fixup(f.ret, f.fp), n, flags);
            n += 1;
            true
        });
    }
    if n == 0 {
        record(KIND_STACK, ip, 0, 0, flags);
    }
}

/// The function tracer's callback. It guards itself against recursion (as Linux's does), so its
/// ops asks the core for none and `ftrace_caller` calls it straight, with no assist function
/// between.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
extern "C" fn function_trace_call(ip: u64, parent_ip: u64, _ops: &FtraceOps, _regs: &mut FtraceRegs) {
    let trap_depth = arch::trap::depth();
    let Some(held) = super::recursion::trylock_callback_at(trap_depth) else { return };
    record(KIND_FUNC, ip, parent_ip, context_flags_at(trap_depth), 0);
    super::recursion::unlock_callback(held);
}

/// The function tracer's ops.
pub static FUNCTION_OPS: FtraceOps = FtraceOps::new(function_trace_call, OpsFlags::empty());

/// Clears every buffer (only while no tracer writes to them).
pub fn reset_buffers() {
    BUFFERS.iter().for_each(|b| b.reset());
}

/// Starts the function tracer on the functions named by `filter` (all when `None`).
pub fn start(filter: Option<&str>) -> Result<(), FtraceError> {
    if FUNCTION_OPS.is_registered() {
        return Err(FtraceError::AlreadyRegistered);
    }
    match filter {
        Some(f) => super::ftrace_set_filter(&FUNCTION_OPS, f, true)?,
        None => super::ftrace_reset_filters(&FUNCTION_OPS)?,
    }
    super::register_ftrace_function(&FUNCTION_OPS)
}

/// Stops the function tracer (the buffers keep their events).
pub fn stop() -> Result<(), FtraceError> {
    super::unregister_ftrace_function(&FUNCTION_OPS)?;
    super::ftrace_reset_filters(&FUNCTION_OPS)
}

/// Everything read from the buffers: events in timestamp order plus the lost count.
pub struct Collected {
    pub events: Vec<TraceEntry>,
    pub lost: u64,
    pub written: u64,
}

/// Takes every entry out of every CPU's buffer, merged in timestamp order: for the function and
/// graph tracers' records (trace events' slots come as the ring holds them; tracefs and the
/// export read those through `events::registry::push_expanded`).
pub fn collect() -> Collected {
    let mut events = Vec::new();
    let (mut lost, mut written) = (0, 0);
    for b in BUFFERS.iter() {
        written += b.written();
        let st = b.snapshot(|_, e| events.push(e));
        lost += st.lost;
    }
    events.sort_by_key(|e| (e.ts, e.cpu));
    Collected { events, lost, written }
}

/// A symbol name without the crate prefix, as the trace shows it.
pub fn short_name(addr: u64) -> &'static str {
    let n = crate::ksyms::name(addr);
    n.strip_prefix("loongtrace_kernel::").unwrap_or(n)
}

/// Writes the header of Linux's `trace` file.
pub fn write_header(w: &mut dyn Write, tracer: &str, c: &Collected) -> core::fmt::Result {
    writeln!(w, "# tracer: {tracer}")?;
    writeln!(w, "#")?;
    writeln!(
        w,
        "# entries-in-buffer/entries-written: {}/{}   #P:{}   lost: {}",
        c.events.len(),
        c.written,
        crate::cpu::CPUS_UP.load(core::sync::atomic::Ordering::Relaxed),
        c.lost
    )?;
    writeln!(w, "#")?;
    writeln!(w, "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION")?;
    writeln!(w, "#              | |         |   |||||     |         |")
}

/// Writes one function event as a `trace` line:
/// `    loongtrace/0-1       [000] d.h..     0.123456: func <-parent`.
pub fn write_function_line(w: &mut dyn Write, e: &TraceEntry) -> core::fmt::Result {
    write_line_prefix(w, e, e.depth)?;
    writeln!(w, "{} <-{}", short_name(e.ip), short_name(e.parent))
}

/// Writes one `trace_marker` event (whose text is `text`) as Linux's `print` line:
/// `    loongtrace/0-1       [000] .....     0.123456: tracing_mark_write: text`.
pub fn write_marker_line(w: &mut dyn Write, e: &TraceEntry, text: &str) -> core::fmt::Result {
    write_line_prefix(w, e, e.depth)?;
    writeln!(w, "{}: {text}", short_name(e.ip))
}

/// The task, CPU, flags and timestamp columns of a function-layout line
/// (`    loongtrace/1-2       [001] d.h..    12.345678: `); the task is the CPU's context as
/// `formats::task` names it everywhere (`loongtrace/<cpu>`, PID cpu + 1); `flags` holds `FLAG_IRQS_OFF` /
/// `FLAG_IN_TRAP` (a function event's `depth`, a graph event's saved context).
pub fn write_line_prefix(w: &mut dyn Write, e: &TraceEntry, flags: u16) -> core::fmt::Result {
    // Microseconds rounded to nearest, as Linux's `ns2usecs` (and trace-cmd) print them.
    let ns = (e.ts as u128 * 1_000_000_000 / crate::time::counter_hz() as u128) as u64;
    let usecs = (ns + 500) / 1000;
    let (s, us) = (usecs / 1_000_000, usecs % 1_000_000);
    let irq = if flags & FLAG_IRQS_OFF != 0 { 'd' } else { '.' };
    let trap = if flags & FLAG_IN_TRAP != 0 { 'h' } else { '.' };
    let cpu = u32::from(e.cpu);
    write!(w, "{:>16}-{:<7} [{:03}] {irq}.{trap}.. {s:>5}.{us:06}: ", task::Comm(cpu), task::pid(cpu), e.cpu)
}
