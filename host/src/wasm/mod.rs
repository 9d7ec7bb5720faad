//! The WASM runtime: runs a tenant's plugin (a WebAssembly component implementing
//! `burrow:plugin/processor`, contract [`CONTRACT_VERSION`]) on each message, sandboxed and
//! limited.
//!
//! # Design
//!
//! - **One engine.** A [`Runtime`] owns the process's only `wasmtime::Engine`, the linker every
//!   plugin is resolved against (WASI + `burrow:plugin/host`), the on-disk code cache, and the
//!   thread that drives deadlines. Clone it freely.
//! - **Compile once, cached.** [`Runtime::load_file`] compiles a component, or fetches it from
//!   the cache (keyed by wasmtime on the bytes, the compiler version and the engine settings),
//!   checks it against the contract, and pre-links it (`InstancePre`, via the generated
//!   `ProcessorPre`). A bad file is refused there with a [`LoadError`]; nothing after loading
//!   fails for contract reasons.
//! - **One instance per worker.** Each worker owns a [`PluginInstance`]: it instantiates on
//!   first use and reuses the instance for later messages (instantiating costs far more than a
//!   call). After a trap, a deadline overrun or a memory-cap hit the instance is dropped, since
//!   its state can no longer be trusted, and the next call gets a fresh one.
//! - **Limits per deployment.** [`Limits`]: a memory cap (a `ResourceLimiter` that traps past
//!   it), a wall-clock deadline per call (see below), optional fuel. Failures are [`CallError`]s, all retriable, and
//!   the host never crashes because of a plugin: a panic in the guest is a trap.
//! - **Sandbox.** WASI from a locked-down context: no environment, directories, sockets or
//!   name lookup; stdout/stderr go to the `tracing` log line by line. A deployment's
//!   [`Capabilities`] can grant environment variables and read-only directories, nothing else.
//! - **Host imports.** `log` becomes a `tracing` event with the plugin and message context;
//!   `emit` is buffered per message and returned in [`Processed`] (produce only on commit);
//!   `config` reads the deployment's settings, so one compiled plugin serves many tenants.
//! - **Batches, as one frame.** [`PluginInstance::call_batch_async`] sends many messages in one
//!   call: a [`Batch`] is the contract's frame (one buffer: an index of spans plus the bytes,
//!   see `burrow-frame`), lowered with one allocation and one copy, which the SDKs read in
//!   place. `log` and `emit` name their message by index, so each message keeps its own logs,
//!   emits and outcome. Each call must end within one message's deadline: a [`Pace`] per
//!   worker sizes calls from the plugin's measured time per message. A batch that fails in any
//!   way runs again message by message on a fresh instance, so a trap or an overrun costs only
//!   its own message. One call instead of one per message saves the fixed cost of entering the
//!   guest (a fiber, the deadline timer, output capture) per message.
//!
//!   [`Pace`]: pace::Pace
//! - **Hot swap.** A [`DeploymentSlot`] holds the current [`Deployment`] behind an atomic
//!   pointer. Loading a new version happens off the hot path; the switch is one store. Calls
//!   in flight finish on the old version; each worker's next call instantiates the new one. A
//!   version that fails to load leaves the old one in place. Every [`CallResult`] names the
//!   [`Version`] (short sha256) that answered.
//!
//! - **Every call ends at its deadline.** A call is an async wasmtime call under a
//!   `tokio::time::timeout`, with WASI in its async flavour: a guest parked in a WASI sleep or
//!   poll is a pending future, which the timeout drops; running guest code is checked against
//!   the deadline at every epoch tick, and traps past it. It is a [`CallError::Timeout`] and a
//!   fresh instance serves the next call.
//! - **One executor, fair shares.** Every worker's calls run on one [`Executor`] for the whole
//!   process: a fixed set of threads (one per core, `burrow-plugin-N`), a tokio runtime apart
//!   from the pools'. A [`PluginWorker`] owns a worker's instance, and each call takes it to
//!   the executor and back. A blocked call holds no thread, a spinning one yields at every
//!   tick, and each call runs under its tenant's [`Share`]: tenants get the threads by weight
//!   under contention, not by how many calls they have, and never more than their cap
//!   ([`Cpu`]; `fair`). What a tenant's calls use, memory and CPU, is charged to its
//!   [`Account`], which its live version and a canary's candidate share. Guest code never runs
//!   on the pools' runtime or on tokio's shared blocking pool.
//! - **Plugin text is made safe.** `log` messages, `fail` reasons and output lines are escaped
//!   (no forged log lines) and capped at [`MAX_PLUGIN_TEXT`] bytes.

mod batch;
mod bindings;
mod call;
mod deployment;
mod executor;
mod fair;
mod host;
pub(crate) use host::record_size;
mod instance;
mod limits;
mod message;
mod pace;
mod plugin;
mod runtime;
mod sandbox;
mod stdio;
mod store;
mod text;
mod ticker;
mod version;
mod worker;

pub use batch::{Batch, BatchWriter};
pub use bindings::{Header, Level, Outcome, OutputRecord};
pub use burrow_frame::Fields;
pub use call::{CallContext, CallError, CallResult, Processed};
pub use deployment::{Account, Deployment, DeploymentSlot};
pub use executor::Executor;
pub use fair::Share;
pub use instance::PluginInstance;
pub use limits::{Cpu, Limits, MemoryAccount, Recycle};
pub use message::Message;
pub use plugin::{CONTRACT_VERSION, LoadError, Plugin, PluginId};
pub use runtime::{CacheStats, CodeCache, Runtime, RuntimeConfig, RuntimeError};
pub use sandbox::{Capabilities, SandboxError};
pub use text::MAX_PLUGIN_TEXT;
pub use version::Version;
pub use worker::{PluginWorker, Prepare, WorkerError};
