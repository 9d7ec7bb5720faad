//! A plugin's stdout and stderr, captured so they end up in the host's log.
//!
//! WASI streams here write into a bounded buffer that the host drains after every call, one log
//! event per line, tagged with the plugin and the message being processed. wasmtime's
//! `MemoryOutputPipe` cannot be emptied, and an instance lives for many calls, so we keep our
//! own. A plugin that writes more than [`CAPACITY`] bytes in one call loses the excess (the log
//! says how much): the host's memory stays bounded whatever the guest prints.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most output kept from one call, per stream.
pub(crate) const CAPACITY: usize = 64 * 1024;

/// One guest output stream; clones share the buffer (WASI asks for a fresh stream handle each
/// time the guest opens stdout).
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<Buffer>>,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Bytes thrown away because the buffer was full.
    dropped: usize,
}

/// What a stream captured during one call.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Captured {
    pub(crate) text: String,
    pub(crate) dropped: usize,
}

impl Captured {
    /// The captured text, one item per line, without line endings or a trailing empty line.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines()
    }
}

impl CapturedOutput {
    /// Empties the buffer, returning what was in it (invalid UTF-8 replaced).
    pub(crate) fn take(&self) -> Captured {
        let mut buffer = self.lock();
        let bytes = std::mem::take(&mut buffer.bytes);
        Captured {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            dropped: std::mem::take(&mut buffer.dropped),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let room = CAPACITY.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
    }

    /// A panic while holding the lock cannot leave the buffer inconsistent (appends are
    /// single calls), so a poisoned lock is still good to use.
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    /// Never fails and never blocks: output beyond the capacity is counted and dropped, so a
    /// chatty plugin is not slowed or broken by its logging.
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CAPACITY)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_lines_and_empties_the_buffer() {
        let out = CapturedOutput::default();
        out.append(b"one\r\ntwo\nthree");
        let captured = out.take();
        assert_eq!(
            captured.lines().collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        assert_eq!(out.take(), Captured::default());
    }

    #[test]
    fn output_beyond_capacity_is_dropped_and_counted() {
        let out = CapturedOutput::default();
        out.append(&vec![b'x'; CAPACITY + 10]);
        let captured = out.take();
        assert_eq!(captured.text.len(), CAPACITY);
        assert_eq!(captured.dropped, 10);
    }
}
