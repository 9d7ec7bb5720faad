//! Every plugin outcome, end to end: the host on a mock cluster running the chaos plugin with a
//! dead-letter policy. What ends in Kafka is what the outcome table in `tenant::handler` says.

mod host_support;

use host_support::{
    ConfigDir, Host, Kafka, Out, Position, host_header, plugin_path, produce, read_all, version_of,
    wait_all_committed, wait_records,
};

/// The tenant's config: chaos, dead letters, two retries with a short backoff.
fn config(brokers: &str, name: &str) -> anyhow::Result<String> {
    let plugin = plugin_path("chaos")?;
    Ok(format!(
        r#"{header}
[pool]
workers = 4
commit_interval = "100ms"
max_retries = 2
retry_backoff_base = "10ms"
retry_backoff_max = "50ms"
max_consecutive_errors = 1000

[[tenant]]
name = "{name}"
group_id = "{name}-group"
topics = ["{name}-in"]
plugin = {plugin:?}
on_failure = "dead-letter"
dead_letter_topic = "{name}-dlq"
output_topics = ["{name}-out"]
"#,
        header = host_header(brokers),
    ))
}

/// `commit`, no header, a retry that then commits, and an emit to an allowed topic all commit:
/// nothing is dead-lettered, the emitted value is in the output topic, every offset is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_outcomes_commit_and_emits_reach_the_output_topic() -> anyhow::Result<()> {
    let t = "ok";
    let (input, out, dlq) = ("ok-in", "ok-out", "ok-dlq");
    let kafka = Kafka::with_topics(&[(input, 2), (out, 1), (dlq, 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, t)?)?)?;

    let emit = format!("emit:{out}");
    let records = [
        Out::chaos("commit"),
        Out::value("no header at all"),
        Out::chaos("retry-then-commit:1"),
        Out::value("emitted value").header("burrow-action", emit.as_str()),
    ];
    produce(&kafka.brokers, input, &records).await?;

    wait_all_committed(&kafka.brokers, "ok-group", input).await?;
    let emitted = wait_records(&kafka.brokers, out, 1).await?;
    let values: Vec<String> = emitted.iter().map(|r| r.value_text()).collect();
    assert_eq!(values, ["emitted value"]);
    host.stop().await?;
    assert_eq!(
        read_all(&kafka.brokers, dlq).await?,
        [],
        "nothing that commits is dead-lettered"
    );
    Ok(())
}

/// A message that fails for good (fail, retries exhausted, trap, emit to a topic not allowed)
/// is dead-lettered with its original key, value and headers plus every `burrow.*` header saying
/// where it came from and why; nothing is produced to the forbidden topic, and every offset is
/// committed (nothing lost, nothing stuck).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_are_dead_lettered_with_where_and_why() -> anyhow::Result<()> {
    let t = "bad";
    let (input, dlq, forbidden) = ("bad-in", "bad-dlq", "forbidden");
    let kafka = Kafka::with_topics(&[(input, 2), ("bad-out", 1), (dlq, 1), (forbidden, 1)])?;
    let dir = ConfigDir::new()?;
    let host = Host::start(&dir.write(&config(&kafka.brokers, t)?)?)?;

    // action, attempts expected in the dead letter, text its `burrow.error` must contain
    let cases = [
        ("fail", "1", "chaos: asked to fail"),
        ("retry", "3", "retry"),
        ("trap", "3", "trap"),
        ("emit:forbidden", "1", "\"forbidden\""),
    ];
    let records: Vec<Out> = cases
        .iter()
        .enumerate()
        .map(|(i, (action, _, _))| {
            Out::value(format!("value of {action}"))
                .key(format!("key-{i}"))
                .header("burrow-action", *action)
                .header("trace-id", format!("trace-{i}"))
                .partition(i as i32 % 2)
        })
        .collect();
    let positions = produce(&kafka.brokers, input, &records).await?;

    wait_all_committed(&kafka.brokers, "bad-group", input).await?;
    let letters = wait_records(&kafka.brokers, dlq, cases.len()).await?;
    host.stop().await?;

    assert_eq!(
        letters.len(),
        cases.len(),
        "one dead letter per failed message"
    );
    let version = version_of(&plugin_path("chaos")?)?;
    for ((action, attempts, why), (sent, Position { partition, offset })) in
        cases.iter().zip(records.iter().zip(&positions))
    {
        let letter = letters
            .iter()
            .find(|l| l.key == sent.key)
            .unwrap_or_else(|| panic!("no dead letter for `{action}` in {letters:#?}"));
        assert_eq!(letter.value, sent.value, "{action}: value kept");
        assert_eq!(
            letter.headers[..sent.headers.len()],
            sent.headers[..],
            "{action}: original headers kept, first and in order"
        );
        let header = |name: &str| letter.header(name).unwrap_or_default();
        assert!(
            header("burrow.error").contains(why),
            "{action}: burrow.error {:?} should mention {why:?}",
            header("burrow.error")
        );
        assert_eq!(header("burrow.attempts"), *attempts, "{action}: attempts");
        assert_eq!(header("burrow.source.topic"), input, "{action}");
        assert_eq!(
            header("burrow.source.partition"),
            partition.to_string(),
            "{action}"
        );
        assert_eq!(
            header("burrow.source.offset"),
            offset.to_string(),
            "{action}"
        );
        assert_eq!(header("burrow.plugin.name"), "chaos", "{action}");
        assert_eq!(header("burrow.plugin.version"), version, "{action}");
        assert_eq!(header("burrow.tenant"), t, "{action}");
    }
    assert_eq!(
        read_all(&kafka.brokers, forbidden).await?,
        [],
        "an emit to a topic outside output_topics is never produced"
    );
    Ok(())
}
