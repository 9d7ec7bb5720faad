//! The message a handler reads: an owned copy of what the consumer fetched.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers, Message as _};

/// One Kafka record, owned, cheap to share between a worker and the pool (it travels in an `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Record key, if any.
    pub key: Option<Vec<u8>>,
    /// Record value, if any.
    pub payload: Option<Vec<u8>>,
    /// Record headers, in order.
    pub headers: Vec<Header>,
    /// Record timestamp in milliseconds since the epoch, if the broker gave one.
    pub timestamp_ms: Option<i64>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is a null header.
    pub value: Option<Vec<u8>>,
}

impl Message {
    /// A message with no key, payload or headers; for tests and handlers built by hand.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            payload: None,
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// Copies a fetched record; `topic` is the interned topic name (one allocation per topic).
    pub(crate) fn from_borrowed(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}
