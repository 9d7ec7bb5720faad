//! Exactly-once tenants on the real broker, through the real binary: a run of 100,000 messages
//! with emits and dead letters, three `kill -9`s and a second member that joins and leaves;
//! a `read_committed` reader of the output and dead-letter topics sees every expected record
//! exactly once. The same run at-least-once shows duplicates, so the test can tell them apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Delivery, Out, Position, Reader, positions_by_id};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::unique;

const PARTITIONS: i32 = 8;
const MESSAGES: u64 = 100_000;

/// Every tenth message fails (`fail`) and is dead-lettered; the others emit their value.
fn fails(id: u64) -> bool {
    id % 10 == 7
}

struct Setup {
    input: String,
    output: String,
    dlq: String,
    group: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn setup(broker: &Broker, name: &str, delivery: &str) -> anyhow::Result<Setup> {
    let (input, output, dlq) = (
        unique(&format!("{name}-in")),
        unique(&format!("{name}-out")),
        unique(&format!("{name}-dlq")),
    );
    kafka::create_topics(
        broker,
        &[(&input, PARTITIONS), (&output, PARTITIONS), (&dlq, 2)],
    )?;
    let group = unique(name);
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new(name, &group, &[&input], &plugin_path("chaos")?)
                .output(&output)
                .dead_letters(&dlq)
                .delivery(delivery)
                .pool("max_consecutive_errors", 1_000_000u32),
        )
        .write(dir.path())?;
    Ok(Setup {
        input,
        output,
        dlq,
        group,
        config,
        _dir: dir,
    })
}

/// What came out of a run with crashes: the output's and the dead letters' delivery.
struct Outcome {
    output: Delivery,
    dead_letters: Delivery,
}

/// The run: host `a` starts; the input is produced; `a` is killed with `kill -9` and restarted
/// three times as its output grows (10%, 35%, 65% of it), a second member joins after the first
/// kill and leaves (gracefully) after the second. Then everything is committed and read back.
fn run_with_crashes(broker: &Broker, s: &Setup) -> anyhow::Result<Outcome> {
    let records: Vec<Out> = (0..MESSAGES)
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
    let emitted = (MESSAGES - MESSAGES / 10) as usize;

    out.read_at_least(emitted / 10)?;
    a.kill9()?;
    let a = Burrow::start(&s.config)?;
    let b = Burrow::start_with(&s.config, &[("BURROW__INSTANCE_ID", "second")])?;
    out.read_at_least(emitted * 35 / 100)?;
    a.kill9()?;
    let a = Burrow::start(&s.config)?;
    let status = b.terminate()?;
    anyhow::ensure!(status.success(), "the second member exited with {status}");
    out.read_at_least(emitted * 65 / 100)?;
    a.kill9()?;
    let a = Burrow::start(&s.config)?;
    kafka::wait_committed(broker, &s.group, &s.input, &ends)?;
    let (kept, failed): (BTreeMap<u64, Position>, BTreeMap<u64, Position>) =
        produced.into_iter().partition(|(id, _)| !fails(*id));
    out.read_ids(&kept.keys().copied().collect())?;
    out.settle(Duration::from_secs(2))?;
    dead.read_ids(&failed.keys().copied().collect())?;
    dead.settle(Duration::from_secs(2))?;
    let status = a.terminate()?;
    anyhow::ensure!(status.success(), "the last host exited with {status}");
    // No crash baseline: a duplicate anywhere counts.
    let none = BTreeMap::new();
    Ok(Outcome {
        output: Delivery::of(&kept, &out.records, &none),
        dead_letters: Delivery::of(&failed, &dead.records, &none),
    })
}

/// Exactly-once: through three crashes and a member joining and leaving, every emit and every
/// dead letter is seen once: none lost, none twice.
#[test]
fn exactly_once_survives_kill_9_and_rebalances_with_no_duplicate() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = setup(broker, "eos", "exactly-once")?;
    let outcome = run_with_crashes(broker, &s)?;
    println!("output: {:?}", outcome.output);
    println!("dead letters: {:?}", outcome.dead_letters);
    for (what, delivery) in [
        ("output", &outcome.output),
        ("dead letters", &outcome.dead_letters),
    ] {
        delivery.check()?;
        anyhow::ensure!(
            delivery.duplicates == 0,
            "{what}: {} duplicates",
            delivery.duplicates
        );
    }
    Ok(())
}

/// The same run at-least-once loses nothing but does duplicate: what the crashes left in
/// flight ran twice, and its emits were written twice.
#[test]
fn at_least_once_survives_the_same_run_with_duplicates() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = setup(broker, "alo", "at-least-once")?;
    let outcome = run_with_crashes(broker, &s)?;
    println!("output: {:?}", outcome.output);
    outcome.output.check()?;
    outcome.dead_letters.check()?;
    anyhow::ensure!(
        outcome.output.duplicates + outcome.dead_letters.duplicates > 0,
        "three kill -9s mid-run left no duplicate: the run cannot tell the modes apart"
    );
    Ok(())
}
