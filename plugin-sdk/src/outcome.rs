//! [`Outcome`]: what the host does with a message once the plugin returns.

use std::time::Duration;

/// What the host should do with the message a plugin just processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the host produces what was emitted, then marks the offset done.
    Commit,
    /// Try again later: after the host's own backoff (`None`), or after this delay, which the
    /// host caps. Emitted records are discarded.
    Retry(Option<Duration>),
    /// Permanent failure with a reason; the tenant's failure policy (dead-letter, skip, halt)
    /// takes over. Emitted records are discarded.
    Fail(String),
}

impl Outcome {
    /// Retry after the host's backoff.
    pub fn retry() -> Self {
        Self::Retry(None)
    }

    /// Retry after `delay` (capped by the host).
    pub fn retry_after(delay: Duration) -> Self {
        Self::Retry(Some(delay))
    }

    /// Fail permanently with `reason`.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self::Fail(reason.into())
    }
}

/// Milliseconds for the WIT's `retry(option<u64>)`, rounded up so that a short non-zero hint
/// never becomes "retry at once", and saturated rather than wrapped for absurd delays.
pub(crate) fn delay_millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_millis_rounds_up_and_saturates() {
        assert_eq!(delay_millis(Duration::ZERO), 0);
        assert_eq!(delay_millis(Duration::from_micros(1)), 1);
        assert_eq!(delay_millis(Duration::from_millis(250)), 250);
        assert_eq!(delay_millis(Duration::MAX), u64::MAX);
    }
}
