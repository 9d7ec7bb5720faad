//! Two tenants in one host on the real broker, one burning CPU in every message: the other's
//! throughput beside it, against its own solo run, is printed (a figure, not a timing
//! assertion; `make bench` B11 measures it properly). What is asserted: every message of both
//! tenants is processed and committed, and the plugin executor's share metrics hold the
//! burning tenant to its cap.

use std::time::Instant;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Reader};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::{Burrow, metric};
use burrow_e2e::unique;

/// The quiet tenant's messages in each run.
const QUIET: u64 = 20_000;
/// The burning tenant's messages: each an endless loop stopped by its fuel, the same CPU work
/// however long it takes (a busy wait of so many milliseconds would do less work the longer
/// the cap holds it back), then dead-lettered.
const BURNING: u64 = 20;
/// The fuel of each of its calls: about 80 ms of CPU here, 1.6 s in all, which at its cap
/// takes at least 6.4 s.
const FUEL: i64 = 1_000_000_000;
/// Its cap, in cores.
const CAP: f64 = 0.25;

/// A quiet tenant (chaos, emitting each message to its output) over a new topic of [`QUIET`]
/// messages: the tenant, its group, its input, where its input ends, and its output.
fn quiet(broker: &Broker) -> anyhow::Result<(Tenant, String, String, Ends, String)> {
    let (input, output, dlq) = (unique("quiet-in"), unique("quiet-out"), unique("quiet-dlq"));
    kafka::create_topics(broker, &[(&input, 4), (&output, 4), (&dlq, 1)])?;
    let records = kafka::numbered(0..QUIET, Some(&format!("emit:{output}")));
    let ends = kafka::ends_of(&kafka::produce(broker, &input, &records)?);
    let group = unique("quiet");
    let tenant = Tenant::new("quiet", &group, &[&input], &plugin_path("chaos")?)
        .output(&output)
        .dead_letters(&dlq);
    Ok((tenant, group, input, ends, output))
}

type Ends = std::collections::BTreeMap<i32, i64>;

/// Runs `config` until the quiet tenant has committed everything; its rate from ready (every
/// tenant assigned) to then, the host, still running, and when it was ready.
fn quiet_rate(
    broker: &Broker,
    config: &std::path::Path,
    group: &str,
    input: &str,
    ends: &Ends,
) -> anyhow::Result<(f64, Burrow, Instant)> {
    let mut host = Burrow::start(config)?;
    host.wait_ready()?;
    let ready = Instant::now();
    kafka::wait_committed(broker, group, input, ends)?;
    Ok((QUIET as f64 / ready.elapsed().as_secs_f64(), host, ready))
}

#[test]
fn a_cpu_burning_neighbour_is_held_to_its_cap_and_nothing_is_lost() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let dir = tempfile::tempdir()?;

    let (alone, group, input, ends, output) = quiet(broker)?;
    let config = HostConfig::new(broker).tenant(alone).write(dir.path())?;
    let (solo, host, _) = quiet_rate(broker, &config, &group, &input, &ends)?;
    Reader::new(broker, &output)?.read_ids(&(0..QUIET).collect())?;
    assert!(host.terminate()?.success());

    let (beside, group, input, ends, output) = quiet(broker)?;
    let (burn_in, burn_dlq) = (unique("burn-in"), unique("burn-dlq"));
    kafka::create_topics(broker, &[(&burn_in, 2), (&burn_dlq, 1)])?;
    let burn_group = unique("burn");
    let burning = kafka::numbered(0..BURNING, Some("loop"));
    let burn_ends = kafka::ends_of(&kafka::produce(broker, &burn_in, &burning)?);
    let config = HostConfig::new(broker)
        .tenant(beside)
        .tenant(
            Tenant::new("burn", &burn_group, &[&burn_in], &plugin_path("chaos")?)
                .dead_letters(&burn_dlq)
                .limit("cpu", CAP)
                .limit("fuel", FUEL)
                .limit("timeout", "60s")
                .pool("max_retries", 0u32)
                .pool("max_consecutive_errors", 1_000u32),
        )
        .write(dir.path())?;
    // The burning tenant runs nothing before it is assigned: its calls all fall after `ready`.
    let (rate, host, ready) = quiet_rate(broker, &config, &group, &input, &ends)?;
    println!(
        "quiet tenant: {solo:.0} msg/s alone, {rate:.0} msg/s beside a CPU-burning one capped at {CAP} cores ({:.2} of its solo rate)",
        rate / solo
    );
    Reader::new(broker, &output)?.read_ids(&(0..QUIET).collect())?;
    kafka::wait_committed(broker, &burn_group, &burn_in, &burn_ends)?;
    let wall = ready.elapsed();
    let dead = kafka::read_exactly_after(broker, &burn_dlq, BURNING as usize)?;
    assert_eq!(
        dead.len(),
        BURNING as usize,
        "one dead letter per burning message"
    );

    let metrics = host.metrics()?;
    let stats = host.stats()?;
    assert!(host.terminate()?.success());
    let seconds = |tenant| {
        metric(
            &metrics,
            "burrow_tenant_cpu_seconds_total",
            &[("tenant", tenant)],
        )
        .unwrap_or(0.0)
    };
    let (quiet_cpu, burn_cpu) = (seconds("quiet"), seconds("burn"));
    println!("plugin CPU: quiet {quiet_cpu:.2} s, burning {burn_cpu:.2} s, in {wall:?}");
    assert!(
        quiet_cpu > 0.0,
        "the quiet tenant's calls were not charged:\n{metrics}"
    );
    // The burning tenant's calls are charged to it, at no more than its cap whatever the quiet
    // tenant leaves idle: at most a tenth above the cap over the whole run, plus a tick's
    // overrun per worker. Uncapped, its loops would take most of both cores.
    assert!(
        burn_cpu > 0.0,
        "the burning tenant was not charged:\n{metrics}"
    );
    let bound = wall.as_secs_f64() * CAP * 1.1 + 10.0 * 0.005;
    assert!(
        burn_cpu <= bound,
        "{burn_cpu:.2} s of plugin CPU in {wall:?} at a cap of {CAP} cores"
    );
    let burn = &stats["tenants"]["burn"]["plugin_cpu"];
    assert_eq!(burn["cap_cores"], CAP, "{stats}");
    assert_eq!(burn["weight"], 1, "{stats}");
    Ok(())
}
