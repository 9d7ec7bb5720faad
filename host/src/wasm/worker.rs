//! A worker's plugin instance, whose calls run on the shared [`Executor`].
//!
//! The pool's worker sends each call (or batch of calls) to the executor and awaits the
//! result: the async runtime the pool runs on never runs guest code and never blocks. The
//! instance travels with the call and comes back with its result, so a worker's calls never
//! contend on a store, and a worker holds no thread of its own: a tenant costs threads only
//! while its calls run. Dropping a call's future abandons it: the call is cut short at once
//! (at its next epoch tick at the latest) and its instance thrown away; the next call makes a
//! fresh one.

use std::sync::{Arc, Mutex, PoisonError};

use super::batch::Batch;
use super::call::{CallContext, CallResult};
use super::deployment::DeploymentSlot;
use super::executor::Executor;
use super::instance::PluginInstance;
use super::message::Message;

/// One worker's handle on its plugin instance.
#[derive(Debug)]
pub struct PluginWorker {
    slot: Arc<DeploymentSlot>,
    /// The instance between calls; `None` while a call has it, or after an abandoned one.
    instance: Mutex<Option<PluginInstance>>,
    name: Arc<str>,
}

/// Writes a [`Batch`] where the call runs, so that copying each record into the frame costs
/// the executor's thread (and the tenant's share), not the async runtime that sent it.
pub type Prepare = Box<dyn FnOnce() -> Batch + Send>;

/// Why a call got no answer. Retriable: the next call makes a fresh instance.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The executor's threads could not be started.
    #[error("cannot start the plugin executor: {reason}")]
    Executor { reason: String },
    /// The call's task ended without a result (it panicked, which a guest cannot cause).
    #[error("plugin call of {name} stopped")]
    Stopped { name: Arc<str> },
}

/// Aborts the call's task if its caller stops waiting.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PluginWorker {
    /// A worker called `name` (in logs) whose calls run `slot`'s current deployment, on an
    /// instance made on its first call.
    pub fn new(name: impl Into<Arc<str>>, slot: Arc<DeploymentSlot>) -> Self {
        Self {
            slot,
            instance: Mutex::new(None),
            name: name.into(),
        }
    }

    /// Its name (`burrow-plugin-TENANT-N` in the host).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one call and waits for its result: at the latest the deployment's deadline after
    /// it starts. Dropping this future abandons the call (see the module docs).
    pub async fn call(
        &self,
        context: CallContext,
        message: Message,
    ) -> Result<CallResult, WorkerError> {
        let mut results = self.call_batch(vec![(context, message)]).await?;
        results.pop().ok_or_else(|| WorkerError::Stopped {
            name: Arc::clone(&self.name),
        })
    }

    /// Runs several calls in one call into the plugin (see
    /// [`PluginInstance::call_batch_async`]), each under its own deadline, and waits for all
    /// their results, in order. A call that traps or overruns costs only itself.
    pub async fn call_batch(
        &self,
        calls: Vec<(CallContext, Message)>,
    ) -> Result<Vec<CallResult>, WorkerError> {
        self.call_prepared(Box::new(move || {
            let (contexts, messages): (Vec<_>, Vec<_>) = calls.into_iter().unzip();
            Batch::of(&contexts, &messages)
        }))
        .await
    }

    /// Like [`PluginWorker::call_batch`], with the batch written by `prepare` where the call
    /// runs (the host's workers write their Kafka records into its frame there).
    pub async fn call_prepared(&self, prepare: Prepare) -> Result<Vec<CallResult>, WorkerError> {
        let executor = Executor::global().map_err(|reason| WorkerError::Executor { reason })?;
        let mut instance = self
            .lock()
            .take()
            .unwrap_or_else(|| PluginInstance::new(Arc::clone(&self.slot)));
        let call = async move {
            let results = instance.call_batch_async(prepare()).await;
            // Between calls, not inside one: the next call finds the fresh instance ready.
            instance.renew_if_due().await;
            (instance, results)
        };
        let mut task = AbortOnDrop(executor.spawn(self.slot.share(), call));
        let joined = (&mut task.0).await;
        drop(task);
        let (instance, results) = joined.map_err(|_| WorkerError::Stopped {
            name: Arc::clone(&self.name),
        })?;
        *self.lock() = Some(instance);
        Ok(results)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PluginInstance>> {
        self.instance.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
