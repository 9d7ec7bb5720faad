//! The consumer the pool owns and its context (rebalance callbacks).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message as _, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

use super::Message;
use super::client_log::LogLimiter;
use super::reader::Reader;
use crate::flow::{Credit, Flow, Permit};

/// A topic-partition, with the topic name shared.
pub(crate) type Tp = (Arc<str>, i32);

/// Records of one partition taken in one go, in offset order, with their part of the bound.
pub(crate) struct Run {
    pub(crate) messages: Vec<Arc<Message>>,
    /// Their messages and bytes, counted against their partition's part of the bound until
    /// the coordinator shares it out among their jobs and their partition's tracker.
    pub(crate) permit: Permit,
}

/// What the poll thread tells the pool's coordinator.
pub(crate) enum Event {
    /// Fetched records, in offset order within each partition: one channel operation per round
    /// of the poll loop, not per record.
    Messages(Vec<Run>),
    /// Partitions were assigned to this member, each with its part of the pool's bound.
    Assigned(Vec<(Tp, Arc<Flow>)>),
    /// Partitions are being revoked. The poll thread (and so the rebalance) waits until `done`
    /// is signalled, or dropped, by the coordinator.
    Revoke {
        /// The partitions being let go.
        partitions: Vec<Tp>,
        /// Signalled once they are drained and committed.
        done: SyncSender<()>,
    },
    /// A partition was sought back to `offset` (after an aborted transaction): what the poll
    /// thread sends after this for the partition was fetched from there.
    Rewound { tp: Tp, offset: i64 },
    /// The poll thread can no longer fetch (it panicked, or the consumer hit a fatal error):
    /// the pool must halt, visibly, rather than sit with its partitions frozen.
    Stopped {
        /// What happened, for the halt reason an operator reads.
        reason: String,
    },
}

/// Partitions the coordinator asked to seek back (after an aborted transaction), and where;
/// served by the poll thread at the start of its next round, which then sends
/// [`Event::Rewound`].
#[derive(Debug, Default)]
pub(crate) struct Seeks(Mutex<Vec<(Tp, i64)>>);

impl Seeks {
    /// Asks for `tp` to be sought back to `offset`.
    pub(crate) fn request(&self, tp: Tp, offset: i64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((tp, offset));
    }

    /// The seeks asked for since the last call.
    fn take(&self) -> Vec<(Tp, i64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves the seeks asked for with `seek`; returns those done, for the caller to report
    /// ([`Event::Rewound`]). One that fails is asked for again, for the next round.
    pub(crate) fn serve<E: std::fmt::Display>(
        &self,
        mut seek: impl FnMut(&Tp, i64) -> Result<(), E>,
    ) -> Vec<(Tp, i64)> {
        let mut done = Vec::new();
        for (tp, offset) in self.take() {
            match seek(&tp, offset) {
                Ok(()) => done.push((tp, offset)),
                Err(e) => {
                    tracing::warn!(topic = %tp.0, partition = tp.1, offset, error = %e, "seek failed; trying again");
                    self.request(tp, offset);
                }
            }
        }
        done
    }

    /// Forgets the seeks asked for `tps` (revoked: a seek is for the assignment that asked).
    pub(crate) fn forget(&self, tps: &[Tp]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(tp, _)| !tps.contains(tp));
    }

    /// Whether a seek of `tp` waits to be served.
    #[cfg(test)]
    pub(crate) fn wants(&self, tp: &Tp) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(t, _)| t == tp)
    }

    /// Whether no seek waits to be served.
    pub(crate) fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// What the context knows of the pool while it runs: where events go, and the bound that
/// newly assigned partitions join.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) events: UnboundedSender<Event>,
    pub(crate) credit: Arc<Credit>,
}

impl Link {
    /// Sends to the coordinator; `Err` once it is gone.
    pub(crate) fn send(&self, event: Event) -> Result<(), ()> {
        self.events.send(event).map_err(|_| ())
    }
}

/// How long leaving the group polls at a time.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long the poll loop sleeps when it found nothing to do, at most, while it was busy
/// lately (see [`QUIET_ROUNDS`]).
const BUSY_WAIT: Duration = Duration::from_millis(5);

/// How long the poll loop sleeps when it has found nothing to do for a while, at most.
/// Whatever gives it records wakes it at once ([`PollWaker`]): a partition queue that gets data
/// (its non-empty callback), credit coming back to a partition it left, a seek asked for, a
/// resume. The main queue (rebalances, errors, records of partitions not split off yet) is
/// seen at the next round: so an idle pool costs four wake-ups a second, not 200, and sees a
/// rebalance at most this late. The end of `run` is seen at the next round too. A pool without
/// an assignment (joining, or a member with no partition) never sleeps this long: its
/// assignment is the next thing it waits for.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Rounds with nothing to do, each a [`BUSY_WAIT`] at most, before the loop sleeps
/// [`IDLE_WAIT`] (about a second): right after activity, a rebalance's run of events is
/// served as quickly as before.
///
/// Why the main queue has no non-empty callback: with one, cooperative rebalances on the mock
/// cluster took 5 s turns and a revoke's commit was refused for an old generation (3 of 32
/// runs of the pool's cooperative group test (`group::`); 0 of 12 before, 0 of 15 without it).
const QUIET_ROUNDS: u32 = 200;

/// Wakes the poll thread out of its idle sleep. Shared by the partition queues' non-empty
/// callbacks, the credit, the seeks, the pauser and a dropped run future.
#[derive(Debug, Default)]
pub(crate) struct PollWaker(OnceLock<std::thread::Thread>);

impl PollWaker {
    /// Names the thread to wake; the poll thread calls it first thing.
    pub(crate) fn set(&self, thread: std::thread::Thread) {
        let _ = self.0.set(thread);
    }

    /// Wakes the poll thread (at once if it sleeps, else its next sleep returns at once).
    pub(crate) fn wake(&self) {
        if let Some(thread) = self.0.get() {
            thread.unpark();
        }
    }
}

/// Most records taken from one partition queue in one round, so one busy partition does not
/// delay the others' turn (or the main queue's rebalances) for long.
const ROUND_PER_PARTITION: usize = 1024;

/// Most events served from the main queue in one round.
const ROUND_MAIN: usize = 1024;

/// One assigned partition's own queue, split off the consumer's main queue, and its credit.
struct Feed {
    /// Reads the partition's queue in batches. Declared first, so it is dropped first: `_queue`
    /// keeps the consumer alive, which the reader's handle needs.
    reader: Reader,
    /// Holds the partition's queue split off the main one, and wakes the poll thread when it
    /// fills (its non-empty callback): kept, never read through.
    _queue: PartitionQueue<PoolContext>,
    flow: Arc<Flow>,
    /// Records read but not yet taken: a batch read may bring more than the partition's credit
    /// allows. They are taken first next time; a seek of the partition drops them, as it drops
    /// what librdkafka still holds. Not counted against the bound, like librdkafka's own queue:
    /// at most one read, `reader::MOST` records and no more than librdkafka held for the
    /// partition, and rarely any, as reads are sized to the credit (`mean`).
    carry: VecDeque<Message>,
    /// The mean weight of the records of the partition's last run: how many records the credit
    /// left has room for.
    mean: usize,
}

/// The consumer context of a pool consumer: wires rebalances into the pool.
pub struct PoolContext {
    /// The coordinator, while `run` is going. `None` otherwise, so a rebalance outside `run`
    /// (or during the final close) does not wait for anyone.
    link: Mutex<Option<Link>>,
    /// The pool's stats, set by `Pool::new`: librdkafka's statistics land there.
    stats: std::sync::OnceLock<Arc<crate::stats::Shared>>,
    /// librdkafka's log lines and errors go through it (an unreachable broker floods them).
    log: LogLimiter,
    /// The consumer this is the context of, to split partition queues off it on assignment.
    consumer: OnceLock<Weak<BaseConsumer<PoolContext>>>,
    /// The partition queues of the assignment, while a pool runs; read by the poll thread only
    /// (the rebalance callbacks run on it too), so the lock is never contended.
    feeds: Mutex<HashMap<Tp, Feed>>,
    /// Partitions the coordinator asked to seek back, and where.
    seeks: Arc<Seeks>,
    /// Wakes the poll thread when there is something to do.
    waker: Arc<PollWaker>,
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
            consumer: OnceLock::new(),
            feeds: Mutex::default(),
            seeks: Arc::default(),
            waker: Arc::default(),
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
    /// Splits each assigned partition's queue off the main queue *before* rdkafka applies the
    /// assignment: librdkafka then never forwards that partition's records to the main queue,
    /// so no older record can arrive there after newer ones were taken from the split queue.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::debug!(?rebalance, "pre-rebalance");
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.hand_over_revoke(tpl);
                self.drop_feeds(&partitions(tpl));
            }
            Rebalance::Assign(tpl) => {
                if let Some(link) = self.link() {
                    self.split(&link, &partitions(tpl));
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
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

    /// Connects a starting pool. Partitions assigned already (by hand, or before `run`) get
    /// their own queues now; records they fetched before are still in the main queue, which
    /// the poll loop serves first, so they reach the pool before any later record.
    pub(crate) fn attach(&self, link: Link, consumer: &BaseConsumer<PoolContext>) {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner) = Some(link.clone());
        match consumer.assignment() {
            Ok(tpl) if tpl.count() > 0 => self.split(&link, &partitions(&tpl)),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the assignment"),
        }
    }

    /// Disconnects the pool. The partition queues go too: they hold the consumer (a cycle
    /// otherwise), and a partition whose queue is dropped while assigned only strands records
    /// that are not committed, so the next owner reads them.
    pub(crate) fn detach(&self) {
        let link = self
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let feeds = std::mem::take(&mut *self.feeds());
        if let Some(link) = link {
            for _ in feeds.values() {
                link.credit.leave();
            }
        }
    }

    /// Where the coordinator asks the poll thread to seek.
    pub(crate) fn seeks(&self) -> Arc<Seeks> {
        Arc::clone(&self.seeks)
    }

    /// What wakes the poll thread.
    pub(crate) fn waker(&self) -> Arc<PollWaker> {
        Arc::clone(&self.waker)
    }

    fn feeds(&self) -> MutexGuard<'_, HashMap<Tp, Feed>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives each partition its own queue and its part of the bound, and tells the pool.
    fn split(&self, link: &Link, tps: &[Tp]) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut assigned = Vec::with_capacity(tps.len());
        let mut feeds = self.feeds();
        for tp in tps {
            let Some(mut queue) = consumer.split_partition_queue(&tp.0, tp.1) else {
                // Only an invalid topic name gets here; its records stay on the main queue.
                tracing::warn!(topic = %tp.0, partition = tp.1, "cannot split the partition's queue");
                continue;
            };
            let Some(reader) = Reader::new(&consumer, &tp.0, tp.1) else {
                // The queue was split, so librdkafka knows the partition: unreachable.
                tracing::warn!(topic = %tp.0, partition = tp.1, "cannot read the partition's queue");
                continue;
            };
            let credit = Arc::clone(&link.credit);
            queue.set_nonempty_callback(move || credit.wake());
            let flow = link.credit.join();
            let feed = Feed {
                reader,
                _queue: queue,
                flow: Arc::clone(&flow),
                carry: VecDeque::new(),
                mean: 0,
            };
            if feeds.insert(tp.clone(), feed).is_some() {
                link.credit.leave();
            }
            assigned.push((tp.clone(), flow));
        }
        drop(feeds);
        let _ = link.send(Event::Assigned(assigned));
    }

    /// Forgets revoked partitions' queues; the others share the bound. (What the revoked ones
    /// still hold comes back as their permits drop.)
    fn drop_feeds(&self, tps: &[Tp]) {
        let credit = self.link().map(|l| l.credit);
        let mut feeds = self.feeds();
        for tp in tps {
            if feeds.remove(tp).is_some()
                && let Some(credit) = &credit
            {
                credit.leave();
            }
        }
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

/// How the pool's consumer fetches, where librdkafka's defaults do not fit a pool that takes
/// from each partition's queue only while the partition has credit (see `crate::flow`). An
/// operator's own values win.
///
/// - `queued.max.messages.kbytes`, `queued.min.messages`: when the pool leaves a partition
///   alone, librdkafka stops fetching it at these limits. Its defaults apply per partition with
///   split queues (64 MiB, 100,000 messages): too much memory over many partitions.
/// - `fetch.queue.backoff.ms`: how soon librdkafka fetches a partition again after the pool
///   takes from it; the default, 1 s, idles the partition for that long after each stop.
/// - `fetch.wait.max.ms`: how long the broker may hold a fetch that finds no data. librdkafka
///   keeps one fetch in flight per broker, so when it asks only for partitions at their end
///   (the others being full, waiting for the pool) the full ones wait out this time before they
///   are fetched again, even once the pool has drained them. With the default, 500 ms, a
///   backlogged partition beside an idle one stalled for up to 490 ms (bench B6); 50 ms bounds
///   that stall, at the cost of 20 empty fetches a second per broker when everything is idle.
const FETCH_DEFAULTS: [(&str, &str); 4] = [
    ("queued.max.messages.kbytes", "16384"),
    ("queued.min.messages", "20000"),
    ("fetch.queue.backoff.ms", "5"),
    ("fetch.wait.max.ms", "50"),
];

/// Sets each of [`FETCH_DEFAULTS`] that `config` does not set itself.
fn set_fetch_defaults(config: &mut ClientConfig) {
    for (key, value) in FETCH_DEFAULTS {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
}

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
        set_fetch_defaults(&mut config);
        let inner: BaseConsumer<PoolContext> = config.create_with_context(PoolContext::default())?;
        let inner = Arc::new(inner);
        let _ = inner.context().consumer.set(Arc::downgrade(&inner));
        Ok(Self {
            inner,
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
    /// The pool's bound: the poll thread takes from a partition only while it has credit.
    pub(crate) credit: Arc<Credit>,
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
                credit,
            } = poller;
            consumer.context().waker.set(std::thread::current());
            let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                receive(&consumer, &link, &stop, &credit)
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
///
/// Each round serves the main queue first (rebalances, errors, and records of partitions not
/// split yet, which are older than anything in their split queue); once it is empty, takes
/// from each partition queue as much as its credit allows; and hands the round's records over
/// at once.
/// With nothing to do it sleeps until woken ([`PollWaker`]) or [`BUSY_WAIT`] passes, and
/// once it has been quiet for [`QUIET_ROUNDS`], [`IDLE_WAIT`].
fn receive(
    consumer: &BaseConsumer<PoolContext>,
    link: &Link,
    stop: &AtomicBool,
    credit: &Credit,
) -> Result<(), String> {
    let context = consumer.context();
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let mut batch: Vec<Run> = Vec::new();
    // Rounds in a row with nothing to do.
    let mut quiet = 0u32;
    while !stop.load(AtomicOrdering::Acquire) {
        #[cfg(any(test, feature = "fault-injection"))]
        context.fault_point();
        // Before anything is taken this round: every record sent before the seek's event was
        // fetched before the seek.
        if seek_back(consumer, link).is_err() {
            break;
        }
        let mut progressed = false;
        let mut main_drained = false;
        for _ in 0..ROUND_MAIN {
            match consumer.poll(Duration::ZERO) {
                None => {
                    main_drained = true;
                    break;
                }
                Some(Ok(m)) => {
                    progressed = true;
                    let topic = topics
                        .entry(m.topic().to_owned())
                        .or_insert_with(|| Arc::from(m.topic()))
                        .clone();
                    let flow = context
                        .feeds()
                        .get(&(Arc::clone(&topic), m.partition()))
                        .map(|f| Arc::clone(&f.flow));
                    take(&m, topic, flow.as_ref(), credit, &mut batch);
                }
                Some(Err(e)) => {
                    // A fatal error (e.g. a fenced static member) ends this consumer for good:
                    // every later poll fails the same way. (Untested: librdkafka's own
                    // fatal-error test hook, `rd_kafka_test_fatal_error`, on a consumer makes
                    // its later destroy hang in librdkafka 2.12.1, so no test can run this path
                    // to the end.)
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        return Err(format!("fatal consumer error: {code:?}: {reason}"));
                    }
                    context.log.consumer_error(&e);
                }
            }
        }
        // A partition's own queue only once the main queue is empty: records fetched before
        // the partition was split off (assigned before `run`) wait there, older than anything
        // in its own queue, and must reach the pool first.
        if main_drained {
            let mut feeds = context.feeds();
            for (tp, feed) in feeds.iter_mut() {
                progressed |= take_from(tp, feed, credit, &mut batch, &context.log);
            }
        }
        if !batch.is_empty()
            && link
                .send(Event::Messages(std::mem::take(&mut batch)))
                .is_err()
        {
            break;
        }
        if progressed || !context.seeks.is_empty() {
            // A seek that failed is tried again next round.
            quiet = 0;
        } else {
            quiet = quiet.saturating_add(1);
        }
        if !progressed {
            // Without an assignment the pool waits for a join to complete, whose assignment
            // comes on the main queue: seen within BUSY_WAIT, not IDLE_WAIT (B8 measured 280 ms
            // from spawn to first message beyond a raw consumer's, 250 of them this sleep).
            let quick = quiet < QUIET_ROUNDS || context.feeds().is_empty();
            std::thread::park_timeout(if quick { BUSY_WAIT } else { IDLE_WAIT });
        }
    }
    Ok(())
}

/// How long a seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the seeks the coordinator asked for, telling it of each. `Err` once the coordinator
/// is gone.
fn seek_back(consumer: &BaseConsumer<PoolContext>, link: &Link) -> Result<(), ()> {
    let context = consumer.context();
    let sought = context.seeks.serve(|tp, offset| {
        consumer.seek(&tp.0, tp.1, rdkafka::Offset::Offset(offset), SEEK_TIMEOUT)?;
        // Read before the seek: librdkafka drops what it still holds of before, and so must we.
        if let Some(feed) = context.feeds().get_mut(tp) {
            feed.carry.clear();
        }
        Ok::<(), rdkafka::error::KafkaError>(())
    });
    for (tp, offset) in sought {
        link.send(Event::Rewound { tp, offset })?;
    }
    Ok(())
}

/// Takes what `feed`'s credit allows, up to [`ROUND_PER_PARTITION`], as one run: its credit is
/// counted once for the run, not per record. Records are read many per librdkafka call (see
/// [`Reader`]); what the credit does not allow waits in the feed's carry, for the next round.
/// Whether it took anything.
fn take_from(
    tp: &Tp,
    feed: &mut Feed,
    credit: &Credit,
    batch: &mut Vec<Run>,
    log: &LogLimiter,
) -> bool {
    let allowed = credit.allowance(&feed.flow).min(ROUND_PER_PARTITION);
    if allowed == 0 {
        return false;
    }
    // Only this thread adds to the credit, so the room only grows while the run is taken.
    let room = credit.byte_room(&feed.flow, credit.partitions());
    let mut messages = Vec::new();
    let mut bytes = 0;
    while messages.len() < allowed && bytes < room {
        if feed.carry.is_empty() {
            let mut most = allowed - messages.len();
            if let Some(fit) = (room - bytes).checked_div(feed.mean) {
                most = most.min(fit + 1);
            }
            feed.reader
                .read(&tp.0, most, &mut feed.carry, |e| log.consumer_error(&e));
        }
        let Some(message) = feed.carry.pop_front() else {
            break;
        };
        bytes += message.weight();
        messages.push(Arc::new(message));
    }
    if messages.is_empty() {
        return false;
    }
    feed.mean = bytes / messages.len();
    let permit = credit.took(&feed.flow, messages.len(), bytes);
    batch.push(Run { messages, permit });
    true
}

/// Copies a record of the main queue out of librdkafka, counted against its partition's credit
/// (`flow`, if the partition has its own queue already): it joins the batch's last run if that
/// is of the same partition.
fn take(
    m: &BorrowedMessage<'_>,
    topic: Arc<str>,
    flow: Option<&Arc<Flow>>,
    credit: &Credit,
    batch: &mut Vec<Run>,
) {
    let message = Arc::new(Message::from_borrowed(m, topic));
    let permit = match flow {
        Some(flow) => credit.took(flow, 1, message.weight()),
        None => Permit::empty(None),
    };
    if let Some(last) = batch.last_mut()
        && last.permit.same_flow(&permit)
        && last.messages.last().is_some_and(|l| {
            l.partition == message.partition && Arc::ptr_eq(&l.topic, &message.topic)
        })
    {
        last.permit.absorb(permit);
        last.messages.push(message);
        return;
    }
    batch.push(Run {
        messages: vec![message],
        permit,
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_defaults_fill_what_the_operator_left_unset() {
        let mut config = ClientConfig::new();
        config.set("fetch.wait.max.ms", "500");
        set_fetch_defaults(&mut config);
        assert_eq!(config.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("5"));
        assert_eq!(config.get("queued.min.messages"), Some("20000"));
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("16384"));

        let mut unset = ClientConfig::new();
        set_fetch_defaults(&mut unset);
        assert_eq!(unset.get("fetch.wait.max.ms"), Some("50"));
    }
}
