//! What in a configuration is secret, and how a secret is kept out of any text Burrow prints.
//!
//! Two functions, one decision each: [`is_secret_key`] says whether a librdkafka property holds
//! a secret, [`redact`] removes known secret values from any text (an error from librdkafka, a
//! log line, a `/stats` field). Every place that shows configuration-derived text goes through
//! them, so a new secret property is added here once and is hidden everywhere.

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// librdkafka's properties marked sensitive (`_RK_SENSITIVE` in `rdkafka_conf.c` of the
/// bundled librdkafka 2.12, the `*` of CONFIGURATION.md), plus aliases that set one of them.
/// Paths (`ssl.key.location`) are on librdkafka's list too: they tell an attacker where to look.
const SENSITIVE_PROPERTIES: &[&str] = &[
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// Whether the value of property `key` is a secret. Beyond librdkafka's own list, any key whose
/// last word is a password, secret, passphrase or token is treated as one: a property added in
/// a later librdkafka (or a plugin's setting) named like a secret is hidden before it leaks.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    if SENSITIVE_PROPERTIES.contains(&key.as_str()) {
        return true;
    }
    let last = key.rsplit(['.', '_', '-']).next().unwrap_or(&key);
    matches!(
        last,
        "password" | "passwd" | "secret" | "passphrase" | "token"
    )
}

/// Whether a dotted config path (`kafka.options.sasl.password`, `tenant[0].config.api_token`)
/// ends in a secret key. The map key itself may contain dots, so every suffix is tried.
pub fn is_secret_path(path: &str) -> bool {
    let path = path.trim_matches('`');
    is_secret_key(path)
        || path
            .match_indices('.')
            .any(|(i, _)| is_secret_key(&path[i + 1..]))
}

/// `text` with every occurrence of each of `secrets` replaced by [`REDACTED`]. Empty values are
/// skipped (they would match everywhere and hide nothing); longer secrets are replaced first so
/// a secret containing another is hidden whole.
pub fn redact<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property librdkafka marks sensitive, and names that look like secrets, are secret;
    /// ordinary properties (including the certificate, which is public) are not.
    #[test]
    fn librdkafka_sensitive_properties_are_secret() {
        for key in SENSITIVE_PROPERTIES {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "SASL.PASSWORD",
            "my.api.token",
            "db_password",
            "hook-secret",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "ssl.certificate.pem",
            "security.protocol",
            "sasl.mechanism",
            "max.poll.interval.ms",
            "compression.type",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    /// A config path is secret when its map key is, however many dots the key holds.
    #[test]
    fn paths_ending_in_a_secret_key_are_secret() {
        assert!(is_secret_path("kafka.options.sasl.password"));
        assert!(is_secret_path("`kafka.options.ssl.key.pem`"));
        assert!(is_secret_path("tenant[0].config.api_token"));
        assert!(!is_secret_path("kafka.options.security.protocol"));
        assert!(!is_secret_path("tenant[0].limits.memory"));
    }

    /// Each secret is replaced wherever it occurs, the longest first; empty ones are ignored.
    #[test]
    fn redact_replaces_every_occurrence() {
        let text = "bad value \"hunter2-long\" for ssl.key.password hunter2-long; also hunter2";
        let out = redact(text, &["hunter2", "hunter2-long", ""]);
        assert!(!out.contains("hunter2"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }
}
