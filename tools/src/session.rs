//! Talks to the kernel's serial shell: boots QEMU with the serial line on a pipe, sends lines
//! and waits for the prompt, with a time limit on every wait.
//!
//! QEMU is started as [`crate::runner::RunConfig`] describes, except that `-nographic` becomes
//! `-display none -serial stdio -monitor none`: the serial line is then stdin/stdout without
//! QEMU's `Ctrl-A` escape handling, so any byte (including `0x01` and `0x03`) reaches the kernel.
//! The kernel command line gets `shell=1`, so the kernel stays at its prompt after the self-tests
//! selected by `tests=`.

use crate::runner::{RunConfig, RunError};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// The kernel's prompt.
pub const PROMPT: &str = "loongtrace:/sys/kernel/tracing# ";

/// Why a wait failed.
#[derive(Debug)]
pub enum SessionError {
    Run(RunError),
    /// The text did not appear in time; `tail` is the end of what was received.
    Timeout { waiting_for: String, tail: String },
    /// QEMU closed its output (the kernel powered off or QEMU died) before the text appeared.
    Closed { waiting_for: String, tail: String },
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Run(e) => write!(f, "{e}"),
            SessionError::Timeout { waiting_for, tail } => {
                write!(f, "timed out waiting for {waiting_for:?}; last output:\n{tail}")
            }
            SessionError::Closed { waiting_for, tail } => {
                write!(f, "QEMU's output ended while waiting for {waiting_for:?}; last output:\n{tail}")
            }
        }
    }
}

impl std::error::Error for SessionError {}

/// A running kernel with its serial line.
pub struct Session {
    child: Child,
    to_kernel: Option<Sender<Vec<u8>>>,
    from_kernel: Receiver<Vec<u8>>,
    /// Everything received, with `\r` removed.
    received: String,
    /// How much of `received` the waits have consumed.
    pos: usize,
    closed: bool,
}

/// QEMU's arguments for a session (see the module documentation).
pub fn session_args(config: &RunConfig) -> Result<Vec<OsString>, RunError> {
    let mut cfg = config.clone();
    if !cfg.cmdline.split([' ', ';']).any(|w| w == "shell=1") {
        cfg.cmdline = format!("{} shell=1", cfg.cmdline).trim().to_string();
    }
    let mut args = Vec::new();
    for a in cfg.args()? {
        if a == "-nographic" {
            args.extend(["-display", "none", "-serial", "stdio", "-monitor", "none"].map(OsString::from));
        } else {
            args.push(a);
        }
    }
    Ok(args)
}

impl Session {
    /// Boots the kernel and waits for the first prompt (within `config.timeout`).
    pub fn start(config: &RunConfig) -> Result<Session, SessionError> {
        if !config.kernel.is_file() {
            return Err(SessionError::Run(RunError::KernelMissing(config.kernel.clone())));
        }
        let mut child = std::process::Command::new(&config.qemu)
            .args(session_args(config).map_err(SessionError::Run)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SessionError::Run(RunError::Spawn { qemu: config.qemu.clone(), source }))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let (to_kernel, writer_rx) = mpsc::channel::<Vec<u8>>();
        // Writes happen on their own thread, so a kernel that stops reading cannot block a test
        // past its time limits.
        thread::spawn(move || {
            for chunk in writer_rx {
                if stdin.write_all(&chunk).and_then(|()| stdin.flush()).is_err() {
                    return;
                }
            }
        });
        let (reader_tx, from_kernel) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if reader_tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut s = Session { child, to_kernel: Some(to_kernel), from_kernel, received: String::new(), pos: 0, closed: false };
        s.wait_for(PROMPT, config.timeout)?;
        Ok(s)
    }

    /// Sends raw bytes to the serial line.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Some(tx) = &self.to_kernel {
            let _ = tx.send(bytes.to_vec());
        }
    }

    /// Sends a line followed by `\r`, as a terminal's Enter key does.
    pub fn send_line(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.push(b'\r');
        self.send(&b);
    }

    fn tail(&self) -> String {
        let start = self.received.len().saturating_sub(2000);
        let start = (start..self.received.len()).find(|&i| self.received.is_char_boundary(i)).unwrap_or(self.received.len());
        self.received[start..].to_string()
    }

    /// Waits until `needle` appears after what earlier waits consumed; returns the text before
    /// it and consumes through it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.received[self.pos..].find(needle) {
                let text = self.received[self.pos..self.pos + i].to_string();
                self.pos += i + needle.len();
                return Ok(text);
            }
            if self.closed {
                return Err(SessionError::Closed { waiting_for: needle.into(), tail: self.tail() });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_kernel.recv_timeout(left) {
                Ok(bytes) => self.received.push_str(&String::from_utf8_lossy(&bytes).replace('\r', "")),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(SessionError::Timeout { waiting_for: needle.into(), tail: self.tail() });
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Types `line`, waits for the next prompt, and returns what the command printed (without
    /// the echoed line).
    pub fn command(&mut self, line: &str, timeout: Duration) -> Result<String, SessionError> {
        self.send_line(line);
        let out = self.wait_for(PROMPT, timeout)?;
        Ok(match out.split_once('\n') {
            Some((_echo, rest)) => rest.to_string(),
            None => String::new(),
        })
    }

    /// Everything the kernel printed so far.
    pub fn transcript(&self) -> &str {
        &self.received
    }

    /// Closes the serial input and waits for QEMU to exit (after `poweroff`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.to_kernel = None;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            while let Ok(bytes) = self.from_kernel.try_recv() {
                self.received.push_str(&String::from_utf8_lossy(&bytes).replace('\r', ""));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_swap_nographic_and_add_shell() {
        let mut c = RunConfig::new("k.elf");
        c.qemu = "qemu".into();
        c.cmdline = "tests=boot".into();
        let a: Vec<String> = session_args(&c).unwrap().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(!a.contains(&"-nographic".to_string()));
        let i = a.iter().position(|x| x == "-serial").unwrap();
        assert_eq!(a[i + 1], "stdio");
        assert!(a.contains(&"name=opt/loongtrace/cmdline,string=tests=boot shell=1".to_string()), "{a:?}");
        c.cmdline = "shell=1".into();
        let a: Vec<String> = session_args(&c).unwrap().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(a.contains(&"name=opt/loongtrace/cmdline,string=shell=1".to_string()), "{a:?}");
    }
}
