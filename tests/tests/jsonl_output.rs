//! The `jsonl:PATH` output: created 0600, rotated by size keeping N files, reopened on SIGHUP.
//!
//! The sensor runs without the harness (whose reader follows one file that must not rotate).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    ChildGuard, TempDir, get_u64, is, path_str, scaled, sensor_bin,
    util::{STOP_TIMEOUT, send_signal},
};
use serde_json::Value;

fn records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()))
        })
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while !cond() {
        assert!(Instant::now() < deadline, "not reached: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn storm(n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    assert!(Command::new("/bin/sh").args(["-c", &script]).status().expect("sh").success());
}

#[test]
fn file_output_is_private_rotates_by_size_keeping_n_and_reopens_on_sighup() {
    let dir = TempDir::new("jsonl-rotate");
    let out = dir.join("events.jsonl");
    let name = |n: u32| PathBuf::from(format!("{}.{n}", out.display()));
    let config = dir.write("config.yaml", "jsonl:\n  rotate_bytes: 16384\n  rotate_age_secs: 0\n  keep: 2\n");
    let mut sensor = ChildGuard::spawn(
        Command::new(sensor_bin())
            .args(["run", "--config", path_str(&config), "--state-dir", path_str(&dir.join("state"))])
            .arg("--output")
            .arg(format!("jsonl:{}", path_str(&out)))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.txt")).unwrap()),
    );
    // Other processes on the machine may rotate the file before the storm does.
    wait_until("sensor.start", || {
        [out.clone(), name(1), name(2)]
            .iter()
            .any(|p| records(p).first().is_some_and(|e| is(e, "sensor.start")))
    });
    storm(200);
    wait_until("two rotations", || name(2).exists());
    assert!(!name(3).exists(), "only 2 rotated files are kept");
    // The output may still be rotating: a rotation renames .1 to .2, then the current file
    // to .1, then creates the current file, so between those steps one of the three is
    // missing. The checks take the three at one moment when all exist.
    let mut files = Vec::new();
    wait_until("the current file, .1 and .2 all present", || {
        files = [out.clone(), name(1), name(2)]
            .into_iter()
            .map(|p| fs::metadata(&p).map(|m| (p, m)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        files.len() == 3
    });
    for (p, meta) in &files {
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        let len = meta.len();
        assert!(len <= 16384, "{} is {len} bytes, more than rotate_bytes", p.display());
    }
    // The rotated files continue each other: .2 then .1 then the current file. A slow machine
    // may still be rotating while they are read, so this is awaited, not read once: a lost
    // record would keep the two apart for good.
    let seq = |e: &Value| get_u64(e, "mnsensor.seq");
    wait_until("no record lost at rotation (.2 ends right before .1 starts)", || {
        let (older, newer) = (records(&name(2)), records(&name(1)));
        older.last().zip(newer.first()).is_some_and(|(o, n)| seq(o) + 1 == seq(n))
    });

    // logrotate without copytruncate: move the file away, SIGHUP, a new file appears.
    let moved = dir.join("events.jsonl.moved");
    fs::rename(&out, &moved).unwrap();
    send_signal(sensor.pid(), libc::SIGHUP);
    wait_until("a new file after SIGHUP", || out.exists());
    storm(5);
    send_signal(sensor.pid(), libc::SIGINT);
    assert!(sensor.wait_timeout(scaled(STOP_TIMEOUT)).success());
    let after = records(&out);
    assert!(after.last().is_some_and(|e| is(e, "sensor.stop")), "sensor.stop ends the reopened file");
    // Everything after the moved file is in the new files, once and in order (older rotated
    // files beyond `keep` are gone).
    let moved_last = records(&moved).last().map(seq).unwrap_or(0);
    let mut later: Vec<u64> = [name(2), name(1), out.clone()]
        .iter()
        .flat_map(|p| records(p))
        .map(|e| seq(&e))
        .filter(|&s| s > moved_last)
        .collect();
    later.sort_unstable();
    assert!(later.windows(2).all(|w| w[1] == w[0] + 1), "records after SIGHUP are contiguous");
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
}
