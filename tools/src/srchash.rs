//! A fingerprint of the sources the kernel image is built from, printed by the kernel at boot.
//!
//! The kernel's build script (`kernel/build.rs`, which includes this file) hashes [`INPUTS`] and
//! the kernel prints `# loongtrace: sources <16 hex digits>`; the test harness hashes the tree
//! again and fails the run when the booted kernel was built from other sources. Only std, so the
//! build script can use it.

use std::io;
use std::path::Path;

/// What goes into the image, relative to the workspace root (directories are walked). The build
/// script watches the same paths, so every change here re-runs it.
pub const INPUTS: &[&str] = &["Cargo.toml", ".cargo/config.toml", "rust-toolchain.toml", "linker", "arch", "formats", "bpf/Cargo.toml", "bpf/src", "kernel"];

/// Start of the line the kernel prints at boot.
pub const BOOT_MARKER: &str = "# loongtrace: sources ";

/// Files that count: source, manifests, linker scripts, assembly.
fn counts(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("rs" | "toml" | "ld" | "S" | "s"))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let path = root.join(rel);
    if path.is_dir() {
        for entry in std::fs::read_dir(&path)? {
            collect(root, &rel.join(entry?.file_name()), out)?;
        }
    } else if path.is_file() && counts(&path) {
        out.push(rel.to_string_lossy().replace('\\', "/"));
    }
    Ok(())
}

/// FNV-1a over each counted file's relative path and contents, in path order.
pub fn tree_hash(root: &Path) -> io::Result<u64> {
    let mut files = Vec::new();
    for input in INPUTS {
        collect(root, Path::new(input), &mut files)?;
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0u8]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in &files {
        feed(f.as_bytes());
        feed(&std::fs::read(root.join(f))?);
    }
    Ok(h)
}

/// The fingerprint on a boot line, if it is one.
pub fn from_boot_line(line: &str) -> Option<u64> {
    let at = line.find(BOOT_MARKER)?;
    u64::from_str_radix(line[at + BOOT_MARKER.len()..].trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_source_changes_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("loongtrace-srchash-{}", std::process::id()));
        let src = dir.join("kernel/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("lib.rs"), "fn a() {}\n").unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\n").unwrap();
        let first = tree_hash(&dir).unwrap();
        assert_eq!(tree_hash(&dir).unwrap(), first, "stable");
        std::fs::write(src.join("notes.txt"), "not a source").unwrap();
        assert_eq!(tree_hash(&dir).unwrap(), first, "other files do not count");
        std::fs::write(src.join("lib.rs"), "fn b() {}\n").unwrap();
        let changed = tree_hash(&dir).unwrap();
        assert_ne!(changed, first);
        std::fs::rename(src.join("lib.rs"), src.join("main.rs")).unwrap();
        assert_ne!(tree_hash(&dir).unwrap(), changed, "a renamed file changes it too");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn boot_line() {
        assert_eq!(from_boot_line("# loongtrace: sources 00000000deadbeef"), Some(0xdead_beef));
        assert_eq!(from_boot_line("x # loongtrace: sources 12 "), Some(0x12));
        assert_eq!(from_boot_line("# loongtrace: sources zz"), None);
        assert_eq!(from_boot_line("KTAP version 1"), None);
    }
}
