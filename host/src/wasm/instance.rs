//! A worker's plugin instance: made on first use, reused across messages, replaced after any
//! failure and whenever the deployment changes.
//!
//! # Deadlines
//!
//! A call is a future (wasmtime's async call, on its own fiber stack) under
//! `tokio::time::timeout`, and it ends at its deadline whatever the guest does:
//!
//! - a guest *parked in a host call* (a WASI sleep or poll) is a pending future: the timeout
//!   fires and drops it;
//! - guest *code* never parks: at every epoch tick (every 5 ms) it traps if it is past its
//!   deadline, and otherwise yields to the executor, where a caller that abandons the call
//!   gets its turn (see [`PluginWorker`](super::PluginWorker)). The timer alone would not do:
//!   a runtime whose threads are all busy turns its timers only every so many polls (tokio's
//!   `event_interval`), and a guest busy for 300 ms past a 100 ms deadline answered before
//!   its timer fired.
//!
//! Dropping wasmtime's future unwinds the guest's fiber (the host call in progress sees an
//! error, the guest traps out); the store stays sound but the instance's state is unknown, so
//! the instance is thrown away as after any trap. Both cases are [`CallError::Timeout`].
//!
//! Yielding rather than trapping at the epoch deadline: the two measured alike within the
//! run-to-run noise (`cargo bench -p burrow --bench wasm`, passthrough 100 B, on a shared
//! 2-core machine, each came out ahead in some rounds), and yielding lets an abandoned CPU-bound
//! call stop within a tick instead of running on to its deadline beside its replacement.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::batch::Batch;
use super::bindings::{Outcome, Processor};
use super::call::{self, CallContext, CallError, CallResult, Processed};
use super::deployment::{Deployment, DeploymentSlot};
use super::host;
use super::message::Message;
use super::pace::Pace;
use super::plugin::one_line;
use super::store::StoreState;
use super::text::plugin_text;

/// One worker's handle on a tenant's plugin. Not shared: each pool worker owns one (on its
/// call, see [`PluginWorker`](super::PluginWorker)), so calls never contend on a
/// store.
pub struct PluginInstance {
    slot: Arc<DeploymentSlot>,
    live: Option<Live>,
    /// How many instances this worker has created; lets tests and metrics see replacements.
    instantiations: u64,
    /// How many calls entered the plugin (a batch is one): lets tests see how a batch ran.
    guest_calls: u64,
    /// The fuel the last single-message call used, under a fuel limit (`burrow test`).
    fuel_used: Option<u64>,
    /// How many instances were replaced because the deployment's [`Recycle`](super::Recycle) said so.
    recycled: u64,
    /// The executor of the blocking [`PluginInstance::call`], made on its first use: a handle
    /// driven by a [`PluginWorker`](super::PluginWorker) runs on the shared executor and never builds this one.
    executor: Option<tokio::runtime::Runtime>,
    /// How many messages go into the next call.
    pace: Pace,
}

/// An instantiated plugin and the deployment it was made from.
struct Live {
    deployment: Arc<Deployment>,
    store: Store<StoreState>,
    processor: Processor,
    /// Messages this instance has processed.
    messages: u64,
}

impl Live {
    /// Whether the deployment wants this instance replaced (see [`Recycle`](super::Recycle)).
    fn recycle_due(&self) -> bool {
        let memory = self.store.data().limiter.size();
        self.deployment.recycle().due(self.messages, memory)
    }
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field(
                "live",
                &self.live.as_ref().map(|l| l.deployment.plugin().id()),
            )
            .field("instantiations", &self.instantiations)
            .finish()
    }
}

impl PluginInstance {
    /// A handle that will instantiate the slot's deployment on its first call.
    pub fn new(slot: Arc<DeploymentSlot>) -> Self {
        Self {
            slot,
            live: None,
            instantiations: 0,
            guest_calls: 0,
            fuel_used: None,
            recycled: 0,
            executor: None,
            pace: Pace::default(),
        }
    }

    /// Processes one message on the slot's current deployment, blocking the calling thread
    /// until the call ends (at the latest at its deadline).
    ///
    /// Drives [`PluginInstance::call_async`] on an executor of its own (a current-thread tokio
    /// runtime, made on first use). For tests, benchmarks and tools; the host's workers call
    /// through a [`PluginWorker`](super::PluginWorker). Do not call it from an async task: it
    /// blocks, and tokio refuses to start a runtime inside one of its async worker threads.
    pub fn call(&mut self, context: &CallContext, message: &Message) -> CallResult {
        let executor = match self.take_executor() {
            Ok(executor) => executor,
            Err(error) => {
                return CallResult {
                    plugin: self.slot.current().plugin().id().clone(),
                    result: Err(error),
                };
            }
        };
        let result = executor.block_on(self.call_async(context, message));
        self.executor = Some(executor);
        result
    }

    /// This handle's own executor for blocking calls, made on first use; put it back after.
    fn take_executor(&mut self) -> Result<tokio::runtime::Runtime, CallError> {
        match self.executor.take() {
            Some(executor) => Ok(executor),
            None => call_executor().map_err(|e| {
                CallError::Instantiate(format!("cannot start the executor for plugin calls: {e}"))
            }),
        }
    }

    /// Processes one message on the slot's current deployment: a batch of one (see
    /// [`PluginInstance::call_batch_async`]).
    pub async fn call_async(&mut self, context: &CallContext, message: &Message) -> CallResult {
        let mut results = self.call_batch_async(Batch::one(context, message)).await;
        // One message in, one result out: `call_batch_async` answers every message.
        results.pop().unwrap_or_else(|| CallResult {
            plugin: self.slot.current().plugin().id().clone(),
            result: Err(CallError::Frame("no result for the message".into())),
        })
    }

    /// Processes a batch of messages on the slot's current deployment: one result per message,
    /// in order, each exactly what the message would get alone.
    ///
    /// The messages go into the plugin in as few calls as the [`Pace`] allows (each call must
    /// end within one message's deadline, and carry at most a quarter of the memory cap). A
    /// call of several messages that fails in any way — a trap, the deadline, the memory cap,
    /// fuel (a call gets the limit once per message) — costs only time: its messages run again
    /// one by one, each under its own limits on a fresh instance.
    ///
    /// Never panics because of the plugin: every guest failure is a [`CallError`], and a call
    /// ends at the deployment's deadline even when the guest is blocked in a WASI call (see
    /// the [module docs](crate::wasm)). After a failure the instance is dropped and the next
    /// call starts a fresh one; so is it when this future is dropped before it completes.
    ///
    /// Runs guest code inside `poll`, up to the deadline: drive it from a thread meant for that
    /// (the plugin executor), not from a shared async runtime. Needs a tokio runtime with timers
    /// enabled (the deadline and WASI clocks are tokio timers).
    pub async fn call_batch_async(&mut self, mut batch: Batch) -> Vec<CallResult> {
        let deployment = self.slot.current();
        let n = batch.len();
        let budget = usize::try_from(deployment.limits().memory / 4).unwrap_or(usize::MAX);
        let mut results = Vec::with_capacity(n);
        let mut at = 0;
        while at < n {
            let take = self.next_call(&batch, at, budget);
            let called = if take == n {
                self.enter(&deployment, &mut batch).await
            } else {
                self.enter(&deployment, &mut batch.part(at..at + take))
                    .await
            };
            match called {
                Ok(processed) => results.extend(processed.into_iter().map(Ok)),
                Err(error) if take == 1 => results.push(Err(error)),
                Err(why) => {
                    tracing::debug!(
                        plugin = %deployment.plugin().id(), messages = take, %why,
                        "batch call failed; running its messages one by one"
                    );
                    self.pace.failed(take);
                    for i in at..at + take {
                        let alone = self.enter(&deployment, &mut batch.part(i..i + 1)).await;
                        results.push(alone.map(|mut one| one.remove(0)));
                    }
                }
            }
            at += take;
        }
        let plugin = deployment.plugin().id();
        results
            .into_iter()
            .map(|result| CallResult {
                plugin: plugin.clone(),
                result,
            })
            .collect()
    }

    /// How many messages from `at` the next call takes: as the pace allows, and no more than
    /// `budget` bytes of frame (at least one message).
    fn next_call(&self, batch: &Batch, at: usize, budget: usize) -> usize {
        let take = self.pace.next(batch.len() - at);
        let small = batch.frame.as_ref().is_ok_and(|f| f.len() <= budget);
        if small {
            return take;
        }
        let mut bytes = 0;
        let fits = batch
            .sizes(at)
            .take(take)
            .take_while(|size| {
                bytes += size;
                bytes <= budget
            })
            .count();
        fits.max(1)
    }

    /// Instantiates the slot's current deployment now, under its limits, without calling the
    /// plugin (unless this handle already holds an instance of it). A deployment that cannot
    /// start — a memory cap below what the plugin's initial memory needs, a granted directory
    /// gone — is found here, before any message is at stake (`burrow validate`, start-up).
    ///
    /// Blocks, like [`PluginInstance::call`]: not for an async task.
    pub fn warm_up(&mut self) -> Result<(), CallError> {
        let deployment = self.slot.current();
        if matches!(&self.live, Some(live) if Arc::ptr_eq(&live.deployment, &deployment)) {
            return Ok(());
        }
        let executor = self.take_executor()?;
        let live = executor.block_on(self.instantiate(&deployment));
        self.executor = Some(executor);
        self.live = Some(live?);
        Ok(())
    }

    /// Drops the current instance, if any; the next call instantiates afresh.
    pub fn reset(&mut self) {
        self.live = None;
    }

    /// Replaces the instance with a fresh one now if the deployment's [`Recycle`](super::Recycle) says it is
    /// due: what a worker's call does once its batch is answered, so the next call does not
    /// wait for the new instance. A fresh instance that cannot start is left to the next call
    /// to report.
    pub async fn renew_if_due(&mut self) {
        if !self.live.as_ref().is_some_and(Live::recycle_due) {
            return;
        }
        let deployment = self.slot.current();
        self.live = None;
        self.recycled += 1;
        if let Ok(fresh) = self.instantiate(&deployment).await {
            self.live = Some(fresh);
        }
    }

    /// The linear memory the current instance holds, in bytes (all of its memories); `None`
    /// before the first call or after a failure.
    pub fn memory(&self) -> Option<u64> {
        self.live
            .as_ref()
            .map(|live| live.store.data().limiter.size())
    }

    /// How many instances were replaced because they were due (see [`Recycle`](super::Recycle)).
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// The instance for a call on `deployment`, if this handle holds one of it that is not due
    /// for recycling (one that is due is dropped, and counted).
    fn take_live(&mut self, deployment: &Arc<Deployment>) -> Option<Live> {
        let live = self.live.take()?;
        if !Arc::ptr_eq(&live.deployment, deployment) {
            return None;
        }
        if live.recycle_due() {
            self.recycled += 1;
            return None;
        }
        Some(live)
    }

    /// How many instances this handle has created so far.
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    /// How many calls have entered the plugin so far (a batch that ran as one is one call; one
    /// run again message by message is one more per message).
    pub fn guest_calls(&self) -> u64 {
        self.guest_calls
    }

    /// The fuel the last [`PluginInstance::call`] (or `call_async`) used: `None` without a fuel
    /// limit, or if the call never entered the plugin. Deterministic for a given plugin and
    /// message, where wall time is not.
    pub fn fuel_used(&self) -> Option<u64> {
        self.fuel_used
    }

    /// One call into the plugin for every message of `batch`: their results, or why the call
    /// returned none. The instance is kept only after a call that returned.
    async fn enter(
        &mut self,
        deployment: &Arc<Deployment>,
        batch: &mut Batch,
    ) -> Result<Vec<Processed>, CallError> {
        self.fuel_used = None;
        let n = batch.len();
        let frame = match &batch.frame {
            Ok(frame) => frame,
            Err(e) => return Err(CallError::Frame(e.to_string())),
        };
        let mut live = match self.take_live(deployment) {
            Some(live) => live,
            None => self.instantiate(deployment).await?,
        };
        // From here until the instance is put back, a dropped future (cancelled caller) drops
        // `live` with it: a half-run instance is never called again.
        let limits = deployment.limits();
        let fuel = limits
            .fuel
            .map(|fuel| fuel.saturating_mul(u64::try_from(n).unwrap_or(u64::MAX)));
        self.guest_calls += 1;
        live.store
            .data_mut()
            .begin_call(std::mem::take(&mut batch.contexts));
        arm(&mut live.store, fuel);
        let started = Instant::now();
        live.store.data_mut().deadline = Some(started + limits.timeout);
        let called = tokio::time::timeout(
            limits.timeout,
            live.processor.call_process(&mut live.store, frame),
        )
        .await;
        let elapsed = started.elapsed();
        let mut trace = live.store.data_mut().end_call();
        batch.contexts = std::mem::take(&mut trace.contexts);
        host::log_output(
            live.store.data(),
            &batch.contexts,
            &trace.stdout,
            &trace.stderr,
        );
        if n == 1 {
            self.fuel_used =
                fuel.map(|fuel| fuel.saturating_sub(live.store.get_fuel().unwrap_or(0)));
        }
        let outcomes = match called {
            Ok(Ok(outcomes)) => outcomes,
            // `live` is dropped here: a trapped instance is never called again.
            Ok(Err(err)) => {
                return Err(call::classify(
                    &err,
                    trace.memory_cap_hit,
                    limits,
                    &trace.stderr.text,
                ));
            }
            // Past the deadline, parked in a host call or running code: the timeout dropped the
            // call (see the module docs).
            Err(_elapsed) => {
                return Err(CallError::Timeout {
                    limit: limits.timeout,
                });
            }
        };
        // Alone, a message that hit the cap and still answered keeps its answer; in a batch,
        // the cap is the whole call's, and each message is owed a run under it alone.
        if trace.memory_cap_hit && n > 1 {
            return Err(CallError::MemoryExceeded {
                limit: limits.memory,
            });
        }
        if outcomes.len() != n {
            return Err(CallError::Trap {
                message: format!("returned {} outcomes for {n} messages", outcomes.len()),
            });
        }
        live.messages += n as u64;
        self.pace.returned(n, elapsed, limits.timeout);
        self.live = Some(live);
        Ok(outcomes
            .into_iter()
            .zip(trace.emitted)
            .map(|(outcome, emitted)| Processed {
                outcome: checked(outcome),
                emitted,
            })
            .collect())
    }

    async fn instantiate(&mut self, deployment: &Arc<Deployment>) -> Result<Live, CallError> {
        let state = StoreState::new(deployment, self.slot.memory().clone())
            .map_err(|e| CallError::Instantiate(e.to_string()))?;
        // A fuel limit needs the plugin compiled for the metered engine (see `Runtime`).
        let pre = match deployment.limits().fuel {
            Some(_) => deployment
                .plugin()
                .metered_pre()
                .map_err(|e| CallError::Instantiate(e.to_string()))?,
            None => deployment.plugin().pre(),
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // At every tick, stop guest code past its deadline, or give the executor a turn: the
        // deadline's timer (for a guest parked in a host call), an abandoned caller and the
        // other tenants' calls are served there.
        store.epoch_deadline_callback(|store| {
            Ok(if store.data().past_deadline() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        // Instantiation runs guest code too (initialisers), under the same limits as a call.
        let limits = deployment.limits();
        store.data_mut().deadline = Some(Instant::now() + limits.timeout);
        arm(&mut store, limits.fuel);
        let processor = tokio::time::timeout(limits.timeout, pre.instantiate_async(&mut store))
            .await
            .map_err(|_elapsed| past_deadline(limits.timeout))?
            .map_err(|e| CallError::Instantiate(one_line(&e)))?;
        self.instantiations += 1;
        Ok(Live {
            deployment: Arc::clone(deployment),
            store,
            processor,
            messages: 0,
        })
    }
}

fn past_deadline(timeout: Duration) -> CallError {
    CallError::Instantiate(format!(
        "instantiation ran past the deadline of {timeout:?}"
    ))
}

/// A `fail` reason is plugin text that ends up in logs and dead-letter headers: capped and
/// escaped like a log message.
fn checked(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Fail(reason) => {
            let escaped = match plugin_text(&reason) {
                Cow::Owned(escaped) => Some(escaped),
                Cow::Borrowed(_) => None,
            };
            Outcome::Fail(escaped.unwrap_or(reason))
        }
        other => other,
    }
}

/// The executor of a blocking call: one thread (the caller's), timers for deadlines and WASI
/// clocks, and a small pool of its own for WASI file operations — never tokio's shared one.
pub(crate) fn call_executor() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .max_blocking_threads(2)
        .build()
}

/// Sets the first yield and the fuel for the next stretch of guest code (the deadline itself is
/// the timeout around the call).
fn arm(store: &mut Store<StoreState>, fuel: Option<u64>) {
    store.set_epoch_deadline(1);
    // Only a deployment with a fuel limit runs on the metered engine (see `instantiate`), where
    // `set_fuel` cannot fail.
    if let Some(fuel) = fuel {
        let _ = store.set_fuel(fuel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wasm::{Plugin, Runtime};

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_results_can_move_to_worker_threads() {
        assert_send::<PluginInstance>();
        assert_send::<CallResult>();
        assert_send_sync::<crate::wasm::PluginWorker>();
    }

    /// Fuel is counted only for a deployment that sets a fuel limit: without one, the plugin
    /// runs on the engine without fuel instrumentation (its store has no fuel to read); with
    /// one, on the metered engine, with the tank filled to the limit.
    #[test]
    fn only_a_deployment_with_a_fuel_limit_counts_fuel() -> anyhow::Result<()> {
        use crate::wasm::{Deployment, Limits, RuntimeConfig};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/plugins/passthrough.wasm");
        anyhow::ensure!(path.is_file(), "run `make plugins` first");
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let plugin = runtime.load_file(&path)?;
        let fuel_in = |limits: Limits| -> anyhow::Result<Option<u64>> {
            let slot = Arc::new(DeploymentSlot::new(
                Deployment::new(plugin.clone()).with_limits(limits),
            ));
            let mut instance = PluginInstance::new(slot);
            instance.warm_up()?;
            let live = instance
                .live
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("not live"))?;
            Ok(live.store.get_fuel().ok())
        };
        assert_eq!(fuel_in(Limits::default())?, None, "no fuel counted");
        let metered = Limits {
            fuel: Some(5_000_000),
            ..Limits::default()
        };
        let left = fuel_in(metered)?.ok_or_else(|| anyhow::anyhow!("fuel not counted"))?;
        assert!(left > 0 && left <= 5_000_000, "{left}");
        Ok(())
    }

    #[test]
    fn runtime_plugins_and_slots_are_shared_across_threads() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<Plugin>();
        assert_send_sync::<DeploymentSlot>();
    }
}
