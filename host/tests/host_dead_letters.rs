//! Dead letters that always go out, and say exactly what the input was: too large for the
//! producer (a reference record instead), a large input (written whole), null values and
//! `burrow.*` headers an input already carried. Every test also checks what was committed.

mod host_support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use host_support::{
    ConfigDir, Host, Kafka, committed, end_offsets, plugin_path, wait_all_committed,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long a wait may take before the test fails: a hang guard, not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

/// A chaos tenant `name` dead-lettering to `{name}-dlq`, with extra `[kafka.options]` lines.
fn config(brokers: &str, name: &str, kafka_options: &str) -> anyhow::Result<String> {
    let plugin = plugin_path("chaos")?;
    Ok(format!(
        r#"[kafka]
brokers = "{brokers}"
[kafka.options]
{kafka_options}

[admin]
listen = "127.0.0.1:0"

[pool]
workers = 2
commit_interval = "100ms"
max_retries = 0
max_consecutive_errors = 1000

[[tenant]]
name = "{name}"
group_id = "{name}-group"
topics = ["{name}-in"]
plugin = {plugin:?}
on_failure = "dead-letter"
dead_letter_topic = "{name}-dlq"
"#,
    ))
}

/// A record as the broker holds it, nulls kept apart from empties.
#[derive(Debug, Clone)]
struct Raw {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Raw {
    /// Every value of the headers named `name`, in order.
    fn all(&self, name: &str) -> Vec<Option<String>> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    /// The one header named `name`, as text; fails if there is not exactly one, or it is null.
    fn one(&self, name: &str) -> anyhow::Result<String> {
        match self.all(name).as_slice() {
            [Some(v)] => Ok(v.clone()),
            other => bail!("header {name}: expected one non-null value, got {other:?}"),
        }
    }
}

/// A record to produce: its value and headers, either possibly null.
type Input<'a> = (Option<Vec<u8>>, Vec<(&'a str, Option<&'a [u8]>)>);

/// Produces `records` (value, headers) to partition 0 of `topic` with a producer allowed
/// records up to 16 MiB; returns their offsets.
async fn produce_raw(
    brokers: &str,
    topic: &str,
    records: &[Input<'_>],
) -> anyhow::Result<Vec<i64>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "16777216")
        .create()?;
    let mut offsets = Vec::new();
    for (value, headers) in records {
        let mut hs = OwnedHeaders::new();
        for (key, value) in headers {
            hs = hs.insert(Header { key, value: *value });
        }
        let mut record = FutureRecord::<(), [u8]>::to(topic).partition(0).headers(hs);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .context("producing")?;
        offsets.push(delivery.offset);
    }
    Ok(offsets)
}

/// Waits until partition 0 of `topic` holds `n` records and returns them.
async fn read_raw(brokers: &str, topic: &str, n: usize) -> anyhow::Result<Vec<Raw>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "dead-letter-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + DEADLINE;
        let mut records = Vec::new();
        while records.len() < n {
            if Instant::now() > deadline {
                bail!(
                    "{topic}: {} of {n} records after {DEADLINE:?}",
                    records.len()
                );
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m?;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            records.push(Raw {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
        Ok(records)
    })
    .await?
}

/// A dead letter too large for the producer (the operator's `message.max.bytes`) is replaced
/// by a reference record — no payload, where it came from, why, and the original's sizes — and
/// the tenant goes on: not halted, every offset committed, the next message processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_becomes_a_reference_record_and_the_tenant_goes_on()
-> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("big-in", 1), ("big-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let options = r#""message.max.bytes" = "100000""#;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "big", options)?)?)?;

    let big = vec![b'x'; 200_000];
    let offsets = produce_raw(
        &kafka.brokers,
        "big-in",
        &[
            (
                Some(big),
                vec![("burrow-action", Some(&b"fail"[..])), ("trace", Some(b"t"))],
            ),
            (
                Some(b"small".to_vec()),
                vec![("burrow-action", Some(&b"fail"[..]))],
            ),
        ],
    )
    .await?;
    wait_all_committed(&kafka.brokers, "big-group", "big-in").await?;
    let status = host.tenant("big").await?["status"]["halted"].clone();
    host.stop().await?;
    assert!(status.is_null(), "the tenant did not halt: {status}");
    assert_eq!(
        committed(&kafka.brokers, "big-group", "big-in").await?[&0],
        offsets[1] + 1,
        "committed past both, each after its dead letter was acknowledged"
    );

    let mut dlq = read_raw(&kafka.brokers, "big-dlq", 2).await?;
    // Two workers: the dead letters may be written in either order.
    dlq.sort_by_key(|r| r.one("burrow.source.offset").ok());
    let (reference, whole) = (&dlq[0], &dlq[1]);
    assert_eq!(
        (&reference.key, &reference.value),
        (&None, &None),
        "no payload"
    );
    assert!(
        reference
            .one("burrow.dead-letter.truncated")?
            .contains("too large"),
        "says why: {reference:?}"
    );
    assert_eq!(reference.one("burrow.source.topic")?, "big-in");
    assert_eq!(reference.one("burrow.source.partition")?, "0");
    assert_eq!(
        reference.one("burrow.source.offset")?,
        offsets[0].to_string()
    );
    assert_eq!(reference.one("burrow.error")?, "chaos: asked to fail");
    assert_eq!(reference.one("burrow.original.value-size")?, "200000");
    assert_eq!(reference.one("burrow.original.headers-count")?, "2");
    assert!(
        reference.all("trace").is_empty(),
        "the original's headers are not copied"
    );
    assert_eq!(
        whole.value.as_deref(),
        Some(&b"small"[..]),
        "a small one goes out whole"
    );
    assert!(whole.all("burrow.dead-letter.truncated").is_empty());
    Ok(())
}

/// A dead letter the *broker* refuses for its size (the topic's `max.message.bytes`, here the
/// mock's injected `MSG_SIZE_TOO_LARGE`) is replaced by a reference record too, and the
/// message's offset is committed only once that is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_refuses_as_too_large_becomes_a_reference_record()
-> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("brk-in", 1), ("brk-dlq", 1)])?;
    let offsets = produce_raw(
        &kafka.brokers,
        "brk-in",
        &[(
            Some(b"v".to_vec()),
            vec![("burrow-action", Some(&b"fail"[..]))],
        )],
    )
    .await?;
    // Injected before the host starts: the next Produce request, its dead letter, is refused.
    kafka.mock().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "brk", "")?)?)?;
    wait_all_committed(&kafka.brokers, "brk-group", "brk-in").await?;
    host.stop().await?;
    assert_eq!(
        committed(&kafka.brokers, "brk-group", "brk-in").await?[&0],
        offsets[0] + 1
    );
    let dlq = read_raw(&kafka.brokers, "brk-dlq", 1).await?;
    assert_eq!(
        end_offsets(&kafka.brokers, "brk-dlq").await?[&0],
        1,
        "only the reference record was written"
    );
    let reference = &dlq[0];
    assert_eq!(reference.value, None);
    assert!(
        reference
            .one("burrow.dead-letter.truncated")?
            .contains("too large"),
        "{reference:?}"
    );
    assert_eq!(reference.one("burrow.original.value-size")?, "1");
    assert_eq!(
        reference.one("burrow.source.offset")?,
        offsets[0].to_string()
    );
    Ok(())
}

/// A 5 MiB input the plugin fails is dead-lettered whole: the producer may write what the
/// consumer can receive, not just librdkafka's 1 MB default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_mib_input_is_dead_lettered_whole() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("huge-in", 1), ("huge-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "huge", "")?)?)?;

    let huge: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let offsets = produce_raw(
        &kafka.brokers,
        "huge-in",
        &[(
            Some(huge.clone()),
            vec![("burrow-action", Some(&b"fail"[..]))],
        )],
    )
    .await?;
    wait_all_committed(&kafka.brokers, "huge-group", "huge-in").await?;
    host.stop().await?;
    assert_eq!(
        committed(&kafka.brokers, "huge-group", "huge-in").await?[&0],
        offsets[0] + 1
    );
    let dlq = read_raw(&kafka.brokers, "huge-dlq", 1).await?;
    assert!(
        dlq[0].value.as_deref() == Some(&huge[..]),
        "the whole value"
    );
    assert!(dlq[0].all("burrow.dead-letter.truncated").is_empty());
    Ok(())
}

/// A null value and a null header value stay null in the dead letter, and an input that
/// already carries `burrow.*` headers yields exactly one of each, the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_nulls_and_carry_only_the_hosts_burrow_headers() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("nul-in", 1), ("nul-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "nul", "")?)?)?;

    let offsets = produce_raw(
        &kafka.brokers,
        "nul-in",
        &[(
            None,
            vec![
                ("burrow-action", Some(&b"fail"[..])),
                ("nothing", None),
                ("burrow.error", Some(b"forged")),
                ("burrow.source.offset", Some(b"999")),
            ],
        )],
    )
    .await?;
    wait_all_committed(&kafka.brokers, "nul-group", "nul-in").await?;
    host.stop().await?;
    assert_eq!(
        committed(&kafka.brokers, "nul-group", "nul-in").await?[&0],
        offsets[0] + 1
    );
    let dlq = read_raw(&kafka.brokers, "nul-dlq", 1).await?;
    let letter = &dlq[0];
    assert_eq!(letter.value, None, "a null value stays null");
    assert_eq!(
        letter.all("nothing"),
        [None],
        "a null header value stays null"
    );
    assert_eq!(letter.one("burrow.error")?, "chaos: asked to fail");
    assert_eq!(letter.one("burrow.source.offset")?, offsets[0].to_string());
    assert_eq!(letter.one("burrow-action")?, "fail", "other headers kept");
    Ok(())
}
