//! A stream of bad records does not flood the log: permanent failures with the same error are
//! one WARN line, then a summary of their repeats at most every 30 s (the rest at DEBUG); the
//! stats count every one. Its own test binary: it installs the process's log subscriber.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use burrow_pool::{Config, Pool, ProcessError};
use support::{Cluster, guarded, test_config, unique_group, until_stats};
use tokio_util::sync::CancellationToken;

/// Keeps what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_one_warn_line_not_one_per_record() {
    const N: usize = 300;
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .init();
    let cluster = Cluster::new(1, 2);
    cluster.produce(N, 10);
    let config = Config {
        max_consecutive_errors: 1_000_000,
        ..test_config()
    };
    let pool = Pool::new(cluster.consumer(&unique_group("failure-log")), config).expect("pool");
    let stop = CancellationToken::new();
    let script = async {
        until_stats(
            "every record failed",
            || pool.stats(),
            |s| s.messages_failed == N as u64,
        )
        .await;
        stop.cancel();
    };
    let (result, ()) = guarded(async {
        tokio::join!(
            pool.run(stop.clone().cancelled_owned(), |m| async move {
                Err(ProcessError::permanent(format!(
                    "bad record at offset {}",
                    m.offset
                )))
            }),
            script
        )
    })
    .await;
    result.expect("the pool ran");
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8 log");
    let lines = text
        .lines()
        .filter(|l| l.contains("message failed permanently"))
        .count();
    assert_eq!(
        lines, 1,
        "{N} failures differing only in a number are one line:\n{text}"
    );
    assert_eq!(pool.stats().messages_failed, N as u64, "each counted");
}
