//! The failure policies other than dead-letter, end to end: `skip` moves on, `halt` stops the
//! tenant without committing the failed message.

use crate::support;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{Out, committed, produce, read_to_end, wait_all_committed};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::wait_for;
use support::Host;

/// A chaos tenant with policy `on_failure`, consuming `{name}-in`.
fn config(
    broker: &Broker,
    name: &str,
    on_failure: &str,
    workers: u32,
) -> anyhow::Result<HostConfig> {
    let tenant = Tenant::new(
        name,
        &format!("{name}-group"),
        &[&format!("{name}-in")],
        &plugin_path("chaos")?,
    )
    .dead_letters(&format!("{name}-dlq"))
    .on_failure(on_failure);
    Ok(HostConfig::new(broker)
        .pool("workers", workers)
        .pool("max_retries", 1u32)
        .pool("retry_backoff_base", "10ms")
        .pool("retry_backoff_max", "50ms")
        .pool("max_consecutive_errors", 1000u32)
        .tenant(tenant))
}

/// `skip` commits past permanent failures (failed and retries exhausted) and dead-letters
/// nothing, even with a dead-letter topic configured.
#[test]
fn skip_policy_commits_past_failures_without_dead_letters() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("skip-in", 1), ("skip-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let host = Host::start(&config(&kafka, "skip", "skip", 4)?.write(dir.path())?)?;

    let records = [
        Out::chaos("fail"),
        Out::chaos("commit"),
        Out::chaos("retry"),
        Out::chaos("commit"),
    ];
    produce(&kafka, "skip-in", &records)?;

    wait_all_committed(&kafka, "skip-group", "skip-in")?;
    let failed = host.tenant("skip")?["pool"]["messages_failed"].clone();
    host.stop()?;
    assert_eq!(failed, 2, "both failures counted");
    assert_eq!(read_to_end(&kafka, "skip-dlq")?, []);
    Ok(())
}

/// `halt` stops the tenant: `/stats` shows it halted, `/readyz` fails naming the halt, and the
/// group's committed offset stops at the failed message (everything before it is committed).
#[test]
fn halt_policy_stops_the_tenant_before_the_failed_offset() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("halt-in", 1), ("halt-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    // One worker: the messages before the failure are done before it runs.
    let host = Host::start(&config(&kafka, "halt", "halt", 1)?.write(dir.path())?)?;

    let records = [
        Out::chaos("commit"),
        Out::chaos("commit"),
        Out::chaos("fail"),
        Out::chaos("commit"),
        Out::chaos("commit"),
    ];
    let positions = produce(&kafka, "halt-in", &records)?;
    let failed_offset = positions[2].offset;

    let halted = wait_for("/stats to show tenant halt halted", || {
        let status = host.tenant("halt")?["status"]["halted"].clone();
        Ok(status.as_str().map(str::to_owned))
    })?;
    assert!(
        halted.contains("halt") && halted.contains(&format!("halt-in/0@{failed_offset}")),
        "the halt names the policy and the message: {halted}"
    );

    let (code, body) = host.get("/readyz")?;
    assert_eq!(code, 503, "a halted tenant is not ready: {body}");
    assert!(body.contains("tenant halt halted"), "{body}");

    let offsets = committed(&kafka, "halt-group", "halt-in")?;
    assert_eq!(
        offsets.get(&0).copied(),
        Some(failed_offset),
        "committed up to, not past, the failed message"
    );
    host.stop()?;
    Ok(())
}
