//! JITed programs in the kernel: `arch::bpf_jit`'s words placed in executable memory of the module
//! area and called natively. Today only the differential self-test runs them (programs of
//! numbers and the stack, without helpers); attaching JITed programs is the next step.

use alloc::string::{String, ToString};
use arch::bpf_jit::{self, Options};
use bpf::insn::Insn;
use crate::execmem::area::{self, ExecMem};

/// A compiled program in executable memory; freed when dropped.
pub struct JitedProg {
    mem: Option<ExecMem>,
    /// Instruction words of the native code.
    pub words: usize,
}

impl JitedProg {
    /// Compiles `insns` (a verified program using `stack_depth` bytes of stack and no helper)
    /// and places the code.
    pub fn new(insns: &[Insn], stack_depth: u32) -> Result<JitedProg, String> {
        let image = bpf_jit::compile(insns, &Options { stack_depth, helper: &|_| None }).map_err(|e| e.to_string())?;
        let bytes = image.words.len() * 4;
        let mem = area::alloc_exec(bytes, 16).map_err(|e| e.to_string())?;
        // SAFETY: `mem` is fresh executable memory of `bytes` bytes that no CPU runs yet.
        unsafe { core::ptr::copy_nonoverlapping(image.words.as_ptr().cast::<u8>(), mem.addr as *mut u8, bytes) };
        // Make this CPU's later fetches see the new words (only this CPU calls the program).
        arch::cpu::ibar();
        Ok(JitedProg { mem: Some(mem), words: image.words.len() })
    }

    /// Where the code starts.
    pub fn addr(&self) -> u64 {
        self.mem.as_ref().map_or(0, |m| m.addr)
    }

    /// Runs the program with `r1 = ctx`; returns `r0`.
    ///
    /// # Safety
    /// The program must be one the verifier accepted for this `ctx` (it reads and writes memory
    /// natively, without the interpreter's checks), and call no helper.
    pub unsafe fn call(&self, ctx: u64) -> u64 {
        // SAFETY: the words are a whole function with the C calling convention (the JIT's
        // prologue and epilogue), placed and made visible by `new`; the caller vouches for what
        // the program does.
        let f: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(self.addr() as usize) };
        f(ctx)
    }
}

impl Drop for JitedProg {
    fn drop(&mut self) {
        if let Some(m) = self.mem.take() {
            // SAFETY: the program is only run through `call`, which has returned: no CPU is in it.
            unsafe { area::free_exec(m) };
        }
    }
}
