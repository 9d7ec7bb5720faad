//! Every chaos action maps to the outcome (or call error) the host must see.

mod wasm_support;

use burrow::wasm::{CallError, MAX_PLUGIN_TEXT, Outcome};
use wasm_support::{call_error, chaos, fail_reason, outcome, processed, worker_for};

/// A message without an action header, and `commit`, commit.
#[test]
fn commit_and_no_action_commit() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    assert_eq!(
        outcome(&mut worker, &wasm_support::message(b"x"))?,
        Outcome::Commit
    );
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    Ok(())
}

/// `fail` is a permanent failure carrying the plugin's reason.
#[test]
fn fail_carries_the_reason() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    assert_eq!(
        fail_reason(&mut worker, &chaos("fail"))?,
        "chaos: asked to fail"
    );
    Ok(())
}

/// `retry` has no delay hint, `retry-after:MS` hints MS milliseconds.
#[test]
fn retry_with_and_without_a_hint() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    assert_eq!(outcome(&mut worker, &chaos("retry"))?, Outcome::Retry(None));
    assert_eq!(
        outcome(&mut worker, &chaos("retry-after:250"))?,
        Outcome::Retry(Some(250))
    );
    Ok(())
}

/// The plugin sees the attempt number: `retry-then-commit:2` retries twice, then commits.
#[test]
fn attempt_reaches_the_plugin() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    let mut msg = chaos("retry-then-commit:2");
    let mut outcomes = Vec::new();
    for attempt in 1..=3 {
        msg.attempt = attempt;
        outcomes.push(outcome(&mut worker, &msg)?);
    }
    assert_eq!(
        outcomes,
        [Outcome::Retry(None), Outcome::Retry(None), Outcome::Commit]
    );
    Ok(())
}

/// A guest panic is a trap reported with the panic message, not a host crash; the worker goes
/// on with a fresh instance.
#[test]
fn a_panic_is_a_trap_with_its_message() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    match call_error(&mut worker, &chaos("trap"))? {
        CallError::Trap { message } => assert!(
            message.contains("chaos: asked to trap"),
            "trap message: {message}"
        ),
        other => anyhow::bail!("expected a trap, got {other:?}"),
    }
    // The trapped instance was thrown away; a fresh one serves the next message.
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// `sleep:MS` (a busy-wait well inside the deadline) commits.
#[test]
fn a_short_busy_wait_commits() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    assert_eq!(outcome(&mut worker, &chaos("sleep:10"))?, Outcome::Commit);
    Ok(())
}

/// `emit:TOPIC` commits and hands back the record; the record is the message value.
#[test]
fn emit_returns_the_record_with_the_outcome() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    let done = processed(&mut worker, &chaos("emit:out"))?;
    assert_eq!(done.outcome, Outcome::Commit);
    assert_eq!(done.emitted.len(), 1);
    assert_eq!(done.emitted[0].topic, "out");
    assert_eq!(done.emitted[0].value, b"payload");
    Ok(())
}

/// An unknown action is the plugin's own `fail`, naming it.
#[test]
fn an_unknown_action_fails_naming_it() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    let reason = fail_reason(&mut worker, &chaos("dance"))?;
    assert!(reason.contains("dance"), "{reason}");
    Ok(())
}

/// A `fail` reason is plugin text bound for logs and dead-letter headers: a newline in it is
/// escaped, so it cannot start a forged log line.
#[test]
fn a_fail_reason_is_escaped() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    assert_eq!(
        fail_reason(&mut worker, &chaos("config:a\nINFO forged"))?,
        "config a\\nINFO forged = <none>"
    );
    Ok(())
}

/// A huge `fail` reason is capped at `MAX_PLUGIN_TEXT` bytes, saying how much was cut.
#[test]
fn a_long_fail_reason_is_capped() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    let key = "k".repeat(1 << 20);
    let reason = fail_reason(&mut worker, &chaos(&format!("config:{key}")))?;
    // The plugin's reason is `config KEY = <none>`: 1 MiB + 16 bytes.
    let kept = MAX_PLUGIN_TEXT;
    let cut = (1 << 20) + 16 - kept;
    assert_eq!(
        reason,
        format!("config {}… [{cut} bytes cut]", "k".repeat(kept - 7))
    );
    Ok(())
}
