//! A plugin: a component compiled once, checked against the contract, and pre-linked.
//!
//! Loading does all the slow and all the fallible work, off the hot path: compile (or fetch
//! from the on-disk cache), check the `process` export's signature, resolve every import
//! against the runtime's linker (`InstancePre`). What is left per instance is cheap and cannot
//! fail for contract reasons.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use super::bindings::ProcessorPre;
use super::runtime::Shared;
use super::store::StoreState;
use super::version::Version;

/// The version of the plugin contract (`wit/plugin.wit`, package `burrow:plugin`) this host
/// runs. Plugins built for another version are refused, naming both.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Which plugin, which version: attached to every call result and log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginId {
    pub name: Arc<str>,
    pub version: Version,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A loaded, validated, pre-linked plugin. Cheap to clone; shareable across threads.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
}

struct Loaded {
    id: PluginId,
    size: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    pre: ProcessorPre<StoreState>,
    /// The component's bytes, kept to compile it for the metered engine when a deployment
    /// sets a fuel limit.
    bytes: Arc<[u8]>,
    /// Compiled for the metered engine, once asked for.
    metered: OnceLock<Result<ProcessorPre<StoreState>, String>>,
    /// The engines, and their epoch ticker, live as long as any plugin can be called.
    runtime: Arc<Shared>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.inner.id)
            .field("size", &self.inner.size)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn id(&self) -> &PluginId {
        &self.inner.id
    }

    /// The name given at load time (for files: the file stem).
    pub fn name(&self) -> &str {
        &self.inner.id.name
    }

    pub fn version(&self) -> Version {
        self.inner.id.version
    }

    /// Size of the `.wasm` in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The component's imports (interface names such as `wasi:cli/stdout@0.2.6`), sorted.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The component's exports, sorted.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }

    /// Compiles the plugin for the metered engine (fuel counted), if not done yet: what a
    /// deployment with a fuel limit runs. Loading a tenant does it at once, so the compile is
    /// off the hot path and its failure is reported with the load.
    pub fn prepare_metered(&self) -> Result<(), LoadError> {
        self.metered_pre().map(|_| ())
    }

    pub(crate) fn metered_pre(&self) -> Result<&ProcessorPre<StoreState>, LoadError> {
        let loaded = &*self.inner;
        loaded
            .metered
            .get_or_init(|| {
                let runtime = &loaded.runtime;
                prelink(
                    &loaded.id.name,
                    &loaded.bytes,
                    &runtime.metered_engine,
                    &runtime.metered_linker,
                )
                .map(|(pre, _)| pre)
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| LoadError::Invalid {
                name: loaded.id.name.to_string(),
                reason: format!("compiling with fuel metering: {reason}"),
            })
    }

    pub(crate) fn pre(&self) -> &ProcessorPre<StoreState> {
        &self.inner.pre
    }
}

/// Why a plugin file was refused. Each message is one sentence naming the plugin and the
/// problem.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // `reason`, not `source`: the message includes it, and a `source` would print it twice.
    #[error("cannot read plugin {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("plugin `{name}` is not a WebAssembly file")]
    NotWasm { name: String },
    #[error(
        "plugin `{name}` is a core WebAssembly module, not a component; build it for wasm32-wasip2"
    )]
    CoreModule { name: String },
    #[error("plugin `{name}` is not a valid WebAssembly component: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "plugin `{name}` does not export `process`; it must implement the burrow:plugin/processor world"
    )]
    MissingProcess { name: String },
    #[error(
        "plugin `{name}` exports `process` with the wrong signature ({reason}); build it against this burrow:plugin contract"
    )]
    WrongSignature { name: String, reason: String },
    #[error(
        "plugin `{name}` was built for burrow:plugin@{built_for}; this burrow runs burrow:plugin@{CONTRACT_VERSION}: rebuild it with the current burrow-plugin SDK"
    )]
    OtherContract { name: String, built_for: String },
    #[error("plugin `{name}` imports `{import}`, which the runtime does not provide")]
    UnsupportedImport { name: String, import: String },
    /// The plugin loaded but an instance cannot start under the deployment's limits (e.g. a
    /// memory cap below its initial memory): found before a swap, not by every message after.
    #[error("plugin `{name}` cannot start under its limits: {reason}")]
    CannotStart { name: String, reason: String },
    #[error("plugin `{name}` imports `{import}` with a type the runtime does not match: {reason}")]
    MismatchedImport {
        name: String,
        import: String,
        reason: String,
    },
}

/// Reads, compiles, validates and pre-links the plugin at `path`, named after the file stem.
pub(crate) fn load_file(runtime: &Arc<Shared>, path: &Path) -> Result<Plugin, LoadError> {
    let bytes = std::fs::read(path).map_err(|reason| LoadError::Read {
        path: path.to_owned(),
        reason,
    })?;
    load_bytes(runtime, &name_of(path), &bytes)
}

/// The plugin name for a file: its stem (`plugins/chaos.wasm` → `chaos`).
fn name_of(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Compiles, validates and pre-links a plugin from its bytes.
pub(crate) fn load_bytes(
    runtime: &Arc<Shared>,
    name: &str,
    bytes: &[u8],
) -> Result<Plugin, LoadError> {
    check_kind(name, bytes)?;
    let (pre, component) = prelink(name, bytes, &runtime.engine, &runtime.linker)?;
    let (imports, exports) = interface(&runtime.engine, &component);
    Ok(Plugin {
        inner: Arc::new(Loaded {
            id: PluginId {
                name: name.into(),
                version: Version::of(bytes),
            },
            size: bytes.len(),
            imports,
            exports,
            pre,
            bytes: bytes.into(),
            metered: OnceLock::new(),
            runtime: Arc::clone(runtime),
        }),
    })
}

/// Compiles `bytes` for `engine`, checks the `process` export and pre-links the imports.
fn prelink(
    name: &str,
    bytes: &[u8],
    engine: &wasmtime::Engine,
    linker: &Linker<StoreState>,
) -> Result<(ProcessorPre<StoreState>, Component), LoadError> {
    let component = Component::new(engine, bytes).map_err(|e| LoadError::Invalid {
        name: name.into(),
        reason: one_line(&e),
    })?;
    check_process_export(name, &component)?;
    check_contract_imports(name, engine, &component)?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| import_error(name, engine, &component, &e))?;
    let pre = ProcessorPre::new(instance_pre).map_err(|e| {
        // A plugin of an older contract that imports none of its host functions is known by
        // its exports: `process-batch` came with 0.2.0 and went with 0.3.0.
        if component.get_export(None, "process-batch").is_some() {
            LoadError::OtherContract {
                name: name.into(),
                built_for: "0.2.0".into(),
            }
        } else {
            LoadError::WrongSignature {
                name: name.into(),
                reason: one_line(&e),
            }
        }
    })?;
    Ok((pre, component))
}

/// Tells a component from a core module from anything else, by the 8-byte header alone, so
/// the common mistakes get a precise message instead of a parser error. (The same test as
/// `wasmparser::Parser::is_component`, which wasmtime re-exports only behind a feature.)
fn check_kind(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
    if bytes.starts_with(COMPONENT) {
        Ok(())
    } else if bytes.starts_with(CORE_MODULE) {
        Err(LoadError::CoreModule { name: name.into() })
    } else if bytes.starts_with(MAGIC) {
        Err(LoadError::Invalid {
            name: name.into(),
            reason: "unsupported WebAssembly binary version".into(),
        })
    } else {
        Err(LoadError::NotWasm { name: name.into() })
    }
}

fn check_process_export(name: &str, component: &Component) -> Result<(), LoadError> {
    match component.get_export(None, "process") {
        None => Err(LoadError::MissingProcess { name: name.into() }),
        Some((ComponentItem::ComponentFunc(_), _)) => Ok(()),
        Some(_) => Err(LoadError::WrongSignature {
            name: name.into(),
            reason: "it is not a function".into(),
        }),
    }
}

/// Refuses a plugin that imports the contract's interfaces at another version than this host's
/// (built with another SDK): one sentence naming both versions, rather than the linker's
/// "not provided".
fn check_contract_imports(
    name: &str,
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let other = ty
        .imports(engine)
        .filter_map(|(import, _)| contract_version(import))
        .find(|version| *version != CONTRACT_VERSION)
        .map(str::to_owned);
    match other {
        Some(built_for) => Err(LoadError::OtherContract {
            name: name.into(),
            built_for,
        }),
        None => Ok(()),
    }
}

/// `burrow:plugin/host@0.1.0` → `0.1.0`; `None` for anything outside the contract.
pub(crate) fn contract_version(interface: &str) -> Option<&str> {
    interface
        .strip_prefix("burrow:plugin/")?
        .split_once('@')
        .map(|(_, version)| version)
}

/// Turns the linker's refusal into a sentence naming the import. The linker's outermost
/// message names it in backticks; we match it against the component's own import names rather
/// than parse the message, so a wording change in wasmtime degrades to the full text, not to a
/// wrong name.
fn import_error(
    name: &str,
    engine: &wasmtime::Engine,
    component: &Component,
    err: &wasmtime::Error,
) -> LoadError {
    let outer = err.to_string();
    let import = component
        .component_type()
        .imports(engine)
        .map(|(import, _)| import.to_owned())
        .find(|import| outer.contains(&format!("`{import}`")));
    let root = err.root_cause().to_string();
    match import {
        Some(import) if root.ends_with("is missing") => LoadError::UnsupportedImport {
            name: name.into(),
            import,
        },
        // The causes below the outer message say which function differs, and how.
        Some(import) => LoadError::MismatchedImport {
            name: name.into(),
            import,
            reason: chain_lines(err).skip(1).collect::<Vec<_>>().join(": "),
        },
        None => LoadError::Invalid {
            name: name.into(),
            reason: one_line(err),
        },
    }
}

/// The names of what the component imports and exports, sorted, for `burrow check`.
fn interface(engine: &wasmtime::Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    imports.sort();
    exports.sort();
    (imports, exports)
}

/// An error chain on one line (`outer: cause: root`), without wasm backtraces.
pub(crate) fn one_line(err: &wasmtime::Error) -> String {
    chain_lines(err).collect::<Vec<_>>().join(": ")
}

/// The first line of each error in the chain, outermost first.
fn chain_lines(err: &wasmtime::Error) -> impl Iterator<Item = String> + '_ {
    err.chain()
        .map(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version the host states is the one in the contract it was built from.
    #[test]
    fn the_contract_version_is_the_wit_package_version() {
        let wit = include_str!("../../../wit/plugin.wit");
        let expected = format!("package burrow:plugin@{CONTRACT_VERSION};");
        assert!(
            wit.lines().any(|line| line.trim() == expected),
            "wit/plugin.wit does not declare {expected}"
        );
    }

    #[test]
    fn contract_versions_are_read_from_interface_names() {
        assert_eq!(contract_version("burrow:plugin/host@0.1.0"), Some("0.1.0"));
        assert_eq!(contract_version("burrow:plugin/types@0.2.0"), Some("0.2.0"));
        assert_eq!(contract_version("wasi:cli/stdout@0.2.6"), None);
    }
}
