//! One compiled plugin serves many tenants, each with its own settings.

use crate::support;

use std::collections::BTreeMap;

use burrow::wasm::{Deployment, Outcome};
use support::{Chaos, chaos, fail_reason, load, message, processed, runtime, worker};

support::chaos_tests!(
    each_deployment_sees_its_own_config,
    emitted_records_belong_to_one_call,
);

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Two deployments of the same plugin answer `config(key)` from their own settings.
fn each_deployment_sees_its_own_config(plugin: Chaos) -> anyhow::Result<()> {
    let plugin = plugin.plugin()?;
    let (_a, mut tenant_a) =
        worker(Deployment::new(plugin.clone()).with_config(settings(&[("colour", "red")])));
    let (_b, mut tenant_b) =
        worker(Deployment::new(plugin).with_config(settings(&[("colour", "blue")])));
    let ask = chaos("config:colour");
    assert_eq!(fail_reason(&mut tenant_a, &ask)?, "config colour = red");
    assert_eq!(fail_reason(&mut tenant_b, &ask)?, "config colour = blue");
    assert_eq!(
        fail_reason(&mut tenant_a, &chaos("config:size"))?,
        "config size = <none>"
    );
    Ok(())
}

/// json-validate forwards to the tenant's `output-topic`, and emits nothing without one.
#[test]
fn json_validate_emits_to_the_configured_topic() -> anyhow::Result<()> {
    let runtime = runtime()?;
    let plugin = load(&runtime, "json-validate")?;
    let (_a, mut with_topic) =
        worker(Deployment::new(plugin.clone()).with_config(settings(&[("output-topic", "valid")])));
    let (_b, mut without) = worker(Deployment::new(plugin));
    let msg = message(br#"{"id": 7}"#);

    let done = processed(&mut with_topic, &msg)?;
    assert_eq!(done.outcome, Outcome::Commit);
    assert_eq!(done.emitted.len(), 1);
    assert_eq!(done.emitted[0].topic, "valid");
    assert_eq!(done.emitted[0].value, msg.value);
    assert_eq!(done.emitted[0].key, msg.key);

    let done = processed(&mut without, &msg)?;
    assert_eq!(done.outcome, Outcome::Commit);
    assert!(done.emitted.is_empty());
    Ok(())
}

/// Records emitted in one call are not carried over to the next.
fn emitted_records_belong_to_one_call(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(processed(&mut worker, &chaos("emit:out"))?.emitted.len(), 1);
    assert!(processed(&mut worker, &chaos("commit"))?.emitted.is_empty());
    Ok(())
}
