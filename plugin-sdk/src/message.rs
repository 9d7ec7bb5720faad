//! The plain data a plugin reads and writes: [`Message`] in, [`Record`] out, and their
//! [`Header`]s.
//!
//! These are ordinary Rust structs with no tie to WebAssembly, so plugin unit tests build them
//! natively ([`Message::new`] and the `with_*` builders). In a plugin, a message borrows the
//! batch frame the host sent (topic, key and value are read in place, not copied); in a test
//! it owns its data. `Record` and `Header` mirror the WIT records one for one because the
//! generated glue lowers them directly (see `bindings`): adding, removing or retyping a field
//! is a contract change.

use std::borrow::Cow;
use std::str::Utf8Error;

/// A Kafka header. Values are raw bytes: Kafka does not promise they are UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value, as produced.
    pub value: Vec<u8>,
}

impl Header {
    /// A header from anything string-like and anything byte-like.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One Kafka message, as the host consumed it.
///
/// `'a` is the batch frame it is read from: a plugin's `fn process(msg: &Message)` never
/// names it. Topic, key and value borrow the frame ([`Cow::Borrowed`]); headers, when the
/// message has any, are copied out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The topic it was consumed from.
    pub topic: Cow<'a, str>,
    /// Its partition in that topic.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The message key, if the producer set one.
    pub key: Option<Cow<'a, [u8]>>,
    /// The message value (empty for a tombstone or an empty message).
    pub value: Cow<'a, [u8]>,
    /// Headers in the order the producer wrote them; names may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, when the broker or producer set one.
    pub timestamp: Option<i64>,
    /// 1 on first delivery, +1 for every retry of this message: lets a plugin give up, or
    /// change course, after a number of attempts.
    pub attempt: u32,
}

impl Message<'static> {
    /// A first-delivery message at partition 0, offset 0, with no key, headers or timestamp.
    /// Meant for tests; the `with_*` methods fill in the rest.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: Cow::Owned(topic.into()),
            partition: 0,
            offset: 0,
            key: None,
            value: Cow::Owned(value.into()),
            headers: Vec::new(),
            timestamp: None,
            attempt: 1,
        }
    }
}

impl<'a> Message<'a> {
    /// Message `index` of a batch frame, read in place.
    pub(crate) fn read(
        frame: &burrow_frame::Frame<'a>,
        index: usize,
    ) -> Result<Self, burrow_frame::FrameError> {
        let entry = frame.get(index)?;
        let fields = entry.fields;
        Ok(Self {
            topic: Cow::Borrowed(fields.topic),
            partition: fields.partition,
            offset: fields.offset,
            key: fields.key.map(Cow::Borrowed),
            value: Cow::Borrowed(fields.value),
            headers: entry
                .headers
                .iter()
                .map(|header| header.map(|(name, value)| Header::new(name, value)))
                .collect::<Result<_, _>>()?,
            timestamp: fields.timestamp,
            attempt: fields.attempt,
        })
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Cow::Owned(key.into()));
        self
    }

    /// Appends a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the partition and offset.
    #[must_use]
    pub fn with_position(mut self, partition: i32, offset: i64) -> Self {
        self.partition = partition;
        self.offset = offset;
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Sets the delivery attempt (1 is the first).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The value of the last header called `name`, if any.
    ///
    /// The last one wins, as with the Java client's `lastHeader`: a producer that appends a
    /// header to override an earlier one gets what it meant.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// [`Message::header`] as text: `Ok(None)` if absent, an error if present but not UTF-8,
    /// so `msg.header_str("x")?` tells the two apart.
    pub fn header_str(&self, name: &str) -> Result<Option<&str>, Utf8Error> {
        self.header(name).map(std::str::from_utf8).transpose()
    }

    /// The value as text, or the UTF-8 error (which `?` turns into a `fail`).
    pub fn value_str(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(&self.value)
    }

    /// The key as text: `Ok(None)` if there is no key, an error if it is not UTF-8.
    pub fn key_str(&self) -> Result<Option<&str>, Utf8Error> {
        self.key.as_deref().map(std::str::from_utf8).transpose()
    }
}

/// A record for the host to produce if, and only if, the current message commits.
///
/// Hand it to [`crate::emit`]. The host only produces to output topics the tenant allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The topic to produce to.
    pub topic: String,
    /// The key, if any (it decides the partition).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with no key or headers.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            value: value.into(),
            headers: Vec::new(),
        }
    }

    /// A copy of `msg`'s key, value and headers, bound for `topic`: forwarding a message.
    pub fn forward(topic: impl Into<String>, msg: &Message<'_>) -> Self {
        Self {
            topic: topic.into(),
            key: msg.key.as_deref().map(<[u8]>::to_vec),
            value: msg.value.to_vec(),
            headers: msg.headers.clone(),
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_returns_the_last_value_of_a_repeated_name() {
        let msg = Message::new("t", "v")
            .with_header("a", "1")
            .with_header("b", "x")
            .with_header("a", "2");
        assert_eq!(msg.header("a"), Some(&b"2"[..]));
        assert_eq!(msg.header("missing"), None);
    }

    #[test]
    fn header_str_tells_absent_from_not_utf8() {
        let msg = Message::new("t", "v").with_header("bin", vec![0xff, 0xfe]);
        assert_eq!(msg.header_str("absent"), Ok(None));
        assert!(msg.header_str("bin").is_err());
    }

    #[test]
    fn value_and_key_as_text() {
        let msg = Message::new("t", "héllo").with_key("k");
        assert_eq!(msg.value_str(), Ok("héllo"));
        assert_eq!(msg.key_str(), Ok(Some("k")));
        assert!(Message::new("t", vec![0xc3]).value_str().is_err());
    }

    #[test]
    fn new_message_is_a_first_delivery() {
        let msg = Message::new("t", "v");
        assert_eq!((msg.attempt, msg.partition, msg.offset), (1, 0, 0));
    }

    #[test]
    fn forward_keeps_key_value_and_headers() {
        let msg = Message::new("in", "v").with_key("k").with_header("h", "1");
        let rec = Record::forward("out", &msg);
        assert_eq!(rec.topic, "out");
        assert_eq!(rec.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(rec.value, b"v");
        assert_eq!(rec.headers, msg.headers);
    }
}
