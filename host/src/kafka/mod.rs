//! Kafka clients: the consumer the pool owns, its rebalance callbacks, the poll loop, the
//! message type handlers read, and the acknowledged producer the host uses for emitted records
//! and dead letters. Every client's librdkafka log lines and errors are rate-limited
//! ([`client_log`]).
//!
//! rdkafka runs rebalance and commit callbacks on the thread that polls. The pool polls from one
//! dedicated OS thread ([`spawn_poller`]), which halts the pool, naming why, if it cannot go
//! on. Its [`PoolContext`] hands each revoke to the pool's coordinator and blocks until the
//! coordinator has drained and committed those partitions, so a partition is let go only after
//! its final commit.

pub mod client_log;
mod consumer;
mod message;
pub mod producer;

pub use consumer::{Consumer, PoolContext};
pub use message::{Header, Message};

pub(crate) use consumer::{Event, Poller, Tp, spawn_poller};
