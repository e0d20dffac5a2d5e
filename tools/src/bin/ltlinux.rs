//! `ltlinux`: the host side of `make bench-linux` (see `tools/bench-linux/bench-linux.sh`):
//! unpacks Debian's zboot `vmlinuz`, builds the initramfs, turns the guest's console into
//! `bench/linux.json`, and writes the side-by-side table into README.md and
//! docs/performance.md. `ltlinux --help` lists the commands.

use clap::{Parser, Subcommand};
use loongtrace_tools::{bench, linux};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "ltlinux", about = "Host side of `make bench-linux`: Linux's tracing costs on the same QEMU")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Writes the raw kernel image inside an EFI zboot image (zstd payload)
    Zboot { image: PathBuf, out: PathBuf },
    /// Builds the initramfs: busybox, /init and getppid-bench
    Initramfs {
        out: PathBuf,
        #[arg(long)]
        busybox: PathBuf,
        #[arg(long)]
        init: PathBuf,
        #[arg(long)]
        bench: PathBuf,
    },
    /// Turns the guest's console into bench/linux.json
    Parse {
        console: PathBuf,
        #[arg(long, default_value = "bench/linux.json")]
        json: PathBuf,
        /// `qemu-system-loongarch64 --version`'s first line
        #[arg(long, default_value = "")]
        qemu: String,
        /// The kernel's config file
        #[arg(long)]
        config: Option<PathBuf>,
        /// Debian package versions used (repeatable)
        #[arg(long = "package")]
        packages: Vec<String>,
    },
    /// Writes the side-by-side table into the given documents (between their linux-table markers)
    Table {
        #[arg(long, default_value = "bench/results.json")]
        results: PathBuf,
        #[arg(long, default_value = "bench/linux.json")]
        linux: PathBuf,
        docs: Vec<PathBuf>,
    },
}

fn read(p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &PathBuf, data: &[u8]) -> Result<(), String> {
    std::fs::write(p, data).map_err(|e| format!("{}: {e}", p.display()))
}

fn text(p: &PathBuf) -> Result<String, String> {
    String::from_utf8(read(p)?).map_err(|_| format!("{}: not UTF-8", p.display()))
}

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Zboot { image, out } => {
            let img = read(&image)?;
            let (off, size, comp) = linux::zboot_payload(&img)?;
            if comp != "zstd" {
                return Err(format!("{}: payload compressed with {comp}; only zstd is handled", image.display()));
            }
            let mut raw = Vec::new();
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&img[off..off + size]).map_err(|e| format!("zstd: {e}"))?;
            std::io::Read::read_to_end(&mut dec, &mut raw).map_err(|e| format!("zstd: {e}"))?;
            write(&out, &raw)?;
            println!("{}: zstd payload at {off:#x}, {size} bytes -> {} ({} bytes)", image.display(), out.display(), raw.len());
        }
        Cmd::Initramfs { out, busybox, init, bench } => {
            use linux::CpioEntry::*;
            let mut e = vec![Dir("bin".into()), Dir("proc".into()), Dir("sys".into()), Dir("dev".into()), Dir("tmp".into())];
            e.push(CharDev("dev/console".into(), 5, 1));
            e.push(CharDev("dev/null".into(), 1, 3));
            e.push(File("bin/busybox".into(), 0o755, read(&busybox)?));
            e.push(Symlink("bin/sh".into(), "busybox".into()));
            e.push(File("init".into(), 0o755, read(&init)?));
            e.push(File("bin/getppid-bench".into(), 0o755, read(&bench)?));
            write(&out, &linux::cpio_newc(&e))?;
        }
        Cmd::Parse { console, json, qemu, config, packages } => {
            let mut r = linux::parse_console(&String::from_utf8_lossy(&read(&console)?))?;
            r.qemu = qemu;
            r.packages = packages;
            if let Some(c) = config {
                r.config = linux::config_lines(&text(&c)?);
            }
            for e in &r.errors {
                eprintln!("ltlinux: the guest could not set: {e}");
            }
            write(&json, r.to_json().as_bytes())?;
            for (k, v) in &r.rows {
                println!("{k:28} {:8.1}  ({:.1}..{:.1}, {} parts)", v.mean, v.min, v.max, v.parts);
            }
            println!("wrote {}", json.display());
        }
        Cmd::Table { results, linux: l, docs } => {
            let ours = bench::rows_from_json(&text(&results)?)?;
            let theirs = linux::LinuxRun::from_json(&text(&l)?)?;
            let table = linux::side_by_side(&ours, &theirs);
            for d in docs {
                let new = linux::replace_table(&text(&d)?, &table).map_err(|e| format!("{}: {e}", d.display()))?;
                write(&d, new.as_bytes())?;
                println!("{}: linux-table from {} and {}", d.display(), results.display(), l.display());
            }
            print!("{table}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ltlinux: {e}");
            ExitCode::FAILURE
        }
    }
}
