//! `burrow test`: records from a file through a real plugin on the real runtime, no Kafka —
//! outcomes, emits, limits, golden files, fuel budgets, bad lines, the default code cache.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::plugin_path;

/// `burrow test PLUGIN --input FILE ARGS…`, with its own user cache directory (`dir/cache`).
fn burrow_test(dir: &Path, plugin: &str, input: &str, args: &[&str]) -> anyhow::Result<Output> {
    let records = dir.join(format!("{plugin}-records.jsonl"));
    std::fs::write(&records, input)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_burrow"))
        .arg("test")
        .arg(plugin_path(plugin)?)
        .arg("--input")
        .arg(&records)
        .args(args)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()?)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--json` lines of a run.
fn json_lines(out: &Output) -> anyhow::Result<Vec<Value>> {
    let (stdout, _) = text(out);
    Ok(stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

const ORDERS: &str = r#"{"key": "k1", "value": {"id": 1}, "headers": {"h": "1"}}
{"key": "k2", "value": "{\"id\": "}

{"value": [1, 2]}
{"value": {"base64": "e/99"}}
"#;

/// Each record's outcome, reason and emits, in order, with the plugin's settings; a blank line
/// is skipped but counted for line numbers; exit 0 (a failing record is a result).
#[test]
fn outcomes_reasons_and_emits_per_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &["--json", "--config", "output-topic=valid"],
    )?;
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        json_lines(&out)?,
        [
            json!({"line": 1, "offset": 0, "outcome": "commit", "emits": [
                {"topic": "valid", "key": "k1", "value": "{\"id\":1}", "headers": [["h", "1"]]}
            ]}),
            json!({"line": 2, "offset": 1, "outcome": "fail",
                "reason": "value is not valid JSON: EOF while parsing a value at line 1 column 7"}),
            json!({"line": 4, "offset": 2, "outcome": "fail",
                "reason": "expected a JSON object, found an array"}),
            json!({"line": 5, "offset": 3, "outcome": "fail",
                "reason": "value is not UTF-8: invalid utf-8 sequence of 1 bytes from index 1"}),
        ]
    );
    // The summary goes to stderr with --json, so stdout is exactly the golden lines.
    assert!(stderr.contains("4 records: 1 commit, 3 fail"), "{stderr}");
    Ok(())
}

/// The table: a row per record with outcome, time and fuel, the emitted record under its row,
/// then the summary with p50/p99 and fuel per record.
#[test]
fn the_table_shows_time_fuel_and_emits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &["--config", "output-topic=valid"],
    )?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("line   offset  outcome"), "{stdout}");
    assert!(rows[1].starts_with("1           0  commit"), "{stdout}");
    assert!(rows[1].contains(" ms"), "{stdout}");
    assert!(
        rows[2]
            .trim_start()
            .starts_with("→ valid  key k1  {\"id\":1}"),
        "{stdout}"
    );
    assert!(
        rows[3].contains("fail") && rows[3].contains("value is not valid JSON"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 records: 1 commit, 3 fail\ntime  p50 "),
        "{stdout}"
    );
    assert!(stdout.contains("per record (mean)"), "{stdout}");
    Ok(())
}

/// A saved `--json` run passes `--expect`; a changed line fails it, showing both sides.
#[test]
fn a_saved_run_is_a_golden_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = ["--config", "output-topic=valid"];
    let first = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &[&["--json"][..], &settings].concat(),
    )?;
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, &first.stdout)?;
    let golden_arg = golden.to_str().expect("a UTF-8 path");

    let same = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &[&["--expect", golden_arg][..], &settings].concat(),
    )?;
    assert!(same.status.success(), "{}", text(&same).1);

    // Without the setting the first record commits but emits nothing: one difference.
    let other = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &["--expect", golden_arg],
    )?;
    let (_, stderr) = text(&other);
    assert!(!other.status.success());
    assert!(stderr.contains("line 1:\n  expected {"), "{stderr}");
    assert!(stderr.contains("1 line differs from"), "{stderr}");
    assert!(!stderr.contains("line 2:"), "{stderr}");
    Ok(())
}

/// A config for `--from`: one tenant on the chaos plugin, with `limits`.
fn config_file(dir: &Path, limits: &str, output_topics: &str) -> anyhow::Result<PathBuf> {
    config_with_tenants(dir, &["orders"], limits, output_topics)
}

/// A config with a tenant per name, all alike.
fn config_with_tenants(
    dir: &Path,
    names: &[&str],
    limits: &str,
    output_topics: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join("burrow.toml");
    let plugin = plugin_path("chaos")?;
    let mut toml = "[kafka]\nbrokers = \"localhost:9092\"\n".to_owned();
    for name in names {
        toml.push_str(&format!(
            r#"
[[tenant]]
name = "{name}"
group_id = "{name}"
topics = ["{name}-in"]
plugin = {plugin:?}
dead_letter_topic = "dead"
output_topics = {output_topics}

[tenant.limits]
{limits}

[tenant.config]
greeting = "hello"
"#
        ));
    }
    std::fs::write(&path, toml)?;
    Ok(path)
}

fn chaos(action: &str) -> String {
    format!(
        "{}\n",
        json!({"value": "payload", "headers": {"burrow-action": action}})
    )
}

/// A trap, a loop and a memory hog each fail only their own record, named by kind; the run
/// goes on; the tenant's limits, settings and topic apply (`--from`).
#[test]
fn traps_timeouts_and_memory_fail_only_their_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), "timeout = \"200ms\"\nmemory = \"32MiB\"", "[]")?;
    let input: String = ["trap", "commit", "loop", "oom", "config:greeting", "commit"]
        .into_iter()
        .map(chaos)
        .collect();
    let out = burrow_test(
        dir.path(),
        "chaos",
        &input,
        &["--json", "--from", config.to_str().expect("a UTF-8 path")],
    )?;
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&out)?;
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().expect("a string"))
        .collect();
    assert_eq!(
        outcomes,
        ["trap", "commit", "timeout", "memory", "fail", "commit"]
    );
    assert_eq!(lines[2]["reason"], "plugin ran past its deadline of 200ms");
    assert_eq!(
        lines[3]["reason"],
        "plugin exceeded its memory cap of 33554432 bytes"
    );
    assert_eq!(lines[4]["reason"], "config greeting = hello");
    Ok(())
}

/// An emit to a topic outside the tenant's `output_topics` fails the record, as `run` would.
#[test]
fn emits_outside_output_topics_fail_as_in_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), "", r#"["allowed"]"#)?;
    let input = chaos("emit:allowed") + &chaos("emit:elsewhere");
    let out = burrow_test(
        dir.path(),
        "chaos",
        &input,
        &["--json", "--from", config.to_str().expect("a UTF-8 path")],
    )?;
    let lines = json_lines(&out)?;
    assert_eq!(lines[0]["outcome"], "commit");
    assert_eq!(lines[0]["emits"][0]["topic"], "allowed");
    assert_eq!(lines[1]["outcome"], "fail");
    assert_eq!(
        lines[1]["reason"],
        "plugin emitted to topic \"elsewhere\", which is not in this tenant's output_topics [\"allowed\"]"
    );
    Ok(())
}

/// A bad line is reported with its number and the run goes on; the exit says so.
#[test]
fn bad_lines_are_reported_and_the_run_goes_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = format!("{}{{\"valu\": 1}}\n{}", chaos("commit"), chaos("commit"));
    let out = burrow_test(dir.path(), "chaos", &input, &["--json"])?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let lines = json_lines(&out)?;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]
            .as_str()
            .expect("a string")
            .contains("unknown field `valu`"),
        "{lines:?}"
    );
    assert_eq!(lines[2]["outcome"], "commit");
    assert!(stderr.contains("1 input line of"), "{stderr}");
    Ok(())
}

/// Fuel is the same in every run, and `--max-fuel` below what a record uses fails the run,
/// naming the line.
#[test]
fn fuel_is_deterministic_and_a_budget_holds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let fuel_column = |out: &Output| -> Vec<String> {
        text(out)
            .0
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| !l.trim_start().starts_with('→'))
            .map(|l| l.split_whitespace().nth(5).unwrap_or("").to_owned())
            .collect()
    };
    let first = burrow_test(dir.path(), "json-validate", ORDERS, &[])?;
    let second = burrow_test(dir.path(), "json-validate", ORDERS, &[])?;
    let fuel = fuel_column(&first);
    assert_eq!(fuel.len(), 4, "{}", text(&first).0);
    assert!(
        fuel.iter()
            .all(|f| f.replace(',', "").parse::<u64>().is_ok_and(|f| f > 0)),
        "{fuel:?}"
    );
    assert_eq!(fuel, fuel_column(&second));

    let most: u64 = fuel
        .iter()
        .map(|f| f.replace(',', "").parse::<u64>().expect("a number"))
        .max()
        .expect("some fuel");
    let over = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &["--max-fuel", &(most - 1).to_string()],
    )?;
    let (_, stderr) = text(&over);
    assert!(!over.status.success());
    assert!(stderr.contains("over the budget of"), "{stderr}");
    let within = burrow_test(
        dir.path(),
        "json-validate",
        ORDERS,
        &["--max-fuel", &most.to_string()],
    )?;
    assert!(within.status.success(), "{}", text(&within).1);
    Ok(())
}

/// The compiled-code cache is on by default, in the user's cache directory: the plugin is
/// compiled there once.
#[test]
fn the_code_cache_is_on_by_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = burrow_test(dir.path(), "passthrough", &chaos("commit"), &[])?;
    assert!(out.status.success(), "{}", text(&out).1);
    let cache = dir.path().join("cache/burrow");
    let files = walk(&cache);
    assert!(
        !files.is_empty(),
        "nothing cached under {}",
        cache.display()
    );
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// `--from` with several tenants and no `--tenant` names them.
#[test]
fn several_tenants_need_a_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_with_tenants(dir.path(), &["orders", "payments"], "", "[]")?;
    let out = burrow_test(
        dir.path(),
        "chaos",
        &chaos("commit"),
        &["--from", config.to_str().expect("a UTF-8 path")],
    )?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("several tenants (orders, payments): say which with --tenant"),
        "{stderr}"
    );
    Ok(())
}
