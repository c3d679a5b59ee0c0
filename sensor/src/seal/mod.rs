//! Seal: numbers each record, masks My Numbers in it ([`redact`]), and appends it to the
//! hash-chained ledger ([`ledger`]). Every output then tails the ledger (`crate::deliver`).
//!
//! [`Sealer`] is what the daemon's consumer writes to: `emit` per record, `flush` every
//! drain period, `close` at stop (outputs drain everything sealed before the process exits).
pub mod bench;
pub mod cli;
pub mod frame;
pub mod key;
pub mod ledger;
pub mod reader;
pub mod redact;
pub mod verify;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::{
    config::Config,
    deliver::{DeliverError, Exporter, Lag, LagReport, Tails},
    event::{Name, Record},
};

/// How long outputs may take at stop to deliver what is sealed (a failing one keeps the rest
/// in the ledger for the next start).
const DRAIN_AT_STOP: Duration = Duration::from_secs(5);

/// Why sealing could not start.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("cannot create state directory {path}: {source}")]
    StateDir { path: std::path::PathBuf, source: std::io::Error },
}

/// A record the seal stage writes itself (ledger gaps and losses, rejected batches).
struct Notice {
    name: &'static str,
    time_ns: i128,
    attrs: Vec<(&'static str, Value)>,
}

/// Numbers, redacts and appends records; owns the output threads.
pub struct Sealer {
    ledger: ledger::Ledger,
    tails: Tails,
    host: String,
    pending: Vec<Notice>,
    /// The JSON line being sealed (reused for every record).
    line: Vec<u8>,
    /// Records sealed since the last flush.
    pub dirty: bool,
    /// My Numbers masked so far.
    pub redacted: u64,
    /// Records sealed, by event name (heartbeat and metrics).
    pub stats: Arc<crate::health::Stats>,
}

impl Sealer {
    /// Opens the ledger in `config.state_dir` (created 0700; the signing key is made at
    /// first start), repairs a torn tail, and starts one tail thread per exporter.
    pub fn open(config: &Config, exporters: Vec<Box<dyn Exporter>>) -> Result<Self, SealError> {
        let state = &config.state_dir;
        ledger::create_private_dir(state)
            .map_err(|source| SealError::StateDir { path: state.clone(), source })?;
        let key = key::load_or_create(state)?;
        let (ledger, recovery) = ledger::Ledger::open(state, config.ledger.settings(), key)?;
        let tails = Tails::start(exporters, ledger.shared().clone(), state, ledger.next_seq())?;
        let mut sealer = Self {
            ledger,
            tails,
            host: host_name(),
            pending: Vec::new(),
            line: Vec::with_capacity(4096),
            dirty: false,
            redacted: 0,
            stats: Arc::default(),
        };
        sealer.note_recovery(&recovery);
        Ok(sealer)
    }

    /// After any previous run: `sensor.gap` from its last frame (the final checkpoint of a
    /// clean stop, else the last record or heartbeat) to now (queued; sealed right after the
    /// next record, which is `sensor.start`).
    fn note_recovery(&mut self, r: &ledger::Recovery) {
        let Some(last_seq) = r.last_seq else { return };
        let now = i128::from(ledger::now_ns());
        let gap_ns = now - i128::from(r.last_time_ns);
        let mut attrs = vec![
            ("mnsensor.gap.start", Value::from(crate::event::time::rfc3339(i128::from(r.last_time_ns)))),
            ("mnsensor.gap.end", Value::from(crate::event::time::rfc3339(now))),
            ("mnsensor.gap.seconds", Value::from(gap_ns as f64 / 1e9)),
            ("mnsensor.gap.last_seq", Value::from(last_seq)),
            ("mnsensor.gap.clean", Value::from(r.clean)),
        ];
        if let Some((bytes, segment, why)) = &r.cut {
            attrs.push(("mnsensor.ledger.cut_bytes", Value::from(*bytes)));
            attrs.push(("mnsensor.ledger.cut_segment", Value::from(segment.as_str())));
            attrs.push(("mnsensor.ledger.cut_reason", Value::from(*why)));
        }
        if r.clean && r.cut.is_none() {
            tracing::info!(
                last_seq,
                seconds = gap_ns as f64 / 1e9,
                "Recording the gap since the previous run stopped."
            );
        } else {
            tracing::warn!(last_seq, clean = r.clean, cut = ?r.cut, "The previous run did not stop cleanly; recording the gap.");
        }
        self.pending.push(Notice { name: Name::SensorGap.as_str(), time_ns: now, attrs });
    }

    /// Seals one record.
    pub fn emit(&mut self, rec: &Record) -> Result<(), SealError> {
        self.stats.count(rec.name);
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        rec.encode(self.ledger.next_seq(), &self.host, &mut line);
        self.append(rec.time_ns, &mut line);
        self.line = line;
        if !self.pending.is_empty() {
            self.seal_pending();
        }
        Ok(())
    }

    fn append(&mut self, time_ns: i128, line: &mut Vec<u8>) {
        self.redacted += redact::redact(line, true) as u64;
        self.ledger.append(i64::try_from(time_ns).unwrap_or(i64::MAX), line);
        self.dirty = true;
    }

    /// Queues notices about records the ledger or an output lost, then seals all queued.
    fn seal_notices(&mut self) {
        let now = i128::from(ledger::now_ns());
        for d in self.ledger.take_dropped() {
            let (kind, first, last, error) = match d {
                ledger::Dropped::Pruned { first, last } => ("ledger_full", first, last, None),
                ledger::Dropped::Unwritten { first, last, error } => {
                    ("ledger_write_failed", first, last, Some(error))
                }
            };
            let mut attrs = vec![
                ("mnsensor.alert.kind", Value::from(kind)),
                ("mnsensor.ledger.dropped_seq", Value::from(vec![format!("{first}-{last}")])),
                ("mnsensor.ledger.dropped_records", Value::from(last - first + 1)),
            ];
            if let Some(e) = error {
                attrs.push(("mnsensor.ledger.error", Value::from(e)));
            }
            self.pending.push(Notice { name: Name::SensorAlert.as_str(), time_ns: now, attrs });
        }
        for r in self.tails.take_rejected() {
            let attrs = vec![
                ("mnsensor.alert.kind", Value::from("output_rejected")),
                ("mnsensor.output", Value::from(r.spec)),
                ("mnsensor.ledger.dropped_seq", Value::from(vec![format!("{}-{}", r.first, r.last)])),
                ("mnsensor.ledger.dropped_records", Value::from(r.last - r.first + 1)),
                ("mnsensor.ledger.error", Value::from(r.error)),
            ];
            self.pending.push(Notice { name: Name::SensorAlert.as_str(), time_ns: now, attrs });
        }
        self.seal_pending();
    }

    fn seal_pending(&mut self) {
        for n in std::mem::take(&mut self.pending) {
            let mut line = notice_json(&n, self.ledger.next_seq(), &self.host);
            self.append(n.time_ns, &mut line);
        }
    }

    /// Writes what was sealed to the ledger and wakes the outputs.
    pub fn flush(&mut self) {
        self.ledger.flush();
        self.dirty = false;
        // Losses this write found, and batches outputs rejected, are sealed and written too.
        self.seal_notices();
        if self.dirty {
            self.ledger.flush();
            self.dirty = false;
        }
    }

    /// SIGHUP: outputs reopen their files or connections.
    pub fn reopen(&self) {
        self.tails.reopen();
    }

    /// Lag of every output.
    pub fn lags(&self) -> Vec<LagReport> {
        self.tails.lags()
    }

    /// The shared lag structs (for a heartbeat).
    pub fn lag_handles(&self) -> &[Arc<Lag>] {
        self.tails.lag_handles()
    }

    /// Bytes the ledger takes.
    pub fn ledger_bytes(&self) -> u64 {
        self.ledger.bytes()
    }

    /// Clean stop: final signed checkpoint, fsync, then every output delivers what was sealed.
    pub fn close(mut self) {
        self.seal_notices();
        self.ledger.close();
        self.tails.finish(DRAIN_AT_STOP);
    }
}

/// The JSON line of a notice (same head as every record: docs/events.md).
fn notice_json(n: &Notice, seq: u64, host: &str) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("event.name".into(), n.name.into());
    map.insert("time".into(), crate::event::time::rfc3339(n.time_ns).into());
    map.insert("mnsensor.seq".into(), seq.into());
    map.insert("host.name".into(), host.into());
    for (k, v) in &n.attrs {
        map.insert((*k).into(), v.clone());
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

/// This host's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}
