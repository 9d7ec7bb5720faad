//! Every plugin outcome, end to end: the host on a mock cluster running the chaos plugin with a
//! dead-letter policy. What ends in Kafka is what the outcome table in `tenant::handler` says.

use crate::support;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{
    Out, Position, produce, read_exactly_after, read_to_end, wait_all_committed,
};
use burrow_e2e::plugins::plugin_path;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::{Host, version_of};

/// The tenant's config: chaos, dead letters, two retries with a short backoff.
fn config(broker: &Broker, name: &str) -> anyhow::Result<HostConfig> {
    let plugin = plugin_path("chaos")?;
    let input = format!("{name}-in");
    Ok(HostConfig::new(broker)
        .pool("workers", 4u32)
        .pool("max_retries", 2u32)
        .pool("retry_backoff_base", "10ms")
        .pool("retry_backoff_max", "50ms")
        .pool("max_consecutive_errors", 1000u32)
        .tenant(
            Tenant::new(name, &format!("{name}-group"), &[&input], &plugin)
                .dead_letters(&format!("{name}-dlq"))
                .output(&format!("{name}-out")),
        ))
}

/// `commit`, no header, a retry that then commits, and an emit to an allowed topic all commit:
/// nothing is dead-lettered, the emitted value is in the output topic, every offset is committed.
#[test]
fn successful_outcomes_commit_and_emits_reach_the_output_topic() -> anyhow::Result<()> {
    let t = "ok";
    let (input, out, dlq) = ("ok-in", "ok-out", "ok-dlq");
    let kafka = Broker::mock(&[(input, 2), (out, 1), (dlq, 1)])?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, t)?.write(dir.path())?)?;

    let emit = format!("emit:{out}");
    let records = [
        Out::chaos("commit"),
        Out::value("no header at all"),
        Out::chaos("retry-then-commit:1"),
        Out::value("emitted value").action(&emit),
    ];
    produce(&kafka, input, &records)?;

    wait_all_committed(&kafka, "ok-group", input)?;
    let emitted = read_exactly_after(&kafka, out, 1)?;
    let values: Vec<String> = emitted.iter().map(|r| r.value_text()).collect();
    assert_eq!(values, ["emitted value"]);
    host.stop()?;
    assert_eq!(
        read_to_end(&kafka, dlq)?,
        [],
        "nothing that commits is dead-lettered"
    );
    Ok(())
}

/// An emit the broker refuses fails its message retriably: the message runs again and emits
/// again, and its offset is committed only once an emit of it is acknowledged. So the refused
/// record is not lost behind a committed offset, and the refusal does not stall the tenant.
#[test]
fn a_refused_emit_retries_its_message_and_the_offset_waits_for_the_ack() -> anyhow::Result<()> {
    let t = "nack";
    let (input, out, dlq) = ("nack-in", "nack-out", "nack-dlq");
    let kafka = Broker::mock(&[(input, 1), (out, 1), (dlq, 1)])?;
    let emit = format!("emit:{out}");
    produce(
        &kafka,
        input,
        &[Out::value("emitted once acked").action(&emit)],
    )?;
    // The next Produce request, the first emit's, is refused.
    kafka.on_mock(|mock| {
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
        );
    })?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, t)?.write(dir.path())?)?;

    wait_all_committed(&kafka, "nack-group", input)?;
    let emitted = read_exactly_after(&kafka, out, 1)?;
    let pool = host.tenant(t)?["pool"].clone();
    host.stop()?;
    let values: Vec<String> = emitted.iter().map(|r| r.value_text()).collect();
    assert_eq!(values, ["emitted once acked"]);
    assert!(
        pool["messages_retried"].as_u64() >= Some(1),
        "the refused emit retried its message: {pool:#}"
    );
    assert_eq!(pool["messages_failed"], 0, "{pool:#}");
    assert_eq!(read_to_end(&kafka, dlq)?, [], "nothing dead-lettered");
    Ok(())
}

/// A message that fails for good (fail, retries exhausted, trap, emit to a topic not allowed)
/// is dead-lettered with its original key, value and headers plus every `burrow.*` header saying
/// where it came from and why; nothing is produced to the forbidden topic, and every offset is
/// committed (nothing lost, nothing stuck).
#[test]
fn failed_messages_are_dead_lettered_with_where_and_why() -> anyhow::Result<()> {
    let t = "bad";
    let (input, dlq, forbidden) = ("bad-in", "bad-dlq", "forbidden");
    let kafka = Broker::mock(&[(input, 2), ("bad-out", 1), (dlq, 1), (forbidden, 1)])?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, t)?.write(dir.path())?)?;

    // action, attempts expected in the dead letter, text its `burrow.error` must contain
    let cases = [
        ("fail", "1", "chaos: asked to fail"),
        ("retry", "3", "retry"),
        ("trap", "3", "trap"),
        ("emit:forbidden", "1", "\"forbidden\""),
    ];
    let records: Vec<Out> = cases
        .iter()
        .enumerate()
        .map(|(i, (action, _, _))| {
            Out::value(format!("value of {action}"))
                .key(format!("key-{i}"))
                .action(action)
                .header("trace-id", format!("trace-{i}"))
                .partition(i as i32 % 2)
        })
        .collect();
    let positions = produce(&kafka, input, &records)?;

    wait_all_committed(&kafka, "bad-group", input)?;
    let letters = read_exactly_after(&kafka, dlq, cases.len())?;
    host.stop()?;

    assert_eq!(
        letters.len(),
        cases.len(),
        "one dead letter per failed message"
    );
    let version = version_of(&plugin_path("chaos")?)?;
    for ((action, attempts, why), (sent, Position { partition, offset })) in
        cases.iter().zip(records.iter().zip(&positions))
    {
        let letter = letters
            .iter()
            .find(|l| l.key == sent.key)
            .unwrap_or_else(|| panic!("no dead letter for `{action}` in {letters:#?}"));
        assert_eq!(letter.value, sent.value, "{action}: value kept");
        assert_eq!(
            letter.headers[..sent.headers.len()],
            sent.headers[..],
            "{action}: original headers kept, first and in order"
        );
        let header = |name: &str| letter.header(name).unwrap_or_default();
        assert!(
            header("burrow.error").contains(why),
            "{action}: burrow.error {:?} should mention {why:?}",
            header("burrow.error")
        );
        assert_eq!(header("burrow.attempts"), *attempts, "{action}: attempts");
        assert_eq!(header("burrow.source.topic"), input, "{action}");
        assert_eq!(
            header("burrow.source.partition"),
            partition.to_string(),
            "{action}"
        );
        assert_eq!(
            header("burrow.source.offset"),
            offset.to_string(),
            "{action}"
        );
        assert_eq!(header("burrow.plugin.name"), "chaos", "{action}");
        assert_eq!(header("burrow.plugin.version"), version, "{action}");
        assert_eq!(header("burrow.tenant"), t, "{action}");
    }
    assert_eq!(
        read_to_end(&kafka, forbidden)?,
        [],
        "an emit to a topic outside output_topics is never produced"
    );
    Ok(())
}
