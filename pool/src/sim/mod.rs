//! A deterministic simulation of the pool: the real coordinator, dispatch, offsets, retries,
//! credit and commit ledger, driven by a simulated consumer, broker and handlers under a seeded
//! RNG and tokio's paused clock. After every step the invariants are checked; a failing seed
//! prints the shortest schedule found that fails, and replays exactly.
//!
//! What a schedule holds (drawn per seed): the config (ordering, workers, bound, commit
//! triggers, retries, timeouts, exactly-once or not), records produced with holes in their
//! offsets, rounds of the poll thread within the pool's bound, handler calls that end at once,
//! slowly or never (until released), done, retriable, permanent or settling later, failure
//! hooks that skip, dead-letter (acked later, or refused), or halt; commits answered late,
//! refused, aborted, fenced or left in doubt; assigns and revokes with calls outliving them;
//! operator seeks (offset resets); crashes that restart from the committed offsets; and
//! shutdowns. A final phase turns the faults off and lets everything settle.
//!
//! The invariants:
//! - no commit passes a record that was never done (processed, or failed and handled);
//! - under exactly-once, each input's output is in committed transactions exactly once, and a
//!   transaction never commits an offset without the outputs of every input below it;
//! - ordered modes never run two calls of one lane at once, zombies of a revoke included;
//! - the pool never holds more messages than its bound;
//! - a revoke never holds the poll thread longer than `max.poll.interval.ms` may be;
//! - a halt has a reason the schedule gave it (not a dead letter of a partition let go);
//! - no seek asked for a partition outlives its revoke;
//! - at the end, every record is committed, the credit is back to zero, and no seek waits.
//!
//! `make test` runs a few thousand seeds; `make sim SEEDS=N` runs as many as asked.

mod member;
mod work;
mod world;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use self::member::Member;
use self::world::{Shared, World, lock};
use crate::commit::CommitError;
use crate::{Config, HaltReason, Ordering, PoolError};

/// What a seed draws before its first step.
#[derive(Debug, Clone)]
struct Setup {
    config: Config,
    partitions: usize,
    max_batch: usize,
    transactional: bool,
    /// The smallest `max.poll.interval.ms` the pool accepts with this config.
    max_poll_interval: Duration,
}

impl Setup {
    fn draw(w: &mut World, transactional: bool) -> Self {
        let r = &mut w.rng;
        let ms = |r: &mut rand::rngs::StdRng, lo: u64, hi: u64| {
            Duration::from_millis(r.random_range(lo..hi))
        };
        let shutdown_timeout = ms(r, 100, 2000);
        let config = Config {
            num_workers: r.random_range(1..5),
            job_queue_size: r.random_range(4..64),
            max_buffered_bytes: r.random_range(64..4096),
            commit_interval: ms(r, 10, 500),
            commit_batch_size: if r.random_ratio(1, 4) {
                100_000
            } else {
                r.random_range(1..100)
            },
            max_consecutive_errors: if r.random_ratio(1, 10) { 3 } else { 100_000 },
            max_retries: r.random_range(0..4),
            retry_backoff_base: ms(r, 1, 20),
            retry_backoff_max: ms(r, 20, 500),
            enable_metrics: false,
            ordering: w.ordering,
            shutdown_timeout,
        };
        let max_batch = if transactional {
            r.random_range(2..9)
        } else {
            r.random_range(1..9)
        };
        Self {
            config,
            partitions: w.logs.len(),
            max_batch,
            transactional,
            max_poll_interval: shutdown_timeout + Duration::from_millis(1),
        }
    }
}

/// A failing run: its seed, how many steps, and what went wrong.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) seed: u64,
    pub(crate) steps: usize,
    pub(crate) violations: Vec<String>,
    pub(crate) trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} fails in {} steps:", self.seed, self.steps)?;
        for v in &self.violations {
            writeln!(f, "  - {v}")?;
        }
        writeln!(f, "schedule:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs `seed` for `steps` steps and the final phase; `Err` with what failed.
pub(crate) fn run(seed: u64, steps: usize) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let world = runtime.block_on(async move {
        let mut driver = Driver::new(seed);
        for _ in 0..steps {
            driver.step().await;
        }
        driver.settle().await;
        driver.world
    });
    // The runtime's end drops what still runs (a crashed member's calls): nothing to check.
    drop(runtime);
    let mut w = lock(&world);
    if w.violations.is_empty() {
        return Ok(());
    }
    Err(Failure {
        seed,
        steps,
        violations: std::mem::take(&mut w.violations),
        trace: std::mem::take(&mut w.trace),
    })
}

/// The kind of a violation: its text without its numbers.
pub(crate) fn kind(violation: &str) -> String {
    violation
        .split(|c: char| c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("N")
}

/// The shortest prefix of `seed`'s schedule found that still fails the same way (each prefix
/// runs the final phase after it): prefixes of doubling length, then a bisection below the
/// first that fails.
pub(crate) fn shrink(failure: Failure) -> Failure {
    let first = failure.violations.first().map(|v| kind(v));
    let same = |f: &Failure| f.violations.iter().any(|v| Some(kind(v)) == first);
    let mut shortest = failure;
    let mut ok = 0;
    let mut len = 1;
    while len < shortest.steps {
        match run(shortest.seed, len) {
            Err(f) if same(&f) => {
                shortest = f;
                break;
            }
            _ => ok = len,
        }
        len *= 2;
    }
    let (mut lo, mut hi) = (ok, shortest.steps);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match run(shortest.seed, mid) {
            Err(f) if same(&f) => {
                hi = mid;
                shortest = f;
            }
            _ => lo = mid,
        }
    }
    shortest
}

struct Driver {
    world: Shared,
    setup: Setup,
    member: Member,
    /// The current member was asked to shut down.
    stopping: bool,
    /// The current member's transactional producer was fenced.
    fenced: bool,
    /// A revoke already reported as too long.
    revoke_reported: bool,
}

impl Driver {
    fn new(seed: u64) -> Self {
        // The shape of the world first, from its own stream of the seed.
        let mut shape = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(!seed);
        let partitions = shape.random_range(1..5);
        let ordering = match shape.random_range(0..3) {
            0 => Ordering::Unordered,
            1 => Ordering::Partition,
            _ => Ordering::Key,
        };
        let transactional = shape.random_ratio(3, 10);
        let mut w = World::new(seed, partitions, ordering);
        let setup = Setup::draw(&mut w, transactional);
        w.trace.push(format!(
            "setup: {partitions} partitions, max_batch {}, transactional {transactional}, {:?}",
            setup.max_batch, setup.config
        ));
        let world = Arc::new(Mutex::new(w));
        let member = Self::join(&world, &setup);
        Self {
            world,
            setup,
            member,
            stopping: false,
            fenced: false,
            revoke_reported: false,
        }
    }

    /// A new member, every partition assigned from the group's committed offsets.
    fn join(world: &Shared, setup: &Setup) -> Member {
        let mut member = Member::start(&setup.config, world, setup.max_batch, setup.transactional);
        let positions: Vec<(i32, i64)> = {
            let w = lock(world);
            (0..setup.partitions)
                .map(|p| (i32::try_from(p).unwrap_or_default(), start_of(&w, p)))
                .collect()
        };
        member.assign(&positions);
        member
    }

    fn trace(&self, what: String) {
        let mut w = lock(&self.world);
        let at = w.trace.len();
        w.trace.push(format!("#{at} {what}"));
    }

    async fn step(&mut self) {
        self.observe().await;
        let roll = lock(&self.world).rng.random_range(0..100);
        let revoking = self.member.revoking.is_some();
        match roll {
            0..20 => self.produce(),
            20..45 if !revoking => self.poll(),
            45..65 => self.answer_commit(),
            65..72 if !revoking => self.rebalance(),
            72..75 if !revoking && !self.setup.transactional => self.reset(),
            75..77 => self.crash().await,
            77..78 if !self.stopping => {
                self.trace("shutdown".into());
                self.stopping = true;
                self.member.shut_down();
            }
            78..80 => self.release(),
            80..90 => {
                let ms = lock(&self.world).rng.random_range(50..500);
                self.trace(format!("wait {ms} ms"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        let ms = lock(&self.world).rng.random_range(1..10);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// What every step checks first: commits sent, revokes, the member's end, the bound.
    async fn observe(&mut self) {
        let sent: Vec<Vec<(i32, i64)>> = self
            .member
            .take_commits(&self.world)
            .iter()
            .map(|r| r.offsets.iter().map(|(tp, next)| (tp.1, *next)).collect())
            .collect();
        for offsets in sent {
            for (partition, next) in offsets {
                lock(&self.world).check_commit_sent(index(partition), next);
            }
        }
        if let Some(revoked) = self.member.revoke_finished() {
            self.trace(format!(
                "revoke of {:?} done after {:?}",
                revoked.partitions,
                revoked.since.elapsed()
            ));
            let topic: Arc<str> = Arc::from(world::TOPIC);
            let orphans: Vec<i32> = revoked
                .partitions
                .iter()
                .copied()
                .filter(|&p| revoked.signalled && self.member.seeks.wants(&(Arc::clone(&topic), p)))
                .collect();
            let mut w = lock(&self.world);
            if !orphans.is_empty() {
                w.violation(format!(
                    "seeks of partitions {orphans:?} outlive their revoke (a later assignment would be sought back)"
                ));
            }
            for p in &revoked.partitions {
                w.generation[index(*p)] += 1;
            }
            self.revoke_reported = false;
        } else if let Some(r) = &self.member.revoking
            && r.since.elapsed() > self.setup.max_poll_interval
            && !self.revoke_reported
        {
            self.revoke_reported = true;
            let what = format!(
                "a revoke of {:?} holds the poll thread past max.poll.interval.ms ({:?})",
                r.partitions, self.setup.max_poll_interval
            );
            lock(&self.world).violation(what);
        }
        let held = self.member.credit.messages();
        if held > self.setup.config.job_queue_size {
            let what = format!(
                "the pool holds {held} messages, over its bound of {}",
                self.setup.config.job_queue_size
            );
            lock(&self.world).violation(what);
        }
        let bytes = self.member.credit.bytes();
        let allowed = self.byte_bound();
        if bytes > allowed {
            let what = format!(
                "the pool holds {bytes} bytes, over its bound of {allowed} (max_buffered_bytes \
                 {}, one record over per partition, the outputs of the messages it may hold)",
                self.setup.config.max_buffered_bytes
            );
            lock(&self.world).violation(what);
        }
        if self.member.task.is_finished() {
            self.ended().await;
        }
    }

    /// The member's run returned: is its end justified? Then a new member joins.
    async fn ended(&mut self) {
        let result = (&mut self.member.task)
            .await
            .unwrap_or_else(|e| panic!("the coordinator panicked: {e}"));
        self.trace(format!("run returned {result:?}"));
        let justified = match &result {
            Ok(()) => self.stopping,
            Err(PoolError::Halted(reason)) => self.halt_justified(reason),
            Err(PoolError::Commit(_) | PoolError::CommitTimeout) => true,
            Err(_) => false,
        };
        if !justified {
            lock(&self.world).violation(format!("run ended without cause: {result:?}"));
        }
        self.leave(false).await;
    }

    /// The most bytes the pool may hold: `max_buffered_bytes`, passed by at most one record per
    /// partition (the poll thread checks bytes after each record it takes), plus the outputs of
    /// the messages it may hold (one each, counted once made: see `crate::flow`).
    fn byte_bound(&self) -> usize {
        const RECORD: usize = 100; // a key byte and a payload of at most 99
        const OUTPUT: usize = 11; // a topic of 3 and an id of 8 (`world::output_for`)
        let config = &self.setup.config;
        usize::try_from(config.max_buffered_bytes).unwrap_or(usize::MAX)
            + self.setup.partitions * RECORD
            + config.job_queue_size * OUTPUT
    }

    fn halt_justified(&self, reason: &HaltReason) -> bool {
        match reason {
            HaltReason::ConsecutiveFailures { .. } => true,
            HaltReason::Transactions { .. } => self.fenced,
            HaltReason::FailureHandler { reason, .. } => {
                if reason.contains("the failure hook halts") {
                    return true;
                }
                // A refused dead letter: only while this member still owned the partition
                // when it was refused; a message of a partition let go runs again elsewhere.
                let at = reason.split(|c: char| !c.is_ascii_digit());
                let numbers: Vec<u64> = at.filter_map(|n| n.parse().ok()).collect();
                match numbers[..] {
                    [id] => lock(&self.world).refused.get(&id) == Some(&true),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// The member is gone (its run ended, or it crashed): commits it sent and that were not
    /// answered may have landed or not; its partitions move on; a new member joins.
    async fn leave(&mut self, crashed: bool) {
        self.member.take_commits(&self.world);
        while let Some((request, generations)) = self.member.unanswered.pop_front() {
            // Fenced as any answer is when its generation moved on; else it may have landed.
            let landed =
                !self.stale(&request, &generations) && lock(&self.world).rng.random_ratio(1, 2);
            if landed {
                self.apply(&request);
            }
            self.trace(format!(
                "commit {:?} of the old member {}",
                offsets_of(&request),
                if landed { "landed" } else { "was lost" }
            ));
        }
        if crashed {
            self.member.task.abort();
            let _ = (&mut self.member.task).await;
        }
        {
            let mut w = lock(&self.world);
            for g in &mut w.generation {
                *g += 1;
            }
        }
        self.member = Self::join(&self.world, &self.setup);
        self.stopping = false;
        self.fenced = false;
        self.revoke_reported = false;
        self.trace("a new member joins, every partition assigned".into());
    }

    fn produce(&mut self) {
        let mut w = lock(&self.world);
        let p = w.rng.random_range(0..self.setup.partitions);
        let n = w.rng.random_range(1..16);
        w.produce(p, n);
        drop(w);
        self.trace(format!("produce {n} to partition {p}"));
    }

    fn poll(&mut self) {
        let cap = lock(&self.world).rng.random_range(1..17);
        let before: Vec<(i32, i64)> = self
            .member
            .feeds
            .iter()
            .map(|(p, f)| (*p, f.position))
            .collect();
        self.member.poll_round(&self.world, cap);
        let mut taken = Vec::new();
        for (p, was) in before {
            let now = self.member.feeds.get(&p).map_or(was, |f| f.position);
            if now != was {
                taken.push(format!("p{p} {was}..{now}"));
            }
        }
        self.trace(format!(
            "poll round (cap {cap}): {} [the pool holds {} messages, {} bytes]",
            taken.join(", "),
            self.member.credit.messages(),
            self.member.credit.bytes()
        ));
    }

    /// Answers the oldest commit sent: it lands, or is refused, aborted, fenced, or left in
    /// doubt (landed or not).
    fn answer_commit(&mut self) {
        let Some((request, generations)) = self.member.unanswered.pop_front() else {
            return;
        };
        // As the committer thread does: a commit nobody waits for any more is not sent.
        if request.abandoned() {
            self.trace(format!("commit {:?} withdrawn", offsets_of(&request)));
            return;
        }
        let (faults, roll) = {
            let mut w = lock(&self.world);
            (w.faults, w.rng.random_range(0..100))
        };
        // The group's generation moved on for a partition since it was sent: the broker
        // fences the commit (KIP-447 for a transaction; an offset commit of an old generation
        // is refused alike).
        let stale = self.stale(&request, &generations);
        let result = match (self.setup.transactional, faults, roll) {
            (true, ..) if stale && !self.fenced => Err(CommitError::Aborted(KafkaError::Global(
                RDKafkaErrorCode::IllegalGeneration,
            ))),
            (false, ..) if stale => Err(CommitError::Refused(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::IllegalGeneration,
            ))),
            // A producer that failed for good fails every later transaction.
            (true, ..) if self.fenced => Err(CommitError::Fatal(KafkaError::Global(
                RDKafkaErrorCode::ProducerFenced,
            ))),
            (_, false, _) | (false, true, 0..85) | (true, true, 0..80) => Ok(()),
            (false, true, _) => Err(CommitError::Refused(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress,
            ))),
            (true, true, 80..97) => Err(CommitError::Aborted(KafkaError::Global(
                RDKafkaErrorCode::RequestTimedOut,
            ))),
            // A commit that never finished: it landed or not, nobody knows; the producer
            // takes no other transaction.
            (true, true, 97 | 98) => {
                self.fenced = true;
                if roll == 97 {
                    self.apply(&request);
                }
                Err(CommitError::InDoubt(KafkaError::Global(
                    RDKafkaErrorCode::RequestTimedOut,
                )))
            }
            (true, true, _) => {
                self.fenced = true;
                Err(CommitError::Fatal(KafkaError::Global(
                    RDKafkaErrorCode::ProducerFenced,
                )))
            }
        };
        self.trace(format!(
            "commit {:?} ({} records): {result:?}",
            offsets_of(&request),
            request.records.len()
        ));
        if result.is_ok() {
            self.apply(&request);
        }
        request.answer(result, Duration::ZERO);
    }

    /// Whether the group's generation moved on, for a partition of `request`, since it was
    /// sent with `generations`.
    fn stale(&self, request: &crate::commit::Request, generations: &[u64]) -> bool {
        let w = lock(&self.world);
        request
            .offsets
            .iter()
            .any(|(tp, _)| w.generation[index(tp.1)] != generations[index(tp.1)])
    }

    /// A commit (or transaction) lands at the broker.
    fn apply(&self, request: &crate::commit::Request) {
        let offsets: Vec<(usize, i64)> = request
            .offsets
            .iter()
            .map(|(tp, next)| (index(tp.1), *next))
            .collect();
        let mut w = lock(&self.world);
        if self.setup.transactional {
            w.transaction_committed(&offsets, &request.records);
        } else {
            for (p, next) in offsets {
                w.committed(p, next);
            }
        }
    }

    /// Assigns some unassigned partitions, or revokes some assigned ones.
    fn rebalance(&mut self) {
        let all: Vec<i32> = (0..self.setup.partitions)
            .map(|p| i32::try_from(p).unwrap_or_default())
            .collect();
        let unassigned: Vec<i32> = all
            .iter()
            .copied()
            .filter(|p| !self.member.feeds.contains_key(p))
            .collect();
        let mut w = lock(&self.world);
        if !unassigned.is_empty() && (self.member.feeds.is_empty() || w.rng.random_ratio(1, 2)) {
            let picked: Vec<i32> = unassigned
                .iter()
                .copied()
                .filter(|_| w.rng.random_ratio(2, 3))
                .collect();
            let chosen: Vec<(i32, i64)> = picked
                .into_iter()
                .map(|p| (p, start_of(&w, index(p))))
                .collect();
            drop(w);
            if !chosen.is_empty() {
                self.trace(format!("assign {chosen:?}"));
                self.member.assign(&chosen);
            }
            return;
        }
        let assigned: Vec<i32> = self.member.feeds.keys().copied().collect();
        let chosen: Vec<i32> = assigned
            .iter()
            .copied()
            .filter(|_| w.rng.random_ratio(1, 2))
            .collect();
        drop(w);
        if !chosen.is_empty() {
            self.trace(format!("revoke {chosen:?}"));
            self.member.revoke(chosen);
        }
    }

    /// The consumer goes back within the assignment: an operator's seek, or an offset reset.
    /// (A log truncated below a commit in flight, as an unclean leader election does, loses
    /// records whatever the pool does: not simulated.)
    fn reset(&mut self) {
        let mut w = lock(&self.world);
        let p = w.rng.random_range(0..self.setup.partitions);
        let partition = i32::try_from(p).unwrap_or_default();
        let Some(feed) = self.member.feeds.get_mut(&partition) else {
            return;
        };
        let to = w
            .rng
            .random_range(feed.position.saturating_sub(30).max(0)..=feed.position);
        drop(w);
        feed.position = to;
        self.trace(format!("partition {p} sought back to {to}"));
    }

    async fn crash(&mut self) {
        self.trace("crash".into());
        self.leave(true).await;
    }

    /// Ends every call that was told never to return.
    fn release(&mut self) {
        let mut w = lock(&self.world);
        w.released += 1;
        w.release.notify_waiters();
        drop(w);
        self.trace("release the calls that never return".into());
    }

    /// The final phase: no more faults; everything must settle, be committed and give its
    /// credit back.
    async fn settle(&mut self) {
        lock(&self.world).faults = false;
        self.trace("final phase: no more faults".into());
        self.release();
        // Slow progress is progress (a small byte bound holding outputs until each commit
        // takes a message or two per commit interval): a stall is 30 s without a commit.
        let mut last = Vec::new();
        let mut still = 0;
        while still < 1500 {
            let committed = lock(&self.world).committed.clone();
            if committed == last {
                still += 1;
            } else {
                still = 0;
                last = committed;
            }
            self.observe().await;
            while !self.member.unanswered.is_empty() {
                self.answer_commit();
            }
            if self.member.revoking.is_none() {
                let unassigned: Vec<(i32, i64)> = {
                    let w = lock(&self.world);
                    (0..self.setup.partitions)
                        .filter(|p| !self.member.feeds.contains_key(&(*p as i32)))
                        .map(|p| (p as i32, start_of(&w, p)))
                        .collect()
                };
                if !unassigned.is_empty() {
                    self.member.assign(&unassigned);
                }
                self.poll();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.quiescent() {
                return;
            }
        }
        let stall = self.stall();
        lock(&self.world).violation(format!("{stall} (no commit for 30 s)"));
    }

    fn quiescent(&self) -> bool {
        let w = lock(&self.world);
        self.member.revoking.is_none()
            && self.member.feeds.len() == self.setup.partitions
            && self.member.unanswered.is_empty()
            && self.member.credit.messages() == 0
            && self.member.credit.bytes() == 0
            && self.member.seeks.is_empty()
            && w.running.is_empty()
            && (0..self.setup.partitions).all(|p| {
                let end = w.logs[p].end();
                end == 0 || w.committed[p] == Some(end)
            })
    }

    fn stall(&self) -> String {
        let w = lock(&self.world);
        let mut what = String::from("stalled in the final phase:");
        for p in 0..self.setup.partitions {
            let _ = write!(
                what,
                " p{p} committed {:?} of {}",
                w.committed[p],
                w.logs[p].end()
            );
        }
        let _ = write!(
            what,
            "; credit {} messages, {} bytes; seeks waiting: {}; calls running: {}; revoking: {}",
            self.member.credit.messages(),
            self.member.credit.bytes(),
            !self.member.seeks.is_empty(),
            w.running.len(),
            self.member.revoking.is_some()
        );
        let stats = self.member.stats.snapshot();
        let _ = write!(
            what,
            "; the pool: {} busy, {} queued, {} retrying, {} awaited, partitions {:?}",
            stats.workers_busy,
            stats.jobs_queued,
            stats.retries_waiting,
            stats.results_awaited,
            stats.partitions
        );
        what
    }
}

/// Where a new owner of partition `p` starts: the committed offset, or the start of the log
/// when there is none or it is past the end (`auto.offset.reset = earliest`).
fn start_of(w: &World, p: usize) -> i64 {
    match w.committed[p] {
        Some(c) if c <= w.logs[p].end() => c,
        _ => 0,
    }
}

fn index(partition: i32) -> usize {
    usize::try_from(partition).unwrap_or_default()
}

fn offsets_of(request: &crate::commit::Request) -> Vec<(i32, i64)> {
    request
        .offsets
        .iter()
        .map(|(tp, next)| (tp.1, *next))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many seeds `make test` runs, and from where; `make sim` sets both.
    fn seeds() -> std::ops::Range<u64> {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let start = var("BURROW_SIM_START", 0);
        start..start + var("BURROW_SIM_SEEDS", 2000)
    }

    const STEPS: usize = 300;

    /// Every seed of the range keeps every invariant; the first that does not is shrunk to
    /// its shortest failing schedule and printed.
    #[test]
    fn the_pool_keeps_its_invariants_over_seeded_schedules() {
        let started = std::time::Instant::now();
        let seeds = seeds();
        let count = seeds.end - seeds.start;
        for seed in seeds {
            if let Err(failure) = run(seed, STEPS) {
                let shortest = shrink(failure);
                panic!("{shortest}");
            }
        }
        eprintln!(
            "simulation: {count} seeds of {STEPS} steps in {:.1?}",
            started.elapsed()
        );
    }

    /// For `make sim`'s survey: runs every seed of the range and prints, for each kind of
    /// violation, the first seed that found it and how long the search took.
    #[test]
    #[ignore = "a survey for make sim, not a check"]
    fn survey() {
        let started = std::time::Instant::now();
        let mut found: std::collections::BTreeMap<String, (u64, Duration, usize)> =
            std::collections::BTreeMap::new();
        for seed in seeds() {
            if let Err(failure) = run(seed, STEPS) {
                for v in &failure.violations {
                    found
                        .entry(kind(v))
                        .or_insert((seed, started.elapsed(), 0))
                        .2 += 1;
                }
            }
        }
        for (kind, (seed, after, count)) in &found {
            eprintln!("{kind}\n    first seed {seed} after {after:.1?}; {count} violations in all");
        }
        eprintln!("survey of {:?} done in {:.1?}", seeds(), started.elapsed());
    }

    /// Prints one seed's shortest failing schedule (`BURROW_SIM_START`).
    #[test]
    #[ignore = "a tool for make sim, not a check"]
    fn replay() {
        let seed = seeds().start;
        // BURROW_SIM_KIND picks which of the seed's violations to shrink for.
        let wanted = std::env::var("BURROW_SIM_KIND").unwrap_or_default();
        match run(seed, STEPS) {
            Ok(()) => eprintln!("seed {seed} keeps every invariant"),
            Err(mut failure) => {
                if let Some(i) = failure.violations.iter().position(|v| v.contains(&wanted)) {
                    failure.violations.swap(0, i);
                }
                // BURROW_SIM_FULL=1 prints the whole schedule, unshrunk.
                if std::env::var("BURROW_SIM_FULL").is_ok_and(|v| v == "1") {
                    eprintln!("{failure}");
                } else {
                    eprintln!("{}", shrink(failure));
                }
            }
        }
    }

    /// Each seed found a finding of issue 18 on the code before its fix; each must pass now.
    /// (Seeds and times from `make sim` on the old code: the first seed of 2,000 that failed
    /// that way, and how long the search took.)
    #[test]
    fn seeds_that_found_the_core_findings_pass() {
        let found = [
            // Finding 1: a transaction aborted during a revoke, then the revoke's commit passed
            // its records (seed 1, found in 25 ms, 18 steps). Finding 5 too: a revoke held the
            // poll thread 1.25 x shutdown_timeout (seed 1, 23 ms).
            (
                1,
                "exactly-once output lost on a revoke after an abort; a revoke too long",
            ),
            // Finding 6: a refused dead letter of a partition let go halted the pool (seed 525,
            // 4.4 s).
            (525, "a stale dead letter halts"),
            // New: a partition that joins while another holds the whole bound took its share
            // on top (seed 29, 228 ms).
            (29, "the bound overshoots when a partition joins"),
            // Finding 3: an aborted transaction's rewind kept the bytes of the retries it
            // cancelled; the partition crawled, its share spent (seed 766, 6.2 s).
            (766, "byte credit leaks on a rewind"),
            // Finding 2's mechanism: the consumer went back to X past jobs below X not done
            // yet; they were dropped, never fetched again, and the new epoch committed past
            // them (seed 149, 1.2 s).
            (149, "a rewind drops what it still owes below its target"),
            // Finding 8: a seek asked for a partition (after an aborted transaction) outlived
            // its revoke, retried every round, and would seek a later assignment back (seed
            // 26, 268 ms).
            (26, "a seek outlives its revoke"),
            // New: a revoked partition's parked jobs were pushed when its zombies ended, and
            // their lane, never released, held the next assignment's jobs for good (seed
            // 1954, 14 s).
            (1954, "parked jobs of a revoked partition hold a lane"),
            // Finding 7: the answer to a commit sent before a rewind raised the new epoch's
            // confirmed offset (72, the broker holding 46), so the interval commit never sent
            // 72 again: partition 1 stalled for good (seed 1080, 1.4 s in 20,000 seeds with the
            // epoch check reverted).
            (
                1080,
                "an answer of an earlier epoch suppresses the new epoch's commits",
            ),
            // New, once a revoked partition's stuck calls kept their bytes counted (permits):
            // the partition assigned again took its whole share on top of them, 495 bytes held
            // against a bound of 255 (seed 746, 1 s, with the new byte-bound invariant).
            (746, "the bytes held pass the bound when a partition joins"),
        ];
        for (seed, finding) in found {
            if let Err(failure) = run(seed, STEPS) {
                panic!("{finding}:\n{}", shrink(failure));
            }
        }
    }

    /// A seed replays exactly: the same schedule, step by step.
    #[test]
    fn a_seed_replays_exactly() {
        let trace = |seed| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut driver = Driver::new(seed);
                for _ in 0..200 {
                    driver.step().await;
                }
                driver.settle().await;
                lock(&driver.world).trace.clone()
            })
        };
        assert_eq!(trace(7), trace(7));
        assert_ne!(trace(7), trace(8));
    }
}
