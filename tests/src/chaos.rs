//! The chaos driver: a large run through the real binary while faults are injected at random
//! times, then a verdict: nothing may be lost.
//!
//! The run: `messages` records with unique ids on an 8-partition topic, through the chaos
//! plugin. Most records say `emit:OUT` (processed = emitted); a few carry a plugin fault in
//! their `burrow-action` header — a trap, a deadline overrun (`sleep` past the deadline), a
//! call blocked in a host call past the deadline (`block`), a plain `fail` — and end as dead
//! letters. The records flow in while the host works (paced so that the run lasts as long as
//! one round of injections, and longer while a kind of fault has not landed), and the driver
//! injects, one at a time at random intervals: `kill -9` of a host and a restart, a second host joining the
//! group and later leaving (rebalances), a hot swap (the config rewritten to the other of two
//! plugin files), and a broker stall (SIGSTOP, then SIGCONT, of Tansu). The first round
//! injects one of each kind, so even a short run sees them all.
//!
//! Verdict: every id must appear on the output or dead-letter topic (lost = 0); duplicates
//! (reprocessing after a crash, allowed by at-least-once) are counted and reported as a rate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng as _;

use crate::broker::Broker;
use crate::config::{HostConfig, Tenant};
use crate::kafka::{self, Out, Position, Reader};
use crate::plugins::plugin_path;
use crate::process::{Burrow, signal};
use crate::unique;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records to produce.
    pub messages: u64,
    /// One record in this many carries a plugin fault.
    pub fault_every: u64,
    /// Injections happen every `interval.0..interval.1`.
    pub interval: (Duration, Duration),
    /// After the first round (one injection of each kind), go on injecting at random until
    /// the run is done; otherwise let the host finish in peace.
    pub keep_injecting: bool,
    /// The whole run must finish within this bound (a hung run fails).
    pub bound: Duration,
}

impl Options {
    /// The short version run by `make test`.
    pub fn short() -> Self {
        Self {
            messages: 20_000,
            fault_every: 500,
            interval: (Duration::from_millis(1000), Duration::from_millis(2000)),
            keep_injecting: false,
            bound: Duration::from_secs(600),
        }
    }

    /// The full run of `make chaos`.
    pub fn full() -> Self {
        Self {
            messages: 1_000_000,
            fault_every: 5_000,
            interval: (Duration::from_secs(5), Duration::from_secs(15)),
            keep_injecting: true,
            bound: Duration::from_secs(3 * 3600),
        }
    }
}

/// The kinds of injected faults, host- and broker-side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Injection {
    Kill9,
    Join,
    Leave,
    Swap,
    BrokerStall,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub produced: u64,
    /// Ids seen on the output or dead-letter topic.
    pub processed: u64,
    pub lost: Vec<u64>,
    /// Extra copies, summed over ids.
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Records produced with each plugin fault.
    pub plugin_faults: BTreeMap<&'static str, u64>,
    pub injections: BTreeMap<Injection, u64>,
    pub wall: Duration,
}

impl Verdict {
    /// Fails if anything was lost.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.lost.is_empty() {
            bail!(
                "{} of {} messages lost (first: {:?})",
                self.lost.len(),
                self.produced,
                &self.lost[..self.lost.len().min(10)]
            );
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.duplicates as f64 / self.produced.max(1) as f64 * 100.0;
        writeln!(f, "| chaos run            |            |")?;
        writeln!(f, "|----------------------|-----------:|")?;
        writeln!(f, "| produced             | {:>10} |", self.produced)?;
        writeln!(f, "| processed            | {:>10} |", self.processed)?;
        writeln!(f, "| lost (must be 0)     | {:>10} |", self.lost.len())?;
        writeln!(f, "| duplicates           | {:>10} |", self.duplicates)?;
        writeln!(f, "| duplicate rate       | {rate:>9.3}% |")?;
        writeln!(f, "| dead-lettered        | {:>10} |", self.dead_lettered)?;
        for (kind, n) in &self.plugin_faults {
            writeln!(f, "| fault: {kind:<13} | {n:>10} |")?;
        }
        for (kind, n) in &self.injections {
            writeln!(f, "| inject: {:<12} | {n:>10} |", format!("{kind:?}"))?;
        }
        write!(
            f,
            "| wall time            | {:>9.1}s |",
            self.wall.as_secs_f64()
        )
    }
}

/// The plugin faults records may carry, by name, and their `burrow-action`.
fn plugin_fault(n: u64, deadline_ms: u64) -> (&'static str, String) {
    match n % 4 {
        0 => ("trap", "trap".into()),
        1 => ("deadline", format!("sleep:{}", deadline_ms * 3)),
        // Parked in a host call (a WASI clock poll): only the call's timeout can end it.
        2 => ("blocking", format!("block:{}", deadline_ms * 100)),
        _ => ("fail", "fail".into()),
    }
}

/// How the stream flows: chunks of records, and the pause between two, so that `messages`
/// records take about as long as `kinds` injections at the mean interval.
fn pacing(options: &Options, kinds: usize) -> (u64, Duration) {
    let chunk = (options.messages / 50).max(1_000);
    let chunks = options.messages.div_ceil(chunk).max(1);
    let mean = (options.interval.0 + options.interval.1) / 2;
    let spread = mean * u32::try_from(kinds).unwrap_or(u32::MAX);
    (chunk, spread / u32::try_from(chunks).unwrap_or(u32::MAX))
}

/// Runs the driver on `broker`; prints progress to stdout.
pub fn run(broker: &Broker, options: &Options) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let (input, output, dlq) = (unique("chaos-in"), unique("chaos-out"), unique("chaos-dlq"));
    kafka::create_topics(broker, &[(&input, 8), (&output, 8), (&dlq, 4)])?;
    let group = unique("chaos");
    let dir = tempfile::tempdir()?;
    // Two plugin files: a hot swap rewrites the config from one to the other.
    let chaos = plugin_path("chaos")?;
    let plugins = [
        dir.path().join("chaos-a.wasm"),
        dir.path().join("chaos-b.wasm"),
    ];
    for p in &plugins {
        std::fs::copy(&chaos, p).with_context(|| format!("copying {}", chaos.display()))?;
    }
    let deadline_ms = 100;
    let config = |plugin: &PathBuf| {
        HostConfig::new(broker)
            .pool("max_retries", 1u32)
            .pool("retry_backoff_base", "10ms")
            .pool("max_consecutive_errors", 1_000_000u32)
            .tenant(
                Tenant::new("chaos", &group, &[&input], plugin)
                    .output(&output)
                    .dead_letters(&dlq)
                    .limit("timeout", format!("{deadline_ms}ms")),
            )
    };
    let path = config(&plugins[0]).write(dir.path())?;

    // Records are produced in chunks while the run goes (memory stays small for a million).
    let emit = format!("emit:{output}");
    let mut produced: BTreeMap<u64, Position> = BTreeMap::new();
    let mut plugin_faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut faulty = BTreeSet::new();
    let mut produce_ids = |ids: std::ops::Range<u64>,
                           produced: &mut BTreeMap<u64, Position>|
     -> anyhow::Result<()> {
        let chunk = 50_000;
        let mut first = ids.start;
        while first < ids.end {
            let last = (first + chunk).min(ids.end);
            let records: Vec<Out> = (first..last)
                .map(|id| {
                    let action = if id % options.fault_every == options.fault_every / 2 {
                        let (kind, action) = plugin_fault(id / options.fault_every, deadline_ms);
                        *plugin_faults.entry(kind).or_default() += 1;
                        faulty.insert(id);
                        action
                    } else {
                        emit.clone()
                    };
                    Out::numbered(id).action(&action)
                })
                .collect();
            let positions = kafka::produce(broker, &input, &records)?;
            produced.extend(kafka::positions_by_id(&records, &positions));
            first = last;
        }
        Ok(())
    };
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();

    let mut hosts = vec![Burrow::start(&path)?];
    let mut joined: Option<Burrow> = None;
    let mut swapped = false;
    let mut injections: BTreeMap<Injection, u64> = BTreeMap::new();
    let mut rng = rand::rng();
    let first_round = [
        Injection::Kill9,
        Injection::Join,
        Injection::Swap,
        Injection::BrokerStall,
        Injection::Leave,
    ];
    let mut round = 0usize;
    let bound = started + options.bound;
    let mut done_at_last = 0;
    let mut next = Instant::now() + rng.random_range(options.interval.0..options.interval.1);
    // The records flow in while the faults land: `messages` spread over the time the first
    // round of injections takes, in chunks, and more (up to 4 x `messages`) while a kind of
    // fault has still not landed; then the hosts drain what is left.
    let (chunk, pause) = pacing(options, first_round.len());
    let most = options.messages.saturating_mul(4);
    let mut next_chunk = Instant::now();
    loop {
        if Instant::now() > bound {
            bail!(
                "the run did not finish within {:?}: {} produced",
                options.bound,
                produced.len()
            );
        }
        let count = produced.len() as u64;
        let wanted = if round < first_round.len() {
            most
        } else {
            options.messages
        };
        if count < wanted && Instant::now() >= next_chunk {
            produce_ids(count..(count + chunk).min(wanted), &mut produced)?;
            ends = kafka::ends_of(&produced.values().copied().collect::<Vec<_>>());
            next_chunk = Instant::now() + pause;
        }
        let committed = kafka::committed(broker, &group, &input).unwrap_or_default();
        let done: i64 = committed.values().sum();
        let all = ends.iter().all(|(p, end)| committed.get(p) == Some(end));
        if all && produced.len() as u64 >= wanted {
            if round < first_round.len() {
                println!(
                    "chaos: {} of {} kinds of fault landed before the stream's cap of {most}",
                    round,
                    first_round.len()
                );
            }
            break;
        }
        let injecting = round < first_round.len() || options.keep_injecting;
        // Each injection lands mid-run: only once the group has committed more since the last
        // one (so a fault never hits a host that has not started, or one still recovering).
        if !injecting || all || Instant::now() < next || done <= done_at_last {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        next = Instant::now() + rng.random_range(options.interval.0..options.interval.1);
        done_at_last = done;
        let kind = if round < first_round.len() {
            first_round[round]
        } else {
            match rng.random_range(0..4) {
                0 => Injection::Kill9,
                1 if joined.is_none() => Injection::Join,
                1 => Injection::Leave,
                2 => Injection::Swap,
                _ => Injection::BrokerStall,
            }
        };
        round += 1;
        match kind {
            Injection::Kill9 => {
                if let Some(host) = hosts.pop() {
                    host.kill9()?;
                }
                hosts.push(Burrow::start(&path)?);
            }
            Injection::Join => {
                if joined.is_none() {
                    joined = Some(Burrow::start(&path)?);
                }
            }
            Injection::Leave => {
                if let Some(host) = joined.take() {
                    host.terminate()?;
                }
            }
            Injection::Swap => {
                swapped = !swapped;
                config(&plugins[usize::from(swapped)]).write(dir.path())?;
            }
            Injection::BrokerStall => {
                // Only a broker of our own can be stalled (not one from BURROW_TEST_BROKERS).
                let Some(pid) = broker.pid() else { continue };
                signal("STOP", pid)?;
                std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
                signal("CONT", pid)?;
            }
        }
        *injections.entry(kind).or_default() += 1;
        println!(
            "chaos: {:>6.1}s {kind:?}; {done} of {} committed",
            started.elapsed().as_secs_f64(),
            produced.len()
        );
    }
    if let Some(host) = joined.take() {
        host.terminate()?;
    }
    for host in hosts {
        host.terminate()?;
    }

    // Read both topics until every id is seen, then count.
    let ids: BTreeSet<u64> = produced.keys().copied().collect();
    let mut out = Reader::new(broker, &output)?;
    let mut dead = Reader::new(broker, &dlq)?;
    let expect_out: BTreeSet<u64> = ids.difference(&faulty).copied().collect();
    out.read_ids(&expect_out)?;
    dead.read_ids(&faulty)?;
    out.settle(Duration::from_secs(1))?;
    dead.settle(Duration::from_secs(1))?;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for id in out
        .records
        .iter()
        .chain(&dead.records)
        .filter_map(|r| r.id())
    {
        *seen.entry(id).or_default() += 1;
    }
    let lost: Vec<u64> = ids
        .iter()
        .filter(|id| !seen.contains_key(id))
        .copied()
        .collect();
    Ok(Verdict {
        produced: ids.len() as u64,
        processed: seen.len() as u64,
        lost,
        duplicates: seen.values().map(|n| n - 1).sum(),
        dead_lettered: dead.records.len() as u64,
        plugin_faults,
        injections,
        wall: started.elapsed(),
    })
}
