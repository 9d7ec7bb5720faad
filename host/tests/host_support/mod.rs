//! Shared helpers for the `host_*` end-to-end tests: a mock Kafka cluster with topics, producing
//! and reading records with headers, a group's committed offsets, config files, the host run
//! in-process (with its admin listener) or as the real binary, and bounded waits.
//!
//! librdkafka's calls block, and the in-process host runs on the test's own runtime: every Kafka
//! call here runs on a blocking thread so it never stalls the host's tasks.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use burrow::supervisor::{self, HostError, RunOptions};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any wait in these tests may take before it fails: generous, for a shared machine.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// A Kafka round trip must be answered in this time.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The one plugin locator, from the shared test kit (`tests/`).
pub use burrow_e2e::plugins::plugin_path;

/// The short version (`Display` of [`burrow::wasm::Version`]) of the plugin file at `path`.
pub fn version_of(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(burrow::wasm::Version::of(&bytes).to_string())
}

/// Logs of the host under test, shown for failing tests (`RUST_LOG` to change the level).
pub fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// librdkafka's in-process mock cluster. Not `Send`: keep it in the test function.
pub struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    /// Its bootstrap servers, for configs and clients.
    pub brokers: String,
}

impl Kafka {
    /// A one-broker cluster with `topics` (name, partitions) created.
    pub fn with_topics(topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        init_logs();
        let cluster = MockCluster::new(1).context("starting the mock cluster")?;
        let brokers = cluster.bootstrap_servers();
        let kafka = Self { cluster, brokers };
        for (topic, partitions) in topics {
            kafka.create_topic(topic, *partitions)?;
        }
        Ok(kafka)
    }

    /// The mock cluster itself, for fault injection (`request_errors`, `broker_down`, ...).
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating topic {topic}"))
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Out {
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }

    /// A message for the chaos plugin: `burrow-action: action`.
    pub fn chaos(action: &str) -> Self {
        Self::value(format!("payload for {action}")).header("burrow-action", action)
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Where a produced record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Produces `records` to `topic`, in order, each acknowledged; returns where each landed.
pub async fn produce(brokers: &str, topic: &str, records: &[Out]) -> anyhow::Result<Vec<Position>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the test producer")?;
    let deliveries: Vec<_> = records
        .iter()
        .map(|r| {
            let mut headers = OwnedHeaders::new();
            for (name, value) in &r.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut record = FutureRecord::to(topic).payload(&r.value).headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            producer.send(record, KAFKA_TIMEOUT)
        })
        .collect();
    let mut positions = Vec::with_capacity(records.len());
    for delivery in futures::future::join_all(deliveries).await {
        let delivery = delivery.map_err(|(e, _)| e).context("producing")?;
        positions.push(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        });
    }
    Ok(positions)
}

/// Produces `n` records `{"n":i}` (JSON objects, valid for every plugin) to `topic`.
pub async fn produce_json(brokers: &str, topic: &str, n: usize) -> anyhow::Result<Vec<Position>> {
    let records: Vec<Out> = (0..n)
        .map(|i| Out::value(format!(r#"{{"n":{i}}}"#)))
        .collect();
    produce(brokers, topic, &records).await
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of the first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn value_text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// Runs a blocking Kafka call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task")?
}

fn client(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    Ok(partitions)
}

/// The end (high watermark) offset of each partition of `topic`, by partition.
pub async fn end_offsets(brokers: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    blocking(move || {
        let consumer = client(&brokers, "burrow-test-reader")?;
        partitions_of(&consumer, &topic)?
            .into_iter()
            .map(|p| Ok((p, consumer.fetch_watermarks(&topic, p, KAFKA_TIMEOUT)?.1)))
            .collect()
    })
    .await
}

/// The offsets `group` has committed on each partition of `topic` (0 where none).
pub async fn committed(
    brokers: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    blocking(move || {
        let consumer = client(&brokers, &group)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions_of(&consumer, &topic)? {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(tpl, KAFKA_TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), o),
                _ => (e.partition(), 0),
            })
            .collect())
    })
    .await
}

/// Whether `group` has committed every partition of `topic` up to its end.
pub async fn all_committed(brokers: &str, group: &str, topic: &str) -> anyhow::Result<bool> {
    Ok(committed(brokers, group, topic).await? == end_offsets(brokers, topic).await?)
}

/// Every record in `topic` now, in partition then offset order.
pub async fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    blocking(move || {
        let consumer = client(&brokers, "burrow-test-reader")?;
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for p in partitions_of(&consumer, &topic)? {
            let (low, high) = consumer.fetch_watermarks(&topic, p, KAFKA_TIMEOUT)?;
            if high > low {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
                remaining.insert(p, high);
            }
        }
        let mut records = Vec::new();
        if remaining.is_empty() {
            return Ok(records);
        }
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + DEADLINE;
        while !remaining.is_empty() {
            if Instant::now() > deadline {
                bail!("reading {topic}: still waiting for partitions {remaining:?} (partition → end offset)");
            }
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = message.with_context(|| format!("reading {topic}"))?;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            if remaining.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
                remaining.remove(&m.partition());
            }
            records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    })
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, failing after [`DEADLINE`] with a
/// message saying what was being waited for and what `status` said last.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {DEADLINE:?} waiting for {what}{why}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`wait_for`], for a condition.
pub async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    wait_for(what, || {
        let fut = check();
        async move { Ok(fut.await?.then_some(())) }
    })
    .await
}

/// Waits until `group` has committed all of `topic`.
pub async fn wait_all_committed(brokers: &str, group: &str, topic: &str) -> anyhow::Result<()> {
    wait_until(&format!("group {group} to commit all of {topic}"), || {
        all_committed(brokers, group, topic)
    })
    .await
    .with_context(|| format!("group {group} on {topic}"))
}

/// Waits until `topic` holds `n` records, and returns them.
pub async fn wait_records(brokers: &str, topic: &str, n: usize) -> anyhow::Result<Vec<Record>> {
    wait_until(&format!("{n} records in {topic}"), || async {
        let ends = end_offsets(brokers, topic).await?;
        Ok(ends.values().sum::<i64>() >= n as i64)
    })
    .await?;
    read_all(brokers, topic).await
}

/// A scratch directory holding a host's config file.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("burrow.toml")
    }

    /// Writes the config file whole (write then rename), as a deployment tool would, so the
    /// host never reads half a file.
    pub fn write(&self, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.path();
        write_atomically(&path, text.as_bytes())?;
        Ok(path)
    }

    /// A copy of plugin `name` in this directory, as `file`: tests may overwrite it.
    pub fn copy_plugin(&self, name: &str, file: &str) -> anyhow::Result<PathBuf> {
        let to = self.dir.path().join(file);
        std::fs::copy(plugin_path(name)?, &to)?;
        Ok(to)
    }
}

/// Writes `bytes` to a sibling temp file, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The `[kafka]` and `[admin]` sections every test config starts with; the admin listener is
/// on an ephemeral port so tests never collide.
pub fn host_header(brokers: &str) -> String {
    format!(
        r#"[kafka]
brokers = "{brokers}"

[admin]
listen = "127.0.0.1:0"
"#
    )
}

/// A host running in-process on the test's runtime.
pub struct Host {
    /// Its admin listener.
    pub admin: SocketAddr,
    stop: CancellationToken,
    /// `None` once [`Host::stop`] took it.
    task: Option<JoinHandle<Result<(), HostError>>>,
}

impl Drop for Host {
    /// A test that fails early still stops its host, so the test ends instead of hanging.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Host {
    /// Starts the host on the config at `path`, checking files every 100 ms.
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        init_logs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let admin = listener.local_addr()?;
        let options = RunOptions {
            watch_interval: Duration::from_millis(100),
            admin_listener: Some(listener),
        };
        let stop = CancellationToken::new();
        let path = path.to_owned();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { supervisor::run(&path, options, stop.cancelled_owned()).await }
        });
        Ok(Self {
            admin,
            stop,
            task: Some(task),
        })
    }

    /// `GET path` on the admin listener: status code and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        if self.task.as_ref().is_none_or(JoinHandle::is_finished) {
            bail!("the host has stopped");
        }
        burrow::admin::get_with_status(self.admin, path)
            .await
            .with_context(|| format!("GET {path}"))
    }

    /// `/stats` as JSON.
    pub async fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let (code, body) = self.get("/stats").await?;
        anyhow::ensure!(code == 200, "/stats answered {code}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// `/stats` of one tenant; `Null` if the host does not run it.
    pub async fn tenant(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.stats().await?["tenants"][name].clone())
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = self.get("/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
        Ok(body)
    }

    /// Waits until every tenant has partitions assigned (`/readyz` answers 200).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_until("/readyz to answer 200", || async {
            Ok(self.get("/readyz").await?.0 == 200)
        })
        .await
    }

    /// Stops the host gracefully and returns how `run` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().context("the host was stopped already")?;
        tokio::time::timeout(DEADLINE, task)
            .await
            .context("the host did not stop in time")?
            .context("the host task panicked")?
            .context("the host returned an error")
    }
}

/// The one metric reader, from the shared test kit (`tests/`). Not every test binary reads
/// metrics.
#[allow(unused_imports)]
pub use burrow_e2e::process::metric;

/// The real `burrow` binary.
pub fn burrow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_burrow"));
    command.env_remove("RUST_LOG");
    command
}

/// A child process of the real binary, its stderr kept in a file (a pipe nobody reads could
/// fill and block it).
pub struct Process {
    pub child: Child,
    stderr: PathBuf,
    /// Holds the output files.
    dir: tempfile::TempDir,
}

impl Process {
    /// Spawns `command` with stdout and stderr captured to files.
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let stderr = dir.path().join("stderr");
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout"))?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("spawning burrow")?;
        Ok(Self { child, stderr, dir })
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed: {status}");
        Ok(())
    }

    /// Waits for the process to exit; kills it and fails if it has not after [`DEADLINE`].
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "burrow did not exit within {DEADLINE:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` to completion (bounded by [`DEADLINE`]): exit status, stdout, stderr.
pub async fn run_to_end(command: Command) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut process = Process::spawn(command)?;
    let status = process.wait().await?;
    Ok((status, process.stdout(), process.stderr()))
}
