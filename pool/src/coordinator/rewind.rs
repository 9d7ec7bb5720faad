//! A partition going back: the consumer went back within the assignment, or a transaction
//! aborted. It starts a new epoch, sought back to what it still owes.

use super::*;

impl<W: Work> Coordinator<W> {
    /// The poll thread sought `tp` back: what arrives now was fetched after the seek.
    pub(super) fn on_rewound(&mut self, tp: &Tp, offset: i64) {
        if let Some(p) = self.partitions.get_mut(tp) {
            tracing::debug!(topic = %tp.0, partition = tp.1, offset, "sought back");
            p.rewinding = false;
        }
    }

    /// The consumer went back within an assignment (a seek, an offset reset after the log was
    /// truncated): offsets at or below ones already seen arrive again, and may be other records
    /// than before. They are processed, not refused. What was received below `offset` and is
    /// not done yet is owed, and will not be fetched again: if there is any, the partition is
    /// sought back to the first of it (what arrives until then is dropped), so nothing is
    /// committed past it; otherwise the partition starts a new epoch from `offset`.
    pub(super) fn went_back(&mut self, tp: &Tp, offset: i64) {
        let owed = self
            .partitions
            .get(tp)
            .and_then(|p| p.offsets.first_pending())
            .filter(|&first| first < offset);
        match owed {
            Some(first) => {
                tracing::warn!(
                    topic = %tp.0, partition = tp.1, offset, owed = first,
                    "the consumer went back past messages not done yet; fetching again from the first of them"
                );
                self.seek_back(tp, first);
            }
            None => {
                tracing::warn!(
                    topic = %tp.0, partition = tp.1, offset,
                    "the consumer went back within the assignment; processing the partition again from there"
                );
                self.rewind(tp);
            }
        }
    }

    /// Starts `tp` over from `target`: a new epoch there, and a seek the poll thread serves;
    /// until it has ([`Event::Rewound`]), what arrives was fetched before and is dropped.
    pub(super) fn seek_back(&mut self, tp: &Tp, target: i64) {
        self.rewind(tp);
        if let Some(p) = self.partitions.get_mut(tp) {
            p.rewinding = true;
        }
        self.seeks.request(tp.clone(), target);
        self.credit.wake();
    }

    /// Starts a new epoch of `tp` from the next offset it receives — a fresh tracker, its queued jobs and retries
    /// dropped, its calls still running left to end before anything of the new epoch starts —
    /// whose commits follow the new epoch, even below what was committed.
    pub(super) fn rewind(&mut self, tp: &Tp) {
        // Dropped, the queued jobs give their bytes back.
        drop(self.dispatch.drop_partition(tp));
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let retries = self.retries.token.child_token();
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        self.retries.waiting -= p.retrying;
        let zombies = p.restart(epoch, retries);
        if zombies > 0 {
            *self.zombies.entry(tp.clone()).or_default() += zombies;
        }
    }

    /// An aborted transaction took `tp`'s records with it: the partition starts over from its
    /// last committed offset (see `crate::transaction`).
    pub(super) fn rewind_aborted(&mut self, tp: &Tp) {
        let Some(p) = self.partitions.get(tp) else {
            return;
        };
        let Some(target) = p.ledger.confirmed().or(p.start) else {
            return;
        };
        if p.rewinding {
            return;
        }
        if p.revoking {
            // Let go from its last commit: nothing it did since is committed by this member.
            tracing::warn!(
                topic = %tp.0, partition = tp.1, offset = target,
                "transaction aborted during a revoke; the next owner starts from the last committed offset"
            );
            if let Some(p) = self.partitions.get_mut(tp) {
                p.ledger.abort();
            }
            return;
        }
        tracing::warn!(
            topic = %tp.0, partition = tp.1, offset = target,
            "transaction aborted; processing the partition again from its last committed offset"
        );
        self.seek_back(tp, target);
    }
}
