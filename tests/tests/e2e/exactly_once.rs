//! Exactly-once tenants on the real broker, through the real binary: runs of messages with
//! emits and dead letters, three `kill -9`s and a second member that joins, is killed and comes
//! back, in every ordering mode. Nothing is lost, in the output or the dead letters; on a broker
//! whose transactions hold, nothing is duplicated either; the same run at-least-once shows
//! duplicates.
//!
//! What counts is what a `read_committed` reader sees, and on Tansu 0.6.0 a consumer cannot
//! show it: Tansu writes the markers of aborted transactions into the log but hands their
//! records to `read_committed` readers all the same (thousands of extra copies a run). So the
//! output and the dead letters are read with the kit's log reader ([`burrow_e2e::log`]), which
//! fetches the raw log, markers included, and keeps what Kafka's rule keeps. It is right on
//! every broker.
//!
//! Read so, Tansu used to show duplicates in some runs, committed ones: Tansu also drops the
//! input offsets of a committed transaction when another producer's transaction was open on
//! its output and the producer begins its next one ([`kafka::keeps_transaction_offsets`],
//! measured there), so a killed host came back below work it had committed and ran it again.
//! The pool's committer commits a committed transaction's offsets once more, plainly, before
//! the next begins, which keeps them there: the test asserts 0 duplicates on every broker, and
//! prints what the probe says of the broker. (Tansu's group coordinator also keeps a member
//! that left gracefully after a transactional offset commit as the group's leader, so the next
//! member's SyncGroup fails "rebalance in progress" for good: the runs stop members with
//! `kill -9`, which the coordinator expires.)

use std::collections::{BTreeMap, BTreeSet};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::Pipeline;
use burrow_e2e::kafka::{self, Delivery, Out, Position, Reader, Record, positions_by_id};
use burrow_e2e::log;
use burrow_e2e::process::Burrow;
use burrow_e2e::wait_for;

const PARTITIONS: i32 = 8;
const MESSAGES: u64 = 100_000;

/// Every tenth message fails (`fail`) and is dead-lettered; the others emit their value.
fn fails(id: u64) -> bool {
    id % 10 == 7
}

fn setup(broker: &Broker, name: &str, delivery: &str, ordering: &str) -> anyhow::Result<Pipeline> {
    Pipeline::create(broker, name, (PARTITIONS, 2), |tenant| {
        tenant
            .delivery(delivery)
            .pool("ordering", ordering)
            .pool("max_consecutive_errors", 1_000_000u32)
    })
}

/// What came out of a run with crashes: the output's and the dead letters' delivery, as a
/// `read_committed` reader sees them, and what their logs hold besides.
struct Outcome {
    output: Delivery,
    dead_letters: Delivery,
    output_log: log::Committed,
    dead_letter_log: log::Committed,
}

/// The run: host `a` starts; the input is produced; `a` is killed with `kill -9` and restarted
/// three times as its output grows (10%, 35%, 65% of it); a second member joins after the first
/// kill, is killed with the second and comes back. Then everything is committed and read back.
fn run_with_kills(broker: &Broker, s: &Pipeline, messages: u64) -> anyhow::Result<Outcome> {
    let records: Vec<Out> = (0..messages)
        .map(|id| {
            let action = if fails(id) {
                "fail".to_owned()
            } else {
                format!("emit:{}", s.output)
            };
            Out::numbered(id).action(&action)
        })
        .collect();
    // Paces the kills only: what it reads is not what is checked (see the module docs).
    let mut out = Reader::new(broker, &s.output)?;
    let mut a = Burrow::start(&s.config)?;
    a.wait_ready()?;
    let positions = kafka::produce(broker, &s.input, &records)?;
    let produced = positions_by_id(&records, &positions);
    let ends = kafka::ends_of(&positions);
    let emitted = (messages - messages / 10) as usize;

    out.read_at_least(emitted / 10)?;
    a.kill9()?;
    let a = Burrow::start(&s.config)?;
    let second = [("BURROW__INSTANCE_ID", "second")];
    let b = Burrow::start_with(&s.config, &second)?;
    out.read_at_least(emitted * 35 / 100)?;
    a.kill9()?;
    b.kill9()?;
    // Each killed member comes back under its own instance_id: its first transaction call aborts
    // what the kill left open (Tansu never times one out, and an open one holds every
    // `read_committed` reader back).
    let a = Burrow::start(&s.config)?;
    let b = Burrow::start_with(&s.config, &second)?;
    out.read_at_least(emitted * 65 / 100)?;
    a.kill9()?;
    let a = Burrow::start(&s.config)?;
    kafka::wait_committed(broker, &s.group, &s.input, &ends)?;
    for host in [a, b] {
        let status = host.terminate()?;
        anyhow::ensure!(status.success(), "a host exited with {status}");
    }
    let (kept, failed): (BTreeMap<u64, Position>, BTreeMap<u64, Position>) =
        produced.into_iter().partition(|(id, _)| !fails(*id));
    let output_log = read_committed(broker, &s.output, &kept)?;
    let dead_letter_log = read_committed(broker, &s.dlq, &failed)?;
    // No crash baseline: a duplicate anywhere counts.
    let none = BTreeMap::new();
    Ok(Outcome {
        output: Delivery::of(&kept, &output_log.records, &none),
        dead_letters: Delivery::of(&failed, &dead_letter_log.records, &none),
        output_log,
        dead_letter_log,
    })
}

/// What a `read_committed` reader sees of `topic`, from its log, once it shows every id
/// `expected` (or, after [`burrow_e2e::DEADLINE`], as it is: the ids it lacks are then lost).
/// The hosts have stopped, so the log grows no more.
fn read_committed(
    broker: &Broker,
    topic: &str,
    expected: &BTreeMap<u64, Position>,
) -> anyhow::Result<log::Committed> {
    let ids: BTreeSet<u64> = expected.keys().copied().collect();
    let complete = wait_for(&format!("{topic} to show {} ids", ids.len()), || {
        let view = log::read(broker, topic)?;
        let seen: BTreeSet<u64> = view.records.iter().filter_map(Record::id).collect();
        Ok(seen.is_superset(&ids).then_some(view))
    });
    match complete {
        Ok(view) => Ok(view),
        Err(incomplete) => {
            println!("{incomplete:#}");
            log::read(broker, topic)
        }
    }
}

/// One line of what a topic's log held: what a `read_committed` reader was spared.
fn spared(view: &log::Committed) -> String {
    format!(
        "{} stored, {} visible; left out: {} aborted, {} fenced, {} open",
        view.stored,
        view.records.len(),
        view.aborted,
        view.fenced,
        view.open
    )
}

/// Exactly-once through three `kill -9`s and a member joining and dying, in every ordering
/// mode: nothing lost, in the output or the dead letters, as a `read_committed` reader sees
/// them, and nothing duplicated either (on Tansu too, which drops committed transactions'
/// offsets: see the module docs).
#[test]
fn exactly_once_loses_nothing_through_kill_9_in_every_ordering() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    println!(
        "the broker keeps committed transactions' offsets by itself: {}",
        kafka::keeps_transaction_offsets(broker)?
    );
    for (ordering, messages) in [
        ("unordered", MESSAGES),
        ("partition", MESSAGES / 4),
        ("key", MESSAGES / 4),
    ] {
        let s = setup(broker, &format!("eos-{ordering}"), "exactly-once", ordering)?;
        let outcome = run_with_kills(broker, &s, messages)?;
        println!("ordering = {ordering}");
        println!("output: {:?}", outcome.output);
        println!("output log: {}", spared(&outcome.output_log));
        println!("dead letters: {:?}", outcome.dead_letters);
        println!("dead-letter log: {}", spared(&outcome.dead_letter_log));
        outcome.output.check()?;
        outcome.dead_letters.check()?;
        anyhow::ensure!(
            outcome.output.duplicates + outcome.dead_letters.duplicates == 0,
            "exactly-once under {ordering} ordering duplicated records: {} in the output, \
             {} in the dead letters",
            outcome.output.duplicates,
            outcome.dead_letters.duplicates
        );
    }
    Ok(())
}

/// The same kills at-least-once lose nothing but do duplicate: what the crashes left in flight
/// ran twice, and its emits were written twice.
#[test]
fn at_least_once_duplicates_through_kill_9() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = setup(broker, "alo-kill", "at-least-once", "unordered")?;
    let outcome = run_with_kills(broker, &s, MESSAGES)?;
    println!("output: {:?}", outcome.output);
    outcome.output.check()?;
    outcome.dead_letters.check()?;
    anyhow::ensure!(
        outcome.output.duplicates + outcome.dead_letters.duplicates > 0,
        "three kill -9s mid-run left no duplicate: the run cannot tell the modes apart"
    );
    Ok(())
}
