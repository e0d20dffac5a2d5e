//! Writes trace-cmd's `trace.dat` (file version 6) from a recording: what `trace-cmd report` and
//! KernelShark open.
//!
//! The file carries the texts Linux's tracefs would give (`events/header_page`,
//! `events/header_event`, the `ftrace` event formats `function`, `funcgraph_entry`,
//! `funcgraph_exit` and `print` (`trace_marker` writes)), the kernel's symbols as
//! `/proc/kallsyms` text, the CPU count, and per CPU
//! the events in Linux's ring-buffer page layout: 4096-byte pages of a `u64` timestamp, a `u64`
//! commit (bytes used), then events with a 32-bit header (`type_len`: 5 bits, `time_delta`:
//! 27 bits). Deltas that do not fit in 27 bits are carried by a time-extend event before the
//! event; data longer than 112 bytes (long markers) has `type_len` 0 and its length in the next
//! word. See `docs/export.md`.

use crate::capture::Recording;
use crate::symtab::SymbolTable;
use formats::wire::{self, Record};

/// Page size of the ring buffer (and of the file's alignment).
pub const PAGE_SIZE: usize = 4096;
/// Page header: timestamp and commit.
pub const PAGE_HEADER: usize = 16;
/// Data bytes in a page.
pub const PAGE_DATA: usize = PAGE_SIZE - PAGE_HEADER;
/// Bits of the time delta in an event header.
pub const TS_BITS: u32 = 27;
/// Largest delta an event header holds.
pub const MAX_DELTA: u64 = (1 << TS_BITS) - 1;
/// `type_len` of a time-extend event.
pub const TYPE_TIME_EXTEND: u32 = 30;
/// Largest `type_len` giving the data length directly (`type_len * 4` bytes).
pub const MAX_DATA_TYPE_LEN: u32 = 28;
/// Commit flag: events were lost before this page.
pub const MISSED_EVENTS: u64 = 1 << 31;
/// Commit flag: the number of lost events is stored after the page's data.
pub const MISSED_STORED: u64 = 1 << 30;

/// Linux's event IDs (`TRACE_FN`, `TRACE_PRINT`, `TRACE_GRAPH_RET`, `TRACE_GRAPH_ENT`).
pub const ID_FUNCTION: u16 = 1;
pub const ID_PRINT: u16 = 5;
pub const ID_FUNCGRAPH_EXIT: u16 = 10;
pub const ID_FUNCGRAPH_ENTRY: u16 = 11;

/// Longest marker text a `print` event carries (Linux cuts `trace_marker` writes to what fits
/// one ring-buffer page; the kernel keeps at most 4000 bytes).
pub const MAX_PRINT_TEXT: usize = 4000;

/// `common_flags` bits (Linux's `TRACE_FLAG_IRQS_OFF`, `TRACE_FLAG_HARDIRQ`).
pub const TRACE_FLAG_IRQS_OFF: u8 = 0x01;
pub const TRACE_FLAG_HARDIRQ: u8 = 0x08;

const COMMON_FIELDS: &str = "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
";

/// `events/header_page` as Linux prints it for 4096-byte pages and 64-bit `local_t`.
pub fn header_page_text() -> String {
    format!(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:{PAGE_HEADER};\tsize:{PAGE_DATA};\tsigned:1;
"
    )
}

/// `events/header_event`.
pub const HEADER_EVENT_TEXT: &str = "# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
";

fn format_text(name: &str, id: u16, fields: &str, print_fmt: &str) -> String {
    format!("name: {name}\nID: {id}\nformat:\n{COMMON_FIELDS}\n{fields}\nprint fmt: {print_fmt}\n")
}

/// The `ftrace` event format files written into the file.
pub fn ftrace_formats() -> Vec<String> {
    vec![
        format_text(
            "function",
            ID_FUNCTION,
            "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long parent_ip;\toffset:16;\tsize:8;\tsigned:0;
",
            "\" %ps <-- %ps\", (void *)REC->ip, (void *)REC->parent_ip",
        ),
        format_text(
            "funcgraph_exit",
            ID_FUNCGRAPH_EXIT,
            "\tfield:unsigned long func;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int depth;\toffset:16;\tsize:4;\tsigned:1;
\tfield:unsigned int overrun;\toffset:20;\tsize:4;\tsigned:0;
\tfield:unsigned long retval;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long long calltime;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long long rettime;\toffset:40;\tsize:8;\tsigned:0;
",
            "\"<-- %ps (%d) (start: %llx  end: %llx) over: %d retval: %lx\", (void *)REC->func, \
             REC->depth, REC->calltime, REC->rettime, REC->depth, REC->retval",
        ),
        format_text(
            "funcgraph_entry",
            ID_FUNCGRAPH_ENTRY,
            "\tfield:unsigned long func;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int depth;\toffset:16;\tsize:4;\tsigned:1;
",
            "\"--> %ps (%d)\", (void *)REC->func, REC->depth",
        ),
        format_text(
            "print",
            ID_PRINT,
            "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:0;
",
            "\"%ps: %s\", (void *)REC->ip, REC->buf",
        ),
    ]
}

/// One event's payload, before the ring-buffer header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Function { ip: u64, parent: u64, flags: u8 },
    /// A `trace_marker` write: `ip` is `tracing_mark_write`, `text` the text written (without
    /// its newline).
    Print { ip: u64, flags: u8, text: String },
    GraphEntry { func: u64, depth: i32 },
    GraphExit { func: u64, depth: i32, retval: u64, calltime: u64, rettime: u64 },
}

impl Event {
    /// The event's data as Linux lays out its `struct ..._entry`: common fields, then the
    /// event's own fields (a multiple of 4 bytes; `print`: `ip`, then the text with a newline
    /// and a NUL, as `tracing_mark_write` stores it, zero-padded). `pid` is the `common_pid` of the
    /// task that ran it ([`formats::task::pid`] of its CPU).
    pub fn encode(&self, pid: u32) -> Vec<u8> {
        let (id, flags) = match self {
            Event::Function { flags, .. } => (ID_FUNCTION, *flags),
            Event::Print { flags, .. } => (ID_PRINT, *flags),
            Event::GraphEntry { .. } => (ID_FUNCGRAPH_ENTRY, 0),
            Event::GraphExit { .. } => (ID_FUNCGRAPH_EXIT, 0),
        };
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(&id.to_le_bytes());
        b.push(flags);
        b.push(0); // preempt count
        b.extend_from_slice(&pid.to_le_bytes()); // common_pid
        match *self {
            Event::Function { ip, parent, .. } => {
                b.extend_from_slice(&ip.to_le_bytes());
                b.extend_from_slice(&parent.to_le_bytes());
            }
            Event::Print { ip, ref text, .. } => {
                b.extend_from_slice(&ip.to_le_bytes());
                b.extend_from_slice(wire::cut_text(text, MAX_PRINT_TEXT).as_bytes());
                b.extend_from_slice(b"\n\0");
                b.resize(b.len().next_multiple_of(4), 0);
            }
            Event::GraphEntry { func, depth } => {
                b.extend_from_slice(&func.to_le_bytes());
                b.extend_from_slice(&depth.to_le_bytes());
                b.extend_from_slice(&[0; 4]);
            }
            Event::GraphExit { func, depth, retval, calltime, rettime } => {
                b.extend_from_slice(&func.to_le_bytes());
                b.extend_from_slice(&depth.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes()); // overrun
                b.extend_from_slice(&retval.to_le_bytes());
                b.extend_from_slice(&calltime.to_le_bytes());
                b.extend_from_slice(&rettime.to_le_bytes());
            }
        }
        b
    }

    /// The event a kernel record becomes (timestamps converted with `rec`'s counter frequency).
    pub fn from_record(rec: &Recording, r: &Record) -> Option<Event> {
        let flags = || {
            let mut flags = 0;
            if r.depth & wire::FLAG_IRQS_OFF != 0 {
                flags |= TRACE_FLAG_IRQS_OFF;
            }
            if r.depth & wire::FLAG_IN_TRAP != 0 {
                flags |= TRACE_FLAG_HARDIRQ;
            }
            flags
        };
        Some(match r.kind {
            wire::KIND_FUNC => Event::Function { ip: r.ip, parent: r.parent, flags: flags() },
            wire::KIND_MARKER => Event::Print { ip: r.ip, flags: flags(), text: rec.marker_text(r).to_string() },
            wire::KIND_GRAPH_ENTRY => Event::GraphEntry { func: r.ip, depth: r.depth as i32 },
            wire::KIND_GRAPH_RETURN => Event::GraphExit {
                func: r.ip,
                depth: r.depth as i32,
                retval: r.parent,
                calltime: rec.ns(r.ts.saturating_sub(r.extra)),
                rettime: rec.ns(r.ts),
            },
            _ => return None,
        })
    }
}

/// A ring-buffer event header word.
pub fn event_header(type_len: u32, delta: u64) -> u32 {
    debug_assert!(type_len < 32 && delta <= MAX_DELTA);
    type_len | ((delta as u32) << 5)
}

/// Packs one CPU's events into ring-buffer pages.
#[derive(Debug, Default)]
pub struct PageWriter {
    pages: Vec<u8>,
    data: Vec<u8>,
    page_ts: u64,
    last_ts: u64,
    /// Events lost before the next page's first event, noted in that page (0 = none).
    lost: u64,
}

impl PageWriter {
    /// A writer whose first page records `lost` events lost before it.
    pub fn new(lost: u64) -> Self {
        PageWriter { lost, ..Default::default() }
    }

    fn capacity(&self) -> usize {
        // A page that notes lost events keeps room for the stored count.
        if self.lost > 0 { PAGE_DATA - 8 } else { PAGE_DATA }
    }

    /// Notes `n` events lost here, after the events pushed so far: the page being filled ends,
    /// and the next one carries Linux's `missed events` flag and the count, which `trace-cmd
    /// report` prints as `CPU:n [n EVENTS DROPPED]` right before that page's first event.
    pub fn note_lost(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if !self.data.is_empty() {
            self.flush();
        }
        self.lost += n;
    }

    /// Appends an event with timestamp `ts` (ns, not older than the previous one; an older one is
    /// stored with delta 0). `data` must be a non-empty multiple of 4 bytes that fits a page; up
    /// to 112 bytes its length is the header's `type_len`, longer data has `type_len` 0 and its
    /// length + 4 in the word after the header (Linux's layout).
    pub fn push(&mut self, ts: u64, data: &[u8]) {
        assert!(data.len().is_multiple_of(4) && !data.is_empty() && data.len() + 8 <= PAGE_DATA - 8);
        let small = data.len() <= MAX_DATA_TYPE_LEN as usize * 4;
        let len = if small { 4 } else { 8 } + data.len();
        let mut delta = ts.saturating_sub(self.last_ts);
        let extend = if delta > MAX_DELTA { 8 } else { 0 };
        if self.data.is_empty() || self.data.len() + extend + len > self.capacity() {
            if !self.data.is_empty() {
                self.flush();
            }
            self.page_ts = ts;
            delta = 0;
        } else if extend > 0 {
            self.data.extend_from_slice(&event_header(TYPE_TIME_EXTEND, delta & MAX_DELTA).to_le_bytes());
            self.data.extend_from_slice(&((delta >> TS_BITS) as u32).to_le_bytes());
            delta = 0;
        }
        if small {
            self.data.extend_from_slice(&event_header(data.len() as u32 / 4, delta).to_le_bytes());
        } else {
            self.data.extend_from_slice(&event_header(0, delta).to_le_bytes());
            self.data.extend_from_slice(&(data.len() as u32 + 4).to_le_bytes());
        }
        self.data.extend_from_slice(data);
        self.last_ts = self.last_ts.max(ts);
    }

    fn flush(&mut self) {
        let mut commit = self.data.len() as u64;
        let mut data = std::mem::take(&mut self.data);
        if self.lost > 0 {
            commit |= MISSED_EVENTS | MISSED_STORED;
            data.extend_from_slice(&self.lost.to_le_bytes());
            self.lost = 0;
        }
        self.pages.extend_from_slice(&self.page_ts.to_le_bytes());
        self.pages.extend_from_slice(&commit.to_le_bytes());
        data.resize(PAGE_DATA, 0);
        self.pages.extend_from_slice(&data);
    }

    /// The pages completed so far (taken out: a streaming writer stores them as they fill).
    pub fn take_pages(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pages)
    }

    /// The pages (empty if no event was pushed and none was lost). Events lost after the last
    /// one get a page of their own without events, so the count is never dropped.
    pub fn finish(mut self) -> Vec<u8> {
        if !self.data.is_empty() || self.lost > 0 {
            if self.data.is_empty() {
                self.page_ts = self.last_ts;
            }
            self.flush();
        }
        self.pages
    }
}

/// How a kernel symbol is named in `kallsyms`, in the trace and in reports: without the
/// `loongtrace_kernel::` crate prefix (as the kernel's own trace prints it) and with blanks
/// replaced by `_` (a kallsyms name is one word).
pub fn display_name(name: &str) -> String {
    let n = name.strip_prefix("loongtrace_kernel::").unwrap_or(name);
    n.replace(char::is_whitespace, "_")
}

/// `/proc/kallsyms` text for the table: `address T name` per symbol.
pub fn kallsyms_text(table: &SymbolTable) -> String {
    let mut s = String::new();
    for sym in table.symbols() {
        s.push_str(&format!("{:016x} T {}\n", sym.addr, display_name(&sym.name)));
    }
    s
}

/// One CPU's data: its events as ring-buffer pages.
pub fn cpu_pages(rec: &Recording, cpu: usize) -> Vec<u8> {
    let c = &rec.cpus[cpu];
    let mut w = PageWriter::new(c.lost);
    for (i, r) in c.events.iter().enumerate() {
        if r.kind == wire::KIND_EVENT {
            // A trace event: its record is already Linux's bytes (common fields included),
            // padded to 4 bytes as the ring buffer stores it.
            if let Some(mut b) = wire::event_bytes(&c.events[i..]) {
                b.resize(b.len().next_multiple_of(4), 0);
                w.push(rec.ns(r.ts), &b);
            }
        } else if let Some(e) = Event::from_record(rec, r) {
            w.push(rec.ns(r.ts), &e.encode(formats::task::pid(cpu as u32)));
        }
    }
    w.finish()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The file up to the CPU data table: header, formats, kallsyms, cmdlines, the CPU count and
/// `flyrecord` (the events of `rec` are not looked at).
pub fn header(rec: &Recording) -> Result<Vec<u8>, String> {
    let table = SymbolTable::parse(&rec.symtab).map_err(|e| format!("the recording's symbol table: {e}"))?;
    let mut out = Vec::new();
    out.extend_from_slice(&[0x17, 0x08, 0x44]);
    out.extend_from_slice(b"tracing6\0");
    out.push(0); // little endian
    out.push(8); // long size
    put_u32(&mut out, PAGE_SIZE as u32);

    let hp = header_page_text();
    out.extend_from_slice(b"header_page\0");
    put_u64(&mut out, hp.len() as u64);
    out.extend_from_slice(hp.as_bytes());
    out.extend_from_slice(b"header_event\0");
    put_u64(&mut out, HEADER_EVENT_TEXT.len() as u64);
    out.extend_from_slice(HEADER_EVENT_TEXT.as_bytes());

    let formats = ftrace_formats();
    put_u32(&mut out, formats.len() as u32);
    for f in &formats {
        put_u64(&mut out, f.len() as u64);
        out.extend_from_slice(f.as_bytes());
    }
    // The trace events' systems, each with its events' formats.
    let mut systems: Vec<(&str, Vec<&str>)> = Vec::new();
    for f in &rec.formats {
        match systems.iter_mut().find(|(s, _)| *s == f.system) {
            Some((_, v)) => v.push(&f.text),
            None => systems.push((&f.system, vec![&f.text])),
        }
    }
    put_u32(&mut out, systems.len() as u32);
    for (system, texts) in &systems {
        out.extend_from_slice(system.as_bytes());
        out.push(0);
        put_u32(&mut out, texts.len() as u32);
        for t in texts {
            put_u64(&mut out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
    }

    let kallsyms = kallsyms_text(&table);
    put_u32(&mut out, kallsyms.len() as u32);
    out.extend_from_slice(kallsyms.as_bytes());
    put_u32(&mut out, 0); // printk formats
    // One task per CPU, named as the kernel's own trace names it.
    let cmdlines: String = (0..rec.cpus.len() as u32).map(|c| format!("{} {}\n", formats::task::pid(c), formats::task::Comm(c))).collect();
    put_u64(&mut out, cmdlines.len() as u64);
    out.extend_from_slice(cmdlines.as_bytes());

    put_u32(&mut out, rec.cpus.len() as u32);
    out.extend_from_slice(b"flyrecord\0");
    Ok(out)
}

/// The whole `trace.dat` file.
pub fn write(rec: &Recording) -> Result<Vec<u8>, String> {
    let mut out = header(rec)?;
    let data: Vec<Vec<u8>> = (0..rec.cpus.len()).map(|c| cpu_pages(rec, c)).collect();
    let table_at = out.len();
    let header_end = table_at + 16 * data.len();
    let mut offset = header_end.next_multiple_of(PAGE_SIZE);
    for d in &data {
        put_u64(&mut out, offset as u64);
        put_u64(&mut out, d.len() as u64);
        offset += d.len();
    }
    out.resize(header_end.next_multiple_of(PAGE_SIZE), 0);
    for d in &data {
        out.extend_from_slice(d);
    }
    Ok(out)
}

/// Bytes of file reserved for each CPU's pages while a streamed recording goes on (the file is
/// sparse: only what is written takes space).
pub const STREAM_REGION: u64 = 1 << 36;

/// A `trace.dat` written while the recording goes on: the header first, then each CPU's pages
/// as they fill, into a region of the file of its own ([`STREAM_REGION`] apart), with the CPU's
/// size in the header's table rewritten after every page. Killed at any moment, the file is a
/// valid `trace.dat` up to the last page whose size was written. [`StreamFile::finish`] moves
/// the regions together.
pub struct StreamFile {
    file: std::fs::File,
    table_at: u64,
    data_at: u64,
    sizes: Vec<u64>,
    pub writers: Vec<PageWriter>,
}

impl StreamFile {
    /// Creates `path` with `rec`'s header (its events are not used) and empty CPU data.
    pub fn create(path: &std::path::Path, rec: &Recording) -> Result<StreamFile, String> {
        use std::io::Write;
        let mut out = header(rec)?;
        let cpus = rec.cpus.len();
        let table_at = out.len() as u64;
        let data_at = (table_at + 16 * cpus as u64).next_multiple_of(PAGE_SIZE as u64);
        for c in 0..cpus as u64 {
            put_u64(&mut out, data_at + c * STREAM_REGION);
            put_u64(&mut out, 0);
        }
        out.resize(data_at as usize, 0);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(&out).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(StreamFile { file, table_at, data_at, sizes: vec![0; cpus], writers: (0..cpus).map(|_| PageWriter::new(0)).collect() })
    }

    /// Stores the pages CPU `cpu`'s writer completed, then their size in the table.
    pub fn store(&mut self, cpu: usize) -> std::io::Result<u64> {
        let pages = self.writers[cpu].take_pages();
        self.append(cpu, &pages)
    }

    fn append(&mut self, cpu: usize, pages: &[u8]) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        if pages.is_empty() {
            return Ok(0);
        }
        if self.sizes[cpu] + pages.len() as u64 > STREAM_REGION {
            return Err(std::io::Error::other(format!(
                "CPU {cpu}'s pages reached {} GiB, the most a streamed recording keeps per CPU",
                STREAM_REGION >> 30
            )));
        }
        let at = self.data_at + cpu as u64 * STREAM_REGION + self.sizes[cpu];
        self.file
            .write_all_at(pages, at)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing CPU {cpu}'s pages at offset {at} (the file is sparse; its file system must allow files this large): {e}")))?;
        self.sizes[cpu] += pages.len() as u64;
        self.file.write_all_at(&self.sizes[cpu].to_le_bytes(), self.table_at + 16 * cpu as u64 + 8)?;
        Ok(pages.len() as u64)
    }

    /// Bytes of CPU data stored so far.
    pub fn data_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// Stores the last, partly filled pages and moves every CPU's pages right after the
    /// previous CPU's (each CPU's table entry is rewritten once its pages are in place, so the
    /// file stays valid throughout). Returns the file's size.
    pub fn finish(mut self) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let writers = std::mem::take(&mut self.writers);
        for (cpu, w) in writers.into_iter().enumerate() {
            let pages = w.finish();
            self.append(cpu, &pages)?;
        }
        let mut to = self.data_at;
        let mut buf = vec![0u8; 1 << 20];
        for cpu in 0..self.sizes.len() {
            let from = self.data_at + cpu as u64 * STREAM_REGION;
            let len = self.sizes[cpu];
            if from != to {
                let mut done = 0;
                while done < len {
                    let n = buf.len().min((len - done) as usize);
                    self.file.read_exact_at(&mut buf[..n], from + done)?;
                    self.file.write_all_at(&buf[..n], to + done)?;
                    done += n as u64;
                }
                self.file.write_all_at(&to.to_le_bytes(), self.table_at + 16 * cpu as u64)?;
            }
            to += len;
        }
        self.file.set_len(to)?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(b: &[u8], at: usize) -> (u32, u64) {
        let w = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        (w & 31, (w >> 5) as u64)
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn event_encodings() {
        let f = Event::Function { ip: 0x9000_0000_0020_1000, parent: 0x9000_0000_0020_2000, flags: TRACE_FLAG_IRQS_OFF }.encode(1);
        assert_eq!(f.len(), 24);
        assert_eq!(&f[..8], &[1, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(&Event::GraphEntry { func: 7, depth: 3 }.encode(0x0102_0304)[4..8], &[4, 3, 2, 1], "common_pid");
        assert_eq!(u64_at(&f, 8), 0x9000_0000_0020_1000);
        assert_eq!(u64_at(&f, 16), 0x9000_0000_0020_2000);
        let e = Event::GraphEntry { func: 7, depth: 3 }.encode(1);
        assert_eq!(e.len(), 24);
        assert_eq!(&e[..2], &ID_FUNCGRAPH_ENTRY.to_le_bytes());
        assert_eq!(u64_at(&e, 8), 7);
        assert_eq!(i32::from_le_bytes(e[16..20].try_into().unwrap()), 3);
        let x = Event::GraphExit { func: 7, depth: 3, retval: 99, calltime: 1000, rettime: 1500 }.encode(1);
        assert_eq!(x.len(), 48);
        assert_eq!(&x[..2], &ID_FUNCGRAPH_EXIT.to_le_bytes());
        assert_eq!((u64_at(&x, 24), u64_at(&x, 32), u64_at(&x, 40)), (99, 1000, 1500));
        // Every offset the format texts announce is where encode() puts the field.
        for (f, len) in ftrace_formats().iter().zip([24usize, 48, 24]) {
            let last = f.lines().rfind(|l| l.contains("offset:")).unwrap();
            let off: usize = last.split("offset:").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
            let size: usize = last.split("size:").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
            assert!(off + size <= len && len - (off + size) < 8, "{f}");
        }
    }

    #[test]
    fn record_conversion() {
        let rec = Recording { tracer: "function_graph".into(), counter_hz: 100_000_000, ..Default::default() };
        let r = Record { ts: 1000, ip: 5, parent: 42, kind: wire::KIND_GRAPH_RETURN, cpu: 1, depth: 2, extra: 30 };
        assert_eq!(
            Event::from_record(&rec, &r),
            Some(Event::GraphExit { func: 5, depth: 2, retval: 42, calltime: 9700, rettime: 10_000 })
        );
        let r = Record { kind: wire::KIND_FUNC, depth: wire::FLAG_IN_TRAP | wire::FLAG_IRQS_OFF, ..r };
        assert_eq!(
            Event::from_record(&rec, &r),
            Some(Event::Function { ip: 5, parent: 42, flags: TRACE_FLAG_IRQS_OFF | TRACE_FLAG_HARDIRQ })
        );
        assert_eq!(Event::from_record(&rec, &Record { kind: 9, ..r }), None);
        // A marker: its text from the recording's table, or shown as overwritten.
        let mut rec = rec;
        rec.markers.insert(30, "hello".into());
        let m = Record { kind: wire::KIND_MARKER, depth: wire::FLAG_IRQS_OFF, ..r };
        assert_eq!(Event::from_record(&rec, &m), Some(Event::Print { ip: 5, flags: TRACE_FLAG_IRQS_OFF, text: "hello".into() }));
        let gone = Record { extra: 31, depth: 0, ..m };
        assert_eq!(Event::from_record(&rec, &gone), Some(Event::Print { ip: 5, flags: 0, text: "<marker overwritten>".into() }));
    }

    #[test]
    fn print_event_encoding() {
        let format = &ftrace_formats()[3];
        assert!(format.starts_with("name: print\nID: 5\nformat:\n"), "{format}");
        assert!(format.contains("\n\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:0;\n"));
        assert!(format.ends_with("\nprint fmt: \"%ps: %s\", (void *)REC->ip, REC->buf\n"), "{format}");
        // ip, then the text with Linux's newline and NUL, padded to 4 bytes.
        let p = Event::Print { ip: 0x9000_0000_0020_4000, flags: TRACE_FLAG_HARDIRQ, text: "hi".into() }.encode(1);
        assert_eq!(p.len(), 20);
        assert_eq!(&p[..8], &[5, 0, TRACE_FLAG_HARDIRQ, 0, 1, 0, 0, 0]);
        assert_eq!(u64_at(&p, 8), 0x9000_0000_0020_4000);
        assert_eq!(&p[16..], b"hi\n\0");
        let p = Event::Print { ip: 1, flags: 0, text: "abc".into() }.encode(1);
        assert_eq!(&p[16..], b"abc\n\0\0\0\0");
        let p = Event::Print { ip: 1, flags: 0, text: String::new() }.encode(1);
        assert_eq!(&p[16..], b"\n\0\0\0");
        // Text beyond MAX_PRINT_TEXT is cut on a character boundary.
        let long: String = std::iter::repeat_n('é', MAX_PRINT_TEXT).collect();
        let p = Event::Print { ip: 1, flags: 0, text: long }.encode(1);
        assert_eq!(p.len(), 16 + MAX_PRINT_TEXT + 4);
        assert_eq!(&p[16 + MAX_PRINT_TEXT..], b"\n\0\0\0");
    }

    #[test]
    fn long_events_carry_their_length() {
        let mut w = PageWriter::new(0);
        w.push(100, &[1; 24]);
        // 116 bytes no longer fit type_len (at most 28 words): type_len 0, then length + 4.
        w.push(150, &[2; 116]);
        w.push(160, &[3; 112]);
        let p = w.finish();
        assert_eq!(header(&p, 16), (6, 0));
        assert_eq!(header(&p, 44), (0, 50));
        assert_eq!(u32::from_le_bytes(p[48..52].try_into().unwrap()), 120);
        assert_eq!(&p[52..168], &[2; 116]);
        assert_eq!(header(&p, 168), (28, 10));
        assert_eq!(u64_at(&p, 8), 28 + 124 + 116);
        // A page holds what fits; the longest marker event still fits an empty one.
        let mut w = PageWriter::new(0);
        let big = Event::Print { ip: 1, flags: 0, text: "x".repeat(MAX_PRINT_TEXT) }.encode(1);
        w.push(1, &big);
        w.push(2, &big);
        let p = w.finish();
        assert_eq!(p.len(), 2 * PAGE_SIZE);
        assert_eq!(u64_at(&p, 8), 8 + big.len() as u64);
        assert_eq!(u64_at(&p, PAGE_SIZE), 2);
    }

    #[test]
    fn page_layout_and_deltas() {
        let mut w = PageWriter::new(0);
        w.push(1_000, &[0xAA; 24]);
        w.push(1_250, &[0xBB; 24]);
        w.push(1_250, &[0xCC; 48]);
        let p = w.finish();
        assert_eq!(p.len(), PAGE_SIZE);
        assert_eq!(u64_at(&p, 0), 1_000);
        assert_eq!(u64_at(&p, 8), (28 + 28 + 52) as u64);
        assert_eq!(header(&p, 16), (6, 0));
        assert_eq!(&p[20..44], &[0xAA; 24]);
        assert_eq!(header(&p, 44), (6, 250));
        assert_eq!(header(&p, 72), (12, 0));
        assert!(p[16 + 108..].iter().all(|&b| b == 0));
    }

    #[test]
    fn time_extend_event() {
        let mut w = PageWriter::new(0);
        let big = (5u64 << TS_BITS) + 123;
        w.push(10, &[1; 24]);
        w.push(10 + big, &[2; 24]);
        w.push(10 + big + MAX_DELTA, &[3; 24]);
        let p = w.finish();
        assert_eq!(header(&p, 16), (6, 0));
        assert_eq!(header(&p, 44), (TYPE_TIME_EXTEND, 123));
        assert_eq!(u32::from_le_bytes(p[48..52].try_into().unwrap()), 5);
        assert_eq!(header(&p, 52), (6, 0));
        // Exactly the largest delta still fits the header.
        assert_eq!(header(&p, 80), (6, MAX_DELTA));
        assert_eq!(u64_at(&p, 8), 28 * 3 + 8);
    }

    #[test]
    fn pages_fill_and_lost_events() {
        let mut w = PageWriter::new(17);
        // 28-byte events: the first page holds (4080 - 8) / 28 = 145 with room for the count.
        for i in 0..300u64 {
            w.push(i * 10, &[i as u8; 24]);
        }
        let p = w.finish();
        assert_eq!(p.len(), 3 * PAGE_SIZE);
        let c0 = u64_at(&p, 8);
        assert_eq!(c0 & !(MISSED_EVENTS | MISSED_STORED), 145 * 28);
        assert_eq!(c0 & (MISSED_EVENTS | MISSED_STORED), MISSED_EVENTS | MISSED_STORED);
        assert_eq!(u64_at(&p, 16 + 145 * 28), 17);
        // Second page: starts at event 145 with its own timestamp, no flags.
        assert_eq!(u64_at(&p, PAGE_SIZE), 1450);
        assert_eq!(u64_at(&p, PAGE_SIZE + 8), 145 * 28);
        assert_eq!(header(&p, PAGE_SIZE + 16), (6, 0));
        assert_eq!(u64_at(&p, 2 * PAGE_SIZE + 8), 10 * 28);
    }

    #[test]
    fn lost_events_are_noted_where_they_happened() {
        let mut w = PageWriter::new(0);
        for i in 0..10u64 {
            w.push(i, &[1; 24]);
        }
        w.note_lost(5);
        w.note_lost(0);
        for i in 10..20u64 {
            w.push(i, &[2; 24]);
        }
        w.note_lost(3);
        let p = w.finish();
        assert_eq!(p.len(), 3 * PAGE_SIZE);
        // The events before the loss, without a flag; then a page that starts with the loss.
        assert_eq!(u64_at(&p, 8), 10 * 28);
        assert_eq!(u64_at(&p, PAGE_SIZE), 10);
        assert_eq!(u64_at(&p, PAGE_SIZE + 8), 10 * 28 | MISSED_EVENTS | MISSED_STORED);
        assert_eq!(u64_at(&p, PAGE_SIZE + 16 + 10 * 28), 5);
        // Lost after the last event: a page of its own with no events and the count.
        assert_eq!(u64_at(&p, 2 * PAGE_SIZE + 8), MISSED_EVENTS | MISSED_STORED);
        assert_eq!(u64_at(&p, 2 * PAGE_SIZE + 16), 3);
    }

    #[test]
    fn a_streamed_file_is_the_file_written_at_once() {
        let syms = vec![crate::symtab::Symbol { addr: 0x9000_0000_0020_0000, size: 8, name: "f".into() }];
        let mut rec = Recording { tracer: "function".into(), counter_hz: 100_000_000, symtab: crate::symtab::encode(&syms), ..Default::default() };
        rec.cpus = vec![Default::default(); 3];
        // CPU 0: 400 events (3 pages), CPU 1: none, CPU 2: 150 after 7 lost.
        for (cpu, n) in [(0usize, 400u64), (2, 150)] {
            for i in 0..n {
                rec.cpus[cpu].events.push(Record { ts: 100 + i * 3, ip: 0x9000_0000_0020_0000, parent: i, kind: wire::KIND_FUNC, cpu: cpu as u8, depth: 0, extra: 0 });
            }
        }
        rec.cpus[2].lost = 7;
        let at_once = write(&rec).unwrap();
        let path = std::env::temp_dir().join(format!("ltrace-streamfile-{}.dat", std::process::id()));
        let mut f = StreamFile::create(&path, &Recording { cpus: vec![Default::default(); 3], ..rec.clone() }).unwrap();
        f.writers[2].note_lost(7);
        let mut k = [0usize; 3];
        // Interleaved as a poll loop takes them, storing pages as they fill.
        while k[0] < 400 || k[2] < 150 {
            for cpu in [0, 2] {
                for _ in 0..37 {
                    if let Some(r) = rec.cpus[cpu].events.get(k[cpu]) {
                        f.writers[cpu].push(rec.ns(r.ts), &Event::from_record(&rec, r).unwrap().encode(formats::task::pid(cpu as u32)));
                        k[cpu] += 1;
                    }
                }
                f.store(cpu).unwrap();
            }
        }
        let size = f.finish().unwrap();
        let streamed = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(size as usize, streamed.len());
        assert!(streamed == at_once, "the streamed file differs from the one written at once");
    }

    #[test]
    fn kallsyms_lines() {
        let syms = vec![
            crate::symtab::Symbol { addr: 0x9000_0000_0020_0000, size: 8, name: "loongtrace_kernel::boot::main".into() },
            crate::symtab::Symbol { addr: 0x9000_0000_0020_0100, size: 8, name: "<loongtrace_kernel::A as core::fmt::Write>::write_str".into() },
            crate::symtab::Symbol { addr: 0x9000_0000_0020_0200, size: 8, name: "arch::uart::put_byte".into() },
        ];
        let table = SymbolTable::parse(&crate::symtab::encode(&syms)).unwrap();
        assert_eq!(
            kallsyms_text(&table),
            "9000000000200000 T boot::main\n\
             9000000000200100 T <loongtrace_kernel::A_as_core::fmt::Write>::write_str\n\
             9000000000200200 T arch::uart::put_byte\n"
        );
    }
}
