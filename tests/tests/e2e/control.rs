//! The admin's control endpoints on the real binary and broker: a tenant paused over HTTP with
//! the bearer token takes nothing new while it stays in its group, and resumed, processes and
//! commits everything; a canary is promoted by an operator; without the token nothing changes.

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, numbered};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::unique;

const TOKEN: &str = "control-test-token-7f3a";

#[test]
fn a_tenant_paused_with_the_token_takes_nothing_until_resumed() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let input = unique("control-in");
    kafka::create_topic(broker, &input, 4)?;
    let group = unique("control");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("orders", &group, &[&input], &plugin_path("passthrough")?)
                .on_failure("skip"),
        )
        .write(dir.path())?;
    // The token from the environment, as an operator would set it.
    let mut burrow = Burrow::start_with(&config, &[("BURROW__ADMIN__TOKEN", TOKEN)])?;
    burrow.wait_ready()?;

    let pause = "/tenants/orders/pause";
    assert_eq!(burrow.post(pause, None)?.0, 401);
    assert_eq!(burrow.post(pause, Some("wrong"))?.0, 401);
    assert_eq!(burrow.tenant("orders")?["paused"], false);
    assert_eq!(
        burrow.post(pause, Some(TOKEN))?,
        (200, "tenant orders: paused\n".into())
    );
    assert_eq!(burrow.tenant("orders")?["paused"], true);
    assert!(
        !burrow.stderr().contains(TOKEN),
        "the token must never be logged"
    );

    let positions = kafka::produce(broker, &input, &numbered(0..200, None))?;
    // Paused: time enough to fetch and process 200 messages many times over, and none is.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let tenant = burrow.tenant("orders")?;
    assert_eq!(tenant["pool"]["messages_processed"], 0, "{tenant}");
    assert_eq!(
        tenant["pool"]["assigned_partitions"], 4,
        "still in its group: {tenant}"
    );

    assert_eq!(burrow.post("/tenants/orders/resume", Some(TOKEN))?.0, 200);
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;
    assert_eq!(burrow.tenant("orders")?["pool"]["messages_processed"], 200);
    assert_eq!(burrow.post("/tenants/nobody/pause", Some(TOKEN))?.0, 404);
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// An operator ends a canary over HTTP: `promote` with the token makes the candidate the live
/// version at once (no rules configured, so nothing else would), `/stats` says who and the
/// plugin changed; ending it again, or rolling back a tenant without a canary, is refused with
/// 409. Without the token, nothing changes.
#[test]
fn an_operator_promotes_a_canary_with_the_token() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, other_input) = (unique("canary-ctl-in"), unique("plain-ctl-in"));
    let group = unique("canary-ctl");
    kafka::create_topics(broker, &[(&input, 2), (&other_input, 1)])?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("orders", &group, &[&input], &plugin_path("passthrough")?)
                .on_failure("skip")
                .rollout(&plugin_path("chaos")?, "canary")
                .rollout_key("share", 0.5),
        )
        .tenant(
            Tenant::new(
                "plain",
                &unique("plain-ctl"),
                &[&other_input],
                &plugin_path("passthrough")?,
            )
            .on_failure("skip"),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start_with(&config, &[("BURROW__ADMIN__TOKEN", TOKEN)])?;
    burrow.wait_ready()?;

    let promote = "/tenants/orders/promote";
    assert_eq!(burrow.post(promote, None)?.0, 401);
    assert_eq!(burrow.tenant("orders")?["rollout"]["state"], "running");
    assert_eq!(
        burrow.post(promote, Some(TOKEN))?,
        (200, "tenant orders: canary promoted\n".into())
    );
    let tenant = burrow.tenant("orders")?;
    assert_eq!(tenant["rollout"]["state"], "promoted", "{tenant}");
    assert_eq!(tenant["rollout"]["by"], "operator", "{tenant}");
    assert_eq!(
        tenant["plugin"].as_str().map(|p| p.starts_with("chaos")),
        Some(true),
        "{tenant}"
    );
    let (code, body) = burrow.post("/tenants/orders/rollback", Some(TOKEN))?;
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("already ended: promoted by an operator"),
        "{body}"
    );
    let (code, body) = burrow.post("/tenants/plain/rollback", Some(TOKEN))?;
    assert_eq!((code, body.as_str()), (409, "tenant plain has no canary\n"));

    // The promoted version processes every message (chaos commits one without an action).
    let positions = kafka::produce(broker, &input, &numbered(0..100, None))?;
    kafka::wait_committed(broker, &group, &input, &kafka::ends_of(&positions))?;
    assert_eq!(burrow.tenant("orders")?["pool"]["messages_failed"], 0);
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
