//! Exact guest instruction counts from the stable counter under `qemu -icount shift=0`.
//!
//! With `-icount shift=0` QEMU's virtual clock advances one nanosecond per guest instruction, and
//! LoongArch's stable counter (100 MHz) is that clock divided by 10. One `rdtime.d` therefore only
//! tells the instruction count to within 10, and which multiple of 10 it lands on depends on
//! everything the guest executed before (the *phase*).
//!
//! QEMU (7.2) accounts a whole translation block's instructions when the block starts, so a
//! counter read sees the count at the end of its block. An exact reading therefore executes
//! [`READS`] short blocks, each `rdtime.d; st.d; b next`: every read sees the count three
//! instructions after the previous one. Three is prime to ten, so the ten reads fall on ten
//! different phases, and the reads where the counter steps tell the phase of the first one:
//! [`exact_count`] turns the ten values into the exact instruction count.

/// Number of counter reads in one exact reading.
pub const READS: usize = 10;

/// Instructions in each block of a reading (`rdtime.d`, `st.d`, `b`).
pub const STRIDE: u64 = 3;

/// Guest instructions per counter tick under `-icount shift=0` on QEMU's LoongArch `virt` machine
/// (1 ns per instruction, 10 ns per tick).
pub const INSNS_PER_TICK: u64 = 10;

/// The instruction count just before the first block of a reading, from its ten counter values
/// (read `k` sees the count `x + STRIDE * (k + 1)`, divided by ten and rounded down).
///
/// Returns `None` unless exactly one phase explains all ten values, e.g. when the reads were not
/// made in separate blocks of the expected length (not running under `-icount shift=0`).
pub fn exact_count(reads: &[u64; READS]) -> Option<u64> {
    let mut found = None;
    for r in 0..INSNS_PER_TICK {
        let tick = |k: usize| (r + STRIDE * (k as u64 + 1)) / INSNS_PER_TICK;
        let Some(q) = reads[0].checked_sub(tick(0)) else { continue };
        if (0..READS).all(|k| reads[k] == q + tick(k)) {
            if found.is_some() {
                return None;
            }
            found = Some(q * INSNS_PER_TICK + r);
        }
    }
    found
}

/// One exact reading: ten blocks `rdtime.d; st.d; b next`, each its own translation block,
/// aligned so that no block crosses a page.
#[cfg(target_arch = "loongarch64")]
#[inline(always)]
fn reading() -> [u64; READS] {
    let mut r = [0u64; READS];
    // SAFETY: `rdtime.d` only reads the stable counter; the stores go to `r`, ten words.
    unsafe {
        core::arch::asm!(
            ".p2align 7",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 0", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 8", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 16", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 24", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 32", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 40", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 48", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 56", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 64", "b 1f", "1:",
            "rdtime.d {t}, $zero", "st.d {t}, {buf}, 72", "b 1f", "1:",
            buf = in(reg) r.as_mut_ptr(),
            t = out(reg) _,
            options(nostack)
        )
    };
    r
}

/// The exact guest instruction count now (call with interrupts off). `None` when the reads do
/// not fit (not running under `-icount shift=0`).
#[cfg(target_arch = "loongarch64")]
#[inline(always)]
pub fn now() -> Option<u64> {
    exact_count(&reading())
}

/// Guest instructions `f` takes, with interrupts off, without the cost of the readings
/// themselves, and its result. The count is `None` when not running under `-icount shift=0`.
#[cfg(target_arch = "loongarch64")]
pub fn instructions<R>(f: impl FnOnce() -> R) -> (Option<u64>, R) {
    arch::cpu::without_irqs(|| {
        let e0 = now();
        let e1 = now();
        let a = now();
        let r = core::hint::black_box(f());
        let b = now();
        let n = (|| b?.checked_sub(a?)?.checked_sub(e1?.checked_sub(e0?)?))();
        (n, r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_at(x: u64) -> [u64; READS] {
        core::array::from_fn(|k| (x + STRIDE * (k as u64 + 1)) / INSNS_PER_TICK)
    }

    #[test]
    fn every_phase_gives_the_exact_count() {
        for x in 0..1000 {
            assert_eq!(exact_count(&reads_at(x)), Some(x), "x = {x}");
        }
    }

    #[test]
    fn reads_of_one_block_are_refused() {
        // What QEMU returns when all reads share one translation block: no step at all.
        assert_eq!(exact_count(&[5; READS]), None);
        let mut r = reads_at(1234);
        r[5] += 3;
        assert_eq!(exact_count(&r), None);
        let mut r = reads_at(1235);
        r[7] = r[0].saturating_sub(1);
        assert_eq!(exact_count(&r), None);
    }

    #[test]
    fn counts_differ_by_the_instructions_between() {
        let a = exact_count(&reads_at(98_765)).unwrap();
        let b = exact_count(&reads_at(98_765 + 4321)).unwrap();
        assert_eq!(b - a, 4321);
    }
}
