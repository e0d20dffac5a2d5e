//! The text of `bpf_trace_printk` (helper 6): a format string and up to three argument words,
//! formatted as Linux's helper formats them (`bpf_bprintf_prepare` checks the format, then the
//! kernel's `vsnprintf` prints it). Pure: the caller reads the strings `%s` names through a
//! closure, so the kernel decides which addresses may be read and the host tests need no memory.
//!
//! Accepted, as on Linux:
//!
//! - the format must hold a NUL within its `fmt_size` bytes (the text ends there), and every
//!   character before it must be printable ASCII or white space;
//! - `%%` prints `%`;
//! - at most [`MAX_ARGS`] conversions, each `%` [flags `0` `-` `+` space] [width] then one of
//!   `d i u x X` with an optional `l` or `ll` (without it the argument is an `int`: its low
//!   32 bits, signed for `d`/`i`), `c`, `s` (a string read from the argument's address; one that
//!   cannot be read prints as the empty string, as Linux's helper does), `p` (`%p`, `%px`, `%pK`:
//!   the pointer as 16 hex digits; `%pks`, `%pus`: a string like `%s`).
//!
//! Anything else (`%n`, `%f`, `%pB`, `%pi4`, precision, a fourth conversion, a `%` at the end,
//! a non-ASCII byte) refuses the whole call with [`PrintkError`], which the helper returns as
//! `-EINVAL`.
//!
//! Differences from Linux: `%p` prints the pointer itself (Linux prints a hashed value unless
//! `%px`); `%pK` is never hidden (Linux hides it depending on `kptr_restrict`); `%pB`, `%pS`,
//! the IP-address forms and precision are not supported.

use alloc::string::String;
use core::fmt;

/// Most conversions one call formats (the helper passes `r3`-`r5`).
pub const MAX_ARGS: usize = 3;
/// Longest text produced, in bytes (Linux's `MAX_BPRINTF_BUF`); more is cut.
pub const MAX_TEXT: usize = 1024;
/// Longest string a `%s` reads, in bytes (without its NUL).
pub const MAX_STR: usize = 256;

/// Why a format is refused (the helper returns `-EINVAL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrintkError {
    /// No NUL within the format's size.
    NoNul,
    /// A byte at this offset that is neither printable ASCII nor white space.
    BadChar(usize),
    /// A conversion at this offset beyond the [`MAX_ARGS`]th.
    TooManyArgs(usize),
    /// An unsupported or incomplete conversion at this offset.
    BadConversion(usize),
}

impl fmt::Display for PrintkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrintkError::NoNul => f.write_str("the format is not NUL-terminated within its size"),
            PrintkError::BadChar(i) => write!(f, "byte {i} of the format is not printable ASCII"),
            PrintkError::TooManyArgs(i) => write!(f, "conversion at byte {i}: more than {MAX_ARGS} arguments"),
            PrintkError::BadConversion(i) => write!(f, "unsupported conversion at byte {i}"),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    width: usize,
}

/// A text that stops growing at [`MAX_TEXT`] bytes.
struct Out(String);

impl Out {
    fn push(&mut self, c: char) {
        if self.0.len() + c.len_utf8() <= MAX_TEXT {
            self.0.push(c);
        }
    }

    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }

    /// `body` (with `sign` before it) padded to the spec's width.
    fn pad(&mut self, spec: Spec, sign: &str, body: &str, numeric: bool) {
        let len = sign.len() + body.len();
        let fill = spec.width.saturating_sub(len);
        if spec.left {
            self.push_str(sign);
            self.push_str(body);
            (0..fill).for_each(|_| self.push(' '));
        } else if spec.zero && numeric {
            self.push_str(sign);
            (0..fill).for_each(|_| self.push('0'));
            self.push_str(body);
        } else {
            (0..fill).for_each(|_| self.push(' '));
            self.push_str(sign);
            self.push_str(body);
        }
    }
}

fn digits(mut v: u64, radix: u64, upper: bool) -> String {
    let set: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut buf = [0u8; 64];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = set[(v % radix) as usize];
        v /= radix;
        if v == 0 {
            break;
        }
    }
    buf[i..].iter().map(|&b| b as char).collect()
}

/// Formats `fmt` (the bytes the program passed, `fmt_size` of them) with `args` (`r3`-`r5`).
/// `read_str(addr, buf)` copies the NUL-terminated string at `addr` into `buf` and returns its
/// length (without the NUL; at most `buf.len()`), or `None` if it cannot be read.
pub fn format(fmt: &[u8], args: &[u64], read_str: &mut dyn FnMut(u64, &mut [u8]) -> Option<usize>) -> Result<String, PrintkError> {
    let end = fmt.iter().position(|&b| b == 0).ok_or(PrintkError::NoNul)?;
    let fmt = &fmt[..end];
    if let Some(i) = fmt.iter().position(|&b| !(b.is_ascii_graphic() || b == b' ' || b.is_ascii_whitespace())) {
        return Err(PrintkError::BadChar(i));
    }
    let mut out = Out(String::new());
    let mut used = 0usize;
    let mut i = 0usize;
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    while i < fmt.len() {
        let c = fmt[i];
        if c != b'%' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if at(i) == b'%' {
            out.push('%');
            i += 1;
            continue;
        }
        if used == MAX_ARGS {
            return Err(PrintkError::TooManyArgs(start));
        }
        let mut spec = Spec::default();
        loop {
            match at(i) {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        while at(i).is_ascii_digit() {
            spec.width = (spec.width * 10 + (at(i) - b'0') as usize).min(MAX_TEXT);
            i += 1;
        }
        let arg = args.get(used).copied().unwrap_or(0);
        used += 1;
        let bad = PrintkError::BadConversion(start);
        let mut string = |out: &mut Out, spec: Spec, addr: u64| {
            let mut buf = [0u8; MAX_STR];
            let n = read_str(addr, &mut buf).unwrap_or(0).min(MAX_STR);
            // Printed byte by byte, as the C string it is (non-ASCII bytes as Latin-1).
            let s: String = buf[..n].iter().map(|&b| b as char).collect();
            out.pad(spec, "", &s, false);
        };
        match at(i) {
            b's' => {
                string(&mut out, spec, arg);
                i += 1;
            }
            b'c' => {
                let ch = [(arg as u8) as char];
                let s: String = ch.iter().collect();
                out.pad(spec, "", &s, false);
                i += 1;
            }
            b'p' => {
                i += 1;
                match (at(i), at(i + 1)) {
                    (b'k' | b'u', b's') => {
                        string(&mut out, spec, arg);
                        i += 2;
                    }
                    (b'x' | b'K', _) => {
                        out.pad(spec, "", &alloc::format!("{arg:016x}"), true);
                        i += 1;
                    }
                    (c, _) if c.is_ascii_alphanumeric() => return Err(bad),
                    _ => out.pad(spec, "", &alloc::format!("{arg:016x}"), true),
                }
            }
            _ => {
                let mut long = false;
                if at(i) == b'l' {
                    long = true;
                    i += 1;
                    if at(i) == b'l' {
                        i += 1;
                    }
                }
                let v = if long { arg } else { arg as u32 as u64 };
                match at(i) {
                    b'd' | b'i' => {
                        let s = if long { v as i64 } else { v as u32 as i32 as i64 };
                        let sign = if s < 0 {
                            "-"
                        } else if spec.plus {
                            "+"
                        } else if spec.space {
                            " "
                        } else {
                            ""
                        };
                        out.pad(spec, sign, &digits(s.unsigned_abs(), 10, false), true);
                    }
                    b'u' => out.pad(spec, "", &digits(v, 10, false), true),
                    b'x' => out.pad(spec, "", &digits(v, 16, false), true),
                    b'X' => out.pad(spec, "", &digits(v, 16, true), true),
                    _ => return Err(bad),
                }
                i += 1;
            }
        }
    }
    Ok(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Strings live at made-up addresses: 0x1000 is "hello", 0x2000 a 300-byte string, others fault.
    fn reader() -> impl FnMut(u64, &mut [u8]) -> Option<usize> {
        |addr, buf: &mut [u8]| {
            let s: Vec<u8> = match addr {
                0x1000 => b"hello".to_vec(),
                0x2000 => alloc::vec![b'a'; 300],
                _ => return None,
            };
            let n = s.len().min(buf.len());
            buf[..n].copy_from_slice(&s[..n]);
            Some(n)
        }
    }

    fn f(fmt: &str, args: &[u64]) -> Result<String, PrintkError> {
        let mut bytes = fmt.as_bytes().to_vec();
        bytes.push(0);
        format(&bytes, args, &mut reader())
    }

    #[test]
    fn integers_by_size() {
        assert_eq!(f("entry_scale: %d -> %llu", &[7, 16]).unwrap(), "entry_scale: 7 -> 16");
        // Without `l` only the low 32 bits count, signed for %d.
        assert_eq!(f("%d %u %x", &[u64::MAX, u64::MAX, 0x1_0000_00ff]).unwrap(), "-1 4294967295 ff");
        assert_eq!(f("%ld %lu %llx", &[u64::MAX, u64::MAX, 0xdead_beef_0000]).unwrap(), "-1 18446744073709551615 deadbeef0000");
        assert_eq!(f("%lX %X", &[0xab, 0x1_0000_00cd]).unwrap(), "AB CD");
        assert_eq!(f("%lld", &[i64::MIN as u64]).unwrap(), "-9223372036854775808");
        assert_eq!(f("%i", &[0x8000_0000]).unwrap(), "-2147483648");
    }

    #[test]
    fn flags_and_width() {
        assert_eq!(f("[%5d|%-5d|%05d|%+d|% d]", &[42, 42, 42, 42]).unwrap_err(), PrintkError::TooManyArgs(15));
        assert_eq!(f("[%5d|%-5d|%05d]", &[42, 42, (-42i64) as u64]).unwrap(), "[   42|42   |-0042]");
        assert_eq!(f("[%+d|% d|%08llx]", &[42, 42, 0xbeef]).unwrap(), "[+42| 42|0000beef]");
        assert_eq!(f("[%-8s|%8s]", &[0x1000, 0x1000]).unwrap(), "[hello   |   hello]");
    }

    #[test]
    fn strings_chars_pointers() {
        assert_eq!(f("%s!", &[0x1000]).unwrap(), "hello!");
        assert_eq!(f("<%s>", &[0xbad]).unwrap(), "<>", "an unreadable string prints empty, as on Linux");
        assert_eq!(f("%s", &[0x2000]).unwrap().len(), MAX_STR);
        assert_eq!(f("%pks %pus", &[0x1000, 0x1000]).unwrap(), "hello hello");
        assert_eq!(f("%c%c", &[b'o' as u64, b'k' as u64 | 0x100]).unwrap(), "ok");
        assert_eq!(f("%p %px %pK", &[0x9000_0000_0020_0000, 1, 2]).unwrap(), "9000000000200000 0000000000000001 0000000000000002");
        assert_eq!(f("100%% %d%%", &[5]).unwrap(), "100% 5%");
    }

    #[test]
    fn refusals() {
        assert_eq!(format(b"no nul", &[], &mut reader()), Err(PrintkError::NoNul));
        assert_eq!(f("%d %d %d %d", &[1, 2, 3, 4]), Err(PrintkError::TooManyArgs(9)));
        for bad in ["%n", "%f", "%pB", "%pi4", "%.3d", "%", "%l", "%lz", "%hd"] {
            assert!(matches!(f(bad, &[1]), Err(PrintkError::BadConversion(0))), "{bad}: {:?}", f(bad, &[1]));
        }
        assert_eq!(format(b"a\x01b\0", &[], &mut reader()), Err(PrintkError::BadChar(1)));
        assert_eq!(format(b"caf\xc3\xa9\0", &[], &mut reader()), Err(PrintkError::BadChar(3)));
    }

    #[test]
    fn stops_at_the_nul_and_cuts_long_texts() {
        assert_eq!(format(b"ab\0%n", &[], &mut reader()).unwrap(), "ab");
        assert_eq!(f("tab\there\nnewline", &[]).unwrap(), "tab\there\nnewline");
        let wide = f("%1000d%1000d", &[1, 2]).unwrap();
        assert_eq!(wide.len(), MAX_TEXT);
        assert!(wide.ends_with(' ') || wide.ends_with('2'));
    }
}
