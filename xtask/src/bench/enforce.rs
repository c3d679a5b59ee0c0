//! 5/5 Enforcement: what a policy in `enforce` mode costs.
//!
//! Interleaved rounds of three configurations on the fixture's protected directory:
//! - `floor`: a minimal C fanotify responder that allows everything (`fanotify_floor.c`),
//!   the mechanism's own cost;
//! - `enforce`: mnsensor with a policy in `enforce` mode that allows this (root) process;
//! - `audit`: the same policy in `audit` mode (no permission events).
//!
//! Measured: protected open+close wall time per op, enforce against floor (target ≤ 1.2×);
//! the decision's share, p99 of enforced opens minus the floor's median (target ≤ 50 µs with
//! a warm cache); unrelated open+close CPU, enforce against audit (target ≤ 1.02×).
use std::{
    ffi::OsStr,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    Ctx, interrupt,
    overhead::{WORKLOADS, Workload, run_workload},
    sensor::Sensor,
    stats::{self, Rng},
};
use crate::cmd::step;

/// Opens timed in-process per round and configuration.
const OPENS: usize = 4000;

/// The C responder, compiled once per run.
fn compile_floor(out: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bench/fanotify_floor.c");
    let bin = out.join("fanotify-floor");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .context("running cc (apt-get install gcc)")?;
    if !status.success() {
        bail!("cc failed on {}", src.display());
    }
    Ok(bin)
}

struct Floor(Child);

impl Floor {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let mut child =
            Command::new(bin).arg(dir).stdout(Stdio::piped()).spawn().context("starting the floor")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("floor stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the fanotify floor did not start: {line:?}");
        }
        Ok(Self(child))
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // Our own child, by pid; closing its group lets pending opens through.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A policy directory protecting `dir` in `mode`, allowing uid 0 (this process).
fn policy_dir(root: &Path, dir: &Path, mode: &str) -> Result<PathBuf> {
    let pol = root.join(format!("policy-{mode}"));
    fs::create_dir_all(&pol)?;
    fs::set_permissions(&pol, fs::Permissions::from_mode(0o755))?;
    let file = pol.join("bench.yaml");
    fs::write(
        &file,
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: bench-{mode}, description: bench}}\n\
             spec:\n  mode: {mode}\n  protect:\n    - path: {}\n  allow:\n    - name: root\n      \
             subjects: [{{uid: 0}}]\n  default: {{action: deny, severity: high}}\n",
            dir.display()
        ),
    )?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
    Ok(pol)
}

/// Wall time of each open+close of `file`, in ns.
fn open_latencies(file: &Path, n: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        drop(fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
        out.push(t.elapsed().as_nanos() as f64);
    }
    Ok(out)
}

fn unrelated_cpu(ctx: &Ctx, n: u64) -> Result<f64> {
    let path = ctx.fixture.other_file.to_string_lossy().into_owned();
    let out = ctx.workload(&["op", "--op", "open", "--path", &path, "--n", &n.to_string()])?;
    Ok(out["cpu_ns"].as_f64().unwrap_or(f64::NAN))
}

fn with_sensor<T>(ctx: &Ctx, policy: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    with_binary(&ctx.sensor_bin, ctx, policy, f)
}

fn with_binary<T>(bin: &Path, ctx: &Ctx, policy: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let jsonl = ctx.fixture.root.join("enforce.jsonl");
    let log = ctx.fixture.root.join("enforce.log");
    let sensor = Sensor::start_with(bin, &[OsStr::new("--policy"), policy.as_os_str()], &jsonl, &log)?;
    let r = f();
    sensor.stop()?;
    r
}

/// Runs the phase (with `baseline`, a second sensor binary in the same rounds); returns its
/// JSON and its table.
pub fn run(ctx: &Ctx, rounds: usize, scale: f64, baseline: Option<&Path>) -> Result<(Value, String)> {
    let root = &ctx.fixture.root;
    let floor_bin = compile_floor(root)?;
    let enforce = policy_dir(root, &ctx.fixture.protected, "enforce")?;
    let audit = policy_dir(root, &ctx.fixture.protected, "audit")?;
    let secret = &ctx.fixture.secret_file;
    let n = ((20_000.0 * scale) as u64).max(2000);
    let (mut floor_lat, mut enf_lat, mut none_lat, mut base_lat) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unrelated_ratio = Vec::new();
    for round in 0..rounds {
        interrupt::check()?;
        none_lat.extend(open_latencies(secret, OPENS)?);
        {
            let _floor = Floor::start(&floor_bin, &ctx.fixture.protected)?;
            floor_lat.extend(open_latencies(secret, OPENS)?);
        }
        let enforced_cpu = with_sensor(ctx, &enforce, || {
            open_latencies(secret, 100)?; // warm the decision cache
            enf_lat.extend(open_latencies(secret, OPENS)?);
            unrelated_cpu(ctx, n)
        })?;
        if let Some(bin) = baseline {
            with_binary(bin, ctx, &enforce, || {
                open_latencies(secret, 100)?;
                base_lat.extend(open_latencies(secret, OPENS)?);
                Ok(())
            })?;
        }
        let audit_cpu = with_sensor(ctx, &audit, || unrelated_cpu(ctx, n))?;
        unrelated_ratio.push(enforced_cpu / audit_cpu);
        step(format!("bench: enforcement round {}/{rounds}", round + 1));
    }
    for v in [&mut floor_lat, &mut enf_lat, &mut none_lat, &mut base_lat] {
        v.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| stats::percentile(v, 50.0);
    let ratio = median(&enf_lat) / median(&floor_lat);
    let decision_p99_us = (stats::percentile(&enf_lat, 99.0) - median(&floor_lat)) / 1000.0;
    let unrelated = stats::Spread::of(&unrelated_ratio);
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let mut t = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        t,
        "\n5. Enforcement: protected open+close wall time in-process ({OPENS} per round and config, {rounds} rounds)"
    );
    let _ = writeln!(t, " config          p50 µs   p99 µs");
    for (name, v) in
        [("none", &none_lat), ("floor (C)", &floor_lat), ("mnsensor", &enf_lat), ("baseline", &base_lat)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
    {
        let _ = writeln!(
            t,
            " {name:<14} {:>7.1}  {:>7.1}",
            median(v) / 1000.0,
            stats::percentile(v, 99.0) / 1000.0
        );
    }
    let _ =
        writeln!(t, " enforced open / floor (p50)           {ratio:.2}  ≤ 1.20 {}", verdict(ratio <= 1.2));
    let _ = writeln!(
        t,
        " decision p99 (p99 − floor p50), µs    {decision_p99_us:.1}  ≤ 50 {}",
        verdict(decision_p99_us <= 50.0)
    );
    if let Some(u) = unrelated {
        let _ = writeln!(
            t,
            " unrelated open CPU, enforce / audit   {:.3} [{:.3}–{:.3}]  ≤ 1.02 {}",
            u.median,
            u.min,
            u.max,
            verdict(u.median <= 1.02)
        );
    }
    let value = json!({
        "opens_per_round": OPENS,
        "rounds": rounds,
        "none_p50_ns": median(&none_lat), "none_p99_ns": stats::percentile(&none_lat, 99.0),
        "floor_p50_ns": median(&floor_lat), "floor_p99_ns": stats::percentile(&floor_lat, 99.0),
        "enforce_p50_ns": median(&enf_lat), "enforce_p99_ns": stats::percentile(&enf_lat, 99.0),
        "enforce_over_floor": ratio,
        "decision_p99_us": decision_p99_us,
        "baseline": baseline.map(|b| json!({
            "sensor": b.display().to_string(),
            "p50_ns": median(&base_lat), "p99_ns": stats::percentile(&base_lat, 99.0),
        })),
        "unrelated_enforce_over_audit": unrelated.map(|u| u.json()),
    });
    Ok((value, t))
}

/// The in-kernel deny path against audit mode on allowed opens (issue #12: ≤ 1.05×), for
/// `bench --vm`, where the BPF LSM answers in the kernel: in each round, in shuffled order, a
/// sensor with the policy in `enforce` mode and one with it in `audit` mode, each running the
/// protected and the unrelated open+close workloads of part 1 (this root process is allowed).
/// Returns the samples, the ratios (median of the per-round enforce / audit CPU) and the
/// policy backends `sensor.start` named in enforce mode.
pub fn deny_vs_audit(ctx: &Ctx, rounds: usize, scale: f64) -> Result<Value> {
    let root = &ctx.fixture.root;
    let enforce = policy_dir(root, &ctx.fixture.protected, "enforce")?;
    let audit = policy_dir(root, &ctx.fixture.protected, "audit")?;
    let lines: Vec<&Workload> =
        WORKLOADS.iter().filter(|w| matches!(w.name, "open_protected" | "open_unrelated")).collect();
    let mut cpu: Vec<(usize, &str, &str, f64)> = Vec::new();
    let mut backends = Value::Null;
    for round in 0..rounds {
        let mut order = [("enforce", &enforce), ("audit", &audit)];
        Rng::new(2000 + round as u64).shuffle(&mut order);
        for (mode, policy) in order {
            interrupt::check()?;
            with_sensor(ctx, policy, || {
                if mode == "enforce" && backends.is_null() {
                    let jsonl = fs::read_to_string(root.join("enforce.jsonl"))?;
                    let start: Value = serde_json::from_str(jsonl.lines().next().unwrap_or_default())?;
                    backends = start["mnsensor.policy.backends"].clone();
                }
                for w in &lines {
                    let (_, out, _) = run_workload(ctx, w, scale)?;
                    cpu.push((round, mode, w.name, out["cpu_ns"].as_f64().unwrap_or(f64::NAN)));
                }
                Ok(())
            })?;
        }
        step(format!("bench: enforce against audit, round {}/{rounds}", round + 1));
    }
    let ratios: Vec<Value> = lines
        .iter()
        .map(|w| {
            let of =
                |round, mode| cpu.iter().find(|c| c.0 == round && c.1 == mode && c.2 == w.name).map(|c| c.3);
            let per_round: Vec<f64> =
                (0..rounds).filter_map(|r| Some(of(r, "enforce")? / of(r, "audit")?)).collect();
            json!({"workload": w.name, "cpu_ratio": stats::Spread::of(&per_round).map(|s| s.json())})
        })
        .collect();
    let samples: Vec<Value> =
        cpu.iter().map(|(r, m, w, c)| json!({"round": r, "mode": m, "workload": w, "cpu_ns": c})).collect();
    Ok(json!({"policy_backends": backends, "ratios": ratios, "samples": samples}))
}
