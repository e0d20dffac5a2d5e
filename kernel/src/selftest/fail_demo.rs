//! Suite `fail_demo` (only with `fail_demo=1` on the command line): cases that fail on purpose,
//! to prove the host notices an assertion failure, a panic and an exception.

use crate::{kassert_eq, ktest};
// (each case below fails on purpose)

ktest! {
    fn fail_demo::assertion_fails() {
        kassert_eq!(1 + 1, 3, "deliberately wrong");
        Ok(())
    }
}

ktest! {
    fn fail_demo::panics() {
        let v: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        let i = core::hint::black_box(3);
        let _ = v[i];
        Ok(())
    }
}

ktest! {
    fn fail_demo::unexpected_break() {
        // SAFETY: deliberately raises an exception nobody expects; the harness recovers.
        unsafe { core::arch::asm!("break 7") };
        Ok(())
    }
}

ktest! {
    fn fail_demo::null_deref() {
        let p = core::hint::black_box(0x10usize) as *const u64;
        // SAFETY: deliberately reads an unmapped address (outside both DMW windows); the TLB refill
        // vector reports it and the harness recovers.
        let v = unsafe { core::ptr::read_volatile(p) };
        kassert_eq!(v, 0);
        Ok(())
    }
}

ktest! {
    /// Runs last: hangs when the command line says `fail_demo=hang`.
    fn fail_demo::zz_hang_if_asked() {
        if crate::boot::options().fail_demo == crate::cmdline::FailDemo::Hang {
            loop {
                core::hint::spin_loop();
            }
        }
        Ok(())
    }
}
