//! The admin listener of a running host: `/metrics`, `/readyz` and `/stats` tell an operator
//! what each tenant is doing.

mod host_support;

use host_support::{
    ConfigDir, Host, Kafka, host_header, metric, plugin_path, produce_json, version_of,
    wait_all_committed, wait_until,
};

/// One passthrough tenant `name` on `{name}-in`.
fn config(brokers: &str, name: &str) -> anyhow::Result<String> {
    Ok(format!(
        r#"{header}
[pool]
commit_interval = "100ms"

[[tenant]]
name = "{name}"
group_id = "{name}-group"
topics = ["{name}-in"]
plugin = {plugin:?}
on_failure = "skip"
"#,
        header = host_header(brokers),
        plugin = plugin_path("passthrough")?,
    ))
}

/// `/metrics` counts the tenant's processed messages exactly, says which plugin version runs,
/// and has every `burrow_*` family of the pool and the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_processed_messages_and_name_the_plugin() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("metrics-in", 2)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "metrics")?)?)?;
    produce_json(&kafka.brokers, "metrics-in", 25).await?;
    wait_all_committed(&kafka.brokers, "metrics-group", "metrics-in").await?;

    let text = host.metrics().await?;
    host.stop().await?;
    let tenant = ("tenant", "metrics");
    assert_eq!(
        metric(&text, "burrow_messages_processed_total", &[tenant]),
        Some(25.0),
        "{text}"
    );
    let version = version_of(&plugin_path("passthrough")?)?;
    assert_eq!(
        metric(
            &text,
            "burrow_plugin_info",
            &[tenant, ("plugin", "passthrough"), ("version", &version)]
        ),
        Some(1.0),
        "{text}"
    );
    for family in [
        "burrow_messages_failed_total",
        "burrow_messages_retried_total",
        "burrow_offsets_committed_total",
        "burrow_commit_failures_total",
        "burrow_rebalances_total",
        "burrow_in_flight",
        "burrow_queued",
        "burrow_processing_duration_seconds_count",
        "burrow_offset_gap",
        "burrow_records_emitted_total",
        "burrow_messages_dead_lettered_total",
        "burrow_plugin_traps_total",
        "burrow_plugin_timeouts_total",
        "burrow_plugin_memory_exceeded_total",
        "burrow_plugin_reloads_total",
        "burrow_plugin_reload_failures_total",
    ] {
        assert!(
            metric(&text, family, &[tenant]).is_some(),
            "no {family} for the tenant in:\n{text}"
        );
    }
    Ok(())
}

/// The broker-confirmed commits show in `/metrics` (`burrow_offsets_committed_total`,
/// `burrow_committed_offset` per partition) and in `/stats` (each partition's
/// `committed_offset`).
///
/// They never do: the pool learns of commits through the consumer's `commit_callback`, but
/// librdkafka delivers the result of a manual `rd_kafka_commit` (async) only to a configured
/// `offset_commit_cb` or a reply queue (`rd_kafka_cgrp.c`, `rd_kafka_cgrp_op_handle_OffsetCommit`
/// path; `rd_kafka_commit` in `rdkafka_offset.c` passes no reply queue), and rust-rdkafka uses
/// the event API without setting `offset_commit_cb`; synchronous commits answer on a private
/// queue. So the callback never fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_reach_stats_and_metrics() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("commits-in", 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "commits")?)?)?;
    produce_json(&kafka.brokers, "commits-in", 12).await?;
    wait_all_committed(&kafka.brokers, "commits-group", "commits-in").await?;
    let result = wait_until(
        "/stats and /metrics to show offset 12 committed",
        || async {
            let stats = host.tenant("commits").await?;
            let in_stats = stats["pool"]["partitions"][0]["committed_offset"] == 12;
            let text = host.metrics().await?;
            let in_metrics = metric(
                &text,
                "burrow_committed_offset",
                &[
                    ("tenant", "commits"),
                    ("topic", "commits-in"),
                    ("partition", "0"),
                ],
            ) == Some(12.0)
                && metric(
                    &text,
                    "burrow_offsets_committed_total",
                    &[("tenant", "commits")],
                )
                .is_some_and(|n| n >= 1.0);
            Ok(in_stats && in_metrics)
        },
    )
    .await;
    host.stop().await?;
    result
}

/// `/metrics` reports each partition's consumer lag, and it falls to 0 once every message is
/// committed (librdkafka's statistics bring the high watermark every few seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_consumer_lag() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("lag-in", 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "lag")?)?)?;
    produce_json(&kafka.brokers, "lag-in", 5).await?;
    wait_all_committed(&kafka.brokers, "lag-group", "lag-in").await?;
    let wanted = r#"burrow_consumer_lag{partition="0",tenant="lag",topic="lag-in"} 0"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = host.metrics().await?;
        if text.lines().any(|l| l == wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    host.stop().await?;
    assert!(
        text.lines().any(|l| l == wanted),
        "no `{wanted}` in:\n{text}"
    );
    Ok(())
}

/// `/readyz` answers 503 naming the tenant until its partitions are assigned, then 200 — even
/// when its topic is empty (a host starting on a quiet topic must still become ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_on_an_empty_topic_once_partitions_are_assigned() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("ready-in", 2)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "ready")?)?)?;

    // The group takes seconds to form: the first answer comes before any assignment.
    let (code, body) = host_support::wait_for("the admin listener to answer", || async {
        Ok(host.get("/readyz").await.ok())
    })
    .await?;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("tenant ready has no partitions assigned yet"),
        "{body}"
    );

    wait_until("the tenant's first assignment", || async {
        Ok(host.tenant("ready").await?["pool"]["rebalances"].as_u64() >= Some(1))
    })
    .await?;
    host.wait_ready().await?;
    host.stop().await?;
    Ok(())
}

/// `/readyz` answers 503 naming the tenant before its group has formed, and 200 once the
/// tenant consumes its assigned partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_once_the_tenant_consumes_its_partitions() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("busy-in", 2)])?;
    produce_json(&kafka.brokers, "busy-in", 10).await?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "busy")?)?)?;

    // The group takes seconds to form: the first answer comes before any assignment.
    let (code, body) = host_support::wait_for("the admin listener to answer", || async {
        Ok(host.get("/readyz").await.ok())
    })
    .await?;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("tenant busy has no partitions assigned yet"),
        "{body}"
    );

    host.wait_ready().await?;
    let (code, body) = host.get("/readyz").await?;
    assert_eq!(
        (code, body.contains(r#""ready":true"#)),
        (200, true),
        "{body}"
    );
    host.stop().await?;
    Ok(())
}

/// `/stats` has, per tenant, its plugin and version, group, topics, status, and pool stats with
/// exact counters and an entry per partition (committed offsets: see
/// `committed_offsets_reach_stats_and_metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_each_tenants_pool_and_plugin_version() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("stats-in", 2)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "stats")?)?)?;
    produce_json(&kafka.brokers, "stats-in", 30).await?;
    wait_all_committed(&kafka.brokers, "stats-group", "stats-in").await?;

    let stats = host.tenant("stats").await?;
    host.stop().await?;
    let version = version_of(&plugin_path("passthrough")?)?;
    assert_eq!(
        stats["plugin"],
        format!("passthrough@{version}"),
        "{stats:#}"
    );
    assert_eq!(stats["group_id"], "stats-group");
    assert_eq!(stats["topics"], serde_json::json!(["stats-in"]));
    assert!(stats["status"]["halted"].is_null(), "{stats:#}");
    let pool = &stats["pool"];
    assert_eq!(pool["messages_processed"], 30, "{stats:#}");
    assert_eq!(pool["messages_failed"], 0);
    assert_eq!(pool["messages_retried"], 0);
    for p in 0..2 {
        let partition = pool["partitions"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["partition"] == p))
            .cloned()
            .unwrap_or_default();
        assert_eq!(partition["topic"], "stats-in", "{stats:#}");
        assert_eq!(partition["gap"], 0);
        assert_eq!(partition["pending"], 0);
    }
    Ok(())
}
