//! A tenant's own metrics, beside its pool's: what the plugin did and what the host produced.
//! All carry the `tenant` label, so one registry serves every tenant.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::wasm::Account;

/// Counters the tenant's workers and supervisor bump.
#[derive(Clone)]
pub struct TenantMetrics {
    pub(crate) emitted: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) traps: IntCounter,
    pub(crate) timeouts: IntCounter,
    pub(crate) memory_exceeded: IntCounter,
    pub(crate) instantiate_failures: IntCounter,
    pub(crate) reloads: IntCounter,
    pub(crate) reload_failures: IntCounter,
    /// 1 for the plugin version running now, labelled with its name and version.
    pub(crate) plugin_info: IntGaugeVec,
}

impl TenantMetrics {
    /// Registers the tenant's metrics in `registry`.
    pub fn register(registry: &Registry, tenant: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("tenant", tenant);
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(opts(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let plugin_info = IntGaugeVec::new(
            opts(
                "burrow_plugin_info",
                "The plugin version a tenant runs (value 1)",
            ),
            &["plugin", "version"],
        )?;
        registry.register(Box::new(plugin_info.clone()))?;
        Ok(Self {
            emitted: counter(
                "burrow_records_emitted_total",
                "Records plugins emitted and the broker acknowledged",
            )?,
            dead_lettered: counter(
                "burrow_messages_dead_lettered_total",
                "Failed messages produced to the dead-letter topic and acknowledged",
            )?,
            traps: counter(
                "burrow_plugin_traps_total",
                "Plugin calls that trapped (panic, fuel exhausted, invalid operation)",
            )?,
            timeouts: counter(
                "burrow_plugin_timeouts_total",
                "Plugin calls stopped at their deadline",
            )?,
            memory_exceeded: counter(
                "burrow_plugin_memory_exceeded_total",
                "Plugin calls stopped at their memory cap",
            )?,
            instantiate_failures: counter(
                "burrow_plugin_instantiate_failures_total",
                "Plugin instances that could not be created",
            )?,
            reloads: counter(
                "burrow_plugin_reloads_total",
                "Plugin versions swapped in while running",
            )?,
            reload_failures: counter(
                "burrow_plugin_reload_failures_total",
                "Plugin versions refused at reload (the old one kept running)",
            )?,
            plugin_info,
        })
    }

    /// Records that `name@version` now runs.
    pub(crate) fn set_plugin(&self, name: &str, version: &str) {
        self.plugin_info.reset();
        self.plugin_info.with_label_values(&[name, version]).set(1);
    }
}

/// What a tenant's plugin calls are charged to ([`Account`]), read when scraped (instances
/// count their growth, and the executor their run time, there; no call path sets a metric):
/// - `burrow_plugin_memory_bytes`: the linear memory its plugin instances hold;
/// - `burrow_tenant_cpu_seconds_total`: how long its calls have run on the plugin executor.
pub(crate) struct AccountMetrics {
    account: Account,
    memory: IntGauge,
    cpu: Counter,
    descs: Vec<Desc>,
}

impl AccountMetrics {
    /// Registers the metrics of `tenant`'s `account` in `registry`.
    pub(crate) fn register(
        registry: &Registry,
        tenant: &str,
        account: Account,
    ) -> Result<(), prometheus::Error> {
        let memory = IntGauge::with_opts(
            Opts::new(
                "burrow_plugin_memory_bytes",
                "Linear memory held by a tenant's plugin instances",
            )
            .const_label("tenant", tenant),
        )?;
        let cpu = Counter::with_opts(
            Opts::new(
                "burrow_tenant_cpu_seconds_total",
                "Time a tenant's plugin calls have run on the plugin executor",
            )
            .const_label("tenant", tenant),
        )?;
        let descs = memory
            .desc()
            .into_iter()
            .chain(cpu.desc())
            .cloned()
            .collect();
        registry.register(Box::new(Self {
            account,
            memory,
            cpu,
            descs,
        }))
    }
}

impl Collector for AccountMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.memory
            .set(i64::try_from(self.account.memory.bytes()).unwrap_or(i64::MAX));
        // A counter only goes up: add what ran since the last scrape.
        let ran = self.account.cpu.run_time().as_secs_f64() - self.cpu.get();
        if ran > 0.0 {
            self.cpu.inc_by(ran);
        }
        self.memory
            .collect()
            .into_iter()
            .chain(self.cpu.collect())
            .collect()
    }
}
