//! The host side of a streamed recording: the guest's RAM is a shared memory file (QEMU's
//! `memory-backend-file,share=on`), which this maps read-only and reads the trace rings from
//! while the guest writes them, with the rings' own read protocol (`formats::ring`). The kernel
//! publishes where the rings are in a control block (`formats::stream`); the host never writes
//! guest memory, so the guest's writers never wait for it.

use crate::capture::Recording;
use crate::tracedat::{Event, StreamFile};
use formats::ring::{self, KIND_CONT, Slots, WORDS};
use formats::stream as layout;
use formats::wire::{self, Record};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Guest RAM as the host sees it: the whole backing file, mapped read-only.
pub struct GuestRam {
    map: memmap2::MmapRaw,
    size: u64,
}

impl GuestRam {
    /// Maps the first `size` bytes of `file` (the guest's RAM backing file).
    pub fn map(file: &File, size: u64) -> std::io::Result<GuestRam> {
        let map = memmap2::MmapOptions::new().len(size as usize).map_raw_read_only(file)?;
        Ok(GuestRam { map, size })
    }

    /// The 8-byte word at guest physical address `pa`, if it is aligned RAM.
    fn word(&self, pa: u64) -> Option<&AtomicU64> {
        let off = layout::ram_offset(pa, self.size)?;
        if off % 8 != 0 || off + 8 > self.size {
            return None;
        }
        // SAFETY: `off + 8` is inside the mapping (checked above) and 8-aligned (the mapping
        // starts on a page); the memory stays mapped while `self` lives. Other threads (the
        // guest's CPUs) write it, which is what atomics are for; we only load.
        Some(unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(off as usize) as *mut u64) })
    }

    /// Loads the word at `pa` (acquire), or `None` outside RAM.
    pub fn load(&self, pa: u64) -> Option<u64> {
        self.word(pa).map(|w| w.load(Ordering::Acquire))
    }
}

/// One CPU's ring in guest RAM, as the control block describes it.
struct Ring<'a> {
    ram: &'a GuestRam,
    head_pa: u64,
    slots_pa: u64,
    /// `(capacity - 1) << SEQ_SHIFT`, read once: the ring is not resized while streaming.
    mask: u64,
}

impl Ring<'_> {
    fn at(&self, slot_pa: u64, byte: usize) -> u64 {
        // Every slot of the ring was checked to be RAM when the ring was opened.
        self.ram.word(slot_pa + byte as u64).map_or(0, |w| w.load(Ordering::Relaxed))
    }
}

/// The guest's slots as the host reads them; a slot is its physical address.
impl Slots for Ring<'_> {
    type Slot<'a>
        = (&'a Self, u64)
    where
        Self: 'a;

    fn slot(&self, s: u64) -> (&Self, u64) {
        (self, self.slots_pa + ((s << ring::SEQ_SHIFT) & self.mask))
    }

    fn stamp(&(ring, pa): &(&Self, u64)) -> u64 {
        let v = ring.at(pa, 0);
        fence(Ordering::Acquire);
        v
    }

    fn words_then_stamp(&(ring, pa): &(&Self, u64)) -> ([u64; WORDS], u64) {
        let w = core::array::from_fn(|i| ring.at(pa, ring::WORDS_AT + 8 * i));
        fence(Ordering::Acquire);
        (w, ring.at(pa, 0))
    }

    fn dropped(&(ring, pa): &(&Self, u64)) -> u64 {
        let v = ring.at(pa, ring::DROPPED_AT);
        fence(Ordering::Acquire);
        v
    }
}

/// Counts of one CPU's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCounts {
    /// Events in the file.
    pub events: u64,
    /// The ring slots those events took (a trace event's record takes several).
    pub slots: u64,
    /// Slots overwritten before the host read them (or dropped by a colliding writer).
    pub lost: u64,
    /// Slots read that are no event of the function or graph tracer (not written to the file).
    pub skipped: u64,
    /// The ring's slots written during the recording (known once the guest stopped).
    pub written: Option<u64>,
}

/// The reading side of a streamed recording.
pub struct Streamer<'a> {
    rings: Vec<Ring<'a>>,
    next: Vec<u64>,
    start: Vec<u64>,
    /// Each CPU's final head, once the guest stopped the stream.
    last: Vec<Option<u64>>,
    pub counts: Vec<CpuCounts>,
    control: u64,
}

/// Opens the stream whose control block is at guest physical address `control`, for `cpus`
/// CPUs, starting at each ring's current head.
pub fn open<'a>(ram: &'a GuestRam, control: u64, cpus: usize) -> Result<Streamer<'a>, String> {
    let word = |i: usize| ram.load(control + 8 * i as u64).ok_or_else(|| format!("the control block at {control:#x} is not in guest RAM"));
    let state = word(layout::STATE)?;
    if state != layout::STATE_STREAMING && state != layout::STATE_STOPPED {
        return Err(format!("the control block at {control:#x} is in state {state}, not streaming"));
    }
    if word(0)? != u64::from_le_bytes(layout::MAGIC) {
        return Err(format!("no control block at {control:#x} (magic {:#x})", word(0)?));
    }
    let v = word(1)?;
    if v & 0xffff_ffff != layout::VERSION || (v >> 32) as usize != cpus {
        return Err(format!("control block version {} for {} CPUs; expected version {} for {cpus}", v & 0xffff_ffff, v >> 32, layout::VERSION));
    }
    let mut rings = Vec::new();
    for cpu in 0..cpus {
        let head_pa = word(layout::cpu_word(cpu, 0))?;
        let mask_pa = word(layout::cpu_word(cpu, 1))?;
        let slots_pa = word(layout::cpu_word(cpu, 2))?;
        let mask = ram.load(mask_pa).ok_or_else(|| format!("cpu{cpu}: the mask word at {mask_pa:#x} is not in guest RAM"))?;
        ram.load(head_pa).ok_or_else(|| format!("cpu{cpu}: the head at {head_pa:#x} is not in guest RAM"))?;
        let (first, last) = (layout::ram_offset(slots_pa, ram.size), layout::ram_offset(slots_pa + mask + 56, ram.size));
        if first.zip(last).is_none_or(|(a, b)| b - a != mask + 56) || mask & (ring::SLOT_BYTES as u64 - 1) != 0 {
            return Err(format!("cpu{cpu}: the slots at {slots_pa:#x} (mask {mask:#x}) are not one stretch of guest RAM"));
        }
        rings.push(Ring { ram, head_pa, slots_pa, mask });
    }
    let next: Vec<u64> = (0..cpus).map(|cpu| word(layout::cpu_word(cpu, 3))).collect::<Result<_, _>>()?;
    let start: Vec<u64> = next;
    Ok(Streamer { rings, next: start.clone(), start, last: vec![None; cpus], counts: vec![CpuCounts::default(); cpus], control })
}

impl Streamer<'_> {
    /// Whether the guest has stopped the stream (every record up to the final heads committed).
    pub fn stopped(&self) -> bool {
        self.rings[0].ram.load(self.control + 8 * layout::STATE as u64) == Some(layout::STATE_STOPPED)
    }

    /// The CPUs whose records up to the final head are not all read yet (after
    /// [`Self::stopped`] and a poll that saw it).
    pub fn pending(&self) -> Vec<usize> {
        (0..self.rings.len()).filter(|&c| self.last[c] != Some(self.next[c])).collect()
    }

    /// Reads every CPU's new records into `out`'s page writers, stores the pages they
    /// completed, and returns the bytes stored. With `stopped` (what [`Self::stopped`] said
    /// before this call), reads up to the final heads and records the counts of slots written.
    pub fn poll(&mut self, rec: &Recording, out: &mut StreamFile, stopped: bool) -> Result<u64, String> {
        let mut stored = 0;
        for cpu in 0..self.rings.len() {
            let ring = &self.rings[cpu];
            let head = if stopped {
                let last = ring.ram.load(self.control + 8 * layout::cpu_word(cpu, 4) as u64).unwrap_or(0);
                self.last[cpu] = Some(last);
                last
            } else {
                ring.ram.load(ring.head_pa).unwrap_or(0)
            };
            let counts = &mut self.counts[cpu];
            let writer = &mut out.writers[cpu];
            let pid = formats::task::pid(cpu as u32);
            let capacity = (ring.mask >> ring::SEQ_SHIFT) + 1;
            // Every sequence number from `next` on is read or lost: a gap before a record read
            // is where records were lost, so the file notes them right there.
            let mut expected = self.next[cpu];
            // A trace event's record: its first slot and the continuation slots it announces,
            // which one pass delivers together (`read_from` takes such a record whole or not).
            let mut event: Vec<Record> = Vec::new();
            let r = ring::read_from(ring, head, capacity, expected, |s, w| {
                writer.note_lost(ring::distance(expected, s));
                expected = s.wrapping_add(1);
                let record = to_record(&w, cpu);
                if !event.is_empty() && record.kind == KIND_CONT {
                    event.push(record);
                    let first = &event[0];
                    if event.len() == 1 + (first.extra as usize).div_ceil(wire::CONT_BYTES) {
                        if let Some(mut b) = wire::event_bytes(&event) {
                            // Linux's bytes, common fields included, padded as its ring pads them.
                            b.resize(b.len().next_multiple_of(4), 0);
                            writer.push(rec.ns(first.ts), &b);
                            counts.events += 1;
                            counts.slots += event.len() as u64;
                        } else {
                            counts.skipped += event.len() as u64;
                        }
                        event.clear();
                    }
                    return;
                }
                counts.skipped += event.len() as u64;
                event.clear();
                if record.kind == wire::KIND_EVENT && record.extra != 0 && (record.extra as usize) <= wire::CONT_BYTES * ring::MAX_CONT {
                    event.push(record);
                    return;
                }
                match Event::from_record(rec, &record) {
                    Some(e) if record.kind != KIND_CONT => {
                        writer.push(rec.ns(record.ts), &e.encode(pid));
                        counts.events += 1;
                        counts.slots += 1;
                    }
                    _ => counts.skipped += 1,
                }
            });
            // A record is delivered whole, so none is left half-read at the end of a pass.
            counts.skipped += event.len() as u64;
            writer.note_lost(ring::distance(expected, r.next));
            counts.lost += r.stats.lost;
            self.next[cpu] = r.next;
            if stopped {
                counts.written = Some(head.wrapping_sub(self.start[cpu]));
            }
            stored += out.store(cpu).map_err(|e| format!("writing the trace file: {e}"))?;
        }
        Ok(stored)
    }
}

/// The record a slot's payload words hold, as the wire format carries it.
fn to_record(w: &[u64; WORDS], cpu: usize) -> Record {
    Record { ts: w[0], ip: w[1], parent: w[2], kind: ring::kind_of(w), cpu: cpu as u8, depth: ring::depth_of(w), extra: w[4] }
}

/// Creates the guest RAM's backing file (`size` bytes, sparse) at `path`.
pub fn create_ram_file(path: &Path, size: u64) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    f.set_len(size)?;
    Ok(f)
}

/// QEMU arguments that back the guest's RAM (`size` bytes, as `-m` gives it) with `path`, shared.
pub fn qemu_ram_args(path: &Path, size: u64) -> Vec<String> {
    vec![
        "-machine".into(),
        "memory-backend=ltrace-ram".into(),
        "-object".into(),
        format!("memory-backend-file,id=ltrace-ram,size={size},mem-path={},share=on", path.display().to_string().replace(',', ",,")),
    ]
}
