//! Producing what the host owes Kafka before an offset may advance: records a plugin emitted
//! (on `commit`) and dead letters (on a permanent failure).
//!
//! Both happen *before* the source message is marked done, and both wait for the broker's
//! acknowledgement: if the host crashes after the ack but before the commit, the message is
//! processed again and its outputs produced again (at-least-once); it is never the other way
//! round, a committed offset whose outputs were lost. The producer is idempotent
//! (`enable.idempotence=true`, `acks=all`), so librdkafka's own retries cannot duplicate or
//! reorder within a partition.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header names Burrow adds to a dead letter.
pub mod headers {
    /// Why the message failed: the plugin's reason or the host's error text.
    pub const ERROR: &str = "burrow.error";
    /// The topic the message was consumed from.
    pub const SOURCE_TOPIC: &str = "burrow.source.topic";
    /// Its partition, in decimal.
    pub const SOURCE_PARTITION: &str = "burrow.source.partition";
    /// Its offset, in decimal.
    pub const SOURCE_OFFSET: &str = "burrow.source.offset";
    /// How many times it was tried, in decimal.
    pub const ATTEMPTS: &str = "burrow.attempts";
    /// The plugin that failed it.
    pub const PLUGIN_NAME: &str = "burrow.plugin.name";
    /// The version (content hash) of that plugin.
    pub const PLUGIN_VERSION: &str = "burrow.plugin.version";
    /// The tenant whose policy dead-lettered it.
    pub const TENANT: &str = "burrow.tenant";
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Key; `None` lets the partitioner spread records.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The message a dead letter is about, and why it failed.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// Tenant whose policy applies.
    pub tenant: &'a str,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Key of the original message, copied as is.
    pub key: Option<&'a [u8]>,
    /// Value of the original message, copied as is.
    pub value: &'a [u8],
    /// Headers of the original message, copied as is before Burrow's own.
    pub headers: &'a [(String, Vec<u8>)],
    /// Why it failed.
    pub error: &'a str,
    /// How many times it was tried.
    pub attempts: u32,
    /// Plugin name.
    pub plugin_name: &'a str,
    /// Plugin version.
    pub plugin_version: &'a str,
}

/// Builds the dead letter for `failure`: the original key, value and headers, plus Burrow's
/// headers saying where it came from and why it failed.
pub fn dead_letter(topic: &str, failure: &Failure<'_>) -> OutRecord {
    let mut headers = failure.headers.to_vec();
    let ours = [
        (headers::ERROR, failure.error.to_owned()),
        (headers::SOURCE_TOPIC, failure.topic.to_owned()),
        (headers::SOURCE_PARTITION, failure.partition.to_string()),
        (headers::SOURCE_OFFSET, failure.offset.to_string()),
        (headers::ATTEMPTS, failure.attempts.to_string()),
        (headers::PLUGIN_NAME, failure.plugin_name.to_owned()),
        (headers::PLUGIN_VERSION, failure.plugin_version.to_owned()),
        (headers::TENANT, failure.tenant.to_owned()),
    ];
    headers.extend(ours.map(|(k, v)| (k.to_owned(), v.into_bytes())));
    OutRecord {
        topic: topic.to_owned(),
        key: failure.key.map(<[u8]>::to_vec),
        value: failure.value.to_vec(),
        headers,
    }
}

/// Why records could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The producer could not be created from the configuration.
    #[error("cannot create producer: {0}")]
    Create(#[source] KafkaError),
    /// The broker refused or never acknowledged a record.
    #[error("producing to {topic} failed: {source}")]
    Delivery {
        /// Where it was going.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
}

/// An idempotent producer that reports success only once the broker has acknowledged.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    /// How long a record may wait in librdkafka's queue before it counts as failed.
    queue_timeout: Duration,
}

impl Producer {
    /// A producer for `brokers`, with `options` passed through to librdkafka first so Burrow's
    /// delivery settings cannot be weakened by them.
    pub fn new(brokers: &str, options: &BTreeMap<String, String>) -> Result<Self, ProduceError> {
        let mut config = ClientConfig::new();
        for (key, value) in options {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1");
        let inner = config.create().map_err(ProduceError::Create)?;
        Ok(Self {
            inner,
            queue_timeout: Duration::from_secs(30),
        })
    }

    /// Produces every record and waits for all acknowledgements; the first failure is
    /// returned (the others may or may not have been written: callers retry the message).
    pub async fn send_all(&self, records: &[OutRecord]) -> Result<(), ProduceError> {
        let sends = records.iter().map(|record| self.send(record));
        futures::future::try_join_all(sends).await.map(|_| ())
    }

    /// Produces one record and waits for its acknowledgement.
    pub async fn send(&self, record: &OutRecord) -> Result<(), ProduceError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut out = FutureRecord::<[u8], [u8]>::to(&record.topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        self.inner
            .send(out, self.queue_timeout)
            .await
            .map(|_| ())
            .map_err(|(source, _)| ProduceError::Delivery {
                topic: record.topic.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure<'a>(headers: &'a [(String, Vec<u8>)]) -> Failure<'a> {
        Failure {
            tenant: "orders",
            topic: "in",
            partition: 3,
            offset: 42,
            key: Some(b"k"),
            value: b"{bad",
            headers,
            error: "expected value at line 1 column 2",
            attempts: 4,
            plugin_name: "json-validate",
            plugin_version: "abc123",
        }
    }

    fn header<'r>(record: &'r OutRecord, name: &str) -> Option<&'r str> {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// A dead letter keeps the original key, value and headers and says where and why.
    #[test]
    fn dead_letter_carries_original_and_reason() {
        let original = [("trace-id".to_owned(), b"t-1".to_vec())];
        let record = dead_letter("dlq", &failure(&original));
        assert_eq!(record.topic, "dlq");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value, b"{bad");
        assert_eq!(
            record.headers[0], original[0],
            "original headers come first"
        );
        assert_eq!(
            header(&record, headers::ERROR),
            Some("expected value at line 1 column 2")
        );
        assert_eq!(header(&record, headers::SOURCE_TOPIC), Some("in"));
        assert_eq!(header(&record, headers::SOURCE_PARTITION), Some("3"));
        assert_eq!(header(&record, headers::SOURCE_OFFSET), Some("42"));
        assert_eq!(header(&record, headers::ATTEMPTS), Some("4"));
        assert_eq!(header(&record, headers::PLUGIN_NAME), Some("json-validate"));
        assert_eq!(header(&record, headers::PLUGIN_VERSION), Some("abc123"));
        assert_eq!(header(&record, headers::TENANT), Some("orders"));
    }
}
