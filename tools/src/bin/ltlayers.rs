//! `ltlayers [ROOT]`: checks the kernel's one-way layers (docs/architecture.md) and prints every
//! upward import, unplaced file and stale table entry, then the import circles between modules.
//! Exits 1 when the tree breaks the table.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let report = match loongtrace_tools::layers::check_workspace(&root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ltlayers: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    let circles = report.circles();
    println!("{} import circles between modules", circles.len());
    for c in &circles {
        println!("  circle of {}: {}", c.len(), c.join(", "));
    }
    println!(
        "{} upward imports, {} unplaced files, {} stale table entries",
        report.violations.len(),
        report.unplaced.len(),
        report.stale.len()
    );
    if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
