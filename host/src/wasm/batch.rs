//! [`Batch`]: messages on their way into a plugin, as the contract's frame (see the
//! `burrow-frame` crate) plus each message's [`CallContext`].
//!
//! The frame is what crosses into the guest: one buffer, lowered with one allocation and one
//! copy, read in place by the SDKs. Writing it is the host's only copy of a message: the pool's
//! workers write their Kafka records straight into it, on the plugin executor.

use std::ops::Range;

use burrow_frame::{Fields, Frame, FrameError, Writer};

use super::call::CallContext;
use super::message::Message;

/// A batch of messages for one call into a plugin (or several, if it is split).
#[derive(Debug)]
pub struct Batch {
    pub(super) contexts: Vec<CallContext>,
    /// `Err` if the messages cannot be framed (together past 4 GiB): every call fails.
    pub(super) frame: Result<Vec<u8>, FrameError>,
}

/// Writes a [`Batch`] message by message.
#[derive(Debug)]
pub struct BatchWriter {
    contexts: Vec<CallContext>,
    writer: Writer,
}

impl BatchWriter {
    /// A writer for `count` messages whose keys, values and headers weigh about `bytes`.
    pub fn new(count: usize, bytes: usize) -> Self {
        Self {
            contexts: Vec::with_capacity(count),
            writer: Writer::new(count, bytes),
        }
    }

    /// Appends the next message, with its headers as `(name, value)` pairs.
    pub fn push<'h>(
        &mut self,
        context: CallContext,
        fields: &Fields<'_>,
        headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
    ) {
        // More messages than the writer was made for is the caller's bug; `finish` reports it.
        if self.writer.push(fields, headers).is_ok() {
            self.contexts.push(context);
        }
    }

    /// The batch.
    pub fn finish(self) -> Batch {
        Batch {
            contexts: self.contexts,
            frame: self.writer.finish(),
        }
    }
}

impl Batch {
    /// `messages[i]` under `contexts[i]`.
    pub fn of(contexts: &[CallContext], messages: &[Message]) -> Self {
        let bytes = messages
            .iter()
            .map(|m| weight(&m.fields(), m.header_pairs()))
            .sum();
        let mut writer = BatchWriter::new(messages.len(), bytes);
        for (context, message) in contexts.iter().zip(messages) {
            writer.push(context.clone(), &message.fields(), message.header_pairs());
        }
        writer.finish()
    }

    /// One message under `context`.
    pub fn one(context: &CallContext, message: &Message) -> Self {
        Self::of(std::slice::from_ref(context), std::slice::from_ref(message))
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The frame's bytes of each message from `from` on (key, value and headers), for
    /// splitting a batch by size; empty if the frame is unreadable.
    pub(super) fn sizes(&self, from: usize) -> impl Iterator<Item = usize> + '_ {
        let frame = self
            .frame
            .as_deref()
            .ok()
            .and_then(|f| Frame::parse(f).ok());
        (from..self.len()).map(move |i| {
            frame
                .and_then(|f| f.get(i).ok())
                .map_or(0, |e| weight(&e.fields, e.headers.iter().flatten()))
        })
    }

    /// Messages `range` as a batch of their own, written again from this one's frame.
    pub(super) fn part(&self, range: Range<usize>) -> Self {
        let contexts = self.contexts[range.clone()].to_vec();
        let frame = self.frame.as_ref().map_err(Clone::clone).and_then(|frame| {
            let frame = Frame::parse(frame)?;
            let bytes = self.sizes(range.start).take(range.len()).sum();
            let mut writer = Writer::new(range.len(), bytes);
            for i in range {
                let e = frame.get(i)?;
                let headers = e.headers.iter().collect::<Result<Vec<_>, _>>()?;
                writer.push(&e.fields, headers.into_iter())?;
            }
            writer.finish()
        });
        Self { contexts, frame }
    }
}

/// What a message's key, value and headers add to a frame (its topic is written once per
/// batch), near enough.
fn weight<'h>(fields: &Fields<'_>, headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> usize {
    let headers: usize = headers
        .map(|(name, value)| name.len() + value.len() + burrow_frame::HEADER_LEN)
        .sum();
    fields.key.map_or(0, <[u8]>::len) + fields.value.len() + headers
}
