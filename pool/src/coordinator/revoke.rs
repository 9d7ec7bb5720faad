//! Letting partitions go: a revoke drains its partitions' calls (until three quarters of
//! `shutdown_timeout`), commits them, and signals the poll thread; calls that outlive it are
//! zombies, and the partition's next assignment here starts nothing until they end.

use super::*;

/// A revoke waiting for its partitions' in-flight jobs.
pub(super) struct PendingRevoke {
    pub(super) partitions: Vec<Tp>,
    /// Until when its in-flight jobs may drain: three quarters of `shutdown_timeout`.
    pub(super) deadline: Instant,
    /// When it must be over, its final commit included: `shutdown_timeout` after it began, so
    /// a revoke never holds the poll thread past `max.poll.interval.ms`, which the pool checks
    /// is longer.
    pub(super) end: Instant,
    /// The rebalance (poll thread) waits on this.
    pub(super) done: SyncSender<()>,
}

impl<W: Work> Coordinator<W> {
    /// A revoke begins: nothing more of its partitions is started or retried, their queued
    /// jobs are dropped; their calls have until the revoke's deadline to end.
    pub(super) fn begin_revoke(&mut self, partitions: Vec<Tp>, done: SyncSender<()>) {
        self.shared.rebalanced();
        self.shared.revoked(&partitions);
        for tp in &partitions {
            self.dispatch.drop_partition(tp);
            if let Some(p) = self.partitions.get_mut(tp) {
                p.revoking = true;
                p.retries.cancel();
                self.retries.waiting -= p.retrying;
                p.retrying = 0;
            }
        }
        let now = Instant::now();
        self.revokes.push(PendingRevoke {
            partitions,
            deadline: now + self.config.shutdown_timeout * 3 / 4,
            end: now + self.config.shutdown_timeout,
            done,
        });
    }

    pub(super) fn next_revoke_deadline(&self) -> Instant {
        self.revokes
            .iter()
            .map(|r| r.deadline)
            .min()
            .unwrap_or_else(Instant::now)
    }

    /// A job of a revoked assignment ended: once the last one has, the partition's current
    /// assignment may start its held-back jobs.
    pub(super) fn zombie_ended(&mut self, tp: &Tp) {
        let Some(running) = self.zombies.get_mut(tp) else {
            return;
        };
        *running -= 1;
        if *running > 0 {
            return;
        }
        self.zombies.remove(tp);
        // A partition being revoked starts nothing more: its parked jobs go with it (pushed,
        // they would hold lanes that no job of a later assignment could pass).
        if let Some(p) = self.partitions.get_mut(tp)
            && !p.revoking
        {
            for job in std::mem::take(&mut p.parked) {
                self.dispatch.push(job);
            }
        }
    }

    /// Completes the revokes whose partitions are drained (or all of them when `force`):
    /// commits them synchronously, forgets them, then lets the rebalance go on.
    pub(super) async fn finish_revokes(&mut self, force: bool) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.revokes.len() {
            let r = &self.revokes[i];
            let drained = r
                .partitions
                .iter()
                .all(|tp| self.partitions.get(tp).is_none_or(|p| p.in_flight == 0));
            if !(force || drained || now >= r.deadline) {
                i += 1;
                continue;
            }
            let r = self.revokes.swap_remove(i);
            tracing::debug!(
                partitions = r.partitions.len(),
                drained,
                "finishing a revoke"
            );
            // The drain had until the revoke's deadline; the commit gets what is left of
            // `shutdown_timeout`, at least its last quarter.
            if let Err(e) = self.commit_sync(Some(&r.partitions), r.end).await {
                tracing::warn!(error = %e, "commit on revoke failed; the new owner will reprocess");
            }
            for tp in &r.partitions {
                if let Some(p) = self.partitions.remove(tp)
                    && p.in_flight > 0
                {
                    tracing::warn!(
                        topic = %tp.0, partition = tp.1, running = p.in_flight,
                        "revoked with calls still running past shutdown_timeout; if this member \
                         gets the partition back, it starts nothing there until they end"
                    );
                    *self.zombies.entry(tp.clone()).or_default() += p.in_flight;
                }
            }
            // A seek asked for them (after an aborted transaction) is void: the poll thread,
            // blocked in this revoke until `done`, must not serve it to a later assignment.
            self.seeks.forget(&r.partitions);
            // The rebalance may have given up waiting already; nothing to do then.
            let _ = r.done.send(());
        }
    }
}
