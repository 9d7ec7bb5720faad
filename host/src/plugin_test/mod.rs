//! `burrow test`: records from a file through a plugin on the real runtime, without Kafka.
//!
//! The plugin runs as a worker of `burrow run` would run it: the same engine, the tenant's
//! limits, settings and sandbox (from `--from burrow.toml`, or the defaults), one instance
//! reused across records and replaced after a failure. A committing record's emits are checked
//! against the tenant's `output_topics` as `run` checks them. Fuel is always counted (so a
//! budget can be held in CI, where wall time is noise): calls run on the metered engine, which
//! is slower than `run`'s plain one by 5–28 % for plugins without a fuel limit.
//!
//! - [`records`] — the input lines and how bytes are written back.
//! - [`verdict`] — what a plugin made of one record, as `--json` prints and `--expect` compares.
//! - this module — the run, its summary, and the comparison with expected lines.

pub mod records;
pub mod verdict;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{ConfigError, HostConfig, LimitsConfig, TenantConfig};
use crate::tenant;
use crate::wasm::{
    CallContext, CallError, CodeCache, DeploymentSlot, LoadError, PluginInstance, Processed,
    Runtime, RuntimeConfig, RuntimeError,
};
use records::Defaults;
use verdict::Verdict;

/// The fuel budget of a call when the tenant sets none: counted, never reached in practice.
const UNMETERED: u64 = 1 << 50;

/// What `burrow test` was asked.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// The plugin under test.
    pub plugin: PathBuf,
    /// The records, one JSON object per line.
    pub input: PathBuf,
    /// The plugin's settings (`--config key=value`), over the tenant's.
    pub settings: BTreeMap<String, String>,
    /// A host config whose tenant's limits, settings, sandbox and output topics apply.
    pub from: Option<PathBuf>,
    /// Which tenant of `from`; may be left out when it has only one.
    pub tenant: Option<String>,
}

/// Why `burrow test` could not run (a record the plugin fails on is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("cannot read {}: {source}", path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {why}", path.display())]
    Tenant { path: PathBuf, why: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// One input line's result.
#[derive(Debug, Clone)]
pub struct Tested {
    /// The line in the input file, from 1.
    pub line: usize,
    /// The record's offset, or why the line could not be read.
    pub record: Result<Ran, String>,
}

/// A record that reached the plugin.
#[derive(Debug, Clone)]
pub struct Ran {
    pub offset: i64,
    pub verdict: Verdict,
    /// The call's wall time (a fresh instance's start not included).
    pub time: Duration,
    /// The fuel the call used (`None` if it never entered the plugin).
    pub fuel: Option<u64>,
}

impl Tested {
    /// The line `--json` prints, which `--expect` compares.
    pub fn to_json(&self) -> Value {
        match &self.record {
            Ok(ran) => ran.verdict.to_json(self.line, ran.offset),
            Err(error) => verdict::bad_line_json(self.line, error),
        }
    }
}

/// Runs every record of `options.input` through the plugin, in order, calling `each` with each
/// result as it comes; returns them all.
pub fn run(options: &TestOptions, mut each: impl FnMut(&Tested)) -> Result<Vec<Tested>, TestError> {
    let setup = Setup::new(options)?;
    let input = std::fs::read_to_string(&options.input).map_err(|source| TestError::Input {
        path: options.input.clone(),
        source,
    })?;
    let mut instance = setup.runner.instance();
    let mut results = Vec::new();
    let mut index = 0;
    for (n, text) in input.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let record = records::parse(text, index, &setup.defaults)
            .map(|message| setup.runner.call(&mut instance, &message));
        index += 1;
        let tested = Tested {
            line: n + 1,
            record,
        };
        each(&tested);
        results.push(tested);
    }
    Ok(results)
}

/// The tenant a run stands in for, and its plugin.
struct Setup {
    runner: Runner,
    defaults: Defaults,
}

impl Setup {
    fn new(options: &TestOptions) -> Result<Self, TestError> {
        let (tenant, cache, check_emits) = match &options.from {
            Some(path) => {
                let config = HostConfig::load(path)?;
                let tenant = pick_tenant(path, &config, options.tenant.as_deref())?.clone();
                (
                    tenant,
                    CodeCache::from_setting(config.cache_dir.as_deref()),
                    true,
                )
            }
            None => (standalone_tenant(), CodeCache::User, false),
        };
        let runtime = Runtime::new(&RuntimeConfig { cache })?;
        let mut runner = Runner::new(&runtime, &tenant, &options.plugin, &options.settings)?;
        if !check_emits {
            runner.output_topics = None;
        }
        Ok(Self {
            runner,
            defaults: Defaults {
                topic: tenant
                    .topics
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "test".into()),
            },
        })
    }
}

/// A plugin run as a tenant's worker runs it, one record at a time, without Kafka: the
/// tenant's limits, settings, sandbox and `output_topics`, fuel always counted. What `burrow
/// test` and `burrow replay` call records through.
pub struct Runner {
    slot: Arc<DeploymentSlot>,
    name: Arc<str>,
    /// The tenant's `output_topics`, checked on every commit; `None` allows any topic.
    output_topics: Option<Vec<String>>,
}

impl Runner {
    /// `plugin` under `tenant`'s settings (with `settings` over its own).
    pub fn new(
        runtime: &Runtime,
        tenant: &TenantConfig,
        plugin: &Path,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self, LoadError> {
        let mut tenant = tenant.with_plugin(plugin);
        tenant.config.extend(settings.clone());
        tenant.limits.fuel = Some(tenant.limits.fuel.unwrap_or(UNMETERED));
        let deployment = tenant::deployment(runtime, &tenant)?;
        Ok(Self {
            slot: Arc::new(DeploymentSlot::new(deployment)),
            name: tenant.name.as_str().into(),
            output_topics: Some(tenant.output_topics),
        })
    }

    /// A worker's handle on the plugin: reuse it across records, as a worker does.
    pub fn instance(&self) -> PluginInstance {
        PluginInstance::new(Arc::clone(&self.slot))
    }

    /// The plugin's version (content hash).
    pub fn version(&self) -> crate::wasm::Version {
        self.slot.version()
    }

    /// What a worker's call result means, as this plugin's verdict would: a commit whose
    /// emits go outside the tenant's `output_topics` is the failure `burrow run` makes of it.
    pub fn verdict_of(&self, result: Result<Processed, CallError>) -> Verdict {
        match result {
            Ok(processed) => {
                let refused = self
                    .output_topics
                    .as_deref()
                    .and_then(|allowed| tenant::refused_emit(allowed, &processed.emitted));
                Verdict::of_outcome(processed.outcome, processed.emitted, refused)
            }
            Err(error) => Verdict::of_error(&error),
        }
    }

    /// One record through the plugin, as a worker would call it.
    pub fn call(&self, instance: &mut PluginInstance, message: &crate::wasm::Message) -> Ran {
        let ran = |verdict, time, fuel| Ran {
            offset: message.offset,
            verdict,
            time,
            fuel,
        };
        // A fresh instance's start is not the record's time.
        if let Err(error) = instance.warm_up() {
            return ran(Verdict::of_error(&error), Duration::ZERO, None);
        }
        let context = CallContext::for_message(Arc::clone(&self.name), message);
        let started = Instant::now();
        let result = instance.call(&context, message).result;
        let time = started.elapsed();
        ran(self.verdict_of(result), time, instance.fuel_used())
    }
}

/// The tenant `name` of `config`, or its only tenant.
pub(crate) fn pick_tenant<'a>(
    path: &Path,
    config: &'a HostConfig,
    name: Option<&str>,
) -> Result<&'a TenantConfig, TestError> {
    let names = || {
        config
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let why = match name {
        Some(name) => match config.tenants.iter().find(|t| t.name == name) {
            Some(tenant) => return Ok(tenant),
            None => format!("no tenant {name:?} (tenants: {})", names()),
        },
        None if config.tenants.len() == 1 => return Ok(&config.tenants[0]),
        None => format!("several tenants ({}): say which with --tenant", names()),
    };
    Err(TestError::Tenant {
        path: path.to_owned(),
        why,
    })
}

/// A tenant with the defaults of `burrow run`: limits, no settings, no capabilities.
fn standalone_tenant() -> TenantConfig {
    TenantConfig {
        name: "test".into(),
        group_id: String::new(),
        topics: vec!["test".into()],
        plugin: PathBuf::new(),
        on_failure: Default::default(),
        dead_letter_topic: None,
        output_topics: Vec::new(),
        delivery: Default::default(),
        limits: LimitsConfig::default(),
        pool: Default::default(),
        config: BTreeMap::new(),
        rollout: None,
    }
}

/// Counts per outcome, time percentiles and fuel of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// (outcome, records), commits first, call errors last (see [`Verdict::RANK`]).
    pub outcomes: Vec<(&'static str, usize)>,
    pub bad_lines: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// Mean and most fuel per record that entered the plugin.
    pub fuel: Option<(u64, u64)>,
}

impl Summary {
    pub fn of(results: &[Tested]) -> Self {
        let ran: Vec<&Ran> = results
            .iter()
            .filter_map(|t| t.record.as_ref().ok())
            .collect();
        let mut outcomes: Vec<(&'static str, usize)> = Vec::new();
        for r in &ran {
            let name = r.verdict.name();
            match outcomes.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => outcomes.push((name, 1)),
            }
        }
        outcomes.sort_by_key(|(name, _)| Verdict::RANK.iter().position(|n| n == name));
        let mut times: Vec<Duration> = ran.iter().map(|r| r.time).collect();
        times.sort_unstable();
        let fuels: Vec<u64> = ran.iter().filter_map(|r| r.fuel).collect();
        Self {
            outcomes,
            bad_lines: results.len() - ran.len(),
            p50: percentile(&times, 50),
            p99: percentile(&times, 99),
            fuel: (!fuels.is_empty()).then(|| {
                let total: u128 = fuels.iter().map(|&f| u128::from(f)).sum();
                let mean = (total / fuels.len() as u128) as u64;
                (mean, fuels.iter().copied().max().unwrap_or(0))
            }),
        }
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let records: usize = self.outcomes.iter().map(|(_, n)| n).sum();
        let counts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        write!(f, "{records} records: {}", counts.join(", "))?;
        match self.bad_lines {
            0 => {}
            1 => write!(f, "; 1 input line could not be read")?,
            n => write!(f, "; {n} input lines could not be read")?,
        }
        if let (Some(p50), Some(p99)) = (self.p50, self.p99) {
            write!(f, "\ntime  p50 {} · p99 {}", millis(p50), millis(p99))?;
        }
        if let Some((mean, max)) = self.fuel {
            write!(
                f,
                "\nfuel  {} per record (mean) · {} most",
                thousands(mean),
                thousands(max)
            )?;
        }
        Ok(())
    }
}

/// The records that used more than `budget` fuel: (line, fuel).
pub fn over_budget(results: &[Tested], budget: u64) -> Vec<(usize, u64)> {
    results
        .iter()
        .filter_map(|t| {
            let fuel = t.record.as_ref().ok()?.fuel?;
            (fuel > budget).then_some((t.line, fuel))
        })
        .collect()
}

/// How a run differs from the expected lines (`--expect`): one entry per line that differs,
/// is missing or is extra, each saying both sides. Lines are matched by their `line` field;
/// objects compare as JSON (key order and spacing do not matter).
pub fn differences(results: &[Tested], expected: &str) -> Result<Vec<String>, String> {
    let mut wanted: BTreeMap<u64, Value> = BTreeMap::new();
    for (n, text) in expected.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("expected line {}: {e}", n + 1))?;
        let line = value["line"]
            .as_u64()
            .ok_or_else(|| format!("expected line {}: no \"line\" number", n + 1))?;
        wanted.insert(line, value);
    }
    let mut found = Vec::new();
    for tested in results {
        let got = tested.to_json();
        match wanted.remove(&(tested.line as u64)) {
            Some(want) if want == got => {}
            Some(want) => found.push(format!(
                "line {}:\n  expected {want}\n  got      {got}",
                tested.line
            )),
            None => found.push(format!(
                "line {}: not expected\n  got      {got}",
                tested.line
            )),
        }
    }
    for (line, want) in wanted {
        found.push(format!(
            "line {line}: expected, but the input has no such record\n  expected {want}"
        ));
    }
    Ok(found)
}

/// A duration in milliseconds, to what a person can read.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::Outcome;

    fn ran(line: usize, verdict: Verdict, ms: u64, fuel: u64) -> Tested {
        Tested {
            line,
            record: Ok(Ran {
                offset: line as i64 - 1,
                verdict,
                time: Duration::from_millis(ms),
                fuel: Some(fuel),
            }),
        }
    }

    fn commit() -> Verdict {
        Verdict::of_outcome(Outcome::Commit, Vec::new(), None)
    }

    #[test]
    fn the_summary_counts_outcomes_and_takes_percentiles() {
        let mut results: Vec<Tested> = (1..=99).map(|i| ran(i, commit(), i as u64, 10)).collect();
        results.push(ran(
            100,
            Verdict::Fail {
                reason: "no".into(),
            },
            1000,
            40,
        ));
        results.push(Tested {
            line: 101,
            record: Err("bad".into()),
        });
        let summary = Summary::of(&results);
        assert_eq!(summary.outcomes, [("commit", 99), ("fail", 1)]);
        assert_eq!(summary.bad_lines, 1);
        assert_eq!(summary.p50, Some(Duration::from_millis(50)));
        assert_eq!(summary.p99, Some(Duration::from_millis(99)));
        assert_eq!(summary.fuel, Some((10, 40)));
        assert_eq!(
            summary.to_string(),
            "100 records: 99 commit, 1 fail; 1 input line could not be read\ntime  p50 50.0 ms · p99 99.0 ms\nfuel  10 per record (mean) · 40 most"
        );
        assert_eq!(over_budget(&results, 10), [(100, 40)]);
    }

    #[test]
    fn expected_lines_are_compared_as_json_by_line() {
        let results = vec![
            ran(1, commit(), 1, 1),
            ran(3, Verdict::Retry { delay_ms: None }, 1, 1),
        ];
        let golden = "{\"outcome\":\"commit\",\"emits\":[],\"offset\":0,\"line\":1}\n\
                      {\"line\":3,\"offset\":2,\"outcome\":\"retry\",\"delay_ms\":null}\n";
        assert_eq!(differences(&results, golden), Ok(Vec::new()));

        let other = "{\"line\":1,\"offset\":0,\"outcome\":\"fail\",\"reason\":\"x\"}\n\
                     {\"line\":4,\"offset\":3,\"outcome\":\"commit\",\"emits\":[]}\n";
        let found = differences(&results, other).expect("should succeed");
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with("line 1:\n  expected {"),
            "{}",
            found[0]
        );
        assert!(found[1].starts_with("line 3: not expected"), "{}", found[1]);
        assert!(
            found[2].starts_with("line 4: expected, but"),
            "{}",
            found[2]
        );

        assert_eq!(
            differences(&results, "{nope"),
            Err("expected line 1: key must be a string at line 1 column 2".into())
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(millis(Duration::from_micros(1234)), "1.234 ms");
    }
}
