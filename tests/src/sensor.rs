//! One running `mnsensor run` and the records it writes.

use std::{
    cell::Cell,
    fs,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    bpf::prog_loaded,
    event::{check_record, get_str, is, show},
    util::{
        EVENT_TIMEOUT, POLL_INTERVAL, START_TIMEOUT, STOP_TIMEOUT, TempDir, path_str, read_lossy, scaled,
        send_signal, sensor_bin,
    },
};

/// Reads a JSON-lines file incrementally and validates every record.
#[derive(Debug)]
pub struct EventReader {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    events: Vec<Value>,
    last_seq: Option<u64>,
}

impl EventReader {
    pub fn new(path: PathBuf) -> Self {
        Self { path, offset: 0, partial: Vec::new(), events: Vec::new(), last_seq: None }
    }

    /// Reads what was appended since the last call; returns how many records were added.
    /// Every complete line is parsed and checked ([`check_record`], first record is
    /// `sensor.start`, `mnsensor.seq` strictly increasing).
    pub fn poll(&mut self) -> usize {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return 0;
        };
        f.seek(SeekFrom::Start(self.offset)).expect("seek events file");
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).expect("read events file");
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let before = self.events.len();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            let line = &line[..line.len() - 1];
            let line = String::from_utf8(line.to_vec())
                .unwrap_or_else(|_| panic!("{}: a line is not UTF-8: {line:?}", self.path.display()));
            let line_no = self.events.len() + 1;
            let ev: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} line {line_no}: not JSON ({e}): {line}", self.path.display()));
            let seq = check_record(&ev, line_no, &line);
            if let Some(prev) = self.last_seq {
                assert!(
                    seq > prev,
                    "mnsensor.seq not strictly increasing ({prev} then {seq}) at line {line_no}: {line}"
                );
            }
            self.last_seq = Some(seq);
            if line_no == 1 {
                assert!(is(&ev, "sensor.start"), "first record is not sensor.start: {line}");
            } else {
                assert!(!is(&ev, "sensor.start"), "sensor.start again at line {line_no}: {line}");
            }
            self.events.push(ev);
        }
        self.events.len() - before
    }

    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Bytes after the last newline (an incomplete record).
    pub fn partial(&self) -> &[u8] {
        &self.partial
    }
}

/// A running sensor (`mnsensor run --output jsonl:<private dir>/events.jsonl …`).
///
/// Dropping it SIGKILLs the sensor if it still runs and removes its temp dir; if the test is
/// panicking, the sensor's stderr and last records are printed first.
#[derive(Debug)]
pub struct Sensor {
    child: Option<Child>,
    pid: u32,
    exit_status: Option<ExitStatus>,
    reader: EventReader,
    program_ids: Vec<u32>,
    events_path: PathBuf,
    stderr_path: PathBuf,
    /// Set once [`Self::fail`] has printed the stderr (Drop then does not repeat it).
    reported: Cell<bool>,
    // Last: removed after the child is gone.
    dir: TempDir,
}

impl Sensor {
    /// Starts `mnsensor run --output jsonl:<dir>/events.jsonl --state-dir <dir>/state <args>`
    /// (no `--state-dir` when `args` has one) and waits until it has written `sensor.start`. Panics (with the sensor's stderr) if it exits first or the
    /// deadline passes.
    #[track_caller]
    pub fn start(args: &[&str]) -> Self {
        Self::start_env(args, &[])
    }

    /// [`Self::start`] with extra environment variables for the sensor.
    #[track_caller]
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("sensor");
        let events_path = dir.join("events.jsonl");
        let stderr_path = dir.join("stderr.txt");
        let stdout_path = dir.join("stdout.txt");
        let stderr = fs::File::create(&stderr_path).expect("create stderr file");
        let stdout = fs::File::create(&stdout_path).expect("create stdout file");
        let mut cmd = Command::new(sensor_bin());
        cmd.arg("run")
            .arg("--output")
            .arg(format!("jsonl:{}", path_str(&events_path)))
            .arg("--status-socket")
            .arg(dir.join("status.sock"));
        if !args.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.join("state"));
        }
        cmd.envs(env.iter().copied()).args(args).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let pid = child.id();
        let mut sensor = Self {
            child: Some(child),
            pid,
            exit_status: None,
            reader: EventReader::new(events_path.clone()),
            program_ids: Vec::new(),
            events_path,
            stderr_path,
            reported: Cell::new(false),
            dir,
        };
        let timeout = scaled(START_TIMEOUT);
        let deadline = Instant::now() + timeout;
        loop {
            sensor.reader.poll();
            if !sensor.reader.events().is_empty() {
                break;
            }
            if let Some(status) = sensor.check_exited() {
                sensor.reader.poll();
                if !sensor.reader.events().is_empty() {
                    break;
                }
                sensor.fail(&format!("sensor exited ({status}) before writing sensor.start; args {args:?}"));
            }
            if Instant::now() >= deadline {
                sensor.fail(&format!("no sensor.start within {timeout:?}; args {args:?}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
        let start = sensor.reader.events()[0].clone();
        let ids = start.get("mnsensor.bpf.program_ids").and_then(Value::as_array).unwrap_or_else(|| {
            panic!("sensor.start has no mnsensor.bpf.program_ids array: {}", show(&start))
        });
        sensor.program_ids = ids
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or_else(|| panic!("program id {v} is not a u32: {}", show(&start)))
            })
            .collect();
        sensor
    }

    /// The sensor's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sensor's private temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The state directory the harness gave the sensor (ledger, key, cursors).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The jsonl output file.
    pub fn events_path(&self) -> &Path {
        &self.events_path
    }

    /// The `sensor.start` record.
    pub fn start_event(&self) -> &Value {
        &self.reader.events()[0]
    }

    /// `mnsensor.bpf.program_ids` of `sensor.start`.
    pub fn program_ids(&self) -> &[u32] {
        &self.program_ids
    }

    /// What the sensor wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Reads new records; returns all records so far.
    pub fn events(&mut self) -> &[Value] {
        self.reader.poll();
        self.reader.events()
    }

    /// Records so far matching `pred` (after reading new ones).
    pub fn matching(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events().iter().filter(|e| pred(e)).cloned().collect()
    }

    /// Panics if a record so far matches `pred`.
    #[track_caller]
    pub fn assert_none(&mut self, what: &str, pred: impl Fn(&Value) -> bool) {
        let found = self.matching(pred);
        if !found.is_empty() {
            let lines: Vec<String> = found.iter().take(10).map(show).collect();
            self.fail(&format!(
                "unexpected records ({what}): {} found, e.g.\n{}",
                found.len(),
                lines.join("\n")
            ));
        }
    }

    /// Waits ([`EVENT_TIMEOUT`], scaled) for the first record matching `pred`.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(what, scaled(EVENT_TIMEOUT), pred)
    }

    /// Waits up to `timeout` for the first record matching `pred`. Panics with `what`, the
    /// sensor's stderr and its last records if none comes or the sensor exits.
    #[track_caller]
    pub fn wait_for_within(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            self.reader.poll();
            let events = self.reader.events();
            if let Some(ev) = events[checked..].iter().find(|e| pred(e)) {
                return ev.clone();
            }
            checked = events.len();
            if let Some(status) = self.check_exited() {
                self.reader.poll();
                if let Some(ev) = self.reader.events()[checked..].iter().find(|e| pred(e)) {
                    return ev.clone();
                }
                self.fail(&format!("sensor exited ({status}) while waiting for {what}"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no record within {timeout:?}: {what}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls until `cond(all records so far)` holds or `timeout` passes; returns whether it
    /// held. Panics if the sensor exits.
    #[track_caller]
    pub fn try_wait_until(&mut self, timeout: Duration, mut cond: impl FnMut(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.reader.poll();
            if cond(self.reader.events()) {
                return true;
            }
            if let Some(status) = self.check_exited() {
                self.reader.poll();
                if cond(self.reader.events()) {
                    return true;
                }
                self.fail(&format!("sensor exited ({status}) while waiting"));
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Like [`Self::try_wait_until`] but panics with `what` on the deadline.
    #[track_caller]
    pub fn wait_until(&mut self, what: &str, timeout: Duration, cond: impl FnMut(&[Value]) -> bool) {
        if !self.try_wait_until(timeout, cond) {
            self.fail(&format!("not reached within {timeout:?}: {what}"));
        }
    }

    /// Stops the sensor with SIGINT; see [`Self::stop_with`].
    #[track_caller]
    pub fn stop(&mut self) -> Value {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `sig` (SIGINT or SIGTERM), waits for exit, and checks the clean-shutdown
    /// contract: exit status 0, last record `sensor.stop` (once) with the signal as
    /// `mnsensor.stop.reason`, output ends with a newline, and none of the program ids of
    /// `sensor.start` is still loaded. Returns the `sensor.stop` record.
    #[track_caller]
    pub fn stop_with(&mut self, sig: i32) -> Value {
        let reason = match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => panic!("stop_with: unsupported signal {sig}"),
        };
        assert!(self.check_exited().is_none(), "sensor exited before stop: {}", self.stderr());
        send_signal(self.pid, sig);
        let timeout = scaled(STOP_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.check_exited() {
                break status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("sensor did not exit within {timeout:?} of {reason}"));
            }
            thread::sleep(POLL_INTERVAL);
        };
        self.reader.poll();
        if !status.success() {
            self.fail(&format!("sensor exited with {status} after {reason}, expected 0"));
        }
        if !self.reader.partial().is_empty() {
            let tail = String::from_utf8_lossy(self.reader.partial()).into_owned();
            self.fail(&format!("output ends with an incomplete line: {tail:?}"));
        }
        let events = self.reader.events();
        let last = events.last().expect("at least sensor.start").clone();
        if !is(&last, "sensor.stop") {
            self.fail(&format!("last record is not sensor.stop: {}", show(&last)));
        }
        let stops = events.iter().filter(|e| is(e, "sensor.stop")).count();
        if stops != 1 {
            self.fail(&format!("{stops} sensor.stop records, expected 1"));
        }
        assert_eq!(get_str(&last, "mnsensor.stop.reason"), reason, "stop reason: {}", show(&last));
        self.assert_programs_gone();
        last
    }

    /// Panics if any program id of `sensor.start` is still loaded (polling a short deadline:
    /// the kernel frees programs as the last reference goes).
    #[track_caller]
    pub fn assert_programs_gone(&self) {
        let timeout = scaled(Duration::from_secs(5));
        let deadline = Instant::now() + timeout;
        loop {
            let loaded: Vec<u32> = self.program_ids.iter().copied().filter(|&id| prog_loaded(id)).collect();
            if loaded.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "BPF programs {loaded:?} (of {:?}) still loaded {timeout:?} after the sensor exited",
                    self.program_ids
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The exit status if the sensor has exited (reaping it).
    fn check_exited(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit_status = Some(status);
            self.child = None;
        }
        self.exit_status
    }

    /// Panics with `msg`, the sensor's stderr and its last records.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        self.reported.set(true);
        let events = self.reader.events();
        let tail: Vec<String> = events.iter().rev().take(30).rev().map(show).collect();
        panic!(
            "{msg}\n--- sensor pid {} stderr ---\n{}\n--- last {} of {} records ---\n{}",
            self.pid,
            self.stderr(),
            tail.len(),
            events.len(),
            tail.join("\n")
        );
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if thread::panicking() && std::env::var_os("MNSENSOR_TEST_KEEP_FAILED").is_some() {
            let kept = self.dir.keep();
            eprintln!("MNSENSOR_TEST_KEEP_FAILED: kept {}", kept.display());
        }
        if thread::panicking() && !self.reported.get() {
            eprintln!(
                "--- sensor pid {} ({}) stderr ---\n{}",
                self.pid,
                self.dir.path().display(),
                self.stderr()
            );
        }
    }
}
