//! `ltsym <in.elf> <out.elf>`: writes the kernel's symbol table into its reserved `.ksyms` region.

use std::path::Path;
use std::process::ExitCode;

use loongtrace_tools::symtab;

const USAGE: &str = "usage: ltsym <in.elf> <out.elf>\n\
    Reads the ELF symbol table of the linked kernel and writes the `.ksyms` table (docs/formats.md)\n\
    into a copy of the image; no address or file size changes. <out.elf> may equal <in.elf>.";

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let [input, output] = args.as_slice() else {
        eprintln!("ltsym: error: expected two arguments\n{USAGE}");
        return ExitCode::from(2);
    };
    match run(Path::new(input), Path::new(output)) {
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
