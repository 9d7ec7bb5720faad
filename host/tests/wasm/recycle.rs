//! Instance recycling: a worker replaces its instance after N messages, or once its linear
//! memory has grown past a mark, so a guest whose heap only grows stays inside its cap.

use crate::support;

use std::sync::Arc;

use burrow::wasm::{Deployment, DeploymentSlot, Limits, Outcome, PluginInstance, Recycle};
use support::{chaos, load, outcome, runtime};

fn chaos_instance(limits: Limits, recycle: Recycle) -> anyhow::Result<PluginInstance> {
    let deployment = Deployment::new(load(&runtime()?, "chaos")?)
        .with_limits(limits)
        .with_recycling(recycle);
    Ok(PluginInstance::new(Arc::new(DeploymentSlot::new(
        deployment,
    ))))
}

const MIB: u64 = 1024 * 1024;

/// After every 3 messages the next call gets a fresh instance: 7 calls, 3 instances.
#[test]
fn an_instance_is_replaced_after_n_messages() -> anyhow::Result<()> {
    let mut instance = chaos_instance(
        Limits::default(),
        Recycle {
            after_messages: Some(3),
            above_memory: None,
        },
    )?;
    for _ in 0..7 {
        assert_eq!(outcome(&mut instance, &chaos("commit"))?, Outcome::Commit);
    }
    assert_eq!(instance.instantiations(), 3);
    assert_eq!(instance.recycled(), 2);
    Ok(())
}

/// A plugin that keeps 1 MiB per message would hit a 32 MiB cap within 32 messages; with a
/// 16 MiB mark its instances are replaced in time and all 100 messages commit.
#[test]
fn a_leaking_guest_stays_inside_its_cap() -> anyhow::Result<()> {
    let limits = Limits {
        memory: 32 * MIB,
        ..Limits::default()
    };
    let leak = chaos("leak:1024");

    let mut kept = chaos_instance(limits, Recycle::default())?;
    let outcomes: Vec<_> = (0..100).map(|_| outcome(&mut kept, &leak).ok()).collect();
    assert!(
        outcomes.contains(&None),
        "without recycling the leak must reach the cap (else this test proves nothing)"
    );

    let mut recycled = chaos_instance(
        limits,
        Recycle {
            after_messages: None,
            above_memory: Some(16 * MIB),
        },
    )?;
    for i in 0..100 {
        assert_eq!(
            outcome(&mut recycled, &leak)?,
            Outcome::Commit,
            "message {i}"
        );
    }
    assert!(recycled.recycled() >= 5, "{}", recycled.recycled());
    Ok(())
}

/// A worker renews a due instance between calls, after answering: the instance's own
/// count of messages starts over every 2.
#[test]
fn a_worker_renews_between_calls() -> anyhow::Result<()> {
    let deployment = Deployment::new(load(&runtime()?, "chaos")?).with_recycling(Recycle {
        after_messages: Some(2),
        above_memory: None,
    });
    let slot = Arc::new(DeploymentSlot::new(deployment));
    let thread = burrow::wasm::PluginWorker::new("recycle-test", Arc::clone(&slot));
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut counts = Vec::new();
    for _ in 0..5 {
        let msg = chaos("count");
        let context = burrow::wasm::CallContext::for_message("tenant", &msg);
        let result = executor.block_on(thread.call(context, msg))?;
        counts.push(result.result?.outcome);
    }
    let count = |n: u64| Outcome::Fail(format!("count {n}"));
    assert_eq!(counts, [count(1), count(2), count(1), count(2), count(1)]);
    Ok(())
}
