//! Tristate numbers: the verifier's knowledge of a 64-bit scalar bit by bit.
//!
//! A [`Tnum`] `{ value, mask }` stands for every `x` with `x & !mask == value`: a bit set in
//! `mask` is unknown, otherwise the bit is the one in `value` (so `value & mask == 0`). Each
//! operation returns a tnum that contains the result of the operation on *every* pair of
//! members of its operands (soundness), as tight as cheaply possible — the domain Linux's
//! verifier tracks besides min/max bounds (the algorithms are the standard ones for this domain;
//! the tests check soundness on random members).

/// A set of 64-bit values, known bit by bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tnum {
    /// The known bits (0 where unknown).
    pub value: u64,
    /// The unknown bits.
    pub mask: u64,
}

impl Tnum {
    /// Every value.
    pub const UNKNOWN: Tnum = Tnum { value: 0, mask: u64::MAX };

    /// Exactly `v`.
    pub const fn constant(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// A tnum from parts (the known bits are cleared where `mask` says unknown).
    pub const fn new(value: u64, mask: u64) -> Tnum {
        Tnum { value: value & !mask, mask }
    }

    /// Every value in `[min, max]` (and possibly more).
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum::new(min & !delta, delta)
    }

    /// Whether the value is known.
    pub const fn is_const(self) -> bool {
        self.mask == 0
    }

    /// Whether `x` is a member.
    pub const fn contains(self, x: u64) -> bool {
        x & !self.mask == self.value
    }

    /// Whether every member of `other` is a member of `self`.
    pub const fn includes(self, other: Tnum) -> bool {
        other.mask & !self.mask == 0 && other.value & !self.mask == self.value
    }

    /// The smallest and largest member, unsigned.
    pub const fn umin(self) -> u64 {
        self.value
    }
    pub const fn umax(self) -> u64 {
        self.value | self.mask
    }

    /// The smallest and largest member, signed.
    pub const fn smin(self) -> i64 {
        // The sign bit set if it may be.
        (self.value | (self.mask & (1 << 63))) as i64
    }
    pub const fn smax(self) -> i64 {
        // The sign bit clear if it may be, every other unknown bit set.
        ((self.value | self.mask) & !(self.mask & (1 << 63))) as i64
    }

    pub fn lshift(self, shift: u32) -> Tnum {
        let s = shift & 63;
        Tnum::new(self.value << s, self.mask << s)
    }

    pub fn rshift(self, shift: u32) -> Tnum {
        let s = shift & 63;
        Tnum::new(self.value >> s, self.mask >> s)
    }

    /// Arithmetic right shift of the low `width` bits (32 or 64), sign-extended.
    pub fn arshift(self, shift: u32, width: u32) -> Tnum {
        if width == 32 {
            let s = shift & 31;
            let v = ((self.value as u32 as i32) >> s) as u32 as u64;
            let m = ((self.mask as u32 as i32) >> s) as u32 as u64;
            Tnum::new(v, m)
        } else {
            let s = shift & 63;
            Tnum::new(((self.value as i64) >> s) as u64, ((self.mask as i64) >> s) as u64)
        }
    }

    pub fn add(self, other: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(other.mask);
        let sv = self.value.wrapping_add(other.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | other.mask;
        Tnum::new(sv, mu)
    }

    pub fn sub(self, other: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(other.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(other.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | other.mask;
        Tnum::new(dv, mu)
    }

    pub fn neg(self) -> Tnum {
        Tnum::constant(0).sub(self)
    }

    pub fn and(self, other: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = other.value | other.mask;
        let v = self.value & other.value;
        Tnum::new(v, alpha & beta & !v)
    }

    pub fn or(self, other: Tnum) -> Tnum {
        let v = self.value | other.value;
        Tnum::new(v, (self.mask | other.mask) & !v)
    }

    pub fn xor(self, other: Tnum) -> Tnum {
        let v = self.value ^ other.value;
        let mu = self.mask | other.mask;
        Tnum::new(v, mu)
    }

    /// Multiplication: the known product of the known parts, plus, for every bit of `self` that
    /// is set or unknown, the other operand's uncertainty shifted there.
    pub fn mul(self, other: Tnum) -> Tnum {
        let known = Tnum::constant(self.value.wrapping_mul(other.value));
        let (mut a, mut b) = (self, other);
        let mut acc = Tnum::constant(0);
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc = acc.add(Tnum::new(0, b.mask));
            } else if a.mask & 1 != 0 {
                acc = acc.add(Tnum::new(0, b.value | b.mask));
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        known.add(acc)
    }

    /// The members of both (when both describe one value known two ways).
    pub fn intersect(self, other: Tnum) -> Tnum {
        let v = self.value | other.value;
        let mu = self.mask & other.mask;
        Tnum::new(v, mu)
    }

    /// Every member of either.
    pub fn union(self, other: Tnum) -> Tnum {
        let mu = self.mask | other.mask | (self.value ^ other.value);
        Tnum::new(self.value, mu)
    }

    /// The low 32 bits, zero-extended (what a 32-bit ALU operation leaves).
    pub fn subreg(self) -> Tnum {
        Tnum::new(self.value as u32 as u64, self.mask as u32 as u64)
    }

    /// The low `bytes` bytes, zero-extended (a narrowing load or cast).
    pub fn cast(self, bytes: u32) -> Tnum {
        if bytes >= 8 {
            return self;
        }
        let keep = (1u64 << (bytes * 8)) - 1;
        Tnum::new(self.value & keep, self.mask & keep)
    }

    /// The low `bytes` bytes, sign-extended (a sign-extending load or `movsx`).
    pub fn sign_extend(self, bytes: u32) -> Tnum {
        if bytes >= 8 {
            return self;
        }
        let bits = bytes * 8;
        let sign = 1u64 << (bits - 1);
        let low = self.cast(bytes);
        let ext = !((1u64 << bits) - 1);
        if low.mask & sign != 0 {
            // The sign bit is unknown: every upper bit is too.
            Tnum::new(low.value, low.mask | ext)
        } else if low.value & sign != 0 {
            Tnum::new(low.value | ext, low.mask)
        } else {
            low
        }
    }
}

impl core::fmt::Display for Tnum {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_const() { write!(f, "{:#x}", self.value) } else { write!(f, "(value={:#x}; mask={:#x})", self.value, self.mask) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    trait Gen {
        fn tnum(&mut self) -> Tnum;
        fn member(&mut self, t: Tnum) -> u64;
    }
    impl Gen for Rng {
        /// A tnum with few, many, or no unknown bits, and small or large values.
        fn tnum(&mut self) -> Tnum {
            let mask = match self.next() % 4 {
                0 => 0,
                1 => self.next() & self.next() & self.next(),
                2 => self.next(),
                _ => (1u64 << (self.next() % 64)) - 1,
            };
            let value = match self.next() % 3 {
                0 => self.next() % 256,
                _ => self.next(),
            };
            Tnum::new(value, mask)
        }
        /// A random member of `t`.
        fn member(&mut self, t: Tnum) -> u64 {
            t.value | (self.next() & t.mask)
        }
    }

    #[test]
    fn constants_and_ranges() {
        let c = Tnum::constant(0x1234);
        assert!(c.is_const() && c.contains(0x1234) && !c.contains(0x1235));
        let r = Tnum::range(16, 31);
        assert_eq!(r, Tnum::new(16, 15));
        assert!((16..=31).all(|x| r.contains(x)));
        assert_eq!(Tnum::range(0, u64::MAX), Tnum::UNKNOWN);
        assert_eq!(Tnum::range(5, 5), Tnum::constant(5));
        assert_eq!((Tnum::new(0x10, 0x0f).umin(), Tnum::new(0x10, 0x0f).umax()), (0x10, 0x1f));
        let s = Tnum::new(0, 1 << 63 | 0xff);
        assert_eq!((s.smin(), s.smax()), (i64::MIN, 0xff));
        assert_eq!(format!("{}", Tnum::constant(8)), "0x8");
    }

    #[test]
    fn known_results() {
        assert_eq!(Tnum::constant(3).add(Tnum::constant(4)), Tnum::constant(7));
        assert_eq!(Tnum::constant(3).mul(Tnum::constant(5)), Tnum::constant(15));
        // x & 0xff of anything is in [0, 255].
        let t = Tnum::UNKNOWN.and(Tnum::constant(0xff));
        assert_eq!((t.umin(), t.umax()), (0, 0xff));
        // Shifting an unknown byte left by 8 leaves the low byte known zero.
        assert_eq!(Tnum::new(0, 0xff).lshift(8), Tnum::new(0, 0xff00));
        assert_eq!(Tnum::constant(0x8000_0000).arshift(4, 32), Tnum::constant(0xf800_0000));
        assert_eq!(Tnum::constant(0x80).sign_extend(1), Tnum::constant(0xffff_ffff_ffff_ff80));
        assert_eq!(Tnum::new(0, 0x80).sign_extend(1).mask, 0xffff_ffff_ffff_ff80);
        assert_eq!(Tnum::constant(0x1_0000_0005).subreg(), Tnum::constant(5));
    }

    /// Every operation contains the result of every pair of members (sampled).
    #[test]
    fn operations_are_sound() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..40_000 {
            let (a, b) = (r.tnum(), r.tnum());
            let (x, y) = (r.member(a), r.member(b));
            assert!(a.contains(x) && b.contains(y));
            let s = (r.next() % 64) as u32;
            let checks: [(&str, Tnum, u64); 14] = [
                ("add", a.add(b), x.wrapping_add(y)),
                ("sub", a.sub(b), x.wrapping_sub(y)),
                ("mul", a.mul(b), x.wrapping_mul(y)),
                ("and", a.and(b), x & y),
                ("or", a.or(b), x | y),
                ("xor", a.xor(b), x ^ y),
                ("neg", a.neg(), x.wrapping_neg()),
                ("lshift", a.lshift(s), x << s),
                ("rshift", a.rshift(s), x >> s),
                ("arshift64", a.arshift(s, 64), ((x as i64) >> s) as u64),
                ("arshift32", a.arshift(s, 32), ((x as u32 as i32) >> (s & 31)) as u32 as u64),
                ("subreg", a.subreg(), x as u32 as u64),
                ("cast2", a.cast(2), x as u16 as u64),
                ("sext2", a.sign_extend(2), x as u16 as i16 as i64 as u64),
            ];
            for (name, t, v) in checks {
                assert!(t.contains(v), "{name}: {a:?} op {b:?} (shift {s}) = {t:?} misses {v:#x} ({x:#x}, {y:#x})");
                assert_eq!(t.value & t.mask, 0, "{name}: malformed {t:?}");
            }
            let u = a.union(b);
            assert!(u.contains(x) && u.contains(y) && u.includes(a) && u.includes(b), "union {a:?} {b:?}");
            assert!(Tnum::range(x.min(y), x.max(y)).contains(x) && Tnum::range(x.min(y), x.max(y)).contains(y));
            assert!(a.umin() <= x && x <= a.umax() && a.smin() <= x as i64 && x as i64 <= a.smax());
        }
    }

    /// A value known two ways is in the intersection.
    #[test]
    fn intersection_keeps_common_members() {
        let mut r = Rng(7);
        for _ in 0..10_000 {
            let a = r.tnum();
            let x = r.member(a);
            // Another description of x: some of a's unknown bits learned, others forgotten.
            let forget = r.next() & !a.mask;
            let b = Tnum::new(x, (a.mask & r.next()) | forget);
            assert!(b.contains(x));
            assert!(a.intersect(b).contains(x), "{a:?} ∩ {b:?} misses {x:#x}");
        }
    }
}
