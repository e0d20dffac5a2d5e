//! What the verifier knows of a scalar register: its bits ([`Tnum`]) and its unsigned and
//! signed 64-bit bounds, kept consistent with each other, through ALU operations and through
//! what a conditional jump teaches on each of its two ways.
//!
//! Every operation is sound: for any members of its operands, the concrete result is a member of
//! the abstract result ([`Scalar::contains`]); the tests check it on random members.

use crate::tnum::Tnum;

/// A set of 64-bit values: those in `var` and within both pairs of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scalar {
    pub var: Tnum,
    pub umin: u64,
    pub umax: u64,
    pub smin: i64,
    pub smax: i64,
}

/// The comparisons of conditional jumps (`JSET` is `x & y != 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sgt,
    Sge,
    Slt,
    Sle,
    Set,
}

impl Cmp {
    /// The concrete comparison.
    pub fn eval(self, x: u64, y: u64) -> bool {
        let (sx, sy) = (x as i64, y as i64);
        match self {
            Cmp::Eq => x == y,
            Cmp::Ne => x != y,
            Cmp::Gt => x > y,
            Cmp::Ge => x >= y,
            Cmp::Lt => x < y,
            Cmp::Le => x <= y,
            Cmp::Sgt => sx > sy,
            Cmp::Sge => sx >= sy,
            Cmp::Slt => sx < sy,
            Cmp::Sle => sx <= sy,
            Cmp::Set => x & y != 0,
        }
    }

    /// The comparison that holds when this one does not.
    pub fn negate(self) -> Cmp {
        match self {
            Cmp::Eq => Cmp::Ne,
            Cmp::Ne => Cmp::Eq,
            Cmp::Gt => Cmp::Le,
            Cmp::Ge => Cmp::Lt,
            Cmp::Lt => Cmp::Ge,
            Cmp::Le => Cmp::Gt,
            Cmp::Sgt => Cmp::Sle,
            Cmp::Sge => Cmp::Slt,
            Cmp::Slt => Cmp::Sge,
            Cmp::Sle => Cmp::Sgt,
            // "x & y == 0" has no comparison of its own; `refine` handles its false way.
            Cmp::Set => Cmp::Set,
        }
    }
}

impl Scalar {
    /// Every value.
    pub const UNKNOWN: Scalar = Scalar { var: Tnum::UNKNOWN, umin: 0, umax: u64::MAX, smin: i64::MIN, smax: i64::MAX };

    /// Exactly `v`.
    pub fn constant(v: u64) -> Scalar {
        Scalar { var: Tnum::constant(v), umin: v, umax: v, smin: v as i64, smax: v as i64 }
    }

    /// Every value in `[min, max]` (unsigned).
    pub fn urange(min: u64, max: u64) -> Scalar {
        Scalar { umin: min, umax: max, ..Scalar::UNKNOWN }.sync()
    }

    /// Every member of `t`.
    pub fn from_tnum(t: Tnum) -> Scalar {
        Scalar { var: t, ..Scalar::UNKNOWN }.sync()
    }

    /// Whether `x` is a member.
    pub fn contains(&self, x: u64) -> bool {
        self.var.contains(x) && self.umin <= x && x <= self.umax && self.smin <= x as i64 && x as i64 <= self.smax
    }

    /// The single value, if known.
    pub fn value(&self) -> Option<u64> {
        if self.var.is_const() { Some(self.var.value) } else if self.umin == self.umax { Some(self.umin) } else { None }
    }

    /// Whether no value is a member (a way of a jump that cannot be taken).
    pub fn is_empty(&self) -> bool {
        self.umin > self.umax || self.smin > self.smax || self.var.value & self.var.mask != 0
    }

    /// Makes the bits and both pairs of bounds teach each other (Linux's bounds deduction):
    /// the tnum bounds the values, the bounds fix leading bits, and a range that does not cross
    /// the sign boundary gives the other signedness.
    pub fn sync(mut self) -> Scalar {
        for _ in 0..2 {
            // Bits -> bounds.
            self.umin = self.umin.max(self.var.umin());
            self.umax = self.umax.min(self.var.umax());
            self.smin = self.smin.max(self.var.smin());
            self.smax = self.smax.min(self.var.smax());
            // Signed bounds that do not cross zero are unsigned bounds, and the other way.
            if self.smin >= 0 || self.smax < 0 {
                self.umin = self.umin.max(self.smin as u64);
                self.umax = self.umax.min(self.smax as u64);
            }
            if (self.umax as i64) >= 0 || (self.umin as i64) < 0 {
                // [umin, umax] lies on one side of the sign boundary.
                if self.umin as i64 <= self.umax as i64 {
                    self.smin = self.smin.max(self.umin as i64);
                    self.smax = self.smax.min(self.umax as i64);
                }
            }
            // Bounds -> bits.
            if self.umin <= self.umax {
                self.var = self.var.intersect(Tnum::range(self.umin, self.umax));
            }
        }
        self
    }

    fn binop(self, other: Scalar, var: Tnum) -> Scalar {
        let _ = other;
        Scalar::from_tnum(var)
    }

    pub fn add(self, o: Scalar) -> Scalar {
        let var = self.var.add(o.var);
        let mut r = Scalar::from_tnum(var);
        if let (Some(lo), Some(hi)) = (self.umin.checked_add(o.umin), self.umax.checked_add(o.umax)) {
            r.umin = r.umin.max(lo);
            r.umax = r.umax.min(hi);
        }
        if let (Some(lo), Some(hi)) = (self.smin.checked_add(o.smin), self.smax.checked_add(o.smax)) {
            r.smin = r.smin.max(lo);
            r.smax = r.smax.min(hi);
        }
        r.sync()
    }

    pub fn sub(self, o: Scalar) -> Scalar {
        let var = self.var.sub(o.var);
        let mut r = Scalar::from_tnum(var);
        if self.umin >= o.umax {
            r.umin = r.umin.max(self.umin - o.umax);
            r.umax = r.umax.min(self.umax - o.umin);
        }
        if let (Some(lo), Some(hi)) = (self.smin.checked_sub(o.smax), self.smax.checked_sub(o.smin)) {
            r.smin = r.smin.max(lo);
            r.smax = r.smax.min(hi);
        }
        r.sync()
    }

    pub fn mul(self, o: Scalar) -> Scalar {
        let mut r = Scalar::from_tnum(self.var.mul(o.var));
        if let Some(hi) = self.umax.checked_mul(o.umax) {
            r.umin = r.umin.max(self.umin.saturating_mul(o.umin));
            r.umax = r.umax.min(hi);
        }
        r.sync()
    }

    pub fn and(self, o: Scalar) -> Scalar {
        let mut r = self.binop(o, self.var.and(o.var));
        // x & y <= min(x, y) for unsigned values.
        r.umax = r.umax.min(self.umax).min(o.umax);
        r.sync()
    }

    pub fn or(self, o: Scalar) -> Scalar {
        let mut r = self.binop(o, self.var.or(o.var));
        r.umin = r.umin.max(self.umin).max(o.umin);
        r.sync()
    }

    pub fn xor(self, o: Scalar) -> Scalar {
        self.binop(o, self.var.xor(o.var))
    }

    pub fn neg(self) -> Scalar {
        Scalar::constant(0).sub(self)
    }

    /// Shift by a known amount (`None`: an unknown amount gives an unknown result).
    pub fn lsh(self, by: Option<u32>) -> Scalar {
        match by {
            Some(s) => {
                let s = s & 63;
                let mut r = Scalar::from_tnum(self.var.lshift(s));
                if self.umax.leading_zeros() >= s {
                    r.umin = r.umin.max(self.umin << s);
                    r.umax = r.umax.min(self.umax << s);
                }
                r.sync()
            }
            None => Scalar::UNKNOWN,
        }
    }

    pub fn rsh(self, by: Option<u32>) -> Scalar {
        match by {
            Some(s) => {
                let s = s & 63;
                let mut r = Scalar::from_tnum(self.var.rshift(s));
                r.umin = r.umin.max(self.umin >> s);
                r.umax = r.umax.min(self.umax >> s);
                r.sync()
            }
            None => Scalar::UNKNOWN,
        }
    }

    pub fn arsh(self, by: Option<u32>) -> Scalar {
        match by {
            Some(s) => {
                let s = s & 63;
                let mut r = Scalar::from_tnum(self.var.arshift(s, 64));
                r.smin = r.smin.max(self.smin >> s);
                r.smax = r.smax.min(self.smax >> s);
                r.sync()
            }
            None => Scalar::UNKNOWN,
        }
    }

    /// The low 32 bits, zero-extended (what every 32-bit ALU result is).
    pub fn zext32(self) -> Scalar {
        let mut r = Scalar::from_tnum(self.var.subreg());
        if self.umax <= u32::MAX as u64 {
            r.umin = r.umin.max(self.umin);
            r.umax = r.umax.min(self.umax);
        }
        r.sync()
    }

    /// The low `bytes` bytes, sign-extended.
    pub fn sext(self, bytes: u32) -> Scalar {
        Scalar::from_tnum(self.var.sign_extend(bytes))
    }

    /// Both sets' members (where two paths meet).
    pub fn union(self, o: Scalar) -> Scalar {
        Scalar {
            var: self.var.union(o.var),
            umin: self.umin.min(o.umin),
            umax: self.umax.max(o.umax),
            smin: self.smin.min(o.smin),
            smax: self.smax.max(o.smax),
        }
        .sync()
    }

    /// Whether every member of `o` is one of `self` (a state already explored covers `o`).
    pub fn includes(&self, o: &Scalar) -> bool {
        self.var.includes(o.var) && self.umin <= o.umin && o.umax <= self.umax && self.smin <= o.smin && o.smax <= self.smax
    }

    /// What is known of `self` on the way where `self cmp k` holds (`taken`) or does not.
    /// An empty result ([`Scalar::is_empty`]) means that way cannot happen.
    pub fn refine(self, cmp: Cmp, k: u64, taken: bool) -> Scalar {
        if cmp == Cmp::Set {
            return if taken {
                // Some bit of k is set: nothing simple unless k has one bit.
                if k.count_ones() == 1 && self.var.mask & k == 0 && self.var.value & k == 0 { Scalar { umin: 1, umax: 0, ..self } } else { self }
            } else {
                // Every bit of k is clear.
                Scalar { var: self.var.and(Tnum::constant(!k)).intersect(self.var), ..self }.narrow_bits(!k)
            };
        }
        let c = if taken { cmp } else { cmp.negate() };
        let sk = k as i64;
        let mut r = self;
        match c {
            Cmp::Eq => {
                if !r.contains(k) {
                    return Scalar { umin: 1, umax: 0, ..r };
                }
                return Scalar::constant(k);
            }
            Cmp::Ne => {
                // Only an end of a range can be cut off.
                if r.umin == k {
                    r.umin = k.wrapping_add(1);
                    if k == u64::MAX {
                        return Scalar { umin: 1, umax: 0, ..r };
                    }
                }
                if r.umax == k {
                    if k == 0 {
                        return Scalar { umin: 1, umax: 0, ..r };
                    }
                    r.umax = k - 1;
                }
                if r.smin == sk && sk != i64::MAX {
                    r.smin = sk + 1;
                }
                if r.smax == sk && sk != i64::MIN {
                    r.smax = sk - 1;
                }
            }
            Cmp::Gt => match k.checked_add(1) {
                Some(k1) => r.umin = r.umin.max(k1),
                None => return Scalar { umin: 1, umax: 0, ..r },
            },
            Cmp::Ge => r.umin = r.umin.max(k),
            Cmp::Lt => match k.checked_sub(1) {
                Some(k1) => r.umax = r.umax.min(k1),
                None => return Scalar { umin: 1, umax: 0, ..r },
            },
            Cmp::Le => r.umax = r.umax.min(k),
            Cmp::Sgt => match sk.checked_add(1) {
                Some(k1) => r.smin = r.smin.max(k1),
                None => return Scalar { umin: 1, umax: 0, ..r },
            },
            Cmp::Sge => r.smin = r.smin.max(sk),
            Cmp::Slt => match sk.checked_sub(1) {
                Some(k1) => r.smax = r.smax.min(k1),
                None => return Scalar { umin: 1, umax: 0, ..r },
            },
            Cmp::Sle => r.smax = r.smax.min(sk),
            Cmp::Set => {}
        }
        if r.is_empty() {
            return r;
        }
        r.sync()
    }

    /// Keeps only the bits allowed by `allowed` (known zero elsewhere).
    fn narrow_bits(self, allowed: u64) -> Scalar {
        let var = Tnum::new(self.var.value & allowed, self.var.mask & allowed);
        if self.var.value & !allowed != 0 {
            // A bit known set must be clear: this way cannot happen.
            return Scalar { umin: 1, umax: 0, ..self };
        }
        let r = Scalar { var, ..self };
        if r.is_empty() { r } else { r.sync() }
    }
}

impl core::fmt::Display for Scalar {
    /// As Linux's verifier log shows a scalar: `scalar()`, `0x5`, or the known facts.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(v) = self.value() {
            return write!(f, "{v:#x}");
        }
        let mut parts = alloc::vec::Vec::new();
        if self.smin != i64::MIN {
            parts.push(alloc::format!("smin={}", self.smin));
        }
        if self.smax != i64::MAX {
            parts.push(alloc::format!("smax={}", self.smax));
        }
        if self.umin != 0 {
            parts.push(alloc::format!("umin={}", self.umin));
        }
        if self.umax != u64::MAX {
            parts.push(alloc::format!("umax={}", self.umax));
        }
        if self.var.mask != u64::MAX {
            parts.push(alloc::format!("var_off={}", self.var));
        }
        write!(f, "scalar({})", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    trait Gen {
        fn value(&mut self) -> u64;
        fn scalar(&mut self) -> (Scalar, u64);
    }
    impl Gen for Rng {
        /// Small, boundary or any values.
        fn value(&mut self) -> u64 {
            match self.next() % 6 {
                0 => self.next() % 16,
                1 => (self.next() % 16).wrapping_neg(),
                2 => (1u64 << 63).wrapping_add(self.next() % 8).wrapping_sub(4),
                3 => self.next() % 4096,
                _ => self.next(),
            }
        }
        /// A scalar and one of its members.
        fn scalar(&mut self) -> (Scalar, u64) {
            let x = self.value();
            let s = match self.next() % 5 {
                0 => Scalar::constant(x),
                1 => Scalar::UNKNOWN,
                2 => {
                    let (a, b) = (x.wrapping_sub(self.next() % 100), x.wrapping_add(self.next() % 100));
                    if a <= x && x <= b { Scalar::urange(a, b) } else { Scalar::urange(0, x) }
                }
                3 => Scalar::from_tnum(Tnum::new(x, self.next() & self.next())),
                _ => Scalar::urange(0, x | (self.next() % 4096)),
            };
            (s, x)
        }
    }

    #[test]
    fn sync_is_consistent() {
        let s = Scalar::urange(0, 255);
        assert_eq!((s.smin, s.smax), (0, 255));
        assert_eq!(s.var, Tnum::new(0, 0xff));
        let s = Scalar::from_tnum(Tnum::new(0, 0xf0));
        assert_eq!((s.umin, s.umax), (0, 0xf0));
        assert_eq!(format!("{}", Scalar::constant(5)), "0x5");
        assert_eq!(format!("{}", Scalar::urange(0, 255)), "scalar(smin=0,smax=255,umax=255,var_off=(value=0x0; mask=0xff))");
    }

    #[test]
    fn a_bounds_check_makes_an_index_safe() {
        // if r1 < 16: r1 is an index into a 16-entry array.
        let idx = Scalar::UNKNOWN.refine(Cmp::Lt, 16, true);
        assert_eq!((idx.umin, idx.umax), (0, 15));
        let off = idx.lsh(Some(3));
        assert_eq!((off.umin, off.umax), (0, 120));
        // The other way: r1 >= 16.
        let big = Scalar::UNKNOWN.refine(Cmp::Lt, 16, false);
        assert_eq!(big.umin, 16);
        // Signed: if r1 s< 0 goto out; then r1 s<= 10.
        let s = Scalar::UNKNOWN.refine(Cmp::Slt, 0, false).refine(Cmp::Sle, 10, true);
        assert_eq!((s.umin, s.umax, s.smin, s.smax), (0, 10, 0, 10));
        // x & 7 is at most 7.
        let m = Scalar::UNKNOWN.and(Scalar::constant(7));
        assert_eq!((m.umin, m.umax), (0, 7));
        // A way that cannot happen.
        assert!(Scalar::constant(3).refine(Cmp::Eq, 4, true).is_empty());
        assert!(Scalar::urange(5, 9).refine(Cmp::Lt, 5, true).is_empty());
    }

    /// Every operation and refinement keeps every member (sampled).
    #[test]
    fn operations_are_sound() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for i in 0..60_000 {
            let ((a, x), (b, y)) = (r.scalar(), r.scalar());
            assert!(a.contains(x) && b.contains(y), "generator: {a:?} {x:#x}");
            let s = (r.next() % 64) as u32;
            let ops: [(&str, Scalar, u64); 13] = [
                ("add", a.add(b), x.wrapping_add(y)),
                ("sub", a.sub(b), x.wrapping_sub(y)),
                ("mul", a.mul(b), x.wrapping_mul(y)),
                ("and", a.and(b), x & y),
                ("or", a.or(b), x | y),
                ("xor", a.xor(b), x ^ y),
                ("neg", a.neg(), x.wrapping_neg()),
                ("lsh", a.lsh(Some(s)), x << s),
                ("rsh", a.rsh(Some(s)), x >> s),
                ("arsh", a.arsh(Some(s)), ((x as i64) >> s) as u64),
                ("zext32", a.zext32(), x as u32 as u64),
                ("sext1", a.sext(1), x as u8 as i8 as i64 as u64),
                ("union", a.union(b), if i % 2 == 0 { x } else { y }),
            ];
            for (name, res, v) in ops {
                assert!(res.contains(v), "{name}: {a:?} op {b:?} (shift {s}) = {res:?} misses {v:#x} ({x:#x}, {y:#x})");
            }
            let k = if r.next() % 2 == 0 { y } else { r.value() };
            for cmp in [Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le, Cmp::Sgt, Cmp::Sge, Cmp::Slt, Cmp::Sle, Cmp::Set] {
                let taken = cmp.eval(x, k);
                let refined = a.refine(cmp, k, taken);
                assert!(refined.contains(x), "refine {cmp:?} {k:#x} taken={taken}: {a:?} -> {refined:?} misses {x:#x}");
                assert!(!refined.is_empty());
            }
            assert!(a.union(b).includes(&a) && a.union(b).includes(&b));
        }
    }
}
