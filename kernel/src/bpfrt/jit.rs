//! JITed programs in the kernel: `arch::bpf_jit`'s words placed in executable memory near what
//! calls them, and called natively.
//!
//! A program of the registry is compiled when it is loaded (unless the JIT is switched off,
//! Linux's `bpf_jit_enable=0`): its `ld_imm64` of maps are resolved to the maps' addresses (as
//! Linux's verifier rewrites them), helpers are called pc-relatively ([`super::helpers`]), the
//! `bpf_get_func_*` helpers of a tracing program are compiled inline for its target's argument
//! count, and the code goes where the trampoline of its target lives (`ftrace::bpf::alloc_text`:
//! kernel text's reserved area for a kernel function, one `bl` away). A program the JIT refuses
//! runs in the interpreter.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use arch::bpf_jit::{self, FuncCtx, Options};
use bpf::insn::{Insn, MAX_BPF_STACK};
use bpf::insn::{BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE};
use core::sync::atomic::{AtomicBool, Ordering};
use crate::ftrace::bpf::{self as tramp, Text};
use crate::jitsyms::Shape;

/// Whether programs are compiled when they are loaded (Linux's `net.core.bpf_jit_enable`).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the JIT on or off for programs loaded from now on; returns the previous setting.
pub fn set_enabled(on: bool) -> bool {
    ENABLED.swap(on, Ordering::AcqRel)
}

/// Whether the JIT is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// A compiled program in executable memory; freed when dropped.
pub struct JitedProg {
    text: Option<Text>,
    /// Whether its functions are named in [`crate::jitsyms`] (backtraces, GDB).
    named: bool,
    /// The native code's words (what `bpf prog dump jited` disassembles).
    pub code: Vec<u32>,
    /// For each BPF instruction, the index of its first word.
    pub offsets: Vec<usize>,
    /// The first word of each native function (the program's, then its callees').
    pub funcs: Vec<usize>,
}

impl JitedProg {
    /// Compiles `insns` (a verified program whose `ld_imm64` are constants; see [`resolve`]) for
    /// a trampoline of `near` (a function's entry; `None`: kernel text) to call. With a `name`
    /// (`bpf_prog_<tag>_<name>`) its code is named for backtraces and GDB: the program's
    /// function by it, its BPF-to-BPF callees `<name>_sub<N>`.
    pub fn compile(insns: &[Insn], func: Option<FuncCtx>, near: Option<u64>, name: Option<&str>) -> Result<JitedProg, String> {
        let helper = |id| super::helpers::address(id);
        let opts = |base| Options { stack_depth: MAX_BPF_STACK as u32, helper: &helper, base, func };
        // The size with helpers called through constants is an upper bound of the final one.
        let bound = bpf_jit::compile(insns, &opts(None)).map_err(|e| e.to_string())?.words.len();
        let mut text = tramp::alloc_text(near, bound * 4).map_err(|e| e.to_string())?;
        let image = match bpf_jit::compile(insns, &opts(Some(text.addr()))) {
            Ok(i) if i.words.len() <= bound => i,
            r => {
                // SAFETY: never published: nothing runs or calls it.
                unsafe { tramp::free_text(text) };
                return Err(r.err().map_or_else(|| String::from("the code grew between passes"), |e| e.to_string()));
            }
        };
        text.write(&image.words);
        if let Some(name) = name {
            for (i, f) in image.funcs.iter().enumerate() {
                let n = if i == 0 { String::from(name) } else { alloc::format!("{name}_sub{i}") };
                let shape = if f.frame == 0 { Shape::Leaf } else { Shape::Framed { size: f.frame } };
                crate::jitsyms::register(n, text.addr() + 4 * f.start as u64, 4 * (f.end - f.start) as u64, shape);
            }
        }
        let funcs = image.funcs.iter().map(|f| f.start).collect();
        Ok(JitedProg { text: Some(text), named: name.is_some(), code: image.words, offsets: image.offsets, funcs })
    }

    /// Where the code starts.
    pub fn addr(&self) -> u64 {
        self.text.as_ref().map_or(0, |t| t.addr())
    }

    /// Bytes of native code.
    pub fn len(&self) -> usize {
        self.code.len() * 4
    }

    /// Whether there is no code (never: a program has an epilogue at least).
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// Runs the program with `r1 = ctx`; returns `r0`.
    ///
    /// # Safety
    /// The program must be one the verifier accepted for a context like `ctx` (it reads and
    /// writes memory natively, without the interpreter's checks), and its maps must be alive.
    pub unsafe fn call(&self, ctx: u64) -> u64 {
        // SAFETY: the words are a whole function with the C calling convention (the JIT's
        // prologue and epilogue), placed and made visible by `compile`; the caller vouches for
        // what the program does.
        let f: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(self.addr() as usize) };
        f(ctx)
    }
}

impl Drop for JitedProg {
    fn drop(&mut self) {
        if let Some(t) = self.text.take() {
            if self.named {
                for &f in &self.funcs {
                    crate::jitsyms::unregister(t.addr() + 4 * f as u64);
                }
            }
            // SAFETY: a program is dropped with its last `Arc`: no link (so no trampoline or
            // probe) calls it any more, and no run through `call` is in progress.
            unsafe { tramp::free_text(t) };
        }
    }
}

/// `insns` with every `ld_imm64` of a map resolved to a constant, as Linux's verifier rewrites
/// them before its JIT runs: `BPF_PSEUDO_MAP_FD` (and `_IDX`) to the map's address (what the
/// helpers take), `BPF_PSEUDO_MAP_VALUE` (and `_IDX_VALUE`) to the address of the value plus the
/// offset. The map number is the index into the program's maps in every kind.
pub fn resolve(insns: &[Insn], maps: &[alloc::sync::Arc<bpf::maps::Map>]) -> Result<Vec<Insn>, String> {
    let mut out = insns.to_vec();
    let mut pc = 0;
    while pc + 1 < out.len() {
        if !out[pc].is_ld_imm64() {
            pc += 1;
            continue;
        }
        let (pseudo, idx, off) = (out[pc].src, out[pc].imm as u32 as usize, out[pc + 1].imm as u32);
        let value = match pseudo {
            0 => None,
            BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_IDX => Some(alloc::sync::Arc::as_ptr(maps.get(idx).ok_or("a map index out of range")?) as u64),
            BPF_PSEUDO_MAP_VALUE | BPF_PSEUDO_MAP_IDX_VALUE => {
                let m = maps.get(idx).ok_or("a map index out of range")?;
                Some(m.direct_value_addr(off).map_err(|e| alloc::format!("map value {off}: {e}"))?.as_ptr() as u64)
            }
            p => return Err(alloc::format!("insn {pc}: ld_imm64 of pseudo kind {p} is not compiled")),
        };
        if let Some(v) = value {
            out[pc].src = 0;
            out[pc].imm = v as u32 as i32;
            out[pc + 1].imm = (v >> 32) as u32 as i32;
        }
        pc += 2;
    }
    Ok(out)
}
