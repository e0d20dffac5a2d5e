//! `cargo test -p loongtrace-tests --test kernel`: boots the kernel and reports each KTAP case as a
//! test (see `src/lib.rs`).

fn main() -> std::process::ExitCode {
    loongtrace_tests::main()
}
