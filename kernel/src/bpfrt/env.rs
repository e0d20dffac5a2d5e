//! The interpreter's environment over real kernel memory ([`bpf::interp::Env`]), the helpers, and
//! running a program on a context.
//!
//! A program may touch exactly these regions, and every load, store, atomic and helper argument
//! is checked against them before memory is touched (a miss stops the run with a fault naming
//! the instruction; the verifier proved that none happens, so a fault is a bug it would catch):
//!
//! | region | access |
//! |---|---|
//! | the context: a kernel buffer of the program's context size | read |
//! | the stack frames: one kernel buffer of 512 bytes per call depth, zeroed on entry; a frame is gone once its function returned | read, write |
//! | the values of the program's maps (`Map::region_of`: an array element, this or another CPU's per-CPU element, a hash element's value; never keys or padding) | read, write (not `BPF_F_RDONLY_PROG` maps: `.rodata`) |
//! | ring-buffer records this run reserved and has not yet submitted or discarded | read, write |
//!
//! Map memory is shared with other CPUs and the kernel's own map calls, so every access to any
//! region is a relaxed atomic of the access's size (a byte at a time when it is not naturally
//! aligned), which on LoongArch is the plain load or store; the program's atomic instructions are
//! real atomics (sequentially consistent), `load_acquire`/`store_release` acquire and release.

use super::{BpfProg, printk};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use bpf::insn::{AtomicOp, MAX_BPF_STACK, MAX_CALL_FRAMES, Size};
use bpf::interp::{Env, Exit, Fault, FaultKind, Interpreter};
use bpf::maps::{BPF_F_RDONLY_PROG, Map, MapType, helper_ret};
use bpf::insn::{BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE};
use bpf::object::ProgKind;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// `-EPERM`, `-EFAULT`, `-EINVAL`, `-EOPNOTSUPP` as helpers return them.
pub const EPERM: i64 = 1;
pub const EFAULT: i64 = 14;
pub const EINVAL: i64 = 22;
pub const EOPNOTSUPP: i64 = 95;

/// The kernel memory `bpf_probe_read_kernel` and `%s` of `bpf_trace_printk` may read: QEMU
/// `virt`'s 256 MiB of low RAM through the cached DMW window (the kernel image, its heap, the
/// module area). Everything else (device registers, the uncached window, unmapped addresses,
/// user-space-like low addresses) is refused with `-EFAULT` rather than read.
pub const KERNEL_RAM: core::ops::Range<u64> = 0x9000_0000_0000_0000..0x9000_0000_1000_0000;

/// When not 0, what `bpf_ktime_get_ns` answers, in the interpreter and from the native helper:
/// the differential test (`bpf_selftests.jit_differential`) runs a program twice and compares
/// what it wrote, times included.
pub static FIXED_CLOCK: AtomicU64 = AtomicU64::new(0);

/// While set, every helper call (by the interpreter or a JITed program) appends its id to
/// [`CALLS`]: the differential test compares the two runs' calls.
pub static LOG_CALLS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The helper ids called while [`LOG_CALLS`] is set, in order.
pub static CALLS: spin::Mutex<Vec<u32>> = spin::Mutex::new(Vec::new());

/// Notes a call of helper `id` when [`LOG_CALLS`] is set (one load otherwise).
#[inline(always)]
pub fn log_call(id: u32) {
    if LOG_CALLS.load(Ordering::Relaxed) {
        CALLS.lock().push(id);
    }
}

/// `bpf_ktime_get_ns`: the stable counter in nanoseconds since boot, or [`FIXED_CLOCK`].
pub fn ktime_ns() -> u64 {
    match FIXED_CLOCK.load(Ordering::Relaxed) {
        0 => crate::time::ticks_to_ns(arch::time::ticks()),
        t => t,
    }
}

/// Whether `[addr, addr + len)` lies in [`KERNEL_RAM`].
pub fn is_kernel_ram(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_some_and(|end| addr >= KERNEL_RAM.start && end <= KERNEL_RAM.end)
}

/// What a program runs on: its context bytes (at most its context size; the rest are zero), and
/// for tracing programs what the `get_func_*` helpers answer.
pub struct Context {
    /// The context, 8-byte aligned; `len` bytes of it are the program's.
    words: Vec<u64>,
    /// Or memory outside it (a trampoline's frame, a probe's registers): its address (0: none).
    ext: u64,
    len: usize,
    /// Arguments of the traced function (`bpf_get_func_arg_cnt`); the return value is the word
    /// after them (fexit, fmod_ret).
    pub nargs: u32,
    /// The traced function's address (`bpf_get_func_ip`).
    pub func_ip: u64,
    kind: ProgKind,
}

impl Context {
    /// A context of `bytes` for a program of `kind` (`ctx_size(kind)` bytes; shorter input is
    /// padded with zeroes). No argument count (`nargs` 0).
    pub fn bytes(kind: ProgKind, bytes: &[u8]) -> Result<Context, String> {
        let len = super::ctx_size(kind) as usize;
        if bytes.len() > len {
            return Err(alloc::format!("a context of {} bytes: a {} program reads at most {len}", bytes.len(), kind.name()));
        }
        // One word more than the program's: a read just past its context lands in this guard
        // word, which is no region, rather than in whatever the heap placed next (a BPF stack,
        // a map value) and which the checks would then allow.
        let mut words = alloc::vec![0u64; len.div_ceil(8).max(1) + 1];
        for (i, b) in bytes.iter().enumerate() {
            words[i / 8] |= (*b as u64) << (8 * (i % 8));
        }
        Ok(Context { words, ext: 0, len, nargs: 0, func_ip: 0, kind })
    }

    /// The context a program attached to a trampoline or a probe runs on: `len` bytes at `addr`
    /// (a trampoline's frame, a probe's `pt_regs`), not copied.
    ///
    /// # Safety
    /// `[addr, addr + len)` must stay valid and readable while the context is used.
    pub unsafe fn at(kind: ProgKind, addr: u64, len: usize, nargs: u32, func_ip: u64) -> Context {
        Context { words: Vec::new(), ext: addr, len, nargs, func_ip, kind }
    }

    /// A context of 64-bit words. For fentry they are the arguments (`nargs` = their number); for
    /// fexit and fmod_ret the last one is the return value, after the arguments; for kprobes
    /// they are the first words of `struct pt_regs` (`regs[0]`, `regs[1]` = ra, ...).
    pub fn words(kind: ProgKind, words: &[u64]) -> Result<Context, String> {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut c = Context::bytes(kind, &bytes)?;
        c.nargs = match kind {
            ProgKind::Fentry => words.len() as u32,
            ProgKind::Fexit | ProgKind::FmodRet => words.len().saturating_sub(1) as u32,
            _ => 0,
        };
        Ok(c)
    }

    /// The context of a tracing program on a call of its target with `args` returning `ret`
    /// (fexit, fmod_ret), `bpf_get_func_ip` the target's address if the kernel has that function.
    pub fn call(prog: &BpfProg, args: &[u64], ret: u64) -> Result<Context, String> {
        let mut words = args.to_vec();
        if matches!(prog.kind, ProgKind::Fexit | ProgKind::FmodRet) {
            words.push(ret);
        }
        let mut c = Context::words(prog.kind, &words)?;
        c.func_ip = prog.target.as_deref().and_then(crate::ksyms::find).map_or(0, |s| s.addr);
        Ok(c)
    }

    /// Word `i` of the context (0 past its end).
    pub fn word(&self, i: usize) -> u64 {
        if (i + 1) * 8 > self.len {
            0
        } else if self.ext != 0 {
            // SAFETY: within the `len` bytes `Context::at`'s caller vouched for.
            unsafe { core::ptr::read_volatile((self.ext as usize + 8 * i) as *const u64) }
        } else {
            self.words[i]
        }
    }

    /// The context's address (`r1`).
    pub fn addr(&self) -> u64 {
        if self.ext != 0 { self.ext } else { self.words.as_ptr() as u64 }
    }

    /// Bytes of the context.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the program gets no context bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A reserved ring-buffer record of this run: `len` bytes at `start`, of map `map` (index).
#[derive(Clone, Copy)]
struct Record {
    start: u64,
    len: u64,
    map: usize,
}

/// The environment of one run of `prog` on this CPU.
pub struct KernelEnv<'a> {
    prog: &'a BpfProg,
    ctx: &'a Context,
    cpu: u32,
    stack: Box<[[u64; MAX_BPF_STACK / 8]; MAX_CALL_FRAMES]>,
    /// Frames `0..live` exist.
    live: usize,
    records: Vec<Record>,
}

// ---- raw accesses, after a check ----

/// Reads `size` bytes at `addr`, relaxed, as one atomic when naturally aligned, else byte by byte.
///
/// # Safety
/// `[addr, addr + size)` must be memory that stays valid for the access: a region
/// [`KernelEnv::check`] accepted (the run's own buffers, or map memory whose map the program
/// holds), or [`KERNEL_RAM`].
unsafe fn load_raw(addr: u64, size: Size) -> u64 {
    let n = size.bytes() as u64;
    let p = addr as usize;
    if addr.is_multiple_of(n) {
        // SAFETY: the caller guarantees the bytes are valid; the pointer is aligned to the size;
        // every access to this memory from programs and maps is atomic (map memory is
        // `AtomicU64` words, which a narrower atomic reads a part of, as docs/bpf-maps.md plans).
        unsafe {
            match size {
                Size::B => AtomicU8::from_ptr(p as *mut u8).load(Ordering::Relaxed) as u64,
                Size::H => AtomicU16::from_ptr(p as *mut u16).load(Ordering::Relaxed) as u64,
                Size::W => AtomicU32::from_ptr(p as *mut u32).load(Ordering::Relaxed) as u64,
                Size::DW => AtomicU64::from_ptr(p as *mut u64).load(Ordering::Relaxed),
            }
        }
    } else {
        (0..n).fold(0u64, |v, i| {
            // SAFETY: as above, one byte of the checked range (always aligned).
            let b = unsafe { AtomicU8::from_ptr((p + i as usize) as *mut u8).load(Ordering::Relaxed) };
            v | (b as u64) << (8 * i)
        })
    }
}

/// Writes the low `size` bytes of `value` at `addr`, relaxed, like [`load_raw`].
///
/// # Safety
/// As [`load_raw`], and the region must be writable (not the context, not `.rodata`).
unsafe fn store_raw(addr: u64, size: Size, value: u64) {
    let n = size.bytes() as u64;
    let p = addr as usize;
    if addr.is_multiple_of(n) {
        // SAFETY: see `load_raw`; the caller checked the region is writable.
        unsafe {
            match size {
                Size::B => AtomicU8::from_ptr(p as *mut u8).store(value as u8, Ordering::Relaxed),
                Size::H => AtomicU16::from_ptr(p as *mut u16).store(value as u16, Ordering::Relaxed),
                Size::W => AtomicU32::from_ptr(p as *mut u32).store(value as u32, Ordering::Relaxed),
                Size::DW => AtomicU64::from_ptr(p as *mut u64).store(value, Ordering::Relaxed),
            }
        }
    } else {
        for i in 0..n {
            // SAFETY: as above, one byte of the checked range.
            unsafe { AtomicU8::from_ptr((p + i as usize) as *mut u8).store((value >> (8 * i)) as u8, Ordering::Relaxed) };
        }
    }
}

impl<'a> KernelEnv<'a> {
    /// An environment for one run of `prog` on `ctx`, on this CPU.
    pub fn new(prog: &'a BpfProg, ctx: &'a Context) -> KernelEnv<'a> {
        KernelEnv {
            prog,
            ctx,
            cpu: arch::cpu::id() as u32,
            stack: Box::new([[0; MAX_BPF_STACK / 8]; MAX_CALL_FRAMES]),
            live: 0,
            records: Vec::new(),
        }
    }

    /// Whether `[addr, addr + len)` lies inside one region the program may access (for a write:
    /// one it may write); the fault to report otherwise.
    pub fn check(&self, addr: u64, len: usize, write: bool) -> Result<(), FaultKind> {
        let fault = FaultKind::Access { addr, len, write };
        let Some(end) = addr.checked_add(len as u64) else { return Err(fault) };
        let within = |start: u64, size: u64| addr >= start && end <= start + size;
        for frame in &self.stack[..self.live] {
            if within(frame.as_ptr() as u64, MAX_BPF_STACK as u64) {
                return Ok(());
            }
        }
        if within(self.ctx.addr(), self.ctx.len() as u64) && !self.ctx.is_empty() {
            return if write { Err(fault) } else { Ok(()) };
        }
        if self.records.iter().any(|r| within(r.start, r.len)) {
            return Ok(());
        }
        for m in &self.prog.maps {
            // A ring buffer's memory is a program's only through the records it reserved (above);
            // walking the ring's headers would race with other CPUs' producers.
            if m.map_type() == MapType::RingBuf {
                continue;
            }
            if let Some(r) = m.region_of(addr as usize) {
                if !r.covers(addr as usize, len) {
                    return Err(fault);
                }
                if write && m.def().map_flags & BPF_F_RDONLY_PROG != 0 {
                    return Err(fault);
                }
                return Ok(());
            }
        }
        Err(fault)
    }

    /// A copy of `len` bytes at `addr`, checked.
    pub fn read_bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>, FaultKind> {
        self.check(addr, len, false)?;
        // SAFETY: checked just above.
        Ok((0..len as u64).map(|i| unsafe { load_raw(addr + i, Size::B) } as u8).collect())
    }

    /// Writes `data` at `addr`, checked.
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), FaultKind> {
        self.check(addr, data.len(), true)?;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: checked (writable) just above.
            unsafe { store_raw(addr + i as u64, Size::B, b as u64) };
        }
        Ok(())
    }

    /// The NUL-terminated string at `addr` into `buf` (for `%s`): from the program's regions or
    /// kernel RAM, byte by byte; `None` if a byte before the NUL cannot be read.
    fn read_cstr(&self, addr: u64, buf: &mut [u8]) -> Option<usize> {
        for (i, slot) in buf.iter_mut().enumerate() {
            let a = addr.checked_add(i as u64)?;
            if self.check(a, 1, false).is_err() && !is_kernel_ram(a, 1) {
                return None;
            }
            // SAFETY: a byte of a checked region or of kernel RAM.
            let b = unsafe { load_raw(a, Size::B) } as u8;
            if b == 0 {
                return Some(i);
            }
            *slot = b;
        }
        Some(buf.len())
    }

    /// The map a helper was handed (what `ld_imm64` of `BPF_PSEUDO_MAP_FD` gave: its address).
    fn map_arg(&self, id: u32, handle: u64) -> Result<(usize, &'a Arc<Map>), FaultKind> {
        self.prog
            .maps
            .iter()
            .enumerate()
            .find(|(_, m)| Arc::as_ptr(m) as u64 == handle)
            .ok_or_else(|| FaultKind::Helper { id, reason: alloc::format!("{handle:#x} is not a map of this program") })
    }

    fn key_of(&self, map: &Map, addr: u64) -> Result<Vec<u8>, FaultKind> {
        self.read_bytes(addr, map.def().key_size as usize)
    }

    /// A word of the context as the `get_func_*` helpers read it.
    fn func_arg(&self, n: u64) -> Option<u64> {
        (n < self.ctx.nargs as u64).then(|| self.ctx.word(n as usize))
    }

    /// Discards the records a run left reserved (only a faulted run can: the verifier proves
    /// every path of a program releases what it reserved).
    fn release_all(&mut self) {
        for r in core::mem::take(&mut self.records) {
            if let Some(rb) = self.prog.maps[r.map].as_ringbuf() {
                let _ = rb.discard(r.start as *const u8, 0);
            }
        }
    }
}

impl Env for KernelEnv<'_> {
    fn load(&mut self, addr: u64, size: Size) -> Result<u64, FaultKind> {
        self.check(addr, size.bytes(), false)?;
        // SAFETY: checked just above.
        Ok(unsafe { load_raw(addr, size) })
    }

    fn store(&mut self, addr: u64, size: Size, value: u64) -> Result<(), FaultKind> {
        self.check(addr, size.bytes(), true)?;
        // SAFETY: checked (writable) just above.
        unsafe { store_raw(addr, size, value) };
        Ok(())
    }

    fn atomic(&mut self, addr: u64, size: Size, op: AtomicOp, operand: u64, expected: u64) -> Result<u64, FaultKind> {
        let n = size.bytes();
        self.check(addr, n, true)?;
        if !addr.is_multiple_of(n as u64) {
            return Err(FaultKind::Misaligned { addr, len: n });
        }
        const O: Ordering = Ordering::SeqCst;
        let p = addr as usize;
        match size {
            Size::W => {
                // SAFETY: a checked, writable, 4-byte aligned region (see `load_raw`).
                let a = unsafe { AtomicU32::from_ptr(p as *mut u32) };
                let v = operand as u32;
                Ok(match op {
                    AtomicOp::Add => a.fetch_add(v, O),
                    AtomicOp::Or => a.fetch_or(v, O),
                    AtomicOp::And => a.fetch_and(v, O),
                    AtomicOp::Xor => a.fetch_xor(v, O),
                    AtomicOp::Xchg => a.swap(v, O),
                    AtomicOp::Cmpxchg => a.compare_exchange(expected as u32, v, O, O).unwrap_or_else(|old| old),
                } as u64)
            }
            Size::DW => {
                // SAFETY: a checked, writable, 8-byte aligned region (see `load_raw`).
                let a = unsafe { AtomicU64::from_ptr(p as *mut u64) };
                Ok(match op {
                    AtomicOp::Add => a.fetch_add(operand, O),
                    AtomicOp::Or => a.fetch_or(operand, O),
                    AtomicOp::And => a.fetch_and(operand, O),
                    AtomicOp::Xor => a.fetch_xor(operand, O),
                    AtomicOp::Xchg => a.swap(operand, O),
                    AtomicOp::Cmpxchg => a.compare_exchange(expected, operand, O, O).unwrap_or_else(|old| old),
                })
            }
            _ => Err(FaultKind::Other(alloc::format!("atomic operation of {n} bytes"))),
        }
    }

    fn load_acquire(&mut self, addr: u64, size: Size) -> Result<u64, FaultKind> {
        let v = self.load(addr, size)?;
        core::sync::atomic::fence(Ordering::Acquire);
        Ok(v)
    }

    fn store_release(&mut self, addr: u64, size: Size, value: u64) -> Result<(), FaultKind> {
        core::sync::atomic::fence(Ordering::Release);
        self.store(addr, size, value)
    }

    fn frame(&mut self, depth: usize) -> Result<u64, FaultKind> {
        let frame = self.stack.get_mut(depth).ok_or(FaultKind::CallDepth)?;
        frame.fill(0);
        self.live = depth + 1;
        Ok(frame.as_ptr() as u64 + MAX_BPF_STACK as u64)
    }

    fn leave_frame(&mut self, depth: usize) {
        self.live = depth;
    }

    fn ld_imm64(&mut self, pseudo: u8, imm: u64) -> Result<u64, FaultKind> {
        let bad = FaultKind::LdImm64 { pseudo, imm };
        let map = self.prog.maps.get(imm as u32 as usize).ok_or(bad.clone())?;
        match pseudo {
            BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_IDX => Ok(Arc::as_ptr(map) as u64),
            BPF_PSEUDO_MAP_VALUE | BPF_PSEUDO_MAP_IDX_VALUE => map.direct_value_addr((imm >> 32) as u32).map(|p| p.as_ptr() as u64).map_err(|_| bad),
            _ => Err(bad),
        }
    }

    fn helper(&mut self, id: u32, a: [u64; 5]) -> Result<u64, FaultKind> {
        log_call(id);
        let ret = |r: i64| Ok(r as u64);
        match id {
            // bpf_map_lookup_elem(map, key): the value's address (this CPU's for a per-CPU array) or NULL
            1 => {
                let (_, m) = self.map_arg(id, a[0])?;
                let key = self.key_of(m, a[1])?;
                Ok(m.lookup(&key, self.cpu).map_or(0, |p| p.as_ptr() as u64))
            }
            // bpf_map_update_elem(map, key, value, flags)
            2 => {
                let (_, m) = self.map_arg(id, a[0])?;
                let key = self.key_of(m, a[1])?;
                let value = self.read_bytes(a[2], m.def().value_size as usize)?;
                if m.def().map_flags & BPF_F_RDONLY_PROG != 0 {
                    return ret(-EPERM);
                }
                ret(helper_ret(m.update(&key, &value, a[3], self.cpu)))
            }
            // bpf_map_delete_elem(map, key)
            3 => {
                let (_, m) = self.map_arg(id, a[0])?;
                let key = self.key_of(m, a[1])?;
                if m.def().map_flags & BPF_F_RDONLY_PROG != 0 {
                    return ret(-EPERM);
                }
                ret(helper_ret(m.delete(&key, self.cpu)))
            }
            // bpf_ktime_get_ns(): the stable counter in nanoseconds since boot
            5 => Ok(ktime_ns()),
            // bpf_trace_printk(fmt, fmt_size, arg1, arg2, arg3)
            6 => {
                let fmt = self.read_bytes(a[0], a[1] as usize)?;
                let this = &*self;
                match bpf::printk::format(&fmt, &a[2..5], &mut |addr, buf| this.read_cstr(addr, buf)) {
                    Ok(text) => {
                        let n = text.len();
                        printk::emit(&text);
                        Ok(n as u64)
                    }
                    Err(_) => ret(-EINVAL),
                }
            }
            // bpf_get_smp_processor_id()
            8 => Ok(self.cpu as u64),
            // bpf_get_current_pid_tgid(): the CPU's context, as every trace output names it
            14 => {
                let pid = formats::task::pid(self.cpu) as u64;
                Ok(pid << 32 | pid)
            }
            // bpf_probe_read_kernel(dst, size, unsafe_ptr)
            113 => {
                let (dst, size, src) = (a[0], a[1] as usize, a[2]);
                self.check(dst, size, true)?;
                if size > 0 && !is_kernel_ram(src, size as u64) {
                    self.write_bytes(dst, &alloc::vec![0; size])?;
                    return ret(-EFAULT);
                }
                for i in 0..size as u64 {
                    // SAFETY: `src..src + size` is kernel RAM (checked above); `dst` was checked.
                    unsafe { store_raw(dst + i, Size::B, load_raw(src + i, Size::B)) };
                }
                Ok(0)
            }
            // bpf_ringbuf_output(map, data, size, flags)
            130 => {
                let (_, m) = self.map_arg(id, a[0])?;
                let data = self.read_bytes(a[1], a[2] as usize)?;
                let rb = m.as_ringbuf().ok_or_else(|| FaultKind::Helper { id, reason: "not a ring buffer".to_string() })?;
                ret(helper_ret(rb.output(&data, a[3], self.cpu)))
            }
            // bpf_ringbuf_reserve(map, size, flags): the record or NULL
            131 => {
                let (map, m) = self.map_arg(id, a[0])?;
                let rb = m.as_ringbuf().ok_or_else(|| FaultKind::Helper { id, reason: "not a ring buffer".to_string() })?;
                Ok(match rb.reserve(a[1], a[2], self.cpu) {
                    Some(p) => {
                        self.records.push(Record { start: p.as_ptr() as u64, len: a[1], map });
                        p.as_ptr() as u64
                    }
                    None => 0,
                })
            }
            // bpf_ringbuf_submit(data, flags), bpf_ringbuf_discard(data, flags)
            132 | 133 => {
                let i = self.records.iter().position(|r| r.start == a[0]).ok_or_else(|| FaultKind::Helper {
                    id,
                    reason: alloc::format!("{:#x} is not a record this program reserved", a[0]),
                })?;
                let r = self.records.remove(i);
                let rb = self.prog.maps[r.map].as_ringbuf().ok_or(FaultKind::UnknownHelper(id))?;
                let done = if id == 132 { rb.submit(r.start as *const u8, a[1]) } else { rb.discard(r.start as *const u8, a[1]) };
                done.map_err(|e| FaultKind::Helper { id, reason: alloc::format!("{e}") })?;
                Ok(0)
            }
            // bpf_get_func_ip(ctx)
            173 => Ok(self.ctx.func_ip),
            // bpf_get_func_arg(ctx, n, *value)
            183 => match self.func_arg(a[1]) {
                Some(v) => {
                    self.write_bytes(a[2], &v.to_le_bytes())?;
                    Ok(0)
                }
                None => ret(-EINVAL),
            },
            // bpf_get_func_ret(ctx, *value): fexit and fmod_ret only
            184 => {
                if !matches!(self.ctx.kind, ProgKind::Fexit | ProgKind::FmodRet) {
                    return ret(-EOPNOTSUPP);
                }
                let v = self.ctx.word(self.ctx.nargs as usize);
                self.write_bytes(a[1], &v.to_le_bytes())?;
                Ok(0)
            }
            // bpf_get_func_arg_cnt(ctx)
            185 => Ok(self.ctx.nargs as u64),
            _ => Err(FaultKind::UnknownHelper(id)),
        }
    }
}

/// Runs in progress (the low bits) and a quiescent-point callback in progress (the top bit).
static GATE: AtomicU64 = AtomicU64::new(0);
const QUIESCING: u64 = 1 << 63;

fn enter_run() {
    loop {
        let v = GATE.load(Ordering::Relaxed);
        if v & QUIESCING == 0 && GATE.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return;
        }
        core::hint::spin_loop();
    }
}

/// [`enter_run`], unless a quiescent-point callback is in progress (perhaps on this very CPU, which
/// a probe or trampoline interrupted): then false, and the run does not happen.
fn try_enter_run() -> bool {
    let v = GATE.load(Ordering::Relaxed);
    v & QUIESCING == 0 && GATE.compare_exchange(v, v + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
}

fn leave_run() {
    GATE.fetch_sub(1, Ordering::Release);
}

/// Calls `f` at a quiescent point, if now is one: no program run is in progress on any CPU, and
/// none starts until `f` returns (a run waits). Returns false, without calling `f`, when a run is
/// in progress. This is the grace period after which no program can hold the address of a hash
/// element deleted before (docs/bpf-maps.md): every run that could have looked it up has
/// returned.
pub fn quiescent(f: impl FnOnce()) -> bool {
    if GATE.compare_exchange(0, QUIESCING, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return false;
    }
    f();
    GATE.store(0, Ordering::Release);
    true
}

/// Runs `prog` on `ctx` on this CPU in the interpreter (the default budget of 1,000,000
/// instructions): `r0` and the instructions executed, or the fault. Afterwards, if no other run
/// is in progress, the hash elements deleted meanwhile become reusable
/// ([`super::reclaim_deleted`]).
pub fn run(prog: &BpfProg, ctx: &Context) -> Result<Exit, Fault> {
    enter_run();
    let r = run_in_gate(prog, ctx);
    super::reclaim_deleted();
    r
}

/// One interpreted run, inside the gate (which it leaves): records it left reserved (a fault's)
/// are discarded.
fn run_in_gate(prog: &BpfProg, ctx: &Context) -> Result<Exit, Fault> {
    let mut env = KernelEnv::new(prog, ctx);
    let r = Interpreter::new(&prog.insns).run(&mut env, &[ctx.addr()]);
    env.release_all();
    leave_run();
    r
}

/// [`run`] without the reclaim afterwards: a run from a trampoline or a probe (whatever context
/// the traced code is in), where waiting has no place. `None` (nothing ran) when a quiescent
/// point's callback is in progress.
pub fn run_attached(prog: &BpfProg, ctx: &Context) -> Option<Result<Exit, Fault>> {
    try_enter_run().then(|| run_in_gate(prog, ctx))
}
