//! Instruction analysis for kprobes: which words may be probed, which must be simulated, and how.
//!
//! A kprobe overwrites the probed instruction with `break BRK_KPROBE_BP` ([`KPROBE_BP_INSN`]).
//! When that break traps, the kernel must still perform the original instruction, and there are
//! two ways to do so:
//!
//! * **Step**: copy the word into an out-of-line slot followed by `break BRK_KPROBE_SSTEPBP`
//!   ([`slot_words`]), return into the slot, and resume after the probe address when the second
//!   break traps. This only works for instructions whose effect does not depend on their address.
//! * **Simulate**: PC-relative arithmetic (`pcaddi`, `pcaddu12i`, `pcaddu18i`, `pcalau12i`) and
//!   every branch or jump would compute the wrong result from the slot, so they are decoded
//!   ([`classify`]) and emulated on the trapped register file ([`simulate`]).
//!
//! Some instructions cannot be probed at all and are [`Refused`]. The classification follows
//! Linux's `insns_not_supported()` / `insns_need_simulation()` (`arch/loongarch/kernel/inst.c`),
//! plus the privileged and trapping instructions this kernel refuses on its own.
//!
//! The PC-relative arithmetic itself (what `pcalau12i` & co. compute) lives in [`crate::pcrel`],
//! shared with the module loader's relocations.
//!
//! Everything here is pure arithmetic on `u32`/`u64` values (no memory access, no allocation, no
//! panics), so it is unit tested on the host.

use core::fmt;

use crate::insn::{
    offs16_of, offs26_of, sign_extend, BEQZ_BASE, BL_BASE, BNEZ_BASE, BREAK0, B_BASE, INSN_SIZE,
    JIRL_BASE, PCADDU18I_BASE,
};
use crate::pcrel;

/// `break` code of the breakpoint a kprobe places over the probed instruction
/// (Linux's `BRK_KPROBE_BP`, `arch/loongarch/include/uapi/asm/break.h`).
pub const BRK_KPROBE_BP: u16 = 10;
/// `break` code that ends an out-of-line single-step slot
/// (Linux's `BRK_KPROBE_SSTEPBP`, `arch/loongarch/include/uapi/asm/break.h`).
pub const BRK_KPROBE_SSTEPBP: u16 = 11;
/// `break BRK_KPROBE_BP` (`0x002a000a`): the word written over a probed instruction.
pub const KPROBE_BP_INSN: u32 = BREAK0 | BRK_KPROBE_BP as u32;
/// `break BRK_KPROBE_SSTEPBP` (`0x002a000b`): the word that follows the instruction in a slot.
pub const KPROBE_SSTEPBP_INSN: u32 = BREAK0 | BRK_KPROBE_SSTEPBP as u32;

/// Opcode bits 31..26 (branches, jumps).
const MASK6: u32 = 0xFC00_0000;
/// Opcode bits 31..25 (the `1RI20` format: `pcaddi` & co.).
const MASK7: u32 = 0xFE00_0000;
/// Opcode bits 31..24 (the `2RI14` format: `ll`/`sc`; the CSR instructions).
const MASK8: u32 = 0xFF00_0000;
/// Opcode bits 31..15 (the `3R` format and the `code15` instructions).
const MASK17: u32 = 0xFFFF_8000;

/// `pcaddi rd, si20`.
const PCADDI_BASE: u32 = 0x1800_0000;
/// `pcalau12i rd, si20`.
const PCALAU12I_BASE: u32 = 0x1A00_0000;
/// `pcaddu12i rd, si20`.
const PCADDU12I_BASE: u32 = 0x1C00_0000;
/// `bceqz cj, offs21` / `bcnez cj, offs21` (bits 9..8 = 0b00 / 0b01; the whole major opcode).
const BCXXZ_BASE: u32 = 0x4800_0000;
/// `beq rj, rd, offs16`.
const BEQ_BASE: u32 = 0x5800_0000;
/// `bne rj, rd, offs16`.
const BNE_BASE: u32 = 0x5C00_0000;
/// `blt rj, rd, offs16`.
const BLT_BASE: u32 = 0x6000_0000;
/// `bge rj, rd, offs16`.
const BGE_BASE: u32 = 0x6400_0000;
/// `bltu rj, rd, offs16`.
const BLTU_BASE: u32 = 0x6800_0000;
/// `bgeu rj, rd, offs16`.
const BGEU_BASE: u32 = 0x6C00_0000;

/// `ll.w rd, rj, si14`.
const LL_W_BASE: u32 = 0x2000_0000;
/// `sc.w rd, rj, si14`.
const SC_W_BASE: u32 = 0x2100_0000;
/// `ll.d rd, rj, si14`.
const LL_D_BASE: u32 = 0x2200_0000;
/// `sc.d rd, rj, si14`.
const SC_D_BASE: u32 = 0x2300_0000;
/// `sc.q rd, rk, rj` (ISA v1.10).
const SC_Q_BASE: u32 = 0x3857_0000;
/// `llacq.w` / `screl.w` / `llacq.d` / `screl.d rd, rj` (ISA v1.10): bits 11..10 pick which.
const LLACQ_SCREL_BASE: u32 = 0x3857_8000;
/// Opcode bits 31..12 shared by the four `llacq`/`screl` forms.
const LLACQ_SCREL_MASK: u32 = 0xFFFF_F000;
/// First atomic memory access opcode (bits 31..15): `amcas.b` (ISA v1.10). Linux's range
/// starts later, at `amswap.w` = `0x3860_0000` (`amswapw_op` = 0x70c0).
const AM_FIRST: u32 = 0x3858_0000;
/// Last atomic memory access opcode (bits 31..15): `ammin_db.du` (Linux's `ammindbdu_op`).
const AM_LAST: u32 = 0x3871_8000;
/// `csrrd rd, csr` (rj = 0), `csrwr rd, csr` (rj = 1), `csrxchg rd, rj, csr` (any other rj).
const CSR_BASE: u32 = 0x0400_0000;
/// `ertn` (the whole word).
const ERTN: u32 = 0x0648_3800;
/// `idle level15`.
const IDLE_BASE: u32 = 0x0648_8000;
/// `syscall code15`.
const SYSCALL_BASE: u32 = 0x002B_0000;

/// An instruction whose effect depends on its own address, decoded for simulation.
///
/// Register fields are ISA register numbers (0..=31); `si20` is the sign-extended 20-bit
/// immediate; `offs` is the sign-extended branch offset in bytes (already multiplied by 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simulated {
    /// `pcaddi rd, si20`: `rd = pc + (si20 << 2)`.
    Pcaddi {
        /// Destination register.
        rd: u8,
        /// Signed 20-bit immediate.
        si20: i32,
    },
    /// `pcaddu12i rd, si20`: `rd = pc + (si20 << 12)`.
    Pcaddu12i {
        /// Destination register.
        rd: u8,
        /// Signed 20-bit immediate.
        si20: i32,
    },
    /// `pcaddu18i rd, si20`: `rd = pc + (si20 << 18)`.
    Pcaddu18i {
        /// Destination register.
        rd: u8,
        /// Signed 20-bit immediate.
        si20: i32,
    },
    /// `pcalau12i rd, si20`: `rd = (pc + (si20 << 12)) & !0xfff`.
    Pcalau12i {
        /// Destination register.
        rd: u8,
        /// Signed 20-bit immediate.
        si20: i32,
    },
    /// `b offs26`: `pc += offs`.
    B {
        /// Byte offset from the branch (26-bit word field, ±128 MiB).
        offs: i64,
    },
    /// `bl offs26`: `ra = pc + 4; pc += offs`.
    Bl {
        /// Byte offset from the branch (26-bit word field, ±128 MiB).
        offs: i64,
    },
    /// `jirl rd, rj, offs16`: `t = rj + offs; rd = pc + 4; pc = t` (`rj` is read before `rd` is
    /// written, so `rd == rj` jumps through the old value).
    Jirl {
        /// Link register (`$zero` for a plain jump).
        rd: u8,
        /// Base register.
        rj: u8,
        /// Byte offset added to `rj` (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `beq rj, rd, offs16`: branch if `rj == rd`.
    Beq {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `bne rj, rd, offs16`: branch if `rj != rd`.
    Bne {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `blt rj, rd, offs16`: branch if `rj < rd`, signed.
    Blt {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `bge rj, rd, offs16`: branch if `rj >= rd`, signed.
    Bge {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `bltu rj, rd, offs16`: branch if `rj < rd`, unsigned.
    Bltu {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `bgeu rj, rd, offs16`: branch if `rj >= rd`, unsigned.
    Bgeu {
        /// First operand.
        rj: u8,
        /// Second operand.
        rd: u8,
        /// Byte offset from the branch (16-bit word field, ±128 KiB).
        offs: i64,
    },
    /// `beqz rj, offs21`: branch if `rj == 0`.
    Beqz {
        /// Tested register.
        rj: u8,
        /// Byte offset from the branch (21-bit word field, ±4 MiB).
        offs: i64,
    },
    /// `bnez rj, offs21`: branch if `rj != 0`.
    Bnez {
        /// Tested register.
        rj: u8,
        /// Byte offset from the branch (21-bit word field, ±4 MiB).
        offs: i64,
    },
}

/// Why an instruction cannot be probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `ll.w`/`ll.d`/`sc.w`/`sc.d`/`sc.q`/`llacq.{w,d}`/`screl.{w,d}`: a break between a
    /// load-linked and its store-conditional clears the link bit, so the sequence retries forever.
    LlSc,
    /// An atomic memory access instruction (`am*`): Linux's `insns_not_supported()` refuses
    /// `amswap.w` .. `ammin_db.du` ("Like llsc instructions, the atomic memory access instructions
    /// should not be supported for probing"); this kernel also refuses the ISA v1.10 additions
    /// `amcas*`, `amswap[_db].{b,h}` and `amadd[_db].{b,h}`, which Linux's range does not cover.
    Atomic,
    /// `ertn`: the break exception has overwritten the ERA/PRMD state it returns through.
    Ertn,
    /// `idle`: the slot runs with interrupts masked, so it would wait forever.
    Idle,
    /// `break` (including another probe's breakpoint) or `dbcl`: a trap inside the probe's own
    /// trap.
    Break,
    /// `syscall`: a trap whose return address would be the slot.
    Syscall,
    /// `csrrd`/`csrwr`/`csrxchg`: the probe's exception entry and return change the CSRs
    /// (ERA, PRMD, ESTAT, ...) they would read or write.
    Csr,
    /// `bceqz`/`bcnez`: branches on the FP condition flags are not simulated (this kernel is
    /// soft-float and never emits them).
    FpBranch,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::LlSc => {
                "ll/sc: a break inside a load-linked/store-conditional sequence breaks it"
            }
            Refused::Atomic => "am*: atomic memory access instructions are not probed",
            Refused::Ertn => "ertn: the probe's break overwrites the state it returns through",
            Refused::Idle => "idle: stepping it with interrupts masked would wait forever",
            Refused::Break => "break: a trap inside the probe's own trap handling",
            Refused::Syscall => "syscall: its trap would return into the single-step slot",
            Refused::Csr => "csr access: the probe's exception entry changes the CSRs it reads",
            Refused::FpBranch => "bceqz/bcnez: FP condition-flag branches are not simulated",
        })
    }
}

/// What kprobes must do with an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Execute the word out of line in a slot ([`slot_words`]).
    Step,
    /// Emulate the decoded instruction with [`simulate`].
    Simulate(Simulated),
    /// Do not probe it.
    Refuse(Refused),
}

/// Classifies `word`: refused, simulated (PC-relative arithmetic and all branches and jumps), or
/// stepped out of line (everything else, including words that are not valid instructions).
pub fn classify(word: u32) -> Class {
    if let Some(r) = refusal(word) {
        return Class::Refuse(r);
    }
    match decode_simulated(word) {
        Some(s) => Class::Simulate(s),
        None => Class::Step,
    }
}

/// Why `word` cannot be probed, if it cannot.
/// `dbcl code`: the debug-mode break (traps like `break`).
const DBCL_BASE: u32 = 0x002A_8000;

fn refusal(word: u32) -> Option<Refused> {
    let op17 = word & MASK17;
    let r = match word & MASK8 {
        LL_W_BASE | SC_W_BASE | LL_D_BASE | SC_D_BASE => Refused::LlSc,
        CSR_BASE => Refused::Csr,
        _ if op17 == SC_Q_BASE || word & LLACQ_SCREL_MASK == LLACQ_SCREL_BASE => Refused::LlSc,
        _ if (AM_FIRST..=AM_LAST).contains(&op17) => Refused::Atomic,
        _ if word == ERTN => Refused::Ertn,
        _ if op17 == IDLE_BASE => Refused::Idle,
        _ if op17 == BREAK0 || op17 == DBCL_BASE => Refused::Break,
        _ if op17 == SYSCALL_BASE => Refused::Syscall,
        _ if word & MASK6 == BCXXZ_BASE => Refused::FpBranch,
        _ => return None,
    };
    Some(r)
}

/// Byte offset of a `beqz`/`bnez` word: 21-bit word offset, low 16 bits in 25..10, high 5 in 4..0.
#[inline]
const fn offs21_of(word: u32) -> i64 {
    let lo16 = (word >> 10) & 0xFFFF;
    let hi5 = word & 0x1F;
    sign_extend((((hi5 << 16) | lo16) as u64) << 2, 23)
}

/// Decodes the PC-relative instructions (Linux's `is_pc_ins()` / `is_branch_ins()` sets, minus
/// `bceqz`/`bcnez`, which [`refusal`] catches first).
fn decode_simulated(word: u32) -> Option<Simulated> {
    let rd = (word & 0x1F) as u8;
    let rj = ((word >> 5) & 0x1F) as u8;
    let si20 = pcrel::si20_of_field(word >> 5);
    match word & MASK7 {
        PCADDI_BASE => return Some(Simulated::Pcaddi { rd, si20 }),
        PCALAU12I_BASE => return Some(Simulated::Pcalau12i { rd, si20 }),
        PCADDU12I_BASE => return Some(Simulated::Pcaddu12i { rd, si20 }),
        PCADDU18I_BASE => return Some(Simulated::Pcaddu18i { rd, si20 }),
        _ => {}
    }
    // `offs16_of` reads bits 25..10, the offset field of `jirl` and of the 2-register branches.
    let offs = offs16_of(word);
    Some(match word & MASK6 {
        BEQZ_BASE => Simulated::Beqz { rj, offs: offs21_of(word) },
        BNEZ_BASE => Simulated::Bnez { rj, offs: offs21_of(word) },
        JIRL_BASE => Simulated::Jirl { rd, rj, offs },
        B_BASE => Simulated::B { offs: offs26_of(word) },
        BL_BASE => Simulated::Bl { offs: offs26_of(word) },
        BEQ_BASE => Simulated::Beq { rj, rd, offs },
        BNE_BASE => Simulated::Bne { rj, rd, offs },
        BLT_BASE => Simulated::Blt { rj, rd, offs },
        BGE_BASE => Simulated::Bge { rj, rd, offs },
        BLTU_BASE => Simulated::Bltu { rj, rd, offs },
        BGEU_BASE => Simulated::Bgeu { rj, rd, offs },
        _ => return None,
    })
}

/// Reads `$r<n>`; `$r0` always reads 0. Out-of-range numbers wrap modulo 32.
#[inline]
fn read(regs: &[u64; 32], n: u8) -> u64 {
    match n & 0x1F {
        0 => 0,
        n => regs[n as usize],
    }
}

/// Writes `$r<n>`; writes to `$r0` are discarded. Out-of-range numbers wrap modulo 32.
#[inline]
fn write(regs: &mut [u64; 32], n: u8, value: u64) {
    match n & 0x1F {
        0 => {}
        n => regs[n as usize] = value,
    }
}

/// Simulates `insn` located at `pc` on the general registers `regs` (`regs[n]` = `$rn`; `$r0`
/// reads as 0 and writes to it are discarded, so `regs[0]` is never modified). Returns the address
/// execution continues at: `pc + 4` for the `pc*` instructions and untaken branches, the branch
/// target otherwise. All arithmetic wraps modulo 2^64.
pub fn simulate(insn: Simulated, pc: u64, regs: &mut [u64; 32]) -> u64 {
    let next = pc.wrapping_add(INSN_SIZE as u64);
    let rel = |offs: i64| pc.wrapping_add(offs as u64);
    let branch = |taken: bool, offs: i64| if taken { rel(offs) } else { next };
    match insn {
        Simulated::Pcaddi { rd, si20 } => write(regs, rd, pcrel::pcaddi(pc, si20)),
        Simulated::Pcaddu12i { rd, si20 } => write(regs, rd, pcrel::pcaddu12i(pc, si20)),
        Simulated::Pcaddu18i { rd, si20 } => write(regs, rd, pcrel::pcaddu18i(pc, si20)),
        Simulated::Pcalau12i { rd, si20 } => write(regs, rd, pcrel::pcalau12i(pc, si20)),
        Simulated::B { offs } => return rel(offs),
        Simulated::Bl { offs } => {
            write(regs, 1, next);
            return rel(offs);
        }
        Simulated::Jirl { rd, rj, offs } => {
            let target = read(regs, rj).wrapping_add(offs as u64);
            write(regs, rd, next);
            return target;
        }
        Simulated::Beq { rj, rd, offs } => return branch(read(regs, rj) == read(regs, rd), offs),
        Simulated::Bne { rj, rd, offs } => return branch(read(regs, rj) != read(regs, rd), offs),
        Simulated::Blt { rj, rd, offs } => {
            return branch((read(regs, rj) as i64) < (read(regs, rd) as i64), offs)
        }
        Simulated::Bge { rj, rd, offs } => {
            return branch((read(regs, rj) as i64) >= (read(regs, rd) as i64), offs)
        }
        Simulated::Bltu { rj, rd, offs } => return branch(read(regs, rj) < read(regs, rd), offs),
        Simulated::Bgeu { rj, rd, offs } => return branch(read(regs, rj) >= read(regs, rd), offs),
        Simulated::Beqz { rj, offs } => return branch(read(regs, rj) == 0, offs),
        Simulated::Bnez { rj, offs } => return branch(read(regs, rj) != 0, offs),
    }
    next
}

/// The words of an out-of-line single-step slot for `word` (a [`Class::Step`] instruction): the
/// instruction itself, then `break BRK_KPROBE_SSTEPBP`. Execution resumes at the probe address
/// plus 4 when the second word traps.
pub const fn slot_words(word: u32) -> [u32; 2] {
    [word, KPROBE_SSTEPBP_INSN]
}

#[cfg(test)]
mod test {
    extern crate std;
    use super::*;
    use crate::insn::{
        encode_addi_d, encode_b, encode_beqz, encode_bl, encode_bnez, encode_jirl, encode_ld_d,
        encode_lu12i_w, encode_move, encode_ori, encode_pcaddu18i, encode_st_d, Reg, NOP, OR_BASE,
        RET,
    };
    use std::string::ToString;

    const HI: u64 = 0x9000_0000_0020_0000;

    fn sim(word: u32) -> Simulated {
        match classify(word) {
            Class::Simulate(s) => s,
            other => panic!("{word:#010x}: {other:?}"),
        }
    }

    fn refused(word: u32) -> Refused {
        match classify(word) {
            Class::Refuse(r) => r,
            other => panic!("{word:#010x}: {other:?}"),
        }
    }

    /// A register file with distinct, recognisable values and `$r0` = 0.
    fn regs() -> [u64; 32] {
        let mut r = [0u64; 32];
        for (n, v) in r.iter_mut().enumerate().skip(1) {
            *v = 0x1111_0000_0000_0000 | n as u64;
        }
        r
    }

    #[test]
    fn break_words() {
        assert_eq!(BRK_KPROBE_BP, 10);
        assert_eq!(BRK_KPROBE_SSTEPBP, 11);
        assert_eq!(KPROBE_BP_INSN, 0x002A_000A);
        assert_eq!(KPROBE_SSTEPBP_INSN, 0x002A_000B);
        assert_eq!(refused(KPROBE_BP_INSN), Refused::Break);
        assert_eq!(refused(KPROBE_SSTEPBP_INSN), Refused::Break);
        assert_eq!(slot_words(NOP), [NOP, 0x002A_000B]);
        let w = encode_ld_d(Reg::A0, Reg::Sp, 8).unwrap();
        assert_eq!(slot_words(w), [w, KPROBE_SSTEPBP_INSN]);
    }

    #[test]
    fn decode_pc_arithmetic() {
        // Known disassembly: `pcaddu18i $t1, 0`, `pcaddu12i $t0, 0`, `pcalau12i $r0, 0x808`.
        assert_eq!(sim(0x1E00_000D), Simulated::Pcaddu18i { rd: 13, si20: 0 });
        assert_eq!(sim(0x1C00_000C), Simulated::Pcaddu12i { rd: 12, si20: 0 });
        assert_eq!(sim(0x1A01_0100), Simulated::Pcalau12i { rd: 0, si20: 0x808 });
        // pcaddi $a0, 1 / pcaddi $a0, -1
        assert_eq!(sim(0x1800_0024), Simulated::Pcaddi { rd: 4, si20: 1 });
        assert_eq!(sim(0x19FF_FFE4), Simulated::Pcaddi { rd: 4, si20: -1 });
        // pcaddu12i $s8, 0x7ffff (largest) / pcalau12i $t1, -0x80000 (smallest)
        assert_eq!(sim(0x1CFF_FFFF), Simulated::Pcaddu12i { rd: 31, si20: 0x7_FFFF });
        assert_eq!(sim(0x1B00_000D), Simulated::Pcalau12i { rd: 13, si20: -0x8_0000 });
        // insn.rs's encoder agrees.
        assert_eq!(
            sim(encode_pcaddu18i(Reg::T1, -1).unwrap()),
            Simulated::Pcaddu18i { rd: 13, si20: -1 }
        );
    }

    #[test]
    fn decode_jumps_and_branches() {
        use Simulated::*;
        // `ret` = jirl $zero, $ra, 0; `jirl $ra, $t1, 0x1fffc`; `jirl $zero, $ra, -4`.
        assert_eq!(sim(0x4C00_0020), Jirl { rd: 0, rj: 1, offs: 0 });
        assert_eq!(sim(RET), Jirl { rd: 0, rj: 1, offs: 0 });
        assert_eq!(sim(0x4DFF_FDA1), Jirl { rd: 1, rj: 13, offs: 0x1_FFFC });
        assert_eq!(sim(0x4FFF_FC20), Jirl { rd: 0, rj: 1, offs: -4 });
        // b: known disassembly `50002000 b 32`; insn.rs examples.
        assert_eq!(sim(0x5000_2000), B { offs: 32 });
        assert_eq!(sim(0x5000_0400), B { offs: 4 });
        assert_eq!(sim(0x53F0_03FF), B { offs: -0x1000 });
        // bl: insn.rs `encode_bl` examples, including both extremes.
        assert_eq!(sim(0x5410_0000), Bl { offs: 0x1000 });
        assert_eq!(sim(0x57F0_03FF), Bl { offs: -0x1000 });
        assert_eq!(sim(0x57FF_FDFF), Bl { offs: 0x07FF_FFFC });
        assert_eq!(sim(0x5400_0200), Bl { offs: -0x0800_0000 });
        // beqz/bnez: insn.rs examples (offs21 split across 25..10 and 4..0).
        assert_eq!(sim(0x4400_1080), Bnez { rj: 4, offs: 16 });
        assert_eq!(sim(0x43FF_F09F), Beqz { rj: 4, offs: -16 });
        assert_eq!(sim(0x47FF_FD8F), Bnez { rj: 12, offs: 0x3F_FFFC });
        assert_eq!(sim(0x4000_00B0), Beqz { rj: 5, offs: -0x40_0000 });
        // Two-register branches `op $a0, $a1, 8` (rj = a0 in 9..5, rd = a1 in 4..0).
        let ops: [(u32, fn(u8, u8, i64) -> Simulated); 6] = [
            (0x5800_0000, |rj, rd, offs| Beq { rj, rd, offs }),
            (0x5C00_0000, |rj, rd, offs| Bne { rj, rd, offs }),
            (0x6000_0000, |rj, rd, offs| Blt { rj, rd, offs }),
            (0x6400_0000, |rj, rd, offs| Bge { rj, rd, offs }),
            (0x6800_0000, |rj, rd, offs| Bltu { rj, rd, offs }),
            (0x6C00_0000, |rj, rd, offs| Bgeu { rj, rd, offs }),
        ];
        for (base, mk) in ops {
            assert_eq!(sim(base | 0x0885), mk(4, 5, 8));
            // offs16 = 0x8000 is the most negative offset; 0x7fff the most positive.
            assert_eq!(sim(base | 0x0200_0000 | (31 << 5) | 30), mk(31, 30, -0x2_0000));
            assert_eq!(sim(base | 0x01FF_FC00), mk(0, 0, 0x1_FFFC));
        }
        assert_eq!(sim(0x5800_0885), Beq { rj: 4, rd: 5, offs: 8 });
        assert_eq!(sim(0x6BFF_FD8D), Bltu { rj: 12, rd: 13, offs: -4 });
    }

    #[test]
    fn simulate_pc_arithmetic() {
        let mut r = regs();
        let pc = HI + 0x123_4564;
        let next = simulate(Simulated::Pcaddi { rd: 4, si20: -3 }, pc, &mut r);
        assert_eq!((next, r[4]), (pc + 4, pc - 12));
        simulate(Simulated::Pcaddi { rd: 4, si20: 0x7_FFFF }, pc, &mut r);
        assert_eq!(r[4], pc + (0x7_FFFF << 2));
        simulate(sim(0x1C00_000C), pc, &mut r);
        assert_eq!(r[12], pc);
        simulate(Simulated::Pcaddu12i { rd: 12, si20: -0x8_0000 }, pc, &mut r);
        assert_eq!(r[12], pc.wrapping_sub(0x8000_0000));
        simulate(Simulated::Pcaddu18i { rd: 13, si20: 5 }, pc, &mut r);
        assert_eq!(r[13], pc + (5 << 18));
        simulate(Simulated::Pcaddu18i { rd: 13, si20: -0x8_0000 }, pc, &mut r);
        assert_eq!(r[13], pc.wrapping_sub(0x20_0000_0000));
        // Wrapping at the top and bottom of the address space.
        simulate(Simulated::Pcaddu12i { rd: 7, si20: 1 }, u64::MAX - 3, &mut r);
        assert_eq!(r[7], 0xFFC);
        simulate(Simulated::Pcaddi { rd: 7, si20: -1 }, 0, &mut r);
        assert_eq!(r[7], u64::MAX - 3);
    }

    #[test]
    fn simulate_pcalau12i() {
        for low in [0x000u64, 0x7FC, 0x7FF, 0x800, 0xFFC, 0xFFF] {
            let pc = HI + 0x5000 + low;
            for (si20, want) in [
                (0i32, HI + 0x5000),
                (1, HI + 0x6000),
                (-1, HI + 0x4000),
                (-5, HI),
                (0x7_FFFF, HI + 0x5000 + 0x7FFF_F000),
                (-0x8_0000, (HI + 0x5000).wrapping_sub(0x8000_0000)),
            ] {
                let mut r = regs();
                let next = simulate(Simulated::Pcalau12i { rd: 9, si20 }, pc, &mut r);
                assert_eq!(next, pc + 4);
                assert_eq!(r[9], want, "pc {pc:#x} si20 {si20}");
                assert_eq!(r[9] & 0xFFF, 0);
            }
        }
        // Decoded from a word: pcalau12i $t1, -0x80000 at a page boundary minus one.
        let mut r = regs();
        simulate(sim(0x1B00_000D), 0x9000_0000_8000_0FFF, &mut r);
        assert_eq!(r[13], 0x9000_0000_0000_0000);
    }

    #[test]
    fn simulate_discards_r0() {
        let pc = HI;
        let mut r = regs();
        let before = r;
        for s in [
            Simulated::Pcaddi { rd: 0, si20: 1 },
            Simulated::Pcaddu12i { rd: 0, si20: 1 },
            Simulated::Pcaddu18i { rd: 0, si20: 1 },
            Simulated::Pcalau12i { rd: 0, si20: 1 },
        ] {
            assert_eq!(simulate(s, pc, &mut r), pc + 4);
            assert_eq!(r, before, "{s:?}");
        }
        // `pcalau12i $r0, 0x808` (known disassembly) is still simulated, result discarded.
        assert_eq!(simulate(sim(0x1A01_0100), pc, &mut r), pc + 4);
        assert_eq!(r, before);
        // jr $ra: jump without link.
        r[1] = 0x9000_0000_0030_0000;
        let before = r;
        assert_eq!(simulate(sim(RET), pc, &mut r), 0x9000_0000_0030_0000);
        assert_eq!(r, before);
        // $r0 reads as zero even if the caller's slot is dirty, and is never written.
        let mut dirty = regs();
        dirty[0] = 0xDEAD;
        assert_eq!(simulate(Simulated::Beqz { rj: 0, offs: 64 }, pc, &mut dirty), pc + 64);
        assert_eq!(simulate(Simulated::Jirl { rd: 0, rj: 0, offs: 0x100 }, pc, &mut dirty), 0x100);
        assert_eq!(dirty[0], 0xDEAD);
    }

    #[test]
    fn simulate_b_bl_jirl() {
        let pc = HI + 0x40;
        let mut r = regs();
        let before = r;
        assert_eq!(simulate(Simulated::B { offs: -0x40 }, pc, &mut r), HI);
        assert_eq!(r, before);
        assert_eq!(simulate(Simulated::Bl { offs: 0x07FF_FFFC }, pc, &mut r), pc + 0x07FF_FFFC);
        assert_eq!(r[1], pc + 4);
        assert_eq!(simulate(sim(0x5400_0200), pc, &mut r), pc - 0x0800_0000);
        // jirl $ra, $t1, -8
        r[13] = 0x9000_0000_0100_0000;
        let w = encode_jirl(Reg::Ra, Reg::T1, -8).unwrap();
        assert_eq!(simulate(sim(w), pc, &mut r), 0x9000_0000_00FF_FFF8);
        assert_eq!(r[1], pc + 4);
        assert_eq!(r[13], 0x9000_0000_0100_0000);
        // jirl $t1, $t1, 16: the target uses the old $t1, then $t1 becomes the link.
        let w = encode_jirl(Reg::T1, Reg::T1, 16).unwrap();
        assert_eq!(sim(w), Simulated::Jirl { rd: 13, rj: 13, offs: 16 });
        assert_eq!(simulate(sim(w), pc, &mut r), 0x9000_0000_0100_0010);
        assert_eq!(r[13], pc + 4);
        // jirl $ra, $ra, 0 (rd == rj == ra).
        r[1] = 0x9000_0000_0000_4000;
        assert_eq!(simulate(sim(0x4C00_0021), pc, &mut r), 0x9000_0000_0000_4000);
        assert_eq!(r[1], pc + 4);
        // Wrapping target.
        r[5] = 8;
        assert_eq!(simulate(Simulated::Jirl { rd: 0, rj: 5, offs: -16 }, pc, &mut r), u64::MAX - 7);
    }

    #[test]
    fn simulate_conditional_branches() {
        use Simulated::*;
        let pc = HI + 0x1000;
        let mut r = regs();
        r[4] = u64::MAX; // -1 signed, huge unsigned
        r[5] = 1;
        r[6] = 1;
        let before = r;
        let t = |s: Simulated, r: &mut [u64; 32]| simulate(s, pc, r);
        // beq/bne, taken and not.
        assert_eq!(t(Beq { rj: 5, rd: 6, offs: -0x100 }, &mut r), pc - 0x100);
        assert_eq!(t(Beq { rj: 4, rd: 5, offs: -0x100 }, &mut r), pc + 4);
        assert_eq!(t(Bne { rj: 4, rd: 5, offs: 0x1_FFFC }, &mut r), pc + 0x1_FFFC);
        assert_eq!(t(Bne { rj: 5, rd: 6, offs: 0x1_FFFC }, &mut r), pc + 4);
        // Signed: -1 < 1.
        assert_eq!(t(Blt { rj: 4, rd: 5, offs: 8 }, &mut r), pc + 8);
        assert_eq!(t(Blt { rj: 5, rd: 4, offs: 8 }, &mut r), pc + 4);
        assert_eq!(t(Blt { rj: 5, rd: 6, offs: 8 }, &mut r), pc + 4);
        assert_eq!(t(Bge { rj: 5, rd: 4, offs: -8 }, &mut r), pc - 8);
        assert_eq!(t(Bge { rj: 5, rd: 6, offs: -8 }, &mut r), pc - 8);
        assert_eq!(t(Bge { rj: 4, rd: 5, offs: -8 }, &mut r), pc + 4);
        // Unsigned: 0xffff_ffff_ffff_ffff > 1.
        assert_eq!(t(Bltu { rj: 4, rd: 5, offs: 8 }, &mut r), pc + 4);
        assert_eq!(t(Bltu { rj: 5, rd: 4, offs: 8 }, &mut r), pc + 8);
        assert_eq!(t(Bltu { rj: 5, rd: 6, offs: 8 }, &mut r), pc + 4);
        assert_eq!(t(Bgeu { rj: 4, rd: 5, offs: -0x2_0000 }, &mut r), pc - 0x2_0000);
        assert_eq!(t(Bgeu { rj: 5, rd: 6, offs: -0x2_0000 }, &mut r), pc - 0x2_0000);
        assert_eq!(t(Bgeu { rj: 5, rd: 4, offs: -0x2_0000 }, &mut r), pc + 4);
        // Comparisons against $zero.
        assert_eq!(t(Blt { rj: 4, rd: 0, offs: 12 }, &mut r), pc + 12);
        assert_eq!(t(Bltu { rj: 0, rd: 4, offs: 12 }, &mut r), pc + 12);
        // beqz/bnez.
        assert_eq!(t(Beqz { rj: 0, offs: -0x40_0000 }, &mut r), pc.wrapping_sub(0x40_0000));
        assert_eq!(t(Beqz { rj: 5, offs: -0x40_0000 }, &mut r), pc + 4);
        assert_eq!(t(Bnez { rj: 5, offs: 0x3F_FFFC }, &mut r), pc + 0x3F_FFFC);
        assert_eq!(t(Bnez { rj: 0, offs: 0x3F_FFFC }, &mut r), pc + 4);
        // Decoded words: `bltu $t0, $t1, -4` with $t0 = -1, $t1 = 0 is not taken; `blt` is.
        r[12] = u64::MAX;
        r[13] = 0;
        assert_eq!(t(sim(0x6BFF_FD8D), &mut r), pc + 4);
        assert_eq!(t(sim(0x63FF_FD8D), &mut r), pc - 4);
        // Conditional branches never write registers.
        r[12] = before[12];
        r[13] = before[13];
        assert_eq!(r, before);
    }

    /// Branches encoded with insn.rs's encoders land where they were aimed.
    #[test]
    fn encoder_round_trip() {
        let pcs = [0u64, 0x4000, HI, 0x9000_0000_07FF_FFF0, u64::MAX - 3];
        let offs = [0i64, 4, -4, 0x1000, -0x1000, 0x3F_FFFC, -0x40_0000, 0x123_4564, -0x7FF_FFFC];
        for &pc in &pcs {
            for &o in &offs {
                let target = pc.wrapping_add(o as u64);
                let mut r = regs();
                let b = encode_b(pc, target).unwrap();
                assert_eq!(sim(b), Simulated::B { offs: o });
                assert_eq!(simulate(sim(b), pc, &mut r), target);
                let bl = encode_bl(pc, target).unwrap();
                assert_eq!(sim(bl), Simulated::Bl { offs: o });
                assert_eq!(simulate(sim(bl), pc, &mut r), target);
                assert_eq!(r[1], pc.wrapping_add(4));
                if !(-0x40_0000..0x40_0000).contains(&o) {
                    continue;
                }
                let z = encode_beqz(Reg::A2, pc, target).unwrap();
                let nz = encode_bnez(Reg::A2, pc, target).unwrap();
                assert_eq!(sim(z), Simulated::Beqz { rj: 6, offs: o });
                assert_eq!(sim(nz), Simulated::Bnez { rj: 6, offs: o });
                r[6] = 0;
                assert_eq!(simulate(sim(z), pc, &mut r), target);
                assert_eq!(simulate(sim(nz), pc, &mut r), pc.wrapping_add(4));
                r[6] = 7;
                assert_eq!(simulate(sim(z), pc, &mut r), pc.wrapping_add(4));
                assert_eq!(simulate(sim(nz), pc, &mut r), target);
            }
        }
        // jirl through a register, every representable offset step.
        let mut o = -0x2_0000i64;
        while o < 0x2_0000 {
            let w = encode_jirl(Reg::Ra, Reg::S3, o).unwrap();
            let mut r = regs();
            r[26] = HI;
            assert_eq!(simulate(sim(w), 0x1000, &mut r), HI.wrapping_add(o as u64));
            assert_eq!(r[1], 0x1004);
            o += 4 * 61;
        }
    }

    #[test]
    fn refused_classes() {
        use Refused::*;
        let cases: &[(u32, Refused, &str)] = &[
            (0x2000_008C, LlSc, "ll.w $t0, $a0, 0"),
            (0x2001_0100, LlSc, "ll.w $r0, $r8, 256 (known disassembly)"),
            (0x2200_008C, LlSc, "ll.d $t0, $a0, 0"),
            (0x2100_008D, LlSc, "sc.w $t1, $a0, 0"),
            (0x23FF_FC8D, LlSc, "sc.d $t1, $a0, -4"),
            (0x3857_348C, LlSc, "sc.q $t0, $t1, $a0"),
            (0x3857_808C, LlSc, "llacq.w $t0, $a0"),
            (0x3857_848C, LlSc, "screl.w $t0, $a0"),
            (0x3857_888C, LlSc, "llacq.d $t0, $a0"),
            (0x3857_8C8C, LlSc, "screl.d $t0, $a0"),
            (0x3869_348C, Atomic, "amswap_db.w $t0, $t1, $a0 (Linux commit)"),
            (0x3860_348C, Atomic, "amswap.w"),
            (0x3861_B48C, Atomic, "amadd.d"),
            (0x3871_B48C, Atomic, "ammin_db.du (last of Linux's range)"),
            (0x3859_348C, Atomic, "amcas.w (ISA v1.10)"),
            (0x3858_348C, Atomic, "amcas.b (ISA v1.10)"),
            (0x385F_B48C, Atomic, "amadd_db.h (ISA v1.10)"),
            (0x0400_000C, Csr, "csrrd $t0, 0x0"),
            (0x0460_0000, Csr, "csrrd $r0, 0x1800 (known disassembly)"),
            (0x0400_042C, Csr, "csrwr $t0, 0x1"),
            (0x0400_18AC, Csr, "csrxchg $t0, $a1, 0x6"),
            (0x04FF_FFFF, Csr, "csrxchg $s8, $s8, 0x3fff"),
            (0x0648_3800, Ertn, "ertn"),
            (0x0648_8000, Idle, "idle 0"),
            (0x0648_FFFF, Idle, "idle 0x7fff"),
            (0x002A_0000, Break, "break 0"),
            (0x002A_0001, Break, "break 1 (BUG)"),
            (0x002A_7FFF, Break, "break 0x7fff"),
            (0x002B_0000, Syscall, "syscall 0"),
            (0x002B_0011, Syscall, "syscall 0x11"),
            (0x4800_0800, FpBranch, "bceqz $fcc0, 8"),
            (0x4BFF_FD3F, FpBranch, "bcnez $fcc1, -4"),
            (0x4800_01E0, FpBranch, "bcnez $fcc7, 0"),
        ];
        for &(w, why, what) in cases {
            assert_eq!(classify(w), Class::Refuse(why), "{what} ({w:#010x})");
        }
        assert_eq!(BREAK0, 0x002A_0000);
    }

    #[test]
    fn ordinary_instructions_step() {
        use Reg::*;
        let words = [
            0x0010_98A4, // add.d $a0, $a1, $a2
            encode_ld_d(T1, Sp, 80).unwrap(),
            encode_st_d(Ra, Sp, 8).unwrap(),
            encode_addi_d(Sp, Sp, -112).unwrap(),
            encode_ori(T1, T1, 0xABC).unwrap(),
            encode_lu12i_w(T1, -1).unwrap(),
            OR_BASE | (6 << 10) | (5 << 5) | 4, // or $a0, $a1, $a2
            encode_move(A0, S0),
            NOP,
            0x3872_0000, // dbar 0
            0x3872_8000, // ibar 0
            0x380C_18A4, // ldx.d $a0, $a1, $a2
            0x2600_0064, // ldptr.d $a0, $sp, 0
            0x0648_2800, // tlbsrch
            0x0648_0C85, // iocsrrd.d $a1, $a0
            0x0600_0000, // cacop 0, $r0, 0
            0x0000_6C85, // cpucfg $a1, $a0
            0x1000_0000, // addu16i.d $r0, $r0, 0
            0x3857_9000, // just past llacq/screl: not a valid LL/SC form
            0x0000_0000,
            0xFFFF_FFFF,
        ];
        for w in words {
            assert_eq!(classify(w), Class::Step, "{w:#010x}");
        }
        // Words right around the refused and simulated groups.
        assert_eq!(classify(0x3856_8000), Class::Step);
        assert_eq!(classify(0x0648_3801), Class::Step);
        assert_eq!(classify(0x0648_3C00), Class::Step);
        assert_eq!(classify(0x0300_0000), Class::Step); // lu52i.d, just below the CSR block
        assert_eq!(classify(0x0500_0000), Class::Step);
        assert_eq!(classify(0x1FFF_FFFF), sim_class(0x1FFF_FFFF));
        assert_eq!(classify(0x7000_0000), Class::Step); // vector space after bgeu
    }

    fn sim_class(w: u32) -> Class {
        Class::Simulate(sim(w))
    }

    /// Exactly Linux's `is_pc_ins()` and `is_branch_ins()` words are simulated (bceqz/bcnez
    /// aside), and nothing else is.
    #[test]
    fn simulation_set_matches_linux() {
        let mut x: u32 = 0x1234_5677;
        for hi in 0..0x40u32 {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let w = (hi << 26) | (x & 0x03FF_FFFF);
                let pc_ins = (0x0C..=0x0F).contains(&(w >> 25));
                let branch_ins = (0x10..=0x1B).contains(&hi) && hi != 0x12;
                match classify(w) {
                    Class::Simulate(s) => {
                        assert!(pc_ins || branch_ins, "{w:#010x}");
                        // Never panics, whatever the registers hold.
                        let mut r = [x as u64 * 0x9E37_79B9; 32];
                        r[0] = 0;
                        let _ = simulate(s, u64::from(x) << 2, &mut r);
                        assert_eq!(r[0], 0);
                    }
                    Class::Refuse(Refused::FpBranch) => assert_eq!(hi, 0x12),
                    _ => assert!(!pc_ins && !branch_ins, "{w:#010x}"),
                }
            }
        }
        // Out-of-range register numbers (only constructible by hand) wrap instead of panicking.
        let mut r = regs();
        assert_eq!(simulate(Simulated::Jirl { rd: 33, rj: 255, offs: 0 }, 0, &mut r), regs()[31]);
        assert_eq!(r[1], 4);
    }

    /// Linux's `insns_not_supported()` set is refused in full.
    #[test]
    fn refusal_set_covers_linux() {
        for op in 0x70C0u32..=0x70E3 {
            let w = (op << 15) | 0x348C;
            assert_eq!(classify(w), Class::Refuse(Refused::Atomic), "{w:#010x}");
        }
        assert_eq!(classify((0x70E4 << 15) | 0x348C), Class::Step); // dbar 0x348c
        assert_eq!(classify(0x70AE << 15), Class::Refuse(Refused::LlSc)); // sc.q
        assert_eq!(classify(0x002A_8000), Class::Refuse(Refused::Break)); // dbcl 0
        for op in 0xE15E0u32..=0xE15E3 {
            assert_eq!(classify((op << 10) | 0x8C), Class::Refuse(Refused::LlSc));
        }
        for op in 0x20u32..=0x23 {
            for low in [0u32, 0x00FF_FFFF, 0x0080_0000, 0x1234] {
                assert_eq!(classify((op << 24) | low), Class::Refuse(Refused::LlSc));
            }
        }
        assert_eq!(classify(0x24 << 24), Class::Step); // ldptr.w
        for low in [0u32, 0x100, 0x03FF_FFFF] {
            assert_eq!(classify((0x12 << 26) | low), Class::Refuse(Refused::FpBranch));
        }
        // Every CSR form, whatever rj is.
        for rj in 0..32u32 {
            let w = CSR_BASE | (0x1800 << 10) | (rj << 5) | 4;
            assert_eq!(classify(w), Class::Refuse(Refused::Csr), "{w:#010x}");
        }
    }

    #[test]
    fn refused_display() {
        assert_eq!(
            Refused::LlSc.to_string(),
            "ll/sc: a break inside a load-linked/store-conditional sequence breaks it"
        );
        for r in [
            Refused::LlSc,
            Refused::Atomic,
            Refused::Ertn,
            Refused::Idle,
            Refused::Break,
            Refused::Syscall,
            Refused::Csr,
            Refused::FpBranch,
        ] {
            let s = r.to_string();
            assert!(!s.is_empty() && s.len() < 80 && s.contains(": "), "{s}");
        }
        assert!(Refused::Csr.to_string().starts_with("csr"));
        assert!(Refused::FpBranch.to_string().starts_with("bceqz/bcnez"));
    }
}
