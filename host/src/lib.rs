//! Burrow.
pub mod admin;
pub mod config;
pub mod demo_data;
pub mod kafka;
pub mod reload;
pub mod wasm;
