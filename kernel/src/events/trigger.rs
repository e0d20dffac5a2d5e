//! Event triggers (`events/<system>/<event>/trigger`, Linux's `trace_events_trigger.c` and
//! `trace_events_hist.c`): commands that run when the event fires — `traceon`, `traceoff`,
//! `stacktrace` (each with an optional `:N` run count) and `hist:keys=…[:vals=…][:sort=…][:size=N]`
//! — each with an optional `if FILTER` evaluated on the event's record.
//!
//! A trigger runs on every hit of its event, recorded or not (Linux runs triggers of a disabled
//! event too: "soft disabled"). A histogram's table is allocated when the trigger is set (Linux's
//! `tracing_map` preallocates the same way): a hit takes the table's lock with `try_lock` and
//! allocates nothing; a hit that finds the lock taken, or the table full, is counted in
//! `Dropped`, as Linux counts the hits it could not insert.

use super::filter::{self, EventFilter, EventRecord};
use super::format::{EventLayout, FieldLayout, RecordRef};
use super::registry::{Event, KernelSyms};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Key words one hist entry may have (a number takes one, a string [`STR_KEY_WORDS`]).
const MAX_KEY_WORDS: usize = 8;
/// Words of a string key (its first 32 bytes).
const STR_KEY_WORDS: usize = 4;
/// Values one histogram may sum besides `hitcount`.
const MAX_VALS: usize = 4;
/// Linux's default `size` (`TRACING_MAP_BITS_DEFAULT` = 11).
const DEFAULT_SIZE: usize = 2048;
/// Linux's largest `size` (`TRACING_MAP_BITS_MAX` = 17).
const MAX_SIZE: usize = 1 << 17;

/// The triggers of one event.
pub struct Triggers {
    pub list: Vec<Trigger>,
}

/// One trigger.
pub struct Trigger {
    pub cmd: Cmd,
    /// Runs left (-1: unlimited).
    count: AtomicI64,
    /// The run count as written (`None`: unlimited), for listing.
    initial: Option<u64>,
    filter: Option<EventFilter>,
}

/// What a trigger does.
pub enum Cmd {
    TraceOn,
    TraceOff,
    StackTrace,
    /// Shared by the trigger lists a change copies, so the counts go on.
    Hist(alloc::sync::Arc<Hist>),
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::TraceOn => "traceon",
            Cmd::TraceOff => "traceoff",
            Cmd::StackTrace => "stacktrace",
            Cmd::Hist(_) => "hist",
        }
    }
}

/// Why a trigger write was refused. Nothing changed.
#[derive(Debug)]
pub enum TriggerError {
    /// Not a trigger command this kernel has (EINVAL).
    UnknownCommand(String),
    /// `!cmd` for a trigger that is not set (ENOENT).
    NotSet(String),
    /// The same command is set already (EEXIST).
    Exists(String),
    /// A malformed run count or option (EINVAL).
    Syntax(String),
    /// A bad `if` filter.
    Filter(filter::FilterError),
    /// A hist field that the event does not have (EINVAL; Linux: `Couldn't find field`).
    NoField(String),
    /// No heap for a histogram of that many entries (ENOMEM).
    NoMemory(usize),
}

impl TriggerError {
    /// The error number Linux's write returns.
    pub fn errno(&self) -> crate::shell::parse::Errno {
        use crate::shell::parse::Errno;
        match self {
            TriggerError::NotSet(_) => Errno::ENOENT,
            TriggerError::Exists(_) => Errno::EEXIST,
            TriggerError::NoMemory(_) => Errno::ENOMEM,
            _ => Errno::EINVAL,
        }
    }
}

impl core::fmt::Display for TriggerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TriggerError::UnknownCommand(c) => write!(f, "unknown trigger command '{c}'"),
            TriggerError::NotSet(c) => write!(f, "no '{c}' trigger is set"),
            TriggerError::Exists(c) => write!(f, "a '{c}' trigger is set already"),
            TriggerError::Syntax(s) => write!(f, "{s}"),
            TriggerError::Filter(e) => write!(f, "{e}"),
            TriggerError::NoField(n) => write!(f, "Couldn't find field: {n}"),
            TriggerError::NoMemory(n) => write!(f, "no memory for a histogram of {n} entries"),
        }
    }
}

/// What `cat trigger` shows when no trigger is set (Linux lists the commands it has).
pub const AVAILABLE: &str = "# Available triggers:\n# traceon traceoff stacktrace hist\n";

/// A parsed write to a `trigger` file.
pub enum TriggerWrite {
    Add(Trigger),
    /// `!cmd...`: remove the trigger of that command.
    Remove(&'static str),
    /// A blank write.
    Nothing,
}

/// Parses one trigger command against `layout`.
pub fn parse(text: &str, layout: &EventLayout) -> Result<TriggerWrite, TriggerError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(TriggerWrite::Nothing);
    }
    let (remove, text) = match text.strip_prefix('!') {
        Some(t) => (true, t.trim_start()),
        None => (false, text),
    };
    // `CMD[:PARAM] [if FILTER]`.
    let (head, cond) = match text.find(" if ") {
        Some(i) => (&text[..i], Some(text[i + 4..].trim())),
        None => (text.trim_end(), None),
    };
    let (name, param) = match head.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (head, None),
    };
    let cmd_name: &'static str = match name {
        "traceon" => "traceon",
        "traceoff" => "traceoff",
        "stacktrace" => "stacktrace",
        "hist" => "hist",
        other => return Err(TriggerError::UnknownCommand(other.into())),
    };
    if remove {
        return Ok(TriggerWrite::Remove(cmd_name));
    }
    let filter = match cond {
        Some(c) => Some(filter::parse(c.as_bytes(), layout, &super::registry::parse_env()).map_err(TriggerError::Filter)?),
        None => None,
    };
    let (cmd, initial) = if cmd_name == "hist" {
        (Cmd::Hist(alloc::sync::Arc::new(Hist::parse(param.unwrap_or(""), layout)?)), None)
    } else {
        let initial = match param {
            None => None,
            Some(p) => Some(crate::shell::parse::parse_ulong(p).map_err(|_| TriggerError::Syntax(alloc::format!("bad count '{p}'")))?),
        };
        let cmd = match cmd_name {
            "traceon" => Cmd::TraceOn,
            "traceoff" => Cmd::TraceOff,
            _ => Cmd::StackTrace,
        };
        (cmd, initial)
    };
    let count = AtomicI64::new(initial.map_or(-1, |n| n.min(i64::MAX as u64) as i64));
    Ok(TriggerWrite::Add(Trigger { cmd, count, initial, filter }))
}

/// The event's triggers after `w` (a new list; `current` is left alone).
pub fn apply(current: Option<&Triggers>, w: TriggerWrite) -> Result<Option<Triggers>, TriggerError> {
    let mut list: Vec<Trigger> = Vec::new();
    let existing = current.map_or(&[][..], |t| &t.list[..]);
    match w {
        TriggerWrite::Nothing => {
            return Ok(current.map(|t| Triggers { list: t.list.iter().map(Trigger::clone_config).collect() }));
        }
        TriggerWrite::Remove(name) => {
            if !existing.iter().any(|t| t.cmd.name() == name) {
                return Err(TriggerError::NotSet(name.into()));
            }
            list.extend(existing.iter().filter(|t| t.cmd.name() != name).map(Trigger::clone_config));
        }
        TriggerWrite::Add(t) => {
            if existing.iter().any(|x| x.cmd.name() == t.cmd.name()) {
                return Err(TriggerError::Exists(t.cmd.name().into()));
            }
            list.extend(existing.iter().map(Trigger::clone_config));
            list.push(t);
        }
    }
    Ok((!list.is_empty()).then_some(Triggers { list }))
}

impl Trigger {
    /// A copy with the same configuration and state (the histogram's counts move with it).
    fn clone_config(&self) -> Trigger {
        Trigger {
            cmd: match &self.cmd {
                Cmd::TraceOn => Cmd::TraceOn,
                Cmd::TraceOff => Cmd::TraceOff,
                Cmd::StackTrace => Cmd::StackTrace,
                Cmd::Hist(h) => Cmd::Hist(h.clone()),
            },
            count: AtomicI64::new(self.count.load(Ordering::Relaxed)),
            initial: self.initial,
            filter: self.filter.clone(),
        }
    }

    /// The trigger as `cat trigger` lists it.
    pub fn describe(&self, w: &mut dyn Write) -> core::fmt::Result {
        match &self.cmd {
            Cmd::Hist(h) => h.describe(w)?,
            c => {
                w.write_str(c.name())?;
                match self.initial {
                    None => w.write_str(":unlimited")?,
                    Some(_) => write!(w, ":count={}", self.count.load(Ordering::Relaxed).max(0))?,
                }
            }
        }
        if let Some(f) = &self.filter {
            write!(w, " if {}", String::from_utf8_lossy(f.text()))?;
        }
        if matches!(self.cmd, Cmd::Hist(_)) {
            w.write_str(" [active]")?;
        }
        Ok(())
    }

    /// Takes one run; false when the count is used up.
    fn take_run(&self) -> bool {
        let mut cur = self.count.load(Ordering::Relaxed);
        loop {
            if cur < 0 {
                return true;
            }
            if cur == 0 {
                return false;
            }
            match self.count.compare_exchange_weak(cur, cur - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }
}

/// Runs the triggers of `ev` on its record `rec` (fired on `cpu` at `ip`, frame pointer `fp`).
pub fn run(t: &Triggers, ev: &Event, rec: &[u8], cpu: u32, ip: u64, fp: super::registry::StackStart) {
    let mut comm = [0u8; 16];
    let Ok(view) = ev.layout.view(rec) else { return };
    let view = view.with_context(cpu, super::registry::comm_of(cpu, &mut comm));
    use crate::ftrace::tracer::{set_tracing_on, tracing_on};
    for tr in &t.list {
        if tr.filter.as_ref().is_some_and(|f| !f.matches(&view)) {
            continue;
        }
        match &tr.cmd {
            // Linux's traceon/traceoff triggers count only runs that change the state.
            Cmd::TraceOn => {
                if !tracing_on() && tr.take_run() {
                    set_tracing_on(true);
                }
            }
            Cmd::TraceOff => {
                if tracing_on() && tr.take_run() {
                    set_tracing_on(false);
                }
            }
            Cmd::StackTrace => {
                if tracing_on() && tr.take_run() {
                    write_stack(ip, fp);
                }
            }
            Cmd::Hist(h) => h.add(&view),
        }
    }
}

/// Writes a stack trace into the trace (the event's place, then its callers).
fn write_stack(ip: u64, start: super::registry::StackStart) {
    let at_entry = || crate::ksyms::lookup(ip).is_some_and(|(_, off)| off < 8);
    let first = (start.ra != 0 && (!start.entry_only || at_entry())).then_some((start.ra, start.fp));
    crate::ftrace::tracer::record_stack(ip, first, Some(start.fp), 32, crate::ksyms::real_return_address);
}

// ---------------------------------------------------------------------------------------------
// Histograms.

/// How a hist field prints (its `.modifier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Plain,
    Hex,
    Sym,
    SymOffset,
}

#[derive(Clone, Debug)]
struct HistField {
    name: String,
    /// Index in the layout's fields; `None` for `common_pid`/`hitcount`-like pseudo fields.
    field: usize,
    string: bool,
    signed: bool,
    shown: Shown,
}

/// A `hist` trigger: keys, values, sort order and a preallocated table.
pub struct Hist {
    keys: Vec<HistField>,
    vals: Vec<HistField>,
    /// Sort by this (`hitcount` or a key/value name), descending?
    sort: (String, bool),
    size: usize,
    table: spin::Mutex<Vec<HistEntry>>,
    hits: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct HistEntry {
    used: bool,
    key: [u64; MAX_KEY_WORDS],
    hitcount: u64,
    vals: [u64; MAX_VALS],
}

impl Hist {
    fn parse(spec: &str, layout: &EventLayout) -> Result<Hist, TriggerError> {
        let mut keys = None;
        let mut vals = Vec::new();
        let mut sort = (String::from("hitcount"), false);
        let mut size = DEFAULT_SIZE;
        for part in spec.split(':').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| TriggerError::Syntax(alloc::format!("bad hist option '{part}'")))?;
            match k {
                "keys" | "key" => keys = Some(v.split(',').map(|n| field_of(n, layout)).collect::<Result<Vec<_>, _>>()?),
                "vals" | "values" | "val" => {
                    for n in v.split(',') {
                        if n == "hitcount" {
                            continue;
                        }
                        let f = field_of(n, layout)?;
                        if f.string {
                            return Err(TriggerError::Syntax(alloc::format!("a string field cannot be a value: {n}")));
                        }
                        vals.push(f);
                    }
                }
                "sort" => {
                    let first = v.split(',').next().unwrap_or("hitcount");
                    sort = match first.split_once('.') {
                        Some((n, "descending")) => (n.into(), true),
                        Some((n, "ascending")) => (n.into(), false),
                        Some(_) => return Err(TriggerError::Syntax(alloc::format!("bad sort modifier in '{first}'"))),
                        None => (first.into(), false),
                    };
                }
                "size" => {
                    let n = crate::shell::parse::parse_ulong(v).map_err(|_| TriggerError::Syntax(alloc::format!("bad size '{v}'")))?;
                    if n == 0 || n as usize > MAX_SIZE {
                        return Err(TriggerError::Syntax(alloc::format!("size out of range: {v}")));
                    }
                    size = (n as usize).next_power_of_two();
                }
                _ => return Err(TriggerError::Syntax(alloc::format!("unknown hist option '{k}'"))),
            }
        }
        let keys = keys.ok_or_else(|| TriggerError::Syntax("hist needs keys=".into()))?;
        let words: usize = keys.iter().map(|k| if k.string { STR_KEY_WORDS } else { 1 }).sum();
        if keys.is_empty() || words > MAX_KEY_WORDS {
            return Err(TriggerError::Syntax("too many keys".into()));
        }
        if vals.len() > MAX_VALS {
            return Err(TriggerError::Syntax("too many values".into()));
        }
        if sort.0 != "hitcount" && !keys.iter().chain(&vals).any(|f| f.name == sort.0) {
            return Err(TriggerError::NoField(sort.0));
        }
        // Allocated now, all of it (a hit never allocates); a size the heap cannot hold is refused.
        let mut table = Vec::new();
        table.try_reserve_exact(size).map_err(|_| TriggerError::NoMemory(size))?;
        table.resize(size, HistEntry::default());
        Ok(Hist { keys, vals, sort, size, table: spin::Mutex::new(table), hits: AtomicU64::new(0), dropped: AtomicU64::new(0) })
    }

    fn describe(&self, w: &mut dyn Write) -> core::fmt::Result {
        w.write_str("hist:keys=")?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                w.write_char(',')?;
            }
            write_field_name(w, k)?;
        }
        w.write_str(":vals=hitcount")?;
        for v in &self.vals {
            w.write_char(',')?;
            write_field_name(w, v)?;
        }
        write!(w, ":sort={}", self.sort.0)?;
        if self.sort.1 {
            w.write_str(".descending")?;
        }
        write!(w, ":size={}", self.size)
    }

    /// Counts one hit (no allocation, no waiting).
    fn add(&self, rec: &RecordRef) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let mut key = [0u64; MAX_KEY_WORDS];
        let mut at = 0;
        for k in &self.keys {
            if k.string {
                let s = rec.string(k.field);
                let mut b = [0u8; STR_KEY_WORDS * 8];
                let n = s.iter().position(|&c| c == 0).unwrap_or(s.len()).min(b.len());
                b[..n].copy_from_slice(&s[..n]);
                for j in 0..STR_KEY_WORDS {
                    key[at + j] = u64::from_le_bytes(b[j * 8..j * 8 + 8].try_into().unwrap_or([0; 8]));
                }
                at += STR_KEY_WORDS;
            } else {
                key[at] = rec.number(k.field);
                at += 1;
            }
        }
        let Some(mut t) = self.table.try_lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mask = self.size - 1;
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for w in &key {
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut i = (h as usize) & mask;
        for _ in 0..self.size {
            let e = &mut t[i];
            if !e.used {
                *e = HistEntry { used: true, key, ..Default::default() };
            }
            if e.key == key {
                e.hitcount += 1;
                for (j, v) in self.vals.iter().enumerate() {
                    e.vals[j] = e.vals[j].wrapping_add(rec.number(v.field));
                }
                return;
            }
            i = (i + 1) & mask;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The `hist` file body: entries, then totals.
    fn write_entries(&self, w: &mut dyn Write) -> core::fmt::Result {
        let mut entries: Vec<HistEntry> = self.table.lock().iter().filter(|e| e.used).copied().collect();
        let sort_key = |e: &HistEntry| -> (u64, bool) {
            if self.sort.0 == "hitcount" {
                return (e.hitcount, false);
            }
            if let Some(j) = self.vals.iter().position(|v| v.name == self.sort.0) {
                return (e.vals[j], self.vals[j].signed);
            }
            let mut at = 0;
            for k in &self.keys {
                if k.name == self.sort.0 {
                    return (e.key[at], k.signed);
                }
                at += if k.string { STR_KEY_WORDS } else { 1 };
            }
            (0, false)
        };
        entries.sort_by(|a, b| {
            let ((x, signed), (y, _)) = (sort_key(a), sort_key(b));
            let o = if signed { (x as i64).cmp(&(y as i64)) } else { x.cmp(&y) };
            if self.sort.1 { o.reverse() } else { o }
        });
        for e in &entries {
            w.write_str("{ ")?;
            let mut at = 0;
            for (i, k) in self.keys.iter().enumerate() {
                if i > 0 {
                    w.write_str(", ")?;
                }
                write_field_name(w, k)?;
                w.write_str(": ")?;
                if k.string {
                    let mut b = [0u8; STR_KEY_WORDS * 8];
                    for j in 0..STR_KEY_WORDS {
                        b[j * 8..j * 8 + 8].copy_from_slice(&e.key[at + j].to_le_bytes());
                    }
                    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                    write!(w, "{:<20}", String::from_utf8_lossy(&b[..n]))?;
                    at += STR_KEY_WORDS;
                } else {
                    write_key_value(w, k, e.key[at])?;
                    at += 1;
                }
            }
            write!(w, " }} hitcount: {:>10}", e.hitcount)?;
            for (j, v) in self.vals.iter().enumerate() {
                write!(w, "  {}: {:>10}", v.name, if v.signed { alloc::format!("{}", e.vals[j] as i64) } else { alloc::format!("{}", e.vals[j]) })?;
            }
            w.write_char('\n')?;
        }
        writeln!(w, "\nTotals:\n    Hits: {}\n    Entries: {}\n    Dropped: {}", self.hits.load(Ordering::Relaxed), entries.len(), self.dropped.load(Ordering::Relaxed))
    }
}

fn write_field_name(w: &mut dyn Write, f: &HistField) -> core::fmt::Result {
    w.write_str(&f.name)?;
    match f.shown {
        Shown::Plain => Ok(()),
        Shown::Hex => w.write_str(".hex"),
        Shown::Sym => w.write_str(".sym"),
        Shown::SymOffset => w.write_str(".sym-offset"),
    }
}

fn write_key_value(w: &mut dyn Write, k: &HistField, v: u64) -> core::fmt::Result {
    use super::format::Symbolizer;
    match k.shown {
        Shown::Hex => write!(w, "{v:>16x}"),
        Shown::Sym | Shown::SymOffset => {
            let mut s = String::new();
            match KernelSyms.lookup(v) {
                Some(info) if k.shown == Shown::Sym => s.push_str(info.name),
                Some(info) => {
                    let _ = write!(s, "{}+{:#x}/{:#x}", info.name, v - info.start, info.size);
                }
                None => {
                    let _ = write!(s, "{v:#x}");
                }
            }
            write!(w, "[{v:016x}] {s:<40}")
        }
        Shown::Plain if k.signed => write!(w, "{:>10}", v as i64),
        Shown::Plain => write!(w, "{v:>10}"),
    }
}

/// The hist field `name[.modifier]` of `layout`.
fn field_of(spec: &str, layout: &EventLayout) -> Result<HistField, TriggerError> {
    let (name, modifier) = match spec.split_once('.') {
        Some((n, m)) => (n, Some(m)),
        None => (spec, None),
    };
    let shown = match modifier {
        None => Shown::Plain,
        Some("hex") => Shown::Hex,
        Some("sym") => Shown::Sym,
        Some("sym-offset") => Shown::SymOffset,
        Some(m) => return Err(TriggerError::Syntax(alloc::format!("Invalid field modifier: {m}"))),
    };
    let i = layout.fields().iter().position(|f: &FieldLayout| f.name == name).ok_or_else(|| TriggerError::NoField(name.into()))?;
    let f = &layout.fields()[i];
    if f.count != 0 {
        return Err(TriggerError::Syntax(alloc::format!("an array field cannot be a key or value: {name}")));
    }
    Ok(HistField { name: name.into(), field: i, string: f.is_string(), signed: f.is_signed(), shown })
}

/// What the event's `hist` file shows: one block per hist trigger.
pub fn write_hist_file(w: &mut dyn Write, ev: &Event) -> core::fmt::Result {
    ev.with_triggers(|t| {
        let Some(t) = t else { return Ok(()) };
        for tr in &t.list {
            if let Cmd::Hist(h) = &tr.cmd {
                w.write_str("# event histogram\n#\n# trigger info: ")?;
                tr.describe(w)?;
                w.write_str("\n#\n\n")?;
                h.write_entries(w)?;
            }
        }
        Ok(())
    })
}
