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
//!
//! Calls are timed on the runtime's clock: their pace decides how many jobs a worker is given
//! at once (`coordinator::start`), so a simulation's paused clock must be the one read.

use std::time::Duration;

use tokio::time::Instant;

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
    /// Jobs to attempt one after another, on a handler that takes one message per call; the
    /// first that does not end done stops the sequence, and the rest are given back, not run.
    /// `ordered` when jobs hold lanes: a lane's holder may be followed by its next jobs.
    Sequence { jobs: Vec<Job>, ordered: bool },
    /// A job whose result came later (see [`crate::Pending`]) as a permanent failure: its
    /// failure hook runs on this worker's handler. `took` is its time so far.
    Fail {
        job: Job,
        failure: Failure,
        took: Duration,
    },
}

/// The outcomes of a task: one, or one per job of a batch, or of a sequence with the jobs it
/// gave back.
pub(crate) enum Completions {
    One(Completion),
    Many(Vec<Completion>),
    Sequence {
        ran: Vec<Completion>,
        rest: GivenBack,
    },
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
        Task::Sequence { jobs, ordered } => {
            let (handler, ran, rest) = sequence(handler, jobs, ordered, max_retries).await;
            (handler, Completions::Sequence { ran, rest })
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

/// `jobs` one after another, each timed from the end of the one before: one clock read each.
/// The first that does not end done (a retry, a failure, a result to come) stops the
/// sequence: the jobs after it are given back unstarted, so a failing stream halts the pool
/// or waits for its retries as soon as it would one job at a time, and (`ordered`) no job of
/// a lane runs before the one before it is done.
async fn sequence<W: Work>(
    mut handler: W,
    jobs: Vec<Job>,
    ordered: bool,
    max_retries: u32,
) -> (W, Vec<Completion>, GivenBack) {
    let mut ran = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    let mut started = Instant::now();
    for job in jobs.by_ref() {
        let outcome = run_attempt(&mut handler, &job.message, job.attempt, max_retries).await;
        let now = Instant::now();
        let took = now - started;
        started = now;
        let done = matches!(outcome, Outcome::Done | Outcome::Output(_));
        ran.push(Completion { job, outcome, took });
        if !done {
            break;
        }
    }
    let back = GivenBack::sort(ordered, &ran, jobs);
    (handler, ran, back)
}

/// The jobs a sequence gave back unstarted, each in the sequence's order.
#[derive(Default)]
pub(crate) struct GivenBack {
    /// Jobs that held their lane (or any job, unordered): back to the head of the queue.
    pub(crate) holders: Vec<Job>,
    /// Jobs that followed an earlier job of their lane in the sequence: back to the head of
    /// their lane.
    pub(crate) followers: Vec<Job>,
}

impl GivenBack {
    /// Sorts `rest`, what a sequence did not run after `ran`: a job whose lane has an earlier
    /// job in the sequence followed it; the first of a lane held it.
    fn sort(ordered: bool, ran: &[Completion], rest: impl Iterator<Item = Job>) -> Self {
        let mut back = Self::default();
        let mut lanes: Vec<u64> = ran.iter().map(|c| c.job.lane).collect();
        for job in rest {
            if ordered && lanes.contains(&job.lane) {
                back.followers.push(job);
            } else {
                lanes.push(job.lane);
                back.holders.push(job);
            }
        }
        back
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.followers.is_empty()
    }
}
