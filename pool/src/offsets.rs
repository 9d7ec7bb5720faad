//! Per-partition offset tracking: which offset is safe to commit.
//!
//! **Guarantee.** For one partition, [`PartitionOffsets::committable`] is always `1 + the highest
//! offset such that it and every offset received before it (since tracking started) is done`.
//! Committing that value can cause reprocessing after a crash, never loss.
//!
//! **Precondition.** Every message handed to the pool is [`track`](PartitionOffsets::track)ed
//! when it is received, in offset order, and [`mark_done`](PartitionOffsets::mark_done) is
//! called only once it is processed or its permanent failure has been handled (dead-lettered or
//! skipped by policy). A fresh tracker is used for each assignment of the partition, and from
//! each rewind (see [`PartitionOffsets::rewinds`]).
//!
//! The contiguity rule is over offsets the consumer actually *received*, not over arithmetic
//! `+1`: a log may have holes (compaction, transaction markers), and a hole must not block the
//! commit forever. So the tracker keeps the received-but-not-yet-committable offsets, each with a
//! done flag; the done prefix is dropped as soon as it forms, which frees its memory.
//!
//! Offsets arrive in increasing order, so the window is a ring buffer in offset order, not a
//! tree: tracking appends, and marking done finds the offset at its distance from the first
//! (no holes in the log) or by binary search (holes), with no allocation per offset.

use std::collections::VecDeque;

/// The offset state of one assigned partition.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// Offsets received and not yet part of the committable prefix, in increasing order, with
    /// their done flag. The first entry, if any, is never done: a done first entry is dropped
    /// at once.
    window: VecDeque<(i64, bool)>,
    /// The next offset to commit (1 + the last offset of the done prefix), once anything is done.
    next: Option<i64>,
    /// The highest offset received, so duplicates and stale re-deliveries are refused.
    highest: Option<i64>,
    /// How many done offsets are held above the first not-done one (the "gap" they wait on).
    held: usize,
}

impl PartitionOffsets {
    /// An empty tracker: nothing received, nothing to commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was received. Returns `false`, and records nothing, if it is not
    /// above every offset received so far (a duplicate or stale delivery that must not be
    /// processed twice under the same tracker).
    pub fn track(&mut self, offset: i64) -> bool {
        if self.highest.is_some_and(|h| offset <= h) {
            return false;
        }
        self.highest = Some(offset);
        self.window.push_back((offset, false));
        true
    }

    /// Whether `offset` is at or below one already received: the consumer went back.
    pub fn rewinds(&self, offset: i64) -> bool {
        self.highest.is_some_and(|h| offset <= h)
    }

    /// Records that `offset` is done. Returns `false` if it was not received or is already done.
    pub fn mark_done(&mut self, offset: i64) -> bool {
        match self.find(offset).map(|i| &mut self.window[i].1) {
            Some(done @ false) => *done = true,
            _ => return false,
        }
        self.held += 1;
        self.advance();
        true
    }

    /// Where `offset` is in the window: at its distance from the first offset when the log has
    /// no holes there, else found by binary search.
    fn find(&self, offset: i64) -> Option<usize> {
        let (first, _) = *self.window.front()?;
        let guess = usize::try_from(offset.checked_sub(first)?).ok()?;
        if self.window.get(guess).is_some_and(|&(o, _)| o == offset) {
            return Some(guess);
        }
        self.window.binary_search_by_key(&offset, |&(o, _)| o).ok()
    }

    /// Drops the done prefix, moving `next` past it.
    fn advance(&mut self) {
        while let Some(&(offset, true)) = self.window.front() {
            self.window.pop_front();
            self.held -= 1;
            self.next = Some(offset + 1);
        }
    }

    /// The first offset received and not done yet: what the commit waits on.
    pub fn first_pending(&self) -> Option<i64> {
        self.window.front().map(|&(offset, _)| offset)
    }

    /// The offset to commit (the next one to consume), or `None` while nothing is done.
    pub fn committable(&self) -> Option<i64> {
        self.next
    }

    /// Done offsets held in memory because an earlier received offset is not done yet.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Received offsets not done yet.
    pub fn pending(&self) -> usize {
        self.window.len() - self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A slow first message holds the commit; once it is done the whole prefix commits.
    #[test]
    fn commit_waits_for_the_gap_then_jumps_over_the_done_ones() {
        let mut t = PartitionOffsets::new();
        for o in 10..15 {
            assert!(t.track(o));
        }
        for o in 11..15 {
            t.mark_done(o);
        }
        assert_eq!(t.committable(), None);
        assert_eq!(t.held(), 4);
        t.mark_done(10);
        assert_eq!(t.committable(), Some(15));
        assert_eq!(t.held(), 0);
    }

    /// A hole in the log (compaction, transaction markers) does not block the commit.
    #[test]
    fn holes_in_the_log_do_not_block_commits() {
        let mut t = PartitionOffsets::new();
        t.track(5);
        t.track(9);
        t.mark_done(9);
        t.mark_done(5);
        assert_eq!(t.committable(), Some(10));
    }

    /// A re-delivered offset is refused so it is not tracked twice.
    #[test]
    fn duplicates_are_refused() {
        let mut t = PartitionOffsets::new();
        assert!(t.track(3));
        assert!(!t.track(3));
        assert!(!t.track(2));
        assert!(t.mark_done(3));
        assert!(!t.mark_done(3), "done twice");
        assert!(!t.mark_done(4), "never received");
    }

    /// Offsets with holes, and an order in which to complete them.
    fn received_and_order() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        prop::collection::vec(1i64..4, 1..60).prop_flat_map(|steps| {
            let offsets: Vec<i64> = steps
                .iter()
                .scan(100i64, |acc, s| {
                    *acc += s;
                    Some(*acc)
                })
                .collect();
            let order: Vec<usize> = (0..offsets.len()).collect();
            (Just(offsets), Just(order).prop_shuffle())
        })
    }

    proptest! {
        /// For any completion order, the committable offset is exactly 1 + the end of the
        /// contiguous done prefix of received offsets, never decreases, and only the offsets
        /// above the prefix are held in memory.
        #[test]
        fn committable_is_exactly_the_contiguous_done_prefix((offsets, order) in received_and_order()) {
            let mut t = PartitionOffsets::new();
            for &o in &offsets {
                prop_assert!(t.track(o));
            }
            let mut done = vec![false; offsets.len()];
            let mut last = None;
            for (step, &i) in order.iter().enumerate() {
                prop_assert!(t.mark_done(offsets[i]));
                done[i] = true;
                let prefix = done.iter().take_while(|d| **d).count();
                let expected = prefix.checked_sub(1).map(|p| offsets[p] + 1);
                prop_assert_eq!(t.committable(), expected);
                prop_assert!(t.committable() >= last, "went backwards");
                last = t.committable();
                prop_assert_eq!(t.held() + t.pending(), offsets.len() - prefix, "memory not freed");
                prop_assert_eq!(t.pending(), offsets.len() - step - 1);
            }
            prop_assert_eq!(t.committable(), offsets.last().map(|o| o + 1));
            prop_assert_eq!(t.held(), 0);
        }
    }
}
