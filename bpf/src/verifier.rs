//! The verifier: a program is accepted only if every path through it is proven safe, by
//! abstract interpretation over the states of [`crate::state`] (Linux's `do_check`, in our own
//! terms).
//!
//! First the whole program is checked as text ([`check_cfg`]): every instruction decodes, jumps
//! and calls land on instructions (never on the second slot of `ld_imm64`), the last instruction
//! cannot fall off the end, and every instruction is reachable. Then every path is walked from
//! the first instruction with an abstract state; at a conditional jump both ways are walked with
//! what each teaches. A path ends at `exit` (r0 set, no ring-buffer record left open) or when an
//! explored state at the same instruction covers it (pruning: only states whose every path was
//! walked to the end count). Loops are walked iteration by iteration, so a loop passes only if it
//! is bounded, within [`INSN_LIMIT`] instructions processed in all.
//!
//! Memory accesses are checked against what the pointer points into: the stack (512 bytes per
//! frame; reads only of bytes written before), the context (its size depends on the attach
//! type; read-only), a map value (`value_size`), a ring-buffer record (its reserved size). A map
//! lookup's result must be null-checked before use, pointers may not be stored into maps or
//! records (an address leak), helper arguments must have the types the helper takes.
//!
//! A refusal names the instruction and the reason in Linux's words, with a log of the path that
//! led there (instructions and register states), as Linux's verifier log does.

use crate::insn::{self, AluOp, Cond, Insn, Op, Operand, Size};
use crate::scalar::{Cmp, Scalar};
use crate::state::{Frame, Reg, Region, STACK_SIZE, Slot, State};
use crate::tnum::Tnum;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Instructions the verifier may process over all paths (Linux's `BPF_COMPLEXITY_LIMIT_INSNS`).
pub const INSN_LIMIT: usize = 1_000_000;
/// Most call frames (Linux's `MAX_CALL_FRAMES`).
pub const MAX_FRAMES: usize = 8;
/// Explored states kept per instruction.
const STATES_PER_INSN: usize = 64;
/// Instructions of the failing path the log shows (at most twice this many are kept).
const TRAIL: usize = 48;

/// The kinds of map the verifier tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Hash,
    Array,
    PercpuArray,
    Ringbuf,
    Other(u32),
}

/// A map as the verifier needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// What the program is verified for.
#[derive(Clone, Debug)]
pub struct ProgInfo {
    /// Bytes of context the program may read (e.g. 8 × (arguments + 1) for fexit, the register
    /// frame for a kprobe).
    pub ctx_size: u32,
    /// The program's maps, by the index `ld_imm64` relocations carry.
    pub maps: Vec<MapInfo>,
    /// Whether the `get_func_*` helpers may be called (fentry/fexit/fmod_ret programs).
    pub func_helpers: bool,
}

/// A refusal: the instruction, the reason, and the log of the path that led there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub insn: usize,
    pub reason: String,
    pub log: String,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "insn {}: {}", self.insn, self.reason)
    }
}

/// What verifying a program found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Instructions processed over all paths (Linux prints "processed N insns").
    pub processed: usize,
    /// States kept for pruning.
    pub states: usize,
    /// Paths cut by pruning.
    pub pruned: usize,
}

/// Checks the program as text: decodable instructions, jumps and calls that land on
/// instructions, no fall-through past the end, every instruction reachable. Returns the decoded
/// instructions (`None` for the second slot of `ld_imm64`).
pub fn check_cfg(prog: &[Insn]) -> Result<Vec<Option<Op>>, VerifyError> {
    let err = |insn: usize, reason: String| VerifyError { insn, reason: reason.clone(), log: format!("{reason}\n") };
    if prog.is_empty() {
        return Err(err(0, "empty program".into()));
    }
    let n = prog.len();
    let mut ops: Vec<Option<Op>> = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let op = prog[i].op().map_err(|e| err(i, format!("{e}")))?;
        ops.push(Some(op));
        if let Op::LdImm64 { .. } = op {
            if i + 1 >= n || prog[i + 1].code != 0 || prog[i + 1].dst != 0 || prog[i + 1].src != 0 || prog[i + 1].off != 0 {
                return Err(err(i, "invalid bpf_ld_imm64 insn".into()));
            }
            ops.push(None);
            i += 1;
        }
        i += 1;
    }
    let target = |from: usize, delta: i64| -> Result<usize, VerifyError> {
        let t = from as i64 + 1 + delta;
        if t < 0 || t >= n as i64 || ops[t as usize].is_none() {
            return Err(err(from, format!("jump out of range from insn {from} to {t}")));
        }
        Ok(t as usize)
    };
    // Successors, and reachability from the first instruction (calls reach their callee).
    let mut reached = alloc::vec![false; n];
    let mut todo = alloc::vec![0usize];
    while let Some(pc) = todo.pop() {
        if reached[pc] {
            continue;
        }
        reached[pc] = true;
        let op = ops[pc].expect("successors are instructions");
        let next = match op {
            Op::LdImm64 { .. } => pc + 2,
            _ => pc + 1,
        };
        let falls = match op {
            Op::Exit => false,
            Op::Ja { delta, .. } => {
                todo.push(target(pc, delta as i64)?);
                false
            }
            Op::Jump { off, .. } => {
                todo.push(target(pc, off as i64)?);
                true
            }
            Op::CallLocal { delta } => {
                todo.push(target(pc, delta as i64)?);
                true
            }
            _ => true,
        };
        if falls {
            if next >= n {
                return Err(err(pc, "last insn is not an exit or jmp".into()));
            }
            todo.push(next);
        }
    }
    if let Some(u) = (0..n).find(|&i| ops[i].is_some() && !reached[i]) {
        return Err(err(u, format!("unreachable insn {u}")));
    }
    Ok(ops)
}

/// One explored state kept for pruning, with the number of paths from it still being walked.
struct Explored {
    state: State,
    branches: usize,
}

/// A path to walk: where, in what state, the explored states it descends from, and the
/// instructions it went through (for the log).
struct Path {
    pc: usize,
    state: State,
    parents: Vec<usize>,
    trail: Vec<u32>,
}

struct Verifier<'a> {
    prog: &'a [Insn],
    ops: Vec<Option<Op>>,
    info: &'a ProgInfo,
    /// Where pruning is tried: jump targets and the instructions after jumps.
    prune_point: Vec<bool>,
    explored: Vec<Vec<usize>>,
    arena: Vec<Explored>,
    stats: Verified,
    next_id: u32,
}

type Step = Result<(), String>;

/// Verifies `prog` for `info`.
pub fn verify(prog: &[Insn], info: &ProgInfo) -> Result<Verified, VerifyError> {
    let ops = check_cfg(prog)?;
    let n = prog.len();
    let mut prune_point = alloc::vec![false; n];
    for (pc, op) in ops.iter().enumerate() {
        match op {
            Some(Op::Jump { off, .. }) => {
                prune_point[(pc as i64 + 1 + *off as i64) as usize] = true;
                prune_point[pc + 1] = true;
            }
            Some(Op::Ja { delta, .. }) => prune_point[(pc as i64 + 1 + *delta as i64) as usize] = true,
            Some(Op::CallLocal { .. }) => prune_point[pc + 1] = true,
            _ => {}
        }
    }
    let mut v = Verifier { prog, ops, info, prune_point, explored: (0..n).map(|_| Vec::new()).collect(), arena: Vec::new(), stats: Verified::default(), next_id: 1 };
    let ctx = Reg::Ptr { region: Region::Ctx, off: Scalar::constant(0) };
    let start = Path { pc: 0, state: State::new([ctx, Reg::Uninit, Reg::Uninit, Reg::Uninit, Reg::Uninit]), parents: Vec::new(), trail: Vec::new() };
    let mut stack = alloc::vec![start];
    while let Some(path) = stack.pop() {
        v.walk(path, &mut stack)?;
    }
    v.stats.states = v.arena.len();
    Ok(v.stats)
}

impl Verifier<'_> {
    /// Walks one path until it ends; the other way of every conditional jump goes on `stack`.
    fn walk(&mut self, mut p: Path, stack: &mut Vec<Path>) -> Result<(), VerifyError> {
        loop {
            self.stats.processed += 1;
            if self.stats.processed > INSN_LIMIT {
                return Err(self.fail(&p, format!("BPF program is too large. Processed {} insn", self.stats.processed)));
            }
            if self.prune_point[p.pc] {
                if let Some(why) = self.visit(&mut p) {
                    if why {
                        // Covered by a completed state: this path is safe from here.
                        self.stats.pruned += 1;
                        self.finish(&p.parents);
                        return Ok(());
                    }
                    return Err(self.fail(&p, format!("infinite loop detected at insn {}", p.pc)));
                }
            }
            p.trail.push(p.pc as u32);
            if p.trail.len() > 2 * TRAIL {
                // Only the newest instructions of a path are logged.
                p.trail.drain(..TRAIL);
            }
            let op = self.ops[p.pc].expect("paths only reach instructions");
            match self.step(&mut p, op, stack) {
                Ok(true) => {}
                Ok(false) => {
                    self.finish(&p.parents);
                    return Ok(());
                }
                Err(reason) => return Err(self.fail(&p, reason)),
            }
        }
    }

    /// At a prune point: `Some(true)` if a completed explored state covers this one,
    /// `Some(false)` if an unfinished one (an ancestor on this path, in a loop) equals it, else
    /// records the state and returns `None`.
    fn visit(&mut self, p: &mut Path) -> Option<bool> {
        for &e in &self.explored[p.pc] {
            let ex = &self.arena[e];
            if ex.branches == 0 && ex.state.includes(&p.state) {
                return Some(true);
            }
            if ex.branches > 0 && ex.state == p.state {
                return Some(false);
            }
        }
        if self.explored[p.pc].len() < STATES_PER_INSN {
            let id = self.arena.len();
            self.arena.push(Explored { state: p.state.clone(), branches: 1 });
            self.explored[p.pc].push(id);
            p.parents.push(id);
        }
        None
    }

    /// A path ended: its ancestors have one branch fewer in flight.
    fn finish(&mut self, parents: &[usize]) {
        for &e in parents {
            self.arena[e].branches -= 1;
        }
    }

    /// A path forks: its ancestors have one more branch in flight.
    fn fork(&mut self, p: &Path, pc: usize, state: State) -> Path {
        for &e in &p.parents {
            self.arena[e].branches += 1;
        }
        Path { pc, state, parents: p.parents.clone(), trail: p.trail.clone() }
    }

    fn fail(&self, p: &Path, reason: String) -> VerifyError {
        let mut log = String::new();
        let start = p.trail.len().saturating_sub(TRAIL);
        if start > 0 || p.trail.len() >= 2 * TRAIL {
            let _ = writeln!(log, "... (earlier insns on this path)");
        }
        for &pc in &p.trail[start..] {
            let pc = pc as usize;
            let i = &self.prog[pc];
            let text = i.display(self.prog.get(pc + 1), &insn::LinuxNames);
            let _ = writeln!(log, "{pc}: ({:02x}) {text}", i.code);
        }
        let _ = writeln!(log, "{}", regs_line(p.state.frame()));
        let _ = writeln!(log, "{reason}");
        VerifyError { insn: p.pc, reason, log }
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// One instruction: `Ok(true)` to go on, `Ok(false)` when the path ended.
    fn step(&mut self, p: &mut Path, op: Op, stack: &mut Vec<Path>) -> Result<bool, String> {
        let pc = p.pc;
        let next = pc + 1;
        let written = match op {
            Op::Alu { dst, .. } | Op::Neg { dst, .. } | Op::End { dst, .. } | Op::LdImm64 { dst, .. } => Some(dst),
            Op::Load { dst, .. } | Op::LoadAcquire { dst, .. } => Some(dst),
            Op::Atomic { src, fetch, op, .. } if fetch || op == insn::AtomicOp::Xchg => Some(src),
            _ => None,
        };
        if written == Some(10) {
            return Err("frame pointer is read only".into());
        }
        match op {
            Op::Alu { w64, op, dst, src } => self.alu(&mut p.state, w64, op, dst, src)?,
            Op::Neg { w64, dst } => {
                let v = scalar_of(&p.state, dst, "arithmetic on pointer prohibited")?;
                let r = if w64 { v.neg() } else { v.zext32().neg().zext32() };
                set(&mut p.state, dst, Reg::Scalar(r));
            }
            Op::End { dst, .. } => {
                scalar_of(&p.state, dst, "byte swap on pointer prohibited")?;
                set(&mut p.state, dst, Reg::Scalar(Scalar::UNKNOWN));
            }
            Op::LdImm64 { dst, pseudo } => {
                let value = self.prog[pc].imm64(&self.prog[pc + 1]);
                let reg = match pseudo {
                    0 => Reg::Scalar(Scalar::constant(value)),
                    insn::BPF_PSEUDO_MAP_FD | insn::BPF_PSEUDO_MAP_IDX => Reg::Map { map: self.map(self.prog[pc].imm as u32)? },
                    insn::BPF_PSEUDO_MAP_VALUE | insn::BPF_PSEUDO_MAP_IDX_VALUE => {
                        let map = self.map(self.prog[pc].imm as u32)?;
                        let off = self.prog[pc + 1].imm as u32;
                        if off >= self.info.maps[map as usize].value_size {
                            return Err(format!("invalid access to map value pointer, value_size={} off={off}", self.info.maps[map as usize].value_size));
                        }
                        Reg::Ptr { region: Region::MapValue { map }, off: Scalar::constant(off as u64) }
                    }
                    _ => return Err(format!("unsupported ld_imm64 source {pseudo}")),
                };
                set(&mut p.state, dst, reg);
                p.pc = pc + 2;
                return Ok(true);
            }
            Op::Load { size, signed, dst, src, off } => {
                let v = self.load(&p.state, src, off, size, signed)?;
                set(&mut p.state, dst, v);
            }
            Op::LoadAcquire { size, dst, src, off } => {
                let v = self.load(&p.state, src, off, size, false)?;
                set(&mut p.state, dst, v);
            }
            Op::Store { size, dst, off, src } => {
                let value = match src {
                    Operand::Imm(k) => Reg::Scalar(Scalar::constant(k as i64 as u64)),
                    Operand::Reg(r) => read(&p.state, r)?,
                };
                self.store(&mut p.state, dst, off, size, value)?;
            }
            Op::StoreRelease { size, dst, src, off } => {
                let value = read(&p.state, src)?;
                self.store(&mut p.state, dst, off, size, value)?;
            }
            Op::Atomic { size, op, fetch, dst, src, off } => {
                let v = read(&p.state, src)?;
                if v.is_pointer() {
                    return Err(format!("R{src} leaks addr into mem"));
                }
                // The location must be readable (initialised) and becomes some data.
                self.load(&p.state, dst, off, size, false)?;
                self.store(&mut p.state, dst, off, size, Reg::Scalar(Scalar::UNKNOWN))?;
                let old = Reg::Scalar(Scalar::UNKNOWN.zext_bytes(size));
                if op == insn::AtomicOp::Cmpxchg {
                    read(&p.state, 0)?;
                    set(&mut p.state, 0, old);
                } else if fetch || op == insn::AtomicOp::Xchg {
                    set(&mut p.state, src, old);
                }
            }
            Op::Ja { delta, .. } => {
                p.pc = (pc as i64 + 1 + delta as i64) as usize;
                return Ok(true);
            }
            Op::Jump { w64, cond, dst, src, off } => {
                let taken_pc = (pc as i64 + 1 + off as i64) as usize;
                let (taken, not_taken) = self.branch(&p.state, w64, cond, dst, src)?;
                match (taken, not_taken) {
                    (Some(t), Some(n)) => {
                        stack.push(self.fork(p, taken_pc, t));
                        p.state = n;
                        p.pc = next;
                    }
                    (Some(t), None) => {
                        p.state = t;
                        p.pc = taken_pc;
                    }
                    (None, Some(n)) => {
                        p.state = n;
                        p.pc = next;
                    }
                    (None, None) => return Ok(false),
                }
                return Ok(true);
            }
            Op::Call { helper } => self.call_helper(&mut p.state, pc, helper)?,
            Op::CallLocal { delta } => {
                if p.state.frames.len() >= MAX_FRAMES {
                    return Err(format!("the call stack of {} frames is too deep", p.state.frames.len() + 1));
                }
                let f = p.state.frame();
                let args = [f.regs[1], f.regs[2], f.regs[3], f.regs[4], f.regs[5]];
                p.state.frames.push(Frame::new(args, next));
                p.pc = (pc as i64 + 1 + delta as i64) as usize;
                return Ok(true);
            }
            Op::CallKfunc { .. } => return Err("calling kernel functions (kfuncs) is not supported".into()),
            Op::Exit => {
                let r0 = read(&p.state, 0).map_err(|_| String::from("R0 !read_ok"))?;
                if p.state.frames.len() > 1 {
                    if matches!(r0, Reg::Ptr { region: Region::Stack, .. }) {
                        return Err("cannot return stack pointer to the caller".into());
                    }
                    let callee = p.state.frames.pop().expect("more than one frame");
                    let caller = p.state.frame_mut();
                    caller.regs[0] = r0;
                    for r in 1..=5 {
                        caller.regs[r] = Reg::Uninit;
                    }
                    p.pc = callee.return_to;
                    return Ok(true);
                }
                if r0.is_pointer() {
                    return Err("R0 leaks addr as return value".into());
                }
                if let Some(id) = p.state.open_records.first() {
                    return Err(format!("Unreleased reference id={id}"));
                }
                return Ok(false);
            }
        }
        p.pc = next;
        Ok(true)
    }

    fn map(&self, index: u32) -> Result<u32, String> {
        if (index as usize) < self.info.maps.len() { Ok(index) } else { Err(format!("fd {index} is not pointing to valid bpf_map")) }
    }

    fn alu(&mut self, s: &mut State, w64: bool, op: AluOp, dst: u8, src: Operand) -> Step {
        let srcv = match src {
            Operand::Imm(k) => Reg::Scalar(if w64 { Scalar::constant(k as i64 as u64) } else { Scalar::constant(k as u32 as u64) }),
            Operand::Reg(r) => read(s, r)?,
        };
        if op == AluOp::Mov {
            let v = match (w64, srcv) {
                (true, v) => v,
                (false, Reg::Scalar(x)) => Reg::Scalar(x.zext32()),
                (false, _) => return Err(format!("R{} partial copy of pointer", reg_no(src))),
            };
            set(s, dst, v);
            return Ok(());
        }
        if let AluOp::Movsx(bits) = op {
            let x = match srcv {
                Reg::Scalar(x) => x,
                _ => return Err(format!("R{} sign-extension mov of pointer prohibited", reg_no(src))),
            };
            let r = x.sext(bits as u32 / 8);
            set(s, dst, Reg::Scalar(if w64 { r } else { r.zext32() }));
            return Ok(());
        }
        let d = read(s, dst)?;
        let result = match (d, srcv) {
            (Reg::Scalar(a), Reg::Scalar(b)) => Reg::Scalar(scalar_alu(w64, op, a, b)),
            (Reg::Ptr { region, off }, Reg::Scalar(b)) if w64 && matches!(op, AluOp::Add | AluOp::Sub) => {
                let off = if op == AluOp::Add { off.add(b) } else { off.sub(b) };
                Reg::Ptr { region, off }
            }
            (Reg::Scalar(a), Reg::Ptr { region, off }) if w64 && op == AluOp::Add => Reg::Ptr { region, off: off.add(a) },
            (Reg::Ptr { region: ra, .. }, Reg::Ptr { region: rb, .. }) if w64 && op == AluOp::Sub && ra == rb => Reg::Scalar(Scalar::UNKNOWN),
            (Reg::PtrOrNull { .. }, _) => return Err(format!("R{dst} pointer arithmetic on map_value_or_null prohibited, null-check it first")),
            (Reg::Map { .. }, _) => return Err(format!("R{dst} pointer arithmetic on map_ptr prohibited")),
            (_, _) => return Err(format!("R{dst} {} on pointer prohibited", alu_name(op))),
        };
        set(s, dst, result);
        Ok(())
    }

    /// The size in bytes of what a pointer into `region` may reach, and whether it is writable.
    fn region_size(&self, region: Region) -> (u64, bool) {
        match region {
            Region::Ctx => (self.info.ctx_size as u64, false),
            Region::Stack => (STACK_SIZE as u64, true),
            Region::MapValue { map } => (self.info.maps[map as usize].value_size as u64, true),
            Region::MapKey { map } => (self.info.maps[map as usize].key_size as u64, false),
            Region::RingbufRecord { size, .. } => (size as u64, true),
        }
    }

    /// Checks an access of `size` bytes at `reg + off`; returns the (constant or bounded) offset
    /// range `[lo, hi)` into the region.
    fn access(&self, s: &State, reg: u8, off: i16, size: u64, write: bool) -> Result<(Region, i64, i64), String> {
        let (region, ptr_off) = match read(s, reg)? {
            Reg::Ptr { region, off } => (region, off),
            Reg::Scalar(_) => return Err(format!("R{reg} invalid mem access 'scalar'")),
            Reg::PtrOrNull { region, .. } => return Err(format!("R{reg} invalid mem access '{}_or_null'", region_name(region))),
            Reg::Map { .. } => return Err(format!("R{reg} invalid mem access 'map_ptr'")),
            Reg::Uninit => return Err(format!("R{reg} !read_ok")),
        };
        let (limit, writable) = self.region_size(region);
        if write && !writable {
            return Err(format!("cannot write into {}", region_name(region)));
        }
        let lo = ptr_off.smin.checked_add(off as i64);
        let hi = ptr_off.smax.checked_add(off as i64).and_then(|h| h.checked_add(size as i64));
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo >= 0 && hi <= limit as i64 && ptr_off.smin <= ptr_off.smax => Ok((region, lo, hi)),
            _ => {
                let name = region_name(region);
                if region == Region::Stack {
                    let at = ptr_off.smin.saturating_add(off as i64) - STACK_SIZE as i64;
                    Err(format!("invalid {} stack R{reg} off={at} size={size}", if write { "write to" } else { "read from" }))
                } else if ptr_off.value().is_none() && (ptr_off.smin == i64::MIN || ptr_off.smax == i64::MAX) {
                    Err(format!("R{reg} unbounded memory access, make sure to bounds check any such access"))
                } else {
                    Err(format!(
                        "invalid access to {name}, {}={limit} off={} size={size}",
                        if matches!(region, Region::MapValue { .. }) { "value_size" } else { "size" },
                        ptr_off.smin.saturating_add(off as i64)
                    ))
                }
            }
        }
    }

    fn load(&self, s: &State, src: u8, off: i16, size: Size, signed: bool) -> Result<Reg, String> {
        let bytes = size_bytes(size);
        let (region, lo, hi) = self.access(s, src, off, bytes, false)?;
        if region == Region::Stack {
            let f = s.frame();
            if lo + 8 == hi && lo % 8 == 0 && f.stack[lo as usize] == Slot::Spill && hi == lo + 8 {
                if let Some(r) = f.spills[slot_index(lo)] {
                    return Ok(r);
                }
            }
            let bytes_ = &f.stack[lo as usize..hi as usize];
            // Linux's words: the access's offset from the frame, the first byte never written.
            if let Some(i) = bytes_.iter().position(|b| *b == Slot::Invalid) {
                return Err(format!("invalid read from stack off {}+{} size {}", lo - STACK_SIZE as i64, i, bytes));
            }
            if bytes_.iter().any(|b| *b == Slot::Spill) {
                // Part of a spilled register: a pointer's bytes read as a number would leak it.
                for i in (lo as usize..hi as usize).filter(|&i| f.stack[i] == Slot::Spill) {
                    if f.spills[slot_index(i as i64 & !7)].is_some_and(|r| r.is_pointer()) {
                        return Err(format!("invalid size of register fill at stack off {}", lo - STACK_SIZE as i64));
                    }
                }
            }
            if bytes_.iter().all(|b| *b == Slot::Zero) {
                return Ok(Reg::Scalar(Scalar::constant(0)));
            }
        }
        let v = if signed { Scalar::UNKNOWN.sext(bytes as u32) } else { Scalar::UNKNOWN.zext_bytes(size) };
        Ok(Reg::Scalar(v))
    }

    fn store(&self, s: &mut State, dst: u8, off: i16, size: Size, value: Reg) -> Step {
        let bytes = size_bytes(size);
        let (region, lo, hi) = self.access(s, dst, off, bytes, true)?;
        if region != Region::Stack {
            if value.is_pointer() {
                return Err(format!("R{dst} leaks addr into {}", region_name(region)));
            }
            return Ok(());
        }
        // A store at a bounded but unknown stack offset would need every byte it may touch; only
        // fixed offsets are tracked.
        let at = match read(s, dst)? {
            Reg::Ptr { off: o, .. } if o.value().is_some() => lo,
            _ => return Err(format!("R{dst} variable stack access prohibited")),
        };
        let f = s.frame_mut();
        // Bytes of earlier spills this store overwrites become plain data.
        for i in at as usize..hi as usize {
            if f.stack[i] == Slot::Spill {
                let slot = slot_index(i as i64 & !7);
                let base = (i & !7) as usize;
                for b in &mut f.stack[base..base + 8] {
                    *b = Slot::Misc;
                }
                f.spills[slot] = None;
            }
        }
        match value {
            v if bytes == 8 && at % 8 == 0 && !matches!(v, Reg::Scalar(x) if x.value() == Some(0)) => {
                for b in &mut f.stack[at as usize..hi as usize] {
                    *b = Slot::Spill;
                }
                f.spills[slot_index(at)] = Some(v);
            }
            v if v.is_pointer() => return Err("invalid size of register spill".into()),
            Reg::Scalar(x) if x.value() == Some(0) => f.stack[at as usize..hi as usize].iter_mut().for_each(|b| *b = Slot::Zero),
            _ => f.stack[at as usize..hi as usize].iter_mut().for_each(|b| *b = Slot::Misc),
        }
        Ok(())
    }

    /// The states on the taken and the not-taken way of `if dst cond src` (`None`: impossible).
    fn branch(&mut self, s: &State, w64: bool, cond: Cond, dst: u8, src: Operand) -> Result<(Option<State>, Option<State>), String> {
        let d = read(s, dst)?;
        let k = match src {
            Operand::Imm(k) => Some(if w64 { k as i64 as u64 } else { k as u32 as u64 }),
            Operand::Reg(r) => match read(s, r)? {
                Reg::Scalar(x) => x.value(),
                _ => None,
            },
        };
        // A null check of a lookup's result. Only a 64-bit one: `if w0 == 0` on a pointer whose
        // low half is zero would take the "null" way with a non-null pointer (Linux does not
        // take JMP32 as a null check either).
        if let (Reg::PtrOrNull { region, id }, Some(0), Cond::Eq | Cond::Ne, true) = (d, k, cond, w64) {
            let mut null = s.clone();
            let mut nonnull = s.clone();
            replace_id(&mut null, id, Reg::Scalar(Scalar::constant(0)));
            if let Region::RingbufRecord { ref_id, .. } = region {
                null.open_records.retain(|r| *r != ref_id);
            }
            replace_id(&mut nonnull, id, Reg::Ptr { region, off: Scalar::constant(0) });
            return Ok(if cond == Cond::Eq { (Some(null), Some(nonnull)) } else { (Some(nonnull), Some(null)) });
        }
        if let (Reg::Scalar(x), Some(k)) = (d, k) {
            let cmp = cond_cmp(cond);
            let mut ways = [None, None];
            for (i, taken) in [true, false].into_iter().enumerate() {
                let r = if w64 { x.refine(cmp, k, taken) } else { refine32(x, cmp, k as u32, taken) };
                if !r.is_empty() {
                    let mut st = s.clone();
                    set(&mut st, dst, Reg::Scalar(r));
                    ways[i] = Some(st);
                }
            }
            return Ok((ways[0].take(), ways[1].take()));
        }
        if let Operand::Reg(r) = src {
            read(s, r)?;
        }
        if d.is_pointer() && !matches!(cond, Cond::Eq | Cond::Ne) {
            return Err(format!("R{dst} pointer comparison prohibited"));
        }
        Ok((Some(s.clone()), Some(s.clone())))
    }

    fn call_helper(&mut self, s: &mut State, _pc: usize, id: u32) -> Step {
        use Arg::*;
        let proto: (&[Arg], Ret) = match id {
            1 => (&[ConstMap, MapKey], Ret::MapValueOrNull),
            2 => (&[ConstMap, MapKey, MapValue, Anything], Ret::Integer),
            3 => (&[ConstMap, MapKey], Ret::Integer),
            5 | 8 | 14 => (&[], Ret::Integer),
            // Linux's bpf_trace_printk_proto declares two arguments: r3-r5 are ARG_DONTCARE, not
            // read by the verifier (bpf_printk with fewer than three values leaves them unset;
            // the helper formats only as many as the format names).
            6 => (&[Mem, Size], Ret::Integer),
            113 => (&[UninitMem, Size, Anything], Ret::Integer),
            130 => (&[RingbufMap, Mem, Size, Anything], Ret::Integer),
            131 => (&[RingbufMap, ConstSize, Anything], Ret::RingbufRecordOrNull),
            132 | 133 => (&[ReleaseRecord, Anything], Ret::Void),
            173 | 185 if self.info.func_helpers => (&[Ctx], Ret::Integer),
            183 if self.info.func_helpers => (&[Ctx, Anything, U64Out], Ret::Integer),
            184 if self.info.func_helpers => (&[Ctx, U64Out], Ret::Integer),
            _ => {
                let name = insn::helper_name(id).unwrap_or("unknown");
                return Err(format!("unknown func {name}#{id}"));
            }
        };
        let mut map = None;
        let mut record_size = 0u64;
        for (i, arg) in proto.0.iter().enumerate() {
            let r = (i + 1) as u8;
            let v = read(s, r)?;
            match arg {
                Anything => {}
                ConstMap | RingbufMap => match v {
                    Reg::Map { map: m } => {
                        if *arg == RingbufMap && self.info.maps[m as usize].kind != crate::verifier::MapKind::Ringbuf {
                            return Err(format!("R{r} map is not a ring buffer"));
                        }
                        map = Some(m);
                    }
                    _ => return Err(format!("R{r} type={} expected=map_ptr", reg_kind(&v))),
                },
                MapKey | MapValue => {
                    let m = map.ok_or("map argument missing")?;
                    let info = self.info.maps[m as usize];
                    let len = if *arg == MapKey { info.key_size } else { info.value_size } as u64;
                    self.check_mem(s, r, len, false)?;
                }
                Mem => {
                    let len = const_len(s, r + 1)?;
                    self.check_mem(s, r, len, false)?;
                }
                UninitMem => {
                    let len = const_len(s, r + 1)?;
                    self.check_mem(s, r, len, true)?;
                    self.mark_written(s, r, len);
                }
                Size => {}
                ConstSize => match v {
                    Reg::Scalar(x) if x.value().is_some_and(|v| v > 0 && v < u32::MAX as u64) => record_size = x.value().unwrap_or(0),
                    _ => return Err(format!("R{r} is not a known constant")),
                },
                Ctx => {
                    if !matches!(v, Reg::Ptr { region: Region::Ctx, off } if off.value() == Some(0)) {
                        return Err(format!("R{r} type={} expected=ctx", reg_kind(&v)));
                    }
                }
                U64Out => {
                    self.check_mem(s, r, 8, true)?;
                    self.mark_written(s, r, 8);
                }
                ReleaseRecord => match v {
                    Reg::Ptr { region: Region::RingbufRecord { ref_id, .. }, off } if off.value() == Some(0) => {
                        if !s.open_records.contains(&ref_id) {
                            return Err(format!("R{r} ring buffer record already released"));
                        }
                        s.open_records.retain(|x| *x != ref_id);
                        // Every copy of the pointer is gone with the record.
                        for f in s.frames.iter_mut() {
                            for reg in f.regs.iter_mut() {
                                if matches!(reg, Reg::Ptr { region: Region::RingbufRecord { ref_id: x, .. }, .. } if *x == ref_id) {
                                    *reg = Reg::Uninit;
                                }
                            }
                        }
                    }
                    _ => return Err(format!("R{r} type={} expected=ringbuf_mem", reg_kind(&v))),
                },
            }
        }
        let r0 = match proto.1 {
            Ret::Integer => Reg::Scalar(Scalar::UNKNOWN),
            Ret::Void => Reg::Uninit,
            Ret::MapValueOrNull => Reg::PtrOrNull { region: Region::MapValue { map: map.unwrap_or(0) }, id: self.id() },
            Ret::RingbufRecordOrNull => {
                let ref_id = self.id();
                s.open_records.push(ref_id);
                Reg::PtrOrNull { region: Region::RingbufRecord { size: record_size as u32, ref_id }, id: self.id() }
            }
        };
        let f = s.frame_mut();
        for r in 1..=5 {
            f.regs[r] = Reg::Uninit;
        }
        f.regs[0] = r0;
        Ok(())
    }

    /// `len` bytes at the pointer in `reg`: in bounds, and (unless `write`) initialised.
    fn check_mem(&self, s: &State, reg: u8, len: u64, write: bool) -> Step {
        if len == 0 {
            return Ok(());
        }
        let (region, lo, hi) = self.access(s, reg, 0, len, write)?;
        if region == Region::Stack && !write {
            if s.frame().stack[lo as usize..hi as usize].contains(&Slot::Invalid) {
                return Err(format!("invalid indirect read from stack R{reg} off {}+0 size {len}", lo - STACK_SIZE as i64));
            }
        }
        if write && region == Region::Ctx {
            return Err("cannot write into ctx".into());
        }
        Ok(())
    }

    /// A helper wrote `len` bytes at the pointer in `reg`.
    fn mark_written(&self, s: &mut State, reg: u8, len: u64) {
        if let Reg::Ptr { region: Region::Stack, off } = s.frame().regs[reg as usize] {
            if let Some(o) = off.value() {
                let f = s.frame_mut();
                for i in o as usize..(o + len).min(STACK_SIZE as u64) as usize {
                    if f.stack[i] == Slot::Spill {
                        f.spills[slot_index(i as i64 & !7)] = None;
                    }
                    f.stack[i] = Slot::Misc;
                }
            }
        }
    }
}

/// What a helper argument must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    Anything,
    ConstMap,
    RingbufMap,
    MapKey,
    MapValue,
    /// Readable memory of the size the next argument gives.
    Mem,
    /// Writable memory of the size the next argument gives (the helper fills it).
    UninitMem,
    /// The size of the memory argument before it (bounded).
    Size,
    /// A known positive constant.
    ConstSize,
    Ctx,
    /// 8 writable bytes.
    U64Out,
    /// A reserved ring-buffer record, released by the call.
    ReleaseRecord,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    Integer,
    Void,
    MapValueOrNull,
    RingbufRecordOrNull,
}

fn read(s: &State, r: u8) -> Result<Reg, String> {
    match s.frame().regs.get(r as usize) {
        Some(Reg::Uninit) => Err(format!("R{r} !read_ok")),
        Some(v) => Ok(*v),
        None => Err(format!("R{r} is invalid")),
    }
}

fn set(s: &mut State, r: u8, v: Reg) {
    s.frame_mut().regs[r as usize] = v;
}

fn scalar_of(s: &State, r: u8, what: &str) -> Result<Scalar, String> {
    match read(s, r)? {
        Reg::Scalar(x) => Ok(x),
        _ => Err(format!("R{r} {what}")),
    }
}

/// The bounded length a memory argument's size register gives (its largest value).
fn const_len(s: &State, r: u8) -> Result<u64, String> {
    match read(s, r)? {
        Reg::Scalar(x) if x.umax <= STACK_SIZE as u64 * 64 => Ok(x.umax),
        Reg::Scalar(_) => Err(format!("R{r} unbounded memory access, use 'var &= const' or 'if (var < const)'")),
        v => Err(format!("R{r} type={} expected=scalar", reg_kind(&v))),
    }
}

/// Replaces every copy (registers and spills, every frame) of the pointer-or-null `id`.
fn replace_id(s: &mut State, id: u32, with: Reg) {
    let is = |r: &Reg| matches!(r, Reg::PtrOrNull { id: x, .. } if *x == id);
    for f in s.frames.iter_mut() {
        for r in f.regs.iter_mut().filter(|r| is(r)) {
            *r = with;
        }
        for r in f.spills.iter_mut().flatten().filter(|r| is(r)) {
            *r = with;
        }
    }
}

fn slot_index(stack_off: i64) -> usize {
    // Offsets count from the bottom of the frame (0) to its top (512); slots from the top.
    (STACK_SIZE as i64 - 8 - stack_off) as usize / 8
}

fn size_bytes(size: Size) -> u64 {
    match size {
        Size::B => 1,
        Size::H => 2,
        Size::W => 4,
        Size::DW => 8,
    }
}

fn cond_cmp(c: Cond) -> Cmp {
    match c {
        Cond::Eq => Cmp::Eq,
        Cond::Ne => Cmp::Ne,
        Cond::Gt => Cmp::Gt,
        Cond::Ge => Cmp::Ge,
        Cond::Lt => Cmp::Lt,
        Cond::Le => Cmp::Le,
        Cond::Sgt => Cmp::Sgt,
        Cond::Sge => Cmp::Sge,
        Cond::Slt => Cmp::Slt,
        Cond::Sle => Cmp::Sle,
        Cond::Set => Cmp::Set,
    }
}

/// What `if w cmp k` (a 32-bit jump: the low halves compared, `k` the 32-bit constant) teaches of
/// the 64-bit scalar `x` on one way, without 32-bit bounds of its own. If `x` fits in 32 bits (in
/// 0..2^31 for a signed condition), the comparison is the 64-bit one with `k` zero-extended
/// (sign-extended). Otherwise only what the bits can hold: the low half equal to `k`, at most `m`
/// (its bits above `m`'s highest known clear), or without `k`'s bits; the high half stays unknown.
fn refine32(x: Scalar, cmp: Cmp, k: u32, taken: bool) -> Scalar {
    let signed = matches!(cmp, Cmp::Sgt | Cmp::Sge | Cmp::Slt | Cmp::Sle);
    if signed && x.umax <= i32::MAX as u64 {
        return x.refine(cmp, k as i32 as i64 as u64, taken);
    }
    if !signed && x.umax <= u32::MAX as u64 {
        return x.refine(cmp, k as u64, taken);
    }
    const HIGH: u64 = 0xffff_ffff_0000_0000;
    // Every bit up to the highest set bit of `m`.
    let up_to = |m: u32| if m == 0 { 0 } else { (u32::MAX >> m.leading_zeros()) as u64 };
    let c = if taken || cmp == Cmp::Set { cmp } else { cmp.negate() };
    let low = match (c, taken) {
        (Cmp::Set, false) => Tnum::new(0, !(k as u64)),
        (Cmp::Set, true) => return x,
        (Cmp::Eq, _) => Tnum::new(k as u64, HIGH),
        (Cmp::Le, _) => Tnum::new(0, HIGH | up_to(k)),
        (Cmp::Lt, _) if k > 0 => Tnum::new(0, HIGH | up_to(k - 1)),
        (Cmp::Lt, _) => return Scalar { umin: 1, umax: 0, ..x }, // below 0: never
        _ => return x,
    };
    if (x.var.value ^ low.value) & !x.var.mask & !low.mask != 0 {
        // A bit known one way in `x` and the other in the condition: this way cannot happen.
        return Scalar { umin: 1, umax: 0, ..x };
    }
    Scalar { var: x.var.intersect(low), ..x }.sync()
}

fn scalar_alu(w64: bool, op: AluOp, a: Scalar, b: Scalar) -> Scalar {
    let (a, b) = if w64 { (a, b) } else { (a.zext32(), b.zext32()) };
    let mask = if w64 { 63 } else { 31 };
    let shift = b.value().map(|v| (v & mask) as u32);
    let r = match op {
        AluOp::Add => a.add(b),
        AluOp::Sub => a.sub(b),
        AluOp::Mul => a.mul(b),
        AluOp::And => a.and(b),
        AluOp::Or => a.or(b),
        AluOp::Xor => a.xor(b),
        AluOp::Lsh => a.lsh(shift),
        AluOp::Rsh => a.rsh(shift),
        AluOp::Arsh if w64 => a.arsh(shift),
        // 32-bit arithmetic shift: sign-extend the low half first.
        AluOp::Arsh => a.sext(4).arsh(shift),
        // Division and modulo: no more than "a number" (BPF defines division by zero).
        _ => Scalar::UNKNOWN,
    };
    if w64 { r } else { r.zext32() }
}

fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "addition",
        AluOp::Sub => "subtraction",
        AluOp::Mul => "multiplication",
        AluOp::Div | AluOp::Sdiv => "division",
        AluOp::Mod | AluOp::Smod => "modulo",
        AluOp::Or => "bitwise operator |=",
        AluOp::And => "bitwise operator &=",
        AluOp::Xor => "bitwise operator ^=",
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => "shift",
        AluOp::Mov | AluOp::Movsx(_) => "mov",
    }
}

fn reg_no(o: Operand) -> u8 {
    match o {
        Operand::Reg(r) => r,
        Operand::Imm(_) => 0,
    }
}

fn region_name(r: Region) -> &'static str {
    match r {
        Region::Ctx => "ctx",
        Region::Stack => "stack",
        Region::MapValue { .. } => "map_value",
        Region::MapKey { .. } => "map_key",
        Region::RingbufRecord { .. } => "ringbuf_mem",
    }
}

fn reg_kind(r: &Reg) -> &'static str {
    match r {
        Reg::Uninit => "not_init",
        Reg::Scalar(_) => "scalar",
        Reg::Ptr { region, .. } => region_name(*region),
        Reg::PtrOrNull { region: Region::MapValue { .. }, .. } => "map_value_or_null",
        Reg::PtrOrNull { .. } => "ringbuf_mem_or_null",
        Reg::Map { .. } => "map_ptr",
    }
}

/// The registers of a frame as Linux's log shows them: `R1=ctx() R10=fp0 R6=scalar(...)`.
fn regs_line(f: &Frame) -> String {
    let mut s = String::new();
    for (i, r) in f.regs.iter().enumerate() {
        let text = match r {
            Reg::Uninit => continue,
            Reg::Scalar(x) => format!("{x}"),
            Reg::Ptr { region: Region::Stack, off } => match off.value() {
                Some(v) => format!("fp{}", v as i64 - STACK_SIZE as i64),
                None => format!("fp({off})"),
            },
            Reg::Ptr { region, off } => match off.value() {
                Some(0) => format!("{}()", region_name(*region)),
                Some(v) => format!("{}(off={v})", region_name(*region)),
                None => format!("{}({off})", region_name(*region)),
            },
            Reg::PtrOrNull { id, .. } => format!("{}(id={id})", reg_kind(r)),
            Reg::Map { map } => format!("map_ptr(map={map})"),
        };
        let _ = write!(s, "{}R{i}={text}", if s.is_empty() { "" } else { " " });
    }
    s
}

impl Scalar {
    /// Every value a load of `size` bytes can give, zero-extended.
    pub fn zext_bytes(self, size: Size) -> Scalar {
        match size {
            Size::DW => self,
            s => Scalar::from_tnum(self.var.cast(size_bytes(s) as u32)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::*;

    const HASH: MapInfo = MapInfo { kind: MapKind::Hash, key_size: 4, value_size: 16, max_entries: 8 };
    const RING: MapInfo = MapInfo { kind: MapKind::Ringbuf, key_size: 0, value_size: 0, max_entries: 4096 };

    fn info() -> ProgInfo {
        ProgInfo { ctx_size: 64, maps: alloc::vec![HASH, RING], func_helpers: true }
    }

    /// Builds a program from single instructions and `ld_imm64` pairs.
    fn prog(parts: &[&[Insn]]) -> Vec<Insn> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    fn ok(p: &[Insn]) -> Verified {
        match verify(p, &info()) {
            Ok(v) => v,
            Err(e) => panic!("refused: {e}\n{}", e.log),
        }
    }

    /// Refused at `insn` with a reason containing `why`.
    fn refused(p: &[Insn], insn: usize, why: &str) -> VerifyError {
        match verify(p, &info()) {
            Ok(_) => panic!("accepted, expected '{why}'"),
            Err(e) => {
                assert!(e.reason.contains(why), "reason '{}' lacks '{why}'\n{}", e.reason, e.log);
                assert_eq!(e.insn, insn, "at insn {} ('{}'), expected {insn}\n{}", e.insn, e.reason, e.log);
                e
            }
        }
    }

    /// r1 = &key (4 bytes at fp-4, zero); r2 = map; lookup.
    fn lookup_prelude() -> Vec<Insn> {
        prog(&[
            &[Insn::st_mem(Size::W, 10, -4, 0), Insn::mov64_reg(2, 10), Insn::alu64_imm(BPF_ADD, 2, -4)],
            &Insn::ld_map_fd(1, 0),
            &[Insn::call_helper(1)],
        ])
    }

    #[test]
    fn accepts_a_null_checked_lookup() {
        // if (v) { v[1] += 1 (u64 at +8) } return 0
        let p = prog(&[
            &lookup_prelude(),
            &[
                Insn::jmp_imm(BPF_JEQ, 0, 0, 3),
                Insn::ldx_mem(Size::DW, 1, 0, 8),
                Insn::alu64_imm(BPF_ADD, 1, 1),
                Insn::stx_mem(Size::DW, 0, 1, 8),
                Insn::mov64_imm(0, 0),
                Insn::exit(),
            ],
        ]);
        let v = ok(&p);
        assert!(v.processed >= p.len() - 1);
    }

    #[test]
    fn refuses_a_missing_null_check() {
        let p = prog(&[&lookup_prelude(), &[Insn::ldx_mem(Size::DW, 1, 0, 0), Insn::mov64_imm(0, 0), Insn::exit()]]);
        let e = refused(&p, 6, "invalid mem access 'map_value_or_null'");
        assert!(e.log.contains("call bpf_map_lookup_elem#1"), "{}", e.log);
        assert!(e.log.contains("R0=map_value_or_null"), "{}", e.log);
    }

    #[test]
    fn refuses_an_out_of_bounds_map_value_access() {
        let p = prog(&[&lookup_prelude(), &[Insn::jmp_imm(BPF_JEQ, 0, 0, 1), Insn::ldx_mem(Size::DW, 1, 0, 12), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&p, 7, "invalid access to map_value, value_size=16 off=12 size=8");
    }

    #[test]
    fn a_bounds_check_makes_a_variable_index_safe() {
        // idx = *(u32 *)ctx; if idx >= 2 goto out; v += idx * 8; r1 = *v
        let body = |check: bool| {
            let mut p = lookup_prelude();
            p.extend_from_slice(&[
                Insn::jmp_imm(BPF_JEQ, 0, 0, 6),
                // r6 = ctx was lost in the call: read an index from the map value itself.
                Insn::ldx_mem(Size::W, 2, 0, 0),
                if check { Insn::jmp_imm(BPF_JGE, 2, 2, 4) } else { Insn::jmp_imm(BPF_JGE, 2, 1 << 20, 4) },
                Insn::alu64_imm(BPF_LSH, 2, 3),
                Insn::alu64_reg(BPF_ADD, 0, 2),
                Insn::ldx_mem(Size::DW, 1, 0, 0),
                Insn::mov64_imm(0, 0),
                Insn::mov64_imm(0, 0),
                Insn::exit(),
            ]);
            p
        };
        ok(&body(true));
        refused(&body(false), 11, "invalid access to map_value");
    }

    #[test]
    fn refuses_an_uninitialised_stack_read() {
        let p = [Insn::ldx_mem(Size::DW, 0, 10, -8), Insn::exit()];
        refused(&p, 0, "invalid read from stack off -8+0 size 8");
        // Only the last four bytes were written: the first unwritten byte is byte 0 of the read.
        let p = [Insn::st_mem(Size::W, 10, -4, 1), Insn::ldx_mem(Size::DW, 0, 10, -8), Insn::exit()];
        refused(&p, 1, "invalid read from stack off -8+0 size 8");
        let p = [Insn::st_mem(Size::W, 10, -8, 1), Insn::ldx_mem(Size::DW, 0, 10, -8), Insn::exit()];
        refused(&p, 1, "invalid read from stack off -8+4 size 8");
        let p = [Insn::mov64_reg(0, 2), Insn::exit()];
        refused(&p, 0, "R2 !read_ok");
        let p = [Insn::exit()];
        refused(&p, 0, "R0 !read_ok");
    }

    #[test]
    fn refuses_a_pointer_leaked_into_a_map() {
        let p = prog(&[&lookup_prelude(), &[Insn::jmp_imm(BPF_JEQ, 0, 0, 1), Insn::stx_mem(Size::DW, 0, 10, 0), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&p, 7, "leaks addr into map_value");
        let p = [Insn::mov64_reg(0, 10), Insn::exit()];
        refused(&p, 1, "R0 leaks addr as return value");
    }

    #[test]
    fn loops_pass_only_when_bounded() {
        // for (i = 0; i < 10; i++) ;
        let bounded = [Insn::mov64_imm(0, 0), Insn::alu64_imm(BPF_ADD, 0, 1), Insn::jmp_imm(BPF_JLT, 0, 10, -2), Insn::exit()];
        let v = ok(&bounded);
        assert!(v.processed > 20, "the loop was walked iteration by iteration: {v:?}");
        // while (1) ;
        let forever = [Insn::mov64_imm(0, 0), Insn::ja(-1), Insn::exit()];
        let e = verify(&forever, &info()).unwrap_err();
        assert!(e.reason.contains("infinite loop detected at insn 1") || e.reason.contains("unreachable"), "{e}");
        // i = unknown; while (i != 0) i -= 1  — bounded only by 2^64: too large.
        let long = prog(&[&[Insn::ldx_mem(Size::DW, 0, 1, 0), Insn::alu64_imm(BPF_SUB, 0, 1), Insn::jmp_imm(BPF_JNE, 0, 0, -2), Insn::exit()]]);
        let e = verify(&long, &info()).unwrap_err();
        assert!(e.reason.contains("infinite loop") || e.reason.contains("too large"), "{e}");
    }

    #[test]
    fn refuses_bad_control_flow() {
        refused(&[Insn::ja(5), Insn::exit()], 0, "jump out of range from insn 0 to 6");
        let into_ld = prog(&[&[Insn::ja(1)], &Insn::ld_imm64(0, 7), &[Insn::exit()]]);
        refused(&into_ld, 0, "jump out of range from insn 0 to 2");
        refused(&[Insn::mov64_imm(0, 0)], 0, "last insn is not an exit or jmp");
        refused(&[Insn::mov64_imm(0, 0), Insn::exit(), Insn::exit()], 2, "unreachable insn 2");
        refused(&[], 0, "empty program");
    }

    #[test]
    fn ring_buffer_records_must_be_released() {
        let reserve = prog(&[&Insn::ld_map_fd(1, 1), &[Insn::mov64_imm(2, 16), Insn::mov64_imm(3, 0), Insn::call_helper(131)]]);
        // reserve; if (!rec) return 0; rec[0] = 1; submit(rec)
        let good = prog(&[
            &reserve,
            &[
                Insn::jmp_imm(BPF_JNE, 0, 0, 2),
                Insn::mov64_imm(0, 0),
                Insn::exit(),
                Insn::st_mem(Size::DW, 0, 8, 1),
                Insn::mov64_reg(1, 0),
                Insn::mov64_imm(2, 0),
                Insn::call_helper(132),
                Insn::mov64_imm(0, 0),
                Insn::exit(),
            ],
        ]);
        ok(&good);
        // The record forgotten on the non-null way.
        let leak = prog(&[&reserve, &[Insn::jmp_imm(BPF_JNE, 0, 0, 2), Insn::mov64_imm(0, 0), Insn::exit(), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&leak, 9, "Unreleased reference");
        // Out of the reserved size.
        let big = prog(&[&reserve, &[Insn::jmp_imm(BPF_JNE, 0, 0, 2), Insn::mov64_imm(0, 0), Insn::exit(), Insn::st_mem(Size::DW, 0, 16, 1), Insn::exit()]]);
        refused(&big, 8, "invalid access to ringbuf_mem");
    }

    #[test]
    fn helper_arguments_are_checked() {
        // lookup with an uninitialised key
        let p = prog(&[&[Insn::mov64_reg(2, 10), Insn::alu64_imm(BPF_ADD, 2, -4)], &Insn::ld_map_fd(1, 0), &[Insn::call_helper(1), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&p, 4, "invalid indirect read from stack R2 off -4+0 size 4");
        // a scalar where a map is expected
        let p = [Insn::mov64_imm(1, 0), Insn::mov64_reg(2, 10), Insn::call_helper(1), Insn::exit()];
        refused(&p, 2, "R1 type=scalar expected=map_ptr");
        // an unknown helper
        refused(&[Insn::call_helper(9999), Insn::exit()], 0, "unknown func unknown#9999");
        // get_func_arg(ctx, 0, &out) then read out
        let p = [
            Insn::mov64_imm(2, 0),
            Insn::mov64_reg(3, 10),
            Insn::alu64_imm(BPF_ADD, 3, -8),
            Insn::call_helper(183),
            Insn::ldx_mem(Size::DW, 0, 10, -8),
            Insn::exit(),
        ];
        ok(&p);
    }

    #[test]
    fn trace_printk_takes_a_format_and_its_size_only() {
        // bpf_printk("x") as clang emits it: the format in a map value (a global), its size,
        // and r3-r5 unset (Linux's prototype has two arguments).
        let rodata = MapInfo { kind: MapKind::Array, key_size: 4, value_size: 16, max_entries: 1 };
        let info = ProgInfo { ctx_size: 64, maps: alloc::vec![rodata], func_helpers: true };
        let printk = |size: i32| prog(&[&Insn::ld_map_value(1, 0, 4), &[Insn::mov64_imm(2, size), Insn::call_helper(6), Insn::mov64_imm(0, 0), Insn::exit()]]);
        assert!(verify(&printk(12), &info).is_ok());
        // the format must still be readable memory of the given size
        let e = verify(&printk(13), &info).unwrap_err();
        assert!(e.reason.contains("invalid access to map_value"), "{e}");
        // and initialised, on the stack
        let p = [Insn::mov64_reg(1, 10), Insn::alu64_imm(BPF_ADD, 1, -8), Insn::mov64_imm(2, 8), Insn::call_helper(6), Insn::mov64_imm(0, 0), Insn::exit()];
        let e = verify(&p, &info).unwrap_err();
        assert!(e.reason.contains("invalid indirect read from stack"), "{e}");
        // r3-r5 are clobbered by the call like every argument register
        let p = prog(&[&Insn::ld_map_value(1, 0, 0), &[Insn::mov64_imm(2, 4), Insn::mov64_imm(3, 1), Insn::call_helper(6), Insn::mov64_reg(0, 3), Insn::exit()]]);
        let e = verify(&p, &info).unwrap_err();
        assert!(e.reason.contains("R3 !read_ok"), "{e}");
    }

    #[test]
    fn jmp32_bounds_an_index() {
        // v = lookup (16-byte values); if (!v) return; i = *(u64 *)ctx; if (w_i <cond> k) return;
        // i = (u32)i (<<= 32, >>= 32); v += i * 8; r0 = *(u64 *)v — clang -mcpu=v3's code for a
        // u32 index checked against a bound.
        let body = |load: Size, check: Insn| {
            let mut p = lookup_prelude();
            p.splice(0..0, [Insn::mov64_reg(6, 1)]);
            p.extend_from_slice(&[
                Insn::jmp_imm(BPF_JEQ, 0, 0, 8),
                Insn::ldx_mem(load, 1, 6, 0),
                check,
                Insn::alu64_imm(BPF_LSH, 1, 32),
                Insn::alu64_imm(BPF_RSH, 1, 32),
                Insn::alu64_imm(BPF_LSH, 1, 3),
                Insn::alu64_reg(BPF_ADD, 0, 1),
                Insn::ldx_mem(Size::DW, 0, 0, 0),
                Insn::exit(),
                Insn::mov64_imm(0, 0),
                Insn::exit(),
            ]);
            p
        };
        // low half <= 1 (the high half unknown): index 0 or 1
        ok(&body(Size::DW, Insn::jmp32_imm(BPF_JGT, 1, 1, 6)));
        ok(&body(Size::DW, Insn::jmp32_imm(BPF_JGE, 1, 2, 6)));
        // the low half equal to 1 on the way on
        ok(&body(Size::DW, Insn::jmp32_imm(BPF_JNE, 1, 1, 6)));
        // low half <= 2 is too much for two elements
        refused(&body(Size::DW, Insn::jmp32_imm(BPF_JGT, 1, 2, 6)), 14, "invalid access to map_value");
        // a lower bound teaches nothing of the index
        refused(&body(Size::DW, Insn::jmp32_imm(BPF_JLT, 1, 1, 6)), 14, "invalid access to map_value");
        // a value that fits in 32 bits: the 32-bit jump is the 64-bit one
        ok(&body(Size::W, Insn::jmp32_imm(BPF_JGT, 1, 1, 6)));
        // signed: 0xffffffff is -1 in 32 bits, so `w s> 1` not taken does not bound it
        refused(&body(Size::W, Insn::jmp32_imm(BPF_JSGT, 1, 1, 6)), 14, "invalid access to map_value");
        refused(&body(Size::DW, Insn::jmp32_imm(BPF_JSGT, 1, 1, 6)), 14, "invalid access to map_value");
        // but a value in 0..2^31 (a 16-bit load) compares signed as unsigned
        ok(&body(Size::H, Insn::jmp32_imm(BPF_JSGT, 1, 1, 6)));
    }

    #[test]
    fn a_32_bit_jump_is_no_null_check() {
        // `if w0 == 0` leaves a non-null pointer whose low half is zero on the "null" way.
        let p = prog(&[&lookup_prelude(), &[Insn::jmp32_imm(BPF_JEQ, 0, 0, 1), Insn::ldx_mem(Size::DW, 0, 0, 0), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&p, 7, "invalid mem access 'map_value_or_null'");
        let p = prog(&[&lookup_prelude(), &[Insn::jmp32_imm(BPF_JNE, 0, 0, 1), Insn::exit(), Insn::mov64_imm(0, 0), Insn::exit()]]);
        refused(&p, 7, "R0 leaks addr as return value");
    }

    #[test]
    fn context_is_read_only_and_bounded() {
        ok(&[Insn::ldx_mem(Size::DW, 0, 1, 56), Insn::exit()]);
        refused(&[Insn::ldx_mem(Size::DW, 0, 1, 60), Insn::exit()], 0, "invalid access to ctx");
        refused(&[Insn::st_mem(Size::DW, 1, 0, 0), Insn::mov64_imm(0, 0), Insn::exit()], 0, "cannot write into ctx");
    }

    #[test]
    fn bpf_to_bpf_calls() {
        // main: r1 = 5; call f; exit.  f: r0 = r1 + 1; exit
        let p = [Insn::mov64_imm(1, 5), Insn::call_rel(1), Insn::exit(), Insn::mov64_reg(0, 1), Insn::alu64_imm(BPF_ADD, 0, 1), Insn::exit()];
        ok(&p);
        // f returns a pointer to its own stack.
        let p = [Insn::call_rel(1), Insn::exit(), Insn::mov64_reg(0, 10), Insn::exit()];
        refused(&p, 3, "cannot return stack pointer to the caller");
        // r1 is clobbered after the call.
        let p = [Insn::mov64_imm(1, 5), Insn::call_rel(2), Insn::mov64_reg(0, 1), Insn::exit(), Insn::mov64_imm(0, 0), Insn::exit()];
        refused(&p, 2, "R1 !read_ok");
    }

    #[test]
    fn the_frame_pointer_is_read_only() {
        refused(&[Insn::mov64_imm(10, 0), Insn::exit()], 0, "frame pointer is read only");
        refused(&[Insn::ldx_mem(Size::H, 10, 1, 0), Insn::exit()], 0, "frame pointer is read only");
        refused(&[Insn::neg64(10), Insn::exit()], 0, "frame pointer is read only");
    }

    #[test]
    fn spills_keep_pointers() {
        // *(fp-8) = ctx; r1 = *(fp-8); r0 = *(u64 *)(r1 + 0)
        let p = [Insn::stx_mem(Size::DW, 10, 1, -8), Insn::ldx_mem(Size::DW, 2, 10, -8), Insn::ldx_mem(Size::DW, 0, 2, 0), Insn::exit()];
        ok(&p);
        // A pointer read back in pieces would leak it.
        let p = [Insn::stx_mem(Size::DW, 10, 1, -8), Insn::ldx_mem(Size::W, 0, 10, -8), Insn::exit()];
        refused(&p, 1, "invalid size of register fill");
    }

    #[test]
    fn a_refusal_log_reads_like_linux() {
        let p = prog(&[&lookup_prelude(), &[Insn::ldx_mem(Size::DW, 1, 0, 0), Insn::mov64_imm(0, 0), Insn::exit()]]);
        let e = verify(&p, &info()).unwrap_err();
        let want = "0: (62) *(u32 *)(r10 -4) = 0\n1: (bf) r2 = r10\n2: (07) r2 += -4\n3: (18) r1 = map[id:0]\n5: (85) call bpf_map_lookup_elem#1\n6: (79) r1 = *(u64 *)(r0 +0)\nR0=map_value_or_null(id=2) R10=fp0\nR0 invalid mem access 'map_value_or_null'\n";
        assert_eq!(e.log, want);
    }
}
