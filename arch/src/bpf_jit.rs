//! The eBPF JIT for LoongArch64: verified BPF programs (the `bpf` crate's [`Insn`]s) to native
//! code. Pure: it returns the instruction words; placing them in executable memory and calling
//! them is the kernel's job. Host-tested: every form it emits is checked against `llvm-objdump`'s
//! decoding, and programs run on a small LoongArch interpreter in the tests agree with the `bpf`
//! crate's interpreter.
//!
//! # Register mapping
//!
//! | BPF | LoongArch | why |
//! |---|---|---|
//! | `r0` | `a5` | the return value; `a0` is `r1`, so a helper's result is moved here after the call |
//! | `r1`–`r5` | `a0`–`a4` | a helper's arguments sit where the C calling convention wants them: a call needs no moves |
//! | `r6`–`r9` | `s0`–`s3` | callee-saved, so they survive helper calls as BPF requires |
//! | `r10` (frame pointer) | `s4` | callee-saved; the top of the program's stack area |
//! | scratch | `t0`–`t3` | immediates, addresses, the operands of 32-bit compares and divisions |
//!
//! The prologue saves `ra`, `fp` and `s0`–`s4` and reserves the program's stack below them; the
//! epilogue moves `r0` to `a0`. Division and modulo by zero give BPF's results (0, and the
//! dividend) through `maskeqz`/`masknez` rather than a branch; 32-bit operations zero-extend their
//! result with `bstrpick.d`, and 32-bit divisions sign-extend their operands first (LoongArch's
//! `.w` divisions are only defined on sign-extended values). Shifts by a register use the
//! hardware's masking (6 bits for `.d`, 5 for `.w`), which is BPF's.
//!
//! Not compiled yet (the caller runs such a program in the interpreter): atomics, load-acquire and
//! store-release, BPF-to-BPF calls, kfunc calls and `ld_imm64` of a map or other pseudo value.

use crate::insn::{self, Reg};
use alloc::string::String;
use alloc::vec::Vec;
use bpf::insn::{AluOp, AtomicOp, Cond, Endian, Insn, Op, Operand, Size};

/// Why a program was not compiled (it runs in the interpreter instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitError {
    /// The instruction at `pc` is of a kind the JIT does not compile.
    Unsupported { pc: usize, what: &'static str },
    /// The instruction at `pc` is not a valid one, or a jump leaves the program.
    Invalid { pc: usize },
    /// A branch at `pc` cannot reach its target with one instruction.
    TooFar { pc: usize },
    /// The stack the program asks for is larger than BPF's 512 bytes.
    Stack { depth: u32 },
}

impl core::fmt::Display for JitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JitError::Unsupported { pc, what } => write!(f, "insn {pc}: {what} is not compiled"),
            JitError::Invalid { pc } => write!(f, "insn {pc} is not valid"),
            JitError::TooFar { pc } => write!(f, "insn {pc}: branch out of reach"),
            JitError::Stack { depth } => write!(f, "a stack of {depth} bytes (at most 512)"),
        }
    }
}

/// What the JIT needs to know besides the program.
pub struct Options<'a> {
    /// Bytes of stack each function of the program that uses its frame pointer (`r10`) gets
    /// (at most 512, BPF's limit per frame).
    pub stack_depth: u32,
    /// The address of helper `id`, or `None` if the program may not call it.
    pub helper: &'a dyn Fn(u32) -> Option<u64>,
    /// Where the code will run, if known: helpers are then called pc-relatively (`pcaddu18i` +
    /// `jirl`, two words) instead of through a 64-bit constant (five words). The code must then
    /// be placed exactly there.
    pub base: Option<u64>,
    /// For programs run from a generated trampoline (fentry, fexit, fmod_ret): the traced
    /// function's argument count and whether the context holds its return value after the
    /// arguments. The `bpf_get_func_*` helpers are then compiled inline, reading the
    /// trampoline's frame (`arch::bpf_tramp`), as Linux's JIT does.
    pub func: Option<FuncCtx>,
}

/// The traced function as a tracing program's context describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncCtx {
    /// Argument words before the return value (`bpf_get_func_arg_cnt`).
    pub nargs: u32,
    /// Whether `ctx[nargs]` is the return value (fexit, fmod_ret).
    pub has_ret: bool,
}

impl Options<'_> {
    /// Options for a program that calls no helper.
    pub fn plain(stack_depth: u32) -> Options<'static> {
        Options { stack_depth, helper: &|_| None, base: None, func: None }
    }
}

/// A compiled program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The instructions; entry at word 0, called as `u64 f(u64 ctx)`.
    pub words: Vec<u32>,
    /// For each BPF instruction, the index of its first word.
    pub offsets: Vec<usize>,
    /// The native functions, in order (the program, then its BPF-to-BPF callees).
    pub funcs: Vec<NativeFunc>,
}

/// One native function of a program: words `[start, end)`, and the bytes its prologue reserves
/// (0: none, a leaf without a frame; else `addi.d sp, sp, -frame; st.d ra, ..; st.d fp, ..` at
/// `start`, the frame record at the top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeFunc {
    pub start: usize,
    pub end: usize,
    pub frame: u32,
}

/// BPF register `r` in LoongArch.
pub const fn map(r: u8) -> Reg {
    match r {
        0 => Reg::A5,
        1 => Reg::A0,
        2 => Reg::A1,
        3 => Reg::A2,
        4 => Reg::A3,
        5 => Reg::A4,
        6 => Reg::S0,
        7 => Reg::S1,
        8 => Reg::S2,
        9 => Reg::S3,
        _ => Reg::S4,
    }
}

const T0: Reg = Reg::T0;
const T1: Reg = Reg::T1;
const T2: Reg = Reg::T2;
const T3: Reg = Reg::T3;

// Instruction words (base opcodes), named after the LoongArch mnemonics.
const ADD_W: u32 = 0x0010_0000;
const ADD_D: u32 = 0x0010_8000;
const SUB_W: u32 = 0x0011_0000;
const SUB_D: u32 = 0x0011_8000;
const MASKEQZ: u32 = 0x0013_0000;
const MASKNEZ: u32 = 0x0013_8000;
const AND: u32 = 0x0014_8000;
const OR: u32 = 0x0015_0000;
const XOR: u32 = 0x0015_8000;
const SLL_W: u32 = 0x0017_0000;
const SRL_W: u32 = 0x0017_8000;
const SRA_W: u32 = 0x0018_0000;
const SLL_D: u32 = 0x0018_8000;
const SRL_D: u32 = 0x0019_0000;
const SRA_D: u32 = 0x0019_8000;
const MUL_W: u32 = 0x001c_0000;
const MUL_D: u32 = 0x001d_8000;
const DIV_W: u32 = 0x0020_0000;
const MOD_W: u32 = 0x0020_8000;
const DIV_WU: u32 = 0x0021_0000;
const MOD_WU: u32 = 0x0021_8000;
const DIV_D: u32 = 0x0022_0000;
const MOD_D: u32 = 0x0022_8000;
const DIV_DU: u32 = 0x0023_0000;
const MOD_DU: u32 = 0x0023_8000;
const REVB_2H: u32 = 0x0000_3000;
const REVB_2W: u32 = 0x0000_3800;
const REVB_D: u32 = 0x0000_3c00;
const EXT_W_H: u32 = 0x0000_5800;
const EXT_W_B: u32 = 0x0000_5c00;
const SLLI_D: u32 = 0x0041_0000;
const SRLI_D: u32 = 0x0045_0000;
const SRAI_D: u32 = 0x0049_0000;
const SLLI_W: u32 = 0x0040_8000;
const SRLI_W: u32 = 0x0044_8000;
const SRAI_W: u32 = 0x0048_8000;
const BSTRPICK_D: u32 = 0x00c0_0000;
const ADDI_W: u32 = 0x0280_0000;
const ADDI_D: u32 = 0x02c0_0000;
const ANDI: u32 = 0x0340_0000;
const ORI: u32 = 0x0380_0000;
const XORI: u32 = 0x03c0_0000;
const LD_B: u32 = 0x2800_0000;
const LD_H: u32 = 0x2840_0000;
const LD_W: u32 = 0x2880_0000;
const LD_D: u32 = 0x28c0_0000;
const ST_B: u32 = 0x2900_0000;
const ST_H: u32 = 0x2940_0000;
const ST_W: u32 = 0x2980_0000;
const ST_D: u32 = 0x29c0_0000;
const LD_BU: u32 = 0x2a00_0000;
const LD_HU: u32 = 0x2a40_0000;
const LD_WU: u32 = 0x2a80_0000;
const LDX_B: u32 = 0x3800_0000;
const LDX_H: u32 = 0x3804_0000;
const LDX_W: u32 = 0x3808_0000;
const LDX_D: u32 = 0x380c_0000;
const STX_B: u32 = 0x3810_0000;
const STX_H: u32 = 0x3814_0000;
const STX_W: u32 = 0x3818_0000;
const STX_D: u32 = 0x381c_0000;
const LDX_BU: u32 = 0x3820_0000;
const LDX_HU: u32 = 0x3824_0000;
const LDX_WU: u32 = 0x3828_0000;
const BEQZ: u32 = 0x4000_0000;
const BNEZ: u32 = 0x4400_0000;
const BL: u32 = 0x5400_0000;
const LL_W: u32 = 0x2000_0000;
const SC_W: u32 = 0x2100_0000;
const LL_D: u32 = 0x2200_0000;
const SC_D: u32 = 0x2300_0000;
const AMSWAP_DB_W: u32 = 0x3869_0000;
const AMSWAP_DB_D: u32 = 0x3869_8000;
const AMADD_DB_W: u32 = 0x386a_0000;
const AMADD_DB_D: u32 = 0x386a_8000;
const AMAND_DB_W: u32 = 0x386b_0000;
const AMAND_DB_D: u32 = 0x386b_8000;
const AMOR_DB_W: u32 = 0x386c_0000;
const AMOR_DB_D: u32 = 0x386c_8000;
const AMXOR_DB_W: u32 = 0x386d_0000;
const AMXOR_DB_D: u32 = 0x386d_8000;
/// `dbar 0`: a full barrier.
const DBAR: u32 = 0x3872_0000;
const JIRL: u32 = 0x4c00_0000;
const B: u32 = 0x5000_0000;
const BEQ: u32 = 0x5800_0000;
const BNE: u32 = 0x5c00_0000;
const BLT: u32 = 0x6000_0000;
const BGE: u32 = 0x6400_0000;
const BLTU: u32 = 0x6800_0000;
const BGEU: u32 = 0x6c00_0000;

const fn r3(op: u32, rd: Reg, rj: Reg, rk: Reg) -> u32 {
    op | (rk as u32) << 10 | (rj as u32) << 5 | rd as u32
}
const fn r2(op: u32, rd: Reg, rj: Reg) -> u32 {
    op | (rj as u32) << 5 | rd as u32
}
const fn ri12(op: u32, rd: Reg, rj: Reg, imm: i32) -> u32 {
    op | ((imm as u32) & 0xfff) << 10 | (rj as u32) << 5 | rd as u32
}
const fn shift_imm(op: u32, rd: Reg, rj: Reg, amount: u32) -> u32 {
    op | amount << 10 | (rj as u32) << 5 | rd as u32
}
const fn bstrpick_d(rd: Reg, rj: Reg, msb: u32, lsb: u32) -> u32 {
    BSTRPICK_D | msb << 16 | lsb << 10 | (rj as u32) << 5 | rd as u32
}
const fn fits12(v: i64) -> bool {
    v >= -2048 && v < 2048
}

/// Where a branch goes: a BPF instruction, or the current function's epilogue.
#[derive(Clone, Copy)]
enum Target {
    Insn(usize),
    Exit,
}

struct Emitter<'a> {
    words: Vec<u32>,
    /// Known after the first pass: the word index of each BPF instruction, of each function's
    /// entry (its prologue) and of each function's epilogue.
    layout: &'a Layout,
    /// The function being emitted.
    func: usize,
    base: Option<u64>,
    pc: usize,
    /// The first pass: branches put a placeholder word (their targets are not known yet).
    sizing: bool,
}

impl Emitter<'_> {
    fn put(&mut self, w: u32) {
        self.words.push(w);
    }

    /// `rd = value` (a 64-bit constant) in as few words as it takes.
    fn li(&mut self, rd: Reg, value: u64) {
        let v = value as i64;
        if fits12(v) {
            self.put(ri12(ADDI_D, rd, Reg::Zero, v as i32));
        } else if v == v as i32 as i64 {
            // `v` is a sign-extended 32-bit value, so `v >> 12` fits the signed 20-bit field.
            self.put(insn::encode_lu12i_w(rd, v >> 12).unwrap_or(0));
            self.put(ri12(ORI, rd, rd, (v & 0xfff) as i32));
        } else {
            for w in insn::encode_li64(rd, value) {
                self.put(w);
            }
        }
    }

    /// `rd = rj` zero-extended from 32 bits.
    fn zext32(&mut self, rd: Reg, rj: Reg) {
        self.put(bstrpick_d(rd, rj, 31, 0));
    }

    /// The word index a branch to `t` lands on.
    fn target(&self, t: Target) -> usize {
        match t {
            Target::Insn(i) => self.layout.offsets.get(i).copied().unwrap_or(0),
            Target::Exit => self.layout.exits.get(self.func).copied().unwrap_or(0),
        }
    }

    /// A conditional branch `op rj, rd, t` (16-bit offset).
    fn branch(&mut self, op: u32, rj: Reg, rd: Reg, t: Target) -> Result<(), JitError> {
        if self.sizing {
            self.put(0);
            return Ok(());
        }
        let off = self.target(t) as i64 - self.words.len() as i64;
        if !(-(1 << 15)..(1 << 15)).contains(&off) {
            return Err(JitError::TooFar { pc: self.pc });
        }
        self.put(op | ((off as u32) & 0xffff) << 10 | (rj as u32) << 5 | rd as u32);
        Ok(())
    }

    /// `bnez rj, t` (21-bit offset).
    fn bnez(&mut self, rj: Reg, t: Target) -> Result<(), JitError> {
        if self.sizing {
            self.put(0);
            return Ok(());
        }
        let off = self.target(t) as i64 - self.words.len() as i64;
        if !(-(1 << 20)..(1 << 20)).contains(&off) {
            return Err(JitError::TooFar { pc: self.pc });
        }
        let o = (off as u32) & 0x1f_ffff;
        self.put(BNEZ | (o & 0xffff) << 10 | (rj as u32) << 5 | o >> 16);
        Ok(())
    }

    /// `b t` (26-bit offset).
    fn jump(&mut self, t: Target) -> Result<(), JitError> {
        if self.sizing {
            self.put(0);
            return Ok(());
        }
        let off = self.target(t) as i64 - self.words.len() as i64;
        if !(-(1 << 25)..(1 << 25)).contains(&off) {
            return Err(JitError::TooFar { pc: self.pc });
        }
        let o = (off as u32) & 0x3ff_ffff;
        self.put(B | (o & 0xffff) << 10 | o >> 16);
        Ok(())
    }

    /// The source operand in a register: the register itself, or the immediate in `scratch`.
    fn operand(&mut self, src: Operand, scratch: Reg) -> Reg {
        match src {
            Operand::Reg(r) => map(r),
            Operand::Imm(v) => {
                self.li(scratch, v as i64 as u64);
                scratch
            }
        }
    }

    fn alu(&mut self, w64: bool, op: AluOp, dst: u8, src: Operand) {
        let d = map(dst);
        // Immediate forms that need no scratch register.
        if let Operand::Imm(v) = src {
            let v = v as i64;
            let done = match op {
                AluOp::Add if w64 && fits12(v) => Some(ri12(ADDI_D, d, d, v as i32)),
                AluOp::Add if fits12(v) => Some(ri12(ADDI_W, d, d, v as i32)),
                AluOp::And if (0..4096).contains(&v) => Some(ri12(ANDI, d, d, v as i32)),
                AluOp::Or if (0..4096).contains(&v) => Some(ri12(ORI, d, d, v as i32)),
                AluOp::Xor if (0..4096).contains(&v) => Some(ri12(XORI, d, d, v as i32)),
                AluOp::Lsh if w64 => Some(shift_imm(SLLI_D, d, d, (v & 63) as u32)),
                AluOp::Rsh if w64 => Some(shift_imm(SRLI_D, d, d, (v & 63) as u32)),
                AluOp::Arsh if w64 => Some(shift_imm(SRAI_D, d, d, (v & 63) as u32)),
                AluOp::Lsh => Some(shift_imm(SLLI_W, d, d, (v & 31) as u32)),
                AluOp::Rsh => Some(shift_imm(SRLI_W, d, d, (v & 31) as u32)),
                AluOp::Arsh => Some(shift_imm(SRAI_W, d, d, (v & 31) as u32)),
                _ => None,
            };
            if let Some(w) = done {
                self.put(w);
                if !w64 {
                    self.zext32(d, d);
                }
                return;
            }
        }
        match op {
            AluOp::Mov => match src {
                Operand::Reg(r) if w64 => self.put(r3(OR, d, map(r), Reg::Zero)),
                Operand::Reg(r) => self.zext32(d, map(r)),
                Operand::Imm(v) if w64 => self.li(d, v as i64 as u64),
                Operand::Imm(v) => self.li(d, v as u32 as u64),
            },
            AluOp::Movsx(bits) => {
                let s = self.operand(src, T1);
                match bits {
                    8 => self.put(r2(EXT_W_B, d, s)),
                    16 => self.put(r2(EXT_W_H, d, s)),
                    _ => self.put(ri12(ADDI_W, d, s, 0)),
                }
                if !w64 {
                    self.zext32(d, d);
                }
            }
            AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod => self.divide(w64, op, d, src),
            _ => {
                let s = self.operand(src, T1);
                let code = match (op, w64) {
                    (AluOp::Add, true) => ADD_D,
                    (AluOp::Add, false) => ADD_W,
                    (AluOp::Sub, true) => SUB_D,
                    (AluOp::Sub, false) => SUB_W,
                    (AluOp::Mul, true) => MUL_D,
                    (AluOp::Mul, false) => MUL_W,
                    (AluOp::Or, _) => OR,
                    (AluOp::And, _) => AND,
                    (AluOp::Xor, _) => XOR,
                    (AluOp::Lsh, true) => SLL_D,
                    (AluOp::Lsh, false) => SLL_W,
                    (AluOp::Rsh, true) => SRL_D,
                    (AluOp::Rsh, false) => SRL_W,
                    (AluOp::Arsh, true) => SRA_D,
                    _ => SRA_W,
                };
                self.put(r3(code, d, d, s));
                if !w64 {
                    self.zext32(d, d);
                }
            }
        }
    }

    /// Division and modulo with BPF's results for a zero divisor: `x / 0 = 0`, `x % 0 = x`.
    fn divide(&mut self, w64: bool, op: AluOp, d: Reg, src: Operand) {
        let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
        let modulo = matches!(op, AluOp::Mod | AluOp::Smod);
        let code = match (w64, signed, modulo) {
            (true, false, false) => DIV_DU,
            (true, false, true) => MOD_DU,
            (true, true, false) => DIV_D,
            (true, true, true) => MOD_D,
            (false, false, false) => DIV_WU,
            (false, false, true) => MOD_WU,
            (false, true, false) => DIV_W,
            (false, true, true) => MOD_W,
        };
        let s = self.operand(src, T1);
        // The operands: `.w` divisions want sign-extended 32-bit values.
        let (a, b) = if w64 {
            (d, s)
        } else {
            self.put(ri12(ADDI_W, T2, d, 0));
            self.put(ri12(ADDI_W, T3, s, 0));
            (T2, T3)
        };
        self.put(r3(code, T0, a, b));
        if modulo {
            // d = b != 0 ? t0 : d
            self.put(r3(MASKEQZ, T0, T0, b));
            self.put(r3(MASKNEZ, T2, d, b));
            self.put(r3(OR, d, T0, T2));
        } else {
            // d = b != 0 ? t0 : 0
            self.put(r3(MASKEQZ, d, T0, b));
        }
        if !w64 {
            self.zext32(d, d);
        }
    }

    fn end(&mut self, kind: Endian, bits: u8, dst: u8) {
        let d = map(dst);
        match (kind, bits) {
            (Endian::ToLe, 16) => self.put(bstrpick_d(d, d, 15, 0)),
            (Endian::ToLe, 32) => self.put(bstrpick_d(d, d, 31, 0)),
            (Endian::ToLe, _) => {}
            (_, 16) => {
                self.put(r2(REVB_2H, d, d));
                self.put(bstrpick_d(d, d, 15, 0));
            }
            (_, 32) => {
                self.put(r2(REVB_2W, d, d));
                self.put(bstrpick_d(d, d, 31, 0));
            }
            _ => self.put(r2(REVB_D, d, d)),
        }
    }

    fn cond_jump(&mut self, w64: bool, cond: Cond, dst: u8, src: Operand, t: Target) -> Result<(), JitError> {
        let mut a = map(dst);
        let mut b = self.operand(src, T1);
        if !w64 {
            // Compare the low halves: zero-extended for unsigned and equality, sign-extended
            // for signed conditions.
            let signed = matches!(cond, Cond::Sgt | Cond::Sge | Cond::Slt | Cond::Sle);
            if signed {
                self.put(ri12(ADDI_W, T2, a, 0));
                self.put(ri12(ADDI_W, T3, b, 0));
            } else {
                self.zext32(T2, a);
                self.zext32(T3, b);
            }
            (a, b) = (T2, T3);
        }
        match cond {
            Cond::Eq => self.branch(BEQ, a, b, t),
            Cond::Ne => self.branch(BNE, a, b, t),
            Cond::Gt => self.branch(BLTU, b, a, t),
            Cond::Ge => self.branch(BGEU, a, b, t),
            Cond::Lt => self.branch(BLTU, a, b, t),
            Cond::Le => self.branch(BGEU, b, a, t),
            Cond::Sgt => self.branch(BLT, b, a, t),
            Cond::Sge => self.branch(BGE, a, b, t),
            Cond::Slt => self.branch(BLT, a, b, t),
            Cond::Sle => self.branch(BGE, b, a, t),
            Cond::Set => {
                self.put(r3(AND, T0, a, b));
                self.bnez(T0, t)
            }
        }
    }

    /// `op` with a base register and a byte offset that may not fit the 12-bit field.
    fn mem(&mut self, op_imm: u32, op_idx: u32, rd: Reg, base: Reg, off: i16) {
        if fits12(off as i64) {
            self.put(ri12(op_imm, rd, base, off as i32));
        } else {
            self.li(T0, off as i64 as u64);
            self.put(r3(op_idx, rd, base, T0));
        }
    }
}

/// Word indexes the second pass branches to.
#[derive(Default)]
struct Layout {
    /// Of each BPF instruction (the second slot of `ld_imm64` gets the next word's).
    offsets: Vec<usize>,
    /// Of each function's prologue.
    entries: Vec<usize>,
    /// Of each function's epilogue.
    exits: Vec<usize>,
    /// Each function's frame size (0: no frame).
    frames: Vec<u32>,
}

/// One BPF function of the program: the main program, or a subprogram a BPF-to-BPF call enters.
struct Func {
    start: usize,
    end: usize,
    /// Callee-saved registers it uses (`s0`–`s3` for `r6`–`r9`, `s4` for `r10`).
    saved: Vec<Reg>,
    /// Whether it uses its stack (`r10`).
    stack: bool,
    /// Whether it calls anything (helpers, other functions).
    calls: bool,
}

impl Func {
    /// Whether it needs a frame: saved registers, a stack, or a return address to keep.
    fn framed(&self) -> bool {
        self.stack || self.calls || !self.saved.is_empty()
    }
}

/// The program's functions: instruction 0 and every BPF-to-BPF call's target start one, which
/// runs until the next one starts.
fn functions(prog: &[Insn]) -> Result<Vec<Func>, JitError> {
    let mut starts = alloc::vec![0usize];
    for (pc, insn) in prog.iter().enumerate() {
        if let Ok(Op::CallLocal { delta }) = insn.op() {
            let t = pc as i64 + 1 + delta as i64;
            if t <= 0 || t as usize >= prog.len() {
                return Err(JitError::Invalid { pc });
            }
            starts.push(t as usize);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut funcs = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(prog.len());
        let mut used = [false; 11];
        let mut calls = false;
        let mut pc = start;
        while pc < end {
            let insn = &prog[pc];
            used[(insn.dst & 15).min(10) as usize] = true;
            used[(insn.src & 15).min(10) as usize] = true;
            match insn.op() {
                Ok(Op::Call { .. } | Op::CallLocal { .. }) => calls = true,
                Ok(Op::LdImm64 { .. }) => pc += 1,
                _ => {}
            }
            pc += 1;
        }
        let saved = (6..=10).filter(|&r| used[r]).map(|r| map(r as u8)).collect();
        funcs.push(Func { start, end, saved, stack: used[10], calls });
    }
    Ok(funcs)
}

/// Compiles `prog` (as the verifier accepted it).
pub fn compile(prog: &[Insn], opts: &Options) -> Result<Image, JitError> {
    if opts.stack_depth > 512 {
        return Err(JitError::Stack { depth: opts.stack_depth });
    }
    let funcs = functions(prog)?;
    // Two passes: the first learns where each instruction, function and epilogue starts (every
    // instruction takes the same words whatever its branches' distances), the second branches
    // there.
    let (_, layout) = emit(prog, opts, &funcs, &Layout::default(), true)?;
    let (words, layout) = emit(prog, opts, &funcs, &layout, false)?;
    let funcs = (0..layout.entries.len())
        .map(|i| NativeFunc { start: layout.entries[i], end: layout.entries.get(i + 1).copied().unwrap_or(words.len()), frame: layout.frames[i] })
        .collect();
    Ok(Image { words, offsets: layout.offsets, funcs })
}

/// The frame of a function: `[ra, fp, saved registers…]` at the top, the BPF stack below.
struct Frame {
    size: i32,
    depth: i32,
}

fn frame_of(f: &Func, opts: &Options) -> Frame {
    if !f.framed() {
        return Frame { size: 0, depth: 0 };
    }
    let depth = if f.stack { (opts.stack_depth as i32 + 15) & !15 } else { 0 };
    let saves = (16 + 8 * f.saved.len() as i32 + 15) & !15;
    Frame { size: saves + depth, depth }
}

fn emit(prog: &[Insn], opts: &Options, funcs: &[Func], layout: &Layout, sizing: bool) -> Result<(Vec<u32>, Layout), JitError> {
    let mut e = Emitter { words: Vec::with_capacity(prog.len() * 4 + 24), layout, func: 0, base: opts.base, pc: 0, sizing };
    let mut out = Layout { offsets: alloc::vec![0; prog.len()], entries: Vec::new(), exits: Vec::new(), frames: Vec::new() };
    for (fi, f) in funcs.iter().enumerate() {
        e.func = fi;
        let frame = frame_of(f, opts);
        out.entries.push(e.words.len());
        out.frames.push(frame.size as u32);
        // Prologue: a frame record (`ra`, `fp`; `fp` = the caller's `sp`) so that backtraces
        // walk through, the callee-saved registers the function uses, and `r10` at the top of
        // its stack.
        if f.framed() {
            let n = frame.size;
            e.put(ri12(ADDI_D, Reg::Sp, Reg::Sp, -n));
            e.put(ri12(ST_D, Reg::Ra, Reg::Sp, n - 8));
            e.put(ri12(ST_D, Reg::Fp, Reg::Sp, n - 16));
            for (i, r) in f.saved.iter().enumerate() {
                e.put(ri12(ST_D, *r, Reg::Sp, n - 24 - 8 * i as i32));
            }
            e.put(ri12(ADDI_D, Reg::Fp, Reg::Sp, n));
            if f.stack {
                e.put(ri12(ADDI_D, map(10), Reg::Sp, frame.depth));
            }
        }
        let mut pc = f.start;
        while pc < f.end {
            out.offsets[pc] = e.words.len();
            e.pc = pc;
            let insn = &prog[pc];
            let op = insn.op().map_err(|_| JitError::Invalid { pc })?;
            let jump_to = |delta: i64| -> Result<Target, JitError> {
                let t = pc as i64 + 1 + delta;
                if t < f.start as i64 || t as usize >= f.end {
                    return Err(JitError::Invalid { pc });
                }
                Ok(Target::Insn(t as usize))
            };
            match op {
                Op::Alu { w64, op, dst, src } => e.alu(w64, op, dst, src),
                Op::Neg { w64, dst } => {
                    let d = map(dst);
                    e.put(r3(if w64 { SUB_D } else { SUB_W }, d, Reg::Zero, d));
                    if !w64 {
                        e.zext32(d, d);
                    }
                }
                Op::End { kind, bits, dst } => e.end(kind, bits, dst),
                Op::LdImm64 { dst, pseudo: 0 } => {
                    let next = prog.get(pc + 1).filter(|_| pc + 1 < f.end).ok_or(JitError::Invalid { pc })?;
                    // Always the four-word form, so both passes agree whatever the value.
                    for w in insn::encode_li64(map(dst), insn.imm64(next)) {
                        e.put(w);
                    }
                    out.offsets[pc + 1] = e.words.len();
                    pc += 2;
                    continue;
                }
                Op::LdImm64 { .. } => return Err(JitError::Unsupported { pc, what: "ld_imm64 of a pseudo value (the loader resolves maps first)" }),
                Op::Load { size, signed, dst, src, off } => {
                    let (imm, idx) = load_ops(size, signed);
                    e.mem(imm, idx, map(dst), map(src), off);
                }
                Op::Store { size, dst, off, src } => {
                    let (imm, idx) = store_ops(size);
                    let v = e.operand(src, T1);
                    e.mem(imm, idx, v, map(dst), off);
                }
                Op::Atomic { size, op, fetch, dst, src, off } => e.atomic(size, op, fetch, dst, src, off)?,
                Op::LoadAcquire { size, dst, src, off } => {
                    let (imm, idx) = load_ops(size, false);
                    e.mem(imm, idx, map(dst), map(src), off);
                    e.put(DBAR);
                }
                Op::StoreRelease { size, dst, src, off } => {
                    e.put(DBAR);
                    let (imm, idx) = store_ops(size);
                    e.mem(imm, idx, map(src), map(dst), off);
                }
                Op::Jump { w64, cond, dst, src, off } => {
                    let t = jump_to(off as i64)?;
                    e.cond_jump(w64, cond, dst, src, t)?;
                }
                Op::Ja { delta, .. } => {
                    let t = jump_to(delta as i64)?;
                    e.jump(t)?;
                }
                Op::Call { helper } => match (helper, opts.func) {
                    (173 | 183 | 184 | 185, Some(func)) => e.func_helper(helper, func),
                    _ => {
                        let addr = (opts.helper)(helper).ok_or(JitError::Unsupported { pc, what: "a call of an unknown helper" })?;
                        e.call_far(addr)?;
                        e.put(r3(OR, map(0), Reg::A0, Reg::Zero));
                    }
                },
                Op::CallLocal { delta } => {
                    let t = (pc as i64 + 1 + delta as i64) as usize;
                    let callee = funcs.iter().position(|g| g.start == t).ok_or(JitError::Invalid { pc })?;
                    let to = layout.entries.get(callee).copied().unwrap_or(0);
                    let off = to as i64 - e.words.len() as i64;
                    e.put(if sizing { 0 } else { BL | ((off as u32) & 0xffff) << 10 | ((off as u32) >> 16) & 0x3ff });
                    e.put(r3(OR, map(0), Reg::A0, Reg::Zero));
                }
                // The function's last instruction: its epilogue follows.
                Op::Exit if pc + 1 == f.end => {}
                Op::Exit => e.jump(Target::Exit)?,
                Op::CallKfunc { .. } => return Err(JitError::Unsupported { pc, what: "a kfunc call" }),
            }
            pc += 1;
        }
        out.exits.push(e.words.len());
        // Epilogue.
        e.put(r3(OR, Reg::A0, map(0), Reg::Zero));
        if f.framed() {
            let n = frame.size;
            for (i, r) in f.saved.iter().enumerate() {
                e.put(ri12(LD_D, *r, Reg::Sp, n - 24 - 8 * i as i32));
            }
            // `ra` before `fp`: from here on one of them always points into the caller (for a
            // trampoline's caller, what the CPUs' quiescence check looks for), never neither.
            e.put(ri12(LD_D, Reg::Ra, Reg::Sp, n - 8));
            e.put(ri12(LD_D, Reg::Fp, Reg::Sp, n - 16));
            e.put(ri12(ADDI_D, Reg::Sp, Reg::Sp, n));
        }
        e.put(insn::encode_jr(Reg::Ra));
    }
    Ok((e.words, out))
}

fn load_ops(size: Size, signed: bool) -> (u32, u32) {
    match (size, signed) {
        (Size::B, false) => (LD_BU, LDX_BU),
        (Size::H, false) => (LD_HU, LDX_HU),
        (Size::W, false) => (LD_WU, LDX_WU),
        (Size::B, true) => (LD_B, LDX_B),
        (Size::H, true) => (LD_H, LDX_H),
        (Size::W, true) => (LD_W, LDX_W),
        (Size::DW, _) => (LD_D, LDX_D),
    }
}

fn store_ops(size: Size) -> (u32, u32) {
    match size {
        Size::B => (ST_B, STX_B),
        Size::H => (ST_H, STX_H),
        Size::W => (ST_W, STX_W),
        Size::DW => (ST_D, STX_D),
    }
}

impl Emitter<'_> {
    /// A call of the native function at `addr`: `bl` when the code's address is known and the
    /// function within its reach (±128 MiB: every kernel function from the kernel's trampoline
    /// area), else `pcaddu18i` + `jirl` (±128 GiB), else through a 64-bit constant.
    fn call_far(&mut self, addr: u64) -> Result<(), JitError> {
        let pc = self.base.map(|base| base + 4 * self.words.len() as u64);
        if let Some(pc) = pc.filter(|&pc| insn::bl_reachable(pc, addr)) {
            // Both passes place this word at the same address, so it takes one word in both.
            self.put(insn::encode_bl(pc, addr).map_err(|_| JitError::TooFar { pc: self.pc })?);
        } else if let Some(pair) = pc.and_then(|pc| insn::encode_call36(Reg::Ra, T0, pc, addr).ok()) {
            pair.into_iter().for_each(|w| self.put(w));
        } else {
            for w in insn::encode_li64(T0, addr) {
                self.put(w);
            }
            self.put(JIRL | (T0 as u32) << 5 | Reg::Ra as u32);
        }
        Ok(())
    }

    /// `bpf_get_func_ip` (173), `bpf_get_func_arg` (183), `bpf_get_func_ret` (184) and
    /// `bpf_get_func_arg_cnt` (185) inline, on the trampoline's frame (`r1` is the context, as
    /// the verifier requires). Like a helper they set `r0`; they leave `r1`–`r5` alone.
    fn func_helper(&mut self, id: u32, func: FuncCtx) {
        let r0 = map(0);
        match id {
            173 => {
                self.put(ri12(LD_D, r0, Reg::A0, crate::bpf_tramp::CTX_BODY as i32));
                self.put(ri12(ADDI_D, r0, r0, -8));
            }
            183 => {
                // r2 < nargs ? (*r3 = ctx[r2], 0) : -EINVAL
                self.put(ri12(ADDI_D, T0, Reg::Zero, func.nargs as i32));
                self.put(BGEU | 6 << 10 | (Reg::A1 as u32) << 5 | T0 as u32);
                self.put(insn::encode_alsl_d(T1, Reg::A1, Reg::A0, 3).unwrap_or(0));
                self.put(ri12(LD_D, T1, T1, 0));
                self.put(ri12(ST_D, T1, Reg::A2, 0));
                self.put(ri12(ADDI_D, r0, Reg::Zero, 0));
                self.put(B | 2 << 10);
                self.put(ri12(ADDI_D, r0, Reg::Zero, -22));
            }
            184 if func.has_ret => {
                self.put(ri12(LD_D, T1, Reg::A0, 8 * func.nargs as i32));
                self.put(ri12(ST_D, T1, Reg::A1, 0));
                self.put(ri12(ADDI_D, r0, Reg::Zero, 0));
            }
            // fentry: -EOPNOTSUPP
            184 => self.put(ri12(ADDI_D, r0, Reg::Zero, -95)),
            _ => self.put(ri12(ADDI_D, r0, Reg::Zero, func.nargs as i32)),
        }
    }

    /// `BPF_ATOMIC`: the `am*_db` instructions (full barriers) for add, and, or, xor and xchg;
    /// an `ll`/`sc` loop for cmpxchg. 32-bit forms zero-extend what they fetch.
    fn atomic(&mut self, size: Size, op: AtomicOp, fetch: bool, dst: u8, src: u8, off: i16) -> Result<(), JitError> {
        let w64 = match size {
            Size::DW => true,
            Size::W => false,
            _ => return Err(JitError::Invalid { pc: self.pc }),
        };
        // The address in t0.
        if fits12(off as i64) {
            self.put(ri12(ADDI_D, T0, map(dst), off as i32));
        } else {
            self.li(T0, off as i64 as u64);
            self.put(r3(ADD_D, T0, T0, map(dst)));
        }
        let s = map(src);
        if op == AtomicOp::Cmpxchg {
            // t3 = the expected value (r0, its low half zero-extended for 32 bits)
            let r0 = map(0);
            if w64 {
                self.put(r3(OR, T3, r0, Reg::Zero));
            } else {
                self.zext32(T3, r0);
            }
            self.put(DBAR);
            // 1: ll t1, (t0); zext; bne t1, t3, 2f; move t2, src; sc t2, (t0); beqz t2, 1b
            self.put(if w64 { LL_D } else { LL_W } | (T0 as u32) << 5 | T1 as u32);
            if w64 {
                self.put(ri12(ADDI_D, T1, T1, 0));
            } else {
                self.zext32(T1, T1);
            }
            self.put(BNE | 4 << 10 | (T1 as u32) << 5 | T3 as u32);
            self.put(r3(OR, T2, s, Reg::Zero));
            self.put(if w64 { SC_D } else { SC_W } | (T0 as u32) << 5 | T2 as u32);
            let back = (-5i32 as u32) & 0x1f_ffff;
            self.put(BEQZ | (back & 0xffff) << 10 | (T2 as u32) << 5 | back >> 16);
            // 2:
            self.put(DBAR);
            self.put(r3(OR, r0, T1, Reg::Zero));
            return Ok(());
        }
        let code = match (op, w64) {
            (AtomicOp::Add, true) => AMADD_DB_D,
            (AtomicOp::Add, false) => AMADD_DB_W,
            (AtomicOp::And, true) => AMAND_DB_D,
            (AtomicOp::And, false) => AMAND_DB_W,
            (AtomicOp::Or, true) => AMOR_DB_D,
            (AtomicOp::Or, false) => AMOR_DB_W,
            (AtomicOp::Xor, true) => AMXOR_DB_D,
            (AtomicOp::Xor, false) => AMXOR_DB_W,
            (_, true) => AMSWAP_DB_D,
            (_, false) => AMSWAP_DB_W,
        };
        let fetch = fetch || op == AtomicOp::Xchg;
        // am* rd, rk, rj: rd = old *rj; *rj op= rk (rd may not be rj or rk).
        self.put(code | (s as u32) << 10 | (T0 as u32) << 5 | if fetch { T1 as u32 } else { 0 });
        if fetch {
            if w64 {
                self.put(r3(OR, s, T1, Reg::Zero));
            } else {
                self.zext32(s, T1);
            }
        }
        Ok(())
    }
}

/// The text of one word the JIT (or the trampoline generator) emits, as `llvm-objdump` prints it
/// (`addi.d $sp, $sp, -16`; branch offsets in bytes, relative to the word); `.word 0x...` for a
/// word of another kind. For `bpf prog dump jited`.
pub fn disassemble(w: u32) -> alloc::string::String {
    use alloc::format;
    let r = |n: u32| Reg::from_u32(n & 31).map_or("?", Reg::name);
    let (rd, rj, rk) = (r(w), r(w >> 5), r(w >> 10));
    let si = |bits: u32, v: u32| insn::sign_extend((v & ((1 << bits) - 1)) as u64, bits);
    let r3ops: &[(u32, &str)] = &[
        (ADD_W, "add.w"), (ADD_D, "add.d"), (SUB_W, "sub.w"), (SUB_D, "sub.d"), (MASKEQZ, "maskeqz"), (MASKNEZ, "masknez"),
        (AND, "and"), (OR, "or"), (XOR, "xor"), (SLL_W, "sll.w"), (SRL_W, "srl.w"), (SRA_W, "sra.w"), (SLL_D, "sll.d"),
        (SRL_D, "srl.d"), (SRA_D, "sra.d"), (MUL_W, "mul.w"), (MUL_D, "mul.d"), (DIV_W, "div.w"), (MOD_W, "mod.w"),
        (DIV_WU, "div.wu"), (MOD_WU, "mod.wu"), (DIV_D, "div.d"), (MOD_D, "mod.d"), (DIV_DU, "div.du"), (MOD_DU, "mod.du"),
        (LDX_B, "ldx.b"), (LDX_H, "ldx.h"), (LDX_W, "ldx.w"), (LDX_D, "ldx.d"), (STX_B, "stx.b"), (STX_H, "stx.h"),
        (STX_W, "stx.w"), (STX_D, "stx.d"), (LDX_BU, "ldx.bu"), (LDX_HU, "ldx.hu"), (LDX_WU, "ldx.wu"),
    ];
    let amops: &[(u32, &str)] = &[
        (AMSWAP_DB_W, "amswap_db.w"), (AMSWAP_DB_D, "amswap_db.d"), (AMADD_DB_W, "amadd_db.w"), (AMADD_DB_D, "amadd_db.d"),
        (AMAND_DB_W, "amand_db.w"), (AMAND_DB_D, "amand_db.d"), (AMOR_DB_W, "amor_db.w"), (AMOR_DB_D, "amor_db.d"),
        (AMXOR_DB_W, "amxor_db.w"), (AMXOR_DB_D, "amxor_db.d"),
    ];
    if w == insn::encode_move(Reg::from_u32(w & 31).unwrap_or(Reg::Zero), Reg::from_u32(w >> 5 & 31).unwrap_or(Reg::Zero)) && w & 0xffff_fc00 == OR {
        return format!("move ${rd}, ${rj}");
    }
    if let Some((_, m)) = r3ops.iter().find(|(op, _)| w & 0xffff_8000 == *op) {
        return format!("{m} ${rd}, ${rj}, ${rk}");
    }
    if let Some((_, m)) = amops.iter().find(|(op, _)| w & 0xffff_8000 == *op) {
        return format!("{m} ${rd}, ${rk}, ${rj}");
    }
    if w & 0xffff_8000 == DBAR {
        return format!("dbar {}", w & 0x7fff);
    }
    if w & 0xfffe_0000 == 0x002c_0000 {
        return format!("alsl.d ${rd}, ${rj}, ${rk}, {}", (w >> 15 & 3) + 1);
    }
    for (op, m) in [(REVB_2H, "revb.2h"), (REVB_2W, "revb.2w"), (REVB_D, "revb.d"), (EXT_W_H, "ext.w.h"), (EXT_W_B, "ext.w.b")] {
        if w & 0xffff_fc00 == op {
            return format!("{m} ${rd}, ${rj}");
        }
    }
    for (op, m) in [(SLLI_W, "slli.w"), (SRLI_W, "srli.w"), (SRAI_W, "srai.w")] {
        if w & 0xffff_8000 == op {
            return format!("{m} ${rd}, ${rj}, {}", w >> 10 & 31);
        }
    }
    for (op, m) in [(SLLI_D, "slli.d"), (SRLI_D, "srli.d"), (SRAI_D, "srai.d")] {
        if w & 0xffff_0000 == op {
            return format!("{m} ${rd}, ${rj}, {}", w >> 10 & 63);
        }
    }
    if w & 0xffc0_0000 == BSTRPICK_D {
        return format!("bstrpick.d ${rd}, ${rj}, {}, {}", w >> 16 & 63, w >> 10 & 63);
    }
    let i12: &[(u32, &str, bool)] = &[
        (ADDI_W, "addi.w", true), (ADDI_D, "addi.d", true), (ANDI, "andi", false), (ORI, "ori", false), (XORI, "xori", false),
        (LD_B, "ld.b", true), (LD_H, "ld.h", true), (LD_W, "ld.w", true), (LD_D, "ld.d", true), (ST_B, "st.b", true),
        (ST_H, "st.h", true), (ST_W, "st.w", true), (ST_D, "st.d", true), (LD_BU, "ld.bu", true), (LD_HU, "ld.hu", true),
        (LD_WU, "ld.wu", true), (0x0300_0000, "lu52i.d", true),
    ];
    if let Some((_, m, signed)) = i12.iter().find(|(op, _, _)| w & 0xffc0_0000 == *op) {
        let imm = if *signed { si(12, w >> 10) } else { (w >> 10 & 0xfff) as i64 };
        return format!("{m} ${rd}, ${rj}, {imm}");
    }
    for (op, m) in [(LL_W, "ll.w"), (SC_W, "sc.w"), (LL_D, "ll.d"), (SC_D, "sc.d")] {
        if w & 0xff00_0000 == op {
            return format!("{m} ${rd}, ${rj}, {}", si(14, w >> 10) * 4);
        }
    }
    for (op, m) in [(0x1400_0000u32, "lu12i.w"), (0x1600_0000, "lu32i.d"), (0x1e00_0000, "pcaddu18i"), (0x1c00_0000, "pcaddu12i")] {
        if w & 0xfe00_0000 == op {
            return format!("{m} ${rd}, {}", si(20, w >> 5));
        }
    }
    let off16 = si(16, w >> 10) * 4;
    let off21 = si(21, (w >> 10 & 0xffff) | (w & 31) << 16) * 4;
    let off26 = si(26, (w >> 10 & 0xffff) | (w & 0x3ff) << 16) * 4;
    match w & 0xfc00_0000 {
        BEQZ => format!("beqz ${rj}, {off21}"),
        BNEZ => format!("bnez ${rj}, {off21}"),
        B => format!("b {off26}"),
        BL => format!("bl {off26}"),
        JIRL if w & 31 == 0 && off16 == 0 && (w >> 5 & 31) == Reg::Ra as u32 => String::from("ret"),
        JIRL if w & 31 == 0 && off16 == 0 => format!("jr ${rj}"),
        JIRL => format!("jirl ${rd}, ${rj}, {off16}"),
        BEQ => format!("beq ${rj}, ${rd}, {off16}"),
        BNE => format!("bne ${rj}, ${rd}, {off16}"),
        BLT => format!("blt ${rj}, ${rd}, {off16}"),
        BGE => format!("bge ${rj}, ${rd}, {off16}"),
        BLTU => format!("bltu ${rj}, ${rd}, {off16}"),
        BGEU => format!("bgeu ${rj}, ${rd}, {off16}"),
        _ => format!(".word {w:#010x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::insn::*;
    use std::collections::BTreeMap;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    const CODE: u64 = 0x9000_0000_0100_0000;
    const RET: u64 = 0x9000_0000_0dea_d000;
    const STACK_TOP: u64 = 0x9000_0000_0800_0000;
    const HELPERS: u64 = 0x9000_0000_0300_0000;

    fn sx32(v: u64) -> u64 {
        v as u32 as i32 as i64 as u64
    }
    fn is_sx32(v: u64) -> bool {
        sx32(v) == v
    }

    /// A LoongArch64 interpreter of what the JIT emits (and nothing else: any other word
    /// fails the test). A division by zero gives a junk value, and a `.w` division of an
    /// operand that is not a sign-extended 32-bit value fails, as the architecture leaves both
    /// undefined.
    struct Machine {
        r: [u64; 32],
        mem: BTreeMap<u64, u8>,
        calls: Vec<(u32, [u64; 5])>,
        ret_to: u64,
    }

    impl Machine {
        fn load(&self, a: u64, n: usize) -> u64 {
            assert!(a >= STACK_TOP - 0x10000 && a + n as u64 <= STACK_TOP, "load outside the stack: {a:#x}");
            (0..n).fold(0u64, |v, i| v | (*self.mem.get(&(a + i as u64)).unwrap_or(&0xa5) as u64) << (8 * i))
        }
        fn store(&mut self, a: u64, n: usize, v: u64) {
            assert!(a >= STACK_TOP - 0x10000 && a + n as u64 <= STACK_TOP, "store outside the stack: {a:#x}");
            for i in 0..n {
                self.mem.insert(a + i as u64, (v >> (8 * i)) as u8);
            }
        }

        fn run(&mut self, code: &[u32], args: [u64; 5]) -> u64 {
            self.r[1] = RET;
            self.r[3] = STACK_TOP;
            self.r[4..9].copy_from_slice(&args);
            // Callee-saved registers the program must give back.
            for i in 22..32 {
                self.r[i] = 0x5a5a_0000 + i as u64;
            }
            let saved: Vec<u64> = (22..32).map(|i| self.r[i]).collect();
            let mut pc = CODE;
            for _ in 0..100_000 {
                if pc == RET {
                    assert_eq!(self.r[3], STACK_TOP, "sp given back");
                    assert_eq!((22..32).map(|i| self.r[i]).collect::<Vec<_>>(), saved, "callee-saved registers given back");
                    return self.r[4];
                }
                if (HELPERS..HELPERS + 0x1000).contains(&pc) {
                    let id = ((pc - HELPERS) / 16) as u32;
                    let a: [u64; 5] = core::array::from_fn(|i| self.r[4 + i]);
                    self.calls.push((id, a));
                    self.r[4] = a[0].wrapping_mul(3) ^ a[1] ^ a[4].rotate_left(7) ^ id as u64;
                    for i in (5..=20).chain([1]) {
                        self.r[i] = 0xc1ab_0000 + i as u64;
                    }
                    pc = self.ret_to;
                    continue;
                }
                let i = ((pc - CODE) / 4) as usize;
                let w = *code.get(i).unwrap_or_else(|| panic!("pc {pc:#x} outside the code"));
                pc = self.step(pc, w);
            }
            panic!("runaway");
        }

        fn step(&mut self, pc: u64, w: u32) -> u64 {
            let rd = (w & 31) as usize;
            let rj = (w >> 5 & 31) as usize;
            let rk = (w >> 10 & 31) as usize;
            let (j, k, d) = (self.r[rj], self.r[rk], self.r[rd]);
            let si12 = insn::sign_extend((w >> 10 & 0xfff) as u64, 12) as u64;
            let ui12 = (w >> 10 & 0xfff) as u64;
            let junk = 0x0bad_0bad_0bad_0badu64;
            let set = |m: &mut Machine, v: u64| {
                if rd != 0 {
                    m.r[rd] = v;
                }
            };
            let off16 = |w: u32| pc.wrapping_add((insn::sign_extend((w >> 10 & 0xffff) as u64, 16) << 2) as u64);
            let w32div = |j: u64, k: u64| {
                assert!(is_sx32(j) && is_sx32(k), "a .w division of {j:#x}, {k:#x}: not sign-extended");
            };
            if w & 0xfe00_0000 == 0x2000_0000 || w & 0xfe00_0000 == 0x2200_0000 {
                // ll.w/sc.w, ll.d/sc.d with si14 = 0 (a single CPU: sc always succeeds)
                assert_eq!(w >> 10 & 0x3fff, 0, "ll/sc offset");
                let n = if w & 0xfe00_0000 == 0x2000_0000 { 4 } else { 8 };
                if w & 0x0100_0000 == 0 {
                    let v = self.load(j, n);
                    set(self, if n == 4 { sx32(v) } else { v });
                } else {
                    self.store(j, n, d);
                    set(self, 1);
                }
                return pc + 4;
            }
            if w & 0xfffe_0000 == 0x002c_0000 {
                let sa = (w >> 15 & 3) + 1;
                set(self, (j << sa).wrapping_add(k));
                return pc + 4;
            }
            match w & 0xffff_8000 {
                DBAR => {}
                AMSWAP_DB_W | AMSWAP_DB_D | AMADD_DB_W | AMADD_DB_D | AMAND_DB_W | AMAND_DB_D | AMOR_DB_W | AMOR_DB_D | AMXOR_DB_W | AMXOR_DB_D => {
                    assert!(rd == 0 || (rd != rj && rd != rk), "am* with rd = rj or rk is undefined");
                    let op = w & 0xffff_8000;
                    let n = if op & 0x8000 != 0 { 8 } else { 4 };
                    let old = self.load(j, n);
                    let new = match op & !0x8000 {
                        AMSWAP_DB_W => k,
                        AMADD_DB_W => old.wrapping_add(k),
                        AMAND_DB_W => old & k,
                        AMOR_DB_W => old | k,
                        _ => old ^ k,
                    };
                    self.store(j, n, new);
                    set(self, if n == 4 { sx32(old) } else { old });
                }
                ADD_W => set(self, sx32(j.wrapping_add(k))),
                ADD_D => set(self, j.wrapping_add(k)),
                SUB_W => set(self, sx32(j.wrapping_sub(k))),
                SUB_D => set(self, j.wrapping_sub(k)),
                MASKEQZ => set(self, if k == 0 { 0 } else { j }),
                MASKNEZ => set(self, if k != 0 { 0 } else { j }),
                AND => set(self, j & k),
                OR => set(self, j | k),
                XOR => set(self, j ^ k),
                SLL_W => set(self, sx32(((j as u32) << (k & 31)) as u64)),
                SRL_W => set(self, sx32(((j as u32) >> (k & 31)) as u64)),
                SRA_W => set(self, ((j as i32) >> (k & 31)) as i64 as u64),
                SLL_D => set(self, j << (k & 63)),
                SRL_D => set(self, j >> (k & 63)),
                SRA_D => set(self, ((j as i64) >> (k & 63)) as u64),
                MUL_W => set(self, sx32((j as u32).wrapping_mul(k as u32) as u64)),
                MUL_D => set(self, j.wrapping_mul(k)),
                DIV_W | MOD_W | DIV_WU | MOD_WU => {
                    w32div(j, k);
                    let v = if k as u32 == 0 {
                        junk
                    } else {
                        match w & 0xffff_8000 {
                            DIV_W => sx32((j as i32).wrapping_div(k as i32) as u32 as u64),
                            MOD_W => sx32((j as i32).wrapping_rem(k as i32) as u32 as u64),
                            DIV_WU => sx32(((j as u32) / (k as u32)) as u64),
                            _ => sx32(((j as u32) % (k as u32)) as u64),
                        }
                    };
                    set(self, v)
                }
                DIV_D => set(self, if k == 0 { junk } else { (j as i64).wrapping_div(k as i64) as u64 }),
                MOD_D => set(self, if k == 0 { junk } else { (j as i64).wrapping_rem(k as i64) as u64 }),
                DIV_DU => set(self, if k == 0 { junk } else { j / k }),
                MOD_DU => set(self, if k == 0 { junk } else { j % k }),
                SLLI_W => set(self, sx32(((j as u32) << (rk as u32)) as u64)),
                SRLI_W => set(self, sx32(((j as u32) >> (rk as u32)) as u64)),
                SRAI_W => set(self, ((j as i32) >> rk) as i64 as u64),
                LDX_B | LDX_H | LDX_W | LDX_D | LDX_BU | LDX_HU | LDX_WU => {
                    let a = j.wrapping_add(k);
                    let v = match w & 0xffff_8000 {
                        LDX_B => self.load(a, 1) as i8 as i64 as u64,
                        LDX_H => self.load(a, 2) as i16 as i64 as u64,
                        LDX_W => self.load(a, 4) as i32 as i64 as u64,
                        LDX_D => self.load(a, 8),
                        LDX_BU => self.load(a, 1),
                        LDX_HU => self.load(a, 2),
                        _ => self.load(a, 4),
                    };
                    set(self, v)
                }
                STX_B => self.store(j.wrapping_add(k), 1, d),
                STX_H => self.store(j.wrapping_add(k), 2, d),
                STX_W => self.store(j.wrapping_add(k), 4, d),
                STX_D => self.store(j.wrapping_add(k), 8, d),
                _ => match w & 0xffff_0000 {
                    SLLI_D => set(self, j << (w >> 10 & 63)),
                    SRLI_D => set(self, j >> (w >> 10 & 63)),
                    SRAI_D => set(self, ((j as i64) >> (w >> 10 & 63)) as u64),
                    _ => match w & 0xffff_fc00 {
                        REVB_2H => {
                            let lo = j as u32;
                            let v = ((lo & 0x00ff_00ff) << 8) | ((lo >> 8) & 0x00ff_00ff);
                            set(self, sx32(v as u64))
                        }
                        REVB_2W => {
                            let (lo, hi) = ((j as u32).swap_bytes() as u64, ((j >> 32) as u32).swap_bytes() as u64);
                            set(self, lo | hi << 32)
                        }
                        REVB_D => set(self, j.swap_bytes()),
                        EXT_W_B => set(self, j as i8 as i64 as u64),
                        EXT_W_H => set(self, j as i16 as i64 as u64),
                        _ => match w & 0xffc0_0000 {
                            BSTRPICK_D => {
                                let (msb, lsb) = (w >> 16 & 63, w >> 10 & 63);
                                let width = msb - lsb + 1;
                                let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
                                set(self, (j >> lsb) & mask)
                            }
                            ADDI_W => set(self, sx32(j.wrapping_add(si12))),
                            ADDI_D => set(self, j.wrapping_add(si12)),
                            ANDI => set(self, j & ui12),
                            ORI => set(self, j | ui12),
                            XORI => set(self, j ^ ui12),
                            0x0300_0000 => set(self, (j & 0x000f_ffff_ffff_ffff) | ui12 << 52),
                            LD_B => { let v = self.load(j.wrapping_add(si12), 1) as i8 as i64 as u64; set(self, v) },
                            LD_H => { let v = self.load(j.wrapping_add(si12), 2) as i16 as i64 as u64; set(self, v) },
                            LD_W => { let v = self.load(j.wrapping_add(si12), 4) as i32 as i64 as u64; set(self, v) },
                            LD_D => { let v = self.load(j.wrapping_add(si12), 8); set(self, v) },
                            LD_BU => { let v = self.load(j.wrapping_add(si12), 1); set(self, v) },
                            LD_HU => { let v = self.load(j.wrapping_add(si12), 2); set(self, v) },
                            LD_WU => { let v = self.load(j.wrapping_add(si12), 4); set(self, v) },
                            ST_B => self.store(j.wrapping_add(si12), 1, d),
                            ST_H => self.store(j.wrapping_add(si12), 2, d),
                            ST_W => self.store(j.wrapping_add(si12), 4, d),
                            ST_D => self.store(j.wrapping_add(si12), 8, d),
                            _ => match w & 0xfe00_0000 {
                                0x1400_0000 => set(self, (insn::sign_extend((w >> 5 & 0xf_ffff) as u64, 20) << 12) as u64),
                                0x1e00_0000 => set(self, pc.wrapping_add((insn::sign_extend((w >> 5 & 0xf_ffff) as u64, 20) << 18) as u64)),
                                0x1600_0000 => set(self, (d & 0xffff_ffff) | (insn::sign_extend((w >> 5 & 0xf_ffff) as u64, 20) as u64) << 32),
                                _ => match w & 0xfc00_0000 {
                                    BEQ => return if j == d { off16(w) } else { pc + 4 },
                                    BNE => return if j != d { off16(w) } else { pc + 4 },
                                    BLT => return if (j as i64) < (d as i64) { off16(w) } else { pc + 4 },
                                    BGE => return if (j as i64) >= (d as i64) { off16(w) } else { pc + 4 },
                                    BLTU => return if j < d { off16(w) } else { pc + 4 },
                                    BGEU => return if j >= d { off16(w) } else { pc + 4 },
                                    BEQZ => {
                                        let o = (w >> 10 & 0xffff) | (w & 31) << 16;
                                        return if j == 0 { pc.wrapping_add((insn::sign_extend(o as u64, 21) << 2) as u64) } else { pc + 4 };
                                    }
                                    BL => {
                                        let o = (w >> 10 & 0xffff) | (w & 0x3ff) << 16;
                                        self.r[1] = pc + 4;
                                        let to = pc.wrapping_add((insn::sign_extend(o as u64, 26) << 2) as u64);
                                        if (HELPERS..HELPERS + 0x1000).contains(&to) {
                                            self.ret_to = pc + 4;
                                        }
                                        return to;
                                    }
                                    BNEZ => {
                                        let o = (w >> 10 & 0xffff) | (w & 31) << 16;
                                        return if j != 0 { pc.wrapping_add((insn::sign_extend(o as u64, 21) << 2) as u64) } else { pc + 4 };
                                    }
                                    B => {
                                        let o = (w >> 10 & 0xffff) | (w & 0x3ff) << 16;
                                        return pc.wrapping_add((insn::sign_extend(o as u64, 26) << 2) as u64);
                                    }
                                    JIRL => {
                                        let to = j.wrapping_add((insn::sign_extend((w >> 10 & 0xffff) as u64, 16) << 2) as u64);
                                        set(self, pc + 4);
                                        if (HELPERS..HELPERS + 0x1000).contains(&to) {
                                            self.ret_to = pc + 4;
                                        }
                                        return to;
                                    }
                                    _ => panic!("unexpected word {w:#010x} at {pc:#x}"),
                                },
                            },
                        },
                    },
                },
            }
            pc + 4
        }
    }

    fn machine() -> Machine {
        Machine { r: [0; 32], mem: BTreeMap::new(), calls: Vec::new(), ret_to: 0 }
    }

    fn helper_addr(id: u32) -> Option<u64> {
        (id < 200).then(|| HELPERS + 16 * id as u64)
    }

    fn jit(prog: &[Insn], depth: u32) -> Vec<u32> {
        compile(prog, &Options { stack_depth: depth, helper: &helper_addr, base: None, func: None }).unwrap_or_else(|e| panic!("{e}: {prog:?}")).words
    }

    /// r0 of `prog` run by the JIT (on the machine) and by the interpreter.
    fn both(prog: &[Insn], depth: u32) -> (u64, u64) {
        let words = jit(prog, depth);
        let native = machine().run(&words, [0x1111, 0x2222, 0x3333, 0x4444, 0x5555]);
        let mut env = bpf::interp::SimpleEnv::new();
        let interp = bpf::interp::run(prog, &mut env, 0x1111).unwrap_or_else(|e| panic!("interpreter: {e:?}: {prog:?}"));
        (native, interp)
    }

    fn ld64(dst: u8, v: u64) -> [Insn; 2] {
        [Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, v as u32 as i32), Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32)]
    }
    fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }

    const VALUES: [u64; 16] = [
        0,
        1,
        2,
        7,
        63,
        64,
        0xfff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
        u64::MAX - 6,
        0x1234_5678_9abc_def0,
        0xffff_ffff_8000_0001,
    ];
    const IMMS: [i32; 12] = [0, 1, -1, 5, -7, 31, 63, 2047, 2048, -2049, i32::MIN, i32::MAX];

    #[test]
    fn alu_agrees_with_the_interpreter() {
        let ops: [(u8, i16); 15] = [
            (BPF_ADD, 0),
            (BPF_SUB, 0),
            (BPF_MUL, 0),
            (BPF_DIV, 0),
            (BPF_DIV, 1),
            (BPF_OR, 0),
            (BPF_AND, 0),
            (BPF_LSH, 0),
            (BPF_RSH, 0),
            (BPF_MOD, 0),
            (BPF_MOD, 1),
            (BPF_XOR, 0),
            (BPF_MOV, 0),
            (BPF_ARSH, 0),
            (BPF_MOV, 8),
        ];
        let mut n = 0;
        for class in [BPF_ALU64, BPF_ALU] {
            for &(op, off) in ops.iter().chain(&[(BPF_MOV, 16), (BPF_MOV, 32)]) {
                if class == BPF_ALU && op == BPF_MOV && off == 32 {
                    continue;
                }
                for &a in &VALUES {
                    for &b in &VALUES {
                        let mut p: Vec<Insn> = ld64(0, a).into();
                        p.extend(ld64(2, b));
                        p.push(Insn::new(class | op | BPF_X, 0, 2, off, 0));
                        p.push(exit());
                        let (x, y) = both(&p, 0);
                        assert_eq!(x, y, "{:?} {a:#x} {b:#x}", p[4]);
                        n += 1;
                    }
                    if off > 1 {
                        continue;
                    }
                    for &imm in &IMMS {
                        let mut p: Vec<Insn> = ld64(0, a).into();
                        p.push(Insn::new(class | op | BPF_K, 0, 0, off, imm));
                        p.push(exit());
                        let (x, y) = both(&p, 0);
                        assert_eq!(x, y, "{:?} {a:#x}", p[2]);
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 10_000, "{n} cases");
    }

    #[test]
    fn neg_and_byte_order_agree() {
        for &a in &VALUES {
            for (code, imm) in [
                (BPF_ALU64 | BPF_NEG, 0),
                (BPF_ALU | BPF_NEG, 0),
                (BPF_ALU | BPF_END | BPF_TO_LE, 16),
                (BPF_ALU | BPF_END | BPF_TO_LE, 32),
                (BPF_ALU | BPF_END | BPF_TO_LE, 64),
                (BPF_ALU | BPF_END | BPF_TO_BE, 16),
                (BPF_ALU | BPF_END | BPF_TO_BE, 32),
                (BPF_ALU | BPF_END | BPF_TO_BE, 64),
                (BPF_ALU64 | BPF_END | BPF_TO_LE, 16),
                (BPF_ALU64 | BPF_END | BPF_TO_LE, 32),
                (BPF_ALU64 | BPF_END | BPF_TO_LE, 64),
            ] {
                let mut p: Vec<Insn> = ld64(0, a).into();
                p.push(Insn::new(code, 0, 0, 0, imm));
                p.push(exit());
                let (x, y) = both(&p, 0);
                assert_eq!(x, y, "{:?} {a:#x}", p[2]);
            }
        }
    }

    #[test]
    fn jumps_agree() {
        let conds = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE, BPF_JSET];
        for class in [BPF_JMP, BPF_JMP32] {
            for c in conds {
                for &a in &VALUES {
                    let run = |jump: Insn, b: u64| {
                        let mut p = vec![Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)];
                        p.extend(ld64(1, a));
                        p.extend(ld64(2, b));
                        p.push(jump);
                        p.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1));
                        p.push(exit());
                        let (x, y) = both(&p, 0);
                        assert_eq!(x, y, "{jump:?} {a:#x} {b:#x}");
                    };
                    for &b in &VALUES {
                        run(Insn::new(class | c | BPF_X, 1, 2, 1, 0), b);
                    }
                    for &imm in &IMMS {
                        run(Insn::new(class | c | BPF_K, 1, 0, 1, imm), 0);
                    }
                }
            }
        }
        // Backward jumps and `ja`: a loop summing 10 + 9 + ... + 1.
        let p = [
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0),
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, 10),
            Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 0, 0),
            Insn::new(BPF_ALU64 | BPF_SUB | BPF_K, 1, 0, 0, 1),
            Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1, 0),
            Insn::new(BPF_JMP | BPF_JA, 0, 0, -4, 0),
            exit(),
        ];
        assert_eq!(both(&p, 0), (55, 55));
    }

    #[test]
    fn memory_through_the_stack_agrees() {
        let sizes = [BPF_B, BPF_H, BPF_W, BPF_DW];
        for &v in &VALUES {
            for (i, &sz) in sizes.iter().enumerate() {
                for off in [-8i16, -16, -504] {
                    for (mode, signed) in [(BPF_MEM, false), (BPF_MEMSX, true)] {
                        if signed && sz == BPF_DW {
                            continue;
                        }
                        let mut p: Vec<Insn> = ld64(1, v).into();
                        // A full word of junk first, so a narrow load shows what it leaves.
                        p.extend(ld64(3, 0x0102_0304_0506_0708));
                        p.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, 3, off, 0));
                        p.push(Insn::new(BPF_STX | BPF_MEM | sz, 10, 1, off, 0));
                        p.push(Insn::new(BPF_LDX | mode | sz, 0, 10, off, 0));
                        p.push(exit());
                        let (x, y) = both(&p, 512);
                        assert_eq!(x, y, "size {i} off {off} {v:#x} signed {signed}");
                    }
                    // A store of an immediate.
                    let p = [Insn::new(BPF_ST | BPF_MEM | sz, 10, 0, off, v as i32), Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 0, 10, -8, 0), exit()];
                    if off == -8 {
                        let (x, y) = both(&[Insn::new(BPF_ST | BPF_MEM | BPF_DW, 10, 0, -8, 0), p[0], p[1], p[2]], 512);
                        assert_eq!(x, y, "st size {i} {v:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn helper_calls_pass_arguments_and_keep_callee_saved_registers() {
        let mut p = Vec::new();
        for (r, v) in [(1u8, 11u64), (2, 22), (3, 33), (4, 44), (5, 55), (6, 66), (9, 99)] {
            p.extend(ld64(r, v));
        }
        p.push(Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, 7));
        p.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 6, 0, 0));
        p.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 9, 0, 0));
        p.push(exit());
        let words = jit(&p, 0);
        let mut m = machine();
        let r0 = m.run(&words, [0; 5]);
        assert_eq!(m.calls, vec![(7, [11, 22, 33, 44, 55])]);
        let helper = 11u64.wrapping_mul(3) ^ 22 ^ 55u64.rotate_left(7) ^ 7;
        assert_eq!(r0, helper + 66 + 99);
        // A helper the program may not call: not compiled.
        let bad = [Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, 999), exit()];
        assert_eq!(compile(&bad, &Options { stack_depth: 0, helper: &helper_addr, base: None, func: None }), Err(JitError::Unsupported { pc: 0, what: "a call of an unknown helper" }));
    }

    #[test]
    fn what_is_not_compiled_says_so() {
        let o = Options { stack_depth: 0, helper: &helper_addr, base: None, func: None };
        let kfunc = [Insn::new(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 7), exit()];
        assert!(matches!(compile(&kfunc, &o), Err(JitError::Unsupported { pc: 0, .. })));
        let map = [Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, 1, 0, 3), Insn::new(0, 0, 0, 0, 0), exit()];
        assert!(matches!(compile(&map, &o), Err(JitError::Unsupported { pc: 0, .. })));
        let out = [Insn::new(BPF_JMP | BPF_JA, 0, 0, 5, 0), exit()];
        assert_eq!(compile(&out, &o), Err(JitError::Invalid { pc: 0 }));
        assert_eq!(compile(&[exit()], &Options { stack_depth: 513, helper: &helper_addr, base: None, func: None }), Err(JitError::Stack { depth: 513 }));
    }

    #[test]
    fn atomics_agree() {
        let ops = [BPF_ADD as i32, BPF_OR as i32, BPF_AND as i32, BPF_XOR as i32];
        let mut n = 0;
        for size in [Size::W, Size::DW] {
            let mut kinds: Vec<i32> = ops.iter().flat_map(|&o| [o, o | BPF_FETCH]).collect();
            kinds.extend([BPF_XCHG, BPF_CMPXCHG]);
            for kind in kinds {
                for (old, operand) in [(0x1234_5678_9abc_def0u64, 0x0f0f_0f0f_ffff_0001u64), (0xffff_ffff_8000_0000, 0x7fff_ffff)] {
                    for expect_equal in [false, true] {
                        // *(r10 - 8) = old; r2 = operand; r0 = expected; atomic; r0 = r0 ^ r2*3 ^ *(r10-8)*7
                        let expected = if expect_equal { old } else { old ^ 0x10 };
                        let mut p = vec![];
                        p.extend(ld64(1, old));
                        p.push(Insn::stx_mem(Size::DW, 10, 1, -8));
                        p.extend(ld64(2, operand));
                        p.extend(ld64(0, expected | 0xdead_0000_0000_0000 * (size == Size::W) as u64));
                        p.push(Insn::atomic_op(size, kind, 10, 2, -8));
                        p.push(Insn::ldx_mem(Size::DW, 3, 10, -8));
                        p.push(Insn::alu64_imm(BPF_MUL, 2, 3));
                        p.push(Insn::alu64_imm(BPF_MUL, 3, 7));
                        p.push(Insn::alu64_reg(BPF_XOR, 0, 2));
                        p.push(Insn::alu64_reg(BPF_XOR, 0, 3));
                        p.push(exit());
                        let (native, interp) = both(&p, 16);
                        assert_eq!(native, interp, "size {size:?} op {kind:#x} old {old:#x} operand {operand:#x} equal {expect_equal}");
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 2 * 10 * 2 * 2);
    }

    #[test]
    fn bpf_to_bpf_calls_agree() {
        // main: r6 = 5; r1 = 7; call f; r0 += r6; r0 += *(r10-8); exit
        // f:    r6 = 100; *(r10-8) = r1; r1 += 1; call g; r0 += *(r10-8); r0 += r6; exit
        // g:    r0 = r1; r0 *= 3; exit   (frameless: no stack, no calls, no r6-r10)
        let p = vec![
            Insn::mov64_imm(6, 5),
            Insn::st_mem(Size::DW, 10, -8, 1000),
            Insn::mov64_imm(1, 7),
            Insn::call_rel(4),
            Insn::alu64_reg(BPF_ADD, 0, 6),
            Insn::ldx_mem(Size::DW, 2, 10, -8),
            Insn::alu64_reg(BPF_ADD, 0, 2),
            exit(),
            // f (8)
            Insn::mov64_imm(6, 100),
            Insn::stx_mem(Size::DW, 10, 1, -8),
            Insn::alu64_imm(BPF_ADD, 1, 1),
            Insn::call_rel(4),
            Insn::ldx_mem(Size::DW, 2, 10, -8),
            Insn::alu64_reg(BPF_ADD, 0, 2),
            Insn::alu64_reg(BPF_ADD, 0, 6),
            exit(),
            // g (16)
            Insn::mov64_reg(0, 1),
            Insn::alu64_imm(BPF_MUL, 0, 3),
            exit(),
        ];
        let (native, interp) = both(&p, 16);
        assert_eq!(native, interp);
        assert_eq!(native, 8 * 3 + 7 + 100 + 5 + 1000);
        // A call out of the program, or into the middle of ld_imm64, is refused.
        let bad = [Insn::call_rel(5), exit()];
        assert_eq!(compile(&bad, &Options::plain(0)), Err(JitError::Invalid { pc: 0 }));
    }

    #[test]
    fn an_empty_leaf_program_has_no_frame() {
        let words = jit(&[Insn::mov64_imm(0, 0), exit()], 0);
        assert_eq!(words, vec![ri12(ADDI_D, Reg::A5, Reg::Zero, 0), r3(OR, Reg::A0, Reg::A5, Reg::Zero), insn::encode_jr(Reg::Ra)]);
        // One that calls a helper saves ra and fp (a frame record) but no unused register.
        let words = jit(&[Insn::call_helper(5), exit()], 0);
        assert_eq!(words.len(), 4 + 5 + 1 + 1 + 4);
        assert_eq!(machine().run(&words, [1, 2, 3, 4, 5]), 3 ^ 2 ^ 5u64.rotate_left(7) ^ 5);
    }

    #[test]
    fn func_helpers_read_the_trampoline_frame() {
        // The trampoline's frame: two arguments, the return value after them, the body address.
        const CTX: u64 = STACK_TOP - 0x1000;
        let func = FuncCtx { nargs: 2, has_ret: true };
        let run = |p: &[Insn], func: FuncCtx| {
            let words = compile(p, &Options { stack_depth: 16, helper: &helper_addr, base: None, func: Some(func) }).unwrap().words;
            let mut m = machine();
            m.store(CTX, 8, 0x1111);
            m.store(CTX + 8, 8, 0x2222);
            m.store(CTX + 16, 8, 0x3333);
            m.store(CTX + crate::bpf_tramp::CTX_BODY as u64, 8, 0x9000_0000_0020_1008);
            let r0 = m.run(&words, [CTX, 0, 0, 0, 0]);
            assert!(m.calls.is_empty(), "inline, no call");
            r0
        };
        let one = |id: u32, n: i32| {
            vec![
                Insn::mov64_reg(6, 1),
                Insn::st_mem(Size::DW, 10, -8, 0),
                Insn::mov64_imm(2, n),
                Insn::mov64_reg(3, 10),
                Insn::alu64_imm(BPF_ADD, 3, -8),
                Insn::mov64_reg(2 + (id == 184) as u8 * 0, 2),
                Insn::call_helper(id),
                Insn::ldx_mem(Size::DW, 1, 10, -8),
                Insn::alu64_imm(BPF_LSH, 0, 32),
                Insn::alu64_reg(BPF_OR, 0, 1),
                exit(),
            ]
        };
        assert_eq!(run(&one(185, 0), func), 2 << 32);
        assert_eq!(run(&one(183, 1), func), 0x2222, "the argument, and 0");
        assert_eq!(run(&one(183, 2), func), (-22i64 as u64) << 32, "-EINVAL past the arguments");
        assert_eq!(run(&one(173, 0), func), 0x9000_0000_0020_1000 << 32);
        // bpf_get_func_ret(ctx, &value): r2 is the pointer
        let ret = vec![
            Insn::st_mem(Size::DW, 10, -8, 0),
            Insn::mov64_reg(2, 10),
            Insn::alu64_imm(BPF_ADD, 2, -8),
            Insn::call_helper(184),
            Insn::ldx_mem(Size::DW, 1, 10, -8),
            Insn::alu64_imm(BPF_LSH, 0, 32),
            Insn::alu64_reg(BPF_OR, 0, 1),
            exit(),
        ];
        assert_eq!(run(&ret, func), 0x3333);
        assert_eq!(run(&ret, FuncCtx { nargs: 2, has_ret: false }), (-95i64 as u64) << 32, "fentry: -EOPNOTSUPP");
    }

    #[test]
    fn helpers_are_called_pc_relatively_when_the_address_is_known() {
        let p = [Insn::mov64_imm(1, 11), Insn::call_helper(7), exit()];
        let at = |base| compile(&p, &Options { stack_depth: 0, helper: &helper_addr, base: Some(base), func: None }).unwrap().words;
        let words = at(CODE);
        assert_eq!(words.len(), jit(&p, 0).len() - 4, "bl instead of five words");
        assert!(insn::is_bl(words[5]), "{:#x}", words[5]);
        let mut m = machine();
        assert_eq!(m.run(&words, [0; 5]), 33 ^ 7);
        assert_eq!(m.calls, vec![(7, [11, 0, 0, 0, 0])]);
        // Out of bl reach (1 GiB away): pcaddu18i + jirl; out of that (a different window): the
        // 64-bit constant.
        assert_eq!(at(CODE + (1 << 30)).len(), jit(&p, 0).len() - 3);
        assert_eq!(at(0x1000_0000_0000_0000).len(), jit(&p, 0).len());
    }

    /// `llvm-objdump` of the Rust toolchain's `llvm-tools` (which `make setup` installs).
    fn objdump_tools() -> (std::path::PathBuf, std::path::PathBuf) {
        let out = std::process::Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc runs");
        let sysroot = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let dir = std::fs::read_dir(sysroot.join("lib/rustlib"))
            .expect("the sysroot's rustlib")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("llvm-objdump").is_file())
            .expect("llvm-objdump of the llvm-tools component (make setup installs it)");
        (dir.join("llvm-objcopy"), dir.join("llvm-objdump"))
    }

    /// The disassembly of `words`, one line per word.
    fn disassemble_with_objdump(words: &[u32]) -> Vec<String> {
        let (objcopy, objdump) = objdump_tools();
        let dir = std::env::temp_dir().join(format!("ltjit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("w.bin");
        let obj = dir.join("w.o");
        std::fs::write(&bin, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let st = std::process::Command::new(&objcopy)
            .args(["-I", "binary", "-O", "elf64-loongarch", "--rename-section", ".data=.text,code"])
            .arg(&bin)
            .arg(&obj)
            .status()
            .unwrap();
        assert!(st.success());
        let out = std::process::Command::new(&objdump).args(["-d", "--no-show-raw-insn", "--no-leading-addr"]).arg(&obj).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('\t') || l.starts_with(' '))
            .map(|l| l.split(" <").next().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn every_form_matches_llvm_objdump() {
        use Reg::*;
        let cases: Vec<(u32, &str)> = vec![
            (r3(ADD_W, A5, A0, T1), "add.w $a5, $a0, $t1"),
            (r3(ADD_D, A5, A0, T1), "add.d $a5, $a0, $t1"),
            (r3(SUB_W, A5, Zero, A5), "sub.w $a5, $zero, $a5"),
            (r3(SUB_D, S0, S1, S2), "sub.d $s0, $s1, $s2"),
            (r3(MASKEQZ, T0, T0, T3), "maskeqz $t0, $t0, $t3"),
            (r3(MASKNEZ, T2, A5, T3), "masknez $t2, $a5, $t3"),
            (r3(AND, T0, A0, A1), "and $t0, $a0, $a1"),
            (r3(OR, A0, A5, T1), "or $a0, $a5, $t1"),
            (r3(XOR, A0, A5, T1), "xor $a0, $a5, $t1"),
            (r3(SLL_W, A5, A5, A1), "sll.w $a5, $a5, $a1"),
            (r3(SRL_W, A5, A5, A1), "srl.w $a5, $a5, $a1"),
            (r3(SRA_W, A5, A5, A1), "sra.w $a5, $a5, $a1"),
            (r3(SLL_D, A5, A5, A1), "sll.d $a5, $a5, $a1"),
            (r3(SRL_D, A5, A5, A1), "srl.d $a5, $a5, $a1"),
            (r3(SRA_D, A5, A5, A1), "sra.d $a5, $a5, $a1"),
            (r3(MUL_W, A5, A5, A1), "mul.w $a5, $a5, $a1"),
            (r3(MUL_D, A5, A5, A1), "mul.d $a5, $a5, $a1"),
            (r3(DIV_W, T0, T2, T3), "div.w $t0, $t2, $t3"),
            (r3(MOD_W, T0, T2, T3), "mod.w $t0, $t2, $t3"),
            (r3(DIV_WU, T0, T2, T3), "div.wu $t0, $t2, $t3"),
            (r3(MOD_WU, T0, T2, T3), "mod.wu $t0, $t2, $t3"),
            (r3(DIV_D, T0, A5, A1), "div.d $t0, $a5, $a1"),
            (r3(MOD_D, T0, A5, A1), "mod.d $t0, $a5, $a1"),
            (r3(DIV_DU, T0, A5, A1), "div.du $t0, $a5, $a1"),
            (r3(MOD_DU, T0, A5, A1), "mod.du $t0, $a5, $a1"),
            (r2(REVB_2H, A5, A5), "revb.2h $a5, $a5"),
            (r2(REVB_2W, A5, A5), "revb.2w $a5, $a5"),
            (r2(REVB_D, A5, A5), "revb.d $a5, $a5"),
            (r2(EXT_W_H, A5, A1), "ext.w.h $a5, $a1"),
            (r2(EXT_W_B, A5, A1), "ext.w.b $a5, $a1"),
            (shift_imm(SLLI_D, A5, A5, 63), "slli.d $a5, $a5, 63"),
            (shift_imm(SRLI_D, A5, A5, 32), "srli.d $a5, $a5, 32"),
            (shift_imm(SRAI_D, A5, A5, 1), "srai.d $a5, $a5, 1"),
            (shift_imm(SLLI_W, A5, A5, 31), "slli.w $a5, $a5, 31"),
            (shift_imm(SRLI_W, A5, A5, 5), "srli.w $a5, $a5, 5"),
            (shift_imm(SRAI_W, A5, A5, 7), "srai.w $a5, $a5, 7"),
            (bstrpick_d(A5, A1, 31, 0), "bstrpick.d $a5, $a1, 31, 0"),
            (bstrpick_d(A5, A5, 15, 0), "bstrpick.d $a5, $a5, 15, 0"),
            (ri12(ADDI_W, T2, A5, 0), "addi.w $t2, $a5, 0"),
            (ri12(ADDI_D, Sp, Sp, -576), "addi.d $sp, $sp, -576"),
            (ri12(ANDI, A5, A5, 4095), "andi $a5, $a5, 4095"),
            (ri12(ORI, A5, A5, 1), "ori $a5, $a5, 1"),
            (ri12(XORI, A5, A5, 2048), "xori $a5, $a5, 2048"),
            (ri12(LD_B, A5, S4, -1), "ld.b $a5, $s4, -1"),
            (ri12(LD_H, A5, S4, -2), "ld.h $a5, $s4, -2"),
            (ri12(LD_W, A5, S4, -4), "ld.w $a5, $s4, -4"),
            (ri12(LD_D, A5, S4, -8), "ld.d $a5, $s4, -8"),
            (ri12(LD_BU, A5, S4, 2047), "ld.bu $a5, $s4, 2047"),
            (ri12(LD_HU, A5, S4, -2048), "ld.hu $a5, $s4, -2048"),
            (ri12(LD_WU, A5, S4, 8), "ld.wu $a5, $s4, 8"),
            (ri12(ST_B, A1, S4, -1), "st.b $a1, $s4, -1"),
            (ri12(ST_H, A1, S4, -2), "st.h $a1, $s4, -2"),
            (ri12(ST_W, A1, S4, -4), "st.w $a1, $s4, -4"),
            (ri12(ST_D, Ra, Sp, 568), "st.d $ra, $sp, 568"),
            (r3(LDX_B, A5, A0, T0), "ldx.b $a5, $a0, $t0"),
            (r3(LDX_H, A5, A0, T0), "ldx.h $a5, $a0, $t0"),
            (r3(LDX_W, A5, A0, T0), "ldx.w $a5, $a0, $t0"),
            (r3(LDX_D, A5, A0, T0), "ldx.d $a5, $a0, $t0"),
            (r3(LDX_BU, A5, A0, T0), "ldx.bu $a5, $a0, $t0"),
            (r3(LDX_HU, A5, A0, T0), "ldx.hu $a5, $a0, $t0"),
            (r3(LDX_WU, A5, A0, T0), "ldx.wu $a5, $a0, $t0"),
            (r3(STX_B, A1, A0, T0), "stx.b $a1, $a0, $t0"),
            (r3(STX_H, A1, A0, T0), "stx.h $a1, $a0, $t0"),
            (r3(STX_W, A1, A0, T0), "stx.w $a1, $a0, $t0"),
            (r3(STX_D, A1, A0, T0), "stx.d $a1, $a0, $t0"),
            (BEQ | 4 << 10 | (A0 as u32) << 5 | A1 as u32, "beq $a0, $a1, 16"),
            (BNE | 0xffff << 10 | (A0 as u32) << 5 | A1 as u32, "bne $a0, $a1, -4"),
            (BLT | 2 << 10 | (A1 as u32) << 5 | A0 as u32, "blt $a1, $a0, 8"),
            (BGE | 2 << 10 | (T2 as u32) << 5 | T3 as u32, "bge $t2, $t3, 8"),
            (BLTU | 2 << 10 | (A1 as u32) << 5 | A0 as u32, "bltu $a1, $a0, 8"),
            (BGEU | 2 << 10 | (A1 as u32) << 5 | A0 as u32, "bgeu $a1, $a0, 8"),
            (BNEZ | 3 << 10 | (T0 as u32) << 5, "bnez $t0, 12"),
            (B | 5 << 10, "b 20"),
            (JIRL | (T0 as u32) << 5 | Ra as u32, "jirl $ra, $t0, 0"),
            (BEQZ | ((-5i32 as u32) & 0xffff) << 10 | (T2 as u32) << 5 | 0x1f, "beqz $t2, -20"),
            (BL | 3 << 10, "bl 12"),
            (LL_D | (T0 as u32) << 5 | T1 as u32, "ll.d $t1, $t0, 0"),
            (LL_W | (T0 as u32) << 5 | T1 as u32, "ll.w $t1, $t0, 0"),
            (SC_D | (T0 as u32) << 5 | T2 as u32, "sc.d $t2, $t0, 0"),
            (SC_W | (T0 as u32) << 5 | T2 as u32, "sc.w $t2, $t0, 0"),
            (DBAR, "dbar 0"),
            (AMSWAP_DB_W | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amswap_db.w $t1, $a1, $t0"),
            (AMSWAP_DB_D | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amswap_db.d $t1, $a1, $t0"),
            (AMADD_DB_W | (A1 as u32) << 10 | (T0 as u32) << 5, "amadd_db.w $zero, $a1, $t0"),
            (AMADD_DB_D | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amadd_db.d $t1, $a1, $t0"),
            (AMAND_DB_W | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amand_db.w $t1, $a1, $t0"),
            (AMAND_DB_D | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amand_db.d $t1, $a1, $t0"),
            (AMOR_DB_W | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amor_db.w $t1, $a1, $t0"),
            (AMOR_DB_D | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amor_db.d $t1, $a1, $t0"),
            (AMXOR_DB_W | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amxor_db.w $t1, $a1, $t0"),
            (AMXOR_DB_D | (A1 as u32) << 10 | (T0 as u32) << 5 | T1 as u32, "amxor_db.d $t1, $a1, $t0"),
            (insn::encode_alsl_d(T1, A1, A0, 3).unwrap(), "alsl.d $t1, $a1, $a0, 3"),
            (insn::encode_amadd_db_d(Zero, T1, T2), "amadd_db.d $zero, $t1, $t2"),
            (insn::encode_call36(Ra, T0, 0x1000, 0x4_1000).unwrap()[0], "pcaddu18i $t0, 1"),
            (r3(OR, A0, A5, Zero), "move $a0, $a5"),
            (insn::encode_jr(Ra), "ret"),
            (insn::encode_jr(T1), "jr $t1"),
            (insn::encode_li64(T0, 0x9000_0000_1234_5678)[0], "lu12i.w $t0, 74565"),
            (insn::encode_li64(T0, 0x9000_0000_1234_5678)[2], "lu32i.d $t0, 0"),
            (insn::encode_li64(T0, 0x9000_0000_1234_5678)[3], "lu52i.d $t0, $t0, -1792"),
        ];
        let words: Vec<u32> = cases.iter().map(|c| c.0).collect();
        let got = disassemble_with_objdump(&words);
        assert_eq!(got.len(), cases.len(), "{got:#?}");
        for (g, (w, want)) in got.iter().zip(&cases) {
            assert_eq!(g, want, "word {w:#010x}");
            assert_eq!(&disassemble(*w), want, "our disassembly of {w:#010x}");
        }
        // And a whole program: every word decodes (none is `<unknown>`).
        let p: Vec<Insn> = [ld64(0, 0x1234_5678_9abc_def0).to_vec(), vec![Insn::new(BPF_ALU | BPF_MOD | BPF_X, 0, 1, 1, 0), exit()]].concat();
        let words = jit(&p, 16);
        let got = disassemble_with_objdump(&words);
        for (l, w) in got.iter().zip(&words) {
            assert!(!l.contains("unknown") && !l.contains(".word"), "{l}");
            assert_eq!(&disassemble(*w), l, "{w:#010x}");
        }
    }
}
