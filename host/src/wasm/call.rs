//! One call of a plugin: what the caller passes in, what comes back, and how a failed call is
//! classified.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Trap;

use super::bindings::{Outcome, OutputRecord};
use super::limits::Limits;
use super::message::Message;
use super::plugin::{PluginId, one_line};
use super::text::plugin_text;

/// Where a call comes from: attached to every log line the plugin causes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    /// `Arc`s so a worker can keep one per tenant and topic and clone it per message cheaply.
    pub tenant: Arc<str>,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl CallContext {
    /// The context for `message`, processed for `tenant`.
    pub fn for_message(tenant: impl Into<Arc<str>>, message: &Message) -> Self {
        Self {
            tenant: tenant.into(),
            topic: message.topic.as_str().into(),
            partition: message.partition,
            offset: message.offset,
        }
    }
}

/// What a call returned, and which plugin version answered (also when it failed).
#[derive(Debug)]
pub struct CallResult {
    pub plugin: PluginId,
    pub result: Result<Processed, CallError>,
}

/// A call that returned an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub outcome: Outcome,
    /// Records the plugin emitted during the call, in order. Produce them only if the outcome
    /// is `commit`; drop them otherwise.
    pub emitted: Vec<OutputRecord>,
}

/// A call that did not return an outcome. Every variant is a retriable failure of *this
/// message*: the instance is discarded and the next call gets a fresh one. None of them is a
/// reason for the host to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access, a host import that
    /// refused it (e.g. too many emitted records), or a call to `exit`.
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    #[error("plugin ran past its deadline of {limit:?}")]
    Timeout { limit: Duration },
    #[error("plugin exceeded its memory cap of {limit} bytes")]
    MemoryExceeded { limit: u64 },
    #[error("plugin used up its fuel ({limit} units)")]
    FuelExhausted { limit: u64 },
    /// A fresh instance could not be made (e.g. a granted directory is gone, or the memory cap
    /// is below what the plugin needs to start).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    /// The messages could not be laid out for the plugin (together past the 4 GiB a frame can
    /// address).
    #[error("cannot hand the messages to the plugin: {0}")]
    Frame(String),
}

/// Classifies a failed call. `memory_cap_hit` comes from the store's limiter: wasmtime's
/// error says only that growing memory failed, the limiter knows it was the cap.
pub(crate) fn classify(
    err: &wasmtime::Error,
    memory_cap_hit: bool,
    limits: &Limits,
    stderr: &str,
) -> CallError {
    if memory_cap_hit {
        return CallError::MemoryExceeded {
            limit: limits.memory,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout {
            limit: limits.timeout,
        },
        Some(Trap::OutOfFuel) => CallError::FuelExhausted {
            limit: limits.fuel.unwrap_or(u64::MAX),
        },
        Some(trap) => CallError::Trap {
            message: with_panic(trap.to_string(), stderr),
        },
        None => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => CallError::Trap {
                message: format!("plugin called exit({})", exit.0),
            },
            None => CallError::Trap {
                message: one_line(err),
            },
        },
    }
}

/// Adds why the guest gave up to the trap description ("unreachable executed" alone tells an
/// operator nothing): a Python exception that escaped the SDK (componentize-py prints its
/// traceback, then panics with a fixed text), else a Rust panic's message (which the guest
/// writes to stderr before aborting). Plugin text, escaped and capped like a log line.
fn with_panic(trap: String, stderr: &str) -> String {
    match python_exception(stderr).or_else(|| panic_message(stderr)) {
        Some(why) => format!("{trap} ({})", plugin_text(&why)),
        None => trap,
    }
}

/// The exception line of the last Python traceback in `stderr`: after `Traceback (most recent
/// call last):`, the last line that is not indented (the frames are) before the runtime's own
/// panic. `plugin.Trap: chaos: asked to trap`.
fn python_exception(stderr: &str) -> Option<String> {
    let (_, traceback) = stderr.rsplit_once("Traceback (most recent call last):")?;
    traceback
        .lines()
        .take_while(|line| !line.starts_with("thread '"))
        .filter(|line| !line.trim().is_empty() && !line.starts_with(char::is_whitespace))
        .last()
        .map(|line| line.trim().to_owned())
}

/// `thread '<unnamed>' panicked at src/lib.rs:7:5:\nboom` → `panicked at src/lib.rs:7:5: boom`.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    let location = lines.find_map(|l| l.split_once("panicked at ").map(|(_, at)| at))?;
    let location = location.trim_end_matches(':');
    let message = lines.next().unwrap_or_default().trim();
    Some(format!("panicked at {location}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_exception_is_taken_from_its_traceback() {
        let stderr = "Traceback (most recent call last):\n  File \"plugin.py\", line 150, in process\n    raise Trap(\"chaos: asked to trap\")\nplugin.Trap: chaos: asked to trap\n\nthread '<unnamed>' panicked at runtime/src/lib.rs:1280:25:\nPython function threw an unexpected exception\n";
        assert_eq!(
            python_exception(stderr).as_deref(),
            Some("plugin.Trap: chaos: asked to trap")
        );
        assert!(
            with_panic("wasm trap: unreachable".into(), stderr)
                .ends_with("(plugin.Trap: chaos: asked to trap)")
        );
        assert_eq!(
            python_exception("thread 'x' panicked at a.rs:1:1:\nboom\n"),
            None
        );
    }

    #[test]
    fn panic_message_is_taken_from_rust_panic_output() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:7:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:7:5: boom")
        );
        assert_eq!(panic_message("just output\n"), None);
    }

    #[test]
    fn a_memory_cap_hit_wins_over_the_trap_it_caused() {
        let err = wasmtime::Error::from(Trap::UnreachableCodeReached);
        let limits = Limits::default();
        assert_eq!(
            classify(&err, true, &limits, ""),
            CallError::MemoryExceeded {
                limit: limits.memory
            }
        );
        assert!(matches!(
            classify(&err, false, &limits, ""),
            CallError::Trap { .. }
        ));
    }

    #[test]
    fn interrupt_is_a_timeout_and_out_of_fuel_is_fuel() {
        let limits = Limits::default();
        let timeout = wasmtime::Error::from(Trap::Interrupt);
        let fuel = wasmtime::Error::from(Trap::OutOfFuel);
        assert!(matches!(
            classify(&timeout, false, &limits, ""),
            CallError::Timeout { .. }
        ));
        assert!(matches!(
            classify(&fuel, false, &limits, ""),
            CallError::FuelExhausted { .. }
        ));
    }
}
