//! The consumer going back within an assignment (a seek; an offset reset after the log was
//! truncated): the offsets delivered again are processed again, never refused.

mod pool_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::rdkafka::Offset;
use burrow_pool::rdkafka::consumer::Consumer as _;
use burrow_pool::{Config, Message, Pool, ProcessError};
use pool_support::{Cluster, TOPIC, run_while, test_config, unique_group, until, until_stats};

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
