//! The event registry: every trace event the kernel knows (its static tracepoints and the
//! dynamic kprobe/kretprobe events of `kprobe_events`), with an id, a layout, an enable bit, a
//! filter and triggers, and the code that writes an event's record into this CPU's ring buffer.
//!
//! A record is Linux's: the common fields, then the event's own (see [`super::format`]). In the
//! ring it is one first slot of kind [`KIND_EVENT`] (timestamp, CPU, context flags; `ip` the
//! probed address; `parent` the event id; `extra` the record's length) followed by the record's
//! bytes in continuation slots ([`crate::ringbuf::RingBuffer::push_record`]); a short kprobe
//! record takes one slot ([`super::inline`]), which the collectors expand ([`push_expanded`]).
//!
//! An event is *armed* (its probe registered or its tracepoint's probe on) while it is enabled
//! or has a trigger; it records only while enabled (Linux's soft-disabled mode runs triggers of a
//! disabled event the same way). Filters and triggers are replaced whole: readers on the hot path
//! load a pointer, and a replaced one is freed only after every CPU left the code that may still
//! read it ([`retire`]).

use super::filter::{self, EventFilter, ParseEnv};
use super::format::{CommonHeader, EventLayout, RecordWriter, SymbolInfo, Symbolizer, TpField};
use super::probe_def::FetchType;
use crate::ringbuf::{CONT_BYTES, KIND_CONT, MAX_CONT, TraceEntry};
use crate::tracepoint::{TpArg, TpType, Tracepoint};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

pub use super::inline::{INLINE_MAX, KIND_EVENT, KIND_EVENT_INLINE};
/// Largest record an event writes (common fields, own fields and strings), in 16 continuation
/// slots; the writer keeps it on its stack. Longer strings are cut (docs/events.md).
pub const MAX_RECORD: usize = 16 * CONT_BYTES;
const _: () = assert!(MAX_RECORD / CONT_BYTES <= MAX_CONT);
/// The first id of a dynamic event (static tracepoints have the ids below it).
const FIRST_DYNAMIC_ID: u16 = 1000;

/// What fires an event.
pub enum Source {
    /// A static tracepoint of the kernel.
    Tracepoint(&'static Tracepoint),
    /// A `kprobe_events` definition (see [`super::kprobe_event`]).
    Probe,
}

/// One trace event.
pub struct Event {
    pub id: u16,
    pub layout: EventLayout,
    pub source: Source,
    enabled: AtomicBool,
    /// Whether the probe (tracepoint probe or kprobe) is armed.
    probe_on: AtomicBool,
    /// The compiled filter (null: none); see [`retire`].
    filter: AtomicPtr<EventFilter>,
    /// The triggers (null: none).
    triggers: AtomicPtr<super::trigger::Triggers>,
    /// Enabled, with neither a filter nor a trigger: records go straight to the ring (one load
    /// on the fast paths instead of three). Kept by [`Event::refresh_fast`] under `CONFIG`.
    fast: AtomicBool,
}

impl Event {
    fn new(id: u16, layout: EventLayout, source: Source) -> Event {
        Event {
            id,
            layout,
            source,
            enabled: AtomicBool::new(false),
            probe_on: AtomicBool::new(false),
            filter: AtomicPtr::new(core::ptr::null_mut()),
            triggers: AtomicPtr::new(core::ptr::null_mut()),
            fast: AtomicBool::new(false),
        }
    }

    /// Recomputes `fast` after `enabled`, `filter` or `triggers` changed (under `CONFIG`).
    fn refresh_fast(&self) {
        let fast = self.is_enabled()
            && self.filter.load(Ordering::Acquire).is_null()
            && self.triggers.load(Ordering::Acquire).is_null()
            && !WHOLE_RECORDS.load(Ordering::Acquire);
        self.fast.store(fast, Ordering::Release);
    }

    pub fn system(&self) -> &str {
        self.layout.system()
    }

    pub fn name(&self) -> &str {
        self.layout.name()
    }

    /// `system:name`, as `available_events` and `set_event` write it.
    pub fn full_name(&self) -> String {
        alloc::format!("{}:{}", self.system(), self.name())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether the event's probe must run: enabled, or a trigger wants its hits.
    pub fn is_armed(&self) -> bool {
        self.is_enabled() || !self.triggers.load(Ordering::Acquire).is_null()
    }

    /// The filter's text (what `cat filter` shows), if one is set.
    pub fn filter_text(&self) -> Option<String> {
        let _g = CONFIG.lock();
        let p = self.filter.load(Ordering::Acquire);
        // SAFETY: a non-null filter is a leaked `Box` freed only by `set_filter` under `CONFIG`,
        // which this holds.
        (!p.is_null()).then(|| String::from_utf8_lossy(unsafe { &*p }.text()).into_owned())
    }

    /// Runs `f` on the triggers, under the configuration lock.
    pub fn with_triggers<R>(&self, f: impl FnOnce(Option<&super::trigger::Triggers>) -> R) -> R {
        let _g = CONFIG.lock();
        let p = self.triggers.load(Ordering::Acquire);
        // SAFETY: as for the filter: freed only by `set_triggers` under `CONFIG`.
        f((!p.is_null()).then(|| unsafe { &*p }))
    }
}

/// Every event, in registration order.
static EVENTS: spin::Mutex<Vec<Arc<Event>>> = spin::Mutex::new(Vec::new());
/// The event of each static tracepoint (`points::ALL[i]`), for the tracepoint probe, which may
/// run in an interrupt and so must not take `EVENTS`' lock. Set once at boot, never freed.
static TP_EVENTS: [AtomicPtr<Event>; 16] = [const { AtomicPtr::new(core::ptr::null_mut()) }; 16];
/// Serialises configuration changes (enable, filter, triggers, definitions).
pub static CONFIG: spin::Mutex<()> = spin::Mutex::new(());

/// Every record is written in its whole form (`KIND_EVENT` and its continuation slots, Linux's
/// bytes), never as a one-slot record: set while a streamed recording's reader, outside the
/// kernel, takes the records straight from the rings (`crate::record`).
static WHOLE_RECORDS: AtomicBool = AtomicBool::new(false);

/// Turns [`WHOLE_RECORDS`] on or off for every event.
pub fn set_whole_records(on: bool) {
    let evs = all();
    let _g = CONFIG.lock();
    WHOLE_RECORDS.store(on, Ordering::Release);
    for ev in evs {
        ev.refresh_fast();
    }
}
/// The next dynamic event id.
static NEXT_ID: spin::Mutex<u16> = spin::Mutex::new(FIRST_DYNAMIC_ID);

/// Every event (a snapshot).
pub fn all() -> Vec<Arc<Event>> {
    EVENTS.lock().clone()
}

/// The event `system:name`.
pub fn find(system: &str, name: &str) -> Option<Arc<Event>> {
    EVENTS.lock().iter().find(|e| e.system() == system && e.name() == name).cloned()
}

/// The event with id `id`.
pub fn by_id(id: u16) -> Option<Arc<Event>> {
    EVENTS.lock().iter().find(|e| e.id == id).cloned()
}

/// The systems, in first-registration order.
pub fn systems() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in EVENTS.lock().iter() {
        if !out.iter().any(|s| s == e.system()) {
            out.push(e.system().into());
        }
    }
    out
}

/// Adds a dynamic event (a probe's); returns it (`None` when all 64,536 dynamic ids are in use).
/// Ids are handed out in increasing order and wrap only after the last one, so records of a
/// removed event left in the buffers are not taken for another's unless the ids went round.
pub fn add_dynamic(layout: EventLayout) -> Option<Arc<Event>> {
    let mut next = NEXT_ID.lock();
    let mut evs = EVENTS.lock();
    // Ids go up; after the last one they start again at the first, skipping those in use.
    let span = (u16::MAX - FIRST_DYNAMIC_ID) as u32 + 1;
    let id = (0..span).map(|k| FIRST_DYNAMIC_ID + ((*next - FIRST_DYNAMIC_ID) as u32 + k).rem_euclid(span) as u16).find(|id| !evs.iter().any(|e| e.id == *id))?;
    *next = if id == u16::MAX { FIRST_DYNAMIC_ID } else { id + 1 };
    let ev = Arc::new(Event::new(id, layout, Source::Probe));
    evs.push(ev.clone());
    Some(ev)
}

/// Removes a dynamic event from the registry (its probe is gone already).
pub fn remove(ev: &Arc<Event>) {
    EVENTS.lock().retain(|e| !Arc::ptr_eq(e, ev));
}

/// Waits until no CPU can still be reading an event's old filter or triggers: every CPU left
/// the tracing call it was in and answered a cross-call (which it takes only with interrupts on,
/// and [`emit`] keeps them off while it may read the old pointers).
/// Returns false when some CPU stayed inside a tracing call for 5 s: the caller then keeps the
/// old memory rather than free it.
pub fn retire() -> bool {
    let quiet = crate::ftrace::quiesce::synchronize_tracing();
    crate::smp::sync_all_cpus();
    quiet
}

// ---------------------------------------------------------------------------------------------
// Enabling, filters, triggers.

/// Why a configuration change was refused; nothing changed.
#[derive(Debug)]
pub enum EventError {
    /// The probe or tracepoint could not be armed.
    Arm(String),
    /// A bad filter (its error has Linux's reason and position).
    Filter(filter::FilterError),
    /// A bad trigger.
    Trigger(super::trigger::TriggerError),
}

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EventError::Arm(e) => write!(f, "cannot arm the event: {e}"),
            EventError::Filter(e) => write!(f, "{e}"),
            EventError::Trigger(e) => write!(f, "{e}"),
        }
    }
}

/// Arms or disarms an event's probe to match `want`.
fn arm(ev: &Event, want: bool) -> Result<(), EventError> {
    if ev.probe_on.load(Ordering::Acquire) == want {
        return Ok(());
    }
    let r = match ev.source {
        Source::Tracepoint(tp) if want => crate::tracepoint::register_probe(tp, tracepoint_probe).map_err(|e| alloc::format!("{e}")),
        Source::Tracepoint(tp) => crate::tracepoint::unregister_probe(tp, tracepoint_probe).map_err(|e| alloc::format!("{e}")),
        Source::Probe => super::kprobe_event::arm(ev.id, want),
    };
    r.map_err(EventError::Arm)?;
    ev.probe_on.store(want, Ordering::Release);
    Ok(())
}

/// Enables or disables an event (its `enable` file). Nothing changes on an error.
pub fn set_enabled(ev: &Event, on: bool) -> Result<(), EventError> {
    let _g = CONFIG.lock();
    set_enabled_locked(ev, on)
}

fn set_enabled_locked(ev: &Event, on: bool) -> Result<(), EventError> {
    let r = set_enabled_inner(ev, on);
    ev.refresh_fast();
    r
}

fn set_enabled_inner(ev: &Event, on: bool) -> Result<(), EventError> {
    if ev.is_enabled() == on {
        return Ok(());
    }
    let has_triggers = !ev.triggers.load(Ordering::Acquire).is_null();
    if on {
        arm(ev, true)?;
        ev.enabled.store(true, Ordering::Release);
    } else {
        ev.enabled.store(false, Ordering::Release);
        if !has_triggers {
            if let Err(e) = arm(ev, false) {
                ev.enabled.store(true, Ordering::Release);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Enables or disables several events, all or none (`events/enable`, a system's `enable`,
/// `set_event`).
pub fn set_enabled_all(evs: &[Arc<Event>], on: bool) -> Result<(), EventError> {
    let _g = CONFIG.lock();
    let mut done: Vec<&Arc<Event>> = Vec::new();
    for e in evs {
        if e.is_enabled() == on {
            continue;
        }
        if let Err(err) = set_enabled_locked(e, on) {
            for d in done {
                let _ = set_enabled_locked(d, !on);
            }
            return Err(err);
        }
        done.push(e);
    }
    Ok(())
}

/// The parse environment of filters: the CPUs and the kernel's symbols.
pub fn parse_env() -> ParseEnv<'static> {
    ParseEnv::new(crate::smp::online() as u32).with_symbols(&KernelSyms)
}

/// Sets (`Some`) or clears an event's filter. The old one is freed once no CPU can read it.
pub fn set_filter(ev: &Event, f: Option<EventFilter>) {
    let _g = CONFIG.lock();
    let new = f.map_or(core::ptr::null_mut(), |f| Box::into_raw(Box::new(f)));
    let old = ev.filter.swap(new, Ordering::AcqRel);
    ev.refresh_fast();
    if !old.is_null() && retire() {
        // SAFETY: `old` was a leaked Box published in `filter`; it is unpublished and no CPU can
        // still read it after `retire`.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Sets or clears an event's triggers, arming or disarming the probe as needed.
pub fn set_triggers(ev: &Event, t: Option<super::trigger::Triggers>) -> Result<(), EventError> {
    let _g = CONFIG.lock();
    swap_triggers(ev, t)
}

/// Replaces an event's triggers with what `f` makes of the current ones, under one hold of the
/// configuration lock (two writers cannot lose each other's change).
pub fn update_triggers<E>(
    ev: &Event,
    f: impl FnOnce(Option<&super::trigger::Triggers>) -> Result<Option<super::trigger::Triggers>, E>,
) -> Result<Result<(), EventError>, E> {
    let _g = CONFIG.lock();
    let p = ev.triggers.load(Ordering::Acquire);
    // SAFETY: freed only by `swap_triggers` under `CONFIG`, which this holds.
    let new = f((!p.is_null()).then(|| unsafe { &*p }))?;
    Ok(swap_triggers(ev, new))
}

fn swap_triggers(ev: &Event, t: Option<super::trigger::Triggers>) -> Result<(), EventError> {
    let want = t.is_some() || ev.is_enabled();
    let had = ev.is_armed();
    if want && !had {
        arm(ev, true)?;
    }
    let new = t.map_or(core::ptr::null_mut(), |t| Box::into_raw(Box::new(t)));
    let old = ev.triggers.swap(new, Ordering::AcqRel);
    ev.refresh_fast();
    if !want && had {
        let _ = arm(ev, false);
    }
    if !old.is_null() && retire() {
        // SAFETY: as in `set_filter`.
        drop(unsafe { Box::from_raw(old) });
    }
    Ok(())
}

impl Drop for Event {
    fn drop(&mut self) {
        // The last reference is gone: no probe of the event runs any more (its kprobes were
        // unregistered, a static event is never dropped).
        let f = *self.filter.get_mut();
        if !f.is_null() {
            // SAFETY: a leaked Box published by `set_filter`; `&mut self` is the only reference.
            drop(unsafe { Box::from_raw(f) });
        }
        let t = *self.triggers.get_mut();
        if !t.is_null() {
            // SAFETY: as above, published by `swap_triggers`.
            drop(unsafe { Box::from_raw(t) });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recording.

/// Builds an event's record with `fill` and, if the event is enabled and its filter keeps it,
/// writes it to this CPU's buffer; runs the event's triggers on every hit. `ip` is what the
/// first slot's `ip` holds (the probed address, or the tracepoint's site). Allocates nothing.
///
/// Interrupts are off from the loads of the filter and trigger pointers until their last use,
/// so a CPU answers [`retire`]'s cross-call only outside this (tracepoints and kretprobe
/// handlers may run with interrupts on).
#[inline(never)]
pub fn emit(ev: &Event, ip: u64, fp: StackStart, fill: impl FnOnce(&mut RecordWriter)) {
    let flags = crate::ftrace::tracer::context_flags();
    arch::cpu::without_irqs(|| emit_locked(ev, ip, fp, flags, fill));
}

#[inline(always)]
fn emit_locked(ev: &Event, ip: u64, fp: StackStart, flags: u16, fill: impl FnOnce(&mut RecordWriter)) {
    let triggers = ev.triggers.load(Ordering::Acquire);
    let keep = ev.is_enabled() && crate::ftrace::tracer::tracing_on();
    if !keep && triggers.is_null() {
        return;
    }
    let cpu = arch::cpu::id() % arch::boot::MAX_CPUS;
    // Only the part a record of this event can use is initialised: its fixed part rounded up to
    // whole slots, or the whole buffer when strings follow it.
    let mut storage = core::mem::MaybeUninit::<[u8; MAX_RECORD]>::uninit();
    let cap = if ev.layout.has_strings() { MAX_RECORD } else { (ev.layout.fixed_len() as usize).next_multiple_of(CONT_BYTES).min(MAX_RECORD) };
    let base = storage.as_mut_ptr() as *mut u8;
    // SAFETY: `base..base + cap` lies in `storage` (cap <= MAX_RECORD) and is initialised here
    // before the slice over it is made.
    let buf = unsafe {
        base.write_bytes(0, cap);
        core::slice::from_raw_parts_mut(base, cap)
    };
    let Ok(mut w) = ev.layout.writer(&header(ev, cpu, flags), buf) else { return };
    fill(&mut w);
    let len = w.record_len().min(cap);
    commit(ev, ip, fp, buf, len, cpu, flags, keep, triggers);
}

/// Where a `stacktrace` trigger's walk starts: the frame pointer, and a return address to show
/// first (0: none): a kprobe's `ra`, used only when the probe is at a function's entry (where the
/// caller is not on the stack yet; `entry_only`), or a kretprobe's real return address.
#[derive(Clone, Copy, Debug)]
pub struct StackStart {
    pub fp: u64,
    pub ra: u64,
    pub entry_only: bool,
}

/// Words of a record [`emit_fixed`] takes: the common fields, a probe's own fields and 40 bytes
/// of numbers (two continuation slots).
pub const FIXED_WORDS: usize = 2 * CONT_BYTES / 8;

/// [`emit`] for a record of numbers only, already laid out in `rec` as little-endian words (word
/// 0, the common fields, is written here): the kprobe events' fast path, which builds the ring
/// slots straight from the words. `len` is the record's length in bytes.
///
/// Without a filter or a trigger nothing published is read through a pointer, so interrupts stay
/// on and a record of at most [`INLINE_MAX`] bytes whose word 1 is `ip` (a kprobe event's
/// `__probe_ip`) takes one ring slot ([`super::inline`]). Otherwise interrupts are off while the
/// filter and triggers may be read, as in [`emit`].
#[inline(never)]
pub fn emit_fixed(ev: &Event, ip: u64, fp: StackStart, rec: &mut [u64; FIXED_WORDS], len: usize) {
    // Relaxed loads: the fast path only tests the pointers; the slow one loads them again.
    if len > INLINE_MAX || rec[1] != ip || !emit_inline(ev, ip, rec[2], rec[3]) {
        emit_fixed_slow(ev, ip, fp, rec, len);
    }
}

/// Writes a one-slot record ([`super::inline`]) of an enabled event with neither a filter nor a
/// trigger: the common fields, `ip` (its `__probe_ip`), then words `w2` and `w3`. Returns false,
/// having written nothing, for any other event (the caller takes [`emit_fixed`]'s slow path,
/// which also knows what a disabled event with triggers does).
#[inline(always)]
pub fn emit_inline(ev: &Event, ip: u64, w2: u64, w3: u64) -> bool {
    if !ev.fast.load(Ordering::Relaxed) {
        return false;
    }
    if let Some(buffer) = crate::ftrace::tracer::this_cpu_buffer_if_on() {
        let flags = crate::ftrace::tracer::context_flags();
        buffer.push(&super::inline::pack(arch::time::ticks(), 0, flags, ev.id, &[0, ip, w2, w3]));
    }
    true
}

/// [`emit_fixed`] of a record with a filter or a trigger, or longer than one slot holds.
#[inline(never)]
fn emit_fixed_slow(ev: &Event, ip: u64, fp: StackStart, rec: &mut [u64; FIXED_WORDS], len: usize) {
    let flags = crate::ftrace::tracer::context_flags();
    arch::cpu::without_irqs(|| emit_fixed_locked(ev, ip, fp, flags, rec, len));
}

#[inline(always)]
fn emit_fixed_locked(ev: &Event, ip: u64, fp: StackStart, flags: u16, rec: &mut [u64; FIXED_WORDS], len: usize) {
    let triggers = ev.triggers.load(Ordering::Acquire);
    let keep = ev.is_enabled() && crate::ftrace::tracer::tracing_on();
    if !keep && triggers.is_null() {
        return;
    }
    let cpu = arch::cpu::id() % arch::boot::MAX_CPUS;
    rec[0] = common_word(ev.id, flags, cpu);
    let len = len.min(FIXED_WORDS * 8);
    if ev.filter.load(Ordering::Acquire).is_null() && triggers.is_null() {
        // No filter, no trigger: straight to the ring, the slots built from the words.
        let n = TraceEntry::slots_for(len);
        let slot = |i: usize| TraceEntry { ts: rec[4 * i], ip: rec[4 * i + 1], parent: rec[4 * i + 2], kind: KIND_CONT, cpu: 0, depth: 0, cont: 0, aux: 0, extra: rec[4 * i + 3] };
        let rest = [slot(0), slot(1)];
        let first = TraceEntry { ts: arch::time::ticks(), ip, parent: ev.id as u64, kind: KIND_EVENT, cpu: cpu as u8, depth: flags, cont: 0, aux: 0, extra: len as u64 };
        if let Some(buffer) = crate::ftrace::tracer::this_cpu_buffer_if_on() {
            buffer.push_record(&first, &rest[..n]);
        }
        return;
    }
    let mut bytes = [0u8; FIXED_WORDS * 8];
    for (b, w) in bytes.chunks_exact_mut(8).zip(rec.iter()) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    commit(ev, ip, fp, &bytes, len, cpu, flags, keep, triggers);
}

/// The common fields of a record of event `id` written on `cpu` with context `flags`, as
/// the record's first word.
#[inline(always)]
fn common_word(id: u16, flags: u16, cpu: usize) -> u64 {
    common_header(id, flags, cpu).word()
}

/// Appends `e` to `out` as readers take it: a one-slot event record ([`super::inline`]) in its
/// two-slot form (its length is its event's; 32 bytes for an event no longer defined), any
/// other slot as it is. The kernel's collectors of ring entries read through this.
pub fn push_expanded(out: &mut Vec<TraceEntry>, e: TraceEntry) {
    if e.kind != KIND_EVENT_INLINE {
        return out.push(e);
    }
    let len = by_id(e.aux).map_or(INLINE_MAX as u16, |ev| (ev.layout.fixed_len() as u16).min(INLINE_MAX as u16));
    out.extend(super::inline::expand(&e, common_word(e.aux, e.depth, e.cpu as usize), len));
}

fn header(ev: &Event, cpu: usize, flags: u16) -> CommonHeader {
    common_header(ev.id, flags, cpu)
}

/// The common fields of a record of event `id` written on `cpu` with context `flags`.
#[inline(always)]
fn common_header(id: u16, flags: u16, cpu: usize) -> CommonHeader {
    CommonHeader { common_type: id, flags: linux_flags(flags), preempt_count: 0, pid: formats::task::pid(cpu as u32) as i32 }
}

/// The common end of [`emit`] and [`emit_fixed`]: the filter, the ring buffer, the triggers.
/// `buf` holds the record (`len` bytes) and is a whole number of slots long.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn commit(ev: &Event, ip: u64, fp: StackStart, buf: &[u8], len: usize, cpu: usize, flags: u16, keep: bool, triggers: *mut super::trigger::Triggers) {
    let rec = &buf[..len];
    let mut keep = keep;
    if keep {
        let f = ev.filter.load(Ordering::Acquire);
        if !f.is_null() {
            let mut comm = [0u8; 16];
            let view = match ev.layout.view(rec) {
                Ok(v) => v.with_context(cpu as u32, comm_of(cpu as u32, &mut comm)),
                Err(_) => return,
            };
            // SAFETY: a published filter stays alive until `retire` saw this CPU leave here.
            if !unsafe { &*f }.matches(&view) {
                keep = false;
            }
        }
    }
    if keep {
        let first = TraceEntry { ts: arch::time::ticks(), ip, parent: ev.id as u64, kind: KIND_EVENT, cpu: cpu as u8, depth: flags, cont: 0, aux: 0, extra: len as u64 };
        let n = TraceEntry::slots_for(len);
        let mut rest = [core::mem::MaybeUninit::<TraceEntry>::uninit(); MAX_RECORD / CONT_BYTES];
        // `buf` is a whole number of slots, so every chunk is whole.
        for (slot, chunk) in rest.iter_mut().zip(buf[..n * CONT_BYTES].chunks_exact(CONT_BYTES)) {
            slot.write(TraceEntry::continuation_exact(chunk.try_into().expect("whole chunk")));
        }
        // SAFETY: the first `n` entries (one per chunk of `rec`) were written just above.
        let rest = unsafe { core::slice::from_raw_parts(rest.as_ptr() as *const TraceEntry, n) };
        if let Some(buffer) = crate::ftrace::tracer::this_cpu_buffer_if_on() {
            buffer.push_record(&first, rest);
        }
    }
    if !triggers.is_null() {
        // SAFETY: as for the filter.
        super::trigger::run(unsafe { &*triggers }, ev, rec, cpu as u32, ip, fp);
    }
}

/// Linux's `TRACE_FLAG_*` bits from loongtrace's context flags.
fn linux_flags(flags: u16) -> u8 {
    let mut f = 0;
    if flags & crate::ftrace::tracer::FLAG_IRQS_OFF != 0 {
        f |= 0x01; // TRACE_FLAG_IRQS_OFF
    }
    if flags & crate::ftrace::tracer::FLAG_IN_TRAP != 0 {
        f |= 0x08; // TRACE_FLAG_HARDIRQ
    }
    f
}

/// The name of the context on `cpu` (`loongtrace/N`) in `buf`.
pub fn comm_of(cpu: u32, buf: &mut [u8; 16]) -> &[u8] {
    use core::fmt::Write;
    struct W<'a>(&'a mut [u8; 16], usize);
    impl Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                if self.1 < 15 {
                    self.0[self.1] = b;
                    self.1 += 1;
                }
            }
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = write!(w, "{}", formats::task::Comm(cpu));
    let n = w.1;
    &buf[..n]
}

/// Reassembles the record of an event whose first slot is `first`, from the continuation slots
/// that follow it; `None` if they are missing or the event is unknown.
pub fn record_bytes(first: &TraceEntry, rest: &[TraceEntry]) -> Option<Vec<u8>> {
    let n = first.cont as usize;
    if first.kind != KIND_EVENT || rest.len() < n || rest[..n].iter().any(|c| c.kind != KIND_CONT) {
        return None;
    }
    let mut bytes = Vec::with_capacity(n * CONT_BYTES);
    for c in &rest[..n] {
        bytes.extend_from_slice(&c.payload());
    }
    bytes.truncate(first.extra as usize);
    Some(bytes)
}

/// Writes an event's part of its `trace` line (`name: fields`), or `<unknown event N>`.
pub fn write_event_text(w: &mut dyn core::fmt::Write, first: &TraceEntry, rest: &[TraceEntry]) -> core::fmt::Result {
    let id = first.parent as u16;
    let Some(ev) = by_id(id) else {
        return write!(w, "[UNKNOWN EVENT {id}]");
    };
    match record_bytes(first, rest).as_deref().map(|b| ev.layout.view(b)) {
        Some(Ok(r)) => r.write_text(w, &KernelSyms),
        _ => write!(w, "{}: [record damaged]", ev.name()),
    }
}

// ---------------------------------------------------------------------------------------------
// Static tracepoints.

/// Registers the event of every static tracepoint (at boot, in `points::ALL` order: their ids
/// are 1, 2, ...).
pub fn init() {
    let mut evs = EVENTS.lock();
    if !evs.is_empty() {
        return;
    }
    for (i, tp) in crate::tracepoint::points::ALL.iter().enumerate() {
        let fields: Vec<TpField> = tp.args.iter().map(|(n, t)| TpField::new(n, fetch_type(*t))).collect();
        match EventLayout::tracepoint(tp.system, tp.name, &fields) {
            Ok(layout) => {
                let ev = Arc::new(Event::new(i as u16 + 1, layout, Source::Tracepoint(tp)));
                if let Some(slot) = TP_EVENTS.get(i) {
                    // One reference leaked on purpose: static events live as long as the kernel.
                    slot.store(Arc::into_raw(ev.clone()) as *mut Event, Ordering::Release);
                }
                evs.push(ev);
            }
            Err(e) => log::error!("events: tracepoint {}:{} has a bad layout: {e}", tp.system, tp.name),
        }
    }
}

fn fetch_type(t: TpType) -> FetchType {
    match t {
        TpType::U32 => FetchType::U32,
        TpType::U64 => FetchType::U64,
        TpType::X32 => FetchType::X32,
        TpType::X64 => FetchType::X64,
        TpType::Sym => FetchType::Symbol,
        TpType::Str => FetchType::String,
    }
}

/// The probe every armed static tracepoint calls: records its event.
fn tracepoint_probe(tp: &Tracepoint, args: &[TpArg]) {
    let Some(i) = crate::tracepoint::points::ALL.iter().position(|t| core::ptr::eq(*t, tp)) else { return };
    let p = TP_EVENTS.get(i).map_or(core::ptr::null_mut(), |s| s.load(Ordering::Acquire));
    if p.is_null() {
        return;
    }
    // SAFETY: set by `init` from a leaked `Arc`, never freed.
    let ev = unsafe { &*p };
    let ip = tracepoint_probe as fn(&Tracepoint, &[TpArg]) as usize as u64;
    emit(ev, ip, StackStart { fp: arch::cpu::frame_pointer(), ra: 0, entry_only: false }, |w| {
        for (i, a) in args.iter().enumerate() {
            match a {
                TpArg::Num(v) => w.num(i, 0, *v),
                TpArg::Str(s) => {
                    let _ = w.string(i, 0, Some(s.as_bytes()));
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Symbols.

/// The kernel's symbols for the `trace` line, filters' `.function` and definitions.
pub struct KernelSyms;

impl Symbolizer for KernelSyms {
    fn lookup(&self, addr: u64) -> Option<SymbolInfo<'_>> {
        let (s, _) = crate::ksyms::lookup(addr)?;
        let name = s.name.strip_prefix("loongtrace_kernel::").unwrap_or(s.name);
        let module = crate::ksyms::owner_of(addr);
        Some(SymbolInfo { name, start: s.addr, size: s.size as u64, module })
    }
}

impl filter::Symbols for KernelSyms {
    fn lookup_name(&self, name: &str) -> Option<u64> {
        crate::ksyms::find(name).map(|s| s.addr)
    }
    fn lookup_addr(&self, addr: u64) -> Option<(u64, u64)> {
        crate::ksyms::lookup(addr).map(|(s, _)| (s.addr, s.size as u64))
    }
}
