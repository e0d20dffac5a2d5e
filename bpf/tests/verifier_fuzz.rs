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
use bpf::verifier;

use bpf::fuzz::{CTX_SIZE, VALUE_SIZE, generate, info, mutate};

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
