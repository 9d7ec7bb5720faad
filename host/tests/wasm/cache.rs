//! Compiled plugins are cached on disk: the first load compiles (a miss), later loads — in
//! this runtime or a new one, as after a restart — are hits.

use crate::support;

use burrow::wasm::{CacheStats, CodeCache, Deployment, Outcome, Runtime, RuntimeConfig};
use support::{chaos, load, outcome, worker};

/// Miss, then hit in the same runtime, then hit in a fresh runtime on the same directory; the
/// plugin from the cache runs.
#[test]
fn second_load_is_a_cache_hit_even_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = RuntimeConfig {
        cache: CodeCache::Dir(dir.path().to_path_buf()),
    };

    let first = Runtime::new(&config)?;
    load(&first, "chaos")?;
    assert_eq!(first.cache_stats(), Some(CacheStats { hits: 0, misses: 1 }));
    load(&first, "chaos")?;
    assert_eq!(first.cache_stats(), Some(CacheStats { hits: 1, misses: 1 }));

    let restarted = Runtime::new(&config)?;
    let plugin = load(&restarted, "chaos")?;
    assert_eq!(
        restarted.cache_stats(),
        Some(CacheStats { hits: 1, misses: 0 })
    );
    let (_slot, mut worker) = worker(Deployment::new(plugin));
    assert_eq!(outcome(&mut worker, &chaos("commit"))?, Outcome::Commit);
    Ok(())
}

/// A different plugin is a different cache entry.
#[test]
fn different_plugins_do_not_share_an_entry() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(&RuntimeConfig {
        cache: CodeCache::Dir(dir.path().to_path_buf()),
    })?;
    load(&runtime, "chaos")?;
    load(&runtime, "passthrough")?;
    assert_eq!(
        runtime.cache_stats(),
        Some(CacheStats { hits: 0, misses: 2 })
    );
    Ok(())
}

/// `cache_dir` unset is the user's cache; empty is none; anything else is that directory.
#[test]
fn the_setting_maps_to_a_cache() {
    use std::path::Path;
    assert_eq!(CodeCache::from_setting(None), CodeCache::User);
    assert_eq!(CodeCache::from_setting(Some(Path::new(""))), CodeCache::Off);
    assert_eq!(
        CodeCache::from_setting(Some(Path::new("/var/cache/burrow"))),
        CodeCache::Dir("/var/cache/burrow".into())
    );
}

/// A directory the operator named that cannot be used is an error naming it.
#[test]
fn an_unusable_cache_dir_is_refused() -> anyhow::Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    let err = Runtime::new(&RuntimeConfig {
        cache: CodeCache::Dir(file.path().join("sub")),
    })
    .expect_err("a directory under a file cannot be made");
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
    Ok(())
}

/// Without a cache directory there are no stats to report.
#[test]
fn no_cache_dir_means_no_cache() -> anyhow::Result<()> {
    assert_eq!(Runtime::new(&RuntimeConfig::default())?.cache_stats(), None);
    Ok(())
}
