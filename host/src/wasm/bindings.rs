//! The one place the host generates bindings for the plugin contract (`wit/plugin.wit`).
//!
//! Everything else in the host imports the contract's types from here, so a change to the WIT
//! shows up as compile errors in one crate, not as two copies drifting apart. The world's
//! `use types.{message, outcome}` already puts `Message` and `Outcome` at this module's root.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "processor",
    // `emit` traps a plugin that floods the buffer; that needs a fallible host import.
    imports: { "burrow:plugin/host.emit": trappable },
    // Tests and callers compare outcomes and records.
    additional_derives: [PartialEq, Eq],
});

pub use self::burrow::plugin::host::{Host, Level};
pub use self::burrow::plugin::types::{Header, OutputRecord};
