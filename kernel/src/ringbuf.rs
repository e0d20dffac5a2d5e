//! Lock-free, fixed-capacity, overwrite-oldest per-CPU trace ring buffer.
//!
//! One [`RingBuffer`] exists per CPU. It stores [`TraceEntry`] records in its capacity's worth of
//! slots (a power of two, at most the `N` slots of room it reserves; [`RingBuffer::resize`]
//! changes it) and, when full, overwrites the oldest records, counting what a reader could not get as
//! *lost*. It never allocates, never blocks and never panics, so it can be written from the
//! function tracer's hot path, including from interrupt or exception context.
//!
//! # Concurrency contract
//!
//! * **Writers.** At most one writer context per buffer runs at a time, *except* that a writer may
//!   be interrupted on its own CPU by another writer (interrupt/exception context) that pushes into
//!   the same buffer and finishes before the interrupted one resumes (nesting, any depth).
//! * **Readers.** Any number of CPUs may read while writing goes on. Consuming reads
//!   ([`RingBuffer::snapshot`]) advance a single shared cursor, so callers must serialize them
//!   (e.g. with a lock); racing consumers cause no memory unsafety, only duplicated or skipped
//!   entries.
//!
//! # Design
//!
//! Every field of a slot is an [`AtomicU64`], so there are no data races at all: torn *values* are
//! possible, torn *reads* are detected and discarded.
//!
//! * `head` is a reservation counter: a writer takes sequence number `s = head.fetch_add(1)` and
//!   owns slot `s & (capacity - 1)`.
//! * Each slot has a `stamp` recording its state: `EMPTY`, `busy(s)` (writer of `s` is filling it)
//!   or `committed(s)`. A writer claims its slot by swapping in `busy(s)`; if the stamp it took out
//!   was busy or held a *newer* sequence number (a nested writer lapped the buffer while an outer
//!   writer was mid-write, or a newer writer already took the slot) it puts that stamp back, drops
//!   its record and notes that in the slot's `dropped` tag, so records are never mixed. (A swap,
//!   not a compare-and-swap loop: under the writers' contract nothing else writes the stamp in
//!   between; see `claim_slot`.) After the claim it issues a release fence, stores the five
//!   payload words (relaxed), then stores `committed(s)` with release ordering.
//! * A reader expecting sequence `s` loads the stamp (acquire), the payload words (relaxed), issues
//!   an acquire fence and loads the stamp again (seqlock). Only if both loads are `committed(s)` is
//!   the entry accepted; a newer stamp, or a change between the loads, means the record was
//!   overwritten and it is counted as lost. A stamp that is still older than `s` (or `busy(s)`)
//!   means the writer of `s` has not finished yet: the reader stops there and picks up from that
//!   point next time, unless the slot's `dropped` tag says `s` was dropped (then it is lost).
//!
//! Stamps keep 58 bits of the sequence number (shifted left by 6, as the slot's byte offset is:
//! one shift serves both) and compare them modulo 2^58, so the 64-bit counters
//! may wrap freely.
//!
//! # Records of several slots
//!
//! A trace event's record (its fields) may be longer than one slot: [`RingBuffer::push_record`]
//! reserves `1 + cont` consecutive sequence numbers with one `fetch_add`, claims every slot
//! first (all or none: a collision drops the whole record, each slot counted as dropped), then
//! fills and commits them. The first slot's [`TraceEntry::cont`] says how many
//! [`KIND_CONT`] slots follow. Readers deliver such a record whole or not at all: all its slots
//! committed (delivered together, in order, by one read call), one of them lost (the whole record
//! counts as lost), or one still being written (the read stops before the record's first slot). A
//! read that starts after an overwrite may begin on continuation slots whose first slot is gone;
//! they are delivered like any entry and the caller skips them ([`KIND_CONT`] is no event).

use core::sync::atomic::{AtomicU64, Ordering, fence};

/// [`TraceEntry::kind`] of a plain function-trace record.
pub const KIND_FUNC: u8 = 0;
/// [`TraceEntry::kind`] of a function-graph entry record.
pub const KIND_GRAPH_ENTRY: u8 = 1;
/// [`TraceEntry::kind`] of a function-graph return record.
pub const KIND_GRAPH_RETURN: u8 = 2;
/// [`TraceEntry::kind`] of a continuation slot of a longer record (see [`RingBuffer::push_record`]):
/// `ts`, `ip`, `parent` and `extra` carry 32 bytes of the record's payload ([`CONT_BYTES`]).
pub use formats::ring::KIND_CONT;
/// Payload bytes one continuation slot carries.
pub const CONT_BYTES: usize = 32;
/// Most continuation slots one record may have.
pub use formats::ring::MAX_CONT;

/// One trace record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TraceEntry {
    /// Timestamp (timer counter ticks).
    pub ts: u64,
    /// Address of the traced function.
    pub ip: u64,
    /// Address the traced function was called from.
    pub parent: u64,
    /// [`KIND_FUNC`], [`KIND_GRAPH_ENTRY`] or [`KIND_GRAPH_RETURN`].
    pub kind: u8,
    /// CPU that recorded the entry: the ring's CPU, filled in by the reader ([`push`] does not
    /// store it: a per-CPU ring knows its CPU).
    ///
    /// [`push`]: RingBuffer::push
    pub cpu: u8,
    /// Call depth (function graph).
    pub depth: u16,
    /// Continuation slots ([`KIND_CONT`]) that follow this one and belong to the same record
    /// (0 for a one-slot record; at most [`MAX_CONT`]).
    pub cont: u16,
    /// 16 bits more for a kind that needs them (a one-slot trace event's id); 0 otherwise.
    pub aux: u16,
    /// Function graph: return value or duration.
    pub extra: u64,
}

use formats::ring::{BUSY, EMPTY, SEQ_SHIFT, Slots, WORDS, busy, committed, stamp_older};
pub use formats::ring::{ReadOutcome, ReadStats};

impl TraceEntry {
    /// A continuation slot carrying `chunk` (at most [`CONT_BYTES`], zero-padded); the kernel
    /// writes whole chunks ([`continuation_exact`](Self::continuation_exact)).
    #[cfg(test)]
    pub fn continuation(chunk: &[u8]) -> TraceEntry {
        let mut b = [0u8; CONT_BYTES];
        let n = chunk.len().min(CONT_BYTES);
        b[..n].copy_from_slice(&chunk[..n]);
        let word = |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        TraceEntry { ts: word(0), ip: word(8), parent: word(16), kind: KIND_CONT, cpu: 0, depth: 0, cont: 0, aux: 0, extra: word(24) }
    }

    /// The payload bytes of a continuation slot.
    #[inline]
    pub fn payload(&self) -> [u8; CONT_BYTES] {
        let mut b = [0u8; CONT_BYTES];
        for (i, w) in [self.ts, self.ip, self.parent, self.extra].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// A continuation slot carrying exactly [`CONT_BYTES`] bytes (the fast form).
    #[inline]
    pub fn continuation_exact(chunk: &[u8; CONT_BYTES]) -> TraceEntry {
        let word = |i: usize| u64::from_le_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3], chunk[i + 4], chunk[i + 5], chunk[i + 6], chunk[i + 7]]);
        TraceEntry { ts: word(0), ip: word(8), parent: word(16), kind: KIND_CONT, cpu: 0, depth: 0, cont: 0, aux: 0, extra: word(24) }
    }

    /// Continuation slots a payload of `len` bytes needs.
    #[inline]
    pub const fn slots_for(len: usize) -> usize {
        len.div_ceil(CONT_BYTES)
    }

    /// The word that holds `kind` and `depth` of a one-slot record (no continuation, no `aux`),
    /// as [`RingBuffer::push_raw`] takes it. `depth` must be below 2^16.
    #[inline(always)]
    pub const fn kind_depth_word(kind: u8, depth: u64) -> u64 {
        kind as u64 | depth << 16
    }

    #[inline(always)]
    fn to_words(self) -> [u64; WORDS] {
        let packed = self.kind as u64
            | (self.depth as u64) << 16
            | (self.cont as u64) << 32
            | (self.aux as u64) << 48;
        [self.ts, self.ip, self.parent, packed, self.extra]
    }

    #[inline(always)]
    fn from_words(w: [u64; WORDS], cpu: u8) -> Self {
        TraceEntry {
            ts: w[0],
            ip: w[1],
            parent: w[2],
            kind: w[3] as u8,
            cpu,
            depth: (w[3] >> 16) as u16,
            cont: (w[3] >> 32) as u16,
            aux: (w[3] >> 48) as u16,
            extra: w[4],
        }
    }
}

/// [`RingBuffer::resize`] was asked for a capacity that is not a power of two from 1 to the room
/// reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizeError {
    pub asked: usize,
    pub max: usize,
}

impl core::fmt::Display for ResizeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} slots: a ring holds a power of two from 1 to {} slots", self.asked, self.max)
    }
}

// The stamp encoding and the read side of the slot protocol are `formats::ring`'s (the host's
// streaming reader uses the same code).

/// Bytes one slot takes (a cache line, `1 << SEQ_SHIFT`).
pub const SLOT_BYTES: usize = core::mem::size_of::<Slot>();

/// One slot: a cache line (64 bytes, `1 << SEQ_SHIFT`), so finding it is a shift.
#[repr(C, align(64))]
pub struct Slot {
    stamp: AtomicU64,
    words: [AtomicU64; WORDS],
    /// `committed(s)` of the last sequence number `s` whose writer gave up on this slot.
    dropped: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Slot>() == 1 << SEQ_SHIFT);

impl Slot {
    const fn new() -> Self {
        Slot {
            stamp: AtomicU64::new(EMPTY),
            words: [const { AtomicU64::new(0) }; WORDS],
            dropped: AtomicU64::new(EMPTY),
        }
    }
}

/// An overwrite-oldest trace ring buffer with room for `N` slots (`N` a power of two), of which
/// it uses [`capacity`](Self::capacity) (a power of two, `N` at first; [`resize`](Self::resize)
/// changes it). The room is reserved whatever the capacity, so no slot a writer can compute is
/// ever outside it.
///
/// See the [module documentation](self) for the concurrency contract.
#[repr(C)]
pub struct RingBuffer<const N: usize> {
    /// Next sequence number to reserve.
    head: AtomicU64,
    /// Consumer cursor: first sequence number not yet consumed by [`snapshot`](Self::snapshot).
    cursor: AtomicU64,
    /// Entries found lost by consuming reads so far.
    lost: AtomicU64,
    /// Pushes that gave up because a nested writer collided with an unfinished one.
    dropped: AtomicU64,
    /// Records (not continuation slots) consuming reads delivered.
    consumed: AtomicU64,
    /// Continuation slots pushed (by [`push_record`](Self::push_record)): `written - continued`
    /// is the number of records.
    continued: AtomicU64,
    /// The capacity minus one, shifted left by `SEQ_SHIFT`: slot `s` sits at byte
    /// `(s << SEQ_SHIFT) & mask` of the slots. Always below `N << SEQ_SHIFT` (`resize` checks the
    /// capacity), which `slot` relies on.
    mask: AtomicU64,
    /// Value of `head` for an empty buffer (0 except in tests).
    origin: u64,
    /// Value of `head` when the ring was last emptied ([`reset`](Self::reset) or
    /// [`resize`](Self::resize)): [`written`](Self::written) counts from there.
    base: AtomicU64,
    /// The CPU whose records this ring holds (the [`TraceEntry::cpu`] of what it delivers).
    cpu: u8,
    slots: [Slot; N],
}

impl<const N: usize> RingBuffer<N> {
    const CHECK: () = assert!(
        N.is_power_of_two(),
        "RingBuffer size must be a power of two"
    );

    /// An empty buffer; usable in a `static`.
    pub const fn new() -> Self {
        Self::with_origin(0, 0)
    }

    /// An empty buffer for the records of `cpu`.
    pub const fn for_cpu(cpu: u8) -> Self {
        Self::with_origin(0, cpu)
    }

    const fn with_origin(origin: u64, cpu: u8) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        RingBuffer {
            head: AtomicU64::new(origin),
            cursor: AtomicU64::new(origin),
            lost: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            continued: AtomicU64::new(0),
            mask: AtomicU64::new((N as u64).wrapping_sub(1) << SEQ_SHIFT),
            origin,
            base: AtomicU64::new(origin),
            cpu,
            slots: [const { Slot::new() }; N],
        }
    }

    /// Where a reader outside the kernel finds this ring: the addresses of the reservation
    /// counter `head`, of the mask word (the capacity minus one, shifted left by
    /// [`SEQ_SHIFT`]: slot `s` is at byte `(s << SEQ_SHIFT) & mask` of the slots) and of the
    /// first slot (layout in `formats::ring`).
    pub fn raw_parts(&self) -> (u64, u64, u64) {
        (self.head.as_ptr() as u64, self.mask.as_ptr() as u64, self.slots.as_ptr() as u64)
    }

    /// Number of slots in use.
    #[inline]
    pub fn capacity(&self) -> usize {
        (self.mask.load(Ordering::Relaxed) >> SEQ_SHIFT) as usize + 1
    }

    /// The most slots [`resize`](Self::resize) accepts: the room reserved.
    pub const fn max_capacity(&self) -> usize {
        N
    }

    /// The slot of sequence number `s`.
    #[inline(always)]
    fn slot(&self, s: u64) -> &Slot {
        let offset = ((s << SEQ_SHIFT) & self.mask.load(Ordering::Relaxed)) as usize;
        debug_assert!(offset < N * core::mem::size_of::<Slot>());
        // SAFETY: `mask` is always below `N << SEQ_SHIFT` (its initial value, and `resize`
        // stores only capacities up to `N`), and a multiple of the slot size (64 bytes, 1 <<
        // SEQ_SHIFT), so `offset` is the start of one of the `N` slots.
        unsafe { &*(self.slots.as_ptr() as *const u8).add(offset).cast::<Slot>() }
    }

    /// Uses `capacity` slots from now on (a power of two, 1 to `N`), emptying the ring: what it
    /// held is discarded (counted neither lost nor read) and its counters start again; the
    /// sequence numbers go on. Call it while no writer runs (tracing paused). A writer that
    /// still runs meanwhile cannot touch memory outside the ring; at worst its one record
    /// makes a reader wait at its slot until a later record replaces it.
    pub fn resize(&self, capacity: usize) -> Result<(), ResizeError> {
        if !capacity.is_power_of_two() || capacity > N {
            return Err(ResizeError { asked: capacity, max: N });
        }
        self.mask.store((capacity as u64 - 1) << SEQ_SHIFT, Ordering::Release);
        for slot in &self.slots[..capacity] {
            slot.stamp.store(EMPTY, Ordering::Relaxed);
            slot.dropped.store(EMPTY, Ordering::Relaxed);
        }
        // The head is read after the stamps are cleared: a straggling writer's record is either
        // before it (and not read) or after it with its stamp intact.
        fence(Ordering::SeqCst);
        self.clear();
        Ok(())
    }

    /// Empties the ring for its readers and starts its counts again (Linux's
    /// `ring_buffer_reset_cpu`: `> trace`, a tracer change): what it holds is skipped, not
    /// counted lost or read; `written`, `lost`, `dropped` and `read_events` count from here.
    pub fn clear(&self) {
        let head = self.head.load(Ordering::Acquire);
        self.lost.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        self.consumed.store(0, Ordering::Relaxed);
        self.continued.store(0, Ordering::Relaxed);
        self.cursor.store(head, Ordering::Release);
        self.base.store(head, Ordering::Release);
    }

    /// Append `e`, overwriting the oldest entry if the buffer is full.
    ///
    /// Never blocks, allocates or panics. If a nested writer finds the slot it reserved still being
    /// filled by the writer it interrupted, it drops its own record (counted in
    /// [`dropped`](Self::dropped) and, once a reader reaches it, in [`lost`](Self::lost)).
    #[inline]
    pub fn push(&self, e: &TraceEntry) {
        self.push_inner(e.to_words(), || {}, || {});
    }

    /// [`push`](Self::push) of the one-slot record `ts`, `ip`, `parent`, `extra` whose kind and
    /// depth are `kind_depth` ([`TraceEntry::kind_depth_word`]): for writers that build that word
    /// from values they know to fit.
    #[inline(always)]
    pub fn push_raw(&self, ts: u64, ip: u64, parent: u64, kind_depth: u64, extra: u64) {
        self.push_inner([ts, ip, parent, kind_depth, extra], || {}, || {});
    }

    /// `push` with hooks at the two points where a nested writer can interrupt (tests only pass
    /// non-empty closures; in `push` they compile to nothing).
    #[inline(always)]
    fn push_inner(&self, w: [u64; WORDS], after_reserve: impl FnOnce(), mid_write: impl FnOnce()) {
        let s = self.head.fetch_add(1, Ordering::Relaxed);
        after_reserve();
        let slot = self.slot(s);
        if self.claim_slot(slot, s).is_none() {
            // Either an interrupted writer on this CPU is still filling this slot (we cannot
            // wait for it), or a newer writer already reused it. Give up on this record.
            self.tag_dropped(slot, s);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Order the `busy` stamp before the payload stores (seqlock writer side).
        fence(Ordering::Release);
        slot.words[0].store(w[0], Ordering::Relaxed);
        slot.words[1].store(w[1], Ordering::Relaxed);
        mid_write();
        slot.words[2].store(w[2], Ordering::Relaxed);
        slot.words[3].store(w[3], Ordering::Relaxed);
        slot.words[4].store(w[4], Ordering::Relaxed);
        // Nested writers never modify a busy stamp, so a plain store suffices.
        slot.stamp.store(committed(s), Ordering::Release);
    }

    /// Appends a record of several slots: `first` (its `cont` is set to `rest.len()`) and the
    /// continuation slots `rest` ([`TraceEntry::continuation`]), at consecutive sequence numbers.
    /// All or nothing: if one slot cannot be claimed (a nested writer collided with the one it
    /// interrupted), the whole record is dropped and each of its slots counted in
    /// [`dropped`](Self::dropped). A record of more than [`MAX_CONT`] continuations, or longer
    /// than the buffer, is dropped the same way. Never blocks, allocates or panics.
    pub fn push_record(&self, first: &TraceEntry, rest: &[TraceEntry]) {
        if rest.is_empty() {
            return self.push(first);
        }
        let n = rest.len() as u64 + 1;
        if rest.len() > MAX_CONT || n > self.capacity() as u64 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let s0 = self.head.fetch_add(n, Ordering::Relaxed);
        self.continued.fetch_add(n - 1, Ordering::Release);
        // Claim every slot before writing any, remembering each slot's previous stamp so a
        // failed claim can give the others back untouched.
        let mut prev = [core::mem::MaybeUninit::<u64>::uninit(); MAX_CONT + 1];
        let mut claimed = 0;
        while claimed < n {
            match self.claim(s0.wrapping_add(claimed)) {
                Some(old) => {
                    prev[claimed as usize].write(old);
                }
                None => break,
            }
            claimed += 1;
        }
        if claimed < n {
            for k in 0..n {
                let s = s0.wrapping_add(k);
                let slot = self.slot(s);
                self.tag_dropped(slot, s);
                if k < claimed {
                    // Nothing was written: the slot's older record is still whole.
                    // SAFETY: entries below `claimed` were written by the loop above.
                    slot.stamp.store(unsafe { prev[k as usize].assume_init() }, Ordering::Release);
                }
            }
            self.dropped.fetch_add(n, Ordering::Relaxed);
            return;
        }
        // Order the `busy` stamps before the payload stores (seqlock writer side).
        fence(Ordering::Release);
        let head = TraceEntry { cont: rest.len() as u16, ..*first };
        for (k, e) in core::iter::once(&head).chain(rest).enumerate() {
            let s = s0.wrapping_add(k as u64);
            let slot = self.slot(s);
            for (w, v) in slot.words.iter().zip(e.to_words()) {
                w.store(v, Ordering::Relaxed);
            }
            slot.stamp.store(committed(s), Ordering::Release);
        }
    }

    /// Claims the slot of sequence number `s` (stamp `busy(s)`), returning its previous stamp;
    /// `None` when it is busy (an interrupted writer on this CPU) or already holds a newer record.
    #[inline(always)]
    fn claim(&self, s: u64) -> Option<u64> {
        self.claim_slot(self.slot(s), s)
    }

    /// Notes in `slot` that the record of sequence number `s` was dropped, unless the slot already
    /// notes a newer one (a nested writer's, which a reader may be waiting on).
    #[inline(always)]
    fn tag_dropped(&self, slot: &Slot, s: u64) {
        let tag = slot.dropped.load(Ordering::Relaxed);
        if tag == EMPTY || stamp_older(tag, s) {
            slot.dropped.store(committed(s), Ordering::Release);
        }
    }

    /// [`claim`](Self::claim) of `slot`: one atomic swap. Under the writers' contract (one writer
    /// context per buffer, and writers that interrupt it finish before it resumes) nothing else
    /// writes the stamp between the swap and the putting back of a refused claim, except a
    /// nested writer, which finds our `busy` stamp, puts it back and gives up in turn. A reader
    /// meanwhile sees a `busy` stamp: the record it wants is not there yet, or lost. One case
    /// differs from a compare-and-swap: a writer whose slot a nested writer lapped before the
    /// claim (a whole buffer written inside one interrupt) shows its older `busy` stamp for a
    /// moment over the newer record, and a reader checking that record just then counts it lost
    /// though it stays whole. Loss may be over-counted then, never hidden.
    #[inline(always)]
    fn claim_slot(&self, slot: &Slot, s: u64) -> Option<u64> {
        let new = busy(s);
        let old = slot.stamp.swap(new, Ordering::Relaxed);
        // The common case in a few instructions: `old` is a committed stamp older than `s`
        // (`stamp_older`), i.e. `new - old` (the sequence difference shifted left by 6, plus the
        // busy bit) is odd and, read as a signed number, above 1. Anything else takes the exact
        // test (an empty slot, whose 0 reads as older unless `s` has bit 57 set, also passes).
        let d = new.wrapping_sub(old);
        if d & 1 != 0 && d as i64 > 1 {
            return Some(old);
        }
        self.claim_slow(slot, s, old)
    }

    /// The exact test of [`claim_slot`](Self::claim_slot) for the stamps its fast test leaves (in
    /// line: a call would make every writer save registers).
    #[inline(always)]
    fn claim_slow(&self, slot: &Slot, s: u64, old: u64) -> Option<u64> {
        // Rare (an empty slot or a nested writer): laid out after the common path.
        core::hint::cold_path();
        if old & BUSY != 0 || (old != EMPTY && !stamp_older(old, s)) {
            // Refused: what was there stays, unchanged.
            slot.stamp.store(old, Ordering::Release);
            return None;
        }
        Some(old)
    }

    /// Total pushes ever (since creation or the last [`reset`](Self::reset)), including those later
    /// overwritten or dropped.
    #[inline]
    pub fn written(&self) -> u64 {
        self.head.load(Ordering::Relaxed).wrapping_sub(self.base.load(Ordering::Relaxed))
    }

    /// Records pushed ever (since creation or the last [`reset`](Self::reset)): [`written`](Self::written)
    /// without the continuation slots of multi-slot records, as Linux's `entries-written` counts.
    #[inline]
    pub fn records_written(&self) -> u64 {
        // `continued` first (acquire, paired with `push_record`'s release): the head read after
        // it includes every reservation those continuation slots belong to.
        let continued = self.continued.load(Ordering::Acquire);
        self.written().saturating_sub(continued)
    }

    /// Entries that a consumer could not / cannot get: those found lost by earlier
    /// [`snapshot`](Self::snapshot)s, plus those already overwritten beyond the consumer cursor
    /// (`unconsumed - capacity` when more than the capacity are unconsumed).
    pub fn lost(&self) -> u64 {
        let head = self.head.load(Ordering::Relaxed);
        let cursor = self.cursor.load(Ordering::Relaxed);
        let pending = formats::ring::distance(cursor, head);
        self.lost
            .load(Ordering::Relaxed)
            .wrapping_add(pending.saturating_sub(self.capacity() as u64))
    }

    /// Pushes abandoned because a nested writer collided with the writer it interrupted.
    #[inline]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Number of entries a consumer could still read right now (at most the capacity).
    pub fn unread(&self) -> u64 {
        let head = self.head.load(Ordering::Relaxed);
        let cursor = self.cursor.load(Ordering::Relaxed);
        formats::ring::distance(cursor, head).min(self.capacity() as u64)
    }

    /// The consumer cursor: first sequence number not yet consumed.
    #[inline]
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Sequence number the next push will get.
    #[inline]
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Consuming read: visit, in order, every surviving entry from the consumer cursor up to the
    /// current head (calling `out(seq, entry)`), count the ones that were overwritten as lost, and
    /// advance the cursor.
    ///
    /// Stops early at an entry whose writer has not finished yet (it will be returned by the next
    /// call). Consuming reads must be serialized by the caller.
    pub fn snapshot(&self, out: impl FnMut(u64, TraceEntry)) -> ReadStats {
        self.consume(true, out)
    }

    /// The consuming read of [`snapshot`](Self::snapshot) and [`discard`](Self::discard):
    /// advances the cursor, counts the lost entries and, if `counted`, the records delivered.
    fn consume(&self, counted: bool, mut out: impl FnMut(u64, TraceEntry)) -> ReadStats {
        let from = self.cursor.load(Ordering::Relaxed);
        let mut records = 0;
        let r = self.read_from(from, |s, e| {
            records += u64::from(e.kind != KIND_CONT);
            out(s, e)
        });
        self.cursor.store(r.next, Ordering::Relaxed);
        self.lost.fetch_add(r.stats.lost, Ordering::Relaxed);
        if counted {
            self.consumed.fetch_add(records, Ordering::Relaxed);
        }
        r.stats
    }

    /// Records consuming reads ([`snapshot`](Self::snapshot)) delivered since the ring was last
    /// emptied (Linux's `read events`).
    pub fn read_events(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Non-consuming read starting at sequence number `from`: like [`snapshot`](Self::snapshot)
    /// but leaves the cursor and lost counter alone and returns where to continue. Entries older
    /// than `head - capacity` count as lost. If `from` is ahead of the head nothing is read.
    pub fn read_from(&self, from: u64, mut out: impl FnMut(u64, TraceEntry)) -> ReadOutcome {
        let head = self.head.load(Ordering::Acquire);
        let cpu = self.cpu;
        formats::ring::read_from(self, head, self.capacity() as u64, from, |s, w| out(s, TraceEntry::from_words(w, cpu)))
    }

    /// Consume everything currently readable, discarding it (not counted in
    /// [`read_events`](Self::read_events)); returns the stats.
    pub fn discard(&self) -> ReadStats {
        self.consume(false, |_, _| {})
    }

    /// Empty the buffer and zero all counters.
    ///
    /// Only valid while no writer is active on any CPU (tracing disabled and no push in flight) and
    /// no reader is running; otherwise the result is still memory-safe but counts and contents may
    /// be inconsistent.
    pub fn reset(&self) {
        for slot in &self.slots[..self.capacity()] {
            slot.stamp.store(EMPTY, Ordering::Relaxed);
            slot.dropped.store(EMPTY, Ordering::Relaxed);
            for w in &slot.words {
                w.store(0, Ordering::Relaxed);
            }
        }
        self.lost.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        self.consumed.store(0, Ordering::Relaxed);
        self.continued.store(0, Ordering::Relaxed);
        self.cursor.store(self.origin, Ordering::Relaxed);
        self.base.store(self.origin, Ordering::Relaxed);
        self.head.store(self.origin, Ordering::Release);
    }
}

/// The kernel's reader of its own slots (the protocol is `formats::ring`'s).
impl<const N: usize> Slots for RingBuffer<N> {
    type Slot<'a> = &'a Slot;

    #[inline]
    fn slot(&self, s: u64) -> &Slot {
        RingBuffer::slot(self, s)
    }

    #[inline]
    fn stamp(slot: &&Slot) -> u64 {
        slot.stamp.load(Ordering::Acquire)
    }

    #[inline]
    fn words_then_stamp(slot: &&Slot) -> ([u64; WORDS], u64) {
        let w = core::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
        // Order the payload loads before the re-check (seqlock reader side).
        fence(Ordering::Acquire);
        (w, slot.stamp.load(Ordering::Relaxed))
    }

    #[inline]
    fn dropped(slot: &&Slot) -> u64 {
        slot.dropped.load(Ordering::Acquire)
    }
}

impl<const N: usize> Default for RingBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::vec::Vec;

    fn checksum(e: &TraceEntry) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for v in [
            e.ts,
            e.ip,
            e.parent,
            e.kind as u64,
            e.cpu as u64,
            e.depth as u64,
            e.cont as u64,
            e.aux as u64,
        ] {
            h ^= v;
            h = h.wrapping_mul(0x0000_0100_0000_01B3).rotate_left(29);
        }
        h
    }

    /// A distinctive entry for sequence number `i`, with `extra` = checksum of the other fields.
    fn entry(i: u64) -> TraceEntry {
        let mut e = TraceEntry {
            ts: i,
            ip: 0x9000_0000_0020_0000 ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            parent: !i,
            kind: (i % 3) as u8,
            // What the test rings (CPU 0) deliver.
            cpu: 0,
            depth: (i >> 5) as u16,
            cont: 0,
            aux: 0,
            extra: 0,
        };
        e.extra = checksum(&e);
        e
    }

    fn collect<const N: usize>(rb: &RingBuffer<N>) -> (Vec<(u64, TraceEntry)>, ReadStats) {
        let mut v = Vec::new();
        let st = rb.snapshot(|s, e| v.push((s, e)));
        (v, st)
    }

    #[test]
    fn entry_layout_and_packing() {
        assert_eq!(core::mem::size_of::<TraceEntry>(), 40);
        let e = TraceEntry {
            ts: 1,
            ip: 2,
            parent: 3,
            kind: 0xFE,
            cpu: 0xFD,
            depth: 0xFFFC,
            cont: 0xABCD,
            aux: 0xBEEF,
            extra: u64::MAX,
        };
        assert_eq!(TraceEntry::from_words(e.to_words(), e.cpu), e);
        assert_eq!(
            TraceEntry::from_words(TraceEntry::default().to_words(), 0),
            TraceEntry::default()
        );
    }

    #[test]
    fn resize_changes_the_capacity_and_empties_the_ring() {
        let rb = RingBuffer::<16>::new();
        assert_eq!((rb.capacity(), rb.max_capacity()), (16, 16));
        for i in 0..20 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.resize(12), Err(ResizeError { asked: 12, max: 16 }));
        assert_eq!(rb.resize(32), Err(ResizeError { asked: 32, max: 16 }));
        assert_eq!(rb.capacity(), 16, "a refused resize changes nothing");
        rb.resize(4).unwrap();
        assert_eq!((rb.capacity(), rb.written(), rb.lost(), rb.unread()), (4, 0, 0, 0));
        for i in 100..110 {
            rb.push(&entry(i));
        }
        // Four slots: the newest four records, six lost.
        let (v, st) = collect(&rb);
        assert_eq!(v.iter().map(|(_, e)| e.ts).collect::<Vec<_>>(), [106, 107, 108, 109]);
        assert_eq!((st.read, st.lost, rb.written()), (4, 6, 10));
        rb.resize(16).unwrap();
        for i in 200..216 {
            rb.push(&entry(i));
        }
        let (v, st) = collect(&rb);
        assert_eq!(v.len(), 16, "the grown ring holds sixteen again");
        assert_eq!(st.lost, 0);
        assert!(v.iter().all(|(_, e)| e.ts >= 200), "nothing from before the resize");
    }

    #[test]
    fn resize_while_a_writer_runs_stays_in_the_ring_and_whole() {
        // `resize` asks for no writer; one that runs anyway must not write outside the ring or
        // mix records: every record read afterwards is whole (its checksum holds).
        let rb = Arc::new(RingBuffer::<64>::new());
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let writer = {
            let (rb, stop, count) = (rb.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    rb.push(&entry(i));
                    i += 1;
                    count.store(i, Ordering::Relaxed);
                }
                i
            })
        };
        while count.load(Ordering::Relaxed) < 1000 {
            std::hint::spin_loop();
        }
        // At least 2,000 resizes, and on until the writer pushed 20,000 records meanwhile (the
        // threads may not run at the same time on a loaded host; bounded by 10 s).
        let before = count.load(Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let mut round = 0usize;
        while (round < 2000 || count.load(Ordering::Relaxed) - before < 20_000) && t0.elapsed().as_secs() < 10 {
            rb.resize([4, 64, 16, 1, 32][round % 5]).unwrap();
            let _ = collect(&rb);
            round += 1;
        }
        // End on the size the checks below expect.
        rb.resize(32).unwrap();
        let during = count.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        let pushed = writer.join().unwrap();
        assert!(during > 0, "the writer did not run during the resizes: nothing was tested");
        rb.clear();
        for i in 0..100 {
            rb.push(&entry(pushed + i));
        }
        let (v, st) = collect(&rb);
        assert!(v.iter().all(|(_, e)| e.extra == checksum(e)), "a torn record");
        assert_eq!((v.len(), st.lost), (32, 68), "after the writer stopped, the ring works as before");
    }

    #[test]
    fn clear_starts_the_counts_again() {
        let rb = RingBuffer::<8>::new();
        for i in 0..20 {
            rb.push(&entry(i));
        }
        let _ = rb.snapshot(|_, _| {});
        assert_eq!((rb.lost(), rb.read_events()), (12, 8));
        rb.push(&entry(20));
        rb.clear();
        assert_eq!((rb.written(), rb.lost(), rb.read_events(), rb.unread()), (0, 0, 0, 0));
        rb.push(&entry(21));
        let (v, _) = collect(&rb);
        assert_eq!(v.iter().map(|(_, e)| e.ts).collect::<Vec<_>>(), [21]);
    }

    #[test]
    fn the_ring_names_its_cpu() {
        let rb = RingBuffer::<8>::for_cpu(5);
        rb.push(&TraceEntry { cpu: 2, ..entry(1) });
        rb.push_record(&entry(2), &[TraceEntry::continuation(&[1])]);
        let (v, _) = collect(&rb);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|(_, e)| e.cpu == 5));
        assert_eq!(v[0].1, TraceEntry { cpu: 5, ..entry(1) });
    }

    #[test]
    fn static_buffer() {
        static RB: RingBuffer<16> = RingBuffer::new();
        RB.push(&entry(7));
        let (v, st) = collect(&RB);
        assert_eq!(st, ReadStats { read: 1, lost: 0 });
        assert_eq!(v, [(0, entry(7))]);
        assert_eq!(RB.capacity(), 16);
    }

    #[test]
    fn empty() {
        let rb = RingBuffer::<8>::new();
        assert_eq!(rb.written(), 0);
        assert_eq!(rb.lost(), 0);
        assert_eq!(rb.unread(), 0);
        let (v, st) = collect(&rb);
        assert!(v.is_empty());
        assert_eq!(st, ReadStats::default());
    }

    #[test]
    fn no_wrap() {
        let rb = RingBuffer::<8>::new();
        for i in 0..5 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.written(), 5);
        assert_eq!(rb.unread(), 5);
        assert_eq!(rb.lost(), 0);
        // Non-consuming read first.
        let mut seen = Vec::new();
        let r = rb.read_from(0, |s, e| seen.push((s, e)));
        assert_eq!(
            r,
            ReadOutcome {
                next: 5,
                stats: ReadStats { read: 5, lost: 0 }
            }
        );
        assert_eq!(rb.cursor(), 0);
        let (v, st) = collect(&rb);
        assert_eq!(v, seen);
        assert_eq!(st, ReadStats { read: 5, lost: 0 });
        for (k, (s, e)) in v.iter().enumerate() {
            assert_eq!(*s, k as u64);
            assert_eq!(*e, entry(k as u64));
        }
        assert_eq!(rb.unread(), 0);
        // Nothing new: nothing read.
        assert_eq!(collect(&rb).1, ReadStats::default());
        // Incremental reads continue from the cursor.
        rb.push(&entry(5));
        rb.push(&entry(6));
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 2, lost: 0 });
        assert_eq!(v, [(5, entry(5)), (6, entry(6))]);
    }

    #[test]
    fn exactly_full_then_wrap() {
        let rb = RingBuffer::<8>::new();
        for i in 0..8 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.lost(), 0);
        assert_eq!(collect(&rb).1, ReadStats { read: 8, lost: 0 });

        let rb = RingBuffer::<8>::new();
        for i in 0..29 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.written(), 29);
        assert_eq!(rb.lost(), 29 - 8);
        assert_eq!(rb.unread(), 8);
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 8, lost: 21 });
        let seqs: Vec<u64> = v.iter().map(|p| p.0).collect();
        assert_eq!(seqs, (21..29).collect::<Vec<_>>());
        for (s, e) in &v {
            assert_eq!(*e, entry(*s));
        }
        // Lost stays accounted after reading.
        assert_eq!(rb.lost(), 21);
        for i in 29..32 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.lost(), 21);
        assert_eq!(rb.unread(), 3);
        for i in 32..45 {
            rb.push(&entry(i));
        }
        // 16 unconsumed, 8 of them gone.
        assert_eq!(rb.lost(), 29);
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 8, lost: 8 });
        assert_eq!(v[0], (37, entry(37)));
        assert_eq!(rb.lost(), 29);
        assert_eq!(rb.written(), 45);
    }

    #[test]
    fn read_from_old_position() {
        let rb = RingBuffer::<4>::new();
        for i in 0..10 {
            rb.push(&entry(i));
        }
        let mut v = Vec::new();
        let r = rb.read_from(1, |s, _| v.push(s));
        assert_eq!(r.stats, ReadStats { read: 4, lost: 5 });
        assert_eq!(r.next, 10);
        assert_eq!(v, [6, 7, 8, 9]);
        // From the future: nothing.
        let r = rb.read_from(100, |_, _| panic!());
        assert_eq!(
            r,
            ReadOutcome {
                next: 100,
                stats: ReadStats::default()
            }
        );
    }

    #[test]
    fn reset_clears() {
        let rb = RingBuffer::<4>::new();
        for i in 0..10 {
            rb.push(&entry(i));
        }
        let _ = rb.discard();
        rb.push(&entry(10));
        rb.push_record(&entry(11), &[TraceEntry::continuation(&[1, 2])]);
        rb.reset();
        assert_eq!((rb.written(), rb.records_written()), (0, 0));
        assert_eq!(rb.lost(), 0);
        assert_eq!(rb.unread(), 0);
        assert_eq!(collect(&rb).1, ReadStats::default());
        rb.push(&entry(1));
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 1, lost: 0 });
        assert_eq!(v, [(0, entry(1))]);
    }

    #[test]
    fn counters_near_u64_wrap() {
        let start = u64::MAX - 5;
        let rb = RingBuffer::<8>::with_origin(start, 0);
        for i in 0..20u64 {
            rb.push(&entry(i));
        }
        assert_eq!(rb.written(), 20);
        assert_eq!(rb.head(), start.wrapping_add(20));
        assert_eq!(rb.lost(), 12);
        assert_eq!(rb.unread(), 8);
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 8, lost: 12 });
        for (k, (s, e)) in v.iter().enumerate() {
            let i = 12 + k as u64;
            assert_eq!(*s, start.wrapping_add(i));
            assert_eq!(*e, entry(i));
        }
        // Straddle the wrap without overflow in a small, non-overflowing buffer too.
        let rb = RingBuffer::<4>::with_origin(u64::MAX - 1, 0);
        for i in 0..4 {
            rb.push(&entry(i));
        }
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 4, lost: 0 });
        let seqs: Vec<u64> = v.iter().map(|p| p.0).collect();
        assert_eq!(seqs, [u64::MAX - 1, u64::MAX, 0, 1]);
        assert_eq!(rb.written(), 4);
        rb.reset();
        assert_eq!(rb.written(), 0);
        assert_eq!(rb.head(), u64::MAX - 1);
    }

    #[test]
    fn stamp_ordering_wraps() {
        assert!(stamp_older(committed(5), 6));
        assert!(!stamp_older(committed(6), 6));
        assert!(!stamp_older(committed(7), 6));
        assert!(stamp_older(committed(u64::MAX), 0));
        assert!(stamp_older(busy(u64::MAX - 3), 1));
        assert!(!stamp_older(committed(1), u64::MAX));
        assert_ne!(committed(0), EMPTY);
        assert_ne!(committed(u64::MAX), EMPTY);
        assert_ne!(busy(0), committed(0));
        // The window is half the 58-bit sequence space: exactly 2^57 behind is no longer older.
        assert!(stamp_older(committed(0), (1 << 57) - 1));
        assert!(!stamp_older(committed(0), 1 << 57));
    }

    #[test]
    fn distance_is_zero_when_ahead() {
        assert_eq!(formats::ring::distance(3, 10), 7);
        assert_eq!(formats::ring::distance(10, 3), 0);
        assert_eq!(formats::ring::distance(0, u64::MAX / 2), u64::MAX / 2);
        assert_eq!(formats::ring::distance(0, u64::MAX / 2 + 1), 0);
    }

    #[test]
    fn read_from_half_the_space_behind_counts_it_lost() {
        // `from` exactly u64::MAX / 2 behind the head is behind (not ahead): all of it but the
        // window is lost.
        let rb = RingBuffer::<8>::new();
        for i in 0..3 {
            rb.push(&entry(i));
        }
        let r = rb.read_from(3u64.wrapping_sub(u64::MAX / 2), |_, _| {});
        assert_eq!(r.stats.lost, u64::MAX / 2 - 8);
        let r = rb.read_from(3u64.wrapping_sub(u64::MAX / 2 + 1), |_, _| panic!("ahead of the head"));
        assert_eq!(r.stats, ReadStats::default());
    }

    #[test]
    fn slot_states() {
        let rb = RingBuffer::<8>::new();
        // Never written: pending (a writer may be about to claim it).
        assert!(matches!(formats::ring::read_slot(&rb, 5), formats::ring::SlotRead::Pending));
        for i in 0..9 {
            rb.push(&entry(i));
        }
        // Slot 0 now holds seq 8: seq 0 was overwritten by a newer record.
        assert!(matches!(formats::ring::read_slot(&rb, 0), formats::ring::SlotRead::Lost));
        assert!(matches!(formats::ring::read_slot(&rb, 8), formats::ring::SlotRead::Entry(w) if TraceEntry::from_words(w, 0) == entry(8)));
        assert!(matches!(formats::ring::read_slot(&rb, 1), formats::ring::SlotRead::Entry(w) if TraceEntry::from_words(w, 0) == entry(1)));
        // Slot 1 holds seq 1, older than seq 9 that will go there: pending.
        assert!(matches!(formats::ring::read_slot(&rb, 9), formats::ring::SlotRead::Pending));
    }

    #[test]
    fn reader_waits_for_the_very_first_record() {
        // Seq 0 half written: a reader must wait for it, not count it lost.
        let rb = RingBuffer::<8>::new();
        rb.push_inner(
            entry(0).to_words(),
            || {},
            || {
                let (v, st) = collect(&rb);
                assert!(v.is_empty());
                assert_eq!(st, ReadStats::default());
            },
        );
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 1, lost: 0 });
        assert_eq!(v, [(0, entry(0))]);
    }

    #[test]
    fn nested_writer_small() {
        // An interrupt pushes one record while the outer push is half-way through its stores.
        let rb = RingBuffer::<8>::new();
        rb.push(&entry(100));
        rb.push_inner(entry(101).to_words(), || {}, || rb.push(&entry(102)));
        rb.push_inner(entry(103).to_words(), || rb.push(&entry(104)), || {});
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 5, lost: 0 });
        assert_eq!(
            v,
            [
                (0, entry(100)),
                (1, entry(101)),
                (2, entry(102)),
                (3, entry(103)),
                (4, entry(104))
            ]
        );
        assert_eq!(rb.dropped(), 0);
    }

    #[test]
    fn nested_writer_laps_busy_slot() {
        // The interrupt pushes N records while the outer writer is mid-write: its last record maps
        // onto the slot the outer writer owns and must be dropped instead of mixing the two.
        const N: usize = 8;
        let rb = RingBuffer::<N>::new();
        rb.push_inner(
            entry(0).to_words(),
            || {},
            || {
                for i in 1..=N as u64 {
                    rb.push(&entry(i));
                }
            },
        );
        assert_eq!(rb.written(), N as u64 + 1);
        assert_eq!(rb.dropped(), 1);
        let (v, st) = collect(&rb);
        // Seq 0 fell out of the window, seq N was dropped.
        assert_eq!(
            st,
            ReadStats {
                read: N as u64 - 1,
                lost: 2
            }
        );
        for (s, e) in &v {
            assert_eq!(*e, entry(*s));
            assert_eq!(e.extra, checksum(e));
        }
        assert_eq!(v.first().unwrap().0, 1);
        assert_eq!(v.last().unwrap().0, N as u64 - 1);
        // The buffer keeps working afterwards.
        rb.push(&entry(50));
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 1, lost: 0 });
        assert_eq!(v, [(N as u64 + 1, entry(50))]);
        assert_eq!(rb.written(), rb.lost() + (N as u64 - 1) + 1);
    }

    #[test]
    fn nested_writer_laps_before_claim() {
        // The interrupt arrives right after the outer writer reserved its sequence number but
        // before it claimed the slot; the interrupt's newer record wins and the outer one is
        // dropped.
        const N: usize = 8;
        let rb = RingBuffer::<N>::new();
        rb.push_inner(
            entry(0).to_words(),
            || {
                for i in 1..=N as u64 {
                    rb.push(&entry(i));
                }
            },
            || {},
        );
        assert_eq!(rb.dropped(), 1);
        let (v, st) = collect(&rb);
        assert_eq!(
            st,
            ReadStats {
                read: N as u64,
                lost: 1
            }
        );
        for (s, e) in &v {
            assert_eq!(*e, entry(*s));
        }
        assert_eq!(v.last().unwrap().0, N as u64);
    }

    #[test]
    fn reader_stops_at_unfinished_writer() {
        let rb = RingBuffer::<8>::new();
        rb.push(&entry(0));
        let mut inner = None;
        rb.push_inner(
            entry(1).to_words(),
            || inner = Some(collect(&rb)),
            || {
                // Reader (e.g. on another CPU) looks while seq 1 is half written.
                let (v, st) = collect(&rb);
                assert!(v.is_empty());
                assert_eq!(st, ReadStats::default());
                rb.push(&entry(2));
            },
        );
        let (v, st) = inner.unwrap();
        assert_eq!(st, ReadStats { read: 1, lost: 0 });
        assert_eq!(v, [(0, entry(0))]);
        assert_eq!(rb.cursor(), 1);
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 2, lost: 0 });
        assert_eq!(v, [(1, entry(1)), (2, entry(2))]);
    }

    #[test]
    fn concurrent_reader_never_sees_torn_entries() {
        const N: usize = 64;
        const TOTAL: u64 = 400_000;
        let rb = Arc::new(RingBuffer::<N>::new());
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let rb = rb.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..TOTAL {
                    rb.push(&entry(i));
                }
                done.store(true, Ordering::Release);
            })
        };
        let mut read = 0u64;
        let mut lost = 0u64;
        let mut last: Option<u64> = None;
        let mut check = |s: u64, e: TraceEntry| {
            assert_eq!(e.extra, checksum(&e), "torn entry at seq {s}: {e:?}");
            assert_eq!(e, entry(s), "wrong entry at seq {s}");
            if let Some(l) = last {
                assert!(s > l, "out of order: {s} after {l}");
            }
            last = Some(s);
        };
        loop {
            let finished = done.load(Ordering::Acquire);
            let st = rb.snapshot(&mut check);
            read += st.read;
            lost += st.lost;
            if finished {
                break;
            }
        }
        writer.join().unwrap();
        let st = rb.snapshot(&mut check);
        read += st.read;
        lost += st.lost;
        assert_eq!(read + lost, TOTAL);
        assert_eq!(rb.written(), TOTAL);
        assert_eq!(rb.lost(), lost);
        assert_eq!(rb.dropped(), 0);
        assert!(read > 0);
    }

    #[test]
    fn concurrent_non_consuming_readers() {
        // Several readers race a writer with read_from(); every accepted entry must be intact.
        const N: usize = 16;
        let rb = Arc::new(RingBuffer::<N>::new());
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let rb = rb.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let from = rb.head().saturating_sub(N as u64);
                        rb.read_from(from, |s, e| {
                            assert_eq!(e, entry(s));
                            n += 1;
                        });
                    }
                    n
                })
            })
            .collect();
        for i in 0..200_000 {
            rb.push(&entry(i));
        }
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
    }

    #[test]
    fn push_from_many_entries_never_panics() {
        let rb = RingBuffer::<1>::new();
        for i in 0..100 {
            rb.push(&entry(i));
        }
        let (v, st) = collect(&rb);
        assert_eq!(st, ReadStats { read: 1, lost: 99 });
        assert_eq!(v, [(99, entry(99))]);
    }

    /// A record of `1 + n` slots whose payload encodes `i` in every byte range.
    fn record(i: u64, n: usize) -> (TraceEntry, Vec<TraceEntry>, Vec<u8>) {
        let payload: Vec<u8> = (0..n * CONT_BYTES).map(|k| (i as u8).wrapping_mul(31).wrapping_add(k as u8)).collect();
        let first = TraceEntry { ts: i, ip: i ^ 0x55, kind: 9, extra: payload.len() as u64, ..Default::default() };
        let rest = payload.chunks(CONT_BYTES).map(TraceEntry::continuation).collect();
        (first, rest, payload)
    }

    /// Groups delivered entries into records (first slot + its continuations); orphan
    /// continuations (their first slot was overwritten) are counted apart.
    fn records(v: &[(u64, TraceEntry)]) -> (Vec<(TraceEntry, Vec<u8>)>, usize) {
        let (mut out, mut orphans, mut i) = (Vec::new(), 0, 0);
        while i < v.len() {
            let (seq, e) = v[i];
            if e.kind == KIND_CONT {
                orphans += 1;
                i += 1;
                continue;
            }
            let mut bytes = Vec::new();
            for k in 0..e.cont as usize {
                let (s2, c) = v[i + 1 + k];
                assert_eq!(s2, seq + 1 + k as u64, "continuations are consecutive");
                assert_eq!(c.kind, KIND_CONT);
                bytes.extend_from_slice(&c.payload());
            }
            i += 1 + e.cont as usize;
            out.push((e, bytes));
        }
        (out, orphans)
    }

    #[test]
    fn continuation_round_trip() {
        let chunk: Vec<u8> = (0..CONT_BYTES as u8).collect();
        assert_eq!(TraceEntry::continuation(&chunk).payload().as_slice(), chunk.as_slice());
        let mut short = [0u8; CONT_BYTES];
        short[..3].copy_from_slice(&[1, 2, 3]);
        assert_eq!(TraceEntry::continuation(&[1, 2, 3]).payload(), short);
        assert_eq!(TraceEntry::slots_for(0), 0);
        assert_eq!(TraceEntry::slots_for(1), 1);
        assert_eq!(TraceEntry::slots_for(32), 1);
        assert_eq!(TraceEntry::slots_for(33), 2);
    }

    #[test]
    fn records_of_several_slots_come_back_whole() {
        let rb = RingBuffer::<16>::new();
        for i in 0..5 {
            let (f, r, _) = record(i, i as usize % 3);
            rb.push_record(&f, &r);
        }
        let mut v = Vec::new();
        let st = rb.snapshot(|s, e| v.push((s, e)));
        assert_eq!(st, ReadStats { read: 1 + 2 + 3 + 1 + 2, lost: 0 });
        let (recs, orphans) = records(&v);
        assert_eq!(orphans, 0);
        assert_eq!(recs.len(), 5);
        assert_eq!((rb.written(), rb.records_written()), (9, 5), "slots, records");
        rb.push(&entry(1));
        assert_eq!((rb.written(), rb.records_written()), (10, 6));
        for (i, (e, bytes)) in recs.iter().enumerate() {
            let (f, r, payload) = record(i as u64, i % 3);
            assert_eq!((e.ts, e.ip, e.cont), (f.ts, f.ip, r.len() as u16));
            assert_eq!(bytes, &payload);
        }
    }

    #[test]
    fn overwritten_records_are_lost_whole_or_orphaned() {
        // 8 slots; records of 3 slots: the oldest are overwritten part-way.
        let rb = RingBuffer::<8>::new();
        for i in 0..6 {
            let (f, r, _) = record(i, 2);
            rb.push_record(&f, &r);
        }
        let mut v = Vec::new();
        let st = rb.snapshot(|s, e| v.push((s, e)));
        // 18 slots written, the last 8 (10..18) kept: record 3 had slots 9..12 and its first one
        // is gone, so 10 and 11 come back as orphans; records 4 and 5 come back whole.
        let (recs, orphans) = records(&v);
        assert_eq!(orphans, 2);
        assert_eq!(recs.iter().map(|(e, _)| e.ts).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(st.read + st.lost, 18);
        for (e, bytes) in &recs {
            assert_eq!(bytes, &record(e.ts, 2).2);
        }
    }

    #[test]
    fn a_record_being_written_stops_the_reader_before_it() {
        let rb = RingBuffer::<16>::new();
        rb.push(&entry(0));
        // A writer reserved 3 slots and claimed them but has not committed yet.
        let s0 = rb.head.fetch_add(3, Ordering::Relaxed);
        for k in 0..3 {
            assert!(rb.claim(s0 + k).is_some());
        }
        let mut v = Vec::new();
        let st = rb.snapshot(|s, e| v.push((s, e)));
        assert_eq!((st, v.len()), (ReadStats { read: 1, lost: 0 }, 1));
        assert_eq!(rb.cursor(), s0, "the reader waits at the record's first slot");
        // The writer commits the first slot only: still nothing.
        let (f, r, payload) = record(7, 2);
        let first = TraceEntry { cont: 2, ..f };
        let slot = &rb.slots[s0 as usize];
        for (w, x) in slot.words.iter().zip(first.to_words()) {
            w.store(x, Ordering::Relaxed);
        }
        slot.stamp.store(committed(s0), Ordering::Release);
        assert_eq!(rb.snapshot(|_, _| panic!("a partial record was delivered")), ReadStats::default());
        for (k, c) in r.iter().enumerate() {
            let s = s0 + 1 + k as u64;
            let slot = &rb.slots[s as usize];
            for (w, x) in slot.words.iter().zip(c.to_words()) {
                w.store(x, Ordering::Relaxed);
            }
            slot.stamp.store(committed(s), Ordering::Release);
        }
        let mut v = Vec::new();
        assert_eq!(rb.snapshot(|s, e| v.push((s, e))), ReadStats { read: 3, lost: 0 });
        let (recs, _) = records(&v);
        assert_eq!(recs[0].1, payload);
    }

    #[test]
    fn a_collision_drops_the_whole_record_and_keeps_older_ones() {
        let rb = RingBuffer::<8>::new();
        for i in 0..8 {
            rb.push(&entry(i));
        }
        rb.discard();
        // An interrupted writer holds the slot of sequence number 9 (busy).
        let (f, r, _) = record(1, 2);
        assert!(rb.claim(9).is_some());
        rb.head.store(8, Ordering::Relaxed);
        rb.push_record(&f, &r); // wants 8, 9, 10: 9 is busy
        assert_eq!(rb.dropped(), 3);
        // Slots 8 and 10 were given back with their old records (0 and 2) untouched.
        assert_eq!(rb.slots[0].stamp.load(Ordering::Relaxed), committed(0));
        assert_eq!(rb.slots[2].stamp.load(Ordering::Relaxed), committed(2));
        // Finish the interrupted writer of 9, then read: 8 and 10 count as lost, 9 arrives.
        let s9 = &rb.slots[1];
        for (w, x) in s9.words.iter().zip(entry(9).to_words()) {
            w.store(x, Ordering::Relaxed);
        }
        s9.stamp.store(committed(9), Ordering::Release);
        let mut v = Vec::new();
        let st = rb.snapshot(|s, e| v.push((s, e)));
        assert_eq!(v, [(9, entry(9))]);
        assert_eq!(st, ReadStats { read: 1, lost: 2 });
    }

    #[test]
    fn too_long_records_are_dropped() {
        let rb = RingBuffer::<8>::new();
        let (f, r, _) = record(1, 8);
        rb.push_record(&f, &r);
        assert_eq!((rb.dropped(), rb.written()), (9, 0));
    }

    #[test]
    fn concurrent_records_are_never_torn() {
        let rb = Arc::new(RingBuffer::<64>::new());
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (rb, done) = (rb.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..200_000u64 {
                    let (f, r, _) = record(i, (i % 4) as usize);
                    rb.push_record(&f, &r);
                }
                done.store(true, Ordering::Release);
            })
        };
        let mut seen = 0u64;
        loop {
            let finished = done.load(Ordering::Acquire);
            let mut v = Vec::new();
            rb.snapshot(|s, e| v.push((s, e)));
            let (recs, _) = records(&v);
            for (e, bytes) in recs {
                assert_eq!(bytes, record(e.ts, (e.ts % 4) as usize).2, "record {} torn", e.ts);
                seen += 1;
            }
            if finished {
                break;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0);
    }
}
