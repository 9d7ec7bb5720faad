//! The frame's layout, written and read back; the golden frame the Python SDK's tests read; and
//! malformed frames refused, never read out of bounds.

use burrow_frame::{ENTRY_LEN, Fields, Frame, FrameError, PREFIX_LEN, Writer};
use proptest::prelude::*;

/// A message as plain owned data, to write and compare with what is read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
    attempt: u32,
}

fn write(messages: &[Owned]) -> Result<Vec<u8>, FrameError> {
    let data = messages.iter().map(|m| m.value.len() + 64).sum();
    let mut writer = Writer::new(messages.len(), data);
    for m in messages {
        let fields = Fields {
            topic: &m.topic,
            partition: m.partition,
            offset: m.offset,
            key: m.key.as_deref(),
            value: &m.value,
            timestamp: m.timestamp,
            attempt: m.attempt,
        };
        writer.push(
            &fields,
            m.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        )?;
    }
    writer.finish()
}

fn read(frame: &[u8]) -> Result<Vec<Owned>, FrameError> {
    let frame = Frame::parse(frame)?;
    frame
        .entries()
        .map(|entry| {
            let e = entry?;
            let f = e.fields;
            Ok(Owned {
                topic: f.topic.into(),
                partition: f.partition,
                offset: f.offset,
                key: f.key.map(<[u8]>::to_vec),
                value: f.value.to_vec(),
                headers: e
                    .headers
                    .iter()
                    .map(|h| h.map(|(n, v)| (n.to_owned(), v.to_vec())))
                    .collect::<Result<_, _>>()?,
                timestamp: f.timestamp,
                attempt: f.attempt,
            })
        })
        .collect()
}

/// The messages of the golden frame: every field set and unset, two topics, an empty key
/// beside no key, repeated and empty headers.
fn golden_messages() -> Vec<Owned> {
    vec![
        Owned {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            key: Some(b"k1".to_vec()),
            value: b"{\"id\":1}".to_vec(),
            headers: vec![
                ("trace".into(), b"abc".to_vec()),
                ("trace".into(), b"def".to_vec()),
                ("empty".into(), Vec::new()),
            ],
            timestamp: Some(1_700_000_000_123),
            attempt: 1,
        },
        Owned {
            topic: "orders".into(),
            partition: 3,
            offset: 43,
            key: None,
            value: Vec::new(),
            headers: Vec::new(),
            timestamp: None,
            attempt: 2,
        },
        Owned {
            topic: "payments-é".into(),
            partition: -1,
            offset: i64::MAX,
            key: Some(Vec::new()),
            value: vec![0, 159, 146, 150, 255],
            headers: vec![("bin".into(), vec![0xff, 0x00])],
            timestamp: Some(-5),
            attempt: u32::MAX,
        },
    ]
}

/// The Python SDK's tests read this file (`plugin-sdk/python/tests/test_sdk.py`): the two
/// readers of one layout agree because both are held to the bytes the writer makes.
#[test]
fn the_writer_makes_the_golden_frame() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden.frame");
    let frame = write(&golden_messages()).expect("writes");
    if std::env::var_os("BURROW_BLESS").is_some() {
        std::fs::write(&path, &frame).expect("blessed");
    }
    let golden = std::fs::read(&path).expect("tests/golden.frame (BURROW_BLESS=1 writes it)");
    assert_eq!(frame, golden, "the layout changed: a contract change");
    assert_eq!(read(&golden).expect("reads"), golden_messages());
}

#[test]
fn one_topic_is_written_once() {
    let messages = golden_messages();
    let frame = write(&messages[..2]).expect("writes");
    let orders = frame.windows(6).filter(|w| *w == b"orders").count();
    assert_eq!(orders, 1, "both messages point at one copy of the topic");
}

#[test]
fn an_empty_frame_has_no_message() {
    let frame = write(&[]).expect("writes");
    assert_eq!(frame, 0u32.to_le_bytes());
    assert!(Frame::parse(&frame).expect("parses").is_empty());
}

#[test]
fn a_writer_refuses_more_or_fewer_messages_than_it_was_made_for() {
    let messages = golden_messages();
    let short = Writer::new(2, 0);
    assert_eq!(
        short.finish(),
        Err(FrameError::Count {
            expected: 2,
            written: 0
        })
    );
    let mut full = Writer::new(0, 0);
    let m = &messages[1];
    let fields = Fields {
        topic: &m.topic,
        partition: 0,
        offset: 0,
        key: None,
        value: &[],
        timestamp: None,
        attempt: 1,
    };
    assert!(full.push(&fields, std::iter::empty()).is_err());
}

#[test]
fn a_frame_whose_index_does_not_fit_is_refused() {
    let mut frame = write(&golden_messages()).expect("writes");
    frame[0..4].copy_from_slice(&1_000u32.to_le_bytes());
    assert!(Frame::parse(&frame).is_err());
    assert!(Frame::parse(&[1, 0]).is_err());
    assert!(Frame::parse(&u32::MAX.to_le_bytes()).is_err());
}

#[test]
fn a_span_outside_the_frame_is_refused_where_it_is_read() {
    let mut frame = write(&golden_messages()).expect("writes");
    // Message 1's value span: start at the frame's end, length 1.
    let at = PREFIX_LEN + ENTRY_LEN + 44;
    let end = u32::try_from(frame.len()).expect("small");
    frame[at..at + 4].copy_from_slice(&end.to_le_bytes());
    frame[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
    let parsed = Frame::parse(&frame).expect("the index fits");
    assert!(parsed.get(0).is_ok(), "the other messages still read");
    assert_eq!(
        parsed.get(1).err(),
        Some(FrameError::OutOfBounds {
            what: "value",
            message: 1
        })
    );
    assert!(parsed.get(3).is_err(), "past the count");
}

#[test]
fn a_topic_that_is_not_utf8_is_refused() {
    let mut frame = write(&golden_messages()[1..2]).expect("writes");
    let start = PREFIX_LEN + ENTRY_LEN;
    frame[start] = 0xff;
    let parsed = Frame::parse(&frame).expect("the index fits");
    assert_eq!(
        parsed.get(0).err(),
        Some(FrameError::NotUtf8 {
            what: "topic",
            message: 0
        })
    );
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        prop_oneof!["[a-z]{1,8}", "[a-zé.-]{0,20}"],
        any::<i32>(),
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(
            ("\\PC{0,10}", proptest::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
        proptest::option::of(any::<i64>()),
        any::<u32>(),
    )
        .prop_map(
            |(topic, partition, offset, key, value, headers, timestamp, attempt)| Owned {
                topic,
                partition,
                offset,
                key,
                value,
                headers,
                timestamp,
                attempt,
            },
        )
}

proptest! {
    /// Whatever is written reads back the same, message by message.
    #[test]
    fn what_is_written_reads_back(messages in proptest::collection::vec(owned(), 0..20)) {
        let frame = write(&messages).expect("writes");
        prop_assert_eq!(read(&frame).expect("reads"), messages);
    }

    /// Any bytes at all are read without a panic: an error or messages, never out of bounds.
    #[test]
    fn any_bytes_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(frame) = Frame::parse(&bytes) {
            for entry in frame.entries().flatten() {
                for header in entry.headers.iter() {
                    let _ = header;
                }
            }
        }
    }
}
