//! What a plugin logs or prints reaches the host's `tracing` log, line by line, tagged with the
//! plugin and the message it was processing: from a Rust plugin and from a Python one.

use crate::support;

use burrow::wasm::{MAX_PLUGIN_TEXT, Outcome};
use serde_json::Value;
use support::{Chaos, LogCapture, chaos, outcome};

support::chaos_tests!(
    log_import_becomes_a_tagged_tracing_event,
    stdout_and_stderr_are_captured_into_the_log,
    output_is_not_repeated_by_the_next_call,
    log_text_is_escaped_so_it_cannot_forge_a_log_line,
    printed_control_characters_are_escaped,
    a_long_log_message_is_capped,
);

fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get("fields").and_then(|f| f.get(name))
}

fn lines_with_message(capture: &LogCapture, text: &str) -> Vec<Value> {
    capture
        .lines()
        .into_iter()
        .filter(|l| field(l, "message").and_then(Value::as_str) == Some(text))
        .collect()
}

/// `log(level, msg)` is an event at that level with plugin, tenant, topic, partition, offset.
fn log_import_becomes_a_tagged_tracing_event(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    let result = capture.during(|| outcome(&mut worker, &chaos("log:warn:disk nearly full")))?;
    assert_eq!(result, Outcome::Commit);
    let lines = lines_with_message(&capture, "disk nearly full");
    assert_eq!(lines.len(), 1, "{:?}", capture.lines());
    let line = &lines[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["target"], "burrow::plugin");
    assert_eq!(
        field(line, "plugin").and_then(Value::as_str),
        Some(plugin.name())
    );
    assert_eq!(
        field(line, "tenant").and_then(Value::as_str),
        Some("tenant-a")
    );
    assert_eq!(field(line, "topic").and_then(Value::as_str), Some("in"));
    assert_eq!(field(line, "partition").and_then(Value::as_i64), Some(3));
    assert_eq!(field(line, "offset").and_then(Value::as_i64), Some(42));
    Ok(())
}

/// stdout and stderr are captured, one event per line, marked with their stream.
fn stdout_and_stderr_are_captured_into_the_log(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    let result = capture.during(|| outcome(&mut worker, &chaos("print:hello from the guest")))?;
    assert_eq!(result, Outcome::Commit);
    let lines = lines_with_message(&capture, "hello from the guest");
    let streams: Vec<_> = lines
        .iter()
        .filter_map(|l| field(l, "stream").and_then(Value::as_str))
        .collect();
    assert_eq!(streams, ["stdout", "stderr"], "{:?}", capture.lines());
    assert!(
        lines
            .iter()
            .all(|l| field(l, "offset").and_then(Value::as_i64) == Some(42))
    );
    Ok(())
}

/// Output is drained after each call: a reused instance does not repeat earlier lines.
fn output_is_not_repeated_by_the_next_call(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    capture.during(|| -> anyhow::Result<()> {
        outcome(&mut worker, &chaos("print:once"))?;
        outcome(&mut worker, &chaos("commit"))?;
        Ok(())
    })?;
    assert_eq!(lines_with_message(&capture, "once").len(), 2); // stdout + stderr, once each
    assert_eq!(worker.instantiations(), 1);
    Ok(())
}

/// A `log` message with a newline and an escape sequence stays one event, escaped: a plugin
/// cannot forge a host log line or colour the operator's terminal.
fn log_text_is_escaped_so_it_cannot_forge_a_log_line(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    let forged = "ok\n2026-01-01T00:00:00Z  INFO burrow: all good\u{1b}[2K";
    capture.during(|| outcome(&mut worker, &chaos(&format!("log:info:{forged}"))))?;
    let escaped = "ok\\n2026-01-01T00:00:00Z  INFO burrow: all good\\u{1b}[2K";
    assert_eq!(
        lines_with_message(&capture, escaped).len(),
        1,
        "{:?}",
        capture.lines()
    );
    Ok(())
}

/// A control character in printed output is escaped too (each line is its own event already).
fn printed_control_characters_are_escaped(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    capture.during(|| outcome(&mut worker, &chaos("print:bell\u{7}\rover")))?;
    assert_eq!(
        lines_with_message(&capture, "bell\\u{7}\\rover").len(),
        2, // stdout + stderr
        "{:?}",
        capture.lines()
    );
    Ok(())
}

/// A huge `log` message is capped at `MAX_PLUGIN_TEXT` bytes, saying how much was cut.
fn a_long_log_message_is_capped(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let capture = LogCapture::default();
    let text = "x".repeat(100_000);
    capture.during(|| outcome(&mut worker, &chaos(&format!("log:warn:{text}"))))?;
    let capped = format!(
        "{}… [{} bytes cut]",
        "x".repeat(MAX_PLUGIN_TEXT),
        100_000 - MAX_PLUGIN_TEXT
    );
    assert_eq!(
        lines_with_message(&capture, &capped).len(),
        1,
        "{:?}",
        capture.lines()
    );
    Ok(())
}
