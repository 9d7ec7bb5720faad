//! The pool in a consumer group on librdkafka's mock cluster: restarts, rebalances between two
//! members, and broker faults.

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Config, Consumer, Message, Pool, ProcessError, Stats};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::*;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<HashSet<(i32, i64)>>>;

type Outcome = std::pin::Pin<Box<dyn Future<Output = Result<(), ProcessError>> + Send>>;

/// A handler that records what it saw and takes `delay` per message.
fn recorder(
    seen: &Seen,
    delay: Duration,
) -> impl Fn(Arc<Message>) -> Outcome + Send + Sync + use<> {
    let seen = seen.clone();
    move |m: Arc<Message>| -> Outcome {
        let seen = seen.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            seen.lock().expect("lock").insert((m.partition, m.offset));
            Ok(())
        })
    }
}

fn count(seen: &Seen) -> usize {
    seen.lock().expect("lock").len()
}

/// Lowest offset seen per partition.
fn first_offsets(seen: &Seen) -> BTreeMap<i32, i64> {
    let mut first = BTreeMap::new();
    for &(p, o) in seen.lock().expect("lock").iter() {
        let e = first.entry(p).or_insert(o);
        *e = (*e).min(o);
    }
    first
}

fn committed_per_stats(stats: &Stats) -> HashMap<i32, i64> {
    stats
        .partitions
        .iter()
        .filter_map(|p| Some((p.partition, p.committed_offset?)))
        .collect()
}

/// A consumer stopped mid-way and a new one in the same group: the new one resumes from the
/// committed offsets, so nothing is lost and nothing below the committed offset is redone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offsets_with_nothing_lost() {
    let cluster = Cluster::new(1, 8);
    cluster.produce(1000, 10);
    let group = unique_group("restart");
    let config = test_config();

    let first: Seen = Arc::default();
    let pool = Pool::new(cluster.consumer(&group), config.clone()).expect("pool");
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run(
                stop.clone().cancelled_owned(),
                recorder(&first, Duration::from_millis(1))
            ),
            async {
                until("half processed", || count(&first) >= 400).await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("first run");
    drop(pool);
    let after_first = cluster.committed(&group);

    let second: Seen = Arc::default();
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run(
                stop.clone().cancelled_owned(),
                recorder(&second, Duration::ZERO)
            ),
            async {
                until("rest processed", || {
                    let all: HashSet<_> = first
                        .lock()
                        .expect("lock")
                        .union(&second.lock().expect("lock"))
                        .copied()
                        .collect();
                    all.len() == 1000
                })
                .await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("second run");

    let ends = cluster.ends();
    assert_eq!(cluster.committed(&group), ends, "committed to the end");
    for (p, resumed_at) in first_offsets(&second) {
        let committed = after_first.get(&p).copied().unwrap_or(0);
        assert_eq!(
            resumed_at, committed,
            "partition {p} resumed at its committed offset"
        );
    }
    let first = first.lock().expect("lock");
    for (p, committed) in &after_first {
        for o in 0..*committed {
            assert!(
                first.contains(&(*p, o)),
                "{p}@{o} committed but never processed"
            );
        }
    }
}

/// Two members, the second joining mid-way: every message is processed, the offsets end at the
/// end, and each partition the first member lost was resumed by the second exactly where the
/// first one's last commit left it (the old owner never committed it again).
async fn rebalance_between_two_members(strategy: &str) {
    logs();
    let cluster = Cluster::new(1, 8);
    cluster.produce(2000, 10);
    let group = unique_group("rebalance");
    let config = Config {
        num_workers: 4,
        ..test_config()
    };
    let consumer = |c: &Cluster| {
        let mut client = c.client_config(&group);
        client.set("partition.assignment.strategy", strategy);
        let consumer = Consumer::from_config(&client).expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        consumer
    };
    let (a_seen, b_seen): (Seen, Seen) = Default::default();
    let a = Pool::new(consumer(&cluster), config.clone()).expect("pool a");
    let stop = CancellationToken::new();
    let all_seen = || {
        let all: HashSet<_> = a_seen
            .lock()
            .expect("lock")
            .union(&b_seen.lock().expect("lock"))
            .copied()
            .collect();
        if std::env::var_os("POOL_TEST_TRACE").is_some() {
            eprintln!(
                "a {} b {} all {}",
                count(&a_seen),
                count(&b_seen),
                all.len()
            );
        }
        all.len() == 2800
    };
    let (ra, rb, ()) = guarded(async {
        tokio::join!(
            a.run(
                stop.clone().cancelled_owned(),
                recorder(&a_seen, Duration::from_millis(5))
            ),
            async {
                until("a under way", || count(&a_seen) >= 200).await;
                // Built only now: a subscribed consumer joins the group even before it polls.
                let b = Pool::new(consumer(&cluster), config).expect("pool b");
                b.run(
                    stop.clone().cancelled_owned(),
                    recorder(&b_seen, Duration::from_millis(5)),
                )
                .await
            },
            async {
                // Once a has let partitions go, more records arrive, so b has work whatever the
                // protocol's timing.
                until("a revoked", || a.stats().rebalances >= 2).await;
                cluster.produce(800, 10);
                until("all processed", all_seen).await;
                stop.cancel();
            }
        )
    })
    .await;
    ra.expect("a");
    rb.expect("b");
    assert_eq!(
        cluster.committed(&group),
        cluster.ends(),
        "committed to the end"
    );
    assert!(count(&b_seen) > 0, "b took over partitions");
    let a_committed = committed_per_stats(&a.stats());
    for (p, resumed_at) in first_offsets(&b_seen) {
        if let Some(&a_last) = a_committed.get(&p) {
            assert_eq!(
                resumed_at, a_last,
                "partition {p}: b resumed where a's last commit left it"
            );
        }
    }
}

/// Eager (range) assignment: revoke-all, drain, commit, reassign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_rebalance_hands_partitions_over_without_loss() {
    rebalance_between_two_members("range").await;
}

/// Cooperative-sticky assignment: only the moved partitions are revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalance_hands_partitions_over_without_loss() {
    rebalance_between_two_members("cooperative-sticky").await;
}

/// Injected request errors on commits and fetches, and a broker going down and up, cost
/// retries but no message: everything is processed and committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_lose_nothing() {
    let cluster = Cluster::new(3, 8);
    cluster.produce(1500, 10);
    let group = unique_group("faults");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run(
                stop.clone().cancelled_owned(),
                recorder(&seen, Duration::from_millis(2))
            ),
            async {
                until("under way", || count(&seen) >= 100).await;
                cluster
                    .broker
                    .on_mock(|mock| {
                        mock.request_errors(
                            RDKafkaApiKey::OffsetCommit,
                            &[
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
                            ],
                        );
                        mock.request_errors(
                            RDKafkaApiKey::Fetch,
                            &[
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
                            ],
                        );
                    })
                    .expect("inject request errors");
                until("more processed", || count(&seen) >= 500).await;
                let down = cluster.broker.on_mock(|mock| mock.broker_down(2));
                down.expect("mock").expect("down");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let up = cluster.broker.on_mock(|mock| mock.broker_up(2));
                up.expect("mock").expect("up");
                until("all processed", || count(&seen) == 1500).await;
                let ends = cluster.ends();
                until("all committed", || {
                    let committed = committed_per_stats(&pool.stats());
                    ends.iter().all(|(p, end)| committed.get(p) == Some(end))
                })
                .await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("clean shutdown");
    assert_eq!(cluster.committed(&group), cluster.ends());
}

/// Fails every message. A dead letter sent before `release` is cancelled is refused once it
/// is; one sent after is acknowledged.
struct RefusedDeadLetters {
    release: CancellationToken,
}

impl burrow_pool::Handler for RefusedDeadLetters {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        Err(ProcessError::permanent("bad record"))
    }

    async fn on_permanent_failure(
        &mut self,
        _: &Message,
        _: &burrow_pool::Failure,
    ) -> burrow_pool::FailureAction {
        let release = self.release.clone();
        let refused = !release.is_cancelled();
        burrow_pool::FailureAction::MarkDoneWhen(burrow_pool::Pending::new(async move {
            release.cancelled().await;
            if refused {
                Err(ProcessError::permanent("the dead-letter topic refused it"))
            } else {
                Ok(())
            }
        }))
    }
}

/// Finding 6 of issue 18: a dead letter refused after its partition was revoked must not halt
/// the member that let the partition go: the partition's next owner (this member again, or
/// another) runs the message again. It halted the pool, naming a message it no longer owned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_refused_after_its_partition_was_revoked_does_not_halt() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(1, 1);
    let group = unique_group("stale-dead-letter");
    // The revoke drains for 0.75 s, then lets the partition go with the dead letter awaited.
    let config = Config {
        shutdown_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let release = CancellationToken::new();
    let a = Pool::new(cluster.consumer(&group), config.clone()).expect("pool a");
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let handler = || {
        let release = release.clone();
        move |_| RefusedDeadLetters {
            release: release.clone(),
        }
    };
    let (result_a, result_b) = guarded(async {
        tokio::join!(
            a.run_with(stop_a.clone().cancelled_owned(), handler()),
            async {
                until_stats(
                    "a's dead letter awaited",
                    || a.stats(),
                    |s| s.results_awaited == 1,
                )
                .await;
                // b joins: the group rebalances, a's partition is revoked.
                let b = Pool::new(cluster.consumer(&group), config.clone()).expect("pool b");
                let (result_b, ()) = tokio::join!(
                    b.run_with(stop_b.clone().cancelled_owned(), handler()),
                    async {
                        until("the partition assigned again, to a or b", || {
                            a.stats().rebalances >= 3 || b.stats().assigned_partitions > 0
                        })
                        .await;
                        release.cancel();
                        until("the partition committed by its owner", || {
                            [a.stats(), b.stats()]
                                .iter()
                                .any(|s| s.partitions.iter().any(|p| p.committed_offset == Some(1)))
                        })
                        .await;
                        stop_a.cancel();
                        stop_b.cancel();
                    }
                );
                result_b
            }
        )
    })
    .await;
    result_a.expect("a dead letter refused after its partition was let go does not halt");
    result_b.expect("b acknowledged its dead letter");
}
