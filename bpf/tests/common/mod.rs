//! Builds the BPF programs of bpf/progs (and test snippets) with clang, as `make bpf-progs`
//! does, into the cargo target directory. A missing clang fails the tests: `make setup`
//! installs it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The flags of `make bpf-progs`.
pub const CLANG_FLAGS: &[&str] = &["-O2", "-g", "-target", "bpf", "-Wall"];

pub fn progs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("progs")
}

pub fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bpf-progs");
    std::fs::create_dir_all(&dir).expect("create the output directory of the BPF objects");
    dir
}

pub fn clang() -> String {
    std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned())
}

/// Compiles one C file into `out` with the project's flags (and bpf/progs on the include path).
pub fn compile(src: &Path, out: &Path) -> Result<(), String> {
    let clang = clang();
    let output = Command::new(&clang)
        .args(CLANG_FLAGS)
        .arg("-I")
        .arg(progs_dir())
        // libbpf's headers (<bpf/bpf_helpers.h>, Debian's libbpf-dev)
        .args(["-idirafter", "/usr/include"])
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{clang}` ({e}): the tests build the BPF programs of bpf/progs with \
                 clang's BPF target; install clang, llvm and libbpf-dev (`make setup`)"
            )
        });
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{clang} {} -c {}` failed:\n{}",
            CLANG_FLAGS.join(" "),
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Every bpf/progs/*.bpf.c, compiled once per test binary: file name (`fentry_test.bpf.o`) to
/// the object's bytes.
pub fn objects() -> &'static BTreeMap<String, Vec<u8>> {
    static OBJECTS: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    OBJECTS.get_or_init(|| {
        let mut objects = BTreeMap::new();
        let mut sources: Vec<PathBuf> = std::fs::read_dir(progs_dir())
            .expect("read bpf/progs")
            .map(|e| e.expect("read bpf/progs").path())
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
            .collect();
        sources.sort();
        assert!(!sources.is_empty(), "no bpf/progs/*.bpf.c");
        for src in sources {
            let stem = src
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".c")
                .to_owned();
            let name = format!("{stem}.o");
            let out = out_dir().join(&name);
            compile(&src, &out).unwrap_or_else(|e| panic!("{e}"));
            objects.insert(
                name,
                std::fs::read(&out).expect("read the object clang wrote"),
            );
        }
        objects
    })
}

pub fn object(name: &str) -> &'static [u8] {
    objects()
        .get(name)
        .unwrap_or_else(|| panic!("no bpf/progs source for {name}"))
}

/// Compiles a C snippet (a test's own small program) and returns the object's bytes.
pub fn compile_snippet(name: &str, source: &str) -> Vec<u8> {
    let dir = out_dir().join("snippets");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.bpf.c"));
    let out = dir.join(format!("{name}.bpf.o"));
    std::fs::write(&src, source).unwrap();
    compile(&src, &out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(&out).unwrap()
}
