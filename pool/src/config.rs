//! The pool's settings, their defaults, and their validation.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::Backoff;

/// How the pool may reorder messages while running them concurrently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Any message may run at any time; the fastest mode.
    #[default]
    Unordered,
    /// One message in flight per partition, in offset order (retries included).
    Partition,
    /// One message in flight per key per partition, in offset order (retries included).
    /// Messages without a key are ordered among themselves per partition.
    Key,
}

/// Pool settings. `Config::default()` gives the original Burrow defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Handlers running at once (each worker runs one message at a time).
    pub num_workers: usize,
    /// Messages the pool holds at once, in every state: fetched and queued, in flight, waiting
    /// to retry, and done above a gap (an earlier offset of their partition not done yet). When
    /// a partition's part is spent, the pool stops taking from that partition alone (see the
    /// crate docs on flow). Bounds memory however slow the handler is.
    pub job_queue_size: usize,
    /// Bytes (keys, values, headers) of the messages the pool holds and has not finished; the
    /// second half of the bound, for large messages.
    pub max_buffered_bytes: u64,
    /// Commit at least this often while offsets advance.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Commit as soon as this many messages finished since the last commit.
    pub commit_batch_size: usize,
    /// This many permanent failures in a row halt the pool (`run` returns an error).
    pub max_consecutive_errors: u32,
    /// Retries of a retriable error before it becomes permanent.
    pub max_retries: u32,
    /// Delay before the first retry; retry `n` waits `retry_backoff_base × 2^n`.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_base: Duration,
    /// No retry waits longer than this (computed or hinted by the handler).
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// Register Prometheus metrics (names `burrow_*`).
    pub enable_metrics: bool,
    /// Which messages may run concurrently.
    pub ordering: Ordering,
    /// How long shutdown, and a partition revoke, wait for in-flight messages before giving up
    /// on them (they are then not committed and will be redelivered). Must be shorter than the
    /// consumer's `max.poll.interval.ms`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            num_workers: 10,
            job_queue_size: 10_000,
            max_buffered_bytes: 64 << 20,
            commit_interval: Duration::from_secs(5),
            commit_batch_size: 1000,
            max_consecutive_errors: 10,
            max_retries: 3,
            retry_backoff_base: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(30),
            enable_metrics: false,
            ordering: Ordering::Unordered,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// One field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as in [`Config`].
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// Every problem found in a [`Config`], not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One entry per bad field.
    pub fields: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

/// Most workers a pool may run; far beyond what one consumer can feed.
const MAX_WORKERS: usize = 100_000;
/// Retries beyond this hold a partition's commits for hours: almost surely a mistake.
const MAX_RETRIES: u32 = 100;

impl Config {
    /// Checks every field, returning all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut fields = Vec::new();
        let mut bad = |field, ok: bool, reason: &str| {
            if !ok {
                fields.push(FieldError {
                    field,
                    reason: reason.to_owned(),
                });
            }
        };
        bad(
            "num_workers",
            (1..=MAX_WORKERS).contains(&self.num_workers),
            "must be between 1 and 100000: with no worker nothing is processed",
        );
        bad(
            "job_queue_size",
            self.job_queue_size >= 1,
            "must be at least 1: with no room nothing is ever fetched",
        );
        bad(
            "max_buffered_bytes",
            self.max_buffered_bytes >= 1,
            "must be at least 1 byte: with no room nothing is ever fetched",
        );
        bad(
            "commit_interval",
            !self.commit_interval.is_zero(),
            "must be more than zero: a zero interval commits in a busy loop",
        );
        bad(
            "commit_batch_size",
            self.commit_batch_size >= 1,
            "must be at least 1 (1 commits after every message)",
        );
        bad(
            "max_consecutive_errors",
            self.max_consecutive_errors >= 1,
            "must be at least 1: zero would halt before any failure",
        );
        bad(
            "max_retries",
            self.max_retries <= MAX_RETRIES,
            "must be at most 100: each retry holds back the partition's commits",
        );
        bad(
            "retry_backoff_base",
            !self.retry_backoff_base.is_zero(),
            "must be more than zero: zero retries in a hot loop",
        );
        bad(
            "retry_backoff_max",
            self.retry_backoff_max >= self.retry_backoff_base,
            "must be at least retry_backoff_base",
        );
        bad(
            "shutdown_timeout",
            !self.shutdown_timeout.is_zero(),
            "must be more than zero: zero abandons every in-flight message",
        );
        // `enable_metrics` and `ordering` are valid by construction (bool and enum).
        if fields.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { fields })
        }
    }

    /// The retry delays this config asks for.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.retry_backoff_base,
            max: self.retry_backoff_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are the original Burrow's (but for the bound, sized for throughput), and
    /// they are valid.
    #[test]
    fn defaults_match_burrow_and_validate() {
        let c = Config::default();
        assert_eq!(c.num_workers, 10);
        assert_eq!(
            c.job_queue_size, 10_000,
            "Burrow's 1000 starves a fast handler"
        );
        assert_eq!(c.max_buffered_bytes, 64 << 20);
        assert_eq!(c.commit_interval, Duration::from_secs(5));
        assert_eq!(c.commit_batch_size, 1000);
        assert_eq!(c.max_consecutive_errors, 10);
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.retry_backoff_base, Duration::from_millis(100));
        assert_eq!(c.ordering, Ordering::Unordered);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.validate(), Ok(()));
    }

    /// Validation names every bad field, not only the first one.
    #[test]
    fn validate_names_every_bad_field() {
        let c = Config {
            num_workers: 0,
            job_queue_size: 0,
            max_buffered_bytes: 0,
            commit_interval: Duration::ZERO,
            commit_batch_size: 0,
            max_consecutive_errors: 0,
            max_retries: 1000,
            retry_backoff_base: Duration::ZERO,
            retry_backoff_max: Duration::ZERO,
            enable_metrics: true,
            ordering: Ordering::Key,
            shutdown_timeout: Duration::ZERO,
        };
        let err = c.validate().expect_err("invalid");
        let names: Vec<_> = err.fields.iter().map(|f| f.field).collect();
        assert_eq!(
            names,
            [
                "num_workers",
                "job_queue_size",
                "max_buffered_bytes",
                "commit_interval",
                "commit_batch_size",
                "max_consecutive_errors",
                "max_retries",
                "retry_backoff_base",
                "shutdown_timeout",
            ]
        );
        assert!(err.to_string().contains("num_workers: must be between 1"));
    }

    /// A backoff cap below the base is refused.
    #[test]
    fn backoff_max_below_base_is_refused() {
        let c = Config {
            retry_backoff_max: Duration::from_millis(10),
            ..Config::default()
        };
        let err = c.validate().expect_err("invalid");
        assert_eq!(err.fields[0].field, "retry_backoff_max");
    }

    /// Config reads from TOML-like data with durations as text, and refuses unknown keys.
    #[test]
    fn config_deserializes_with_humane_durations() {
        let c: Config = serde_json::from_str(
            r#"{"num_workers": 4, "commit_interval": "250ms", "ordering": "key"}"#,
        )
        .expect("valid");
        assert_eq!(c.num_workers, 4);
        assert_eq!(c.commit_interval, Duration::from_millis(250));
        assert_eq!(c.ordering, Ordering::Key);
        assert!(serde_json::from_str::<Config>(r#"{"num_worker": 4}"#).is_err());
    }
}
