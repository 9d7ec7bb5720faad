//! [`Frame`]: reads a frame in place. Nothing is copied: an [`Entry`] borrows the frame.

use crate::{ENTRY_LEN, Fields, FrameError, HAS_KEY, HAS_TIMESTAMP, HEADER_LEN, PREFIX_LEN};

/// A frame, checked only as far as its index; each message is checked when it is read.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    count: usize,
}

/// One message of a frame, borrowing it: the fields a [`Writer`](crate::Writer) takes, and its
/// headers.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub fields: Fields<'a>,
    pub headers: Headers<'a>,
}

/// A message's headers, read as they are iterated: `(name, value)` in the producer's order.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    table: usize,
    count: usize,
    message: usize,
}

impl<'a> Frame<'a> {
    /// The frame in `bytes`: its message count, and an index that fits.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let out_of_bounds = FrameError::OutOfBounds {
            what: "index entry",
            message: 0,
        };
        let count = usize::try_from(u32_at(bytes, 0).ok_or(out_of_bounds.clone())?)
            .map_err(|_| out_of_bounds.clone())?;
        let index = count
            .checked_mul(ENTRY_LEN)
            .and_then(|len| len.checked_add(PREFIX_LEN))
            .ok_or(out_of_bounds.clone())?;
        if index > bytes.len() {
            return Err(out_of_bounds);
        }
        Ok(Self { bytes, count })
    }

    /// How many messages the frame holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the frame holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Message `index` (from 0), read in place.
    pub fn get(&self, index: usize) -> Result<Entry<'a>, FrameError> {
        if index >= self.count {
            return Err(FrameError::OutOfBounds {
                what: "index entry",
                message: index,
            });
        }
        let at = PREFIX_LEN + index * ENTRY_LEN;
        let entry = &self.bytes[at..at + ENTRY_LEN];
        let flags = u32_at(entry, 24).unwrap_or(0);
        let slice = |what, at| span(self.bytes, entry, at, what, index);
        let topic = std::str::from_utf8(slice("topic", 28)?).map_err(|_| FrameError::NotUtf8 {
            what: "topic",
            message: index,
        })?;
        let key = match flags & HAS_KEY {
            0 => None,
            _ => Some(slice("key", 36)?),
        };
        let value = slice("value", 44)?;
        let table = u32_at(entry, 52).unwrap_or(0) as usize;
        let count = u32_at(entry, 56).unwrap_or(0) as usize;
        let fits = count
            .checked_mul(HEADER_LEN)
            .and_then(|len| len.checked_add(table))
            .is_some_and(|end| end <= self.bytes.len());
        if !fits {
            return Err(FrameError::OutOfBounds {
                what: "header table",
                message: index,
            });
        }
        Ok(Entry {
            fields: Fields {
                topic,
                partition: i32::from_le_bytes(array(entry, 16)),
                offset: i64::from_le_bytes(array(entry, 0)),
                key,
                value,
                timestamp: (flags & HAS_TIMESTAMP != 0)
                    .then(|| i64::from_le_bytes(array(entry, 8))),
                attempt: u32_at(entry, 20).unwrap_or(0),
            },
            headers: Headers {
                bytes: self.bytes,
                table,
                count,
                message: index,
            },
        })
    }

    /// Every message, in order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Result<Entry<'a>, FrameError>> + '_ {
        (0..self.count).map(|index| self.get(index))
    }
}

impl<'a> Headers<'a> {
    /// How many headers the message has.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the message has no header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Header `i`: its name and value.
    pub fn get(&self, i: usize) -> Result<(&'a str, &'a [u8]), FrameError> {
        if i >= self.count {
            return Err(FrameError::OutOfBounds {
                what: "header",
                message: self.message,
            });
        }
        let at = self.table + i * HEADER_LEN;
        let header = &self.bytes[at..at + HEADER_LEN];
        let name = span(self.bytes, header, 0, "header name", self.message)?;
        let name = std::str::from_utf8(name).map_err(|_| FrameError::NotUtf8 {
            what: "header name",
            message: self.message,
        })?;
        let value = span(self.bytes, header, 8, "header value", self.message)?;
        Ok((name, value))
    }

    /// Every header, in order.
    pub fn iter(
        &self,
    ) -> impl ExactSizeIterator<Item = Result<(&'a str, &'a [u8]), FrameError>> + '_ {
        (0..self.count).map(|i| self.get(i))
    }
}

/// The bytes of the span at `record[at..at + 8]`.
fn span<'a>(
    frame: &'a [u8],
    record: &[u8],
    at: usize,
    what: &'static str,
    message: usize,
) -> Result<&'a [u8], FrameError> {
    let start = u32_at(record, at).unwrap_or(0) as usize;
    let len = u32_at(record, at + 4).unwrap_or(0) as usize;
    start
        .checked_add(len)
        .and_then(|end| frame.get(start..end))
        .ok_or(FrameError::OutOfBounds { what, message })
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `N` bytes from `at` of a record whose length was checked.
fn array<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&record[at..at + N]);
    out
}
