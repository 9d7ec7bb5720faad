//! Exactly-once: a pool's commits as Kafka transactions ([`Pool::with_transactions`]).
//!
//! A handler hands the pool the records a message produces ([`Processed::Output`]; a dead
//! letter, [`FailureAction::MarkDoneWith`]) instead of producing them itself. The pool holds
//! them with the message's offset and, at each commit, produces those of each partition's done
//! prefix, adds the prefix's offsets for the consumer's group, and commits the transaction: the
//! records, and the offsets that say their messages are done, become visible to
//! `read_committed` readers together or not at all. The group's metadata goes with the offsets
//! (KIP-447): a member that lost its partitions in a rebalance cannot commit for them any more.
//!
//! **Why outputs are held.** The pool commits only a partition's contiguous done prefix, and
//! messages above a gap finish early. Their records must not go out in a transaction whose
//! offsets stop below them: after a crash those messages would run again and produce again.
//! So a message's records wait with it until the prefix passes its offset, and each
//! transaction carries exactly its prefixes' records and offsets.
//!
//! **Cutting.** A transaction is what one commit sends, cut by `commit_interval` and
//! `commit_batch_size` like any commit; one is in flight at a time, on the committer thread.
//! A synchronous commit (a revoke's, the last one) first waits for the one in flight, so it
//! never commits offsets past records that an abort has just thrown away.
//!
//! **Aborts.** A transaction that fails (a broker timeout, a rebalance that fenced the group's
//! generation) is aborted: its records and offsets are gone. Its partitions go back to their
//! last committed offsets: the coordinator drops their state (a new epoch: queued jobs, held
//! records, done offsets), the poll thread seeks them there, and everything fetched before
//! the seek is dropped; the messages run again. A fatal error — another producer with the same
//! `transactional.id` — halts the pool.
//!
//! **Steps that time out.** A commit (or abort) that runs past its timeout is not over: it goes
//! on in the background, and librdkafka refuses every other transactional call until the same
//! call is made again to resume it. So a timed-out commit is resumed, never answered with an
//! abort: taking it for aborted would rerun messages whose outputs may have committed after
//! all, and every later transaction would be refused as conflicting. A commit still unfinished
//! after [`TRIES`] tries leaves its outcome unknown and the producer unusable: the pool halts,
//! and its successor starts from the offsets the broker holds.
//!
//! **Offsets the broker drops.** Once a transaction has committed, the committer commits its
//! offsets once more, plainly, before the next transaction begins (`commit::reinforce`): a
//! broker that loses a committed transaction's offsets (Tansu 0.6.0 does) would otherwise send
//! a restarted member back below work whose outputs are committed, to write them again.
//!
//! **The bound.** A message counts against `job_queue_size` until the prefix passes it, as in
//! every pool; its held records count against its partition's share of `max_buffered_bytes`
//! until they leave for their transaction.
//!
//! [`Pool::with_transactions`]: crate::Pool::with_transactions
//! [`Processed::Output`]: crate::Processed::Output
//! [`FailureAction::MarkDoneWith`]: crate::FailureAction::MarkDoneWith

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{OutRecord, Tp};

/// How long a record may wait for room in the producer's queue before its transaction fails.
const QUEUE_PATIENCE: Duration = Duration::from_secs(30);

/// How many times in all a step librdkafka calls retriable is tried: a commit or abort that
/// timed out is resumed; offsets whose registration timed out are sent again with the same
/// arguments, as librdkafka recommends.
const TRIES: u32 = 4;

/// What a commit in doubt is, said once for [`TransactionError::InDoubt`] and the pool's
/// `CommitError::InDoubt`.
pub(crate) const IN_DOUBT: &str =
    "the transaction's commit did not finish in its 4 tries; its outcome is unknown";
const _: () = assert!(TRIES == 4, "IN_DOUBT says how many tries");

/// A transactional producer, ready: its transactions initialised (which aborts what an earlier
/// producer with the same `transactional.id` left open, and fences it).
pub struct Transactions {
    /// Threaded: an abort waits until the delivery reports of the records it throws away have
    /// been served, which takes a thread polling the producer.
    producer: ThreadedProducer<DefaultProducerContext>,
    /// How long each step of a transaction (adding offsets, committing, aborting) may take.
    timeout: Duration,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The producer's config has no `transactional.id`.
    #[error("the producer needs a transactional.id")]
    NoTransactionalId,
    /// Aborted: nothing of it is visible; its messages run again.
    #[error("transaction aborted: {0}")]
    Aborted(KafkaError),
    /// The producer cannot go on (fenced by another with the same `transactional.id`).
    #[error("transactional producer failed for good: {0}")]
    Fatal(KafkaError),
    /// The commit did not finish in [`TRIES`] tries of the step timeout: whether it committed
    /// is unknown, and the producer takes no other call until it does.
    #[error("{IN_DOUBT}: {0}")]
    InDoubt(KafkaError),
}

impl Transactions {
    /// Creates the producer from `config`, which must set `transactional.id`, and initialises
    /// its transactions, waiting up to `timeout`.
    pub fn new(config: &ClientConfig, timeout: Duration) -> Result<Self, TransactionError> {
        if config.get("transactional.id").is_none() {
            return Err(TransactionError::NoTransactionalId);
        }
        let producer: ThreadedProducer<DefaultProducerContext> =
            config.create().map_err(TransactionError::Fatal)?;
        producer
            .init_transactions(timeout)
            .map_err(TransactionError::Fatal)?;
        Ok(Self { producer, timeout })
    }

    /// Runs one transaction: produces `records`, adds `offsets` for the group as `group`
    /// describes it (its generation when the commit was asked for), and commits. Anything
    /// short of a commit is aborted.
    pub(crate) fn transact(
        &self,
        group: Option<&ConsumerGroupMetadata>,
        offsets: &[(Tp, i64)],
        records: &[OutRecord],
    ) -> Result<(), TransactionError> {
        let result = self.try_transact(group, offsets, records);
        tracing::debug!(
            records = records.len(),
            partitions = offsets.len(),
            ?result,
            "transaction"
        );
        match result {
            Ok(()) => Ok(()),
            Err(Failure::InDoubt(e)) => Err(TransactionError::InDoubt(e)),
            Err(Failure::Abortable(e)) if is_fatal(&e) => Err(TransactionError::Fatal(e)),
            Err(Failure::Abortable(e)) => match self.abort() {
                Err(abort) if is_fatal(&abort) => Err(TransactionError::Fatal(abort)),
                // An abort that did not finish is resumed by the next transaction's begin.
                _ => Err(TransactionError::Aborted(e)),
            },
        }
    }

    fn try_transact(
        &self,
        group: Option<&ConsumerGroupMetadata>,
        offsets: &[(Tp, i64)],
        records: &[OutRecord],
    ) -> Result<(), Failure> {
        // Only a consumer outside any group has none; the pool's consumers subscribe.
        let group = group.ok_or(KafkaError::Global(RDKafkaErrorCode::InvalidArgument))?;
        self.begin()?;
        for record in records {
            self.send(record)?;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        tries(|| {
            self.producer
                .send_offsets_to_transaction(&tpl, group, self.timeout)
        })?;
        tries(|| self.producer.commit_transaction(self.timeout)).map_err(|e| {
            if is_retriable(&e) {
                Failure::InDoubt(e)
            } else {
                Failure::Abortable(e)
            }
        })
    }

    /// Aborts the open transaction, resuming an abort that timed out.
    fn abort(&self) -> Result<(), KafkaError> {
        tries(|| self.producer.abort_transaction(self.timeout))
    }

    /// Begins a transaction; one left open by an abort that did not finish is aborted first.
    fn begin(&self) -> Result<(), KafkaError> {
        match self.producer.begin_transaction() {
            Err(e) if !is_fatal(&e) => {
                self.abort()?;
                self.producer.begin_transaction()
            }
            other => other,
        }
    }

    /// Queues one record in the open transaction, waiting (up to [`QUEUE_PATIENCE`]) for room.
    fn send(&self, record: &OutRecord) -> Result<(), KafkaError> {
        let mut out = BaseRecord::<[u8], [u8]>::to(&record.topic).headers(record.kafka_headers());
        if let Some(value) = &record.value {
            out = out.payload(value);
        }
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        let patience = std::time::Instant::now() + QUEUE_PATIENCE;
        loop {
            match self.producer.send(out) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if std::time::Instant::now() < patience =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                    out = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// Why a transaction did not commit, before it is aborted or not.
#[derive(Debug)]
enum Failure {
    /// Nothing of it committed: it is to be aborted.
    Abortable(KafkaError),
    /// Its commit is still going on, its outcome unknown.
    InDoubt(KafkaError),
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        Self::Abortable(e)
    }
}

/// Runs `step` until it ends other than retriably, at most [`TRIES`] times.
fn tries(mut step: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut tried = 1;
    loop {
        match step() {
            Err(e) if is_retriable(&e) && tried < TRIES => {
                tracing::debug!(error = %e, tried, "a transaction's step is tried again");
                tried += 1;
            }
            other => return other,
        }
    }
}

/// Whether librdkafka asks for `error`'s call to be made again (a timeout: the call goes on in
/// the background), rather than for an abort.
fn is_retriable(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_retriable() && !e.txn_requires_abort() && !e.is_fatal(),
        _ => false,
    }
}

/// Whether `error` ends the producer (fenced, or a fatal librdkafka state).
fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        _ => false,
    }
}
