//! `cargo test -p loongtrace-tests`: boots the kernel once and reports each KTAP case as a test.

fn main() {
    let code = loongtrace_tests::main(std::env::args().skip(1));
    std::process::exit(code);
}
