//! The `burrow` command line: arguments (clap derive) and the subcommands' work.
//!
//! Each subcommand is a variant of [`Command`] with its own `Args` struct and a function here;
//! `main` only parses, sets up logging and dispatches.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use burrow::config::{ConfigError, HostConfig};
use burrow::preflight;
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
    /// The json-validate plugin (default: next to the binary, or target/plugins).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin's `.wasm` file (a component built for wasm32-wasip2).
    pub plugin: PathBuf,
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
