//! A test plugin: the `burrow-action` header on each message says which fault to inject, so
//! tests can make the host face every outcome, trap and limit on demand.
//!
//! | `burrow-action`          | does                                                          |
//! |--------------------------|---------------------------------------------------------------|
//! | absent, `commit`         | commits                                                       |
//! | `fail`                   | fails: `chaos: asked to fail`                                 |
//! | `retry`                  | retries, no delay hint                                        |
//! | `retry-after:MS`         | retries, hinting MS milliseconds                              |
//! | `retry-then-commit:N`    | retries while `attempt` <= N, then commits                    |
//! | `trap`                   | panics (a trap in the host)                                   |
//! | `loop`                   | never returns (the host's deadline must stop it)              |
//! | `oom`                    | allocates and touches memory until allocation fails, then aborts |
//! | `leak:KIB`               | allocates KIB KiB and keeps it for the instance's life, then commits |
//! | `count`                  | fails, reporting `count N`: the messages this instance has seen, this one included |
//! | `sleep:MS`               | busy-waits MS milliseconds, then commits                      |
//! | `block:MS`               | sleeps MS ms in a host call (WASI clock poll), then commits   |
//! | `emit:TOPIC`             | emits the message value to TOPIC, then commits                |
//! | `emit-copies:N:TOPIC`    | emits the message value to TOPIC N times, then commits        |
//! | `log:LEVEL:TEXT`         | logs TEXT at LEVEL (trace…error), then commits                |
//! | `print:TEXT`             | writes TEXT to stdout and to stderr, then commits             |
//! | `read-file:PATH`         | fails, reporting `read-file PATH: ok, N bytes` or `: error: E` |
//! | `env:NAME`               | fails, reporting `env NAME: unset` or `env NAME: set to V`    |
//! | `config:KEY`             | fails, reporting `config KEY = VALUE` or `config KEY = <none>` |
//!
//! A message without the header does what the tenant's `default-action` setting says
//! (`[tenant.config]`), else commits: `default-action = "fail"` makes every record of a topic
//! fail (`make bench`'s B10).
//!
//! `sleep` and `block` both hold the instance MS milliseconds, differently: `sleep` runs guest
//! code (an epoch check can stop it), `block` is `std::thread::sleep`, one WASI `poll` on a
//! monotonic-clock pollable, so the guest sits inside the host until it returns — the case a
//! deadline must handle without the guest's help.
//!
//! The probes (`read-file`, `env`, `config`) fail on purpose: a `fail` reason is the one string
//! a test can read back from the host, and it must not be mistaken for a commit.
//! A header that is not UTF-8, an unknown action or a malformed argument fails, naming it.
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use burrow_plugin::{Level, Message, Outcome, Record};

/// The header that carries the action.
const ACTION_HEADER: &str = "burrow-action";

thread_local! {
    /// Messages this instance has seen: instance state, gone with the instance.
    static SEEN: Cell<u64> = const { Cell::new(0) };
    /// The `default-action` setting, read once per instance (settings do not change while it
    /// lives).
    static DEFAULT_ACTION: String =
        burrow_plugin::config("default-action").unwrap_or_else(|| "commit".to_owned());
}

fn process(msg: &Message) -> Outcome {
    SEEN.with(|seen| seen.set(seen.get() + 1));
    match msg.header_str(ACTION_HEADER) {
        Ok(Some(text)) => act(text, msg),
        Ok(None) => DEFAULT_ACTION.with(|action| act(action, msg)),
        Err(e) => Outcome::fail(format!("chaos: {ACTION_HEADER} is not UTF-8: {e}")),
    }
}

fn act(action: &str, msg: &Message) -> Outcome {
    match Action::parse(action) {
        Ok(action) => action.run(msg),
        Err(reason) => Outcome::fail(format!("chaos: {reason}")),
    }
}
burrow_plugin::export!(process);

/// One parsed `burrow-action`.
#[derive(Debug, PartialEq, Eq)]
enum Action<'a> {
    Commit,
    Fail,
    Retry,
    RetryAfter(Duration),
    RetryThenCommit(u32),
    Trap,
    Loop,
    Oom,
    Leak(usize),
    Count,
    Sleep(Duration),
    Block(Duration),
    Emit(&'a str),
    EmitCopies(u64, &'a str),
    Log(Level, &'a str),
    Print(&'a str),
    ReadFile(&'a str),
    Env(&'a str),
    Config(&'a str),
}

impl<'a> Action<'a> {
    /// Parses `name` or `name:argument`; the error names what was wrong.
    fn parse(text: &'a str) -> Result<Self, String> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (text, None),
        };
        let action = match (name, arg) {
            ("commit", None) => Action::Commit,
            ("fail", None) => Action::Fail,
            ("retry", None) => Action::Retry,
            ("retry-after", Some(ms)) => Action::RetryAfter(millis(text, ms)?),
            ("retry-then-commit", Some(n)) => Action::RetryThenCommit(number(text, n)?),
            ("trap", None) => Action::Trap,
            ("loop", None) => Action::Loop,
            ("oom", None) => Action::Oom,
            ("leak", Some(kib)) => Action::Leak(number(text, kib)?),
            ("count", None) => Action::Count,
            ("sleep", Some(ms)) => Action::Sleep(millis(text, ms)?),
            ("block", Some(ms)) => Action::Block(millis(text, ms)?),
            ("emit", Some(topic)) => Action::Emit(topic),
            ("emit-copies", Some(rest)) => {
                let (n, topic) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("`{text}`: expected emit-copies:N:TOPIC"))?;
                Action::EmitCopies(number(text, n)?, topic)
            }
            ("log", Some(rest)) => {
                let (level, message) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("`{text}`: expected log:LEVEL:TEXT"))?;
                Action::Log(level_named(text, level)?, message)
            }
            ("print", Some(message)) => Action::Print(message),
            ("read-file", Some(path)) => Action::ReadFile(path),
            ("env", Some(name)) => Action::Env(name),
            ("config", Some(key)) => Action::Config(key),
            _ => return Err(format!("unknown action `{text}`")),
        };
        Ok(action)
    }

    /// Does what the action says. Only `commit`-like actions return `Commit`.
    fn run(self, msg: &Message) -> Outcome {
        match self {
            Action::Commit => Outcome::Commit,
            Action::Fail => Outcome::fail("chaos: asked to fail"),
            Action::Retry => Outcome::retry(),
            Action::RetryAfter(delay) => Outcome::retry_after(delay),
            Action::RetryThenCommit(n) if msg.attempt <= n => Outcome::retry(),
            Action::RetryThenCommit(_) => Outcome::Commit,
            Action::Trap => panic!("chaos: asked to trap"),
            Action::Loop => spin_forever(),
            Action::Oom => exhaust_memory(),
            Action::Leak(kib) => {
                leak(kib);
                Outcome::Commit
            }
            Action::Count => Outcome::fail(format!("count {}", SEEN.with(Cell::get))),
            Action::Sleep(duration) => {
                busy_wait(duration);
                Outcome::Commit
            }
            Action::Block(duration) => {
                // Not a loop: one WASI `poll` on a monotonic-clock pollable, where the guest
                // sits inside the host and no epoch check can reach it.
                std::thread::sleep(duration);
                Outcome::Commit
            }
            Action::Emit(topic) => {
                burrow_plugin::emit(Record::new(topic, msg.value.clone()));
                Outcome::Commit
            }
            Action::EmitCopies(n, topic) => {
                for _ in 0..n {
                    burrow_plugin::emit(Record::new(topic, msg.value.clone()));
                }
                Outcome::Commit
            }
            Action::Log(level, message) => {
                burrow_plugin::log(level, message);
                Outcome::Commit
            }
            Action::Print(text) => {
                println!("{text}");
                eprintln!("{text}");
                Outcome::Commit
            }
            Action::ReadFile(path) => Outcome::fail(read_file(path)),
            Action::Env(name) => Outcome::fail(env(name)),
            Action::Config(key) => Outcome::fail(config(key)),
        }
    }
}

fn millis(action: &str, ms: &str) -> Result<Duration, String> {
    number(action, ms).map(Duration::from_millis)
}

fn number<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    action: &str,
    text: &str,
) -> Result<T, String> {
    text.parse()
        .map_err(|e| format!("`{action}`: bad number `{text}`: {e}"))
}

fn level_named(action: &str, name: &str) -> Result<Level, String> {
    Ok(match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warn,
        "error" => Level::Error,
        _ => return Err(format!("`{action}`: unknown log level `{name}`")),
    })
}

/// Never returns. `black_box` keeps the optimiser from proving the loop has no effect.
fn spin_forever() -> ! {
    let mut spins = 0u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks, writing to every byte so the pages are really used, until an
/// allocation fails; then reports it the way Rust does (an abort, so a trap in the host).
fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(BLOCK).is_err() || hoard.try_reserve(1).is_err() {
            drop(black_box(hoard));
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; BLOCK]>());
        }
        block.resize(BLOCK, 0xa5);
        hoard.push(black_box(block));
    }
}

/// Keeps `kib` KiB of touched memory for as long as the instance lives, as a garbage-collected
/// guest's heap would: linear memory never shrinks.
fn leak(kib: usize) {
    let block = vec![0x5a_u8; kib * 1024];
    std::mem::forget(black_box(block));
}

/// Burns CPU for `duration` (the point is to hold the instance, not to yield).
fn busy_wait(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        black_box(());
    }
}

fn read_file(path: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("read-file {path}: ok, {} bytes", bytes.len()),
        Err(e) => format!("read-file {path}: error: {e}"),
    }
}

fn env(name: &str) -> String {
    match std::env::var_os(name) {
        Some(value) => format!("env {name}: set to {}", value.to_string_lossy()),
        None => format!("env {name}: unset"),
    }
}

fn config(key: &str) -> String {
    match burrow_plugin::config(key) {
        Some(value) => format!("config {key} = {value}"),
        None => format!("config {key} = <none>"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use burrow_plugin::{Level, Message, Outcome, Record, testing};

    use super::{ACTION_HEADER, process};

    fn act(action: &str) -> Outcome {
        process(&Message::new("in", "payload").with_header(ACTION_HEADER, action))
    }

    fn fail_reason(action: &str) -> String {
        match act(action) {
            Outcome::Fail(reason) => reason,
            other => panic!("`{action}`: expected fail, got {other:?}"),
        }
    }

    #[test]
    fn no_header_commits() {
        assert_eq!(process(&Message::new("in", "v")), Outcome::Commit);
    }

    #[test]
    fn commit_commits() {
        assert_eq!(act("commit"), Outcome::Commit);
    }

    #[test]
    fn fail_fails() {
        assert_eq!(act("fail"), Outcome::fail("chaos: asked to fail"));
    }

    #[test]
    fn retry_retries_without_a_hint() {
        assert_eq!(act("retry"), Outcome::retry());
    }

    #[test]
    fn retry_after_hints_its_delay() {
        assert_eq!(
            act("retry-after:250"),
            Outcome::retry_after(Duration::from_millis(250))
        );
    }

    #[test]
    fn retry_then_commit_retries_n_attempts_then_commits() {
        let msg = |attempt| {
            Message::new("in", "v")
                .with_header(ACTION_HEADER, "retry-then-commit:2")
                .with_attempt(attempt)
        };
        assert_eq!(process(&msg(1)), Outcome::retry());
        assert_eq!(process(&msg(2)), Outcome::retry());
        assert_eq!(process(&msg(3)), Outcome::Commit);
    }

    #[test]
    fn sleep_busy_waits_then_commits() {
        let start = Instant::now();
        assert_eq!(act("sleep:20"), Outcome::Commit);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn block_sleeps_then_commits() {
        let start = Instant::now();
        assert_eq!(act("block:20"), Outcome::Commit);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn block_with_a_bad_number_fails_naming_the_action() {
        assert_eq!(
            fail_reason("block:forever"),
            "chaos: `block:forever`: bad number `forever`: invalid digit found in string"
        );
    }

    #[test]
    fn emit_sends_the_value_to_the_topic_and_commits() {
        testing::reset();
        assert_eq!(act("emit:out"), Outcome::Commit);
        assert_eq!(testing::take_emitted(), vec![Record::new("out", "payload")]);
    }

    #[test]
    fn log_logs_at_the_level_and_commits() {
        testing::reset();
        assert_eq!(act("log:warn:careful: colons kept"), Outcome::Commit);
        assert_eq!(
            testing::take_logs(),
            vec![(Level::Warn, "careful: colons kept".to_string())]
        );
    }

    #[test]
    fn log_with_an_unknown_level_fails() {
        assert_eq!(
            fail_reason("log:loud:x"),
            "chaos: `log:loud:x`: unknown log level `loud`"
        );
    }

    #[test]
    fn print_commits() {
        assert_eq!(act("print:hello from chaos"), Outcome::Commit);
    }

    #[test]
    fn read_file_reports_success_with_the_size() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
        assert_eq!(
            fail_reason(&format!("read-file:{path}")),
            format!("read-file {path}: ok, {size} bytes")
        );
    }

    #[test]
    fn read_file_reports_the_io_error() {
        assert_eq!(
            fail_reason("read-file:/no/such/file"),
            "read-file /no/such/file: error: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn env_reports_set_and_unset() {
        assert!(fail_reason("env:PATH").starts_with("env PATH: set to "));
        assert_eq!(
            fail_reason("env:BURROW_CHAOS_NEVER_SET"),
            "env BURROW_CHAOS_NEVER_SET: unset"
        );
    }

    #[test]
    fn config_reports_the_tenant_setting() {
        testing::reset();
        testing::set_config("colour", "blue");
        assert_eq!(fail_reason("config:colour"), "config colour = blue");
        assert_eq!(fail_reason("config:size"), "config size = <none>");
    }

    #[test]
    fn unknown_actions_fail_naming_the_action() {
        assert_eq!(fail_reason("explode"), "chaos: unknown action `explode`");
        assert_eq!(fail_reason("retry:5"), "chaos: unknown action `retry:5`");
    }

    #[test]
    fn malformed_numbers_fail_naming_the_action() {
        assert_eq!(
            fail_reason("retry-after:soon"),
            "chaos: `retry-after:soon`: bad number `soon`: invalid digit found in string"
        );
    }

    #[test]
    fn a_non_utf8_action_fails() {
        let msg = Message::new("in", "v").with_header(ACTION_HEADER, vec![0xff]);
        assert!(
            matches!(process(&msg), Outcome::Fail(r) if r.starts_with("chaos: burrow-action is not UTF-8"))
        );
    }
}
