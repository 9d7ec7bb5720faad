//! Retry delays: `retry_backoff_base × 2^attempt`, capped, or the handler's own hint, capped.
//!
//! A retry waits on a timer, not in a worker: `schedule` parks the job in a tokio task that
//! hands it back to the pool when its delay is over (or drops it on shutdown), so a waiting retry
//! never holds a worker, and only holds the commits its offset rule forces.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Exponential backoff with a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// No delay is longer than this, hinted or computed.
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry): `base × 2^attempt`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The handler's hint if it gave one, else the computed delay; capped either way.
    pub fn delay_or_hint(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        hint.map_or_else(|| self.delay(attempt), |h| h.min(self.max))
    }
}

/// Hands `item` to `to` after `delay`, unless `cancel` fires first.
pub(crate) fn schedule<T: Send + 'static>(
    item: T,
    delay: Duration,
    to: UnboundedSender<T>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            // A fixed order, so a seeded simulation replays exactly: a cancel first.
            biased;
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {
                // The pool may have stopped meanwhile; then the retry is simply not run.
                let _ = to.send(item);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    /// Delays double from the base and stop at the cap, without overflow at huge attempts.
    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(B.delay(0), Duration::from_millis(100));
        assert_eq!(B.delay(1), Duration::from_millis(200));
        assert_eq!(B.delay(3), Duration::from_millis(800));
        assert_eq!(B.delay(6), Duration::from_secs(5));
        assert_eq!(B.delay(u32::MAX), Duration::from_secs(5));
    }

    /// A handler's delay hint wins over the computed delay but not over the cap.
    #[test]
    fn hint_is_used_but_capped() {
        assert_eq!(
            B.delay_or_hint(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            B.delay_or_hint(0, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(B.delay_or_hint(2, None), Duration::from_millis(400));
    }

    /// A scheduled retry comes back after its delay, not before (paused tokio time).
    #[tokio::test(start_paused = true)]
    async fn scheduled_retry_arrives_after_its_delay() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        schedule(7, Duration::from_secs(2), tx, CancellationToken::new());
        tokio::time::advance(Duration::from_millis(1999)).await;
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(rx.recv().await, Some(7));
    }

    /// A cancelled retry is dropped, not delivered.
    #[tokio::test(start_paused = true)]
    async fn cancelled_retry_is_dropped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
        let cancel = CancellationToken::new();
        schedule(7, Duration::from_secs(2), tx, cancel.clone());
        cancel.cancel();
        assert_eq!(rx.recv().await, None);
    }
}
