//! Reads a recording that the kernel sent over the serial line (`formats::wire` frames).
//!
//! The serial stream holds console text, the line [`wire::BEGIN_LINE`], the binary frames, and
//! more text. [`read_capture`] returns the console text before the frames and the decoded
//! [`Recording`]; a stream that ends early, a checksum that does not match, a frame out of order
//! or metadata that disagrees with the frames is an error, never a partial recording.

use formats::wire::{self, Header, Kind, Record};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Read};

/// Everything one recording holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// `nop` (trace events only), `function` or `function_graph`.
    pub tracer: String,
    /// Stable-counter frequency (timestamps are in its ticks).
    pub counter_hz: u64,
    /// Per CPU, oldest first.
    pub cpus: Vec<CpuTrace>,
    /// The kernel's `LTKSYM01` symbol table.
    pub symtab: Vec<u8>,
    /// `trace_marker` texts by number (the `extra` of [`wire::KIND_MARKER`] records).
    pub markers: BTreeMap<u64, String>,
    /// The formats of the trace events the records name.
    pub formats: Vec<crate::events::EventFormat>,
}

/// One CPU's part of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTrace {
    pub events: Vec<Record>,
    /// Events overwritten before they could be read.
    pub lost: u64,
    /// Events ever written.
    pub written: u64,
}

impl Recording {
    /// Timestamp `ticks` in nanoseconds.
    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.counter_hz.max(1) as u128) as u64
    }

    /// The text of a marker event (as the kernel's trace shows it when the text was not kept).
    pub fn marker_text(&self, r: &Record) -> &str {
        self.markers.get(&r.extra).map_or(wire::MARKER_OVERWRITTEN, String::as_str)
    }

    /// Whether this is a function_graph recording.
    pub fn is_graph(&self) -> bool {
        self.tracer == "function_graph"
    }
}

/// Why a capture could not be read.
#[derive(Debug)]
pub enum CaptureError {
    /// The stream ended without the begin line (the guest never exported): the kernel's
    /// command-line complaints and the last lines.
    NoExport { complaints: Vec<String>, last_lines: Vec<String> },
    /// The stream ended inside the frames.
    Truncated { frames: u32, bytes: u64, expected_bytes: Option<u64> },
    /// A frame's checksum does not match its contents.
    Checksum { seq: u32, kind: &'static str, cpu: u8 },
    /// A frame header is malformed.
    BadHeader { after_seq: Option<u32>, error: wire::WireError },
    /// Frames skipped or repeated.
    Sequence { expected: u32, got: u32 },
    /// Metadata missing, malformed, or not matching the frames.
    Inconsistent(String),
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NoExport { complaints, last_lines } => {
                if let Some(why) = last_lines.iter().find_map(|l| l.strip_prefix("record: ")) {
                    return write!(f, "the kernel did not record: {why}");
                }
                if !complaints.is_empty() {
                    return write!(f, "the kernel refused its command line: {}", complaints.join("; "));
                }
                write!(f, "the guest never started sending the recording ('{}' not seen)", wire::BEGIN_LINE)?;
                if !last_lines.is_empty() {
                    write!(f, "; its last output:\n  {}", last_lines.join("\n  "))?;
                }
                Ok(())
            }
            CaptureError::Truncated { frames, bytes, expected_bytes } => {
                write!(f, "the transfer stopped after {frames} complete frames ({bytes} bytes")?;
                if let Some(e) = expected_bytes {
                    write!(f, " of {e}")?;
                }
                write!(f, "): the guest died or was stopped mid-transfer")
            }
            CaptureError::Checksum { seq, kind, cpu } => write!(
                f,
                "frame {seq} ({kind}, cpu {cpu}) failed its checksum: the transfer was corrupted; nothing written"
            ),
            CaptureError::BadHeader { after_seq, error } => match after_seq {
                Some(s) => write!(f, "malformed frame header after frame {s}: {error}"),
                None => write!(f, "malformed first frame header: {error}"),
            },
            CaptureError::Sequence { expected, got } => {
                write!(f, "frame {got} arrived where frame {expected} was expected (frames lost or repeated)")
            }
            CaptureError::Inconsistent(m) => write!(f, "inconsistent recording: {m}"),
            CaptureError::Io(e) => write!(f, "reading the serial stream failed: {e}"),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// Progress of a transfer, for a progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Frame bytes received so far.
    pub bytes: u64,
    /// Total frame bytes, known once the metadata frame is in.
    pub total: Option<u64>,
}

/// Fills `buf` completely; `Ok(false)` if the stream ended first (after `got` bytes).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Parsed metadata frame.
#[derive(Debug, Default)]
struct Meta {
    tracer: String,
    cpus: usize,
    counter_hz: u64,
    frames: u32,
    bytes_after_meta: u64,
    symtab_bytes: usize,
    markers: usize,
    per_cpu: Vec<(usize, u64, u64)>,
}

fn parse_meta(text: &str) -> Result<Meta, CaptureError> {
    let bad = |m: String| CaptureError::Inconsistent(m);
    let get = |key: &str| -> Result<&str, CaptureError> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .ok_or_else(|| bad(format!("metadata lacks '{key}'")))
    };
    let num = |key: &str| -> Result<u64, CaptureError> {
        let v = get(key)?;
        v.parse().map_err(|_| bad(format!("metadata {key}={v} is not a number")))
    };
    // Version 1 had no `Markers` frames.
    let version = get("version")?;
    if !matches!(version, "1" | "2") {
        return Err(bad(format!("unsupported export version {version}")));
    }
    let mut m = Meta {
        tracer: get("tracer")?.to_string(),
        cpus: num("cpus")? as usize,
        counter_hz: num("counter_hz")?,
        frames: num("frames")? as u32,
        bytes_after_meta: num("bytes_after_meta")?,
        symtab_bytes: num("symtab_bytes")? as usize,
        markers: if version == "1" { 0 } else { num("markers")? as usize },
        per_cpu: Vec::new(),
    };
    if m.cpus == 0 || m.cpus > 256 || m.counter_hz == 0 {
        return Err(bad(format!("metadata cpus={} counter_hz={}", m.cpus, m.counter_hz)));
    }
    for cpu in 0..m.cpus {
        let v = get(&format!("cpu{cpu}"))?;
        let field = |name: &str| -> Result<u64, CaptureError> {
            v.split(' ')
                .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad(format!("metadata cpu{cpu}={v} lacks {name}")))
        };
        m.per_cpu.push((field("events")? as usize, field("lost")?, field("written")?));
    }
    Ok(m)
}

/// Reads console text up to the begin line, then the frames. Returns the console lines before
/// the frames and the recording. `progress` is called after every frame.
pub fn read_capture(
    r: &mut impl BufRead,
    mut progress: impl FnMut(Progress),
) -> Result<(Vec<String>, Recording), CaptureError> {
    let mut console = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            let complaints = console.iter().filter_map(|l: &String| l.strip_prefix(crate::ktap::CMDLINE_ERROR_MARKER).map(|c| c.trim().to_string())).collect();
            let n = console.len().saturating_sub(5);
            return Err(CaptureError::NoExport { complaints, last_lines: console.split_off(n) });
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text == wire::BEGIN_LINE {
            break;
        }
        console.push(text.to_string());
    }

    let mut rec = Recording::default();
    let mut meta: Option<Meta> = None;
    let mut seq = 0u32;
    let mut bytes = 0u64;
    // The metadata counts the bytes after its own frame.
    let mut meta_len = 0u64;
    let mut payload = vec![0u8; wire::MAX_PAYLOAD];
    loop {
        let expected_bytes = meta.as_ref().map(|m| m.bytes_after_meta + meta_len);
        let truncated = |seq, bytes| CaptureError::Truncated { frames: seq, bytes, expected_bytes };
        let mut hb = [0u8; wire::HEADER_LEN];
        if !fill(r, &mut hb)? {
            return Err(truncated(seq, bytes));
        }
        let h = Header::decode(&hb).map_err(|error| CaptureError::BadHeader { after_seq: seq.checked_sub(1), error })?;
        let body = &mut payload[..h.len as usize];
        let mut cb = [0u8; wire::CRC_LEN];
        if !fill(r, body)? || !fill(r, &mut cb)? {
            return Err(truncated(seq, bytes));
        }
        if u32::from_le_bytes(cb) != wire::frame_crc(&hb, body) {
            return Err(CaptureError::Checksum { seq: h.seq, kind: h.kind.name(), cpu: h.cpu });
        }
        if h.seq != seq {
            return Err(CaptureError::Sequence { expected: seq, got: h.seq });
        }
        bytes += (wire::HEADER_LEN + body.len() + wire::CRC_LEN) as u64;
        seq += 1;
        match (h.kind, &meta) {
            (Kind::Meta, None) => {
                let text = std::str::from_utf8(body).map_err(|_| CaptureError::Inconsistent("metadata is not UTF-8".into()))?;
                let m = parse_meta(text)?;
                rec.tracer = m.tracer.clone();
                rec.counter_hz = m.counter_hz;
                rec.cpus = m.per_cpu.iter().map(|&(n, lost, written)| CpuTrace { events: Vec::with_capacity(n), lost, written }).collect();
                rec.symtab.reserve(m.symtab_bytes);
                meta_len = bytes;
                meta = Some(m);
            }
            (_, None) | (Kind::Meta, Some(_)) => {
                return Err(CaptureError::Inconsistent(format!("frame {} is {}; the metadata frame must come first, once", h.seq, h.kind.name())));
            }
            (Kind::Symtab, Some(_)) => rec.symtab.extend_from_slice(body),
            (Kind::Events, Some(_)) => {
                let cpu = rec.cpus.get_mut(h.cpu as usize).ok_or_else(|| {
                    CaptureError::Inconsistent(format!("frame {} holds events of cpu {} beyond the recorded CPUs", h.seq, h.cpu))
                })?;
                if !body.len().is_multiple_of(wire::RECORD_LEN) {
                    return Err(CaptureError::Inconsistent(format!("frame {} holds a partial record", h.seq)));
                }
                cpu.events.extend(body.chunks(wire::RECORD_LEN).filter_map(Record::decode));
            }
            (Kind::Markers, Some(_)) => {
                let mut repeated = None;
                wire::decode_markers(body, |id, text| {
                    if rec.markers.insert(id, text.to_string()).is_some() {
                        repeated = Some(id);
                    }
                })
                .map_err(|e| CaptureError::Inconsistent(format!("frame {}: {e}", h.seq)))?;
                if let Some(id) = repeated {
                    return Err(CaptureError::Inconsistent(format!("frame {} repeats marker {id}", h.seq)));
                }
            }
            (Kind::Format, Some(_)) => {
                let text = std::str::from_utf8(body).map_err(|_| CaptureError::Inconsistent(format!("frame {}: a format that is not UTF-8", h.seq)))?;
                let f = crate::events::EventFormat::parse(text).map_err(|e| CaptureError::Inconsistent(format!("frame {}: {e}", h.seq)))?;
                rec.formats.push(f);
            }
            (Kind::End, Some(m)) => {
                let announced = body.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if announced != Some(h.seq) || seq != m.frames {
                    return Err(CaptureError::Inconsistent(format!(
                        "end frame says {announced:?} frames before it, metadata said {}, received {}",
                        m.frames,
                        h.seq
                    )));
                }
                progress(Progress { bytes, total: expected_bytes });
                check_counts(&rec, m)?;
                return Ok((console, rec));
            }
        }
        progress(Progress { bytes, total: meta.as_ref().map(|m| m.bytes_after_meta + meta_len) });
    }
}

fn check_counts(rec: &Recording, m: &Meta) -> Result<(), CaptureError> {
    if rec.symtab.len() != m.symtab_bytes {
        return Err(CaptureError::Inconsistent(format!(
            "received {} symbol-table bytes, metadata announced {}",
            rec.symtab.len(),
            m.symtab_bytes
        )));
    }
    if rec.markers.len() != m.markers {
        return Err(CaptureError::Inconsistent(format!(
            "received {} marker texts, metadata announced {}",
            rec.markers.len(),
            m.markers
        )));
    }
    for (cpu, (c, &(n, _, _))) in rec.cpus.iter().zip(&m.per_cpu).enumerate() {
        if c.events.len() != n {
            return Err(CaptureError::Inconsistent(format!("cpu{cpu}: received {} events, metadata announced {n}", c.events.len())));
        }
        if let Some(e) = c.events.iter().find(|e| e.cpu as usize != cpu) {
            return Err(CaptureError::Inconsistent(format!("cpu{cpu}'s frames hold an event of cpu {}", e.cpu)));
        }
    }
    Ok(())
}

/// The kernel's own trace text in the console output before the frames: from the last
/// `# tracer:` line on (empty if there is none).
pub fn kernel_trace_text(console: &[String]) -> String {
    let start = console.iter().rposition(|l| l.starts_with("# tracer:")).unwrap_or(console.len());
    let mut s = console[start..].join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::wire::{Kind, write_frame};

    fn rec(kind: u8, ts: u64, cpu: u8) -> Record {
        Record { ts, ip: 0x9000_0000_0020_0000 + ts, parent: 7, kind, cpu, depth: 1, extra: 3 }
    }

    fn marker(ts: u64, id: u64) -> Record {
        Record { ts, ip: 0x9000_0000_0020_0040, parent: 0, kind: wire::KIND_MARKER, cpu: 0, depth: 0, extra: id }
    }

    /// A stream as the kernel sends it: console text, begin line, frames, end line.
    fn stream() -> (Vec<u8>, usize) {
        stream_with("version=2", &[(5, "hello marker"), (6, "second")])
    }

    /// The stream with metadata version line `version` and these marker texts (none: no
    /// `Markers` frame and no `markers=` line).
    fn stream_with(version: &str, markers: &[(u64, &str)]) -> (Vec<u8>, usize) {
        let events = [vec![rec(1, 10, 0), marker(12, 5), rec(2, 20, 0)], vec![rec(0, 15, 1)]];
        let symtab = formats::symtab::encode([(0x9000_0000_0020_0000, 16, "f")]);
        let mut texts = Vec::new();
        for (id, t) in markers {
            wire::encode_marker(*id, t, &mut texts);
        }
        let mut frames = Vec::new();
        let mut seq = 0;
        let mut put = |kind, cpu, payload: &[u8], frames: &mut Vec<u8>| {
            write_frame(kind, cpu, seq, payload, |b| frames.extend_from_slice(b));
            seq += 1;
        };
        let body: Vec<Vec<u8>> = events.iter().map(|e| e.iter().flat_map(|r| r.encode()).collect()).collect();
        let mut sizes = vec![symtab.len(), body[0].len(), body[1].len(), 4];
        let mut n_frames = 5u32;
        let mut marker_line = String::new();
        if !markers.is_empty() {
            sizes.push(texts.len());
            n_frames += 1;
            marker_line = format!("markers={}\n", markers.len());
        }
        let rest = sizes.iter().map(|n| (n + 20) as u64).sum::<u64>();
        let meta = format!(
            "{version}\ntracer=function_graph\ncpus=2\ncounter_hz=100000000\nframes={n_frames}\nbytes_after_meta={rest}\nsymtab_bytes={}\n{marker_line}cpu0=events:3 lost:4 written:7\ncpu1=events:1 lost:0 written:1\n",
            symtab.len()
        );
        put(Kind::Meta, 0, meta.as_bytes(), &mut frames);
        put(Kind::Symtab, 0, &symtab, &mut frames);
        put(Kind::Events, 0, &body[0], &mut frames);
        put(Kind::Events, 1, &body[1], &mut frames);
        if !markers.is_empty() {
            put(Kind::Markers, 0, &texts, &mut frames);
        }
        put(Kind::End, 0, &(n_frames - 1).to_le_bytes(), &mut frames);
        let mut s = b"boot log\r\n# tracer: function_graph\r\nline\r\nltrace-export: begin\r\n".to_vec();
        let start = s.len();
        s.extend_from_slice(&frames);
        s.extend_from_slice(b"\r\nltrace-export: end\r\n");
        (s, start)
    }

    fn read(bytes: &[u8]) -> Result<(Vec<String>, Recording), CaptureError> {
        read_capture(&mut &bytes[..], |_| {})
    }

    #[test]
    fn decodes_a_whole_stream_with_progress() {
        let (s, start) = stream();
        let mut seen = Vec::new();
        let (console, r) = read_capture(&mut &s[..], |p| seen.push(p)).unwrap();
        assert_eq!(console, ["boot log", "# tracer: function_graph", "line"]);
        assert_eq!(kernel_trace_text(&console), "# tracer: function_graph\nline\n");
        assert_eq!(r.tracer, "function_graph");
        assert_eq!(r.counter_hz, 100_000_000);
        assert_eq!(r.cpus[0].events, [rec(1, 10, 0), marker(12, 5), rec(2, 20, 0)]);
        assert_eq!((r.cpus[0].lost, r.cpus[0].written), (4, 7));
        assert_eq!(r.marker_text(&r.cpus[0].events[1]), "hello marker");
        assert_eq!(r.marker_text(&marker(1, 99)), "<marker overwritten>");
        assert_eq!(r.markers.len(), 2);
        assert_eq!(r.cpus[1].events, [rec(0, 15, 1)]);
        assert_eq!(formats::symtab::SymbolTable::parse(&r.symtab).unwrap().len(), 1);
        let total = (s.len() - start - b"\r\nltrace-export: end\r\n".len()) as u64;
        assert_eq!(seen.len(), 6);
        assert_eq!(seen.last(), Some(&Progress { bytes: total, total: Some(total) }));
        assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes));
        assert_eq!(r.ns(15), 150);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let (s, start) = stream();
        let end = s.len() - b"\r\nltrace-export: end\r\n".len();
        for i in start..end {
            let mut bad = s.clone();
            bad[i] ^= 0x04;
            match read(&bad) {
                Err(CaptureError::Checksum { .. } | CaptureError::BadHeader { .. } | CaptureError::Truncated { .. }) => {}
                Err(e) => panic!("byte {i}: unexpected error {e}"),
                Ok(_) => panic!("byte {i} flipped and the stream still decoded"),
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (s, start) = stream();
        let end = s.len() - b"\r\nltrace-export: end\r\n".len();
        // The begin line counts once its text is complete, with or without its "\r\n".
        let begin_seen = start - 2;
        for cut in 0..end {
            match read(&s[..cut]) {
                Err(CaptureError::NoExport { .. }) if cut < begin_seen => {}
                Err(e @ CaptureError::Truncated { .. }) if cut >= begin_seen => {
                    assert!(e.to_string().contains("died or was stopped mid-transfer"), "{e}");
                }
                other => panic!("cut at {cut}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn marker_frames_are_checked() {
        // Version 1 streams have no markers.
        let (s, _) = stream_with("version=1", &[]);
        let (_, r) = read(&s).unwrap();
        assert!(r.markers.is_empty());
        assert_eq!(r.marker_text(&r.cpus[0].events[1]), "<marker overwritten>");
        // Version 2 must announce them, and the count must agree.
        let (s, _) = stream_with("version=2", &[]);
        assert!(read(&s).unwrap_err().to_string().contains("lacks 'markers'"));
        let (s, _) = stream_with("version=2", &[(5, "a"), (5, "b")]);
        assert!(read(&s).unwrap_err().to_string().contains("repeats marker 5"));
        let (s, _) = stream_with("version=3", &[(5, "a")]);
        assert!(read(&s).unwrap_err().to_string().contains("unsupported export version 3"));
        // A marker that runs past its frame's end (its checksum is right: the kernel sent it so).
        let mut s = b"ltrace-export: begin\n".to_vec();
        let (good, start) = stream();
        let meta_len = {
            let h: [u8; wire::HEADER_LEN] = good[start..start + wire::HEADER_LEN].try_into().unwrap();
            wire::HEADER_LEN + Header::decode(&h).unwrap().len as usize + wire::CRC_LEN
        };
        s.extend_from_slice(&good[start..start + meta_len]);
        let mut bad = Vec::new();
        wire::encode_marker(5, "hello", &mut bad);
        bad.truncate(bad.len() - 1);
        write_frame(Kind::Markers, 0, 1, &bad, |b| s.extend_from_slice(b));
        let err = read(&s).unwrap_err().to_string();
        assert!(err.contains("frame 1: the marker at byte 0 runs past the frame's end"), "{err}");
    }

    #[test]
    fn sequence_and_metadata_are_checked() {
        // A frame repeated: the sequence check catches it.
        let mut s = b"ltrace-export: begin\n".to_vec();
        write_frame(Kind::Meta, 0, 0, b"version=1\n", |b| s.extend_from_slice(b));
        assert!(read(&s).unwrap_err().to_string().contains("lacks 'tracer'"));
        let mut s = b"ltrace-export: begin\n".to_vec();
        write_frame(Kind::Symtab, 0, 1, b"", |b| s.extend_from_slice(b));
        assert!(matches!(read(&s), Err(CaptureError::Sequence { expected: 0, got: 1 })));
        let mut s = b"ltrace-export: begin\n".to_vec();
        write_frame(Kind::Symtab, 0, 0, b"", |b| s.extend_from_slice(b));
        assert!(read(&s).unwrap_err().to_string().contains("metadata frame must come first"));
        let err = read(b"booting\npanic\n").unwrap_err().to_string();
        assert!(err.contains("never started") && err.contains("panic"), "{err}");
        let err = read(b"# loongtrace: command-line error: 'record_ms=x': not a number\n1\n2\n3\n4\n5\n6\n").unwrap_err().to_string();
        assert_eq!(err, "the kernel refused its command line: 'record_ms=x': not a number");
    }
}
