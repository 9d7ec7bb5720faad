//! The running host: starts every tenant, serves the admin endpoints, watches the config file
//! and the plugin files it names, applies changes live, and shuts everything down gracefully.
//!
//! Watching is by polling (modification time and size, every `watch_interval`): it works the
//! same on every filesystem, including the bind mounts and network volumes plugins are often
//! deployed through, where inotify-style events go missing. A change is applied only once the
//! new file parses and validates; a broken edit is reported and the running state stays.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Status};
use crate::config::{ConfigError, HostConfig, TenantConfig};
use crate::reload::{self, Change};
use crate::tenant::{self, RunningTenant, TenantError};
use crate::wasm::{Runtime, RuntimeConfig, RuntimeError};

/// How often the config and plugin files are checked for changes by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The WASM runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A tenant could not start.
    #[error(transparent)]
    Tenant(#[from] Box<TenantError>),
    /// The admin listener could not bind.
    #[error("admin listener on {addr}: {source}")]
    Admin {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A file's identity for change detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The tenants, shared between the supervisor loop and the admin endpoints.
#[derive(Default)]
struct Tenants {
    running: BTreeMap<String, RunningTenant>,
    /// Tenants added by a reload that failed to start, with why.
    failed: BTreeMap<String, String>,
    /// The last config reload that was refused, with why.
    config_error: Option<String>,
}

#[derive(Clone, Default)]
struct SharedTenants(Arc<Mutex<Tenants>>);

impl SharedTenants {
    fn lock(&self) -> MutexGuard<'_, Tenants> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Status for SharedTenants {
    fn readiness(&self) -> Result<(), Vec<String>> {
        let tenants = self.lock();
        let mut reasons = Vec::new();
        for (name, tenant) in &tenants.running {
            if let Some(why) = tenant.status().halted {
                reasons.push(format!("tenant {name} halted: {why}"));
            } else if tenant.has_stopped() {
                reasons.push(format!("tenant {name} stopped"));
            } else if tenant.stats().assigned_partitions == 0 {
                reasons.push(format!("tenant {name} has no partitions assigned yet"));
            }
        }
        for (name, why) in &tenants.failed {
            reasons.push(format!("tenant {name} failed to start: {why}"));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    fn stats(&self) -> serde_json::Value {
        let tenants = self.lock();
        let running: serde_json::Map<String, serde_json::Value> = tenants
            .running
            .iter()
            .map(|(name, t)| (name.clone(), t.report()))
            .collect();
        serde_json::json!({
            "tenants": running,
            "failed_tenants": tenants.failed,
            "last_config_error": tenants.config_error,
        })
    }

    fn metrics(&self) -> Vec<prometheus::proto::MetricFamily> {
        let tenants = self.lock();
        tenants
            .running
            .values()
            .flat_map(|t| t.registry().gather())
            .collect()
    }
}

/// Options of a host run that are not in the config file.
#[derive(Debug)]
pub struct RunOptions {
    /// How often to check the config and plugin files for changes.
    pub watch_interval: Duration,
    /// An already-bound admin listener (tests bind port 0); `None` binds `admin.listen`.
    pub admin_listener: Option<std::net::TcpListener>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            watch_interval: DEFAULT_WATCH_INTERVAL,
            admin_listener: None,
        }
    }
}

/// The host while it runs.
pub struct Supervisor {
    path: PathBuf,
    config: HostConfig,
    runtime: Runtime,
    tenants: SharedTenants,
    config_stamp: Option<Stamp>,
    plugin_stamps: HashMap<String, Option<Stamp>>,
}

/// Runs the host described by the file at `path` until `shutdown` completes.
pub async fn run(
    path: &Path,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HostError> {
    let mut supervisor = Supervisor::start(path)?;
    let listener = match options.admin_listener {
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l)),
        None => TcpListener::bind(supervisor.config.admin.listen).await,
    }
    .map_err(|source| HostError::Admin {
        addr: supervisor.config.admin.listen,
        source,
    })?;
    let addr = listener.local_addr().ok();
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        listener,
        Arc::new(supervisor.tenants.clone()),
        admin_stop.clone().cancelled_owned(),
    ));
    tracing::info!(admin = ?addr, tenants = supervisor.config.tenants.len(), "burrow is running");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(options.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => supervisor.check_for_changes().await,
        }
    }
    tracing::info!("shutting down: draining tenants");
    supervisor.stop_all().await;
    admin_stop.cancel();
    let _ = admin.await;
    Ok(())
}

impl Supervisor {
    /// Loads the config and starts every tenant; the first that cannot start is an error.
    fn start(path: &Path) -> Result<Self, HostError> {
        // Stamps are taken before the files are read: a file replaced between the stamp and
        // the read is then seen as changed at the next check, never missed.
        let config_stamp = stamp(path);
        let config = HostConfig::load(path)?;
        let runtime = Runtime::new(&RuntimeConfig {
            cache_dir: config.cache_dir.clone(),
        })?;
        let tenants = SharedTenants::default();
        let mut plugin_stamps = HashMap::new();
        for tenant in &config.tenants {
            plugin_stamps.insert(tenant.name.clone(), stamp(&tenant.plugin));
            let running = RunningTenant::start(&config, tenant, &runtime).map_err(Box::new)?;
            tenants.lock().running.insert(tenant.name.clone(), running);
        }
        Ok(Self {
            path: path.to_owned(),
            config_stamp,
            config,
            runtime,
            tenants,
            plugin_stamps,
        })
    }

    /// Re-reads the config if it or a plugin file changed, and applies the difference.
    async fn check_for_changes(&mut self) {
        let config_stamp = stamp(&self.path);
        let config_changed = config_stamp != self.config_stamp;
        let plugin_changed = self.config.tenants.iter().any(|t| self.plugin_changed(t));
        if !config_changed && !plugin_changed {
            return;
        }
        self.config_stamp = config_stamp;
        let new = match HostConfig::load(&self.path) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "config change refused; the running configuration stays");
                self.tenants.lock().config_error = Some(e.to_string());
                return;
            }
        };
        self.tenants.lock().config_error = None;
        let changes = reload::plan(&self.config, &new, |t| self.plugin_changed(t));
        self.apply(new, changes).await;
    }

    fn plugin_changed(&self, tenant: &TenantConfig) -> bool {
        self.plugin_stamps
            .get(&tenant.name)
            .is_some_and(|old| *old != stamp(&tenant.plugin))
    }

    async fn apply(&mut self, mut new: HostConfig, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::NeedsHostRestart(key) => {
                    tracing::warn!(
                        key,
                        "this setting changed; it takes effect when burrow restarts"
                    );
                }
                Change::Stop(name) => self.stop_tenant(&name).await,
                Change::Start(name) => self.start_tenant(&new, &name),
                Change::Restart { tenant, keys } => {
                    tracing::info!(tenant, ?keys, "restarting tenant to apply changed settings");
                    self.stop_tenant(&tenant).await;
                    self.start_tenant(&new, &tenant);
                }
                Change::Swap(name) => self.swap_tenant(&new, &name),
            }
        }
        // Process-wide settings keep their running values until a restart.
        new.kafka = self.config.kafka.clone();
        new.admin = self.config.admin.clone();
        new.log = self.config.log.clone();
        new.cache_dir = self.config.cache_dir.clone();
        self.config = new;
    }

    fn start_tenant(&mut self, config: &HostConfig, name: &str) {
        let Some(tenant) = config.tenants.iter().find(|t| t.name == name) else {
            return;
        };
        self.plugin_stamps
            .insert(name.to_owned(), stamp(&tenant.plugin));
        // Process-wide settings are the running ones, not the file's new ones.
        let mut effective = config.clone();
        effective.kafka = self.config.kafka.clone();
        // Compiling a plugin takes a while: keep this worker thread's other tasks moving.
        let started =
            tokio::task::block_in_place(|| RunningTenant::start(&effective, tenant, &self.runtime));
        let mut tenants = self.tenants.lock();
        match started {
            Ok(running) => {
                tenants.failed.remove(name);
                tenants.running.insert(name.to_owned(), running);
            }
            Err(e) => {
                tracing::error!(tenant = name, error = %e, "tenant failed to start");
                tenants.failed.insert(name.to_owned(), e.to_string());
            }
        }
    }

    async fn stop_tenant(&mut self, name: &str) {
        self.plugin_stamps.remove(name);
        let running = {
            let mut tenants = self.tenants.lock();
            tenants.failed.remove(name);
            tenants.running.remove(name)
        };
        if let Some(tenant) = running
            && let Err(e) = tenant.stop().await
        {
            tracing::warn!(tenant = name, error = %e, "tenant stopped with an error");
        }
    }

    fn swap_tenant(&mut self, config: &HostConfig, name: &str) {
        let Some(tenant) = config.tenants.iter().find(|t| t.name == name) else {
            return;
        };
        // Whatever the outcome, this version of the file has been seen: a refused file is
        // tried again when it changes again, not every tick.
        self.plugin_stamps
            .insert(name.to_owned(), stamp(&tenant.plugin));
        // Load and compile outside the lock, off the workers: they keep running the old one.
        let next = tokio::task::block_in_place(|| tenant::deployment(&self.runtime, tenant));
        if let Some(running) = self.tenants.lock().running.get_mut(name) {
            let _ = running.swap(tenant, next);
        }
    }

    async fn stop_all(&mut self) {
        let running = std::mem::take(&mut self.tenants.lock().running);
        let stops = running.into_values().map(|t| async move {
            let name = t.name().to_owned();
            if let Err(e) = t.stop().await {
                tracing::warn!(tenant = name, error = %e, "tenant stopped with an error");
            }
        });
        futures::future::join_all(stops).await;
    }
}
