//! Verifier fuzzing: random and mutated programs. The verifier must never panic, and every
//! program it accepts, run by the interpreter over bounds-checked memory with random inputs
//! (random context bytes, map lookups that find a value or not), must never make an access
//! outside what it may touch — which checks the verifier's soundness, not only its code.
//!
//! `BPF_FUZZ_PROGRAMS=100000 cargo test -p loongtrace-bpf --release --test verifier_fuzz`
//! (`make bpf-fuzz`) runs the long version; `make test` runs 20,000.

use bpf::insn::*;
use bpf::interp::{FaultKind, Interpreter, SimpleEnv};
use bpf::rng::Rng;
use bpf::verifier::{self, MapInfo, MapKind, ProgInfo};

const CTX_SIZE: u32 = 64;
const VALUE_SIZE: u32 = 16;

fn info() -> ProgInfo {
    ProgInfo {
        ctx_size: CTX_SIZE,
        maps: vec![MapInfo { kind: MapKind::Hash, key_size: 4, value_size: VALUE_SIZE, max_entries: 16 }],
        func_helpers: false,
    }
}

const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
const ALU: [u8; 9] = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH, BPF_ARSH];
const JMP: [u8; 10] = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE];

/// A program built from pieces that are often, but not always, safe: context and stack
/// accesses at random offsets, map lookups with or without a null check, indexes with or
/// without a bounds check, scalar arithmetic, forward jumps.
fn generate(r: &mut Rng) -> Vec<Insn> {
    let mut p = vec![Insn::mov64_reg(6, 1), Insn::mov64_imm(0, 0), Insn::mov64_imm(7, 0), Insn::mov64_imm(8, 0)];
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
fn mutate(r: &mut Rng, p: &mut [Insn]) {
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

/// Runs an accepted program; `Err` describes an access the verifier should not have allowed.
fn run(r: &mut Rng, p: &[Insn]) -> Result<(), String> {
    let mut env = SimpleEnv::new();
    let ctx: Vec<u8> = (0..CTX_SIZE).map(|_| r.next() as u8).collect();
    let ctx_addr = env.add_region("ctx", ctx, false);
    let values: Vec<u64> = (0..4).map(|i| env.add_region(&format!("value{i}"), (0..VALUE_SIZE).map(|_| 0xff).collect(), true)).collect();
    // The map itself (`map[id:0]`, also as a map index) and its first value (`map[id:0][0]`).
    env.imm64.insert((BPF_PSEUDO_MAP_FD, 0), 0xdead_0000);
    env.imm64.insert((BPF_PSEUDO_MAP_IDX, 0), 0xdead_0000);
    env.imm64.insert((BPF_PSEUDO_MAP_VALUE, 0), values[0]);
    env.imm64.insert((BPF_PSEUDO_MAP_IDX_VALUE, 0), values[0]);
    let mut seed = r.next();
    env.add_helper(1, move |mem, args| {
        if args[0] != 0xdead_0000 {
            return Err(FaultKind::Other("lookup: not the map".into()));
        }
        mem.read(args[1], 4)?;
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Ok(if (seed >> 33) % 3 == 0 { 0 } else { values[((seed >> 40) % 4) as usize] })
    });
    // The other helpers the verifier lets such a program call, each touching exactly the
    // memory its prototype says.
    let map_ok = |a: u64| if a == 0xdead_0000 { Ok(()) } else { Err(FaultKind::Other("not the map".into())) };
    env.add_helper(2, move |mem, a| map_ok(a[0]).and_then(|_| mem.read(a[1], 4).map(|_| ())).and_then(|_| mem.read(a[2], VALUE_SIZE as usize).map(|_| 0)));
    env.add_helper(3, move |mem, a| map_ok(a[0]).and_then(|_| mem.read(a[1], 4).map(|_| 0)));
    let mut n = r.next();
    for id in [5, 8, 14] {
        env.add_helper(id, move |_, _| {
            n = n.rotate_left(7) ^ 0x9e37;
            Ok(n)
        });
    }
    env.add_helper(6, |mem, a| mem.read(a[0], a[1] as usize).map(|_| 0));
    env.add_helper(113, |mem, a| mem.write(a[0], &vec![0x5a; a[1] as usize]).map(|_| 0));
    match Interpreter::new(p).budget(100_000).run(&mut env, &[ctx_addr]) {
        Ok(_) => Ok(()),
        Err(f) => match f.kind {
            FaultKind::Budget { .. } => Ok(()),
            _ => Err(format!("{f}")),
        },
    }
}

fn listing(p: &[Insn]) -> String {
    format!("{}", Listing::new(p))
}

#[test]
fn accepted_programs_never_access_what_was_not_proven() {
    let n: usize = std::env::var("BPF_FUZZ_PROGRAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut r = Rng(0x5eed_1234_abcd_ef01);
    let info = info();
    let (mut accepted, mut refused, mut runs) = (0usize, 0usize, 0usize);
    for i in 0..n {
        let mut p = generate(&mut r);
        if i % 2 == 1 {
            for _ in 0..1 + r.below(3) {
                mutate(&mut r, &mut p);
            }
        }
        match verifier::verify(&p, &info) {
            Ok(_) => {
                accepted += 1;
                for _ in 0..3 {
                    runs += 1;
                    if let Err(e) = run(&mut r, &p) {
                        panic!("program {i} was accepted but faulted: {e}\n{}", listing(&p));
                    }
                }
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("verifier fuzz: {n} programs, {accepted} accepted ({runs} runs, no fault), {refused} refused");
    assert!(accepted > n / 10, "the generator must produce accepted programs too ({accepted} of {n})");
    assert!(refused > n / 10, "and refused ones ({refused} of {n})");
}
