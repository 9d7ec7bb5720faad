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
use crate::handler::{Attempt, Failure, Outcome, Work, handle_failure, run_attempt, run_batch};

/// How one attempt went.
pub(crate) struct Completion {
    pub(crate) job: Job,
    pub(crate) outcome: Outcome,
    pub(crate) took: Duration,
}

/// What a worker is given to do.
pub(crate) enum Task {
    /// One job to attempt: the common case, with nothing to allocate.
    One(Job),
    /// A batch of jobs to attempt.
    Attempt(Vec<Job>),
    /// A job whose result came later (see [`crate::Pending`]) as a permanent failure: its
    /// failure hook runs on this worker's handler. `took` is its time so far.
    Fail {
        job: Job,
        failure: Failure,
        took: Duration,
    },
}

/// The outcomes of a task: one, or one per job of a batch.
pub(crate) enum Completions {
    One(Completion),
    Many(Vec<Completion>),
}

/// Runs `task` on `handler`; gives the handler back with each job's outcome.
pub(crate) async fn run<W: Work>(mut handler: W, task: Task, max_retries: u32) -> (W, Completions) {
    match task {
        Task::One(job) => {
            let started = Instant::now();
            let outcome = if handler.max_batch() == 1 {
                run_attempt(&mut handler, &job.message, job.attempt, max_retries).await
            } else {
                // A batching handler gets every call through its batch entry.
                let batch = [job.to_attempt()];
                let mut outcomes = run_batch(&mut handler, &batch, max_retries).await;
                outcomes.pop().unwrap_or(Outcome::Retry(None))
            };
            let took = started.elapsed();
            (handler, Completions::One(Completion { job, outcome, took }))
        }
        Task::Attempt(jobs) => {
            let (handler, completions) = attempt(handler, jobs, max_retries).await;
            (handler, Completions::Many(completions))
        }
        Task::Fail { job, failure, took } => {
            let started = Instant::now();
            let outcome = handle_failure(&mut handler, &job.message, failure).await;
            let took = took + started.elapsed();
            (handler, Completions::One(Completion { job, outcome, took }))
        }
    }
}

/// One batch of `jobs`. Each message is timed as its share of the batch's time.
async fn attempt<W: Work>(
    mut handler: W,
    jobs: Vec<Job>,
    max_retries: u32,
) -> (W, Vec<Completion>) {
    let started = Instant::now();
    let batch: Vec<Attempt> = jobs.iter().map(Job::to_attempt).collect();
    let outcomes = run_batch(&mut handler, &batch, max_retries).await;
    let took = started.elapsed() / u32::try_from(jobs.len().max(1)).unwrap_or(u32::MAX);
    let completions = jobs
        .into_iter()
        .zip(outcomes)
        .map(|(job, outcome)| Completion { job, outcome, took })
        .collect();
    (handler, completions)
}
