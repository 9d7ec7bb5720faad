use super::*;

const MINIMAL: &str = r#"
[kafka]
brokers = "localhost:9092"

[[tenant]]
name = "orders"
group_id = "burrow-orders"
topics = ["orders"]
plugin = "plugins/json-validate.wasm"
dead_letter_topic = "orders-dlq"
"#;

fn parse(text: &str) -> Result<HostConfig, ConfigError> {
    HostConfig::parse(text, Vec::<(String, String)>::new())
}

fn invalid_keys(text: &str) -> Vec<String> {
    let config = parse(text).expect("parses");
    match config.validate() {
        Err(ConfigError::Invalid { issues, .. }) => issues.into_iter().map(|i| i.key).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

/// A minimal file gets the documented defaults.
#[test]
fn minimal_file_gets_defaults() {
    let config = parse(MINIMAL).expect("parses");
    config.validate().expect("valid");
    assert_eq!(config.admin.listen, "127.0.0.1:9464".parse().expect("addr"));
    let tenant = &config.tenants[0];
    assert_eq!(tenant.on_failure, FailurePolicy::DeadLetter);
    assert_eq!(tenant.limits.memory, ByteSize::mib(64));
    assert_eq!(tenant.limits.timeout, Duration::from_secs(1));
    assert_eq!(tenant.limits.fuel, None);
    assert_eq!(
        tenant.limits.cpu(),
        crate::wasm::Cpu::default(),
        "weight 1, no cap"
    );
    assert!(tenant.limits.env.is_empty() && tenant.limits.read_dirs.is_empty());
    assert_eq!(config.log.format, LogFormat::Text);
}

/// Every documented key parses, with durations and sizes in human units.
#[test]
fn full_file_parses_every_key() {
    let text = r#"
cache_dir = "/var/cache/burrow"
[kafka]
brokers = "a:9092,b:9092"
[kafka.options]
"security.protocol" = "plaintext"
[pool]
workers = 16
job_queue_size = 500
commit_interval = "2s"
commit_batch_size = 100
max_consecutive_errors = 5
max_retries = 4
retry_backoff_base = "50ms"
ordering = "key"
shutdown_timeout = "10s"
start_timeout = "5m"
[admin]
listen = "0.0.0.0:9000"
[log]
format = "json"
[[tenant]]
name = "t1"
group_id = "g1"
topics = ["in"]
plugin = "p.wasm"
on_failure = "skip"
output_topics = ["out"]
[tenant.limits]
memory = "32MiB"
timeout = "250ms"
fuel = 1000000
cpu_weight = 3
cpu = 0.25
env = { REGION = "eu" }
# An existing directory: validation checks it is there.
read_dirs = ["/etc"]
[tenant.pool]
workers = 2
ordering = "partition"
[tenant.config]
output-topic = "out"
"#;
    let config = parse(text).expect("parses");
    config.validate().expect("valid");
    assert_eq!(config.pool.commit_interval, Some(Duration::from_secs(2)));
    assert_eq!(
        config.pool.retry_backoff_base,
        Some(Duration::from_millis(50))
    );
    assert_eq!(config.pool.ordering, Some(OrderingSetting::Key));
    assert_eq!(config.log.format, LogFormat::Json);
    let t = &config.tenants[0];
    assert_eq!(t.limits.memory, ByteSize::mib(32));
    assert_eq!(t.limits.timeout, Duration::from_millis(250));
    assert_eq!(t.limits.fuel, Some(1_000_000));
    assert_eq!(
        t.limits.cpu(),
        crate::wasm::Cpu {
            weight: 3,
            cores: Some(0.25)
        }
    );
    assert_eq!(
        t.config.get("output-topic").map(String::as_str),
        Some("out")
    );
    let merged = config.pool_settings_for(t);
    assert_eq!(merged.workers, Some(2), "tenant override wins");
    assert_eq!(merged.ordering, Some(OrderingSetting::Partition));
    assert_eq!(
        merged.job_queue_size,
        Some(500),
        "unset keys inherit [pool]"
    );
}

/// A misspelt key is an error that names it, not a silently ignored setting.
#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace("[kafka]", "[kafka]\nbrokerz = \"x\"");
    let err = parse(&text).expect_err("unknown key");
    let shown = err.to_string();
    assert!(shown.contains("brokerz"), "{shown}");
    let text = format!("{MINIMAL}[tenant.limits]\nmemroy = \"1MiB\"\n");
    let shown = parse(&text).expect_err("unknown key").to_string();
    assert!(
        shown.contains("tenant[0].limits") && shown.contains("memroy"),
        "{shown}"
    );
}

/// A value that does not parse names its key and says why.
#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("memory = \"lots\"", "tenant[0].limits.memory"),
        ("timeout = \"soon\"", "tenant[0].limits.timeout"),
        ("fuel = \"many\"", "tenant[0].limits.fuel"),
        ("cpu_weight = \"heavy\"", "tenant[0].limits.cpu_weight"),
        ("cpu = \"half\"", "tenant[0].limits.cpu"),
    ];
    for (line, key) in cases {
        let text = format!("{MINIMAL}[tenant.limits]\n{line}\n");
        let shown = parse(&text).expect_err(line).to_string();
        assert!(shown.contains(key), "{line}: {shown}");
    }
    let text = MINIMAL.replace("[kafka]", "[pool]\nordering = \"random\"\n[kafka]");
    let shown = parse(&text).expect_err("bad enum").to_string();
    assert!(
        shown.contains("pool.ordering") && shown.contains("random"),
        "{shown}"
    );
}

/// `[tenant.rollout]`: the candidate's path is resolved like the plugin's; a mode other than
/// `shadow` is refused, naming the key and the value.
#[test]
fn rollout_is_parsed_and_checked() {
    let text = format!("{MINIMAL}[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"shadow\"\n");
    let config = parse(&text).expect("a shadow rollout");
    let rollout = config.tenants[0].rollout.as_ref().expect("the rollout");
    assert_eq!(rollout.mode, crate::config::RolloutMode::Shadow);
    assert!(rollout.plugin.ends_with("v2.wasm"));

    let other = format!("{MINIMAL}[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"blue-green\"\n");
    let shown = parse(&other).expect_err("not a mode").to_string();
    assert!(
        shown.contains("tenant[0].rollout.mode") && shown.contains("blue-green"),
        "{shown}"
    );
    // A canary needs its share, between 0 and 1.
    for (share, why) in [
        ("", "is required"),
        ("share = 1.5\n", "is not between 0 and 1"),
    ] {
        let text =
            format!("{MINIMAL}[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"canary\"\n{share}");
        let config = parse(&text).expect("parses");
        let shown = config.validate().expect_err("a bad share").to_string();
        assert!(
            shown.contains("tenant[0].rollout.share") && shown.contains(why),
            "{shown}"
        );
    }
}

/// A canary's rules: `promote_after` is a duration or a message count; margins are checked;
/// rules on a shadow are refused, naming the key.
#[test]
fn canary_rules_are_parsed_and_checked() {
    use crate::config::PromoteAfter;
    let canary = |rules: &str| {
        format!(
            "{MINIMAL}[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"canary\"\nshare = 0.1\n{rules}"
        )
    };
    for (rule, expected) in [
        (
            "promote_after = \"10m\"\n",
            PromoteAfter::Elapsed(Duration::from_secs(600)),
        ),
        ("promote_after = 5000\n", PromoteAfter::Messages(5000)),
        ("promote_after = \"5000\"\n", PromoteAfter::Messages(5000)),
    ] {
        let config = parse(&canary(rule)).expect("parses");
        config.validate().expect("valid");
        let rollout = config.tenants[0].rollout.as_ref().expect("the rollout");
        assert_eq!(rollout.promote_after, Some(expected), "{rule}");
    }
    let text = canary(
        "min_messages = 50\n[tenant.rollout.rollback_if]\nfailure_rate = 0.01\ntrap_rate = 0.05\np99 = \"20ms\"\n",
    );
    let config = parse(&text).expect("parses");
    config.validate().expect("valid");
    let rollout = config.tenants[0].rollout.as_ref().expect("the rollout");
    let rules = rollout.rollback_if.as_ref().expect("rules");
    assert_eq!(rollout.min_messages, Some(50));
    assert_eq!(
        (rules.failure_rate, rules.trap_rate, rules.p99),
        (Some(0.01), Some(0.05), Some(Duration::from_millis(20)))
    );

    let shown = parse(&canary("promote_after = \"soon\"\n"))
        .expect_err("not a duration")
        .to_string();
    assert!(
        shown.contains("tenant[0].rollout.promote_after") && shown.contains("soon"),
        "{shown}"
    );
    for (rules, key, why) in [
        (
            "[tenant.rollout.rollback_if]\ntrap_rate = 1.5\n",
            "rollback_if.trap_rate",
            "between 0 and 1",
        ),
        ("promote_after = 0\n", "promote_after", "at least 1"),
    ] {
        let shown = parse(&canary(rules))
            .expect("parses")
            .validate()
            .expect_err(key)
            .to_string();
        assert!(
            shown.contains(&format!("tenant[0].rollout.{key}")) && shown.contains(why),
            "{shown}"
        );
    }
    let shadow = format!(
        "{MINIMAL}[tenant.rollout]\nplugin = \"v2.wasm\"\nmode = \"shadow\"\npromote_after = 10\n"
    );
    let shown = parse(&shadow)
        .expect("parses")
        .validate()
        .expect_err("canary only")
        .to_string();
    assert!(
        shown.contains("tenant[0].rollout.promote_after") && shown.contains("canary"),
        "{shown}"
    );
}

/// `delivery` takes `at-least-once` (the default) or `exactly-once`; anything else names the
/// key; `transactional.id` is Burrow's to set; the transactional id is the group's and the
/// instance's.
#[test]
fn delivery_is_parsed_and_the_transactional_id_is_burrows() {
    let config = parse(MINIMAL).expect("parses");
    assert_eq!(
        config.tenants[0].delivery,
        crate::config::Delivery::AtLeastOnce
    );
    let text = format!("instance_id = \"east-1\"\n{MINIMAL}delivery = \"exactly-once\"\n");
    let config = parse(&text).expect("parses");
    assert_eq!(
        config.tenants[0].delivery,
        crate::config::Delivery::ExactlyOnce
    );
    let id = config.transactional_id(&config.tenants[0]);
    assert_eq!(id, format!("burrow-{}-east-1", config.tenants[0].group_id));

    let shown = parse(&(MINIMAL.to_owned() + "delivery = \"at-most-once\"\n"))
        .expect_err("not a mode")
        .to_string();
    assert!(
        shown.contains("tenant[0].delivery") && shown.contains("at-most-once"),
        "{shown}"
    );
    let text = MINIMAL.replace(
        "[kafka]\n",
        "[kafka]\noptions = { \"transactional.id\" = \"x\" }\n",
    );
    let shown = parse(&text)
        .expect("parses")
        .validate()
        .expect_err("reserved")
        .to_string();
    assert!(shown.contains("kafka.options.transactional.id"), "{shown}");
}

/// Environment variables override file keys, with numbers and durations parsed.
#[test]
fn environment_overrides_file() {
    let env = [
        ("BURROW__KAFKA__BROKERS", "override:1"),
        ("BURROW__POOL__WORKERS", "7"),
        ("BURROW__POOL__COMMIT_INTERVAL", "9s"),
        ("UNRELATED", "x"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = HostConfig::parse(MINIMAL, env).expect("parses");
    assert_eq!(config.kafka.brokers, "override:1");
    assert_eq!(config.pool.workers, Some(7));
    assert_eq!(config.pool.commit_interval, Some(Duration::from_secs(9)));
}

/// Validation reports every problem at once, each under its own key.
#[test]
fn validation_reports_every_issue_with_its_key() {
    let text = r#"
[kafka]
brokers = ""
[kafka.options]
"enable.auto.commit" = "true"
[pool]
workers = 0
commit_interval = "0s"
[[tenant]]
name = "bad name!"
group_id = "g"
topics = ["in"]
plugin = "p.wasm"
output_topics = ["in"]
[tenant.limits]
memory = "1KiB"
timeout = "0s"
fuel = 0
cpu_weight = 0
cpu = -1.0
[[tenant]]
name = "ok"
group_id = "g"
topics = []
plugin = "p.wasm"
on_failure = "skip"
dead_letter_topic = "no/slashes"
"#;
    let keys = invalid_keys(text);
    for expected in [
        "kafka.brokers",
        "kafka.options.enable.auto.commit",
        "pool.workers",
        "pool.commit_interval",
        "tenant[0].name",
        "tenant[0].dead_letter_topic",
        "tenant[0].output_topics[0]",
        "tenant[0].limits.memory",
        "tenant[0].limits.timeout",
        "tenant[0].limits.fuel",
        "tenant[0].limits.cpu_weight",
        "tenant[0].limits.cpu",
        "tenant[1].topics",
        "tenant[1].dead_letter_topic",
        "tenant[1].group_id",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "missing {expected} in {keys:?}"
        );
    }
}

/// A config with no tenant is refused: the host would do nothing.
#[test]
fn no_tenant_is_an_error() {
    let keys = invalid_keys("[kafka]\nbrokers = \"x:1\"\n");
    assert_eq!(keys, vec!["tenant".to_owned()]);
}

/// Dead letters must not go to a topic the tenant consumes, or they would loop.
#[test]
fn dead_letter_topic_must_not_be_an_input() {
    let text = MINIMAL.replace("orders-dlq", "orders");
    assert_eq!(
        invalid_keys(&text),
        vec!["tenant[0].dead_letter_topic".to_owned()]
    );
}

/// Plugin paths are relative to the config file, so the host runs from any directory.
#[test]
fn plugin_path_is_relative_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("burrow.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let config = HostConfig::load_with_env(&path, Vec::new()).expect("loads");
    assert_eq!(
        config.tenants[0].plugin,
        dir.path().join("plugins/json-validate.wasm")
    );
}

/// A missing file says which file.
#[test]
fn missing_file_is_named() {
    let err = HostConfig::load_with_env(Path::new("/nonexistent/burrow.toml"), Vec::new())
        .expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/burrow.toml"),
        "{err}"
    );
}

/// A TOML syntax error says where (line, column) and what was expected, and never quotes the
/// offending line: it may hold a password.
#[test]
fn syntax_error_names_the_place_not_the_text() {
    let text = format!(
        "{MINIMAL}[kafka.options]\n\"sasl.password\" = \"hunter2-secret\n\"sasl.username\" = \"u\"\n"
    );
    let err = parse(&text).expect_err("not TOML");
    let shown = err.to_string();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let line = MINIMAL.lines().count() + 2;
    assert!(shown.contains(&format!("line {line}, column ")), "{shown}");
}

/// A wrongly typed secret is named by its key, its value not shown.
#[test]
fn bad_secret_value_is_not_quoted() {
    let text = MINIMAL.replace(
        "[[tenant]]",
        "[kafka.options]\n\"sasl.password\" = { nested = \"hunter2-secret\" }\n[[tenant]]",
    );
    let err = parse(&text).expect_err("a table is not a string");
    let shown = err.to_string();
    assert!(shown.contains("sasl.password"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// The values of secret settings (librdkafka's and secret-named plugin settings) are known,
/// so they can be redacted; ordinary values are not among them.
#[test]
fn secrets_are_the_values_of_secret_keys() {
    let text = MINIMAL.replace(
        "[[tenant]]",
        "[kafka.options]\n\"sasl.password\" = \"p1\"\n\"ssl.key.pem\" = \"p2\"\n\
         \"security.protocol\" = \"ssl\"\n[[tenant]]",
    ) + "[tenant.config]\napi_token = \"p3\"\nregion = \"eu\"\n";
    let mut secrets = parse(&text).expect("parses").secrets();
    secrets.sort();
    assert_eq!(secrets, ["p1", "p2", "p3"]);
}

/// `shutdown_timeout` at or past `max.poll.interval.ms` is refused where it was written: the
/// pool would refuse to start.
#[test]
fn shutdown_timeout_must_be_below_max_poll_interval() {
    let options = "[kafka.options]\n\"max.poll.interval.ms\" = \"10000\"\n";
    let top = MINIMAL.replace(
        "[[tenant]]",
        &format!("{options}[pool]\nshutdown_timeout = \"10s\"\n[[tenant]]"),
    );
    assert_eq!(invalid_keys(&top), ["pool.shutdown_timeout"]);
    let own = MINIMAL.replace("[[tenant]]", &format!("{options}[[tenant]]"))
        + "[tenant.pool]\nshutdown_timeout = \"1m\"\n";
    assert_eq!(invalid_keys(&own), ["tenant[0].pool.shutdown_timeout"]);
    let default = MINIMAL.replace("[[tenant]]", &format!("{options}[[tenant]]"));
    assert_eq!(
        invalid_keys(&default),
        ["kafka.options.max.poll.interval.ms"]
    );
}

/// `start_timeout` is 10 minutes unless set, a tenant's own value wins, and one not longer
/// than `session.timeout.ms` is refused where it was written: every restart after a crash
/// would halt the tenant.
#[test]
fn start_timeout_defaults_and_must_outlast_the_session_timeout() {
    let config = parse(MINIMAL).expect("parses");
    let settings = config.pool_settings_for(&config.tenants[0]);
    assert_eq!(settings.start_timeout(), Duration::from_secs(600));
    let own =
        parse(&(MINIMAL.to_owned() + "[tenant.pool]\nstart_timeout = \"90s\"\n")).expect("parses");
    assert_eq!(
        own.pool_settings_for(&own.tenants[0]).start_timeout(),
        Duration::from_secs(90)
    );

    let top = MINIMAL.replace("[[tenant]]", "[pool]\nstart_timeout = \"45s\"\n[[tenant]]");
    assert_eq!(invalid_keys(&top), ["pool.start_timeout"]);
    let own = MINIMAL.to_owned() + "[tenant.pool]\nstart_timeout = \"0s\"\n";
    assert_eq!(invalid_keys(&own), ["tenant[0].pool.start_timeout"]);
    let options = "[kafka.options]\n\"session.timeout.ms\" = \"900000\"\n";
    let default = MINIMAL.replace("[[tenant]]", &format!("{options}[[tenant]]"));
    assert_eq!(invalid_keys(&default), ["kafka.options.session.timeout.ms"]);
    let fast = MINIMAL.replace(
        "[[tenant]]",
        "[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n[pool]\nstart_timeout = \"10s\"\n[[tenant]]",
    );
    parse(&fast).expect("parses").validate().expect("valid");
}

/// A read-only directory that does not exist is refused: every instance would fail to mount it.
#[test]
fn missing_read_dir_is_refused() {
    let text = format!("{MINIMAL}[tenant.limits]\nread_dirs = [\"/nonexistent/burrow-dir\"]\n");
    assert_eq!(invalid_keys(&text), ["tenant[0].limits.read_dirs[0]"]);
}

/// A config printed with `{:?}` (a panic, a test failure) shows secret option names, not their
/// values.
#[test]
fn debug_output_hides_secret_options() {
    let text = MINIMAL.replace(
        "[[tenant]]",
        "[kafka.options]\n\"sasl.password\" = \"hunter2-secret\"\n\"client.id\" = \"me\"\n[[tenant]]",
    );
    let shown = format!("{:?}", parse(&text).expect("parses"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("sasl.password") && shown.contains("\"me\""),
        "{shown}"
    );
}
