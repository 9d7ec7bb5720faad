//! `burrow demo`: the whole product on one machine with nothing installed.
//!
//! It starts librdkafka's mock cluster in-process (a real Kafka-protocol broker on a loopback
//! port), creates the topics, produces a realistic mix of valid and broken order events, and
//! runs the real host — config file, supervisor, tenant, pool, plugin — with the `json-validate`
//! plugin: valid orders are emitted to an output topic, the rest dead-lettered. Progress and
//! the final summary are read back from Kafka itself (committed offsets, topic end offsets,
//! the dead letters' headers), not from the host's own counters, so the demo shows what a
//! consumer of those topics would see.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burrow_pool::kafka::inspect::{InspectError, Inspector};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::demo_data::{self, Sample};
use crate::kafka::producer::headers;
use crate::supervisor::{self, RunOptions};

const INPUT: &str = "orders";
const OUTPUT: &str = "orders-valid";
const DEAD_LETTERS: &str = "orders-dlq";
const GROUP: &str = "burrow-demo";
const PARTITIONS: i32 = 8;
const SEED: u64 = 2026;
/// The shortest processing time whose rate the summary prints (commits are 200 ms apart).
const MEASURABLE: Duration = Duration::from_millis(500);
/// Kafka round trips must be answered in this time, or the demo gives up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many messages to produce.
    pub messages: usize,
    /// The plugin: json-validate, found next to the binary or in `target/plugins`, if `None`.
    /// Another plugin (named other than `json-validate.wasm`) runs the same traffic, with the
    /// `output-topic` setting; the demo then checks only that every message was committed.
    pub plugin: Option<PathBuf>,
    /// Give up if the run has not finished by then.
    pub timeout: Duration,
    /// Print a progress line this often (`None`: quiet).
    pub progress: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            messages: 200_000,
            plugin: None,
            timeout: Duration::from_secs(300),
            progress: Some(Duration::from_millis(500)),
        }
    }
}

/// Why the demo could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The plugin file is not where the demo looked.
    #[error(
        "json-validate.wasm not found (looked in {looked}); run `make plugins` or pass --plugin"
    )]
    PluginNotFound {
        /// The places tried.
        looked: String,
    },
    /// Kafka (the mock cluster) misbehaved.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topics' or the group's positions could not be read back.
    #[error("reading back: {0}")]
    Inspect(#[from] InspectError),
    /// The demo's scratch directory or config file could not be written.
    #[error("scratch files: {0}")]
    Io(#[from] std::io::Error),
    /// The host stopped with an error.
    #[error("host: {0}")]
    Host(#[from] Box<supervisor::HostError>),
    /// The host did not commit every message in time.
    #[error("not finished after {0:?}: {1}")]
    Timeout(Duration, Progress),
}

/// Counts read back from Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input offsets the tenant's group has committed, over all partitions.
    pub committed: u64,
    /// Records in the output topic.
    pub emitted: u64,
    /// Records in the dead-letter topic.
    pub dead_lettered: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "committed {}, emitted {}, dead-lettered {}",
            self.committed, self.emitted, self.dead_lettered
        )
    }
}

/// The demo's result.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Messages produced to the input topic.
    pub produced: u64,
    /// Of those, valid JSON objects: what json-validate should emit (`None` for another plugin,
    /// whose results the demo cannot know).
    pub expected_valid: Option<u64>,
    /// What Kafka holds at the end.
    pub progress: Progress,
    /// Retries the host made (from its `/stats`).
    pub retries: u64,
    /// From the first message produced to the last offset committed.
    pub elapsed: Duration,
    /// From the first offset committed to the last: the processing, without producing the
    /// sample and the consumer group's first join (about 3 s on the embedded cluster).
    pub processing: Duration,
    /// One dead letter's source position and `burrow.error` header, to show what they carry.
    pub sample_dead_letter: Option<String>,
}

impl DemoSummary {
    /// Whether Kafka holds exactly what a correct run leaves: every input committed, and with
    /// json-validate every valid message emitted once, every invalid one dead-lettered once.
    pub fn is_exact(&self) -> bool {
        let committed = self.progress.committed == self.produced;
        match self.expected_valid {
            Some(valid) => {
                committed
                    && self.progress.emitted == valid
                    && self.progress.dead_lettered == self.produced - valid
            }
            None => committed,
        }
    }
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.progress;
        let rate = self.produced as f64 / self.processing.as_secs_f64().max(1e-9);
        writeln!(f, "{:<18} {:>14} {:>10}", "", "read back", "expected")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, got: u64, want: Option<u64>| {
            let Some(want) = want else {
                return writeln!(f, "{name:<18} {got:>14} {:>10}", "-");
            };
            let mark = if got == want { "" } else { "  <- differs" };
            writeln!(f, "{name:<18} {got:>14} {want:>10}{mark}")
        };
        let valid = self.expected_valid;
        row(f, "produced", self.produced, Some(self.produced))?;
        row(f, "committed", p.committed, Some(self.produced))?;
        row(f, "emitted", p.emitted, valid)?;
        row(
            f,
            "dead-lettered",
            p.dead_lettered,
            valid.map(|v| self.produced - v),
        )?;
        writeln!(f, "{:<18} {:>14}", "retries", self.retries)?;
        writeln!(
            f,
            "{:<18} {:>12.2} s (producing, joining the group, processing)",
            "elapsed",
            self.elapsed.as_secs_f64(),
        )?;
        // Processing is timed between commits seen: below a few commit intervals the
        // figure is mostly the interval, not the work.
        if self.processing >= MEASURABLE {
            writeln!(
                f,
                "{:<18} {:>12.2} s {:>10.0} messages/s",
                "processing",
                self.processing.as_secs_f64(),
                rate
            )?;
        } else {
            writeln!(
                f,
                "{:<18} {:>12} too quick to time; try --messages 1000000",
                "processing", "<0.5 s"
            )?;
        }
        if let Some(sample) = &self.sample_dead_letter {
            writeln!(f, "\na dead letter: {sample}")?;
        }
        Ok(())
    }
}

/// Runs the demo and returns what Kafka holds at the end.
pub async fn run(options: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let plugin = find_plugin(options.plugin.as_deref())?;
    let cluster = MockCluster::new(1)?;
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic(INPUT, PARTITIONS, 1)?;
    cluster.create_topic(OUTPUT, PARTITIONS, 1)?;
    cluster.create_topic(DEAD_LETTERS, 1, 1)?;

    let samples = demo_data::samples(options.messages, SEED);
    let is_json_validate = plugin
        .file_stem()
        .is_some_and(|stem| stem == "json-validate");
    let expected_valid =
        is_json_validate.then(|| samples.iter().filter(|s| s.valid).count() as u64);
    let started = Instant::now();
    produce(&brokers, &samples).await?;

    let scratch = tempfile::tempdir()?;
    // json-validate shows the limits at work in a small budget; another plugin (a Python one
    // starts its interpreter in ~20 MiB) gets the host's default.
    let memory = if is_json_validate { "32MiB" } else { "64MiB" };
    let config_path = write_config(scratch.path(), &brokers, &plugin, memory)?;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?;
    let admin_addr = admin.local_addr()?;
    let host_options = RunOptions {
        admin_listener: Some(admin),
        ..RunOptions::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let host = tokio::spawn({
        let stop = stop.clone();
        async move { supervisor::run(&config_path, host_options, stop.cancelled_owned()).await }
    });

    let reader = Reader::new(&brokers)?;
    let produced = samples.len() as u64;
    let finished = wait_until_committed(&reader, produced, options).await;
    let elapsed = started.elapsed();
    let processing = finished.as_ref().map_or(Duration::ZERO, |(_, took)| *took);
    let retries = host_retries(admin_addr).await;
    stop.cancel();
    let hosted = host.await;
    finished?;
    match hosted {
        Ok(result) => result.map_err(Box::new)?,
        Err(e) => tracing::error!(error = %e, "host task failed"),
    }
    // Read after the host stopped, so its final commit is included.
    Ok(DemoSummary {
        produced,
        expected_valid,
        progress: reader.progress()?,
        retries,
        elapsed,
        processing,
        sample_dead_letter: reader.sample_dead_letter()?,
    })
}

/// The plugin next to the binary (`target/<profile>/burrow` → `target/plugins`), in
/// `$BURROW_PLUGIN_DIR`, or in `./target/plugins`.
fn find_plugin(given: Option<&Path>) -> Result<PathBuf, DemoError> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("BURROW_PLUGIN_DIR") {
        candidates.push(PathBuf::from(dir).join("json-validate.wasm"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent()
    {
        candidates.push(profile_dir.join("../plugins/json-validate.wasm"));
    }
    candidates.push(PathBuf::from("target/plugins/json-validate.wasm"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| DemoError::PluginNotFound {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

async fn produce(brokers: &str, samples: &[Sample]) -> Result<(), DemoError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let deliveries: Vec<_> = samples
        .iter()
        .map(|s| {
            producer.send(
                FutureRecord::to(INPUT).key(&s.key).payload(&s.value),
                KAFKA_TIMEOUT,
            )
        })
        .collect();
    for delivery in futures::future::join_all(deliveries).await {
        delivery.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn write_config(
    dir: &Path,
    brokers: &str,
    plugin: &Path,
    memory: &str,
) -> Result<PathBuf, DemoError> {
    let plugin = std::path::absolute(plugin)?;
    let text = format!(
        r#"# Written by `burrow demo`: one tenant validating orders.
[kafka]
brokers = "{brokers}"

[pool]
workers = 8
commit_interval = "200ms"
commit_batch_size = 500
max_consecutive_errors = 1000000

[[tenant]]
name = "orders"
group_id = "{GROUP}"
topics = ["{INPUT}"]
plugin = {plugin:?}
on_failure = "dead-letter"
dead_letter_topic = "{DEAD_LETTERS}"
output_topics = ["{OUTPUT}"]

[tenant.limits]
memory = "{memory}"
timeout = "1s"

[tenant.config]
output-topic = "{OUTPUT}"
"#
    );
    let path = dir.join("burrow-demo.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Waits until every produced offset is committed, showing progress; returns the final
/// progress and how long processing took (first commit seen to the last).
async fn wait_until_committed(
    reader: &Reader,
    produced: u64,
    options: &DemoOptions,
) -> Result<(Progress, Duration), DemoError> {
    let deadline = Instant::now() + options.timeout;
    let every = options.progress.unwrap_or(Duration::from_millis(250));
    let mut bar = ProgressBar::new(produced, options.progress.is_some());
    let mut first_commit: Option<Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let progress = reader.progress()?;
        if progress.committed > 0 {
            first_commit.get_or_insert_with(Instant::now);
        }
        bar.show(&progress);
        if progress.committed >= produced {
            bar.finish();
            let took = first_commit.map_or(Duration::ZERO, |t| t.elapsed());
            return Ok((progress, took));
        }
        if Instant::now() > deadline {
            bar.finish();
            return Err(DemoError::Timeout(options.timeout, progress));
        }
    }
}

/// The demo's progress on stderr: one line redrawn in place on a terminal (a bar, the counts
/// and the rate since the last look), a line per look otherwise (a log keeps every line).
struct ProgressBar {
    total: u64,
    visible: bool,
    terminal: bool,
    last: Option<(Instant, u64)>,
}

impl ProgressBar {
    fn new(total: u64, visible: bool) -> Self {
        use std::io::IsTerminal as _;
        Self {
            total,
            visible,
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, progress: &Progress) {
        let now = Instant::now();
        let rate = match self.last {
            Some((then, committed)) => {
                progress.committed.saturating_sub(committed) as f64
                    / now.duration_since(then).as_secs_f64().max(1e-9)
            }
            None => 0.0,
        };
        self.last = Some((now, progress.committed));
        if !self.visible {
            return;
        }
        const WIDTH: u64 = 30;
        let done = (progress.committed.min(self.total) * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < done { '#' } else { '-' })
            .collect();
        let line = format!(
            "[{bar}] {:>3}% {progress} of {} · {rate:>9.0} msg/s",
            (progress.committed * 100)
                .checked_div(self.total)
                .unwrap_or(100),
            self.total
        );
        if self.terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("  {line}");
        }
    }

    fn finish(&self) {
        if self.visible && self.terminal {
            eprintln!();
        }
    }
}

/// Retries the host made, from `/stats`; 0 if it cannot be read (the summary says so).
async fn host_retries(addr: std::net::SocketAddr) -> u64 {
    let Ok(body) = crate::admin::get(addr, "/stats").await else {
        return 0;
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["tenants"]["orders"]["pool"]["messages_retried"].as_u64())
        .unwrap_or(0)
}

/// Reads the demo's topics and its group's committed offsets.
struct Reader {
    /// The topics' end offsets and the demo group's committed offsets, without joining it.
    inspector: Inspector,
    brokers: String,
}

impl Reader {
    fn new(brokers: &str) -> Result<Self, DemoError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        Ok(Self {
            inspector: Inspector::for_group(&config, GROUP)?.timeout(KAFKA_TIMEOUT),
            brokers: brokers.to_owned(),
        })
    }

    fn progress(&self) -> Result<Progress, DemoError> {
        let committed = self.inspector.committed(INPUT)?;
        Ok(Progress {
            committed: committed.values().map(|&o| o.max(0) as u64).sum(),
            emitted: self.written(OUTPUT)?,
            dead_lettered: self.written(DEAD_LETTERS)?,
        })
    }

    /// Records ever written to `topic` (which starts empty): the sum of its end offsets. Not
    /// what it holds now: the embedded cluster keeps a bounded log per partition (a single
    /// dead-letter partition of a 200,000-message run drops its oldest records).
    fn written(&self, topic: &str) -> Result<u64, DemoError> {
        let ends = self.inspector.end_offsets(topic)?;
        Ok(ends
            .values()
            .map(|&end| u64::try_from(end).unwrap_or(0))
            .sum())
    }

    /// The first dead letter: where it came from and why it failed, from its headers.
    fn sample_dead_letter(&self) -> Result<Option<String>, DemoError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "burrow-demo-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(DEAD_LETTERS, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + KAFKA_TIMEOUT;
        while Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            let header = |name: &str| {
                message.headers().and_then(|hs| {
                    hs.iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            let at = format!(
                "{}[{}]@{}",
                header(headers::SOURCE_TOPIC).unwrap_or_default(),
                header(headers::SOURCE_PARTITION).unwrap_or_default(),
                header(headers::SOURCE_OFFSET).unwrap_or_default()
            );
            let error = header(headers::ERROR).unwrap_or_default();
            return Ok(Some(format!("{at}: {error}")));
        }
        Ok(None)
    }
}
