//! The end-to-end tests: the real `burrow` binary on a real Kafka-protocol broker (Tansu),
//! started by the test kit. Outcomes and dead letters, exactly-once, hot swap, rollouts,
//! control, crashes, hostile input, codecs and TLS, start and idle costs, `burrow replay`, the
//! kit's own log reader, and the short chaos run.
//!
//! One test binary, not one per file: each links the test kit with librdkafka (about 26 MB),
//! and a build of one per file filled the disk of a CI machine.

mod catalogue;
mod hostile;

mod exactly_once;
mod log;
mod outcomes;

mod control;
mod rollout;
mod swap;

mod chaos;
mod crash;

mod codecs;
mod tls;

mod idle;
mod neighbours;
mod start;

mod replay;
