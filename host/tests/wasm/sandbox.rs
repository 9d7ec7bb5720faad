//! A plugin sees no files and no environment unless its deployment grants them, and then only
//! what was granted: a Rust plugin and a Python one alike.

use crate::support;

use std::collections::BTreeMap;

use burrow::wasm::{Capabilities, Deployment};
use support::{Chaos, chaos, fail_reason, worker};

support::chaos_tests!(
    host_files_are_invisible_by_default,
    host_environment_is_invisible_by_default,
    a_granted_env_var_is_visible,
    a_granted_dir_is_readable_and_nothing_else,
    a_missing_granted_dir_is_an_instantiate_error,
);

/// Reading a host file fails by default, even one every process may read.
fn host_files_are_invisible_by_default(plugin: Chaos) -> anyhow::Result<()> {
    let (_slot, mut worker) = plugin.worker()?;
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for path in ["/etc/passwd", manifest] {
        let reason = fail_reason(&mut worker, &chaos(&format!("read-file:{path}")))?;
        assert!(
            reason.starts_with(&format!("read-file {path}: error:")),
            "{reason}"
        );
    }
    Ok(())
}

/// The host's environment does not leak in.
fn host_environment_is_invisible_by_default(plugin: Chaos) -> anyhow::Result<()> {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs PATH set on the host"
    );
    let (_slot, mut worker) = plugin.worker()?;
    assert_eq!(
        fail_reason(&mut worker, &chaos("env:PATH"))?,
        "env PATH: unset"
    );
    Ok(())
}

/// A granted variable is visible; others still are not.
fn a_granted_env_var_is_visible(plugin: Chaos) -> anyhow::Result<()> {
    let capabilities = Capabilities {
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        ..Capabilities::default()
    };
    let (_slot, mut worker) =
        worker(Deployment::new(plugin.plugin()?).with_capabilities(capabilities));
    assert_eq!(
        fail_reason(&mut worker, &chaos("env:GREETING"))?,
        "env GREETING: set to hello"
    );
    assert_eq!(
        fail_reason(&mut worker, &chaos("env:PATH"))?,
        "env PATH: unset"
    );
    Ok(())
}

/// A granted directory is readable at its own path; files outside it are not.
fn a_granted_dir_is_readable_and_nothing_else(plugin: Chaos) -> anyhow::Result<()> {
    let granted = tempfile::tempdir()?;
    let other = tempfile::tempdir()?;
    std::fs::write(granted.path().join("rules.txt"), b"12345")?;
    std::fs::write(other.path().join("secret.txt"), b"shh")?;
    let capabilities = Capabilities {
        read_only_dirs: vec![granted.path().to_path_buf()],
        ..Capabilities::default()
    };
    let (_slot, mut worker) =
        worker(Deployment::new(plugin.plugin()?).with_capabilities(capabilities));
    let inside = granted.path().join("rules.txt");
    let outside = other.path().join("secret.txt");
    assert_eq!(
        fail_reason(
            &mut worker,
            &chaos(&format!("read-file:{}", inside.display()))
        )?,
        format!("read-file {}: ok, 5 bytes", inside.display())
    );
    let reason = fail_reason(
        &mut worker,
        &chaos(&format!("read-file:{}", outside.display())),
    )?;
    assert!(reason.contains(": error:"), "{reason}");
    Ok(())
}

/// A granted directory that does not exist fails the call (instantiation), not the host.
fn a_missing_granted_dir_is_an_instantiate_error(plugin: Chaos) -> anyhow::Result<()> {
    let capabilities = Capabilities {
        read_only_dirs: vec!["/nonexistent/burrow-test".into()],
        ..Capabilities::default()
    };
    let (_slot, mut worker) =
        worker(Deployment::new(plugin.plugin()?).with_capabilities(capabilities));
    let err = support::call_error(&mut worker, &chaos("commit"))?;
    assert!(
        err.to_string().contains("/nonexistent/burrow-test"),
        "{err}"
    );
    Ok(())
}
