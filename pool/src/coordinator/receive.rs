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
            self.on_run(messages, &mut permit);
            self.returns.add(permit);
        }
    }

    /// One partition's run: its partition found once (made, if the records came through the
    /// main queue of a partition the pool does not meter), then each record received.
    fn on_run(&mut self, messages: Vec<Arc<Message>>, run: &mut Permit) {
        let Some(first) = messages.first() else {
            return;
        };
        let tp: Tp = (Arc::clone(&first.topic), first.partition);
        let slot = match self.partitions.slot_of(&tp) {
            Some(slot) => slot,
            None => {
                let p = self.new_partition(None);
                self.partitions.insert(tp.clone(), p)
            }
        };
        for message in messages {
            self.on_message(&tp, slot, message, run);
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

    /// Tracks and queues a fetched record of `tp` (at `slot`), its credit taken out of `run`'s
    /// permit; one refused (the pool is stopping, its partition is being revoked or sought back,
    /// or its offset is not above the last one tracked) leaves its credit there, to be given
    /// back.
    fn on_message(&mut self, tp: &Tp, slot: usize, message: Arc<Message>, run: &mut Permit) {
        let stopping = self.stopping;
        let Some(p) = self.partitions.at(slot) else {
            return;
        };
        if p.rewinding {
            return;
        }
        if !stopping && !p.revoking && p.offsets.rewinds(message.offset) {
            self.went_back(tp, message.offset);
        }
        let Some(p) = self.partitions.at(slot) else {
            return;
        };
        if stopping || p.revoking || p.rewinding {
            return;
        }
        let Some(job) = p.receive(message, run) else {
            return;
        };
        if !self.zombies.is_empty() && self.zombies.contains_key(tp) {
            p.parked.push(job);
        } else {
            self.dispatch.push(job);
        }
    }
}
