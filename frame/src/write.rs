//! [`Writer`]: lays out a batch of messages as a frame, each byte copied once.

use crate::{ENTRY_LEN, FrameError, HAS_KEY, HAS_TIMESTAMP, HEADER_LEN, PREFIX_LEN};

/// One message's fields, borrowed from wherever the writer's caller keeps them.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub timestamp: Option<i64>,
    pub attempt: u32,
}

/// Writes a frame of a known number of messages: the index first (reserved up front), the
/// bytes after it, in one growing buffer.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    expected: usize,
    written: usize,
    /// Where the last topic's name is in the frame, and its span: a batch is nearly always of
    /// one topic, written once.
    topic: Option<(std::ops::Range<usize>, [u8; 8])>,
    too_large: bool,
}

impl Writer {
    /// A writer for `count` messages, with room for `data` bytes of topics, keys, values and
    /// headers before it grows.
    pub fn new(count: usize, data: usize) -> Self {
        let index = PREFIX_LEN + count * ENTRY_LEN;
        let mut buf = Vec::with_capacity(index + data);
        buf.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        buf.resize(index, 0);
        Self {
            buf,
            expected: count,
            written: 0,
            topic: None,
            too_large: u32::try_from(count).is_err(),
        }
    }

    /// Appends the next message, with its headers as `(name, value)` pairs in order.
    pub fn push<'h>(
        &mut self,
        fields: &Fields<'_>,
        headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
    ) -> Result<(), FrameError> {
        if self.written == self.expected {
            return Err(FrameError::Count {
                expected: self.expected,
                written: self.written + 1,
            });
        }
        let topic = self.topic_span(fields.topic);
        let key = fields.key.map_or([0; 8], |key| self.append(key));
        let value = self.append(fields.value);
        let headers = self.header_table(headers);
        let mut flags = 0;
        if fields.key.is_some() {
            flags |= HAS_KEY;
        }
        if fields.timestamp.is_some() {
            flags |= HAS_TIMESTAMP;
        }
        let at = PREFIX_LEN + self.written * ENTRY_LEN;
        let entry = &mut self.buf[at..at + ENTRY_LEN];
        entry[0..8].copy_from_slice(&fields.offset.to_le_bytes());
        entry[8..16].copy_from_slice(&fields.timestamp.unwrap_or(0).to_le_bytes());
        entry[16..20].copy_from_slice(&fields.partition.to_le_bytes());
        entry[20..24].copy_from_slice(&fields.attempt.to_le_bytes());
        entry[24..28].copy_from_slice(&flags.to_le_bytes());
        entry[28..36].copy_from_slice(&topic);
        entry[36..44].copy_from_slice(&key);
        entry[44..52].copy_from_slice(&value);
        entry[52..60].copy_from_slice(&headers);
        self.written += 1;
        Ok(())
    }

    /// The frame, once every message it was made for is in it.
    pub fn finish(self) -> Result<Vec<u8>, FrameError> {
        if self.too_large || u32::try_from(self.buf.len()).is_err() {
            return Err(FrameError::TooLarge);
        }
        if self.written != self.expected {
            return Err(FrameError::Count {
                expected: self.expected,
                written: self.written,
            });
        }
        Ok(self.buf)
    }

    fn topic_span(&mut self, topic: &str) -> [u8; 8] {
        if let Some((last, span)) = &self.topic
            && self.buf[last.clone()] == *topic.as_bytes()
        {
            return *span;
        }
        let start = self.buf.len();
        let span = self.append(topic.as_bytes());
        self.topic = Some((start..self.buf.len(), span));
        span
    }

    /// Reserves a table for the headers, then appends their bytes and fills it in.
    fn header_table<'h>(
        &mut self,
        headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
    ) -> [u8; 8] {
        let count = headers.len();
        if count == 0 {
            return span(self.buf.len(), 0, &mut self.too_large);
        }
        let table = self.buf.len();
        self.buf.resize(table + count * HEADER_LEN, 0);
        for (i, (name, value)) in headers.enumerate().take(count) {
            let name = self.append(name.as_bytes());
            let value = self.append(value);
            let at = table + i * HEADER_LEN;
            self.buf[at..at + 8].copy_from_slice(&name);
            self.buf[at + 8..at + HEADER_LEN].copy_from_slice(&value);
        }
        span(table, count, &mut self.too_large)
    }

    /// Appends `bytes`; their span.
    fn append(&mut self, bytes: &[u8]) -> [u8; 8] {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        span(start, bytes.len(), &mut self.too_large)
    }
}

/// `start` and `len` as a span; past 4 GiB marks the frame too large (reported by `finish`).
fn span(start: usize, len: usize, too_large: &mut bool) -> [u8; 8] {
    let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(len)) else {
        *too_large = true;
        return [0; 8];
    };
    let mut span = [0; 8];
    span[..4].copy_from_slice(&start.to_le_bytes());
    span[4..].copy_from_slice(&len.to_le_bytes());
    span
}
