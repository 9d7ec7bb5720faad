//! A canary: a candidate version of the tenant's plugin serving a stable share of keys for
//! real, judged against the live version, then promoted or rolled back.
//!
//! **Routing.** A message is the candidate's when the SHA-256 of its key (or, without one, of
//! its partition number) falls in the share: the same split in every process and release, so
//! one key sees one version for as long as the canary runs.
//!
//! **Judging.** From the start, each version's [`Tally`] is kept: messages taken, permanent
//! failures (by the version that answered the failing call, which rides with the error),
//! failed calls (traps, deadlines, the memory cap, fuel), and the time per message of its calls
//! (a window of the latest, for the p99). About once a second the tenant hands both tallies to
//! its [`Rules`] (`crate::rollout` makes them from the config), which hold, promote or roll
//! back. An operator can do either through the admin endpoints.
//!
//! **Ending.** Both ends are hot: nothing restarts, nothing in flight is dropped. Promotion
//! swaps the candidate's deployment into the live slot *before* it stops routing to the
//! candidate, so a candidate key never meets the old version; rollback only stops routing.
//! Each worker reads the state for its next batch: a message already running on the candidate
//! finishes there, and its retries go to the version that serves its key now. Under `key` or
//! `partition` ordering the next message of a key starts only when the previous one is done, so
//! a key never runs on two versions at once. The canary's metrics and `/stats` entry stay, with
//! how it ended and why.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};
use serde::Serialize;

use crate::kafka::Message;
use crate::wasm::{Account, CallResult, Deployment, DeploymentSlot};

/// Latest per-message times kept per version for the p99.
const LATENCY_WINDOW: usize = 4096;

/// A candidate version serving a stable share of keys for real (`mode = "canary"`).
pub struct Canary {
    pub candidate: Deployment,
    /// 0 < share < 1.
    pub share: f64,
    /// What decides its end; without rules, only an operator does.
    pub rules: Option<Box<dyn Rules>>,
}

/// Decides a running canary's fate from what both versions did so far.
pub trait Rules: Send + Sync {
    /// Called about once a second while the canary runs.
    fn judge(&self, live: &Tally, candidate: &Tally, running_for: Duration) -> Decision;
}

/// What [`Rules`] decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Hold,
    /// Make the candidate the live version. `rule` names what decided (a metric label).
    Promote {
        rule: &'static str,
        why: String,
    },
    /// Throw the candidate out; the live version serves every key.
    RollBack {
        rule: &'static str,
        why: String,
    },
}

/// What one version did since the canary started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Messages it took (first attempts; retries are calls, not messages).
    pub messages: u64,
    /// Calls it answered or failed, retries included.
    pub calls: u64,
    /// Messages that failed for good on its answer.
    pub failed: u64,
    /// Calls that trapped, ran past the deadline, hit the memory cap or ran out of fuel.
    pub failed_calls: u64,
    /// The 99th percentile of its time per message, over its latest calls.
    #[serde(rename = "p99_ms", serialize_with = "as_millis")]
    pub p99: Option<Duration>,
}

impl Tally {
    /// Permanent failures per message taken (0 before any).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failed, self.messages)
    }

    /// Failed calls per call (0 before any).
    pub fn trap_rate(&self) -> f64 {
        ratio(self.failed_calls, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn as_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64() * 1e3),
        None => s.serialize_none(),
    }
}

/// Who ended a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    Rules,
    Operator,
}

/// How a canary ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum End {
    Promoted { by: By, why: String },
    RolledBack { by: By, why: String },
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, by, why) = match self {
            End::Promoted { by, why } => ("promoted", by, why),
            End::RolledBack { by, why } => ("rolled back", by, why),
        };
        let by = match by {
            By::Rules => "its rules",
            By::Operator => "an operator",
        };
        write!(f, "{what} by {by}: {why}")
    }
}

/// Why a canary could not be ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EndError {
    #[error("tenant {0} has no canary")]
    NoCanary(String),
    #[error("tenant {tenant}'s canary has already ended: {end}")]
    Ended { tenant: String, end: End },
}

/// Which version a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Live,
    Candidate,
}

/// A running (or ended) canary, as the workers and the judge see it.
pub(crate) struct CanarySlot {
    pub(crate) slot: Arc<DeploymentSlot>,
    /// A message is the candidate's when its key's hash is below this.
    bound: u64,
    rules: Option<Box<dyn Rules>>,
    started: Instant,
    /// Read by every worker's batch: one atomic load, not the lock.
    running: AtomicBool,
    end: Mutex<Option<End>>,
    live: Record,
    candidate: Record,
    families: Families,
    /// `burrow_rollout_decisions_total{decision, rule}`.
    decisions: IntCounterVec,
    /// `burrow_rollout_candidate_share`: the share while it runs, 1 once promoted, 0 once
    /// rolled back.
    share: Gauge,
}

/// One version's counters (also its metrics) and its latest times per message.
struct Record {
    messages: IntCounter,
    calls: IntCounter,
    failed: IntCounter,
    failed_calls: IntCounter,
    seconds: Histogram,
    recent: Mutex<VecDeque<Duration>>,
}

/// The canary's metrics, each labelled `version` = `live` or `candidate`.
struct Families {
    messages: IntCounterVec,
    calls: IntCounterVec,
    failures: IntCounterVec,
    seconds: prometheus::HistogramVec,
}

impl Families {
    fn new(tenant: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("tenant", tenant);
        Ok(Self {
            messages: IntCounterVec::new(
                opts(
                    "burrow_rollout_messages_total",
                    "Messages each version of a canary took (version: live or candidate)",
                ),
                &["version"],
            )?,
            calls: IntCounterVec::new(
                opts(
                    "burrow_rollout_calls_total",
                    "Plugin calls of each version of a canary, retries included",
                ),
                &["version"],
            )?,
            failures: IntCounterVec::new(
                opts(
                    "burrow_rollout_failures_total",
                    "Failures of each version of a canary (kind: permanent, a message failed for good; call, a trap, deadline, memory cap or fuel)",
                ),
                &["version", "kind"],
            )?,
            seconds: prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "burrow_rollout_message_seconds",
                    "Time per message of each version's plugin calls during a canary",
                )
                .const_label("tenant", tenant)
                .buckets(prometheus::exponential_buckets(0.000_01, 4.0, 10)?),
                &["version"],
            )?,
        })
    }

    fn record(&self, version: &str) -> Record {
        Record {
            messages: self.messages.with_label_values(&[version]),
            calls: self.calls.with_label_values(&[version]),
            failed: self.failures.with_label_values(&[version, "permanent"]),
            failed_calls: self.failures.with_label_values(&[version, "call"]),
            seconds: self.seconds.with_label_values(&[version]),
            recent: Mutex::new(VecDeque::with_capacity(LATENCY_WINDOW)),
        }
    }
}

impl Record {
    fn tally(&self) -> Tally {
        let mut recent: Vec<Duration> = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        Tally {
            messages: self.messages.get(),
            calls: self.calls.get(),
            failed: self.failed.get(),
            failed_calls: self.failed_calls.get(),
            p99: percentile(&mut recent, 0.99),
        }
    }
}

/// The `q` quantile of `values` (nearest rank); `None` if there are none.
fn percentile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, at, _) = values.select_nth_unstable(rank);
    Some(*at)
}

impl CanarySlot {
    /// The canary of tenant `tenant`, starting now, its candidate's calls charged to the
    /// tenant's `account`; its metrics are [`Self::collectors`].
    pub(crate) fn new(
        canary: Canary,
        tenant: &str,
        account: &Account,
    ) -> Result<Self, prometheus::Error> {
        let families = Families::new(tenant)?;
        let share = Gauge::with_opts(
            Opts::new(
                "burrow_rollout_candidate_share",
                "Share of keys a canary's candidate serves: 1 once promoted, 0 once rolled back",
            )
            .const_label("tenant", tenant),
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "burrow_rollout_decisions_total",
                "How canaries ended (decision: promoted or rolled-back; rule: what decided, or operator)",
            )
            .const_label("tenant", tenant),
            &["decision", "rule"],
        )?;
        let fraction = canary.share.clamp(0.0, 1.0);
        share.set(fraction);
        Ok(Self {
            slot: Arc::new(DeploymentSlot::charging(canary.candidate, account.clone())),
            bound: (fraction * u64::MAX as f64) as u64,
            rules: canary.rules,
            started: Instant::now(),
            running: AtomicBool::new(true),
            end: Mutex::new(None),
            live: families.record("live"),
            candidate: families.record("candidate"),
            families,
            decisions,
            share,
        })
    }

    /// Its metrics, for the tenant's registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let f = &self.families;
        vec![
            Box::new(f.messages.clone()),
            Box::new(f.calls.clone()),
            Box::new(f.failures.clone()),
            Box::new(f.seconds.clone()),
            Box::new(self.decisions.clone()),
            Box::new(self.share.clone()),
        ]
    }

    /// Whether it still routes keys to the candidate.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The version `message` goes to while the canary runs.
    pub(crate) fn side(&self, message: &Message) -> Side {
        if key_hash(message) < self.bound {
            Side::Candidate
        } else {
            Side::Live
        }
    }

    fn record(&self, side: Side) -> &Record {
        match side {
            Side::Live => &self.live,
            Side::Candidate => &self.candidate,
        }
    }

    /// Counts one version's calls of a batch: `first` first attempts among them, and the
    /// `elapsed` time of the whole call, shared out per message.
    pub(crate) fn count_calls(
        &self,
        side: Side,
        first: usize,
        results: &[CallResult],
        elapsed: Duration,
    ) {
        if results.is_empty() {
            return;
        }
        let record = self.record(side);
        record.messages.inc_by(first as u64);
        record.calls.inc_by(results.len() as u64);
        let failed = results.iter().filter(|r| r.result.is_err()).count();
        record.failed_calls.inc_by(failed as u64);
        let each = elapsed / results.len() as u32;
        let mut recent = record.recent.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in results {
            record.seconds.observe(each.as_secs_f64());
            if recent.len() == LATENCY_WINDOW {
                recent.pop_front();
            }
            recent.push_back(each);
        }
    }

    /// Counts a message that failed for good on `side`'s answer.
    pub(crate) fn count_failure(&self, side: Side) {
        self.record(side).failed.inc();
    }

    /// Both versions' tallies so far: (live, candidate).
    pub(crate) fn tallies(&self) -> (Tally, Tally) {
        (self.live.tally(), self.candidate.tally())
    }

    /// What the rules say now (`Hold` without rules, or once ended).
    pub(crate) fn judge(&self) -> Decision {
        match &self.rules {
            Some(rules) if self.is_running() => {
                let (live, candidate) = self.tallies();
                rules.judge(&live, &candidate, self.started.elapsed())
            }
            _ => Decision::Hold,
        }
    }

    /// Ends the canary as `end`: `before_stop` runs first (a promotion's swap), under the
    /// lock that makes the end happen once.
    pub(crate) fn finish(
        &self,
        tenant: &str,
        end: End,
        rule: &str,
        before_stop: impl FnOnce(),
    ) -> Result<(), EndError> {
        let mut ended = self.end.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(end) = ended.as_ref() {
            return Err(EndError::Ended {
                tenant: tenant.to_owned(),
                end: end.clone(),
            });
        }
        before_stop();
        self.running.store(false, Ordering::Release);
        let (decision, share) = match &end {
            End::Promoted { .. } => ("promoted", 1.0),
            End::RolledBack { .. } => ("rolled-back", 0.0),
        };
        self.share.set(share);
        self.decisions.with_label_values(&[decision, rule]).inc();
        *ended = Some(end);
        Ok(())
    }

    /// For `/stats`: the candidate, the share, its state and both tallies.
    pub(crate) fn report(&self) -> serde_json::Value {
        let (live, candidate) = self.tallies();
        let mut report = serde_json::json!({
            "mode": "canary",
            "candidate": self.slot.current().plugin().id().to_string(),
            "share": self.bound as f64 / u64::MAX as f64,
            "state": "running",
            "running_for_s": self.started.elapsed().as_secs(),
            "messages": { "live": live.messages, "candidate": candidate.messages },
            "versions": { "live": live, "candidate": candidate },
        });
        let end = self.end.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(serde_json::Value::Object(end)) = end.as_ref().map(|e| serde_json::json!(e)) {
            for (key, value) in end {
                report[key] = value;
            }
        }
        report
    }
}

/// The first 8 bytes of SHA-256 of a message's key (or, without one, its partition number).
fn key_hash(message: &Message) -> u64 {
    use sha2::Digest as _;
    let digest = match &message.key {
        Some(key) => sha2::Sha256::digest(key),
        None => sha2::Sha256::digest(message.partition.to_be_bytes()),
    };
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key always hashes the same; over many keys a bound takes about its share.
    #[test]
    fn a_key_hash_is_stable_and_spreads_evenly() {
        let message = |key: String| {
            let mut m = Message::new("t", 0, 0);
            m.key = Some(key.into_bytes());
            m
        };
        assert_eq!(
            key_hash(&message("k1".into())),
            key_hash(&message("k1".into()))
        );
        let bound = (0.25 * u64::MAX as f64) as u64;
        let taken = (0..10_000)
            .filter(|i| key_hash(&message(format!("key{i}"))) < bound)
            .count();
        assert!((2_300..2_700).contains(&taken), "{taken} of 10,000");
    }

    /// The p99 is the nearest-rank value: of 1..=100 ms, 99 ms; of one value, that value.
    #[test]
    fn the_p99_is_the_nearest_rank() {
        let mut values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            percentile(&mut values, 0.99),
            Some(Duration::from_millis(99))
        );
        assert_eq!(
            percentile(&mut [Duration::from_millis(7)], 0.99),
            Some(Duration::from_millis(7))
        );
        assert_eq!(percentile(&mut [], 0.99), None);
    }
}
