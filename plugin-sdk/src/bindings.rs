//! The one `wit_bindgen::generate!` call: the ABI glue between the plugin contract
//! (`wit/plugin.wit`) and this crate's own types.
//!
//! Plugin authors never see this module; [`crate::export!`] is the only thing that reaches in.
//! The records that carry bytes (`header`, `output-record`) are mapped onto the public types in
//! `message` with `with`, so an emitted [`crate::Record`] is lowered directly. Messages arrive
//! as one batch frame (`list<u8>`), read in place by `__private::run_frame`. `outcome` and `level` stay generated: the public `Outcome` carries a
//! `Duration`, not milliseconds, and `level` is an enum the glue lowers by discriminant.

#![allow(
    unsafe_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::too_many_arguments
)]

wit_bindgen::generate!({
    path: "../wit",
    world: "processor",
    with: {
        "burrow:plugin/types@0.3.0/header": crate::message::Header,
        "burrow:plugin/types@0.3.0/output-record": crate::message::Record,
    },
    // `export!` expands in the plugin's crate, which depends on `burrow-plugin` only: every
    // path the expansion names must go through this crate.
    pub_export_macro: true,
    export_macro_name: "__export_guest",
    default_bindings_module: "::burrow_plugin::__private::bindings",
    runtime_path: "::burrow_plugin::__private::wit_bindgen::rt",
});
