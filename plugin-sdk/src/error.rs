//! [`Error`] and [`IntoOutcome`]: how a plugin function's return value becomes an [`Outcome`].
//!
//! A plugin may return `Outcome` itself, or `Result<(), E>` / `Result<Outcome, E>` for any `E`
//! that converts into [`Error`] — which every `std::error::Error` does, so `?` works on I/O,
//! UTF-8, serde and any other error. An error fails the message with its display text and its
//! whole source chain, unless it was marked retriable ([`Error::retry`],
//! [`Error::retry_after`], [`ResultExt::retriable`]).

use std::fmt;
use std::time::Duration;

use crate::Outcome;

/// A failure of a plugin function, permanent unless marked retriable.
///
/// Like `anyhow::Error`, this type deliberately does not implement `std::error::Error`: that is
/// what lets it convert from every error that does, so `?` just works.
pub struct Error {
    /// The display text and source chain, joined by `": "`. Kept as text because that is all
    /// that crosses the boundary: the WIT's `fail` carries a string.
    reason: String,
    /// Whether the host should retry, and after what delay.
    retry: Option<Option<Duration>>,
}

impl Error {
    /// A permanent failure with `reason`.
    pub fn fail(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            retry: None,
        }
    }

    /// A transient failure: retry after the host's backoff.
    pub fn retry() -> Self {
        Self {
            reason: String::new(),
            retry: Some(None),
        }
    }

    /// A transient failure: retry after `delay` (capped by the host).
    pub fn retry_after(delay: Duration) -> Self {
        Self {
            reason: String::new(),
            retry: Some(Some(delay)),
        }
    }

    /// Marks this error transient: the message is retried after the host's backoff.
    #[must_use]
    pub fn retriable(mut self) -> Self {
        self.retry = Some(None);
        self
    }

    /// Marks this error transient: the message is retried after `delay`.
    #[must_use]
    pub fn retriable_after(mut self, delay: Duration) -> Self {
        self.retry = Some(Some(delay));
        self
    }

    /// Prefixes the reason with what the plugin was doing, as in `"parsing header x: ..."`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.reason = if self.reason.is_empty() {
            context.to_string()
        } else {
            format!("{context}: {}", self.reason)
        };
        self
    }

    /// The failure's text: the error's display and its source chain.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether the message will be retried rather than failed.
    pub fn is_retriable(&self) -> bool {
        self.retry.is_some()
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        Self::fail(chain(&err))
    }
}

/// `err` and every `source()` below it, joined by `": "` — the whole story in one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors already print their source in their own display; don't repeat it.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.retry, self.reason.is_empty()) {
            (None, _) => f.write_str(&self.reason),
            (Some(_), true) => f.write_str("retriable error"),
            (Some(_), false) => write!(f, "{} (retriable)", self.reason),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("reason", &self.reason)
            .field("retry", &self.retry)
            .finish()
    }
}

impl From<Error> for Outcome {
    /// `fail(reason)`, or `retry` if the error was marked retriable. Pure: it does not log the
    /// reason of a retry (see [`IntoOutcome`], which does).
    fn from(err: Error) -> Self {
        match err.retry {
            Some(delay) => Outcome::Retry(delay),
            None => Outcome::Fail(err.reason),
        }
    }
}

/// `.retriable()` and `.context(..)` on any `Result` whose error converts into [`Error`].
pub trait ResultExt<T> {
    /// On error, retry the message after the host's backoff instead of failing it.
    fn retriable(self) -> Result<T, Error>;
    /// On error, retry the message after `delay` instead of failing it.
    fn retriable_after(self, delay: Duration) -> Result<T, Error>;
    /// On error, prefix its reason with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> ResultExt<T> for Result<T, E> {
    fn retriable(self) -> Result<T, Error> {
        self.map_err(|e| e.into().retriable())
    }

    fn retriable_after(self, delay: Duration) -> Result<T, Error> {
        self.map_err(|e| e.into().retriable_after(delay))
    }

    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| e.into().context(context))
    }
}

/// What a plugin function may return: anything the SDK can turn into an [`Outcome`].
///
/// Implemented for `Outcome`, `Result<(), E>` (`Ok` commits) and `Result<Outcome, E>`, for
/// every `E: Into<Error>`.
#[diagnostic::on_unimplemented(
    message = "a Burrow plugin function cannot return `{Self}`",
    label = "this is not an `Outcome`, `Result<(), Error>` or `Result<Outcome, Error>`",
    note = "return `Outcome`, or a `Result<(), E>` / `Result<Outcome, E>` whose error converts into `burrow_plugin::Error`"
)]
pub trait IntoOutcome {
    /// The outcome to report to the host.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl Error {
    /// The outcome for this error. A retry carries no reason across the boundary, so a
    /// retriable error with a reason is logged at `warn` first: no failure goes unexplained.
    fn into_logged_outcome(self) -> Outcome {
        if self.is_retriable() && !self.reason.is_empty() {
            crate::log(crate::Level::Warn, &format!("retrying: {}", self.reason));
        }
        self.into()
    }
}

impl<E: Into<Error>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Commit,
            Err(err) => err.into().into_logged_outcome(),
        }
    }
}

impl<E: Into<Error>> IntoOutcome for Result<Outcome, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(outcome) => outcome,
            Err(err) => err.into().into_logged_outcome(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading rules")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn io_not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such rule")
    }

    #[test]
    fn question_mark_on_a_std_error_fails_with_its_source_chain() {
        fn run() -> Result<(), Error> {
            Err(Outer(io_not_found()))?;
            Ok(())
        }
        assert_eq!(
            run().into_outcome(),
            Outcome::fail("loading rules: no such rule")
        );
    }

    #[test]
    fn a_std_error_result_can_be_returned_directly() {
        let result: Result<(), std::io::Error> = Err(io_not_found());
        assert_eq!(result.into_outcome(), Outcome::fail("no such rule"));
    }

    #[test]
    fn retriable_errors_become_retry() {
        let plain: Result<(), _> = Err(io_not_found());
        assert_eq!(plain.retriable().into_outcome(), Outcome::retry());
        let hinted: Result<(), _> = Err(io_not_found());
        let delay = Duration::from_millis(50);
        assert_eq!(
            hinted.retriable_after(delay).into_outcome(),
            Outcome::retry_after(delay)
        );
        let explicit: Result<Outcome, Error> = Err(Error::retry_after(delay));
        assert_eq!(explicit.into_outcome(), Outcome::retry_after(delay));
    }

    #[test]
    fn retrying_with_a_reason_logs_it() {
        crate::testing::reset();
        let result: Result<(), _> = Err(io_not_found());
        assert_eq!(result.retriable().into_outcome(), Outcome::retry());
        let logs = crate::testing::take_logs();
        assert_eq!(
            logs,
            vec![(crate::Level::Warn, "retrying: no such rule".to_string())]
        );
    }

    #[test]
    fn ok_results_commit_or_pass_the_outcome_through() {
        assert_eq!(Ok::<(), Error>(()).into_outcome(), Outcome::Commit);
        let delay = Duration::from_secs(1);
        assert_eq!(
            Ok::<_, Error>(Outcome::retry_after(delay)).into_outcome(),
            Outcome::retry_after(delay)
        );
    }

    #[test]
    fn context_prefixes_the_reason() {
        let result: Result<(), _> = Err(io_not_found());
        assert_eq!(
            result.context("rule 7").into_outcome(),
            Outcome::fail("rule 7: no such rule")
        );
    }
}
