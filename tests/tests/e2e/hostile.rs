//! Hostile input any producer or plugin author can send, on the real broker through the real
//! binary: none of it may freeze, halt or starve a tenant, and nothing may be lost.

use std::time::Duration;

use anyhow::Context as _;
use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out, Reader};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::{Burrow, burrow_bin, metric};
use burrow_e2e::unique;

/// Log lines at `level` (`"ERROR"`, `"WARN"`) in a JSON log.
fn lines_at(log: &str, level: &str) -> Vec<String> {
    log.lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| j["level"] == level))
        .map(str::to_owned)
        .collect()
}

/// A record whose header name is not UTF-8 (Kafka allows any bytes) is processed and
/// committed like any other, the records after it too; the tenant stays ready and not halted,
/// and the clean shutdown after it logs no error.
#[test]
fn a_header_name_that_is_not_utf8_is_processed_and_committed() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, dlq) = (unique("rawname-in"), unique("rawname-dlq"));
    kafka::create_topics(broker, &[(&input, 1), (&dlq, 1)])?;
    let group = unique("rawname");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(Tenant::new("t", &group, &[&input], &plugin_path("chaos")?).dead_letters(&dlq))
        .write(dir.path())?;
    let mut host = Burrow::start(&config)?;
    host.wait_ready()?;
    let records = vec![
        Out::numbered(0).raw_header(b"bad-\xff\xfe-name", b"v"),
        Out::numbered(1),
        Out::numbered(2).raw_header(b"\xc3\x28", b""),
    ];
    let positions = kafka::produce(broker, &input, &records)?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;

    let (code, body) = host.get("/readyz")?;
    assert_eq!(code, 200, "/readyz: {body}");
    let tenant = host.tenant("t")?;
    assert!(
        tenant["status"]["halted"].is_null(),
        "the tenant halted: {tenant}"
    );
    let (status, log) = host.terminate_with_log()?;
    assert!(status.success(), "burrow exited with {status}");
    let errors = lines_at(&log, "ERROR");
    assert!(errors.is_empty(), "errors logged:\n{}", errors.join("\n"));
    Ok(())
}

/// A plugin blocked in a host call (a WASI sleep of ten minutes) is stopped at its deadline:
/// counted as a timeout, dead-lettered with the reason, committed. Meanwhile another tenant
/// of the same host, on the same broker, processes and commits everything.
#[test]
fn a_blocked_tenant_ends_at_its_deadline_and_does_not_hold_up_another() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (stuck_in, stuck_dlq) = (unique("stuck-in"), unique("stuck-dlq"));
    let (busy_in, busy_out, busy_dlq) = (unique("busy-in"), unique("busy-out"), unique("busy-dlq"));
    kafka::create_topics(
        broker,
        &[
            (&stuck_in, 4),
            (&stuck_dlq, 1),
            (&busy_in, 4),
            (&busy_out, 4),
            (&busy_dlq, 1),
        ],
    )?;
    let chaos = plugin_path("chaos")?;
    let (stuck_group, busy_group) = (unique("stuck"), unique("busy"));
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .pool("max_retries", 0u32)
        // Every stuck message fails: they must not add up to a halt.
        .pool("max_consecutive_errors", 1000u32)
        .tenant(
            Tenant::new("stuck", &stuck_group, &[&stuck_in], &chaos)
                .dead_letters(&stuck_dlq)
                .limit("timeout", "300ms"),
        )
        .tenant(
            Tenant::new("busy", &busy_group, &[&busy_in], &chaos)
                .output(&busy_out)
                .dead_letters(&busy_dlq),
        )
        .write(dir.path())?;
    let mut host = Burrow::start(&config)?;
    host.wait_ready()?;

    const BLOCKED: u64 = 40;
    let stuck = kafka::numbered(0..BLOCKED, Some("block:600000"));
    let stuck_at = kafka::produce(broker, &stuck_in, &stuck)?;
    let busy = kafka::numbered(0..2_000, Some(&format!("emit:{busy_out}")));
    let busy_at = kafka::produce(broker, &busy_in, &busy)?;

    kafka::wait_committed(broker, &busy_group, &busy_in, &kafka::ends_of(&busy_at))?;
    kafka::wait_committed(broker, &stuck_group, &stuck_in, &kafka::ends_of(&stuck_at))?;
    let dead = kafka::read_exactly_after(broker, &stuck_dlq, BLOCKED as usize)?;
    assert_eq!(
        dead.len(),
        BLOCKED as usize,
        "one dead letter per blocked message"
    );
    for letter in &dead {
        let error = letter.header("burrow.error").unwrap_or_default();
        assert!(error.contains("deadline"), "dead letter error: {error}");
    }
    let metrics = host.metrics()?;
    let timeouts = metric(
        &metrics,
        "burrow_plugin_timeouts_total",
        &[("tenant", "stuck")],
    );
    assert_eq!(timeouts, Some(BLOCKED as f64), "stuck tenant's timeouts");
    let mut out = Reader::new(broker, &busy_out)?;
    out.read_ids(&(0..2_000).collect())?;
    let status = host.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A 5 MiB message the broker accepted and the plugin failed is dead-lettered whole — the
/// producer is sized to what the consumer can receive — and committed; the tenant goes on.
#[test]
fn a_large_message_that_fails_is_dead_lettered_and_the_tenant_goes_on() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, dlq) = (unique("large-in"), unique("large-dlq"));
    kafka::create_topics(broker, &[(&input, 1), (&dlq, 1)])?;
    let group = unique("large");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .pool("max_retries", 0u32)
        .tenant(
            Tenant::new("t", &group, &[&input], &plugin_path("chaos")?)
                .dead_letters(&dlq)
                .limit("memory", "64MiB"),
        )
        .write(dir.path())?;
    let mut host = Burrow::start(&config)?;
    host.wait_ready()?;

    let large = vec![b'x'; 5 * 1024 * 1024];
    let positions = produce_large(broker, &input, &large)?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;
    let dead = kafka::read_exactly_after(broker, &dlq, 2)?;
    assert_eq!(dead.len(), 2, "one dead letter per failed message");
    let whole = dead
        .iter()
        .find(|d| d.value.as_ref().is_some_and(|v| v.len() == large.len()));
    let reference = dead
        .iter()
        .find(|d| d.header("burrow.dead-letter.truncated").is_some());
    assert!(
        whole.is_some() || reference.is_some(),
        "the 5 MiB message is neither dead-lettered whole nor by reference: {:?}",
        dead.iter()
            .map(|d| (d.value.as_ref().map(Vec::len), d.headers.len()))
            .collect::<Vec<_>>()
    );
    let tenant = host.tenant("t")?;
    assert!(tenant["status"]["halted"].is_null(), "halted: {tenant}");
    let status = host.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// Produces `value` (failed by the chaos plugin) and then a small failing record, with a
/// producer allowed to send it.
fn produce_large(
    broker: &Broker,
    topic: &str,
    value: &[u8],
) -> anyhow::Result<Vec<kafka::Position>> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = broker
        .client()
        .set("message.max.bytes", "10000000")
        .create()
        .context("creating the large-message producer")?;
    for (payload, id) in [(value, "0"), (b"small".as_slice(), "1")] {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: "burrow-action",
                value: Some("fail"),
            })
            .insert(rdkafka::message::Header {
                key: kafka::ID_HEADER,
                value: Some(id),
            });
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(payload)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .context("producing the large message")?;
    }
    producer.flush(Duration::from_secs(60))?;
    // One partition: the two records are offsets 0 and 1 of an empty topic.
    Ok(vec![
        kafka::Position {
            partition: 0,
            offset: 0,
        },
        kafka::Position {
            partition: 0,
            offset: 1,
        },
    ])
}

/// With the broker unreachable, librdkafka's repeated connection errors come out as one clear
/// line per client, not dozens a second: in five seconds, a handful of warnings at most.
#[test]
fn an_unreachable_broker_is_reported_without_a_flood() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = plugin_path("chaos")?;
    let config = dir.path().join("burrow.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
brokers = "127.0.0.1:1"
[admin]
listen = "127.0.0.1:0"
[[tenant]]
name = "t"
group_id = "g"
topics = ["in"]
plugin = {plugin:?}
on_failure = "skip"
"#
        ),
    )?;
    let child = std::process::Command::new(burrow_bin()?)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(5));
    burrow_e2e::process::signal("TERM", child.id())?;
    let output = child.wait_with_output()?;
    let log = String::from_utf8_lossy(&output.stderr);
    let warnings = lines_at(&log, "WARN");
    let errors = lines_at(&log, "ERROR");
    // One first line per client (consumer, producer), perhaps a summary; never one per retry.
    assert!(
        warnings.len() + errors.len() <= 6,
        "{} warnings and {} errors in 5 s:\n{}",
        warnings.len(),
        errors.len(),
        log
    );
    assert!(
        log.contains("127.0.0.1:1"),
        "the log never says which broker is unreachable:\n{log}"
    );
    Ok(())
}
