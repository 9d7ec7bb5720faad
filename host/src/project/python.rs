//! Python plugin projects: `plugin.py` over the `burrow_plugin` SDK, built with componentize-py.
//!
//! The binary carries the SDK and the contract, so a build needs nothing from a Burrow
//! checkout: `burrow new` writes the SDK into the project (its unit tests import it natively),
//! and `burrow build` writes the contract and its own copy of the SDK to a scratch directory and
//! runs componentize-py over them (the project's copy first on the path, so what the tests ran
//! is what is built).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ProjectError, fill, io};

const PLUGIN_PY: &str = include_str!("templates/python/plugin.py");
const TEST_PY: &str = include_str!("templates/python/test_plugin.py");
const SAMPLE: &str = include_str!("templates/python/sample.jsonl");
const README: &str = include_str!("templates/python/README.md");

/// The contract, as the host implements it.
const WIT: &str = include_str!("../../../wit/plugin.wit");
/// The componentize-py this SDK is built and tested with (`name==version`).
const REQUIREMENTS: &str = include_str!("../../../plugin-sdk/python/requirements.txt");

/// The SDK package, file by file (a unit test checks that none is missing).
const SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/__init__.py"),
    ),
    (
        "_frame.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/_frame.py"),
    ),
    (
        "_guest.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/_guest.py"),
    ),
    (
        "_run.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/_run.py"),
    ),
    (
        "_shim.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/_shim.py"),
    ),
    (
        "host.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/host.py"),
    ),
    (
        "log.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/log.py"),
    ),
    (
        "message.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/message.py"),
    ),
    (
        "outcome.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/outcome.py"),
    ),
    (
        "testing.py",
        include_str!("../../../plugin-sdk/python/burrow_plugin/testing.py"),
    ),
];

/// Where a user can point `burrow build` at componentize-py.
const TOOL_ENV: &str = "BURROW_COMPONENTIZE_PY";

/// The pinned version of componentize-py, from the SDK's requirements.
pub fn componentize_version() -> &'static str {
    REQUIREMENTS
        .lines()
        .find_map(|line| line.trim().strip_prefix("componentize-py=="))
        .unwrap_or("")
}

/// The files of a new project for plugin `name`: the plugin, its test, samples, README, and
/// the SDK under `burrow_plugin/`.
pub(super) fn files(name: &str) -> Vec<(String, String)> {
    let values = [
        ("name", name),
        ("componentize_version", componentize_version()),
    ];
    let mut files = vec![
        ("plugin.py".to_owned(), fill(PLUGIN_PY, &values)),
        ("test_plugin.py".to_owned(), TEST_PY.to_owned()),
        ("sample.jsonl".to_owned(), SAMPLE.to_owned()),
        ("README.md".to_owned(), fill(README, &values)),
    ];
    files.extend(
        SDK.iter()
            .map(|(file, text)| (format!("burrow_plugin/{file}"), (*text).to_owned())),
    );
    files
}

/// componentize-py over the project, the SDK and the contract, writing `out`.
pub(super) fn build(dir: &Path, out: &Path) -> Result<(), ProjectError> {
    let tool = find_tool(dir)?;
    let scratch = tempfile::tempdir().map_err(io(dir))?;
    let wit = scratch.path().join("wit");
    let sdk = scratch.path().join("sdk");
    let package = sdk.join("burrow_plugin");
    std::fs::create_dir_all(&wit).map_err(io(&wit))?;
    std::fs::create_dir_all(&package).map_err(io(&package))?;
    std::fs::write(wit.join("plugin.wit"), WIT).map_err(io(&wit))?;
    for (file, text) in SDK {
        let path = package.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    let mut command = Command::new(&tool);
    command
        .arg("--wit-path")
        .arg(&wit)
        .args([
            "--world",
            "processor",
            "--quiet",
            "componentize",
            "burrow_plugin._guest",
        ])
        .arg("--python-path")
        .arg(dir)
        .arg("--python-path")
        .arg(&sdk)
        .arg("--output")
        .arg(out)
        // Only the project and the SDK: not an active virtualenv's site-packages.
        .env_remove("VIRTUAL_ENV");
    super::run(command, "componentize-py", &install_hint())
}

/// componentize-py: `$BURROW_COMPONENTIZE_PY`, else on `PATH`, else the virtualenv of the
/// Burrow checkout `dir` is in (`make plugins` installs it there). Its version must be the
/// pinned one: the generated bindings' names change between versions.
fn find_tool(dir: &Path) -> Result<PathBuf, ProjectError> {
    let candidates = std::env::var_os(TOOL_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from("componentize-py")))
        .chain(checkout_venv(dir));
    let wanted = componentize_version();
    let mut wrong = None;
    for candidate in candidates {
        let Ok(output) = Command::new(&candidate).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&output.stdout);
        if version.split_whitespace().any(|word| word == wanted) {
            return Ok(candidate);
        }
        wrong.get_or_insert_with(|| format!("{} is {}", candidate.display(), version.trim()));
    }
    Err(ProjectError::Missing {
        tool: "componentize-py",
        fix: match wrong {
            Some(found) => format!("{found}, this SDK needs {wanted}; {}", install_hint()),
            None => install_hint(),
        },
    })
}

fn install_hint() -> String {
    format!(
        "install it with `pip install componentize-py=={}` (in a virtualenv), or set {TOOL_ENV} to its path",
        componentize_version()
    )
}

/// `.python/venv/bin/componentize-py` of the Burrow checkout `dir` is in, if any.
fn checkout_venv(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    absolute
        .ancestors()
        .map(|root| root.join(".python/venv/bin/componentize-py"))
        .find(|tool| tool.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.py` of the SDK's package is carried, and nothing else.
    #[test]
    fn the_embedded_sdk_is_the_whole_package() {
        let package =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/python/burrow_plugin");
        let mut on_disk: Vec<String> = std::fs::read_dir(&package)
            .expect("should succeed")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK.iter().map(|(f, _)| (*f).to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn the_pinned_version_is_read_from_the_requirements() {
        let version = componentize_version();
        assert!(
            !version.is_empty() && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{version}"
        );
    }
}
