//! A candidate version in shadow, on the real broker, through the real binary: it runs on every
//! message beside the live version, its differences are counted exactly and described on the
//! diff topic, and nothing of its own reaches any topic.

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::{Burrow, metric};
use burrow_e2e::{unique, wait_for};

const PARTITIONS: i32 = 4;
const MESSAGES: u64 = 500;

/// Live: passthrough commits everything. Candidate: json-validate, which fails the tenth of
/// the messages that are not JSON. The shadow counts exactly 450 agreements and 50 outcome
/// differences, each described once on the diff topic; the live version commits all 500; the
/// dead-letter topic stays empty (the candidate's failures have no effect).
#[test]
fn a_shadow_counts_every_difference_and_has_no_effect() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, dlq, diffs) = (
        unique("shadow-in"),
        unique("shadow-dlq"),
        unique("shadow-diffs"),
    );
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&dlq, 1), (&diffs, 1)])?;
    let group = unique("shadow");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("orders", &group, &[&input], &plugin_path("passthrough")?)
                .dead_letters(&dlq)
                .rollout(&plugin_path("json-validate")?, "shadow")
                .diff_topic(&diffs),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let records: Vec<Out> = (0..MESSAGES)
        .map(|id| {
            if id % 10 == 0 {
                Out::value("not json").key(format!("k{id}"))
            } else {
                Out::numbered(id)
            }
        })
        .collect();
    let positions = kafka::produce(broker, &input, &records)?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;

    let results = |burrow: &Burrow| -> anyhow::Result<serde_json::Value> {
        Ok(burrow.tenant("orders")?["rollout"]["results"].clone())
    };
    wait_for("the shadow to compare every message", || {
        let r = results(&burrow)?;
        let seen: u64 = r
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0);
        Ok((seen >= MESSAGES).then_some(()))
    })?;
    let r = results(&burrow)?;
    assert_eq!(r["agree"], 450, "{r}");
    assert_eq!(r["outcome"], 50, "{r}");
    assert_eq!(r["skipped"], 0, "{r}");
    assert_eq!(r["emits"], 0, "{r}");
    let rollout = burrow.tenant("orders")?["rollout"].clone();
    let sample = &rollout["differing_samples"][0];
    assert_eq!(sample["live"]["outcome"], "commit", "{rollout}");
    assert_eq!(sample["candidate"]["outcome"], "fail", "{rollout}");

    let metrics = burrow.metrics()?;
    let shadow = |result: &str| {
        metric(
            &metrics,
            "burrow_shadow_messages_total",
            &[("tenant", "orders"), ("result", result)],
        )
    };
    assert_eq!(shadow("agree"), Some(450.0), "{metrics}");
    assert_eq!(shadow("outcome"), Some(50.0), "{metrics}");

    // Each difference described once on the diff topic: the ids that are not JSON.
    let described = kafka::read_exactly_after(broker, &diffs, 50)?;
    let mut offsets: Vec<(String, i64)> = described
        .iter()
        .map(|r| {
            let sample: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .expect("a JSON description");
            assert_eq!(sample["difference"], "outcome", "{sample}");
            assert_eq!(sample["candidate"]["outcome"], "fail", "{sample}");
            (
                sample["partition"].to_string(),
                sample["offset"].as_i64().expect("an offset"),
            )
        })
        .collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), 50, "each difference once");

    // The live version decided: every message committed, nothing dead-lettered.
    assert_eq!(burrow.tenant("orders")?["pool"]["messages_failed"], 0);
    assert!(
        kafka::end_offsets(broker, &dlq)?
            .values()
            .all(|&end| end == 0),
        "the candidate's failures reached the dead-letter topic"
    );
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A canary on half the keys, for real: live json-validate forwards its messages to the output
/// topic, the candidate (passthrough) commits its own without emitting. Every message is
/// committed once; each key's messages went to one version only (all of them in the output, or
/// none); both versions served some keys; the counts add up.
#[test]
fn a_canary_serves_its_share_of_keys_and_never_splits_one() -> anyhow::Result<()> {
    const KEYS: u64 = 40;
    let broker = Broker::shared()?;
    let (input, output, dlq) = (
        unique("canary-in"),
        unique("canary-out"),
        unique("canary-dlq"),
    );
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&output, 1), (&dlq, 1)])?;
    let group = unique("canary");
    let dir = tempfile::tempdir()?;
    let mut tenant = Tenant::new("orders", &group, &[&input], &plugin_path("json-validate")?)
        .dead_letters(&dlq)
        .output(&output)
        .config("output-topic", &output)
        .rollout(&plugin_path("passthrough")?, "canary");
    tenant.rollout_share = Some(0.5);
    let config = HostConfig::new(broker).tenant(tenant).write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let records: Vec<Out> = (0..MESSAGES)
        .map(|id| Out::numbered(id).key(format!("key{}", id % KEYS)))
        .collect();
    let positions = kafka::produce(broker, &input, &records)?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;

    let rollout = burrow.tenant("orders")?["rollout"].clone();
    let (live, candidate) = (
        rollout["messages"]["live"].as_u64().unwrap_or(0),
        rollout["messages"]["candidate"].as_u64().unwrap_or(0),
    );
    assert_eq!(live + candidate, MESSAGES, "{rollout}");
    assert!(live > 0 && candidate > 0, "both versions serve: {rollout}");

    // The output holds exactly the live version's messages: whole keys, each once.
    let forwarded = kafka::read_exactly_after(broker, &output, live as usize)?;
    let mut per_key: std::collections::BTreeMap<String, u64> = Default::default();
    for record in &forwarded {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        *per_key.entry(key).or_default() += 1;
    }
    for (key, n) in &per_key {
        let k: u64 = key.trim_start_matches("key").parse()?;
        let produced = (0..MESSAGES).filter(|id| id % KEYS == k).count() as u64;
        assert_eq!(*n, produced, "key {key} split between the versions");
    }
    assert!(
        (per_key.len() as u64) < KEYS,
        "some keys went to the candidate"
    );
    assert_eq!(burrow.tenant("orders")?["pool"]["messages_failed"], 0);
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
