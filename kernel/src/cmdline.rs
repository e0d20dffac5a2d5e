//! The kernel command line: `key=value` words separated by spaces or `;`.
//!
//! The host passes it through QEMU's fw_cfg (`opt/loongtrace/cmdline`); QEMU's option parser
//! reserves `,`, so lists inside a value use `|` (e.g. `tests=boot|ftrace_*`).

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

    /// Whether `key` is set to something other than `0`, `no` or `off`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(v) if !matches!(v, "0" | "no" | "off" | "false"))
    }

    /// Words that are not `key=value` pairs for any of `known` keys.
    pub fn unknown<'k>(self, known: &'k [&'k str]) -> impl Iterator<Item = &'a str> + 'k
    where
        'a: 'k,
    {
        self.words().filter(move |w| !known.contains(&w.split_once('=').map_or(*w, |(k, _)| k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        let c = Cmdline::new("tests=boot|insn  log=debug;demo=0 verbose");
        assert_eq!(c.get("tests"), Some("boot|insn"));
        assert_eq!(c.get("log"), Some("debug"));
        assert_eq!(c.get("verbose"), Some(""));
        assert_eq!(c.get("nope"), None);
        assert!(c.flag("verbose"));
        assert!(!c.flag("demo"));
        assert!(!c.flag("nope"));
        assert_eq!(c.as_str(), "tests=boot|insn  log=debug;demo=0 verbose");
        let off = Cmdline::new("a=no b=off c=false d=yes");
        assert_eq!(["a", "b", "c", "d"].map(|k| off.flag(k)), [false, false, false, true]);
    }

    #[test]
    fn last_value_wins_and_unknown_words() {
        let c = Cmdline::new("log=info log=warn bogus x=1");
        assert_eq!(c.get("log"), Some("warn"));
        let u: Vec<_> = c.unknown(&["log"]).collect();
        assert_eq!(u, ["bogus", "x=1"]);
    }

    #[test]
    fn empty() {
        let c = Cmdline::new("");
        assert_eq!(c.get("tests"), None);
        assert_eq!(c.unknown(&[]).count(), 0);
    }
}
