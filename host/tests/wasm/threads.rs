//! Plugin threads: each worker's calls run on a named OS thread of its own, end at their
//! deadline even when the guest blocks, and cannot starve another tenant's calls.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use burrow::wasm::{
    CallContext, CallError, CallResult, Deployment, DeploymentSlot, Limits, Message, Outcome,
    PluginThread,
};
use support::{chaos, load, runtime};

/// Bounds a wait that should take far less: only a hang gets anywhere near it.
const HANG: Duration = Duration::from_secs(30);

fn slot(limits: Limits) -> anyhow::Result<Arc<DeploymentSlot>> {
    let runtime = runtime()?;
    let deployment = Deployment::new(load(&runtime, "chaos")?).with_limits(limits);
    Ok(Arc::new(DeploymentSlot::new(deployment)))
}

/// A slot whose calls may block for ten minutes before their deadline.
fn patient_slot() -> anyhow::Result<Arc<DeploymentSlot>> {
    slot(Limits {
        timeout: Duration::from_secs(600),
        ..Limits::default()
    })
}

async fn call(thread: &PluginThread, msg: Message) -> anyhow::Result<CallResult> {
    let context = CallContext::for_message("tenant-a", &msg);
    let result = tokio::time::timeout(HANG, thread.call(context, msg))
        .await
        .context("the call did not return")??;
    Ok(result)
}

async fn outcome(thread: &PluginThread, msg: Message) -> anyhow::Result<Outcome> {
    Ok(call(thread, msg)
        .await?
        .result
        .context("call failed")?
        .outcome)
}

/// Whether this process has a thread named `name` (Linux keeps the first 15 bytes).
fn thread_exists(name: &str) -> anyhow::Result<bool> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn wait_until_gone(name: &str) -> anyhow::Result<()> {
    tokio::time::timeout(HANG, async {
        while thread_exists(name)? {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("thread {name} still running"))?
}

/// Calls from async code that use WASI (stdout, clocks, a blocking sleep, files) are served.
#[tokio::test]
async fn a_plugin_thread_serves_calls_that_use_wasi() -> anyhow::Result<()> {
    let thread = PluginThread::spawn("wasi-user", slot(Limits::default())?)?;
    assert_eq!(
        outcome(&thread, chaos("print:from a plugin thread")).await?,
        Outcome::Commit
    );
    assert_eq!(outcome(&thread, chaos("sleep:1")).await?, Outcome::Commit);
    assert_eq!(outcome(&thread, chaos("block:1")).await?, Outcome::Commit);
    let read = outcome(&thread, chaos("read-file:/etc/passwd")).await?;
    assert!(
        matches!(&read, Outcome::Fail(r) if r.contains(": error:")),
        "{read:?}"
    );
    Ok(())
}

/// A call blocked in a host call ends at its deadline as a timeout, and the same thread serves
/// the next call on a fresh instance.
#[tokio::test]
async fn a_blocked_call_times_out_and_the_thread_serves_the_next() -> anyhow::Result<()> {
    let timeout = Duration::from_millis(200);
    let thread = PluginThread::spawn(
        "blocked",
        slot(Limits {
            timeout,
            ..Limits::default()
        })?,
    )?;
    let blocked = call(&thread, chaos("block:60000")).await?;
    assert_eq!(blocked.result, Err(CallError::Timeout { limit: timeout }));
    assert_eq!(outcome(&thread, chaos("commit")).await?, Outcome::Commit);
    Ok(())
}

/// Sixteen workers of one tenant all blocked (for ten minutes) do not hold up another tenant:
/// its calls complete, on a runtime whose shared blocking pool has only two threads — which
/// calls made through `spawn_blocking` would have used up.
#[test]
fn one_tenants_blocked_calls_do_not_starve_another() -> anyhow::Result<()> {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()?;
    executor.block_on(async {
        let stuck = patient_slot()?;
        let mut blocked = Vec::new();
        for i in 0..16 {
            let thread = PluginThread::spawn(format!("stuck-{i}"), Arc::clone(&stuck))?;
            blocked.push(tokio::spawn(async move {
                let msg = chaos("block:600000");
                thread
                    .call(CallContext::for_message("stuck", &msg), msg)
                    .await
            }));
        }
        let healthy = PluginThread::spawn("healthy", slot(Limits::default())?)?;
        for _ in 0..20 {
            assert_eq!(outcome(&healthy, chaos("commit")).await?, Outcome::Commit);
        }
        // Still blocked: the other tenant's calls completed while all sixteen were held.
        assert!(blocked.iter().all(|task| !task.is_finished()));
        for task in &blocked {
            task.abort();
        }
        anyhow::Ok(())
    })
}

/// Starts thread `name` on a slot with a ten-minute deadline, gives it `action`, abandons the
/// call and drops the handle; returns once the thread is gone (fails after [`HANG`]).
async fn abandon_mid_call(name: &'static str, action: &'static str) -> anyhow::Result<()> {
    let thread = PluginThread::spawn(name, patient_slot()?)?;
    assert_eq!(outcome(&thread, chaos("commit")).await?, Outcome::Commit);
    assert!(thread_exists(name)?);
    let task = tokio::spawn(async move {
        let msg = chaos(action);
        thread
            .call(CallContext::for_message("tenant-a", &msg), msg)
            .await
    });
    // Let the call reach the thread; the test holds whether it did or not.
    tokio::time::sleep(Duration::from_millis(50)).await;
    task.abort();
    wait_until_gone(name).await
}

/// Dropping a thread's handle stops the thread, even in the middle of a call blocked in a host
/// call for ten minutes: an abandoned call is cut short, not left to run beside its
/// replacement.
#[tokio::test]
async fn dropping_the_handle_stops_the_thread_even_mid_call() -> anyhow::Result<()> {
    abandon_mid_call("bp-drop-block", "block:600000").await
}

/// The same for a guest spinning in its own code, with no host call to park in: the epoch
/// makes it yield, and the abandoned call is dropped there.
#[tokio::test]
async fn dropping_the_handle_stops_a_spinning_call() -> anyhow::Result<()> {
    abandon_mid_call("bp-drop-spin", "loop").await
}

/// A batch of calls crosses to the plugin thread once and comes back with one result per
/// message, in order; a trap or a deadline overrun in the middle costs only its own message —
/// the calls after it run on a fresh instance and commit.
#[tokio::test]
async fn a_batch_returns_each_calls_own_result_past_a_trap_and_a_timeout() -> anyhow::Result<()> {
    let thread = PluginThread::spawn(
        "batch-user",
        slot(Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        })?,
    )?;
    let actions = ["commit", "trap", "commit", "fail", "loop", "commit"];
    let calls = actions
        .iter()
        .map(|action| {
            let msg = chaos(action);
            (CallContext::for_message("tenant-a", &msg), msg)
        })
        .collect();
    let results = tokio::time::timeout(HANG, thread.call_batch(calls))
        .await
        .context("the batch did not return")??;
    assert_eq!(results.len(), actions.len());
    let summary: Vec<String> = results
        .into_iter()
        .map(|r| match r.result {
            Ok(processed) => format!("{:?}", processed.outcome),
            Err(CallError::Trap { .. }) => "trap".into(),
            Err(CallError::Timeout { .. }) => "timeout".into(),
            Err(other) => format!("{other}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "Outcome::Commit",
            "trap",
            "Outcome::Commit",
            "Outcome::Fail(\"chaos: asked to fail\")",
            "timeout",
            "Outcome::Commit"
        ]
    );
    Ok(())
}
