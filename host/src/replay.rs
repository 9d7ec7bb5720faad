//! `burrow replay`: a range of a tenant's input through its configured plugin and a candidate,
//! side by side. Nothing is produced, nothing dead-lettered, nothing committed.
//!
//! The range is read by direct assignment — never through the tenant's group, whose offsets
//! stay as they are — from the first offset at or after `--from` in each partition of the
//! tenant's topics (the broker's time index), to the partition's end (the first end-of-partition
//! the consumer meets), or to the first record stamped at or after `--to`, or until `--count`
//! records. The end is the consumer's, not a watermark read up front: a broker's reported end
//! offsets can lag (Tansu's do), and a partition read to an end that is too early would be
//! silently cut short. Each record goes through both plugins as
//! `burrow test` runs one (the tenant's limits, settings, sandbox and output topics; one reused
//! instance each; fuel counted), and the two verdicts are compared: the outcome, a failure's
//! reason, a retry's delay, the emitted records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::config::{ConfigError, HostConfig};
use crate::plugin_test::{self, Runner, Summary, TestError, Tested};
use crate::pool::kafka::Message;
use crate::tenant;
use crate::wasm::{CodeCache, LoadError, Runtime, RuntimeConfig, RuntimeError};

/// Kafka requests (metadata, offsets) must be answered within this.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);
/// How many differing records the report shows.
const SAMPLES: usize = 10;

/// What `burrow replay` was asked.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub config: PathBuf,
    pub tenant: Option<String>,
    /// The candidate version.
    pub candidate: PathBuf,
    /// The first record's timestamp, in ms since the epoch.
    pub from_ms: i64,
    /// Stop before the first record at or after this timestamp (ms).
    pub to_ms: Option<i64>,
    /// Stop after this many records.
    pub count: Option<u64>,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tenant(#[from] TestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{which}: {source}")]
    Load {
        which: &'static str,
        source: LoadError,
    },
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("stalled: no record for {0:?} with {1} still to read")]
    Stalled(Duration, String),
}

/// One record on which the two versions differ.
#[derive(Debug, Clone)]
pub struct Difference {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `outcome`, `reason`, `retry delay` or `emits`.
    pub kind: &'static str,
    pub live: Value,
    pub candidate: Value,
}

/// The replay's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub tenant: String,
    pub live_version: String,
    pub candidate_version: String,
    pub records: u64,
    pub live: Summary,
    pub candidate: Summary,
    /// Differing records per kind of difference.
    pub differences: BTreeMap<&'static str, u64>,
    /// The first few differing records.
    pub samples: Vec<Difference>,
}

impl Report {
    pub fn differing(&self) -> u64 {
        self.differences.values().sum()
    }
}

/// Reads the range and runs both versions over it.
pub fn run(options: &ReplayOptions) -> Result<Report, ReplayError> {
    let config = HostConfig::load(&options.config)?;
    let tenant =
        plugin_test::pick_tenant(&options.config, &config, options.tenant.as_deref())?.clone();
    let runtime = Runtime::new(&RuntimeConfig {
        cache: CodeCache::from_setting(config.cache_dir.as_deref()),
    })?;
    let none = BTreeMap::new();
    let live = Runner::new(&runtime, &tenant, &tenant.plugin, &none).map_err(|source| {
        ReplayError::Load {
            which: "the configured plugin",
            source,
        }
    })?;
    let candidate =
        Runner::new(&runtime, &tenant, &options.candidate, &none).map_err(|source| {
            ReplayError::Load {
                which: "the candidate",
                source,
            }
        })?;
    let consumer = replay_consumer(&config, &tenant)?;
    let mut range = Range::new(&tenant.topics, options);

    let (mut live_instance, mut candidate_instance) = (live.instance(), candidate.instance());
    let (mut live_runs, mut candidate_runs) = (Vec::new(), Vec::new());
    let mut differences: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut records = 0u64;
    let mut topics: BTreeMap<String, Arc<str>> = BTreeMap::new();
    while options.count.is_none_or(|n| records < n) && !range.done(&consumer)? {
        let Some(message) = range.next(&consumer, &mut topics)? else {
            continue;
        };
        records += 1;
        let plugin_message = tenant::to_plugin_message(&message, 1);
        let a = live.call(&mut live_instance, &plugin_message);
        let b = candidate.call(&mut candidate_instance, &plugin_message);
        if let Some(kind) = a.verdict.difference(&b.verdict) {
            *differences.entry(kind).or_default() += 1;
            if samples.len() < SAMPLES {
                samples.push(Difference {
                    topic: message.topic.to_string(),
                    partition: message.partition,
                    offset: message.offset,
                    kind,
                    live: a.verdict.to_json(0, message.offset),
                    candidate: b.verdict.to_json(0, message.offset),
                });
            }
        }
        let line = records as usize;
        live_runs.push(Tested {
            line,
            record: Ok(a),
        });
        candidate_runs.push(Tested {
            line,
            record: Ok(b),
        });
    }
    Ok(Report {
        tenant: tenant.name.clone(),
        live_version: live.version().to_string(),
        candidate_version: candidate.version().to_string(),
        records,
        live: Summary::of(&live_runs),
        candidate: Summary::of(&candidate_runs),
        differences,
        samples,
    })
}

/// A consumer of the tenant's cluster that joins no group and commits nothing.
fn replay_consumer(
    config: &HostConfig,
    tenant: &crate::config::TenantConfig,
) -> Result<BaseConsumer, KafkaError> {
    let mut client = tenant::consumer_config(config, tenant);
    // Only `assign` is used, so the group is never joined; a name of its own all the same, so
    // that nothing this consumer does could ever touch the tenant's group.
    client
        .set(
            "group.id",
            format!("{}-replay-{}", tenant.group_id, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    client.create()
}

/// What is left to read. One topic at a time: librdkafka reports the end of a partition by
/// its number alone, so only one topic's partitions are assigned at once.
struct Range {
    /// Topics not started yet.
    topics: Vec<String>,
    /// The partitions of the current topic not yet read to their end.
    open: BTreeSet<i32>,
    from_ms: i64,
    to_ms: Option<i64>,
    /// When the last record (or end of partition) came.
    last_progress: Instant,
}

impl Range {
    fn new(topics: &[String], options: &ReplayOptions) -> Self {
        Self {
            topics: topics.iter().rev().cloned().collect(),
            open: BTreeSet::new(),
            from_ms: options.from_ms,
            to_ms: options.to_ms,
            last_progress: Instant::now(),
        }
    }

    /// Whether every topic has been read to its end; moves on to the next topic when the
    /// current one is done.
    fn done(&mut self, consumer: &BaseConsumer) -> Result<bool, ReplayError> {
        while self.open.is_empty() {
            let Some(topic) = self.topics.pop() else {
                return Ok(true);
            };
            self.assign(consumer, &topic)?;
        }
        Ok(false)
    }

    /// Assigns every partition of `topic` from the first offset at or after `from_ms`; a
    /// partition with no such record is not read.
    fn assign(&mut self, consumer: &BaseConsumer, topic: &str) -> Result<(), ReplayError> {
        let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
        let mut wanted = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                wanted.add_partition_offset(topic, p.id(), Offset::Offset(self.from_ms))?;
            }
        }
        let starts = consumer.offsets_for_times(wanted, KAFKA_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        for e in starts.elements() {
            if let Offset::Offset(start) = e.offset() {
                assignment.add_partition_offset(topic, e.partition(), Offset::Offset(start))?;
                self.open.insert(e.partition());
            }
        }
        consumer.assign(&assignment)?;
        self.last_progress = Instant::now();
        Ok(())
    }

    /// The next record inside the range, if one came within a poll.
    fn next(
        &mut self,
        consumer: &BaseConsumer,
        topics: &mut BTreeMap<String, Arc<str>>,
    ) -> Result<Option<Message>, ReplayError> {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                self.last_progress = Instant::now();
                if !self.open.contains(&record.partition()) {
                    return Ok(None);
                }
                // Past `--to`: this partition is done (timestamps grow along a partition).
                if let (Some(to), Some(at)) = (self.to_ms, record.timestamp().to_millis())
                    && at >= to
                {
                    self.close(record.partition());
                    return Ok(None);
                }
                let topic = topics
                    .entry(record.topic().to_owned())
                    .or_insert_with(|| record.topic().into());
                Ok(Some(Message::from_borrowed(&record, Arc::clone(topic))))
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                self.last_progress = Instant::now();
                self.close(partition);
                Ok(None)
            }
            Some(Err(e)) => Err(e.into()),
            None if self.last_progress.elapsed() > KAFKA_TIMEOUT => Err(ReplayError::Stalled(
                KAFKA_TIMEOUT,
                self.open
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            None => Ok(None),
        }
    }

    /// Stops taking records from `partition` of the current topic (later ones are skipped; the
    /// next topic's assignment replaces this one).
    fn close(&mut self, partition: i32) {
        self.open.remove(&partition);
    }
}

/// `--from`/`--to`: an RFC 3339 time (`2026-11-01T00:00:00Z`, seconds optional), or a duration
/// ago (`1h`, `30m`). Milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let at = if let Ok(ago) = humantime::parse_duration(text) {
        SystemTime::now() - ago
    } else {
        humantime::parse_rfc3339_weak(text)
            .or_else(|_| humantime::parse_rfc3339_weak(&with_seconds(text)))
            .map_err(|e| {
                format!("{text:?}: {e} (expected a time like 2026-11-01T00:00Z, or a duration ago like 1h)")
            })?
    };
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("{text:?} is too far ahead"))
}

/// `2026-11-01T00:00Z` → `2026-11-01T00:00:00Z`.
fn with_seconds(text: &str) -> String {
    let text = text.trim_end_matches('Z');
    format!("{text}:00Z")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replay of tenant {}: {} records, live {} against candidate {}",
            self.tenant, self.records, self.live_version, self.candidate_version
        )?;
        writeln!(f, "\nlive:      {}", indent(&self.live.to_string()))?;
        writeln!(f, "candidate: {}", indent(&self.candidate.to_string()))?;
        let kinds: Vec<String> = self
            .differences
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        match self.differing() {
            0 => write!(f, "\nno differences")?,
            n => writeln!(f, "\n{n} records differ ({})", kinds.join(", "))?,
        }
        for d in &self.samples {
            write!(
                f,
                "\n  {}/{}@{} ({}):\n    live      {}\n    candidate {}",
                d.topic, d.partition, d.offset, d.kind, d.live, d.candidate
            )?;
        }
        Ok(())
    }
}

/// A summary's later lines indented under its first.
fn indent(text: &str) -> String {
    text.replace('\n', "\n           ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_or_without_seconds_or_a_duration_ago() {
        assert_eq!(parse_time("2026-11-01T00:00:00Z"), Ok(1_793_491_200_000));
        assert_eq!(parse_time("2026-11-01T00:00Z"), Ok(1_793_491_200_000));
        let hour_ago = parse_time("1h").expect("a duration");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        assert!((now - 3_600_000 - hour_ago).abs() < 5_000);
        assert!(
            parse_time("yesterday")
                .expect_err("not a time")
                .contains("expected a time like")
        );
    }
}
