//! What the host offers a plugin: [`log`], [`emit`] and [`config`], and the [`Level`] of a log
//! line.
//!
//! On `wasm32` these call the component's `burrow:plugin/host` imports. Everywhere else — that
//! is, in a plugin's native unit tests — the generated imports would panic, so they are served
//! by thread-local shims that [`crate::testing`] sets and inspects.

use crate::Record;

/// How severe a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very verbose detail.
    Trace,
    /// Detail useful when debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something went wrong.
    Error,
}

/// Writes a log line; the host adds tenant, topic, partition and offset.
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

/// Asks the host to produce `record` if, and only if, the current message commits.
///
/// Records are buffered per message and discarded on `retry` or `fail`; the host only
/// produces to output topics the tenant allows.
pub fn emit(record: Record) {
    imp::emit(record);
}

/// The plugin's setting `key` for the tenant it runs for, if the tenant set one.
///
/// One compiled plugin serves many tenants; this is how each tenant configures it.
pub fn config(key: &str) -> Option<String> {
    imp::config(key)
}

/// Which message of the batch in progress the plugin is on: `log` and `emit` name it to the
/// host. Set by `__private::run_frame` before each message.
pub(crate) fn begin(index: usize) {
    CURRENT.set(u32::try_from(index).unwrap_or(u32::MAX));
}

thread_local! {
    static CURRENT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::__private::bindings::burrow::plugin::host as wit;
    use crate::Record;

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(super::CURRENT.get(), level, message);
    }

    pub(super) fn emit(record: Record) {
        wit::emit(super::CURRENT.get(), &record);
    }

    pub(super) fn config(key: &str) -> Option<String> {
        wit::config(key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;
    use crate::Record;
    use crate::testing::STATE;

    pub(super) fn log(level: Level, message: &str) {
        // Shown by the test harness when a test fails, which is when one wants to read it.
        eprintln!("[burrow-plugin {level:?}] {message}");
        STATE.with_borrow_mut(|s| s.logs.push((level, message.to_owned())));
    }

    pub(super) fn emit(record: Record) {
        STATE.with_borrow_mut(|s| s.emitted.push(record));
    }

    pub(super) fn config(key: &str) -> Option<String> {
        STATE.with_borrow(|s| s.config.get(key).cloned())
    }
}

/// Logs at [`Level::Trace`] with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Debug`] with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Info`] with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Warn`] with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Error`] with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &::std::format!($($arg)+)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn native_shims_record_logs_and_emits_and_serve_config() {
        testing::reset();
        testing::set_config("output-topic", "out");
        assert_eq!(config("output-topic").as_deref(), Some("out"));
        assert_eq!(config("missing"), None);

        crate::info!("hello {}", 7);
        emit(Record::new("out", "v"));
        assert_eq!(testing::take_logs(), vec![(Level::Info, "hello 7".into())]);
        assert_eq!(testing::take_emitted(), vec![Record::new("out", "v")]);
        assert!(testing::take_emitted().is_empty(), "take drains");
    }
}
