//! One pool worker of a tenant: runs each message through the tenant's plugin and turns the
//! plugin's outcome into the pool's decision.
//!
//! | plugin says                   | the pool does                                            |
//! |-------------------------------|----------------------------------------------------------|
//! | `commit`                      | produce emitted records; mark done when all are acked    |
//! | `commit`, emit to a bad topic | permanent failure, naming the topic                      |
//! | `retry(hint)`                 | retry after the hint (capped) or the backoff             |
//! | `fail(reason)`                | permanent failure with the reason                        |
//! | trap, deadline, memory cap    | retriable failure; the instance is replaced              |
//!
//! Permanent failures then follow the tenant's policy: dead-letter (produce and wait for the
//! ack before the offset may advance), skip, or halt.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FailurePolicy;
use crate::kafka::Message;
use crate::kafka::producer::{self, OutRecord};
use crate::pool::{
    Attempt, BoxError, Failure, FailureAction, Handler, Pending, ProcessError, Processed,
};
use crate::wasm::{
    self, CallContext, CallError, CallResult, DeploymentSlot, PluginId, PluginWorker,
};

use super::canary::{CanarySlot, Side};
use super::{RolloutSlot, Shared};

/// How often a dead letter is tried before the tenant halts rather than lose the message.
const DEAD_LETTER_ATTEMPTS: u32 = 5;

/// Most messages a worker sends the plugin executor at once. Each call still has its own
/// deadline, outcome and emits; the batch shares one hop to the executor and back (~9 us), a
/// wake-up of each side. The pool batches only when more messages are queued than workers are idle, and a call
/// is sized to its deadline (`wasm::pace`), so the cap matters only for fast plugins: 64 left
/// B3 at 0.44-0.51 of a raw consumer, its plugin threads (before the shared executor) and the
/// pool's task switching ~17,000 times each per million messages; 256 gives 0.48-0.59
/// (alternated, 5 rounds each).
const MAX_BATCH: usize = 256;

/// A worker's handler: its plugin instance (its calls run on the shared executor), the
/// tenant's shared parts.
pub struct PluginHandler {
    /// This worker's plugin instance; made on the first call (and again after a call was
    /// lost), so a failure is one retriable message, not a dead pool.
    worker: Option<PluginWorker>,
    /// `burrow-plugin-TENANT-N`: names the worker in logs.
    worker_name: Arc<str>,
    shared: Arc<Shared>,
    /// A canary's candidate has an instance of its own, made on its first message, with the
    /// candidate's slot it serves.
    candidate: Option<(Option<PluginWorker>, Arc<DeploymentSlot>)>,
}

impl PluginHandler {
    /// The handler of pool worker `worker` of the tenant.
    pub(super) fn new(shared: Arc<Shared>, worker: usize) -> Self {
        Self {
            worker: None,
            worker_name: format!("burrow-plugin-{}-{worker}", shared.name).into(),
            shared,
            candidate: None,
        }
    }

    /// Runs the plugin on the executor, once per message of `batch`, and awaits the results,
    /// which come at the latest at each call's deadline: guest code never runs on the async
    /// runtime nor on tokio's shared blocking pool, and a blocked plugin holds no thread.
    async fn call(&mut self, batch: &[Attempt]) -> Result<Vec<CallResult>, ProcessError> {
        let rollout = self.shared.rollout.load_full();
        if let Some(canary) = rollout.as_deref().and_then(RolloutSlot::running_canary) {
            return self.call_canary(canary, batch).await;
        }
        // A canary that ended leaves its candidate's instance idle: drop it.
        self.candidate = None;
        let slot = Arc::clone(&self.shared.slot);
        let results = self.call_version(Side::Live, &slot, batch.to_vec()).await?;
        if let Some(RolloutSlot::Shadow(observer)) = rollout.as_deref() {
            observer.offer(
                batch.to_vec(),
                results.iter().map(|r| r.result.clone()).collect(),
            );
        }
        Ok(results)
    }

    /// A running canary's batch: each message to the version its key hashes to, each
    /// version's calls counted for its rules, the results back in the batch's order.
    async fn call_canary(
        &mut self,
        canary: &CanarySlot,
        batch: &[Attempt],
    ) -> Result<Vec<CallResult>, ProcessError> {
        let sides: Vec<Side> = batch.iter().map(|a| canary.side(&a.message)).collect();
        let (mut live, mut candidate) = (Vec::new(), Vec::new());
        for (attempt, side) in batch.iter().zip(&sides) {
            match side {
                Side::Live => live.push(attempt.clone()),
                Side::Candidate => candidate.push(attempt.clone()),
            }
        }
        let mut live = self
            .counted_call(canary, Side::Live, live)
            .await?
            .into_iter();
        let mut candidate = self
            .counted_call(canary, Side::Candidate, candidate)
            .await?
            .into_iter();
        sides
            .iter()
            .map(|side| {
                let next = match side {
                    Side::Live => live.next(),
                    Side::Candidate => candidate.next(),
                };
                next.ok_or_else(|| ProcessError::retriable("the plugin call lost its results"))
            })
            .collect()
    }

    /// [`call_version`](Self::call_version), timed and counted in the canary's tally of `side`.
    async fn counted_call(
        &mut self,
        canary: &CanarySlot,
        side: Side,
        batch: Vec<Attempt>,
    ) -> Result<Vec<CallResult>, ProcessError> {
        let first = batch.iter().filter(|a| a.attempt == 1).count();
        let slot = match side {
            Side::Live => Arc::clone(&self.shared.slot),
            Side::Candidate => Arc::clone(&canary.slot),
        };
        let started = Instant::now();
        let results = self.call_version(side, &slot, batch).await?;
        canary.count_calls(side, first, &results, started.elapsed());
        Ok(results)
    }

    /// Runs `batch` on the instance of `version` — the live deployment, or a canary's
    /// candidate — whose deployments are in `slot`, made if need be.
    async fn call_version(
        &mut self,
        version: Side,
        slot: &Arc<DeploymentSlot>,
        batch: Vec<Attempt>,
    ) -> Result<Vec<CallResult>, ProcessError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let held = match version {
            Side::Live => &mut self.worker,
            Side::Candidate => {
                // The instance of another canary's candidate (the rollout changed) is dropped.
                let ours = self
                    .candidate
                    .as_ref()
                    .is_some_and(|(_, of)| Arc::ptr_eq(of, slot));
                if !ours {
                    self.candidate = Some((None, Arc::clone(slot)));
                }
                match &mut self.candidate {
                    Some((worker, _)) => worker,
                    None => return Err(ProcessError::retriable("no canary")),
                }
            }
        };
        // Named and pointed at its slot only when made: not work for every batch.
        let worker = match held.take() {
            Some(worker) => worker,
            None => {
                let name: Arc<str> = match version {
                    Side::Live => Arc::clone(&self.worker_name),
                    Side::Candidate => format!("{}-canary", self.worker_name).into(),
                };
                PluginWorker::new(name, Arc::clone(slot))
            }
        };
        // The records are written into the batch's frame on the executor, not here on the
        // pool's task, which every message of the tenant goes through: their only copy before
        // the guest's own.
        let tenant = Arc::clone(&self.shared.name);
        let prepare: wasm::Prepare = Box::new(move || write_batch(&tenant, &batch));
        match worker.call_prepared(prepare).await {
            Ok(results) => {
                *held = Some(worker);
                Ok(results)
            }
            // The call was lost; the next call starts on a fresh instance.
            Err(e) => Err(ProcessError::retriable(e)),
        }
    }

    /// What one call's result means before its emits are produced: the records to produce
    /// (on `commit`) with the version that emitted them, or the message's error,
    /// [tagged](Answered) with the version that answered.
    fn decide(
        &self,
        message: &Message,
        result: CallResult,
    ) -> Result<(Vec<OutRecord>, PluginId), ProcessError> {
        let decision = match result.result {
            Ok(processed) => match processed.outcome {
                wasm::Outcome::Commit => self.check_emits(processed.emitted),
                wasm::Outcome::Retry(hint) => Err(self.retry(hint)),
                wasm::Outcome::Fail(reason) => Err(ProcessError::permanent(reason)),
            },
            Err(error) => Err(self.on_call_error(message, error)),
        };
        match decision {
            Ok(records) => Ok((records, result.plugin)),
            Err(error) => Err(Answered::tag(error, result.plugin)),
        }
    }

    /// The version a failure's dead letter names: the one that answered the failing call. Not
    /// this worker's last call: a permanent failure may be handled by any idle worker, which may
    /// have last called before a swap, or the other version of a canary. A failure no plugin
    /// answered (its call was lost) names the version live now.
    fn answered_by(&self, failure: &Failure) -> PluginId {
        match failure.error.downcast_ref::<Answered>() {
            Some(answered) => answered.plugin.clone(),
            None => self.shared.slot.current().plugin().id().clone(),
        }
    }

    /// The records a committing plugin emitted, if every one goes to an allowed topic.
    fn check_emits(
        &self,
        emitted: Vec<wasm::OutputRecord>,
    ) -> Result<Vec<OutRecord>, ProcessError> {
        if let Some(why) = super::refused_emit(&self.shared.output_topics, &emitted) {
            return Err(ProcessError::permanent(why));
        }
        let records: Vec<OutRecord> = emitted.into_iter().map(to_out_record).collect();
        // In a transaction, a record the producer refuses would abort every transaction it
        // rode in, for ever: refuse it here, where it fails only its own message.
        let max = self.shared.max_record_bytes;
        if self.shared.exactly_once
            && let Some(big) = records.iter().find(|r| r.size() > max)
        {
            return Err(ProcessError::permanent(format!(
                "plugin emitted a record of {} bytes to {:?}; the producer's limit is {max} bytes",
                big.size(),
                big.topic
            )));
        }
        Ok(records)
    }

    /// Counts and logs a failed call (a trap, a timeout...) with the message it failed on;
    /// the pool retries it, on a fresh instance.
    fn on_call_error(&self, message: &Message, error: CallError) -> ProcessError {
        let metrics = &self.shared.metrics;
        match &error {
            CallError::Timeout { .. } => metrics.timeouts.inc(),
            CallError::MemoryExceeded { .. } => metrics.memory_exceeded.inc(),
            CallError::Trap { .. } | CallError::FuelExhausted { .. } => metrics.traps.inc(),
            CallError::Instantiate(_) => metrics.instantiate_failures.inc(),
            // Messages past 4 GiB together: nothing of the plugin's.
            CallError::Frame(_) => {}
        }
        tracing::warn!(
            tenant = %self.shared.name, topic = %message.topic, partition = message.partition,
            offset = message.offset, error = %error, "plugin call failed; the instance is replaced"
        );
        ProcessError::retriable(error)
    }

    /// Dead-letters `message`: it is done once the broker has acknowledged its dead letter,
    /// and the worker is free meanwhile ([`FailureAction::MarkDoneWhen`]). A dead letter
    /// refused for its size is replaced by a reference record (see
    /// [`producer::reference_record`]); one that still fails after [`DEAD_LETTER_ATTEMPTS`]
    /// halts the tenant rather than lose the message.
    async fn dead_letter(&mut self, message: &Message, failure: &Failure) -> FailureAction {
        let Some(topic) = &self.shared.dead_letter_topic else {
            return FailureAction::Halt(
                "on_failure is dead-letter but no dead_letter_topic".into(),
            );
        };
        let plugin = self.answered_by(failure);
        let error = failure.error.to_string();
        let version = plugin.version.to_string();
        let failure = producer::Failure {
            tenant: &self.shared.name,
            topic: &message.topic,
            partition: message.partition,
            offset: message.offset,
            key: message.key.as_deref(),
            value: message.payload.as_deref(),
            headers: &message.headers,
            error: &error,
            attempts: failure.attempts,
            plugin_name: &plugin.name,
            plugin_version: &version,
        };
        let record = producer::dead_letter(topic, &failure);
        let shared = &*self.shared;
        if shared.exactly_once {
            // Produced by the pool, in the transaction that commits the message; one too large
            // for the producer would abort every transaction, so its reference goes instead.
            let record = if record.size() > shared.max_record_bytes {
                let why = format!(
                    "the dead letter's {} bytes are over the producer's limit of {} bytes",
                    record.size(),
                    shared.max_record_bytes
                );
                producer::reference(&failure).because(record, &why)
            } else {
                record
            };
            shared.metrics.dead_lettered.inc();
            return FailureAction::MarkDoneWith(vec![record]);
        }
        let reference = producer::reference(&failure);
        let source = Source::of(message);
        let shared = Arc::clone(&self.shared);
        let bytes = record.size();
        let first = shared.producer.produce(std::slice::from_ref(&record));
        FailureAction::MarkDoneWhen(
            Pending::new(async move {
                let result = match send_dead_letter(&shared, &source, &record, first).await {
                    Err(e) if e.is_too_large() => {
                        let why = e.to_string();
                        tracing::warn!(
                            tenant = %shared.name, message = %source, error = %why,
                            "dead letter too large; writing a reference record instead"
                        );
                        let reference = reference.because(record, &why);
                        let first = shared.producer.produce(std::slice::from_ref(&reference));
                        send_dead_letter(&shared, &source, &reference, first).await
                    }
                    other => other,
                };
                // Marking it done without its dead letter would lose it; the pool halts
                // instead, the message uncommitted.
                result
                    .map(|()| shared.metrics.dead_lettered.inc())
                    .map_err(|e| {
                        ProcessError::permanent(format!("cannot dead-letter {source}: {e}"))
                    })
            })
            .holding(bytes),
        )
    }
}

/// Where a message came from, as the dead-letter logs say it.
struct Source {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl Source {
    fn of(message: &Message) -> Self {
        Self {
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            offset: message.offset,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// Waits for a dead letter `record` for the message at `source`, its first try `first` (already
/// handed to the producer), trying again up to [`DEAD_LETTER_ATTEMPTS`] times in all with a
/// doubling pause; a record refused for its size is not retried (it would be refused again).
async fn send_dead_letter(
    shared: &Shared,
    source: &Source,
    record: &OutRecord,
    first: producer::Sending,
) -> Result<(), producer::ProduceError> {
    let mut attempt = 0;
    let mut sending = first;
    loop {
        let error = match sending.await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_too_large() => return Err(e),
            Err(e) => e,
        };
        attempt += 1;
        tracing::warn!(
            tenant = %shared.name, message = %source,
            error = %error, attempt, "dead letter not acknowledged"
        );
        if attempt >= DEAD_LETTER_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
        sending = shared.producer.produce(std::slice::from_ref(record));
    }
}

/// A message's error with the plugin version whose answer caused it. Reads as the error alone
/// (the pool logs it, the dead letter's `burrow.error` header carries it); the version rides
/// along to whichever worker handles the failure.
#[derive(Debug)]
struct Answered {
    plugin: PluginId,
    error: BoxError,
}

impl Answered {
    fn tag(error: ProcessError, plugin: PluginId) -> ProcessError {
        match error {
            ProcessError::Retriable { error, retry_after } => ProcessError::Retriable {
                error: Box::new(Self { plugin, error }),
                retry_after,
            },
            ProcessError::Permanent { error } => ProcessError::Permanent {
                error: Box::new(Self { plugin, error }),
            },
        }
    }
}

impl fmt::Display for Answered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Answered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Handler for PluginHandler {
    async fn process(&mut self, message: &Message, attempt: u32) -> Result<(), ProcessError> {
        let batch = [Attempt {
            message: Arc::new(message.clone()),
            attempt,
        }];
        match self.process_batch(&batch).await.pop() {
            Some(Processed::Now(result)) => result,
            Some(Processed::Later(pending)) => pending.await,
            // Records for a transaction travel only through `process_batch`, which the pool
            // calls: one message alone has nowhere to put them.
            Some(Processed::Output(_)) => Err(ProcessError::permanent(
                "exactly-once output needs the batch entry",
            )),
            None => Err(ProcessError::retriable("no result")),
        }
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// One hop to the plugin executor for the batch. The emits of each message that committed
    /// are produced at once, and its result is left [pending](Pending) on their acks: the
    /// worker goes on to its next batch meanwhile, and the message's offset waits for them.
    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        let results = match self.call(batch).await {
            Ok(results) if results.len() == batch.len() => results,
            Ok(_) => {
                return batch
                    .iter()
                    .map(|_| {
                        Err(ProcessError::retriable("the plugin call lost its results")).into()
                    })
                    .collect();
            }
            Err(e) => {
                let why = e.to_string();
                return batch
                    .iter()
                    .map(|_| Err(ProcessError::retriable(why.clone())).into())
                    .collect();
            }
        };
        batch
            .iter()
            .zip(results)
            .map(|(item, result)| match self.decide(&item.message, result) {
                Ok((records, _)) if records.is_empty() => Processed::Now(Ok(())),
                // Produced by the pool, in the transaction that commits the message.
                Ok((records, _)) if self.shared.exactly_once => {
                    self.shared.metrics.emitted.inc_by(records.len() as u64);
                    Processed::Output(records)
                }
                Ok((records, plugin)) => {
                    Processed::Later(emit(Arc::clone(&self.shared), records, plugin))
                }
                Err(e) => Processed::Now(Err(e)),
            })
            .collect()
    }

    async fn on_permanent_failure(
        &mut self,
        message: &Message,
        failure: &Failure,
    ) -> FailureAction {
        // The pool has logged the failure itself; this says what the policy does with it.
        tracing::debug!(
            tenant = %self.shared.name, topic = %message.topic, partition = message.partition,
            offset = message.offset, attempts = failure.attempts,
            policy = ?self.shared.on_failure, "applying the failure policy"
        );
        let rollout = self.shared.rollout.load();
        if let Some(canary) = rollout.as_deref().and_then(RolloutSlot::running_canary) {
            let candidate = canary.slot.current();
            let side = if self.answered_by(failure) == *candidate.plugin().id() {
                Side::Candidate
            } else {
                Side::Live
            };
            canary.count_failure(side);
        }
        match self.shared.on_failure {
            FailurePolicy::DeadLetter => self.dead_letter(message, failure).await,
            FailurePolicy::Skip => FailureAction::MarkDone,
            FailurePolicy::Halt => FailureAction::Halt(format!(
                "on_failure = \"halt\": {}/{}@{} failed: {}",
                message.topic, message.partition, message.offset, failure.error
            )),
        }
    }
}

/// Produces a committed message's emitted records; resolves when the broker has acknowledged
/// them all. A record not acknowledged fails the message retriably: it runs again and emits
/// again (at-least-once for outputs too). Until then the records count against the tenant's
/// `max_buffered_bytes`.
fn emit(shared: Arc<Shared>, records: Vec<OutRecord>, plugin: PluginId) -> Pending {
    let bytes = records.iter().map(OutRecord::size).sum();
    let count = records.len() as u64;
    let sending = shared.producer.produce(&records);
    drop(records);
    Pending::new(async move {
        sending
            .await
            .map_err(|e| Answered::tag(ProcessError::retriable(e), plugin))?;
        shared.metrics.emitted.inc_by(count);
        Ok(())
    })
    .holding(bytes)
}

impl PluginHandler {
    fn retry(&self, hint_ms: Option<u64>) -> ProcessError {
        let reason = "plugin asked to retry";
        match hint_ms {
            Some(ms) => ProcessError::retry_after(reason, Duration::from_millis(ms)),
            None => ProcessError::retriable(reason),
        }
    }
}

/// `batch` as the plugin receives it: its records written into one frame.
fn write_batch(tenant: &Arc<str>, batch: &[Attempt]) -> wasm::Batch {
    let bytes = batch.iter().map(|a| a.message.weight()).sum();
    let mut writer = wasm::BatchWriter::new(batch.len(), bytes);
    for Attempt { message, attempt } in batch {
        let context = CallContext {
            tenant: Arc::clone(tenant),
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            offset: message.offset,
        };
        writer.push(context, &fields(message, *attempt), header_pairs(message));
    }
    writer.finish()
}

/// A Kafka message's fields as the frame takes them: a null value is empty, as the contract
/// has always given it.
fn fields(message: &Message, attempt: u32) -> wasm::Fields<'_> {
    wasm::Fields {
        topic: &message.topic,
        partition: message.partition,
        offset: message.offset,
        key: message.key.as_deref(),
        value: message.payload.as_deref().unwrap_or_default(),
        timestamp: message.timestamp_ms,
        attempt,
    }
}

/// Its headers as `(name, value)`; a null header value is empty.
fn header_pairs(message: &Message) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
    message
        .headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_deref().unwrap_or_default()))
}

/// The plugin's view of a Kafka message, owned: for the tools that call a plugin one message
/// at a time (`burrow replay`, a shadow candidate).
pub fn to_plugin_message(message: &Message, attempt: u32) -> wasm::Message {
    wasm::Message {
        topic: message.topic.to_string(),
        partition: message.partition,
        offset: message.offset,
        key: message.key.clone(),
        value: message.payload.clone().unwrap_or_default(),
        headers: message
            .headers
            .iter()
            .map(|h| wasm::Header {
                name: h.key.clone(),
                value: h.value.clone().unwrap_or_default(),
            })
            .collect(),
        timestamp: message.timestamp_ms,
        attempt,
    }
}

fn to_out_record(record: wasm::OutputRecord) -> OutRecord {
    OutRecord {
        topic: record.topic,
        key: record.key,
        value: Some(record.value),
        headers: record
            .headers
            .into_iter()
            .map(|h| crate::kafka::Header {
                key: h.name,
                value: Some(h.value),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use prometheus::Registry;

    use super::*;
    use crate::kafka::Header;
    use crate::kafka::producer::Producer;
    use crate::wasm::{Deployment, DeploymentSlot, Limits, Runtime, RuntimeConfig};

    fn plugin_dir() -> PathBuf {
        std::env::var_os("BURROW_PLUGIN_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
            PathBuf::from,
        )
    }

    /// A tenant `t` on the `chaos` plugin (built by `make plugins`) with `limits`; its producer
    /// points nowhere, as these calls emit nothing.
    fn shared(limits: Limits) -> anyhow::Result<Arc<Shared>> {
        parts(limits).map(Arc::new)
    }

    /// [`shared`]'s parts, for a test to change before sharing them.
    fn parts(limits: Limits) -> anyhow::Result<Shared> {
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let plugin = runtime.load_file(&plugin_dir().join("chaos.wasm"))?;
        Ok(Shared {
            name: "t".into(),
            slot: Arc::new(DeploymentSlot::new(
                Deployment::new(plugin).with_limits(limits),
            )),
            producer: Producer::new("127.0.0.1:9", &BTreeMap::new())?,
            output_topics: Vec::new(),
            dead_letter_topic: None,
            on_failure: FailurePolicy::Skip,
            metrics: crate::tenant::TenantMetrics::register(&Registry::new(), "t")?,
            rollout: arc_swap::ArcSwapOption::empty(),
            exactly_once: false,
            max_record_bytes: 1_000_000,
        })
    }

    fn chaos(action: &str) -> Message {
        let mut message = Message::new("in", 0, 7);
        message.headers.push(Header {
            key: "burrow-action".into(),
            value: Some(action.as_bytes().to_vec()),
        });
        message
    }

    /// A plugin blocked in a host call past its deadline is a retriable failure, counted as a
    /// timeout; the same handler then processes the next message, on a fresh instance.
    #[tokio::test]
    async fn a_blocked_call_is_a_counted_retriable_timeout_and_the_worker_goes_on()
    -> anyhow::Result<()> {
        let shared = shared(Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        })?;
        let mut handler = PluginHandler::new(Arc::clone(&shared), 3);
        let blocked = tokio::time::timeout(
            Duration::from_secs(30),
            handler.process(&chaos("block:60000"), 1),
        )
        .await?;
        assert!(
            matches!(&blocked, Err(ProcessError::Retriable { error, .. })
                if error.to_string().contains("deadline")),
            "{blocked:?}"
        );
        assert_eq!(shared.metrics.timeouts.get(), 1);
        let next = handler.process(&chaos("commit"), 1).await;
        assert!(next.is_ok(), "{next:?}");
        assert_eq!(
            handler.worker.as_ref().map(PluginWorker::name),
            Some("burrow-plugin-t-3")
        );
        Ok(())
    }

    /// A permanent failure names the version that answered it, whichever worker handles it:
    /// here a worker that never called, after a swap to another plugin.
    #[tokio::test]
    async fn a_failure_names_the_version_that_answered_not_the_handling_worker()
    -> anyhow::Result<()> {
        let shared = shared(Limits::default())?;
        let mut caller = PluginHandler::new(Arc::clone(&shared), 0);
        let error = match caller.process(&chaos("fail"), 1).await {
            Err(ProcessError::Permanent { error }) => error,
            other => anyhow::bail!("expected a permanent failure, got {other:?}"),
        };
        assert_eq!(
            error.to_string(),
            "chaos: asked to fail",
            "the tag must not change the error's text"
        );
        let failure = |error| Failure {
            error,
            attempts: 1,
            non_retriable: true,
        };
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let next = runtime.load_file(&plugin_dir().join("passthrough.wasm"))?;
        shared.slot.swap(Deployment::new(next));
        let other_worker = PluginHandler::new(Arc::clone(&shared), 1);
        assert_eq!(&*other_worker.answered_by(&failure(error)).name, "chaos");
        let unanswered = failure("the plugin call lost its results".into());
        assert_eq!(&*other_worker.answered_by(&unanswered).name, "passthrough");
        Ok(())
    }

    /// With `delivery = "exactly-once"`, a committing message's emits go to the pool, for the
    /// transaction that commits it, not to the producer; an emit over the producer's record
    /// limit fails its own message, naming the sizes, instead of aborting every transaction it
    /// would ride in.
    #[tokio::test]
    async fn exactly_once_emits_go_to_the_transaction_and_an_oversized_one_fails_its_message()
    -> anyhow::Result<()> {
        let mut parts = parts(Limits::default())?;
        parts.exactly_once = true;
        parts.max_record_bytes = 64;
        parts.output_topics = vec!["out".into()];
        let mut handler = PluginHandler::new(Arc::new(parts), 0);
        let mut small = chaos("emit:out");
        small.payload = Some(b"{}".to_vec());
        let mut big = chaos("emit:out");
        big.offset = 8;
        big.payload = Some(vec![b'x'; 1000]);
        let batch = [small, big].map(|message| Attempt {
            message: Arc::new(message),
            attempt: 1,
        });
        let results = handler.process_batch(&batch).await;
        assert!(
            matches!(&results[0], Processed::Output(records)
                if records.len() == 1 && records[0].topic == "out"),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(&results[1], Processed::Now(Err(ProcessError::Permanent { error }))
                if error.to_string().contains("the producer's limit is 64 bytes")),
            "{:?}",
            results[1]
        );
        Ok(())
    }

    /// With `delivery = "exactly-once"`, a dead letter goes to the pool with the message, for
    /// the transaction that commits it; one over the producer's record limit is replaced by its
    /// reference record, which names why.
    #[tokio::test]
    async fn exactly_once_dead_letters_go_to_the_transaction() -> anyhow::Result<()> {
        let failure = Failure {
            error: "bad".into(),
            attempts: 1,
            non_retriable: true,
        };
        for (max, truncated) in [(1_000_000, false), (600, true)] {
            let mut parts = parts(Limits::default())?;
            parts.exactly_once = true;
            parts.max_record_bytes = max;
            parts.on_failure = FailurePolicy::DeadLetter;
            parts.dead_letter_topic = Some("dlq".into());
            let mut handler = PluginHandler::new(Arc::new(parts), 0);
            let mut message = chaos("fail");
            message.payload = Some(vec![b'x'; 1000]);
            let action = handler.on_permanent_failure(&message, &failure).await;
            let FailureAction::MarkDoneWith(records) = action else {
                anyhow::bail!("expected the dead letter for the transaction, got {action:?}");
            };
            assert_eq!(records.len(), 1);
            let record = &records[0];
            assert_eq!(record.topic, "dlq");
            let reference = record
                .headers
                .iter()
                .any(|h| h.key == producer::headers::TRUNCATED);
            assert_eq!(reference, truncated, "max {max}: {record:?}");
            assert_eq!(record.value.is_some(), !truncated, "max {max}");
        }
        Ok(())
    }
}
