//! The pool's task: it receives everything that happens (records and rebalances from the poll
//! thread, outcomes from workers, retries whose delay is over, commit answers, the commit tick)
//! and routes each to the partition it concerns and to the part that owns the concern, so the
//! offset state needs no lock and every decision sees a consistent picture.
//!
//! This module is the loop and the routing; each concern has its part, in the data's order:
//! - `receive`: records in, tracked by their partition (`crate::partition`) and queued as jobs
//!   (`crate::dispatch`); partitions assigned;
//! - `start`: jobs out to idle workers;
//! - `outcome`: what a call ended with: done, retried on a timer (`crate::retry`), failed;
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
use super::stats::{Shared, Tally, TransactionEnd};
use super::worker::{self, Completion, Completions, Task};
use super::{Config, HaltReason, PoolError};
use crate::flow::{Credit, Flow, Permit, Returns};
use crate::kafka::client_log::{LogLimiter, Verdict};
use crate::kafka::{Event, Message, OutRecord, Run, Seeks, Tp};
use crate::partition::{Partition, Partitions, Then as Answered, Trigger};
use crate::retry;

mod commits;
mod failure;
mod outcome;
mod receive;
mod revoke;
mod rewind;
mod settle;
mod start;

use self::commits::Commits;
use self::outcome::Retries;
use self::revoke::PendingRevoke;
use self::settle::{Settling, Then};

/// Where `job`'s message is, as logs and halt reasons say it.
fn at(job: &Job) -> String {
    let m = &job.message;
    format!("{}/{}@{}", m.topic, m.partition, m.offset)
}

/// The coordinator's state, grouped by the part that owns it.
pub(crate) struct Coordinator<W> {
    config: Config,
    shared: Arc<Shared>,

    // Records in (`receive`, `rewind`).
    partitions: Partitions,
    dispatch: Dispatch,
    next_epoch: u64,
    /// Per partition, how many calls of an earlier epoch still run: of a revoked assignment
    /// (past the revoke's deadline), or from before a rewind. The partition's current epoch
    /// starts nothing until they have ended.
    zombies: FxHashMap<Tp, usize>,
    /// To ask the poll thread to seek a partition back (it went back; a transaction aborted).
    seeks: Arc<Seeks>,

    // Jobs out (`start`).
    /// The idle workers' handlers; a busy worker's handler is inside its running call.
    idle: Vec<W>,
    /// Jobs in flight: at a worker, waiting for a late result, or for the failure hook.
    busy: usize,

    // Outcomes (`outcome`, `settle`, `failure`).
    /// Jobs waiting for their retry delay.
    retries: Retries,
    /// Late results still to come: their workers are free, their jobs still in flight (they
    /// hold their lane, their offset and their part of the bound).
    settling: FuturesUnordered<Settling>,
    /// Jobs whose late result was a permanent failure, waiting for an idle worker to run the
    /// failure hook; served before new jobs.
    failing: VecDeque<(Job, Failure, Duration)>,
    /// Outcomes counted this turn, added to `shared` at its end.
    tally: Tally,
    consecutive_failures: u32,
    /// Permanent failures' log lines, rate-limited: a stream of bad records is one line per
    /// distinct error and a summary of its repeats every 30 s, not a line per record (the
    /// metrics count every one, and a dead letter keeps each).
    failure_log: LogLimiter,

    // The bound (`crate::flow`).
    /// The pool's bound, shared with the poll thread (to wake it).
    credit: Arc<Credit>,
    /// Credit of what left the pool this turn, given back at the turn's end.
    returns: Returns,

    // Commits and revokes (`commits`, `revoke`).
    /// What is sent, answered and due again.
    commits: Commits,
    revokes: Vec<PendingRevoke>,

    // The pool's life.
    /// Set once shutdown or a halt began: nothing new is started.
    stopping: bool,
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
        let tally = shared.tally();
        Self {
            seeks,
            commits: Commits::new(committer, commits_rx, transactional),
            dispatch: Dispatch::new(config.ordering),
            config,
            shared,
            partitions: Partitions::default(),
            idle: handlers,
            busy: 0,
            settling: FuturesUnordered::new(),
            failing: VecDeque::new(),
            retries: Retries::default(),
            credit,
            returns: Returns::default(),
            tally,
            consecutive_failures: 0,
            failure_log: LogLimiter::new("pool"),
            revokes: Vec::new(),
            zombies: FxHashMap::default(),
            next_epoch: 0,
            stopping: false,
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
                Some(job) = self.retries.rx.recv() => self.on_retry_due(job),
                Some(c) = self.commits.answers.recv() => self.on_committed(c),
                _ = tick.tick() => self.commit(Trigger::Interval),
                () = tokio::time::sleep_until(revoke_deadline), if !self.revokes.is_empty() => {}
            }
            self.finish_revokes(false).await;
            for (handler, task) in self.start_jobs() {
                running.push(worker::run(handler, task, self.config.max_retries));
            }
            if self.commits.finished >= self.config.commit_batch_size {
                self.commit(Trigger::Batch);
            }
            self.end_turn();
        }
        self.drain(&mut events, &mut running).await;
        let committed = self.commit_all().await;
        self.end_turn();
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
        self.retries.token.cancel();
        self.retries.waiting = 0;
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
            self.end_turn();
        }
        self.finish_revokes(true).await;
    }

    /// Routes what the poll thread says to the part that owns it.
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Messages(runs) => self.on_runs(runs),
            Event::Assigned(assigned) => self.on_assigned(assigned),
            Event::Revoke { partitions, done } => self.begin_revoke(partitions, done),
            Event::Rewound { tp, offset } => self.on_rewound(&tp, offset),
            Event::Stopped { reason } => {
                self.halt
                    .get_or_insert(HaltReason::ConsumerStopped { reason });
            }
        }
    }

    /// The partition a job belongs to, if the job is not stale.
    fn partition_of(&mut self, job: &Job) -> Option<&mut Partition> {
        self.partitions.of(job)
    }

    /// The end of a turn of the loop: what left the pool is given back, the outcomes counted
    /// and the load published.
    fn end_turn(&mut self) {
        self.returns.flush();
        self.tally.flush(&self.shared);
        self.publish_load();
    }

    fn publish_load(&self) {
        self.shared.set_load(
            self.workers_busy(),
            self.dispatch.queued(),
            self.retries.waiting,
            self.settling.len(),
        );
    }
}
