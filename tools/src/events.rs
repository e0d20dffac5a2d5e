//! Trace events in a recording: the `format` texts the kernel sends (Linux's
//! `events/<system>/<event>/format`), read back to decode a record's fields by name — what the
//! Chrome JSON shows as an instant's args, and what trace.dat carries for trace-cmd.

use formats::wire::{self, Record};
use std::collections::BTreeMap;

/// One event's format, as the kernel sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    pub system: String,
    pub name: String,
    pub id: u16,
    /// The `format` file's text (`name:`, `ID:`, `format:` and the fields, `print fmt:`).
    pub text: String,
    pub fields: Vec<Field>,
}

/// One field of an event after the common ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C type as written (`u32`, `unsigned long`, `__data_loc char[]`, `u8[4]`...).
    pub ty: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

/// A decoded field value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Unsigned(u64),
    Signed(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl EventFormat {
    /// Parses a `Format` frame's payload: the system, a newline, the format text.
    pub fn parse(payload: &str) -> Result<EventFormat, String> {
        let (system, text) = payload.split_once('\n').ok_or("a format frame without its system line")?;
        let mut name = None;
        let mut id = None;
        let mut fields = Vec::new();
        let mut common = true;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("name: ") {
                name = Some(n.to_string());
            } else if let Some(i) = line.strip_prefix("ID: ") {
                id = Some(i.trim().parse::<u16>().map_err(|_| format!("bad ID line '{line}'"))?);
            } else if line.is_empty() && name.is_some() && id.is_some() {
                // The blank line after the common fields.
                common = false;
            } else if let Some(f) = line.trim_start().strip_prefix("field:") {
                if common {
                    continue;
                }
                fields.push(parse_field(f).ok_or_else(|| format!("bad field line '{line}'"))?);
            }
        }
        Ok(EventFormat {
            system: system.to_string(),
            name: name.ok_or("a format without its name")?,
            id: id.ok_or("a format without its ID")?,
            text: text.to_string(),
            fields,
        })
    }

    /// The fields of `record` (the event's bytes, common fields included), in order.
    pub fn decode(&self, record: &[u8]) -> Vec<(String, Value)> {
        self.fields.iter().map(|f| (f.name.clone(), f.value(record))).collect()
    }
}

/// `TYPE NAME;\toffset:N;\tsize:N;\tsigned:N;` (after `field:`).
fn parse_field(f: &str) -> Option<Field> {
    let mut parts = f.split(';').map(str::trim);
    let decl = parts.next()?;
    let (mut ty, mut name) = decl.rsplit_once(' ')?;
    // `u8 name[4]`: the brackets belong to the type.
    let arr;
    if let Some(i) = name.find('[') {
        arr = format!("{ty}{}", &name[i..]);
        ty = &arr;
        name = &name[..i];
    }
    let num = |key: &str, p: Option<&str>| p?.strip_prefix(key)?.parse::<usize>().ok();
    let offset = num("offset:", parts.next())?;
    let size = num("size:", parts.next())?;
    let signed = num("signed:", parts.next())? != 0;
    Some(Field { name: name.to_string(), ty: ty.to_string(), offset, size, signed })
}

impl Field {
    fn value(&self, b: &[u8]) -> Value {
        let bytes = b.get(self.offset..self.offset + self.size).unwrap_or(&[]);
        if self.ty.starts_with("__data_loc") {
            let loc = u32::from_le_bytes(bytes.get(..4).and_then(|x| x.try_into().ok()).unwrap_or([0; 4]));
            let (len, off) = ((loc >> 16) as usize, (loc & 0xffff) as usize);
            if len == 0 {
                return Value::Str("(fault)".into());
            }
            let s = b.get(off..off + len).unwrap_or(&[]);
            let s = s.split(|&c| c == 0).next().unwrap_or(&[]);
            return Value::Str(String::from_utf8_lossy(s).into_owned());
        }
        if self.ty.contains('[') || !matches!(self.size, 1 | 2 | 4 | 8) {
            return Value::Bytes(bytes.to_vec());
        }
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        let v = u64::from_le_bytes(w);
        if self.signed {
            let shift = 64 - 8 * self.size as u32;
            Value::Signed(((v << shift) as i64) >> shift)
        } else {
            Value::Unsigned(v)
        }
    }
}

/// Every trace event of `events` (one CPU's records): (index of its first record, id, bytes).
pub fn records(events: &[Record]) -> Vec<(usize, u16, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, r) in events.iter().enumerate() {
        if r.kind == wire::KIND_EVENT {
            if let Some(b) = wire::event_bytes(&events[i..]) {
                out.push((i, r.parent as u16, b));
            }
        }
    }
    out
}

/// Formats by id.
pub fn by_id(formats: &[EventFormat]) -> BTreeMap<u16, &EventFormat> {
    formats.iter().map(|f| (f.id, f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "kprobes\nname: myprobe\nID: 1000\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:s8 n;\toffset:16;\tsize:1;\tsigned:1;\n\tfield:__data_loc char[] c;\toffset:17;\tsize:4;\tsigned:1;\n\nprint fmt: \"(%lx) n=%d c=\\\"%s\\\"\", REC->__probe_ip, REC->n, __get_str(c)\n";

    #[test]
    fn a_format_parses_and_decodes_a_record() {
        let f = EventFormat::parse(FORMAT).unwrap();
        assert_eq!((f.system.as_str(), f.name.as_str(), f.id), ("kprobes", "myprobe", 1000));
        assert_eq!(f.fields.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["__probe_ip", "n", "c"]);
        let mut rec = vec![0u8; 21];
        rec[..2].copy_from_slice(&1000u16.to_le_bytes());
        rec[8..16].copy_from_slice(&0x9000_0000_0020_0000u64.to_le_bytes());
        rec[16] = 0xff;
        rec.extend_from_slice(b"hi\0");
        rec[17..21].copy_from_slice(&((3u32 << 16) | 21).to_le_bytes());
        let v = f.decode(&rec);
        assert_eq!(v[0].1, Value::Unsigned(0x9000_0000_0020_0000));
        assert_eq!(v[1].1, Value::Signed(-1));
        assert_eq!(v[2].1, Value::Str("hi".into()));
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(EventFormat::parse("no newline").is_err());
        assert!(EventFormat::parse("sys\nID: 3\n").is_err());
        assert!(EventFormat::parse("sys\nname: x\nID: nope\n").is_err());
    }
}
