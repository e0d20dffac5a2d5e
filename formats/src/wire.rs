//! The trace-export wire format: checksummed frames that carry a recording from guest to host.
//!
//! After a recording the kernel prints the text line [`BEGIN_LINE`] on the serial console and then
//! sends raw binary frames on the same line (no `\n` → `\r\n` translation), the last one of kind
//! [`Kind::End`]; then it prints [`END_LINE`]. Every frame is
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LTX1` |
//! | 4 | 1 | kind ([`Kind`]) |
//! | 5 | 1 | CPU the payload belongs to (events), else 0 |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | sequence number, 0 for the first frame, +1 per frame |
//! | 12 | 4 | payload length (at most [`MAX_PAYLOAD`]) |
//! | 16 | len | payload |
//! | 16 + len | 4 | CRC-32 (IEEE, as zlib computes it) of the header and the payload |
//!
//! All integers are little-endian. Payloads: `Meta` is UTF-8 `key=value` lines; `Symtab` frames,
//! concatenated, are the kernel's `LTKSYM01` symbol table; `Events` is a whole number of
//! [`RECORD_LEN`]-byte [`Record`]s of one CPU, oldest first; `Markers` is a whole number of
//! `trace_marker` texts ([`encode_marker`]: number, length, UTF-8 text) that the events'
//! [`KIND_MARKER`] records name by number; `End` holds the number of frames before it as a `u32`.

use core::fmt;

/// The console line that announces the binary frames.
pub const BEGIN_LINE: &str = "ltrace-export: begin";
/// The console line printed after the last frame.
pub const END_LINE: &str = "ltrace-export: end";
/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"LTX1";
/// Size of the frame header.
pub const HEADER_LEN: usize = 16;
/// Size of the checksum after the payload.
pub const CRC_LEN: usize = 4;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 4096;
/// Size of one encoded [`Record`].
pub const RECORD_LEN: usize = 40;
/// Records in a full `Events` frame.
pub const RECORDS_PER_FRAME: usize = MAX_PAYLOAD / RECORD_LEN;

/// [`Record::kind`] of a function-tracer event.
pub const KIND_FUNC: u8 = 0;
/// [`Record::kind`] of a function-graph entry.
pub const KIND_GRAPH_ENTRY: u8 = 1;
/// [`Record::kind`] of a function-graph return.
pub const KIND_GRAPH_RETURN: u8 = 2;
/// [`Record::kind`] of a `trace_marker` write: `ip` is the kernel's `tracing_mark_write`,
/// `extra` the marker's number (its text travels in a `Markers` frame), `depth` the context
/// flags ([`FLAG_IRQS_OFF`] etc.).
pub const KIND_MARKER: u8 = 3;
/// [`Record::kind`] of a trace event's first record: `parent` is the event's id, `extra` its
/// record's length in bytes; the record's bytes follow in [`KIND_CONT`] records.
pub const KIND_EVENT: u8 = 6;
/// [`Record::kind`] of a record that carries 32 bytes of the event record before it: `ts`, `ip`,
/// `parent` and `extra`, little-endian, in that order.
pub const KIND_CONT: u8 = 0xff;
/// Payload bytes of one [`KIND_CONT`] record.
pub const CONT_BYTES: usize = 32;

/// The bytes of the trace event whose first record is `events[0]`, from the records after it;
/// `None` if they are missing.
pub fn event_bytes(events: &[Record]) -> Option<alloc::vec::Vec<u8>> {
    let (first, rest) = events.split_first()?;
    let len = first.extra as usize;
    let n = len.div_ceil(CONT_BYTES);
    if first.kind != KIND_EVENT || rest.len() < n || rest[..n].iter().any(|r| r.kind != KIND_CONT) {
        return None;
    }
    let mut b = alloc::vec::Vec::with_capacity(n * CONT_BYTES);
    for r in &rest[..n] {
        for w in [r.ts, r.ip, r.parent, r.extra] {
            b.extend_from_slice(&w.to_le_bytes());
        }
    }
    b.truncate(len);
    Some(b)
}

/// Function events: [`Record::depth`] bit set when recorded with interrupts disabled.
pub const FLAG_IRQS_OFF: u16 = 1 << 0;
/// Function events: [`Record::depth`] bit set when recorded in an exception or interrupt handler.
pub const FLAG_IN_TRAP: u16 = 1 << 1;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `key=value` lines describing the recording.
    Meta = 1,
    /// A piece of the symbol table.
    Symtab = 2,
    /// Trace records of one CPU.
    Events = 3,
    /// The last frame.
    End = 4,
    /// `trace_marker` texts.
    Markers = 5,
    /// One trace event's format: its system, a newline, then its `format` file's text.
    Format = 6,
}

impl Kind {
    /// The kind with wire value `b`.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Meta,
            2 => Kind::Symtab,
            3 => Kind::Events,
            4 => Kind::End,
            6 => Kind::Format,
            5 => Kind::Markers,
            _ => return None,
        })
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Meta => "meta",
            Kind::Symtab => "symtab",
            Kind::Events => "events",
            Kind::End => "end",
            Kind::Markers => "markers",
            Kind::Format => "format",
        }
    }
}

/// Why a frame header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The first four bytes are not `LTX1`.
    BadMagic([u8; 4]),
    /// Unknown kind byte.
    BadKind(u8),
    /// Reserved bytes are not zero.
    BadReserved,
    /// Payload length above [`MAX_PAYLOAD`].
    TooLong(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic(m) => write!(f, "bad frame magic {m:02x?} (expected \"LTX1\")"),
            WireError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            WireError::BadReserved => f.write_str("reserved header bytes are not zero"),
            WireError::TooLong(n) => write!(f, "payload length {n} exceeds {MAX_PAYLOAD}"),
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub cpu: u8,
    pub seq: u32,
    pub len: u32,
}

impl Header {
    /// The header's 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = self.kind as u8;
        b[5] = self.cpu;
        b[8..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses and checks a header (the checksum is checked once the payload is in).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let kind = Kind::from_u8(b[4]).ok_or(WireError::BadKind(b[4]))?;
        if b[6] != 0 || b[7] != 0 {
            return Err(WireError::BadReserved);
        }
        let seq = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if len as usize > MAX_PAYLOAD {
            return Err(WireError::TooLong(len));
        }
        Ok(Header { kind, cpu: b[5], seq, len })
    }
}

/// CRC-32 of `bytes` (IEEE 802.3, as zlib computes it; the `crc32fast` crate).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The checksum a frame carries: CRC-32 of its header and payload.
pub fn frame_crc(header: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(header);
    c.update(payload);
    c.finalize()
}

/// Emits one frame (header, payload, checksum) through `out`, which may be called several times.
/// `payload` must not exceed [`MAX_PAYLOAD`] (longer payloads are cut there).
pub fn write_frame(kind: Kind, cpu: u8, seq: u32, payload: &[u8], mut out: impl FnMut(&[u8])) {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let header = Header { kind, cpu, seq, len: payload.len() as u32 }.encode();
    out(&header);
    out(payload);
    out(&frame_crc(&header, payload).to_le_bytes());
}

/// One trace record as it travels: the kernel's ring-buffer entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Timestamp in stable-counter ticks.
    pub ts: u64,
    /// Traced function.
    pub ip: u64,
    /// Function events and graph entries: the call site's return address. Graph returns: the
    /// return value.
    pub parent: u64,
    /// [`KIND_FUNC`], [`KIND_GRAPH_ENTRY`] or [`KIND_GRAPH_RETURN`].
    pub kind: u8,
    /// CPU that recorded it.
    pub cpu: u8,
    /// Graph events: call depth (0 = outermost). Function events: [`FLAG_IRQS_OFF`] etc.
    pub depth: u16,
    /// Graph returns: the call's duration in ticks; else 0.
    pub extra: u64,
}

impl Record {
    /// The 40-byte encoding: `ts`, `ip`, `parent`, `kind | cpu << 8 | depth << 16`, `extra`.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let info = self.kind as u64 | (self.cpu as u64) << 8 | (self.depth as u64) << 16;
        let mut b = [0u8; RECORD_LEN];
        for (i, w) in [self.ts, self.ip, self.parent, info, self.extra].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes [`encode`](Self::encode)'s output (`b` must hold at least [`RECORD_LEN`] bytes).
    pub fn decode(b: &[u8]) -> Option<Record> {
        let w = |i: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(i * 8..i * 8 + 8)?.try_into().ok()?)) };
        let info = w(3)?;
        Some(Record {
            ts: w(0)?,
            ip: w(1)?,
            parent: w(2)?,
            kind: info as u8,
            cpu: (info >> 8) as u8,
            depth: (info >> 16) as u16,
            extra: w(4)?,
        })
    }
}

/// What a trace shows for a marker event whose text was no longer kept.
pub const MARKER_OVERWRITTEN: &str = "<marker overwritten>";

/// Bytes before a marker's text in a `Markers` payload: number (`u64`) and text length (`u32`).
pub const MARKER_HEADER_LEN: usize = 12;
/// Longest marker text one `Markers` frame can carry.
pub const MAX_MARKER_TEXT: usize = MAX_PAYLOAD - MARKER_HEADER_LEN;

/// Appends one marker (its number and text) to a `Markers` payload. A text longer than
/// [`MAX_MARKER_TEXT`] bytes is cut at the last character boundary that fits.
pub fn encode_marker(id: u64, text: &str, out: &mut impl Extend<u8>) {
    let text = fitting_marker(text);
    out.extend(id.to_le_bytes());
    out.extend((text.len() as u32).to_le_bytes());
    out.extend(text.bytes());
}

/// The part of `text` a `Markers` frame carries: at most [`MAX_MARKER_TEXT`] bytes, whole
/// characters.
pub fn fitting_marker(text: &str) -> &str {
    cut_text(text, MAX_MARKER_TEXT)
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut_text(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Bytes [`encode_marker`] appends for `text`.
pub fn marker_len(text: &str) -> usize {
    MARKER_HEADER_LEN + fitting_marker(text).len()
}

/// Why a `Markers` payload was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerError {
    /// The payload ends inside the marker starting at this offset.
    Truncated(usize),
    /// The marker starting at this offset is not UTF-8.
    NotUtf8(usize),
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::Truncated(at) => write!(f, "the marker at byte {at} runs past the frame's end"),
            MarkerError::NotUtf8(at) => write!(f, "the marker at byte {at} is not UTF-8 text"),
        }
    }
}

/// Calls `f(number, text)` for every marker of a `Markers` payload, in order; stops at the first
/// malformed one.
pub fn decode_markers<'a>(mut payload: &'a [u8], mut f: impl FnMut(u64, &'a str)) -> Result<(), MarkerError> {
    let mut at = 0;
    while !payload.is_empty() {
        let head = payload.get(..MARKER_HEADER_LEN).ok_or(MarkerError::Truncated(at))?;
        let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let bytes = payload.get(MARKER_HEADER_LEN..MARKER_HEADER_LEN.saturating_add(len)).ok_or(MarkerError::Truncated(at))?;
        let text = core::str::from_utf8(bytes).map_err(|_| MarkerError::NotUtf8(at))?;
        f(id, text);
        payload = &payload[MARKER_HEADER_LEN + len..];
        at += MARKER_HEADER_LEN + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn kinds_and_flags() {
        let all = [Kind::Meta, Kind::Symtab, Kind::Events, Kind::End, Kind::Markers, Kind::Format];
        for k in all {
            assert_eq!(Kind::from_u8(k as u8), Some(k));
        }
        assert_eq!(Kind::from_u8(0), None);
        assert_eq!(Kind::from_u8(7), None);
        let names: Vec<&str> = all.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["meta", "symtab", "events", "end", "markers", "format"]);
        // The context flags are distinct single bits.
        assert_eq!(FLAG_IRQS_OFF.count_ones(), 1);
        assert_eq!(FLAG_IN_TRAP.count_ones(), 1);
        assert_eq!(FLAG_IRQS_OFF & FLAG_IN_TRAP, 0);
    }

    #[test]
    fn event_bytes_reassemble_a_record() {
        let bytes: Vec<u8> = (0..40u8).collect();
        let word = |i: usize| u64::from_le_bytes(bytes.get(i..i + 8).map_or([0; 8], |b| b.try_into().unwrap()));
        let cont = |at: usize| {
            let w = |i: usize| if at + i + 8 <= bytes.len() { word(at + i) } else { let mut b = [0u8; 8]; for k in 0..8 { if let Some(x) = bytes.get(at + i + k) { b[k] = *x; } } u64::from_le_bytes(b) };
            Record { ts: w(0), ip: w(8), parent: w(16), kind: KIND_CONT, cpu: 0, depth: 0, extra: w(24) }
        };
        let first = Record { ts: 5, ip: 0, parent: 1000, kind: KIND_EVENT, cpu: 1, depth: 0, extra: 40 };
        assert_eq!(event_bytes(&[first, cont(0), cont(32)]).unwrap(), bytes);
        assert_eq!(event_bytes(&[first, cont(0)]), None, "a continuation is missing");
        let not_cont = Record { kind: KIND_FUNC, ..cont(32) };
        assert_eq!(event_bytes(&[first, cont(0), not_cont]), None);
    }

    #[test]
    fn frames_are_filled_to_the_limit() {
        // A full Events frame holds as many records as fit, and a header may announce exactly
        // MAX_PAYLOAD bytes.
        assert!(RECORDS_PER_FRAME * RECORD_LEN <= MAX_PAYLOAD);
        assert!((RECORDS_PER_FRAME + 1) * RECORD_LEN > MAX_PAYLOAD);
        let h = Header { kind: Kind::Events, cpu: 0, seq: 1, len: MAX_PAYLOAD as u32 };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        // The longest marker fills a Markers frame exactly.
        let long = "x".repeat(MAX_PAYLOAD * 2);
        assert_eq!(marker_len(&long), MAX_PAYLOAD);
        let mut payload = Vec::new();
        encode_marker(9, &long, &mut payload);
        assert_eq!(payload.len(), MAX_PAYLOAD);
    }

    #[test]
    fn cut_text_keeps_whole_characters() {
        assert_eq!(cut_text("aé", 2), "a");
        assert_eq!(cut_text("aé", 3), "aé");
        assert_eq!(cut_text("aé", 9), "aé");
        assert_eq!(cut_text("€", 2), "");
    }

    #[test]
    fn error_messages() {
        assert_eq!(WireError::BadKind(9).to_string(), "unknown frame kind 9");
        assert_eq!(WireError::TooLong(5000).to_string(), "payload length 5000 exceeds 4096");
        assert_eq!(WireError::BadReserved.to_string(), "reserved header bytes are not zero");
        assert_eq!(MarkerError::Truncated(12).to_string(), "the marker at byte 12 runs past the frame's end");
        assert_eq!(MarkerError::NotUtf8(0).to_string(), "the marker at byte 0 is not UTF-8 text");
    }

    #[test]
    fn crc_matches_zlib() {
        // Known CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let header = *b"1234567890abcdef";
        assert_eq!(frame_crc(&header, b"xyz"), crc32(b"1234567890abcdefxyz"));
    }

    #[test]
    fn header_round_trip_and_errors() {
        let h = Header { kind: Kind::Events, cpu: 3, seq: 0x0102_0304, len: 4000 };
        let b = h.encode();
        assert_eq!(&b[..4], b"LTX1");
        assert_eq!(Header::decode(&b), Ok(h));
        let mut bad = b;
        bad[0] = b'X';
        assert!(matches!(Header::decode(&bad), Err(WireError::BadMagic(_))));
        let mut bad = b;
        bad[4] = 9;
        assert_eq!(Header::decode(&bad), Err(WireError::BadKind(9)));
        let mut bad = b;
        bad[7] = 1;
        assert_eq!(Header::decode(&bad), Err(WireError::BadReserved));
        let mut bad = b;
        bad[12..16].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(Header::decode(&bad), Err(WireError::TooLong(MAX_PAYLOAD as u32 + 1)));
    }

    #[test]
    fn frame_layout() {
        let mut out = Vec::new();
        write_frame(Kind::Meta, 0, 7, b"cpus=1\n", |b| out.extend_from_slice(b));
        assert_eq!(out.len(), HEADER_LEN + 7 + CRC_LEN);
        let header: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let h = Header::decode(&header).unwrap();
        assert_eq!((h.kind, h.seq, h.len), (Kind::Meta, 7, 7));
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 7], b"cpus=1\n");
        let crc = u32::from_le_bytes(out[HEADER_LEN + 7..].try_into().unwrap());
        assert_eq!(crc, crc32(&out[..HEADER_LEN + 7]));
        // Any flipped bit changes the checksum.
        for i in 0..(HEADER_LEN + 7) * 8 {
            let mut c = out.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert_ne!(crc32(&c[..HEADER_LEN + 7]), crc);
        }
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            ts: 1,
            ip: 0x9000_0000_0020_1234,
            parent: u64::MAX,
            kind: KIND_GRAPH_RETURN,
            cpu: 3,
            depth: 0xBEEF,
            extra: 42,
        };
        let b = r.encode();
        assert_eq!(&b[24..32], &(2u64 | 3 << 8 | 0xBEEF << 16).to_le_bytes());
        assert_eq!(Record::decode(&b), Some(r));
        assert_eq!(Record::decode(&b[..39]), None);
    }

    #[test]
    fn markers_round_trip() {
        let mut p = Vec::new();
        encode_marker(7, "hello tracefs", &mut p);
        encode_marker(u64::MAX - 1, "", &mut p);
        encode_marker(9, "ünïcode", &mut p);
        assert_eq!(p.len(), marker_len("hello tracefs") + marker_len("") + marker_len("ünïcode"));
        assert_eq!(&p[..12], &[7, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0]);
        assert_eq!(&p[12..25], b"hello tracefs");
        let mut got = Vec::new();
        decode_markers(&p, |id, t| got.push((id, t))).unwrap();
        assert_eq!(got, [(7, "hello tracefs"), (u64::MAX - 1, ""), (9, "ünïcode")]);
        // Every cut inside a marker is caught; cuts between markers decode the markers before.
        for cut in 0..p.len() {
            let r = decode_markers(&p[..cut], |_, _| {});
            let boundary = [0, 25, 37].contains(&cut);
            assert_eq!(r.is_ok(), boundary, "cut at {cut}: {r:?}");
        }
        assert_eq!(decode_markers(&p[..20], |_, _| {}), Err(MarkerError::Truncated(0)));
        assert_eq!(decode_markers(&p[..30], |_, _| {}), Err(MarkerError::Truncated(25)));
        // A length that claims more than the payload holds.
        let mut bad = p.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_markers(&bad, |_, _| {}), Err(MarkerError::Truncated(0)));
        let mut bad = p.clone();
        bad[12] = 0xff;
        assert_eq!(decode_markers(&bad, |_, _| {}), Err(MarkerError::NotUtf8(0)));
    }

    #[test]
    fn long_markers_are_cut_to_fit_a_frame() {
        let long: std::string::String = core::iter::repeat_n('é', MAX_MARKER_TEXT).collect();
        let mut p = Vec::new();
        encode_marker(1, &long, &mut p);
        assert!(p.len() <= MAX_PAYLOAD);
        assert_eq!(p.len(), marker_len(&long));
        let mut got = None;
        decode_markers(&p, |_, t| got = Some(t.len())).unwrap();
        // 'é' is two bytes: the cut falls on the last whole character.
        assert_eq!(got, Some(MAX_MARKER_TEXT / 2 * 2));
        assert_eq!(Kind::from_u8(5), Some(Kind::Markers));
    }
}
