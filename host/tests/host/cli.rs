//! The real `burrow` binary: `validate` and `run` refuse the same bad configs naming the key
//! and never print a secret, `run` processes messages and exits 0 on SIGTERM, its logs carry no
//! colour codes when redirected, a touched plugin file reloads nothing, `demo` shows a correct
//! run.

use crate::support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant, Value, write_atomically, write_file};
use burrow_e2e::kafka::{committed, end_offsets, numbered, produce, wait_all_committed};
use burrow_e2e::plugins::{copy_plugin, plugin_path};
use burrow_e2e::process::{Process, metric, run_to_end};
use burrow_e2e::{wait_for, wait_until};
use support::{Host, burrow, version_of};

/// Bootstrap servers nobody listens on: `validate` connects to nothing, and a host on them runs
/// without a broker.
const NOWHERE: &str = "127.0.0.1:9";

/// Tenant `cli` on `cli-in` running the plugin at `plugin`, with no failure policy set.
fn bare_tenant(plugin: &Path) -> Tenant {
    Tenant::new("cli", "cli-group", &["cli-in"], plugin)
}

/// Tenant `cli` with the usual failure policy: dead letters to `cli-dlq`.
fn tenant(plugin: &Path) -> Tenant {
    bare_tenant(plugin).dead_letters("cli-dlq")
}

/// A one-tenant config on [`NOWHERE`].
fn config(tenant: Tenant) -> HostConfig {
    HostConfig::for_bootstrap(NOWHERE).tenant(tenant)
}

/// `burrow validate` on a good config exits 0 and says it is valid, with nothing on stderr: it
/// builds the clients but connects to nothing (the broker here does not exist).
#[test]
fn validate_accepts_a_good_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = config(tenant(&plugin_path("passthrough")?)).write(dir.path())?;
    let mut command = burrow();
    command.arg("validate").arg("--config").arg(&path);
    let (status, stdout, stderr) = run_to_end(command)?;
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("is valid (1 tenant(s))"), "{stdout}");
    assert_eq!(stderr, "", "validate logged");
    Ok(())
}

/// `burrow validate` refuses each kind of bad config — unknown key, bad duration, missing
/// dead-letter topic, a plugin that is not a component — with a non-zero exit naming the key.
#[test]
fn validate_refuses_a_bad_config_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let passthrough = plugin_path("passthrough")?;
    let not_a_plugin = dir.path().join("notes.wasm");
    std::fs::write(&not_a_plugin, "hello")?;
    let cases = [
        (
            "unknown key",
            config(tenant(&passthrough)).pool("wrokers", 4u32),
            "wrokers",
        ),
        (
            "bad duration",
            config(tenant(&passthrough)).pool("retry_backoff_base", "5 parsecs"),
            "pool.retry_backoff_base",
        ),
        (
            "missing dead_letter_topic",
            config(bare_tenant(&passthrough)),
            "tenant[0].dead_letter_topic",
        ),
        (
            "plugin not a component",
            config(tenant(&not_a_plugin)),
            "tenant[0].plugin",
        ),
    ];
    for (case, config, key) in cases {
        let path = config.write(dir.path())?;
        let mut command = burrow();
        command.arg("validate").arg("--config").arg(&path);
        let (status, stdout, stderr) = run_to_end(command)?;
        assert!(!status.success(), "{case}: accepted:\n{stdout}{stderr}");
        assert!(
            stderr.contains(key),
            "{case}: {key} not named in:\n{stderr}"
        );
    }
    Ok(())
}

/// `burrow run` on a bad config exits non-zero at once, naming the key.
#[test]
fn run_refuses_a_bad_config_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = config(tenant(&plugin_path("passthrough")?))
        .pool("shutdown_timeout", "soon")
        .write(dir.path())?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let (status, stdout, stderr) = run_to_end(command)?;
    assert!(!status.success(), "accepted:\n{stdout}{stderr}");
    assert!(stderr.contains("pool.shutdown_timeout"), "{stderr}");
    Ok(())
}

/// `burrow run` against a broker processes every message, and on SIGTERM shuts down gracefully
/// and exits 0.
#[test]
fn run_processes_messages_and_exits_zero_on_sigterm() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("cli-in", 2), ("cli-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let path = HostConfig::new(&kafka)
        .tenant(tenant(&plugin_path("chaos")?))
        .write(dir.path())?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let mut process = Process::spawn(command)?;

    produce(&kafka, "cli-in", &numbered(0..50, None))?;
    let all_committed = wait_all_committed(&kafka, "cli-group", "cli-in");
    if let Err(e) = all_committed {
        anyhow::bail!("{e:#}; burrow's stderr:\n{}", process.stderr());
    }
    process.terminate()?;
    let status = process.wait_exit()?;
    assert!(
        status.success(),
        "exit {status} after SIGTERM; stderr:\n{}",
        process.stderr()
    );
    assert_eq!(
        committed(&kafka, "cli-group", "cli-in")?,
        end_offsets(&kafka, "cli-in")?
    );
    Ok(())
}

/// `burrow demo --messages 300` exits 0, and its table shows 300 produced and 300 committed.
#[test]
fn demo_shows_every_message_produced_and_committed() -> anyhow::Result<()> {
    let mut command = burrow();
    command
        .args(["demo", "--messages", "300", "--plugin"])
        .arg(plugin_path("json-validate")?);
    let (status, stdout, stderr) = run_to_end(command)?;
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

/// Another plugin runs the demo's traffic too: every message committed, no expectations on
/// what it emitted.
#[test]
fn demo_runs_another_plugin() -> anyhow::Result<()> {
    let mut command = burrow();
    command
        .args(["demo", "--messages", "300", "--plugin"])
        .arg(plugin_path("passthrough")?);
    let (status, stdout, stderr) = run_to_end(command)?;
    assert!(status.success(), "exit {status}:\n{stdout}{stderr}");
    assert!(
        stdout.contains("committed                     300        300"),
        "{stdout}"
    );
    assert!(
        stdout.contains("emitted                         0          -"),
        "{stdout}"
    );
    Ok(())
}

/// Runs `burrow SUBCOMMAND --config path` to the end: (succeeded, stderr).
fn run_config(subcommand: &str, path: &Path) -> anyhow::Result<(bool, String)> {
    let mut command = burrow();
    command.arg(subcommand).arg("--config").arg(path);
    let (status, stdout, stderr) = run_to_end(command)?;
    Ok((status.success(), format!("{stdout}{stderr}")))
}

/// Secret values used by the tests below; none may ever appear in output.
const SECRETS: &[(&str, &str)] = &[
    ("ssl.key.password", "KEYPASS-c0ffee"),
    ("ssl.key.pem", "KEYPEM-c0ffee"),
    ("sasl.oauthbearer.client.secret", "OAUTH-c0ffee"),
    ("sasl.password", "SASLPASS-c0ffee"),
];

/// `config` with every secret of [`SECRETS`] in `[kafka.options]`.
fn with_secrets(mut config: HostConfig) -> HostConfig {
    for (key, value) in SECRETS {
        config = config.kafka_option(key, value);
    }
    config
}

/// `text` with the string holding `sasl.password`'s value left open: a TOML syntax error on
/// the line of a secret.
fn break_the_password_line(text: &str) -> String {
    text.replace("\"SASLPASS-c0ffee\"", "\"SASLPASS-c0ffee")
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
#[test]
fn validate_and_run_never_print_a_secret() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let passthrough = plugin_path("passthrough")?;
    let good = || with_secrets(config(tenant(&passthrough)));
    let cases = [
        (
            "internal property",
            good().kafka_option("ssl_key", "KEYPEM-c0ffee").render(),
            "kafka.options.ssl_key",
        ),
        (
            "TLS material that does not load",
            good().kafka_option("security.protocol", "ssl").render(),
            "kafka.options.ssl.key.pem",
        ),
        (
            "TOML syntax error",
            break_the_password_line(&good().render()),
            "line ",
        ),
    ];
    for (case, text, named) in cases {
        let path = write_file(dir.path(), &text)?;
        for subcommand in ["validate", "run"] {
            let (ok, output) = run_config(subcommand, &path)?;
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
#[test]
fn a_broken_live_edit_shows_no_secret_in_stats() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let good = config(tenant(&plugin_path("passthrough")?));
    let host = Host::start(&good.write(dir.path())?)?;
    wait_until("the host to serve /stats", || Ok(host.stats().is_ok()))?;
    // Every secret in the edit, the last one's string left open.
    let broken = break_the_password_line(&with_secrets(good).render());
    write_file(dir.path(), &broken)?;
    let error = wait_for("/stats to show the refused edit", || {
        let stats = host.stats()?;
        Ok(stats["last_config_error"].as_str().map(str::to_owned))
    })?;
    assert!(error.contains("line "), "{error}");
    assert_no_secret("/stats", &host.stats()?.to_string());
    host.stop()
}

/// Every check `run` makes before it consumes, `validate` makes too: unknown and invalid
/// librdkafka properties, `shutdown_timeout` at or past `max.poll.interval.ms`, a `read_dirs`
/// entry that does not exist, a memory cap or fuel below what the plugin needs to start. Each is
/// refused by both, naming its key; all of them in one file are reported at once.
#[test]
fn validate_refuses_what_run_refuses_naming_each_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let passthrough = plugin_path("passthrough")?;
    let read_dirs = || Value::List(vec!["/nonexistent/burrow-read-dir".into()]);
    let cases = [
        (
            "unknown librdkafka property",
            config(tenant(&passthrough)).kafka_option("fetch.max.bites", "1"),
            "kafka.options.fetch.max.bites",
        ),
        (
            "invalid librdkafka value",
            config(tenant(&passthrough)).kafka_option("compression.type", "brotli"),
            "kafka.options.compression.type",
        ),
        (
            "shutdown_timeout past max.poll.interval.ms",
            config(tenant(&passthrough))
                .kafka_option("max.poll.interval.ms", "10000")
                .pool("shutdown_timeout", "10s"),
            "pool.shutdown_timeout",
        ),
        (
            "missing read_dirs",
            config(tenant(&passthrough).limit("read_dirs", read_dirs())),
            "tenant[0].limits.read_dirs[0]",
        ),
        (
            "memory cap below what the plugin needs to start",
            config(tenant(&passthrough).limit("memory", "1MiB")),
            "tenant[0].limits.memory",
        ),
        (
            "fuel below what the plugin needs to start",
            config(tenant(&passthrough).limit("fuel", 1u32)),
            "tenant[0].limits.fuel",
        ),
    ];
    for (case, config, key) in &cases {
        let path = config.write(dir.path())?;
        for subcommand in ["validate", "run"] {
            let (ok, output) = run_config(subcommand, &path)?;
            assert!(!ok, "{subcommand}, {case}: accepted:\n{output}");
            assert!(
                output.contains(key),
                "{subcommand}, {case}: {key} not named in:\n{output}"
            );
        }
    }
    let all = config(
        tenant(&passthrough)
            .limit("memory", "1MiB")
            .limit("read_dirs", read_dirs()),
    )
    .kafka_option("fetch.max.bites", "1")
    .kafka_option("compression.type", "brotli")
    .kafka_option("max.poll.interval.ms", "10000")
    .pool("shutdown_timeout", "10s");
    let (ok, output) = run_config("validate", &all.write(dir.path())?)?;
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
#[test]
fn redirected_logs_have_no_colour_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = config(tenant(&plugin_path("passthrough")?)).write(dir.path())?;
    let mut command = burrow();
    command.arg("run").arg("--config").arg(&path);
    let mut process = Process::spawn(command)?;
    wait_until("burrow to log that it runs", || {
        Ok(process.stderr().contains("burrow is running"))
    })?;
    process.terminate()?;
    process.wait_exit()?;
    let stderr = process.stderr();
    assert!(!stderr.contains('\u{1b}'), "colour codes in:\n{stderr}");
    Ok(())
}

/// An error whose message already includes its cause prints the cause once, not once per
/// link of the chain (here: the admin address is taken).
#[test]
fn an_error_prints_its_cause_once() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let dir = tempfile::tempdir()?;
    let path = config(tenant(&plugin_path("passthrough")?))
        .admin_listen(&addr.to_string())
        .write(dir.path())?;
    let (ok, output) = run_config("run", &path)?;
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
#[test]
fn touching_a_plugin_file_reloads_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let touched = copy_plugin("passthrough", dir.path(), "touched.wasm")?;
    let replaced = copy_plugin("passthrough", dir.path(), "replaced.wasm")?;
    let tenant = |name: &str, plugin: &Path| {
        Tenant::new(name, &format!("g-{name}"), &[&format!("in-{name}")], plugin).on_failure("skip")
    };
    let config = HostConfig::for_bootstrap(NOWHERE)
        .tenant(tenant("touched", &touched))
        .tenant(tenant("replaced", &replaced));
    let host = Host::start(&config.write(dir.path())?)?;
    wait_until("both tenants to run", || {
        let stats = host.stats()?;
        Ok(!stats["tenants"]["touched"].is_null() && !stats["tenants"]["replaced"].is_null())
    })?;
    // Same bytes, a new modification time.
    std::fs::File::options()
        .write(true)
        .open(&touched)?
        .set_modified(SystemTime::now() + Duration::from_secs(60))?;
    // New bytes in the other tenant's file: once that swap shows, the watcher has looked at
    // both files since the touch.
    let chaos = plugin_path("chaos")?;
    write_atomically(&replaced, &std::fs::read(&chaos)?)?;
    let chaos_version = version_of(&chaos)?;
    wait_until("the replaced plugin to be swapped", || {
        let plugin = host.tenant("replaced")?["plugin"].to_string();
        Ok(plugin.contains(&chaos_version))
    })?;
    let metrics = host.metrics()?;
    let reloads = |tenant: &str| {
        metric(
            &metrics,
            "burrow_plugin_reloads_total",
            &[("tenant", tenant)],
        )
    };
    assert_eq!(reloads("replaced"), Some(1.0), "{metrics}");
    assert_eq!(reloads("touched"), Some(0.0), "{metrics}");
    host.stop()
}

/// A live edit to a memory cap the plugin cannot start under is refused like a bad plugin
/// file: the running deployment stays and `/stats` says why, instead of every later message
/// failing.
#[test]
fn a_live_edit_to_a_cap_too_small_to_start_keeps_the_running_plugin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let passthrough = plugin_path("passthrough")?;
    let host = Host::start(&config(tenant(&passthrough)).write(dir.path())?)?;
    wait_until("the tenant to run", || Ok(!host.tenant("cli")?.is_null()))?;
    config(tenant(&passthrough).limit("memory", "1MiB")).write(dir.path())?;
    let error = wait_for("/stats to show the refused swap", || {
        let tenant = host.tenant("cli")?;
        Ok(tenant["status"]["last_reload_error"]
            .as_str()
            .map(str::to_owned))
    })?;
    assert!(error.contains("cannot start under its limits"), "{error}");
    let metrics = host.metrics()?;
    assert_eq!(
        metric(
            &metrics,
            "burrow_plugin_reloads_total",
            &[("tenant", "cli")]
        ),
        Some(0.0),
        "{metrics}"
    );
    host.stop()
}
