//! Which received message may start next, per the ordering mode.
//!
//! In `partition` and `key` modes each message belongs to a *lane* (its partition, or its
//! partition and key). A lane is held by one job from the moment it is ready until it is
//! finished, retries included; the lane's later messages wait behind it, in offset order. In
//! `unordered` mode there are no lanes.
//!
//! A lane is known by a 64-bit hash of its topic, partition and key, computed once per message
//! with a per-process random key (SipHash, std's `RandomState`): no key is copied and nothing
//! is hashed twice. Producers choose keys, but without the random key they cannot choose
//! colliding hashes; two lanes whose hashes collide anyway (odds ~2^-64 per pair) share one
//! lane — stricter order, never looser.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::config::Ordering;
use crate::flow::Permit;
use crate::handler::Attempt;
use crate::kafka::{Message, Tp};

/// A message on its way through the pool.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) message: Arc<Message>,
    /// Which assignment of the partition this job belongs to; a job from an earlier assignment
    /// is stale and never touches the current offsets.
    pub(crate) epoch: u64,
    /// Its partition's slot in the coordinator's table (`crate::partition::Partitions`).
    pub(crate) slot: usize,
    /// Attempts made so far.
    pub(crate) attempt: u32,
    /// Its lane's hash (0, unused, in `unordered` mode); set by [`Dispatch::push`].
    pub(crate) lane: u64,
    /// Its message's bytes, held against its partition's part of the bound until the job is
    /// done or dropped, wherever that happens.
    pub(crate) bytes: Permit,
}

impl Job {
    /// A new job of `message` (of its partition's `epoch`, at `slot`), not yet in a lane,
    /// holding its bytes with `bytes`.
    pub(crate) fn new(message: Arc<Message>, epoch: u64, slot: usize, bytes: Permit) -> Self {
        Self {
            message,
            epoch,
            slot,
            attempt: 0,
            lane: 0,
            bytes,
        }
    }

    /// Its next attempt as a handler sees it: numbered from 1.
    pub(crate) fn to_attempt(&self) -> Attempt {
        Attempt {
            message: Arc::clone(&self.message),
            attempt: self.attempt + 1,
        }
    }
}

/// A lane's waiting jobs, and the partition it belongs to (for revokes).
#[derive(Debug)]
struct Lane {
    topic: Arc<str>,
    partition: i32,
    waiting: VecDeque<Job>,
}

/// The pool's queue of received, not-started messages.
#[derive(Debug)]
pub(crate) struct Dispatch {
    ordering: Ordering,
    /// Jobs free to start now, oldest first.
    ready: VecDeque<Job>,
    /// For each held lane (by hash), the jobs waiting behind the holder.
    lanes: FxHashMap<u64, Lane>,
    /// Jobs in `lanes`, so the queue length is O(1).
    waiting: usize,
    /// The random key of lane hashes.
    hasher: std::collections::hash_map::RandomState,
}

impl Dispatch {
    pub(crate) fn new(ordering: Ordering) -> Self {
        Self {
            ordering,
            ready: VecDeque::new(),
            lanes: FxHashMap::default(),
            waiting: 0,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The hash of `m`'s lane; `None` in `unordered` mode.
    fn lane_of(&self, m: &Message) -> Option<u64> {
        if self.ordering == Ordering::Unordered {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        match self.ordering {
            Ordering::Unordered => {}
            Ordering::Partition => (&*m.topic, m.partition).hash(&mut h),
            Ordering::Key => (&*m.topic, m.partition, m.key.as_deref()).hash(&mut h),
        }
        Some(h.finish())
    }

    /// Queues a newly received message.
    pub(crate) fn push(&mut self, mut job: Job) {
        let Some(lane) = self.lane_of(&job.message) else {
            self.ready.push_back(job);
            return;
        };
        job.lane = lane;
        match self.lanes.get_mut(&lane) {
            Some(held) => {
                held.waiting.push_back(job);
                self.waiting += 1;
            }
            None => {
                let held = Lane {
                    topic: Arc::clone(&job.message.topic),
                    partition: job.message.partition,
                    waiting: VecDeque::new(),
                };
                self.lanes.insert(lane, held);
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

    /// Releases the lane of a finished job: the next one waiting behind it becomes ready.
    pub(crate) fn finish(&mut self, job: &Job) {
        if self.ordering == Ordering::Unordered {
            return;
        }
        let Some(held) = self.lanes.get_mut(&job.lane) else {
            return;
        };
        match held.waiting.pop_front() {
            Some(next) => {
                self.waiting -= 1;
                self.ready.push_back(next);
            }
            None => {
                self.lanes.remove(&job.lane);
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
        self.lanes.retain(|_, held| {
            let keep = held.topic != tp.0 || held.partition != tp.1;
            if !keep {
                waiting += held.waiting.len();
                dropped.extend(held.waiting.drain(..));
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
        Job::new(Arc::new(m), 0, 0, Permit::empty(None))
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
        let started: Vec<Job> = std::iter::from_fn(|| d.pop()).collect();
        let offsets_started: Vec<i64> = started.iter().map(|j| j.message.offset).collect();
        assert_eq!(offsets_started, [1, 10]);
        assert_eq!(d.queued(), 2);
        d.finish(&started[0]);
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
        let started: Vec<Job> = std::iter::from_fn(|| d.pop()).collect();
        let offsets_started: Vec<i64> = started.iter().map(|j| j.message.offset).collect();
        assert_eq!(offsets_started, [1, 2, 4]);
        d.finish(&started[0]); // key "a" at offset 1
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
