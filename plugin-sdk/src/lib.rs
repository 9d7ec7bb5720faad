//! Write a [Burrow] plugin: one plain Rust function over a Kafka message.
//!
//! The host calls the function once per message (and again on every retry), often for many
//! messages in one call into the plugin (the contract's `process`, which takes a batch as one
//! frame and which [`export!`] implements for you: each message is read in place, not
//! copied); the [`Outcome`] it returns decides whether the offset commits, the
//! message is retried, or it fails permanently. Build the crate as a `cdylib` for `wasm32-wasip2`; run its unit tests
//! natively with `cargo test`, no wasm or broker needed.
//!
//! ```
//! //! Passes every message through unchanged.
//! use burrow_plugin::{Message, Outcome};
//!
//! fn process(_msg: &Message) -> Outcome {
//!     Outcome::Commit
//! }
//! burrow_plugin::export!(process);
//!
//! #[cfg(test)]
//! mod tests {
//!     #[test]
//!     fn commits() {
//!         let msg = burrow_plugin::Message::new("t", "v");
//!         assert_eq!(super::process(&msg), burrow_plugin::Outcome::Commit);
//!     }
//! }
//! ```
//!
//! The function may instead return `Result<(), Error>` or `Result<Outcome, Error>`: `?` on any
//! `std::error::Error` fails the message with the error's text and source chain, and
//! [`ResultExt::retriable`] (or [`Error::retry`]) turns an error into a retry.
//!
//! ```
//! use burrow_plugin::{Message, Record, ResultExt};
//!
//! fn process(msg: &Message) -> Result<(), burrow_plugin::Error> {
//!     let text = msg.value_str()?; // not UTF-8: fail, with the reason
//!     let topic = burrow_plugin::config("output-topic").ok_or(burrow_plugin::Error::retry())?;
//!     burrow_plugin::emit(Record::new(topic, text.to_uppercase()));
//!     Ok(())
//! }
//! burrow_plugin::export!(process);
//! ```
//!
//! [Burrow]: https://example.invalid/burrow
//!
//! # Layout
//!
//! - `message`: the plain data — [`Message`] in, [`Record`] out, [`Header`]. No wasm here.
//! - `outcome`: [`Outcome`], the plugin's verdict on a message.
//! - `error`: [`Error`], [`ResultExt`] and [`IntoOutcome`] — how `Result`s become outcomes.
//! - `host`: [`log`] (and the [`info!`]-style macros), [`emit`], [`config`]: the host imports on
//!   `wasm32`, thread-local shims elsewhere.
//! - [`testing`]: set config and read emitted records and logs in native tests.
//! - `bindings` (hidden, under `__private`): the one `wit_bindgen::generate!` over `../wit`,
//!   and [`export!`]'s glue.

// The crate example is a whole plugin file, test module included, as an author would write it;
// that test runs for real as `plugins/passthrough`'s.
#![allow(clippy::test_attr_in_doctest)]

#[doc(hidden)]
pub mod bindings;
mod error;
mod host;
mod message;
mod outcome;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use error::{Error, IntoOutcome, ResultExt};
pub use host::{Level, config, emit, log};
pub use message::{Header, Message, Record};
pub use outcome::Outcome;

// The generated glue names this crate `::burrow_plugin` (it must, to work from inside the
// plugin's crate); this makes that path resolve here too.
extern crate self as burrow_plugin;

/// Registers `process` as the plugin's entry point: the host sends a batch of messages in one
/// call (the contract's `process(frame)`), and each goes through `process` on its own, with its
/// own outcome, logs and emits.
///
/// `process` names a function (or is a closure) of the shape `fn(&Message) -> R`, where `R` is
/// [`Outcome`], `Result<(), E>` or `Result<Outcome, E>` with `E: Into<Error>` (see
/// [`IntoOutcome`]). Use it once per plugin crate. A function of another shape is a compile
/// error that points at the name given here.
///
/// If the function panics, the component traps: the host counts that as a retriable failure
/// of that message and replaces the instance (the other messages of its batch run again).
///
/// On `wasm32` this emits the component's exported function; on other targets it only
/// type-checks, so a plugin's native tests build too.
#[macro_export]
macro_rules! export {
    ($($process:tt)+) => {
        const _: () = {
            struct BurrowPlugin;

            impl $crate::__private::bindings::Guest for BurrowPlugin {
                fn process(
                    frame: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::__private::bindings::Outcome> {
                    $crate::__private::run_frame(&frame, |message| {
                        $crate::__private::run($($process)+, message)
                    })
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::__export_guest!(
                BurrowPlugin with_types_in $crate::__private::bindings
            );

            // Natively nothing calls the export; naming it keeps the plugin's code "used".
            #[cfg(not(target_arch = "wasm32"))]
            const _: fn(
                ::std::vec::Vec<u8>,
            ) -> ::std::vec::Vec<$crate::__private::bindings::Outcome> =
                <BurrowPlugin as $crate::__private::bindings::Guest>::process;
        };
    };
}

/// What [`export!`]'s expansion reaches for. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use wit_bindgen;

    use crate::{IntoOutcome, Message, Outcome};

    /// Calls the plugin function and lowers its verdict to the WIT `outcome`.
    pub fn run<F: Processor>(process: F, message: &Message<'_>) -> bindings::Outcome {
        match process.call(message) {
            Outcome::Commit => bindings::Outcome::Commit,
            Outcome::Retry(delay) => {
                bindings::Outcome::Retry(delay.map(crate::outcome::delay_millis))
            }
            Outcome::Fail(reason) => bindings::Outcome::Fail(reason),
        }
    }

    /// Runs `one` on each message of a batch frame, in order, each read in place; `log` and
    /// `emit` meanwhile name that message to the host.
    ///
    /// A frame the SDK cannot read is the host's bug, not the plugin's: it panics, the call
    /// traps, and the host says so.
    pub fn run_frame(
        frame: &[u8],
        mut one: impl FnMut(&Message<'_>) -> bindings::Outcome,
    ) -> Vec<bindings::Outcome> {
        let frame = burrow_frame::Frame::parse(frame).unwrap_or_else(|e| unreadable(&e));
        (0..frame.len())
            .map(|index| {
                let message = Message::read(&frame, index).unwrap_or_else(|e| unreadable(&e));
                crate::host::begin(index);
                one(&message)
            })
            .collect()
    }

    fn unreadable(error: &burrow_frame::FrameError) -> ! {
        panic!("burrow-plugin: the host sent a batch frame this SDK cannot read: {error}")
    }

    /// A function `export!` accepts. A trait rather than a bound on `run` so that a function of
    /// the wrong shape is reported against the name the author passed to `export!`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be exported as a Burrow plugin",
        label = "expected `fn(&Message) -> Outcome` (or `-> Result<(), Error>` / `-> Result<Outcome, Error>`)"
    )]
    pub trait Processor {
        /// Runs the function and maps its return value to an [`Outcome`].
        fn call(self, message: &Message<'_>) -> Outcome;
    }

    impl<F, R> Processor for F
    where
        F: FnOnce(&Message<'_>) -> R,
        R: IntoOutcome,
    {
        fn call(self, message: &Message<'_>) -> Outcome {
            self(message).into_outcome()
        }
    }
}
