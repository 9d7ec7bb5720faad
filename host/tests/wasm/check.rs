//! `burrow check` describes a good plugin and exits 0; refuses a bad file with one sentence and
//! a non-zero exit.

use crate::support;

use std::process::{Command, Output};

use support::plugin_path;

fn check(path: &std::path::Path) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_burrow"))
        .arg("check")
        .arg(path)
        .output()?)
}

/// A good plugin: name, size, sha256, imports, exports; exit 0.
#[test]
fn check_describes_a_good_plugin() -> anyhow::Result<()> {
    let path = plugin_path("chaos")?;
    let bytes = std::fs::read(&path)?;
    let out = check(&path)?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = burrow::wasm::Version::of(&bytes);
    for expected in [
        "plugin   chaos".to_string(),
        format!("size     {} bytes", bytes.len()),
        format!("sha256   {}", version.hex()),
        "contract burrow:plugin@0.3.0".to_string(),
        "burrow:plugin/host@0.3.0".to_string(),
        "exports  process\nok".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    Ok(())
}

/// A core module: non-zero exit and one line on stderr naming the fix.
#[test]
fn check_refuses_a_core_module_in_one_sentence() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("old.wasm");
    std::fs::write(&path, wat::parse_str("(module)")?)?;
    let out = check(&path)?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim(),
        "error: plugin `old` is a core WebAssembly module, not a component; build it for wasm32-wasip2"
    );
    Ok(())
}

/// A file that is not wasm: non-zero exit, one line.
#[test]
fn check_refuses_a_non_wasm_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notes.wasm");
    std::fs::write(&path, "hello")?;
    let out = check(&path)?;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr)?.trim(),
        "error: plugin `notes` is not a WebAssembly file"
    );
    Ok(())
}

/// A file that cannot be read: non-zero exit, one line, the OS's reason given once.
#[test]
fn check_names_an_unreadable_file_and_its_cause_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing.wasm");
    let out = check(&path)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(
        stderr.trim(),
        format!(
            "error: cannot read plugin {}: No such file or directory (os error 2)",
            path.display()
        )
    );
    Ok(())
}
