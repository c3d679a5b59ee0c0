//! One `mnsensor run` process: started for a configuration or phase, stopped by its PID, and
//! what it wrote, counted.
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{host, interrupt};
use crate::cmd::step;

pub struct Sensor {
    child: Child,
    jsonl: PathBuf,
    log: PathBuf,
}

impl Sensor {
    /// Starts `bin run --protect DIR --output jsonl:JSONL` and waits for `sensor.start`.
    pub fn start(bin: &Path, protect: &Path, jsonl: &Path, log: &Path) -> Result<Self> {
        Self::start_with(bin, &["--protect".as_ref(), protect.as_os_str()], jsonl, log)
    }

    /// Starts `bin run --config JSONL.config.yaml ARGS… --output jsonl:JSONL --state-dir
    /// JSONL.state` (a fresh ledger per run, no rotation) and waits for `sensor.start`.
    pub fn start_with(bin: &Path, args: &[&std::ffi::OsStr], jsonl: &Path, log: &Path) -> Result<Self> {
        Self::start_configured(bin, args, "", jsonl, log)
    }

    /// [`Self::start_with`] with `config` (YAML lines) added to the configuration file.
    pub fn start_configured(
        bin: &Path,
        args: &[&std::ffi::OsStr],
        config: &str,
        jsonl: &Path,
        log: &Path,
    ) -> Result<Self> {
        let extra = config;
        let _ = fs::remove_file(jsonl);
        let state = jsonl.with_extension("state");
        let _ = fs::remove_dir_all(&state);
        // One file holds every record the bench counts: no rotation (the default rotates at
        // 100 MiB, which a rate step passes).
        let config = jsonl.with_extension("config.yaml");
        fs::write(&config, format!("jsonl:\n  rotate_bytes: 0\n  rotate_age_secs: 0\n{extra}"))
            .with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("--output")
            .arg(format!("jsonl:{}", jsonl.display()))
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).with_context(|| format!("creating {}", log.display()))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut sensor = Self { child, jsonl: jsonl.to_owned(), log: log.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if fs::read(jsonl).is_ok_and(|b| b.starts_with(br#"{"event.name":"sensor.start""#)) {
                OURS.lock().expect("not poisoned").extend(prog_ids(sensor.pid()));
                return Ok(sensor);
            }
            if let Some(status) = sensor.child.try_wait()? {
                bail!("mnsensor exited before sensor.start ({status}): {}", sensor.log_tail());
            }
            if Instant::now() > deadline {
                bail!("mnsensor wrote no sensor.start within 60 s: {}", sensor.log_tail());
            }
            interrupt::check()?;
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails if the sensor exited (it must run through its whole configuration).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("mnsensor exited during the benchmark ({status}): {}", self.log_tail());
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time of the whole process so far (`/proc/PID/stat`), in ns.
    pub fn cpu_ns(&self) -> Result<u64> {
        host::cpu_ns(self.pid())
    }

    /// VmRSS in KiB (`/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).context("no VmRSS")?;
        Ok(line.trim().trim_end_matches("kB").trim().parse()?)
    }

    /// SIGINT, then waits and counts what it wrote. A sensor that does not stop within 30 s
    /// is killed and noted as an incident (with where it was stuck); the run goes on.
    pub fn stop(mut self) -> Result<Tally> {
        signal(self.pid(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(status) if status.success() => {}
            Some(status) => bail!("mnsensor exited with {status}: {}", self.log_tail()),
            None => {
                let pid = self.pid();
                let state = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let state = state.lines().find(|l| l.starts_with("State:")).unwrap_or("?").to_owned();
                let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                let cpu = self.cpu_ns().map_or(f64::NAN, |c| c as f64 / 1e9);
                let _ = self.child.kill();
                let _ = self.child.wait();
                incident(format!(
                    "mnsensor (pid {pid}) did not stop within 30 s of SIGINT and was killed \
                     ({state}, wchan {wchan:?}, {cpu:.1} s CPU); its last log lines: {}",
                    self.log_tail()
                ));
            }
        }
        Tally::read(&self.jsonl)
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for Sensor {
    /// Only reached on an error path: kill our own child by its PID.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// BPF program ids loaded by the sensors this run started: not someone else's.
static OURS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

pub fn our_programs() -> BTreeSet<u32> {
    OURS.lock().expect("not poisoned").clone()
}

/// The ids of the BPF programs a process holds (`prog_id:` in the fdinfo of its descriptors).
fn prog_ids(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    dir.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok()))
        .collect()
}

/// Things that went wrong in the sensor without stopping the run; printed with the results.
static INCIDENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn incident(msg: String) {
    step(format!("bench: warning: {msg}"));
    INCIDENTS.lock().expect("not poisoned").push(msg);
}

pub fn incidents() -> Vec<String> {
    INCIDENTS.lock().expect("not poisoned").clone()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: `pid` is our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// What one sensor run wrote.
#[derive(Debug, Default)]
pub struct Tally {
    /// Records per `event.name`.
    pub events: HashMap<String, u64>,
    /// Opens recorded per `process.pid`: `file.open` records plus the opens folded into
    /// `file.close` records with `mnsensor.close.reason: fold` (`mnsensor.fold.count`).
    pub opens_by_pid: HashMap<u32, u64>,
    /// Of those, the opens folded into `file.close` records.
    pub folded_by_pid: HashMap<u32, u64>,
    /// Sum of `mnsensor.loss.count` over `sensor.event_loss` records.
    pub lost: u64,
    /// From `sensor.stop`.
    pub stop_delivered: Option<u64>,
    pub stop_lost: Option<u64>,
}

impl Tally {
    pub fn read(path: &Path) -> Result<Self> {
        let mut tally = Self::default();
        let mut reader = BufReader::with_capacity(1 << 20, fs::File::open(path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(tally);
            }
            let line = String::from_utf8_lossy(&line);
            let Some(name) = event_name(&line) else { continue };
            *tally.events.entry(name.to_owned()).or_default() += 1;
            match name {
                "file.open" | "file.close" => {
                    let n = if name == "file.open" {
                        1
                    } else {
                        field(&line, "mnsensor.fold.count").and_then(|c| c.parse().ok()).unwrap_or(0)
                    };
                    if let Some(pid) = field(&line, "process.pid").and_then(|p| p.parse().ok()) {
                        *tally.opens_by_pid.entry(pid).or_default() += n;
                        if name == "file.close" {
                            *tally.folded_by_pid.entry(pid).or_default() += n;
                        }
                    }
                }
                "sensor.event_loss" => {
                    tally.lost +=
                        field(&line, "mnsensor.loss.count").and_then(|c| c.parse().ok()).unwrap_or(0);
                }
                "sensor.stop" => {
                    tally.stop_delivered =
                        field(&line, "mnsensor.events.delivered").and_then(|c| c.parse().ok());
                    tally.stop_lost = field(&line, "mnsensor.events.lost").and_then(|c| c.parse().ok());
                }
                _ => {}
            }
        }
    }

    pub fn count(&self, event: &str) -> u64 {
        self.events.get(event).copied().unwrap_or(0)
    }

    /// Records lost according to the loss records and to `sensor.stop`, whichever is larger.
    pub fn lost_total(&self) -> u64 {
        self.lost.max(self.stop_lost.unwrap_or(0))
    }
}

/// The `event.name` of a record: it is always the first key.
pub fn event_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(r#"{"event.name":""#)?;
    Some(&rest[..rest.find('"')?])
}

/// The raw value of a top-level `"key":` (string contents, or the number as written). Enough
/// for the flat records mnsensor writes, without parsing whole lines.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return Some(&s[..s.find('"')?]);
    }
    Some(&rest[..rest.find([',', '}'])?])
}

#[cfg(test)]
mod tests {
    use super::{event_name, field};

    #[test]
    fn fields_of_a_flat_record() {
        let line = r#"{"event.name":"file.open","time":"2026-11-22T06:16:57.4Z","process.pid":2716,"mnsensor.file.opener.pid":9,"file.name":"lat-00001"}"#;
        assert_eq!(event_name(line), Some("file.open"));
        assert_eq!(field(line, "process.pid"), Some("2716"));
        assert_eq!(field(line, "file.name"), Some("lat-00001"));
        assert_eq!(field(line, "time"), Some("2026-11-22T06:16:57.4Z"));
        assert_eq!(field(line, "pid"), None);
        assert_eq!(event_name(r#"{"time":1}"#), None);
    }
}
