//! The pool against librdkafka's mock cluster: delivery, commits, retries, failures, ordering,
//! backpressure, stats, shutdown.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{
    Config, Consumer, Failure, FailureAction, HaltReason, Handler, Message, Ordering, Permanent,
    Pool, PoolError, ProcessError,
};
use support::*;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<HashMap<(i32, i64), u32>>>;

fn key(m: &Message) -> (i32, i64) {
    (m.partition, m.offset)
}

fn hash(m: &Message) -> u64 {
    // A cheap deterministic spread, so failures are known without randomness in assertions.
    (m.offset as u64)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(m.partition as u64 * 97)
        % 1000
}

/// Messages over 8 partitions with random delays, retriable and permanent failures, are all
/// processed at least once, and the committed offsets end at the end of every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_processed_and_committed_to_the_end() {
    let cluster = Cluster::new(1, 8);
    cluster.produce(2000, 50);
    let group = unique_group("all");
    let pool = Pool::new(
        cluster.consumer(&group),
        Config {
            num_workers: 16,
            ..test_config()
        },
    )
    .expect("pool");
    let seen: Seen = Arc::default();
    let permanent = Arc::new(Mutex::new(HashSet::new()));
    let process = {
        let (seen, permanent) = (seen.clone(), permanent.clone());
        move |m: Arc<Message>| {
            let (seen, permanent) = (seen.clone(), permanent.clone());
            async move {
                let h = hash(&m);
                tokio::time::sleep(Duration::from_micros(h * 2)).await;
                let attempts = {
                    let mut seen = seen.lock().expect("lock");
                    let a = seen.entry(key(&m)).or_insert(0);
                    *a += 1;
                    *a
                };
                if h.is_multiple_of(50) {
                    permanent.lock().expect("lock").insert(key(&m));
                    return Err(ProcessError::permanent("poison"));
                }
                if h.is_multiple_of(7) && attempts == 1 {
                    return Err(ProcessError::retriable("flaky"));
                }
                Ok(())
            }
        }
    };
    let stop = CancellationToken::new();
    let ends = cluster.ends();
    let result = guarded(async {
        tokio::join!(pool.run(stop.clone().cancelled_owned(), process), async {
            until_stats(
                "all done",
                || pool.stats(),
                |s| s.messages_processed + s.messages_failed == 2000,
            )
            .await;
            stop.cancel();
        })
    })
    .await
    .0;
    result.expect("clean shutdown");
    let stats = pool.stats();
    assert_eq!(seen.lock().expect("lock").len(), 2000, "every message seen");
    assert_eq!(
        stats.messages_failed,
        permanent.lock().expect("lock").len() as u64
    );
    assert!(stats.messages_retried > 0);
    assert_eq!(cluster.committed(&group), ends, "committed to the end");
    for p in 0..8 {
        assert_eq!(
            stats_committed(&stats, p),
            Some(ends[&p]),
            "stats report the broker's"
        );
    }
}

/// A slow message on partition 0 holds back only partition 0's commit, not partition 1's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_message_holds_back_only_its_own_partition() {
    let cluster = Cluster::new(1, 2);
    cluster.produce(20, 1);
    let group = unique_group("slow");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let release = CancellationToken::new();
    let process = {
        let release = release.clone();
        move |m: Arc<Message>| {
            let release = release.clone();
            async move {
                if (m.partition, m.offset) == (0, 0) {
                    release.cancelled().await;
                }
                Ok::<(), ProcessError>(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        // Partition 0's records may arrive after partition 1's: wait for both, partition 1
        // committed and partition 0's nine done offsets held above its gap.
        let gap_of_0 = |s: &burrow_pool::Stats| {
            s.partitions
                .iter()
                .find(|p| p.partition == 0)
                .map(|p| p.gap)
        };
        until_stats(
            "partition 1 committed, partition 0's done offsets held",
            || pool.stats(),
            |s| stats_committed(s, 1) == Some(10) && gap_of_0(s) == Some(9),
        )
        .await;
        let held = pool.stats();
        assert_eq!(
            stats_committed(&held, 0),
            None,
            "partition 0 held by its gap"
        );
        release.cancel();
        until_stats(
            "partition 0 committed",
            || pool.stats(),
            |s| stats_committed(s, 0) == Some(10),
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
}

/// Runs a no-op pool with `config` over `produced` messages on one partition until the stats
/// show `produced` committed: the commit that `what` names has happened.
async fn commit_happens(what: &str, produced: usize, config: Config) {
    let cluster = Cluster::new(1, 1);
    cluster.produce(produced, 1);
    let group = unique_group(what);
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let stop = CancellationToken::new();
    let result = guarded(async {
        tokio::join!(
            pool.run(stop.clone().cancelled_owned(), |_| async {
                Ok::<_, ProcessError>(())
            }),
            async {
                until_stats(
                    what,
                    || pool.stats(),
                    |s| stats_committed(s, 0) == Some(produced as i64),
                )
                .await;
                stop.cancel();
            }
        )
    })
    .await
    .0;
    result.expect("clean shutdown");
}

/// With a commit interval of an hour, `commit_batch_size` finished messages trigger a commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_triggers_a_commit_before_the_interval() {
    let config = Config {
        commit_interval: Duration::from_secs(3600),
        commit_batch_size: 10,
        ..test_config()
    };
    commit_happens("batch commit", 10, config).await;
}

/// With a batch size never reached, the commit interval commits what is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_triggers_a_commit_when_the_batch_is_not_full() {
    let config = Config {
        commit_interval: Duration::from_millis(100),
        commit_batch_size: 1_000_000,
        ..test_config()
    };
    commit_happens("interval commit", 5, config).await;
}

/// A retry waiting for its backoff holds no worker: with one worker, the other messages run,
/// while the waiting one keeps the commit behind it; shutdown drops it uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_retry_holds_no_worker_and_is_not_committed() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(10, 1);
    let group = unique_group("retrywait");
    let config = Config {
        num_workers: 1,
        retry_backoff_base: Duration::from_secs(3600),
        retry_backoff_max: Duration::from_secs(3600),
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let stop = CancellationToken::new();
    let process = |m: Arc<Message>| async move {
        if m.offset == 0 {
            Err(ProcessError::retriable("later"))
        } else {
            Ok(())
        }
    };
    let result = guarded(async {
        tokio::join!(pool.run(stop.clone().cancelled_owned(), process), async {
            until_stats(
                "others done",
                || pool.stats(),
                |s| s.messages_processed == 9 && s.retries_waiting == 1 && s.workers_busy == 0,
            )
            .await;
            stop.cancel();
        })
    })
    .await
    .0;
    result.expect("clean shutdown");
    assert_eq!(
        cluster.committed(&group).get(&0),
        None,
        "offset 0 never done"
    );
}

/// A non-retriable error fails the message at once: one attempt, no retry, counted, skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retriable_error_skips_retries() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(10, 1);
    let group = unique_group("perm");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let attempts = Arc::new(AtomicUsize::new(0));
    let process = {
        let attempts = attempts.clone();
        move |m: Arc<Message>| {
            let attempts = attempts.clone();
            async move {
                if m.offset == 3 {
                    attempts.fetch_add(1, AtomicOrdering::SeqCst);
                    Err(Permanent(std::io::Error::other("bad input")))?;
                }
                Ok::<(), ProcessError>(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        until_stats(
            "committed",
            || pool.stats(),
            |s| stats_committed(s, 0) == Some(10),
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let s = pool.stats();
    assert_eq!(attempts.load(AtomicOrdering::SeqCst), 1);
    assert_eq!((s.messages_failed, s.messages_retried), (1, 0));
}

/// A retriable error is retried `max_retries` times with backoff, then fails permanently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_error_is_retried_then_fails_permanently() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(10, 1);
    let group = unique_group("exhaust");
    let config = Config {
        max_retries: 2,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let attempts = Arc::new(AtomicUsize::new(0));
    let process = {
        let attempts = attempts.clone();
        move |m: Arc<Message>| {
            let attempts = attempts.clone();
            async move {
                if m.offset == 3 {
                    attempts.fetch_add(1, AtomicOrdering::SeqCst);
                    return Err(std::io::Error::other("flaky"));
                }
                Ok(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        until_stats(
            "committed",
            || pool.stats(),
            |s| stats_committed(s, 0) == Some(10),
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let s = pool.stats();
    assert_eq!(
        attempts.load(AtomicOrdering::SeqCst),
        3,
        "1 try + 2 retries"
    );
    assert_eq!((s.messages_failed, s.messages_retried), (1, 2));
}

/// A handler that dead-letters in its failure hook.
struct DeadLetters {
    /// Messages "dead-lettered", with the failure's attempts.
    letters: Arc<Mutex<Vec<(i64, u32, String)>>>,
    /// Halt instead of marking done.
    halt: bool,
}

impl Handler for DeadLetters {
    async fn process(&mut self, m: &Message, _attempt: u32) -> Result<(), ProcessError> {
        if m.offset == 4 {
            return Err(ProcessError::permanent("cannot parse"));
        }
        Ok(())
    }

    async fn on_permanent_failure(&mut self, m: &Message, f: &Failure) -> FailureAction {
        self.letters
            .lock()
            .expect("lock")
            .push((m.offset, f.attempts, f.error.to_string()));
        if self.halt {
            FailureAction::Halt("dead-letter topic unavailable".into())
        } else {
            FailureAction::MarkDone
        }
    }
}

/// The failure hook sees each permanent failure (message, attempts, error) and, when it marks
/// the message done, the offset advances past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_hook_dead_letters_then_the_offset_advances() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(10, 1);
    let group = unique_group("hook");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let letters = Arc::default();
    let stop = CancellationToken::new();
    let result = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), |_| DeadLetters {
                letters: Arc::clone(&letters),
                halt: false,
            }),
            async {
                until_stats(
                    "committed",
                    || pool.stats(),
                    |s| stats_committed(s, 0) == Some(10),
                )
                .await;
                stop.cancel();
            }
        )
    })
    .await
    .0;
    result.expect("clean shutdown");
    assert_eq!(
        *letters.lock().expect("lock"),
        [(4, 1, "cannot parse".to_owned())]
    );
    assert_eq!(pool.stats().messages_failed, 1);
}

/// A failure hook that halts stops the pool with the reason, and the failed message is not
/// committed (it is redelivered after a restart), while what was done before it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_hook_can_halt_without_committing_the_message() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(10, 1);
    let group = unique_group("hookhalt");
    let config = Config {
        ordering: Ordering::Partition,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let letters = Arc::default();
    let result = guarded(pool.run_with(std::future::pending(), |_| DeadLetters {
        letters: Arc::clone(&letters),
        halt: true,
    }))
    .await;
    match result {
        Err(PoolError::Halted(HaltReason::FailureHandler { at, reason })) => {
            assert_eq!(at, "events/0@4");
            assert_eq!(reason, "dead-letter topic unavailable");
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    assert_eq!(cluster.committed(&group).get(&0).copied(), Some(4));
}

/// `max_consecutive_errors` permanent failures in a row halt the pool; `run` returns why, after
/// committing the failures it marked done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_halt_the_pool_after_committing() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(20, 1);
    let group = unique_group("halt");
    let config = Config {
        ordering: Ordering::Partition,
        max_consecutive_errors: 5,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let result = guarded(pool.run(std::future::pending(), |_| async {
        Err::<(), _>(Permanent("always broken"))
    }))
    .await;
    match result {
        Err(PoolError::Halted(HaltReason::ConsecutiveFailures { count, last })) => {
            assert_eq!(count, 5);
            assert!(last.contains("always broken"), "{last}");
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    assert_eq!(cluster.committed(&group).get(&0).copied(), Some(5));
    assert_eq!(pool.stats().messages_failed, 5);
}

/// Checks in-order, one-at-a-time processing per lane under concurrency and retries.
#[derive(Default)]
struct OrderProbe {
    /// Lanes with a message running now.
    running: Mutex<HashSet<String>>,
    /// Successful offsets per lane, in completion order.
    order: Mutex<HashMap<String, Vec<i64>>>,
    /// Set if two messages of one lane ever ran at once.
    overlap: Mutex<bool>,
}

async fn ordered_run(ordering: Ordering, lane: fn(&Message) -> String) -> Arc<OrderProbe> {
    let cluster = Cluster::new(1, 8);
    cluster.produce(800, 5);
    let group = unique_group("order");
    let config = Config {
        ordering,
        num_workers: 16,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let probe = Arc::new(OrderProbe::default());
    let process = {
        let probe = probe.clone();
        move |m: Arc<Message>| {
            let probe = probe.clone();
            async move {
                let lane = lane(&m);
                if !probe.running.lock().expect("lock").insert(lane.clone()) {
                    *probe.overlap.lock().expect("lock") = true;
                }
                tokio::time::sleep(Duration::from_micros(hash(&m))).await;
                probe.running.lock().expect("lock").remove(&lane);
                // Every 5th message fails once: its retry must keep its place in the lane.
                let mut order = probe.order.lock().expect("lock");
                let done = order.entry(lane).or_default();
                if hash(&m).is_multiple_of(5) && !done.contains(&(-m.offset - 1)) {
                    done.push(-m.offset - 1); // marker: failed once
                    return Err(ProcessError::retriable("once"));
                }
                done.push(m.offset);
                Ok(())
            }
        }
    };
    let stop = CancellationToken::new();
    let ends = cluster.ends();
    let result = guarded(async {
        tokio::join!(pool.run(stop.clone().cancelled_owned(), process), async {
            until_stats("all done", || pool.stats(), |s| s.messages_processed == 800).await;
            stop.cancel();
        })
    })
    .await
    .0;
    result.expect("clean shutdown");
    assert_eq!(cluster.committed(&group), ends);
    probe
}

fn successes_in_order(probe: &OrderProbe) {
    assert!(
        !*probe.overlap.lock().expect("lock"),
        "two of one lane ran at once"
    );
    for (lane, offsets) in probe.order.lock().expect("lock").iter() {
        let ok: Vec<i64> = offsets.iter().copied().filter(|o| *o >= 0).collect();
        assert!(
            ok.windows(2).all(|w| w[0] < w[1]),
            "lane {lane} out of order: {ok:?}"
        );
    }
}

/// `partition` ordering: one message in flight per partition, in offset order, retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_holds_under_concurrency_and_retries() {
    let probe = ordered_run(Ordering::Partition, |m| m.partition.to_string()).await;
    successes_in_order(&probe);
}

/// `key` ordering: one message in flight per key per partition, in offset order, retries
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_under_concurrency_and_retries() {
    let probe = ordered_run(Ordering::Key, |m| {
        format!(
            "{}/{}",
            m.partition,
            String::from_utf8_lossy(m.key.as_deref().unwrap_or_default())
        )
    })
    .await;
    successes_in_order(&probe);
}

/// A full pool stops taking messages while the consumer keeps polling: a handler call longer
/// than `max.poll.interval.ms` does not get the member kicked out (one assignment, no message
/// processed twice), and the queue stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_stops_taking_and_keeps_the_member_in_the_group() {
    let cluster = Cluster::new(1, 2);
    cluster.produce_one_by_one(40);
    let group = unique_group("backpressure");
    let mut client = cluster.client_config(&group);
    client
        // The mock's first join takes 3 s, so the session must outlast it.
        .set("max.poll.interval.ms", "4000")
        .set("session.timeout.ms", "4000")
        .set("heartbeat.interval.ms", "300")
        // One small batch per fetch, so the queue bound is the pool's, not one big fetch's.
        .set("max.partition.fetch.bytes", "64")
        .set("fetch.wait.max.ms", "10");
    let consumer = Consumer::from_config(&client).expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let config = Config {
        num_workers: 1,
        job_queue_size: 4,
        shutdown_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let pool = Pool::new(consumer, config).expect("pool");
    let seen: Seen = Arc::default();
    let process = {
        let seen = seen.clone();
        move |m: Arc<Message>| {
            let seen = seen.clone();
            async move {
                *seen.lock().expect("lock").entry(key(&m)).or_insert(0) += 1;
                // One handler call longer than max.poll.interval.ms.
                let took = if m.offset == 0 && m.partition == 0 {
                    5000
                } else {
                    10
                };
                tokio::time::sleep(Duration::from_millis(took)).await;
                Ok::<_, ProcessError>(())
            }
        }
    };
    let max_queued = AtomicUsize::new(0);
    let result = run_while(&pool, process, async {
        until_stats(
            "all done",
            || pool.stats(),
            |s| {
                max_queued.fetch_max(s.jobs_queued, AtomicOrdering::Relaxed);
                s.messages_processed == 40
            },
        )
        .await;
    })
    .await;
    result.expect("clean shutdown");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 40);
    assert!(
        seen.values().all(|n| *n == 1),
        "a message was processed twice"
    );
    assert_eq!(
        pool.stats().rebalances,
        1,
        "one assignment, never kicked out"
    );
    let max_queued = max_queued.load(AtomicOrdering::Relaxed);
    assert!(max_queued < 20, "queue bounded, saw {max_queued}");
}

/// Shutdown lets in-flight work finish, commits it, and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_work_and_commits() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(4, 1);
    let group = unique_group("shutdown");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let process = {
        let (started, finished) = (started.clone(), finished.clone());
        move |_: Arc<Message>| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.fetch_add(1, AtomicOrdering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.fetch_add(1, AtomicOrdering::SeqCst);
                Ok::<_, ProcessError>(())
            }
        }
    };
    let result = run_while(&pool, process, async {
        until_stats("all in flight", || pool.stats(), |s| s.workers_busy == 4).await;
    })
    .await;
    result.expect("clean shutdown");
    assert_eq!(finished.load(AtomicOrdering::SeqCst), 4);
    assert_eq!(cluster.committed(&group).get(&0).copied(), Some(4));
}

/// A handler stuck forever does not hang shutdown: after `shutdown_timeout` the pool commits
/// what is done (not the stuck message) and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_abandons_stuck_work_and_returns() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(6, 1);
    let group = unique_group("stuck");
    let config = Config {
        shutdown_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let process = |m: Arc<Message>| async move {
        if m.offset == 3 {
            std::future::pending::<()>().await;
        }
        Ok::<_, ProcessError>(())
    };
    let result = run_while(&pool, process, async {
        until_stats(
            "others done",
            || pool.stats(),
            |s| s.messages_processed == 5,
        )
        .await;
    })
    .await;
    result.expect("returns after the timeout");
    assert_eq!(cluster.committed(&group).get(&0).copied(), Some(3));
}

/// The stats and the `burrow_*` metrics (with the caller's tenant label) report what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_report_what_happened() {
    let cluster = Cluster::new(1, 2);
    cluster.produce(30, 1);
    let group = unique_group("metrics");
    let registry = prometheus::Registry::new();
    let labels = HashMap::from([("tenant".to_owned(), "acme".to_owned())]);
    let config = Config {
        enable_metrics: true,
        ..test_config()
    };
    let pool =
        Pool::with_registry(cluster.consumer(&group), config, &registry, labels).expect("pool");
    let stop = CancellationToken::new();
    let process = |m: Arc<Message>| async move {
        if m.offset == 0 {
            return Err(ProcessError::permanent("no"));
        }
        Ok(())
    };
    let result = guarded(async {
        tokio::join!(pool.run(stop.clone().cancelled_owned(), process), async {
            until_stats(
                "all done",
                || pool.stats(),
                |s| s.messages_processed + s.messages_failed == 30,
            )
            .await;
            stop.cancel();
        })
    })
    .await
    .0;
    result.expect("clean shutdown");
    let s = pool.stats();
    assert_eq!((s.messages_processed, s.messages_failed), (28, 2));
    assert_eq!((s.workers_busy, s.jobs_queued), (0, 0));
    assert!(s.offsets_committed >= 2);
    let committed = cluster.committed(&group);
    for p in 0..2 {
        assert_eq!(stats_committed(&s, p), committed.get(&p).copied());
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode");
    assert!(
        text.contains(r#"burrow_messages_processed_total{tenant="acme"} 28"#),
        "{text}"
    );
    assert!(text.contains(r#"burrow_messages_failed_total{tenant="acme"} 2"#));
    assert!(
        text.contains(r#"burrow_committed_offset{partition="0",tenant="acme",topic="events"} 15"#)
    );
}

/// `Pool::new` refuses a consumer with auto-commit on, and names every bad config field.
#[tokio::test]
async fn pool_refuses_auto_commit_and_invalid_config() {
    let cluster = Cluster::new(1, 1);
    let mut client = cluster.client_config("refuse");
    client.set("enable.auto.commit", "true");
    let auto = Consumer::from_config(&client).expect("consumer");
    assert!(matches!(
        Pool::new(auto, Config::default()),
        Err(PoolError::AutoCommitEnabled)
    ));
    let mut client = cluster.client_config("refuse");
    client.remove("enable.auto.commit");
    let default_auto = Consumer::from_config(&client).expect("consumer");
    assert!(matches!(
        Pool::new(default_auto, Config::default()),
        Err(PoolError::AutoCommitEnabled)
    ));
    let bad = Config {
        num_workers: 0,
        commit_batch_size: 0,
        ..Config::default()
    };
    match Pool::new(cluster.consumer("refuse"), bad) {
        Err(PoolError::Config(e)) => {
            let fields: Vec<_> = e.fields.iter().map(|f| f.field).collect();
            assert_eq!(fields, ["num_workers", "commit_batch_size"]);
        }
        other => panic!("expected a config error, got {:?}", other.err()),
    }
    let mut client = cluster.client_config("refuse");
    client.set("max.poll.interval.ms", "10000");
    let short_poll = Consumer::from_config(&client).expect("consumer");
    assert!(matches!(
        Pool::new(short_poll, Config::default()),
        Err(PoolError::ShutdownTimeoutTooLong { .. })
    ));
}
