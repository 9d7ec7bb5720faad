//! Hot swap under load: the config file is rewritten to name another plugin while messages flow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out, Position, Reader, positions_by_id};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::{unique, wait_until};

const BATCH: u64 = 200;

/// Rewriting the config to point the tenant at another plugin while a producer keeps sending:
/// every message is dead-lettered (both plugins fail these values), none is lost, the early
/// ones ran on the old plugin, and every message produced after `/stats` showed the new plugin
/// ran on the new one (the dead letter's `burrow.plugin.name` says which).
#[test]
fn rewriting_the_config_to_a_new_plugin_under_load_loses_nothing() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, dlq) = (unique("swap-in"), unique("swap-dlq"));
    kafka::create_topics(broker, &[(&input, 8), (&dlq, 4)])?;
    let group = unique("swap");
    let dir = tempfile::tempdir()?;
    // chaos fails `burrow-action: fail`; json-validate fails a value that is not JSON.
    let tenant = |plugin: &str| -> anyhow::Result<Tenant> {
        Ok(
            Tenant::new("swap", &group, &[&input], &plugin_path(plugin)?)
                .dead_letters(&dlq)
                .pool("max_consecutive_errors", 1_000_000u32),
        )
    };
    let config = HostConfig::new(broker).tenant(tenant("chaos")?);
    let path = config.write(dir.path())?;
    let mut burrow = Burrow::start(&path)?;
    burrow.wait_ready()?;

    // The producer: batches of not-JSON values with `fail`, until told to stop. `issued` moves
    // before a batch is sent and `next_id` once it is acknowledged: a batch being sent when the
    // swap shows may reach the old plugin, so "after the swap" starts at `issued`.
    let next_id = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = std::thread::spawn({
        let (next_id, issued, stop, input) = (
            Arc::clone(&next_id),
            Arc::clone(&issued),
            Arc::clone(&stop),
            input.clone(),
        );
        move || -> anyhow::Result<BTreeMap<u64, Position>> {
            let mut produced = BTreeMap::new();
            while !stop.load(Ordering::SeqCst) {
                let first = next_id.load(Ordering::SeqCst);
                issued.store(first + BATCH, Ordering::SeqCst);
                let records: Vec<Out> = (first..first + BATCH)
                    .map(|id| {
                        Out::value(format!("not json {id}"))
                            .key(format!("k{id}"))
                            .header(kafka::ID_HEADER, id.to_string())
                            .action("fail")
                    })
                    .collect();
                let positions = kafka::produce(broker, &input, &records)?;
                produced.extend(positions_by_id(&records, &positions));
                next_id.store(first + BATCH, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(produced)
        }
    });

    let mut dead = Reader::new(broker, &dlq)?;
    dead.read_at_least((5 * BATCH) as usize)?;
    let mut swapped = config.clone();
    if let Some(t) = swapped.tenant_mut("swap") {
        t.plugin = plugin_path("json-validate")?;
    }
    swapped.write(dir.path())?;
    wait_until("/stats to show json-validate running", || {
        Ok(burrow.tenant("swap")?["plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("json-validate")))
    })?;
    let after_swap = issued.load(Ordering::SeqCst);
    wait_until("five more batches after the swap", || {
        Ok(next_id.load(Ordering::SeqCst) >= after_swap + 5 * BATCH)
    })?;
    stop.store(true, Ordering::SeqCst);
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let ends = kafka::ends_of(&produced.values().copied().collect::<Vec<_>>());
    kafka::wait_committed(broker, &group, &input, &ends)?;
    dead.read_ids(&produced.keys().copied().collect())?;
    dead.settle(Duration::from_secs(1))?;

    let mut by_plugin: BTreeMap<String, usize> = BTreeMap::new();
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for record in &dead.records {
        let id = record.id().unwrap_or(u64::MAX);
        let plugin = record.header("burrow.plugin.name").unwrap_or_default();
        *by_plugin.entry(plugin.clone()).or_default() += 1;
        *copies.entry(id).or_default() += 1;
        if id >= after_swap {
            assert_eq!(
                plugin, "json-validate",
                "id {id} was sent after the swap (seen at id {after_swap}): {record:?}"
            );
        }
    }
    println!(
        "{} produced, swap seen at id {after_swap}, dead letters by plugin: {by_plugin:?}",
        produced.len()
    );
    let lost: Vec<&u64> = produced
        .keys()
        .filter(|id| !copies.contains_key(id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        by_plugin.get("chaos").is_some_and(|&n| n > 0),
        "{by_plugin:?}"
    );
    let twice: Vec<_> = copies.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "a swap must not rerun a message: {twice:?}"
    );
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
