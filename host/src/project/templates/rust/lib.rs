//! {{name}}: a Burrow plugin. `process` runs once per message (and again on each retry); what
//! it returns decides the message's offset: `Ok` commits, an `Error` fails or retries it.
use burrow_plugin::{Error, Message, Record};

fn process(msg: &Message) -> Result<(), Error> {
    let text = msg.value_str()?; // not UTF-8: the message fails, with the reason
    if text.is_empty() {
        return Err(Error::fail("empty value"));
    }
    // Emits are produced only if the message commits, before its offset is marked done.
    if let Some(topic) = burrow_plugin::config("output-topic") {
        let value = text.to_uppercase().into_bytes();
        burrow_plugin::emit(Record { value, ..Record::forward(topic, msg) }); // key, headers kept
    }
    Ok(())
}
burrow_plugin::export!(process);

#[cfg(test)]
mod tests {
    use burrow_plugin::{IntoOutcome, Message, Outcome, Record, testing};

    #[test]
    fn a_text_value_commits_and_is_emitted_in_capitals() {
        testing::reset();
        testing::set_config("output-topic", "shouted");
        let msg = Message::new("in", "hello").with_key("k1");
        assert_eq!(super::process(&msg).into_outcome(), Outcome::Commit);
        assert_eq!(
            testing::take_emitted(),
            vec![Record::new("shouted", "HELLO").with_key("k1")]
        );
    }

    #[test]
    fn an_empty_value_fails() {
        testing::reset();
        let outcome = super::process(&Message::new("in", "")).into_outcome();
        assert_eq!(outcome, Outcome::fail("empty value"));
    }
}
