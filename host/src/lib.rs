//! Burrow processes Kafka messages concurrently with at-least-once delivery, optionally
//! through sandboxed WebAssembly plugins.
//!
//! The pool itself — consumer, offsets, ordering, retries, commits — is the `burrow-pool` crate,
//! re-exported here as [`pool`]; a library user who does not need WASM depends on it alone.
//! This crate is the host: the `burrow` binary and what it is built from.
//!
//! # Layout
//!
//! The data's path through the crate, in order:
//!
//! - [`config`] — the host's TOML file (`burrow run --config`), environment overrides, and
//!   validation that names every bad key.
//! - [`pool`] — the `burrow-pool` crate: the consumer, many workers, offsets, ordering,
//!   retries, backpressure, rebalances, commits and the pool's metrics. Its docs state the
//!   guarantee.
//! - [`tenant`] — one tenant: its start (what it waits for, said and bounded), its pool, its
//!   plugin as the pool's handler, outcomes to offsets, and a canary's routing, tallies and hot
//!   promotion or rollback.
//! - [`kafka`] — the pool's message types and the acknowledged producer for emits and dead
//!   letters.
//! - [`wasm`] — the plugin runtime: one engine, compiled-once plugins, per-worker instances,
//!   one executor whose threads every tenant shares by weight (and cap), limits, the sandbox,
//!   hot swap. It knows nothing of Kafka.
//! - [`preflight`] — what `burrow validate` and `burrow run` check before consuming anything:
//!   the Kafka clients built (without connecting), each plugin instantiated under its limits.
//! - [`reload`] — what a changed config file means for a running host.
//! - [`admin`] — the HTTP listener: `/metrics`, `/healthz`, `/readyz`, `/stats`, and the
//!   token-guarded controls (pause, resume, promote, rollback).
//! - [`demo_data`] — the sample traffic of `burrow demo`.
//! - [`plugin_test`] — `burrow test`: records from a file through a plugin, no Kafka.
//! - [`project`] — plugin projects: `burrow new` writes one, `burrow build` builds it.
//! - [`replay`] — `burrow replay`: a range of a tenant's input through two versions, compared.
//! - [`rollout`] — a candidate version beside a tenant's live one: in shadow, or as a canary
//!   judged by the config's rules.

pub mod admin;
pub mod config;
pub mod demo;
pub mod demo_data;
pub mod kafka;
pub mod plugin_test;
pub mod preflight;
pub mod project;
pub mod reload;
pub mod replay;
pub mod rollout;
pub mod supervisor;
pub mod tenant;
pub mod wasm;

pub use burrow_pool as pool;
