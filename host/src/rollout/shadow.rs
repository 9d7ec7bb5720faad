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
/// Bytes (messages and the live verdicts' emits) the shadow may be behind by before it skips:
/// what a slow candidate can make the host hold, whatever the messages weigh.
const QUEUE_BYTES: u64 = 64 << 20;
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
    /// What waits in the queue.
    waiting: Arc<Backlog>,
    counts: Arc<Counts>,
}

/// What waits for the shadow, in messages and bytes; an offer that would pass either bound is
/// skipped.
#[derive(Default)]
struct Backlog {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Backlog {
    /// Counts `offer` in, unless it would pass a bound.
    fn try_take(&self, offer: &Offer) -> bool {
        let (n, bytes) = offer.weight();
        let messages = self.messages.fetch_add(n, Ordering::Relaxed) + n;
        let held = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if messages > QUEUE as u64 || held > QUEUE_BYTES {
            self.give_back(offer);
            return false;
        }
        true
    }

    /// Counts `offer` out: served, or never queued.
    fn give_back(&self, offer: &Offer) {
        let (n, bytes) = offer.weight();
        self.messages.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Offer {
    /// Its messages, and the bytes it holds: theirs and the live verdicts' emits.
    fn weight(&self) -> (u64, u64) {
        let messages: usize = self.attempts.iter().map(|a| a.message.weight()).sum();
        let emits: u64 = self
            .live
            .iter()
            .flatten()
            .flat_map(|p| &p.emitted)
            .map(crate::wasm::record_size)
            .sum();
        let n = self.attempts.len() as u64;
        (n, emits.saturating_add(messages as u64))
    }
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
        let waiting = Arc::new(Backlog::default());
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
                    thread_waiting.give_back(&offer);
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

impl Shadow {
    fn skipped(&self, messages: usize) {
        self.counts
            .results
            .with_label_values(&["skipped"])
            .inc_by(messages as u64);
    }
}

impl Observer for Shadow {
    /// Hands a batch and its live results to the shadow, or skips it if the shadow is `QUEUE`
    /// messages or `QUEUE_BYTES` bytes behind. Never waits.
    fn offer(&self, attempts: Vec<Attempt>, live: Vec<Result<Processed, CallError>>) {
        let offer = Offer { attempts, live };
        if !self.waiting.try_take(&offer) {
            self.skipped(offer.attempts.len());
            return;
        }
        if let Err(TrySendError::Full(offer) | TrySendError::Disconnected(offer)) =
            self.offers.try_send(offer)
        {
            self.waiting.give_back(&offer);
            self.skipped(offer.attempts.len());
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
            "behind": self.waiting.messages.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Message;

    fn offer(messages: usize, bytes_each: usize) -> Offer {
        let attempts = (0..messages)
            .map(|i| {
                let mut m = Message::new("in", 0, i64::try_from(i).unwrap_or_default());
                m.payload = Some(vec![0; bytes_each]);
                Attempt {
                    message: Arc::new(m),
                    attempt: 1,
                }
            })
            .collect();
        Offer {
            attempts,
            live: Vec::new(),
        }
    }

    /// Finding 4 of issue 18: the shadow's queue held up to 10,000 messages whatever they
    /// weighed. Large messages stop it at `QUEUE_BYTES`, few as they are; served ones make room.
    #[test]
    fn the_shadow_is_bounded_in_bytes_as_in_messages() {
        let backlog = Backlog::default();
        let big = offer(5, 10 << 20);
        assert!(backlog.try_take(&big), "50 MiB fits");
        assert!(
            !backlog.try_take(&big),
            "100 MiB does not, though 10 messages would"
        );
        assert_eq!(
            backlog.messages.load(Ordering::Relaxed),
            5,
            "a refused offer leaves nothing"
        );
        backlog.give_back(&big);
        assert!(backlog.try_take(&big), "served, it makes room");
        assert!(backlog.try_take(&offer(QUEUE - 5, 1)));
        assert!(
            !backlog.try_take(&offer(1, 1)),
            "and the bound in messages holds"
        );
    }
}
