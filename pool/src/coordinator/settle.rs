//! Results that come later ([`crate::Pending`]): the job stays in flight, its worker free, and
//! what it holds counts against its partition's part of the bound.

use super::*;

/// A job whose result came in later (see [`crate::Pending`]).
pub(super) struct Settled {
    pub(super) job: Job,
    /// Its time at the worker plus the wait for the result.
    pub(super) took: Duration,
    pub(super) result: Result<(), crate::ProcessError>,
    /// The bytes its result held against its partition's part of the bound, and that part.
    pub(super) held: Option<(Arc<Flow>, usize)>,
    pub(super) then: Then,
}

/// What a late result is.
pub(super) enum Then {
    /// A handler's result ([`crate::Processed::Later`]): done, retried or failed.
    Judge,
    /// The end of a permanent failure's handling ([`FailureAction::MarkDoneWhen`]): done, or
    /// a halt.
    FailureHandled,
}

impl<W: Work> Coordinator<W> {
    /// Keeps `job` in flight until `pending` resolves, its worker free meanwhile; then `then`.
    pub(super) fn settle_later(&mut self, job: Job, took: Duration, pending: Pending, then: Then) {
        let held = self.hold(&job, pending.bytes());
        let since = std::time::Instant::now();
        self.settling.push(Box::pin(async move {
            // A late result that panics is a retriable failure, as a handler that does.
            let result = std::panic::AssertUnwindSafe(pending)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(crate::ProcessError::retriable(
                        "the handler's pending result panicked",
                    ))
                });
            Settled {
                job,
                took: took + since.elapsed(),
                result,
                held,
                then,
            }
        }));
    }

    /// A late result came in: it is judged as the handler's own result would have been; a
    /// permanent failure waits for a worker to run the failure hook.
    pub(super) fn on_settled(&mut self, settled: Settled) {
        let Settled {
            job,
            took,
            result,
            held,
            then,
        } = settled;
        if let Some((flow, bytes)) = held {
            self.unhold(&job, &flow, bytes);
        }
        if let Then::FailureHandled = then {
            let outcome = Outcome::Handled(result.map_err(|e| e.to_string()));
            self.on_completion(Completion { job, outcome, took });
            return;
        }
        match judge(result, job.attempt, self.config.max_retries) {
            Ok(outcome) => self.on_completion(Completion { job, outcome, took }),
            Err(failure) => self.failing.push_back((job, failure, took)),
        }
    }

    /// Counts a late result's `bytes` against its partition's part of the bound.
    pub(super) fn hold(&mut self, job: &Job, bytes: usize) -> Option<(Arc<Flow>, usize)> {
        if bytes == 0 {
            return None;
        }
        let flow = Arc::clone(self.partition_of(job)?.flow.as_ref()?);
        self.credit.hold_bytes(&flow, bytes);
        Some((flow, bytes))
    }

    /// Gives held bytes back, unless the partition's part of the bound is gone (revoked: it was
    /// given back whole) or is another one (revoked and assigned again).
    pub(super) fn unhold(&mut self, job: &Job, flow: &Arc<Flow>, bytes: usize) {
        let tp: Tp = (Arc::clone(&job.message.topic), job.message.partition);
        let same = self
            .partitions
            .get(&tp)
            .and_then(|p| p.flow.as_ref())
            .is_some_and(|current| Arc::ptr_eq(current, flow));
        if same {
            self.credit.release_bytes(flow, bytes);
        }
    }
}
