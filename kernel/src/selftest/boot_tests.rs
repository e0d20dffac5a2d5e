//! Suite `boot`: the foundation works (heap, symbols, counter, exceptions, timer, patch sites).

use crate::{kassert, kassert_eq, kdiag, ktest};
use alloc::boxed::Box;
use alloc::vec::Vec;

ktest! {
    /// Allocating and freeing many sizes and alignments gives every byte back.
    fn boot::heap_alloc_free() {
        let before = crate::heap::used();
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for i in 0..300usize {
            let size = 1 + (i * 37) % 5000;
            let v = alloc::vec![i as u8; size];
            blocks.push(v);
        }
        for (i, b) in blocks.iter().enumerate() {
            kassert!(b.iter().all(|&x| x == i as u8), "block {i} was overwritten");
        }
        for align in [8usize, 16, 64, 256, 4096] {
            let layout = core::alloc::Layout::from_size_align(align * 3, align).unwrap();
            // SAFETY: layout has a nonzero size; the block is freed right away with the same layout.
            unsafe {
                let p = alloc::alloc::alloc(layout);
                kassert!(!p.is_null() && p as usize % align == 0, "alignment {align}");
                alloc::alloc::dealloc(p, layout);
            }
        }
        let big = Box::new([7u64; 4096]);
        kassert_eq!(big.iter().sum::<u64>(), 7 * 4096);
        drop(big);
        drop(blocks);
        kassert_eq!(crate::heap::used(), before, "bytes leaked");
        Ok(())
    }
}

ktest! {
    /// The embedded symbol table maps names to addresses and addresses to names.
    fn boot::symbols_both_ways() {
        let main = crate::boot::loongtrace_kernel_main as *const () as u64;
        let s = crate::ksyms::find("loongtrace_kernel_main");
        kassert!(s.is_some(), "loongtrace_kernel_main not in the table");
        kassert_eq!(s.unwrap().addr, main);
        let (sym, off) = crate::ksyms::lookup(main + 8).expect("lookup");
        kassert_eq!(sym.name, "loongtrace_kernel_main");
        kassert_eq!(off, 8);
        let init = crate::heap::init as *const () as u64;
        let (sym, off) = crate::ksyms::lookup(init).expect("lookup heap::init");
        kassert_eq!(sym.name, "loongtrace_kernel::heap::init");
        kassert_eq!(off, 0);
        kassert_eq!(crate::ksyms::find("loongtrace_kernel::heap::init").map(|s| s.addr), Some(init));
        let shown = alloc::format!("{}", crate::ksyms::sym(init + 4));
        kassert!(shown.starts_with("loongtrace_kernel::heap::init+0x4/0x"), "display: {shown}");
        kdiag!("{} symbols; heap::init+4 = {shown}", crate::ksyms::table().len());
        Ok(())
    }
}

ktest! {
    /// The stable counter runs at 100 MHz and advances.
    fn boot::stable_counter() {
        kassert_eq!(arch::time::frequency(), 100_000_000);
        let a = arch::time::ticks();
        let mut x = 0u64;
        for i in 0..1000 {
            x = core::hint::black_box(x + i);
        }
        let b = arch::time::ticks();
        kassert!(b > a, "counter did not advance ({a} -> {b}, {x})");
        Ok(())
    }
}

ktest! {
    /// `break 0` raises the breakpoint exception and execution resumes after it.
    fn boot::break_exception_resumes() {
        let before = crate::irq::expect_break(0);
        let mut after = 0u64;
        // SAFETY: the trap handler skips this expected `break 0`; `after` is written only once
        // execution resumes past it.
        unsafe { core::arch::asm!("break 0", "li.d {0}, 42", out(reg) after) };
        kassert_eq!(after, 42);
        kassert_eq!(crate::irq::breaks_seen(), before + 1);
        Ok(())
    }
}

ktest! {
    /// Timer interrupts arrive: at least two ticks within 100 ms of counter time.
    fn boot::timer_interrupt() {
        kassert!(arch::cpu::irq_enabled(), "interrupts are off");
        let cpu = arch::cpu::id();
        let start = crate::irq::ticks(cpu);
        let t0 = arch::time::ticks();
        let limit = crate::time::counter_hz() / 10;
        while crate::irq::ticks(cpu) < start + 2 {
            kassert!(arch::time::ticks() - t0 < limit, "no timer interrupt within 100 ms");
            core::hint::spin_loop();
        }
        kdiag!("2 ticks after {} us", (arch::time::ticks() - t0) / 100);
        Ok(())
    }
}

ktest! {
    /// Every recorded patchable function held its four NOPs (two before the entry for the ops
    /// literal, two at the entry) when the kernel booted.
    fn boot::patch_sites_are_nops() {
        let s = crate::boot::early_scan();
        kdiag!("{} patchable function entries", s.sites);
        kassert!(s.sites > 50, "only {} sites", s.sites);
        kassert!(s.not_nop == 0, "{} sites were not two NOPs, first at {}", s.not_nop, crate::ksyms::sym(s.first_bad));
        let mut sorted: Vec<u64> = crate::ftrace::sites::function_entries().collect();
        sorted.sort_unstable();
        let me = boot_patch_sites_are_nops_probe as *const () as u64;
        kassert!(sorted.binary_search(&me).is_ok(), "a traceable kernel function has no record");
        Ok(())
    }
}

/// An ordinary kernel function: it must carry a patch site.
#[inline(never)]
fn boot_patch_sites_are_nops_probe() -> u64 {
    core::hint::black_box(1)
}
