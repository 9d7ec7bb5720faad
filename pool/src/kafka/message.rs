//! The message a handler reads: an owned copy of what the consumer fetched.
//!
//! Everything in a record is broker data that any producer controls, so copying it must not
//! fail: header names are bytes to Kafka, and rdkafka 0.39's own header accessor
//! (`BorrowedHeaders::try_get`) unwraps their UTF-8 decoding, which would panic the poll thread
//! on the first record whose header name is not UTF-8. [`read_headers`] reads them through
//! librdkafka's C API instead, and [`Message::from_raw`] copies a record from librdkafka's own
//! struct, for the poll thread's batch reads (`kafka::reader`) and `from_borrowed` alike.

use std::ffi::CStr;
use std::sync::Arc;

use rdkafka::bindings::{
    rd_kafka_header_cnt, rd_kafka_header_get_all, rd_kafka_headers_t, rd_kafka_message_headers,
    rd_kafka_message_t, rd_kafka_message_timestamp, rd_kafka_timestamp_type_t,
};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;

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
    /// Header name. Kafka allows any bytes here, the plugin contract a string: a name that is
    /// not UTF-8 is decoded lossily (each invalid sequence becomes U+FFFD), and a name holding a
    /// NUL byte is cut at it (librdkafka hands names over as C strings). The record is
    /// processed either way, never refused.
    pub key: String,
    /// Header value; `None` is a null header.
    pub value: Option<Vec<u8>>,
}

/// A record to produce: what a handler emits, or a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Key; `None` lets the partitioner spread records.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` is a null value (a tombstone to a compacted topic), not an empty one.
    pub value: Option<Vec<u8>>,
    /// Headers, in order; a header value may be null.
    pub headers: Vec<Header>,
}

impl OutRecord {
    /// What the record weighs in memory, near enough: its topic, key, value and headers.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
    }

    /// Its headers as rdkafka takes them, in order (a null value stays null).
    pub fn kafka_headers(&self) -> rdkafka::message::OwnedHeaders {
        self.headers.iter().fold(
            rdkafka::message::OwnedHeaders::new_with_capacity(self.headers.len()),
            |headers, header| {
                headers.insert(rdkafka::message::Header {
                    key: &header.key,
                    value: header.value.as_deref(),
                })
            },
        )
    }
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

    /// The bytes this message holds (key, value, headers): what it counts against
    /// `max_buffered_bytes`.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }

    /// Copies a fetched record; `topic` is the interned topic name (one allocation per topic).
    /// Never fails, whatever the producer wrote (see the module docs): for tools that read a
    /// topic themselves as the pool would (`burrow replay`).
    #[allow(unsafe_code)]
    pub fn from_borrowed(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        // SAFETY: `m.ptr()` is the live `rd_kafka_message_t` that `m` borrows, valid for as
        // long as `m` is, which outlives this call.
        unsafe { Self::from_raw(m.ptr(), topic) }
    }

    /// Copies the record at `m` (its key, value, headers and timestamp); `topic` is its
    /// interned topic name.
    ///
    /// # Safety
    ///
    /// `m` points at a live `rd_kafka_message_t` that stays valid (not destroyed) until this
    /// returns.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn from_raw(m: *const rd_kafka_message_t, topic: Arc<str>) -> Self {
        // SAFETY: the caller keeps `m` valid for this call (above).
        let record = unsafe { &*m };
        // SAFETY: librdkafka sets `key`/`payload` to null or to `key_len`/`len` bytes owned by
        // the message, alive while it is; they are copied out before this returns.
        let bytes = |ptr: *mut std::ffi::c_void, len: usize| {
            (!ptr.is_null())
                .then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec())
        };
        let mut kind = rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is valid (above) and `kind` is a valid local for librdkafka to write.
        let timestamp = unsafe { rd_kafka_message_timestamp(m, &mut kind) };
        let timestamp_ms = (timestamp != -1
            && kind != rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(timestamp);
        Self {
            topic,
            partition: record.partition,
            offset: record.offset,
            key: bytes(record.key, record.key_len),
            payload: bytes(record.payload, record.len),
            // SAFETY: as above.
            headers: unsafe { read_headers(m) },
            timestamp_ms,
        }
    }
}

/// Copies a fetched record's headers, in order, names decoded lossily (see [`Header::key`]).
///
/// rdkafka's safe accessor panics on a non-UTF-8 name, so this calls the two librdkafka
/// functions it wraps and decodes the name without the unwrap.
///
/// # Safety
///
/// `m` points at a live `rd_kafka_message_t` that stays valid until this returns.
#[allow(unsafe_code)]
unsafe fn read_headers(m: *const rd_kafka_message_t) -> Vec<Header> {
    let mut headers: *mut rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m` is live (the caller's promise); `rd_kafka_message_headers` only parses the
    // headers into a list owned by that message and writes its address to `headers`, which we
    // never free. rdkafka's own `BorrowedMessage::headers` makes the same call.
    let err = unsafe { rd_kafka_message_headers(m, &mut headers) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        // NOENT: the record has no headers.
        return Vec::new();
    }
    // SAFETY: `headers` is non-null and owned by the message, alive while `m` is.
    let count = unsafe { rd_kafka_header_cnt(headers) };
    let mut out = Vec::with_capacity(count);
    for idx in 0..count {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `headers` is valid (above), `idx < count`, and the three out-pointers are
        // valid locals; librdkafka writes pointers into the header list, alive while `m` is.
        let err =
            unsafe { rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka stores every header name NUL-terminated (`rd_kafka_header_add`
        // copies the name and appends `\0`), and `name` is non-null and alive while `m` is.
        let key = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let value = (!value.is_null()).then(|| {
            // SAFETY: a non-null value points at `size` bytes of the header list, alive while
            // `m` is; they are copied out before `m` can go.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec()
        });
        out.push(Header { key, value });
    }
    out
}
