//! What a changed configuration file means for a running host.
//!
//! The host watches its config file and the plugin files it names. When either changes, it
//! re-reads the file and asks [`plan`] what to do. Changes fall in three kinds, from cheapest
//! to most disruptive:
//!
//! - **swap**: the tenant's plugin (path or bytes), its limits or its plugin settings changed.
//!   The new deployment is loaded off the hot path and swapped in; the tenant's consumer, its
//!   assignment and its in-flight messages are untouched. Likewise its **rollout** (the
//!   `[tenant.rollout]` table, or the candidate's bytes): the new candidate is loaded and put
//!   beside the live version, or the rollout is removed, without a restart.
//! - **restart tenant**: what the tenant consumes or how its pool runs changed (topics, group,
//!   pool settings, failure policy, output topics). The tenant stops gracefully (drains,
//!   commits, leaves its group) and starts again with the new settings. Other tenants do not
//!   notice.
//! - **restart host**: process-wide settings (brokers, admin listener, cache dir, log format)
//!   cannot change under a running process; they are logged as needing a restart and the old
//!   values stay in force.

use std::path::Path;

use crate::config::{HostConfig, PoolSettings, TenantConfig};

/// A file of a tenant's that the host watches besides the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    /// The live version's `.wasm`.
    Plugin,
    /// The rollout's candidate `.wasm`.
    Candidate,
}

impl Watched {
    pub const ALL: [Watched; 2] = [Watched::Plugin, Watched::Candidate];

    /// Its path in `tenant`'s config, if it has one.
    pub fn path(self, tenant: &TenantConfig) -> Option<&Path> {
        match self {
            Watched::Plugin => Some(&tenant.plugin),
            Watched::Candidate => tenant.rollout.as_ref().map(|r| r.plugin.as_path()),
        }
    }
}

/// One thing to do to apply a new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tenant that was not there before.
    Start(String),
    /// A tenant no longer in the file.
    Stop(String),
    /// A tenant whose plugin deployment changed: swap it live.
    Swap(String),
    /// A tenant whose rollout changed (or its candidate's file): put the new one beside the
    /// live version, live.
    Rollout(String),
    /// A tenant whose consumption settings changed: stop and start it.
    Restart {
        /// The tenant.
        tenant: String,
        /// The keys that changed, for the log.
        keys: Vec<&'static str>,
    },
    /// A process-wide key changed; it takes effect at the next restart of the host.
    NeedsHostRestart(&'static str),
}

/// The changes that turn `old` into `new`; `changed_on_disk` says whether one of a tenant's
/// watched files changed since it was loaded (its path may be the same).
pub fn plan(
    old: &HostConfig,
    new: &HostConfig,
    changed_on_disk: impl Fn(&TenantConfig, Watched) -> bool,
) -> Vec<Change> {
    let mut changes = host_changes(old, new);
    for tenant in &old.tenants {
        if !new.tenants.iter().any(|t| t.name == tenant.name) {
            changes.push(Change::Stop(tenant.name.clone()));
        }
    }
    for tenant in &new.tenants {
        let Some(before) = old.tenants.iter().find(|t| t.name == tenant.name) else {
            changes.push(Change::Start(tenant.name.clone()));
            continue;
        };
        let keys = restart_keys(old, before, new, tenant);
        if !keys.is_empty() {
            changes.push(Change::Restart {
                tenant: tenant.name.clone(),
                keys,
            });
            continue;
        }
        if deployment_differs(before, tenant) || changed_on_disk(tenant, Watched::Plugin) {
            changes.push(Change::Swap(tenant.name.clone()));
        }
        if before.rollout != tenant.rollout || changed_on_disk(tenant, Watched::Candidate) {
            changes.push(Change::Rollout(tenant.name.clone()));
        }
    }
    changes
}

fn host_changes(old: &HostConfig, new: &HostConfig) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.kafka != new.kafka {
        changes.push(Change::NeedsHostRestart("kafka"));
    }
    if old.admin != new.admin {
        changes.push(Change::NeedsHostRestart("admin"));
    }
    if old.log != new.log {
        changes.push(Change::NeedsHostRestart("log"));
    }
    if old.cache_dir != new.cache_dir {
        changes.push(Change::NeedsHostRestart("cache_dir"));
    }
    if old.instance_id != new.instance_id {
        changes.push(Change::NeedsHostRestart("instance_id"));
    }
    changes
}

/// Keys whose change needs the tenant's consumer and pool rebuilt. The top-level `[pool]`
/// counts through the tenant's effective settings.
fn restart_keys(
    old_host: &HostConfig,
    old: &TenantConfig,
    new_host: &HostConfig,
    new: &TenantConfig,
) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.group_id != new.group_id {
        keys.push("group_id");
    }
    if old.topics != new.topics {
        keys.push("topics");
    }
    if old.on_failure != new.on_failure {
        keys.push("on_failure");
    }
    if old.dead_letter_topic != new.dead_letter_topic {
        keys.push("dead_letter_topic");
    }
    if old.output_topics != new.output_topics {
        keys.push("output_topics");
    }
    if old.delivery != new.delivery {
        keys.push("delivery");
    }
    // `start_timeout` bounds a start: a running tenant has started, a new value waits for
    // its next one.
    let running = |host: &HostConfig, tenant: &TenantConfig| PoolSettings {
        start_timeout: None,
        ..host.pool_settings_for(tenant)
    };
    if running(old_host, old) != running(new_host, new) {
        keys.push("pool");
    }
    keys
}

/// Whether what the plugin runs with changed: which file, its limits, its settings.
fn deployment_differs(old: &TenantConfig, new: &TenantConfig) -> bool {
    old.plugin != new.plugin || old.limits != new.limits || old.config != new.config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(tenants: &str) -> HostConfig {
        let text = format!("[kafka]\nbrokers = \"b:1\"\n{tenants}");
        HostConfig::parse(&text, Vec::new()).expect("parses")
    }

    fn tenant(name: &str, extra: &str) -> String {
        format!(
            "[[tenant]]\nname = \"{name}\"\ngroup_id = \"g-{name}\"\ntopics = [\"in-{name}\"]\n\
             plugin = \"{name}.wasm\"\non_failure = \"skip\"\n{extra}\n"
        )
    }

    fn never(_: &TenantConfig, _: Watched) -> bool {
        false
    }

    /// The same file plans nothing.
    #[test]
    fn unchanged_file_plans_nothing() {
        let a = host(&tenant("a", ""));
        assert_eq!(plan(&a, &a.clone(), never), vec![]);
    }

    /// A new plugin path, new limits or new plugin settings swap the plugin live.
    #[test]
    fn plugin_limits_and_settings_swap_live() {
        let old = host(&tenant("a", ""));
        for extra in [
            "[tenant.limits]\nmemory = \"32MiB\"",
            "[tenant.limits]\ntimeout = \"5s\"",
            "[tenant.config]\noutput-topic = \"x\"",
        ] {
            let new = host(&tenant("a", extra));
            assert_eq!(
                plan(&old, &new, never),
                vec![Change::Swap("a".into())],
                "{extra}"
            );
        }
        let moved = host(&tenant("a", "").replace("a.wasm", "b.wasm"));
        assert_eq!(plan(&old, &moved, never), vec![Change::Swap("a".into())]);
    }

    /// Same path, new bytes on disk: still a swap (of the live version, or of the rollout's
    /// candidate, whichever file changed).
    #[test]
    fn rewritten_plugin_file_swaps() {
        let a = host(&tenant(
            "a",
            "[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"shadow\"",
        ));
        assert_eq!(
            plan(&a, &a.clone(), |_, file| file == Watched::Plugin),
            vec![Change::Swap("a".into())]
        );
        assert_eq!(
            plan(&a, &a.clone(), |_, file| file == Watched::Candidate),
            vec![Change::Rollout("a".into())]
        );
    }

    /// Tenants added or removed start or stop; the others are left alone.
    #[test]
    fn tenants_added_and_removed() {
        let old = host(&(tenant("a", "") + &tenant("b", "")));
        let new = host(&(tenant("b", "") + &tenant("c", "")));
        assert_eq!(
            plan(&old, &new, never),
            vec![Change::Stop("a".into()), Change::Start("c".into())]
        );
    }

    /// Consumption settings restart only that tenant, naming what changed.
    #[test]
    fn consumption_settings_restart_the_tenant() {
        let old = host(&(tenant("a", "") + &tenant("b", "")));
        let new = host(&(tenant("a", "[tenant.pool]\nworkers = 3") + &tenant("b", "")));
        assert_eq!(
            plan(&old, &new, never),
            vec![Change::Restart {
                tenant: "a".into(),
                keys: vec!["pool"]
            }]
        );
    }

    /// A rollout added, changed or removed is put in place live, not by a restart; with new
    /// limits too, both happen.
    #[test]
    fn a_rollout_change_is_applied_live() {
        let plain = host(&tenant("a", ""));
        let shadow = host(&tenant(
            "a",
            "[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"shadow\"",
        ));
        let canary = host(&tenant(
            "a",
            "[tenant.limits]\nmemory = \"32MiB\"\n[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"canary\"\nshare = 0.1",
        ));
        let rollout = vec![Change::Rollout("a".into())];
        assert_eq!(plan(&plain, &shadow, never), rollout);
        assert_eq!(plan(&shadow, &plain, never), rollout);
        assert_eq!(
            plan(&shadow, &canary, never),
            vec![Change::Swap("a".into()), Change::Rollout("a".into())]
        );
    }

    /// A top-level `[pool]` change restarts every tenant that inherits it.
    #[test]
    fn top_level_pool_change_restarts_inheriting_tenants() {
        let old = host(&(tenant("a", "") + &tenant("b", "[tenant.pool]\nworkers = 2")));
        let text = format!(
            "[pool]\nworkers = 9\n{}{}",
            tenant("a", ""),
            tenant("b", "[tenant.pool]\nworkers = 2")
        );
        let new = host(&text);
        assert_eq!(
            plan(&old, &new, never),
            vec![Change::Restart {
                tenant: "a".into(),
                keys: vec!["pool"]
            }]
        );
    }

    /// A new `start_timeout` restarts nothing: it bounds a tenant's next start.
    #[test]
    fn start_timeout_change_restarts_nothing() {
        let old = host(&tenant("a", ""));
        let new = host(&format!(
            "[pool]\nstart_timeout = \"2m\"\n{}",
            tenant("a", "")
        ));
        assert_eq!(plan(&old, &new, never), vec![]);
    }

    /// Brokers cannot change under a running process: reported, not applied.
    #[test]
    fn broker_change_needs_a_host_restart() {
        let old = host(&tenant("a", ""));
        let mut new = old.clone();
        new.kafka.brokers = "other:1".into();
        assert_eq!(
            plan(&old, &new, never),
            vec![Change::NeedsHostRestart("kafka")]
        );
    }
}
