//! `cargo xtask bench`: what mnsensor costs the machine it watches, measured side by side with
//! no sensor (and auditd, when installed) in one interleaved run. Method and results:
//! docs/performance.md.
mod audit;
mod clock;
mod egress;
mod enforce;
mod fixture;
mod host;
mod interrupt;
mod latency;
mod ledger;
mod overhead;
mod report;
mod sensor;
mod stats;
mod throughput;
mod vm;
mod workload;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    build,
    cmd::{self, display, step, target_dir},
};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Interleaved rounds of the overhead comparison [default: 10, or 3 with --quick].
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// A short run (about 2 minutes): fewer rounds and operations, 1 s rate steps.
    #[arg(long)]
    quick: bool,
    /// Where to write the results as JSON [default: target/bench/latest.json].
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Install auditd if it is missing, to compare with `auditctl -w DIR -p rwa`.
    #[arg(long)]
    with_auditd: bool,
    /// Only the seal stage: ledger write rate (records/s, MB/s) under three fsync policies.
    #[arg(long)]
    ledger: bool,
    /// Measure the existing target/release/mnsensor instead of building it first.
    #[arg(long)]
    no_build: bool,
    /// Only the enforcement part (fanotify permission latency against the C responder).
    #[arg(long)]
    enforcement: bool,
    /// The sensor binary to measure [default: target/release/mnsensor] (implies --no-build).
    #[arg(long, value_name = "PATH")]
    sensor: Option<PathBuf>,
    /// With --enforcement: another sensor binary (e.g. an earlier build) measured in the same
    /// interleaved rounds, as `baseline`.
    #[arg(long, value_name = "PATH", requires = "enforcement")]
    baseline: Option<PathBuf>,
    /// Only the consumer in isolation (seconds, no root): synthesised kernel records through
    /// decode → enrich → JSON encode, in µs per record per stage.
    #[arg(long)]
    consumer: bool,
    /// Only the egress phase: loopback TCP throughput and connect latency of an untainted
    /// process with the egress programs on a child cgroup, and read cost, against no sensor.
    #[arg(long)]
    egress: bool,
    /// Only part 1 (the cost to other processes), inside the qemu guest of `vm-test` with
    /// this kernel (`6.12` or `6.1`), where fentry programs load: same-guest ratios only.
    #[arg(long, value_name = "KERNEL")]
    vm: Option<String>,
    #[command(subcommand)]
    child: Option<Child>,
}

#[derive(Debug, clap::Subcommand)]
enum Child {
    /// The measured side, run in a fresh process per sample.
    #[command(hide = true)]
    Workload {
        #[command(subcommand)]
        workload: workload::Workload,
    },
    /// The guest side of `--vm`: part 1, its samples printed as `BENCHVM-JSON` lines.
    #[command(hide = true)]
    Guest {
        #[arg(long)]
        rounds: usize,
        #[arg(long)]
        scale: f64,
    },
}

/// Sizes of one run.
#[derive(Debug)]
struct Plan {
    rounds: usize,
    /// Multiplies the operations per overhead sample.
    scale: f64,
    rates: Vec<u64>,
    rate_secs: f64,
    steady_rate: u64,
    steady_secs: f64,
    /// (rate per second, files) for the latency phases.
    latency: [(u64, usize); 2],
}

impl Plan {
    fn new(args: &Args) -> Self {
        let q = args.quick;
        Self {
            rounds: args.rounds.unwrap_or(if q { 3 } else { 10 }),
            scale: if q { 0.25 } else { 1.0 },
            rates: vec![50_000, 100_000, 200_000, 400_000, 800_000],
            rate_secs: if q { 1.0 } else { 2.0 },
            steady_rate: 100_000,
            steady_secs: if q { 3.0 } else { 5.0 },
            latency: if q { [(1000, 1000), (20, 40)] } else { [(1000, 3000), (20, 60)] },
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rounds": self.rounds, "scale": self.scale, "rates": self.rates, "rate_secs": self.rate_secs,
            "steady_rate": self.steady_rate, "steady_secs": self.steady_secs,
            "latency": self.latency.iter().map(|(r, n)| serde_json::json!({"rate": r, "count": n})).collect::<Vec<_>>(),
        })
    }
}

/// What the phases share.
pub struct Ctx {
    /// This xtask binary, re-executed for every workload process.
    exe: PathBuf,
    sensor_bin: PathBuf,
    fixture: fixture::Fixture,
}

impl Ctx {
    fn workload_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["bench", "workload"]).args(args).stdin(Stdio::null()).stderr(Stdio::inherit());
        cmd
    }

    /// Runs a workload process to its end and returns the JSON line it printed.
    fn workload(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut cmd = self.workload_command(args);
        let out = cmd.output().with_context(|| format!("could not start `{}`", display(&cmd)))?;
        if !out.status.success() {
            bail!("`{}` failed ({})", display(&cmd), out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).with_context(|| format!("`{}` printed {text:?}", display(&cmd)))
    }
}

pub fn bench(args: &Args) -> Result<()> {
    match &args.child {
        Some(Child::Workload { workload }) => return workload::run(workload),
        Some(Child::Guest { rounds, scale }) => return vm::guest(*rounds, *scale),
        None => {}
    }
    if let Some(kernel) = &args.vm {
        return vm::run(args, kernel);
    }
    if args.consumer {
        return consumer();
    }
    if args.ledger {
        if !args.no_build {
            build::build(true)?;
        }
        ledger::run(&target_dir().join("release/mnsensor"))?;
        return Ok(());
    }
    ensure!(cmd::is_root()?, "the benchmark loads eBPF programs: run as root (`sudo -E cargo xtask bench`)");
    let plan = Plan::new(args);
    if !args.no_build && args.sensor.is_none() {
        build::build(true)?;
    }
    interrupt::install();
    if args.egress {
        return egress_only(args, &plan);
    }
    let started = std::time::Instant::now();
    let mut machine = host::describe();
    let latency_files = plan.latency.iter().map(|(_, n)| n).sum();
    let ctx = Ctx {
        exe: std::env::current_exe().context("locating the xtask binary")?,
        sensor_bin: args.sensor.clone().unwrap_or_else(|| target_dir().join("release/mnsensor")),
        fixture: fixture::Fixture::create(latency_files)?,
    };
    machine["sensor"] = host::binary(&ctx.sensor_bin)?;
    if args.enforcement {
        step("bench: enforcement only: fanotify floor, enforce and audit mode");
        let (enforcement, table) =
            enforce::run(&ctx, plan.rounds.min(5), plan.scale, args.baseline.as_deref())?;
        println!("{table}");
        let path = args.json.clone().unwrap_or_else(|| target_dir().join("bench/enforcement.json"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::json!({"machine": machine, "plan": plan.json(), "enforcement": enforcement});
        std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    step(format!("bench: files in {}; plan {plan:?}", ctx.fixture.root.display()));
    let mut audit = start_auditd(args, &ctx)?;

    step(format!("bench: 1/4 overhead, {} interleaved rounds", plan.rounds));
    let overhead = overhead::run(&ctx, plan.rounds, plan.scale, audit.as_mut())?;
    drop(audit.take());

    step("bench: 2/4 ring buffer: protected opens at fixed rates, fresh sensor per step");
    let mut phases = Vec::new();
    for &rate in &plan.rates {
        phases.push(throughput::phase(&ctx, rate, plan.rate_secs)?);
    }
    step(format!("bench: 3/4 steady {}/s for {} s: sensor CPU and RSS", plan.steady_rate, plan.steady_secs));
    let steady = throughput::phase(&ctx, plan.steady_rate, plan.steady_secs)?;

    step("bench: 4/4 delivery latency");
    let mut latencies = Vec::new();
    let mut first = 0;
    for &(rate, count) in &plan.latency {
        latencies.push(latency::run(&ctx, rate, first, count)?);
        first += count;
    }

    step("bench: 5/6 enforcement: fanotify floor, enforce and audit mode");
    let (enforcement, enforcement_table) = enforce::run(&ctx, plan.rounds.min(5), plan.scale, None)?;
    step("bench: 6/6 egress: loopback TCP, connects and reads of an untainted process");
    let (egress, egress_table) = egress::run(&ctx, plan.rounds.min(5), plan.scale)?;

    let elapsed_s = started.elapsed().as_secs_f64();
    let results =
        report::Results { machine, plan: plan.json(), elapsed_s, overhead, phases, steady, latencies };
    println!("{}{enforcement_table}{egress_table}", results.table());
    let path = args.json.clone().unwrap_or_else(|| target_dir().join("bench/latest.json"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut json = results.json();
    json["enforcement"] = enforcement;
    json["egress"] = egress;
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    step(format!("bench: measured in {elapsed_s:.0} s (after the build); wrote {}", path.display()));
    Ok(())
}

/// `--egress`: only the egress phase, its JSON written next to the full run's.
fn egress_only(args: &Args, plan: &Plan) -> Result<()> {
    let ctx = Ctx {
        exe: std::env::current_exe().context("locating the xtask binary")?,
        sensor_bin: target_dir().join("release/mnsensor"),
        fixture: fixture::Fixture::create(0)?,
    };
    step(format!(
        "bench: egress phase, {} rounds; files in {}",
        plan.rounds.min(5),
        ctx.fixture.root.display()
    ));
    let (json, table) = egress::run(&ctx, plan.rounds.min(5), plan.scale)?;
    println!("{table}");
    let path = args.json.clone().unwrap_or_else(|| target_dir().join("bench/egress.json"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    step(format!("bench: wrote {}", path.display()));
    Ok(())
}

/// The consumer in isolation: `sensor/benches/consumer.rs`, optimised, without the kernel
/// programs (the replay needs none).
fn consumer() -> Result<()> {
    step("bench: consumer in isolation (decode → enrich → encode)");
    cmd::run(cmd::cargo().args(["bench", "-p", "sensor", "--bench", "consumer"]).env("AYA_BUILD_SKIP", "1"))
}

/// auditd, when `auditctl` is installed (or `--with-auditd` installs it) and the daemon runs.
fn start_auditd(args: &Args, ctx: &Ctx) -> Result<Option<audit::Audit>> {
    if !audit::installed() {
        if !args.with_auditd {
            step(
                "bench: auditctl not installed; comparing with no sensor only (--with-auditd installs auditd)",
            );
            return Ok(None);
        }
        audit::install()?;
    }
    match audit::Audit::start(&ctx.fixture.protected) {
        Ok(audit) => Ok(Some(audit)),
        Err(e) if !args.with_auditd => {
            step(format!("bench: auditd unusable here, left out: {e:#}"));
            Ok(None)
        }
        Err(e) => Err(e.context("--with-auditd: auditd does not run here")),
    }
}
