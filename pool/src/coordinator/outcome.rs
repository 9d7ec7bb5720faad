//! Outcomes: a worker's call ended, and each of its jobs is done (its credit given back), retried
//! on a timer that holds no worker (`crate::retry`), failed, or left to settle later.

use super::*;

/// Jobs waiting for their retry delay, on timers that hand them back.
pub(super) struct Retries {
    /// How many wait now.
    pub(super) waiting: usize,
    pub(super) tx: UnboundedSender<Job>,
    pub(super) rx: UnboundedReceiver<Job>,
    /// Parent of every partition's retry token: cancels all timers when the pool stops.
    pub(super) token: CancellationToken,
}

impl Default for Retries {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            waiting: 0,
            tx,
            rx,
            token: CancellationToken::new(),
        }
    }
}

impl<W: Work> Coordinator<W> {
    /// A worker's call ended: its handler is idle again.
    pub(super) fn on_done(&mut self, (handler, done): (W, Completions)) {
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

    pub(super) fn on_completion(&mut self, c: Completion) {
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
            self.zombie_ended(&tp);
        }
        match outcome {
            Outcome::Settling(_) | Outcome::Failed(FailureAction::MarkDoneWhen(_), _) => {
                unreachable!("handled above")
            }
            Outcome::Done | Outcome::Output(_) => {
                self.tally.processed(c.took);
                self.consecutive_failures = 0;
                if current.is_some() {
                    if let Outcome::Output(records) = outcome {
                        self.hold_outputs(&job, records);
                    }
                    self.mark_done(job);
                }
            }
            Outcome::Retry(hint) => {
                if current == Some(false) && !self.stopping {
                    self.tally.retried(c.took);
                    self.schedule_retry(job, hint);
                }
            }
            Outcome::Handled(Ok(())) => {
                if current.is_some() {
                    self.mark_done(job);
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
                    self.mark_done(job);
                }
                self.halt_if_failing_in_a_row(&at, &error);
            }
        }
    }

    /// Parks a job on a timer; it keeps its lane, so its partition or key waits behind it.
    pub(super) fn schedule_retry(&mut self, job: Job, hint: Option<Duration>) {
        let delay = self.config.backoff().delay_or_hint(job.attempt, hint);
        let retry_tx = self.retries.tx.clone();
        let Some(p) = self.partition_of(&job) else {
            return;
        };
        p.retrying += 1;
        let cancel = p.retries.clone();
        self.retries.waiting += 1;
        let job = Job {
            attempt: job.attempt + 1,
            ..job
        };
        retry::schedule(job, delay, retry_tx, cancel);
    }

    /// Marks a job done: its bytes are freed at once, its place in the bound once the done
    /// prefix passes it (both at the end of this turn).
    pub(super) fn mark_done(&mut self, job: Job) {
        self.dispatch.finish(&job);
        self.commits.finished += 1;
        if let Some(p) = self.partitions.of(&job) {
            p.done(job, &mut self.returns);
        }
    }

    pub(super) fn on_retry_due(&mut self, job: Job) {
        let stopping = self.stopping;
        let Some(p) = self.partition_of(&job) else {
            return;
        };
        if p.revoking || stopping {
            return;
        }
        p.retrying -= 1;
        self.retries.waiting -= 1;
        self.dispatch.retry(job);
    }
}
