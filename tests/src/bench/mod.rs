//! `make bench`: the benchmark program of issue 8. One table of medians, each figure against a
//! baseline measured in the same run, plus the machine; written to `bench/results/` as markdown
//! and as an SVG chart of the ratios against their goals.
//!
//! # Layout
//!
//! - [`data`]: the records every case reads, produced once per broker.
//! - [`host`]: the real `burrow` binary as a child, its config (defaults only), and sampling of
//!   its `/stats` and its memory.
//! - [`cpu`]: where the host's CPU goes over a measured run, per stage, from its threads.
//! - [`cases`]: one function per case, B1 to B10.
//! - [`peer`]: B14's peer, the same job in Quix Streams.
//! - [`tenants`]: many tenants in one host, B11 and B12.
//! - [`report`]: the table (text and markdown), the chart, the machine.

pub mod cases;
pub mod cpu;
pub mod data;
pub mod host;
pub mod peer;
pub mod report;
pub mod tenants;

use std::fmt;
use std::time::Duration;

/// What a run measures and how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Messages per throughput case.
    pub messages: u64,
    /// Messages of the long run of B7.
    pub long_messages: u64,
    /// Runs per case; the table shows their median.
    pub runs: usize,
    /// A throughput run stops after this long past its first message even if it has not seen
    /// every message (a slow case still finishes); the table then says how many it measured.
    pub cap: Duration,
    /// Cases to run (`B3`, ...); empty for all.
    pub only: Vec<String>,
    /// Brokers to run on.
    pub brokers: Vec<BrokerKind>,
}

impl Options {
    /// Whether case `id` is to run.
    pub fn runs_case(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(id))
    }
}

/// Which broker a row ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// librdkafka's in-process mock cluster (reached over TCP by the binary too).
    Mock,
    /// Tansu, a real Kafka-protocol broker, in memory.
    Tansu,
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerKind::Mock => "mock",
            BrokerKind::Tansu => "tansu",
        })
    }
}

/// A measured figure, with its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    /// Messages per second.
    Rate(f64),
    /// Milliseconds.
    Millis(f64),
    /// Mebibytes.
    MiB(f64),
    /// Percent (of one core, of a total: the row says).
    Percent(f64),
    /// A count (threads).
    Count(f64),
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Figure::Rate(r) => write!(f, "{} msg/s", thousands(*r)),
            Figure::Millis(ms) => write!(f, "{ms:.0} ms"),
            Figure::MiB(m) if m.abs() < 10.0 => write!(f, "{m:.1} MiB"),
            Figure::MiB(m) => write!(f, "{m:.0} MiB"),
            Figure::Percent(p) => write!(f, "{p:.1}%"),
            Figure::Count(n) => write!(f, "{n:.1}"),
        }
    }
}

/// What a row must reach.
#[derive(Debug, Clone, PartialEq)]
pub enum Goal {
    /// A baseline itself, or a figure reported for information.
    None,
    /// The ratio to the baseline must be at least this.
    RatioAtLeast(f64),
    /// Memory flat over the run (and within the configured bound): `met` says.
    Flat,
    /// The figure must be at most this.
    AtMost(Figure),
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::None => f.write_str("-"),
            Goal::RatioAtLeast(r) => write!(f, "≥ {r:.2}"),
            Goal::Flat => f.write_str("flat"),
            Goal::AtMost(figure) => write!(f, "≤ {figure}"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// `B1`..`B10`.
    pub case: &'static str,
    /// What ran.
    pub what: String,
    pub broker: BrokerKind,
    /// Messages measured (the median run's).
    pub messages: u64,
    /// The median figure.
    pub figure: Figure,
    /// The same-run baseline it is compared with, and what that baseline is.
    pub baseline: Option<(Figure, String)>,
    /// `figure ÷ baseline` where that is what the goal is about.
    pub ratio: Option<f64>,
    pub goal: Goal,
    /// Whether the goal is met; `None` for a row without a goal.
    pub met: Option<bool>,
    /// Anything the figure needs to be read right (swaps done, the peak's spread, ...).
    pub note: String,
    /// Where the host's CPU went in the measured run (the median one), per message.
    pub cpu: Option<cpu::Cpu>,
}

impl Row {
    /// A row whose goal is a ratio to `baseline`: the ratio and `met` follow.
    pub fn against(
        case: &'static str,
        what: impl Into<String>,
        broker: BrokerKind,
        measured: Rate,
        baseline: (Rate, &str),
        goal: f64,
    ) -> Self {
        let ratio = measured.per_sec() / baseline.0.per_sec();
        Self {
            case,
            what: what.into(),
            broker,
            messages: measured.messages,
            figure: Figure::Rate(measured.per_sec()),
            baseline: Some((Figure::Rate(baseline.0.per_sec()), baseline.1.to_owned())),
            ratio: Some(ratio),
            goal: Goal::RatioAtLeast(goal),
            met: Some(ratio >= goal),
            note: String::new(),
            cpu: measured.cpu,
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Messages counted over a time: one throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub messages: u64,
    pub secs: f64,
    /// Where a host's CPU went over the same window, when it was read (`burrow run` cases).
    pub cpu: Option<cpu::Cpu>,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.messages as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// The run of median rate among `runs` (the lower middle one for an even count).
pub fn median_rate(mut runs: Vec<Rate>) -> Option<Rate> {
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let mid = runs.len().checked_sub(1)? / 2;
    runs.get(mid).copied()
}

/// The median of `values` (the lower middle one for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len().checked_sub(1)? / 2;
    values.get(mid).copied()
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rates print with thousands separators.
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    /// The table shows the middle run, not the best.
    #[test]
    fn median_of_three_is_the_middle() {
        let rate = |m| Rate {
            messages: m,
            secs: 1.0,
            cpu: None,
        };
        assert_eq!(
            median_rate(vec![rate(3), rate(1), rate(2)]).map(|r| r.messages),
            Some(2)
        );
        assert_eq!(median(vec![5.0, 1.0]), Some(1.0));
        assert_eq!(median(Vec::new()), None);
    }
}
