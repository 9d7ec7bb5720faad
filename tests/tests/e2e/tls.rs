//! The binary on a TLS listener: Tansu with a certificate from a throwaway CA.

use std::collections::BTreeMap;
use std::time::Duration;

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{self, Delivery, Reader, positions_by_id};
use burrow_e2e::plugins::plugin_path;
use burrow_e2e::process::Burrow;
use burrow_e2e::tls::TlsFiles;
use burrow_e2e::unique;

/// With `security.protocol = "ssl"` and `ssl.ca.location` the binary consumes from, emits to
/// and commits on a broker that speaks only TLS.
#[test]
fn the_binary_processes_and_commits_over_tls() -> anyhow::Result<()> {
    let tls = TlsFiles::generate()?;
    // Its own broker: the shared one has no TLS listener. (With BURROW_TEST_BROKERS set this
    // test still starts a Tansu.)
    let broker = Broker::start_tansu(Some(&tls))?;
    let (input, output) = (unique("tls-in"), unique("tls-out"));
    kafka::create_topics(&broker, &[(&input, 4), (&output, 4)])?;
    let group = unique("tls");
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&broker)
        .tenant(
            Tenant::new("tls", &group, &[&input], &plugin_path("chaos")?)
                .output(&output)
                // Nothing here may fail: a failure stops the tenant and the commit wait fails.
                .on_failure("halt"),
        )
        .write(dir.path())?;
    // The port really is TLS-only: a plaintext client gets no metadata from it.
    let plain: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()?;
    use rdkafka::consumer::Consumer as _;
    assert!(
        plain
            .fetch_metadata(None, std::time::Duration::from_secs(3))
            .is_err(),
        "a plaintext client was answered on the TLS port"
    );
    let text = std::fs::read_to_string(&config)?;
    assert!(text.contains(r#""security.protocol" = "ssl""#), "{text}");
    let mut burrow = Burrow::start(&config)?;
    burrow.wait_ready()?;

    let records = kafka::numbered(0..500, Some(&format!("emit:{output}")));
    let positions = kafka::produce(&broker, &input, &records)?;
    kafka::wait_committed(&broker, &group, &input, &kafka::ends_of(&positions))?;
    let produced = positions_by_id(&records, &positions);
    let mut out = Reader::new(&broker, &output)?;
    out.read_ids(&produced.keys().copied().collect())?;
    out.settle(Duration::from_secs(1))?;
    Delivery::of(&produced, &out.records, &BTreeMap::new()).check()?;
    let status = burrow.terminate()?;
    assert!(status.success(), "burrow exited with {status}");
    Ok(())
}
