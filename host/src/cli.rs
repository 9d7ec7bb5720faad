//! The `burrow` command line: arguments (clap derive) and the subcommands' work.
//!
//! Each subcommand is a variant of [`Command`] with its own `Args` struct and a function here;
//! `main` only parses, sets up logging and dispatches.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use burrow::wasm::{LoadError, Plugin, Runtime, RuntimeConfig, RuntimeError};

/// Run sandboxed WebAssembly plugins over Kafka streams.
#[derive(Debug, Parser)]
#[command(name = "burrow", version, about)]
pub struct Cli {
    /// Log line format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

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
    /// Load a plugin, check it against the plugin contract, and describe it.
    Check(CheckArgs),
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
