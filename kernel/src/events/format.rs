//! The record layout of trace events and Linux's `format` files: where each field of an event
//! sits in the bytes of a record, how the kernel writes a record and reads it back, what
//! `events/<system>/<event>/format` shows (the text trace-cmd and libtraceevent parse), and the
//! `trace` line of a record. Pure code, tested on the host; docs/events-format.md describes it.
//!
//! The reference is Linux v6.18 (`kernel/trace/trace_events.c` `f_show`, `trace_probe.c`
//! `traceprobe_define_arg_fields`, `__set_print_fmt`, the print functions of the fetch types,
//! `trace_probe_tmpl.h` `store_trace_args`, `trace_kprobe.c` `kprobe_event_define_fields`,
//! `print_kprobe_event`, `print_kretprobe_event`), for a 64-bit little-endian kernel:
//!
//! * every record starts with the 8 bytes of the common fields (`common_type` u16 at 0,
//!   `common_flags` u8 at 2, `common_preempt_count` u8 at 3, `common_pid` int at 4);
//! * a kprobe event's own field `__probe_ip` (`unsigned long`) follows at 8, a kretprobe's
//!   `__probe_func` and `__probe_ret_ip` at 8 and 16; then the fetch arguments, **packed** in
//!   their order (Linux adds each argument's size to a running offset and never aligns);
//! * a static tracepoint's fields are laid out as the C compiler lays out Linux's
//!   `TRACE_EVENT` struct: each at the next multiple of its element size;
//! * strings (`string`, `ustring`, `symstr`, `$comm`, `\"...\"`) are 4-byte `__data_loc` slots
//!   holding `(length << 16) | offset`, the offset counted from the record's first byte and the
//!   length including the NUL; the bytes follow the fixed part, in argument order; a string that
//!   could not be read has length 0 and prints `(fault)`.
//!
//! [`EventLayout::from_probe`] and [`EventLayout::tracepoint`] compute the layout;
//! [`EventLayout::format_file`] and [`EventLayout::print_fmt`] give Linux's texts;
//! [`EventLayout::encode`] writes a record from the values the kernel fetched ([`Value`]), and
//! [`EventLayout::writer`] field by field without allocating ([`RecordWriter`]);
//! [`EventLayout::view`] reads one without copying ([`RecordRef`]: what the filter and the
//! `trace` line read) and [`EventLayout::decode`] into an owned [`Record`]. Both implement
//! [`EventRecord`], and the layout implements [`EventFields`], so an [`events::filter`] parsed
//! against the layout runs on a record before it is committed.
//!
//! [`events::filter`]: super::filter

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::filter::{CommonField, EventFields, EventRecord, FieldType};
use super::probe_def::{Bitfield, FetchType, ProbeDef, ProbeKind};

// ---------------------------------------------------------------------------------------------
// Sizes and names Linux fixes.

/// Bytes of the common fields (Linux's `struct trace_entry`).
pub const COMMON_SIZE: u32 = 8;
/// Bytes before a kprobe event's arguments (`struct kprobe_trace_entry_head`: the common
/// fields and `unsigned long ip`).
pub const KPROBE_HEAD_SIZE: u32 = 16;
/// Bytes before a kretprobe event's arguments (`struct kretprobe_trace_entry_head`: the common
/// fields, `unsigned long func` and `unsigned long ret_ip`).
pub const KRETPROBE_HEAD_SIZE: u32 = 24;
/// The kprobe event's field holding the probed address (`FIELD_STRING_IP`).
pub const FIELD_STRING_IP: &str = "__probe_ip";
/// The kretprobe event's field holding the return address (`FIELD_STRING_RETIP`).
pub const FIELD_STRING_RETIP: &str = "__probe_ret_ip";
/// The kretprobe event's field holding the probed function (`FIELD_STRING_FUNC`).
pub const FIELD_STRING_FUNC: &str = "__probe_func";
/// Longest string a probe stores, its NUL included (Linux's `MAX_STRING_SIZE`, `PATH_MAX`):
/// longer ones are cut to 4095 bytes.
pub const MAX_STRING_SIZE: usize = 4096;
/// What a string that could not be read prints as (`FAULT_STRING`).
pub const FAULT_STRING: &str = "(fault)";
/// Largest record [`EventLayout::encode`] writes: a `__data_loc` offset is 16 bits.
pub const MAX_RECORD_SIZE: usize = 0xffff;
/// Alignment of `struct trace_entry` (its `int common_pid`): the least alignment of a static
/// tracepoint's record struct.
const TRACE_ENTRY_ALIGN: u32 = 4;

/// The common fields as `format` lists them: C type, name, offset, size, signed
/// (`trace_define_common_fields`).
pub const COMMON_FIELDS: [(&str, &str, u32, u32, bool); 4] = [
    ("unsigned short", "common_type", 0, 2, false),
    ("unsigned char", "common_flags", 2, 1, false),
    ("unsigned char", "common_preempt_count", 3, 1, false),
    ("int", "common_pid", 4, 4, true),
];

// ---------------------------------------------------------------------------------------------
// Symbols.

/// The function an address is in, as [`Symbolizer::lookup`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolInfo<'a> {
    /// The name as the trace shows it (the kernel drops its crate prefix).
    pub name: &'a str,
    /// The function's first byte.
    pub start: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The loadable module it belongs to, `None` in the kernel image.
    pub module: Option<&'a str>,
}

/// The kernel's symbol table, as the `trace` line needs it (Linux: kallsyms). The kernel
/// implements it over `ksyms`; host tests give a fake one.
pub trait Symbolizer {
    /// The function containing `addr`.
    fn lookup(&self, addr: u64) -> Option<SymbolInfo<'_>>;
}

/// No symbols: every address prints as a number.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSymbols;

impl Symbolizer for NoSymbols {
    fn lookup(&self, _addr: u64) -> Option<SymbolInfo<'_>> {
        None
    }
}

/// `%pS` (Linux's `sprint_symbol`): `name+0xOFF/0xSIZE`, ` [module]` after it for a module's
/// function, or `0x` and the address in hex when no function contains it.
pub fn write_sym_offset(w: &mut dyn Write, addr: u64, syms: &dyn Symbolizer) -> fmt::Result {
    match syms.lookup(addr) {
        Some(s) => {
            write!(w, "{}+{:#x}/{:#x}", s.name, addr.wrapping_sub(s.start), s.size)?;
            match s.module {
                Some(m) => write!(w, " [{m}]"),
                None => Ok(()),
            }
        }
        None => write!(w, "{addr:#x}"),
    }
}

/// Linux's `seq_print_ip_sym` as the kprobe events call it: `0` for a null address, else with
/// `offset` the `%pS` form ([`write_sym_offset`]), without it the bare name (`kallsyms_lookup`,
/// no module) or, for an address in no function, `0x` and at least 8 hex digits.
pub fn write_ip_sym(w: &mut dyn Write, addr: u64, offset: bool, syms: &dyn Symbolizer) -> fmt::Result {
    if addr == 0 {
        return w.write_char('0');
    }
    if offset {
        return write_sym_offset(w, addr, syms);
    }
    match syms.lookup(addr) {
        Some(s) if !s.name.is_empty() => w.write_str(s.name),
        _ => write!(w, "0x{addr:08x}"),
    }
}

/// Bytes as text: valid UTF-8 as it is, each invalid sequence as U+FFFD (Linux writes the raw
/// bytes; a `fmt::Write` takes only text).
fn write_bytes(w: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        w.write_str(chunk.valid())?;
        if !chunk.invalid().is_empty() {
            w.write_char(char::REPLACEMENT_CHARACTER)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The layout.

/// What kind of event a layout describes: what comes before its fields, how its `print fmt`
/// and its `trace` line start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `p:` events: `__probe_ip`, then the arguments; `name: (sym+off/size) args`.
    Kprobe,
    /// `r:` events: `__probe_func`, `__probe_ret_ip`, then the arguments;
    /// `name: (caller+off/size <- func) args`.
    Kretprobe,
    /// A static tracepoint of the kernel (Linux's `TRACE_EVENT`): its declared fields;
    /// `name: field=value ...`.
    Tracepoint,
}

/// One field of an event after the common ones: a probe's own `unsigned long` field, a fetch
/// argument, or a tracepoint's declared field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    pub name: String,
    /// The element type. A probe's own fields (`addr`) are `U64`.
    pub ty: FetchType,
    /// Elements of `TYPE[N]`, 0 for a scalar.
    pub count: u32,
    /// `b<width>@<offset>/<container>`: `ty` is the container.
    pub bitfield: Option<Bitfield>,
    /// One of a kprobe event's own fields (`__probe_ip`, `__probe_func`, `__probe_ret_ip`):
    /// `unsigned long`, printed in the `(...)` part of the line.
    pub addr: bool,
    /// Byte offset in the record (the common fields included).
    pub offset: u32,
    /// Bytes in the fixed part: element size × elements (a string is its 4-byte slot).
    pub size: u32,
}

impl FieldLayout {
    /// Elements: 1 for a scalar.
    pub fn elements(&self) -> u32 {
        self.count.max(1)
    }

    /// Bytes of one element in the fixed part.
    pub fn elem_size(&self) -> u32 {
        self.ty.size()
    }

    /// A `__data_loc` string (or an array of them).
    pub fn is_string(&self) -> bool {
        !self.addr && self.ty.is_string()
    }

    /// `signed:` in the `format` file (strings are signed: Linux declares them so).
    pub fn is_signed(&self) -> bool {
        !self.addr && self.ty.is_signed()
    }

    /// The field's type as Linux defines it (`traceprobe_define_arg_fields`): `unsigned long`,
    /// the type's `fmttype` (`u32`, `s8`, `__data_loc char[]`), `fmttype[N]` for an array.
    pub fn c_type(&self) -> Cow<'static, str> {
        if self.addr {
            Cow::Borrowed("unsigned long")
        } else if self.count != 0 {
            Cow::Owned(format!("{}[{}]", self.ty.fmttype(), self.count))
        } else {
            Cow::Borrowed(self.ty.fmttype())
        }
    }

    /// The `printf` format of one element in the `print fmt` (the fetch type's `fmt`: `%u`,
    /// `%Lu`, `%d`, `%Ld`, `0x%x`, `0x%Lx`, `'%c'`, `%pS`, `\"%s\"`).
    pub fn elem_print_fmt(&self) -> &'static str {
        if self.addr {
            return "%lx";
        }
        elem_print_fmt(self.ty)
    }

    /// How a filter sees the field ([`EventFields`]): a string (the first of an array of
    /// strings, as Linux's filter reads it), or an integer of the field's whole size (Linux
    /// compares an array's first bytes as one number, and nothing for odd sizes).
    pub fn filter_type(&self) -> FieldType {
        if self.is_string() {
            return FieldType::DynString;
        }
        // Sizes above 255 stay above 8 (no comparison), never alias 1, 2, 4 or 8.
        FieldType::Int { size: self.size.min(255) as u8, signed: self.is_signed() }
    }
}

/// The fetch type's `fmt` string (`probe_fetch_types`, as it appears in a `print fmt`).
pub const fn elem_print_fmt(ty: FetchType) -> &'static str {
    match ty {
        FetchType::U8 | FetchType::U16 | FetchType::U32 => "%u",
        FetchType::U64 => "%Lu",
        FetchType::S8 | FetchType::S16 | FetchType::S32 => "%d",
        FetchType::S64 => "%Ld",
        FetchType::X8 | FetchType::X16 | FetchType::X32 => "0x%x",
        FetchType::X64 => "0x%Lx",
        FetchType::Char => "'%c'",
        FetchType::Symbol => "%pS",
        FetchType::String | FetchType::UString | FetchType::SymStr => "\\\"%s\\\"",
    }
}

/// One field of a static tracepoint, as the kernel declares it (the `__field`/`__array`/
/// `__string` of Linux's `TRACE_EVENT`, with a fetch type giving its C type and how it prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpField<'a> {
    pub name: &'a str,
    pub ty: FetchType,
    /// Elements of an array, 0 for a scalar.
    pub count: u32,
}

impl<'a> TpField<'a> {
    /// A scalar field (a string for the string types).
    pub const fn new(name: &'a str, ty: FetchType) -> Self {
        TpField { name, ty, count: 0 }
    }

    /// An array of `count` elements.
    pub const fn array(name: &'a str, ty: FetchType, count: u32) -> Self {
        TpField { name, ty, count }
    }
}

/// Why [`EventLayout::tracepoint`] refused a declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A field name that is not a C identifier.
    BadName(String),
    /// Two fields of that name.
    DuplicateName(String),
    /// A common field's or a probe field's name.
    ReservedName(String),
    /// An array of more than 64 elements (`MAX_ARRAY_LEN`).
    BadCount(String),
    /// The fixed part would not fit 16-bit `__data_loc` offsets.
    TooBig(u32),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::BadName(n) => write!(f, "field name `{n}` is not a C identifier"),
            LayoutError::DuplicateName(n) => write!(f, "two fields are called `{n}`"),
            LayoutError::ReservedName(n) => write!(f, "`{n}` is a reserved field name"),
            LayoutError::BadCount(n) => write!(f, "array `{n}` has more than 64 elements"),
            LayoutError::TooBig(s) => write!(f, "the record's fixed part ({s} bytes) is too big"),
        }
    }
}

/// The layout of one event's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLayout {
    system: String,
    name: String,
    kind: EventKind,
    /// Every field after the common ones, in record order: a probe's own fields first.
    fields: Vec<FieldLayout>,
    /// How many of `fields` are the probe's own (`addr`) fields.
    own: usize,
    /// Where the dynamic data (strings) starts.
    dyn_start: u32,
    /// Bytes of a record without its strings (Linux's `sizeof(*entry) + tp->size` for probes,
    /// the struct's size for tracepoints).
    fixed_len: u32,
}

fn is_c_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

fn align_up(v: u32, a: u32) -> u32 {
    v.div_ceil(a) * a
}

impl EventLayout {
    /// The layout of a kprobe or kretprobe event defined by `def` (Linux's
    /// `kprobe_event_define_fields` / `kretprobe_event_define_fields` and
    /// `traceprobe_define_arg_fields`): the probe's own fields, then the arguments packed in
    /// their order; strings' bytes after them.
    pub fn from_probe(def: &ProbeDef) -> EventLayout {
        let (kind, own): (EventKind, &[&str]) = match def.kind {
            ProbeKind::Kprobe => (EventKind::Kprobe, &[FIELD_STRING_IP]),
            ProbeKind::Kretprobe { .. } => (EventKind::Kretprobe, &[FIELD_STRING_FUNC, FIELD_STRING_RETIP]),
        };
        let mut fields = Vec::with_capacity(own.len() + def.args.len());
        let mut offset = COMMON_SIZE;
        for name in own {
            fields.push(FieldLayout {
                name: String::from(*name),
                ty: FetchType::U64,
                count: 0,
                bitfield: None,
                addr: true,
                offset,
                size: 8,
            });
            offset += 8;
        }
        for a in &def.args {
            let size = a.size();
            fields.push(FieldLayout {
                name: a.name.clone(),
                ty: a.ty,
                count: a.count,
                bitfield: a.bitfield,
                addr: false,
                offset,
                size,
            });
            offset += size;
        }
        EventLayout {
            system: def.group.clone(),
            name: def.event.clone(),
            kind,
            fields,
            own: own.len(),
            dyn_start: offset,
            fixed_len: offset,
        }
    }

    /// The layout of a static tracepoint `system:name` with the declared `fields`, as Linux's
    /// `TRACE_EVENT` struct lays them out: each field at the next multiple of its element size
    /// (a `__data_loc` slot: 4), the strings' bytes right after the last field
    /// (`offsetof(__data)`), the record as long as the struct (rounded up to its alignment)
    /// plus the strings.
    pub fn tracepoint(system: &str, name: &str, fields: &[TpField<'_>]) -> Result<EventLayout, LayoutError> {
        let mut out: Vec<FieldLayout> = Vec::with_capacity(fields.len());
        let mut offset = COMMON_SIZE;
        let mut align = TRACE_ENTRY_ALIGN;
        for f in fields {
            if !is_c_identifier(f.name) {
                return Err(LayoutError::BadName(f.name.into()));
            }
            if COMMON_FIELDS.iter().any(|c| c.1 == f.name) {
                return Err(LayoutError::ReservedName(f.name.into()));
            }
            if out.iter().any(|o| o.name == f.name) {
                return Err(LayoutError::DuplicateName(f.name.into()));
            }
            if f.count > super::probe_def::MAX_ARRAY_LEN {
                return Err(LayoutError::BadCount(f.name.into()));
            }
            let elem = f.ty.size();
            offset = align_up(offset, elem);
            align = align.max(elem);
            let size = elem * f.count.max(1);
            out.push(FieldLayout {
                name: f.name.into(),
                ty: f.ty,
                count: f.count,
                bitfield: None,
                addr: false,
                offset,
                size,
            });
            offset += size;
        }
        let fixed_len = align_up(offset, align);
        if fixed_len as usize > MAX_RECORD_SIZE {
            return Err(LayoutError::TooBig(fixed_len));
        }
        Ok(EventLayout {
            system: system.into(),
            name: name.into(),
            kind: EventKind::Tracepoint,
            fields: out,
            own: 0,
            dyn_start: offset,
            fixed_len,
        })
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// Every field after the common ones, in record order (the index [`EventFields::lookup`]
    /// gives, and the order of [`EventLayout::encode`]'s values).
    pub fn fields(&self) -> &[FieldLayout] {
        &self.fields
    }

    /// The arguments (or a tracepoint's fields): [`fields`](Self::fields) without the probe's
    /// own.
    pub fn args(&self) -> &[FieldLayout] {
        &self.fields[self.own..]
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldLayout> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Bytes of a record whose strings are all empty or faulted: the fixed part.
    pub fn fixed_len(&self) -> u32 {
        self.fixed_len
    }

    /// Where the strings' bytes start.
    pub fn dyn_start(&self) -> u32 {
        self.dyn_start
    }

    /// Whether records carry strings after the fixed part.
    pub fn has_strings(&self) -> bool {
        self.fields.iter().any(FieldLayout::is_string)
    }

    // -----------------------------------------------------------------------------------------
    // Linux's texts.

    /// The `print fmt` of the event, as Linux generates it for probe events (`__set_print_fmt`):
    /// `"(%lx) a=0x%Lx s=\"%s\"", REC->__probe_ip, REC->a, __get_str(s)`, the kretprobe form
    /// `"(%lx <- %lx) ...", REC->__probe_func, REC->__probe_ret_ip, ...`, arrays as
    /// `{%u,%u}` with `REC->a[0], REC->a[1]`. A tracepoint's is the same without the `(...)`
    /// part and its leading blank (`"a=%u s=\"%s\"", REC->a, __get_str(s)`).
    pub fn print_fmt(&self) -> String {
        let mut s = String::from("\"");
        match self.kind {
            EventKind::Kprobe => s.push_str("(%lx)"),
            EventKind::Kretprobe => s.push_str("(%lx <- %lx)"),
            EventKind::Tracepoint => {}
        }
        for (i, f) in self.args().iter().enumerate() {
            if i > 0 || self.kind != EventKind::Tracepoint {
                s.push(' ');
            }
            s.push_str(&f.name);
            s.push('=');
            let fmt = f.elem_print_fmt();
            if f.count == 0 {
                s.push_str(fmt);
            } else {
                s.push('{');
                for j in 0..f.count {
                    if j > 0 {
                        s.push(',');
                    }
                    s.push_str(fmt);
                }
                s.push('}');
            }
        }
        s.push('"');
        for f in &self.fields[..self.own] {
            let _ = write!(s, ", REC->{}", f.name);
        }
        for f in self.args() {
            let (pre, post) = if f.is_string() { ("__get_str(", ")") } else { ("REC->", "") };
            if f.count == 0 {
                let _ = write!(s, ", {pre}{}{post}", f.name);
            } else {
                for j in 0..f.count {
                    let _ = write!(s, ", {pre}{}[{j}]{post}", f.name);
                }
            }
        }
        s
    }

    /// The event's `format` file as Linux's `f_show` prints it, with event id `id`: the name,
    /// the id, the common fields, a blank line, the event's fields, a blank line and the
    /// `print fmt`. An array field shows as `TYPE NAME[N]` (see docs/events-format.md for why
    /// not Linux v6.18's `TYPE NAME[]`).
    pub fn format_file(&self, id: u16) -> String {
        let mut s = String::new();
        let _ = write!(s, "name: {}\nID: {}\nformat:\n", self.name, id);
        for (ty, name, offset, size, signed) in COMMON_FIELDS {
            write_field_line(&mut s, ty, name, offset, size, signed);
        }
        s.push('\n');
        for f in &self.fields {
            write_field_line(&mut s, &f.c_type(), &f.name, f.offset, f.size, f.is_signed());
        }
        let _ = write!(s, "\nprint fmt: {}\n", self.print_fmt());
        s
    }

    // -----------------------------------------------------------------------------------------
    // Records.

    /// The length of the record [`encode`](Self::encode) writes for `values`.
    pub fn encoded_len(&self, values: &[Value<'_>]) -> Result<usize, EncodeError> {
        self.check_values(values)?;
        let mut len = self.fixed_len as usize;
        for v in values {
            match *v {
                Value::Str(s) => len += stored_len(s),
                Value::Strs(ss) => len += ss.iter().map(|s| stored_len(*s)).sum::<usize>(),
                _ => {}
            }
        }
        if len > MAX_RECORD_SIZE {
            return Err(EncodeError::TooBig(len));
        }
        Ok(len)
    }

    /// Writes a record: `header`, then `values` (one per field of [`fields`](Self::fields), in
    /// order, the probe's own fields included) into `out`, which must be exactly
    /// [`encoded_len`](Self::encoded_len) bytes long. Numbers are cut to their field's width
    /// (and a bitfield extracted from its container, as Linux's `fetch_apply_bitfield`);
    /// strings end at their first NUL and are cut to 4095 bytes; `None` is a string that could
    /// not be read. Allocates nothing.
    pub fn encode_to(&self, header: &CommonHeader, values: &[Value<'_>], out: &mut [u8]) -> Result<(), EncodeError> {
        let len = self.encoded_len(values)?;
        if out.len() != len {
            return Err(EncodeError::BufferSize { needed: len, got: out.len() });
        }
        let mut w = self.writer(header, out)?;
        for (i, v) in values.iter().enumerate() {
            match *v {
                Value::Num(n) => w.num(i, 0, n),
                Value::Nums(ns) => {
                    for (j, &n) in ns.iter().enumerate() {
                        w.num(i, j as u32, n);
                    }
                }
                Value::Str(s) => w.string(i, 0, s)?,
                Value::Strs(ss) => {
                    for (j, s) in ss.iter().enumerate() {
                        w.string(i, j as u32, *s)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts writing a record into `buf` field by field, without a [`Value`] list: the fixed
    /// part is zeroed and the common fields written; [`RecordWriter::num`] and
    /// [`RecordWriter::string`] store the values as the kernel fetches them (strings in field
    /// order, for Linux's order of the bytes), [`RecordWriter::record_len`] is the record's length.
    /// `buf` must hold at least the fixed part.
    pub fn writer<'b>(&self, header: &CommonHeader, buf: &'b mut [u8]) -> Result<RecordWriter<'_, 'b>, EncodeError> {
        let fixed = self.fixed_len as usize;
        if buf.len() < fixed {
            return Err(EncodeError::BufferSize { needed: fixed, got: buf.len() });
        }
        buf[..fixed].fill(0);
        header.write(buf);
        Ok(RecordWriter { layout: self, buf, dyn_at: self.dyn_start as usize })
    }

    /// [`encode_to`](Self::encode_to) into `out`, which is cleared first and sized to fit.
    pub fn encode_into(
        &self,
        header: &CommonHeader,
        values: &[Value<'_>],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let len = self.encoded_len(values)?;
        out.clear();
        out.resize(len, 0);
        self.encode_to(header, values, out)
    }

    /// [`encode_to`](Self::encode_to) into a new buffer.
    pub fn encode(&self, header: &CommonHeader, values: &[Value<'_>]) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(header, values, &mut out)?;
        Ok(out)
    }

    fn check_values(&self, values: &[Value<'_>]) -> Result<(), EncodeError> {
        if values.len() != self.fields.len() {
            return Err(EncodeError::ValueCount { expected: self.fields.len(), got: values.len() });
        }
        for (i, (f, v)) in self.fields.iter().zip(values).enumerate() {
            let ok = match (f.count, f.is_string(), v) {
                (0, false, Value::Num(_)) | (0, true, Value::Str(_)) => true,
                (n, false, Value::Nums(ns)) if n != 0 => ns.len() == n as usize,
                (n, true, Value::Strs(ss)) if n != 0 => ss.len() == n as usize,
                _ => false,
            };
            if !ok {
                return Err(EncodeError::WrongValue { field: i });
            }
        }
        Ok(())
    }

    /// A record's bytes, checked and ready to read without copying: every `__data_loc` must
    /// point inside the record. Bytes after the record's data (a ring buffer's padding) are
    /// allowed.
    pub fn view<'a>(&'a self, bytes: &'a [u8]) -> Result<RecordRef<'a>, DecodeError> {
        if bytes.len() < self.fixed_len as usize {
            return Err(DecodeError::Short { need: self.fixed_len as usize, got: bytes.len() });
        }
        for (i, f) in self.fields.iter().enumerate() {
            if !f.is_string() {
                continue;
            }
            for j in 0..f.elements() {
                let loc = get_u32(bytes, (f.offset + 4 * j) as usize);
                let (len, off) = ((loc >> 16) as usize, (loc & 0xffff) as usize);
                if len != 0 && off + len > bytes.len() {
                    return Err(DecodeError::DataLoc { field: i, elem: j, loc });
                }
            }
        }
        Ok(RecordRef { layout: self, bytes, cpu: 0, comm: &[] })
    }

    /// A record read into owned values ([`Record`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Record, DecodeError> {
        self.view(bytes).map(|r| r.to_record())
    }
}

fn write_field_line(s: &mut String, ty: &str, name: &str, offset: u32, size: u32, signed: bool) {
    // `f_show`: an array type `T[N]` shows as `T name[N]`, except a `__data_loc` type.
    let split = if ty.starts_with("__data_loc") { None } else { ty.find('[') };
    let _ = match split {
        Some(i) => write!(s, "\tfield:{} {}{};", &ty[..i], name, &ty[i..]),
        None => write!(s, "\tfield:{ty} {name};"),
    };
    let _ = writeln!(s, "\toffset:{offset};\tsize:{size};\tsigned:{};", u8::from(signed));
}

/// Bytes a string takes after the fixed part: up to its first NUL, at most 4095, plus the NUL;
/// nothing when it faulted.
fn stored_len(s: Option<&[u8]>) -> usize {
    s.map_or(0, |s| string_body(s).len() + 1)
}

fn string_body(s: &[u8]) -> &[u8] {
    let s = match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    };
    &s[..s.len().min(MAX_STRING_SIZE - 1)]
}

fn width_mask(bytes: u32) -> u64 {
    if bytes >= 8 { u64::MAX } else { (1u64 << (8 * bytes)) - 1 }
}

/// Linux's `fetch_apply_bitfield` on a container of `bytes`: shift left, then right, in the
/// container's width (a shift past the width gives 0).
pub fn apply_bitfield(v: u64, bf: Bitfield, bytes: u32) -> u64 {
    let (l, r) = bf.shifts(bytes);
    let mask = width_mask(bytes);
    let v = v.checked_shl(u32::from(l)).unwrap_or(0) & mask;
    v.checked_shr(u32::from(r)).unwrap_or(0) & mask
}

/// Stores the low `bytes` (1, 2, 4 or 8; others byte by byte) of `v` at `at`, little-endian.
/// Fixed-size stores: this is on the path of every event a probe records.
#[inline]
fn put_num(out: &mut [u8], at: usize, bytes: usize, v: u64) {
    match bytes {
        1 => out[at] = v as u8,
        2 => *<&mut [u8; 2]>::try_from(&mut out[at..at + 2]).expect("2 bytes") = (v as u16).to_le_bytes(),
        4 => *<&mut [u8; 4]>::try_from(&mut out[at..at + 4]).expect("4 bytes") = (v as u32).to_le_bytes(),
        8 => *<&mut [u8; 8]>::try_from(&mut out[at..at + 8]).expect("8 bytes") = v.to_le_bytes(),
        _ => {
            for (i, b) in out[at..at + bytes].iter_mut().enumerate() {
                *b = (v >> (8 * i)) as u8;
            }
        }
    }
}

#[inline]
fn get_num(b: &[u8], at: usize, bytes: usize) -> u64 {
    match bytes {
        1 => u64::from(b[at]),
        2 => u64::from(u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))),
        4 => u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))),
        8 => u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")),
        _ => b[at..at + bytes].iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x)),
    }
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    get_num(b, at, 4) as u32
}

/// The `__data_loc` word: `(len << 16) | offset` (`make_data_loc`).
pub const fn data_loc(len: u32, offset: u32) -> u32 {
    (len << 16) | (offset & 0xffff)
}

/// A number as its field stores it: cut to the element's width, a bitfield extracted.
fn stored_num(f: &FieldLayout, n: u64) -> u64 {
    let elem = f.elem_size();
    let n = n & width_mask(elem);
    match f.bitfield {
        Some(bf) => apply_bitfield(n, bf, elem),
        None => n,
    }
}

/// A record being written ([`EventLayout::writer`]). Allocates nothing.
pub struct RecordWriter<'l, 'b> {
    layout: &'l EventLayout,
    buf: &'b mut [u8],
    /// Where the next string's bytes go.
    dyn_at: usize,
}

impl RecordWriter<'_, '_> {
    /// Stores element `elem` (0 for a scalar) of number field `field` (an index of
    /// [`EventLayout::fields`]): the word cut to the element's width, a bitfield extracted from
    /// its container (Linux's `fetch_store_raw` and `fetch_apply_bitfield`). A string field or
    /// an element past the array is left alone.
    pub fn num(&mut self, field: usize, elem: u32, v: u64) {
        let Some(f) = self.layout.fields.get(field) else { return };
        if f.is_string() || elem >= f.elements() {
            return;
        }
        let size = f.elem_size() as usize;
        put_num(self.buf, f.offset as usize + elem as usize * size, size, stored_num(f, v));
    }

    /// Stores element `elem` of string field `field`: its bytes (up to a NUL, at most 4095)
    /// and a NUL after the strings written so far, and their `__data_loc` in the slot; `None`
    /// (a read that failed) is length 0 at the current end, as Linux's `store_trace_args`
    /// stores it. When the buffer (or the 16-bit offsets) has no room, the slot gets the
    /// failed-read form and the error says how many bytes were needed.
    pub fn string(&mut self, field: usize, elem: u32, s: Option<&[u8]>) -> Result<(), EncodeError> {
        let Some(f) = self.layout.fields.get(field).filter(|f| f.is_string() && elem < f.elements()) else {
            return Err(EncodeError::WrongValue { field });
        };
        let slot = (f.offset + 4 * elem) as usize;
        let at = self.dyn_at;
        let Some(s) = s else {
            put_num(self.buf, slot, 4, u64::from(data_loc(0, at as u32)));
            return Ok(());
        };
        let body = string_body(s);
        let len = body.len() + 1;
        let needed = self.record_len() + len;
        if needed > self.buf.len() || needed > MAX_RECORD_SIZE {
            put_num(self.buf, slot, 4, u64::from(data_loc(0, at as u32)));
            return Err(if needed > MAX_RECORD_SIZE {
                EncodeError::TooBig(needed)
            } else {
                EncodeError::BufferSize { needed, got: self.buf.len() }
            });
        }
        self.buf[at..at + body.len()].copy_from_slice(body);
        self.buf[at + body.len()] = 0;
        put_num(self.buf, slot, 4, u64::from(data_loc(len as u32, at as u32)));
        self.dyn_at += len;
        // A tracepoint's strings start inside the struct's padding, which moves behind them.
        let end = self.record_len();
        self.buf[self.dyn_at..end].fill(0);
        Ok(())
    }

    /// The record's length: the fixed part and the strings written so far (Linux's
    /// `sizeof(entry) + size + dsize`).
    pub fn record_len(&self) -> usize {
        self.layout.fixed_len as usize + (self.dyn_at - self.layout.dyn_start as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// Values and records.

/// The common fields of a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommonHeader {
    /// The event's id.
    pub common_type: u16,
    /// Linux's `TRACE_FLAG_*` bits (irqs off, hardirq, ...).
    pub flags: u8,
    pub preempt_count: u8,
    pub pid: i32,
}

impl CommonHeader {
    /// The fields as the record's first little-endian word.
    #[inline]
    pub fn word(&self) -> u64 {
        u64::from(self.common_type) | u64::from(self.flags) << 16 | u64::from(self.preempt_count) << 24 | u64::from(self.pid as u32) << 32
    }

    fn write(&self, out: &mut [u8]) {
        put_num(out, 0, 8, self.word());
    }

    fn read(b: &[u8]) -> CommonHeader {
        CommonHeader {
            common_type: u16::from_le_bytes([b[0], b[1]]),
            flags: b[2],
            preempt_count: b[3],
            pid: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// A value to store in a field, as the kernel fetched it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A scalar number field (a probe's own address fields too): the fetched word.
    Num(u64),
    /// A string field: its bytes (a NUL ends it), `None` when reading it failed.
    Str(Option<&'a [u8]>),
    /// `TYPE[N]`: N words.
    Nums(&'a [u64]),
    /// `string[N]`: N strings.
    Strs(&'a [Option<&'a [u8]>]),
}

/// A field's value read back from a record: numbers as their stored bits (zero-extended),
/// strings without their NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    Num(u64),
    Str(Option<Vec<u8>>),
    Nums(Vec<u64>),
    Strs(Vec<Option<Vec<u8>>>),
}

/// Why [`EventLayout::encode`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Not one value per field.
    ValueCount { expected: usize, got: usize },
    /// The value of field `field` is not of its kind (or an array of the wrong length).
    WrongValue { field: usize },
    /// The record would be longer than [`MAX_RECORD_SIZE`].
    TooBig(usize),
    /// [`EventLayout::encode_to`]'s buffer is not the record's length.
    BufferSize { needed: usize, got: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::ValueCount { expected, got } => write!(f, "{got} values for {expected} fields"),
            EncodeError::WrongValue { field } => write!(f, "the value of field {field} does not fit its type"),
            EncodeError::TooBig(n) => write!(f, "a record of {n} bytes is too big"),
            EncodeError::BufferSize { needed, got } => write!(f, "a buffer of {got} bytes for a record of {needed}"),
        }
    }
}

/// Why a record's bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed part.
    Short { need: usize, got: usize },
    /// A `__data_loc` (`loc`) of element `elem` of field `field` points past the record.
    DataLoc { field: usize, elem: u32, loc: u32 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { need, got } => {
                write!(f, "a record of {got} bytes, shorter than its {need}-byte fixed part")
            }
            DecodeError::DataLoc { field, elem, loc } => {
                write!(f, "field {field}[{elem}]: __data_loc {loc:#010x} points past the record")
            }
        }
    }
}

/// A checked record, read in place ([`EventLayout::view`]): what a filter reads before the
/// record is committed, and what the `trace` line prints. The CPU and task name are not in the
/// bytes; [`with_context`](Self::with_context) gives them for the filter's `CPU` and `COMM`.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    layout: &'a EventLayout,
    bytes: &'a [u8],
    cpu: u32,
    comm: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The CPU the event fires on and the current task's name, for the filter.
    pub fn with_context(self, cpu: u32, comm: &'a [u8]) -> Self {
        RecordRef { cpu, comm, ..self }
    }

    pub fn layout(&self) -> &'a EventLayout {
        self.layout
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn header(&self) -> CommonHeader {
        CommonHeader::read(self.bytes)
    }

    /// Element `elem` of number field `field` (a scalar's is element 0): its stored bits (0 for
    /// no such element).
    pub fn num(&self, field: usize, elem: u32) -> u64 {
        let Some(f) = self.layout.fields.get(field).filter(|f| elem < f.elements()) else {
            return 0;
        };
        let size = f.elem_size() as usize;
        get_num(self.bytes, f.offset as usize + elem as usize * size, size)
    }

    /// Element `elem` of string field `field`: its bytes up to the first NUL, `None` when it
    /// faulted (length 0) or there is no such string.
    pub fn str(&self, field: usize, elem: u32) -> Option<&'a [u8]> {
        let f = self.layout.fields.get(field).filter(|f| f.is_string() && elem < f.elements())?;
        let loc = get_u32(self.bytes, (f.offset + 4 * elem) as usize);
        let (len, off) = ((loc >> 16) as usize, (loc & 0xffff) as usize);
        if len == 0 {
            return None;
        }
        // `view` checked the range.
        let s = &self.bytes[off..off + len];
        Some(match s.iter().position(|&b| b == 0) {
            Some(n) => &s[..n],
            None => s,
        })
    }

    /// Field `field`'s value, copied.
    pub fn value(&self, field: usize) -> OwnedValue {
        let f = &self.layout.fields[field];
        let own = |s: Option<&[u8]>| s.map(<[u8]>::to_vec);
        match (f.count, f.is_string()) {
            (0, false) => OwnedValue::Num(self.num(field, 0)),
            (0, true) => OwnedValue::Str(own(self.str(field, 0))),
            (n, false) => OwnedValue::Nums((0..n).map(|j| self.num(field, j)).collect()),
            (n, true) => OwnedValue::Strs((0..n).map(|j| own(self.str(field, j))).collect()),
        }
    }

    /// The record's values copied into a [`Record`] (with this view's CPU and task name).
    pub fn to_record(&self) -> Record {
        let n = self.layout.fields.len();
        Record {
            header: self.header(),
            values: (0..n).map(|i| self.value(i)).collect(),
            cpu: self.cpu,
            comm: self.comm.to_vec(),
            filter_nums: (0..n).map(|i| EventRecord::number(self, i)).collect(),
        }
    }

    /// The event's part of its `trace` line, as Linux prints it after the
    /// `TASK-PID [CPU] FLAGS TIMESTAMP: ` prefix, without the newline:
    /// `myprobe: (do_x+0x0/0x40) a=0x5 s="text"` (`print_kprobe_event`),
    /// `myretprobe: (caller+0x24/0x60 <- do_x) arg1=0x0` (`print_kretprobe_event`),
    /// `name: a=5 s="text"` for a tracepoint.
    pub fn write_text(&self, w: &mut dyn Write, syms: &dyn Symbolizer) -> fmt::Result {
        let l = self.layout;
        w.write_str(&l.name)?;
        w.write_char(':')?;
        match l.kind {
            EventKind::Kprobe => {
                w.write_str(" (")?;
                write_ip_sym(w, self.num(0, 0), true, syms)?;
                w.write_char(')')?;
            }
            EventKind::Kretprobe => {
                w.write_str(" (")?;
                write_ip_sym(w, self.num(1, 0), true, syms)?;
                w.write_str(" <- ")?;
                write_ip_sym(w, self.num(0, 0), false, syms)?;
                w.write_char(')')?;
            }
            EventKind::Tracepoint => {}
        }
        // `trace_probe_print_args`: ` name=value`, arrays as `{a,b,c}`.
        for i in l.own..l.fields.len() {
            let f = &l.fields[i];
            write!(w, " {}=", f.name)?;
            if f.count == 0 {
                self.write_elem(w, i, 0, syms)?;
            } else {
                w.write_char('{')?;
                for j in 0..f.count {
                    if j > 0 {
                        w.write_char(',')?;
                    }
                    self.write_elem(w, i, j, syms)?;
                }
                w.write_char('}')?;
            }
        }
        Ok(())
    }

    /// The event's text as a `String` ([`write_text`](Self::write_text)).
    pub fn text(&self, syms: &dyn Symbolizer) -> String {
        let mut s = String::new();
        let _ = self.write_text(&mut s, syms);
        s
    }

    /// One element as the fetch type's print function prints it.
    fn write_elem(&self, w: &mut dyn Write, field: usize, elem: u32, syms: &dyn Symbolizer) -> fmt::Result {
        let f = &self.layout.fields[field];
        if f.is_string() {
            return match self.str(field, elem) {
                None => w.write_str(FAULT_STRING),
                Some(s) => {
                    w.write_char('"')?;
                    write_bytes(w, s)?;
                    w.write_char('"')
                }
            };
        }
        let v = self.num(field, elem);
        match f.ty {
            FetchType::U8 | FetchType::U16 | FetchType::U32 | FetchType::U64 => write!(w, "{v}"),
            FetchType::S8 => write!(w, "{}", v as u8 as i8),
            FetchType::S16 => write!(w, "{}", v as u16 as i16),
            FetchType::S32 => write!(w, "{}", v as u32 as i32),
            FetchType::S64 => write!(w, "{}", v as i64),
            FetchType::X8 | FetchType::X16 | FetchType::X32 | FetchType::X64 => write!(w, "0x{v:x}"),
            FetchType::Char => {
                w.write_char('\'')?;
                write_bytes(w, &[v as u8])?;
                w.write_char('\'')
            }
            FetchType::Symbol => write_sym_offset(w, v, syms),
            // Strings are handled above.
            FetchType::String | FetchType::UString | FetchType::SymStr => Ok(()),
        }
    }
}

/// Numbers of a record as a filter reads them: the field's first bytes (at most 8) for an array.
fn filter_number(f: &FieldLayout, bytes: &[u8]) -> u64 {
    let n = (f.size as usize).min(8);
    get_num(bytes, f.offset as usize, n)
}

impl EventRecord for RecordRef<'_> {
    fn number(&self, field: usize) -> u64 {
        match self.layout.fields.get(field) {
            Some(f) if !f.is_string() => filter_number(f, self.bytes),
            _ => 0,
        }
    }

    fn string(&self, field: usize) -> &[u8] {
        match self.layout.fields.get(field) {
            Some(f) if f.is_string() => self.str(field, 0).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn common(&self, field: CommonField) -> u64 {
        common_bits(&self.header(), field)
    }

    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn comm(&self) -> &[u8] {
        self.comm
    }
}

fn common_bits(h: &CommonHeader, field: CommonField) -> u64 {
    match field {
        CommonField::Type => u64::from(h.common_type),
        CommonField::Flags => u64::from(h.flags),
        CommonField::PreemptCount => u64::from(h.preempt_count),
        CommonField::Pid => u64::from(h.pid as u32),
    }
}

/// A record read into owned values ([`EventLayout::decode`]), with the CPU and task name a
/// filter may ask for (not in the bytes: set them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub header: CommonHeader,
    /// One per field of the layout, in order.
    pub values: Vec<OwnedValue>,
    pub cpu: u32,
    pub comm: Vec<u8>,
    /// What the filter reads of each number field (an array's first bytes as one number).
    filter_nums: Vec<u64>,
}

impl Record {
    /// The same record with the CPU and task name a filter reads.
    pub fn with_context(self, cpu: u32, comm: &[u8]) -> Record {
        Record { cpu, comm: comm.to_vec(), ..self }
    }
}

impl EventRecord for Record {
    fn number(&self, field: usize) -> u64 {
        self.filter_nums.get(field).copied().unwrap_or(0)
    }

    fn string(&self, field: usize) -> &[u8] {
        match self.values.get(field) {
            Some(OwnedValue::Str(Some(s))) => s,
            Some(OwnedValue::Strs(ss)) => ss.first().and_then(|s| s.as_deref()).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn common(&self, field: CommonField) -> u64 {
        common_bits(&self.header, field)
    }

    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn comm(&self) -> &[u8] {
        &self.comm
    }
}

impl EventFields for EventLayout {
    fn lookup(&self, name: &str) -> Option<(usize, FieldType)> {
        let i = self.fields.iter().position(|f| f.name == name)?;
        Some((i, self.fields[i].filter_type()))
    }
}

/// Owned strings of a `string[N]` value as the borrowed form [`Value::Strs`] takes.
pub fn borrow_strs(ss: &[Option<Vec<u8>>]) -> Vec<Option<&[u8]>> {
    ss.iter().map(|s| s.as_deref()).collect()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::events::filter::{self, ParseEnv};
    use crate::events::probe_def::{AnySymbol, parse_definition};
    use alloc::string::ToString;
    use alloc::vec;
    use std::println;

    fn def(line: &str) -> ProbeDef {
        match parse_definition(line, &AnySymbol) {
            Ok(d) => d,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    fn layout(line: &str) -> EventLayout {
        EventLayout::from_probe(&def(line))
    }

    /// The common part of every `format` file, as Linux's `f_show` prints the fields
    /// `trace_define_common_fields` declares (`struct trace_entry`: unsigned short type,
    /// unsigned char flags, unsigned char preempt_count, int pid), followed by the blank line
    /// `f_show` prints at `FORMAT_FIELD_SEPERATOR`.
    const COMMON: &str = "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\n";

    // -----------------------------------------------------------------------------------------
    // The format file.

    #[test]
    fn format_of_a_kprobe_event() {
        let l = layout("p:myprobe do_x a=%a0 s=+0(%a1):string");
        // f_show: "name: %s\n", "ID: %d\n", "format:\n"; the common fields and the blank line;
        // kprobe_event_define_fields: DEFINE_FIELD(unsigned long, ip, "__probe_ip", 0) at
        // offsetof(struct kprobe_trace_entry_head, ip) = 8, size 8;
        // traceprobe_define_arg_fields: each argument at sizeof(head) + parg->offset (16, 24),
        // its type's fmttype (no type: DEFAULT_FETCH_TYPE x64, whose fmttype is u64; string:
        // "__data_loc char[]", size sizeof(u32), is_signed 1);
        // f_show at FORMAT_PRINTFMT: "\nprint fmt: %s\n" with __set_print_fmt(PROBE_PRINT_NORMAL):
        // "\"(%lx)" + " a=" + x64's fmt "0x%Lx" + " s=" + string's fmt "\\\"%s\\\"" + "\"" +
        // ", REC->__probe_ip" + ", REC->a" + ", __get_str(s)".
        let want = std::format!(
            "name: myprobe\nID: 1234\nformat:\n{COMMON}\
\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:u64 a;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] s;\toffset:24;\tsize:4;\tsigned:1;\n\
\n\
print fmt: \"(%lx) a=0x%Lx s=\\\"%s\\\"\", REC->__probe_ip, REC->a, __get_str(s)\n"
        );
        assert_eq!(l.format_file(1234), want);
        assert_eq!((l.system(), l.name(), l.kind()), ("kprobes", "myprobe", EventKind::Kprobe));
        assert_eq!((l.fixed_len(), l.dyn_start()), (28, 28));
    }

    #[test]
    fn format_of_a_kretprobe_event() {
        let l = layout("r:kprobes/myretprobe do_x ret=$retval:s32 c=+0(%a0):char sym=%ra:symbol n=$retval:u16");
        // kretprobe_event_define_fields: __probe_func at offsetof(kretprobe_trace_entry_head,
        // func) = 8 and __probe_ret_ip at 16, both unsigned long; the arguments from
        // sizeof(head) = 24, packed (traceprobe_parse_probe_arg_body adds each size to
        // tp->size without aligning): s32 at 24 (4 bytes, signed), char at 28 (fmttype u8:
        // ASSIGN_FETCH_TYPE_ALIAS(char, u8, u8, 0)), symbol at 29 (ADDR_FETCH_TYPE u64, 8
        // bytes, unaligned), u16 at 37.
        // __set_print_fmt(PROBE_PRINT_RETURN): "\"(%lx <- %lx)" and the arguments
        // REC->__probe_func, REC->__probe_ret_ip; char's fmt "'%c'", symbol's "%pS".
        let want = std::format!(
            "name: myretprobe\nID: 7\nformat:\n{COMMON}\
\tfield:unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:s32 ret;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:u8 c;\toffset:28;\tsize:1;\tsigned:0;\n\
\tfield:u64 sym;\toffset:29;\tsize:8;\tsigned:0;\n\
\tfield:u16 n;\toffset:37;\tsize:2;\tsigned:0;\n\
\n\
print fmt: \"(%lx <- %lx) ret=%d c='%c' sym=%pS n=%u\", REC->__probe_func, REC->__probe_ret_ip, REC->ret, REC->c, REC->sym, REC->n\n"
        );
        assert_eq!(l.format_file(7), want);
        assert_eq!(l.kind(), EventKind::Kretprobe);
        assert_eq!(l.fixed_len(), 39);
    }

    #[test]
    fn format_of_arrays_bitfields_and_comm() {
        let l = layout(
            "p:grp/arr f buf=+0(%a0):u8[4] names=+0(%a1):string[2] w=+0(%a2):x16[3] bf=+0(%a3):b4@2/32 cm=$comm im=\\\"hi\"",
        );
        // traceprobe_parse_probe_arg_body: an array's type is fmttype + "[N]" ("u8[4]",
        // "__data_loc char[][2]"), its size type size × N; f_show splits "T[N]" into
        // "T name[N]" but leaves a "__data_loc" type whole. A bitfield's type is its container
        // (find_fetch_type("b4@2/32") is u32). $comm and \"..." are strings.
        // __set_print_fmt: arrays print "{fmt,fmt,...}" with "REC->name[j]" or
        // "__get_str(name[j])" per element.
        let want = std::format!(
            "name: arr\nID: 65535\nformat:\n{COMMON}\
\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:u8 buf[4];\toffset:16;\tsize:4;\tsigned:0;\n\
\tfield:__data_loc char[][2] names;\toffset:20;\tsize:8;\tsigned:1;\n\
\tfield:u16 w[3];\toffset:28;\tsize:6;\tsigned:0;\n\
\tfield:u32 bf;\toffset:34;\tsize:4;\tsigned:0;\n\
\tfield:__data_loc char[] cm;\toffset:38;\tsize:4;\tsigned:1;\n\
\tfield:__data_loc char[] im;\toffset:42;\tsize:4;\tsigned:1;\n\
\n\
print fmt: \"(%lx) buf={{%u,%u,%u,%u}} names={{\\\"%s\\\",\\\"%s\\\"}} w={{0x%x,0x%x,0x%x}} bf=%u cm=\\\"%s\\\" im=\\\"%s\\\"\", \
REC->__probe_ip, REC->buf[0], REC->buf[1], REC->buf[2], REC->buf[3], __get_str(names[0]), __get_str(names[1]), \
REC->w[0], REC->w[1], REC->w[2], REC->bf, __get_str(cm), __get_str(im)\n"
        );
        assert_eq!(l.format_file(65535), want);
        assert_eq!(l.system(), "grp");
        assert!(l.has_strings());
    }

    #[test]
    fn format_of_an_event_without_arguments() {
        // __set_print_fmt with no arguments: "\"(%lx)\", REC->__probe_ip".
        let l = layout("p:kprobes/bare do_x");
        let want = std::format!(
            "name: bare\nID: 1\nformat:\n{COMMON}\
\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\
\n\
print fmt: \"(%lx)\", REC->__probe_ip\n"
        );
        assert_eq!(l.format_file(1), want);
        assert_eq!(layout("r f").print_fmt(), "\"(%lx <- %lx)\", REC->__probe_func, REC->__probe_ret_ip");
        assert!(!l.has_strings());
    }

    /// The element size, C type, signedness and print format of each type name, written down
    /// from Linux's `probe_fetch_types` table and `DEFINE_BASIC_PRINT_TYPE_FUNC` lines.
    const TYPES: [(&str, u32, &str, bool, &str); 17] = [
        ("u8", 1, "u8", false, "%u"),
        ("u16", 2, "u16", false, "%u"),
        ("u32", 4, "u32", false, "%u"),
        ("u64", 8, "u64", false, "%Lu"),
        ("s8", 1, "s8", true, "%d"),
        ("s16", 2, "s16", true, "%d"),
        ("s32", 4, "s32", true, "%d"),
        ("s64", 8, "s64", true, "%Ld"),
        ("x8", 1, "u8", false, "0x%x"),
        ("x16", 2, "u16", false, "0x%x"),
        ("x32", 4, "u32", false, "0x%x"),
        ("x64", 8, "u64", false, "0x%Lx"),
        ("char", 1, "u8", false, "'%c'"),
        ("symbol", 8, "u64", false, "%pS"),
        ("string", 4, "__data_loc char[]", true, "\\\"%s\\\""),
        ("ustring", 4, "__data_loc char[]", true, "\\\"%s\\\""),
        ("symstr", 4, "__data_loc char[]", true, "\\\"%s\\\""),
    ];

    #[test]
    fn every_type_packed_in_order_and_as_arrays() {
        // Every type as a scalar and as a 3-element array, one after the other: each field
        // starts where the previous one ends (Linux's running tp->size), from 16.
        let mut line = String::from("p:g/all f");
        for (i, (t, ..)) in TYPES.iter().enumerate() {
            line.push_str(&std::format!(" v{i}=+0(%a0):{t}"));
        }
        for (i, (t, ..)) in TYPES.iter().enumerate() {
            if *t != "symstr" {
                // A symstr array is refused by Linux (it is no memory string).
                line.push_str(&std::format!(" a{i}=+0(%a0):{t}[3]"));
            }
        }
        let l = layout(&line);
        let text = l.format_file(9);
        let mut offset = 16;
        let mut lines = std::string::String::new();
        let mut fmt = std::string::String::from("\"(%lx)");
        let mut args = std::string::String::from(", REC->__probe_ip");
        for (i, (_, size, ctype, signed, pf)) in TYPES.iter().enumerate() {
            let f = l.field(&std::format!("v{i}")).unwrap();
            assert_eq!((f.offset, f.size, f.is_signed()), (offset, *size, *signed), "v{i}");
            lines.push_str(&std::format!(
                "\tfield:{ctype} v{i};\toffset:{offset};\tsize:{size};\tsigned:{};\n",
                *signed as u8
            ));
            fmt.push_str(&std::format!(" v{i}={pf}"));
            args.push_str(&if ctype.starts_with("__data_loc") {
                std::format!(", __get_str(v{i})")
            } else {
                std::format!(", REC->v{i}")
            });
            offset += size;
        }
        for (i, (t, size, ctype, signed, pf)) in TYPES.iter().enumerate() {
            if *t == "symstr" {
                continue;
            }
            let f = l.field(&std::format!("a{i}")).unwrap();
            assert_eq!((f.offset, f.size, f.count), (offset, size * 3, 3), "a{i}");
            let decl = if ctype.starts_with("__data_loc") {
                std::format!("{ctype}[3] a{i}")
            } else {
                std::format!("{ctype} a{i}[3]")
            };
            lines.push_str(&std::format!(
                "\tfield:{decl};\toffset:{offset};\tsize:{};\tsigned:{};\n",
                size * 3,
                *signed as u8
            ));
            fmt.push_str(&std::format!(" a{i}={{{pf},{pf},{pf}}}"));
            for j in 0..3 {
                args.push_str(&if ctype.starts_with("__data_loc") {
                    std::format!(", __get_str(a{i}[{j}])")
                } else {
                    std::format!(", REC->a{i}[{j}]")
                });
            }
            offset += size * 3;
        }
        let want = std::format!(
            "name: all\nID: 9\nformat:\n{COMMON}\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n{lines}\nprint fmt: {fmt}\"{args}\n"
        );
        assert_eq!(text, want);
        assert_eq!(l.fixed_len(), offset);
        // The layout agrees with the parser's own offsets (Linux's parg->offset).
        let d = def(&line);
        for (a, f) in d.args.iter().zip(l.args()) {
            assert_eq!(f.offset, KPROBE_HEAD_SIZE + a.field_offset, "{}", a.name);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Static tracepoints.

    #[test]
    fn tracepoint_fields_are_naturally_aligned() {
        let fields = [
            TpField::new("a", FetchType::U8),
            TpField::new("b", FetchType::U64),
            TpField::new("s", FetchType::String),
            TpField::new("c", FetchType::S16),
            TpField::array("d", FetchType::X32, 3),
            TpField::new("e", FetchType::Char),
            TpField::new("f", FetchType::Symbol),
        ];
        let l = EventLayout::tracepoint("ftrace", "site_update", &fields).unwrap();
        // A C struct after `struct trace_entry` (8 bytes, 4-aligned): u8 at 8; u64 at the
        // next multiple of 8, 16; the u32 __data_loc at 24; s16 at 28; u32[3] at 32..44; char
        // at 44; u64 at 48..56. The strings start at offsetof(__data) = 56 and the struct is
        // 56 bytes (8-aligned) long.
        let offs: Vec<(u32, u32)> = l.fields().iter().map(|f| (f.offset, f.size)).collect();
        assert_eq!(offs, vec![(8, 1), (16, 8), (24, 4), (28, 2), (32, 12), (44, 1), (48, 8)]);
        assert_eq!((l.dyn_start(), l.fixed_len()), (56, 56));
        let want = std::format!(
            "name: site_update\nID: 30\nformat:\n{COMMON}\
\tfield:u8 a;\toffset:8;\tsize:1;\tsigned:0;\n\
\tfield:u64 b;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] s;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:s16 c;\toffset:28;\tsize:2;\tsigned:1;\n\
\tfield:u32 d[3];\toffset:32;\tsize:12;\tsigned:0;\n\
\tfield:u8 e;\toffset:44;\tsize:1;\tsigned:0;\n\
\tfield:u64 f;\toffset:48;\tsize:8;\tsigned:0;\n\
\n\
print fmt: \"a=%u b=%Lu s=\\\"%s\\\" c=%d d={{0x%x,0x%x,0x%x}} e='%c' f=%pS\", REC->a, REC->b, __get_str(s), REC->c, REC->d[0], REC->d[1], REC->d[2], REC->e, REC->f\n"
        );
        assert_eq!(l.format_file(30), want);

        // The struct's size rounds up to its alignment (at least struct trace_entry's 4); the
        // strings start right after the last field, inside that padding.
        let l = EventLayout::tracepoint(
            "t",
            "one",
            &[TpField::new("a", FetchType::U8), TpField::new("s", FetchType::String)],
        )
        .unwrap();
        assert_eq!((l.fields()[1].offset, l.dyn_start(), l.fixed_len()), (12, 16, 16));
        let l =
            EventLayout::tracepoint("t", "u8s", &[TpField::new("a", FetchType::U8), TpField::new("b", FetchType::U8)])
                .unwrap();
        assert_eq!((l.dyn_start(), l.fixed_len()), (10, 12));
        let l = EventLayout::tracepoint("t", "none", &[]).unwrap();
        assert_eq!((l.dyn_start(), l.fixed_len()), (8, 8));
        assert_eq!(l.print_fmt(), "\"\"");
        assert_eq!(l.format_file(2), std::format!("name: none\nID: 2\nformat:\n{COMMON}\nprint fmt: \"\"\n"));
    }

    #[test]
    fn tracepoint_declarations_are_checked() {
        let tp = |fields: &[TpField<'_>]| EventLayout::tracepoint("s", "e", fields).unwrap_err();
        assert_eq!(tp(&[TpField::new("1a", FetchType::U8)]), LayoutError::BadName("1a".into()));
        assert_eq!(tp(&[TpField::new("", FetchType::U8)]), LayoutError::BadName("".into()));
        assert_eq!(tp(&[TpField::new("a-b", FetchType::U8)]), LayoutError::BadName("a-b".into()));
        assert_eq!(tp(&[TpField::new("common_pid", FetchType::U8)]), LayoutError::ReservedName("common_pid".into()));
        assert_eq!(
            tp(&[TpField::new("a", FetchType::U8), TpField::new("a", FetchType::U16)]),
            LayoutError::DuplicateName("a".into())
        );
        assert_eq!(tp(&[TpField::array("a", FetchType::U8, 65)]), LayoutError::BadCount("a".into()));
        let big: Vec<std::string::String> = (0..200).map(|i| std::format!("f{i}")).collect();
        let fields: Vec<TpField<'_>> = big.iter().map(|n| TpField::array(n, FetchType::U64, 64)).collect();
        assert!(matches!(tp(&fields), LayoutError::TooBig(_)));
        assert!(!tp(&[TpField::new("1a", FetchType::U8)]).to_string().is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Encoding.

    const HDR: CommonHeader = CommonHeader { common_type: 1234, flags: 0x81, preempt_count: 2, pid: -7 };

    #[test]
    fn encoding_is_byte_exact() {
        let l = layout("p:myprobe do_x a=%a0:u32 s=+0(%a1):string b=%a2:s16");
        let rec = l
            .encode(
                &HDR,
                &[
                    Value::Num(0x9000_0000_0020_0000),
                    Value::Num(0x1_2345_6789),
                    Value::Str(Some(b"text")),
                    Value::Num(0xffff_8001),
                ],
            )
            .unwrap();
        let mut want = vec![0xd2, 0x04, 0x81, 0x02, 0xf9, 0xff, 0xff, 0xff];
        want.extend_from_slice(&0x9000_0000_0020_0000u64.to_le_bytes());
        want.extend_from_slice(&0x2345_6789u32.to_le_bytes()); // a: cut to u32, at 16
        want.extend_from_slice(&((5u32 << 16) | 26).to_le_bytes()); // s: "text\0" at 26
        want.extend_from_slice(&0x8001u16.to_le_bytes()); // b at 24
        want.extend_from_slice(b"text\0");
        assert_eq!(rec, want);
        assert_eq!(l.encoded_len(&[Value::Num(0), Value::Num(0), Value::Str(Some(b"text")), Value::Num(0)]), Ok(31));

        // A string that could not be read: length 0 at the end of the fixed part, no bytes.
        let rec = l.encode(&HDR, &[Value::Num(1), Value::Num(2), Value::Str(None), Value::Num(3)]).unwrap();
        assert_eq!(rec.len(), 26);
        assert_eq!(&rec[20..24], &26u32.to_le_bytes());
        // An empty string is a NUL of length 1.
        let rec = l.encode(&HDR, &[Value::Num(1), Value::Num(2), Value::Str(Some(b"")), Value::Num(3)]).unwrap();
        assert_eq!((&rec[20..24], rec.len(), rec[26]), (&((1u32 << 16) | 26).to_le_bytes()[..], 27, 0));
        // A NUL ends a string; 4095 bytes at most.
        let rec = l.encode(&HDR, &[Value::Num(1), Value::Num(2), Value::Str(Some(b"ab\0cd")), Value::Num(3)]).unwrap();
        assert_eq!(&rec[26..], b"ab\0");
        let long = vec![b'x'; 5000];
        let rec = l.encode(&HDR, &[Value::Num(1), Value::Num(2), Value::Str(Some(&long)), Value::Num(3)]).unwrap();
        assert_eq!(rec.len(), 26 + 4096);
        assert_eq!(&rec[20..24], &((4096u32 << 16) | 26).to_le_bytes());
        assert_eq!(l.view(&rec).unwrap().str(2, 0).unwrap().len(), 4095);
    }

    #[test]
    fn strings_follow_in_argument_order() {
        let l = layout("p f x=+0(%a0):string arr=+0(%a1):string[3] y=$comm n=%a2:u8");
        let strs = [Some(&b"one"[..]), None, Some(&b"three"[..])];
        let rec = l
            .encode(
                &CommonHeader::default(),
                &[Value::Num(0), Value::Str(Some(b"x")), Value::Strs(&strs), Value::Str(Some(b"comm")), Value::Num(9)],
            )
            .unwrap();
        // Fixed part: 16 + 4 + 12 + 4 + 1 = 37; then "x\0" at 37, "one\0" at 39, the fault (length
        // 0) at 43, "three\0" at 43, "comm\0" at 49.
        let loc = |at: usize| u32::from_le_bytes(rec[at..at + 4].try_into().unwrap());
        assert_eq!(loc(16), data_loc(2, 37));
        assert_eq!((loc(20), loc(24), loc(28)), (data_loc(4, 39), data_loc(0, 43), data_loc(6, 43)));
        assert_eq!(loc(32), data_loc(5, 49));
        assert_eq!(rec[36], 9);
        assert_eq!(&rec[37..], b"x\0one\0three\0comm\0");
        let r = l.view(&rec).unwrap();
        assert_eq!(
            (r.str(1, 0), r.str(2, 0), r.str(2, 1), r.str(2, 2)),
            (Some(&b"x"[..]), Some(&b"one"[..]), None, Some(&b"three"[..]))
        );
    }

    #[test]
    fn tracepoint_records_have_the_struct_size() {
        let l = EventLayout::tracepoint(
            "t",
            "e",
            &[
                TpField::new("a", FetchType::U64),
                TpField::new("n", FetchType::U8),
                TpField::new("s", FetchType::String),
            ],
        )
        .unwrap();
        // a at 8, n at 16, s at 20 (4-aligned); strings from 24; the struct is 24 bytes.
        assert_eq!((l.dyn_start(), l.fixed_len()), (24, 24));
        let rec = l.encode(&HDR, &[Value::Num(5), Value::Num(6), Value::Str(Some(b"ab"))]).unwrap();
        assert_eq!(rec.len(), 27);
        assert_eq!(&rec[20..24], &data_loc(3, 24).to_le_bytes());
        let l =
            EventLayout::tracepoint("t", "e", &[TpField::new("a", FetchType::U64), TpField::new("n", FetchType::U8)])
                .unwrap();
        // Linux reserves sizeof(struct): 24 bytes, the last 7 padding.
        assert_eq!(l.encode(&HDR, &[Value::Num(5), Value::Num(6)]).unwrap().len(), 24);
    }

    #[test]
    fn bitfields_are_extracted_from_their_container() {
        let l = layout("p f a=+0(%a0):b4@2/32 b=+0(%a0):b1@63/64 c=+0(%a0):b8@0/8 d=+0(%a0):b3@5/16[2]");
        let rec = l
            .encode(
                &HDR,
                &[
                    Value::Num(0),
                    Value::Num(0b1101_1100),
                    Value::Num(1 << 63),
                    Value::Num(0x1ab),
                    Value::Nums(&[0xe0, 0xffff_00a0]),
                ],
            )
            .unwrap();
        let r = l.view(&rec).unwrap();
        assert_eq!(r.num(1, 0), 0b0111);
        assert_eq!(r.num(2, 0), 1);
        assert_eq!(r.num(3, 0), 0xab);
        assert_eq!((r.num(4, 0), r.num(4, 1)), (7, 5));
        assert_eq!(apply_bitfield(0xffff_ffff, Bitfield { width: 32, offset: 0 }, 4), 0xffff_ffff);
    }

    #[test]
    fn encoding_refuses_what_does_not_fit() {
        let l = layout("p f a=%a0 s=+0(%a0):string v=+0(%a0):u8[2] w=+0(%a0):string[2]");
        let strs = [Some(&b"a"[..]), None];
        let good = [Value::Num(0), Value::Num(1), Value::Str(None), Value::Nums(&[1, 2]), Value::Strs(&strs)];
        assert!(l.encode(&HDR, &good).is_ok());
        assert_eq!(l.encode(&HDR, &good[..4]), Err(EncodeError::ValueCount { expected: 5, got: 4 }));
        let mut bad = good;
        bad[1] = Value::Str(None);
        assert_eq!(l.encode(&HDR, &bad), Err(EncodeError::WrongValue { field: 1 }));
        let mut bad = good;
        bad[2] = Value::Num(0);
        assert_eq!(l.encode(&HDR, &bad), Err(EncodeError::WrongValue { field: 2 }));
        let mut bad = good;
        bad[3] = Value::Nums(&[1]);
        assert_eq!(l.encode(&HDR, &bad), Err(EncodeError::WrongValue { field: 3 }));
        let mut bad = good;
        bad[4] = Value::Strs(&strs[..1]);
        assert_eq!(l.encode(&HDR, &bad), Err(EncodeError::WrongValue { field: 4 }));
        let mut buf = [0u8; 10];
        assert_eq!(l.encode_to(&HDR, &good, &mut buf), Err(EncodeError::BufferSize { needed: 40, got: 10 }));
        let mut buf = [0xaau8; 40];
        l.encode_to(&HDR, &good, &mut buf).unwrap();
        assert_eq!(buf.to_vec(), l.encode(&HDR, &good).unwrap());
        // Too big for 16-bit offsets.
        let big = layout("p f a=+0(%a0):string b=+0(%a0):string[64]");
        let long = vec![b'y'; 4095];
        let many = vec![Some(&long[..]); 64];
        assert_eq!(
            big.encode(&HDR, &[Value::Num(0), Value::Str(Some(&long)), Value::Strs(&many)]),
            Err(EncodeError::TooBig(16 + 4 + 256 + 65 * 4096))
        );
        assert!(!EncodeError::TooBig(1).to_string().is_empty());
    }

    #[test]
    fn the_writer_stores_field_by_field() {
        // A tracepoint whose strings start inside the struct's padding: a u64 at 8, the slot at
        // 16, strings from 20, the struct 24 bytes long.
        let l = EventLayout::tracepoint("t", "w", &[TpField::new("a", FetchType::U64), TpField::new("s", FetchType::String), TpField::array("v", FetchType::U16, 2)])
            .unwrap();
        assert_eq!((l.fields()[2].offset, l.dyn_start(), l.fixed_len()), (20, 24, 24));
        let l = EventLayout::tracepoint("t", "w", &[TpField::new("a", FetchType::U64), TpField::new("s", FetchType::String)]).unwrap();
        assert_eq!((l.dyn_start(), l.fixed_len()), (20, 24));
        let mut buf = [0xaau8; 64];
        let mut w = l.writer(&HDR, &mut buf).unwrap();
        assert_eq!(w.record_len(), 24);
        w.num(0, 0, 0x1122_3344_5566_7788);
        w.num(1, 0, 5); // a string field: left alone
        w.num(0, 1, 5); // past a scalar: left alone
        w.num(9, 0, 5); // no such field
        assert_eq!(w.string(0, 0, Some(b"x")), Err(EncodeError::WrongValue { field: 0 }));
        assert_eq!(w.string(1, 1, Some(b"x")), Err(EncodeError::WrongValue { field: 1 }));
        w.string(1, 0, Some(b"hello")).unwrap();
        assert_eq!(w.record_len(), 30);
        let len = w.record_len();
        assert_eq!(&buf[..len], &l.encode(&HDR, &[Value::Num(0x1122_3344_5566_7788), Value::Str(Some(b"hello"))]).unwrap()[..]);
        assert_eq!(&buf[16..20], &data_loc(6, 20).to_le_bytes());
        assert_eq!(buf[30], 0xaa, "nothing written past the record");

        // No room: the slot says "failed read", the error how much was needed.
        let mut small = [0u8; 26];
        let mut w = l.writer(&HDR, &mut small).unwrap();
        assert_eq!(w.string(1, 0, Some(b"hello")), Err(EncodeError::BufferSize { needed: 30, got: 26 }));
        assert_eq!(w.record_len(), 24);
        assert_eq!(&small[16..20], &data_loc(0, 20).to_le_bytes());
        assert!(l.view(&small[..24]).unwrap().str(1, 0).is_none());
        assert_eq!(l.writer(&HDR, &mut [0u8; 23]).err(), Some(EncodeError::BufferSize { needed: 24, got: 23 }));
    }

    #[test]
    fn malformed_records_are_refused() {
        let l = layout("p f s=+0(%a0):string n=%a0:u8");
        let rec = l.encode(&HDR, &[Value::Num(0), Value::Str(Some(b"abc")), Value::Num(1)]).unwrap();
        assert_eq!(l.view(&rec[..20]).unwrap_err(), DecodeError::Short { need: 21, got: 20 });
        // The string's last byte cut off: its __data_loc points past the end.
        assert_eq!(
            l.view(&rec[..rec.len() - 1]).unwrap_err(),
            DecodeError::DataLoc { field: 1, elem: 0, loc: data_loc(4, 21) }
        );
        let mut bad = rec.clone();
        bad[16..20].copy_from_slice(&data_loc(2, 0xfff0).to_le_bytes());
        assert!(l.decode(&bad).is_err());
        // Padding after the record is fine; a string without its NUL ends at its length.
        let mut padded = rec.clone();
        padded.extend_from_slice(&[0xee; 3]);
        assert_eq!(l.decode(&padded).unwrap().values, l.decode(&rec).unwrap().values);
        let mut no_nul = rec.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'!';
        assert_eq!(l.view(&no_nul).unwrap().str(1, 0), Some(&b"abc!"[..]));
        // Reading what is not there gives nothing.
        let r = l.view(&rec).unwrap();
        assert_eq!((r.num(2, 1), r.num(9, 0), r.str(2, 0), r.str(1, 1), r.str(9, 0)), (0, 0, None, None, None));
        assert_eq!((r.num(2, 0), r.str(1, 0)), (1, Some(&b"abc"[..])));
        assert!(!DecodeError::Short { need: 1, got: 0 }.to_string().is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Round trips.

    /// The crates' shared test generator (xorshift64*, fixed seeds).
    use bpf::rng::Rng;

    /// Record values on top of the crates' shared test generator.
    trait RecordRng {
        fn number(&mut self) -> u64;
        fn bytes(&mut self) -> Option<Vec<u8>>;
    }

    impl RecordRng for Rng {
        fn number(&mut self) -> u64 {
            match self.below(6) {
                0 => self.below(256),
                1 => u64::MAX - self.below(300),
                2 => 1 << self.below(64),
                3 => self.next() >> self.below(64),
                _ => self.next(),
            }
        }
        fn bytes(&mut self) -> Option<Vec<u8>> {
            if self.chance(10) {
                return None;
            }
            let len = if self.chance(3) { 4000 + self.below(300) as usize } else { self.below(24) as usize };
            let alnum = self.chance(50);
            Some(
                (0..len)
                    .map(|_| {
                        if alnum {
                            b"abcxyz019_"[self.below(10) as usize]
                        } else if self.chance(5) {
                            0
                        } else {
                            self.next() as u8
                        }
                    })
                    .collect(),
            )
        }
    }

    /// One random argument: its text and, for a bitfield, (width, offset, container bytes).
    fn random_arg(rng: &mut Rng, i: usize) -> (std::string::String, Option<(u64, u64, u32)>) {
        let name = std::format!("f{i}");
        let (t, size, ..) = TYPES[rng.below(TYPES.len() as u64) as usize];
        let mem = ["+0(%a0)", "+8(%a1)", "-4(+0(%sp))", "@0x1000"][rng.below(4) as usize];
        match rng.below(10) {
            0 => (std::format!("{name}=$comm"), None),
            1 => (std::format!("{name}=\\\"imm{i}\""), None),
            2 if t != "symstr" => (std::format!("{name}={mem}:{t}[{}]", 1 + rng.below(5)), None),
            3 => {
                let c = [8u64, 16, 32, 64][rng.below(4) as usize];
                let w = 1 + rng.below(c);
                let o = rng.below(c - w + 1);
                (std::format!("{name}={mem}:b{w}@{o}/{c}"), Some((w, o, (c / 8) as u32)))
            }
            4 if size != 4 || !t.contains("str") => (std::format!("{name}=%a{}:{t}", rng.below(8)), None),
            5 => (std::format!("{name}=%a{}", rng.below(8)), None),
            _ => (std::format!("{name}={mem}:{t}"), None),
        }
    }

    /// What a field keeps of a value, computed without the module's code: the element's low
    /// bytes, a bitfield's bits `[offset, offset + width)`, a string up to its NUL and at most
    /// 4095 bytes.
    fn expected(f: &FieldLayout, bf: Option<(u64, u64, u32)>, v: &OwnedValue) -> OwnedValue {
        let size = TYPES.iter().find(|t| t.0 == f.ty.name()).map_or(8, |t| t.1);
        let num = |n: u64| match bf {
            Some((w, o, c)) => {
                let n = if c == 8 { n } else { n & ((1u64 << (c * 8)) - 1) };
                let n = n >> o;
                if w == 64 { n } else { n & ((1u64 << w) - 1) }
            }
            None if size == 8 => n,
            None => n & ((1u64 << (size * 8)) - 1),
        };
        let s = |s: &Option<Vec<u8>>| {
            s.as_ref().map(|s| {
                let end = s.iter().position(|&b| b == 0).unwrap_or(s.len()).min(4095);
                s[..end].to_vec()
            })
        };
        match v {
            OwnedValue::Num(n) => OwnedValue::Num(num(*n)),
            OwnedValue::Nums(ns) => OwnedValue::Nums(ns.iter().map(|&n| num(n)).collect()),
            OwnedValue::Str(x) => OwnedValue::Str(s(x)),
            OwnedValue::Strs(xs) => OwnedValue::Strs(xs.iter().map(s).collect()),
        }
    }

    fn random_value(rng: &mut Rng, f: &FieldLayout) -> OwnedValue {
        match (f.count, f.is_string()) {
            (0, false) => OwnedValue::Num(rng.number()),
            (0, true) => OwnedValue::Str(rng.bytes()),
            (n, false) => OwnedValue::Nums((0..n).map(|_| rng.number()).collect()),
            (n, true) => OwnedValue::Strs((0..n).map(|_| rng.bytes()).collect()),
        }
    }

    /// Owned values as [`Value`]s (the string arrays need a place to live).
    fn encode_owned(l: &EventLayout, h: &CommonHeader, values: &[OwnedValue]) -> Result<Vec<u8>, EncodeError> {
        let strs: Vec<Vec<Option<&[u8]>>> = values
            .iter()
            .map(|v| match v {
                OwnedValue::Strs(ss) => borrow_strs(ss),
                _ => Vec::new(),
            })
            .collect();
        let vals: Vec<Value<'_>> = values
            .iter()
            .zip(&strs)
            .map(|(v, ss)| match v {
                OwnedValue::Num(n) => Value::Num(*n),
                OwnedValue::Str(s) => Value::Str(s.as_deref()),
                OwnedValue::Nums(ns) => Value::Nums(ns),
                OwnedValue::Strs(_) => Value::Strs(ss),
            })
            .collect();
        let rec = l.encode(h, &vals)?;
        // Into a buffer of junk, the same bytes: every byte of the record is written.
        let mut junk = vec![0xa5; rec.len()];
        l.encode_to(h, &vals, &mut junk).unwrap();
        assert_eq!(junk, rec);
        Ok(rec)
    }

    #[test]
    fn random_records_round_trip() {
        let mut rng = Rng(0x5eed_f00d_1234_5678);
        let (mut records, mut too_big) = (0, 0);
        for round in 0..2000 {
            let nargs = rng.below(10) as usize;
            let kret = rng.chance(30);
            let mut line = std::string::String::from(if kret { "r:g/ev f" } else { "p:g/ev f" });
            let mut bfs = Vec::new();
            for i in 0..nargs {
                let (a, bf) = random_arg(&mut rng, i);
                line.push(' ');
                line.push_str(&a);
                bfs.push(bf);
            }
            let l = layout(&line);
            let own = if kret { 2 } else { 1 };
            assert_eq!(l.fields().len(), own + nargs, "{line}");
            // The fixed part is the head and every argument's size, packed.
            let sizes: u32 = l.args().iter().map(|f| f.size).sum();
            assert_eq!(l.fixed_len(), COMMON_SIZE + 8 * own as u32 + sizes, "{line}");
            for _ in 0..5 {
                let h = CommonHeader {
                    common_type: rng.next() as u16,
                    flags: rng.next() as u8,
                    preempt_count: rng.next() as u8,
                    pid: rng.next() as i32,
                };
                let values: Vec<OwnedValue> = l.fields().iter().map(|f| random_value(&mut rng, f)).collect();
                let rec = match encode_owned(&l, &h, &values) {
                    Ok(r) => r,
                    Err(EncodeError::TooBig(n)) => {
                        assert!(n > MAX_RECORD_SIZE);
                        too_big += 1;
                        continue;
                    }
                    Err(e) => panic!("{line}: {e}"),
                };
                records += 1;
                let want: Vec<OwnedValue> = l
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| expected(f, if i < own { None } else { bfs[i - own] }, &values[i]))
                    .collect();
                // The length: the fixed part and every string's bytes and NUL.
                let dyn_len: usize = want
                    .iter()
                    .map(|v| match v {
                        OwnedValue::Str(s) => s.as_ref().map_or(0, |s| s.len() + 1),
                        OwnedValue::Strs(ss) => ss.iter().map(|s| s.as_ref().map_or(0, |s| s.len() + 1)).sum(),
                        _ => 0,
                    })
                    .sum();
                assert_eq!(rec.len(), l.fixed_len() as usize + dyn_len, "{line}");
                let back = l.decode(&rec).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(back.header, h);
                assert_eq!(back.values, want, "round {round}: {line}");
                // Written again, the decoded values give the same bytes (a bitfield's value is
                // its container's extract: it would be extracted again).
                if bfs.iter().all(Option::is_none) {
                    assert_eq!(encode_owned(&l, &h, &back.values).unwrap(), rec, "{line}");
                }
                // Every string's __data_loc points into the record, after the fixed part.
                let r = l.view(&rec).unwrap();
                for (i, f) in l.fields().iter().enumerate().filter(|(_, f)| f.is_string()) {
                    for j in 0..f.elements() {
                        let loc = u32::from_le_bytes(rec[(f.offset + 4 * j) as usize..][..4].try_into().unwrap());
                        assert!(loc & 0xffff >= l.dyn_start(), "{line}");
                        assert_eq!(r.str(i, j).is_none(), loc >> 16 == 0);
                    }
                }
                // The text prints without a panic and starts with the event's name.
                assert!(r.text(&NoSymbols).starts_with("ev: ("));
            }
        }
        println!("{records} records, {too_big} too big");
        assert!(records > 9000);
    }

    #[test]
    fn random_tracepoints_round_trip() {
        let mut rng = Rng(0x7ace_9017);
        let types: Vec<FetchType> = FetchType::ALL.to_vec();
        let names: Vec<std::string::String> = (0..12).map(|i| std::format!("f{i}")).collect();
        for _ in 0..1000 {
            let n = rng.below(12) as usize;
            let fields: Vec<TpField<'_>> = (0..n)
                .map(|i| {
                    let ty = types[rng.below(types.len() as u64) as usize];
                    if rng.chance(25) { TpField::array(&names[i], ty, 1 + rng.below(4) as u32) } else { TpField::new(&names[i], ty) }
                })
                .collect();
            let l = EventLayout::tracepoint("sys", "ev", &fields).unwrap();
            // Each field at the next multiple of its element size, from 8; the struct rounded
            // up to its largest alignment (at least 4).
            let (mut at, mut align) = (8u32, 4u32);
            for (f, d) in l.fields().iter().zip(&fields) {
                let elem = TYPES.iter().find(|t| t.0 == d.ty.name()).unwrap().1;
                at = at.next_multiple_of(elem);
                align = align.max(elem);
                assert_eq!((f.offset, f.size), (at, elem * d.count.max(1)));
                at += f.size;
            }
            assert_eq!((l.dyn_start(), l.fixed_len()), (at, at.next_multiple_of(align)));
            for _ in 0..5 {
                let values: Vec<OwnedValue> = l.fields().iter().map(|f| random_value(&mut rng, f)).collect();
                let Ok(rec) = encode_owned(&l, &HDR, &values) else { continue };
                let want: Vec<OwnedValue> = l.fields().iter().zip(&values).map(|(f, v)| expected(f, None, v)).collect();
                let back = l.decode(&rec).unwrap();
                assert_eq!((back.header, &back.values), (HDR, &want));
                assert_eq!(encode_owned(&l, &HDR, &back.values).unwrap(), rec);
                let text = l.view(&rec).unwrap().text(&FakeSyms);
                assert!(text.starts_with("ev:"), "{text}");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The trace line.

    /// A symbol table of three functions, one in a module.
    struct FakeSyms;

    impl Symbolizer for FakeSyms {
        fn lookup(&self, addr: u64) -> Option<SymbolInfo<'_>> {
            let table = [
                ("do_x", 0x1000, 0x40, None),
                ("caller", 0x2000, 0x60, None),
                ("helper", 0x3000, 0x20, Some("sample_mod")),
                ("selftest::targets::chain_root", 0x4000, 0x100, None),
            ];
            table.iter().find(|s| s.1 <= addr && addr < s.1 + s.2).map(|&(name, start, size, module)| SymbolInfo {
                name,
                start,
                size,
                module,
            })
        }
    }

    fn text(l: &EventLayout, values: &[Value<'_>]) -> std::string::String {
        let rec = l.encode(&HDR, values).unwrap();
        l.view(&rec).unwrap().text(&FakeSyms)
    }

    #[test]
    fn kprobe_trace_lines() {
        // print_kprobe_event: "%s: (" with the event name, seq_print_ip_sym(ip) with
        // TRACE_ITER_SYM_OFFSET (sprint_symbol: "sym+0xoff/0xsize"), ")", then
        // trace_probe_print_args: " name=" and the type's print function.
        let l = layout("p:myprobe do_x a=%a0 s=+0(%a1):string");
        assert_eq!(
            text(&l, &[Value::Num(0x1000), Value::Num(5), Value::Str(Some(b"text"))]),
            "myprobe: (do_x+0x0/0x40) a=0x5 s=\"text\""
        );
        // A string that could not be read: print_type_string's "(fault)".
        assert_eq!(
            text(&l, &[Value::Num(0x1010), Value::Num(0), Value::Str(None)]),
            "myprobe: (do_x+0x10/0x40) a=0x0 s=(fault)"
        );
        // An address in no function: sprint_symbol's "0x%lx"; a null one: seq_print_ip_sym's "0".
        assert_eq!(
            text(&l, &[Value::Num(0xdead), Value::Num(1), Value::Str(Some(b""))]),
            "myprobe: (0xdead) a=0x1 s=\"\""
        );
        assert_eq!(text(&l, &[Value::Num(0), Value::Num(1), Value::Str(Some(b"x"))]), "myprobe: (0) a=0x1 s=\"x\"");
        // A module's function: " [module]" after it.
        assert_eq!(
            text(&l, &[Value::Num(0x3004), Value::Num(1), Value::Str(Some(b"x"))]),
            "myprobe: (helper+0x4/0x20 [sample_mod]) a=0x1 s=\"x\""
        );
        // Bytes that are no UTF-8 become U+FFFD; UTF-8 stays.
        assert_eq!(
            text(&l, &[Value::Num(0x1000), Value::Num(1), Value::Str(Some(b"a\xffb\xc3\xa9"))]),
            "myprobe: (do_x+0x0/0x40) a=0x1 s=\"a\u{fffd}b\u{e9}\""
        );
    }

    #[test]
    fn kretprobe_trace_lines() {
        // print_kretprobe_event: "(" seq_print_ip_sym(ret_ip, with offset) " <- "
        // seq_print_ip_sym(func, without offset: the bare name) ")".
        let l = layout("r:myretprobe do_x arg1=$retval");
        assert_eq!(
            text(&l, &[Value::Num(0x1000), Value::Num(0x2024), Value::Num(0)]),
            "myretprobe: (caller+0x24/0x60 <- do_x) arg1=0x0"
        );
        // Without offset, an unknown address is "0x%08lx" (trace_seq_print_sym), a module's
        // function its bare name.
        assert_eq!(
            text(&l, &[Value::Num(0x1234), Value::Num(0x99), Value::Num(7)]),
            "myretprobe: (0x99 <- 0x00001234) arg1=0x7"
        );
        assert_eq!(text(&l, &[Value::Num(0x3000), Value::Num(0), Value::Num(7)]), "myretprobe: (0 <- helper) arg1=0x7");
        assert_eq!(
            text(&l, &[Value::Num(0x9000_0000_0020_0000), Value::Num(0x4010), Value::Num(7)]),
            "myretprobe: (selftest::targets::chain_root+0x10/0x100 <- 0x9000000000200000) arg1=0x7"
        );
    }

    #[test]
    fn every_type_prints_as_linux_prints_it() {
        let l = layout(
            "p:t do_x u1=%a0:u8 u2=%a0:u16 u4=%a0:u32 u8=%a0:u64 s1=%a0:s8 s2=%a0:s16 s4=%a0:s32 s8=%a0:s64 \
             x1=%a0:x8 x2=%a0:x16 x4=%a0:x32 x8=%a0:x64 c=%a0:char sy=%a0:symbol st=+0(%a0):string \
             us=+0(%a0):ustring ss=%a0:symstr ar=+0(%a0):s16[3] sa=+0(%a0):string[2] ca=+0(%a0):char[2] bf=+0(%a0):b4@4/8",
        );
        let v = u64::MAX;
        let sa = [Some(&b"p"[..]), None];
        let values = [
            Value::Num(0x1008),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(v),
            Value::Num(b'A' as u64),
            Value::Num(0x2004),
            Value::Str(Some(b"str")),
            Value::Str(Some(b"user")),
            Value::Str(Some(b"caller+0x4/0x60")),
            Value::Nums(&[1, 0xffff, 0x8000]),
            Value::Strs(&sa),
            Value::Nums(&[b'x' as u64, b'y' as u64]),
            Value::Num(0xa5),
        ];
        // DEFINE_BASIC_PRINT_TYPE_FUNC: %u, %Lu, %d, %Ld, 0x%x, 0x%Lx, '%c'; symbol: %pS;
        // string, ustring and symstr: print_type_string ("\"%s\"" or "(fault)"); arrays:
        // trace_probe_print_args' "{a,b,c}".
        assert_eq!(
            text(&l, &values),
            "t: (do_x+0x8/0x40) u1=255 u2=65535 u4=4294967295 u8=18446744073709551615 s1=-1 s2=-1 s4=-1 s8=-1 \
             x1=0xff x2=0xffff x4=0xffffffff x8=0xffffffffffffffff c='A' sy=caller+0x4/0x60 st=\"str\" us=\"user\" \
             ss=\"caller+0x4/0x60\" ar={1,-1,-32768} sa={\"p\",(fault)} ca={'x','y'} bf=10"
        );
        // %pS of an address in no function, and of 0.
        let l = layout("p:t do_x sy=%a0:symbol");
        assert_eq!(text(&l, &[Value::Num(0x1000), Value::Num(0x77)]), "t: (do_x+0x0/0x40) sy=0x77");
        assert_eq!(text(&l, &[Value::Num(0x1000), Value::Num(0)]), "t: (do_x+0x0/0x40) sy=0x0");
    }

    #[test]
    fn tracepoint_trace_lines() {
        let l = EventLayout::tracepoint(
            "ftrace",
            "site_update",
            &[
                TpField::new("ip", FetchType::Symbol),
                TpField::new("old", FetchType::X32),
                TpField::new("new", FetchType::X32),
                TpField::new("who", FetchType::String),
            ],
        )
        .unwrap();
        assert_eq!(
            text(
                &l,
                &[Value::Num(0x4000), Value::Num(0x0340_0000), Value::Num(0x5400_0400), Value::Str(Some(b"ftrace"))]
            ),
            "site_update: ip=selftest::targets::chain_root+0x0/0x100 old=0x3400000 new=0x54000400 who=\"ftrace\""
        );
        let l = EventLayout::tracepoint("irq", "timer_tick", &[]).unwrap();
        assert_eq!(text(&l, &[]), "timer_tick:");
    }

    // -----------------------------------------------------------------------------------------
    // Filters on records.

    fn filter(l: &EventLayout, text: &str) -> filter::EventFilter {
        filter::parse(text.as_bytes(), l, &ParseEnv::new(4)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn filters_run_on_encoded_records() {
        let l = layout(
            "p:myprobe do_x a=%a0:u32 sv=%a1:s8 s=+0(%a1):string buf=+0(%a2):u8[4] names=+0(%a3):string[2] sym=%a4:symbol odd=+0(%a0):u8[3]",
        );
        let names = [Some(&b"first"[..]), Some(&b"second"[..])];
        let rec = l
            .encode(
                &HDR,
                &[
                    Value::Num(0x1010),
                    Value::Num(42),
                    Value::Num(0xff),
                    Value::Str(Some(b"text")),
                    Value::Nums(&[1, 2, 3, 4]),
                    Value::Strs(&names),
                    Value::Num(0x2004),
                    Value::Nums(&[1, 1, 1]),
                ],
            )
            .unwrap();
        let view = l.view(&rec).unwrap().with_context(1, b"loongtrace/1");
        let owned = l.decode(&rec).unwrap().with_context(1, b"loongtrace/1");
        let cases: &[(&str, bool)] = &[
            ("a == 42", true),
            ("a > 10 && s ~ \"te*\"", true),
            ("a < 10 || s == \"text\"", true),
            ("a >= 43 || s != \"text\"", false),
            ("sv == -1", true),
            ("sv < 0", true),
            ("sv > 0", false),
            // An array is its first bytes as one number of its size (Linux's FILTER_OTHER).
            ("buf == 0x04030201", true),
            ("buf & 0x200", true),
            ("buf & 0x100", false),
            // A string array is its first string.
            ("names == \"first\"", true),
            ("names ~ \"*cond\"", false),
            ("__probe_ip == 0x1010", true),
            ("__probe_ip.function == 0x1000", false), // no symbols in this environment
            ("sym > 0x2000 && sym < 0x2010", true),
            // A 3-byte array has no comparison in Linux: never true.
            ("odd == 0x010101", false),
            ("common_pid == -7", true),
            ("common_type == 1234 && common_flags & 0x80 && common_preempt_count == 2", true),
            ("CPU == 1 && comm ~ \"loongtrace*\"", true),
            ("!(a == 42)", false),
        ];
        for &(f, want) in cases {
            if f.contains(".function") {
                assert!(filter::parse(f.as_bytes(), &l, &ParseEnv::new(4)).is_err());
                continue;
            }
            let filt = filter(&l, f);
            assert_eq!(filt.matches(&view), want, "{f} on the view");
            assert_eq!(filt.matches(&owned), want, "{f} on the decoded record");
        }
        // Unknown fields are refused against the layout, as Linux refuses them.
        let e = filter::parse(b"nosuch == 1", &l, &ParseEnv::new(4)).unwrap_err();
        assert_eq!(e.reason(), filter::Reason::FieldNotFound);
        let e = filter::parse(b"s == 1", &l, &ParseEnv::new(4)).unwrap_err();
        assert_eq!(e.reason(), filter::Reason::ExpectString);
        // The fields' filter types.
        assert_eq!(l.lookup("a"), Some((1, FieldType::U32)));
        assert_eq!(l.lookup("sv"), Some((2, FieldType::S8)));
        assert_eq!(l.lookup("s"), Some((3, FieldType::DynString)));
        assert_eq!(l.lookup("buf"), Some((4, FieldType::U32)));
        assert_eq!(l.lookup("__probe_ip"), Some((0, FieldType::U64)));
        assert_eq!(l.lookup("common_pid"), None);
    }

    #[test]
    fn random_filters_agree_with_the_values() {
        let mut rng = Rng(42);
        let l = layout("p:e f a=%a0:u8 b=%a1:s16 c=%a2:u32 d=%a3:s64 x=%a4:x16 s=+0(%a5):string");
        let ops = ["==", "!=", "<", "<=", ">", ">="];
        let mut checked = 0;
        for _ in 0..3000 {
            let nums: Vec<u64> = (0..6).map(|_| rng.number()).collect();
            let s = rng.bytes();
            let values = [
                Value::Num(nums[0]),
                Value::Num(nums[1]),
                Value::Num(nums[2]),
                Value::Num(nums[3]),
                Value::Num(nums[4]),
                Value::Num(nums[5]),
                Value::Str(s.as_deref()),
            ];
            let rec = l.encode(&HDR, &values).unwrap();
            let view = l.view(&rec).unwrap();
            // One predicate on a random number field against a random constant.
            let fi = 1 + rng.below(5) as usize;
            let f = &l.fields()[fi];
            let (size, signed) = match f.filter_type() {
                FieldType::Int { size, signed } => (size as u32, signed),
                _ => unreachable!(),
            };
            let mask = width_mask(size);
            let stored = nums[fi] & mask;
            let konst = if rng.chance(30) { stored } else { rng.number() & mask };
            let op = ops[rng.below(6) as usize];
            let (lhs, rhs, text) = if signed {
                let sx = |v: u64| ((v << (64 - 8 * size)) as i64) >> (64 - 8 * size);
                (sx(stored) as i128, sx(konst) as i128, std::format!("{} {op} {}", f.name, sx(konst)))
            } else {
                (stored as i128, konst as i128, std::format!("{} {op} {konst}", f.name))
            };
            let want = match op {
                "==" => lhs == rhs,
                "!=" => lhs != rhs,
                "<" => lhs < rhs,
                "<=" => lhs <= rhs,
                ">" => lhs > rhs,
                _ => lhs >= rhs,
            };
            assert_eq!(filter(&l, &text).matches(&view), want, "{text} with {stored:#x}");
            // And the string, when it can be quoted.
            if let Some(Some(body)) =
                s.as_ref().map(|s| (s.len() < 255 && s.iter().all(u8::is_ascii_alphanumeric)).then_some(s))
            {
                let st = core::str::from_utf8(body).unwrap();
                assert!(filter(&l, &std::format!("s == \"{st}\"")).matches(&view));
                assert!(!filter(&l, &std::format!("s != \"{st}\"")).matches(&view));
                // (A `~` pattern starting with a digit is compared whole: Linux's rule.)
                if !body.first().is_some_and(u8::is_ascii_digit) {
                    assert!(filter(&l, &std::format!("s ~ \"{st}*\"")).matches(&view));
                }
                checked += 1;
            }
        }
        assert!(checked > 300, "{checked}");
    }
}
