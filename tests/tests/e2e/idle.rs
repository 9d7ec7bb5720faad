//! What a tenant costs when it has nothing to do, through the real binary on the real broker:
//! a tenant that never emits nor dead-letters runs no producer. (rdkafka's producer keeps a
//! polling thread that spins through the last millisecond of each 100 ms poll: about 1% of a
//! core per idle producer, which 500 tenants cannot afford.)

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::unique;

/// The names of `pid`'s threads, as the kernel keeps them (15 bytes at most).
fn thread_names(pid: u32) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Ok(name) = std::fs::read_to_string(task?.path().join("comm")) {
            names.push(name.trim().to_owned());
        }
    }
    Ok(names)
}

/// A passthrough tenant processes and commits its messages without ever making a producer.
#[test]
fn a_tenant_that_never_produces_runs_no_producer() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let dir = tempfile::tempdir()?;
    let topic = unique("idle-in");
    let group = format!("{topic}-g");
    kafka::create_topic(broker, &topic, 2)?;
    let tenant = Tenant::new("quiet", &group, &[&topic], &plugin_path("passthrough")?);
    let config = HostConfig::new(broker).tenant(tenant.on_failure("skip"));
    let host = Burrow::start(&config.write(dir.path())?)?;
    let records: Vec<Out> = (0..100).map(|i| Out::value(format!("m{i}"))).collect();
    let positions = kafka::produce(broker, &topic, &records)?;
    kafka::wait_committed(broker, &group, &topic, &kafka::ends_of(&positions))?;
    let producers: Vec<String> = thread_names(host.pid())?
        .into_iter()
        .filter(|name| name.starts_with("producer poll"))
        .collect();
    assert!(
        producers.is_empty(),
        "a tenant that never produced runs a producer: {producers:?}"
    );
    Ok(())
}
