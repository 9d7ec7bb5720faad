//! Commits go out on the pool's own thread, in order: they never wait for tokio's shared
//! blocking pool, whatever else uses it.

use crate::support;

use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Duration;

use burrow_pool::{Config, Message, Pool, ProcessError};
use support::{Cluster, test_config, unique_group};
use tokio_util::sync::CancellationToken;

/// The runtime's only blocking thread is held by another task for the whole run: the pool
/// still processes every message and commits them all, during the run and at shutdown. (When
/// commits ran on `spawn_blocking`, they queued behind that task and nothing was committed.)
#[test]
fn commits_do_not_wait_for_a_busy_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = Cluster::new(1, 2);
    cluster.produce(500, 10);
    let group = unique_group("busy-blocking-pool");
    let ends = cluster.ends();
    let (release, held) = channel::<()>();
    runtime.block_on(async {
        // Holds the one blocking thread until the test has seen the commits.
        let hog = tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        let pool = Pool::new(
            cluster.consumer(&group),
            Config {
                commit_interval: Duration::from_millis(100),
                ..test_config()
            },
        )
        .expect("pool");
        let stop = CancellationToken::new();
        let watch = {
            let (stop, broker, group, ends) = (stop.clone(), &cluster.broker, &group, &ends);
            async move {
                burrow_e2e::wait_until_async("every offset committed while the pool runs", || {
                    Ok(burrow_e2e::kafka::committed(broker, group, support::TOPIC)? == *ends)
                })
                .await
                .expect("committed during the run");
                stop.cancel();
            }
        };
        let run = pool.run(stop.clone().cancelled_owned(), |_m: Arc<Message>| async {
            Ok::<_, ProcessError>(())
        });
        let (result, ()) = tokio::join!(run, watch);
        result.expect("clean shutdown");
        let _ = release.send(());
        hog.await.expect("the blocking task ends");
    });
    assert_eq!(cluster.committed(&group), ends);
}
