//! LoongArch64 relocation arithmetic for the module loader: pure functions over a byte image.
//!
//! Each relocation computes a value from `S + A` (symbol plus addend), `P` (the address of the
//! place) and, for GOT relocations, the address of the symbol's GOT entry, then writes it into
//! the instruction or data word at the place. A value that does not fit the field is refused
//! (`RelocError::Overflow`): the loader never writes a truncated branch or address.

use core::fmt;

pub const R_LARCH_NONE: u32 = 0;
pub const R_LARCH_32: u32 = 1;
pub const R_LARCH_64: u32 = 2;
pub const R_LARCH_ADD8: u32 = 47;
pub const R_LARCH_ADD16: u32 = 48;
pub const R_LARCH_ADD24: u32 = 49;
pub const R_LARCH_ADD32: u32 = 50;
pub const R_LARCH_ADD64: u32 = 51;
pub const R_LARCH_SUB8: u32 = 52;
pub const R_LARCH_SUB16: u32 = 53;
pub const R_LARCH_SUB24: u32 = 54;
pub const R_LARCH_SUB32: u32 = 55;
pub const R_LARCH_SUB64: u32 = 56;
pub const R_LARCH_B16: u32 = 64;
pub const R_LARCH_B21: u32 = 65;
pub const R_LARCH_B26: u32 = 66;
pub const R_LARCH_ABS_HI20: u32 = 67;
pub const R_LARCH_ABS_LO12: u32 = 68;
pub const R_LARCH_ABS64_LO20: u32 = 69;
pub const R_LARCH_ABS64_HI12: u32 = 70;
pub const R_LARCH_PCALA_HI20: u32 = 71;
pub const R_LARCH_PCALA_LO12: u32 = 72;
pub const R_LARCH_GOT_PC_HI20: u32 = 75;
pub const R_LARCH_GOT_PC_LO12: u32 = 76;
pub const R_LARCH_32_PCREL: u32 = 99;
pub const R_LARCH_RELAX: u32 = 100;
pub const R_LARCH_ALIGN: u32 = 102;
pub const R_LARCH_PCREL20_S2: u32 = 103;
pub const R_LARCH_ADD6: u32 = 105;
pub const R_LARCH_SUB6: u32 = 106;
pub const R_LARCH_ADD_ULEB128: u32 = 107;
pub const R_LARCH_SUB_ULEB128: u32 = 108;
pub const R_LARCH_64_PCREL: u32 = 109;
pub const R_LARCH_CALL36: u32 = 110;

/// The name of a relocation type, for messages.
pub fn name(rtype: u32) -> &'static str {
    match rtype {
        R_LARCH_NONE => "R_LARCH_NONE",
        R_LARCH_32 => "R_LARCH_32",
        R_LARCH_64 => "R_LARCH_64",
        R_LARCH_ADD8 => "R_LARCH_ADD8",
        R_LARCH_ADD16 => "R_LARCH_ADD16",
        R_LARCH_ADD24 => "R_LARCH_ADD24",
        R_LARCH_ADD32 => "R_LARCH_ADD32",
        R_LARCH_ADD64 => "R_LARCH_ADD64",
        R_LARCH_SUB8 => "R_LARCH_SUB8",
        R_LARCH_SUB16 => "R_LARCH_SUB16",
        R_LARCH_SUB24 => "R_LARCH_SUB24",
        R_LARCH_SUB32 => "R_LARCH_SUB32",
        R_LARCH_SUB64 => "R_LARCH_SUB64",
        R_LARCH_B16 => "R_LARCH_B16",
        R_LARCH_B21 => "R_LARCH_B21",
        R_LARCH_B26 => "R_LARCH_B26",
        R_LARCH_ABS_HI20 => "R_LARCH_ABS_HI20",
        R_LARCH_ABS_LO12 => "R_LARCH_ABS_LO12",
        R_LARCH_ABS64_LO20 => "R_LARCH_ABS64_LO20",
        R_LARCH_ABS64_HI12 => "R_LARCH_ABS64_HI12",
        R_LARCH_PCALA_HI20 => "R_LARCH_PCALA_HI20",
        R_LARCH_PCALA_LO12 => "R_LARCH_PCALA_LO12",
        R_LARCH_GOT_PC_HI20 => "R_LARCH_GOT_PC_HI20",
        R_LARCH_GOT_PC_LO12 => "R_LARCH_GOT_PC_LO12",
        R_LARCH_32_PCREL => "R_LARCH_32_PCREL",
        R_LARCH_RELAX => "R_LARCH_RELAX",
        R_LARCH_ALIGN => "R_LARCH_ALIGN",
        R_LARCH_PCREL20_S2 => "R_LARCH_PCREL20_S2",
        R_LARCH_ADD6 => "R_LARCH_ADD6",
        R_LARCH_SUB6 => "R_LARCH_SUB6",
        R_LARCH_ADD_ULEB128 => "R_LARCH_ADD_ULEB128",
        R_LARCH_SUB_ULEB128 => "R_LARCH_SUB_ULEB128",
        R_LARCH_64_PCREL => "R_LARCH_64_PCREL",
        R_LARCH_CALL36 => "R_LARCH_CALL36",
        _ => "an unknown relocation",
    }
}

/// Whether the loader needs a GOT entry for a relocation of this type.
pub fn needs_got(rtype: u32) -> bool {
    matches!(rtype, R_LARCH_GOT_PC_HI20 | R_LARCH_GOT_PC_LO12)
}

/// Whether the loader knows this type (everything else is refused before anything is written).
pub fn supported(rtype: u32) -> bool {
    name(rtype) != "an unknown relocation"
}

/// Why a relocation could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// The type is not one the loader implements.
    Unsupported(u32),
    /// The value does not fit the field (e.g. a `b`/`bl` farther than ±128 MiB).
    Overflow { rtype: u32, value: i64 },
    /// A branch target that is not a multiple of 4 bytes away.
    Misaligned { rtype: u32, value: i64 },
    /// The place (plus the width written) lies outside the section.
    OutOfBounds { rtype: u32, offset: u64 },
    /// A ULEB128 at the place is malformed or the new value needs more bytes.
    BadUleb128,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RelocError::Unsupported(t) => write!(f, "relocation type {t} is not supported"),
            RelocError::Overflow { rtype, value } => {
                write!(f, "{} value {value:#x} does not fit its field (target out of range)", name(rtype))
            }
            RelocError::Misaligned { rtype, value } => write!(f, "{} offset {value:#x} is not 4-byte aligned", name(rtype)),
            RelocError::OutOfBounds { rtype, offset } => write!(f, "{} at offset {offset:#x} lies outside its section", name(rtype)),
            RelocError::BadUleb128 => write!(f, "malformed or overflowing ULEB128 at a relocation"),
        }
    }
}

/// Everything a relocation needs besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct RelocInput {
    pub rtype: u32,
    /// Offset of the place in `section`.
    pub offset: u64,
    /// Address the place will have when the module runs (`P`).
    pub place: u64,
    /// `S + A`.
    pub value: u64,
    /// Address of the GOT entry holding `S + A` (GOT relocations only).
    pub got: u64,
}

fn slot<'a>(section: &'a mut [u8], r: &RelocInput, width: usize) -> Result<&'a mut [u8], RelocError> {
    let start = usize::try_from(r.offset).map_err(|_| RelocError::OutOfBounds { rtype: r.rtype, offset: r.offset })?;
    let end = start.checked_add(width).ok_or(RelocError::OutOfBounds { rtype: r.rtype, offset: r.offset })?;
    section.get_mut(start..end).ok_or(RelocError::OutOfBounds { rtype: r.rtype, offset: r.offset })
}

fn read_word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub use arch::pcrel::fits_signed;
use arch::pcrel::{self, PcrelError};

/// A [`PcrelError`] of the shared PC-relative arithmetic as the loader reports it.
fn pcrel_error(rtype: u32, e: PcrelError) -> RelocError {
    match e {
        PcrelError::OutOfRange { offset } => RelocError::Overflow { rtype, value: offset },
        PcrelError::Misaligned { offset } => RelocError::Misaligned { rtype, value: offset },
    }
}

/// The `pcaddu18i` (hi20) and `jirl` (offs16, in instructions) fields of a `R_LARCH_CALL36` pair
/// from `pc` to `target` ([`arch::pcrel::call36_fields`]), or an error when out of range
/// (about ±128 GiB) or misaligned.
pub fn call36_fields(pc: u64, target: u64) -> Result<(u32, u32), RelocError> {
    pcrel::call36_fields(pc, target).map_err(|e| pcrel_error(R_LARCH_CALL36, e))
}

/// Applies one relocation to `section` (the bytes of the section being relocated).
pub fn apply(section: &mut [u8], r: &RelocInput) -> Result<(), RelocError> {
    let rtype = r.rtype;
    let sa = r.value;
    let pcrel = sa.wrapping_sub(r.place) as i64;
    let overflow = |value: i64| RelocError::Overflow { rtype, value };
    // Rewrites the instruction at the place: clear `mask`, or in `bits`.
    let insn = |section: &mut [u8], mask: u32, bits: u32| -> Result<(), RelocError> {
        let b = slot(section, r, 4)?;
        let w = (read_word(b) & !mask) | (bits & mask);
        b.copy_from_slice(&w.to_le_bytes());
        Ok(())
    };
    let branch = |bits: u32| -> Result<u32, RelocError> {
        if pcrel & 3 != 0 {
            return Err(RelocError::Misaligned { rtype, value: pcrel });
        }
        let v = pcrel >> 2;
        if !fits_signed(v, bits) {
            return Err(overflow(pcrel));
        }
        Ok(v as u32)
    };
    match rtype {
        R_LARCH_NONE | R_LARCH_RELAX | R_LARCH_ALIGN => Ok(()),
        R_LARCH_32 => {
            let v = u32::try_from(sa).ok().or_else(|| i32::try_from(sa as i64).ok().map(|v| v as u32)).ok_or(overflow(sa as i64))?;
            slot(section, r, 4)?.copy_from_slice(&v.to_le_bytes());
            Ok(())
        }
        R_LARCH_64 => {
            slot(section, r, 8)?.copy_from_slice(&sa.to_le_bytes());
            Ok(())
        }
        R_LARCH_32_PCREL => {
            if !fits_signed(pcrel, 32) {
                return Err(overflow(pcrel));
            }
            slot(section, r, 4)?.copy_from_slice(&(pcrel as i32).to_le_bytes());
            Ok(())
        }
        R_LARCH_64_PCREL => {
            slot(section, r, 8)?.copy_from_slice(&pcrel.to_le_bytes());
            Ok(())
        }
        R_LARCH_ADD6 | R_LARCH_SUB6 => {
            let b = slot(section, r, 1)?;
            let old = b[0] & 0x3f;
            let new = if rtype == R_LARCH_ADD6 { old.wrapping_add(sa as u8) } else { old.wrapping_sub(sa as u8) };
            b[0] = (b[0] & 0xc0) | (new & 0x3f);
            Ok(())
        }
        R_LARCH_ADD8 | R_LARCH_ADD16 | R_LARCH_ADD24 | R_LARCH_ADD32 | R_LARCH_ADD64 | R_LARCH_SUB8 | R_LARCH_SUB16
        | R_LARCH_SUB24 | R_LARCH_SUB32 | R_LARCH_SUB64 => {
            let width = match rtype {
                R_LARCH_ADD8 | R_LARCH_SUB8 => 1,
                R_LARCH_ADD16 | R_LARCH_SUB16 => 2,
                R_LARCH_ADD24 | R_LARCH_SUB24 => 3,
                R_LARCH_ADD32 | R_LARCH_SUB32 => 4,
                _ => 8,
            };
            let b = slot(section, r, width)?;
            let mut bytes = [0u8; 8];
            bytes[..width].copy_from_slice(b);
            let old = u64::from_le_bytes(bytes);
            let new = if rtype <= R_LARCH_ADD64 { old.wrapping_add(sa) } else { old.wrapping_sub(sa) };
            b.copy_from_slice(&new.to_le_bytes()[..width]);
            Ok(())
        }
        R_LARCH_ADD_ULEB128 | R_LARCH_SUB_ULEB128 => {
            let start = usize::try_from(r.offset).map_err(|_| RelocError::OutOfBounds { rtype, offset: r.offset })?;
            let tail = section.get_mut(start..).ok_or(RelocError::OutOfBounds { rtype, offset: r.offset })?;
            let (old, len) = read_uleb128(tail).ok_or(RelocError::BadUleb128)?;
            let new = if rtype == R_LARCH_ADD_ULEB128 { old.wrapping_add(sa) } else { old.wrapping_sub(sa) };
            write_uleb128(&mut tail[..len], new).ok_or(RelocError::BadUleb128)
        }
        R_LARCH_B16 => insn(section, 0xffff << 10, branch(16)? << 10),
        R_LARCH_B21 => {
            let v = branch(21)?;
            insn(section, (0xffff << 10) | 0x1f, ((v & 0xffff) << 10) | ((v >> 16) & 0x1f))
        }
        R_LARCH_B26 => {
            let v = branch(26)?;
            insn(section, 0x03ff_ffff, ((v & 0xffff) << 10) | ((v >> 16) & 0x3ff))
        }
        R_LARCH_PCREL20_S2 => insn(section, 0xf_ffff << 5, branch(20)? << 5),
        R_LARCH_CALL36 => {
            let (hi, lo) = call36_fields(r.place, sa)?;
            slot(section, r, 8)?;
            insn(section, 0xf_ffff << 5, hi << 5)?;
            let next = RelocInput { offset: r.offset + 4, ..*r };
            let b = slot(section, &next, 4)?;
            let w = (read_word(b) & !(0xffff << 10)) | (lo << 10);
            b.copy_from_slice(&w.to_le_bytes());
            Ok(())
        }
        R_LARCH_PCALA_HI20 | R_LARCH_GOT_PC_HI20 => {
            let target = if rtype == R_LARCH_GOT_PC_HI20 { r.got } else { sa };
            let (hi, _) = pcrel::pcala_fields(r.place, target).map_err(|e| pcrel_error(rtype, e))?;
            insn(section, 0xf_ffff << 5, hi << 5)
        }
        R_LARCH_PCALA_LO12 | R_LARCH_GOT_PC_LO12 | R_LARCH_ABS_LO12 => {
            let target = if rtype == R_LARCH_GOT_PC_LO12 { r.got } else { sa };
            insn(section, 0xfff << 10, pcrel::pcala_lo12(target) << 10)
        }
        R_LARCH_ABS_HI20 => insn(section, 0xf_ffff << 5, (((sa >> 12) & 0xf_ffff) as u32) << 5),
        R_LARCH_ABS64_LO20 => insn(section, 0xf_ffff << 5, (((sa >> 32) & 0xf_ffff) as u32) << 5),
        R_LARCH_ABS64_HI12 => insn(section, 0xfff << 10, (((sa >> 52) & 0xfff) as u32) << 10),
        _ => Err(RelocError::Unsupported(rtype)),
    }
}

/// Reads a ULEB128 (at most 10 bytes); returns the value and its length.
pub fn read_uleb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Writes `v` as a ULEB128 filling exactly `b` (padded with continuation bytes), if it fits.
pub fn write_uleb128(b: &mut [u8], mut v: u64) -> Option<()> {
    let n = b.len();
    if n == 0 || (n < 10 && v >> (7 * n) != 0) {
        return None;
    }
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = (v & 0x7f) as u8 | if i + 1 < n { 0x80 } else { 0 };
        v >>= 7;
    }
    Some(())
}

/// A two-instruction far jump from `at` to `target` that clobbers only `t1`:
/// `pcaddu18i t1, hi20; jirl zero, t1, lo16` (the stub a module site calls when its real target
/// is out of `bl` range; `ra` stays as the site's `bl` set it).
pub fn far_jump(at: u64, target: u64) -> Result<[u32; 2], RelocError> {
    const PCADDU18I_T1: u32 = 0x1e00_0000 | 13;
    const JIRL_ZERO_T1: u32 = 0x4c00_0000 | (13 << 5);
    let (hi, lo) = call36_fields(at, target)?;
    Ok([PCADDU18I_T1 | (hi << 5), JIRL_ZERO_T1 | (lo << 10)])
}

/// Where the far jump `words` at `at` goes (its inverse, for checks): any `pcaddu18i` + `jirl`
/// pair through one register ([`arch::pcrel::call36_target`]).
pub fn far_jump_target(at: u64, words: [u32; 2]) -> u64 {
    pcrel::call36_target(at, words[0] >> 5, words[1] >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rtype: u32, bytes: &mut [u8], place: u64, value: u64) -> Result<(), RelocError> {
        apply(bytes, &RelocInput { rtype, offset: 0, place, value, got: 0 })
    }

    #[test]
    fn b26_in_and_out_of_range() {
        let bl = 0x5400_0000u32;
        let mut b = bl.to_le_bytes();
        run(R_LARCH_B26, &mut b, 0x1000, 0x1000 + 0x7ff_fffc).unwrap();
        let w = u32::from_le_bytes(b);
        // offs26 = 0x1ff_ffff: low 16 bits at 25:10, high 10 at 9:0.
        assert_eq!(w, bl | (0xffff << 10) | 0x1ff);
        let mut b = bl.to_le_bytes();
        assert_eq!(run(R_LARCH_B26, &mut b, 0x1000, 0x1000 + 0x800_0000), Err(RelocError::Overflow { rtype: R_LARCH_B26, value: 0x800_0000 }));
        assert_eq!(u32::from_le_bytes(b), bl, "nothing written on error");
        let mut b = bl.to_le_bytes();
        run(R_LARCH_B26, &mut b, 0x800_1000, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(b), bl | 0x200, "-128 MiB: offs26 = 0x200_0000");
        assert!(matches!(run(R_LARCH_B26, &mut b, 0, 2), Err(RelocError::Misaligned { .. })));
    }

    #[test]
    fn call36_round_trip() {
        for (pc, target) in [
            (0x9000_0000_0c00_0000u64, 0x9000_0000_0020_0000u64),
            (0x9000_0000_0020_0000, 0x9000_0000_0c00_0000),
            (0x1000, 0x1000),
            (0x1000, 0x1000 + 0x1_fffc),
            (0x1000, 0x1000 + 0x2_0000),
            (0x10_0000_0000, 0),
        ] {
            let w = far_jump(pc, target).unwrap();
            assert_eq!(far_jump_target(pc, w), target, "{pc:#x} -> {target:#x}");
            // The same through the relocation on a pcaddu18i/jirl pair.
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&0x1e00_0001u32.to_le_bytes());
            b[4..].copy_from_slice(&0x4c00_0021u32.to_le_bytes());
            run(R_LARCH_CALL36, &mut b, pc, target).unwrap();
            let words = [u32::from_le_bytes(b[..4].try_into().unwrap()), u32::from_le_bytes(b[4..].try_into().unwrap())];
            assert_eq!(far_jump_target(pc, words), target);
            assert_eq!(words[0] & 0x1f, 1, "rd kept");
            assert_eq!(words[1] & 0x3ff, 0x21, "rd, rj kept");
        }
        assert!(far_jump(0, 1 << 40).is_err());
        assert!(far_jump(0, (1 << 37) - 0x2_0000 - 4).is_ok());
    }

    #[test]
    fn pcala_pair_reaches_target() {
        for (pc, target) in [(0x9000_0000_0c00_1234u64, 0x9000_0000_0031_5ffcu64), (0x1000, 0x1800), (0x5000, 0x0)] {
            let mut hi = 0x1a00_0004u32.to_le_bytes(); // pcalau12i a0, 0
            let mut lo = 0x02c0_0084u32.to_le_bytes(); // addi.d a0, a0, 0
            run(R_LARCH_PCALA_HI20, &mut hi, pc, target).unwrap();
            run(R_LARCH_PCALA_LO12, &mut lo, pc + 4, target).unwrap();
            let hi20 = (u32::from_le_bytes(hi) >> 5) & 0xf_ffff;
            let lo12 = (u32::from_le_bytes(lo) >> 10) & 0xfff;
            let page = (pc & !0xfff).wrapping_add((((hi20 as u64) << 44) as i64 >> 32) as u64);
            let got = page.wrapping_add((((lo12 as u64) << 52) as i64 >> 52) as u64);
            assert_eq!(got, target);
        }
        let mut hi = 0x1a00_0004u32.to_le_bytes();
        assert!(matches!(run(R_LARCH_PCALA_HI20, &mut hi, 0, 1 << 32), Err(RelocError::Overflow { .. })));
    }

    /// Runs a `pcalau12i` (at `pc`) through the kprobe simulator, as a probe hit would, then adds
    /// the 12-bit immediate of the `addi.d`/`ld.d` after it (not a PC-relative instruction: the
    /// simulator steps those).
    fn execute_pcala(pc: u64, hi: u32, lo: u32) -> u64 {
        use arch::kprobe_insn::{classify, simulate, Class};
        let Class::Simulate(s) = classify(hi) else { panic!("{hi:#010x} is not simulated") };
        let mut regs = [0u64; 32];
        assert_eq!(simulate(s, pc, &mut regs), pc + 4);
        let rd = (hi & 31) as usize;
        assert_eq!((lo >> 5) & 31, rd as u32, "the pair uses one register");
        // addi.d/ld.d sign-extend their 12-bit immediate (ld.d's result here is the address it
        // loads from).
        let si12 = (((lo >> 10) & 0xfff) as i64) << 52 >> 52;
        regs[rd].wrapping_add(si12 as u64)
    }

    /// Runs a `pcaddu18i` + `jirl` pair at `pc` through the kprobe simulator; returns where the
    /// `jirl` goes.
    fn execute_call36(pc: u64, words: [u32; 2]) -> u64 {
        use arch::kprobe_insn::{classify, simulate, Class};
        let mut regs = [0u64; 32];
        let Class::Simulate(a) = classify(words[0]) else { panic!() };
        let Class::Simulate(b) = classify(words[1]) else { panic!() };
        assert_eq!(simulate(a, pc, &mut regs), pc + 4);
        simulate(b, pc + 4, &mut regs)
    }

    fn words(b: &[u8]) -> Vec<u32> {
        b.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// The relocations on the rounding and reach edges, checked by executing what they wrote
    /// with the kprobe simulator (which shares `arch::pcrel` only for what an instruction
    /// computes, not for how a relocation rounds).
    #[test]
    fn pcala_edges_execute_to_the_target() {
        const PCALAU12I_A0: u32 = 0x1a00_0004;
        const ADDI_D_A0: u32 = 0x02c0_0084;
        const LD_D_A0: u32 = 0x28c0_0084;
        let gib2 = 1u64 << 31;
        for pc in [0x9000_0000_0c00_0000u64, 0x9000_0000_0c00_07fc, 0x9000_0000_0c00_0800, 0x9000_0000_0c00_0ffc] {
            let p = pc & !0xfff;
            let mut targets = Vec::new();
            for page in [p, p + 0x1000, p - 0x1000, p - 0x12_3000, p + 0x12_3000, p - 0x4000_0000] {
                targets.extend([0u64, 0x7ff, 0x800, 0xfff].map(|low| page + low));
            }
            // The last reachable target on each side, the first unreachable beyond it.
            let (last_up, last_down) = (p + gib2 - 0x801, p - gib2 - 0x800);
            targets.extend([last_up, last_down]);
            for t in targets {
                for (rtype_hi, rtype_lo, lo_word) in [(R_LARCH_PCALA_HI20, R_LARCH_PCALA_LO12, ADDI_D_A0), (R_LARCH_GOT_PC_HI20, R_LARCH_GOT_PC_LO12, LD_D_A0)] {
                    let mut b = [0u8; 8];
                    b[..4].copy_from_slice(&PCALAU12I_A0.to_le_bytes());
                    b[4..].copy_from_slice(&lo_word.to_le_bytes());
                    // PCALA reaches `value`, GOT_PC the GOT entry `got`.
                    let (value, got) = if rtype_hi == R_LARCH_GOT_PC_HI20 { (0x1234, t) } else { (t, 0) };
                    apply(&mut b, &RelocInput { rtype: rtype_hi, offset: 0, place: pc, value, got }).unwrap();
                    apply(&mut b, &RelocInput { rtype: rtype_lo, offset: 4, place: pc + 4, value, got }).unwrap();
                    let w = words(&b);
                    assert_eq!(w[0] & !(0xf_ffff << 5), PCALAU12I_A0, "only the si20 field changes");
                    assert_eq!(w[1] & !(0xfff << 10), lo_word, "only the si12 field changes");
                    assert_eq!(execute_pcala(pc, w[0], w[1]), t, "{} {pc:#x} -> {t:#x}", name(rtype_hi));
                }
            }
            for t in [last_up + 1, last_up + 0x800, last_down - 1, last_down - 0x1000] {
                let mut b = PCALAU12I_A0.to_le_bytes();
                let e = apply(&mut b, &RelocInput { rtype: R_LARCH_PCALA_HI20, offset: 0, place: pc, value: t, got: 0 });
                assert_eq!(e, Err(RelocError::Overflow { rtype: R_LARCH_PCALA_HI20, value: t.wrapping_sub(pc) as i64 }));
                assert_eq!(u32::from_le_bytes(b), PCALAU12I_A0, "nothing written");
                let e = apply(&mut b, &RelocInput { rtype: R_LARCH_GOT_PC_HI20, offset: 0, place: pc, value: 0, got: t });
                assert!(matches!(e, Err(RelocError::Overflow { rtype: R_LARCH_GOT_PC_HI20, .. })));
            }
        }
    }

    #[test]
    fn call36_edges_execute_to_the_target() {
        // pcaddu18i $ra, 0; jirl $ra, $ra, 0 (the call rustc emits), and the stub's t1 pair.
        let pair = [0x1e00_0001u32, 0x4c00_0021];
        for pc in [0x9000_0000_0c00_0000u64, 0x9000_0000_0c00_07fc, 0x9000_0000_0c00_0ffc, 0x9000_0000_0020_0000] {
            let last_up = pc + (arch::pcrel::CALL36_END - 4) as u64;
            let last_down = pc.wrapping_add(arch::pcrel::CALL36_MIN as u64);
            let mut targets = vec![pc, pc + 4, pc - 4, pc + 0x1_fffc, pc + 0x2_0000, pc - 0x2_0000, pc - 0x2_0004, last_up, last_down];
            targets.extend([0x7fcu64, 0x800, 0xffc].map(|low| (pc & !0xfff) - 0x1_0000_0000 + low));
            for t in targets {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&pair[0].to_le_bytes());
                b[4..].copy_from_slice(&pair[1].to_le_bytes());
                apply(&mut b, &RelocInput { rtype: R_LARCH_CALL36, offset: 0, place: pc, value: t, got: 0 }).unwrap();
                let w = words(&b);
                assert_eq!(execute_call36(pc, [w[0], w[1]]), t, "CALL36 {pc:#x} -> {t:#x}");
                assert_eq!(far_jump_target(pc, [w[0], w[1]]), t);
                let stub = far_jump(pc, t).unwrap();
                assert_eq!(execute_call36(pc, stub), t, "far jump {pc:#x} -> {t:#x}");
            }
            for t in [last_up + 4, last_down - 4] {
                let mut b = [0u8; 8];
                let e = apply(&mut b, &RelocInput { rtype: R_LARCH_CALL36, offset: 0, place: pc, value: t, got: 0 });
                assert_eq!(e, Err(RelocError::Overflow { rtype: R_LARCH_CALL36, value: t.wrapping_sub(pc) as i64 }));
                assert_eq!(b, [0; 8], "nothing written");
                assert!(far_jump(pc, t).is_err());
            }
        }
    }

    #[test]
    fn data_relocations() {
        let mut b = [0u8; 8];
        run(R_LARCH_64, &mut b, 0, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0x1122_3344_5566_7788);
        let mut b = [0u8; 4];
        run(R_LARCH_32_PCREL, &mut b, 0x2000, 0x1000).unwrap();
        assert_eq!(i32::from_le_bytes(b), -0x1000);
        assert!(run(R_LARCH_32_PCREL, &mut b, 0, 1 << 33).is_err());
        let mut b = 10u32.to_le_bytes();
        run(R_LARCH_ADD32, &mut b, 0, 5).unwrap();
        run(R_LARCH_SUB32, &mut b, 0, 3).unwrap();
        assert_eq!(u32::from_le_bytes(b), 12);
        let mut b = [0xc5u8];
        run(R_LARCH_ADD6, &mut b, 0, 0x3f).unwrap();
        assert_eq!(b[0], 0xc4, "6-bit wrap, top bits kept");
        let mut b = [0x80u8, 0x00];
        run(R_LARCH_ADD_ULEB128, &mut b, 0, 300).unwrap();
        assert_eq!(read_uleb128(&b), Some((300, 2)));
        let mut b = [0x05u8];
        assert_eq!(run(R_LARCH_ADD_ULEB128, &mut b, 0, 200), Err(RelocError::BadUleb128));
        assert_eq!(run(12345, &mut b, 0, 0), Err(RelocError::Unsupported(12345)));
        assert!(matches!(apply(&mut [0u8; 3], &RelocInput { rtype: R_LARCH_32, offset: 0, place: 0, value: 0, got: 0 }), Err(RelocError::OutOfBounds { .. })));
        assert!(matches!(apply(&mut [0u8; 8], &RelocInput { rtype: R_LARCH_64, offset: u64::MAX, place: 0, value: 0, got: 0 }), Err(RelocError::OutOfBounds { .. })));
    }
}
