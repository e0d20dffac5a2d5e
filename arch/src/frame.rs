//! The saved-register frame shared by the trap vector and the ftrace callers (`PtRegs`).
//!
//! The layout is the one Linux uses for `struct pt_regs` on LoongArch, so offsets quoted in
//! documentation carry over: 32 GPRs, `orig_a0`, then the exception CSRs. The assembly in
//! `trap.rs` and `ftrace.rs` uses the `PT_*` constants below through `const` operands, and the
//! assertions at the bottom tie them to the struct, so the two cannot drift apart.

/// Saved machine state. `regs[n]` is GPR `$rn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PtRegs {
    pub regs: [u64; 32],
    pub orig_a0: u64,
    /// Exception return address; for ftrace the traced function's resume address.
    pub era: u64,
    pub badv: u64,
    pub crmd: u64,
    pub prmd: u64,
    pub euen: u64,
    pub ecfg: u64,
    pub estat: u64,
}

/// Byte offset of GPR `n` in [`PtRegs`].
pub const fn pt_reg(n: usize) -> usize {
    n * 8
}

pub const PT_R0: usize = pt_reg(0);
pub const PT_RA: usize = pt_reg(1);
pub const PT_TP: usize = pt_reg(2);
pub const PT_SP: usize = pt_reg(3);
pub const PT_A0: usize = pt_reg(4);
pub const PT_T0: usize = pt_reg(12);
pub const PT_T1: usize = pt_reg(13);
pub const PT_R21: usize = pt_reg(21);
pub const PT_FP: usize = pt_reg(22);
pub const PT_S0: usize = pt_reg(23);
pub const PT_ORIG_A0: usize = 256;
pub const PT_ERA: usize = 264;
pub const PT_BADV: usize = 272;
pub const PT_CRMD: usize = 280;
pub const PT_PRMD: usize = 288;
pub const PT_EUEN: usize = 296;
pub const PT_ECFG: usize = 304;
pub const PT_ESTAT: usize = 312;
/// Size of the frame; a multiple of 16 so `sp` stays aligned.
pub const PT_SIZE: usize = 320;

const _: () = {
    assert!(core::mem::size_of::<PtRegs>() == PT_SIZE);
    assert!(PT_SIZE % 16 == 0);
    assert!(core::mem::offset_of!(PtRegs, orig_a0) == PT_ORIG_A0);
    assert!(core::mem::offset_of!(PtRegs, era) == PT_ERA);
    assert!(core::mem::offset_of!(PtRegs, badv) == PT_BADV);
    assert!(core::mem::offset_of!(PtRegs, crmd) == PT_CRMD);
    assert!(core::mem::offset_of!(PtRegs, prmd) == PT_PRMD);
    assert!(core::mem::offset_of!(PtRegs, euen) == PT_EUEN);
    assert!(core::mem::offset_of!(PtRegs, ecfg) == PT_ECFG);
    assert!(core::mem::offset_of!(PtRegs, estat) == PT_ESTAT);
};

/// ABI names of the 32 GPRs, indexed by register number.
pub const GPR_NAMES: [&str; 32] = [
    "zero", "ra", "tp", "sp", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "t0", "t1", "t2", "t3",
    "t4", "t5", "t6", "t7", "t8", "r21", "fp", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8",
];

impl PtRegs {
    /// Argument register `a<n>` (n < 8).
    pub fn arg(&self, n: usize) -> u64 {
        self.regs[4 + (n & 7)]
    }
    /// Sets argument register `a<n>` (n < 8).
    pub fn set_arg(&mut self, n: usize, v: u64) {
        self.regs[4 + (n & 7)] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_linux_pt_regs() {
        assert_eq!(PT_RA, 8);
        assert_eq!(PT_A0, 32);
        assert_eq!(PT_T1, 104);
        assert_eq!(PT_FP, 176);
        assert_eq!(PT_ERA, 264);
        assert_eq!(GPR_NAMES[12], "t0");
    }

    #[test]
    fn args_are_a0_to_a7() {
        let mut r = PtRegs::default();
        r.set_arg(2, 7);
        assert_eq!(r.regs[6], 7);
        assert_eq!(r.arg(2), 7);
    }
}
