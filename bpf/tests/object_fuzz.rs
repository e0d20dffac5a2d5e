//! The object parser on truncated and bit-flipped objects: errors, never a panic.

mod common;

use bpf::object::LoadPlan;
use object::{Object as _, ObjectSection as _};
use std::panic;

use bpf::rng::Rng;

/// Byte ranges worth mutating: the ELF header, the section headers and every section but the
/// DWARF ones (which nothing reads).
fn interesting(bytes: &[u8]) -> Vec<(usize, usize)> {
    let elf = object::File::parse(bytes).unwrap();
    let mut ranges = vec![(0, 64)];
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(bytes[0x3c..0x3e].try_into().unwrap()) as usize;
    ranges.push((shoff, shoff + shnum * 64));
    for s in elf.sections() {
        let name = s.name().unwrap_or("");
        if name.starts_with(".debug") || name.starts_with(".rel.debug") {
            continue;
        }
        if let Some((off, size)) = s.file_range()
            && size > 0
        {
            ranges.push((off as usize, (off + size) as usize));
        }
    }
    ranges
}

thread_local! {
    static LOCATION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn try_parse(name: &str, bytes: &[u8]) -> Result<(), String> {
    match panic::catch_unwind(|| LoadPlan::parse(name, bytes)) {
        Ok(_) => Ok(()),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()),
    }
}

#[test]
fn truncated_and_bit_flipped_objects_give_errors() {
    let rounds: usize = std::env::var("BPF_OBJECT_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LOCATION.with(|l| *l.borrow_mut() = at);
    }));
    let mut panics = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 2];
    for (name, bytes) in common::objects() {
        LoadPlan::parse(name, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        // every truncation in the headers, then a stride through the rest
        let lengths = (0..bytes.len().min(256)).chain((256..bytes.len()).step_by(13));
        for len in lengths {
            if let Err(p) = try_parse(name, &bytes[..len]) {
                let at = LOCATION.with(|l| l.borrow().clone());
                panics.push(format!("{name} truncated to {len}: {p} at {at}"));
            }
        }
        let ranges = interesting(bytes);
        for round in 0..rounds {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.index(4) {
                let (start, end) = ranges[rng.index(ranges.len())];
                let at = start + rng.index(end - start);
                if round % 3 == 0 {
                    m[at] = rng.next() as u8; // a random byte
                } else if round % 3 == 1 && (at & !3) + 4 <= end {
                    // an aligned word (sizes, offsets, indices) set to a boundary value
                    const WORDS: [u32; 8] = [
                        0,
                        1,
                        8,
                        0x7fff_ffff,
                        0x8000_0000,
                        0xffff_ffff,
                        0xffff,
                        0x1000,
                    ];
                    let w = at & !3;
                    m[w..w + 4].copy_from_slice(&WORDS[rng.index(WORDS.len())].to_le_bytes());
                } else {
                    m[at] ^= 1 << rng.index(8); // one bit
                }
            }
            match panic::catch_unwind(|| LoadPlan::parse(name, &m)) {
                Ok(r) => outcomes[r.is_ok() as usize] += 1,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let path = common::out_dir().join(format!("panic-{name}-{round}"));
                    std::fs::write(&path, &m).unwrap();
                    let at = LOCATION.with(|l| l.borrow().clone());
                    panics.push(format!(
                        "{name} mutation {round} ({}): {msg} at {at}",
                        path.display()
                    ));
                }
            }
        }
    }
    panic::set_hook(hook);
    println!(
        "mutated objects: {} refused, {} accepted",
        outcomes[0], outcomes[1]
    );
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
}
