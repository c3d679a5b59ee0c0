//! Part 1: what each configuration costs the syscalls of other processes. Every round runs
//! every configuration once, in a seeded shuffled order; inside a configuration the workloads
//! run in shuffled order, each in a fresh process. Ratios are paired within a round.
use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{
    Ctx,
    audit::Audit,
    host, interrupt,
    sensor::Sensor,
    stats::{Rng, Spread},
    workload::Op,
};
use crate::cmd::step;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    None,
    Mnsensor,
    Auditd,
}

impl Config {
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Mnsensor, Self::Auditd].into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mnsensor => "mnsensor",
            Self::Auditd => "auditd",
        }
    }
}

/// A target on the CPU ratio against `none`.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub max: f64,
    pub stretch: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
pub enum File {
    Unrelated,
    Protected,
    ProtectedBig,
}

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub label: &'static str,
    op: Op,
    file: File,
    n: u64,
    pub goal: Option<Goal>,
    /// The goal on kernels where fentry programs load (issue #12), for `bench --vm`.
    pub fentry_goal: Goal,
}

/// `goal`: issue #12's column for syscall-tracepoint kernels (this machine kind);
/// `fentry_goal`: its column for fentry kernels (`bench --vm`).
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "open_unrelated",
        label: "open+close, unrelated file",
        op: Op::Open,
        file: File::Unrelated,
        n: 50_000,
        goal: Some(Goal { max: 1.25, stretch: None }),
        fentry_goal: Goal { max: 1.05, stretch: None },
    },
    Workload {
        name: "open_protected",
        label: "open+close, protected file",
        op: Op::Open,
        file: File::Protected,
        n: 50_000,
        goal: Some(Goal { max: 1.6, stretch: None }),
        fentry_goal: Goal { max: 1.25, stretch: None },
    },
    Workload {
        name: "stat_unrelated",
        label: "stat, unrelated file",
        op: Op::Stat,
        file: File::Unrelated,
        n: 100_000,
        goal: Some(Goal { max: 1.03, stretch: None }),
        fentry_goal: Goal { max: 1.02, stretch: None },
    },
    Workload {
        name: "pread_unrelated",
        label: "pread 4 KiB, unrelated file",
        op: Op::Pread,
        file: File::Unrelated,
        n: 200_000,
        goal: Some(Goal { max: 1.15, stretch: None }),
        fentry_goal: Goal { max: 1.02, stretch: None },
    },
    Workload {
        name: "read_protected",
        label: "read 4 KiB, protected 64 MiB file",
        op: Op::Read,
        file: File::ProtectedBig,
        n: 200_000,
        goal: Some(Goal { max: 1.3, stretch: None }),
        fentry_goal: Goal { max: 1.1, stretch: None },
    },
];

/// One workload process.
#[derive(Clone, Debug)]
pub struct Sample {
    pub round: usize,
    pub config: Config,
    pub workload: &'static str,
    pub n: u64,
    pub cpu_ns: f64,
    pub wall_ns: f64,
    /// `file.open` records the sensor wrote for this process (mnsensor only).
    pub delivered_opens: Option<u64>,
    pub expected_opens: u64,
    pub pid: u32,
    /// How long the monitor needed to become idle before this workload started, in ms.
    pub settle_ms: u64,
}

/// One configuration in one round.
#[derive(Clone, Debug)]
pub struct Run {
    pub round: usize,
    pub config: Config,
    /// CPU of the monitor (the sensor; auditd plus kauditd) while the workloads ran.
    pub monitor_cpu_ns: Option<u64>,
    /// Records the sensor delivered and lost.
    pub records: Option<u64>,
    pub lost: Option<u64>,
    /// Tracing BPF programs loaded by others, seen before the configuration started or after
    /// it ended (the larger). Such a run is left out of the ratios when enough others remain.
    pub foreign_bpf: Option<usize>,
    pub loadavg: f64,
}

pub struct Overhead {
    pub configs: Vec<Config>,
    pub samples: Vec<Sample>,
    pub runs: Vec<Run>,
}

/// What the monitor of a configuration did while the workloads ran.
#[derive(Default)]
struct Monitor {
    cpu_ns: Option<u64>,
    records: Option<u64>,
    lost: Option<u64>,
}

pub fn run(ctx: &Ctx, rounds: usize, scale: f64, mut audit: Option<&mut Audit>) -> Result<Overhead> {
    let mut configs = vec![Config::None, Config::Mnsensor];
    if audit.is_some() {
        configs.push(Config::Auditd);
    }
    let mut out = Overhead { configs: configs.clone(), samples: Vec::new(), runs: Vec::new() };
    for round in 0..rounds {
        let mut order = configs.clone();
        Rng::new(1000 + round as u64).shuffle(&mut order);
        for (i, &config) in order.iter().enumerate() {
            interrupt::check()?;
            let foreign_before = host::tracing_programs();
            let mut workloads = WORKLOADS;
            Rng::new((round * 100 + i) as u64).shuffle(&mut workloads);
            let (samples, monitor) = match config {
                Config::None => {
                    (measure(ctx, round, config, &workloads, scale, Watched::Nothing)?, Monitor::default())
                }
                Config::Mnsensor => with_sensor(ctx, round, &workloads, scale)?,
                Config::Auditd => {
                    let audit = audit.as_deref_mut().expect("the auditd configuration has auditd");
                    with_auditd(ctx, round, &workloads, scale, audit)?
                }
            };
            let run = Run {
                round,
                config,
                monitor_cpu_ns: monitor.cpu_ns,
                records: monitor.records,
                lost: monitor.lost,
                foreign_bpf: foreign_before.max(host::tracing_programs()),
                loadavg: host::loadavg(),
            };
            progress(&samples, &run);
            out.samples.extend(samples);
            out.runs.push(run);
        }
    }
    Ok(out)
}

fn with_sensor(
    ctx: &Ctx,
    round: usize,
    workloads: &[Workload],
    scale: f64,
) -> Result<(Vec<Sample>, Monitor)> {
    let jsonl = ctx.fixture.log("overhead.jsonl");
    let mut sensor =
        Sensor::start(&ctx.sensor_bin, &ctx.fixture.protected, &jsonl, &ctx.fixture.log("overhead.log"))?;
    let cpu0 = sensor.cpu_ns()?;
    let mut samples = measure(ctx, round, Config::Mnsensor, workloads, scale, Watched::Sensor(&mut sensor))?;
    let cpu = sensor.cpu_ns()?.saturating_sub(cpu0);
    let tally = sensor.stop()?;
    for s in &mut samples {
        s.delivered_opens = Some(tally.opens_by_pid.get(&s.pid).copied().unwrap_or(0));
    }
    fs::remove_file(&jsonl)?;
    wait_detached();
    let records = tally.count("file.open") + tally.count("file.close");
    Ok((samples, Monitor { cpu_ns: Some(cpu), records: Some(records), lost: Some(tally.lost_total()) }))
}

fn with_auditd(
    ctx: &Ctx,
    round: usize,
    workloads: &[Workload],
    scale: f64,
    audit: &mut Audit,
) -> Result<(Vec<Sample>, Monitor)> {
    audit.watch_on()?;
    let cpu0 = audit.cpu_ns();
    let samples = measure(ctx, round, Config::Auditd, workloads, scale, Watched::Audit(audit));
    let cpu = audit.cpu_ns().saturating_sub(cpu0);
    audit.watch_off()?;
    Ok((samples?, Monitor { cpu_ns: Some(cpu), ..Monitor::default() }))
}

/// The kernel frees a stopped sensor's programs shortly after it exits; wait for that (5 s at
/// most) so that the next configuration does not run with them still attached.
fn wait_detached() {
    for _ in 0..100 {
        if !host::bpf_programs_loaded(&super::sensor::our_programs()) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The monitor of a configuration, as far as measuring goes.
enum Watched<'a> {
    Nothing,
    Sensor(&'a mut Sensor),
    Audit(&'a Audit),
}

impl Watched<'_> {
    fn cpu_ns(&mut self) -> Result<Option<u64>> {
        Ok(match self {
            Self::Nothing => None,
            Self::Sensor(sensor) => {
                sensor.check_running()?;
                Some(sensor.cpu_ns()?)
            }
            Self::Audit(audit) => Some(audit.cpu_ns()),
        })
    }

    /// Waits until the monitor is idle (under 2 ms of CPU per 100 ms; 20 s at most), so that
    /// a backlog left by one workload is not charged to the next. Returns the wait in ms.
    fn settle(&mut self) -> Result<u64> {
        let start = Instant::now();
        let Some(mut last) = self.cpu_ns()? else { return Ok(0) };
        while start.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(100));
            let now = self.cpu_ns()?.unwrap_or(last);
            if now.saturating_sub(last) < 2_000_000 {
                break;
            }
            last = now;
        }
        Ok(start.elapsed().as_millis() as u64)
    }
}

fn measure(
    ctx: &Ctx,
    round: usize,
    config: Config,
    workloads: &[Workload],
    scale: f64,
    mut watched: Watched,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for w in workloads {
        interrupt::check()?;
        let settle_ms = watched.settle()?;
        let (n, out, expected_opens) = run_workload(ctx, w, scale)?;
        samples.push(Sample {
            round,
            config,
            workload: w.name,
            n,
            cpu_ns: out["cpu_ns"].as_f64().unwrap_or(f64::NAN),
            wall_ns: out["wall_ns"].as_f64().unwrap_or(f64::NAN),
            pid: out["pid"].as_u64().unwrap_or(0) as u32,
            delivered_opens: None,
            expected_opens,
            settle_ms,
        });
    }
    Ok(samples)
}

/// Runs `w` once in a fresh process: the operations measured, the JSON line it printed and the
/// protected opens it made (each owed a `file.open` record).
pub fn run_workload(ctx: &Ctx, w: &Workload, scale: f64) -> Result<(u64, serde_json::Value, u64)> {
    let n = ((w.n as f64 * scale) as u64).max(1000);
    let path: &Path = match w.file {
        File::Unrelated => &ctx.fixture.other_file,
        File::Protected => &ctx.fixture.secret_file,
        File::ProtectedBig => &ctx.fixture.big_file,
    };
    let op = format!("{:?}", w.op).to_lowercase();
    let out = ctx.workload(&["op", "--op", &op, "--path", &path.to_string_lossy(), "--n", &n.to_string()])?;
    let expected_opens = match (w.op, w.file) {
        (Op::Open, File::Protected) => n + n / 10,
        (Op::Read, File::ProtectedBig) => 1,
        _ => 0,
    };
    Ok((n, out, expected_opens))
}

fn progress(samples: &[Sample], run: &Run) {
    let mut by_name: Vec<&Sample> = samples.iter().collect();
    by_name.sort_by_key(|s| WORKLOADS.iter().position(|w| w.name == s.workload));
    let cells: Vec<String> = by_name.iter().map(|s| format!("{}={:.0}", s.workload, s.cpu_ns)).collect();
    let mut line = format!("bench: round {} {:<8} {}", run.round + 1, run.config.name(), cells.join(" "));
    if let Some(lost) = run.lost.filter(|&l| l > 0) {
        line += &format!(" LOST={lost}");
    }
    if let Some(n) = run.foreign_bpf.filter(|&n| n > 0) {
        line += &format!(" foreign_bpf={n}");
    }
    step(format!("{line} load={:.1}", run.loadavg));
}

/// Paired ratios of one configuration against `none`, per workload.
pub struct Ratio {
    pub workload: Workload,
    pub config: Config,
    pub cpu: Option<Spread>,
    pub wall: Option<Spread>,
    /// Median paired difference in CPU ns per op.
    pub cpu_diff_ns: Option<Spread>,
}

impl Overhead {
    fn clean(&self, round: usize, config: Config) -> bool {
        self.runs.iter().any(|r| r.round == round && r.config == config && r.foreign_bpf.unwrap_or(0) == 0)
    }

    /// The rounds compared for `config`: those where neither it nor `none` ran next to someone
    /// else's tracing programs, if there are at least 3 of them; otherwise all rounds.
    pub fn rounds_used(&self, config: Config) -> Vec<usize> {
        let all: Vec<usize> = self.runs.iter().filter(|r| r.config == config).map(|r| r.round).collect();
        let clean: Vec<usize> =
            all.iter().copied().filter(|&r| self.clean(r, config) && self.clean(r, Config::None)).collect();
        if clean.len() >= 3 { clean } else { all }
    }

    /// Absolute CPU ns per op of `config` for `workload`, over the rounds used for `against`.
    pub fn absolute(&self, config: Config, against: Config, workload: &str) -> Option<Spread> {
        let rounds = self.rounds_used(against);
        let v: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.config == config && s.workload == workload && rounds.contains(&s.round))
            .map(|s| s.cpu_ns)
            .collect();
        Spread::of(&v)
    }

    pub fn ratios(&self) -> Vec<Ratio> {
        let mut out = Vec::new();
        for &config in self.configs.iter().filter(|&&c| c != Config::None) {
            let rounds = self.rounds_used(config);
            for w in WORKLOADS {
                let pairs: Vec<(&Sample, &Sample)> = self
                    .samples
                    .iter()
                    .filter(|s| s.config == config && s.workload == w.name && rounds.contains(&s.round))
                    .filter_map(|s| {
                        let base = self.samples.iter().find(|b| {
                            b.config == Config::None && b.workload == w.name && b.round == s.round
                        })?;
                        Some((s, base))
                    })
                    .collect();
                let of = |f: &dyn Fn(&Sample, &Sample) -> f64| {
                    Spread::of(&pairs.iter().map(|(s, b)| f(s, b)).collect::<Vec<_>>())
                };
                out.push(Ratio {
                    workload: w,
                    config,
                    cpu: of(&|s, b| s.cpu_ns / b.cpu_ns),
                    wall: of(&|s, b| s.wall_ns / b.wall_ns),
                    cpu_diff_ns: of(&|s, b| s.cpu_ns - b.cpu_ns),
                });
            }
        }
        out
    }

    /// Samples where the sensor wrote a different number of `file.open` records than opens.
    pub fn delivery_mismatches(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.delivered_opens.is_some_and(|d| d != s.expected_opens)).collect()
    }

    pub fn json(&self) -> serde_json::Value {
        let samples: Vec<_> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "round": s.round, "config": s.config.name(), "workload": s.workload, "n": s.n,
                    "cpu_ns": s.cpu_ns, "wall_ns": s.wall_ns, "settle_ms": s.settle_ms,
                    "delivered_opens": s.delivered_opens, "expected_opens": s.expected_opens,
                })
            })
            .collect();
        let runs: Vec<_> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "round": r.round, "config": r.config.name(), "monitor_cpu_ns": r.monitor_cpu_ns,
                    "records": r.records, "lost": r.lost, "foreign_bpf_programs": r.foreign_bpf,
                    "loadavg1": r.loadavg,
                })
            })
            .collect();
        let ratios: Vec<_> = self
            .ratios()
            .iter()
            .map(|r| {
                json!({
                    "workload": r.workload.name, "config": r.config.name(),
                    "rounds": self.rounds_used(r.config),
                    "none_cpu_ns": self.absolute(Config::None, r.config, r.workload.name).map(|s| s.json()),
                    "cpu_ns": self.absolute(r.config, r.config, r.workload.name).map(|s| s.json()),
                    "cpu_ratio": r.cpu.map(|s| s.json()), "wall_ratio": r.wall.map(|s| s.json()),
                    "cpu_diff_ns": r.cpu_diff_ns.map(|s| s.json()),
                    "target": r.workload.goal.map(|g| g.max), "stretch": r.workload.goal.and_then(|g| g.stretch),
                })
            })
            .collect();
        json!({ "ratios": ratios, "runs": runs, "samples": samples })
    }

    /// The samples and runs back from [`Self::json`] (as the `bench --vm` guest prints it), so
    /// that the ratios are computed here by the same code.
    pub fn from_json(json: &serde_json::Value) -> Result<Self> {
        let config = |v: &serde_json::Value| {
            let name = v["config"].as_str().unwrap_or_default();
            Config::from_name(name).with_context(|| format!("unknown configuration {name:?}"))
        };
        let round = |v: &serde_json::Value| v["round"].as_u64().context("no round").map(|r| r as usize);
        let mut samples = Vec::new();
        for s in json["samples"].as_array().context("no samples")? {
            let name = s["workload"].as_str().unwrap_or_default();
            let workload = WORKLOADS
                .iter()
                .find(|w| w.name == name)
                .with_context(|| format!("unknown workload {name:?}"))?;
            samples.push(Sample {
                round: round(s)?,
                config: config(s)?,
                workload: workload.name,
                n: s["n"].as_u64().unwrap_or(0),
                cpu_ns: s["cpu_ns"].as_f64().unwrap_or(f64::NAN),
                wall_ns: s["wall_ns"].as_f64().unwrap_or(f64::NAN),
                delivered_opens: s["delivered_opens"].as_u64(),
                expected_opens: s["expected_opens"].as_u64().unwrap_or(0),
                pid: 0,
                settle_ms: s["settle_ms"].as_u64().unwrap_or(0),
            });
        }
        let mut runs = Vec::new();
        let mut configs = vec![Config::None];
        for r in json["runs"].as_array().context("no runs")? {
            let config = config(r)?;
            if !configs.contains(&config) {
                configs.push(config);
            }
            runs.push(Run {
                round: round(r)?,
                config,
                monitor_cpu_ns: r["monitor_cpu_ns"].as_u64(),
                records: r["records"].as_u64(),
                lost: r["lost"].as_u64(),
                foreign_bpf: r["foreign_bpf_programs"].as_u64().map(|n| n as usize),
                loadavg: r["loadavg1"].as_f64().unwrap_or(f64::NAN),
            });
        }
        configs.sort_by_key(|c| [Config::None, Config::Mnsensor, Config::Auditd].iter().position(|x| x == c));
        Ok(Self { configs, samples, runs })
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Overhead, Run, Sample};

    #[test]
    fn round_trips_through_json() {
        let sample = |round, config, cpu_ns, delivered_opens| Sample {
            round,
            config,
            workload: "open_protected",
            n: 1000,
            cpu_ns,
            wall_ns: 2.0 * cpu_ns,
            delivered_opens,
            expected_opens: 1100,
            pid: 7,
            settle_ms: 3,
        };
        let run = |round, config, lost: Option<u64>| Run {
            round,
            config,
            monitor_cpu_ns: Some(5),
            records: lost.map(|_| 1100),
            lost,
            foreign_bpf: Some(0),
            loadavg: f64::NAN,
        };
        let overhead = Overhead {
            configs: vec![Config::None, Config::Mnsensor],
            samples: vec![
                sample(0, Config::None, 100.0, None),
                sample(0, Config::Mnsensor, 125.0, Some(1100)),
                sample(1, Config::None, 100.0, None),
                sample(1, Config::Mnsensor, 150.0, Some(1099)),
            ],
            runs: vec![
                run(0, Config::None, None),
                run(0, Config::Mnsensor, Some(0)),
                run(1, Config::Mnsensor, Some(1)),
                run(1, Config::None, None),
            ],
        };
        let text = serde_json::to_string(&overhead.json()).expect("serialises");
        let back = Overhead::from_json(&serde_json::from_str(&text).expect("parses")).expect("valid");
        assert_eq!(back.configs, [Config::None, Config::Mnsensor]);
        assert_eq!(back.samples.len(), 4);
        assert_eq!(back.runs.iter().filter_map(|r| r.lost).sum::<u64>(), 1);
        assert!(back.runs[0].loadavg.is_nan());
        let ratio = back.ratios().into_iter().find(|r| r.workload.name == "open_protected").expect("a line");
        let cpu = ratio.cpu.expect("two pairs");
        assert_eq!((cpu.median, cpu.min, cpu.max, cpu.n), (1.375, 1.25, 1.5, 2));
        assert_eq!(back.delivery_mismatches().len(), 1);
        assert!(Overhead::from_json(&serde_json::json!({"samples": [{"config": "x"}], "runs": []})).is_err());
    }
}
