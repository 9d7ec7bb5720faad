//! `burrow replay` on the real broker: a range of a tenant's input through its plugin and a
//! candidate, an exact report of the differences, and nothing touched — no output, no dead
//! letters, no offsets committed for the tenant's group.

use std::path::Path;
use std::process::{Command, Output};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Out};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::burrow_bin;
use burrow_e2e::unique;

const PARTITIONS: i32 = 4;

/// 100 records: ids 0..100, every tenth not JSON.
fn records() -> Vec<Out> {
    (0..100)
        .map(|id| {
            if id % 10 == 0 {
                Out::value("not json").key(format!("k{id}"))
            } else {
                Out::numbered(id)
            }
        })
        .collect()
}

fn replay(config: &Path, candidate: &Path, extra: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(burrow_bin()?)
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--plugin")
        .arg(candidate)
        .args(["--from", "2026-01-01T00:00Z"])
        .args(extra)
        .output()?)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_replay_reports_every_difference_and_touches_nothing() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let (input, output, dlq) = (
        unique("replay-in"),
        unique("replay-out"),
        unique("replay-dlq"),
    );
    kafka::create_topics(broker, &[(&input, PARTITIONS), (&output, 1), (&dlq, 1)])?;
    kafka::produce(broker, &input, &records())?;
    let group = unique("replay");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("orders", &group, &[&input], &plugin_path("json-validate")?)
                .dead_letters(&dlq)
                .output(&output)
                .config("output-topic", &output),
        )
        .write(dir.path())?;

    // json-validate forwards the 90 JSON objects and fails the 10 others; passthrough commits
    // all 100 and emits nothing.
    let out = replay(&config, &plugin_path("passthrough")?, &["--fail-on-diff"])?;
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("replay of tenant orders: 100 records"),
        "{report}"
    );
    assert!(
        report.contains("live:      100 records: 90 commit, 10 fail"),
        "{report}"
    );
    assert!(
        report.contains("candidate: 100 records: 100 commit"),
        "{report}"
    );
    assert!(
        report.contains("100 records differ (emits 90, outcome 10)"),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("100 records differ between the versions"),
        "{stderr}"
    );

    // The same version against itself: no difference, and --fail-on-diff passes.
    let same = replay(&config, &plugin_path("json-validate")?, &["--fail-on-diff"])?;
    assert!(same.status.success(), "{}", stdout(&same));
    assert!(
        stdout(&same).contains("no differences"),
        "{}",
        stdout(&same)
    );

    // --count stops early; --to before the records were written reads none.
    let some = replay(&config, &plugin_path("passthrough")?, &["--count", "25"])?;
    assert!(stdout(&some).contains(": 25 records"), "{}", stdout(&some));
    let none = replay(
        &config,
        &plugin_path("passthrough")?,
        &["--to", "2026-01-02T00:00Z"],
    )?;
    assert!(stdout(&none).contains(": 0 records"), "{}", stdout(&none));

    // Nothing produced, nothing dead-lettered, nothing committed for the tenant's group.
    assert!(
        kafka::end_offsets(broker, &output)?
            .values()
            .all(|&end| end == 0),
        "the replay produced output"
    );
    assert!(
        kafka::end_offsets(broker, &dlq)?
            .values()
            .all(|&end| end == 0),
        "the replay dead-lettered"
    );
    assert!(
        kafka::committed(broker, &group, &input)?.is_empty(),
        "the replay committed offsets for the tenant's group"
    );
    Ok(())
}
