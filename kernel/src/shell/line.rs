//! The console's line editor: bytes from the serial line in, echo bytes and finished lines out.
//!
//! It handles what a real terminal sends: printable ASCII is inserted and echoed; backspace
//! (`0x08` or `0x7f`) erases the last character (`\b \b`); Ctrl-U (`0x15`) erases the line;
//! Ctrl-C (`0x03`) abandons it (`^C` and a new line); CR, LF or CR LF end it. Escape sequences
//! (arrow keys: `ESC [ ... letter`, `ESC O letter`) and every other control or non-ASCII byte are
//! dropped. A line never grows beyond [`MAX_LINE`] characters: extra characters are dropped and
//! answered with a bell, so an overlong line cannot exhaust memory.

use alloc::string::String;
use alloc::vec::Vec;

/// Longest line kept (Linux's tty line discipline keeps 4095).
pub const MAX_LINE: usize = 4095;

const CTRL_C: u8 = 0x03;
const BS: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;
const BELL: u8 = 0x07;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter was pressed: the line without its end.
    Line(String),
    /// Ctrl-C: the line was abandoned.
    Interrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` (CSI): parameters until a final byte 0x40..=0x7e.
    Csi,
    /// After `ESC O` (SS3): one more byte.
    Ss3,
}

/// A line being typed.
pub struct LineEditor {
    buf: String,
    last_cr: bool,
    esc: Esc,
    echo: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub const fn new() -> Self {
        LineEditor { buf: String::new(), last_cr: false, esc: Esc::None, echo: true }
    }

    /// Turns echo of typed characters on or off (a script replayed at boot echoes itself).
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// The line typed so far.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// Feeds one byte; what should be echoed is appended to `echo`.
    pub fn feed(&mut self, b: u8, echo: &mut Vec<u8>) -> Option<Event> {
        let after_cr = core::mem::replace(&mut self.last_cr, false);
        // A line end or Ctrl-C ends an escape sequence early (it is acted on as usual).
        if matches!(b, b'\r' | b'\n' | CTRL_C) {
            self.esc = Esc::None;
        }
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' => Esc::Csi,
                    b'O' => Esc::Ss3,
                    _ => Esc::None,
                };
                return None;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                }
                return None;
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                return None;
            }
            Esc::None => {}
        }
        let mut out = |bytes: &[u8]| {
            if self.echo {
                echo.extend_from_slice(bytes)
            }
        };
        match b {
            b'\r' | b'\n' => {
                if b == b'\n' && after_cr {
                    return None;
                }
                self.last_cr = b == b'\r';
                out(b"\r\n");
                Some(Event::Line(core::mem::take(&mut self.buf)))
            }
            CTRL_C => {
                self.buf.clear();
                out(b"^C\r\n");
                Some(Event::Interrupt)
            }
            BS | DEL => {
                if self.buf.pop().is_some() {
                    out(b"\x08 \x08");
                }
                None
            }
            CTRL_U => {
                for _ in 0..self.buf.len() {
                    out(b"\x08 \x08");
                }
                self.buf.clear();
                None
            }
            ESC => {
                self.esc = Esc::Start;
                None
            }
            b'\t' | 0x20..=0x7e => {
                let c = if b == b'\t' { b' ' } else { b };
                if self.buf.len() >= MAX_LINE {
                    out(&[BELL]);
                } else {
                    self.buf.push(c as char);
                    out(&[c]);
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn feed_all(ed: &mut LineEditor, bytes: &[u8]) -> (Vec<Event>, Vec<u8>) {
        let mut echo = Vec::new();
        let ev = bytes.iter().filter_map(|&b| ed.feed(b, &mut echo)).collect();
        (ev, echo)
    }

    #[test]
    fn typing_and_enter() {
        let mut ed = LineEditor::new();
        let (ev, echo) = feed_all(&mut ed, b"cat trace\r");
        assert_eq!(ev, vec![Event::Line("cat trace".into())]);
        assert_eq!(echo, b"cat trace\r\n");
    }

    #[test]
    fn crlf_is_one_end_and_lf_alone_works() {
        let mut ed = LineEditor::new();
        let (ev, _) = feed_all(&mut ed, b"a\r\nb\n\nc\r\r");
        assert_eq!(
            ev,
            vec![
                Event::Line("a".into()),
                Event::Line("b".into()),
                Event::Line("".into()),
                Event::Line("c".into()),
                Event::Line("".into())
            ]
        );
    }

    #[test]
    fn backspace_ctrl_u_ctrl_c() {
        let mut ed = LineEditor::new();
        let (ev, echo) = feed_all(&mut ed, b"lx\x7fs\x08\x08\x08ls\r");
        assert_eq!(ev, vec![Event::Line("ls".into())]);
        assert_eq!(echo, b"lx\x08 \x08s\x08 \x08\x08 \x08ls\r\n");
        let (ev, _) = feed_all(&mut ed, b"garbage\x15cat x\r");
        assert_eq!(ev, vec![Event::Line("cat x".into())]);
        let (ev, echo) = feed_all(&mut ed, b"half\x03");
        assert_eq!(ev, vec![Event::Interrupt]);
        assert_eq!(echo, b"half^C\r\n");
        assert_eq!(ed.pending(), "");
    }

    #[test]
    fn escape_sequences_and_controls_are_dropped() {
        let mut ed = LineEditor::new();
        let (ev, echo) = feed_all(&mut ed, b"l\x1b[A\x1b[1;5Cs\x1bOP\x01\x02\xff\xc3\xa9\r");
        assert_eq!(ev, vec![Event::Line("ls".into())]);
        assert_eq!(echo, b"ls\r\n");
    }

    #[test]
    fn a_line_end_ends_an_escape_sequence() {
        let mut ed = LineEditor::new();
        let (ev, _) = feed_all(&mut ed, b"a\x1b\rb\x1b[12\nc\x1bO\x03d\r");
        assert_eq!(ev, vec![Event::Line("a".into()), Event::Line("b".into()), Event::Interrupt, Event::Line("d".into())]);
    }

    #[test]
    fn overlong_line_is_capped() {
        let mut ed = LineEditor::new();
        let long = vec![b'x'; MAX_LINE + 100];
        let (ev, echo) = feed_all(&mut ed, &long);
        assert!(ev.is_empty());
        assert_eq!(ed.pending().len(), MAX_LINE);
        assert_eq!(echo.iter().filter(|&&b| b == BELL).count(), 100);
        let (ev, _) = feed_all(&mut ed, b"\r");
        assert!(matches!(&ev[0], Event::Line(l) if l.len() == MAX_LINE));
    }

    #[test]
    fn no_echo_mode() {
        let mut ed = LineEditor::new();
        ed.set_echo(false);
        let (ev, echo) = feed_all(&mut ed, b"ab\x7f\r");
        assert_eq!(ev, vec![Event::Line("a".into())]);
        assert!(echo.is_empty());
    }
}
