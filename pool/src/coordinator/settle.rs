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

/// A job waiting for its [`Pending`] result: a future of its own rather than an `async` block
/// boxed around the pending one, so a late result costs the pending's box and nothing more.
pub(super) struct Settling {
    pending: Pending,
    /// Everything but the result, until it comes (then taken).
    waiting: Option<Waiting>,
}

struct Waiting {
    job: Job,
    took: Duration,
    held: Permit,
    then: Then,
    since: std::time::Instant,
}

impl Future for Settling {
    type Output = Settled;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Settled> {
        let this = &mut *self;
        // A late result that panics is a retriable failure, as a handler that does.
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.pending.poll_unpin(cx)));
        let result = match polled {
            Ok(std::task::Poll::Pending) => return std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(result)) => result,
            Err(_) => Err(crate::ProcessError::retriable(
                "the handler's pending result panicked",
            )),
        };
        let Waiting {
            job,
            took,
            held,
            then,
            since,
        } = this
            .waiting
            .take()
            .expect("a settled job is polled no more");
        std::task::Poll::Ready(Settled {
            job,
            took: took + since.elapsed(),
            result,
            held,
            then,
        })
    }
}

impl<W: Work> Coordinator<W> {
    /// Keeps `job` in flight until `pending` resolves, its worker free meanwhile; then `then`.
    pub(super) fn settle_later(&mut self, job: Job, took: Duration, pending: Pending, then: Then) {
        let held = self.hold(&job, pending.bytes());
        self.settling.push(Settling {
            pending,
            waiting: Some(Waiting {
                job,
                took,
                held,
                then,
                since: std::time::Instant::now(),
            }),
        });
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
