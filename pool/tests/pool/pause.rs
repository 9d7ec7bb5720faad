//! A paused pool takes nothing new, stays in its group, and on resume processes everything
//! from where it stopped: nothing lost, nothing twice, every offset committed.

use crate::support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Config, Pool, ProcessError};
use support::{Cluster, run_while, test_config, unique_group, until, until_stats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pool_takes_nothing_until_resumed_then_loses_nothing() {
    const N: usize = 300;
    let cluster = Cluster::new(1, 4);
    cluster.produce(N, 20);
    let group = unique_group("pause");
    let pool = Pool::new(
        cluster.consumer(&group),
        Config {
            num_workers: 4,
            ..test_config()
        },
    )
    .expect("pool");
    let pauser = pool.pauser();
    pauser.pause();
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let script = async {
        until("the pool to join and be assigned", || {
            pool.stats().assigned_partitions == 4
        })
        .await;
        // Assigned and fetching, but paused: give it time to take something if it would.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(pauser.is_paused());
        assert_eq!(
            seen.lock().expect("not poisoned").len(),
            0,
            "a paused pool processed messages"
        );
        assert_eq!(pool.stats().messages_processed, 0);

        pauser.resume();
        until_stats(
            "every message processed after the resume",
            || pool.stats(),
            |s| s.messages_processed == N as u64,
        )
        .await;
        until("every offset committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
    };
    let seen_by_handler = Arc::clone(&seen);
    let process = move |m: Arc<burrow_pool::Message>| {
        let seen = Arc::clone(&seen_by_handler);
        async move {
            seen.lock()
                .expect("not poisoned")
                .push((m.partition, m.offset));
            Ok::<(), ProcessError>(())
        }
    };
    run_while(&pool, process, script).await.expect("pool run");
    let seen = seen.lock().expect("not poisoned");
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), N, "each message processed once");
    assert_eq!(distinct.len(), N, "no message twice");
}
