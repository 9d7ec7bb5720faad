//! The pool's Kafka side: the consumer it owns, its rebalance callbacks, the poll loop (which
//! reads each partition's own queue in batches, `reader`), and the message type handlers read; [`inspect`] reads where a topic and a group stand (end offsets,
//! committed offsets, lag) without joining the group. Every client's librdkafka log lines and
//! errors are rate-limited ([`client_log`]).
//!
//! rdkafka runs rebalance and commit callbacks on the thread that polls. The pool polls from one
//! dedicated OS thread (`spawn_poller`), which halts the pool, naming why, if it cannot go
//! on. Its [`PoolContext`] hands each revoke to the pool's coordinator and blocks until the
//! coordinator has drained and committed those partitions, so a partition is let go only after
//! its final commit.

pub mod client_log;
mod consumer;
pub mod inspect;
mod message;
mod reader;

pub use consumer::{Consumer, PoolContext};
pub use message::{Header, Message, OutRecord};

pub(crate) use consumer::{Event, Link, PollWaker, Poller, Run, Seeks, Tp, spawn_poller};
