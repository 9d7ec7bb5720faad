//! A worker's plugin instance: made on first use, reused across messages, replaced after any
//! failure and whenever the deployment changes.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{Message, Processor};
use super::call::{self, CallContext, CallError, CallResult, Processed};
use super::deployment::{Deployment, DeploymentSlot};
use super::host;
use super::limits::Limits;
use super::plugin::one_line;
use super::store::StoreState;
use super::ticker;

/// One worker's handle on a tenant's plugin. Not shared: each pool worker (thread or blocking
/// task) owns one, so calls never contend on a store.
pub struct PluginInstance {
    slot: Arc<DeploymentSlot>,
    live: Option<Live>,
    /// How many instances this worker has created; lets tests and metrics see replacements.
    instantiations: u64,
}

/// An instantiated plugin and the deployment it was made from.
struct Live {
    deployment: Arc<Deployment>,
    store: Store<StoreState>,
    processor: Processor,
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
        }
    }

    /// Processes one message on the slot's current deployment.
    ///
    /// Never panics because of the plugin: every guest failure is a [`CallError`]. After one,
    /// the instance is dropped and the next call starts a fresh one. Blocks: call it from a
    /// blocking thread, not from an async task (see the [module docs](crate::wasm)).
    pub fn call(&mut self, context: &CallContext, message: &Message) -> CallResult {
        let deployment = self.slot.current();
        let result = self.call_on(&deployment, context, message);
        CallResult {
            plugin: deployment.plugin().id().clone(),
            result,
        }
    }

    /// Instantiates the slot's current deployment now, under its limits, without calling the
    /// plugin (unless this handle already holds an instance of it). A deployment that cannot
    /// start — a memory cap below what the plugin's initial memory needs, a granted directory
    /// gone — is found here, before any message is at stake (`burrow validate`, start-up).
    pub fn warm_up(&mut self) -> Result<(), CallError> {
        let deployment = self.slot.current();
        if !matches!(&self.live, Some(live) if Arc::ptr_eq(&live.deployment, &deployment)) {
            self.live = Some(self.instantiate(&deployment)?);
        }
        Ok(())
    }

    /// Drops the current instance, if any; the next call instantiates afresh.
    pub fn reset(&mut self) {
        self.live = None;
    }

    /// How many instances this handle has created so far.
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    fn call_on(
        &mut self,
        deployment: &Arc<Deployment>,
        context: &CallContext,
        message: &Message,
    ) -> Result<Processed, CallError> {
        let mut live = match self.live.take() {
            Some(live) if Arc::ptr_eq(&live.deployment, deployment) => live,
            _ => self.instantiate(deployment)?,
        };
        let limits = deployment.limits();
        live.store.data_mut().begin_call(context);
        arm(&mut live.store, limits);
        let result = live.processor.call_process(&mut live.store, message);
        let trace = live.store.data_mut().end_call();
        host::log_output(live.store.data(), &trace.stdout, &trace.stderr);
        match result {
            Ok(outcome) => {
                self.live = Some(live);
                Ok(Processed {
                    outcome,
                    emitted: trace.emitted,
                })
            }
            // `live` is dropped here: a trapped instance is never called again.
            Err(err) => Err(call::classify(
                &err,
                trace.memory_cap_hit,
                limits,
                &trace.stderr.text,
            )),
        }
    }

    fn instantiate(&mut self, deployment: &Arc<Deployment>) -> Result<Live, CallError> {
        let state =
            StoreState::new(deployment).map_err(|e| CallError::Instantiate(e.to_string()))?;
        let pre = deployment.plugin().pre();
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        // Instantiation runs guest code too (initialisers), under the same limits as a call.
        arm(&mut store, deployment.limits());
        let processor = pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(one_line(&e)))?;
        self.instantiations += 1;
        Ok(Live {
            deployment: Arc::clone(deployment),
            store,
            processor,
        })
    }
}

/// Sets the deadline and fuel for the next stretch of guest code.
fn arm(store: &mut Store<StoreState>, limits: &Limits) {
    store.set_epoch_deadline(ticker::ticks_for(limits.timeout));
    // Fuel is always metered engine-wide; unmetered deployments get a tank that never empties.
    // `set_fuel` fails only when fuel is disabled in the engine, which `Runtime::new` enables.
    let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
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
    }

    #[test]
    fn runtime_plugins_and_slots_are_shared_across_threads() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<Plugin>();
        assert_send_sync::<DeploymentSlot>();
    }
}
