//! [`Message`]: a Kafka message as the host's tools hand it to a plugin (`burrow test`,
//! `burrow replay`, a shadow candidate, the benchmarks). The pool's workers skip it: they write
//! the pool's messages into a [`Batch`](super::Batch) directly.

use super::bindings::Header;

/// One Kafka message for a plugin, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// Empty for a tombstone, as the contract gives it.
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, when the broker or producer set one.
    pub timestamp: Option<i64>,
    /// 1 on first delivery, +1 for every retry.
    pub attempt: u32,
}

impl Message {
    /// The message's fields as the frame writer takes them.
    pub(crate) fn fields(&self) -> burrow_frame::Fields<'_> {
        burrow_frame::Fields {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            value: &self.value,
            timestamp: self.timestamp,
            attempt: self.attempt,
        }
    }

    /// Its headers as `(name, value)` pairs.
    pub(crate) fn header_pairs(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
    }
}
