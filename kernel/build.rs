//! Passes the linker script to the kernel binary (only when building for LoongArch).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let script = std::path::Path::new(&manifest).join("../linker/kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("loongarch64") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--gc-sections");
    }
}
