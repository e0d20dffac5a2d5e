//! Executable memory: the module area ([`area`], kernel only) and a first-fit allocator of
//! executable space in 64-byte units ([`ExecArea`]).
//!
//! `ExecArea` is pure bookkeeping over a fixed range of addresses (the memory itself is never
//! touched), so it is host-tested. The kernel keeps one for the area the linker script reserves
//! inside the kernel text (`__bpf_tramp_area_start`..`__bpf_tramp_area_end`).

#[cfg(target_os = "none")]
pub mod area;

/// Allocation granule in bytes (a cache line, so two trampolines never share one).
pub const UNIT: u64 = 64;

/// Why a free was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not the start of a live allocation.
    NotAllocated(u64),
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FreeError::NotAllocated(a) => write!(f, "{a:#x} is not the start of an allocation"),
        }
    }
}

/// `N` units starting at `base`: `len[i]` is the length in units of the allocation that starts
/// at unit `i` (0 when none starts there); `used[i]` says whether unit `i` belongs to one.
pub struct ExecArea<const N: usize> {
    base: u64,
    units: usize,
    used: [bool; N],
    len: [u32; N],
}

impl<const N: usize> ExecArea<N> {
    /// An empty area (no space until [`ExecArea::init`]).
    pub const fn new() -> Self {
        ExecArea { base: 0, units: 0, used: [false; N], len: [0; N] }
    }

    /// Covers `[start, end)` (rounded inwards to units, at most `N` units). Forgets every
    /// allocation.
    pub fn init(&mut self, start: u64, end: u64) {
        let s = start.div_ceil(UNIT) * UNIT;
        let units = if end > s { ((end - s) / UNIT) as usize } else { 0 };
        self.base = s;
        self.units = units.min(N);
        self.used = [false; N];
        self.len = [0; N];
    }

    /// `[start, end)` of the managed range.
    pub fn bounds(&self) -> (u64, u64) {
        (self.base, self.base + self.units as u64 * UNIT)
    }

    /// Whether `addr` lies in the managed range.
    pub fn contains(&self, addr: u64) -> bool {
        let (s, e) = self.bounds();
        (s..e).contains(&addr)
    }

    /// Allocates `bytes` (rounded up to units); returns the start address, or `None` when no
    /// run of free units is long enough (or `bytes` is 0).
    pub fn alloc(&mut self, bytes: usize) -> Option<u64> {
        let need = (bytes as u64).div_ceil(UNIT) as usize;
        if need == 0 {
            return None;
        }
        let mut run = 0;
        for i in 0..self.units {
            run = if self.used[i] { 0 } else { run + 1 };
            if run == need {
                let first = i + 1 - need;
                self.used[first..=i].iter_mut().for_each(|u| *u = true);
                self.len[first] = need as u32;
                return Some(self.base + first as u64 * UNIT);
            }
        }
        None
    }

    /// Frees the allocation starting at `addr`; returns its size in bytes.
    pub fn free(&mut self, addr: u64) -> Result<u64, FreeError> {
        let (first, n) = self.allocation_at(addr).filter(|&(f, _)| self.base + f as u64 * UNIT == addr).ok_or(FreeError::NotAllocated(addr))?;
        self.used[first..first + n].iter_mut().for_each(|u| *u = false);
        self.len[first] = 0;
        Ok(n as u64 * UNIT)
    }

    /// `(first unit, units)` of the allocation containing `addr`.
    fn allocation_at(&self, addr: u64) -> Option<(usize, usize)> {
        if !self.contains(addr) {
            return None;
        }
        let unit = ((addr - self.base) / UNIT) as usize;
        if !self.used[unit] {
            return None;
        }
        let first = (0..=unit).rev().find(|&i| self.len[i] != 0)?;
        Some((first, self.len[first] as usize))
    }

    /// `[start, end)` of the live allocation containing `addr`.
    pub fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
        self.allocation_at(addr).map(|(f, n)| {
            let s = self.base + f as u64 * UNIT;
            (s, s + n as u64 * UNIT)
        })
    }

    /// Bytes in live allocations.
    pub fn used_bytes(&self) -> u64 {
        self.used[..self.units].iter().filter(|&&u| u).count() as u64 * UNIT
    }
}

impl<const N: usize> Default for ExecArea<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 0x9000_0000_0100_0000;

    #[test]
    fn alloc_free_and_reuse() {
        let mut a: ExecArea<16> = ExecArea::new();
        assert_eq!(a.alloc(8), None, "no space before init");
        a.init(B + 1, B + 10 * UNIT + 5);
        assert_eq!(a.bounds(), (B + UNIT, B + 10 * UNIT));
        let x = a.alloc(1).unwrap();
        let y = a.alloc(65).unwrap();
        let z = a.alloc(64).unwrap();
        assert_eq!((x, y, z), (B + UNIT, B + 2 * UNIT, B + 4 * UNIT));
        assert_eq!(a.used_bytes(), 4 * UNIT);
        assert_eq!(a.range_of(y + 100), Some((y, y + 2 * UNIT)));
        assert_eq!(a.range_of(z + 63), Some((z, z + UNIT)));
        assert_eq!(a.range_of(z + 64), None);
        assert_eq!(a.free(y + 4), Err(FreeError::NotAllocated(y + 4)));
        assert_eq!(a.free(y), Ok(2 * UNIT));
        assert_eq!(a.free(y), Err(FreeError::NotAllocated(y)));
        assert_eq!(a.range_of(y), None);
        // First fit: a one-unit request reuses the hole, a three-unit one goes after z.
        assert_eq!(a.alloc(3 * UNIT as usize), Some(B + 5 * UNIT));
        assert_eq!(a.alloc(10), Some(y));
        assert_eq!(a.alloc(0), None);
        assert_eq!(a.alloc(4 * UNIT as usize), None, "only 1 + 1 units left");
        assert_eq!(a.free(B), Err(FreeError::NotAllocated(B)));
        assert_eq!(a.free(0), Err(FreeError::NotAllocated(0)));
        assert_eq!(FreeError::NotAllocated(0x40).to_string(), "0x40 is not the start of an allocation");
    }

    #[test]
    fn capacity_is_capped() {
        let mut a: ExecArea<4> = ExecArea::new();
        a.init(B, B + 100 * UNIT);
        assert_eq!(a.bounds(), (B, B + 4 * UNIT));
        assert!(a.alloc(4 * UNIT as usize).is_some());
        assert_eq!(a.alloc(1), None);
        let mut e: ExecArea<4> = ExecArea::new();
        e.init(B + UNIT, B);
        assert_eq!(e.alloc(1), None);
    }
}
