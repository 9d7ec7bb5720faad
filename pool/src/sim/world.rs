//! The simulated world around the pool: the input log, the group's committed offsets and
//! committed transactions, what the handlers did, and the invariants over all of it.
//!
//! Records are known by an id that no other record has: what was done is known by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::Ordering;
use crate::kafka::OutRecord;

/// The one input topic.
pub(super) const TOPIC: &str = "sim";

/// One record of the input log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    pub(super) offset: i64,
    pub(super) id: u64,
    pub(super) key: Option<u8>,
    /// Payload bytes (the id comes first).
    pub(super) size: usize,
}

/// One partition of the input log.
#[derive(Debug, Default)]
pub(super) struct Log {
    records: Vec<Record>,
    /// The offset the next record gets (offsets may skip: compaction, transaction markers).
    next: i64,
}

impl Log {
    /// The records at or above `offset`, in order.
    pub(super) fn from(&self, offset: i64) -> &[Record] {
        let start = self.records.partition_point(|r| r.offset < offset);
        &self.records[start..]
    }

    /// The records below `offset`.
    pub(super) fn below(&self, offset: i64) -> &[Record] {
        let end = self.records.partition_point(|r| r.offset < offset);
        &self.records[..end]
    }

    /// One past the last record: where a consumer that read everything commits.
    pub(super) fn end(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }
}

/// A lane of the ordering mode: a partition, or a partition and a key.
pub(super) type Lane = (i32, Option<u8>);

/// Everything the simulation knows and checks.
pub(super) struct World {
    pub(super) rng: StdRng,
    pub(super) logs: Vec<Log>,
    next_id: u64,
    /// The group's committed offsets, per partition.
    pub(super) committed: Vec<Option<i64>>,
    /// Per record id: how often it was done (processed, or failed and handled).
    pub(super) processed: HashMap<u64, u32>,
    /// Per input record id: records of committed transactions produced for it.
    pub(super) outputs: HashMap<u64, u32>,
    /// Lanes with a call running now: the offset running there, and the call's token.
    pub(super) running: HashMap<Lane, (i64, u64)>,
    /// The next call's token.
    pub(super) next_call: u64,
    pub(super) ordering: Ordering,
    /// Per partition: bumped whenever this member lets it go (revoke, crash, end of run). A
    /// result from an older generation belongs to a message the next owner runs again.
    pub(super) generation: Vec<u64>,
    /// Dead letters refused, by record id: whether the member still owned the partition then
    /// (a halt for it is justified).
    pub(super) refused: HashMap<u64, bool>,
    /// Off in the final phase: every call succeeds at once.
    pub(super) faults: bool,
    /// Bumped to end every call that was told to never return.
    pub(super) released: u64,
    pub(super) release: Arc<tokio::sync::Notify>,
    /// What happened, one line per step, to print with a failure.
    pub(super) trace: Vec<String>,
    pub(super) violations: Vec<String>,
}

/// The world, shared by the driver and the handlers (one thread: the lock is never contended).
pub(super) type Shared = Arc<Mutex<World>>;

pub(super) fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    pub(super) fn new(seed: u64, partitions: usize, ordering: Ordering) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            logs: (0..partitions).map(|_| Log::default()).collect(),
            next_id: 1,
            committed: vec![None; partitions],
            processed: HashMap::new(),
            outputs: HashMap::new(),
            running: HashMap::new(),
            next_call: 0,
            ordering,
            generation: vec![0; partitions],
            refused: HashMap::new(),
            faults: true,
            released: 0,
            release: Arc::default(),
            trace: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Appends `n` records to `partition`, after a hole in the offsets now and then.
    pub(super) fn produce(&mut self, partition: usize, n: usize) {
        for _ in 0..n {
            let hole = if self.rng.random_ratio(1, 10) {
                self.rng.random_range(1..4)
            } else {
                0
            };
            let key = self
                .rng
                .random_ratio(9, 10)
                .then(|| self.rng.random_range(0..4));
            let record = Record {
                offset: self.logs[partition].next + hole,
                id: self.next_id,
                key,
                size: self.rng.random_range(8..100),
            };
            self.next_id += 1;
            let log = &mut self.logs[partition];
            log.next = record.offset + 1;
            log.records.push(record);
        }
    }

    pub(super) fn violation(&mut self, what: String) {
        self.trace.push(format!("VIOLATION: {what}"));
        self.violations.push(what);
    }

    /// The lane `record` runs in under the ordering mode; `None` when unordered.
    pub(super) fn lane(&self, partition: i32, key: Option<u8>) -> Option<Lane> {
        match self.ordering {
            Ordering::Unordered => None,
            Ordering::Partition => Some((partition, None)),
            Ordering::Key => Some((partition, key)),
        }
    }

    /// The record of `lane` just before `offset` in its partition's log, if any.
    pub(super) fn before_in_lane(&self, lane: Lane, offset: i64) -> Option<Record> {
        let (partition, key) = lane;
        let log = &self.logs[usize::try_from(partition).ok()?];
        let in_lane = |r: &&Record| self.ordering == Ordering::Partition || r.key == key;
        log.below(offset).iter().rev().find(in_lane).copied()
    }

    /// The first record of `partition` below `next` whose id `seen` does not hold.
    fn first_missing(
        &self,
        partition: usize,
        next: i64,
        seen: &HashMap<u64, u32>,
    ) -> Option<Record> {
        self.logs[partition]
            .below(next)
            .iter()
            .find(|r| !seen.contains_key(&r.id))
            .copied()
    }

    /// A commit of `partition` at `next` was sent: every record below it must be done.
    pub(super) fn check_commit_sent(&mut self, partition: usize, next: i64) {
        if let Some(r) = self.first_missing(partition, next, &self.processed) {
            self.violation(format!(
                "commit of partition {partition} at {next} passes offset {} (record {}), never done",
                r.offset, r.id
            ));
        }
    }

    /// A commit landed.
    pub(super) fn committed(&mut self, partition: usize, next: i64) {
        self.committed[partition] = Some(next);
    }

    /// A transaction committed: its records count for their inputs, once each, and every
    /// input below the offsets it commits has its record.
    pub(super) fn transaction_committed(
        &mut self,
        offsets: &[(usize, i64)],
        records: &[OutRecord],
    ) {
        for record in records {
            let id = input_of(record);
            let seen = self.outputs.entry(id).or_insert(0);
            *seen += 1;
            if *seen > 1 {
                let seen = *seen;
                self.violation(format!(
                    "record {id}'s output committed {seen} times (exactly-once)"
                ));
            }
        }
        for &(partition, next) in offsets {
            self.committed(partition, next);
            if let Some(r) = self.first_missing(partition, next, &self.outputs) {
                self.violation(format!(
                    "transaction commits partition {partition} at {next} without the output of offset {} (record {})",
                    r.offset, r.id
                ));
            }
        }
    }
}

/// The output (or dead letter) a handler makes for input record `id`.
pub(super) fn output_for(id: u64, topic: &str) -> OutRecord {
    OutRecord {
        topic: topic.to_owned(),
        key: None,
        value: Some(id.to_le_bytes().to_vec()),
        headers: Vec::new(),
    }
}

/// The input record an output was made for.
fn input_of(record: &OutRecord) -> u64 {
    let bytes = record.value.as_deref().unwrap_or_default();
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

/// The record id a message's payload carries.
pub(super) fn id_of(payload: Option<&[u8]>) -> u64 {
    let bytes = payload.and_then(|p| p.get(..8)).unwrap_or_default();
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}
