//! The WASI a plugin sees: a locked-down context, widened only by what a deployment grants.
//!
//! By default a plugin gets what Rust's `std` needs to run and nothing that reaches outside:
//! clocks and randomness; an empty stdin; stdout/stderr captured into the host's log; no
//! environment, no arguments, no directories, no sockets, no name lookup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::stdio::CapturedOutput;

/// What a deployment grants beyond the locked-down default. `Default` grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Environment variables the plugin sees, by name. Nothing of the host's own environment
    /// leaks in; only these.
    pub env: BTreeMap<String, String>,
    /// Host directories the plugin may read, mounted read-only at the same path in the guest.
    pub read_only_dirs: Vec<PathBuf>,
}

/// Why a sandbox could not be built for an instance.
#[derive(Debug, thiserror::Error)]
#[error("cannot grant read access to {}: {reason}", dir.display())]
pub struct SandboxError {
    dir: PathBuf,
    reason: String,
}

/// Builds one instance's WASI context.
pub(crate) fn wasi_ctx(
    capabilities: &Capabilities,
    stdout: &CapturedOutput,
    stderr: &CapturedOutput,
) -> Result<WasiCtx, SandboxError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        // The builder's defaults already refuse these; saying so here keeps the guarantee from
        // depending on a default that a wasmtime upgrade could change.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for (name, value) in &capabilities.env {
        builder.env(name, value);
    }
    for dir in &capabilities.read_only_dirs {
        let guest_path = dir.to_string_lossy();
        builder
            .preopened_dir(dir, guest_path, FsPerms::ReadOnly)
            .map_err(|e| SandboxError {
                dir: dir.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(builder.build())
}
