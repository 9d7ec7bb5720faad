//! The host functions a plugin imports (`burrow:plugin/host`): `log`, `emit`, `config`; and the
//! log lines for what a plugin printed. `log` and `emit` name their message by its index in
//! the call's batch.
//!
//! Every line a plugin causes is a `tracing` event with target `burrow::plugin`, carrying the
//! plugin's name and version and the tenant, topic, partition and offset of the message. The
//! plugin's own text in it is escaped and capped ([`plugin_text`]): one `log` call or one
//! output line is one host log line, whatever the plugin writes.

use super::bindings::{self, Level, OutputRecord};
use super::call::CallContext;
use super::stdio::Captured;
use super::store::StoreState;
use super::text::plugin_text;

/// The most records one message may emit (a call of a batch, this many per message). A plugin
/// that emits more is almost surely looping; the call traps rather than filling the host's
/// memory.
pub(crate) const MAX_EMITTED_RECORDS: usize = 10_000;

/// Emits a `tracing` event at a level known only at run time, with the plugin's context.
macro_rules! plugin_event {
    ($level:expr, $state:expr, $ctx:expr, $($fields:tt)*) => {{
        let state: &StoreState = $state;
        let (plugin, ctx): (_, &CallContext) = (&state.plugin, $ctx);
        macro_rules! at {
            ($mac:ident) => {
                tracing::$mac!(
                    target: "burrow::plugin",
                    plugin = %plugin.name,
                    version = %plugin.version,
                    tenant = %ctx.tenant,
                    topic = %ctx.topic,
                    partition = ctx.partition,
                    offset = ctx.offset,
                    $($fields)*
                )
            };
        }
        match $level {
            Level::Trace => at!(trace),
            Level::Debug => at!(debug),
            Level::Info => at!(info),
            Level::Warn => at!(warn),
            Level::Error => at!(error),
        }
    }};
}

impl bindings::Host for StoreState {
    fn log(&mut self, index: u32, level: Level, message: String) -> wasmtime::Result<()> {
        let index = self.message(index).map_err(wasmtime::Error::msg)?;
        let message = plugin_text(&message);
        plugin_event!(level, self, &self.contexts[index], "{message}");
        Ok(())
    }

    fn emit(&mut self, index: u32, record: OutputRecord) -> wasmtime::Result<()> {
        let index = self.message(index).map_err(wasmtime::Error::msg)?;
        let most = MAX_EMITTED_RECORDS.saturating_mul(self.contexts.len());
        let emitted = &mut self.emitted;
        if emitted.records.len() >= most {
            wasmtime::bail!("emitted more than {MAX_EMITTED_RECORDS} records per message");
        }
        emitted.bytes = emitted.bytes.saturating_add(record_size(&record));
        if emitted.bytes > emitted.byte_limit {
            wasmtime::bail!(
                "emitted more than {} bytes in one call (the memory cap)",
                emitted.byte_limit
            );
        }
        emitted.records.push((index, record));
        Ok(())
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl bindings::burrow::plugin::types::Host for StoreState {}

/// What a record weighs in host memory, near enough.
pub(crate) fn record_size(record: &OutputRecord) -> u64 {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len())
        .sum();
    let total = record.topic.len() + record.key.as_ref().map_or(0, Vec::len) + record.value.len();
    u64::try_from(total + headers).unwrap_or(u64::MAX)
}

/// Logs what the plugin wrote to stdout (at info) and stderr (at warn) during a call, one event
/// per line, under the context of the call's first message. The guest does not tell the host
/// which message of a batch it is on, so a batch's output lines also say how many messages the
/// call held (`messages`); `log` names its own message.
pub(crate) fn log_output(
    state: &StoreState,
    contexts: &[CallContext],
    stdout: &Captured,
    stderr: &Captured,
) {
    let Some(first) = contexts.first() else {
        return;
    };
    let messages = contexts.len();
    for (captured, stream, level) in [
        (stdout, "stdout", Level::Info),
        (stderr, "stderr", Level::Warn),
    ] {
        for line in captured.lines() {
            let line = plugin_text(line);
            plugin_event!(level, state, first, stream, messages, "{line}");
        }
        if captured.dropped > 0 {
            let dropped = captured.dropped;
            plugin_event!(
                Level::Warn,
                state,
                first,
                stream,
                messages,
                "({dropped} more bytes of {stream} dropped: over the per-call limit)"
            );
        }
    }
}
