//! Exactly-once output (`Pool::with_transactions`) on the mock cluster: each commit is a
//! transaction carrying exactly the records of the messages its offsets commit; records of
//! messages above a gap wait for the prefix; an aborted transaction's messages run again; a
//! fenced producer halts the pool and commits nothing more.
//!
//! The mock cluster does not hide aborted transactions from `read_committed` readers (its
//! `EndTxn` writes no markers and its fetches list no aborted transactions; measured: all 10
//! records of a flushed, then aborted, transaction are read back). So the faults here are
//! injected on `AddPartitionsToTxn`, which librdkafka must pass before it sends a transaction's
//! first record to a partition: the failed transactions' records never reach the log, and what
//! a reader sees is exactly what committed transactions carried.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_e2e::kafka;
use burrow_pool::{
    Attempt, Config, HaltReason, Handler, Message, Ordering, OutRecord, Pool, PoolError,
    ProcessError, Processed, Transactions,
};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::{Cluster, guarded, stats_committed, test_config, unique_group, until};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const OUT: &str = "out";

/// Forwards each message to [`OUT`] as its output; counts calls per (partition, offset); the
/// message at `hold` waits for `gate`.
struct Forward {
    calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>>,
    hold: Option<(i32, i64)>,
    gate: watch::Receiver<bool>,
}

impl Handler for Forward {
    async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
        unreachable!("a batching handler gets process_batch")
    }

    fn max_batch(&self) -> usize {
        4
    }

    async fn process_batch(&mut self, batch: &[Attempt]) -> Vec<Processed> {
        let mut results = Vec::new();
        for item in batch {
            let m = &item.message;
            *self
                .calls
                .lock()
                .expect("calls")
                .entry((m.partition, m.offset))
                .or_default() += 1;
        }
        for item in batch {
            let m = &item.message;
            if self.hold == Some((m.partition, m.offset)) {
                let _ = self.gate.clone().wait_for(|open| *open).await;
            }
            results.push(Processed::Output(vec![OutRecord {
                topic: OUT.into(),
                key: m.key.clone(),
                value: m.payload.clone(),
                headers: Vec::new(),
            }]));
        }
        results
    }
}

fn transactions(cluster: &Cluster, id: &str, step: Duration) -> Transactions {
    let mut config = cluster.broker.client();
    config.set("transactional.id", id);
    Transactions::new(&config, step).expect("transactions")
}

/// What a `read_committed` reader finds on [`OUT`]: payload → times seen.
fn outputs(cluster: &Cluster) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for record in kafka::read_to_end(&cluster.broker, OUT).expect("read the output") {
        *seen.entry(record.value_text()).or_default() += 1;
    }
    seen
}

/// A cluster of `partitions` with the output topic, and a pool with transactions on it.
fn transactional_pool(partitions: i32, name: &str, config: Config) -> (Cluster, Pool) {
    transactional_pool_with_steps(partitions, name, config, Duration::from_secs(10))
}

/// The same, each step of a transaction given `step` before it times out.
fn transactional_pool_with_steps(
    partitions: i32,
    name: &str,
    config: Config,
    step: Duration,
) -> (Cluster, Pool) {
    let cluster = Cluster::new(1, partitions);
    kafka::create_topic(&cluster.broker, OUT, 1).expect("output topic");
    let group = unique_group(name);
    let pool = Pool::new(cluster.consumer(&group), config)
        .expect("pool")
        .with_transactions(transactions(&cluster, &group, step));
    (cluster, pool)
}

/// The `read_committed` reader found each of `n` outputs exactly once.
fn assert_each_once(cluster: &Cluster, n: usize) {
    let seen = outputs(cluster);
    assert_eq!(seen.len(), n, "every message's output");
    assert!(seen.values().all(|&k| k == 1), "each once: {seen:?}");
}

/// Waits until the pool's transactions have committed every partition to its end. (The mock
/// cluster keeps no offsets committed in a transaction, so the pool's own count is read.)
async fn committed_to_the_ends(cluster: &Cluster, pool: &Pool) {
    let ends = cluster.ends();
    until("everything committed", || {
        let stats = pool.stats();
        ends.iter()
            .all(|(p, end)| stats_committed(&stats, *p) == Some(*end))
    })
    .await;
}

fn forward(
    calls: &Arc<Mutex<BTreeMap<(i32, i64), u32>>>,
    hold: Option<(i32, i64)>,
    gate: &watch::Receiver<bool>,
) -> impl FnMut(usize) -> Forward {
    let (calls, gate) = (Arc::clone(calls), gate.clone());
    move |_| Forward {
        calls: Arc::clone(&calls),
        hold,
        gate: gate.clone(),
    }
}

/// Every message's output appears once, in transactions whose offsets commit its message; the
/// committed offsets reach the ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_is_committed_once_with_its_offset() {
    const N: usize = 400;
    let (cluster, pool) = transactional_pool(4, "txn-all", test_config());
    cluster.produce(N, 20);
    let calls = Arc::default();
    let (_open, gate) = watch::channel(true);
    run_to_the_ends(&cluster, &pool, &calls, &gate).await;
    assert_each_once(&cluster, N);
    let stats = pool.stats();
    assert_eq!(stats.transaction_records, N as u64, "{stats:?}");
    assert!(
        stats.transactions_committed > 0 && stats.transactions_aborted == 0,
        "{stats:?}"
    );
}

/// A commit slower than its step's timeout (the coordinator answering `EndTxn` with
/// CONCURRENT_TRANSACTIONS five times, which librdkafka retries with a growing backoff: about
/// 2.5 s, against a 1 s step) is resumed until it lands, not taken for an abort. Taken for
/// one, its messages would run again though their outputs committed, and every later
/// transaction would be refused ("Conflicting commit_transaction API call is already in
/// progress") and rewound, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_outlives_its_timeout_is_resumed_not_aborted() {
    const N: usize = 200;
    let (cluster, pool) =
        transactional_pool_with_steps(2, "txn-slow-commit", test_config(), Duration::from_secs(1));
    hold_end_txn(&cluster, 5);
    cluster.produce(N, 20);
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (_open, gate) = watch::channel(true);
    run_to_the_ends(&cluster, &pool, &calls, &gate).await;
    let stats = pool.stats();
    assert_eq!(stats.transactions_aborted, 0, "{stats:?}");
    assert!(
        calls.lock().expect("calls").values().all(|&n| n == 1),
        "no message ran twice"
    );
    assert_each_once(&cluster, N);
}

/// A commit that does not finish in its tries (`EndTxn` refused for about 20 s, against four
/// tries of a 1 s step) leaves its outcome unknown and the producer unable to take another
/// transaction: the pool halts, saying so, rather than rerun messages whose outputs may have
/// committed, or spin on transactions the producer refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_never_finishes_halts_the_pool_in_doubt() {
    let (cluster, pool) =
        transactional_pool_with_steps(1, "txn-stuck-commit", test_config(), Duration::from_secs(1));
    hold_end_txn(&cluster, 25);
    cluster.produce(50, 5);
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (_open, gate) = watch::channel(true);
    let result = guarded(pool.run_with(std::future::pending(), forward(&calls, None, &gate))).await;
    match result {
        Err(PoolError::Halted(HaltReason::Transactions { reason })) => {
            assert!(reason.contains("outcome is unknown"), "{reason}");
        }
        other => panic!("the pool must halt on a commit in doubt, not {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!(stats.transactions_aborted, 0, "{stats:?}");
    assert!(
        calls.lock().expect("calls").values().all(|&n| n == 1),
        "no message ran twice"
    );
}

/// A message held at a worker is a gap: the outputs of the messages after it in its partition
/// are done but not visible, and its partition's offset is not committed, however many commits
/// pass; once it finishes, all of them appear once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_above_a_gap_wait_for_the_prefix() {
    const N: usize = 100;
    let (cluster, pool) = transactional_pool(1, "txn-gap", test_config());
    cluster.produce(N, 10);
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (open, gate) = watch::channel(false);
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(
                stop.clone().cancelled_owned(),
                forward(&calls, Some((0, 0)), &gate)
            ),
            async {
                until("every message called", || {
                    calls.lock().expect("calls").len() == N
                })
                .await;
                // Several commit intervals with everything but offset 0 done.
                tokio::time::sleep(test_config().commit_interval * 5).await;
                assert!(
                    outputs(&cluster).is_empty(),
                    "nothing visible above the gap"
                );
                assert_eq!(stats_committed(&pool.stats(), 0), None, "nothing committed");
                let _ = open.send(true);
                committed_to_the_ends(&cluster, &pool).await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("the pool ran");
    assert_each_once(&cluster, N);
}

/// Transactions that fail (the broker refuses to add their output partition) are aborted: their
/// partitions rewind, their messages run again, and the reader sees each output once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_shows_nothing_and_its_messages_run_again() {
    aborts_under(Ordering::Unordered).await;
}

/// The same under partition and key ordering: a rewound partition's lanes start over cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_hold_the_guarantee_under_partition_and_key_ordering() {
    aborts_under(Ordering::Partition).await;
    aborts_under(Ordering::Key).await;
}

/// The same with a byte bound so tight that the poll thread's batch reads often bring more
/// than a partition's credit allows: the rest waits in the partition's carry, and an abort's
/// seek must drop it with what librdkafka still holds, or records fetched before the seek
/// would reach the pool as if fetched after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_hold_the_guarantee_when_reads_outrun_the_byte_bound() {
    aborts_with(Config {
        max_buffered_bytes: 64,
        ..test_config()
    })
    .await;
}

async fn aborts_under(ordering: Ordering) {
    aborts_with(Config {
        ordering,
        ..test_config()
    })
    .await;
}

async fn aborts_with(config: Config) {
    const N: usize = 300;
    let (cluster, pool) = transactional_pool(2, "txn-abort", config);
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (_open, gate) = watch::channel(true);
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), forward(&calls, None, &gate)),
            async {
                // The group settles before the fault, so the aborts hit transactions that carry
                // records.
                tokio::time::sleep(Duration::from_secs(4)).await;
                inject(
                    &cluster,
                    &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 2],
                );
                cluster.produce(N, 30);
                committed_to_the_ends(&cluster, &pool).await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("the pool ran");
    let rerun = calls
        .lock()
        .expect("calls")
        .values()
        .filter(|&&n| n > 1)
        .count();
    assert!(rerun > 0, "the aborted transactions' messages ran again");
    assert!(pool.stats().transactions_aborted >= 1, "{:?}", pool.stats());
    assert_each_once(&cluster, N);
}

/// A transaction that aborts while its partition is being revoked (review finding 1): the
/// revoke's own commit must not pass the aborted records. T1 carries the outputs of offsets
/// from 100 on and stalls (the coordinator answers its `AddPartitionsToTxn` "loading" 16
/// times, 500 ms each in librdkafka, then refuses it); meanwhile a second member joins, and
/// the revoke waits for offset 160, held in its handler. T1 aborts during the revoke; then 160
/// is let through, and the revoke commits. Nothing may be committed past T1's first offset:
/// whichever member owns the partition next runs T1's messages again, and each output
/// appears once.
///
/// With the fix reverted (the revoking partition's ledger not told of the abort), the revoke
/// commits the done prefix (200) in a transaction with the records still held, from 160 on.
/// On Kafka, T1's outputs (100..160) would then never exist. The mock cluster keeps no offsets
/// a transaction carried, and refuses the plain commit that follows it mid-rebalance, so here
/// the next owner starts from 100 again and the outputs from 160 on appear twice: the test
/// fails either way (2 runs of 2 with the fix reverted; 4 of 4 pass with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_aborted_during_a_revoke_commits_nothing_past_it() {
    support::logs();
    const N: usize = 100;
    let config = Config {
        shutdown_timeout: Duration::from_secs(30),
        ..test_config()
    };
    let cluster = Cluster::new(1, 1);
    kafka::create_topic(&cluster.broker, OUT, 1).expect("output topic");
    let group = unique_group("txn-abort-revoke");
    let member = |name: &str| {
        Pool::new(cluster.consumer(&group), config.clone())
            .expect("pool")
            .with_transactions(transactions(
                &cluster,
                &format!("{group}-{name}"),
                Duration::from_secs(10),
            ))
    };
    let a = member("a");
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (open, gate) = watch::channel(false);
    let hold = Some((0, 160));
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (ran_a, (ran_b, ())) = guarded(async {
        tokio::join!(
            a.run_with(
                stop_a.clone().cancelled_owned(),
                forward(&calls, hold, &gate)
            ),
            async {
                cluster.produce(N, 10);
                committed_to_the_ends(&cluster, &a).await;
                let mut errors =
                    vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 16];
                errors.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
                inject(&cluster, &errors);
                cluster.produce_from(N, N, 10);
                until("every message called once", || {
                    calls.lock().expect("calls").len() == 2 * N
                })
                .await;
                // Subscribed when made: it joins the group now.
                let b = member("b");
                tokio::join!(
                    b.run_with(
                        stop_b.clone().cancelled_owned(),
                        forward(&calls, hold, &gate)
                    ),
                    async {
                        until("the stalled transaction aborted", || {
                            a.stats().transactions_aborted > 0
                        })
                        .await;
                        assert!(
                            a.stats().rebalances >= 2,
                            "the abort came during the revoke: {:?}",
                            a.stats()
                        );
                        let _ = open.send(true);
                        until("the group committed to the end", || {
                            cluster.committed(&group).get(&0) == Some(&(2 * N as i64))
                        })
                        .await;
                        stop_a.cancel();
                        stop_b.cancel();
                    }
                )
            }
        )
    })
    .await;
    ran_a.expect("member a ran");
    ran_b.expect("member b ran");
    assert_each_once(&cluster, 2 * N);
}

/// Runs `pool` with [`Forward`] until its transactions have committed every partition to its
/// end, then stops it.
async fn run_to_the_ends(
    cluster: &Cluster,
    pool: &Pool,
    calls: &Arc<Mutex<BTreeMap<(i32, i64), u32>>>,
    gate: &watch::Receiver<bool>,
) {
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(stop.clone().cancelled_owned(), forward(calls, None, gate)),
            async {
                committed_to_the_ends(cluster, pool).await;
                stop.cancel();
            }
        )
    })
    .await;
    result.expect("the pool ran");
}

/// Answers the next `n` `EndTxn` requests CONCURRENT_TRANSACTIONS, which librdkafka retries
/// with a growing backoff: the commit of the transaction they hit takes that long.
fn hold_end_txn(cluster: &Cluster, n: usize) {
    cluster
        .broker
        .on_mock(move |mock| {
            mock.request_errors(
                RDKafkaApiKey::EndTxn,
                &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS; n],
            );
        })
        .expect("inject");
}

/// Fails the next `AddPartitionsToTxn` requests with `errors`, one each (see the module docs).
fn inject(cluster: &Cluster, errors: &[RDKafkaRespErr]) {
    let errors = errors.to_vec();
    cluster
        .broker
        .on_mock(move |mock| mock.request_errors(RDKafkaApiKey::AddPartitionsToTxn, &errors))
        .expect("inject");
}

/// A producer fenced mid-run (its epoch refused, as when another producer with the same
/// `transactional.id` has started) halts the pool with a transactions error, and commits
/// nothing after the fence: the offsets stay where the last committed transaction left them,
/// and a reader sees exactly the records that committed transactions carried, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_producer_halts_the_pool_and_commits_nothing_more() {
    const N: usize = 200;
    let (cluster, pool) = transactional_pool(2, "txn-fenced", test_config());
    cluster.produce(N, 20);
    let calls: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let (_open, gate) = watch::channel(true);
    let committed_before = Mutex::new(0);
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run_with(std::future::pending(), forward(&calls, None, &gate)),
            async {
                committed_to_the_ends(&cluster, &pool).await;
                *committed_before.lock().expect("count") = pool.stats().transactions_committed;
                inject(
                    &cluster,
                    &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH],
                );
                cluster.produce(N, 20);
            }
        )
    })
    .await;
    match result {
        Err(PoolError::Halted(HaltReason::Transactions { reason })) => {
            assert!(
                reason.contains("fenced"),
                "the reason names the fence: {reason}"
            );
        }
        other => panic!("the pool must halt on the fence, not {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!(
        stats.transactions_committed,
        *committed_before.lock().expect("count"),
        "no transaction commits after the fence: {stats:?}"
    );
    // The first N committed; nothing of the second N did.
    for p in 0..cluster.partitions {
        let first = i64::try_from(N).expect("small") / i64::from(cluster.partitions);
        assert_eq!(stats_committed(&stats, p), Some(first), "{stats:?}");
    }
    assert_eq!(stats.transaction_records, N as u64, "{stats:?}");
    assert_eq!(
        stats.transactions_aborted, 0,
        "a fenced producer's transaction is not an abort, and none is tried after it: {stats:?}"
    );
    assert_each_once(&cluster, N);
}

/// What the module docs say of the mock cluster, checked: its `read_committed` readers see the
/// records of aborted transactions. (Should a later librdkafka filter them, this fails, and the
/// faults above may move back to where records have already left.)
#[test]
fn the_mock_cluster_shows_aborted_transactions() {
    let cluster = Cluster::new(1, 1);
    let hides = kafka::hides_aborted_transactions(&cluster.broker).expect("probe");
    assert!(!hides, "the mock cluster now hides aborted transactions");
}
