//! A tenant: one consumer group, one pool, one plugin deployment, one set of limits.
//!
//! Tenants share nothing that one could use to hurt another: each has its own consumer (its
//! own group and assignment), its own workers and plugin instances, its own producer, its own
//! limits and its own metrics registry. A tenant whose plugin loops is held to its deadline on
//! its own workers; a tenant that halts stops alone.
//!
//! In the data's order: `start` (what a starting tenant waits for, said and bounded), `handler`
//! (one worker: the plugin's outcome to the pool's decision, emits produced at once, or handed
//! to the pool's transaction with `delivery = "exactly-once"`), `canary` (a candidate's share
//! of keys, its tallies, and its hot promotion or rollback), then this module, which starts
//! and stops the whole.

mod canary;
mod handler;
mod metrics;
mod start;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use prometheus::Registry;
use rdkafka::ClientConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{Delivery, FailurePolicy, HostConfig, TenantConfig};
use crate::kafka::Consumer;
use crate::kafka::producer::{self, ProduceError, Producer};
use crate::pool::{
    Attempt, Pauser, Pool, PoolError, Stats, StatsHandle, TransactionError, Transactions,
};
use crate::wasm::{
    self, Account, Capabilities, Deployment, DeploymentSlot, Limits, LoadError, Recycle, Runtime,
};

pub use canary::{By, Canary, Decision, End, EndError, Rules, Tally};
pub use handler::{PluginHandler, to_plugin_message};
pub use metrics::TenantMetrics;
pub use start::{Phase, StartTimedOut};

use canary::CanarySlot;
use metrics::AccountMetrics;
use start::Start;

/// Sees every batch the tenant's plugin answered, after the answer, without a say in it: a
/// candidate version in shadow (`crate::rollout`). Defined here so the tenant need not know
/// what watches it.
pub trait Observer: Send + Sync {
    /// The messages of a batch and the live plugin's results, in order. Must not wait.
    fn offer(&self, attempts: Vec<Attempt>, live: Vec<Result<wasm::Processed, wasm::CallError>>);

    /// What it has seen, for `/stats`.
    fn report(&self) -> serde_json::Value;

    /// Its metrics, registered in the tenant's registry when the tenant starts.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>>;
}

/// A candidate version beside the live one, as `crate::rollout` makes it from the config.
pub enum Rollout {
    /// Sees every answered batch, with no say in it.
    Shadow(Arc<dyn Observer>),
    /// Serves its share of keys for real.
    Canary(Canary),
}

/// A tenant's rollout as its workers see it: swapped whole when the config's rollout changes.
// One per tenant, behind an `Arc`: the canary's size costs nothing, a `Box` would cost a hop.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RolloutSlot {
    Shadow(Arc<dyn Observer>),
    Canary(CanarySlot),
}

impl RolloutSlot {
    /// A canary's candidate is charged to `account`, the tenant's.
    fn new(rollout: Rollout, tenant: &str, account: &Account) -> Result<Self, prometheus::Error> {
        Ok(match rollout {
            Rollout::Shadow(observer) => Self::Shadow(observer),
            Rollout::Canary(canary) => Self::Canary(CanarySlot::new(canary, tenant, account)?),
        })
    }

    /// The running canary, if this is one.
    pub(crate) fn running_canary(&self) -> Option<&CanarySlot> {
        match self {
            Self::Canary(canary) if canary.is_running() => Some(canary),
            _ => None,
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        match self {
            Self::Shadow(observer) => observer.collectors(),
            Self::Canary(canary) => canary.collectors(),
        }
    }

    fn report(&self) -> serde_json::Value {
        match self {
            Self::Shadow(observer) => observer.report(),
            Self::Canary(canary) => canary.report(),
        }
    }
}

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
    /// A candidate beside the live version, read by every worker's next batch.
    rollout: ArcSwapOption<RolloutSlot>,
    /// Emits and dead letters go to the pool, to be produced in the transaction that commits
    /// their message (`delivery = "exactly-once"`), instead of being produced at once.
    exactly_once: bool,
    /// The largest record the tenant's producers send (a bigger one is refused).
    max_record_bytes: usize,
}

/// How long each step of an exactly-once tenant's transactions may take (adding offsets,
/// committing, aborting), and each try at initialising its producer (tried again until the
/// tenant's `start_timeout` while librdkafka calls the failure retriable).
const TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long after a retriable failure to initialise transactions the next try starts.
const TRANSACTION_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a canary's rules are asked.
const JUDGE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Shared {
    /// Ends `canary`, as a hot swap (see [`canary`]): promotion makes its candidate the live
    /// version, rollback leaves the live version serving every key.
    fn end_canary(&self, canary: &CanarySlot, end: End, rule: &str) -> Result<(), EndError> {
        let candidate = canary.slot.current();
        let id = candidate.plugin().id().clone();
        let promoted = matches!(end, End::Promoted { .. });
        let (End::Promoted { why, by } | End::RolledBack { why, by }) = end.clone();
        canary.finish(&self.name, end, rule, || {
            if promoted {
                self.slot.swap(candidate);
                self.metrics.set_plugin(&id.name, &id.version.to_string());
            }
        })?;
        if promoted {
            tracing::info!(tenant = %self.name, candidate = %id, ?by, %why, "canary promoted: the candidate is the live version");
        } else {
            tracing::warn!(tenant = %self.name, candidate = %id, ?by, %why, "canary rolled back: the live version serves every key");
        }
        Ok(())
    }
}

/// Asks the rules of the canary in `rollout` every [`JUDGE_EVERY`] and carries out what they
/// decide, until the canary ends, another rollout replaces it, or the tenant stops.
async fn judge(shared: Arc<Shared>, rollout: Arc<RolloutSlot>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(JUDGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let current = shared.rollout.load();
        let still_ours = current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, &rollout));
        let Some(canary) = rollout.running_canary().filter(|_| still_ours) else {
            return;
        };
        let by = By::Rules;
        let ended = match canary.judge() {
            Decision::Hold => continue,
            Decision::Promote { rule, why } => {
                shared.end_canary(canary, End::Promoted { by, why }, rule)
            }
            Decision::RollBack { rule, why } => {
                shared.end_canary(canary, End::RolledBack { by, why }, rule)
            }
        };
        // An operator may have ended it between the look and the decision: nothing to do.
        if let Err(e) = ended {
            tracing::debug!(tenant = %shared.name, error = %e, "canary decision not applied");
        }
    }
}

/// Why a tenant could not start. Like every Burrow error, its message includes its cause, so
/// the cause is not also its `source` (a printed chain would repeat it).
#[derive(Debug, thiserror::Error)]
#[error("tenant {tenant}: {error}")]
pub struct TenantError {
    /// The tenant.
    pub tenant: String,
    /// What failed.
    pub error: Box<StartError>,
}

/// The part of a tenant that could not start: at once, in [`RunningTenant::start`] (its plugin,
/// clients, pool, metrics), or in its task (its transactional producer, its subscription, the
/// end of its `start_timeout`), which [`RunError::Start`] carries.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its plugin was refused.
    #[error(transparent)]
    Plugin(#[from] LoadError),
    /// Its consumer could not be created or subscribed.
    #[error("consumer: {0}")]
    Consumer(rdkafka::error::KafkaError),
    /// Its producer could not be created.
    #[error(transparent)]
    Producer(#[from] ProduceError),
    /// Its pool refused the configuration.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Its metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(prometheus::Error),
    /// Its transactional producer (`delivery = "exactly-once"`) could not start.
    #[error("transactional producer {id}: {error}")]
    Transactions { id: String, error: TransactionError },
    /// A thread of its own could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// It did not start within `start_timeout`.
    #[error(transparent)]
    TimedOut(StartTimedOut),
}

/// Why a running tenant stopped on its own: what `/stats` shows as `halted` and
/// [`RunningTenant::stop`] returns.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It never started: its transactional producer failed, or its start (transactions,
    /// then its group's first assignment) outlasted `start_timeout`.
    #[error(transparent)]
    Start(StartError),
    /// Its pool halted, or did not stop cleanly.
    #[error(transparent)]
    Pool(PoolError),
}

// By hand, not `#[from]`: that would make the error the variant's `source` too.
impl From<rdkafka::error::KafkaError> for StartError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        StartError::Consumer(e)
    }
}

impl From<prometheus::Error> for StartError {
    fn from(e: prometheus::Error) -> Self {
        StartError::Metrics(e)
    }
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
    /// Pauses and resumes its pool (the admin's control endpoints).
    pauser: Pauser,
    stats: StatsHandle,
    /// Its own registry: dropped with the tenant, so a restarted tenant registers afresh.
    registry: Registry,
    status: Arc<Mutex<TenantStatus>>,
    /// What it waits for while it starts, for `/readyz` and `/stats`.
    start: Arc<Start>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
    /// Test-only: the consumer's context, to inject a poll-thread fault.
    #[cfg(test)]
    consumer_context: Arc<crate::kafka::PoolContext>,
}

/// Why a committing message's emits may not be produced: one goes to a topic outside the
/// tenant's `output_topics` (then the message fails, for good). `None` if all may.
pub fn refused_emit(output_topics: &[String], emitted: &[wasm::OutputRecord]) -> Option<String> {
    let bad = emitted.iter().find(|r| !output_topics.contains(&r.topic))?;
    Some(format!(
        "plugin emitted to topic {:?}, which is not in this tenant's output_topics {:?}",
        bad.topic, output_topics
    ))
}

/// The deployment a tenant's config describes, with `plugin` loaded.
pub fn deployment(runtime: &Runtime, config: &TenantConfig) -> Result<Deployment, LoadError> {
    let plugin = runtime.load_file(&config.plugin)?;
    if config.limits.fuel.is_some() {
        plugin.prepare_metered()?;
    }
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
        })
        .with_recycling(Recycle {
            after_messages: config.limits.recycle_after_messages,
            above_memory: config.limits.recycle_memory_above.map(|b| b.as_u64()),
        }))
}

/// The consumer settings of a tenant: the operator's pass-through options first (those a
/// consumer reads), then what the delivery guarantee needs, which they cannot override. Public so `burrow validate` builds
/// the very client `run` would.
pub fn consumer_config(host: &HostConfig, tenant: &TenantConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    // A new group starts from the beginning: a processing system must not skip what was
    // produced before it first ran. An operator can say otherwise.
    config.set("auto.offset.reset", "earliest");
    for (key, value) in crate::kafka::scope::for_consumer(&host.kafka.options) {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &host.kafka.brokers)
        .set("group.id", &tenant.group_id)
        .set("enable.auto.commit", "false");
    // An exactly-once tenant's input may be another's output: what an aborted transaction
    // wrote must never reach its plugin.
    if tenant.delivery == Delivery::ExactlyOnce {
        config.set("isolation.level", "read_committed");
    }
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
        let started = deployment(runtime, tenant)
            .map_err(StartError::from)
            .and_then(|d| Self::try_start(host, tenant, d, None));
        started.map_err(|e| TenantError {
            tenant: tenant.name.clone(),
            error: Box::new(e),
        })
    }

    /// Like [`RunningTenant::start`], with the plugin already loaded (and checked) by the
    /// caller: the supervisor's start-up checks load it once, not twice.
    pub fn start_deployed(
        host: &HostConfig,
        tenant: &TenantConfig,
        deployment: Deployment,
    ) -> Result<Self, TenantError> {
        Self::start_with_rollout(host, tenant, deployment, None)
    }

    /// Like [`RunningTenant::start_deployed`], with a candidate version beside the live one.
    pub fn start_with_rollout(
        host: &HostConfig,
        tenant: &TenantConfig,
        deployment: Deployment,
        rollout: Option<Rollout>,
    ) -> Result<Self, TenantError> {
        Self::try_start(host, tenant, deployment, rollout).map_err(|e| TenantError {
            tenant: tenant.name.clone(),
            error: Box::new(e),
        })
    }

    fn try_start(
        host: &HostConfig,
        tenant: &TenantConfig,
        deployment: Deployment,
        rollout: Option<Rollout>,
    ) -> Result<Self, StartError> {
        let name = tenant.name.clone();
        // Subscribed by the tenant's task, once its transactions (if any) are initialised.
        let consumer = Consumer::from_config(&consumer_config(host, tenant))?;
        let producer = Producer::new(&host.kafka.brokers, &host.kafka.options)?;
        let registry = Registry::new();
        let metrics = TenantMetrics::register(&registry, &name)?;
        let account = Account::new(tenant.limits.cpu());
        AccountMetrics::register(&registry, &name, account.clone())?;
        let plugin = deployment.plugin().id().clone();
        let slot = Arc::new(DeploymentSlot::charging(deployment, account));
        metrics.set_plugin(&plugin.name, &plugin.version.to_string());
        let labels = HashMap::from([("tenant".to_owned(), name.clone())]);
        let settings = host.pool_settings_for(tenant);
        let pool = Pool::with_registry(consumer, settings.to_pool_config(), &registry, labels)?;
        let exactly_once = tenant.delivery == Delivery::ExactlyOnce;
        let transactional = exactly_once.then(|| {
            let id = host.transactional_id(tenant);
            let config =
                producer::transactional_config(&host.kafka.brokers, &host.kafka.options, &id);
            (id, config)
        });
        let first = match &transactional {
            Some((id, _)) => Phase::Transactions { id: id.clone() },
            None => Phase::Joining {
                group: tenant.group_id.clone(),
            },
        };
        let start = Arc::new(Start::new(settings.start_timeout(), first));
        let pauser = pool.pauser();
        let shared = Arc::new(Shared {
            name: name.as_str().into(),
            slot,
            producer,
            output_topics: tenant.output_topics.clone(),
            dead_letter_topic: tenant.dead_letter_topic.clone(),
            on_failure: tenant.on_failure,
            metrics,
            rollout: ArcSwapOption::empty(),
            exactly_once,
            max_record_bytes: producer::max_record_bytes(&host.kafka.options),
        });
        let stats = pool.stats_handle();
        #[cfg(test)]
        let consumer_context = Arc::clone(rdkafka::consumer::Consumer::context(
            pool.consumer().inner(),
        ));
        let status = Arc::new(Mutex::new(TenantStatus::default()));
        let stop = CancellationToken::new();
        // Before the first message: a canary's keys never start on the live version.
        install_rollout(&shared, &registry, &stop, rollout)?;
        let setup = Setup {
            topics: tenant.topics.clone(),
            group: tenant.group_id.clone(),
            transactional,
        };
        let task = tokio::spawn(run(
            pool,
            Arc::clone(&shared),
            setup,
            stop.clone(),
            Arc::clone(&status),
            Arc::clone(&start),
        ));
        tracing::info!(
            tenant = %name,
            plugin = %plugin,
            topics = ?tenant.topics,
            start_timeout = %humantime::format_duration(settings.start_timeout()),
            "tenant starting"
        );
        Ok(Self {
            config: tenant.clone(),
            shared,
            pauser,
            stats,
            registry,
            status,
            start,
            stop,
            task,
            #[cfg(test)]
            consumer_context,
        })
    }

    /// Stops taking new messages (in-flight ones finish and commit; the consumer stays in its
    /// group), or takes them again.
    pub fn pauser(&self) -> &Pauser {
        &self.pauser
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Ends its canary now, by the operator's word: `promote`, or roll back.
    pub fn end_canary(&self, promote: bool) -> Result<(), EndError> {
        let rollout = self.shared.rollout.load_full();
        let Some(RolloutSlot::Canary(canary)) = rollout.as_deref() else {
            return Err(EndError::NoCanary(self.name().to_owned()));
        };
        let (by, why) = (By::Operator, "by the admin endpoint".to_owned());
        let end = if promote {
            End::Promoted { by, why }
        } else {
            End::RolledBack { by, why }
        };
        self.shared.end_canary(canary, end, "operator")
    }

    /// Puts `rollout` beside the live version in place of the one there (if any), as a hot
    /// swap: the workers' next batches see it; nothing restarts. Its metrics replace the old
    /// one's in the tenant's registry.
    pub fn set_rollout(&self, rollout: Option<Rollout>) -> Result<(), prometheus::Error> {
        install_rollout(&self.shared, &self.registry, &self.stop, rollout)
    }

    /// Its pool's stats now.
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// What it waits for and for how long, while it starts (`None` once it has its first
    /// assignment).
    pub fn starting(&self) -> Option<String> {
        self.start.waiting()
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
                self.shared.slot.share().configure(config.limits.cpu());
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
    pub async fn stop(self) -> Result<(), RunError> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(tenant = %self.shared.name, error = %e, "tenant task failed");
                Ok(())
            }
        }
    }

    /// Its plugin calls' time on the executor: in all, and its part of every tenant's lately
    /// (about the last second), beside the weight and cap it has.
    fn cpu_report(&self) -> serde_json::Value {
        let share = self.shared.slot.share();
        serde_json::json!({
            "seconds": share.run_time().as_secs_f64(),
            "recent_share": share.recent(),
            "weight": self.config.limits.cpu_weight,
            "cap_cores": self.config.limits.cpu,
        })
    }

    /// A summary for `/stats`.
    pub fn report(&self) -> serde_json::Value {
        let mut report = serde_json::json!({
            "plugin": self.plugin(),
            "topics": self.config.topics,
            "group_id": self.config.group_id,
            "status": self.status(),
            "delivery": if self.shared.exactly_once { "exactly-once" } else { "at-least-once" },
            "paused": self.pauser.is_paused(),
            "start": self.start.report(),
            "pool": self.stats(),
            "plugin_cpu": self.cpu_report(),
            "plugin_memory_bytes": self.shared.slot.memory().bytes(),
        });
        if let Some(rollout) = &*self.shared.rollout.load() {
            report["rollout"] = rollout.report();
        }
        report
    }
}

/// See [`RunningTenant::set_rollout`]; a canary's judge runs until `stop`.
fn install_rollout(
    shared: &Arc<Shared>,
    registry: &Registry,
    stop: &CancellationToken,
    rollout: Option<Rollout>,
) -> Result<(), prometheus::Error> {
    let next = rollout
        .map(|r| RolloutSlot::new(r, &shared.name, shared.slot.account()))
        .transpose()?
        .map(Arc::new);
    let old = shared.rollout.swap(next.clone());
    for collector in old.iter().flat_map(|old| old.collectors()) {
        let _ = registry.unregister(collector);
    }
    let Some(next) = next else {
        return Ok(());
    };
    for collector in next.collectors() {
        registry.register(collector)?;
    }
    if let RolloutSlot::Canary(_) = &*next {
        tokio::spawn(judge(Arc::clone(shared), next, stop.clone()));
    }
    Ok(())
}

/// What a tenant's task does before its pool runs.
struct Setup {
    topics: Vec<String>,
    group: String,
    /// Exactly-once: its transactional producer's `transactional.id` and settings.
    transactional: Option<(String, ClientConfig)>,
}

/// The tenant's task: starts it (see [`start`]), runs its pool until `stop` or a halt, and
/// records a halt in `status`.
async fn run(
    pool: Pool,
    shared: Arc<Shared>,
    setup: Setup,
    stop: CancellationToken,
    status: Arc<Mutex<TenantStatus>>,
    start: Arc<Start>,
) -> Result<(), RunError> {
    // The pool's own logs (commits, rebalances, failures) carry the tenant through this span.
    let span = tracing::info_span!("tenant", tenant = %shared.name);
    let result = serve(pool, &shared, setup, &stop, &start)
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

/// Initialises the tenant's transactions (if it has any), subscribes its consumer and runs its
/// pool, while the start is watched: a start that outlasts `start_timeout` ends the run as a
/// stop would, and is its error.
async fn serve(
    mut pool: Pool,
    shared: &Arc<Shared>,
    setup: Setup,
    stop: &CancellationToken,
    start: &Start,
) -> Result<(), RunError> {
    // Cancelled when the start runs out of time.
    let gave_up = CancellationToken::new();
    let stats = pool.stats_handle();
    let watch = async {
        // The first assignment, even an empty one, is a rebalance the pool counts.
        let joined = || {
            let stats = stats.get();
            (stats.rebalances > 0 || stats.assigned_partitions > 0)
                .then_some(stats.assigned_partitions)
        };
        let watched = start.watch(&shared.name, joined).await;
        if watched.is_err() {
            gave_up.cancel();
        }
        watched
    };
    let ended = || async {
        tokio::select! {
            () = stop.cancelled() => {}
            () = gave_up.cancelled() => {}
        }
    };
    let work = async {
        if let Some((id, config)) = setup.transactional {
            match init_transactions(id, &config, start, ended()).await {
                Ok(Some(transactions)) => pool = pool.with_transactions(transactions),
                Ok(None) => return Ok(()),
                Err(e) => return Err(RunError::Start(e)),
            }
        }
        let topics: Vec<&str> = setup.topics.iter().map(String::as_str).collect();
        pool.consumer()
            .subscribe(&topics)
            .map_err(|e| RunError::Start(StartError::Consumer(e)))?;
        start.enter(Phase::Joining { group: setup.group });
        let handlers = Arc::clone(shared);
        pool.run_with(ended(), move |worker| {
            PluginHandler::new(Arc::clone(&handlers), worker)
        })
        .await
        .map_err(RunError::Pool)
    };
    tokio::pin!(watch, work);
    let mut watching = true;
    let mut timed_out = None;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            watched = &mut watch, if watching => {
                watching = false;
                timed_out = watched.err();
            }
        }
    };
    match timed_out {
        Some(e) => Err(RunError::Start(StartError::TimedOut(e))),
        None => result,
    }
}

/// The tenant's transactional producer, its transactions initialised (see
/// [`Transactions::new`]): each try on a thread of its own, so a `stop` or the end of the
/// start's time is not held by it (the thread ends with its try, at most
/// [`TRANSACTION_TIMEOUT`] later). A failure librdkafka calls retriable (the coordinator did
/// not answer in time) is tried again; `None` if `ended` comes first.
async fn init_transactions(
    id: String,
    config: &ClientConfig,
    start: &Start,
    ended: impl Future<Output = ()>,
) -> Result<Option<Transactions>, StartError> {
    tokio::pin!(ended);
    loop {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let attempt = config.clone();
        std::thread::Builder::new()
            .name("burrow-txn-init".into())
            .spawn(move || {
                let _ = answer.send(Transactions::new(&attempt, TRANSACTION_TIMEOUT));
            })
            .map_err(StartError::Thread)?;
        let tried = tokio::select! {
            tried = answered => tried,
            () = &mut ended => return Ok(None),
        };
        let error = match tried {
            Ok(Ok(transactions)) => return Ok(Some(transactions)),
            Ok(Err(error)) if is_retriable(&error) => error,
            Ok(Err(error)) => return Err(StartError::Transactions { id, error }),
            // The thread panicked: librdkafka's, not a case to try again.
            Err(_) => {
                return Err(StartError::Thread(std::io::Error::other(
                    "the thread initialising transactions ended without an answer",
                )));
            }
        };
        tracing::warn!(transactional_id = %id, error = %error, "initialising transactions failed; trying again");
        start.retried(error.to_string());
        tokio::select! {
            () = tokio::time::sleep(TRANSACTION_RETRY_DELAY) => {}
            () = &mut ended => return Ok(None),
        }
    }
}

/// Whether initialising transactions may succeed if tried again (librdkafka says so of a
/// coordinator that did not answer within the timeout).
fn is_retriable(error: &TransactionError) -> bool {
    matches!(
        error,
        TransactionError::Fatal(rdkafka::error::KafkaError::Transaction(e)) if e.is_retriable()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;
    use crate::pool::HaltReason;
    use crate::wasm::RuntimeConfig;

    /// Hang guard only: a broken tenant fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// Waits (bounded by [`PATIENCE`]) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A tenant whose poll thread dies is halted, visibly: its status says `halted` with the
    /// reason (what `/stats` shows and `/readyz` names), its task ends, and what it processed
    /// before is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_whose_consumer_stops_fetching_is_halted_with_the_reason() -> anyhow::Result<()>
    {
        let mock = MockCluster::new(1)?;
        mock.create_topic("in", 1, 1)?;
        let brokers = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        for i in 0..3 {
            let value = format!(r#"{{"n":{i}}}"#);
            producer
                .send(BaseRecord::<(), _>::to("in").partition(0).payload(&value))
                .map_err(|(e, _)| e)?;
        }
        producer.flush(Duration::from_secs(10))?;
        let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/plugins/passthrough.wasm");
        anyhow::ensure!(plugin.is_file(), "run `make plugins` first");
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"

[pool]
commit_interval = "50ms"

[[tenant]]
name = "t"
group_id = "t-group"
topics = ["in"]
plugin = {plugin:?}
on_failure = "skip"
"#
        );
        let config = HostConfig::parse(&text, std::iter::empty())?;
        config.validate()?;
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let tenant = RunningTenant::start(&config, &config.tenants[0], &runtime)?;
        until("3 processed and committed", || {
            let stats = tenant.stats();
            stats.messages_processed == 3
                && stats
                    .partitions
                    .iter()
                    .any(|p| p.committed_offset == Some(3))
        })
        .await;
        assert_eq!(tenant.status().halted, None);

        tenant.consumer_context.inject_poll_panic();
        until("the tenant to halt", || tenant.status().halted.is_some()).await;
        let halted = tenant.status().halted.unwrap_or_default();
        assert!(
            halted.contains("consumer stopped fetching")
                && halted.contains("injected poll-thread fault"),
            "the status names why: {halted}"
        );
        until("the tenant task to end", || tenant.has_stopped()).await;
        let result = tenant.stop().await;
        assert!(
            matches!(
                result,
                Err(RunError::Pool(PoolError::Halted(
                    HaltReason::ConsumerStopped { .. }
                )))
            ),
            "{result:?}"
        );

        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "t-group")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("in", 0);
        let committed = reader.committed_offsets(tpl, Duration::from_secs(10))?;
        let offset = committed.elements().first().map(|e| e.offset());
        assert_eq!(
            offset,
            Some(Offset::Offset(3)),
            "committed up to what was done"
        );
        Ok(())
    }
}
