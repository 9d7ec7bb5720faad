//! `burrow new` → unit tests → `burrow build` → `burrow test`, for Rust and Python: a new
//! project builds and passes its own tests with no edits, and does on sample records what its
//! README says.
//!
//! The projects are made inside this checkout (under `target/`), as a plugin author working in
//! it would: the Rust one then depends on this `plugin-sdk` by path and takes this
//! `Cargo.lock`, and the Python build finds the checkout's componentize-py (`make plugins`
//! installs it in `.python/venv`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn burrow(args: &[&str], dir: &Path) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_burrow"))
        .args(args)
        .current_dir(dir)
        .output()?)
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fresh directory under the checkout's `target/`, for a project named `name`.
fn workspace_dir(name: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/new-plugin-tests");
    std::fs::create_dir_all(&root)?;
    let dir = tempfile::tempdir_in(root.canonicalize()?)?;
    let project = dir.path().join(name);
    Ok((dir, project))
}

/// What both templates promise, once built (`report` is `burrow build`'s): the build checked
/// against the contract; on the samples, the first record committed and emitted in capitals,
/// the empty one failed, the one not UTF-8 failed; on the demo's embedded broker, every message
/// committed. Returns the sample run's `--json` lines.
fn behaves_as_its_readme_says(
    project: &Path,
    report: &str,
    wasm: &str,
) -> anyhow::Result<Vec<Value>> {
    assert!(
        report.contains("ok       implements burrow:plugin/processor"),
        "{report}"
    );
    let lines = sample_run(project, wasm)?;
    assert_eq!(lines[0]["outcome"], "commit");
    assert_eq!(
        lines[0]["emits"],
        json!([{"topic": "shouted", "key": "k1", "value": "HELLO", "headers": []}])
    );
    assert_eq!(lines[1]["reason"], "empty value");
    assert_eq!(lines[2]["outcome"], "fail");

    let out = burrow(&["demo", "--messages", "300", "--plugin", wasm], project)?;
    let stdout = ok(&out, "burrow demo");
    assert!(
        stdout.contains("committed                     300        300"),
        "{stdout}"
    );
    Ok(lines)
}

/// The sample records through the built plugin, as `--json` lines.
fn sample_run(project: &Path, wasm: &str) -> anyhow::Result<Vec<Value>> {
    let out = burrow(
        &[
            "test",
            wasm,
            "--input",
            "sample.jsonl",
            "--json",
            "--config",
            "output-topic=shouted",
        ],
        project,
    )?;
    let stdout = ok(&out, "burrow test");
    Ok(stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

#[test]
fn a_new_rust_plugin_builds_tests_and_runs() -> anyhow::Result<()> {
    let (_keep, project) = workspace_dir("shout")?;
    let created = ok(
        &burrow(
            &["new", project.to_str().expect("a UTF-8 path")],
            project.parent().expect("a parent"),
        )?,
        "burrow new",
    );
    assert!(
        created.contains("src/lib.rs") && created.contains("next: cd "),
        "{created}"
    );
    let manifest = std::fs::read_to_string(project.join("Cargo.toml"))?;
    assert!(manifest.contains("burrow-plugin = { path = "), "{manifest}");

    // One target directory for every run of this test: the SDK's dependencies build once.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/new-plugin");
    let tests = Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()?;
    ok(&tests, "cargo test");

    let built = Command::new(env!("CARGO_BIN_EXE_burrow"))
        .arg("build")
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()?;
    let report = ok(&built, "burrow build");
    assert!(
        report.starts_with(&format!("wrote {}", project.join("shout.wasm").display())),
        "{report}"
    );
    behaves_as_its_readme_says(&project, &report, "shout.wasm")?;
    Ok(())
}

#[test]
fn a_new_python_plugin_builds_tests_and_runs() -> anyhow::Result<()> {
    let (_keep, project) = workspace_dir("shout-py")?;
    ok(
        &burrow(
            &[
                "new",
                "--lang",
                "python",
                project.to_str().expect("a UTF-8 path"),
            ],
            project.parent().expect("a parent"),
        )?,
        "burrow new --lang python",
    );
    let tests = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(&project)
        .output()?;
    assert!(
        tests.status.success(),
        "python3 -m unittest failed:\n{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    // unittest reports on stderr: two tests ran.
    assert!(String::from_utf8_lossy(&tests.stderr).contains("Ran 2 tests"));

    let report = ok(&burrow(&["build"], &project)?, "burrow build");
    let lines = behaves_as_its_readme_says(&project, &report, "shout-py.wasm")?;
    assert!(
        lines[2]["reason"]
            .as_str()
            .expect("a string")
            .starts_with("UnicodeDecodeError"),
        "{}",
        lines[2]
    );
    Ok(())
}

/// A directory that is not empty is refused; a directory that is no project cannot be built;
/// without componentize-py the build says how to get it.
#[test]
fn refusals_say_what_to_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken)?;
    std::fs::write(taken.join("x"), "")?;
    let out = burrow(&["new", "taken"], dir.path())?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not empty"));

    let out = burrow(&["build", "taken"], dir.path())?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a plugin project"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Outside the checkout, with no componentize-py on PATH.
    ok(
        &burrow(&["new", "--lang", "python", "lonely"], dir.path())?,
        "burrow new",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_burrow"))
        .args(["build", "lonely"])
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .env_remove("BURROW_COMPONENTIZE_PY")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr
            .contains("componentize-py is missing: install it with `pip install componentize-py=="),
        "{stderr}"
    );
    Ok(())
}
