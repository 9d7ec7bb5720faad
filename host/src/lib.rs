//! Burrow processes Kafka messages concurrently with at-least-once delivery.
//!
//! # Layout
//!
//! - [`pool`] — the library face: [`pool::Pool`] runs a handler over a consumer with many
//!   workers, ordering (`unordered`, `partition`, `key`), retries, backpressure, rebalances and
//!   shutdown, committing only offsets that are safe. Its module docs state the guarantee.
//! - [`offsets`] — the per-partition tracker deciding which offset is safe to commit.
//! - [`retry`] — backoff delays and the timers that park a retry without holding a worker.
//! - [`kafka`] — the consumer the pool owns, its rebalance/commit callbacks, the poll loop, and
//!   the [`kafka::Message`] handlers read.
//! - [`metrics`] — the pool's Prometheus metrics (`burrow_*`), in a registry the caller chooses.

pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod pool;
pub mod retry;
