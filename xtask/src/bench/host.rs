//! The machine: identity for the report, load, other tracers attached, CPU time of processes.
use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::clock;
use crate::cmd::{probe, root};

/// Kernel, CPU model, CPU count, memory, date: printed above the tables and stored in the JSON.
pub fn describe() -> serde_json::Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']));
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok());
    json!({
        "date": clock::format_utc(clock::realtime_ns() / 1_000_000_000),
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "host": read_trim("/proc/sys/kernel/hostname"),
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu_model": model.unwrap_or("unknown"),
        "mem_gib": mem_kib.map_or(0, |k| k >> 20),
        "os": fs::read_to_string("/etc/os-release").ok().and_then(|o| o.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|s| s.trim_matches('"').to_owned())),
        "loadavg_start": loadavg(),
    })
}

fn read_trim(path: &str) -> String {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// What was measured: the sensor binary's size and build time, and the source revision.
pub fn binary(path: &Path) -> Result<serde_json::Value> {
    let meta = fs::metadata(path)
        .with_context(|| format!("{} (build it: cargo xtask build --release)", path.display()))?;
    let built = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let git = |args: &[&str]| probe(Command::new("git").current_dir(root()).args(args)).ok().flatten();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.trim().is_empty());
    Ok(json!({
        "path": path.display().to_string(),
        "bytes": meta.len(),
        "built": clock::format_utc(built),
        "git_head": git(&["rev-parse", "--short", "HEAD"]).map(|h| h.trim().to_owned()),
        "worktree_dirty": dirty,
    }))
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    read_trim("/proc/loadavg").split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(f64::NAN)
}

/// Number of someone else's tracing programs (tracepoint, raw tracepoint, kprobe, fentry, LSM,
/// perf event) loaded in the kernel, from `bpftool prog show`; `None` without bpftool. Those of
/// the sensors this run started are not counted, also while the kernel is still freeing them.
pub fn tracing_programs() -> Option<usize> {
    let out = probe(Command::new("bpftool").args(["prog", "show", "-j"])).ok()??;
    let progs: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
    let tracing = ["tracepoint", "raw_tracepoint", "kprobe", "tracing", "lsm", "perf_event"];
    let ours = super::sensor::our_programs();
    let foreign = progs.iter().filter(|p| {
        p["type"].as_str().is_some_and(|t| tracing.contains(&t))
            && !p["id"].as_u64().is_some_and(|id| ours.contains(&(id as u32)))
    });
    Some(foreign.count())
}

/// Whether any of the programs `ids` is still loaded.
pub fn bpf_programs_loaded(ids: &std::collections::BTreeSet<u32>) -> bool {
    let Some(out) = probe(Command::new("bpftool").args(["prog", "show", "-j"])).ok().flatten() else {
        return false;
    };
    let progs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
    progs.iter().any(|p| p["id"].as_u64().is_some_and(|id| ids.contains(&(id as u32))))
}

/// User plus system CPU of a process (`/proc/PID/stat`), in ns.
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> =
        stat.rsplit_once(')').context("odd /proc/PID/stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// PIDs whose `comm` is exactly `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name))
        .collect()
}
