//! The control block of a streamed recording: where the host finds each CPU's trace ring in the
//! guest's memory while the guest writes it (`ltrace record`, `docs/export.md`).
//!
//! The kernel fills it in and prints its physical address on the console; the host maps the
//! guest's RAM (a shared memory file, see `tools/src/stream.rs`) and reads the block and the
//! rings it names, never writing. All fields are little-endian `u64`s, physical addresses:
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `LTSTRM01` |
//! | 8 | version (1) in bits 0..32, number of CPUs in bits 32..64 |
//! | 16 | state: [`STATE_STREAMING`], then [`STATE_STOPPED`] |
//! | 24 | reserved, 0 |
//! | 32 + 40 × cpu | the CPU's `head` word, its `mask` word, its first slot, its `head` when the stream started, its final `head` (valid once stopped) |

/// Magic at the start of the control block.
pub const MAGIC: [u8; 8] = *b"LTSTRM01";
/// Layout version.
pub const VERSION: u64 = 1;
/// The tracer is writing; the rings' heads move.
pub const STATE_STREAMING: u64 = 1;
/// The tracer stopped, every record is committed and the final heads are set.
pub const STATE_STOPPED: u64 = 2;
/// Words of the block before the per-CPU entries.
pub const HEADER_WORDS: usize = 4;
/// Words per CPU.
pub const CPU_WORDS: usize = 5;
/// Most CPUs a block describes.
pub const MAX_CPUS: usize = 8;
/// Words of the whole block.
pub const WORDS: usize = HEADER_WORDS + CPU_WORDS * MAX_CPUS;

/// Word index of the state.
pub const STATE: usize = 2;

/// Word index of field `k` (0 head, 1 mask, 2 slots, 3 start head, 4 final head) of CPU `cpu`.
pub const fn cpu_word(cpu: usize, k: usize) -> usize {
    HEADER_WORDS + CPU_WORDS * cpu + k
}

/// The console line that gives the block's physical address (`<prefix>0x<hex>`).
pub const CONTROL_LINE: &str = "ltrace-stream: control at ";
/// The console line printed once the state is [`STATE_STOPPED`].
pub const STOPPED_LINE: &str = "ltrace-stream: stopped";

/// Where guest physical address `pa` is in the RAM backing file of QEMU's LoongArch `virt`
/// machine: the first 256 MiB of RAM are mapped at physical 0, the rest from `0x9000_0000`
/// (QEMU's `VIRT_LOWMEM_SIZE` and `VIRT_HIGHMEM_BASE`). `None` outside RAM of `ram_size` bytes.
pub fn ram_offset(pa: u64, ram_size: u64) -> Option<u64> {
    const LOW: u64 = 0x1000_0000;
    const HIGH_BASE: u64 = 0x9000_0000;
    let off = if pa < LOW {
        pa
    } else if pa >= HIGH_BASE {
        pa - HIGH_BASE + LOW
    } else {
        return None;
    };
    (off < ram_size).then_some(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_offsets() {
        let g = 1 << 30;
        assert_eq!(ram_offset(0x20_0000, g), Some(0x20_0000));
        assert_eq!(ram_offset(0x0fff_fff8, g), Some(0x0fff_fff8));
        assert_eq!(ram_offset(0x1000_0000, g), None);
        assert_eq!(ram_offset(0x9000_0000, g), Some(0x1000_0000));
        assert_eq!(ram_offset(0x9000_0000 + (3 << 28) - 8, g), Some(g - 8));
        assert_eq!(ram_offset(0x9000_0000 + (3 << 28), g), None);
        assert_eq!(cpu_word(0, 0), 4);
        assert_eq!(cpu_word(7, 4), WORDS - 1);
    }
}
