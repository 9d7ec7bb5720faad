//! Burrow processes Kafka messages concurrently with at-least-once delivery, optionally
//! through sandboxed WebAssembly plugins.
//!
//! # The library in one example
//!
//! ```no_run
//! use burrow::kafka::Consumer;
//! use burrow::pool::{Config, Pool, ProcessError};
//!
//! # async fn store(_: &[u8]) -> std::io::Result<()> { Ok(()) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut kafka = rdkafka::ClientConfig::new();
//! kafka
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "orders")
//!     .set("enable.auto.commit", "false"); // the pool commits only what is safe
//! let consumer = Consumer::from_config(&kafka)?;
//! consumer.subscribe(&["orders"])?;
//! let pool = Pool::new(consumer, Config::default())?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! pool.run(shutdown, |msg| async move {
//!     match msg.payload.as_deref() {
//!         // An error is retried with backoff, up to `max_retries`...
//!         Some(bytes) => store(bytes).await.map_err(ProcessError::retriable),
//!         // ...unless it is permanent: counted, skipped, and the offset moves on.
//!         None => Err(ProcessError::permanent("empty message")),
//!     }
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
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
//! - [`preflight`] — what `burrow validate` and `burrow run` check before consuming anything:
//!   the Kafka clients built (without connecting), each plugin instantiated under its limits.
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
pub mod preflight;
pub mod reload;
pub mod retry;
pub mod supervisor;
pub mod tenant;
pub mod wasm;
