//! Tenants are isolated: one tenant's plugin looping on every message does not stop another
//! tenant in the same host.

mod host_support;

use host_support::{
    ConfigDir, Host, Kafka, Out, committed, end_offsets, host_header, plugin_path, produce,
    produce_json, wait_all_committed, wait_records,
};

/// Messages the looping tenant gets. Each is tried 3 times and held 200 ms each time by its
/// deadline, on 2 workers: about 6 s of work (wall-clock deadlines, so however busy the
/// machine), against a fraction of a second for the healthy tenant's 500 passthrough messages.
const LOOPS: usize = 20;
const HEALTHY: usize = 500;

/// While tenant A's plugin loops on every message (held to its 200 ms deadline, retried, then
/// dead-lettered), tenant B in the same host commits all of its messages; A's loops end as
/// dead letters whose reason is the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_tenant_does_not_stop_another_tenant() -> anyhow::Result<()> {
    let kafka = Kafka::with_topics(&[("a-in", 2), ("a-dlq", 1), ("b-in", 4), ("b-dlq", 1)])?;
    let dir = ConfigDir::new()?;
    let text = format!(
        r#"{header}
[pool]
commit_interval = "100ms"
retry_backoff_base = "10ms"
retry_backoff_max = "50ms"
max_consecutive_errors = 1000

[[tenant]]
name = "a"
group_id = "a-group"
topics = ["a-in"]
plugin = {chaos:?}
dead_letter_topic = "a-dlq"

[tenant.limits]
timeout = "200ms"

[tenant.pool]
workers = 2
max_retries = 2

[[tenant]]
name = "b"
group_id = "b-group"
topics = ["b-in"]
plugin = {passthrough:?}
dead_letter_topic = "b-dlq"
"#,
        header = host_header(&kafka.brokers),
        chaos = plugin_path("chaos")?,
        passthrough = plugin_path("passthrough")?,
    );
    let host = Host::start(&dir.write(&text)?)?;

    produce(&kafka.brokers, "a-in", &vec![Out::chaos("loop"); LOOPS]).await?;
    produce_json(&kafka.brokers, "b-in", HEALTHY).await?;

    wait_all_committed(&kafka.brokers, "b-group", "b-in").await?;
    let a_committed: i64 = committed(&kafka.brokers, "a-group", "a-in")
        .await?
        .values()
        .sum();
    assert!(
        a_committed < LOOPS as i64,
        "B finished while A was still working through its loops (A committed {a_committed})"
    );

    let letters = wait_records(&kafka.brokers, "a-dlq", LOOPS).await?;
    wait_all_committed(&kafka.brokers, "a-group", "a-in").await?;
    host.stop().await?;
    for letter in &letters {
        let error = letter.header("burrow.error").unwrap_or_default();
        assert!(error.contains("deadline"), "a timeout reason: {error:?}");
        assert_eq!(letter.header("burrow.attempts").as_deref(), Some("3"));
    }
    let b_end: i64 = end_offsets(&kafka.brokers, "b-in").await?.values().sum();
    assert_eq!(b_end, HEALTHY as i64);
    Ok(())
}
