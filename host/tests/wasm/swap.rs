//! A deployment is swapped while calls run: none fails, the new version answers after the
//! switch, and a version that fails to load leaves the old one serving.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use burrow::wasm::{Deployment, LoadError, Outcome, PluginInstance};
use support::{call, chaos, load, plugin_path, runtime, worker};

/// A thread calls in a loop while the slot switches from passthrough to chaos: every call
/// succeeds, each answer names the version that gave it, and after the switch chaos answers.
#[test]
fn hot_swap_under_load_drops_no_call() -> anyhow::Result<()> {
    let runtime = runtime()?;
    let passthrough = load(&runtime, "passthrough")?;
    let (slot, _) = worker(Deployment::new(passthrough.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let caller = {
        let (slot, calls, stop) = (Arc::clone(&slot), Arc::clone(&calls), Arc::clone(&stop));
        thread::spawn(move || {
            let mut instance = PluginInstance::new(slot);
            // `fail` tells the versions apart: passthrough commits, chaos fails.
            let msg = chaos("fail");
            let mut answers = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let result = call(&mut instance, &msg);
                answers.push((result.plugin.version, result.result));
                calls.fetch_add(1, Ordering::Release);
            }
            answers
        })
    };
    let wait_for_calls = |n: usize| {
        while calls.load(Ordering::Acquire) < n && !caller.is_finished() {
            thread::yield_now();
        }
    };

    wait_for_calls(10);
    let new = slot.upgrade_from_file(&runtime, &plugin_path("chaos")?)?;
    let new_version = new.plugin().version();
    wait_for_calls(calls.load(Ordering::Acquire) + 10);
    stop.store(true, Ordering::Release);
    let answers = caller
        .join()
        .map_err(|_| anyhow::anyhow!("the calling thread panicked"))?;

    let mut seen_new = false;
    for (version, result) in &answers {
        let outcome = &result
            .as_ref()
            .map_err(|e| anyhow::anyhow!("a call failed during the swap: {e}"))?
            .outcome;
        if *version == new_version {
            seen_new = true;
            assert_eq!(*outcome, Outcome::Fail("chaos: asked to fail".into()));
        } else {
            assert!(!seen_new, "the old version answered after the new one");
            assert_eq!(*version, passthrough.version());
            assert_eq!(*outcome, Outcome::Commit);
        }
    }
    assert!(seen_new, "the new version never answered");
    assert_ne!(answers[0].0, new_version, "the old version never answered");
    Ok(())
}

/// The next call on a worker after a swap instantiates the new version.
#[test]
fn a_worker_switches_on_its_next_call() -> anyhow::Result<()> {
    let runtime = runtime()?;
    let (slot, mut worker) = worker(Deployment::new(load(&runtime, "passthrough")?));
    assert_eq!(
        support::outcome(&mut worker, &chaos("fail"))?,
        Outcome::Commit
    );
    let old = slot.swap(slot.current().with_plugin(load(&runtime, "chaos")?));
    assert_eq!(old.plugin().name(), "passthrough");
    let result = call(&mut worker, &chaos("fail"));
    assert_eq!(result.plugin.name.as_ref(), "chaos");
    assert_eq!(
        result.result?.outcome,
        Outcome::Fail("chaos: asked to fail".into())
    );
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// Upgrading to a file that is not a plugin returns the error and keeps the old version.
#[test]
fn a_failed_swap_keeps_the_old_version() -> anyhow::Result<()> {
    let runtime = runtime()?;
    let passthrough = load(&runtime, "passthrough")?;
    let (slot, mut worker) = worker(Deployment::new(passthrough.clone()));
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("passthrough-v2.wasm");
    std::fs::write(&bad, b"not wasm at all")?;

    let err = slot
        .upgrade_from_file(&runtime, &bad)
        .err()
        .ok_or_else(|| anyhow::anyhow!("a bad file was swapped in"))?;
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    assert_eq!(slot.version(), passthrough.version());
    let result = call(&mut worker, &chaos("fail"));
    assert_eq!(result.plugin.version, passthrough.version());
    assert_eq!(result.result?.outcome, Outcome::Commit);
    Ok(())
}
