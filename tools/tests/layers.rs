//! The kernel keeps to its floor table (docs/architecture.md): no import points up a floor, every
//! file is placed, every table entry is a file. `target/release/ltlayers` prints the same report.

#[test]
fn kernel_modules_import_only_their_floor_or_below() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let report = loongtrace_tools::layers::check_workspace(&root).expect("reading the table and the sources");
    assert!(report.ok(), "the kernel breaks its layers (docs/architecture.md):\n{report}");
}
