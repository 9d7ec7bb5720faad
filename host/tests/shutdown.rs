//! A clean run and stop is quiet: nothing above INFO in the log, from Burrow or from rdkafka.

#[path = "host/support.rs"]
mod support;

use std::sync::{Arc, Mutex};

use burrow_e2e::broker::Broker;
use burrow_e2e::config::{HostConfig, Tenant};
use burrow_e2e::kafka::{Out, produce, wait_all_committed};
use burrow_e2e::plugins::plugin_path;
use support::Host;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Every WARN or ERROR event seen, as `LEVEL target: message fields`.
#[derive(Clone, Default)]
struct Loud(Arc<Mutex<Vec<String>>>);

/// Collects an event's fields as text.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Loud {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= Level::WARN {
            let mut text = Text(format!("{} {}:", meta.level(), meta.target()));
            event.record(&mut text);
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(text.0);
        }
    }
}

/// A tenant that consumes, dead-letters and commits, then stops on request, logs nothing above
/// INFO: in particular no rdkafka ERROR from closing its consumer twice.
#[test]
fn a_clean_run_and_stop_logs_nothing_above_info() -> anyhow::Result<()> {
    let loud = Loud::default();
    // Installed before the helpers' own subscriber (theirs then finds one set); also takes
    // rdkafka's `log` records.
    tracing_subscriber::registry()
        .with(loud.clone())
        .try_init()?;

    let kafka = Broker::mock(&[("quiet-in", 2), ("quiet-dlq", 1)])?;
    let dir = tempfile::tempdir()?;
    let config = HostConfig::new(&kafka).pool("max_retries", 0u32).tenant(
        Tenant::new(
            "quiet",
            "quiet-group",
            &["quiet-in"],
            &plugin_path("chaos")?,
        )
        .dead_letters("quiet-dlq"),
    );
    let host = Host::start(&config.write(dir.path())?)?;
    let records = [
        Out::chaos("commit"),
        Out::chaos("fail"),
        Out::value("plain"),
    ];
    produce(&kafka, "quiet-in", &records)?;
    wait_all_committed(&kafka, "quiet-group", "quiet-in")?;
    host.stop()?;

    let loud = loud.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // The dead letter is a permanent failure the pool reports at WARN: that one is expected.
    let unexpected: Vec<&String> = loud
        .iter()
        .filter(|line| !line.contains("permanent"))
        .collect();
    assert!(unexpected.is_empty(), "nothing above INFO: {unexpected:#?}");
    Ok(())
}
