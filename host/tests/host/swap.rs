//! Live changes, end to end: a plugin file replaced under load, a broken plugin file, tenants
//! added to and removed from the config file — all while the host runs.

use crate::support;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant, write_atomically};
use burrow_e2e::kafka::{
    Out, numbered, produce, read_exactly_after, read_to_end, wait_all_committed,
};
use burrow_e2e::plugins::{copy_plugin, plugin_path};
use burrow_e2e::process::metric;
use burrow_e2e::{wait_for, wait_until};
use support::{Host, version_of};

/// One tenant `name` running the plugin file at `plugin`; json-validate (if swapped in) emits
/// valid messages to `{name}-after`.
fn tenant(name: &str, plugin: &std::path::Path) -> Tenant {
    let after = format!("{name}-after");
    Tenant::new(
        name,
        &format!("{name}-group"),
        &[&format!("{name}-in")],
        plugin,
    )
    .dead_letters(&format!("{name}-dlq"))
    .output(&after)
    .pool("commit_interval", "100ms")
    .config("output-topic", &after)
}

/// Produces `n` JSON objects to `topic`.
fn produce_json(kafka: &Broker, topic: &str, n: u64) -> anyhow::Result<()> {
    produce(kafka, topic, &numbered(0..n, None)).map(drop)
}

/// The version `/stats` shows for tenant `name`: the part after `@` of `plugin`.
fn running_version(host: &Host, name: &str) -> anyhow::Result<String> {
    let plugin = host.tenant(name)?["plugin"].clone();
    let plugin = plugin.as_str().unwrap_or_default();
    Ok(plugin.rsplit('@').next().unwrap_or_default().to_owned())
}

/// Replacing the plugin file while messages flow swaps the new version in without a restart:
/// every message after the swap runs on it (json-validate emits each to `after`), and every
/// message before and after is committed, each processed exactly once.
#[test]
fn replacing_the_plugin_file_swaps_it_live_without_losing_a_message() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("live-in", 2), ("live-after", 2), ("live-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let plugin = copy_plugin("passthrough", dir.path(), "plugin.wasm")?;
    let config = HostConfig::new(&kafka).tenant(tenant("live", &plugin));
    let host = Host::start(&config.write(dir.path())?)?;
    let first_version = version_of(&plugin)?;
    wait_until("/stats to show the first plugin version", || {
        Ok(running_version(&host, "live")? == first_version)
    })?;

    produce_json(&kafka, "live-in", 300)?;
    let next = plugin_path("json-validate")?;
    write_atomically(&plugin, &std::fs::read(&next)?)?;
    let new_version = version_of(&next)?;
    wait_until("/stats to show the new plugin version", || {
        Ok(running_version(&host, "live")? == new_version)
    })?;

    let batch2: Vec<Out> = (0..100)
        .map(|i| Out::value(format!(r#"{{"batch":2,"n":{i}}}"#)))
        .collect();
    produce(&kafka, "live-in", &batch2)?;
    wait_all_committed(&kafka, "live-group", "live-in")?;
    let after = read_exactly_after(&kafka, "live-after", batch2.len())?;
    let emitted: Vec<Option<&[u8]>> = after.iter().map(|r| r.value.as_deref()).collect();
    for record in &batch2 {
        assert!(
            emitted.contains(&record.value.as_deref()),
            "{} was not emitted by the new plugin",
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
        );
    }

    let pool = host.tenant("live")?["pool"].clone();
    let metrics = host.metrics()?;
    host.stop()?;
    assert_eq!(pool["messages_processed"], 400, "each message exactly once");
    assert_eq!(pool["rebalances"], 1, "no restart, no rebalance: {pool}");
    assert_eq!(
        metric(
            &metrics,
            "burrow_plugin_reloads_total",
            &[("tenant", "live")]
        ),
        Some(1.0)
    );
    assert_eq!(read_to_end(&kafka, "live-dlq")?, []);
    Ok(())
}

/// A plugin file that does not load is refused: `/stats` says why, the running version stays,
/// the reload-failure metric counts it, and messages are still processed.
#[test]
fn a_broken_plugin_file_leaves_the_running_version_in_place() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("keep-in", 1), ("keep-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let plugin = copy_plugin("passthrough", dir.path(), "plugin.wasm")?;
    let config = HostConfig::new(&kafka).tenant(tenant("keep", &plugin));
    let host = Host::start(&config.write(dir.path())?)?;
    let version = version_of(&plugin)?;
    wait_until("/stats to show the tenant", || {
        Ok(running_version(&host, "keep")? == version)
    })?;

    write_atomically(&plugin, b"this is not a plugin")?;
    let error = wait_for("/stats to show last_reload_error", || {
        let status = host.tenant("keep")?["status"].clone();
        Ok(status["last_reload_error"].as_str().map(str::to_owned))
    })?;
    assert!(error.contains("not a WebAssembly file"), "{error}");
    assert_eq!(running_version(&host, "keep")?, version);
    let metrics = host.metrics()?;
    assert_eq!(
        metric(
            &metrics,
            "burrow_plugin_reload_failures_total",
            &[("tenant", "keep")]
        ),
        Some(1.0),
        "{metrics}"
    );

    produce_json(&kafka, "keep-in", 20)?;
    wait_all_committed(&kafka, "keep-group", "keep-in")?;
    host.stop()?;
    assert_eq!(read_to_end(&kafka, "keep-dlq")?, []);
    Ok(())
}

/// A tenant added to the config file starts and consumes; a tenant removed from it stops and
/// disappears from `/stats` and `/metrics`; the other tenant is untouched.
#[test]
fn tenants_added_to_or_removed_from_the_config_start_and_stop_live() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[
        ("first-in", 1),
        ("first-dlq", 1),
        ("second-in", 1),
        ("second-dlq", 1),
    ])?;
    let dir = tempfile::tempdir()?;
    let plugin = plugin_path("passthrough")?;
    let (first, second) = (tenant("first", &plugin), tenant("second", &plugin));
    let config = HostConfig::new(&kafka);
    let host = Host::start(&config.clone().tenant(first.clone()).write(dir.path())?)?;
    produce_json(&kafka, "first-in", 10)?;
    wait_all_committed(&kafka, "first-group", "first-in")?;

    config
        .clone()
        .tenant(first)
        .tenant(second.clone())
        .write(dir.path())?;
    wait_until("/stats to list the added tenant", || {
        Ok(!host.tenant("second")?.is_null())
    })?;
    produce_json(&kafka, "second-in", 10)?;
    wait_all_committed(&kafka, "second-group", "second-in")?;

    config.tenant(second).write(dir.path())?;
    wait_until("/stats to drop the removed tenant", || {
        Ok(host.tenant("first")?.is_null())
    })?;
    let metrics = host.metrics()?;
    assert!(
        !metrics.contains(r#"tenant="first""#),
        "a removed tenant leaves /metrics:\n{metrics}"
    );
    let second_stats = host.tenant("second")?;
    assert_eq!(second_stats["pool"]["messages_processed"], 10);
    assert_eq!(
        second_stats["pool"]["rebalances"], 1,
        "the other tenant was not restarted"
    );

    produce_json(&kafka, "second-in", 5)?;
    wait_all_committed(&kafka, "second-group", "second-in")?;
    host.stop()?;
    Ok(())
}
