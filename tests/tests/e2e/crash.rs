//! Crashes: `kill -9` of a host mid-run, and of one of two hosts in a group. Nothing may be
//! lost; only messages in flight at the crash (at or above the committed offset) may run twice.

use std::collections::BTreeMap;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::Pipeline;
use burrow_e2e::kafka::{self, Delivery, Position, Reader, positions_by_id};
use burrow_e2e::process::Burrow;
use burrow_e2e::wait_until;

const PARTITIONS: i32 = 8;
/// Messages per run: enough that the host is still busy when it is killed (it processes this
/// run's records at ~200,000/s on the 2-core machine, emits included).
const MESSAGES: u64 = 100_000;

/// A tenant that emits each message's value (`{"id":N}`) to the output topic.
fn setup(broker: &Broker, name: &str) -> anyhow::Result<Pipeline> {
    Pipeline::create(broker, name, (PARTITIONS, 1), |tenant| tenant)
}

/// Produces the run; returns where each id landed.
fn produce_run(broker: &Broker, s: &Pipeline) -> anyhow::Result<BTreeMap<u64, Position>> {
    let records = kafka::numbered(0..MESSAGES, Some(&format!("emit:{}", s.output)));
    let positions = kafka::produce(broker, &s.input, &records)?;
    Ok(positions_by_id(&records, &positions))
}

/// Waits until the output shows the host is busy, then returns the committed offsets once
/// `kill` has run (a dead host commits nothing more, so they are final).
fn kill_mid_run(
    broker: &Broker,
    s: &Pipeline,
    out: &mut Reader,
    kill: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    out.read_at_least((MESSAGES / 100) as usize)?;
    kill()?;
    let committed = kafka::committed(broker, &s.group, &s.input)?;
    let done: i64 = committed.values().sum();
    anyhow::ensure!(
        done < MESSAGES as i64,
        "the host had committed all {MESSAGES} messages before the kill: raise MESSAGES"
    );
    println!("killed with {done} of {MESSAGES} committed");
    Ok(committed)
}

/// `kill -9` mid-run, then a restart on the same group: every message is processed, and the
/// only duplicates are of messages at or above the committed offset at the kill.
#[test]
fn kill_9_mid_run_and_restart_loses_nothing() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = setup(broker, "kill9")?;
    let mut out = Reader::new(broker, &s.output)?;
    let mut first = Burrow::start(&s.config)?;
    first.wait_ready()?;
    let produced = produce_run(broker, &s)?;
    let ends = kafka::ends_of(&produced.values().copied().collect::<Vec<_>>());

    let at_kill = kill_mid_run(broker, &s, &mut out, || first.kill9())?;
    let mut second = Burrow::start(&s.config)?;
    second.wait_ready()?;
    kafka::wait_committed(broker, &s.group, &s.input, &ends)?;
    out.read_ids(&produced.keys().copied().collect())?;
    out.settle(std::time::Duration::from_secs(1))?;

    let delivery = Delivery::of(&produced, &out.records, &at_kill);
    println!("{delivery:?}");
    delivery.check()?;
    let status = second.terminate()?;
    assert!(status.success(), "the restarted host exited with {status}");
    Ok(())
}

/// Two hosts share a group; one is killed with `kill -9` mid-run; the other takes over its
/// partitions and finishes the run: nothing lost, duplicates only of what was in flight.
#[test]
fn two_hosts_in_a_group_one_killed_the_other_takes_over() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = setup(broker, "pair")?;
    let mut out = Reader::new(broker, &s.output)?;
    let mut a = Burrow::start(&s.config)?;
    a.wait_ready()?;
    let mut b = Burrow::start(&s.config)?;
    b.wait_ready()?;
    let assigned = |host: &Burrow| -> anyhow::Result<u64> {
        Ok(host.tenant("pair")?["pool"]["assigned_partitions"]
            .as_u64()
            .unwrap_or(0))
    };
    wait_until("the two hosts to share the 8 partitions", || {
        let (on_a, on_b) = (assigned(&a)?, assigned(&b)?);
        Ok(on_a > 0 && on_b > 0 && on_a + on_b == PARTITIONS as u64)
    })?;
    let produced = produce_run(broker, &s)?;
    let ends = kafka::ends_of(&produced.values().copied().collect::<Vec<_>>());

    let at_kill = kill_mid_run(broker, &s, &mut out, || a.kill9())?;
    kafka::wait_committed(broker, &s.group, &s.input, &ends)?;
    assert_eq!(
        assigned(&b)?,
        PARTITIONS as u64,
        "the survivor owns every partition"
    );
    out.read_ids(&produced.keys().copied().collect())?;
    out.settle(std::time::Duration::from_secs(1))?;

    let delivery = Delivery::of(&produced, &out.records, &at_kill);
    println!("{delivery:?}");
    delivery.check()?;
    let status = b.terminate()?;
    assert!(status.success(), "the surviving host exited with {status}");
    Ok(())
}
