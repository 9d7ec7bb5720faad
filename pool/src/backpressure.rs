//! The bound on messages the pool holds before it starts them.
//!
//! Two parties add to the backlog: the poll thread, which hands fetched messages over, and
//! the coordinator, which queues them until a worker is free. If only the coordinator decided
//! when to pause, a coordinator that is slow to get CPU would find a long run of messages
//! already handed over, and the queue would overshoot `job_queue_size` by that much. So both
//! look at the same count (handed over + queued) and either may pause; the coordinator resumes
//! once the backlog has halved. The paused flag and the pause/resume call sit under one lock,
//! so the two threads can never apply them out of order (a resume overtaken by a stale pause
//! would leave the partitions paused for good).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use crate::kafka::{PoolContext, Tp};

pub(crate) struct Backpressure {
    limit: usize,
    /// Messages the poll thread handed over that the coordinator has not queued yet.
    in_transit: AtomicUsize,
    /// Messages the coordinator holds, not started.
    queued: AtomicUsize,
    /// Whether the assignment is paused for backpressure.
    paused: Mutex<bool>,
}

impl Backpressure {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            in_transit: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            paused: Mutex::new(false),
        }
    }

    /// The poll thread handed a message over.
    pub(crate) fn handed_over(&self) {
        self.in_transit.fetch_add(1, Ordering::AcqRel);
    }

    /// The coordinator took a handed-over message.
    pub(crate) fn taken(&self) {
        let _ = self
            .in_transit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// The coordinator's queue length now.
    pub(crate) fn set_queued(&self, queued: usize) {
        self.queued.store(queued, Ordering::Release);
    }

    fn backlog(&self) -> usize {
        self.in_transit.load(Ordering::Acquire) + self.queued.load(Ordering::Acquire)
    }

    /// Pauses the assignment when the backlog reached the limit. Called by the poll thread
    /// after each hand-over; returns whether it paused.
    pub(crate) fn pause_if_full(&self, consumer: &BaseConsumer<PoolContext>) -> bool {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused || self.backlog() < self.limit {
            return false;
        }
        *paused = apply(consumer, None, true);
        *paused
    }

    /// Pauses when full, resumes when the backlog has halved. Called by the coordinator;
    /// returns the new state when it changed.
    pub(crate) fn update(&self, consumer: &BaseConsumer<PoolContext>) -> Option<bool> {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let backlog = self.backlog();
        let want = if *paused {
            backlog > self.limit / 2
        } else {
            backlog >= self.limit
        };
        if want == *paused {
            return None;
        }
        if apply(consumer, None, want) == want {
            *paused = want;
            Some(want)
        } else {
            None
        }
    }

    /// Newly assigned partitions join the paused state of the rest.
    pub(crate) fn pause_new(&self, consumer: &BaseConsumer<PoolContext>, tps: &[Tp]) {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused {
            apply(consumer, Some(tps), true);
        }
    }
}

/// Pauses or resumes `tps` (the whole assignment when `None`); returns the state now in force.
fn apply(consumer: &BaseConsumer<PoolContext>, tps: Option<&[Tp]>, pause: bool) -> bool {
    let tpl = match tps {
        Some(tps) => {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in tps {
                tpl.add_partition(topic, *partition);
            }
            tpl
        }
        None => match consumer.assignment() {
            Ok(tpl) => tpl,
            Err(e) => {
                tracing::warn!(error = %e, "reading the assignment for backpressure");
                return !pause;
            }
        },
    };
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match result {
        Ok(()) => pause,
        Err(e) => {
            tracing::warn!(error = %e, pause, "pausing or resuming partitions");
            !pause
        }
    }
}
