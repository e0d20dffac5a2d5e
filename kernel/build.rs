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
    let workspace = manifest.parent().expect("kernel/ is inside the workspace");
    for input in srchash::INPUTS {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    let hash = srchash::tree_hash(workspace).expect("cannot read the kernel sources");
    println!("cargo:rustc-env=LOONGTRACE_SOURCES={hash:016x}");
}
