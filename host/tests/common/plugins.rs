//! Finding the plugins `make plugins` built; shared by the test support modules.

use std::path::PathBuf;

use anyhow::bail;

/// Where `make plugins` puts the plugins, or `BURROW_PLUGIN_DIR`.
fn plugin_dir() -> PathBuf {
    std::env::var_os("BURROW_PLUGIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
        PathBuf::from,
    )
}

/// The path of a built plugin; fails the test with the fix if it is not there.
pub fn plugin_path(name: &str) -> anyhow::Result<PathBuf> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "{} not found: run `make plugins` first (or set BURROW_PLUGIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}
