//! One function per case. Every throughput figure is timed from the first message handled to
//! the last (the group join is not counted), over one dataset per broker read by a fresh
//! consumer group each time.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use burrow_e2e::broker::Broker;
use burrow_e2e::kafka::{create_topic, wait_committed};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::unique;
use burrow_pool::{Attempt, Config, Consumer, Handler, Message, Ordering, Pool, ProcessError};
use burrow_pool::{Pending, Processed};

use super::data::{self, Dataset, Lead};
use super::host::{Host, TenantSpec, membership};
use super::peer;
use super::{BrokerKind, Figure, Goal, Options, Rate, Row, median, median_rate};

/// A broker with its dataset, shared by the cases run on it.
pub struct Bench<'a> {
    pub broker: &'a Broker,
    pub kind: BrokerKind,
    pub data: Dataset,
    pub options: &'a Options,
    /// The dead-letter topic every host tenant names (the default policy needs one; nothing
    /// here fails, so nothing lands in it).
    pub dead_letters: String,
    /// The long run's records (`options.long_messages`), produced when B6 or B7 first needs them.
    long: std::cell::OnceCell<Dataset>,
    runtime: tokio::runtime::Runtime,
}

impl<'a> Bench<'a> {
    /// Produces the dataset on `broker`.
    pub fn new(broker: &'a Broker, kind: BrokerKind, options: &'a Options) -> anyhow::Result<Self> {
        let started = Instant::now();
        let data = data::dataset(
            broker,
            &unique("bench"),
            data::fitting(broker, options.messages),
        )?;
        eprintln!(
            "[{kind}] produced {} records in {:.1} s",
            data.messages,
            started.elapsed().as_secs_f64()
        );
        let dead_letters = unique("bench-dlq");
        create_topic(broker, &dead_letters, 1)?;
        Ok(Self {
            broker,
            kind,
            data,
            options,
            dead_letters,
            long: std::cell::OnceCell::new(),
            runtime: tokio::runtime::Runtime::new()?,
        })
    }

    /// The long dataset, produced on first use.
    fn long(&self) -> anyhow::Result<&Dataset> {
        if let Some(long) = self.long.get() {
            return Ok(long);
        }
        let started = Instant::now();
        let long = data::dataset(
            self.broker,
            &unique("bench-long"),
            data::fitting(self.broker, self.options.long_messages),
        )?;
        eprintln!(
            "[{}] produced {} records (long run) in {:.1} s",
            self.kind,
            long.messages,
            started.elapsed().as_secs_f64()
        );
        Ok(self.long.get_or_init(|| long))
    }

    /// `options.runs` measurements of `one`, and their median.
    pub(super) fn median_of(
        &self,
        what: &str,
        mut one: impl FnMut() -> anyhow::Result<Rate>,
    ) -> anyhow::Result<Rate> {
        let mut runs = Vec::new();
        for i in 0..self.options.runs {
            let rate = one().with_context(|| format!("{what}, run {}", i + 1))?;
            eprintln!(
                "[{}] {what}: run {}: {} msg/s ({} messages in {:.2} s)",
                self.kind,
                i + 1,
                super::thousands(rate.per_sec()),
                rate.messages,
                rate.secs
            );
            runs.push(rate);
        }
        median_rate(runs).context("no runs")
    }

    pub(super) fn tenant(&self, plugin: &str) -> anyhow::Result<TenantSpec> {
        Ok(TenantSpec::new(
            &unique("bench-host"),
            &self.data.topic,
            &plugin_path(plugin)?,
            &self.dead_letters,
        ))
    }

    /// B1: a bare `BaseConsumer` loop, no-op. The baseline of B2 and B3.
    pub fn b1_raw(&self) -> anyhow::Result<Rate> {
        self.median_of("B1 raw consumer", || {
            raw_consumer(self.broker, &self.data, self.options.cap)
        })
    }

    /// B2: the pool, default config, a native no-op handler, in each ordering mode.
    pub fn b2_pool(&self, raw: Rate) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut unordered = None;
        for (name, ordering) in [
            ("unordered", Ordering::Unordered),
            ("partition", Ordering::Partition),
            ("key", Ordering::Key),
        ] {
            let config = Config {
                ordering,
                ..Config::default()
            };
            let rate = self.median_of(&format!("B2 pool {name}"), || {
                self.runtime.block_on(pool_rate(
                    self.broker,
                    &self.data,
                    config.clone(),
                    self.options.cap,
                    |_m| async { Ok(()) },
                ))
            })?;
            let what = format!("pool, no-op, {name}");
            rows.push(Row::against(
                "B2",
                &what,
                self.kind,
                rate,
                (raw, "B1"),
                0.95,
            ));
            if ordering == Ordering::Key
                && let Some(unordered) = unordered
            {
                rows.push(Row::against(
                    "B2",
                    "pool, no-op, key vs unordered",
                    self.kind,
                    rate,
                    (unordered, "B2 unordered"),
                    0.95,
                ));
            }
            if ordering == Ordering::Unordered {
                unordered = Some(rate);
            }
        }
        Ok(rows)
    }

    /// B3: `burrow run`, passthrough plugin, default config; checks every offset is committed.
    pub fn b3_host(&self, raw: Rate) -> anyhow::Result<(Row, Rate)> {
        let rate = self.median_of("B3 burrow run passthrough", || {
            let tenant = self.tenant("passthrough")?;
            self.host_rate(&tenant)
        })?;
        let row = Row::against(
            "B3",
            "burrow run, passthrough, default config",
            self.kind,
            rate,
            (raw, "B1"),
            0.90,
        );
        Ok((row, rate))
    }

    /// Runs a host on `tenant` over the dataset; when it saw every message, waits for the
    /// group to commit every offset (not timed: the last commit waits for `commit_interval`).
    pub(super) fn host_rate(&self, tenant: &TenantSpec) -> anyhow::Result<Rate> {
        self.host_run(tenant, false).map(|(rate, _)| rate)
    }

    /// [`Self::host_rate`], with the tenant's pool stats at the end; `failing`: every message
    /// is meant to fail, and failed ones count as finished.
    fn host_run(
        &self,
        tenant: &TenantSpec,
        failing: bool,
    ) -> anyhow::Result<(Rate, serde_json::Value)> {
        let mut host = Host::start(self.broker, tenant)?;
        if failing {
            host = host.expecting_failures();
        }
        let rate = host.rate(self.data.messages, self.options.cap, |_, _, _| Ok(false))?;
        if rate_saw_all(&mut host, self.data.messages)? {
            wait_committed(
                self.broker,
                &tenant.group,
                &self.data.topic,
                &self.data.ends,
            )
            .context("the host processed every message but did not commit them all")?;
        }
        let stats = host.pool_stats()?;
        host.stop()?;
        Ok((rate, stats))
    }

    /// B4: json-validate emitting every message to an output topic, through the binary (against
    /// B3) and as a native pool handler (serde_json check + a `FutureProducer` send whose ack
    /// the message's result waits for, not the worker; the host producer's settings).
    pub fn b4_emit(&self, b3: Rate) -> anyhow::Result<(Vec<Row>, Rate)> {
        let plugin = self.median_of("B4 burrow run json-validate + emit", || {
            let mut tenant = self.tenant("json-validate")?;
            let out = unique("bench-out");
            create_topic(self.broker, &out, data::PARTITIONS)?;
            tenant.output = Some(out);
            self.host_rate(&tenant)
        })?;
        let native = self.median_of("B4 native json-validate + emit", || {
            let out = unique("bench-out");
            create_topic(self.broker, &out, data::PARTITIONS)?;
            let producer: FutureProducer = self
                .broker
                .client()
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "1")
                .create()
                .context("creating the native handler's producer")?;
            let out: Arc<str> = out.into();
            self.runtime.block_on(pool_rate_with(
                self.broker,
                &self.data,
                Config::default(),
                self.options.cap,
                move |counter| NativeEmit {
                    producer: producer.clone(),
                    out: Arc::clone(&out),
                    counter,
                },
            ))
        })?;
        let emit = Row::against(
            "B4",
            "burrow run, json-validate + emit, default config",
            self.kind,
            plugin,
            (b3, "B3"),
            0.5,
        );
        let mut versus = Row::against(
            "B4",
            "burrow run, json-validate + emit vs native",
            self.kind,
            plugin,
            (native, "native handler"),
            0.0,
        )
        .note("no goal: how far the plugin is from the same work in Rust");
        (versus.goal, versus.met, versus.cpu) = (Goal::None, None, None);
        Ok((vec![emit, versus], plugin))
    }

    /// B14: B4's job written as a Quix Streams user writes it, on the same data and broker,
    /// against B4: the row's ratio is how many times the peer's rate Burrow's is.
    pub fn b14_peer(&self, b4: Rate) -> anyhow::Result<Row> {
        let peer = self.median_of("B14 Quix Streams json filter + forward", || {
            let out = unique("bench-out");
            create_topic(self.broker, &out, data::PARTITIONS)?;
            peer::quix_rate(self.broker, &self.data, &out, self.options.cap)
        })?;
        let mut row = Row::against(
            "B14",
            "burrow run, json-validate + emit (B4) vs the same job in Quix Streams",
            self.kind,
            b4,
            (peer, peer::QUIX),
            0.0,
        )
        .note("no goal: how many times a Quix Streams app's rate Burrow's is (one process each)");
        (row.goal, row.met, row.cpu) = (Goal::None, None, None);
        Ok(row)
    }

    /// B9: B4's tenant with `delivery = "exactly-once"`, against B4 (at-least-once) from the
    /// same run; the note gives the mean transaction's records and time, over the runs.
    pub fn b9_exactly_once(&self, b4: Rate) -> anyhow::Result<Row> {
        let (mut transactions, mut records, mut micros) = (0u64, 0u64, 0u64);
        let rate = self.median_of("B9 burrow run json-validate + emit, exactly-once", || {
            let mut tenant = self.tenant("json-validate")?;
            let out = unique("bench-out");
            create_topic(self.broker, &out, data::PARTITIONS)?;
            tenant.output = Some(out);
            tenant.delivery = Some("exactly-once".into());
            let (rate, stats) = self.host_run(&tenant, false)?;
            let count = |key: &str| stats[key].as_u64().unwrap_or(0);
            transactions += count("transactions_committed");
            records += count("transaction_records");
            micros += count("transaction_micros");
            Ok(rate)
        })?;
        let per = |total: u64| total as f64 / transactions.max(1) as f64;
        let note = format!(
            "mean transaction: {:.0} records, {:.1} ms ({} transactions)",
            per(records),
            per(micros) / 1000.0,
            transactions
        );
        Ok(Row::against(
            "B9",
            "burrow run, json-validate + emit, exactly-once",
            self.kind,
            rate,
            (b4, "B4 at-least-once"),
            0.7,
        )
        .note(note))
    }

    /// B10: hostile input — every record fails (chaos with `default-action = "fail"`) and is
    /// dead-lettered, default config — against B4 from the same run: one record produced per
    /// message either way, a dead letter here, an emit there.
    pub fn b10_dead_letters(&self, b4: Rate) -> anyhow::Result<Row> {
        let rate = self.median_of("B10 burrow run, every record dead-lettered", || {
            let mut tenant = self.tenant("chaos")?;
            tenant.settings = vec![("default-action".into(), "fail".into())];
            tenant.pool = vec![format!("max_consecutive_errors = {}", u32::MAX)];
            let (rate, stats) = self.host_run(&tenant, true)?;
            let processed = stats["messages_processed"].as_u64().unwrap_or(0);
            anyhow::ensure!(
                processed == 0,
                "B10 expected every record to fail, {processed} did not"
            );
            Ok(rate)
        })?;
        Ok(Row::against(
            "B10",
            "burrow run, every record dead-lettered, default config",
            self.kind,
            rate,
            (b4, "B4 emit"),
            0.5,
        ))
    }

    /// B5: a 5 ms handler (tokio sleep), 100 workers, against 100 tasks sleeping 5 ms in a loop
    /// for the same wall time.
    pub fn b5_io(&self) -> anyhow::Result<Row> {
        const SLEEP: Duration = Duration::from_millis(5);
        const WORKERS: usize = 100;
        let mut pairs = Vec::new();
        for i in 0..self.options.runs {
            let config = Config {
                num_workers: WORKERS,
                ..Config::default()
            };
            let pool = self.runtime.block_on(pool_rate(
                self.broker,
                &self.data,
                config,
                self.options.cap,
                |_m| async {
                    tokio::time::sleep(SLEEP).await;
                    Ok(())
                },
            ))?;
            let wall = Duration::from_secs_f64(pool.secs);
            let loops = self.runtime.block_on(sleepers(WORKERS, SLEEP, wall));
            let base = Rate {
                messages: loops,
                secs: pool.secs,
                cpu: None,
            };
            eprintln!(
                "[{}] B5: run {}: pool {} msg/s, sleepers {} loops/s",
                self.kind,
                i + 1,
                super::thousands(pool.per_sec()),
                super::thousands(base.per_sec())
            );
            pairs.push((pool, base));
        }
        pairs.sort_by(|a, b| {
            (a.0.per_sec() / a.1.per_sec()).total_cmp(&(b.0.per_sec() / b.1.per_sec()))
        });
        let (pool, base) = pairs[(pairs.len() - 1) / 2];
        Ok(Row::against(
            "B5",
            "pool, 5 ms sleep, 100 workers",
            self.kind,
            pool,
            (base, "100 tasks sleeping 5 ms"),
            0.97,
        ))
    }

    /// B6: the binary under load, its plugin path switched between two copies of passthrough
    /// every second until it has processed the whole long dataset: the whole of it, because a
    /// partition reaching its end is when a fetch could stall the others (see `FETCH_DEFAULTS`
    /// in the pool's consumer). The figure is the longest time between two increases of
    /// `messages_processed`, sampled every 10 ms from `/stats` (so 10 ms is the floor and the
    /// resolution). The host's own count, not an output topic: passthrough emits nothing, and a
    /// swap stalls the count exactly when it stalls the work.
    pub fn b6_swap(&self) -> anyhow::Result<Row> {
        let long = self.long()?;
        let dir = tempfile::tempdir()?;
        let copies = [
            burrow_e2e::plugins::copy_plugin("passthrough", dir.path(), "a.wasm")?,
            burrow_e2e::plugins::copy_plugin("passthrough", dir.path(), "b.wasm")?,
        ];
        let mut gaps = Vec::new();
        let mut swaps_done = Vec::new();
        let mut messages = 0;
        for i in 0..self.options.runs {
            let mut tenant = TenantSpec::new(
                &unique("bench-host"),
                &long.topic,
                &copies[0],
                &self.dead_letters,
            );
            let mut host = Host::start(self.broker, &tenant)?;
            let mut last_increase: Option<(Instant, u64)> = None;
            let mut longest = Duration::ZERO;
            let mut next_swap = None;
            let mut swaps = 0usize;
            let rate = host.rate(long.messages, self.options.cap, |host, now, processed| {
                match last_increase {
                    Some((t, c)) if processed > c => {
                        longest = longest.max(now - t);
                        last_increase = Some((now, processed));
                    }
                    None => last_increase = Some((now, processed)),
                    _ => {}
                }
                let due = *next_swap.get_or_insert(now + Duration::from_secs(1));
                if now >= due {
                    swaps += 1;
                    tenant.plugin.clone_from(&copies[swaps % 2]);
                    host.rewrite(self.broker, &tenant)?;
                    next_swap = Some(due + Duration::from_secs(1));
                }
                Ok(false)
            })?;
            let reloads = host.metric("burrow_plugin_reloads_total")?;
            host.stop()?;
            eprintln!(
                "[{}] B6: run {}: longest gap {} ms over {} messages, {swaps} swaps asked, {reloads} done",
                self.kind,
                i + 1,
                longest.as_millis(),
                rate.messages
            );
            gaps.push(longest.as_secs_f64() * 1000.0);
            swaps_done.push(reloads);
            messages = rate.messages;
        }
        let gap = median(gaps).context("no runs")?;
        let swaps = median(swaps_done).unwrap_or(0.0);
        // What the broker alone gives over the same records, with no swap and no host.
        let (raw_gap, raw_at) = raw_longest_gap(self.broker, long)?;
        eprintln!(
            "[{}] B6: raw consumer over the same topic: longest gap {} ms, ending at message {raw_at}",
            self.kind,
            raw_gap.as_millis()
        );
        Ok(Row {
            cpu: None,
            case: "B6",
            what: "burrow run, hot swap every second: longest gap".into(),
            broker: self.kind,
            messages,
            figure: Figure::Millis(gap),
            baseline: Some((
                Figure::Millis(raw_gap.as_secs_f64() * 1000.0),
                "raw consumer's longest gap, same topic, no swap".into(),
            )),
            ratio: None,
            goal: Goal::AtMost(Figure::Millis(50.0)),
            // A run without a swap proves nothing.
            met: Some(gap <= 50.0 && swaps >= 1.0),
            note: format!(
                "{swaps:.0} swaps applied, one a second over the whole dataset (burrow_plugin_reloads_total, median run; the host looks every 1 s); /stats sampled every 10 ms"
            ),
        })
    }

    /// B7: the binary's peak RSS over a long run (passthrough), and over a run in which one
    /// message retries for the whole run, holding its partition's window (chaos plugin,
    /// `max_retries = 100`). Flat: the peak over the second half of the run is within 10 %
    /// (and 8 MiB) of the peak over the first half.
    pub fn b7_memory(&self) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();
        // The long run.
        let long = self.long()?;
        let tenant = TenantSpec::new(
            &unique("bench-host"),
            &long.topic,
            &plugin_path("passthrough")?,
            &self.dead_letters,
        );
        let (rate, first_half, second_half, peak, _) = memory_run(
            self.broker,
            &tenant,
            long.messages,
            Duration::from_secs(3600),
        )?;
        rows.push(flat_row(
            "burrow run, passthrough, long run: peak RSS",
            self.kind,
            rate.messages,
            (first_half, second_half, peak),
            String::new(),
        ));
        // The stuck message: first in partition 0, retried for the whole run.
        let stuck = unique("bench-stuck");
        create_topic(self.broker, &stuck, data::PARTITIONS)?;
        let lead = Lead {
            partition: 0,
            headers: &[("burrow-action", "retry")],
        };
        let stuck_messages = self.data.messages;
        let ends = data::produce(self.broker, &stuck, stuck_messages, Some(lead))?;
        data::check_kept(self.broker, &stuck)?;
        let held_partition = ends.get(&0).copied().unwrap_or(0);
        let mut tenant = TenantSpec::new(
            &unique("bench-host"),
            &stuck,
            &plugin_path("chaos")?,
            &self.dead_letters,
        );
        tenant.pool = vec!["max_retries = 100".into()];
        // Never all processed (the first record never is): the run ends when nothing moved for
        // 5 s, every other partition done and partition 0 stopped at its share of the bound.
        let (rate, first_half, second_half, peak, held) = memory_run(
            self.broker,
            &tenant,
            stuck_messages + 1,
            self.options.cap.max(Duration::from_secs(60)),
        )?;
        rows.push(flat_row(
            "burrow run, one message retrying all run: peak RSS",
            self.kind,
            rate.messages,
            (first_half, second_half, peak),
            format!(
                "partition 0 ({held_partition} records) held behind its first: {held} messages held there at the end; bound (defaults): job_queue_size 10000, max_buffered_bytes 64 MiB"
            ),
        ));
        Ok(rows)
    }

    /// B8: spawn to first processed message, with the compiled-code cache (warmed by a first
    /// start) and without, minus the time a raw consumer of a fresh group takes from its
    /// creation to its first message (the group join and first fetch, which no host can skip).
    pub fn b8_cold_start(&self) -> anyhow::Result<Vec<Row>> {
        let cache = tempfile::tempdir()?;
        // Warm the cache: one start that compiles and stores the plugin.
        let mut warm = self.tenant("json-validate")?;
        warm.cache_dir = Some(cache.path().to_owned());
        first_message(self.broker, &warm)?;
        let mut rows = Vec::new();
        for (label, cached) in [("cached", true), ("not cached", false)] {
            let (mut totals, mut joins, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..self.options.runs {
                let join = raw_first_message(self.broker, &self.data.topic)?;
                let mut tenant = self.tenant("json-validate")?;
                if cached {
                    tenant.cache_dir = Some(cache.path().to_owned());
                }
                let total = first_message(self.broker, &tenant)?;
                let (total_ms, join_ms) =
                    (total.as_secs_f64() * 1000.0, join.as_secs_f64() * 1000.0);
                eprintln!(
                    "[{}] B8 {label}: run {}: first message after {total_ms:.0} ms, raw consumer {join_ms:.0} ms",
                    self.kind,
                    i + 1
                );
                totals.push(total_ms);
                joins.push(join_ms);
                overheads.push(total_ms - join_ms);
            }
            let overhead = median(overheads).context("no runs")?;
            let total = median(totals).unwrap_or(0.0);
            let join = median(joins).unwrap_or(0.0);
            rows.push(Row {
                cpu: None,
                case: "B8",
                what: format!("cold start to first message, json-validate, {label}"),
                broker: self.kind,
                messages: 1,
                figure: Figure::Millis(overhead),
                baseline: Some((
                    Figure::Millis(join),
                    "raw consumer join + first fetch".into(),
                )),
                ratio: None,
                goal: if cached {
                    Goal::AtMost(Figure::Millis(100.0))
                } else {
                    Goal::None
                },
                met: cached.then_some(overhead <= 100.0),
                note: format!("spawn to first message {total:.0} ms, minus the raw consumer's"),
            });
        }
        Ok(rows)
    }
}

/// Whether the host has finished all `n` (the last sample may have been the cap instead).
fn rate_saw_all(host: &mut Host, n: u64) -> anyhow::Result<bool> {
    Ok(host.counts()?.is_some_and(|c| c.finished() >= n))
}

/// Runs a host over `n` messages (or until `cap`, or until processing has stopped for 5 s),
/// sampling its memory every 100 ms: (rate, peak RSS over the first half of the samples, over
/// the second half, VmHWM at the end), in MiB.
fn memory_run(
    broker: &Broker,
    tenant: &TenantSpec,
    n: u64,
    cap: Duration,
) -> anyhow::Result<(Rate, f64, f64, f64, u64)> {
    let mut host = Host::start(broker, tenant)?;
    let mut samples: Vec<f64> = Vec::new();
    let mut next = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    let rate = host.rate(n, cap, |host, now, processed| {
        if now >= next {
            samples.push(host.memory()?.0);
            next = now + Duration::from_millis(100);
        }
        if processed > last_progress.1 {
            last_progress = (now, processed);
        }
        Ok(now - last_progress.0 > Duration::from_secs(5))
    })?;
    let peak = host.memory()?.1;
    let held = host.held(&tenant.topic, 0)?;
    host.stop()?;
    let half = samples.len() / 2;
    let max = |s: &[f64]| s.iter().copied().fold(0.0, f64::max);
    Ok((
        rate,
        max(&samples[..half]),
        max(&samples[half..]),
        peak,
        held,
    ))
}

fn flat_row(
    what: &str,
    broker: BrokerKind,
    messages: u64,
    (first, second, peak): (f64, f64, f64),
    note: String,
) -> Row {
    let flat = second <= first * 1.10 + 8.0;
    let halves =
        format!("RSS peak {first:.0} MiB in the first half, {second:.0} MiB in the second");
    Row {
        cpu: None,
        case: "B7",
        what: what.into(),
        broker,
        messages,
        figure: Figure::MiB(peak),
        baseline: None,
        ratio: None,
        goal: Goal::Flat,
        met: Some(flat),
        note: if note.is_empty() {
            halves
        } else {
            format!("{halves}; {note}")
        },
    }
}

/// Spawn to first processed message of a host on `tenant`.
fn first_message(broker: &Broker, tenant: &TenantSpec) -> anyhow::Result<Duration> {
    let mut host = Host::start(broker, tenant)?;
    let end = host.spawned + Duration::from_secs(120);
    let took = loop {
        if host.counts()?.is_some_and(|c| c.processed > 0) {
            break host.spawned.elapsed();
        }
        if Instant::now() > end {
            bail!("no message within 120 s; log:\n{}", host.log_tail());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    host.stop()?;
    Ok(took)
}

/// A raw consumer's creation to its first message, in a fresh group.
fn raw_first_message(broker: &Broker, topic: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let consumer = consumer(broker)?;
    consumer.subscribe(&[topic])?;
    let end = started + Duration::from_secs(120);
    loop {
        match consumer.poll(Duration::from_millis(1)) {
            Some(Ok(_)) => return Ok(started.elapsed()),
            Some(Err(e)) => bail!("consuming: {e}"),
            None if Instant::now() > end => bail!("no message within 120 s"),
            None => {}
        }
    }
}

/// A consumer config in a fresh group, from the beginning, no auto commit.
pub(super) fn consumer_config(broker: &Broker, prefix: &str) -> rdkafka::ClientConfig {
    let mut config = broker.client();
    config
        .set("group.id", unique(prefix))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in membership(broker) {
        config.set(*k, *v);
    }
    config
}

/// A raw consumer in a fresh group.
fn consumer(broker: &Broker) -> anyhow::Result<BaseConsumer> {
    Ok(consumer_config(broker, "bench-raw").create()?)
}

/// B1's loop: `poll`, count, nothing else; the clock is read every 1024 messages.
fn raw_consumer(broker: &Broker, data: &Dataset, cap: Duration) -> anyhow::Result<Rate> {
    let consumer = consumer(broker)?;
    consumer.subscribe(&[data.topic.as_str()])?;
    let mut seen = 0u64;
    let mut first = None;
    // A bound for a hung run: the first message within 120 s, then never 30 s without one.
    let mut end = Instant::now() + Duration::from_secs(120);
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                std::hint::black_box(&m);
                let t0 = *first.get_or_insert_with(Instant::now);
                seen += 1;
                if seen == data.messages {
                    return Ok(Rate {
                        messages: seen,
                        secs: t0.elapsed().as_secs_f64(),
                        cpu: None,
                    });
                }
                if seen.is_multiple_of(1024) {
                    let now = Instant::now();
                    if now - t0 >= cap {
                        return Ok(Rate {
                            messages: seen,
                            secs: (now - t0).as_secs_f64(),
                            cpu: None,
                        });
                    }
                    end = now + Duration::from_secs(30);
                }
            }
            Some(Err(e)) => bail!("consuming: {e}"),
            None if Instant::now() > end => {
                bail!("the raw consumer stalled: {seen} of {} read", data.messages)
            }
            None => {}
        }
    }
}

/// A raw consumer over all of `data`: the longest time between two records it received, and
/// how many it had received when that gap ended. The broker's own pauses show here.
fn raw_longest_gap(broker: &Broker, data: &Dataset) -> anyhow::Result<(Duration, u64)> {
    let consumer = consumer(broker)?;
    consumer.subscribe(&[data.topic.as_str()])?;
    let (mut seen, mut last, mut longest) = (0u64, None::<Instant>, (Duration::ZERO, 0u64));
    let end = Instant::now() + Duration::from_secs(300);
    while seen < data.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                std::hint::black_box(&m);
                let now = Instant::now();
                seen += 1;
                if let Some(last) = last
                    && now - last > longest.0
                {
                    longest = (now - last, seen);
                }
                last = Some(now);
            }
            Some(Err(e)) => bail!("consuming: {e}"),
            None if Instant::now() > end => bail!("the raw consumer stalled at {seen}"),
            None => {}
        }
    }
    Ok(longest)
}

/// What a pool run's handler wrapper records.
#[derive(Default)]
struct Clock {
    done: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    /// (messages, when) if the cap stopped the run first.
    capped: OnceLock<(u64, Instant)>,
}

/// Counts a pool run's messages: when the first started, when the last was done.
#[derive(Clone)]
struct Counter {
    clock: Arc<Clock>,
    stop: CancellationToken,
    n: u64,
}

impl Counter {
    fn new(n: u64) -> Self {
        Self {
            clock: Arc::new(Clock::default()),
            stop: CancellationToken::new(),
            n,
        }
    }

    fn started(&self) {
        self.clock.first.get_or_init(Instant::now);
    }

    /// One more message done; the last one stops the run.
    fn done(&self) {
        if self.clock.done.fetch_add(1, AtomicOrdering::Relaxed) + 1 == self.n {
            let _ = self.clock.last.set(Instant::now());
            self.stop.cancel();
        }
    }

    /// Stops the run `cap` after its first message (or 120 s without one).
    fn watch_cap(&self, cap: Duration) -> tokio::task::JoinHandle<()> {
        let (clock, stop) = (Arc::clone(&self.clock), self.stop.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
                let Some(first) = clock.first.get() else {
                    if started.elapsed() > Duration::from_secs(120) {
                        stop.cancel();
                    }
                    continue;
                };
                if first.elapsed() >= cap {
                    let _ = clock
                        .capped
                        .set((clock.done.load(AtomicOrdering::Relaxed), Instant::now()));
                    stop.cancel();
                    return;
                }
            }
        })
    }

    /// The run's rate, first message to last (or to the cap).
    fn rate(&self) -> anyhow::Result<Rate> {
        let (clock, n) = (&self.clock, self.n);
        let Some(first) = clock.first.get().copied() else {
            bail!("the pool processed no message within 120 s");
        };
        if let Some(last) = clock.last.get() {
            return Ok(Rate {
                messages: n,
                secs: last.duration_since(first).as_secs_f64(),
                cpu: None,
            });
        }
        match clock.capped.get() {
            Some((done, at)) => Ok(Rate {
                messages: *done,
                secs: at.duration_since(first).as_secs_f64(),
                cpu: None,
            }),
            None => bail!("the pool stopped before {n} messages"),
        }
    }
}

fn bench_pool(broker: &Broker, data: &Dataset, config: Config) -> anyhow::Result<Pool> {
    let consumer = Consumer::from_config(&consumer_config(broker, "bench-pool"))?;
    consumer.subscribe(&[data.topic.as_str()])?;
    Ok(Pool::new(consumer, config)?)
}

/// Runs a pool with `config` over the dataset, `work` as the handler (wrapped to count), until
/// every message is done or `cap` has passed since the first.
async fn pool_rate<F, Fut>(
    broker: &Broker,
    data: &Dataset,
    config: Config,
    cap: Duration,
    work: F,
) -> anyhow::Result<Rate>
where
    F: Fn(Arc<Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessError>> + Send + 'static,
{
    let pool = bench_pool(broker, data, config)?;
    let counter = Counter::new(data.messages);
    let handler = {
        let counter = counter.clone();
        move |m: Arc<Message>| {
            counter.started();
            let (job, counter) = (work(m), counter.clone());
            async move {
                job.await?;
                counter.done();
                Ok::<(), ProcessError>(())
            }
        }
    };
    let watch = counter.watch_cap(cap);
    pool.run(counter.stop.clone().cancelled_owned(), handler)
        .await?;
    let _ = watch.await;
    counter.rate()
}

/// Like [`pool_rate`], with a [`Handler`] per worker made by `make` (which counts itself).
async fn pool_rate_with<H: Handler>(
    broker: &Broker,
    data: &Dataset,
    config: Config,
    cap: Duration,
    make: impl Fn(Counter) -> H + Send + Sync + 'static,
) -> anyhow::Result<Rate> {
    let pool = bench_pool(broker, data, config)?;
    let counter = Counter::new(data.messages);
    let watch = counter.watch_cap(cap);
    let workers = counter.clone();
    pool.run_with(counter.stop.clone().cancelled_owned(), move |_| {
        make(workers.clone())
    })
    .await?;
    let _ = watch.await;
    counter.rate()
}

/// 100 tasks (`tasks`) sleeping `sleep` in a loop for `wall`: loops completed.
async fn sleepers(tasks: usize, sleep: Duration, wall: Duration) -> u64 {
    let loops = Arc::new(AtomicU64::new(0));
    let end = tokio::time::Instant::now() + wall;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let loops = Arc::clone(&loops);
        set.spawn(async move {
            loop {
                tokio::time::sleep(sleep).await;
                if tokio::time::Instant::now() > end {
                    return;
                }
                loops.fetch_add(1, AtomicOrdering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
    loops.load(AtomicOrdering::Relaxed)
}

/// The native twin of json-validate with an output topic, written as the host's handler is: the
/// value must be UTF-8 and a JSON object (checked without building a tree, as the plugin does);
/// then it is forwarded, key and headers kept, and its result is left pending on the broker's
/// ack, so the worker goes on (batches of up to 64, as the host's).
struct NativeEmit {
    producer: FutureProducer,
    out: Arc<str>,
    counter: Counter,
}

impl Handler for NativeEmit {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        unreachable!("a batching handler gets process_batch")
    }

    fn max_batch(&self) -> usize {
        64
    }

    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        batch
            .iter()
            .map(|a| {
                self.counter.started();
                let value = a.message.payload.as_deref().unwrap_or_default();
                if !is_json_object(value) {
                    return Processed::Now(Err(ProcessError::permanent(
                        "value is not a JSON object",
                    )));
                }
                let (producer, out) = (self.producer.clone(), Arc::clone(&self.out));
                let (m, counter) = (Arc::clone(&a.message), self.counter.clone());
                Processed::Later(Pending::new(async move {
                    forward(&producer, &out, &m).await?;
                    counter.done();
                    Ok(())
                }))
            })
            .collect()
    }
}

/// Produces `m`'s value, key and headers to `out`; returns when the broker acknowledged it.
async fn forward(producer: &FutureProducer, out: &str, m: &Message) -> Result<(), ProcessError> {
    let mut headers = OwnedHeaders::new();
    for h in &m.headers {
        headers = headers.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(out)
        .payload(m.payload.as_deref().unwrap_or_default())
        .headers(headers);
    if let Some(key) = m.key.as_deref() {
        record = record.key(key);
    }
    producer
        .send(record, Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(e, _)| ProcessError::retriable(e))
}

/// Whether `value` is UTF-8 holding one JSON object (and nothing after it).
fn is_json_object(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
mod tests {
    /// The native B4 handler accepts what json-validate accepts and refuses what it refuses.
    #[test]
    fn only_json_objects_pass_the_native_check() {
        assert!(super::is_json_object(br#" {"a":[1,{"b":null}]}"#));
        assert!(!super::is_json_object(b"[1]"));
        assert!(!super::is_json_object(b"{} x"));
        assert!(!super::is_json_object(&[b'{', 0xff, b'}']));
    }
}
