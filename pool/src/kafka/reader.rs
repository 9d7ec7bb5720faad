//! [`Reader`]: reads a partition's fetched records many per librdkafka call.
//!
//! rdkafka's `PartitionQueue::poll` returns one record per call, and each call reads the clock
//! about three times (rust-rdkafka's deadline, then librdkafka's poll-interval bookkeeping
//! before and after) and wraps the record in an event: `clock_gettime` alone was a quarter of
//! the poll thread's CPU in B3 (`perf`). `rd_kafka_consume_batch_queue` does the bookkeeping
//! once per call and hands back the records themselves; librdkafka's own batch consumer API,
//! serving the same queue the same way (control records skipped, records of an earlier seek
//! purged, the application position advanced).
//!
//! rdkafka 0.39 does not wrap it, so this module calls librdkafka directly: with
//! `kafka::message`'s header reader, the only `unsafe` in Burrow.

use std::collections::VecDeque;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings::{
    rd_kafka_consume_batch_queue, rd_kafka_message_destroy, rd_kafka_message_t,
    rd_kafka_queue_destroy, rd_kafka_queue_get_partition, rd_kafka_queue_t,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;

use super::message::Message;

/// The most records one call reads.
pub(crate) const MOST: usize = 256;

/// A handle on one partition's fetch queue, read in batches.
///
/// It must not outlive the consumer it was made from: the poll thread keeps it beside the
/// partition's `PartitionQueue` (in a `Feed`, declared first so it drops first), whose `Arc`
/// keeps the consumer alive.
pub(crate) struct Reader {
    queue: NonNull<rd_kafka_queue_t>,
}

// SAFETY: a librdkafka queue handle may be used from any thread (librdkafka locks the queue
// it refers to); the pool's poll thread is the only one that reads through it.
#[allow(unsafe_code)]
unsafe impl Send for Reader {}
// SAFETY: as above; `&Reader` only reads through librdkafka's locked queue.
#[allow(unsafe_code)]
unsafe impl Sync for Reader {}

impl Reader {
    /// A handle on `partition` of `topic`'s fetch queue in `consumer`; `None` if the topic name
    /// holds a NUL or librdkafka knows no such partition.
    #[allow(unsafe_code)]
    pub(crate) fn new<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is the consumer's live `rd_kafka_t`; `topic` is a valid
        // C string for the call. librdkafka returns a new reference (or null), which `Drop`
        // gives back.
        let queue = unsafe {
            rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), partition)
        };
        NonNull::new(queue).map(|queue| Self { queue })
    }

    /// Reads up to `most` (at most [`MOST`]) records at once, without waiting, each copied and
    /// appended to `into` (`topic` is their interned topic name); an error record goes to
    /// `error` instead. How many records librdkafka handed over.
    #[allow(unsafe_code)]
    pub(crate) fn read(
        &self,
        topic: &Arc<str>,
        most: usize,
        into: &mut VecDeque<Message>,
        mut error: impl FnMut(KafkaError),
    ) -> usize {
        let mut records: [*mut rd_kafka_message_t; MOST] = [std::ptr::null_mut(); MOST];
        // SAFETY: `self.queue` is a live queue handle (see `new`; the consumer outlives it);
        // `records` has room for `most.min(MOST)` pointers, which is all librdkafka may write.
        let read = unsafe {
            rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                records.as_mut_ptr(),
                most.min(MOST),
            )
        };
        let Ok(read) = usize::try_from(read) else {
            return 0;
        };
        for &record in &records[..read] {
            // SAFETY: librdkafka filled the first `read` slots with records the caller owns
            // until it destroys them, each exactly once, just below.
            let err = unsafe { (*record).err };
            if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                // SAFETY: as above: `record` is live until destroyed below.
                into.push_back(unsafe { Message::from_raw(record, Arc::clone(topic)) });
            } else {
                error(KafkaError::MessageConsumption(err.into()));
            }
            // SAFETY: each record is destroyed once, after its last use.
            unsafe { rd_kafka_message_destroy(record) };
        }
        read
    }
}

impl Drop for Reader {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and is given back once.
        unsafe { rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::Consumer as _;
    use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;
    use crate::kafka::Header;

    const RECORDS: i64 = 1_000;

    /// A split partition read in batches of at most `most` gives every record, once, in offset
    /// order, each exactly as produced: key or none, value or none (a tombstone), headers in
    /// order (a null value kept null), timestamp.
    #[test]
    fn a_partition_read_in_batches_gives_every_record_once_in_order_as_produced()
    -> anyhow::Result<()> {
        let mock = MockCluster::new(1)?;
        mock.create_topic("t", 1, 1)?;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()?;
        for i in 0..RECORDS {
            let key = format!("k{i}");
            let value = format!("v{i}");
            let headers = OwnedHeaders::new()
                .insert(KafkaHeader {
                    key: "n",
                    value: Some(&i.to_string()),
                })
                .insert(KafkaHeader {
                    key: "null",
                    value: None::<&[u8]>,
                });
            let mut record = BaseRecord::to("t")
                .partition(0)
                .timestamp(1_700_000_000_000 + i)
                .headers(headers);
            if i % 10 != 0 {
                record = record.key(&key);
            }
            if i % 7 != 0 {
                record = record.payload(&value);
            }
            producer
                .send::<String, String>(record)
                .map_err(|(e, _)| e)?;
        }
        producer.flush(Duration::from_secs(10))?;

        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", mock.bootstrap_servers())
                .set("group.id", "reader")
                .set("enable.auto.commit", "false")
                .create()?,
        );
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset("t", 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let queue = consumer
            .split_partition_queue("t", 0)
            .ok_or_else(|| anyhow::anyhow!("no partition queue"))?;
        let reader = Reader::new(&consumer, "t", 0).ok_or_else(|| anyhow::anyhow!("no reader"))?;
        let topic: Arc<str> = Arc::from("t");
        let mut read = VecDeque::new();
        let mut most_in_one = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while (read.len() as i64) < RECORDS && Instant::now() < deadline {
            consumer.poll(Duration::ZERO);
            let n = reader.read(&topic, 64, &mut read, |e| panic!("error record: {e}"));
            most_in_one = most_in_one.max(n);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(
            most_in_one > 1 && most_in_one <= 64,
            "{most_in_one} in one read"
        );
        let offsets: Vec<i64> = read.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (0..RECORDS).collect::<Vec<_>>());
        for m in &read {
            let i = m.offset;
            assert_eq!(&*m.topic, "t");
            assert_eq!(m.partition, 0);
            let key = (i % 10 != 0).then(|| format!("k{i}").into_bytes());
            let value = (i % 7 != 0).then(|| format!("v{i}").into_bytes());
            assert_eq!(m.key, key, "offset {i}");
            assert_eq!(m.payload, value, "offset {i}");
            assert_eq!(
                m.headers,
                vec![
                    Header {
                        key: "n".into(),
                        value: Some(i.to_string().into_bytes())
                    },
                    Header {
                        key: "null".into(),
                        value: None
                    },
                ]
            );
            assert_eq!(m.timestamp_ms, Some(1_700_000_000_000 + i));
        }
        drop(reader);
        drop(queue);
        Ok(())
    }
}
