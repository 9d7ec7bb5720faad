//! What runs for a tenant — plugin, limits, settings, capabilities — and the slot that lets it
//! be replaced while messages flow.
//!
//! A swap is: load the new version (slow, fallible, off the hot path), then one atomic pointer
//! switch. Calls already running hold an `Arc` of the old deployment and finish on it; each
//! worker's next call sees the new pointer and instantiates the new version. A version that
//! fails to load never reaches the slot.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::fair::Share;
use super::limits::{Cpu, Limits, MemoryAccount, Recycle};
use super::plugin::{LoadError, Plugin};
use super::runtime::Runtime;
use super::sandbox::Capabilities;
use super::version::Version;

/// A plugin with the settings it runs under.
#[derive(Clone, Debug)]
pub struct Deployment {
    plugin: Plugin,
    limits: Limits,
    /// `Arc` because every instance serves it through the `config` import.
    config: Arc<BTreeMap<String, String>>,
    capabilities: Capabilities,
    recycle: Recycle,
}

impl Deployment {
    /// `plugin` with default limits, no settings and no capabilities.
    pub fn new(plugin: Plugin) -> Self {
        Self {
            plugin,
            limits: Limits::default(),
            config: Arc::default(),
            capabilities: Capabilities::default(),
            recycle: Recycle::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The plugin's own settings, served by its `config(key)` import.
    pub fn with_config(mut self, config: BTreeMap<String, String>) -> Self {
        self.config = Arc::new(config);
        self
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// When workers replace their instances although nothing failed.
    pub fn with_recycling(mut self, recycle: Recycle) -> Self {
        self.recycle = recycle;
        self
    }

    /// The same settings with another plugin (usually a new version of the same one).
    pub fn with_plugin(&self, plugin: Plugin) -> Self {
        Self {
            plugin,
            ..self.clone()
        }
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn recycle(&self) -> Recycle {
        self.recycle
    }

    pub(crate) fn shared_config(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&self.config)
    }
}

/// What a tenant's plugin calls are charged to: the linear memory of its instances and its
/// share of the plugin executor. Clones are the same account: a tenant's live version and a
/// canary's candidate charge one.
#[derive(Clone, Debug)]
pub struct Account {
    pub memory: MemoryAccount,
    pub cpu: Share,
}

impl Account {
    /// A new account whose calls get `cpu`'s weight and cap.
    pub fn new(cpu: Cpu) -> Self {
        Self {
            memory: MemoryAccount::default(),
            cpu: Share::new(cpu),
        }
    }
}

impl Default for Account {
    /// Weight 1, no cap.
    fn default() -> Self {
        Self::new(Cpu::default())
    }
}

/// The current deployment of one tenant, swappable atomically while workers call it.
#[derive(Debug)]
pub struct DeploymentSlot {
    current: ArcSwap<Deployment>,
    /// What every instance made from this slot, whatever its version, is charged to.
    account: Account,
}

impl DeploymentSlot {
    /// A slot with an account of its own.
    pub fn new(deployment: Deployment) -> Self {
        Self::charging(deployment, Account::default())
    }

    /// A slot whose calls are charged to `account` (a tenant's).
    pub fn charging(deployment: Deployment, account: Account) -> Self {
        Self {
            current: ArcSwap::from_pointee(deployment),
            account,
        }
    }

    /// What its calls are charged to.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Its calls' share of the plugin executor.
    pub fn share(&self) -> &Share {
        &self.account.cpu
    }

    /// How long the calls charged to its account have run on the executor, in all.
    pub fn run_time(&self) -> std::time::Duration {
        self.account.cpu.run_time()
    }

    /// Where the instances made from this slot count their linear memory.
    pub fn memory(&self) -> &MemoryAccount {
        &self.account.memory
    }

    pub fn current(&self) -> Arc<Deployment> {
        self.current.load_full()
    }

    /// The version that the next call will run.
    pub fn version(&self) -> Version {
        self.current.load().plugin().version()
    }

    /// Makes `next` current; returns the deployment it replaced. `next` may be shared with
    /// another slot (a canary's candidate, promoted).
    pub fn swap(&self, next: impl Into<Arc<Deployment>>) -> Arc<Deployment> {
        self.current.swap(next.into())
    }

    /// Loads the plugin at `path` and, if it loads, swaps it in under the current limits,
    /// settings and capabilities. If it does not, the current deployment stays and the error
    /// says why. Returns the deployment now current.
    pub fn upgrade_from_file(
        &self,
        runtime: &Runtime,
        path: &Path,
    ) -> Result<Arc<Deployment>, LoadError> {
        let plugin = runtime.load_file(path)?;
        // `rcu`, not load-then-swap: a concurrent settings change is kept, not overwritten.
        self.current
            .rcu(|current| Arc::new(current.with_plugin(plugin.clone())));
        Ok(self.current())
    }
}
