//! Burrow.
pub mod config;
