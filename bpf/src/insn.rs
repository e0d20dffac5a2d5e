//! The eBPF instruction set as Linux defines it (`include/uapi/linux/bpf.h`, `bpf_common.h`,
//! `Documentation/bpf/standardization/instruction-set.rst`): the 8-byte instruction, the opcode
//! constants under Linux's names, a typed view of what an instruction does ([`Op`]), decoding and
//! encoding, builders in the manner of Linux's `filter.h` macros, and the text Linux's verifier log
//! and `bpftool prog dump xlated` print ([`Insn`]'s `Display`, [`Listing`]).
//!
//! An instruction is one 8-byte slot: `code` (class, size/mode or op/source), the destination and
//! source registers in one byte (destination in the low nibble: this is a little-endian target),
//! a signed 16-bit offset and a signed 32-bit immediate, all little-endian. `ld_imm64` takes two
//! slots; the second has `code == 0` and carries the high half of the immediate.

use alloc::vec::Vec;
use core::fmt;

// ---------------------------------------------------------------------------------------------
// Opcode constants (Linux's names)

/// Instruction classes (`BPF_CLASS(code)`).
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

/// Load/store sizes (`BPF_SIZE(code)`).
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;

/// Load/store modes (`BPF_MODE(code)`).
pub const BPF_IMM: u8 = 0x00;
pub const BPF_ABS: u8 = 0x20;
pub const BPF_IND: u8 = 0x40;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_MEMSX: u8 = 0x80;
pub const BPF_ATOMIC: u8 = 0xc0;
/// The old name of [`BPF_ATOMIC`] (with `imm == BPF_ADD` it is the old `xadd`).
pub const BPF_XADD: u8 = 0xc0;

/// Operand sources (`BPF_SRC(code)`).
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

/// ALU operations (`BPF_OP(code)` of `BPF_ALU`/`BPF_ALU64`).
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;

/// Byte-order conversions (the source bit of `BPF_END`). `BPF_ALU64 | BPF_END | BPF_TO_LE` is
/// the unconditional byte swap (`bswap16/32/64`, cpu v4).
pub const BPF_TO_LE: u8 = 0x00;
pub const BPF_TO_BE: u8 = 0x08;
pub const BPF_FROM_LE: u8 = BPF_TO_LE;
pub const BPF_FROM_BE: u8 = BPF_TO_BE;

/// Jump operations (`BPF_OP(code)` of `BPF_JMP`/`BPF_JMP32`).
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;
/// `may_goto` (with `src_reg == BPF_MAY_GOTO`); not supported here.
pub const BPF_JCOND: u8 = 0xe0;

/// Atomic operations (the `imm` of `BPF_STX | BPF_ATOMIC`): `BPF_ADD`, `BPF_OR`, `BPF_AND`,
/// `BPF_XOR`, each optionally `| BPF_FETCH`, and these.
pub const BPF_FETCH: i32 = 0x01;
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;
pub const BPF_LOAD_ACQ: i32 = 0x100;
pub const BPF_STORE_REL: i32 = 0x110;

/// `src_reg` of `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`): what the 64-bit immediate means.
/// `imm` is a map file descriptor (libbpf; the loader puts the map's handle there).
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `imm` is a map fd and the second slot's `imm` an offset into its (single) value.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `imm` is a BTF id of a kernel variable.
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
/// `imm` is the relative instruction offset of a subprogram (a callback's address).
pub const BPF_PSEUDO_FUNC: u8 = 4;
/// `imm` is an index into the program's map array (`fd_array`).
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
/// As [`BPF_PSEUDO_MAP_IDX`], with an offset into the value in the second slot.
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// `src_reg` of `call`: `imm` is the relative instruction offset of a BPF-to-BPF callee.
pub const BPF_PSEUDO_CALL: u8 = 1;
/// `src_reg` of `call`: `imm` is the BTF id of a kernel function (kfunc); not supported here.
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Registers. `r0` returns, `r1`-`r5` pass arguments (caller-saved), `r6`-`r9` are
/// callee-saved, `r10` is the read-only frame pointer.
pub const BPF_REG_0: u8 = 0;
pub const BPF_REG_1: u8 = 1;
pub const BPF_REG_2: u8 = 2;
pub const BPF_REG_3: u8 = 3;
pub const BPF_REG_4: u8 = 4;
pub const BPF_REG_5: u8 = 5;
pub const BPF_REG_6: u8 = 6;
pub const BPF_REG_7: u8 = 7;
pub const BPF_REG_8: u8 = 8;
pub const BPF_REG_9: u8 = 9;
pub const BPF_REG_10: u8 = 10;
pub const BPF_REG_FP: u8 = BPF_REG_10;
/// Number of registers (`__MAX_BPF_REG`).
pub const MAX_BPF_REG: usize = 11;

/// Bytes of stack a frame has (`MAX_BPF_STACK`).
pub const MAX_BPF_STACK: usize = 512;
/// Deepest BPF-to-BPF call chain, the program's own frame included (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;
/// Bytes of one instruction slot.
pub const INSN_SIZE: usize = 8;

/// `BPF_CLASS(code)`.
pub const fn bpf_class(code: u8) -> u8 {
    code & 0x07
}
/// `BPF_SIZE(code)`.
pub const fn bpf_size(code: u8) -> u8 {
    code & 0x18
}
/// `BPF_MODE(code)`.
pub const fn bpf_mode(code: u8) -> u8 {
    code & 0xe0
}
/// `BPF_OP(code)`.
pub const fn bpf_op(code: u8) -> u8 {
    code & 0xf0
}
/// `BPF_SRC(code)`.
pub const fn bpf_src(code: u8) -> u8 {
    code & 0x08
}

// ---------------------------------------------------------------------------------------------
// The instruction

/// One 8-byte instruction slot (`struct bpf_insn`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Insn {
    /// Opcode: class | size/mode, or class | source | operation.
    pub code: u8,
    /// Destination register (4 bits).
    pub dst: u8,
    /// Source register (4 bits), or a pseudo kind (`ld_imm64`, `call`).
    pub src: u8,
    /// Signed offset: of a memory access, a jump, or a variant (`sdiv`, `movsx`).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// The bytes given to [`decode`] are not a whole number of instructions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LengthError {
    pub len: usize,
}

impl fmt::Display for LengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes are not a multiple of the {INSN_SIZE}-byte instruction", self.len)
    }
}

/// Decodes a program from its bytes (as in an ELF section or `bpf_attr.insns`).
pub fn decode(bytes: &[u8]) -> Result<Vec<Insn>, LengthError> {
    if !bytes.len().is_multiple_of(INSN_SIZE) {
        return Err(LengthError { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(INSN_SIZE)
        .map(|c| Insn::from_bytes(c.try_into().expect("chunk of 8")))
        .collect())
}

/// Encodes a program into bytes.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.to_bytes()).collect()
}

impl Insn {
    /// An instruction from its fields (registers are masked to 4 bits when encoded).
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, dst, src, off, imm }
    }

    /// Decodes one slot (little-endian).
    pub const fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes one slot (little-endian).
    pub const fn to_bytes(&self) -> [u8; 8] {
        let o = self.off.to_le_bytes();
        let i = self.imm.to_le_bytes();
        [self.code, (self.dst & 0x0f) | (self.src << 4), o[0], o[1], i[0], i[1], i[2], i[3]]
    }

    pub const fn class(&self) -> u8 {
        bpf_class(self.code)
    }

    /// Whether this is the first slot of `ld_imm64` (the next slot belongs to it).
    pub const fn is_ld_imm64(&self) -> bool {
        self.code == BPF_LD | BPF_IMM | BPF_DW
    }

    /// The 64-bit immediate of `ld_imm64` from this slot and the next.
    pub const fn imm64(&self, next: &Insn) -> u64 {
        (self.imm as u32 as u64) | ((next.imm as u32 as u64) << 32)
    }

    // --- builders, after Linux's filter.h macros ---

    /// `BPF_ALU64_REG(op, dst, src)`: `dst op= src`.
    pub const fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)
    }
    /// `BPF_ALU64_IMM(op, dst, imm)`: `dst op= imm` (imm sign-extended).
    pub const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
    }
    /// `BPF_ALU32_REG(op, dst, src)`: `wdst op= wsrc`, zero-extended.
    pub const fn alu32_reg(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU | op | BPF_X, dst, src, 0, 0)
    }
    /// `BPF_ALU32_IMM(op, dst, imm)`.
    pub const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
    }
    /// Signed division/modulo (`off = 1`): `op` is `BPF_DIV` or `BPF_MOD`, `class` `BPF_ALU`
    /// or `BPF_ALU64`, `src` `BPF_K` (with `imm`) or `BPF_X` (with `src_reg`).
    pub const fn signed(class: u8, op: u8, source: u8, dst: u8, src_reg: u8, imm: i32) -> Insn {
        Insn::new(class | op | source, dst, src_reg, 1, imm)
    }
    /// `BPF_MOV64_REG(dst, src)`.
    pub const fn mov64_reg(dst: u8, src: u8) -> Insn {
        Insn::alu64_reg(BPF_MOV, dst, src)
    }
    /// `BPF_MOV64_IMM(dst, imm)`.
    pub const fn mov64_imm(dst: u8, imm: i32) -> Insn {
        Insn::alu64_imm(BPF_MOV, dst, imm)
    }
    /// `BPF_MOV32_REG(dst, src)`.
    pub const fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::alu32_reg(BPF_MOV, dst, src)
    }
    /// `BPF_MOV32_IMM(dst, imm)`.
    pub const fn mov32_imm(dst: u8, imm: i32) -> Insn {
        Insn::alu32_imm(BPF_MOV, dst, imm)
    }
    /// `BPF_MOVSX64_REG(dst, src, bits)`: `dst = (s8/s16/s32)src`.
    pub const fn movsx64_reg(dst: u8, src: u8, bits: i16) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, bits, 0)
    }
    /// `BPF_MOVSX32_REG(dst, src, bits)`: `wdst = (s8/s16)wsrc`, zero-extended.
    pub const fn movsx32_reg(dst: u8, src: u8, bits: i16) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, bits, 0)
    }
    /// `dst = -dst` (`BPF_ALU64 | BPF_NEG`).
    pub const fn neg64(dst: u8) -> Insn {
        Insn::alu64_imm(BPF_NEG, dst, 0)
    }
    /// `wdst = -wdst`.
    pub const fn neg32(dst: u8) -> Insn {
        Insn::alu32_imm(BPF_NEG, dst, 0)
    }
    /// `BPF_ENDIAN(BPF_TO_LE/BPF_TO_BE, dst, bits)`: `dst = le16/be32/… dst`.
    pub const fn endian(to: u8, dst: u8, bits: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_END | to, dst, 0, 0, bits)
    }
    /// `BPF_BSWAP(dst, bits)`: `dst = bswap16/32/64 dst` (cpu v4).
    pub const fn bswap(dst: u8, bits: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_END | BPF_TO_LE, dst, 0, 0, bits)
    }
    /// `BPF_LD_IMM64_RAW(dst, src, imm)`: the two slots of `ld_imm64`.
    pub const fn ld_imm64_raw(dst: u8, pseudo: u8, imm: u64) -> [Insn; 2] {
        [
            Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst, pseudo, 0, imm as u32 as i32),
            Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
        ]
    }
    /// `BPF_LD_IMM64(dst, imm)`.
    pub const fn ld_imm64(dst: u8, imm: u64) -> [Insn; 2] {
        Insn::ld_imm64_raw(dst, 0, imm)
    }
    /// `BPF_LD_MAP_FD(dst, fd)`.
    pub const fn ld_map_fd(dst: u8, fd: u32) -> [Insn; 2] {
        Insn::ld_imm64_raw(dst, BPF_PSEUDO_MAP_FD, fd as u64)
    }
    /// `BPF_LD_MAP_VALUE(dst, fd, off)`.
    pub const fn ld_map_value(dst: u8, fd: u32, off: u32) -> [Insn; 2] {
        Insn::ld_imm64_raw(dst, BPF_PSEUDO_MAP_VALUE, fd as u64 | (off as u64) << 32)
    }
    /// `BPF_LDX_MEM(size, dst, src, off)`: `dst = *(size *)(src + off)`.
    pub const fn ldx_mem(size: Size, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | size.code() | BPF_MEM, dst, src, off, 0)
    }
    /// `BPF_LDX_MEMSX(size, dst, src, off)`: sign-extending load (cpu v4).
    pub const fn ldx_memsx(size: Size, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | size.code() | BPF_MEMSX, dst, src, off, 0)
    }
    /// `BPF_STX_MEM(size, dst, src, off)`: `*(size *)(dst + off) = src`.
    pub const fn stx_mem(size: Size, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_STX | size.code() | BPF_MEM, dst, src, off, 0)
    }
    /// `BPF_ST_MEM(size, dst, off, imm)`: `*(size *)(dst + off) = imm`.
    pub const fn st_mem(size: Size, dst: u8, off: i16, imm: i32) -> Insn {
        Insn::new(BPF_ST | size.code() | BPF_MEM, dst, 0, off, imm)
    }
    /// `BPF_ATOMIC_OP(size, op, dst, src, off)`, `op` one of the atomic immediates.
    pub const fn atomic_op(size: Size, op: i32, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_STX | size.code() | BPF_ATOMIC, dst, src, off, op)
    }
    /// `BPF_JMP_REG(op, dst, src, off)`: `if dst op src goto pc+off`.
    pub const fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_JMP | op | BPF_X, dst, src, off, 0)
    }
    /// `BPF_JMP_IMM(op, dst, imm, off)`.
    pub const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | op | BPF_K, dst, 0, off, imm)
    }
    /// `BPF_JMP32_REG(op, dst, src, off)`: compares the low 32 bits.
    pub const fn jmp32_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_JMP32 | op | BPF_X, dst, src, off, 0)
    }
    /// `BPF_JMP32_IMM(op, dst, imm, off)`.
    pub const fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP32 | op | BPF_K, dst, 0, off, imm)
    }
    /// `BPF_JMP_A(off)`: `goto pc+off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JA, 0, 0, off, 0)
    }
    /// `BPF_JMP32_A(imm)`: `gotol pc+imm` (cpu v4, a 32-bit offset).
    pub const fn gotol(imm: i32) -> Insn {
        Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, imm)
    }
    /// `BPF_EMIT_CALL(id)`: a helper call.
    pub const fn call_helper(id: u32) -> Insn {
        Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, id as i32)
    }
    /// `BPF_CALL_REL(imm)`: a BPF-to-BPF call of the instruction at `pc + 1 + imm`.
    pub const fn call_rel(imm: i32) -> Insn {
        Insn::new(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, imm)
    }
    /// `BPF_EXIT_INSN()`.
    pub const fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

// ---------------------------------------------------------------------------------------------
// The typed view

/// Width of a memory access.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Size {
    /// `BPF_B`, `u8`.
    B,
    /// `BPF_H`, `u16`.
    H,
    /// `BPF_W`, `u32`.
    W,
    /// `BPF_DW`, `u64`.
    DW,
}

impl Size {
    pub const fn from_code(code: u8) -> Size {
        match bpf_size(code) {
            BPF_B => Size::B,
            BPF_H => Size::H,
            BPF_W => Size::W,
            _ => Size::DW,
        }
    }
    /// The `BPF_SIZE` bits.
    pub const fn code(self) -> u8 {
        match self {
            Size::B => BPF_B,
            Size::H => BPF_H,
            Size::W => BPF_W,
            Size::DW => BPF_DW,
        }
    }
    pub const fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
    /// The mask of the value's bits.
    pub const fn mask(self) -> u64 {
        match self {
            Size::DW => u64::MAX,
            s => (1u64 << (8 * s.bytes())) - 1,
        }
    }
    /// Sign-extends the low `self` bytes of `v` to 64 bits.
    pub const fn sign_extend(self, v: u64) -> u64 {
        match self {
            Size::B => v as i8 as i64 as u64,
            Size::H => v as i16 as i64 as u64,
            Size::W => v as i32 as i64 as u64,
            Size::DW => v,
        }
    }
    /// `u8`, `u16`, `u32`, `u64` (Linux's `bpf_ldst_string`).
    pub const fn unsigned_name(self) -> &'static str {
        match self {
            Size::B => "u8",
            Size::H => "u16",
            Size::W => "u32",
            Size::DW => "u64",
        }
    }
    /// `s8`, `s16`, `s32`, `s64` (Linux's `bpf_ldsx_string`).
    pub const fn signed_name(self) -> &'static str {
        match self {
            Size::B => "s8",
            Size::H => "s16",
            Size::W => "s32",
            Size::DW => "s64",
        }
    }
}

/// The second operand of an ALU operation, a conditional jump or a store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Operand {
    /// `BPF_K`: the immediate (sign-extended to 64 bits where 64 bits are used).
    Imm(i32),
    /// `BPF_X`: a register.
    Reg(u8),
}

/// ALU operations with two operands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    /// Unsigned division; by zero gives 0.
    Div,
    /// Signed division (`off = 1`); by zero gives 0, `MIN / -1` gives `MIN`.
    Sdiv,
    Or,
    And,
    /// Shift left; the amount is masked to the width (`& 63`, `& 31`).
    Lsh,
    Rsh,
    /// Unsigned modulo; by zero leaves the destination (its low 32 bits for `BPF_ALU`).
    Mod,
    /// Signed modulo (`off = 1`), the sign of the dividend; by zero as `Mod`; `MIN % -1` is 0.
    Smod,
    Xor,
    Mov,
    /// Sign-extending move of the low 8, 16 or 32 bits of a register (`off`, cpu v4).
    Movsx(u8),
    Arsh,
}

/// Conditions of `BPF_JMP`/`BPF_JMP32`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
    Ne,
    Sgt,
    Sge,
    Lt,
    Le,
    Slt,
    Sle,
}

impl Cond {
    fn from_op(op: u8) -> Option<Cond> {
        Some(match op {
            BPF_JEQ => Cond::Eq,
            BPF_JGT => Cond::Gt,
            BPF_JGE => Cond::Ge,
            BPF_JSET => Cond::Set,
            BPF_JNE => Cond::Ne,
            BPF_JSGT => Cond::Sgt,
            BPF_JSGE => Cond::Sge,
            BPF_JLT => Cond::Lt,
            BPF_JLE => Cond::Le,
            BPF_JSLT => Cond::Slt,
            BPF_JSLE => Cond::Sle,
            _ => return None,
        })
    }

    /// Whether the jump is taken, on 64-bit operands (`BPF_JMP`).
    pub const fn holds64(self, a: u64, b: u64) -> bool {
        match self {
            Cond::Eq => a == b,
            Cond::Gt => a > b,
            Cond::Ge => a >= b,
            Cond::Set => a & b != 0,
            Cond::Ne => a != b,
            Cond::Sgt => (a as i64) > (b as i64),
            Cond::Sge => (a as i64) >= (b as i64),
            Cond::Lt => a < b,
            Cond::Le => a <= b,
            Cond::Slt => (a as i64) < (b as i64),
            Cond::Sle => (a as i64) <= (b as i64),
        }
    }

    /// Whether the jump is taken, on the low 32 bits (`BPF_JMP32`).
    pub const fn holds32(self, a: u64, b: u64) -> bool {
        let (a, b) = (a as u32, b as u32);
        match self {
            Cond::Eq => a == b,
            Cond::Gt => a > b,
            Cond::Ge => a >= b,
            Cond::Set => a & b != 0,
            Cond::Ne => a != b,
            Cond::Sgt => (a as i32) > (b as i32),
            Cond::Sge => (a as i32) >= (b as i32),
            Cond::Lt => a < b,
            Cond::Le => a <= b,
            Cond::Slt => (a as i32) < (b as i32),
            Cond::Sle => (a as i32) <= (b as i32),
        }
    }

    /// The operator in Linux's disassembly (`bpf_jmp_string`).
    pub const fn symbol(self) -> &'static str {
        match self {
            Cond::Eq => "==",
            Cond::Gt => ">",
            Cond::Ge => ">=",
            Cond::Set => "&",
            Cond::Ne => "!=",
            Cond::Sgt => "s>",
            Cond::Sge => "s>=",
            Cond::Lt => "<",
            Cond::Le => "<=",
            Cond::Slt => "s<",
            Cond::Sle => "s<=",
        }
    }
}

/// Byte-order operations of `BPF_END`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endian {
    /// `leN`: to little-endian; on this little-endian target it truncates to N bits.
    ToLe,
    /// `beN`: to big-endian: swaps the low N bits' bytes, zero-extended.
    ToBe,
    /// `bswapN` (`BPF_ALU64`, cpu v4): swaps unconditionally.
    Swap,
}

/// Read-modify-write operations of `BPF_STX | BPF_ATOMIC`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AtomicOp {
    Add,
    Or,
    And,
    Xor,
    /// Always fetches: `src = xchg(mem, src)`.
    Xchg,
    /// Always fetches: `r0 = cmpxchg(mem, r0, src)`.
    Cmpxchg,
}

impl AtomicOp {
    /// The new memory value from the old one, the operand (`src`) and, for `Cmpxchg`, the
    /// expected value (`r0`), all already truncated to the access width.
    pub const fn apply(self, old: u64, operand: u64, expected: u64) -> u64 {
        match self {
            AtomicOp::Add => old.wrapping_add(operand),
            AtomicOp::Or => old | operand,
            AtomicOp::And => old & operand,
            AtomicOp::Xor => old ^ operand,
            AtomicOp::Xchg => operand,
            AtomicOp::Cmpxchg => {
                if old == expected {
                    operand
                } else {
                    old
                }
            }
        }
    }
}

/// What an instruction does: the opcode, its reserved fields checked, as Linux's verifier checks
/// them ("uses reserved fields"), and its operands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// `BPF_ALU` (`w64 == false`: 32-bit, result zero-extended) or `BPF_ALU64`.
    Alu {
        w64: bool,
        op: AluOp,
        dst: u8,
        src: Operand,
    },
    /// `dst = -dst`.
    Neg {
        w64: bool,
        dst: u8,
    },
    /// Byte order: `bits` is 16, 32 or 64.
    End {
        kind: Endian,
        bits: u8,
        dst: u8,
    },
    /// `ld_imm64`; the value is [`Insn::imm64`] with the next slot, its meaning `pseudo`
    /// (0: a constant, else one of the `BPF_PSEUDO_*` of `ld_imm64`).
    LdImm64 {
        dst: u8,
        pseudo: u8,
    },
    /// `BPF_LDX | BPF_MEM` (`signed == false`) or `BPF_MEMSX`: `dst = *(size *)(src + off)`.
    Load {
        size: Size,
        signed: bool,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// `BPF_ST` (an immediate) or `BPF_STX | BPF_MEM` (a register): `*(size *)(dst + off) = src`.
    Store {
        size: Size,
        dst: u8,
        off: i16,
        src: Operand,
    },
    /// `BPF_STX | BPF_ATOMIC` read-modify-write (`W` or `DW`).
    Atomic {
        size: Size,
        op: AtomicOp,
        fetch: bool,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// `dst = load_acquire((size *)(src + off))`.
    LoadAcquire {
        size: Size,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// `store_release((size *)(dst + off), src)`.
    StoreRelease {
        size: Size,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// `if dst cond src goto pc+off` (`w64 == false`: `BPF_JMP32`, the low 32 bits).
    Jump {
        w64: bool,
        cond: Cond,
        dst: u8,
        src: Operand,
        off: i16,
    },
    /// `goto pc+delta` (`long`: `gotol`, `BPF_JMP32 | BPF_JA` with the offset in `imm`).
    Ja {
        delta: i32,
        long: bool,
    },
    /// A helper call, `imm` the helper's id (`BPF_FUNC_*`).
    Call {
        helper: u32,
    },
    /// A BPF-to-BPF call of the instruction at `pc + 1 + delta`.
    CallLocal {
        delta: i32,
    },
    /// A kfunc call (`BPF_PSEUDO_KFUNC_CALL`: `imm` a BTF id, `off` a BTF fd index).
    CallKfunc {
        btf_id: i32,
        off: i16,
    },
    Exit,
}

/// Why an instruction is not a valid one (Linux's verifier words where it has them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InsnError {
    /// "unknown opcode %02x".
    UnknownOpcode(u8),
    /// "BPF_ALU uses reserved fields" and the like: a field that must be zero is not, or a
    /// variant (`off`, `imm`) that does not exist.
    Reserved(&'static str),
    /// "R%d is invalid": a register number above 10.
    BadRegister(u8),
    /// "invalid bpf_ld_imm64 insn": the second slot is missing or not all zero but its `imm`.
    BadLdImm64,
    /// An instruction of Linux's this runtime does not implement (legacy packet loads,
    /// `may_goto`, arena address-space casts).
    Unsupported(&'static str),
}

impl fmt::Display for InsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsnError::UnknownOpcode(c) => write!(f, "unknown opcode {c:02x}"),
            InsnError::Reserved(what) => write!(f, "{what} uses reserved fields"),
            InsnError::BadRegister(r) => write!(f, "R{r} is invalid"),
            InsnError::BadLdImm64 => f.write_str("invalid bpf_ld_imm64 insn"),
            InsnError::Unsupported(what) => write!(f, "unsupported instruction: {what}"),
        }
    }
}

fn reg(r: u8) -> Result<u8, InsnError> {
    if (r as usize) < MAX_BPF_REG { Ok(r) } else { Err(InsnError::BadRegister(r)) }
}

impl Insn {
    /// What this instruction does, or why it is not valid. Only this slot is looked at: for
    /// `ld_imm64` see [`Insn::check_ld_imm64_tail`].
    pub fn op(&self) -> Result<Op, InsnError> {
        let code = self.code;
        match bpf_class(code) {
            BPF_ALU | BPF_ALU64 => self.alu_op(),
            BPF_LD => {
                if code == BPF_LD | BPF_IMM | BPF_DW {
                    if self.off != 0 {
                        return Err(InsnError::BadLdImm64);
                    }
                    if self.src > BPF_PSEUDO_MAP_IDX_VALUE {
                        return Err(InsnError::BadLdImm64);
                    }
                    Ok(Op::LdImm64 { dst: reg(self.dst)?, pseudo: self.src })
                } else if matches!(bpf_mode(code), BPF_ABS | BPF_IND) {
                    Err(InsnError::Unsupported("legacy packet load (BPF_ABS/BPF_IND)"))
                } else {
                    Err(InsnError::UnknownOpcode(code))
                }
            }
            BPF_LDX => {
                let size = Size::from_code(code);
                let signed = match bpf_mode(code) {
                    BPF_MEM => false,
                    BPF_MEMSX if size != Size::DW => true,
                    _ => return Err(InsnError::UnknownOpcode(code)),
                };
                if self.imm != 0 {
                    return Err(InsnError::Reserved("BPF_LDX"));
                }
                Ok(Op::Load {
                    size,
                    signed,
                    dst: reg(self.dst)?,
                    src: reg(self.src)?,
                    off: self.off,
                })
            }
            BPF_ST => {
                if bpf_mode(code) != BPF_MEM {
                    return Err(InsnError::UnknownOpcode(code));
                }
                if self.src != 0 {
                    return Err(InsnError::Reserved("BPF_ST"));
                }
                Ok(Op::Store {
                    size: Size::from_code(code),
                    dst: reg(self.dst)?,
                    off: self.off,
                    src: Operand::Imm(self.imm),
                })
            }
            BPF_STX => {
                let size = Size::from_code(code);
                let (dst, src, off) = (reg(self.dst)?, reg(self.src)?, self.off);
                match bpf_mode(code) {
                    BPF_MEM => {
                        if self.imm != 0 {
                            return Err(InsnError::Reserved("BPF_STX"));
                        }
                        Ok(Op::Store { size, dst, off, src: Operand::Reg(src) })
                    }
                    BPF_ATOMIC => {
                        match self.imm {
                            BPF_LOAD_ACQ => {
                                return Ok(Op::LoadAcquire { size, dst, src, off });
                            }
                            BPF_STORE_REL => {
                                return Ok(Op::StoreRelease { size, dst, src, off });
                            }
                            _ => {}
                        }
                        if !matches!(size, Size::W | Size::DW) {
                            return Err(InsnError::Reserved("BPF_ATOMIC"));
                        }
                        let fetch = self.imm & BPF_FETCH != 0;
                        let op = match self.imm & !BPF_FETCH {
                            0x00 => AtomicOp::Add,
                            0x40 => AtomicOp::Or,
                            0x50 => AtomicOp::And,
                            0xa0 => AtomicOp::Xor,
                            0xe0 if fetch => AtomicOp::Xchg,
                            0xf0 if fetch => AtomicOp::Cmpxchg,
                            _ => return Err(InsnError::Reserved("BPF_ATOMIC")),
                        };
                        Ok(Op::Atomic { size, op, fetch, dst, src, off })
                    }
                    _ => Err(InsnError::UnknownOpcode(code)),
                }
            }
            _ => self.jmp_op(),
        }
    }

    fn alu_op(&self) -> Result<Op, InsnError> {
        let code = self.code;
        let w64 = bpf_class(code) == BPF_ALU64;
        let what = if w64 { "BPF_ALU64" } else { "BPF_ALU" };
        let dst = reg(self.dst)?;
        let x = bpf_src(code) == BPF_X;
        match bpf_op(code) {
            BPF_NEG => {
                if x || self.src != 0 || self.off != 0 || self.imm != 0 {
                    return Err(InsnError::Reserved(what));
                }
                Ok(Op::Neg { w64, dst })
            }
            BPF_END => {
                if self.src != 0 || self.off != 0 || !matches!(self.imm, 16 | 32 | 64) {
                    return Err(InsnError::Reserved(what));
                }
                let kind = match (w64, x) {
                    (false, false) => Endian::ToLe,
                    (false, true) => Endian::ToBe,
                    (true, false) => Endian::Swap,
                    (true, true) => return Err(InsnError::Reserved(what)),
                };
                Ok(Op::End { kind, bits: self.imm as u8, dst })
            }
            0xe0 | 0xf0 => Err(InsnError::UnknownOpcode(code)),
            op => {
                let src = if x {
                    if self.imm != 0 {
                        return Err(InsnError::Reserved(what));
                    }
                    Operand::Reg(reg(self.src)?)
                } else {
                    if self.src != 0 {
                        return Err(InsnError::Reserved(what));
                    }
                    Operand::Imm(self.imm)
                };
                let signed = match (op, self.off) {
                    (_, 0) => false,
                    (BPF_DIV | BPF_MOD, 1) => true,
                    (BPF_MOV, 8 | 16) if x => {
                        return Ok(Op::Alu { w64, op: AluOp::Movsx(self.off as u8), dst, src });
                    }
                    (BPF_MOV, 32) if x && w64 => {
                        return Ok(Op::Alu { w64, op: AluOp::Movsx(32), dst, src });
                    }
                    (BPF_MOV, 1) if x && w64 => {
                        return Err(InsnError::Unsupported("arena address-space cast"));
                    }
                    _ => return Err(InsnError::Reserved(what)),
                };
                let op = match op {
                    BPF_ADD => AluOp::Add,
                    BPF_SUB => AluOp::Sub,
                    BPF_MUL => AluOp::Mul,
                    BPF_DIV if signed => AluOp::Sdiv,
                    BPF_DIV => AluOp::Div,
                    BPF_OR => AluOp::Or,
                    BPF_AND => AluOp::And,
                    BPF_LSH => AluOp::Lsh,
                    BPF_RSH => AluOp::Rsh,
                    BPF_MOD if signed => AluOp::Smod,
                    BPF_MOD => AluOp::Mod,
                    BPF_XOR => AluOp::Xor,
                    BPF_MOV => AluOp::Mov,
                    _ => AluOp::Arsh,
                };
                Ok(Op::Alu { w64, op, dst, src })
            }
        }
    }

    fn jmp_op(&self) -> Result<Op, InsnError> {
        let code = self.code;
        let w64 = bpf_class(code) == BPF_JMP;
        let what = if w64 { "BPF_JMP" } else { "BPF_JMP32" };
        let x = bpf_src(code) == BPF_X;
        match bpf_op(code) {
            BPF_JA => {
                if x || self.src != 0 || self.dst != 0 {
                    return Err(InsnError::Reserved("BPF_JA"));
                }
                if w64 {
                    if self.imm != 0 {
                        return Err(InsnError::Reserved("BPF_JA"));
                    }
                    Ok(Op::Ja { delta: self.off as i32, long: false })
                } else {
                    if self.off != 0 {
                        return Err(InsnError::Reserved("BPF_JA"));
                    }
                    Ok(Op::Ja { delta: self.imm, long: true })
                }
            }
            BPF_CALL => {
                if x || !w64 || self.dst != 0 {
                    return Err(InsnError::Reserved("BPF_CALL"));
                }
                match self.src {
                    0 if self.off == 0 => Ok(Op::Call { helper: self.imm as u32 }),
                    BPF_PSEUDO_CALL if self.off == 0 => Ok(Op::CallLocal { delta: self.imm }),
                    BPF_PSEUDO_KFUNC_CALL => Ok(Op::CallKfunc { btf_id: self.imm, off: self.off }),
                    _ => Err(InsnError::Reserved("BPF_CALL")),
                }
            }
            BPF_EXIT => {
                if x || !w64 || self.imm != 0 || self.src != 0 || self.dst != 0 {
                    return Err(InsnError::Reserved("BPF_EXIT"));
                }
                Ok(Op::Exit)
            }
            BPF_JCOND if w64 => Err(InsnError::Unsupported("may_goto")),
            op => {
                let cond = Cond::from_op(op).ok_or(InsnError::UnknownOpcode(code))?;
                let dst = reg(self.dst)?;
                let src = if x {
                    if self.imm != 0 {
                        return Err(InsnError::Reserved(what));
                    }
                    Operand::Reg(reg(self.src)?)
                } else {
                    if self.src != 0 {
                        return Err(InsnError::Reserved(what));
                    }
                    Operand::Imm(self.imm)
                };
                Ok(Op::Jump { w64, cond, dst, src, off: self.off })
            }
        }
    }

    /// Checks the second slot of `ld_imm64` (`self` is the first): it must exist and be zero but
    /// for its `imm` ("invalid bpf_ld_imm64 insn").
    pub fn check_ld_imm64_tail(next: Option<&Insn>) -> Result<(), InsnError> {
        match next {
            Some(n) if n.code == 0 && n.dst == 0 && n.src == 0 && n.off == 0 => Ok(()),
            _ => Err(InsnError::BadLdImm64),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text, as Linux's kernel/bpf/disasm.c prints it

/// Linux's helper names by id (`func_id_str` of kernel/bpf/disasm.c, from `__BPF_FUNC_MAPPER`
/// of Linux 6.2+: 212 helpers, ids 0-211).
pub static HELPER_NAMES: [&str; 212] = [
    "bpf_unspec",
    "bpf_map_lookup_elem",
    "bpf_map_update_elem",
    "bpf_map_delete_elem",
    "bpf_probe_read",
    "bpf_ktime_get_ns",
    "bpf_trace_printk",
    "bpf_get_prandom_u32",
    "bpf_get_smp_processor_id",
    "bpf_skb_store_bytes",
    "bpf_l3_csum_replace",
    "bpf_l4_csum_replace",
    "bpf_tail_call",
    "bpf_clone_redirect",
    "bpf_get_current_pid_tgid",
    "bpf_get_current_uid_gid",
    "bpf_get_current_comm",
    "bpf_get_cgroup_classid",
    "bpf_skb_vlan_push",
    "bpf_skb_vlan_pop",
    "bpf_skb_get_tunnel_key",
    "bpf_skb_set_tunnel_key",
    "bpf_perf_event_read",
    "bpf_redirect",
    "bpf_get_route_realm",
    "bpf_perf_event_output",
    "bpf_skb_load_bytes",
    "bpf_get_stackid",
    "bpf_csum_diff",
    "bpf_skb_get_tunnel_opt",
    "bpf_skb_set_tunnel_opt",
    "bpf_skb_change_proto",
    "bpf_skb_change_type",
    "bpf_skb_under_cgroup",
    "bpf_get_hash_recalc",
    "bpf_get_current_task",
    "bpf_probe_write_user",
    "bpf_current_task_under_cgroup",
    "bpf_skb_change_tail",
    "bpf_skb_pull_data",
    "bpf_csum_update",
    "bpf_set_hash_invalid",
    "bpf_get_numa_node_id",
    "bpf_skb_change_head",
    "bpf_xdp_adjust_head",
    "bpf_probe_read_str",
    "bpf_get_socket_cookie",
    "bpf_get_socket_uid",
    "bpf_set_hash",
    "bpf_setsockopt",
    "bpf_skb_adjust_room",
    "bpf_redirect_map",
    "bpf_sk_redirect_map",
    "bpf_sock_map_update",
    "bpf_xdp_adjust_meta",
    "bpf_perf_event_read_value",
    "bpf_perf_prog_read_value",
    "bpf_getsockopt",
    "bpf_override_return",
    "bpf_sock_ops_cb_flags_set",
    "bpf_msg_redirect_map",
    "bpf_msg_apply_bytes",
    "bpf_msg_cork_bytes",
    "bpf_msg_pull_data",
    "bpf_bind",
    "bpf_xdp_adjust_tail",
    "bpf_skb_get_xfrm_state",
    "bpf_get_stack",
    "bpf_skb_load_bytes_relative",
    "bpf_fib_lookup",
    "bpf_sock_hash_update",
    "bpf_msg_redirect_hash",
    "bpf_sk_redirect_hash",
    "bpf_lwt_push_encap",
    "bpf_lwt_seg6_store_bytes",
    "bpf_lwt_seg6_adjust_srh",
    "bpf_lwt_seg6_action",
    "bpf_rc_repeat",
    "bpf_rc_keydown",
    "bpf_skb_cgroup_id",
    "bpf_get_current_cgroup_id",
    "bpf_get_local_storage",
    "bpf_sk_select_reuseport",
    "bpf_skb_ancestor_cgroup_id",
    "bpf_sk_lookup_tcp",
    "bpf_sk_lookup_udp",
    "bpf_sk_release",
    "bpf_map_push_elem",
    "bpf_map_pop_elem",
    "bpf_map_peek_elem",
    "bpf_msg_push_data",
    "bpf_msg_pop_data",
    "bpf_rc_pointer_rel",
    "bpf_spin_lock",
    "bpf_spin_unlock",
    "bpf_sk_fullsock",
    "bpf_tcp_sock",
    "bpf_skb_ecn_set_ce",
    "bpf_get_listener_sock",
    "bpf_skc_lookup_tcp",
    "bpf_tcp_check_syncookie",
    "bpf_sysctl_get_name",
    "bpf_sysctl_get_current_value",
    "bpf_sysctl_get_new_value",
    "bpf_sysctl_set_new_value",
    "bpf_strtol",
    "bpf_strtoul",
    "bpf_sk_storage_get",
    "bpf_sk_storage_delete",
    "bpf_send_signal",
    "bpf_tcp_gen_syncookie",
    "bpf_skb_output",
    "bpf_probe_read_user",
    "bpf_probe_read_kernel",
    "bpf_probe_read_user_str",
    "bpf_probe_read_kernel_str",
    "bpf_tcp_send_ack",
    "bpf_send_signal_thread",
    "bpf_jiffies64",
    "bpf_read_branch_records",
    "bpf_get_ns_current_pid_tgid",
    "bpf_xdp_output",
    "bpf_get_netns_cookie",
    "bpf_get_current_ancestor_cgroup_id",
    "bpf_sk_assign",
    "bpf_ktime_get_boot_ns",
    "bpf_seq_printf",
    "bpf_seq_write",
    "bpf_sk_cgroup_id",
    "bpf_sk_ancestor_cgroup_id",
    "bpf_ringbuf_output",
    "bpf_ringbuf_reserve",
    "bpf_ringbuf_submit",
    "bpf_ringbuf_discard",
    "bpf_ringbuf_query",
    "bpf_csum_level",
    "bpf_skc_to_tcp6_sock",
    "bpf_skc_to_tcp_sock",
    "bpf_skc_to_tcp_timewait_sock",
    "bpf_skc_to_tcp_request_sock",
    "bpf_skc_to_udp6_sock",
    "bpf_get_task_stack",
    "bpf_load_hdr_opt",
    "bpf_store_hdr_opt",
    "bpf_reserve_hdr_opt",
    "bpf_inode_storage_get",
    "bpf_inode_storage_delete",
    "bpf_d_path",
    "bpf_copy_from_user",
    "bpf_snprintf_btf",
    "bpf_seq_printf_btf",
    "bpf_skb_cgroup_classid",
    "bpf_redirect_neigh",
    "bpf_per_cpu_ptr",
    "bpf_this_cpu_ptr",
    "bpf_redirect_peer",
    "bpf_task_storage_get",
    "bpf_task_storage_delete",
    "bpf_get_current_task_btf",
    "bpf_bprm_opts_set",
    "bpf_ktime_get_coarse_ns",
    "bpf_ima_inode_hash",
    "bpf_sock_from_file",
    "bpf_check_mtu",
    "bpf_for_each_map_elem",
    "bpf_snprintf",
    "bpf_sys_bpf",
    "bpf_btf_find_by_name_kind",
    "bpf_sys_close",
    "bpf_timer_init",
    "bpf_timer_set_callback",
    "bpf_timer_start",
    "bpf_timer_cancel",
    "bpf_get_func_ip",
    "bpf_get_attach_cookie",
    "bpf_task_pt_regs",
    "bpf_get_branch_snapshot",
    "bpf_trace_vprintk",
    "bpf_skc_to_unix_sock",
    "bpf_kallsyms_lookup_name",
    "bpf_find_vma",
    "bpf_loop",
    "bpf_strncmp",
    "bpf_get_func_arg",
    "bpf_get_func_ret",
    "bpf_get_func_arg_cnt",
    "bpf_get_retval",
    "bpf_set_retval",
    "bpf_xdp_get_buff_len",
    "bpf_xdp_load_bytes",
    "bpf_xdp_store_bytes",
    "bpf_copy_from_user_task",
    "bpf_skb_set_tstamp",
    "bpf_ima_file_hash",
    "bpf_kptr_xchg",
    "bpf_map_lookup_percpu_elem",
    "bpf_skc_to_mptcp_sock",
    "bpf_dynptr_from_mem",
    "bpf_ringbuf_reserve_dynptr",
    "bpf_ringbuf_submit_dynptr",
    "bpf_ringbuf_discard_dynptr",
    "bpf_dynptr_read",
    "bpf_dynptr_write",
    "bpf_dynptr_data",
    "bpf_tcp_raw_gen_syncookie_ipv4",
    "bpf_tcp_raw_gen_syncookie_ipv6",
    "bpf_tcp_raw_check_syncookie_ipv4",
    "bpf_tcp_raw_check_syncookie_ipv6",
    "bpf_ktime_get_tai_ns",
    "bpf_user_ringbuf_drain",
    "bpf_cgrp_storage_get",
    "bpf_cgrp_storage_delete",
];

/// Linux's name of a helper (`bpf_map_lookup_elem` for 1), `None` for an unknown id.
pub fn helper_name(id: u32) -> Option<&'static str> {
    HELPER_NAMES.get(id as usize).copied()
}

/// Linux's id of a helper by name, with or without the `bpf_` prefix.
pub fn helper_id(name: &str) -> Option<u32> {
    let name = name.strip_prefix("bpf_").unwrap_or(name);
    HELPER_NAMES.iter().position(|n| &n[4..] == name).map(|i| i as u32)
}

/// How [`Insn::display`] names what an instruction refers to: helpers and the 64-bit immediates
/// of `ld_imm64` that are not constants. The defaults are bpftool's (`prog dump xlated`).
pub trait Names {
    /// A helper's name; the default is Linux's table ([`helper_name`]), `unknown` beyond it.
    fn helper(&self, id: u32) -> &str {
        helper_name(id).unwrap_or("unknown")
    }
    /// Writes the value of `ld_imm64` with pseudo source `pseudo` (not 0), low half `lo` and
    /// high half `hi`. The default is bpftool's `print_imm`: `map[id:LO]`,
    /// `map[id:LO][0]+HI`, `map[idx:LO]+HI`, `subprog[+LO]`, else the hex value.
    fn imm64(&self, f: &mut fmt::Formatter<'_>, pseudo: u8, lo: u32, hi: u32) -> fmt::Result {
        match pseudo {
            BPF_PSEUDO_MAP_FD => write!(f, "map[id:{lo}]"),
            BPF_PSEUDO_MAP_VALUE => write!(f, "map[id:{lo}][0]+{hi}"),
            BPF_PSEUDO_MAP_IDX => write!(f, "map[idx:{lo}]"),
            BPF_PSEUDO_MAP_IDX_VALUE => write!(f, "map[idx:{lo}]+{hi}"),
            BPF_PSEUDO_FUNC => write!(f, "subprog[{:+}]", lo as i32),
            _ => write!(f, "{:#x}", (lo as u64) | ((hi as u64) << 32)),
        }
    }
}

/// The default [`Names`]: Linux's helper names, bpftool's `ld_imm64` text.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxNames;
impl Names for LinuxNames {}

/// One instruction's text; see [`Insn::display`].
pub struct InsnText<'a> {
    insn: &'a Insn,
    next: Option<&'a Insn>,
    names: &'a dyn Names,
}

impl Insn {
    /// The instruction's text as Linux's verifier log and `bpftool prog dump xlated` print it
    /// (without the `(code)` prefix): `r1 = *(u32 *)(r10 -4)`, `if r1 > 0x5 goto pc+3`,
    /// `call bpf_map_lookup_elem#1`, `exit`. `next` is the following slot, read for `ld_imm64`
    /// (without it the high half shows as 0).
    pub fn display<'a>(&'a self, next: Option<&'a Insn>, names: &'a dyn Names) -> InsnText<'a> {
        InsnText { insn: self, next, names }
    }
}

/// `Display` of one slot alone, with [`LinuxNames`]; an `ld_imm64` shows its low half only.
impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display(None, &LinuxNames).fmt(f)
    }
}

fn r(w64: bool) -> char {
    if w64 { 'r' } else { 'w' }
}

impl fmt::Display for InsnText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.insn;
        let op = match i.op() {
            Ok(op) => op,
            // Linux prints `BUG_…` for what its verifier would refuse; say what is wrong.
            Err(e) => return write!(f, "invalid: {e}"),
        };
        match op {
            Op::Alu { w64, op, dst, src } => {
                let c = r(w64);
                let sym = match op {
                    AluOp::Add => "+=",
                    AluOp::Sub => "-=",
                    AluOp::Mul => "*=",
                    AluOp::Div => "/=",
                    AluOp::Sdiv => "s/=",
                    AluOp::Or => "|=",
                    AluOp::And => "&=",
                    AluOp::Lsh => "<<=",
                    AluOp::Rsh => ">>=",
                    AluOp::Mod => "%=",
                    AluOp::Smod => "s%=",
                    AluOp::Xor => "^=",
                    AluOp::Mov | AluOp::Movsx(_) => "=",
                    AluOp::Arsh => "s>>=",
                };
                let sx = match op {
                    AluOp::Movsx(8) => "(s8)",
                    AluOp::Movsx(16) => "(s16)",
                    AluOp::Movsx(_) => "(s32)",
                    _ => "",
                };
                match src {
                    Operand::Reg(s) => write!(f, "{c}{dst} {sym} {sx}{c}{s}"),
                    Operand::Imm(imm) => write!(f, "{c}{dst} {sym} {imm}"),
                }
            }
            Op::Neg { w64, dst } => {
                let c = r(w64);
                write!(f, "{c}{dst} = -{c}{dst}")
            }
            Op::End { kind, bits, dst } => {
                let name = match kind {
                    Endian::ToLe => "le",
                    Endian::ToBe => "be",
                    Endian::Swap => "bswap",
                };
                write!(f, "r{dst} = {name}{bits} r{dst}")
            }
            Op::LdImm64 { dst, pseudo } => {
                let hi = self.next.map_or(0, |n| n.imm as u32);
                let lo = i.imm as u32;
                write!(f, "r{dst} = ")?;
                if pseudo == 0 {
                    write!(f, "{:#x}", (lo as u64) | ((hi as u64) << 32))
                } else {
                    self.names.imm64(f, pseudo, lo, hi)
                }
            }
            Op::Load { size, signed, dst, src, off } => {
                let ty = if signed { size.signed_name() } else { size.unsigned_name() };
                write!(f, "r{dst} = *({ty} *)(r{src} {off:+})")
            }
            Op::Store { size, dst, off, src } => {
                let ty = size.unsigned_name();
                match src {
                    Operand::Reg(s) => write!(f, "*({ty} *)(r{dst} {off:+}) = r{s}"),
                    Operand::Imm(imm) => write!(f, "*({ty} *)(r{dst} {off:+}) = {imm}"),
                }
            }
            Op::Atomic { size, op, fetch, dst, src, off } => {
                let ty = size.unsigned_name();
                let w = if size == Size::DW { "64" } else { "" };
                match (op, fetch) {
                    (AtomicOp::Xchg, _) => {
                        write!(f, "r{src} = atomic{w}_xchg(({ty} *)(r{dst} {off:+}), r{src})")
                    }
                    (AtomicOp::Cmpxchg, _) => {
                        write!(f, "r0 = atomic{w}_cmpxchg(({ty} *)(r{dst} {off:+}), r0, r{src})")
                    }
                    (op, false) => {
                        let sym = match op {
                            AtomicOp::Add => "+=",
                            AtomicOp::Or => "|=",
                            AtomicOp::And => "&=",
                            _ => "^=",
                        };
                        write!(f, "lock *({ty} *)(r{dst} {off:+}) {sym} r{src}")
                    }
                    (op, true) => {
                        let name = match op {
                            AtomicOp::Add => "add",
                            AtomicOp::Or => "or",
                            AtomicOp::And => "and",
                            _ => "xor",
                        };
                        write!(
                            f,
                            "r{src} = atomic{w}_fetch_{name}(({ty} *)(r{dst} {off:+}), r{src})"
                        )
                    }
                }
            }
            Op::LoadAcquire { size, dst, src, off } => {
                write!(f, "r{dst} = load_acquire(({} *)(r{src} {off:+}))", size.unsigned_name())
            }
            Op::StoreRelease { size, dst, src, off } => {
                write!(f, "store_release(({} *)(r{dst} {off:+}), r{src})", size.unsigned_name())
            }
            Op::Jump { w64, cond, dst, src, off } => {
                let c = r(w64);
                let sym = cond.symbol();
                match src {
                    Operand::Reg(s) => write!(f, "if {c}{dst} {sym} {c}{s} goto pc{off:+}"),
                    Operand::Imm(imm) => {
                        write!(f, "if {c}{dst} {sym} {:#x} goto pc{off:+}", imm as u32)
                    }
                }
            }
            Op::Ja { delta, long: false } => write!(f, "goto pc{delta:+}"),
            Op::Ja { delta, long: true } => write!(f, "gotol pc{delta:+}"),
            Op::Call { helper } => write!(f, "call {}#{}", self.names.helper(helper), i.imm),
            Op::CallLocal { delta } => write!(f, "call pc{delta:+}"),
            Op::CallKfunc { btf_id, .. } => write!(f, "call kernel-function#{btf_id}"),
            Op::Exit => f.write_str("exit"),
        }
    }
}

/// A program's listing as `bpftool prog dump xlated` prints it, one instruction a line:
/// `   0: (b7) r1 = 0`; the second slot of `ld_imm64` has no line of its own.
pub struct Listing<'a> {
    pub prog: &'a [Insn],
    pub names: &'a dyn Names,
}

impl<'a> Listing<'a> {
    /// A listing with [`LinuxNames`].
    pub fn new(prog: &'a [Insn]) -> Listing<'a> {
        Listing { prog, names: &LinuxNames }
    }
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pc = 0;
        while pc < self.prog.len() {
            let insn = &self.prog[pc];
            let next = self.prog.get(pc + 1);
            writeln!(f, "{pc:4}: ({:02x}) {}", insn.code, insn.display(next, self.names))?;
            pc += if insn.is_ld_imm64() { 2 } else { 1 };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn hex(s: &str) -> [u8; 8] {
        let v: Vec<u8> = s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
        v.try_into().unwrap()
    }

    /// Slots of a clang 14 object (`clang -O2 -target bpf -mcpu=v3 -c`, the `.text` of a
    /// kprobe program with a map lookup, a BPF-to-BPF call and atomics), with
    /// `llvm-objdump -d`'s text in the comment and Linux's in the test.
    const CLANG: &[(&str, &str)] = &[
        ("bf 16 00 00 00 00 00 00", "r6 = r1"),              // r6 = r1
        ("79 61 00 00 00 00 00 00", "r1 = *(u64 *)(r6 +0)"), // r1 = *(u64 *)(r6 + 0)
        ("63 1a fc ff 00 00 00 00", "*(u32 *)(r10 -4) = r1"), // *(u32 *)(r10 - 4) = r1
        ("bf a2 00 00 00 00 00 00", "r2 = r10"),
        ("07 02 00 00 fc ff ff ff", "r2 += -4"),
        ("85 00 00 00 01 00 00 00", "call bpf_map_lookup_elem#1"), // call 1
        ("b4 01 00 00 00 00 00 00", "w1 = 0"),
        ("15 00 30 00 00 00 00 00", "if r0 == 0x0 goto pc+48"), // if r0 == 0 goto +48
        ("a5 01 04 00 06 00 00 00", "if r1 < 0x6 goto pc+4"),
        ("61 01 00 00 00 00 00 00", "r1 = *(u32 *)(r0 +0)"),
        ("85 10 00 00 ff ff ff ff", "call pc-1"), // call -1 (BPF-to-BPF, relocated)
        ("bc 01 00 00 00 00 00 00", "w1 = w0"),
        ("05 00 2a 00 00 00 00 00", "goto pc+42"),
        ("69 64 20 00 00 00 00 00", "r4 = *(u16 *)(r6 +32)"),
        ("c3 07 00 00 00 00 00 00", "lock *(u32 *)(r7 +0) += r0"),
        ("67 02 00 00 38 00 00 00", "r2 <<= 56"),
        ("c7 02 00 00 38 00 00 00", "r2 s>>= 56"),
        ("0f 42 00 00 00 00 00 00", "r2 += r4"),
        ("3f 54 00 00 00 00 00 00", "r4 /= r5"),
        ("2f 14 00 00 00 00 00 00", "r4 *= r1"),
        ("1f 45 00 00 00 00 00 00", "r5 -= r4"),
        ("57 01 00 00 3f 00 00 00", "r1 &= 63"),
        ("cf 13 00 00 00 00 00 00", "r3 s>>= r1"),
        ("dc 03 00 00 20 00 00 00", "r3 = be32 r3"),
        ("dc 01 00 00 40 00 00 00", "r1 = be64 r1"),
        ("dc 02 00 00 10 00 00 00", "r2 = be16 r2"),
        ("b7 02 00 00 05 00 00 00", "r2 = 5"),
        // r2 = atomic_fetch_add((u64 *)(r6 + 56), r2)
        ("db 26 38 00 01 00 00 00", "r2 = atomic64_fetch_add((u64 *)(r6 +56), r2)"),
        // r0 = cmpxchg_64(r6 + 64, r0, r1)
        ("db 16 40 00 f1 00 00 00", "r0 = atomic64_cmpxchg((u64 *)(r6 +64), r0, r1)"),
        // <unknown> (llvm-objdump 14 does not know 32-bit xchg and fetch_or)
        ("c3 36 48 00 e1 00 00 00", "r3 = atomic_xchg((u32 *)(r6 +72), r3)"),
        ("c3 36 50 00 40 00 00 00", "lock *(u32 *)(r6 +80) |= r3"),
        ("0c 21 00 00 00 00 00 00", "w1 += w2"),
        ("64 00 00 00 01 00 00 00", "w0 <<= 1"),
        ("04 00 00 00 03 00 00 00", "w0 += 3"),
        ("95 00 00 00 00 00 00 00", "exit"),
    ];

    #[test]
    fn clang_encodings_decode_print_and_round_trip() {
        for (bytes, text) in CLANG {
            let b = hex(bytes);
            let insn = Insn::from_bytes(b);
            assert_eq!(insn.to_bytes(), b, "{bytes}");
            assert_eq!(insn.to_string(), *text, "{bytes}");
        }
    }

    #[test]
    fn fields_are_decoded_little_endian_with_dst_in_the_low_nibble() {
        let i = Insn::from_bytes(hex("63 1a fc ff 00 00 00 00"));
        assert_eq!(i, Insn::stx_mem(Size::W, 10, 1, -4));
        assert_eq!((i.code, i.dst, i.src, i.off, i.imm), (0x63, 10, 1, -4, 0));
        let i = Insn::from_bytes(hex("07 02 00 00 fc ff ff ff"));
        assert_eq!(i, Insn::alu64_imm(BPF_ADD, 2, -4));
        assert_eq!(Insn::from_bytes(hex("85 10 00 00 ff ff ff ff")), Insn::call_rel(-1));
        assert_eq!(
            Insn::from_bytes(hex("db 16 40 00 f1 00 00 00")),
            Insn::atomic_op(Size::DW, BPF_CMPXCHG, 6, 1, 64)
        );
    }

    #[test]
    fn decode_and_encode_programs() {
        let bytes = hex("18 01 00 00 78 56 34 12")
            .into_iter()
            .chain(hex("00 00 00 00 ef cd ab 90"))
            .chain(hex("95 00 00 00 00 00 00 00"))
            .collect::<Vec<u8>>();
        let prog = decode(&bytes).unwrap();
        assert_eq!(prog.len(), 3);
        assert_eq!(prog[0].imm64(&prog[1]), 0x90ab_cdef_1234_5678);
        assert_eq!(&prog[..2], &Insn::ld_imm64(1, 0x90ab_cdef_1234_5678));
        assert_eq!(encode(&prog), bytes);
        assert_eq!(decode(&bytes[..7]), Err(LengthError { len: 7 }));
        assert_eq!(
            LengthError { len: 7 }.to_string(),
            "7 bytes are not a multiple of the 8-byte instruction"
        );
    }

    #[test]
    fn opcode_values_are_linux_s() {
        // A few whole opcodes against their numbers in Linux's instruction-set document.
        assert_eq!(BPF_ALU64 | BPF_MOV | BPF_K, 0xb7);
        assert_eq!(BPF_ALU | BPF_END | BPF_TO_BE, 0xdc);
        assert_eq!(BPF_ALU64 | BPF_END | BPF_TO_LE, 0xd7);
        assert_eq!(BPF_LD | BPF_IMM | BPF_DW, 0x18);
        assert_eq!(BPF_LDX | BPF_MEMSX | BPF_B, 0x91);
        assert_eq!(BPF_STX | BPF_ATOMIC | BPF_DW, 0xdb);
        assert_eq!(BPF_JMP32 | BPF_JA, 0x06);
        assert_eq!(BPF_JMP | BPF_CALL, 0x85);
        assert_eq!(BPF_JMP | BPF_EXIT, 0x95);
        assert_eq!(BPF_JMP | BPF_JSLE | BPF_X, 0xdd);
        assert_eq!((BPF_XCHG, BPF_CMPXCHG), (0xe1, 0xf1));
    }

    #[test]
    fn display_of_every_kind() {
        let cases: &[(Insn, &str)] = &[
            (Insn::alu32_imm(BPF_MOV, 1, -1), "w1 = -1"),
            (Insn::alu64_reg(BPF_ARSH, 1, 2), "r1 s>>= r2"),
            (Insn::alu64_imm(BPF_XOR, 3, 0x10), "r3 ^= 16"),
            (Insn::alu32_reg(BPF_MOD, 3, 4), "w3 %= w4"),
            (Insn::signed(BPF_ALU64, BPF_DIV, BPF_X, 1, 2, 0), "r1 s/= r2"),
            (Insn::signed(BPF_ALU, BPF_MOD, BPF_K, 1, 0, -3), "w1 s%= -3"),
            (Insn::movsx64_reg(1, 2, 8), "r1 = (s8)r2"),
            (Insn::movsx64_reg(1, 2, 32), "r1 = (s32)r2"),
            (Insn::movsx32_reg(1, 2, 16), "w1 = (s16)w2"),
            (Insn::neg64(4), "r4 = -r4"),
            (Insn::neg32(4), "w4 = -w4"),
            (Insn::endian(BPF_TO_LE, 5, 16), "r5 = le16 r5"),
            (Insn::bswap(5, 64), "r5 = bswap64 r5"),
            (Insn::ldx_memsx(Size::H, 1, 10, -8), "r1 = *(s16 *)(r10 -8)"),
            (Insn::st_mem(Size::DW, 10, -16, -7), "*(u64 *)(r10 -16) = -7"),
            (Insn::stx_mem(Size::B, 1, 2, 3), "*(u8 *)(r1 +3) = r2"),
            (Insn::atomic_op(Size::W, BPF_AND as i32, 1, 2, 0), "lock *(u32 *)(r1 +0) &= r2"),
            (
                Insn::atomic_op(Size::DW, BPF_XOR as i32 | BPF_FETCH, 1, 2, -8),
                "r2 = atomic64_fetch_xor((u64 *)(r1 -8), r2)",
            ),
            (
                Insn::atomic_op(Size::DW, BPF_XCHG, 1, 2, 0),
                "r2 = atomic64_xchg((u64 *)(r1 +0), r2)",
            ),
            (
                Insn::atomic_op(Size::W, BPF_CMPXCHG, 1, 2, 4),
                "r0 = atomic_cmpxchg((u32 *)(r1 +4), r0, r2)",
            ),
            (Insn::atomic_op(Size::B, BPF_LOAD_ACQ, 3, 1, 0), "r3 = load_acquire((u8 *)(r1 +0))"),
            (
                Insn::atomic_op(Size::DW, BPF_STORE_REL, 1, 3, 8),
                "store_release((u64 *)(r1 +8), r3)",
            ),
            (Insn::jmp_imm(BPF_JGT, 1, 5, 3), "if r1 > 0x5 goto pc+3"),
            (Insn::jmp_imm(BPF_JSLT, 1, -1, -2), "if r1 s< 0xffffffff goto pc-2"),
            (Insn::jmp32_reg(BPF_JSET, 1, 2, 0), "if w1 & w2 goto pc+0"),
            (Insn::jmp_reg(BPF_JNE, 1, 2, 1), "if r1 != r2 goto pc+1"),
            (Insn::ja(-1), "goto pc-1"),
            (Insn::gotol(70000), "gotol pc+70000"),
            (Insn::call_helper(6), "call bpf_trace_printk#6"),
            (Insn::call_helper(9999), "call unknown#9999"),
            (Insn::call_rel(5), "call pc+5"),
            (
                Insn::new(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 77),
                "call kernel-function#77",
            ),
            (Insn::exit(), "exit"),
            (Insn::new(0xff, 0, 0, 0, 0), "invalid: unknown opcode ff"),
            (Insn::new(0x07, 1, 2, 0, 0), "invalid: BPF_ALU64 uses reserved fields"),
            (Insn::new(0x07, 11, 0, 0, 0), "invalid: R11 is invalid"),
        ];
        for (insn, text) in cases {
            assert_eq!(insn.to_string(), *text, "{insn:?}");
        }
    }

    #[test]
    fn ld_imm64_text_needs_the_next_slot() {
        let [a, b] = Insn::ld_imm64(1, 0x1_0000_0002);
        assert_eq!(a.display(Some(&b), &LinuxNames).to_string(), "r1 = 0x100000002");
        assert_eq!(a.to_string(), "r1 = 0x2");
        let [a, b] = Insn::ld_map_fd(1, 3);
        assert_eq!(a.display(Some(&b), &LinuxNames).to_string(), "r1 = map[id:3]");
        let [a, b] = Insn::ld_map_value(2, 4, 16);
        assert_eq!(a.display(Some(&b), &LinuxNames).to_string(), "r2 = map[id:4][0]+16");
    }

    #[test]
    fn listing_is_bpftool_s() {
        // The example of docs/bpf.md.
        let mut prog = vec![
            Insn::mov64_imm(1, 0),
            Insn::stx_mem(Size::W, 10, 1, -4),
            Insn::mov64_reg(2, 10),
            Insn::alu64_imm(BPF_ADD, 2, -4),
        ];
        prog.extend(Insn::ld_map_fd(1, 2));
        prog.extend([
            Insn::call_helper(1),
            Insn::jmp_imm(BPF_JEQ, 0, 0, 1),
            Insn::ldx_mem(Size::W, 0, 0, 0),
            Insn::exit(),
        ]);
        let text = Listing::new(&prog).to_string();
        let want = "   0: (b7) r1 = 0
   1: (63) *(u32 *)(r10 -4) = r1
   2: (bf) r2 = r10
   3: (07) r2 += -4
   4: (18) r1 = map[id:2]
   6: (85) call bpf_map_lookup_elem#1
   7: (15) if r0 == 0x0 goto pc+1
   8: (61) r0 = *(u32 *)(r0 +0)
   9: (95) exit
";
        assert_eq!(text, want);
    }

    #[test]
    fn custom_names() {
        struct Mine;
        impl Names for Mine {
            fn helper(&self, id: u32) -> &str {
                if id == 1000 { "my_helper" } else { helper_name(id).unwrap_or("unknown") }
            }
            fn imm64(&self, f: &mut fmt::Formatter<'_>, _: u8, lo: u32, _: u32) -> fmt::Result {
                write!(f, "map[name:m{lo}]")
            }
        }
        let [a, b] = Insn::ld_map_fd(1, 7);
        assert_eq!(a.display(Some(&b), &Mine).to_string(), "r1 = map[name:m7]");
        assert_eq!(Insn::call_helper(1000).display(None, &Mine).to_string(), "call my_helper#1000");
    }

    #[test]
    fn helper_table_matches_linux_numbers() {
        let known = [
            ("map_lookup_elem", 1),
            ("map_update_elem", 2),
            ("map_delete_elem", 3),
            ("ktime_get_ns", 5),
            ("trace_printk", 6),
            ("get_smp_processor_id", 8),
            ("tail_call", 12),
            ("get_current_pid_tgid", 14),
            ("probe_read_kernel", 113),
            ("ringbuf_output", 130),
            ("ringbuf_reserve", 131),
            ("ringbuf_submit", 132),
            ("ringbuf_discard", 133),
            ("get_func_ip", 173),
            ("loop", 181),
            ("get_func_arg", 183),
            ("get_func_ret", 184),
            ("get_func_arg_cnt", 185),
            ("user_ringbuf_drain", 209),
            ("cgrp_storage_delete", 211),
        ];
        for (name, id) in known {
            assert_eq!(helper_id(name), Some(id), "{name}");
            assert_eq!(helper_name(id).unwrap(), alloc::format!("bpf_{name}"));
        }
        assert_eq!(helper_id("bpf_map_lookup_elem"), Some(1));
        assert_eq!(helper_name(212), None);
    }

    #[test]
    fn typed_view_and_reserved_fields() {
        use Op::*;
        assert_eq!(
            Insn::signed(BPF_ALU64, BPF_MOD, BPF_K, 1, 0, 7).op(),
            Ok(Alu { w64: true, op: AluOp::Smod, dst: 1, src: Operand::Imm(7) })
        );
        assert_eq!(Insn::gotol(-3).op(), Ok(Ja { delta: -3, long: true }));
        assert_eq!(Insn::ja(4).op(), Ok(Ja { delta: 4, long: false }));
        assert_eq!(Insn::bswap(1, 32).op(), Ok(End { kind: Endian::Swap, bits: 32, dst: 1 }));
        assert_eq!(
            Insn::ldx_memsx(Size::W, 1, 2, 0).op(),
            Ok(Load { size: Size::W, signed: true, dst: 1, src: 2, off: 0 })
        );
        let reserved = |i: Insn| assert!(matches!(i.op(), Err(InsnError::Reserved(_))), "{i:?}");
        reserved(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 1, 0)); // sdiv variant of add
        reserved(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 8, 0)); // movsx of an immediate
        reserved(Insn::movsx32_reg(1, 2, 32)); // 32-bit movsx has no 32
        reserved(Insn::endian(BPF_TO_BE, 1, 8));
        reserved(Insn::new(BPF_ALU64 | BPF_END | BPF_TO_BE, 1, 0, 0, 16));
        reserved(Insn::new(BPF_LDX | BPF_MEM | BPF_W, 1, 2, 0, 1));
        reserved(Insn::new(BPF_ST | BPF_MEM | BPF_W, 1, 2, 0, 1));
        reserved(Insn::atomic_op(Size::H, BPF_ADD as i32, 1, 2, 0));
        reserved(Insn::atomic_op(Size::W, 0xe0, 1, 2, 0)); // xchg without fetch
        reserved(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 1));
        reserved(Insn::new(BPF_JMP | BPF_JA, 0, 0, 1, 1));
        reserved(Insn::new(BPF_JMP32 | BPF_CALL, 0, 0, 0, 1));
        reserved(Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 1, 2, 0, 0));
        assert_eq!(
            Insn::new(BPF_LDX | BPF_MEMSX | BPF_DW, 1, 2, 0, 0).op(),
            Err(InsnError::UnknownOpcode(0x99))
        );
        assert_eq!(Insn::new(0xe7, 1, 0, 0, 0).op(), Err(InsnError::UnknownOpcode(0xe7)));
        assert!(matches!(Insn::new(0x20, 0, 0, 0, 0).op(), Err(InsnError::Unsupported(_))));
        assert_eq!(Insn::check_ld_imm64_tail(None), Err(InsnError::BadLdImm64));
        assert_eq!(Insn::check_ld_imm64_tail(Some(&Insn::exit())), Err(InsnError::BadLdImm64));
        assert_eq!(Insn::check_ld_imm64_tail(Some(&Insn::new(0, 0, 0, 0, -1))), Ok(()));
    }
}

/// A program's tag, as Linux computes it (`bpf_prog_calc_tag`): the first 8 bytes of the SHA-1 of
/// its instructions, with the immediates of `ld_imm64` of a map (`BPF_PSEUDO_MAP_FD`,
/// `BPF_PSEUDO_MAP_VALUE`) zeroed, since they differ from load to load. It names the JITed
/// program (`bpf_prog_<tag>_<name>`) and is what `bpftool prog show` prints as `tag`.
pub fn tag(prog: &[Insn]) -> [u8; 8] {
    let mut h = sha1_smol::Sha1::new();
    let mut i = 0;
    while i < prog.len() {
        let mut x = prog[i];
        if x.is_ld_imm64() && matches!(x.src, BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE) && i + 1 < prog.len() {
            let mut next = prog[i + 1];
            x.imm = 0;
            next.imm = 0;
            h.update(&x.to_bytes());
            h.update(&next.to_bytes());
            i += 2;
            continue;
        }
        h.update(&x.to_bytes());
        i += 1;
    }
    let d = h.digest().bytes();
    let mut t = [0u8; 8];
    t.copy_from_slice(&d[..8]);
    t
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tags_are_linux_s() {
        // sha1 of `b7 00 00 00 00 00 00 00 95 00 00 00 00 00 00 00` (r0 = 0; exit), whose first
        // eight bytes (a04f5eef06a7f555) are the tag `bpftool prog show` prints for that program on
        // Linux.
        let p = [Insn::mov64_imm(0, 0), Insn::exit()];
        assert_eq!(tag(&p), [0xa0, 0x4f, 0x5e, 0xef, 0x06, 0xa7, 0xf5, 0x55]);
        // A map's immediates do not count.
        let a = [Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, 3), Insn::new(0, 0, 0, 0, 0), Insn::exit()];
        let b = [Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, 9), Insn::new(0, 0, 0, 0, 5), Insn::exit()];
        assert_eq!(tag(&a), tag(&b));
        let c = [Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, 0, 0, 3), Insn::new(0, 0, 0, 0, 0), Insn::exit()];
        assert_ne!(tag(&a), tag(&c));
    }
}
