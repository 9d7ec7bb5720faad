//! Results that come later ([`crate::Pending`]): the job stays in flight, its worker free, and
//! what it holds counts against its partition's part of the bound.

use super::*;

/// A job whose result came in later (see [`crate::Pending`]).
pub(super) struct Settled {
    pub(super) job: Job,
    /// Its time at the worker plus the wait for the result.
    pub(super) took: Duration,
    pub(super) result: Result<(), crate::ProcessError>,
    /// The bytes its result held against its partition's part of the bound.
    pub(super) held: Permit,
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
        self.returns.add(held);
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

    /// Counts a late result's `bytes` against its partition's part of the bound, until the
    /// permit is dropped.
    fn hold(&mut self, job: &Job, bytes: usize) -> Permit {
        match self.partition_of(job) {
            Some(p) if bytes > 0 => p.hold(bytes),
            _ => Permit::empty(None),
        }
    }
}
