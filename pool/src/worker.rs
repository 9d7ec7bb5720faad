//! How a handler call runs: as a future of the coordinator's own task, one per busy worker, each
//! owning its worker's handler while it runs and giving it back with the outcome.
//!
//! Running handler calls inside the task that dispatches them costs no wake-up or channel hop
//! per message. With worker tasks, every message crossed tasks twice, and a pool of `W` workers
//! whose handler returns at once was held to `W` messages per round trip between tasks (tens of
//! microseconds on a busy machine): ~250,000 messages/s with the default 10 workers, whatever
//! the handler. The cost: handlers share the task. They interleave at their `.await`s as any
//! futures do (what `StreamExt::buffer_unordered` does), so a handler that computes for long
//! without awaiting should hand that work to `tokio::task::spawn_blocking` (the host's WASM
//! calls run on threads of their own).

use std::time::{Duration, Instant};

use crate::dispatch::Job;
use crate::handler::{Outcome, Work, run_attempt};

/// How one attempt went.
pub(crate) struct Completion {
    pub(crate) job: Job,
    pub(crate) outcome: Outcome,
    pub(crate) took: Duration,
}

/// One attempt of `job` on `handler`; gives the handler back with the outcome.
pub(crate) async fn attempt<W: Work>(
    mut handler: W,
    job: Job,
    max_retries: u32,
) -> (W, Completion) {
    let started = Instant::now();
    let outcome = run_attempt(&mut handler, &job.message, job.attempt, max_retries).await;
    let completion = Completion {
        job,
        outcome,
        took: started.elapsed(),
    };
    (handler, completion)
}
