//! The admin listener of a running host: `/metrics`, `/readyz` and `/stats` tell an operator
//! what each tenant is doing.

use crate::support;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{numbered, produce, wait_all_committed};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::metric;
use burrow_e2e::{wait_for, wait_until};
use support::{Host, version_of};

/// One passthrough tenant `name` on `{name}-in`, run in-process on a mock cluster of its own.
struct Passthrough {
    /// First, so it stops before the cluster it talks to goes.
    host: Host,
    /// Holds the config file.
    _dir: tempfile::TempDir,
    kafka: Broker,
    name: String,
}

impl Passthrough {
    /// Starts the tenant on `partitions` partitions that hold `produced` JSON objects already.
    fn start(name: &str, partitions: i32, produced: u64) -> anyhow::Result<Self> {
        let input = format!("{name}-in");
        let kafka = Broker::mock(&[(&input, partitions)])?;
        produce(&kafka, &input, &numbered(0..produced, None))?;
        let dir = tempfile::tempdir()?;
        let plugin = plugin_path("passthrough")?;
        let tenant = Tenant::new(name, &format!("{name}-group"), &[&input], &plugin);
        let config = HostConfig::new(&kafka).tenant(tenant.on_failure("skip"));
        Ok(Self {
            host: Host::start(&config.write(dir.path())?)?,
            _dir: dir,
            kafka,
            name: name.to_owned(),
        })
    }

    /// Produces `n` JSON objects and waits until the tenant has committed every one.
    fn process(&self, n: u64) -> anyhow::Result<()> {
        let (input, group) = (format!("{}-in", self.name), format!("{}-group", self.name));
        produce(&self.kafka, &input, &numbered(0..n, None))?;
        wait_all_committed(&self.kafka, &group, &input)
    }
}

/// `/metrics` counts the tenant's processed messages exactly, says which plugin version runs,
/// and has every `burrow_*` family of the pool and the tenant.
#[test]
fn metrics_count_processed_messages_and_name_the_plugin() -> anyhow::Result<()> {
    let tenant = Passthrough::start("metrics", 2, 0)?;
    tenant.process(25)?;
    let host = tenant.host;

    let text = host.metrics()?;
    let stats = host.tenant("metrics")?;
    host.stop()?;
    let tenant = ("tenant", "metrics");
    // Its plugin calls ran on the executor, charged to it, and /stats says so beside its
    // weight (1, the default) and cap (none).
    let cpu = metric(&text, "burrow_tenant_cpu_seconds_total", &[tenant]).unwrap_or(0.0);
    assert!(cpu > 0.0, "plugin CPU {cpu} in:\n{text}");
    let in_stats = &stats["plugin_cpu"];
    assert!(in_stats["seconds"].as_f64() > Some(0.0), "{stats}");
    assert_eq!(in_stats["weight"], 1, "{stats}");
    assert!(in_stats["cap_cores"].is_null(), "{stats}");
    assert!(
        stats["plugin_memory_bytes"].as_u64() >= Some(65_536),
        "{stats}"
    );
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
    // The workers' passthrough instances are alive and hold their linear memory: whole wasm
    // pages, one instance's at least.
    let memory = metric(&text, "burrow_plugin_memory_bytes", &[tenant]).unwrap_or(0.0);
    assert!(memory >= 65_536.0, "plugin memory {memory} in:\n{text}");
    assert_eq!(memory % 65_536.0, 0.0, "whole pages: {memory}");
    for family in [
        "burrow_messages_failed_total",
        "burrow_messages_retried_total",
        "burrow_offsets_committed_total",
        "burrow_commit_failures_total",
        "burrow_rebalances_total",
        "burrow_in_flight",
        "burrow_queued",
        "burrow_results_awaited",
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
#[test]
fn committed_offsets_reach_stats_and_metrics() -> anyhow::Result<()> {
    let tenant = Passthrough::start("commits", 1, 0)?;
    tenant.process(12)?;
    let host = tenant.host;
    let result = wait_until("/stats and /metrics to show offset 12 committed", || {
        let stats = host.tenant("commits")?;
        let in_stats = stats["pool"]["partitions"][0]["committed_offset"] == 12;
        let text = host.metrics()?;
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
    });
    host.stop()?;
    result
}

/// `/metrics` reports each partition's consumer lag, and it falls to 0 once every message is
/// committed (librdkafka's statistics bring the high watermark every few seconds).
#[test]
fn metrics_report_consumer_lag() -> anyhow::Result<()> {
    let tenant = Passthrough::start("lag", 1, 0)?;
    tenant.process(5)?;
    let host = tenant.host;
    let wanted = r#"burrow_consumer_lag{partition="0",tenant="lag",topic="lag-in"} 0"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = host.metrics()?;
        if text.lines().any(|l| l == wanted) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    host.stop()?;
    assert!(
        text.lines().any(|l| l == wanted),
        "no `{wanted}` in:\n{text}"
    );
    Ok(())
}

/// Fails unless the admin listener's first answer to `/readyz` is 503 naming `tenant` as
/// joining its group (the group takes seconds to form: the first answer comes before any
/// assignment).
fn first_readyz_is_503_naming(host: &Host, tenant: &str) -> anyhow::Result<()> {
    let (code, body) = wait_for("the admin listener to answer", || {
        Ok(host.get("/readyz").ok())
    })?;
    assert_eq!(code, 503, "{body}");
    let readiness: serde_json::Value = serde_json::from_str(&body)?;
    let joining = format!("tenant {tenant} is starting: joining consumer group \"{tenant}-group\"");
    assert!(
        readiness["reasons"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.starts_with(&joining)))),
        "{body}"
    );
    Ok(())
}

/// `/readyz` answers 503 naming the tenant until its partitions are assigned, then 200 — even
/// when its topic is empty (a host starting on a quiet topic must still become ready).
#[test]
fn readyz_turns_ready_on_an_empty_topic_once_partitions_are_assigned() -> anyhow::Result<()> {
    let tenant = Passthrough::start("ready", 2, 0)?;
    let host = tenant.host;

    first_readyz_is_503_naming(&host, "ready")?;

    wait_until("the tenant's first assignment", || {
        Ok(host.tenant("ready")?["pool"]["rebalances"].as_u64() >= Some(1))
    })?;
    host.wait_ready()?;
    host.stop()?;
    Ok(())
}

/// `/readyz` answers 503 naming the tenant before its group has formed, and 200 once the
/// tenant consumes its assigned partitions.
#[test]
fn readyz_turns_ready_once_the_tenant_consumes_its_partitions() -> anyhow::Result<()> {
    let tenant = Passthrough::start("busy", 2, 10)?;
    let host = tenant.host;

    first_readyz_is_503_naming(&host, "busy")?;

    host.wait_ready()?;
    let (code, body) = host.get("/readyz")?;
    assert_eq!(
        (code, body.contains(r#""ready":true"#)),
        (200, true),
        "{body}"
    );
    host.stop()?;
    Ok(())
}

/// `/stats` has, per tenant, its plugin and version, group, topics, status, and pool stats with
/// exact counters and an entry per partition (committed offsets: see
/// `committed_offsets_reach_stats_and_metrics`).
#[test]
fn stats_show_each_tenants_pool_and_plugin_version() -> anyhow::Result<()> {
    let tenant = Passthrough::start("stats", 2, 0)?;
    tenant.process(30)?;
    let host = tenant.host;

    let stats = host.tenant("stats")?;
    host.stop()?;
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
