//! `mnsensor ledger bench` (hidden; run by `cargo xtask bench --ledger`): the seal stage's
//! cost per record (redaction, hash chain, frame, write) and the cost of the fsync policy.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{
    key,
    ledger::{Ledger, Settings},
    redact,
};

/// A typical `process.exec` record (about 800 bytes), varied per record.
fn sample(i: u64) -> Vec<u8> {
    format!(
        r#"{{"event.name":"process.exec","time":"2026-12-06T10:00:00.{i:09}Z","mnsensor.seq":{i},"host.name":"fs01","process.pid":{},"process.thread.id":{},"process.parent_pid":1234,"process.user.id":1000,"process.user.name":"tanaka","process.real_user.id":1000,"process.real_user.name":"tanaka","mnsensor.process.group.id":1000,"mnsensor.process.group.name":"staff","mnsensor.process.real_group.id":1000,"mnsensor.process.comm":"cp","process.executable.path":"/usr/bin/cp","process.executable.name":"cp","process.command_line":"cp /srv/share/payroll/2026-{}/employees.csv /tmp/x{}","process.command_args":["cp","/srv/share/payroll/2026-{}/employees.csv","/tmp/x{}"],"process.working_directory":"/home/tanaka","mnsensor.process.login_user.id":1000,"mnsensor.process.login_user.name":"tanaka","process.session_leader.pid":999,"mnsensor.process.tty":"pts/0"}}"#,
        10_000 + i % 50_000,
        10_000 + i % 50_000,
        i % 12,
        i,
        i % 12,
        i
    )
    .into_bytes()
}

/// CPU time of this thread (the machine may be shared: wall time would count the others).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Seals `records` records into a ledger in `state_dir` (flushing every 1000 records, as the
/// daemon does every drain period under load) and prints the rates as one JSON line:
/// per-record costs in CPU time of the sealing thread, rates in wall time.
pub fn run(state_dir: &Path, records: u64, fsync_interval_ms: u64) -> Result<(), String> {
    super::ledger::create_private_dir(state_dir).map_err(|e| e.to_string())?;
    let key = key::load_or_create(state_dir).map_err(|e| e.to_string())?;
    let settings = Settings {
        segment_bytes: 64 << 20,
        max_bytes: 1 << 40,
        fsync_interval: Duration::from_millis(fsync_interval_ms),
        checkpoint_records: 10_000,
        checkpoint_interval: Duration::from_secs(10),
    };
    let (mut ledger, _) = Ledger::open(state_dir, settings, key).map_err(|e| e.to_string())?;
    let lines: Vec<Vec<u8>> = (0..1000).map(sample).collect();
    // Redaction alone (the scan; nothing to mask).
    let t = cpu_time();
    let mut masked = 0;
    for i in 0..records {
        let mut l = lines[(i % 1000) as usize].clone();
        masked += redact::redact(&mut l, true);
    }
    let clone_and_redact = cpu_time() - t;
    let t = cpu_time();
    for i in 0..records {
        std::hint::black_box(lines[(i % 1000) as usize].clone());
    }
    let clone_only = cpu_time() - t;
    // The whole seal stage.
    let mut bytes = 0u64;
    let t = Instant::now();
    let cpu = cpu_time();
    for i in 0..records {
        let mut l = lines[(i % 1000) as usize].clone();
        redact::redact(&mut l, true);
        bytes += l.len() as u64;
        ledger.append(i as i64, &l);
        if i % 1000 == 999 {
            ledger.flush();
        }
    }
    ledger.flush();
    let sealed = t.elapsed();
    let sealed_cpu = cpu_time() - cpu;
    ledger.close();
    let secs = sealed.as_secs_f64();
    let per = |d: Duration| d.as_nanos() as f64 / records as f64;
    println!(
        "{}",
        serde_json::json!({
            "records": records,
            "record_bytes": bytes / records.max(1),
            "fsync_interval_ms": fsync_interval_ms,
            "masked": masked,
            "redact_ns_per_record": (per(clone_and_redact) - per(clone_only)).max(0.0),
            "seal_ns_per_record": per(sealed),
            "seal_cpu_ns_per_record": per(sealed_cpu),
            "records_per_s": records as f64 / secs,
            "mb_per_s": bytes as f64 / secs / 1e6,
            "ledger_bytes": ledger.bytes(),
        })
    );
    Ok(())
}
