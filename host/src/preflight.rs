//! The checks `burrow validate` and `burrow run` share, beyond a file that parses: everything
//! `run` would refuse once it starts, found before anything is consumed, every problem at once.
//!
//! librdkafka's errors may quote configuration: they go through [`secret::redact`] before they
//! become a [`ConfigIssue`].

use std::sync::Arc;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;

use crate::config::secret::{self, is_secret_key};
use crate::config::{ConfigIssue, HostConfig, TenantConfig};
use crate::kafka::producer::{ProduceError, Producer};
use crate::tenant;
use crate::wasm::{CallError, Deployment, DeploymentSlot, PluginInstance, Runtime};

/// Checks everything `run` needs beyond a valid file, as `run` does it, consuming nothing:
///
/// - each tenant's consumer and the shared producer are built with the settings `run` uses.
///   librdkafka checks every property then (unknown names, bad values, TLS material that does
///   not load); nothing connects until a client is used, and these are dropped unused;
/// - each plugin is loaded and instantiated once under its tenant's limits, so a memory cap
///   below what the plugin needs to start is refused here instead of failing every message.
///
/// Returns the loaded deployments in tenant order, or every problem found, each naming its key,
/// with secret values redacted.
pub fn check(config: &HostConfig, runtime: &Runtime) -> Result<Vec<Deployment>, Vec<ConfigIssue>> {
    let mut issues = client_issues(config);
    let mut deployments = Vec::new();
    for (i, tenant) in config.tenants.iter().enumerate() {
        match tenant::deployment(runtime, tenant) {
            // A missing directory is the file check's to report; without it the instance can
            // still show whether the other limits let the plugin start.
            Ok(deployment) => match instantiate(&without_missing_dirs(&deployment)) {
                Ok(()) => deployments.push(deployment),
                Err(e) => issues.push(instantiate_issue(i, tenant, &e)),
            },
            Err(e) => issues.push(ConfigIssue {
                key: format!("tenant[{i}].plugin"),
                message: e.to_string(),
            }),
        }
    }
    if issues.is_empty() {
        Ok(deployments)
    } else {
        Err(issues)
    }
}

/// Builds the clients `run` builds and reports what librdkafka refuses. The options are
/// shared by every tenant, so a bad one is reported once, not once per tenant.
///
/// The clients are built without `bootstrap.servers`: with brokers, librdkafka starts
/// connecting as soon as a client exists (the idempotent producer asks for its producer id at
/// once), and a check must not touch the network nor log its failures. Everything else —
/// every property, the TLS material, the SASL setup — is checked as `run` would. librdkafka's
/// own logging is off for the same reason (`log_level` 0); what it refuses comes back as an
/// error.
fn client_issues(config: &HostConfig) -> Vec<ConfigIssue> {
    let mut issues: Vec<ConfigIssue> = Vec::new();
    // librdkafka stops at the first property it refuses: each is tried alone first, so every
    // unknown name and bad value is reported in one pass.
    for (key, value) in &config.kafka.options {
        let mut alone = rdkafka::ClientConfig::new();
        alone.set(key, value);
        if let Err(e) = alone.create_native_config() {
            let mut issue = client_issue(config, "client", &e);
            issue.key = format!("kafka.options.{key}");
            issues.push(issue);
        }
    }
    if !issues.is_empty() {
        return issues;
    }
    let mut add = |issue: ConfigIssue| {
        if !issues.contains(&issue) {
            issues.push(issue);
        }
    };
    let mut made: Vec<Box<dyn Send>> = Vec::new();
    for tenant in &config.tenants {
        let mut consumer = tenant::consumer_config(config, tenant);
        consumer.remove("bootstrap.servers").set("log_level", "0");
        match consumer.create::<BaseConsumer>() {
            Ok(consumer) => made.push(Box::new(consumer)),
            Err(e) => add(client_issue(config, "consumer", &e)),
        }
    }
    let mut options = config.kafka.options.clone();
    options.insert("log_level".into(), "0".into());
    match Producer::new("", &options).and_then(|p| p.start().map(|()| p)) {
        Ok(producer) => made.push(Box::new(producer)),
        Err(ProduceError::Create(e)) => add(client_issue(config, "producer", &e)),
        Err(e) => add(ConfigIssue {
            key: "kafka.options".into(),
            message: secret::redact(&e.to_string(), &config.secrets()),
        }),
    }
    dispose(made);
    issues
}

/// Drops the clients made only to check their settings on a thread of its own: librdkafka's
/// destroy waits for the client's threads to end, ~100 ms per client here, and start-up need
/// not wait for that (it was most of `burrow run`'s time to its first message; `make bench`
/// B8). If the thread cannot start, the clients are dropped here, with the closure.
fn dispose(clients: Vec<Box<dyn Send>>) {
    if clients.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("burrow-preflight-drop".into())
        .spawn(move || drop(clients));
}

/// librdkafka's refusal as an issue on the key it is about. Its config errors quote the value
/// (`Invalid value "..." for configuration property "..."`), and rust-rdkafka's text appends
/// the key and value again: only librdkafka's sentence is kept, with every secret redacted.
fn client_issue(config: &HostConfig, client: &str, err: &KafkaError) -> ConfigIssue {
    let mut secrets = config.secrets();
    match err {
        KafkaError::ClientConfig(_, description, key, value) => {
            if is_secret_key(key) {
                secrets.push(value.clone());
            }
            let key = match key.as_str() {
                "bootstrap.servers" | "metadata.broker.list" => "kafka.brokers".to_owned(),
                key => format!("kafka.options.{key}"),
            };
            ConfigIssue {
                key,
                message: secret::redact(description, &secrets),
            }
        }
        other => {
            let text = match other {
                KafkaError::ClientCreation(text) => text.clone(),
                other => other.to_string(),
            };
            let text = secret::redact(&text, &secrets);
            // Creation errors (TLS material, SASL setup) name the property in prose, or
            // quote its value ("Unsupported SASL mechanism: NOPE").
            let options = &config.kafka.options;
            let by_name = options
                .keys()
                .filter(|key| text.contains(key.as_str()))
                .max_by_key(|key| key.len());
            let by_value = || {
                options
                    .iter()
                    .filter(|(key, value)| {
                        value.len() >= 3
                            && !secret::is_secret_key(key)
                            && text.contains(value.as_str())
                    })
                    .max_by_key(|(_, value)| value.len())
                    .map(|(key, _)| key)
            };
            let key = by_name.or_else(by_value).map_or_else(
                || "kafka.options".to_owned(),
                |key| format!("kafka.options.{key}"),
            );
            ConfigIssue {
                key,
                message: format!("librdkafka cannot create the {client}: {text}"),
            }
        }
    }
}

/// `deployment` granting only those of its directories that exist.
fn without_missing_dirs(deployment: &Deployment) -> Deployment {
    let mut capabilities = deployment.capabilities().clone();
    capabilities.read_only_dirs.retain(|dir| dir.is_dir());
    deployment.clone().with_capabilities(capabilities)
}

/// Makes one instance of `deployment`, as a worker's first call would, and drops it.
///
/// On a thread of its own: instantiating runs guest code (initialisers) and blocks, and the
/// caller may be an async task (start-up and reloads run on the host's runtime); a fresh
/// thread is outside any runtime whatever the caller's.
pub(crate) fn instantiate(deployment: &Deployment) -> Result<(), CallError> {
    let slot = Arc::new(DeploymentSlot::new(deployment.clone()));
    std::thread::scope(|scope| {
        scope
            .spawn(|| PluginInstance::new(slot).warm_up())
            .join()
            .unwrap_or_else(|_| {
                Err(CallError::Instantiate(
                    "the instantiation thread panicked".into(),
                ))
            })
    })
}

/// An instantiation failure, on the limit that caused it when there is one.
fn instantiate_issue(i: usize, tenant: &TenantConfig, err: &CallError) -> ConfigIssue {
    let name = tenant
        .plugin
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let text = err.to_string();
    // A cap hit while instantiating is reported as an instantiation error whose text is the
    // memory limiter's ("memory cap of N bytes exceeded").
    let memory = matches!(err, CallError::MemoryExceeded { .. }) || text.contains("memory cap");
    // Likewise wasmtime's trap for an empty tank ("all fuel consumed").
    let fuel = matches!(err, CallError::FuelExhausted { .. }) || text.contains("fuel consumed");
    let (limit, message) = match err {
        _ if memory => (
            Some("memory"),
            format!(
                "{} is below what plugin `{name}` needs to start ({text})",
                tenant.limits.memory
            ),
        ),
        CallError::Timeout { .. } => (
            Some("timeout"),
            format!(
                "{} is not long enough for plugin `{name}` to start ({text})",
                humantime::format_duration(tenant.limits.timeout)
            ),
        ),
        _ if fuel => (
            Some("fuel"),
            format!(
                "{} is not enough fuel for plugin `{name}` to start ({text})",
                tenant.limits.fuel.unwrap_or_default()
            ),
        ),
        _ => (None, format!("plugin `{name}`: {text}")),
    };
    ConfigIssue {
        key: match limit {
            Some(limit) => format!("tenant[{i}].limits.{limit}"),
            None => format!("tenant[{i}].plugin"),
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tenant config with `options` under `[kafka.options]`.
    fn with_options(options: &[(&str, &str)]) -> HostConfig {
        let mut text = String::from("[kafka]\nbrokers = \"localhost:9092\"\n\n[kafka.options]\n");
        for (key, value) in options {
            text.push_str(&format!("{key:?} = {value:?}\n"));
        }
        text.push_str(
            "\n[[tenant]]\nname = \"t\"\ngroup_id = \"g\"\ntopics = [\"in\"]\nplugin = \"p.wasm\"\non_failure = \"skip\"\n",
        );
        HostConfig::parse(&text, std::iter::empty()).expect("parses")
    }

    /// The binary's librdkafka has every SASL mechanism a production cluster asks for — PLAIN,
    /// SCRAM-SHA-256/512 and OAUTHBEARER with OIDC (libcurl) — over TLS: the consumer and the
    /// producer build with each, as `run` builds them. GSSAPI (Kerberos, not built in) is
    /// refused, naming the key, which shows the check can fail.
    #[test]
    fn every_sasl_mechanism_builds_over_tls_and_gssapi_is_refused() {
        let tls = [("security.protocol", "sasl_ssl")];
        let password = [("sasl.username", "u"), ("sasl.password", "p")];
        let cases: [(&str, &[(&str, &str)]); 4] = [
            ("PLAIN", &password),
            ("SCRAM-SHA-256", &password),
            ("SCRAM-SHA-512", &password),
            (
                "OAUTHBEARER",
                &[
                    ("sasl.oauthbearer.method", "oidc"),
                    ("sasl.oauthbearer.client.id", "burrow"),
                    ("sasl.oauthbearer.client.secret", "s"),
                    (
                        "sasl.oauthbearer.token.endpoint.url",
                        "https://idp.invalid/token",
                    ),
                ],
            ),
        ];
        for (mechanism, extra) in cases {
            let mut options = vec![("sasl.mechanism", mechanism)];
            options.extend(tls);
            options.extend(extra.iter().copied());
            let issues = client_issues(&with_options(&options));
            assert!(issues.is_empty(), "{mechanism}: {issues:?}");
        }
        let mut options = vec![("sasl.mechanism", "GSSAPI")];
        options.extend(tls);
        let issues = client_issues(&with_options(&options));
        assert!(
            issues
                .iter()
                .any(|i| i.key.contains("sasl.mechanism") || i.message.contains("GSSAPI")),
            "GSSAPI is not built in and must be refused: {issues:?}"
        );
    }
}
