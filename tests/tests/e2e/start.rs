//! A tenant's start through the real binary: what it waits for is said, in `/readyz`, `/stats`
//! and the log, and bounded by `start_timeout` (issue 18, finding 9).
//!
//! Finding 9: an exactly-once member stayed up for minutes with 0 partitions, 0 rebalances and
//! not one log line, `/readyz` saying only "no partitions assigned yet". What it waited for was
//! its group's join, not its transactions (they were initialised in 80 ms). Tansu 0.6.0
//! completes a join with the group's earlier members in it whether they rejoined or not, and
//! keeps one that has since left as the leader of every generation after: the joining member's
//! `JoinGroup` names the departed member as leader, its `SyncGroup` fails "rebalance in
//! progress" 5 s later, and so on for as long as it was watched (minutes), librdkafka saying so
//! at DEBUG only. The finding's run met it when the new member's `init_transactions` fenced an
//! older member with the same `instance_id`, whose tenant halted and left the group just as the
//! new one joined;
//! [`a_member_that_joins_while_the_group_leader_leaves_says_so_and_halts_at_start_timeout`]
//! reproduces it on Tansu with a member that holds a join up and then leaves.
//!
//! The other tests make each wait on librdkafka's mock cluster (in this process, reached by the
//! binary over TCP), where faults are injected: the group's `SyncGroup` refused as Tansu
//! refuses it, and the transaction coordinator's `InitProducerId` refused as a coordinator
//! that is still loading refuses it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Pipeline, Tenant};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::wait_for;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;

/// More refusals than any test lasts: each try takes a round trip and a backoff.
const REFUSALS: usize = 100_000;

/// `/readyz`'s reasons now.
fn reasons(host: &Burrow) -> anyhow::Result<Vec<String>> {
    let (_, body) = host.get("/readyz")?;
    let readiness: Value = serde_json::from_str(&body).context("/readyz is JSON")?;
    Ok(readiness["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect())
}

/// Waits until one of `/readyz`'s reasons contains `text`; returns it.
fn reason_containing(host: &Burrow, text: &str) -> anyhow::Result<String> {
    wait_for(&format!("/readyz to say {text:?}"), || {
        Ok(reasons(host)?.into_iter().find(|r| r.contains(text)))
    })
}

/// Waits until the log has a line whose message is `message`; returns it.
fn log_line(host: &Burrow, message: &str) -> anyhow::Result<Value> {
    wait_for(&format!("a {message:?} log line"), || {
        Ok(host.log_lines(message).into_iter().next())
    })
}

/// A passthrough tenant `name` reading `input` in group `{name}-group`, on `kafka`.
fn tenant(name: &str, input: &str) -> anyhow::Result<Tenant> {
    Ok(Tenant::new(
        name,
        &format!("{name}-group"),
        &[input],
        &plugin_path("passthrough")?,
    )
    .on_failure("skip"))
}

/// Writes `config` in `dir` and runs the binary on it, named `instance`.
fn start(config: &HostConfig, dir: &Path, instance: &str) -> anyhow::Result<Burrow> {
    Burrow::start_with(&config.write(dir)?, &[("BURROW__INSTANCE_ID", instance)])
}

/// A mock cluster whose group coordinator answers every `SyncGroup` "rebalance in progress",
/// as Tansu answers a member whose group's leader left mid-rebalance.
fn mock_refusing_sync(input: &str) -> anyhow::Result<Broker> {
    let kafka = Broker::mock(&[(input, 2)])?;
    kafka.on_mock(|mock| {
        mock.request_errors(
            RDKafkaApiKey::SyncGroup,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; REFUSALS],
        );
    })?;
    Ok(kafka)
}

/// A member whose group never completes its join says so while it waits: `/readyz` names the
/// group and how long it has waited of its `start_timeout`, `/stats` has the phase, and a WARN
/// line says what it waits for and what to check. (It used to say "no partitions assigned yet"
/// and log nothing.)
#[test]
fn a_member_that_cannot_join_its_group_says_what_it_waits_for() -> anyhow::Result<()> {
    let kafka = mock_refusing_sync("unjoined-in")?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&kafka).tenant(tenant("unjoined", "unjoined-in")?);
    let host = start(&config, dir.path(), "a")?;

    let reason = reason_containing(&host, "tenant unjoined is starting")?;
    assert!(
        reason.starts_with(
            "tenant unjoined is starting: joining consumer group \"unjoined-group\": no partition \
             assignment yet (waiting "
        ) && reason.ends_with("of start_timeout 10m)"),
        "{reason}"
    );
    let start = &host.tenant("unjoined")?["start"];
    assert_eq!(start["phase"], "joining", "{start}");
    assert_eq!(start["start_timeout_seconds"], 600, "{start}");

    let warning = log_line(&host, "tenant still starting")?;
    let fields = &warning["fields"];
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(fields["tenant"], "unjoined", "{warning}");
    assert!(
        fields["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("joining consumer group \"unjoined-group\""))
            && fields["check"]
                .as_str()
                .is_some_and(|c| c.contains("--describe --group unjoined-group")),
        "{warning}"
    );
    let status = host.terminate()?;
    anyhow::ensure!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// ...and one still waiting at its `start_timeout` halts with an error that names the group,
/// the bound and what to check, in `/readyz` and an ERROR line; the process goes on.
#[test]
fn a_member_that_cannot_join_within_start_timeout_halts_saying_why() -> anyhow::Result<()> {
    let kafka = mock_refusing_sync("late-in")?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&kafka)
        .kafka_option("session.timeout.ms", "6000")
        .pool("start_timeout", "8s")
        .tenant(tenant("late", "late-in")?);
    let host = start(&config, dir.path(), "a")?;

    let reason = reason_containing(&host, "tenant late halted")?;
    assert!(
        reason.starts_with(
            "tenant late halted: did not join consumer group \"late-group\" within \
             start_timeout (8s): no partition assignment came; check the group's other members"
        ),
        "{reason}"
    );
    let halted = log_line(&host, "tenant halted")?;
    assert_eq!(halted["level"], "ERROR", "{halted}");
    assert!(
        halted["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("did not join consumer group \"late-group\"")),
        "{halted}"
    );
    assert_eq!(host.tenant("late")?["start"]["phase"], "joining");
    let status = host.terminate()?;
    anyhow::ensure!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// An exactly-once member whose broker does not initialise its transactions says so, naming
/// its `transactional.id` and the coordinator's last answer, and halts at `start_timeout`;
/// its admin listener answers all along. (The wait used to happen before the listener was up.)
#[test]
fn an_exactly_once_member_whose_transactions_never_initialise_says_so_and_halts()
-> anyhow::Result<()> {
    let kafka = Broker::mock(&[("txn-in", 2), ("txn-out", 2)])?;
    kafka.on_mock(|mock| {
        mock.request_errors(
            RDKafkaApiKey::InitProducerId,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; REFUSALS],
        );
    })?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&kafka)
        .kafka_option("session.timeout.ms", "6000")
        .pool("start_timeout", "15s")
        .tenant(
            tenant("txn", "txn-in")?
                .delivery("exactly-once")
                .output("txn-out"),
        );
    let host = start(&config, dir.path(), "east-1")?;

    let reason = reason_containing(&host, "tenant txn is starting")?;
    assert!(
        reason.starts_with(
            "tenant txn is starting: initialising transactions for transactional.id \
             \"burrow-txn-group-east-1\" (waiting "
        ),
        "{reason}"
    );
    assert_eq!(host.tenant("txn")?["start"]["phase"], "transactions");
    let warning = log_line(&host, "tenant still starting")?;
    assert!(
        warning["fields"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("transactional.id \"burrow-txn-group-east-1\"")),
        "{warning}"
    );

    let reason = reason_containing(&host, "tenant txn halted")?;
    assert!(
        reason.starts_with(
            "tenant txn halted: did not initialise transactions for transactional.id \
             \"burrow-txn-group-east-1\" within start_timeout (15s)"
        ) && reason.contains("transaction coordinator"),
        "{reason}"
    );
    let status = host.terminate()?;
    anyhow::ensure!(status.success(), "burrow exited with {status}");
    Ok(())
}

/// A member its group gives no partition (more members than partitions) has started: its
/// start ends with the empty assignment, it is never halted for it, and `/readyz` says it has
/// no partitions rather than that it is starting.
#[test]
fn a_member_given_no_partition_has_started() -> anyhow::Result<()> {
    let kafka = Broker::mock(&[("spare-in", 1)])?;
    let dir = tempfile::tempdir()?;
    // The mock's rebalance waits a session timeout less a second for its members.
    let config = HostConfig::new(&kafka)
        .kafka_option("session.timeout.ms", "6000")
        .tenant(tenant("spare", "spare-in")?);
    let mut first = start(&config, dir.path(), "a")?;
    first.wait_ready()?;
    let second = start(&config, dir.path(), "b")?;

    let joined = |host: &Burrow| -> anyhow::Result<Option<Value>> {
        let tenant = host.tenant("spare")?;
        Ok((tenant["start"]["phase"] == "started").then_some(tenant))
    };
    let a = wait_for("the first member to have started", || joined(&first))?;
    let b = wait_for("the second member to have started", || joined(&second))?;
    let partitions = |t: &Value| t["pool"]["assigned_partitions"].as_u64();
    let mut counts = [partitions(&a), partitions(&b)];
    counts.sort();
    assert_eq!(counts, [Some(0), Some(1)], "{a}\n{b}");
    let idle = if partitions(&a) == Some(0) {
        &first
    } else {
        &second
    };
    let reason = reason_containing(idle, "tenant spare")?;
    assert_eq!(reason, "tenant spare has no partitions assigned yet");
    for host in [first, second] {
        let status = host.terminate()?;
        anyhow::ensure!(status.success(), "burrow exited with {status}");
    }
    Ok(())
}

/// Finding 9 on the real broker: a member joins while the group's only other member does not
/// rejoin, and then leaves. A broker that follows the protocol waits for it, then completes the
/// join without it: the new member starts. Tansu 0.6.0 completes the join with the other member
/// as its leader and keeps it as the leader once it has left; no assignment ever comes, and the
/// new member says so in `/readyz` and a WARN line, then halts at its `start_timeout` saying why.
#[test]
fn a_member_that_joins_while_the_group_leader_leaves_says_so_and_halts_at_start_timeout()
-> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let s = Pipeline::create(broker, "leaving", (4, 1), |tenant| {
        tenant.pool("start_timeout", "20s")
    })?;
    // The group's member first: a plain consumer that stops polling once it has its
    // partitions. It cannot serve the rebalance the next member's join starts, so that join
    // waits for it, until librdkafka makes it leave the group for not polling
    // (`max.poll.interval.ms`, 8 s later): a leave in the middle of the join.
    let leaving: BaseConsumer = broker
        .client()
        .set("group.id", &s.group)
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "8000")
        .create()?;
    leaving.subscribe(&[&s.input])?;
    wait_for("the first member's assignment", || {
        let _ = leaving.poll(Duration::from_millis(100));
        Ok((leaving.assignment()?.count() > 0).then_some(()))
    })?;
    let host = Burrow::start(&s.config)?;

    // The start ends either way; what was said on the way is checked after.
    let mut said_waiting = None;
    let ended = wait_for("the member to start or halt", || {
        for reason in reasons(&host)? {
            if reason.contains("is starting: joining consumer group") {
                said_waiting = Some(reason);
            } else if reason.contains("halted") {
                return Ok(Some(Err(reason)));
            }
        }
        let start = &host.tenant("leaving")?["start"];
        Ok((start["phase"] == "started").then(|| Ok(start.clone())))
    })?;
    match ended {
        Ok(start) => {
            println!("the broker completed the join: {start}");
            log_line(&host, "tenant joined its consumer group")?;
        }
        Err(halted) => {
            println!("the join never completed: {halted}");
            let waiting = said_waiting.context("/readyz never said the member was joining")?;
            assert!(
                waiting.contains(&format!("joining consumer group {:?}", s.group)),
                "{waiting}"
            );
            assert!(
                halted.starts_with(&format!(
                    "tenant leaving halted: did not join consumer group {:?} within \
                     start_timeout (20s)",
                    s.group
                )),
                "{halted}"
            );
            let warning = log_line(&host, "tenant still starting")?;
            assert_eq!(warning["level"], "WARN", "{warning}");
            log_line(&host, "tenant halted")?;
        }
    }
    let status = host.terminate()?;
    anyhow::ensure!(status.success(), "burrow exited with {status}");
    // Dropping a consumer closes it, and the close polls until the group answers its leave.
    // This member was evicted for not polling, and Tansu may never answer (a clean-clone run
    // hung here), so it is closed on a thread the test does not wait for.
    std::thread::spawn(move || drop(leaving));
    Ok(())
}
