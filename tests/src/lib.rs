//! The one test kit for Burrow: the end-to-end tests (the real `burrow` binary on a real
//! Kafka-protocol broker), the host's integration tests (the host in-process on the mock
//! cluster) and the pool's (the pool on the mock cluster) all produce, read back, wait and write
//! configs with it.
//!
//! # Layout
//!
//! - [`broker`]: the broker fixture. Starts [Tansu](https://github.com/tansu-io/tansu) (installed
//!   by `make broker`) on a free port, once per test binary or per test, and kills it when done;
//!   or uses the cluster named by `BURROW_TEST_BROKERS`; or librdkafka's in-process mock cluster
//!   with its topics created up front and faults to inject. Every client the kit makes takes its
//!   settings (bootstrap servers, TLS) from here.
//! - [`kafka`]: topics (admin client), producers (records with unique ids, keys, headers, null
//!   values, any compression codec) and read-back of a topic's records, end offsets and a group's
//!   committed offsets (through `burrow_pool::kafka::inspect`, the same code `burrow demo` uses).
//! - [`log`]: a topic read from its log as stored (raw Fetch, transaction markers included), and
//!   what a `read_committed` reader must see of it, for brokers that do not hide aborted
//!   transactions (Tansu): committed and plain records kept, aborted and open ones dropped.
//! - [`config`]: a builder that writes a `burrow.toml`: tenants, plugins, limits, pool settings,
//!   failure policies; and a [`config::Pipeline`], a tenant with its own topics, ready to run.
//! - [`process`]: a child process with its output kept, the real `burrow` binary run as one, and
//!   the admin listener client (`/readyz`, `/stats`, `/metrics`) for a host in a child process or
//!   in the test's own.
//! - [`plugins`]: where `make plugins` put the test plugins.
//! - [`tls`]: a throwaway CA and server certificate, made with the `openssl` CLI.
//!
//! Everything is synchronous: librdkafka's blocking calls block only the test's own thread, and a
//! host under test runs in its own process or on its own runtime. Tests whose code under test
//! runs on the test's own task (the pool's) wait with [`wait_for_async`]. Every wait is bounded
//! by [`DEADLINE`] so a hung test fails, saying what it waited for; no test asserts on how long
//! anything took.

pub mod broker;
pub mod chaos;
pub mod config;
pub mod kafka;
pub mod log;
pub mod plugins;
pub mod process;
pub mod tls;

use std::time::{Duration, Instant};

use anyhow::bail;

/// How long any one wait may take before the test fails: generous, the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// A name unique in this test run (topic, group, tenant): tests share one broker, and a group
/// with a dead member stays blocked until its session expires, so nothing is ever reused.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How often the synchronous waits look again.
const POLL: Duration = Duration::from_millis(100);
/// How often the async waits look again: they watch in-process state (a pool's stats), which
/// is cheap to read and can change within milliseconds.
const POLL_ASYNC: Duration = Duration::from_millis(20);

/// Calls `check` every 100 ms until it returns `Some`; fails after [`DEADLINE`] naming `what`
/// and the last error `check` returned.
pub fn wait_for<T>(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    wait_for_within(DEADLINE, what, &mut check)
}

/// [`wait_for`] with another bound.
pub fn wait_for_within<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let mut wait = Wait::new(deadline, what);
    loop {
        if let Some(value) = wait.look(check())? {
            return Ok(value);
        }
        std::thread::sleep(POLL);
    }
}

/// Like [`wait_for`], for a condition.
pub fn wait_until(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_for(what, || Ok(check()?.then_some(())))
}

/// [`wait_for`] for a test whose code under test runs on the test's own async task (a pool run
/// joined with the test's checks): it sleeps on tokio's timer instead of blocking the thread,
/// and looks every 20 ms.
pub async fn wait_for_async<T>(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let mut wait = Wait::new(DEADLINE, what);
    loop {
        if let Some(value) = wait.look(check())? {
            return Ok(value);
        }
        tokio::time::sleep(POLL_ASYNC).await;
    }
}

/// Like [`wait_for_async`], for a condition.
pub async fn wait_until_async(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_for_async(what, || Ok(check()?.then_some(()))).await
}

/// Fails `fut` if it has not finished after [`DEADLINE`]: a bound for a hung test, saying what
/// hung.
pub async fn bounded<F: std::future::Future>(what: &str, fut: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what} did not finish within {DEADLINE:?}"))
}

/// The bookkeeping of one bounded wait, shared by the synchronous and the async waits.
struct Wait<'a> {
    what: &'a str,
    deadline: Duration,
    end: Instant,
    /// What the last failed check said, for the timeout's message.
    last_error: Option<anyhow::Error>,
}

impl<'a> Wait<'a> {
    fn new(deadline: Duration, what: &'a str) -> Self {
        Self {
            what,
            deadline,
            end: Instant::now() + deadline,
            last_error: None,
        }
    }

    /// Takes one check's result: the value once there is one, an error once the bound has
    /// passed, `None` to look again.
    fn look<T>(&mut self, checked: anyhow::Result<Option<T>>) -> anyhow::Result<Option<T>> {
        match checked {
            Ok(Some(value)) => return Ok(Some(value)),
            Ok(None) => {}
            Err(e) => self.last_error = Some(e),
        }
        if Instant::now() > self.end {
            let why = self
                .last_error
                .take()
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!(
                "timed out after {:?} waiting for {}{why}",
                self.deadline,
                self.what
            );
        }
        Ok(None)
    }
}
