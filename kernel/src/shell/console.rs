//! The interactive console: reads the UART with interrupts running, edits lines, runs them with
//! `tracefs::execute`, and follows `trace_pipe` until Ctrl-C.

use super::line::{Event, LineEditor};
use crate::tracefs::{self, Action};
use alloc::string::String;
use alloc::vec::Vec;

/// The prompt, as a root shell in tracefs would show it.
pub const PROMPT: &str = "loongtrace:/sys/kernel/tracing# ";
/// Spins this long (counter ticks) waiting for the next byte before sleeping until the next
/// interrupt, so a pasted or piped burst is read at full speed.
const BUSY_POLL_TICKS: u64 = 1_000_000;
/// Counter ticks between two polls of the UART while input flows (5 us).
const POLL_GAP_TICKS: u64 = 500;

/// Prints shell output (`\n` becomes `\r\n` on the wire).
fn emit(text: &str) {
    crate::console::with_console(|w| {
        let _ = w.write_str(text);
    });
}

fn emit_raw(bytes: &[u8]) {
    crate::console::with_console(|_| {
        for &b in bytes {
            arch::uart::put_byte(b);
        }
    });
}

/// A received byte, waiting for one (interrupts stay enabled: the tick and IPIs run).
fn next_byte(last_rx: &mut u64) -> u8 {
    loop {
        if let Some(b) = arch::uart::try_get_byte() {
            *last_rx = arch::time::ticks();
            return b;
        }
        let now = arch::time::ticks();
        if now.wrapping_sub(*last_rx) < BUSY_POLL_TICKS {
            // Between two reads of the UART, run without touching a device, so QEMU's I/O
            // thread (which needs the lock each device access takes) can deliver the next bytes.
            while arch::time::ticks().wrapping_sub(now) < POLL_GAP_TICKS {
                core::hint::spin_loop();
            }
        } else {
            arch::cpu::idle();
        }
    }
}

/// Runs one line and prints its output; returns what to do next.
pub fn run_line(line: &str) -> Action {
    let mut out = String::new();
    let action = tracefs::execute(line, &mut out);
    emit(&out);
    action
}

/// Prints `trace_pipe` as events arrive until Ctrl-C is typed.
fn follow_pipe(cpu: Option<usize>) {
    loop {
        let mut out = String::new();
        tracefs::read_pipe(cpu, &mut out);
        if !out.is_empty() {
            emit(&out);
        }
        // Anything typed while following is dropped, except Ctrl-C which ends it.
        let mut stop = false;
        while let Some(b) = arch::uart::try_get_byte() {
            if b == 0x03 {
                stop = true;
            }
        }
        if stop {
            emit("^C\n");
            return;
        }
        arch::cpu::idle();
    }
}

/// Runs the lines of a boot script, echoing each after the prompt as if typed. Returns false
/// if a line powered the machine off.
pub fn run_script(script: &str) -> bool {
    for line in script.lines() {
        emit(PROMPT);
        emit(line);
        emit("\n");
        match run_line(line) {
            Action::PowerOff => return false,
            // A script cannot press Ctrl-C: print what the pipe holds now and go on.
            Action::FollowPipe(_) | Action::Prompt => {}
        }
    }
    true
}

/// The interactive loop; returns when `poweroff` is typed.
pub fn interactive() {
    let mut ed = LineEditor::new();
    let mut echo: Vec<u8> = Vec::new();
    let mut last_rx = 0;
    // Whatever QEMU queued before the prompt appeared (a host test's first line) is kept.
    emit(PROMPT);
    loop {
        let b = next_byte(&mut last_rx);
        echo.clear();
        let ev = ed.feed(b, &mut echo);
        emit_raw(&echo);
        match ev {
            None => continue,
            Some(Event::Interrupt) => {}
            Some(Event::Line(line)) => match run_line(&line) {
                Action::PowerOff => return,
                Action::FollowPipe(cpu) => follow_pipe(cpu),
                Action::Prompt => {}
            },
        }
        emit(PROMPT);
    }
}

/// The fw_cfg file a bare `script` word names.
pub const DEFAULT_SCRIPT: &str = "opt/loongtrace/script";

/// The fw_cfg file a `script[=NAME]` word names ([`DEFAULT_SCRIPT`] for the bare word).
pub fn script_name(word: Option<&str>) -> &str {
    match word {
        None | Some("" | "1") => DEFAULT_SCRIPT,
        Some(name) => name,
    }
}

/// The text of the boot script in fw_cfg file `name` (at most 256 KiB), if QEMU was given it.
pub fn read_script(name: &str) -> Option<String> {
    let mut buf = alloc::vec![0u8; 256 * 1024];
    let n = arch::fw_cfg::read_file(name, &mut buf)?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// What boot does after the demos: `script[=FW_CFG_NAME]` runs the shell lines of that fw_cfg
/// file (default [`DEFAULT_SCRIPT`]), then `shell=1` stays at the prompt. Returns when the
/// machine should power off.
pub fn boot_hook(shell: bool, script: Option<&str>) {
    if script.is_some() || shell {
        arch::uart::enable_fifo();
    }
    if let Some(name) = script {
        let name = script_name(Some(name));
        match read_script(name) {
            Some(text) => {
                if !run_script(&text) {
                    return;
                }
            }
            None => log::error!("shell: no fw_cfg file '{name}' for the boot script"),
        }
    }
    if shell {
        interactive();
    }
}
