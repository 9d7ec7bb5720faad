//! Topics, producers and read-back on the test broker.
//!
//! Tansu's reported high watermark can lag what it holds, so the real-broker tests never trust
//! it to say how many records there are: they count what they produced (each record carries a
//! unique id) and read until they have seen what they expect. The mock cluster's watermarks are
//! exact, so tests on it may also read a topic to its end ([`read_to_end`]) and wait for a group
//! to commit up to it ([`wait_all_committed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use burrow_pool::kafka::inspect::Inspector;

use crate::broker::Broker;
use crate::{DEADLINE, wait_for};

/// A Kafka round trip must be answered in this time.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);
/// The header that carries a produced record's unique id.
pub const ID_HEADER: &str = "test-id";

/// Creates `topic` with `partitions` partitions (replication 1, or up to 3 on a mock cluster
/// of several brokers).
pub fn create_topic(broker: &Broker, topic: &str, partitions: i32) -> anyhow::Result<()> {
    if broker.is_mock() {
        broker.create_mock_topic(topic, partitions)?;
    } else {
        create_topic_on_broker(broker, topic, partitions)?;
    }
    // The topic exists once metadata shows all its partitions.
    let inspector = Inspector::new(&broker.client())?.timeout(KAFKA_TIMEOUT);
    wait_for(
        &format!("topic {topic} to show {partitions} partitions"),
        || {
            Ok(
                (inspector.partitions(topic).map_or(0, |p| p.len()) == partitions as usize)
                    .then_some(()),
            )
        },
    )
}

/// CreateTopics through the admin API.
fn create_topic_on_broker(broker: &Broker, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = broker
        .client()
        .create()
        .context("creating the admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Creates each `(topic, partitions)`.
pub fn create_topics(broker: &Broker, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    for (topic, partitions) in topics {
        create_topic(broker, topic, *partitions)?;
    }
    Ok(())
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Out {
    /// `None`: the producer's partitioner picks (by key, or sticky without one).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Headers whose names are any bytes (not UTF-8, say), after `headers`.
    pub raw_headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Out {
    /// A record with `value`, no key, no headers.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Record number `id`: key `k{id}`, value `{"id":id}` (a JSON object, valid for every
    /// plugin) and header `test-id: id`, so it can be recognised wherever it ends up.
    pub fn numbered(id: u64) -> Self {
        Self::value(format!(r#"{{"id":{id}}}"#))
            .key(format!("k{id}"))
            .header(ID_HEADER, id.to_string())
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), Some(value.into())));
        self
    }

    /// A header with a null value (not an empty one).
    pub fn null_header(mut self, name: &str) -> Self {
        self.headers.push((name.to_owned(), None));
        self
    }

    /// A header whose name is any bytes: Kafka allows it, any producer can send it.
    pub fn raw_header(mut self, name: &[u8], value: &[u8]) -> Self {
        self.raw_headers.push((name.to_vec(), value.to_vec()));
        self
    }

    /// A message for the chaos plugin: `burrow-action: action`.
    pub fn action(self, action: &str) -> Self {
        self.header("burrow-action", action)
    }

    /// A record asking the chaos plugin for `action`, its value saying so.
    pub fn chaos(action: &str) -> Self {
        Self::value(format!("payload for {action}")).action(action)
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Where a produced record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Collects delivery reports by record index.
struct Deliveries(Mutex<Vec<Option<Result<Position, String>>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let report = match result {
            Ok(m) => Ok(Position {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.to_string()),
        };
        let mut reports = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = reports.get_mut(*index) {
            *slot = Some(report);
        }
    }
}

/// A compression codec for [`produce_with`]: librdkafka's `compression.type` names.
pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// How [`produce_opts`] produces.
#[derive(Debug, Clone)]
pub struct ProduceOptions<'a> {
    /// librdkafka's `compression.type`: one of [`CODECS`].
    pub codec: &'a str,
    /// Each record in a batch of its own (flushed before the next is sent), so a consumer's
    /// fetch can stop after any record.
    pub batch_each: bool,
    /// The producer's `message.max.bytes`, for records larger than librdkafka's 1 MB default.
    pub max_message_bytes: Option<usize>,
}

impl Default for ProduceOptions<'_> {
    fn default() -> Self {
        Self {
            codec: "none",
            batch_each: false,
            max_message_bytes: None,
        }
    }
}

/// Produces `records` to `topic`, every one acknowledged; returns where each landed, in order.
pub fn produce(broker: &Broker, topic: &str, records: &[Out]) -> anyhow::Result<Vec<Position>> {
    produce_opts(broker, topic, records, &ProduceOptions::default())
}

/// [`produce`] compressed with `codec` (one of [`CODECS`]).
pub fn produce_with(
    broker: &Broker,
    topic: &str,
    records: &[Out],
    codec: &str,
) -> anyhow::Result<Vec<Position>> {
    let options = ProduceOptions {
        codec,
        ..ProduceOptions::default()
    };
    produce_opts(broker, topic, records, &options)
}

/// [`produce`] as `options` say.
pub fn produce_opts(
    broker: &Broker,
    topic: &str,
    records: &[Out],
    options: &ProduceOptions<'_>,
) -> anyhow::Result<Vec<Position>> {
    let mut config = broker.client();
    config
        .set("compression.type", options.codec)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    if let Some(max) = options.max_message_bytes {
        config.set("message.max.bytes", max.to_string());
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries(Mutex::new(vec![None; records.len()])))
        .context("creating the test producer")?;
    for (index, r) in records.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        for (name, value) in &r.raw_headers {
            headers = with_raw_header(headers, name, value)?;
        }
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(index)).headers(headers);
        if let Some(value) = &r.value {
            record = record.payload(value);
        }
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
            }
        }
        if options.batch_each {
            producer
                .flush(DEADLINE)
                .with_context(|| format!("flushing record {index} to {topic}"))?;
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(DEADLINE)
        .with_context(|| format!("flushing the producer of {topic}"))?;
    let reports = std::mem::take(
        &mut *producer
            .context()
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    reports
        .into_iter()
        .enumerate()
        .map(|(i, report)| match report {
            Some(Ok(position)) => Ok(position),
            Some(Err(e)) => bail!("record {i} to {topic} failed: {e}"),
            None => bail!("record {i} to {topic}: no delivery report"),
        })
        .collect()
}

/// `headers` with a header `name` holding `value`, whatever bytes `name` is: rdkafka's safe
/// API takes names as `&str`, so a non-UTF-8 name needs librdkafka's C call.
#[allow(unsafe_code)]
pub fn with_raw_header(
    headers: OwnedHeaders,
    name: &[u8],
    value: &[u8],
) -> anyhow::Result<OwnedHeaders> {
    let native = std::ptr::from_ref(headers.as_borrowed())
        .cast_mut()
        .cast::<rdkafka::bindings::rd_kafka_headers_t>();
    let (name_len, value_len) = (isize::try_from(name.len())?, isize::try_from(value.len())?);
    // SAFETY: `native` is the live header list `headers` owns (rdkafka's `BorrowedHeaders` is a
    // view of that very pointer) and nobody else holds it yet; librdkafka copies `name` and
    // `value`, whose lengths are given, into it.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            name_len,
            value.as_ptr().cast(),
            value_len,
        )
    };
    anyhow::ensure!(
        err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        "adding a raw header: {err:?}"
    );
    Ok(headers)
}

/// Records `0..n` ([`Out::numbered`]), each with `action` for the chaos plugin if given.
pub fn numbered(ids: std::ops::Range<u64>, action: Option<&str>) -> Vec<Out> {
    ids.map(|id| match action {
        Some(action) => Out::numbered(id).action(action),
        None => Out::numbered(id),
    })
    .collect()
}

/// The offset one past the last record produced to each partition: what a group that has
/// processed everything must have committed.
pub fn ends_of(positions: &[Position]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for p in positions {
        let end = ends.entry(p.partition).or_insert(0);
        *end = (*end).max(p.offset + 1);
    }
    ends
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The value of the first header named `name`, as text (`None` if absent or null).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The values of every header named `name`, in order (`None` for a null value).
    pub fn header_values(&self, name: &str) -> Vec<Option<String>> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| {
                v.as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    /// How many headers are named `name`.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }

    /// The value as text (empty if null).
    pub fn value_text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }

    /// The id of the produced record this one came from: its `test-id` header, or else the
    /// `id` of its `{"id":N}` value.
    pub fn id(&self) -> Option<u64> {
        if let Some(id) = self.header(ID_HEADER) {
            return id.parse().ok();
        }
        let text = self.value_text();
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["id"].as_u64()
    }
}

/// A reader of every partition of a topic from the beginning, accumulating what it has read.
///
/// It reads `read_committed`, but on a broker that does not hide aborted transactions (Tansu)
/// it sees their records too: to count what a `read_committed` reader must see, use
/// [`crate::log`].
pub struct Reader {
    topic: String,
    client: ClientConfig,
    consumer: BaseConsumer,
    /// Everything read so far, in arrival order.
    pub records: Vec<Record>,
}

impl Reader {
    /// Starts reading `topic` (which must exist) from the beginning of every partition.
    pub fn new(broker: &Broker, topic: &str) -> anyhow::Result<Self> {
        let client = broker.client();
        Ok(Self {
            topic: topic.to_owned(),
            consumer: Self::consumer(&client, topic)?,
            client,
            records: Vec::new(),
        })
    }

    fn consumer(client: &ClientConfig, topic: &str) -> anyhow::Result<BaseConsumer> {
        let consumer: BaseConsumer = client
            .clone()
            .set("group.id", crate::unique("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .context("creating the reader")?;
        let mut tpl = TopicPartitionList::new();
        for p in Inspector::new(client)?.partitions(topic)? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Forgets what it read and starts again from the beginning with a new consumer.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.consumer = Self::consumer(&self.client, &self.topic)?;
        self.records.clear();
        Ok(())
    }

    /// Reads what arrives within `wait`; returns how many records it read.
    pub fn poll_for(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let end = Instant::now() + wait;
        let before = self.records.len();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(self.records.len() - before);
            }
            let Some(message) = self.consumer.poll(left.min(Duration::from_millis(100))) else {
                continue;
            };
            let m = message.with_context(|| format!("reading {}", self.topic))?;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            self.records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }

    /// Reads until `done(records so far)` holds; fails after [`DEADLINE`] saying how many
    /// records it had.
    pub fn read_until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> anyhow::Result<&[Record]> {
        let end = Instant::now() + DEADLINE;
        while !done(&self.records) {
            if Instant::now() > end {
                bail!(
                    "timed out after {DEADLINE:?} reading {} for {what}: {} records read",
                    self.topic,
                    self.records.len()
                );
            }
            self.poll_for(Duration::from_millis(200))?;
        }
        Ok(&self.records)
    }

    /// Reads until at least `n` records are in.
    pub fn read_at_least(&mut self, n: usize) -> anyhow::Result<&[Record]> {
        self.read_until(&format!("{n} records"), |r| r.len() >= n)
    }

    /// Reads until every id in `ids` has been seen at least once.
    ///
    /// A Tansu consumer has been seen to stop short of records that a new consumer reads, so a
    /// reader that times out is replaced once by a fresh one from the beginning. Ids the fresh
    /// one misses too are lost, and the error lists the first of them.
    pub fn read_ids(&mut self, ids: &BTreeSet<u64>) -> anyhow::Result<&[Record]> {
        let stalled = match self.try_read_ids(ids) {
            Ok(()) => return Ok(&self.records),
            Err(stalled) => stalled,
        };
        println!("{stalled}; reading {} again from the beginning", self.topic);
        self.restart()?;
        if let Err(again) = self.try_read_ids(ids) {
            let seen: BTreeSet<u64> = self.records.iter().filter_map(Record::id).collect();
            let missing: Vec<&u64> = ids.difference(&seen).take(10).collect();
            bail!("{again}; ids missing (the first 10): {missing:?}");
        }
        Ok(&self.records)
    }

    fn try_read_ids(&mut self, ids: &BTreeSet<u64>) -> anyhow::Result<()> {
        // Only new records are looked at each round: a run may read a million.
        let mut missing = ids.clone();
        let mut checked = 0;
        self.read_until(&format!("{} distinct ids", ids.len()), |records| {
            for id in records[checked..].iter().filter_map(Record::id) {
                missing.remove(&id);
            }
            checked = records.len();
            missing.is_empty()
        })?;
        Ok(())
    }

    /// After the expected records are in, keeps reading until nothing new arrives for
    /// `quiet`, so that late duplicates are counted too.
    pub fn settle(&mut self, quiet: Duration) -> anyhow::Result<&[Record]> {
        let end = Instant::now() + DEADLINE;
        while self.poll_for(quiet)? > 0 {
            if Instant::now() > end {
                bail!("{} never went quiet", self.topic);
            }
        }
        Ok(&self.records)
    }
}

/// Whether `broker` hides aborted transactions from `read_committed` readers, as Kafka's
/// protocol says it must (KIP-98): a transaction of one record is aborted after the record was
/// flushed to the broker, then one of one record is committed, and a reader reads the topic.
/// Tansu 0.6.0 and librdkafka's mock cluster do not: the reader sees both records. (So what a
/// `read_committed` reader must see is computed from the log by [`crate::log`]; this probe
/// pins the mock cluster's behaviour for the pool's transaction tests.)
pub fn hides_aborted_transactions(broker: &Broker) -> anyhow::Result<bool> {
    use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
    let topic = crate::unique("abort-probe");
    create_topic(broker, &topic, 1)?;
    // Threaded: an abort waits for delivery reports that a polling thread serves.
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client()
        .set("transactional.id", &topic)
        .create()
        .context("creating the probe's transactional producer")?;
    producer.init_transactions(KAFKA_TIMEOUT)?;
    for (value, commit) in [("aborted", false), ("committed", true)] {
        producer.begin_transaction()?;
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(value.as_bytes()))
            .map_err(|(e, _)| e)?;
        producer.flush(KAFKA_TIMEOUT)?;
        if commit {
            producer.commit_transaction(KAFKA_TIMEOUT)?;
        } else {
            producer.abort_transaction(KAFKA_TIMEOUT)?;
        }
    }
    let mut reader = Reader::new(broker, &topic)?;
    reader.read_until("the committed record", |records| {
        records.iter().any(|r| r.value_text() == "committed")
    })?;
    reader.settle(Duration::from_secs(1))?;
    Ok(!reader.records.iter().any(|r| r.value_text() == "aborted"))
}

/// Whether `broker` keeps the input offsets a committed transaction carried, whatever other
/// producers do, as Kafka does: producer A leaves a transaction open on a topic; producer B
/// commits one to the same topic carrying offset 10 for a group, begins its next one (offset
/// 20), and is replaced by a new producer of its transactional id (which aborts it); A commits.
/// The group must then be at 10. Tansu 0.6.0 is not: it puts off applying B's offsets while A's
/// transaction is open, and B's next transaction drops them, so the group stays where it was
/// (measured; with no next transaction they land when A ends). A host killed then restarts
/// below work whose records are committed, and runs it again: exactly-once duplicates in the
/// log that no reader can tell from the pool's own.
pub fn keeps_transaction_offsets(broker: &Broker) -> anyhow::Result<bool> {
    use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
    type Transactional = ThreadedProducer<DefaultProducerContext>;
    let name = crate::unique("offsets-probe");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    create_topics(broker, &[(&input, 1), (&output, 1)])?;
    let group: BaseConsumer = broker
        .client()
        .set("group.id", &name)
        .create()
        .context("creating the probe's group handle")?;
    let group_metadata = group
        .group_metadata()
        .context("the probe's consumer has no group metadata")?;
    let transactional = |id: &str| -> anyhow::Result<Transactional> {
        let producer: Transactional = broker
            .client()
            .set("transactional.id", id)
            .create()
            .context("creating a probe producer")?;
        producer.init_transactions(KAFKA_TIMEOUT)?;
        Ok(producer)
    };
    let send = |producer: &Transactional, offset: Option<i64>| -> anyhow::Result<()> {
        producer.begin_transaction()?;
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&output).payload(b"probe".as_slice()))
            .map_err(|(e, _)| e)?;
        producer.flush(KAFKA_TIMEOUT)?;
        if let Some(offset) = offset {
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset(&input, 0, Offset::Offset(offset))?;
            producer.send_offsets_to_transaction(&offsets, &group_metadata, KAFKA_TIMEOUT)?;
        }
        Ok(())
    };
    let (a_id, b_id) = (format!("{name}-a"), format!("{name}-b"));
    let a = transactional(&a_id)?;
    let b = transactional(&b_id)?;
    send(&a, None)?;
    send(&b, Some(10))?;
    b.commit_transaction(KAFKA_TIMEOUT)?;
    send(&b, Some(20))?;
    drop(b);
    let b_again = transactional(&b_id)?;
    a.commit_transaction(KAFKA_TIMEOUT)?;
    // Kafka applies a transaction's offsets as its markers land: give them a few seconds.
    let kept = crate::wait_for_within(Duration::from_secs(5), "the probe's offsets", || {
        let at = committed(broker, &name, &input)?.get(&0).copied();
        Ok((at == Some(10)).then_some(()))
    });
    drop(b_again);
    // Not there in time: look once more, so that an error reading offsets fails the probe.
    Ok(kept.is_ok() || committed(broker, &name, &input)?.get(&0) == Some(&10))
}

/// Every record in `topic` once it holds at least `n` (then nothing more for a second).
pub fn read_exactly_after(broker: &Broker, topic: &str, n: usize) -> anyhow::Result<Vec<Record>> {
    let mut reader = Reader::new(broker, topic)?;
    reader.read_at_least(n)?;
    reader.settle(Duration::from_secs(1))?;
    Ok(reader.records)
}

/// Every record in `topic` up to the end offsets it reports now, in partition then offset
/// order. Exact on the mock cluster; Tansu's end offsets can lag, so real-broker tests wait for
/// what they produced instead ([`read_exactly_after`]).
pub fn read_to_end(broker: &Broker, topic: &str) -> anyhow::Result<Vec<Record>> {
    let ends = end_offsets(broker, topic)?;
    let mut reader = Reader::new(broker, topic)?;
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    reader.read_until(&format!("the end offsets {ends:?}"), |records| {
        for r in records {
            let at = reached.entry(r.partition).or_insert(0);
            *at = (*at).max(r.offset + 1);
        }
        ends.iter()
            .all(|(p, end)| reached.get(p).copied().unwrap_or(0) >= *end)
    })?;
    let mut records: Vec<Record> = std::mem::take(&mut reader.records)
        .into_iter()
        .filter(|r| ends.get(&r.partition).is_some_and(|end| r.offset < *end))
        .collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// The end offset (high watermark) of each partition of `topic`.
pub fn end_offsets(broker: &Broker, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    Ok(Inspector::new(&broker.client())?
        .timeout(KAFKA_TIMEOUT)
        .end_offsets(topic)?)
}

/// The offsets `group` has committed on each partition of `topic`; partitions without a
/// commit are left out.
pub fn committed(broker: &Broker, group: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    Ok(Inspector::for_group(&broker.client(), group)?
        .timeout(KAFKA_TIMEOUT)
        .committed(topic)?)
}

/// Waits until `group` has committed every partition of `topic` up to the end offsets it
/// reports now (see [`wait_committed`]); for the mock cluster, whose end offsets are exact.
pub fn wait_all_committed(broker: &Broker, group: &str, topic: &str) -> anyhow::Result<()> {
    let ends = end_offsets(broker, topic)?;
    wait_committed(broker, group, topic, &ends)
}

/// Waits until `group` has committed exactly `ends` on `topic` (partitions not in `ends` must
/// have no commit or a commit at 0), and fails if it commits past them.
pub fn wait_committed(
    broker: &Broker,
    group: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let mut last = BTreeMap::new();
    let outcome = wait_for(
        &format!("group {group} to commit {topic} up to {ends:?}"),
        || {
            last = committed(broker, group, topic)?;
            for (p, offset) in &last {
                let end = ends.get(p).copied().unwrap_or(0);
                if *offset > end {
                    // Past the end is wrong at once, not something to wait out.
                    return Ok(Some(Err(anyhow::anyhow!(
                        "partition {p} committed at {offset}, past its end {end}"
                    ))));
                }
            }
            let complete = ends
                .iter()
                .all(|(p, end)| last.get(p).copied().unwrap_or(0) == *end);
            Ok(complete.then_some(Ok(())))
        },
    );
    outcome
        .and_then(|r| r)
        .with_context(|| format!("last committed: {last:?}"))
}

/// The record ids produced and where each landed (ids from [`ID_HEADER`]).
pub fn positions_by_id(records: &[Out], positions: &[Position]) -> BTreeMap<u64, Position> {
    records
        .iter()
        .zip(positions)
        .filter_map(|(r, p)| {
            let (_, id) = r.headers.iter().find(|(k, _)| k == ID_HEADER)?;
            let id = String::from_utf8_lossy(id.as_deref()?).parse().ok()?;
            Some((id, *p))
        })
        .collect()
}

/// What came out of a run in which a host may have died: per produced id, how often it
/// appeared downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Ids produced.
    pub produced: usize,
    /// Ids never seen downstream.
    pub lost: Vec<u64>,
    /// Extra copies downstream, summed over ids.
    pub duplicates: usize,
    /// Ids seen more than once although their offset was below the committed offset at the
    /// crash: they were done and committed, and must never run again.
    pub duplicated_below_commit: Vec<u64>,
    /// Ids seen downstream that were never produced.
    pub unknown: Vec<u64>,
}

impl Delivery {
    /// Compares what was produced with what came out, given the group's committed offsets at
    /// the moment of the crash (empty when nothing crashed).
    pub fn of(
        produced: &BTreeMap<u64, Position>,
        downstream: &[Record],
        committed_at_crash: &BTreeMap<i32, i64>,
    ) -> Self {
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for id in downstream.iter().filter_map(Record::id) {
            *seen.entry(id).or_default() += 1;
        }
        let lost = produced
            .keys()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        let unknown = seen
            .keys()
            .filter(|id| !produced.contains_key(id))
            .copied()
            .collect();
        let duplicates = seen.values().map(|n| n.saturating_sub(1)).sum();
        let duplicated_below_commit = seen
            .iter()
            .filter(|&(_, n)| *n > 1)
            .filter(|&(id, _)| {
                produced.get(id).is_some_and(|at| {
                    at.offset < committed_at_crash.get(&at.partition).copied().unwrap_or(0)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        Self {
            produced: produced.len(),
            lost,
            duplicates,
            duplicated_below_commit,
            unknown,
        }
    }

    /// Fails unless nothing was lost, nothing unknown appeared, and every duplicate was of a
    /// message at or above the committed offset (in flight at the crash).
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lost.is_empty()
                && self.unknown.is_empty()
                && self.duplicated_below_commit.is_empty(),
            "{} lost (first: {:?}), {} unknown, {} duplicated although committed (first: {:?})",
            self.lost.len(),
            self.lost.iter().take(10).collect::<Vec<_>>(),
            self.unknown.len(),
            self.duplicated_below_commit.len(),
            self.duplicated_below_commit
                .iter()
                .take(10)
                .collect::<Vec<_>>()
        );
        Ok(())
    }
}
