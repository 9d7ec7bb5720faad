//! The catalogue of bad input: configs, plugin files, data and plugin faults, each with the
//! outcome the docs promise. Table-driven: every case is checked and every miss is reported.

use std::collections::BTreeMap;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant, Value};
use burrow_e2e::kafka::{self, ID_HEADER, Out, Reader, Record};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::{Burrow, burrow_bin, tail};
use burrow_e2e::unique;

/// A config case: what the file says, the text the refusal must contain (the key), and a
/// secret the refusal must not show.
struct ConfigCase {
    name: &'static str,
    text: String,
    names: &'static str,
    hides: Option<&'static str>,
}

/// A secret value the bad-config cases carry: no refusal may print it.
const SECRET: &str = "hunter2-do-not-print";

/// `burrow validate` and `burrow run` both refuse every bad config (non-zero exit, before
/// consuming anything), naming the offending key or file, and never print a secret: what
/// `validate` passes, `run` accepts.
#[test]
fn validate_and_run_refuse_each_bad_config_naming_the_key() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let dir = tempfile::tempdir()?;
    let chaos = plugin_path("chaos")?;
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "hello, I am not a component")?;
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, "")?;
    let tenant = || Tenant::new("t", "g", &["in"], &chaos).dead_letters("dlq");
    let good = || HostConfig::new(broker).tenant(tenant());
    let render = |c: HostConfig| c.render();
    let cases = vec![
        ConfigCase {
            name: "unknown pool key",
            text: render(good().pool("wrokers", 4u32)),
            hides: None,
            names: "wrokers",
        },
        ConfigCase {
            name: "unknown top-level table",
            text: format!("{}\n[bogus]\nx = 1\n", render(good())),
            hides: None,
            names: "bogus",
        },
        ConfigCase {
            name: "bad duration",
            text: render(good().pool("commit_interval", "soon")),
            hides: None,
            names: "pool.commit_interval",
        },
        ConfigCase {
            name: "bad size",
            text: render(HostConfig::new(broker).tenant(tenant().limit("memory", "lots"))),
            hides: None,
            names: "tenant[0].limits.memory",
        },
        ConfigCase {
            name: "negative workers",
            text: render(good().pool("workers", -1i64)),
            hides: None,
            names: "pool.workers",
        },
        ConfigCase {
            name: "unknown ordering",
            text: render(good().pool("ordering", "random")),
            hides: None,
            names: "pool.ordering",
        },
        ConfigCase {
            name: "unknown failure policy",
            text: render(HostConfig::new(broker).tenant(tenant().on_failure("shrug"))),
            hides: None,
            names: "tenant[0].on_failure",
        },
        ConfigCase {
            name: "dead-letter policy without a topic",
            text: render(
                HostConfig::new(broker)
                    .tenant(Tenant::new("t", "g", &["in"], &chaos).on_failure("dead-letter")),
            ),
            hides: None,
            names: "tenant[0].dead_letter_topic",
        },
        ConfigCase {
            name: "reserved librdkafka option",
            text: render(good().kafka_option("enable.auto.commit", "true")),
            hides: None,
            names: "enable.auto.commit",
        },
        ConfigCase {
            name: "two tenants with one name",
            text: render(good().tenant(tenant())),
            hides: None,
            names: "tenant[1].name",
        },
        ConfigCase {
            name: "missing plugin file",
            text: render(HostConfig::new(broker).tenant(
                Tenant::new("t", "g", &["in"], &dir.path().join("gone.wasm")).dead_letters("dlq"),
            )),
            hides: None,
            names: "gone.wasm",
        },
        ConfigCase {
            name: "plugin file that is not wasm",
            text: render(
                HostConfig::new(broker)
                    .tenant(Tenant::new("t", "g", &["in"], &not_wasm).dead_letters("dlq")),
            ),
            hides: None,
            names: "plugin `notes` is not a WebAssembly file",
        },
        ConfigCase {
            name: "empty plugin file",
            text: render(
                HostConfig::new(broker)
                    .tenant(Tenant::new("t", "g", &["in"], &empty).dead_letters("dlq")),
            ),
            hides: None,
            names: "plugin `empty` is not a WebAssembly file",
        },
        ConfigCase {
            name: "TOML syntax error",
            text: format!("{}\n[pool\n", render(good())),
            hides: None,
            names: "burrow.toml",
        },
        ConfigCase {
            name: "no brokers",
            text: render(good()).replacen(&format!("brokers = \"{}\"", broker.bootstrap), "", 1),
            hides: None,
            names: "brokers",
        },
        ConfigCase {
            name: "unknown librdkafka property",
            text: render(good().kafka_option("no.such.property", "1")),
            hides: None,
            names: "no.such.property",
        },
        ConfigCase {
            name: "invalid librdkafka value",
            text: render(good().kafka_option("fetch.wait.max.ms", "soon")),
            hides: None,
            names: "fetch.wait.max.ms",
        },
        ConfigCase {
            name: "shutdown_timeout not shorter than max.poll.interval.ms",
            text: render(
                good()
                    .kafka_option("max.poll.interval.ms", "10000")
                    .pool("shutdown_timeout", "10s"),
            ),
            hides: None,
            names: "shutdown_timeout",
        },
        ConfigCase {
            name: "read_dirs that do not exist",
            text: render(HostConfig::new(broker).tenant(
                tenant().limit("read_dirs", Value::List(vec!["/no/such/burrow/dir".into()])),
            )),
            hides: None,
            names: "tenant[0].limits.read_dirs",
        },
        ConfigCase {
            name: "memory cap below what the plugin needs to start",
            text: render(HostConfig::new(broker).tenant(tenant().limit("memory", "64KiB"))),
            hides: None,
            names: "tenant[0].limits.memory",
        },
        ConfigCase {
            name: "bad TLS key with a password",
            text: render(
                good()
                    .kafka_option("security.protocol", "ssl")
                    .kafka_option("ssl.key.location", "/no/such/key.pem")
                    .kafka_option("ssl.key.password", SECRET),
            ),
            hides: Some(SECRET),
            names: "ssl.key",
        },
        ConfigCase {
            name: "bad SASL mechanism with a password",
            text: render(
                good()
                    .kafka_option("security.protocol", "sasl_plaintext")
                    .kafka_option("sasl.mechanism", "NOPE")
                    .kafka_option("sasl.password", SECRET),
            ),
            hides: Some(SECRET),
            names: "sasl.mechanism",
        },
        ConfigCase {
            name: "TOML syntax error on a secret's line",
            text: format!(
                "{}\n[kafka.more]\n\"sasl.password\" = \"{SECRET}\n",
                render(good())
            ),
            hides: Some(SECRET),
            names: "burrow.toml",
        },
    ];
    let mut misses = Vec::new();
    for case in &cases {
        let path = dir.path().join("burrow.toml");
        std::fs::write(&path, &case.text)?;
        for command in ["validate", "run"] {
            let output = std::process::Command::new(burrow_bin()?)
                .args([command, "--config"])
                .arg(&path)
                .env_remove("RUST_LOG")
                .output()?;
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let leaked = case.hides.is_some_and(|secret| printed.contains(secret));
            if output.status.success() || !printed.contains(case.names) || leaked {
                misses.push(format!(
                    "{} ({command}): exit {}, expected `{}` named{} in:\n{}",
                    case.name,
                    output.status,
                    case.names,
                    if leaked { " and the secret hidden" } else { "" },
                    tail(&printed)
                ));
            }
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {} cases missed:\n{}",
        misses.len(),
        cases.len(),
        misses.join("\n")
    );
    Ok(())
}

/// What must become of one message.
#[derive(Debug, Clone)]
enum Expect {
    /// Emitted to the output topic (and not dead-lettered).
    Forwarded,
    /// Committed without output or dead letter.
    Committed,
    /// Dead-lettered once, the error containing this text, after this many attempts.
    DeadLettered(&'static str, Option<u32>),
}

/// One data or fault case: the record (its id header is added) and its outcome.
struct Case {
    name: &'static str,
    record: Out,
    expect: Expect,
}

/// Tags `record` with its case number; a chaos `payload` becomes `{"id":N}`, because chaos
/// emits the value alone and the id must survive the emit.
fn with_id(mut record: Out, id: usize) -> Out {
    if record.value.as_deref() == Some(b"payload".as_slice()) {
        record.value = Some(format!(r#"{{"id":{id}}}"#).into_bytes());
    }
    record.header(ID_HEADER, id.to_string())
}

/// Data a producer can send (through json-validate) and faults a plugin can raise (chaos):
/// each ends as documented — forwarded, committed, or dead-lettered once with the reason and
/// attempt count — and neither tenant halts or stalls: both commit to the end.
#[test]
fn bad_data_and_plugin_faults_each_end_as_documented() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let names = [
        "data-in",
        "data-out",
        "data-dlq",
        "faults-in",
        "faults-out",
        "faults-dlq",
    ]
    .map(unique);
    let [
        data_in,
        data_out,
        data_dlq,
        faults_in,
        faults_out,
        faults_dlq,
    ] = &names;
    for topic in &names {
        kafka::create_topic(broker, topic, 2)?;
    }
    let (data_group, faults_group) = (unique("data"), unique("faults"));
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .pool("max_retries", 2u32)
        .pool("retry_backoff_base", "10ms")
        .pool("max_consecutive_errors", 1000u32)
        .tenant(
            Tenant::new(
                "data",
                &data_group,
                &[data_in],
                &plugin_path("json-validate")?,
            )
            .output(data_out)
            .dead_letters(data_dlq)
            .config("output-topic", data_out),
        )
        .tenant(
            Tenant::new(
                "faults",
                &faults_group,
                &[faults_in],
                &plugin_path("chaos")?,
            )
            .output(faults_out)
            .dead_letters(faults_dlq)
            .limit("timeout", "300ms")
            .limit("memory", "32MiB"),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(900_000));
    let data = vec![
        Case {
            name: "a JSON object",
            record: Out::value(r#"{"ok":true}"#),
            expect: Expect::Forwarded,
        },
        Case {
            name: "a 900 kB JSON object",
            record: Out::value(big),
            expect: Expect::Forwarded,
        },
        Case {
            name: "no key, a null header value",
            record: Out {
                headers: vec![("h".into(), None)],
                ..Out::value("{}")
            },
            expect: Expect::Forwarded,
        },
        Case {
            name: "a header value that is not UTF-8",
            record: Out::value("{}").header("bin", vec![0xff, 0x00, 0xfe]),
            expect: Expect::Forwarded,
        },
        Case {
            name: "a null value",
            record: Out::default(),
            expect: Expect::DeadLettered("not valid JSON", Some(1)),
        },
        Case {
            name: "an empty value",
            record: Out::value(""),
            expect: Expect::DeadLettered("EOF while parsing", Some(1)),
        },
        Case {
            name: "a value that is not UTF-8",
            record: Out::value(vec![0xff, 0xfe, 0x7b]),
            expect: Expect::DeadLettered("not UTF-8", Some(1)),
        },
        Case {
            name: "a JSON array",
            record: Out::value("[1,2]"),
            expect: Expect::DeadLettered("found an array", Some(1)),
        },
        Case {
            name: "truncated JSON",
            record: Out::value(r#"{"a":"#),
            expect: Expect::DeadLettered("not valid JSON", Some(1)),
        },
        Case {
            name: "JSON with trailing bytes",
            record: Out::value("{} x"),
            expect: Expect::DeadLettered("trailing characters", Some(1)),
        },
    ];
    let act = |action: &str| Out::value("payload").action(action);
    let faults = vec![
        Case {
            name: "a plugin that commits",
            record: act("commit"),
            expect: Expect::Committed,
        },
        Case {
            name: "a plugin that emits",
            record: act(&format!("emit:{faults_out}")),
            expect: Expect::Forwarded,
        },
        Case {
            name: "retry once, then commit",
            record: act("retry-then-commit:1"),
            expect: Expect::Committed,
        },
        Case {
            name: "a plugin that fails",
            record: act("fail"),
            expect: Expect::DeadLettered("chaos: asked to fail", Some(1)),
        },
        Case {
            name: "a plugin that always retries",
            record: act("retry"),
            expect: Expect::DeadLettered("plugin asked to retry", Some(3)),
        },
        Case {
            name: "a trap (panic)",
            record: act("trap"),
            expect: Expect::DeadLettered("plugin trapped", Some(3)),
        },
        Case {
            name: "an endless loop (deadline)",
            record: act("loop"),
            expect: Expect::DeadLettered("past its deadline of 300ms", Some(3)),
        },
        Case {
            name: "memory exhausted (cap)",
            record: act("oom"),
            expect: Expect::DeadLettered("exceeded its memory cap", Some(3)),
        },
        Case {
            name: "an emit to a topic not allowed",
            record: act("emit:elsewhere"),
            expect: Expect::DeadLettered("not in this tenant's output_topics", Some(1)),
        },
        Case {
            name: "an unknown action",
            record: act("explode"),
            expect: Expect::DeadLettered("unknown action", Some(1)),
        },
        Case {
            name: "an action that is not UTF-8",
            record: Out::value("p").header("burrow-action", vec![0xff]),
            expect: Expect::DeadLettered("not UTF-8", Some(1)),
        },
        Case {
            name: "a log line with a newline",
            record: act("log:warn:first\nsecond"),
            expect: Expect::Committed,
        },
        Case {
            name: "a busy plugin within its deadline",
            record: act("sleep:50"),
            expect: Expect::Committed,
        },
    ];

    let mut misses = Vec::new();
    for (cases, input, output, dlq, group) in [
        (&data, data_in, data_out, data_dlq, &data_group),
        (&faults, faults_in, faults_out, faults_dlq, &faults_group),
    ] {
        let records: Vec<Out> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| with_id(c.record.clone(), i))
            .collect();
        let positions = kafka::produce(broker, input, &records)?;
        kafka::wait_committed(broker, group, input, &kafka::ends_of(&positions))?;
        let forwarded = cases
            .iter()
            .filter(|c| matches!(c.expect, Expect::Forwarded))
            .count();
        let dead = cases
            .iter()
            .filter(|c| matches!(c.expect, Expect::DeadLettered(..)))
            .count();
        let read = |topic: &str, n: usize| -> anyhow::Result<BTreeMap<u64, Vec<Record>>> {
            let mut reader = Reader::new(broker, topic)?;
            reader.read_at_least(n)?;
            reader.settle(Duration::from_secs(1))?;
            let mut by_id: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
            for r in reader.records {
                by_id.entry(r.id().unwrap_or(u64::MAX)).or_default().push(r);
            }
            Ok(by_id)
        };
        let (out, dead_letters) = (read(output, forwarded)?, read(dlq, dead)?);
        for (i, case) in cases.iter().enumerate() {
            let id = i as u64;
            let (o, d) = (
                out.get(&id).map_or(0, Vec::len),
                dead_letters.get(&id).map_or(&[][..], Vec::as_slice),
            );
            let miss = match &case.expect {
                Expect::Forwarded => (o != 1 || !d.is_empty())
                    .then(|| format!("{o} outputs, {} dead letters", d.len())),
                Expect::Committed => (o != 0 || !d.is_empty())
                    .then(|| format!("{o} outputs, {} dead letters", d.len())),
                Expect::DeadLettered(text, attempts) => match d {
                    [letter] if o == 0 => {
                        let error = letter.header("burrow.error").unwrap_or_default();
                        let tries = letter
                            .header("burrow.attempts")
                            .and_then(|a| a.parse::<u32>().ok());
                        (!error.contains(text) || attempts.is_some_and(|a| tries != Some(a)))
                            .then(|| format!("error {error:?} after {tries:?} attempts"))
                    }
                    _ => Some(format!("{o} outputs, {} dead letters", d.len())),
                },
            };
            if let Some(miss) = miss {
                misses.push(format!(
                    "{}: expected {:?}, got {miss}",
                    case.name, case.expect
                ));
            }
        }
    }
    let status = burrow.terminate()?;
    assert!(
        misses.is_empty(),
        "{} cases missed:\n{}",
        misses.len(),
        misses.join("\n")
    );
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A dead letter is the original record: a null value stays null (not `""`), a null header
/// value stays null, and `burrow.*` headers the input already carried do not survive beside
/// the host's own — each `burrow.*` header appears once, with the host's value.
#[test]
fn dead_letters_keep_nulls_and_the_hosts_headers_win() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, dlq) = (unique("nulls-in"), unique("nulls-dlq"));
    kafka::create_topics(broker, &[(&input, 1), (&dlq, 1)])?;
    let group = unique("nulls");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(Tenant::new("nulls", &group, &[&input], &plugin_path("chaos")?).dead_letters(&dlq))
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;
    let null_value = Out {
        value: None,
        headers: vec![("maybe".into(), None)],
        ..Out::default()
    }
    .action("fail")
    .header(ID_HEADER, "0");
    let forged = Out::value("v")
        .action("fail")
        .header("burrow.error", "forged")
        .header("burrow.tenant", "someone-else")
        .header(ID_HEADER, "1");
    let positions = kafka::produce(broker, &input, &[null_value, forged])?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;
    let dead = kafka::read_exactly_after(broker, &dlq, 2)?;
    let by_id: BTreeMap<u64, &Record> = dead.iter().filter_map(|r| Some((r.id()?, r))).collect();
    let null = by_id
        .get(&0)
        .ok_or_else(|| anyhow::anyhow!("no dead letter for the null value"))?;
    assert_eq!(null.value, None, "the null value became {:?}", null.value);
    assert!(
        null.headers
            .iter()
            .any(|(k, v)| k == "maybe" && v.is_none()),
        "the null header value changed: {:?}",
        null.headers
    );
    let forged = by_id
        .get(&1)
        .ok_or_else(|| anyhow::anyhow!("no dead letter for the forged one"))?;
    for (name, value) in [
        ("burrow.error", "chaos: asked to fail"),
        ("burrow.tenant", "nulls"),
    ] {
        assert_eq!(
            forged.header_count(name),
            1,
            "{name} in {:?}",
            forged.headers
        );
        assert_eq!(forged.header(name).as_deref(), Some(value));
    }
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
