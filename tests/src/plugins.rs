//! Finding the plugins `make plugins` built, and making variants of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The workspace root (this crate is `tests/` in it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where `make plugins` puts the plugins, or `BURROW_PLUGIN_DIR`.
fn plugin_dir() -> PathBuf {
    std::env::var_os("BURROW_PLUGIN_DIR")
        .map_or_else(|| workspace_root().join("target/plugins"), PathBuf::from)
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

/// A copy of plugin `name` in `dir`, as `file`: a test may overwrite it (a hot swap) without
/// touching the built one.
pub fn copy_plugin(name: &str, dir: &Path, file: &str) -> anyhow::Result<PathBuf> {
    let (from, to) = (plugin_path(name)?, dir.join(file));
    std::fs::copy(&from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(to)
}

/// The short version the host reports for the plugin at `path` (first 12 hex digits of its
/// sha256, as `burrow check` prints it), read from `burrow check`'s output.
pub fn version_of(path: &Path) -> anyhow::Result<String> {
    let output = std::process::Command::new(crate::process::burrow_bin()?)
        .arg("check")
        .arg(path)
        .output()
        .context("running burrow check")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("version"))
        .map(|v| v.trim().to_owned())
        .with_context(|| {
            format!(
                "burrow check {} printed no version: {stdout}",
                path.display()
            )
        })
}
