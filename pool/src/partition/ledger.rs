//! A partition's commit ledger: what was sent, what the broker confirmed, and the
//! transactions in doubt. It never lets a commit pass an unresolved or aborted transaction, and
//! an answer of an earlier epoch never counts for the current one.

use crate::commit::CommitError;

/// Why a commit is made, which decides what is worth sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// `commit_batch_size` finished: send what advanced since the last send.
    Batch,
    /// `commit_interval` elapsed: also resend what the broker has not confirmed.
    Interval,
}

/// What an answer asks of the partition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing more.
    Nothing,
    /// Its transaction aborted: start over from the last confirmed offset (or, when nothing
    /// was confirmed in this epoch, from its first offset).
    StartOver,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The last offset sent in a commit, so the same offset is not sent again.
    sent: Option<i64>,
    /// The last offset the broker confirmed for this epoch. Per epoch, not the pool's
    /// all-time highest: after a rewind below it, what this member commits must still go out.
    confirmed: Option<i64>,
    /// Transactions sent and not answered that carry this partition's records: until they
    /// are, nothing more is committed for it (one that aborts takes records the next would
    /// pass).
    in_doubt: usize,
    /// A transaction carrying its records aborted while the partition was being let go: it is
    /// not committed again by this member, whose successor starts from the last commit.
    aborted: bool,
}

impl Ledger {
    /// What to commit of `committable` for this trigger: `None` when nothing advanced, or a
    /// transaction carrying the partition is unanswered or aborted.
    pub(crate) fn due(&self, committable: Option<i64>, trigger: Trigger) -> Option<i64> {
        if self.aborted || self.in_doubt > 0 {
            return None;
        }
        let next = committable?;
        let already = match trigger {
            Trigger::Batch => self.sent,
            Trigger::Interval => self.confirmed,
        };
        (Some(next) > already).then_some(next)
    }

    /// `next` was sent, in a transaction when `transactional`.
    pub(crate) fn sent(&mut self, next: i64, transactional: bool) {
        self.sent = Some(next);
        self.in_doubt += usize::from(transactional);
    }

    /// The answer to a commit of `next`; `current` when it was sent in this epoch.
    pub(crate) fn answered(
        &mut self,
        next: i64,
        transactional: bool,
        current: bool,
        result: &Result<(), CommitError>,
    ) -> Then {
        if transactional {
            self.in_doubt = self.in_doubt.saturating_sub(1);
        }
        if !current {
            // Sent before a rewind: it says nothing of this epoch, whose own commits follow.
            return Then::Nothing;
        }
        match result {
            Ok(()) => self.confirmed = self.confirmed.max(Some(next)),
            Err(CommitError::Refused(_)) => self.sent = self.confirmed,
            Err(CommitError::Aborted(_)) => return Then::StartOver,
            Err(CommitError::Fatal(_) | CommitError::InDoubt(_)) => {}
        }
        Then::Nothing
    }

    /// A new epoch: nothing of it sent or confirmed yet. Transactions in doubt stay in doubt.
    pub(crate) fn restart(&mut self) {
        self.sent = None;
        self.confirmed = None;
    }

    /// A transaction carrying its records aborted while the partition was being let go.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// The last offset the broker confirmed in this epoch.
    pub(crate) fn confirmed(&self) -> Option<i64> {
        self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    fn aborted() -> Result<(), CommitError> {
        Err(CommitError::Aborted(KafkaError::Global(
            RDKafkaErrorCode::RequestTimedOut,
        )))
    }

    /// Nothing is due while a transaction carrying the partition is unanswered, nor ever again
    /// once one aborted as it was let go.
    #[test]
    fn nothing_passes_a_transaction_in_doubt_or_aborted() {
        let mut l = Ledger::default();
        assert_eq!(l.due(Some(10), Trigger::Batch), Some(10));
        l.sent(10, true);
        assert_eq!(l.due(Some(20), Trigger::Batch), None, "in doubt");
        assert_eq!(l.answered(10, true, true, &aborted()), Then::StartOver);
        assert_eq!(l.due(Some(20), Trigger::Batch), Some(20), "answered");
        l.abort();
        assert_eq!(l.due(Some(30), Trigger::Interval), None, "aborted");
    }

    /// An answer sent before a rewind confirms nothing of the new epoch, and an abort of it
    /// asks nothing (the partition already started over).
    #[test]
    fn an_answer_of_an_earlier_epoch_counts_for_nothing() {
        let mut l = Ledger::default();
        l.sent(500, false);
        l.restart();
        assert_eq!(l.answered(500, false, false, &Ok(())), Then::Nothing);
        assert_eq!(l.confirmed(), None);
        assert_eq!(l.due(Some(350), Trigger::Interval), Some(350));
        l.sent(600, true);
        assert_eq!(l.answered(600, true, false, &aborted()), Then::Nothing);
        assert_eq!(
            l.due(Some(700), Trigger::Batch),
            Some(700),
            "no longer in doubt"
        );
    }

    /// A batch commit sends only what advanced since the last send; an interval one resends
    /// what the broker has not confirmed; a refused one is sent again.
    #[test]
    fn batch_and_interval_triggers() {
        let mut l = Ledger::default();
        l.sent(10, false);
        assert_eq!(l.due(Some(10), Trigger::Batch), None);
        assert_eq!(l.due(Some(10), Trigger::Interval), Some(10));
        let refused = Err(CommitError::Refused(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::RebalanceInProgress,
        )));
        l.answered(10, false, true, &refused);
        assert_eq!(l.due(Some(10), Trigger::Batch), Some(10), "sent again");
        l.sent(10, false);
        l.answered(10, false, true, &Ok(()));
        assert_eq!(l.due(Some(10), Trigger::Interval), None);
    }
}
