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
//! a gap alike. Its bytes (key, value, headers) count until it is done. What is counted is held
//! by a [`Permit`], and given back when the permit is dropped: the poll thread takes one per run
//! of records, the coordinator splits it between each job (its bytes) and its partition's
//! tracker (its place), and whatever drops a job or forgets a tracker gives their credit back;
//! no path has to remember to. The bound is
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

use rustc_hash::FxHashMap;

use crate::kafka::PollWaker;

/// The pool-wide bound and its totals. The poll thread takes credit as [`Permit`]s; what they
/// hold comes back when they are dropped.
#[derive(Debug)]
pub(crate) struct Credit {
    max_messages: usize,
    max_bytes: usize,
    totals: Arc<Totals>,
    /// Partitions sharing the bound now.
    partitions: AtomicUsize,
    /// Set while the pool is paused ([`crate::Pauser`]): no partition has credit.
    paused: Arc<AtomicBool>,
}

/// What the pool holds now, over every partition; each [`Flow`] keeps a reference, so a permit
/// that outlives its partition (a zombie call's) still gives back to the right totals.
#[derive(Debug, Default)]
struct Totals {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Wakes the poll thread when a partition it left for lack of credit gets some back.
    poller: Arc<PollWaker>,
}

/// One partition's part of the bound.
#[derive(Debug)]
pub(crate) struct Flow {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Set by the poll thread when it left this partition for lack of credit.
    starved: AtomicBool,
    totals: Arc<Totals>,
}

/// Messages and bytes held against a partition's part of the bound, given back when dropped.
///
/// Every message the poll thread takes comes with one: a run's permit is split among its jobs
/// (their bytes) and its partition's tracker (their places, until the done prefix passes them).
/// Whatever drops a job — done, cancelled with its retry timer, thrown out by a rewind or a
/// revoke, ended as a zombie — gives its credit back, so none can leak. On the hot path the
/// coordinator gathers them in [`Returns`] and gives them back once per loop turn.
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit {
    /// `None` for a partition the poll thread does not meter: nothing to give back.
    flow: Option<Arc<Flow>>,
    messages: usize,
    bytes: usize,
}

impl Credit {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            totals: Arc::default(),
            partitions: AtomicUsize::new(0),
            paused: Arc::default(),
        }
    }

    /// The same bound, with no credit for any partition while `paused` is set.
    pub(crate) fn pausable(mut self, paused: Arc<AtomicBool>) -> Self {
        self.paused = paused;
        self
    }

    /// Wakes the poll thread through `waker` (the consumer's: see [`PollWaker`]). Called before
    /// any partition joins: the totals it replaces are still zero.
    pub(crate) fn waking(mut self, waker: Arc<PollWaker>) -> Self {
        self.totals = Arc::new(Totals {
            poller: waker,
            ..Totals::default()
        });
        self
    }

    /// Wakes the poll thread (a seek was asked for; a partition it left got credit back).
    pub(crate) fn wake(&self) {
        self.totals.poller.wake();
    }

    /// A new partition joins: it gets its own share.
    pub(crate) fn join(&self) -> Arc<Flow> {
        self.partitions.fetch_add(1, Ordering::AcqRel);
        Arc::new(Flow {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            totals: Arc::clone(&self.totals),
        })
    }

    /// A partition leaves (revoked): the others share the bound. What it still holds comes back
    /// as its permits are dropped (its tracker's with it, a zombie call's when the call ends).
    pub(crate) fn leave(&self) {
        let _ = self
            .partitions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// How many messages the poll thread may take from `flow`'s partition now (0: none).
    pub(crate) fn allowance(&self, flow: &Flow) -> usize {
        if self.paused.load(Ordering::Acquire) {
            return 0;
        }
        let partitions = self.partitions.load(Ordering::Acquire).max(1);
        let messages = flow.messages.load(Ordering::Acquire);
        let total = self.totals.messages.load(Ordering::Acquire);
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
    /// what is left of its share, or of the common half, whichever is more; never past the
    /// bound in all (what calls of a partition let go still hold counts until they end).
    pub(crate) fn byte_room(&self, flow: &Flow, partitions: usize) -> usize {
        let total = self.totals.bytes.load(Ordering::Acquire);
        let share = share(self.max_bytes, partitions);
        let own = share.saturating_sub(flow.bytes.load(Ordering::Acquire));
        let common = (self.max_bytes / 2).saturating_sub(total);
        own.max(common).min(self.max_bytes.saturating_sub(total))
    }

    /// The number of partitions sharing the bound (at least 1).
    pub(crate) fn partitions(&self) -> usize {
        self.partitions.load(Ordering::Acquire).max(1)
    }

    /// The poll thread took `messages` messages of `bytes` bytes in all from `flow`'s
    /// partition: counted once per run it takes, not per message.
    pub(crate) fn took(&self, flow: &Arc<Flow>, messages: usize, bytes: usize) -> Permit {
        Permit::hold(flow, messages, bytes)
    }

    /// Messages held now, over every partition.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.totals.messages.load(Ordering::Acquire)
    }

    /// Bytes held now, over every partition.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.totals.bytes.load(Ordering::Acquire)
    }
}

impl Flow {
    /// Messages this partition holds now.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.messages.load(Ordering::Acquire)
    }

    fn add(&self, messages: usize, bytes: usize) {
        self.count(messages, bytes, AtomicUsize::fetch_add);
    }

    /// Gives `messages` and `bytes` back, and wakes the poll thread if it left this partition
    /// for lack of credit (once per starvation).
    fn release(&self, messages: usize, bytes: usize) {
        self.count(messages, bytes, AtomicUsize::fetch_sub);
        if self.starved.swap(false, Ordering::AcqRel) {
            self.totals.poller.wake();
        }
    }

    /// Applies `op` (add or subtract) to this partition's counts and the pool's totals.
    fn count(&self, messages: usize, bytes: usize, op: fn(&AtomicUsize, usize, Ordering) -> usize) {
        for (n, own, total) in [
            (messages, &self.messages, &self.totals.messages),
            (bytes, &self.bytes, &self.totals.bytes),
        ] {
            if n > 0 {
                op(own, n, Ordering::AcqRel);
                op(total, n, Ordering::AcqRel);
            }
        }
    }
}

impl Permit {
    /// Counts `messages` and `bytes` against `flow`'s part of the bound until dropped.
    pub(crate) fn hold(flow: &Arc<Flow>, messages: usize, bytes: usize) -> Self {
        flow.add(messages, bytes);
        Self {
            flow: Some(Arc::clone(flow)),
            messages,
            bytes,
        }
    }

    /// A permit holding nothing, of `flow` (or of no partition's part when `None`).
    pub(crate) fn empty(flow: Option<&Arc<Flow>>) -> Self {
        Self {
            flow: flow.cloned(),
            messages: 0,
            bytes: 0,
        }
    }

    /// What it holds: messages, bytes.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.messages, self.bytes)
    }

    /// Takes `messages` and `bytes` out of what it holds (at most that), and says how many.
    fn take(&mut self, messages: usize, bytes: usize) -> (usize, usize) {
        debug_assert!(
            messages <= self.messages && bytes <= self.bytes,
            "a permit asked for more than it holds"
        );
        let messages = messages.min(self.messages);
        let bytes = bytes.min(self.bytes);
        self.messages -= messages;
        self.bytes -= bytes;
        (messages, bytes)
    }

    /// Moves `messages` and `bytes` (at most what it holds) into a permit of their own.
    pub(crate) fn split(&mut self, messages: usize, bytes: usize) -> Self {
        let (messages, bytes) = self.take(messages, bytes);
        Self {
            flow: self.flow.clone(),
            messages,
            bytes,
        }
    }

    /// Moves `messages` and `bytes` (at most what it holds) into `to`, a permit of the same
    /// partition's part; no new permit is made, so nothing is counted or cloned. (Into a
    /// permit of another part they are given back instead.)
    pub(crate) fn move_to(&mut self, to: &mut Self, messages: usize, bytes: usize) {
        if self.same_flow(to) {
            let (messages, bytes) = self.take(messages, bytes);
            to.messages += messages;
            to.bytes += bytes;
        } else {
            drop(self.split(messages, bytes));
        }
    }

    /// Counts `bytes` more against the same part, held by this permit.
    pub(crate) fn grow(&mut self, bytes: usize) {
        if let Some(flow) = &self.flow {
            flow.add(0, bytes);
            self.bytes += bytes;
        }
    }

    /// Takes what `other` holds into this one when both are of the same partition's part;
    /// otherwise `other` gives its credit back now.
    pub(crate) fn absorb(&mut self, mut other: Self) {
        if self.same_flow(&other) {
            self.messages += std::mem::take(&mut other.messages);
            self.bytes += std::mem::take(&mut other.bytes);
        }
    }

    /// Whether both hold against the same partition's part (or both against none).
    pub(crate) fn same_flow(&self, other: &Self) -> bool {
        match (&self.flow, &other.flow) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(flow) = &self.flow
            && (self.messages > 0 || self.bytes > 0)
        {
            flow.release(self.messages, self.bytes);
        }
    }
}

/// Permits gathered over one turn of the coordinator's loop and given back together: one
/// release per partition per turn, not per message.
#[derive(Debug, Default)]
pub(crate) struct Returns {
    /// By the address of their partition's [`Flow`].
    by_flow: FxHashMap<usize, Permit>,
}

impl Returns {
    /// Keeps `messages` and `bytes` of `from` until [`Returns::flush`].
    pub(crate) fn take(&mut self, from: &mut Permit, messages: usize, bytes: usize) {
        let Some(flow) = &from.flow else {
            return;
        };
        if messages == 0 && bytes == 0 {
            return;
        }
        match self.by_flow.get_mut(&(Arc::as_ptr(flow) as usize)) {
            Some(gathered) => from.move_to(gathered, messages, bytes),
            None => self.add(from.split(messages, bytes)),
        }
    }

    /// Keeps `permit` until [`Returns::flush`].
    pub(crate) fn add(&mut self, permit: Permit) {
        let Some(flow) = &permit.flow else {
            return;
        };
        if permit.messages == 0 && permit.bytes == 0 {
            return;
        }
        let key = Arc::as_ptr(flow) as usize;
        match self.by_flow.get_mut(&key) {
            Some(gathered) => gathered.absorb(permit),
            None => {
                self.by_flow.insert(key, permit);
            }
        }
    }

    /// Gives back everything gathered.
    pub(crate) fn flush(&mut self) {
        self.by_flow.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Take from `flow` until its allowance runs out, in runs of messages of `bytes` each, as
    /// the poll thread does; the runs' permits, gathered in one.
    fn fill(credit: &Credit, flow: &Arc<Flow>, bytes: usize) -> Permit {
        let mut held = Permit::empty(Some(flow));
        loop {
            let n = credit.allowance(flow);
            if n == 0 {
                return held;
            }
            let room = credit.byte_room(flow, credit.partitions());
            let mut run = (0, 0);
            while run.0 < n && run.1 < room {
                run = (run.0 + 1, run.1 + bytes);
            }
            held.absorb(credit.took(flow, run.0, run.1));
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
            stuck.held().0,
            500,
            "the common half, which is more than its share (125)"
        );
        let others: Vec<_> = flows[1..].iter().map(|f| fill(&credit, f, 1)).collect();
        for held in &others {
            assert_eq!(held.held().0, 125, "each other partition keeps its share");
        }
        assert_eq!(credit.messages(), 875, "within the bound");
        drop((stuck, others));
        assert_eq!(
            credit.messages(),
            0,
            "dropped permits give their credit back"
        );
    }

    /// Credit comes back as permits are split off and dropped, and a partition that leaves
    /// gives back what its permits held as they go, however late.
    #[test]
    fn dropped_permits_give_credit_back() {
        let credit = Credit::new(100, usize::MAX);
        let a = credit.join();
        let b = credit.join();
        let mut held = fill(&credit, &a, 1);
        assert_eq!(credit.allowance(&a), 0);
        assert_eq!(
            a.messages(),
            50,
            "the common half (more than its share, 25)"
        );
        drop(held.split(10, 10));
        assert_eq!(credit.allowance(&a), 10);
        let of_b = fill(&credit, &b, 1);
        let late = {
            let mut of_b = of_b;
            of_b.split(1, 1)
        };
        credit.leave();
        assert_eq!(
            b.messages(),
            1,
            "a permit that outlives the partition still holds"
        );
        drop(late);
        assert_eq!(b.messages(), 0);
        assert_eq!(credit.messages(), a.messages());
    }

    /// What calls of a partition let go still hold counts until they end: a partition that
    /// joins meanwhile takes only what is left of the bound in bytes.
    #[test]
    fn a_joining_partition_waits_for_bytes_still_held() {
        let credit = Credit::new(100, 1000);
        let gone = credit.join();
        let held = credit.took(&gone, 1, 900);
        credit.leave();
        let joined = credit.join();
        assert_eq!(credit.byte_room(&joined, credit.partitions()), 100);
        let more = credit.took(&joined, 1, 100);
        assert_eq!(credit.allowance(&joined), 0, "the bound is spent");
        drop(held);
        assert!(credit.allowance(&joined) > 0, "the stuck call ended");
        drop(more);
    }

    /// Returns gathers permits of several partitions and gives each back once, at the flush.
    #[test]
    fn returns_give_back_at_the_flush() {
        let credit = Credit::new(100, usize::MAX);
        let (a, b) = (credit.join(), credit.join());
        let mut returns = Returns::default();
        for flow in [&a, &b, &a] {
            returns.add(credit.took(flow, 2, 20));
        }
        returns.add(Permit::empty(None));
        assert_eq!((credit.messages(), credit.bytes()), (6, 60));
        returns.flush();
        assert_eq!((credit.messages(), credit.bytes()), (0, 0));
    }

    /// Bytes bound the partition too: large messages stop the taking before the count does,
    /// overshooting by at most one message.
    #[test]
    fn bytes_bound_a_partition_of_large_messages() {
        let credit = Credit::new(10_000, 1 << 20);
        let flow = credit.join();
        let mut held = fill(&credit, &flow, 100 << 10);
        // Alone, the partition has the whole 1 MiB: 100 KiB messages, one over.
        assert_eq!(held.held().0, 11);
        drop(held.split(0, 5 * (100 << 10)));
        assert!(credit.allowance(&flow) > 0);
    }
}
