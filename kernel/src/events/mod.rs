//! Trace events (Linux's `events/`, `kprobe_events`, `error_log`): the pure parts —
//! `kprobe_events` definitions ([`probe_def`]), event filters ([`filter`]) and the record layout
//! with Linux's `format` files ([`format`]), host-tested — and the kernel's: the registry that
//! records events into the ring buffers ([`registry`]), dynamic kprobe events
//! ([`kprobe_event`]) and triggers ([`trigger`]). tracefs shows them as files; see docs/events.md.

pub mod filter;
pub mod format;
pub mod inline;
#[cfg(target_os = "none")]
pub mod kprobe_event;
pub mod probe_def;
#[cfg(target_os = "none")]
pub mod registry;
#[cfg(target_os = "none")]
pub mod trigger;

use alloc::collections::VecDeque;
use alloc::string::String;

/// Entries `error_log` keeps (Linux's `TRACING_LOG_ERRS_MAX`).
pub const ERROR_LOG_MAX: usize = 16;

static ERROR_LOG: spin::Mutex<VecDeque<String>> = spin::Mutex::new(VecDeque::new());

/// Adds an `error_log` entry (its lines, each ending in `\n`); the oldest goes past
/// [`ERROR_LOG_MAX`].
pub fn log_error(entry: String) {
    let mut log = ERROR_LOG.lock();
    if log.len() == ERROR_LOG_MAX {
        log.pop_front();
    }
    log.push_back(entry);
}

/// What `cat error_log` shows.
pub fn error_log(w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    for e in ERROR_LOG.lock().iter() {
        w.write_str(e)?;
    }
    Ok(())
}

/// Clears `error_log` (a truncating write, as in Linux).
pub fn clear_error_log() {
    ERROR_LOG.lock().clear();
}

/// Registers the static tracepoints' events (at boot).
#[cfg(target_os = "none")]
pub fn init() {
    registry::init();
}
