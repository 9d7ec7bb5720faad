//! What a user plugs into the pool: a handler, its error type, and the permanent-failure hook.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::kafka::Message;

/// Any error a handler returns, boxed.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a message failed, and whether trying again can help.
///
/// `?` converts any `std::error::Error` into a *retriable* error; wrap it in [`Permanent`] (or
/// use [`ProcessError::permanent`]) when retrying cannot help, and it fails at once.
pub enum ProcessError {
    /// Worth retrying (up to `max_retries`).
    Retriable {
        /// What went wrong.
        error: BoxError,
        /// The handler's own idea of when to retry; capped by `retry_backoff_max`.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the message fails permanently now.
    Permanent {
        /// What went wrong.
        error: BoxError,
    },
}

impl ProcessError {
    /// A retriable error with the configured backoff.
    pub fn retriable(error: impl Into<BoxError>) -> Self {
        Self::Retriable {
            error: error.into(),
            retry_after: None,
        }
    }

    /// A retriable error the handler wants retried after `delay` (capped).
    pub fn retry_after(error: impl Into<BoxError>, delay: Duration) -> Self {
        Self::Retriable {
            error: error.into(),
            retry_after: Some(delay),
        }
    }

    /// A non-retriable error: the message fails permanently at once.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::Permanent {
            error: error.into(),
        }
    }

    /// Whether this error skips retries.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match self {
            Self::Retriable { error, .. } | Self::Permanent { error } => error.as_ref(),
        }
    }

    fn into_error(self) -> BoxError {
        match self {
            Self::Retriable { error, .. } | Self::Permanent { error } => error,
        }
    }
}

impl fmt::Debug for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_permanent() {
            "Permanent"
        } else {
            "Retriable"
        };
        write!(f, "{kind}({:?})", self.error())
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.error(), f)
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for ProcessError {
    fn from(error: E) -> Self {
        Self::retriable(error)
    }
}

/// Marks an error as non-retriable: `Err(Permanent(e))?` fails the message at once.
#[derive(Debug)]
pub struct Permanent<E>(pub E);

impl<E: Into<BoxError>> From<Permanent<E>> for ProcessError {
    fn from(Permanent(error): Permanent<E>) -> Self {
        Self::permanent(error)
    }
}

/// A message's permanent failure, as given to [`Handler::on_permanent_failure`].
#[derive(Debug)]
pub struct Failure {
    /// The last error.
    pub error: BoxError,
    /// Attempts made (1 for a message that failed permanently on its first try).
    pub attempts: u32,
    /// Whether the error was non-retriable (`false`: retries were exhausted).
    pub non_retriable: bool,
}

/// What the pool does after a permanent failure.
#[derive(Debug)]
pub enum FailureAction {
    /// The failure is handled (skipped, or dead-lettered and acknowledged): mark the message
    /// done so its offset can be committed. Still counts towards `max_consecutive_errors`.
    MarkDone,
    /// The failure is being handled (a dead letter sent, its ack to come): the worker is free
    /// at once, and the message is marked done when `Pending` resolves `Ok`, as with
    /// `MarkDone`. Meanwhile it holds its offset, its lane and its place in the bound, as a
    /// [`Processed::Later`] result does. If it resolves `Err`, the pool halts, as with `Halt`,
    /// with the error as the reason: the message is not marked done. So a stream of bad
    /// records costs each its ack's round trip in flight, not a worker's time.
    MarkDoneWhen(Pending),
    /// Like `MarkDone`, with records (a dead letter) for the pool to produce in the transaction
    /// that commits the message (see [`Pool::with_transactions`](crate::Pool::with_transactions)).
    MarkDoneWith(Vec<crate::kafka::OutRecord>),
    /// Stop the pool: the message is *not* marked done (it is redelivered after a restart), and
    /// `run` returns [`PoolError::Halted`](crate::PoolError::Halted) with this reason.
    Halt(String),
}

/// One message of a batch, with its attempt number (1 on first delivery).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The message.
    pub message: Arc<Message>,
    /// 1 on first delivery, one more per retry.
    pub attempt: u32,
}

/// A message's result that is known only later, typically when the broker has acknowledged the
/// records its handler produced for it. A batch handler returns it at once
/// ([`Processed::Later`]) and its worker takes the next messages meanwhile: a worker never
/// waits on the network. Until it resolves, the message holds its place in the pool's bound,
/// its ordering lane and its offset (nothing above a gap is committed), exactly as if it were
/// still at a worker; a revoke and a shutdown wait for it the same way.
pub struct Pending {
    future: Pin<Box<dyn Future<Output = Result<(), ProcessError>> + Send + 'static>>,
    bytes: usize,
}

impl Pending {
    /// The result `future` will give.
    pub fn new(future: impl Future<Output = Result<(), ProcessError>> + Send + 'static) -> Self {
        Self {
            future: Box::pin(future),
            bytes: 0,
        }
    }

    /// Counts `bytes` against the pool's `max_buffered_bytes` until the result comes: what the
    /// handler keeps in memory meanwhile (the records it produced and the broker has not
    /// acknowledged). A slow downstream then slows the intake of the message's partition
    /// instead of growing memory.
    #[must_use]
    pub fn holding(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// The bytes it holds (see [`Pending::holding`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Future for Pending {
    type Output = Result<(), ProcessError>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// One message's result from [`Handler::process_batch`].
#[derive(Debug)]
pub enum Processed {
    /// Known now, as [`Handler::process`] gives it.
    Now(Result<(), ProcessError>),
    /// Known when the future resolves; the worker is free meanwhile. An error then is retried
    /// or fails the message as if the handler had returned it (the failure hook runs on the
    /// next idle worker).
    Later(Pending),
    /// Done, with records for the pool to produce in the transaction that commits the
    /// message's offset: exactly-once output (see
    /// [`Pool::with_transactions`](crate::Pool::with_transactions)). A pool without
    /// transactions halts rather than drop them.
    Output(Vec<crate::kafka::OutRecord>),
}

impl From<Result<(), ProcessError>> for Processed {
    fn from(result: Result<(), ProcessError>) -> Self {
        Self::Now(result)
    }
}

/// A per-worker message handler. The pool builds one per worker and gives it one message at a
/// time (or one batch, see [`Handler::max_batch`]), so it may keep state (a connection, a WASM
/// instance) without locking.
pub trait Handler: Send + 'static {
    /// Processes one message. `Ok` marks it done; an error is retried or fails it permanently.
    /// `attempt` is 1 on first delivery and grows by one per retry (a plugin may want to know).
    fn process(
        &mut self,
        message: &Message,
        attempt: u32,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// The most messages this handler takes in one [`Handler::process_batch`] call. The default,
    /// 1, never batches. A handler with a fixed cost per call (a hop to another thread, a round
    /// trip) raises it: when more messages are ready than workers are idle, each worker is
    /// given up to this many at once.
    fn max_batch(&self) -> usize {
        1
    }

    /// Processes a batch: one result per message, in order, each as [`Handler::process`] would
    /// give it (each message keeps its own outcome, retries and failure handling) or, as
    /// [`Processed::Later`], a result still to come. In ordered modes a batch never holds two
    /// messages of one lane. The default processes them one by one. A batch that panics, or
    /// returns the wrong number of results, counts as a retriable failure of each message.
    fn process_batch(&mut self, batch: &[Attempt]) -> impl Future<Output = Vec<Processed>> + Send {
        async move {
            let mut results = Vec::with_capacity(batch.len());
            for item in batch {
                results.push(self.process(&item.message, item.attempt).await.into());
            }
            results
        }
    }

    /// Called once a message has failed permanently, before its offset may advance: the place
    /// to dead-letter it (and answer [`FailureAction::MarkDoneWhen`] the broker's ack, so the
    /// worker need not wait for it). The default skips it: [`FailureAction::MarkDone`].
    fn on_permanent_failure(
        &mut self,
        message: &Message,
        failure: &Failure,
    ) -> impl Future<Output = FailureAction> + Send {
        let _ = (message, failure);
        async { FailureAction::MarkDone }
    }
}

/// How one attempt at a job ended, as a worker reports it.
pub(crate) enum Outcome {
    /// Processed successfully.
    Done,
    /// Processed successfully, with records to produce in the transaction that commits it.
    Output(Vec<crate::kafka::OutRecord>),
    /// Retriable failure: retry after the delay hint (or the backoff when `None`).
    Retry(Option<Duration>),
    /// Permanent failure, handled by the failure hook with this action.
    Failed(FailureAction, String),
    /// The result comes later; the worker is free (see [`Pending`]).
    Settling(Pending),
    /// A permanent failure, already counted, whose handling has ended (see
    /// [`FailureAction::MarkDoneWhen`]): done, or the reason to halt.
    Handled(Result<(), String>),
}

/// The pool's view of a handler: the user's [`Handler`] or a closure.
pub(crate) trait Work: Send + 'static {
    fn attempt(
        &mut self,
        message: &Arc<Message>,
        attempt: u32,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;
    /// Most messages per [`Work::attempt_batch`].
    fn max_batch(&self) -> usize {
        1
    }
    /// A batch of attempts, one result per message (see [`Handler::process_batch`]); by
    /// default one by one.
    fn attempt_batch(&mut self, batch: &[Attempt]) -> impl Future<Output = Vec<Processed>> + Send {
        async move {
            let mut results = Vec::with_capacity(batch.len());
            for item in batch {
                results.push(self.attempt(&item.message, item.attempt).await.into());
            }
            results
        }
    }
    fn failed(
        &mut self,
        message: &Arc<Message>,
        failure: &Failure,
    ) -> impl Future<Output = FailureAction> + Send;
}

/// Adapts a [`Handler`].
pub(crate) struct ByHandler<H>(pub H);

impl<H: Handler> Work for ByHandler<H> {
    fn attempt(
        &mut self,
        message: &Arc<Message>,
        attempt: u32,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        self.0.process(message, attempt)
    }
    fn max_batch(&self) -> usize {
        self.0.max_batch().max(1)
    }
    fn attempt_batch(&mut self, batch: &[Attempt]) -> impl Future<Output = Vec<Processed>> + Send {
        self.0.process_batch(batch)
    }
    fn failed(
        &mut self,
        message: &Arc<Message>,
        failure: &Failure,
    ) -> impl Future<Output = FailureAction> + Send {
        self.0.on_permanent_failure(message, failure)
    }
}

/// Adapts a closure `Fn(Arc<Message>) -> impl Future<Output = Result<(), E>>`.
pub(crate) struct ByFn<F>(pub Arc<F>);

impl<F, Fut, E> Work for ByFn<F>
where
    F: Fn(Arc<Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<ProcessError> + 'static,
{
    fn attempt(
        &mut self,
        message: &Arc<Message>,
        _attempt: u32,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let fut = (self.0)(Arc::clone(message));
        async move { fut.await.map_err(Into::into) }
    }
    async fn failed(&mut self, _: &Arc<Message>, _: &Failure) -> FailureAction {
        FailureAction::MarkDone
    }
}

/// Runs one attempt of `message` (its `attempt`-th, from 0) and classifies the result. A panic
/// in the handler counts as a retriable error: the pool never dies for a handler.
pub(crate) async fn run_attempt<W: Work>(
    work: &mut W,
    message: &Arc<Message>,
    attempt: u32,
    max_retries: u32,
) -> Outcome {
    use futures::FutureExt as _;
    let result = std::panic::AssertUnwindSafe(work.attempt(message, attempt + 1))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(ProcessError::retriable("handler panicked")));
    classify(work, message, attempt, max_retries, result).await
}

/// Runs one batch (`batch`, each attempt numbered from 1 as the handler sees it) and classifies
/// each result, in order. A batch that panics or returns the wrong number of results fails each
/// of its messages retriably.
pub(crate) async fn run_batch<W: Work>(
    work: &mut W,
    batch: &[Attempt],
    max_retries: u32,
) -> Vec<Outcome> {
    use futures::FutureExt as _;
    // A handler that never batches gets `process`; one that does gets every call, even of one
    // message, through `process_batch` (its own fast path).
    if let [Attempt { message, attempt }] = batch
        && work.max_batch() == 1
    {
        return vec![run_attempt(work, message, attempt - 1, max_retries).await];
    }
    let results = std::panic::AssertUnwindSafe(work.attempt_batch(batch))
        .catch_unwind()
        .await
        .ok()
        .filter(|results| results.len() == batch.len());
    let mut outcomes = Vec::with_capacity(batch.len());
    match results {
        Some(results) => {
            for (Attempt { message, attempt }, result) in batch.iter().zip(results) {
                let outcome = match result {
                    Processed::Now(result) => {
                        classify(work, message, attempt - 1, max_retries, result).await
                    }
                    // Awaited by the coordinator, which also catches a panic in it.
                    Processed::Later(pending) => Outcome::Settling(pending),
                    Processed::Output(records) => Outcome::Output(records),
                };
                outcomes.push(outcome);
            }
        }
        None => {
            for Attempt { message, attempt } in batch {
                let result = Err(ProcessError::retriable(
                    "the handler's batch panicked or returned the wrong number of results",
                ));
                outcomes.push(classify(work, message, attempt - 1, max_retries, result).await);
            }
        }
    }
    outcomes
}

/// What one result means: done, retry, or a permanent failure handled by the failure hook.
async fn classify<W: Work>(
    work: &mut W,
    message: &Arc<Message>,
    attempt: u32,
    max_retries: u32,
    result: Result<(), ProcessError>,
) -> Outcome {
    match judge(result, attempt, max_retries) {
        Ok(outcome) => outcome,
        Err(failure) => handle_failure(work, message, failure).await,
    }
}

/// What a result means short of the failure hook: done, retry (after `attempt` attempts made
/// before this one), or the permanent failure the hook must see.
pub(crate) fn judge(
    result: Result<(), ProcessError>,
    attempt: u32,
    max_retries: u32,
) -> Result<Outcome, Failure> {
    let error = match result {
        Ok(()) => return Ok(Outcome::Done),
        Err(ProcessError::Retriable { retry_after, .. }) if attempt < max_retries => {
            return Ok(Outcome::Retry(retry_after));
        }
        Err(e) => e,
    };
    Err(Failure {
        non_retriable: error.is_permanent(),
        error: error.into_error(),
        attempts: attempt + 1,
    })
}

/// Gives a permanent failure to the handler's failure hook; a hook that panics halts the pool.
pub(crate) async fn handle_failure<W: Work>(
    work: &mut W,
    message: &Arc<Message>,
    failure: Failure,
) -> Outcome {
    use futures::FutureExt as _;
    let text = failure.error.to_string();
    let action = std::panic::AssertUnwindSafe(work.failed(message, &failure))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| FailureAction::Halt("the failure handler panicked".to_owned()));
    Outcome::Failed(action, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails(Option<ProcessError>);
    impl Handler for Fails {
        async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
            self.0.take().map_or(Ok(()), Err)
        }
    }

    fn msg() -> Arc<Message> {
        Arc::new(Message::new("t", 0, 1))
    }

    /// `?` on an ordinary error gives a retriable error; `Permanent(e)` a permanent one.
    #[test]
    fn errors_are_retriable_unless_marked_permanent() {
        fn io() -> Result<(), ProcessError> {
            Err(std::io::Error::other("disk"))?
        }
        fn perm() -> Result<(), ProcessError> {
            Err(Permanent("bad input"))?
        }
        assert!(!io().expect_err("fails").is_permanent());
        assert!(perm().expect_err("fails").is_permanent());
    }

    /// A retriable error is retried while attempts remain, then becomes a permanent failure.
    #[tokio::test]
    async fn retriable_error_retries_then_fails() {
        let mut w = ByHandler(Fails(Some(ProcessError::retriable("x"))));
        assert!(matches!(
            run_attempt(&mut w, &msg(), 0, 1).await,
            Outcome::Retry(None)
        ));
        let mut w = ByHandler(Fails(Some(ProcessError::retriable("x"))));
        assert!(matches!(
            run_attempt(&mut w, &msg(), 1, 1).await,
            Outcome::Failed(FailureAction::MarkDone, _)
        ));
    }

    /// A non-retriable error skips retries even when attempts remain.
    #[tokio::test]
    async fn permanent_error_skips_retries() {
        let mut w = ByHandler(Fails(Some(ProcessError::permanent("x"))));
        assert!(matches!(
            run_attempt(&mut w, &msg(), 0, 3).await,
            Outcome::Failed(FailureAction::MarkDone, _)
        ));
    }

    /// A panicking handler is a retriable failure, not a crash.
    #[tokio::test]
    async fn handler_panic_is_a_retriable_failure() {
        struct Panics;
        impl Handler for Panics {
            async fn process(&mut self, _: &Message, _: u32) -> Result<(), ProcessError> {
                panic!("boom")
            }
        }
        let mut w = ByHandler(Panics);
        assert!(matches!(
            run_attempt(&mut w, &msg(), 0, 3).await,
            Outcome::Retry(None)
        ));
    }
}
