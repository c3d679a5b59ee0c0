//! Running as a systemd service: the unit (verify, security score), the notify protocol
//! played by a harness (READY, WATCHDOG, RELOADING+READY on SIGHUP, STATUS, a stalled loop
//! stops the pings), `mnsensor status` with and without a daemon, `config check|show`, and
//! the operator-facing log options.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    Output, TempDir, path_str, run_capture, scaled, sensor_bin,
    util::{
        COMMAND_TIMEOUT, ChildGuard, START_TIMEOUT, STOP_TIMEOUT, find_tool, read_lossy, send_signal,
        workspace_root,
    },
};
use serde_json::Value;

fn mnsensor(args: &[&str]) -> Output {
    run_capture(Command::new(sensor_bin()).args(args), scaled(COMMAND_TIMEOUT))
}

fn describe(o: &Output) -> String {
    format!("status {}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status, o.stdout, o.stderr)
}

/// The unit with `/usr/bin/mnsensor` replaced by the binary under test (verify checks that
/// the commands exist).
fn unit_copy(dir: &TempDir) -> std::path::PathBuf {
    let unit =
        std::fs::read_to_string(workspace_root().join("packaging/mnsensor.service")).expect("read unit");
    dir.write("mnsensor.service", unit.replace("/usr/bin/mnsensor", path_str(&sensor_bin())))
}

#[test]
fn unit_verifies_and_scores_within_the_documented_bound() {
    let dir = TempDir::new("unit");
    let unit = unit_copy(&dir);
    let analyze = find_tool("systemd-analyze");
    let o = run_capture(Command::new(&analyze).arg("verify").arg(&unit), scaled(COMMAND_TIMEOUT));
    assert!(o.status.success() && o.stderr.trim().is_empty(), "systemd-analyze verify: {}", describe(&o));
    let o = run_capture(
        Command::new(&analyze).args(["security", "--offline=yes", "--no-pager"]).arg(&unit),
        scaled(COMMAND_TIMEOUT),
    );
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level: {}", describe(&o)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    let docs =
        std::fs::read_to_string(workspace_root().join("docs/operations.md")).expect("docs/operations.md");
    let bound: f64 = docs
        .lines()
        .find_map(|l| l.strip_prefix("Exposure bound checked by the tests: "))
        .and_then(|r| r.trim().trim_end_matches('.').parse().ok())
        .expect("docs/operations.md states `Exposure bound checked by the tests: N`");
    assert!(score <= bound, "exposure {score} is above the documented bound {bound}:\n{}", o.stdout);
}

/// Plays systemd's side of the notify protocol: records every datagram with its arrival time.
struct NotifySocket {
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(path: &Path) -> Self {
        let sock = UnixDatagram::bind(path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test (and its Arc) is gone.
            while Arc::strong_count(&sink) > 1 {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        Self { messages }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    fn count(&self, what: &str) -> usize {
        self.all().iter().filter(|(_, m)| m.lines().any(|l| l == what)).count()
    }

    /// Waits for the `n`th message holding the line `what`.
    #[track_caller]
    fn wait(&self, what: &str, n: usize, timeout: Duration) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<_> =
                self.all().into_iter().filter(|(_, m)| m.lines().any(|l| l == what)).collect();
            if let Some(m) = found.get(n - 1) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "no {what} #{n} within {timeout:?}; got {:?}", self.all());
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn events(path: &Path) -> Vec<Value> {
    read_lossy(path).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn names(path: &Path) -> Vec<String> {
    events(path).iter().filter_map(|e| e.get("event.name")?.as_str().map(str::to_owned)).collect()
}

fn status_json(socket: &Path) -> (Output, Option<Value>) {
    let o = mnsensor(&["status", "--socket", path_str(socket), "--format", "json"]);
    let v = serde_json::from_str(&o.stdout).ok();
    (o, v)
}

#[test]
fn notify_protocol_status_reload_and_a_stalled_loop() {
    let dir = TempDir::new("notify");
    let notify = NotifySocket::bind(&dir.join("notify.sock"));
    let events_path = dir.join("events.jsonl");
    let socket = dir.join("run/status.sock");
    let stall = dir.join("stall");
    let config = dir.write("config.yaml", "drain_interval_ms: 20\n");
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = ChildGuard::spawn(
        Command::new(sensor_bin())
            .args(["run", "--config", path_str(&config), "--output"])
            .arg(format!("jsonl:{}", path_str(&events_path)))
            .arg("--status-socket")
            .arg(&socket)
            .env("NOTIFY_SOCKET", dir.join("notify.sock"))
            .env("WATCHDOG_USEC", "400000")
            .env("MNSENSOR_TEST_STALL_FILE", &stall)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    );
    let pid = child.pid();
    let fail =
        |msg: String| -> ! { panic!("{msg}\n--- sensor stderr ---\n{}", read_lossy(&dir.join("stderr"))) };

    // READY=1 only once the programs are attached: sensor.start is already sealed in the
    // ledger. The outputs are fed from the ledger by their own workers, so the jsonl line
    // may follow READY by a moment; it must be the first record there.
    let (_, ready) = notify.wait("READY=1", 1, scaled(START_TIMEOUT));
    assert!(ready.contains("STATUS="), "READY carries a status: {ready:?}");
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    while names(&events_path).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if names(&events_path).first().map(String::as_str) != Some("sensor.start") {
        fail(format!("READY=1 before sensor.start was written: {:?}", names(&events_path)));
    }
    let first = notify.all().into_iter().position(|(_, m)| m.contains("READY=1")).unwrap();
    assert!(
        !notify.all()[..first].iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "watchdog pings before READY: {:?}",
        notify.all()
    );
    notify.wait("WATCHDOG=1", 3, scaled(Duration::from_secs(5)));

    // Status from the running daemon.
    let (o, snap) = status_json(&socket);
    let snap = snap.unwrap_or_else(|| fail(format!("status is not JSON: {}", describe(&o))));
    assert!(o.status.success(), "status of a healthy daemon: {}", describe(&o));
    assert_eq!(snap["state"], "ready", "{snap}");
    assert_eq!(snap["healthy"], true, "{snap}");
    assert_eq!(snap["pid"], pid, "{snap}");
    assert_eq!(snap["version"], env!("CARGO_PKG_VERSION"), "{snap}");
    assert_eq!(snap["watchdog"], true, "{snap}");
    assert_eq!(snap["backends"]["process"], "tracepoint", "{snap}");
    assert!(snap["policy_hash"].as_str().is_some_and(|h| h.len() == 64), "{snap}");
    assert!(snap["counters"]["events"].as_u64().is_some(), "{snap}");
    let o = mnsensor(&["status", "--socket", path_str(&socket)]);
    assert!(
        o.status.success() && o.stdout.contains("healthy") && o.stdout.contains("policy hash"),
        "{}",
        describe(&o)
    );

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1; the changed key is named.
    std::fs::write(&config, "drain_interval_ms: 25\n").unwrap();
    send_signal(pid, libc::SIGHUP);
    let (t_reloading, reloading) = notify.wait("RELOADING=1", 1, scaled(Duration::from_secs(10)));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or_else(|| fail(format!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}")));
    assert!(usec > 0);
    let (t_ready, _) = notify.wait("READY=1", 2, scaled(Duration::from_secs(10)));
    assert!(t_ready >= t_reloading, "READY=1 came before RELOADING=1");
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let reloaded = loop {
        if let Some(e) =
            events(&events_path).into_iter().find(|e| e["event.name"] == "sensor.config_reloaded")
        {
            break e;
        }
        if Instant::now() > deadline {
            fail(format!("no sensor.config_reloaded: {:?}", names(&events_path)));
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        reloaded["mnsensor.config.restart_required"],
        serde_json::json!(["drain_interval_ms"]),
        "{reloaded}"
    );
    assert_eq!(reloaded["mnsensor.config.source"], path_str(&config), "{reloaded}");
    let (_, snap) = status_json(&socket);
    assert_eq!(
        snap.as_ref().map(|s| s["restart_required"].clone()),
        Some(serde_json::json!(["drain_interval_ms"]))
    );

    // STATUS= with counters is sent every few seconds.
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while !notify.all().iter().any(|(_, m)| m.starts_with("STATUS=Running:") && m.contains("events")) {
        assert!(Instant::now() < deadline, "no STATUS=Running with counters: {:?}", notify.all());
        thread::sleep(Duration::from_millis(50));
    }

    // A stalled event loop stops the pings, and status calls it unhealthy.
    std::fs::write(&stall, b"").unwrap();
    thread::sleep(Duration::from_millis(500));
    let before = notify.count("WATCHDOG=1");
    thread::sleep(Duration::from_millis(6000));
    let after = notify.count("WATCHDOG=1");
    assert_eq!(before, after, "watchdog pings continued while the event loop was stalled");
    let (o, snap) = status_json(&socket);
    assert!(!o.status.success(), "status of a stalled daemon must fail: {}", describe(&o));
    assert_eq!(snap.map(|s| s["healthy"].clone()), Some(Value::Bool(false)));
    std::fs::remove_file(&stall).unwrap();
    notify.wait("WATCHDOG=1", after + 2, scaled(Duration::from_secs(5)));

    // SIGTERM: STOPPING=1, a clean exit, the socket is gone and status says so.
    send_signal(pid, libc::SIGTERM);
    let status = child.wait_timeout(scaled(STOP_TIMEOUT));
    assert!(status.success(), "sensor exit: {status}");
    assert!(notify.count("STOPPING=1") == 1, "{:?}", notify.all());
    assert!(!socket.exists(), "status socket left behind");
    let o = mnsensor(&["status", "--socket", path_str(&socket)]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(o.stderr.contains("not running"), "{}", describe(&o));
}

#[test]
fn status_without_a_daemon_fails() {
    let dir = TempDir::new("status");
    let o = mnsensor(&["status", "--socket", path_str(&dir.join("none.sock")), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(o.stderr.contains("mnsensor is not running"), "{}", describe(&o));
    assert!(o.stdout.is_empty(), "{}", describe(&o));
}

#[test]
fn a_config_with_five_errors_reports_all_five_with_positions() {
    let dir = TempDir::new("config");
    let file = dir.write(
        "config.yaml",
        "outputs: [stdout]\n\
         ring_buffer_bytes: 5000\n\
         protect: /not/a/list\n\
         enforcement:\n  fail_mode: opne\n  deadline_ms: 1\n\
         drain_interval_sm: 20\n",
    );
    let f = path_str(&file);
    for args in [vec!["config", "check", "--no-host-checks", f], vec!["run", "--config", f]] {
        let o = mnsensor(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let located: Vec<&str> =
            o.stderr.lines().map(str::trim).filter(|l| l.starts_with(&format!("{f}:"))).collect();
        assert_eq!(located.len(), 5, "{args:?}: five located errors: {}", describe(&o));
        let want = [
            ("2:20:", "ring_buffer_bytes"),
            ("3:10:", "protect"),
            ("5:14:", "opne"),
            ("6:16:", "deadline_ms"),
            ("7:1:", "drain_interval_sm"),
        ];
        for ((pos, word), line) in want.iter().zip(&located) {
            assert!(line.starts_with(&format!("{f}:{pos}")) && line.contains(word), "{args:?}: {line:?}");
        }
        assert!(o.stderr.contains("did you mean `drain_interval_ms`?"), "{}", describe(&o));
        assert!(o.stderr.contains("5 errors"), "{}", describe(&o));
    }
}

#[test]
fn config_show_prints_the_effective_configuration_and_check_accepts_it() {
    let dir = TempDir::new("config");
    let file = dir.write("config.yaml", "ring_buffer_bytes: 65536\nenforcement: {fail_mode: closed}\n");
    let o = mnsensor(&["config", "show", "--config", path_str(&file), "--ring-buffer-bytes", "16384"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(o.stdout.contains("ring_buffer_bytes: 16384"), "the flag overrides the file: {}", describe(&o));
    assert!(o.stdout.contains("fail_mode: closed"), "the file's value: {}", describe(&o));
    assert!(
        o.stdout.contains("status_socket: /run/mnsensor/status.sock"),
        "defaults shown: {}",
        describe(&o)
    );
    let shown = dir.write("shown.yaml", &o.stdout);
    let o = mnsensor(&["config", "check", "--no-host-checks", path_str(&shown)]);
    assert!(o.status.success() && o.stdout.contains("configuration OK"), "{}", describe(&o));
}

#[test]
fn log_options_for_operators() {
    // A typo in the filter is a usage error, not silence.
    for bad in ["warning", "verbose"] {
        let o = mnsensor(&["--log-level", bad, "config", "show"]);
        assert_eq!(o.status.code(), Some(2), "--log-level {bad}: {}", describe(&o));
        assert!(o.stderr.contains("not a log level"), "{}", describe(&o));
    }
    // A diagnostic through tracing (the policy loader warns about a subdirectory it does not
    // read), in each format; the run then fails on the missing protected path, before
    // touching the kernel.
    let dir = TempDir::new("logs");
    let set = dir.mkdir("set");
    std::fs::copy(workspace_root().join("policies/default.yaml"), set.join("10-default.yaml")).unwrap();
    dir.mkdir("set/unread");
    let missing = dir.join("missing");
    let run = |format: &str| {
        let args =
            ["--log-format", format, "run", "--output", "stdout", "--policy", path_str(&set), "--protect"];
        let o = mnsensor(&[&args[..], &[path_str(&missing)]].concat());
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
        o
    };
    let o = run("text");
    assert!(o.stderr.contains("WARN") && o.stderr.contains("subdirectory not read"), "{}", describe(&o));
    assert!(!o.stderr.contains('\u{1b}'), "ANSI escapes although stderr is a file: {}", describe(&o));
    let o = run("json");
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("subdirectory not read"))
        .unwrap_or_else(|| panic!("{}", describe(&o)));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "WARN", "{line}");
    let o = run("journal");
    assert!(
        o.stderr.lines().any(|l| l.starts_with("<4>") && l.contains("subdirectory not read")),
        "{}",
        describe(&o)
    );
}

#[test]
fn policy_check_and_the_loader_say_the_same_about_subdirectories() {
    let dir = TempDir::new("policies");
    let set = dir.mkdir("set");
    std::fs::copy(workspace_root().join("policies/default.yaml"), set.join("10-default.yaml")).unwrap();
    dir.mkdir("set/examples");
    let o = mnsensor(&["policy", "check", "--no-host-checks", path_str(&set)]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(o.stderr.contains("examples") && o.stderr.contains("subdirectory not read"), "{}", describe(&o));
}
