//! BPF maps with Linux's semantics: `HASH`, `ARRAY`, `PERCPU_ARRAY` and `RINGBUF`.
//!
//! A map is made from a [`MapDef`] (type, key size, value size, max entries, flags: what libbpf
//! reads from a BTF-defined map in `SEC(".maps")`), checked as Linux's `map_create` checks it
//! ([`MapDef::validate`], [`DefError`]). [`Map`] is the one type the helpers, the interpreter and
//! the kernel's `bpf map` commands use:
//!
//! * **program side** (what `bpf_map_lookup_elem`/`update_elem`/`delete_elem` do):
//!   [`Map::lookup`] gives the address of the value itself (a program reads and writes it in
//!   place), [`Map::update`], [`Map::delete`]; errors convert to the helpers' negative errno
//!   with [`MapError::to_helper`];
//! * **user side** (what the `bpf(2)` syscall does, for `bpf map dump` and tests):
//!   [`Map::lookup_user`] copies the value out (every CPU's for a per-CPU map),
//!   [`Map::update_user`], [`Map::delete_user`], [`Map::get_next_key`], [`Map::entries`],
//!   [`Map::freeze`];
//! * **memory checks**: [`Map::region_of`]/[`Map::contains`] and [`find_region`] say which map,
//!   which value (or ring-buffer record) and which bounds an address falls in;
//!   [`Map::direct_value_addr`] resolves libbpf's global-data relocations (`.data`, `.bss`,
//!   `.rodata` are single-entry arrays);
//! * the ring buffer: [`Map::as_ringbuf`] gives the [`RingBuf`] with `reserve`, `submit`,
//!   `discard`, `output`, `query` and the consumer side.
//!
//! Every call that can run in a program takes the CPU it runs on (`cpu < ncpus`): per-CPU maps
//! use it to pick the value, and the maps that lock use it for Linux's re-entry guard
//! (`map_locked`): a program that interrupts a map operation on the same CPU and calls into the
//! same map gets `-EBUSY` (NULL from a lookup or a reserve) instead of deadlocking on the spin
//! lock its own CPU holds. No program-side path allocates.
//!
//! Values live in 8-byte aligned words that are never moved or freed while the map exists, so
//! an address given to a program stays valid memory for the map's life. The map's own copies go
//! through relaxed atomic word accesses (no `unsafe` in this file outside the tests); a program
//! writing a value while the user side copies it can tear the value, as on Linux.
//!
//! A hash element deleted or replaced while a program may still hold its value's address is
//! not reused until the kernel calls [`Map::reclaim`] at a quiescent point (Linux frees it after
//! an RCU grace period); only when the pool has no other free element is the oldest such element
//! reused early, which is what Linux's preallocated hash maps always do. docs/bpf-maps.md has
//! the details and every difference from Linux.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::mutex::SpinMutex;

// ---------------------------------------------------------------------------------------------
// Linux's numbers (include/uapi/linux/bpf.h, include/uapi/asm-generic/errno*.h)
// ---------------------------------------------------------------------------------------------

/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_RINGBUF`.
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// Update flag: create a new element or update an existing one.
pub const BPF_ANY: u64 = 0;
/// Update flag: create a new element only if it did not exist.
pub const BPF_NOEXIST: u64 = 1;
/// Update flag: update an existing element only.
pub const BPF_EXIST: u64 = 2;
/// Update flag: update under the value's `bpf_spin_lock` (refused: no map here has one).
pub const BPF_F_LOCK: u64 = 4;

/// Map flag: do not preallocate hash elements (accepted; elements are preallocated anyway).
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// Map flag: per-CPU LRU lists (LRU hashes only, so refused here).
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// Map flag: `numa_node` is given (accepted and ignored: one node).
pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// Map flag: the syscall side may only read.
pub const BPF_F_RDONLY: u32 = 1 << 3;
/// Map flag: the syscall side may only write.
pub const BPF_F_WRONLY: u32 = 1 << 4;
/// Map flag: hash with seed 0 (accepted: the seed is always 0 here).
pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
/// Map flag: programs may only read (libbpf's `.rodata`; the verifier enforces it).
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// Map flag: programs may only write (the verifier enforces it).
pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
/// Map flag: the array may be mmap()ed (libbpf sets it on global-data maps; accepted).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Map flag: keep perf event array elements (perf event arrays only, so refused here).
pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
/// Map flag: the map is an inner map template (accepted on arrays, as Linux).
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;
const ARRAY_CREATE_FLAG_MASK: u32 =
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP;
const HTAB_CREATE_FLAG_MASK: u32 =
    BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED;
const RINGBUF_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE;

/// Ring-buffer record header: the record is reserved, not yet submitted or discarded.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// Ring-buffer record header: the record was discarded (the consumer skips it).
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Size of a ring-buffer record header (`u32 len; u32 pg_off`).
pub const BPF_RINGBUF_HDR_SZ: u64 = 8;
/// Submit/discard/output flag: do not count a wake-up.
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
/// Submit/discard/output flag: count a wake-up even if the consumer is not waiting for this record.
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;
/// [`RingBuf::query`]: bytes produced and not yet consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// [`RingBuf::query`]: size of the data area.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// [`RingBuf::query`]: consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// [`RingBuf::query`]: producer position.
pub const BPF_RB_PROD_POS: u64 = 3;

/// The page size ring buffers are a multiple of (Linux's with 4 KiB pages; LoongArch Linux
/// usually runs with 16 KiB pages and then asks for multiples of 16 KiB).
pub const PAGE_SIZE: u32 = 4096;
/// Linux's `KMALLOC_MAX_SIZE` with 4 KiB pages (order-10 allocations): bounds a hash element.
pub const KMALLOC_MAX_SIZE: u64 = 1 << 22;
/// Linux's `PCPU_MIN_UNIT_SIZE`: the largest per-CPU value (rounded up to 8).
pub const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;
/// `sizeof(struct htab_elem)` on 64-bit Linux, counted in the hash element size bound.
const HTAB_ELEM_SIZE: u64 = 48;
/// `sizeof(struct bucket)` on 64-bit Linux, which bounds the bucket count.
const HTAB_BUCKET_SIZE: u64 = 16;
/// Linux's `RINGBUF_MAX_RECORD_SZ`: the largest record a reservation may ask for.
pub const RINGBUF_MAX_RECORD_SZ: u64 = (u32::MAX / 4) as u64;
/// Linux's `BPF_OBJ_NAME_LEN`: a map name holds at most 15 bytes (libbpf truncates longer ones).
pub const BPF_OBJ_NAME_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A map operation's error: Linux's errno, for the syscall side and (negated, with
/// [`MapError::to_helper`]) for the helpers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapError {
    /// `EPERM` (1): the syscall side may not write (frozen or `BPF_F_RDONLY`) or read (`BPF_F_WRONLY`).
    Perm,
    /// `ENOENT` (2): no such element; the last key of an iteration.
    NoEnt,
    /// `E2BIG` (7): an index past `max_entries`; a full hash map; a map too large.
    TooBig,
    /// `EAGAIN` (11): `bpf_ringbuf_output` found no room.
    Again,
    /// `ENOMEM` (12): no memory for the map.
    NoMem,
    /// `EBUSY` (16): the map is in use by an interrupted operation on the same CPU; a second freeze.
    Busy,
    /// `EEXIST` (17): `BPF_NOEXIST` and the element exists (always, for arrays).
    Exist,
    /// `EINVAL` (22): bad flags, sizes, CPU or pointer; deleting from an array.
    Inval,
    /// `ENOTSUPP` (524, kernel-internal): the operation does not apply to this map type.
    NotSupp,
}

/// `EPERM`.
pub const EPERM: i64 = 1;
/// `ENOENT`.
pub const ENOENT: i64 = 2;
/// `E2BIG`.
pub const E2BIG: i64 = 7;
/// `EAGAIN`.
pub const EAGAIN: i64 = 11;
/// `ENOMEM`.
pub const ENOMEM: i64 = 12;
/// `EBUSY`.
pub const EBUSY: i64 = 16;
/// `EEXIST`.
pub const EEXIST: i64 = 17;
/// `EINVAL`.
pub const EINVAL: i64 = 22;
/// `ENOTSUPP` (kernel-internal, not in the UAPI headers, but what `bpf(2)` returns for it).
pub const ENOTSUPP: i64 = 524;

impl MapError {
    /// Linux's errno (positive).
    pub const fn errno(self) -> i64 {
        match self {
            MapError::Perm => EPERM,
            MapError::NoEnt => ENOENT,
            MapError::TooBig => E2BIG,
            MapError::Again => EAGAIN,
            MapError::NoMem => ENOMEM,
            MapError::Busy => EBUSY,
            MapError::Exist => EEXIST,
            MapError::Inval => EINVAL,
            MapError::NotSupp => ENOTSUPP,
        }
    }

    /// What a helper returns for it: the negated errno (`-ENOENT` = -2, ...).
    pub const fn to_helper(self) -> i64 {
        -self.errno()
    }

    /// The errno's name (`"ENOENT"`).
    pub const fn name(self) -> &'static str {
        match self {
            MapError::Perm => "EPERM",
            MapError::NoEnt => "ENOENT",
            MapError::TooBig => "E2BIG",
            MapError::Again => "EAGAIN",
            MapError::NoMem => "ENOMEM",
            MapError::Busy => "EBUSY",
            MapError::Exist => "EEXIST",
            MapError::Inval => "EINVAL",
            MapError::NotSupp => "ENOTSUPP",
        }
    }

    /// strerror()'s text, as bpftool prints it.
    pub const fn message(self) -> &'static str {
        match self {
            MapError::Perm => "Operation not permitted",
            MapError::NoEnt => "No such file or directory",
            MapError::TooBig => "Argument list too long",
            MapError::Again => "Resource temporarily unavailable",
            MapError::NoMem => "Cannot allocate memory",
            MapError::Busy => "Device or resource busy",
            MapError::Exist => "File exists",
            MapError::Inval => "Invalid argument",
            MapError::NotSupp => "Unknown error 524",
        }
    }

    /// The error of a positive errno, if it is one of these.
    pub const fn from_errno(errno: i64) -> Option<MapError> {
        Some(match errno {
            EPERM => MapError::Perm,
            ENOENT => MapError::NoEnt,
            E2BIG => MapError::TooBig,
            EAGAIN => MapError::Again,
            ENOMEM => MapError::NoMem,
            EBUSY => MapError::Busy,
            EEXIST => MapError::Exist,
            EINVAL => MapError::Inval,
            ENOTSUPP => MapError::NotSupp,
            _ => return None,
        })
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.name())
    }
}

/// A helper's return value for a result: 0 or the negated errno.
pub const fn helper_ret(r: Result<(), MapError>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_helper(),
    }
}

/// Why a map definition is refused: the field, its value, the rule, and the errno Linux's
/// `bpf(BPF_MAP_CREATE)` returns for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefError {
    /// `EINVAL`, `E2BIG` or (when the memory is not there) `ENOMEM`.
    pub errno: MapError,
    /// `"map_type"`, `"key_size"`, `"value_size"`, `"max_entries"`, `"map_flags"`, `"name"`, `"ncpus"`.
    pub field: &'static str,
    /// The refused value (for `map_flags`: the offending bits).
    pub value: u64,
    /// The rule it breaks.
    pub reason: &'static str,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            "map_flags" => write!(f, "map_flags {:#x}: {}", self.value, self.reason)?,
            "name" => write!(f, "name: {}", self.reason)?,
            field => write!(f, "{field} {}: {}", self.value, self.reason)?,
        }
        write!(f, " ({})", self.errno.name())
    }
}

const fn def_err(errno: MapError, field: &'static str, value: u64, reason: &'static str) -> DefError {
    DefError { errno, field, value, reason }
}

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

/// The map types this runtime has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH` (1).
    Hash,
    /// `BPF_MAP_TYPE_ARRAY` (2).
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (6).
    PercpuArray,
    /// `BPF_MAP_TYPE_RINGBUF` (27).
    RingBuf,
}

impl MapType {
    /// The type of Linux's number, if this runtime has it.
    pub const fn from_u32(t: u32) -> Option<MapType> {
        match t {
            BPF_MAP_TYPE_HASH => Some(MapType::Hash),
            BPF_MAP_TYPE_ARRAY => Some(MapType::Array),
            BPF_MAP_TYPE_PERCPU_ARRAY => Some(MapType::PercpuArray),
            BPF_MAP_TYPE_RINGBUF => Some(MapType::RingBuf),
            _ => None,
        }
    }

    /// Linux's number.
    pub const fn to_u32(self) -> u32 {
        match self {
            MapType::Hash => BPF_MAP_TYPE_HASH,
            MapType::Array => BPF_MAP_TYPE_ARRAY,
            MapType::PercpuArray => BPF_MAP_TYPE_PERCPU_ARRAY,
            MapType::RingBuf => BPF_MAP_TYPE_RINGBUF,
        }
    }

    /// The name bpftool prints (`hash`, `array`, `percpu_array`, `ringbuf`).
    pub const fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::PercpuArray => "percpu_array",
            MapType::RingBuf => "ringbuf",
        }
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A map definition as libbpf reads it from a BTF-defined map (`__uint(type, ...)`,
/// `__type(key, ...)` / `__uint(key_size, ...)`, `__uint(max_entries, ...)`,
/// `__uint(map_flags, ...)`) and hands it to `BPF_MAP_CREATE`. A ring buffer's size is its
/// `max_entries`, with key and value sizes 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapDef {
    /// Linux's map type number (`BPF_MAP_TYPE_*`).
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Number of elements (ring buffer: data size in bytes).
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub map_flags: u32,
}

const fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

const fn flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

impl MapDef {
    /// A definition.
    pub const fn new(map_type: u32, key_size: u32, value_size: u32, max_entries: u32, map_flags: u32) -> MapDef {
        MapDef { map_type, key_size, value_size, max_entries, map_flags }
    }

    /// Checks the definition as Linux's `map_create` and the type's `map_alloc_check` /
    /// `map_alloc` do, in their order, with their errno.
    pub fn validate(&self) -> Result<MapType, DefError> {
        use MapError::{Inval, TooBig};
        let ty = MapType::from_u32(self.map_type).ok_or(def_err(
            Inval,
            "map_type",
            self.map_type as u64,
            "unsupported map type (this runtime has hash 1, array 2, percpu_array 6, ringbuf 27)",
        ))?;
        let f = self.map_flags;
        let (ks, vs, max) = (self.key_size as u64, self.value_size as u64, self.max_entries as u64);
        if f & BPF_F_RDONLY != 0 && f & BPF_F_WRONLY != 0 {
            return Err(def_err(
                Inval,
                "map_flags",
                (BPF_F_RDONLY | BPF_F_WRONLY) as u64,
                "BPF_F_RDONLY and BPF_F_WRONLY together",
            ));
        }
        match ty {
            MapType::Array | MapType::PercpuArray => {
                let percpu = ty == MapType::PercpuArray;
                if max == 0 {
                    return Err(def_err(Inval, "max_entries", max, "must be > 0"));
                }
                if ks != 4 {
                    return Err(def_err(Inval, "key_size", ks, "must be 4 (a u32 index) for an array"));
                }
                if vs == 0 {
                    return Err(def_err(Inval, "value_size", vs, "must be > 0"));
                }
                if f & !ARRAY_CREATE_FLAG_MASK != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (f & !ARRAY_CREATE_FLAG_MASK) as u64,
                        "flags an array does not take",
                    ));
                }
                if !flags_access_ok(f) {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) as u64,
                        "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together",
                    ));
                }
                if percpu && f & BPF_F_NUMA_NODE != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        BPF_F_NUMA_NODE as u64,
                        "BPF_F_NUMA_NODE on a per-CPU map",
                    ));
                }
                if percpu && f & (BPF_F_MMAPABLE | BPF_F_INNER_MAP) != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (f & (BPF_F_MMAPABLE | BPF_F_INNER_MAP)) as u64,
                        "BPF_F_MMAPABLE and BPF_F_INNER_MAP are for plain arrays only",
                    ));
                }
                if f & BPF_F_PRESERVE_ELEMS != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        BPF_F_PRESERVE_ELEMS as u64,
                        "BPF_F_PRESERVE_ELEMS is for perf event arrays only",
                    ));
                }
                if vs > i32::MAX as u64 {
                    return Err(def_err(TooBig, "value_size", vs, "must be at most INT_MAX"));
                }
                if percpu && round8(vs) > PCPU_MIN_UNIT_SIZE {
                    return Err(def_err(
                        TooBig,
                        "value_size",
                        vs,
                        "a per-CPU value must fit 32 KiB (PCPU_MIN_UNIT_SIZE)",
                    ));
                }
            }
            MapType::Hash => {
                if f & !HTAB_CREATE_FLAG_MASK != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (f & !HTAB_CREATE_FLAG_MASK) as u64,
                        "flags a hash map does not take",
                    ));
                }
                if !flags_access_ok(f) {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) as u64,
                        "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together",
                    ));
                }
                if f & BPF_F_NO_COMMON_LRU != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        BPF_F_NO_COMMON_LRU as u64,
                        "BPF_F_NO_COMMON_LRU is for LRU hash maps only",
                    ));
                }
                if max == 0 {
                    return Err(def_err(Inval, "max_entries", max, "must be > 0"));
                }
                if ks == 0 {
                    return Err(def_err(Inval, "key_size", ks, "must be > 0"));
                }
                if vs == 0 {
                    return Err(def_err(Inval, "value_size", vs, "must be > 0"));
                }
                if ks + vs >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE {
                    return Err(def_err(
                        TooBig,
                        "value_size",
                        vs,
                        "key_size + value_size must stay below KMALLOC_MAX_SIZE (4 MiB) less the element header",
                    ));
                }
                if max > 1 << 31 || max.next_power_of_two() > u32::MAX as u64 / HTAB_BUCKET_SIZE {
                    return Err(def_err(TooBig, "max_entries", max, "too many buckets (at most 2^27 entries)"));
                }
            }
            MapType::RingBuf => {
                if f & !RINGBUF_CREATE_FLAG_MASK != 0 {
                    return Err(def_err(
                        Inval,
                        "map_flags",
                        (f & !RINGBUF_CREATE_FLAG_MASK) as u64,
                        "flags a ring buffer does not take",
                    ));
                }
                if ks != 0 {
                    return Err(def_err(Inval, "key_size", ks, "must be 0 for a ring buffer"));
                }
                if vs != 0 {
                    return Err(def_err(Inval, "value_size", vs, "must be 0 for a ring buffer"));
                }
                if !max.is_power_of_two() || max % PAGE_SIZE as u64 != 0 {
                    return Err(def_err(
                        Inval,
                        "max_entries",
                        max,
                        "a ring buffer's size must be a power of two multiple of the page size (4096)",
                    ));
                }
            }
        }
        Ok(ty)
    }
}

// ---------------------------------------------------------------------------------------------
// Memory: words, copies, allocation, the re-entry guard
// ---------------------------------------------------------------------------------------------

const fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

/// `n` values made by `f`, or `ENOMEM` (never the allocator's abort).
fn try_alloc<T>(n: usize, f: impl FnMut() -> T) -> Result<Vec<T>, MapError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| MapError::NoMem)?;
    v.resize_with(n, f);
    Ok(v)
}

fn zeroed_words(n: usize) -> Result<Vec<AtomicU64>, MapError> {
    try_alloc(n, || AtomicU64::new(0))
}

/// A chunk of at most 8 bytes as a word in memory order, zero-padded.
fn pad_word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..chunk.len()].copy_from_slice(chunk);
    u64::from_ne_bytes(w)
}

/// Copies `src` into the words (the last one zero-padded).
fn store_bytes(dst: &[AtomicU64], src: &[u8]) {
    for (d, chunk) in dst.iter().zip(src.chunks(8)) {
        d.store(pad_word(chunk), Ordering::Relaxed);
    }
}

/// Copies the words' first `dst.len()` bytes out.
fn load_bytes(src: &[AtomicU64], dst: &mut [u8]) {
    for (chunk, s) in dst.chunks_mut(8).zip(src) {
        let w = s.load(Ordering::Relaxed).to_ne_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

fn zero_words(dst: &[AtomicU64]) {
    for d in dst {
        d.store(0, Ordering::Relaxed);
    }
}

/// Whether the words hold `bytes` (zero-padded, as [`store_bytes`] leaves them).
fn words_equal(words: &[AtomicU64], bytes: &[u8]) -> bool {
    words.iter().zip(bytes.chunks(8)).all(|(w, chunk)| w.load(Ordering::Relaxed) == pad_word(chunk))
}

/// The byte address of word `index` of `words`, with the provenance of the whole buffer (a
/// program may access any byte of the value through it).
fn word_addr(words: &[AtomicU64], index: usize) -> Option<NonNull<u8>> {
    NonNull::new(words.as_ptr().wrapping_add(index).cast::<u8>().cast_mut())
}

/// Linux's per-CPU `map_locked` counters: an operation that takes a map's spin lock first marks
/// its CPU busy in that map, so a program that interrupts it on the same CPU (a kprobe, an
/// interrupt) and calls into the same map is refused instead of spinning forever on a lock its
/// own CPU holds.
struct CpuGuards(Vec<AtomicU32>);

/// A CPU marked busy in a map until dropped.
struct Entered<'a>(&'a AtomicU32);

impl CpuGuards {
    fn new(ncpus: u32) -> Result<CpuGuards, MapError> {
        Ok(CpuGuards(try_alloc(ncpus as usize, || AtomicU32::new(0))?))
    }

    fn enter(&self, cpu: u32) -> Result<Entered<'_>, MapError> {
        let busy = self.0.get(cpu as usize).ok_or(MapError::Inval)?;
        // Acquire: the lock taken after this cannot move before it, so an interrupting program
        // always sees the mark while the lock is held.
        if busy.fetch_add(1, Ordering::Acquire) != 0 {
            busy.fetch_sub(1, Ordering::Release);
            return Err(MapError::Busy);
        }
        Ok(Entered(busy))
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Regions: what an address is
// ---------------------------------------------------------------------------------------------

/// What the memory of a [`Region`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The value of array element `index`.
    ArrayValue {
        /// The element's index (its key).
        index: u32,
    },
    /// CPU `cpu`'s value of per-CPU array element `index`.
    PercpuValue {
        /// The element's index (its key).
        index: u32,
        /// Whose copy.
        cpu: u32,
    },
    /// The value of hash element slot `slot` (the slot may have been deleted since: its memory
    /// is still the map's).
    HashValue {
        /// The slot in the map's element pool.
        slot: u32,
    },
    /// The data of a ring-buffer record reserved and not yet submitted or discarded, whose
    /// header is at producer position `pos`.
    RingRecord {
        /// The record's position (of its header).
        pos: u64,
    },
}

/// A piece of map memory a program may access: `len` bytes at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Address of the first byte (8-byte aligned).
    pub start: usize,
    /// Bytes a program may access: the value size, or the record's size.
    pub len: usize,
    /// Which value or record.
    pub kind: RegionKind,
}

impl Region {
    /// Whether `[addr, addr + len)` lies inside the region (`len` 0: `addr` inside it).
    pub fn covers(&self, addr: usize, len: usize) -> bool {
        addr >= self.start && addr - self.start < self.len && len <= self.len - (addr - self.start)
    }
}

/// Which of `maps` holds `[addr, addr + len)` and where: the reverse query of the interpreter's
/// memory checks and of `bpf_ringbuf_submit`/`discard` (which get only the record's address).
pub fn find_region<'a, M>(maps: impl IntoIterator<Item = &'a M>, addr: usize, len: usize) -> Option<(&'a M, Region)>
where
    M: core::borrow::Borrow<Map> + 'a,
{
    maps.into_iter().find_map(|m| {
        let r = m.borrow().region_of(addr)?;
        r.covers(addr, len).then_some((m, r))
    })
}

// ---------------------------------------------------------------------------------------------
// ARRAY and PERCPU_ARRAY
// ---------------------------------------------------------------------------------------------

/// Arrays and per-CPU arrays: `copies` (1, or one per CPU) blocks of `max_entries` values, each
/// value `round_up(value_size, 8)` bytes, all preallocated and zeroed; lookups take no lock.
struct ArrayStore {
    value_size: usize,
    elem_words: usize,
    max_entries: u32,
    percpu: bool,
    copies: u32,
    data: Vec<AtomicU64>,
}

/// Which copies of a per-CPU value an operation touches.
#[derive(Clone, Copy)]
enum Copies {
    /// One CPU's (a program's call).
    Cpu(u32),
    /// All CPUs' (the syscall side).
    All,
}

impl ArrayStore {
    fn new(def: &MapDef, ncpus: u32, percpu: bool) -> Result<ArrayStore, MapError> {
        let elem_words = words_for(def.value_size as usize);
        let copies = if percpu { ncpus } else { 1 };
        let n = (copies as usize)
            .checked_mul(def.max_entries as usize)
            .and_then(|n| n.checked_mul(elem_words))
            .ok_or(MapError::NoMem)?;
        Ok(ArrayStore {
            value_size: def.value_size as usize,
            elem_words,
            max_entries: def.max_entries,
            percpu,
            copies,
            data: zeroed_words(n)?,
        })
    }

    fn index(key: &[u8]) -> Result<u32, MapError> {
        key.try_into().map(u32::from_ne_bytes).map_err(|_| MapError::Inval)
    }

    fn first_word(&self, copy: u32, index: u32) -> usize {
        (copy as usize * self.max_entries as usize + index as usize) * self.elem_words
    }

    fn value(&self, copy: u32, index: u32) -> &[AtomicU64] {
        let at = self.first_word(copy, index);
        &self.data[at..at + self.elem_words]
    }

    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let index = Self::index(key).ok()?;
        if index >= self.max_entries {
            return None;
        }
        let copy = if self.percpu { cpu } else { 0 };
        word_addr(&self.data, self.first_word(copy, index))
    }

    /// Linux's `array_map_update_elem` / `bpf_percpu_array_update` checks, in their order.
    fn check_update(&self, key: &[u8], flags: u64, copies: Copies) -> Result<u32, MapError> {
        let index = Self::index(key)?;
        // The syscall's per-CPU update (`bpf_percpu_array_update`) refuses BPF_F_LOCK first.
        if flags & !BPF_F_LOCK > BPF_EXIST || (matches!(copies, Copies::All) && flags > BPF_EXIST) {
            return Err(MapError::Inval);
        }
        if index >= self.max_entries {
            return Err(MapError::TooBig);
        }
        if flags & BPF_NOEXIST != 0 {
            return Err(MapError::Exist);
        }
        if flags & BPF_F_LOCK != 0 {
            // No value here holds a `struct bpf_spin_lock`.
            return Err(MapError::Inval);
        }
        Ok(index)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64, copies: Copies) -> Result<(), MapError> {
        let index = self.check_update(key, flags, copies)?;
        match copies {
            Copies::Cpu(cpu) => {
                if value.len() != self.value_size {
                    return Err(MapError::Inval);
                }
                store_bytes(self.value(if self.percpu { cpu } else { 0 }, index), value);
            }
            Copies::All => {
                let stride = self.elem_words * 8;
                if value.len() != stride * self.copies as usize {
                    return Err(MapError::Inval);
                }
                for (copy, chunk) in (0..self.copies).zip(value.chunks(stride)) {
                    store_bytes(self.value(copy, index), &chunk[..self.value_size]);
                }
            }
        }
        Ok(())
    }

    /// The syscall's lookup: the value, or every CPU's value each rounded up to 8 bytes.
    fn copy_out(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        let index = Self::index(key)?;
        if index >= self.max_entries {
            return Err(MapError::NoEnt);
        }
        let stride = if self.percpu { self.elem_words * 8 } else { self.value_size };
        if out.len() != stride * self.copies as usize {
            return Err(MapError::Inval);
        }
        for (copy, chunk) in (0..self.copies).zip(out.chunks_mut(stride)) {
            chunk.fill(0);
            load_bytes(self.value(copy, index), &mut chunk[..self.value_size]);
        }
        Ok(())
    }

    /// Linux's `array_map_get_next_key`: no key or a key out of range gives 0.
    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        let index = match key {
            Some(k) => Self::index(k)?,
            None => u32::MAX,
        };
        let next: &mut [u8; 4] = next.try_into().map_err(|_| MapError::Inval)?;
        let n = if index >= self.max_entries {
            0
        } else if index == self.max_entries - 1 {
            return Err(MapError::NoEnt);
        } else {
            index + 1
        };
        *next = n.to_ne_bytes();
        Ok(())
    }

    fn region_of(&self, addr: usize) -> Option<Region> {
        let base = self.data.as_ptr() as usize;
        let off = addr.checked_sub(base)?;
        if off >= self.data.len() * 8 {
            return None;
        }
        let stride = self.elem_words * 8;
        let elem = off / stride;
        let (copy, index) = ((elem / self.max_entries as usize) as u32, (elem % self.max_entries as usize) as u32);
        let start = base + elem * stride;
        if addr - start >= self.value_size {
            return None; // the padding after a value
        }
        let kind =
            if self.percpu { RegionKind::PercpuValue { index, cpu: copy } } else { RegionKind::ArrayValue { index } };
        Some(Region { start, len: self.value_size, kind })
    }

    fn clear(&self) {
        zero_words(&self.data);
    }
}

// ---------------------------------------------------------------------------------------------
// HASH
// ---------------------------------------------------------------------------------------------

const NIL: u32 = u32::MAX;

/// The element pool's lists (under the pool lock), threaded through `HashTab::next`.
struct Pool {
    /// Stack of reusable elements.
    free: u32,
    free_len: u32,
    /// Queue (oldest first) of elements deleted or replaced since the last reclaim.
    retired_head: u32,
    retired_tail: u32,
    retired_len: u32,
}

/// A hash map's counters (for `bpf map list`-style output and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Elements in the map.
    pub entries: u32,
    /// Elements the pool has (`max_entries + ncpus`).
    pub pool: u32,
    /// Pool elements ready for reuse.
    pub free: u32,
    /// Elements deleted or replaced and waiting for [`Map::reclaim`].
    pub retired: u32,
    /// Times an update found no free element and reused a retired one before a reclaim.
    pub early_reuses: u64,
}

/// A hash map: chained buckets (one spin lock each, `roundup_pow_of_two(max_entries)` of them,
/// as Linux) over a preallocated pool of `max_entries + ncpus` elements (Linux's preallocation:
/// the extra one per CPU lets an update replace an element of a full map).
///
/// An element is `round_up(key_size, 8)` bytes of key then `round_up(value_size, 8)` of value in
/// `data`; its chain or pool link is in `next` and its hash in `hashes`. Lookups take the bucket
/// lock too (Linux's are lock-free under RCU). An update never writes a live value: it fills a
/// fresh element, links it at the head of the bucket and unlinks the old one, so a lookup sees
/// either value whole, as on Linux. Lock order: a bucket lock, then the pool lock.
struct HashTab {
    key_size: usize,
    value_size: usize,
    key_words: usize,
    elem_words: usize,
    max_entries: u32,
    mask: u32,
    buckets: Vec<SpinMutex<u32>>,
    next: Vec<AtomicU32>,
    hashes: Vec<AtomicU32>,
    data: Vec<AtomicU64>,
    pool: SpinMutex<Pool>,
    pool_size: u32,
    count: AtomicU32,
    early_reuses: AtomicU64,
    guards: CpuGuards,
}

impl HashTab {
    fn new(def: &MapDef, ncpus: u32) -> Result<HashTab, MapError> {
        let key_words = words_for(def.key_size as usize);
        let elem_words = key_words + words_for(def.value_size as usize);
        let n_buckets = def.max_entries.checked_next_power_of_two().ok_or(MapError::TooBig)?;
        let pool_size = def.max_entries.checked_add(ncpus).filter(|&n| n != NIL).ok_or(MapError::TooBig)?;
        let words = (pool_size as usize).checked_mul(elem_words).ok_or(MapError::NoMem)?;
        let mut i = 0u32;
        let next = try_alloc(pool_size as usize, || {
            i += 1;
            AtomicU32::new(if i == pool_size { NIL } else { i })
        })?;
        Ok(HashTab {
            key_size: def.key_size as usize,
            value_size: def.value_size as usize,
            key_words,
            elem_words,
            max_entries: def.max_entries,
            mask: n_buckets - 1,
            buckets: try_alloc(n_buckets as usize, || SpinMutex::new(NIL))?,
            next,
            hashes: try_alloc(pool_size as usize, || AtomicU32::new(0))?,
            data: zeroed_words(words)?,
            pool: SpinMutex::new(Pool {
                free: 0,
                free_len: pool_size,
                retired_head: NIL,
                retired_tail: NIL,
                retired_len: 0,
            }),
            pool_size,
            count: AtomicU32::new(0),
            early_reuses: AtomicU64::new(0),
            guards: CpuGuards::new(ncpus)?,
        })
    }

    /// The key's hash (seed 0: Linux's with `BPF_F_ZERO_SEED`, though not its jhash).
    fn hash(key: &[u8]) -> u32 {
        let mut h: u64 = key.len() as u64;
        for chunk in key.chunks(8) {
            h = (h ^ pad_word(chunk)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h ^ (h >> 32)) as u32
    }

    fn elem(&self, e: u32) -> &[AtomicU64] {
        let at = e as usize * self.elem_words;
        &self.data[at..at + self.elem_words]
    }

    fn key_of(&self, e: u32) -> &[AtomicU64] {
        &self.elem(e)[..self.key_words]
    }

    fn value_of(&self, e: u32) -> &[AtomicU64] {
        &self.elem(e)[self.key_words..]
    }

    fn link(&self, e: u32) -> &AtomicU32 {
        &self.next[e as usize]
    }

    /// `(previous, element)` of `key` in the chain from `head` (`element` NIL if absent).
    fn find(&self, head: u32, hash: u32, key: &[u8]) -> (u32, u32) {
        let (mut prev, mut cur) = (NIL, head);
        while cur != NIL {
            if self.hashes[cur as usize].load(Ordering::Relaxed) == hash && words_equal(self.key_of(cur), key) {
                return (prev, cur);
            }
            prev = cur;
            cur = self.link(cur).load(Ordering::Relaxed);
        }
        (prev, NIL)
    }

    fn bucket(&self, hash: u32) -> &SpinMutex<u32> {
        &self.buckets[(hash & self.mask) as usize]
    }

    /// Takes an element from the pool: a free one, else the oldest retired one.
    fn alloc(&self) -> Option<u32> {
        let mut p = self.pool.lock();
        if p.free != NIL {
            let e = p.free;
            p.free = self.link(e).load(Ordering::Relaxed);
            p.free_len -= 1;
            return Some(e);
        }
        if p.retired_head != NIL {
            let e = p.retired_head;
            p.retired_head = self.link(e).load(Ordering::Relaxed);
            if p.retired_head == NIL {
                p.retired_tail = NIL;
            }
            p.retired_len -= 1;
            self.early_reuses.fetch_add(1, Ordering::Relaxed);
            return Some(e);
        }
        None
    }

    /// Puts an unlinked element at the end of the retired queue.
    fn retire(&self, e: u32) {
        let mut p = self.pool.lock();
        self.link(e).store(NIL, Ordering::Relaxed);
        if p.retired_tail == NIL {
            p.retired_head = e;
        } else {
            self.link(p.retired_tail).store(e, Ordering::Relaxed);
        }
        p.retired_tail = e;
        p.retired_len += 1;
    }

    /// Unlinks `e` (after `prev`) from the chain whose head is `head`.
    fn unlink(&self, head: &mut u32, prev: u32, e: u32) {
        let after = self.link(e).load(Ordering::Relaxed);
        if prev == NIL {
            *head = after;
        } else {
            self.link(prev).store(after, Ordering::Relaxed);
        }
    }

    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if key.len() != self.key_size {
            return None;
        }
        let _busy = self.guards.enter(cpu).ok()?;
        let h = Self::hash(key);
        let head = self.bucket(h).lock();
        let (_, e) = self.find(*head, h, key);
        if e == NIL {
            return None;
        }
        word_addr(&self.data, e as usize * self.elem_words + self.key_words)
    }

    fn copy_out(&self, key: &[u8], out: &mut [u8], cpu: u32) -> Result<(), MapError> {
        if key.len() != self.key_size || out.len() != self.value_size {
            return Err(MapError::Inval);
        }
        let _busy = self.guards.enter(cpu)?;
        let h = Self::hash(key);
        let head = self.bucket(h).lock();
        let (_, e) = self.find(*head, h, key);
        if e == NIL {
            return Err(MapError::NoEnt);
        }
        load_bytes(self.value_of(e), out);
        Ok(())
    }

    /// Linux's `htab_map_update_elem` for a preallocated map.
    fn update(&self, key: &[u8], value: &[u8], flags: u64, cpu: u32) -> Result<(), MapError> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(MapError::Inval);
        }
        if flags & !BPF_F_LOCK > BPF_EXIST || flags & BPF_F_LOCK != 0 {
            return Err(MapError::Inval);
        }
        let _busy = self.guards.enter(cpu)?;
        let h = Self::hash(key);
        let mut head = self.bucket(h).lock();
        let (prev, old) = self.find(*head, h, key);
        match (old != NIL, flags) {
            (true, BPF_NOEXIST) => return Err(MapError::Exist),
            (false, BPF_EXIST) => return Err(MapError::NoEnt),
            _ => {}
        }
        if old == NIL {
            let max = self.max_entries;
            self.count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| (c < max).then_some(c + 1))
                .map_err(|_| MapError::TooBig)?;
        }
        let Some(new) = self.alloc() else {
            // Only when more callers than CPUs update at once.
            if old == NIL {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(MapError::TooBig);
        };
        let elem = self.elem(new);
        store_bytes(&elem[..self.key_words], key);
        store_bytes(&elem[self.key_words..], value);
        self.hashes[new as usize].store(h, Ordering::Relaxed);
        if old != NIL {
            self.unlink(&mut head, prev, old);
        }
        self.link(new).store(*head, Ordering::Relaxed);
        *head = new;
        drop(head);
        if old != NIL {
            self.retire(old);
        }
        Ok(())
    }

    fn delete(&self, key: &[u8], cpu: u32) -> Result<(), MapError> {
        if key.len() != self.key_size {
            return Err(MapError::Inval);
        }
        let _busy = self.guards.enter(cpu)?;
        let h = Self::hash(key);
        let mut head = self.bucket(h).lock();
        let (prev, e) = self.find(*head, h, key);
        if e == NIL {
            return Err(MapError::NoEnt);
        }
        self.unlink(&mut head, prev, e);
        self.count.fetch_sub(1, Ordering::Relaxed);
        drop(head);
        self.retire(e);
        Ok(())
    }

    /// Linux's `htab_map_get_next_key`: the element after `key` in its bucket, else the first
    /// element of the next non-empty bucket; with no key, or a key not in the map, the first
    /// element of the map.
    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8], cpu: u32) -> Result<(), MapError> {
        if next.len() != self.key_size || key.is_some_and(|k| k.len() != self.key_size) {
            return Err(MapError::Inval);
        }
        let _busy = self.guards.enter(cpu)?;
        let mut first_bucket = 0;
        if let Some(key) = key {
            let h = Self::hash(key);
            let head = self.bucket(h).lock();
            let (_, e) = self.find(*head, h, key);
            if e != NIL {
                let after = self.link(e).load(Ordering::Relaxed);
                if after != NIL {
                    load_bytes(self.key_of(after), next);
                    return Ok(());
                }
                first_bucket = (h & self.mask) as usize + 1;
            }
        }
        for bucket in &self.buckets[first_bucket..] {
            let head = bucket.lock();
            if *head != NIL {
                load_bytes(self.key_of(*head), next);
                return Ok(());
            }
        }
        Err(MapError::NoEnt)
    }

    fn reclaim(&self, cpu: u32) -> Result<u32, MapError> {
        let _busy = self.guards.enter(cpu)?;
        let mut p = self.pool.lock();
        let n = p.retired_len;
        if n != 0 {
            self.link(p.retired_tail).store(p.free, Ordering::Relaxed);
            p.free = p.retired_head;
            p.free_len += n;
            p.retired_head = NIL;
            p.retired_tail = NIL;
            p.retired_len = 0;
        }
        Ok(n)
    }

    fn stats(&self) -> HashStats {
        let p = self.pool.lock();
        HashStats {
            entries: self.count.load(Ordering::Relaxed),
            pool: self.pool_size,
            free: p.free_len,
            retired: p.retired_len,
            early_reuses: self.early_reuses.load(Ordering::Relaxed),
        }
    }

    fn region_of(&self, addr: usize) -> Option<Region> {
        let base = self.data.as_ptr() as usize;
        let off = addr.checked_sub(base)?;
        if off >= self.data.len() * 8 {
            return None;
        }
        let stride = self.elem_words * 8;
        let slot = off / stride;
        let start = base + slot * stride + self.key_words * 8;
        if addr < start || addr - start >= self.value_size {
            return None; // the key, or the padding after the value
        }
        Some(Region { start, len: self.value_size, kind: RegionKind::HashValue { slot: slot as u32 } })
    }
}

// ---------------------------------------------------------------------------------------------
// RINGBUF
// ---------------------------------------------------------------------------------------------

/// The header word of a record: `len` then `pg_off`, in memory order.
fn hdr_word(len: u32, pg_off: u32) -> u64 {
    let (l, p) = (len.to_ne_bytes(), pg_off.to_ne_bytes());
    u64::from_ne_bytes([l[0], l[1], l[2], l[3], p[0], p[1], p[2], p[3]])
}

fn hdr_len(word: u64) -> u32 {
    let b = word.to_ne_bytes();
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// The space a record with header length field `len` takes (libbpf's `roundup_len`).
const fn record_space(len: u32) -> u64 {
    round8((len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) as u64 + BPF_RINGBUF_HDR_SZ)
}

/// Linux's BPF ring buffer (`kernel/bpf/ringbuf.c`): a data area of `size` bytes (a power of
/// two) and two free-running 64-bit positions. A producer reserves a record under a spin lock
/// (`reserve`: 8-byte header `len | BUSY`, data rounded up to 8 bytes), fills it in place and
/// commits it without the lock (`submit`, or `discard` which sets `DISCARD`); the consumer reads
/// committed records in position order, skips discarded ones and stops at the first busy one.
///
/// Linux maps the data pages twice in a row so a record that wraps past the end is contiguous;
/// here the data area is followed by `size` more bytes that play the second mapping for such a
/// record (its bytes past the end live there and are read from there), so a record is always
/// contiguous at the cost of twice the memory.
pub struct RingBuf {
    size: u64,
    mask: u64,
    data: Vec<AtomicU64>,
    consumer_pos: AtomicU64,
    producer_pos: AtomicU64,
    /// Producers' lock; holds `pending_pos` (the oldest record possibly still busy).
    producer: SpinMutex<u64>,
    consumer: SpinMutex<()>,
    wakeups: AtomicU64,
    guards: CpuGuards,
}

impl RingBuf {
    fn new(size: u32, ncpus: u32) -> Result<RingBuf, MapError> {
        let size = size as u64;
        Ok(RingBuf {
            size,
            mask: size - 1,
            data: zeroed_words(usize::try_from(size / 4).map_err(|_| MapError::NoMem)?)?,
            consumer_pos: AtomicU64::new(0),
            producer_pos: AtomicU64::new(0),
            producer: SpinMutex::new(0),
            consumer: SpinMutex::new(()),
            wakeups: AtomicU64::new(0),
            guards: CpuGuards::new(ncpus)?,
        })
    }

    /// Size of the data area in bytes (the map's `max_entries`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The producer position: bytes ever reserved (headers and padding included).
    pub fn producer_pos(&self) -> u64 {
        self.producer_pos.load(Ordering::Acquire)
    }

    /// The consumer position: bytes ever consumed.
    pub fn consumer_pos(&self) -> u64 {
        self.consumer_pos.load(Ordering::Acquire)
    }

    /// Bytes reserved and not yet consumed (`BPF_RB_AVAIL_DATA`).
    pub fn avail_data(&self) -> u64 {
        let cons = self.consumer_pos();
        self.producer_pos().wrapping_sub(cons)
    }

    /// `bpf_ringbuf_query(map, flags)`: `BPF_RB_AVAIL_DATA`, `BPF_RB_RING_SIZE`,
    /// `BPF_RB_CONS_POS`, `BPF_RB_PROD_POS`; 0 for anything else, as Linux.
    pub fn query(&self, flags: u64) -> u64 {
        match flags {
            BPF_RB_AVAIL_DATA => self.avail_data(),
            BPF_RB_RING_SIZE => self.size,
            BPF_RB_CONS_POS => self.consumer_pos(),
            BPF_RB_PROD_POS => self.producer_pos(),
            _ => 0,
        }
    }

    /// Wake-ups the producers asked for since the last call (a consumer waiting for data polls
    /// this; Linux queues an `irq_work` that wakes the epoll waiters).
    pub fn take_wakeups(&self) -> u64 {
        self.wakeups.swap(0, Ordering::AcqRel)
    }

    fn header(&self, off: u64) -> &AtomicU64 {
        &self.data[(off / 8) as usize]
    }

    /// `bpf_ringbuf_reserve(map, size, flags)`: the address of `size` writable bytes (8-byte
    /// aligned) in a new busy record, or `None` (the helper's NULL) when `flags` is not 0, the
    /// record is larger than the ring can ever hold, the ring has no room for it, or (re-entry
    /// on `cpu`) the ring is in use by an interrupted reservation on the same CPU.
    pub fn reserve(&self, size: u64, flags: u64, cpu: u32) -> Option<NonNull<u8>> {
        if flags != 0 || size > RINGBUF_MAX_RECORD_SZ {
            return None;
        }
        let len = round8(size + BPF_RINGBUF_HDR_SZ);
        if len > self.size {
            return None;
        }
        let cons = self.consumer_pos.load(Ordering::Acquire);
        let _busy = self.guards.enter(cpu).ok()?;
        let mut pending = self.producer.lock();
        let prod = self.producer_pos.load(Ordering::Relaxed);
        // Move the oldest-busy mark past the records committed since.
        let mut pend = *pending;
        while pend < prod {
            let hdr = hdr_len(self.header(pend & self.mask).load(Ordering::Acquire));
            if hdr & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            pend += record_space(hdr);
        }
        *pending = pend;
        // Neither past unconsumed data nor more than a ring from the oldest busy record.
        let new_prod = prod + len;
        if new_prod - cons > self.mask || new_prod - pend > self.mask {
            return None;
        }
        let off = prod & self.mask;
        // Linux's pg_off locates the ring from a record; here it is the header's page in the data.
        let pg_off = (off / PAGE_SIZE as u64) as u32;
        self.header(off).store(hdr_word(size as u32 | BPF_RINGBUF_BUSY_BIT, pg_off), Ordering::Relaxed);
        self.producer_pos.store(new_prod, Ordering::Release);
        drop(pending);
        word_addr(&self.data, ((off + BPF_RINGBUF_HDR_SZ) / 8) as usize)
    }

    /// The header offset of a record whose data is at `sample`, if `sample` is a record this
    /// ring reserved and nobody committed yet.
    fn busy_record(&self, sample: usize) -> Option<u64> {
        let off = (sample as u64).checked_sub(self.data.as_ptr() as u64)?.checked_sub(BPF_RINGBUF_HDR_SZ)?;
        if off >= self.size || off % 8 != 0 {
            return None;
        }
        let hdr = hdr_len(self.header(off).load(Ordering::Acquire));
        (hdr & BPF_RINGBUF_BUSY_BIT != 0).then_some(off)
    }

    fn commit(&self, sample: *const u8, flags: u64, discard: bool) -> Result<(), MapError> {
        let off = self.busy_record(sample as usize).ok_or(MapError::Inval)?;
        let bits = BPF_RINGBUF_BUSY_BIT | if discard { BPF_RINGBUF_DISCARD_BIT } else { 0 };
        // Release: the record's data is written before the consumer sees it committed.
        self.header(off).fetch_xor(hdr_word(bits, 0), Ordering::AcqRel);
        let cons = self.consumer_pos.load(Ordering::Acquire) & self.mask;
        if flags & BPF_RB_FORCE_WAKEUP != 0 || (cons == off && flags & BPF_RB_NO_WAKEUP == 0) {
            self.wakeups.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// `bpf_ringbuf_submit(data, flags)`: commits a reserved record. Linux's helper returns
    /// nothing; here a pointer that is not a reserved, uncommitted record of this ring is refused
    /// with `EINVAL` and nothing changes (the verifier makes it unreachable).
    pub fn submit(&self, sample: *const u8, flags: u64) -> Result<(), MapError> {
        self.commit(sample, flags, false)
    }

    /// `bpf_ringbuf_discard(data, flags)`: commits a reserved record as discarded.
    pub fn discard(&self, sample: *const u8, flags: u64) -> Result<(), MapError> {
        self.commit(sample, flags, true)
    }

    /// `bpf_ringbuf_output(map, data, size, flags)`: reserves, copies, submits. `EINVAL` for
    /// flags other than `BPF_RB_NO_WAKEUP`/`BPF_RB_FORCE_WAKEUP`, `EAGAIN` when there is no room.
    pub fn output(&self, data: &[u8], flags: u64, cpu: u32) -> Result<(), MapError> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(MapError::Inval);
        }
        let rec = self.reserve(data.len() as u64, 0, cpu).ok_or(MapError::Again)?;
        let first = (rec.as_ptr() as usize - self.data.as_ptr() as usize) / 8;
        store_bytes(&self.data[first..first + words_for(data.len())], data);
        self.commit(rec.as_ptr(), flags, false)
    }

    /// Consumes committed records in order, at most `limit`, handing each non-discarded record's
    /// data to `f`; stops at the first record still busy. Returns the records handed over.
    pub fn consume_up_to(&self, limit: usize, mut f: impl FnMut(&[u8])) -> usize {
        let _one_consumer = self.consumer.lock();
        let mut cons = self.consumer_pos.load(Ordering::Relaxed);
        let mut buf = Vec::new();
        let mut n = 0;
        while n < limit {
            let prod = self.producer_pos.load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let off = cons & self.mask;
            let len = hdr_len(self.header(off).load(Ordering::Acquire));
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                let size = len as usize;
                let first = ((off + BPF_RINGBUF_HDR_SZ) / 8) as usize;
                buf.clear();
                buf.resize(size, 0);
                load_bytes(&self.data[first..first + words_for(size)], &mut buf);
                f(&buf);
                n += 1;
            }
            cons += record_space(len);
            // Release: this record's bytes are read before a producer may reuse them.
            self.consumer_pos.store(cons, Ordering::Release);
        }
        n
    }

    /// Consumes every committed record (libbpf's `ring_buffer__consume`).
    pub fn consume(&self, f: impl FnMut(&[u8])) -> usize {
        self.consume_up_to(usize::MAX, f)
    }

    /// The next committed, non-discarded record, if any.
    pub fn consume_one(&self) -> Option<Vec<u8>> {
        let mut out = None;
        self.consume_up_to(1, |r| out = Some(r.to_vec()));
        out
    }

    /// The busy record whose data holds `addr`. Walks the headers from the consumer to the
    /// producer position: exact while no other CPU produces or consumes, a best effort otherwise.
    fn region_of(&self, addr: usize) -> Option<Region> {
        let base = self.data.as_ptr() as usize;
        if addr < base || addr - base >= self.data.len() * 8 {
            return None;
        }
        let prod = self.producer_pos.load(Ordering::Acquire);
        let mut pos = self.consumer_pos.load(Ordering::Acquire);
        while pos < prod {
            let off = pos & self.mask;
            let len = hdr_len(self.header(off).load(Ordering::Acquire));
            let size = (len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) as usize;
            let start = base + (off + BPF_RINGBUF_HDR_SZ) as usize;
            if len & BPF_RINGBUF_BUSY_BIT != 0 && addr >= start && addr - start < size {
                return Some(Region { start, len: size, kind: RegionKind::RingRecord { pos } });
            }
            pos += record_space(len);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Map
// ---------------------------------------------------------------------------------------------

enum Store {
    Array(ArrayStore),
    Hash(HashTab),
    RingBuf(RingBuf),
}

/// A BPF map. `Send + Sync`: share it (`Arc<Map>`) between the CPUs running programs and the
/// kernel's user side.
pub struct Map {
    name: String,
    def: MapDef,
    map_type: MapType,
    ncpus: u32,
    frozen: AtomicBool,
    store: Store,
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").field("name", &self.name).field("type", &self.map_type).field("def", &self.def).finish()
    }
}

/// A `(key, value)` pair of [`Map::entries`], the value as [`Map::lookup_user`] gives it.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Linux's map name: libbpf cuts it to 15 bytes, the kernel allows letters, digits, `_` and `.`.
fn map_name(name: &str) -> Result<String, DefError> {
    let cut = &name.as_bytes()[..name.len().min(BPF_OBJ_NAME_LEN - 1)];
    if !cut.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return Err(def_err(MapError::Inval, "name", 0, "a map name holds only letters, digits, '_' and '.'"));
    }
    Ok(cut.iter().map(|&b| b as char).collect())
}

impl Map {
    /// Creates a map as `BPF_MAP_CREATE` does, for a machine of `ncpus` CPUs: validates the
    /// definition ([`MapDef::validate`]), cuts the name to Linux's 15 bytes, allocates every
    /// value (zeroed) up front. Refused with `ENOMEM` when the memory is not there.
    pub fn new(name: &str, def: MapDef, ncpus: u32) -> Result<Map, DefError> {
        let map_type = def.validate()?;
        let name = map_name(name)?;
        if ncpus == 0 {
            return Err(def_err(MapError::Inval, "ncpus", 0, "a map needs at least one CPU"));
        }
        let no_mem = |e: MapError| def_err(e, "max_entries", def.max_entries as u64, "not enough memory for the map");
        let store = match map_type {
            MapType::Array => Store::Array(ArrayStore::new(&def, ncpus, false).map_err(no_mem)?),
            MapType::PercpuArray => Store::Array(ArrayStore::new(&def, ncpus, true).map_err(no_mem)?),
            MapType::Hash => Store::Hash(HashTab::new(&def, ncpus).map_err(no_mem)?),
            MapType::RingBuf => Store::RingBuf(RingBuf::new(def.max_entries, ncpus).map_err(no_mem)?),
        };
        Ok(Map { name, def, map_type, ncpus, frozen: AtomicBool::new(false), store })
    }

    /// The name (at most 15 bytes, as Linux shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition it was made from.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// The type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// The number of CPUs it was made for.
    pub fn ncpus(&self) -> u32 {
        self.ncpus
    }

    /// Bytes of a value as the syscall side sees it: `value_size`, or for a per-CPU map
    /// `round_up(value_size, 8) * ncpus` (every CPU's value); 0 for a ring buffer.
    pub fn user_value_size(&self) -> usize {
        match self.map_type {
            MapType::PercpuArray => round8(self.def.value_size as u64) as usize * self.ncpus as usize,
            MapType::RingBuf => 0,
            _ => self.def.value_size as usize,
        }
    }

    /// Bytes of memory the map holds (values, keys, links, buckets), like bpftool's `memlock`.
    pub fn memory_bytes(&self) -> usize {
        match &self.store {
            Store::Array(a) => a.data.len() * 8,
            Store::Hash(h) => {
                h.data.len() * 8
                    + (h.next.len() + h.hashes.len()) * 4
                    + h.buckets.len() * core::mem::size_of::<SpinMutex<u32>>()
            }
            Store::RingBuf(r) => r.data.len() * 8,
        }
    }

    /// The ring buffer, for a `RINGBUF` map.
    pub fn as_ringbuf(&self) -> Option<&RingBuf> {
        match &self.store {
            Store::RingBuf(r) => Some(r),
            _ => None,
        }
    }

    /// A hash map's counters.
    pub fn hash_stats(&self) -> Option<HashStats> {
        match &self.store {
            Store::Hash(h) => Some(h.stats()),
            _ => None,
        }
    }

    fn check_cpu(&self, cpu: u32) -> Result<(), MapError> {
        if cpu < self.ncpus { Ok(()) } else { Err(MapError::Inval) }
    }

    // --- program side -------------------------------------------------------------------

    /// `bpf_map_lookup_elem(map, key)` from a program on `cpu`: the address of the value (this
    /// CPU's for a per-CPU array), 8-byte aligned, valid memory of `value_size` bytes for the
    /// map's life, which the program reads and writes in place; `None` (NULL) when there is no
    /// such element, the key has the wrong size, `cpu >= ncpus`, the map is a ring buffer, or
    /// (hash, re-entry) the map is busy on this CPU.
    pub fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if cpu >= self.ncpus {
            return None;
        }
        match &self.store {
            Store::Array(a) => a.lookup(key, cpu),
            Store::Hash(h) => h.lookup(key, cpu),
            Store::RingBuf(_) => None,
        }
    }

    /// `bpf_map_update_elem(map, key, value, flags)` from a program on `cpu` (`value` is
    /// `value_size` bytes; a per-CPU array's update sets this CPU's value only). Errors as
    /// Linux: `EINVAL` (unknown flags, `BPF_F_LOCK`, sizes), `E2BIG` (index past the array, hash
    /// full), `EEXIST` (`BPF_NOEXIST` on an existing element: always for arrays), `ENOENT`
    /// (`BPF_EXIST` on a missing one), `EBUSY` (re-entry), `ENOTSUPP` (ring buffer).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64, cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        match &self.store {
            Store::Array(a) => a.update(key, value, flags, Copies::Cpu(cpu)),
            Store::Hash(h) => h.update(key, value, flags, cpu),
            Store::RingBuf(_) => Err(MapError::NotSupp),
        }
    }

    /// `bpf_map_delete_elem(map, key)` from a program on `cpu`: `ENOENT` when the hash has no
    /// such element, `EINVAL` for arrays (their elements cannot be deleted), `ENOTSUPP` for a
    /// ring buffer. A deleted hash element's memory stays the map's; see [`Map::reclaim`].
    pub fn delete(&self, key: &[u8], cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        match &self.store {
            Store::Array(_) => Err(MapError::Inval),
            Store::Hash(h) => h.delete(key, cpu),
            Store::RingBuf(_) => Err(MapError::NotSupp),
        }
    }

    // --- user side (the bpf(2) syscall) -------------------------------------------------

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value into `value` ([`Map::user_value_size`] bytes:
    /// every CPU's value for a per-CPU map, each rounded up to 8 bytes). `ENOENT` when absent,
    /// `EPERM` with `BPF_F_WRONLY`. `cpu` is the CPU the caller runs on (for the re-entry guard).
    pub fn lookup_user(&self, key: &[u8], value: &mut [u8], cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        if self.def.map_flags & BPF_F_WRONLY != 0 {
            return Err(MapError::Perm);
        }
        match &self.store {
            Store::Array(a) => a.copy_out(key, value),
            Store::Hash(h) => h.copy_out(key, value, cpu),
            Store::RingBuf(_) => Err(MapError::NotSupp),
        }
    }

    /// The value of `key` as a new buffer ([`Map::lookup_user`]).
    pub fn lookup_user_vec(&self, key: &[u8], cpu: u32) -> Result<Vec<u8>, MapError> {
        let mut v = vec![0; self.user_value_size()];
        self.lookup_user(key, &mut v, cpu)?;
        Ok(v)
    }

    fn check_user_write(&self) -> Result<(), MapError> {
        if self.frozen.load(Ordering::Acquire) || self.def.map_flags & BPF_F_RDONLY != 0 {
            Err(MapError::Perm)
        } else {
            Ok(())
        }
    }

    /// `BPF_MAP_UPDATE_ELEM`: as [`Map::update`], but a per-CPU map takes every CPU's value
    /// ([`Map::user_value_size`] bytes), and a frozen or `BPF_F_RDONLY` map refuses (`EPERM`).
    pub fn update_user(&self, key: &[u8], value: &[u8], flags: u64, cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        self.check_user_write()?;
        match &self.store {
            Store::Array(a) if a.percpu => a.update(key, value, flags, Copies::All),
            Store::Array(a) => a.update(key, value, flags, Copies::Cpu(0)),
            Store::Hash(h) => h.update(key, value, flags, cpu),
            Store::RingBuf(_) => Err(MapError::NotSupp),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`: as [`Map::delete`], refused (`EPERM`) when frozen or `BPF_F_RDONLY`.
    pub fn delete_user(&self, key: &[u8], cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        self.check_user_write()?;
        self.delete(key, cpu)
    }

    /// `BPF_MAP_GET_NEXT_KEY`: writes into `next` the key after `key` (the first key when `key`
    /// is `None`, or for a hash when `key` is not in the map); `ENOENT` after the last key.
    /// Arrays go by index; a hash goes bucket by bucket (the order the hash gives).
    pub fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8], cpu: u32) -> Result<(), MapError> {
        self.check_cpu(cpu)?;
        if self.def.map_flags & BPF_F_WRONLY != 0 {
            return Err(MapError::Perm);
        }
        match &self.store {
            Store::Array(a) => a.get_next_key(key, next),
            Store::Hash(h) => h.get_next_key(key, next, cpu),
            Store::RingBuf(_) => Err(MapError::NotSupp),
        }
    }

    /// Every `(key, value)` pair, the way `bpftool map dump` walks a map (`get_next_key` then
    /// `lookup`; an element deleted between the two is left out). With updates going on, a hash
    /// walk may restart (Linux's semantics when the previous key was deleted): the walk stops
    /// after `max_entries` + 1 keys so it always ends.
    pub fn entries(&self, cpu: u32) -> Result<Vec<Entry>, MapError> {
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        let mut next = vec![0; self.def.key_size as usize];
        for _ in 0..=self.def.max_entries {
            match self.get_next_key(key.as_deref(), &mut next, cpu) {
                Ok(()) => {}
                Err(MapError::NoEnt) => break,
                Err(e) => return Err(e),
            }
            match self.lookup_user_vec(&next, cpu) {
                Ok(v) => out.push((next.clone(), v)),
                Err(MapError::NoEnt) => {}
                Err(e) => return Err(e),
            }
            key = Some(next.clone());
        }
        Ok(out)
    }

    /// `BPF_MAP_FREEZE`: from now on the syscall side may not write (`EPERM`); programs still
    /// may (libbpf freezes `.rodata` after filling it; `BPF_F_RDONLY_PROG` keeps programs out).
    /// `EBUSY` when already frozen, `EPERM` on a `BPF_F_RDONLY` map.
    pub fn freeze(&self) -> Result<(), MapError> {
        if self.def.map_flags & BPF_F_RDONLY != 0 {
            return Err(MapError::Perm);
        }
        if self.frozen.swap(true, Ordering::AcqRel) {
            return Err(MapError::Busy);
        }
        Ok(())
    }

    /// Whether [`Map::freeze`] was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Makes the hash elements deleted or replaced so far reusable; returns how many. Call it at
    /// a quiescent point: when no program that ran before the call can still be running (on
    /// Linux: after an RCU grace period), so no program holds the address of such an element's
    /// value. Until then, updates take other free elements, and only when none is left reuse
    /// the oldest retired one (what Linux's preallocated hash maps always do). 0 for other maps.
    pub fn reclaim(&self, cpu: u32) -> Result<u32, MapError> {
        self.check_cpu(cpu)?;
        match &self.store {
            Store::Hash(h) => h.reclaim(cpu),
            _ => Ok(0),
        }
    }

    /// Zeroes every value of an array (for tests and re-runs); `EINVAL` for other maps.
    pub fn clear_array(&self) -> Result<(), MapError> {
        match &self.store {
            Store::Array(a) => {
                a.clear();
                Ok(())
            }
            _ => Err(MapError::Inval),
        }
    }

    // --- memory checks ------------------------------------------------------------------

    /// The value (or busy ring-buffer record) of this map whose memory holds `addr`: its
    /// bounds and which element it is. `None` for addresses outside the map's values (keys,
    /// padding, ring-buffer headers, committed records).
    pub fn region_of(&self, addr: usize) -> Option<Region> {
        match &self.store {
            Store::Array(a) => a.region_of(addr),
            Store::Hash(h) => h.region_of(addr),
            Store::RingBuf(r) => r.region_of(addr),
        }
    }

    /// Whether `[addr, addr + len)` lies inside one value (or busy record) of this map.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        self.region_of(addr).is_some_and(|r| r.covers(addr, len))
    }

    /// The address of byte `off` of the value of a single-entry array: what libbpf's
    /// `BPF_PSEUDO_MAP_VALUE` relocations of global variables (`.data`, `.bss`, `.rodata`)
    /// resolve to (Linux's `map_direct_value_addr` plus `off`). `EINVAL` for other map types or
    /// `off >= value_size`, `ENOTSUPP` for an array of more than one entry.
    pub fn direct_value_addr(&self, off: u32) -> Result<NonNull<u8>, MapError> {
        match &self.store {
            Store::Array(a) if !a.percpu => {
                if a.max_entries != 1 {
                    return Err(MapError::NotSupp);
                }
                if off as usize >= a.value_size {
                    return Err(MapError::Inval);
                }
                let base = word_addr(&a.data, 0).ok_or(MapError::Inval)?;
                NonNull::new(base.as_ptr().wrapping_add(off as usize)).ok_or(MapError::Inval)
            }
            _ => Err(MapError::Inval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::string::ToString;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    const NCPUS: u32 = 4;

    fn map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32, flags: u32) -> Map {
        Map::new("m", MapDef::new(map_type, key_size, value_size, max_entries, flags), NCPUS).unwrap()
    }

    fn k32(i: u32) -> [u8; 4] {
        i.to_ne_bytes()
    }

    fn k64(i: u64) -> [u8; 8] {
        i.to_ne_bytes()
    }

    /// Reads `len` bytes at a value address, as a program's loads would.
    fn read(p: NonNull<u8>, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        // SAFETY: `p` comes from a lookup or reserve of a live map and `len` is within its
        // value or record; no other thread writes these bytes during the copy.
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), out.as_mut_ptr(), len) };
        out
    }

    /// Writes bytes at a value address, as a program's stores would.
    fn write(p: NonNull<u8>, bytes: &[u8]) {
        // SAFETY: as in `read`: the bytes are inside the value or record `p` points to, and
        // only this thread accesses them during the copy.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), bytes.len()) };
    }

    use crate::rng::Rng;

    #[test]
    fn errno_values_are_linux() {
        use MapError::*;
        let all = [
            (Perm, -1),
            (NoEnt, -2),
            (TooBig, -7),
            (Again, -11),
            (NoMem, -12),
            (Busy, -16),
            (Exist, -17),
            (Inval, -22),
            (NotSupp, -524),
        ];
        for (e, v) in all {
            assert_eq!(e.to_helper(), v);
            assert_eq!(MapError::from_errno(-v), Some(e));
        }
        assert_eq!(MapError::from_errno(5), None);
        assert_eq!(Exist.to_string(), "File exists (EEXIST)");
        assert_eq!(helper_ret(Ok(())), 0);
        assert_eq!(helper_ret(Err(NoEnt)), -2);
    }

    #[test]
    fn definitions_are_checked_as_linux() {
        use MapError::{Inval, TooBig};
        let h = BPF_MAP_TYPE_HASH;
        let a = BPF_MAP_TYPE_ARRAY;
        let p = BPF_MAP_TYPE_PERCPU_ARRAY;
        let r = BPF_MAP_TYPE_RINGBUF;
        let refused = [
            (MapDef::new(3, 4, 4, 1, 0), Inval, "map_type"),
            (MapDef::new(0, 4, 4, 1, 0), Inval, "map_type"),
            (MapDef::new(a, 4, 8, 1, BPF_F_RDONLY | BPF_F_WRONLY), Inval, "map_flags"),
            (MapDef::new(a, 4, 8, 0, 0), Inval, "max_entries"),
            (MapDef::new(a, 8, 8, 1, 0), Inval, "key_size"),
            (MapDef::new(a, 4, 0, 1, 0), Inval, "value_size"),
            (MapDef::new(a, 4, 8, 1, BPF_F_NO_PREALLOC), Inval, "map_flags"),
            (MapDef::new(a, 4, 8, 1, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG), Inval, "map_flags"),
            (MapDef::new(a, 4, 8, 1, BPF_F_PRESERVE_ELEMS), Inval, "map_flags"),
            (MapDef::new(a, 4, 1 << 31, 1, 0), TooBig, "value_size"),
            (MapDef::new(p, 4, 8, 1, BPF_F_MMAPABLE), Inval, "map_flags"),
            (MapDef::new(p, 4, 8, 1, BPF_F_NUMA_NODE), Inval, "map_flags"),
            (MapDef::new(p, 4, (32 << 10) + 1, 1, 0), TooBig, "value_size"),
            (MapDef::new(h, 0, 8, 1, 0), Inval, "key_size"),
            (MapDef::new(h, 4, 0, 1, 0), Inval, "value_size"),
            (MapDef::new(h, 4, 8, 0, 0), Inval, "max_entries"),
            (MapDef::new(h, 4, 8, 1, BPF_F_MMAPABLE), Inval, "map_flags"),
            (MapDef::new(h, 4, 8, 1, BPF_F_NO_COMMON_LRU), Inval, "map_flags"),
            (MapDef::new(h, 4, (1 << 22) - 48 - 4, 1, 0), TooBig, "value_size"),
            (MapDef::new(h, 4, 8, (1 << 27) + 1, 0), TooBig, "max_entries"),
            (MapDef::new(r, 0, 0, 4096 * 3, 0), Inval, "max_entries"),
            (MapDef::new(r, 0, 0, 2048, 0), Inval, "max_entries"),
            (MapDef::new(r, 0, 0, 0, 0), Inval, "max_entries"),
            (MapDef::new(r, 4, 0, 4096, 0), Inval, "key_size"),
            (MapDef::new(r, 0, 8, 4096, 0), Inval, "value_size"),
            (MapDef::new(r, 0, 0, 4096, BPF_F_MMAPABLE), Inval, "map_flags"),
        ];
        for (def, errno, field) in refused {
            let e = def.validate().expect_err(&format!("{def:?} accepted"));
            assert_eq!((e.errno, e.field), (errno, field), "{def:?}: {e}");
            let e2 = Map::new("m", def, NCPUS).unwrap_err();
            assert_eq!(e, e2);
        }
        let accepted = [
            (MapDef::new(a, 4, 1, 1, 0), MapType::Array),
            // libbpf's global-data maps: .data/.bss mmapable, .rodata read-only for programs.
            (MapDef::new(a, 4, 20, 1, BPF_F_MMAPABLE), MapType::Array),
            (MapDef::new(a, 4, 20, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG), MapType::Array),
            (MapDef::new(p, 4, 32 << 10, 2, 0), MapType::PercpuArray),
            (MapDef::new(h, 512, 64, 10, BPF_F_NO_PREALLOC | BPF_F_ZERO_SEED | BPF_F_NUMA_NODE), MapType::Hash),
            (MapDef::new(h, 1, 1, 1 << 27, 0), MapType::Hash),
            (MapDef::new(r, 0, 0, 4096, 0), MapType::RingBuf),
            (MapDef::new(r, 0, 0, 1 << 16, BPF_F_NUMA_NODE), MapType::RingBuf),
        ];
        for (def, ty) in accepted {
            assert_eq!(def.validate(), Ok(ty), "{def:?}");
        }
        let e = MapDef::new(a, 8, 8, 1, 0).validate().unwrap_err();
        assert_eq!(e.to_string(), "key_size 8: must be 4 (a u32 index) for an array (EINVAL)");
        let e = MapDef::new(h, 4, 8, 1, 1 << 10).validate().unwrap_err();
        assert_eq!(e.to_string(), "map_flags 0x400: flags a hash map does not take (EINVAL)");
    }

    #[test]
    fn names_and_cpus() {
        let def = MapDef::new(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0);
        assert_eq!(Map::new("a_very_long_map_name", def, 1).unwrap().name(), "a_very_long_map");
        assert_eq!(Map::new("prog.rodata", def, 1).unwrap().name(), "prog.rodata");
        assert_eq!(Map::new("", def, 1).unwrap().name(), "");
        assert_eq!(Map::new("bad-name", def, 1).unwrap_err().field, "name");
        assert_eq!(Map::new("m", def, 0).unwrap_err().field, "ncpus");
    }

    #[test]
    fn array_semantics() {
        let m = map(BPF_MAP_TYPE_ARRAY, 4, 16, 8, 0);
        // Preallocated and zeroed; stable, aligned addresses.
        let p3 = m.lookup(&k32(3), 0).unwrap();
        assert_eq!(p3.as_ptr() as usize % 8, 0);
        assert_eq!(read(p3, 16), [0; 16]);
        assert_eq!(m.lookup(&k32(3), 2), Some(p3), "one value for every CPU");
        // A program writes in place; the syscall side sees it.
        write(p3, &[7; 16]);
        assert_eq!(m.lookup_user_vec(&k32(3), 0).unwrap(), [7; 16]);
        // Updates: ANY and EXIST replace in place, NOEXIST always fails.
        m.update(&k32(3), &[1; 16], BPF_ANY, 1).unwrap();
        assert_eq!(read(p3, 16), [1; 16]);
        m.update_user(&k32(3), &[2; 16], BPF_EXIST, 0).unwrap();
        assert_eq!(read(p3, 16), [2; 16]);
        assert_eq!(m.update(&k32(3), &[3; 16], BPF_NOEXIST, 0), Err(MapError::Exist));
        assert_eq!(m.lookup(&k32(3), 0), Some(p3), "address unchanged by updates");
        // Out of range: NULL, ENOENT, E2BIG (even with NOEXIST: the range is checked first).
        assert_eq!(m.lookup(&k32(8), 0), None);
        assert_eq!(m.lookup_user_vec(&k32(8), 0), Err(MapError::NoEnt));
        assert_eq!(m.update(&k32(8), &[0; 16], BPF_ANY, 0), Err(MapError::TooBig));
        assert_eq!(m.update(&k32(8), &[0; 16], BPF_NOEXIST, 0), Err(MapError::TooBig));
        // Flags: unknown ones and BPF_F_LOCK (no spin lock in the value) are EINVAL.
        assert_eq!(m.update(&k32(1), &[0; 16], 3, 0), Err(MapError::Inval));
        assert_eq!(m.update(&k32(1), &[0; 16], 8, 0), Err(MapError::Inval));
        assert_eq!(m.update(&k32(1), &[0; 16], BPF_F_LOCK, 0), Err(MapError::Inval));
        assert_eq!(m.update(&k32(1), &[0; 16], BPF_F_LOCK | BPF_NOEXIST, 0), Err(MapError::Exist));
        // Sizes and CPUs.
        assert_eq!(m.update(&k32(1), &[0; 15], BPF_ANY, 0), Err(MapError::Inval));
        assert_eq!(m.update(&[1, 0], &[0; 16], BPF_ANY, 0), Err(MapError::Inval));
        assert_eq!(m.lookup(&[1, 0, 0, 0, 0], 0), None);
        assert_eq!(m.lookup(&k32(1), NCPUS), None);
        assert_eq!(m.update(&k32(1), &[0; 16], BPF_ANY, NCPUS), Err(MapError::Inval));
        // Delete: EINVAL, as Linux.
        assert_eq!(m.delete(&k32(1), 0), Err(MapError::Inval));
        assert_eq!(m.delete_user(&k32(1), 0), Err(MapError::Inval));
        // Iteration: 0..max, ENOENT after the last; no key or an index out of range gives 0.
        let mut next = [0u8; 4];
        m.get_next_key(None, &mut next, 0).unwrap();
        assert_eq!(next, k32(0));
        m.get_next_key(Some(&k32(100)), &mut next, 0).unwrap();
        assert_eq!(next, k32(0));
        m.get_next_key(Some(&k32(6)), &mut next, 0).unwrap();
        assert_eq!(next, k32(7));
        assert_eq!(m.get_next_key(Some(&k32(7)), &mut next, 0), Err(MapError::NoEnt));
        let all = m.entries(0).unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(all[3], (k32(3).to_vec(), vec![2; 16]));
        assert!(all.iter().enumerate().all(|(i, (k, _))| k == &k32(i as u32)));
        m.clear_array().unwrap();
        assert_eq!(read(p3, 16), [0; 16]);
    }

    #[test]
    fn array_values_are_aligned_and_bounded() {
        // value_size 5: each value starts on 8 bytes; the 3 bytes after it are nobody's.
        let m = map(BPF_MAP_TYPE_ARRAY, 4, 5, 4, 0);
        let p0 = m.lookup(&k32(0), 0).unwrap().as_ptr() as usize;
        let p1 = m.lookup(&k32(1), 0).unwrap().as_ptr() as usize;
        assert_eq!((p0 % 8, p1 - p0), (0, 8));
        m.update(&k32(1), &[1, 2, 3, 4, 5], BPF_ANY, 0).unwrap();
        assert_eq!(m.lookup_user_vec(&k32(1), 0).unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(m.lookup_user_vec(&k32(0), 0).unwrap(), [0; 5]);
        let r = m.region_of(p1 + 2).unwrap();
        assert_eq!(r, Region { start: p1, len: 5, kind: RegionKind::ArrayValue { index: 1 } });
        assert!(m.contains(p1, 5));
        assert!(m.contains(p1 + 4, 1));
        assert!(!m.contains(p1 + 5, 0), "one past the end is outside");
        assert!(!m.contains(p1, 6));
        assert!(!m.contains(p1 + 3, 3));
        assert!(m.region_of(p1 + 5).is_none(), "padding");
        assert!(m.region_of(p0 + 4 * 8).is_none(), "past the array");
        assert!(m.region_of(p0.wrapping_sub(1)).is_none());
        assert_eq!(m.direct_value_addr(0), Err(MapError::NotSupp), "more than one entry");
    }

    #[test]
    fn global_data_direct_value_addr() {
        // libbpf's `.data` of a program: one array entry holding every global.
        let m = Map::new("prog.data", MapDef::new(BPF_MAP_TYPE_ARRAY, 4, 12, 1, BPF_F_MMAPABLE), NCPUS).unwrap();
        let base = m.lookup(&k32(0), 0).unwrap();
        let g = m.direct_value_addr(8).unwrap();
        assert_eq!(g.as_ptr() as usize, base.as_ptr() as usize + 8);
        write(g, &42u32.to_ne_bytes());
        assert_eq!(&m.lookup_user_vec(&k32(0), 0).unwrap()[8..], &42u32.to_ne_bytes());
        assert_eq!(m.direct_value_addr(12), Err(MapError::Inval));
        assert!(m.contains(g.as_ptr() as usize, 4));
        assert!(!m.contains(g.as_ptr() as usize, 5));
        let h = map(BPF_MAP_TYPE_HASH, 4, 4, 1, 0);
        assert_eq!(h.direct_value_addr(0), Err(MapError::Inval));
        let p = map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 1, 0);
        assert_eq!(p.direct_value_addr(0), Err(MapError::Inval));
    }

    #[test]
    fn percpu_array_separates_cpus() {
        let m = map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 12, 3, 0);
        assert_eq!(m.user_value_size(), 16 * NCPUS as usize);
        let ptrs: Vec<_> = (0..NCPUS).map(|c| m.lookup(&k32(2), c).unwrap()).collect();
        let set: BTreeSet<_> = ptrs.iter().map(|p| p.as_ptr() as usize).collect();
        assert_eq!(set.len(), NCPUS as usize, "one value per CPU");
        assert!(set.iter().all(|a| a % 8 == 0));
        // A program on CPU c writes its own value only.
        for c in 0..NCPUS {
            m.update(&k32(2), &[c as u8 + 1; 12], BPF_ANY, c).unwrap();
        }
        write(ptrs[3], &[9; 4]);
        for c in 0..NCPUS {
            let want: Vec<u8> = if c == 3 { [[9u8; 4].as_slice(), &[4; 8]].concat() } else { vec![c as u8 + 1; 12] };
            assert_eq!(read(ptrs[c as usize], 12), want);
        }
        // The syscall side reads and writes every CPU's value, each rounded up to 8 bytes.
        let all = m.lookup_user_vec(&k32(2), 0).unwrap();
        for c in 0..NCPUS as usize {
            let chunk = &all[c * 16..(c + 1) * 16];
            assert_eq!(&chunk[12..], &[0; 4], "padding is zero");
            assert_eq!(chunk[4], c as u8 + 1);
        }
        let mut vals = vec![0u8; 16 * NCPUS as usize];
        for c in 0..NCPUS as usize {
            vals[c * 16..c * 16 + 12].fill(0x10 + c as u8);
        }
        m.update_user(&k32(0), &vals, BPF_EXIST, 0).unwrap();
        for c in 0..NCPUS {
            assert_eq!(read(m.lookup(&k32(0), c).unwrap(), 12), [0x10 + c as u8; 12]);
        }
        assert_eq!(m.update_user(&k32(0), &vals[..12], BPF_ANY, 0), Err(MapError::Inval), "needs every CPU's value");
        assert_eq!(m.update_user(&k32(0), &vals, BPF_NOEXIST, 0), Err(MapError::Exist));
        assert_eq!(m.update_user(&k32(0), &vals, BPF_F_LOCK, 0), Err(MapError::Inval));
        assert_eq!(m.update_user(&k32(3), &vals, BPF_ANY, 0), Err(MapError::TooBig));
        assert_eq!(m.lookup(&k32(0), NCPUS), None);
        assert_eq!(m.delete(&k32(0), 0), Err(MapError::Inval));
        // Regions say whose copy an address is.
        let a = ptrs[1].as_ptr() as usize;
        assert_eq!(m.region_of(a + 11).unwrap().kind, RegionKind::PercpuValue { index: 2, cpu: 1 });
        assert!(m.region_of(a + 12).is_none());
        let mut next = [0u8; 4];
        m.get_next_key(Some(&k32(1)), &mut next, 0).unwrap();
        assert_eq!(next, k32(2));
        assert_eq!(m.entries(0).unwrap().len(), 3);
    }

    #[test]
    fn hash_flags_and_errors() {
        let m = map(BPF_MAP_TYPE_HASH, 8, 16, 4, 0);
        assert_eq!(m.lookup(&k64(1), 0), None);
        assert_eq!(m.lookup_user_vec(&k64(1), 0), Err(MapError::NoEnt));
        assert_eq!(m.update(&k64(1), &[1; 16], BPF_EXIST, 0), Err(MapError::NoEnt));
        m.update(&k64(1), &[1; 16], BPF_NOEXIST, 0).unwrap();
        assert_eq!(m.update(&k64(1), &[2; 16], BPF_NOEXIST, 0), Err(MapError::Exist));
        let p = m.lookup(&k64(1), 0).unwrap();
        assert_eq!((p.as_ptr() as usize % 8, read(p, 16)), (0, vec![1; 16]));
        m.update(&k64(1), &[3; 16], BPF_EXIST, 1).unwrap();
        m.update(&k64(2), &[4; 16], BPF_ANY, 2).unwrap();
        m.update(&k64(2), &[5; 16], BPF_ANY, 3).unwrap();
        assert_eq!(m.lookup_user_vec(&k64(1), 0).unwrap(), [3; 16]);
        assert_eq!(m.lookup_user_vec(&k64(2), 0).unwrap(), [5; 16]);
        assert_eq!(read(m.lookup(&k64(2), 0).unwrap(), 16), [5; 16]);
        // The old address still holds the old value (an update fills a fresh element).
        assert_eq!(read(p, 16), [1; 16]);
        for bad in [3, 4, 5, 8, 1 << 32] {
            assert_eq!(m.update(&k64(9), &[0; 16], bad, 0), Err(MapError::Inval), "flags {bad}");
        }
        assert_eq!(m.update(&k64(9), &[0; 15], BPF_ANY, 0), Err(MapError::Inval));
        assert_eq!(m.update(&[0; 7], &[0; 16], BPF_ANY, 0), Err(MapError::Inval));
        assert_eq!(m.delete(&k64(9), 0), Err(MapError::NoEnt));
        m.delete(&k64(1), 0).unwrap();
        assert_eq!(m.delete(&k64(1), 0), Err(MapError::NoEnt));
        assert_eq!(m.lookup(&k64(1), 0), None);
        assert_eq!(m.hash_stats().unwrap().entries, 1);
        assert_eq!(m.delete(&k64(2), NCPUS), Err(MapError::Inval), "no such CPU");
        // A hash value's region: the key before it is not part of it.
        let q = m.lookup(&k64(2), 0).unwrap().as_ptr() as usize;
        assert!(matches!(m.region_of(q).unwrap().kind, RegionKind::HashValue { .. }));
        assert!(m.contains(q, 16) && !m.contains(q, 17));
        assert!(m.region_of(q - 1).is_none(), "the key");
    }

    #[test]
    fn hash_full_map() {
        let m = map(BPF_MAP_TYPE_HASH, 4, 8, 3, 0);
        for i in 0..3 {
            m.update(&k32(i), &[i as u8; 8], BPF_ANY, 0).unwrap();
        }
        assert_eq!(m.update(&k32(3), &[0; 8], BPF_ANY, 0), Err(MapError::TooBig));
        assert_eq!(m.update(&k32(3), &[0; 8], BPF_NOEXIST, 0), Err(MapError::TooBig));
        assert_eq!(m.update(&k32(3), &[0; 8], BPF_EXIST, 0), Err(MapError::NoEnt));
        // Replacing an element of a full map works, however often (the extra elements).
        for round in 0..50u8 {
            m.update(&k32(1), &[round; 8], BPF_ANY, (round % 4) as u32).unwrap();
            m.update(&k32(2), &[round; 8], BPF_EXIST, 0).unwrap();
        }
        assert_eq!(m.lookup_user_vec(&k32(1), 0).unwrap(), [49; 8]);
        m.delete(&k32(0), 0).unwrap();
        m.update(&k32(3), &[3; 8], BPF_NOEXIST, 0).unwrap();
        let s = m.hash_stats().unwrap();
        assert_eq!((s.entries, s.pool), (3, 3 + NCPUS));
    }

    #[test]
    fn hash_defers_reuse_until_reclaim() {
        let m = map(BPF_MAP_TYPE_HASH, 4, 8, 8, 0);
        m.update(&k32(1), &[1; 8], BPF_ANY, 0).unwrap();
        let old = m.lookup(&k32(1), 0).unwrap();
        m.delete(&k32(1), 0).unwrap();
        // A program still holding `old` reads the deleted value, and nothing new lands there
        // while other elements are free.
        let mut seen = BTreeSet::new();
        for i in 10..18 {
            m.update(&k32(i), &[i as u8; 8], BPF_ANY, 0).unwrap();
            seen.insert(m.lookup(&k32(i), 0).unwrap());
            assert!(!seen.contains(&old));
            assert_eq!(read(old, 8), [1; 8]);
        }
        let s = m.hash_stats().unwrap();
        assert_eq!((s.entries, s.free, s.retired, s.early_reuses), (8, 3, 1, 0));
        // After a reclaim (a quiescent point) the element is free again.
        assert_eq!(m.reclaim(0), Ok(1));
        let s = m.hash_stats().unwrap();
        assert_eq!((s.free, s.retired), (4, 0));
        assert_eq!(m.reclaim(0), Ok(0));
        m.delete(&k32(10), 0).unwrap();
        m.update(&k32(30), &[30; 8], BPF_ANY, 0).unwrap();
        assert_eq!(m.lookup(&k32(30), 0), Some(old), "the reclaimed element is reused first (LIFO)");
        assert_eq!(read(old, 8), [30; 8]);
        // With no free element left, the oldest retired one is reused early (Linux's way).
        for round in 0..20u8 {
            m.update(&k32(11), &[round; 8], BPF_ANY, 0).unwrap();
        }
        let s = m.hash_stats().unwrap();
        assert_eq!(s.entries, 8);
        assert_eq!(s.free, 0);
        assert_eq!(s.early_reuses, 20 - 4 + 1, "4 free elements, then 16 early reuses (+1: key 10's)");
        assert_eq!(m.lookup_user_vec(&k32(11), 0).unwrap(), [19; 8]);
        assert_eq!(m.reclaim(1).unwrap(), s.retired);
        assert_eq!(m.reclaim(NCPUS), Err(MapError::Inval));
        let a = map(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0);
        assert_eq!(a.reclaim(0), Ok(0));
    }

    #[test]
    fn hash_iteration_visits_every_key_once() {
        // 5-byte keys (padding inside the key words) and a small table with long chains.
        let m = map(BPF_MAP_TYPE_HASH, 5, 4, 64, 0);
        let key = |i: u32| [i as u8, (i >> 8) as u8, 0xa5, 0, 7];
        let mut next = [0u8; 5];
        assert_eq!(m.get_next_key(None, &mut next, 0), Err(MapError::NoEnt), "empty map");
        for i in 0..64 {
            m.update(&key(i), &i.to_ne_bytes(), BPF_NOEXIST, 0).unwrap();
        }
        let walk = |m: &Map| {
            let mut keys = Vec::new();
            let mut prev: Option<[u8; 5]> = None;
            while m.get_next_key(prev.as_ref().map(|k| k.as_slice()), &mut next.clone(), 0).is_ok() {
                let mut n = [0u8; 5];
                m.get_next_key(prev.as_ref().map(|k| k.as_slice()), &mut n, 0).unwrap();
                keys.push(n);
                prev = Some(n);
                assert!(keys.len() <= 64);
            }
            keys
        };
        let keys = walk(&m);
        assert_eq!(keys.len(), 64);
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 64, "no key twice");
        assert!((0..64).all(|i| keys.contains(&key(i))));
        // A key that is not in the map restarts the walk at the first key, as Linux.
        let mut first = [0u8; 5];
        m.get_next_key(None, &mut first, 0).unwrap();
        let mut n = [0u8; 5];
        m.get_next_key(Some(&key(1000)), &mut n, 0).unwrap();
        assert_eq!(n, first);
        // Delete every other key (heads, middles and tails of chains); the walk follows.
        for i in (0..64).step_by(2) {
            m.delete(&key(i), 0).unwrap();
        }
        let keys = walk(&m);
        assert_eq!(
            keys.iter().collect::<BTreeSet<_>>(),
            (1..64).step_by(2).map(key).collect::<Vec<_>>().iter().collect()
        );
        let dump = m.entries(0).unwrap();
        assert_eq!(dump.len(), 32);
        for (k, v) in dump {
            assert_eq!(u32::from_ne_bytes(v.try_into().unwrap()), k[0] as u32 | (k[1] as u32) << 8);
        }
        assert_eq!(m.get_next_key(Some(&[0; 4]), &mut n, 0), Err(MapError::Inval));
    }

    /// Random operations against a model (a BTreeMap) with Linux's rules: every result, every
    /// value and the iteration's key set must agree.
    #[test]
    fn hash_against_model() {
        for (seed, max, key_size, keyspace) in [(1u64, 16u32, 5u32, 40u32), (7, 1, 4, 3), (99, 100, 12, 150)] {
            let m = map(BPF_MAP_TYPE_HASH, key_size, 9, max, 0);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9) | 1);
            for step in 0..20_000u32 {
                let mut key = vec![0u8; key_size as usize];
                key[..4].copy_from_slice(&(rng.below(keyspace as u64) as u32).to_ne_bytes());
                let value: Vec<u8> = (0..9).map(|i| (step as u8).wrapping_add(i)).collect();
                let cpu = rng.below(NCPUS as u64) as u32;
                match rng.below(10) {
                    0..=4 => {
                        let flags = rng.below(3);
                        let exists = model.contains_key(&key);
                        let want = match (exists, flags) {
                            (true, BPF_NOEXIST) => Err(MapError::Exist),
                            (false, BPF_EXIST) => Err(MapError::NoEnt),
                            (false, _) if model.len() == max as usize => Err(MapError::TooBig),
                            _ => Ok(()),
                        };
                        assert_eq!(m.update(&key, &value, flags, cpu), want, "step {step}");
                        if want.is_ok() {
                            model.insert(key, value);
                        }
                    }
                    5..=6 => {
                        let want = if model.remove(&key).is_some() { Ok(()) } else { Err(MapError::NoEnt) };
                        assert_eq!(m.delete(&key, cpu), want, "step {step}");
                    }
                    7..=8 => match (m.lookup(&key, cpu), model.get(&key)) {
                        (Some(p), Some(v)) => assert_eq!(&read(p, 9), v),
                        (None, None) => {}
                        (got, want) => panic!("step {step}: lookup {got:?}, model {want:?}"),
                    },
                    _ => {
                        if rng.below(4) == 0 {
                            m.reclaim(cpu).unwrap();
                        }
                        assert_eq!(m.hash_stats().unwrap().entries as usize, model.len());
                    }
                }
            }
            let dump: BTreeMap<_, _> = m.entries(0).unwrap().into_iter().collect();
            assert_eq!(dump, model);
        }
    }

    #[test]
    fn syscall_permissions_and_freeze() {
        let ro = map(BPF_MAP_TYPE_HASH, 4, 4, 4, BPF_F_RDONLY);
        assert_eq!(ro.update_user(&k32(1), &k32(1), BPF_ANY, 0), Err(MapError::Perm));
        assert_eq!(ro.delete_user(&k32(1), 0), Err(MapError::Perm));
        ro.update(&k32(1), &k32(5), BPF_ANY, 0).unwrap();
        assert_eq!(ro.lookup_user_vec(&k32(1), 0).unwrap(), k32(5));
        assert_eq!(ro.freeze(), Err(MapError::Perm));
        let wo = map(BPF_MAP_TYPE_ARRAY, 4, 4, 4, BPF_F_WRONLY);
        wo.update_user(&k32(1), &k32(1), BPF_ANY, 0).unwrap();
        assert_eq!(wo.lookup_user_vec(&k32(1), 0), Err(MapError::Perm));
        assert_eq!(wo.get_next_key(None, &mut [0; 4], 0), Err(MapError::Perm));
        // libbpf's .rodata: filled from user space, then frozen; programs still read it.
        let rodata = map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_RDONLY_PROG | BPF_F_MMAPABLE);
        rodata.update_user(&k32(0), &[1; 8], BPF_ANY, 0).unwrap();
        assert!(!rodata.is_frozen());
        rodata.freeze().unwrap();
        assert!(rodata.is_frozen());
        assert_eq!(rodata.freeze(), Err(MapError::Busy));
        assert_eq!(rodata.update_user(&k32(0), &[2; 8], BPF_ANY, 0), Err(MapError::Perm));
        assert_eq!(rodata.lookup_user_vec(&k32(0), 0).unwrap(), [1; 8]);
        assert_eq!(read(rodata.lookup(&k32(0), 0).unwrap(), 8), [1; 8]);
    }

    /// Linux's `map_locked`: a program that interrupts a map operation on the same CPU and calls
    /// into the same map is refused instead of deadlocking; other CPUs are not affected.
    #[test]
    fn reentry_on_one_cpu_is_refused() {
        let m = map(BPF_MAP_TYPE_HASH, 4, 4, 4, 0);
        m.update(&k32(1), &k32(1), BPF_ANY, 0).unwrap();
        let Store::Hash(h) = &m.store else { unreachable!() };
        let held = h.guards.enter(2).unwrap();
        assert_eq!(m.lookup(&k32(1), 2), None);
        assert_eq!(m.update(&k32(1), &k32(2), BPF_ANY, 2), Err(MapError::Busy));
        assert_eq!(m.delete(&k32(1), 2), Err(MapError::Busy));
        assert_eq!(m.lookup_user_vec(&k32(1), 2), Err(MapError::Busy));
        assert_eq!(m.get_next_key(None, &mut [0; 4], 2), Err(MapError::Busy));
        assert_eq!(m.reclaim(2), Err(MapError::Busy));
        assert!(m.lookup(&k32(1), 1).is_some());
        m.update(&k32(1), &k32(3), BPF_ANY, 3).unwrap();
        drop(held);
        assert_eq!(read(m.lookup(&k32(1), 2).unwrap(), 4), k32(3));

        let r = map(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
        let rb = r.as_ringbuf().unwrap();
        let Store::RingBuf(inner) = &r.store else { unreachable!() };
        let held = inner.guards.enter(0).unwrap();
        assert_eq!(rb.reserve(8, 0, 0), None);
        assert_eq!(rb.output(&[1; 8], 0, 0), Err(MapError::Again));
        rb.output(&[1; 8], 0, 1).unwrap();
        drop(held);
        rb.output(&[2; 8], 0, 0).unwrap();
        assert_eq!(rb.consume_one().unwrap(), [1; 8]);
        assert_eq!(rb.consume_one().unwrap(), [2; 8]);
    }

    fn ringbuf(size: u32) -> Map {
        map(BPF_MAP_TYPE_RINGBUF, 0, 0, size, 0)
    }

    fn header(rb: &RingBuf, pos: u64) -> u32 {
        hdr_len(rb.header(pos & rb.mask).load(Ordering::Acquire))
    }

    #[test]
    fn ringbuf_records_in_order() {
        let m = ringbuf(4096);
        let rb = m.as_ringbuf().unwrap();
        assert_eq!((rb.size(), rb.producer_pos(), rb.consumer_pos()), (4096, 0, 0));
        let a = rb.reserve(5, 0, 0).unwrap();
        assert_eq!(a.as_ptr() as usize % 8, 0);
        assert_eq!(header(rb, 0), 5 | BPF_RINGBUF_BUSY_BIT, "len | busy while reserved");
        assert_eq!(rb.producer_pos(), 16, "8-byte header + 5 bytes rounded up to 8");
        write(a, b"hello");
        let b = rb.reserve(0, 0, 1).unwrap();
        assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 16);
        let c = rb.reserve(16, 0, 2).unwrap();
        write(c, &[3; 16]);
        assert_eq!(rb.producer_pos(), 16 + 8 + 24);
        assert_eq!(rb.query(BPF_RB_AVAIL_DATA), 48);
        assert_eq!(rb.query(BPF_RB_RING_SIZE), 4096);
        assert_eq!(rb.query(BPF_RB_PROD_POS), 48);
        assert_eq!(rb.query(9), 0);
        // Commits out of order: the consumer stops at the first busy record.
        rb.submit(c.as_ptr(), 0).unwrap();
        rb.discard(b.as_ptr(), 0).unwrap();
        assert_eq!(header(rb, 16), BPF_RINGBUF_DISCARD_BIT, "discard bit, busy cleared");
        assert_eq!(header(rb, 24), 16);
        assert_eq!(rb.consume(|_| panic!("record a is still busy")), 0);
        assert_eq!(rb.consumer_pos(), 0);
        rb.submit(a.as_ptr(), 0).unwrap();
        let mut got = Vec::new();
        assert_eq!(rb.consume(|r| got.push(r.to_vec())), 2, "the discarded record is skipped");
        assert_eq!(got, [b"hello".to_vec(), vec![3; 16]]);
        assert_eq!((rb.consumer_pos(), rb.avail_data()), (48, 0));
        assert_eq!(rb.consume_one(), None);
        // output copies; a zero-size record is a record.
        rb.output(&[7; 3], 0, 0).unwrap();
        rb.output(&[], 0, 0).unwrap();
        assert_eq!(rb.consume_one().unwrap(), [7; 3]);
        assert_eq!(rb.consume_one().unwrap(), [0u8; 0]);
        assert_eq!(rb.consumer_pos(), 48 + 16 + 8);
    }

    #[test]
    fn ringbuf_full_and_limits() {
        let m = ringbuf(4096);
        let rb = m.as_ringbuf().unwrap();
        // The largest record: the ring less one header and 8 bytes (Linux keeps producer -
        // consumer below the size).
        assert_eq!(rb.reserve(4096 - 15, 0, 0), None);
        assert_eq!(rb.reserve(4096, 0, 0), None);
        assert_eq!(rb.reserve(u64::MAX, 0, 0), None);
        assert_eq!(rb.reserve(RINGBUF_MAX_RECORD_SZ + 1, 0, 0), None);
        let big = rb.reserve(4096 - 16, 0, 0).unwrap();
        assert_eq!(rb.reserve(0, 0, 0), None, "full");
        assert_eq!(rb.output(&[1], 0, 0), Err(MapError::Again));
        rb.submit(big.as_ptr(), 0).unwrap();
        assert_eq!(rb.reserve(0, 0, 0), None, "still full until consumed");
        assert_eq!(rb.consume(|r| assert_eq!(r.len(), 4080)), 1);
        // Fill with 120 + 8 byte records: 31 fit (3968 bytes), the 32nd would reach 4096.
        let mut n = 0;
        while rb.output(&[n as u8; 120], 0, 0).is_ok() {
            n += 1;
        }
        assert_eq!(n, 31);
        assert_eq!(rb.avail_data(), 31 * 128);
        // Reservation flags must be 0; output takes only the wake-up flags.
        assert_eq!(rb.consume(|_| {}), 31);
        assert_eq!(rb.reserve(8, 1, 0), None);
        assert_eq!(rb.output(&[1], 4, 0), Err(MapError::Inval));
        rb.output(&[1], BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP, 0).unwrap();
    }

    /// Random produce/consume sizes against a model queue; records wrap past the end of the
    /// data area many times, some straddling it.
    #[test]
    fn ringbuf_wraps_around() {
        for size in [4096u32, 16384] {
            let m = ringbuf(size);
            let rb = m.as_ringbuf().unwrap();
            let mut rng = Rng(size as u64 + 12345);
            // Records in the ring, oldest first: (space taken, data or None if discarded).
            let mut model: VecDeque<(u64, Option<Vec<u8>>)> = VecDeque::new();
            let (mut prod, mut cons) = (0u64, 0u64);
            let mut straddled = 0;
            for step in 0..20_000u32 {
                if rng.below(3) != 0 {
                    let len = rng.below(size as u64 / 6) as usize;
                    let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ step) as u8).collect();
                    let space = round8(len as u64 + 8);
                    let fits = prod + space - cons < size as u64;
                    let how = rng.below(3);
                    let ok = match how {
                        0 => rb.output(&data, 0, step % NCPUS).is_ok(),
                        _ => match rb.reserve(len as u64, 0, step % NCPUS) {
                            Some(p) => {
                                write(p, &data);
                                if how == 1 { rb.submit(p.as_ptr(), 0) } else { rb.discard(p.as_ptr(), 0) }.unwrap();
                                true
                            }
                            None => false,
                        },
                    };
                    assert_eq!(ok, fits, "step {step}: prod {prod} cons {cons} space {space}");
                    if ok {
                        if (prod & (size as u64 - 1)) + space > size as u64 {
                            straddled += 1;
                        }
                        prod += space;
                        model.push_back((space, (how != 2).then_some(data)));
                    }
                } else {
                    // Up to `limit` records, skipping discarded ones on the way.
                    let limit = rng.below(4) as usize;
                    let mut got = Vec::new();
                    rb.consume_up_to(limit, |r| got.push(r.to_vec()));
                    let mut want = Vec::new();
                    while want.len() < limit {
                        let Some((space, rec)) = model.pop_front() else { break };
                        cons += space;
                        want.extend(rec);
                    }
                    assert_eq!(got, want, "step {step}");
                    assert_eq!(rb.consumer_pos(), cons, "step {step}");
                }
                assert_eq!(rb.producer_pos(), prod);
            }
            assert!(straddled > 50, "{straddled} records straddled the end");
        }
    }

    #[test]
    fn ringbuf_commit_checks_and_wakeups() {
        let m = ringbuf(8192);
        let rb = m.as_ringbuf().unwrap();
        let p = rb.reserve(24, 0, 0).unwrap();
        // Not a reserved record: refused, nothing changes.
        assert_eq!(rb.submit(p.as_ptr().wrapping_add(8), 0), Err(MapError::Inval));
        assert_eq!(rb.submit(p.as_ptr().wrapping_add(1), 0), Err(MapError::Inval));
        assert_eq!(rb.submit(core::ptr::null(), 0), Err(MapError::Inval));
        let other = ringbuf(4096);
        assert_eq!(other.as_ringbuf().unwrap().submit(p.as_ptr(), 0), Err(MapError::Inval));
        assert_eq!(header(rb, 0), 24 | BPF_RINGBUF_BUSY_BIT);
        // The consumer waits at this record: submitting it asks for a wake-up...
        assert_eq!(rb.take_wakeups(), 0);
        rb.submit(p.as_ptr(), 0).unwrap();
        assert_eq!(rb.take_wakeups(), 1);
        assert_eq!(rb.submit(p.as_ptr(), 0), Err(MapError::Inval), "committed twice");
        assert_eq!(rb.discard(p.as_ptr(), 0), Err(MapError::Inval));
        // ...a record behind it does not, unless forced; NO_WAKEUP suppresses it.
        let q = rb.reserve(8, 0, 0).unwrap();
        rb.submit(q.as_ptr(), 0).unwrap();
        assert_eq!(rb.take_wakeups(), 0);
        let q = rb.reserve(8, 0, 0).unwrap();
        rb.discard(q.as_ptr(), BPF_RB_FORCE_WAKEUP).unwrap();
        assert_eq!(rb.take_wakeups(), 1);
        rb.consume(|_| {});
        let q = rb.reserve(8, 0, 0).unwrap();
        rb.submit(q.as_ptr(), BPF_RB_NO_WAKEUP).unwrap();
        assert_eq!(rb.take_wakeups(), 0);
        rb.output(&[1; 8], 0, 0).unwrap();
        assert_eq!(rb.take_wakeups(), 0, "behind an unconsumed record");
    }

    #[test]
    fn ringbuf_regions_and_map_ops() {
        let m = ringbuf(4096);
        let rb = m.as_ringbuf().unwrap();
        rb.output(&[1; 8], 0, 0).unwrap();
        let p = rb.reserve(20, 0, 0).unwrap();
        let a = p.as_ptr() as usize;
        let r = m.region_of(a + 19).unwrap();
        assert_eq!(r, Region { start: a, len: 20, kind: RegionKind::RingRecord { pos: 16 } });
        assert!(m.contains(a, 20) && !m.contains(a, 21) && !m.contains(a - 8, 8));
        assert!(m.region_of(a - 16).is_none(), "committed records are not writable");
        // find_region: which of a program's maps an address is in.
        let arr = Arc::new(map(BPF_MAP_TYPE_ARRAY, 4, 8, 2, 0));
        let maps = [arr.clone(), Arc::new(m)];
        let v = arr.lookup(&k32(1), 0).unwrap().as_ptr() as usize;
        let (found, region) = find_region(&maps, v + 4, 4).unwrap();
        assert!(Arc::ptr_eq(found, &arr));
        assert_eq!(region.kind, RegionKind::ArrayValue { index: 1 });
        assert!(find_region(&maps, v + 4, 5).is_none());
        let (found, _) = find_region(&maps, a, 8).unwrap();
        assert_eq!(found.map_type(), MapType::RingBuf);
        found.as_ringbuf().unwrap().submit(p.as_ptr(), 0).unwrap();
        assert!(find_region(&maps, a, 8).is_none());
        // Element operations do not apply to a ring buffer.
        let m = &maps[1];
        assert_eq!(m.lookup(&[], 0), None);
        assert_eq!(m.update(&[], &[], 0, 0), Err(MapError::NotSupp));
        assert_eq!(m.delete(&[], 0), Err(MapError::NotSupp));
        assert_eq!(m.lookup_user(&[], &mut [], 0), Err(MapError::NotSupp));
        assert_eq!(m.get_next_key(None, &mut [], 0), Err(MapError::NotSupp));
        assert_eq!(m.user_value_size(), 0);
        assert_eq!(arr.as_ringbuf().map(|_| ()), None);
        assert_eq!(m.memory_bytes(), 8192, "data area and its second mapping");
    }

    // --- concurrency: 4 "CPUs" (threads with distinct CPU ids) -------------------------

    /// The threads of a concurrency test: when one panics, the others stop waiting (at a
    /// barrier, for ring-buffer room, for records) and fail too, so a bug fails the test
    /// instead of hanging it.
    #[derive(Default)]
    struct Team {
        failed: AtomicBool,
        arrived: std::sync::atomic::AtomicUsize,
    }

    /// Marks the team failed if its thread panics.
    struct Member<'a>(&'a Team);

    impl Drop for Member<'_> {
        fn drop(&mut self) {
            if thread::panicking() {
                self.0.failed.store(true, Ordering::SeqCst);
            }
        }
    }

    impl Team {
        fn check(&self) {
            assert!(!self.failed.load(Ordering::SeqCst), "another thread of the test failed");
        }

        /// The `k`-th barrier (1, 2, ...) of `n` threads.
        fn barrier(&self, n: usize, k: usize) {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            while self.arrived.load(Ordering::SeqCst) < k * n {
                self.check();
                thread::yield_now();
            }
        }
    }

    #[test]
    fn hash_concurrent_updates_lookups_deletes() {
        const PRIVATE: u64 = 64;
        const ROUNDS: u64 = 3000;
        const CONTESTED: u64 = 200;
        let m = Arc::new(map(BPF_MAP_TYPE_HASH, 8, 16, 512, 0));
        let team = Arc::new(Team::default());
        let threads: Vec<_> = (0..NCPUS)
            .map(|cpu| {
                let (m, team) = (m.clone(), team.clone());
                thread::spawn(move || {
                    let _member = Member(&team);
                    let t = cpu as u64;
                    let val = |round: u64| {
                        let mut v = [0u8; 16];
                        v[..8].copy_from_slice(&(t << 32 | round).to_ne_bytes());
                        v[8..].copy_from_slice(&(!round).to_ne_bytes());
                        v
                    };
                    let mut last = [None; PRIVATE as usize];
                    for round in 0..ROUNDS {
                        // This thread's own keys: exact results expected.
                        let i = round % PRIVATE;
                        let key = k64(t << 32 | i);
                        match (last[i as usize], round % 3) {
                            (None, _) => m.update(&key, &val(round), BPF_NOEXIST, cpu).unwrap(),
                            (Some(_), 0) => {
                                m.delete(&key, cpu).unwrap();
                                assert_eq!(m.update(&key, &val(round), BPF_EXIST, cpu), Err(MapError::NoEnt));
                                m.update(&key, &val(round), BPF_NOEXIST, cpu).unwrap();
                            }
                            (Some(_), _) => m.update(&key, &val(round), BPF_EXIST, cpu).unwrap(),
                        }
                        last[i as usize] = Some(round);
                        // A program's in-place increment through the value's address.
                        let p = m.lookup(&key, cpu).unwrap();
                        assert_eq!(read(p, 16), val(round));
                        let mut v = val(round);
                        v[15] = v[15].wrapping_add(1);
                        write(p, &v);
                        assert_eq!(m.lookup_user_vec(&key, cpu).unwrap(), v);
                        // Keys every thread fights over: any result is allowed, nothing breaks.
                        let shared = k64((1 << 40) | ((round * 7 + t) % 16));
                        match round % 4 {
                            0 => m.update(&shared, &val(round), BPF_ANY, cpu).unwrap(),
                            1 => assert!(matches!(m.delete(&shared, cpu), Ok(()) | Err(MapError::NoEnt))),
                            2 => {
                                if let Some(p) = m.lookup(&shared, cpu) {
                                    let _ = read(p, 16);
                                }
                            }
                            _ => {
                                let r = m.update(&shared, &val(round), BPF_NOEXIST, cpu);
                                assert!(matches!(r, Ok(()) | Err(MapError::Exist)));
                            }
                        }
                        if round % 500 == 0 {
                            // A dump taken while others delete may restart its walk (the key after
                            // a deleted one is the first key, as in Linux), so it may repeat keys:
                            // at most `max_entries + 1` steps, and never more distinct keys than
                            // the map holds.
                            let dump = m.entries(cpu).unwrap();
                            assert!(dump.len() <= 513);
                            assert!(dump.iter().map(|(k, _)| k).collect::<std::collections::BTreeSet<_>>().len() <= 512);
                        }
                    }
                    // Every thread inserts the same keys with NOEXIST: one winner per key...
                    team.barrier(NCPUS as usize, 1);
                    let mut won = Vec::new();
                    for i in 0..CONTESTED {
                        match m.update(&k64(1 << 41 | i), &val(i), BPF_NOEXIST, cpu) {
                            Ok(()) => won.push(i),
                            Err(e) => assert_eq!(e, MapError::Exist),
                        }
                    }
                    // ...which holds the winner's value; then one deleter per key.
                    team.barrier(NCPUS as usize, 2);
                    for &i in &won {
                        assert_eq!(m.lookup_user_vec(&k64(1 << 41 | i), cpu).unwrap(), val(i));
                    }
                    team.barrier(NCPUS as usize, 3);
                    let mut deleted = 0;
                    for i in 0..CONTESTED {
                        match m.delete(&k64(1 << 41 | i), cpu) {
                            Ok(()) => deleted += 1,
                            Err(e) => assert_eq!(e, MapError::NoEnt),
                        }
                    }
                    (won.len(), deleted, last)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().map(|r| r.0).sum::<usize>(), CONTESTED as usize, "one NOEXIST winner per key");
        assert_eq!(results.iter().map(|r| r.1).sum::<usize>(), CONTESTED as usize, "one deleter per key");
        // The final contents: every private key with its last value (+1), the shared keys that
        // survived; the count, the iteration and the lookups agree.
        let dump: BTreeMap<_, _> = m.entries(0).unwrap().into_iter().collect();
        for (t, r) in results.iter().enumerate() {
            for (i, last) in r.2.iter().enumerate() {
                let key = k64((t as u64) << 32 | i as u64).to_vec();
                let v = &dump[&key];
                assert_eq!(u64::from_ne_bytes(v[..8].try_into().unwrap()), (t as u64) << 32 | last.unwrap());
            }
        }
        let shared = dump.keys().filter(|k| u64::from_ne_bytes(k[..].try_into().unwrap()) >> 40 == 1).count();
        assert_eq!(dump.len(), NCPUS as usize * PRIVATE as usize + shared);
        let s = m.hash_stats().unwrap();
        assert_eq!(s.entries as usize, dump.len());
        assert_eq!(s.free + s.retired + s.entries, s.pool, "no element lost or doubly owned");
    }

    #[test]
    fn ringbuf_concurrent_producers_and_consumer() {
        const PER_THREAD: u32 = 6000;
        let m = Arc::new(ringbuf(8192));
        let done = Arc::new(AtomicBool::new(false));
        let team = Arc::new(Team::default());
        let record = |t: u32, seq: u32| -> (usize, bool) {
            let len = 8 + (seq.wrapping_mul(2654435761) ^ t) as usize % 300;
            (len, seq % 7 == 3)
        };
        let producers: Vec<_> = (0..NCPUS)
            .map(|t| {
                let (m, team) = (m.clone(), team.clone());
                thread::spawn(move || {
                    let _member = Member(&team);
                    let rb = m.as_ringbuf().unwrap();
                    let mut full = 0u64;
                    for seq in 0..PER_THREAD {
                        let (len, discard) = record(t, seq);
                        let mut data = vec![0u8; len];
                        data[..4].copy_from_slice(&t.to_ne_bytes());
                        data[4..8].copy_from_slice(&seq.to_ne_bytes());
                        for (i, b) in data[8..].iter_mut().enumerate() {
                            *b = (i as u32 ^ seq ^ t) as u8;
                        }
                        loop {
                            let ok = if seq % 3 == 0 && !discard {
                                rb.output(&data, 0, t).is_ok()
                            } else if let Some(p) = rb.reserve(len as u64, 0, t) {
                                write(p, &data);
                                if discard { rb.discard(p.as_ptr(), 0) } else { rb.submit(p.as_ptr(), 0) }.unwrap();
                                true
                            } else {
                                false
                            };
                            if ok {
                                break;
                            }
                            full += 1;
                            team.check();
                            thread::yield_now();
                        }
                    }
                    full
                })
            })
            .collect();
        let consumer = {
            let (m, done, team) = (m.clone(), done.clone(), team.clone());
            thread::spawn(move || {
                let _member = Member(&team);
                let rb = m.as_ringbuf().unwrap();
                let mut next_seq = [0u32; NCPUS as usize];
                let mut received = 0u64;
                let mut check = |r: &[u8]| {
                    let t = u32::from_ne_bytes(r[..4].try_into().unwrap());
                    let seq = u32::from_ne_bytes(r[4..8].try_into().unwrap());
                    // In order per producer, none lost (except discarded), none twice.
                    let mut want = next_seq[t as usize];
                    while record(t, want).1 {
                        want += 1;
                    }
                    assert_eq!(seq, want, "producer {t}");
                    assert_eq!(r.len(), record(t, seq).0);
                    assert!(
                        r[8..].iter().enumerate().all(|(i, &b)| b == (i as u32 ^ seq ^ t) as u8),
                        "record {t}/{seq} torn"
                    );
                    next_seq[t as usize] = seq + 1;
                    received += 1;
                };
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if rb.consume(&mut check) == 0 {
                        if finished {
                            break;
                        }
                        team.check();
                        thread::yield_now();
                    }
                }
                (received, next_seq)
            })
        };
        let full: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        let (received, next_seq) = consumer.join().unwrap();
        let rb = m.as_ringbuf().unwrap();
        let expected: u64 = (0..NCPUS).map(|t| (0..PER_THREAD).filter(|&s| !record(t, s).1).count() as u64).sum();
        assert_eq!(received, expected);
        for (t, &n) in next_seq.iter().enumerate() {
            let last_kept = (0..PER_THREAD).rev().find(|&s| !record(t as u32, s).1).unwrap();
            assert_eq!(n, last_kept + 1);
        }
        let produced: u64 =
            (0..NCPUS).flat_map(|t| (0..PER_THREAD).map(move |s| round8(record(t, s).0 as u64 + 8))).sum();
        assert_eq!((rb.producer_pos(), rb.consumer_pos()), (produced, produced));
        assert!(produced > 20 * 8192, "wrapped around many times");
        let _ = full; // how often producers found the ring full: timing-dependent
    }

    #[test]
    fn percpu_array_concurrent_increments() {
        const N: u64 = 20_000;
        let m = Arc::new(map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 2, 0));
        let threads: Vec<_> = (0..NCPUS)
            .map(|cpu| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..N {
                        // What `(*count)++` in a program does, on this CPU's value only.
                        let p = m.lookup(&k32(1), cpu).unwrap();
                        let v = u64::from_ne_bytes(read(p, 8).try_into().unwrap());
                        write(p, &(v + cpu as u64 + 1).to_ne_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = m.lookup_user_vec(&k32(1), 0).unwrap();
        for cpu in 0..NCPUS as usize {
            assert_eq!(u64::from_ne_bytes(all[cpu * 8..cpu * 8 + 8].try_into().unwrap()), N * (cpu as u64 + 1));
        }
    }
}
