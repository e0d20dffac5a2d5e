//! `ltsym <in.elf> <out.elf>`: writes the kernel's symbol table into its reserved `.ksyms` region.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use loongtrace_tools::symtab;

/// Reads the ELF symbol table of the linked kernel and writes the `.ksyms` table (docs/formats.md)
/// into a copy of the image; no address or file size changes.
#[derive(Parser, Debug)]
#[command(name = "ltsym")]
struct Args {
    /// The linked kernel
    input: std::path::PathBuf,
    /// Where to write the image with its symbol table (may be the input)
    output: std::path::PathBuf,
}

fn run(input: &Path, output: &Path) -> Result<String, String> {
    let elf = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let (patched, stats) = symtab::embed(&elf).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::write(output, &patched)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(format!(
        "ltsym: {} symbols, {} bytes of {} reserved",
        stats.symbols, stats.bytes, stats.reserved
    ))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args.input, &args.output) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ltsym: error: {e}");
            ExitCode::FAILURE
        }
    }
}
