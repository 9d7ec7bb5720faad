//! The real `burrow` binary: `validate` and `run` refuse the same bad configs naming the key
//! and never print a secret, `run` processes messages and exits 0 on SIGTERM, its logs carry no
//! colour codes when redirected, a touched plugin file reloads nothing, `demo` shows a correct
//! run.

mod host_support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use host_support::{
    ConfigDir, Host, Kafka, Process, all_committed, burrow, host_header, metric, plugin_path,
    produce_json, run_to_end, version_of, wait_all_committed, wait_until,
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

/// `burrow validate` on a good config exits 0 and says it is valid, with nothing on stderr: it
/// builds the clients but connects to nothing (the broker here does not exist).
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
    assert_eq!(stderr, "", "validate logged");
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

/// Runs `burrow SUBCOMMAND --config path` to the end: (succeeded, stderr).
async fn run_config(subcommand: &str, path: &Path) -> anyhow::Result<(bool, String)> {
    let mut command = burrow();
    command.arg(subcommand).arg("--config").arg(path);
    let (status, stdout, stderr) = run_to_end(command).await?;
    Ok((status.success(), format!("{stdout}{stderr}")))
}

/// Secret values used by the tests below; none may ever appear in output.
const SECRETS: &[(&str, &str)] = &[
    ("ssl.key.password", "KEYPASS-c0ffee"),
    ("ssl.key.pem", "KEYPEM-c0ffee"),
    ("sasl.oauthbearer.client.secret", "OAUTH-c0ffee"),
    ("sasl.password", "SASLPASS-c0ffee"),
];

/// `[kafka.options]` holding every secret of [`SECRETS`], then `more` lines.
fn secret_options(more: &str) -> String {
    let mut text = String::from("[kafka.options]\n");
    for (key, value) in SECRETS {
        text.push_str(&format!("{key:?} = {value:?}\n"));
    }
    text + more
}

fn assert_no_secret(case: &str, output: &str) {
    for (key, value) in SECRETS {
        assert!(
            !output.contains(value),
            "{case}: the value of {key} was printed:\n{output}"
        );
    }
}

/// A config librdkafka refuses (an internal property whose value rust-rdkafka used to echo, and
/// TLS material that does not load), or a TOML syntax error on a password's line: `validate` and
/// `run` both refuse it naming the key or the line, and neither prints any secret value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_run_never_print_a_secret() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let passthrough = plugin_path("passthrough")?;
    let with_options = |options: &str| {
        config("127.0.0.1:9", &passthrough, "", DEAD_LETTERS)
            .replace("[pool]", &format!("{options}\n[pool]"))
    };
    let cases = [
        (
            "internal property",
            with_options(&secret_options("\"ssl_key\" = \"KEYPEM-c0ffee\"\n")),
            "kafka.options.ssl_key",
        ),
        (
            "TLS material that does not load",
            with_options(&secret_options("\"security.protocol\" = \"ssl\"\n")),
            "kafka.options.ssl.key.pem",
        ),
        (
            "TOML syntax error",
            with_options(&secret_options("").replace("\"SASLPASS-c0ffee\"", "\"SASLPASS-c0ffee")),
            "line ",
        ),
    ];
    for (case, text, named) in cases {
        let path = dir.write(&text)?;
        for subcommand in ["validate", "run"] {
            let (ok, output) = run_config(subcommand, &path).await?;
            assert!(!ok, "{subcommand}, {case}: accepted:\n{output}");
            assert!(
                output.contains(named),
                "{subcommand}, {case}: {named} not named in:\n{output}"
            );
            assert_no_secret(&format!("{subcommand}, {case}"), &output);
        }
    }
    Ok(())
}

/// A live edit that is not TOML is refused and shown in `/stats`, by line and column, without
/// the secret on the offending line; the running configuration stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_live_edit_shows_no_secret_in_stats() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let good = config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        "",
        DEAD_LETTERS,
    );
    let host = Host::start(&dir.write(&good)?)?;
    wait_until("the host to serve /stats", || async {
        Ok(host.stats().await.is_ok())
    })
    .await?;
    // Every secret in the edit, the last one's string left open.
    let options = secret_options("").replace("\"SASLPASS-c0ffee\"", "\"SASLPASS-c0ffee");
    let broken = good.replace("[pool]", &format!("{options}[pool]"));
    dir.write(&broken)?;
    let error = host_support::wait_for("/stats to show the refused edit", || async {
        let stats = host.stats().await?;
        Ok(stats["last_config_error"].as_str().map(str::to_owned))
    })
    .await?;
    assert!(error.contains("line "), "{error}");
    assert_no_secret("/stats", &host.stats().await?.to_string());
    host.stop().await
}

/// Every check `run` makes before it consumes, `validate` makes too: unknown and invalid
/// librdkafka properties, `shutdown_timeout` at or past `max.poll.interval.ms`, a `read_dirs`
/// entry that does not exist, a memory cap or fuel below what the plugin needs to start. Each is
/// refused by both, naming its key; all of them in one file are reported at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_refuses_what_run_refuses_naming_each_key() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let passthrough = plugin_path("passthrough")?;
    let file = |options: &str, pool: &str, limits: &str| {
        config(
            "127.0.0.1:9",
            &passthrough,
            pool,
            &format!("{DEAD_LETTERS}\n[tenant.limits]\n{limits}"),
        )
        .replace("[pool]", &format!("[kafka.options]\n{options}\n[pool]"))
    };
    let cases = [
        (
            "unknown librdkafka property",
            file("\"fetch.max.bites\" = \"1\"", "", ""),
            "kafka.options.fetch.max.bites",
        ),
        (
            "invalid librdkafka value",
            file("\"compression.type\" = \"brotli\"", "", ""),
            "kafka.options.compression.type",
        ),
        (
            "shutdown_timeout past max.poll.interval.ms",
            file(
                "\"max.poll.interval.ms\" = \"10000\"",
                "shutdown_timeout = \"10s\"",
                "",
            ),
            "pool.shutdown_timeout",
        ),
        (
            "missing read_dirs",
            file("", "", "read_dirs = [\"/nonexistent/burrow-read-dir\"]"),
            "tenant[0].limits.read_dirs[0]",
        ),
        (
            "memory cap below what the plugin needs to start",
            file("", "", "memory = \"1MiB\""),
            "tenant[0].limits.memory",
        ),
        (
            "fuel below what the plugin needs to start",
            file("", "", "fuel = 1"),
            "tenant[0].limits.fuel",
        ),
    ];
    for (case, text, key) in &cases {
        let path = dir.write(text)?;
        for subcommand in ["validate", "run"] {
            let (ok, output) = run_config(subcommand, &path).await?;
            assert!(!ok, "{subcommand}, {case}: accepted:\n{output}");
            assert!(
                output.contains(key),
                "{subcommand}, {case}: {key} not named in:\n{output}"
            );
        }
    }
    let all = file(
        "\"fetch.max.bites\" = \"1\"\n\"compression.type\" = \"brotli\"\n\"max.poll.interval.ms\" = \"10000\"",
        "shutdown_timeout = \"10s\"",
        "memory = \"1MiB\"\nread_dirs = [\"/nonexistent/burrow-read-dir\"]",
    );
    let (ok, output) = run_config("validate", &dir.write(&all)?).await?;
    assert!(!ok, "accepted:\n{output}");
    // One instance fails on one limit: the file holds the memory cap, not the fuel.
    for (case, _, key) in cases.iter().filter(|(_, _, key)| !key.ends_with("fuel")) {
        assert!(
            output.contains(key),
            "{case}: {key} not named in:\n{output}"
        );
    }
    Ok(())
}

/// Logs written to a file or a pipe carry no ANSI colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_logs_have_no_colour_codes() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let path = dir.write(&config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        "",
        DEAD_LETTERS,
    ))?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let mut process = Process::spawn(command)?;
    wait_until("burrow to log that it runs", || async {
        Ok(process.stderr().contains("burrow is running"))
    })
    .await?;
    process.terminate()?;
    process.wait().await?;
    let stderr = process.stderr();
    assert!(!stderr.contains('\u{1b}'), "colour codes in:\n{stderr}");
    Ok(())
}

/// An error whose message already includes its cause prints the cause once, not once per
/// link of the chain (here: the admin address is taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_prints_its_cause_once() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let dir = ConfigDir::new()?;
    let text = config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        "",
        DEAD_LETTERS,
    )
    .replace("127.0.0.1:0", &addr.to_string());
    let (ok, output) = run_config("run", &dir.write(&text)?).await?;
    assert!(!ok, "accepted:\n{output}");
    let line = output
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("admin listener on {addr}")),
        "{output}"
    );
    assert_eq!(line.matches("(os error").count(), 1, "{line}");
    Ok(())
}

/// A plugin file rewritten with the same bytes (a `touch`, a redeploy of the same build) is
/// not reloaded; one rewritten with new bytes is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touching_a_plugin_file_reloads_nothing() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let touched = dir.copy_plugin("passthrough", "touched.wasm")?;
    let replaced = dir.copy_plugin("passthrough", "replaced.wasm")?;
    let tenant = |name: &str, plugin: &Path| {
        format!(
            "[[tenant]]\nname = \"{name}\"\ngroup_id = \"g-{name}\"\ntopics = [\"in-{name}\"]\n\
             plugin = {plugin:?}\non_failure = \"skip\"\n"
        )
    };
    let text = format!(
        "{}{}{}",
        host_header("127.0.0.1:9"),
        tenant("touched", &touched),
        tenant("replaced", &replaced)
    );
    let host = Host::start(&dir.write(&text)?)?;
    wait_until("both tenants to run", || async {
        let stats = host.stats().await?;
        Ok(!stats["tenants"]["touched"].is_null() && !stats["tenants"]["replaced"].is_null())
    })
    .await?;
    // Same bytes, a new modification time.
    std::fs::File::options()
        .write(true)
        .open(&touched)?
        .set_modified(SystemTime::now() + Duration::from_secs(60))?;
    // New bytes in the other tenant's file: once that swap shows, the watcher has looked at
    // both files since the touch.
    let chaos = plugin_path("chaos")?;
    host_support::write_atomically(&replaced, &std::fs::read(&chaos)?)?;
    let chaos_version = version_of(&chaos)?;
    wait_until("the replaced plugin to be swapped", || async {
        let plugin = host.tenant("replaced").await?["plugin"].to_string();
        Ok(plugin.contains(&chaos_version))
    })
    .await?;
    let metrics = host.metrics().await?;
    let reloads = |tenant: &str| {
        metric(
            &metrics,
            "burrow_plugin_reloads_total",
            &[("tenant", tenant)],
        )
    };
    assert_eq!(reloads("replaced"), Some(1.0), "{metrics}");
    assert_eq!(reloads("touched"), Some(0.0), "{metrics}");
    host.stop().await
}

/// A live edit to a memory cap the plugin cannot start under is refused like a bad plugin
/// file: the running deployment stays and `/stats` says why, instead of every later message
/// failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_edit_to_a_cap_too_small_to_start_keeps_the_running_plugin() -> anyhow::Result<()> {
    let dir = ConfigDir::new()?;
    let good = config(
        "127.0.0.1:9",
        &plugin_path("passthrough")?,
        "",
        DEAD_LETTERS,
    );
    let host = Host::start(&dir.write(&good)?)?;
    wait_until("the tenant to run", || async {
        Ok(!host.tenant("cli").await?.is_null())
    })
    .await?;
    dir.write(&format!("{good}\n[tenant.limits]\nmemory = \"1MiB\"\n"))?;
    let error = host_support::wait_for("/stats to show the refused swap", || async {
        let tenant = host.tenant("cli").await?;
        Ok(tenant["status"]["last_reload_error"]
            .as_str()
            .map(str::to_owned))
    })
    .await?;
    assert!(error.contains("cannot start under its limits"), "{error}");
    let metrics = host.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            "burrow_plugin_reloads_total",
            &[("tenant", "cli")]
        ),
        Some(0.0),
        "{metrics}"
    );
    host.stop().await
}
