//! A tenant's start, watched and bounded: what it waits for, for how long, and until when.
//!
//! Between its start and its first assignment a tenant waits on the broker, once or twice. An
//! exactly-once tenant's transactional producer is initialised first: the broker completes or
//! aborts what an earlier holder of its `transactional.id` left open, and fences it. Then its
//! consumer joins its group: the coordinator waits for the other members to rejoin (up to their
//! `max.poll.interval.ms`), or for a crashed one's session to expire, then for the leader's
//! assignment. Either wait can take long, and a broker can make one last for ever: Tansu 0.6.0
//! completes a join with the group's earlier members in it whether they rejoined or not, and
//! keeps one that has since left as the leader of every generation after; no assignment ever
//! comes, the joining member's `SyncGroup` fails "rebalance in progress" at every try, and
//! nothing is logged above DEBUG (issue 18, finding 9).
//!
//! So each wait is a [`Phase`] that `/readyz`, `/stats` and the log name, with how long it has
//! lasted: a WARN line after [`WARN_AFTER`] and every [`WARN_EVERY`] after, saying what to check.
//! Past the tenant's `start_timeout` the wait ends in a [`StartTimedOut`], which halts the
//! tenant with the same words. The first assignment ends the start, even an empty one (a group
//! with more members than partitions).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The first WARN line about a start still waiting comes after this long: a healthy join takes
/// a few seconds (a broker delays a new group's first rebalance by 3 s).
pub const WARN_AFTER: Duration = Duration::from_secs(10);
/// ...and the next ones this often.
pub const WARN_EVERY: Duration = Duration::from_secs(30);
/// How often the watch looks at the tenant.
const TICK: Duration = Duration::from_millis(250);

/// What a starting tenant waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Its transactional producer's initialisation (`init_transactions`) for `id`.
    Transactions { id: String },
    /// Its consumer's first assignment from `group`.
    Joining { group: String },
    /// It has had its first assignment.
    Started,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Transactions { .. } => "transactions",
            Phase::Joining { .. } => "joining",
            Phase::Started => "started",
        }
    }

    /// What the tenant waits for, as `/readyz` and the log say it.
    fn waiting_for(&self) -> Option<String> {
        match self {
            Phase::Transactions { id } => Some(format!(
                "initialising transactions for transactional.id {id:?}"
            )),
            Phase::Joining { group } => Some(format!(
                "joining consumer group {group:?}: no partition assignment yet"
            )),
            Phase::Started => None,
        }
    }

    /// What an operator should look at when the wait lasts.
    fn check(&self) -> String {
        match self {
            Phase::Transactions { .. } => "the broker's transaction coordinator: it answers once \
                it has aborted what an earlier producer with this transactional.id left open, \
                which needs the leaders of every partition that producer wrote to"
                .to_owned(),
            Phase::Joining { group } => format!(
                "the group's other members and its coordinator \
                 (kafka-consumer-groups.sh --describe --group {group} --members --state): a join \
                 waits for every member to rejoin (one that stopped polling, up to its \
                 max.poll.interval.ms) and for a crashed one's session.timeout.ms, then for the \
                 leader's assignment; a group whose leader left mid-rebalance never completes \
                 on some brokers (Tansu 0.6.0)"
            ),
            Phase::Started => String::new(),
        }
    }
}

/// A tenant's start ran past its `start_timeout`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct StartTimedOut {
    /// What it was waiting for.
    pub phase: Phase,
    /// `start_timeout`.
    pub timeout: Duration,
    /// Why the last try of the phase failed, if it was tried again.
    pub last_error: Option<String>,
}

impl StartTimedOut {
    fn describe(&self) -> String {
        let within = format!(
            "within start_timeout ({})",
            humantime::format_duration(self.timeout)
        );
        let what = match &self.phase {
            Phase::Transactions { id } => {
                format!("did not initialise transactions for transactional.id {id:?} {within}")
            }
            Phase::Joining { group } => format!(
                "did not join consumer group {group:?} {within}: no partition assignment came"
            ),
            Phase::Started => format!("did not start {within}"),
        };
        let last = self
            .last_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (last try: {e})"));
        format!("{what}{last}; check {}", self.phase.check())
    }
}

/// A tenant's start: its phase, since when it waits, and its bound.
#[derive(Debug)]
pub struct Start {
    began: Instant,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Why the last try of this phase failed, when it is being tried again.
    last_error: Option<String>,
    /// How long the start took, once it has.
    took: Option<Duration>,
}

impl Start {
    /// A start beginning now in `phase`, bounded by `timeout`.
    pub fn new(timeout: Duration, phase: Phase) -> Self {
        Self {
            began: Instant::now(),
            timeout,
            state: Mutex::new(State {
                phase,
                last_error: None,
                took: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant now waits for `phase`.
    pub fn enter(&self, phase: Phase) {
        let mut state = self.lock();
        state.phase = phase;
        state.last_error = None;
    }

    /// The last try of the phase failed with `error`, and it is tried again.
    pub fn retried(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    /// What the tenant waits for and for how long, while it starts (`None` once started):
    /// `/readyz`'s reason.
    pub fn waiting(&self) -> Option<String> {
        let state = self.lock();
        let what = state.phase.waiting_for()?;
        let last = state
            .last_error
            .as_ref()
            .map_or(String::new(), |e| format!("; last try: {e}"));
        Some(format!(
            "{what} (waiting {} of start_timeout {}{last})",
            seconds(self.began.elapsed()),
            humantime::format_duration(self.timeout)
        ))
    }

    /// The start for `/stats`.
    pub fn report(&self) -> serde_json::Value {
        let state = self.lock();
        serde_json::json!({
            "phase": state.phase.name(),
            "waiting_for": state.phase.waiting_for(),
            "waited_seconds": state.took.unwrap_or_else(|| self.began.elapsed()).as_secs(),
            "start_timeout_seconds": self.timeout.as_secs(),
            "last_error": state.last_error,
        })
    }

    /// Watches the start of tenant `tenant` until it ends: when `joined` (asked while the
    /// tenant joins its group) gives its first assignment's partition count, or after
    /// `start_timeout` with the error. Logs a WARN line about what it waits for after
    /// [`WARN_AFTER`] and every [`WARN_EVERY`] after.
    pub async fn watch(
        &self,
        tenant: &str,
        joined: impl Fn() -> Option<usize>,
    ) -> Result<(), StartTimedOut> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_warning = WARN_AFTER;
        loop {
            tick.tick().await;
            let waited = self.began.elapsed();
            let mut state = self.lock();
            if let Phase::Joining { group } = &state.phase
                && let Some(partitions) = joined()
            {
                tracing::info!(
                    tenant,
                    group = %group,
                    partitions,
                    took = %seconds(waited),
                    "tenant joined its consumer group"
                );
                state.phase = Phase::Started;
                state.took = Some(waited);
            }
            if state.phase == Phase::Started {
                return Ok(());
            }
            if waited >= self.timeout {
                return Err(StartTimedOut {
                    phase: state.phase.clone(),
                    timeout: self.timeout,
                    last_error: state.last_error.clone(),
                });
            }
            if waited >= next_warning {
                next_warning += WARN_EVERY;
                let last = state
                    .last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (last try: {e})"));
                tracing::warn!(
                    tenant,
                    waiting_for = format!("{}{last}", state.phase.waiting_for().unwrap_or_default()),
                    waited = %seconds(waited),
                    start_timeout = %humantime::format_duration(self.timeout),
                    check = state.phase.check(),
                    "tenant still starting"
                );
            }
        }
    }
}

/// `waited` in whole seconds, as `12s`.
fn seconds(waited: Duration) -> String {
    humantime::format_duration(Duration::from_secs(waited.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn joining() -> Phase {
        Phase::Joining {
            group: "orders".into(),
        }
    }

    /// A join that never comes is named while it lasts (what, how long, the bound), and ends
    /// at `start_timeout` in an error that names the group and what to check.
    #[tokio::test(start_paused = true)]
    async fn a_join_that_never_comes_ends_at_start_timeout_naming_the_group() {
        let start = Start::new(Duration::from_secs(60), joining());
        let watched = start.watch("t", || None);
        tokio::pin!(watched);
        tokio::select! {
            _ = &mut watched => panic!("ended before its bound"),
            () = tokio::time::sleep(Duration::from_secs(12)) => {}
        }
        let waiting = start.waiting().unwrap_or_default();
        assert!(
            waiting.contains("joining consumer group \"orders\"")
                && waiting.contains("waiting 12s of start_timeout 1m"),
            "{waiting}"
        );
        assert_eq!(start.report()["phase"], "joining");

        let error = watched.await.expect_err("times out");
        assert_eq!(error.phase, joining());
        let text = error.to_string();
        assert!(
            text.starts_with("did not join consumer group \"orders\" within start_timeout (1m)")
                && text.contains("--describe --group orders"),
            "{text}"
        );
    }

    /// The first assignment ends the start, even an empty one: nothing is waited for after.
    #[tokio::test(start_paused = true)]
    async fn the_first_assignment_ends_the_start_even_an_empty_one() {
        let start = Start::new(Duration::from_secs(60), joining());
        let asked = AtomicUsize::new(0);
        let joined = || (asked.fetch_add(1, Ordering::Relaxed) >= 8).then_some(0);
        start.watch("t", joined).await.expect("started");
        assert_eq!(start.waiting(), None);
        let report = start.report();
        assert_eq!(report["phase"], "started");
        assert_eq!(report["waited_seconds"], 2);
    }

    /// An initialisation of transactions that lasts is named with its `transactional.id` and
    /// why its last try failed, and times out saying so; a join is not asked for meanwhile.
    #[tokio::test(start_paused = true)]
    async fn transactions_that_never_initialise_end_at_start_timeout_naming_the_id() {
        let id = "burrow-orders-east-1".to_owned();
        let start = Start::new(
            Duration::from_secs(30),
            Phase::Transactions { id: id.clone() },
        );
        start.retried("Transaction error: Local: Timed out".into());
        let waiting = start.waiting().unwrap_or_default();
        assert!(
            waiting.contains(
                "initialising transactions for transactional.id \"burrow-orders-east-1\""
            ) && waiting.contains("last try: Transaction error: Local: Timed out"),
            "{waiting}"
        );
        let error = start.watch("t", || Some(3)).await.expect_err("times out");
        assert_eq!(error.phase, Phase::Transactions { id });
        let text = error.to_string();
        assert!(
            text.starts_with(
                "did not initialise transactions for transactional.id \"burrow-orders-east-1\" \
                 within start_timeout (30s) (last try: Transaction error: Local: Timed out)"
            ) && text.contains("transaction coordinator"),
            "{text}"
        );
    }
}
