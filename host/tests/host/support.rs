//! What the host tests share beyond the test kit (`burrow_e2e`, which provides the mock
//! cluster, producers, read-back, waits, config files, child processes and the admin client):
//! the host run in this process on a runtime of its own, the path of the binary cargo built for
//! these tests, and the plugin version as the host's library computes it.
//!
//! The tests themselves are synchronous like the kit: the in-process host runs on its own
//! runtime, so a test blocking on a Kafka call or a wait never stalls the host's tasks.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use anyhow::Context;
use burrow::supervisor::{self, HostError, RunOptions};
use burrow_e2e::DEADLINE;
use burrow_e2e::process::Admin;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The short version (`Display` of [`burrow::wasm::Version`]) of the plugin file at `path`.
pub fn version_of(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(burrow::wasm::Version::of(&bytes).to_string())
}

/// Logs of the host under test, shown for failing tests (`RUST_LOG` to change the level).
pub fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A host running in this process, on a runtime of its own (two workers, like a small
/// machine); its admin listener's client through `Deref`.
pub struct Host {
    admin: Admin,
    stop: CancellationToken,
    /// `None` once [`Host::stop`] took it.
    task: Option<JoinHandle<Result<(), HostError>>>,
    /// `None` once dropped.
    runtime: Option<Runtime>,
}

impl std::ops::Deref for Host {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.admin
    }
}

impl Drop for Host {
    /// A test that fails early still stops its host, so the test ends instead of hanging.
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

impl Host {
    /// Starts the host on the config at `path`, checking files every 100 ms, its admin
    /// listener on a free port.
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        init_logs();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("building the host's runtime")?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let options = RunOptions {
            watch_interval: Duration::from_millis(100),
            admin_listener: Some(listener),
        };
        let stop = CancellationToken::new();
        let path = path.to_owned();
        let task = runtime.spawn({
            let stop = stop.clone();
            async move { supervisor::run(&path, options, stop.cancelled_owned()).await }
        });
        Ok(Self {
            admin: Admin { addr },
            stop,
            task: Some(task),
            runtime: Some(runtime),
        })
    }

    /// Waits until every tenant has partitions assigned (`/readyz` answers 200).
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        self.admin.wait_ready(|| {
            let stopped = self.task.as_ref().is_none_or(JoinHandle::is_finished);
            Ok(stopped.then(|| "supervisor::run returned".to_owned()))
        })
    }

    /// Stops the host gracefully and returns how `run` ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().context("the host was stopped already")?;
        let runtime = self
            .runtime
            .as_ref()
            .context("the host's runtime is gone")?;
        runtime
            .block_on(async { tokio::time::timeout(DEADLINE, task).await })
            .context("the host did not stop in time")?
            .context("the host task panicked")?
            .context("the host returned an error")
    }
}

/// The real `burrow` binary, as cargo built it for these tests.
pub fn burrow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_burrow"));
    command.env_remove("RUST_LOG");
    command
}
