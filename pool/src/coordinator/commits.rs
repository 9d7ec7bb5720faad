//! Commits: what is due per trigger, sent in the background or waited for, and the answers
//! recorded in each partition's ledger; with transactions, the records each commit carries.

use super::*;

/// The commit side's state.
pub(super) struct Commits {
    /// Sends every commit, in order, on its own thread (see `crate::commit`).
    pub(super) committer: Committer,
    /// Results of background commits.
    pub(super) answers: UnboundedReceiver<Committed>,
    /// Background commits asked for and not answered yet; at most one is asked for at a time
    /// (a commit due meanwhile waits for its answer, then sends what advanced).
    pub(super) in_flight: usize,
    /// A commit was due while one was in flight: send another when it returns.
    pub(super) again: bool,
    /// Messages finished since the last commit (for `commit_batch_size`).
    pub(super) finished: usize,
    /// Every commit is a transaction carrying its messages' records (see `crate::transaction`).
    pub(super) transactional: bool,
    /// The transactional producer failed for good: no transaction is tried again, not even
    /// the last commit (the records of the one that failed are gone; the next owner starts
    /// from the last committed offsets).
    pub(super) fenced: bool,
}

impl Commits {
    pub(super) fn new(
        committer: Committer,
        answers: UnboundedReceiver<Committed>,
        transactional: bool,
    ) -> Self {
        Self {
            committer,
            answers,
            in_flight: 0,
            again: false,
            finished: 0,
            transactional,
            fenced: false,
        }
    }
}

impl<W: Work> Coordinator<W> {
    /// The offsets worth committing now, per the trigger.
    pub(super) fn to_commit(&self, trigger: Trigger, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        self.partitions
            .iter()
            .filter(|(tp, p)| match only {
                Some(only) => only.contains(tp),
                None => !p.revoking,
            })
            .filter(|(_, p)| !p.rewinding)
            .filter_map(|(tp, p)| {
                let next = p.ledger.due(p.offsets.committable(), trigger)?;
                Some((tp.clone(), next))
            })
            .collect()
    }

    pub(super) fn publish_partitions(&self) {
        for ((topic, partition), p) in self.partitions.iter() {
            self.shared
                .set_partition(topic, *partition, p.offsets.held(), p.offsets.pending());
        }
    }

    /// A commit on the hot path: runs in the background, the coordinator goes on.
    pub(super) fn commit(&mut self, trigger: Trigger) {
        self.commits.finished = 0;
        self.publish_partitions();
        if self.fenced() {
            return;
        }
        if self.commits.in_flight > 0 {
            self.commits.again = true;
            return;
        }
        let offsets = self.to_commit(trigger, None);
        if offsets.is_empty() {
            return;
        }
        let epochs = self.mark_sent(&offsets);
        self.commits.in_flight += 1;
        let records = self.take_outputs_if_transactional(&offsets);
        self.commits.committer.commit(offsets, epochs, records);
    }

    /// Whether the transactional producer has failed for good: nothing can commit any more,
    /// and the pool is halting (whatever halted it first).
    pub(super) fn fenced(&self) -> bool {
        self.commits.fenced
    }

    pub(super) fn take_outputs_if_transactional(
        &mut self,
        offsets: &[(Tp, i64)],
    ) -> Vec<OutRecord> {
        if self.commits.transactional {
            self.take_outputs(offsets)
        } else {
            Vec::new()
        }
    }

    /// Records `offsets` as sent; returns each one's epoch, for its answer.
    pub(super) fn mark_sent(&mut self, offsets: &[(Tp, i64)]) -> Vec<u64> {
        let transactional = self.commits.transactional;
        offsets
            .iter()
            .map(|(tp, next)| match self.partitions.get_mut(tp) {
                Some(p) => {
                    p.ledger.sent(*next, transactional);
                    p.epoch
                }
                None => 0,
            })
            .collect()
    }

    /// Records what the broker confirmed; a refused commit will be resent by the next one, an
    /// aborted transaction's partitions start over, a fatal one halts the pool.
    pub(super) fn confirm(&mut self, offsets: &[(Tp, i64)], epochs: &[u64], answer: &Answer) {
        let result = &answer.result;
        let kafka: KafkaResult<()> = result.as_ref().map(|_| ()).map_err(|e| e.kafka().clone());
        self.shared.record_commit(offsets, &kafka);
        if self.commits.transactional {
            let end = match result {
                Ok(()) => TransactionEnd::Committed,
                Err(e) if e.is_fatal() => TransactionEnd::Fatal,
                Err(_) => TransactionEnd::Aborted,
            };
            self.shared.transaction(end, answer.records, answer.took);
        }
        if let Some(e) = result.as_ref().err().filter(|e| e.is_fatal()) {
            self.commits.fenced = true;
            self.halt.get_or_insert(HaltReason::Transactions {
                reason: e.to_string(),
            });
        }
        let transactional = self.commits.transactional;
        for ((tp, next), &epoch) in offsets.iter().zip(epochs) {
            let Some(p) = self.partitions.get_mut(tp) else {
                continue;
            };
            let current = p.epoch == epoch;
            if p.ledger.answered(*next, transactional, current, result) == Answered::StartOver {
                self.rewind_aborted(tp);
            }
        }
    }

    /// A background commit's answer.
    pub(super) fn on_committed(&mut self, c: Committed) {
        self.commits.in_flight = self.commits.in_flight.saturating_sub(1);
        self.confirm(&c.offsets, &c.epochs, &c.answer);
        if std::mem::take(&mut self.commits.again) {
            self.commit(Trigger::Batch);
        }
    }

    /// A synchronous commit of `only` (or of every partition), waiting until `deadline`. It is
    /// queued behind any background commit, so it lands after it, never before.
    pub(super) async fn commit_sync(
        &mut self,
        only: Option<&[Tp]>,
        deadline: Instant,
    ) -> Result<(), PoolError> {
        self.publish_partitions();
        // A transaction in flight may yet abort, taking records these offsets would pass.
        if self.commits.transactional {
            self.await_background_commits(deadline).await;
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let offsets = self.to_commit(Trigger::Interval, only);
        if offsets.is_empty() || self.fenced() {
            return Ok(());
        }
        let epochs = self.mark_sent(&offsets);
        let records = self.take_outputs_if_transactional(&offsets);
        let answer = match self
            .commits
            .committer
            .commit_and_wait(offsets.clone(), epochs.clone(), records, timeout)
            .await
        {
            Ok(answer) | Err(WaitError::Kafka(answer)) => answer,
            Err(WaitError::TimedOut) => return Err(PoolError::CommitTimeout),
        };
        self.confirm(&offsets, &epochs, &answer);
        match answer.result {
            Ok(()) => Ok(()),
            Err(e) => Err(PoolError::Commit(e.kafka().clone())),
        }
    }

    /// Waits (until `deadline`) for the answers of the background commits in flight.
    pub(super) async fn await_background_commits(&mut self, deadline: Instant) {
        while self.commits.in_flight > 0 {
            match tokio::time::timeout_at(deadline, self.commits.answers.recv()).await {
                Ok(Some(c)) => {
                    self.commits.in_flight = self.commits.in_flight.saturating_sub(1);
                    self.confirm(&c.offsets, &c.epochs, &c.answer);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    pub(super) async fn commit_all(&mut self) -> Result<(), PoolError> {
        tracing::debug!("final commit");
        self.commit_sync(None, Instant::now() + self.config.shutdown_timeout)
            .await
    }

    /// Holds a done message's records until the commit that takes its offset; a pool without
    /// transactions halts instead of dropping them.
    pub(super) fn hold_outputs(&mut self, job: &Job, records: Vec<OutRecord>) {
        if records.is_empty() {
            return;
        }
        if !self.commits.transactional {
            self.halt
                .get_or_insert(HaltReason::OutputWithoutTransactions);
            return;
        }
        let Some(p) = self.partition_of(job) else {
            return;
        };
        p.hold_outputs(job.message.offset, records);
    }

    /// The held records of the messages `offsets` commit, taken out of their partitions.
    pub(super) fn take_outputs(&mut self, offsets: &[(Tp, i64)]) -> Vec<OutRecord> {
        let mut records = Vec::new();
        for (tp, next) in offsets {
            let Some(p) = self.partitions.get_mut(tp) else {
                continue;
            };
            let (taken, release) = p.take_outputs(*next);
            self.returns.add(release);
            records.extend(taken);
        }
        records
    }
}
