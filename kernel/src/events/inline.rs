//! One-slot event records. A trace event's record takes a first ring slot and its bytes in
//! continuation slots ([`crate::ringbuf::RingBuffer::push_record`]); a record of at most
//! [`INLINE_MAX`] bytes whose bytes 8..16 hold the probed address (a kprobe event's
//! `__probe_ip`) with up to 16 bytes of arguments after it, the common case, fits in one slot
//! instead: the slot's `ip`, `parent` and `extra` carry the record's bytes 8..32, `aux` the
//! event id, `depth` the context flags, and the common fields (bytes 0..8) are rebuilt from the
//! id, the flags and the CPU. Half the ring, half the reservation work.
//!
//! Readers never see this form: the kernel's collectors [`expand`] each such slot into the
//! two-slot form (a [`KIND_EVENT`] slot and one continuation) as they read the ring, so the
//! `trace` text, the triggers' views and the export (whose wire format is unchanged) know one form.

use crate::ringbuf::{KIND_CONT, TraceEntry};

/// [`TraceEntry::kind`] of the first slot of a trace event's record: `parent` the event's id,
/// `extra` the record's length, `cont` the continuation slots with its bytes.
pub const KIND_EVENT: u8 = 6;
/// [`TraceEntry::kind`] of a one-slot event record (see the module text).
pub const KIND_EVENT_INLINE: u8 = 7;
/// The longest record a slot holds inline: the common fields and three words.
pub const INLINE_MAX: usize = 32;

/// The slot of record `rec` (little-endian words; word 0, the common fields, is not stored and
/// word 1 is the probed address) of event `id`, written at `ts` on `cpu` with context `flags`.
#[inline(always)]
pub fn pack(ts: u64, cpu: u8, flags: u16, id: u16, rec: &[u64]) -> TraceEntry {
    TraceEntry { ts, ip: rec[1], parent: rec[2], kind: KIND_EVENT_INLINE, cpu, depth: flags, cont: 0, aux: id, extra: rec[3] }
}

/// The two-slot form of slot `e` (of kind [`KIND_EVENT_INLINE`]): the first slot and one
/// continuation with the record's 32 bytes. `common` is the record's common-fields word
/// (rebuilt by the caller from `e.aux`, `e.depth` and `e.cpu`), `len` its length (the event's).
pub fn expand(e: &TraceEntry, common: u64, len: u16) -> [TraceEntry; 2] {
    let first = TraceEntry { ts: e.ts, ip: e.ip, parent: u64::from(e.aux), kind: KIND_EVENT, cpu: e.cpu, depth: e.depth, cont: 1, aux: 0, extra: u64::from(len) };
    let cont = TraceEntry { ts: common, ip: e.ip, parent: e.parent, kind: KIND_CONT, cpu: 0, depth: 0, cont: 0, aux: 0, extra: e.extra };
    [first, cont]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_expand_gives_the_two_slot_form() {
        let rec = [0x0000_0002_0000_0003u64 | 0x0001_0000, 0x9000_0000_0030_1234, 0x1122_3344_5566_7788, 0x0000_0000_dead_beef];
        let e = pack(77, 1, 0x3, 1001, &rec);
        assert_eq!((e.kind, e.cont, e.aux, e.depth, e.cpu), (KIND_EVENT_INLINE, 0, 1001, 3, 1));
        // One ring slot: it survives the slot's packing.
        assert_eq!(e.ip, rec[1]);
        let [first, cont] = expand(&e, rec[0], 28);
        assert_eq!((first.kind, first.parent, first.extra, first.cont, first.ts, first.ip, first.depth, first.cpu), (KIND_EVENT, 1001, 28, 1, 77, rec[1], 3, 1));
        assert_eq!(cont.kind, KIND_CONT);
        let mut bytes = Vec::new();
        for w in rec {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(cont.payload().to_vec(), bytes, "the continuation carries the whole record");
    }
}
