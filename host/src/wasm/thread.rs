//! A plugin thread: one named OS thread that owns one worker's [`PluginInstance`] and the
//! executor its calls run on.
//!
//! Why not `tokio::task::spawn_blocking`: its pool is shared by the whole process — every
//! tenant's calls, and the pools' own blocking work (polls, synchronous commits). Calls held up
//! to their deadline, many at once, can use that pool up, and then *another* tenant's commits
//! wait. A plugin thread belongs to one worker of one tenant; the worst a blocked plugin can do
//! is hold its own threads until their deadlines.
//!
//! The worker sends each call (or batch of calls) over a bounded channel and awaits the reply
//! on a oneshot: the async side never runs guest code and never blocks. The thread runs a current-thread tokio
//! runtime (timers for deadlines and WASI clocks, a small blocking pool of its own for WASI
//! file operations). Dropping the [`PluginThread`] closes the channel: the thread ends after
//! its current call, and that call is cut short at once if nobody waits for its reply.

use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::call::{CallContext, CallResult};
use super::deployment::DeploymentSlot;
use super::instance::{PluginInstance, call_executor};
use super::message::Message;

/// The handle of one plugin thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct PluginThread {
    /// Holds one call: a worker awaits each reply before sending the next, so a queue would
    /// never fill; the bound keeps it that way if a caller misbehaves.
    calls: mpsc::Sender<Call>,
    name: Arc<str>,
}

/// One batch of calls travelling to the thread (often a batch of one), with the way back.
struct Call {
    /// Writes the batch, on the plugin thread.
    prepare: Prepare,
    reply: oneshot::Sender<Vec<CallResult>>,
}

/// Writes a [`Batch`] where it runs, so that copying each record into the frame costs the
/// plugin thread, not the async runtime that sent it.
pub type Prepare = Box<dyn FnOnce() -> Batch + Send>;

/// Why a call did not reach its plugin thread or got no answer. Retriable: a fresh thread can
/// take over.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    #[error("cannot start plugin thread {name}: {source}")]
    Spawn {
        name: Arc<str>,
        #[source]
        source: std::io::Error,
    },
    /// The thread is gone (it panicked, which a guest cannot cause; or its runtime failed).
    #[error("plugin thread {name} stopped")]
    Stopped { name: Arc<str> },
}

impl PluginThread {
    /// Starts a thread called `name` that serves calls on `slot`'s current deployment, with
    /// its own instance (made on the first call).
    pub fn spawn(
        name: impl Into<Arc<str>>,
        slot: Arc<DeploymentSlot>,
    ) -> Result<Self, ThreadError> {
        let name: Arc<str> = name.into();
        let spawn_failed = |source| ThreadError::Spawn {
            name: Arc::clone(&name),
            source,
        };
        let executor = call_executor().map_err(spawn_failed)?;
        let (calls, mut queue) = mpsc::channel::<Call>(1);
        thread::Builder::new()
            // The OS refuses a NUL in a thread name (std would panic); a tenant name could hold one.
            .name(name.replace('\0', "?"))
            .spawn(move || {
                let mut instance = PluginInstance::new(slot);
                executor.block_on(async {
                    while let Some(call) = queue.recv().await {
                        serve(&mut instance, call).await;
                    }
                });
                // Do not wait for a WASI file operation still running on the blocking pool
                // (a cut-short call may leave one behind): nobody needs its result.
                executor.shutdown_background();
            })
            .map_err(spawn_failed)?;
        Ok(Self { calls, name })
    }

    /// The thread's name (`burrow-plugin-TENANT-N` in the host).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one call on the thread and waits for its result: at the latest the deployment's
    /// deadline after the thread picks it up. Dropping this future abandons the call, and the
    /// thread stops it at once (and throws its instance away).
    pub async fn call(
        &self,
        context: CallContext,
        message: Message,
    ) -> Result<CallResult, ThreadError> {
        let mut results = self.call_batch(vec![(context, message)]).await?;
        results.pop().ok_or_else(|| ThreadError::Stopped {
            name: Arc::clone(&self.name),
        })
    }

    /// Runs several calls on the thread, in one call into the plugin (see
    /// [`PluginInstance::call_batch_async`]), each under its own deadline, and waits for all
    /// their results, in order: one hop to the thread and back for the batch. A call that traps
    /// or overruns costs only itself. Dropping this future abandons the batch; the thread stops
    /// the call it is in at once.
    pub async fn call_batch(
        &self,
        calls: Vec<(CallContext, Message)>,
    ) -> Result<Vec<CallResult>, ThreadError> {
        self.call_prepared(Box::new(move || {
            let (contexts, messages): (Vec<_>, Vec<_>) = calls.into_iter().unzip();
            Batch::of(&contexts, &messages)
        }))
        .await
    }

    /// Like [`PluginThread::call_batch`], with the batch written by `prepare` on the plugin
    /// thread (the host's workers write their Kafka records into its frame there).
    pub async fn call_prepared(&self, prepare: Prepare) -> Result<Vec<CallResult>, ThreadError> {
        let (reply, result) = oneshot::channel();
        let stopped = || ThreadError::Stopped {
            name: Arc::clone(&self.name),
        };
        self.calls
            .send(Call { prepare, reply })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())
    }
}

/// Runs a batch of calls, unless its caller stops waiting first: then the call in progress is
/// dropped (which drops the instance mid-call; the next call makes a fresh one).
async fn serve(instance: &mut PluginInstance, call: Call) {
    let Call { prepare, mut reply } = call;
    let batch = prepare();
    let results = {
        let running = instance.call_batch_async(batch);
        let abandoned = reply.closed();
        tokio::select! {
            results = running => Some(results),
            () = abandoned => None,
        }
    };
    match results {
        // The caller may have gone since; nothing to do then.
        Some(results) => {
            let _ = reply.send(results);
            // Between calls, not inside one: the next call finds the fresh instance ready.
            instance.renew_if_due().await;
        }
        None => instance.reset(),
    }
}
