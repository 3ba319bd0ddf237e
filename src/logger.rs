//! `log` records and panics go to Envoy's log through `proxy_log`.

use crate::host;

struct EnvoyLogger;

static LOGGER: EnvoyLogger = EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            host::log(level(record.level()), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// proxy-wasm log levels: trace 0, debug 1, info 2, warn 3, error 4, critical 5.
fn level(level: log::Level) -> u32 {
    match level {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => 4,
    }
}

pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    std::panic::set_hook(Box::new(|panic| {
        host::log(5, &format!("kiali-header-auth panicked: {panic}"));
    }));
}
