//! Prometheus metrics of a pool, all named `burrow_*`.
//!
//! They are registered in a [`Registry`] the caller passes (the host serves one registry for all
//! tenants) with constant labels the caller chooses (the host adds `tenant`), so several pools
//! can share one registry. Per-partition gauges carry `topic` and `partition` labels.

use std::collections::HashMap;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::Collector,
};

/// The metrics one pool updates.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) processed: IntCounter,
    pub(crate) failed: IntCounter,
    pub(crate) retried: IntCounter,
    pub(crate) commits: IntCounter,
    pub(crate) commit_failures: IntCounter,
    pub(crate) rebalances: IntCounter,
    pub(crate) in_flight: IntGauge,
    pub(crate) queued: IntGauge,
    pub(crate) awaited: IntGauge,
    pub(crate) duration: Histogram,
    pub(crate) committed_offset: IntGaugeVec,
    pub(crate) gap: IntGaugeVec,
    pub(crate) lag: IntGaugeVec,
    pub(crate) transactions: IntCounterVec,
    pub(crate) transaction_records: IntCounter,
    pub(crate) transaction_duration: Histogram,
}

impl Metrics {
    /// Creates the pool's metrics and registers them in `registry`, each with `const_labels`.
    pub fn register(
        registry: &Registry,
        const_labels: HashMap<String, String>,
    ) -> Result<Self, prometheus::Error> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_labels(const_labels.clone());
        let counter = |name: &str, help: &str| IntCounter::with_opts(opts(name, help));
        let gauge = |name: &str, help: &str| IntGauge::with_opts(opts(name, help));
        let per_partition =
            |name: &str, help: &str| IntGaugeVec::new(opts(name, help), &["topic", "partition"]);
        let metrics = Self {
            processed: counter(
                "burrow_messages_processed_total",
                "Messages processed successfully",
            )?,
            failed: counter(
                "burrow_messages_failed_total",
                "Messages that failed permanently",
            )?,
            retried: counter("burrow_messages_retried_total", "Retries scheduled")?,
            commits: counter(
                "burrow_offsets_committed_total",
                "Partition offsets the broker confirmed as committed",
            )?,
            commit_failures: counter(
                "burrow_commit_failures_total",
                "Offset commits the broker refused or that failed",
            )?,
            rebalances: counter(
                "burrow_rebalances_total",
                "Partition assignments and revocations handled",
            )?,
            in_flight: gauge(
                "burrow_in_flight",
                "Messages being processed by a worker now",
            )?,
            queued: gauge(
                "burrow_queued",
                "Messages received and waiting for a worker",
            )?,
            awaited: gauge(
                "burrow_results_awaited",
                "Messages whose result is still to come (e.g. emits awaiting acks), no worker held",
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "burrow_processing_duration_seconds",
                    "Time a handler took for one attempt",
                )
                .const_labels(const_labels.clone()),
            )?,
            committed_offset: per_partition(
                "burrow_committed_offset",
                "Last offset committed per partition",
            )?,
            gap: per_partition(
                "burrow_offset_gap",
                "Done messages held above the first unfinished one, per partition",
            )?,
            lag: per_partition(
                "burrow_consumer_lag",
                "Messages in the partition after the committed offset (high watermark - committed)",
            )?,
            transactions: IntCounterVec::new(
                opts(
                    "burrow_transactions_total",
                    "Exactly-once transactions, by result: committed, aborted (their messages ran again) or fatal (the producer was fenced; the pool halts)",
                ),
                &["result"],
            )?,
            transaction_records: counter(
                "burrow_transaction_records_total",
                "Records produced in committed transactions",
            )?,
            transaction_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "burrow_transaction_duration_seconds",
                    "Time from a transaction's begin to its commit",
                )
                .const_labels(const_labels.clone()),
            )?,
        };
        for c in metrics.collectors() {
            registry.register(c)?;
        }
        Ok(metrics)
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.processed.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.retried.clone()),
            Box::new(self.commits.clone()),
            Box::new(self.commit_failures.clone()),
            Box::new(self.rebalances.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.queued.clone()),
            Box::new(self.awaited.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.committed_offset.clone()),
            Box::new(self.gap.clone()),
            Box::new(self.lag.clone()),
            Box::new(self.transactions.clone()),
            Box::new(self.transaction_records.clone()),
            Box::new(self.transaction_duration.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pools (tenants) can register in one registry thanks to their constant labels.
    #[test]
    fn two_tenants_share_a_registry() {
        let registry = Registry::new();
        let labels = |t: &str| HashMap::from([("tenant".to_owned(), t.to_owned())]);
        let a = Metrics::register(&registry, labels("a")).expect("first");
        Metrics::register(&registry, labels("b")).expect("second");
        a.processed.inc();
        let names: Vec<_> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.iter().all(|n| n.starts_with("burrow_")));
        assert!(names.contains(&"burrow_messages_processed_total".to_owned()));
    }
}
