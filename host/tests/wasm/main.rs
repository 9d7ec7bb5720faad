//! The WASM runtime's tests, with the real plugins (`make plugins`), no Kafka: loading and
//! caching a plugin, calls and their outcomes, batches, limits, the sandbox, logging, recycling,
//! swaps, the plugin threads; then the plugin author's commands (`burrow check`, `new`, `test`).
//!
//! One test binary, not one per file: each links the host with Wasmtime and Cranelift (about
//! 70 MB), and a build of one per file filled the disk of a CI machine.

mod support;

mod cache;
mod load;

mod batch;
mod config;
mod logging;
mod outcomes;

mod executor;
mod limits;
mod recycle;
mod sandbox;
mod swap;

mod burrow_test;
mod check;
mod new;
