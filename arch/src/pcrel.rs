//! LoongArch64 PC-relative address arithmetic, in one place for everything that executes or
//! writes it: the kprobe simulator ([`crate::kprobe_insn::simulate`] of `pcaddi`, `pcaddu12i`,
//! `pcaddu18i`, `pcalau12i`), the module loader's relocations (`R_LARCH_PCALA_HI20/LO12`,
//! `R_LARCH_GOT_PC_HI20/LO12`, `R_LARCH_CALL36`) and far-jump stubs, and the `pcaddu18i` + `jirl`
//! encoder of [`crate::insn::encode_call36`].
//!
//! There are two directions, and the tests check each against the other:
//!
//! * **execute**: what an instruction computes at `pc` from its immediate ([`pcaddi`],
//!   [`pcaddu12i`], [`pcaddu18i`], [`pcalau12i`]), and where a whole pair lands
//!   ([`pcala_target`], [`call36_target`]);
//! * **encode**: the immediate fields a relocation writes so that a pair at `pc` reaches a target
//!   ([`pcala_fields`], [`call36_fields`]), or an error when it cannot.
//!
//! # `pcalau12i` + a 12-bit low part (`PCALA`, `GOT_PC`)
//!
//! `pcalau12i rd, si20` sets `rd = page(pc) + (si20 << 12)`, where `page(x) = x & !0xfff`. The
//! instruction that follows (`addi.d`, `ld.d`, `st.d`, ...) adds the target's low 12 bits
//! **sign-extended**, so when bit 11 of the target is set (low 12 bits `0x800..=0xfff`) it subtracts
//! `0x1000 - low`, and the page `pcalau12i` produces must be one page higher to make up for it:
//!
//! ```text
//! hi20 = (page(target + 0x800) - page(pc)) >> 12      (a signed number of pages)
//! lo12 = target & 0xfff                               (the paired instruction sign-extends it)
//! ```
//!
//! `hi20` must fit 20 signed bits, so a target is reachable from `pc` when
//! `page(pc) - 2 GiB - 0x800 <= target < page(pc) + 2 GiB - 0x800` ([`pcala_reachable`]).
//!
//! # `pcaddu18i` + `jirl` (`CALL36`)
//!
//! `pcaddu18i rd, si20` sets `rd = pc + (si20 << 18)`; `jirl link, rd, offs16` jumps to
//! `rd + (offs16 << 2)`, whose signed offset spans `-128 KiB..128 KiB`. With
//! `off = target - pc` (a multiple of 4) the high part is rounded by bit 17 of `off`:
//!
//! ```text
//! hi20   = (off + 0x2_0000) >> 18
//! offs16 = (off - (hi20 << 18)) >> 2                  (in -0x8000..0x8000)
//! ```
//!
//! and `hi20` must fit 20 signed bits: `-128 GiB - 128 KiB <= off < 128 GiB - 128 KiB`.
//!
//! Everything is pure arithmetic on `u64` values that wraps modulo 2^64 (no memory access, no
//! panics), unit-tested on the host.

use core::fmt;

use crate::insn::sign_extend;

/// Bytes per `pcalau12i` page.
pub const PAGE_SIZE: u64 = 0x1000;
/// How far a `pcalau12i` pair reaches, in bytes from `page(pc)`: the page delta is a signed
/// 20-bit number of pages, `[-PCALA_REACH, PCALA_REACH)` (the target itself is further shifted by
/// `-0x800`, see [`pcala_reachable`]).
pub const PCALA_REACH: u64 = 0x8000_0000;
/// Largest `target - pc` a `pcaddu18i` + `jirl` pair reaches, plus 4 (the pair reaches
/// `[CALL36_MIN, CALL36_END)`).
pub const CALL36_END: i64 = (1 << 37) - 0x2_0000;
/// Smallest `target - pc` a `pcaddu18i` + `jirl` pair reaches.
pub const CALL36_MIN: i64 = -(1 << 37) - 0x2_0000;

/// Why a PC-relative pair cannot reach a target. `offset` is `target - pc` (as a signed number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcrelError {
    /// The target is beyond the pair's reach.
    OutOfRange {
        /// `target - pc`.
        offset: i64,
    },
    /// A jump whose offset is not a multiple of 4 bytes.
    Misaligned {
        /// `target - pc`.
        offset: i64,
    },
}

impl fmt::Display for PcrelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PcrelError::OutOfRange { offset } => write!(f, "PC-relative offset {offset:#x} is out of reach"),
            PcrelError::Misaligned { offset } => write!(f, "PC-relative jump offset {offset:#x} is not 4-byte aligned"),
        }
    }
}

/// The `pcalau12i` page of an address: its low 12 bits cleared.
#[inline]
pub const fn page(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// What `pcaddi rd, si20` at `pc` writes to `rd`: `pc + (si20 << 2)`.
#[inline]
pub const fn pcaddi(pc: u64, si20: i32) -> u64 {
    pc.wrapping_add(((si20 as i64) << 2) as u64)
}

/// What `pcaddu12i rd, si20` at `pc` writes to `rd`: `pc + (si20 << 12)`.
#[inline]
pub const fn pcaddu12i(pc: u64, si20: i32) -> u64 {
    pc.wrapping_add(((si20 as i64) << 12) as u64)
}

/// What `pcaddu18i rd, si20` at `pc` writes to `rd`: `pc + (si20 << 18)`.
#[inline]
pub const fn pcaddu18i(pc: u64, si20: i32) -> u64 {
    pc.wrapping_add(((si20 as i64) << 18) as u64)
}

/// What `pcalau12i rd, si20` at `pc` writes to `rd`: `page(pc + (si20 << 12))`, which is
/// `page(pc) + (si20 << 12)`.
#[inline]
pub const fn pcalau12i(pc: u64, si20: i32) -> u64 {
    page(pcaddu12i(pc, si20))
}

/// The signed 20-bit immediate of a 20-bit field (`si20` of the `1RI20` instructions).
#[inline]
pub const fn si20_of_field(field: u32) -> i32 {
    sign_extend((field & 0xF_FFFF) as u64, 20) as i32
}

/// The page delta, in pages, that a `pcalau12i` at `pc` must add so that adding the target's
/// sign-extended low 12 bits lands on `target`: `(page(target + 0x800) - page(pc)) >> 12`, not
/// range-checked (it fits 20 bits exactly when [`pcala_reachable`]).
#[inline]
pub const fn pcala_hi20(pc: u64, target: u64) -> i64 {
    (page(target.wrapping_add(0x800)).wrapping_sub(page(pc)) as i64) >> 12
}

/// The 12-bit field the instruction after a `pcalau12i` carries for `target` (its low 12 bits,
/// which that instruction sign-extends).
#[inline]
pub const fn pcala_lo12(target: u64) -> u32 {
    (target & 0xFFF) as u32
}

/// Whether `v` fits a signed field of `bits` bits (1..=63).
#[inline]
pub const fn fits_signed(v: i64, bits: u32) -> bool {
    let lim = 1i64 << (bits - 1);
    -lim <= v && v < lim
}

/// Whether a `pcalau12i` at `pc` plus a low-12 instruction can reach `target`.
#[inline]
pub const fn pcala_reachable(pc: u64, target: u64) -> bool {
    fits_signed(pcala_hi20(pc, target), 20)
}

/// The fields `(hi20, lo12)` of a `pcalau12i` at `pc` and its paired low-12 instruction that
/// reach `target`: the 20-bit `si20` field of the `pcalau12i` and the 12-bit immediate of the
/// next instruction, both as raw (masked) field values.
pub const fn pcala_fields(pc: u64, target: u64) -> Result<(u32, u32), PcrelError> {
    let hi = pcala_hi20(pc, target);
    if !fits_signed(hi, 20) {
        return Err(PcrelError::OutOfRange { offset: target.wrapping_sub(pc) as i64 });
    }
    Ok(((hi as u32) & 0xF_FFFF, pcala_lo12(target)))
}

/// Where a `pcalau12i` at `pc` with field `hi20`, followed by an instruction adding the
/// sign-extended 12-bit field `lo12`, points (the inverse of [`pcala_fields`]).
#[inline]
pub const fn pcala_target(pc: u64, hi20: u32, lo12: u32) -> u64 {
    pcalau12i(pc, si20_of_field(hi20)).wrapping_add(sign_extend((lo12 & 0xFFF) as u64, 12) as u64)
}

/// The fields `(hi20, offs16)` of a `pcaddu18i` at `pc` and the `jirl` after it that jump to
/// `target`: the 20-bit `si20` of `pcaddu18i` and the 16-bit word offset of `jirl`, as raw
/// (masked) field values. Only `target - pc` matters; it must be a multiple of 4 in
/// `[CALL36_MIN, CALL36_END)`.
pub const fn call36_fields(pc: u64, target: u64) -> Result<(u32, u32), PcrelError> {
    let off = target.wrapping_sub(pc) as i64;
    if off & 3 != 0 {
        return Err(PcrelError::Misaligned { offset: off });
    }
    // The jirl part is signed (-0x2_0000..0x2_0000 bytes): round the high part by bit 17.
    let hi = off.wrapping_add(0x2_0000) >> 18;
    if !fits_signed(hi, 20) {
        return Err(PcrelError::OutOfRange { offset: off });
    }
    let lo = (off - (hi << 18)) >> 2;
    Ok(((hi as u32) & 0xF_FFFF, (lo as u32) & 0xFFFF))
}

/// Where a `pcaddu18i` at `pc` with field `hi20` followed by a `jirl` through its register with
/// field `offs16` jumps (the inverse of [`call36_fields`]).
#[inline]
pub const fn call36_target(pc: u64, hi20: u32, offs16: u32) -> u64 {
    let offs = sign_extend(((offs16 & 0xFFFF) as u64) << 2, 18);
    pcaddu18i(pc, si20_of_field(hi20)).wrapping_add(offs as u64)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::insn::{encode_addi_d, encode_jirl, encode_pcaddu18i, Reg};
    use crate::kprobe_insn::{classify, simulate, Class, Simulated};
    use std::vec::Vec;

    const PCALAU12I_BASE: u32 = 0x1A00_0000;
    const GIB: u64 = 1 << 30;

    fn sim(word: u32) -> Simulated {
        match classify(word) {
            Class::Simulate(s) => s,
            other => panic!("{word:#010x} is not simulated: {other:?}"),
        }
    }

    /// Runs `pcalau12i $t0, hi20` at `pc` through the kprobe simulator, then the paired
    /// `addi.d $t0, $t0, lo12` (decoded from its word) on the result.
    fn run_pcala(pc: u64, hi20: u32, lo12: u32) -> u64 {
        let w0 = PCALAU12I_BASE | ((hi20 & 0xF_FFFF) << 5) | Reg::T0 as u32;
        let si12 = sign_extend(lo12 as u64, 12);
        let w1 = encode_addi_d(Reg::T0, Reg::T0, si12).unwrap();
        let mut r = [0u64; 32];
        assert_eq!(simulate(sim(w0), pc, &mut r), pc.wrapping_add(4));
        // addi.d is not PC-relative (the simulator steps it): add its immediate field by hand.
        let imm = sign_extend(((w1 >> 10) & 0xFFF) as u64, 12);
        r[Reg::T0 as usize].wrapping_add(imm as u64)
    }

    /// Runs `pcaddu18i $t1, hi20; jirl $ra, $t1, offs16` at `pc` through the kprobe simulator;
    /// returns where the `jirl` goes.
    fn run_call36(pc: u64, hi20: u32, offs16: u32) -> u64 {
        let w0 = encode_pcaddu18i(Reg::T1, si20_of_field(hi20) as i64).unwrap();
        let w1 = encode_jirl(Reg::Ra, Reg::T1, sign_extend((offs16 as u64) << 2, 18)).unwrap();
        let mut r = [0u64; 32];
        assert_eq!(simulate(sim(w0), pc, &mut r), pc.wrapping_add(4));
        let to = simulate(sim(w1), pc.wrapping_add(4), &mut r);
        assert_eq!(r[Reg::Ra as usize], pc.wrapping_add(8), "jirl links past the pair");
        to
    }

    /// Encodes a pcala pair for `pc -> target`, checks it with the simulator and with
    /// [`pcala_target`], and returns the fields.
    #[track_caller]
    fn pcala_round_trip(pc: u64, target: u64) -> (u32, u32) {
        let (hi, lo) = pcala_fields(pc, target).unwrap_or_else(|e| panic!("{pc:#x} -> {target:#x}: {e}"));
        assert!(hi <= 0xF_FFFF && lo <= 0xFFF);
        assert_eq!(run_pcala(pc, hi, lo), target, "simulated pcalau12i + addi.d, {pc:#x} -> {target:#x}");
        assert_eq!(pcala_target(pc, hi, lo), target, "pcala_target, {pc:#x} -> {target:#x}");
        assert!(pcala_reachable(pc, target));
        (hi, lo)
    }

    #[track_caller]
    fn call36_round_trip(pc: u64, target: u64) -> (u32, u32) {
        let (hi, lo) = call36_fields(pc, target).unwrap_or_else(|e| panic!("{pc:#x} -> {target:#x}: {e}"));
        assert!(hi <= 0xF_FFFF && lo <= 0xFFFF);
        assert_eq!(run_call36(pc, hi, lo), target, "simulated pcaddu18i + jirl, {pc:#x} -> {target:#x}");
        assert_eq!(call36_target(pc, hi, lo), target, "call36_target, {pc:#x} -> {target:#x}");
        (hi, lo)
    }

    #[test]
    fn single_instructions() {
        let pc = 0x9000_0000_0c00_0ffcu64;
        assert_eq!(page(pc), 0x9000_0000_0c00_0000);
        assert_eq!(page(0xfff), 0);
        assert_eq!(page(0x1000), 0x1000);
        assert_eq!(pcaddi(pc, 1), pc + 4);
        assert_eq!(pcaddi(pc, -0x8_0000), pc - 0x20_0000);
        assert_eq!(pcaddu12i(pc, 1), pc + 0x1000);
        assert_eq!(pcaddu12i(pc, -1), pc - 0x1000);
        assert_eq!(pcaddu18i(pc, 3), pc + 0xc_0000);
        assert_eq!(pcaddu18i(pc, -0x8_0000), pc - 0x20_0000_0000);
        assert_eq!(pcalau12i(pc, 0), 0x9000_0000_0c00_0000);
        assert_eq!(pcalau12i(pc, 1), 0x9000_0000_0c00_1000);
        assert_eq!(pcalau12i(pc, -1), 0x9000_0000_0bff_f000);
        assert_eq!(pcalau12i(pc, 0x7_ffff), 0x9000_0000_8bff_f000);
        assert_eq!(pcalau12i(pc, -0x8_0000), 0x8fff_ffff_8c00_0000);
        // Wrapping at both ends of the address space.
        assert_eq!(pcalau12i(0xfff, -1), 0xffff_ffff_ffff_f000);
        assert_eq!(pcalau12i(u64::MAX, 1), 0);
        assert_eq!(pcaddu18i(u64::MAX - 3, 1), 0x3_fffc);
        assert_eq!(si20_of_field(0x8_0000), -0x8_0000);
        assert_eq!(si20_of_field(0x7_ffff), 0x7_ffff);
        assert_eq!(si20_of_field(0xf_ffff), -1);
        assert_eq!(si20_of_field(0x1f_ffff), -1, "bits above the field are ignored");
        assert!(fits_signed(0x7_ffff, 20) && fits_signed(-0x8_0000, 20));
        assert!(!fits_signed(0x8_0000, 20) && !fits_signed(-0x8_0001, 20));
    }

    /// Every low-12 edge of the target and of the pc, both directions, with fields checked
    /// by hand as well as by the round trip.
    #[test]
    fn pcala_low_12_edges() {
        let lows = [0x000u64, 0x001, 0x7fc, 0x7ff, 0x800, 0x801, 0xffc, 0xfff];
        let pages = [0x9000_0000_0c00_0000u64, 0x9000_0000_0020_0000, 0x1000_0000, 0x8000_0000_0000_0000];
        let deltas: [i64; 7] = [0, 0x1000, -0x1000, 0x12_3000, -0x12_3000, 0x7fff_e000, -0x7fff_f000];
        for &pp in &pages {
            for &pl in &lows {
                let pc = pp + pl;
                for &d in &deltas {
                    for &tl in &lows {
                        let tpage = pp.wrapping_add(d as u64);
                        let target = tpage + tl;
                        let (hi, lo) = pcala_round_trip(pc, target);
                        assert_eq!(lo as u64, tl);
                        // The page rounds up exactly when bit 11 of the target is set; the pc's
                        // low bits never matter.
                        let want = (d >> 12) + (tl >= 0x800) as i64;
                        assert_eq!(si20_of_field(hi) as i64, want, "{pc:#x} -> {target:#x}");
                    }
                }
            }
        }
        // The three edges named by hand: 0x7ff stays on its page, 0x800 and 0xfff go one up
        // and come back down through the sign-extended low part.
        let pc = 0x9000_0000_0c00_0123;
        assert_eq!(pcala_fields(pc, 0x9000_0000_0c01_07ff), Ok((0x10, 0x7ff)));
        assert_eq!(pcala_fields(pc, 0x9000_0000_0c01_0800), Ok((0x11, 0x800)));
        assert_eq!(pcala_fields(pc, 0x9000_0000_0c01_0fff), Ok((0x11, 0xfff)));
        // Negative pages: target below the pc.
        assert_eq!(pcala_fields(pc, 0x9000_0000_0bff_f7ff), Ok((0xf_ffff, 0x7ff)));
        assert_eq!(pcala_fields(pc, 0x9000_0000_0bff_f800), Ok((0, 0x800)));
        assert_eq!(pcala_fields(pc, 0x9000_0000_0bff_e800), Ok((0xf_ffff, 0x800)));
        assert_eq!(pcala_fields(pc, 0x9000_0000_0bff_efff), Ok((0xf_ffff, 0xfff)));
    }

    /// The ±2 GiB reach of `pcalau12i`: the last reachable and first unreachable target on both
    /// sides, for pcs at several low-12 positions (the reach is measured from the pc's page).
    #[test]
    fn pcala_reach_edges() {
        for pc in [0x9000_0000_0c00_0000u64, 0x9000_0000_0c00_07ff, 0x9000_0000_0c00_0800, 0x9000_0000_0c00_0fff, 0x8000_0000, 0x7fff_f800] {
            let p = page(pc);
            let last_up = p + 2 * GIB - 0x801;
            let first_up = p + 2 * GIB - 0x800;
            let last_down = p.wrapping_sub(2 * GIB + 0x800);
            let first_down = last_down.wrapping_sub(1);
            assert_eq!(pcala_round_trip(pc, last_up), (0x7_ffff, 0x7ff));
            assert_eq!(pcala_round_trip(pc, last_down), (0x8_0000, 0x800));
            // Just inside, on the other low-12 edges.
            pcala_round_trip(pc, p + 2 * GIB - 0x1000);
            pcala_round_trip(pc, p + 2 * GIB - 0x1001);
            pcala_round_trip(pc, p.wrapping_sub(2 * GIB));
            pcala_round_trip(pc, p.wrapping_sub(2 * GIB - 0x7ff));
            for t in [first_up, first_up + 1, p + 2 * GIB, first_down, first_down - 0x7ff, p.wrapping_sub(4 * GIB)] {
                assert!(!pcala_reachable(pc, t), "{pc:#x} -> {t:#x}");
                assert_eq!(pcala_fields(pc, t), Err(PcrelError::OutOfRange { offset: t.wrapping_sub(pc) as i64 }));
            }
        }
        // Across the top of the address space the delta wraps like the hardware's adder.
        pcala_round_trip(0xffff_ffff_ffff_f000, 0x7ff);
        pcala_round_trip(0x10, 0xffff_ffff_ffff_f800);
    }

    /// `pcaddu18i` + `jirl`: rounding by bit 17 of the offset, negative offsets, pcs at every
    /// low-12 edge (they do not matter for this pair, which adds to the pc itself).
    #[test]
    fn call36_rounding_edges() {
        let pcs = [0x9000_0000_0c00_0000u64, 0x9000_0000_0c00_07fc, 0x9000_0000_0c00_0800, 0x9000_0000_0c00_0ffc, 0x1000];
        let offs: [i64; 14] =
            [0, 4, -4, 0x1_fffc, 0x2_0000, 0x2_0004, -0x2_0000, -0x2_0004, 0x3_fffc, 0x4_0000, 0x7ff, -0x7fd, 0x800, -0x800];
        for &pc in &pcs {
            for &o in &offs {
                let o = o & !3;
                let (hi, lo) = call36_round_trip(pc, pc.wrapping_add(o as u64));
                let lo_bytes = sign_extend((lo as u64) << 2, 18);
                assert!((-0x2_0000..0x2_0000).contains(&lo_bytes));
                assert_eq!(((si20_of_field(hi) as i64) << 18) + lo_bytes, o);
            }
        }
        // By hand: 0x1_fffc stays in the jirl part, 0x2_0000 rounds the high part up.
        assert_eq!(call36_fields(0x1000, 0x1000 + 0x1_fffc), Ok((0, 0x7fff)));
        assert_eq!(call36_fields(0x1000, 0x1000 + 0x2_0000), Ok((1, 0x8000)));
        assert_eq!(call36_fields(0x2_1000, 0x1000), Ok((0, 0x8000)), "-0x2_0000 fits the jirl part alone");
        assert_eq!(call36_fields(0x2_1004, 0x1000), Ok((0xf_ffff, 0x7fff)));
        assert_eq!(call36_fields(0, 2), Err(PcrelError::Misaligned { offset: 2 }));
        assert_eq!(call36_fields(1, 0x101), Ok((0, 0x40)), "only the distance must be aligned");
    }

    /// The ±128 GiB reach of `pcaddu18i` + `jirl`: last reachable and first unreachable offset on
    /// both sides.
    #[test]
    fn call36_reach_edges() {
        for pc in [0x9000_0000_0c00_0000u64, 0x9000_0000_0020_0000, 0x10_0000_0000, 0xffff_ffff_ffff_f000] {
            let last_up = pc.wrapping_add((CALL36_END - 4) as u64);
            let last_down = pc.wrapping_add(CALL36_MIN as u64);
            assert_eq!(call36_round_trip(pc, last_up), (0x7_ffff, 0x7fff));
            assert_eq!(call36_round_trip(pc, last_down), (0x8_0000, 0x8000));
            call36_round_trip(pc, pc.wrapping_add((1u64 << 37) - 0x4_0000));
            call36_round_trip(pc, pc.wrapping_sub(1 << 37));
            for o in [CALL36_END, CALL36_END + 4, 1 << 37, CALL36_MIN - 4, -(1 << 38), 1 << 40] {
                let t = pc.wrapping_add(o as u64);
                assert_eq!(call36_fields(pc, t), Err(PcrelError::OutOfRange { offset: o }), "{o:#x}");
            }
        }
        assert_eq!(CALL36_END, 0x1f_fffe_0000);
        assert_eq!(CALL36_MIN, -0x20_0002_0000);
    }

    /// Random pcs and targets within reach: the encoder and the simulator agree.
    #[test]
    fn random_round_trips() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seen = Vec::new();
        for _ in 0..20_000 {
            let pc = next() & !3;
            let d = (next() as i64) >> (64 - 32);
            let t = pc.wrapping_add(d as u64);
            match pcala_fields(pc, t) {
                Ok((hi, lo)) => {
                    assert_eq!(run_pcala(pc, hi, lo), t);
                    seen.push(true);
                }
                Err(PcrelError::OutOfRange { .. }) => {
                    // Only the outer 2 KiB + page of the ±2 GiB window may be out of reach.
                    assert!(!(-0x7fff_e000..0x7fff_e000).contains(&d), "{pc:#x} -> {t:#x}");
                    seen.push(false);
                }
                Err(e) => panic!("{e}"),
            }
            let d = ((next() as i64) >> (64 - 38)) & !3;
            let t = pc.wrapping_add(d as u64);
            match call36_fields(pc, t) {
                Ok((hi, lo)) => assert_eq!(run_call36(pc, hi, lo), t),
                Err(e) => assert!(!(CALL36_MIN..CALL36_END).contains(&d), "{d:#x}: {e}"),
            }
        }
        assert!(seen.iter().filter(|&&s| s).count() > 19_000);
    }

    #[test]
    fn display() {
        use std::string::ToString;
        assert_eq!(PcrelError::OutOfRange { offset: 0x8000_0000 }.to_string(), "PC-relative offset 0x80000000 is out of reach");
        assert_eq!(PcrelError::Misaligned { offset: 2 }.to_string(), "PC-relative jump offset 0x2 is not 4-byte aligned");
    }
}
