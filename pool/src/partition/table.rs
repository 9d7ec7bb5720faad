//! The partitions this member owns, found by name (a run of records, a revoke) or by slot (a
//! job): a job carries its partition's slot and epoch, so the hot path finds its partition with
//! an index, not a hash of the topic's name and a clone of it.

use rustc_hash::FxHashMap;

use super::Partition;
use crate::dispatch::Job;
use crate::kafka::Tp;

#[derive(Default)]
pub(crate) struct Partitions {
    /// Each owned partition with its name; `None` for a free slot.
    slots: Vec<Option<(Tp, Partition)>>,
    /// FxHash: partition names come from the assignment, not from producers.
    by_name: FxHashMap<Tp, usize>,
    free: Vec<usize>,
}

impl Partitions {
    pub(crate) fn get(&self, tp: &Tp) -> Option<&Partition> {
        let slot = *self.by_name.get(tp)?;
        self.slots[slot].as_ref().map(|(_, p)| p)
    }

    pub(crate) fn get_mut(&mut self, tp: &Tp) -> Option<&mut Partition> {
        let slot = *self.by_name.get(tp)?;
        self.slots[slot].as_mut().map(|(_, p)| p)
    }

    /// Where `tp` is, if owned.
    pub(crate) fn slot_of(&self, tp: &Tp) -> Option<usize> {
        self.by_name.get(tp).copied()
    }

    /// The partition at `slot`, if any.
    pub(crate) fn at(&mut self, slot: usize) -> Option<&mut Partition> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, p)| p)
    }

    /// The partition `job` belongs to, if the job is of its current epoch (epochs are never
    /// reused, so a job of a partition let go, or of one that went back, finds nothing).
    pub(crate) fn of(&mut self, job: &Job) -> Option<&mut Partition> {
        match self.slots.get_mut(job.slot)? {
            Some((_, p)) if p.epoch == job.epoch => Some(p),
            _ => None,
        }
    }

    /// Owns `p` as `tp` (replacing a partition of that name, which is dropped); returns its
    /// slot.
    pub(crate) fn insert(&mut self, tp: Tp, mut p: Partition) -> usize {
        let slot = match self.by_name.get(&tp) {
            Some(&slot) => slot,
            None => {
                let slot = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                self.by_name.insert(tp.clone(), slot);
                slot
            }
        };
        p.slot = slot;
        self.slots[slot] = Some((tp, p));
        slot
    }

    pub(crate) fn remove(&mut self, tp: &Tp) -> Option<Partition> {
        let slot = self.by_name.remove(tp)?;
        self.free.push(slot);
        self.slots[slot].take().map(|(_, p)| p)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Tp, &Partition)> {
        self.slots.iter().flatten().map(|(tp, p)| (tp, p))
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Partition> {
        self.slots.iter_mut().flatten().map(|(_, p)| p)
    }
}
