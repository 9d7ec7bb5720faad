//! Where a topic and a group stand, as the broker says: a topic's partitions, their low and high
//! watermarks (end offsets, records held), a group's committed offsets and its lag.
//!
//! For dashboards, health checks, tools and tests that want to know what a group has committed
//! without joining it: an [`Inspector`] never subscribes, never commits and never takes part in
//! a rebalance, so it can read the positions of a group whose members are running.
//!
//! ```no_run
//! use burrow_pool::kafka::inspect::Inspector;
//!
//! # fn example() -> Result<(), burrow_pool::kafka::inspect::InspectError> {
//! let mut kafka = burrow_pool::rdkafka::ClientConfig::new();
//! kafka.set("bootstrap.servers", "localhost:9092");
//! let orders = Inspector::for_group(&kafka, "orders")?;
//! let behind: i64 = orders.lag("orders")?.values().sum();
//! println!("the orders group is {behind} messages behind");
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::client_log::LogLimiter;

/// How long one round trip to the broker may take unless [`Inspector::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the broker's positions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The client could not be built, or the broker did not answer in time.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker's metadata shows no partition of the topic: it does not exist (yet).
    #[error("topic {0} has no partitions in the broker's metadata (does it exist?)")]
    UnknownTopic(String),
    /// Committed offsets belong to a group: build the inspector with [`Inspector::for_group`].
    #[error("committed offsets need a group: use Inspector::for_group")]
    NoGroup,
}

/// A client that reads positions from the broker: one librdkafka client, reused for every
/// question, so polling it (a progress line, a lag gauge) costs one round trip a question.
pub struct Inspector {
    /// Never subscribed or assigned: it only asks for metadata, watermarks and the committed
    /// offsets of its group.
    consumer: BaseConsumer<Quiet>,
    /// The group whose committed offsets [`Inspector::committed`] reads.
    group: Option<String>,
    /// The bound on each round trip.
    timeout: Duration,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("group", &self.group)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    /// An inspector of topics (no group) on the cluster `config` reaches: its bootstrap servers
    /// and security settings are used; consumer settings in it do not matter.
    pub fn new(config: &ClientConfig) -> Result<Self, InspectError> {
        Self::build(config, None)
    }

    /// An inspector of topics and of `group`'s committed offsets. It does not join the group:
    /// the group's members are not disturbed.
    pub fn for_group(config: &ClientConfig, group: &str) -> Result<Self, InspectError> {
        Self::build(config, Some(group))
    }

    fn build(config: &ClientConfig, group: Option<&str>) -> Result<Self, InspectError> {
        let mut config = config.clone();
        // Committing is the group members' business, never the inspector's.
        config.set("enable.auto.commit", "false");
        match group {
            Some(group) => config.set("group.id", group),
            None => config.remove("group.id"),
        };
        Ok(Self {
            consumer: config.create_with_context(Quiet(LogLimiter::new("inspector")))?,
            group: group.map(str::to_owned),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds each round trip by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The partition ids of `topic`, in order.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, InspectError> {
        let metadata = self.consumer.fetch_metadata(Some(topic), self.timeout)?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(InspectError::UnknownTopic(topic.to_owned()));
        }
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// The low and high watermarks of each partition of `topic`: the first offset it still
    /// holds and the offset the next record will get.
    pub fn watermarks(&self, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, InspectError> {
        self.partitions(topic)?
            .into_iter()
            .map(|p| Ok((p, self.consumer.fetch_watermarks(topic, p, self.timeout)?)))
            .collect()
    }

    /// The end offset (high watermark) of each partition of `topic`: what a group that has
    /// processed everything has committed.
    pub fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, InspectError> {
        Ok(self
            .watermarks(topic)?
            .into_iter()
            .map(|(p, (_, high))| (p, high))
            .collect())
    }

    /// How many records `topic` holds now, over all its partitions (records deleted by
    /// retention are not counted; in a transactional topic, control records are).
    pub fn record_count(&self, topic: &str) -> Result<u64, InspectError> {
        Ok(self
            .watermarks(topic)?
            .values()
            .map(|(low, high)| u64::try_from(high - low).unwrap_or(0))
            .sum())
    }

    /// The offsets the inspector's group has committed on each partition of `topic`: the next
    /// offset it will process there. Partitions where it has never committed are left out.
    pub fn committed(&self, topic: &str) -> Result<BTreeMap<i32, i64>, InspectError> {
        if self.group.is_none() {
            return Err(InspectError::NoGroup);
        }
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions(topic)? {
            tpl.add_partition(topic, p);
        }
        let committed = self.consumer.committed_offsets(tpl, self.timeout)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// How many records of each partition of `topic` the inspector's group has still to
    /// commit: the end offset minus the committed offset, or minus the low watermark where the
    /// group has never committed (it will start from the earliest record still held).
    pub fn lag(&self, topic: &str) -> Result<BTreeMap<i32, i64>, InspectError> {
        let committed = self.committed(topic)?;
        Ok(self
            .watermarks(topic)?
            .into_iter()
            .map(|(p, (low, high))| {
                let from = committed.get(&p).copied().unwrap_or(low);
                (p, (high - from).max(0))
            })
            .collect())
    }
}

/// The inspector's client context: librdkafka's log lines and errors rate-limited like every
/// other client's, so an inspector polled against an unreachable broker says so once.
struct Quiet(LogLimiter);

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

impl ConsumerContext for Quiet {}
