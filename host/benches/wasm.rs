//! Calls per second of the WASM runtime against the same logic as a native Rust function.
//!
//! `cargo bench -p burrow --bench wasm` (after `make plugins`). For `passthrough` (commit, no
//! work) and `json-validate` (check the value is a JSON object) on 100 B, 1 KiB and 64 KiB
//! values, it measures ~1 s each of: one reused instance (what a pool worker does), a fresh
//! instance per call (the cost of instantiation), and a native function doing the same work in
//! the same run. The ratio columns are wasm rate / native rate: the figure to quote, since it
//! carries over between machines better than raw rates. A last line measures the host's own
//! path for `passthrough` on 100 B: a worker on a tokio runtime sending each call to the plugin
//! executor and awaiting the reply, one message per hop and 64 per hop. A second table gives the
//! cost per message of a batch of 64 against one call per message, on one reused instance, for
//! each value size. A program that prints a table,
//! not a test: nothing here asserts a speed.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use burrow::wasm::{
    Batch, CallContext, CodeCache, Deployment, DeploymentSlot, Message, Outcome, PluginInstance,
    PluginWorker, Runtime, RuntimeConfig,
};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// How long each cell runs.
const CELL: Duration = Duration::from_secs(1);
const SIZES: [(usize, &str); 3] = [(100, "100 B"), (1024, "1 KiB"), (64 * 1024, "64 KiB")];

fn main() -> anyhow::Result<()> {
    let runtime = Runtime::new(&RuntimeConfig::default())?;
    println!("burrow wasm benchmark — {}", machine());
    println!("{CELL:?} per cell; ratio = wasm calls/s ÷ native calls/s (same run)\n");
    println!(
        "| plugin        | value  | reused/s   | fresh/s    | native/s     | reused ÷ native | fresh ÷ native |"
    );
    println!(
        "|---------------|--------|------------|------------|--------------|-----------------|----------------|"
    );
    for (plugin, native) in [
        ("passthrough", native_passthrough as fn(&Message) -> Outcome),
        ("json-validate", native_json_validate),
    ] {
        let slot = Arc::new(DeploymentSlot::new(Deployment::new(
            runtime.load_file(&plugin_path(plugin)?)?,
        )));
        for (size, label) in SIZES {
            let msg = message(json_object(size));
            check_agrees(&slot, native, &msg)?;
            let reused = {
                let mut instance = PluginInstance::new(Arc::clone(&slot));
                rate(|| call(&mut instance, &msg))
            };
            let fresh = {
                let mut instance = PluginInstance::new(Arc::clone(&slot));
                rate(|| {
                    instance.reset();
                    call(&mut instance, &msg)
                })
            };
            let native_rate = rate(|| native(black_box(&msg)));
            println!(
                "| {plugin:<13} | {label:<6} | {:>10} | {:>10} | {:>12} | {:>15} | {:>14} |",
                count(reused),
                count(fresh),
                count(native_rate),
                ratio(reused, native_rate),
                ratio(fresh, native_rate),
            );
        }
    }
    println!(
        "\none reused instance: one call per message against batches of {BATCH}, time per message (one thread)"
    );
    println!(
        "| plugin        | value  | one call each, µs/msg | batch of {BATCH}, µs/msg | batch ÷ one |"
    );
    println!(
        "|---------------|--------|-----------------------|---------------------|-------------|"
    );
    for plugin in ["passthrough", "json-validate"] {
        let slot = Arc::new(DeploymentSlot::new(Deployment::new(
            runtime.load_file(&plugin_path(plugin)?)?,
        )));
        for (size, label) in SIZES {
            let msg = message(json_object(size));
            let mut instance = PluginInstance::new(Arc::clone(&slot));
            let one = rate(|| call(&mut instance, &msg));
            let batched = batch_rate(&mut instance, &msg)?;
            println!(
                "| {plugin:<13} | {label:<6} | {:>21.3} | {:>19.3} | {:>11} |",
                1e6 / one,
                1e6 / batched,
                ratio(batched, one)
            );
        }
    }
    let slot = Arc::new(DeploymentSlot::new(Deployment::new(
        runtime.load_file(&plugin_path("passthrough")?)?,
    )));
    let msg = message(json_object(100));
    let threaded = through_the_executor(Arc::clone(&slot), msg.clone(), 1)?;
    let threaded_batches = through_the_executor(slot, msg, BATCH)?;
    println!(
        "\npassthrough, 100 B, reused, through the plugin executor from a tokio worker: {}/s one per \
         hop, {}/s {BATCH} per hop",
        count(threaded),
        count(threaded_batches)
    );
    languages()?;
    Ok(())
}

/// Messages per `process-batch` call in the batch rows: the host's most per hop.
const BATCH: usize = 64;

/// Messages per second through `process-batch`, [`BATCH`] at a time, on one instance.
fn batch_rate(instance: &mut PluginInstance, msg: &Message) -> anyhow::Result<f64> {
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let contexts = vec![CallContext::default(); BATCH];
    let messages = vec![msg.clone(); BATCH];
    let mut failed = None;
    let calls = rate(|| {
        let results = executor.block_on(instance.call_batch_async(Batch::of(&contexts, &messages)));
        if let Some(bad) = results
            .iter()
            .find(|r| !matches!(&r.result, Ok(p) if p.outcome == Outcome::Commit))
        {
            failed = Some(format!("{:?}", bad.result));
        }
    });
    if let Some(bad) = failed {
        bail!("expected every message of the batch to commit, got {bad}");
    }
    Ok(calls * BATCH as f64)
}

/// Messages per second the way the host sends them: from a task on a tokio worker, `per_hop`
/// at a time to the plugin executor, awaiting each call's task.
fn through_the_executor(
    slot: Arc<DeploymentSlot>,
    msg: Message,
    per_hop: usize,
) -> anyhow::Result<f64> {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let thread = PluginWorker::new("bench", slot);
    executor.block_on(executor.spawn(async move {
        for _ in 0..100 {
            commit_through(&thread, &msg, per_hop).await?;
        }
        let start = Instant::now();
        let mut messages: u64 = 0;
        while start.elapsed() < CELL {
            for _ in 0..100 {
                commit_through(&thread, &msg, per_hop).await?;
            }
            messages += 100 * per_hop as u64;
        }
        anyhow::Ok(messages as f64 / start.elapsed().as_secs_f64())
    }))?
}

async fn commit_through(thread: &PluginWorker, msg: &Message, n: usize) -> anyhow::Result<()> {
    let calls = (0..n)
        .map(|_| (CallContext::default(), msg.clone()))
        .collect();
    for result in thread.call_batch(calls).await? {
        match result.result {
            Ok(processed) if processed.outcome == Outcome::Commit => {}
            other => bail!("expected commit, got {other:?}"),
        }
    }
    Ok(())
}

fn call(instance: &mut PluginInstance, msg: &Message) -> Outcome {
    let context = CallContext::default();
    match instance.call(&context, msg).result {
        Ok(processed) => processed.outcome,
        Err(err) => Outcome::Fail(err.to_string()),
    }
}

/// The wasm and native versions must agree (commit) before their speeds are compared.
fn check_agrees(
    slot: &Arc<DeploymentSlot>,
    native: fn(&Message) -> Outcome,
    msg: &Message,
) -> anyhow::Result<()> {
    let wasm = call(&mut PluginInstance::new(Arc::clone(slot)), msg);
    let native = native(msg);
    if wasm != Outcome::Commit || native != Outcome::Commit {
        bail!("expected both to commit: wasm {wasm:?}, native {native:?}");
    }
    Ok(())
}

/// Runs `op` for about [`CELL`] (after a short warm-up) and returns calls per second.
fn rate<T>(mut op: impl FnMut() -> T) -> f64 {
    let warm_up = Instant::now();
    while warm_up.elapsed() < CELL / 10 {
        black_box(op());
    }
    let start = Instant::now();
    let mut calls: u64 = 0;
    let mut batch: u64 = 1;
    loop {
        for _ in 0..batch {
            black_box(op());
        }
        calls += batch;
        let elapsed = start.elapsed();
        if elapsed >= CELL {
            return calls as f64 / elapsed.as_secs_f64();
        }
        // Check the clock about every millisecond, whatever the speed of `op`.
        let per_call = elapsed.as_secs_f64() / calls as f64;
        batch = ((0.001 / per_call) as u64).clamp(1, 1 << 20);
    }
}

fn native_passthrough(_msg: &Message) -> Outcome {
    Outcome::Commit
}

/// What json-validate does, natively: UTF-8, then a JSON object, contents skipped.
fn native_json_validate(msg: &Message) -> Outcome {
    let Ok(text) = std::str::from_utf8(&msg.value) else {
        return Outcome::Fail("value is not UTF-8".into());
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match (&mut de)
        .deserialize_any(ObjectOnly)
        .and_then(|()| de.end())
    {
        Ok(()) => Outcome::Commit,
        Err(e) => Outcome::Fail(format!("not a JSON object: {e}")),
    }
}

/// Accepts a map (skipping its entries without building them), refuses anything else.
struct ObjectOnly;

impl<'de> Visitor<'de> for ObjectOnly {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// A JSON object of exactly `size` bytes, with a realistic mix of fields.
fn json_object(size: usize) -> Vec<u8> {
    let mut text = String::from("{");
    let mut i = 0;
    // Leave room for the closing `"pad":"…"}` (at least 10 bytes).
    loop {
        let field = format!("\"field{i}\":{{\"id\":{i},\"name\":\"item-{i}\",\"ok\":true}},");
        if text.len() + field.len() + 10 > size {
            break;
        }
        text.push_str(&field);
        i += 1;
    }
    let pad = size.saturating_sub(text.len() + 10);
    text.push_str(&format!("\"pad\":\"{}\"}}", "x".repeat(pad)));
    text.into_bytes()
}

fn message(value: Vec<u8>) -> Message {
    Message {
        topic: "bench".into(),
        partition: 0,
        offset: 0,
        key: Some(b"key".to_vec()),
        value,
        headers: Vec::new(),
        timestamp: None,
        attempt: 1,
    }
}

fn plugin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("BURROW_PLUGIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("{} not found: run `make plugins` first", path.display());
    }
    Ok(path)
}

fn count(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2} M", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

fn ratio(wasm: f64, native: f64) -> String {
    let r = wasm / native;
    if r >= 0.01 {
        format!("{r:.3}")
    } else {
        format!("1/{:.0}", 1.0 / r)
    }
}

/// CPU model and core count, for the table's caption.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Rust and Python, the same work (json-validate and its Python twin) on 100 B: calls/s on a
/// reused instance and in batches, instances/s, the instance's memory after a call, and the
/// load (compile) time without a cache, into an empty cache, and from it.
fn languages() -> anyhow::Result<()> {
    println!("\nRust and Python, the same work (json-validate), 100 B");
    println!(
        "| plugin             | size     | reused/s | batch of {BATCH}/s | fresh/s | memory  | compile | cached load |"
    );
    println!(
        "|--------------------|----------|----------|-----------------|---------|---------|---------|-------------|"
    );
    for plugin in ["json-validate", "json-validate-py"] {
        let path = plugin_path(plugin)?;
        let size = std::fs::metadata(&path)?.len();
        let (compile, cached) = load_times(&path)?;
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let slot = Arc::new(DeploymentSlot::new(Deployment::new(
            runtime.load_file(&path)?,
        )));
        let msg = message(json_object(100));
        check_agrees(&slot, native_json_validate, &msg)?;
        let mut instance = PluginInstance::new(Arc::clone(&slot));
        let reused = rate(|| call(&mut instance, &msg));
        let memory = instance.memory().unwrap_or(0);
        let batch = batch_rate(&mut PluginInstance::new(Arc::clone(&slot)), &msg)?;
        let fresh = rate(|| {
            instance.reset();
            call(&mut instance, &msg)
        });
        println!(
            "| {plugin:<18} | {:>5.1} MiB | {:>8} | {:>15} | {:>7} | {:>4.1} MiB | {:>5.2} s | {:>8.0} ms |",
            size as f64 / MIB,
            count(reused),
            count(batch),
            count(fresh),
            memory as f64 / MIB,
            compile.as_secs_f64(),
            cached.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// Loading `path` with a fresh cache directory: the first load compiles (and fills the cache),
/// a second runtime on the same directory loads from it, as a restarted host does.
fn load_times(path: &Path) -> anyhow::Result<(Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let cache = RuntimeConfig {
        cache: CodeCache::Dir(dir.path().to_owned()),
    };
    let timed = |config: &RuntimeConfig| -> anyhow::Result<Duration> {
        let runtime = Runtime::new(config)?;
        let started = Instant::now();
        runtime.load_file(path)?;
        Ok(started.elapsed())
    };
    Ok((timed(&cache)?, timed(&cache)?))
}
