//! Child processes, the real `burrow` binary run as one, and the admin listener's client.
//!
//! `CARGO_BIN_EXE_burrow` exists only inside the `burrow` package, so the kit builds the binary
//! itself: the first test to need it runs `cargo build -p burrow --bin burrow` (a no-op when it
//! is up to date) and takes the path from cargo's own artifact report, so any target directory
//! or profile works. `BURROW_BIN` points at another binary instead (e.g. a release build).
//!
//! The binary runs with `--log-format json`; its admin listener binds port 0 and the fixture
//! reads the port from its `burrow is running` log line, so parallel tests never collide.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::plugins::workspace_root;
use crate::{DEADLINE, wait_for};

/// Names a `burrow` binary to test instead of building one.
pub const BIN_ENV: &str = "BURROW_BIN";

/// The `burrow` binary under test: `BURROW_BIN`, or built once per test binary.
pub fn burrow_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "-p",
            "burrow",
            "--bin",
            "burrow",
            "--message-format=json",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p burrow")?;
    if !output.status.success() {
        bail!("cargo build -p burrow failed ({})", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "burrow")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build reported no burrow executable")
}

/// A child process whose stdout and stderr go to files (a pipe nobody reads could fill and
/// block it); killed when dropped, so a failing test leaves nothing running.
pub struct Process {
    child: Child,
    /// Holds the `stdout` and `stderr` files.
    dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Process {
    /// Spawns `command` with its output kept, and a watchdog that kills it if the test process
    /// dies first.
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout"))?)
            .stderr(std::fs::File::create(dir.path().join("stderr"))?)
            .spawn()
            .with_context(|| format!("spawning {:?}", command.get_program()))?;
        crate::broker::watch(child.id())?;
        Ok(Self { child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        signal("TERM", self.child.id())
    }

    /// `kill -9`, and waits for it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill -9")?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for the process to exit (bounded by [`DEADLINE`]; then it is killed).
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                bail!(
                    "{:?} did not exit within {DEADLINE:?}; stderr:\n{}",
                    self.child.id(),
                    tail(&self.stderr())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `command` to its end (bounded by [`DEADLINE`]): exit status, stdout, stderr.
pub fn run_to_end(command: Command) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut process = Process::spawn(command)?;
    let status = process.wait_exit()?;
    Ok((status, process.stdout(), process.stderr()))
}

/// The admin listener of a host (a `burrow` child process, or a host run in the test's own
/// process): `/readyz`, `/stats`, `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    pub addr: SocketAddr,
}

impl Admin {
    /// `GET path`: status code and body.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.addr, path).with_context(|| format!("GET {path} on {}", self.addr))
    }

    /// `POST path` with a bearer `token`, if given: status code and body.
    pub fn post(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
        http_post(self.addr, path, token).with_context(|| format!("POST {path} on {}", self.addr))
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let (code, body) = self.get("/stats")?;
        anyhow::ensure!(code == 200, "/stats answered {code}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// `/stats` of tenant `name` (`Null` if the host does not run it).
    pub fn tenant(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.stats()?["tenants"][name].clone())
    }

    /// `/metrics` text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = self.get("/metrics")?;
        anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
        Ok(body)
    }

    /// Waits until `/readyz` answers 200 (every tenant has partitions); fails at once if
    /// `stopped` says the host has stopped (and why).
    pub fn wait_ready(
        &self,
        mut stopped: impl FnMut() -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<()> {
        let ready = wait_for("/readyz to answer 200", || {
            if let Some(why) = stopped()? {
                return Ok(Some(Err(anyhow::anyhow!("the host stopped: {why}"))));
            }
            Ok((self.get("/readyz")?.0 == 200).then_some(Ok(())))
        });
        ready.and_then(|r| r)
    }
}

/// A running `burrow run`; its admin listener's client through `Deref`.
pub struct Burrow {
    process: Process,
    admin: Admin,
}

impl std::ops::Deref for Burrow {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.admin
    }
}

/// Where every host's whole log is written when it ends, if set: for following one message
/// through a run that failed (`BURROW_TEST_LOG_DIR=/tmp/logs BURROW_TEST_RUST_LOG=debug cargo
/// test ...`).
const LOG_DIR_ENV: &str = "BURROW_TEST_LOG_DIR";

impl Drop for Burrow {
    /// A failing test still ends its host, and shows the end of its log (the test harness
    /// prints a test's output only when it fails).
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os(LOG_DIR_ENV) {
            let path = Path::new(&dir).join(format!("burrow-{}.log", self.pid()));
            if let Err(e) = std::fs::write(&path, self.stderr()) {
                println!("cannot write {}: {e}", path.display());
            }
        }
        if matches!(self.process.exited(), Ok(None)) {
            println!(
                "burrow {} log (last lines):\n{}",
                self.process.pid(),
                tail(&self.stderr())
            );
        }
    }
}

impl Burrow {
    /// Runs `burrow run --config config --watch-interval 100ms` and waits for its admin
    /// listener.
    pub fn start(config: &Path) -> anyhow::Result<Self> {
        Self::start_with(config, &[])
    }

    /// [`Burrow::start`] with extra environment variables.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(burrow_bin()?);
        command
            .args([
                "--log-format",
                "json",
                "run",
                "--watch-interval",
                "100ms",
                "--config",
            ])
            .arg(config)
            // `BURROW_TEST_RUST_LOG` sets the hosts' log filter for a run being debugged.
            .env(
                "RUST_LOG",
                std::env::var_os("BURROW_TEST_RUST_LOG").unwrap_or_else(|| "info".into()),
            );
        for (k, v) in env {
            command.env(k, v);
        }
        let mut process = Process::spawn(command)?;
        let admin = wait_for("burrow to log its admin address", || {
            if let Some(status) = process.exited()? {
                // An exit is final: fail now rather than time out.
                return Ok(Some(Err(anyhow::anyhow!(
                    "burrow exited ({status}) before it ran; stderr:\n{}",
                    tail(&process.stderr())
                ))));
            }
            Ok(admin_address(&process.stderr()).map(Ok))
        });
        let addr = admin.and_then(|a| a)?;
        Ok(Self {
            process,
            admin: Admin { addr },
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its log (stderr) so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The log lines (JSON) whose `fields.message` contains `text`.
    pub fn log_lines(&self, text: &str) -> Vec<serde_json::Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .collect()
    }

    /// Waits until `/readyz` answers 200 (every tenant has partitions).
    pub fn wait_ready(&mut self) -> anyhow::Result<()> {
        let process = &mut self.process;
        self.admin.wait_ready(|| {
            Ok(process
                .exited()?
                .map(|status| format!("exited ({status}); stderr:\n{}", tail(&process.stderr()))))
        })
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        self.process.terminate()?;
        self.process.wait_exit()
    }

    /// Sends SIGTERM, waits for the exit, and returns the whole log with the status.
    pub fn terminate_with_log(mut self) -> anyhow::Result<(ExitStatus, String)> {
        self.process.terminate()?;
        let status = self.process.wait_exit()?;
        Ok((status, self.stderr()))
    }

    /// `kill -9`: no shutdown, no final commit.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.process.kill9()
    }

    /// Waits for the process to exit (bounded by [`DEADLINE`]).
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.wait_exit()
    }
}

/// Sends `SIG<name>` to `pid` with the `kill` command (the workspace forbids `unsafe`, so no
/// `libc::kill`).
pub fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed: {status}");
    Ok(())
}

/// The admin address from a `burrow is running` JSON log line (`"admin":"Some(ADDR)"`).
fn admin_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "burrow is running")
        .and_then(|l| {
            let admin = l["fields"]["admin"].as_str()?.to_owned();
            admin
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .ok()
        })
}

/// The last 40 lines of a log, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A one-shot HTTP/1.0 GET: status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// A one-shot HTTP/1.0 POST with no body, with `Authorization: Bearer token` if given: status
/// code and body.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_request(addr, "POST", path, &format!("{auth}Content-Length: 0\r\n"))
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut reader = std::io::BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status:?}"))?;
    let mut response = String::new();
    reader.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    Ok((code, body))
}

/// The value of metric `name` on the line whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
