//! The committer: one named OS thread that sends every commit of a pool to the broker, one at a
//! time, in the order they were asked for.
//!
//! Why a thread of its own: a synchronous commit blocks for a broker round trip. On tokio's
//! shared blocking pool it would wait behind whatever else uses that pool (a slow handler's
//! `spawn_blocking` calls can take every thread), and a revoke's final commit with it. And why
//! one: two commits in flight at once may land in either order, so an older offset could
//! overwrite a newer one; and a commit that outlived its wait used to be mistaken for the next
//! one. In one queue, a commit the coordinator waits for (revoke, shutdown) simply lands after
//! the background commits asked for before it.
//!
//! In a pool with transactions (see `crate::transaction`) each commit is a transaction instead,
//! carrying the records of the messages it commits.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use crate::kafka::{OutRecord, PoolContext, Tp};
use crate::transaction::{IN_DOUBT, TransactionError, Transactions};

/// The broker's answer to a commit.
pub(crate) struct Committed {
    pub(crate) offsets: Vec<(Tp, i64)>,
    /// The epoch of each partition's offset when it was sent (see [`Request::epochs`]).
    pub(crate) epochs: Vec<u64>,
    pub(crate) answer: Answer,
}

/// How one commit (or transaction) went.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) result: Result<(), CommitError>,
    /// Records it carried (a transaction's).
    pub(crate) records: usize,
    /// Its time on the committer thread.
    pub(crate) took: Duration,
}

/// Why a commit did not land.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// An offset commit the broker refused; a later commit sends the offsets again.
    #[error("{0}")]
    Refused(KafkaError),
    /// A transaction was aborted: its records and offsets are gone.
    #[error("{0}")]
    Aborted(KafkaError),
    /// The transactional producer cannot go on.
    #[error("{0}")]
    Fatal(KafkaError),
    /// A transaction's commit did not finish: whether it committed is unknown, and the
    /// producer can take no other transaction. It ends the pool as a fatal error does.
    #[error("{IN_DOUBT}: {0}")]
    InDoubt(KafkaError),
}

impl CommitError {
    pub(crate) fn kafka(&self) -> &KafkaError {
        match self {
            Self::Refused(e) | Self::Aborted(e) | Self::Fatal(e) | Self::InDoubt(e) => e,
        }
    }

    /// Whether the transactional producer cannot go on.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_) | Self::InDoubt(_))
    }
}

impl From<TransactionError> for CommitError {
    fn from(e: TransactionError) -> Self {
        match e {
            TransactionError::Aborted(e) => Self::Aborted(e),
            TransactionError::Fatal(e) => Self::Fatal(e),
            TransactionError::InDoubt(e) => Self::InDoubt(e),
            TransactionError::NoTransactionalId => Self::Fatal(KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::InvalidArgument,
            )),
        }
    }
}

/// Where a commit's answer goes.
enum Reply {
    /// To the coordinator's queue of background results.
    Background(mpsc::UnboundedSender<Committed>),
    /// To a coordinator waiting for this very commit.
    Waiting(oneshot::Sender<Answer>),
}

/// One commit asked of the committer, answered in the order asked.
pub(crate) struct Request {
    pub(crate) offsets: Vec<(Tp, i64)>,
    /// Each partition's epoch when its offset was sent, one per offset: an answer from before
    /// a rewind says nothing of the epoch after it.
    pub(crate) epochs: Vec<u64>,
    /// With transactions: the records of the messages these offsets commit.
    pub(crate) records: Vec<OutRecord>,
    /// The group's metadata when the commit was asked for, before any rebalance that follows:
    /// a transaction the committer runs after this member lost its partitions carries the old
    /// generation, and the broker fences it (KIP-447) instead of committing it beside the new
    /// owner's.
    group: Option<ConsumerGroupMetadata>,
    reply: Reply,
}

impl Request {
    /// Whether nobody waits for it any more: a synchronous commit whose wait timed out. It is
    /// withdrawn unsent, so it cannot land after the revoke (or shutdown) that gave up on it.
    pub(crate) fn abandoned(&self) -> bool {
        matches!(&self.reply, Reply::Waiting(reply) if reply.is_closed())
    }

    /// Sends `result` where the coordinator waits for it.
    pub(crate) fn answer(self, result: Result<(), CommitError>, took: Duration) {
        let answer = Answer {
            result,
            records: self.records.len(),
            took,
        };
        match self.reply {
            Reply::Background(results) => {
                let _ = results.send(Committed {
                    offsets: self.offsets,
                    epochs: self.epochs,
                    answer,
                });
            }
            Reply::Waiting(reply) => {
                let _ = reply.send(answer);
            }
        }
    }
}

/// The coordinator's handle on the committer thread; the thread ends when it is dropped.
pub(crate) struct Committer {
    requests: Sender<Request>,
    /// With transactions, the consumer whose group metadata each commit takes when it is asked
    /// for; `None` for offset commits, and for a committer served by the simulation.
    consumer: Option<Arc<BaseConsumer<PoolContext>>>,
    /// Where background results go.
    results: mpsc::UnboundedSender<Committed>,
}

/// Why a commit the coordinator waited for did not succeed.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// The broker refused it, or its transaction was aborted.
    Kafka(Answer),
    /// No answer within the time given (it may still land later, in order).
    TimedOut,
}

impl Committer {
    /// Starts the thread; background results arrive on `results`. With `transactions`, every
    /// commit is a transaction.
    pub(crate) fn spawn(
        consumer: Arc<BaseConsumer<PoolContext>>,
        results: mpsc::UnboundedSender<Committed>,
        transactions: Option<Arc<Transactions>>,
    ) -> std::io::Result<Self> {
        let (mut committer, queue) = Self::queue(results);
        // Only a transaction carries the group's metadata.
        committer.consumer = transactions.is_some().then(|| Arc::clone(&consumer));
        std::thread::Builder::new()
            .name("burrow-commit".into())
            .spawn(move || serve(&consumer, transactions.as_deref(), &queue))?;
        Ok(committer)
    }

    /// The group's metadata now.
    fn group(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.as_ref().and_then(|c| c.group_metadata())
    }

    /// A committer whose requests someone else serves, in order, from the returned queue: the
    /// thread [`Committer::spawn`] starts, or the simulation's broker.
    pub(crate) fn queue(results: mpsc::UnboundedSender<Committed>) -> (Self, Receiver<Request>) {
        let (requests, queue) = channel();
        let committer = Self {
            requests,
            consumer: None,
            results,
        };
        (committer, queue)
    }

    /// Commits in the background: the result comes back on the results channel.
    pub(crate) fn commit(
        &self,
        offsets: Vec<(Tp, i64)>,
        epochs: Vec<u64>,
        records: Vec<OutRecord>,
    ) {
        let reply = Reply::Background(self.results.clone());
        // A send fails only if the thread died, which `serve` cannot do but by a panic in
        // librdkafka's binding: the offsets are then committed by a later commit or redelivered.
        let _ = self.requests.send(Request {
            offsets,
            epochs,
            records,
            group: self.group(),
            reply,
        });
    }

    /// Commits after every commit asked for before, and waits up to `timeout` for the answer.
    pub(crate) async fn commit_and_wait(
        &self,
        offsets: Vec<(Tp, i64)>,
        epochs: Vec<u64>,
        records: Vec<OutRecord>,
        timeout: Duration,
    ) -> Result<Answer, WaitError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            offsets,
            epochs,
            records,
            group: self.group(),
            reply: Reply::Waiting(reply),
        };
        if self.requests.send(request).is_err() {
            return Err(WaitError::TimedOut);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) if answer.result.is_ok() => Ok(answer),
            Ok(Ok(answer)) => Err(WaitError::Kafka(answer)),
            Ok(Err(_)) | Err(_) => Err(WaitError::TimedOut),
        }
    }
}

/// Sends each request's commit (or transaction), synchronously, in order, until the handle is
/// dropped.
fn serve(
    consumer: &BaseConsumer<PoolContext>,
    transactions: Option<&Transactions>,
    queue: &Receiver<Request>,
) {
    while let Ok(request) = queue.recv() {
        if request.abandoned() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = match transactions {
            Some(t) => t
                .transact(request.group.as_ref(), &request.offsets, &request.records)
                .map_err(CommitError::from)
                .inspect(|()| reinforce(consumer, &request.offsets)),
            None => tpl_of(&request.offsets)
                .and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync))
                .map_err(CommitError::Refused),
        };
        request.answer(result, started.elapsed());
    }
}

/// Commits a committed transaction's offsets again, plainly. A broker may lose the offsets a
/// transaction carried though the transaction committed: Tansu 0.6.0 drops them when another
/// producer's transaction is open on the same output and this producer begins its next one
/// (measured by the test kit's `keeps_transaction_offsets`). A member that restarts there
/// would start below work whose outputs are committed, and write them again. This commit keeps
/// them; on Kafka it rewrites what is there. It goes out before the next transaction begins,
/// and a failure changes nothing: the transaction's own offsets stand where the broker keeps
/// them.
fn reinforce(consumer: &BaseConsumer<PoolContext>, offsets: &[(Tp, i64)]) {
    let committed = tpl_of(offsets).and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync));
    if let Err(e) = committed {
        tracing::debug!(error = %e, "a committed transaction's offsets were not committed again");
    }
}

fn tpl_of(offsets: &[(Tp, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(tpl)
}
