//! What one plugin instance carries besides its wasm state: its sandbox, its limits, its
//! settings, and the scratch state of the call in progress.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::OutputRecord;
use super::call::CallContext;
use super::deployment::Deployment;
use super::limits::MemoryCap;
use super::plugin::PluginId;
use super::sandbox::{self, SandboxError};
use super::stdio::{Captured, CapturedOutput};

/// The data of one instance's `wasmtime::Store`.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    /// WASI's handles (streams, files) live here.
    table: ResourceTable,
    pub(super) limiter: MemoryCap,
    /// Who is speaking, for every log line the plugin causes.
    pub(super) plugin: PluginId,
    /// The deployment's settings, served by the `config` import; shared, never copied per call.
    pub(super) config: Arc<BTreeMap<String, String>>,
    /// The message in progress, for log lines; set by [`StoreState::begin_call`] (and within a
    /// batch by the guest's `begin`).
    pub(super) context: CallContext,
    /// The batch in progress (empty for a one-message call): each message's context.
    pub(super) batch: Vec<CallContext>,
    /// The index the guest's next `begin` must give.
    next: usize,
    /// Where the guest is in the batch, shared with the caller that enforces the deadline.
    pub(super) progress: Arc<Progress>,
    pub(super) emitted: Emitted,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

/// Which message of a batch the guest is on, and since when: a batch call's deadline is its
/// current message's. Written by the guest's `begin` (inside the store), read by the caller
/// while the call runs.
pub(crate) struct Progress {
    base: Instant,
    /// How many messages have begun in this store's life: tells a new message from the same.
    began: AtomicU64,
    /// When the last one began, in microseconds since `base`.
    since_micros: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            began: AtomicU64::new(0),
            since_micros: AtomicU64::new(0),
        }
    }

    /// A message starts now.
    pub(crate) fn begin(&self) {
        let micros = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.since_micros.store(micros, Ordering::Release);
        self.began.fetch_add(1, Ordering::AcqRel);
    }

    /// How many messages have begun, and when the last one did.
    pub(crate) fn current(&self) -> (u64, Instant) {
        let began = self.began.load(Ordering::Acquire);
        let since = self.since_micros.load(Ordering::Acquire);
        (began, self.base + Duration::from_micros(since))
    }
}

/// Records a plugin emitted for the message in progress, and what they weigh.
pub(super) struct Emitted {
    pub(super) records: Vec<OutputRecord>,
    /// Within a batch, the records of the messages before the current one, per message.
    pub(super) finished: Vec<Vec<OutputRecord>>,
    pub(super) bytes: u64,
    /// The most bytes one call (a whole batch) may emit: the memory cap, since the records sit
    /// in host memory until their messages commit and a plugin must not be able to use more
    /// there than in its own memory — per worker, not per message of a batch.
    pub(super) byte_limit: u64,
}

/// What one call left behind besides its result.
pub(crate) struct CallTrace {
    /// Per message (one for a one-message call), the records it emitted.
    pub(crate) emitted: Vec<Vec<OutputRecord>>,
    pub(crate) memory_cap_hit: bool,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
}

impl StoreState {
    pub(crate) fn new(deployment: &Deployment) -> Result<Self, SandboxError> {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let wasi = sandbox::wasi_ctx(deployment.capabilities(), &stdout, &stderr)?;
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap::new(deployment.limits().memory),
            plugin: deployment.plugin().id().clone(),
            config: deployment.shared_config(),
            context: CallContext::default(),
            batch: Vec::new(),
            next: 0,
            progress: Arc::new(Progress::new()),
            emitted: Emitted {
                records: Vec::new(),
                finished: Vec::new(),
                bytes: 0,
                byte_limit: deployment.limits().memory,
            },
            stdout,
            stderr,
        })
    }

    pub(crate) fn begin_call(&mut self, context: &CallContext) {
        self.context = context.clone();
        self.batch.clear();
        self.next = 0;
        self.emitted.records.clear();
        self.emitted.finished.clear();
        self.emitted.bytes = 0;
        self.limiter.take_hit();
        self.progress.begin();
    }

    /// Before a batch call: the guest's `begin(i)` moves on to message `i` of `contexts`.
    pub(crate) fn begin_batch(&mut self, contexts: Vec<CallContext>) {
        self.begin_call(contexts.first().unwrap_or(&CallContext::default()));
        self.batch = contexts;
    }

    /// The guest's `begin(index)`: what it printed and emitted so far belongs to the message
    /// before; its deadline starts again. Refused outside a batch, or out of order (each
    /// message once, in order), so emits can never be given to the wrong message.
    pub(crate) fn begin_message(&mut self, index: u32) -> Result<(), String> {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        let Some(context) = self.batch.get(index) else {
            return Err(format!(
                "begin({index}) outside a batch of {} messages",
                self.batch.len()
            ));
        };
        if index != self.next {
            return Err(format!(
                "begin({index}) out of order: message {} is next",
                self.next
            ));
        }
        self.next += 1;
        if index > 0 {
            // Not `bytes`: the records of every message of the batch sit in host memory until
            // the batch returns, so the cap holds for the whole call (a batch over it runs
            // again one by one, each message under the cap alone).
            let records = std::mem::take(&mut self.emitted.records);
            self.emitted.finished.push(records);
            let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
            super::host::log_output(self, &stdout, &stderr);
        }
        self.context = context.clone();
        self.progress.begin();
        Ok(())
    }

    /// Collects what the call left behind and resets for the next one.
    pub(crate) fn end_call(&mut self) -> CallTrace {
        self.emitted.bytes = 0;
        let mut emitted = std::mem::take(&mut self.emitted.finished);
        emitted.push(std::mem::take(&mut self.emitted.records));
        self.batch.clear();
        CallTrace {
            emitted,
            memory_cap_hit: self.limiter.take_hit(),
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
