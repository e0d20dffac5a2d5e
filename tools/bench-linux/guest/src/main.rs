//! `getppid-bench N CHUNK LABEL`: calls `getppid()` N times in chunks of CHUNK and prints, per
//! chunk and in total, the stable counter's ticks (`rdtime.d`) and the counter's frequency. Under
//! `qemu -icount shift=0` a guest instruction takes 1 ns, so ticks × 1e9 / frequency is the
//! number of instructions the CPU ran in the loop, the kernel's included. Static, no libc: raw
//! system calls (LoongArch's generic table: `write` 64, `exit_group` 94, `getppid` 173).
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

// _start: a0 = the initial stack (argc, argv[], NULL, envp[]), sp aligned to 16, then Rust.
global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".globl _start",
    "_start:",
    "  move $a0, $sp",
    "  bstrins.d $sp, $zero, 3, 0",
    "  bl rust_start",
    "  break 0",
);

const SYS_WRITE: usize = 64;
const SYS_EXIT_GROUP: usize = 94;
const SYS_GETPPID: usize = 173;

/// A system call of up to three arguments.
///
/// # Safety
/// The call's arguments are valid for it (pointers point at memory it may read or write).
#[inline(always)]
unsafe fn syscall3(nr: usize, a0: usize, a1: usize, a2: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract; `syscall 0` clobbers only a0 and the temporaries listed.
    unsafe {
        asm!("syscall 0",
            inlateout("$a0") a0 as isize => ret, in("$a1") a1, in("$a2") a2, in("$a7") nr,
            lateout("$t0") _, lateout("$t1") _, lateout("$t2") _, lateout("$t3") _,
            lateout("$t4") _, lateout("$t5") _, lateout("$t6") _, lateout("$t7") _, lateout("$t8") _,
            options(nostack));
    }
    ret
}

#[inline(always)]
fn getppid() {
    // SAFETY: getppid takes no arguments and touches no user memory.
    unsafe { syscall3(SYS_GETPPID, 0, 0, 0) };
}

#[inline(always)]
fn rdtime() -> u64 {
    let t: u64;
    // SAFETY: reads the stable counter; no memory, no other effect.
    unsafe { asm!("rdtime.d {0}, $zero", out(reg) t, options(nomem, nostack)) };
    t
}

/// The stable counter's frequency: CPUCFG word 4 (the base) × word 5's multiplier / divisor.
fn counter_hz() -> u64 {
    let cfg = |w: usize| -> u64 {
        let v: usize;
        // SAFETY: `cpucfg` reads a configuration word; no memory, no other effect.
        unsafe { asm!("cpucfg {0}, {1}", out(reg) v, in(reg) w, options(nomem, nostack)) };
        v as u64 & 0xffff_ffff
    };
    let (base, c5) = (cfg(4), cfg(5));
    let (mul, div) = (c5 & 0xffff, c5 >> 16);
    if mul != 0 && div != 0 { base * mul / div } else { base }
}

/// A line being written to stdout.
struct Line {
    buf: [u8; 200],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line { buf: [0; 200], len: 0 }
    }
    fn s(&mut self, s: &[u8]) -> &mut Line {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }
    fn u(&mut self, mut v: u64) -> &mut Line {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.s(&d.clone()[i..])
    }
    fn end(&mut self) {
        self.s(b"\n");
        // SAFETY: writes this line's bytes, which live until the call returns.
        unsafe { syscall3(SYS_WRITE, 1, self.buf.as_ptr() as usize, self.len) };
        self.len = 0;
    }
}

/// The NUL-terminated string at `p`.
///
/// # Safety
/// `p` points at a NUL-terminated string that lives for the program's life (argv).
unsafe fn cstr(p: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the caller's contract: every byte up to the NUL is readable.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |v, &c| v * 10 + u64::from(c - b'0')))
}

/// # Safety
/// Called once by `_start` with the initial stack pointer Linux set up.
#[unsafe(no_mangle)]
unsafe extern "C" fn rust_start(sp: *const usize) -> ! {
    // SAFETY: Linux's initial stack: argc, then argc pointers to NUL-terminated strings.
    let args: [Option<&[u8]>; 4] = core::array::from_fn(|i| unsafe { (i < *sp).then(|| cstr(*sp.add(1 + i) as *const u8)) });
    let n = args[1].and_then(number).unwrap_or(100_000);
    let chunk = args[2].and_then(number).unwrap_or(10_000).max(1);
    let label = args[3].unwrap_or(b"run");
    let hz = counter_hz();
    let mut out = Line::new();
    out.s(b"# ").s(label).s(b": calls=").u(n).s(b" chunk=").u(chunk).s(b" counter_hz=").u(hz).end();
    let (mut done, mut total, mut index) = (0, 0, 0);
    while done < n {
        let m = chunk.min(n - done);
        let t0 = rdtime();
        for _ in 0..m {
            getppid();
        }
        let ticks = rdtime() - t0;
        out.s(label).s(b" CHUNK ").u(index).s(b" calls=").u(m).s(b" ticks=").u(ticks).end();
        (done, total, index) = (done + m, total + ticks, index + 1);
    }
    out.s(label).s(b" TOTAL calls=").u(n).s(b" ticks=").u(total).s(b" counter_hz=").u(hz).end();
    // SAFETY: exit_group takes a status and never returns.
    unsafe { syscall3(SYS_EXIT_GROUP, 0, 0, 0) };
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: as above.
    unsafe { syscall3(SYS_EXIT_GROUP, 101, 0, 0) };
    loop {}
}
