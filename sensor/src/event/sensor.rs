//! The sensor's own records: start, stop, event loss.
use sensor_common::event::{
    KIND_SLOTS, Kind,
    file::{LossKey, LossWho},
};

use super::{Name, Record, attr, json, time::rfc3339};
use crate::fanotify::Notice;

/// Version of the record schema (docs/events.md; changes in CHANGELOG.md). Written in
/// `sensor.start` and as the OTLP instrumentation scope's version.
pub const SCHEMA_VERSION: &str = "2";

/// What `sensor.start` reports.
pub struct StartInfo {
    pub kernel_release: String,
    pub programs: Vec<String>,
    pub program_ids: Vec<u32>,
    /// `fentry`, `tracepoint` or `off`.
    pub file_backend: &'static str,
    /// `fanotify` or `off`.
    pub file_observer: &'static str,
    /// `fentry`, `fanotify` or `off`.
    pub change_backend: &'static str,
    pub config_source: String,
    pub protect: Vec<String>,
    pub outputs: Vec<String>,
    pub ring_buffer_bytes: u32,
    pub processes_seeded: usize,
    pub policy_hash: String,
    pub policy_files: Vec<String>,
    /// `policy=backend` per policy (`fanotify`, `audit`, `none`).
    pub enforcement: Vec<String>,
    /// Tamper-signal kinds not watched on this kernel (their program did not load).
    pub tamper_off: Vec<&'static str>,
    /// The sensor's own files watched for changes, as `role=path` (`crate::selfwatch`).
    pub tamper_files: Vec<String>,
}

/// `sensor.start`.
pub fn start(time_ns: i128, info: &StartInfo) -> Record {
    let mut rec = Record::new(Name::SensorStart, time_ns);
    rec.set(attr::SERVICE_NAME, "mnsensor")
        .set(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION"))
        .set(attr::SCHEMA_VERSION, SCHEMA_VERSION)
        .set(attr::PROCESS_PID, std::process::id())
        .set(attr::KERNEL_RELEASE, info.kernel_release.as_str())
        .set(attr::BACKEND_PROCESS, "tracepoint")
        .set(attr::BACKEND_FILE, info.file_backend)
        .set(attr::BACKEND_FILE_OBSERVER, info.file_observer)
        .set(attr::BACKEND_FILE_CHANGE, info.change_backend)
        .set(attr::BACKEND_NETWORK, "tracepoint")
        .set(attr::BPF_PROGRAMS, &info.programs)
        .set(attr::BPF_PROGRAM_IDS, json::Numbers(&info.program_ids))
        .set(attr::TAMPER_OFF, info.tamper_off.as_slice())
        .set(attr::TAMPER_FILES, &info.tamper_files)
        .set(attr::CONFIG_SOURCE, info.config_source.as_str())
        .set(attr::CONFIG_PROTECT, &info.protect)
        .set(attr::CONFIG_OUTPUTS, &info.outputs)
        .set(attr::CONFIG_RING_BUFFER_BYTES, info.ring_buffer_bytes)
        .set(attr::PROCESSES_SEEDED, info.processes_seeded)
        .set(attr::POLICY_HASH, info.policy_hash.as_str())
        .set(attr::POLICY_FILES, info.policy_files.clone())
        .set(attr::POLICY_BACKENDS, info.enforcement.clone());
    rec
}

/// `sensor.policy_reloaded`: a new policy set is in force.
pub fn policy_reloaded(time_ns: i128, hash: &str, files: &[String]) -> Record {
    let mut rec = Record::new(Name::SensorPolicyReloaded, time_ns);
    rec.set(attr::POLICY_HASH, hash).set(attr::POLICY_FILES, files);
    rec
}

/// `sensor.policy_error`: a reload failed; the set with `hash` stays in force.
pub fn policy_error(time_ns: i128, hash: &str, error: &str) -> Record {
    let mut rec = Record::new(Name::SensorPolicyError, time_ns);
    rec.set(attr::POLICY_HASH, hash).set(attr::POLICY_ERROR, error);
    rec
}

/// `sensor.alert`: enforcement could not decide as it should (late decision, overload…).
pub fn alert(time_ns: i128, notice: &Notice) -> Record {
    let mut rec = Record::new(Name::SensorAlert, time_ns);
    let (kind, pid, path, applied) = match notice {
        Notice::DeadlineExpired { pid, path, applied } => {
            ("deadline_expired", Some(*pid), Some(path), Some(*applied))
        }
        Notice::Overloaded { pid, path, applied } => ("overloaded", Some(*pid), Some(path), Some(*applied)),
        Notice::DecisionPanicked { pid, path, applied } => {
            ("decision_failed", Some(*pid), Some(path), Some(*applied))
        }
        Notice::QueueOverflow => ("queue_overflow", None, None, None),
        Notice::Unwatched { path } => ("unwatched", None, Some(path), None),
        Notice::Error { message } => {
            rec.set(attr::POLICY_ERROR, message.as_str());
            ("error", None, None, None)
        }
    };
    rec.set(attr::ALERT_KIND, kind)
        .set_opt(attr::PROCESS_PID, pid)
        .set_opt(attr::FILE_PATH, path.map(super::path::of_os))
        .set_opt(
            attr::FILE_PATH_BYTES,
            path.and_then(|p| super::path::raw(&super::path::of_os(p))).map(|b| super::path::percent(&b)),
        )
        .set_opt(
            attr::DECISION,
            applied.map(|v| if v == crate::fanotify::Verdict::Allow { "allow" } else { "deny" }),
        );
    rec
}

/// `sensor.stop`.
pub fn stop(time_ns: i128, reason: &str, delivered: u64, filtered: u64, lost: u64) -> Record {
    let mut rec = Record::new(Name::SensorStop, time_ns);
    rec.set(attr::STOP_REASON, reason)
        .set(attr::EVENTS_DELIVERED, delivered)
        .set(attr::EVENTS_FILTERED, filtered)
        .set(attr::EVENTS_LOST, lost);
    rec
}

/// `sensor.event_loss` for per-kind `lost` counts over `[from_ns, to_ns]` and `fanotify`
/// observer overflows, or `None` when nothing was lost.
pub fn event_loss(
    from_ns: i128,
    to_ns: i128,
    lost: &[u64; KIND_SLOTS as usize],
    fanotify: u64,
    decisions: u64,
    who: &[(LossKey, LossWho)],
) -> Option<Record> {
    let mut lost = *lost;
    lost[Kind::PolicyDecision as usize] += decisions;
    let total: u64 = lost.iter().sum();
    if total == 0 && fanotify == 0 {
        return None;
    }
    let mut rec = Record::new(Name::SensorEventLoss, to_ns);
    rec.set(attr::LOSS_COUNT, total)
        .set(attr::LOSS_INTERVAL_START, rfc3339(from_ns))
        .set(attr::LOSS_INTERVAL_END, rfc3339(to_ns));
    if fanotify > 0 {
        rec.set(attr::LOSS_FANOTIFY, fanotify);
    }
    for kind in Kind::ALL {
        let n = lost[kind as usize];
        if n > 0 {
            rec.set(Name::of_kind(kind).loss_key(), n);
        }
    }
    if !who.is_empty() {
        rec.set(attr::LOSS_WHO, Who(who));
    }
    Some(rec)
}

/// `mnsensor.lost.who`: one object per (record kind, uid, file) that lost records in the
/// interval.
struct Who<'a>(&'a [(LossKey, LossWho)]);

impl json::Value for Who<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"event\":");
            let name = Kind::from_u32(k.kind).map_or("unknown", |kind| Name::of_kind(kind).as_str());
            json::string(out, name);
            out.extend_from_slice(b",\"uid\":");
            json::uint(out, u64::from(k.uid));
            out.extend_from_slice(b",\"device\":\"");
            json::uint(out, u64::from(k.dev >> 20));
            out.push(b':');
            json::uint(out, u64::from(k.dev & 0xf_ffff));
            out.extend_from_slice(b"\",\"inode\":");
            json::uint(out, k.ino);
            out.extend_from_slice(b",\"records\":");
            json::uint(out, v.records);
            out.extend_from_slice(b",\"opens\":");
            json::uint(out, v.opens);
            out.push(b'}');
        }
        out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::event::KIND_SLOTS;

    use super::event_loss;

    #[test]
    fn loss_record_counts_per_kind() {
        assert!(event_loss(0, 1, &[0; KIND_SLOTS as usize], 0, 0, &[]).is_none());
        let mut lost = [0u64; KIND_SLOTS as usize];
        lost[4] = 12;
        lost[1] = 3;
        let rec = event_loss(0, 1_000_000_000, &lost, 0, 0, &[]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec.to_json(1, "h")).unwrap();
        assert_eq!(v["mnsensor.loss.count"], 15);
        assert_eq!(v["mnsensor.loss.file.open"], 12);
        assert_eq!(v["mnsensor.loss.process.exec"], 3);
        assert!(v.get("mnsensor.loss.network.close").is_none());
    }

    #[test]
    fn loss_record_names_who_lost_records() {
        use sensor_common::event::{
            Kind,
            file::{LossKey, LossWho},
        };
        let mut lost = [0u64; KIND_SLOTS as usize];
        lost[Kind::FileClose as usize] = 2;
        let key = LossKey { kind: Kind::FileClose as u32, uid: 1001, dev: 8 << 20 | 3, _pad: 0, ino: 77 };
        let rec = event_loss(0, 1, &lost, 0, 0, &[(key, LossWho { records: 2, opens: 40 })]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec.to_json(1, "h")).unwrap();
        assert_eq!(
            v["mnsensor.lost.who"],
            serde_json::json!([{"event": "file.close", "uid": 1001, "device": "8:3", "inode": 77, "records": 2, "opens": 40}])
        );
    }
}
