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

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use crate::kafka::{PoolContext, Tp};

/// The broker's answer to a commit.
pub(crate) struct Committed {
    pub(crate) offsets: Vec<(Tp, i64)>,
    pub(crate) result: KafkaResult<()>,
}

/// Where a commit's answer goes.
enum Reply {
    /// To the coordinator's queue of background results.
    Background(mpsc::UnboundedSender<Committed>),
    /// To a coordinator waiting for this very commit.
    Waiting(oneshot::Sender<KafkaResult<()>>),
}

struct Request {
    offsets: Vec<(Tp, i64)>,
    reply: Reply,
}

/// The coordinator's handle on the committer thread; the thread ends when it is dropped.
pub(crate) struct Committer {
    requests: Sender<Request>,
    /// Where background results go.
    results: mpsc::UnboundedSender<Committed>,
}

/// Why a commit the coordinator waited for did not succeed.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// The broker refused it.
    Kafka(KafkaError),
    /// No answer within the time given (it may still land later, in order).
    TimedOut,
}

impl Committer {
    /// Starts the thread; background results arrive on `results`.
    pub(crate) fn spawn(
        consumer: Arc<BaseConsumer<PoolContext>>,
        results: mpsc::UnboundedSender<Committed>,
    ) -> std::io::Result<Self> {
        let (requests, queue) = channel();
        std::thread::Builder::new()
            .name("burrow-commit".into())
            .spawn(move || serve(&consumer, &queue))?;
        Ok(Self { requests, results })
    }

    /// Commits in the background: the result comes back on the results channel.
    pub(crate) fn commit(&self, offsets: Vec<(Tp, i64)>) {
        let reply = Reply::Background(self.results.clone());
        // A send fails only if the thread died, which `serve` cannot do but by a panic in
        // librdkafka's binding: the offsets are then committed by a later commit or redelivered.
        let _ = self.requests.send(Request { offsets, reply });
    }

    /// Commits after every commit asked for before, and waits up to `timeout` for the answer.
    pub(crate) async fn commit_and_wait(
        &self,
        offsets: Vec<(Tp, i64)>,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            offsets,
            reply: Reply::Waiting(reply),
        };
        if self.requests.send(request).is_err() {
            return Err(WaitError::TimedOut);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result.map_err(WaitError::Kafka),
            Ok(Err(_)) | Err(_) => Err(WaitError::TimedOut),
        }
    }
}

/// Sends each request's commit, synchronously, in order, until the handle is dropped.
fn serve(consumer: &BaseConsumer<PoolContext>, queue: &Receiver<Request>) {
    while let Ok(request) = queue.recv() {
        let result =
            tpl_of(&request.offsets).and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync));
        match request.reply {
            Reply::Background(results) => {
                let _ = results.send(Committed {
                    offsets: request.offsets,
                    result,
                });
            }
            Reply::Waiting(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

fn tpl_of(offsets: &[(Tp, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(tpl)
}
