//! Parts 2 to 4: protected opens at fixed rates through a fresh sensor with the default ring
//! buffer, spread over the fixture's storm files. Per phase: opens made, opens delivered (as
//! `file.open` records or folded into `file.close` records), losses, the sensor's CPU per open
//! made and its RSS.
use std::{
    fs,
    io::Read as _,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{Ctx, interrupt, sensor::Sensor};
use crate::cmd::step;

/// One fixed-rate phase.
#[derive(Clone, Debug)]
pub struct Phase {
    pub target_rate: u64,
    pub threads: u32,
    pub secs: f64,
    /// open+close pairs the producer made, and per second.
    pub opens: u64,
    pub achieved_rate: f64,
    /// Opens of the producer the sensor delivered: its `file.open` records plus the opens
    /// folded into its `file.close` records (`folded`).
    pub delivered_opens: u64,
    pub folded: u64,
    /// All `file.open` + `file.close` records (lines): with folding, far fewer than opens.
    pub records: u64,
    pub lost: u64,
    /// Sensor CPU from the producer's start until the sensor is idle again (drained).
    pub sensor_cpu_ns: u64,
    /// That window: the producer's run plus the sensor's catching up, in s.
    pub busy_s: f64,
    pub rss_idle_kib: u64,
    pub rss_max_kib: u64,
}

impl Phase {
    pub fn zero_loss(&self) -> bool {
        self.lost == 0 && self.delivered_opens == self.opens
    }

    /// Opens neither delivered nor reported lost.
    pub fn unaccounted(&self) -> u64 {
        self.opens.saturating_sub(self.delivered_opens + self.lost)
    }

    /// Whether the producer made at least 90 % of the target rate.
    pub fn reached(&self) -> bool {
        self.achieved_rate >= 0.9 * self.target_rate as f64
    }

    /// Sensor CPU per open+close the workload made: with kernel folding a record stands for
    /// many opens, so CPU per record would not compare runs.
    pub fn ns_per_open(&self) -> f64 {
        self.sensor_cpu_ns as f64 / self.opens.max(1) as f64
    }

    /// Sensor CPU over its busy window, in % of one core.
    pub fn cpu_pct(&self) -> f64 {
        self.sensor_cpu_ns as f64 / (self.busy_s * 1e9) * 100.0
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "target_rate": self.target_rate, "threads": self.threads, "secs": self.secs,
            "opens": self.opens, "achieved_rate": self.achieved_rate,
            "delivered_opens": self.delivered_opens, "folded_opens": self.folded, "records": self.records, "lost": self.lost,
            "unaccounted_opens": self.unaccounted(), "zero_loss": self.zero_loss(), "reached_target": self.reached(),
            "sensor_cpu_ns": self.sensor_cpu_ns, "sensor_ns_per_open": self.ns_per_open(),
            "sensor_busy_s": self.busy_s, "sensor_cpu_pct": self.cpu_pct(), "rss_idle_kib": self.rss_idle_kib, "rss_max_kib": self.rss_max_kib,
        })
    }
}

/// One producer thread up to 200 k/s, two above (the VM has two CPUs; the sensor shares them).
pub fn threads_for(rate: u64) -> u32 {
    if rate <= 200_000 { 1 } else { 2 }
}

pub fn phase(ctx: &Ctx, rate: u64, secs: f64) -> Result<Phase> {
    interrupt::check()?;
    let threads = threads_for(rate);
    let jsonl = ctx.fixture.log("rate.jsonl");
    let sensor =
        Sensor::start(&ctx.sensor_bin, &ctx.fixture.protected, &jsonl, &ctx.fixture.log("rate.log"))?;
    thread::sleep(Duration::from_millis(300));
    let rss_idle_kib = sensor.rss_kib()?;
    let mut rss_max_kib = rss_idle_kib;
    let cpu0 = sensor.cpu_ns()?;
    let t0 = Instant::now();
    let secs_arg = secs.to_string();
    let (rate_arg, threads_arg) = (rate.to_string(), threads.to_string());
    let paths: Vec<String> =
        ctx.fixture.storm_files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let mut args = vec!["produce", "--rate", &rate_arg, "--threads", &threads_arg, "--secs", &secs_arg];
    for p in &paths {
        args.extend(["--path", p.as_str()]);
    }
    let mut child =
        ctx.workload_command(&args).stdout(Stdio::piped()).spawn().context("starting the producer")?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        rss_max_kib = rss_max_kib.max(sensor.rss_kib()?);
        thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    child.stdout.take().context("producer stdout")?.read_to_string(&mut stdout)?;
    anyhow::ensure!(status.success(), "the producer failed ({status})");
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).context("producer output")?;
    // Catch-up: the sensor is busy until it has drained what the producer left (under 2 ms of
    // CPU per 100 ms); then at least 1.2 s in all, so that a once-a-second loss report is out.
    let done = Instant::now();
    let (mut last, mut busy_until) = (sensor.cpu_ns()?, done);
    loop {
        thread::sleep(Duration::from_millis(100));
        rss_max_kib = rss_max_kib.max(sensor.rss_kib()?);
        let now = sensor.cpu_ns()?;
        if now.saturating_sub(last) >= 2_000_000 {
            busy_until = Instant::now();
        }
        last = now;
        let idle = busy_until.elapsed() >= Duration::from_millis(300);
        if (idle && done.elapsed() >= Duration::from_millis(1200)) || done.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    let sensor_cpu_ns = last.saturating_sub(cpu0);
    let busy_s = (busy_until - t0).as_secs_f64();
    let tally = sensor.stop()?;
    fs::remove_file(&jsonl)?;
    let pid = out["pid"].as_u64().unwrap_or(0) as u32;
    let phase = Phase {
        target_rate: rate,
        threads,
        secs: out["elapsed_s"].as_f64().unwrap_or(secs),
        opens: out["opens"].as_u64().unwrap_or(0),
        achieved_rate: out["rate"].as_f64().unwrap_or(0.0),
        delivered_opens: tally.opens_by_pid.get(&pid).copied().unwrap_or(0),
        folded: tally.folded_by_pid.get(&pid).copied().unwrap_or(0),
        records: tally.count("file.open") + tally.count("file.close"),
        lost: tally.lost_total(),
        sensor_cpu_ns,
        busy_s,
        rss_idle_kib,
        rss_max_kib,
    };
    step(format!(
        "bench: rate {:>7}/s x{} -> {:>7.0} opens/s, delivered {} of {} ({} folded, {} records), lost {}, sensor {:.0} ns/open ({:.1}% CPU), RSS max {} KiB",
        rate,
        threads,
        phase.achieved_rate,
        phase.delivered_opens,
        phase.opens,
        phase.folded,
        phase.records,
        phase.lost,
        phase.ns_per_open(),
        phase.cpu_pct(),
        phase.rss_max_kib
    ));
    Ok(phase)
}

/// The highest phase (by achieved rate) without loss, and whether it reached its target rate.
pub fn best_zero_loss(phases: &[Phase]) -> Option<&Phase> {
    phases.iter().filter(|p| p.zero_loss()).max_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate))
}
