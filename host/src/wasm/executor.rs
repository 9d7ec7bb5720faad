//! The plugin executor: one fixed set of threads that runs every tenant's plugin calls.
//!
//! A call is an async wasmtime call (see [`PluginInstance`](super::PluginInstance)): guest
//! code yields at every epoch tick, and a guest parked in a host call (a WASI sleep or poll) is
//! a pending future. So a few threads can run any number of calls: a blocked call holds no
//! thread, and a spinning one gives its thread up at every tick. The executor is a tokio
//! runtime of its own — [`threads`] of them, named `burrow-plugin-N`, with timers for the
//! deadlines and WASI clocks and a small blocking pool for WASI file operations — apart from
//! the runtime the pools run on, so guest code never delays a commit or a poll.
//!
//! Which call runs when is not left to the runtime: each runs under its tenant's [`Share`]
//! (see `fair`), so tenants get the threads in proportion to their weights, not to how many
//! calls they have.
//!
//! One executor serves the process; it is made on the first call.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;

use super::fair::Share;

/// The process's executor.
pub struct Executor {
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// Built once, on first use; `Err` (the reason) if the OS refused its threads.
static GLOBAL: OnceLock<Result<Executor, String>> = OnceLock::new();

/// How many threads run plugin calls: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Executor {
    /// The process's executor, made on the first call.
    pub fn global() -> Result<&'static Executor, String> {
        GLOBAL
            .get_or_init(|| Self::new(threads()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new(threads: usize) -> std::io::Result<Self> {
        let next = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name_fn(move || {
                format!("burrow-plugin-{}", next.fetch_add(1, Ordering::Relaxed))
            })
            // WASI file operations of every tenant; nothing else blocks here.
            .max_blocking_threads(threads.max(2))
            // Turn the timers after every poll, not every 61st: with every thread busy with
            // guests that yield each tick (5 ms), a call parked in a host call past its
            // deadline was ended only seconds late (the chaos run took 210 s, not 24). Costs
            // one `epoll_wait(0)` a poll, and a poll is a batch or a tick of guest code.
            .event_interval(1)
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }

    /// Runs `call` on the executor under `share`.
    pub fn spawn<F>(&self, share: &Share, call: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(share.run(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wasm::Cpu;

    use std::task::Poll;
    use std::time::{Duration, Instant};

    /// A stand-in for a CPU-bound call: `ticks` stretches of 1 ms of spinning, yielding after
    /// each, as a guest does at every epoch tick.
    async fn spin(ticks: u32) {
        for _ in 0..ticks {
            let until = Instant::now() + Duration::from_millis(1);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    Poll::Ready(())
                } else {
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Two shares with as many calls each, weights 3 and 1, every call CPU-bound: the runtime
    /// alone would share its threads call by call, half each; the executor gives the heavier
    /// share about three quarters. Asserted on the executor's own measure of each share's run
    /// time, as a share of the whole (no duration is asserted): above 0.66 for the heavy one,
    /// which gets 0.74-0.75 here; shared call by call (admission turned off) it got 0.59.
    #[test]
    fn shares_get_the_threads_by_weight() -> Result<(), String> {
        let executor = Executor::global()?;
        let (heavy, light) = (Share::new(Cpu::weighted(3)), Share::new(Cpu::weighted(1)));
        let until = Instant::now() + Duration::from_secs(2);
        let calls = |share: &Share| {
            (0..4)
                .map(|_| {
                    let share = share.clone();
                    std::thread::spawn(move || {
                        let waiter = tokio::runtime::Builder::new_current_thread().build();
                        let Ok(waiter) = waiter else { return };
                        while Instant::now() < until {
                            let _ = waiter.block_on(executor.spawn(&share, spin(20)));
                        }
                    })
                })
                .collect::<Vec<_>>()
        };
        let threads: Vec<_> = calls(&heavy).into_iter().chain(calls(&light)).collect();
        for thread in threads {
            thread.join().map_err(|_| "a caller panicked".to_owned())?;
        }
        let (h, l) = (heavy.run_time(), light.run_time());
        let share = h.as_secs_f64() / (h + l).as_secs_f64();
        eprintln!("weight 3: {h:?}, weight 1: {l:?}, share {share:.2}");
        assert!(
            share > 0.66,
            "weight 3 ran {h:?}, weight 1 {l:?}: {share:.2}"
        );
        Ok(())
    }
}
