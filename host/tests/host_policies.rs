//! The failure policies other than dead-letter, end to end: `skip` moves on, `halt` stops the
//! tenant without committing the failed message.

mod host_support;

use host_support::{
    ConfigDir, Host, Kafka, Out, committed, host_header, plugin_path, produce, read_all,
    wait_all_committed, wait_for,
};

/// A chaos tenant with policy `on_failure`, consuming `{name}-in`.
fn config(brokers: &str, name: &str, on_failure: &str, workers: usize) -> anyhow::Result<String> {
    let plugin = plugin_path("chaos")?;
    Ok(format!(
        r#"{header}
[pool]
workers = {workers}
commit_interval = "100ms"
max_retries = 1
retry_backoff_base = "10ms"
retry_backoff_max = "50ms"
max_consecutive_errors = 1000

[[tenant]]
name = "{name}"
group_id = "{name}-group"
topics = ["{name}-in"]
plugin = {plugin:?}
on_failure = "{on_failure}"
dead_letter_topic = "{name}-dlq"
"#,
        header = host_header(brokers),
    ))
}

/// `skip` commits past permanent failures (failed and retries exhausted) and dead-letters
/// nothing, even with a dead-letter topic configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_policy_commits_past_failures_without_dead_letters() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("skip-in", 1), ("skip-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, "skip", "skip", 4)?)?)?;

    let records = [
        Out::chaos("fail"),
        Out::chaos("commit"),
        Out::chaos("retry"),
        Out::chaos("commit"),
    ];
    produce(&kafka.brokers, "skip-in", &records).await?;

    wait_all_committed(&kafka.brokers, "skip-group", "skip-in").await?;
    let failed = host.tenant("skip").await?["pool"]["messages_failed"].clone();
    host.stop().await?;
    assert_eq!(failed, 2, "both failures counted");
    assert_eq!(read_all(&kafka.brokers, "skip-dlq").await?, []);
    Ok(())
}

/// `halt` stops the tenant: `/stats` shows it halted, `/readyz` fails naming the halt, and the
/// group's committed offset stops at the failed message (everything before it is committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_policy_stops_the_tenant_before_the_failed_offset() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("halt-in", 1), ("halt-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    // One worker: the messages before the failure are done before it runs.
    let host = Host::start(&dir.write(&config(&kafka.brokers, "halt", "halt", 1)?)?)?;

    let records = [
        Out::chaos("commit"),
        Out::chaos("commit"),
        Out::chaos("fail"),
        Out::chaos("commit"),
        Out::chaos("commit"),
    ];
    let positions = produce(&kafka.brokers, "halt-in", &records).await?;
    let failed_offset = positions[2].offset;

    let halted = wait_for("/stats to show tenant halt halted", || async {
        let status = host.tenant("halt").await?["status"]["halted"].clone();
        Ok(status.as_str().map(str::to_owned))
    })
    .await?;
    assert!(
        halted.contains("halt") && halted.contains(&format!("halt-in/0@{failed_offset}")),
        "the halt names the policy and the message: {halted}"
    );

    let (code, body) = host.get("/readyz").await?;
    assert_eq!(code, 503, "a halted tenant is not ready: {body}");
    assert!(body.contains("tenant halt halted"), "{body}");

    let offsets = committed(&kafka.brokers, "halt-group", "halt-in").await?;
    assert_eq!(
        offsets.get(&0).copied(),
        Some(failed_offset),
        "committed up to, not past, the failed message"
    );
    host.stop().await?;
    Ok(())
}
