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
//!
//! A share may also have a hard cap ([`Cpu::cores`]): a token bucket of run time that fills at
//! `cores` seconds a second. A call of a share whose bucket is empty sleeps until it is not,
//! and meanwhile its share does not contend, so the others run on. The cap holds even when
//! the executor has nothing else to do.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::limits::Cpu;

/// How far ahead of the lowest contender a share may run: one epoch tick, the longest stretch
/// of guest code between two admissions.
pub(crate) const SLACK: Duration = super::ticker::TICK;

/// The most run time a capped share may bank while it does not use its cap: what it may run
/// at once before the cap bites, as a span of its cap (`cores` x this).
const BURST: Duration = Duration::from_millis(20);

/// Over how long [`Share::recent`] weighs run time: time older than this counts for about a
/// third, then less and less.
const RECENT: Duration = Duration::from_secs(1);

/// The process's scheduler, which every tenant's share joins.
static GLOBAL: LazyLock<Arc<Fair>> = LazyLock::new(Arc::default);

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
    /// Its hard cap, if it has one.
    cap: Option<Bucket>,
    /// Its run time, decayed over [`RECENT`], as of `recent_at`.
    recent_ns: f64,
    recent_at: Instant,
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
    fn new(cpu: Cpu) -> Self {
        Self {
            weight: cpu.weight.max(1),
            cap: cpu.cores.map(Bucket::new),
            recent_ns: 0.0,
            recent_at: Instant::now(),
            virtual_ns: 0,
            polling: 0,
            queued: 0,
            waiting: Vec::new(),
        }
    }

    fn contending(&self) -> bool {
        self.polling > 0 || self.queued > 0 || !self.waiting.is_empty()
    }

    /// Its decayed run time as of `now`.
    fn recent(&self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.recent_at);
        self.recent_ns * (-age.as_secs_f64() / RECENT.as_secs_f64()).exp()
    }

    fn charge(&mut self, ran: Duration, now: Instant) {
        self.virtual_ns += ran.as_nanos() / u128::from(self.weight);
        self.recent_ns = self.recent(now) + ran.as_nanos() as f64;
        self.recent_at = now;
        if let Some(cap) = &mut self.cap {
            cap.spend(ran, now);
        }
    }
}

/// A hard cap's token bucket, in nanoseconds of run time.
#[derive(Debug)]
struct Bucket {
    /// Run time earned per unit of wall time: the cap in cores.
    cores: f64,
    /// May go below 0: a poll is charged after it ran.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(cores: f64) -> Self {
        Self {
            cores,
            tokens: Self::most(cores),
            at: Instant::now(),
        }
    }

    fn most(cores: f64) -> f64 {
        BURST.as_nanos() as f64 * cores
    }

    fn fill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_nanos() as f64 * self.cores;
        self.tokens = (self.tokens + earned).min(Self::most(self.cores));
        self.at = now;
    }

    /// `None` if a poll may run now; otherwise when the bucket is no longer empty.
    fn empty_until(&mut self, now: Instant) -> Option<Instant> {
        self.fill(now);
        (self.tokens <= 0.0).then(|| {
            let wait = (-self.tokens / self.cores).ceil().min(1e12) as u64;
            now + Duration::from_nanos(wait.max(1))
        })
    }

    fn spend(&mut self, ran: Duration, now: Instant) {
        self.fill(now);
        self.tokens -= ran.as_nanos() as f64;
    }
}

/// Whether a call may be polled now.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Run,
    /// Another share is behind: wait to be woken.
    Wait,
    /// Its share's cap is spent until then.
    Capped(Instant),
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

    /// A new share with `cpu`'s weight (at least 1) and cap.
    pub fn share(self: &Arc<Self>, cpu: Cpu) -> Share {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.shares.insert(id, Entry::new(cpu));
        Share(Arc::new(ShareInner {
            id,
            fair: Arc::clone(self),
            run_ns: AtomicU64::new(0),
        }))
    }

    /// Gives share `id` a new weight and cap; its place in the schedule stays.
    fn configure(&self, id: u64, cpu: Cpu) {
        let mut state = self.lock();
        if let Some(entry) = state.shares.get_mut(&id) {
            entry.weight = cpu.weight.max(1);
            let unchanged = entry.cap.as_ref().map(|cap| cap.cores) == cpu.cores;
            if !unchanged {
                entry.cap = cpu.cores.map(Bucket::new);
            }
        }
        state.wake_admissible();
    }

    /// Share `id`'s part of the run time of every share, as [`Share::recent`] says.
    fn recent_part(&self, id: u64) -> f64 {
        let state = self.lock();
        let now = Instant::now();
        let all: f64 = state.shares.values().map(|e| e.recent(now)).sum();
        let ours = state.shares.get(&id).map_or(0.0, |e| e.recent(now));
        if all > 0.0 { ours / all } else { 0.0 }
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
    fn admit(&self, id: u64, waker: &Waker, queued: bool) -> Admission {
        let mut state = self.lock();
        let lowest_other = state.lowest_other(id);
        let floor = state.floor(id);
        let Some(entry) = state.shares.get_mut(&id) else {
            return Admission::Run;
        };
        if queued {
            entry.queued -= 1;
        }
        if let Some(until) = entry
            .cap
            .as_mut()
            .and_then(|cap| cap.empty_until(Instant::now()))
        {
            // Out of the running until then: the others are not held back for it.
            entry.waiting.retain(|w| !w.will_wake(waker));
            state.wake_admissible();
            return Admission::Capped(until);
        }
        if !queued && !entry.contending() {
            // Back from a host call or a cap after a pause: no credit for the time it did
            // not use.
            entry.virtual_ns = entry.virtual_ns.max(floor);
        }
        let admitted =
            lowest_other.is_none_or(|lowest| entry.virtual_ns <= lowest + SLACK.as_nanos());
        if admitted {
            entry.polling += 1;
            Admission::Run
        } else {
            if !entry.waiting.iter().any(|w| w.will_wake(waker)) {
                entry.waiting.push(waker.clone());
            }
            Admission::Wait
        }
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
        entry.charge(ran, Instant::now());
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
    /// A new share of the process's plugin executor, with `cpu`'s weight and cap: a tenant's.
    pub fn new(cpu: Cpu) -> Self {
        GLOBAL.share(cpu)
    }

    /// Gives it a new weight and cap (a tenant's changed limits), from its next poll on.
    pub fn configure(&self, cpu: Cpu) {
        self.0.fair.configure(self.0.id, cpu);
    }

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
            capped: None,
        }
    }

    /// The time its calls have run, in all.
    pub fn run_time(&self) -> Duration {
        Duration::from_nanos(self.0.run_ns.load(Ordering::Relaxed))
    }

    /// Its part (0 to 1) of the time every share's calls ran lately: about the last second,
    /// older time counting less and less.
    pub fn recent(&self) -> f64 {
        self.0.fair.recent_part(self.0.id)
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
    /// While its share's cap is spent: when it is not (a timer of the executor's runtime).
    capped: Option<Pin<Box<tokio::time::Sleep>>>,
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
        if let Some(capped) = &mut this.capped {
            if capped.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.capped = None;
        }
        let queued = std::mem::take(&mut this.queued);
        match inner.fair.admit(inner.id, cx.waker(), queued) {
            Admission::Run => {}
            Admission::Wait => {
                this.parked = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Admission::Capped(until) => {
                this.parked = None;
                let mut capped = Box::pin(tokio::time::sleep_until(until.into()));
                // Registers the waker; the time is seldom up already, and then it polls again.
                if capped.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                } else {
                    this.capped = Some(capped);
                }
                return Poll::Pending;
            }
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

    /// Whether a call of share `id` is admitted to run now.
    fn runs(fair: &Fair, id: u64, waker: &Waker, queued: bool) -> bool {
        fair.admit(id, waker, queued) == Admission::Run
    }

    /// A share that comes in after another ran alone starts level with it (no credit for
    /// the time it did not use); a share more than a tick ahead of a contender waits, and is
    /// woken once the other has caught up.
    #[test]
    fn a_share_ahead_waits_until_the_other_catches_up() {
        let fair = Arc::new(Fair::default());
        let (busy, quiet) = (fair.share(Cpu::weighted(1)), fair.share(Cpu::weighted(1)));
        let (_, w) = waker();
        // `busy` runs three ticks alone: nobody else contends, it is always admitted.
        for _ in 0..3 {
            assert!(runs(&fair, busy.0.id, &w, false));
            fair.charge(busy.0.id, SLACK, false);
        }
        // `quiet` comes in level with it: while it polls, `busy` is still admitted.
        assert!(runs(&fair, quiet.0.id, &w, false));
        assert!(runs(&fair, busy.0.id, &w, false), "level: both run");
        fair.charge(busy.0.id, SLACK * 2, false);
        let (busy_flag, busy_waker) = waker();
        assert!(
            !runs(&fair, busy.0.id, &busy_waker, false),
            "two ticks ahead"
        );
        // One tick of `quiet`'s brings `busy` within the slack again: it is woken.
        fair.charge(quiet.0.id, SLACK, false);
        assert_eq!(busy_flag.0.load(Ordering::Relaxed), 1);
        assert!(runs(&fair, busy.0.id, &busy_waker, false));
    }

    /// A share whose contender stops contending (its call blocked in a host call, or done)
    /// runs on: the executor never idles for want of a turn.
    #[test]
    fn a_share_runs_on_when_the_other_stops_contending() {
        let fair = Arc::new(Fair::default());
        let (a, b) = (fair.share(Cpu::weighted(1)), fair.share(Cpu::weighted(1)));
        let (_, w) = waker();
        assert!(runs(&fair, b.0.id, &w, false));
        assert!(runs(&fair, a.0.id, &w, false));
        fair.charge(a.0.id, SLACK * 5, false);
        let (a_flag, a_waker) = waker();
        assert!(
            !runs(&fair, a.0.id, &a_waker, false),
            "b still polls and is behind"
        );
        fair.charge(b.0.id, Duration::from_micros(10), false);
        assert_eq!(
            a_flag.0.load(Ordering::Relaxed),
            1,
            "b's poll ended: nobody else contends"
        );
        assert!(runs(&fair, a.0.id, &a_waker, false));
    }

    /// Weights divide the run time: a share of weight 3 may run three times as long as one
    /// of weight 1 before it waits.
    #[test]
    fn weights_divide_the_time_charged() {
        let fair = Arc::new(Fair::default());
        let (heavy, light) = (fair.share(Cpu::weighted(3)), fair.share(Cpu::weighted(1)));
        let (_, w) = waker();
        assert!(runs(&fair, light.0.id, &w, false));
        assert!(runs(&fair, heavy.0.id, &w, false));
        fair.charge(heavy.0.id, SLACK * 3, false);
        assert!(
            runs(&fair, heavy.0.id, &w, false),
            "3 ticks at weight 3: one tick ahead"
        );
        fair.charge(heavy.0.id, SLACK * 3, false);
        assert!(
            !runs(&fair, heavy.0.id, &w, false),
            "6 ticks at weight 3: two ahead"
        );
    }

    /// A capped share runs what it banked, then sleeps until its bucket has filled again, for
    /// as long as its cap says: at a hundredth of a core it banks 0.2 ms (a hundredth of
    /// [`BURST`]); a 20 ms poll leaves it 19.8 ms owed, earned back 1.98 s after the charge.
    /// Meanwhile it does not contend, so a share behind it is not held back. Reconfigured
    /// without a cap, it runs.
    #[test]
    fn a_capped_share_sleeps_off_its_overrun_and_holds_nobody_back() {
        let fair = Arc::new(Fair::default());
        let capped = fair.share(Cpu {
            weight: 1,
            cores: Some(0.01),
        });
        let other = fair.share(Cpu::weighted(1));
        let (_, w) = waker();
        assert!(runs(&fair, capped.0.id, &w, false));
        let before = Instant::now();
        fair.charge(capped.0.id, Duration::from_millis(20), false);
        let after = Instant::now();
        let Admission::Capped(until) = fair.admit(capped.0.id, &w, false) else {
            panic!("a spent cap admits nothing");
        };
        let owed = Duration::from_millis(1980);
        assert!(
            until >= before + owed && until <= after + owed + Duration::from_micros(1),
            "{:?} after the charge",
            until.saturating_duration_since(before)
        );
        // The capped share is far ahead in run time but does not contend: the other runs, and
        // goes on running past it.
        assert!(runs(&fair, other.0.id, &w, false));
        fair.charge(other.0.id, SLACK * 10, false);
        assert!(runs(&fair, other.0.id, &w, false));
        fair.charge(other.0.id, SLACK, false);
        capped.configure(Cpu::weighted(1));
        assert!(runs(&fair, capped.0.id, &w, false));
    }
}
