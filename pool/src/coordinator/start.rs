//! Jobs out: ready jobs paired with idle workers, failures waiting for the failure hook first,
//! several at once to a worker whose handler takes batches.

use super::*;

impl<W: Work> Coordinator<W> {
    /// Pairs ready jobs with idle workers' handlers, to be started: first failures waiting for
    /// the failure hook, then queued jobs. When more jobs are queued than workers are idle, a
    /// worker whose handler takes batches gets several at once (up to its `max_batch`), the
    /// queue shared evenly; otherwise one each.
    pub(super) fn start_jobs(&mut self) -> Vec<(W, Task)> {
        let mut started = Vec::new();
        if self.stopping || self.halt.is_some() {
            return started;
        }
        while !self.failing.is_empty()
            && let Some(handler) = self.idle.pop()
        {
            if let Some((job, failure, took)) = self.failing.pop_front() {
                started.push((handler, Task::Fail { job, failure, took }));
            }
        }
        while let Some(handler) = self.idle.pop() {
            let share = self.dispatch.queued().div_ceil(self.idle.len() + 1);
            let take = share.clamp(1, handler.max_batch());
            if take == 1 {
                match self.next_job() {
                    Some(job) => started.push((handler, Task::One(job))),
                    None => {
                        self.idle.push(handler);
                        break;
                    }
                }
                continue;
            }
            let mut jobs = Vec::with_capacity(take);
            while jobs.len() < take {
                let Some(job) = self.next_job() else {
                    break;
                };
                jobs.push(job);
            }
            if jobs.is_empty() {
                self.idle.push(handler);
                break;
            }
            started.push((handler, Task::Attempt(jobs)));
        }
        started
    }

    /// The next queued job to start, counted in flight; a job whose partition was revoked
    /// meanwhile is dropped, not started.
    pub(super) fn next_job(&mut self) -> Option<Job> {
        loop {
            let job = self.dispatch.pop()?;
            if let Some(p) = self.partition_of(&job) {
                p.in_flight += 1;
                self.busy += 1;
                return Some(job);
            }
        }
    }

    /// Workers running a call now (`busy` counts messages: a worker may run a batch).
    pub(super) fn workers_busy(&self) -> usize {
        self.config.num_workers.saturating_sub(self.idle.len())
    }
}
