//! The real `burrow` binary (a release build) as a child process, run on a config that sets
//! only what a new user must: the brokers, one tenant (name, group, topic, plugin, and the
//! dead-letter topic the default failure policy requires). Every pool setting is left at its
//! default. The admin listener gets a free port of our choosing (its default port could be
//! taken on a shared machine), so its first answer can be awaited without reading the log.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::write_atomically;
use burrow_e2e::plugins::workspace_root;
use burrow_e2e::process::{BIN_ENV, Process, http_get, metric, tail};

use super::{Rate, cpu};

/// How often the throughput cases read `/stats`: the figures' time resolution.
pub const SAMPLE: Duration = Duration::from_millis(10);
/// How long a host may take to process its first message (start, group join, fetch).
const FIRST_MESSAGE_WITHIN: Duration = Duration::from_secs(120);
/// The tenant's name in every config.
pub const TENANT: &str = "bench";

/// The release `burrow` binary: `BURROW_BIN`, else `target/release/burrow`.
pub fn burrow_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os(BIN_ENV).map_or_else(
        || workspace_root().join("target/release/burrow"),
        PathBuf::from,
    );
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p burrow` (or set {BIN_ENV})",
            bin.display()
        );
    }
    Ok(bin)
}

/// One tenant's config: the required keys, plus what a case adds on purpose.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub group: String,
    pub topic: String,
    pub plugin: PathBuf,
    pub dead_letter_topic: String,
    /// An output topic the plugin may emit to, also given to it as its `output-topic` setting.
    pub output: Option<String>,
    /// `[tenant.pool]` lines (`key = value`), for a case that is about a setting.
    pub pool: Vec<String>,
    /// `cache_dir` at the top of the file (compiled-code cache); `None` writes `""`, no cache.
    pub cache_dir: Option<PathBuf>,
    /// `delivery`; `None` leaves Burrow's default (at-least-once).
    pub delivery: Option<String>,
    /// `[tenant.config]` settings for the plugin, beside `output-topic`.
    pub settings: Vec<(String, String)>,
    /// `[tenant.limits]` lines (`key = value`).
    pub limits: Vec<String>,
}

impl TenantSpec {
    pub fn new(group: &str, topic: &str, plugin: &Path, dead_letter_topic: &str) -> Self {
        Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            plugin: plugin.to_owned(),
            dead_letter_topic: dead_letter_topic.to_owned(),
            output: None,
            pool: Vec::new(),
            cache_dir: None,
            delivery: None,
            settings: Vec::new(),
            limits: Vec::new(),
        }
    }

    /// The whole `burrow.toml`, this the one tenant (named [`TENANT`]).
    fn render(&self, broker: &Broker, admin: SocketAddr) -> String {
        render(broker, admin, &[(TENANT, self)])
    }

    /// Its `[[tenant]]` table, named `name`.
    fn render_tenant(&self, name: &str, s: &mut String) {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let _ = writeln!(s, "[[tenant]]\nname = {}", q(name));
        let _ = writeln!(s, "group_id = {}", q(&self.group));
        let _ = writeln!(s, "topics = [{}]", q(&self.topic));
        let _ = writeln!(s, "plugin = {}", q(&self.plugin.to_string_lossy()));
        let _ = writeln!(s, "dead_letter_topic = {}", q(&self.dead_letter_topic));
        if let Some(out) = &self.output {
            let _ = writeln!(s, "output_topics = [{}]", q(out));
        }
        if let Some(delivery) = &self.delivery {
            let _ = writeln!(s, "delivery = {}", q(delivery));
        }
        if !self.pool.is_empty() {
            let _ = writeln!(s, "[tenant.pool]\n{}", self.pool.join("\n"));
        }
        if !self.limits.is_empty() {
            let _ = writeln!(s, "[tenant.limits]\n{}", self.limits.join("\n"));
        }
        let output = self.output.iter().map(|out| ("output-topic", out.as_str()));
        let settings = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let mut settings = output.chain(settings).peekable();
        if settings.peek().is_some() {
            let _ = writeln!(s, "[tenant.config]");
            for (key, value) in settings {
                let _ = writeln!(s, "{} = {}", q(key), q(value));
            }
        }
    }
}

/// A whole `burrow.toml` with `tenants` (each named), the cache as the first one says.
fn render(broker: &Broker, admin: SocketAddr, tenants: &[(&str, &TenantSpec)]) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut s = String::new();
    // No cache unless the case asks for one: every other case starts as a first start does,
    // whatever an earlier run left in the user's cache.
    let cache_dir = tenants
        .first()
        .and_then(|(_, t)| t.cache_dir.as_deref())
        .unwrap_or(Path::new(""));
    let _ = writeln!(s, "cache_dir = {}", q(&cache_dir.to_string_lossy()));
    let _ = writeln!(s, "[kafka]\nbrokers = {}", q(&broker.bootstrap));
    let options: Vec<(&str, &str)> = broker
        .client_options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(membership(broker).iter().copied())
        .collect();
    if !options.is_empty() {
        let _ = writeln!(s, "[kafka.options]");
        for (k, v) in options {
            let _ = writeln!(s, "{} = {}", q(k), q(v));
        }
    }
    let _ = writeln!(s, "[admin]\nlisten = {}", q(&admin.to_string()));
    for (name, tenant) in tenants {
        tenant.render_tenant(name, &mut s);
    }
    s
}

/// A running `burrow run`.
pub struct Host {
    process: Process,
    pub admin: SocketAddr,
    /// When the process was spawned.
    pub spawned: Instant,
    config: PathBuf,
    /// Holds the config file.
    _dir: tempfile::TempDir,
    /// Whether failed messages count as finished ([`Host::expecting_failures`]) rather than
    /// fail the run.
    failures_expected: bool,
}

/// What `/stats` says of the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantCounts {
    pub processed: u64,
    pub failed: u64,
}

impl TenantCounts {
    /// Messages done either way: processed, or failed and handled.
    pub fn finished(self) -> u64 {
        self.processed + self.failed
    }
}

impl Host {
    /// Writes the config and starts the binary on it (not waiting for anything).
    pub fn start(broker: &Broker, tenant: &TenantSpec) -> anyhow::Result<Self> {
        Self::start_tenants(broker, &[(TENANT, tenant)])
    }

    /// [`Host::start`] with `tenants`, each named; the counts are [`TENANT`]'s.
    pub fn start_tenants(broker: &Broker, tenants: &[(&str, &TenantSpec)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.path().join("burrow.toml");
        write_atomically(&config, render(broker, admin, tenants).as_bytes())?;
        let mut command = Command::new(burrow_bin()?);
        command
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config);
        let spawned = Instant::now();
        let process = Process::spawn(command)?;
        Ok(Self {
            process,
            admin,
            spawned,
            config,
            _dir: dir,
            failures_expected: false,
        })
    }

    /// Makes [`Host::rate`] count failed messages as finished (a case whose records all fail
    /// on purpose) instead of failing the run on the first.
    #[must_use]
    pub fn expecting_failures(mut self) -> Self {
        self.failures_expected = true;
        self
    }

    /// Rewrites the config (whole, by rename) as `tenant` says: a hot reload.
    pub fn rewrite(&self, broker: &Broker, tenant: &TenantSpec) -> anyhow::Result<()> {
        write_atomically(&self.config, tenant.render(broker, self.admin).as_bytes())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The tenant's counts, or `None` while the admin listener is not up yet or the tenant not
    /// started; fails if the process has exited.
    /// The tenant's pool stats now (`/stats`).
    pub fn pool_stats(&mut self) -> anyhow::Result<serde_json::Value> {
        let (code, body) = http_get(self.admin, "/stats")?;
        anyhow::ensure!(code == 200, "/stats answered {code}");
        let stats: serde_json::Value = serde_json::from_str(&body).context("parsing /stats")?;
        Ok(stats["tenants"][TENANT]["pool"].clone())
    }

    pub fn counts(&mut self) -> anyhow::Result<Option<TenantCounts>> {
        let Some(stats) = self.stats()? else {
            return Ok(None);
        };
        let pool = &stats["tenants"][TENANT]["pool"];
        Ok(pool["messages_processed"]
            .as_u64()
            .map(|processed| TenantCounts {
                processed,
                failed: pool["messages_failed"].as_u64().unwrap_or(0),
            }))
    }

    /// Messages partition `partition` of `topic` holds now: done above its gap, and received but
    /// not finished.
    pub fn held(&self, topic: &str, partition: i32) -> anyhow::Result<u64> {
        let (code, body) = http_get(self.admin, "/stats")?;
        anyhow::ensure!(code == 200, "/stats answered {code}");
        let stats: serde_json::Value = serde_json::from_str(&body)?;
        let held = stats["tenants"][TENANT]["pool"]["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["topic"] == topic && p["partition"] == partition)
            .map(|p| p["gap"].as_u64().unwrap_or(0) + p["pending"].as_u64().unwrap_or(0))
            .sum();
        Ok(held)
    }

    /// `/metrics` value of `name` for the tenant (0 if absent).
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(metric(&body, name, &[("tenant", TENANT)]).unwrap_or(0.0))
    }

    /// `/metrics` value of `name` for tenant `tenant` (0 if absent).
    pub fn metric_of(&self, name: &str, tenant: &str) -> anyhow::Result<f64> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(metric(&body, name, &[("tenant", tenant)]).unwrap_or(0.0))
    }

    /// `/metrics` value of `name` summed over every tenant (0 if absent).
    pub fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The process's resident set now and its peak (`VmRSS`, `VmHWM`), in MiB.
    pub fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let kib = |field| proc_status(self.pid(), field);
        Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
    }

    /// The process's OS threads now.
    pub fn threads(&self) -> anyhow::Result<f64> {
        proc_status(self.pid(), "Threads:")
    }

    /// The whole of `/stats`, or `None` while the admin listener is not up yet; fails if the
    /// process has exited.
    pub fn stats(&mut self) -> anyhow::Result<Option<serde_json::Value>> {
        if let Some(status) = self.process.exited()? {
            bail!(
                "burrow exited ({status}); log:\n{}",
                tail(&self.process.stderr())
            );
        }
        let Ok((200, body)) = http_get(self.admin, "/stats") else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&body).context("parsing /stats")?))
    }

    /// Waits for the first processed message, then measures until `n` are processed or `cap`
    /// has passed since, or `each` (called on every sample after the first message with its
    /// time and count) returns `true`: the rate over the samples between (their count, their
    /// times).
    pub fn rate(
        &mut self,
        n: u64,
        cap: Duration,
        mut each: impl FnMut(&mut Self, Instant, u64) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Rate> {
        let mut first: Option<(Instant, u64)> = None;
        let mut threads = cpu::Threads::default();
        loop {
            let now = Instant::now();
            let counts = self.counts()?.unwrap_or_default();
            if counts.failed > 0 && !self.failures_expected {
                bail!(
                    "{} messages failed; log:\n{}",
                    counts.failed,
                    self.log_tail()
                );
            }
            let done = if self.failures_expected {
                counts.finished()
            } else {
                counts.processed
            };
            match first {
                None if done > 0 => {
                    threads = cpu::Threads::of(self.pid())?;
                    first = Some((now, done));
                }
                None if now - self.spawned > FIRST_MESSAGE_WITHIN => {
                    bail!(
                        "no message processed within {FIRST_MESSAGE_WITHIN:?}; log:\n{}",
                        self.log_tail()
                    )
                }
                None => {}
                Some((t0, c0)) => {
                    let enough = each(self, now, done)?;
                    if enough || done >= n || now - t0 >= cap {
                        let spent = cpu::Threads::of(self.pid())?;
                        return Ok(Rate {
                            messages: done - c0,
                            secs: (now - t0).as_secs_f64(),
                            cpu: Some(cpu::Cpu::between(&threads, &spent, done - c0)),
                        });
                    }
                }
            }
            std::thread::sleep(SAMPLE.saturating_sub(now.elapsed()));
        }
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.process.stderr())
    }

    /// SIGTERM, and waits for the exit (bounded).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.process.terminate()?;
        let status = self.process.wait_exit()?;
        anyhow::ensure!(
            status.success(),
            "burrow exited with {status}; log:\n{}",
            self.log_tail()
        );
        Ok(())
    }
}

/// Group-membership settings every consumer of the bench gets on a real broker: Tansu completes
/// a new group's join only after about half the session timeout (23 s with librdkafka's 45 s
/// default, 3 s with 6 s). Joins are not timed, so this changes no figure; it keeps a full run
/// from spending most of its time waiting for joins. On the mock cluster: nothing.
pub fn membership(broker: &Broker) -> &'static [(&'static str, &'static str)] {
    if broker.is_mock() {
        &[]
    } else {
        &[
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ]
    }
}

/// A number field of `/proc/PID/status` (`VmRSS:` in KiB, `Threads:`).
pub fn proc_status(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// A port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
