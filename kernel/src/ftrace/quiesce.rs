//! Waiting until no CPU is still inside a tracing call that began before, so that what an
//! update retired (an ops, its site set, an old ops list, a direct trampoline's adapter) may be
//! freed or reused, and so that `unregister` can promise the callback is no longer running.
//!
//! Once other CPUs run, every trampoline that calls kernel code (`ftrace_caller_smp`,
//! `ftrace_regs_caller`/`ftrace_common`, `return_to_handler`) counts the calls this CPU is inside
//! (`tracing_depth` in its per-CPU area) and how often it left the outermost one
//! (`tracing_exits`), with full barriers around. A CPU has no call in flight from before the wait
//! began if its depth was 0 at the start, or if its exit count moved on since (the outermost call
//! in flight returned, and every call nested inside it before). This needs no IPI and no luck.
//!
//! Direct trampolines run outside those trampolines (a site may call one straight), so retiring
//! one (or its adapter) also waits until every CPU, asked from its IPI handler, was seen with
//! none of the tracked trampoline ranges in its ERA, `ra` or frame-pointer chain; trampolines are
//! a few instructions, so that happens quickly.

use core::sync::atomic::{AtomicU64, Ordering};

const TRACKED: usize = 32;
/// Direct trampolines and adapters in use, as `[start, end)` pairs (0, 0 = free slot).
static RANGES: [[AtomicU64; 2]; TRACKED] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; TRACKED];
/// Waits that found a CPU still inside and had to wait for it.
pub static RETRIES: AtomicU64 = AtomicU64::new(0);
/// Waits that gave up (a CPU stayed inside); nothing was freed then.
pub static TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Starts treating `[start, end)` as a direct trampoline in use. Returns false when the table is
/// full.
pub fn track(start: u64, end: u64) -> bool {
    for r in RANGES.iter() {
        if r[0].compare_exchange(0, start, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            r[1].store(end, Ordering::Release);
            return true;
        }
    }
    false
}

/// Stops treating the range starting at `start` as a trampoline in use.
pub fn untrack(start: u64) {
    for r in RANGES.iter() {
        if r[0].load(Ordering::Acquire) == start {
            r[1].store(0, Ordering::Release);
            r[0].store(0, Ordering::Release);
            return;
        }
    }
}

/// The end of the code that starts at `addr`: the generated trampoline's allocation, its
/// symbol's size, or 256 bytes.
pub fn code_end(addr: u64) -> u64 {
    if let Some((_, end)) = crate::ksyms::generated_range(addr) {
        return end;
    }
    match crate::ksyms::lookup(addr) {
        Some((s, 0)) if s.size > 0 => addr + s.size as u64,
        _ => addr + 256,
    }
}

fn others() -> impl Iterator<Item = usize> {
    let me = arch::cpu::id();
    let mask = crate::smp::online_mask();
    (0..arch::boot::MAX_CPUS).filter(move |&c| c != me && mask & (1 << c) != 0)
}

/// Returns once no other CPU is inside a tracing call that was in flight when this was called
/// (gives up after 5 s, reporting which CPU; the caller then leaks instead of freeing).
pub fn synchronize_tracing() -> bool {
    arch::cpu::dbar();
    let mut snap = [(0u64, 0u64); arch::boot::MAX_CPUS];
    for c in others() {
        let p = arch::boot::percpu(c);
        let exits = p.tracing_exits.load(Ordering::Acquire);
        snap[c] = (p.tracing_depth.load(Ordering::Acquire), exits);
    }
    let t0 = arch::time::ticks();
    for c in others() {
        if snap[c].0 == 0 {
            continue;
        }
        // Done once the CPU is outside now, or left its outermost call since the snapshot.
        // (Depth and exits are read separately, so the snapshot may already include the exit.)
        let p = arch::boot::percpu(c);
        let inside = || p.tracing_depth.load(Ordering::Acquire) != 0 && p.tracing_exits.load(Ordering::Acquire) == snap[c].1;
        if inside() {
            RETRIES.fetch_add(1, Ordering::Relaxed);
        }
        while inside() {
            if arch::time::ticks() - t0 > crate::time::counter_hz() * 5 {
                TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                log::error!("ftrace: cpu{c} stayed inside one tracing call for 5 s");
                return false;
            }
            core::hint::spin_loop();
        }
    }
    arch::cpu::dbar();
    true
}

#[inline]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn in_tracked(addr: u64) -> bool {
    RANGES.iter().any(|r| {
        let s = r[0].load(Ordering::Acquire);
        s != 0 && (s..r[1].load(Ordering::Acquire)).contains(&addr)
    })
}

/// Cross-call: is the interrupted context outside every tracked trampoline?
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn outside_trampolines(frame: &arch::frame::PtRegs) -> bool {
    // Also busy: between ftrace_common_return's exit count and its `jr t1` (t1 = trampoline).
    if in_tracked(frame.era) || in_tracked(frame.regs[1]) || in_tracked(frame.regs[13]) || arch::ftrace::in_trampolines(frame.era) {
        return false;
    }
    let mut inside = false;
    let stack = arch::boot::stack_bounds(arch::cpu::id());
    arch::unwind::walk(frame.regs[22], stack, 64, |f| {
        inside = in_tracked(f.ret);
        !inside
    });
    !inside
}

/// Returns once every other CPU was seen outside the tracked direct trampolines (gives up after
/// 1 s of asking).
pub fn synchronize_trampolines() -> bool {
    let t0 = arch::time::ticks();
    let mut waiting = u64::MAX;
    loop {
        waiting &= crate::smp::on_other_cpus(outside_trampolines);
        if waiting == 0 {
            return true;
        }
        RETRIES.fetch_add(1, Ordering::Relaxed);
        if arch::time::ticks() - t0 > crate::time::counter_hz() {
            TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            log::error!("ftrace: CPUs {waiting:#x} stayed inside a direct trampoline for 1 s");
            return false;
        }
    }
}
