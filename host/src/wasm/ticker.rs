//! The clock behind per-call deadlines.
//!
//! Wasmtime's epoch interruption is cheap for the guest (a counter compare at loop heads and
//! function entries) but needs someone to advance the engine's epoch. One thread per runtime
//! does that every [`TICK`]; at every tick a running call yields to its executor, where its
//! deadline (a tokio timer) is checked. A deadline is thus enforced within about one tick.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances: the resolution of every deadline.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Advances the engines' epochs every [`TICK`] until dropped.
pub(crate) struct EpochTicker {
    /// Dropping the sender is the stop signal: the thread sees the channel disconnect.
    stop: Option<Sender<()>>,
    /// Joined on drop so no thread outlives the runtime that started it.
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engines: Vec<Engine>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("burrow-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only loops on a timer; it cannot panic, so the result says nothing.
            let _ = thread.join();
        }
    }
}
