//! Burrow.
pub mod wasm;
