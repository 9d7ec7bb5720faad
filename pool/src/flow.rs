//! The bound on what the pool holds, kept per partition so a slow partition stops only itself.
//!
//! Each assigned partition has its own queue inside librdkafka (split off the consumer's main
//! queue when the partition is assigned, see [`crate::kafka`]). The poll thread takes messages
//! from a partition's queue only while that partition has credit; what it does not take stays
//! in librdkafka, which stops fetching that partition once its own prefetch limits are reached
//! (`queued.min.messages`, `queued.max.messages.kbytes`) — nothing is paused, nothing fetched is
//! thrown away, and every other partition flows on.
//!
//! A message counts against the bound from the moment the poll thread takes it until the
//! partition's done prefix passes its offset: queued, in flight, waiting to retry, and done above
//! a gap alike. Its bytes (key, value, headers) count until it is done. The bound is
//! `job_queue_size` messages and `max_buffered_bytes` bytes, shared out so that no partition can
//! starve the others:
//!
//! - each partition is guaranteed `limit / (2 × partitions)` (its *share*);
//! - beyond its share, a partition may take while the pool as a whole holds less than half the
//!   bound (the *common half*);
//! - a partition alone has the whole bound.
//!
//! A paused pool gives no partition credit: nothing more is taken, everything fetched waits in
//! librdkafka, and the poll thread keeps polling, so the consumer stays in its group.
//!
//! No take passes the bound in all, so the total never exceeds it (a partition that joins while
//! another, alone until then, holds the whole bound waits for it to drain), and a partition stuck
//! behind one message holds at most half the bound (or its share, if larger): the others keep
//! theirs. Bytes are
//! checked after each message is taken, so a partition may overshoot its byte allowance by one
//! message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::kafka::PollWaker;

/// The pool-wide bound and its totals. The poll thread adds, the coordinator releases.
#[derive(Debug)]
pub(crate) struct Credit {
    max_messages: usize,
    max_bytes: usize,
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Partitions sharing the bound now.
    partitions: AtomicUsize,
    /// Wakes the poll thread when a partition it left for lack of credit gets some back.
    poller: Arc<PollWaker>,
    /// Set while the pool is paused ([`crate::Pauser`]): no partition has credit.
    paused: Arc<AtomicBool>,
}

/// One partition's part of the bound.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Set by the poll thread when it left this partition for lack of credit.
    starved: AtomicBool,
}

impl Credit {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            partitions: AtomicUsize::new(0),
            poller: Arc::default(),
            paused: Arc::default(),
        }
    }

    /// The same bound, with no credit for any partition while `paused` is set.
    pub(crate) fn pausable(mut self, paused: Arc<AtomicBool>) -> Self {
        self.paused = paused;
        self
    }

    /// Wakes the poll thread through `waker` (the consumer's: see [`PollWaker`]).
    pub(crate) fn waking(mut self, waker: Arc<PollWaker>) -> Self {
        self.poller = waker;
        self
    }

    /// Wakes the poll thread (a seek was asked for; a partition it left got credit back).
    pub(crate) fn wake(&self) {
        self.poller.wake();
    }

    /// A new partition joins: it gets its own share.
    pub(crate) fn join(&self) -> Arc<Flow> {
        self.partitions.fetch_add(1, Ordering::AcqRel);
        Arc::new(Flow::default())
    }

    /// A partition leaves (revoked): whatever it still held is given back.
    pub(crate) fn leave(&self, flow: &Flow) {
        let _ = self
            .partitions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let messages = flow.messages.swap(0, Ordering::AcqRel);
        let bytes = flow.bytes.swap(0, Ordering::AcqRel);
        sub(&self.messages, messages);
        sub(&self.bytes, bytes);
    }

    /// How many messages the poll thread may take from `flow`'s partition now (0: none).
    pub(crate) fn allowance(&self, flow: &Flow) -> usize {
        if self.paused.load(Ordering::Acquire) {
            return 0;
        }
        let partitions = self.partitions.load(Ordering::Acquire).max(1);
        let messages = flow.messages.load(Ordering::Acquire);
        let total = self.messages.load(Ordering::Acquire);
        let share = share(self.max_messages, partitions);
        // Never past the bound in all: a partition that joins while another holds the whole
        // bound (it was alone) waits for that one to drain below it.
        let by_count = share
            .saturating_sub(messages)
            .max((self.max_messages / 2).saturating_sub(total))
            .min(self.max_messages.saturating_sub(total));
        if by_count == 0 || self.byte_room(flow, partitions) == 0 {
            flow.starved.store(true, Ordering::Release);
            return 0;
        }
        by_count
    }

    /// How many bytes `flow` may take before it must stop (it may pass them by one message):
    /// what is left of its share, or of the common half, whichever is more.
    pub(crate) fn byte_room(&self, flow: &Flow, partitions: usize) -> usize {
        let share = share(self.max_bytes, partitions);
        let own = share.saturating_sub(flow.bytes.load(Ordering::Acquire));
        let common = (self.max_bytes / 2).saturating_sub(self.bytes.load(Ordering::Acquire));
        own.max(common)
    }

    /// The number of partitions sharing the bound (at least 1).
    pub(crate) fn partitions(&self) -> usize {
        self.partitions.load(Ordering::Acquire).max(1)
    }

    /// The poll thread took `messages` messages of `bytes` bytes in all from `flow`'s
    /// partition: counted once per run it takes, not per message.
    pub(crate) fn took(&self, flow: &Flow, messages: usize, bytes: usize) {
        flow.messages.fetch_add(messages, Ordering::AcqRel);
        flow.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.messages.fetch_add(messages, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `flow`'s partition holds `bytes` more that are not a message's payload (a late result's
    /// records awaiting their acks); given back with [`Credit::release_bytes`].
    pub(crate) fn hold_bytes(&self, flow: &Flow, bytes: usize) {
        flow.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `messages` offsets of `flow`'s partition left the pool (the done prefix passed them, or
    /// they were dropped): their credit comes back.
    pub(crate) fn release_messages(&self, flow: &Flow, messages: usize) {
        if messages == 0 {
            return;
        }
        sub(&flow.messages, messages);
        sub(&self.messages, messages);
        self.wake_if_starved(flow);
    }

    /// A message of `bytes` bytes is done (or dropped): its payload is no longer held.
    pub(crate) fn release_bytes(&self, flow: &Flow, bytes: usize) {
        if bytes == 0 {
            return;
        }
        sub(&flow.bytes, bytes);
        sub(&self.bytes, bytes);
        self.wake_if_starved(flow);
    }

    /// Wakes the poll thread if it left this partition for lack of credit, once per starvation.
    fn wake_if_starved(&self, flow: &Flow) {
        if flow.starved.swap(false, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Messages held now, over every partition.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.messages.load(Ordering::Acquire)
    }

    /// Bytes held now, over every partition.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

impl Flow {
    /// Messages this partition holds now.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.messages.load(Ordering::Acquire)
    }
}

/// One partition's guaranteed part of `limit`: all of it when alone, else `limit / (2 × n)`.
fn share(limit: usize, partitions: usize) -> usize {
    if partitions == 1 {
        limit
    } else {
        (limit / (2 * partitions)).max(1)
    }
}

/// Subtracts without wrapping below zero (a release racing a `leave` that already zeroed it).
fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_sub(n))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Take from `flow` until its allowance runs out, in runs of messages of `bytes` each, as
    /// the poll thread does.
    fn fill(credit: &Credit, flow: &Flow, bytes: usize) -> usize {
        let mut taken = 0;
        loop {
            let n = credit.allowance(flow);
            if n == 0 {
                return taken;
            }
            let room = credit.byte_room(flow, credit.partitions());
            let mut run = (0, 0);
            while run.0 < n && run.1 < room {
                run = (run.0 + 1, run.1 + bytes);
            }
            credit.took(flow, run.0, run.1);
            taken += run.0;
        }
    }

    /// A stuck partition fills its share and the common half, no more: the other partitions
    /// keep their shares, and the total never exceeds the bound.
    #[test]
    fn a_stuck_partition_cannot_take_the_others_share() {
        let credit = Credit::new(1000, usize::MAX);
        let flows: Vec<_> = (0..4).map(|_| credit.join()).collect();
        let stuck = fill(&credit, &flows[0], 1);
        assert_eq!(
            stuck, 500,
            "the common half, which is more than its share (125)"
        );
        for flow in &flows[1..] {
            assert_eq!(
                fill(&credit, flow, 1),
                125,
                "each other partition keeps its share"
            );
        }
        assert_eq!(credit.messages(), 875, "within the bound");
    }

    /// Credit comes back as the done prefix passes offsets, and a partition that leaves gives
    /// back all it held.
    #[test]
    fn released_and_revoked_messages_give_credit_back() {
        let credit = Credit::new(100, usize::MAX);
        let a = credit.join();
        let b = credit.join();
        fill(&credit, &a, 1);
        assert_eq!(credit.allowance(&a), 0);
        assert_eq!(
            a.messages(),
            50,
            "the common half (more than its share, 25)"
        );
        credit.release_messages(&a, 10);
        assert_eq!(credit.allowance(&a), 10);
        fill(&credit, &b, 1);
        credit.leave(&b);
        assert_eq!(b.messages(), 0);
        assert_eq!(credit.messages(), a.messages());
    }

    /// Bytes bound the partition too: large messages stop the taking before the count does,
    /// overshooting by at most one message.
    #[test]
    fn bytes_bound_a_partition_of_large_messages() {
        let credit = Credit::new(10_000, 1 << 20);
        let flow = credit.join();
        let taken = fill(&credit, &flow, 100 << 10);
        // Alone, the partition has the whole 1 MiB: 100 KiB messages, one over.
        assert_eq!(taken, 11);
        credit.release_bytes(&flow, 5 * (100 << 10));
        assert!(credit.allowance(&flow) > 0);
    }
}
