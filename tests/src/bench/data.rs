//! The data every case reads: `{"id":N,...}` JSON values of exactly 100 bytes, keys `k0`..`k999`,
//! produced once per broker into an 8-partition topic and reused by every case (each with a
//! fresh consumer group).
//!
//! Where each record landed is counted from the producer's delivery reports, not from the
//! broker's high watermark: Tansu's can lag what it holds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};

use burrow_e2e::broker::Broker;
use burrow_e2e::kafka::create_topic;

/// Partitions of every bench topic.
pub const PARTITIONS: i32 = 8;
/// Distinct keys: enough for key order to run many messages of a partition at once.
pub const KEYS: u64 = 1000;
/// Bytes of every value.
pub const VALUE_BYTES: usize = 100;

/// A topic holding `messages` records, and the end offset of each partition once they are in.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub topic: String,
    pub messages: u64,
    /// One past the last offset produced to each partition: what a group that has processed
    /// everything has committed.
    pub ends: BTreeMap<i32, i64>,
}

/// Value number `id`: a JSON object of exactly [`VALUE_BYTES`] bytes (padded with a string).
pub fn value(id: u64) -> Vec<u8> {
    let head = format!(r#"{{"id":{id},"pad":""#);
    let pad = VALUE_BYTES.saturating_sub(head.len() + 2);
    let mut v = Vec::with_capacity(VALUE_BYTES);
    v.extend_from_slice(head.as_bytes());
    v.resize(head.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// Records the mock cluster keeps of a bench topic. librdkafka's mock broker keeps at most
/// 5 MiB (or 100,000 batches) per partition and drops the oldest batches beyond that
/// (`rdkafka_mock.c`, `max_size`), as retention would: 8 partitions hold about 300,000 of these
/// records. Datasets on the mock are clipped to this, and [`dataset`] checks nothing was dropped.
pub const MOCK_CAPACITY: u64 = 250_000;

/// How many of `wanted` records a dataset on `broker` holds: all, or [`MOCK_CAPACITY`] on the
/// mock cluster.
pub fn fitting(broker: &Broker, wanted: u64) -> u64 {
    if broker.is_mock() {
        wanted.min(MOCK_CAPACITY)
    } else {
        wanted
    }
}

/// Creates `topic` (8 partitions) and produces records `0..messages` to it; fails if the
/// broker dropped any (the mock cluster's retention).
pub fn dataset(broker: &Broker, topic: &str, messages: u64) -> anyhow::Result<Dataset> {
    create_topic(broker, topic, PARTITIONS)?;
    let ends = produce(broker, topic, messages, None)?;
    check_kept(broker, topic)?;
    Ok(Dataset {
        topic: topic.to_owned(),
        messages,
        ends,
    })
}

/// Fails unless every partition of `topic` still starts at offset 0.
pub fn check_kept(broker: &Broker, topic: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = broker.client().create()?;
    for p in 0..PARTITIONS {
        let (low, _) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(15))
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
        anyhow::ensure!(
            low == 0,
            "{topic}/{p} starts at {low}: the broker dropped the oldest records (the mock cluster keeps 5 MiB per partition)"
        );
    }
    Ok(())
}

/// A record to put first, before the numbered ones: on `partition`, with `headers`.
#[derive(Debug, Clone)]
pub struct Lead<'a> {
    pub partition: i32,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Produces records `0..messages` to `topic` (after `lead`, if given), every one acknowledged;
/// returns the end offset of each partition.
pub fn produce(
    broker: &Broker,
    topic: &str,
    messages: u64,
    lead: Option<Lead<'_>>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let producer: BaseProducer<Reports> = broker
        .client()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create_with_context(Reports::default())
        .context("creating the bench producer")?;
    let has_lead = lead.is_some();
    if let Some(lead) = lead {
        let mut headers = OwnedHeaders::new();
        for (k, v) in lead.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let value = value(u64::MAX);
        let record = BaseRecord::to(topic)
            .partition(lead.partition)
            .key("lead")
            .payload(value.as_slice())
            .headers(headers);
        send(&producer, record)?;
        producer.flush(Duration::from_secs(60))?;
    }
    for id in 0..messages {
        let key = format!("k{}", id % KEYS);
        let value = value(id);
        send(
            &producer,
            BaseRecord::to(topic)
                .key(key.as_str())
                .payload(value.as_slice()),
        )?;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the bench producer")?;
    let reports = producer.context();
    let failed = reports.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} records to {topic} failed: {}",
            reports.first_error()
        );
    }
    let ends = reports
        .ends
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let delivered: i64 = ends.values().sum();
    let expected = messages + u64::from(has_lead);
    anyhow::ensure!(
        u64::try_from(delivered).ok() == Some(expected),
        "{topic}: {delivered} offsets delivered for {expected} records"
    );
    Ok(ends)
}

/// Sends one record, waiting for room in librdkafka's queue when it is full.
fn send<'a>(
    producer: &BaseProducer<Reports>,
    mut record: BaseRecord<'a, str, [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            Err((e, _)) => bail!("producing: {e}"),
        }
    }
}

/// Delivery reports, counted: failures, and the highest offset acknowledged per partition.
#[derive(Default)]
struct Reports {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    ends: Mutex<BTreeMap<i32, i64>>,
}

impl Reports {
    fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut ends = self
                    .ends
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let end = ends.entry(m.partition()).or_insert(0);
                *end = (*end).max(m.offset() + 1);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every value is a 100-byte JSON object carrying its id, as the cases assume.
    #[test]
    fn values_are_100_byte_json_objects() {
        for id in [0, 7, 123_456_789, u64::MAX] {
            let v = super::value(id);
            assert_eq!(v.len(), super::VALUE_BYTES);
            let json: serde_json::Value = serde_json::from_slice(&v).unwrap_or_default();
            assert_eq!(json["id"].as_u64(), Some(id));
        }
    }
}
