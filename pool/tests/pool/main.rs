//! The pool's integration tests, against librdkafka's mock cluster, in data order: what a
//! handler sees (batches, late results), what is committed and when, the bound on what the
//! pool holds, the group's life (rebalances, revokes, rewinds, pauses), transactions.
//!
//! One test binary, not one per file: each binary links the pool, librdkafka and the test kit
//! (about 30 MB), and a build of thirteen filled the disk of a CI machine.

mod support;

mod batch;
mod pending;

mod commit;
mod delivery;
mod failure_log;
mod hostile;

mod flow;
mod pause;

mod group;
mod inspect;
mod revoke;
mod rewind;

mod transaction;
