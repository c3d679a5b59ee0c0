//! Command line and bad input: usage errors, missing paths, version, non-root, SIGTERM.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::Path,
    process::Command,
};

use mnsensor_tests::{
    Output, Sensor, TempDir, get_str, path_str, run_capture, scaled, sensor_bin, show, util::COMMAND_TIMEOUT,
};

fn run(args: &[&str]) -> Output {
    run_capture(Command::new(sensor_bin()).args(args), scaled(COMMAND_TIMEOUT))
}

fn describe(o: &Output) -> String {
    format!("status {}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status, o.stdout, o.stderr)
}

/// A path under /nonexistent-… that certainly does not exist.
fn missing_path(label: &str) -> String {
    let p = format!("/nonexistent-mnsensor-test.{}/{label}", std::process::id());
    assert!(!Path::new(&p).exists());
    p
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let o = run(&["run", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "exit code of an unknown flag: {}", describe(&o));
    assert!(o.stderr.contains("unexpected argument"), "usage message: {}", describe(&o));
    assert!(o.stderr.contains("--no-such-flag"), "usage message names the flag: {}", describe(&o));
}

#[test]
fn missing_protect_path_is_an_error() {
    let p = missing_path("secret");
    let o = run(&["run", "--output", "stdout", "--protect", &p]);
    assert!(
        !o.status.success() && o.status.code().is_some(),
        "exit for a missing --protect path: {}",
        describe(&o)
    );
    assert!(o.stderr.contains(&p), "stderr names {p}: {}", describe(&o));
    assert!(!o.stdout.contains("sensor.start"), "started despite the bad path: {}", describe(&o));
}

/// Exporters opened before a start-up error (here OTLP and syslog, which own a runtime) are
/// closed without a panic, and the error is the one line about the bad path.
#[test]
fn start_up_error_with_network_outputs_is_one_clean_error() {
    let p = missing_path("secret");
    let state = TempDir::new("cli-state");
    let o = run(&[
        "run",
        "--state-dir",
        path_str(state.path()),
        "--output",
        "otlp+grpc://127.0.0.1:1",
        "--output",
        "syslog+tcp://127.0.0.1:1",
        "--protect",
        &p,
    ]);
    assert_eq!(o.status.code(), Some(1), "exit for a missing --protect path: {}", describe(&o));
    assert!(o.stderr.contains(&p) && !o.stderr.contains("panicked"), "{}", describe(&o));
}

#[test]
fn missing_output_directory_is_an_error() {
    let p = missing_path("events.jsonl");
    let o = run(&["run", "--output", &format!("jsonl:{p}")]);
    assert!(
        !o.status.success() && o.status.code().is_some(),
        "exit for an unwritable output: {}",
        describe(&o)
    );
    assert!(o.stderr.contains(&p), "stderr names {p}: {}", describe(&o));
}

#[test]
fn bad_ring_buffer_size_is_an_error() {
    for bad in ["5000", "0", "2048"] {
        let o = run(&["run", "--output", "stdout", "--ring-buffer-bytes", bad]);
        assert!(
            !o.status.success() && o.status.code().is_some(),
            "--ring-buffer-bytes {bad}: {}",
            describe(&o)
        );
        assert!(!o.stderr.trim().is_empty(), "--ring-buffer-bytes {bad} fails silently: {}", describe(&o));
        assert!(!o.stdout.contains("sensor.start"), "--ring-buffer-bytes {bad} started: {}", describe(&o));
    }
}

#[test]
fn version_is_printed() {
    let o = run(&["--version"]);
    assert!(o.status.success(), "--version: {}", describe(&o));
    let version = env!("CARGO_PKG_VERSION");
    assert!(o.stdout.contains(version), "--version prints {version}: {}", describe(&o));
}

#[test]
fn non_root_gets_one_clear_error_line() {
    // uid 65534 must be able to execute the binary; if a directory on the way is closed to
    // others (e.g. under /root in a VM), run a copy from a temp dir instead.
    let bin = sensor_bin();
    let copy_dir = TempDir::new("non-root-bin");
    let bin = if others_can_exec(&bin) {
        bin
    } else {
        let copy = copy_dir.join("mnsensor");
        std::fs::copy(&bin, &copy).expect("copy the sensor binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(copy_dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(others_can_exec(&copy), "{} is not executable by others", copy.display());
        copy
    };
    let o = run_capture(
        Command::new(&bin)
            .args(["run", "--output", "stdout"])
            .current_dir(Path::new("/"))
            .uid(65534)
            .gid(65534),
        scaled(COMMAND_TIMEOUT),
    );
    assert!(!o.status.success() && o.status.code().is_some(), "running as uid 65534: {}", describe(&o));
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line as uid 65534: {}", describe(&o));
    let l = lines[0].to_lowercase();
    assert!(
        l.contains("root") || l.contains("capabilit"),
        "the line mentions root or a capability: {}",
        describe(&o)
    );
    assert!(!o.stdout.contains("sensor.start"), "started as uid 65534: {}", describe(&o));
}

/// Whether a user other than the owner can execute `p` (o+x on it and every directory above).
fn others_can_exec(p: &Path) -> bool {
    let x = |q: &Path| std::fs::metadata(q).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    x(p) && p.ancestors().skip(1).all(x)
}

#[test]
fn sigterm_stops_cleanly() {
    let mut sensor = Sensor::start(&[]);
    let stop = sensor.stop_with(libc::SIGTERM);
    assert_eq!(get_str(&stop, "mnsensor.stop.reason"), "SIGTERM", "{}", show(&stop));
}

#[test]
fn stdout_output_carries_start_and_stop() {
    // `--output stdout` next to the harness's jsonl output: both carry the same records.
    let mut sensor = Sensor::start(&["--output", "stdout"]);
    sensor.stop();
    let stdout = mnsensor_tests::util::read_lossy(&sensor.dir().join("stdout.txt"));
    let events = sensor.events().to_vec();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines, events, "stdout and jsonl outputs differ");
    let outputs: Vec<String> = mnsensor_tests::get_str_array(&events[0], "mnsensor.config.outputs");
    let jsonl = format!("jsonl:{}", path_str(sensor.events_path()));
    assert_eq!(outputs, vec![jsonl, "stdout".to_owned()], "config.outputs as given: {}", show(&events[0]));
}
