//! The `burrow` command line: arguments (clap derive) and the subcommands' work.
//!
//! Each subcommand is a variant of [`Command`] with its own `Args` struct and a function here;
//! `main` only parses, sets up logging and dispatches.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use burrow::config::{ConfigError, HostConfig};
use burrow::plugin_test::{self, Summary, TestError, TestOptions};
use burrow::preflight;
use burrow::project::{self, Language, ProjectError};
use burrow::replay;
use burrow::wasm::{LoadError, Plugin, Runtime, RuntimeConfig, RuntimeError};

/// Run sandboxed WebAssembly plugins over Kafka streams.
#[derive(Debug, Parser)]
#[command(name = "burrow", version, about)]
pub struct Cli {
    /// Log line format (logs go to stderr). Default: `log.format` of the config file for
    /// `run`, text otherwise.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: every tenant in the config file, until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Check a config file and load its plugins, without consuming anything.
    Validate(ValidateArgs),
    /// The whole product on an embedded Kafka: sample traffic through json-validate.
    Demo(DemoArgs),
    /// Load a plugin, check it against the plugin contract, and describe it.
    Check(CheckArgs),
    /// Run records from a file through a plugin on the real runtime, without Kafka.
    Test(TestArgs),
    /// Write a new plugin project: the one function, a unit test, sample records, a README.
    New(NewArgs),
    /// Build the plugin project in a directory into NAME.wasm, and check it.
    Build(BuildArgs),
    /// Run a range of a tenant's input through its plugin and a candidate, and compare; no
    /// output, no dead letters, no commits.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The host's config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The tenant (needed when the config has several).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The candidate version's `.wasm`.
    #[arg(long)]
    pub plugin: PathBuf,
    /// From this time (`2026-11-01T00:00Z`) or this long ago (`1h`).
    #[arg(long, value_parser = replay::parse_time)]
    pub from: i64,
    /// Up to (not including) this time, or this long ago. Default: each partition's end when
    /// the replay starts.
    #[arg(long, value_parser = replay::parse_time, conflicts_with = "count")]
    pub to: Option<i64>,
    /// At most this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit non-zero if the versions differ on any record.
    #[arg(long)]
    pub fail_on_diff: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's directory; its last component names the plugin (`my-filter`).
    pub name: PathBuf,
    /// The plugin's language.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML config file. Every key can be overridden by `BURROW__SECTION__KEY`.
    #[arg(long, short)]
    pub config: PathBuf,
    /// How often to look for changes to the config and plugin files.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub watch_interval: Duration,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The TOML config file.
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many sample messages to produce.
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// The plugin (default: json-validate, next to the binary or in target/plugins). Another
    /// plugin gets the same traffic and the `output-topic` setting; the demo then checks only
    /// that every message was committed.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin's `.wasm` file (a component built for wasm32-wasip2).
    pub plugin: PathBuf,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin's `.wasm` file.
    pub plugin: PathBuf,
    /// The records: one JSON object per line (`key`, `value`, `headers`, and optionally
    /// `topic`, `partition`, `offset`, `timestamp`, `attempt`). A string is its UTF-8 bytes,
    /// `{"base64": "..."}` raw bytes, any other JSON its text.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Compare with these lines (a saved `--json` run): exit non-zero on any difference.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// Print one JSON object per record (outcome, reason, emits; no timings) instead of a
    /// table; the summary goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Fail the run if a record uses more fuel than this (deterministic, unlike time).
    #[arg(long)]
    pub max_fuel: Option<u64>,
    /// A plugin setting, `key=value`, as a tenant's `[tenant.config]` gives it (repeatable;
    /// over `--from`'s).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = setting)]
    pub settings: Vec<(String, String)>,
    /// Take limits, settings, sandbox grants and output topics from this config's tenant.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The tenant of `--from` (needed when it has several).
    #[arg(long, requires = "from")]
    pub tenant: Option<String>,
}

/// `key=value`.
fn setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found {text:?}")),
    }
}

/// Writes the project and says what to do next.
pub fn new(args: &NewArgs) -> Result<String, ProjectError> {
    let language = match args.lang {
        Lang::Rust => Language::Rust,
        Lang::Python => Language::Python,
    };
    let created = project::create(&args.name, language)?;
    let dir = created.dir.display();
    let unit = match language {
        Language::Rust => "cargo test",
        Language::Python => "python3 -m unittest",
    };
    let mut lines = vec![format!("created {dir}:")];
    lines.extend(created.files.iter().map(|f| format!("  {}", f.display())));
    lines.push(format!(
        "next: cd {dir} && {unit} && burrow build && burrow test *.wasm --input sample.jsonl"
    ));
    Ok(lines.join("\n"))
}

/// Why `burrow build` failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("built {}, but it is not a usable plugin: {source}", path.display())]
    Check { path: PathBuf, source: CheckError },
}

/// Builds the project, then loads the result as `burrow check` does: a build that does not
/// meet the contract is a failed build.
pub fn build(args: &BuildArgs) -> Result<String, BuildError> {
    let path = project::build(&args.dir)?;
    let report = check(&CheckArgs {
        plugin: path.clone(),
    })
    .map_err(|source| BuildError::Check {
        path: path.clone(),
        source,
    })?;
    Ok(format!("wrote {}\n{report}", path.display()))
}

/// Why `burrow replay` exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error(transparent)]
    Run(#[from] replay::ReplayError),
    #[error("{0} records differ between the versions (--fail-on-diff)")]
    Differ(u64),
}

/// Runs the replay and prints its report.
pub fn replay(args: &ReplayArgs) -> Result<(), ReplayFailure> {
    let report = replay::run(&replay::ReplayOptions {
        config: args.config.clone(),
        tenant: args.tenant.clone(),
        candidate: args.plugin.clone(),
        from_ms: args.from,
        to_ms: args.to,
        count: args.count,
    })?;
    println!("{report}");
    match report.differing() {
        n if n > 0 && args.fail_on_diff => Err(ReplayFailure::Differ(n)),
        _ => Ok(()),
    }
}

/// Why `burrow check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// What `burrow check` prints for a good plugin.
#[derive(Debug)]
pub struct CheckReport {
    path: PathBuf,
    plugin: Plugin,
}

/// Loads and validates the plugin exactly as the host would (without the disk cache).
pub fn check(args: &CheckArgs) -> Result<CheckReport, CheckError> {
    let runtime = Runtime::new(&RuntimeConfig::default())?;
    let plugin = runtime.load_file(&args.plugin)?;
    Ok(CheckReport {
        path: args.plugin.clone(),
        plugin,
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plugin;
        writeln!(f, "plugin   {}", p.name())?;
        writeln!(f, "file     {}", self.path.display())?;
        writeln!(f, "size     {} bytes", p.size())?;
        writeln!(f, "sha256   {}", p.version().hex())?;
        writeln!(f, "version  {}", p.version())?;
        writeln!(
            f,
            "contract burrow:plugin@{}",
            burrow::wasm::CONTRACT_VERSION
        )?;
        list(f, "imports", p.imports())?;
        list(f, "exports", p.exports())?;
        write!(f, "ok       implements burrow:plugin/processor")
    }
}

/// `label  first` then the rest aligned under it.
fn list(f: &mut fmt::Formatter<'_>, label: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return writeln!(f, "{label:<8} (none)");
    }
    for (i, item) in items.iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        writeln!(f, "{label:<8} {item}")?;
    }
    Ok(())
}

/// Why `burrow validate` refused a config: every problem, each naming its key.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Parses and validates the config, then runs `run`'s own start-up checks (clients built,
/// plugins instantiated under their limits): a file `validate` accepts, `run` starts with.
/// Every problem is reported at once, each naming its key.
pub fn validate(args: &ValidateArgs) -> Result<String, ValidateError> {
    let config = HostConfig::read(&args.config)?;
    let mut issues = match config.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => return Err(e.into()),
    };
    let runtime = Runtime::new(&RuntimeConfig::default())?;
    let deployments = match preflight::check(&config, &runtime) {
        Ok(deployments) => deployments,
        Err(found) => {
            // A value the file check already refused often fails these checks too: once is
            // enough.
            for issue in found {
                if !issues.iter().any(|i| i.key == issue.key) {
                    issues.push(issue);
                }
            }
            Vec::new()
        }
    };
    if !issues.is_empty() {
        return Err(ConfigError::Invalid {
            path: args.config.clone(),
            issues,
        }
        .into());
    }
    let mut lines: Vec<String> = config
        .tenants
        .iter()
        .zip(&deployments)
        .map(|(t, d)| {
            format!(
                "tenant {:<16} group {:<20} topics {:?} plugin {}",
                t.name,
                t.group_id,
                t.topics,
                d.plugin().id()
            )
        })
        .collect();
    lines.push(format!(
        "ok: {} is valid ({} tenant(s))",
        args.config.display(),
        config.tenants.len()
    ));
    Ok(lines.join("\n"))
}

/// Why `burrow test` exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum TestFailure {
    #[error(transparent)]
    Run(#[from] TestError),
    #[error("cannot read {}: {source}", path.display())]
    Expect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// What went wrong, each part on its own (differences, fuel, unreadable lines).
    #[error("{}", .0.join("; "))]
    Failed(Vec<String>),
}

/// Runs the records through the plugin, printing a row (or a JSON line) per record as it
/// comes, then the summary, then any difference from `--expect` and any record over budget.
pub fn test(args: &TestArgs) -> Result<(), TestFailure> {
    let options = TestOptions {
        plugin: args.plugin.clone(),
        input: args.input.clone(),
        settings: args.settings.iter().cloned().collect(),
        from: args.from.clone(),
        tenant: args.tenant.clone(),
    };
    // Read before the run: a missing golden file is found before minutes of records.
    let expected = match &args.expect {
        Some(path) => {
            Some(
                std::fs::read_to_string(path).map_err(|source| TestFailure::Expect {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    if !args.json {
        println!("{}", row::HEADER);
    }
    let results = plugin_test::run(&options, |tested| {
        if args.json {
            println!("{}", tested.to_json());
        } else {
            print!("{}", row::Row(tested));
        }
    })?;
    let summary = Summary::of(&results);
    if args.json {
        eprintln!("{summary}");
    } else {
        println!("\n{summary}");
    }
    let mut failed = Vec::new();
    if summary.bad_lines > 0 {
        failed.push(format!(
            "{} of {} could not be read",
            plural(summary.bad_lines, "input line"),
            args.input.display()
        ));
    }
    if let Some(budget) = args.max_fuel {
        let over = plugin_test::over_budget(&results, budget);
        for (line, fuel) in &over {
            eprintln!(
                "line {line}: used {} fuel, over the budget of {}",
                plugin_test::thousands(*fuel),
                plugin_test::thousands(budget)
            );
        }
        if !over.is_empty() {
            failed.push(format!(
                "{} used more than {} fuel",
                plural(over.len(), "record"),
                plugin_test::thousands(budget)
            ));
        }
    }
    if let (Some(expected), Some(path)) = (expected, &args.expect) {
        let found = plugin_test::differences(&results, &expected)
            .map_err(|e| TestFailure::Failed(vec![format!("{}: {e}", path.display())]))?;
        for difference in &found {
            eprintln!("{difference}");
        }
        if !found.is_empty() {
            let verb = if found.len() == 1 {
                "differs"
            } else {
                "differ"
            };
            failed.push(format!(
                "{} {verb} from {}",
                plural(found.len(), "line"),
                path.display()
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(TestFailure::Failed(failed))
    }
}

/// `1 record`, `2 records`; `1 input line`, `2 input lines`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The table `burrow test` prints without `--json`.
mod row {
    use std::fmt;

    use burrow::plugin_test::records::bytes_value;
    use burrow::plugin_test::verdict::Verdict;
    use burrow::plugin_test::{Tested, millis, thousands};

    pub const HEADER: &str = "line   offset  outcome      time        fuel  detail";

    /// How much of a reason or an emitted value a row shows.
    const DETAIL: usize = 100;

    /// One record's row, and a line per emitted record under it.
    pub struct Row<'a>(pub &'a Tested);

    impl fmt::Display for Row<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let line = self.0.line;
            let ran = match &self.0.record {
                Ok(ran) => ran,
                Err(error) => {
                    return writeln!(
                        f,
                        "{line:<6} {:>6}  {:<10} {:>10} {:>11}  {}",
                        "-",
                        "bad input",
                        "-",
                        "-",
                        cut(error)
                    );
                }
            };
            let fuel = ran.fuel.map_or("-".into(), thousands);
            let detail = match &ran.verdict {
                Verdict::Commit { emits } if emits.is_empty() => String::new(),
                Verdict::Commit { emits } => format!("{} emitted", emits.len()),
                Verdict::Retry { delay_ms: Some(ms) } => format!("after {ms} ms"),
                Verdict::Retry { delay_ms: None } => "after the tenant's backoff".into(),
                Verdict::Fail { reason } | Verdict::Error { reason, .. } => cut(reason),
            };
            writeln!(
                f,
                "{line:<6} {:>6}  {:<10} {:>10} {fuel:>11}  {detail}",
                ran.offset,
                ran.verdict.name(),
                millis(ran.time)
            )?;
            if let Verdict::Commit { emits } = &ran.verdict {
                for emit in emits {
                    let key = emit.key.as_deref().map_or("-".into(), shown);
                    let value = shown(&emit.value);
                    writeln!(
                        f,
                        "{:>50}→ {}  key {}  {}",
                        "",
                        emit.topic,
                        cut(&key),
                        cut(&value)
                    )?;
                }
            }
            Ok(())
        }
    }

    /// Bytes as text if they are UTF-8, else as `{"base64": …}`.
    fn shown(bytes: &[u8]) -> String {
        match bytes_value(bytes) {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        }
    }

    /// The first [`DETAIL`] characters, with `…` if there were more.
    fn cut(text: &str) -> String {
        match text.char_indices().nth(DETAIL) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.to_owned(),
        }
    }
}
