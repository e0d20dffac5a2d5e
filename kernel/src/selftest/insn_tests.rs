//! Suite `insn`: the instruction encoders agree with LLVM's assembler, and refuse bad input.

use crate::{kassert, kassert_eq, ktest};
use arch::insn::{self, Insn, InsnError, Reg};

// A table of instructions assembled by LLVM, never executed: branches to labels before and
// after it (across a 128 KiB gap) and to kernel routines, moves, jumps and barriers.
core::arch::global_asm!(
    r#"
    .text
    .balign 4
    .global loongtrace_insn_back
loongtrace_insn_back:
    nop
    .global loongtrace_insn_table
loongtrace_insn_table:
    bl      loongtrace_insn_back
    b       loongtrace_insn_back
    bl      loongtrace_insn_fwd
    b       loongtrace_insn_fwd
    bl      ftrace_caller
    bl      ftrace_regs_caller
    b       ftrace_stub
    move    $t0, $ra
    move    $t1, $ra
    move    $ra, $t0
    jr      $t0
    jr      $t1
    jirl    $ra, $t1, 64
    jirl    $zero, $ra, -8
    nop
    ibar    0
    break   0
    .global loongtrace_insn_table_end
loongtrace_insn_table_end:
    .space  0x20000
    .global loongtrace_insn_fwd
loongtrace_insn_fwd:
    nop
"#
);

unsafe extern "C" {
    static loongtrace_insn_back: u32;
    static loongtrace_insn_table: [u32; 17];
    static loongtrace_insn_fwd: u32;
}

fn table() -> (u64, &'static [u32; 17]) {
    // SAFETY: the table is 17 assembled words in kernel text, never modified.
    unsafe { (core::ptr::addr_of!(loongtrace_insn_table) as u64, &loongtrace_insn_table) }
}

ktest! {
    /// Our encoders produce exactly the words LLVM assembled.
    fn insn::encoders_match_llvm() {
        let (base, words) = table();
        let back = core::ptr::addr_of!(loongtrace_insn_back) as u64;
        let fwd = core::ptr::addr_of!(loongtrace_insn_fwd) as u64;
        let pc = |i: usize| base + 4 * i as u64;
        let expect: [(u32, &str); 17] = [
            (insn::encode_bl(pc(0), back).unwrap(), "bl back"),
            (insn::encode_b(pc(1), back).unwrap(), "b back"),
            (insn::encode_bl(pc(2), fwd).unwrap(), "bl fwd"),
            (insn::encode_b(pc(3), fwd).unwrap(), "b fwd"),
            (insn::encode_bl(pc(4), arch::ftrace::addr::caller()).unwrap(), "bl ftrace_caller"),
            (insn::encode_bl(pc(5), arch::ftrace::addr::regs_caller()).unwrap(), "bl ftrace_regs_caller"),
            (insn::encode_b(pc(6), arch::ftrace::addr::stub()).unwrap(), "b ftrace_stub"),
            (insn::encode_move(Reg::T0, Reg::Ra), "move t0, ra"),
            (insn::encode_move(Reg::T1, Reg::Ra), "move t1, ra"),
            (insn::encode_move(Reg::Ra, Reg::T0), "move ra, t0"),
            (insn::encode_jr(Reg::T0), "jr t0"),
            (insn::encode_jr(Reg::T1), "jr t1"),
            (insn::encode_jirl(Reg::Ra, Reg::T1, 64).unwrap(), "jirl ra, t1, 64"),
            (insn::encode_jirl(Reg::Zero, Reg::Ra, -8).unwrap(), "jirl zero, ra, -8"),
            (insn::NOP, "nop"),
            (insn::IBAR0, "ibar 0"),
            (insn::BREAK0, "break 0"),
        ];
        for (i, (want, what)) in expect.iter().enumerate() {
            kassert!(words[i] == *want, "{what}: LLVM {:#010x}, encoder {:#010x}", words[i], want);
        }
        // And decoding LLVM's words gives back the targets.
        kassert_eq!(insn::decode(pc(0), words[0]), Insn::Bl { target: back });
        kassert_eq!(insn::decode(pc(3), words[3]), Insn::B { target: fwd });
        kassert_eq!(insn::decode(pc(4), words[4]), Insn::Bl { target: arch::ftrace::addr::caller() });
        kassert_eq!(insn::decode(pc(7), words[7]), Insn::Move { rd: Reg::T0, rj: Reg::Ra });
        Ok(())
    }
}

ktest! {
    /// Out-of-range and misaligned branches are errors, never a `break` word.
    fn insn::range_and_alignment_errors() {
        let pc = arch::ftrace::addr::caller();
        kassert!(insn::encode_bl(pc, pc + 0x07ff_fffc).is_ok());
        kassert!(insn::encode_bl(pc, pc - 0x0800_0000).is_ok());
        kassert!(matches!(insn::encode_bl(pc, pc + 0x0800_0000), Err(InsnError::OutOfRange { .. })));
        kassert!(matches!(insn::encode_bl(pc, pc - 0x0800_0004), Err(InsnError::OutOfRange { .. })));
        kassert!(matches!(insn::encode_b(pc, pc + 2), Err(InsnError::Misaligned { .. })));
        kassert!(matches!(insn::encode_jirl(Reg::Zero, Reg::T0, 0x2_0000), Err(InsnError::OutOfRange { .. })));
        kassert!(!insn::bl_reachable(pc, pc + 0x0800_0000));
        // The ftrace hooks refuse an unreachable target without touching the site.
        let ip = crate::selftest::targets::patch_target_a as *const () as u64;
        let before = arch::patch::read_insn(ip + 4);
        kassert!(arch::ftrace::make_call(ip, ip + 0x1000_0000).is_err());
        kassert_eq!(arch::patch::read_insn(ip + 4), before);
        Ok(())
    }
}
