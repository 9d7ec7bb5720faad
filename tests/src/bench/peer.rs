//! B14's peer: the same job as B4 written as a Quix Streams user writes it
//! (`bench/peers/quix_forward.py`), run by the Python that `make bench` installs
//! (`bench/peers/requirements.txt` into `.python/peers`), on the same data and broker. Its rate
//! counts what reaches its output topic, as B4's counts what its tenant processed (each message
//! forwards one record).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use burrow_e2e::broker::Broker;
use burrow_e2e::plugins::workspace_root;
use burrow_e2e::unique;

use super::Rate;
use super::data::{self, Dataset};

/// The peer's version, as its row names it (pinned in `bench/peers/requirements.txt`).
pub const QUIX: &str = "Quix Streams 3.28.1";

/// How long the peer may take to forward its first record (Python's start, its group's join).
const FIRST_RECORD_WITHIN: Duration = Duration::from_secs(60);

/// The longest a read of the output waits.
const POLL: Duration = Duration::from_millis(50);

/// Runs the peer over `data` into `out` until it has forwarded every record (or `cap` after its
/// first), and returns its rate. The records are counted as a consumer reads them from `out`,
/// not from its high watermark, which Tansu's can leave behind what it holds.
pub fn quix_rate(
    broker: &Broker,
    data: &Dataset,
    out: &str,
    cap: Duration,
) -> anyhow::Result<Rate> {
    let reader = reader(broker, out)?;
    let mut peer = Peer::start(broker, &data.topic, out)?;
    let mut first: Option<Instant> = None;
    let mut forwarded = 0u64;
    loop {
        match reader.poll(POLL) {
            Some(Ok(_)) => {
                forwarded += 1;
                first.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => bail!("reading {QUIX}'s output: {e}"),
            None => {}
        }
        let now = Instant::now();
        match first {
            Some(t0) if forwarded >= data.messages || now - t0 >= cap => {
                return Ok(Rate {
                    // The first record starts the clock; the others are measured.
                    messages: forwarded - 1,
                    secs: (now - t0).as_secs_f64(),
                    cpu: None,
                });
            }
            Some(_) => {}
            None if now - peer.started > FIRST_RECORD_WITHIN => bail!(
                "{QUIX} forwarded nothing within {FIRST_RECORD_WITHIN:?}; its output:\n{}",
                peer.output()
            ),
            None => {}
        }
        if forwarded.is_multiple_of(1024)
            && let Some(status) = peer.child.try_wait()?
        {
            bail!("{QUIX} exited ({status}); its output:\n{}", peer.output());
        }
    }
}

/// A consumer of every partition of `out` from its start.
fn reader(broker: &Broker, out: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", unique("bench-quix-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("the reader of the peer's output")?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..data::PARTITIONS {
        partitions.add_partition_offset(out, partition, Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    Ok(consumer)
}

/// The peer's process, killed when dropped.
struct Peer {
    child: Child,
    log: PathBuf,
    /// Its log and its state directory, removed with it.
    _dir: tempfile::TempDir,
    started: Instant,
}

impl Peer {
    fn start(broker: &Broker, input: &str, out: &str) -> anyhow::Result<Self> {
        let root = workspace_root();
        let python = root.join(".python/peers/bin/python");
        if !python.is_file() {
            bail!(
                "{} not found: `make bench` installs {QUIX} there (scripts/python.sh \
                 .python/peers bench/peers/requirements.txt)",
                python.display()
            );
        }
        let dir = tempfile::tempdir().context("the peer's directory")?;
        let log = dir.path().join("quix.log");
        let file = std::fs::File::create(&log).context("the peer's log")?;
        let child = Command::new(python)
            .arg(root.join("bench/peers/quix_forward.py"))
            .env("BROKERS", &broker.bootstrap)
            .env("GROUP", unique("bench-quix"))
            .env("INPUT", input)
            .env("OUTPUT", out)
            .env("STATE_DIR", dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {QUIX}"))?;
        Ok(Self {
            child,
            log,
            _dir: dir,
            started: Instant::now(),
        })
    }

    /// The last lines the peer printed.
    fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
