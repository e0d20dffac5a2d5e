//! The trace ring's slot protocol, read side: one definition for the kernel's own reader
//! (`kernel/src/ringbuf.rs`) and the host's streaming reader (`ltrace record`, which reads the
//! guest's rings through shared memory while the guest writes them).
//!
//! A ring is an array of 64-byte slots (`capacity`, a power of two) and a reservation counter
//! `head`. The record with sequence number `s` lives in slot `s & (capacity - 1)`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `stamp`: [`EMPTY`], `busy(s)` or `committed(s)` (see [`committed`]) |
//! | 8 | 40 | five payload words: `ts`, `ip`, `parent`, `kind \| depth << 16 \| cont << 32 \| aux << 48`, `extra` |
//! | 48 | 8 | `dropped`: `committed(s)` of the last `s` whose writer gave up on the slot |
//! | 56 | 8 | unused |
//!
//! A writer stores `busy(s)`, the payload, then `committed(s)` (release). A reader expecting `s`
//! loads the stamp (acquire), the payload, fences (acquire) and loads the stamp again: only two
//! equal `committed(s)` give the record; a newer stamp means it was overwritten (lost); an older
//! one that the `dropped` tag does not name means its writer has not finished (the reader stops
//! there and comes back). A record of several slots (its first slot's `cont` > 0) is delivered
//! whole or counted lost whole.

/// Stamp of a slot never written.
pub const EMPTY: u64 = 0;
/// Stamp bit: the slot holds (or is getting) a record.
pub const VALID: u64 = 0b10;
/// Stamp bit: the slot's writer has not committed yet.
pub const BUSY: u64 = 0b01;
/// Stamps keep the sequence number shifted by the slot size's log2, so a writer computes the
/// slot's byte offset and its stamp with one shift.
pub const SEQ_SHIFT: u32 = 6;
/// The 58 bits of sequence number a stamp keeps.
pub const SEQ_MASK: u64 = u64::MAX >> SEQ_SHIFT;
/// Bytes per slot.
pub const SLOT_BYTES: usize = 1 << SEQ_SHIFT;
/// Payload words per slot.
pub const WORDS: usize = 5;
/// Byte offset of the payload in a slot.
pub const WORDS_AT: usize = 8;
/// Byte offset of the `dropped` tag in a slot.
pub const DROPPED_AT: usize = 48;
/// `kind` of a continuation slot of a longer record.
pub const KIND_CONT: u8 = 0xff;
/// Most continuation slots one record may have.
pub const MAX_CONT: usize = 16;

/// The stamp of a committed record `s`.
#[inline(always)]
pub const fn committed(s: u64) -> u64 {
    (s << SEQ_SHIFT) | VALID
}

/// The stamp of record `s` while its writer fills the slot.
#[inline(always)]
pub const fn busy(s: u64) -> u64 {
    (s << SEQ_SHIFT) | VALID | BUSY
}

/// Is the (58-bit) sequence number stored in `stamp` strictly older than `s`?
#[inline(always)]
pub const fn stamp_older(stamp: u64, s: u64) -> bool {
    let d = (s & SEQ_MASK).wrapping_sub(stamp >> SEQ_SHIFT) & SEQ_MASK;
    d != 0 && d < (1 << 57)
}

/// `kind` of a record from its payload words.
#[inline(always)]
pub const fn kind_of(w: &[u64; WORDS]) -> u8 {
    w[3] as u8
}

/// `depth` of a record (graph depth, or a function event's flags) from its payload words.
#[inline(always)]
pub const fn depth_of(w: &[u64; WORDS]) -> u16 {
    (w[3] >> 16) as u16
}

/// Continuation slots that follow a record from its payload words.
#[inline(always)]
pub const fn cont_of(w: &[u64; WORDS]) -> u16 {
    (w[3] >> 32) as u16
}

/// How a reader sees the slots of one ring (memory it may read while writers write it). A read
/// finds the slot once ([`Slots::slot`]) and makes all its loads there, so the seqlock's two
/// stamp loads bracket the payload loads of the same slot even if the ring is resized meanwhile.
pub trait Slots {
    /// Where the slot of sequence number `s` is.
    type Slot<'a>
    where
        Self: 'a;
    /// The slot of `s`.
    fn slot(&self, s: u64) -> Self::Slot<'_>;
    /// The slot's stamp, loaded with acquire ordering.
    fn stamp(slot: &Self::Slot<'_>) -> u64;
    /// The slot's payload words (plain loads), then an acquire fence, then its stamp again:
    /// `(words, stamp)` (the seqlock's second look).
    fn words_then_stamp(slot: &Self::Slot<'_>) -> ([u64; WORDS], u64);
    /// The slot's `dropped` tag (acquire).
    fn dropped(slot: &Self::Slot<'_>) -> u64;
}

/// What reading one slot gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRead {
    Entry([u64; WORDS]),
    Lost,
    Pending,
}

/// Seqlock read of record `s`.
#[inline]
pub fn read_slot<V: Slots>(v: &V, s: u64) -> SlotRead {
    let want = committed(s);
    let slot = v.slot(s);
    let st1 = V::stamp(&slot);
    if st1 != want {
        let newer = st1 != EMPTY && st1 & !BUSY != want && !stamp_older(st1, s);
        if newer || V::dropped(&slot) == want {
            return SlotRead::Lost;
        }
        return SlotRead::Pending;
    }
    let (w, st2) = V::words_then_stamp(&slot);
    if st2 != want {
        return SlotRead::Lost;
    }
    SlotRead::Entry(w)
}

/// Result of a read pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Slots delivered to the callback.
    pub read: u64,
    /// Slots in the read range that were overwritten (or dropped) before they could be read.
    pub lost: u64,
}

/// Result of a [`read_from`] pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Sequence number to continue from next time.
    pub next: u64,
    /// Slots delivered / lost in this pass.
    pub stats: ReadStats,
}

/// Sequence numbers from `from` to `to`, 0 when `to` is behind.
#[inline]
pub fn distance(from: u64, to: u64) -> u64 {
    let d = to.wrapping_sub(from);
    if d > u64::MAX / 2 { 0 } else { d }
}

/// Reads the records from sequence number `from` up to `head` (the ring's reservation counter,
/// loaded with acquire ordering by the caller) in a ring of `capacity` slots, calling
/// `out(seq, words)` for each surviving slot in order. Records older than `head - capacity`
/// count as lost; a record still being written ends the pass (it is read next time); a record of
/// several slots is delivered whole (by this one call) or counted lost whole. If `from` is ahead
/// of `head` nothing is read.
pub fn read_from(v: &impl Slots, head: u64, capacity: u64, from: u64, mut out: impl FnMut(u64, [u64; WORDS])) -> ReadOutcome {
    let avail = head.wrapping_sub(from);
    let mut stats = ReadStats::default();
    if avail > u64::MAX / 2 {
        return ReadOutcome { next: from, stats };
    }
    let mut s = from;
    if avail > capacity {
        stats.lost = avail - capacity;
        s = head.wrapping_sub(capacity);
    }
    while s != head {
        match read_slot(v, s) {
            SlotRead::Entry(e) if cont_of(&e) != 0 && kind_of(&e) != KIND_CONT => {
                // A record of several slots: whole, or lost, or wait for its writer.
                let n = (cont_of(&e) as usize).min(MAX_CONT);
                let mut rest = [[0u64; WORDS]; MAX_CONT];
                let mut state = SlotRead::Entry(e);
                for (k, r) in rest.iter_mut().enumerate().take(n) {
                    let sk = s.wrapping_add(k as u64 + 1);
                    if distance(sk, head) == 0 {
                        state = SlotRead::Pending;
                        break;
                    }
                    match read_slot(v, sk) {
                        SlotRead::Entry(c) => *r = c,
                        other => {
                            state = other;
                            if matches!(state, SlotRead::Lost) {
                                break;
                            }
                        }
                    }
                }
                match state {
                    SlotRead::Pending => break,
                    SlotRead::Lost => stats.lost += n as u64 + 1,
                    SlotRead::Entry(_) => {
                        out(s, e);
                        for (k, r) in rest.iter().take(n).enumerate() {
                            out(s.wrapping_add(k as u64 + 1), *r);
                        }
                        stats.read += n as u64 + 1;
                    }
                }
                s = s.wrapping_add(n as u64 + 1);
                continue;
            }
            SlotRead::Entry(e) => {
                out(s, e);
                stats.read += 1;
            }
            SlotRead::Lost => stats.lost += 1,
            SlotRead::Pending => break,
        }
        s = s.wrapping_add(1);
    }
    ReadOutcome { next: s, stats }
}
