//! Many tenants in one host (issue 20): whether one tenant can take another's CPU (B11), and
//! what a tenant costs while it waits (B12).
//!
//! B11 runs B3's tenant (passthrough over the dataset) alone, then beside a tenant whose every
//! message burns [`BURN`] of CPU in the plugin (chaos, `sleep`: a busy loop) over a topic of
//! its own, first with the same weight, then capped at a quarter of a core (`limits.cpu`). Its
//! rate beside the other is compared with its rate alone. The quiet tenant does not want its
//! fair half of the plugin executor (most of its cost is its poll thread and pool), so the
//! shares are read where both tenants want all of it: two CPU-burning tenants, weights
//! [`HEAVY_WEIGHT`] and 1, their `burrow_tenant_cpu_seconds_total` read every second; the light
//! one's share in each window is compared with its weighted share.
//!
//! B12 starts one host with [`IDLE_TENANTS`] passthrough tenants, each with its own group and
//! its own one-partition topic of [`IDLE_RECORDS`] records (as the issue measured: a tenant
//! that has worked, then waits), and reads:
//! - the time from spawning the process to every tenant holding its partition (`/stats`);
//! - once every tenant has processed its records, and after [`SETTLE`], the process's CPU over
//!   [`IDLE_WINDOW`] with nothing to do, as a share of one core (each thread's `schedstat`);
//! - its resident set and OS threads then, per tenant: the difference from a host with one
//!   such tenant, over the tenants added.
//!
//! The goal counts a tenant's memory beyond its plugin instances'. Their linear memory
//! (`burrow_plugin_memory_bytes`) is what they reserved, not what is resident (a passthrough
//! instance's 1.1 MiB is mostly untouched pages), so it cannot be subtracted from a resident
//! set. The row with the goal is measured the same way on tenants that never got a message:
//! no instance is made then (a worker makes its instance on its first call), nor a plugin
//! thread; the tenants that worked give the figure in all, beside it.
//!
//! The thread goal is librdkafka's own threads for one consumer, measured in the same run: a
//! consumer made in this process, joined to a group, the process's threads counted before and
//! after.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use burrow_e2e::kafka::create_topic;
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::unique;

use super::cases::{Bench, consumer_config};
use super::cpu::{Stage, Threads};
use super::data;
use super::host::{Host, TENANT, TenantSpec, proc_status};
use super::{Figure, Goal, Row, median};

/// What each message of B11's noisy tenant costs: a busy loop in the plugin.
pub const BURN: &str = "sleep:20";
/// The noisy tenant's records: at 20 ms of CPU each, more than it can get through while the
/// quiet tenant reads the dataset.
const NOISY_RECORDS: u64 = 5_000;
/// The noisy tenant's name.
const NOISY: &str = "noisy";
/// The noisy tenant's cap in B11's second row.
const CAP: &str = "cpu = 0.25";
/// The heavier tenant's `cpu_weight` in B11's shares (the other's is 1).
const HEAVY_WEIGHT: u32 = 3;
/// One-second windows of B11's shares.
const WINDOWS: usize = 10;

/// Tenants of B12's host. The goals put the idle CPU and the start at 100 tenants and
/// the memory and threads per tenant at 500; 500 today would take ~10 GiB and ~10,000 threads
/// (~20 per tenant), so the per-tenant figures are read at 100 until that changes.
pub const IDLE_TENANTS: usize = 100;
/// Records in each of B12's topics: each tenant's workers make their instances.
const IDLE_RECORDS: u64 = 2_000;
/// Waited after every tenant has processed its records, before the idle window: the last
/// commits and fetches are over.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the idle CPU is read over.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// How long a host may take to get every tenant its partition before the case fails.
const ASSIGNED_WITHIN: Duration = Duration::from_secs(300);

/// What one host of idle tenants measured.
struct Idle {
    /// Spawn to every tenant assigned.
    assigned: Duration,
    /// Share of one core over the idle window.
    cpu: f64,
    /// The same, per stage (by thread name), as text.
    stages: String,
    rss_mib: f64,
    /// The plugin instances' linear memory, all tenants'.
    instances_mib: f64,
    threads: f64,
}

impl Bench<'_> {
    /// B11: a quiet tenant beside a CPU-burning one, then beside the same one capped, then
    /// two CPU-burning tenants' shares (see the module docs).
    pub fn b11_noisy_neighbour(&self) -> anyhow::Result<Vec<Row>> {
        let noisy_topic = unique("bench-noisy");
        data::dataset(self.broker, &noisy_topic, NOISY_RECORDS)?;
        let solo = self.median_of("B11 quiet tenant alone", || {
            self.host_rate(&self.tenant("passthrough")?)
        })?;
        let beside = |label: &str, limits: &[&str]| {
            self.median_of(label, || {
                let quiet = self.tenant("passthrough")?;
                let mut noisy = self.burning(&noisy_topic)?;
                noisy.limits = limits.iter().map(|l| (*l).to_owned()).collect();
                let mut host =
                    Host::start_tenants(self.broker, &[(TENANT, &quiet), (NOISY, &noisy)])?;
                let rate = host.rate(self.data.messages, self.options.cap, |_, _, _| Ok(false))?;
                host.stop()?;
                Ok(rate)
            })
        };
        let equal = beside("B11 quiet tenant beside a CPU-burning one", &[])?;
        let capped = beside(
            "B11 quiet tenant beside a CPU-burning one capped at 0.25 cores",
            &[CAP],
        )?;
        let windows = self.weighted_windows()?;
        let expected = 1.0 / f64::from(HEAVY_WEIGHT + 1);
        let deviations = windows
            .iter()
            .map(|share| (share - expected).abs() / expected);
        let worst = deviations.fold(0.0_f64, f64::max) * 100.0;
        let middle = median(windows.clone()).context("no windows")? * 100.0;
        let burning = format!("chaos `{BURN}` on every message, default config (10 workers)");
        Ok(vec![
            Row::against(
                "B11",
                "quiet tenant beside a CPU-burning one, equal weights",
                self.kind,
                equal,
                (solo, "the same tenant alone"),
                0.5,
            )
            .note(format!("the other tenant: {burning}")),
            Row::against(
                "B11",
                "quiet tenant beside a CPU-burning one capped at `limits.cpu = 0.25`",
                self.kind,
                capped,
                (solo, "the same tenant alone"),
                0.8,
            )
            .note(format!("the other tenant: {burning}, `{CAP}`")),
            Row {
                case: "B11",
                what: format!(
                    "two CPU-burning tenants, weights {HEAVY_WEIGHT} and 1: the light one's share of their plugin CPU, worst 1 s window"
                ),
                broker: self.kind,
                messages: 0,
                figure: Figure::Percent(worst),
                baseline: None,
                ratio: None,
                goal: Goal::AtMost(Figure::Percent(10.0)),
                met: Some(worst <= 10.0),
                note: format!(
                    "off its weighted share ({:.0}%) by this much of it, over {} windows of contention (burrow_tenant_cpu_seconds_total each second); median share {middle:.1}%",
                    expected * 100.0,
                    windows.len()
                ),
                cpu: None,
            },
        ])
    }

    /// A tenant of the chaos plugin over `topic` whose every message burns [`BURN`].
    fn burning(&self, topic: &str) -> anyhow::Result<TenantSpec> {
        let mut tenant = self.tenant("chaos")?;
        tenant.topic = topic.to_owned();
        tenant.settings = vec![("default-action".into(), BURN.into())];
        Ok(tenant)
    }

    /// Two tenants that burn CPU on every message, weights [`HEAVY_WEIGHT`] and 1: the light
    /// one's share of their plugin time in each of [`WINDOWS`] one-second windows, once both
    /// have begun.
    fn weighted_windows(&self) -> anyhow::Result<Vec<f64>> {
        let topics = [unique("bench-heavy"), unique("bench-light")];
        for topic in &topics {
            data::dataset(self.broker, topic, NOISY_RECORDS)?;
        }
        let mut heavy = self.burning(&topics[0])?;
        heavy.limits = vec![format!("cpu_weight = {HEAVY_WEIGHT}")];
        let light = self.burning(&topics[1])?;
        let host = Host::start_tenants(self.broker, &[("heavy", &heavy), ("light", &light)])?;
        let seconds = |host: &Host| -> anyhow::Result<(f64, f64)> {
            let of = |tenant| host.metric_of("burrow_tenant_cpu_seconds_total", tenant);
            Ok((of("heavy")?, of("light")?))
        };
        let began = Instant::now();
        loop {
            // Refused until the admin listener is up.
            let (h, l) = seconds(&host).unwrap_or_default();
            if h > 0.0 && l > 0.0 {
                break;
            }
            if began.elapsed() > ASSIGNED_WITHIN {
                bail!("the two tenants never both ran; log:\n{}", host.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A second for both to have every worker busy.
        std::thread::sleep(Duration::from_secs(1));
        let mut shares = Vec::new();
        let mut last = seconds(&host)?;
        for _ in 0..WINDOWS {
            std::thread::sleep(Duration::from_secs(1));
            let now = seconds(&host)?;
            let (h, l) = (now.0 - last.0, now.1 - last.1);
            shares.push(l / (h + l).max(f64::MIN_POSITIVE));
            last = now;
        }
        host.stop()?;
        Ok(shares)
    }

    /// B12: idle tenants (see the module docs).
    pub fn b12_idle_tenants(&self) -> anyhow::Result<Vec<Row>> {
        let consumer_threads = self.consumer_threads()?;
        let one = self.idle_host(1, IDLE_RECORDS)?;
        let many = self.idle_host(IDLE_TENANTS, IDLE_RECORDS)?;
        let unused = self.idle_host(IDLE_TENANTS, 0)?;
        let unused_one = self.idle_host(1, 0)?;
        eprintln!(
            "[{}] B12: 1 tenant: {:.0} MiB, {:.0} threads; {IDLE_TENANTS} tenants: {:.0} MiB, {:.0} threads, {:.1}% of a core idle, all assigned after {:.1} s; a consumer's own threads: {consumer_threads:.0}",
            self.kind,
            one.rss_mib,
            one.threads,
            many.rss_mib,
            many.threads,
            many.cpu * 100.0,
            many.assigned.as_secs_f64()
        );
        let added = (IDLE_TENANTS - 1) as f64;
        let rss_each = (many.rss_mib - one.rss_mib) / added;
        let unused_each = (unused.rss_mib - unused_one.rss_mib) / added;
        let threads_each = (many.threads - one.threads) / added;
        let start_ms = many.assigned.as_secs_f64() * 1000.0;
        let row = |what: String, figure: Figure, goal: Goal, met: Option<bool>, note: String| Row {
            case: "B12",
            what,
            broker: self.kind,
            messages: 0,
            figure,
            baseline: None,
            ratio: None,
            goal,
            met,
            note,
            cpu: None,
        };
        let n = IDLE_TENANTS;
        Ok(vec![
            row(
                format!("{n} idle tenants: spawn to every tenant assigned"),
                Figure::Millis(start_ms),
                Goal::AtMost(Figure::Millis(15_000.0)),
                Some(start_ms <= 15_000.0),
                String::new(),
            ),
            row(
                format!("{n} idle tenants: CPU while idle, of one core"),
                Figure::Percent(many.cpu * 100.0),
                Goal::AtMost(Figure::Percent(2.0)),
                Some(many.cpu <= 0.02),
                format!(
                    "the whole process over {} s, {} s after every tenant had processed its records: {}; tenants that never got a message: {:.1}%",
                    IDLE_WINDOW.as_secs(),
                    SETTLE.as_secs(),
                    many.stages,
                    unused.cpu * 100.0
                ),
            ),
            row(
                format!("{n} idle tenants: RSS per tenant, no instance made"),
                Figure::MiB(unused_each),
                Goal::AtMost(Figure::MiB(3.0)),
                Some(unused_each <= 3.0),
                format!(
                    "tenants that never got a message: {:.0} MiB with {n}, {:.0} MiB with 1, {:.1} threads each",
                    unused.rss_mib,
                    unused_one.rss_mib,
                    (unused.threads - unused_one.threads) / added
                ),
            ),
            row(
                format!("{n} idle tenants: RSS per tenant, after {IDLE_RECORDS} messages each"),
                Figure::MiB(rss_each),
                Goal::None,
                None,
                format!(
                    "{:.0} MiB with {n} tenants, {:.0} MiB with 1; with each worker's instance (their linear memory: {:.0} MiB reserved in all)",
                    many.rss_mib, one.rss_mib, many.instances_mib
                ),
            ),
            row(
                format!("{n} idle tenants: OS threads per tenant"),
                Figure::Count(threads_each),
                Goal::AtMost(Figure::Count(consumer_threads)),
                Some(threads_each <= consumer_threads),
                format!(
                    "{:.0} threads with {n} tenants, {:.0} with 1; the goal: librdkafka's own for one consumer, measured in this run ({consumer_threads:.0})",
                    many.threads, one.threads
                ),
            ),
        ])
    }

    /// A host of `n` idle passthrough tenants that have each processed `records` first,
    /// measured (see the module docs).
    fn idle_host(&self, n: usize, records: u64) -> anyhow::Result<Idle> {
        let plugin = plugin_path("passthrough")?;
        let mut specs = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = unique("bench-idle");
            create_topic(self.broker, &topic, 1)?;
            if records > 0 {
                data::produce(self.broker, &topic, records, None)?;
            }
            specs.push(TenantSpec::new(
                &unique("bench-idle"),
                &topic,
                &plugin,
                &self.dead_letters,
            ));
        }
        let names: Vec<String> = (0..n).map(|i| format!("idle-{i}")).collect();
        let tenants: Vec<(&str, &TenantSpec)> =
            names.iter().map(String::as_str).zip(specs.iter()).collect();
        let mut host = Host::start_tenants(self.broker, &tenants)?;
        let assigned = wait_assigned(&mut host, &names)?;
        wait_processed(&mut host, &names, records)?;
        std::thread::sleep(SETTLE);
        let before = Threads::of(host.pid())?;
        let started = Instant::now();
        std::thread::sleep(IDLE_WINDOW);
        let after = Threads::of(host.pid())?;
        let window = started.elapsed();
        let window_ns = window.as_nanos() as f64;
        let cpu = after.spent_since(&before, |_| true) as f64 / window_ns;
        let stages: Vec<String> = Stage::ALL
            .iter()
            .map(|stage| {
                let ns = after.spent_since(&before, |name| Stage::of(name) == *stage);
                format!("{} {:.1}%", stage.name(), ns as f64 / window_ns * 100.0)
            })
            .collect();
        let stages = stages.join(", ");
        let (rss_mib, _) = host.memory()?;
        let threads = host.threads()?;
        let instances_mib = host.metric_sum("burrow_plugin_memory_bytes")? / (1024.0 * 1024.0);
        host.stop()?;
        Ok(Idle {
            assigned,
            cpu,
            stages,
            rss_mib,
            instances_mib,
            threads,
        })
    }

    /// librdkafka's own threads for one consumer: this process's threads before a consumer is
    /// made and once it has joined its group.
    fn consumer_threads(&self) -> anyhow::Result<f64> {
        let pid = std::process::id();
        let before = proc_status(pid, "Threads:")?;
        let topic = unique("bench-idle");
        create_topic(self.broker, &topic, 1)?;
        let consumer: BaseConsumer = consumer_config(self.broker, "bench-threads").create()?;
        consumer.subscribe(&[topic.as_str()])?;
        let deadline = Instant::now() + ASSIGNED_WITHIN;
        while consumer.assignment()?.count() == 0 {
            if Instant::now() > deadline {
                bail!("a consumer was not assigned {topic} within {ASSIGNED_WITHIN:?}");
            }
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let during = proc_status(pid, "Threads:")?;
        drop(consumer);
        Ok(during - before)
    }
}

/// Waits until every one of `names` has processed its `records`.
fn wait_processed(host: &mut Host, names: &[String], records: u64) -> anyhow::Result<()> {
    wait_all(
        host,
        names,
        &format!("processed its {records} records"),
        |pool| {
            pool["messages_processed"]
                .as_u64()
                .is_some_and(|n| n >= records)
        },
    )
    .map(|_| ())
}

/// Waits until every one of `names` holds a partition; the time since the host was spawned.
fn wait_assigned(host: &mut Host, names: &[String]) -> anyhow::Result<Duration> {
    wait_all(host, names, "been assigned", |pool| {
        pool["partitions"].as_array().is_some_and(|p| !p.is_empty())
    })
}

/// Waits until `done` holds for the pool stats of every one of `names` (`what` says what it
/// waits for, in an error); the time since the host was spawned.
fn wait_all(
    host: &mut Host,
    names: &[String],
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<Duration> {
    loop {
        if let Some(stats) = host.stats()?
            && names
                .iter()
                .all(|name| done(&stats["tenants"][name.as_str()]["pool"]))
        {
            return Ok(host.spawned.elapsed());
        }
        if host.spawned.elapsed() > ASSIGNED_WITHIN {
            bail!(
                "B12: not every tenant had {what} within {ASSIGNED_WITHIN:?}; log:\n{}",
                host.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
