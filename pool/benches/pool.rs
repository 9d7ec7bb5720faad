//! Pool throughput on librdkafka's in-process mock cluster, against two baselines measured in
//! the same run: a raw rdkafka consumer with a no-op handler, and Little's law
//! (`workers / latency`) for a handler that sleeps.
//!
//! Each figure is timed from the first message handled to the last, so the group join (3 s on
//! the mock) is not counted. Run with `cargo bench -p burrow-pool --bench pool`. Any librdkafka
//! property can be set for the consumers as `BENCH_RDKAFKA_FETCH_WAIT_MAX_MS=10` (underscores
//! become dots); `RUST_LOG` turns on logs.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_pool::{Config, Consumer, Message, Ordering, Pool, ProcessError};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 8;
const NOOP_MESSAGES: u64 = 50_000;
const SLEEP_MESSAGES: u64 = 20_000;
const SLEEP: Duration = Duration::from_millis(5);
const SLEEP_WORKERS: usize = 100;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, PARTITIONS, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, NOOP_MESSAGES)?;

    let mut rows: Vec<(String, u64, f64, Option<f64>)> = Vec::new();
    let raw = raw_consumer(&bootstrap, NOOP_MESSAGES)?;
    rows.push((
        "raw rdkafka consumer, no-op".into(),
        NOOP_MESSAGES,
        raw,
        None,
    ));
    // The default queue (1000) pauses and resumes the partitions many times a second here; the
    // large one never fills, which isolates the cost of that backpressure.
    for queue in [1000, 1_000_000] {
        for (name, ordering) in [
            ("unordered", Ordering::Unordered),
            ("partition", Ordering::Partition),
            ("key", Ordering::Key),
        ] {
            let config = Config {
                ordering,
                job_queue_size: queue,
                ..Config::default()
            };
            let rate = runtime.block_on(pool_rate(&bootstrap, config, NOOP_MESSAGES, None))?;
            let name = format!("pool, no-op, {name}, queue {queue}");
            rows.push((name, NOOP_MESSAGES, rate, Some(raw)));
        }
        let config = Config {
            num_workers: SLEEP_WORKERS,
            job_queue_size: queue,
            ..Config::default()
        };
        let rate = runtime.block_on(pool_rate(&bootstrap, config, SLEEP_MESSAGES, Some(SLEEP)))?;
        let little = SLEEP_WORKERS as f64 / SLEEP.as_secs_f64();
        let name = format!("pool, 5 ms sleep, 100 workers, queue {queue}");
        rows.push((name, SLEEP_MESSAGES, rate, Some(little)));
    }

    println!();
    println!(
        "{:<46} {:>9} {:>12} {:>14} {:>7}",
        "case", "messages", "msg/s", "baseline msg/s", "ratio"
    );
    for (name, n, rate, baseline) in rows {
        let (base, ratio) = match baseline {
            Some(b) => (format!("{b:.0}"), format!("{:.2}", rate / b)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!("{name:<46} {n:>9} {rate:>12.0} {base:>14} {ratio:>7}");
    }
    println!();
    println!(
        "baselines: the raw consumer for no-op rows; Little's law ({SLEEP_WORKERS} workers / {} ms) for the sleep row",
        SLEEP.as_millis()
    );
    Ok(())
}

fn produce(bootstrap: &str, n: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()?;
    let payload = vec![b'x'; 100];
    for i in 0..n {
        let key = format!("k{}", i % 1000);
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

fn client(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in std::env::vars() {
        if let Some(key) = k.strip_prefix("BENCH_RDKAFKA_") {
            c.set(key.to_lowercase().replace('_', "."), v);
        }
    }
    c
}

/// Messages per second of a bare `BaseConsumer` loop.
fn raw_consumer(bootstrap: &str, n: u64) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = client(bootstrap, "bench-raw").create()?;
    consumer.subscribe(&[TOPIC])?;
    let mut seen = 0u64;
    let mut first = None;
    while seen < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                std::hint::black_box(&m);
                first.get_or_insert_with(Instant::now);
                seen += 1;
            }
            Some(Err(e)) => anyhow::bail!("consume: {e}"),
            None => {}
        }
    }
    let took = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(n as f64 / took.as_secs_f64())
}

/// Messages per second through a pool whose handler sleeps `sleep` (or does nothing).
async fn pool_rate(
    bootstrap: &str,
    config: Config,
    n: u64,
    sleep: Option<Duration>,
) -> anyhow::Result<f64> {
    static GROUP: AtomicU64 = AtomicU64::new(0);
    let group = format!("bench-pool-{}", GROUP.fetch_add(1, AtomicOrdering::Relaxed));
    let consumer = Consumer::from_config(&client(bootstrap, &group))?;
    consumer.subscribe(&[TOPIC])?;
    let pool = Pool::new(consumer, config)?;
    let done = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let last = Arc::new(Mutex::new(None::<Instant>));
    let stop = CancellationToken::new();
    let handler = {
        let (done, first, last, stop) = (done.clone(), first.clone(), last.clone(), stop.clone());
        move |m: Arc<Message>| {
            let (done, first, last, stop) =
                (done.clone(), first.clone(), last.clone(), stop.clone());
            async move {
                std::hint::black_box(&m);
                if done.load(AtomicOrdering::Relaxed) == 0 {
                    first
                        .lock()
                        .map_err(|_| ProcessError::retriable("poisoned"))?
                        .get_or_insert_with(Instant::now);
                }
                if let Some(d) = sleep {
                    tokio::time::sleep(d).await;
                }
                if done.fetch_add(1, AtomicOrdering::Relaxed) + 1 == n {
                    *last
                        .lock()
                        .map_err(|_| ProcessError::retriable("poisoned"))? = Some(Instant::now());
                    stop.cancel();
                }
                Ok::<(), ProcessError>(())
            }
        }
    };
    pool.run(stop.clone().cancelled_owned(), handler).await?;
    let first = first.lock().ok().and_then(|f| *f);
    let last = last.lock().ok().and_then(|l| *l);
    let (Some(first), Some(last)) = (first, last) else {
        anyhow::bail!("pool stopped before {n} messages");
    };
    Ok(n as f64 / last.duration_since(first).as_secs_f64())
}
