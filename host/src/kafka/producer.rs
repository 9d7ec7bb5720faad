//! Producing what the host owes Kafka before an offset may advance: records a plugin emitted
//! (on `commit`) and dead letters (on a permanent failure).
//!
//! Both happen *before* the source message is marked done, and both wait for the broker's
//! acknowledgement: if the host crashes after the ack but before the commit, the message is
//! processed again and its outputs produced again (at-least-once); it is never the other way
//! round, a committed offset whose outputs were lost. The producer is idempotent
//! (`enable.idempotence=true`, `acks=all`), so librdkafka's own retries cannot duplicate or
//! reorder within a partition.
//!
//! **Dead letters always go out.** A dead letter is the original record (key, value — `null`
//! stays `null` — and headers) plus Burrow's `burrow.*` headers. The input's own headers with
//! exactly those names are dropped, so each `burrow.*` header a dead letter carries is the
//! host's, once. The producer may write any record the consumer could receive: its
//! `message.max.bytes` is sized to the consumer's `receive.message.max.bytes` (librdkafka's
//! default 100 MB, or the operator's), unless the operator sets `message.max.bytes` itself.
//! If a dead letter is still refused for its size (by this producer or by the broker's
//! `max.message.bytes`), a *reference record* goes in its place ([`reference_record`]): no key,
//! no value, the `burrow.*` headers, the original's sizes, and
//! [`headers::TRUNCATED`] saying why — the message is then done, and the tenant goes on.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::Header;
use super::client_log::LogContext;
pub use burrow_pool::kafka::OutRecord;

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
    /// Only on a reference record: why the original could not be written (the producer's or
    /// broker's size error). The record then has no key and no value.
    pub const TRUNCATED: &str = "burrow.dead-letter.truncated";
    /// On a reference record: the original key's size in bytes (absent for a null key).
    pub const KEY_SIZE: &str = "burrow.original.key-size";
    /// On a reference record: the original value's size in bytes (absent for a null value).
    pub const VALUE_SIZE: &str = "burrow.original.value-size";
    /// On a reference record: the original headers' total size (names and values) in bytes.
    pub const HEADERS_SIZE: &str = "burrow.original.headers-size";
    /// On a reference record: how many headers the original had.
    pub const HEADERS_COUNT: &str = "burrow.original.headers-count";

    /// Every name Burrow sets on a dead letter: an input header with one of these names is
    /// dropped from the dead letter, so Burrow's is the only one.
    pub const ALL: [&str; 13] = [
        ERROR,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        ATTEMPTS,
        PLUGIN_NAME,
        PLUGIN_VERSION,
        TENANT,
        TRUNCATED,
        KEY_SIZE,
        VALUE_SIZE,
        HEADERS_SIZE,
        HEADERS_COUNT,
    ];
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
    /// Value of the original message, copied as is (null stays null).
    pub value: Option<&'a [u8]>,
    /// Headers of the original message, copied before Burrow's own, except those with a name
    /// Burrow sets ([`headers::ALL`]).
    pub headers: &'a [Header],
    /// Why it failed.
    pub error: &'a str,
    /// How many times it was tried.
    pub attempts: u32,
    /// Plugin name.
    pub plugin_name: &'a str,
    /// Plugin version.
    pub plugin_version: &'a str,
}

/// Builds the dead letter for `failure`: the original key, value and headers (minus any named
/// like Burrow's own), plus Burrow's headers saying where it came from and why it failed.
pub fn dead_letter(topic: &str, failure: &Failure<'_>) -> OutRecord {
    let mut headers: Vec<Header> = failure
        .headers
        .iter()
        .filter(|h| !headers::ALL.contains(&h.key.as_str()))
        .cloned()
        .collect();
    headers.extend(burrow_headers(failure));
    OutRecord {
        topic: topic.to_owned(),
        key: failure.key.map(<[u8]>::to_vec),
        value: failure.value.map(<[u8]>::to_vec),
        headers,
    }
}

/// How much of the error text a reference record keeps: it must fit where its original did not.
const REFERENCE_ERROR_BYTES: usize = 4096;

/// Builds the record written instead of `failure`'s dead letter when that was refused as too
/// large (`why`): no key, no value, Burrow's headers (the error cut to 4 KiB), the original's
/// sizes, and [`headers::TRUNCATED`] set to `why`.
pub fn reference_record(topic: &str, failure: &Failure<'_>, why: &str) -> OutRecord {
    reference(failure).because(dead_letter(topic, failure), why)
}

/// What a reference record needs of the failed message beyond its dead letter: the sizes of
/// the input's own headers (the dead letter dropped those named like Burrow's). Two numbers,
/// taken while the message is at hand; the record is made from the dead letter only if the
/// broker refuses it (see [`reference_record`]).
pub struct Reference {
    header_bytes: usize,
    header_count: usize,
}

/// The [`Reference`] of `failure`'s dead letter.
pub fn reference(failure: &Failure<'_>) -> Reference {
    Reference {
        header_bytes: failure
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum(),
        header_count: failure.headers.len(),
    }
}

impl Reference {
    /// The reference record for `dead_letter`, refused for `why`: its Burrow headers, in order
    /// (the error cut to 4 KiB), then the reason and the original's sizes.
    pub fn because(self, dead_letter: OutRecord, why: &str) -> OutRecord {
        let sizes = [
            (headers::TRUNCATED, Some(why.to_owned())),
            (
                headers::KEY_SIZE,
                dead_letter.key.as_ref().map(|k| k.len().to_string()),
            ),
            (
                headers::VALUE_SIZE,
                dead_letter.value.as_ref().map(|v| v.len().to_string()),
            ),
            (headers::HEADERS_SIZE, Some(self.header_bytes.to_string())),
            (headers::HEADERS_COUNT, Some(self.header_count.to_string())),
        ];
        let mut headers: Vec<Header> = dead_letter
            .headers
            .into_iter()
            .filter(|h| headers::ALL.contains(&h.key.as_str()))
            .map(|mut h| {
                if h.key == headers::ERROR
                    && let Some(error) = &mut h.value
                {
                    cut_text(error, REFERENCE_ERROR_BYTES);
                }
                h
            })
            .collect();
        headers.extend(sizes.into_iter().filter_map(|(key, value)| {
            value.map(|v| Header {
                key: key.to_owned(),
                value: Some(v.into_bytes()),
            })
        }));
        OutRecord {
            topic: dead_letter.topic,
            key: None,
            value: None,
            headers,
        }
    }
}

/// Cuts UTF-8 `text` to at most `max` bytes, at a character boundary.
fn cut_text(text: &mut Vec<u8>, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    // A continuation byte (0b10xx_xxxx) is not a character's start.
    while end > 0 && (text[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    text.truncate(end);
}

/// Burrow's headers on a dead letter: where the message came from and why it failed.
fn burrow_headers(failure: &Failure<'_>) -> impl Iterator<Item = Header> + use<> {
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
    ours.into_iter().map(|(k, v)| Header {
        key: k.to_owned(),
        value: Some(v.into_bytes()),
    })
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

impl ProduceError {
    /// Whether the record was refused for its size, by this producer (`message.max.bytes`) or
    /// by the broker (the topic's `max.message.bytes`): sending it again cannot succeed.
    pub fn is_too_large(&self) -> bool {
        let Self::Delivery { source, .. } = self else {
            return false;
        };
        matches!(
            source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
        )
    }
}

/// librdkafka's default `receive.message.max.bytes`: the largest response a consumer accepts,
/// and so (less framing) the largest record it can receive.
const DEFAULT_RECEIVE_MAX_BYTES: u64 = 100_000_000;
/// The range librdkafka accepts for `message.max.bytes`.
const MESSAGE_MAX_BYTES_RANGE: (u64, u64) = (1000, 1_000_000_000);

/// The `message.max.bytes` a producer needs to write back any record a consumer with `options`
/// can receive: the consumer's `receive.message.max.bytes` (or its `fetch.max.bytes` + 512, or
/// the default), unless the operator set `message.max.bytes` (`None`: leave it).
fn message_max_bytes(options: &BTreeMap<String, String>) -> Option<String> {
    if options.contains_key("message.max.bytes") {
        return None;
    }
    let number = |key: &str| options.get(key).and_then(|v| v.trim().parse::<u64>().ok());
    let receivable = number("receive.message.max.bytes")
        .or_else(|| number("fetch.max.bytes").map(|f| (f + 512).max(DEFAULT_RECEIVE_MAX_BYTES)))
        .unwrap_or(DEFAULT_RECEIVE_MAX_BYTES);
    let (min, max) = MESSAGE_MAX_BYTES_RANGE;
    Some(receivable.clamp(min, max).to_string())
}

/// How long a record may wait for its acknowledgement, unless `kafka.options` says otherwise
/// (`message.timeout.ms`, or its alias `delivery.timeout.ms`). librdkafka's 300 s made a
/// dead-letter topic that never acknowledges halt its tenant only after 5 attempts of 5 minutes
/// each; with 30 s it halts in about 2.5 minutes, and an emit not acknowledged is retried
/// sooner.
pub const MESSAGE_TIMEOUT_MS: &str = "30000";

/// The settings of every producer of Burrow's: `options` first (those a producer reads), then
/// what delivery needs (idempotence, all replicas' acks), which they cannot weaken.
fn producer_config(brokers: &str, options: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Some(max) = message_max_bytes(options) {
        config.set("message.max.bytes", max);
    }
    if !options.contains_key("message.timeout.ms") && !options.contains_key("delivery.timeout.ms") {
        config.set("message.timeout.ms", MESSAGE_TIMEOUT_MS);
    }
    for (key, value) in super::scope::for_producer(options) {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1");
    config
}

/// The settings of an exactly-once tenant's transactional producer (see
/// `burrow_pool::transaction`): a producer's, with `transactional_id`.
pub fn transactional_config(
    brokers: &str,
    options: &BTreeMap<String, String>,
    transactional_id: &str,
) -> ClientConfig {
    let mut config = producer_config(brokers, options);
    config.set("transactional.id", transactional_id);
    config
}

/// The largest record a producer with `options` sends: `message.max.bytes`, less room for
/// the record's framing. A bigger one is refused before it reaches the broker.
pub fn max_record_bytes(options: &BTreeMap<String, String>) -> usize {
    const FRAMING: usize = 1024;
    let max = options
        .get("message.max.bytes")
        .cloned()
        .or_else(|| message_max_bytes(options))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1_000_000);
    max.saturating_sub(FRAMING)
}

/// An idempotent producer that reports success only once the broker has acknowledged.
///
/// Its librdkafka client is made on the first send (or [`Producer::start`]): a tenant that never
/// emits nor dead-letters — a filter, a passthrough — runs no producer threads at all. rdkafka's
/// producer keeps a polling thread whose `poll(100 ms)` spins through the last millisecond of
/// each window (its remaining time rounds down to 0 ms): about 1% of a core per idle producer,
/// measured as 14-17.5% of a core for 20 idle tenants.
///
/// The records of one send share one [`Acks`]: each record's delivery report counts it down,
/// and the send's future wakes once, when the last has come. rdkafka's `FutureProducer` gave
/// each record a oneshot channel, a boxed opaque and a future of its own: with it, producing
/// cost the pool's task 1.9 µs per emitted record (B4's coordinator column), most of it that
/// machinery rather than librdkafka's own `producev`.
#[derive(Clone)]
pub struct Producer {
    config: Arc<ClientConfig>,
    /// Its context rate-limits librdkafka's log lines and errors. Made once, on first use.
    inner: Arc<OnceLock<Result<ThreadedProducer<AckContext>, KafkaError>>>,
    /// How long a record may wait for room in librdkafka's queue before it counts as failed.
    queue_timeout: Duration,
}

/// How long a send waits before trying again when librdkafka's queue is full (as rdkafka's
/// `FutureProducer` does).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(100);

impl Producer {
    /// A producer for `brokers`, with `options` passed through to librdkafka first so Burrow's
    /// delivery settings cannot be weakened by them. Its `message.max.bytes` is sized to what a
    /// consumer with the same `options` can receive (see the module docs). Every setting is
    /// checked now; the client is made on first use.
    pub fn new(brokers: &str, options: &BTreeMap<String, String>) -> Result<Self, ProduceError> {
        let config = producer_config(brokers, options);
        config
            .create_native_config()
            .map_err(ProduceError::Create)?;
        Ok(Self {
            config: Arc::new(config),
            inner: Arc::default(),
            queue_timeout: Duration::from_secs(30),
        })
    }

    /// Makes the librdkafka client now, if it is not made yet: what `burrow validate` does to
    /// find what only making it reveals (a TLS file that does not load, ...).
    pub fn start(&self) -> Result<(), ProduceError> {
        self.client().map(|_| ())
    }

    fn client(&self) -> Result<&ThreadedProducer<AckContext>, ProduceError> {
        self.inner
            .get_or_init(|| self.config.create_with_context(AckContext::default()))
            .as_ref()
            .map_err(|e| ProduceError::Create(e.clone()))
    }

    /// Produces one record; resolves once the broker has acknowledged it.
    pub fn send(&self, record: &OutRecord) -> Sending {
        self.produce(std::slice::from_ref(record))
    }

    /// Hands `records` to librdkafka now, on the caller's thread (librdkafka copies them), and
    /// gives the wait for their acknowledgements: the first failure, if any (the other records
    /// may or may not have been written: callers retry the message). What a full queue does
    /// not take now is copied into the returned future, which tries again every
    /// [`QUEUE_FULL_PAUSE`] up to the queue timeout.
    ///
    /// A message's emits and a dead letter go this way: produced when the message's result is
    /// decided, with nothing but the count of acks left to wait on, rather than in a future
    /// first polled later, holding the records.
    pub fn produce(&self, records: &[OutRecord]) -> Sending {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Sending::Failed(Some(e)),
        };
        let acks = Arc::new(Acks::new(records.len()));
        for (i, record) in records.iter().enumerate() {
            match try_enqueue(client, record, &acks) {
                Ok(()) => {}
                Err(Refused::QueueFull(_)) => {
                    let rest = records[i..].to_vec();
                    let this = self.clone();
                    return Sending::Queueing(Box::pin(async move {
                        let client = this.client()?;
                        for record in &rest {
                            this.enqueue(client, record, &acks).await?;
                        }
                        AcksDone(acks).await
                    }));
                }
                Err(Refused::Other(e)) => return Sending::Failed(Some(e)),
            }
        }
        Sending::Queued(AcksDone(acks))
    }

    /// Hands `record` to librdkafka, its delivery to count down `acks`; while librdkafka's
    /// queue is full, tries again every [`QUEUE_FULL_PAUSE`] up to the queue timeout.
    async fn enqueue(
        &self,
        client: &ThreadedProducer<AckContext>,
        record: &OutRecord,
        acks: &Arc<Acks>,
    ) -> Result<(), ProduceError> {
        let started = Instant::now();
        loop {
            match try_enqueue(client, record, acks) {
                Ok(()) => return Ok(()),
                Err(Refused::QueueFull(_)) if started.elapsed() < self.queue_timeout => {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err(Refused::QueueFull(e) | Refused::Other(e)) => return Err(e),
            }
        }
    }
}

/// Why librdkafka did not take a record.
enum Refused {
    /// Its queue is full: worth trying again shortly.
    QueueFull(ProduceError),
    Other(ProduceError),
}

/// Hands `record` to librdkafka once, its delivery to count down `acks`.
fn try_enqueue(
    client: &ThreadedProducer<AckContext>,
    record: &OutRecord,
    acks: &Arc<Acks>,
) -> Result<(), Refused> {
    let mut out =
        BaseRecord::<[u8], [u8], Arc<Acks>>::with_opaque_to(&record.topic, Arc::clone(acks))
            .headers(record.kafka_headers());
    if let Some(value) = &record.value {
        out = out.payload(value);
    }
    if let Some(key) = &record.key {
        out = out.key(key);
    }
    let Err((source, _)) = client.send(out) else {
        return Ok(());
    };
    let queue_full = source.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull);
    let error = ProduceError::Delivery {
        topic: record.topic.clone(),
        source,
    };
    Err(if queue_full {
        Refused::QueueFull(error)
    } else {
        Refused::Other(error)
    })
}

/// Records handed to librdkafka by [`Producer::produce`]: resolves once all are acknowledged,
/// to the first failure, if any.
pub enum Sending {
    /// All in librdkafka's queue: only their acks to wait for.
    Queued(AcksDone),
    /// Some still waiting for room in the queue.
    Queueing(Pin<Box<dyn Future<Output = Result<(), ProduceError>> + Send>>),
    /// Refused at once.
    Failed(Option<ProduceError>),
}

impl Future for Sending {
    type Output = Result<(), ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Queued(acks) => Pin::new(acks).poll(cx),
            Self::Queueing(rest) => rest.as_mut().poll(cx),
            Self::Failed(error) => Poll::Ready(error.take().map_or(Ok(()), Err)),
        }
    }
}

/// The delivery reports one send waits for: how many are still to come, the first failure,
/// and the task to wake when the last has come.
struct Acks {
    left: AtomicUsize,
    failed: Mutex<Option<ProduceError>>,
    waker: AtomicWaker,
}

impl Acks {
    fn new(records: usize) -> Self {
        Self {
            left: AtomicUsize::new(records),
            failed: Mutex::new(None),
            waker: AtomicWaker::new(),
        }
    }

    /// One record's delivery report: a failure is kept if it is the first; the last report
    /// wakes the send.
    fn report(&self, failure: Option<ProduceError>) {
        if let Some(failure) = failure {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.get_or_insert(failure);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }
}

/// Resolves once every record of its [`Acks`] is reported: to the first failure, if any.
pub struct AcksDone(Arc<Acks>);

impl Future for AcksDone {
    type Output = Result<(), ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let acks = &self.0;
        if acks.left.load(Ordering::Acquire) > 0 {
            acks.waker.register(cx.waker());
            // A report between the load and the registration would be missed: look again.
            if acks.left.load(Ordering::Acquire) > 0 {
                return Poll::Pending;
            }
        }
        let mut failed = acks.failed.lock().unwrap_or_else(|e| e.into_inner());
        Poll::Ready(failed.take().map_or(Ok(()), Err))
    }
}

/// The producer's context: librdkafka's log lines and errors rate-limited as every client's
/// are, and each delivery report counted to its send's [`Acks`].
#[derive(Default)]
struct AckContext {
    log: LogContext,
}

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        let failure = result
            .as_ref()
            .err()
            .map(|(source, message)| ProduceError::Delivery {
                topic: message.topic().to_owned(),
                source: source.clone(),
            });
        acks.report(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure<'a>(headers: &'a [Header]) -> Failure<'a> {
        Failure {
            tenant: "orders",
            topic: "in",
            partition: 3,
            offset: 42,
            key: Some(b"k"),
            value: Some(b"{bad"),
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
            .find(|h| h.key == name)
            .and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok())
    }

    fn header_count(record: &OutRecord, name: &str) -> usize {
        record.headers.iter().filter(|h| h.key == name).count()
    }

    fn h(key: &str, value: Option<&[u8]>) -> Header {
        Header {
            key: key.into(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    /// A record's wait for its acknowledgement is Burrow's 30 s unless the operator set it,
    /// under either name.
    #[test]
    fn a_record_waits_30_s_for_its_ack_unless_the_operator_says() {
        let timeout = |options: &[(&str, &str)]| {
            let options = options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let config = producer_config("localhost:9092", &options);
            (
                config.get("message.timeout.ms").map(str::to_owned),
                config.get("delivery.timeout.ms").map(str::to_owned),
            )
        };
        assert_eq!(timeout(&[]), (Some(MESSAGE_TIMEOUT_MS.into()), None));
        assert_eq!(
            timeout(&[("message.timeout.ms", "120000")]),
            (Some("120000".into()), None)
        );
        assert_eq!(
            timeout(&[("delivery.timeout.ms", "60000")]),
            (None, Some("60000".into()))
        );
    }

    /// A dead letter keeps the original key, value and headers and says where and why.
    #[test]
    fn dead_letter_carries_original_and_reason() {
        let original = [h("trace-id", Some(b"t-1"))];
        let record = dead_letter("dlq", &failure(&original));
        assert_eq!(record.topic, "dlq");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"{bad"[..]));
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

    /// A null value and a null header value stay null in the dead letter (not `""`).
    #[test]
    fn dead_letter_keeps_null_value_and_null_header_values() {
        let original = [h("maybe", None), h("empty", Some(b""))];
        let record = dead_letter(
            "dlq",
            &Failure {
                value: None,
                ..failure(&original)
            },
        );
        assert_eq!(record.value, None, "null value stays null");
        assert_eq!(
            &record.headers[..2],
            &original,
            "null stays null, empty stays empty"
        );
    }

    /// An input carrying Burrow's header names yields a dead letter with exactly one of each,
    /// Burrow's: the input's copies are dropped, its other headers kept.
    #[test]
    fn dead_letter_headers_named_like_burrows_are_the_hosts_alone() {
        let original = [
            h(headers::ERROR, Some(b"forged")),
            h(headers::SOURCE_OFFSET, Some(b"999")),
            h(headers::TRUNCATED, Some(b"forged")),
            h("trace-id", Some(b"t-1")),
        ];
        let record = dead_letter("dlq", &failure(&original));
        for name in [headers::ERROR, headers::SOURCE_OFFSET] {
            assert_eq!(header_count(&record, name), 1, "{name} once");
        }
        assert_eq!(header_count(&record, headers::TRUNCATED), 0);
        assert_eq!(header(&record, headers::SOURCE_OFFSET), Some("42"));
        assert_eq!(
            header(&record, headers::ERROR),
            Some("expected value at line 1 column 2")
        );
        assert_eq!(record.headers[0], original[3], "other headers kept, first");
    }

    /// A reference record carries no key or value, Burrow's headers, the original's sizes and
    /// the reason it replaced the dead letter; a long error is cut on a character boundary.
    #[test]
    fn reference_record_says_where_why_and_how_big() {
        let original = [h("a", Some(b"123")), h("bc", None)];
        let long = "é".repeat(3000);
        let f = Failure {
            error: &long,
            ..failure(&original)
        };
        let record = reference_record("dlq", &f, "Message size too large");
        assert_eq!((&record.key, &record.value), (&None, &None));
        assert_eq!(
            header(&record, headers::TRUNCATED),
            Some("Message size too large")
        );
        assert_eq!(header(&record, headers::SOURCE_TOPIC), Some("in"));
        assert_eq!(header(&record, headers::SOURCE_PARTITION), Some("3"));
        assert_eq!(header(&record, headers::SOURCE_OFFSET), Some("42"));
        assert_eq!(header(&record, headers::KEY_SIZE), Some("1"));
        assert_eq!(header(&record, headers::VALUE_SIZE), Some("4"));
        assert_eq!(header(&record, headers::HEADERS_SIZE), Some("6"));
        assert_eq!(header(&record, headers::HEADERS_COUNT), Some("2"));
        let error = header(&record, headers::ERROR).expect("error header");
        assert_eq!(
            error.len(),
            REFERENCE_ERROR_BYTES,
            "cut to 4 KiB, whole characters"
        );
    }

    /// The producer may write what the consumer can receive: librdkafka's receive limit by
    /// default, the operator's receive limit if set, and the operator's `message.max.bytes` wins.
    #[test]
    fn producer_message_max_bytes_follows_what_the_consumer_receives() {
        let options = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            message_max_bytes(&options(&[])).as_deref(),
            Some("100000000")
        );
        assert_eq!(
            message_max_bytes(&options(&[("receive.message.max.bytes", "200000000")])).as_deref(),
            Some("200000000")
        );
        assert_eq!(
            message_max_bytes(&options(&[("message.max.bytes", "5000")])),
            None
        );
        assert!(
            Producer::new("127.0.0.1:9", &options(&[])).is_ok(),
            "librdkafka accepts it"
        );
    }
}
