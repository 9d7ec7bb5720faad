//! Shared helpers for the WASM runtime's tests: finding the real plugins, building
//! messages for the `chaos` plugins, calling and unpacking results, and [`chaos_tests!`], which
//! runs a test body against both chaos plugins, the Rust one and its Python twin.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use anyhow::{Context, bail};
use burrow::wasm::{
    CallContext, CallError, CallResult, Deployment, DeploymentSlot, Header, Message, Outcome,
    Plugin, PluginInstance, Processed, Runtime, RuntimeConfig,
};

/// The one plugin locator, from the shared test kit (`tests/`).
pub use burrow_e2e::plugins::plugin_path;

/// A runtime without a disk cache.
pub fn runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime::new(&RuntimeConfig::default())?)
}

pub fn load(runtime: &Runtime, name: &str) -> anyhow::Result<Plugin> {
    let path = plugin_path(name)?;
    runtime
        .load_file(&path)
        .with_context(|| format!("loading {}", path.display()))
}

/// A slot holding `deployment`, and one worker's instance on it.
pub fn worker(deployment: Deployment) -> (Arc<DeploymentSlot>, PluginInstance) {
    let slot = Arc::new(DeploymentSlot::new(deployment));
    let instance = PluginInstance::new(Arc::clone(&slot));
    (slot, instance)
}

/// A worker on plugin `name` with default limits and no settings.
pub fn worker_for(name: &str) -> anyhow::Result<(Arc<DeploymentSlot>, PluginInstance)> {
    let runtime = runtime()?;
    Ok(worker(Deployment::new(load(&runtime, name)?)))
}

/// The two builds of the chaos test plugin: one action table (the `burrow-action` header), one
/// in each SDK. Tests that inject faults run against both, so a Python plugin is held to what
/// the host promises a Rust one, and every difference between them is spelled out in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chaos {
    /// `plugins/chaos`, on the Rust SDK.
    Rust,
    /// `plugins/chaos-py`, on the Python SDK, built with componentize-py.
    Python,
}

impl Chaos {
    /// The plugin's name: its file in `target/plugins/` and the name the host reports.
    pub fn name(self) -> &'static str {
        match self {
            Chaos::Rust => "chaos",
            Chaos::Python => "chaos-py",
        }
    }

    /// The plugin, compiled once per test binary on one shared runtime (as the host shares one
    /// engine), because compiling the Python plugin takes seconds.
    pub fn plugin(self) -> anyhow::Result<Plugin> {
        static RUNTIME: LazyLock<Result<Runtime, String>> =
            LazyLock::new(|| runtime().map_err(|e| format!("{e:#}")));
        static LOADED: LazyLock<Mutex<HashMap<&'static str, Plugin>>> =
            LazyLock::new(Mutex::default);
        let runtime = RUNTIME.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        // Held while compiling: tests asking for the same plugin wait instead of compiling it
        // again.
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plugin) = loaded.get(self.name()) {
            return Ok(plugin.clone());
        }
        let plugin = load(runtime, self.name())?;
        loaded.insert(self.name(), plugin.clone());
        Ok(plugin)
    }

    /// A worker on this plugin with default limits and no settings.
    pub fn worker(self) -> anyhow::Result<(Arc<DeploymentSlot>, PluginInstance)> {
        Ok(worker(Deployment::new(self.plugin()?)))
    }
}

/// For each test body `fn NAME(plugin: Chaos) -> anyhow::Result<()>` named, the tests
/// `rust::NAME` and `python::NAME`: the same assertions against both chaos plugins. Where the
/// two must differ, the body says so with a `match` on `plugin`.
#[allow(unused_macros)] // each test binary uses a different subset
macro_rules! chaos_tests {
    ($($name:ident),+ $(,)?) => {
        mod rust {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name($crate::support::Chaos::Rust)
                }
            )+
        }

        mod python {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name($crate::support::Chaos::Python)
                }
            )+
        }
    };
}
#[allow(unused_imports)] // likewise
pub(crate) use chaos_tests;

pub fn message(value: &[u8]) -> Message {
    Message {
        topic: "in".into(),
        partition: 3,
        offset: 42,
        key: Some(b"k".to_vec()),
        value: value.to_vec(),
        headers: Vec::new(),
        timestamp: Some(1_700_000_000_000),
        attempt: 1,
    }
}

/// A message asking a chaos plugin for `action`.
pub fn chaos(action: &str) -> Message {
    let mut msg = message(b"payload");
    msg.headers.push(Header {
        name: "burrow-action".into(),
        value: action.as_bytes().to_vec(),
    });
    msg
}

pub fn call(instance: &mut PluginInstance, msg: &Message) -> CallResult {
    instance.call(&CallContext::for_message("tenant-a", msg), msg)
}

/// The call's outcome and emitted records; fails the test on a call error.
pub fn processed(instance: &mut PluginInstance, msg: &Message) -> anyhow::Result<Processed> {
    call(instance, msg).result.context("call failed")
}

pub fn outcome(instance: &mut PluginInstance, msg: &Message) -> anyhow::Result<Outcome> {
    Ok(processed(instance, msg)?.outcome)
}

/// The reason of a `fail` outcome; fails the test on anything else.
pub fn fail_reason(instance: &mut PluginInstance, msg: &Message) -> anyhow::Result<String> {
    match outcome(instance, msg)? {
        Outcome::Fail(reason) => Ok(reason),
        other => bail!("expected fail, got {other:?}"),
    }
}

pub fn call_error(instance: &mut PluginInstance, msg: &Message) -> anyhow::Result<CallError> {
    match call(instance, msg).result {
        Err(err) => Ok(err),
        Ok(processed) => bail!("expected a call error, got {processed:?}"),
    }
}

/// Log output captured from `tracing` while a closure runs on this thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Runs `f` with every event at any level written (as JSON lines) to this capture.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
