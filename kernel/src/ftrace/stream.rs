//! Streamed recordings: the control block that tells a reader outside the guest (the host, which
//! maps the guest's RAM through a shared memory file) where each CPU's trace ring is, so it can
//! take the records out while the tracer writes them. The layout is `formats::stream`'s; the
//! reader uses the rings' own read protocol (`formats::ring`), so the writer never waits for it
//! and nothing on the tracing path changes: publishing costs no instruction per event.

use super::tracer;
use core::sync::atomic::{AtomicU64, Ordering};
use formats::stream as layout;

/// The control block (page-aligned, so it never straddles RAM regions).
#[repr(C, align(4096))]
struct Control([AtomicU64; layout::WORDS]);

static CONTROL: Control = Control([const { AtomicU64::new(0) }; layout::WORDS]);

/// Publishes the rings of CPUs `0..cpus` (at most `layout::MAX_CPUS`) as streaming and returns
/// the block's physical address. Call after the rings are emptied and before tracing starts;
/// their sizes must not change until [`stop`].
pub fn publish(cpus: usize) -> u64 {
    let cpus = cpus.clamp(1, layout::MAX_CPUS.min(tracer::BUFFERS.len()));
    let w = &CONTROL.0;
    for (cpu, ring) in tracer::BUFFERS.iter().enumerate().take(cpus) {
        let (head, mask, slots) = ring.raw_parts();
        w[layout::cpu_word(cpu, 0)].store(arch::boot::phys_addr(head), Ordering::Relaxed);
        w[layout::cpu_word(cpu, 1)].store(arch::boot::phys_addr(mask), Ordering::Relaxed);
        w[layout::cpu_word(cpu, 2)].store(arch::boot::phys_addr(slots), Ordering::Relaxed);
        w[layout::cpu_word(cpu, 3)].store(ring.head(), Ordering::Relaxed);
        w[layout::cpu_word(cpu, 4)].store(0, Ordering::Relaxed);
    }
    w[0].store(u64::from_le_bytes(layout::MAGIC), Ordering::Relaxed);
    w[1].store(layout::VERSION | (cpus as u64) << 32, Ordering::Relaxed);
    w[layout::STATE].store(layout::STATE_STREAMING, Ordering::Release);
    arch::boot::phys_addr(CONTROL.0.as_ptr() as u64)
}

/// Marks the stream stopped: stores each ring's final head, then the state (release), so a
/// reader that sees [`layout::STATE_STOPPED`] finds every record up to the final heads committed.
/// Call once the tracer is off and every CPU has left its tracing calls.
pub fn stop() {
    let w = &CONTROL.0;
    let cpus = (w[1].load(Ordering::Relaxed) >> 32) as usize;
    for (cpu, ring) in tracer::BUFFERS.iter().enumerate().take(cpus) {
        w[layout::cpu_word(cpu, 4)].store(ring.head(), Ordering::Relaxed);
    }
    w[layout::STATE].store(layout::STATE_STOPPED, Ordering::Release);
}
