//! KTAP version 1 parser for the kernel's serial output, with loongtrace's own end and panic markers.
//!
//! The kernel prints one top-level KTAP document whose tests are suites; each suite is a nested,
//! indented KTAP document whose tests are the cases:
//!
//! ```text
//! KTAP version 1
//! 1..2
//!     KTAP version 1
//!     # Subtest: boot
//!     1..2
//!     ok 1 heap_alloc
//!     # panicked at kernel/src/x.rs:10:5: msg
//!     not ok 2 symbols
//! ok 1 boot
//! ...
//! # loongtrace: tests done: 1 passed, 1 failed, 0 skipped
//! ```
//!
//! Lines that are not KTAP (log lines such as `[    0.001234] INFO  cpu0: text`) may appear anywhere
//! and are ignored, except that they are kept as the `log` of the next case. Indentation may be any
//! consistent width; the first indented KTAP line fixes it. Deeper levels (subtests of a case) are
//! folded into that case's diagnostics.
//!
//! [`parse`] never fails: everything that is wrong with the output becomes a [`Problem`] in the
//! [`Report`].

use std::fmt;
use std::time::Duration;

/// Printed by the kernel as its last test line; without it the run did not finish.
pub const DONE_MARKER: &str = "# loongtrace: tests done";
/// Start of the line the kernel prints when it panics outside a test (the run stops).
pub const PANIC_MARKER: &str = "!!! KERNEL PANIC";
/// Start of the line the kernel prints for an unrecoverable CPU exception (the run stops).
pub const FATAL_EXCEPTION_MARKER: &str = "!!! FATAL EXCEPTION";
/// Start of each command-line error the kernel prints (it then runs no tests).
pub const CMDLINE_ERROR_MARKER: &str = "# loongtrace: command-line error:";
/// Start of the line listing every suite the kernel has (printed before its KTAP output).
pub const SUITES_MARKER: &str = "# loongtrace: suites:";
/// Start of a line naming one selected case (`<suite>.<case>`), printed with `list_tests=1`.
pub const CASE_MARKER: &str = "# loongtrace: case ";
/// How many lines after a panic or fatal-exception marker are kept (message and location).
pub const FATAL_CONTEXT_LINES: usize = 3;

/// The result of a case (or of a whole suite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Skipped, with the reason given after `# SKIP` (also used for `# TODO` and `# XFAIL`).
    Skip(String),
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail)
    }
    pub fn is_skip(&self) -> bool {
        matches!(self, Outcome::Skip(_))
    }
}

/// One test case: a result line inside a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The number printed on the result line (0 if it had none).
    pub number: usize,
    pub name: String,
    pub outcome: Outcome,
    /// The `# ...` lines (without the leading `#`) printed in this suite directly before the result
    /// line, e.g. `panicked at kernel/src/x.rs:10:5: msg`.
    pub diagnostics: Vec<String>,
    /// Non-KTAP lines (kernel log) printed since the previous result line of this suite.
    pub log: Vec<String>,
}

/// One suite: a nested KTAP document and the top-level result line that closes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suite {
    /// From `# Subtest: NAME`, or from the result line if the header was missing.
    pub name: String,
    /// The number of cases announced by the suite's `1..N` line.
    pub plan: Option<usize>,
    pub cases: Vec<Case>,
    /// The top-level result line of the suite; `None` if it never came.
    pub result: Option<Outcome>,
    /// Diagnostics inside the suite after its last case (e.g. per-suite totals).
    pub diagnostics: Vec<String>,
}

/// Counts printed by the kernel on its final `# loongtrace: tests done: ...` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Something wrong with a run. Every variant except [`Problem::CaseFailed`] is *fatal*: it is about
/// the run as a whole (see [`Problem::is_fatal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No top-level `KTAP version 1` line.
    MissingVersion,
    /// No `1..N` plan at the top level (`suite: None`) or in a suite.
    MissingPlan { suite: Option<String> },
    /// The plan announced `planned` tests but `got` result lines came.
    CountMismatch {
        suite: Option<String>,
        planned: usize,
        got: usize,
    },
    /// A result line carried the wrong number (`got: None` = no number at all).
    NonSequential {
        suite: Option<String>,
        name: String,
        expected: usize,
        got: Option<usize>,
    },
    /// A suite was never closed by its top-level result line.
    SuiteResultMissing { suite: String },
    /// A suite `# Subtest: expected` was closed by the result line of `got`.
    SuiteResultName { expected: String, got: String },
    /// A suite reported `not ok` although none of its cases failed (or it has no cases).
    SuiteFailed { suite: String },
    /// A case reported `not ok` (or `# TIMEOUT` / `# ERROR`).
    CaseFailed { suite: String, case: String },
    /// The output ended without [`DONE_MARKER`]: the kernel crashed, hung or powered off early.
    Unfinished {
        last_line: Option<String>,
        inside: Option<String>,
    },
    /// The run was killed after `timeout` without the kernel finishing.
    TimedOut {
        timeout: Duration,
        last_line: Option<String>,
    },
    /// The kernel printed [`DONE_MARKER`] but QEMU did not exit before the timeout.
    NoPowerOff { timeout: Duration },
    /// A [`PANIC_MARKER`] line and the lines after it.
    KernelPanic { lines: Vec<String> },
    /// A [`FATAL_EXCEPTION_MARKER`] line and the lines after it.
    FatalException { lines: Vec<String> },
    /// The kernel's own counts on the final line differ from the parsed cases (lost output?).
    SummaryMismatch { kernel: Summary, parsed: Summary },
    /// A [`CMDLINE_ERROR_MARKER`] line: the kernel refused a command-line word.
    CommandLine { message: String },
    /// The run finished without a single case although tests were asked for (see
    /// [`Report::check_selection`]).
    NothingSelected {
        /// The `tests=` value, if there was one.
        selection: Option<String>,
        /// The suites the kernel listed.
        suites: Vec<String>,
    },
}

impl Problem {
    /// True for problems about the run as a whole (panic, hang, missing plan, wrong count, ...),
    /// false for a single failed case.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Problem::CaseFailed { .. })
    }
}

fn or_none(line: &Option<String>) -> &str {
    line.as_deref().unwrap_or("(no output)")
}

/// Formats a duration as `60 s` or `1.5 s`.
pub fn format_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn scope(suite: &Option<String>) -> String {
    match suite {
        Some(s) => format!("suite `{s}`"),
        None => "top level".to_string(),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingVersion => {
                write!(
                    f,
                    "no top-level `KTAP version 1` line (did the kernel start its tests?)"
                )
            }
            Problem::MissingPlan { suite: None } => {
                write!(f, "no top-level test plan `1..N` in the output")
            }
            Problem::MissingPlan { suite: Some(s) } => {
                write!(f, "suite `{s}` has no test plan `1..N`")
            }
            Problem::CountMismatch {
                suite: None,
                planned,
                got,
            } => write!(
                f,
                "wrong number of suites: the top-level plan announced {planned} but {got} reported a result"
            ),
            Problem::CountMismatch {
                suite: Some(s),
                planned,
                got,
            } => write!(
                f,
                "suite `{s}`: wrong number of cases: the plan announced {planned} but {got} reported a result"
            ),
            Problem::NonSequential {
                suite,
                name,
                expected,
                got,
            } => match got {
                Some(n) => write!(
                    f,
                    "{}: result `{name}` is numbered {n} but {expected} was expected",
                    scope(suite)
                ),
                None => write!(
                    f,
                    "{}: result `{name}` has no number ({expected} was expected)",
                    scope(suite)
                ),
            },
            Problem::SuiteResultMissing { suite } => {
                write!(f, "suite `{suite}` has no top-level result line")
            }
            Problem::SuiteResultName { expected, got } => write!(
                f,
                "suite `{expected}` was closed by a result line for `{got}`"
            ),
            Problem::SuiteFailed { suite } => {
                write!(
                    f,
                    "suite `{suite}` reported `not ok` but none of its cases failed"
                )
            }
            Problem::CaseFailed { suite, case } => write!(f, "case `{suite}.{case}` failed"),
            Problem::Unfinished { last_line, inside } => {
                write!(
                    f,
                    "kernel stopped before printing `{DONE_MARKER}` (crash or early power-off?)"
                )?;
                if let Some(inside) = inside {
                    write!(f, " while running {inside}")?;
                }
                write!(f, " — last line: {}", or_none(last_line))
            }
            Problem::TimedOut { timeout, last_line } => write!(
                f,
                "kernel did not finish within {} (hang?) — last line: {}",
                format_secs(*timeout),
                or_none(last_line)
            ),
            Problem::NoPowerOff { timeout } => write!(
                f,
                "kernel printed `{DONE_MARKER}` but QEMU did not exit within {} (power-off failed?)",
                format_secs(*timeout)
            ),
            Problem::KernelPanic { lines } => write!(f, "kernel panic: {}", lines.join(" | ")),
            Problem::FatalException { lines } => {
                write!(f, "fatal exception: {}", lines.join(" | "))
            }
            Problem::SummaryMismatch { kernel, parsed } => write!(
                f,
                "the kernel counted {kernel} but its output shows {parsed} (lost or garbled output?)"
            ),
            Problem::CommandLine { message } => write!(f, "kernel command line: {message}"),
            Problem::NothingSelected { selection, suites } => {
                match selection {
                    Some(s) => write!(f, "no test case matches `tests={s}`")?,
                    None => write!(f, "the kernel ran no test case")?,
                }
                if suites.is_empty() {
                    write!(f, " (the kernel did not list its suites)")?;
                } else {
                    write!(f, "; the suites are: {}", suites.join(", "))?;
                }
                write!(f, " (`tests=none` boots without tests)")
            }
        }
    }
}

/// Everything learned from one run's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The top-level plan: number of suites announced.
    pub plan: Option<usize>,
    pub suites: Vec<Suite>,
    pub problems: Vec<Problem>,
    /// True once [`DONE_MARKER`] was seen.
    pub finished: bool,
    /// The counts on the final line, if they could be read.
    pub summary: Option<Summary>,
    /// The last non-empty line of the output.
    pub last_line: Option<String>,
    /// The suites the kernel said it has ([`SUITES_MARKER`]).
    pub known_suites: Vec<String>,
    /// The cases the kernel listed as selected ([`CASE_MARKER`], `suite.case`).
    pub listed: Vec<String>,
}

impl Report {
    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.cases().filter(|(_, c)| pred(&c.outcome)).count()
    }

    /// All cases with their suite, in output order.
    pub fn cases(&self) -> impl Iterator<Item = (&Suite, &Case)> {
        self.suites
            .iter()
            .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(Outcome::is_pass)
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(Outcome::is_fail)
    }

    /// Cases that were skipped.
    pub fn skipped(&self) -> usize {
        self.count(Outcome::is_skip)
    }

    /// The problems about the whole run (everything but single failed cases).
    pub fn fatal_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_fatal())
    }

    /// True when nothing went wrong: no problems and no failed case.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.failed() == 0
    }

    /// Fails a finished run that reported no case unless the command line asked for none
    /// (`tests=none`) or for the case list (`list_tests`): a selection that matches nothing (a
    /// typo) must not pass. A command-line error already explains an empty run.
    pub fn check_selection(&mut self, cmdline: &str) {
        let words: Vec<&str> = cmdline.split([' ', ';', '\n', '\t']).filter(|w| !w.is_empty()).collect();
        let tests = words.iter().filter_map(|w| w.strip_prefix("tests=")).next_back();
        let listing = words.iter().any(|w| *w == "list_tests" || w.starts_with("list_tests="));
        let explained = self.problems.iter().any(|p| matches!(p, Problem::CommandLine { .. }));
        if tests == Some("none") || listing || explained || !self.finished || !self.suites.is_empty() {
            return;
        }
        self.problems.push(Problem::NothingSelected {
            selection: tests.map(String::from),
            suites: self.known_suites.clone(),
        });
    }

    /// Records that the run was killed after `timeout`. Replaces the [`Problem::Unfinished`] that the
    /// parser reported (the timeout explains it better), or, if the kernel did finish, reports that
    /// QEMU failed to exit.
    pub fn mark_timed_out(&mut self, timeout: Duration) {
        if self
            .problems
            .iter()
            .any(|p| matches!(p, Problem::TimedOut { .. } | Problem::NoPowerOff { .. }))
        {
            return;
        }
        let timed_out = Problem::TimedOut {
            timeout,
            last_line: self.last_line.clone(),
        };
        if let Some(p) = self
            .problems
            .iter_mut()
            .find(|p| matches!(p, Problem::Unfinished { .. }))
        {
            *p = timed_out;
        } else if self.finished {
            self.problems.push(Problem::NoPowerOff { timeout });
        } else {
            self.problems.push(timed_out);
        }
    }
}

/// Parses a whole captured output.
pub fn parse(text: &str) -> Report {
    parse_lines(text.lines())
}

/// Parses output given line by line.
pub fn parse_lines<I, S>(lines: I) -> Report
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut parser = Parser::default();
    for line in lines {
        parser.line(line.as_ref());
    }
    parser.finish()
}

/// A classified KTAP line.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Version,
    Plan(usize),
    Result(ResultLine),
    Subtest(&'a str),
    Diagnostic(&'a str),
    Other,
}

#[derive(Debug, PartialEq, Eq)]
struct ResultLine {
    number: Option<usize>,
    name: String,
    outcome: Outcome,
    /// Set for `# TIMEOUT` / `# ERROR`: shown as an extra diagnostic.
    note: Option<String>,
}

fn classify(content: &str) -> Line<'_> {
    let version = content
        .strip_prefix("KTAP version ")
        .or_else(|| content.strip_prefix("TAP version "));
    if let Some(rest) = version
        && rest.trim().parse::<u32>().is_ok()
    {
        return Line::Version;
    }
    if let Some(n) = content.strip_prefix("1..")
        && let Ok(n) = n.trim().parse()
    {
        return Line::Plan(n);
    }
    if let Some(r) = parse_result(content) {
        return Line::Result(r);
    }
    if let Some(rest) = content.strip_prefix('#') {
        if let Some(name) = rest.trim_start().strip_prefix("Subtest:") {
            return Line::Subtest(name.trim());
        }
        // Keep indentation after `# ` (aligned assertion output).
        return Line::Diagnostic(rest.strip_prefix(' ').unwrap_or(rest).trim_end());
    }
    Line::Other
}

/// Strips a keyword that must be followed by whitespace or the end of the line.
fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Some(rest.trim_start())
    } else {
        None
    }
}

fn parse_result(content: &str) -> Option<ResultLine> {
    let (ok, rest) = if let Some(rest) = strip_word(content, "ok") {
        (true, rest)
    } else {
        let rest = strip_word(content, "not")?;
        (false, strip_word(rest, "ok")?)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = if digits > 0 {
        rest[..digits].parse().ok()
    } else {
        None
    };
    let rest = &rest[digits..];
    if digits > 0 && !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None; // e.g. `ok 12abc`: not a result line
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    // The directive starts at the first `#` that begins a word.
    let hash = rest
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || rest[..i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i);
    let (name, directive) = match hash {
        Some(i) => (rest[..i].trim(), Some(rest[i + 1..].trim())),
        None => (rest.trim(), None),
    };
    let mut outcome = if ok { Outcome::Pass } else { Outcome::Fail };
    let mut note = None;
    if let Some(directive) = directive {
        let word_len = directive
            .find(char::is_whitespace)
            .unwrap_or(directive.len());
        let word = directive[..word_len].to_ascii_uppercase();
        let reason = directive[word_len..].trim();
        let labelled = |label: &str| {
            if reason.is_empty() {
                label.to_string()
            } else {
                format!("{label}: {reason}")
            }
        };
        match word.as_str() {
            "SKIP" => outcome = Outcome::Skip(reason.to_string()),
            "TODO" | "XFAIL" => outcome = Outcome::Skip(labelled(&word)),
            "TIMEOUT" | "ERROR" => {
                outcome = Outcome::Fail;
                note = Some(labelled(&word));
            }
            _ => {} // an unknown directive is a comment
        }
    }
    Some(ResultLine {
        number,
        name: name.to_string(),
        outcome,
        note,
    })
}

/// Reads `N passed, N failed, N skipped` after the done marker (in any order; missing = 0).
fn parse_summary(text: &str) -> Option<Summary> {
    let mut summary = Summary::default();
    let mut seen = false;
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let Ok(n) = pair[0].parse::<usize>() else {
            continue;
        };
        let slot = match pair[1] {
            "passed" => &mut summary.passed,
            "failed" => &mut summary.failed,
            "skipped" => &mut summary.skipped,
            _ => continue,
        };
        *slot = n;
        seen = true;
    }
    seen.then_some(summary)
}

/// A suite whose top-level result line has not come yet.
#[derive(Debug, Default)]
struct OpenSuite {
    suite: Suite,
    saw_version: bool,
    /// Diagnostics since the last result line of the suite.
    diagnostics: Vec<String>,
    /// Log lines since the last result line of the suite.
    log: Vec<String>,
}

impl OpenSuite {
    fn started(&self) -> bool {
        self.suite.plan.is_some() || !self.suite.cases.is_empty()
    }
}

#[derive(Debug, Default)]
struct Parser {
    report: Report,
    saw_version: bool,
    indent_unit: Option<usize>,
    top_results: usize,
    open: Option<OpenSuite>,
    /// Index into `report.problems` of a panic being captured, and how many lines are still wanted.
    capture: Option<(usize, usize)>,
}

impl Parser {
    fn line(&mut self, raw: &str) {
        let line = raw.trim_end();
        if line.trim().is_empty() {
            return;
        }
        self.report.last_line = Some(line.trim().to_string());

        if let Some(problem) = self.fatal_marker(line) {
            self.report.problems.push(problem);
            self.capture = Some((self.report.problems.len() - 1, FATAL_CONTEXT_LINES));
            return;
        }
        if let Some((index, left)) = self.capture.take() {
            if let Some(Problem::KernelPanic { lines } | Problem::FatalException { lines }) =
                self.report.problems.get_mut(index)
            {
                lines.push(line.trim().to_string());
            }
            if left > 1 {
                self.capture = Some((index, left - 1));
            }
        }
        if let Some(at) = line.find(CMDLINE_ERROR_MARKER) {
            let message = line[at + CMDLINE_ERROR_MARKER.len()..].trim().to_string();
            self.report.problems.push(Problem::CommandLine { message });
            return;
        }
        if let Some(at) = line.find(SUITES_MARKER) {
            let names = line[at + SUITES_MARKER.len()..].split_whitespace();
            self.report.known_suites = names.map(String::from).collect();
            return;
        }
        if let Some(at) = line.find(CASE_MARKER) {
            self.report.listed.push(line[at + CASE_MARKER.len()..].trim().to_string());
            return;
        }
        if let Some(at) = line.find(DONE_MARKER) {
            self.report.finished = true;
            self.report.summary = parse_summary(&line[at + DONE_MARKER.len()..]);
            return;
        }

        let content = line.trim_start();
        let indent = line.len() - content.len();
        let kind = classify(content);
        if kind == Line::Other {
            if let Some(open) = &mut self.open {
                open.log.push(line.to_string());
            }
            return;
        }
        let depth = if indent == 0 {
            0
        } else {
            let unit = *self.indent_unit.get_or_insert(indent);
            (indent / unit).max(1)
        };
        match depth {
            0 => self.top_level(kind),
            1 => self.in_suite(kind),
            _ => self.nested(depth, content),
        }
    }

    fn fatal_marker(&self, line: &str) -> Option<Problem> {
        for marker in [PANIC_MARKER, FATAL_EXCEPTION_MARKER] {
            if let Some(at) = line.find(marker) {
                let lines = vec![line[at..].trim().to_string()];
                return Some(if marker == PANIC_MARKER {
                    Problem::KernelPanic { lines }
                } else {
                    Problem::FatalException { lines }
                });
            }
        }
        None
    }

    fn top_level(&mut self, kind: Line<'_>) {
        match kind {
            Line::Version => self.saw_version = true,
            Line::Plan(n) => {
                self.report.plan.get_or_insert(n);
            }
            Line::Result(r) => self.close_suite(r),
            // Top-level diagnostics are not attached to anything.
            Line::Subtest(_) | Line::Diagnostic(_) | Line::Other => {}
        }
    }

    fn close_suite(&mut self, r: ResultLine) {
        self.top_results += 1;
        let expected = self.top_results;
        if r.number != Some(expected) {
            self.report.problems.push(Problem::NonSequential {
                suite: None,
                name: r.name.clone(),
                expected,
                got: r.number,
            });
        }
        let Some(open) = self.open.take() else {
            // A top-level test without subtests: keep it as a suite with no cases.
            if r.outcome.is_fail() {
                self.report.problems.push(Problem::SuiteFailed {
                    suite: r.name.clone(),
                });
            }
            self.report.suites.push(Suite {
                name: r.name,
                result: Some(r.outcome),
                ..Suite::default()
            });
            return;
        };
        let mut suite = open.suite;
        if suite.name.is_empty() {
            suite.name = r.name.clone();
        } else if suite.name != r.name {
            self.report.problems.push(Problem::SuiteResultName {
                expected: suite.name.clone(),
                got: r.name.clone(),
            });
        }
        suite.diagnostics = open.diagnostics;
        if let Some(note) = r.note {
            suite.diagnostics.push(note);
        }
        let skipped_empty = r.outcome.is_skip() && suite.cases.is_empty();
        if r.outcome.is_fail() && !suite.cases.iter().any(|c| c.outcome.is_fail()) {
            self.report.problems.push(Problem::SuiteFailed {
                suite: suite.name.clone(),
            });
        }
        suite.result = Some(r.outcome);
        self.check_plan(&suite, skipped_empty);
        self.report.suites.push(suite);
    }

    fn check_plan(&mut self, suite: &Suite, plan_optional: bool) {
        match suite.plan {
            None if !plan_optional => self.report.problems.push(Problem::MissingPlan {
                suite: Some(suite.name.clone()),
            }),
            Some(planned) if planned != suite.cases.len() => {
                self.report.problems.push(Problem::CountMismatch {
                    suite: Some(suite.name.clone()),
                    planned,
                    got: suite.cases.len(),
                })
            }
            _ => {}
        }
    }

    /// Closes a suite that never got its result line.
    fn abandon_suite(&mut self, open: OpenSuite) {
        let mut suite = open.suite;
        if suite.name.is_empty() {
            suite.name = format!("#{}", self.top_results + 1);
        }
        suite.diagnostics = open.diagnostics;
        self.report.problems.push(Problem::SuiteResultMissing {
            suite: suite.name.clone(),
        });
        self.check_plan(&suite, false);
        self.report.suites.push(suite);
    }

    fn in_suite(&mut self, kind: Line<'_>) {
        // A header line after the suite got going means a new suite began without the old one
        // being closed.
        let starts_new = match (&kind, &self.open) {
            (_, None) => true,
            (Line::Version, Some(o)) => o.saw_version || o.started(),
            (Line::Subtest(_), Some(o)) => !o.suite.name.is_empty() || o.started(),
            _ => false,
        };
        if starts_new {
            if let Some(old) = self.open.take() {
                self.abandon_suite(old);
            }
            self.open = Some(OpenSuite::default());
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        match kind {
            Line::Version => open.saw_version = true,
            Line::Subtest(name) => open.suite.name = name.to_string(),
            Line::Plan(n) => {
                if open.suite.plan.is_none() {
                    open.suite.plan = Some(n);
                    open.diagnostics.clear();
                }
            }
            Line::Diagnostic(text) => open.diagnostics.push(text.to_string()),
            Line::Result(r) => {
                let expected = open.suite.cases.len() + 1;
                let mut diagnostics = std::mem::take(&mut open.diagnostics);
                if let Some(note) = r.note {
                    diagnostics.push(note);
                }
                let case = Case {
                    number: r.number.unwrap_or(0),
                    name: r.name,
                    outcome: r.outcome,
                    diagnostics,
                    log: std::mem::take(&mut open.log),
                };
                let suite_name = open.suite.name.clone();
                if r.number != Some(expected) {
                    self.report.problems.push(Problem::NonSequential {
                        suite: Some(suite_name.clone()),
                        name: case.name.clone(),
                        expected,
                        got: r.number,
                    });
                }
                if case.outcome.is_fail() {
                    self.report.problems.push(Problem::CaseFailed {
                        suite: suite_name,
                        case: case.name.clone(),
                    });
                }
                open.suite.cases.push(case);
            }
            Line::Other => {}
        }
    }

    /// Lines of subtests of a case: kept as diagnostics of that case.
    fn nested(&mut self, depth: usize, content: &str) {
        if let Some(open) = &mut self.open {
            open.diagnostics
                .push(format!("{}{}", "  ".repeat(depth - 2), content));
        }
    }

    fn finish(mut self) -> Report {
        let finished = self.report.finished;
        if let Some(open) = self.open.take() {
            if finished {
                self.abandon_suite(open);
            } else {
                // Cut off inside this suite: keep what it printed; the cut is reported below.
                let mut suite = open.suite;
                suite.diagnostics = open.diagnostics;
                if suite.name.is_empty() {
                    suite.name = format!("#{}", self.top_results + 1);
                }
                let inside = match suite.cases.last() {
                    Some(c) => format!(
                        "suite `{}` after case {} `{}`",
                        suite.name, c.number, c.name
                    ),
                    None => format!("suite `{}` before its first case", suite.name),
                };
                self.report.suites.push(suite);
                self.push_unfinished(Some(inside));
            }
        } else if !finished {
            self.push_unfinished(None);
        }
        let mut tail = Vec::new();
        if !self.saw_version {
            tail.push(Problem::MissingVersion);
        }
        match self.report.plan {
            None => tail.push(Problem::MissingPlan { suite: None }),
            Some(planned) if finished && planned != self.top_results => {
                tail.push(Problem::CountMismatch {
                    suite: None,
                    planned,
                    got: self.top_results,
                })
            }
            _ => {}
        }
        if let Some(kernel) = self.report.summary {
            let parsed = Summary {
                passed: self.report.passed(),
                failed: self.report.failed(),
                skipped: self.report.skipped(),
            };
            if kernel != parsed {
                tail.push(Problem::SummaryMismatch { kernel, parsed });
            }
        }
        // Structural problems first (they explain the rest), the cut-off last.
        let unfinished: Vec<Problem> = self
            .report
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::Unfinished { .. }))
            .cloned()
            .collect();
        self.report
            .problems
            .retain(|p| !matches!(p, Problem::Unfinished { .. }));
        self.report.problems.extend(tail);
        self.report.problems.extend(unfinished);
        self.report
    }

    fn push_unfinished(&mut self, inside: Option<String>) {
        let last_line = self.report.last_line.clone();
        self.report
            .problems
            .push(Problem::Unfinished { last_line, inside });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_numbering_problems_read_well() {
        let s = Summary { passed: 3, failed: 1, skipped: 2 };
        assert_eq!(s.to_string(), "3 passed, 1 failed, 2 skipped");
        let p = Problem::NonSequential { suite: Some("boot".into()), name: "timer".into(), expected: 2, got: Some(5) };
        assert_eq!(p.to_string(), "suite `boot`: result `timer` is numbered 5 but 2 was expected");
        let p = Problem::NonSequential { suite: None, name: "insn".into(), expected: 1, got: None };
        assert_eq!(p.to_string(), "top level: result `insn` has no number (1 was expected)");
    }

    fn result(line: &str) -> ResultLine {
        parse_result(line).unwrap_or_else(|| panic!("not a result line: {line}"))
    }

    #[test]
    fn result_lines() {
        let r = result("ok 1 heap_alloc");
        assert_eq!(
            (r.number, r.name.as_str(), r.outcome),
            (Some(1), "heap_alloc", Outcome::Pass)
        );
        let r = result("not ok 12 - symbols");
        assert_eq!(
            (r.number, r.name.as_str(), r.outcome),
            (Some(12), "symbols", Outcome::Fail)
        );
        let r = result("ok 3 timer # SKIP no timer");
        assert_eq!(r.outcome, Outcome::Skip("no timer".into()));
        assert_eq!(r.name, "timer");
        let r = result("not ok 3 timer # skip");
        assert_eq!(r.outcome, Outcome::Skip(String::new()));
        let r = result("ok 4 slow # TIMEOUT after 5 s");
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(r.note.as_deref(), Some("TIMEOUT: after 5 s"));
        let r = result("not ok 5 x # ERROR");
        assert_eq!(
            (r.outcome, r.note.as_deref()),
            (Outcome::Fail, Some("ERROR"))
        );
        assert_eq!(
            result("not ok 6 y # TODO later").outcome,
            Outcome::Skip("TODO: later".into())
        );
        assert_eq!(
            result("not ok 7 z # XFAIL").outcome,
            Outcome::Skip("XFAIL".into())
        );
        let r = result("ok 8 name#with#hash # comment");
        assert_eq!(
            (r.name.as_str(), r.outcome),
            ("name#with#hash", Outcome::Pass)
        );
        let r = result("ok 9 # SKIP all");
        assert_eq!(
            (r.name.as_str(), r.outcome),
            ("", Outcome::Skip("all".into()))
        );
        // The kernel appends the run time of passing cases as a comment.
        let r = result("ok 1 heap_alloc # 112us");
        assert_eq!(
            (r.name.as_str(), r.outcome, r.note),
            ("heap_alloc", Outcome::Pass, None)
        );
        let r = result("ok name_without_number");
        assert_eq!((r.number, r.name.as_str()), (None, "name_without_number"));
    }

    #[test]
    fn non_result_lines() {
        for line in [
            "okay then",
            "not okay",
            "ok12",
            "ok 12abc",
            "nothing",
            "[ 0.1] ok 1 x",
        ] {
            assert_eq!(parse_result(line), None, "{line}");
        }
        assert_eq!(classify("KTAP version 1"), Line::Version);
        assert_eq!(classify("TAP version 14"), Line::Version);
        assert_eq!(classify("KTAP version one"), Line::Other);
        assert_eq!(classify("1..7"), Line::Plan(7));
        assert_eq!(classify("1..x"), Line::Other);
        assert_eq!(classify("# Subtest: boot"), Line::Subtest("boot"));
        assert_eq!(classify("# hello"), Line::Diagnostic("hello"));
        assert_eq!(classify("#"), Line::Diagnostic(""));
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            parse_summary(": 10 passed, 1 failed, 2 skipped"),
            Some(Summary {
                passed: 10,
                failed: 1,
                skipped: 2
            })
        );
        assert_eq!(
            parse_summary(": 3 passed"),
            Some(Summary {
                passed: 3,
                failed: 0,
                skipped: 0
            })
        );
        assert_eq!(parse_summary(""), None);
    }

    #[test]
    fn two_space_indent_and_crlf() {
        let text = "KTAP version 1\r\n1..1\r\n  KTAP version 1\r\n  # Subtest: a\r\n  1..2\r\n  ok 1 x\r\n  ok 2 y\r\nok 1 a\r\n# loongtrace: tests done: 2 passed, 0 failed, 0 skipped\r\n";
        let r = parse(text);
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.suites.len(), 1);
        assert_eq!(r.suites[0].cases.len(), 2);
        assert!(r.ok());
    }

    #[test]
    fn old_style_subtest_before_version() {
        let text = "KTAP version 1\n1..1\n    # Subtest: a\n    KTAP version 1\n    1..1\n    ok 1 x\nok 1 a\n# loongtrace: tests done: 1 passed, 0 failed, 0 skipped\n";
        let r = parse(text);
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.suites[0].name, "a");
    }

    #[test]
    fn nested_subtests_become_diagnostics() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: a\n    1..1\n        KTAP version 1\n        # Subtest: param\n        1..2\n        ok 1 p0\n        not ok 2 p1\n    not ok 1 param\nnot ok 1 a\n# loongtrace: tests done: 0 passed, 1 failed, 0 skipped\n";
        let r = parse(text);
        let case = &r.suites[0].cases[0];
        assert_eq!(case.outcome, Outcome::Fail);
        assert!(
            case.diagnostics.contains(&"not ok 2 p1".to_string()),
            "{:?}",
            case.diagnostics
        );
        assert_eq!(
            r.problems,
            vec![Problem::CaseFailed {
                suite: "a".into(),
                case: "param".into()
            }]
        );
    }

    #[test]
    fn leaf_top_level_tests() {
        let text = "KTAP version 1\n1..2\nok 1 alone\nnot ok 2 broken\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n";
        let r = parse(text);
        assert_eq!(r.suites.len(), 2);
        assert_eq!(
            r.problems,
            vec![Problem::SuiteFailed {
                suite: "broken".into()
            }]
        );
        assert!(!r.ok());
    }

    #[test]
    fn skipped_suite_needs_no_plan() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: smp\nok 1 smp # SKIP one cpu\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n";
        let r = parse(text);
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.suites[0].result, Some(Outcome::Skip("one cpu".into())));
    }

    #[test]
    fn empty_output() {
        let r = parse("");
        assert_eq!(
            r.problems,
            vec![
                Problem::MissingVersion,
                Problem::MissingPlan { suite: None },
                Problem::Unfinished {
                    last_line: None,
                    inside: None
                },
            ]
        );
        assert!(!r.ok());
    }

    #[test]
    fn timeout_replaces_unfinished() {
        let mut r = parse("KTAP version 1\n1..1\n[ 1.0] INFO  cpu0: spinning");
        r.mark_timed_out(Duration::from_secs(60));
        assert_eq!(
            r.problems,
            vec![Problem::TimedOut {
                timeout: Duration::from_secs(60),
                last_line: Some("[ 1.0] INFO  cpu0: spinning".into())
            }]
        );
        assert_eq!(
            r.problems[0].to_string(),
            "kernel did not finish within 60 s (hang?) — last line: [ 1.0] INFO  cpu0: spinning"
        );
        // Marking twice changes nothing.
        let before = r.clone();
        r.mark_timed_out(Duration::from_secs(60));
        assert_eq!(r, before);
    }

    #[test]
    fn timeout_after_done_is_no_power_off() {
        let mut r = parse(
            "KTAP version 1\n1..0\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n",
        );
        assert!(r.ok());
        r.mark_timed_out(Duration::from_millis(1500));
        assert_eq!(
            r.problems,
            vec![Problem::NoPowerOff {
                timeout: Duration::from_millis(1500)
            }]
        );
        assert!(r.problems[0].to_string().contains("within 1.5 s"));
    }

    #[test]
    fn unclosed_suites_plain_tests_and_prefixed_summaries() {
        // Suite `a` is never closed: a new `KTAP version` line (and later a second `# Subtest:`
        // header) starts the next suite; `plain` is a top-level test without subtests.
        let text = "KTAP version 1\n1..4\n\
                    \x20   KTAP version 1\n    # Subtest: a\n    1..1\n    ok 1 x\n\
                    \x20   KTAP version 1\n    # Subtest: b\n    1..1\n    ok 1 y\nok 2 b\n\
                    \x20   # Subtest: c\n    1..1\n    ok 1 z\n    # Subtest: d\n    1..1\n    ok 1 w\nok 3 d\n\
                    ok 4 plain # SKIP nothing to run\n\
                    [    1.0] INFO  cpu0: # loongtrace: tests done: 4 passed; 0 failed; 1 skipped\n";
        let r = parse(text);
        let names: Vec<&str> = r.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "plain"], "{:?}", r.problems);
        let missing: Vec<&Problem> = r.problems.iter().filter(|p| matches!(p, Problem::SuiteResultMissing { .. })).collect();
        assert_eq!(missing, [&Problem::SuiteResultMissing { suite: "a".into() }, &Problem::SuiteResultMissing { suite: "c".into() }]);
        let plain = &r.suites[4];
        assert_eq!(plain.result, Some(Outcome::Skip("nothing to run".into())));
        assert!(plain.cases.is_empty());
        assert_eq!(r.summary, Some(Summary { passed: 4, failed: 0, skipped: 1 }));
    }

    #[test]
    fn selection_check_leaves_real_and_unfinished_runs_alone() {
        let ran = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: boot\n    1..1\n    ok 1 heap\nok 1 boot\n\
                   # loongtrace: tests done: 1 passed, 0 failed, 0 skipped\n";
        let mut r = parse(ran);
        r.check_selection("tests=boot");
        assert!(r.ok(), "a run with cases passes the check: {:?}", r.problems);
        // A run that stopped early is already failed for that; it gets no second complaint.
        let mut cut = parse("KTAP version 1\n1..1\n");
        let before = cut.problems.len();
        cut.check_selection("tests=boot");
        assert_eq!(cut.problems.len(), before, "{:?}", cut.problems);
    }

    #[test]
    fn plain_boot_without_tests() {
        let text = "[    0.0] INFO  cpu0: booting\n# loongtrace: suites: boot insn ftrace_ops\nKTAP version 1\n1..0\n\
                    # loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n";
        let mut r = parse(text);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.known_suites, ["boot", "insn", "ftrace_ops"]);
        r.check_selection("log=warn tests=none");
        assert!(r.ok(), "a plain boot was asked for: {:?}", r.problems);
        r.check_selection("tests=boot list_tests=1");
        assert!(r.ok(), "a listing runs nothing: {:?}", r.problems);
        let mut typo = r.clone();
        typo.check_selection("tests=none tests=ftarce_*");
        assert!(!typo.ok());
        assert_eq!(
            typo.problems[0].to_string(),
            "no test case matches `tests=ftarce_*`; the suites are: boot, insn, ftrace_ops \
             (`tests=none` boots without tests)"
        );
        assert!(typo.problems[0].is_fatal());
        r.check_selection("");
        assert!(r.problems[0].to_string().starts_with("the kernel ran no test case; the suites are: boot,"));
    }

    #[test]
    fn command_line_errors_and_listing() {
        let text = "[    0.0] INFO  cpu0: command line: 'tests=[[[['\n\
                    # loongtrace: command-line error: 'tests=[[[[': `[` cannot appear in glob `[[[[`; accepted: ...\n\
                    # loongtrace: case boot.heap_alloc\n# loongtrace: case insn.encoders\n\
                    KTAP version 1\n1..0\n# loongtrace: tests done: 0 passed, 0 failed, 0 skipped\n";
        let mut r = parse(text);
        assert_eq!(r.listed, ["boot.heap_alloc", "insn.encoders"]);
        assert_eq!(
            r.problems,
            [Problem::CommandLine { message: "'tests=[[[[': `[` cannot appear in glob `[[[[`; accepted: ...".into() }]
        );
        assert!(r.problems[0].is_fatal() && !r.ok());
        r.check_selection("tests=[[[[");
        assert_eq!(r.problems.len(), 1, "the error already explains the empty run");
    }

    #[test]
    fn fatal_problem_classification() {
        assert!(
            !Problem::CaseFailed {
                suite: "a".into(),
                case: "b".into()
            }
            .is_fatal()
        );
        assert!(Problem::MissingVersion.is_fatal());
        assert!(Problem::KernelPanic { lines: vec![] }.is_fatal());
    }

    #[test]
    fn new_suite_without_closing_old_one() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: a\n    1..1\n    ok 1 x\n    KTAP version 1\n    # Subtest: b\n    1..1\n    ok 1 y\nok 2 b\n# loongtrace: tests done: 2 passed, 0 failed, 0 skipped\n";
        let r = parse(text);
        assert_eq!(
            r.suites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            r.problems,
            vec![
                Problem::SuiteResultMissing { suite: "a".into() },
                Problem::NonSequential {
                    suite: None,
                    name: "b".into(),
                    expected: 1,
                    got: Some(2)
                },
                Problem::CountMismatch {
                    suite: None,
                    planned: 2,
                    got: 1
                },
            ]
        );
    }

    // ---- recorded outputs (tools/tests/fixtures) ----

    fn fixture(name: &str) -> Report {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(&text)
    }

    fn counts(r: &Report) -> (usize, usize, usize) {
        (r.passed(), r.failed(), r.skipped())
    }

    #[test]
    fn fixture_good() {
        let r = fixture("good.txt");
        assert_eq!(r.problems, vec![]);
        assert!(r.ok());
        assert!(r.finished);
        assert_eq!(r.plan, Some(3));
        assert_eq!(counts(&r), (6, 0, 1));
        assert_eq!(
            r.summary,
            Some(Summary {
                passed: 6,
                failed: 0,
                skipped: 1
            })
        );
        let names: Vec<_> = r.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["boot", "insn", "trace"]);
        let boot = &r.suites[0];
        assert_eq!(boot.plan, Some(3));
        assert_eq!(boot.result, Some(Outcome::Pass));
        assert_eq!(boot.cases[2].outcome, Outcome::Skip("no timer".into()));
        assert_eq!(boot.cases[2].number, 3);
    }

    #[test]
    fn fixture_failing() {
        let r = fixture("failing.txt");
        assert_eq!(
            r.problems,
            vec![Problem::CaseFailed {
                suite: "boot".into(),
                case: "symbols".into()
            }]
        );
        assert!(!r.ok());
        assert_eq!(r.fatal_problems().count(), 0);
        assert_eq!(counts(&r), (2, 1, 1));
        let case = &r.suites[0].cases[1];
        assert_eq!(
            case.diagnostics,
            ["some diagnostic", "expected 0x9000000000200000, got 0x0"]
        );
        assert_eq!(r.suites[0].result, Some(Outcome::Fail));
        assert!(r.suites[0].cases[0].diagnostics.is_empty());
    }

    #[test]
    fn fixture_panicking_test_is_a_failed_case() {
        let r = fixture("test_panic.txt");
        assert_eq!(
            r.problems,
            vec![Problem::CaseFailed {
                suite: "mm".into(),
                case: "page_table".into()
            }]
        );
        assert_eq!(counts(&r), (3, 1, 0));
        let case = &r.suites[0].cases[1];
        assert_eq!(
            case.diagnostics[0],
            "panicked at kernel/src/mm/paging.rs:142:9:"
        );
        assert_eq!(
            case.diagnostics[1..],
            [
                "assertion `left == right` failed",
                "  left: 0",
                " right: 4096"
            ]
        );
        assert_eq!(
            case.log,
            ["[    0.031000] WARN  cpu0: test mm.page_table panicked, continuing"]
        );
    }

    #[test]
    fn fixture_kernel_panic_stops_the_run() {
        let r = fixture("kernel_panic.txt");
        assert!(!r.ok());
        assert!(!r.finished);
        assert_eq!(counts(&r), (1, 0, 0));
        assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
        let Problem::KernelPanic { lines } = &r.problems[0] else {
            panic!("expected a kernel panic first: {:#?}", r.problems)
        };
        assert_eq!(lines.len(), 1 + FATAL_CONTEXT_LINES);
        assert_eq!(lines[0], "!!! KERNEL PANIC on cpu0 !!!");
        assert!(
            lines[1].ends_with("panicked at kernel/src/mm/heap.rs:88:13:"),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("heap corrupted: block freed twice"));
        let text = r.problems[0].to_string();
        assert!(
            text.starts_with("kernel panic: !!! KERNEL PANIC on cpu0 !!! | "),
            "{text}"
        );
        assert!(text.contains("kernel/src/mm/heap.rs:88:13"), "{text}");
        assert!(matches!(
            &r.problems[1],
            Problem::Unfinished { inside: Some(inside), .. } if inside.contains("`boot` after case 1")
        ));
        // The cases printed before the panic are kept.
        assert_eq!(r.suites.len(), 1);
        assert_eq!(r.suites[0].result, None);
    }

    #[test]
    fn fixture_fatal_exception() {
        let r = fixture("fatal_exception.txt");
        let Problem::FatalException { lines } = &r.problems[0] else {
            panic!("expected a fatal exception first: {:#?}", r.problems)
        };
        assert_eq!(lines[0], "!!! FATAL EXCEPTION: address error (ADE) on cpu0");
        assert_eq!(
            lines[2],
            "at loongtrace_kernel::trap::tests::null_read+0x20"
        );
        assert_eq!(lines.len(), 3);
        assert!(matches!(r.problems[1], Problem::Unfinished { .. }));
        assert_eq!(r.problems.len(), 2);
        assert_eq!(counts(&r), (1, 0, 0));
    }

    #[test]
    fn fixture_hang() {
        let r = fixture("hang.txt");
        assert!(!r.finished);
        assert_eq!(counts(&r), (4, 0, 0));
        let last = "[    0.120000] INFO  cpu0: waiting for cpu1 to answer IPI";
        assert_eq!(
            r.problems,
            vec![Problem::Unfinished {
                last_line: Some(last.into()),
                inside: Some("suite `smp` after case 1 `start_secondary`".into())
            }]
        );
        assert_eq!(r.fatal_problems().count(), 1);
        let mut timed_out = r.clone();
        timed_out.mark_timed_out(Duration::from_secs(120));
        assert_eq!(
            timed_out.problems[0].to_string(),
            format!("kernel did not finish within 120 s (hang?) — last line: {last}")
        );
    }

    #[test]
    fn fixture_missing_plan() {
        let r = fixture("missing_plan.txt");
        assert_eq!(
            r.problems,
            vec![
                Problem::MissingPlan {
                    suite: Some("boot".into())
                },
                Problem::MissingPlan { suite: None }
            ]
        );
        assert_eq!(counts(&r), (2, 0, 0));
        assert!(!r.ok());
    }

    #[test]
    fn fixture_wrong_count() {
        let r = fixture("wrong_count.txt");
        assert_eq!(
            r.problems,
            vec![
                Problem::CountMismatch {
                    suite: Some("boot".into()),
                    planned: 3,
                    got: 2
                },
                Problem::NonSequential {
                    suite: Some("insn".into()),
                    name: "decoders".into(),
                    expected: 2,
                    got: Some(3)
                },
                Problem::CountMismatch {
                    suite: Some("insn".into()),
                    planned: 1,
                    got: 2
                },
                Problem::CountMismatch {
                    suite: None,
                    planned: 3,
                    got: 2
                },
            ]
        );
        assert_eq!(counts(&r), (4, 0, 0));
        assert!(r.problems.iter().all(Problem::is_fatal));
    }

    #[test]
    fn fixture_garbage_interleaved() {
        let r = fixture("garbage.txt");
        assert_eq!(
            r.problems,
            vec![Problem::CaseFailed {
                suite: "boot".into(),
                case: "symbols".into()
            }]
        );
        assert_eq!(counts(&r), (1, 1, 1));
        let symbols = &r.suites[0].cases[1];
        assert_eq!(symbols.diagnostics, ["a diagnostic after a log line"]);
        assert_eq!(symbols.log.len(), 2);
        assert_eq!(
            r.suites[1].cases[0].outcome,
            Outcome::Skip("one cpu only".into())
        );
    }

    #[test]
    fn summary_mismatch_is_reported() {
        let text = include_str!("../tests/fixtures/good.txt").replace("6 passed", "7 passed");
        let r = parse(&text);
        assert_eq!(
            r.problems,
            vec![Problem::SummaryMismatch {
                kernel: Summary {
                    passed: 7,
                    failed: 0,
                    skipped: 1
                },
                parsed: Summary {
                    passed: 6,
                    failed: 0,
                    skipped: 1
                },
            }]
        );
    }
}
