//! Part 5: from the open syscall to its `file.open` line in the output file. The workload reads
//! CLOCK_REALTIME just before each open of a distinct protected file; a reader thread here tails
//! the jsonl file every millisecond and notes when each record's line appears.
use std::{
    fs,
    io::Read as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{
    Ctx,
    clock::{parse_rfc3339_ns, realtime_ns},
    interrupt,
    sensor::{Sensor, event_name, field},
    stats::percentile,
};
use crate::cmd::step;

#[derive(Clone, Debug)]
pub struct Latency {
    pub rate: u64,
    pub count: usize,
    pub seen: usize,
    /// Syscall to line written, ms, ascending.
    pub written_ms: Vec<f64>,
    /// The record's kernel `time` to line written, ms, ascending.
    pub kernel_to_written_ms: Vec<f64>,
}

impl Latency {
    pub fn p(&self, p: f64) -> f64 {
        percentile(&self.written_ms, p)
    }

    pub fn json(&self) -> serde_json::Value {
        let k = &self.kernel_to_written_ms;
        json!({
            "rate": self.rate, "count": self.count, "seen": self.seen,
            "p50_ms": self.p(50.0), "p99_ms": self.p(99.0), "max_ms": self.p(100.0),
            "kernel_to_written_p50_ms": percentile(k, 50.0), "kernel_to_written_p99_ms": percentile(k, 99.0),
        })
    }
}

/// Steady traffic after the last probe: the output is flushed when its 64 KiB buffer fills or
/// once a second, so without it the last probes of a run would wait for the timer.
const TAIL_SECS: f64 = 1.5;

/// Opens `count` files `lat-FIRST…` at `rate` per second through a fresh sensor.
pub fn run(ctx: &Ctx, rate: u64, first: usize, count: usize) -> Result<Latency> {
    interrupt::check()?;
    let jsonl = ctx.fixture.log("latency.jsonl");
    let sensor =
        Sensor::start(&ctx.sensor_bin, &ctx.fixture.protected, &jsonl, &ctx.fixture.log("latency.log"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (jsonl, stop) = (jsonl.clone(), stop.clone());
        thread::spawn(move || tail(&jsonl, first, count, &stop))
    };
    let workload = ctx.workload(&[
        "latency",
        "--dir",
        &ctx.fixture.latency_dir.to_string_lossy(),
        "--first",
        &first.to_string(),
        "--count",
        &count.to_string(),
        "--rate",
        &rate.to_string(),
        "--tail-path",
        &ctx.fixture.secret_file.to_string_lossy(),
        "--tail-secs",
        &TAIL_SECS.to_string(),
    ]);
    // The sensor flushes its output at least once a second: 3 s is plenty for the last lines.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    sensor.stop()?;
    fs::remove_file(&jsonl)?;
    let workload = workload?;
    let sent: Vec<u64> = workload["t_ns"]
        .as_array()
        .context("latency workload output")?
        .iter()
        .map(|t| t.as_u64().unwrap_or(0))
        .collect();
    let mut written_ms = Vec::new();
    let mut kernel_to_written_ms = Vec::new();
    for (t_sent, seen) in sent.iter().zip(&seen) {
        if let Some((t_seen, t_kernel)) = seen {
            written_ms.push((*t_seen as f64 - *t_sent as f64) / 1e6);
            kernel_to_written_ms.push((*t_seen as f64 - *t_kernel as f64) / 1e6);
        }
    }
    written_ms.sort_by(f64::total_cmp);
    kernel_to_written_ms.sort_by(f64::total_cmp);
    let lat = Latency { rate, count, seen: written_ms.len(), written_ms, kernel_to_written_ms };
    step(format!(
        "bench: latency at {rate}/s: {} of {count} seen, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.seen,
        lat.p(50.0),
        lat.p(99.0),
        lat.p(100.0)
    ));
    Ok(lat)
}

/// (appearance time, kernel time) of the `file.open` of `lat-(first+i)`, for i in 0..count.
type Seen = Vec<Option<(u64, u64)>>;

fn tail(path: &Path, first: usize, count: usize, stop: &AtomicBool) -> Result<Seen> {
    let mut seen: Seen = vec![None; count];
    let mut found = 0;
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    while found < count && !stop.load(Ordering::SeqCst) {
        let got = file.read(&mut chunk)?;
        if got == 0 {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        let now = realtime_ns();
        pending.extend_from_slice(&chunk[..got]);
        let complete = pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in pending[..complete].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if event_name(&line) != Some("file.open") {
                continue;
            }
            let Some(i) =
                field(&line, "file.name").and_then(|n| n.strip_prefix("lat-")?.parse::<usize>().ok())
            else {
                continue;
            };
            let kernel = field(&line, "time").and_then(parse_rfc3339_ns).unwrap_or(0);
            if let Some(slot) = i.checked_sub(first).and_then(|i| seen.get_mut(i))
                && slot.is_none()
            {
                *slot = Some((now, kernel));
                found += 1;
            }
        }
        pending.drain(..complete);
    }
    Ok(seen)
}
