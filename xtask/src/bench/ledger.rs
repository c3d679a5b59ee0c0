//! `cargo xtask bench --ledger`: the seal stage alone (redaction, hash chain, ledger append)
//! in records/s and MB/s, under three fsync policies. Runs `mnsensor ledger bench` in a
//! scratch state directory; needs no root and loads no kernel program.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{display, step, target_dir};

/// Records sealed per policy.
const RECORDS: u64 = 300_000;
/// The fsync intervals compared, in milliseconds (1000 is the default).
const POLICIES: [u64; 3] = [1000, 100, 10];

pub fn run(sensor_bin: &Path) -> Result<serde_json::Value> {
    let mut rows = Vec::new();
    for ms in POLICIES {
        let dir = target_dir().join(format!("bench/ledger-{ms}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(sensor_bin);
        cmd.args([
            "ledger",
            "bench",
            "--records",
            &RECORDS.to_string(),
            "--fsync-interval-ms",
            &ms.to_string(),
        ])
        .arg("--state-dir")
        .arg(&dir);
        let out = cmd.output().with_context(|| format!("could not start `{}`", display(&cmd)))?;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            bail!("`{}` failed ({}): {}", display(&cmd), out.status, String::from_utf8_lossy(&out.stderr));
        }
        let row: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("`{}` printed {:?}", display(&cmd), String::from_utf8_lossy(&out.stdout))
        })?;
        step(format!("bench: ledger, fsync every {ms} ms: {row}"));
        rows.push(row);
    }
    println!("| fsync interval | records/s | MB/s | seal CPU ns/record | of which redaction ns |");
    println!("|---:|---:|---:|---:|---:|");
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} ms | {:.0} | {:.0} | {:.0} | {:.0} |",
            f("fsync_interval_ms"),
            f("records_per_s"),
            f("mb_per_s"),
            f("seal_cpu_ns_per_record"),
            f("redact_ns_per_record")
        );
    }
    Ok(serde_json::Value::Array(rows))
}
