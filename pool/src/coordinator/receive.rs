//! Records in: each fetched record tracked by its partition and queued as a job (or parked
//! behind an earlier epoch's calls), or refused, its credit given back; partitions assigned.

use super::*;

impl<W: Work> Coordinator<W> {
    /// Fetched records, run by run: what a refused record held of its run's permit is given
    /// back with the rest.
    pub(super) fn on_runs(&mut self, runs: Vec<Run>) {
        for Run {
            messages,
            mut permit,
        } in runs
        {
            for message in messages {
                self.on_message(message, &mut permit);
            }
            self.returns.add(permit);
        }
    }

    /// Partitions assigned, each with its part of the bound: each starts a new epoch.
    pub(super) fn on_assigned(&mut self, assigned: Vec<(Tp, Arc<Flow>)>) {
        let tps: Vec<Tp> = assigned.iter().map(|(tp, _)| tp.clone()).collect();
        self.shared.rebalanced();
        self.shared.assigned(&tps);
        for (tp, flow) in assigned {
            let p = self.new_partition(Some(flow));
            self.partitions.insert(tp, p);
        }
    }

    pub(super) fn new_partition(&mut self, flow: Option<Arc<Flow>>) -> Partition {
        self.next_epoch += 1;
        Partition::new(flow, self.next_epoch, self.retries.token.child_token())
    }

    /// Tracks and queues a fetched record, its credit taken out of `run`'s permit; one refused
    /// (the pool is stopping, its partition is being revoked or sought back, or its offset is
    /// not above the last one tracked) leaves its credit there, to be given back.
    pub(super) fn on_message(&mut self, message: Arc<Message>, run: &mut Permit) {
        let tp: Tp = (Arc::clone(&message.topic), message.partition);
        // One lookup on the common path; a new partition or a rewind looks again.
        let rewinds = match self.partitions.get(&tp) {
            None => {
                let p = self.new_partition(None);
                self.partitions.insert(tp.clone(), p);
                false
            }
            Some(p) if p.rewinding => return,
            Some(p) => !self.stopping && !p.revoking && p.offsets.rewinds(message.offset),
        };
        if rewinds {
            self.went_back(&tp, message.offset);
        }
        let stopping = self.stopping;
        let Some(p) = self.partitions.get_mut(&tp) else {
            return;
        };
        if stopping || p.revoking || p.rewinding {
            return;
        }
        let Some(job) = p.receive(message, run) else {
            return;
        };
        if !self.zombies.is_empty() && self.zombies.contains_key(&tp) {
            p.parked.push(job);
        } else {
            self.dispatch.push(job);
        }
    }
}
