//! The one place the host generates bindings for the plugin contract (`wit/plugin.wit`).
//!
//! Everything else in the host imports the contract's types from here, so a change to the WIT
//! shows up as compile errors in one crate, not as two copies drifting apart. The world's
//! `use types.{outcome}` already puts `Outcome` at this module's root.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "processor",
    // `emit` traps a plugin that floods the buffer; both `emit` and `log` one that names a
    // message outside its batch: they need a fallible host import.
    imports: {
        "burrow:plugin/host.emit": trappable,
        "burrow:plugin/host.log": trappable,
    },
    // `process` is called as a future so a deadline can drop it wherever the guest is, even
    // parked in a blocking WASI call (a sleep, a poll). Our own imports stay synchronous: they
    // never block, and a sync host function is fine inside an async call.
    exports: { default: async },
    // Tests and callers compare outcomes and records.
    additional_derives: [PartialEq, Eq],
});

pub use self::burrow::plugin::host::{Host, Level};
pub use self::burrow::plugin::types::{Header, OutputRecord};
