//! Good plugins load and describe themselves; each kind of bad file is refused with one
//! sentence naming the problem.

use crate::support;

use burrow::wasm::{CONTRACT_VERSION, LoadError, Runtime, Version};
use support::{load, plugin_path, runtime};

fn refuse(runtime: &Runtime, bytes: &[u8]) -> anyhow::Result<LoadError> {
    match runtime.load_bytes("bad", bytes) {
        Err(err) => Ok(err),
        Ok(plugin) => anyhow::bail!("{plugin:?} loaded but should not have"),
    }
}

/// The built plugins load; name, size and version (sha256 of the file) are right.
#[test]
fn the_real_plugins_load_and_describe_themselves() -> anyhow::Result<()> {
    let runtime = runtime()?;
    for name in ["passthrough", "json-validate", "chaos"] {
        let plugin = load(&runtime, name)?;
        let bytes = std::fs::read(plugin_path(name)?)?;
        assert_eq!(plugin.name(), name);
        assert_eq!(plugin.size(), bytes.len());
        assert_eq!(plugin.version(), Version::of(&bytes));
        assert_eq!(plugin.exports(), ["process"]);
        // What a plugin imports of the contract is at this contract's version (a plugin that
        // neither logs nor emits imports none of it), and the rest is WASI.
        let contract = format!("@{CONTRACT_VERSION}");
        assert!(
            plugin
                .imports()
                .iter()
                .filter(|i| i.starts_with("burrow:plugin/"))
                .all(|i| i.ends_with(&contract)),
            "{:?}",
            plugin.imports()
        );
        assert!(
            plugin
                .imports()
                .iter()
                .all(|i| i.starts_with("burrow:plugin/") || i.starts_with("wasi:")),
            "{:?}",
            plugin.imports()
        );
    }
    Ok(())
}

/// Bytes that are not wasm at all.
#[test]
fn non_wasm_bytes_are_refused() -> anyhow::Result<()> {
    let err = refuse(&runtime()?, b"{\"not\": \"wasm\"}")?;
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err:?}");
    assert_eq!(err.to_string(), "plugin `bad` is not a WebAssembly file");
    Ok(())
}

/// A core module (what `wasm32-unknown-unknown` or wasip1 builds give) names the right target.
#[test]
fn a_core_module_is_refused_with_the_target_to_use() -> anyhow::Result<()> {
    let module = wat::parse_str(r#"(module (func (export "process")))"#)?;
    let err = refuse(&runtime()?, &module)?;
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    assert!(
        err.to_string().contains("build it for wasm32-wasip2"),
        "{err}"
    );
    Ok(())
}

/// A component that does not implement the world (no `process`).
#[test]
fn a_component_without_process_is_refused() -> anyhow::Result<()> {
    let component = wat::parse_str("(component)")?;
    let err = refuse(&runtime()?, &component)?;
    assert!(matches!(err, LoadError::MissingProcess { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not export `process`"),
        "{err}"
    );
    Ok(())
}

/// A `process` export with another signature.
#[test]
fn a_process_with_the_wrong_signature_is_refused() -> anyhow::Result<()> {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func (export "process") (param "x" u32) (result u32)
                (canon lift (core func $i "f"))))"#,
    )?;
    let err = refuse(&runtime()?, &component)?;
    assert!(matches!(err, LoadError::WrongSignature { .. }), "{err:?}");
    assert!(err.to_string().contains("wrong signature"), "{err}");
    Ok(())
}

/// An import the runtime does not provide is named.
#[test]
fn an_unprovided_import_is_named() -> anyhow::Result<()> {
    let component = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance
                (export "handle" (func))))
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func (export "process") (param "x" u32) (result u32)
                (canon lift (core func $i "f"))))"#,
    )?;
    let err = refuse(&runtime()?, &component)?;
    assert_eq!(
        err.to_string(),
        "plugin `bad` imports `wasi:http/outgoing-handler@0.2.0`, which the runtime does not provide"
    );
    Ok(())
}

/// A host import the runtime provides, but with another type (a plugin built against another
/// contract), is named with what does not match.
#[test]
fn a_mismatched_host_import_is_named() -> anyhow::Result<()> {
    let component = wat::parse_str(
        r#"(component
            (import "burrow:plugin/host@0.3.0" (instance
                (export "log" (func (param "x" u32)))))
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func (export "process") (param "x" u32) (result u32)
                (canon lift (core func $i "f"))))"#,
    )?;
    let err = refuse(&runtime()?, &component)?;
    assert!(
        matches!(&err, LoadError::MismatchedImport { import, .. } if import == "burrow:plugin/host@0.3.0"),
        "{err:?}"
    );
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
    Ok(())
}

/// Real plugins built for older contracts (json-validate for 0.1.0 as of e6faa3e, and for
/// 0.2.0 as of fb3dec8, kept in `tests/fixtures`) are refused in one sentence naming both
/// versions and the fix.
#[test]
fn a_plugin_built_for_another_contract_version_is_refused_naming_both() -> anyhow::Result<()> {
    let runtime = runtime()?;
    for old in ["0.1.0", "0.2.0"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/json-validate-{old}.wasm"));
        let err = runtime
            .load_file(&path)
            .expect_err("a plugin of an older contract is refused");
        assert_eq!(
            err.to_string(),
            format!(
                "plugin `json-validate-{old}` was built for burrow:plugin@{old}; this burrow runs \
                 burrow:plugin@0.3.0: rebuild it with the current burrow-plugin SDK"
            )
        );
    }
    Ok(())
}

/// A plugin of the 0.2.0 shape that imports nothing of the contract (a passthrough, which
/// neither logged nor emitted) is known by its `process-batch` export, and refused the same way.
#[test]
fn a_plugin_exporting_process_batch_is_refused_as_built_for_0_2_0() -> anyhow::Result<()> {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func (export "process") (param "x" u32) (result u32)
                (canon lift (core func $i "f")))
            (func (export "process-batch") (param "x" u32) (result u32)
                (canon lift (core func $i "f"))))"#,
    )?;
    let err = refuse(&runtime()?, &component)?;
    assert!(
        matches!(&err, LoadError::OtherContract { built_for, .. } if built_for == "0.2.0"),
        "{err:?}"
    );
    Ok(())
}

/// Invalid bytes behind a valid component header.
#[test]
fn a_truncated_component_is_refused() -> anyhow::Result<()> {
    let mut bytes = std::fs::read(plugin_path("passthrough")?)?;
    bytes.truncate(bytes.len() / 2);
    let err = refuse(&runtime()?, &bytes)?;
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
    Ok(())
}

/// A missing file names the path.
#[test]
fn a_missing_file_names_the_path() -> anyhow::Result<()> {
    let err = runtime()?
        .load_file("/nonexistent/plugin.wasm".as_ref())
        .err()
        .ok_or_else(|| anyhow::anyhow!("loaded a missing file"))?;
    assert!(
        err.to_string().contains("/nonexistent/plugin.wasm"),
        "{err}"
    );
    Ok(())
}
