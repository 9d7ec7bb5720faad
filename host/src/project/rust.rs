//! Rust plugin projects: a crate depending on `burrow-plugin`, built for `wasm32-wasip2`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ProjectError, fill, io};

const CARGO_TOML: &str = include_str!("templates/rust/Cargo.toml.in");
const LIB_RS: &str = include_str!("templates/rust/lib.rs");
const SAMPLE: &str = include_str!("templates/rust/sample.jsonl");
const README: &str = include_str!("templates/rust/README.md");

/// The target a plugin is built for.
const TARGET: &str = "wasm32-wasip2";

/// The files of a new project for plugin `name` in `dir`.
/// Inside a Burrow checkout the checkout's `Cargo.lock` comes along, so the new crate builds
/// with the versions the SDK is tested with (and nothing new to download).
pub(super) fn files(name: &str, dir: &Path) -> Vec<(String, String)> {
    let sdk = checkout_sdk(dir);
    let dependency = sdk_dependency(sdk.as_deref());
    let values = [("name", name), ("sdk_dependency", dependency.as_str())];
    let mut files: Vec<(String, String)> = [
        ("Cargo.toml", fill(CARGO_TOML, &values)),
        ("src/lib.rs", fill(LIB_RS, &values)),
        ("sample.jsonl", SAMPLE.to_owned()),
        ("README.md", fill(README, &values)),
    ]
    .map(|(file, text)| (file.to_owned(), text))
    .into();
    let lock = sdk.and_then(|sdk| std::fs::read_to_string(sdk.parent()?.join("Cargo.lock")).ok());
    files.extend(lock.map(|lock| ("Cargo.lock".to_owned(), lock)));
    files
}

/// `burrow-plugin` by path to a checkout's SDK (the one that matches this binary), by version
/// otherwise.
fn sdk_dependency(checkout_sdk: Option<&Path>) -> String {
    match checkout_sdk {
        Some(sdk) => format!(
            "burrow-plugin = {{ path = {:?} }}",
            sdk.display().to_string()
        ),
        None => format!("burrow-plugin = \"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

/// The `plugin-sdk` directory of the Burrow checkout `dir` is in, if any.
fn checkout_sdk(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    absolute.ancestors().skip(1).find_map(|root| {
        let sdk = root.join("plugin-sdk");
        let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).ok()?;
        manifest.contains("name = \"burrow-plugin\"").then_some(sdk)
    })
}

/// `cargo build --release --target wasm32-wasip2`, then the component copied to `out`.
pub(super) fn build(dir: &Path, out: &Path) -> Result<(), ProjectError> {
    check_target()?;
    let mut command = Command::new("cargo");
    command
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProjectError::Missing {
            tool: "cargo",
            fix: "install Rust from https://rustup.rs".into(),
        },
        _ => ProjectError::Failed {
            tool: "cargo build",
            status: e.to_string(),
        },
    })?;
    if !output.status.success() {
        return Err(ProjectError::Failed {
            tool: "cargo build",
            status: output.status.to_string(),
        });
    }
    let built =
        component(&String::from_utf8_lossy(&output.stdout)).ok_or(ProjectError::Failed {
            tool: "cargo build",
            status: "it built no .wasm: is the crate a cdylib?".into(),
        })?;
    std::fs::copy(&built, out).map_err(io(&built))?;
    Ok(())
}

/// The `.wasm` a cdylib artifact line of cargo's JSON messages names.
fn component(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// The `wasm32-wasip2` target must be installed; rustup can say, and add it.
fn check_target() -> Result<(), ProjectError> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: a toolchain installed some other way; cargo will say if it lacks the target.
        return Ok(());
    };
    let listed = String::from_utf8_lossy(&installed.stdout);
    if listed.lines().any(|t| t.trim() == TARGET) {
        Ok(())
    } else {
        Err(ProjectError::Missing {
            tool: "the wasm32-wasip2 Rust target",
            fix: format!("rustup target add {TARGET}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_the_cdylibs_wasm() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libdep.rlib"]}
{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"]},"filenames":["/t/my_plugin.wasm","/t/libmy_plugin.rlib"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            component(messages),
            Some(PathBuf::from("/t/my_plugin.wasm"))
        );
        assert_eq!(component("{\"reason\":\"build-finished\"}"), None);
    }

    #[test]
    fn inside_a_checkout_the_sdk_is_a_path_dependency() {
        // This crate's own directory is inside the checkout.
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("new-plugin");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("should succeed")
            .join("plugin-sdk");
        assert_eq!(checkout_sdk(&here).as_deref(), Some(sdk.as_path()));
        assert_eq!(
            sdk_dependency(Some(&sdk)),
            format!(
                "burrow-plugin = {{ path = {:?} }}",
                sdk.display().to_string()
            )
        );
        assert_eq!(checkout_sdk(Path::new("/nonexistent/new-plugin")), None);
        let elsewhere = sdk_dependency(None);
        assert_eq!(
            elsewhere,
            format!("burrow-plugin = \"{}\"", env!("CARGO_PKG_VERSION"))
        );
    }
}
