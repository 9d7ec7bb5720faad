//! `make bench`: Burrow's benchmark program (issue 8). Prints one table of medians, each against
//! a baseline measured in the same run, and writes it to `bench/results/latest.md` (with a dated
//! copy) and a chart of the ratios against their goals to `bench/results/latest.svg`.
//! See `bench/README.md` for what each case measures.
//!
//! Usage: `bench [--quick] [--only B3,B4] [--messages N] [--long-messages N] [--runs N]
//! [--brokers mock,tansu]`. Needs `make plugins broker` and a release `burrow`
//! (`BURROW_BIN`, else `target/release/burrow`).

// The bench's modules live beside the kit (tests/src/bench) but only this program compiles them:
// the kit, which the pool's and the host's tests link, stays free of the chart's dependencies.
#[path = "../bench/mod.rs"]
mod bench;

/// The `burrow` binary's allocator (see its `main.rs`), so that B2 measures the pool as B3 runs
/// it. With glibc's malloc, malloc and free took ~20% of the thread running B2's pool and
/// page faults ~10% (`perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use bench::cases::Bench;
use bench::report::{self, Machine};
use bench::{BrokerKind, Options, Row};
use burrow_e2e::broker::Broker;

#[derive(Debug, Parser)]
#[command(about = "Burrow's benchmark: one table of medians against same-run baselines")]
struct Args {
    /// Development run: 200,000 messages per case (1,000,000 for B7's long run), one run.
    #[arg(long)]
    quick: bool,
    /// Only these cases, comma-separated (`B1,B3`). B1 runs whenever B2 or B3 does (their
    /// baseline), B3 whenever B4 does, B4 whenever B9, B10 or B14 does.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Messages per throughput case (default 1,000,000).
    #[arg(long)]
    messages: Option<u64>,
    /// Messages of B7's long run (default 10,000,000).
    #[arg(long)]
    long_messages: Option<u64>,
    /// Runs per case; the table shows the median (default 3).
    #[arg(long)]
    runs: Option<usize>,
    /// Stop a throughput run this many seconds after its first message (default 60, quick 20).
    #[arg(long)]
    cap_secs: Option<u64>,
    /// Brokers to run on: `mock`, `tansu` (default both).
    #[arg(long, value_delimiter = ',')]
    brokers: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let options = options(Args::parse())?;
    let machine = Machine::now();
    let mut rows: Vec<Row> = Vec::new();
    for &kind in &options.brokers {
        let broker = match kind {
            BrokerKind::Mock => Broker::mock(&[])?,
            BrokerKind::Tansu => Broker::start_tansu(None)?,
        };
        rows.extend(run_on(&broker, kind, &options).with_context(|| format!("on {kind}"))?);
    }
    // By case number (B10 after B9), each case's brokers in the order they ran.
    rows.sort_by_key(|r| {
        r.case
            .trim_start_matches('B')
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    print!("{}", report::text(&rows, &machine, &options));
    write_results(&rows, &machine, &options)
}

/// Every selected case on one broker.
fn run_on(broker: &Broker, kind: BrokerKind, options: &Options) -> anyhow::Result<Vec<Row>> {
    let bench = Bench::new(broker, kind, options)?;
    let mut rows = Vec::new();
    let wants = |ids: &[&str]| ids.iter().any(|id| options.runs_case(id));
    // B5 (sleeps) does not depend on the broker: it runs once, on the first. B6 and B7 read the
    // long dataset, which only a real broker keeps whole (the mock drops all but ~5 MiB per
    // partition): they run on Tansu when it is in the run, else on the mock, clipped.
    let first = options.brokers.first() == Some(&kind);
    let long_runs_here = kind == BrokerKind::Tansu || !options.brokers.contains(&BrokerKind::Tansu);
    if wants(&["B1", "B2", "B3", "B4", "B9", "B10", "B14"]) {
        let raw = bench.b1_raw()?;
        rows.push(baseline_row(raw, kind));
        if wants(&["B2"]) {
            rows.extend(bench.b2_pool(raw)?);
        }
        if wants(&["B3", "B4", "B9", "B10", "B14"]) {
            let (row, b3) = bench.b3_host(raw)?;
            rows.push(row);
            if wants(&["B4", "B9", "B10", "B14"]) {
                let (b4_rows, b4) = bench.b4_emit(b3)?;
                rows.extend(b4_rows);
                // Quix Streams describes its topics' configs at start, which the mock cluster
                // does not answer.
                if wants(&["B14"]) && kind == BrokerKind::Tansu {
                    rows.push(bench.b14_peer(b4)?);
                }
                if wants(&["B10"]) {
                    rows.push(bench.b10_dead_letters(b4)?);
                }
                // The mock cluster keeps no offsets committed in a transaction: B9 could never
                // see its run committed there.
                if wants(&["B9"]) && kind == BrokerKind::Tansu {
                    rows.push(bench.b9_exactly_once(b4)?);
                }
            }
        }
    }
    if first && wants(&["B5"]) {
        rows.push(bench.b5_io()?);
    }
    if long_runs_here && wants(&["B6"]) {
        rows.push(bench.b6_swap()?);
    }
    if long_runs_here && wants(&["B7"]) {
        rows.extend(bench.b7_memory()?);
    }
    if wants(&["B8"]) {
        rows.extend(bench.b8_cold_start()?);
    }
    // A hundred groups' joins: on Tansu when it is in the run (the mock's first join of each
    // group waits 3 s), else on the mock.
    if wants(&["B11"]) {
        rows.extend(bench.b11_noisy_neighbour()?);
    }
    if long_runs_here && wants(&["B12"]) {
        rows.extend(bench.b12_idle_tenants()?);
    }
    Ok(rows)
}

fn baseline_row(raw: bench::Rate, kind: BrokerKind) -> Row {
    Row {
        case: "B1",
        what: "raw rdkafka BaseConsumer, no-op".into(),
        broker: kind,
        messages: raw.messages,
        figure: bench::Figure::Rate(raw.per_sec()),
        baseline: None,
        ratio: None,
        goal: bench::Goal::None,
        met: None,
        note: String::new(),
        cpu: raw.cpu,
    }
}

fn options(args: Args) -> anyhow::Result<Options> {
    let (messages, long_messages, runs, cap) = if args.quick {
        (200_000, 1_000_000, 1, 20)
    } else {
        (1_000_000, 10_000_000, 3, 60)
    };
    let brokers = if args.brokers.is_empty() {
        vec![BrokerKind::Mock, BrokerKind::Tansu]
    } else {
        args.brokers
            .iter()
            .map(|b| match b.as_str() {
                "mock" => Ok(BrokerKind::Mock),
                "tansu" => Ok(BrokerKind::Tansu),
                other => anyhow::bail!("unknown broker {other:?}: mock or tansu"),
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok(Options {
        messages: args.messages.unwrap_or(messages),
        long_messages: args.long_messages.unwrap_or(long_messages),
        runs: args.runs.unwrap_or(runs).max(1),
        cap: Duration::from_secs(args.cap_secs.unwrap_or(cap)),
        only: args.only,
        brokers,
    })
}

/// `bench/results/latest.md`, `latest.svg`, and dated copies of both.
fn write_results(rows: &[Row], machine: &Machine, options: &Options) -> anyhow::Result<()> {
    let dir = burrow_e2e::plugins::workspace_root().join("bench/results");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let markdown = report::markdown(rows, machine, options);
    let latest = dir.join("latest.md");
    std::fs::write(&latest, &markdown).with_context(|| format!("writing {}", latest.display()))?;
    report::chart(rows, machine, &dir.join("latest.svg"))?;
    let stamp = machine.stamp();
    let dated_md = markdown.replace("latest.svg", &format!("{stamp}.svg"));
    std::fs::write(dir.join(format!("{stamp}.md")), dated_md)?;
    std::fs::copy(dir.join("latest.svg"), dir.join(format!("{stamp}.svg")))?;
    println!("wrote {} and latest.svg (and {stamp}.*)", latest.display());
    Ok(())
}
