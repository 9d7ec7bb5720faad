//! The consumer the pool owns and its context (rebalance callbacks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Message as _, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use super::Message;
use super::client_log::LogLimiter;
use crate::Backpressure;

/// A topic-partition, with the topic name shared.
pub(crate) type Tp = (Arc<str>, i32);

/// What the poll thread tells the pool's coordinator.
pub(crate) enum Event {
    /// A fetched record.
    Message(Arc<Message>),
    /// Partitions were assigned to this member.
    Assigned(Vec<Tp>),
    /// Partitions are being revoked. The poll thread (and so the rebalance) waits until `done`
    /// is signalled, or dropped, by the coordinator.
    Revoke {
        /// The partitions being let go.
        partitions: Vec<Tp>,
        /// Signalled once they are drained and committed.
        done: SyncSender<()>,
    },
    /// The poll thread can no longer fetch (it panicked, or the consumer hit a fatal error):
    /// the pool must halt, visibly, rather than sit with its partitions frozen.
    Stopped {
        /// What happened, for the halt reason an operator reads.
        reason: String,
    },
}

/// Where the context sends events while a pool runs.
pub(crate) type Link = UnboundedSender<Event>;

/// How long `poll` blocks, so the poll thread notices a stop request promptly.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// The consumer context of a pool consumer: wires rebalances into the pool.
pub struct PoolContext {
    /// The coordinator, while `run` is going. `None` otherwise, so a rebalance outside `run`
    /// (or during the final close) does not wait for anyone.
    link: Mutex<Option<Link>>,
    /// The pool's stats, set by `Pool::new`: librdkafka's statistics land there.
    stats: std::sync::OnceLock<Arc<crate::stats::Shared>>,
    /// librdkafka's log lines and errors go through it (an unreachable broker floods them).
    log: LogLimiter,
    /// Test-only fault injection: when set, the poll thread panics at its next turn, as it did
    /// on a non-UTF-8 header name before [`Message`] read names without rdkafka's unwrap.
    #[cfg(any(test, feature = "fault-injection"))]
    panic_in_poll: AtomicBool,
}

impl Default for PoolContext {
    fn default() -> Self {
        Self {
            link: Mutex::default(),
            stats: std::sync::OnceLock::new(),
            log: LogLimiter::new("consumer"),
            #[cfg(any(test, feature = "fault-injection"))]
            panic_in_poll: AtomicBool::new(false),
        }
    }
}

impl ClientContext for PoolContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }

    /// librdkafka's periodic statistics carry each partition's high watermark: with the
    /// committed offset, that is the consumer lag, at no extra broker round trip.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(shared) = self.stats.get() else {
            return;
        };
        let watermarks = statistics.topics.into_iter().flat_map(|(topic, t)| {
            t.partitions
                .into_iter()
                // Partition -1 is librdkafka's internal "unassigned" partition.
                .filter(|(partition, p)| *partition >= 0 && p.hi_offset >= 0)
                .map(move |(partition, p)| (topic.clone(), partition, p.hi_offset))
        });
        shared.set_high_watermarks(watermarks);
    }
}

impl ConsumerContext for PoolContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::debug!(?rebalance, "pre-rebalance");
        match rebalance {
            Rebalance::Revoke(tpl) => self.hand_over_revoke(tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Some(link) = self.link()
        {
            let _ = link.send(Event::Assigned(partitions(tpl)));
        }
    }
}

impl PoolContext {
    /// Where statistics go; the first pool built on this consumer wins.
    pub(crate) fn report_to(&self, stats: Arc<crate::stats::Shared>) {
        let _ = self.stats.set(stats);
    }

    fn link(&self) -> Option<Link> {
        self.link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Blocks the rebalance until the pool has drained and committed the revoked partitions.
    fn hand_over_revoke(&self, tpl: &TopicPartitionList) {
        let Some(link) = self.link() else { return };
        let (done, wait) = sync_channel(1);
        let event = Event::Revoke {
            partitions: partitions(tpl),
            done,
        };
        if link.send(event).is_ok() {
            // Err means the coordinator stopped without signalling: nothing more to wait for.
            let _ = wait.recv();
        }
        tracing::debug!("revoke handed over");
    }

    /// Makes the poll thread panic at its next turn: how tests (here and in the host) check that
    /// a dead poll thread halts the pool visibly. Only with the `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_poll_panic(&self) {
        self.panic_in_poll.store(true, AtomicOrdering::Release);
    }

    /// Panics if a test asked for it (see `panic_in_poll`).
    #[cfg(any(test, feature = "fault-injection"))]
    fn fault_point(&self) {
        assert!(
            !self.panic_in_poll.load(AtomicOrdering::Acquire),
            "injected poll-thread fault"
        );
    }

    pub(crate) fn attach(&self, link: Link) {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner) = Some(link);
    }

    pub(crate) fn detach(&self) {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

/// A Kafka consumer built for a [`Pool`](crate::Pool).
///
/// Build it with [`Consumer::from_config`] and subscribe it (or assign partitions through
/// [`Consumer::inner`]), then hand it to `Pool::new`. It records the settings the pool must check:
/// `Pool::new` refuses it unless `enable.auto.commit` is `false` (librdkafka's default is
/// `true`), because the pool alone decides which offsets are safe to commit.
pub struct Consumer {
    /// Shared with the poll thread and with blocking commit tasks.
    inner: Arc<BaseConsumer<PoolContext>>,
    /// Whether librdkafka would commit on its own (and so commit unprocessed offsets).
    auto_commit: bool,
    /// The consumer's `max.poll.interval.ms`: a revoke may block polling at most this long.
    max_poll_interval: Duration,
    /// Set once a pool has run it: a run ends by leaving the group, so it cannot run again.
    used: AtomicBool,
}

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL_MS: u64 = 300_000;

impl Consumer {
    /// Creates the consumer. `enable.auto.offset.store` is forced to `false`: the pool commits
    /// explicit offsets and never uses the offset store.
    pub fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        let mut config = config.clone();
        config.set("enable.auto.offset.store", "false");
        // Statistics feed the consumer-lag figure; an operator's own interval wins.
        if config.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "5000");
        }
        let auto_commit = config
            .get("enable.auto.commit")
            .is_none_or(|v| !matches!(v.trim(), "false" | "0"));
        let max_poll_ms = config
            .get("max.poll.interval.ms")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_POLL_INTERVAL_MS);
        let inner: BaseConsumer<PoolContext> = config.create_with_context(PoolContext::default())?;
        Ok(Self {
            inner: Arc::new(inner),
            auto_commit,
            max_poll_interval: Duration::from_millis(max_poll_ms),
            used: AtomicBool::new(false),
        })
    }

    /// Subscribes to `topics` (group-managed assignment).
    pub fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.inner.subscribe(topics)
    }

    /// The rdkafka consumer, for what this wrapper does not cover (manual assignment, watermarks,
    /// committed offsets). Do not poll it or commit through it while the pool runs.
    pub fn inner(&self) -> &BaseConsumer<PoolContext> {
        &self.inner
    }

    pub(crate) fn shared(&self) -> Arc<BaseConsumer<PoolContext>> {
        Arc::clone(&self.inner)
    }

    pub(crate) fn auto_commit(&self) -> bool {
        self.auto_commit
    }

    pub(crate) fn max_poll_interval(&self) -> Duration {
        self.max_poll_interval
    }

    /// Marks the consumer as run; `false` if it already was.
    pub(crate) fn claim(&self) -> bool {
        !self.used.swap(true, AtomicOrdering::AcqRel)
    }
}

/// What the poll thread needs; moved onto it by [`spawn_poller`].
pub(crate) struct Poller {
    /// The consumer, shared with the coordinator's commits.
    pub(crate) consumer: Arc<BaseConsumer<PoolContext>>,
    /// Where records and the thread's own end go.
    pub(crate) link: Link,
    /// Set by the pool when it is done: the thread then leaves the group and ends.
    pub(crate) stop: Arc<AtomicBool>,
    /// How long leaving the group may take.
    pub(crate) close_timeout: Duration,
    /// Shared with the coordinator: the poll thread pauses partitions too.
    pub(crate) backpressure: Arc<Backpressure>,
}

/// Starts the poll thread: a dedicated, named OS thread, not tokio's blocking pool, which
/// other work (and, once, plugin calls) can exhaust. Returns a receiver that completes when
/// the thread has left the group and ended, whichever way its loop ended.
///
/// Rebalance callbacks run inside `poll` and may block this thread while the coordinator
/// drains a revoked partition. If the loop panics or the consumer hits a fatal error, the
/// thread says so with [`Event::Stopped`] (the pool halts, naming the reason), then waits for
/// the pool to finish before it leaves the group.
pub(crate) fn spawn_poller(poller: Poller) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (ended, ended_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("burrow-poll".into())
        .spawn(move || {
            let Poller {
                consumer,
                link,
                stop,
                close_timeout,
                backpressure,
            } = poller;
            let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                receive(&consumer, &link, &stop, &backpressure)
            }));
            let failure = match received {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(panic) => Some(format!("the poll thread panicked: {}", panic_text(&*panic))),
            };
            if let Some(reason) = failure {
                tracing::error!(%reason, "the consumer stopped fetching; halting the pool");
                if link.send(Event::Stopped { reason }).is_ok() {
                    // The pool halts on this; wait for it to commit what is done before the
                    // consumer leaves the group (a revoke now would find nobody to drain it).
                    while !stop.load(AtomicOrdering::Acquire) {
                        std::thread::sleep(POLL_TIMEOUT);
                    }
                }
            }
            drop(link);
            leave_group(&consumer, close_timeout);
            let _ = ended.send(());
        })?;
    Ok(ended_rx)
}

/// The text of a panic payload (`panic!` with a literal or a format string).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// Polls until `stop` is set (or the coordinator is gone), forwarding records. `Err` says why
/// fetching cannot go on.
fn receive(
    consumer: &BaseConsumer<PoolContext>,
    link: &Link,
    stop: &AtomicBool,
    backpressure: &Backpressure,
) -> Result<(), String> {
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    while !stop.load(AtomicOrdering::Acquire) {
        #[cfg(any(test, feature = "fault-injection"))]
        consumer.context().fault_point();
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(m)) => {
                let topic = topics
                    .entry(m.topic().to_owned())
                    .or_insert_with(|| Arc::from(m.topic()))
                    .clone();
                let message = Arc::new(Message::from_borrowed(&m, topic));
                backpressure.handed_over();
                if link.send(Event::Message(message)).is_err() {
                    break;
                }
                // Pause here too: a coordinator slow to run must not let the backlog overshoot.
                if backpressure.pause_if_full(consumer) {
                    tracing::debug!("backpressure: paused by the poll thread");
                }
            }
            Some(Err(e)) => {
                // A fatal error (e.g. a fenced static member) ends this consumer for good:
                // every later poll fails the same way. (Untested: librdkafka's own fatal-error
                // test hook, `rd_kafka_test_fatal_error`, on a consumer makes its later destroy
                // hang in librdkafka 2.12.1, so no test can run this path to the end.)
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    return Err(format!("fatal consumer error: {code:?}: {reason}"));
                }
                consumer.context().log.consumer_error(&e);
            }
        }
    }
    Ok(())
}

/// Leaves the group, waiting up to `close_timeout` for the revoke of every assigned partition.
/// The coordinator is detached by now, so that revoke returns at once; everything safe to commit
/// was committed before.
///
/// It unsubscribes rather than closes: rdkafka 0.39's `BaseConsumer::drop` closes the consumer
/// again without checking whether it already is, and logs an ERROR ("Failed to close consumer
/// queue on drop ... Consumer already closed") after every explicit close. Left but not closed,
/// the consumer's final close (in its `drop`) has nothing left to wait for.
fn leave_group(consumer: &BaseConsumer<PoolContext>, close_timeout: Duration) {
    // A manually assigned consumer is in no group: its final close just unassigns.
    if consumer.subscription().is_ok_and(|s| s.count() == 0) {
        return;
    }
    tracing::debug!("leaving the group");
    consumer.unsubscribe();
    let deadline = Instant::now() + close_timeout;
    while Instant::now() < deadline {
        consumer.poll(POLL_TIMEOUT);
        if consumer.assignment().is_ok_and(|a| a.count() == 0) {
            break;
        }
    }
}
