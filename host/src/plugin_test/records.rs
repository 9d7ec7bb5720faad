//! The records `burrow test` reads, and how bytes are written back: one JSON object per line.
//!
//! ```text
//! {"key": "k1", "value": {"id": 1}, "headers": {"trace": "abc"}}
//! {"value": "not json", "partition": 2, "offset": 17}
//! {"value": {"base64": "/wA="}, "headers": [["h", "1"], ["h", "2"]]}
//! ```
//!
//! Bytes (`key`, `value`, header values) are a string (its UTF-8 bytes), `{"base64": "…"}` (raw
//! bytes), or any other JSON (its compact text), so a JSON payload is written as itself.
//! `headers` is an object, or a list of `[name, value]` pairs when a name repeats. `topic`,
//! `partition`, `offset`, `timestamp` (ms since the epoch) and `attempt` are optional.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::wasm::{Header, Message};

/// What a record line may leave out.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The topic of a record without one.
    pub topic: String,
}

/// One line of the input file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    headers: Value,
    timestamp: Option<i64>,
    attempt: Option<u32>,
}

/// Parses one input line into the message the plugin sees. `index` (from 0) is the offset of a
/// record that does not give one. The error says what is wrong with the line.
pub fn parse(text: &str, index: usize, defaults: &Defaults) -> Result<Message, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let key = match &line.key {
        Value::Null => None,
        key => Some(bytes_of(key).map_err(|e| format!("key: {e}"))?),
    };
    let value = match &line.value {
        Value::Null => Vec::new(),
        value => bytes_of(value).map_err(|e| format!("value: {e}"))?,
    };
    Ok(Message {
        topic: line.topic.unwrap_or_else(|| defaults.topic.clone()),
        partition: line.partition.unwrap_or(0),
        offset: line.offset.unwrap_or(index as i64),
        key,
        value,
        headers: headers_of(&line.headers)?,
        timestamp: line.timestamp,
        attempt: match line.attempt {
            Some(0) => return Err("attempt: counts from 1".into()),
            attempt => attempt.unwrap_or(1),
        },
    })
}

/// The bytes a JSON value stands for (see the module docs).
fn bytes_of(value: &Value) -> Result<Vec<u8>, String> {
    match value {
        Value::String(text) => Ok(text.as_bytes().to_vec()),
        Value::Object(map) if map.len() == 1 && map.contains_key("base64") => {
            match &map["base64"] {
                Value::String(encoded) => BASE64
                    .decode(encoded)
                    .map_err(|e| format!("bad base64: {e}")),
                _ => Err("base64 must be a string".into()),
            }
        }
        other => Ok(other.to_string().into_bytes()),
    }
}

fn headers_of(value: &Value) -> Result<Vec<Header>, String> {
    let header = |name: &str, value: &Value| {
        Ok(Header {
            name: name.to_owned(),
            value: bytes_of(value).map_err(|e| format!("header {name:?}: {e}"))?,
        })
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .iter()
            .map(|(name, value)| header(name, value))
            .collect(),
        Value::Array(pairs) => pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(name), value]) => header(name, value),
                _ => Err(format!(
                    "headers: expected [name, value] pairs, found {pair}"
                )),
            })
            .collect(),
        other => Err(format!(
            "headers: expected an object or [name, value] pairs, found {other}"
        )),
    }
}

/// Bytes as a record file writes them: a string if they are UTF-8, else `{"base64": "…"}`.
pub fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => {
            let mut map = Map::new();
            map.insert("base64".into(), Value::String(BASE64.encode(bytes)));
            Value::Object(map)
        }
    }
}

/// Headers as `[name, value]` pairs: order and repeated names kept.
pub fn headers_value(headers: &[Header]) -> Value {
    headers
        .iter()
        .map(|h| Value::Array(vec![Value::String(h.name.clone()), bytes_value(&h.value)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            topic: "orders".into(),
        }
    }

    #[test]
    fn a_bare_value_gets_the_defaults() {
        let msg = parse(r#"{"value": "hello"}"#, 7, &defaults()).expect("should succeed");
        assert_eq!(msg.topic, "orders");
        assert_eq!((msg.partition, msg.offset, msg.attempt), (0, 7, 1));
        assert_eq!(msg.value, b"hello");
        assert_eq!(msg.key, None);
        assert!(msg.headers.is_empty());
    }

    #[test]
    fn json_values_are_their_compact_text_and_base64_is_raw() {
        let msg = parse(
            r#"{"key": {"base64": "/wA="}, "value": {"id": 1, "tags": ["a"]}, "timestamp": 5}"#,
            0,
            &defaults(),
        )
        .expect("should succeed");
        assert_eq!(msg.key.as_deref(), Some(&[0xff, 0x00][..]));
        assert_eq!(msg.value, br#"{"id":1,"tags":["a"]}"#);
        assert_eq!(msg.timestamp, Some(5));
    }

    #[test]
    fn headers_as_an_object_or_as_pairs() {
        let object =
            parse(r#"{"headers": {"a": "1", "b": 2}}"#, 0, &defaults()).expect("should succeed");
        assert_eq!(
            object.headers,
            [
                Header {
                    name: "a".into(),
                    value: b"1".to_vec()
                },
                Header {
                    name: "b".into(),
                    value: b"2".to_vec()
                }
            ]
        );
        let pairs = parse(r#"{"headers": [["h", "1"], ["h", "2"]]}"#, 0, &defaults())
            .expect("should succeed");
        assert_eq!(pairs.headers.len(), 2);
        assert_eq!(
            headers_value(&pairs.headers).to_string(),
            r#"[["h","1"],["h","2"]]"#
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |text: &str| parse(text, 0, &defaults()).expect_err("should fail");
        assert!(
            err("{not json").contains("key must be a string"),
            "{}",
            err("{not json")
        );
        assert!(err(r#"{"valu": "x"}"#).contains("unknown field `valu`"));
        assert_eq!(
            err(r#"{"value": {"base64": "!!"}}"#),
            "value: bad base64: Invalid symbol 33, offset 0."
        );
        assert!(
            err(r#"{"headers": [["h"]]}"#).starts_with("headers: expected [name, value] pairs")
        );
        assert_eq!(err(r#"{"attempt": 0}"#), "attempt: counts from 1");
    }

    #[test]
    fn bytes_round_trip_through_their_written_form() {
        for bytes in [&b"plain"[..], &[0xff, 0x00, 0x10][..], b""] {
            let written = bytes_value(bytes);
            assert_eq!(
                bytes_of(&written).expect("should succeed"),
                bytes,
                "{written}"
            );
        }
    }
}
