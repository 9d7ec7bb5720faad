//! Kafka on the host's side: the pool's consumer and message types (re-exported from
//! [`burrow_pool::kafka`]), and the acknowledged [`producer`] for emitted records and dead
//! letters.

pub mod producer;

pub use burrow_pool::kafka::{Consumer, Header, Message, PoolContext, client_log};
