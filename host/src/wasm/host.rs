//! The host functions a plugin imports (`burrow:plugin/host`): `log`, `emit`, `config`; and the
//! log lines for what a plugin printed.
//!
//! Every line a plugin causes is a `tracing` event with target `burrow::plugin`, carrying the
//! plugin's name and version and the tenant, topic, partition and offset of the message. The
//! plugin's own text in it is escaped and capped ([`plugin_text`]): one `log` call or one
//! output line is one host log line, whatever the plugin writes.

use super::bindings::{self, Level, OutputRecord};
use super::stdio::Captured;
use super::store::StoreState;
use super::text::plugin_text;

/// The most records one call may emit. A plugin that emits more is almost surely looping; the
/// call traps rather than filling the host's memory.
pub(crate) const MAX_EMITTED_RECORDS: usize = 10_000;

/// Emits a `tracing` event at a level known only at run time, with the plugin's context.
macro_rules! plugin_event {
    ($level:expr, $state:expr, $($fields:tt)*) => {{
        let state: &StoreState = $state;
        let (plugin, ctx) = (&state.plugin, &state.context);
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
    fn log(&mut self, level: Level, message: String) {
        let message = plugin_text(&message);
        plugin_event!(level, self, "{message}");
    }

    fn emit(&mut self, record: OutputRecord) -> wasmtime::Result<()> {
        let emitted = &mut self.emitted;
        if emitted.records.len() >= MAX_EMITTED_RECORDS {
            wasmtime::bail!("emitted more than {MAX_EMITTED_RECORDS} records in one call");
        }
        emitted.bytes = emitted.bytes.saturating_add(record_size(&record));
        if emitted.bytes > emitted.byte_limit {
            wasmtime::bail!(
                "emitted more than {} bytes in one call (the memory cap)",
                emitted.byte_limit
            );
        }
        emitted.records.push(record);
        Ok(())
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn begin(&mut self, index: u32) -> wasmtime::Result<()> {
        self.begin_message(index).map_err(wasmtime::Error::msg)
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

/// Logs what the plugin wrote to stdout (at info) and stderr (at warn), one event per line.
pub(crate) fn log_output(state: &StoreState, stdout: &Captured, stderr: &Captured) {
    for (captured, stream, level) in [
        (stdout, "stdout", Level::Info),
        (stderr, "stderr", Level::Warn),
    ] {
        for line in captured.lines() {
            let line = plugin_text(line);
            plugin_event!(level, state, stream, "{line}");
        }
        if captured.dropped > 0 {
            let dropped = captured.dropped;
            plugin_event!(
                Level::Warn,
                state,
                stream,
                "({dropped} more bytes of {stream} dropped: over the per-call limit)"
            );
        }
    }
}
