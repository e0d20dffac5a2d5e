//! The event files of tracefs: `available_events`, `set_event`, `events/...`, `kprobe_events`,
//! `dynamic_events`, `kprobe_profile` and `error_log`, over the event registry
//! (`crate::events`). Names, contents and error numbers follow Linux's
//! Documentation/trace/events.rst and kprobetrace.rst; docs/events.md lists the differences.

use super::files::File;
use crate::events::filter::{self, FilterWrite};
use crate::events::probe_def::Interface;
use crate::events::registry::{self, Event, EventError};
use crate::events::{kprobe_event, trigger};
use crate::shell::parse::Errno;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

/// A file of one event's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvFile {
    Enable,
    Format,
    Id,
    Filter,
    Trigger,
    Hist,
}

const EV_FILES: &[(&str, EvFile)] = &[
    ("enable", EvFile::Enable),
    ("filter", EvFile::Filter),
    ("format", EvFile::Format),
    ("hist", EvFile::Hist),
    ("id", EvFile::Id),
    ("trigger", EvFile::Trigger),
];

/// The top-level event files.
pub const ROOT: &[(&str, File)] = &[
    ("available_events", File::AvailableEvents),
    ("dynamic_events", File::DynamicEvents),
    ("error_log", File::ErrorLog),
    ("kprobe_events", File::KprobeEvents),
    ("kprobe_profile", File::KprobeProfile),
    ("set_event", File::SetEvent),
];

/// `events/...` path → file (`None`: not under `events`).
pub fn lookup(rel: &str) -> Option<Result<File, Errno>> {
    let rest = if rel == "events" { "" } else { rel.strip_prefix("events/")? };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    Some(match parts.as_slice() {
        [] => Err(Errno::EISDIR),
        ["enable"] => Ok(File::EventsEnable(None)),
        [sys] => match system_event(sys) {
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        },
        [sys, "enable"] => system_event(sys).map(|id| File::EventsEnable(Some(id))).ok_or(Errno::ENOENT),
        [sys, ev] => match registry::find(sys, ev) {
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        },
        [sys, ev, f] => match (registry::find(sys, ev), EV_FILES.iter().find(|(n, _)| n == f)) {
            (Some(e), Some((_, f))) => Ok(File::Event(e.id, *f)),
            _ => Err(Errno::ENOENT),
        },
        _ => Err(Errno::ENOENT),
    })
}

/// The id of some event of system `sys` (what names the system in a `File`).
fn system_event(sys: &str) -> Option<u16> {
    registry::all().iter().find(|e| e.system() == sys).map(|e| e.id)
}

/// The names in `events/...` (`None`: not under `events`).
pub fn list_dir(rel: &str) -> Option<Result<Vec<String>, Errno>> {
    let rest = if rel == "events" { "" } else { rel.strip_prefix("events/")? };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let all = registry::all();
    Some(match parts.as_slice() {
        [] => {
            let mut v = registry::systems();
            v.push("enable".into());
            Ok(v)
        }
        [sys] if all.iter().any(|e| e.system() == *sys) => {
            let mut v: Vec<String> = all.iter().filter(|e| e.system() == *sys).map(|e| String::from(e.name())).collect();
            v.push("enable".into());
            Ok(v)
        }
        [sys, ev] if registry::find(sys, ev).is_some() => Ok(EV_FILES.iter().map(|(n, _)| String::from(*n)).collect()),
        _ => match lookup(rel) {
            Some(Ok(_)) => Err(Errno::ENOTDIR),
            Some(Err(e)) => Err(e),
            None => Err(Errno::ENOENT),
        },
    })
}

fn event(id: u16) -> Result<Arc<Event>, Errno> {
    registry::by_id(id).ok_or(Errno::ENOENT)
}

/// The events a system `enable` file covers (`None`: all).
fn events_of(sys_event: Option<u16>) -> Result<Vec<Arc<Event>>, Errno> {
    let all = registry::all();
    match sys_event {
        None => Ok(all),
        Some(id) => {
            let sys = String::from(event(id)?.system());
            Ok(all.into_iter().filter(|e| e.system() == sys).collect())
        }
    }
}

/// Reads an event file.
pub fn read(f: File, w: &mut dyn Write) -> core::fmt::Result {
    match f {
        File::AvailableEvents => {
            for e in registry::all() {
                writeln!(w, "{}", e.full_name())?;
            }
            Ok(())
        }
        File::SetEvent => {
            for e in registry::all().iter().filter(|e| e.is_enabled()) {
                writeln!(w, "{}", e.full_name())?;
            }
            Ok(())
        }
        File::KprobeEvents | File::DynamicEvents => kprobe_event::list(w),
        File::KprobeProfile => kprobe_event::profile(w),
        File::ErrorLog => crate::events::error_log(w),
        File::EventsEnable(sys) => {
            // Linux: 0 all off, 1 all on, X mixed.
            let evs = events_of(sys).unwrap_or_default();
            let on = evs.iter().filter(|e| e.is_enabled()).count();
            let c = if on == 0 { "0" } else if on == evs.len() { "1" } else { "X" };
            writeln!(w, "{c}")
        }
        File::Event(id, which) => {
            let Ok(ev) = event(id) else { return Ok(()) };
            match which {
                EvFile::Enable => writeln!(w, "{}", ev.is_enabled() as u8),
                EvFile::Id => writeln!(w, "{}", ev.id),
                EvFile::Format => w.write_str(&ev.layout.format_file(ev.id)),
                EvFile::Filter => match ev.filter_text() {
                    Some(t) => writeln!(w, "{t}"),
                    None => w.write_str(filter::NO_FILTER_TEXT),
                },
                EvFile::Trigger => ev.with_triggers(|t| match t {
                    Some(t) if !t.list.is_empty() => {
                        for tr in &t.list {
                            tr.describe(w)?;
                            w.write_char('\n')?;
                        }
                        Ok(())
                    }
                    _ => w.write_str(trigger::AVAILABLE),
                }),
                EvFile::Hist => trigger::write_hist_file(w, &ev),
            }
        }
        _ => Ok(()),
    }
}

fn enable_value(text: &str) -> Result<bool, Errno> {
    match crate::shell::parse::parse_ulong(text.trim_end())? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}

/// An enable or trigger change the probe refused: EINVAL (the reason goes to the log).
fn arm_error(e: EventError) -> Errno {
    log::info!("events: {e}");
    Errno::EINVAL
}

/// Writes an event file. On error nothing changed.
pub fn write(f: File, text: &str, append: bool) -> Result<(), Errno> {
    match f {
        File::KprobeEvents => kprobe_event::write(text, append, Interface::KprobeEvents),
        File::DynamicEvents => kprobe_event::write(text, append, Interface::DynamicEvents),
        File::ErrorLog => {
            if !append {
                crate::events::clear_error_log();
            }
            Ok(())
        }
        File::KprobeProfile | File::AvailableEvents => Err(Errno::EACCES),
        File::SetEvent => write_set_event(text, append),
        File::EventsEnable(sys) => {
            let on = enable_value(text)?;
            registry::set_enabled_all(&events_of(sys)?, on).map_err(arm_error)
        }
        File::Event(id, which) => {
            let ev = event(id)?;
            match which {
                EvFile::Enable => registry::set_enabled(&ev, enable_value(text)?).map_err(arm_error),
                EvFile::Filter => write_filter(&ev, text),
                EvFile::Trigger => write_trigger(&ev, text),
                EvFile::Format | EvFile::Id | EvFile::Hist => Err(Errno::EACCES),
            }
        }
        _ => Err(Errno::EACCES),
    }
}

fn write_filter(ev: &Event, text: &str) -> Result<(), Errno> {
    if text.len() >= filter::MAX_WRITE {
        return Err(Errno::EINVAL);
    }
    match filter::parse_filter_write(text.as_bytes(), &ev.layout, &registry::parse_env()) {
        Ok(FilterWrite::Clear) => {
            registry::set_filter(ev, None);
            Ok(())
        }
        Ok(FilterWrite::Set(f)) => {
            registry::set_filter(ev, Some(f));
            Ok(())
        }
        Err(e) => {
            crate::events::log_error(e.error_log_entry(crate::time::ticks_to_ns(arch::time::ticks())));
            Err(match e.errno() {
                1 => Errno::EPERM,
                2 => Errno::ENOENT,
                _ => Errno::EINVAL,
            })
        }
    }
}

fn write_trigger(ev: &Event, text: &str) -> Result<(), Errno> {
    let w = trigger::parse(text, &ev.layout).map_err(|e| {
        if let trigger::TriggerError::Filter(fe) = &e {
            crate::events::log_error(fe.error_log_entry(crate::time::ticks_to_ns(arch::time::ticks())));
        }
        e.errno()
    })?;
    registry::update_triggers(ev, |cur| trigger::apply(cur, w)).map_err(|e| e.errno())?.map_err(arm_error)
}

/// `set_event`: `[!]system:event` words (globs on both halves; `event` alone means any system,
/// `system:` every event of it); `>` first disables every event. All or nothing.
fn write_set_event(text: &str, append: bool) -> Result<(), Errno> {
    let all = registry::all();
    let mut want: Vec<(Arc<Event>, bool)> = Vec::new();
    if !append {
        for e in all.iter().filter(|e| e.is_enabled()) {
            want.push((e.clone(), false));
        }
    }
    for word in text.split_whitespace() {
        let (neg, spec) = match word.strip_prefix('!') {
            Some(w) => (true, w),
            None => (false, word),
        };
        let (sys, name) = match spec.split_once(':') {
            Some((s, "")) => (s, "*"),
            Some((s, n)) => (s, n),
            None => ("*", spec),
        };
        let hits: Vec<&Arc<Event>> = all.iter().filter(|e| crate::glob::glob_match(sys, e.system()) && crate::glob::glob_match(name, e.name())).collect();
        if hits.is_empty() {
            return Err(Errno::EINVAL);
        }
        for e in hits {
            want.retain(|(x, _)| !Arc::ptr_eq(x, e));
            want.push((e.clone(), !neg));
        }
    }
    let on: Vec<Arc<Event>> = want.iter().filter(|(e, on)| *on && !e.is_enabled()).map(|(e, _)| e.clone()).collect();
    let off: Vec<Arc<Event>> = want.iter().filter(|(_, on)| !*on).map(|(e, _)| e.clone()).collect();
    registry::set_enabled_all(&on, true).map_err(arm_error)?;
    if let Err(e) = registry::set_enabled_all(&off, false) {
        let _ = registry::set_enabled_all(&on, false);
        return Err(arm_error(e));
    }
    Ok(())
}
