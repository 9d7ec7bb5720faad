//! The simulated handler: each call draws, from the world's seeded RNG, how long it takes and
//! how it ends — at once, slowly, or never (until released); done, retriable, permanent, or a
//! result that settles later — and a permanent failure's hook draws how it is handled.
//!
//! It records in the world what a handler's user would see happen: which records were done
//! (processed, or failed and handled), and which lanes run a call now. A call of a lane that
//! starts while another of it runs, or before the lane's record before it was done, breaks
//! the ordering mode.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use super::world::{self, Lane, Shared, lock};
use crate::handler::{Attempt, Failure, FailureAction, Pending, ProcessError, Processed, Work};
use crate::kafka::Message;

/// One worker's handler.
pub(super) struct SimWork {
    pub(super) world: Shared,
    pub(super) max_batch: usize,
    /// Successes come back as records (exactly-once).
    pub(super) transactional: bool,
}

/// How long a call takes.
#[derive(Clone, Copy)]
enum Delay {
    None,
    For(Duration),
    /// Until the world releases every such call.
    Never,
}

/// How one message's call ends.
enum End {
    Ok,
    Retriable,
    Permanent,
    /// Later: after the delay, ok or retriable.
    Later(Duration, bool),
}

/// Holds a lane while a call of it runs; a second call of the same lane is a violation.
struct LaneGuard {
    world: Shared,
    lane: Option<Lane>,
    call: u64,
}

impl LaneGuard {
    fn enter(world: &Shared, w: &mut world::World, message: &Message) -> Self {
        let key = message.key.as_deref().and_then(|k| k.first().copied());
        let lane = w.lane(message.partition, key);
        let call = w.next_call;
        w.next_call += 1;
        if let Some(lane) = lane
            && let Some((other, _)) = w.running.insert(lane, (message.offset, call))
        {
            w.violation(format!(
                "lane {lane:?} runs offsets {other} and {} at once",
                message.offset
            ));
        }
        if let Some(lane) = lane
            && let Some(before) = w.before_in_lane(lane, message.offset)
            && !w.processed.contains_key(&before.id)
        {
            w.violation(format!(
                "lane {lane:?} runs offset {} before offset {} was done",
                message.offset, before.offset
            ));
        }
        Self {
            world: Arc::clone(world),
            lane,
            call,
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if let Some(lane) = self.lane {
            let mut w = lock(&self.world);
            if w.running
                .get(&lane)
                .is_some_and(|(_, call)| *call == self.call)
            {
                w.running.remove(&lane);
            }
        }
    }
}

async fn wait(world: &Shared, delay: Delay) {
    match delay {
        Delay::None => {}
        Delay::For(d) => tokio::time::sleep(d).await,
        Delay::Never => {
            let (release, at) = {
                let w = lock(world);
                (Arc::clone(&w.release), w.released)
            };
            let released = release.notified();
            if lock(world).released == at {
                released.await;
            }
        }
    }
}

fn draw_delay(w: &mut world::World) -> Delay {
    if !w.faults {
        return Delay::None;
    }
    match w.rng.random_range(0..100) {
        0..60 => Delay::None,
        60..90 => Delay::For(Duration::from_millis(w.rng.random_range(1..50))),
        90..99 => Delay::For(Duration::from_millis(w.rng.random_range(200..3000))),
        _ => Delay::Never,
    }
}

fn draw_end(w: &mut world::World, later_allowed: bool) -> End {
    if !w.faults {
        return End::Ok;
    }
    match w.rng.random_range(0..100) {
        0..78 => End::Ok,
        78..90 => End::Retriable,
        90..95 => End::Permanent,
        _ if later_allowed => End::Later(
            Duration::from_millis(w.rng.random_range(1..100)),
            w.rng.random_ratio(4, 5),
        ),
        _ => End::Ok,
    }
}

/// Marks `message`'s record done in the world.
fn done(world: &Shared, message: &Message) {
    let id = world::id_of(message.payload.as_deref());
    *lock(world).processed.entry(id).or_insert(0) += 1;
}

fn result_of(end: &End) -> Result<(), ProcessError> {
    match end {
        End::Ok | End::Later(..) => Ok(()),
        End::Retriable => Err(ProcessError::retriable("sim: retriable")),
        End::Permanent => Err(ProcessError::permanent("sim: permanent")),
    }
}

impl Work for SimWork {
    fn attempt(
        &mut self,
        message: &Arc<Message>,
        _attempt: u32,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let world = Arc::clone(&self.world);
        let message = Arc::clone(message);
        async move {
            let (guard, delay, end) = {
                let mut w = lock(&world);
                let guard = LaneGuard::enter(&world, &mut w, &message);
                (guard, draw_delay(&mut w), draw_end(&mut w, false))
            };
            wait(&world, delay).await;
            if matches!(end, End::Ok) {
                done(&world, &message);
            }
            drop(guard);
            result_of(&end)
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn attempt_batch(&mut self, batch: &[Attempt]) -> impl Future<Output = Vec<Processed>> + Send {
        let world = Arc::clone(&self.world);
        let messages: Vec<Arc<Message>> = batch.iter().map(|a| Arc::clone(&a.message)).collect();
        let transactional = self.transactional;
        async move {
            let (mut guards, delay, ends) = {
                let mut w = lock(&world);
                let guards: Vec<_> = messages
                    .iter()
                    .map(|m| Some(LaneGuard::enter(&world, &mut w, m)))
                    .collect();
                let delay = draw_delay(&mut w);
                let ends: Vec<End> = messages
                    .iter()
                    .map(|_| draw_end(&mut w, !transactional))
                    .collect();
                (guards, delay, ends)
            };
            wait(&world, delay).await;
            let mut results = Vec::with_capacity(messages.len());
            for ((message, end), guard) in messages.iter().zip(ends).zip(&mut guards) {
                let result = match end {
                    End::Ok if transactional => {
                        done(&world, message);
                        let id = world::id_of(message.payload.as_deref());
                        Processed::Output(vec![world::output_for(id, "out")])
                    }
                    End::Ok => {
                        done(&world, message);
                        Processed::Now(Ok(()))
                    }
                    End::Later(after, ok) => {
                        let guard = guard.take();
                        let world = Arc::clone(&world);
                        let message = Arc::clone(message);
                        Processed::Later(Pending::new(async move {
                            tokio::time::sleep(after).await;
                            drop(guard);
                            if ok {
                                done(&world, &message);
                                Ok(())
                            } else {
                                Err(ProcessError::retriable("sim: later, retriable"))
                            }
                        }))
                    }
                    end => Processed::Now(result_of(&end)),
                };
                results.push(result);
            }
            drop(guards);
            results
        }
    }

    fn failed(
        &mut self,
        message: &Arc<Message>,
        _failure: &Failure,
    ) -> impl Future<Output = FailureAction> + Send {
        let world = Arc::clone(&self.world);
        let message = Arc::clone(message);
        let transactional = self.transactional;
        async move {
            let mut w = lock(&world);
            let id = world::id_of(message.payload.as_deref());
            let roll = if w.faults {
                w.rng.random_range(0..100)
            } else {
                0
            };
            let partition = usize::try_from(message.partition).unwrap_or_default();
            let generation = w.generation[partition];
            match roll {
                95.. => FailureAction::Halt("sim: the failure hook halts".into()),
                _ if transactional => {
                    drop(w);
                    done(&world, &message);
                    FailureAction::MarkDoneWith(vec![world::output_for(id, "dlq")])
                }
                0..50 => {
                    drop(w);
                    done(&world, &message);
                    FailureAction::MarkDone
                }
                _ => {
                    // A dead letter whose ack comes later, or is refused.
                    let guard = LaneGuard::enter(&world, &mut w, &message);
                    let after = Duration::from_millis(w.rng.random_range(1..200));
                    let acked = w.rng.random_ratio(85, 100);
                    drop(w);
                    let world = Arc::clone(&world);
                    FailureAction::MarkDoneWhen(Pending::new(async move {
                        tokio::time::sleep(after).await;
                        drop(guard);
                        if acked {
                            done(&world, &message);
                            return Ok(());
                        }
                        let mut w = lock(&world);
                        let owned = w.generation[partition] == generation;
                        w.refused.insert(id, owned);
                        Err(ProcessError::permanent(format!(
                            "sim: dead letter of record {id} refused"
                        )))
                    }))
                }
            }
        }
    }
}
