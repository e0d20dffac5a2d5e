//! The kernel command line: `key=value` words separated by spaces or `;`, each value checked.
//!
//! The host passes it through QEMU's fw_cfg (`opt/loongtrace/cmdline`); QEMU's option parser
//! reserves `,`, so lists inside a value use `|` (e.g. `tests=boot|ftrace_*`).
//!
//! [`Cmdline::options`] turns the words into [`Options`] and one [`Complaint`] per bad word, which
//! names the word and what the key accepts. A warning means the word was ignored (the key keeps its
//! default); an error means the run cannot do what was asked (the kernel reports it and runs no
//! self-tests, so the host fails the run). The last good word for a key wins.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A parsed view of the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    pub const fn new(text: &'a str) -> Self {
        Cmdline { text }
    }

    /// The whole text.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    fn words(self) -> impl Iterator<Item = &'a str> {
        self.text.split([' ', ';', '\n', '\t']).filter(|w| !w.is_empty())
    }

    /// The value of the last `key=value` word, or `""` for a bare `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter_map(|w| match w.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if w == key => Some(""),
                _ => None,
            })
            .last()
    }

    /// Checks every word: the options it sets, and a complaint for each bad word.
    pub fn options(self) -> (Options<'a>, Vec<Complaint<'a>>) {
        let mut opts = Options::default();
        let mut complaints = Vec::new();
        for word in self.words() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let Some(k) = KEYS.iter().find(|k| k.name == key) else {
                let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                complaints.push(Complaint {
                    word,
                    severity: Severity::Warning,
                    problem: format!("unknown key `{key}`"),
                    accepted: Accepted::Keys(known.join(", ")),
                });
                continue;
            };
            if let Err(problem) = k.apply(&mut opts, value) {
                complaints.push(Complaint { word, severity: k.severity, problem, accepted: Accepted::Text(k.accepted) });
            }
        }
        (opts, complaints)
    }
}

/// What `tests=` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tests<'a> {
    /// No `tests=` word: every case (except the `fail_demo` suite unless `fail_demo=` asks).
    All,
    /// `tests=none`: a plain boot without self-tests.
    None,
    /// `|`-separated globs, each matched against `suite` and `suite.case`.
    Globs(&'a str),
}

impl<'a> Tests<'a> {
    /// The globs of a `Globs` selection (none for `All` and `None`).
    pub fn globs(&self) -> impl Iterator<Item = &'a str> {
        let text = match self {
            Tests::Globs(g) => *g,
            _ => "",
        };
        text.split('|').filter(|g| !g.is_empty())
    }

    /// Whether `glob` selects case `case` of suite `suite`.
    pub fn glob_selects(glob: &str, suite: &str, case: &str) -> bool {
        crate::glob::glob_match(glob, suite) || {
            let mut full = String::from(suite);
            full.push('.');
            full.push_str(case);
            crate::glob::glob_match(glob, &full)
        }
    }

    /// Whether the selection includes case `case` of suite `suite`.
    pub fn selects(&self, suite: &str, case: &str) -> bool {
        match self {
            Tests::All => true,
            Tests::None => false,
            Tests::Globs(_) => self.globs().any(|g| Self::glob_selects(g, suite, case)),
        }
    }
}

/// What `fail_demo=` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailDemo {
    #[default]
    Off,
    /// Run the deliberately failing suite.
    On,
    /// Run it and hang in its last case (to test the host's timeout).
    Hang,
}

/// SMP stress size without `stress=`, and with `stress=long`.
pub const STRESS_DEFAULT: u64 = 2_000;
pub const STRESS_LONG: u64 = 20_000;
/// The largest `stress=<switches>` accepted.
pub const STRESS_MAX: u64 = 100_000_000;

/// Everything the command line sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub tests: Tests<'a>,
    pub log: log::LevelFilter,
    pub demo: bool,
    pub fail_demo: FailDemo,
    pub bench: bool,
    /// Configuration switches the SMP stress test makes.
    pub stress: u64,
    /// Which kinds of switches the SMP stress test makes (bit `n` = kind `n`).
    pub stress_mask: u8,
    /// Print the selected cases and power off without running them.
    pub list_tests: bool,
    /// Module files to load at boot: `all`, or `+`-separated fw_cfg file names.
    pub modules: Option<&'a str>,
    /// Run the debugging scenario that `make gdb` and the GDB test break into.
    pub gdbdemo: bool,
    /// `record=<tracer>` and the `record_*` keys: record a trace for `ltrace record` instead of
    /// running self-tests (`crate::record`).
    pub record: RecordOptions<'a>,
    /// Stay at the serial shell's prompt after boot (`make qemu` sets it when stdin is a terminal).
    pub shell: bool,
    /// Run this fw_cfg file's shell lines at boot (bare `script`: `opt/loongtrace/script`).
    pub script: Option<&'a str>,
    /// Removals per path in suite `removal` (default 1,000; 10,000 with `stress=long`).
    pub removal_rounds: Option<usize>,
    /// `trace_buf_size=`: bytes of trace ring per CPU at boot (Linux's word; `k`, `m`, `g`
    /// suffixes), rounded up to a ring size by the tracer.
    pub trace_buf_size: Option<u64>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            tests: Tests::All,
            log: log::LevelFilter::Info,
            demo: false,
            fail_demo: FailDemo::Off,
            bench: false,
            stress: STRESS_DEFAULT,
            stress_mask: 0xff,
            list_tests: false,
            modules: None,
            gdbdemo: false,
            record: RecordOptions::default(),
            shell: false,
            script: None,
            removal_rounds: None,
            trace_buf_size: None,
        }
    }
}

/// The `record*` keys, checked here with the others and read by `crate::record`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOptions<'a> {
    /// `record=`: one of [`RECORD_TRACERS`]; `None`: not a recording boot.
    pub tracer: Option<&'a str>,
    /// `record_workload=`: one of [`RECORD_WORKLOADS`]; `None`: `chain`.
    pub workload: Option<&'a str>,
    /// `record_ms=`: keep tracing this many milliseconds after the workload.
    pub ms: u64,
    /// `record_depth=`: `max_graph_depth` (0: no limit).
    pub depth: u64,
    /// `record_fault=`: one of [`RECORD_FAULTS`] (a test hook).
    pub fault: Option<&'a str>,
    /// `record_filter=`: `|`-separated `set_ftrace_filter` words, each checked as one.
    pub filter: Option<&'a str>,
    /// `record_graph=`: `|`-separated `set_graph_function` words, each checked as one.
    pub graph: Option<&'a str>,
    /// `record_stream`: the host reads the rings while tracing (shared memory, see
    /// `crate::ftrace::stream`) instead of taking them over the serial line at the end.
    pub stream: bool,
}

/// The tracers `record=` accepts.
pub const RECORD_TRACERS: &[&str] = &["nop", "function", "function_graph"];
/// The workloads `record_workload=` accepts.
pub const RECORD_WORKLOADS: &[&str] = &["chain", "smp_chain", "filter", "script", "idle", "busy"];
/// The faults `record_fault=` accepts.
pub const RECORD_FAULTS: &[&str] = &["corrupt", "die"];

/// How bad a bad word is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The word is ignored; the key keeps its previous value.
    Warning,
    /// The run cannot do what was asked.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Accepted {
    Text(&'static str),
    Keys(String),
}

/// One bad word, what is wrong with it and what its key accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complaint<'a> {
    pub word: &'a str,
    pub severity: Severity,
    pub problem: String,
    accepted: Accepted,
}

impl fmt::Display for Complaint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': {}; ", self.word, self.problem)?;
        match &self.accepted {
            Accepted::Text(t) => write!(f, "accepted: {t}")?,
            Accepted::Keys(k) => write!(f, "known keys: {k}")?,
        }
        if self.severity == Severity::Warning {
            write!(f, " (word ignored)")?;
        }
        Ok(())
    }
}

type Apply = for<'a> fn(&mut Options<'a>, &'a str) -> Result<(), String>;

/// How a key's value is read.
enum Parse {
    /// A yes/no value stored by the function.
    Flag(fn(&mut Options<'_>, bool)),
    Other(Apply),
}

struct Key {
    name: &'static str,
    severity: Severity,
    accepted: &'static str,
    parse: Parse,
}

impl Key {
    const fn new(name: &'static str, severity: Severity, accepted: &'static str, apply: Apply) -> Key {
        Key { name, severity, accepted, parse: Parse::Other(apply) }
    }

    const fn flag(name: &'static str, severity: Severity, set: fn(&mut Options<'_>, bool)) -> Key {
        Key { name, severity, accepted: FLAG_VALUES, parse: Parse::Flag(set) }
    }

    fn apply<'a>(&self, o: &mut Options<'a>, value: &'a str) -> Result<(), String> {
        match self.parse {
            Parse::Flag(set) => {
                set(o, parse_flag(value)?);
                Ok(())
            }
            Parse::Other(apply) => apply(o, value),
        }
    }
}

const FLAG_VALUES: &str = "1, 0, on, off, yes, no, true, false, or the bare key for 1";

/// Every key the kernel knows, with its check. Add new keys here.
const KEYS: &[Key] = &[
    Key::new("tests", Severity::Error, TESTS_VALUES, |o, v| parse_tests(v).map(|x| o.tests = x)),
    Key::new("log", Severity::Warning, "error, warn, info, debug, trace, off", |o, v| parse_log(v).map(|x| o.log = x)),
    Key::flag("demo", Severity::Warning, |o, v| o.demo = v),
    Key::new("fail_demo", Severity::Error, FAIL_DEMO_VALUES, |o, v| parse_fail_demo(v).map(|x| o.fail_demo = x)),
    Key::flag("bench", Severity::Warning, |o, v| o.bench = v),
    Key::new("stress", Severity::Error, STRESS_VALUES, |o, v| parse_stress(v).map(|x| o.stress = x)),
    Key::new("stress_mask", Severity::Error, STRESS_MASK_VALUES, |o, v| parse_stress_mask(v).map(|x| o.stress_mask = x)),
    Key::new("modules", Severity::Error, MODULES_VALUES, |o, v| parse_modules(v).map(|x| o.modules = Some(x))),
    Key::flag("list_tests", Severity::Error, |o, v| o.list_tests = v),
    Key::flag("gdbdemo", Severity::Warning, |o, v| o.gdbdemo = v),
    Key::new("removal_rounds", Severity::Error, "a number of removals per path for suite removal, at least 1", |o, v| {
        parse_number(v).filter(|&n| n > 0).map(|n| o.removal_rounds = Some(n as usize)).ok_or_else(|| format!("`{v}` is not a positive number"))
    }),
    Key::flag("shell", Severity::Warning, |o, v| o.shell = v),
    Key::flag("record_stream", Severity::Error, |o, v| o.record.stream = v),
    Key::new("trace_buf_size", Severity::Error, "bytes of trace ring per CPU, a number with an optional k, m or g suffix (at least 1)", |o, v| {
        parse_size(v).filter(|&n| n > 0).map(|n| o.trace_buf_size = Some(n)).ok_or_else(|| format!("`{v}` is not a size"))
    }),
    Key::new("script", Severity::Error, "a fw_cfg file name, or the bare key for opt/loongtrace/script", |o, v| {
        if v.contains(char::is_whitespace) { Err(format!("`{v}` is not a file name")) } else { o.script = Some(v); Ok(()) }
    }),
    Key::new("record", Severity::Error, "nop, function, function_graph", |o, v| one_of(v, RECORD_TRACERS).map(|v| o.record.tracer = Some(v))),
    Key::new("record_workload", Severity::Error, "chain, smp_chain, filter, script, idle, busy", |o, v| {
        one_of(v, RECORD_WORKLOADS).map(|v| o.record.workload = Some(v))
    }),
    Key::new("record_ms", Severity::Error, "a number of milliseconds", |o, v| number(v).map(|n| o.record.ms = n)),
    Key::new("record_depth", Severity::Error, "a maximum graph depth (0: no limit)", |o, v| number(v).map(|n| o.record.depth = n)),
    Key::new("record_fault", Severity::Error, "corrupt, die", |o, v| one_of(v, RECORD_FAULTS).map(|v| o.record.fault = Some(v))),
    Key::new("record_filter", Severity::Error, FILTER_WORDS_VALUES, |o, v| filter_words(v).map(|v| o.record.filter = Some(v))),
    Key::new("record_graph", Severity::Error, FILTER_WORDS_VALUES, |o, v| filter_words(v).map(|v| o.record.graph = Some(v))),
];

const FILTER_WORDS_VALUES: &str =
    "`|`-separated function globs as `set_ftrace_filter` takes them (`!` negates), without blanks";
const TESTS_VALUES: &str =
    "`none`, or `|`-separated globs over `suite` or `suite.case` made of letters, digits, `_`, `*` and `?`";
const FAIL_DEMO_VALUES: &str = "1, 0, on, off, yes, no, true, false, the bare key for 1, or `hang`";
const STRESS_VALUES: &str = "`long` (20000 switches) or a number of switches from 1 to 100000000";
const MODULES_VALUES: &str = "`all`, or `+`-separated module file names made of letters, digits, `_`, `-` and `.`";
const STRESS_MASK_VALUES: &str =
    "a non-zero 8-bit mask of switch kinds, decimal or 0x-hexadecimal (1 to 255, 0x1 to 0xff)";

fn parse_log(v: &str) -> Result<log::LevelFilter, String> {
    Ok(match v {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        "off" => log::LevelFilter::Off,
        _ => return Err(format!("unknown log level `{v}`")),
    })
}

fn parse_fail_demo(v: &str) -> Result<FailDemo, String> {
    Ok(match v {
        "hang" => FailDemo::Hang,
        _ if parse_flag(v)? => FailDemo::On,
        _ => FailDemo::Off,
    })
}

fn parse_stress(v: &str) -> Result<u64, String> {
    match v {
        "long" => Ok(STRESS_LONG),
        _ => parse_number(v).filter(|n| (1..=STRESS_MAX).contains(n)).ok_or_else(|| format!("`{v}` is not a number of switches")),
    }
}

fn parse_stress_mask(v: &str) -> Result<u8, String> {
    let mask = parse_number(v).filter(|n| (1..=0xff).contains(n));
    mask.map(|m| m as u8).ok_or_else(|| format!("`{v}` is not a mask from 1 to 255"))
}

/// A number of bytes with an optional `k`, `m` or `g` suffix (either case), as Linux's
/// `memparse` reads them.
fn parse_size(v: &str) -> Option<u64> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 10),
        b'm' | b'M' => (&v[..v.len() - 1], 20),
        b'g' | b'G' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n = parse_number(digits)?;
    n.checked_mul(1 << shift)
}

fn parse_flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(format!("`{v}` is not a yes/no value")),
    }
}

/// A decimal or `0x`-hexadecimal number without sign.
fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => u64::from_str_radix(hex, 16).ok(),
        None if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        _ => None,
    }
}

fn one_of<'a>(v: &'a str, accepted: &[&str]) -> Result<&'a str, String> {
    if accepted.contains(&v) { Ok(v) } else { Err(format!("`{v}` is not one of them")) }
}

fn number(v: &str) -> Result<u64, String> {
    parse_number(v).ok_or_else(|| format!("`{v}` is not a number"))
}

/// `|`-separated filter words, each as `set_ftrace_filter` would take it.
fn filter_words(v: &str) -> Result<&str, String> {
    for word in v.split('|') {
        crate::glob::parse_filter_token(word).map_err(|e| format!("`{word}`: {e}"))?;
    }
    Ok(v)
}

fn parse_modules(v: &str) -> Result<&str, String> {
    if v == "all" {
        return Ok(v);
    }
    for name in v.split('+') {
        if name.is_empty() {
            return Err(String::from("empty module name"));
        }
        if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_-.".contains(c))) {
            return Err(format!("`{c}` cannot appear in module name `{name}`"));
        }
    }
    Ok(v)
}

fn parse_tests(v: &str) -> Result<Tests<'_>, String> {
    if v == "none" {
        return Ok(Tests::None);
    }
    if v.is_empty() {
        return Err(String::from("empty selection (`tests=none` boots without self-tests)"));
    }
    for glob in v.split('|') {
        if glob.is_empty() {
            return Err(String::from("empty glob between `|`"));
        }
        if let Some(c) = glob.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_*?.".contains(c))) {
            return Err(format!("`{c}` cannot appear in glob `{glob}`"));
        }
        let parts: Vec<&str> = glob.split('.').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("glob `{glob}` is not `suite` or `suite.case`"));
        }
    }
    Ok(Tests::Globs(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(text: &str) -> (Options<'_>, Vec<String>) {
        let (o, c) = Cmdline::new(text).options();
        (o, c.iter().map(|c| alloc::format!("{:?} {c}", c.severity)).collect())
    }

    /// The options of a clean command line; panics on a complaint.
    fn good(text: &str) -> Options<'_> {
        let (o, c) = opts(text);
        assert!(c.is_empty(), "{text}: {c:?}");
        o
    }

    /// The single complaint about `text`, which must leave the options at their defaults.
    fn bad(text: &str) -> String {
        let (o, c) = opts(text);
        assert_eq!(o, Options::default(), "{text}");
        assert_eq!(c.len(), 1, "{text}: {c:?}");
        c.into_iter().next().unwrap()
    }

    #[test]
    fn numbers_and_word_lists() {
        assert_eq!(Cmdline::new("tests=none  log=warn").as_str(), "tests=none  log=warn");
        assert_eq!(good("removal_rounds=7").removal_rounds, Some(7));
        assert!(bad("removal_rounds=0").contains("`0` is not a positive number"));
        assert!(bad("removal_rounds=-3").contains("`-3` is not a positive number"));
        // Rust's integer parsers take a leading `+`; the command line does not.
        assert_eq!(good("stress_mask=0x1f").stress_mask, 0x1f);
        assert!(bad("stress_mask=0x+5").contains("`0x+5`"));
        assert!(bad("stress=+5").contains("`+5`"));
        assert!(bad("stress_mask=0x").contains("`0x`"));
        assert!(bad("record_fault=sometimes").contains("`sometimes` is not one of them"));
        assert!(bad("record_ms=soon").contains("`soon` is not a number"));
        assert!(bad("record_ms=+250").contains("`+250` is not a number"));
        let r = good("record_fault=die record_ms=250").record;
        assert_eq!((r.fault, r.ms), (Some("die"), 250));
        let r = good("record=function record_workload=busy record_ms=10000 record_stream").record;
        assert_eq!((r.workload, r.ms, r.stream), (Some("busy"), 10000, true));
        assert!(!good("record=function").record.stream);
        assert_eq!(good("trace_buf_size=1441792").trace_buf_size, Some(1441792));
        assert_eq!(good("trace_buf_size=2m").trace_buf_size, Some(2 << 20));
        assert_eq!(good("trace_buf_size=64K").trace_buf_size, Some(64 << 10));
        assert!(bad("trace_buf_size=0").contains("`0` is not a size"));
        assert!(bad("trace_buf_size=2q").contains("`2q` is not a size"));
        assert!(bad("trace_buf_size=k").contains("`k` is not a size"));
        assert!(bad("trace_buf_size=99999999999g").contains("is not a size"));
    }

    #[test]
    fn key_values() {
        let c = Cmdline::new("tests=boot|insn  log=debug;demo=0 verbose");
        assert_eq!(c.get("tests"), Some("boot|insn"));
        assert_eq!(c.get("log"), Some("debug"));
        assert_eq!(c.get("verbose"), Some(""));
        assert_eq!(c.get("nope"), None);
    }

    #[test]
    fn defaults_and_empty() {
        assert_eq!(good(""), Options::default());
        assert_eq!(good(" ; \t"), Options::default());
    }

    #[test]
    fn tests_key() {
        assert_eq!(good("tests=none").tests, Tests::None);
        assert_eq!(good("tests=boot|ftrace_*|smp.stress|*.x?z").tests, Tests::Globs("boot|ftrace_*|smp.stress|*.x?z"));
        let t = good("tests=ftrace_*|boot.heap*").tests;
        assert!(t.selects("ftrace_ops", "anything") && t.selects("boot", "heap_alloc"));
        assert!(!t.selects("boot", "timer") && !t.selects("insn", "x"));
        assert!(good("tests=*alloc").tests.selects("boot", "heap_alloc"), "a glob also matches suite.case");
        assert!(Tests::All.selects("a", "b") && !Tests::None.selects("a", "b"));
        assert_eq!(good("tests=a|b").tests.globs().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            bad("tests=[[[["),
            "Error 'tests=[[[[': `[` cannot appear in glob `[[[[`; accepted: `none`, or `|`-separated \
             globs over `suite` or `suite.case` made of letters, digits, `_`, `*` and `?`"
        );
        for (text, what) in [
            ("tests=", "empty selection"),
            ("tests", "empty selection"),
            ("tests=boot||insn", "empty glob"),
            ("tests=a.b.c", "is not `suite` or `suite.case`"),
            ("tests=boot.", "is not `suite` or `suite.case`"),
            ("tests=!boot", "`!` cannot appear"),
            ("tests=bo-ot", "`-` cannot appear"),
        ] {
            let c = bad(text);
            assert!(c.starts_with(&alloc::format!("Error '{text}': {what}")) || c.contains(what), "{c}");
        }
    }

    #[test]
    fn log_key() {
        for (v, l) in [("error", log::LevelFilter::Error), ("warn", log::LevelFilter::Warn), ("trace", log::LevelFilter::Trace), ("off", log::LevelFilter::Off)] {
            assert_eq!(good(&alloc::format!("log={v}")).log, l);
        }
        assert_eq!(
            bad("log=bogus"),
            "Warning 'log=bogus': unknown log level `bogus`; accepted: error, warn, info, debug, trace, off (word ignored)"
        );
        // A bad word does not undo an earlier good one.
        let (o, c) = opts("log=debug log=loud");
        assert_eq!((o.log, c.len()), (log::LevelFilter::Debug, 1));
    }

    #[test]
    fn flag_keys() {
        for v in ["demo", "demo=1", "demo=on", "demo=yes", "demo=true"] {
            assert!(good(v).demo, "{v}");
        }
        for v in ["demo=0", "demo=off", "demo=no", "demo=false"] {
            assert!(!good(v).demo, "{v}");
        }
        assert!(good("bench=1").bench && !good("bench=0").bench);
        assert!(good("list_tests").list_tests);
        assert!(bad("demo=2").starts_with("Warning 'demo=2': `2` is not a yes/no value; accepted: 1, 0, on"));
        assert!(bad("bench=fast").starts_with("Warning 'bench=fast': `fast` is not a yes/no value"));
        assert!(bad("list_tests=maybe").starts_with("Error 'list_tests=maybe'"));
    }

    #[test]
    fn fail_demo_key() {
        assert_eq!(good("fail_demo=1").fail_demo, FailDemo::On);
        assert_eq!(good("fail_demo").fail_demo, FailDemo::On);
        assert_eq!(good("fail_demo=hang").fail_demo, FailDemo::Hang);
        assert_eq!(good("fail_demo=hang fail_demo=0").fail_demo, FailDemo::Off);
        assert!(bad("fail_demo=crash").starts_with("Error 'fail_demo=crash': `crash` is not a yes/no value; accepted: 1, 0"));
        assert!(bad("fail_demo=crash").ends_with("or `hang`"));
    }

    #[test]
    fn stress_keys() {
        assert_eq!(good("stress=long").stress, STRESS_LONG);
        assert_eq!(good("stress=5").stress, 5);
        assert_eq!(good("stress=100000000").stress, STRESS_MAX);
        assert_eq!(
            bad("stress=-5"),
            "Error 'stress=-5': `-5` is not a number of switches; accepted: `long` (20000 switches) \
             or a number of switches from 1 to 100000000"
        );
        for v in ["stress=0", "stress=", "stress=1e3", "stress=100000001", "stress=99999999999999999999"] {
            assert!(bad(v).starts_with(&alloc::format!("Error '{v}': ")), "{v}");
        }
        assert_eq!(good("stress_mask=3").stress_mask, 3);
        assert_eq!(good("stress_mask=0xff").stress_mask, 0xff);
        assert_eq!(good("stress_mask=0X10").stress_mask, 0x10);
        for v in ["stress_mask=0", "stress_mask=256", "stress_mask=0x", "stress_mask=-1", "stress_mask=all"] {
            let c = bad(v);
            assert!(c.starts_with(&alloc::format!("Error '{v}': ")) && c.contains("accepted: a non-zero 8-bit mask"), "{c}");
        }
    }

    #[test]
    fn modules_key() {
        assert_eq!(good("modules=all").modules, Some("all"));
        assert_eq!(good("modules=sample_a.ko+b-2").modules, Some("sample_a.ko+b-2"));
        assert_eq!(good("").modules, None);
        assert!(bad("modules=").starts_with("Error 'modules=': empty module name; accepted: `all`, or `+`-separated"));
        assert!(bad("modules=a++b").contains("empty module name"));
        assert!(bad("modules=a/b").starts_with("Error 'modules=a/b': `/` cannot appear in module name `a/b`"));
    }

    #[test]
    fn debugging_and_shell_keys() {
        assert!(good("gdbdemo").gdbdemo && good("gdbdemo=1").gdbdemo && !good("gdbdemo=off").gdbdemo);
        assert!(bad("gdbdemo=soon").starts_with("Warning 'gdbdemo=soon': `soon` is not a yes/no value"));
        assert!(good("shell").shell && !good("shell=0").shell);
        assert!(bad("shell=maybe").starts_with("Warning 'shell=maybe'"));
        assert_eq!(good("script").script, Some(""));
        assert_eq!(good("script=opt/x/boot.sh").script, Some("opt/x/boot.sh"));
        assert_eq!(good("").script, None);
        assert!(good("removal_rounds=0x10").removal_rounds == Some(16));
        assert!(bad("removal_rounds=+5").contains("`+5` is not a positive number"));
        assert!(bad("removal_rounds=").contains("`` is not a positive number"));
    }

    #[test]
    fn record_keys() {
        assert_eq!(good("").record, RecordOptions::default());
        let r = good("record=function_graph record_workload=smp_chain record_ms=30 record_depth=2 record_fault=die record_filter=chain_*|!chain_b record_graph=chain_root").record;
        assert_eq!(
            r,
            RecordOptions {
                tracer: Some("function_graph"),
                workload: Some("smp_chain"),
                ms: 30,
                depth: 2,
                fault: Some("die"),
                filter: Some("chain_*|!chain_b"),
                graph: Some("chain_root"),
                stream: false,
            }
        );
        assert_eq!(good("record=function").record.tracer, Some("function"));
        for w in RECORD_WORKLOADS {
            assert_eq!(good(&alloc::format!("record_workload={w}")).record.workload, Some(*w));
        }
        assert_eq!(good("record_filter=*:mod:sample_mod").record.filter, Some("*:mod:sample_mod"));
        for (text, what) in [
            ("record=function_trace", "Error 'record=function_trace': `function_trace` is not one of them; accepted: nop, function, function_graph"),
            ("record", "Error 'record': `` is not one of them"),
            ("record_workload=chains", "Error 'record_workload=chains': `chains` is not one of them; accepted: chain, smp_chain"),
            ("record_ms=soon", "Error 'record_ms=soon': `soon` is not a number; accepted: a number of milliseconds"),
            ("record_ms=+30", "`+30` is not a number"),
            ("record_ms=-1", "`-1` is not a number"),
            ("record_depth=two", "Error 'record_depth=two': `two` is not a number; accepted: a maximum graph depth"),
            ("record_fault=sometimes", "Error 'record_fault=sometimes': `sometimes` is not one of them; accepted: corrupt, die"),
            ("record_filter=", "Error 'record_filter=': ``: empty filter pattern; accepted: `|`-separated function globs"),
            ("record_filter=chain_a||chain_b", "``: empty filter pattern"),
            ("record_filter=chain_a|!", "`!`: '!' must be followed by a pattern"),
            ("record_graph=", "Error 'record_graph=': ``: empty filter pattern"),
            ("record_graph=chain_root|!", "`!`: '!' must be followed by a pattern"),
        ] {
            let c = bad(text);
            assert!(c.starts_with(what) || c.contains(what), "{text}: {c}");
        }
    }

    #[test]
    fn one_complaint_per_bad_word() {
        let (o, c) = opts("log=info bogus x=1 tests=boot log=loud stress=-5");
        assert_eq!(o.tests, Tests::Globs("boot"));
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c[0].starts_with("Warning 'bogus': unknown key `bogus`; known keys: tests, log, demo,"), "{}", c[0]);
        assert!(c[1].starts_with("Warning 'x=1': unknown key `x`"));
        assert!(c[2].starts_with("Warning 'log=loud'"));
        assert!(c[3].starts_with("Error 'stress=-5'"));
    }
}
