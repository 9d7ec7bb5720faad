//! The pool against broker data any producer can send: it processes and commits it, never
//! panics on it.

use crate::support;

use std::sync::{Arc, Mutex};

use burrow_e2e::kafka::{self, Out};
use burrow_pool::{Header, Message, Pool, ProcessError};
use support::*;
use tokio_util::sync::CancellationToken;

/// The headers each processed record carried, by offset.
type Seen = Arc<Mutex<Vec<(i64, Vec<Header>)>>>;

/// A record whose header name is not UTF-8 is processed (the name decoded lossily, its value
/// intact) and committed, and the records after it too: the poll thread does not die on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_processed_and_committed() {
    let cluster = Cluster::new(1, 1);
    let records = [
        Out::value("first")
            .partition(0)
            .raw_header(b"bad-\xff\xfe-name", b"v"),
        Out::value("second").partition(0),
    ];
    kafka::produce(&cluster.broker, TOPIC, &records).expect("produce");

    let group = unique_group("bad-header");
    let pool = Pool::new(cluster.consumer(&group), test_config()).expect("pool");
    let seen: Seen = Arc::default();
    let process = {
        let seen = Arc::clone(&seen);
        move |m: Arc<Message>| {
            seen.lock()
                .expect("lock")
                .push((m.offset, m.headers.clone()));
            async { Ok::<_, ProcessError>(()) }
        }
    };
    let stop = CancellationToken::new();
    let (result, ()) = guarded(async {
        tokio::join!(pool.run(stop.clone().cancelled_owned(), process), async {
            until_stats(
                "both records processed and committed",
                || pool.stats(),
                |s| s.messages_processed == 2 && stats_committed(s, 0) == Some(2),
            )
            .await;
            stop.cancel();
        })
    })
    .await;
    result.expect("a clean run, not a halt");
    assert_eq!(
        cluster.committed(&group).get(&0).copied(),
        Some(2),
        "committed past both"
    );
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort_by_key(|(offset, _)| *offset);
    assert_eq!(
        seen[0].1,
        [Header {
            key: "bad-\u{fffd}\u{fffd}-name".into(),
            value: Some(b"v".to_vec()),
        }],
        "the name decoded lossily, the value as sent"
    );
    assert!(seen[1].1.is_empty());
}
