//! Rollouts: a candidate version of a tenant's plugin beside the live one
//! (`[tenant.rollout]`), in one of two modes:
//!
//! - shadow: the candidate runs on the same messages as the live version, after it and
//!   never in its way; it is compared with it and has no effect.
//! - canary: the candidate serves a stable share of keys for real. The tenant routes and
//!   tallies (`crate::tenant`'s canary), [`ConfigRules`] judge from the config: promote after a time
//!   or a count, roll back when a margin over the live version is broken.

mod rules;
mod shadow;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{HostConfig, RolloutMode, TenantConfig};
use crate::kafka::producer::Producer;
use crate::plugin_test::Runner;
use crate::pool::Attempt;
use crate::tenant::{Canary, Observer, Rollout};
use crate::wasm::{CallError, Processed, Runtime};

pub use rules::ConfigRules;
use shadow::Shadow;

/// The rollout `tenant`'s config asks for, if any, with its candidate loaded. A candidate
/// that cannot load never stops the tenant: the live version runs on, and the log (and for a
/// shadow, `/stats`) says why.
pub fn rollout(runtime: &Runtime, host: &HostConfig, tenant: &TenantConfig) -> Option<Rollout> {
    match tenant.rollout.as_ref()?.mode {
        RolloutMode::Shadow => observer(runtime, host, tenant).map(Rollout::Shadow),
        RolloutMode::Canary => canary(runtime, tenant).map(Rollout::Canary),
    }
}

/// What watches `tenant` for its rollout, if it has one: a shadow of the candidate, or, when
/// the candidate cannot be loaded, a report of why (the live version runs on regardless).
fn observer(
    runtime: &Runtime,
    host: &HostConfig,
    tenant: &TenantConfig,
) -> Option<Arc<dyn Observer>> {
    let rollout = tenant.rollout.as_ref()?;
    let RolloutMode::Shadow = rollout.mode else {
        return None;
    };
    let diffs = rollout.diff_topic.as_ref().map(|topic| {
        Producer::new(&host.kafka.brokers, &host.kafka.options).map(|p| (p, topic.clone()))
    });
    let started = diffs
        .transpose()
        .map_err(|e| format!("the diff_topic producer: {e}"))
        .and_then(|diffs| {
            Runner::new(runtime, tenant, &rollout.plugin, &BTreeMap::new())
                .map_err(|e| e.to_string())
                .map(|candidate| (candidate, diffs))
        })
        .and_then(|(candidate, diffs)| {
            Shadow::start(&tenant.name, candidate, diffs).map_err(|e| e.to_string())
        });
    Some(match started {
        Ok(shadow) => Arc::new(shadow),
        Err(why) => {
            tracing::warn!(tenant = %tenant.name, candidate = %rollout.plugin.display(), error = %why, "the shadow candidate cannot run; the live version runs on");
            Arc::new(Unavailable(why))
        }
    })
}

/// The canary of `tenant`'s rollout, if it has one: its candidate loaded under the tenant's
/// limits and settings. A candidate that cannot load is logged and the live version serves
/// every key.
fn canary(runtime: &Runtime, tenant: &TenantConfig) -> Option<Canary> {
    let rollout = tenant.rollout.as_ref()?;
    let (RolloutMode::Canary, Some(share)) = (rollout.mode, rollout.share) else {
        return None;
    };
    match crate::tenant::deployment(runtime, &tenant.with_plugin(&rollout.plugin)) {
        Ok(candidate) => Some(Canary {
            candidate,
            share,
            rules: Some(Box::new(ConfigRules::from(rollout))),
        }),
        Err(e) => {
            tracing::warn!(tenant = %tenant.name, candidate = %rollout.plugin.display(), error = %e, "the canary candidate cannot load; the live version serves every key");
            None
        }
    }
}

/// A rollout whose candidate could not start: says why in `/stats`, sees nothing.
struct Unavailable(String);

impl Observer for Unavailable {
    fn offer(&self, _: Vec<Attempt>, _: Vec<Result<Processed, CallError>>) {}

    fn report(&self) -> Value {
        serde_json::json!({ "mode": "shadow", "error": self.0 })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
}
