//! The `burrow` binary: parse arguments, set up logging, hand over to the library.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use burrow::config::{self, HostConfig};
use burrow::demo::{self, DemoOptions};
use burrow::supervisor::{self, RunOptions};
use cli::{Cli, Command, LogFormat};

/// Every record is copied out of librdkafka on the poll thread and freed on another thread once
/// it is done; glibc's malloc spent about a third of the poll thread and a tenth of the pool's
/// task on that (`perf`, B2/B3 of `make bench`). mimalloc frees across threads cheaply.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    // The demo dead-letters hundreds of messages on purpose: its table says what happened, so
    // only errors are logged unless RUST_LOG asks for more.
    let default_level = match cli.command {
        // rdkafka logs an error when a consumer the pool already closed is dropped; harmless.
        Command::Demo(_) => "error,rdkafka::consumer::base_consumer=off",
        _ => "info",
    };
    init_tracing(log_format(&cli), default_level);
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", report(&err));
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them, and then every
/// plugin thread's heap faults in and zeroes a whole 2 MiB page each time it grows into fresh
/// memory, and again after it purges freed memory: 42% of the plugin threads' CPU in B3
/// (`perf`), whose plugin stage went from 0.51 to 0.27 µs per message with them off. Best
/// effort: where the kernel refuses, the process runs as before.
fn no_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// The error and its causes on one line, each cause once. Burrow's errors include their cause
/// in their own message (so a log line's `%e` tells the whole story), and some also expose it
/// as `source`: printing the chain as is (`{:#}`) would repeat it. A cause whose text its
/// parent already shows is skipped; one that adds something is appended.
fn report(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Check(args) => {
            let report = cli::check(args)?;
            println!("{report}");
        }
        Command::Validate(args) => println!("{}", cli::validate(args)?),
        Command::Test(args) => cli::test(args)?,
        Command::New(args) => println!("{}", cli::new(args)?),
        Command::Build(args) => println!("{}", cli::build(args)?),
        Command::Replay(args) => cli::replay(args)?,
        Command::Run(args) => {
            let options = RunOptions {
                watch_interval: args.watch_interval,
                ..RunOptions::default()
            };
            runtime()?.block_on(supervisor::run(&args.config, options, shutdown_signal()))?;
        }
        Command::Demo(args) => {
            let options = DemoOptions {
                messages: args.messages,
                plugin: args.plugin.clone(),
                ..DemoOptions::default()
            };
            eprintln!(
                "burrow demo: {} sample orders through the json-validate plugin on an embedded Kafka",
                options.messages
            );
            let summary = runtime()?.block_on(demo::run(&options))?;
            println!("\n{summary}");
            anyhow::ensure!(
                summary.is_exact(),
                "the topics do not hold what a correct run leaves (see the table)"
            );
        }
    }
    Ok(())
}

/// The flag wins; for `run`, the config file's `log.format` comes next. A config that does not
/// load is reported by `run` itself, in text.
fn log_format(cli: &Cli) -> LogFormat {
    if let Some(format) = cli.log_format {
        return format;
    }
    match &cli.command {
        Command::Run(args) => match HostConfig::load(&args.config).map(|c| c.log.format) {
            Ok(config::LogFormat::Json) => LogFormat::Json,
            _ => LogFormat::Text,
        },
        _ => LogFormat::Text,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM: a graceful shutdown for either.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_level`), as text or JSON lines.
fn init_tracing(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour codes only for a person at a terminal: a redirected log (file, pipe, journald) gets
/// plain text. `NO_COLOR` set to anything non-empty turns colour off everywhere
/// (<https://no-color.org>).
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Colour only for a terminal, and never when `NO_COLOR` is set to something.
    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("consumer: {0}")]
    struct Wrapper(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("tenant t")]
    struct Bare(#[source] std::io::Error);

    /// A cause already in its parent's message is printed once; one that is not is appended.
    #[test]
    fn report_prints_each_cause_once() {
        let cause = || std::io::Error::other("no such broker");
        let repeated = anyhow::Error::new(Wrapper(cause()));
        assert_eq!(report(&repeated), "consumer: no such broker");
        let chained = anyhow::Error::new(Bare(cause()));
        assert_eq!(report(&chained), "tenant t: no such broker");
    }
}
