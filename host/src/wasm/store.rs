//! What one plugin instance carries besides its wasm state: its sandbox, its limits, its
//! settings, and the scratch state of the call in progress.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::OutputRecord;
use super::call::CallContext;
use super::deployment::Deployment;
use super::limits::{MemoryAccount, MemoryCap};
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
    /// The messages of the call in progress, which `log` and `emit` name by index: each log
    /// line carries its message's context.
    pub(super) contexts: Vec<CallContext>,
    pub(super) emitted: Emitted,
    /// When the guest code running now must stop (see [`StoreState::past_deadline`]).
    pub(super) deadline: Option<Instant>,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

/// Records a plugin emitted during the call in progress, each with its message's index, and
/// what they weigh.
pub(super) struct Emitted {
    pub(super) records: Vec<(usize, OutputRecord)>,
    pub(super) bytes: u64,
    /// The most bytes one call (a whole batch) may emit: the memory cap, since the records sit
    /// in host memory until their messages commit and a plugin must not be able to use more
    /// there than in its own memory — per worker, not per message of a batch.
    pub(super) byte_limit: u64,
}

/// What one call left behind besides its result.
pub(crate) struct CallTrace {
    /// The messages' contexts, handed back.
    pub(crate) contexts: Vec<CallContext>,
    /// Per message, the records it emitted.
    pub(crate) emitted: Vec<Vec<OutputRecord>>,
    pub(crate) memory_cap_hit: bool,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
}

impl StoreState {
    /// A store's state for an instance of `deployment`, its memory counted in `memory`.
    pub(crate) fn new(
        deployment: &Deployment,
        memory: MemoryAccount,
    ) -> Result<Self, SandboxError> {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let wasi = sandbox::wasi_ctx(deployment.capabilities(), &stdout, &stderr)?;
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap::new(deployment.limits().memory, memory),
            plugin: deployment.plugin().id().clone(),
            config: deployment.shared_config(),
            contexts: Vec::new(),
            emitted: Emitted {
                records: Vec::new(),
                bytes: 0,
                byte_limit: deployment.limits().memory,
            },
            deadline: None,
            stdout,
            stderr,
        })
    }

    /// Whether the call (or instantiation) running now is past its deadline: checked at every
    /// epoch tick, so guest *code* stops at its deadline even on an executor too busy to fire
    /// the call's timer in time (a tokio runtime turns its timers only between polls, every so
    /// many). A guest parked in a host call is ended by that timer.
    pub(super) fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Before a call of the messages of `contexts`.
    pub(crate) fn begin_call(&mut self, contexts: Vec<CallContext>) {
        self.contexts = contexts;
        self.emitted.records.clear();
        self.emitted.bytes = 0;
        self.limiter.take_hit();
    }

    /// The message `index` of the call in progress names; refused past the batch, so a
    /// record or a log line is never given to the wrong message.
    pub(crate) fn message(&self, index: u32) -> Result<usize, String> {
        let len = self.contexts.len();
        usize::try_from(index)
            .ok()
            .filter(|i| *i < len)
            .ok_or_else(|| format!("named message {index} of a batch of {len}"))
    }

    /// Collects what the call left behind and resets for the next one.
    pub(crate) fn end_call(&mut self) -> CallTrace {
        self.emitted.bytes = 0;
        let contexts = std::mem::take(&mut self.contexts);
        let mut emitted: Vec<Vec<OutputRecord>> = contexts.iter().map(|_| Vec::new()).collect();
        for (index, record) in self.emitted.records.drain(..) {
            if let Some(records) = emitted.get_mut(index) {
                records.push(record);
            }
        }
        CallTrace {
            contexts,
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
