//! Fair shares of the plugin executor's CPU: which tenant's call may run guest code next.
//!
//! Every call runs on the shared [`Executor`](super::Executor), whose threads the kernel would
//! share between *calls*: a tenant with ten calls that burn CPU would get ten times the CPU of
//! a tenant with one. So each call is wrapped ([`Fair::run`]): before each poll (a stretch of
//! guest code, at most one epoch tick long, since the store yields at every tick) the call asks
//! to be admitted, and after it the poll's time is charged to its tenant's [`Share`].
//!
//! The rule is start-time fair queuing on measured time. Each share has a virtual time: the
//! time its calls have run, divided by its weight. Among the shares *contending* now — a call
//! of theirs is being polled, or waits to be: it yielded at a tick and is queued to run again,
//! or it was not admitted — a call is admitted when its share's virtual time is within
//! [`SLACK`] of the lowest. (A call that yields wakes itself during its poll: that is how a
//! yield is told from a call parked in a host call, which does not contend until its host
//! call wakes it.) A call that is not admitted parks (its waker is kept) and
//! is woken when the lowest moves up to it, or when the contenders change. A share that
//! starts contending again after a pause has its virtual time brought up to the lowest
//! contender's: time not used while idle is not banked. So:
//!
//! - under contention, shares get CPU in proportion to their weights;
//! - a share alone (or the only one that wants CPU) takes every thread: no call waits while
//!   a thread is free for want of a turn;
//! - a call blocked in a host call (a WASI sleep or poll) is not polled and holds nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How far ahead of the lowest contender a share may run: one epoch tick, the longest stretch
/// of guest code between two admissions.
pub(crate) const SLACK: Duration = super::ticker::TICK;

/// The scheduler's state, shared by every [`Share`] and call.
#[derive(Debug, Default)]
pub struct Fair {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    shares: HashMap<u64, Entry>,
    next_id: u64,
    /// The schedule's virtual clock: the lowest contender's virtual time as of the last poll
    /// (only ever moves up). A share that starts contending while nobody else does starts
    /// from it.
    clock: u128,
}

/// One share's place in the schedule.
#[derive(Debug)]
struct Entry {
    weight: u32,
    /// Run time divided by weight, in nanoseconds.
    virtual_ns: u128,
    /// Its calls inside a poll now.
    polling: usize,
    /// Its calls that yielded at a tick and are queued to run again.
    queued: usize,
    /// Its calls waiting to be admitted, by waker.
    waiting: Vec<Waker>,
}

impl Entry {
    fn contending(&self) -> bool {
        self.polling > 0 || self.queued > 0 || !self.waiting.is_empty()
    }
}

impl State {
    /// The lowest virtual time among the contending shares other than `id`.
    fn lowest_other(&self, id: u64) -> Option<u128> {
        self.shares
            .iter()
            .filter(|(other, e)| **other != id && e.contending())
            .map(|(_, e)| e.virtual_ns)
            .min()
    }

    /// Where share `id` starts when it starts contending: level with the lowest other
    /// contender, or the clock when there is none.
    fn floor(&self, id: u64) -> u128 {
        self.lowest_other(id).unwrap_or(self.clock)
    }

    /// The lowest virtual time among the contending shares.
    fn lowest(&self) -> Option<u128> {
        self.shares
            .values()
            .filter(|e| e.contending())
            .map(|e| e.virtual_ns)
            .min()
    }

    /// Wakes the waiting calls of every share now within [`SLACK`] of the lowest.
    fn wake_admissible(&mut self) {
        let Some(lowest) = self.lowest() else {
            return;
        };
        let bound = lowest + SLACK.as_nanos();
        for entry in self.shares.values_mut() {
            if entry.virtual_ns <= bound && !entry.waiting.is_empty() {
                for waker in entry.waiting.drain(..) {
                    waker.wake();
                }
            }
        }
    }
}

impl Fair {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new share of weight `weight` (at least 1).
    pub fn share(self: &Arc<Self>, weight: u32) -> Share {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.shares.insert(
            id,
            Entry {
                weight: weight.max(1),
                virtual_ns: 0,
                polling: 0,
                queued: 0,
                waiting: Vec::new(),
            },
        );
        Share(Arc::new(ShareInner {
            id,
            fair: Arc::clone(self),
            run_ns: AtomicU64::new(0),
        }))
    }

    /// A call of share `id` is made: it contends from now on (queued to be polled), and a
    /// share that was not contending starts level with the others.
    fn arrive(&self, id: u64) {
        let mut state = self.lock();
        let floor = state.floor(id);
        if let Some(entry) = state.shares.get_mut(&id) {
            if !entry.contending() {
                entry.virtual_ns = entry.virtual_ns.max(floor);
            }
            entry.queued += 1;
        }
    }

    /// Whether a call of share `id` may be polled now; if not, `waker` is kept to be woken
    /// when it may. Admitted, the call counts as polling until [`Fair::charge`]. `queued`: the
    /// call yielded at its last poll (it counted as queued since).
    fn admit(&self, id: u64, waker: &Waker, queued: bool) -> bool {
        let mut state = self.lock();
        let lowest_other = state.lowest_other(id);
        let floor = state.floor(id);
        let Some(entry) = state.shares.get_mut(&id) else {
            return true;
        };
        if queued {
            entry.queued -= 1;
        } else if !entry.contending() {
            // Back from a host call after a pause: no credit for the time it did not use.
            entry.virtual_ns = entry.virtual_ns.max(floor);
        }
        let admitted =
            lowest_other.is_none_or(|lowest| entry.virtual_ns <= lowest + SLACK.as_nanos());
        if admitted {
            entry.polling += 1;
        } else if !entry.waiting.iter().any(|w| w.will_wake(waker)) {
            entry.waiting.push(waker.clone());
        }
        admitted
    }

    /// A poll of share `id` ended after `ran`: charged, and the calls it kept waiting woken if
    /// they may run now. `yielded`: the call is queued to run again.
    fn charge(&self, id: u64, ran: Duration, yielded: bool) {
        let mut state = self.lock();
        let Some(entry) = state.shares.get_mut(&id) else {
            return;
        };
        entry.polling -= 1;
        if yielded {
            entry.queued += 1;
        }
        entry.virtual_ns += ran.as_nanos() / u128::from(entry.weight);
        let charged = entry.virtual_ns;
        let lowest = state.lowest().unwrap_or(charged);
        state.clock = state.clock.max(lowest);
        state.wake_admissible();
    }

    /// A call of share `id` ended before it was polled again: no longer queued (if it was),
    /// nor waiting with `waker`.
    fn leave(&self, id: u64, queued: bool, waker: &Waker) {
        let mut state = self.lock();
        if let Some(entry) = state.shares.get_mut(&id) {
            if queued {
                entry.queued -= 1;
            }
            entry.waiting.retain(|w| !w.will_wake(waker));
        }
        state.wake_admissible();
    }

    fn forget(&self, id: u64) {
        let mut state = self.lock();
        state.shares.remove(&id);
        state.wake_admissible();
    }
}

/// A tenant's share of the executor; calls run under it with [`Share::run`]. Clones are the
/// same share.
#[derive(Clone, Debug)]
pub struct Share(Arc<ShareInner>);

#[derive(Debug)]
struct ShareInner {
    id: u64,
    fair: Arc<Fair>,
    /// Time its calls have spent in guest code and the host calls they made, in all.
    run_ns: AtomicU64,
}

impl Drop for ShareInner {
    fn drop(&mut self) {
        self.fair.forget(self.id);
    }
}

impl Share {
    /// `future` (a plugin call), polled only when this share is admitted, each poll charged.
    pub fn run<F: Future>(&self, future: F) -> FairCall<F> {
        self.0.fair.arrive(self.0.id);
        let signal = Arc::new(Signal::default());
        FairCall {
            share: self.clone(),
            future: Box::pin(future),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            // Made to be polled: it contends from now on.
            queued: true,
            parked: None,
        }
    }

    /// The time its calls have run, in all.
    pub fn run_time(&self) -> Duration {
        Duration::from_nanos(self.0.run_ns.load(Ordering::Relaxed))
    }
}

/// A call under a [`Share`] (see the module docs).
pub struct FairCall<F> {
    share: Share,
    /// Boxed: one allocation per call, for a future that is then `Unpin`.
    future: Pin<Box<F>>,
    /// The waker the call is polled with: it notes a wake-up during the poll (a yield) and
    /// passes every wake-up on to the task's waker.
    signal: Arc<Signal>,
    waker: Waker,
    /// It is new, or yielded at its last poll: it counts as queued.
    queued: bool,
    /// The task's waker, while it waits to be admitted.
    parked: Option<Waker>,
}

/// What a call's own waker does: notes that it was woken, and wakes the task.
#[derive(Debug, Default)]
struct Signal {
    woken: std::sync::atomic::AtomicBool,
    task: futures::task::AtomicWaker,
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Future for FairCall<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let inner = &this.share.0;
        let queued = std::mem::take(&mut this.queued);
        if !inner.fair.admit(inner.id, cx.waker(), queued) {
            this.parked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        this.parked = None;
        this.signal.task.register(cx.waker());
        this.signal.woken.store(false, Ordering::Release);
        let started = Instant::now();
        let polled = this
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        let ran = started.elapsed();
        let yielded = polled.is_pending() && this.signal.woken.load(Ordering::Acquire);
        this.queued = yielded;
        inner.run_ns.fetch_add(
            u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        inner.fair.charge(inner.id, ran, yielded);
        polled
    }
}

impl<F> Drop for FairCall<F> {
    fn drop(&mut self) {
        if self.queued || self.parked.is_some() {
            let parked = self.parked.take().unwrap_or_else(|| self.waker.clone());
            self.share
                .0
                .fair
                .leave(self.share.0.id, self.queued, &parked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::task::Wake;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Flag(AtomicU64);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag::default());
        (Arc::clone(&flag), Waker::from(flag))
    }

    /// A share that comes in after another ran alone starts level with it (no credit for
    /// the time it did not use); a share more than a tick ahead of a contender waits, and is
    /// woken once the other has caught up.
    #[test]
    fn a_share_ahead_waits_until_the_other_catches_up() {
        let fair = Arc::new(Fair::default());
        let (busy, quiet) = (fair.share(1), fair.share(1));
        let (_, w) = waker();
        // `busy` runs three ticks alone: nobody else contends, it is always admitted.
        for _ in 0..3 {
            assert!(fair.admit(busy.0.id, &w, false));
            fair.charge(busy.0.id, SLACK, false);
        }
        // `quiet` comes in level with it: while it polls, `busy` is still admitted.
        assert!(fair.admit(quiet.0.id, &w, false));
        assert!(fair.admit(busy.0.id, &w, false), "level: both run");
        fair.charge(busy.0.id, SLACK * 2, false);
        let (busy_flag, busy_waker) = waker();
        assert!(
            !fair.admit(busy.0.id, &busy_waker, false),
            "two ticks ahead"
        );
        // One tick of `quiet`'s brings `busy` within the slack again: it is woken.
        fair.charge(quiet.0.id, SLACK, false);
        assert_eq!(busy_flag.0.load(Ordering::Relaxed), 1);
        assert!(fair.admit(busy.0.id, &busy_waker, false));
    }

    /// A share whose contender stops contending (its call blocked in a host call, or done)
    /// runs on: the executor never idles for want of a turn.
    #[test]
    fn a_share_runs_on_when_the_other_stops_contending() {
        let fair = Arc::new(Fair::default());
        let (a, b) = (fair.share(1), fair.share(1));
        let (_, w) = waker();
        assert!(fair.admit(b.0.id, &w, false));
        assert!(fair.admit(a.0.id, &w, false));
        fair.charge(a.0.id, SLACK * 5, false);
        let (a_flag, a_waker) = waker();
        assert!(
            !fair.admit(a.0.id, &a_waker, false),
            "b still polls and is behind"
        );
        fair.charge(b.0.id, Duration::from_micros(10), false);
        assert_eq!(
            a_flag.0.load(Ordering::Relaxed),
            1,
            "b's poll ended: nobody else contends"
        );
        assert!(fair.admit(a.0.id, &a_waker, false));
    }

    /// Weights divide the run time: a share of weight 3 may run three times as long as one
    /// of weight 1 before it waits.
    #[test]
    fn weights_divide_the_time_charged() {
        let fair = Arc::new(Fair::default());
        let (heavy, light) = (fair.share(3), fair.share(1));
        let (_, w) = waker();
        assert!(fair.admit(light.0.id, &w, false));
        assert!(fair.admit(heavy.0.id, &w, false));
        fair.charge(heavy.0.id, SLACK * 3, false);
        assert!(
            fair.admit(heavy.0.id, &w, false),
            "3 ticks at weight 3: one tick ahead"
        );
        fair.charge(heavy.0.id, SLACK * 3, false);
        assert!(
            !fair.admit(heavy.0.id, &w, false),
            "6 ticks at weight 3: two ahead"
        );
    }
}
