//! Outcomes and dead letters on 8 partitions, through the real binary on the real broker.

use std::collections::{BTreeMap, BTreeSet};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out, Position, Record, positions_by_id};
use burrow_e2e::plugins::{plugin_path, version_of};
use burrow_e2e::process::Burrow;
use burrow_e2e::unique;

const PARTITIONS: i32 = 8;

/// Checks that `dead` holds exactly one dead letter for each of `ids`, each carrying the
/// original record and every `burrow.*` header exactly once, with the right values.
fn check_dead_letters(
    dead: &[Record],
    ids: &BTreeSet<u64>,
    produced: &BTreeMap<u64, Position>,
    expect: &BTreeMap<&str, String>,
) -> anyhow::Result<()> {
    let seen: Vec<u64> = dead.iter().filter_map(Record::id).collect();
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    anyhow::ensure!(seen.len() == dead.len(), "dead letters without an id");
    anyhow::ensure!(
        &distinct == ids,
        "dead-lettered ids differ from the failed ones"
    );
    anyhow::ensure!(
        seen.len() == distinct.len(),
        "some message dead-lettered twice"
    );
    for record in dead {
        let id = record.id().unwrap_or_default();
        let at = produced[&id];
        let mut want = expect.clone();
        want.insert("burrow.source.partition", at.partition.to_string());
        want.insert("burrow.source.offset", at.offset.to_string());
        for (name, value) in &want {
            anyhow::ensure!(
                record.header_count(name) == 1,
                "dead letter of id {id}: header {name} appears {} times: {:?}",
                record.header_count(name),
                record.headers
            );
            anyhow::ensure!(
                record.header(name).as_deref() == Some(value.as_str()),
                "dead letter of id {id}: {name} = {:?}, expected {value:?}",
                record.header(name)
            );
        }
        anyhow::ensure!(
            record.key.as_deref() == Some(format!("k{id}").as_bytes()),
            "dead letter of id {id} lost its key"
        );
    }
    Ok(())
}

/// Every chaos outcome on 8 partitions lands where it should: emits on the output topic once
/// each, failures on the dead-letter topic once each with every `burrow.*` header right,
/// retried-then-committed messages nowhere; and the group commits every partition to its end.
#[test]
fn chaos_outcomes_on_8_partitions_land_exactly_once_and_commit_to_the_end() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, output, dlq) = (
        unique("outcomes-in"),
        unique("outcomes-out"),
        unique("outcomes-dlq"),
    );
    kafka::create_topics(
        broker,
        &[(&input, PARTITIONS), (&output, PARTITIONS), (&dlq, 3)],
    )?;
    let group = unique("outcomes");
    let plugin = plugin_path("chaos")?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("chaos", &group, &[&input], &plugin)
                .output(&output)
                .dead_letters(&dlq)
                .pool("max_retries", 3u32)
                // A quarter of the messages fail on purpose: that must not halt the tenant.
                .pool("max_consecutive_errors", 1000u32)
                .pool("retry_backoff_base", "10ms"),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let emit = format!("emit:{output}");
    let records: Vec<Out> = (0..800u64)
        .map(|id| {
            let action = match id % 4 {
                0 => "commit",
                1 => &emit,
                2 => "fail",
                _ => "retry-then-commit:1",
            };
            // Every partition gets every action (id / 4 walks the partitions).
            Out::numbered(id)
                .action(action)
                .partition(((id / 4) % 8) as i32)
        })
        .collect();
    let positions = kafka::produce(broker, &input, &records)?;
    let produced = positions_by_id(&records, &positions);
    let ids_where = |rest: u64| -> BTreeSet<u64> { (0..800).filter(|id| id % 4 == rest).collect() };

    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;
    let emitted = kafka::read_exactly_after(broker, &output, 200)?;
    let emitted_ids: Vec<u64> = emitted.iter().filter_map(Record::id).collect();
    assert_eq!(
        emitted_ids.len(),
        200,
        "one emit per `emit` message, none twice"
    );
    assert_eq!(
        emitted_ids.iter().copied().collect::<BTreeSet<_>>(),
        ids_where(1)
    );

    let dead = kafka::read_exactly_after(broker, &dlq, 200)?;
    let expect = BTreeMap::from([
        ("burrow.error", "chaos: asked to fail".to_owned()),
        ("burrow.source.topic", input.clone()),
        ("burrow.attempts", "1".to_owned()),
        ("burrow.plugin.name", "chaos".to_owned()),
        ("burrow.plugin.version", version_of(&plugin)?),
        ("burrow.tenant", "chaos".to_owned()),
    ]);
    check_dead_letters(&dead, &ids_where(2), &produced, &expect)?;

    let pool = burrow.tenant("chaos")?["pool"].clone();
    assert_eq!(pool["messages_failed"], 200, "{pool}");
    assert_eq!(pool["messages_retried"], 200, "{pool}");
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// json-validate on 8 partitions forwards every JSON object (key and headers kept) and
/// dead-letters everything else with the parser's reason, and commits every partition.
#[test]
fn json_validate_forwards_objects_and_dead_letters_the_rest_on_8_partitions() -> anyhow::Result<()>
{
    let broker = Broker::shared()?;
    let (input, output, dlq) = (unique("json-in"), unique("json-out"), unique("json-dlq"));
    kafka::create_topics(
        broker,
        &[(&input, PARTITIONS), (&output, PARTITIONS), (&dlq, 2)],
    )?;
    let group = unique("json");
    let plugin = plugin_path("json-validate")?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("orders", &group, &[&input], &plugin)
                .output(&output)
                .dead_letters(&dlq)
                .config("output-topic", &output)
                // A third of the messages fail on purpose: that must not halt the tenant.
                .pool("max_consecutive_errors", 1000u32),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    // Keys spread the records over the partitions by librdkafka's hash.
    let records: Vec<Out> = (0..600u64)
        .map(|id| match id % 3 {
            0 | 1 => Out::numbered(id),
            _ => Out::value(format!("not json {id}"))
                .key(format!("k{id}"))
                .header(kafka::ID_HEADER, id.to_string()),
        })
        .collect();
    let positions = kafka::produce(broker, &input, &records)?;
    let ends = kafka::ends_of(&positions);
    assert_eq!(
        ends.len(),
        PARTITIONS as usize,
        "every partition got records: {ends:?}"
    );
    let produced = positions_by_id(&records, &positions);

    kafka::wait_committed(broker, &group, &input, &ends)?;
    let forwarded = kafka::read_exactly_after(broker, &output, 400)?;
    assert_eq!(forwarded.len(), 400, "each object forwarded once");
    for record in &forwarded {
        let id = record.id().unwrap_or(u64::MAX);
        assert!(id % 3 != 2, "invalid record {id} was forwarded");
        assert_eq!(record.value_text(), format!(r#"{{"id":{id}}}"#));
        assert_eq!(record.key.as_deref(), Some(format!("k{id}").as_bytes()));
    }
    let dead = kafka::read_exactly_after(broker, &dlq, 200)?;
    let expect = BTreeMap::from([
        ("burrow.source.topic", input.clone()),
        ("burrow.plugin.name", "json-validate".to_owned()),
        ("burrow.plugin.version", version_of(&plugin)?),
        ("burrow.tenant", "orders".to_owned()),
    ]);
    let invalid: BTreeSet<u64> = (0..600).filter(|id| id % 3 == 2).collect();
    check_dead_letters(&dead, &invalid, &produced, &expect)?;
    for record in &dead {
        let error = record.header("burrow.error").unwrap_or_default();
        assert!(error.starts_with("value is not valid JSON"), "{error}");
    }
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
