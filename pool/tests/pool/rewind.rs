//! The consumer going back within an assignment (a seek; an offset reset after the log was
//! truncated): the offsets delivered again are processed again, never refused.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::rdkafka::consumer::Consumer as _;
use burrow_pool::rdkafka::{Offset, TopicPartitionList};
use burrow_pool::{Config, Consumer, Message, Pool, ProcessError};
use support::{Cluster, TOPIC, run_while, test_config, unique_group, until, until_stats};

/// All 100 messages are processed and committed; then the consumer seeks back to offset 10.
/// Offsets 10..99 arrive again and each is processed a second time (they used to be refused as
/// already seen, so records at those offsets were silently skipped), and the partition is
/// committed to its end again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_delivered_again_after_a_seek_back_are_processed_again() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(100, 5);
    let group = unique_group("rewind");
    let pool = Pool::new(cluster.consumer(&group), Config { ..test_config() }).expect("pool");
    let seen: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let process = {
        let seen = seen.clone();
        move |m: Arc<Message>| {
            *seen.lock().expect("lock").entry(m.offset).or_insert(0) += 1;
            async { Ok::<_, ProcessError>(()) }
        }
    };
    let committed_to_end =
        |s: &burrow_pool::Stats| s.partitions.iter().any(|p| p.committed_offset == Some(100));
    let result = run_while(&pool, process, async {
        until_stats("all committed", || pool.stats(), committed_to_end).await;
        pool.consumer()
            .inner()
            .seek(TOPIC, 0, Offset::Offset(10), Duration::from_secs(10))
            .expect("seek");
        until("offsets 10..99 processed a second time", || {
            let seen = seen.lock().expect("lock");
            (10..100).all(|o| seen.get(&o).copied().unwrap_or(0) >= 2)
        })
        .await;
        until_stats(
            "committed to the end again",
            || pool.stats(),
            committed_to_end,
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let seen = seen.lock().expect("lock");
    assert!(
        (0..10).all(|o| seen[&o] == 1),
        "offsets before the seek ran once"
    );
    assert_eq!(cluster.committed(&group), cluster.ends());
}

/// Finding 2 of issue 18: records prefetched into the consumer's main queue before `run` (a
/// partition assigned by hand) come before the partition's own queue. The poll thread used to
/// take at most 1,024 of them per round and then read the partition's own queue, so the older
/// main-queue records of the next round looked like a rewind: the newer jobs already taken were
/// dropped and never fetched again (the commit stalled at the prefetched count, 20,000 of
/// 30,000, with every record processed). Every offset must be processed and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_prefetched_before_run_are_not_mistaken_for_a_rewind() {
    const RECORDS: usize = 30_000;
    let cluster = Cluster::new(1, 1);
    cluster.produce(RECORDS, 5);
    let group = unique_group("prefetched");
    let consumer = Consumer::from_config(&cluster.client_config(&group)).expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition");
    consumer.inner().assign(&tpl).expect("assign");
    // librdkafka fetches into the main queue meanwhile, up to its prefetch limits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The default bound (10,000 messages): the partition's own queue is read in the same
    // round as the main queue's first 1,024.
    let config = Config {
        job_queue_size: Config::default().job_queue_size,
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let seen: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let process = {
        let seen = seen.clone();
        move |m: Arc<Message>| {
            *seen.lock().expect("lock").entry(m.offset).or_insert(0) += 1;
            async { Ok::<_, ProcessError>(()) }
        }
    };
    let end = i64::try_from(RECORDS).expect("fits");
    let result = run_while(&pool, process, async {
        until_stats(
            "committed to the end",
            || pool.stats(),
            |s| s.partitions.iter().any(|p| p.committed_offset == Some(end)),
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let seen = seen.lock().expect("lock");
    let missing = (0..end).filter(|o| !seen.contains_key(o)).count();
    assert_eq!(missing, 0, "offsets never processed");
    assert_eq!(cluster.committed(&group), cluster.ends());
}
