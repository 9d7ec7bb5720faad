//! Jobs out: ready jobs paired with idle workers, failures waiting for the failure hook first,
//! several at once to a worker whose handler takes batches, a short sequence to one that does
//! not when its calls are quick.

use super::*;

/// The most jobs a worker whose handler takes one message per call is given at once, when
/// more are queued than workers are idle.
const SEQUENCE: usize = 64;

/// How long a sequence may be expected to take: what it can add to a revoke's or a shutdown's
/// wait, and to the wait of the jobs behind a slow one in it.
const SEQUENCE_TIME: Duration = Duration::from_micros(200);

/// How long a call takes, on average (a moving mean of recent calls): how many jobs a worker
/// whose handler takes one message per call gets at once.
///
/// Each job started costs the pool a future, a turn of its loop shared with the other workers'
/// and two readings of the clock; a handler that returns at once pays that ten times over. In a
/// sequence, a worker's jobs run one after another in one future, each timed from the end of
/// the one before. A sequence never holds two jobs of one lane (only a lane's holder is
/// ready), so ordering is untouched; its cost is that the jobs behind a slow call in it wait
/// for it, where another worker could have taken them. So sequences are only for quick calls:
/// sized to take [`SEQUENCE_TIME`] at the measured pace, one job each until a call has been
/// measured, and one each again as soon as calls slow down.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// The moving mean, in nanoseconds; `None` until a call has been measured.
    mean_ns: Option<u64>,
}

impl Pace {
    /// Counts a task's `calls` calls, which took `took` in all.
    pub(super) fn observe(&mut self, took: Duration, calls: usize) {
        let Some(calls) = u128::try_from(calls).ok().filter(|&n| n > 0) else {
            return;
        };
        let each = u64::try_from(took.as_nanos() / calls).unwrap_or(u64::MAX);
        self.mean_ns = Some(match self.mean_ns {
            // Recent calls weigh 1/8: a slow call shortens the next sequences at once.
            Some(mean) => mean - mean / 8 + each / 8,
            None => each,
        });
    }

    /// How many jobs one sequence may hold now.
    fn sequence(&self) -> usize {
        let Some(mean) = self.mean_ns else {
            return 1;
        };
        let fits = SEQUENCE_TIME.as_nanos() / u128::from(mean.max(1));
        usize::try_from(fits).unwrap_or(SEQUENCE).clamp(1, SEQUENCE)
    }
}

impl<W: Work> Coordinator<W> {
    /// Pairs ready jobs with idle workers' handlers, to be started: first failures waiting for
    /// the failure hook, then queued jobs. When more jobs are queued than workers are idle, a
    /// worker gets several at once, the queue shared evenly: a batch, up to its handler's
    /// `max_batch`, or a sequence as the [`Pace`] of calls allows; otherwise one each.
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
            let batching = handler.max_batch() > 1;
            let most = if batching {
                handler.max_batch()
            } else {
                self.pace.sequence()
            };
            let take = share.clamp(1, most);
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
                if !batching {
                    self.next_followers(take - jobs.len(), &mut jobs);
                }
            }
            if jobs.is_empty() {
                self.idle.push(handler);
                break;
            }
            let task = if batching {
                Task::Attempt(jobs)
            } else {
                let ordered = self.config.ordering != crate::Ordering::Unordered;
                Task::Sequence { jobs, ordered }
            };
            started.push((handler, task));
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

    /// Up to `most` jobs waiting in the lane of the last of `jobs` (just started), moved
    /// behind it to run in the same sequence, counted in flight. They are of its partition
    /// and epoch: a revoke or a rewind drops the partition's lanes with their waiting jobs.
    fn next_followers(&mut self, most: usize, jobs: &mut Vec<Job>) {
        let Some(holder) = jobs.last() else {
            return;
        };
        let (lane, slot, epoch) = (holder.lane, holder.slot, holder.epoch);
        let n = self.dispatch.take_followers(lane, most, jobs);
        if n == 0 {
            return;
        }
        debug_assert!(
            jobs.iter()
                .rev()
                .take(n)
                .all(|j| j.slot == slot && j.epoch == epoch)
        );
        if let Some(p) = self.partitions.at(slot) {
            p.in_flight += n;
        }
        self.busy += n;
    }

    /// Workers running a call now (`busy` counts messages: a worker may run a batch).
    pub(super) fn workers_busy(&self) -> usize {
        self.config.num_workers.saturating_sub(self.idle.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One job each until a call has been measured; quick calls get the longest sequences;
    /// a slow call shortens them at once, back to one each for calls slower than the bound.
    #[test]
    fn sequences_follow_the_pace_of_calls() {
        let mut pace = Pace::default();
        assert_eq!(pace.sequence(), 1, "nothing measured yet");
        pace.observe(Duration::from_micros(10), 100);
        assert_eq!(pace.sequence(), SEQUENCE);
        pace.observe(Duration::from_millis(100), 1);
        assert_eq!(pace.sequence(), 1, "one slow call");
        for _ in 0..100 {
            pace.observe(Duration::from_micros(20), 1);
        }
        // The mean is a moving one: 20 µs and a few ns left of the slow call.
        assert!((9..=10).contains(&pace.sequence()), "200 µs of 20 µs calls");
    }
}
