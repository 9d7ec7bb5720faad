//! The host's way of calling — `spawn_blocking` inside a tokio runtime — works, WASI included.

mod wasm_support;

use burrow::wasm::Outcome;
use wasm_support::{chaos, outcome, worker_for};

/// A worker moved into `spawn_blocking` serves calls that use WASI (stdout, files, clocks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_spawn_blocking_work() -> anyhow::Result<()> {
    let (_slot, mut worker) = worker_for("chaos")?;
    let outcomes = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Outcome>> {
        Ok(vec![
            outcome(&mut worker, &chaos("print:from a blocking thread"))?,
            outcome(&mut worker, &chaos("sleep:1"))?,
            outcome(&mut worker, &chaos("read-file:/etc/passwd"))?,
        ])
    })
    .await??;
    assert_eq!(outcomes[0], Outcome::Commit);
    assert_eq!(outcomes[1], Outcome::Commit);
    assert!(matches!(&outcomes[2], Outcome::Fail(r) if r.contains(": error:")));
    Ok(())
}
