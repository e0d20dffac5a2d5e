//! `bpf_trace_printk`'s events in the trace ring buffer.
//!
//! A ring-buffer entry is 40 bytes, too small for the text, so the text is kept beside the ring
//! (as `trace_marker` keeps its texts): an event of kind [`KIND_BPF_PRINTK`] on the CPU's buffer
//! carries the text's number in `extra`, and the text sits in slot `number % SLOTS` of a static
//! table. `cat trace` and `trace_pipe` print it as Linux prints the `bpf_trace_printk` event:
//! `bpf_trace_printk: TEXT` after the usual task, CPU, flags and timestamp columns (in the
//! function_graph layout as a comment, `/* bpf_trace_printk: TEXT */`).
//!
//! The table is static (no allocation on a program's path, so a program may print wherever it
//! runs); the newest [`SLOTS`] texts are kept, each cut to [`TEXT_MAX`] bytes, and an event whose
//! text was overwritten since prints [`TEXT_OVERWRITTEN`], as an old marker does. A text whose slot
//! is busy at that moment (another CPU reading it, or 256 prints nested on one CPU) is dropped
//! the same way rather than waited for.

use core::sync::atomic::{AtomicU64, Ordering};

/// [`crate::ringbuf::TraceEntry::kind`] of a `bpf_trace_printk` event: `extra` is the text's
/// number, `ip` is [`bpf_trace_printk`].
pub const KIND_BPF_PRINTK: u8 = 5;
/// What an event whose text is no longer kept prints.
pub const TEXT_OVERWRITTEN: &str = "<text overwritten>";
/// Texts kept.
pub const SLOTS: usize = 256;
/// Longest text kept, in bytes (Linux's helper formats at most 1024; more is cut here).
pub const TEXT_MAX: usize = 500;

struct Slot {
    /// The text's number + 1 (0: never written).
    id: u64,
    len: usize,
    text: [u8; TEXT_MAX],
}

static TEXTS: [spin::Mutex<Slot>; SLOTS] = [const { spin::Mutex::new(Slot { id: 0, len: 0, text: [0; TEXT_MAX] }) }; SLOTS];
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Keeps `text` (without one final newline, cut to [`TEXT_MAX`] bytes at a character boundary)
/// and records its event on this CPU's trace buffer, when tracing is on. Named like Linux's
/// event, which the symbol table then resolves for exports. Not traceable.
#[unsafe(no_mangle)]
#[inline(never)]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn bpf_trace_printk(text: &str) {
    if !crate::ftrace::tracer::tracing_on() {
        return;
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut end = text.len().min(TEXT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Some(mut slot) = TEXTS[id as usize % SLOTS].try_lock() {
        slot.id = id + 1;
        slot.len = end;
        slot.text[..end].copy_from_slice(&text.as_bytes()[..end]);
    }
    let ip = bpf_trace_printk as fn(&str) as usize as u64;
    crate::ftrace::tracer::record(KIND_BPF_PRINTK, ip, 0, crate::ftrace::tracer::context_flags(), id);
}

/// Formats and emits (see [`bpf_trace_printk`]).
pub fn emit(text: &str) {
    bpf_trace_printk(text);
}

/// The text of event number `id`, if it is still kept.
pub fn text(id: u64) -> Option<alloc::string::String> {
    let slot = TEXTS[id as usize % SLOTS].lock();
    (slot.id == id + 1).then(|| alloc::string::String::from_utf8_lossy(&slot.text[..slot.len]).into_owned())
}

/// How many texts were printed since boot.
pub fn count() -> u64 {
    NEXT.load(Ordering::Relaxed)
}
