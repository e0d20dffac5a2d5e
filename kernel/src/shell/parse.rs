//! The shell's grammar and the tracefs write syntax, as pure functions: words with quotes,
//! `>`/`>>` redirections, Linux error numbers and their messages, numbers as `kstrtoul` reads
//! them, and `set_ftrace_filter` commands (`func:traceoff:5`).

use alloc::string::String;
use alloc::vec::Vec;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    pub redirect: Option<Redirect>,
}

/// `> path` (replace) or `>> path` (append).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub append: bool,
    pub path: String,
}

/// Why a line could not be parsed (messages as `sh` prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    UnterminatedQuote,
    /// `>` without a file name.
    MissingTarget,
    /// Two redirections.
    TwoRedirects,
}

impl core::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SyntaxError::UnterminatedQuote => "syntax error: unterminated quoted string",
            SyntaxError::MissingTarget => "syntax error: unexpected newline",
            SyntaxError::TwoRedirects => "syntax error: only one redirection is supported",
        })
    }
}

/// Splits a line into words (`'...'` and `"..."` quote, `\` escapes one character outside single
/// quotes) and at most one unquoted `>`/`>>` redirection. `#` at the start of a word begins a
/// comment. An empty line gives an empty `argv`.
pub fn parse_line(line: &str) -> Result<Command, SyntaxError> {
    let mut argv = Vec::new();
    let mut redirect: Option<Redirect> = None;
    let mut pending_redirect: Option<bool> = None;
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut finish = |word: &mut String, in_word: &mut bool, pending: &mut Option<bool>, argv: &mut Vec<String>| -> Result<(), SyntaxError> {
        if !*in_word {
            return Ok(());
        }
        let w = core::mem::take(word);
        *in_word = false;
        match pending.take() {
            Some(append) => {
                if redirect.is_some() {
                    return Err(SyntaxError::TwoRedirects);
                }
                redirect = Some(Redirect { append, path: w });
            }
            None => argv.push(w),
        }
        Ok(())
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut in_word, &mut pending_redirect, &mut argv)?,
            '#' if !in_word => break,
            '>' => {
                finish(&mut word, &mut in_word, &mut pending_redirect, &mut argv)?;
                if pending_redirect.is_some() {
                    return Err(SyntaxError::MissingTarget);
                }
                let append = chars.peek() == Some(&'>');
                if append {
                    chars.next();
                }
                pending_redirect = Some(append);
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SyntaxError::UnterminatedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => word.push(chars.next().unwrap_or('\\')),
                        Some(c) => word.push(c),
                        None => return Err(SyntaxError::UnterminatedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut pending_redirect, &mut argv)?;
    if pending_redirect.is_some() {
        return Err(SyntaxError::MissingTarget);
    }
    drop(finish);
    Ok(Command { argv, redirect })
}

/// The error numbers tracefs writes and the shell's commands report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    EPERM,
    ENOENT,
    ENOMEM,
    EACCES,
    EBUSY,
    EEXIST,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENODEV,
    E2BIG,
    EOPNOTSUPP,
}

impl Errno {
    /// The message `strerror` gives.
    pub fn message(self) -> &'static str {
        match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EACCES => "Permission denied",
            Errno::EBUSY => "Device or resource busy",
            Errno::EEXIST => "File exists",
            Errno::ENOTDIR => "Not a directory",
            Errno::EISDIR => "Is a directory",
            Errno::EINVAL => "Invalid argument",
            Errno::ENODEV => "No such device",
            Errno::E2BIG => "Argument list too long",
            Errno::EOPNOTSUPP => "Operation not supported",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

/// An unsigned decimal number as Linux's `kstrtoul(buf, 10, ..)` reads a written buffer: optional
/// `+`, digits, one optional trailing newline; anything else (or overflow) is `EINVAL`.
pub fn parse_ulong(text: &str) -> Result<u64, Errno> {
    let t = text.strip_suffix('\n').unwrap_or(text);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Errno::EINVAL);
    }
    t.bytes().try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add((b - b'0') as u64)).ok_or(Errno::EINVAL)
}

/// A `set_ftrace_filter` command word: `pattern:command[:parameter]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterCommand<'a> {
    /// The function glob (may start with `!` to remove the probe).
    pub pattern: &'a str,
    pub command: &'a str,
    pub param: Option<&'a str>,
}

/// Positions of the single `:` separators in `word` (a `::` inside a Rust path is not one).
fn single_colons(word: &str) -> Vec<usize> {
    let b = word.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b':' && (i == 0 || b[i - 1] != b':') && b.get(i + 1) != Some(&b':'))
        .collect()
}

/// Splits a filter word into a command, or `None` for a plain glob. Rust paths (`a::b`) are
/// plain globs: only a lone `:` separates.
pub fn split_filter_command(word: &str) -> Option<FilterCommand<'_>> {
    let cut = single_colons(word);
    match cut.as_slice() {
        [] => None,
        [a] => Some(FilterCommand { pattern: &word[..*a], command: &word[a + 1..], param: None }),
        [a, b, ..] => Some(FilterCommand { pattern: &word[..*a], command: &word[a + 1..*b], param: Some(&word[b + 1..]) }),
    }
}

/// Linux's duration mark in the function_graph output (`+` over 10 us, `!` over 100 us, ...).
pub fn duration_mark(ns: u64) -> char {
    match ns {
        n if n > 1_000_000_000 => '$',
        n if n > 100_000_000 => '@',
        n if n > 10_000_000 => '*',
        n if n > 1_000_000 => '#',
        n if n > 100_000 => '!',
        n if n > 10_000 => '+',
        _ => ' ',
    }
}

/// A duration as Linux's graph and stat output prints it: microseconds with up to three decimals
/// so the number keeps at most 8 characters, then ` us `, padded to a fixed column width.
pub fn write_graph_duration(w: &mut dyn core::fmt::Write, ns: u64) -> core::fmt::Result {
    let (us, rem) = (ns / 1000, ns % 1000);
    let mut num = alloc::format!("{us}");
    if num.len() < 7 {
        let digits = (7 - num.len()).min(3);
        let frac = alloc::format!("{rem:03}");
        num.push('.');
        num.push_str(&frac[..digits]);
    }
    write!(w, "{num} us ")?;
    for _ in num.len()..8 {
        w.write_char(' ')?;
    }
    Ok(())
}

/// The header of `trace_stat/functionN`.
pub const STAT_HEADER: &str = "  Function                               Hit    Time            Avg             s^2\n  --------                               ---    ----            ---             ---\n";

/// One row of `trace_stat/functionN`: hits, total time, average and the sample variance
/// (`s^2 = (n * sum(x^2) - (sum x)^2) / (n * (n - 1))`, in us^2 shown as Linux does).
pub fn write_stat_row(w: &mut dyn core::fmt::Write, name: &str, hits: u64, time_ns: u64, time_sq: u128) -> core::fmt::Result {
    let short: String = name.chars().take(30).collect();
    write!(w, "  {short:<30}  {hits:>10}    ")?;
    write_graph_duration(w, time_ns)?;
    w.write_str("    ")?;
    let avg = if hits == 0 { 0 } else { time_ns / hits };
    write_graph_duration(w, avg)?;
    w.write_str("    ")?;
    let var = if hits <= 1 {
        0
    } else {
        let n = hits as u128;
        let num = (n * time_sq).saturating_sub(time_ns as u128 * time_ns as u128);
        (num / (n * (n - 1) * 1000)).min(u64::MAX as u128) as u64
    };
    write_graph_duration(w, var)?;
    w.write_char('\n')
}

/// The header of `stack_trace`.
pub fn write_stack_header(w: &mut dyn core::fmt::Write, entries: usize) -> core::fmt::Result {
    write!(w, "        Depth    Size   Location    ({entries} entries)\n        -----    ----   --------\n")
}

/// One row of `stack_trace`.
pub fn write_stack_row(w: &mut dyn core::fmt::Write, i: usize, depth: u64, size: u64, location: &dyn core::fmt::Display) -> core::fmt::Result {
    writeln!(w, "{i:>3}) {depth:>8}   {size:>5}   {location}")
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;
    use std::vec;

    fn words(line: &str) -> Vec<String> {
        parse_line(line).unwrap().argv
    }

    #[test]
    fn words_quotes_redirects() {
        assert_eq!(words("  ls   per_cpu "), ["ls", "per_cpu"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("# comment"), Vec::<String>::new());
        assert_eq!(words("echo 'a b' \"c \\\"d\" e\\ f"), ["echo", "a b", "c \"d", "e f"]);
        let c = parse_line("echo function_graph > current_tracer").unwrap();
        assert_eq!(c.argv, ["echo", "function_graph"]);
        assert_eq!(c.redirect, Some(Redirect { append: false, path: "current_tracer".into() }));
        let c = parse_line("echo '!chain_a'>>set_ftrace_filter").unwrap();
        assert_eq!(c.argv, ["echo", "!chain_a"]);
        assert_eq!(c.redirect, Some(Redirect { append: true, path: "set_ftrace_filter".into() }));
        let c = parse_line("echo 'a > b'").unwrap();
        assert_eq!(c.argv, ["echo", "a > b"]);
        assert!(c.redirect.is_none());
        let c = parse_line("echo > trace").unwrap();
        assert_eq!(c.argv, ["echo"]);
        assert_eq!(c.redirect.unwrap().path, "trace");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse_line("echo 'x"), Err(SyntaxError::UnterminatedQuote));
        assert_eq!(parse_line("echo \"x"), Err(SyntaxError::UnterminatedQuote));
        assert_eq!(parse_line("echo x >"), Err(SyntaxError::MissingTarget));
        assert_eq!(parse_line("echo x > > y"), Err(SyntaxError::MissingTarget));
        assert_eq!(parse_line("echo x > a > b"), Err(SyntaxError::TwoRedirects));
        assert_eq!(SyntaxError::MissingTarget.to_string(), "syntax error: unexpected newline");
    }

    #[test]
    fn numbers_like_kstrtoul() {
        assert_eq!(parse_ulong("1\n"), Ok(1));
        assert_eq!(parse_ulong("+42"), Ok(42));
        assert_eq!(parse_ulong("0"), Ok(0));
        assert_eq!(parse_ulong(""), Err(Errno::EINVAL));
        assert_eq!(parse_ulong("\n"), Err(Errno::EINVAL));
        assert_eq!(parse_ulong("1x"), Err(Errno::EINVAL));
        assert_eq!(parse_ulong("-1"), Err(Errno::EINVAL));
        assert_eq!(parse_ulong(" 1"), Err(Errno::EINVAL));
        assert_eq!(parse_ulong("99999999999999999999999"), Err(Errno::EINVAL));
        assert_eq!(Errno::EINVAL.to_string(), "Invalid argument");
        assert_eq!(Errno::EBUSY.message(), "Device or resource busy");
    }

    #[test]
    fn filter_commands() {
        assert_eq!(split_filter_command("chain_a"), None);
        assert_eq!(split_filter_command("selftest::targets::chain_a"), None);
        assert_eq!(
            split_filter_command("chain_a:traceoff"),
            Some(FilterCommand { pattern: "chain_a", command: "traceoff", param: None })
        );
        assert_eq!(
            split_filter_command("selftest::targets::chain_*:stacktrace:3"),
            Some(FilterCommand { pattern: "selftest::targets::chain_*", command: "stacktrace", param: Some("3") })
        );
        assert_eq!(
            split_filter_command("!chain_a:traceon"),
            Some(FilterCommand { pattern: "!chain_a", command: "traceon", param: None })
        );
        assert_eq!(split_filter_command("*:mod:foo").map(|c| (c.command, c.param)), Some(("mod", Some("foo"))));
    }

    fn dur(ns: u64) -> String {
        let mut s = String::new();
        write_graph_duration(&mut s, ns).unwrap();
        s
    }

    #[test]
    fn durations_as_linux_prints_them() {
        assert_eq!(dur(200), "0.200 us    ");
        assert_eq!(dur(4_131_583), "4131.583 us ");
        assert_eq!(dur(852_421_512), "852421.5 us ");
        assert_eq!(dur(55_772_240_000), "55772240 us ");
        assert_eq!(dur(12_345_678), "12345.67 us ");
        assert_eq!(duration_mark(5_000), ' ');
        assert_eq!(duration_mark(20_000), '+');
        assert_eq!(duration_mark(200_000), '!');
    }

    #[test]
    fn stat_rows() {
        let mut s = String::new();
        write_stat_row(&mut s, "chain_a", 4, 4000, 4_000_000).unwrap();
        assert_eq!(s, "  chain_a                                  4    4.000 us        1.000 us        0.000 us    \n");
        // Times 1, 2, 3 us: mean 2, sample variance 1 us^2 (shown as 1.000).
        let mut s = String::new();
        write_stat_row(&mut s, "f", 3, 6000, 1_000_000 + 4_000_000 + 9_000_000).unwrap();
        assert!(s.ends_with("6.000 us        2.000 us        1.000 us    \n"), "{s}");
        let mut s = String::new();
        write_stat_row(&mut s, "a_function_name_longer_than_thirty_chars", 1, 1, 1).unwrap();
        assert!(s.starts_with("  a_function_name_longer_than_th           1    "), "{s}");
        assert!(STAT_HEADER.starts_with("  Function                               Hit    Time"));
    }

    #[test]
    fn stack_rows() {
        let mut s = String::new();
        write_stack_header(&mut s, 2).unwrap();
        write_stack_row(&mut s, 0, 4360, 48, &"f+0x5/0x30").unwrap();
        assert_eq!(
            s,
            "        Depth    Size   Location    (2 entries)\n        -----    ----   --------\n  0)     4360      48   f+0x5/0x30\n"
        );
        let _ = vec![0];
    }
}
