//! A builder for the `burrow.toml` the real binary runs on.
//!
//! It writes TOML text (not the host's own config types) on purpose: the tests exercise the
//! file format a user writes, and the kit does not move when the host's internals do.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::broker::Broker;

/// A TOML value: a string (quoted), an integer, a float, or a list of strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    Float(f64),
    List(Vec<String>),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(&quote(s)),
            Value::Int(i) => write!(f, "{i}"),
            // `{:?}` keeps the point: TOML reads `1.0` as a float, `1` as an integer.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::List(items) => {
                let items: Vec<String> = items.iter().map(|i| quote(i)).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

/// A TOML basic string: JSON's escapes are all valid TOML.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The whole file.
#[derive(Debug, Clone)]
pub struct HostConfig {
    brokers: String,
    /// The admin listener's address; port 0 picks a free one.
    admin_listen: String,
    kafka_options: Vec<(String, String)>,
    pool: Vec<(String, Value)>,
    tenants: Vec<Tenant>,
}

impl HostConfig {
    /// A config for `broker` (its TLS options included) with fast commits (`100ms`), so tests
    /// see progress without waiting. The admin listener binds port 0; the process fixture reads
    /// the port from the log.
    ///
    /// On a real broker, `session.timeout.ms = 6000` so a killed member's partitions move within
    /// seconds. Not on the mock cluster: its tests run the host in-process and never kill a
    /// member.
    pub fn new(broker: &Broker) -> Self {
        let mut config = Self::for_bootstrap(&broker.bootstrap);
        if !broker.is_mock() {
            config = config
                .kafka_option("session.timeout.ms", "6000")
                .kafka_option("heartbeat.interval.ms", "500");
        }
        for (key, value) in &broker.client_options {
            config = config.kafka_option(key, value);
        }
        config
    }

    /// A config for bootstrap servers that are not a [`Broker`] of the kit (say, one nobody
    /// listens on, for a config that is only validated), with fast commits (`100ms`).
    pub fn for_bootstrap(bootstrap: &str) -> Self {
        Self {
            brokers: bootstrap.to_owned(),
            admin_listen: "127.0.0.1:0".to_owned(),
            kafka_options: Vec::new(),
            pool: Vec::new(),
            tenants: Vec::new(),
        }
        .pool("commit_interval", "100ms")
    }

    /// The admin listener's address (default `127.0.0.1:0`).
    pub fn admin_listen(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.admin_listen);
        self
    }

    /// A librdkafka property in `[kafka.options]` (replaces one of the same name).
    pub fn kafka_option(mut self, key: &str, value: &str) -> Self {
        self.kafka_options.retain(|(k, _)| k != key);
        self.kafka_options.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A `[pool]` setting (replaces one of the same name).
    pub fn pool(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.pool.retain(|(k, _)| k != key);
        self.pool.push((key.to_owned(), value.into()));
        self
    }

    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenants.push(tenant);
        self
    }

    /// The tenant named `name`, to change it (e.g. its plugin, for a hot swap).
    pub fn tenant_mut(&mut self, name: &str) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.name == name)
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[kafka]\nbrokers = {}\n", quote(&self.brokers));
        let _ = writeln!(s, "[kafka.options]");
        for (k, v) in &self.kafka_options {
            let _ = writeln!(s, "{} = {}", quote(k), quote(v));
        }
        let _ = writeln!(s, "\n[admin]\nlisten = {}\n", quote(&self.admin_listen));
        let _ = writeln!(s, "[pool]");
        for (k, v) in &self.pool {
            let _ = writeln!(s, "{k} = {v}");
        }
        for t in &self.tenants {
            t.render(&mut s);
        }
        s
    }

    /// Writes the file as `dir/burrow.toml` whole (write then rename, as a deployment tool
    /// would, so a running host never reads half a file); returns its path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        write_file(dir, &self.render())
    }
}

/// Writes `text` as `dir/burrow.toml` whole, like [`HostConfig::write`]: for a test that edits
/// the rendered text (to break its syntax, say); returns its path.
pub fn write_file(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("burrow.toml");
    write_atomically(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes `bytes` to a sibling temp file, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// One `[[tenant]]`.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub plugin: PathBuf,
    /// `dead-letter` (with `dead_letter_topic`), `skip` or `halt`; `None` leaves the default.
    pub on_failure: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub output_topics: Vec<String>,
    /// `delivery`: `at-least-once` (Burrow's default when unset) or `exactly-once`.
    pub delivery: Option<String>,
    pub limits: Vec<(String, Value)>,
    pub pool: Vec<(String, Value)>,
    pub config: Vec<(String, String)>,
    /// `[tenant.rollout]`: the candidate's plugin and mode.
    pub rollout: Option<(PathBuf, String)>,
    /// The rollout's other keys (`share`, `diff_topic`, `rollback_if.trap_rate`...).
    pub rollout_keys: Vec<(String, Value)>,
}

impl Tenant {
    /// Tenant `name` in group `group`, reading `topics` through the plugin at `plugin`.
    pub fn new(name: &str, group: &str, topics: &[&str], plugin: &Path) -> Self {
        Self {
            name: name.to_owned(),
            group_id: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            plugin: plugin.to_owned(),
            on_failure: None,
            dead_letter_topic: None,
            output_topics: Vec::new(),
            delivery: None,
            limits: Vec::new(),
            pool: Vec::new(),
            config: Vec::new(),
            rollout: None,
            rollout_keys: Vec::new(),
        }
    }

    /// A candidate version, `plugin`, running in `mode` (`shadow` or `canary`).
    pub fn rollout(mut self, plugin: &Path, mode: &str) -> Self {
        self.rollout = Some((plugin.to_owned(), mode.to_owned()));
        self
    }

    /// A key of `[tenant.rollout]`; dotted for its tables (`rollback_if.trap_rate`).
    pub fn rollout_key(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.rollout_keys.push((key.to_owned(), value.into()));
        self
    }

    /// The rollout's `diff_topic`.
    pub fn diff_topic(self, topic: &str) -> Self {
        self.rollout_key("diff_topic", topic)
    }

    /// Permanent failures go to `topic`.
    pub fn dead_letters(mut self, topic: &str) -> Self {
        self.on_failure = Some("dead-letter".into());
        self.dead_letter_topic = Some(topic.to_owned());
        self
    }

    pub fn on_failure(mut self, policy: &str) -> Self {
        self.on_failure = Some(policy.to_owned());
        self
    }

    /// The tenant's delivery guarantee.
    pub fn delivery(mut self, delivery: &str) -> Self {
        self.delivery = Some(delivery.to_owned());
        self
    }

    pub fn output(mut self, topic: &str) -> Self {
        self.output_topics.push(topic.to_owned());
        self
    }

    pub fn limit(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.to_owned(), value.into()));
        self
    }

    pub fn pool(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.pool.retain(|(k, _)| k != key);
        self.pool.push((key.to_owned(), value.into()));
        self
    }

    /// A plugin setting (`[tenant.config]`).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.retain(|(k, _)| k != key);
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    fn render(&self, s: &mut String) {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|t| quote(t))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "\n[[tenant]]");
        let _ = writeln!(s, "name = {}", quote(&self.name));
        let _ = writeln!(s, "group_id = {}", quote(&self.group_id));
        let _ = writeln!(s, "topics = [{}]", list(&self.topics));
        let _ = writeln!(s, "plugin = {}", quote(&self.plugin.to_string_lossy()));
        if let Some(policy) = &self.on_failure {
            let _ = writeln!(s, "on_failure = {}", quote(policy));
        }
        if let Some(topic) = &self.dead_letter_topic {
            let _ = writeln!(s, "dead_letter_topic = {}", quote(topic));
        }
        if !self.output_topics.is_empty() {
            let _ = writeln!(s, "output_topics = [{}]", list(&self.output_topics));
        }
        if let Some(delivery) = &self.delivery {
            let _ = writeln!(s, "delivery = {}", quote(delivery));
        }
        for (section, entries) in [("limits", &self.limits), ("pool", &self.pool)] {
            if !entries.is_empty() {
                let _ = writeln!(s, "[tenant.{section}]");
                for (k, v) in entries {
                    let _ = writeln!(s, "{k} = {v}");
                }
            }
        }
        if !self.config.is_empty() {
            let _ = writeln!(s, "[tenant.config]");
            for (k, v) in &self.config {
                let _ = writeln!(s, "{} = {}", quote(k), quote(v));
            }
        }
        if let Some((plugin, mode)) = &self.rollout {
            let _ = writeln!(s, "[tenant.rollout]");
            let _ = writeln!(s, "plugin = {}", quote(&plugin.to_string_lossy()));
            let _ = writeln!(s, "mode = {}", quote(mode));
            for (k, v) in &self.rollout_keys {
                let _ = writeln!(s, "{k} = {v}");
            }
        }
    }
}

/// A tenant with topics of its own, ready to run: an input, an output and a dead-letter topic
/// (unique names made from `name`) created on the broker, and a one-tenant config, written in a
/// directory that lives as long as this, whose tenant reads the input with the chaos plugin
/// (which emits to the output or fails as each record's `burrow-action` header says).
pub struct Pipeline {
    pub input: String,
    pub output: String,
    pub dlq: String,
    /// The tenant's consumer group.
    pub group: String,
    /// The written `burrow.toml`.
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    /// Creates the topics (input and output with `partitions`, the dead letters with
    /// `dlq_partitions`) and writes the config; `shape` adds to the tenant (its pool settings,
    /// its delivery).
    pub fn create(
        broker: &Broker,
        name: &str,
        (partitions, dlq_partitions): (i32, i32),
        shape: impl FnOnce(Tenant) -> Tenant,
    ) -> anyhow::Result<Self> {
        let named = |what: &str| crate::unique(&format!("{name}-{what}"));
        let (input, output, dlq) = (named("in"), named("out"), named("dlq"));
        crate::kafka::create_topics(
            broker,
            &[
                (&input, partitions),
                (&output, partitions),
                (&dlq, dlq_partitions),
            ],
        )?;
        let group = crate::unique(name);
        let dir = tempfile::tempdir()?;
        let chaos = crate::plugins::plugin_path("chaos")?;
        let tenant = Tenant::new(name, &group, &[&input], &chaos)
            .output(&output)
            .dead_letters(&dlq);
        let config = HostConfig::new(broker)
            .tenant(shape(tenant))
            .write(dir.path())?;
        Ok(Self {
            input,
            output,
            dlq,
            group,
            config,
            _dir: dir,
        })
    }
}
