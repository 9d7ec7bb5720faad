//! `burrow_pool::kafka::inspect` on the mock cluster: what it reports is what the broker holds.

use std::collections::BTreeMap;

use burrow_e2e::broker::Broker;
use burrow_e2e::kafka::{self, Out};
use burrow_pool::kafka::inspect::{InspectError, Inspector};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

/// A two-partition topic holding 10 records on partition 0 and 4 on partition 1, and a group
/// that has committed offset 6 on partition 0 and nothing on partition 1.
fn topic_and_group() -> anyhow::Result<Broker> {
    let broker = Broker::mock(&[("inspected", 2)])?;
    let records: Vec<Out> = (0..14)
        .map(|i| Out::value(format!("{i}")).partition(if i < 10 { 0 } else { 1 }))
        .collect();
    kafka::produce(&broker, "inspected", &records)?;
    let member: BaseConsumer = broker
        .client()
        .set("group.id", "inspected-group")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("inspected", 0, Offset::Offset(6))?;
    member.commit(&tpl, CommitMode::Sync)?;
    Ok(broker)
}

/// End offsets and the record count are what was produced, per partition and in all.
#[test]
fn end_offsets_and_record_count_are_what_the_topic_holds() -> anyhow::Result<()> {
    let broker = topic_and_group()?;
    let inspector = Inspector::new(&broker.client())?;
    assert_eq!(inspector.partitions("inspected")?, [0, 1]);
    assert_eq!(
        inspector.end_offsets("inspected")?,
        BTreeMap::from([(0, 10), (1, 4)])
    );
    assert_eq!(inspector.record_count("inspected")?, 14);
    Ok(())
}

/// A group's committed offsets leave out partitions it never committed, and its lag counts
/// those from the first record held: what a lag alert relies on.
#[test]
fn committed_offsets_and_lag_are_the_groups() -> anyhow::Result<()> {
    let broker = topic_and_group()?;
    let inspector = Inspector::for_group(&broker.client(), "inspected-group")?;
    assert_eq!(inspector.committed("inspected")?, BTreeMap::from([(0, 6)]));
    assert_eq!(
        inspector.lag("inspected")?,
        BTreeMap::from([(0, 4), (1, 4)])
    );
    Ok(())
}

/// A topic that does not exist, and committed offsets asked of an inspector without a group,
/// are errors that say so, not empty answers that look like "nothing to do".
#[test]
fn a_missing_topic_or_group_is_an_error_not_an_empty_answer() -> anyhow::Result<()> {
    let broker = topic_and_group()?;
    let inspector = Inspector::new(&broker.client())?;
    assert!(matches!(
        inspector.end_offsets("no-such-topic"),
        Err(InspectError::UnknownTopic(t)) if t == "no-such-topic"
    ));
    assert!(matches!(
        inspector.committed("inspected"),
        Err(InspectError::NoGroup)
    ));
    Ok(())
}
