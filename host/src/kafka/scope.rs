//! Which kind of client reads a librdkafka property.
//!
//! `[kafka.options]` holds the settings of every client a tenant makes: its consumer and its
//! producers. librdkafka ignores a property meant for the other kind of client, and says so in
//! a warning (`CONFWARN`) each time such a client is created — so an operator who set
//! `max.poll.interval.ms` (as `burrow validate` may ask) or `compression.type` would see one
//! per tenant and producer at every start. Each client is given only what it reads: dropping
//! the rest changes nothing but the noise.
//!
//! The lists are librdkafka's own (`rdkafka_conf.c` of the librdkafka that rdkafka-sys bundles,
//! 2.12.1): the properties scoped to consumers only (`_RK_CONSUMER`, `_RK_CGRP`) and to
//! producers only (`_RK_PRODUCER`), global and topic-level. A property in neither list goes to
//! both.

use std::collections::BTreeMap;

/// Properties only a consumer reads.
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Properties only a producer reads.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// The options a consumer reads, in order.
pub fn for_consumer(options: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    without(options, PRODUCER_ONLY)
}

/// The options a producer reads, in order.
pub fn for_producer(options: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    without(options, CONSUMER_ONLY)
}

fn without<'a>(
    options: &'a BTreeMap<String, String>,
    other: &'static [&'static str],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    options
        .iter()
        .filter(move |(key, _)| !other.contains(&key.as_str()))
        .map(|(key, value)| (key.as_str(), value.as_str()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::client::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;
    use rdkafka::consumer::{BaseConsumer, ConsumerContext};
    use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};

    use super::*;

    /// Keeps librdkafka's warnings about properties.
    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl ClientContext for Warnings {
        fn log(&self, _: RDKafkaLogLevel, facility: &str, line: &str) {
            // (Another CONFWARN says the test's clients have no brokers: they never connect.)
            if facility == "CONFWARN" && line.contains("Configuration property") {
                self.0.lock().expect("warnings").push(line.to_owned());
            }
        }
    }

    impl ProducerContext for Warnings {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
    }

    impl ConsumerContext for Warnings {}

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A consumer's and a producer's settings an operator may well set side by side.
    fn mixed() -> BTreeMap<String, String> {
        options(&[
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("max.poll.interval.ms", "600000"),
            ("fetch.wait.max.ms", "100"),
            ("auto.offset.reset", "latest"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("batch.size", "100000"),
            ("message.timeout.ms", "30000"),
            ("client.id", "burrow-test"),
            ("socket.keepalive.enable", "true"),
        ])
    }

    /// The warnings a client built from `pairs` logs (no broker: it never connects).
    fn warnings_of<'a>(
        producer: bool,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Vec<String> {
        let mut config = ClientConfig::new();
        for (key, value) in pairs {
            config.set(key, value);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        let context = Warnings::default();
        // librdkafka's logs reach the context as events, served by a poll.
        if producer {
            let client: BaseProducer<Warnings> = config
                .create_with_context(context.clone())
                .expect("producer");
            client.poll(Duration::from_millis(100));
        } else {
            config.set("group.id", "scope-test");
            let client: BaseConsumer<Warnings> = config
                .create_with_context(context.clone())
                .expect("consumer");
            let _ = client.poll(Duration::from_millis(100));
        }
        context.0.lock().expect("warnings").clone()
    }

    fn each(options: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
        options.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[test]
    fn every_option_reaches_the_clients_that_read_it() {
        let all = mixed();
        let consumer: Vec<&str> = for_consumer(&all).map(|(k, _)| k).collect();
        let producer: Vec<&str> = for_producer(&all).map(|(k, _)| k).collect();
        for shared in ["client.id", "socket.keepalive.enable"] {
            assert!(consumer.contains(&shared) && producer.contains(&shared));
        }
        assert!(
            consumer.contains(&"max.poll.interval.ms")
                && !producer.contains(&"max.poll.interval.ms")
        );
        assert!(producer.contains(&"compression.type") && !consumer.contains(&"compression.type"));
        assert_eq!(consumer.len() + producer.len(), all.len() + 2);
    }

    #[test]
    fn a_client_built_from_its_options_logs_no_warning_where_all_of_them_would() {
        let all = mixed();
        // Unfiltered, librdkafka warns about the other client's properties: the test can fail.
        assert!(!warnings_of(true, each(&all)).is_empty());
        assert!(!warnings_of(false, each(&all)).is_empty());
        assert_eq!(warnings_of(true, for_producer(&all)), Vec::<String>::new());
        assert_eq!(warnings_of(false, for_consumer(&all)), Vec::<String>::new());
    }
}
