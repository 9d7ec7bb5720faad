//! A topic's log read as the broker stores it, and what a `read_committed` reader must see of
//! it, computed here rather than taken from the broker.
//!
//! Why: Tansu 0.6.0 writes the COMMIT and ABORT markers of transactions into the log, but hands
//! the records of aborted transactions to `read_committed` readers all the same (it sends no
//! aborted-transaction list in its Fetch responses). A consumer on it cannot tell an aborted
//! record from a committed one, so a test that must count duplicates under exactly-once reads
//! the log itself, markers included, and applies Kafka's rule (KIP-98) here:
//!
//! - A record outside a transaction is visible as it comes.
//! - A transactional batch's records are held, per producer id, until that producer's control
//!   marker in the same partition: COMMIT makes them visible, ABORT drops them.
//! - Records whose producer has no marker by the end of the log belong to an open transaction
//!   and are left out (a Kafka reader would wait at the last stable offset before them).
//! - Records held for a producer id that writes transactional records of a newer epoch with no
//!   marker between were fenced, and are dropped: Kafka's transaction coordinator writes an
//!   ABORT there when the producer's transactional id is initialised again (Tansu 0.6.0 does
//!   too, as measured), but a log without it must not show them.
//!
//! Each visible record keeps its offset, and they come back by partition, then offset: the
//! order a Kafka `read_committed` consumer delivers them in (it reads up to the last stable
//! offset and skips aborted records, in offset order).
//!
//! It speaks the protocol itself (the `kafka-protocol` crate's requests and record-batch
//! decoder) over a plain blocking `TcpStream`: ApiVersions, then Metadata for each partition's
//! leader, then Fetch from offset 0 at `read_uncommitted` (control batches included) until a
//! fetch brings nothing more and the high watermark is reached. Plaintext only: it refuses a
//! TLS broker. Headers come through the decoder's map, so a header name must be UTF-8 (else the
//! read fails, naming the batch) and a name repeated in one record keeps its last value: enough
//! for the records Burrow writes and the kit's ids; tests of odd headers read with
//! [`crate::kafka::Reader`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{Context, bail};
use kafka_protocol::error::ParseResponseErrorCode as _;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{self, RecordBatchDecoder};

use crate::broker::Broker;
use crate::kafka::Record;

/// A request must be answered in this time.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How much one Fetch asks of a partition: a batch larger than this still comes whole (KIP-74).
const FETCH_BYTES: i32 = 8 << 20;
/// How long a Fetch may wait for a first byte. Not 0: Tansu 0.6.0 answers a Fetch whose
/// `max_wait_ms` or `min_bytes` is 0 with no partitions at all (it looks for data only while
/// it has waited less than `max_wait_ms` and holds fewer than `min_bytes`), and it waits this
/// long on every Fetch, data or not.
const FETCH_WAIT_MS: i32 = 10;
/// The largest response frame accepted: a bound against reading garbage as a length.
const MAX_FRAME: usize = 256 << 20;
/// Fetch from v4 (the first with `isolation_level`) to v12 (the last that names topics; v13
/// names them by id).
const FETCH_VERSIONS: RangeInclusive<i16> = 4..=12;
/// Metadata from v1 (the first with a partition's leader) to v12.
const METADATA_VERSIONS: RangeInclusive<i16> = 1..=12;
/// ApiVersions v3: the version librdkafka sends first, which every current broker answers.
const API_VERSIONS_VERSION: i16 = 3;
/// Fetch's `isolation_level`: everything, open and aborted transactions and markers included.
const READ_UNCOMMITTED: i8 = 0;
/// A control record's key: `version: int16, type: int16`; the types.
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// What a `read_committed` reader sees of a topic, with what it must not see, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The visible records, by partition, then offset.
    pub records: Vec<Record>,
    /// Records of transactions that ended in ABORT.
    pub aborted: usize,
    /// Records of a transaction its producer id left for a newer epoch with no marker.
    pub fenced: usize,
    /// Records of transactions with no marker by the end of the log.
    pub open: usize,
    /// Every record in the log that is not a marker: what a `read_uncommitted` reader sees.
    pub stored: usize,
    /// COMMIT and ABORT markers read.
    pub markers: usize,
}

/// The records a `read_committed` reader sees of `topic`, computed from its log: see the
/// module docs.
pub fn read_committed(broker: &Broker, topic: &str) -> anyhow::Result<Vec<Record>> {
    Ok(read(broker, topic)?.records)
}

/// [`read_committed`] with the records it left out counted.
pub fn read(broker: &Broker, topic: &str) -> anyhow::Result<Committed> {
    if broker
        .client_options
        .iter()
        .any(|(key, value)| key == "security.protocol" && value != "plaintext")
    {
        bail!(
            "the log reader speaks plaintext only; {} uses TLS",
            broker.bootstrap
        );
    }
    let bootstrap = broker
        .bootstrap
        .split(',')
        .next()
        .context("no bootstrap server")?
        .trim();
    let mut first = Connection::open(bootstrap)?;
    let leaders = first.leaders(topic)?;
    let mut connections: HashMap<String, Connection> = HashMap::new();
    connections.insert(bootstrap.to_owned(), first);
    let mut committed = Committed::default();
    for (partition, leader) in leaders {
        let connection = match connections.entry(leader.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(Connection::open(&leader)?),
        };
        let log = connection
            .fetch_all(topic, partition)
            .with_context(|| format!("reading {topic}/{partition} from {leader}"))?;
        committed.add(partition, log);
    }
    Ok(committed)
}

impl Committed {
    /// Applies the rule of the module docs to one partition's records, in log order.
    fn add(&mut self, partition: i32, log: Vec<records::Record>) {
        /// One producer's open transaction in this partition: its epoch and records.
        struct Open {
            epoch: i16,
            records: Vec<Record>,
        }
        let mut open: HashMap<i64, Open> = HashMap::new();
        let first = self.records.len();
        for record in log {
            if record.control {
                let kind = control_type(record.key.as_deref());
                // Other control types (none in a topic Kafka clients write to) end nothing.
                if kind != Some(COMMIT) && kind != Some(ABORT) {
                    continue;
                }
                self.markers += 1;
                let held = open.remove(&record.producer_id).map(|o| o.records);
                let held = held.unwrap_or_default();
                if kind == Some(COMMIT) {
                    self.records.extend(held);
                } else {
                    self.aborted += held.len();
                }
                continue;
            }
            self.stored += 1;
            let (producer, epoch) = (record.producer_id, record.producer_epoch);
            let record_here = Record {
                partition,
                offset: record.offset,
                key: record.key.map(|k| k.to_vec()),
                value: record.value.map(|v| v.to_vec()),
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value.map(|v| v.to_vec())))
                    .collect(),
            };
            if !record.transactional {
                self.records.push(record_here);
                continue;
            }
            let held = open.entry(producer).or_insert(Open {
                epoch,
                records: Vec::new(),
            });
            if epoch > held.epoch {
                self.fenced += held.records.len();
                held.records.clear();
                held.epoch = epoch;
            }
            held.records.push(record_here);
        }
        self.open += open.values().map(|o| o.records.len()).sum::<usize>();
        self.records[first..].sort_by_key(|r| r.offset);
    }
}

/// A control record's type from its key (`version: int16, type: int16`), if it has one.
fn control_type(key: Option<&[u8]>) -> Option<i16> {
    Some(i16::from_be_bytes(key?.get(2..4)?.try_into().ok()?))
}

/// One broker connection: size-prefixed request and response frames, one at a time.
struct Connection {
    address: String,
    stream: TcpStream,
    correlation: i32,
    /// The versions the broker supports, by API key, from its ApiVersions answer.
    versions: HashMap<i16, RangeInclusive<i16>>,
}

impl Connection {
    /// Connects to `address` (`host:port`) and asks which API versions it speaks.
    fn open(address: &str) -> anyhow::Result<Self> {
        let socket = address
            .to_socket_addrs()
            .with_context(|| format!("resolving {address}"))?
            .next()
            .with_context(|| format!("{address} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&socket, TIMEOUT)
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut connection = Self {
            address: address.to_owned(),
            stream,
            correlation: 0,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("burrow-e2e"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let answer: ApiVersionsResponse =
            connection.call(ApiKey::ApiVersions, API_VERSIONS_VERSION, &request)?;
        check(answer.error_code, "ApiVersions")?;
        connection.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version..=k.max_version))
            .collect();
        Ok(connection)
    }

    /// The highest version of `key` both sides speak, within `ours`.
    fn version(&self, key: ApiKey, ours: RangeInclusive<i16>) -> anyhow::Result<i16> {
        let theirs = self
            .versions
            .get(&(key as i16))
            .with_context(|| format!("{} does not speak {key:?}", self.address))?;
        let version = (*ours.end()).min(*theirs.end());
        if version < *ours.start() || version < *theirs.start() {
            bail!(
                "{} speaks {key:?} {theirs:?}, the log reader {ours:?}",
                self.address
            );
        }
        Ok(version)
    }

    /// Each partition of `topic` with its leader's address.
    fn leaders(&mut self, topic: &str) -> anyhow::Result<BTreeMap<i32, String>> {
        let version = self.version(ApiKey::Metadata, METADATA_VERSIONS)?;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
            ]))
            .with_allow_auto_topic_creation(false);
        let answer: MetadataResponse = self.call(ApiKey::Metadata, version, &request)?;
        let brokers: HashMap<i32, String> = answer
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        let found = answer
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .with_context(|| format!("metadata does not list {topic}"))?;
        check(found.error_code, &format!("metadata of {topic}"))?;
        found
            .partitions
            .iter()
            .map(|p| {
                check(
                    p.error_code,
                    &format!("metadata of {topic}/{}", p.partition_index),
                )?;
                let leader = brokers.get(&p.leader_id.0).with_context(|| {
                    format!(
                        "{topic}/{}: leader {} is not among the brokers",
                        p.partition_index, p.leader_id.0
                    )
                })?;
                Ok((p.partition_index, leader.clone()))
            })
            .collect()
    }

    /// Every record of `topic`/`partition` from offset 0, in log order, control records
    /// included, until a fetch brings nothing more at or past the high watermark.
    fn fetch_all(&mut self, topic: &str, partition: i32) -> anyhow::Result<Vec<records::Record>> {
        let version = self.version(ApiKey::Fetch, FETCH_VERSIONS)?;
        let mut log = Vec::new();
        let mut offset = 0;
        loop {
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_BYTES)
                .with_isolation_level(READ_UNCOMMITTED)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(FETCH_BYTES),
                        ]),
                ]);
            let answer: FetchResponse = self.call(ApiKey::Fetch, version, &request)?;
            check(answer.error_code, "Fetch")?;
            let data = answer
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == partition)
                .context("the Fetch answer leaves the partition out")?;
            check(data.error_code, &format!("Fetch at offset {offset}"))?;
            let before = offset;
            let mut raw = data.records.unwrap_or_default();
            // A response may end in part of a batch (cut at the byte limit): stop before it.
            while let Some(length) = whole_batch(&raw) {
                let mut one = raw.split_to(length);
                let batch = RecordBatchDecoder::decode(&mut one)
                    .with_context(|| format!("decoding a batch at offset {offset}"))?;
                if let Some(last) = batch.records.last() {
                    offset = offset.max(last.offset + 1);
                }
                log.extend(batch.records);
            }
            if offset == before {
                if offset >= data.high_watermark {
                    return Ok(log);
                }
                bail!(
                    "a fetch at offset {offset} brought nothing although the high watermark is {}",
                    data.high_watermark
                );
            }
        }
    }

    /// Sends `request` as `key` at `version` and reads its answer.
    fn call<Q, A>(&mut self, key: ApiKey, version: i16, request: &Q) -> anyhow::Result<A>
    where
        Q: Encodable + HeaderVersion,
        A: Decodable + HeaderVersion,
    {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("burrow-e2e-log")));
        let mut frame = vec![0u8; 4];
        header.encode(&mut frame, Q::header_version(version))?;
        request.encode(&mut frame, version)?;
        let length = i32::try_from(frame.len() - 4).context("request too large")?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let what = || format!("{key:?} v{version} to {}", self.address);
        self.stream.write_all(&frame).with_context(what)?;

        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).with_context(what)?;
        let length = usize::try_from(i32::from_be_bytes(length)).with_context(what)?;
        if length > MAX_FRAME {
            bail!("{}: a frame of {length} bytes", what());
        }
        let mut answer = vec![0u8; length];
        self.stream.read_exact(&mut answer).with_context(what)?;
        let mut answer = answer.as_slice();
        let header = ResponseHeader::decode(&mut answer, A::header_version(version))?;
        if header.correlation_id != self.correlation {
            bail!(
                "{}: answer to request {}, expected {}",
                what(),
                header.correlation_id,
                self.correlation
            );
        }
        A::decode(&mut answer, version).with_context(what)
    }
}

/// The length of the record batch at the start of `raw` if all of it is there: its header is
/// `base_offset: int64, batch_length: int32`, then `batch_length` bytes.
fn whole_batch(raw: &[u8]) -> Option<usize> {
    let length = i32::from_be_bytes(raw.get(8..12)?.try_into().ok()?);
    let whole = 12 + usize::try_from(length).ok()?;
    (raw.len() >= whole).then_some(whole)
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Fails on a Kafka error code, naming it and `what` it answered.
fn check(code: i16, what: &str) -> anyhow::Result<()> {
    match code.err() {
        None if code == 0 => Ok(()),
        Some(error) => bail!("{what}: {error:?} ({code})"),
        None => bail!("{what}: error {code}"),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record as Raw, TimestampType};

    use super::*;

    /// A data record at `offset`: from `producer` (epoch 0) in a transaction, or plain for
    /// `None`; its value is its offset.
    fn data(offset: i64, producer: Option<i64>) -> Raw {
        let transactional = producer.is_some();
        raw(
            offset,
            producer.unwrap_or(-1),
            0,
            transactional,
            false,
            offset.to_string(),
        )
    }

    /// `producer`'s COMMIT (`true`) or ABORT marker at `offset`.
    fn marker(offset: i64, producer: i64, commit: bool) -> Raw {
        let mut marker = raw(offset, producer, 0, true, true, String::new());
        let kind = if commit { COMMIT } else { ABORT };
        marker.key = Some([0i16.to_be_bytes(), kind.to_be_bytes()].concat().into());
        marker
    }

    fn raw(
        offset: i64,
        producer_id: i64,
        producer_epoch: i16,
        transactional: bool,
        control: bool,
        value: String,
    ) -> Raw {
        Raw {
            transactional,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(value.into_bytes().into()),
            headers: IndexMap::new(),
        }
    }

    fn offsets(committed: &Committed) -> Vec<(i32, i64)> {
        committed
            .records
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect()
    }

    /// Committed and plain records are kept in offset order, aborted and open ones dropped, with
    /// two producers' transactions interleaved.
    #[test]
    fn commit_keeps_abort_drops_and_an_open_transaction_is_left_out() {
        let mut committed = Committed::default();
        committed.add(
            0,
            vec![
                data(0, Some(7)),
                data(1, None),
                data(2, Some(8)),
                data(3, Some(7)),
                marker(4, 8, false),
                data(5, None),
                marker(6, 7, true),
                data(7, Some(8)),
                data(8, Some(9)),
                marker(9, 9, true),
            ],
        );
        assert_eq!(
            offsets(&committed),
            [(0, 0), (0, 1), (0, 3), (0, 5), (0, 8)]
        );
        assert_eq!(committed.records[2].value_text(), "3");
        assert_eq!(
            (committed.aborted, committed.open, committed.fenced),
            (1, 1, 0)
        );
        assert_eq!((committed.stored, committed.markers), (7, 3));
    }

    /// Records a producer id left for a newer epoch with no marker between are dropped as
    /// fenced; the newer epoch's commit keeps only its own.
    #[test]
    fn a_newer_epoch_without_a_marker_fences_the_older_records() {
        let mut committed = Committed::default();
        let mut newer = data(2, Some(7));
        newer.producer_epoch = 1;
        committed.add(
            3,
            vec![
                data(0, Some(7)),
                data(1, Some(7)),
                newer,
                marker(3, 7, true),
            ],
        );
        assert_eq!(offsets(&committed), [(3, 2)]);
        assert_eq!(
            (committed.fenced, committed.aborted, committed.open),
            (2, 0, 0)
        );
    }

    /// Partitions are independent: a marker ends its producer's transaction in its own
    /// partition only, and the result is by partition, then offset.
    #[test]
    fn a_marker_ends_the_transaction_in_its_own_partition_only() {
        let mut committed = Committed::default();
        committed.add(0, vec![data(0, Some(7)), marker(1, 7, true)]);
        committed.add(1, vec![data(0, Some(7)), data(1, None)]);
        assert_eq!(offsets(&committed), [(0, 0), (1, 1)]);
        assert_eq!(committed.open, 1);
    }

    /// A batch header's length says whether the whole batch is there.
    #[test]
    fn a_batch_cut_short_is_not_whole() {
        let mut raw = vec![0u8; 8];
        raw.extend(5i32.to_be_bytes());
        raw.extend([1, 2, 3, 4]);
        assert_eq!(whole_batch(&raw), None);
        raw.push(5);
        assert_eq!(whole_batch(&raw), Some(17));
        assert_eq!(whole_batch(&raw[..10]), None);
    }
}
