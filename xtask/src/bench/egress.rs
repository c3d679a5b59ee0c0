//! 6/6 Egress: what the taint and egress programs cost a process that holds no protected data.
//!
//! Interleaved rounds of four configurations; every workload process runs in a child cgroup
//! this phase creates (the egress programs attach only there) and removes at the end:
//! - `none`: no sensor;
//! - `sensor`: mnsensor with a policy without an `egress` section (taint off);
//! - `egress`: the same policy with `egress: {action: alert}`, the cgroup programs attached
//!   to the child cgroup, nothing tainted yet;
//! - `egress+marked`: the same sensor after a tainted `cat PROTECTED | cat` marked a pipe,
//!   so every read pays the descriptor walk and a lookup (the worst case for readers).
//!
//! Measured: loopback TCP throughput (target ≥ 0.95× of none), loopback connect latency
//! (target ≤ 1.05×), and CPU per 4 KiB read of an unprotected file (reported, no target).
use std::{
    ffi::OsStr,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Ctx, interrupt, sensor::Sensor, stats};
use crate::cmd::step;

/// Bytes per throughput sample, before the plan's scale.
const TCP_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;
/// Connects per latency sample.
const CONNECTS: usize = 1000;
/// 4 KiB reads per read sample, before the plan's scale.
const READS: f64 = 200_000.0;
const CONFIGS: [&str; 4] = ["none", "sensor", "egress", "egress+marked"];

/// `workload tcp`: `bytes` through one loopback connection.
pub fn tcp(bytes: u64) -> Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let rx = thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let buf = vec![7u8; 1 << 16];
    let started = Instant::now();
    let mut c = TcpStream::connect(addr)?;
    let mut sent = 0;
    while sent < bytes {
        c.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    drop(c);
    let got = rx.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    if got != sent {
        bail!("received {got} of {sent} bytes");
    }
    Ok(json!({ "bytes": got, "secs": secs, "mb_per_s": got as f64 / secs / 1e6 }))
}

/// `workload connect`: `n` connects to a loopback listener, each closed at once.
pub fn connect(n: usize) -> Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let acceptor = thread::spawn(move || {
        for _ in 0..n {
            if listener.accept().is_err() {
                return;
            }
        }
    });
    let mut ns = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let c = TcpStream::connect(addr)?;
        ns.push(t.elapsed().as_nanos() as f64);
        drop(c);
    }
    let _ = acceptor.join();
    ns.sort_by(f64::total_cmp);
    Ok(json!({ "p50_ns": stats::percentile(&ns, 50.0), "p99_ns": stats::percentile(&ns, 99.0) }))
}

/// A cgroup v2 child for the workloads; removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn create() -> Result<Self> {
        let root = if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        let path = root.join(format!("mnsensor-bench.{}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty by now: every workload has exited.
        if let Err(e) = fs::remove_dir(&self.0) {
            step(format!("bench: cgroup {} not removed: {e}", self.0.display()));
        }
    }
}

/// Runs `xtask bench workload ARGS` inside `cg` and returns its JSON line.
fn in_cgroup(ctx: &Ctx, cg: &Cgroup, args: &[&str]) -> Result<Value> {
    let procs = cg.0.join("cgroup.procs");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0" && exec "$@""#)
        .arg(&procs)
        .arg(&ctx.exe)
        .args(["bench", "workload"])
        .args(args);
    let out = cmd.output().context("running a workload in the bench cgroup")?;
    if !out.status.success() {
        bail!("workload {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("workload {args:?} printed {text:?}"))
}

/// One sample of each workload: (MB/s, connect p50 ns, read CPU ns per op).
fn sample(ctx: &Ctx, cg: &Cgroup, scale: f64) -> Result<[f64; 3]> {
    let bytes = ((TCP_BYTES * scale) as u64).max(64 << 20).to_string();
    let tcp = in_cgroup(ctx, cg, &["tcp", "--bytes", &bytes])?;
    let conn = in_cgroup(ctx, cg, &["connect", "--n", &CONNECTS.to_string()])?;
    let reads = ((READS * scale) as u64).max(20_000).to_string();
    let path = ctx.fixture.other_file.to_string_lossy().into_owned();
    let read = in_cgroup(ctx, cg, &["op", "--op", "read", "--path", &path, "--n", &reads])?;
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok([f(&tcp, "mb_per_s"), f(&conn, "p50_ns"), f(&read, "cpu_ns")])
}

/// The policy directory: protects the fixture's tree, with or without an egress section.
fn policy(root: &Path, protected: &Path, egress: bool) -> Result<PathBuf> {
    let dir = root.join(if egress { "policy-egress" } else { "policy-plain" });
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let section = if egress { "  egress:\n    action: alert\n" } else { "" };
    fs::write(
        dir.join("bench.yaml"),
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: bench-egress}}\nspec:\n  mode: audit\n  \
             protect: [{{path: {}}}]\n  default: {{action: audit, severity: low}}\n{section}",
            protected.display()
        ),
    )?;
    Ok(dir)
}

/// Runs the phase; returns its JSON and its table.
pub fn run(ctx: &Ctx, rounds: usize, scale: f64) -> Result<(Value, String)> {
    let root = &ctx.fixture.root;
    let cg = Cgroup::create()?;
    let plain = policy(root, &ctx.fixture.protected, false)?;
    let egress = policy(root, &ctx.fixture.protected, true)?;
    let config = format!("egress_cgroup: {}\n", cg.0.display());
    let mut results: Vec<Vec<[f64; 3]>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        interrupt::check()?;
        results[0].push(sample(ctx, &cg, scale)?);
        for (with_egress, dir) in [(false, &plain), (true, &egress)] {
            let jsonl = ctx.fixture.log("egress.jsonl");
            let sensor = Sensor::start_configured(
                &ctx.sensor_bin,
                &[OsStr::new("--policy"), dir.as_os_str()],
                &config,
                &jsonl,
                &ctx.fixture.log("egress.log"),
            )?;
            let r = (|| -> Result<()> {
                if !with_egress {
                    results[1].push(sample(ctx, &cg, scale)?);
                    return Ok(());
                }
                results[2].push(sample(ctx, &cg, scale)?);
                // A tainted reader writing a pipe marks it: from now on reads look objects up.
                let secret = ctx.fixture.secret_file.display().to_string();
                let st =
                    Command::new("sh").arg("-c").arg(format!("cat '{secret}' | cat > /dev/null")).status()?;
                if !st.success() {
                    bail!("the marking pipe failed ({st})");
                }
                results[3].push(sample(ctx, &cg, scale)?);
                Ok(())
            })();
            sensor.stop()?;
            r?;
        }
        step(format!("bench: egress round {}/{rounds}", round + 1));
    }
    drop(cg);
    Ok(report(&results, rounds))
}

fn report(results: &[Vec<[f64; 3]>], rounds: usize) -> (Value, String) {
    let col = |c: usize, k: usize| -> Vec<f64> { results[c].iter().map(|s| s[k]).collect() };
    let med = |c: usize, k: usize| stats::Spread::of(&col(c, k)).map_or(f64::NAN, |s| s.median);
    // Ratios per round (interleaved samples), then their median.
    let ratio = |c: usize, k: usize| {
        let r: Vec<f64> = results[c].iter().zip(&results[0]).map(|(a, b)| a[k] / b[k]).collect();
        stats::Spread::of(&r)
    };
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let mut t = String::new();
    let _ = writeln!(t, "\n6. Egress: untainted process in the egress cgroup ({rounds} rounds)");
    let _ = writeln!(t, " config           TCP MB/s   connect p50 µs   read CPU ns/4 KiB");
    for (c, name) in CONFIGS.iter().enumerate() {
        let _ = writeln!(
            t,
            " {name:<15} {:>9.0}   {:>14.1}   {:>17.0}",
            med(c, 0),
            med(c, 1) / 1000.0,
            med(c, 2)
        );
    }
    let tput = ratio(2, 0);
    let conn = ratio(2, 1);
    if let (Some(tp), Some(cn)) = (tput, conn) {
        let _ = writeln!(
            t,
            " TCP throughput, egress / none   {:.3} [{:.3}–{:.3}]  ≥ 0.95 {}",
            tp.median,
            tp.min,
            tp.max,
            verdict(tp.median >= 0.95)
        );
        let _ = writeln!(
            t,
            " connect p50, egress / none      {:.3} [{:.3}–{:.3}]  ≤ 1.05 {}",
            cn.median,
            cn.min,
            cn.max,
            verdict(cn.median <= 1.05)
        );
    }
    for (c, name) in [(1, "sensor"), (2, "egress"), (3, "egress+marked")] {
        if let Some(r) = ratio(c, 2) {
            let _ = writeln!(t, " read CPU, {name} / none {:>10.3} [{:.3}–{:.3}]", r.median, r.min, r.max);
        }
    }
    let configs: serde_json::Map<String, Value> = CONFIGS
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let s = |k| stats::Spread::of(&col(c, k)).map(|s| s.json());
            ((*name).to_owned(), json!({ "tcp_mb_per_s": s(0), "connect_p50_ns": s(1), "read_cpu_ns": s(2) }))
        })
        .collect();
    let value = json!({
        "rounds": rounds,
        "connects_per_sample": CONNECTS,
        "configs": configs,
        "tcp_egress_over_none": tput.map(|s| s.json()),
        "connect_egress_over_none": conn.map(|s| s.json()),
        "read_cpu_over_none": {
            "sensor": ratio(1, 2).map(|s| s.json()),
            "egress": ratio(2, 2).map(|s| s.json()),
            "egress_marked": ratio(3, 2).map(|s| s.json()),
        },
    });
    (value, t)
}
