//! The load plans of the objects clang builds from bpf/progs/*.bpf.c: programs, maps, globals,
//! license, and the relocations and BPF-to-BPF calls checked against the ELF file itself (read
//! here with the `object` crate's high-level API, independently of the loader's own reading).

mod common;

use std::collections::BTreeMap;

use bpf::object::{
    BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE, CALL, Insn, LD_IMM64, LoadPlan, MapOrigin, MapSpec, ObjectError,
    ProgKind, map_type,
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SymbolKind};

fn plan(file: &str) -> LoadPlan {
    LoadPlan::parse(file, common::object(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Programs as (name, kind, target, offset).
fn programs(p: &LoadPlan) -> Vec<(&str, ProgKind, Option<&str>, u64)> {
    p.programs
        .iter()
        .map(|p| (p.name.as_str(), p.kind, p.target.as_deref(), p.offset))
        .collect()
}

fn u64_at(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap())
}

#[test]
fn every_object_parses_and_checks_against_its_elf() {
    for (file, bytes) in common::objects() {
        let p = plan(file);
        assert!(!p.programs.is_empty(), "{file}");
        assert_eq!(p.name, file.split('.').next().unwrap());
        assert!(p.gpl_compatible(), "{file}: {}", p.license);
        check_against_elf(file, bytes, &p);
    }
}

#[test]
fn fentry_test() {
    let p = plan("fentry_test.bpf.o");
    assert_eq!(p.license, "GPL");
    assert_eq!(
        programs(&p),
        [
            ("test1", ProgKind::Fentry, Some("bpf_fentry_test1"), 0),
            ("test2", ProgKind::Fentry, Some("bpf_fentry_test2"), 0),
            ("test3", ProgKind::Fentry, Some("bpf_fentry_test3"), 0),
            ("test4", ProgKind::Fentry, Some("bpf_fentry_test4"), 0),
        ]
    );
    assert_eq!(p.programs[0].section, "fentry/bpf_fentry_test1");
    // one global-data map: .bss, named as libbpf names it
    assert_eq!(
        p.maps,
        [MapSpec {
            name: "fentry_t.bss".into(),
            map_type: map_type::ARRAY,
            key_size: 4,
            value_size: 32,
            max_entries: 1,
            flags: BPF_F_MMAPABLE,
            origin: MapOrigin::Global {
                section: ".bss".into()
            },
            initial: vec![0; 32],
        }]
    );
    for (n, prog) in p.programs.iter().enumerate() {
        let global = p.global(&format!("test{}_result", n + 1)).unwrap();
        assert_eq!(
            (global.map, global.offset, global.size),
            (0, 8 * n as u32, 8)
        );
        // each program stores its verdict through one ld_imm64 of that global's address
        let refs = prog.map_refs();
        assert_eq!(refs.len(), 1, "{}", prog.name);
        assert_eq!(
            (refs[0].map, refs[0].value_offset),
            (0, Some(global.offset))
        );
        let insn = Insn::decode(prog.insns[refs[0].insn]);
        assert_eq!(
            (insn.code, insn.src, insn.imm),
            (LD_IMM64, BPF_PSEUDO_MAP_VALUE, 0)
        );
        assert_eq!(
            Insn::decode(prog.insns[refs[0].insn + 1]).imm as u32,
            global.offset
        );
        assert_eq!(prog.own_len, prog.insns.len(), "no BPF-to-BPF call");
    }
}

#[test]
fn fexit_test() {
    let p = plan("fexit_test.bpf.o");
    assert_eq!(
        programs(&p),
        [
            ("test1", ProgKind::Fexit, Some("bpf_fentry_test1"), 0),
            ("test2", ProgKind::Fexit, Some("bpf_fentry_test2"), 0),
            ("test4", ProgKind::Fexit, Some("bpf_fentry_test4"), 0),
        ]
    );
    // `__s64 last_ret = -1;` is initialised, in .data (the maps follow the sections' order in
    // the file, which is clang's choice: check_against_elf checks it)
    let mut names: Vec<&str> = p.maps.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["fexit_te.bss", "fexit_te.data"]);
    assert_eq!(p.global_initial("last_ret").unwrap(), (-1i64).to_le_bytes());
    assert_eq!(p.global_initial("test1_result").unwrap(), [0; 8]);
    // test4 reads the return value: the ninth context word, after eight arguments
    let test4 = p.program("test4").unwrap();
    let reads_ctx_64 = test4.insns.iter().map(|w| Insn::decode(*w)).any(|i| {
        i.code == 0x79 && i.src == 1 && i.off == 64 // r = *(u64 *)(r1 + 64)
    });
    assert!(reads_ctx_64, "fexit test4 reads ctx[8]");
}

#[test]
fn modify_return() {
    let p = plan("modify_return.bpf.o");
    let target = Some("bpf_modify_return_test");
    assert_eq!(
        programs(&p),
        [
            ("fentry_test", ProgKind::Fentry, target, 0),
            ("fmod_ret_test", ProgKind::FmodRet, target, 0),
            ("fexit_test", ProgKind::Fexit, target, 0),
        ]
    );
    assert_eq!(
        p.program("fmod_ret_test").unwrap().section,
        "fmod_ret/bpf_modify_return_test"
    );
    // fmod_ret returns input_retval: it loads that global's address
    let input = p.global("input_retval").unwrap();
    let refs = p.program("fmod_ret_test").unwrap().map_refs();
    assert!(
        refs.iter()
            .any(|r| r.map == input.map && r.value_offset == Some(input.offset))
    );
}

#[test]
fn kprobe_test() {
    let p = plan("kprobe_test.bpf.o");
    assert_eq!(
        programs(&p),
        [
            (
                "handle_kprobe",
                ProgKind::Kprobe,
                Some("bpf_fentry_test4"),
                0
            ),
            (
                "handle_kretprobe",
                ProgKind::Kretprobe,
                Some("bpf_fentry_test4"),
                0
            ),
            (
                "handle_kprobe_offset",
                ProgKind::Kprobe,
                Some("bpf_fentry_test1"),
                8
            ),
        ]
    );
    // lt_tracing.h's pt_regs: the eight arguments are regs[4..11], the address is era (after
    // 32 GPRs and orig_a0: byte 264); the kretprobe's return value is regs[4]
    let ctx_reads = |name: &str| -> Vec<i16> {
        let prog = p.program(name).unwrap();
        let mut offs: Vec<i16> = prog
            .insns
            .iter()
            .map(|w| Insn::decode(*w))
            .filter(|i| i.code == 0x79 && i.src == 1)
            .map(|i| i.off)
            .collect();
        offs.sort();
        offs
    };
    assert_eq!(
        ctx_reads("handle_kprobe"),
        [32, 40, 48, 56, 64, 72, 80, 88, 264]
    );
    assert_eq!(ctx_reads("handle_kretprobe"), [32]);
}

#[test]
fn maps_test() {
    let p = plan("maps_test.bpf.o");
    let btf = |name: &str, t, key, value, max, flags| MapSpec {
        name: name.into(),
        map_type: t,
        key_size: key,
        value_size: value,
        max_entries: max,
        flags,
        origin: MapOrigin::Btf,
        initial: vec![],
    };
    assert_eq!(
        p.maps,
        [
            btf(
                "pairs",
                map_type::HASH,
                4,
                16,
                64,
                1 /* BPF_F_NO_PREALLOC */
            ),
            btf("counters", map_type::ARRAY, 4, 8, 8, 0),
            btf("percpu_calls", map_type::PERCPU_ARRAY, 4, 8, 1, 0),
            btf("events", map_type::RINGBUF, 0, 0, 4096, 0),
            MapSpec {
                name: "maps_tes.bss".into(),
                map_type: map_type::ARRAY,
                key_size: 4,
                value_size: 8,
                max_entries: 1,
                flags: BPF_F_MMAPABLE,
                origin: MapOrigin::Global {
                    section: ".bss".into()
                },
                initial: vec![0; 8],
            },
        ]
    );
    // the program refers to the maps in source order: lookup + update of pairs, counters,
    // percpu_calls, the ring buffer, then lost_events in .bss
    let prog = p.program("count_calls").unwrap();
    let refs: Vec<(usize, Option<u32>)> = prog
        .map_refs()
        .iter()
        .map(|r| (r.map, r.value_offset))
        .collect();
    assert_eq!(
        refs,
        [
            (0, None),
            (0, None),
            (1, None),
            (2, None),
            (3, None),
            (4, Some(0))
        ]
    );
    for r in prog.map_refs().iter().filter(|r| r.value_offset.is_none()) {
        let insn = Insn::decode(prog.insns[r.insn]);
        assert_eq!(
            (insn.code, insn.src, insn.dst),
            (LD_IMM64, BPF_PSEUDO_MAP_FD, 1),
            "map in r1"
        );
        assert_eq!(Insn::decode(prog.insns[r.insn + 1]).imm, 0);
    }
    assert_eq!(p.map("events").map(|(i, _)| i), Some(3));
}

#[test]
fn subprog_test_calls_and_globals() {
    let p = plan("subprog_test.bpf.o");
    assert_eq!(p.license, "Dual MIT/GPL");
    assert!(p.gpl_compatible());
    assert_eq!(
        programs(&p),
        [
            ("entry_scale", ProgKind::Fentry, Some("bpf_fentry_test1"), 0),
            ("exit_scale", ProgKind::Fexit, Some("bpf_fentry_test1"), 0),
        ]
    );
    // global data: .rodata, .data, .bss in section order, named as libbpf names them
    let maps: Vec<(&str, u32, u32)> = p
        .maps
        .iter()
        .map(|m| (m.name.as_str(), m.value_size, m.flags))
        .collect();
    assert_eq!(
        maps,
        [
            ("subprog_.rodata", 40, BPF_F_RDONLY_PROG | BPF_F_MMAPABLE),
            ("subprog_.data", 12, BPF_F_MMAPABLE),
            ("subprog_.bss", 16, BPF_F_MMAPABLE),
        ]
    );
    assert_eq!(u64_at(p.global_initial("factor").unwrap()), 3);
    assert_eq!(u64_at(p.global_initial("limit").unwrap()), 1000);
    assert_eq!(u64_at(p.global_initial("calls").unwrap()), 7);
    assert_eq!(
        p.global_initial("offset_init").unwrap(),
        (-5i32).to_le_bytes()
    );
    assert_eq!(p.global_initial("last_result").unwrap(), [0; 8]);
    assert_eq!(p.global("calls").map(|g| (g.map, g.offset)), Some((1, 0)));
    assert_eq!(
        p.global("exit_result").map(|g| (g.map, g.offset)),
        Some((2, 8))
    );
    // bpf_printk's format string is .rodata too
    assert!(
        p.maps[0]
            .initial
            .windows(23)
            .any(|w| w == b"entry_scale: %d -> %llu")
    );

    // Each program gets its own copy of scale and clamp after its code; every call lands on the
    // first instruction of a copy (check_against_elf compares the copies with .text).
    for prog in &p.programs {
        assert!(
            prog.insns.len() > prog.own_len,
            "{}: callees appended",
            prog.name
        );
        let calls: Vec<usize> = call_targets(&prog.insns);
        assert!(!calls.is_empty());
        assert!(
            calls.iter().all(|t| *t >= prog.own_len),
            "{}: calls go to the appended code",
            prog.name
        );
    }
    // entry_scale calls scale, which calls clamp: two copies, the first called from the program
    let entry = p.program("entry_scale").unwrap();
    let targets = call_targets(&entry.insns);
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0], entry.own_len, "scale right after the program");
    // exit_scale calls scale and clamp itself; scale's call to clamp goes to the same copy
    let exit = p.program("exit_scale").unwrap();
    let mut targets = call_targets(&exit.insns);
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 2, "one copy of each callee");
}

/// Where each BPF-to-BPF call of a linked program lands (in instruction order).
fn call_targets(insns: &[u64]) -> Vec<usize> {
    insns
        .iter()
        .enumerate()
        .map(|(i, w)| (i, Insn::decode(*w)))
        .filter(|(_, insn)| insn.code == CALL && insn.src == BPF_PSEUDO_CALL)
        .map(|(i, insn)| (i as i64 + 1 + insn.imm as i64) as usize)
        .collect()
}

/// The oracle: walks each linked program from its own code through every call, mapping each
/// stretch of the linked program to the function of the ELF file it must be a copy of, and
/// checks every instruction: unchanged, or relocated exactly as the ELF relocation says (map
/// index and value offset of an `ld_imm64`, call distance to the callee's copy).
fn check_against_elf(file: &str, bytes: &[u8], plan: &LoadPlan) {
    let elf = object::File::parse(bytes).unwrap();
    let section_name =
        |i: object::SectionIndex| elf.section_by_index(i).unwrap().name().unwrap().to_owned();
    // functions: (section, address) -> (name, size)
    let mut functions = BTreeMap::new();
    for sym in elf.symbols() {
        if sym.kind() == SymbolKind::Text {
            functions.insert(
                (sym.section_index().unwrap().0, sym.address()),
                (sym.name().unwrap().to_owned(), sym.size()),
            );
        }
    }
    // maps in libbpf's order: BTF maps by their place in .maps, then global data by section
    let mut last_btf = None;
    let mut last_section = None;
    for m in &plan.maps {
        match &m.origin {
            MapOrigin::Btf => {
                assert!(last_section.is_none(), "{file}: BTF maps first");
                let sym = elf
                    .symbols()
                    .find(|s| s.name() == Ok(m.name.as_str()))
                    .unwrap();
                assert!(
                    last_btf < Some(sym.address()),
                    "{file}: {} in .maps order",
                    m.name
                );
                last_btf = Some(sym.address());
            }
            MapOrigin::Global { section } => {
                let index = elf.section_by_name(section).unwrap().index().0;
                assert!(
                    last_section < Some(index),
                    "{file}: {} in section order",
                    m.name
                );
                last_section = Some(index);
                let data = elf.section_by_name(section).unwrap();
                assert_eq!(
                    m.value_size as u64,
                    data.size(),
                    "{file}: {} is its section",
                    m.name
                );
                if let Ok(bytes) = data.data()
                    && !bytes.is_empty()
                {
                    assert_eq!(m.initial, bytes, "{file}: {} starts as its section", m.name);
                }
            }
        }
    }
    for prog in &plan.programs {
        let sec = elf
            .sections()
            .find(|s| s.name().unwrap() == prog.section)
            .unwrap();
        let (&(_, address), _) = functions
            .iter()
            .find(|((s, _), (n, _))| *s == sec.index().0 && *n == prog.name)
            .unwrap();
        // (linked start, section, address) still to check; done ones by (section, address)
        let mut todo = vec![(0usize, sec.index().0, address)];
        let mut placed: BTreeMap<(usize, u64), usize> = BTreeMap::new();
        let mut covered = 0;
        while let Some((start, sec_index, address)) = todo.pop() {
            if let Some(at) = placed.get(&(sec_index, address)) {
                assert_eq!(*at, start, "{file} {}: one copy per callee", prog.name);
                continue;
            }
            placed.insert((sec_index, address), start);
            let section = elf
                .section_by_index(object::SectionIndex(sec_index))
                .unwrap();
            let code = section.data().unwrap();
            let (fname, size) = functions[&(sec_index, address)].clone();
            let n = size as usize / 8;
            covered += n;
            let relocs: BTreeMap<u64, object::Relocation> = section.relocations().collect();
            let mut k = 0;
            while k < n {
                let at = address + k as u64 * 8;
                let orig = Insn::decode(u64_at(&code[at as usize..at as usize + 8]));
                let linked_index = start + k;
                let linked = Insn::decode(prog.insns[linked_index]);
                let ctx = format!("{file} {} insn {linked_index} ({fname}+{k})", prog.name);
                let rel = relocs.get(&at);
                let is_call = orig.code == CALL && orig.src == BPF_PSEUDO_CALL;
                if is_call {
                    // the callee: by relocation (to a function or to .text + imm), or pc-relative
                    let (callee_sec, callee) = match rel {
                        Some(r) => {
                            let RelocationTarget::Symbol(si) = r.target() else {
                                panic!("{ctx}")
                            };
                            let sym = elf.symbol_by_index(si).unwrap();
                            let base = sym.address();
                            let addr = if sym.kind() == SymbolKind::Text {
                                base
                            } else {
                                (base as i64 + (orig.imm as i64 + 1) * 8) as u64
                            };
                            (sym.section_index().unwrap().0, addr)
                        }
                        None => (sec_index, (at as i64 + (orig.imm as i64 + 1) * 8) as u64),
                    };
                    assert!(
                        functions.contains_key(&(callee_sec, callee)),
                        "{ctx}: call to a function start"
                    );
                    let target = (linked_index as i64 + 1 + linked.imm as i64) as usize;
                    assert_eq!(
                        (linked.code, linked.src, linked.dst, linked.off),
                        (CALL, BPF_PSEUDO_CALL, 0, 0),
                        "{ctx}"
                    );
                    todo.push((target, callee_sec, callee));
                    k += 1;
                } else if let Some(r) = rel {
                    assert_eq!(orig.code, LD_IMM64, "{ctx}");
                    let RelocationTarget::Symbol(si) = r.target() else {
                        panic!("{ctx}")
                    };
                    let sym = elf.symbol_by_index(si).unwrap();
                    let target_section = section_name(sym.section_index().unwrap());
                    let next = Insn::decode(prog.insns[linked_index + 1]);
                    if target_section == ".text" {
                        // a function's address (a bpf_loop callback): BPF_PSEUDO_FUNC, imm as
                        // for a call
                        let callee = if sym.kind() == SymbolKind::Text {
                            sym.address()
                        } else {
                            sym.address() + orig.imm as u64
                        };
                        let callee_sec = sym.section_index().unwrap().0;
                        assert!(functions.contains_key(&(callee_sec, callee)), "{ctx}");
                        assert_eq!((linked.src, next.imm), (BPF_PSEUDO_FUNC, 0), "{ctx}");
                        let target = (linked_index as i64 + 1 + linked.imm as i64) as usize;
                        todo.push((target, callee_sec, callee));
                        k += 2;
                        continue;
                    }
                    let (want_map, want_src, want_off) = if target_section == ".maps" {
                        (
                            plan.map(sym.name().unwrap()).unwrap().0,
                            BPF_PSEUDO_MAP_FD,
                            0,
                        )
                    } else {
                        let map = plan
                            .maps
                            .iter()
                            .position(|m| {
                                m.origin
                                    == MapOrigin::Global {
                                        section: target_section.clone(),
                                    }
                            })
                            .unwrap_or_else(|| panic!("{ctx}: no map for {target_section}"));
                        (map, BPF_PSEUDO_MAP_VALUE, orig.imm + sym.address() as i32)
                    };
                    assert_eq!((linked.code, linked.dst), (orig.code, orig.dst), "{ctx}");
                    assert_eq!(
                        (linked.src, linked.imm as usize, next.imm),
                        (want_src, want_map, want_off),
                        "{ctx}: {} in {target_section}",
                        sym.name().unwrap()
                    );
                    k += 2;
                } else {
                    assert_eq!(linked, orig, "{ctx}: unchanged");
                    k += 1;
                }
            }
        }
        assert_eq!(
            covered,
            prog.insns.len(),
            "{file} {}: the program is its code and its callees'",
            prog.name
        );
    }
}

// ---- refusals, each with its reason -------------------------------------------------------

const HEAD: &str =
    "#include \"lt_types.h\"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n";

fn refuse(name: &str, source: &str) -> ObjectError {
    let bytes = common::compile_snippet(name, &format!("{HEAD}{source}"));
    match LoadPlan::parse(&format!("{name}.bpf.o"), &bytes) {
        Ok(p) => panic!("{name}: accepted: {p:?}"),
        Err(e) => {
            println!("{name}: {e}");
            e
        }
    }
}

#[test]
fn no_license() {
    let e = refuse(
        "no_license",
        "SEC(\"fentry/f\") int BPF_PROG(p, int a) { return a; }\n",
    );
    assert_eq!(e, ObjectError::NoLicense);
    assert!(e.to_string().contains("SEC(\"license\")"));
}

#[test]
fn no_program() {
    let e = refuse(
        "no_program",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\nint x = 1;\n",
    );
    assert_eq!(e, ObjectError::NoPrograms);
}

#[test]
fn legacy_maps_section() {
    let e = refuse(
        "legacy_maps",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         struct bpf_map_def { unsigned int type, key_size, value_size, max_entries, map_flags; };\n\
         struct bpf_map_def SEC(\"maps\") m = { 2, 4, 8, 1, 0 };\n\
         SEC(\"kprobe/f\") int p(void *ctx) { __u32 k = 0; return bpf_map_lookup_elem(&m, &k) != 0; }\n",
    );
    assert!(
        matches!(&e, ObjectError::UnsupportedSection { section, .. } if section == "maps"),
        "{e:?}"
    );
}

#[test]
fn unsupported_map_type() {
    let e = refuse(
        "lru_map",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         struct { __uint(type, 9 /* LRU_HASH */); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } lru SEC(\".maps\");\n\
         SEC(\"kprobe/f\") int p(void *ctx) { __u32 k = 0; return bpf_map_lookup_elem(&lru, &k) != 0; }\n",
    );
    assert_eq!(
        e,
        ObjectError::UnsupportedMap {
            name: "lru".into(),
            map_type: 9
        }
    );
}

#[test]
fn core_relocations() {
    let e = refuse(
        "core",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         struct task { int pid; } __attribute__((preserve_access_index));\n\
         SEC(\"kprobe/f\") int p(struct task *t) { return t->pid; }\n",
    );
    assert!(
        matches!(&e, ObjectError::UnsupportedSection { section, reason } if section == ".BTF.ext" && reason.contains("CO-RE")),
        "{e:?}"
    );
}

#[test]
fn extern_kfunc() {
    let e = refuse(
        "kfunc",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         extern int bpf_some_kfunc(int) __ksym;\n\
         SEC(\"kprobe/f\") int p(void *ctx) { return bpf_some_kfunc(1); }\n",
    );
    assert!(
        matches!(&e, ObjectError::UnsupportedRelocation { section, reason, .. } if section == "kprobe/f" && reason.contains("extern `bpf_some_kfunc`")),
        "{e:?}"
    );
}

#[test]
fn kretprobe_with_offset() {
    let e = refuse(
        "kretprobe_offset",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\nSEC(\"kretprobe/f+8\") int p(void *ctx) { return 0; }\n",
    );
    assert!(
        matches!(&e, ObjectError::BadSection { section, .. } if section == "kretprobe/f+8"),
        "{e:?}"
    );
}

#[test]
fn other_sections_are_kept() {
    // a section loongtrace cannot attach: kept as Other
    let bytes = common::compile_snippet(
        "other",
        &format!(
            "{HEAD}char LICENSE[] SEC(\"license\") = \"GPL\";\nSEC(\"my_section\") int p(void *ctx) {{ return 0; }}\n"
        ),
    );
    let p = LoadPlan::parse("other.bpf.o", &bytes).unwrap();
    assert_eq!(programs(&p), [("p", ProgKind::Other, None, 0)]);
    assert_eq!(p.programs[0].section, "my_section");
}

#[test]
fn not_bpf() {
    // the host's object file: ELF, not BPF
    let dir = common::out_dir().join("snippets");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("host.c");
    let out = dir.join("host.o");
    std::fs::write(&src, "int f(void) { return 1; }\n").unwrap();
    let status = std::process::Command::new(common::clang())
        .args(["-c", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let e = LoadPlan::parse("host.o", &std::fs::read(&out).unwrap()).unwrap_err();
    assert!(matches!(e, ObjectError::NotBpf(_)), "{e:?}");
    println!("{e}");
}

#[test]
fn functions_in_two_text_sections() {
    let e = refuse(
        "two_texts",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         static __noinline int a(int x) { return x + 1; }\n\
         __attribute__((section(\".text.other\"))) static __noinline int b(int x) { return x * 2; }\n\
         SEC(\"kprobe/f\") int p(void *ctx) { return a((long)ctx) + b((long)ctx); }\n",
    );
    assert!(
        matches!(&e, ObjectError::UnsupportedSection { section, .. } if section == ".text.other"),
        "{e:?}"
    );
}

#[test]
fn callback_function_reference() {
    // bpf_loop's callback: an ld_imm64 of a .text function, linked like a call
    let file = "callback.bpf.o";
    let bytes = common::compile_snippet(
        "callback",
        &format!(
            "{HEAD}char LICENSE[] SEC(\"license\") = \"GPL\";\n\
             __u64 total = 0;\n\
             static int add(__u32 i, void *ctx) {{ total += i; return 0; }}\n\
             SEC(\"fentry/bpf_fentry_test1\") int BPF_PROG(loop, int n) {{ bpf_loop(n, add, 0, 0); return 0; }}\n"
        ),
    );
    let p = LoadPlan::parse(file, &bytes).unwrap();
    let prog = p.program("loop").unwrap();
    let refs: Vec<usize> = prog
        .insns
        .iter()
        .enumerate()
        .map(|(i, w)| (i, Insn::decode(*w)))
        .filter(|(_, insn)| insn.code == LD_IMM64 && insn.src == BPF_PSEUDO_FUNC)
        .map(|(i, insn)| (i as i64 + 1 + insn.imm as i64) as usize)
        .collect();
    assert_eq!(
        refs,
        [prog.own_len],
        "the callback is appended after the program"
    );
    check_against_elf(file, &bytes, &p);
}

// ---- BTF-defined maps: sizes as libbpf's btf__resolve_size, refusals ----------------------

/// The object of a snippet with these map definitions, and a program that uses every map.
fn maps_snippet(name: &str, defs: &str, maps: &[&str]) -> Result<LoadPlan, ObjectError> {
    let uses: String = maps
        .iter()
        .map(|m| format!("  if (bpf_map_lookup_elem(&{m}, &k)) n++;\n"))
        .collect();
    let bytes = common::compile_snippet(
        name,
        &format!(
            "{HEAD}char LICENSE[] SEC(\"license\") = \"GPL\";\n{defs}\n\
             SEC(\"kprobe/f\") int p(void *ctx) {{ __u32 k = 0; int n = 0;\n{uses}  return n; }}\n"
        ),
    );
    LoadPlan::parse(&format!("{name}.bpf.o"), &bytes)
}

#[test]
fn map_key_and_value_sizes() {
    let defs = "\
        typedef __u32 pair_t[2][3];\n\
        struct point { __u16 x; __u64 y; };\n\
        union either { __u8 b; __u32 w[5]; };\n\
        enum colour { RED, GREEN };\n\
        typedef const volatile struct point cpoint;\n\
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 3); __type(key, pair_t); __type(value, cpoint); } nested SEC(\".maps\");\n\
        struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, union either); } unions SEC(\".maps\");\n\
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, enum colour); __type(value, void *); __uint(map_flags, 1); } enums SEC(\".maps\");\n\
        struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __uint(key_size, 4); __uint(value_size, 40); } sized SEC(\".maps\");\n\
        struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u64); __uint(key_size, 8); __type(value, __u8[3][5][7]); __uint(pinning, 0); } both SEC(\".maps\");\n";
    let p = maps_snippet(
        "map_sizes",
        defs,
        &["nested", "unions", "enums", "sized", "both"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, u32, u32, u32, u32, u32)> = p
        .maps
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                m.flags,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // u32[2][3] = 24 bytes; struct point through typedef, const and volatile = 16
            ("nested", map_type::HASH, 24, 16, 3, 0),
            ("unions", map_type::ARRAY, 4, 20, 2, 0),
            ("enums", map_type::HASH, 4, 8, 4, 1),
            ("sized", map_type::PERCPU_ARRAY, 4, 40, 1, 0),
            ("both", map_type::HASH, 8, 105, 1, 0),
        ]
    );
    // every lookup loads its own map
    let refs: Vec<usize> = p.programs[0].map_refs().iter().map(|r| r.map).collect();
    assert_eq!(refs, [0, 1, 2, 3, 4]);
}

#[test]
fn bad_map_definitions() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "conflicting_key",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u64); __uint(key_size, 4); __type(value, __u32); } m SEC(\".maps\");",
            "conflicting key size 8 != 4",
        ),
        (
            "unknown_field",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); __uint(colour, 3); } m SEC(\".maps\");",
            "unknown field `colour`",
        ),
        (
            "no_type",
            "struct { __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); } m SEC(\".maps\");",
            "no map type",
        ),
        (
            "map_in_map",
            "struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); };\n\
             struct { __uint(type, 12 /* ARRAY_OF_MAPS */); __uint(max_entries, 1); __type(key, __u32); __array(values, struct inner); } m SEC(\".maps\");",
            "map-in-map",
        ),
        (
            "key_not_pointer",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __u32 key; __type(value, __u32); } m SEC(\".maps\");",
            "`key` is a TYPEDEF, not __type's pointer",
        ),
        (
            "void_value",
            "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u32); void *value; } m SEC(\".maps\");",
            "the size of `value`",
        ),
    ];
    for (name, def, why) in cases {
        match maps_snippet(name, def, &["m"]) {
            Ok(p) => panic!("{name}: accepted: {:?}", p.maps),
            Err(ObjectError::BadMap { name: map, reason }) => {
                println!("{name}: map `{map}`: {reason}");
                assert_eq!(map, "m", "{name}");
                assert!(reason.contains(why), "{name}: `{reason}` lacks `{why}`");
            }
            Err(e) => panic!("{name}: {e:?}"),
        }
    }
}

// ---- globals from BTF, alignment ----------------------------------------------------------

#[test]
fn globals_are_the_btf_variables_at_their_symbols() {
    // Every global is a DATASEC variable; a global's offset and size are its ELF symbol's; a
    // static's (bpf_printk's format) are BTF's, which clang fills in.
    for (file, bytes) in common::objects() {
        let p = plan(file);
        let elf = object::File::parse(&bytes[..]).unwrap();
        for g in &p.globals {
            let MapOrigin::Global { section } = &p.maps[g.map].origin else {
                panic!("{file}: {} not in a global-data map", g.name)
            };
            let sym = elf
                .symbols()
                .find(|s| s.name() == Ok(g.name.as_str()))
                .unwrap_or_else(|| panic!("{file}: no symbol {}", g.name));
            let sym_section = elf.section_by_index(sym.section_index().unwrap()).unwrap();
            assert_eq!(sym_section.name().unwrap(), section, "{file} {}", g.name);
            assert_eq!(
                (g.offset as u64, g.size as u64),
                (sym.address(), sym.size()),
                "{file} {}",
                g.name
            );
        }
        // and every data symbol of a global-data section is a global
        for sym in elf.symbols().filter(|s| s.kind() == SymbolKind::Data) {
            let Some(section) = sym.section_index() else {
                continue;
            };
            let section = elf
                .section_by_index(section)
                .unwrap()
                .name()
                .unwrap()
                .to_owned();
            if [".data", ".rodata", ".bss"].contains(&section.as_str()) {
                assert!(
                    p.global(sym.name().unwrap()).is_some(),
                    "{file}: {} missing",
                    sym.name().unwrap()
                );
            }
        }
    }
    let p = plan("subprog_test.bpf.o");
    let fmt = p.global("____entry_scale.____fmt").unwrap();
    assert_eq!((fmt.map, fmt.offset, fmt.size), (0, 16, 24));
    assert_eq!(
        p.global_initial("____entry_scale.____fmt").unwrap(),
        b"entry_scale: %d -> %llu\0"
    );
}

#[test]
fn objects_are_read_wherever_they_sit() {
    // The object crate is built with `unaligned`: an object at an odd address parses the same.
    for (file, bytes) in common::objects() {
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(
            LoadPlan::parse(file, &shifted[1..]).unwrap(),
            plan(file),
            "{file}"
        );
    }
}

#[test]
fn no_btf_means_no_btf_maps() {
    // Without -g there is no .BTF: global data still works, BTF-defined maps cannot be read.
    let dir = common::out_dir().join("snippets");
    std::fs::create_dir_all(&dir).unwrap();
    let build = |name: &str, src: &str| -> Vec<u8> {
        let c = dir.join(format!("{name}.bpf.c"));
        let o = dir.join(format!("{name}.bpf.o"));
        std::fs::write(&c, format!("{HEAD}{src}")).unwrap();
        let status = std::process::Command::new(common::clang())
            .args(["-O2", "-target", "bpf", "-I"])
            .arg(common::progs_dir())
            .args(["-idirafter", "/usr/include", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(&o).unwrap()
    };
    let globals = build(
        "no_btf_globals",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n__u64 hits = 0;\n\
         SEC(\"kprobe/f\") int p(void *ctx) { hits++; return 0; }\n",
    );
    let p = LoadPlan::parse("no_btf_globals.bpf.o", &globals).unwrap();
    assert_eq!(p.maps.len(), 1);
    assert_eq!(p.maps[0].name, "no_btf_g.bss");
    assert!(p.globals.is_empty(), "globals are read from BTF");
    let maps = build(
        "no_btf_maps",
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n\
         struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); } m SEC(\".maps\");\n\
         SEC(\"kprobe/f\") int p(void *ctx) { __u32 k = 0; return bpf_map_lookup_elem(&m, &k) != 0; }\n",
    );
    let e = LoadPlan::parse("no_btf_maps.bpf.o", &maps).unwrap_err();
    assert!(
        matches!(&e, ObjectError::BadSection { section, reason } if section == ".maps" && reason.contains("-g")),
        "{e:?}"
    );
}

#[test]
fn transitive_calls_are_linked_once_each_depth_first() {
    // p calls a and c; a calls b and c; b calls c. libbpf appends a (first call met), then
    // a's callees b, then b's c, and the later calls to c reuse that copy.
    let file = "chain.bpf.o";
    let bytes = common::compile_snippet(
        "chain",
        &format!(
            "{HEAD}char LICENSE[] SEC(\"license\") = \"GPL\";\n\
             static __noinline int c(int x) {{ return x + 3; }}\n\
             static __noinline int b(int x) {{ return c(x) * 2; }}\n\
             static __noinline int a(int x) {{ return b(x) + c(x); }}\n\
             SEC(\"kprobe/f\") int p(void *ctx) {{ return a((long)ctx) + c(1); }}\n"
        ),
    );
    let p = LoadPlan::parse(file, &bytes).unwrap();
    check_against_elf(file, &bytes, &p);
    let prog = &p.programs[0];
    let elf = object::File::parse(&bytes[..]).unwrap();
    let size = |name: &str| {
        elf.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.size() as usize / 8)
            .unwrap()
    };
    let (a, b, c) = (size("a"), size("b"), size("c"));
    assert_eq!(prog.insns.len(), prog.own_len + a + b + c, "one copy each");
    let starts: Vec<usize> = call_targets(&prog.insns);
    let a_at = prog.own_len;
    let b_at = a_at + a;
    let c_at = b_at + b;
    let mut distinct = starts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, [a_at, b_at, c_at], "{starts:?}");
}

#[test]
fn calls_must_land_on_a_function() {
    // subprog_test.bpf.o with one call's imm moved by one instruction: into the middle of a
    // function, refused (libbpf would run the callee's copy from its start).
    let file = "subprog_test.bpf.o";
    let bytes = common::object(file);
    let elf = object::File::parse(bytes).unwrap();
    let call_in = |section: &str| -> usize {
        let s = elf.section_by_name(section).unwrap();
        let (off, _) = s.file_range().unwrap();
        let code = s.data().unwrap();
        let i = (0..code.len() / 8)
            .find(|i| {
                let insn = Insn::decode(u64_at(&code[i * 8..i * 8 + 8]));
                insn.code == CALL && insn.src == BPF_PSEUDO_CALL
            })
            .unwrap();
        off as usize + i * 8 + 4 // the imm field
    };
    let bump = |at: usize| {
        let mut m = bytes.to_vec();
        let imm = i32::from_le_bytes(m[at..at + 4].try_into().unwrap()) + 1;
        m[at..at + 4].copy_from_slice(&imm.to_le_bytes());
        LoadPlan::parse(file, &m).unwrap_err()
    };
    // with a relocation (the program's call of scale)
    let e = bump(call_in("fentry/bpf_fentry_test1"));
    println!("{e}");
    assert!(
        matches!(&e, ObjectError::UnsupportedRelocation { reason, .. } if reason.contains("not the start of a function")),
        "{e:?}"
    );
    // without one (scale's call of clamp, inside .text)
    let e = bump(call_in(".text"));
    println!("{e}");
    assert!(
        matches!(&e, ObjectError::Relocation(m) if m.contains("does not start a function")),
        "{e:?}"
    );
}
