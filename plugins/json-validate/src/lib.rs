//! Commits a message whose value is a JSON object and forwards it (key and headers kept) to the
//! topic named by the `output-topic` setting; without that setting it only commits. Anything
//! else fails, with a reason saying what was wrong.
use std::fmt;

use burrow_plugin::{Error, Message, Record};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

fn process(msg: &Message) -> Result<(), Error> {
    let text = msg
        .value_str()
        .map_err(|e| Error::fail(format!("value is not UTF-8: {e}")))?;
    let kind: Kind = serde_json::from_str(text)
        .map_err(|e| Error::fail(format!("value is not valid JSON: {e}")))?;
    if kind != Kind::Object {
        return Err(Error::fail(format!("expected a JSON object, found {kind}")));
    }
    // Read per message, not cached: the setting belongs to the tenant, not to the instance.
    if let Some(topic) = burrow_plugin::config("output-topic") {
        burrow_plugin::emit(Record::forward(topic, msg));
    }
    Ok(())
}
burrow_plugin::export!(process);

/// The kind of a JSON document's top-level value.
///
/// Deserializing into this validates the whole document (syntax, trailing characters) while
/// skipping over its contents, so a valid object costs no allocation for its tree — this plugin
/// is a benchmark subject, and a `serde_json::Value` would be most of its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

/// Names the top-level value and skips everything inside it.
struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind::Array)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::String)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
}

#[cfg(test)]
mod tests {
    use burrow_plugin::{IntoOutcome, Message, Outcome, Record, testing};

    fn outcome(msg: &Message) -> Outcome {
        super::process(msg).into_outcome()
    }

    fn reason(value: &[u8]) -> String {
        testing::reset();
        match outcome(&Message::new("in", value)) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected fail, got {other:?}"),
        }
    }

    #[test]
    fn an_object_is_forwarded_with_key_and_headers() {
        testing::reset();
        testing::set_config("output-topic", "valid");
        let msg = Message::new("in", r#"{"a": [1, {"b": null}]}"#)
            .with_key("k")
            .with_header("h", "1");
        assert_eq!(outcome(&msg), Outcome::Commit);
        assert_eq!(
            testing::take_emitted(),
            vec![Record::forward("valid", &msg)]
        );
    }

    #[test]
    fn without_output_topic_an_object_commits_and_emits_nothing() {
        testing::reset();
        assert_eq!(outcome(&Message::new("in", "{}")), Outcome::Commit);
        assert!(testing::take_emitted().is_empty());
    }

    #[test]
    fn invalid_json_fails_with_line_and_column() {
        assert_eq!(
            reason(b"{\n  \"a\": }"),
            "value is not valid JSON: expected value at line 2 column 8"
        );
    }

    #[test]
    fn trailing_garbage_fails() {
        assert!(reason(b"{} x").contains("trailing characters at line 1 column 4"));
    }

    #[test]
    fn non_utf8_fails() {
        assert!(reason(&[b'{', 0xff, b'}']).starts_with("value is not UTF-8: invalid utf-8"));
    }

    #[test]
    fn non_objects_fail_naming_what_was_found() {
        let cases: [(&[u8], &str); 6] = [
            (b"[1, 2]", "an array"),
            (b"\"s\"", "a string"),
            (b"-1.5e3", "a number"),
            (b"true", "a boolean"),
            (b"null", "null"),
            (b"18446744073709551615", "a number"),
        ];
        for (value, found) in cases {
            assert_eq!(
                reason(value),
                format!("expected a JSON object, found {found}")
            );
        }
    }

    #[test]
    fn an_empty_value_is_not_json() {
        assert_eq!(
            reason(b""),
            "value is not valid JSON: EOF while parsing a value at line 1 column 0"
        );
    }

    #[test]
    fn a_failed_message_emits_nothing() {
        testing::reset();
        testing::set_config("output-topic", "valid");
        assert!(matches!(
            outcome(&Message::new("in", "[]")),
            Outcome::Fail(_)
        ));
        assert!(testing::take_emitted().is_empty());
    }
}
