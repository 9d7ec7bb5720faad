//! Every compression codec a producer may use on the input topic.

use std::collections::BTreeMap;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, CODECS, Delivery, Reader, positions_by_id};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::unique;

/// Input compressed with none, gzip, snappy, lz4 and zstd (one topic each) is processed — each
/// message emitted once — and every topic is committed to its end.
#[test]
fn every_compression_codec_is_processed_and_committed() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let output = unique("codecs-out");
    kafka::create_topic(broker, &output, 4)?;
    let inputs: Vec<(&str, String)> = CODECS
        .iter()
        .map(|c| (*c, unique(&format!("codec-{c}"))))
        .collect();
    for (_, topic) in &inputs {
        kafka::create_topic(broker, topic, 4)?;
    }
    let group = unique("codecs");
    let dir = tempfile::tempdir()?;
    let topics: Vec<&str> = inputs.iter().map(|(_, t)| t.as_str()).collect();
    let config = HostConfig::new(broker)
        .tenant(
            Tenant::new("codecs", &group, &topics, &plugin_path("chaos")?)
                .output(&output)
                // Nothing here may fail: a failure stops the tenant and the commit wait fails.
                .on_failure("halt"),
        )
        .write(dir.path())?;
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let mut produced = BTreeMap::new();
    let emit = format!("emit:{output}");
    for (i, (codec, topic)) in inputs.iter().enumerate() {
        let first = i as u64 * 1000;
        let records = kafka::numbered(first..first + 300, Some(&emit));
        let positions = kafka::produce_with(broker, topic, &records, codec)?;
        kafka::wait_committed(broker, &group, topic, &kafka::ends_of(&positions))
            .map_err(|e| e.context(format!("{codec}-compressed input")))?;
        produced.extend(positions_by_id(&records, &positions));
    }
    let mut out = Reader::new(broker, &output)?;
    out.read_ids(&produced.keys().copied().collect())?;
    out.settle(Duration::from_secs(1))?;
    let delivery = Delivery::of(&produced, &out.records, &BTreeMap::new());
    delivery.check()?;
    assert_eq!(delivery.duplicates, 0, "no crash, so no message runs twice");
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
