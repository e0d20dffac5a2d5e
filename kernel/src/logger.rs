//! The `log` backend: `[seconds.micros] LEVEL cpuN: message` on the serial console.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger;

static LOGGER: Logger = Logger;

/// Seconds and microseconds since the counter started.
#[patchable_function_entry(prefix_nops = 0, entry_nops = 0)]
pub fn timestamp() -> (u64, u64) {
    crate::time::secs_and_us(arch::time::ticks())
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let (s, us) = timestamp();
        let level = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        println!("[{s:>5}.{us:06}] {level} cpu{}: {}", arch::cpu::id(), r.args());
    }

    fn flush(&self) {}
}

/// Installs the logger with the given maximum level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
