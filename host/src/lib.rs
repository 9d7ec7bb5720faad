//! Burrow processes Kafka messages concurrently with at-least-once delivery, optionally
//! through sandboxed WebAssembly plugins.
//!
//! # Layout
//!
//! The data's path through the crate, in order:
//!
//! - [`config`] — the host's TOML file (`burrow run --config`), environment overrides, and
//!   validation that names every bad key.
//! - [`kafka`] — the consumer the pool owns, its rebalance/commit callbacks, the poll loop, the
//!   [`kafka::Message`] handlers read, and the acknowledged producer for emits and dead letters.
//! - [`pool`] — the library face: [`pool::Pool`] runs a handler over a consumer with many
//!   workers, ordering (`unordered`, `partition`, `key`), retries, backpressure, rebalances and
//!   shutdown, committing only offsets that are safe. Its module docs state the guarantee.
//! - [`offsets`] — the per-partition tracker deciding which offset is safe to commit.
//! - [`retry`] — backoff delays and the timers that park a retry without holding a worker.
//! - [`wasm`] — the plugin runtime: one engine, compiled-once plugins, per-worker instances,
//!   limits, the sandbox, hot swap. It knows nothing of Kafka.
//! - [`reload`] — what a changed config file means for a running host.
//! - [`admin`] — the HTTP listener: `/metrics`, `/healthz`, `/readyz`, `/stats`.
//! - [`metrics`] — the pool's Prometheus metrics (`burrow_*`), in a registry the caller chooses.
//! - [`demo_data`] — the sample traffic of `burrow demo`.

pub mod admin;
pub mod config;
pub mod demo;
pub mod demo_data;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod pool;
pub mod reload;
pub mod retry;
pub mod supervisor;
pub mod tenant;
pub mod wasm;
