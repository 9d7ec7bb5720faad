//! The table (printed, and as markdown), the chart, and the machine they ran on.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::cpu::Stage;
use super::{Goal, Options, Row};

/// The machine and the moment: cores, CPU model, kernel, date.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
}

impl Machine {
    pub fn now() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown kernel".into(), |k| k.trim().to_owned());
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu,
            kernel,
            date,
        }
    }

    /// The file-name form of the date: `YYYY-MM-DD-HHMM`.
    pub fn stamp(&self) -> String {
        self.date
            .trim_end_matches(" UTC")
            .replace(' ', "-")
            .replace(':', "")
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cores, {}, Linux {}, {}",
            self.cores, self.cpu, self.kernel, self.date
        )
    }
}

const HEADER: [&str; 9] = [
    "case", "what", "broker", "messages", "median", "baseline", "ratio", "goal", "met?",
];

/// A row's cells, in [`HEADER`]'s order.
fn cells(row: &Row) -> [String; 9] {
    [
        row.case.to_owned(),
        row.what.clone(),
        row.broker.to_string(),
        super::thousands(row.messages as f64),
        row.figure.to_string(),
        row.baseline
            .as_ref()
            .map_or_else(|| "-".into(), |(f, what)| format!("{f} ({what})")),
        row.ratio.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
        row.goal.to_string(),
        match row.met {
            Some(true) => "met".into(),
            Some(false) => "NOT met".into(),
            None => "-".into(),
        },
    ]
}

/// The plain-text table for the terminal.
pub fn text(rows: &[Row], machine: &Machine, options: &Options) -> String {
    let table: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let mut widths = HEADER.map(str::len);
    for r in &table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Text columns left, figures right.
            if matches!(i, 1 | 5) || i < 3 {
                let _ = write!(s, "{c}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut s = format!("burrow bench — {machine}\n{}\n\n", settings(options));
    let _ = writeln!(s, "{}", line(&HEADER.map(str::to_owned)));
    for r in &table {
        let _ = writeln!(s, "{}", line(r));
    }
    let _ = writeln!(s);
    let cpu = cpu_table(rows);
    if cpu.len() > 1 {
        let _ = writeln!(s, "{CPU_TITLE}");
        for r in &cpu {
            let _ = writeln!(s, "{}", aligned(r, &cpu));
        }
        let _ = writeln!(s);
    }
    for row in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(
            s,
            "{} {} ({}): {}",
            row.case, row.what, row.broker, row.note
        );
    }
    s
}

fn settings(options: &Options) -> String {
    format!(
        "median of {} run(s); {} messages per throughput case (stopped at {} s past the first message), {} for the long run of B7",
        options.runs,
        super::thousands(options.messages as f64),
        options.cap.as_secs(),
        super::thousands(options.long_messages as f64)
    )
}

const CPU_TITLE: &str =
    "Where the host's CPU goes, µs per message (per-thread CPU time over the measured run):";

/// The CPU table: a header, then a line per row that measured its host's threads.
fn cpu_table(rows: &[Row]) -> Vec<Vec<String>> {
    let mut header = vec!["case".to_owned()];
    header.extend(Stage::ALL.iter().map(|s| s.name().to_owned()));
    header.push("total".into());
    let mut table = vec![header];
    for row in rows {
        let Some(cpu) = row.cpu else { continue };
        let mut line = vec![format!("{} {} ({})", row.case, row.what, row.broker)];
        line.extend(Stage::ALL.iter().map(|s| format!("{:.2}", cpu.stage(*s))));
        line.push(format!("{:.2}", cpu.total()));
        table.push(line);
    }
    table
}

/// `line` padded to `table`'s column widths: the first column left, the figures right.
fn aligned(line: &[String], table: &[Vec<String>]) -> String {
    let mut s = String::new();
    for (i, cell) in line.iter().enumerate() {
        let width = table
            .iter()
            .map(|l| l.get(i).map_or(0, |c| c.chars().count()))
            .max()
            .unwrap_or(0);
        let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
        if i == 0 {
            let _ = write!(s, "{cell}{pad}  ");
        } else {
            let _ = write!(s, "{pad}{cell}  ");
        }
    }
    s.trim_end().to_owned()
}

/// The markdown table, with the machine and the notes.
pub fn markdown(rows: &[Row], machine: &Machine, options: &Options) -> String {
    let mut s = String::from("# `make bench` results\n\n");
    let _ = writeln!(s, "Machine: {machine}.  \n{}.\n", settings(options));
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let _ = writeln!(
        s,
        "|{}",
        HEADER
            .iter()
            .enumerate()
            .map(|(i, _)| if (3..7).contains(&i) { "---:|" } else { "---|" })
            .collect::<String>()
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", cells(r).join(" | "));
    }
    let _ = writeln!(s);
    let cpu = cpu_table(rows);
    if let Some((header, body)) = cpu.split_first().filter(|(_, body)| !body.is_empty()) {
        let _ = writeln!(s, "{CPU_TITLE}\n");
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(header.len() - 1));
        for r in body {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        let _ = writeln!(s);
    }
    for row in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(
            s,
            "- {} {} ({}): {}",
            row.case, row.what, row.broker, row.note
        );
    }
    let _ = writeln!(s, "\n![ratios against goals](latest.svg)");
    s
}

/// A bar per row whose goal is a ratio: the ratio, with its goal as a red tick.
pub fn chart(rows: &[Row], machine: &Machine, path: &Path) -> anyhow::Result<()> {
    let bars: Vec<(String, f64, f64)> = rows
        .iter()
        .filter_map(|r| match (r.goal.clone(), r.ratio) {
            (Goal::RatioAtLeast(goal), Some(ratio)) => {
                Some((format!("{} {} ({})", r.case, r.what, r.broker), ratio, goal))
            }
            _ => None,
        })
        .collect();
    let height = 120 + 34 * bars.len() as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).context("drawing the chart")?;
    let top = bars
        .iter()
        .map(|(_, r, g)| r.max(*g))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let n = bars.len().max(1);
    // Slot `n - 1 - i` holds bar `i`, so the chart reads top-down in the table's order.
    let slot = |i: usize| n - 1 - i;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("burrow bench: ratio to baseline (bars) vs goal (red) — {machine}"),
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(430)
        .build_cartesian_2d(0.0..top, -0.5..(n as f64 - 0.5))
        .context("drawing the chart")?;
    let labels: Vec<String> = bars.iter().map(|(l, _, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("ratio")
        // A label at each whole y: slot `k` holds bar `n - 1 - k`.
        .y_label_formatter(&|v| {
            let k = v.round();
            if (v - k).abs() > 1e-6 || k < 0.0 {
                return String::new();
            }
            labels.get(slot(k as usize)).cloned().unwrap_or_default()
        })
        .y_labels(2 * n + 1)
        .draw()
        .context("drawing the chart")?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, ratio, goal))| {
            let color = if ratio >= goal {
                GREEN.mix(0.6)
            } else {
                RGBColor(230, 140, 40).mix(0.8)
            };
            let y = slot(i) as f64;
            Rectangle::new([(0.0, y - 0.35), (*ratio, y + 0.35)], color.filled())
        }))
        .context("drawing the chart")?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, _, goal))| {
            PathElement::new(
                vec![
                    (*goal, slot(i) as f64 - 0.45),
                    (*goal, slot(i) as f64 + 0.45),
                ],
                RED.stroke_width(3),
            )
        }))
        .context("drawing the chart")?;
    root.present().context("writing the chart")?;
    Ok(())
}
