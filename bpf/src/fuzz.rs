//! Random BPF programs for fuzzing and differential testing: built from pieces that are often,
//! but not always, safe (context and stack accesses at random offsets, map lookups with or
//! without a null check, indexes with or without a bounds check, scalar arithmetic, forward
//! jumps), and mutations of one field. The host's verifier fuzzing (`bpf/tests/verifier_fuzz.rs`)
//! checks that accepted ones never touch what was not proven; the kernel's differential test
//! (`bpf_selftests.jit_differential`) runs accepted ones JITed and interpreted.

use crate::insn::*;
use crate::rng::Rng;
use crate::verifier::{MapInfo, MapKind, ProgInfo};
use alloc::vec::Vec;

/// Bytes of context the programs read (a fentry program's).
pub const CTX_SIZE: u32 = 64;
/// Value size of the one map (a hash map of 4-byte keys).
pub const VALUE_SIZE: u32 = 16;

/// What the programs are verified for: a 64-byte context and the hash map `map[id:0]`.
pub fn info() -> ProgInfo {
    ProgInfo {
        ctx_size: CTX_SIZE,
        maps: alloc::vec![MapInfo { kind: MapKind::Hash, key_size: 4, value_size: VALUE_SIZE, max_entries: 16 }],
        func_helpers: false,
    }
}

const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
const ALU: [u8; 9] = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH, BPF_ARSH];
const JMP: [u8; 10] = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE];

/// A program built from pieces that are often, but not always, safe: context and stack
/// accesses at random offsets, map lookups with or without a null check, indexes with or
/// without a bounds check, scalar arithmetic, forward jumps.
pub fn generate(r: &mut Rng) -> Vec<Insn> {
    let mut p = alloc::vec![Insn::mov64_reg(6, 1), Insn::mov64_imm(0, 0), Insn::mov64_imm(7, 0), Insn::mov64_imm(8, 0)];
    let pieces = 1 + r.below(6);
    for _ in 0..pieces {
        match r.below(7) {
            0 => {
                // A context load.
                let size = r.pick(&SIZES);
                let off = r.below(CTX_SIZE as u64 + 8) as i16 - if r.chance(10) { 8 } else { 0 };
                p.push(Insn::ldx_mem(size, r.pick(&[7, 8]), 6, off));
            }
            1 => {
                // A stack store and maybe a load back.
                let size = r.pick(&SIZES);
                let off = -(1 + r.below(520) as i16);
                if r.chance(50) {
                    p.push(Insn::st_mem(size, 10, off, r.next() as i32));
                } else {
                    p.push(Insn::stx_mem(size, 10, r.pick(&[7, 8]), off));
                }
                if r.chance(60) {
                    let off2 = if r.chance(70) { off } else { -(1 + r.below(520) as i16) };
                    p.push(Insn::ldx_mem(r.pick(&SIZES), 7, 10, off2));
                }
            }
            2 | 3 => {
                // A map lookup, a (maybe missing) null check, an access with a (maybe checked)
                // index.
                p.push(Insn::st_mem(Size::W, 10, -4, r.below(4) as i32));
                p.push(Insn::mov64_reg(2, 10));
                p.push(Insn::alu64_imm(BPF_ADD, 2, -4));
                p.extend_from_slice(&Insn::ld_map_fd(1, 0));
                p.push(Insn::call_helper(1));
                let mut body = Vec::new();
                let indexed = r.chance(60);
                if indexed {
                    body.push(Insn::ldx_mem(r.pick(&[Size::B, Size::W, Size::DW]), 8, 0, 0));
                    if r.chance(75) {
                        let limit = r.pick(&[1, 2, 8, 15, 16, 17, 1 << 20, -1]);
                        let op = r.pick(&[BPF_JGE, BPF_JGT, BPF_JSGE, BPF_JSGT]);
                        // 64-bit or 32-bit (`w8`) compares: both must teach only what is true.
                        body.push(if r.chance(70) { Insn::jmp_imm(op, 8, limit, 3) } else { Insn::jmp32_imm(op, 8, limit, 3) });
                    }
                    body.push(Insn::alu64_imm(BPF_AND, 8, r.pick(&[0xf, 0x7, 0xff, -1])));
                    body.push(Insn::alu64_reg(BPF_ADD, 0, 8));
                }
                let size = r.pick(&SIZES);
                let off = r.below(VALUE_SIZE as u64 + 4) as i16;
                if r.chance(50) {
                    body.push(Insn::ldx_mem(size, 7, 0, off));
                } else {
                    body.push(Insn::stx_mem(size, 0, 7, off));
                }
                if r.chance(90) {
                    p.push(Insn::jmp_imm(BPF_JEQ, 0, 0, body.len() as i16));
                }
                p.extend(body);
                p.push(Insn::mov64_imm(0, 0));
            }
            4 => {
                // Scalar arithmetic.
                let op = r.pick(&ALU);
                let dst = r.pick(&[7, 8]);
                if r.chance(50) {
                    let imm = if matches!(op, BPF_LSH | BPF_RSH | BPF_ARSH) { r.below(64) as i32 } else { r.next() as i32 };
                    p.push(if r.chance(80) { Insn::alu64_imm(op, dst, imm) } else { Insn::alu32_imm(op, dst, imm) });
                } else {
                    p.push(Insn::alu64_reg(op, dst, r.pick(&[7, 8])));
                }
            }
            5 => {
                // A forward jump over the next piece's first instruction.
                let (op, dst, k) = (r.pick(&JMP), r.pick(&[7, 8]), r.next() as i32 % 32);
                p.push(if r.chance(70) { Insn::jmp_imm(op, dst, k, 1) } else { Insn::jmp32_imm(op, dst, k, 1) });
                p.push(Insn::mov64_imm(r.pick(&[7, 8]), r.below(32) as i32));
            }
            _ => {
                // A stack pointer moved and used.
                p.push(Insn::mov64_reg(9, 10));
                p.push(Insn::alu64_imm(BPF_ADD, 9, -(r.below(520) as i32)));
                p.push(Insn::st_mem(r.pick(&SIZES), 9, 0, 1));
            }
        }
    }
    p.push(Insn::mov64_imm(0, 0));
    p.push(Insn::exit());
    p
}

/// One field of one instruction changed.
pub fn mutate(r: &mut Rng, p: &mut [Insn]) {
    let i = r.below(p.len() as u64) as usize;
    let insn = &mut p[i];
    match r.below(5) {
        0 => insn.off = insn.off.wrapping_add(r.pick(&[-8, -1, 1, 4, 8, 64])),
        1 => insn.imm = insn.imm.wrapping_add(r.pick(&[-1, 1, 7, 1 << 16])),
        2 => insn.dst = r.below(11) as u8,
        3 => insn.src = r.below(11) as u8,
        _ => insn.code ^= 1 << r.below(8),
    }
}

