//! Exactly-once tenants on the real broker, through the real binary: runs of messages with
//! emits and dead letters, three `kill -9`s and a second member that joins, is killed and comes
//! back, in every ordering mode. Nothing is lost, in the output or the dead letters; the same run
//! at-least-once shows duplicates.
//!
//! What these runs cannot assert on this broker is the absence of duplicates in exactly-once
//! mode. Tansu 0.6.0 hands the records of an aborted transaction to `read_committed` readers
//! (it keeps no index of aborted transactions; measured: 10 records of a transaction ended with
//! `abort_transaction` were all read back), so a kill that lands inside a transaction shows its
//! records, and their rerun shows them again. (Its group coordinator also keeps a member that
//! left gracefully after a transactional offset commit as the group's leader, so the next
//! member's SyncGroup fails "rebalance in progress" for good: the runs stop members with
//! `kill -9`, which the coordinator expires.) No broker this machine can run filters aborted
//! transactions: librdkafka's mock cluster shows them too (`pool/tests/pool_transaction.rs`
//! checks the pool's side of an abort there). So the test first asks the broker
//! ([`kafka::hides_aborted_transactions`]): on one that hides them (Apache Kafka, Redpanda, via
//! `BURROW_TEST_BROKERS`) it asserts 0 duplicates; on Tansu it prints them.

use std::collections::BTreeMap;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::Pipeline;
use burrow_e2e::kafka::{self, Delivery, Out, Position, Reader, positions_by_id};
use burrow_e2e::process::Burrow;

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

/// What came out of a run with crashes: the output's and the dead letters' delivery.
struct Outcome {
    output: Delivery,
    dead_letters: Delivery,
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
    let mut out = Reader::new(broker, &s.output)?;
    let mut dead = Reader::new(broker, &s.dlq)?;
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
    let (kept, failed): (BTreeMap<u64, Position>, BTreeMap<u64, Position>) =
        produced.into_iter().partition(|(id, _)| !fails(*id));
    for (reader, expected) in [(&mut out, &kept), (&mut dead, &failed)] {
        reader.read_ids(&expected.keys().copied().collect())?;
        reader.settle(Duration::from_secs(2))?;
    }
    for host in [a, b] {
        let status = host.terminate()?;
        anyhow::ensure!(status.success(), "a host exited with {status}");
    }
    // No crash baseline: a duplicate anywhere counts.
    let none = BTreeMap::new();
    Ok(Outcome {
        output: Delivery::of(&kept, &out.records, &none),
        dead_letters: Delivery::of(&failed, &dead.records, &none),
    })
}

/// Exactly-once through three `kill -9`s and a member joining and dying, in every ordering
/// mode: nothing lost, in the output or the dead letters; and, on a broker that hides aborted
/// transactions, nothing duplicated either. (On one that does not, such as Tansu, duplicates
/// are printed: see the module docs.)
#[test]
fn exactly_once_loses_nothing_through_kill_9_in_every_ordering() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let strict = kafka::hides_aborted_transactions(broker)?;
    println!("the broker hides aborted transactions: {strict}");
    for (ordering, messages) in [
        ("unordered", MESSAGES),
        ("partition", MESSAGES / 4),
        ("key", MESSAGES / 4),
    ] {
        let s = setup(broker, &format!("eos-{ordering}"), "exactly-once", ordering)?;
        let outcome = run_with_kills(broker, &s, messages)?;
        println!("ordering = {ordering}");
        println!("output: {:?}", outcome.output);
        println!("dead letters: {:?}", outcome.dead_letters);
        outcome.output.check()?;
        outcome.dead_letters.check()?;
        if strict {
            anyhow::ensure!(
                outcome.output.duplicates + outcome.dead_letters.duplicates == 0,
                "exactly-once under {ordering} ordering duplicated records"
            );
        }
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
