//! Far-call stubs: how a patch site out of `bl` range of the ftrace callers reaches them.
//!
//! A loaded module's text lies more than 128 MiB from kernel text (see `execmem::area`), so its
//! sites cannot `bl` to `ftrace_caller`. The loader lays out a small stub area right after each
//! module's text: one far jump (`pcaddu18i t1, hi20; jirl zero, t1, lo16`) to each of
//! [`targets`], in order, and registers it here. When the core routes such a site it calls the
//! stub instead ([`stub_for`]); the stub clobbers only `t1` (which the callers may clobber anyway)
//! and leaves `ra` = the function body and `t0` = the parent, exactly as a straight `bl`.
//!
//! The table is read lock-free (the core must not wait for the loader) and written by one
//! registrant at a time.

use core::sync::atomic::{AtomicU64, Ordering};

/// Most stub areas registered at once (one per loaded module).
pub const MAX_AREAS: usize = 32;

/// Per area: `[text start, text end, first stub]`, zeros when free. The start is written last on
/// registration and cleared first on removal, so a reader that sees it sees the rest.
static AREAS: [[AtomicU64; 3]; MAX_AREAS] = [const { [const { AtomicU64::new(0) }; 3] }; MAX_AREAS];
static WRITER: spin::Mutex<()> = spin::Mutex::new(());

/// What the stubs of an area jump to, in order.
pub fn targets() -> [u64; 3] {
    [arch::ftrace::addr::caller(), arch::ftrace::addr::caller_smp(), arch::ftrace::addr::regs_caller()]
}

/// A registered stub area (give it back with [`unregister`], once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubArea(usize);

/// Registers the stubs at `first_stub` (`modload::STUB_SIZE` bytes each, in [`targets`] order)
/// for sites in `text`. `None` when [`MAX_AREAS`] are registered already.
pub fn register(text: (u64, u64), first_stub: u64) -> Option<StubArea> {
    let _w = WRITER.lock();
    let slot = AREAS.iter().position(|a| a[0].load(Ordering::Acquire) == 0)?;
    AREAS[slot][1].store(text.1, Ordering::Release);
    AREAS[slot][2].store(first_stub, Ordering::Release);
    AREAS[slot][0].store(text.0, Ordering::Release);
    Some(StubArea(slot))
}

/// Removes a stub area (its sites must be out of the site table already).
pub fn unregister(area: StubArea) {
    let _w = WRITER.lock();
    AREAS[area.0].iter().for_each(|a| a.store(0, Ordering::Release));
}

/// The stub for a site at `ip` that jumps to `target` (None when `ip` is in no registered area
/// or `target` is not one of [`targets`]).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn stub_for(ip: u64, target: u64) -> Option<u64> {
    let k = targets().iter().position(|&t| t == target)?;
    AREAS.iter().find_map(|a| {
        let s = a[0].load(Ordering::Acquire);
        (s != 0 && (s..a[1].load(Ordering::Acquire)).contains(&ip)).then(|| a[2].load(Ordering::Acquire) + crate::modload::STUB_SIZE * k as u64)
    })
}
