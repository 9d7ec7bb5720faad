//! A runaway plugin is stopped by its deadline, memory cap or fuel, and the same worker goes on
//! serving on a fresh instance: a Rust plugin and a Python one alike.

use crate::support;

use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use burrow::wasm::{CallError, Deployment, Limits, Outcome};
use support::{Chaos, call_error, chaos, outcome, worker};

support::chaos_tests!(
    an_instance_is_reused_across_messages,
    an_endless_loop_times_out_then_a_fresh_instance_serves,
    a_call_blocked_in_a_host_call_times_out_then_a_fresh_instance_serves,
    a_short_blocking_call_within_the_deadline_commits,
    memory_growth_past_the_cap_is_stopped_then_a_fresh_instance_serves,
    fuel_runs_out_then_a_fresh_instance_serves,
    fuel_is_refilled_for_every_call,
    a_cap_too_small_to_start_is_an_instantiate_error,
);

/// Bounds a call that should end at a 200 ms deadline: only a hang gets anywhere near it.
const HANG: Duration = Duration::from_secs(30);

fn limited(
    plugin: Chaos,
    limits: Limits,
) -> anyhow::Result<(
    std::sync::Arc<burrow::wasm::DeploymentSlot>,
    burrow::wasm::PluginInstance,
)> {
    Ok(worker(
        Deployment::new(plugin.plugin()?).with_limits(limits),
    ))
}

/// A healthy instance is reused: many messages, one instantiation.
fn an_instance_is_reused_across_messages(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = limited(plugin, Limits::default())?;
    for _ in 0..5 {
        assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    }
    assert_eq!(worker.instantiations(), 1);
    Ok(())
}

/// `loop` never returns: the deadline stops it, and the next message runs on a new instance.
fn an_endless_loop_times_out_then_a_fresh_instance_serves(plugin: Chaos) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(200);
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            timeout,
            ..Limits::default()
        },
    )?;
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(
        call_error(&mut worker, &chaos("loop"))?,
        CallError::Timeout { limit: timeout }
    );
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// `block:60000` sits in a WASI clock poll, inside the host, out of reach of the epoch check:
/// the deadline still ends the call as a timeout, and the next message runs on a new instance.
fn a_call_blocked_in_a_host_call_times_out_then_a_fresh_instance_serves(
    plugin: Chaos,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(200);
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            timeout,
            ..Limits::default()
        },
    )?;
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    // On another thread so that a hang fails the test (after a bound far above the deadline)
    // instead of hanging it.
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let blocked = call_error(&mut worker, &chaos("block:60000"));
        let _ = done.send((worker, blocked));
    });
    let (mut worker, blocked) = result
        .recv_timeout(HANG)
        .context("a blocked call did not return")?;
    assert_eq!(blocked?, CallError::Timeout { limit: timeout });
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// A `block` shorter than the deadline is an ordinary call: it commits, on the same instance.
fn a_short_blocking_call_within_the_deadline_commits(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = limited(plugin, Limits::default())?;
    assert_eq!(outcome(&mut worker, &chaos("block:10"))?, Outcome::Commit);
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 1);
    Ok(())
}

/// `oom` grows memory without end: the cap stops it, and the next message runs on a new
/// instance.
fn memory_growth_past_the_cap_is_stopped_then_a_fresh_instance_serves(
    plugin: Chaos,
) -> anyhow::Result<()> {
    let memory = 16 * 1024 * 1024;
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            memory,
            ..Limits::default()
        },
    )?;
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(
        call_error(&mut worker, &chaos("oom"))?,
        CallError::MemoryExceeded { limit: memory }
    );
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// With fuel set, an endless loop runs dry before any deadline, and the worker recovers.
fn fuel_runs_out_then_a_fresh_instance_serves(plugin: Chaos) -> anyhow::Result<()> {
    let fuel = 10_000_000;
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            fuel: Some(fuel),
            timeout: Duration::from_secs(600),
            ..Limits::default()
        },
    )?;
    assert_eq!(
        call_error(&mut worker, &chaos("loop"))?,
        CallError::FuelExhausted { limit: fuel }
    );
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    Ok(())
}

/// Fuel is per call: many cheap calls under a small budget never run dry.
fn fuel_is_refilled_for_every_call(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            fuel: Some(1_000_000),
            ..Limits::default()
        },
    )?;
    for _ in 0..20 {
        assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    }
    Ok(())
}

/// A cap below what the plugin needs to start is an instantiation error, not a crash.
fn a_cap_too_small_to_start_is_an_instantiate_error(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = limited(
        plugin,
        Limits {
            memory: 64 * 1024,
            ..Limits::default()
        },
    )?;
    let err = call_error(&mut worker, &chaos("commit"))?;
    assert!(matches!(err, CallError::Instantiate(_)), "{err:?}");
    Ok(())
}
