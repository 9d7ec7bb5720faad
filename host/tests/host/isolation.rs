//! Tenants are isolated: one tenant's plugin looping on every message does not stop another
//! tenant in the same host.

use crate::support;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{
    Out, committed, end_offsets, numbered, produce, read_exactly_after, wait_all_committed,
};
use burrow_e2e::plugins::plugin_path;
use support::Host;

/// Messages the looping tenant gets. Each is tried 3 times and held 200 ms each time by its
/// deadline, on 2 workers: about 6 s of work (wall-clock deadlines, so however busy the
/// machine), against a fraction of a second for the healthy tenant's 500 passthrough messages.
const LOOPS: usize = 20;
const HEALTHY: usize = 500;

/// While tenant A's plugin loops on every message (held to its 200 ms deadline, retried, then
/// dead-lettered), tenant B in the same host commits all of its messages; A's loops end as
/// dead letters whose reason is the deadline.
#[test]
fn a_looping_tenant_does_not_stop_another_tenant() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("a-in", 2), ("a-dlq", 1), ("b-in", 4), ("b-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&kafka)
        .pool("retry_backoff_base", "10ms")
        .pool("retry_backoff_max", "50ms")
        .pool("max_consecutive_errors", 1000u32)
        .tenant(
            Tenant::new("a", "a-group", &["a-in"], &plugin_path("chaos")?)
                .dead_letters("a-dlq")
                .limit("timeout", "200ms")
                .pool("workers", 2u32)
                .pool("max_retries", 2u32),
        )
        .tenant(
            Tenant::new("b", "b-group", &["b-in"], &plugin_path("passthrough")?)
                .dead_letters("b-dlq"),
        );
    let host = Host::start(&config.write(dir.path())?)?;

    produce(&kafka, "a-in", &vec![Out::chaos("loop"); LOOPS])?;
    produce(&kafka, "b-in", &numbered(0..HEALTHY as u64, None))?;

    wait_all_committed(&kafka, "b-group", "b-in")?;
    let a_committed: i64 = committed(&kafka, "a-group", "a-in")?.values().sum();
    assert!(
        a_committed < LOOPS as i64,
        "B finished while A was still working through its loops (A committed {a_committed})"
    );

    let letters = read_exactly_after(&kafka, "a-dlq", LOOPS)?;
    wait_all_committed(&kafka, "a-group", "a-in")?;
    host.stop()?;
    for letter in &letters {
        let error = letter.header("burrow.error").unwrap_or_default();
        assert!(error.contains("deadline"), "a timeout reason: {error:?}");
        assert_eq!(letter.header("burrow.attempts").as_deref(), Some("3"));
    }
    let b_end: i64 = end_offsets(&kafka, "b-in")?.values().sum();
    assert_eq!(b_end, HEALTHY as i64);
    Ok(())
}
