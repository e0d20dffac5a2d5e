//! Exact guest instruction counts from the stable counter under `qemu -icount shift=0`.
//!
//! With `-icount shift=0` QEMU's virtual clock advances one nanosecond per guest instruction, and
//! LoongArch's stable counter (100 MHz) is that clock divided by 10. One `rdtime.d` therefore only
//! tells the instruction count to within 10, and which multiple of 10 it lands on depends on
//! everything the guest executed before (the *phase*). `make bench` needs exact figures, so a
//! reading is made of ten `rdtime.d` in a row (each is one instruction, and QEMU ends a
//! translation block at every counter read under `-icount`, so consecutive reads are exactly one
//! instruction apart): the read where the counter steps tells the phase, and the count is exact.

/// Number of consecutive counter reads in one exact reading.
pub const READS: usize = 10;

/// Guest instructions per counter tick under `-icount shift=0` on QEMU's LoongArch `virt` machine
/// (1 ns per instruction, 10 ns per tick).
pub const INSNS_PER_TICK: u64 = 10;

/// The instruction count at the first of `READS` counter values read one instruction apart.
///
/// If the counter steps between read `j - 1` and read `j`, instruction `first + j` is a multiple
/// of 10, so `first = 10 * reads[j] - j`; if it never steps, the first read sat exactly on a
/// step. Returns `None` when the values are not ten consecutive readings of one counter (a step
/// of more than one tick, or two steps), which means an interrupt or a host effect got in.
pub fn exact_count(reads: &[u64; READS]) -> Option<u64> {
    let base = reads[0];
    let mut step = None;
    for (j, &r) in reads.iter().enumerate().skip(1) {
        match r.checked_sub(base)? {
            0 if step.is_none() => {}
            1 if step.is_none() => step = Some(j),
            1 => {}
            _ => return None,
        }
    }
    Some(match step {
        Some(j) => INSNS_PER_TICK * reads[j] - j as u64,
        None => INSNS_PER_TICK * base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_at(first: u64) -> [u64; READS] {
        core::array::from_fn(|j| (first + j as u64) / INSNS_PER_TICK)
    }

    #[test]
    fn every_phase_gives_the_exact_count() {
        for first in 0..1000 {
            assert_eq!(exact_count(&reads_at(first)), Some(first), "first = {first}");
        }
    }

    #[test]
    fn inconsistent_reads_are_refused() {
        let mut r = reads_at(1234);
        r[5] += 3;
        assert_eq!(exact_count(&r), None);
        let mut r = reads_at(1230);
        r[9] = r[0] + 2;
        assert_eq!(exact_count(&r), None);
        // A step back (a counter that went backwards) is refused too.
        let mut r = reads_at(1235);
        r[7] = r[0] - 1;
        assert_eq!(exact_count(&r), None);
    }

    #[test]
    fn counts_differ_by_the_instructions_between() {
        let a = exact_count(&reads_at(98_765)).unwrap();
        let b = exact_count(&reads_at(98_765 + 4321)).unwrap();
        assert_eq!(b - a, 4321);
    }
}
