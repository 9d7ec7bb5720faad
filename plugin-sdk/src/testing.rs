//! Native stand-ins for the host, for a plugin's unit tests (not built for `wasm32`).
//!
//! Each test thread has its own host: set config with [`set_config`], call the plugin
//! function, then read what it emitted and logged with [`take_emitted`] and [`take_logs`].
//! The state is thread-local because the test harness runs tests in parallel threads; call
//! [`reset`] first if a thread may be reused.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{Level, Record};

/// One test thread's host.
#[derive(Default)]
pub(crate) struct State {
    /// Served by [`crate::config`].
    pub(crate) config: HashMap<String, String>,
    /// Appended to by [`crate::emit`].
    pub(crate) emitted: Vec<Record>,
    /// Appended to by [`crate::log`].
    pub(crate) logs: Vec<(Level, String)>,
}

thread_local! {
    pub(crate) static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Sets the plugin setting `key` that [`crate::config`] returns on this thread.
pub fn set_config(key: impl Into<String>, value: impl Into<String>) {
    STATE.with_borrow_mut(|s| s.config.insert(key.into(), value.into()));
}

/// Unsets the plugin setting `key` on this thread.
pub fn remove_config(key: &str) {
    STATE.with_borrow_mut(|s| s.config.remove(key));
}

/// The records emitted on this thread since the last call, oldest first.
pub fn take_emitted() -> Vec<Record> {
    STATE.with_borrow_mut(|s| std::mem::take(&mut s.emitted))
}

/// The log lines written on this thread since the last call, oldest first.
pub fn take_logs() -> Vec<(Level, String)> {
    STATE.with_borrow_mut(|s| std::mem::take(&mut s.logs))
}

/// Forgets this thread's config, emitted records and logs.
pub fn reset() {
    STATE.with_borrow_mut(|s| *s = State::default());
}
