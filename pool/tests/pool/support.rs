//! What the pool's integration tests share beyond the test kit (`burrow_e2e`, which provides the
//! mock cluster, the producer, the read-back of end and committed offsets and the waits): the
//! one topic they use, the consumer settings of a pool, a test `Config`, and waits on a pool's
//! stats.
//!
//! Debugging a test: `RUST_LOG=burrow=debug` (tests that call [`logs`]), `POOL_TEST_TRACE=1`
//! prints stats while waiting, `POOL_TEST_KAFKA_DEBUG=cgrp,fetch` sets librdkafka's `debug`.
//! The mock's first group join takes 3 s (`rd_kafka_mock_group_initial_rebalance_delay_ms` is
//! not exposed by rdkafka 0.39 and calling it would need `unsafe`), so tests run in parallel.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::kafka::{self, Out, ProduceOptions};
use burrow_pool::{Config, Consumer, Message, Pool, PoolError, ProcessError, Stats};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

pub const TOPIC: &str = "events";

/// A mock cluster with one topic, [`TOPIC`].
pub struct Cluster {
    pub broker: Broker,
    pub partitions: i32,
}

impl Cluster {
    /// `brokers` brokers; [`TOPIC`] with `partitions` partitions, replicated on up to three.
    pub fn new(brokers: i32, partitions: i32) -> Self {
        let broker = Broker::mock_cluster(brokers, &[(TOPIC, partitions)]).expect("mock cluster");
        Self { broker, partitions }
    }

    /// Produces `n` messages round-robin over the partitions, keys `k{i % keys}`, payload `i`.
    pub fn produce(&self, n: usize, keys: usize) {
        self.produce_in(n, keys, false);
    }

    /// Like [`Cluster::produce`], payloads from `from` on: `from..from + n`.
    pub fn produce_from(&self, from: usize, n: usize, keys: usize) {
        self.produce_range(from..from + n, keys, false);
    }

    /// Like [`Cluster::produce`], one record batch per message, so a fetch can stop anywhere.
    pub fn produce_one_by_one(&self, n: usize) {
        self.produce_in(n, 1, true);
    }

    /// Produces `n` messages round-robin over the partitions, each value `size` bytes.
    pub fn produce_sized(&self, n: usize, size: usize) {
        let records: Vec<Out> = (0..n)
            .map(|i| {
                let partition = i32::try_from(i).expect("small") % self.partitions;
                Out::value(vec![b'x'; size]).partition(partition)
            })
            .collect();
        kafka::produce_opts(&self.broker, TOPIC, &records, &ProduceOptions::default())
            .expect("produce");
    }

    fn produce_in(&self, n: usize, keys: usize, batch_each: bool) {
        self.produce_range(0..n, keys, batch_each);
    }

    fn produce_range(&self, range: std::ops::Range<usize>, keys: usize, batch_each: bool) {
        let records: Vec<Out> = range
            .map(|i| {
                let partition = i32::try_from(i).expect("small") % self.partitions;
                Out::value(i.to_string())
                    .key(format!("k{}", i % keys.max(1)))
                    .partition(partition)
            })
            .collect();
        let options = ProduceOptions {
            batch_each,
            ..ProduceOptions::default()
        };
        kafka::produce_opts(&self.broker, TOPIC, &records, &options).expect("produce");
    }

    /// Settings of a consumer in `group`: fast group timings, earliest reset, no auto-commit.
    pub fn client_config(&self, group: &str) -> ClientConfig {
        let mut c = self.broker.client();
        c.set("group.id", group)
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

    /// The offset `group` has committed on each partition, as the broker holds it; partitions
    /// without a commit are left out.
    pub fn committed(&self, group: &str) -> BTreeMap<i32, i64> {
        kafka::committed(&self.broker, group, TOPIC).expect("committed offsets")
    }

    /// The end (high watermark) of every partition.
    pub fn ends(&self) -> BTreeMap<i32, i64> {
        kafka::end_offsets(&self.broker, TOPIC).expect("end offsets")
    }
}

/// A group id no other test uses.
pub fn unique_group(name: &str) -> String {
    burrow_e2e::unique(name)
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

/// Waits until `done()` holds; panics after the kit's deadline.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    burrow_e2e::wait_until_async(what, || Ok(done()))
        .await
        .expect("gave up waiting");
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

/// Runs `fut` with the kit's hang guard.
pub async fn guarded<T>(fut: impl Future<Output = T>) -> T {
    burrow_e2e::bounded("the pool", fut)
        .await
        .expect("pool did not return")
}

/// Runs `pool` with `process` while `script` drives the test, then shuts the pool down and
/// returns how its run ended; the kit's hang guard bounds the whole.
pub async fn run_while<F, Fut, E>(
    pool: &Pool,
    process: F,
    script: impl Future<Output = ()>,
) -> Result<(), PoolError>
where
    F: Fn(Arc<Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<ProcessError> + 'static,
{
    let stop = CancellationToken::new();
    let script = async {
        script.await;
        stop.cancel();
    };
    guarded(async { tokio::join!(pool.run(stop.clone().cancelled_owned(), process), script) })
        .await
        .0
}

/// A message's key-order lane as text, `partition/key`, to group what a test saw by lane.
pub fn lane(m: &Message) -> String {
    format!(
        "{}/{}",
        m.partition,
        String::from_utf8_lossy(m.key.as_deref().unwrap_or_default())
    )
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
