//! Passes every message through unchanged: commits it and emits nothing. The benchmark baseline.
use burrow_plugin::{Message, Outcome};

fn process(_msg: &Message) -> Outcome {
    Outcome::Commit
}
burrow_plugin::export!(process);

#[cfg(test)]
mod tests {
    use burrow_plugin::{Message, Outcome};

    #[test]
    fn commits_every_message() {
        assert_eq!(super::process(&Message::new("t", b"v")), Outcome::Commit);
    }
}
