//! LoongArch64 instruction encoders and decoders used by the dynamic ftrace patcher.
//!
//! Every LoongArch instruction is one 32-bit little-endian word. This module only knows the handful
//! of instructions the tracer writes into (or has to recognise in) a function's patchable entry:
//! `nop`, `move`, `b`, `bl`, `jirl`/`jr`, `ibar` and `break`. Everything here is pure arithmetic
//! on `u32`/`u64` values (no memory access, no allocation, no panics), so it can be unit tested on
//! the host and used from any context in the kernel.
//!
//! Encoders that take a branch distance return [`InsnError`] instead of producing a bogus word when
//! the distance cannot be encoded; they never fall back to emitting a `break`.

use core::fmt;

/// Size in bytes of every LoongArch instruction.
pub const INSN_SIZE: usize = 4;
/// `nop`, i.e. `andi $zero, $zero, 0`.
pub const NOP: u32 = 0x0340_0000;
/// `ibar 0`: instruction barrier, makes stores to code visible to instruction fetch on this hart.
pub const IBAR0: u32 = 0x3872_8000;
/// `break 0`.
pub const BREAK0: u32 = 0x002A_0000;
/// `ret`, i.e. `jirl $zero, $ra, 0`.
pub const RET: u32 = 0x4C00_0020;

/// Base word of `b offs26` (major opcode `0x14` in bits 31..26).
pub const B_BASE: u32 = 0x5000_0000;
/// Base word of `bl offs26` (major opcode `0x15` in bits 31..26).
pub const BL_BASE: u32 = 0x5400_0000;
/// Base word of `jirl rd, rj, offs16` (major opcode `0x13` in bits 31..26).
pub const JIRL_BASE: u32 = 0x4C00_0000;
/// Base word of `or rd, rj, rk` (bits 31..15 = `0x2A`).
pub const OR_BASE: u32 = 0x0015_0000;

/// Reach of `b`/`bl` in bytes: the byte offset must lie in `[-B_REACH, B_REACH)`.
pub const B_REACH: u64 = 0x0800_0000;
/// Reach of `jirl` in bytes: the byte offset must lie in `[-JIRL_REACH, JIRL_REACH)`.
pub const JIRL_REACH: u64 = 0x2_0000;

const OP6_MASK: u32 = 0xFC00_0000;
/// Mask of the 17 opcode bits 31..15 shared by `or`, `break` and `ibar`.
const OP17_MASK: u32 = 0xFFFF_8000;
const BREAK_BASE: u32 = BREAK0;
const IBAR_BASE: u32 = IBAR0;

/// A LoongArch general-purpose register, numbered as in the ISA (`$r0`..`$r31`).
///
/// Variant names follow the standard ABI names (`$zero`, `$ra`, `$tp`, `$sp`, `$a0`..`$a7`,
/// `$t0`..`$t8`, `$r21`, `$fp`, `$s0`..`$s8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Reg {
    Zero = 0,
    Ra = 1,
    Tp = 2,
    Sp = 3,
    A0 = 4,
    A1 = 5,
    A2 = 6,
    A3 = 7,
    A4 = 8,
    A5 = 9,
    A6 = 10,
    A7 = 11,
    T0 = 12,
    T1 = 13,
    T2 = 14,
    T3 = 15,
    T4 = 16,
    T5 = 17,
    T6 = 18,
    T7 = 19,
    T8 = 20,
    R21 = 21,
    Fp = 22,
    S0 = 23,
    S1 = 24,
    S2 = 25,
    S3 = 26,
    S4 = 27,
    S5 = 28,
    S6 = 29,
    S7 = 30,
    S8 = 31,
}

/// All registers indexed by their number.
const REGS: [Reg; 32] = [
    Reg::Zero,
    Reg::Ra,
    Reg::Tp,
    Reg::Sp,
    Reg::A0,
    Reg::A1,
    Reg::A2,
    Reg::A3,
    Reg::A4,
    Reg::A5,
    Reg::A6,
    Reg::A7,
    Reg::T0,
    Reg::T1,
    Reg::T2,
    Reg::T3,
    Reg::T4,
    Reg::T5,
    Reg::T6,
    Reg::T7,
    Reg::T8,
    Reg::R21,
    Reg::Fp,
    Reg::S0,
    Reg::S1,
    Reg::S2,
    Reg::S3,
    Reg::S4,
    Reg::S5,
    Reg::S6,
    Reg::S7,
    Reg::S8,
];

const REG_NAMES: [&str; 32] = [
    "zero", "ra", "tp", "sp", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "t0", "t1", "t2",
    "t3", "t4", "t5", "t6", "t7", "t8", "r21", "fp", "s0", "s1", "s2", "s3", "s4", "s5", "s6",
    "s7", "s8",
];

impl Reg {
    /// The register with ISA number `n`, or `None` if `n > 31`.
    pub const fn from_u32(n: u32) -> Option<Reg> {
        if n < 32 { Some(REGS[n as usize]) } else { None }
    }

    /// Register from a 5-bit instruction field (only the low 5 bits of `field` are used).
    #[inline]
    pub const fn from_field(field: u32) -> Reg {
        REGS[(field & 0x1F) as usize]
    }

    /// The register number (0..=31).
    #[inline]
    pub const fn num(self) -> u32 {
        self as u32
    }

    /// ABI name without the `$` sigil: `"zero"`, `"ra"`, `"t0"`, `"r21"`, `"fp"`, `"s0"`, ...
    pub const fn name(self) -> &'static str {
        REG_NAMES[self as usize]
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a branch could not be encoded.
///
/// For [`encode_jirl`], which has no program counter, `pc` is `0` and `target` is the requested
/// byte offset reinterpreted as `u64` (`offset as u64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnError {
    /// `pc` or `target` (or, for `jirl`, the offset) is not a multiple of 4.
    Misaligned {
        /// Address of the branch instruction (0 for `jirl`).
        pc: u64,
        /// Requested destination (the raw offset for `jirl`).
        target: u64,
    },
    /// The distance does not fit: the byte offset must lie in `[-max, max)`.
    OutOfRange {
        /// Address of the branch instruction (0 for `jirl`).
        pc: u64,
        /// Requested destination (the raw offset for `jirl`).
        target: u64,
        /// Reach of the instruction in bytes ([`B_REACH`] or [`JIRL_REACH`]).
        max: u64,
    },
}

impl fmt::Display for InsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InsnError::Misaligned { pc, target } => write!(
                f,
                "misaligned branch: pc {pc:#x} -> target {target:#x} (both must be 4-byte aligned)"
            ),
            InsnError::OutOfRange { pc, target, max } => {
                let dist = target.wrapping_sub(pc) as i64;
                let (sign, mag) = if dist < 0 {
                    ("-", dist.unsigned_abs())
                } else {
                    ("+", dist as u64)
                };
                write!(
                    f,
                    "branch out of range: pc {pc:#x} -> target {target:#x} is {sign}{mag:#x} bytes, \
                     reach is -{max:#x}..+{max:#x}"
                )
            }
        }
    }
}

/// Sign-extend the low `bits` bits of `value` (1 <= bits <= 64).
#[inline]
pub const fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

/// Checks a `b`/`bl` distance and returns the 26-bit word offset (`byte_offset >> 2`, masked).
fn b_offs26(pc: u64, target: u64) -> Result<u32, InsnError> {
    if (pc | target) & 3 != 0 {
        return Err(InsnError::Misaligned { pc, target });
    }
    let off = target.wrapping_sub(pc) as i64;
    if off < -(B_REACH as i64) || off >= B_REACH as i64 {
        return Err(InsnError::OutOfRange {
            pc,
            target,
            max: B_REACH,
        });
    }
    Ok(((off >> 2) as u32) & 0x03FF_FFFF)
}

#[inline]
const fn pack_offs26(base: u32, offs26: u32) -> u32 {
    base | ((offs26 & 0xFFFF) << 10) | ((offs26 >> 16) & 0x3FF)
}

/// Byte offset encoded in a `b`/`bl` word (sign-extended, already multiplied by 4).
#[inline]
pub const fn offs26_of(word: u32) -> i64 {
    let lo16 = (word >> 10) & 0xFFFF;
    let hi10 = word & 0x3FF;
    sign_extend((((hi10 << 16) | lo16) as u64) << 2, 28)
}

/// Byte offset encoded in a `jirl` word (sign-extended, already multiplied by 4).
#[inline]
pub const fn offs16_of(word: u32) -> i64 {
    sign_extend((((word >> 10) & 0xFFFF) as u64) << 2, 18)
}

/// `move rd, rj`, encoded as `or rd, rj, $zero`.
#[inline]
pub const fn encode_move(rd: Reg, rj: Reg) -> u32 {
    OR_BASE | ((rj as u32) << 5) | rd as u32
}

/// `b target` placed at address `pc`.
///
/// Fails if `pc` or `target` is not 4-byte aligned or the distance is outside
/// `[-128 MiB, 128 MiB)`. Addresses wrap modulo 2^64, so any pair of kernel addresses works.
pub fn encode_b(pc: u64, target: u64) -> Result<u32, InsnError> {
    b_offs26(pc, target).map(|o| pack_offs26(B_BASE, o))
}

/// `bl target` placed at address `pc` (same rules as [`encode_b`]).
pub fn encode_bl(pc: u64, target: u64) -> Result<u32, InsnError> {
    b_offs26(pc, target).map(|o| pack_offs26(BL_BASE, o))
}

/// `jirl rd, rj, byte_offset`: jump to `rj + byte_offset`, writing the return address to `rd`.
///
/// `byte_offset` must be a multiple of 4 in `[-128 KiB, 128 KiB)`. On error the returned
/// [`InsnError`] has `pc = 0` and `target = byte_offset as u64`.
pub fn encode_jirl(rd: Reg, rj: Reg, byte_offset: i64) -> Result<u32, InsnError> {
    let raw = byte_offset as u64;
    if byte_offset & 3 != 0 {
        return Err(InsnError::Misaligned { pc: 0, target: raw });
    }
    if byte_offset < -(JIRL_REACH as i64) || byte_offset >= JIRL_REACH as i64 {
        return Err(InsnError::OutOfRange {
            pc: 0,
            target: raw,
            max: JIRL_REACH,
        });
    }
    let offs16 = ((byte_offset >> 2) as u32) & 0xFFFF;
    Ok(JIRL_BASE | (offs16 << 10) | ((rj as u32) << 5) | rd as u32)
}

/// `jr rj`, i.e. `jirl $zero, rj, 0`.
#[inline]
pub const fn encode_jr(rj: Reg) -> u32 {
    JIRL_BASE | ((rj as u32) << 5)
}

/// Why an immediate operand could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImmError {
    /// The value asked for.
    pub value: i64,
    /// Its width in bits (signed unless the instruction says otherwise).
    pub bits: u32,
}

impl fmt::Display for ImmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "immediate {} does not fit in {} bits", self.value, self.bits)
    }
}

/// Checks that `v` fits in a signed `bits`-bit field and returns its low `bits` bits.
fn simm(v: i64, bits: u32) -> Result<u32, ImmError> {
    let lim = 1i64 << (bits - 1);
    if v < -lim || v >= lim {
        return Err(ImmError { value: v, bits });
    }
    Ok((v as u32) & ((1u32 << bits) - 1))
}

/// Base word of `addi.d rd, rj, si12`.
pub const ADDI_D_BASE: u32 = 0x02C0_0000;
/// Base word of `ld.d rd, rj, si12`.
pub const LD_D_BASE: u32 = 0x28C0_0000;
/// Base word of `st.d rd, rj, si12`.
pub const ST_D_BASE: u32 = 0x29C0_0000;
/// Base word of `ori rd, rj, ui12`.
pub const ORI_BASE: u32 = 0x0380_0000;
/// Base word of `lu12i.w rd, si20`.
pub const LU12I_W_BASE: u32 = 0x1400_0000;
/// Base word of `lu32i.d rd, si20`.
pub const LU32I_D_BASE: u32 = 0x1600_0000;
/// Base word of `lu52i.d rd, rj, si12`.
pub const LU52I_D_BASE: u32 = 0x0300_0000;
/// Base word of `pcaddu18i rd, si20`.
pub const PCADDU18I_BASE: u32 = 0x1E00_0000;
/// Base word of `beqz rj, offs21`.
pub const BEQZ_BASE: u32 = 0x4000_0000;
/// Base word of `bnez rj, offs21`.
pub const BNEZ_BASE: u32 = 0x4400_0000;
/// Reach of `beqz`/`bnez` in bytes: the byte offset must lie in `[-BZ_REACH, BZ_REACH)`.
pub const BZ_REACH: u64 = 0x40_0000;
/// Reach of `pcaddu18i` + `jirl` in bytes (`R_LARCH_CALL36`): `[-CALL36_REACH, CALL36_REACH)`.
pub const CALL36_REACH: u64 = 0x20_0000_0000;

#[inline]
const fn rri12(base: u32, rd: Reg, rj: Reg, imm12: u32) -> u32 {
    base | ((imm12 & 0xFFF) << 10) | ((rj as u32) << 5) | rd as u32
}

#[inline]
const fn ri20(base: u32, rd: Reg, imm20: u32) -> u32 {
    base | ((imm20 & 0xF_FFFF) << 5) | rd as u32
}

/// `addi.d rd, rj, si12` (`si12` in `[-2048, 2047]`).
pub fn encode_addi_d(rd: Reg, rj: Reg, si12: i64) -> Result<u32, ImmError> {
    Ok(rri12(ADDI_D_BASE, rd, rj, simm(si12, 12)?))
}

/// `ld.d rd, rj, si12`: load the 64-bit word at `rj + si12`.
pub fn encode_ld_d(rd: Reg, rj: Reg, si12: i64) -> Result<u32, ImmError> {
    Ok(rri12(LD_D_BASE, rd, rj, simm(si12, 12)?))
}

/// `st.d rd, rj, si12`: store `rd` to the 64-bit word at `rj + si12`.
pub fn encode_st_d(rd: Reg, rj: Reg, si12: i64) -> Result<u32, ImmError> {
    Ok(rri12(ST_D_BASE, rd, rj, simm(si12, 12)?))
}

/// `ori rd, rj, ui12` (`ui12` in `[0, 4095]`).
pub fn encode_ori(rd: Reg, rj: Reg, ui12: u64) -> Result<u32, ImmError> {
    if ui12 > 0xFFF {
        return Err(ImmError { value: ui12 as i64, bits: 12 });
    }
    Ok(rri12(ORI_BASE, rd, rj, ui12 as u32))
}

/// `lu12i.w rd, si20`: `rd = sign_extend(si20 << 12)` (bits 31..12, sign-extended to 64).
pub fn encode_lu12i_w(rd: Reg, si20: i64) -> Result<u32, ImmError> {
    Ok(ri20(LU12I_W_BASE, rd, simm(si20, 20)?))
}

/// `lu32i.d rd, si20`: replaces bits 63..32 of `rd` with `sign_extend(si20)`.
pub fn encode_lu32i_d(rd: Reg, si20: i64) -> Result<u32, ImmError> {
    Ok(ri20(LU32I_D_BASE, rd, simm(si20, 20)?))
}

/// `lu52i.d rd, rj, si12`: `rd = (rj & 0x000F_FFFF_FFFF_FFFF) | (si12 << 52)`.
pub fn encode_lu52i_d(rd: Reg, rj: Reg, si12: i64) -> Result<u32, ImmError> {
    Ok(rri12(LU52I_D_BASE, rd, rj, simm(si12, 12)?))
}

/// `pcaddu18i rd, si20`: `rd = pc + sign_extend(si20 << 18)`.
pub fn encode_pcaddu18i(rd: Reg, si20: i64) -> Result<u32, ImmError> {
    Ok(ri20(PCADDU18I_BASE, rd, simm(si20, 20)?))
}

fn bz(base: u32, rj: Reg, pc: u64, target: u64) -> Result<u32, InsnError> {
    if (pc | target) & 3 != 0 {
        return Err(InsnError::Misaligned { pc, target });
    }
    let off = target.wrapping_sub(pc) as i64;
    if off < -(BZ_REACH as i64) || off >= BZ_REACH as i64 {
        return Err(InsnError::OutOfRange { pc, target, max: BZ_REACH });
    }
    let o = ((off >> 2) as u32) & 0x1F_FFFF;
    Ok(base | ((o & 0xFFFF) << 10) | ((rj as u32) << 5) | (o >> 16))
}

/// `beqz rj, target` placed at `pc` (reach ±4 MiB).
pub fn encode_beqz(rj: Reg, pc: u64, target: u64) -> Result<u32, InsnError> {
    bz(BEQZ_BASE, rj, pc, target)
}

/// `bnez rj, target` placed at `pc` (reach ±4 MiB).
pub fn encode_bnez(rj: Reg, pc: u64, target: u64) -> Result<u32, InsnError> {
    bz(BNEZ_BASE, rj, pc, target)
}

/// `pcaddu18i rd, hi; jirl link, rd, lo` placed at `pc`: a call (or with `link` = `zero`, a jump)
/// to `target` within ±128 GiB, through scratch register `rd` (the `R_LARCH_CALL36` pair).
pub fn encode_call36(link: Reg, rd: Reg, pc: u64, target: u64) -> Result<[u32; 2], InsnError> {
    if (pc | target) & 3 != 0 {
        return Err(InsnError::Misaligned { pc, target });
    }
    let off = target.wrapping_sub(pc) as i64;
    if off < -(CALL36_REACH as i64) || off >= CALL36_REACH as i64 - 0x2_0000 {
        return Err(InsnError::OutOfRange { pc, target, max: CALL36_REACH });
    }
    // The fields (the high part rounded by bit 17, see `pcrel`) as the module loader's
    // `R_LARCH_CALL36` writes them; the range check above is this encoder's own, narrower one.
    let (hi, lo) = crate::pcrel::call36_fields(pc, target).map_err(|_| InsnError::OutOfRange { pc, target, max: CALL36_REACH })?;
    let w0 = ri20(PCADDU18I_BASE, rd, hi);
    Ok([w0, JIRL_BASE | (lo << 10) | ((rd as u32) << 5) | link as u32])
}

/// The four instructions that load the 64-bit constant `value` into `rd`
/// (`lu12i.w`, `ori`, `lu32i.d`, `lu52i.d`).
pub fn encode_li64(rd: Reg, value: u64) -> [u32; 4] {
    let v = value as i64;
    [
        ri20(LU12I_W_BASE, rd, ((v >> 12) & 0xF_FFFF) as u32),
        rri12(ORI_BASE, rd, rd, (v & 0xFFF) as u32),
        ri20(LU32I_D_BASE, rd, ((v >> 32) & 0xF_FFFF) as u32),
        rri12(LU52I_D_BASE, rd, rd, ((v >> 52) & 0xFFF) as u32),
    ]
}

/// `alsl.d rd, rj, rk, sa`: `rd = (rj << sa) + rk`, `sa` in 1..=4.
pub fn encode_alsl_d(rd: Reg, rj: Reg, rk: Reg, sa: u32) -> Result<u32, ImmError> {
    if !(1..=4).contains(&sa) {
        return Err(ImmError { value: sa as i64, bits: 2 });
    }
    Ok(0x002c_0000 | (sa - 1) << 15 | (rk as u32) << 10 | (rj as u32) << 5 | rd as u32)
}

/// `amadd_db.d rd, rk, rj`: atomically `*rj += rk` with full barriers, the old value in `rd`.
pub const fn encode_amadd_db_d(rd: Reg, rk: Reg, rj: Reg) -> u32 {
    0x386a_8000 | (rk as u32) << 10 | (rj as u32) << 5 | rd as u32
}

/// Whether a `bl` (or `b`) at `pc` can reach `target` directly.
#[inline]
pub fn bl_reachable(pc: u64, target: u64) -> bool {
    b_offs26(pc, target).is_ok()
}

/// Whether `word` is a `bl` instruction (any offset).
#[inline]
pub const fn is_bl(word: u32) -> bool {
    word & OP6_MASK == BL_BASE
}

/// Whether `word` is a `b` instruction (any offset).
#[inline]
pub const fn is_b(word: u32) -> bool {
    word & OP6_MASK == B_BASE
}

/// A decoded instruction (only the forms this module knows; everything else is [`Insn::Other`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `andi $zero, $zero, 0`.
    Nop,
    /// `or rd, rj, $zero`.
    Move {
        /// Destination.
        rd: Reg,
        /// Source.
        rj: Reg,
    },
    /// `b` with its absolute destination.
    B {
        /// Absolute destination address.
        target: u64,
    },
    /// `bl` with its absolute destination.
    Bl {
        /// Absolute destination address.
        target: u64,
    },
    /// `jirl rd, rj, offset` (`offset` in bytes).
    Jirl {
        /// Link register.
        rd: Reg,
        /// Base register.
        rj: Reg,
        /// Byte offset added to `rj`.
        offset: i64,
    },
    /// `ibar hint` (15-bit hint).
    Ibar(u16),
    /// `break code` (15-bit code).
    Break(u16),
    /// Anything else, kept verbatim.
    Other(u32),
}

/// Decode `word`, located at address `pc` (used to turn `b`/`bl` offsets into absolute targets
/// with wrapping arithmetic).
pub fn decode(pc: u64, word: u32) -> Insn {
    if word == NOP {
        return Insn::Nop;
    }
    match word & OP6_MASK {
        B_BASE => {
            return Insn::B {
                target: pc.wrapping_add(offs26_of(word) as u64),
            };
        }
        BL_BASE => {
            return Insn::Bl {
                target: pc.wrapping_add(offs26_of(word) as u64),
            };
        }
        JIRL_BASE => {
            return Insn::Jirl {
                rd: Reg::from_field(word),
                rj: Reg::from_field(word >> 5),
                offset: offs16_of(word),
            };
        }
        _ => {}
    }
    match word & OP17_MASK {
        OR_BASE if (word >> 10) & 0x1F == 0 => Insn::Move {
            rd: Reg::from_field(word),
            rj: Reg::from_field(word >> 5),
        },
        IBAR_BASE => Insn::Ibar((word & 0x7FFF) as u16),
        BREAK_BASE => Insn::Break((word & 0x7FFF) as u16),
        _ => Insn::Other(word),
    }
}

impl Insn {
    /// Re-encode this instruction as it would be placed at `pc`.
    ///
    /// `Ibar`/`Break` codes are truncated to 15 bits, as in the encoding.
    pub fn encode(&self, pc: u64) -> Result<u32, InsnError> {
        match *self {
            Insn::Nop => Ok(NOP),
            Insn::Move { rd, rj } => Ok(encode_move(rd, rj)),
            Insn::B { target } => encode_b(pc, target),
            Insn::Bl { target } => encode_bl(pc, target),
            Insn::Jirl { rd, rj, offset } => encode_jirl(rd, rj, offset),
            Insn::Ibar(h) => Ok(IBAR_BASE | (h as u32 & 0x7FFF)),
            Insn::Break(c) => Ok(BREAK_BASE | (c as u32 & 0x7FFF)),
            Insn::Other(w) => Ok(w),
        }
    }
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Insn::Nop => f.write_str("nop"),
            Insn::Move { rd, rj } => write!(f, "move {rd}, {rj}"),
            Insn::B { target } => write!(f, "b {target:#x}"),
            Insn::Bl { target } => write!(f, "bl {target:#x}"),
            Insn::Jirl { rd, rj, offset } => write!(f, "jirl {rd}, {rj}, {offset}"),
            Insn::Ibar(h) => write!(f, "ibar {h}"),
            Insn::Break(c) => write!(f, "break {c}"),
            Insn::Other(w) => write!(f, ".word {w:#010x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::ToString;

    const HI: u64 = 0x9000_0000_0020_0000;

    #[test]
    fn out_of_range_message_signs_the_distance() {
        let back = InsnError::OutOfRange { pc: HI, target: HI - 0x1000, max: 0x800 }.to_string();
        assert!(back.contains("is -0x1000 bytes"), "{back}");
        let fwd = InsnError::OutOfRange { pc: HI, target: HI + 0x1000, max: 0x800 }.to_string();
        assert!(fwd.contains("is +0x1000 bytes"), "{fwd}");
        // A zero distance (only reachable by building the error by hand) reads as +0.
        let zero = InsnError::OutOfRange { pc: HI, target: HI, max: 0x800 }.to_string();
        assert!(zero.contains("is +0x0 bytes"), "{zero}");
    }

    #[test]
    fn constants() {
        assert_eq!(INSN_SIZE, 4);
        assert_eq!(NOP, 0x0340_0000);
        assert_eq!(IBAR0, 0x3872_8000);
        assert_eq!(BREAK0, 0x002A_0000);
        assert_eq!(RET, encode_jr(Reg::Ra));
    }

    #[test]
    fn reg_numbers_and_names() {
        for n in 0..32u32 {
            let r = Reg::from_u32(n).unwrap();
            assert_eq!(r.num(), n);
            assert_eq!(r as u8 as u32, n);
            assert_eq!(Reg::from_field(n | 0xFFE0), r);
        }
        assert_eq!(Reg::from_u32(32), None);
        assert_eq!(Reg::from_u32(u32::MAX), None);
        assert_eq!(Reg::Zero.name(), "zero");
        assert_eq!(Reg::Ra.name(), "ra");
        assert_eq!(Reg::Tp.name(), "tp");
        assert_eq!(Reg::Sp.name(), "sp");
        assert_eq!(Reg::A0 as u8, 4);
        assert_eq!(Reg::A7 as u8, 11);
        assert_eq!(Reg::A7.name(), "a7");
        assert_eq!(Reg::T0 as u8, 12);
        assert_eq!(Reg::T0.name(), "t0");
        assert_eq!(Reg::T8 as u8, 20);
        assert_eq!(Reg::T8.name(), "t8");
        assert_eq!(Reg::R21.name(), "r21");
        assert_eq!(Reg::Fp as u8, 22);
        assert_eq!(Reg::Fp.name(), "fp");
        assert_eq!(Reg::S0 as u8, 23);
        assert_eq!(Reg::S0.name(), "s0");
        assert_eq!(Reg::S8 as u8, 31);
        assert_eq!(Reg::S8.name(), "s8");
        assert_eq!(Reg::T1.to_string(), "t1");
    }

    #[test]
    fn move_examples() {
        assert_eq!(encode_move(Reg::T0, Reg::Ra), 0x0015_002C);
        assert_eq!(encode_move(Reg::Ra, Reg::T0), 0x0015_0181);
        assert_eq!(encode_move(Reg::T1, Reg::Ra), 0x0015_002D);
        for rd in 0..32 {
            for rj in 0..32 {
                let (rd, rj) = (Reg::from_u32(rd).unwrap(), Reg::from_u32(rj).unwrap());
                assert_eq!(decode(0, encode_move(rd, rj)), Insn::Move { rd, rj });
            }
        }
    }

    #[test]
    fn bl_examples() {
        assert_eq!(encode_bl(0, 0x1000), Ok(0x5410_0000));
        assert_eq!(encode_bl(0x1000, 0), Ok(0x57F0_03FF));
        assert_eq!(encode_bl(HI, HI + 0x1000), Ok(0x5410_0000));
        assert_eq!(encode_bl(HI, HI - 0x1000), Ok(0x57F0_03FF));
        assert_eq!(encode_b(HI, HI + 0x1000), Ok(0x5010_0000));
        assert_eq!(encode_b(HI, HI - 0x1000), Ok(0x53F0_03FF));
        assert_eq!(encode_bl(HI, HI), Ok(BL_BASE));
        assert_eq!(encode_b(HI, HI + 4), Ok(0x5000_0400));
    }

    #[test]
    fn branch_boundaries() {
        for pc in [0u64, 0x1000, HI, u64::MAX - 3, 0x8000_0000_0000_0000] {
            for enc in [
                encode_b as fn(u64, u64) -> Result<u32, InsnError>,
                encode_bl,
            ] {
                assert!(enc(pc, pc.wrapping_add(0x07FF_FFFC)).is_ok());
                assert_eq!(
                    enc(pc, pc.wrapping_add(0x0800_0000)),
                    Err(InsnError::OutOfRange {
                        pc,
                        target: pc.wrapping_add(0x0800_0000),
                        max: B_REACH
                    })
                );
                assert!(enc(pc, pc.wrapping_sub(0x0800_0000)).is_ok());
                assert!(matches!(
                    enc(pc, pc.wrapping_sub(0x0800_0004)),
                    Err(InsnError::OutOfRange { .. })
                ));
                assert_eq!(
                    enc(pc, pc.wrapping_add(2)),
                    Err(InsnError::Misaligned {
                        pc,
                        target: pc.wrapping_add(2)
                    })
                );
                assert!(matches!(
                    enc(pc, pc.wrapping_sub(1)),
                    Err(InsnError::Misaligned { .. })
                ));
                // far away in both directions
                assert!(enc(pc, pc.wrapping_add(0x1_0000_0000)).is_err());
                assert!(enc(pc, pc.wrapping_add(0x8000_0000_0000_0000)).is_err());
            }
            assert!(bl_reachable(pc, pc.wrapping_add(0x07FF_FFFC)));
            assert!(!bl_reachable(pc, pc.wrapping_add(0x0800_0000)));
            assert!(bl_reachable(pc, pc.wrapping_sub(0x0800_0000)));
            assert!(!bl_reachable(pc, pc.wrapping_sub(0x0800_0004)));
            assert!(!bl_reachable(pc, pc.wrapping_add(2)));
        }
        // Exact extreme encodings.
        assert_eq!(encode_bl(HI, HI + 0x07FF_FFFC), Ok(0x57FF_FDFF));
        assert_eq!(encode_bl(HI, HI - 0x0800_0000), Ok(0x5400_0200));
        // Misaligned pc is rejected too.
        assert!(matches!(
            encode_bl(HI + 2, HI + 6),
            Err(InsnError::Misaligned { .. })
        ));
        // Errors are never a `break` word.
        assert!(encode_bl(HI, 0).is_err());
    }

    #[test]
    fn branch_round_trips() {
        let pcs = [
            0u64,
            0x4000,
            HI,
            0x9000_0000_07FF_FFF0,
            u64::MAX - 3,
            0x7FFF_FFFF_FFFF_FFFC,
        ];
        let mut offs = std::vec::Vec::new();
        for k in 0..26 {
            let p = 4i64 << k;
            if p < 0x0800_0000 {
                offs.push(p);
                offs.push(p - 4);
                offs.push(p + 4);
                offs.push(-p);
                offs.push(-p + 4);
                offs.push(-p - 4);
            }
        }
        offs.extend_from_slice(&[
            0,
            4,
            -4,
            0x07FF_FFFC,
            -0x0800_0000,
            0x0123_4564,
            -0x0765_4320,
        ]);
        // pseudo-random offsets
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offs.push(sign_extend(x & 0x0FFF_FFFC, 28));
        }
        for &pc in &pcs {
            for &o in &offs {
                let target = pc.wrapping_add(o as u64);
                let wb = encode_b(pc, target).unwrap();
                let wl = encode_bl(pc, target).unwrap();
                assert!(is_b(wb) && !is_bl(wb));
                assert!(is_bl(wl) && !is_b(wl));
                assert_eq!(wl & !OP6_MASK, wb & !OP6_MASK);
                assert_eq!(offs26_of(wl), o);
                assert_eq!(decode(pc, wb), Insn::B { target });
                assert_eq!(decode(pc, wl), Insn::Bl { target });
                assert_eq!(decode(pc, wl).encode(pc), Ok(wl));
            }
        }
    }

    #[test]
    fn jirl_and_jr() {
        assert_eq!(encode_jr(Reg::T0), 0x4C00_0180);
        assert_eq!(encode_jr(Reg::T1), 0x4C00_01A0);
        assert_eq!(encode_jr(Reg::Ra), 0x4C00_0020);
        assert_eq!(encode_jirl(Reg::Zero, Reg::T0, 0), Ok(0x4C00_0180));
        assert_eq!(encode_jirl(Reg::Ra, Reg::T0, 0), Ok(0x4C00_0181));
        assert_eq!(encode_jirl(Reg::Zero, Reg::Ra, 4), Ok(0x4C00_0420));
        assert_eq!(encode_jirl(Reg::Zero, Reg::Ra, -4), Ok(0x4FFF_FC20));
        assert_eq!(encode_jirl(Reg::Ra, Reg::T1, 0x1_FFFC), Ok(0x4DFF_FDA1));
        assert!(encode_jirl(Reg::Ra, Reg::T1, -0x2_0000).is_ok());
        assert_eq!(
            encode_jirl(Reg::Ra, Reg::T1, 0x2_0000),
            Err(InsnError::OutOfRange {
                pc: 0,
                target: 0x2_0000,
                max: JIRL_REACH
            })
        );
        assert_eq!(
            encode_jirl(Reg::Ra, Reg::T1, -0x2_0004),
            Err(InsnError::OutOfRange {
                pc: 0,
                target: (-0x2_0004i64) as u64,
                max: JIRL_REACH
            })
        );
        assert_eq!(
            encode_jirl(Reg::Ra, Reg::T1, 6),
            Err(InsnError::Misaligned { pc: 0, target: 6 })
        );
        assert_eq!(
            encode_jirl(Reg::Ra, Reg::T1, -2),
            Err(InsnError::Misaligned {
                pc: 0,
                target: (-2i64) as u64
            })
        );
        assert!(encode_jirl(Reg::Ra, Reg::T1, i64::MIN).is_err());
        assert!(encode_jirl(Reg::Ra, Reg::T1, i64::MAX).is_err());
        let mut o = -0x2_0000i64;
        while o < 0x2_0000 {
            let w = encode_jirl(Reg::T2, Reg::S3, o).unwrap();
            assert_eq!(
                decode(HI, w),
                Insn::Jirl {
                    rd: Reg::T2,
                    rj: Reg::S3,
                    offset: o
                }
            );
            o += 4 * 37;
        }
        for o in [-0x2_0000i64, 0x1_FFFC, 0, -4, 4] {
            let w = encode_jirl(Reg::Zero, Reg::T0, o).unwrap();
            assert_eq!(offs16_of(w), o);
        }
    }

    #[test]
    fn decode_misc() {
        assert_eq!(decode(HI, NOP), Insn::Nop);
        assert_eq!(decode(HI, IBAR0), Insn::Ibar(0));
        assert_eq!(decode(HI, IBAR0 | 5), Insn::Ibar(5));
        assert_eq!(decode(HI, BREAK0), Insn::Break(0));
        assert_eq!(decode(HI, BREAK0 | 0x7FFF), Insn::Break(0x7FFF));
        assert_eq!(
            decode(HI, RET),
            Insn::Jirl {
                rd: Reg::Zero,
                rj: Reg::Ra,
                offset: 0
            }
        );
        // `or` with rk != 0 is not a move.
        assert_eq!(
            decode(0, 0x0015_0000 | (5 << 10) | (1 << 5) | 12),
            Insn::Other(0x0015_142C)
        );
        // `andi` other than the canonical nop.
        assert_eq!(decode(0, 0x0340_0001), Insn::Other(0x0340_0001));
        for w in [
            0x1234_5678u32,
            0x0000_0000,
            0xFFFF_FFFF,
            0x02C0_0063, // addi.d sp, sp, 0
            0x29C0_2061, // st.d ra, sp, 8
            0x0014_0000, // some neighbouring 3R opcode
            0x0016_0000,
            0x002A_8000, // syscall 0
            0x3872_0000, // dbar 0
            0x5800_0000, // beq
            0x4800_0000, // beqz-family
        ] {
            assert_eq!(decode(0x1000, w), Insn::Other(w), "{w:#x}");
        }
    }

    #[test]
    fn decode_high_addresses_wrap() {
        // A forward branch from near the top of the address space wraps without overflow panics.
        let pc = u64::MAX - 3;
        let w = encode_bl(pc, 0x1000 - 4).unwrap();
        assert_eq!(decode(pc, w), Insn::Bl { target: 0xFFC });
        let w = encode_b(0, 0u64.wrapping_sub(0x100)).unwrap();
        assert_eq!(
            decode(0, w),
            Insn::B {
                target: 0u64.wrapping_sub(0x100)
            }
        );
        // Decoding arbitrary b/bl words at arbitrary pcs never panics.
        for pc in [0u64, u64::MAX, u64::MAX - 3, HI] {
            for w in [0x53FF_FFFFu32, 0x5400_0200, 0x57FF_FDFF, 0x5000_0000] {
                let _ = decode(pc, w);
            }
        }
    }

    #[test]
    fn display() {
        assert_eq!(Insn::Nop.to_string(), "nop");
        assert_eq!(decode(0, 0x0015_002C).to_string(), "move t0, ra");
        let pc = 0x9000_0000_0020_0234;
        let w = encode_bl(pc, 0x9000_0000_0020_1234).unwrap();
        assert_eq!(decode(pc, w).to_string(), "bl 0x9000000000201234");
        let w = encode_b(pc, 0x9000_0000_0020_0000).unwrap();
        assert_eq!(decode(pc, w).to_string(), "b 0x9000000000200000");
        assert_eq!(decode(0, 0x4C00_0180).to_string(), "jirl zero, t0, 0");
        assert_eq!(decode(0, 0x4FFF_FC20).to_string(), "jirl zero, ra, -4");
        assert_eq!(decode(0, IBAR0).to_string(), "ibar 0");
        assert_eq!(decode(0, BREAK0).to_string(), "break 0");
        assert_eq!(decode(0, 0x1234_5678).to_string(), ".word 0x12345678");
        assert_eq!(decode(0, 0x0000_00AB).to_string(), ".word 0x000000ab");
    }

    #[test]
    fn error_display() {
        let e = encode_bl(0x9000_0000_0000_0000, 0x9000_0001_0000_0000).unwrap_err();
        let s = format!("{e}");
        assert!(s.contains("out of range"), "{s}");
        assert!(s.contains("0x9000000000000000"), "{s}");
        assert!(s.contains("0x9000000100000000"), "{s}");
        assert!(s.contains("0x8000000"), "{s}");
        let e = encode_bl(0x1000_0000, 0x0).unwrap_err().to_string();
        assert!(e.contains("-0x10000000"), "{e}");
        assert!(e.contains("bytes"), "{e}");
        let e = encode_bl(0x2000, 0x1002).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("misaligned") && s.contains("0x2000") && s.contains("0x1002"),
            "{s}"
        );
        let s = encode_jirl(Reg::Zero, Reg::T0, 0x4_0000)
            .unwrap_err()
            .to_string();
        assert!(s.contains("0x40000") && s.contains("0x20000"), "{s}");
    }

    #[test]
    fn insn_encode_round_trip() {
        for ins in [
            Insn::Nop,
            Insn::Move {
                rd: Reg::Ra,
                rj: Reg::T0,
            },
            Insn::Jirl {
                rd: Reg::Ra,
                rj: Reg::T1,
                offset: -8,
            },
            Insn::Ibar(0),
            Insn::Break(7),
            Insn::Other(0x1234_5678),
            Insn::Bl { target: HI + 0x40 },
            Insn::B { target: HI - 0x40 },
        ] {
            let w = ins.encode(HI).unwrap();
            assert_eq!(decode(HI, w), ins);
        }
        assert!(Insn::Bl { target: 0 }.encode(HI).is_err());
    }

    #[test]
    fn sign_extend_works() {
        assert_eq!(sign_extend(0x3FF_FFFF, 26), -1);
        assert_eq!(sign_extend(0x200_0000, 26), -0x200_0000);
        assert_eq!(sign_extend(0x1FF_FFFF, 26), 0x1FF_FFFF);
        assert_eq!(sign_extend(u64::MAX, 64), -1);
        assert_eq!(sign_extend(1, 1), -1);
    }

    /// Words checked against `llvm-objdump -d` (LLVM 21, LoongArch) disassembly.
    #[test]
    fn memory_and_immediate_examples() {
        use Reg::*;
        assert_eq!(encode_addi_d(Sp, Sp, -112), Ok(0x02FE_4063));
        assert_eq!(encode_addi_d(A0, Sp, 2047), Ok(0x02DF_FC64));
        assert_eq!(encode_addi_d(Fp, Sp, 112), Ok(0x02C1_C076));
        assert_eq!(encode_ld_d(T1, Sp, 80), Ok(0x28C1_406D));
        assert_eq!(encode_st_d(A7, Sp, 56), Ok(0x29C0_E06B));
        assert_eq!(encode_st_d(Zero, Sp, -8), Ok(0x29FF_E060));
        assert_eq!(encode_ori(T1, T1, 0xABC), Ok(0x03AA_F1AD));
        assert_eq!(encode_lu12i_w(T1, -1), Ok(0x15FF_FFED));
        assert_eq!(encode_lu12i_w(T1, 0x12345), Ok(0x1424_68AD));
        assert_eq!(encode_lu32i_d(T1, 0x54321), Ok(0x16A8_642D));
        assert_eq!(encode_lu52i_d(T1, T1, -2048), Ok(0x0320_01AD));
        assert_eq!(encode_pcaddu18i(T1, 1), Ok(0x1E00_002D));
        assert_eq!(encode_pcaddu18i(T1, -1), Ok(0x1FFF_FFED));
        assert_eq!(encode_bnez(A0, HI, HI + 16), Ok(0x4400_1080));
        assert_eq!(encode_beqz(A0, HI, HI - 16), Ok(0x43FF_F09F));
        assert_eq!(encode_bnez(T0, HI, HI + 0x3F_FFFC), Ok(0x47FF_FD8F));
        assert_eq!(encode_beqz(A1, HI, HI - 0x40_0000), Ok(0x4000_00B0));
    }

    #[test]
    fn immediate_limits() {
        use Reg::*;
        for enc in [encode_addi_d as fn(Reg, Reg, i64) -> Result<u32, ImmError>, encode_ld_d, encode_st_d, encode_lu52i_d] {
            assert!(enc(A0, Sp, -2048).is_ok());
            assert!(enc(A0, Sp, 2047).is_ok());
            assert_eq!(enc(A0, Sp, 2048), Err(ImmError { value: 2048, bits: 12 }));
            assert_eq!(enc(A0, Sp, -2049), Err(ImmError { value: -2049, bits: 12 }));
        }
        for enc in [encode_lu12i_w as fn(Reg, i64) -> Result<u32, ImmError>, encode_lu32i_d, encode_pcaddu18i] {
            assert!(enc(T1, -0x8_0000).is_ok());
            assert!(enc(T1, 0x7_FFFF).is_ok());
            assert!(enc(T1, 0x8_0000).is_err());
            assert!(enc(T1, -0x8_0001).is_err());
        }
        assert!(encode_ori(T1, T1, 0xFFF).is_ok());
        assert!(encode_ori(T1, T1, 0x1000).is_err());
        assert!(encode_bnez(A0, HI, HI + 0x40_0000).is_err());
        assert!(encode_beqz(A0, HI, HI - 0x40_0004).is_err());
        assert!(matches!(encode_bnez(A0, HI, HI + 2), Err(InsnError::Misaligned { .. })));
        assert_eq!(ImmError { value: 4096, bits: 12 }.to_string(), "immediate 4096 does not fit in 12 bits");
    }

    /// Simulates `pcaddu18i` + `jirl` and the `li` sequence to check the arithmetic.
    fn run_call36(pc: u64, w: [u32; 2]) -> u64 {
        assert_eq!(w[0] & 0xFE00_0000, PCADDU18I_BASE);
        let hi = sign_extend(((w[0] >> 5) & 0xF_FFFF) as u64, 20);
        let base = pc.wrapping_add((hi << 18) as u64);
        match decode(pc + 4, w[1]) {
            Insn::Jirl { offset, .. } => base.wrapping_add(offset as u64),
            other => panic!("{other:?}"),
        }
    }

    fn run_li64(w: [u32; 4]) -> u64 {
        let si20 = |w: u32| sign_extend(((w >> 5) & 0xF_FFFF) as u64, 20);
        let mut r = (si20(w[0]) << 12) as u64;
        r |= ((w[1] >> 10) & 0xFFF) as u64;
        r = (r & 0xFFFF_FFFF) | ((si20(w[2]) as u64) << 32);
        r = (r & 0x000F_FFFF_FFFF_FFFF) | ((((w[3] >> 10) & 0xFFF) as u64) << 52);
        r
    }

    #[test]
    fn call36_and_li64() {
        let offs = [0i64, 4, -4, 0x1_FFFC, 0x2_0000, -0x2_0000, -0x2_0004, 0x1234_5678, -0x1234_5678, 0x1F_FFFD_FFFC, -0x20_0000_0000];
        for pc in [HI, 0x9000_0000_1000_0000, 0x1000] {
            for &o in &offs {
                let t = pc.wrapping_add(o as u64);
                let w = encode_call36(Reg::Ra, Reg::T1, pc, t).unwrap();
                assert_eq!(run_call36(pc, w), t, "offset {o:#x}");
                assert_eq!(decode(pc + 4, w[1]), Insn::Jirl { rd: Reg::Ra, rj: Reg::T1, offset: (t.wrapping_sub(pc) as i64) - (sign_extend(((w[0] >> 5) & 0xF_FFFF) as u64, 20) << 18) });
            }
            assert!(encode_call36(Reg::Ra, Reg::T1, pc, pc.wrapping_add(0x20_0000_0000)).is_err());
            assert!(encode_call36(Reg::Ra, Reg::T1, pc, pc.wrapping_sub(0x20_0000_0004)).is_err());
            assert!(encode_call36(Reg::Ra, Reg::T1, pc, pc + 2).is_err());
            // Misalignment is reported as such, of either end.
            assert_eq!(encode_call36(Reg::Ra, Reg::T1, pc, pc + 0x102), Err(InsnError::Misaligned { pc, target: pc + 0x102 }));
            assert_eq!(encode_call36(Reg::Ra, Reg::T1, pc + 1, pc + 0x100), Err(InsnError::Misaligned { pc: pc + 1, target: pc + 0x100 }));
        }
        for v in [0u64, 1, 0xFFF, 0x800, 0x8000_0000, 0xFFFF_FFFF, 0x9000_0000_0020_0000, u64::MAX, 0x8000_0000_0000_0000, 0x1234_5678_9ABC_DEF0, 0x0008_0000_8000_0800] {
            assert_eq!(run_li64(encode_li64(Reg::T1, v)), v, "{v:#x}");
        }
    }

}
