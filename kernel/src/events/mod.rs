//! Trace events (issue 23): the pure parts first — `kprobe_events` definitions ([`probe_def`]),
//! event filters ([`filter`]) and the record layout with Linux's `format` files ([`format`]),
//! host-tested; the registry, the tracefs files and the recording come on top of them. See
//! docs/events.md.

pub mod filter;
pub mod format;
pub mod probe_def;
