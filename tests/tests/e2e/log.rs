//! The kit's log reader ([`burrow_e2e::log`]) on the real broker: what it computes a
//! `read_committed` reader must see, against what was produced and what a consumer sees.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

use burrow_e2e::broker::Broker;
use burrow_e2e::kafka::{self, CODECS, ID_HEADER, Out, Position, Reader, Record};
use burrow_e2e::{log, unique, wait_for};

const PARTITIONS: i32 = 3;
/// Records of the committed transactions, of the aborted one, of the one left open, and plain
/// ones per codec.
const COMMITTED: u64 = 300;
const ABORTED: u64 = 200;
const OPEN: u64 = 50;
const PLAIN_PER_CODEC: u64 = 20;

/// A transactional producer, its transactions initialised. Threaded: an abort waits for
/// delivery reports that a polling thread serves.
fn transactional(
    broker: &Broker,
    id: &str,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client()
        .set("transactional.id", id)
        .create()
        .context("creating a transactional producer")?;
    producer.init_transactions(Duration::from_secs(30))?;
    Ok(producer)
}

/// Sends records `ids` ([`Out::numbered`]: key, value and id header) in the open transaction,
/// spread over the partitions, and flushes them to the broker.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    ids: Range<u64>,
) -> anyhow::Result<()> {
    for id in ids {
        let out = Out::numbered(id);
        let headers = OwnedHeaders::new().insert(Header {
            key: ID_HEADER,
            value: Some(id.to_string().as_bytes()),
        });
        let partition = i32::try_from(id % PARTITIONS as u64)?;
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(out.key.as_deref().unwrap_or_default())
            .payload(out.value.as_deref().unwrap_or_default())
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

fn ids(records: &[Record]) -> Vec<u64> {
    records.iter().filter_map(Record::id).collect()
}

/// A committed transaction's records and plain ones (every codec) are read; an aborted
/// transaction's, flushed to the broker before the abort, and an open one's are not; the plain
/// records are where their delivery reports put them; a consumer sees the same plus, on Tansu,
/// the aborted records.
#[test]
fn read_committed_keeps_committed_and_plain_records_and_drops_aborted_and_open_ones()
-> anyhow::Result<()> {
    let broker = Broker::shared()?;
    let topic = unique("log");
    kafka::create_topic(broker, &topic, PARTITIONS)?;
    let producer = transactional(broker, &unique("log-tx"))?;
    let plain_ids = |i: u64| {
        let start = COMMITTED + ABORTED + OPEN + i * PLAIN_PER_CODEC;
        start..start + PLAIN_PER_CODEC
    };
    let mut plain: BTreeMap<u64, Position> = BTreeMap::new();
    let mut produce_plain = |i: u64, codec: &str| -> anyhow::Result<()> {
        let records = kafka::numbered(plain_ids(i), None);
        let positions = kafka::produce_with(broker, &topic, &records, codec)?;
        plain.extend(kafka::positions_by_id(&records, &positions));
        Ok(())
    };

    // Plain records around and between the transactions, each codec once.
    let half = COMMITTED / 2;
    produce_plain(0, CODECS[0])?;
    producer.begin_transaction()?;
    send(&producer, &topic, 0..half)?;
    produce_plain(1, CODECS[1])?;
    producer.commit_transaction(Duration::from_secs(30))?;
    producer.begin_transaction()?;
    send(&producer, &topic, COMMITTED..COMMITTED + ABORTED)?;
    produce_plain(2, CODECS[2])?;
    producer.abort_transaction(Duration::from_secs(30))?;
    producer.begin_transaction()?;
    send(&producer, &topic, half..COMMITTED)?;
    producer.commit_transaction(Duration::from_secs(30))?;
    produce_plain(3, CODECS[3])?;
    produce_plain(4, CODECS[4])?;

    let committed: BTreeSet<u64> = (0..COMMITTED).chain(plain.keys().copied()).collect();
    let aborted: BTreeSet<u64> = (COMMITTED..COMMITTED + ABORTED).collect();

    // A consumer, before a transaction is left open (on Tansu an open one holds a
    // `read_committed` consumer back for good).
    let mut consumer = Reader::new(broker, &topic)?;
    consumer.read_ids(&committed)?;
    consumer.settle(Duration::from_secs(1))?;
    let consumed: BTreeSet<u64> = ids(&consumer.records).into_iter().collect();
    let consumer_shows_aborted = !consumed.is_disjoint(&aborted);
    println!(
        "a consumer read {} records, {} of them aborted",
        consumer.records.len(),
        consumed.intersection(&aborted).count()
    );

    // A transaction of another producer, flushed and left open.
    let stalled = transactional(broker, &unique("log-open"))?;
    stalled.begin_transaction()?;
    let open = COMMITTED + ABORTED;
    send(&stalled, &topic, open..open + OPEN)?;

    // The markers reach the log after the transaction ends (on Kafka, asynchronously), so the
    // view is read until every record meant to be visible is.
    let view = wait_for("the log to show every committed and plain record", || {
        let view = log::read(broker, &topic)?;
        let seen: BTreeSet<u64> = ids(&view.records).into_iter().collect();
        Ok(seen.is_superset(&committed).then_some(view))
    })?;
    println!(
        "log: {} stored, {} visible, {} aborted, {} open, {} fenced, {} markers",
        view.stored,
        view.records.len(),
        view.aborted,
        view.open,
        view.fenced,
        view.markers
    );
    let seen = ids(&view.records);
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    anyhow::ensure!(
        distinct == committed && seen.len() == committed.len(),
        "the view holds {} records, {} distinct ids, expected exactly the {} committed and plain",
        seen.len(),
        distinct.len(),
        committed.len()
    );
    anyhow::ensure!(
        (view.aborted, view.open, view.fenced) == (ABORTED as usize, OPEN as usize, 0),
        "dropped: {} aborted, {} open, {} fenced",
        view.aborted,
        view.open,
        view.fenced
    );
    anyhow::ensure!(view.stored == (COMMITTED + ABORTED + OPEN) as usize + plain.len());
    // By partition, then offset; each record as produced, plain ones where they were reported.
    let order: Vec<(i32, i64)> = view
        .records
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    anyhow::ensure!(
        order.is_sorted(),
        "the view is not by partition, then offset"
    );
    for record in &view.records {
        let id = record.id().context("a record without an id")?;
        let expected = Out::numbered(id);
        anyhow::ensure!(
            record.key == expected.key && record.value == expected.value,
            "record {id} read back as {record:?}"
        );
        if let Some(at) = plain.get(&id) {
            anyhow::ensure!(
                (record.partition, record.offset) == (at.partition, at.offset),
                "plain record {id} at {}/{}, reported at {at:?}",
                record.partition,
                record.offset
            );
        }
    }
    // The consumer sees what the log does, and on a broker that shows aborted records (Tansu)
    // those too: the reason the log reader exists.
    let without_aborted: BTreeSet<u64> = consumed.difference(&aborted).copied().collect();
    anyhow::ensure!(
        without_aborted == committed,
        "the consumer read other records"
    );
    if broker.pid().is_some() {
        anyhow::ensure!(
            consumer_shows_aborted,
            "Tansu now hides aborted transactions from consumers: the log reader may go"
        );
    }
    drop(stalled);
    Ok(())
}
