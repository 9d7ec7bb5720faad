//! Permanent failures: counted, logged at a limited rate, and a halt after
//! `max_consecutive_errors` in a row.

use super::*;

impl<W: Work> Coordinator<W> {
    /// Counts a permanent failure and logs it; where it happened, for a halt's reason.
    pub(super) fn count_failure(&mut self, job: &Job, took: Duration, error: &str) -> String {
        self.tally.failed(took);
        self.consecutive_failures += 1;
        let at = at(job);
        match self.failure_log.check(error, std::time::Instant::now()) {
            Verdict::Log => tracing::warn!(message = %at, %error, "message failed permanently"),
            Verdict::Summary { repeats, since } => tracing::warn!(
                message = %at, %error, repeats,
                "message failed permanently ({repeats} with this error in the last {}s)",
                since.as_secs()
            ),
            Verdict::Suppress => {
                tracing::debug!(message = %at, %error, "message failed permanently")
            }
        }
        at
    }

    pub(super) fn halt_if_failing_in_a_row(&mut self, at: &str, error: &str) {
        if self.consecutive_failures >= self.config.max_consecutive_errors {
            self.halt.get_or_insert(HaltReason::ConsecutiveFailures {
                count: self.consecutive_failures,
                last: format!("{at}: {error}"),
            });
        }
    }

    /// While stopping, failures still waiting for the failure hook are left undone: not
    /// committed, so redelivered after the restart (the hook may dead-letter them then).
    pub(super) fn abandon_failing(&mut self) {
        for (job, _, took) in std::mem::take(&mut self.failing) {
            self.on_completion(Completion {
                job,
                outcome: Outcome::Retry(None),
                took,
            });
        }
    }
}
