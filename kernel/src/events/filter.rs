//! Event filters: Linux's filter language (`events/<system>/<event>/filter`), parsed, checked and
//! compiled into a small branch program that decides, before an event is committed to the ring
//! buffer, whether it is kept. Pure code, tested on the host; docs/events-filters.md has the
//! syntax, the table of errors and where loongtrace differs from Linux.
//!
//! The language, as Linux's `kernel/trace/trace_events_filter.c` implements it (not only as its
//! documentation describes it):
//!
//! * a *predicate* is `FIELD OP VALUE`; predicates combine with `&&` (binds tighter) and `||`,
//!   `!` inverts the predicate or parenthesised group that follows it, `(`…`)` group;
//! * numeric fields take `==`, `!=`, `<`, `<=`, `>`, `>=` and `&` (true when the bitwise and is
//!   not zero) with a number: decimal, `0x` hexadecimal, a leading `0` octal, `-` only for signed
//!   fields; the number is cut to the field's width before comparing;
//! * string fields take `==`, `!=` and `~` (a glob: `*`, `?`, `[...]`, `\`; a leading `!`
//!   inverts it) with a value quoted by `"` or `'` — never bare;
//! * `FIELD.function == NAME` tests that an address field lies inside a function, `FIELD == CPUS{list}`
//!   / `& CPUS{list}` tests CPU numbers against a cpulist;
//! * besides the event's own fields there are the common fields (`common_type`, `common_flags`,
//!   `common_preempt_count`, `common_pid`) and the pseudo-fields `CPU`/`cpu`/`common_cpu` (the CPU
//!   the event fires on) and `COMM`/`comm` (the current task's name);
//! * writing `0` to a filter file removes the filter (see [`parse_filter_write`]).
//!
//! Errors carry Linux's reason ([`Reason`], the exact `err_text` strings) and the position Linux
//! reports; [`FilterError::filter_file`] and [`FilterError::error_log_entry`] render them the way
//! Linux shows them in the `filter` file and in `error_log`.
//!
//! Use: the event registry hands the event's fields ([`EventFields`], e.g. a slice of [`Field`])
//! and a [`ParseEnv`] (CPU count, symbols) to [`parse_filter_write`] when the `filter` file is
//! written (or [`parse`] for a bare expression, as trigger `if` clauses need); the resulting
//! [`EventFilter`] is run with [`EventFilter::matches`] on the record being written, through the
//! small [`EventRecord`] trait, before the record is committed. Evaluation allocates nothing and
//! only jumps forward, so it costs at most one test per predicate.
//!
//! The glob of `~` is not [`crate::glob`]: that one is UTF-8 aware and knows only `*` and `?`,
//! while Linux's filter glob works on bytes and has character classes and `\` escapes, so this
//! module has its own byte matcher ([`glob_match`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

// ---------------------------------------------------------------------------------------------
// Character classes of the kernel's <linux/ctype.h> (Latin-1 in the upper half): the parser
// decides field-name ends, blanks and number ends with them, so positions match Linux's byte for
// byte also for non-ASCII input.

/// `isspace`: `\t`..`\r`, space, and Latin-1's no-break space 0xA0.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ' | 0xA0)
}

/// `isdigit`: ASCII digits only.
fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// `isalnum`: ASCII letters and digits, and Latin-1's letters 0xC0..=0xFF except × and ÷.
fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric() || (b >= 0xC0 && b != 0xD7 && b != 0xF7)
}

/// The byte at `i`, or 0 past the end (the parser reads its input like a C string).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `s` up to its first NUL byte (a C string's view of it).
fn until_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Fields.

/// The type of an event field, as far as filtering cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// An integer of `size` bytes (1, 2, 4 or 8), signed or not. Hex (`x8`..`x64`), symbol and
    /// pointer fields are unsigned integers (`unsigned long` is 8 bytes).
    Int { size: u8, signed: bool },
    /// `char name[len]` inside the record.
    FixedString(u16),
    /// `__data_loc char[] name`: a string stored after the fixed part (kprobe `:string`).
    DynString,
}

impl FieldType {
    pub const U8: FieldType = FieldType::Int { size: 1, signed: false };
    pub const U16: FieldType = FieldType::Int { size: 2, signed: false };
    pub const U32: FieldType = FieldType::Int { size: 4, signed: false };
    pub const U64: FieldType = FieldType::Int { size: 8, signed: false };
    pub const S8: FieldType = FieldType::Int { size: 1, signed: true };
    pub const S16: FieldType = FieldType::Int { size: 2, signed: true };
    pub const S32: FieldType = FieldType::Int { size: 4, signed: true };
    pub const S64: FieldType = FieldType::Int { size: 8, signed: true };
    /// A kernel address printed as a symbol (`unsigned long`).
    pub const SYMBOL: FieldType = FieldType::U64;
    /// A pointer (`unsigned long` for filtering).
    pub const POINTER: FieldType = FieldType::U64;

    pub fn is_string(self) -> bool {
        !matches!(self, FieldType::Int { .. })
    }
}

/// One field of an event's format, for [`EventFields`] on a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub ty: FieldType,
}

impl<'a> Field<'a> {
    pub const fn new(name: &'a str, ty: FieldType) -> Self {
        Field { name, ty }
    }
}

/// How the parser finds an event's own fields: by name, giving the index that
/// [`EventRecord::number`] / [`EventRecord::string`] take and the field's type. The common
/// fields and the `CPU`/`COMM` pseudo-fields are built in (looked up after the event's fields, as
/// in Linux, so an event field called `cpu` hides the pseudo-field).
pub trait EventFields {
    fn lookup(&self, name: &str) -> Option<(usize, FieldType)>;
}

impl EventFields for [Field<'_>] {
    fn lookup(&self, name: &str) -> Option<(usize, FieldType)> {
        self.iter().position(|f| f.name == name).map(|i| (i, self[i].ty))
    }
}

impl<const N: usize> EventFields for [Field<'_>; N] {
    fn lookup(&self, name: &str) -> Option<(usize, FieldType)> {
        self[..].lookup(name)
    }
}

impl EventFields for Vec<Field<'_>> {
    fn lookup(&self, name: &str) -> Option<(usize, FieldType)> {
        self[..].lookup(name)
    }
}

/// The fields every event has in front of its own (Linux's `struct trace_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommonField {
    /// `unsigned short common_type`: the event id.
    Type,
    /// `unsigned char common_flags`: irqs-off, hardirq, softirq, need-resched...
    Flags,
    /// `unsigned char common_preempt_count`.
    PreemptCount,
    /// `int common_pid`.
    Pid,
}

impl CommonField {
    /// The common fields in Linux's format order, with their names and types.
    pub const ALL: [(&'static str, CommonField, FieldType); 4] = [
        ("common_type", CommonField::Type, FieldType::U16),
        ("common_flags", CommonField::Flags, FieldType::U8),
        ("common_preempt_count", CommonField::PreemptCount, FieldType::U8),
        ("common_pid", CommonField::Pid, FieldType::S32),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.1 == self).map_or("", |e| e.0)
    }

    pub fn ty(self) -> FieldType {
        Self::ALL.iter().find(|e| e.1 == self).map_or(FieldType::U8, |e| e.2)
    }
}

/// The names of the pseudo-field of the CPU the event fires on (Linux's generic `int` fields).
pub const CPU_FIELD_NAMES: [&str; 3] = ["CPU", "cpu", "common_cpu"];
/// The names of the pseudo-field of the current task's name (Linux's generic `char *` fields).
pub const COMM_FIELD_NAMES: [&str; 2] = ["COMM", "comm"];
/// Linux's `TASK_COMM_LEN`: `==` on `COMM` compares at most this many bytes.
pub const TASK_COMM_LEN: u16 = 16;

/// What a filter may read of an event while deciding whether to keep it. Implemented by the
/// record being built (before it is committed), so a filter never needs the ring buffer.
pub trait EventRecord {
    /// The raw bits of integer field `field` (an index from [`EventFields::lookup`]); only the
    /// low bytes of the field's size are looked at.
    fn number(&self, field: usize) -> u64;
    /// The bytes of string field `field`, without a terminator (a NUL ends it anyway).
    fn string(&self, field: usize) -> &[u8];
    /// The raw bits of a common field.
    fn common(&self, field: CommonField) -> u64;
    /// The CPU the event fires on (Linux: `raw_smp_processor_id()` at filter time).
    fn cpu(&self) -> u32;
    /// The current task's name (Linux: `current->comm`).
    fn comm(&self) -> &[u8];
}

/// Address to function, for `FIELD.function == NAME|ADDR` (Linux: kallsyms).
pub trait Symbols {
    /// The address of symbol `name` (`kallsyms_lookup_name`).
    fn lookup_name(&self, name: &str) -> Option<u64>;
    /// The function containing `addr`: its start and size (`kallsyms_lookup_size_offset`).
    fn lookup_addr(&self, addr: u64) -> Option<(u64, u64)>;
}

/// No symbols: every `.function` predicate fails with "Function not found".
pub struct NoSymbols;

impl Symbols for NoSymbols {
    fn lookup_name(&self, _name: &str) -> Option<u64> {
        None
    }
    fn lookup_addr(&self, _addr: u64) -> Option<(u64, u64)> {
        None
    }
}

/// What a filter is parsed against besides the fields.
#[derive(Clone, Copy)]
pub struct ParseEnv<'a> {
    /// The number of possible CPUs (`nr_cpu_ids`): the width of `CPUS{...}` masks, and the value
    /// of `N` in them. Clamped to 1..=64.
    pub nr_cpus: u32,
    pub symbols: &'a dyn Symbols,
}

impl<'a> ParseEnv<'a> {
    pub fn new(nr_cpus: u32) -> ParseEnv<'static> {
        ParseEnv { nr_cpus, symbols: &NoSymbols }
    }

    pub fn with_symbols(self, symbols: &'a dyn Symbols) -> ParseEnv<'a> {
        ParseEnv { nr_cpus: self.nr_cpus, symbols }
    }

    fn cpu_bits(&self) -> u32 {
        self.nr_cpus.clamp(1, 64)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Linux's reasons for refusing a filter (`err_text` in trace_events_filter.c), in Linux's order:
/// [`Reason::index`] is the `FILT_ERR_*` number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    InvalidOp = 1,
    TooManyOpen,
    TooManyClose,
    MissingQuote,
    MissingBraceOpen,
    MissingBraceClose,
    OperandTooLong,
    ExpectString,
    ExpectDigit,
    IllegalFieldOp,
    FieldNotFound,
    IllegalIntval,
    BadSubsysFilter,
    TooManyPreds,
    InvalidFilter,
    InvalidCpulist,
    IpFieldOnly,
    InvalidValue,
    NoFunction,
    /// Linux failed without naming a reason (its `lasterr` stayed 0): the filter file shows
    /// `Error: (0)` and `error_log` says `Error`.
    Errno,
    NoFilter,
}

/// Linux's `err_text`, indexed by `FILT_ERR_*` (entry 0 is "No error").
pub const ERR_TEXT: [&str; 22] = [
    "No error",
    "Invalid operator",
    "Too many '('",
    "Too few '('",
    "Missing matching quote",
    "Missing '{'",
    "Missing '}'",
    "Operand too long",
    "Expecting string field",
    "Expecting numeric field",
    "Illegal operation for field type",
    "Field not found",
    "Illegal integer value",
    "Couldn't find or set field in one of a subsystem's events",
    "Too many terms in predicate expression",
    "Meaningless filter expression",
    "Invalid cpulist",
    "Only 'ip' field is supported for function trace",
    "Invalid value (did you forget quotes)?",
    "Function not found",
    "Error",
    "No filter found",
];

impl Reason {
    pub const ALL: [Reason; 21] = [
        Reason::InvalidOp,
        Reason::TooManyOpen,
        Reason::TooManyClose,
        Reason::MissingQuote,
        Reason::MissingBraceOpen,
        Reason::MissingBraceClose,
        Reason::OperandTooLong,
        Reason::ExpectString,
        Reason::ExpectDigit,
        Reason::IllegalFieldOp,
        Reason::FieldNotFound,
        Reason::IllegalIntval,
        Reason::BadSubsysFilter,
        Reason::TooManyPreds,
        Reason::InvalidFilter,
        Reason::InvalidCpulist,
        Reason::IpFieldOnly,
        Reason::InvalidValue,
        Reason::NoFunction,
        Reason::Errno,
        Reason::NoFilter,
    ];

    /// Linux's `FILT_ERR_*` number.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Linux's text for the reason, exactly.
    pub fn text(self) -> &'static str {
        ERR_TEXT[self.index()]
    }
}

/// `EPERM`, `ENOENT`, `ESRCH`, `ENOMEM`, `EINVAL`: the error numbers Linux's filter write returns
/// (the odd ones are Linux's own: its paren and quote checks return -1, -2, -3).
pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ESRCH: i32 = 3;
pub const ENOMEM: i32 = 12;
pub const EINVAL: i32 = 22;

/// The `error_log` location of filter errors.
pub const ERROR_LOG_LOCATION: &str = "event filter parse error";

/// Linux's `MAX_FILTER_STR_VAL`: a quoted value must be shorter.
pub const MAX_FILTER_STR_VAL: usize = 256;

/// Linux refuses a write of this many bytes or more to a `filter` file (`EINVAL`, nothing
/// logged) before parsing: one page.
pub const MAX_WRITE: usize = 4096;

/// A refused filter: the reason, the position Linux reports, and the errno of the write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    text: Box<[u8]>,
    reason: Reason,
    pos: usize,
    errno: i32,
}

impl FilterError {
    fn new(text: &[u8], reason: Reason, pos: usize, errno: i32) -> Self {
        FilterError { text: text.into(), reason, pos, errno }
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The byte position Linux records (`lasterr_pos`); often one past the character at fault,
    /// as in Linux.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The positive errno Linux's write returns: `EINVAL` mostly, but `EPERM`, `ENOENT` or
    /// `ESRCH` for the failures Linux's parser reports with -1, -2 or -3 (docs/events-filters.md
    /// has the table).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The filter text as Linux keeps it (after [`parse_filter_write`]'s trimming).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The message Linux shows after `parse_error: ` (or `Error` for [`Reason::Errno`]).
    pub fn message(&self) -> &'static str {
        self.reason.text()
    }

    /// The error each event of a subsystem shows when a subsystem-wide filter could not be set
    /// on it (Linux replaces the reason with `BAD_SUBSYS_FILTER` at position 0).
    pub fn into_subsystem_error(self) -> FilterError {
        FilterError { reason: Reason::BadSubsysFilter, pos: 0, ..self }
    }

    /// What `cat filter` shows in Linux after this write: the filter, a caret under the position
    /// and `parse_error: REASON` (or `Error: (0)`), and the read's own final newline.
    pub fn filter_file(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.text).into_owned();
        if self.reason == Reason::Errno {
            out.push_str("\nError: (0)\n");
        } else {
            out.push('\n');
            // Linux clamps the position to the text and prints the caret right-aligned in a
            // field one wider than the position, except at 0: the caret lands at that column.
            for _ in 0..self.pos.min(self.text.len()) {
                out.push(' ');
            }
            out.push_str("^\nparse_error: ");
            out.push_str(self.reason.text());
            out.push('\n');
        }
        out.push('\n');
        out
    }

    /// The `error_log` entry Linux adds for this error, stamped `ts_ns` (nanoseconds of the
    /// trace clock).
    pub fn error_log_entry(&self, ts_ns: u64) -> String {
        // An unnamed failure is logged as "Error" with the caret at 0.
        let pos = if self.reason == Reason::Errno { 0 } else { self.pos as u16 };
        error_log_entry(ts_ns, ERROR_LOG_LOCATION, self.reason.text(), &self.text, pos)
    }
}

impl core::fmt::Display for FilterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (at {})", self.reason.text(), self.pos)
    }
}

/// One `error_log` entry in Linux's layout (`tracing_log_err`):
///
/// ```text
/// [    5.123456] LOCATION: error: REASON
///   Command: COMMAND
///              ^
/// ```
///
/// The caret sits under byte `pos` of the command (Linux keeps the position as a `u16`).
pub fn error_log_entry(ts_ns: u64, location: &str, reason: &str, command: &[u8], pos: u16) -> String {
    const CMD_PREFIX: &str = "  Command: ";
    let mut out = String::new();
    let _ = write!(out, "[{:5}.{:06}] {}: error: {}", ts_ns / 1_000_000_000, ts_ns % 1_000_000_000 / 1000, location, reason);
    out.push('\n');
    out.push_str(CMD_PREFIX);
    out.push_str(&String::from_utf8_lossy(command));
    out.push('\n');
    for _ in 0..CMD_PREFIX.len() + pos as usize {
        out.push(' ');
    }
    out.push_str("^\n");
    out
}

// ---------------------------------------------------------------------------------------------
// The compiled filter.

/// The operators, in the order Linux tries them (`<=` before `<`, `>=` before `>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Glob,
    Ne,
    Eq,
    Le,
    Lt,
    Ge,
    Gt,
    Band,
}

const OPS: [(&[u8], Op); 8] = [
    (b"~", Op::Glob),
    (b"!=", Op::Ne),
    (b"==", Op::Eq),
    (b"<=", Op::Le),
    (b"<", Op::Lt),
    (b">=", Op::Ge),
    (b">", Op::Gt),
    (b"&", Op::Band),
];

/// Where an integer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntSrc {
    Event(usize),
    Common(CommonField),
}

/// Where a string comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrSrc {
    Event(usize),
    Comm,
}

/// How a string pattern matches (Linux's `MATCH_*`, chosen once at parse time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrMatch {
    /// The whole string (bounded by `cap` for fixed arrays, as Linux's `strncmp`).
    Full,
    /// `abc*`
    Front,
    /// `*abc*`
    Middle,
    /// `*abc`
    End,
    /// Anything else with `*`, `?`, `[` or `\`.
    Glob,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pred {
    /// `==`/`!=` on an integer: the field's low `size` bytes against `val` (already cut to them).
    IntEq { src: IntSrc, size: u8, val: u64, negate: bool },
    /// `<`, `<=`, `>`, `>=`, `&` on an integer of `size` bytes, signed or not.
    IntCmp { src: IntSrc, size: u8, signed: bool, op: Op, val: u64 },
    /// The `CPU` pseudo-field against a number: `int` comparisons; `&` never matches (Linux).
    Cpu { op: Op, val: i32 },
    /// The `CPU` pseudo-field against `CPUS{...}` of several CPUs.
    CpuInMask { op: Op, mask: u64 },
    /// An integer field against `CPUS{...}` of several CPUs: its low `size` bytes as a CPU number.
    IntInMask { src: IntSrc, size: u8, op: Op, mask: u64, nr_cpus: u32 },
    /// `FIELD.function ==`/`!=`: `start <= value < end`.
    Function { src: IntSrc, start: u64, end: u64, negate: bool },
    /// `==`, `!=`, `~` on a string.
    Str { src: StrSrc, cap: Option<u16>, how: StrMatch, pattern: Box<[u8]>, negate: bool },
    /// A comparison Linux has no function for (an integer field of an odd size): never true.
    Never,
}

fn mask_of(size: u8) -> u64 {
    match size {
        8.. => u64::MAX,
        n => (1u64 << (8 * n as u32)) - 1,
    }
}

fn sign_extend(v: u64, size: u8) -> i64 {
    match size {
        1 => v as u8 as i8 as i64,
        2 => v as u16 as i16 as i64,
        4 => v as u32 as i32 as i64,
        _ => v as i64,
    }
}

fn load_int<R: EventRecord + ?Sized>(rec: &R, src: IntSrc) -> u64 {
    match src {
        IntSrc::Event(i) => rec.number(i),
        IntSrc::Common(c) => rec.common(c),
    }
}

/// Linux's `do_filter_scalar_cpumask`: a CPU number against a mask of several CPUs.
fn cpu_in_mask(op: Op, cpu: u32, mask: u64) -> bool {
    match op {
        Op::Eq => false,
        Op::Ne => true,
        Op::Band => cpu < 64 && mask >> cpu & 1 == 1,
        _ => false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl Pred {
    fn eval<R: EventRecord + ?Sized>(&self, rec: &R) -> bool {
        match *self {
            Pred::IntEq { src, size, val, negate } => (load_int(rec, src) & mask_of(size) == val) != negate,
            Pred::IntCmp { src, size, signed, op, val } => {
                let v = load_int(rec, src) & mask_of(size);
                let ord = if signed {
                    sign_extend(v, size).cmp(&sign_extend(val, size))
                } else {
                    v.cmp(&val)
                };
                match op {
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                    Op::Gt => ord.is_gt(),
                    Op::Ge => ord.is_ge(),
                    Op::Band => v & val != 0,
                    _ => false,
                }
            }
            Pred::Cpu { op, val } => {
                let cpu = rec.cpu() as i32;
                match op {
                    Op::Eq => cpu == val,
                    Op::Ne => cpu != val,
                    Op::Lt => cpu < val,
                    Op::Le => cpu <= val,
                    Op::Gt => cpu > val,
                    Op::Ge => cpu >= val,
                    _ => false,
                }
            }
            Pred::CpuInMask { op, mask } => cpu_in_mask(op, rec.cpu(), mask),
            Pred::IntInMask { src, size, op, mask, nr_cpus } => {
                // Linux reads the field as its unsigned type and keeps an `unsigned int`.
                let cpu = (load_int(rec, src) & mask_of(size)) as u32;
                cpu < nr_cpus && cpu_in_mask(op, cpu, mask)
            }
            Pred::Function { src, start, end, negate } => {
                let v = load_int(rec, src);
                (start <= v && v < end) != negate
            }
            Pred::Str { src, cap, how, ref pattern, negate } => {
                let raw = match src {
                    StrSrc::Event(i) => rec.string(i),
                    StrSrc::Comm => rec.comm(),
                };
                let mut s = until_nul(raw);
                let mut p: &[u8] = pattern;
                if let Some(cap) = cap {
                    let cap = cap as usize;
                    s = &s[..s.len().min(cap)];
                    if how == StrMatch::Full {
                        p = &p[..p.len().min(cap)];
                    }
                }
                let hit = match how {
                    StrMatch::Full => s == p,
                    StrMatch::Front => s.starts_with(p),
                    StrMatch::Middle => contains(s, p),
                    StrMatch::End => s.ends_with(p),
                    StrMatch::Glob => glob_match(p, s),
                };
                hit != negate
            }
            Pred::Never => false,
        }
    }
}

/// One step of the program: evaluate `pred`; when the result equals `branch_on`, continue after
/// step `target` (a step index, always ahead; `len` means "false"), else with the next step.
/// Running off the end means "true".
#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    pred: Pred,
    branch_on: bool,
    target: usize,
}

/// A parsed filter, ready to run on records: a short branch program (Linux's `prog_entry`
/// array), evaluated without allocating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    text: Box<[u8]>,
    prog: Box<[Step]>,
}

impl EventFilter {
    /// The filter as written (what reading the `filter` file shows, plus a newline).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The number of predicates.
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }

    /// Does the event in `rec` pass the filter (is it kept)?
    pub fn matches<R: EventRecord + ?Sized>(&self, rec: &R) -> bool {
        let n = self.prog.len();
        let mut i = 0;
        while i < n {
            let step = &self.prog[i];
            if step.pred.eval(rec) == step.branch_on {
                i = step.target;
            }
            i += 1;
        }
        i == n
    }

    /// What `cat filter` shows for this filter.
    pub fn filter_file(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.text).into_owned();
        out.push('\n');
        out
    }
}

/// What `cat filter` shows for an event without a filter.
pub const NO_FILTER_TEXT: &str = "none\n";

/// A successful write to a `filter` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterWrite {
    /// `0`: remove the filter.
    Clear,
    /// A new filter.
    Set(EventFilter),
}

/// A write to an event's `filter` file, as Linux takes it: the text ends at a NUL byte, trailing
/// blanks (the newline of `echo`) are dropped, `0` (blanks around allowed) removes the filter,
/// anything else is parsed with [`parse`]. Writes of [`MAX_WRITE`] bytes or more are the
/// caller's to refuse (Linux: `EINVAL` without an `error_log` entry).
pub fn parse_filter_write<F: EventFields + ?Sized>(input: &[u8], fields: &F, env: &ParseEnv) -> Result<FilterWrite, FilterError> {
    let text = until_nul(input);
    let end = text.iter().rposition(|&b| !is_space(b)).map_or(0, |i| i + 1);
    let text = &text[..end];
    let start = text.iter().position(|&b| !is_space(b)).unwrap_or(end);
    if &text[start..] == b"0" {
        return Ok(FilterWrite::Clear);
    }
    parse(text, fields, env).map(FilterWrite::Set)
}

/// Parses a filter expression (the whole of `text`; a NUL byte ends it) against an event's
/// fields and compiles it.
pub fn parse<F: EventFields + ?Sized>(text: &[u8], fields: &F, env: &ParseEnv) -> Result<EventFilter, FilterError> {
    let text = until_nul(text);
    let parser = Parser { s: text, fields, env };
    match parser.run() {
        Ok(prog) => Ok(EventFilter { text: text.into(), prog: prog.into_boxed_slice() }),
        Err(e) => Err(FilterError::new(text, e.reason, e.pos, e.errno)),
    }
}

// ---------------------------------------------------------------------------------------------
// The parser. Its structure follows Linux's (a first scan that counts and checks parens and
// quotes, then one pass that parses predicates and links them into a branch program, then two
// passes over the program), so that the same inputs are refused with the same reason at the same
// position, and the same odd inputs are accepted (a trailing `&&`, `||` or `!` is ignored).

/// An error inside the parser.
struct PErr {
    reason: Reason,
    pos: usize,
    errno: i32,
}

fn perr(reason: Reason, pos: usize, errno: i32) -> PErr {
    PErr { reason, pos, errno }
}

/// A failure Linux gives no reason for.
fn unnamed(errno: i32) -> PErr {
    PErr { reason: Reason::Errno, pos: 0, errno }
}

/// The kinds of fields the parser tells apart (Linux's `filter_type`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int { src: IntSrc, size: u8, signed: bool },
    Cpu,
    Str { src: StrSrc, cap: Option<u16> },
}

/// Per paren level: the inversion in force and the `&&`/`||` waiting for its right side.
const INVERT: u8 = 1;
const PENDING_AND: u8 = 2;
const PENDING_OR: u8 = 4;

/// A program step while the program is being built (targets may still be -1).
struct Draft {
    pred: Pred,
    branch_on: bool,
    target: isize,
}

struct Parser<'a, 'f, F: ?Sized> {
    s: &'a [u8],
    fields: &'f F,
    env: &'a ParseEnv<'a>,
}

/// Linux's `kstrtoull(s, 0)` without the sign: `0x` hex (when a hex digit follows), leading `0`
/// octal, else decimal; the whole token must be digits of the base; overflow fails.
fn parse_unsigned_radix0(t: &[u8]) -> Option<u64> {
    let (base, digits) = if at(t, 0) == b'0' {
        if at(t, 1) | 0x20 == b'x' && at(t, 2).is_ascii_hexdigit() {
            (16u64, &t[2..])
        } else {
            (8, t)
        }
    } else {
        (10, t)
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut n = 0;
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            _ if (c | 0x20).is_ascii_lowercase() && (b'a'..=b'f').contains(&(c | 0x20)) => (c | 0x20) - b'a' + 10,
            _ => break,
        } as u64;
        if d >= base {
            break;
        }
        match value.checked_mul(base).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        n += 1;
    }
    if overflow || n == 0 || n != digits.len() {
        return None;
    }
    Some(value)
}

/// `kstrtoull(s, 0)`: a leading `+` is allowed.
fn kstrtoull(t: &[u8]) -> Option<u64> {
    parse_unsigned_radix0(t.strip_prefix(b"+").unwrap_or(t))
}

/// `kstrtoll(s, 0)`, as the two's-complement bits.
fn kstrtoll(t: &[u8]) -> Option<u64> {
    if let Some(rest) = t.strip_prefix(b"-") {
        let u = parse_unsigned_radix0(rest)?;
        let neg = 0u64.wrapping_sub(u);
        if (neg as i64) > 0 {
            return None;
        }
        Some(neg)
    } else {
        let u = kstrtoull(t)?;
        if (u as i64) < 0 {
            return None;
        }
        Some(u)
    }
}

/// Linux's `bitmap_parselist` for a mask of `nbits` (1..=64) CPUs: comma- or blank-separated
/// regions `A`, `A-B`, `A-B:USED/GROUP`, `all` (any case), with `N` for the last CPU; a newline
/// ends the list.
fn parse_cpulist(s: &[u8], nbits: u32) -> Option<u64> {
    let end_of_str = |c: u8| c == 0 || c == b'\n';
    let separator = |c: u8| is_space(c) || c == b',';
    let end_of_region = |c: u8| separator(c) || end_of_str(c);
    let last = nbits - 1;
    // A decimal number that fits an `unsigned int`, or `N`.
    let number = |i: &mut usize| -> Option<u64> {
        if at(s, *i) == b'N' {
            *i += 1;
            return Some(last as u64);
        }
        let start = *i;
        let mut v: u64 = 0;
        while at(s, *i).is_ascii_digit() {
            v = v.saturating_mul(10).saturating_add((at(s, *i) - b'0') as u64);
            *i += 1;
        }
        if *i == start || v > u32::MAX as u64 {
            return None;
        }
        Some(v)
    };
    let mut mask = 0u64;
    let mut i = 0;
    loop {
        while separator(at(s, i)) {
            i += 1;
        }
        if end_of_str(at(s, i)) {
            return Some(mask);
        }
        let (start, end);
        let mut group = None;
        if s.len() >= i + 3 && s[i..i + 3].eq_ignore_ascii_case(b"all") {
            start = 0;
            end = last as u64;
            i += 3;
        } else {
            start = number(&mut i)?;
            if end_of_region(at(s, i)) {
                end = start;
            } else if at(s, i) == b'-' {
                i += 1;
                end = number(&mut i)?;
            } else {
                return None;
            }
        }
        let mut finished = false;
        if end_of_region(at(s, i)) {
            finished = end_of_str(at(s, i));
        } else if at(s, i) == b':' {
            i += 1;
            let used = number(&mut i)?;
            if at(s, i) != b'/' {
                return None;
            }
            i += 1;
            group = Some((used, number(&mut i)?));
        } else {
            return None;
        }
        let (used, len) = group.unwrap_or((end + 1, end + 1));
        if start > end || len == 0 || used > len || end >= nbits as u64 {
            return None;
        }
        let mut first = start;
        while first <= end {
            let count = (end - first + 1).min(used);
            for bit in first..first + count {
                mask |= 1 << bit;
            }
            first += len;
        }
        if finished {
            return Some(mask);
        }
    }
}

/// How `~` patterns are taken apart (Linux's `filter_parse_regex`): a leading `!` inverts; a
/// pattern starting with a digit is compared whole; `*x`, `x*` and `*x*` are suffix, prefix and
/// substring tests; any other `*`, `?`, `[` or `\` makes it a full glob.
fn classify_glob(p: &[u8]) -> (bool, StrMatch, &[u8]) {
    let (negate, p) = match p.strip_prefix(b"!") {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    if at(p, 0).is_ascii_digit() {
        return (negate, StrMatch::Full, p);
    }
    let mut how = StrMatch::Full;
    let mut end = p.len();
    for (i, &c) in p.iter().enumerate() {
        match c {
            b'*' if i == 0 => how = StrMatch::End,
            b'*' if i == p.len() - 1 => {
                how = if how == StrMatch::End { StrMatch::Middle } else { StrMatch::Front };
                end = i;
                break;
            }
            b'*' | b'[' | b'?' | b'\\' => return (negate, StrMatch::Glob, p),
            _ => {}
        }
    }
    let start = usize::from(at(p, 0) == b'*').min(end);
    (negate, how, &p[start..end])
}

/// Linux's filter glob (`lib/glob.c`), on bytes: `*` any run, `?` one byte, `[...]` a class
/// (`!` first complements it, `a-z` ranges, `]` first is literal, an unclosed `[` is literal),
/// `\x` the byte `x`. The whole of `text` must match. One backtrack point, no recursion.
pub fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // The pattern position after the last `*` and the text position that star reaches so far.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let c = at(text, t);
        let matched = match at(pat, p) {
            b'?' => {
                if c == 0 {
                    return false;
                }
                Some(p + 1)
            }
            b'*' => {
                if p + 1 >= pat.len() {
                    return true;
                }
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            b'[' => {
                if c == 0 {
                    return false;
                }
                match class_match(pat, p + 1, c) {
                    Some((true, next)) => Some(next),
                    Some((false, _)) => None,
                    None => (c == b'[').then_some(p + 1),
                }
            }
            b'\\' => {
                let d = at(pat, p + 1);
                if c == d && d == 0 {
                    return true;
                }
                (c == d).then_some(p + 2)
            }
            d => {
                if c == d && d == 0 {
                    return true;
                }
                (c == d).then_some(p + 1)
            }
        };
        match matched {
            Some(next) => {
                p = next;
                t += 1;
            }
            None => match star {
                Some((sp, st)) if c != 0 => {
                    star = Some((sp, st + 1));
                    p = sp;
                    t = st + 1;
                }
                _ => return false,
            },
        }
    }
}

/// A character class starting at `q` (just after `[`) against byte `c`: whether it matches and
/// where the pattern goes on, or `None` when the class is not closed (then `[` is literal).
fn class_match(pat: &[u8], mut q: usize, c: u8) -> Option<(bool, usize)> {
    let inverted = at(pat, q) == b'!';
    if inverted {
        q += 1;
    }
    let mut lo = at(pat, q);
    q += 1;
    let mut hit = false;
    loop {
        if lo == 0 {
            return None;
        }
        let mut hi = lo;
        if at(pat, q) == b'-' && at(pat, q + 1) != b']' {
            hi = at(pat, q + 1);
            if hi == 0 {
                return None;
            }
            q += 2;
        }
        hit |= lo <= c && c <= hi;
        lo = at(pat, q);
        q += 1;
        if lo == b']' {
            break;
        }
    }
    Some((hit != inverted, q))
}

impl<F: EventFields + ?Sized> Parser<'_, '_, F> {
    fn c(&self, i: usize) -> u8 {
        at(self.s, i)
    }

    fn run(&self) -> Result<Vec<Step>, PErr> {
        let nr_preds = self.count()?;
        if nr_preds == 0 {
            return Err(unnamed(EINVAL));
        }
        self.build(nr_preds + 2)
    }

    /// The first scan (Linux's `calc_stack`): quotes must close, parens must balance, and the
    /// number of predicates is estimated (each run of text between `(`, `)`, `&&` and `||`).
    fn count(&self) -> Result<usize, PErr> {
        let s = self.s;
        let mut in_pred = false;
        let mut preds = 0;
        let mut open = 1usize;
        let mut quote = 0u8;
        let mut last_quote = 0;
        let mut i = 0;
        while i < s.len() {
            let ch = s[i];
            i += 1;
            if is_space(ch) {
                continue;
            }
            if quote != 0 {
                if ch == quote {
                    quote = 0;
                }
                continue;
            }
            match ch {
                b'\'' | b'"' => {
                    quote = ch;
                    last_quote = i - 1;
                }
                // Only the first of the pair is skipped: the second starts a "predicate" unless
                // a third follows. Odd, but it only sizes an array.
                b'&' | b'|' if self.c(i) == ch => {
                    in_pred = false;
                    continue;
                }
                b'(' => {
                    in_pred = false;
                    open += 1;
                    continue;
                }
                b')' => {
                    in_pred = false;
                    if open == 1 {
                        return Err(perr(Reason::TooManyClose, i - 1, EPERM));
                    }
                    open -= 1;
                    continue;
                }
                _ => {}
            }
            if !in_pred {
                preds += 1;
                in_pred = true;
            }
        }
        if quote != 0 {
            return Err(perr(Reason::MissingQuote, last_quote, ESRCH));
        }
        if open != 1 {
            // The last '(' left open, found from the end (index 0 is never looked at: an open
            // paren there is reported at 0 anyway).
            let mut level = open;
            let mut j = s.len() - 1;
            while j != 0 {
                let ch = s[j];
                if quote != 0 {
                    if ch == quote {
                        quote = 0;
                    }
                } else {
                    match ch {
                        b'(' if level == open => return Err(perr(Reason::TooManyOpen, j, ENOENT)),
                        b'(' => level -= 1,
                        b')' => level += 1,
                        b'\'' | b'"' => quote = ch,
                        _ => {}
                    }
                }
                j -= 1;
            }
            return Err(perr(Reason::TooManyOpen, 0, ENOENT));
        }
        Ok(preds)
    }

    /// The main pass (Linux's `predicate_parse`): predicates are parsed where they stand and
    /// linked into a branch program as the `&&`/`||` after them show their grouping; then the
    /// jumps are shortened and the inversions folded in.
    fn build(&self, max_preds: usize) -> Result<Vec<Step>, PErr> {
        let mut levels: Vec<u8> = alloc::vec![0];
        let mut invert = false;
        let mut prog: Vec<Draft> = Vec::new();
        let mut inverts: Vec<bool> = Vec::new();
        // The errno of the failures Linux reports without setting one itself.
        let mut ret = ENOMEM;
        let mut ptr = 0;
        'outer: while self.c(ptr) != 0 {
            let next = ptr;
            ptr += 1;
            let ch = self.c(next);
            if is_space(ch) {
                continue;
            }
            if ch == b'(' {
                levels.push(invert as u8);
                continue;
            }
            // `!` inverts, except the `!` of `!=` (and `!~`, which is no operator).
            if ch == b'!' && !matches!(self.c(next + 1), b'=' | b'~') {
                invert = !invert;
                continue;
            }
            if prog.len() >= max_preds {
                return Err(perr(Reason::TooManyPreds, next, ret));
            }
            let (pred, used) = self.predicate(next)?;
            inverts.push(invert);
            prog.push(Draft { pred, branch_on: false, target: prog.len() as isize - 1 });
            ptr = next + used;
            ret = EPERM;
            // After a predicate: blanks, then `)`, `&&`, `||` or the end.
            loop {
                let next = ptr;
                ptr += 1;
                let ch = self.c(next);
                if is_space(ch) {
                    continue;
                }
                match ch {
                    b')' | 0 => {}
                    b'&' | b'|' if self.c(next + 1) == ch => ptr += 1,
                    _ => return Err(perr(Reason::TooManyPreds, next, EPERM)),
                }
                let last = prog.len() - 1;
                let top = levels.len() - 1;
                invert = levels[top] & INVERT != 0;
                if levels[top] & PENDING_AND != 0 {
                    link(&mut prog, last, invert)?;
                    levels[top] &= !PENDING_AND;
                }
                if ch == b'&' {
                    levels[top] |= PENDING_AND;
                    break;
                }
                if levels[top] & PENDING_OR != 0 {
                    link(&mut prog, last, !invert)?;
                    levels[top] &= !PENDING_OR;
                }
                if ch == b'|' {
                    levels[top] |= PENDING_OR;
                    break;
                }
                if ch == 0 {
                    break 'outer;
                }
                if top == 0 {
                    return Err(perr(Reason::TooManyClose, ptr, EPERM));
                }
                levels.pop();
            }
        }
        if levels.len() != 1 {
            return Err(perr(Reason::TooManyOpen, ptr, ret));
        }
        if prog.is_empty() {
            return Err(perr(Reason::NoFilter, ptr, EINVAL));
        }
        let n = prog.len();
        prog[n - 1].target = n as isize;
        prog[n - 1].branch_on = false;
        // Steps n and n+1 are "true" and "false": branch_on false, targets 1 and 0.
        let after = |prog: &[Draft], t: usize| -> (bool, isize) {
            match prog.get(t) {
                Some(d) => (d.branch_on, d.target),
                None => (false, if t == n { 1 } else { 0 }),
            }
        };
        // A jump to a step that branches the same way on the same value can go where that step
        // goes.
        for i in (0..n - 1).rev() {
            let t = usize::try_from(prog[i].target).map_err(|_| unnamed(EINVAL))?;
            let (branch_on, target) = after(&prog, t);
            if prog[i].branch_on == branch_on {
                prog[i].target = target;
            }
        }
        let mut out = Vec::with_capacity(n);
        for (i, (d, inv)) in prog.into_iter().zip(inverts).enumerate() {
            let target = usize::try_from(d.target).ok().filter(|&t| t > i).ok_or_else(|| unnamed(EINVAL))?;
            out.push(Step { pred: d.pred, branch_on: d.branch_on != inv, target });
        }
        Ok(out)
    }

    /// Looks a field up: the event's own, then the `CPU`/`COMM` pseudo-fields, then the common
    /// fields.
    fn field(&self, name: &[u8]) -> Option<Kind> {
        let name = core::str::from_utf8(name).ok()?;
        if let Some((index, ty)) = self.fields.lookup(name) {
            return Some(match ty {
                FieldType::Int { size, signed } => Kind::Int { src: IntSrc::Event(index), size, signed },
                FieldType::FixedString(len) => Kind::Str { src: StrSrc::Event(index), cap: Some(len) },
                FieldType::DynString => Kind::Str { src: StrSrc::Event(index), cap: None },
            });
        }
        if CPU_FIELD_NAMES.contains(&name) {
            return Some(Kind::Cpu);
        }
        if COMM_FIELD_NAMES.contains(&name) {
            return Some(Kind::Str { src: StrSrc::Comm, cap: Some(TASK_COMM_LEN) });
        }
        CommonField::ALL.iter().find(|c| c.0 == name).map(|&(_, field, ty)| match ty {
            FieldType::Int { size, signed } => Kind::Int { src: IntSrc::Common(field), size, signed },
            _ => Kind::Int { src: IntSrc::Common(field), size: 1, signed: false },
        })
    }

    /// One predicate starting at `start` (Linux's `parse_pred`): returns it and how many bytes
    /// it took. Errors are reported at `start + 1 + offset`, as Linux does.
    fn predicate(&self, start: usize) -> Result<(Pred, usize), PErr> {
        let base = start + 1;
        let c = |i: usize| self.c(start + i);
        let bad = |reason: Reason, i: usize| perr(reason, base + i, EINVAL);
        let mut i = 0;
        while is_space(c(i)) {
            i += 1;
        }
        let name_start = i;
        while is_alnum(c(i)) || c(i) == b'_' {
            i += 1;
        }
        if i == name_start {
            // Linux returns -1 here without a reason.
            return Err(unnamed(EPERM));
        }
        let kind = self.field(&self.s[start + name_start..start + i]).ok_or_else(|| bad(Reason::FieldNotFound, i))?;
        let rest = |i: usize| self.s.get(start + i..).unwrap_or(&[]);
        // `.ustring` only changes how Linux reads `char *` strings from user space: nothing here.
        if rest(i).starts_with(b".ustring") {
            i += 8;
        }
        let function = rest(i).starts_with(b".function");
        if function {
            i += 9;
        }
        while is_space(c(i)) {
            i += 1;
        }
        let (op_text, op) = OPS.iter().find(|(t, _)| rest(i).starts_with(t)).copied().ok_or_else(|| bad(Reason::InvalidOp, i))?;
        i += op_text.len();
        while is_space(c(i)) {
            i += 1;
        }
        let value_start = i;

        if function {
            let src = match kind {
                Kind::Int { src, size: 8, .. } => src,
                _ => return Err(bad(Reason::IllegalFieldOp, i)),
            };
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad(Reason::InvalidOp, i));
            }
            let addr = if is_digit(c(i)) {
                while is_alnum(c(i)) {
                    i += 1;
                }
                if i - value_start >= 24 {
                    return Err(bad(Reason::OperandTooLong, i));
                }
                kstrtoull(&self.s[start + value_start..start + i]).ok_or_else(|| bad(Reason::InvalidValue, i))?
            } else {
                while c(i) != 0 && !is_space(c(i)) {
                    i += 1;
                }
                let name = core::str::from_utf8(&self.s[start + value_start..start + i]).ok();
                match name.and_then(|n| self.env.symbols.lookup_name(n)) {
                    Some(a) if a != 0 => a,
                    _ => return Err(bad(Reason::NoFunction, i)),
                }
            };
            let (fstart, size) = self.env.symbols.lookup_addr(addr).ok_or_else(|| bad(Reason::NoFunction, i))?;
            let pred = Pred::Function { src, start: fstart, end: fstart.wrapping_add(size), negate: op == Op::Ne };
            return Ok((pred, i));
        }

        if rest(i).starts_with(b"CPUS") {
            if matches!(kind, Kind::Str { .. }) || !matches!(op, Op::Eq | Op::Ne | Op::Band) {
                return Err(bad(Reason::IllegalFieldOp, i));
            }
            i += 4;
            let brace = c(i);
            i += 1;
            if brace != b'{' {
                return Err(bad(Reason::MissingBraceOpen, i));
            }
            let list_start = i;
            while c(i) != 0 && c(i) != b'}' {
                i += 1;
            }
            if c(i) != b'}' {
                return Err(bad(Reason::MissingBraceClose, i));
            }
            if i == list_start {
                return Err(bad(Reason::InvalidCpulist, i));
            }
            let nbits = self.env.cpu_bits();
            let mask = parse_cpulist(&self.s[start + list_start..start + i], nbits).ok_or_else(|| bad(Reason::InvalidCpulist, i))?;
            i += 1;
            let pred = if mask.count_ones() == 1 {
                // One CPU: a plain comparison, `&` becoming `==`.
                let cpu = mask.trailing_zeros() as u64;
                let op = if op == Op::Band { Op::Eq } else { op };
                match kind {
                    Kind::Cpu => Pred::Cpu { op, val: cpu as i32 },
                    Kind::Int { src, size, .. } if matches!(size, 1 | 2 | 4 | 8) => Pred::IntEq { src, size, val: cpu & mask_of(size), negate: op == Op::Ne },
                    _ => Pred::Never,
                }
            } else {
                match kind {
                    Kind::Cpu => Pred::CpuInMask { op, mask },
                    Kind::Int { src, size, .. } if matches!(size, 1 | 2 | 4 | 8) => Pred::IntInMask { src, size, op, mask, nr_cpus: nbits },
                    _ => Pred::Never,
                }
            };
            return Ok((pred, i));
        }

        let q = c(i);
        if q == b'\'' || q == b'"' {
            let negate_op = match op {
                Op::Ne => true,
                Op::Glob | Op::Eq => false,
                _ => return Err(bad(Reason::IllegalFieldOp, i)),
            };
            let (src, cap) = match kind {
                Kind::Str { src, cap } => (src, cap),
                _ => return Err(bad(Reason::ExpectDigit, i)),
            };
            i += 1;
            while c(i) != 0 && c(i) != q {
                i += 1;
            }
            if c(i) == 0 {
                return Err(bad(Reason::MissingQuote, i));
            }
            let value = &self.s[start + value_start + 1..start + i];
            if value.len() >= MAX_FILTER_STR_VAL {
                return Err(bad(Reason::OperandTooLong, i));
            }
            let (negate, how, pattern) = if op == Op::Glob { classify_glob(value) } else { (negate_op, StrMatch::Full, value) };
            i += 1;
            return Ok((Pred::Str { src, cap, how, pattern: pattern.into(), negate }, i));
        }

        if is_digit(q) || q == b'-' {
            if matches!(kind, Kind::Str { .. }) {
                return Err(bad(Reason::ExpectString, i));
            }
            if op == Op::Glob {
                return Err(bad(Reason::IllegalFieldOp, i));
            }
            if q == b'-' {
                i += 1;
            }
            while is_alnum(c(i)) {
                i += 1;
            }
            if i - value_start >= 24 {
                return Err(bad(Reason::OperandTooLong, i));
            }
            let token = &self.s[start + value_start..start + i];
            let signed = match kind {
                Kind::Int { signed, .. } => signed,
                _ => true, // CPU is an `int`
            };
            let val = if signed { kstrtoll(token) } else { kstrtoull(token) };
            let val = val.ok_or_else(|| bad(Reason::IllegalIntval, value_start))?;
            let pred = match kind {
                Kind::Cpu => Pred::Cpu { op, val: val as i32 },
                Kind::Int { src, size, signed } if matches!(size, 1 | 2 | 4 | 8) => match op {
                    Op::Eq | Op::Ne => Pred::IntEq { src, size, val: val & mask_of(size), negate: op == Op::Ne },
                    _ => Pred::IntCmp { src, size, signed, op, val: val & mask_of(size) },
                },
                _ => Pred::Never,
            };
            return Ok((pred, i));
        }

        Err(bad(Reason::InvalidValue, i))
    }
}

/// Linux's `update_preds`: the step that `prog[n]` was waiting on now branches (on `branch_on`)
/// to just after `n`, and `prog[n]` takes over what that step was waiting on.
fn link(prog: &mut [Draft], n: usize, branch_on: bool) -> Result<(), PErr> {
    let t = usize::try_from(prog[n].target).ok().filter(|&t| t < prog.len()).ok_or_else(|| unnamed(EINVAL))?;
    let s = prog[t].target;
    prog[t].branch_on = branch_on;
    prog[t].target = n as isize;
    prog[n].target = s;
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;
    use core::cell::Cell;
    use std::format;

    // -----------------------------------------------------------------------------------------
    // A test event: one field of every integer type, a fixed and a dynamic string.

    const FIELDS: [Field<'static>; 10] = [
        Field::new("u8f", FieldType::U8),
        Field::new("s8f", FieldType::S8),
        Field::new("u16f", FieldType::U16),
        Field::new("s16f", FieldType::S16),
        Field::new("u32f", FieldType::U32),
        Field::new("s32f", FieldType::S32),
        Field::new("u64f", FieldType::U64),
        Field::new("s64f", FieldType::S64),
        Field::new("name", FieldType::FixedString(8)),
        Field::new("path", FieldType::DynString),
    ];
    const NAME: usize = 8;
    const PATH: usize = 9;
    const NR_CPUS: u32 = 4;

    #[derive(Clone, Debug, Default)]
    struct Rec {
        nums: [u64; 10],
        strs: [Vec<u8>; 10],
        common: [u64; 4],
        cpu: u32,
        comm: Vec<u8>,
        /// Bit i: field i was read (to check short circuits).
        visited: Cell<u32>,
    }

    impl Rec {
        fn with(field: usize, v: u64) -> Rec {
            let mut r = Rec::default();
            r.nums[field] = v;
            r
        }
        fn with_str(field: usize, s: &str) -> Rec {
            let mut r = Rec::default();
            r.strs[field] = s.as_bytes().to_vec();
            r
        }
    }

    fn common_index(f: CommonField) -> usize {
        CommonField::ALL.iter().position(|c| c.1 == f).unwrap()
    }

    impl EventRecord for Rec {
        fn number(&self, field: usize) -> u64 {
            self.visited.set(self.visited.get() | 1 << field);
            self.nums[field]
        }
        fn string(&self, field: usize) -> &[u8] {
            self.visited.set(self.visited.get() | 1 << field);
            &self.strs[field]
        }
        fn common(&self, field: CommonField) -> u64 {
            self.common[common_index(field)]
        }
        fn cpu(&self) -> u32 {
            self.cpu
        }
        fn comm(&self) -> &[u8] {
            &self.comm
        }
    }

    /// Two functions: `alpha` at 0x1000 (0x100 bytes) and `beta` at 0x2000 (0x80 bytes).
    struct Syms;
    const SYMS: [(&str, u64, u64); 2] = [("alpha", 0x1000, 0x100), ("beta", 0x2000, 0x80)];

    impl Symbols for Syms {
        fn lookup_name(&self, name: &str) -> Option<u64> {
            SYMS.iter().find(|s| s.0 == name).map(|s| s.1)
        }
        fn lookup_addr(&self, addr: u64) -> Option<(u64, u64)> {
            SYMS.iter().find(|s| s.1 <= addr && addr < s.1 + s.2).map(|s| (s.1, s.2))
        }
    }

    fn env() -> ParseEnv<'static> {
        ParseEnv::new(NR_CPUS).with_symbols(&Syms)
    }

    fn compile(text: &str) -> EventFilter {
        match parse(text.as_bytes(), &FIELDS, &env()) {
            Ok(f) => f,
            Err(e) => panic!("{text:?} refused: {e}"),
        }
    }

    fn refuse(text: &str) -> FilterError {
        match parse(text.as_bytes(), &FIELDS, &env()) {
            Ok(f) => panic!("{text:?} accepted: {f:?}"),
            Err(e) => e,
        }
    }

    fn check(text: &str, rec: &Rec, want: bool) {
        assert_eq!(compile(text).matches(rec), want, "{text:?} on {rec:?}");
    }

    // -----------------------------------------------------------------------------------------
    // Operators on every field type.

    #[test]
    fn integer_operators_on_every_type() {
        // (field, raw value, filter suffix, expected)
        let cases: &[(usize, u64, &str, bool)] = &[
            // u8: 200
            (0, 200, "== 200", true),
            (0, 200, "!= 200", false),
            (0, 200, "< 201", true),
            (0, 200, "<= 200", true),
            (0, 200, "> 199", true),
            (0, 200, ">= 201", false),
            (0, 200, "& 8", true),
            (0, 200, "& 0x37", false),
            (0, 200, "> 100", true),
            // the value is cut to the field's width, as Linux does: 456 & 0xff == 200
            (0, 200, "== 456", true),
            (0, 200, "< 300", false),
            // bits above the field's width in the record are not looked at
            (0, 0xff00 | 200, "== 200", true),
            // s8: 0xc8 is -56
            (1, 0xc8, "== -56", true),
            (1, 0xc8, "== 200", true),
            (1, 0xc8, "< 0", true),
            (1, 0xc8, "> 100", false),
            (1, 0xc8, ">= -56", true),
            (1, 0xc8, "<= -57", false),
            (1, 0xc8, "& 0x80", true),
            (1, 0xc8, "!= -56", false),
            // u16
            (2, 0x8000, "> 0x7fff", true),
            (2, 0x8000, "== 32768", true),
            (2, 0x8000, "& 0x7fff", false),
            (2, 0x8000, "<= 0100000", true),
            // s16
            (3, 0x8000, "< 0", true),
            (3, 0x8000, "== -32768", true),
            (3, 0x8000, "> -32768", false),
            (3, 0x7fff, "> -1", true),
            // u32
            (4, 0xffff_ffff, "== 4294967295", true),
            (4, 0xffff_ffff, "> 0", true),
            // s32
            (5, 0xffff_ffff, "== -1", true),
            (5, 0xffff_ffff, "< 0", true),
            (5, 0x8000_0000, "<= -2147483648", true),
            (5, 0x7fff_ffff, ">= 2147483647", true),
            // u64
            (6, u64::MAX, "== 0xffffffffffffffff", true),
            (6, u64::MAX, "== 18446744073709551615", true),
            (6, u64::MAX, "> 9223372036854775807", true),
            (6, 1 << 63, "& 0x8000000000000000", true),
            // s64
            (7, 1 << 63, "== -9223372036854775808", true),
            (7, 1 << 63, "< -9223372036854775807", true),
            (7, (1 << 63) - 1, "== 9223372036854775807", true),
            (7, (1 << 63) - 1, "> 0", true),
            (7, u64::MAX, "> -2", true),
            (7, u64::MAX, "< 0x0", true),
            (7, u64::MAX, "== -0x1", true),
        ];
        for &(field, raw, suffix, want) in cases {
            let text = format!("{} {}", FIELDS[field].name, suffix);
            check(&text, &Rec::with(field, raw), want);
        }
        // a negative number for an unsigned field is refused
        assert_eq!(refuse("u32f == -1").reason(), Reason::IllegalIntval);
    }

    #[test]
    fn numbers_as_kstrtox_reads_them() {
        let r = Rec::with(6, 8);
        check("u64f == 010", &r, true); // octal
        check("u64f == 0x8", &r, true);
        check("u64f == 0X8", &r, true);
        check("u64f == 8", &r, true);
        check("s64f == -0", &Rec::with(7, 0), true);
        check("s64f == -010", &Rec::with(7, (-8i64) as u64), true);
        for bad in ["u64f == 08", "u64f == 0x", "u64f == 0xg", "u64f == 1f", "u64f == 18446744073709551616", "u64f == -1", "s64f == 9223372036854775808", "s64f == -9223372036854775809", "s64f == --1", "s64f == -", "u8f == 0b1"] {
            let e = refuse(bad);
            assert_eq!(e.reason(), Reason::IllegalIntval, "{bad}");
            // reported where the number starts (one past, as Linux)
            assert_eq!(e.pos(), bad.find("= ").unwrap() + 3, "{bad}");
        }
        // the number ends at the first character that is not a letter or digit
        check("u8f==5&&u16f==6", &{
            let mut r = Rec::with(0, 5);
            r.nums[2] = 6;
            r
        }, true);
        // 23 characters is the longest number Linux reads
        check("u64f == 00000000000000000000001", &Rec::with(6, 1), true);
        assert_eq!(refuse("u64f == 000000000000000000000001").reason(), Reason::OperandTooLong);
    }

    #[test]
    fn string_operators_on_every_string_type() {
        let name = |s: &str| Rec::with_str(NAME, s);
        let path = |s: &str| Rec::with_str(PATH, s);
        check("name == \"bash\"", &name("bash"), true);
        check("name == 'bash'", &name("bash"), true);
        check("name == \"bas\"", &name("bash"), false);
        check("name == \"bashx\"", &name("bash"), false);
        check("name != \"bash\"", &name("bash"), false);
        check("name != \"sh\"", &name("bash"), true);
        check("path == \"/bin/sh\"", &path("/bin/sh"), true);
        check("path != \"/bin/sh\"", &path("/bin/sh"), false);
        check("path == ''", &path(""), true);
        check("path ~ \"*sh\"", &path("/bin/sh"), true);
        // a quoted value may hold anything but its own quote
        check("path == \"a 'b' && (c)\"", &path("a 'b' && (c)"), true);
        check("path == 'say \"hi\"'", &path("say \"hi\""), true);
        // a NUL in the record ends the string
        check("path == \"ab\"", &path("ab\0cd"), true);
        // a full fixed array is compared over its size only, as Linux's strncmp
        check("name == \"abcdefgh\"", &name("abcdefgh"), true);
        check("name == \"abcdefghij\"", &name("abcdefgh"), true);
        check("name == \"abcdefghij\"", &name("abcdefg"), false);
        // `==` never globs
        check("name == \"b*\"", &name("bash"), false);
        check("name == \"b*\"", &name("b*"), true);
        // the comparison is case-sensitive, byte for byte
        check("path == \"Bash\"", &path("bash"), false);
        check("path == \"é\"", &path("é"), true);
    }

    #[test]
    fn globs() {
        let p = |s: &str| Rec::with_str(PATH, s);
        let cases: &[(&str, &str, bool)] = &[
            ("*sh", "bash", true),
            ("*sh", "shell", false),
            ("ba*", "bash", true),
            ("ba*", "abash", false),
            ("*as*", "bash", true),
            ("*as*", "bsh", false),
            ("bash", "bash", true),
            ("bash", "bashx", false),
            ("*", "", true),
            ("*", "anything", true),
            ("**", "", true),
            ("b?sh", "bash", true),
            ("b?sh", "bsh", false),
            ("?", "", false),
            ("[ab]ash", "bash", true),
            ("[ab]ash", "cash", false),
            ("[!ab]ash", "cash", true),
            ("[!ab]ash", "bash", false),
            ("[a-c]ash", "cash", true),
            ("[a-c]ash", "dash", false),
            ("[]]x", "]x", true),
            ("[a-]x", "-x", true),
            ("b*h", "bash", true),
            ("b*h", "bashx", false),
            ("*b*s*", "xbyysz", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("ab\\", "ab", true),
            // an unclosed class is a literal '['
            ("a[b", "a[b", true),
            ("a[b*", "a[bc", true),
            ("a[b-", "a[b-", true),
            // a leading '!' inverts
            ("!*sh", "bash", false),
            ("!*sh", "fish!", true),
            ("!bash", "dash", true),
            // a pattern that starts with a digit is compared whole (Linux's MATCH_INDEX)
            ("1*", "1*", true),
            ("1*", "12", false),
            ("!1*", "12", true),
            // empty pattern: the empty string only
            ("", "", true),
            ("", "a", false),
        ];
        for &(pat, text, want) in cases {
            check(&format!("path ~ \"{pat}\""), &p(text), want);
            check(&format!("path ~ '{pat}'"), &p(text), want);
            // the same on the fixed array and on COMM
            if text.len() <= 8 {
                check(&format!("name ~ \"{pat}\""), &Rec::with_str(NAME, text), want);
            }
            let c = Rec { comm: text.as_bytes().to_vec(), ..Rec::default() };
            check(&format!("COMM ~ \"{pat}\""), &c, want);
        }
        // bytes, not characters: '?' is one byte
        check("path ~ \"caf?\"", &p("café"), false);
        check("path ~ \"caf??\"", &p("café"), true);
    }

    #[test]
    fn glob_matcher_edges() {
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"*a*b*c*", b"xaxbxcx"));
        assert!(!glob_match(b"*a*b*c*", b"xaxcxbx"));
        assert!(glob_match(b"[!]]", b"a"));
        assert!(!glob_match(b"[!]]", b"]"));
        // a reversed range matches nothing, and the class is still one byte
        assert!(!glob_match(b"[z-a]", b"m"));
        assert!(!glob_match(b"[z-a]", b"[z-a]"));
        assert!(glob_match(b"[", b"["));
        assert!(glob_match(b"[!", b"[!"));
        assert!(glob_match(b"\\", b""));
        assert!(glob_match(b"*\\", b"abc"));
        assert!(glob_match(b"a*", b"a"));
        // pathological input stays fast (one backtrack point)
        let text = [b'a'; 300];
        let mut pat = Vec::new();
        for _ in 0..50 {
            pat.extend_from_slice(b"a*");
        }
        pat.push(b'b');
        assert!(!glob_match(&pat, &text));
    }

    // -----------------------------------------------------------------------------------------
    // Logic.

    fn rec3(a: u64, b: u64, c: u64) -> Rec {
        let mut r = Rec::default();
        r.nums[0] = a;
        r.nums[2] = b;
        r.nums[4] = c;
        r
    }

    #[test]
    fn precedence_parens_and_not() {
        let all = |text: &str, f: &dyn Fn(bool, bool, bool) -> bool| {
            let filter = compile(text);
            for bits in 0..8u64 {
                let (a, b, c) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let r = rec3(a as u64, b as u64, c as u64);
                assert_eq!(filter.matches(&r), f(a, b, c), "{text} with {a} {b} {c}");
            }
        };
        all("u8f == 1 || u16f == 1 && u32f == 1", &|a, b, c| a || (b && c));
        all("u8f == 1 && u16f == 1 || u32f == 1", &|a, b, c| (a && b) || c);
        all("(u8f == 1 || u16f == 1) && u32f == 1", &|a, b, c| (a || b) && c);
        all("u8f == 1 && (u16f == 1 || u32f == 1)", &|a, b, c| a && (b || c));
        all("!u8f == 1", &|a, _, _| !a);
        all("!!u8f == 1", &|a, _, _| a);
        all("! u8f == 1 && u16f == 1", &|a, b, _| !a && b);
        all("!(u8f == 1 && u16f == 1)", &|a, b, _| !(a && b));
        all("!(u8f == 1 || u16f == 1) || u32f == 1", &|a, b, c| !(a || b) || c);
        all("!(!(u8f == 1) || !(u16f == 1 && !u32f == 1))", &|a, b, c| !(!a || !(b && !c)));
        all("((((u8f == 1))))", &|a, _, _| a);
        all("u8f==1||u16f==1||u32f==1", &|a, b, c| a || b || c);
        all("u8f==1&&u16f==1&&u32f==1", &|a, b, c| a && b && c);
        all("u8f == 1 && !(u16f == 1 || !(u32f == 1 && u8f != 0))", &|a, b, c| a && !(b || !(c && a)));
        all("\tu8f\n==\r1 ||\x0bu16f == 1", &|a, b, _| a || b);
        // a trailing `&&`, `||` or `!` is ignored, as in Linux
        all("u8f == 1 &&", &|a, _, _| a);
        all("u8f == 1 ||   ", &|a, _, _| a);
        all("u8f == 1 && !", &|a, _, _| a);
        // `!` before `!=` is no `!`... but a `!` with a blank after it is
        all("u8f != 1", &|a, _, _| !a);
        all("! u8f != 1", &|a, _, _| a);
    }

    /// Linux's own start-up test (`ftrace_test_event_filter`): eight fields a..h, filters with
    /// deep nesting, and the fields that must not be read because of short circuits.
    #[test]
    fn linux_startup_vectors() {
        let fields: Vec<Field> = ["a", "b", "c", "d", "e", "f", "g", "h"].iter().map(|n| Field::new(n, FieldType::S32)).collect();
        let filters = [
            "a == 1 && b == 1 && c == 1 && d == 1 && e == 1 && f == 1 && g == 1 && h == 1",
            "a == 1 || b == 1 || c == 1 || d == 1 || e == 1 || f == 1 || g == 1 || h == 1",
            "(a == 1 || b == 1) && (c == 1 || d == 1) && (e == 1 || f == 1) && (g == 1 || h == 1)",
            "(a == 1 && b == 1) || (c == 1 && d == 1) || (e == 1 && f == 1) || (g == 1 && h == 1)",
            "(a == 1 && b == 1) && (c == 1 && d == 1) && (e == 1 && f == 1) || (g == 1 && h == 1)",
            "((a == 1 || b == 1) || (c == 1 || d == 1) || (e == 1 || f == 1)) && (g == 1 || h == 1)",
            "((((((((a == 1) && (b == 1)) || (c == 1)) && (d == 1)) || (e == 1)) && (f == 1)) || (g == 1)) && (h == 1))",
            "((((((((a == 1) || (b == 1)) && (c == 1)) || (d == 1)) && (e == 1)) || (f == 1)) && (g == 1)) || (h == 1))",
        ];
        // (filter, a..h, match, fields not read)
        let data: &[(usize, [u64; 8], bool, &str)] = &[
            (0, [1, 1, 1, 1, 1, 1, 1, 1], true, ""),
            (0, [0, 1, 1, 1, 1, 1, 1, 1], false, "bcdefgh"),
            (0, [1, 1, 1, 1, 1, 1, 1, 0], false, ""),
            (1, [0, 0, 0, 0, 0, 0, 0, 0], false, ""),
            (1, [0, 0, 0, 0, 0, 0, 0, 1], true, ""),
            (1, [1, 0, 0, 0, 0, 0, 0, 0], true, "bcdefgh"),
            (2, [0, 0, 1, 1, 1, 1, 1, 1], false, "dfh"),
            (2, [0, 1, 0, 1, 0, 1, 0, 1], true, ""),
            (2, [1, 0, 1, 0, 0, 1, 0, 1], true, "bd"),
            (2, [1, 0, 1, 0, 0, 1, 0, 0], false, "bd"),
            (3, [1, 0, 1, 1, 1, 1, 1, 1], true, "efgh"),
            (3, [0, 0, 0, 0, 0, 0, 1, 1], true, ""),
            (3, [0, 0, 0, 0, 0, 0, 0, 1], false, ""),
            (4, [1, 1, 1, 1, 1, 1, 0, 0], true, "gh"),
            (4, [0, 0, 0, 0, 0, 0, 0, 1], false, ""),
            (4, [1, 1, 1, 1, 1, 0, 1, 1], true, ""),
            (5, [1, 1, 1, 1, 1, 1, 0, 1], true, "bcdef"),
            (5, [0, 0, 0, 0, 0, 0, 0, 0], false, ""),
            (5, [1, 1, 1, 1, 1, 0, 1, 1], true, "h"),
            (6, [1, 1, 1, 1, 1, 1, 1, 1], true, "ceg"),
            (6, [0, 1, 0, 1, 0, 1, 0, 1], false, ""),
            (6, [1, 0, 1, 0, 1, 0, 1, 0], false, ""),
            (7, [1, 1, 1, 1, 1, 1, 1, 1], true, "bdfh"),
            (7, [0, 1, 0, 1, 0, 1, 0, 1], true, ""),
            (7, [1, 0, 1, 0, 1, 0, 1, 0], true, "bdfh"),
        ];
        for &(fi, values, want, unread) in data {
            let filter = parse(filters[fi].as_bytes(), &fields, &env()).unwrap();
            let mut r = Rec::default();
            r.nums[..8].copy_from_slice(&values);
            assert_eq!(filter.matches(&r), want, "{} on {values:?}", filters[fi]);
            for ch in unread.bytes() {
                let i = (ch - b'a') as u32;
                assert_eq!(r.visited.get() >> i & 1, 0, "{} read {} on {values:?}", filters[fi], ch as char);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Common fields, pseudo-fields, CPUS{}, .function.

    #[test]
    fn common_and_pseudo_fields() {
        let r = Rec { common: [7, 0x81, 3, (-5i32) as u32 as u64], cpu: 2, comm: b"kworker/0:1".to_vec(), ..Rec::default() };
        check("common_type == 7", &r, true);
        check("common_flags & 0x80", &r, true);
        check("common_flags == 0x181", &r, true); // cut to the u8
        check("common_preempt_count > 2", &r, true);
        check("common_pid == -5", &r, true);
        check("common_pid < 0", &r, true);
        for name in CPU_FIELD_NAMES {
            check(&format!("{name} == 2"), &r, true);
            check(&format!("{name} != 2"), &r, false);
            check(&format!("{name} < 3 && {name} >= 2"), &r, true);
            check(&format!("{name} > -1"), &r, true);
            // Linux's CPU predicate has no `&`: it never matches
            check(&format!("{name} & 2"), &r, false);
        }
        for name in COMM_FIELD_NAMES {
            check(&format!("{name} == \"kworker/0:1\""), &r, true);
            check(&format!("{name} ~ \"kworker*\""), &r, true);
            check(&format!("{name} ~ \"*:1\""), &r, true);
            check(&format!("{name} != 'kworker/0:1'"), &r, false);
        }
        // an event field of the same name hides the pseudo-field
        let fields = [Field::new("cpu", FieldType::U32)];
        let mut r2 = Rec::with(0, 9);
        r2.cpu = 1;
        let f = parse(b"cpu == 9", &fields, &env()).unwrap();
        assert!(f.matches(&r2));
        assert!(parse(b"CPU == 1", &fields, &env()).unwrap().matches(&r2));
        // type errors on pseudo-fields
        assert_eq!(refuse("CPU ~ 1").reason(), Reason::IllegalFieldOp);
        assert_eq!(refuse("CPU == \"1\"").reason(), Reason::ExpectDigit);
        assert_eq!(refuse("COMM == 1").reason(), Reason::ExpectString);
        assert_eq!(refuse("COMM < \"a\"").reason(), Reason::IllegalFieldOp);
        assert_eq!(refuse("common_cpuX == 1").reason(), Reason::FieldNotFound);
        assert_eq!(refuse("Comm == \"a\"").reason(), Reason::FieldNotFound);
    }

    #[test]
    fn cpus_lists() {
        let on = |cpu: u32| Rec { cpu, ..Rec::default() };
        // several CPUs: `&` tests membership, `==` is never and `!=` always true (Linux)
        for cpu in 0..4 {
            check("CPU & CPUS{1-2}", &on(cpu), cpu == 1 || cpu == 2);
            check("CPU == CPUS{1-2}", &on(cpu), false);
            check("CPU != CPUS{1-2}", &on(cpu), true);
            check("CPU & CPUS{0,3}", &on(cpu), cpu == 0 || cpu == 3);
            check("CPU & CPUS{all}", &on(cpu), true);
            check("CPU & CPUS{0-N:1/2}", &on(cpu), cpu % 2 == 0);
            check("CPU & CPUS{ 1 , 3 }", &on(cpu), cpu % 2 == 1);
            // one CPU: a plain comparison (`&` means `==`)
            check("CPU & CPUS{2}", &on(cpu), cpu == 2);
            check("CPU == CPUS{N}", &on(cpu), cpu == 3);
            check("CPU != CPUS{2}", &on(cpu), cpu != 2);
        }
        // on an integer field: its value as a CPU number
        for v in [0u64, 1, 2, 3, 4, 0x101] {
            check("u16f & CPUS{1-2}", &Rec::with(2, v), v == 1 || v == 2);
            check("u16f != CPUS{1-2}", &Rec::with(2, v), v < 4);
            check("u16f == CPUS{1}", &Rec::with(2, v), v == 1);
            check("u8f == CPUS{1}", &Rec::with(0, v), v & 0xff == 1);
        }
        for (text, reason) in [
            ("u8f == CPUS{}", Reason::InvalidCpulist),
            ("u8f == CPUS{4}", Reason::InvalidCpulist),
            ("u8f == CPUS{2-1}", Reason::InvalidCpulist),
            ("u8f == CPUS{0-3:3/2}", Reason::InvalidCpulist),
            ("u8f == CPUS{0-3:1/0}", Reason::InvalidCpulist),
            ("u8f == CPUS{x}", Reason::InvalidCpulist),
            ("u8f == CPUS{1;2}", Reason::InvalidCpulist),
            ("u8f == CPUS{99999999999}", Reason::InvalidCpulist),
            ("u8f == CPUS(1)", Reason::MissingBraceOpen),
            ("u8f == CPUS{1", Reason::MissingBraceClose),
            ("u8f < CPUS{1}", Reason::IllegalFieldOp),
            ("name == CPUS{1}", Reason::IllegalFieldOp),
            ("COMM & CPUS{1}", Reason::IllegalFieldOp),
        ] {
            assert_eq!(refuse(text).reason(), reason, "{text}");
        }
        // a newline ends the list
        check("CPU & CPUS{1\n,x}", &on(1), true);
        // the mask is as wide as the machine: 64 CPUs
        let wide = ParseEnv::new(64);
        let f = parse(b"CPU & CPUS{60-63}", &FIELDS, &wide).unwrap();
        assert!(f.matches(&on(62)) && !f.matches(&on(59)));
        assert!(parse(b"CPU & CPUS{64}", &FIELDS, &wide).is_err());
    }

    #[test]
    fn function_fields() {
        check("u64f.function == alpha", &Rec::with(6, 0x1000), true);
        check("u64f.function == alpha", &Rec::with(6, 0x10ff), true);
        check("u64f.function == alpha", &Rec::with(6, 0x1100), false);
        check("u64f.function != alpha", &Rec::with(6, 0x2000), true);
        check("s64f.function == beta", &Rec::with(7, 0x207f), true);
        check("u64f.function == 0x1010", &Rec::with(6, 0x10ff), true); // the function around 0x1010
        check("(u64f.function == beta )", &Rec::with(6, 0x2010), true);
        for (text, reason) in [
            ("u64f.function == gamma", Reason::NoFunction),
            ("u64f.function == 0x3000", Reason::NoFunction),
            ("u64f.function == 0", Reason::NoFunction),
            ("u64f.function == 0xzz", Reason::InvalidValue),
            ("u64f.function < alpha", Reason::InvalidOp),
            ("u32f.function == alpha", Reason::IllegalFieldOp),
            ("CPU.function == alpha", Reason::IllegalFieldOp),
            ("name.function == alpha", Reason::IllegalFieldOp),
            ("u64f.function == 0x000000000000000000001000", Reason::OperandTooLong),
            // the name runs to the next blank, taking the ')'
            ("(u64f.function == beta)", Reason::NoFunction),
        ] {
            assert_eq!(refuse(text).reason(), reason, "{text}");
        }
        // without symbols nothing is found
        let e = parse(b"u64f.function == alpha", &FIELDS, &ParseEnv::new(1)).unwrap_err();
        assert_eq!(e.reason(), Reason::NoFunction);
        // `.ustring` changes nothing here
        check("path.ustring ~ \"*x\"", &Rec::with_str(PATH, "ax"), true);
        check("u8f.ustring == 1", &Rec::with(0, 1), true);
    }

    // -----------------------------------------------------------------------------------------
    // Errors: every reason, Linux's positions and errnos, and how Linux shows them.

    #[test]
    fn every_error_reason() {
        let long_string = format!("name == '{}'", "a".repeat(256));
        let just_fits = format!("name == '{}'", "a".repeat(255));
        assert!(parse(just_fits.as_bytes(), &FIELDS, &env()).is_ok());
        // (filter, reason, position, errno)
        let cases: &[(&str, Reason, usize, i32)] = &[
            ("u8f = 1", Reason::InvalidOp, 5, EINVAL),
            ("u8f =~ 1", Reason::InvalidOp, 5, EINVAL),
            ("u8f !~ 1", Reason::InvalidOp, 5, EINVAL),
            ("u8f", Reason::InvalidOp, 4, EINVAL),
            ("(u8f == 1", Reason::TooManyOpen, 0, ENOENT),
            ("u8f == 1 || (u8f == 2", Reason::TooManyOpen, 12, ENOENT),
            ("u8f == 1 || ((u8f == 2)", Reason::TooManyOpen, 12, ENOENT),
            ("u8f == 1)", Reason::TooManyClose, 8, EPERM),
            (")", Reason::TooManyClose, 0, EPERM),
            ("name == \"abc", Reason::MissingQuote, 8, ESRCH),
            ("name == 'a\" || u8f == 1", Reason::MissingQuote, 8, ESRCH),
            ("u8f == CPUS[1]", Reason::MissingBraceOpen, 13, EINVAL),
            ("u8f == CPUS{1", Reason::MissingBraceClose, 14, EINVAL),
            ("u64f == 0x00000000000000000000001", Reason::OperandTooLong, 34, EINVAL),
            (&long_string, Reason::OperandTooLong, 266, EINVAL),
            ("name == 1", Reason::ExpectString, 9, EINVAL),
            ("name == -1", Reason::ExpectString, 9, EINVAL),
            ("u8f == \"1\"", Reason::ExpectDigit, 8, EINVAL),
            ("s64f ~ '1'", Reason::ExpectDigit, 8, EINVAL),
            ("name < \"a\"", Reason::IllegalFieldOp, 8, EINVAL),
            ("name & 'a'", Reason::IllegalFieldOp, 8, EINVAL),
            ("u8f ~ 1", Reason::IllegalFieldOp, 7, EINVAL),
            ("nosuch == 1", Reason::FieldNotFound, 7, EINVAL),
            ("u8f == 1 && x == 1", Reason::FieldNotFound, 14, EINVAL),
            ("u8f == 12abc", Reason::IllegalIntval, 8, EINVAL),
            ("u8f == -1", Reason::IllegalIntval, 8, EINVAL),
            ("u8f == 1 u8f == 2", Reason::TooManyPreds, 9, EPERM),
            ("u8f == 1 & u8f == 2", Reason::TooManyPreds, 9, EPERM),
            ("u8f == 1 | u8f == 2", Reason::TooManyPreds, 9, EPERM),
            ("(u8f == 1)(u8f == 2)", Reason::TooManyPreds, 10, EPERM),
            ("u8f == 1.5", Reason::TooManyPreds, 8, EPERM),
            ("name == 'a' 'b'", Reason::TooManyPreds, 12, EPERM),
            ("u8f == CPUS{}", Reason::InvalidCpulist, 13, EINVAL),
            ("u8f & CPUS{9}", Reason::InvalidCpulist, 13, EINVAL),
            ("name == abc", Reason::InvalidValue, 9, EINVAL),
            ("u8f == +1", Reason::InvalidValue, 8, EINVAL),
            ("u8f ==", Reason::InvalidValue, 7, EINVAL),
            ("u64f.function == 0xzz", Reason::InvalidValue, 22, EINVAL),
            ("u64f.function == nosuch", Reason::NoFunction, 24, EINVAL),
            ("!", Reason::NoFilter, 1, EINVAL),
            ("!!!", Reason::NoFilter, 3, EINVAL),
            // failures Linux gives no reason for
            ("== 1", Reason::Errno, 0, EPERM),
            ("!= 1", Reason::Errno, 0, EPERM),
            ("\"u8f\" == 1", Reason::Errno, 0, EPERM),
            ("u8f == 1 && && u8f == 2", Reason::Errno, 0, EPERM),
            ("u8f == 1 && ()", Reason::Errno, 0, EPERM),
            ("&&", Reason::Errno, 0, EPERM),
            ("", Reason::Errno, 0, EINVAL),
            ("   ", Reason::Errno, 0, EINVAL),
            ("()", Reason::Errno, 0, EINVAL),
            // a trailing `&&` after `||`: Linux reads before its program array here (and then,
            // most likely, refuses with a warning); loongtrace refuses
            ("u8f == 1 || u16f == 1 &&", Reason::Errno, 0, EINVAL),
        ];
        for &(text, reason, pos, errno) in cases {
            let e = refuse(text);
            assert_eq!((e.reason(), e.pos(), e.errno()), (reason, pos, errno), "{text:?}");
            assert_eq!(e.text(), text.as_bytes());
        }
        // the reasons Linux never gives for an event's own filter
        let e = refuse("nosuch == 1").into_subsystem_error();
        assert_eq!((e.reason(), e.pos()), (Reason::BadSubsysFilter, 0));
        assert_eq!(e.message(), "Couldn't find or set field in one of a subsystem's events");
        // every reason has Linux's exact text
        let texts: Vec<&str> = Reason::ALL.iter().map(|r| r.text()).collect();
        assert_eq!(
            texts,
            [
                "Invalid operator",
                "Too many '('",
                "Too few '('",
                "Missing matching quote",
                "Missing '{'",
                "Missing '}'",
                "Operand too long",
                "Expecting string field",
                "Expecting numeric field",
                "Illegal operation for field type",
                "Field not found",
                "Illegal integer value",
                "Couldn't find or set field in one of a subsystem's events",
                "Too many terms in predicate expression",
                "Meaningless filter expression",
                "Invalid cpulist",
                "Only 'ip' field is supported for function trace",
                "Invalid value (did you forget quotes)?",
                "Function not found",
                "Error",
                "No filter found",
            ]
        );
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i + 1);
        }
    }

    #[test]
    fn error_rendering() {
        let e = refuse("u8f = 1");
        assert_eq!(e.filter_file(), "u8f = 1\n     ^\nparse_error: Invalid operator\n\n");
        assert_eq!(
            e.error_log_entry(5_123_456_789),
            "[    5.123456] event filter parse error: error: Invalid operator\n  Command: u8f = 1\n                ^\n"
        );
        assert_eq!(e.to_string(), "Invalid operator (at 5)");
        // position 0: the caret at the start
        let e = refuse("(u8f == 1");
        assert_eq!(e.filter_file(), "(u8f == 1\n^\nparse_error: Too many '('\n\n");
        // past the end: the file clamps it to the text, error_log does not
        let e = refuse("u8f ==");
        assert_eq!(e.filter_file(), "u8f ==\n      ^\nparse_error: Invalid value (did you forget quotes)?\n\n");
        assert!(e.error_log_entry(0).ends_with(&format!("  Command: u8f ==\n{}^\n", " ".repeat(11 + 7))));
        // no reason
        let e = refuse("== 1");
        assert_eq!(e.filter_file(), "== 1\nError: (0)\n\n");
        assert_eq!(e.error_log_entry(123_000_000_000), "[  123.000000] event filter parse error: error: Error\n  Command: == 1\n           ^\n");
        // a subsystem's events
        let e = refuse("nosuch == 1").into_subsystem_error();
        assert_eq!(e.filter_file(), "nosuch == 1\n^\nparse_error: Couldn't find or set field in one of a subsystem's events\n\n");
        // big timestamps widen the field
        assert!(error_log_entry(123_456_000_000_000, "x", "y", b"c", 0).starts_with("[123456.000000] x: error: y\n"));
        // a good filter reads back as written
        assert_eq!(compile("u8f == 1").filter_file(), "u8f == 1\n");
        assert_eq!(NO_FILTER_TEXT, "none\n");
    }

    #[test]
    fn filter_file_writes() {
        let w = |s: &[u8]| parse_filter_write(s, &FIELDS, &env());
        for clear in [&b"0"[..], b"0\n", b"  0 \n", b"\t0", b"0\0junk"] {
            assert_eq!(w(clear), Ok(FilterWrite::Clear), "{clear:?}");
        }
        // the newline of `echo` is dropped, leading blanks stay
        match w(b"  u8f == 1\n") {
            Ok(FilterWrite::Set(f)) => assert_eq!(f.text(), b"  u8f == 1"),
            other => panic!("{other:?}"),
        }
        // a NUL ends the text
        match w(b"u8f == 1\0 garbage") {
            Ok(FilterWrite::Set(f)) => assert_eq!(f.text(), b"u8f == 1"),
            other => panic!("{other:?}"),
        }
        // positions count the leading blanks
        let e = w(b"  nosuch == 1\n").unwrap_err();
        assert_eq!((e.reason(), e.pos(), e.text()), (Reason::FieldNotFound, 9, &b"  nosuch == 1"[..]));
        // there is no constant filter: `1` is a field name Linux does not find, nor `(0)`
        let e = w(b"1\n").unwrap_err();
        assert_eq!((e.reason(), e.pos()), (Reason::FieldNotFound, 2));
        assert_eq!(w(b"(0)").unwrap_err().reason(), Reason::FieldNotFound);
        // `00` is no `0`; an empty write is refused without a reason
        assert_eq!(w(b"00").unwrap_err().reason(), Reason::FieldNotFound);
        assert_eq!(w(b"\n").unwrap_err().reason(), Reason::Errno);
        // Latin-1 blanks and letters as the kernel's ctype sees them: 0xA0 is a blank
        match w("u8f == 1\u{a0}".as_bytes()) {
            // "\u{a0}" is C2 A0: the A0 is stripped, and C2 (Latin-1 'Â', a letter) ends the number
            Err(e) => assert_eq!((e.reason(), e.pos()), (Reason::IllegalIntval, 8)),
            other => panic!("{other:?}"),
        }
        // ... and after a quoted value it is a stray character
        let e = w("u8f == 1 && path == \"x\"\u{a0}".as_bytes()).unwrap_err();
        assert_eq!((e.reason(), e.pos()), (Reason::TooManyPreds, 23));
        // a trailing no-break space alone (U+00A0 written as the single byte A0) is stripped
        assert!(matches!(w(b"u8f == 1\xa0"), Ok(FilterWrite::Set(_))));
    }

    #[test]
    fn program_is_compact_and_forward() {
        let f = compile("u8f == 1 && !(u16f == 2 || u32f > 3) || name ~ \"*x*\"");
        assert_eq!(f.len(), 4);
        for (i, s) in f.prog.iter().enumerate() {
            assert!(s.target > i && s.target <= f.len());
        }
        assert!(!f.is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Random testing.

    /// The crates' shared test generator (xorshift64*, fixed seeds).
    use bpf::rng::Rng;

    const POOL: [u64; 22] = [
        0,
        1,
        2,
        3,
        5,
        42,
        0x7f,
        0x80,
        0xc8,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
        0x1010,
    ];

    fn random_string(rng: &mut Rng, alphabet: &[u8], max: usize) -> Vec<u8> {
        (0..rng.index(max + 1)).map(|_| rng.pick(alphabet)).collect()
    }

    const STR_ALPHABET: &[u8] = b"ab1x*?[]!-\\";

    fn random_record(rng: &mut Rng) -> Rec {
        let mut r = Rec::default();
        for v in r.nums.iter_mut() {
            *v = if rng.chance(80) { rng.pick(&POOL) } else { rng.next() };
        }
        r.strs[NAME] = random_string(rng, STR_ALPHABET, 8);
        r.strs[PATH] = random_string(rng, STR_ALPHABET, 10);
        if rng.chance(5) {
            r.strs[PATH].push(0);
            r.strs[PATH].extend_from_slice(b"zz");
        }
        for v in r.common.iter_mut() {
            *v = rng.pick(&POOL);
        }
        r.cpu = rng.index(6) as u32;
        r.comm = random_string(rng, STR_ALPHABET, 15);
        r
    }

    /// What a predicate tests, for the reference evaluator.
    #[derive(Debug, Clone)]
    enum Target {
        Int { field: usize, size: u8, signed: bool },
        Common { which: usize, size: u8, signed: bool },
        Cpu,
        Str { field: usize, cap: Option<usize> },
        Comm,
    }

    #[derive(Debug, Clone)]
    enum Value {
        Num(i128),
        Text(Vec<u8>),
        Cpus(Vec<u32>),
        /// `(start, end)` of the function named or pointed into.
        Func(u64, u64),
    }

    #[derive(Debug, Clone)]
    enum Ast {
        Leaf(Target, &'static str, Value),
        Not(Box<Ast>),
        And(Box<Ast>, Box<Ast>),
        Or(Box<Ast>, Box<Ast>),
    }

    /// The field's value as the C type it is, widened.
    fn typed(raw: u64, size: u8, signed: bool) -> i128 {
        match (size, signed) {
            (1, false) => raw as u8 as i128,
            (1, true) => raw as u8 as i8 as i128,
            (2, false) => raw as u16 as i128,
            (2, true) => raw as u16 as i16 as i128,
            (4, false) => raw as u32 as i128,
            (4, true) => raw as u32 as i32 as i128,
            (_, false) => raw as i128,
            (_, true) => raw as i64 as i128,
        }
    }

    /// A straightforward fnmatch-style glob: tokens first, then recursion.
    fn ref_glob(pat: &[u8], s: &[u8]) -> bool {
        #[derive(Debug)]
        enum Tok {
            Star,
            Any,
            Class(Vec<(u8, u8)>, bool),
            Lit(u8),
        }
        let mut toks = Vec::new();
        let mut i = 0;
        while i < pat.len() {
            match pat[i] {
                b'*' => {
                    toks.push(Tok::Star);
                    i += 1;
                }
                b'?' => {
                    toks.push(Tok::Any);
                    i += 1;
                }
                b'\\' => {
                    if i + 1 < pat.len() {
                        toks.push(Tok::Lit(pat[i + 1]));
                    }
                    i += 2;
                }
                b'[' => {
                    // find the class: optional '!', a first item that may be ']', items up to ']'
                    let mut j = i + 1;
                    let neg = pat.get(j) == Some(&b'!');
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    let mut closed = false;
                    while j < pat.len() {
                        if pat[j] == b']' && !first {
                            closed = true;
                            j += 1;
                            break;
                        }
                        first = false;
                        let lo = pat[j];
                        if pat.get(j + 1) == Some(&b'-') && pat.get(j + 2).is_some_and(|&h| h != b']') {
                            ranges.push((lo, pat[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((lo, lo));
                            j += 1;
                        }
                    }
                    if closed {
                        toks.push(Tok::Class(ranges, neg));
                        i = j;
                    } else {
                        toks.push(Tok::Lit(b'['));
                        i += 1;
                    }
                }
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        fn go(t: &[Tok], s: &[u8]) -> bool {
            match t.split_first() {
                None => s.is_empty(),
                Some((Tok::Star, rest)) => (0..=s.len()).any(|k| go(rest, &s[k..])),
                Some((tok, rest)) => match s.split_first() {
                    None => false,
                    Some((&c, srest)) => {
                        let ok = match tok {
                            Tok::Any => true,
                            Tok::Lit(l) => *l == c,
                            Tok::Class(r, neg) => r.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg,
                            Tok::Star => unreachable!(),
                        };
                        ok && go(rest, srest)
                    }
                },
            }
        }
        go(&toks, s)
    }

    fn ref_leaf(target: &Target, op: &str, value: &Value, r: &Rec) -> bool {
        match (target, value) {
            (Target::Int { field, size, signed }, Value::Num(c)) => ref_int(r.nums[*field], *size, *signed, op, *c),
            (Target::Common { which, size, signed }, Value::Num(c)) => ref_int(r.common[*which], *size, *signed, op, *c),
            (Target::Cpu, Value::Num(c)) => {
                let (a, b) = (r.cpu as i32 as i128, *c as u64 as u32 as i32 as i128);
                match op {
                    "==" => a == b,
                    "!=" => a != b,
                    "<" => a < b,
                    "<=" => a <= b,
                    ">" => a > b,
                    ">=" => a >= b,
                    _ => false,
                }
            }
            (Target::Int { field, size, .. }, Value::Cpus(set)) => ref_cpus(Some(r.nums[*field]), *size, r.cpu, op, set),
            (Target::Common { which, size, .. }, Value::Cpus(set)) => ref_cpus(Some(r.common[*which]), *size, r.cpu, op, set),
            (Target::Cpu, Value::Cpus(set)) => ref_cpus(None, 4, r.cpu, op, set),
            (Target::Int { field, .. }, Value::Func(start, end)) => {
                let v = r.nums[*field];
                (*start <= v && v < *end) == (op == "==")
            }
            (Target::Str { field, cap }, Value::Text(p)) => ref_str(&r.strs[*field], *cap, op, p),
            (Target::Comm, Value::Text(p)) => ref_str(&r.comm, Some(16), op, p),
            _ => unreachable!("{target:?} {value:?}"),
        }
    }

    fn ref_int(raw: u64, size: u8, signed: bool, op: &str, c: i128) -> bool {
        let a = typed(raw, size, signed);
        let b = typed(c as u64, size, signed);
        match op {
            "==" => a == b,
            "!=" => a != b,
            "<" => a < b,
            "<=" => a <= b,
            ">" => a > b,
            ">=" => a >= b,
            "&" => a & b != 0,
            _ => unreachable!(),
        }
    }

    fn ref_cpus(field: Option<u64>, size: u8, cpu: u32, op: &str, set: &[u32]) -> bool {
        if set.len() == 1 {
            let want = set[0] as u64;
            let eq = match field {
                Some(raw) => typed(raw, size, false) == typed(want, size, false),
                None => cpu as u64 == want,
            };
            return if op == "!=" { !eq } else { eq };
        }
        let v = match field {
            Some(raw) => {
                let v = typed(raw, size, false) as u64 as u32;
                if v >= NR_CPUS {
                    return false;
                }
                v
            }
            None => cpu,
        };
        match op {
            "==" => false,
            "!=" => true,
            _ => set.contains(&v),
        }
    }

    fn ref_str(raw: &[u8], cap: Option<usize>, op: &str, p: &[u8]) -> bool {
        let mut s = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        let equal = |s: &[u8], p: &[u8]| match cap {
            Some(n) => s == &p[..p.len().min(n)],
            None => s == p,
        };
        if let Some(n) = cap {
            s = &s[..s.len().min(n)];
        }
        match op {
            "==" => equal(s, p),
            "!=" => !equal(s, p),
            _ => {
                let (neg, p) = match p.strip_prefix(b"!") {
                    Some(rest) => (true, rest),
                    None => (false, p),
                };
                let hit = if p.first().is_some_and(|c| c.is_ascii_digit()) { equal(s, p) } else { ref_glob(p, s) };
                hit != neg
            }
        }
    }

    fn ref_eval(ast: &Ast, r: &Rec) -> bool {
        match ast {
            Ast::Leaf(t, op, v) => ref_leaf(t, op, v, r),
            Ast::Not(a) => !ref_eval(a, r),
            Ast::And(a, b) => ref_eval(a, r) && ref_eval(b, r),
            Ast::Or(a, b) => ref_eval(a, r) || ref_eval(b, r),
        }
    }

    fn random_leaf(rng: &mut Rng, text: &mut String) -> Ast {
        let ws = |rng: &mut Rng| rng.pick(&["", " ", " ", "  ", "\t"]);
        let kind = rng.index(10);
        let (name, target): (String, Target) = match kind {
            0..=3 => {
                let i = rng.index(8);
                let FieldType::Int { size, signed } = FIELDS[i].ty else { unreachable!() };
                (FIELDS[i].name.into(), Target::Int { field: i, size, signed })
            }
            4 => {
                let i = rng.index(4);
                let (n, _, ty) = CommonField::ALL[i];
                let FieldType::Int { size, signed } = ty else { unreachable!() };
                (n.into(), Target::Common { which: i, size, signed })
            }
            5 => ((rng.pick(&CPU_FIELD_NAMES)).into(), Target::Cpu),
            6 | 7 => {
                let i = rng.pick(&[NAME, PATH]);
                let cap = if i == NAME { Some(8) } else { None };
                (FIELDS[i].name.into(), Target::Str { field: i, cap })
            }
            _ => ((rng.pick(&COMM_FIELD_NAMES)).into(), Target::Comm),
        };
        let mut suffix = "";
        let (op, value_text, value): (&'static str, String, Value) = match &target {
            Target::Int { size: 8, .. } if rng.chance(10) => {
                suffix = ".function";
                let op = rng.pick(&["==", "!="]);
                let (sym, start, len) = rng.pick(&SYMS);
                let text = if rng.chance(50) { format!("{sym} ") } else { format!("{:#x}", start + rng.index(len as usize) as u64) };
                (op, text, Value::Func(start, start + len))
            }
            Target::Int { .. } | Target::Common { .. } | Target::Cpu if rng.chance(15) => {
                let op = rng.pick(&["==", "!=", "&"]);
                let mut set: Vec<u32> = (0..NR_CPUS).filter(|_| rng.chance(40)).collect();
                if set.is_empty() {
                    set.push(rng.index(NR_CPUS as usize) as u32);
                }
                let list: Vec<String> = set.iter().map(|c| c.to_string()).collect();
                (op, format!("CPUS{{{}}}", list.join(",")), Value::Cpus(set))
            }
            Target::Int { signed, .. } | Target::Common { signed, .. } => {
                let op = rng.pick(&["==", "!=", "<", "<=", ">", ">=", "&"]);
                let mut v = if rng.chance(85) { rng.pick(&POOL) as i128 } else { rng.next() as i128 };
                if *signed {
                    v = v as u64 as i64 as i128;
                    if rng.chance(30) {
                        v = -(v.abs() % (1i128 << 63));
                    }
                }
                (op, render_number(rng, v), Value::Num(v))
            }
            Target::Cpu => {
                let op = rng.pick(&["==", "!=", "<", "<=", ">", ">=", "&"]);
                let v = rng.index(7) as i128 - 1;
                (op, render_number(rng, v), Value::Num(v))
            }
            Target::Str { .. } | Target::Comm => {
                let op = rng.pick(&["==", "!=", "~", "~"]);
                let q = rng.pick(&["\"", "'"]);
                let p = random_string(rng, STR_ALPHABET, 6);
                let shown = String::from_utf8(p.clone()).unwrap();
                (op, format!("{q}{shown}{q}"), Value::Text(p))
            }
        };
        let _ = write!(text, "{name}{suffix}{}{op}{}{value_text}", ws(rng), ws(rng));
        Ast::Leaf(target, op, value)
    }

    fn render_number(rng: &mut Rng, v: i128) -> String {
        let (neg, mag) = (v < 0, v.unsigned_abs());
        let sign = if neg { "-" } else { "" };
        let text = match rng.index(4) {
            0 => format!("{sign}{mag:#x}"),
            1 => format!("{sign}0X{mag:X}"),
            2 if mag != 0 => format!("{sign}0{mag:o}"),
            _ => format!("{sign}{mag}"),
        };
        // Linux reads at most 23 characters of a number
        if text.len() < 24 { text } else { format!("{sign}{mag}") }
    }

    /// Builds a random expression and its text (`prec`: 1 inside `||`, 2 inside `&&`, 3 after `!`).
    fn random_expr(rng: &mut Rng, depth: u32, prec: u8, text: &mut String) -> Ast {
        let ws = |rng: &mut Rng| rng.pick(&["", " ", " ", "\t", "\n "]);
        let choice = if depth == 0 { 0 } else { rng.index(8) };
        // `&&` inside `!`, and `||` inside `&&` or `!`, need parens; any may have them
        let paren_forced = match choice {
            4 | 5 => prec > 2,
            6 | 7 => prec > 1,
            _ => false,
        };
        let paren = paren_forced || rng.chance(10);
        if paren {
            text.push('(');
            text.push_str(ws(rng));
        }
        let ast = match choice {
            0..=2 => random_leaf(rng, text),
            3 => {
                text.push('!');
                text.push_str(ws(rng));
                Ast::Not(Box::new(random_expr(rng, depth - 1, 3, text)))
            }
            4 | 5 => {
                let a = random_expr(rng, depth - 1, 2, text);
                let _ = write!(text, "{}&&{}", ws(rng), ws(rng));
                let b = random_expr(rng, depth - 1, 2, text);
                Ast::And(Box::new(a), Box::new(b))
            }
            _ => {
                let a = random_expr(rng, depth - 1, 1, text);
                let _ = write!(text, "{}||{}", ws(rng), ws(rng));
                let b = random_expr(rng, depth - 1, 1, text);
                Ast::Or(Box::new(a), Box::new(b))
            }
        };
        if paren {
            text.push_str(ws(rng));
            text.push(')');
        }
        ast
    }

    #[test]
    fn random_filters_agree_with_a_reference_evaluator() {
        let mut rng = Rng(0x5eed_f11e_2024_0023);
        let mut matched = 0;
        let mut total = 0;
        for round in 0..3000 {
            let mut text = String::new();
            let depth = 1 + (round % 5) as u32;
            let ast = random_expr(&mut rng, depth, 0, &mut text);
            let filter = match parse(text.as_bytes(), &FIELDS, &env()) {
                Ok(f) => f,
                Err(e) => panic!("{text:?} refused: {e}"),
            };
            for _ in 0..25 {
                let r = random_record(&mut rng);
                let want = ref_eval(&ast, &r);
                assert_eq!(filter.matches(&r), want, "{text:?}\n{ast:?}\non {r:?}");
                matched += want as u32;
                total += 1;
            }
        }
        // both outcomes are well represented
        assert!(matched > total / 5 && matched < total * 4 / 5, "{matched} of {total}");
    }

    #[test]
    fn glob_matcher_agrees_with_reference_glob() {
        let mut rng = Rng(0x91ab_0b00_0000_0001);
        for _ in 0..50_000 {
            let p = random_string(&mut rng, b"ab*?[]!-\\", 7);
            let s = random_string(&mut rng, b"ab[]!-\\*", 7);
            assert_eq!(glob_match(&p, &s), ref_glob(&p, &s), "{:?} {:?}", std::str::from_utf8(&p), std::str::from_utf8(&s));
        }
    }

    /// Pieces that random filter strings are made of: good and bad names, operators, values,
    /// logic, and bytes a filter should never see.
    const PIECES: &[&str] = &[
        "u8f", "s8f", "u16f", "s64f", "u64f", "name", "path", "CPU", "cpu", "common_cpu", "COMM", "comm", "common_pid", "common_flags", "nosuch", "x",
        "_", "1abc", ".function", ".ustring", ".", "==", "!=", "<", "<=", ">", ">=", "&", "~", "=", "=~", "!~", "=>", "<>", "0", "1", "-1", "-", "42",
        "0x", "0xff", "0x1000", "0777", "08", "18446744073709551616", "-9223372036854775808", "9223372036854775807", "12abc", "+1", "\"", "'",
        "\"bash\"", "'b*'", "\"*sh\"", "'[a-c]?'", "\"\\\"", "\"!x*\"", "\"unterminated", "bash", "CPUS{1}", "CPUS{0-3}", "CPUS{}", "CPUS{all}",
        "CPUS{0-N:1/2}", "CPUS{9}", "CPUS{", "CPUS", "}", "{", "alpha", "beta", "&&", "||", "&&", "||", "!", "!", "(", "(", ")", ")", " ", " ", " ",
        "  ", "\t", "\n", "\r", "\x0b", "\u{a0}", "é", "à", "\u{c0}", "\0", "*", "?", "[", "]", "\\", ",", ";", "#", "$", "%",
    ];

    fn random_soup(rng: &mut Rng) -> String {
        let mut s = String::new();
        let n = 1 + rng.index(14);
        for _ in 0..n {
            if rng.chance(3) {
                // a random character now and then, anywhere in Unicode's first planes
                let c = char::from_u32(rng.index(0x3000) as u32).unwrap_or('?');
                s.push(c);
            } else {
                s.push_str(rng.pick(PIECES));
            }
        }
        if rng.chance(2) {
            // sometimes a very long filter
            let extra: String = (0..600).map(|_| rng.pick(&["a", " ", "(", "&&"])).collect();
            s.push_str(&extra);
        }
        s
    }

    #[test]
    fn random_strings_never_panic() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let records: Vec<Rec> = (0..8).map(|_| random_record(&mut rng)).collect();
        let mut accepted = 0;
        let mut reasons = [0u32; 22];
        for round in 0..20_000 {
            // every third string is a valid filter, whole or cut short or with a piece added
            let text = if round % 3 == 0 {
                let mut t = String::new();
                random_expr(&mut rng, 3, 0, &mut t);
                if rng.chance(50) {
                    let keep = rng.index(t.chars().count() + 1);
                    t = t.chars().take(keep).collect();
                    if rng.chance(50) {
                        t.push_str(rng.pick(PIECES));
                    }
                }
                t
            } else {
                random_soup(&mut rng)
            };
            match parse_filter_write(text.as_bytes(), &FIELDS, &env()) {
                Ok(FilterWrite::Clear) => {}
                Ok(FilterWrite::Set(f)) => {
                    accepted += 1;
                    assert!(!f.is_empty());
                    for r in &records {
                        let _ = f.matches(r);
                    }
                    let _ = f.filter_file();
                    // the same text parsed directly gives the same filter
                    assert_eq!(parse(f.text(), &FIELDS, &env()).as_ref(), Ok(&f));
                }
                Err(e) => {
                    reasons[e.reason().index()] += 1;
                    // Linux's positions go up to two past the end ("CPUS" at the end: one for
                    // the missing brace, one for its off-by-one)
                    assert!(e.pos() <= e.text().len() + 2, "{text:?}: {e:?}");
                    assert!([EPERM, ENOENT, ESRCH, ENOMEM, EINVAL].contains(&e.errno()), "{text:?}: {e:?}");
                    assert!(e.filter_file().contains(if e.reason() == Reason::Errno { "Error: (0)" } else { e.message() }));
                    assert!(e.error_log_entry(1).contains(e.message()));
                }
            }
        }
        // a good share of each outcome, and most reasons seen
        assert!(accepted > 3000, "{accepted} accepted");
        let seen = reasons.iter().filter(|&&n| n > 0).count();
        assert!(seen >= 15, "reasons seen: {reasons:?}");
    }
}
