//! The host's configuration file: one TOML file, every key overridable from the environment.
//!
//! The file is read with the `config` crate, then layered with environment variables named
//! `BURROW__SECTION__KEY` (e.g. `BURROW__KAFKA__BROKERS=localhost:9092`,
//! `BURROW__POOL__WORKERS=32`). Deserialisation goes through `serde_path_to_error` so every
//! error names the key it is about (`tenant[1].limits.memory: invalid size ...`), and every
//! struct denies unknown fields: a typo is an error, never a silently ignored setting.
//!
//! After parsing, [`HostConfig::validate`] checks what types cannot: ranges, references between
//! keys (a dead-letter policy needs a topic), uniqueness of tenant names. It reports every
//! problem at once, each with its key, so a user fixes a file in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::pool;

pub mod secret;

/// Prefix of the environment variables that override file keys.
pub const ENV_PREFIX: &str = "BURROW";
/// Separator between the prefix, sections and keys of an environment override.
pub const ENV_SEPARATOR: &str = "__";

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// How to reach Kafka; shared by every tenant.
    pub kafka: KafkaConfig,
    /// Pool settings every tenant starts from; a tenant's `[tenant.pool]` overrides them.
    #[serde(default)]
    pub pool: PoolSettings,
    /// The admin HTTP listener (metrics, health, stats).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Where compiled plugins are cached; keyed by content hash, safe to delete. Unset: the
    /// user's cache directory; empty: no cache.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Names this process among the Burrow processes that share a consumer group: part of
    /// each exactly-once tenant's `transactional.id` (`burrow-GROUP-INSTANCE`), which must
    /// stay the same across restarts (a restart then aborts what a crash left open) and differ
    /// between processes (two producers with one id fence each other). Default: the host name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The tenants this host serves, each with its own consumer group and plugin.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

/// `[kafka]`. Its `Debug` hides secret option values (a config printed in a panic or a test
/// failure must not carry the password).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// Any librdkafka property, passed through as is (e.g. `"security.protocol" = "ssl"`).
    /// Burrow sets `bootstrap.servers`, `group.id` and the offset-commit properties itself;
    /// setting them here is an error.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(key, value)| {
                let shown = if secret::is_secret_key(key) {
                    secret::REDACTED
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("options", &options)
            .finish()
    }
}

/// `[pool]` and `[tenant.pool]`: every key optional so a tenant overrides only what it names.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// Messages processed at once (each worker owns one plugin instance).
    pub workers: Option<usize>,
    /// Messages a tenant holds at once, in every state (queued, in flight, retrying, done above
    /// a gap); a partition whose part is spent is not fetched until it frees some.
    pub job_queue_size: Option<usize>,
    /// Bytes of the messages a tenant holds and has not finished (`"64MiB"`).
    #[serde(default, deserialize_with = "units::opt_size")]
    pub max_buffered_bytes: Option<ByteSize>,
    /// Commit at least this often (`"5s"`).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub commit_interval: Option<Duration>,
    /// ...or after this many messages finished, whichever comes first.
    pub commit_batch_size: Option<usize>,
    /// Permanent failures in a row that halt the tenant.
    pub max_consecutive_errors: Option<u32>,
    /// Retries of a retriable failure before it becomes permanent.
    pub max_retries: Option<u32>,
    /// First retry delay; doubles per attempt (`"100ms"`).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub retry_backoff_base: Option<Duration>,
    /// No retry waits longer than this, computed or hinted by the plugin (`"30s"`).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub retry_backoff_max: Option<Duration>,
    /// `unordered` (default), `partition` or `key`.
    pub ordering: Option<OrderingSetting>,
    /// How long shutdown and partition revocation wait for in-flight messages (`"30s"`).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// How long a tenant may take to start (`"10m"`): its transactional producer initialised
    /// (exactly-once) and its consumer's first assignment from the group. Past it the tenant
    /// halts, saying what it waited for. The host's, not the pool's: `to_pool_config` leaves it.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub start_timeout: Option<Duration>,
}

/// How long a tenant may take to start by default: well past the longest join a healthy group
/// makes a member wait (a rebalance waits up to the members' `max.poll.interval.ms`, 5 minutes
/// by librdkafka's default, for the others to rejoin).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(600);

/// Processing order guarantee.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum OrderingSetting {
    /// Any message may run at any time.
    Unordered,
    /// One message in flight per partition, in offset order.
    Partition,
    /// One message in flight per key per partition, in offset order.
    Key,
}

/// `[admin]`. Its `Debug` hides the token.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the HTTP listener. Loopback by default: metrics and stats are not for the
    /// whole network unless you say so.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// The bearer token the control endpoints (`POST /tenants/{name}/pause`, `/resume`)
    /// require; without one they refuse everything. Set it from the environment
    /// (`BURROW__ADMIN__TOKEN`) rather than the file. Never printed.
    #[serde(default)]
    pub token: Option<String>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// One `[[tenant]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Names the tenant in logs, metrics labels and `/stats`.
    pub name: String,
    /// The tenant's own consumer group, so tenants never share offsets.
    pub group_id: String,
    /// Topics the tenant consumes. Its plugin sees these and nothing else.
    pub topics: Vec<String>,
    /// The plugin component (`.wasm`), relative to the config file's directory.
    pub plugin: PathBuf,
    /// What a permanent failure does.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Where `dead-letter` sends failed messages; required with that policy.
    pub dead_letter_topic: Option<String>,
    /// Topics the plugin may `emit` to; an emit elsewhere fails the message.
    #[serde(default)]
    pub output_topics: Vec<String>,
    /// What a reader of the outputs may count on: `at-least-once` (default), or `exactly-once`
    /// (emits, dead letters and input offsets in one Kafka transaction).
    #[serde(default)]
    pub delivery: Delivery,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Overrides of the top-level `[pool]` for this tenant.
    #[serde(default)]
    pub pool: PoolSettings,
    /// The plugin's own settings, read by the plugin through `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// A candidate version running beside the live one (`[tenant.rollout]`).
    #[serde(default)]
    pub rollout: Option<RolloutConfig>,
}

/// `[tenant.rollout]`: a candidate version of the tenant's plugin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// The candidate's `.wasm`, relative to the config file's directory.
    pub plugin: PathBuf,
    /// How it runs beside the live version.
    pub mode: RolloutMode,
    /// Where each message on which the versions differ is described (a JSON record keyed
    /// `topic/partition@offset`: the difference, both outcomes, both emits). None by default.
    pub diff_topic: Option<String>,
    /// With `canary`: the share of keys (0 < share < 1) the candidate serves.
    pub share: Option<f64>,
    /// With `canary`: when the candidate becomes the live version, if no `rollback_if` rule
    /// broke by then — a duration since the canary started (`"10m"`) or a count of messages
    /// the candidate took (`5000`). Never, when unset: promote with the admin endpoint.
    pub promote_after: Option<PromoteAfter>,
    /// With `canary`: messages the candidate must have taken before any rule is judged (a
    /// rate over a handful of messages says nothing). Default 100.
    pub min_messages: Option<u64>,
    /// With `canary`: when the candidate is thrown out and the live version serves every key.
    pub rollback_if: Option<RollbackIf>,
}

/// `promote_after`: a duration or a message count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteAfter {
    /// Since the canary started.
    Elapsed(Duration),
    /// Messages the candidate took.
    Messages(u64),
}

impl<'de> Deserialize<'de> for PromoteAfter {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            Count(u64),
            Text(String),
        }
        match Value::deserialize(de)? {
            Value::Count(n) => Ok(Self::Messages(n)),
            // An environment override arrives as text.
            Value::Text(text) => match text.parse::<u64>() {
                Ok(n) => Ok(Self::Messages(n)),
                Err(_) => humantime::parse_duration(&text)
                    .map(Self::Elapsed)
                    .map_err(|e| {
                        serde::de::Error::custom(format!(
                            "invalid promote_after {text:?} ({e}); write a duration like \"10m\" or a message count like 5000"
                        ))
                    }),
            },
        }
    }
}

/// `[tenant.rollout.rollback_if]`: margins over the live version, each judged over everything
/// both versions did since the canary started. One broken rule rolls the candidate back.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RollbackIf {
    /// The candidate's permanent failures per message, above the live version's by more than
    /// this (0.01: one point).
    pub failure_rate: Option<f64>,
    /// The candidate's failed calls (traps, deadlines, memory cap, fuel) per call, above the
    /// live version's by more than this.
    pub trap_rate: Option<f64>,
    /// The candidate's 99th-percentile time per message, above the live version's by more
    /// than this.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub p99: Option<Duration>,
}

/// How a candidate runs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum RolloutMode {
    /// On the same messages as the live version, after it and never in its way; its outcomes
    /// and emits have no effect, they are compared with the live version's.
    Shadow,
    /// For real, on a stable share of keys (by key hash: one key always sees one version).
    Canary,
}

/// The machine's host name (Linux), or `burrow`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "burrow".to_owned())
}

/// A tenant's delivery guarantee for what its plugin emits and what it dead-letters.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum Delivery {
    /// Emits and dead letters are acknowledged before the input offset may advance; after a
    /// crash or a rebalance, some may be written twice.
    #[default]
    AtLeastOnce,
    /// Emits, dead letters and the input offsets that say their messages are done are written
    /// in one Kafka transaction: to `read_committed` readers, each appears exactly once.
    ExactlyOnce,
}

/// What happens to a message that failed for good.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum FailurePolicy {
    /// Produce it to `dead_letter_topic` with headers saying why, then move on.
    #[default]
    DeadLetter,
    /// Count it and move on.
    Skip,
    /// Stop the tenant cleanly (committing what is done).
    Halt,
}

/// `[tenant.limits]`: what one call of the plugin may use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory cap of one plugin instance (`"64MiB"`).
    #[serde(default = "default_memory", deserialize_with = "units::size")]
    pub memory: ByteSize,
    /// Wall-clock deadline of one call (`"1s"`).
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Instructions budget (wasmtime fuel) of one call; none by default.
    pub fuel: Option<u64>,
    /// Environment variables the plugin may read. None by default.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the plugin may read, mounted read-only at the same path.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
    /// Replace a worker's instance with a fresh one after it has processed this many
    /// messages. None by default.
    pub recycle_after_messages: Option<u64>,
    /// Replace a worker's instance with a fresh one once its linear memory has grown past this
    /// (`"48MiB"`): a garbage-collected guest's heap only grows. Below `memory`. None by
    /// default.
    #[serde(default, deserialize_with = "units::opt_size")]
    pub recycle_memory_above: Option<ByteSize>,
    /// The tenant's share of the plugin executor's threads while tenants contend for them,
    /// relative to the other tenants' weights. A tenant alone may use every idle thread.
    #[serde(default = "default_cpu_weight")]
    pub cpu_weight: u32,
    /// A hard cap on the CPU the tenant's plugin calls use, in cores (`0.25`: a quarter of one
    /// core), held even when nothing else runs. None by default.
    pub cpu: Option<f64>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory: default_memory(),
            timeout: default_timeout(),
            fuel: None,
            env: BTreeMap::new(),
            read_dirs: Vec::new(),
            recycle_after_messages: None,
            recycle_memory_above: None,
            cpu_weight: default_cpu_weight(),
            cpu: None,
        }
    }
}

fn default_cpu_weight() -> u32 {
    1
}

fn default_memory() -> ByteSize {
    ByteSize::mib(64)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// Keyword enums: parsed from their documented spelling, with an error listing the choices
/// (serde's own message through the `config` crate names the Rust type instead).
macro_rules! keyword_enum {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(word: String) -> Result<Self, String> {
                match word.as_str() {
                    $($word => Ok($ty::$variant),)+
                    _ => Err(format!(
                        "unknown value {word:?}; expected one of {}",
                        [$(concat!("\"", $word, "\"")),+].join(", ")
                    )),
                }
            }
        }
    };
}

keyword_enum!(OrderingSetting { "unordered" => Unordered, "partition" => Partition, "key" => Key });
keyword_enum!(LogFormat { "text" => Text, "json" => Json });
keyword_enum!(FailurePolicy { "dead-letter" => DeadLetter, "skip" => Skip, "halt" => Halt });
keyword_enum!(RolloutMode { "shadow" => Shadow, "canary" => Canary });
keyword_enum!(Delivery { "at-least-once" => AtLeastOnce, "exactly-once" => ExactlyOnce });

/// librdkafka properties Burrow owns: letting a user set them would break the delivery
/// guarantee (auto commit) or tenant isolation (group id).
const RESERVED_KAFKA_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "transactional.id",
];

/// A problem with one key of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted path of the key, e.g. `tenant[0].limits.memory`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("{}cannot read config: {message}", at(path))]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// The file is not valid TOML. Says where and what was expected, never the offending
    /// text: the line may hold a password.
    #[error("{}line {line}, column {column}: invalid TOML: {message}", at(path))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the parser expected or found wrong.
        message: String,
    },
    /// A key has the wrong type, an unknown name, or a value that does not parse.
    #[error("{}`{key}`: {message}", at(path))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file parsed, but some values are invalid or inconsistent.
    #[error("{}{} invalid setting(s):\n{}", at(path), issues.len(), list(issues))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order.
        issues: Vec<ConfigIssue>,
    },
}

/// `"FILE: "` when the error is about a file, nothing when it is about text.
fn at(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl HostConfig {
    /// Reads `path`, applies `BURROW__...` environment overrides, parses and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`HostConfig::load`], with the environment given explicitly (tests, embedding).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config = Self::read_with_env(path, env)?;
        config.validate().map_err(|e| e.with_path(path))?;
        Ok(config)
    }

    /// Reads and parses `path` with `BURROW__...` overrides, paths made absolute, without
    /// [`HostConfig::validate`]: for `burrow validate`, which adds its own checks to the
    /// validation's and reports them all at once.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        Self::read_with_env(path, std::env::vars())
    }

    fn read_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut config = Self::parse(&text, env).map_err(|e| e.with_path(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// This process's name among those sharing its consumer groups (`instance_id`, or the
    /// host name).
    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(host_name)
    }

    /// The `transactional.id` of `tenant`'s transactional producer in this process.
    pub fn transactional_id(&self, tenant: &TenantConfig) -> String {
        format!("burrow-{}-{}", tenant.group_id, self.instance())
    }

    /// The values of every secret setting (see [`secret::is_secret_key`]): what
    /// [`secret::redact`] must remove from any text shown to an operator.
    pub fn secrets(&self) -> Vec<String> {
        let plugin_settings = self
            .tenants
            .iter()
            .flat_map(|t| t.config.iter().chain(&t.limits.env));
        self.kafka
            .options
            .iter()
            .chain(plugin_settings)
            .filter(|(key, _)| secret::is_secret_key(key))
            .map(|(_, value)| value.clone())
            .chain(self.admin.token.clone())
            .collect()
    }

    /// Parses TOML text layered with environment overrides; does not validate.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        check_syntax(text)?;
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| ConfigError::Read {
                path: PathBuf::new(),
                message: e.to_string(),
            })?;
        serde_path_to_error::deserialize(layered).map_err(|e| {
            let key = e.path().to_string();
            // serde's messages quote the bad value ("invalid type: string \"...\""): not for a
            // secret.
            let message = if secret::is_secret_path(&key) {
                "invalid value (not shown: this setting holds a secret)".to_owned()
            } else {
                clean_message(&e.into_inner().to_string())
            };
            ConfigError::Parse {
                path: PathBuf::new(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            }
        })
    }

    /// Makes plugin and directory paths relative to the config file's directory absolute, so
    /// the host can run from anywhere.
    fn resolve_paths(&mut self, base: &Path) {
        for tenant in &mut self.tenants {
            if tenant.plugin.is_relative() {
                tenant.plugin = base.join(&tenant.plugin);
            }
            if let Some(rollout) = &mut tenant.rollout
                && rollout.plugin.is_relative()
            {
                rollout.plugin = base.join(&rollout.plugin);
            }
        }
        if let Some(dir) = &mut self.cache_dir
            && dir.is_relative()
            && !dir.as_os_str().is_empty()
        {
            *dir = base.join(&*dir);
        }
    }

    /// Checks every value and cross-reference; returns every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        self.validate_kafka(&mut issues);
        self.pool.validate("pool", &self.pool, &mut issues);
        if self.tenants.is_empty() {
            issues.push(issue("tenant", "at least one [[tenant]] is required"));
        }
        let mut names = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            let at = format!("tenant[{i}]");
            tenant.validate(&at, &mut issues);
            self.pool_settings_for(tenant).validate(
                &format!("{at}.pool"),
                &tenant.pool,
                &mut issues,
            );
            self.validate_shutdown_timeout(&at, tenant, &mut issues);
            self.validate_start_timeout(&at, tenant, &mut issues);
            if !names.insert(tenant.name.as_str()) {
                issues.push(issue(
                    format!("{at}.name"),
                    format!("tenant name {:?} is used twice", tenant.name),
                ));
            }
            if !groups.insert(tenant.group_id.as_str()) {
                issues.push(issue(
                    format!("{at}.group_id"),
                    format!(
                        "group {:?} is used by another tenant; tenants must not share offsets",
                        tenant.group_id
                    ),
                ));
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: PathBuf::new(),
                issues,
            })
        }
    }

    fn validate_kafka(&self, issues: &mut Vec<ConfigIssue>) {
        if self.kafka.brokers.trim().is_empty() {
            issues.push(issue("kafka.brokers", "must name at least one host:port"));
        }
        for key in self.kafka.options.keys() {
            if RESERVED_KAFKA_OPTIONS.contains(&key.as_str()) {
                issues.push(issue(
                    format!("kafka.options.{key}"),
                    "is set by Burrow itself and cannot be overridden",
                ));
            }
        }
    }

    /// A revoke waits up to `shutdown_timeout` without polling: at or past the consumer's
    /// `max.poll.interval.ms` the group would evict the member mid-drain, so the pool refuses
    /// to start. The problem is reported where the value was written, once.
    fn validate_shutdown_timeout(
        &self,
        at: &str,
        tenant: &TenantConfig,
        issues: &mut Vec<ConfigIssue>,
    ) {
        /// librdkafka's default `max.poll.interval.ms`.
        const DEFAULT_MAX_POLL_MS: u64 = 300_000;
        const KEY: &str = "max.poll.interval.ms";
        let Some(max_poll) = self.kafka_millis(KEY, DEFAULT_MAX_POLL_MS) else {
            return;
        };
        let settings = self.pool_settings_for(tenant);
        let shutdown = settings
            .shutdown_timeout
            .unwrap_or_else(|| pool::Config::default().shutdown_timeout);
        if shutdown < max_poll {
            return;
        }
        let key = written_at(
            at,
            "shutdown_timeout",
            [tenant.pool.shutdown_timeout, self.pool.shutdown_timeout],
            KEY,
        );
        push_once(
            issues,
            issue(
                key,
                format!(
                    "shutdown_timeout ({}) must be shorter than max.poll.interval.ms ({}): a \
                 revoke waits that long without polling, and the group would evict the member",
                    humantime::format_duration(shutdown),
                    humantime::format_duration(max_poll)
                ),
            ),
        );
    }

    /// A librdkafka option in milliseconds, or `default_ms` when unset; `None` when it is not a
    /// number (building the consumer reports that, naming the key).
    fn kafka_millis(&self, key: &str, default_ms: u64) -> Option<Duration> {
        match self.kafka.options.get(key).map(|v| v.trim().parse::<u64>()) {
            None => Some(Duration::from_millis(default_ms)),
            Some(Ok(ms)) => Some(Duration::from_millis(ms)),
            Some(Err(_)) => None,
        }
    }

    /// A member that comes back after a crash joins only once the group has given up on its
    /// old self: after the consumer's `session.timeout.ms`. A `start_timeout` not longer than
    /// that would halt a tenant at every restart after a crash. Reported where the value was
    /// written, once.
    fn validate_start_timeout(
        &self,
        at: &str,
        tenant: &TenantConfig,
        issues: &mut Vec<ConfigIssue>,
    ) {
        /// librdkafka's default `session.timeout.ms`.
        const DEFAULT_SESSION_MS: u64 = 45_000;
        const KEY: &str = "session.timeout.ms";
        let Some(session) = self.kafka_millis(KEY, DEFAULT_SESSION_MS) else {
            return;
        };
        let start = self.pool_settings_for(tenant).start_timeout();
        if start > session {
            return;
        }
        let key = written_at(
            at,
            "start_timeout",
            [tenant.pool.start_timeout, self.pool.start_timeout],
            KEY,
        );
        push_once(
            issues,
            issue(
                key,
                format!(
                    "start_timeout ({}) must be longer than session.timeout.ms ({}): a member that \
                 restarts after a crash waits that long for the group to drop its old self",
                    humantime::format_duration(start),
                    humantime::format_duration(session)
                ),
            ),
        );
    }

    /// The pool settings of `tenant`: its own overrides on top of the top-level `[pool]`.
    pub fn pool_settings_for(&self, tenant: &TenantConfig) -> PoolSettings {
        tenant.pool.clone().or(&self.pool)
    }
}

impl TenantConfig {
    /// The same tenant running `plugin` instead (a candidate version, a plugin under test).
    pub fn with_plugin(&self, plugin: &Path) -> TenantConfig {
        TenantConfig {
            plugin: plugin.to_owned(),
            ..self.clone()
        }
    }

    fn validate(&self, at: &str, issues: &mut Vec<ConfigIssue>) {
        if !is_simple_name(&self.name) {
            issues.push(issue(
                format!("{at}.name"),
                "must be non-empty and use only letters, digits, '-', '_' and '.'",
            ));
        }
        if self.group_id.trim().is_empty() {
            issues.push(issue(format!("{at}.group_id"), "must not be empty"));
        }
        if self.topics.is_empty() {
            issues.push(issue(
                format!("{at}.topics"),
                "must list at least one topic",
            ));
        }
        for (j, topic) in self.topics.iter().enumerate() {
            if !is_valid_topic(topic) {
                issues.push(issue(format!("{at}.topics[{j}]"), bad_topic(topic)));
            }
        }
        self.validate_failure_policy(at, issues);
        for (j, topic) in self.output_topics.iter().enumerate() {
            if !is_valid_topic(topic) {
                issues.push(issue(format!("{at}.output_topics[{j}]"), bad_topic(topic)));
            } else if self.topics.contains(topic) {
                issues.push(issue(
                    format!("{at}.output_topics[{j}]"),
                    format!("{topic:?} is also an input topic; emitting to it would loop"),
                ));
            }
        }
        self.limits.validate(&format!("{at}.limits"), issues);
        if let Some(rollout) = &self.rollout {
            rollout.validate(&format!("{at}.rollout"), issues);
        }
        if let Some(topic) = self.rollout.as_ref().and_then(|r| r.diff_topic.as_ref()) {
            let key = format!("{at}.rollout.diff_topic");
            if !is_valid_topic(topic) {
                issues.push(issue(key, bad_topic(topic)));
            } else if self.topics.contains(topic) {
                issues.push(issue(
                    key,
                    format!("{topic:?} is also an input topic; differences would be consumed"),
                ));
            }
        }
    }

    fn validate_failure_policy(&self, at: &str, issues: &mut Vec<ConfigIssue>) {
        match (&self.on_failure, &self.dead_letter_topic) {
            (FailurePolicy::DeadLetter, None) => issues.push(issue(
                format!("{at}.dead_letter_topic"),
                "is required when on_failure = \"dead-letter\" (or set on_failure = \"skip\" or \"halt\")",
            )),
            (_, Some(topic)) if !is_valid_topic(topic) => {
                issues.push(issue(format!("{at}.dead_letter_topic"), bad_topic(topic)))
            }
            (_, Some(topic)) if self.topics.contains(topic) => issues.push(issue(
                format!("{at}.dead_letter_topic"),
                format!("{topic:?} is also an input topic; dead letters would be consumed again"),
            )),
            _ => {}
        }
    }
}

impl RolloutConfig {
    fn validate(&self, at: &str, issues: &mut Vec<ConfigIssue>) {
        match (self.mode, self.share) {
            (RolloutMode::Canary, None) => issues.push(issue(
                format!("{at}.share"),
                "is required with mode = \"canary\" (the share of keys the candidate serves, e.g. 0.1)",
            )),
            (RolloutMode::Canary, Some(share)) if !(share > 0.0 && share < 1.0) => issues.push(
                issue(format!("{at}.share"), format!("{share} is not between 0 and 1")),
            ),
            (RolloutMode::Shadow, Some(_)) => issues.push(issue(
                format!("{at}.share"),
                "applies to mode = \"canary\" only (a shadow sees every message)",
            )),
            _ => {}
        }
        if self.mode == RolloutMode::Canary && self.diff_topic.is_some() {
            issues.push(issue(
                format!("{at}.diff_topic"),
                "applies to mode = \"shadow\" only (a canary's messages run on one version)",
            ));
        }
        if self.mode == RolloutMode::Shadow {
            let canary_only = [
                ("promote_after", self.promote_after.is_some()),
                ("min_messages", self.min_messages.is_some()),
                ("rollback_if", self.rollback_if.is_some()),
            ];
            for (key, _) in canary_only.iter().filter(|(_, set)| *set) {
                issues.push(issue(
                    format!("{at}.{key}"),
                    "applies to mode = \"canary\" only (a shadow has no effect to promote or roll back)",
                ));
            }
        }
        match self.promote_after {
            Some(PromoteAfter::Messages(0)) => {
                issues.push(issue(
                    format!("{at}.promote_after"),
                    "must be at least 1 message",
                ));
            }
            Some(PromoteAfter::Elapsed(d)) if d.is_zero() => {
                issues.push(issue(
                    format!("{at}.promote_after"),
                    "must be longer than 0s",
                ));
            }
            _ => {}
        }
        let rates = self
            .rollback_if
            .iter()
            .flat_map(|r| [("failure_rate", r.failure_rate), ("trap_rate", r.trap_rate)]);
        for (key, rate) in rates {
            if let Some(rate) = rate
                && !(0.0..1.0).contains(&rate)
            {
                issues.push(issue(
                    format!("{at}.rollback_if.{key}"),
                    format!("{rate} is not a margin between 0 and 1 (0.01 is one point)"),
                ));
            }
        }
    }
}

impl LimitsConfig {
    /// The tenant's claim on the plugin executor.
    pub fn cpu(&self) -> crate::wasm::Cpu {
        crate::wasm::Cpu {
            weight: self.cpu_weight,
            cores: self.cpu,
        }
    }

    fn validate(&self, at: &str, issues: &mut Vec<ConfigIssue>) {
        // A Rust plugin's std needs a few pages before `process` even runs.
        const MIN_MEMORY: u64 = 1024 * 1024;
        if self.memory.as_u64() < MIN_MEMORY {
            issues.push(issue(
                format!("{at}.memory"),
                format!("{} is too small; a plugin needs at least 1MiB", self.memory),
            ));
        }
        if self.timeout.is_zero() {
            issues.push(issue(format!("{at}.timeout"), "must be greater than 0"));
        }
        if self.fuel == Some(0) {
            issues.push(issue(
                format!("{at}.fuel"),
                "must be greater than 0 (omit it for no fuel limit)",
            ));
        }
        if self.cpu_weight == 0 {
            issues.push(issue(
                format!("{at}.cpu_weight"),
                "must be at least 1 (a weight is a share relative to the other tenants')",
            ));
        }
        if let Some(cores) = self.cpu
            && !(cores.is_finite() && cores > 0.0)
        {
            issues.push(issue(
                format!("{at}.cpu"),
                format!(
                    "{cores} is not a number of cores greater than 0 (0.25 is a quarter of one \
                     core; omit it for no cap)"
                ),
            ));
        }
        if self.recycle_after_messages == Some(0) {
            issues.push(issue(
                format!("{at}.recycle_after_messages"),
                "must be greater than 0 (omit it to keep instances)",
            ));
        }
        if let Some(mark) = self.recycle_memory_above
            && mark >= self.memory
        {
            issues.push(issue(
                format!("{at}.recycle_memory_above"),
                format!(
                    "{mark} is not below the memory cap ({}): an instance would hit the cap first",
                    self.memory
                ),
            ));
        }
        for (j, dir) in self.read_dirs.iter().enumerate() {
            if !dir.is_absolute() {
                issues.push(issue(
                    format!("{at}.read_dirs[{j}]"),
                    format!("{} must be an absolute path", dir.display()),
                ));
            } else if !dir.is_dir() {
                // Every instance mounts it: a missing one would fail every message.
                issues.push(issue(
                    format!("{at}.read_dirs[{j}]"),
                    format!("{} is not an existing directory", dir.display()),
                ));
            }
        }
    }
}

impl PoolSettings {
    /// Each key set here wins; each key unset falls back to `base`.
    pub fn or(self, base: &PoolSettings) -> PoolSettings {
        PoolSettings {
            workers: self.workers.or(base.workers),
            job_queue_size: self.job_queue_size.or(base.job_queue_size),
            max_buffered_bytes: self.max_buffered_bytes.or(base.max_buffered_bytes),
            commit_interval: self.commit_interval.or(base.commit_interval),
            commit_batch_size: self.commit_batch_size.or(base.commit_batch_size),
            max_consecutive_errors: self.max_consecutive_errors.or(base.max_consecutive_errors),
            max_retries: self.max_retries.or(base.max_retries),
            retry_backoff_base: self.retry_backoff_base.or(base.retry_backoff_base),
            retry_backoff_max: self.retry_backoff_max.or(base.retry_backoff_max),
            ordering: self.ordering.or(base.ordering),
            shutdown_timeout: self.shutdown_timeout.or(base.shutdown_timeout),
            start_timeout: self.start_timeout.or(base.start_timeout),
        }
    }

    /// How long the tenant may take to start: the key, or [`DEFAULT_START_TIMEOUT`].
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT)
    }

    /// The pool config these settings give: each key set here, the library default otherwise.
    /// Metrics are always on: the host serves them.
    pub fn to_pool_config(&self) -> pool::Config {
        let d = pool::Config::default();
        pool::Config {
            num_workers: self.workers.unwrap_or(d.num_workers),
            job_queue_size: self.job_queue_size.unwrap_or(d.job_queue_size),
            max_buffered_bytes: self
                .max_buffered_bytes
                .map_or(d.max_buffered_bytes, |b| b.as_u64()),
            commit_interval: self.commit_interval.unwrap_or(d.commit_interval),
            commit_batch_size: self.commit_batch_size.unwrap_or(d.commit_batch_size),
            max_consecutive_errors: self
                .max_consecutive_errors
                .unwrap_or(d.max_consecutive_errors),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            retry_backoff_base: self.retry_backoff_base.unwrap_or(d.retry_backoff_base),
            retry_backoff_max: self.retry_backoff_max.unwrap_or(d.retry_backoff_max),
            enable_metrics: true,
            ordering: match self.ordering {
                None => d.ordering,
                Some(OrderingSetting::Unordered) => pool::Ordering::Unordered,
                Some(OrderingSetting::Partition) => pool::Ordering::Partition,
                Some(OrderingSetting::Key) => pool::Ordering::Key,
            },
            shutdown_timeout: self.shutdown_timeout.unwrap_or(d.shutdown_timeout),
        }
    }

    /// Checks the pool config these settings give, with the pool's own rules, and reports each
    /// problem under the file key that holds the bad value (`at.workers`, not `num_workers`).
    /// `own` are the settings written at `at`: a problem in an inherited value is reported
    /// where it was written, once.
    fn validate(&self, at: &str, own: &PoolSettings, issues: &mut Vec<ConfigIssue>) {
        let Err(errors) = self.to_pool_config().validate() else {
            return;
        };
        for error in errors.fields {
            let key = match error.field {
                "num_workers" => "workers",
                other => other,
            };
            if own.is_set(key) {
                issues.push(issue(format!("{at}.{key}"), error.reason));
            }
        }
    }

    /// Whether the file key `key` is set in these settings.
    fn is_set(&self, key: &str) -> bool {
        match key {
            "workers" => self.workers.is_some(),
            "job_queue_size" => self.job_queue_size.is_some(),
            "max_buffered_bytes" => self.max_buffered_bytes.is_some(),
            "commit_interval" => self.commit_interval.is_some(),
            "commit_batch_size" => self.commit_batch_size.is_some(),
            "max_consecutive_errors" => self.max_consecutive_errors.is_some(),
            "max_retries" => self.max_retries.is_some(),
            "retry_backoff_base" => self.retry_backoff_base.is_some(),
            // Its rule compares it with the base: report it if either is written here.
            "retry_backoff_max" => {
                self.retry_backoff_max.is_some() || self.retry_backoff_base.is_some()
            }
            "shutdown_timeout" => self.shutdown_timeout.is_some(),
            _ => true,
        }
    }
}

/// The key an issue between a pool duration and a librdkafka option is reported at: where the
/// duration was written (the tenant's `[tenant.pool]`, then `[pool]`), else the option.
fn written_at(at: &str, name: &str, [tenant, pool]: [Option<Duration>; 2], option: &str) -> String {
    if tenant.is_some() {
        format!("{at}.pool.{name}")
    } else if pool.is_some() {
        format!("pool.{name}")
    } else {
        format!("kafka.options.{option}")
    }
}

/// Adds `new` unless an issue with its key is there already: a value written once, at the top
/// level, is reported once, not once per tenant that inherits it.
fn push_once(issues: &mut Vec<ConfigIssue>, new: ConfigIssue) {
    if !issues.iter().any(|i| i.key == new.key) {
        issues.push(new);
    }
}

fn issue(key: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        message: message.into(),
    }
}

fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Kafka's own rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn is_valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len()) && is_simple_name(topic) && topic != "." && topic != ".."
}

fn bad_topic(topic: &str) -> String {
    format!("{topic:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
}

/// Checks that `text` is TOML before the `config` crate reads it: the crate's error quotes the
/// offending line, which may hold a secret. Ours says where (line, column) and what the parser
/// expected, nothing of the text itself.
fn check_syntax(text: &str) -> Result<(), ConfigError> {
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let offset = text.floor_char_boundary(e.span().map_or(0, |span| span.start));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(ConfigError::Syntax {
        path: PathBuf::new(),
        line,
        column,
        message: e.message().trim().replace('\n', "; "),
    })
}

/// Drops the `for key ...` suffix the `config` crate appends (the key is already in front, and
/// the crate's spelling of it is garbled for array elements), but keeps where the value came
/// from when it was the environment, since the file would look right.
fn clean_message(message: &str) -> String {
    let from_env = message.ends_with("in the environment");
    let core = message.split(" for key `").next().unwrap_or(message).trim();
    if from_env {
        format!("{core} (set in the environment)")
    } else {
        core.to_owned()
    }
}

impl ConfigError {
    fn with_path(self, file: &Path) -> Self {
        match self {
            ConfigError::Read { message, .. } => ConfigError::Read {
                path: file.to_owned(),
                message,
            },
            ConfigError::Syntax {
                line,
                column,
                message,
                ..
            } => ConfigError::Syntax {
                path: file.to_owned(),
                line,
                column,
                message,
            },
            ConfigError::Parse { key, message, .. } => ConfigError::Parse {
                path: file.to_owned(),
                key,
                message,
            },
            ConfigError::Invalid { issues, .. } => ConfigError::Invalid {
                path: file.to_owned(),
                issues,
            },
        }
    }
}

/// Human units for sizes and durations, with errors that show how to write them.
mod units {
    use std::time::Duration;

    use bytesize::ByteSize;
    use serde::de::{Deserialize, Deserializer, Error};

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum SizeValue {
        Bytes(u64),
        Text(String),
    }

    pub fn size<'de, D: Deserializer<'de>>(de: D) -> Result<ByteSize, D::Error> {
        match SizeValue::deserialize(de)? {
            SizeValue::Bytes(n) => Ok(ByteSize::b(n)),
            SizeValue::Text(text) => text.parse::<ByteSize>().map_err(|e| {
                D::Error::custom(format!(
                    "invalid size {text:?} ({e}); write it like \"64MiB\" or \"512KiB\""
                ))
            }),
        }
    }

    pub fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {text:?} ({e}); write it like \"5s\" or \"250ms\""
            ))
        })
    }

    pub fn opt_size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<ByteSize>, D::Error> {
        size(de).map(Some)
    }

    pub fn opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
        duration(de).map(Some)
    }
}

#[cfg(test)]
mod tests;
