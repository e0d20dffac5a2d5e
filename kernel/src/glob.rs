//! Shell-style glob matching for `set_ftrace_filter`-like function selection.
//!
//! Patterns support `*` (any run of characters, including none) and `?` (exactly one character,
//! which may be a multi-byte UTF-8 character); every other character matches itself literally.
//! Matching is iterative with a single backtrack point (no recursion, no allocation) and runs in
//! `O(pattern × text)` worst case, linear for the common `*foo*` shapes.
//!
//! A filter token is a pattern optionally prefixed with `!`, which (as in Linux's
//! `set_ftrace_filter`) removes the matching functions instead of adding them. Function names are
//! full Rust paths such as `loongtrace_kernel::tests::func1`; [`name_matches`] accepts a pattern
//! matching either the full path or just its last `::` segment.

use alloc::vec::Vec;
use core::fmt;

/// Length in bytes of the UTF-8 character whose first byte is `b`.
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        // A continuation byte never starts a character of a valid `&str`; step one byte so the
        // loop always makes progress anyway.
        _ => 1,
    }
}

/// Does `pattern` match the whole of `text`?
///
/// `*` matches any (possibly empty) sequence of characters, `?` exactly one character, everything
/// else only itself. An empty pattern matches only the empty text.
///
/// Decided by [`glob_segments`] (the pattern's literal runs found in the text, a byte compare or
/// a search each) unless the pattern has a `?` and the text a non-ASCII character, which
/// [`glob_walk`] then decides.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob_segments(pattern.as_bytes(), text.as_bytes()).unwrap_or_else(|| glob_walk(pattern, text))
}

/// Whether `seg` (literal bytes and `?`, each `?` one byte) matches `text` of the same length.
#[inline]
fn seg_eq(seg: &[u8], text: &[u8]) -> bool {
    seg.iter().zip(text).all(|(&s, &c)| s == b'?' || s == c)
}

/// [`glob_match`] by segments: the pattern is `head*mid*...*tail`; the text must start with
/// `head`, end with `tail`, and hold each `mid` in order between them, where taking each `mid`'s
/// leftmost place is always right (it leaves the most room to the rest). Bytes stand for
/// characters: literal characters match as their bytes, and `?` as one byte, which is one
/// character in ASCII text. `None` (undecided) for a pattern with `?` on non-ASCII text.
fn glob_segments(p: &[u8], t: &[u8]) -> Option<bool> {
    if p.contains(&b'?') && !t.is_ascii() {
        return None;
    }
    let Some(first_star) = p.iter().position(|&c| c == b'*') else {
        return Some(p.len() == t.len() && seg_eq(p, t));
    };
    let last_star = p.iter().rposition(|&c| c == b'*').unwrap_or(first_star);
    let (head, tail) = (&p[..first_star], &p[last_star + 1..]);
    if head.len() + tail.len() > t.len() {
        return Some(false);
    }
    let end = t.len() - tail.len();
    if !seg_eq(head, &t[..head.len()]) || !seg_eq(tail, &t[end..]) {
        return Some(false);
    }
    let mut pos = head.len();
    for mid in p[first_star + 1..last_star.max(first_star + 1)].split(|&c| c == b'*').filter(|m| !m.is_empty()) {
        let first = mid[0];
        let mut i = pos;
        loop {
            if i + mid.len() > end {
                return Some(false);
            }
            if (first == b'?' || t[i] == first) && seg_eq(mid, &t[i..i + mid.len()]) {
                break;
            }
            i += 1;
        }
        pos = i + mid.len();
    }
    Some(true)
}

/// [`glob_match`] by walking pattern and text a character at a time with one backtrack point.
fn glob_walk(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position just after the most recent `*`, and the text position it is currently assumed to
    // stretch to. On a mismatch we let that star swallow one more character and retry. Only the
    // last star needs remembering: earlier stars can never be forced to grow by a later failure
    // that the last star could not absorb itself.
    let mut star: Option<(usize, usize)> = None;

    while ti < t.len() {
        let step = match p.get(pi) {
            // A star that ends the pattern matches whatever text is left (so `prefix*` costs the
            // prefix, and `*` nothing, however long the text).
            Some(b'*') if pi + 1 == p.len() => return true,
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(b'?') => Some((1, utf8_len(t[ti]))),
            Some(&c) => {
                let n = utf8_len(c);
                match (p.get(pi..pi + n), t.get(ti..ti + n)) {
                    (Some(a), Some(b)) if a == b => Some((n, n)),
                    _ => None,
                }
            }
            None => None,
        };
        match step {
            Some((dp, dt)) => {
                pi += dp;
                ti += dt;
            }
            None => match star {
                Some((sp, st)) => {
                    let st = st + utf8_len(t[st]);
                    star = Some((sp, st));
                    pi = sp;
                    ti = st;
                }
                None => return false,
            },
        }
    }
    // Text exhausted: the rest of the pattern must be stars only.
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Does `pattern` contain any wildcard (`*` or `?`)? A pattern without one matches only itself,
/// which lets callers use an exact lookup instead of a scan.
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.bytes().any(|b| b == b'*' || b == b'?')
}

/// The last `::`-separated segment of a Rust path (`a::b::c` → `c`; `c` → `c`).
pub fn last_segment(path: &str) -> &str {
    match path.rfind("::") {
        Some(i) => &path[i + 2..],
        None => path,
    }
}

/// Does `pattern` match the function `full_name` (a full Rust path such as
/// `loongtrace_kernel::tests::func1`)?
///
/// True if it matches the full path or the last `::` segment, so `func1`, `func*`,
/// `*::tests::*` and `loongtrace_kernel::*` all select that function.
pub fn name_matches(pattern: &str, full_name: &str) -> bool {
    let (p, f) = (pattern.as_bytes(), full_name.as_bytes());
    if !has_wildcards(pattern) && !p.starts_with(b":") && !p.windows(2).any(|w| w == b"::") {
        // An exact name: the whole path, or its last segment (the text after the path's last
        // `::`, which the pattern, holding no `::` and not starting with `:`, can only be if the
        // path ends with it right after a `::`). A length compare rejects most names.
        return f == p || (f.len() >= p.len() + 2 && f.ends_with(p) && f[..f.len() - p.len()].ends_with(b"::"));
    }
    if glob_match(pattern, full_name) {
        return true;
    }
    // A leading `*` that matches the last segment matches the whole path too (it takes the
    // path's head as well), so only an anchored pattern needs the second try.
    if p.first() == Some(&b'*') {
        return false;
    }
    let last = last_segment(full_name);
    last.len() != full_name.len() && glob_match(pattern, last)
}

/// Splits Linux's module form `func:mod:name` into the function pattern and the module name
/// (`:mod:name` alone means every function of the module). `None` when the word has no `:mod:`
/// part; `Some((pat, ""))` for an empty module name, which callers reject.
pub fn split_module(pat: &str) -> (&str, Option<&str>) {
    match pat.split_once(":mod:") {
        None => (pat, None),
        Some(("", m)) => ("*", Some(m)),
        Some((f, m)) => (f, Some(m)),
    }
}

/// Why a filter token was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobError {
    /// The token is empty (or only whitespace).
    Empty,
    /// The token is a lone `!` with no pattern after it.
    EmptyNegation,
    /// The pattern contains whitespace or a control character (tokens are whitespace-separated,
    /// and function names never contain these).
    BadChar(char),
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => f.write_str("empty filter pattern"),
            GlobError::EmptyNegation => f.write_str("'!' must be followed by a pattern"),
            GlobError::BadChar(c) => write!(f, "invalid character {c:?} in filter pattern"),
        }
    }
}

/// Parse one whitespace-separated filter token.
///
/// Returns `(negated, pattern)`: a leading `!` sets `negated` (remove the matching functions from
/// the filter) and is stripped. Surrounding whitespace is ignored.
pub fn parse_filter_token(tok: &str) -> Result<(bool, &str), GlobError> {
    let tok = tok.trim();
    if tok.is_empty() {
        return Err(GlobError::Empty);
    }
    let (negated, pat) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    if pat.is_empty() {
        return Err(GlobError::EmptyNegation);
    }
    if let Some(c) = pat.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(GlobError::BadChar(c));
    }
    Ok((negated, pat))
}

/// Split a filter line (as written to `set_ftrace_filter`) into its tokens.
pub fn filter_tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split_whitespace()
}

/// A list of patterns compiled for checking many names against all of them at once, with a
/// cost (nearly) independent of the name: a pattern `head::tail*` (no other wildcard) is filed
/// under its first path segment `head::`, so a name is compared with each distinct head once and
/// only with the tails of its own head. Other patterns are matched with [`glob_match`]. Used for
/// the notrace policy, which every function name is checked against at boot.
pub struct PrefixSet<'a> {
    /// `(head, tails)`: `head` ends with its first `::`.
    groups: Vec<(&'a [u8], Vec<&'a [u8]>)>,
    /// Patterns `prefix*` whose prefix has no `::`.
    bare: Vec<&'a [u8]>,
    /// Every other pattern.
    other: Vec<&'a str>,
}

/// Eight bytes of `b` from `i` as one little-endian word (`None` past the end).
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// The length of `b` up to and including its first `::` (all of it when it has none). Looks at
/// eight bytes per step (a byte loop made the policy check of a `loongtrace_kernel::` name
/// three times as costly as that of a `core::` one).
#[inline]
fn head_len(b: &[u8]) -> usize {
    const COLONS: u64 = u64::from_ne_bytes([b':'; 8]);
    let mut i = 0;
    while let Some(w) = word_at(b, i) {
        // Bit 7 of each byte that is ':' (and maybe of bytes above the first one: the borrow
        // runs upwards), so the lowest set bit marks the first ':'.
        let x = w ^ COLONS;
        let z = x.wrapping_sub(u64::from_ne_bytes([0x01; 8])) & !x & u64::from_ne_bytes([0x80; 8]);
        if z == 0 {
            i += 8;
            continue;
        }
        let at = i + (z.trailing_zeros() / 8) as usize;
        if b.get(at + 1) == Some(&b':') {
            return at + 2;
        }
        i = at + 1;
    }
    while i + 1 < b.len() {
        if b[i] == b':' && b[i + 1] == b':' {
            return i + 2;
        }
        i += 1;
    }
    b.len()
}

/// Whether `a` starts with `b`, eight bytes per step.
#[inline]
fn starts_with_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() < b.len() {
        return false;
    }
    let mut i = 0;
    while let (Some(x), Some(y)) = (word_at(b, i), word_at(a, i)) {
        if x != y {
            return false;
        }
        i += 8;
    }
    a[i..].iter().zip(&b[i..]).all(|(x, y)| x == y)
}

impl<'a> PrefixSet<'a> {
    pub fn new(patterns: &[&'a str]) -> Self {
        let mut set = PrefixSet { groups: Vec::new(), bare: Vec::new(), other: Vec::new() };
        for &p in patterns {
            let b = p.as_bytes();
            match b.split_last() {
                Some((b'*', prefix)) if !has_wildcards(&p[..prefix.len()]) => {
                    let h = head_len(prefix);
                    if h == prefix.len() && !prefix.ends_with(b"::") {
                        set.bare.push(prefix);
                        continue;
                    }
                    let (head, tail) = prefix.split_at(h);
                    match set.groups.iter_mut().find(|g| g.0 == head) {
                        Some(g) => g.1.push(tail),
                        None => set.groups.push((head, alloc::vec![tail])),
                    }
                }
                _ => set.other.push(p),
            }
        }
        for (_, tails) in &mut set.groups {
            tails.sort_unstable();
            tails.dedup();
        }
        set
    }

    /// Whether one of a group's `tails` (sorted) is a prefix of `rest`: an empty tail (the
    /// pattern `head::*`) matches anything; otherwise only the tails that start with `rest`'s
    /// first byte are compared, found by two binary searches, so a name's cost hardly depends on
    /// how many tails its head has.
    #[inline]
    fn tails_match(tails: &[&[u8]], rest: &[u8]) -> bool {
        match (tails.first(), rest.first()) {
            (Some(t), _) if t.is_empty() => true,
            (_, None) => false,
            (_, Some(&c)) => {
                let lo = tails.partition_point(|t| t[0] < c);
                let hi = lo + tails[lo..].partition_point(|t| t[0] == c);
                tails[lo..hi].iter().any(|tail| starts_with_bytes(rest, tail))
            }
        }
    }

    /// Whether any of the patterns matches `text` (the same as `glob_match` with each).
    pub fn matches(&self, text: &str) -> bool {
        let t = text.as_bytes();
        let (head, rest) = t.split_at(head_len(t));
        self.groups
            .iter()
            .any(|(h, tails)| h.len() == head.len() && starts_with_bytes(head, h) && Self::tails_match(tails, rest))
            || self.bare.iter().any(|p| starts_with_bytes(t, p))
            || self.other.iter().any(|p| glob_match(p, text))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The slow reference: `name_matches` as it was, with the walking matcher only.
    fn name_matches_walk(pattern: &str, full: &str) -> bool {
        let last = last_segment(full);
        glob_walk(pattern, full) || (last.len() != full.len() && glob_walk(pattern, last))
    }

    #[test]
    fn word_steps_agree_with_byte_loops() {
        let head_ref = |b: &[u8]| (0..b.len().saturating_sub(1)).find(|&i| b[i] == b':' && b[i + 1] == b':').map_or(b.len(), |i| i + 2);
        let alphabet = [b'a', b':', b'_', 0x80, 0xff, 0];
        let mut rng = bpf::rng::Rng(0x0dd_5eed_c0105);
        for _ in 0..100_000 {
            let n = rng.index(40);
            let a: std::vec::Vec<u8> = (0..n).map(|_| alphabet[rng.index(alphabet.len())]).collect();
            assert_eq!(head_len(&a), head_ref(&a), "{a:?}");
            let k = rng.index(n + 2);
            let mut b: std::vec::Vec<u8> = a.iter().copied().take(k).collect();
            if !b.is_empty() && rng.index(3) == 0 {
                let j = rng.index(b.len());
                b[j] = alphabet[rng.index(alphabet.len())];
            }
            if k > n {
                b.push(b'a');
            }
            assert_eq!(starts_with_bytes(&a, &b), a.starts_with(&b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn segments_agree_with_the_walk() {
        // Random patterns and names over a small alphabet with the characters that matter:
        // stars, `?`, `:` (path separators) and a two-byte and a three-byte character.
        let alphabet = ["a", "b", "c", ":", "::", "_", "é", "€"];
        let pat_alphabet = ["a", "b", ":", "::", "*", "?", "é", "€", "**"];
        let mut rng = bpf::rng::Rng(0x5eed_0f91_0b00_d1ce);
        let mut pick = |n: usize| rng.index(n);
        for _ in 0..200_000 {
            let t: std::string::String = (0..pick(9)).map(|_| alphabet[pick(alphabet.len())]).collect();
            let p: std::string::String = (0..1 + pick(6)).map(|_| pat_alphabet[pick(pat_alphabet.len())]).collect();
            assert_eq!(glob_match(&p, &t), glob_walk(&p, &t), "glob {p:?} on {t:?}");
            assert_eq!(name_matches(&p, &t), name_matches_walk(&p, &t), "name {p:?} on {t:?}");
        }
        for (p, t, want) in [
            ("bench_target", "loongtrace_kernel::bench::bench_target", true),
            ("bench_target", "loongtrace_kernel::bench::bench_target_notrace", false),
            ("bench_target", "loongtrace_kernel::bench::xbench_target", false),
            ("bench::bench_target", "loongtrace_kernel::bench::bench_target", false),
            ("*chain_?*", "loongtrace_kernel::selftest::targets::chain_a", true),
            ("*chain_?*", "loongtrace_kernel::selftest::targets::chain_", false),
            ("?€", "é€", true),
            ("a*?", "aé", true),
        ] {
            assert_eq!(name_matches(p, t), want, "{p:?} on {t:?}");
        }
    }

    #[test]
    fn prefix_set_matches_like_glob_match() {
        let patterns = [
            "loongtrace_kernel::ftrace::*",
            "<loongtrace_kernel::ftrace::*",
            "loongtrace_kernel::selftest::on_*",
            "__rustc::*",
            "arch::*",
            "a::b::c*",
            "x*",
            "*::mid::*",
            "exact::name",
            "ab?::*",
            "x:*",
        ];
        let names = [
            "loongtrace_kernel::ftrace::core::update",
            "loongtrace_kernel::ftrace",
            "loongtrace_kernel::ftrace::",
            "<loongtrace_kernel::ftrace::ops::X as core::fmt::Debug>::fmt",
            "<loongtrace_kernel::shell::Y as core::fmt::Debug>::fmt",
            "loongtrace_kernel::selftest::on_case_end",
            "loongtrace_kernel::selftest::run",
            "loongtrace_kernel::scale::generated_fn_00001",
            "__rustc::__rust_alloc",
            "__rustc",
            "arch::cpu::id",
            "archive::x",
            "a::b::cde",
            "a::b::d",
            "a::bb::c",
            "xylophone",
            "q::mid::r",
            "exact::name",
            "exact::names",
            "abc::z",
            "",
            "::",
            ":::x",
            "?",
            "x:",
            "x:y",
            "a::b:",
        ];
        for n in names {
            let want = patterns.iter().any(|p| glob_match(p, n));
            assert_eq!(PrefixSet::new(&patterns).matches(n), want, "{n}");
            for p in patterns {
                assert_eq!(PrefixSet::new(&[p]).matches(n), glob_match(p, n), "{p} {n}");
            }
        }
    }

    #[test]
    fn prefix_groups_with_many_tails_match_like_glob_match() {
        // Several tails per head that share first bytes, empty tails, and names that end
        // right after the head: the binary searches over sorted tails against glob_match.
        let mut rng = bpf::rng::Rng(0x7a11_5eed);
        let parts = ["a", "ab", "b", "ba", "", "::", "c"];
        let word = |rng: &mut bpf::rng::Rng, n: usize| (0..n).map(|_| parts[rng.index(parts.len())]).collect::<std::string::String>();
        for _ in 0..2_000 {
            let patterns: std::vec::Vec<std::string::String> = (0..1 + rng.index(8))
                .map(|_| {
                    let head = ["k::", "<k::", "z::"][rng.index(3)];
                    let n = rng.index(3);
                    let tail = word(&mut rng, n);
                    std::format!("{head}{tail}*")
                })
                .collect();
            let refs: std::vec::Vec<&str> = patterns.iter().map(|p| p.as_str()).collect();
            let set = PrefixSet::new(&refs);
            for _ in 0..20 {
                let head = ["k::", "<k::", "z::", "k:", "q::", ""][rng.index(6)];
                let n = rng.index(4);
                let name = std::format!("{head}{}", word(&mut rng, n));
                let want = refs.iter().any(|p| glob_match(p, &name));
                assert_eq!(set.matches(&name), want, "{refs:?} {name}");
            }
        }
    }

    fn m(p: &str, t: &str) -> bool {
        glob_match(p, t)
    }

    #[test]
    fn literals() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
        assert!(m("schedule", "schedule"));
        assert!(!m("schedule", "schedul"));
        assert!(!m("schedul", "schedule"));
        assert!(!m("Schedule", "schedule"));
        assert!(m("a.b[c]\\d", "a.b[c]\\d"));
        assert!(!m("a.b", "axb"));
    }

    #[test]
    fn stars() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("**", ""));
        assert!(m("***", "x"));
        assert!(m("*sched*", "schedule"));
        assert!(m("*sched*", "__schedule"));
        assert!(m("*sched*", "do_sched_yield"));
        assert!(m("*sched*", "sched"));
        assert!(!m("*sched*", "schd"));
        assert!(!m("*sched*", ""));
        assert!(m("*_test_func", "my_test_func"));
        assert!(m("*_test_func", "_test_func"));
        assert!(!m("*_test_func", "my_test_func2"));
        assert!(!m("*_test_func", "test_func"));
        assert!(m("sched*", "schedule"));
        assert!(m("sched*", "sched"));
        assert!(!m("sched*", "xsched"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abcbc"));
        assert!(!m("a*b*c", "abcb"));
        assert!(m("*a", "aaaa"));
        assert!(!m("*ab", "aaaa"));
        assert!(m("*aab", "aaaaab"));
        assert!(m("a*", "a"));
        assert!(!m("a*", ""));
        assert!(m("*.*", "a.b"));
        assert!(!m("*.*", "ab"));
    }

    #[test]
    fn question_marks() {
        assert!(m("func?", "func1"));
        assert!(m("func?", "funcX"));
        assert!(!m("func?", "func"));
        assert!(!m("func?", "func12"));
        assert!(m("?", "x"));
        assert!(!m("?", ""));
        assert!(m("??", "ab"));
        assert!(m("*?", "a"));
        assert!(!m("*?", ""));
        assert!(m("?*?", "ab"));
        assert!(m("f?n*_?", "fun_test_1"));
    }

    #[test]
    fn utf8() {
        assert!(m("?", "é"));
        assert!(m("?", "中"));
        assert!(m("?", "🦀"));
        assert!(!m("??", "é"));
        assert!(m("caf?", "café"));
        assert!(m("caf?", "cafe"));
        assert!(!m("caf??", "café"));
        assert!(m("*é", "café"));
        assert!(!m("*é", "cafe"));
        assert!(m("?🦀?", "a🦀b"));
        assert!(m("*🦀*", "xx🦀yy"));
        assert!(!m("*🦀*", "xxyy"));
        assert!(m("中?文", "中国文"));
        assert!(m("*文", "中国文"));
        // A literal multi-byte char must not match a different one sharing a lead byte.
        assert!(!m("é", "è"));
        assert!(!m("é*", "è"));
    }

    #[test]
    fn pathological_is_fast() {
        // Classic exponential case for naive recursive matchers.
        let text = "a".repeat(200);
        let pat = std::format!("{}b", "a*".repeat(50));
        assert!(!m(&pat, &text));
        let pat2 = std::format!("{}a", "a*".repeat(50));
        assert!(m(&pat2, &text));
    }

    #[test]
    fn segments_and_names() {
        assert_eq!(last_segment("a::b::c"), "c");
        assert_eq!(last_segment("c"), "c");
        assert_eq!(last_segment("a::"), "");
        let full = "loongtrace_kernel::tests::func1";
        assert!(name_matches("func1", full));
        assert!(name_matches("func*", full));
        assert!(name_matches("func?", full));
        assert!(name_matches("*::tests::*", full));
        assert!(name_matches("loongtrace_kernel::*", full));
        assert!(name_matches(full, full));
        assert!(name_matches("*func1", full));
        assert!(name_matches("*", full));
        assert!(!name_matches("func2", full));
        assert!(!name_matches("tests", full));
        assert!(!name_matches("tests::func1", full));
        assert!(name_matches("*tests::func1", full));
        assert!(!name_matches("", full));
        assert!(name_matches("kmain", "kmain"));
        assert!(!name_matches("main", "kmain"));
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_filter_token("func1"), Ok((false, "func1")));
        assert_eq!(parse_filter_token("!func1"), Ok((true, "func1")));
        assert_eq!(parse_filter_token("  !*sched*\n"), Ok((true, "*sched*")));
        assert_eq!(parse_filter_token("!!x"), Ok((true, "!x")));
        assert_eq!(parse_filter_token(""), Err(GlobError::Empty));
        assert_eq!(parse_filter_token("   "), Err(GlobError::Empty));
        assert_eq!(parse_filter_token("!"), Err(GlobError::EmptyNegation));
        assert_eq!(parse_filter_token("a b"), Err(GlobError::BadChar(' ')));
        assert_eq!(
            parse_filter_token("a\u{7}"),
            Err(GlobError::BadChar('\u{7}'))
        );
        assert_eq!(split_module("*:mod:sample_mod"), ("*", Some("sample_mod")));
        assert_eq!(split_module("f*:mod:m"), ("f*", Some("m")));
        assert_eq!(split_module(":mod:m"), ("*", Some("m")));
        assert_eq!(split_module("a::b"), ("a::b", None));
        assert_eq!(split_module("f:mod:"), ("f", Some("")));
        let toks: std::vec::Vec<_> = filter_tokens("  func1 !func2\t*x* ").collect();
        assert_eq!(toks, ["func1", "!func2", "*x*"]);
        assert!(has_wildcards("a*"));
        assert!(has_wildcards("a?"));
        assert!(!has_wildcards("a::b"));
        assert_eq!(std::format!("{}", GlobError::Empty), "empty filter pattern");
        assert!(std::format!("{}", GlobError::BadChar(' ')).contains("' '"));
    }
}
