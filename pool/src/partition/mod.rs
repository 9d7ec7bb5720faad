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
//!
//! Its part of the bound is held by permits (`crate::flow`): the places of the messages its
//! tracker holds, the bytes of its held outputs, and each job's bytes. A new epoch or a revoke
//! forgets them, and so gives them back; a zombie's job gives its bytes back when it ends.

mod ledger;
mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use self::ledger::{Ledger, Then, Trigger};
pub(crate) use self::table::Partitions;
use crate::dispatch::Job;
use crate::flow::{Flow, Permit, Returns};
use crate::kafka::{Message, OutRecord};
use crate::offsets::PartitionOffsets;

/// One assigned partition, for as long as this member owns it.
pub(crate) struct Partition {
    pub(crate) offsets: PartitionOffsets,
    /// Its part of the pool's bound; `None` for a partition the poll thread does not meter
    /// (its records came through the main queue).
    pub(crate) flow: Option<Arc<Flow>>,
    /// The places in the bound of the messages its tracker holds (received, and not yet passed
    /// by the done prefix): given back as the prefix passes them, and all at once when the
    /// tracker is forgotten (a new epoch, a revoke).
    places: Permit,
    /// Tells this assignment's jobs (this side of a rewind) from an earlier one's.
    pub(crate) epoch: u64,
    /// Where it is in [`Partitions`]; its jobs carry it.
    slot: usize,
    /// Jobs of this partition at a worker now; a revoke waits for them.
    pub(crate) in_flight: usize,
    /// Jobs of this partition waiting for their retry delay (each holds its own bytes).
    pub(crate) retrying: usize,
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
    output_bytes: Permit,
    /// The first offset this epoch received: where an aborted transaction goes back to when
    /// nothing was committed in it yet.
    pub(crate) start: Option<i64>,
    /// Sought back, until the poll thread says it has: what arrives was fetched before the
    /// seek and is dropped.
    pub(crate) rewinding: bool,
}

impl Partition {
    pub(crate) fn new(flow: Option<Arc<Flow>>, epoch: u64, retries: CancellationToken) -> Self {
        Self {
            offsets: PartitionOffsets::new(),
            places: Permit::empty(flow.as_ref()),
            output_bytes: Permit::empty(flow.as_ref()),
            flow,
            epoch,
            slot: 0,
            in_flight: 0,
            retrying: 0,
            ledger: Ledger::default(),
            revoking: false,
            parked: Vec::new(),
            retries,
            outputs: BTreeMap::new(),
            start: None,
            rewinding: false,
        }
    }

    /// Tracks a received `message` as a job of this epoch, taking its place and its bytes out
    /// of `run` (the permit of the run it came in); `None` if its offset is not above the last
    /// one tracked (what it holds of `run` is then given back with the rest of the run).
    pub(crate) fn receive(&mut self, message: Arc<Message>, run: &mut Permit) -> Option<Job> {
        if !self.offsets.track(message.offset) {
            return None;
        }
        run.move_to(&mut self.places, 1, 0);
        self.start.get_or_insert(message.offset);
        let bytes = run.split(0, message.weight());
        Some(Job::new(message, self.epoch, self.slot, bytes))
    }

    /// Starts epoch `epoch` from the next offset received: its tracker (and the places it
    /// held), held outputs, parked jobs and retries (cancelled; `retries` replaces their token)
    /// are forgotten, their credit given back as they drop. Returns how many calls still
    /// running become zombies (each gives its bytes back as it ends).
    pub(crate) fn restart(&mut self, epoch: u64, retries: CancellationToken) -> usize {
        self.offsets = PartitionOffsets::new();
        self.places = Permit::empty(self.flow.as_ref());
        self.outputs.clear();
        self.output_bytes = Permit::empty(self.flow.as_ref());
        self.parked.clear();
        self.retries.cancel();
        self.retries = retries;
        self.retrying = 0;
        self.start = None;
        self.epoch = epoch;
        self.ledger.restart();
        std::mem::take(&mut self.in_flight)
    }

    /// Marks `job` done: its bytes come back at once, its place in the bound once the done
    /// prefix passes it: both go to `returns`.
    pub(crate) fn done(&mut self, job: Job, returns: &mut Returns) {
        let before = self.offsets.held() + self.offsets.pending();
        self.offsets.mark_done(job.message.offset);
        let passed = before - (self.offsets.held() + self.offsets.pending());
        returns.take(&mut self.places, passed, 0);
        returns.add(job.bytes);
    }

    /// Counts `bytes` more against this partition's part of the bound, until the permit is
    /// dropped (nothing for an unmetered partition).
    pub(crate) fn hold(&self, bytes: usize) -> Permit {
        match &self.flow {
            Some(flow) => Permit::hold(flow, 0, bytes),
            None => Permit::empty(None),
        }
    }

    /// Holds a done message's records, and their bytes against the bound, until the commit
    /// that takes its offset.
    pub(crate) fn hold_outputs(&mut self, offset: i64, records: Vec<OutRecord>) {
        self.output_bytes
            .grow(records.iter().map(OutRecord::size).sum());
        self.outputs.insert(offset, records);
    }

    /// The held records of the messages below `next`, taken out, with their bytes' permit.
    pub(crate) fn take_outputs(&mut self, next: i64) -> (Vec<OutRecord>, Permit) {
        let above = self.outputs.split_off(&next);
        let below = std::mem::replace(&mut self.outputs, above);
        let bytes: usize = below.values().flatten().map(OutRecord::size).sum();
        let release = self.output_bytes.split(0, bytes);
        let records = below.into_values().flatten().collect();
        (records, release)
    }
}
