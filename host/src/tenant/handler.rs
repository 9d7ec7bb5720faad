//! One pool worker of a tenant: runs each message through the tenant's plugin and turns the
//! plugin's outcome into the pool's decision.
//!
//! | plugin says                   | the pool does                                            |
//! |-------------------------------|----------------------------------------------------------|
//! | `commit`                      | produce emitted records, wait for their acks, mark done  |
//! | `commit`, emit to a bad topic | permanent failure, naming the topic                      |
//! | `retry(hint)`                 | retry after the hint (capped) or the backoff             |
//! | `fail(reason)`                | permanent failure with the reason                        |
//! | trap, deadline, memory cap    | retriable failure; the instance is replaced              |
//!
//! Permanent failures then follow the tenant's policy: dead-letter (produce and wait for the
//! ack before the offset may advance), skip, or halt.

use std::sync::Arc;
use std::time::Duration;

use crate::config::FailurePolicy;
use crate::kafka::Message;
use crate::kafka::producer::{self, OutRecord};
use crate::pool::{Failure, FailureAction, Handler, ProcessError};
use crate::wasm::{self, CallContext, CallError, CallResult, PluginId, PluginInstance};

use super::Shared;

/// How often a dead letter is tried before the tenant halts rather than lose the message.
const DEAD_LETTER_ATTEMPTS: u32 = 5;

/// A worker's handler: its own plugin instance, the tenant's shared parts.
pub struct PluginHandler {
    /// `None` only while a call runs on a blocking thread (the instance travels with it).
    instance: Option<PluginInstance>,
    shared: Arc<Shared>,
    /// The version that answered the last call, for the dead letter's headers.
    last_plugin: Option<PluginId>,
}

impl PluginHandler {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            instance: Some(PluginInstance::new(Arc::clone(&shared.slot))),
            shared,
            last_plugin: None,
        }
    }

    /// Runs the plugin on a blocking thread: wasmtime calls are synchronous and may take up to
    /// the deadline, which must not stall the async workers.
    async fn call(&mut self, message: &Message, attempt: u32) -> Result<CallResult, ProcessError> {
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => PluginInstance::new(Arc::clone(&self.shared.slot)),
        };
        let input = to_plugin_message(message, attempt);
        let context = CallContext {
            tenant: Arc::clone(&self.shared.name),
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            offset: message.offset,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = instance.call(&context, &input);
            (instance, result)
        })
        .await;
        match joined {
            Ok((instance, result)) => {
                self.instance = Some(instance);
                self.last_plugin = Some(result.plugin.clone());
                Ok(result)
            }
            // The instance went down with the thread; the next call starts a fresh one.
            Err(e) => Err(ProcessError::retriable(format!("plugin call aborted: {e}"))),
        }
    }

    async fn on_commit(&mut self, emitted: Vec<wasm::OutputRecord>) -> Result<(), ProcessError> {
        if let Some(bad) = emitted
            .iter()
            .find(|r| !self.shared.output_topics.contains(&r.topic))
        {
            return Err(ProcessError::permanent(format!(
                "plugin emitted to topic {:?}, which is not in this tenant's output_topics {:?}",
                bad.topic, self.shared.output_topics
            )));
        }
        if emitted.is_empty() {
            return Ok(());
        }
        let records: Vec<OutRecord> = emitted.into_iter().map(to_out_record).collect();
        self.shared
            .producer
            .send_all(&records)
            .await
            // The message will run again and emit again: at-least-once for outputs too.
            .map_err(ProcessError::retriable)?;
        self.shared.metrics.emitted.inc_by(records.len() as u64);
        Ok(())
    }

    fn on_call_error(&self, error: CallError) -> ProcessError {
        let metrics = &self.shared.metrics;
        match &error {
            CallError::Timeout { .. } => metrics.timeouts.inc(),
            CallError::MemoryExceeded { .. } => metrics.memory_exceeded.inc(),
            CallError::Trap { .. } | CallError::FuelExhausted { .. } => metrics.traps.inc(),
            CallError::Instantiate(_) => metrics.instantiate_failures.inc(),
        }
        ProcessError::retriable(error)
    }

    /// Dead-letters `message`, waiting for the ack: then it is done. A dead letter refused for
    /// its size is replaced by a reference record (see [`producer::reference_record`]); one that
    /// still fails after [`DEAD_LETTER_ATTEMPTS`] halts the tenant rather than lose the message.
    async fn dead_letter(&mut self, message: &Message, failure: &Failure) -> FailureAction {
        let Some(topic) = &self.shared.dead_letter_topic else {
            return FailureAction::Halt(
                "on_failure is dead-letter but no dead_letter_topic".into(),
            );
        };
        let plugin = self
            .last_plugin
            .clone()
            .unwrap_or_else(|| self.shared.slot.current().plugin().id().clone());
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
        let result = match send_dead_letter(shared, message, &record).await {
            Err(e) if e.is_too_large() => {
                let why = e.to_string();
                tracing::warn!(
                    tenant = %shared.name, topic = %message.topic,
                    partition = message.partition, offset = message.offset,
                    error = %why, "dead letter too large; writing a reference record instead"
                );
                let reference = producer::reference_record(topic, &failure, &why);
                send_dead_letter(shared, message, &reference).await
            }
            other => other,
        };
        match result {
            Ok(()) => {
                shared.metrics.dead_lettered.inc();
                FailureAction::MarkDone
            }
            // Marking it done without its dead letter would lose it; halting keeps it uncommitted.
            Err(e) => FailureAction::Halt(format!(
                "cannot dead-letter {}/{}@{}: {e}",
                message.topic, message.partition, message.offset
            )),
        }
    }
}

/// Sends a dead letter `record` for `message`, retrying up to [`DEAD_LETTER_ATTEMPTS`] times
/// with a doubling pause; a record refused for its size is not retried (it would be refused
/// again). Takes the tenant's shared parts, not the handler, which is not `Sync`.
async fn send_dead_letter(
    shared: &Shared,
    message: &Message,
    record: &OutRecord,
) -> Result<(), producer::ProduceError> {
    let mut attempt = 0;
    loop {
        let error = match shared.producer.send(record).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_too_large() => return Err(e),
            Err(e) => e,
        };
        attempt += 1;
        tracing::warn!(
            tenant = %shared.name, topic = %message.topic,
            partition = message.partition, offset = message.offset,
            error = %error, attempt, "dead letter not acknowledged"
        );
        if attempt >= DEAD_LETTER_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
    }
}

impl Handler for PluginHandler {
    async fn process(&mut self, message: &Message, attempt: u32) -> Result<(), ProcessError> {
        let result = self.call(message, attempt).await?;
        match result.result {
            Ok(processed) => match processed.outcome {
                wasm::Outcome::Commit => self.on_commit(processed.emitted).await,
                wasm::Outcome::Retry(hint) => Err(self.retry(hint)),
                wasm::Outcome::Fail(reason) => Err(ProcessError::permanent(reason)),
            },
            Err(error) => Err(self.on_call_error(error)),
        }
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

impl PluginHandler {
    fn retry(&self, hint_ms: Option<u64>) -> ProcessError {
        let reason = "plugin asked to retry";
        match hint_ms {
            Some(ms) => ProcessError::retry_after(reason, Duration::from_millis(ms)),
            None => ProcessError::retriable(reason),
        }
    }
}

/// The plugin's view of a Kafka message. One copy of key, value and headers: the plugin gets
/// its own, as the component model requires.
fn to_plugin_message(message: &Message, attempt: u32) -> wasm::Message {
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
