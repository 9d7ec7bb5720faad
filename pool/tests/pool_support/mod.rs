//! Shared setup for the pool's integration tests: an in-process mock cluster, a producer, a
//! pool consumer with a unique group, and readers of what the broker holds.
//!
//! Debugging a test: `RUST_LOG=burrow=debug` (tests that call [`logs`]), `POOL_TEST_TRACE=1`
//! prints stats while waiting, `POOL_TEST_KAFKA_DEBUG=cgrp,fetch` sets librdkafka's `debug`.
//! The mock's first group join takes 3 s (`rd_kafka_mock_group_initial_rebalance_delay_ms` is
//! not exposed by rdkafka 0.39 and calling it would need `unsafe`), so tests run in parallel.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use burrow_pool::{Config, Consumer, Stats};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const TOPIC: &str = "events";

/// Hang guard for waits: generous, only there so a broken pool fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A mock cluster with one topic.
pub struct Cluster {
    pub mock: MockCluster<'static, DefaultProducerContext>,
    pub partitions: i32,
}

impl Cluster {
    pub fn new(brokers: i32, partitions: i32) -> Self {
        let mock = MockCluster::new(brokers).expect("mock cluster");
        mock.create_topic(TOPIC, partitions, brokers.min(3))
            .expect("topic");
        Self { mock, partitions }
    }

    pub fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    /// Produces `n` messages round-robin over the partitions, keys `k{i % keys}`, payload `i`.
    pub fn produce(&self, n: usize, keys: usize) {
        self.produce_in(n, keys, false);
    }

    /// Like [`Cluster::produce`], one record batch per message, so a fetch can stop anywhere.
    pub fn produce_one_by_one(&self, n: usize) {
        self.produce_in(n, 1, true);
    }

    fn produce_in(&self, n: usize, keys: usize, one_by_one: bool) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for i in 0..n {
            let partition = i32::try_from(i).expect("small") % self.partitions;
            let key = format!("k{}", i % keys.max(1));
            let payload = i.to_string();
            let mut record = BaseRecord::to(TOPIC)
                .partition(partition)
                .key(&key)
                .payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
            if one_by_one {
                producer.flush(Duration::from_secs(30)).expect("flush");
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Settings of a consumer in `group`: fast group timings, earliest reset, no auto-commit.
    pub fn client_config(&self, group: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("topic.metadata.refresh.interval.ms", "500");
        if let Ok(debug) = std::env::var("POOL_TEST_KAFKA_DEBUG") {
            c.set("debug", debug);
        }
        c
    }

    pub fn consumer(&self, group: &str) -> Consumer {
        let consumer = Consumer::from_config(&self.client_config(group)).expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        consumer
    }

    /// The committed offset of every partition for `group`, as the broker holds it.
    pub fn committed(&self, group: &str) -> HashMap<i32, Option<i64>> {
        let reader: BaseConsumer = self.client_config(group).create().expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(TOPIC, p);
        }
        let tpl = reader
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        tpl.elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), o)
            })
            .collect()
    }

    /// The end (high watermark) of every partition.
    pub fn ends(&self) -> HashMap<i32, Option<i64>> {
        let reader: BaseConsumer = self.client_config("watermarks").create().expect("reader");
        (0..self.partitions)
            .map(|p| {
                let (_, high) = reader
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .expect("watermarks");
                (p, Some(high))
            })
            .collect()
    }
}

/// A group id no other test uses.
pub fn unique_group(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A config for tests: small numbers, quick commits and retries.
pub fn test_config() -> Config {
    Config {
        num_workers: 8,
        job_queue_size: 100,
        commit_interval: Duration::from_millis(200),
        commit_batch_size: 50,
        retry_backoff_base: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// Waits until `done()` holds, checking every 20 ms; panics after [`PATIENCE`].
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a pool's stats to satisfy `done`.
pub async fn until_stats(what: &str, stats: impl Fn() -> Stats, done: impl Fn(&Stats) -> bool) {
    let mut n = 0u32;
    until(what, || {
        let s = stats();
        n += 1;
        if n.is_multiple_of(100) && std::env::var_os("POOL_TEST_TRACE").is_some() {
            eprintln!("{s:?}");
        }
        done(&s)
    })
    .await;
}

/// Runs `fut` with the hang guard.
pub async fn guarded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("pool did not return")
}

/// The committed offset of a partition per the pool's stats.
pub fn stats_committed(stats: &Stats, partition: i32) -> Option<i64> {
    stats
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .and_then(|p| p.committed_offset)
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
