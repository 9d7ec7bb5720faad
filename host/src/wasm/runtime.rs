//! The runtime: the process's engines, with their linkers, code cache and clock.
//!
//! Two engines, alike but for fuel: counting fuel instruments all guest code (measured here:
//! json-validate 14–28% slower, passthrough 5%), so plugins run on the plain engine, and are
//! compiled for the metered one only when a deployment sets a fuel limit
//! ([`Plugin::prepare_metered`](super::Plugin::prepare_metered)).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine};

use super::bindings::Processor;
use super::plugin::{self, LoadError, Plugin};
use super::store::StoreState;
use super::ticker::EpochTicker;

/// How to build the [`Runtime`].
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Where compiled plugins are kept between loads and runs.
    pub cache: CodeCache,
}

/// Where compiled plugins are cached, keyed by content and compiler settings (safe to delete).
/// A cached plugin loads in milliseconds; a large one (a Python plugin: ~17 MiB, ~7 s) takes
/// seconds to compile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CodeCache {
    /// Compile every plugin at every load.
    #[default]
    Off,
    /// The user's cache directory (`$XDG_CACHE_HOME/burrow`, else `~/.cache/burrow`). A
    /// directory that cannot be used is logged and the runtime compiles without a cache: a
    /// default must not stop a host from starting.
    User,
    /// This directory; one that cannot be used is an error.
    Dir(PathBuf),
}

impl CodeCache {
    /// The host config's `cache_dir`: unset is the user's cache, an empty path none, anything
    /// else that directory.
    pub fn from_setting(cache_dir: Option<&Path>) -> Self {
        match cache_dir {
            None => Self::User,
            Some(dir) if dir.as_os_str().is_empty() => Self::Off,
            Some(dir) => Self::Dir(dir.to_owned()),
        }
    }

    /// The user's cache directory for Burrow, if the platform has one.
    pub fn user_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|dir| dir.join("burrow"))
    }

    /// The cache to give the engines.
    fn open(&self) -> Result<Option<Cache>, RuntimeError> {
        match self {
            Self::Off => Ok(None),
            Self::Dir(dir) => open_cache(dir).map(Some),
            Self::User => {
                let Some(dir) = Self::user_dir() else {
                    tracing::warn!(
                        "no user cache directory (HOME unset?): plugins are compiled at every start; set cache_dir"
                    );
                    return Ok(None);
                };
                match open_cache(&dir) {
                    Ok(cache) => Ok(Some(cache)),
                    Err(e) => {
                        tracing::warn!(error = %e, "plugins are compiled at every start; set cache_dir to a writable directory");
                        Ok(None)
                    }
                }
            }
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot use {} as the compiled-plugin cache: {reason}", dir.display())]
    Cache { dir: PathBuf, reason: String },
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot start the deadline clock thread: {0}")]
    /// The cause is in the message, so not also the `source` (it would print twice).
    Ticker(std::io::Error),
}

/// Compiled-code cache counters since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from the disk cache.
    pub hits: usize,
    /// Loads that compiled and wrote the cache.
    pub misses: usize,
}

/// The WASM runtime. One per process: cheap to clone, every clone shares the engine.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

/// What every plugin of the process shares.
pub(crate) struct Shared {
    /// Without fuel: what deployments without a fuel limit run on.
    pub(crate) engine: Engine,
    /// WASI plus `burrow:plugin/host`: the imports every plugin is resolved against.
    pub(crate) linker: Linker<StoreState>,
    /// With fuel counted, and its linker: for deployments that set a fuel limit.
    pub(crate) metered_engine: Engine,
    pub(crate) metered_linker: Linker<StoreState>,
    /// Held for its counters; the engine holds the clone that does the caching.
    cache: Option<Cache>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.shared.cache.as_ref().map(Cache::directory))
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let cache = config.cache.open()?;
        let engine_of = |fuel: bool| {
            let mut engine_config = Config::new();
            engine_config
                .epoch_interruption(true)
                .consume_fuel(fuel)
                .cache(cache.clone());
            let engine =
                Engine::new(&engine_config).map_err(|e| RuntimeError::Engine(e.to_string()))?;
            let linker = linker(&engine).map_err(|e| RuntimeError::Engine(e.to_string()))?;
            Ok::<_, RuntimeError>((engine, linker))
        };
        let (engine, linker) = engine_of(false)?;
        let (metered_engine, metered_linker) = engine_of(true)?;
        let ticker = EpochTicker::start(vec![engine.clone(), metered_engine.clone()])
            .map_err(RuntimeError::Ticker)?;
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                metered_engine,
                metered_linker,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// Loads the plugin at `path` (named after the file stem): compile or fetch from the
    /// cache, validate against the contract, pre-link. Slow; keep it off the hot path.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        plugin::load_file(&self.shared, path)
    }

    /// Like [`Runtime::load_file`], from bytes already in memory.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        plugin::load_bytes(&self.shared, name, bytes)
    }

    /// Cache hits and misses so far; `None` without a cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.shared.cache.as_ref().map(|cache| CacheStats {
            hits: cache.cache_hits(),
            misses: cache.cache_misses(),
        })
    }
}

/// wasmtime wants an absolute, existing cache directory; it creates it if needed.
fn open_cache(dir: &Path) -> Result<Cache, RuntimeError> {
    let failed = |reason: String| RuntimeError::Cache {
        dir: dir.to_owned(),
        reason,
    };
    let absolute = std::path::absolute(dir).map_err(|e| failed(e.to_string()))?;
    let mut cache_config = CacheConfig::new();
    cache_config.with_directory(absolute);
    Cache::new(cache_config).map_err(|e| failed(plugin::one_line(&e)))
}

/// The imports every plugin may use: WASI and ours. WASI is the async flavour: a guest blocked
/// in a WASI sleep or poll is then a pending future, which the call's deadline can drop (the
/// sync flavour blocks the thread inside the host call, out of the deadline's reach).
fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Processor::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state)?;
    Ok(linker)
}
