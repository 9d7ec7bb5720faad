//! Every chaos action maps to the outcome (or call error) the host must see, from the Rust
//! plugin and from its Python twin.

use crate::support;

use burrow::wasm::{CallError, MAX_PLUGIN_TEXT, Outcome};
use support::{Chaos, LogCapture, call_error, chaos, fail_reason, outcome, processed};

support::chaos_tests!(
    commit_and_no_action_commit,
    fail_carries_the_reason,
    retry_with_and_without_a_hint,
    attempt_reaches_the_plugin,
    a_panic_is_a_trap_with_its_message,
    a_short_busy_wait_commits,
    emit_returns_the_record_with_the_outcome,
    an_unknown_action_fails_naming_it,
    a_fail_reason_is_escaped,
    a_long_fail_reason_is_capped,
);

/// A message without an action header, and `commit`, commit.
fn commit_and_no_action_commit(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(
        outcome(&mut worker, &support::message(b"x"))?,
        Outcome::Commit
    );
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    Ok(())
}

/// `fail` is a permanent failure carrying the plugin's reason.
fn fail_carries_the_reason(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(
        fail_reason(&mut worker, &chaos("fail"))?,
        "chaos: asked to fail"
    );
    Ok(())
}

/// `retry` has no delay hint, `retry-after:MS` hints MS milliseconds.
fn retry_with_and_without_a_hint(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(outcome(&mut worker, &chaos("retry"))?, Outcome::Retry(None));
    assert_eq!(
        outcome(&mut worker, &chaos("retry-after:250"))?,
        Outcome::Retry(Some(250))
    );
    Ok(())
}

/// The plugin sees the attempt number: `retry-then-commit:2` retries twice, then commits.
fn attempt_reaches_the_plugin(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
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

/// A guest panic (Rust), or an exception the SDK does not catch (Python: a `BaseException` that
/// is not an `Exception`), is a trap, not a host crash; the worker goes on with a fresh
/// instance, and the guest's own account of it (panic message, traceback) is in the log.
fn a_panic_is_a_trap_with_its_message(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    let err = capture.during(|| call_error(&mut worker, &chaos("trap")))?;
    let CallError::Trap { message } = err else {
        anyhow::bail!("expected a trap, got {err:?}");
    };
    // The host finds why in stderr and puts it in the trap's message: a Rust panic's message,
    // or the exception line of the traceback componentize-py prints before its own panic.
    let why = match plugin {
        Chaos::Rust => "chaos: asked to trap",
        Chaos::Python => "(plugin.Trap: chaos: asked to trap)",
    };
    assert!(message.contains(why), "trap message: {message}");
    let stderr: Vec<String> = capture
        .lines()
        .into_iter()
        .filter(|line| line["fields"]["stream"] == "stderr")
        .filter_map(|line| line["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        stderr
            .iter()
            .any(|line| line.contains("chaos: asked to trap")),
        "stderr: {stderr:#?}"
    );
    // The trapped instance was thrown away; a fresh one serves the next message.
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    assert_eq!(worker.instantiations(), 2);
    Ok(())
}

/// `sleep:MS` (a busy-wait well inside the deadline) commits.
fn a_short_busy_wait_commits(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(outcome(&mut worker, &chaos("sleep:10"))?, Outcome::Commit);
    Ok(())
}

/// `emit:TOPIC` commits and hands back the record; the record is the message value.
fn emit_returns_the_record_with_the_outcome(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let done = processed(&mut worker, &chaos("emit:out"))?;
    assert_eq!(done.outcome, Outcome::Commit);
    assert_eq!(done.emitted.len(), 1);
    assert_eq!(done.emitted[0].topic, "out");
    assert_eq!(done.emitted[0].value, b"payload");
    Ok(())
}

/// An unknown action is the plugin's own `fail`, naming it.
fn an_unknown_action_fails_naming_it(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let reason = fail_reason(&mut worker, &chaos("dance"))?;
    assert!(reason.contains("dance"), "{reason}");
    Ok(())
}

/// A `fail` reason is plugin text bound for logs and dead-letter headers: a newline in it is
/// escaped, so it cannot start a forged log line.
fn a_fail_reason_is_escaped(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(
        fail_reason(&mut worker, &chaos("config:a\nINFO forged"))?,
        "config a\\nINFO forged = <none>"
    );
    Ok(())
}

/// A huge `fail` reason is capped at `MAX_PLUGIN_TEXT` bytes, saying how much was cut.
fn a_long_fail_reason_is_capped(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
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
