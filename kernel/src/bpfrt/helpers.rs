//! The helpers as native functions, for JITed programs: `u64 f(u64, u64, u64, u64, u64)` with
//! the C calling convention, called straight from the program's code (`r1`-`r5` are `a0`-`a4`).
//!
//! They have the interpreter environment's semantics ([`super::env`], docs/bpf.md "Helpers and
//! their values here") but, as Linux's, trust the verifier for the memory a program hands them
//! (its stack, its map values, the context): it proved each argument's type and size, and the
//! map argument is the address of one of the program's maps (`ld_imm64` of a map, resolved when
//! the program was compiled). What the verifier cannot prove (the address `probe_read_kernel`
//! and `%s` read) is checked as in the interpreter.
//!
//! The `bpf_get_func_*` helpers of fentry/fexit/fmod_ret programs are not here: the JIT compiles
//! them inline, reading the trampoline's frame.

use super::env::{EFAULT, EINVAL, EPERM, is_kernel_ram};
use bpf::maps::{BPF_F_RDONLY_PROG, Map, helper_ret};
use core::sync::atomic::{AtomicU64, Ordering};

/// A helper's native code.
pub type HelperFn = extern "C" fn(u64, u64, u64, u64, u64) -> u64;

/// The native address of helper `id`, if a JITed program may call it.
pub fn address(id: u32) -> Option<u64> {
    let f: HelperFn = match id {
        1 => map_lookup_elem,
        2 => map_update_elem,
        3 => bpf_map_delete_elem,
        5 => ktime_get_ns,
        6 => trace_printk,
        8 => get_smp_processor_id,
        14 => get_current_pid_tgid,
        113 => probe_read_kernel,
        130 => ringbuf_output,
        131 => ringbuf_reserve,
        132 => ringbuf_submit,
        133 => ringbuf_discard,
        _ => return None,
    };
    Some(f as usize as u64)
}

/// The map a program handed over.
///
/// # Safety
/// `handle` must be what the JIT resolved `ld_imm64` of a map to: the address of a `Map` the
/// program holds (its `Arc`), so it outlives the call.
unsafe fn map<'a>(handle: u64) -> &'a Map {
    // SAFETY: the caller's promise.
    unsafe { &*(handle as *const Map) }
}

/// `len` bytes at `addr`, which the verifier proved the program may read.
///
/// # Safety
/// As said: initialised memory of the program's (stack, map value, context) for the call.
unsafe fn bytes<'a>(addr: u64, len: usize) -> &'a [u8] {
    // SAFETY: the caller's promise; `len` may be 0 (any address is then fine but must be
    // non-null and aligned for a slice, which a dangling pointer provides).
    unsafe { core::slice::from_raw_parts(if len == 0 { core::ptr::NonNull::<u8>::dangling().as_ptr() } else { addr as *const u8 }, len) }
}

fn cpu() -> u32 {
    arch::cpu::id() as u32
}

extern "C" fn map_lookup_elem(m: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(1);
    // SAFETY: the verifier proved `m` a map of the program and `key` key_size readable bytes.
    let (m, key) = unsafe { (map(m), bytes(key, map(m).def().key_size as usize)) };
    m.lookup(key, cpu()).map_or(0, |p| p.as_ptr() as u64)
}

extern "C" fn map_update_elem(m: u64, key: u64, value: u64, flags: u64, _: u64) -> u64 {
    super::env::log_call(2);
    // SAFETY: as for lookup; `value` is value_size readable bytes.
    let m = unsafe { map(m) };
    if m.def().map_flags & BPF_F_RDONLY_PROG != 0 {
        return -EPERM as u64;
    }
    // SAFETY: as above.
    let (key, value) = unsafe { (bytes(key, m.def().key_size as usize), bytes(value, m.def().value_size as usize)) };
    helper_ret(m.update(key, value, flags, cpu())) as u64
}

/// `bpf_map_delete_elem` (under Linux's name, a traceable kernel function with a prototype, so a
/// program can be attached to it: the recursion test's).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpf_map_delete_elem(m: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(3);
    // SAFETY: as for lookup.
    let m = unsafe { map(m) };
    if m.def().map_flags & BPF_F_RDONLY_PROG != 0 {
        return -EPERM as u64;
    }
    // SAFETY: as for lookup.
    let key = unsafe { bytes(key, m.def().key_size as usize) };
    helper_ret(m.delete(key, cpu())) as u64
}

extern "C" fn ktime_get_ns(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(5);
    super::env::ktime_ns()
}

/// A NUL-terminated string from kernel RAM (for `%s`), byte by byte; `None` if a byte before the
/// NUL is outside it.
fn read_cstr(addr: u64, buf: &mut [u8]) -> Option<usize> {
    for (i, slot) in buf.iter_mut().enumerate() {
        let a = addr.checked_add(i as u64)?;
        if !is_kernel_ram(a, 1) {
            return None;
        }
        // SAFETY: a byte of kernel RAM (checked just above), read as a byte.
        let b = unsafe { core::ptr::read_volatile(a as *const u8) };
        if b == 0 {
            return Some(i);
        }
        *slot = b;
    }
    Some(buf.len())
}

extern "C" fn trace_printk(fmt: u64, size: u64, a: u64, b: u64, c: u64) -> u64 {
    super::env::log_call(6);
    // SAFETY: the verifier proved `fmt` `size` readable bytes of the program's.
    let fmt = unsafe { bytes(fmt, size as usize) };
    match bpf::printk::format(fmt, &[a, b, c], &mut read_cstr) {
        Ok(text) => {
            super::printk::emit(&text);
            text.len() as u64
        }
        Err(_) => -EINVAL as u64,
    }
}

extern "C" fn get_smp_processor_id(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(8);
    cpu() as u64
}

extern "C" fn get_current_pid_tgid(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(14);
    let pid = formats::task::pid(cpu()) as u64;
    pid << 32 | pid
}

extern "C" fn probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(113);
    let n = size as usize;
    let ok = n == 0 || is_kernel_ram(src, size);
    for i in 0..n as u64 {
        // SAFETY: `dst` is `size` writable bytes of the program's (the verifier proved it); `src`
        // is kernel RAM (checked above) or not read at all.
        unsafe {
            let b = if ok { core::ptr::read_volatile((src + i) as *const u8) } else { 0 };
            core::ptr::write_volatile((dst + i) as *mut u8, b);
        }
    }
    if ok { 0 } else { -EFAULT as u64 }
}

extern "C" fn ringbuf_output(m: u64, data: u64, size: u64, flags: u64, _: u64) -> u64 {
    super::env::log_call(130);
    // SAFETY: the verifier proved `m` a ring-buffer map of the program and `data` `size` bytes.
    let (m, data) = unsafe { (map(m), bytes(data, size as usize)) };
    match m.as_ringbuf() {
        Some(rb) => helper_ret(rb.output(data, flags, cpu())) as u64,
        None => -EINVAL as u64,
    }
}

/// Records reserved and not yet submitted or discarded, per CPU: (record, its map). A run
/// submits on the CPU it reserved on (a program runs to its end on one CPU), and runs that
/// interrupt it use other slots.
const OPEN_RECORDS: usize = 16;
static OPEN: [[[AtomicU64; 2]; OPEN_RECORDS]; arch::boot::MAX_CPUS] =
    [const { [const { [AtomicU64::new(0), AtomicU64::new(0)] }; OPEN_RECORDS] }; arch::boot::MAX_CPUS];

extern "C" fn ringbuf_reserve(m: u64, size: u64, flags: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(131);
    // SAFETY: the verifier proved `m` a ring-buffer map of the program.
    let Some(rb) = (unsafe { map(m) }).as_ringbuf() else { return 0 };
    let slots = &OPEN[cpu() as usize % arch::boot::MAX_CPUS];
    // A slot first (claimed with a placeholder), so a record is never reserved that could not
    // be found again.
    let Some(slot) = slots.iter().find(|s| s[0].compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()) else { return 0 };
    match rb.reserve(size, flags, cpu()) {
        Some(p) => {
            slot[1].store(m, Ordering::Relaxed);
            slot[0].store(p.as_ptr() as u64, Ordering::Release);
            p.as_ptr() as u64
        }
        None => {
            slot[0].store(0, Ordering::Release);
            0
        }
    }
}

fn commit(sample: u64, flags: u64, discard: bool) -> u64 {
    let slots = &OPEN[cpu() as usize % arch::boot::MAX_CPUS];
    let Some(slot) = slots.iter().find(|s| sample > 1 && s[0].load(Ordering::Acquire) == sample) else { return -EINVAL as u64 };
    let m = slot[1].load(Ordering::Relaxed);
    slot[0].store(0, Ordering::Release);
    // SAFETY: `m` is the map the record was reserved in (recorded by `ringbuf_reserve` in this
    // run, whose program holds the map).
    let Some(rb) = (unsafe { map(m) }).as_ringbuf() else { return -EINVAL as u64 };
    let r = if discard { rb.discard(sample as *const u8, flags) } else { rb.submit(sample as *const u8, flags) };
    helper_ret(r) as u64
}

extern "C" fn ringbuf_submit(sample: u64, flags: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(132);
    commit(sample, flags, false)
}

extern "C" fn ringbuf_discard(sample: u64, flags: u64, _: u64, _: u64, _: u64) -> u64 {
    super::env::log_call(133);
    commit(sample, flags, true)
}
