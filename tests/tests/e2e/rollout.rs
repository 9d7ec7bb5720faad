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
    let tenant = Tenant::new("orders", &group, &[&input], &plugin_path("json-validate")?)
        .dead_letters(&dlq)
        .output(&output)
        .config("output-topic", &output)
        .rollout(&plugin_path("passthrough")?, "canary")
        .rollout_key("share", 0.5);
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

/// The id of a forwarded `Out::numbered` record, from its JSON value.
fn id_of(record: &kafka::Record) -> anyhow::Result<u64> {
    let value: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
    value["id"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no id in {}", record.value_text()))
}

/// A canary whose candidate traps on every message, with key ordering: its rules roll it back
/// by themselves (trap rate far above the live version's), the messages it trapped on are
/// retried on the live version, and nothing is lost: every message is forwarded exactly once,
/// each key's in the order produced, and none is dead-lettered. `/stats` and the metrics say
/// what ended the canary and why.
#[test]
fn a_canary_that_traps_is_rolled_back_by_its_rules_and_nothing_is_lost() -> anyhow::Result<()> {
    const KEYS: u64 = 40;
    const N: u64 = 400;
    let broker = Broker::shared()?;
    let (input, output, dlq) = (
        unique("rollback-in"),
        unique("rollback-out"),
        unique("rollback-dlq"),
    );
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&output, 1), (&dlq, 1)])?;
    let group = unique("rollback");
    let dir = tempfile::tempdir()?;
    let tenant = Tenant::new("orders", &group, &[&input], &plugin_path("json-validate")?)
        .dead_letters(&dlq)
        .output(&output)
        .config("output-topic", &output)
        .pool("ordering", "key")
        // Enough retries, soon enough, that a trapped message is still retrying when the rules
        // have had their look (about a second).
        .pool("max_retries", 30)
        .pool("retry_backoff_base", "20ms")
        .pool("retry_backoff_max", "200ms")
        .rollout(&plugin_path("chaos")?, "canary")
        .rollout_key("share", 0.5)
        .rollout_key("min_messages", 5)
        .rollout_key("promote_after", 1_000_000)
        .rollout_key("rollback_if.trap_rate", 0.2);
    let config = HostConfig::new(broker).tenant(tenant).write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    // json-validate forwards any JSON object; chaos traps on `trap`.
    let records: Vec<Out> = (0..N)
        .map(|id| {
            Out::numbered(id)
                .key(format!("key{}", id % KEYS))
                .action("trap")
        })
        .collect();
    let positions = kafka::produce(broker, &input, &records)?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;

    let rollout = burrow.tenant("orders")?["rollout"].clone();
    assert_eq!(rollout["state"], "rolled-back", "{rollout}");
    assert_eq!(rollout["by"], "rules", "{rollout}");
    let why = rollout["why"].as_str().unwrap_or_default();
    assert!(why.contains("trap rate"), "{rollout}");
    assert!(
        rollout["versions"]["candidate"]["failed_calls"].as_u64() > Some(0),
        "{rollout}"
    );
    let metrics = burrow.metrics()?;
    assert_eq!(
        metric(
            &metrics,
            "burrow_rollout_decisions_total",
            &[("decision", "rolled-back"), ("rule", "trap_rate")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "burrow_rollout_candidate_share", &[]),
        Some(0.0)
    );

    // Every message forwarded by the live version, once, each key in order.
    let forwarded = kafka::read_exactly_after(broker, &output, N as usize)?;
    let mut last: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut seen = std::collections::BTreeSet::new();
    for record in &forwarded {
        let id = id_of(record)?;
        assert!(seen.insert(id), "message {id} forwarded twice");
        if let Some(before) = last.insert(id % KEYS, id) {
            assert!(
                before < id,
                "key{} out of order: {before} then {id}",
                id % KEYS
            );
        }
    }
    assert_eq!(seen.len() as u64, N, "every message forwarded");
    let stats = burrow.tenant("orders")?;
    assert_eq!(stats["pool"]["messages_failed"], 0, "{stats}");
    assert_eq!(
        stats["plugin"]
            .as_str()
            .map(|p| p.starts_with("json-validate")),
        Some(true)
    );
    assert!(
        kafka::end_offsets(broker, &dlq)?
            .values()
            .all(|&end| end == 0),
        "nothing dead-lettered"
    );
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A canary whose candidate holds (json-validate forwarding, against a live passthrough that
/// forwards nothing) is promoted after its message count, as a hot swap: from then on the
/// candidate serves every key, and every message is committed once with nothing failed.
#[test]
fn a_canary_that_holds_is_promoted_and_then_serves_every_key() -> anyhow::Result<()> {
    const KEYS: u64 = 40;
    let broker = Broker::shared()?;
    let (input, output, dlq) = (
        unique("promote-in"),
        unique("promote-out"),
        unique("promote-dlq"),
    );
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&output, 1), (&dlq, 1)])?;
    let group = unique("promote");
    let dir = tempfile::tempdir()?;
    let tenant = Tenant::new("orders", &group, &[&input], &plugin_path("passthrough")?)
        .dead_letters(&dlq)
        .output(&output)
        .config("output-topic", &output)
        .rollout(&plugin_path("json-validate")?, "canary")
        .rollout_key("share", 0.5)
        .rollout_key("min_messages", 10)
        .rollout_key("promote_after", 100)
        .rollout_key("rollback_if.failure_rate", 0.01)
        .rollout_key("rollback_if.trap_rate", 0.01);
    let config = HostConfig::new(broker).tenant(tenant).write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let keyed = |ids: std::ops::Range<u64>| -> Vec<Out> {
        ids.map(|id| Out::numbered(id).key(format!("key{}", id % KEYS)))
            .collect()
    };
    let before = kafka::produce(broker, &input, &keyed(0..MESSAGES))?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&before))?;
    let rollout = wait_for("the canary to be promoted", || {
        let rollout = burrow.tenant("orders")?["rollout"].clone();
        Ok((rollout["state"] == "promoted").then_some(rollout))
    })?;
    assert_eq!(rollout["by"], "rules", "{rollout}");
    let on_candidate = rollout["messages"]["candidate"].as_u64().unwrap_or(0);
    assert!(
        (100..MESSAGES).contains(&on_candidate),
        "the candidate took its share first: {rollout}"
    );
    assert_eq!(
        burrow.tenant("orders")?["plugin"]
            .as_str()
            .map(|p| p.starts_with("json-validate")),
        Some(true)
    );

    // After the promotion, every key's messages run on the candidate: all forwarded.
    let after = kafka::produce(broker, &input, &keyed(MESSAGES..2 * MESSAGES))?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&after))?;
    let forwarded = kafka::read_exactly_after(broker, &output, (on_candidate + MESSAGES) as usize)?;
    let ids: std::collections::BTreeSet<u64> =
        forwarded.iter().map(id_of).collect::<anyhow::Result<_>>()?;
    assert_eq!(ids.len(), forwarded.len(), "nothing forwarded twice");
    assert!(
        (MESSAGES..2 * MESSAGES).all(|id| ids.contains(&id)),
        "every message after the promotion ran on the candidate"
    );
    let stats = burrow.tenant("orders")?;
    assert_eq!(stats["pool"]["messages_failed"], 0, "{stats}");
    assert_eq!(stats["pool"]["messages_processed"], 2 * MESSAGES, "{stats}");
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A rollout added to the config of a running tenant is put in place live, and so is its
/// removal: the tenant is never restarted (its pool's counts run on, its consumer never
/// rebalances), the canary serves and is promoted, and every message is committed once.
#[test]
fn a_rollout_written_into_the_config_is_applied_without_a_restart() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, output) = (unique("live-rollout-in"), unique("live-rollout-out"));
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&output, 1)])?;
    let group = unique("live-rollout");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker).tenant(
        Tenant::new("orders", &group, &[&input], &plugin_path("passthrough")?)
            .on_failure("skip")
            .output(&output)
            .config("output-topic", &output),
    );
    let path = config.write(dir.path())?;
    let mut burrow = Burrow::start(&path)?;
    burrow.wait_ready()?;
    let keyed = |ids: std::ops::Range<u64>| -> Vec<Out> {
        ids.map(|id| Out::numbered(id).key(format!("key{}", id % 40)))
            .collect()
    };
    let first = kafka::produce(broker, &input, &keyed(0..MESSAGES))?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&first))?;
    let rebalances = || -> anyhow::Result<Option<f64>> {
        Ok(metric(&burrow.metrics()?, "burrow_rebalances_total", &[]))
    };
    let rebalances_before = rebalances()?;
    assert!(
        rebalances_before.is_some(),
        "the rebalance count is exported"
    );

    let mut with_canary = config.clone();
    if let Some(t) = with_canary.tenant_mut("orders") {
        *t = t
            .clone()
            .rollout(&plugin_path("json-validate")?, "canary")
            .rollout_key("share", 0.5)
            .rollout_key("min_messages", 10)
            .rollout_key("promote_after", 50);
    }
    with_canary.write(dir.path())?;
    wait_for("/stats to show the canary", || {
        let rollout = burrow.tenant("orders")?["rollout"].clone();
        Ok((rollout["mode"] == "canary").then_some(()))
    })?;
    let second = kafka::produce(broker, &input, &keyed(MESSAGES..2 * MESSAGES))?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&second))?;
    wait_for("the canary to be promoted", || {
        let rollout = burrow.tenant("orders")?["rollout"].clone();
        Ok((rollout["state"] == "promoted").then_some(()))
    })?;

    config.write(dir.path())?;
    wait_for("/stats to show no rollout", || {
        Ok(burrow
            .tenant("orders")?
            .get("rollout")
            .is_none()
            .then_some(()))
    })?;
    let stats = burrow.tenant("orders")?;
    assert_eq!(
        stats["pool"]["messages_processed"],
        2 * MESSAGES,
        "one pool all along: {stats}"
    );
    assert_eq!(stats["pool"]["messages_failed"], 0, "{stats}");
    assert_eq!(
        rebalances()?,
        rebalances_before,
        "the consumer never rebalanced"
    );
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
