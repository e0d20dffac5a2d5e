//! The in-memory ELF objects the kernel hands GDB through its JIT interface
//! (`__jit_debug_register_code`, GDB manual "JIT Compilation Interface") for code it generates at
//! run time: JITed BPF programs and BPF trampolines. Each object names one piece of code (a
//! `.symtab` function symbol) and describes its frame with DWARF call-frame information
//! (`.debug_frame`), so GDB names the code and unwinds through it to the traced function's caller.
//!
//! The object is a relocatable LoongArch ELF (`ET_REL`, `EM_LOONGARCH`) whose `.text` is `NOBITS`
//! with the code's address as `sh_addr` (the code itself stays where it runs; GDB reads it from
//! the target), the symbol at offset 0 of `.text`, and the FDE's location absolute.
//!
//! The CFI covers the body of the code, after its prologue; the last few instructions of an
//! epilogue (after the frame is popped) are described as if the frame were still there.

use alloc::vec::Vec;

/// How the code keeps its frame (all three shapes start at the code's first word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No frame: the caller's `sp`, the return address stays in `ra`.
    Leaf,
    /// `addi.d sp, sp, -size; st.d ra, sp, size - 8; st.d fp, sp, size - 16` (the JIT's
    /// prologue, a C function's).
    Framed { size: u32 },
    /// A BPF trampoline (`arch::bpf_tramp`): entered with its return address (the traced
    /// function's parent) in `t0`, then `addi.d sp, sp, -size; st.d t0, sp, size - 8;
    /// st.d fp, sp, size - 16`.
    Trampoline { size: u32 },
}

/// `EM_LOONGARCH`.
pub const EM_LOONGARCH: u16 = 258;
const ET_REL: u16 = 1;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
/// DWARF register numbers of LoongArch: the GPRs are 0-31.
const RA: u8 = 1;
const SP: u8 = 3;
const T0: u8 = 12;
const FP: u8 = 22;

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

/// Pads a CIE or FDE (its length word at `start`) with `DW_CFA_nop` to a multiple of 8 and fills
/// in the length.
fn close_entry(out: &mut Vec<u8>, start: usize) {
    while (out.len() - start) % 8 != 0 {
        out.push(0);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// `.debug_frame` for code at `addr`, `len` bytes long, of shape `shape`.
pub fn debug_frame(addr: u64, len: u64, shape: Shape) -> Vec<u8> {
    let mut f = Vec::with_capacity(80);
    // CIE: version 1, no augmentation, code alignment 4, data alignment -8, return address
    // column ra; CFA = sp.
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    f.push(1);
    f.push(0);
    uleb(&mut f, 4);
    sleb(&mut f, -8);
    f.push(RA);
    f.extend_from_slice(&[0x0c, SP, 0]); // DW_CFA_def_cfa sp, 0
    close_entry(&mut f, 0);
    // FDE.
    let start = f.len();
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&0u32.to_le_bytes()); // the CIE at offset 0
    f.extend_from_slice(&addr.to_le_bytes());
    f.extend_from_slice(&len.to_le_bytes());
    let (size, ret_in_t0) = match shape {
        Shape::Leaf => (None, false),
        Shape::Framed { size } => (Some(size), false),
        Shape::Trampoline { size } => (Some(size), true),
    };
    if ret_in_t0 {
        f.extend_from_slice(&[0x09, RA, T0]); // DW_CFA_register ra, t0
    }
    if let Some(size) = size {
        f.push(0x40 | 1); // DW_CFA_advance_loc 1 (4 bytes): after `addi.d sp, sp, -size`
        f.push(0x0e); // DW_CFA_def_cfa_offset size
        uleb(&mut f, size as u64);
        f.push(0x40 | 1); // after the store of the return address
        f.extend_from_slice(&[0x80 | RA, 1]); // DW_CFA_offset ra, CFA - 8
        f.push(0x40 | 1); // after the store of fp
        f.extend_from_slice(&[0x80 | FP, 2]); // DW_CFA_offset fp, CFA - 16
    }
    close_entry(&mut f, start);
    f
}

fn put_shdr(out: &mut Vec<u8>, name: u32, ty: u32, flags: u64, addr: u64, offset: u64, size: u64, link: u32, info: u32, align: u64, entsize: u64) {
    out.extend_from_slice(&name.to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&addr.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    out.extend_from_slice(&info.to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
    out.extend_from_slice(&entsize.to_le_bytes());
}

/// The object for one piece of code: function `name` at `addr`, `len` bytes, frame `shape`.
pub fn object(name: &str, addr: u64, len: u64, shape: Shape) -> Vec<u8> {
    const EHDR: usize = 64;
    let frame = debug_frame(addr, len, shape);
    let shstr: &[u8] = b"\0.text\0.debug_frame\0.symtab\0.strtab\0.shstrtab\0";
    let (n_text, n_frame, n_symtab, n_strtab, n_shstrtab) = (1u32, 7, 20, 28, 36);
    let mut strtab = alloc::vec![0u8];
    strtab.extend_from_slice(name.as_bytes());
    strtab.push(0);
    let mut symtab = alloc::vec![0u8; 24];
    symtab.extend_from_slice(&1u32.to_le_bytes()); // st_name
    symtab.push(0x12); // STB_GLOBAL, STT_FUNC
    symtab.push(0); // st_other
    symtab.extend_from_slice(&1u16.to_le_bytes()); // st_shndx: .text
    symtab.extend_from_slice(&0u64.to_le_bytes()); // st_value: offset 0 of .text
    symtab.extend_from_slice(&len.to_le_bytes()); // st_size
    // Layout: header, .debug_frame, .symtab (8-aligned), .strtab, .shstrtab, section headers.
    let mut out = Vec::with_capacity(EHDR + frame.len() + symtab.len() + strtab.len() + shstr.len() + 6 * 64 + 16);
    out.resize(EHDR, 0);
    let off_frame = out.len();
    out.extend_from_slice(&frame);
    let off_symtab = out.len();
    out.extend_from_slice(&symtab);
    let off_strtab = out.len();
    out.extend_from_slice(&strtab);
    let off_shstr = out.len();
    out.extend_from_slice(shstr);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let off_shdr = out.len();
    put_shdr(&mut out, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    put_shdr(&mut out, n_text, SHT_NOBITS, SHF_ALLOC | SHF_EXECINSTR, addr, EHDR as u64, len, 0, 0, 4, 0);
    put_shdr(&mut out, n_frame, SHT_PROGBITS, 0, 0, off_frame as u64, frame.len() as u64, 0, 0, 8, 0);
    put_shdr(&mut out, n_symtab, SHT_SYMTAB, 0, 0, off_symtab as u64, symtab.len() as u64, 4, 1, 8, 24);
    put_shdr(&mut out, n_strtab, SHT_STRTAB, 0, 0, off_strtab as u64, strtab.len() as u64, 0, 0, 1, 0);
    put_shdr(&mut out, n_shstrtab, SHT_STRTAB, 0, 0, off_shstr as u64, shstr.len() as u64, 0, 0, 1, 0);
    // The ELF header.
    let h = &mut out[..EHDR];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&ET_REL.to_le_bytes());
    h[18..20].copy_from_slice(&EM_LOONGARCH.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[40..48].copy_from_slice(&(off_shdr as u64).to_le_bytes()); // e_shoff
    h[48..52].copy_from_slice(&0x43u32.to_le_bytes()); // e_flags: LP64D, object ABI v1
    h[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    h[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h[60..62].copy_from_slice(&6u16.to_le_bytes()); // e_shnum
    h[62..64].copy_from_slice(&5u16.to_le_bytes()); // e_shstrndx
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;
    use std::string::String;

    fn tool(name: &str) -> PathBuf {
        let out = Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc runs");
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        std::fs::read_dir(sysroot.join("lib/rustlib"))
            .expect("rustlib")
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .find(|p| p.is_file())
            .expect("llvm-tools (make setup installs them)")
    }

    fn dump(obj: &[u8], args: &[&str]) -> String {
        let path = std::env::temp_dir().join(std::format!("jitelf-{}-{}.o", std::process::id(), args.join("")));
        std::fs::write(&path, obj).unwrap();
        let out = Command::new(tool("llvm-objdump")).args(args).arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn llvm_reads_the_symbol_the_section_and_the_frame() {
        let addr = 0x9000_0000_0123_4560u64;
        let obj = object("bpf_prog_a04f5eef06a7f555_test1", addr, 0x40, Shape::Framed { size: 80 });
        let t = dump(&obj, &["-t", "-h"]);
        assert!(t.contains("elf64-loongarch"), "{t}");
        assert!(t.contains(".text         00000040 9000000001234560"), "{t}");
        assert!(t.contains("9000000001234560 g     F .text\t0000000000000040 bpf_prog_a04f5eef06a7f555_test1"), "{t}");
        let f = dump(&obj, &["--dwarf=frames"]);
        // The rows: CFA = sp at the entry, sp + 80 after the first word, ra and fp saved after.
        assert!(f.contains("0x9000000001234560: CFA=reg3\n"), "{f}");
        assert!(f.contains("0x9000000001234564: CFA=reg3+80"), "{f}");
        assert!(f.contains("0x900000000123456c: CFA=reg3+80: reg1=[CFA-8], reg22=[CFA-16]"), "{f}");
        let tr = dump(&object("bpf_trampoline_f", addr, 0x80, Shape::Trampoline { size: 112 }), &["--dwarf=frames"]);
        assert!(tr.contains("0x9000000001234560: CFA=reg3: reg1=reg12"), "{tr}");
        assert!(tr.contains("0x900000000123456c: CFA=reg3+112: reg1=[CFA-8], reg22=[CFA-16]"), "{tr}");
        let leaf = dump(&object("leaf", addr, 12, Shape::Leaf), &["--dwarf=frames"]);
        assert!(leaf.contains("0x9000000001234560: CFA=reg3\n") && !leaf.contains("reg1="), "{leaf}");
    }
}
