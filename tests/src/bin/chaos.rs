//! `make chaos`: the chaos driver's full run (1,000,000 messages by default) on a fresh Tansu
//! (or `BURROW_TEST_BROKERS`); prints the verdict table and exits non-zero on any loss.
//!
//! Usage: `chaos [MESSAGES]`.

use burrow_e2e::broker::Broker;
use burrow_e2e::chaos::{self, Options};

fn main() -> anyhow::Result<()> {
    let mut options = Options::full();
    if let Some(n) = std::env::args().nth(1) {
        options.messages = n
            .parse()
            .map_err(|e| anyhow::anyhow!("MESSAGES must be a number, not {n:?}: {e}"))?;
    }
    let broker = Broker::shared()?;
    let verdict = chaos::run(broker, &options)?;
    println!("{verdict}");
    verdict.check()
}
