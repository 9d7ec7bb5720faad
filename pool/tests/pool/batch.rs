//! A handler that takes batches (`Handler::max_batch` > 1): each message of a batch keeps its
//! own outcome, retries, failure handling and ordering, and everything is committed.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Attempt, Config, Failure, FailureAction, Handler, Message, Ordering, Pool};
use burrow_pool::{ProcessError, Processed, Stats};
use support::{Cluster, guarded, test_config, unique_group, until_stats};
use tokio_util::sync::CancellationToken;

/// What the handlers saw, shared by all workers.
#[derive(Default)]
struct Log {
    /// Sizes of the batches handed over.
    batches: Vec<usize>,
    /// Attempts per (partition, offset).
    attempts: HashMap<(i32, i64), u32>,
    /// Per lane (`partition/key`), the offsets whose processing succeeded, in the order they did.
    succeeded: BTreeMap<String, Vec<i64>>,
    /// Messages given to the failure hook.
    failed: Vec<(i32, i64)>,
}

/// Takes up to 16 messages at once. Payload `i` with `i % 97 == 0` fails permanently; with
/// `i % 31 == 0` fails retriably on its first attempt only.
struct Batching(Arc<Mutex<Log>>);

impl Batching {
    fn one(&self, m: &Message, attempt: u32) -> Result<(), ProcessError> {
        let i: u64 = std::str::from_utf8(m.payload.as_deref().unwrap_or_default())
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let mut log = self.0.lock().expect("lock");
        *log.attempts.entry((m.partition, m.offset)).or_insert(0) += 1;
        if i.is_multiple_of(97) {
            return Err(ProcessError::permanent("bad record"));
        }
        if i.is_multiple_of(31) && attempt == 1 {
            return Err(ProcessError::retriable("try again"));
        }
        log.succeeded
            .entry(support::lane(m))
            .or_default()
            .push(m.offset);
        Ok(())
    }
}

impl Handler for Batching {
    async fn process(&mut self, m: &Message, attempt: u32) -> Result<(), ProcessError> {
        self.0.lock().expect("lock").batches.push(1);
        self.one(m, attempt)
    }

    fn max_batch(&self) -> usize {
        16
    }

    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        self.0.lock().expect("lock").batches.push(batch.len());
        tokio::time::sleep(Duration::from_millis(1)).await;
        batch
            .iter()
            .map(|a| self.one(&a.message, a.attempt).into())
            .collect()
    }

    async fn on_permanent_failure(&mut self, m: &Message, _: &Failure) -> FailureAction {
        self.0
            .lock()
            .expect("lock")
            .failed
            .push((m.partition, m.offset));
        FailureAction::MarkDone
    }
}

async fn run(ordering: Ordering) -> (Arc<Mutex<Log>>, Stats, Cluster, String) {
    const N: usize = 3_000;
    let cluster = Cluster::new(1, 4);
    cluster.produce(N, 40);
    let group = unique_group("batch");
    let consumer = cluster.consumer(&group);
    let config = Config {
        num_workers: 3,
        ordering,
        max_consecutive_errors: 1_000,
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = CancellationToken::new();
    let result = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), |_| Batching(log.clone())),
            async {
                until_stats(
                    "all done",
                    || pool.stats(),
                    |s| s.messages_processed + s.messages_failed == N as u64,
                )
                .await;
                stop.cancel();
            }
        )
    })
    .await
    .0;
    result.expect("clean shutdown");
    let stats = pool.stats();
    (log, stats, cluster, group)
}

fn check(log: &Log, stats: &Stats, cluster: &Cluster, group: &str) {
    assert!(
        log.batches.iter().any(|&n| n > 1),
        "a backlog was handed over in batches: {:?}",
        &log.batches[..log.batches.len().min(20)]
    );
    assert!(log.batches.iter().all(|&n| n <= 16), "max_batch holds");
    // i in 0..3000 with i % 97 == 0: 31 permanent failures, each handled once, no retry.
    assert_eq!(log.failed.len(), 31);
    assert_eq!(stats.messages_failed, 31);
    for at in &log.failed {
        assert_eq!(log.attempts[at], 1, "a permanent failure is not retried");
    }
    // i % 31 == 0 (and not % 97): retried once, then done.
    let retried = (0..3_000u64)
        .filter(|i| i.is_multiple_of(31) && !i.is_multiple_of(97))
        .count() as u64;
    assert_eq!(stats.messages_retried, retried);
    assert_eq!(stats.messages_processed, 3_000 - 31);
    assert_eq!(
        cluster.committed(group),
        cluster.ends(),
        "everything committed"
    );
}

/// Unordered: batches are handed over, and each message's outcome is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_of_a_batch_keeps_its_own_outcome() {
    let (log, stats, cluster, group) = run(Ordering::Unordered).await;
    check(&log.lock().expect("lock"), &stats, &cluster, &group);
}

/// Key order: a batch never holds two messages of one key, so per key the successes come in
/// offset order, retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_key_order() {
    let (log, stats, cluster, group) = run(Ordering::Key).await;
    let log = log.lock().expect("lock");
    check(&log, &stats, &cluster, &group);
    for (key, offsets) in &log.succeeded {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, &sorted, "key {key} out of order");
    }
}
