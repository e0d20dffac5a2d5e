//! The verifier on the real programs: every program of every object built from bpf/progs, with
//! the `ProgInfo` its load plan gives (maps, context size by attach kind, the `get_func_*`
//! helpers for tracing programs). They are all safe, so all must be accepted; a refusal prints
//! the verifier's log. The exception are the objects named `bad_*`, written to be refused (the
//! kernel's suite loads them to check a refusal): each of their programs must be refused.

mod common;

use bpf::object::{LoadPlan, MapSpec, ProgKind, ProgSpec, map_type};
use bpf::verifier::{self, MapInfo, MapKind, ProgInfo};

/// Argument words of a tracing program's context: LoongArch passes (and loongtrace's
/// trampolines hand on) at most eight arguments in registers (docs/bpf-objects.md, Contexts).
const MAX_ARGS: u32 = 8;
/// Bytes of a kprobe's context: `struct pt_regs` as loongtrace's `PtRegs` (32 GPRs, `orig_a0`,
/// `era`, `badv`, `crmd`, `prmd`, `euen`, `ecfg`, `estat`).
const PT_REGS_SIZE: u32 = 320;

fn map_info(m: &MapSpec) -> MapInfo {
    let kind = match m.map_type {
        map_type::HASH => MapKind::Hash,
        map_type::ARRAY => MapKind::Array,
        map_type::PERCPU_ARRAY => MapKind::PercpuArray,
        map_type::RINGBUF => MapKind::Ringbuf,
        t => MapKind::Other(t),
    };
    MapInfo {
        kind,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
    }
}

/// What a program of `plan` is verified for.
pub fn prog_info(plan: &LoadPlan, prog: &ProgSpec) -> ProgInfo {
    let ctx_size = match prog.kind {
        // the arguments, one 64-bit word each
        ProgKind::Fentry => 8 * MAX_ARGS,
        // the arguments, then the return value
        ProgKind::Fexit | ProgKind::FmodRet => 8 * (MAX_ARGS + 1),
        ProgKind::Kprobe | ProgKind::Kretprobe => PT_REGS_SIZE,
        ProgKind::Other => 0,
    };
    ProgInfo {
        ctx_size,
        maps: plan.maps.iter().map(map_info).collect(),
        func_helpers: matches!(
            prog.kind,
            ProgKind::Fentry | ProgKind::Fexit | ProgKind::FmodRet
        ),
    }
}

fn insns(prog: &ProgSpec) -> Vec<bpf::insn::Insn> {
    let bytes: Vec<u8> = prog.insns.iter().flat_map(|w| w.to_le_bytes()).collect();
    bpf::insn::decode(&bytes).unwrap()
}

/// Whether the object is one of the deliberately unsafe ones (`bad_*.bpf.o`).
fn unsafe_object(file: &str) -> bool {
    file.starts_with("bad_")
}

/// Verifies every program of the objects; returns the verdicts that are wrong (a refusal of a
/// safe program, an unsafe program of a `bad_*` object accepted), and prints every verdict.
fn verify_all<'a>(objects: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (usize, Vec<String>) {
    let mut refused = Vec::new();
    let mut verdicts = 0;
    for (file, bytes) in objects {
        let plan = LoadPlan::parse(file, bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        for prog in &plan.programs {
            let info = prog_info(&plan, prog);
            verdicts += 1;
            match verifier::verify(&insns(prog), &info) {
                Ok(v) => {
                    println!(
                        "{file} {} ({}, {} insns): accepted, processed {} insns, {} states, {} pruned",
                        prog.name,
                        prog.section,
                        prog.insns.len(),
                        v.processed,
                        v.states,
                        v.pruned
                    );
                    if unsafe_object(file) {
                        refused.push(format!("{file} {}: an unsafe program was accepted", prog.name));
                    }
                }
                Err(e) if unsafe_object(file) => println!("{file} {}: refused as it must be: {e}", prog.name),
                Err(e) => {
                    println!(
                        "{file} {} ({}): REFUSED: {e}\n{}",
                        prog.name, prog.section, e.log
                    );
                    refused.push(format!("{file} {}: {e}", prog.name));
                }
            }
        }
    }
    (verdicts, refused)
}

#[test]
fn every_program_of_bpf_progs_is_accepted() {
    let (verdicts, refused) = verify_all(
        common::objects()
            .iter()
            .map(|(f, b)| (f.as_str(), b.as_slice())),
    );
    assert!(verdicts >= 16, "{verdicts} programs");
    assert!(
        refused.is_empty(),
        "safe programs refused:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_unsafe_object_is_refused_for_its_missing_null_check() {
    let plan = LoadPlan::parse("bad_null_check.bpf.o", common::object("bad_null_check.bpf.o")).unwrap();
    let prog = plan.program("no_null_check").unwrap();
    let e = verifier::verify(&insns(prog), &prog_info(&plan, prog)).unwrap_err();
    // r1 = *(u64 *)(r0 +0) right after the call, at instruction 8
    assert_eq!((e.insn, e.reason.as_str()), (8, "R0 invalid mem access 'map_value_or_null'"), "{}", e.log);
    assert!(e.log.contains("8: (79) r1 = *(u64 *)(r0 +0)"), "{}", e.log);
}

#[test]
fn and_with_32_bit_jumps_and_alu() {
    // The same sources built with -mcpu=v3: clang uses JMP32 and 32-bit ALU instructions.
    let mut objects = Vec::new();
    for file in common::objects().keys() {
        let stem = file.trim_end_matches(".o");
        let out = common::out_dir().join(format!("{stem}.v3.o"));
        let status = std::process::Command::new(common::clang())
            .args(common::CLANG_FLAGS)
            .arg("-mcpu=v3")
            .arg("-I")
            .arg(common::progs_dir())
            .args(["-idirafter", "/usr/include", "-c"])
            .arg(common::progs_dir().join(format!("{stem}.c")))
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{stem}");
        objects.push((file.clone(), std::fs::read(&out).unwrap()));
    }
    let uses_jmp32 = objects.iter().any(|(file, bytes)| {
        let plan = LoadPlan::parse(file, bytes).unwrap();
        plan.programs
            .iter()
            .flat_map(|p| p.insns.iter())
            .any(|w| *w as u8 & 0x07 == 0x06) // BPF_JMP32
    });
    assert!(uses_jmp32, "-mcpu=v3 code has 32-bit jumps");
    let (verdicts, refused) = verify_all(objects.iter().map(|(f, b)| (f.as_str(), b.as_slice())));
    assert!(verdicts >= 16, "{verdicts} programs");
    assert!(
        refused.is_empty(),
        "safe programs refused:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_context_bounds_are_those_of_the_attach_kind() {
    // fexit's test4 reads the return value after eight arguments (ctx[8]): in bounds for fexit,
    // out of them for the same code verified as fentry.
    let plan = LoadPlan::parse("fexit_test.bpf.o", common::object("fexit_test.bpf.o")).unwrap();
    let prog = plan.program("test4").unwrap();
    let mut info = prog_info(&plan, prog);
    assert!(verifier::verify(&insns(prog), &info).is_ok());
    info.ctx_size = 8 * MAX_ARGS;
    let e = verifier::verify(&insns(prog), &info).unwrap_err();
    assert!(e.reason.contains("invalid access to ctx"), "{e}");
}
