//! Late results (`Processed::Later`): a handler hands back a message whose result comes later
//! (the acks of what it produced) and its worker goes on. The message keeps its offset, its
//! lane and its place in the bound until the result comes; a late error is retried or handled
//! exactly like one returned at once; a shutdown never commits past a result still to come.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_pool::{Attempt, Config, Failure, FailureAction, Handler, Message, Ordering, Pool};
use burrow_pool::{Pending, ProcessError, Processed};
use support::{Cluster, guarded, test_config, unique_group, until, until_stats};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn payload(m: &Message) -> u64 {
    std::str::from_utf8(m.payload.as_deref().unwrap_or_default())
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Every result is late: it comes when `gate` opens, holding `holding` bytes until then.
struct Gated {
    gate: watch::Receiver<bool>,
    handed: Arc<AtomicUsize>,
    holding: usize,
}

impl Handler for Gated {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        unreachable!("a batching handler gets process_batch")
    }

    fn max_batch(&self) -> usize {
        8
    }

    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        self.handed.fetch_add(batch.len(), AtomicOrdering::SeqCst);
        batch
            .iter()
            .map(|_| {
                let mut gate = self.gate.clone();
                Processed::Later(
                    Pending::new(async move {
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(())
                    })
                    .holding(self.holding),
                )
            })
            .collect()
    }
}

/// One worker whose results all wait for a gate: the worker takes batch after batch meanwhile,
/// up to the pool's bound and no further; nothing is counted or committed before the results
/// come; then everything is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_goes_on_while_its_results_wait_and_offsets_wait_for_them() {
    const N: usize = 400;
    let cluster = Cluster::new(1, 2);
    cluster.produce(N, 10);
    let group = unique_group("pending");
    let config = Config {
        num_workers: 1,
        job_queue_size: 100,
        enable_metrics: true,
        ..test_config()
    };
    let registry = prometheus::Registry::new();
    let pool = Pool::with_registry(cluster.consumer(&group), config, &registry, HashMap::new())
        .expect("pool");
    let (open, gate) = watch::channel(false);
    let handed = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let script = async {
        until("the one worker took several batches", || {
            handed.load(AtomicOrdering::SeqCst) > 8
        })
        .await;
        // Settle: the bound stops the intake; give the pool time to overrun it if it would.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let taken = handed.load(AtomicOrdering::SeqCst);
        assert!(taken <= 100, "{taken} messages taken past a bound of 100");
        let stats = pool.stats();
        assert_eq!(
            stats.messages_processed, 0,
            "nothing done before its result"
        );
        assert_eq!(
            stats.results_awaited, taken,
            "every message taken awaits its result"
        );
        assert_eq!(stats.workers_busy, 0, "no worker waits with them");
        let awaited = registry
            .gather()
            .iter()
            .find(|family| family.name() == "burrow_results_awaited")
            .and_then(|family| {
                family
                    .get_metric()
                    .first()
                    .map(|m| m.get_gauge().get_value())
            });
        assert_eq!(awaited, Some(taken as f64), "the gauge says so too");
        assert!(cluster.committed(&group).is_empty(), "nothing committed");
        open.send_replace(true);
        until_stats(
            "all processed",
            || pool.stats(),
            |s| s.messages_processed == N as u64,
        )
        .await;
        until("all committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
        stop.cancel();
    };
    let handler = |_| Gated {
        gate: gate.clone(),
        handed: Arc::clone(&handed),
        holding: 0,
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), handler),
            script
        )
    })
    .await;
    result.expect("clean shutdown");
}

/// What the late-failing handler saw.
#[derive(Default)]
struct Log {
    attempts: HashMap<(i32, i64), u32>,
    /// Per lane (`partition/key`), offsets whose late result was a success, in that order.
    succeeded: BTreeMap<String, Vec<i64>>,
    failed: Vec<(i32, i64)>,
}

/// Results come after 0–2 ms. Payload `i` with `i % 23 == 0` fails permanently (late); with
/// `i % 7 == 0` fails retriably on its first attempt (late).
struct LateFailing(Arc<Mutex<Log>>);

impl Handler for LateFailing {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        unreachable!("a batching handler gets process_batch")
    }

    fn max_batch(&self) -> usize {
        4
    }

    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        batch
            .iter()
            .map(|a| {
                let (m, attempt, log) = (Arc::clone(&a.message), a.attempt, Arc::clone(&self.0));
                *log.lock()
                    .expect("lock")
                    .attempts
                    .entry((m.partition, m.offset))
                    .or_insert(0) += 1;
                Processed::Later(Pending::new(async move {
                    tokio::time::sleep(Duration::from_micros(payload(&m) % 3 * 700)).await;
                    let i = payload(&m);
                    if i.is_multiple_of(23) {
                        return Err(ProcessError::permanent("bad record"));
                    }
                    if i.is_multiple_of(7) && attempt == 1 {
                        return Err(ProcessError::retriable("not acknowledged"));
                    }
                    let lane = support::lane(&m);
                    log.lock()
                        .expect("lock")
                        .succeeded
                        .entry(lane)
                        .or_default()
                        .push(m.offset);
                    Ok(())
                }))
            })
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

/// A late error is retried, or handed to the failure hook, exactly like one returned at once;
/// in key order the late successes of a key come in offset order; everything is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_errors_retry_or_fail_and_key_order_holds() {
    const N: usize = 2_000;
    let cluster = Cluster::new(1, 3);
    cluster.produce(N, 20);
    let group = unique_group("pending-fail");
    let config = Config {
        num_workers: 2,
        ordering: Ordering::Key,
        max_consecutive_errors: 1_000,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = CancellationToken::new();
    let script = async {
        until_stats(
            "all done",
            || pool.stats(),
            |s| s.messages_processed + s.messages_failed == N as u64,
        )
        .await;
        until("all committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
        stop.cancel();
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), |_| LateFailing(log.clone())),
            script
        )
    })
    .await;
    result.expect("clean shutdown");
    let stats = pool.stats();
    let log = log.lock().expect("lock");
    let permanent = (0..N as u64).filter(|i| i.is_multiple_of(23)).count();
    let retried = (0..N as u64)
        .filter(|i| i.is_multiple_of(7) && !i.is_multiple_of(23))
        .count();
    assert_eq!(
        log.failed.len(),
        permanent,
        "each late permanent failure hooked once"
    );
    assert_eq!(stats.messages_failed, permanent as u64);
    assert_eq!(stats.messages_retried, retried as u64);
    assert_eq!(stats.messages_processed, (N - permanent) as u64);
    for at in &log.failed {
        assert_eq!(log.attempts[at], 1, "a permanent failure is not retried");
    }
    for (lane, offsets) in &log.succeeded {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, &sorted, "lane {lane} out of order");
    }
}

/// A result that never comes holds its offset through shutdown: the pool waits
/// `shutdown_timeout`, then commits every partition up to it and no further, so the message is
/// redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_never_commits_past_a_result_still_to_come() {
    const N: usize = 300;
    const STUCK: u64 = 31; // partition 1 (31 % 3), offset 10
    let cluster = Cluster::new(1, 3);
    cluster.produce(N, 10);
    let group = unique_group("pending-stop");
    let config = Config {
        num_workers: 2,
        // Room for everything: what is done above the gap stays in the bound until it closes.
        job_queue_size: 1_000,
        shutdown_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    struct StuckOne;
    impl Handler for StuckOne {
        async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
            unreachable!("a batching handler gets process_batch")
        }
        fn max_batch(&self) -> usize {
            8
        }
        async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
            batch
                .iter()
                .map(|a| {
                    let stuck = payload(&a.message) == STUCK;
                    Processed::Later(Pending::new(async move {
                        if stuck {
                            std::future::pending::<()>().await;
                        }
                        Ok(())
                    }))
                })
                .collect()
        }
    }
    let stop = CancellationToken::new();
    let script = async {
        until_stats(
            "all but one done",
            || pool.stats(),
            |s| s.messages_processed == N as u64 - 1,
        )
        .await;
        stop.cancel();
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), |_| StuckOne),
            script
        )
    })
    .await;
    result.expect("shutdown after the timeout is still clean");
    let mut expected = cluster.ends();
    expected.insert(1, 10);
    assert_eq!(cluster.committed(&group), expected);
}

/// Late results that hold bytes (`Pending::holding`) count against `max_buffered_bytes`: while
/// they wait, the pool takes no more messages; when they come, it takes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_held_by_late_results_stop_the_intake_until_they_come() {
    const HALF: usize = 500;
    const HELD: usize = 64 * 1024;
    let cluster = Cluster::new(1, 1);
    cluster.produce(HALF, 10);
    let group = unique_group("pending-bytes");
    let config = Config {
        num_workers: 2,
        job_queue_size: 4 * HALF,
        // 16 held results' worth: the first half alone holds 31 MiB.
        max_buffered_bytes: 16 * HELD as u64,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let (open, gate) = watch::channel(false);
    let handed = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let script = async {
        until_stats(
            "the first half awaits its results",
            || pool.stats(),
            |s| s.results_awaited == HALF,
        )
        .await;
        cluster.produce(HALF, 10);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            handed.load(AtomicOrdering::SeqCst),
            HALF,
            "the second half was taken while the first held the byte bound"
        );
        open.send_replace(true);
        until_stats(
            "all processed",
            || pool.stats(),
            |s| s.messages_processed == 2 * HALF as u64,
        )
        .await;
        until("all committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
        stop.cancel();
    };
    let handler = |_| Gated {
        gate: gate.clone(),
        handed: Arc::clone(&handed),
        holding: HELD,
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), handler),
            script
        )
    })
    .await;
    result.expect("clean shutdown");
}

/// A late result that panics is a retriable failure of its message, as a handler that panics
/// is: it is retried, then done, and everything is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_result_that_panics_is_retried() {
    const N: usize = 50;
    struct PanicsOnce;
    impl Handler for PanicsOnce {
        async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
            unreachable!("a batching handler gets process_batch")
        }
        fn max_batch(&self) -> usize {
            8
        }
        async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
            batch
                .iter()
                .map(|a| {
                    let first = a.attempt == 1;
                    Processed::Later(Pending::new(async move {
                        assert!(!first, "a late result panics on the first attempt");
                        Ok(())
                    }))
                })
                .collect()
        }
    }
    let cluster = Cluster::new(1, 2);
    cluster.produce(N, 5);
    let group = unique_group("pending-panic");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let stop = CancellationToken::new();
    let script = async {
        until_stats(
            "all done",
            || pool.stats(),
            |s| s.messages_processed == N as u64,
        )
        .await;
        until("all committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
        stop.cancel();
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), |_| PanicsOnce),
            script
        )
    })
    .await;
    result.expect("clean shutdown");
    let stats = pool.stats();
    assert_eq!(stats.messages_retried, N as u64, "each panic was a retry");
    assert_eq!(stats.messages_failed, 0);
}

/// Fails every message; its failure hook sends a "dead letter" whose ack comes when `gate`
/// opens, or fails when `fail_acks` says so.
struct DeadLetters {
    gate: watch::Receiver<bool>,
    hooks: Arc<AtomicUsize>,
    fail_acks: bool,
}

impl Handler for DeadLetters {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        Err(ProcessError::permanent("bad record"))
    }

    async fn on_permanent_failure(&mut self, _: &Message, _: &Failure) -> FailureAction {
        self.hooks.fetch_add(1, AtomicOrdering::SeqCst);
        let (mut gate, fail) = (self.gate.clone(), self.fail_acks);
        FailureAction::MarkDoneWhen(Pending::new(async move {
            let _ = gate.wait_for(|open| *open).await;
            if fail {
                Err(ProcessError::permanent("the dead-letter topic refused it"))
            } else {
                Ok(())
            }
        }))
    }
}

/// A dead letter awaiting its ack (`FailureAction::MarkDoneWhen`) frees its worker: one worker
/// hands every failed message to the hook while no ack has come, each counted failed at once,
/// none committed; when the acks come, every offset commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_awaiting_its_ack_frees_its_worker_and_holds_its_offset() {
    const N: usize = 200;
    let cluster = Cluster::new(1, 2);
    cluster.produce(N, 10);
    let group = unique_group("pending-dead-letters");
    let config = Config {
        num_workers: 1,
        // Room for every message: they all wait for their acks at once.
        job_queue_size: 1_000,
        max_consecutive_errors: 1_000_000,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let (open, gate) = watch::channel(false);
    let hooks = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let script = async {
        until("the one worker ran every message's hook", || {
            hooks.load(AtomicOrdering::SeqCst) == N
        })
        .await;
        let stats = pool.stats();
        assert_eq!(stats.messages_failed, N as u64, "counted when they failed");
        assert_eq!(
            stats.results_awaited, N,
            "each awaits its dead letter's ack"
        );
        assert_eq!(stats.workers_busy, 0, "no worker waits with them");
        tokio::time::sleep(test_config().commit_interval * 3).await;
        assert!(cluster.committed(&group).is_empty(), "nothing committed");
        open.send_replace(true);
        until("all committed", || {
            cluster.committed(&group) == cluster.ends()
        })
        .await;
        stop.cancel();
    };
    let handler = |_| DeadLetters {
        gate: gate.clone(),
        hooks: Arc::clone(&hooks),
        fail_acks: false,
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), handler),
            script
        )
    })
    .await;
    result.expect("the pool ran");
    assert_eq!(
        pool.stats().messages_failed,
        N as u64,
        "each failure counted once"
    );
}

/// A dead letter whose handling fails in the end halts the pool, naming the message and the
/// error, and its offset is never committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_fails_late_halts_without_committing_its_message() {
    let cluster = Cluster::new(1, 1);
    cluster.produce(20, 1);
    let group = unique_group("pending-dead-letter-fails");
    let config = Config {
        num_workers: 2,
        max_consecutive_errors: 1_000_000,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&group), config).expect("pool");
    let (_open, gate) = watch::channel(true);
    let hooks = Arc::new(AtomicUsize::new(0));
    let handler = |_| DeadLetters {
        gate: gate.clone(),
        hooks: Arc::clone(&hooks),
        fail_acks: true,
    };
    let result = guarded(pool.run_with(std::future::pending(), handler)).await;
    match result {
        Err(burrow_pool::PoolError::Halted(burrow_pool::HaltReason::FailureHandler {
            at,
            reason,
        })) => {
            assert!(at.contains("/0@"), "names the message: {at}");
            assert!(reason.contains("refused"), "says why: {reason}");
        }
        other => panic!("expected a halt from the failure handling, got {other:?}"),
    }
    let committed = cluster.committed(&group);
    assert!(
        committed.get(&0).copied().unwrap_or(0) == 0,
        "the first failed message's offset is not committed: {committed:?}"
    );
}
