//! The running host: starts every tenant, serves the admin endpoints, watches the config file
//! and the plugin files it names, applies changes live, and shuts everything down gracefully.
//!
//! Watching is by polling (every `watch_interval`): it works the same on every filesystem,
//! including the bind mounts and network volumes plugins are often deployed through, where
//! inotify-style events go missing. A change is the file's *content* changing (sha256): new
//! metadata (modification time, size) only makes the supervisor read and hash the file again,
//! so a `touch` or a redeploy of the same bytes reloads nothing. A change is applied only once
//! the new file parses and validates; a broken edit is reported and the running state stays.
//!
//! Before anything starts, [`preflight::check`] builds each tenant's Kafka clients (without
//! connecting) and instantiates each plugin under its tenant's limits: `burrow validate` and
//! `burrow run` refuse the same files, every problem at once. Text that may hold configuration
//! (librdkafka's errors) goes through [`secret::redact`] before it reaches a log line or
//! `/stats`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Status};
use crate::config::secret;
use crate::config::{ConfigError, HostConfig, TenantConfig};
use crate::preflight;
use crate::reload::{self, Change, Watched};
use crate::rollout;
use crate::tenant::{self, RunningTenant};
use crate::wasm::{CodeCache, Deployment, LoadError, Runtime, RuntimeConfig, RuntimeError};

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
    /// A tenant could not start. Its text, redacted of secrets; the message includes every
    /// cause, as all Burrow errors' messages do.
    #[error("{0}")]
    Tenant(String),
    /// The admin listener could not bind. The cause is part of the message (the house rule:
    /// an error's text is whole, so logs and `/stats` show it in one `%e`), hence not also
    /// exposed as `source`, which would print it twice in a chain.
    #[error("admin listener on {addr}: {reason}")]
    Admin {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: std::io::Error,
    },
}

/// A file's identity for change detection: its metadata, to notice cheaply that it may have
/// changed, and the sha256 of its bytes, to decide whether it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

/// The file's stamp now (`None` if it cannot be read). `known` is its last stamp: when the
/// metadata is the same, the content is taken as unchanged and the file is not read again, so
/// watching costs a `stat` per tick until something touches the file.
fn stamp(path: &Path, known: Option<&Stamp>) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok();
    if let Some(known) = known
        && known.modified == modified
        && known.len == meta.len()
    {
        return Some(*known);
    }
    let bytes = std::fs::read(path).ok()?;
    Some(Stamp {
        modified,
        len: meta.len(),
        digest: Sha256::digest(&bytes).into(),
    })
}

/// Whether two stamps are of different contents (a file appearing or vanishing counts).
fn content_differs(old: Option<&Stamp>, new: Option<&Stamp>) -> bool {
    old.map(|s| s.digest) != new.map(|s| s.digest)
}

/// The tenants, shared between the supervisor loop and the admin endpoints.
#[derive(Default)]
struct Tenants {
    running: BTreeMap<String, RunningTenant>,
    /// Tenants added by a reload that failed to start, with why.
    failed: BTreeMap<String, String>,
    /// The last config reload that was refused, with why.
    config_error: Option<String>,
    /// The values of the running configuration's secrets, kept out of `/stats`.
    secrets: Vec<String>,
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
            } else if let Some(waiting) = tenant.starting() {
                reasons.push(format!("tenant {name} is starting: {waiting}"));
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
        let mut stats = serde_json::json!({
            "tenants": running,
            "failed_tenants": tenants.failed,
            "last_config_error": tenants.config_error,
        });
        // The texts above are redacted where they are made; this is the net under them, for
        // any error text that quotes a setting.
        redact_json(&mut stats, &tenants.secrets);
        stats
    }

    fn metrics(&self) -> Vec<prometheus::proto::MetricFamily> {
        let tenants = self.lock();
        tenants
            .running
            .values()
            .flat_map(|t| t.registry().gather())
            .collect()
    }

    fn control(&self, tenant: &str, action: admin::Control) -> Result<(), admin::Refused> {
        let tenants = self.lock();
        let running = tenants
            .running
            .get(tenant)
            .ok_or_else(|| admin::Refused::NoTenant(format!("no running tenant {tenant:?}")))?;
        let canary = |promote| {
            running
                .end_canary(promote)
                .map_err(|e| admin::Refused::Conflict(e.to_string()))
        };
        match action {
            admin::Control::Pause => running.pauser().pause(),
            admin::Control::Resume => running.pauser().resume(),
            admin::Control::Promote => canary(true)?,
            admin::Control::RollBack => canary(false)?,
        }
        tracing::info!(tenant, ?action, "tenant control from the admin endpoint");
        Ok(())
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

/// Replaces each secret in every string of `value`.
fn redact_json(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(text) => *text = secret::redact(text, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_json(v, secrets)),
        _ => {}
    }
}

/// The host while it runs.
pub struct Supervisor {
    path: PathBuf,
    config: HostConfig,
    runtime: Runtime,
    tenants: SharedTenants,
    config_stamp: Option<Stamp>,
    /// Each running tenant's watched files (its plugin, its candidate) as last loaded.
    file_stamps: HashMap<(String, Watched), Option<Stamp>>,
    /// Files that changed while the config file did not load: applied once it does, though
    /// their stamps are already up to date.
    pending_files: BTreeSet<(String, Watched)>,
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
    .map_err(|reason| HostError::Admin {
        addr: supervisor.config.admin.listen,
        reason,
    })?;
    let addr = listener.local_addr().ok();
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        listener,
        Arc::new(supervisor.tenants.clone()),
        supervisor.config.admin.token.clone(),
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
    /// Loads the config, runs the [`preflight::check`]s and starts every tenant; a problem in
    /// either is an error.
    fn start(path: &Path) -> Result<Self, HostError> {
        // Stamps are taken before the files are read: a file replaced between the stamp and
        // the read is then seen as changed at the next check, never missed.
        let config_stamp = stamp(path, None);
        let config = HostConfig::load(path)?;
        let runtime = Runtime::new(&RuntimeConfig {
            cache: CodeCache::from_setting(config.cache_dir.as_deref()),
        })?;
        let file_stamps = config
            .tenants
            .iter()
            .flat_map(|t| Watched::ALL.map(|file| ((t.name.clone(), file), file.path(t))))
            .filter_map(|(key, path)| Some((key, stamp(path?, None))))
            .collect();
        let deployments =
            preflight::check(&config, &runtime).map_err(|issues| ConfigError::Invalid {
                path: path.to_owned(),
                issues,
            })?;
        let tenants = SharedTenants::default();
        let secrets = config.secrets();
        tenants.lock().secrets.clone_from(&secrets);
        for (tenant, deployment) in config.tenants.iter().zip(deployments) {
            let rollout = rollout::rollout(&runtime, &config, tenant);
            let running =
                RunningTenant::start_with_rollout(&config, tenant, deployment, rollout)
                    .map_err(|e| HostError::Tenant(secret::redact(&e.to_string(), &secrets)))?;
            tenants.lock().running.insert(tenant.name.clone(), running);
        }
        Ok(Self {
            path: path.to_owned(),
            config_stamp,
            config,
            runtime,
            tenants,
            file_stamps,
            pending_files: BTreeSet::new(),
        })
    }

    /// Re-reads the config if its content or a plugin file's content changed, and applies the
    /// difference.
    async fn check_for_changes(&mut self) {
        let config_stamp = stamp(&self.path, self.config_stamp.as_ref());
        let config_changed = content_differs(self.config_stamp.as_ref(), config_stamp.as_ref());
        // A refused file is tried again when it changes again, not every tick.
        self.config_stamp = config_stamp;
        let mut file_changed = false;
        for tenant in &self.config.tenants {
            for file in Watched::ALL {
                let key = (tenant.name.clone(), file);
                let (Some(path), Some(known)) = (file.path(tenant), self.file_stamps.get_mut(&key))
                else {
                    continue;
                };
                let now = stamp(path, known.as_ref());
                if content_differs(known.as_ref(), now.as_ref()) {
                    self.pending_files.insert(key);
                    file_changed = true;
                }
                *known = now;
            }
        }
        if !config_changed && !file_changed {
            return;
        }
        let new = match HostConfig::load(&self.path) {
            Ok(new) => new,
            Err(e) => {
                let error = secret::redact(&e.to_string(), &self.config.secrets());
                tracing::error!(%error, "config change refused; the running configuration stays");
                self.tenants.lock().config_error = Some(error);
                return;
            }
        };
        self.tenants.lock().config_error = None;
        let pending = std::mem::take(&mut self.pending_files);
        let changes = reload::plan(&self.config, &new, |t, file| {
            pending.contains(&(t.name.clone(), file))
        });
        self.apply(new, changes).await;
        let mut tenants = self.tenants.lock();
        for value in self.config.secrets() {
            if !tenants.secrets.contains(&value) {
                tenants.secrets.push(value);
            }
        }
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
                Change::Rollout(name) => self.roll_out(&new, &name),
            }
        }
        // Process-wide settings keep their running values until a restart.
        new.kafka = self.config.kafka.clone();
        new.admin = self.config.admin.clone();
        new.log = self.config.log.clone();
        new.cache_dir = self.config.cache_dir.clone();
        new.instance_id = self.config.instance_id.clone();
        self.config = new;
    }

    fn start_tenant(&mut self, config: &HostConfig, name: &str) {
        let Some(tenant) = config.tenants.iter().find(|t| t.name == name) else {
            return;
        };
        self.watch(tenant, &Watched::ALL);
        // Process-wide settings are the running ones, not the file's new ones.
        let mut effective = config.clone();
        effective.kafka = self.config.kafka.clone();
        // Compiling a plugin takes a while: keep this worker thread's other tasks moving.
        let started = tokio::task::block_in_place(|| {
            let deployment = self.checked_deployment(tenant).map_err(|e| e.to_string())?;
            let rollout = rollout::rollout(&self.runtime, &effective, tenant);
            RunningTenant::start_with_rollout(&effective, tenant, deployment, rollout)
                .map_err(|e| e.to_string())
        });
        let mut tenants = self.tenants.lock();
        match started {
            Ok(running) => {
                tenants.failed.remove(name);
                tenants.running.insert(name.to_owned(), running);
            }
            Err(e) => {
                let error = secret::redact(&e, &effective.secrets());
                tracing::error!(tenant = name, %error, "tenant failed to start");
                tenants.failed.insert(name.to_owned(), error);
            }
        }
    }

    /// Takes the stamps of `tenant`'s `files` as they are now (a file it does not have is
    /// forgotten).
    fn watch(&mut self, tenant: &TenantConfig, files: &[Watched]) {
        for &file in files {
            let key = (tenant.name.clone(), file);
            match file.path(tenant) {
                Some(path) => self.file_stamps.insert(key, stamp(path, None)),
                None => self.file_stamps.remove(&key),
            };
        }
    }

    async fn stop_tenant(&mut self, name: &str) {
        self.file_stamps.retain(|(tenant, _), _| tenant != name);
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
        self.watch(tenant, &[Watched::Plugin]);
        // Load and compile outside the lock, off the workers: they keep running the old one.
        let next = tokio::task::block_in_place(|| self.checked_deployment(tenant));
        if let Some(running) = self.tenants.lock().running.get_mut(name) {
            let _ = running.swap(tenant, next);
        }
    }

    /// Puts the tenant's new rollout (or none) beside its live version, without a restart.
    fn roll_out(&mut self, config: &HostConfig, name: &str) {
        let Some(tenant) = config.tenants.iter().find(|t| t.name == name) else {
            return;
        };
        self.watch(tenant, &[Watched::Candidate]);
        let mut effective = config.clone();
        effective.kafka = self.config.kafka.clone();
        // The candidate loads and compiles off the workers, as a swap's plugin does.
        let next =
            tokio::task::block_in_place(|| rollout::rollout(&self.runtime, &effective, tenant));
        let mut tenants = self.tenants.lock();
        let Some(running) = tenants.running.get_mut(name) else {
            return;
        };
        match running.set_rollout(next) {
            Ok(()) => {
                running.config.rollout.clone_from(&tenant.rollout);
                tracing::info!(tenant = name, rollout = ?tenant.rollout, "rollout applied");
            }
            Err(e) => tracing::error!(tenant = name, error = %e, "rollout not applied"),
        }
    }

    /// The tenant's deployment, loaded and instantiated once under its limits: a version (or
    /// a limit) it cannot start under is refused like a file that does not load.
    fn checked_deployment(&self, tenant: &TenantConfig) -> Result<Deployment, LoadError> {
        let deployment = tenant::deployment(&self.runtime, tenant)?;
        preflight::instantiate(&deployment).map_err(|e| LoadError::CannotStart {
            name: deployment.plugin().name().to_owned(),
            reason: e.to_string(),
        })?;
        Ok(deployment)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file rewritten with the same bytes (a `touch`, a redeploy of the same build) is not a
    /// change, even though its modification time is new.
    #[test]
    fn same_bytes_with_a_new_mtime_are_not_a_change() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("plugin.wasm");
        std::fs::write(&path, b"version one")?;
        let before = stamp(&path, None);
        let file = std::fs::File::options().write(true).open(&path)?;
        file.set_modified(SystemTime::now() + Duration::from_secs(60))?;
        let after = stamp(&path, before.as_ref());
        assert_ne!(before.map(|s| s.modified), after.map(|s| s.modified));
        assert!(!content_differs(before.as_ref(), after.as_ref()));
        Ok(())
    }

    /// New bytes are a change, and so is the file appearing or vanishing.
    #[test]
    fn new_bytes_or_a_missing_file_are_a_change() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("plugin.wasm");
        std::fs::write(&path, b"version one")?;
        let one = stamp(&path, None);
        std::fs::write(&path, b"version two, longer")?;
        let two = stamp(&path, one.as_ref());
        assert!(content_differs(one.as_ref(), two.as_ref()));
        std::fs::remove_file(&path)?;
        let gone = stamp(&path, two.as_ref());
        assert!(gone.is_none());
        assert!(content_differs(two.as_ref(), gone.as_ref()));
        Ok(())
    }

    /// Secret values are removed from every string of `/stats`, however deep.
    #[test]
    fn stats_strings_are_redacted() {
        let mut stats = serde_json::json!({
            "failed_tenants": {"a": "bad value s3cret for sasl.password"},
            "tenants": {"b": {"status": {"halted": ["s3cret"]}, "n": 3}},
        });
        redact_json(&mut stats, &["s3cret".to_owned()]);
        assert!(!stats.to_string().contains("s3cret"), "{stats}");
        assert_eq!(stats["tenants"]["b"]["n"], 3);
    }
}
