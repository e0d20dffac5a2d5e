//! The function tracer: one ring-buffer event per traced call, printed in Linux's `trace` format.

use super::ops::{FtraceError, FtraceOps, FtraceRegs, OpsFlags};
use crate::ringbuf::{KIND_FUNC, RingBuffer, TraceEntry};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use formats::task;

/// Slots of room each CPU's ring reserves: the largest size it can be given (4 MiB).
pub const RING_ROOM: usize = 65536;
/// Bytes one slot takes in a ring (what `buffer_size_kb` counts).
pub const SLOT_BYTES: usize = crate::ringbuf::SLOT_BYTES;
/// Slots per CPU at boot, unless the command line's `trace_buf_size=` says otherwise: Linux's
/// default (1408 KiB) rounded up to a power of two of slots (2 MiB).
pub const DEFAULT_ENTRIES: usize = 32768;
/// The smallest ring: 16 slots (1 KiB).
pub const MIN_ENTRIES: usize = 16;
const MAX_CPUS: usize = arch::boot::MAX_CPUS;

/// Per-CPU buffers shared by the function and function-graph tracers and the trace events.
pub static BUFFERS: [RingBuffer<RING_ROOM>; MAX_CPUS] = {
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
/// Writing is paused (the mirror is null whatever `tracing_on` says) while rings are resized.
static PAUSED: AtomicBool = AtomicBool::new(false);
/// Serialises resizes.
static RESIZE: spin::Mutex<()> = spin::Mutex::new(());

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
    publish_mirror();
}

/// Whether writers may write: `tracing_on` and no resize under way.
#[inline(always)]
fn writing() -> bool {
    TRACING_ON.load(Ordering::SeqCst) && !PAUSED.load(Ordering::SeqCst)
}

/// Brings the per-CPU mirror in step with [`writing`] (see [`set_tracing_on`]).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn publish_mirror() {
    loop {
        if MIRROR_BUSY.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // The writer checks the flags after it lets go, so it sees our store.
            return;
        }
        let on = writing();
        for (cpu, b) in BUFFERS.iter().enumerate() {
            let p = if on { b as *const _ as u64 } else { 0 };
            arch::boot::percpu(cpu).trace_ring.store(p, Ordering::SeqCst);
        }
        MIRROR_BUSY.store(false, Ordering::SeqCst);
        if writing() == on {
            return;
        }
    }
}

/// Why a resize was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeError {
    /// Not a size a ring can have (0, or more than [`RING_ROOM`] slots).
    Size,
    /// No such CPU.
    Cpu,
}

/// The slots a ring of `kb` KiB has: `kb` rounded up to a power of two of [`SLOT_BYTES`] slots,
/// at least [`MIN_ENTRIES`]; `None` for 0 or above the room reserved.
pub fn entries_for_kb(kb: u64) -> Option<usize> {
    let slots = kb.checked_mul(1024)?.div_ceil(SLOT_BYTES as u64);
    let slots = usize::try_from(slots).ok()?.checked_next_power_of_two()?.max(MIN_ENTRIES);
    (kb != 0 && slots <= RING_ROOM).then_some(slots)
}

/// Gives the ring of `cpu` (every CPU's when `None`) `entries` slots (a power of two from
/// [`MIN_ENTRIES`] to [`RING_ROOM`]), emptying it, while tracing may go on: writing pauses
/// (every CPU's mirror is null, and writers that had it are waited for), the rings change, and
/// writing resumes. Events written meanwhile are not recorded, as with `tracing_on` off. A ring
/// that has that size already is left as it is (as Linux does).
pub fn resize_buffers(cpu: Option<usize>, entries: usize) -> Result<(), ResizeError> {
    if !entries.is_power_of_two() || !(MIN_ENTRIES..=RING_ROOM).contains(&entries) {
        return Err(ResizeError::Size);
    }
    if cpu.is_some_and(|c| c >= MAX_CPUS) {
        return Err(ResizeError::Cpu);
    }
    let selected = |c: &usize| cpu.is_none_or(|x| x == *c);
    if BUFFERS.iter().enumerate().filter(|(c, _)| selected(c)).all(|(_, b)| b.capacity() == entries) {
        return Ok(());
    }
    let _g = RESIZE.lock();
    PAUSED.store(true, Ordering::SeqCst);
    publish_mirror();
    // A caller of `set_tracing_on` that held the mirror's lock just then rewrites it after it
    // lets go (it rechecks the flags, PAUSED included): wait until every pointer is null.
    let t0 = arch::time::ticks();
    while MIRROR_BUSY.load(Ordering::SeqCst) || (0..MAX_CPUS).any(|c| arch::boot::percpu(c).trace_ring.load(Ordering::SeqCst) != 0) {
        if arch::time::ticks() - t0 > crate::time::counter_hz() {
            publish_mirror();
        }
        core::hint::spin_loop();
    }
    // Writers inside ftrace's trampolines (counted once other CPUs run) have finished after
    // this; any other that loaded the pointer just before is a few instructions from done, and
    // the cross-call makes every CPU see the null mirror. (A straggler writes inside the ring's
    // reserved room: see `RingBuffer::resize`.)
    if !super::quiesce::synchronize_tracing() {
        log::warn!("tracer: a CPU stayed inside a tracing call during a ring resize; it may leave one record late");
    }
    crate::smp::sync_all_cpus();
    for (_, b) in BUFFERS.iter().enumerate().filter(|(c, _)| selected(c)) {
        // Cannot fail: the size was checked above.
        let _ = b.resize(entries);
    }
    PAUSED.store(false, Ordering::SeqCst);
    publish_mirror();
    Ok(())
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

/// Gives every CPU's ring `entries` slots (the command line's `trace_buf_size=`, else
/// [`DEFAULT_ENTRIES`]) and points every CPU's per-CPU area at it (boot, before any tracing
/// starts).
pub fn init_buffers(entries: usize) {
    BOOT_ENTRIES.store(entries, Ordering::Relaxed);
    for b in BUFFERS.iter() {
        let _ = b.resize(entries);
    }
    set_tracing_on(tracing_on());
}

/// Slots per CPU given at boot.
static BOOT_ENTRIES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(DEFAULT_ENTRIES);

/// The slots each CPU's ring got at boot (`trace_buf_size=`, else [`DEFAULT_ENTRIES`]).
pub fn boot_entries() -> usize {
    BOOT_ENTRIES.load(Ordering::Relaxed)
}

/// This CPU's buffer while tracing is on (`None` while it is off): one load through the
/// per-CPU area, where indexing [`BUFFERS`] by the CPU number takes seven instructions and
/// reading `tracing_on` three more.
#[inline(always)]
pub fn this_cpu_buffer_if_on() -> Option<&'static RingBuffer<RING_ROOM>> {
    let p = arch::boot::this_cpu_load::<{ arch::boot::PERCPU_TRACE_RING }>();
    // SAFETY: a non-zero pointer was stored by `publish_mirror`: this CPU's element of the
    // 'static `BUFFERS`.
    (p != 0).then(|| unsafe { &*(p as *const RingBuffer<RING_ROOM>) })
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

/// Empties `cpu`'s ring (every CPU's when `None`) for its readers and starts its counts again
/// (`> trace`, a tracer change); writers may go on.
pub fn clear_buffers(cpu: Option<usize>) {
    BUFFERS.iter().enumerate().filter(|(c, _)| cpu.is_none_or(|x| x == *c)).for_each(|(_, b)| b.clear());
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
