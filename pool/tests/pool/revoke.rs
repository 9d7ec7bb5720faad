//! A revoke that times out while a call still runs: if the partition comes back to this member,
//! none of its offsets or keys runs twice at once.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Config, Message, Ordering, Pool, ProcessError};
use support::{Cluster, TOPIC, run_while, test_config, unique_group, until_stats};
use tokio_util::sync::CancellationToken;

/// Calls running now and the most ever running at once, per key.
#[derive(Default)]
struct Running {
    now: HashMap<Vec<u8>, usize>,
    most: HashMap<Vec<u8>, usize>,
}

/// Offset 0 blocks in its handler past the revoke's deadline. The member re-subscribes (a
/// rebalance that revokes the partition and gives it back); the partition's offsets were never
/// committed, so they are fetched again from 0. Offset 0 and its key must not start again while
/// the first call is still running: the new assignment waits for it. When it is let go,
/// everything is processed and committed, and no key ever ran twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outliving_its_revoke_never_runs_beside_its_redelivery() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(20, 2);
    let group = unique_group("revoke-timeout");
    let consumer = cluster.consumer(&group);
    let config = Config {
        ordering: Ordering::Key,
        shutdown_timeout: Duration::from_millis(800),
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let running: Arc<Mutex<Running>> = Arc::default();
    let stuck_started = CancellationToken::new();
    let release = CancellationToken::new();
    let first_call = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let process = {
        let (running, stuck_started, release, first_call) = (
            running.clone(),
            stuck_started.clone(),
            release.clone(),
            first_call.clone(),
        );
        move |m: Arc<Message>| {
            let (running, stuck_started, release) =
                (running.clone(), stuck_started.clone(), release.clone());
            let stuck =
                m.offset == 0 && first_call.swap(false, std::sync::atomic::Ordering::AcqRel);
            async move {
                let key = m.key.clone().unwrap_or_default();
                {
                    let mut r = running.lock().expect("lock");
                    let now = r.now.entry(key.clone()).or_insert(0);
                    *now += 1;
                    let now = *now;
                    let most = r.most.entry(key.clone()).or_insert(0);
                    *most = (*most).max(now);
                }
                if stuck {
                    stuck_started.cancel();
                    release.cancelled().await;
                }
                *running
                    .lock()
                    .expect("lock")
                    .now
                    .get_mut(&key)
                    .expect("counted") -= 1;
                Ok::<_, ProcessError>(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        stuck_started.cancelled().await;
        let before = pool.stats().rebalances;
        // A new subscription: the group rebalances, revoking the partition and assigning it
        // back. The revoke waits 800 ms for the stuck call, then gives up on it.
        pool.consumer()
            .subscribe(&[TOPIC, "another-topic"])
            .expect("subscribe");
        until_stats(
            "revoked and assigned again",
            || pool.stats(),
            |s| s.rebalances >= before + 2 && s.assigned_partitions == 1,
        )
        .await;
        // The redelivered messages have arrived by now; give the pool time to (wrongly)
        // start offset 0 again before the first call ends.
        tokio::time::sleep(Duration::from_millis(500)).await;
        release.cancel();
        until_stats(
            "everything processed",
            || pool.stats(),
            |s| s.partitions.iter().any(|p| p.committed_offset == Some(20)),
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let running = running.lock().expect("lock");
    for (key, most) in &running.most {
        assert_eq!(
            *most,
            1,
            "key {:?} ran {most} times at once",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(cluster.committed(&group), cluster.ends());
}
