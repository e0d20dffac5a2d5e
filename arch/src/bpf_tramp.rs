//! Code generator for fentry/fexit/fmod_ret trampolines (the shape of Linux's BPF trampolines).
//!
//! Pure arithmetic on instruction words (no memory access besides the output buffer, no
//! allocation), so it is host-tested, including by running the generated code in a small
//! interpreter (see the tests).
//!
//! # Register contract
//!
//! A generated trampoline is a direct-call trampoline: it is entered, straight from the patch site
//! or through `ftrace_regs_caller`'s direct return, with
//!
//! | register | value on entry |
//! |---|---|
//! | `t0` | the traced function's return address (in its parent, or `return_to_handler`) |
//! | `ra` | the traced function's body (`entry + 8`) |
//! | `sp`, `a0`-`a7` | the traced function's |
//!
//! It clobbers `t1` (and, when a handler is out of `bl` range, uses `t1` to reach it); handlers
//! are C-ABI functions, so they preserve `s0`-`s8`, `fp`, `sp`, `tp` and `r21`, and the trampoline
//! restores `fp` itself. It leaves to the parent with the traced function's return value in
//! `a0`/`a1` (or the one an fmod_ret handler chose).
//!
//! # Frame (`FRAME_SIZE` bytes below the entry `sp`)
//!
//! | offset | contents |
//! |---|---|
//! | 0..64 | `a0`..`a7` as passed (only the first `nargs` are stored) — the handlers' context starts here |
//! | 64, 72 | return value `a0`, `a1` (fexit/fmod_ret trampolines) |
//! | 80 | the body address (`entry + 8`) |
//! | 88 | unused |
//! | 96 | the caller's `fp` |
//! | 104 | the parent return address |
//!
//! `fp` is set to `sp + FRAME_SIZE` while the trampoline runs, so the words at 96/104 form a frame
//! record (`fp - 16`, `fp - 8`): a backtrace from a handler (or from the traced function, when
//! the trampoline called it) goes through the trampoline to the parent and beyond.
//!
//! # Code
//!
//! ```text
//!     addi.d  sp, sp, -112
//!     st.d    t0, sp, 104          parent
//!     st.d    fp, sp, 96
//!     addi.d  fp, sp, 112          frame record
//!     st.d    ra, sp, 80           body
//!     st.d    a<i>, sp, 8*i        i < nargs
//!   [ st.d    zero, sp, 64/72 ]    when there are fmod_ret handlers
//!     for each fentry:   move a0, sp; call h
//!     for each fmod_ret: move a0, sp; call h; st.d a0, sp, 64; bnez a0, 1f
//!   fentry only:
//!     ld.d a<i>; ld.d t1, sp, 80; ld.d ra, sp, 104; ld.d fp, sp, 96; addi.d sp, sp, 112; jr t1
//!   otherwise:
//!     ld.d a<i>; ld.d t1, sp, 80; jirl ra, t1, 0; st.d a0, sp, 64; st.d a1, sp, 72
//!  1: for each fexit:    move a0, sp; call h
//!     ld.d a0/a1 from 64/72; ld.d ra, sp, 104; ld.d fp, sp, 96; addi.d sp, sp, 112; jr ra
//! ```
//!
//! `call h` is `bl h` when in reach, `pcaddu18i t1; jirl ra, t1` within ±128 GiB, otherwise the
//! address is built in `t1` (`lu12i.w`, `ori`, `lu32i.d`, `lu52i.d`) and called with `jirl`.

use crate::insn::{self, ImmError, InsnError, Reg};
use alloc::vec::Vec;

/// Bytes the trampoline reserves on the stack.
pub const FRAME_SIZE: i64 = 112;
/// Offset of the saved arguments (the handlers' context) from the trampoline's `sp`.
pub const CTX_ARGS: i64 = 0;
/// Offset of the saved return value (`a0`, then `a1`).
pub const CTX_RET: i64 = 64;
/// Offset of the body address (`entry + 8`).
pub const CTX_BODY: i64 = 80;
/// Offset of the caller's frame pointer.
pub const CTX_FP: i64 = 96;
/// Offset of the parent return address.
pub const CTX_PARENT: i64 = 104;
/// Most integer argument registers a traced function may take (`a0`-`a7`).
pub const MAX_ARGS: usize = 8;

/// A handler's recursion guard (Linux's per-program, per-CPU `prog->active`): the handler runs
/// only when its word in this CPU's per-CPU area (`r21 + percpu_off`) is 0; the trampoline sets
/// the word (to `sp`) around the call and clears it after, and a call that finds it set is not
/// made: `misses[cpu]` (a `u64` per CPU) is incremented atomically instead. An interrupt that
/// comes between the check and the set runs the handler and clears the word before this call
/// sets it, so the sequence needs no atomic on the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Offset of the handler's active word in the per-CPU area (at most 2047).
    pub percpu_off: u16,
    /// Address of the handler's per-CPU miss counters, indexed by CPU number.
    pub misses: u64,
}

/// One handler the trampoline calls: a C-ABI function `fn(ctx: *const u64[, arg: u64]) -> u64`
/// that receives the frame's context (`sp + CTX_ARGS`) in `a0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handler {
    /// The function.
    pub addr: u64,
    /// A second argument passed in `a1` (e.g. which program an interpreter runs), if any.
    pub arg: Option<u64>,
    /// The recursion guard, if any.
    pub guard: Option<Guard>,
}

impl Handler {
    /// A handler called with the context only, without a guard.
    pub const fn plain(addr: u64) -> Handler {
        Handler { addr, arg: None, guard: None }
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct TrampSpec<'a> {
    /// Argument registers to save and pass on (0..=8).
    pub nargs: usize,
    /// Called before the traced function; their results are ignored.
    pub fentry: &'a [Handler],
    /// Called after the fentry handlers; a non-zero result skips the traced function and becomes
    /// its return value.
    pub fmod_ret: &'a [Handler],
    /// Called after the traced function (or after an fmod_ret handler that skipped it); the
    /// context then holds the return value.
    pub fexit: &'a [Handler],
    /// Also keep the return value (`a0`) in the word right after the `nargs` arguments
    /// (`ctx[nargs]`), where BPF's fexit and fmod_ret programs read it (Linux's layout); the
    /// word at `CTX_RET` holds it too.
    pub ret_after_args: bool,
}

impl TrampSpec<'_> {
    /// Whether the trampoline calls the traced function itself (it has fexit or fmod_ret
    /// handlers); a trampoline with only fentry handlers resumes the function instead.
    pub fn calls_function(&self) -> bool {
        !self.fexit.is_empty() || !self.fmod_ret.is_empty()
    }

    /// An upper bound, in instruction words, of the generated code.
    pub fn max_words(&self) -> usize {
        let all = self.fentry.iter().chain(self.fmod_ret).chain(self.fexit);
        40 + all.map(|h| 10 + h.arg.map_or(0, |_| 4) + h.guard.map_or(0, |_| 14)).sum::<usize>()
    }

    /// Where the return value is kept besides `CTX_RET`: `ctx[nargs]`, when asked for and
    /// different.
    fn ret_copy(&self) -> Option<i64> {
        (self.ret_after_args && self.nargs < MAX_ARGS).then_some(CTX_ARGS + 8 * self.nargs as i64)
    }
}

/// Why no code was generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenError {
    /// More than [`MAX_ARGS`] arguments.
    TooManyArgs(usize),
    /// No handler at all.
    NoHandlers,
    /// The output buffer is too small; `need` words would do.
    BufferTooSmall { need: usize },
    /// A branch could not be encoded (misaligned `base` or handler).
    Insn(InsnError),
    /// An immediate did not fit (cannot happen with the fixed frame; kept for completeness).
    Imm(ImmError),
}

impl core::fmt::Display for GenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GenError::TooManyArgs(n) => write!(f, "{n} arguments: at most {MAX_ARGS} registers are supported"),
            GenError::NoHandlers => write!(f, "no handler to call"),
            GenError::BufferTooSmall { need } => write!(f, "the code needs {need} words"),
            GenError::Insn(e) => write!(f, "{e}"),
            GenError::Imm(e) => write!(f, "{e}"),
        }
    }
}

impl From<InsnError> for GenError {
    fn from(e: InsnError) -> Self {
        GenError::Insn(e)
    }
}

impl From<ImmError> for GenError {
    fn from(e: ImmError) -> Self {
        GenError::Imm(e)
    }
}

/// Writes instruction words for code that will run at `base`.
struct Emitter<'b> {
    base: u64,
    buf: &'b mut [u32],
    len: usize,
}

impl Emitter<'_> {
    fn pc(&self) -> u64 {
        self.base + 4 * self.len as u64
    }
    fn put(&mut self, w: u32) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = w;
        }
        self.len += 1;
    }
    fn st(&mut self, r: Reg, off: i64) -> Result<(), GenError> {
        self.put(insn::encode_st_d(r, Reg::Sp, off)?);
        Ok(())
    }
    fn ld(&mut self, r: Reg, off: i64) -> Result<(), GenError> {
        self.put(insn::encode_ld_d(r, Reg::Sp, off)?);
        Ok(())
    }
    fn addi(&mut self, rd: Reg, rj: Reg, v: i64) -> Result<(), GenError> {
        self.put(insn::encode_addi_d(rd, rj, v)?);
        Ok(())
    }
    /// `move a0, sp` then a call of `target` (through `t1` when out of `bl` reach).
    fn call(&mut self, target: u64) -> Result<(), GenError> {
        self.put(insn::encode_move(Reg::A0, Reg::Sp));
        let pc = self.pc();
        if insn::bl_reachable(pc, target) {
            self.put(insn::encode_bl(pc, target)?);
        } else if let Ok(pair) = insn::encode_call36(Reg::Ra, Reg::T1, pc, target) {
            pair.into_iter().for_each(|w| self.put(w));
        } else {
            if target & 3 != 0 {
                return Err(InsnError::Misaligned { pc, target }.into());
            }
            insn::encode_li64(Reg::T1, target).into_iter().for_each(|w| self.put(w));
            self.put(insn::encode_jirl(Reg::Ra, Reg::T1, 0)?);
        }
        Ok(())
    }

    /// Calls handler `h` (its guard first, if it has one); `after` emits what belongs to the
    /// call (e.g. keeping an fmod_ret result), skipped with the call when the guard refuses.
    fn call_handler(&mut self, h: &Handler, misses: &mut Vec<Miss>, after: impl FnOnce(&mut Self) -> Result<(), GenError>) -> Result<(), GenError> {
        let Some(g) = h.guard else {
            self.load_arg(h);
            self.call(h.addr)?;
            return after(self);
        };
        let off = g.percpu_off as i64;
        self.put(insn::encode_ld_d(Reg::T1, Reg::R21, off)?);
        let branch_at = self.len;
        self.put(insn::NOP);
        self.put(insn::encode_st_d(Reg::Sp, Reg::R21, off)?);
        self.load_arg(h);
        self.call(h.addr)?;
        self.put(insn::encode_st_d(Reg::Zero, Reg::R21, off)?);
        after(self)?;
        misses.push(Miss { branch_at, resume_at: self.len, counters: g.misses });
        Ok(())
    }

    fn load_arg(&mut self, h: &Handler) {
        if let Some(a) = h.arg {
            insn::encode_li64(Reg::A1, a).into_iter().for_each(|w| self.put(w));
        }
    }

    /// The out-of-line blocks of the guards that refused: count the miss on this CPU
    /// (`amadd_db.d` on `misses[cpu]`), then go on after the call.
    fn miss_blocks(&mut self, misses: &[Miss]) -> Result<(), GenError> {
        for m in misses {
            let here = self.pc();
            let w = insn::encode_bnez(Reg::T1, self.base + 4 * m.branch_at as u64, here)?;
            if let Some(slot) = self.buf.get_mut(m.branch_at) {
                *slot = w;
            }
            self.put(insn::encode_ld_d(Reg::T1, Reg::R21, 0)?);
            insn::encode_li64(Reg::T2, m.counters).into_iter().for_each(|w| self.put(w));
            self.put(insn::encode_alsl_d(Reg::T2, Reg::T1, Reg::T2, 3)?);
            self.addi(Reg::T1, Reg::Zero, 1)?;
            self.put(insn::encode_amadd_db_d(Reg::Zero, Reg::T1, Reg::T2));
            let pc = self.pc();
            self.put(insn::encode_b(pc, self.base + 4 * m.resume_at as u64)?);
        }
        Ok(())
    }
}

/// A guard's refusal to be placed at the end: the `bnez` to patch, where to go on.
struct Miss {
    branch_at: usize,
    resume_at: usize,
    counters: u64,
}

fn arg_reg(i: usize) -> Reg {
    Reg::from_u32(Reg::A0.num() + i as u32).unwrap_or(Reg::A0)
}

/// Generates the trampoline for `spec` into `buf`, as code that will run at address `base`.
/// Returns the number of words written. `buf` may be larger than needed; when it is too small
/// nothing usable was written and the error says how much is needed.
pub fn generate(spec: &TrampSpec, base: u64, buf: &mut [u32]) -> Result<usize, GenError> {
    if spec.nargs > MAX_ARGS {
        return Err(GenError::TooManyArgs(spec.nargs));
    }
    if spec.fentry.is_empty() && !spec.calls_function() {
        return Err(GenError::NoHandlers);
    }
    if base & 3 != 0 {
        return Err(InsnError::Misaligned { pc: base, target: base }.into());
    }
    let mut e = Emitter { base, buf, len: 0 };
    let mut misses = Vec::new();
    let ret_copy = spec.ret_copy();
    e.addi(Reg::Sp, Reg::Sp, -FRAME_SIZE)?;
    e.st(Reg::T0, CTX_PARENT)?;
    e.st(Reg::Fp, CTX_FP)?;
    e.addi(Reg::Fp, Reg::Sp, FRAME_SIZE)?;
    e.st(Reg::Ra, CTX_BODY)?;
    for i in 0..spec.nargs {
        e.st(arg_reg(i), CTX_ARGS + 8 * i as i64)?;
    }
    if !spec.fmod_ret.is_empty() {
        e.st(Reg::Zero, CTX_RET)?;
        e.st(Reg::Zero, CTX_RET + 8)?;
        if let Some(at) = ret_copy {
            e.st(Reg::Zero, at)?;
        }
    }
    for h in spec.fentry {
        e.call_handler(h, &mut misses, |_| Ok(()))?;
    }
    // Positions of the `bnez` after each fmod_ret handler, fixed up once `do_fexit` is known.
    let mut skips = Vec::with_capacity(spec.fmod_ret.len());
    for h in spec.fmod_ret {
        e.call_handler(h, &mut misses, |e| {
            e.st(Reg::A0, CTX_RET)?;
            if let Some(at) = ret_copy {
                e.st(Reg::A0, at)?;
            }
            skips.push(e.len);
            e.put(insn::NOP);
            Ok(())
        })?;
    }
    for i in 0..spec.nargs {
        e.ld(arg_reg(i), CTX_ARGS + 8 * i as i64)?;
    }
    e.ld(Reg::T1, CTX_BODY)?;
    if !spec.calls_function() {
        e.ld(Reg::Ra, CTX_PARENT)?;
        e.ld(Reg::Fp, CTX_FP)?;
        e.addi(Reg::Sp, Reg::Sp, FRAME_SIZE)?;
        e.put(insn::encode_jr(Reg::T1));
        e.miss_blocks(&misses)?;
        return finish(e);
    }
    e.put(insn::encode_jirl(Reg::Ra, Reg::T1, 0)?);
    e.st(Reg::A0, CTX_RET)?;
    e.st(Reg::A1, CTX_RET + 8)?;
    if let Some(at) = ret_copy {
        e.st(Reg::A0, at)?;
    }
    let do_fexit = e.pc();
    for &at in &skips {
        let w = insn::encode_bnez(Reg::A0, base + 4 * at as u64, do_fexit)?;
        if let Some(slot) = e.buf.get_mut(at) {
            *slot = w;
        }
    }
    for h in spec.fexit {
        e.call_handler(h, &mut misses, |_| Ok(()))?;
    }
    e.ld(Reg::A0, CTX_RET)?;
    e.ld(Reg::A1, CTX_RET + 8)?;
    e.ld(Reg::Ra, CTX_PARENT)?;
    e.ld(Reg::Fp, CTX_FP)?;
    e.addi(Reg::Sp, Reg::Sp, FRAME_SIZE)?;
    e.put(insn::encode_jr(Reg::Ra));
    e.miss_blocks(&misses)?;
    finish(e)
}

fn finish(e: Emitter) -> Result<usize, GenError> {
    if e.len > e.buf.len() {
        return Err(GenError::BufferTooSmall { need: e.len });
    }
    Ok(e.len)
}

#[cfg(test)]
mod tests {
    //! The generated code is run by a small interpreter of the instructions it uses; handlers and
    //! the traced function are "native" addresses the interpreter services in Rust.
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    const BASE: u64 = 0x9000_0000_0100_0000;
    const FUNC: u64 = 0x9000_0000_0020_1000;
    const BODY: u64 = FUNC + 8;
    const PARENT: u64 = 0x9000_0000_0020_5554;
    const STACK_TOP: u64 = 0x9000_0000_0800_0000;
    const H_FENTRY: [u64; 2] = [0x9000_0000_0030_0000, 0x9000_0000_0030_0100];
    /// Out of `bl` reach (call36) and out of call36 reach (li64).
    const H_FAR: u64 = 0x9000_0010_0000_0000;
    const H_VERY_FAR: u64 = 0x1234_5678_9abc_def0;
    const H_FMOD: u64 = 0x9000_0000_0030_0200;
    const H_FEXIT: u64 = 0x9000_0000_0030_0300;
    /// The per-CPU area (`r21`; this CPU is number 3) and two guards' words in it.
    const PERCPU: u64 = 0x9000_0000_0040_0000;
    const GUARD_OFF: u64 = 72;
    const MISSES: u64 = 0x9000_0000_0050_0000;
    const CPU: u64 = 3;

    #[derive(Debug, Clone, PartialEq)]
    enum Event {
        Handler { at: u64, ctx: Vec<u64>, ret: [u64; 2], a1: u64, active: Vec<u64> },
        Body { args: [u64; 8] },
    }

    struct Machine {
        r: [u64; 32],
        pc: u64,
        mem: BTreeMap<u64, u64>,
        code: Vec<u32>,
        events: Vec<Event>,
        fmod_result: u64,
        body_ret: [u64; 2],
        steps: usize,
    }

    impl Machine {
        fn ld(&self, a: u64) -> u64 {
            assert_eq!(a & 7, 0);
            assert!((a < STACK_TOP && a >= self.r[3]) || Self::other(a), "load below sp or above the stack: {a:#x}");
            *self.mem.get(&a).unwrap_or(&0xdead_dead_dead_dead)
        }
        /// The per-CPU area and the miss counters.
        fn other(a: u64) -> bool {
            (PERCPU..PERCPU + 0x800).contains(&a) || (MISSES..MISSES + 64).contains(&a)
        }
        fn st(&mut self, a: u64, v: u64) {
            assert_eq!(a & 7, 0);
            assert!((a < STACK_TOP && a >= self.r[3]) || Self::other(a), "store below sp: {a:#x}");
            self.mem.insert(a, v);
        }
        /// A native function: a C-ABI callee that clobbers every temporary and argument register.
        fn native(&mut self, at: u64) {
            let ret_to = self.r[1];
            let saved: Vec<u64> = [2usize, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].iter().map(|&i| self.r[i]).collect();
            if at == BODY {
                let args: [u64; 8] = core::array::from_fn(|i| self.r[4 + i]);
                self.events.push(Event::Body { args });
                self.r[4] = self.body_ret[0];
                self.r[5] = self.body_ret[1];
            } else {
                let ctx = self.r[4];
                let words: Vec<u64> = (0..8).map(|i| self.ld(ctx + 8 * i)).collect();
                let ret = [self.ld(ctx + 64), self.ld(ctx + 72)];
                let active = [GUARD_OFF, GUARD_OFF + 8].iter().map(|&o| *self.mem.get(&(PERCPU + o)).unwrap_or(&0)).collect();
                self.events.push(Event::Handler { at, ctx: words, ret, a1: self.r[5], active });
                self.r[4] = if at == H_FMOD { self.fmod_result } else { 0xbad };
                self.r[5] = 0xbad1;
            }
            for i in [6usize, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20] {
                self.r[i] = 0x7e5_0000 + i as u64;
            }
            for (k, &i) in [2usize, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31].iter().enumerate() {
                self.r[i] = saved[k];
            }
            self.pc = ret_to;
        }
        fn step(&mut self) {
            self.steps += 1;
            assert!(self.steps < 10_000, "runaway");
            let pc = self.pc;
            if !(BASE..BASE + 4 * self.code.len() as u64).contains(&pc) {
                self.native(pc);
                return;
            }
            let w = self.code[((pc - BASE) / 4) as usize];
            let rd = (w & 31) as usize;
            let rj = ((w >> 5) & 31) as usize;
            let si12 = insn::sign_extend(((w >> 10) & 0xFFF) as u64, 12);
            let si20 = insn::sign_extend(((w >> 5) & 0xF_FFFF) as u64, 20);
            let mut next = pc + 4;
            let set = |m: &mut Machine, r: usize, v: u64| {
                if r != 0 {
                    m.r[r] = v;
                }
            };
            match w & 0xFFC0_0000 {
                insn::ADDI_D_BASE => set(self, rd, self.r[rj].wrapping_add(si12 as u64)),
                insn::LD_D_BASE => {
                    let v = self.ld(self.r[rj].wrapping_add(si12 as u64));
                    set(self, rd, v)
                }
                insn::ST_D_BASE => self.st(self.r[rj].wrapping_add(si12 as u64), self.r[rd]),
                insn::ORI_BASE => set(self, rd, self.r[rj] | ((w >> 10) & 0xFFF) as u64),
                insn::LU52I_D_BASE => set(self, rd, (self.r[rj] & 0x000F_FFFF_FFFF_FFFF) | ((((w >> 10) & 0xFFF) as u64) << 52)),
                _ => match w & 0xFE00_0000 {
                    insn::LU12I_W_BASE => set(self, rd, (si20 << 12) as u64),
                    insn::LU32I_D_BASE => set(self, rd, (self.r[rd] & 0xFFFF_FFFF) | ((si20 as u64) << 32)),
                    insn::PCADDU18I_BASE => set(self, rd, crate::pcrel::pcaddu18i(pc, si20 as i32)),
                    _ => match insn::decode(pc, w) {
                        insn::Insn::Move { rd, rj } => set(self, rd as usize, self.r[rj as usize]),
                        insn::Insn::Bl { target } => {
                            self.r[1] = pc + 4;
                            next = target;
                        }
                        insn::Insn::Jirl { rd, rj, offset } => {
                            next = self.r[rj as usize].wrapping_add(offset as u64);
                            set(self, rd as usize, pc + 4);
                        }
                        _ if w & 0xFFFE_0000 == 0x002c_0000 => {
                            let sa = ((w >> 15) & 3) + 1;
                            let rk = ((w >> 10) & 31) as usize;
                            set(self, rd, (self.r[rj] << sa).wrapping_add(self.r[rk]))
                        }
                        _ if w & 0xFFFF_8000 == 0x386a_8000 => {
                            let rk = ((w >> 10) & 31) as usize;
                            let old = self.ld(self.r[rj]);
                            self.st(self.r[rj], old.wrapping_add(self.r[rk]));
                            set(self, rd, old)
                        }
                        _ if w & 0xFC00_0000 == 0x5000_0000 => {
                            let o = ((w >> 10) & 0xFFFF) | ((w & 0x3FF) << 16);
                            next = pc.wrapping_add((insn::sign_extend(o as u64, 26) << 2) as u64);
                        }
                        _ if w & 0xFC00_0000 == insn::BNEZ_BASE => {
                            let o = ((w >> 10) & 0xFFFF) | ((w & 31) << 16);
                            if self.r[rj] != 0 {
                                next = pc.wrapping_add((insn::sign_extend(o as u64, 21) << 2) as u64);
                            }
                        }
                        other => panic!("unexpected instruction {other} ({w:#010x}) at {pc:#x}"),
                    },
                },
            }
            self.pc = next;
        }
    }

    struct Outcome {
        mem: BTreeMap<u64, u64>,
        events: Vec<Event>,
        regs: [u64; 32],
        pc: u64,
    }

    /// Runs the trampoline as the patch site would enter it; stops when control leaves it for
    /// PARENT (or for the body, in an fentry-only trampoline).
    fn run(spec: &TrampSpec, args: [u64; 8], body_ret: [u64; 2], fmod_result: u64) -> Outcome {
        run_with(spec, args, body_ret, fmod_result, &BTreeMap::new())
    }

    /// [`run`] with words of memory set first (guards' active words, miss counters).
    fn run_with(spec: &TrampSpec, args: [u64; 8], body_ret: [u64; 2], fmod_result: u64, preset: &BTreeMap<u64, u64>) -> Outcome {
        let mut buf = vec![0u32; spec.max_words()];
        let n = generate(spec, BASE, &mut buf).unwrap();
        buf.truncate(n);
        let mut m = Machine { r: [0; 32], pc: BASE, mem: BTreeMap::new(), code: buf, events: vec![], fmod_result, body_ret, steps: 0 };
        for i in 0..32 {
            m.r[i] = 0x1111_0000_0000_0000 + i as u64;
        }
        m.r[0] = 0;
        m.r[3] = STACK_TOP - 0x100;
        m.r[22] = STACK_TOP - 0x40; // the caller's fp
        m.r[4..12].copy_from_slice(&args);
        m.r[12] = PARENT; // t0
        m.r[21] = PERCPU;
        m.mem.insert(PERCPU, CPU);
        for at in [PERCPU + GUARD_OFF, PERCPU + GUARD_OFF + 8].into_iter().chain((0..8).map(|i| MISSES + 8 * i)) {
            m.mem.insert(at, 0);
        }
        for (&at, &v) in preset {
            m.mem.insert(at, v);
        }
        m.r[1] = BODY; // ra
        loop {
            m.step();
            if m.pc == PARENT || (m.pc == BODY && !spec.calls_function()) {
                return Outcome { events: m.events, regs: m.r, pc: m.pc, mem: m.mem };
            }
        }
    }

    const ARGS: [u64; 8] = [10, 11, 12, 13, 14, 15, 16, 17];

    fn hs(addrs: &[u64]) -> Vec<Handler> {
        addrs.iter().map(|&a| Handler::plain(a)).collect()
    }

    fn check_preserved(o: &Outcome) {
        for i in [2usize, 23, 24, 25, 26, 27, 28, 29, 30, 31] {
            assert_eq!(o.regs[i], 0x1111_0000_0000_0000 + i as u64, "r{i}");
        }
        assert_eq!(o.regs[21], PERCPU, "r21");
        assert_eq!(o.regs[3], STACK_TOP - 0x100, "sp");
        assert_eq!(o.regs[22], STACK_TOP - 0x40, "fp");
    }

    #[test]
    fn fentry_only_resumes_the_body() {
        let spec = TrampSpec { nargs: 3, fentry: &hs(&H_FENTRY), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false };
        let o = run(&spec, ARGS, [0, 0], 0);
        assert_eq!(o.pc, BODY);
        assert_eq!(o.regs[1], PARENT, "ra = parent when the body runs");
        assert_eq!(&o.regs[4..7], &ARGS[..3], "arguments restored");
        check_preserved(&o);
        assert_eq!(o.events.len(), 2);
        for (e, h) in o.events.iter().zip(H_FENTRY) {
            match e {
                Event::Handler { at, ctx, .. } => {
                    assert_eq!(*at, h);
                    assert_eq!(&ctx[..3], &ARGS[..3]);
                }
                _ => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn fexit_sees_arguments_and_return_value() {
        for nargs in 0..=8 {
            let spec = TrampSpec { nargs, fentry: &hs(&[H_FENTRY[0]]), fmod_ret: &hs(&[]), fexit: &hs(&[H_FEXIT, H_FAR]), ret_after_args: false };
            let o = run(&spec, ARGS, [0xaaaa, 0xbbbb], 0);
            assert_eq!(o.pc, PARENT);
            assert_eq!((o.regs[4], o.regs[5]), (0xaaaa, 0xbbbb), "return value reaches the parent");
            check_preserved(&o);
            let kinds: Vec<u64> = o.events.iter().map(|e| match e {
                Event::Handler { at, .. } => *at,
                Event::Body { .. } => BODY,
            }).collect();
            assert_eq!(kinds, vec![H_FENTRY[0], BODY, H_FEXIT, H_FAR]);
            match &o.events[1] {
                Event::Body { args } => assert_eq!(&args[..nargs], &ARGS[..nargs], "the body gets its arguments"),
                e => panic!("{e:?}"),
            }
            for e in &o.events[2..] {
                match e {
                    Event::Handler { ctx, ret, .. } => {
                        assert_eq!(&ctx[..nargs], &ARGS[..nargs]);
                        assert_eq!(*ret, [0xaaaa, 0xbbbb]);
                    }
                    e => panic!("{e:?}"),
                }
            }
        }
    }

    #[test]
    fn fmod_ret_skips_the_function_when_non_zero() {
        let spec = TrampSpec { nargs: 2, fentry: &hs(&[]), fmod_ret: &hs(&[H_FMOD]), fexit: &hs(&[H_FEXIT]), ret_after_args: false };
        let o = run(&spec, ARGS, [5, 6], 0x77);
        assert_eq!(o.pc, PARENT);
        assert_eq!((o.regs[4], o.regs[5]), (0x77, 0));
        assert!(!o.events.iter().any(|e| matches!(e, Event::Body { .. })), "function skipped");
        assert!(matches!(&o.events[1], Event::Handler { at: H_FEXIT, ret: [0x77, 0], .. }));
        check_preserved(&o);
        // With 0 the function runs and fexit sees its value.
        let o = run(&spec, ARGS, [5, 6], 0);
        assert_eq!((o.regs[4], o.regs[5]), (5, 6));
        assert!(matches!(&o.events[0], Event::Handler { at: H_FMOD, ret: [0, 0], .. }));
        assert!(matches!(&o.events[1], Event::Body { .. }));
        assert!(matches!(&o.events[2], Event::Handler { at: H_FEXIT, ret: [5, 6], .. }));
        check_preserved(&o);
    }

    #[test]
    fn far_handlers_are_reached() {
        let spec = TrampSpec { nargs: 1, fentry: &hs(&[H_FAR, H_VERY_FAR]), fmod_ret: &[], fexit: &hs(&[H_VERY_FAR]), ret_after_args: false };
        let o = run(&spec, ARGS, [1, 2], 0);
        let at: Vec<u64> = o.events.iter().filter_map(|e| match e {
            Event::Handler { at, .. } => Some(*at),
            _ => None,
        }).collect();
        assert_eq!(at, vec![H_FAR, H_VERY_FAR, H_VERY_FAR]);
        check_preserved(&o);
    }

    #[test]
    fn frame_record_and_size() {
        let spec = TrampSpec { nargs: 1, fentry: &hs(&[H_FENTRY[0]]), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false };
        let mut buf = [0u32; 64];
        let n = generate(&spec, BASE, &mut buf).unwrap();
        // The fentry-only, one-argument, one-handler shape the bench measures: 14 words.
        assert_eq!(n, 14);
        assert_eq!(buf[0], insn::encode_addi_d(Reg::Sp, Reg::Sp, -FRAME_SIZE).unwrap());
        assert_eq!(buf[3], insn::encode_addi_d(Reg::Fp, Reg::Sp, FRAME_SIZE).unwrap());
        assert_eq!(CTX_FP, FRAME_SIZE - 16);
        assert_eq!(CTX_PARENT, FRAME_SIZE - 8);
        assert_eq!(FRAME_SIZE % 16, 0);
        let many = [H_VERY_FAR; 38];
        let spec = TrampSpec { nargs: 8, fentry: &hs(&many[..13]), fmod_ret: &hs(&many[..12]), fexit: &hs(&many[..13]), ret_after_args: false };
        let mut big = vec![0u32; spec.max_words()];
        assert!(generate(&spec, BASE, &mut big).unwrap() <= spec.max_words());
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut buf = [0u32; 64];
        let h = [H_FEXIT];
        assert_eq!(generate(&TrampSpec { nargs: 9, fentry: &hs(&h), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false }, BASE, &mut buf), Err(GenError::TooManyArgs(9)));
        assert_eq!(generate(&TrampSpec { nargs: 0, fentry: &hs(&[]), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false }, BASE, &mut buf), Err(GenError::NoHandlers));
        assert!(matches!(generate(&TrampSpec { nargs: 0, fentry: &hs(&h), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false }, BASE + 2, &mut buf), Err(GenError::Insn(_))));
        assert!(matches!(generate(&TrampSpec { nargs: 0, fentry: &hs(&[H_FEXIT + 1]), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false }, BASE, &mut buf), Err(GenError::Insn(_))));
        let mut small = [0u32; 4];
        assert_eq!(generate(&TrampSpec { nargs: 0, fentry: &hs(&h), fmod_ret: &hs(&[]), fexit: &hs(&[]), ret_after_args: false }, BASE, &mut small), Err(GenError::BufferTooSmall { need: 12 }));
    }

    #[test]
    fn guards_skip_a_running_handler_and_count_the_miss() {
        let g = |i: u64| Some(Guard { percpu_off: (GUARD_OFF + 8 * i) as u16, misses: MISSES + 16 * i });
        let fentry = [Handler { addr: H_FENTRY[0], arg: None, guard: g(0) }];
        let fexit = [Handler { addr: H_FEXIT, arg: Some(0x1234_5678_9abc), guard: g(1) }];
        let spec = TrampSpec { nargs: 2, fentry: &fentry, fmod_ret: &[], fexit: &fexit, ret_after_args: true };
        let o = run(&spec, ARGS, [0x77, 0x88], 0);
        assert_eq!(o.pc, PARENT);
        assert_eq!((o.regs[4], o.regs[5]), (0x77, 0x88));
        check_preserved(&o);
        match (&o.events[0], &o.events[2]) {
            (Event::Handler { at: first, active: a0, .. }, Event::Handler { at: H_FEXIT, ctx, a1, active: a2, .. }) => {
                assert_eq!(*first, H_FENTRY[0]);
                assert_ne!(a0[0], 0, "the fentry handler's word is set while it runs");
                assert_eq!((a2[0], a2[1] != 0), (0, true), "cleared after, and the fexit handler's set");
                assert_eq!(*a1, 0x1234_5678_9abc, "the handler's argument in a1");
                assert_eq!(&ctx[..3], &[10, 11, 0x77], "the return value right after the arguments");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(o.mem.get(&(PERCPU + GUARD_OFF)), Some(&0));
        assert_eq!(o.mem.get(&(PERCPU + GUARD_OFF + 8)), Some(&0));
        // The fentry handler is running already on this CPU: it is not called, its miss is
        // counted on this CPU, and the rest runs as before.
        let preset = BTreeMap::from([(PERCPU + GUARD_OFF, 0xabc), (MISSES + 8 * CPU, 41)]);
        let o = run_with(&spec, ARGS, [0x77, 0x88], 0, &preset);
        let at: Vec<u64> = o.events.iter().map(|e| match e {
            Event::Handler { at, .. } => *at,
            Event::Body { .. } => BODY,
        }).collect();
        assert_eq!(at, vec![BODY, H_FEXIT]);
        assert_eq!(o.mem.get(&(MISSES + 8 * CPU)), Some(&42));
        assert_eq!(o.mem.get(&(PERCPU + GUARD_OFF)), Some(&0xabc), "the running call's word is left alone");
        assert_eq!((o.regs[4], o.regs[5]), (0x77, 0x88));
        check_preserved(&o);
        // An fmod_ret handler that is skipped leaves the return value alone; one that runs sets
        // both copies.
        let fmod = [Handler { addr: H_FMOD, arg: None, guard: g(0) }];
        let spec = TrampSpec { nargs: 1, fentry: &[], fmod_ret: &fmod, fexit: &hs(&[H_FEXIT]), ret_after_args: true };
        let o = run_with(&spec, ARGS, [5, 6], 0x99, &preset);
        assert!(matches!(&o.events[1], Event::Handler { at: H_FEXIT, ret: [5, 6], .. }), "{:?}", o.events);
        assert_eq!(o.mem.get(&(MISSES + 8 * CPU)), Some(&42));
        let o = run(&spec, ARGS, [5, 6], 0x99);
        match &o.events[1] {
            Event::Handler { at: H_FEXIT, ret, ctx, .. } => assert_eq!((ret[0], ctx[1]), (0x99, 0x99)),
            e => panic!("{e:?}"),
        }
        assert_eq!((o.regs[4], o.regs[5]), (0x99, 0));
    }
}
