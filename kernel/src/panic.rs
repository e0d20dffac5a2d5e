//! Fatal paths: the panic handler and unexpected exceptions.
//!
//! Inside a self-test, a panic or an unexpected exception fails that test and the harness goes on
//! with the next one: the harness registers itself with [`set_hooks`] at boot. Anywhere else it
//! prints a report the host runner recognises (`!!! KERNEL PANIC` / `!!! FATAL EXCEPTION`), then
//! powers the machine off.

use arch::frame::PtRegs;
use core::fmt::Write;

/// What an upper floor may do before the fatal paths report (the self-test harness recovers a
/// case that panicked or took an exception).
pub struct FatalHooks {
    /// Runs first on a panic; returns only when it does not take over.
    pub on_panic: fn(&core::panic::PanicInfo),
    /// Runs first on an unexpected exception; `true` = handled (the frame was redirected).
    pub on_exception: fn(&mut PtRegs) -> bool,
}

static HOOKS: spin::Once<FatalHooks> = spin::Once::new();

/// Installs the hooks (once, at boot).
pub fn set_hooks(hooks: FatalHooks) {
    HOOKS.call_once(|| hooks);
}

#[cfg(not(test))]
#[panic_handler]
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Some(h) = HOOKS.get() {
        (h.on_panic)(info);
    }
    crate::console::force_unlock();
    let loc = info.location();
    println!("\n!!! KERNEL PANIC on cpu{}", arch::cpu::id());
    println!(
        "panicked at {}:{}: {}",
        loc.map_or("?", |l| l.file()),
        loc.map_or(0, |l| l.line()),
        info.message()
    );
    println!("backtrace:");
    crate::ksyms::print_backtrace("  ", None, arch::cpu::frame_pointer());
    arch::power::power_off()
}

/// Reports an exception nobody handles and powers off (or fails the running test).
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn unexpected_exception(frame: &mut PtRegs) {
    if HOOKS.get().is_some_and(|h| (h.on_exception)(frame)) {
        return;
    }
    crate::console::force_unlock();
    println!("\n!!! FATAL EXCEPTION on cpu{}", arch::cpu::id());
    print_exception(frame, "");
    arch::power::power_off()
}

/// Prints the register dump and backtrace of `frame`, each line prefixed with `prefix`.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn print_exception(frame: &PtRegs, prefix: &str) {
    struct Prefixed<'a> {
        prefix: &'a str,
        at_line_start: bool,
    }
    impl Write for Prefixed<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for (i, part) in s.split('\n').enumerate() {
                if i > 0 {
                    print!("\n");
                    self.at_line_start = true;
                }
                if !part.is_empty() {
                    if self.at_line_start {
                        print!("{}", self.prefix);
                        self.at_line_start = false;
                    }
                    print!("{part}");
                }
            }
            Ok(())
        }
    }
    let mut w = Prefixed { prefix, at_line_start: true };
    let _ = arch::trap::dump(frame, &mut w);
    println!("{prefix}at {}", crate::ksyms::sym(frame.era));
    println!("{prefix}backtrace:");
    crate::ksyms::print_backtrace(prefix, Some(frame.era), frame.regs[22]);
}
