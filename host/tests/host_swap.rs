//! Live changes, end to end: a plugin file replaced under load, a broken plugin file, tenants
//! added to and removed from the config file — all while the host runs.

mod host_support;

use host_support::{
    ConfigDir, Host, Kafka, Out, host_header, metric, plugin_path, produce, produce_json, read_all,
    version_of, wait_all_committed, wait_for, wait_records, wait_until, write_atomically,
};

/// One tenant `name` running the plugin file at `plugin`; json-validate (if swapped in) emits
/// valid messages to `{name}-after`.
fn tenant(name: &str, plugin: &std::path::Path) -> String {
    format!(
        r#"
[[tenant]]
name = "{name}"
group_id = "{name}-group"
topics = ["{name}-in"]
plugin = {plugin:?}
dead_letter_topic = "{name}-dlq"
output_topics = ["{name}-after"]

[tenant.pool]
commit_interval = "100ms"

[tenant.config]
output-topic = "{name}-after"
"#
    )
}

/// The version `/stats` shows for tenant `name`: the part after `@` of `plugin`.
async fn running_version(host: &Host, name: &str) -> anyhow::Result<String> {
    let plugin = host.tenant(name).await?["plugin"].clone();
    let plugin = plugin.as_str().unwrap_or_default();
    Ok(plugin.rsplit('@').next().unwrap_or_default().to_owned())
}

/// Replacing the plugin file while messages flow swaps the new version in without a restart:
/// every message after the swap runs on it (json-validate emits each to `after`), and every
/// message before and after is committed, each processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_plugin_file_swaps_it_live_without_losing_a_message() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("live-in", 2), ("live-after", 2), ("live-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let plugin = dir.copy_plugin("passthrough", "plugin.wasm")?;
    let host = Host::start(&dir.write(&format!(
        "{}{}",
        host_header(&kafka.brokers),
        tenant("live", &plugin)
    ))?)?;
    let first_version = version_of(&plugin)?;
    wait_until("/stats to show the first plugin version", || async {
        Ok(running_version(&host, "live").await? == first_version)
    })
    .await?;

    produce_json(&kafka.brokers, "live-in", 300).await?;
    let next = plugin_path("json-validate")?;
    write_atomically(&plugin, &std::fs::read(&next)?)?;
    let new_version = version_of(&next)?;
    wait_until("/stats to show the new plugin version", || async {
        Ok(running_version(&host, "live").await? == new_version)
    })
    .await?;

    let batch2: Vec<Out> = (0..100)
        .map(|i| Out::value(format!(r#"{{"batch":2,"n":{i}}}"#)))
        .collect();
    produce(&kafka.brokers, "live-in", &batch2).await?;
    wait_all_committed(&kafka.brokers, "live-group", "live-in").await?;
    let after = wait_records(&kafka.brokers, "live-after", batch2.len()).await?;
    let emitted: Vec<&[u8]> = after.iter().map(|r| r.value.as_slice()).collect();
    for record in &batch2 {
        assert!(
            emitted.contains(&record.value.as_slice()),
            "{} was not emitted by the new plugin",
            String::from_utf8_lossy(&record.value)
        );
    }

    let pool = host.tenant("live").await?["pool"].clone();
    let metrics = host.metrics().await?;
    host.stop().await?;
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
    assert_eq!(read_all(&kafka.brokers, "live-dlq").await?, []);
    Ok(())
}

/// A plugin file that does not load is refused: `/stats` says why, the running version stays,
/// the reload-failure metric counts it, and messages are still processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_plugin_file_leaves_the_running_version_in_place() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("keep-in", 1), ("keep-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let plugin = dir.copy_plugin("passthrough", "plugin.wasm")?;
    let host = Host::start(&dir.write(&format!(
        "{}{}",
        host_header(&kafka.brokers),
        tenant("keep", &plugin)
    ))?)?;
    let version = version_of(&plugin)?;
    wait_until("/stats to show the tenant", || async {
        Ok(running_version(&host, "keep").await? == version)
    })
    .await?;

    write_atomically(&plugin, b"this is not a plugin")?;
    let error = wait_for("/stats to show last_reload_error", || async {
        let status = host.tenant("keep").await?["status"].clone();
        Ok(status["last_reload_error"].as_str().map(str::to_owned))
    })
    .await?;
    assert!(error.contains("not a WebAssembly file"), "{error}");
    assert_eq!(running_version(&host, "keep").await?, version);
    let metrics = host.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            "burrow_plugin_reload_failures_total",
            &[("tenant", "keep")]
        ),
        Some(1.0),
        "{metrics}"
    );

    produce_json(&kafka.brokers, "keep-in", 20).await?;
    wait_all_committed(&kafka.brokers, "keep-group", "keep-in").await?;
    host.stop().await?;
    assert_eq!(read_all(&kafka.brokers, "keep-dlq").await?, []);
    Ok(())
}

/// A tenant added to the config file starts and consumes; a tenant removed from it stops and
/// disappears from `/stats` and `/metrics`; the other tenant is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_added_to_or_removed_from_the_config_start_and_stop_live() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[
        ("first-in", 1),
        ("first-dlq", 1),
        ("second-in", 1),
        ("second-dlq", 1),
    ])?;
    let dir = ConfigDir::new()?;
    let plugin = plugin_path("passthrough")?;
    let header = host_header(&kafka.brokers);
    let first = tenant("first", &plugin);
    let second = tenant("second", &plugin);
    let host = Host::start(&dir.write(&format!("{header}{first}"))?)?;
    produce_json(&kafka.brokers, "first-in", 10).await?;
    wait_all_committed(&kafka.brokers, "first-group", "first-in").await?;

    dir.write(&format!("{header}{first}{second}"))?;
    wait_until("/stats to list the added tenant", || async {
        Ok(!host.tenant("second").await?.is_null())
    })
    .await?;
    produce_json(&kafka.brokers, "second-in", 10).await?;
    wait_all_committed(&kafka.brokers, "second-group", "second-in").await?;

    dir.write(&format!("{header}{second}"))?;
    wait_until("/stats to drop the removed tenant", || async {
        Ok(host.tenant("first").await?.is_null())
    })
    .await?;
    let metrics = host.metrics().await?;
    assert!(
        !metrics.contains(r#"tenant="first""#),
        "a removed tenant leaves /metrics:\n{metrics}"
    );
    let second_stats = host.tenant("second").await?;
    assert_eq!(second_stats["pool"]["messages_processed"], 10);
    assert_eq!(
        second_stats["pool"]["rebalances"], 1,
        "the other tenant was not restarted"
    );

    produce_json(&kafka.brokers, "second-in", 5).await?;
    wait_all_committed(&kafka.brokers, "second-group", "second-in").await?;
    host.stop().await?;
    Ok(())
}
