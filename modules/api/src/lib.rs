//! The interface between a loadable module and the loongtrace kernel.
//!
//! A module is a `no_std` crate compiled to a relocatable object (`ET_REL`); only that crate's own
//! code ends up in the object, so everything here is either an `extern "C"` declaration of a
//! function the kernel exports (resolved by the module loader against the kernel's export list)
//! or inlined into the module. Declare the module with [`module!`].
#![no_std]

/// Log levels understood by [`lt_log`] (the `log` crate's numbering: 1 = error ... 5 = trace).
pub const LEVEL_ERROR: u32 = 1;
pub const LEVEL_WARN: u32 = 2;
pub const LEVEL_INFO: u32 = 3;

unsafe extern "C" {
    /// Prints `len` bytes of UTF-8 at `msg` through the kernel log, prefixed with the module's
    /// name by the kernel.
    pub fn lt_log(level: u32, msg: *const u8, len: usize);
    /// Called by a module's panic handler: logs the message and stops the CPU (like a kernel
    /// panic).
    pub fn lt_module_panic(msg: *const u8, len: usize) -> !;
    /// The kernel's ABI-oracle recorder: remembers the eight arguments for the calling CPU and
    /// returns the oracle's mix of them (see the kernel's `abi_oracle` suite).
    pub fn lt_abi_oracle_record(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64, a7: u64) -> u64;
    /// A counter the kernel owns, for modules that show data access to kernel variables.
    pub static lt_shared_counter: core::sync::atomic::AtomicU64;
}

/// The prototype of a module function BPF programs may attach to (what Linux reads from a
/// module's BTF): its name and how many argument registers it takes. A module lists them with
/// [`bpf_protos!`]; the kernel finds the table by its symbol, `lt_bpf_protos`.
#[repr(C)]
pub struct BpfProto {
    /// The function's name (UTF-8, `name_len` bytes); null ends the table.
    pub name: *const u8,
    pub name_len: usize,
    /// Integer argument registers it takes (at most 8).
    pub nargs: u64,
}

// SAFETY: the table is immutable and points at string literals.
unsafe impl Sync for BpfProto {}

/// Declares the prototypes of the module's functions that BPF fentry/fexit/fmod_ret programs may
/// attach to: `bpf_protos!(sample_far_double: 1, sample_far_apply: 2);`.
#[macro_export]
macro_rules! bpf_protos {
    ($($name:ident: $nargs:literal),* $(,)?) => {
        /// The module's BPF prototype table, read by the kernel.
        #[unsafe(no_mangle)]
        #[used]
        pub static lt_bpf_protos: [$crate::BpfProto; [$(stringify!($name)),*].len() + 1] = [
            $($crate::BpfProto { name: stringify!($name).as_ptr(), name_len: stringify!($name).len(), nargs: $nargs },)*
            $crate::BpfProto { name: core::ptr::null(), name_len: 0, nargs: 0 },
        ];
    };
}

/// Logs `msg` at info level.
#[inline(always)]
pub fn info(msg: &str) {
    // SAFETY: `lt_log` reads `len` bytes at `msg`, which is a valid `str`.
    unsafe { lt_log(LEVEL_INFO, msg.as_ptr(), msg.len()) }
}

/// Declares a module: its name (what `set_ftrace_filter`'s `:mod:` form and the loader's
/// commands use), its init function (`fn() -> i32`, 0 = success; anything else makes the load
/// fail and the module is freed) and its exit function (`fn()`, run on unload). Also defines the
/// panic handler, which reports through the kernel.
#[macro_export]
macro_rules! module {
    (name: $name:literal, init: $init:path, exit: $exit:path $(,)?) => {
        /// The module's name, read by the loader from the `.modinfo` section.
        #[used]
        #[unsafe(link_section = ".modinfo")]
        static LT_MODINFO_NAME: [u8; concat!("name=", $name, "\0").len()] = {
            let s = concat!("name=", $name, "\0").as_bytes();
            let mut out = [0u8; concat!("name=", $name, "\0").len()];
            let mut i = 0;
            while i < s.len() {
                out[i] = s[i];
                i += 1;
            }
            out
        };

        /// Entry point the loader calls after relocating the module.
        #[unsafe(no_mangle)]
        pub extern "C" fn lt_module_init() -> i32 {
            $init()
        }

        /// Entry point the loader calls before freeing the module.
        #[unsafe(no_mangle)]
        pub extern "C" fn lt_module_exit() {
            $exit()
        }

        #[panic_handler]
        fn lt_module_panic_handler(_info: &core::panic::PanicInfo) -> ! {
            let msg = concat!($name, ": panic");
            // SAFETY: `msg` is a valid `str`; the kernel function never returns.
            unsafe { $crate::lt_module_panic(msg.as_ptr(), msg.len()) }
        }
    };
}
