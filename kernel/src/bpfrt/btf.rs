//! Function prototypes for tracing programs: how many argument registers the function a
//! fentry/fexit/fmod_ret program attaches to takes. Linux reads this from BTF (the kernel's, or
//! the module's); here the kernel's test functions list theirs ([`super::test_run::PROTOS`]) and
//! a module lists its own with the module API's `bpf_protos!` (a table the kernel finds by its
//! symbol `lt_bpf_protos`).
//!
//! The count decides the context's layout: the arguments, then (fexit, fmod_ret) the return
//! value at `ctx[nargs]`, and what `bpf_get_func_arg_cnt` answers. A function without a
//! prototype cannot be a tracing program's target (Linux: no BTF, no attach).

/// The symbol of a module's prototype table.
pub const MODULE_TABLE: &str = "lt_bpf_protos";

/// Argument registers of `target`: a kernel function's name, or `module:function`.
pub fn nargs_of(target: &str) -> Option<u32> {
    match target.split_once(':') {
        None => super::test_run::PROTOS.iter().find(|p| p.0 == target).map(|p| p.1),
        Some((module, func)) => module_nargs(module, func),
    }
}

/// An entry of a module's table, as `loongtrace_module::BpfProto` lays it out.
#[repr(C)]
struct Entry {
    name: *const u8,
    name_len: usize,
    nargs: u64,
}

fn module_nargs(module: &str, func: &str) -> Option<u32> {
    let table = crate::ksyms::resolve_in(module, MODULE_TABLE)?;
    let _hold = crate::ksyms::hold(module)?;
    for i in 0..64 {
        // SAFETY: `table` is the module's `lt_bpf_protos`, an array of `BpfProto` ended by an
        // entry with a null name (the macro writes it); the module is held while it is read.
        let e = unsafe { &*((table as usize + i * core::mem::size_of::<Entry>()) as *const Entry) };
        if e.name.is_null() {
            return None;
        }
        // SAFETY: a string literal of the module, `name_len` bytes, while the module is held.
        let name = unsafe { core::slice::from_raw_parts(e.name, e.name_len) };
        if name == func.as_bytes() {
            return u32::try_from(e.nargs).ok().filter(|&n| n <= super::MAX_ARGS);
        }
    }
    None
}
