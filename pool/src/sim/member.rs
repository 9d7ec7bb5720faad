//! One member of the group, simulated around the real coordinator: the poll thread's side
//! (assignments, revokes, seeks, taking records within the pool's bound) and the commit
//! queue, which the driver answers as the broker would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::work::SimWork;
use super::world::{Shared, TOPIC, lock};
use crate::commit::{Committer, Request};
use crate::coordinator::Coordinator;
use crate::flow::{Credit, Flow};
use crate::kafka::{Event, Message, Run, Seeks, Tp};
use crate::stats::Shared as Stats;
use crate::{Config, PoolError};

/// An assigned partition, as the poll thread sees it.
pub(super) struct Feed {
    pub(super) flow: Arc<Flow>,
    /// The next offset to fetch.
    pub(super) position: i64,
}

/// A revoke the poll thread is blocked in.
pub(super) struct Revoking {
    pub(super) partitions: Vec<i32>,
    done: Receiver<()>,
    pub(super) since: Instant,
    /// Set once over: the coordinator signalled it (`false`: it ended without, and the poll
    /// thread went on, as the real one does).
    pub(super) signalled: bool,
}

pub(super) struct Member {
    pub(super) task: JoinHandle<Result<(), PoolError>>,
    shutdown: Option<oneshot::Sender<()>>,
    events: mpsc::UnboundedSender<Event>,
    pub(super) credit: Arc<Credit>,
    pub(super) seeks: Arc<Seeks>,
    commits: Receiver<Request>,
    /// Commits sent, in order, not answered yet, each with the group's generation of every
    /// partition when it was sent (the group metadata a real commit carries).
    pub(super) unanswered: VecDeque<(Request, Vec<u64>)>,
    pub(super) feeds: BTreeMap<i32, Feed>,
    pub(super) revoking: Option<Revoking>,
    topic: Arc<str>,
    /// The coordinator's stats, for what a stall report says.
    pub(super) stats: Arc<Stats>,
}

impl Member {
    /// Starts a coordinator with `config` and its simulated handlers.
    pub(super) fn start(
        config: &Config,
        world: &Shared,
        max_batch: usize,
        transactional: bool,
    ) -> Self {
        let credit = Arc::new(Credit::new(
            config.job_queue_size,
            usize::try_from(config.max_buffered_bytes).unwrap_or(usize::MAX),
        ));
        let seeks = Arc::new(Seeks::default());
        let (results, commits_rx) = mpsc::unbounded_channel();
        let (committer, commits) = Committer::queue(results);
        let handlers = (0..config.num_workers)
            .map(|_| SimWork {
                world: Arc::clone(world),
                max_batch,
                transactional,
            })
            .collect();
        let stats = Arc::new(Stats::new(None));
        let coordinator = Coordinator::new(
            config.clone(),
            Arc::clone(&stats),
            handlers,
            Arc::clone(&credit),
            (committer, commits_rx),
            transactional,
            Arc::clone(&seeks),
        );
        let (events, events_rx) = mpsc::unbounded_channel();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(coordinator.run(
            async move {
                let _ = stop.await;
            },
            events_rx,
        ));
        Self {
            task,
            shutdown: Some(shutdown),
            events,
            credit,
            seeks,
            commits,
            unanswered: VecDeque::new(),
            feeds: BTreeMap::new(),
            revoking: None,
            topic: Arc::from(TOPIC),
            stats,
        }
    }

    fn tp(&self, partition: i32) -> Tp {
        (Arc::clone(&self.topic), partition)
    }

    /// Asks the pool to shut down.
    pub(super) fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Moves commits the coordinator sent into `unanswered`, in order, with the generations
    /// they were sent in.
    pub(super) fn take_commits(&mut self, world: &Shared) -> Vec<&Request> {
        let before = self.unanswered.len();
        while let Ok(request) = self.commits.try_recv() {
            let generations = lock(world).generation.clone();
            self.unanswered.push_back((request, generations));
        }
        self.unanswered
            .iter()
            .skip(before)
            .map(|(request, _)| request)
            .collect()
    }

    /// Assigns `partitions`, each fetched from `positions`.
    pub(super) fn assign(&mut self, partitions: &[(i32, i64)]) {
        let mut assigned = Vec::new();
        for &(partition, position) in partitions {
            let flow = self.credit.join();
            assigned.push((self.tp(partition), Arc::clone(&flow)));
            self.feeds.insert(partition, Feed { flow, position });
        }
        let _ = self.events.send(Event::Assigned(assigned));
    }

    /// Starts revoking `partitions`: the poll thread waits until the coordinator is done.
    pub(super) fn revoke(&mut self, partitions: Vec<i32>) {
        let (done, wait) = sync_channel(1);
        let tps = partitions.iter().map(|&p| self.tp(p)).collect();
        let _ = self.events.send(Event::Revoke {
            partitions: tps,
            done,
        });
        self.revoking = Some(Revoking {
            partitions,
            done: wait,
            since: Instant::now(),
            signalled: false,
        });
    }

    /// Whether the revoke in progress is over; if so the partitions are let go.
    pub(super) fn revoke_finished(&mut self) -> Option<Revoking> {
        let signalled = match &self.revoking {
            Some(r) => match r.done.try_recv() {
                Err(TryRecvError::Empty) => return None,
                Ok(()) => true,
                Err(TryRecvError::Disconnected) => false,
            },
            None => return None,
        };
        let mut revoking = self.revoking.take()?;
        revoking.signalled = signalled;
        for partition in &revoking.partitions {
            if self.feeds.remove(partition).is_some() {
                self.credit.leave();
            }
        }
        Some(revoking)
    }

    /// One round of the poll thread: serves the seeks asked for, then takes from each
    /// partition what its credit allows (at most `cap` each), and hands the round over.
    /// Returns the partitions read from.
    pub(super) fn poll_round(&mut self, world: &Shared, cap: usize) {
        let feeds = &mut self.feeds;
        let sought = self.seeks.serve(|tp, offset| match feeds.get_mut(&tp.1) {
            Some(feed) => {
                feed.position = offset;
                Ok(())
            }
            None => Err("Local: Erroneous state (partition not assigned)"),
        });
        for (tp, offset) in sought {
            let _ = self.events.send(Event::Rewound { tp, offset });
        }
        let w = lock(world);
        let mut batch = Vec::new();
        for (&partition, feed) in &mut self.feeds {
            // As the poll thread does: one run per partition, its credit counted once.
            let allowed = self.credit.allowance(&feed.flow).min(cap);
            let room = self.credit.byte_room(&feed.flow, self.credit.partitions());
            let log = &w.logs[usize::try_from(partition).unwrap_or_default()];
            let mut messages = Vec::new();
            let mut bytes = 0;
            for record in log.from(feed.position).iter().take(allowed) {
                if bytes >= room {
                    break;
                }
                let mut payload = record.id.to_le_bytes().to_vec();
                payload.resize(record.size, 0);
                let mut message = Message::new(Arc::clone(&self.topic), partition, record.offset);
                message.key = record.key.map(|k| vec![k]);
                message.payload = Some(payload);
                bytes += message.weight();
                feed.position = record.offset + 1;
                messages.push(Arc::new(message));
            }
            if !messages.is_empty() {
                let permit = self.credit.took(&feed.flow, messages.len(), bytes);
                batch.push(Run { messages, permit });
            }
        }
        drop(w);
        if !batch.is_empty() {
            let _ = self.events.send(Event::Messages(batch));
        }
    }
}
