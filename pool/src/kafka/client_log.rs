//! librdkafka's log lines and global errors, rate-limited.
//!
//! librdkafka retries an unreachable broker every second or so and reports every attempt, by
//! log line and by error callback, from every client: an unreachable broker used to print
//! ~46 lines a second per tenant. Both callbacks of every Burrow client (the pool's consumer
//! context and the producer's) go through one [`LogLimiter`] per client: the first occurrence of
//! a line is logged as is, its repeats are counted, and a summary ("... repeated N times in the
//! last 30s") is logged at most once per [`SUMMARY_EVERY`] while they go on.
//!
//! An unreachable broker is one clear WARN line per client ("broker unreachable:
//! 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (...);
//! retrying"): librdkafka logs each such failure (facility `FAIL`, level error) *and* raises
//! it as an error (`BrokerTransportFailure`, then `AllBrokersDown`, through the error callback
//! or as a consumer poll error); the log line names the broker and the cause, so it is the one
//! said, and the error copies go to DEBUG.
//!
//! Two lines are "the same" when they differ only in digits and parenthesised remarks
//! (librdkafka's lines carry timings and counters: "(after 0ms in state CONNECT, 2 identical
//! error(s) suppressed)").

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How often, at most, the repeats of one line are summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// What to do with one occurrence of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first occurrence (or the first after a quiet window): log it.
    Log,
    /// A repeat due for its summary: log that it repeated `repeats` times since `since`.
    Summary {
        /// How many occurrences were held back, this one included.
        repeats: u64,
        /// How long ago the line was last logged or summarised.
        since: Duration,
    },
    /// A repeat within the window: count it, say nothing.
    Suppress,
}

/// One line's history.
struct Seen {
    /// When it was last logged or summarised.
    last_said: Instant,
    /// Occurrences since then.
    held: u64,
}

/// Counts repeats of each line and says which occurrences to log. Time is passed in, so the
/// policy tests without a clock.
#[derive(Default)]
pub struct LogLimiter {
    lines: Mutex<HashMap<String, Seen>>,
    /// Which client's lines these are (`consumer`, `producer`), logged with each line.
    client: &'static str,
}

/// How many distinct lines are remembered: a bound, so hostile variety cannot grow the map
/// without end (forgetting only costs one more line logged).
const MAX_LINES: usize = 1024;

impl LogLimiter {
    /// A limiter for the lines of one `client` (`consumer`, `producer`).
    pub fn new(client: &'static str) -> Self {
        Self {
            lines: Mutex::default(),
            client,
        }
    }

    /// Records one occurrence of `line` at `now` and says what to do with it.
    pub fn check(&self, line: &str, now: Instant) -> Verdict {
        let key = same_line_key(line);
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() >= MAX_LINES && !lines.contains_key(&key) {
            lines.retain(|_, seen| now.duration_since(seen.last_said) < SUMMARY_EVERY);
            if lines.len() >= MAX_LINES {
                lines.clear();
            }
        }
        let Some(seen) = lines.get_mut(&key) else {
            lines.insert(
                key,
                Seen {
                    last_said: now,
                    held: 0,
                },
            );
            return Verdict::Log;
        };
        let since = now.duration_since(seen.last_said);
        if since < SUMMARY_EVERY {
            seen.held += 1;
            return Verdict::Suppress;
        }
        let held = std::mem::take(&mut seen.held);
        seen.last_said = now;
        if held == 0 {
            // Quiet for a whole window: this is news again.
            Verdict::Log
        } else {
            Verdict::Summary {
                repeats: held + 1,
                since,
            }
        }
    }

    /// Routes one librdkafka log line (see [`route`]), rate-limited.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let (level, line) = route(level, facility, message);
        let Some(text) = self.text(&line) else { return };
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "librdkafka", client = self.client, "{text}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "librdkafka", client = self.client, "{text}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "librdkafka", client = self.client, "{text}")
            }
            _ => tracing::debug!(target: "librdkafka", client = self.client, "{text}"),
        }
    }

    /// Routes one librdkafka global error, rate-limited. An unreachable broker was said by its
    /// `FAIL` log line already (see the module docs): its error copies go to DEBUG.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        if unreachable(error) {
            tracing::debug!(target: "librdkafka", client = self.client, %error, reason, "broker unreachable");
        } else if let Some(text) = self.text(&format!("{error}: {reason}")) {
            tracing::error!(target: "librdkafka", client = self.client, "{text}");
        }
    }

    /// Routes an error the consumer's poll returned (librdkafka's errors reach a consumer that
    /// way), rate-limited; an unreachable broker goes to DEBUG, as in [`LogLimiter::error`].
    pub fn consumer_error(&self, error: &KafkaError) {
        if unreachable(error) {
            tracing::debug!(%error, "consumer error: broker unreachable");
        } else if let Some(text) = self.text(&format!("consumer error: {error}")) {
            tracing::warn!(client = self.client, "{text}");
        }
    }

    /// The text to log for `line` now, if any.
    fn text(&self, line: &str) -> Option<String> {
        match self.check(line, Instant::now()) {
            Verdict::Log => Some(line.to_owned()),
            Verdict::Summary { repeats, since } => Some(format!(
                "{line} (repeated {repeats} times in the last {}s)",
                since.as_secs()
            )),
            Verdict::Suppress => None,
        }
    }
}

/// The level and text a librdkafka log line is logged with: rdkafka's level mapping, but
///
/// - a failed broker connection (facility `FAIL`) is one WARN naming the broker and the cause:
///   librdkafka retries it (see the module docs);
/// - a property ignored because it belongs to the other kind of client (`CONFWARN ... is a
///   consumer property and will be ignored by this producer instance`) is DEBUG: the host
///   builds its consumers and its producer from one `[kafka.options]` table on purpose, so the
///   warning says nothing an operator can act on. A property no client knows is still an error
///   (the config check refuses it).
pub fn route(level: RDKafkaLogLevel, facility: &str, message: &str) -> (tracing::Level, String) {
    let failed = matches!(
        level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
    );
    if facility == "FAIL" && failed {
        return (
            tracing::Level::WARN,
            format!("broker unreachable: {message}; retrying"),
        );
    }
    let line = format!("{facility} {message}");
    let other_clients = facility == "CONFWARN"
        && (message.contains("is a consumer property and will be ignored by this producer")
            || message.contains("is a producer property and will be ignored by this consumer"));
    let level = match level {
        _ if other_clients => tracing::Level::DEBUG,
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::Level::ERROR,
        RDKafkaLogLevel::Warning => tracing::Level::WARN,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::Level::INFO,
        RDKafkaLogLevel::Debug => tracing::Level::DEBUG,
    };
    (level, line)
}

/// Whether `error` says a broker cannot be reached (librdkafka retries by itself).
fn unreachable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}

/// What makes two lines the same: the text without digits and parenthesised remarks.
fn same_line_key(line: &str) -> String {
    let mut depth = 0u32;
    line.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0 && !c.is_ascii_digit(),
            }
            false
        })
        .collect()
}

/// The context of the host's producer: librdkafka's log and errors, rate-limited.
pub struct LogContext {
    limiter: LogLimiter,
}

impl Default for LogContext {
    fn default() -> Self {
        Self {
            limiter: LogLimiter::new("producer"),
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.limiter.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.limiter.error(&error, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: \
                           Connection refused (after 0ms in state CONNECT)";

    /// A consumer property in the shared options table does not make the producer warn (nor the
    /// reverse); other configuration warnings still do, and a failed connection is one WARN.
    #[test]
    fn properties_of_the_other_client_are_not_warnings() {
        let ignored = "Configuration property session.timeout.ms is a consumer property and \
                       will be ignored by this producer instance";
        assert_eq!(
            route(RDKafkaLogLevel::Warning, "CONFWARN", ignored).0,
            tracing::Level::DEBUG
        );
        let ignored = "Configuration property linger.ms is a producer property and will be \
                       ignored by this consumer instance";
        assert_eq!(
            route(RDKafkaLogLevel::Warning, "CONFWARN", ignored).0,
            tracing::Level::DEBUG
        );
        let other = "Configuration property ssl.ca.location is ignored because \
                     security.protocol is not ssl";
        assert_eq!(
            route(RDKafkaLogLevel::Warning, "CONFWARN", other).0,
            tracing::Level::WARN
        );
        let (level, line) = route(RDKafkaLogLevel::Error, "FAIL", REFUSED);
        assert_eq!(level, tracing::Level::WARN);
        assert!(line.starts_with("broker unreachable: 127.0.0.1:1/bootstrap"));
    }

    /// A line repeated many times a second is logged once, then summarised at most once per
    /// window with the exact count held back; lines differing only in digits count as one.
    #[test]
    fn a_flood_is_one_line_then_one_summary_per_window() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.check(REFUSED, start), Verdict::Log);
        // 46 lines a second for 30 s, the timings in them changing.
        let mut said = 0;
        for i in 1..(46 * 30) {
            let at = start + Duration::from_millis(i * 1000 / 46);
            let line = REFUSED.replace(
                "after 0ms in state CONNECT",
                &format!(
                    "after {}ms in state CONNECT, {i} identical error(s) suppressed",
                    i % 7
                ),
            );
            if limiter.check(&line, at) != Verdict::Suppress {
                said += 1;
            }
        }
        assert_eq!(said, 0, "nothing more within the first window");
        let due = start + SUMMARY_EVERY;
        assert_eq!(
            limiter.check(REFUSED, due),
            Verdict::Summary {
                repeats: 46 * 30,
                since: SUMMARY_EVERY
            },
            "every occurrence since the first, this one included"
        );
        assert_eq!(
            limiter.check(REFUSED, due + Duration::from_secs(1)),
            Verdict::Suppress,
            "the next window starts at the summary"
        );
    }

    /// Different lines are limited apart: one flooding line does not silence another.
    #[test]
    fn different_lines_are_limited_apart() {
        let limiter = LogLimiter::default();
        let now = Instant::now();
        assert_eq!(limiter.check(REFUSED, now), Verdict::Log);
        assert_eq!(limiter.check(REFUSED, now), Verdict::Suppress);
        assert_eq!(
            limiter.check("GroupCoordinator: timed out", now),
            Verdict::Log
        );
    }

    /// A line that comes back after a quiet window is logged as news, not as a summary of zero.
    #[test]
    fn a_line_back_after_a_quiet_window_is_logged_again() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.check(REFUSED, start), Verdict::Log);
        assert_eq!(
            limiter.check(REFUSED, start + SUMMARY_EVERY * 3),
            Verdict::Log
        );
    }

    /// The limiter remembers a bounded number of distinct lines, whatever comes.
    #[test]
    fn distinct_lines_are_bounded() {
        let limiter = LogLimiter::default();
        let now = Instant::now();
        for i in 0..(MAX_LINES * 3) {
            // Distinct without digits (digits are ignored): the number spelt in letters.
            let line: String = format!("line {i}")
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from(b'a' + d as u8),
                    None => c,
                })
                .collect();
            limiter.check(&line, now);
        }
        let held = limiter
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(held <= MAX_LINES, "{held} lines remembered");
    }
}
