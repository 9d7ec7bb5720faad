//! What a plugin made of one record — outcome, reason, emits — as `--json` writes it and
//! `--expect` compares it. No timings: they are noise, and a golden file must not change with
//! the machine.

use serde_json::{Map, Value, json};

use super::records::{bytes_value, headers_value};
use crate::wasm::{CallError, Outcome, OutputRecord};

/// The outcome of one record, in `burrow test`'s words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Commit {
        emits: Vec<OutputRecord>,
    },
    Retry {
        delay_ms: Option<u64>,
    },
    Fail {
        reason: String,
    },
    /// The call failed: `kind` is `trap`, `timeout`, `memory`, `fuel` or `instantiate`.
    Error {
        kind: &'static str,
        reason: String,
    },
}

impl Verdict {
    /// Every outcome name, in the order summaries list them.
    pub const RANK: [&'static str; 8] = [
        "commit",
        "retry",
        "fail",
        "trap",
        "timeout",
        "memory",
        "fuel",
        "instantiate",
    ];

    /// A committing record whose emits `refused` (the tenant's `output_topics`) turns into the
    /// failure `burrow run` would make of it.
    pub fn of_outcome(outcome: Outcome, emits: Vec<OutputRecord>, refused: Option<String>) -> Self {
        match outcome {
            Outcome::Commit => match refused {
                Some(reason) => Self::Fail { reason },
                None => Self::Commit { emits },
            },
            Outcome::Retry(delay_ms) => Self::Retry { delay_ms },
            Outcome::Fail(reason) => Self::Fail { reason },
        }
    }

    pub fn of_error(error: &CallError) -> Self {
        let kind = match error {
            CallError::Trap { .. } => "trap",
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryExceeded { .. } => "memory",
            CallError::FuelExhausted { .. } => "fuel",
            CallError::Instantiate(_) => "instantiate",
            CallError::Frame(_) => "frame",
        };
        Self::Error {
            kind,
            reason: error.to_string(),
        }
    }

    /// How `other` (a candidate's verdict on the same record) differs from this one, if it
    /// does: `outcome`, else what the outcome carries (`emits`, `retry delay`, `reason`).
    pub fn difference(&self, other: &Verdict) -> Option<&'static str> {
        if self == other {
            return None;
        }
        if self.name() != other.name() {
            return Some("outcome");
        }
        Some(match self {
            Self::Commit { .. } => "emits",
            Self::Retry { .. } => "retry delay",
            Self::Fail { .. } | Self::Error { .. } => "reason",
        })
    }

    /// `commit`, `retry`, `fail`, or the kind of call error.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Commit { .. } => "commit",
            Self::Retry { .. } => "retry",
            Self::Fail { .. } => "fail",
            Self::Error { kind, .. } => kind,
        }
    }

    /// The line `--json` prints for the record on input line `line`.
    pub fn to_json(&self, line: usize, offset: i64) -> Value {
        let mut object = Map::new();
        object.insert("line".into(), json!(line));
        object.insert("offset".into(), json!(offset));
        object.insert("outcome".into(), json!(self.name()));
        match self {
            Self::Commit { emits } => {
                object.insert("emits".into(), emits.iter().map(emit_json).collect());
            }
            Self::Retry { delay_ms } => {
                object.insert("delay_ms".into(), json!(delay_ms));
            }
            Self::Fail { reason } | Self::Error { reason, .. } => {
                object.insert("reason".into(), json!(reason));
            }
        }
        Value::Object(object)
    }
}

/// An emitted record as `--json` writes it.
pub fn emit_json(record: &OutputRecord) -> Value {
    json!({
        "topic": record.topic,
        "key": record.key.as_deref().map(bytes_value),
        "value": bytes_value(&record.value),
        "headers": headers_value(&record.headers),
    })
}

/// The line `--json` prints for an input line that could not be read.
pub fn bad_line_json(line: usize, error: &str) -> Value {
    json!({ "line": line, "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::Header;

    #[test]
    fn a_commit_lists_its_emits_and_a_refused_one_fails() {
        let record = OutputRecord {
            topic: "valid".into(),
            key: Some(b"k".to_vec()),
            value: vec![0xff],
            headers: vec![Header {
                name: "h".into(),
                value: b"1".to_vec(),
            }],
        };
        let commit = Verdict::of_outcome(Outcome::Commit, vec![record.clone()], None);
        assert_eq!(
            commit.to_json(3, 2).to_string(),
            r#"{"emits":[{"headers":[["h","1"]],"key":"k","topic":"valid","value":{"base64":"/w=="}}],"line":3,"offset":2,"outcome":"commit"}"#
        );
        let refused =
            Verdict::of_outcome(Outcome::Commit, vec![record], Some("not allowed".into()));
        assert_eq!(
            refused,
            Verdict::Fail {
                reason: "not allowed".into()
            }
        );
    }

    #[test]
    fn differences_are_named_by_what_differs() {
        let commit = |topic: &str| {
            Verdict::of_outcome(
                Outcome::Commit,
                vec![OutputRecord {
                    topic: topic.into(),
                    key: None,
                    value: b"v".to_vec(),
                    headers: Vec::new(),
                }],
                None,
            )
        };
        let fail = |reason: &str| Verdict::Fail {
            reason: reason.into(),
        };
        assert_eq!(commit("a").difference(&commit("a")), None);
        assert_eq!(commit("a").difference(&commit("b")), Some("emits"));
        assert_eq!(commit("a").difference(&fail("x")), Some("outcome"));
        assert_eq!(fail("x").difference(&fail("y")), Some("reason"));
        let retry = |delay_ms| Verdict::Retry { delay_ms };
        assert_eq!(retry(None).difference(&retry(Some(5))), Some("retry delay"));
    }

    #[test]
    fn call_errors_are_named_by_kind() {
        let timeout = Verdict::of_error(&CallError::Timeout {
            limit: std::time::Duration::from_millis(100),
        });
        assert_eq!(timeout.name(), "timeout");
        assert_eq!(
            timeout.to_json(1, 0)["reason"],
            "plugin ran past its deadline of 100ms"
        );
        let retry = Verdict::of_outcome(Outcome::Retry(Some(250)), Vec::new(), None);
        assert_eq!(retry.to_json(1, 0)["delay_ms"], 250);
    }
}
