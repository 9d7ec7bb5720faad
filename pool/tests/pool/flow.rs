//! The pool's bound (`job_queue_size`, `max_buffered_bytes`) holds in every state a message can
//! be in — queued, in flight, waiting to retry, done above a gap — and a partition that cannot
//! move stops only itself.

use crate::support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Config, Message, Pool, ProcessError};
use support::{Cluster, run_while, test_config, unique_group, until_stats};
use tokio_util::sync::CancellationToken;

/// Distinct (partition, offset) pairs a handler was called with.
type Seen = Arc<Mutex<HashSet<(i32, i64)>>>;

fn seen_count(seen: &Seen) -> usize {
    seen.lock().expect("lock").len()
}

/// During a downstream outage every message fails retriably and waits to retry, freeing its
/// worker: the pool still holds no more than `job_queue_size` messages (it stops fetching), and
/// once the outage ends every message is processed and committed — nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_messages_count_against_the_bound() {
    const BOUND: usize = 40;
    let cluster = Cluster::new(1, 2);
    cluster.produce(2_000, 50);
    let group = unique_group("retry-bound");
    let consumer = cluster.consumer(&group);
    let config = Config {
        num_workers: 4,
        job_queue_size: BOUND,
        max_retries: 100,
        retry_backoff_base: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(50),
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let seen: Seen = Arc::default();
    let outage = Arc::new(AtomicBool::new(true));
    let process = {
        let (seen, outage) = (seen.clone(), outage.clone());
        move |m: Arc<Message>| {
            seen.lock().expect("lock").insert((m.partition, m.offset));
            let down = outage.load(AtomicOrdering::Acquire);
            async move {
                if down {
                    Err(ProcessError::retriable("downstream unavailable"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let result = run_while(&pool, process, async {
        until_stats(
            "retries piling up",
            || pool.stats(),
            |s| s.messages_retried >= 500,
        )
        .await;
        let during = seen_count(&seen);
        assert!(
            during <= BOUND,
            "the pool took {during} messages during the outage, bound {BOUND}"
        );
        outage.store(false, AtomicOrdering::Release);
        until_stats(
            "all processed",
            || pool.stats(),
            |s| s.messages_processed == 2_000,
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    assert_eq!(
        seen_count(&seen),
        2_000,
        "every message reached the handler"
    );
    let committed = cluster.committed(&group);
    assert_eq!(committed, cluster.ends(), "everything committed to the end");
}

/// One message stuck in its handler holds back its partition's commit, and the done messages
/// above it are held too: the partition stops being fetched at its part of the bound instead of
/// growing a window without end, while the other partition goes on to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_message_bounds_its_partition_and_spares_the_others() {
    const BOUND: usize = 100;
    let cluster = Cluster::new(1, 2);
    cluster.produce(4_000, 200);
    let group = unique_group("stuck-bound");
    let consumer = cluster.consumer(&group);
    let config = Config {
        num_workers: 8,
        job_queue_size: BOUND,
        shutdown_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let seen: Seen = Arc::default();
    let release = CancellationToken::new();
    let process = {
        let (seen, release) = (seen.clone(), release.clone());
        move |m: Arc<Message>| {
            seen.lock().expect("lock").insert((m.partition, m.offset));
            let stuck = m.partition == 0 && m.offset == 0;
            let release = release.clone();
            async move {
                if stuck {
                    release.cancelled().await;
                }
                Ok::<_, ProcessError>(())
            }
        }
    };
    let ends = cluster.ends();
    let other_end = ends.get(&1).copied().expect("partition 1 has messages");
    let result = run_while(&pool, process, async {
        until_stats(
            "partition 1 processed to its end",
            || pool.stats(),
            |s| {
                s.partitions
                    .iter()
                    .any(|p| p.partition == 1 && p.committed_offset == Some(other_end))
            },
        )
        .await;
        // Let the stuck partition's reader run into its bound, then look.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stuck_seen = seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| *p == 0)
            .count();
        assert!(
            stuck_seen <= BOUND,
            "partition 0 took {stuck_seen} messages behind its stuck one, bound {BOUND}"
        );
        assert!(
            stuck_seen > 1,
            "partition 0 ran past its stuck message meanwhile"
        );
        release.cancel();
        until_stats(
            "all processed",
            || pool.stats(),
            |s| s.messages_processed == 4_000,
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    assert_eq!(
        cluster.committed(&group),
        ends,
        "everything committed to the end"
    );
}

/// Large messages bound the pool by bytes before the message count does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_bounded_by_bytes() {
    let cluster = Cluster::new(1, 1);
    cluster.produce_sized(200, 10_000);
    let group = unique_group("bytes-bound");
    let consumer = cluster.consumer(&group);
    let config = Config {
        num_workers: 2,
        max_buffered_bytes: 100_000,
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let seen: Seen = Arc::default();
    let release = CancellationToken::new();
    let process = {
        let (seen, release) = (seen.clone(), release.clone());
        move |m: Arc<Message>| {
            seen.lock().expect("lock").insert((m.partition, m.offset));
            let release = release.clone();
            async move {
                release.cancelled().await;
                Ok::<_, ProcessError>(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        until_stats("workers busy", || pool.stats(), |s| s.workers_busy == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = pool.stats().jobs_queued + pool.stats().workers_busy;
        // 100 kB of 10 kB values, one message over at most.
        assert!(
            held <= 11,
            "held {held} messages of 10 kB under a 100 kB bound"
        );
        release.cancel();
        until_stats(
            "all processed",
            || pool.stats(),
            |s| s.messages_processed == 200,
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    assert_eq!(seen_count(&seen), 200);
    assert_eq!(cluster.committed(&group), cluster.ends());
}
