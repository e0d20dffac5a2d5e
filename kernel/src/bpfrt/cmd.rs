//! The shell's `bpf` command, in bpftool's words (`bpftool prog list` is `bpf prog list`); the
//! top floor registers it with tracefs. Errors are one `Error: ...` line, as bpftool prints
//! them, and change nothing.

use super::{BpfMap, BpfProg, Context, LoadError};
use alloc::string::String;
use alloc::vec::Vec;
use bpf::maps::{BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapType};
use bpf::object::MapOrigin;
use core::fmt::Write;

/// What `bpf` and `bpf help` print.
pub const USAGE: &str = "\
usage: bpf OBJECT COMMAND ...   (BPF objects QEMU was given: bpf obj list)
  bpf prog load NAME                 load object NAME (maps_test, maps_test.bpf.o): its maps and programs
  bpf prog list                      programs: id, kind, name, target, size, map ids
  bpf prog dump xlated ID            the program's instructions
  bpf prog dump jited ID             its native code (LoongArch), each BPF instruction before its words
  bpf prog attach ID                 attach it to its section's target (fentry/fexit/fmod_ret/kprobe/kretprobe)
  bpf prog run ID [WORD...]          run it in the interpreter on a context of 64-bit words
  bpf prog run ID hex BYTES...       ... or of bytes in hex (fexit/fmod_ret: the last word is the return value)
  bpf map list                       maps: id, type, name, flags, sizes
  bpf map dump ID                    every element as hex (a ring buffer: its records, consumed)
  bpf map lookup ID key BYTES...     one element (BYTES: decimal or 0x.. bytes, or `hex` then hex bytes)
  bpf map update ID key BYTES... value BYTES... [any|exist|noexist]
  bpf map delete ID key BYTES...
  bpf link list                      attached programs: link id, program, where, JITed or interpreted
  bpf link dump ID                   the code of the link's trampoline (fentry/fexit/fmod_ret links)
  bpf link detach ID                 detach a link (no CPU runs the program from it when this returns)
  bpf obj list                       the objects QEMU was given, and which are loaded
  bpf obj unload NAME                drop an object's programs and maps
(ID may also be written `id ID`, as bpftool takes it.)
";

/// `bpf ARGS...`: appends what it prints to `out`.
pub fn run(args: &[&str], out: &mut String) {
    let r = match args {
        ["prog", "load", name] | ["prog", "loadall", name] => prog_load(name, out),
        ["prog", "load" | "loadall", ..] => Err(String::from("expected exactly one object name (bpf obj list names them)")),
        ["prog"] | ["prog", "list" | "show"] => {
            prog_list(None, out);
            Ok(())
        }
        ["prog", "list" | "show", rest @ ..] => take_id(rest, "program").and_then(|(id, rest)| {
            no_more(rest)?;
            prog_list(Some(prog(id)?), out);
            Ok(())
        }),
        ["prog", "dump", "xlated", rest @ ..] => take_id(rest, "program").and_then(|(id, rest)| {
            no_more(rest)?;
            dump_xlated(&*prog(id)?, out);
            Ok(())
        }),
        ["prog", "dump", "jited", rest @ ..] => take_id(rest, "program").and_then(|(id, rest)| {
            no_more(rest)?;
            dump_jited(&*prog(id)?, out)
        }),
        ["prog", "dump", ..] => Err(String::from("expected `bpf prog dump xlated ID` or `bpf prog dump jited ID`")),
        ["prog", "attach", rest @ ..] => take_id(rest, "program").and_then(|(id, rest)| {
            no_more(rest)?;
            let p = prog(id)?;
            let l = super::link::attach(&p).map_err(|e| alloc::format!("program {id}: {e}"))?;
            let how = if p.jited.is_some() { "JITed" } else { "interpreted" };
            let _ = writeln!(out, "link {l}: program {id} ({} {}) attached, {how}", p.kind.name(), p.target.as_deref().unwrap_or("?"));
            Ok(())
        }),
        ["link"] | ["link", "list" | "show"] => {
            link_list(out);
            Ok(())
        }
        ["link", "dump", rest @ ..] => take_id(rest, "link").and_then(|(id, rest)| {
            no_more(rest)?;
            link_dump(id, out)
        }),
        ["link", "detach", rest @ ..] => take_id(rest, "link").and_then(|(id, rest)| {
            no_more(rest)?;
            super::link::detach(id)
        }),
        ["prog", "run", rest @ ..] => take_id(rest, "program").and_then(|(id, rest)| prog_run(&*prog(id)?, rest, out)),
        ["map"] | ["map", "list" | "show"] => {
            map_list(None, out);
            Ok(())
        }
        ["map", "list" | "show", rest @ ..] => take_id(rest, "map").and_then(|(id, rest)| {
            no_more(rest)?;
            map_list(Some(map(id)?), out);
            Ok(())
        }),
        ["map", "dump", rest @ ..] => take_id(rest, "map").and_then(|(id, rest)| {
            no_more(rest)?;
            map_dump(&*map(id)?, out)
        }),
        ["map", op @ ("lookup" | "update" | "delete"), rest @ ..] => {
            take_id(rest, "map").and_then(|(id, rest)| map_elem(op, &*map(id)?, rest, out))
        }
        ["obj"] | ["obj", "list" | "show"] => {
            obj_list(out);
            Ok(())
        }
        ["obj", "unload", name] => super::unload(name).map_err(|e| alloc::format!("{e}")),
        [] | ["help"] | ["prog" | "map" | "obj" | "link", "help"] => {
            out.push_str(USAGE);
            Ok(())
        }
        _ => Err(alloc::format!("unknown command `bpf {}` (bpf help lists them)", args.join(" "))),
    };
    if let Err(e) = r {
        let _ = writeln!(out, "Error: {e}");
    }
}

/// `ID` or `id ID` at the front of `args`; the rest.
fn take_id<'a, 'b>(args: &'a [&'b str], what: &str) -> Result<(u32, &'a [&'b str]), String> {
    let (word, rest) = match args {
        ["id", w, rest @ ..] => (*w, rest),
        [w, rest @ ..] => (*w, rest),
        [] => return Err(alloc::format!("expected a {what} id")),
    };
    match crate::shell::parse::parse_ulong(word) {
        Ok(n) if n > 0 && n <= u32::MAX as u64 => Ok((n as u32, rest)),
        _ => Err(alloc::format!("invalid {what} id '{word}'")),
    }
}

fn no_more(rest: &[&str]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(w) => Err(alloc::format!("unexpected '{w}'")),
    }
}

fn prog(id: u32) -> Result<alloc::sync::Arc<BpfProg>, String> {
    super::prog(id).ok_or_else(|| alloc::format!("get by id ({id}): No such file or directory (bpf prog list shows the programs)"))
}

fn map(id: u32) -> Result<alloc::sync::Arc<BpfMap>, String> {
    super::map(id).ok_or_else(|| alloc::format!("get map by id ({id}): No such file or directory (bpf map list shows the maps)"))
}

fn ids(v: &[u32]) -> String {
    v.iter().map(|i| alloc::format!("{i}")).collect::<Vec<_>>().join(",")
}

fn prog_load(name: &str, out: &mut String) -> Result<(), String> {
    match super::load(name) {
        Ok(l) => {
            let _ = writeln!(out, "loaded {}: prog_ids {}  map_ids {}", l.name, ids(&l.progs), ids(&l.maps));
            Ok(())
        }
        Err(e @ LoadError::Verify { .. }) => {
            // The verifier's log first, as libbpf prints it, then the error.
            let _ = writeln!(out, "-- BEGIN PROG LOAD LOG --");
            out.push_str(e.log());
            let _ = writeln!(out, "-- END PROG LOAD LOG --");
            Err(alloc::format!("failed to load object {}: {e}", super::object_stem(name)))
        }
        Err(e) => Err(alloc::format!("failed to load object {}: {e}", super::object_stem(name))),
    }
}

fn prog_list(only: Option<alloc::sync::Arc<BpfProg>>, out: &mut String) {
    let progs = match only {
        Some(p) => alloc::vec![p],
        None => super::progs(),
    };
    for p in progs {
        let _ = write!(out, "{}: {}  name {}", p.id, p.kind.name(), p.name);
        if let Some(t) = &p.target {
            let _ = write!(out, "  target {t}");
            if p.offset != 0 {
                let _ = write!(out, "+{:#x}", p.offset);
            }
        }
        let _ = writeln!(out, "{}", if p.gpl { "  gpl" } else { "" });
        let _ = write!(out, "\tobject {}  tag {}  xlated {}B", p.object, tag_hex(&p), p.insns.len() * 8);
        match &p.jited {
            Some(j) => {
                let _ = write!(out, "  jited {}B", j.len());
            }
            None => out.push_str("  interpreted"),
        }
        let _ = write!(out, "  insns {}  verified {}", p.insns.len(), p.verified_insns);
        if !p.used_maps.is_empty() {
            let _ = write!(out, "  map_ids {}", ids(&p.used_maps));
        }
        if let Some(l) = super::link::link_of(p.id) {
            let _ = write!(out, "  link {l}");
        }
        let misses = p.misses();
        if misses > 0 {
            let _ = write!(out, "  recursion_misses {misses}");
        }
        out.push('\n');
    }
}

/// `ld_imm64` map references as bpftool shows them, with the maps' ids.
struct MapIds<'a>(&'a [u32]);

impl bpf::insn::Names for MapIds<'_> {
    fn imm64(&self, f: &mut core::fmt::Formatter<'_>, pseudo: u8, lo: u32, hi: u32) -> core::fmt::Result {
        match (pseudo, self.0.get(lo as usize)) {
            (bpf::insn::BPF_PSEUDO_MAP_FD, Some(id)) => write!(f, "map[id:{id}]"),
            (bpf::insn::BPF_PSEUDO_MAP_VALUE, Some(id)) => write!(f, "map[id:{id}][0]+{hi}"),
            _ => bpf::insn::LinuxNames.imm64(f, pseudo, lo, hi),
        }
    }
}

fn tag_hex(p: &BpfProg) -> String {
    bpf::insn::tag(&p.insns).iter().map(|b| alloc::format!("{b:02x}")).collect()
}

/// The name a JITed program has in backtraces and here: `bpf_prog_<tag>_<name>` (Linux's).
pub fn jited_name(p: &BpfProg) -> String {
    alloc::format!("bpf_prog_{}_{}", tag_hex(p), p.name)
}

/// `bpf prog dump jited`: the native code as `llvm-objdump` prints it, each BPF instruction (as
/// `dump xlated` shows it) as a comment before the words it became.
fn dump_jited(p: &BpfProg, out: &mut String) -> Result<(), String> {
    let Some(j) = &p.jited else {
        return Err(alloc::format!("program {} is not JITed ({})", p.id, p.jit_error.as_deref().unwrap_or("?")));
    };
    let _ = writeln!(out, "{}:", jited_name(p));
    let names = MapIds(&p.map_ids);
    let mut starts: Vec<(usize, usize)> = j.offsets.iter().enumerate().map(|(i, &w)| (w, i)).collect();
    starts.sort();
    let mut next = 0;
    for (w, word) in j.code.iter().enumerate() {
        while next < starts.len() && starts[next].0 == w {
            let i = starts[next].1;
            // The second slot of ld_imm64 has its own offset but no text of its own.
            if i == 0 || !p.insns[i - 1].is_ld_imm64() {
                let _ = writeln!(out, "; {}", p.insns[i].display(p.insns.get(i + 1), &names));
            }
            next += 1;
        }
        let _ = writeln!(out, "{:5x}:\t{}", 4 * w, arch::bpf_jit::disassemble(*word));
    }
    Ok(())
}

/// `bpf link dump`: the trampoline a fentry/fexit/fmod_ret link runs in, disassembled.
fn link_dump(id: u32, out: &mut String) -> Result<(), String> {
    let l = super::link::links().into_iter().find(|l| l.id == id).ok_or_else(|| alloc::format!("no link {id} (bpf link list shows them)"))?;
    let (at, words, n) = match crate::ftrace::bpf::trampoline_of(l.addr) {
        Some(t) if !matches!(l.kind, bpf::object::ProgKind::Kprobe | bpf::object::ProgKind::Kretprobe) => t,
        _ => return Err(alloc::format!("link {id} is a probe, not a trampoline")),
    };
    let name = crate::ftrace::sites::index_of(l.addr).map_or("?", |i| crate::ftrace::sites::all()[i].name);
    let _ = writeln!(out, "bpf_trampoline_{name} at {at:#x}: {} words, {n} programs", words.len());
    for (i, w) in words.iter().enumerate() {
        let _ = writeln!(out, "{:5x}:\t{}", 4 * i, arch::bpf_jit::disassemble(*w));
    }
    Ok(())
}

fn link_list(out: &mut String) {
    for l in super::link::links() {
        let how = if l.jited { "jited" } else { "interpreted" };
        let _ = writeln!(out, "{}: {}  prog {}  name {}  target {}  addr {:#x}  {how}", l.id, l.kind.name(), l.prog, l.prog_name, l.target, l.addr);
    }
}

fn dump_xlated(p: &BpfProg, out: &mut String) {
    let names = MapIds(&p.map_ids);
    let _ = write!(out, "{}", bpf::insn::Listing { prog: &p.insns, names: &names });
}

/// A number of a context word: decimal, `0x` hex, or negative decimal (two's complement).
fn parse_word(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(d) = w.strip_prefix('-') {
        let v: u64 = d.parse().ok()?;
        return (v <= 1 << 63).then(|| v.wrapping_neg());
    }
    w.parse().ok()
}

/// Bytes written in hex (`0a0b`, `0a 0b`).
fn parse_hex(words: &[&str]) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    for w in words {
        let w = w.strip_prefix("0x").unwrap_or(w);
        if w.is_empty() || w.len() % 2 != 0 || !w.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(alloc::format!("'{w}' is not bytes in hex"));
        }
        for i in (0..w.len()).step_by(2) {
            v.push(u8::from_str_radix(&w[i..i + 2], 16).map_err(|_| alloc::format!("'{w}' is not bytes in hex"))?);
        }
    }
    Ok(v)
}

fn prog_run(p: &BpfProg, args: &[&str], out: &mut String) -> Result<(), String> {
    let mut ctx = match args {
        ["hex", bytes @ ..] => Context::bytes(p.kind, &parse_hex(bytes)?)?,
        words => {
            let mut v = Vec::with_capacity(words.len());
            for w in words {
                v.push(parse_word(w).ok_or_else(|| alloc::format!("'{w}' is not a number (decimal, 0x hex or negative)"))?);
            }
            Context::words(p.kind, &v)?
        }
    };
    ctx.func_ip = p.target.as_deref().and_then(crate::ksyms::find).map_or(0, |s| s.addr);
    let printed = super::printk::count();
    match super::run(p, &ctx) {
        Ok(exit) => {
            let _ = writeln!(out, "Return value: {} ({:#x}), {} instructions executed", exit.r0 as i64, exit.r0, exit.executed);
            let n = super::printk::count() - printed;
            if n > 0 {
                let _ = writeln!(out, "{n} bpf_trace_printk line{} in the trace (cat trace)", if n == 1 { "" } else { "s" });
            }
            Ok(())
        }
        Err(f) => Err(alloc::format!("program {} faulted at {f}", p.id)),
    }
}

fn map_list(only: Option<alloc::sync::Arc<BpfMap>>, out: &mut String) {
    let maps = match only {
        Some(m) => alloc::vec![m],
        None => super::maps(),
    };
    for m in maps {
        let d = m.map.def();
        let _ = writeln!(out, "{}: {}  name {}  flags {:#x}", m.id, m.map.map_type().name(), m.map.name(), d.map_flags);
        let _ = write!(out, "\tkey {}B  value {}B  max_entries {}  memlock {}B", d.key_size, d.value_size, d.max_entries, m.map.memory_bytes());
        if m.map.is_frozen() {
            out.push_str("  frozen");
        }
        let _ = write!(out, "  object {}", m.object);
        if let MapOrigin::Global { section } = &m.origin {
            let _ = write!(out, " ({section})");
        }
        out.push('\n');
    }
}

/// Bytes as bpftool prints them: two hex digits each, a space between, two after every eighth,
/// a new line after every sixteenth.
fn hex(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(if i % 16 == 0 {
                "\n"
            } else if i % 8 == 0 {
                "  "
            } else {
                " "
            });
        }
        let _ = write!(out, "{b:02x}");
    }
}

/// One element as bpftool's `map dump` prints it without BTF.
fn print_entry(m: &BpfMap, key: &[u8], value: &[u8], out: &mut String) {
    let d = m.map.def();
    if m.map.map_type() == MapType::PercpuArray {
        out.push_str("key:\n");
        hex(out, key);
        out.push('\n');
        let step = (d.value_size as usize).div_ceil(8) * 8;
        for cpu in 0..m.map.ncpus() as usize {
            let v = value.get(cpu * step..cpu * step + d.value_size as usize).unwrap_or(&[]);
            let _ = write!(out, "value (CPU {cpu:02}):{}", if d.value_size > 16 { '\n' } else { ' ' });
            hex(out, v);
            out.push('\n');
        }
        return;
    }
    let break_names = d.key_size > 16 || d.value_size > 16;
    let single_line = d.key_size + d.value_size <= 24 && !break_names;
    let sep = if break_names { '\n' } else { ' ' };
    let _ = write!(out, "key:{sep}");
    hex(out, key);
    out.push_str(if single_line { "  " } else { "\n" });
    let _ = write!(out, "value:{sep}");
    hex(out, value);
    out.push('\n');
}

fn map_dump(m: &BpfMap, out: &mut String) -> Result<(), String> {
    let cpu = arch::cpu::id() as u32 % m.map.ncpus();
    if let Some(rb) = m.map.as_ringbuf() {
        let _ = writeln!(out, "ring buffer: {} bytes, consumer {}, producer {}", rb.size(), rb.consumer_pos(), rb.producer_pos());
        let n = rb.consume(|rec| {
            let _ = write!(out, "record ({} bytes):{}", rec.len(), if rec.len() > 16 { '\n' } else { ' ' });
            hex(out, rec);
            out.push('\n');
        });
        let _ = writeln!(out, "Consumed {n} record{}", if n == 1 { "" } else { "s" });
        return Ok(());
    }
    let entries = m.map.entries(cpu).map_err(|e| alloc::format!("can't dump map {}: {e}", m.id))?;
    for (k, v) in &entries {
        print_entry(m, k, v, out);
    }
    let _ = writeln!(out, "Found {} element{}", entries.len(), if entries.len() == 1 { "" } else { "s" });
    Ok(())
}

/// `BYTES...` of a key or value as bpftool reads them: each a decimal or `0x` byte, or `hex`
/// followed by hex bytes. Stops at the next keyword (`value`, `any`, ...).
fn take_bytes<'a, 'b>(args: &'a [&'b str], what: &str, len: usize) -> Result<(Vec<u8>, &'a [&'b str]), String> {
    let stop = |w: &&str| matches!(*w, "key" | "value" | "any" | "exist" | "noexist");
    let (bytes, rest) = match args {
        ["hex", rest @ ..] => {
            let n = rest.iter().position(stop).unwrap_or(rest.len());
            (parse_hex(&rest[..n])?, &rest[n..])
        }
        _ => {
            let n = args.iter().position(stop).unwrap_or(args.len());
            let mut v = Vec::with_capacity(n);
            for w in &args[..n] {
                let b = parse_word(w).filter(|&b| b <= 0xff).ok_or_else(|| alloc::format!("'{w}' is not a byte ({what})"))?;
                v.push(b as u8);
            }
            (v, &args[n..])
        }
    };
    if bytes.len() != len {
        return Err(alloc::format!("{what} has {} bytes, the map's {what} size is {len}", bytes.len()));
    }
    Ok((bytes, rest))
}

fn map_elem(op: &str, m: &BpfMap, args: &[&str], out: &mut String) -> Result<(), String> {
    let d = *m.map.def();
    let cpu = arch::cpu::id() as u32 % m.map.ncpus();
    let Some(rest) = args.strip_prefix(&["key"]) else {
        return Err(String::from("expected `key BYTES...`"));
    };
    if m.map.map_type() == MapType::RingBuf {
        return Err(alloc::format!("map {} is a ring buffer: it has no elements (bpf map dump reads its records)", m.id));
    }
    let (key, rest) = take_bytes(rest, "key", d.key_size as usize)?;
    let err = |e: bpf::maps::MapError| alloc::format!("{op} failed: {e}");
    match op {
        "lookup" => {
            no_more(rest)?;
            let v = m.map.lookup_user_vec(&key, cpu).map_err(err)?;
            print_entry(m, &key, &v, out);
        }
        "delete" => {
            no_more(rest)?;
            m.map.delete_user(&key, cpu).map_err(err)?;
            super::reclaim_deleted();
        }
        _ => {
            let Some(rest) = rest.strip_prefix(&["value"]) else {
                return Err(String::from("expected `value BYTES...` after the key"));
            };
            let (value, rest) = take_bytes(rest, "value", m.map.user_value_size())?;
            let flags = match rest {
                [] | ["any"] => BPF_ANY,
                ["exist"] => BPF_EXIST,
                ["noexist"] => BPF_NOEXIST,
                [w, ..] => return Err(alloc::format!("unexpected '{w}' (any, exist or noexist)")),
            };
            m.map.update_user(&key, &value, flags, cpu).map_err(err)?;
            super::reclaim_deleted();
        }
    }
    Ok(())
}

fn obj_list(out: &mut String) {
    let files = super::fw_cfg_objects();
    if files.is_empty() {
        let _ = writeln!(out, "QEMU was given no BPF object (fw_cfg {}NAME.bpf.o; make build builds bpf/progs)", super::FW_CFG_PREFIX);
    }
    let loaded = super::objects();
    for (name, size) in &files {
        let _ = write!(out, "{name:<16} {size:>7} bytes");
        if loaded.contains(name) {
            let progs: Vec<u32> = super::progs().iter().filter(|p| &p.object == name).map(|p| p.id).collect();
            let maps: Vec<u32> = super::maps().iter().filter(|m| &m.object == name).map(|m| m.id).collect();
            let _ = write!(out, "  loaded: prog_ids {}  map_ids {}", ids(&progs), ids(&maps));
        }
        out.push('\n');
    }
    for name in loaded.iter().filter(|n| !files.iter().any(|(f, _)| f == *n)) {
        let _ = writeln!(out, "{name:<16}   (not from fw_cfg)  loaded");
    }
}
