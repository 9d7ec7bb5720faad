//! Burrow's pool: runs many Kafka messages at once and commits only offsets that are safe to
//! commit. The API follows the original Go Burrow: [`Pool::new`], [`Pool::run`], [`Pool::stats`],
//! [`Config::default`], [`Config::validate`].
//!
//! ```no_run
//! use burrow_pool::{Config, Consumer, Pool, ProcessError};
//!
//! # async fn store(_: &[u8]) -> std::io::Result<()> { Ok(()) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut kafka = burrow_pool::rdkafka::ClientConfig::new();
//! kafka
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "orders")
//!     .set("enable.auto.commit", "false"); // the pool commits only what is safe
//! let consumer = Consumer::from_config(&kafka)?;
//! consumer.subscribe(&["orders"])?;
//! let pool = Pool::new(consumer, Config::default())?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! pool.run(shutdown, |msg| async move {
//!     match msg.payload.as_deref() {
//!         // An error is retried with backoff, up to `max_retries`...
//!         Some(bytes) => store(bytes).await.map_err(ProcessError::retriable),
//!         // ...unless it is permanent: counted, skipped, and the offset moves on.
//!         None => Err(ProcessError::permanent("empty message")),
//!     }
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! **Guarantee: at-least-once, never lost.** A partition's committed offset is always `1 + the
//! highest offset such that it and every offset received before it (since the assignment
//! started) is done`, where done means processed successfully, or failed permanently and
//! handled by the failure hook. A crash at any point may cause reprocessing, never loss.
//!
//! **Precondition.** The consumer is built with [`Consumer::from_config`] and
//! `enable.auto.commit=false` (checked by [`Pool::new`]), nothing else commits or polls through
//! it while the pool runs, and `shutdown_timeout` is shorter than `max.poll.interval.ms` (also
//! checked), because a revoke holds the poll thread while its partitions drain.
//!
//! # Layout, in the data's order
//!
//! - [`kafka`] — the consumer, its rebalance callbacks and the poll thread, which forwards
//!   records and rebalances to the coordinator; the [`Message`] handlers read.
//! - `flow` — the bound on what the pool holds, per partition: the poll thread takes from a
//!   partition's own queue only while it has credit; nothing is paused, nothing refetched.
//!   Credit is held by permits that give it back when dropped, so no path can leak it.
//! - `partition` — one assigned partition's life (its state diagram is there): its offsets
//!   ([`offsets`]), its part of the bound, its epoch, its commit ledger (nothing committed past
//!   a transaction in doubt or aborted; answers of an earlier epoch count for nothing), the
//!   records its done messages hold for a transaction, its parked jobs and retries.
//! - `coordinator` — one task that routes what happens to the partitions, orders and queues
//!   jobs (`dispatch`), starts them on idle workers, and commits; [`retry`] parks a retry on a
//!   timer without holding a worker.
//! - `worker` — a worker's call: the user's function or [`Handler`] (`handler`), one attempt
//!   (or one batch) at a time, run as a future of the coordinator's task; a result the handler
//!   leaves [`Pending`] settles later in the coordinator, the worker already free.
//! - `commit` and [`transaction`] — the committer thread: offset commits, or, in a pool
//!   [with transactions](Pool::with_transactions), Kafka transactions carrying the records
//!   handlers returned for the messages they commit (exactly-once output).
//! - `stats` and [`metrics`] — what [`Pool::stats`] and Prometheus report.
//! - `sim` (tests only) — the deterministic simulation: the coordinator driven by a simulated
//!   consumer, broker and handlers under a seeded schedule, its invariants checked every step.

mod commit;
mod config;
mod coordinator;
mod dispatch;
mod flow;
mod handler;
pub mod kafka;
pub mod metrics;
pub mod offsets;
mod partition;
pub mod retry;
#[cfg(test)]
mod sim;
pub(crate) mod stats;
pub mod transaction;
mod worker;

/// The rdkafka this crate is built against, whose types its API takes and returns
/// (`ClientConfig`, `TopicPartitionList`, errors): use it rather than pinning a version by hand.
pub use rdkafka;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use prometheus::Registry;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use tokio::sync::mpsc;

use self::commit::Committer;
pub use self::config::{Config, ConfigError, FieldError, Ordering};
use self::coordinator::Coordinator;
use self::flow::Credit;
pub use self::handler::{
    Attempt, BoxError, Failure, FailureAction, Handler, Pending, Permanent, ProcessError, Processed,
};
use self::handler::{ByFn, ByHandler, Work};
use self::stats::Shared;
pub use self::stats::{PartitionStats, Stats, StatsHandle};
pub use crate::kafka::{Consumer, Header, Message, OutRecord};
use crate::kafka::{Link, PollWaker};
use crate::metrics::Metrics;
pub use crate::transaction::{TransactionError, Transactions};

/// Why `run` stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaltReason {
    /// `max_consecutive_errors` permanent failures in a row.
    #[error("{count} consecutive permanent failures (last: {last})")]
    ConsecutiveFailures {
        /// How many in a row.
        count: u32,
        /// Where and why the last one failed.
        last: String,
    },
    /// The failure hook returned [`FailureAction::Halt`].
    #[error("the failure handler halted the pool at {at}: {reason}")]
    FailureHandler {
        /// `topic/partition@offset` of the message.
        at: String,
        /// The hook's reason.
        reason: String,
    },
    /// The consumer's poll thread could not go on (it panicked, or the consumer hit a fatal
    /// error): the pool stops rather than sit with its partitions frozen.
    #[error("the consumer stopped fetching: {reason}")]
    ConsumerStopped {
        /// What ended it.
        reason: String,
    },
    /// Every worker task ended unexpectedly.
    #[error("the workers stopped")]
    WorkersStopped,
    /// The transactional producer cannot go on (fenced by another producer with the same
    /// `transactional.id`, or in a fatal state).
    #[error("exactly-once commits cannot go on: {reason}")]
    Transactions {
        /// librdkafka's error.
        reason: String,
    },
    /// A handler returned records to produce ([`Processed::Output`],
    /// [`FailureAction::MarkDoneWith`]) to a pool without transactions, which would drop them.
    #[error("the handler returned records to produce, which needs Pool::with_transactions")]
    OutputWithoutTransactions,
}

/// Errors from building or running a pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The config failed validation.
    #[error("invalid pool config: {0}")]
    Config(#[from] ConfigError),
    /// The consumer would commit offsets on its own, including unprocessed ones.
    #[error(
        "the consumer has enable.auto.commit on; set it to false: the pool commits only offsets that are safe"
    )]
    AutoCommitEnabled,
    /// A revoke could block polling longer than the group allows.
    #[error(
        "shutdown_timeout ({shutdown_timeout:?}) must be shorter than the consumer's max.poll.interval.ms ({max_poll_interval:?}): a revoke waits that long without polling"
    )]
    ShutdownTimeoutTooLong {
        /// The pool's `shutdown_timeout`.
        shutdown_timeout: std::time::Duration,
        /// The consumer's `max.poll.interval.ms`.
        max_poll_interval: std::time::Duration,
    },
    /// Metrics could not be registered (e.g. the same labels twice in one registry).
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `run` was called twice: a run ends by leaving the group.
    #[error("this pool has already run; a run ends by leaving the group, build a new pool")]
    AlreadyRan,
    /// The pool stopped on its own, after committing what was safe.
    #[error("pool halted: {0}")]
    Halted(HaltReason),
    /// The final synchronous commit failed; the uncommitted messages will be redelivered.
    #[error("final commit failed: {0}")]
    Commit(#[source] KafkaError),
    /// The final synchronous commit took longer than `shutdown_timeout`.
    #[error("final commit did not finish within shutdown_timeout")]
    CommitTimeout,
}

/// A pool of workers over one consumer.
pub struct Pool {
    consumer: Consumer,
    config: Config,
    /// Shared with the coordinator and the consumer's commit callback, read by `stats()`.
    shared: Arc<Shared>,
    /// Where the metrics live, if enabled.
    registry: Option<Registry>,
    /// Set while paused (see [`Pauser`]).
    paused: Arc<AtomicBool>,
    /// With [`Pool::with_transactions`]: every commit is a transaction.
    transactions: Option<Arc<Transactions>>,
}

/// Pauses and resumes a pool from anywhere (an admin endpoint, a signal handler). While paused
/// the pool takes no new message from any partition: what is in flight or waiting to retry
/// finishes and commits, what librdkafka fetched waits there (its prefetch limits stop the
/// fetching), and the consumer keeps polling, so it stays in its group and rebalances go on.
#[derive(Debug, Clone)]
pub struct Pauser {
    paused: Arc<AtomicBool>,
    /// A resume wakes the poll thread, which takes messages again at once.
    waker: Arc<PollWaker>,
}

impl Pauser {
    pub fn pause(&self) {
        self.paused.store(true, AtomicOrdering::Release);
    }

    /// Takes messages again at once.
    pub fn resume(&self) {
        self.paused.store(false, AtomicOrdering::Release);
        self.waker.wake();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(AtomicOrdering::Acquire)
    }
}

impl Pool {
    /// Builds a pool. Refuses an invalid config, a consumer with `enable.auto.commit` on, and a
    /// `shutdown_timeout` not shorter than the consumer's `max.poll.interval.ms`. With
    /// `enable_metrics`, metrics go to a fresh registry, see [`Pool::metrics_registry`].
    pub fn new(consumer: Consumer, config: Config) -> Result<Self, PoolError> {
        let registry = config.enable_metrics.then(Registry::new);
        Self::build(consumer, config, registry, Default::default())
    }

    /// Like [`Pool::new`], registering the metrics (when `enable_metrics` is on) in `registry`
    /// with `const_labels` (the host passes `tenant`).
    pub fn with_registry(
        consumer: Consumer,
        config: Config,
        registry: &Registry,
        const_labels: std::collections::HashMap<String, String>,
    ) -> Result<Self, PoolError> {
        let registry = config.enable_metrics.then(|| registry.clone());
        Self::build(consumer, config, registry, const_labels)
    }

    fn build(
        consumer: Consumer,
        config: Config,
        registry: Option<Registry>,
        const_labels: std::collections::HashMap<String, String>,
    ) -> Result<Self, PoolError> {
        config.validate()?;
        if consumer.auto_commit() {
            return Err(PoolError::AutoCommitEnabled);
        }
        if config.shutdown_timeout >= consumer.max_poll_interval() {
            return Err(PoolError::ShutdownTimeoutTooLong {
                shutdown_timeout: config.shutdown_timeout,
                max_poll_interval: consumer.max_poll_interval(),
            });
        }
        let metrics = match &registry {
            Some(r) => Some(Metrics::register(r, const_labels)?),
            None => None,
        };
        let shared = Arc::new(Shared::new(metrics));
        consumer.inner().context().report_to(Arc::clone(&shared));
        Ok(Self {
            consumer,
            config,
            shared,
            registry,
            paused: Arc::default(),
            transactions: None,
        })
    }

    /// Makes every commit a Kafka transaction through `transactions`, carrying the records
    /// handlers return ([`Processed::Output`], [`FailureAction::MarkDoneWith`]): exactly-once
    /// output for `read_committed` readers. See the `transaction` module's docs for how
    /// transactions are cut and what an abort does.
    #[must_use]
    pub fn with_transactions(mut self, transactions: Transactions) -> Self {
        self.transactions = Some(Arc::new(transactions));
        self
    }

    /// The stats now. Callable while `run` is going.
    pub fn stats(&self) -> Stats {
        self.shared.snapshot()
    }

    /// A handle to pause and resume this pool, before or while it runs.
    pub fn pauser(&self) -> Pauser {
        Pauser {
            paused: Arc::clone(&self.paused),
            waker: self.consumer.inner().context().waker(),
        }
    }

    /// A handle to read the stats from another task.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.shared))
    }

    /// The registry holding this pool's metrics, when `enable_metrics` is on.
    pub fn metrics_registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// The pool's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The consumer (e.g. to read committed offsets).
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Runs `process` on every message until `shutdown` completes, then finishes in-flight
    /// work (up to `shutdown_timeout`), commits, leaves the group and returns. Returns
    /// [`PoolError::Halted`] if the pool stopped on its own, after committing what is safe.
    ///
    /// `process` gets the message in an `Arc` (cheap to move into a spawned task). Return an
    /// error to retry it; wrap the error in [`Permanent`] to fail it at once. Permanent failures
    /// are counted and skipped; for a dead-letter hook use [`Pool::run_with`] and a [`Handler`].
    pub async fn run<F, Fut, E>(
        &self,
        shutdown: impl Future<Output = ()>,
        process: F,
    ) -> Result<(), PoolError>
    where
        F: Fn(Arc<Message>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<ProcessError> + 'static,
    {
        let process = Arc::new(process);
        self.run_workers(shutdown, |_| ByFn(Arc::clone(&process)))
            .await
    }

    /// Like [`Pool::run`], with one handler per worker built by `make_handler(worker_index)`:
    /// for handlers that keep state per worker, and for the permanent-failure hook
    /// ([`Handler::on_permanent_failure`]).
    pub async fn run_with<H: Handler>(
        &self,
        shutdown: impl Future<Output = ()>,
        mut make_handler: impl FnMut(usize) -> H,
    ) -> Result<(), PoolError> {
        self.run_workers(shutdown, |i| ByHandler(make_handler(i)))
            .await
    }

    async fn run_workers<W: Work>(
        &self,
        shutdown: impl Future<Output = ()>,
        mut make: impl FnMut(usize) -> W,
    ) -> Result<(), PoolError> {
        if !self.consumer.claim() {
            return Err(PoolError::AlreadyRan);
        }
        let context = Arc::clone(self.consumer.inner().context());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let credit = Arc::new(
            Credit::new(
                self.config.job_queue_size,
                usize::try_from(self.config.max_buffered_bytes).unwrap_or(usize::MAX),
            )
            .pausable(Arc::clone(&self.paused))
            .waking(context.waker()),
        );
        let link = Link {
            events: events_tx,
            credit: Arc::clone(&credit),
        };
        context.attach(link.clone(), self.consumer.inner());
        let stop = Arc::new(AtomicBool::new(false));
        // If this future is dropped before it finishes (a caller's `select!`, a runtime shutting
        // down), the poll thread must still stop: it would otherwise poll forever.
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop), context.waker());
        let poller = crate::kafka::spawn_poller(crate::kafka::Poller {
            consumer: self.consumer.shared(),
            link,
            stop: Arc::clone(&stop),
            close_timeout: self.config.shutdown_timeout,
            credit: Arc::clone(&credit),
        });
        let poller = match poller {
            Ok(ended) => ended,
            Err(e) => {
                context.detach();
                return Err(PoolError::Halted(HaltReason::ConsumerStopped {
                    reason: format!("cannot start the poll thread: {e}"),
                }));
            }
        };
        let handlers: Vec<W> = (0..self.config.num_workers).map(&mut make).collect();
        let (commits_tx, commits_rx) = mpsc::unbounded_channel();
        let committer = Committer::spawn(
            self.consumer.shared(),
            commits_tx,
            self.transactions.clone(),
        );
        // Calls still running past the shutdown timeout end with it: they are its futures.
        let result = match committer {
            Ok(committer) => {
                Coordinator::new(
                    self.config.clone(),
                    Arc::clone(&self.shared),
                    handlers,
                    credit,
                    (committer, commits_rx),
                    self.transactions.is_some(),
                    context.seeks(),
                )
                .run(shutdown, events_rx)
                .await
            }
            Err(e) => Err(PoolError::Halted(HaltReason::ConsumerStopped {
                reason: format!("cannot start the commit thread: {e}"),
            })),
        };
        // Everything safe is committed: let the poll thread leave the group without waiting
        // for us.
        tracing::debug!("coordinator done, closing the consumer");
        context.detach();
        stop.store(true, AtomicOrdering::Release);
        // The thread reports its end whichever way its loop ended (it catches its panics).
        if poller.await.is_err() {
            tracing::warn!("the poll thread ended without leaving the group");
        }
        result
    }
}

/// Sets the poll thread's stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>, Arc<PollWaker>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, AtomicOrdering::Release);
        self.1.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    /// Hang guard only: a broken pool fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// A poll thread that dies (here: panics, as it did on a non-UTF-8 header name) halts the
    /// pool with `ConsumerStopped` naming the panic, after committing every message that was
    /// done — never a pool that runs on with its partitions frozen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poll_thread_that_panics_halts_the_pool_naming_why() -> anyhow::Result<()> {
        let mock = MockCluster::new(1)?;
        mock.create_topic("t", 1, 1)?;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()?;
        for i in 0..10 {
            let value = i.to_string();
            producer
                .send(BaseRecord::<(), _>::to("t").partition(0).payload(&value))
                .map_err(|(e, _)| e)?;
        }
        producer.flush(Duration::from_secs(10))?;
        let mut settings = ClientConfig::new();
        settings
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "poll-panic")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        let consumer = Consumer::from_config(&settings)?;
        consumer.subscribe(&["t"])?;
        let pool = Pool::new(
            consumer,
            Config {
                commit_interval: Duration::from_millis(50),
                shutdown_timeout: Duration::from_secs(5),
                ..Config::default()
            },
        )?;
        let processed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&processed);
        let run = pool.run(std::future::pending(), move |_| {
            counter.fetch_add(1, AtomicOrdering::Relaxed);
            async { Ok::<_, ProcessError>(()) }
        });
        let inject = async {
            while processed.load(AtomicOrdering::Relaxed) < 10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let context = pool.consumer().inner().context();
            context.inject_poll_panic();
        };
        let (result, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(run, inject) })
            .await
            .map_err(|_| anyhow::anyhow!("the pool neither halted nor returned"))?;
        match result {
            Err(PoolError::Halted(HaltReason::ConsumerStopped { reason })) => assert!(
                reason.contains("panicked") && reason.contains("injected poll-thread fault"),
                "the reason names the panic: {reason}"
            ),
            other => panic!("expected a ConsumerStopped halt, got {other:?}"),
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        let reader: rdkafka::consumer::BaseConsumer = settings.create()?;
        let committed = reader.committed_offsets(tpl, Duration::from_secs(10))?;
        let offset = committed.elements().first().map(|e| e.offset());
        assert_eq!(
            offset,
            Some(Offset::Offset(10)),
            "everything done before the halt is committed, nothing more exists"
        );
        Ok(())
    }
}
