//! The short chaos run inside `make test`.

use burrow_e2e::broker::Broker;
use burrow_e2e::chaos::{self, Injection, Options};

/// 20,000 messages through the real binary while every kind of fault is injected at least
/// once (plugin traps, deadline overruns, calls blocked in a host call, failures; `kill -9` and restart, a host joining and
/// leaving, a hot swap, a broker stall): every message ends on the output or dead-letter topic.
#[test]
fn a_short_chaos_run_loses_nothing() -> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let verdict = chaos::run(broker, &Options::short())?;
    println!("{verdict}");
    let mut kinds = vec![
        Injection::Kill9,
        Injection::Join,
        Injection::Leave,
        Injection::Swap,
    ];
    if broker.pid().is_some() {
        // A broker from BURROW_TEST_BROKERS is not ours to stall.
        kinds.push(Injection::BrokerStall);
    }
    for kind in kinds {
        assert!(
            verdict.injections.get(&kind).is_some_and(|&n| n > 0),
            "no {kind:?} injected"
        );
    }
    assert_eq!(
        verdict.plugin_faults.len(),
        4,
        "{:?}",
        verdict.plugin_faults
    );
    verdict.check()
}
