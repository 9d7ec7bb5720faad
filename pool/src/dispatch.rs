//! Which received message may start next, per the ordering mode.
//!
//! In `partition` and `key` modes each message belongs to a *lane* (its partition, or its
//! partition and key). A lane is held by one job from the moment it is ready until it is
//! finished, retries included; the lane's later messages wait behind it, in offset order. In
//! `unordered` mode there are no lanes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::config::Ordering;
use crate::kafka::{Message, Tp};

/// A message on its way through the pool.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) message: Arc<Message>,
    /// Which assignment of the partition this job belongs to; a job from an earlier assignment
    /// is stale and never touches the current offsets.
    pub(crate) epoch: u64,
    /// Attempts made so far.
    pub(crate) attempt: u32,
}

/// A lane: partition, and key when ordering by key (`None` for keyless messages).
type Lane = (Arc<str>, i32, Option<Vec<u8>>);

/// The pool's queue of received, not-started messages.
#[derive(Debug)]
pub(crate) struct Dispatch {
    ordering: Ordering,
    /// Jobs free to start now, oldest first.
    ready: VecDeque<Job>,
    /// For each held lane, the jobs waiting behind the holder.
    lanes: HashMap<Lane, VecDeque<Job>>,
    /// Jobs in `lanes`, so the queue length is O(1).
    waiting: usize,
}

impl Dispatch {
    pub(crate) fn new(ordering: Ordering) -> Self {
        Self {
            ordering,
            ready: VecDeque::new(),
            lanes: HashMap::new(),
            waiting: 0,
        }
    }

    fn lane(&self, m: &Message) -> Option<Lane> {
        match self.ordering {
            Ordering::Unordered => None,
            Ordering::Partition => Some((Arc::clone(&m.topic), m.partition, None)),
            Ordering::Key => Some((Arc::clone(&m.topic), m.partition, m.key.clone())),
        }
    }

    /// Queues a newly received message.
    pub(crate) fn push(&mut self, job: Job) {
        let Some(lane) = self.lane(&job.message) else {
            self.ready.push_back(job);
            return;
        };
        match self.lanes.get_mut(&lane) {
            Some(waiting) => {
                waiting.push_back(job);
                self.waiting += 1;
            }
            None => {
                self.lanes.insert(lane, VecDeque::new());
                self.ready.push_back(job);
            }
        }
    }

    /// Requeues a job whose retry delay is over. It still holds its lane, so it goes first.
    pub(crate) fn retry(&mut self, job: Job) {
        self.ready.push_front(job);
    }

    /// The next job to start.
    pub(crate) fn pop(&mut self) -> Option<Job> {
        self.ready.pop_front()
    }

    /// Releases the lane of a finished message: the next one waiting behind it becomes ready.
    pub(crate) fn finish(&mut self, m: &Message) {
        let Some(lane) = self.lane(m) else { return };
        let Some(waiting) = self.lanes.get_mut(&lane) else {
            return;
        };
        match waiting.pop_front() {
            Some(next) => {
                self.waiting -= 1;
                self.ready.push_back(next);
            }
            None => {
                self.lanes.remove(&lane);
            }
        }
    }

    /// Drops every queued job of a partition and its lanes (on revoke, or a rewind), returning
    /// the dropped jobs.
    pub(crate) fn drop_partition(&mut self, tp: &Tp) -> Vec<Job> {
        let of_tp = |m: &Message| m.topic == tp.0 && m.partition == tp.1;
        let mut dropped = Vec::new();
        let (gone, kept): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut self.ready)
            .into_iter()
            .partition(|j| of_tp(&j.message));
        self.ready = kept;
        dropped.extend(gone);
        let mut waiting = 0;
        self.lanes.retain(|(topic, partition, _), queue| {
            let keep = *topic != tp.0 || *partition != tp.1;
            if !keep {
                waiting += queue.len();
                dropped.extend(queue.drain(..));
            }
            keep
        });
        self.waiting -= waiting;
        dropped
    }

    /// Drops everything (on shutdown).
    pub(crate) fn clear(&mut self) {
        self.ready.clear();
        self.lanes.clear();
        self.waiting = 0;
    }

    /// Jobs received and not started.
    pub(crate) fn queued(&self) -> usize {
        self.ready.len() + self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(partition: i32, offset: i64, key: Option<&str>) -> Job {
        let mut m = Message::new("t", partition, offset);
        m.key = key.map(|k| k.as_bytes().to_vec());
        Job {
            message: Arc::new(m),
            epoch: 0,
            attempt: 0,
        }
    }

    fn offsets(d: &mut Dispatch) -> Vec<i64> {
        std::iter::from_fn(|| d.pop())
            .map(|j| j.message.offset)
            .collect()
    }

    /// Partition mode: one message per partition at a time; partitions do not wait on each other.
    #[test]
    fn partition_mode_runs_one_per_partition() {
        let mut d = Dispatch::new(Ordering::Partition);
        for (p, o) in [(0, 1), (0, 2), (1, 10), (1, 11)] {
            d.push(job(p, o, None));
        }
        assert_eq!(offsets(&mut d), [1, 10]);
        assert_eq!(d.queued(), 2);
        d.finish(&Message::new("t", 0, 1));
        assert_eq!(offsets(&mut d), [2]);
    }

    /// Key mode: one message per key at a time, keyless ones ordered per partition.
    #[test]
    fn key_mode_runs_one_per_key() {
        let mut d = Dispatch::new(Ordering::Key);
        d.push(job(0, 1, Some("a")));
        d.push(job(0, 2, Some("b")));
        d.push(job(0, 3, Some("a")));
        d.push(job(0, 4, None));
        d.push(job(0, 5, None));
        assert_eq!(offsets(&mut d), [1, 2, 4]);
        let mut a = Message::new("t", 0, 1);
        a.key = Some(b"a".to_vec());
        d.finish(&a);
        assert_eq!(offsets(&mut d), [3]);
    }

    /// A retried job keeps its lane: the next message of its partition still waits.
    #[test]
    fn retry_keeps_the_lane() {
        let mut d = Dispatch::new(Ordering::Partition);
        d.push(job(0, 1, None));
        d.push(job(0, 2, None));
        let first = d.pop().expect("ready");
        assert!(d.pop().is_none());
        d.retry(first);
        assert_eq!(offsets(&mut d), [1]);
    }

    /// Dropping a revoked partition removes its queued jobs and nothing else.
    #[test]
    fn drop_partition_removes_only_its_jobs() {
        let mut d = Dispatch::new(Ordering::Partition);
        for (p, o) in [(0, 1), (0, 2), (1, 10), (1, 11)] {
            d.push(job(p, o, None));
        }
        let dropped = d.drop_partition(&(Arc::from("t"), 0));
        assert_eq!(dropped.len(), 2);
        assert_eq!(d.queued(), 2);
        assert_eq!(offsets(&mut d), [10]);
    }
}
