//! The batch frame of the Burrow plugin contract (`burrow:plugin@0.3.0`): a batch of Kafka
//! messages laid out in one buffer, so that it crosses into a plugin with one allocation and
//! one copy, and the plugin reads each message in place.
//!
//! The host writes frames ([`Writer`]); the plugin SDKs read them ([`Frame`], and the Python
//! SDK's `burrow_plugin/_frame.py`, which follows this layout and is tested against the same
//! golden frame, `frame/tests/golden.frame`). This crate is the one copy of the layout in Rust.
//!
//! # Layout
//!
//! All integers little-endian. A *span* is `start: u32, len: u32`, `start` counted from the
//! frame's first byte.
//!
//! ```text
//! frame  = count: u32, entry × count, data
//! entry  = offset: i64, timestamp: i64, partition: i32, attempt: u32, flags: u32,
//!          topic: span, key: span, value: span, headers: (start: u32, count: u32)   60 bytes
//! flags  = bit 0: the message has a key; bit 1: it has a timestamp
//! header = name: span, value: span                                                  16 bytes
//! ```
//!
//! The data holds the bytes the spans point at, and each message's header table (`count`
//! headers from `start`). Topic names and header names are UTF-8. Messages of one topic share
//! its bytes. A null value or null header value is written empty, as the contract has always
//! given them.
//!
//! # Why a frame
//!
//! Lowering a list of records into a component costs one guest allocation per byte string
//! (topic, key, value, each header's name and value) and a lift into owned values on the
//! guest's side: most of a passthrough plugin's time. A frame is one `list<u8>`.

mod read;
mod write;

pub use read::{Entry, Frame, Headers};
pub use write::{Fields, Writer};

/// The bytes of one entry in the index.
pub const ENTRY_LEN: usize = 60;
/// The bytes of one header in a message's header table.
pub const HEADER_LEN: usize = 16;
/// The bytes before the index: the message count.
pub const PREFIX_LEN: usize = 4;

/// `flags` bit: the message has a key.
pub const HAS_KEY: u32 = 1;
/// `flags` bit: the message has a timestamp.
pub const HAS_TIMESTAMP: u32 = 2;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the batch frame would pass 4 GiB, the most a span can address")]
    TooLarge,
    #[error("message {message}'s {what} lies outside the batch frame")]
    OutOfBounds { what: &'static str, message: usize },
    #[error("message {message}'s {what} is not UTF-8")]
    NotUtf8 { what: &'static str, message: usize },
    #[error("a frame for {expected} messages was given {written}")]
    Count { expected: usize, written: usize },
}
