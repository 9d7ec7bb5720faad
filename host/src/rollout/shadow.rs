//! A shadow: the candidate runs on the same messages as the live version, is compared with
//! it, and has no effect.
//!
//! After a worker's live call returns, it offers the messages and the live verdicts to the
//! shadow without waiting: a bounded queue, and when it is full the messages are skipped (and
//! counted), so a slow or trapping candidate costs the live path one copy of each message's
//! handle and nothing more. The shadow's own thread runs the candidate as `burrow test` runs a
//! plugin (the tenant's limits, settings, sandbox and output topics; one instance reused and
//! replaced after a failure; fuel counted), compares each verdict with the live one as `burrow
//! replay` does, and counts agreements and each kind of difference. Nothing it does reaches
//! Kafka: its emits are compared, never produced.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{IntCounterVec, Opts};
use serde_json::Value;

use crate::kafka::producer::{OutRecord, Producer};
use crate::plugin_test::Runner;
use crate::plugin_test::verdict::Verdict;
use crate::pool::Attempt;
use crate::tenant::{Observer, to_plugin_message};
use crate::wasm::{CallError, Processed};

/// Messages the shadow may be behind by before it skips.
const QUEUE: usize = 10_000;
/// Differing messages kept for `/stats`.
const SAMPLES: usize = 10;

/// One worker's batch, offered after its live call.
struct Offer {
    attempts: Vec<Attempt>,
    live: Vec<Result<Processed, CallError>>,
}

/// The shadow of one tenant. Dropping it stops its thread after the batch in hand.
pub(super) struct Shadow {
    offers: SyncSender<Offer>,
    /// Messages waiting in the queue (the bound counts messages, not batches).
    waiting: Arc<AtomicU64>,
    counts: Arc<Counts>,
}

/// What the shadow found so far.
struct Counts {
    /// `agree`, `skipped`, or the kind of difference → messages.
    results: IntCounterVec,
    samples: Mutex<VecDeque<Value>>,
    candidate: String,
    /// The candidate's calls, their wall time (ns) and fuel, summed.
    calls: AtomicU64,
    nanos: AtomicU64,
    fuel: AtomicU64,
}

impl Shadow {
    /// Starts the shadow thread running `candidate`, describing each difference to `diffs`'s
    /// topic if given.
    pub(super) fn start(
        tenant: &str,
        candidate: Runner,
        diffs: Option<(Producer, String)>,
    ) -> Result<Self, ShadowError> {
        let results = IntCounterVec::new(
            Opts::new(
                "burrow_shadow_messages_total",
                "Messages the candidate version ran in shadow, by result: agree, a kind of difference (outcome, reason, retry delay, emits), or skipped (the shadow was behind)",
            )
            .const_label("tenant", tenant),
            &["result"],
        )?;
        let counts = Arc::new(Counts {
            results,
            samples: Mutex::new(VecDeque::new()),
            candidate: candidate.version().to_string(),
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
        });
        let waiting = Arc::new(AtomicU64::new(0));
        let (offers, queue) = mpsc::sync_channel::<Offer>(QUEUE);
        let thread_counts = Arc::clone(&counts);
        let thread_waiting = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name(format!("burrow-shadow-{}", tenant.replace('\0', "?")))
            .spawn(move || {
                let mut instance = candidate.instance();
                // The producer's futures want a runtime; this thread's own, used for nothing else.
                let Ok(executor) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    tracing::error!("the shadow cannot start its executor; it compares nothing");
                    return;
                };
                while let Ok(offer) = queue.recv() {
                    thread_waiting.fetch_sub(offer.attempts.len() as u64, Ordering::Relaxed);
                    for (attempt, live) in offer.attempts.iter().zip(offer.live) {
                        let message = to_plugin_message(&attempt.message, attempt.attempt);
                        let live = candidate.verdict_of(live);
                        let ran = candidate.call(&mut instance, &message);
                        thread_counts.timed(&ran);
                        let Some(sample) = thread_counts.record(&message, &live, &ran.verdict) else {
                            continue;
                        };
                        if let Some((producer, topic)) = &diffs {
                            let record = OutRecord {
                                topic: topic.clone(),
                                key: Some(format!("{}/{}@{}", message.topic, message.partition, message.offset).into_bytes()),
                                value: Some(sample.to_string().into_bytes()),
                                headers: Vec::new(),
                            };
                            if let Err(e) = executor.block_on(producer.send(&record)) {
                                tracing::warn!(error = %e, "a shadow difference could not be produced to the diff_topic");
                            }
                        }
                    }
                }
            })
            .map_err(ShadowError::Thread)?;
        Ok(Self {
            offers,
            waiting,
            counts,
        })
    }
}

impl Observer for Shadow {
    /// Hands a batch and its live results to the shadow, or skips it if the shadow is `QUEUE`
    /// messages behind. Never waits.
    fn offer(&self, attempts: Vec<Attempt>, live: Vec<Result<Processed, CallError>>) {
        let n = attempts.len() as u64;
        if self.waiting.fetch_add(n, Ordering::Relaxed) + n > QUEUE as u64 {
            self.waiting.fetch_sub(n, Ordering::Relaxed);
            self.counts
                .results
                .with_label_values(&["skipped"])
                .inc_by(n);
            return;
        }
        match self.offers.try_send(Offer { attempts, live }) {
            Ok(()) => {}
            Err(TrySendError::Full(offer) | TrySendError::Disconnected(offer)) => {
                self.waiting.fetch_sub(n, Ordering::Relaxed);
                let skipped = offer.attempts.len() as u64;
                self.counts
                    .results
                    .with_label_values(&["skipped"])
                    .inc_by(skipped);
            }
        }
    }

    /// The candidate, counts by result, the last differing messages.
    fn report(&self) -> Value {
        let c = &self.counts;
        let results: BTreeMap<&str, u64> = [
            "agree",
            "outcome",
            "reason",
            "retry delay",
            "emits",
            "skipped",
        ]
        .into_iter()
        .map(|r| (r, c.results.with_label_values(&[r]).get()))
        .collect();
        let samples: Vec<Value> = c
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let calls = c.calls.load(Ordering::Relaxed).max(1);
        serde_json::json!({
            "mode": "shadow",
            "candidate": c.candidate,
            "candidate_mean_ms": c.nanos.load(Ordering::Relaxed) as f64 / calls as f64 / 1e6,
            "candidate_mean_fuel": c.fuel.load(Ordering::Relaxed) / calls,
            "results": results,
            "behind": self.waiting.load(Ordering::Relaxed),
            "differing_samples": samples,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.counts.results.clone())]
    }
}

impl Counts {
    fn timed(&self, ran: &crate::plugin_test::Ran) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(ran.time.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.fuel
            .fetch_add(ran.fuel.unwrap_or(0), Ordering::Relaxed);
    }

    /// Counts one comparison; for a difference, keeps it as a sample and returns it.
    fn record(
        &self,
        message: &crate::wasm::Message,
        live: &Verdict,
        candidate: &Verdict,
    ) -> Option<Value> {
        let Some(kind) = live.difference(candidate) else {
            self.results.with_label_values(&["agree"]).inc();
            return None;
        };
        self.results.with_label_values(&[kind]).inc();
        let sample = serde_json::json!({
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "difference": kind,
            "live": live.to_json(0, message.offset),
            "candidate": candidate.to_json(0, message.offset),
        });
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample.clone());
        Some(sample)
    }
}

/// Why a shadow could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the shadow thread: {0}")]
    Thread(std::io::Error),
}
