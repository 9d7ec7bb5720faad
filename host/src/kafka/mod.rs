//! Kafka on the host's side: the pool's consumer and message types (re-exported from
//! [`burrow_pool::kafka`]), the acknowledged [`producer`] for emitted records and dead
//! letters, and which of `[kafka.options]` each kind of client reads ([`scope`]).

pub mod producer;
pub mod scope;

pub use burrow_pool::kafka::{Consumer, Header, Message, PoolContext, client_log};
