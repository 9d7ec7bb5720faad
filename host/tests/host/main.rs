//! The host end to end on librdkafka's mock cluster, in this process: outcomes, dead letters
//! and failure policies, isolation between tenants, live changes, the admin listener, and the
//! real binary's `validate` and `run`.
//!
//! One test binary, not one per file: each links the host with Wasmtime and Cranelift (about
//! 85 MB), and a build of one per file filled the disk of a CI machine. `shutdown.rs` stays a
//! binary of its own: it checks every log line its process writes.

mod support;

mod dead_letters;
mod outcomes;
mod policies;

mod isolation;
mod swap;

mod admin;
mod cli;
