//! A tenant: one consumer group, one pool, one plugin deployment, one set of limits.
//!
//! Tenants share nothing that one could use to hurt another: each has its own consumer (its
//! own group and assignment), its own workers and plugin instances, its own producer, its own
//! limits and its own metrics registry. A tenant whose plugin loops is held to its deadline on
//! its own workers; a tenant that halts stops alone.

mod handler;
mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::Registry;
use rdkafka::ClientConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{FailurePolicy, HostConfig, TenantConfig};
use crate::kafka::Consumer;
use crate::kafka::producer::{ProduceError, Producer};
use crate::pool::{Pool, PoolError, Stats, StatsHandle};
use crate::wasm::{Capabilities, Deployment, DeploymentSlot, Limits, LoadError, Runtime};

pub use handler::PluginHandler;
pub use metrics::TenantMetrics;

/// What every worker of a tenant shares.
pub(crate) struct Shared {
    name: Arc<str>,
    /// The current plugin deployment; swapped on reload, read by every worker's next call.
    slot: Arc<DeploymentSlot>,
    producer: Producer,
    output_topics: Vec<String>,
    dead_letter_topic: Option<String>,
    on_failure: FailurePolicy,
    metrics: TenantMetrics,
}

/// Why a tenant could not start.
#[derive(Debug, thiserror::Error)]
#[error("tenant {tenant}: {source}")]
pub struct TenantError {
    /// The tenant.
    pub tenant: String,
    /// What failed.
    #[source]
    pub source: Box<StartError>,
}

/// The part of a tenant that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its plugin was refused.
    #[error(transparent)]
    Plugin(#[from] LoadError),
    /// Its consumer could not be created or subscribed.
    #[error("consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    /// Its producer could not be created.
    #[error(transparent)]
    Producer(#[from] ProduceError),
    /// Its pool refused the configuration.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Its metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What the supervisor and `/stats` can see of a running tenant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantStatus {
    /// Why the tenant stopped on its own (a halt), if it did.
    pub halted: Option<String>,
    /// The last plugin version that failed to load, and why; cleared by a successful swap.
    pub last_reload_error: Option<String>,
}

/// A tenant that is running.
pub struct RunningTenant {
    /// The configuration it runs with.
    pub config: TenantConfig,
    shared: Arc<Shared>,
    stats: StatsHandle,
    /// Its own registry: dropped with the tenant, so a restarted tenant registers afresh.
    registry: Registry,
    status: Arc<Mutex<TenantStatus>>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), PoolError>>,
}

/// The deployment a tenant's config describes, with `plugin` loaded.
pub fn deployment(runtime: &Runtime, config: &TenantConfig) -> Result<Deployment, LoadError> {
    let plugin = runtime.load_file(&config.plugin)?;
    Ok(Deployment::new(plugin)
        .with_limits(Limits {
            memory: config.limits.memory.as_u64(),
            timeout: config.limits.timeout,
            fuel: config.limits.fuel,
        })
        .with_config(config.config.clone())
        .with_capabilities(Capabilities {
            env: config.limits.env.clone(),
            read_only_dirs: config.limits.read_dirs.clone(),
        }))
}

/// The consumer settings of a tenant: the operator's pass-through options first, then what
/// the delivery guarantee needs, which they cannot override.
fn consumer_config(host: &HostConfig, tenant: &TenantConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    // A new group starts from the beginning: a processing system must not skip what was
    // produced before it first ran. An operator can say otherwise.
    config.set("auto.offset.reset", "earliest");
    for (key, value) in &host.kafka.options {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &host.kafka.brokers)
        .set("group.id", &tenant.group_id)
        .set("enable.auto.commit", "false");
    config
}

impl RunningTenant {
    /// Starts `tenant`: loads its plugin, creates its consumer, producer and pool, and runs the
    /// pool until [`RunningTenant::stop`] or a halt.
    pub fn start(
        host: &HostConfig,
        tenant: &TenantConfig,
        runtime: &Runtime,
    ) -> Result<Self, TenantError> {
        Self::try_start(host, tenant, runtime).map_err(|e| TenantError {
            tenant: tenant.name.clone(),
            source: Box::new(e),
        })
    }

    fn try_start(
        host: &HostConfig,
        tenant: &TenantConfig,
        runtime: &Runtime,
    ) -> Result<Self, StartError> {
        let name = tenant.name.clone();
        let deployment = deployment(runtime, tenant)?;
        let consumer = Consumer::from_config(&consumer_config(host, tenant))?;
        let topics: Vec<&str> = tenant.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let producer = Producer::new(&host.kafka.brokers, &host.kafka.options)?;
        let registry = Registry::new();
        let metrics = TenantMetrics::register(&registry, &name)?;
        let plugin = deployment.plugin().id().clone();
        metrics.set_plugin(&plugin.name, &plugin.version.to_string());
        let labels = HashMap::from([("tenant".to_owned(), name.clone())]);
        let pool_config = host.pool_settings_for(tenant).to_pool_config();
        let pool = Pool::with_registry(consumer, pool_config, &registry, labels)?;
        let shared = Arc::new(Shared {
            name: name.as_str().into(),
            slot: Arc::new(DeploymentSlot::new(deployment)),
            producer,
            output_topics: tenant.output_topics.clone(),
            dead_letter_topic: tenant.dead_letter_topic.clone(),
            on_failure: tenant.on_failure,
            metrics,
        });
        let stats = pool.stats_handle();
        let status = Arc::new(Mutex::new(TenantStatus::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            pool,
            Arc::clone(&shared),
            stop.clone(),
            Arc::clone(&status),
        ));
        tracing::info!(tenant = %name, plugin = %plugin, topics = ?tenant.topics, "tenant started");
        Ok(Self {
            config: tenant.clone(),
            shared,
            stats,
            registry,
            status,
            stop,
            task,
        })
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its pool's stats now.
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// Its status now.
    pub fn status(&self) -> TenantStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `name@version` of the plugin it runs now.
    pub fn plugin(&self) -> String {
        self.shared.slot.current().plugin().id().to_string()
    }

    /// Its metrics registry (the pool's and the tenant's own).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether it has stopped (halted or failed) on its own.
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Swaps in `next` (a deployment loaded off the hot path with [`deployment`]); if it failed
    /// to load, the old one keeps running and the error is kept for `/stats`.
    pub fn swap(
        &mut self,
        config: &TenantConfig,
        next: Result<Deployment, LoadError>,
    ) -> Result<(), LoadError> {
        let metrics = &self.shared.metrics;
        match next {
            Ok(next) => {
                let id = next.plugin().id().clone();
                let old = self.shared.slot.swap(next);
                metrics.reloads.inc();
                metrics.set_plugin(&id.name, &id.version.to_string());
                self.lock_status().last_reload_error = None;
                self.config = config.clone();
                tracing::info!(tenant = %self.name(), from = %old.plugin().id(), to = %id, "plugin swapped");
                Ok(())
            }
            Err(e) => {
                metrics.reload_failures.inc();
                self.lock_status().last_reload_error = Some(e.to_string());
                tracing::error!(tenant = %self.name(), error = %e, running = %self.plugin(), "plugin reload refused; the running version stays");
                Err(e)
            }
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, TenantStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops gracefully: the pool finishes in-flight work, commits and leaves its group.
    pub async fn stop(self) -> Result<(), PoolError> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(tenant = %self.shared.name, error = %e, "tenant task failed");
                Ok(())
            }
        }
    }

    /// A summary for `/stats`.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "plugin": self.plugin(),
            "topics": self.config.topics,
            "group_id": self.config.group_id,
            "status": self.status(),
            "pool": self.stats(),
        })
    }
}

async fn run(
    pool: Pool,
    shared: Arc<Shared>,
    stop: CancellationToken,
    status: Arc<Mutex<TenantStatus>>,
) -> Result<(), PoolError> {
    let handlers = Arc::clone(&shared);
    // The pool's own logs (commits, rebalances, failures) carry the tenant through this span.
    let span = tracing::info_span!("tenant", tenant = %shared.name);
    let result = pool
        .run_with(stop.cancelled_owned(), move |worker| {
            PluginHandler::new(Arc::clone(&handlers), worker)
        })
        .instrument(span)
        .await;
    match &result {
        Ok(()) => tracing::info!(tenant = %shared.name, "tenant stopped"),
        Err(e) => {
            tracing::error!(tenant = %shared.name, error = %e, "tenant halted");
            status.lock().unwrap_or_else(PoisonError::into_inner).halted = Some(e.to_string());
        }
    }
    result
}
