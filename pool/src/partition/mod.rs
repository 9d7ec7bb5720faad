//! One assigned partition's life, while this member owns it: its offsets, its part of the
//! bound, its epoch, its commit ledger, the records its done messages hold for a transaction,
//! its parked jobs and its retries.
//!
//! ```text
//!            assign
//!              │
//!              ▼         consumer went back past owed offsets,
//!   ┌──────▶ assigned ── or a transaction aborted ──▶ rewinding
//!   │          │                                        │
//!   │          │ consumer went back (nothing owed)      │ the poll thread sought back
//!   │          ▼                                        │ (Event::Rewound)
//!   └──── new epoch ◀───────────────────────────────────┘
//!              │
//!              │ revoke
//!              ▼          a transaction aborted
//!          revoking ───────────────────────────────▶ aborted: never committed again
//!              │
//!              │ drained (or its deadline), final commit
//!              ▼
//!           let go ── calls still running are zombies: the partition's next
//!                     assignment here starts nothing until they end
//! ```
//!
//! An epoch tells a job of this assignment (and of this side of a rewind) from an earlier
//! one's: a job of an earlier epoch never touches the current offsets, outputs or ledger.

mod ledger;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use self::ledger::{Ledger, Then, Trigger};
use crate::dispatch::Job;
use crate::flow::{Credit, Flow};
use crate::kafka::OutRecord;
use crate::offsets::PartitionOffsets;

/// One assigned partition, for as long as this member owns it.
pub(crate) struct Partition {
    pub(crate) offsets: PartitionOffsets,
    /// Its part of the pool's bound, given back as messages leave; `None` for a partition the
    /// poll thread does not meter (its records came through the main queue).
    pub(crate) flow: Option<Arc<Flow>>,
    /// Tells this assignment's jobs (this side of a rewind) from an earlier one's.
    pub(crate) epoch: u64,
    /// Jobs of this partition at a worker now; a revoke waits for them.
    pub(crate) in_flight: usize,
    /// Jobs of this partition waiting for their retry delay, and their bytes (given back if
    /// a rewind cancels them).
    pub(crate) retrying: usize,
    retrying_bytes: usize,
    pub(crate) ledger: Ledger,
    /// Set on revoke: nothing more is dispatched or retried for it.
    pub(crate) revoking: bool,
    /// Jobs held back, in offset order, while jobs of an earlier epoch of this partition still
    /// run: the same offsets or keys must never run twice at once.
    pub(crate) parked: Vec<Job>,
    /// Cancels this partition's retry timers on revoke and rewind.
    pub(crate) retries: CancellationToken,
    /// With transactions: the records of done messages, by offset, until a commit takes them
    /// (see `crate::transaction`), and their bytes, held against the bound.
    outputs: BTreeMap<i64, Vec<OutRecord>>,
    output_bytes: usize,
    /// The first offset this epoch received: where an aborted transaction goes back to when
    /// nothing was committed in it yet.
    pub(crate) start: Option<i64>,
    /// Sought back, until the poll thread says it has: what arrives was fetched before the
    /// seek and is dropped.
    pub(crate) rewinding: bool,
}

/// What a partition gives back to the pool's bound.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Release {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl Release {
    /// Gives it back to `flow`'s part of `credit` (nothing for an unmetered partition).
    pub(crate) fn to(self, credit: &Credit, flow: Option<&Flow>) {
        if let Some(flow) = flow {
            credit.release_bytes(flow, self.bytes);
            credit.release_messages(flow, self.messages);
        }
    }
}

impl Partition {
    pub(crate) fn new(flow: Option<Arc<Flow>>, epoch: u64, retries: CancellationToken) -> Self {
        Self {
            offsets: PartitionOffsets::new(),
            flow,
            epoch,
            in_flight: 0,
            retrying: 0,
            retrying_bytes: 0,
            ledger: Ledger::default(),
            revoking: false,
            parked: Vec::new(),
            retries,
            outputs: BTreeMap::new(),
            output_bytes: 0,
            start: None,
            rewinding: false,
        }
    }

    /// Whether `job` belongs to this epoch of the partition.
    pub(crate) fn owns(&self, job: &Job) -> bool {
        job.epoch == self.epoch
    }

    /// Starts epoch `epoch` from the next offset received: its tracker, held outputs, parked
    /// jobs and retries (cancelled; `retries` replaces their token) are forgotten, with the
    /// queued jobs `dropped` from the dispatch. Returns what they held of the bound, and how
    /// many calls still running become zombies (their bytes are given back as they end).
    pub(crate) fn restart(
        &mut self,
        epoch: u64,
        retries: CancellationToken,
        dropped: &[Job],
    ) -> (Release, usize) {
        let job_bytes: usize = dropped
            .iter()
            .chain(&self.parked)
            .map(|job| job.message.weight())
            .sum();
        let release = Release {
            messages: self.offsets.held() + self.offsets.pending(),
            bytes: job_bytes + self.output_bytes + self.retrying_bytes,
        };
        self.offsets = PartitionOffsets::new();
        self.outputs.clear();
        self.output_bytes = 0;
        self.parked.clear();
        self.retries.cancel();
        self.retries = retries;
        self.retrying = 0;
        self.retrying_bytes = 0;
        self.start = None;
        self.epoch = epoch;
        self.ledger.restart();
        let zombies = std::mem::take(&mut self.in_flight);
        (release, zombies)
    }

    /// A job of this epoch waits for its retry delay.
    pub(crate) fn retry_scheduled(&mut self, job: &Job) {
        self.retrying += 1;
        self.retrying_bytes += job.message.weight();
    }

    /// A job's retry delay is over: it is queued again.
    pub(crate) fn retry_due(&mut self, job: &Job) {
        self.retrying -= 1;
        self.retrying_bytes -= job.message.weight();
    }

    /// Marks `job` done: its bytes are given back at once, its place in the bound once the
    /// done prefix passes it.
    pub(crate) fn done(&mut self, job: &Job) -> Release {
        let before = self.offsets.held() + self.offsets.pending();
        self.offsets.mark_done(job.message.offset);
        Release {
            messages: before - (self.offsets.held() + self.offsets.pending()),
            bytes: job.message.weight(),
        }
    }

    /// Holds a done message's records until the commit that takes its offset; returns their
    /// bytes, which the caller counts against the bound.
    pub(crate) fn hold_outputs(&mut self, offset: i64, records: Vec<OutRecord>) -> usize {
        let bytes = records.iter().map(OutRecord::size).sum();
        self.outputs.insert(offset, records);
        self.output_bytes += bytes;
        bytes
    }

    /// The held records of the messages below `next`, taken out, with what they held.
    pub(crate) fn take_outputs(&mut self, next: i64) -> (Vec<OutRecord>, Release) {
        let above = self.outputs.split_off(&next);
        let below = std::mem::replace(&mut self.outputs, above);
        let bytes: usize = below.values().flatten().map(OutRecord::size).sum();
        self.output_bytes -= bytes;
        let records = below.into_values().flatten().collect();
        (records, Release { messages: 0, bytes })
    }
}

/// Calls of a partition's earlier epoch still running.
pub(crate) struct Zombies {
    pub(crate) running: usize,
    /// The partition's part of the bound when they are from before a rewind (it still holds
    /// their bytes); `None` after a revoke, which gave the part back whole.
    pub(crate) flow: Option<Arc<Flow>>,
}
