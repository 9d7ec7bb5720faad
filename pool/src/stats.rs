//! What the pool reports: counters, current load, and per-partition offsets.
//!
//! One [`Shared`] per pool is updated by the coordinator (commit results included)
//! and read by [`StatsHandle`] from any task. Each update is one method, which bumps both the
//! counter and, when enabled, the Prometheus metric, so the two never disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::local::{LocalHistogram, LocalIntCounter};
use rdkafka::error::KafkaResult;
use serde::Serialize;

use crate::metrics::Metrics;

/// How a transaction ended, as the stats count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransactionEnd {
    Committed,
    /// Aborted: its partitions rewound, its messages run again.
    Aborted,
    /// The producer cannot go on (fenced): the pool halts.
    Fatal,
}

impl TransactionEnd {
    fn label(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Aborted => "aborted",
            Self::Fatal => "fatal",
        }
    }
}

/// A snapshot of a pool's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages whose handler succeeded.
    pub messages_processed: u64,
    /// Messages that failed permanently (non-retriable, or out of retries).
    pub messages_failed: u64,
    /// Retries scheduled.
    pub messages_retried: u64,
    /// Partition offsets the broker confirmed as committed (one per partition per commit).
    pub offsets_committed: u64,
    /// Partition offsets whose commit failed.
    pub commit_failures: u64,
    /// Assignments and revocations handled.
    pub rebalances: u64,
    /// Transactions committed ([`Pool::with_transactions`](crate::Pool::with_transactions);
    /// 0 otherwise).
    pub transactions_committed: u64,
    /// Transactions aborted (their messages ran again).
    pub transactions_aborted: u64,
    /// Records produced in committed transactions.
    pub transaction_records: u64,
    /// Time spent in committed transactions, begin to commit, in microseconds: over
    /// `transactions_committed`, the mean.
    pub transaction_micros: u64,
    /// Workers running a message right now.
    pub workers_busy: usize,
    /// Messages received and waiting for a worker right now.
    pub jobs_queued: usize,
    /// Messages waiting for their retry delay right now (they hold no worker).
    pub retries_waiting: usize,
    /// Messages whose result is still to come right now (a handler's late result, e.g. the
    /// acks of the host's emits; they hold no worker).
    pub results_awaited: usize,
    /// Partitions assigned to this member now (the ones below include revoked ones).
    pub assigned_partitions: usize,
    /// Per partition, in topic then partition order.
    pub partitions: Vec<PartitionStats>,
}

/// One partition's offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionStats {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The last offset the broker confirmed committed (the next offset to consume), if any.
    pub committed_offset: Option<i64>,
    /// Done messages held in memory above the first unfinished one (0 when commits are not
    /// held back).
    pub gap: usize,
    /// Received messages not finished yet (queued, running or waiting to retry).
    pub pending: usize,
    /// Messages after the committed offset: the broker's high watermark (as last fetched)
    /// minus the committed offset. `None` until both are known.
    pub lag: Option<i64>,
}

/// A cloneable, `'static` view of a pool's stats, for another task.
#[derive(Clone)]
pub struct StatsHandle(pub(crate) Arc<Shared>);

impl StatsHandle {
    /// The stats now.
    pub fn get(&self) -> Stats {
        self.0.snapshot()
    }
}

#[derive(Default, Clone, Copy)]
struct PartitionState {
    committed: Option<i64>,
    gap: usize,
    pending: usize,
    /// The high watermark last fetched, for the lag.
    high_watermark: Option<i64>,
}

impl PartitionState {
    fn lag(&self) -> Option<i64> {
        Some((self.high_watermark? - self.committed?).max(0))
    }
}

/// Outcomes counted where they happen, on the coordinator's task, with no atomic operation, and
/// added to [`Shared`] once per turn of its loop ([`Tally::flush`]): per message, three counters
/// and a histogram sample cost several atomic operations each.
pub(crate) struct Tally {
    processed: u64,
    failed: u64,
    retried: u64,
    metrics: Option<LocalMetrics>,
}

/// The Prometheus mirrors of a [`Tally`]: the metrics' thread-local halves.
struct LocalMetrics {
    processed: LocalIntCounter,
    failed: LocalIntCounter,
    retried: LocalIntCounter,
    duration: LocalHistogram,
}

impl Tally {
    /// A message processed successfully after `took`.
    pub(crate) fn processed(&mut self, took: Duration) {
        self.processed += 1;
        if let Some(m) = &self.metrics {
            m.processed.inc();
            m.duration.observe(took.as_secs_f64());
        }
    }

    /// A message failed permanently after `took`.
    pub(crate) fn failed(&mut self, took: Duration) {
        self.failed += 1;
        if let Some(m) = &self.metrics {
            m.failed.inc();
            m.duration.observe(took.as_secs_f64());
        }
    }

    /// An attempt that will be retried, after `took`.
    pub(crate) fn retried(&mut self, took: Duration) {
        self.retried += 1;
        if let Some(m) = &self.metrics {
            m.retried.inc();
            m.duration.observe(took.as_secs_f64());
        }
    }

    /// Adds what was counted since the last flush to `shared` (and its metrics).
    pub(crate) fn flush(&mut self, shared: &Shared) {
        for (count, total) in [
            (&mut self.processed, &shared.processed),
            (&mut self.failed, &shared.failed),
            (&mut self.retried, &shared.retried),
        ] {
            if *count > 0 {
                total.fetch_add(std::mem::take(count), Relaxed);
            }
        }
        if let Some(m) = &self.metrics {
            m.processed.flush();
            m.failed.flush();
            m.retried.flush();
            m.duration.flush();
        }
    }
}

/// The pool's live counters, shared between the coordinator, the commit callback and readers.
#[derive(Default)]
pub(crate) struct Shared {
    processed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    committed: AtomicU64,
    commit_failures: AtomicU64,
    rebalances: AtomicU64,
    transactions_committed: AtomicU64,
    transactions_aborted: AtomicU64,
    transaction_records: AtomicU64,
    transaction_micros: AtomicU64,
    busy: AtomicUsize,
    queued: AtomicUsize,
    retrying: AtomicUsize,
    awaited: AtomicUsize,
    /// Behind a mutex: updated together per partition, read rarely.
    partitions: Mutex<BTreeMap<(String, i32), PartitionState>>,
    /// What this member owns now: readiness means "has an assignment", even on a quiet topic.
    assigned: Mutex<BTreeSet<(String, i32)>>,
    /// Prometheus mirrors of the above, when enabled.
    metrics: Option<Metrics>,
}

impl Shared {
    pub(crate) fn new(metrics: Option<Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    fn partitions(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), PartitionState>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A tally of outcomes for the coordinator to count into, then add here once per turn.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            processed: 0,
            failed: 0,
            retried: 0,
            metrics: self.metrics.as_ref().map(|m| LocalMetrics {
                processed: m.processed.local(),
                failed: m.failed.local(),
                retried: m.retried.local(),
                duration: m.duration.local(),
            }),
        }
    }

    /// A transaction ended as `end`, carrying `records`, after `took`.
    pub(crate) fn transaction(&self, end: TransactionEnd, records: usize, took: Duration) {
        let records = records as u64;
        match end {
            TransactionEnd::Committed => {
                self.transactions_committed.fetch_add(1, Relaxed);
                self.transaction_records.fetch_add(records, Relaxed);
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.transaction_micros.fetch_add(micros, Relaxed);
            }
            TransactionEnd::Aborted => {
                self.transactions_aborted.fetch_add(1, Relaxed);
            }
            TransactionEnd::Fatal => {}
        }
        if let Some(m) = &self.metrics {
            m.transactions.with_label_values(&[end.label()]).inc();
            if end == TransactionEnd::Committed {
                m.transaction_records.inc_by(records);
                m.transaction_duration.observe(took.as_secs_f64());
            }
        }
    }

    pub(crate) fn rebalanced(&self) {
        self.rebalances.fetch_add(1, Relaxed);
        if let Some(m) = &self.metrics {
            m.rebalances.inc();
        }
    }

    /// Current load: workers busy, jobs queued, retries waiting.
    pub(crate) fn set_load(&self, busy: usize, queued: usize, retrying: usize, awaited: usize) {
        self.busy.store(busy, Relaxed);
        self.queued.store(queued, Relaxed);
        self.retrying.store(retrying, Relaxed);
        self.awaited.store(awaited, Relaxed);
        if let Some(m) = &self.metrics {
            m.in_flight.set(i64::try_from(busy).unwrap_or(i64::MAX));
            m.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
            m.awaited.set(i64::try_from(awaited).unwrap_or(i64::MAX));
        }
    }

    /// A partition's in-memory offset state.
    pub(crate) fn set_partition(&self, topic: &str, partition: i32, gap: usize, pending: usize) {
        let mut parts = self.partitions();
        let p = parts.entry((topic.to_owned(), partition)).or_default();
        p.gap = gap;
        p.pending = pending;
        if let Some(m) = &self.metrics {
            m.gap
                .with_label_values(&[topic, &partition.to_string()])
                .set(i64::try_from(gap).unwrap_or(i64::MAX));
        }
        self.publish_lag(topic, partition, p);
    }

    /// The high watermarks librdkafka reported in its periodic statistics, for the lag.
    pub(crate) fn set_high_watermarks(&self, watermarks: impl Iterator<Item = (String, i32, i64)>) {
        let mut parts = self.partitions();
        for (topic, partition, high) in watermarks {
            // Only partitions this pool has seen: statistics also list other topics' metadata.
            if let Some(p) = parts.get_mut(&(topic.clone(), partition)) {
                p.high_watermark = Some(high);
                self.publish_lag(&topic, partition, p);
            }
        }
    }

    fn publish_lag(&self, topic: &str, partition: i32, p: &PartitionState) {
        if let (Some(m), Some(lag)) = (&self.metrics, p.lag()) {
            m.lag
                .with_label_values(&[topic, &partition.to_string()])
                .set(lag);
        }
    }

    /// Partitions given to this member: listed in the stats from now on, messages or not.
    pub(crate) fn assigned(&self, tps: &[(Arc<str>, i32)]) {
        let mut parts = self.partitions();
        for (t, p) in tps {
            parts.entry((t.to_string(), *p)).or_default();
        }
        drop(parts);
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        assigned.extend(tps.iter().map(|(t, p)| (t.to_string(), *p)));
    }

    /// Partitions taken from this member.
    pub(crate) fn revoked(&self, tps: &[(Arc<str>, i32)]) {
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        for (t, p) in tps {
            assigned.remove(&(t.to_string(), *p));
        }
    }

    /// Records the broker's answer to a commit of `offsets`.
    pub(crate) fn record_commit(
        &self,
        offsets: &[((Arc<str>, i32), i64)],
        result: &KafkaResult<()>,
    ) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed");
        }
        let mut parts = self.partitions();
        for ((topic, partition), offset) in offsets {
            if result.is_err() {
                self.commit_failures.fetch_add(1, Relaxed);
                if let Some(m) = &self.metrics {
                    m.commit_failures.inc();
                }
                continue;
            }
            self.committed.fetch_add(1, Relaxed);
            let p = parts.entry((topic.to_string(), *partition)).or_default();
            // Never reported going back, even if a later assignment starts lower.
            p.committed = p.committed.max(Some(*offset));
            if let Some(m) = &self.metrics {
                m.commits.inc();
                m.committed_offset
                    .with_label_values(&[&**topic, &partition.to_string()])
                    .set(p.committed.unwrap_or(*offset));
            }
            self.publish_lag(topic, *partition, p);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let partitions = self
            .partitions()
            .iter()
            .map(|((topic, partition), p)| PartitionStats {
                topic: topic.clone(),
                partition: *partition,
                committed_offset: p.committed,
                gap: p.gap,
                pending: p.pending,
                lag: p.lag(),
            })
            .collect();
        Stats {
            messages_processed: self.processed.load(Relaxed),
            messages_failed: self.failed.load(Relaxed),
            messages_retried: self.retried.load(Relaxed),
            offsets_committed: self.committed.load(Relaxed),
            commit_failures: self.commit_failures.load(Relaxed),
            rebalances: self.rebalances.load(Relaxed),
            transactions_committed: self.transactions_committed.load(Relaxed),
            transactions_aborted: self.transactions_aborted.load(Relaxed),
            transaction_records: self.transaction_records.load(Relaxed),
            transaction_micros: self.transaction_micros.load(Relaxed),
            workers_busy: self.busy.load(Relaxed),
            jobs_queued: self.queued.load(Relaxed),
            retries_waiting: self.retrying.load(Relaxed),
            results_awaited: self.awaited.load(Relaxed),
            assigned_partitions: self
                .assigned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            partitions,
        }
    }
}
