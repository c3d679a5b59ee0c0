//! The sensor's health, for the SIEM and for monitoring: counters every record updates, the
//! periodic `sensor.heartbeat` record (docs/events.md) and the Prometheus text endpoint
//! ([`metrics`], docs/operations.md).
//!
//! The daemon counts every record it writes ([`Stats::count`]) and calls [`Heartbeat::tick`]
//! from its once-a-second timer, which also copies each output's lag and the ledger's size
//! from the sealer ([`Stats::set_output_lags`], [`Stats::set_ledger_bytes`]).
pub mod metrics;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    deliver::LagReport,
    event::{Record, attr},
};

/// How long processes waited for fanotify permission decisions: from the sensor reading
/// the permission event to its verdict (`enforce::Decider::on_permission`). Decisions the
/// BPF LSM makes in the kernel are not in it.
pub static DECISION_LATENCY: Histogram = Histogram::new();

/// A latency histogram with fixed buckets, updated without locks.
#[derive(Debug)]
pub struct Histogram {
    /// Observations at or below each bound of [`Histogram::BOUNDS_US`] (not cumulative), then above all.
    buckets: [AtomicU64; 13],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Upper bounds of the buckets, in microseconds.
    pub const BOUNDS_US: [u64; 12] =
        [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000];

    pub const fn new() -> Self {
        Self { buckets: [const { AtomicU64::new(0) }; 13], sum_ns: AtomicU64::new(0) }
    }

    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = Self::BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(Self::BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is the total), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let counts = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (counts, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// `heartbeat:` in the configuration file.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Seconds between two `sensor.heartbeat` records; 0 turns them off.
    pub interval_s: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self { interval_s: 30 }
    }
}

/// Counters shared by the daemon, the delivery driver, the heartbeat and the metrics endpoint.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Records written, by `event.name`.
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Kernel records lost during the run.
    lost: AtomicU64,
    /// Bytes the ledger holds on disk; `u64::MAX` until the first report.
    ledger_bytes: AtomicU64,
    outputs: Mutex<Vec<LagReport>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            counts: Mutex::default(),
            lost: AtomicU64::new(0),
            ledger_bytes: AtomicU64::new(u64::MAX),
            outputs: Mutex::default(),
        }
    }
}

impl Stats {
    /// Counts one record written.
    pub fn count(&self, name: &'static str) {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner).entry(name).or_default() += 1;
    }

    /// Records written so far, by event name.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sets the run's total of lost kernel records.
    pub fn set_lost(&self, total: u64) {
        self.lost.store(total, Ordering::Relaxed);
    }

    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Sets the ledger's size on disk.
    pub fn set_ledger_bytes(&self, bytes: u64) {
        self.ledger_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The ledger's size on disk, once reported.
    pub fn ledger_bytes(&self) -> Option<u64> {
        Some(self.ledger_bytes.load(Ordering::Relaxed)).filter(|&b| b != u64::MAX)
    }

    /// Sets every output's lag.
    pub fn set_output_lags(&self, lags: Vec<LagReport>) {
        *self.outputs.lock().unwrap_or_else(PoisonError::into_inner) = lags;
    }

    /// Every output's lag, as last reported.
    pub fn output_lags(&self) -> Vec<LagReport> {
        self.outputs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The backends `sensor.start` reported, as `KIND=BACKEND`, then the per-policy enforcement.
pub fn backends(info: &crate::event::sensor::StartInfo) -> Vec<String> {
    let mut out = vec![
        "process=tracepoint".to_owned(),
        format!("file={}", info.file_backend),
        format!("file_change={}", info.change_backend),
        format!("file_observer={}", info.file_observer),
        "network=tracepoint".to_owned(),
    ];
    out.extend(info.enforcement.iter().cloned());
    out
}

/// Writes `sensor.heartbeat` every interval.
pub struct Heartbeat {
    pub stats: Arc<Stats>,
    interval: Option<Duration>,
    last: Instant,
    /// `kind=backend` pairs, as in `sensor.start`.
    backends: Vec<String>,
}

impl Heartbeat {
    /// A heartbeat every `config.interval_s` (none when 0), reporting `backends`.
    pub fn new(config: &HeartbeatConfig, stats: Arc<Stats>, backends: Vec<String>) -> Self {
        let interval = (config.interval_s > 0).then(|| Duration::from_secs(config.interval_s));
        Self { stats, interval, last: Instant::now(), backends }
    }

    /// Called every second: the heartbeat record when one is due. A tick up to half a second
    /// early counts (ticks are not exactly a second apart), and the schedule keeps its phase
    /// unless it fell a whole interval behind.
    pub fn tick(&mut self, now_ns: i128, policy_hash: &str) -> Option<Record> {
        let interval = self.interval?;
        let due = self.last + interval;
        if Instant::now() + Duration::from_millis(500) < due {
            return None;
        }
        self.last = if due.elapsed() > interval { Instant::now() } else { due };
        Some(self.record(now_ns, policy_hash))
    }

    /// The `sensor.heartbeat` record now.
    pub fn record(&self, now_ns: i128, policy_hash: &str) -> Record {
        let s = &self.stats;
        let counts: Vec<String> = s.counts().iter().map(|(name, n)| format!("{name}={n}")).collect();
        let lags = s.output_lags();
        let mut rec = Record::new(crate::event::Name::SensorHeartbeat, now_ns);
        rec.set(attr::UPTIME_SECONDS, s.uptime().as_secs())
            .set(attr::POLICY_HASH, policy_hash)
            .set(attr::HEARTBEAT_BACKENDS, self.backends.clone())
            .set(attr::HEARTBEAT_RECORDS, s.counts().values().sum::<u64>())
            .set(attr::HEARTBEAT_COUNTS, counts)
            .set(attr::EVENTS_LOST, s.lost())
            .set_opt(attr::LEDGER_BYTES, s.ledger_bytes());
        if !lags.is_empty() {
            rec.set(attr::OUTPUTS, lags.iter().map(|l| l.spec.clone()).collect::<Vec<_>>())
                .set(
                    attr::OUTPUT_LAG_RECORDS,
                    crate::event::json::Numbers(&lags.iter().map(|l| l.records).collect::<Vec<_>>()),
                )
                .set(
                    attr::OUTPUT_LAG_SECONDS,
                    crate::event::json::Numbers(&lags.iter().map(|l| l.seconds).collect::<Vec<_>>()),
                );
        }
        rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_reports_counters_when_due() {
        let stats = Arc::new(Stats::default());
        let mut hb = Heartbeat::new(&HeartbeatConfig { interval_s: 0 }, stats.clone(), vec![]);
        assert!(hb.tick(1, "h").is_none(), "interval 0 turns heartbeats off");
        hb = Heartbeat::new(&HeartbeatConfig { interval_s: 1 }, stats.clone(), vec!["file=fentry".into()]);
        assert!(hb.tick(1, "h").is_none(), "not due yet");
        stats.count("file.open");
        stats.count("file.open");
        stats.count("process.exec");
        stats.set_lost(5);
        stats.set_output_lags(vec![LagReport { spec: "otlp".into(), records: 7, seconds: 2, failing: true }]);
        hb.last -= Duration::from_millis(600);
        let rec = hb.tick(1, "abc").expect("due within half a second");
        let rec: serde_json::Value = serde_json::from_str(&rec.to_json(0, "h")).expect("JSON");
        assert_eq!(rec.get("mnsensor.heartbeat.records"), Some(&3.into()));
        assert_eq!(rec.get("mnsensor.heartbeat.counts"), Some(&vec!["file.open=2", "process.exec=1"].into()));
        assert_eq!(rec.get("mnsensor.events.lost"), Some(&5.into()));
        assert_eq!(rec.get("mnsensor.policy.hash"), Some(&"abc".into()));
        assert_eq!(rec.get("mnsensor.ledger.bytes"), None, "unknown until the driver reports it");
        assert_eq!(rec.get("mnsensor.lag.records"), Some(&vec![7].into()));
        assert_eq!(rec.get("mnsensor.lag.seconds"), Some(&vec![2].into()));
        assert!(hb.tick(1, "abc").is_none(), "once per interval");
    }
}
