//! The verifier's abstract machine state: what each register and each byte of the stack may
//! hold at one instruction, on one path (Linux's `bpf_reg_state` and `bpf_func_state`, in our own
//! terms), how two states meet, and when an explored state covers a new one (state pruning).

use crate::scalar::Scalar;
use alloc::vec::Vec;

/// Bytes of stack each frame has (Linux's `MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;
/// Registers r0-r10.
pub const REGS: usize = 11;

/// What a pointer points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    /// The program's context (its size depends on the attach type).
    Ctx,
    /// The current frame's stack (`r10` points at its end).
    Stack,
    /// A value of map `map` (index in the program's map table).
    MapValue { map: u32 },
    /// A key of map `map` (what a helper receives; programs never hold one).
    MapKey { map: u32 },
    /// A reserved ring-buffer record of `size` bytes, tracked by `ref_id` until submitted or
    /// discarded.
    RingbufRecord { size: u32, ref_id: u32 },
}

/// What a register holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reg {
    /// Never written on this path: reading it is an error.
    Uninit,
    /// A number.
    Scalar(Scalar),
    /// A pointer into `region` at a known or bounded offset from its start (`off`: a scalar, so
    /// that an index checked against bounds keeps its bounds).
    Ptr { region: Region, off: Scalar },
    /// A pointer that may be null (a map lookup's or a ring-buffer reservation's result) until a
    /// null check on `id` turns it into `Ptr` (or the scalar 0) on each way.
    PtrOrNull { region: Region, id: u32 },
    /// A map itself (what `ld_imm64` with a map relocation loads), as a helper argument.
    Map { map: u32 },
}

impl Reg {
    /// Whether every value `other` may hold, `self` may hold too (for pruning).
    pub fn includes(&self, other: &Reg) -> bool {
        match (self, other) {
            // A register no later instruction may read (it is uninitialised in the old state,
            // which was explored completely) accepts anything.
            (Reg::Uninit, _) => true,
            (Reg::Scalar(a), Reg::Scalar(b)) => a.includes(b),
            (Reg::Ptr { region: ra, off: a }, Reg::Ptr { region: rb, off: b }) => ra == rb && a.includes(b),
            (a, b) => a == b,
        }
    }

    /// The state where two paths meet: what either may hold.
    pub fn union(&self, other: &Reg) -> Reg {
        match (self, other) {
            (Reg::Scalar(a), Reg::Scalar(b)) => Reg::Scalar(a.union(*b)),
            (Reg::Ptr { region: ra, off: a }, Reg::Ptr { region: rb, off: b }) if ra == rb => Reg::Ptr { region: *ra, off: a.union(*b) },
            (a, b) if a == b => *a,
            // Different kinds: unusable after the join.
            _ => Reg::Uninit,
        }
    }

    /// Whether it is a pointer of any kind (storing one into a map would leak an address).
    pub fn is_pointer(&self) -> bool {
        matches!(self, Reg::Ptr { .. } | Reg::PtrOrNull { .. } | Reg::Map { .. })
    }
}

/// What one byte of stack holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Never written: reading it is an error.
    Invalid,
    /// Some data (a scalar written in pieces).
    Misc,
    /// Known zero.
    Zero,
    /// Part of an 8-byte spill of a register (the register is kept at the first byte of the
    /// aligned 8-byte slot, in [`Frame::spills`]).
    Spill,
}

/// One call frame: registers, stack bytes and the registers spilled to the stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub regs: [Reg; REGS],
    pub stack: [Slot; STACK_SIZE],
    /// The register spilled in each aligned 8-byte slot (index = slot number from the top of
    /// the stack: byte offset `-8 * (i + 1)` from r10), when its bytes are [`Slot::Spill`].
    pub spills: [Option<Reg>; STACK_SIZE / 8],
    /// Where the caller resumes (instruction index), 0 for the main program.
    pub return_to: usize,
}

impl Frame {
    /// The frame a program (or a BPF-to-BPF callee) starts with: r1-r5 given by the caller, r10
    /// the frame pointer, everything else uninitialised.
    pub fn new(args: [Reg; 5], return_to: usize) -> Frame {
        let mut regs = [Reg::Uninit; REGS];
        regs[1..6].copy_from_slice(&args);
        regs[10] = Reg::Ptr { region: Region::Stack, off: Scalar::constant(STACK_SIZE as u64) };
        Frame { regs, stack: [Slot::Invalid; STACK_SIZE], spills: [None; STACK_SIZE / 8], return_to }
    }

    /// Whether every state this frame may be in, `self` may be in too.
    pub fn includes(&self, other: &Frame) -> bool {
        self.return_to == other.return_to
            && self.regs.iter().zip(other.regs.iter()).all(|(a, b)| a.includes(b))
            && self.stack.iter().zip(other.stack.iter()).all(|(a, b)| match (a, b) {
                (Slot::Invalid, _) => true,
                (Slot::Misc, Slot::Misc | Slot::Zero) => true,
                (a, b) => a == b,
            })
            && self.spills.iter().zip(other.spills.iter()).all(|(a, b)| match (a, b) {
                (None, _) => true,
                (Some(a), Some(b)) => a.includes(b),
                (Some(_), None) => false,
            })
    }
}

/// The whole state at one instruction: the call frames (innermost last) and the ring-buffer
/// records reserved and not yet submitted or discarded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub frames: Vec<Frame>,
    pub open_records: Vec<u32>,
}

impl State {
    pub fn new(args: [Reg; 5]) -> State {
        State { frames: alloc::vec![Frame::new(args, 0)], open_records: Vec::new() }
    }

    pub fn frame(&self) -> &Frame {
        self.frames.last().expect("a state always has a frame")
    }

    pub fn frame_mut(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a state always has a frame")
    }

    /// Whether `self` (explored to the end without error) covers `other`: then `other` is safe
    /// too and need not be explored again.
    pub fn includes(&self, other: &State) -> bool {
        self.frames.len() == other.frames.len()
            && self.open_records == other.open_records
            && self.frames.iter().zip(other.frames.iter()).all(|(a, b)| a.includes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_needs_inclusion() {
        let wide = State::new([Reg::Scalar(Scalar::urange(0, 100)), Reg::Uninit, Reg::Uninit, Reg::Uninit, Reg::Uninit]);
        let narrow = State::new([Reg::Scalar(Scalar::urange(10, 20)), Reg::Uninit, Reg::Uninit, Reg::Uninit, Reg::Uninit]);
        assert!(wide.includes(&narrow) && !narrow.includes(&wide));
        let mut other = narrow.clone();
        other.frame_mut().regs[1] = Reg::Ptr { region: Region::Ctx, off: Scalar::constant(0) };
        assert!(!wide.includes(&other), "a pointer is not a scalar");
        let mut written = narrow.clone();
        written.frame_mut().stack[500] = Slot::Misc;
        assert!(narrow.includes(&narrow) && wide.includes(&written), "an unread old slot covers a written one");
        assert!(!written.includes(&narrow), "a written slot does not cover an invalid one");
    }

    #[test]
    fn joins() {
        let a = Reg::Scalar(Scalar::constant(1));
        let b = Reg::Scalar(Scalar::constant(9));
        match a.union(&b) {
            Reg::Scalar(s) => assert!(s.contains(1) && s.contains(9)),
            r => panic!("{r:?}"),
        }
        let p = Reg::Ptr { region: Region::Stack, off: Scalar::constant(8) };
        assert_eq!(p.union(&a), Reg::Uninit);
        assert!(p.is_pointer() && !a.is_pointer());
        let f = Frame::new([Reg::Uninit; 5], 0);
        assert_eq!(f.regs[10], Reg::Ptr { region: Region::Stack, off: Scalar::constant(512) });
    }
}
