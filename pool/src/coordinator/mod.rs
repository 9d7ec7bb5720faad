//! The pool's task: it receives everything that happens (records and rebalances from the poll
//! thread, outcomes from workers, retries whose delay is over, commit answers, the commit tick)
//! and routes each to the partition it concerns and to the part that owns the concern, so the
//! offset state needs no lock and every decision sees a consistent picture.
//!
//! Its parts, in the data's order:
//! - this module: events and records in, jobs out to idle workers (`dispatch`), outcomes back,
//!   retries (`crate::retry`);
//! - `settle`: results that come later, the worker already free;
//! - `failure`: permanent failures counted, and the halt after too many in a row;
//! - `rewind`: a partition going back (the consumer went back, a transaction aborted);
//! - `commits`: what is due, sent, and answered, per partition's ledger (`crate::partition`);
//! - `revoke`: partitions let go, and the zombies that outlive them.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::error::KafkaResult;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::commit::{Answer, Committed, Committer, WaitError};
use super::dispatch::{Dispatch, Job};
use super::handler::{Failure, FailureAction, Outcome, Pending, Work, judge};
use super::stats::{Shared, TransactionEnd};
use super::worker::{self, Completion, Completions, Task};
use super::{Config, HaltReason, PoolError};
use crate::flow::{Credit, Flow};
use crate::kafka::client_log::{LogLimiter, Verdict};
use crate::kafka::{Event, Message, OutRecord, Seeks, Tp};
use crate::partition::{Partition, Then as Answered, Trigger, Zombies};
use crate::retry;

mod commits;
mod failure;
mod revoke;
mod rewind;
mod settle;

use self::revoke::PendingRevoke;
use self::settle::{Settled, Then};

/// Where `job`'s message is, as logs and halt reasons say it.
fn at(job: &Job) -> String {
    let m = &job.message;
    format!("{}/{}@{}", m.topic, m.partition, m.offset)
}

pub(crate) struct Coordinator<W> {
    config: Config,
    shared: Arc<Shared>,
    /// FxHash: partition names come from the assignment, not from producers.
    partitions: FxHashMap<Tp, Partition>,
    dispatch: Dispatch,
    /// The idle workers' handlers; a busy worker's handler is inside its running call.
    idle: Vec<W>,
    /// Jobs in flight: at a worker, waiting for a late result, or for the failure hook.
    busy: usize,
    /// Late results still to come: their workers are free, their jobs still in flight (they
    /// hold their lane, their offset and their part of the bound).
    settling: FuturesUnordered<BoxFuture<'static, Settled>>,
    /// Jobs whose late result was a permanent failure, waiting for an idle worker to run the
    /// failure hook; served before new jobs.
    failing: VecDeque<(Job, Failure, Duration)>,
    retrying: usize,
    /// Retry timers hand jobs back here.
    retry_tx: UnboundedSender<Job>,
    retry_rx: UnboundedReceiver<Job>,
    /// Parent of every partition's retry token: cancels all timers when the pool stops.
    retries: CancellationToken,
    /// The pool's bound, shared with the poll thread: what leaves the pool is given back here.
    credit: Arc<Credit>,
    finished_since_commit: usize,
    /// Sends every commit, in order, on its own thread (see `crate::commit`).
    committer: Committer,
    /// Results of background commits.
    commits_rx: UnboundedReceiver<Committed>,
    /// Background commits asked for and not answered yet; at most one is asked for at a time
    /// (a commit due meanwhile waits for its answer, then sends what advanced).
    committing: usize,
    /// A commit was due while one was in flight: send another when it returns.
    commit_again: bool,
    consecutive_failures: u32,
    /// Permanent failures' log lines, rate-limited: a stream of bad records is one line per
    /// distinct error and a summary of its repeats every 30 s, not a line per record (the
    /// metrics count every one, and a dead letter keeps each).
    failure_log: LogLimiter,
    revokes: Vec<PendingRevoke>,
    /// Per partition, calls of an earlier epoch still running: of a revoked assignment (past
    /// the revoke's deadline), or from before a rewind. The partition's current epoch starts
    /// nothing until they have ended.
    zombies: FxHashMap<Tp, Zombies>,
    next_epoch: u64,
    /// Set once shutdown or a halt began: nothing new is started.
    stopping: bool,
    /// The transactional producer failed for good: no transaction is tried again, not even
    /// the last commit (the records of the one that failed are gone; the next owner starts
    /// from the last committed offsets).
    fenced: bool,
    /// Every commit is a transaction carrying its messages' records (see `crate::transaction`).
    transactional: bool,
    /// To ask the poll thread to seek a partition back after an aborted transaction.
    seeks: Arc<Seeks>,
    halt: Option<HaltReason>,
}

impl<W: Work> Coordinator<W> {
    /// A coordinator whose commits go through `committer` (answers on `commits_rx`), each a
    /// transaction when `transactional`, and whose seeks go to `seeks`.
    pub(crate) fn new(
        config: Config,
        shared: Arc<Shared>,
        handlers: Vec<W>,
        credit: Arc<Credit>,
        (committer, commits_rx): (Committer, UnboundedReceiver<Committed>),
        transactional: bool,
        seeks: Arc<Seeks>,
    ) -> Self {
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        Self {
            transactional,
            seeks,
            committer,
            commits_rx,
            committing: 0,
            commit_again: false,
            dispatch: Dispatch::new(config.ordering),
            config,
            shared,
            partitions: FxHashMap::default(),
            idle: handlers,
            busy: 0,
            settling: FuturesUnordered::new(),
            failing: VecDeque::new(),
            retrying: 0,
            retry_tx,
            retry_rx,
            retries: CancellationToken::new(),
            credit,
            finished_since_commit: 0,
            consecutive_failures: 0,
            failure_log: LogLimiter::new("pool"),
            revokes: Vec::new(),
            zombies: FxHashMap::default(),
            next_epoch: 0,
            stopping: false,
            fenced: false,
            halt: None,
        }
    }

    /// Runs until `shutdown` completes or the pool halts, then drains, commits, and reports.
    pub(crate) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut events: UnboundedReceiver<Event>,
    ) -> Result<(), PoolError> {
        tokio::pin!(shutdown);
        // The workers' calls in progress (see `crate::worker`).
        let mut running = FuturesUnordered::new();
        let period = self.config.commit_interval;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while self.halt.is_none() {
            let revoke_deadline = self.next_revoke_deadline();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = running.next(), if !running.is_empty() => {
                    self.on_done(done);
                    // Every other call finished by now is taken in the same turn.
                    while let Some(Some(done)) = running.next().now_or_never() {
                        self.on_done(done);
                    }
                }
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    // The poll thread holds a sender until it ends, and says why if it ends
                    // early; a closed channel without that is still a stop, never a hang.
                    None => {
                        self.halt.get_or_insert(HaltReason::ConsumerStopped {
                            reason: "the poll thread ended".into(),
                        });
                    }
                },
                Some(settled) = self.settling.next(), if !self.settling.is_empty() => {
                    self.on_settled(settled);
                    while let Some(Some(settled)) = self.settling.next().now_or_never() {
                        self.on_settled(settled);
                    }
                }
                Some(job) = self.retry_rx.recv() => self.on_retry_due(job),
                Some(c) = self.commits_rx.recv() => self.on_committed(c),
                _ = tick.tick() => self.commit(Trigger::Interval),
                () = tokio::time::sleep_until(revoke_deadline), if !self.revokes.is_empty() => {}
            }
            self.finish_revokes(false).await;
            for (handler, task) in self.start_jobs() {
                running.push(worker::run(handler, task, self.config.max_retries));
            }
            if self.finished_since_commit >= self.config.commit_batch_size {
                self.commit(Trigger::Batch);
            }
            self.publish_load();
        }
        self.drain(&mut events, &mut running).await;
        let committed = self.commit_all().await;
        self.publish_load();
        match self.halt.take() {
            Some(reason) => {
                if let Err(e) = committed {
                    tracing::warn!(error = %e, "final commit after halt failed");
                }
                Err(PoolError::Halted(reason))
            }
            None => committed,
        }
    }

    /// Stops starting work, drops queued jobs and retries, and waits for in-flight ones up to
    /// `shutdown_timeout`, still serving revokes meanwhile.
    async fn drain<F: Future<Output = (W, Completions)>>(
        &mut self,
        events: &mut UnboundedReceiver<Event>,
        running: &mut FuturesUnordered<F>,
    ) {
        tracing::debug!(in_flight = self.busy, "draining");
        self.stopping = true;
        self.dispatch.clear();
        self.retries.cancel();
        self.retrying = 0;
        for p in self.partitions.values_mut() {
            p.retrying = 0;
        }
        self.abandon_failing();
        self.publish_load();
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while self.busy > 0 {
            let revoke_deadline = self.next_revoke_deadline();
            tokio::select! {
                // In a fixed order, as the main loop's: a seeded simulation replays exactly.
                biased;
                Some(done) = running.next(), if !running.is_empty() => self.on_done(done),
                Some(settled) = self.settling.next(), if !self.settling.is_empty() => {
                    self.on_settled(settled);
                    self.abandon_failing();
                }
                Some(event) = events.recv() => self.on_event(event),
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.busy, "shutdown timeout: in-flight messages abandoned, they will be redelivered");
                    break;
                }
                () = tokio::time::sleep_until(revoke_deadline), if !self.revokes.is_empty() => {}
            }
            self.finish_revokes(false).await;
        }
        self.finish_revokes(true).await;
    }

    fn new_partition(&mut self, flow: Option<Arc<Flow>>) -> Partition {
        self.next_epoch += 1;
        Partition::new(flow, self.next_epoch, self.retries.child_token())
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Messages(batch) => {
                for message in batch {
                    self.on_message(message);
                }
            }
            Event::Assigned(assigned) => {
                let tps: Vec<Tp> = assigned.iter().map(|(tp, _)| tp.clone()).collect();
                self.shared.rebalanced();
                self.shared.assigned(&tps);
                for (tp, flow) in assigned {
                    let p = self.new_partition(Some(flow));
                    self.partitions.insert(tp, p);
                }
            }
            Event::Revoke { partitions, done } => {
                self.shared.rebalanced();
                self.shared.revoked(&partitions);
                for tp in &partitions {
                    self.dispatch.drop_partition(tp);
                    if let Some(p) = self.partitions.get_mut(tp) {
                        p.revoking = true;
                        p.retries.cancel();
                        self.retrying -= p.retrying;
                        p.retrying = 0;
                    }
                }
                let now = Instant::now();
                self.revokes.push(PendingRevoke {
                    partitions,
                    deadline: now + self.config.shutdown_timeout * 3 / 4,
                    end: now + self.config.shutdown_timeout,
                    done,
                });
            }
            Event::Rewound { tp, offset } => {
                if let Some(p) = self.partitions.get_mut(&tp) {
                    tracing::debug!(topic = %tp.0, partition = tp.1, offset, "sought back after an aborted transaction");
                    p.rewinding = false;
                }
            }
            Event::Stopped { reason } => {
                self.halt
                    .get_or_insert(HaltReason::ConsumerStopped { reason });
            }
        }
    }

    /// Tracks and queues a fetched record; one refused (the pool is stopping, its partition is
    /// being revoked, or its offset is not above the last one tracked) gives its credit back.
    fn on_message(&mut self, message: Arc<Message>) {
        let tp: Tp = (Arc::clone(&message.topic), message.partition);
        // One lookup on the common path; a new partition or a rewind looks again.
        let rewinds = match self.partitions.get(&tp) {
            None => {
                let p = self.new_partition(None);
                self.partitions.insert(tp.clone(), p);
                false
            }
            Some(p) if p.rewinding => {
                if let Some(flow) = &p.flow {
                    self.credit.release_bytes(flow, message.weight());
                    self.credit.release_messages(flow, 1);
                }
                return;
            }
            Some(p) => !self.stopping && !p.revoking && p.offsets.rewinds(message.offset),
        };
        if rewinds {
            self.went_back(&tp, message.offset);
        }
        let stopping = self.stopping;
        let Some(p) = self.partitions.get_mut(&tp) else {
            return;
        };
        if stopping || p.revoking || p.rewinding || !p.offsets.track(message.offset) {
            if let Some(flow) = &p.flow {
                self.credit.release_bytes(flow, message.weight());
                self.credit.release_messages(flow, 1);
            }
            return;
        }
        p.start.get_or_insert(message.offset);
        let job = Job::new(message, p.epoch);
        if !self.zombies.is_empty() && self.zombies.contains_key(&tp) {
            p.parked.push(job);
        } else {
            self.dispatch.push(job);
        }
    }

    /// The partition a job belongs to, if the job is not stale.
    fn partition_of(&mut self, job: &Job) -> Option<&mut Partition> {
        let tp: Tp = (Arc::clone(&job.message.topic), job.message.partition);
        self.partitions.get_mut(&tp).filter(|p| p.owns(job))
    }

    /// A worker's call ended: its handler is idle again.
    fn on_done(&mut self, (handler, done): (W, Completions)) {
        self.idle.push(handler);
        match done {
            Completions::One(completion) => self.on_completion(completion),
            Completions::Many(completions) => {
                for completion in completions {
                    self.on_completion(completion);
                }
            }
        }
    }

    fn on_completion(&mut self, c: Completion) {
        let job = c.job;
        let outcome = match c.outcome {
            Outcome::Settling(pending) => {
                self.settle_later(job, c.took, pending, Then::Judge);
                return;
            }
            // Counted now, as the failure it is; done only once its handling is.
            Outcome::Failed(FailureAction::MarkDoneWhen(pending), error) => {
                let at = self.count_failure(&job, c.took, &error);
                self.halt_if_failing_in_a_row(&at, &error);
                self.settle_later(job, c.took, pending, Then::FailureHandled);
                return;
            }
            outcome => outcome,
        };
        self.busy -= 1;
        // `None` for a stale job (its partition was revoked, maybe reassigned, meanwhile):
        // its outcome is counted but never touches the current offsets.
        let current = self.partition_of(&job).map(|p| {
            p.in_flight -= 1;
            p.revoking
        });
        if current.is_none() {
            let tp = (Arc::clone(&job.message.topic), job.message.partition);
            self.zombie_ended(&tp, job.message.weight());
        }
        match outcome {
            Outcome::Settling(_) | Outcome::Failed(FailureAction::MarkDoneWhen(_), _) => {
                unreachable!("handled above")
            }
            Outcome::Done | Outcome::Output(_) => {
                self.shared.message_processed(c.took);
                self.consecutive_failures = 0;
                if current.is_some() {
                    if let Outcome::Output(records) = outcome {
                        self.hold_outputs(&job, records);
                    }
                    self.mark_done(&job);
                }
            }
            Outcome::Retry(hint) => {
                if current == Some(false) && !self.stopping {
                    self.shared.message_retried(c.took);
                    self.schedule_retry(job, hint);
                }
            }
            Outcome::Handled(Ok(())) => {
                if current.is_some() {
                    self.mark_done(&job);
                }
            }
            // The handling of a message of a partition let go (or being let go) failed: its
            // next owner runs it again, so there is nothing to halt for.
            Outcome::Handled(Err(reason)) if current != Some(false) => tracing::warn!(
                message = %at(&job), %reason,
                "handling the failure of a message of a partition let go failed; its next owner runs it again"
            ),
            Outcome::Handled(Err(reason)) => {
                let at = at(&job);
                self.halt
                    .get_or_insert(HaltReason::FailureHandler { at, reason });
            }
            Outcome::Failed(action, error) => {
                let at = self.count_failure(&job, c.took, &error);
                let records = match action {
                    FailureAction::MarkDone => Vec::new(),
                    FailureAction::MarkDoneWith(records) => records,
                    FailureAction::Halt(reason) => {
                        self.halt
                            .get_or_insert(HaltReason::FailureHandler { at, reason });
                        return;
                    }
                    FailureAction::MarkDoneWhen(_) => unreachable!("handled above"),
                };
                if current.is_some() {
                    self.hold_outputs(&job, records);
                    self.mark_done(&job);
                }
                self.halt_if_failing_in_a_row(&at, &error);
            }
        }
    }

    /// Parks a job on a timer; it keeps its lane, so its partition or key waits behind it.
    fn schedule_retry(&mut self, job: Job, hint: Option<Duration>) {
        let delay = self.config.backoff().delay_or_hint(job.attempt, hint);
        let retry_tx = self.retry_tx.clone();
        let Some(p) = self.partition_of(&job) else {
            return;
        };
        p.retry_scheduled(&job);
        let cancel = p.retries.clone();
        self.retrying += 1;
        let job = Job {
            attempt: job.attempt + 1,
            ..job
        };
        retry::schedule(job, delay, retry_tx, cancel);
    }

    /// Marks a job done: its bytes are freed at once, its place in the bound once the done
    /// prefix passes it.
    fn mark_done(&mut self, job: &Job) {
        let tp: Tp = (Arc::clone(&job.message.topic), job.message.partition);
        if let Some(p) = self.partitions.get_mut(&tp) {
            p.done(job).to(&self.credit, p.flow.as_deref());
        }
        self.dispatch.finish(job);
        self.finished_since_commit += 1;
    }

    fn on_retry_due(&mut self, job: Job) {
        let stopping = self.stopping;
        let Some(p) = self.partition_of(&job) else {
            return;
        };
        if p.revoking || stopping {
            return;
        }
        p.retry_due(&job);
        self.retrying -= 1;
        self.dispatch.retry(job);
    }

    /// Pairs ready jobs with idle workers' handlers, to be started: first failures waiting for
    /// the failure hook, then queued jobs. When more jobs are queued than workers are idle, a
    /// worker whose handler takes batches gets several at once (up to its `max_batch`), the
    /// queue shared evenly; otherwise one each.
    fn start_jobs(&mut self) -> Vec<(W, Task)> {
        let mut started = Vec::new();
        if self.stopping || self.halt.is_some() {
            return started;
        }
        while !self.failing.is_empty()
            && let Some(handler) = self.idle.pop()
        {
            if let Some((job, failure, took)) = self.failing.pop_front() {
                started.push((handler, Task::Fail { job, failure, took }));
            }
        }
        while let Some(handler) = self.idle.pop() {
            let share = self.dispatch.queued().div_ceil(self.idle.len() + 1);
            let take = share.clamp(1, handler.max_batch());
            if take == 1 {
                match self.next_job() {
                    Some(job) => started.push((handler, Task::One(job))),
                    None => {
                        self.idle.push(handler);
                        break;
                    }
                }
                continue;
            }
            let mut jobs = Vec::with_capacity(take);
            while jobs.len() < take {
                let Some(job) = self.next_job() else {
                    break;
                };
                jobs.push(job);
            }
            if jobs.is_empty() {
                self.idle.push(handler);
                break;
            }
            started.push((handler, Task::Attempt(jobs)));
        }
        started
    }

    /// The next queued job to start, counted in flight; a job whose partition was revoked
    /// meanwhile is dropped, not started.
    fn next_job(&mut self) -> Option<Job> {
        loop {
            let job = self.dispatch.pop()?;
            if let Some(p) = self.partition_of(&job) {
                p.in_flight += 1;
                self.busy += 1;
                return Some(job);
            }
        }
    }

    /// Workers running a call now (`busy` counts messages: a worker may run a batch).
    fn workers_busy(&self) -> usize {
        self.config.num_workers.saturating_sub(self.idle.len())
    }

    fn publish_load(&self) {
        self.shared.set_load(
            self.workers_busy(),
            self.dispatch.queued(),
            self.retrying,
            self.settling.len(),
        );
    }
}
