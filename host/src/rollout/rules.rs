//! A canary's rules, from `[tenant.rollout]`. Until the candidate has taken `min_messages`
//! nothing is judged (a rate over a handful of messages says nothing). Then the first
//! `rollback_if` margin the candidate breaks rolls it back; with none broken, `promote_after`
//! promotes it. Rollback is judged first: a candidate that breaks a rule is never promoted.
//!
//! Every figure is over everything both versions did since the canary started: the rates of
//! [`Tally`], and the p99 over each version's latest calls.

use std::time::Duration;

use crate::config::{PromoteAfter, RollbackIf, RolloutConfig};
use crate::tenant::{Decision, Rules, Tally};

/// `min_messages` when the config does not say.
pub const DEFAULT_MIN_MESSAGES: u64 = 100;

/// The rules of one canary, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRules {
    promote_after: Option<PromoteAfter>,
    min_messages: u64,
    rollback_if: RollbackIf,
}

impl From<&RolloutConfig> for ConfigRules {
    fn from(rollout: &RolloutConfig) -> Self {
        Self {
            promote_after: rollout.promote_after,
            min_messages: rollout.min_messages.unwrap_or(DEFAULT_MIN_MESSAGES),
            rollback_if: rollout.rollback_if.clone().unwrap_or_default(),
        }
    }
}

impl Rules for ConfigRules {
    fn judge(&self, live: &Tally, candidate: &Tally, running_for: Duration) -> Decision {
        if candidate.messages < self.min_messages {
            return Decision::Hold;
        }
        if let Some(broken) = self.broken(live, candidate) {
            return broken;
        }
        let why = match self.promote_after {
            Some(PromoteAfter::Elapsed(after)) if running_for >= after => {
                format!(
                    "{} without a broken rule",
                    humantime::format_duration(after)
                )
            }
            Some(PromoteAfter::Messages(after)) if candidate.messages >= after => {
                format!("{after} messages without a broken rule")
            }
            _ => return Decision::Hold,
        };
        Decision::Promote {
            rule: "promote_after",
            why: format!("{why} ({} messages on the candidate)", candidate.messages),
        }
    }
}

impl ConfigRules {
    /// The first margin the candidate breaks, as a rollback that says why.
    fn broken(&self, live: &Tally, candidate: &Tally) -> Option<Decision> {
        let rates = [
            (
                "failure_rate",
                "permanent-failure rate",
                self.rollback_if.failure_rate,
                Tally::failure_rate as fn(&Tally) -> f64,
            ),
            (
                "trap_rate",
                "trap rate",
                self.rollback_if.trap_rate,
                Tally::trap_rate,
            ),
        ];
        for (rule, what, margin, rate) in rates {
            let Some(margin) = margin else { continue };
            let (theirs, ours) = (rate(candidate), rate(live));
            if theirs > ours + margin {
                return Some(Decision::RollBack {
                    rule,
                    why: format!(
                        "the candidate's {what} {:.2}% is above the live version's {:.2}% by more than {:.2} points",
                        theirs * 100.0,
                        ours * 100.0,
                        margin * 100.0
                    ),
                });
            }
        }
        let (Some(margin), Some(theirs)) = (self.rollback_if.p99, candidate.p99) else {
            return None;
        };
        let ours = live.p99.unwrap_or_default();
        (theirs > ours + margin).then(|| Decision::RollBack {
            rule: "p99",
            why: format!(
                "the candidate's p99 {theirs:.1?} is above the live version's {ours:.1?} by more than {margin:?}"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(promote_after: Option<PromoteAfter>, rollback_if: RollbackIf) -> ConfigRules {
        ConfigRules {
            promote_after,
            min_messages: 100,
            rollback_if,
        }
    }

    fn tally(messages: u64, failed: u64, failed_calls: u64, p99_ms: u64) -> Tally {
        Tally {
            messages,
            calls: messages + failed_calls,
            failed,
            failed_calls,
            p99: Some(Duration::from_millis(p99_ms)),
        }
    }

    fn rule_of(decision: &Decision) -> Option<&'static str> {
        match decision {
            Decision::Hold => None,
            Decision::Promote { rule, .. } | Decision::RollBack { rule, .. } => Some(rule),
        }
    }

    const STRICT: RollbackIf = RollbackIf {
        failure_rate: Some(0.01),
        trap_rate: Some(0.05),
        p99: Some(Duration::from_millis(20)),
    };

    /// Below `min_messages` nothing is judged, however bad the candidate looks.
    #[test]
    fn nothing_is_judged_before_min_messages() {
        let rules = rules(Some(PromoteAfter::Messages(1)), STRICT);
        let live = tally(1000, 0, 0, 1);
        let trapping = tally(99, 99, 99, 1);
        assert_eq!(
            rules.judge(&live, &trapping, Duration::from_secs(60)),
            Decision::Hold
        );
    }

    /// Each margin, broken alone, rolls back and names its rule; the why gives both figures.
    #[test]
    fn each_broken_margin_rolls_back_naming_its_rule() {
        let rules = rules(None, STRICT);
        let live = tally(1000, 10, 10, 5);
        let within = tally(1000, 19, 50, 24);
        assert_eq!(rules.judge(&live, &within, Duration::ZERO), Decision::Hold);
        for (candidate, rule) in [
            (tally(1000, 21, 0, 5), "failure_rate"),
            (tally(1000, 0, 70, 5), "trap_rate"),
            (tally(1000, 0, 0, 26), "p99"),
        ] {
            let decision = rules.judge(&live, &candidate, Duration::ZERO);
            assert_eq!(rule_of(&decision), Some(rule), "{decision:?}");
            assert!(
                matches!(decision, Decision::RollBack { .. }),
                "{decision:?}"
            );
        }
        let Decision::RollBack { why, .. } =
            rules.judge(&live, &tally(1000, 30, 0, 5), Duration::ZERO)
        else {
            panic!("a rollback");
        };
        assert!(why.contains("3.00%") && why.contains("1.00%"), "{why}");
    }

    /// `promote_after` as a count or a duration promotes when reached, never when a margin
    /// is broken.
    #[test]
    fn promotion_waits_for_its_mark_and_never_overrides_a_rollback() {
        let live = tally(1000, 0, 0, 5);
        let good = tally(500, 0, 0, 5);
        let count = rules(Some(PromoteAfter::Messages(500)), STRICT);
        assert_eq!(
            rule_of(&count.judge(&live, &good, Duration::ZERO)),
            Some("promote_after")
        );
        assert_eq!(
            count.judge(&live, &tally(499, 0, 0, 5), Duration::ZERO),
            Decision::Hold
        );
        let elapsed = rules(
            Some(PromoteAfter::Elapsed(Duration::from_secs(600))),
            STRICT,
        );
        assert_eq!(
            elapsed.judge(&live, &good, Duration::from_secs(599)),
            Decision::Hold
        );
        assert!(matches!(
            elapsed.judge(&live, &good, Duration::from_secs(600)),
            Decision::Promote { .. }
        ));
        let failing = tally(500, 50, 0, 5);
        assert_eq!(
            rule_of(&count.judge(&live, &failing, Duration::ZERO)),
            Some("failure_rate")
        );
        // Without promote_after, only an operator promotes.
        assert_eq!(
            rules(None, STRICT).judge(&live, &good, Duration::from_secs(86_400)),
            Decision::Hold
        );
    }
}
