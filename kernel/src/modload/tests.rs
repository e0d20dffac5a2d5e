//! Host tests of the module linker on real module objects (`testdata/`, built from `modules/` by
//! `make modules-testdata`), including mutation fuzzing: no input may make it panic.

use super::reloc::*;
use super::*;

const SAMPLE_MOD: &[u8] = include_bytes!("testdata/sample_mod.o");
const SAMPLE_FAR: &[u8] = include_bytes!("testdata/sample_far.o");
pub(super) const BASE: u64 = 0x9000_0000_0c00_0000;
pub(super) const KERNEL: u64 = 0x9000_0000_0020_0000;
pub(super) const MAX: u64 = 64 << 20;
pub(super) const STUBS: [u64; 3] = [KERNEL + 0x1000, KERNEL + 0x1100, KERNEL + 0x1200];

pub(super) fn exports(name: &str) -> Option<u64> {
    match name {
        "lt_log" => Some(KERNEL + 0x10_0000),
        "lt_module_panic" => Some(KERNEL + 0x10_0100),
        "lt_abi_oracle_record" => Some(KERNEL + 0x10_0200),
        "lt_shared_counter" => Some(KERNEL + 0x40_0008),
        _ => None,
    }
}

fn link_obj(bytes: &[u8]) -> Result<(Plan, Vec<u8>, Linked), LoadError> {
    let obj = Object::new(bytes);
    link_to_vec(obj.bytes(), BASE, MAX, &STUBS, &exports)
}

fn word(image: &[u8], off: u64) -> u32 {
    u32::from_le_bytes(image[off as usize..off as usize + 4].try_into().unwrap())
}

fn symbol<'a>(l: &'a Linked, name: &str) -> &'a ModSymbol {
    l.symbols.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no symbol {name}"))
}

#[test]
fn links_sample_mod() {
    let (plan, image, l) = link_obj(SAMPLE_MOD).unwrap();
    assert_eq!(plan.name, "sample_mod");
    let names: Vec<&str> = l.sites.iter().map(|&o| l.symbols.iter().find(|s| s.offset == o).map_or("?", |s| s.name.as_str())).collect();
    for f in ["sample_mod_add", "sample_mod_step", "sample_mod_work", "sample_mod_oracle", "lt_module_init", "lt_module_exit"] {
        assert!(names.contains(&f), "{f} is a site: {names:?}");
    }
    assert_eq!(l.init, Some(symbol(&l, "lt_module_init").offset));
    assert_eq!(l.exit, Some(symbol(&l, "lt_module_exit").offset));
    for &site in &l.sites {
        assert_eq!(site % 8, 0, "literal aligned");
        for k in [-8i64, -4, 0, 4] {
            assert_eq!(word(&image, (site as i64 + k) as u64), 0x0340_0000, "compiled nops around {site:#x}");
        }
        assert!(site < plan.text.1);
    }
    // The stubs jump to the requested targets.
    for (k, &t) in STUBS.iter().enumerate() {
        let at = plan.stubs.0 + 8 * k as u64;
        assert_eq!(far_jump_target(BASE + at, [word(&image, at), word(&image, at + 4)]), t);
    }
    // sample_mod_oracle calls lt_abi_oracle_record with a pcaddu18i/jirl pair (R_LARCH_CALL36).
    let f = symbol(&l, "sample_mod_oracle");
    let code: Vec<u32> = (0..f.size / 4).map(|i| word(&image, f.offset + 4 * i)).collect();
    let call = code.windows(2).enumerate().find(|(_, w)| w[0] & 0xfe00_0000 == 0x1e00_0000 && w[1] >> 26 == 0x13);
    let (i, w) = call.expect("a pcaddu18i + jirl pair");
    assert_eq!(far_jump_target(BASE + f.offset + 4 * i as u64, [w[0], w[1]]), exports("lt_abi_oracle_record").unwrap());
    assert!(l.reloc_kinds.iter().any(|(k, _)| *k == "R_LARCH_CALL36"));
    assert!(l.reloc_kinds.iter().any(|(k, _)| *k == "R_LARCH_PCALA_HI20"));
}

#[test]
fn links_sample_far_with_got() {
    let (plan, image, l) = link_obj(SAMPLE_FAR).unwrap();
    assert_eq!(plan.name, "sample_far");
    let got = plan.got.0 as usize;
    let entries: Vec<u64> = (0..plan.got.1.len()).map(|k| u64::from_le_bytes(image[got + 8 * k..got + 8 * k + 8].try_into().unwrap())).collect();
    assert!(entries.contains(&exports("lt_shared_counter").unwrap()), "GOT {entries:x?}");
    // The table of function pointers holds absolute addresses of the three functions.
    let table = symbol(&l, "SAMPLE_FAR_OPS");
    for (k, f) in ["sample_far_double", "sample_far_square", "sample_far_negate"].iter().enumerate() {
        let at = (table.offset + 8 * k as u64) as usize;
        assert_eq!(u64::from_le_bytes(image[at..at + 8].try_into().unwrap()), BASE + symbol(&l, f).offset);
    }
    assert!(l.reloc_kinds.iter().any(|(k, _)| *k == "R_LARCH_GOT_PC_HI20"));
}

#[test]
fn relocating_at_another_base_moves_everything() {
    let obj = Object::new(SAMPLE_MOD);
    let (_, a, la) = link_to_vec(obj.bytes(), BASE, MAX, &STUBS, &exports).unwrap();
    let (_, b, lb) = link_to_vec(obj.bytes(), BASE + 0x10_0000, MAX, &STUBS, &exports).unwrap();
    assert_eq!(la.sites, lb.sites);
    assert_ne!(a, b, "PC-relative references to the kernel change with the base");
}

/// Byte offsets of the relocation entries of type `rtype` in a section named `in_section`.
fn find_relas(bytes: &[u8], rtype: u32) -> Vec<usize> {
    let obj = Object::new(bytes);
    let elf = open(obj.bytes()).unwrap();
    let shs = headers(&elf).unwrap();
    let mut out = Vec::new();
    for sh in &shs {
        if sh.get_type() == Ok(ShType::Rela) {
            let (o, n) = (sh.offset() as usize, sh.size() as usize / 24);
            for k in 0..n {
                let at = o + 24 * k;
                if u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) == rtype {
                    out.push(at);
                }
            }
        }
    }
    out
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    assert_eq!(link_obj(b"hello world").unwrap_err(), LoadError::NotElf);
    let mut m = SAMPLE_MOD.to_vec();
    m[18] = 62; // EM_X86_64
    m[19] = 0;
    assert_eq!(link_obj(&m).unwrap_err(), LoadError::WrongMachine(62));
    let mut m = SAMPLE_MOD.to_vec();
    m[16] = 2; // ET_EXEC
    assert_eq!(link_obj(&m).unwrap_err(), LoadError::NotRelocatable(2));
    let mut m = SAMPLE_MOD.to_vec();
    m[4] = 1; // ELFCLASS32
    assert_eq!(link_obj(&m).unwrap_err(), LoadError::WrongClass);
    // Every CALL36 turned into an unknown type, then into B26 (which cannot reach the kernel).
    let calls = find_relas(SAMPLE_MOD, R_LARCH_CALL36);
    assert!(!calls.is_empty());
    let mut m = SAMPLE_MOD.to_vec();
    m[calls[0] + 8..calls[0] + 12].copy_from_slice(&250u32.to_le_bytes());
    assert!(matches!(link_obj(&m).unwrap_err(), LoadError::UnknownRelocation { rtype: 250, .. }));
    let mut m = SAMPLE_MOD.to_vec();
    for &c in &calls {
        m[c + 8..c + 12].copy_from_slice(&R_LARCH_B26.to_le_bytes());
    }
    let e = link_obj(&m).unwrap_err();
    assert!(matches!(e, LoadError::Relocation { error: RelocError::Overflow { rtype: R_LARCH_B26, .. }, .. }), "{e}");
    // An undefined symbol the kernel does not export.
    let obj = Object::new(SAMPLE_MOD);
    let e = link_to_vec(obj.bytes(), BASE, MAX, &STUBS, &|n| if n == "lt_log" { None } else { exports(n) }).unwrap_err();
    assert_eq!(e, LoadError::UndefinedSymbol("lt_log".into()));
    // Too large for the space given.
    let e = link_to_vec(obj.bytes(), BASE, 256, &STUBS, &exports).unwrap_err();
    assert!(matches!(e, LoadError::TooLarge { .. }), "{e}");
    // Truncated at every header boundary.
    let elf = open(obj.bytes()).unwrap();
    let sh_off = elf.header.pt2.sh_offset() as usize;
    let count = elf.header.pt2.sh_count() as usize;
    let mut cuts = vec![0, 3, 4, 16, 24, 52, 63, 64, sh_off, SAMPLE_MOD.len() - 1];
    cuts.extend((1..count).map(|k| sh_off + 64 * k));
    for cut in cuts {
        let e = link_obj(&SAMPLE_MOD[..cut]).unwrap_err();
        assert!(matches!(e, LoadError::NotElf | LoadError::Truncated(_)), "cut at {cut}: {e}");
    }
}

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn mutants(seed_obj: &[u8], rng: &mut Rng, n: usize) -> usize {
    let seed = Object::new(seed_obj);
    let elf = open(seed.bytes()).unwrap();
    let sh_off = elf.header.pt2.sh_offset() as usize;
    let sh_end = sh_off + 64 * elf.header.pt2.sh_count() as usize;
    let mut ok = 0;
    // Every byte of the ELF header and the section header table, set to a few interesting values.
    for at in (0..64).chain(sh_off..sh_end) {
        let values = if at < 64 { &[0u8, 0xff, 0x7f, 0x80, 1, seed_obj[at] ^ 0x10][..] } else { &[0xffu8, seed_obj[at] ^ 0x10, 0x40][..] };
        for &v in values {
            let mut m = seed_obj.to_vec();
            m[at] = v;
            ok += link_obj(&m).is_ok() as usize;
        }
    }
    // Random bytes anywhere, a few at a time.
    for _ in 0..n {
        let mut m = seed_obj.to_vec();
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() % m.len() as u64) as usize;
            m[at] = rng.next() as u8;
        }
        if rng.next() % 16 == 0 {
            m.truncate((rng.next() % m.len() as u64) as usize);
        }
        ok += link_obj(&m).is_ok() as usize;
    }
    ok
}

#[test]
fn fuzz_mutated_objects_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for obj in [SAMPLE_MOD, SAMPLE_FAR] {
        let ok = mutants(obj, &mut rng, 2000);
        // Some mutations hit bytes that do not matter (debug info), so some still link.
        assert!(ok > 0);
    }
}

#[test]
fn fuzz_relocations_never_panic() {
    let mut rng = Rng(42);
    let types: Vec<u32> = (0..130).collect();
    for _ in 0..20000 {
        let len = (rng.next() % 16) as usize;
        let mut bytes = vec![0u8; len];
        bytes.iter_mut().for_each(|b| *b = rng.next() as u8);
        let r = RelocInput {
            rtype: types[(rng.next() % types.len() as u64) as usize],
            offset: rng.next() % 20,
            place: rng.next(),
            value: if rng.next() % 2 == 0 { rng.next() } else { rng.next() % 0x1000_0000 },
            got: rng.next(),
        };
        let before = bytes.clone();
        if apply(&mut bytes, &r).is_err() {
            assert_eq!(bytes, before, "a refused relocation writes nothing ({r:?})");
        }
    }
}
