//! [`Pace`]: how many messages go into one call of a plugin.
//!
//! A call's deadline is one message's (`limits.timeout`): the guest no longer tells the host
//! when it moves on to the next message of a batch (that was a host call per message), so a
//! batch must end well within that deadline on its own. The pace sizes calls from what the
//! plugin has measured per message, and starts small, as TCP does: a fresh worker's calls hold
//! 1, 2, 4, … messages, up to what a quarter of the deadline allows. A call that overruns
//! anyway halves the size, and its messages run again one by one, each under its full
//! deadline: a slow message costs time, never its neighbours' results.

use std::time::Duration;

/// The most messages one call holds, whatever the plugin's speed.
const MOST: usize = 1024;

/// A worker's pace for its plugin: the size of its next call.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    limit: usize,
    /// Smoothed wall time per message of the calls that returned.
    per_message: Option<Duration>,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            limit: 1,
            per_message: None,
        }
    }
}

impl Pace {
    /// How many of `waiting` messages the next call takes (at least one).
    pub(crate) fn next(&self, waiting: usize) -> usize {
        waiting.min(self.limit).max(1)
    }

    /// A call of `messages` returned after `elapsed`, under a deadline of `timeout`.
    pub(crate) fn returned(&mut self, messages: usize, elapsed: Duration, timeout: Duration) {
        let n = u32::try_from(messages.max(1)).unwrap_or(u32::MAX);
        let sample = elapsed / n;
        let per_message = match self.per_message {
            // A quarter of each new sample: steady against one odd call, quick to follow a
            // plugin that slows down.
            Some(old) => (old * 3 + sample) / 4,
            None => sample,
        };
        self.per_message = Some(per_message);
        let allowed = match per_message.as_nanos() {
            0 => MOST,
            nanos => usize::try_from(timeout.as_nanos() / 4 / nanos).unwrap_or(MOST),
        };
        self.limit = self.limit.saturating_mul(2).min(allowed).clamp(1, MOST);
    }

    /// A call of `messages` did not return (a trap, the deadline, the memory cap): the next
    /// ones hold half as many.
    pub(crate) fn failed(&mut self, messages: usize) {
        self.limit = (messages / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_fresh_pace_starts_with_one_and_doubles() {
        let mut pace = Pace::default();
        let mut sizes = Vec::new();
        for _ in 0..8 {
            let n = pace.next(100);
            sizes.push(n);
            pace.returned(n, Duration::from_micros(n as u64), SECOND);
        }
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64, 100]);
        assert_eq!(pace.next(3), 3, "never more than is waiting");
    }

    #[test]
    fn calls_stay_within_a_quarter_of_the_deadline() {
        let mut pace = Pace::default();
        for _ in 0..20 {
            let n = pace.next(64);
            pace.returned(n, Duration::from_millis(20) * n as u32, SECOND);
        }
        assert_eq!(pace.next(64), 12, "12 × 20 ms ≤ 250 ms");
        for _ in 0..20 {
            let n = pace.next(64);
            pace.returned(n, Duration::from_millis(400) * n as u32, SECOND);
        }
        assert_eq!(pace.next(64), 1, "slower than a quarter: one at a time");
    }

    #[test]
    fn a_failed_call_halves_the_size() {
        let mut pace = Pace::default();
        for _ in 0..10 {
            let n = pace.next(64);
            pace.returned(n, Duration::from_micros(1), SECOND);
        }
        assert_eq!(pace.next(64), 64);
        pace.failed(64);
        assert_eq!(pace.next(64), 32);
        pace.failed(1);
        assert_eq!(pace.next(64), 1);
    }
}
