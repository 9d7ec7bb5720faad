//! The one test kit for Burrow's end-to-end tests: the real `burrow` binary on a real
//! Kafka-protocol broker.
//!
//! # Layout
//!
//! - [`broker`]: the broker fixture. Starts [Tansu](https://github.com/tansu-io/tansu) (installed
//!   by `make broker`) on a free port, once per test binary or per test, and kills it when done;
//!   or uses the cluster named by `BURROW_TEST_BROKERS`. Every client the kit makes takes its
//!   settings (bootstrap servers, TLS) from here.
//! - [`kafka`]: topics (admin client), producers (records with unique ids, keys, headers, any
//!   compression codec) and read-back of a topic's records and of a group's committed offsets.
//! - [`config`]: a builder that writes a `burrow.toml` for the real binary: tenants, plugins,
//!   limits, pool settings, failure policies.
//! - [`process`]: the real `burrow` binary as a child process: its admin listener (`/readyz`,
//!   `/stats`, `/metrics`), SIGTERM, `kill -9`, its log.
//! - [`plugins`]: where `make plugins` put the test plugins.
//! - [`tls`]: a throwaway CA and server certificate, made with the `openssl` CLI.
//!
//! Everything is synchronous: the host under test runs in its own process, so the tests need no
//! async runtime, and librdkafka's blocking calls block only the test's own thread. Every wait is
//! bounded by [`DEADLINE`] so a hung test fails, saying what it waited for; no test asserts on
//! how long anything took.

pub mod broker;
pub mod chaos;
pub mod config;
pub mod kafka;
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
    let end = Instant::now() + deadline;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > end {
            let why = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {deadline:?} waiting for {what}{why}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_for`], for a condition.
pub fn wait_until(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_for(what, || Ok(check()?.then_some(())))
}
