//! Kafka clients.
pub mod producer;
