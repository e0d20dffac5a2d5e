//! Passes the linker script to the kernel binary (only when building for LoongArch), and
//! fingerprints the sources of the image for the boot log (`# loongtrace: sources ...`), so the
//! test harness can check that the kernel it boots was built from the tree it tests.

#[path = "../tools/src/srchash.rs"]
#[allow(dead_code)] // the reading side is for the host tools
mod srchash;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest.join("../linker/kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("loongarch64") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--gc-sections");
    }
    // The scale build (`make bench SITES=n`, feature `scale`): n generated traceable functions,
    // and a `.ksyms` region big enough for their names.
    println!("cargo:rerun-if-env-changed=LOONGTRACE_SITES");
    if std::env::var_os("CARGO_FEATURE_SCALE").is_some() {
        let n: usize = match std::env::var("LOONGTRACE_SITES") {
            Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("LOONGTRACE_SITES={v:?} is not a number of functions")),
            Err(_) => 20_000,
        };
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("scale_fns.rs");
        std::fs::write(&out, scale_functions(n)).expect("cannot write the generated functions");
        if target.starts_with("loongarch64") {
            // 16 bytes of table entry and well under 64 bytes of name per function.
            let ksyms = (0x10_0000 + n * 80).next_multiple_of(0x1_0000);
            println!("cargo:rustc-link-arg-bins=--defsym=LOONGTRACE_KSYMS_SIZE={ksyms:#x}");
        }
    }
    let workspace = manifest.parent().expect("kernel/ is inside the workspace");
    for input in srchash::INPUTS {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    let hash = srchash::tree_hash(workspace).expect("cannot read the kernel sources");
    println!("cargo:rustc-env=LOONGTRACE_SOURCES={hash:016x}");
}

/// The source of `n` small distinct traceable functions and a table that keeps them linked.
fn scale_functions(n: usize) -> String {
    use std::fmt::Write as _;
    let mut s = format!("/// The generated functions ({n}).\npub const COUNT: usize = {n};\n\n");
    for i in 0..n {
        let _ = writeln!(s, "#[inline(never)]\npub fn generated_fn_{i:05}(x: u64) -> u64 {{\n    x.wrapping_mul({}) ^ {i}\n}}", 2 * i + 3);
    }
    let _ = writeln!(s, "\n/// Every generated function (referenced by the bench, so the linker keeps them).");
    let _ = writeln!(s, "pub static FUNCTIONS: [fn(u64) -> u64; COUNT] = [");
    for i in 0..n {
        let _ = writeln!(s, "    generated_fn_{i:05},");
    }
    s.push_str("];\n");
    s
}
