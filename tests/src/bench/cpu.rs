//! Where a host's CPU goes: each thread's CPU time from `/proc/PID/task/*/schedstat`, summed
//! per stage of the hot path by the thread's name (from `stat`), over a measurement window, per
//! message.
//!
//! Per-thread CPU time, not a profile: it costs nothing while the host runs, and it splits the
//! cost the way the hot path is built (one poll thread, the coordinator on tokio's workers,
//! plugin threads, librdkafka's own threads). `schedstat` counts nanoseconds on the CPU. `stat`'s
//! `utime` and `stime`, read before, count clock ticks (10 ms here), sampled: the mock cluster's
//! B3 window (~0.2 s, ten plugin threads a few ms each) read as 0.00 µs of plugin per message.
//! Without `schedstat` (a kernel without `CONFIG_SCHED_INFO`) the ticks are used.

use std::collections::BTreeMap;

/// A stage of the host's hot path, told by its threads' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// `burrow-poll`: takes records from librdkafka's queues.
    Poll,
    /// `tokio-rt-worker` (the coordinator, the dispatch, the admin listener) and
    /// `burrow-commit`.
    Coordinator,
    /// `burrow-plugin-*`: the WebAssembly calls.
    Plugin,
    /// `rdk:*`: librdkafka's broker and main threads, the consumer's and the producer's.
    Librdkafka,
    /// rdkafka's `producer polling thread` (its name cut to 15 bytes by the kernel).
    Producer,
    /// Anything else (the main thread, the epoch ticker, ...).
    Other,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Poll,
        Stage::Coordinator,
        Stage::Plugin,
        Stage::Librdkafka,
        Stage::Producer,
        Stage::Other,
    ];

    /// The stage a thread named `name` (its `comm`, at most 15 bytes) works for.
    pub fn of(name: &str) -> Self {
        if name.starts_with("burrow-poll") {
            Self::Poll
        } else if name.starts_with("tokio-rt-worker") || name.starts_with("burrow-commit") {
            Self::Coordinator
        } else if name.starts_with("burrow-plugin") {
            Self::Plugin
        } else if name.starts_with("rdk:") {
            Self::Librdkafka
        } else if name.starts_with("producer poll") {
            Self::Producer
        } else {
            Self::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Coordinator => "coordinator",
            Self::Plugin => "plugin",
            Self::Librdkafka => "librdkafka",
            Self::Producer => "producer",
            Self::Other => "other",
        }
    }
}

/// Each live thread of a process at one moment: its name and CPU time in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Threads(BTreeMap<u32, (String, u64)>);

impl Threads {
    /// CPU time spent since `before` by the threads whose name `keep` accepts, in
    /// nanoseconds; a thread born since counts from zero.
    pub fn spent_since(&self, before: &Threads, keep: impl Fn(&str) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|(_, (name, _))| keep(name))
            .map(|(tid, (_, now))| now.saturating_sub(before.0.get(tid).map_or(0, |(_, t)| *t)))
            .sum()
    }

    /// Reads `/proc/PID/task/*/{stat,schedstat}`; a thread that ends while it is read is left
    /// out.
    pub fn of(pid: u32) -> std::io::Result<Self> {
        let tick_ns = (1e9 / ticks_per_sec()) as u64;
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let entry = entry?;
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Some((name, ticks)) = parse_stat(&stat) else {
                continue;
            };
            let ns = std::fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|s| parse_schedstat(&s))
                .unwrap_or(ticks * tick_ns);
            threads.insert(tid, (name, ns));
        }
        Ok(Self(threads))
    }
}

/// A thread's time on the CPU, in nanoseconds: the first of `schedstat`'s three fields.
fn parse_schedstat(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// A thread's name and CPU ticks from its `stat` line: the name sits in parentheses (and may
/// hold spaces or parentheses itself), then `utime` and `stime` are the 12th and 13th fields
/// after it.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU µs per message per stage over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cpu {
    /// In [`Stage::ALL`]'s order.
    pub per_message_us: [f64; 6],
}

impl Cpu {
    /// What each stage spent between `before` and `after`, per message of `messages`. A thread
    /// born in the window counts from zero; one that ended in it is missed (the host's hot-path
    /// threads live as long as the run).
    pub fn between(before: &Threads, after: &Threads, messages: u64) -> Self {
        let mut ns = [0u64; 6];
        for (tid, (name, now)) in &after.0 {
            let then = before.0.get(tid).map_or(0, |(_, t)| *t);
            let stage = Stage::of(name) as usize;
            ns[stage] += now.saturating_sub(then);
        }
        let per_message_us = ns.map(|t| t as f64 / 1e3 / messages.max(1) as f64);
        Self { per_message_us }
    }

    pub fn stage(&self, stage: Stage) -> f64 {
        self.per_message_us[stage as usize]
    }

    pub fn total(&self) -> f64 {
        self.per_message_us.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name with spaces and parentheses, as the kernel writes it, and the two time fields;
    /// `schedstat`'s nanoseconds on the CPU.
    #[test]
    fn a_stat_line_gives_the_name_and_the_ticks() {
        let stat = "4242 (producer pollin) S 1 2 3 0 -1 4194368 10 0 0 0 170 35 0 0 20 0 9 0";
        assert_eq!(parse_stat(stat), Some(("producer pollin".into(), 205)));
        let odd = "7 (a (b) c) R 1 2 3 0 -1 0 0 0 0 0 5 6 0 0";
        assert_eq!(parse_stat(odd), Some(("a (b) c".into(), 11)));
        assert_eq!(
            parse_schedstat("411484934 55909147 1248\n"),
            Some(411_484_934)
        );
        assert_eq!(parse_schedstat(""), None);
    }

    /// This very thread, read as the bench reads the host's: its CPU time grows by about the
    /// work it does, to far finer than a clock tick.
    #[test]
    fn a_threads_cpu_time_is_read_in_nanoseconds() -> std::io::Result<()> {
        let me = std::process::id();
        let cpu_of_all =
            || -> std::io::Result<u64> { Ok(Threads::of(me)?.0.values().map(|(_, ns)| ns).sum()) };
        let before = cpu_of_all()?;
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(3) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_of_all()?;
        assert!(
            after > before,
            "3 ms of spinning read as no CPU time at all"
        );
        // Ticks would make every reading a whole number of them; nanoseconds almost never are.
        let tick_ns = (1e9 / ticks_per_sec()) as u64;
        assert!(
            before % tick_ns != 0 || after % tick_ns != 0,
            "read in whole clock ticks ({before} and {after} ns), not nanoseconds"
        );
        Ok(())
    }

    /// Threads go to their stages, the window's CPU time is per message, and a thread born in
    /// the window counts from zero.
    #[test]
    fn cpu_time_is_summed_per_stage_over_the_window() {
        assert_eq!(Stage::of("burrow-plugin-b"), Stage::Plugin);
        assert_eq!(Stage::of("rdk:broker1"), Stage::Librdkafka);
        assert_eq!(Stage::of("tokio-rt-worker"), Stage::Coordinator);
        let threads = |list: &[(u32, &str, u64)]| {
            Threads(
                list.iter()
                    .map(|(tid, name, t)| (*tid, ((*name).to_owned(), *t)))
                    .collect(),
            )
        };
        // Nanoseconds on the CPU.
        let before = threads(&[(1, "burrow-poll", 100_000), (2, "rdk:main", 10)]);
        let after = threads(&[
            (1, "burrow-poll", 300_000),
            (2, "rdk:main", 10),
            (3, "burrow-plugin-x", 50_000),
        ]);
        let cpu = Cpu::between(&before, &after, 1_000);
        assert!((cpu.stage(Stage::Poll) - 0.2).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.stage(Stage::Plugin) - 0.05).abs() < 1e-9);
        assert_eq!(cpu.stage(Stage::Librdkafka), 0.0);
        assert!((cpu.total() - 0.25).abs() < 1e-9);
    }
}
