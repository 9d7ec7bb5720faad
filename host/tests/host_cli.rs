//! The real `burrow` binary: `validate` and `run` refuse a bad config naming the key, `run`
//! processes messages and exits 0 on SIGTERM, `demo` shows a correct run.

mod host_support;

use std::path::Path;

use host_support::{
    ConfigDir, Kafka, Process, all_committed, burrow, host_header, plugin_path, produce_json,
    run_to_end, wait_all_committed,
};

/// A valid one-tenant config; `extra_pool` lines go in `[pool]`, `tenant_extra` in the tenant.
fn config(brokers: &str, plugin: &Path, extra_pool: &str, tenant_extra: &str) -> String {
    format!(
        r#"{header}
[pool]
commit_interval = "100ms"
{extra_pool}

[[tenant]]
name = "cli"
group_id = "cli-group"
topics = ["cli-in"]
plugin = {plugin:?}
{tenant_extra}
"#,
        header = host_header(brokers),
    )
}

/// The usual tenant failure policy: dead letters.
const DEAD_LETTERS: &str = r#"dead_letter_topic = "cli-dlq""#;

/// `burrow validate` on a good config exits 0 and says it is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_a_good_config() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let path = dir.write(&config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        "",
        DEAD_LETTERS,
    ))?;
    let mut command = burrow();
    command.arg("validate").arg("--config").arg(&path);
    let (status, stdout, stderr) = run_to_end(command).await?;
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("is valid (1 tenant(s))"), "{stdout}");
    Ok(())
}

/// `burrow validate` refuses each kind of bad config — unknown key, bad duration, missing
/// dead-letter topic, a plugin that is not a component — with a non-zero exit naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_refuses_a_bad_config_naming_the_key() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let passthrough = plugin_path("passthrough")?;
    let not_a_plugin = dir.dir.path().join("notes.wasm");
    std::fs::write(&not_a_plugin, "hello")?;
    let cases = [
        (
            "unknown key",
            config("127.0.0.1:9", &passthrough, "wrokers = 4", DEAD_LETTERS),
            "wrokers",
        ),
        (
            "bad duration",
            config(
                "127.0.0.1:9",
                &passthrough,
                r#"retry_backoff_base = "5 parsecs""#,
                DEAD_LETTERS,
            ),
            "pool.retry_backoff_base",
        ),
        (
            "missing dead_letter_topic",
            config("127.0.0.1:9", &passthrough, "", ""),
            "tenant[0].dead_letter_topic",
        ),
        (
            "plugin not a component",
            config("127.0.0.1:9", &not_a_plugin, "", DEAD_LETTERS),
            "tenant[0].plugin",
        ),
    ];
    for (case, text, key) in cases {
        let path = dir.write(&text)?;
        let mut command = burrow();
        command.arg("validate").arg("--config").arg(&path);
        let (status, stdout, stderr) = run_to_end(command).await?;
        assert!(!status.success(), "{case}: accepted:\n{stdout}{stderr}");
        assert!(
            stderr.contains(key),
            "{case}: {key} not named in:\n{stderr}"
        );
    }
    Ok(())
}

/// `burrow run` on a bad config exits non-zero at once, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_bad_config_naming_the_key() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let path = dir.write(&config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        r#"shutdown_timeout = "soon""#,
        DEAD_LETTERS,
    ))?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let (status, stdout, stderr) = run_to_end(command).await?;
    assert!(!status.success(), "accepted:\n{stdout}{stderr}");
    assert!(stderr.contains("pool.shutdown_timeout"), "{stderr}");
    Ok(())
}

/// `burrow run` against a broker processes every message, and on SIGTERM shuts down gracefully
/// and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_processes_messages_and_exits_zero_on_sigterm() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("cli-in", 2), ("cli-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let path = dir.write(&config(
        &kafka.brokers,
        &plugin_path("chaos")?,
        "",
        DEAD_LETTERS,
    ))?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let mut process = Process::spawn(command)?;

    produce_json(&kafka.brokers, "cli-in", 50).await?;
    let committed = wait_all_committed(&kafka.brokers, "cli-group", "cli-in").await;
    if let Err(e) = committed {
        anyhow::bail!("{e:#}; burrow's stderr:\n{}", process.stderr());
    }
    process.terminate()?;
    let status = process.wait().await?;
    assert!(
        status.success(),
        "exit {status} after SIGTERM; stderr:\n{}",
        process.stderr()
    );
    assert!(all_committed(&kafka.brokers, "cli-group", "cli-in").await?);
    Ok(())
}

/// `burrow demo --messages 300` exits 0, and its table shows 300 produced and 300 committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_every_message_produced_and_committed() -> anyhow::Result<()> {
    let mut command = burrow();
    command
        .args(["demo", "--messages", "300", "--plugin"])
        .arg(plugin_path("json-validate")?);
    let (status, stdout, stderr) = run_to_end(command).await?;
    assert!(status.success(), "exit {status}:\n{stdout}{stderr}");
    let row = |name: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(row("produced"), ["300", "300"], "{stdout}");
    assert_eq!(row("committed"), ["300", "300"], "{stdout}");
    Ok(())
}
