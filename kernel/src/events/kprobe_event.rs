//! Dynamic kprobe and kretprobe events (`kprobe_events`, `dynamic_events`): a parsed definition
//! ([`super::probe_def`]) becomes an event in the registry and one kprobe or kretprobe per probe
//! of it, whose handler fetches the arguments from the register frame and memory and emits the
//! event's record.
//!
//! A probe is registered (and at once disarmed) when it is defined, so a place kprobes refuse is
//! refused by the definition (`Failed to register probe event` in `error_log`); enabling the
//! event arms it. Memory is read only inside kernel RAM (a fetch outside it fails: a number
//! field stores 0, a string `(fault)`).

use super::format::{EventLayout, RecordWriter};
use super::probe_def::{self, Command, Errno, Fetch, FetchType, Interface, Location, ProbeDef, ProbeError, ProbeKind, Reason, SymbolLookup};
use super::registry::{self, Event};
use crate::shell::parse::Errno as ShErrno;
use crate::kprobes::kretprobe::{Kretprobe, KretprobeInstance};
use crate::kprobes::{Kprobe, Where};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch::frame::PtRegs;
use core::fmt::Write;

/// What every probe of an event keeps besides its kprobe.
struct Common {
    event: Arc<Event>,
    def: ProbeDef,
    /// The arguments compiled for the handler.
    args: Vec<Fx>,
    /// The symbol name given to kprobes (leaked while the probe lives; freed on removal).
    sym: *mut str,
    /// A kretprobe's `$argN` (N <= 8) numbers, kept at the entry in the instance's data words.
    entry_args: Vec<u32>,
    /// The fast path of a record of plain numbers (no strings, arrays or bitfields, at most
    /// [`registry::FIXED_WORDS`] words): where each argument goes and its size.
    plan: Option<Vec<(u16, u8, Quick)>>,
    /// The fastest path, for a kprobe event whose record fits one ring slot: see [`Tiny`].
    tiny: Option<Tiny>,
}

/// A kprobe event of at most four number arguments, each `%REG` or `+OFF(%REG)`, whose record
/// (common fields, `__probe_ip`, arguments) is at most [`registry::INLINE_MAX`] bytes with no
/// argument straddling a word: its arguments are words 2 and 3 of the record, fetched without a
/// call and written as a one-slot record ([`registry::emit_inline`]). `%a0` and `+8(%a1):u32`,
/// the `kprobe_event` bench row's, is one.
struct Tiny {
    /// The arguments in order, then unused ones (`kind` 0).
    args: [TinyArg; 4],
}

#[derive(Clone, Copy, Default)]
struct TinyArg {
    /// The value's mask (its size).
    mask: u64,
    /// The highest address a dereferenced field may start at (its last byte in kernel RAM).
    limit: u64,
    /// `+OFF(...)`'s offset.
    disp: i32,
    /// Unused (0), `%REG` (1) or `+OFF(%REG)` (2).
    kind: u8,
    /// The register (`regs.regs` index, below 32).
    reg: u8,
    /// The field's size minus one: the low address bits of a naturally aligned field are 0.
    align: u8,
    /// Word 3 (else 2) of the record, and the bit shift in it.
    high: bool,
    shift: u8,
}

impl Tiny {
    /// The plan's `Tiny` form, if it has one; `len` is the record's length.
    fn new(plan: &[(u16, u8, Quick)], len: u32, own: usize) -> Option<Tiny> {
        if own != 1 || len as usize > registry::INLINE_MAX || plan.len() > 4 {
            return None;
        }
        let mut args = [TinyArg::default(); 4];
        for (a, &(off, size, q)) in args.iter_mut().zip(plan) {
            let (off, size) = (off as usize, size as usize);
            if !(16..32).contains(&off) || !matches!(size, 1 | 2 | 4 | 8) || off % 8 + size > 8 {
                return None;
            }
            let (kind, reg, disp) = match q {
                Quick::Reg(r) => (1, r, 0),
                Quick::RegDeref(r, d) => (2, r, d),
                Quick::Other => return None,
            };
            let limit = crate::bpfrt::env::KERNEL_RAM.end - size as u64;
            let (mask, align, shift) = (u64::MAX >> (64 - 8 * size), (size - 1) as u8, (8 * (off % 8)) as u8);
            *a = TinyArg { mask, limit, disp, kind, reg: reg & 31, align, high: off >= 24, shift };
        }
        Some(Tiny { args })
    }

    /// Words 2 and 3 of the record, or `None` if a field to read is not naturally aligned in
    /// kernel RAM (the general path then fetches every argument). Unrolled and without calls:
    /// an argument costs about a dozen instructions.
    #[inline(always)]
    fn fetch(&self, regs: &PtRegs) -> Option<(u64, u64)> {
        let mut w = (0u64, 0u64);
        let [a0, a1, a2, a3] = &self.args;
        let _ = a0.put(regs, &mut w)? && a1.put(regs, &mut w)? && a2.put(regs, &mut w)? && a3.put(regs, &mut w)?;
        Some(w)
    }
}

impl TinyArg {
    /// Adds the argument to words `w`: `Some(false)` if it is unused (so are those after it),
    /// `None` if its field is not naturally aligned in kernel RAM.
    #[inline(always)]
    fn put(&self, regs: &PtRegs, w: &mut (u64, u64)) -> Option<bool> {
        if self.kind == 0 {
            return Some(false);
        }
        // SAFETY: `reg` < 32 (`Tiny::new` masks it), so this is an element of `regs.regs` (read
        // without the mask and bounds check the indexing would cost).
        let mut v = unsafe { *regs.regs.as_ptr().add(usize::from(self.reg)) };
        if self.kind == 2 {
            let addr = v.wrapping_add(self.disp as i64 as u64);
            if addr < crate::bpfrt::env::KERNEL_RAM.start || addr > self.limit || addr & u64::from(self.align) != 0 {
                return None;
            }
            // SAFETY: a naturally aligned field in kernel RAM (checked just above).
            v = unsafe { load_aligned(addr) };
        }
        let v = (v & self.mask) << (self.shift & 63);
        if self.high {
            w.1 |= v;
        } else {
            w.0 |= v;
        }
        Some(true)
    }
}

/// The common argument forms, fetched without walking an [`Fx`].
#[derive(Clone, Copy)]
enum Quick {
    /// `%REG` (a general register).
    Reg(u8),
    /// `+OFF(%REG)`.
    RegDeref(u8, i32),
    /// Anything else: the argument's [`Fx`].
    Other,
}

fn quick(f: &Fx) -> Quick {
    match f {
        Fx::Reg(i) if *i < 32 => Quick::Reg(*i as u8),
        Fx::Deref(off, inner) => match **inner {
            Fx::Reg(i) if i < 32 && i32::try_from(*off).is_ok() => Quick::RegDeref(i as u8, *off as i32),
            _ => Quick::Other,
        },
        _ => Quick::Other,
    }
}

/// A kprobe event's probe: the kprobe first, so its handler finds the rest (`container_of`).
#[repr(C)]
struct KInst {
    kp: Kprobe,
    c: Common,
}

/// A kretprobe event's probe: the kretprobe first.
#[repr(C)]
struct RInst {
    rp: Kretprobe,
    c: Common,
}

/// One probe of an event.
enum Inst {
    K(Box<KInst>),
    R(Box<RInst>),
}

impl Inst {
    fn c(&self) -> &Common {
        match self {
            Inst::K(k) => &k.c,
            Inst::R(r) => &r.c,
        }
    }
}

// SAFETY: the raw `sym` is only touched under `DEFS`; everything else is Sync.
unsafe impl Sync for Common {}
// SAFETY: as above.
unsafe impl Send for Common {}

/// The defined events' probes, in definition order.
static DEFS: spin::Mutex<Vec<Inst>> = spin::Mutex::new(Vec::new());

/// A fetch argument as the handler runs it.
enum Fx {
    Reg(usize),
    Stack(u32),
    StackAddr,
    Retval,
    Comm,
    Arg(u32),
    Imm(u64),
    ImmStr(Box<[u8]>),
    /// The word at an address.
    Mem(u64),
    Deref(i64, Box<Fx>),
}

/// The `$argN` numbers (N <= 8) that `f` reads.
fn reg_args(f: &Fx, out: &mut Vec<u32>) {
    match f {
        Fx::Arg(n @ 1..=8) if !out.contains(n) => out.push(*n),
        Fx::Deref(_, inner) => reg_args(inner, out),
        _ => {}
    }
}

/// Whether a kprobe's handler can fetch `f` from the argument frame (see
/// [`Kprobe::on_argument_frame`]): `a0`-`a7`, `ra`, `sp`, `fp`, the probed address, memory
/// and constants.
fn on_argument_frame(f: &Fx) -> bool {
    match f {
        Fx::Reg(i) => matches!(i, 1 | 3..=11 | 22 | 33),
        Fx::Deref(_, inner) => on_argument_frame(inner),
        Fx::Stack(_) | Fx::StackAddr | Fx::Arg(_) | Fx::Imm(_) | Fx::ImmStr(_) | Fx::Mem(_) | Fx::Comm => true,
        Fx::Retval => false,
    }
}

fn compile(f: &Fetch) -> Result<Fx, ()> {
    Ok(match f {
        Fetch::Reg(r) => Fx::Reg(r.pt_regs_offset() / 8),
        Fetch::Stack(n) => Fx::Stack(*n),
        Fetch::StackAddr => Fx::StackAddr,
        Fetch::Retval => Fx::Retval,
        Fetch::Comm => Fx::Comm,
        Fetch::Arg(n) => Fx::Arg(*n),
        Fetch::Imm(v) => Fx::Imm(*v),
        Fetch::ImmString(s) => Fx::ImmStr(s.as_bytes().into()),
        Fetch::Mem(a) => Fx::Mem(*a),
        Fetch::Symbol(s) => {
            let (name, off) = probe_def::split_symbol_offset(s).ok_or(())?;
            let addr = crate::ksyms::find(name).ok_or(())?.addr;
            Fx::Mem(addr.wrapping_add(off as u64))
        }
        Fetch::Deref { offset, inner, .. } => Fx::Deref(*offset as i64, Box::new(compile(inner)?)),
    })
}

/// What a handler fetches from.
struct Ctx<'a> {
    regs: &'a PtRegs,
    /// A kretprobe's entry arguments: the values of `entry_args`' arguments, in that order.
    entry: Option<(&'a [u64], &'a [u32])>,
}

fn reg_word(regs: &PtRegs, i: usize) -> u64 {
    match i {
        0..=31 => regs.regs[i],
        32 => regs.orig_a0,
        33 => regs.era,
        34 => regs.badv,
        35 => regs.crmd,
        36 => regs.prmd,
        37 => regs.euen,
        38 => regs.ecfg,
        _ => regs.estat,
    }
}

/// Reads `len <= 8` bytes at `addr` (little-endian, zero-extended) if they are kernel RAM: a
/// naturally aligned field with one load of the word holding it ([`load_aligned`]), any other
/// byte by byte.
#[inline(always)]
fn read_mem(addr: u64, len: usize) -> Option<u64> {
    let ram = crate::bpfrt::env::KERNEL_RAM;
    let n = (len as u64).min(8);
    if addr < ram.start || addr > ram.end - n {
        return None;
    }
    if n.is_power_of_two() && addr & (n - 1) == 0 {
        // SAFETY: a naturally aligned field in kernel RAM (checked above).
        return Some(unsafe { load_aligned(addr) } & (u64::MAX >> (64 - 8 * n)));
    }
    Some((0..n).fold(0, |v, i| {
        // SAFETY: `addr..addr + n` is kernel RAM (checked above).
        v | (unsafe { core::ptr::read_volatile((addr + i) as *const u8) } as u64) << (8 * i)
    }))
}

/// The value of `f` (a full word).
fn eval(f: &Fx, c: &Ctx) -> Option<u64> {
    let sp = c.regs.regs[3];
    Some(match f {
        Fx::Reg(i) => reg_word(c.regs, *i),
        Fx::Stack(n) => read_mem(sp.wrapping_add(8 * *n as u64), 8)?,
        Fx::StackAddr => sp,
        Fx::Retval => c.regs.regs[4],
        // Linux's `regs_get_kernel_argument`: a0..a7, then the words the caller passed on the
        // stack (the stack pointer is the same at the entry and at the return).
        Fx::Arg(n @ 1..=8) => match c.entry {
            Some((vals, which)) => vals[which.iter().position(|w| w == n)?],
            None => c.regs.regs[3 + *n as usize],
        },
        Fx::Arg(n) => read_mem(sp.wrapping_add(8 * (*n as u64 - 9)), 8)?,
        Fx::Imm(v) => *v,
        Fx::Mem(a) => read_mem(*a, 8)?,
        Fx::Deref(off, inner) => read_mem(eval(inner, c)?.wrapping_add(*off as u64), 8)?,
        Fx::Comm | Fx::ImmStr(_) => return None,
    })
}

/// The address the last step of `f` reads (for strings, arrays and narrow scalars).
fn last_addr(f: &Fx, c: &Ctx) -> Option<u64> {
    match f {
        Fx::Mem(a) => Some(*a),
        Fx::Deref(off, inner) => Some(eval(inner, c)?.wrapping_add(*off as u64)),
        Fx::Stack(n) => Some(c.regs.regs[3].wrapping_add(8 * *n as u64)),
        _ => None,
    }
}

/// Stores the arguments of `p` into the record.
fn fill(p: &Common, c: &Ctx, w: &mut RecordWriter, first_arg_field: usize) {
    for (i, (a, fx)) in p.def.args.iter().zip(&p.args).enumerate() {
        let field = first_arg_field + i;
        if a.ty.is_string() {
            fill_string(a.ty, fx, c, w, field);
            continue;
        }
        if a.count > 0 || matches!(fx, Fx::Deref(..) | Fx::Mem(_) | Fx::Stack(_)) {
            // Memory: exactly the element size at the last address, elements one after another.
            let size = a.ty.size() as usize;
            let base = last_addr(fx, c);
            for j in 0..a.count.max(1) {
                let v = base.and_then(|b| read_mem(b.wrapping_add(j as u64 * size as u64), size)).unwrap_or(0);
                w.num(field, j, v);
            }
        } else {
            w.num(field, 0, eval(fx, c).unwrap_or(0));
        }
    }
}

/// Stores a string argument (out of line: its buffers stay off the numbers' path).
#[inline(never)]
fn fill_string(ty: FetchType, fx: &Fx, c: &Ctx, w: &mut RecordWriter, field: usize) {
    let mut tmp = [0u8; 128];
    let mut comm = [0u8; 16];
    let bytes: Option<&[u8]> = match (fx, ty) {
        (Fx::Comm, _) => Some(registry::comm_of(arch::cpu::id() as u32, &mut comm)),
        (Fx::ImmStr(s), _) => Some(&s[..]),
        (_, FetchType::SymStr) => eval(fx, c).map(|v| {
            let mut cur = Cursor { buf: &mut tmp, len: 0 };
            let _ = super::format::write_sym_offset(&mut cur, v, &registry::KernelSyms);
            let n = cur.len;
            &tmp[..n]
        }),
        _ => last_addr(fx, c).and_then(|addr| read_cstr(addr, &mut tmp)).map(|n| &tmp[..n]),
    };
    let _ = w.string(field, 0, bytes);
}

struct Cursor<'a> {
    buf: &'a mut [u8; 128],
    len: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Reads a NUL-terminated string at `addr` (at most `buf.len()` bytes); `None` on a fault.
fn read_cstr(addr: u64, buf: &mut [u8; 128]) -> Option<usize> {
    for i in 0..buf.len() {
        let b = read_mem(addr.wrapping_add(i as u64), 1)? as u8;
        if b == 0 {
            return Some(i);
        }
        buf[i] = b;
    }
    Some(buf.len())
}

/// Stores the low `size` bytes of `v` at byte `off` of a record kept as little-endian words
/// (Linux packs the arguments, so a field may straddle two words). The plan only holds fields
/// inside the record's [`registry::FIXED_WORDS`] words; the index masks keep the stores in the
/// array without a bounds check.
#[inline(always)]
fn put(rec: &mut [u64; registry::FIXED_WORDS], off: usize, size: u8, v: u64) {
    const _: () = assert!(registry::FIXED_WORDS == 8);
    let bits = 8 * (size as u32).clamp(1, 8);
    let v = v & (u64::MAX >> (64 - bits));
    let (w, shift) = (off / 8, 8 * (off % 8) as u32);
    rec[w & 7] |= v << shift;
    if shift + bits > 64 {
        rec[(w + 1) & 7] |= v >> (64 - shift);
    }
}

/// The value of a plain number argument of `size` bytes (the forms that are not [`Quick`]
/// evaluated out of line).
#[inline(always)]
fn number(q: Quick, fx: &Fx, size: u8, c: &Ctx) -> u64 {
    match q {
        Quick::Reg(i) => c.regs.regs[i as usize & 31],
        Quick::RegDeref(i, off) => read_mem(c.regs.regs[i as usize & 31].wrapping_add(off as i64 as u64), size as usize).unwrap_or(0),
        Quick::Other => number_other(fx, size, c),
    }
}

/// [`number`] of an argument that is not [`Quick`].
#[inline(never)]
fn number_other(fx: &Fx, size: u8, c: &Ctx) -> u64 {
    match fx {
        Fx::Deref(..) | Fx::Mem(_) | Fx::Stack(_) => last_addr(fx, c).and_then(|a| read_mem(a, size as usize)).unwrap_or(0),
        _ => eval(fx, c).unwrap_or(0),
    }
}

/// The naturally aligned field at `addr` and the bytes above it in its aligned word, with one
/// load of that word (whatever the field's size; the caller masks).
///
/// # Safety
/// The field is in kernel RAM, whose bounds are 8-byte aligned (asserted below), so the aligned
/// word holding it is kernel RAM too.
#[inline(always)]
unsafe fn load_aligned(addr: u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_volatile((addr & !7) as *const u64) >> (8 * (addr & 7)) }
}
const _: () = assert!(crate::bpfrt::env::KERNEL_RAM.start % 8 == 0 && crate::bpfrt::env::KERNEL_RAM.end % 8 == 0);

/// Records the event of `p` with fast plan `plan`; `own` are its own fields' values.
#[inline(always)]
fn emit_plain(p: &Common, plan: &[(u16, u8, Quick)], own: &[u64], ip: u64, c: &Ctx, start: registry::StackStart) {
    let mut rec = [0u64; registry::FIXED_WORDS];
    // The probe's own fields (`__probe_ip`, or a kretprobe's two) follow the common fields.
    for (i, v) in own.iter().enumerate() {
        rec[(1 + i) & 7] = *v;
    }
    for (&(off, size, q), fx) in plan.iter().zip(&p.args) {
        put(&mut rec, off as usize, size, number(q, fx, size, c));
    }
    registry::emit_fixed(&p.event, ip, start, &mut rec, p.event.layout.fixed_len() as usize);
}

/// Where a kprobe's stack trace starts: at a function's entry the caller is still in `ra`.
fn entry_stack(c: &Ctx) -> registry::StackStart {
    registry::StackStart { fp: c.regs.regs[22], ra: c.regs.regs[1], entry_only: true }
}

/// Where a kretprobe's stack trace starts: the function's real return address, then the
/// caller's frames.
fn ret_stack(ri: &KretprobeInstance, c: &Ctx) -> registry::StackStart {
    registry::StackStart { fp: c.regs.regs[22], ra: ri.ret_addr, entry_only: false }
}

// Not traceable, as Linux builds kernel/trace without -pg: the handler runs inside a probe hit.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn kprobe_handler(kp: &Kprobe, regs: &mut PtRegs) -> bool {
    // SAFETY: every kprobe with this handler is the first field of a repr(C) `KInst` (`define`).
    let p = unsafe { &*(kp as *const Kprobe as *const KInst) };
    let ip = regs.era;
    if let Some(t) = &p.c.tiny
        && let Some((w2, w3)) = t.fetch(regs)
        && registry::emit_inline(&p.c.event, ip, w2, w3)
    {
        return false;
    }
    kprobe_record(p, ip, &Ctx { regs, entry: None });
    false
}

/// [`kprobe_handler`]'s general path: an event with arguments of other forms or strings, with
/// a filter or a trigger, or a [`Tiny`] one whose fields are not all naturally aligned in RAM.
#[inline(never)]
fn kprobe_record(p: &KInst, ip: u64, c: &Ctx) {
    if let Some(plan) = &p.c.plan {
        return emit_plain(&p.c, plan, &[ip], ip, c, entry_stack(c));
    }
    let start = entry_stack(c);
    registry::emit(&p.c.event, ip, start, |w| {
        w.num(0, 0, ip);
        fill(&p.c, c, w, 1);
    });
}

/// Keeps the register arguments the event's `$argN` fetches name (Linux's entry data).
fn kretprobe_entry(ri: &mut KretprobeInstance, regs: &mut PtRegs) -> bool {
    let Some(rp) = ri.kretprobe() else { return true };
    // SAFETY: as in `kretprobe_handler`.
    let p = unsafe { &*(rp as *const Kretprobe as *const RInst) };
    for (slot, &n) in ri.data.iter_mut().zip(&p.c.entry_args) {
        *slot = regs.regs[3 + n as usize];
    }
    true
}

fn kretprobe_handler(ri: &KretprobeInstance, regs: &mut PtRegs) {
    let Some(rp) = ri.kretprobe() else { return };
    // SAFETY: every kretprobe with this handler is the first field of a repr(C) `RInst`.
    let p = unsafe { &*(rp as *const Kretprobe as *const RInst) };
    let c = Ctx { regs, entry: Some((&ri.data, &p.c.entry_args)) };
    if let Some(plan) = &p.c.plan {
        emit_plain(&p.c, plan, &[ri.func, ri.ret_addr], ri.func, &c, ret_stack(ri, &c));
        return;
    }
    let start = ret_stack(ri, &c);
    registry::emit(&p.c.event, ri.func, start, |w| {
        w.num(0, 0, ri.func);
        w.num(1, 0, ri.ret_addr);
        fill(&p.c, &c, w, 2);
    });
}

// ---------------------------------------------------------------------------------------------
// Definitions.

/// The symbol table as the definition parser asks it.
struct Syms;

impl probe_def::Symbols for Syms {
    fn lookup(&self, module: Option<&str>, name: &str) -> SymbolLookup {
        if let Some(m) = module {
            return match crate::ksyms::resolve_in(m, name) {
                Some(_) => SymbolLookup::Unique,
                None if crate::ksyms::hold(m).is_none() => SymbolLookup::ModuleNotLoaded,
                None => SymbolLookup::Missing,
            };
        }
        let tail = |s: &str| s == name || s.strip_suffix(name).is_some_and(|p| p.ends_with("::"));
        match crate::ksyms::table().iter().filter(|s| tail(s.name)).count() {
            0 => SymbolLookup::Missing,
            1 => SymbolLookup::Unique,
            _ if crate::ksyms::find(name).is_some() => SymbolLookup::Unique,
            _ => SymbolLookup::NotUnique,
        }
    }
}

/// The errno of a refused definition, as tracefs returns it.
fn errno(e: Errno) -> ShErrno {
    match e {
        Errno::NoEnt => ShErrno::ENOENT,
        Errno::TooBig => ShErrno::E2BIG,
        Errno::Exist => ShErrno::EEXIST,
        Errno::Inval => ShErrno::EINVAL,
        Errno::OpNotSupp => ShErrno::EOPNOTSUPP,
    }
}

/// A write to `kprobe_events` or `dynamic_events`: `>` (not `append`) first removes every
/// probe event (refused with EBUSY while one is enabled); then each line is a command, run in
/// order (a refused line stops the write; the lines before it stay done, as in Linux). Each
/// refusal adds its `error_log` entries.
pub fn write(text: &str, append: bool, iface: Interface) -> Result<(), ShErrno> {
    // Under the configuration lock: an enable or trigger change cannot run between a probe's
    // registration and its arming (lock order CONFIG, then DEFS).
    let _g = registry::CONFIG.lock();
    if !append {
        clear_locked()?;
    }
    for line in probe_def::split_write(text) {
        let line = line.map_err(errno)?;
        let cmd = match probe_def::parse_command(line, iface, &Syms) {
            Ok(c) => c,
            Err(e) => {
                for pe in &e.errors {
                    super::log_error(probe_def::render_error_log(line, pe, now_ns()));
                }
                return Err(errno(e.errno));
            }
        };
        match cmd {
            Command::Empty => {}
            Command::Remove(r) => {
                let mut defs = DEFS.lock();
                let hit: Vec<usize> = (0..defs.len()).filter(|&i| r.matches(&defs[i].c().def)).collect();
                if hit.is_empty() {
                    return Err(ShErrno::ENOENT);
                }
                if hit.iter().any(|&i| defs[i].c().event.is_armed()) {
                    return Err(ShErrno::EBUSY);
                }
                for &i in hit.iter().rev() {
                    let p = defs.remove(i);
                    let ev = p.c().event.clone();
                    destroy(p);
                    if !defs.iter().any(|d| Arc::ptr_eq(&d.c().event, &ev)) {
                        registry::remove(&ev);
                    }
                }
            }
            Command::Define(def) => define(line, def)?,
        }
    }
    Ok(())
}

fn now_ns() -> u64 {
    crate::time::ticks_to_ns(arch::time::ticks())
}

fn fail(line: &str, reason: Reason, word: usize, e: Errno) -> ShErrno {
    super::log_error(probe_def::render_error_log(line, &ProbeError::at(line, reason, word, 0, e), now_ns()));
    errno(e)
}

fn define(line: &str, def: ProbeDef) -> Result<(), ShErrno> {
    let mut defs = DEFS.lock();
    // An existing event of that name: another probe of it, if Linux's checks allow.
    let same: Vec<ProbeDef> = defs.iter().map(Inst::c).filter(|d| d.def.group == def.group && d.def.event == def.event).map(|d| d.def.clone()).collect();
    let event = if same.is_empty() {
        if registry::find(&def.group, &def.event).is_some() {
            return Err(fail(line, Reason::EventExist, 0, Errno::Exist));
        }
        None
    } else {
        if let Err(e) = def.check_append(line, &same) {
            super::log_error(probe_def::render_error_log(line, &e, now_ns()));
            return Err(errno(e.errno));
        }
        defs.iter().map(Inst::c).find(|d| d.def.group == def.group && d.def.event == def.event).map(|d| d.event.clone())
    };
    let mut args = Vec::new();
    for (i, a) in def.args.iter().enumerate() {
        match compile(&a.fetch) {
            Ok(f) => args.push(f),
            Err(()) => return Err(fail(line, Reason::BadProbeAddr, 2 + i, Errno::Inval)),
        }
    }
    let (sym, off) = match &def.location {
        Location::Symbol { symbol, offset } => (String::from(symbol.as_str()), *offset as u64),
        Location::Address(a) => match crate::ksyms::lookup(*a) {
            Some((s, o)) => (String::from(s.name), o),
            None => return Err(fail(line, Reason::BadProbeAddr, 1, Errno::Inval)),
        },
    };
    let new_event = event.is_none();
    let event = match event {
        Some(e) => e,
        None => match registry::add_dynamic(EventLayout::from_probe(&def)) {
            Some(e) => e,
            None => return Err(fail(line, Reason::FailRegProbe, probe_def::command_text(line).split(' ').count(), Errno::Inval)),
        },
    };
    let sym: *mut str = Box::into_raw(sym.into_boxed_str());
    // SAFETY: `sym` stays allocated until `destroy` (after the probe is unregistered).
    let name: &'static str = unsafe { &*sym };
    let kind = def.kind;
    let mut entry_args = Vec::new();
    if def.is_return() {
        args.iter().for_each(|a| reg_args(a, &mut entry_args));
        if entry_args.len() > crate::kprobes::kretprobe::KRETPROBE_DATA_WORDS {
            if new_event {
                registry::remove(&event);
            }
            // SAFETY: `sym` came from `Box::into_raw` above and nothing refers to it.
            drop(unsafe { Box::from_raw(sym) });
            return Err(fail(line, Reason::TooManyArgs, 2, Errno::TooBig));
        }
    }
    let layout = &event.layout;
    let plain = !layout.has_strings()
        && (layout.fixed_len() as usize) <= 8 * registry::FIXED_WORDS
        && def.args.iter().all(|a| a.count == 0 && a.bitfield.is_none() && !a.ty.is_string());
    let own = if def.is_return() { 2 } else { 1 };
    let plan = plain.then(|| layout.fields()[own..].iter().zip(&args).map(|(f, a)| (f.offset as u16, f.size as u8, quick(a))).collect());
    let tiny = plan.as_deref().and_then(|p| Tiny::new(p, layout.fixed_len(), own));
    let c = Common { event: event.clone(), def, args, sym, entry_args, plan, tiny };
    let inst = match kind {
        ProbeKind::Kprobe => {
            let at = Where::Symbol(name, off);
            let kp = if c.args.iter().all(on_argument_frame) { Kprobe::on_argument_frame(at, Some(kprobe_handler), None) } else { Kprobe::with(at, Some(kprobe_handler), None) };
            Inst::K(Box::new(KInst { kp, c }))
        }
        ProbeKind::Kretprobe { maxactive } => {
            // Without `$argN` to keep nothing runs at the entry, which then needs no register
            // frame (the kretprobe rides `ftrace_caller`'s argument frame).
            let entry = (!c.entry_args.is_empty()).then_some(kretprobe_entry as crate::kprobes::kretprobe::EntryHandler);
            Inst::R(Box::new(RInst { rp: Kretprobe::new(name, entry, Some(kretprobe_handler), maxactive as usize), c }))
        }
    };
    if let Err(e) = register(&inst) {
        log::info!("kprobe_events: {line}: {e}");
        if new_event {
            registry::remove(&event);
        }
        drop(inst);
        // SAFETY: never registered; `sym` came from `Box::into_raw`.
        drop(unsafe { Box::from_raw(sym) });
        let (reason, word) = if e.contains("not an instruction") {
            (Reason::BadInsnBndry, 1)
        } else {
            (Reason::FailRegProbe, probe_def::command_text(line).split(' ').count())
        };
        return Err(fail(line, reason, word, Errno::Inval));
    }
    // Armed only while its event is.
    let _ = set_armed(&inst, event.is_armed());
    defs.push(inst);
    Ok(())
}

/// The kprobe of a boxed instance, with the lifetime registration needs.
fn kprobe_of(k: &KInst) -> &'static Kprobe {
    // SAFETY: the instance is boxed in `DEFS` (or about to be) and its probe is unregistered in
    // `destroy` before the Box is freed.
    unsafe { &*(&k.kp as *const Kprobe) }
}

fn kretprobe_of(r: &RInst) -> &'static Kretprobe {
    // SAFETY: as in `kprobe_of`.
    unsafe { &*(&r.rp as *const Kretprobe) }
}

fn register(inst: &Inst) -> Result<(), String> {
    match inst {
        Inst::K(k) => crate::kprobes::register_kprobe(kprobe_of(k)).map_err(|e| alloc::format!("{e}")),
        Inst::R(r) => crate::kprobes::kretprobe::register_kretprobe(kretprobe_of(r)).map_err(|e| alloc::format!("{e}")),
    }
}

fn set_armed(inst: &Inst, on: bool) -> Result<(), String> {
    let r = match inst {
        Inst::K(k) if on => crate::kprobes::enable_kprobe(kprobe_of(k)),
        Inst::K(k) => crate::kprobes::disable_kprobe(kprobe_of(k)),
        Inst::R(r) if on => crate::kprobes::kretprobe::enable_kretprobe(kretprobe_of(r)),
        Inst::R(r) => crate::kprobes::kretprobe::disable_kretprobe(kretprobe_of(r)),
    };
    r.map_err(|e| alloc::format!("{e}"))
}

/// Unregisters and frees a probe (unregistering waits until no CPU is inside it).
///
/// Two cases keep the memory instead: a probe whose unregistering failed (it may still be
/// reachable), and every kretprobe — calls it hooked before it was disabled may still be on some
/// CPU's stack of outstanding returns, and their return reads the kretprobe (its generation
/// tells them not to run the handler). A removed kretprobe event thus leaves its probe's few
/// hundred bytes behind (docs/events.md).
fn destroy(inst: Inst) {
    let ok = match &inst {
        Inst::K(k) => crate::kprobes::unregister_kprobe(kprobe_of(k)).is_ok(),
        Inst::R(r) => crate::kprobes::kretprobe::unregister_kretprobe(kretprobe_of(r)).is_ok(),
    };
    if !ok || matches!(inst, Inst::R(_)) {
        if !ok {
            log::error!("kprobe_events: cannot unregister the probe of {}; its memory is kept", inst.c().def);
        }
        core::mem::forget(inst);
        return;
    }
    let sym = inst.c().sym;
    drop(inst);
    // SAFETY: came from `Box::into_raw` in `define`; the probe that named it is gone.
    drop(unsafe { Box::from_raw(sym) });
}

/// Arms or disarms every probe of event `id` (called by the registry under its lock), all or
/// none.
pub fn arm(id: u16, on: bool) -> Result<(), String> {
    let defs = DEFS.lock();
    let mine: Vec<&Inst> = defs.iter().filter(|d| d.c().event.id == id).collect();
    for (n, p) in mine.iter().enumerate() {
        if let Err(e) = set_armed(p, on) {
            for q in &mine[..n] {
                let _ = set_armed(q, !on);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Removes every probe event (`> kprobe_events`); EBUSY while one is enabled or has triggers.
pub fn clear() -> Result<(), ShErrno> {
    let _g = registry::CONFIG.lock();
    clear_locked()
}

fn clear_locked() -> Result<(), ShErrno> {
    let mut defs = DEFS.lock();
    if defs.iter().any(|d| d.c().event.is_armed()) {
        return Err(ShErrno::EBUSY);
    }
    for p in defs.drain(..) {
        let ev = p.c().event.clone();
        destroy(p);
        registry::remove(&ev);
    }
    Ok(())
}

/// `kprobe_events` / `dynamic_events`: one line per probe, as Linux lists them.
pub fn list(w: &mut dyn Write) -> core::fmt::Result {
    for d in DEFS.lock().iter() {
        writeln!(w, "{}", d.c().def)?;
    }
    Ok(())
}

/// `kprobe_profile`: each probe's event name, hits and misses (Linux's layout).
pub fn profile(w: &mut dyn Write) -> core::fmt::Result {
    for d in DEFS.lock().iter() {
        let (hits, missed) = match d {
            Inst::K(k) => (k.kp.hits(), k.kp.nmissed()),
            Inst::R(r) => (r.rp.kprobe().hits(), r.rp.nmissed() + r.rp.kprobe().nmissed()),
        };
        writeln!(w, "  {:<44} {:>15} {:>15}", d.c().def.event, hits, missed)?;
    }
    Ok(())
}
