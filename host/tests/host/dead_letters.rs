//! Dead letters that always go out, and say exactly what the input was: too large for the
//! producer (a reference record instead), a large input (written whole), null values and
//! `burrow.*` headers an input already carried. Every test also checks what was committed.

use crate::support;

use anyhow::bail;
use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{
    Out, ProduceOptions, Record, committed, end_offsets, produce_opts, read_exactly_after,
    wait_all_committed,
};
use burrow_e2e::plugins::plugin_path;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::Host;

/// A chaos tenant `name` dead-lettering to `{name}-dlq`, with extra `[kafka.options]`.
fn config(
    broker: &Broker,
    name: &str,
    kafka_options: &[(&str, &str)],
) -> anyhow::Result<HostConfig> {
    let mut config = HostConfig::new(broker)
        .pool("workers", 2u32)
        .pool("max_retries", 0u32)
        .pool("max_consecutive_errors", 1000u32)
        .tenant(
            Tenant::new(
                name,
                &format!("{name}-group"),
                &[&format!("{name}-in")],
                &plugin_path("chaos")?,
            )
            .dead_letters(&format!("{name}-dlq")),
        );
    for (key, value) in kafka_options {
        config = config.kafka_option(key, value);
    }
    Ok(config)
}

/// The one header named `name`, as text; fails if there is not exactly one, or it is null.
fn one(record: &Record, name: &str) -> anyhow::Result<String> {
    match record.header_values(name).as_slice() {
        [Some(v)] => Ok(v.clone()),
        other => bail!("header {name}: expected one non-null value, got {other:?}"),
    }
}

/// Produces `records` to partition 0 of `topic` with a producer allowed records up to 16 MiB;
/// returns their offsets.
fn produce_raw(broker: &Broker, topic: &str, records: Vec<Out>) -> anyhow::Result<Vec<i64>> {
    let records: Vec<Out> = records.into_iter().map(|r| r.partition(0)).collect();
    let options = ProduceOptions {
        max_message_bytes: Some(16 * 1024 * 1024),
        ..ProduceOptions::default()
    };
    let positions = produce_opts(broker, topic, &records, &options)?;
    Ok(positions.iter().map(|p| p.offset).collect())
}

/// A dead letter too large for the producer (the operator's `message.max.bytes`) is replaced
/// by a reference record — no payload, where it came from, why, and the original's sizes — and
/// the tenant goes on: not halted, every offset committed, the next message processed.
#[test]
fn a_dead_letter_too_large_becomes_a_reference_record_and_the_tenant_goes_on() -> anyhow::Result<()>
{
    let kafka = Broker::mock(&[("big-in", 1), ("big-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let options = [("message.max.bytes", "100000")];
    let host = Host::start(&config(&kafka, "big", &options)?.write(dir.path())?)?;

    let big = vec![b'x'; 200_000];
    let offsets = produce_raw(
        &kafka,
        "big-in",
        vec![
            Out::value(big).action("fail").header("trace", "t"),
            Out::value("small").action("fail"),
        ],
    )?;
    wait_all_committed(&kafka, "big-group", "big-in")?;
    let status = host.tenant("big")?["status"]["halted"].clone();
    host.stop()?;
    assert!(status.is_null(), "the tenant did not halt: {status}");
    assert_eq!(
        committed(&kafka, "big-group", "big-in")?[&0],
        offsets[1] + 1,
        "committed past both, each after its dead letter was acknowledged"
    );

    let mut dlq = read_exactly_after(&kafka, "big-dlq", 2)?;
    // Two workers: the dead letters may be written in either order.
    dlq.sort_by_key(|r| one(r, "burrow.source.offset").ok());
    let (reference, whole) = (&dlq[0], &dlq[1]);
    assert_eq!(
        (&reference.key, &reference.value),
        (&None, &None),
        "no payload"
    );
    assert!(
        one(reference, "burrow.dead-letter.truncated")?.contains("too large"),
        "says why: {reference:?}"
    );
    assert_eq!(one(reference, "burrow.source.topic")?, "big-in");
    assert_eq!(one(reference, "burrow.source.partition")?, "0");
    assert_eq!(
        one(reference, "burrow.source.offset")?,
        offsets[0].to_string()
    );
    assert_eq!(one(reference, "burrow.error")?, "chaos: asked to fail");
    assert_eq!(one(reference, "burrow.original.value-size")?, "200000");
    assert_eq!(one(reference, "burrow.original.headers-count")?, "2");
    assert!(
        reference.header_values("trace").is_empty(),
        "the original's headers are not copied"
    );
    assert_eq!(
        whole.value.as_deref(),
        Some(&b"small"[..]),
        "a small one goes out whole"
    );
    assert!(
        whole
            .header_values("burrow.dead-letter.truncated")
            .is_empty()
    );
    Ok(())
}

/// A dead letter the *broker* refuses for its size (the topic's `max.message.bytes`, here the
/// mock's injected `MSG_SIZE_TOO_LARGE`) is replaced by a reference record too, and the
/// message's offset is committed only once that is acknowledged.
#[test]
fn a_dead_letter_the_broker_refuses_as_too_large_becomes_a_reference_record() -> anyhow::Result<()>
{
    let kafka = Broker::mock(&[("brk-in", 1), ("brk-dlq", 1)])?;
    let offsets = produce_raw(&kafka, "brk-in", vec![Out::value("v").action("fail")])?;
    // Injected before the host starts: the next Produce request, its dead letter, is refused.
    kafka.on_mock(|mock| {
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
    })?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, "brk", &[])?.write(dir.path())?)?;
    wait_all_committed(&kafka, "brk-group", "brk-in")?;
    host.stop()?;
    assert_eq!(
        committed(&kafka, "brk-group", "brk-in")?[&0],
        offsets[0] + 1
    );
    let dlq = read_exactly_after(&kafka, "brk-dlq", 1)?;
    assert_eq!(
        end_offsets(&kafka, "brk-dlq")?[&0],
        1,
        "only the reference record was written"
    );
    let reference = &dlq[0];
    assert_eq!(reference.value, None);
    assert!(
        one(reference, "burrow.dead-letter.truncated")?.contains("too large"),
        "{reference:?}"
    );
    assert_eq!(one(reference, "burrow.original.value-size")?, "1");
    assert_eq!(
        one(reference, "burrow.source.offset")?,
        offsets[0].to_string()
    );
    Ok(())
}

/// A 5 MiB input the plugin fails is dead-lettered whole: the producer may write what the
/// consumer can receive, not just librdkafka's 1 MB default.
#[test]
fn a_five_mib_input_is_dead_lettered_whole() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("huge-in", 1), ("huge-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, "huge", &[])?.write(dir.path())?)?;

    let huge: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let offsets = produce_raw(
        &kafka,
        "huge-in",
        vec![Out::value(huge.clone()).action("fail")],
    )?;
    wait_all_committed(&kafka, "huge-group", "huge-in")?;
    host.stop()?;
    assert_eq!(
        committed(&kafka, "huge-group", "huge-in")?[&0],
        offsets[0] + 1
    );
    let dlq = read_exactly_after(&kafka, "huge-dlq", 1)?;
    assert!(
        dlq[0].value.as_deref() == Some(&huge[..]),
        "the whole value"
    );
    assert!(
        dlq[0]
            .header_values("burrow.dead-letter.truncated")
            .is_empty()
    );
    Ok(())
}

/// A null value and a null header value stay null in the dead letter, and an input that
/// already carries `burrow.*` headers yields exactly one of each, the host's.
#[test]
fn dead_letters_keep_nulls_and_carry_only_the_hosts_burrow_headers() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("nul-in", 1), ("nul-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, "nul", &[])?.write(dir.path())?)?;

    let offsets = produce_raw(
        &kafka,
        "nul-in",
        vec![
            Out::default()
                .action("fail")
                .null_header("nothing")
                .header("burrow.error", "forged")
                .header("burrow.source.offset", "999"),
        ],
    )?;
    wait_all_committed(&kafka, "nul-group", "nul-in")?;
    host.stop()?;
    assert_eq!(
        committed(&kafka, "nul-group", "nul-in")?[&0],
        offsets[0] + 1
    );
    let dlq = read_exactly_after(&kafka, "nul-dlq", 1)?;
    let letter = &dlq[0];
    assert_eq!(letter.value, None, "a null value stays null");
    assert_eq!(
        letter.header_values("nothing"),
        [None],
        "a null header value stays null"
    );
    assert_eq!(one(letter, "burrow.error")?, "chaos: asked to fail");
    assert_eq!(one(letter, "burrow.source.offset")?, offsets[0].to_string());
    assert_eq!(one(letter, "burrow-action")?, "fail", "other headers kept");
    Ok(())
}

/// A dead letter the broker never acknowledges halts the tenant, naming the message and the
/// error, and the message's offset is not committed: it is redelivered after a restart, never
/// lost. (The worker was free while the dead letter was tried: the pool waited on its ack.)
#[test]
fn a_dead_letter_never_acknowledged_halts_the_tenant_before_its_offset() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("nak-in", 1), ("nak-dlq", 1)])?;
    let offsets = produce_raw(
        &kafka,
        "nak-in",
        vec![
            Out::value("a").action("commit"),
            Out::value("b").action("fail"),
        ],
    )?;
    // Every Produce request for long enough: each of the dead letter's tries is refused.
    kafka.on_mock(|mock| {
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50],
        );
    })?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, "nak", &[])?.write(dir.path())?)?;
    let halted = burrow_e2e::wait_for("/stats to show tenant nak halted", || {
        let status = host.tenant("nak")?["status"]["halted"].clone();
        Ok(status.as_str().map(str::to_owned))
    })?;
    assert!(
        halted.contains(&format!("cannot dead-letter nak-in/0@{}", offsets[1])),
        "the halt names the message and why: {halted}"
    );
    assert!(
        halted.contains("authoriz"),
        "and the broker's error: {halted}"
    );
    host.stop()?;
    assert_eq!(
        committed(&kafka, "nak-group", "nak-in")?.get(&0).copied(),
        Some(offsets[1]),
        "committed up to, not past, the message whose dead letter failed"
    );
    Ok(())
}
