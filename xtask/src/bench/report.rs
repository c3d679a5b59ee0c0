//! The printed tables and the JSON file, with a PASS/MISS verdict per target. A miss never
//! fails the command: this is a measurement, not a test.
use std::fmt::Write as _;

use serde_json::json;

use super::{
    host,
    latency::Latency,
    overhead::{Config, Goal, Overhead, Workload},
    stats::Spread,
    throughput::{self, Phase},
};

pub struct Results {
    pub machine: serde_json::Value,
    pub plan: serde_json::Value,
    /// Wall time of the measurements (the build excluded).
    pub elapsed_s: f64,
    pub overhead: Overhead,
    pub phases: Vec<Phase>,
    pub steady: Phase,
    pub latencies: Vec<Latency>,
}

/// A measured value against its target.
struct Verdict {
    what: String,
    value: f64,
    target: String,
    pass: bool,
}

const ZERO_LOSS_TARGET: f64 = 400_000.0;
/// Issue #12: RSS ≤ 32 MiB.
const RSS_TARGET_MIB: f64 = 32.0;
const LATENCY_P99_TARGET_MS: f64 = 100.0;

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn spread(s: Option<Spread>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{:.2} [{:.2}–{:.2}]", s.median, s.min, s.max))
}

impl Results {
    fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        for r in self.overhead.ratios().iter().filter(|r| r.config == Config::Mnsensor) {
            let (Some(goal), Some(cpu)) = (r.workload.goal, r.cpu) else { continue };
            out.push(Verdict {
                what: format!("{} (CPU ratio)", r.workload.label),
                value: cpu.median,
                target: format!("≤ {:.2}", goal.max),
                pass: cpu.median <= goal.max,
            });
            if let Some(stretch) = goal.stretch {
                out.push(Verdict {
                    what: format!("{} (CPU ratio, stretch)", r.workload.label),
                    value: cpu.median,
                    target: format!("≤ {stretch:.2}"),
                    pass: cpu.median <= stretch,
                });
            }
        }
        let best = throughput::best_zero_loss(&self.phases).map_or(0.0, |p| p.achieved_rate);
        out.push(Verdict {
            what: "zero-loss rate (file.open/s)".into(),
            value: best,
            target: format!("≥ {ZERO_LOSS_TARGET:.0}"),
            pass: best >= ZERO_LOSS_TARGET * 0.98,
        });
        let rss = self.steady.rss_max_kib as f64 / 1024.0;
        out.push(Verdict {
            what: format!("sensor RSS at {}/s (MiB)", self.steady.target_rate),
            value: rss,
            target: format!("≤ {RSS_TARGET_MIB:.0}"),
            pass: rss <= RSS_TARGET_MIB,
        });
        for l in &self.latencies {
            let p99 = l.p(99.0);
            out.push(Verdict {
                what: format!("delivery latency p99 at {}/s (ms)", l.rate),
                value: p99,
                target: format!("≤ {LATENCY_P99_TARGET_MS:.0}"),
                pass: p99 <= LATENCY_P99_TARGET_MS && l.seen == l.count,
            });
        }
        out
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = &self.machine;
        let rounds = self.plan["rounds"].as_u64().unwrap_or(0);
        let _ = writeln!(
            t,
            "\nmnsensor bench: {}, kernel {}, {} CPUs ({}), load {:.1} → {:.1}, {rounds} rounds",
            m["date"].as_str().unwrap_or("?"),
            m["kernel"].as_str().unwrap_or("?"),
            m["cpus"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["loadavg_start"].as_f64().unwrap_or(f64::NAN),
            host::loadavg()
        );
        let b = &m["sensor"];
        let _ = writeln!(
            t,
            "sensor: {} built {} from {}{}",
            b["path"].as_str().unwrap_or("?"),
            b["built"].as_str().unwrap_or("?"),
            b["git_head"].as_str().unwrap_or("?"),
            if b["worktree_dirty"].as_bool() == Some(true) { " + uncommitted changes" } else { "" }
        );
        overhead_table(&self.overhead, |w| w.goal, true, &mut t);
        self.rate_table(&mut t);
        self.latency_table(&mut t);
        let _ = writeln!(t, "\nTargets");
        for v in self.verdicts() {
            let value = if v.value < 10.0 { format!("{:.3}", v.value) } else { format!("{:.0}", v.value) };
            let _ = writeln!(t, "  {:<52} {value:>10}  {:<10} {}", v.what, v.target, pass(v.pass));
        }
        for warning in self.warnings() {
            let _ = writeln!(t, "warning: {warning}");
        }
        t
    }

    fn rate_table(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "\n2.-4. Protected open+close at fixed rates over {} files (default ring buffer, fresh sensor \
             per step; an open is delivered as a file.open record or folded into a file.close record; \
             records = file.open + file.close lines; sensor CPU per open made, and in % of one core until \
             it has caught up)",
            super::fixture::STORM_FILES
        );
        let _ = writeln!(
            t,
            "{:>9} {:>3} {:>5} {:>11} {:>21} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9}",
            "target/s",
            "thr",
            "secs",
            "achieved/s",
            "opens deliv/made",
            "folded",
            "records",
            "lost",
            "ns/open",
            "CPU %",
            "RSS MiB"
        );
        for p in self.phases.iter().chain([&self.steady]) {
            let _ = writeln!(
                t,
                "{:>9} {:>3} {:>5.1} {:>12} {:>21} {:>9} {:>9} {:>8} {:>8.0} {:>8.1} {:>9.1}",
                p.target_rate,
                p.threads,
                p.secs,
                format!("{:.0}{}", p.achieved_rate, if p.reached() { " " } else { "*" }),
                format!("{}/{}", p.delivered_opens, p.opens),
                p.folded,
                p.records,
                p.lost,
                p.ns_per_open(),
                p.cpu_pct(),
                p.rss_max_kib as f64 / 1024.0
            );
        }
        if self.phases.iter().chain([&self.steady]).any(|p| !p.reached()) {
            let _ = writeln!(
                t,
                "* the producer did not reach the target rate (below 90 %): above that step the limit is \
                 what the workload can generate with the sensor attached, not the ring buffer"
            );
        }
        let best = throughput::best_zero_loss(&self.phases);
        let _ = writeln!(
            t,
            "highest rate without loss: {}",
            best.map_or("none".to_owned(), |p| format!(
                "{:.0} file.open/s (target step {}/s)",
                p.achieved_rate, p.target_rate
            ))
        );
        let s = &self.steady;
        let _ = writeln!(
            t,
            "at {}/s for {:.0} s (last row): sensor {:.0} ns CPU per open made ({:.1}% of a core), VmRSS {:.1} MiB idle, {:.1} MiB max",
            s.target_rate,
            s.secs,
            s.ns_per_open(),
            s.cpu_pct(),
            s.rss_idle_kib as f64 / 1024.0,
            s.rss_max_kib as f64 / 1024.0
        );
    }

    fn latency_table(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "\n5. Delivery latency: open() to its file.open line in the jsonl file (tail polled every 1 ms)"
        );
        let _ = writeln!(
            t,
            "{:>7} {:>11} {:>9} {:>9} {:>9} {:>22}",
            "rate/s", "seen", "p50 ms", "p99 ms", "max ms", "kernel→line p50/p99"
        );
        for l in &self.latencies {
            let k = &l.kernel_to_written_ms;
            let _ = writeln!(
                t,
                "{:>7} {:>11} {:>9.1} {:>9.1} {:>9.1} {:>22}",
                l.rate,
                format!("{}/{}", l.seen, l.count),
                l.p(50.0),
                l.p(99.0),
                l.p(100.0),
                format!("{:.1}/{:.1}", super::stats::percentile(k, 50.0), super::stats::percentile(k, 99.0))
            );
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = super::sensor::incidents();
        let o = &self.overhead;
        let foreign: Vec<usize> = o.runs.iter().filter_map(|r| r.foreign_bpf).filter(|&n| n > 0).collect();
        if !foreign.is_empty() {
            w.push(format!(
                "{} of {} configuration runs had someone else's tracing BPF programs loaded (up to {}) \
                 before or after them; their rounds are left out of the ratios when 3 clean rounds remain",
                foreign.len(),
                o.runs.len(),
                foreign.iter().max().unwrap_or(&0)
            ));
        }
        for s in o.delivery_mismatches() {
            let lost =
                o.runs.iter().find(|r| r.round == s.round && r.config == s.config).and_then(|r| r.lost);
            w.push(format!(
                "round {} {}: the sensor wrote {} file.open records for {} opens \
                 (and reported {} records lost in that configuration)",
                s.round + 1,
                s.workload,
                s.delivered_opens.unwrap_or(0),
                s.expected_opens,
                lost.unwrap_or(0)
            ));
        }
        for p in self.phases.iter().chain([&self.steady]).filter(|p| p.unaccounted() > 0) {
            w.push(format!(
                "rate {}/s: {} opens neither delivered nor reported lost",
                p.target_rate,
                p.unaccounted()
            ));
        }
        for l in self.latencies.iter().filter(|l| l.seen < l.count) {
            w.push(format!(
                "latency at {}/s: {} of {} opens never appeared",
                l.rate,
                l.count - l.seen,
                l.count
            ));
        }
        w
    }

    pub fn json(&self) -> serde_json::Value {
        let verdicts: Vec<_> = self
            .verdicts()
            .iter()
            .map(|v| json!({ "what": v.what, "value": v.value, "target": v.target, "pass": v.pass }))
            .collect();
        json!({
            "machine": self.machine,
            "loadavg_end": host::loadavg(),
            "plan": self.plan,
            "elapsed_s": self.elapsed_s,
            "targets": verdicts,
            "warnings": self.warnings(),
            "overhead": self.overhead.json(),
            "rates": {
                "phases": self.phases.iter().map(Phase::json).collect::<Vec<_>>(),
                "best_zero_loss": throughput::best_zero_loss(&self.phases).map(Phase::json),
                "steady": self.steady.json(),
            },
            "latency": self.latencies.iter().map(Latency::json).collect::<Vec<_>>(),
        })
    }
}

/// Part 1's table: per workload, `none` and every other configuration's CPU ns/op with the
/// paired ratios, against the goal `goal` picks for the kernel class measured. Without
/// `absolute` (an emulated guest), times are left out (`-`): only the ratios mean anything.
pub fn overhead_table(
    o: &Overhead,
    goal: impl Fn(&Workload) -> Option<Goal>,
    absolute: bool,
    t: &mut String,
) {
    let ns = |v: f64, sign: bool| match (absolute, sign) {
        (false, _) => "-".to_owned(),
        (true, false) => format!("{v:.0}"),
        (true, true) => format!("{v:+.0}"),
    };
    let _ = writeln!(
        t,
        "\n1. Cost to other processes: CPU time of the workload thread per op; ratio = median of the \
         per-round paired ratios against `none` [min–max]"
    );
    let _ = writeln!(
        t,
        "{:<36} {:<9} {:>9}  {:<19} {:<19} {:>7}  target",
        "workload", "config", "CPU ns/op", "CPU ratio", "wall ratio", "+ns/op"
    );
    let ratios = o.ratios();
    for w in super::overhead::WORKLOADS {
        let none = o.absolute(Config::None, Config::Mnsensor, w.name).map_or(f64::NAN, |s| s.median);
        let _ = writeln!(t, "{:<36} {:<9} {:>9}", w.label, "none", ns(none, false));
        for r in ratios.iter().filter(|r| r.workload.name == w.name) {
            let abs = o.absolute(r.config, r.config, w.name).map_or(f64::NAN, |s| s.median);
            let target = match (r.config, goal(&w), r.cpu) {
                (Config::Mnsensor, Some(g), Some(cpu)) => {
                    let mut s = format!("≤ {:.2} {}", g.max, pass(cpu.median <= g.max));
                    if let Some(st) = g.stretch {
                        s += &format!(" (stretch ≤ {st:.2} {})", pass(cpu.median <= st));
                    }
                    s
                }
                _ => String::new(),
            };
            let diff = r.cpu_diff_ns.map_or(f64::NAN, |d| d.median);
            let _ = writeln!(
                t,
                "{:<36} {:<9} {:>9}  {:<19} {:<19} {:>7}  {target}",
                "",
                r.config.name(),
                ns(abs, false),
                spread(r.cpu),
                spread(r.wall),
                ns(diff, true)
            );
        }
    }
    for &config in o.configs.iter().filter(|&&c| c != Config::None) {
        let used = o.rounds_used(config);
        let all = o.runs.iter().filter(|r| r.config == config).count();
        if used.len() < all {
            let shown: Vec<String> = used.iter().map(|r| (r + 1).to_string()).collect();
            let _ = writeln!(
                t,
                "{} ratios from rounds {} of {all} (the others ran next to foreign tracers)",
                config.name(),
                shown.join(",")
            );
        }
    }
    for config in [Config::Mnsensor, Config::Auditd] {
        let runs: Vec<_> = o.runs.iter().filter(|r| r.config == config).collect();
        if runs.is_empty() {
            continue;
        }
        if !absolute {
            continue;
        }
        let cpu: Vec<f64> = runs.iter().filter_map(|r| Some(r.monitor_cpu_ns? as f64 / 1e9)).collect();
        let mut line = format!(
            "{} CPU per round: {:.2} s",
            config.name(),
            Spread::of(&cpu).map_or(f64::NAN, |s| s.median)
        );
        if config == Config::Mnsensor {
            // Per protected open made (records are fewer with kernel folding).
            let opens = |round| {
                o.samples
                    .iter()
                    .filter(|s| s.round == round && s.config == config)
                    .map(|s| s.expected_opens)
                    .sum::<u64>()
            };
            let per: Vec<f64> = runs
                .iter()
                .filter_map(|r| Some(r.monitor_cpu_ns? as f64 / opens(r.round).max(1) as f64))
                .collect();
            let records: Vec<f64> = runs.iter().filter_map(|r| Some(r.records? as f64)).collect();
            let lost: u64 = runs.iter().filter_map(|r| r.lost).sum();
            line += &format!(
                " ({:.0} ns per protected open made, {:.0} file records per round); records lost over all rounds: {lost}",
                Spread::of(&per).map_or(f64::NAN, |s| s.median),
                Spread::of(&records).map_or(f64::NAN, |s| s.median)
            );
        }
        let _ = writeln!(t, "{line}");
    }
}
