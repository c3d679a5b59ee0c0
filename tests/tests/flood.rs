//! Floods cannot hide an intruder (issue 10; docs/architecture.md, "Transport and loss
//! accounting"): while an allowed user (root, named in the policy's allow list) opens and
//! reads a protected file hundreds of thousands of times, another user's single read of a
//! protected file is recorded every time (20 reads, each by its own process), and the storm's
//! records add up exactly: `file.open` records + folded opens (`mnsensor.fold.count`) + opens
//! of lost records (`mnsensor.lost.who`) = the opens the storm child made, and the byte totals
//! of its `file.close` records (fold records included) = bytes it read.
//!
//! Both workloads are this test binary re-executed with `CHILD_ENV` set (the ignored helper
//! test [`flood_child`]), which reports what it did (pid, opens, bytes) in a result file. The
//! intruder is a uid no policy names (no passwd entry needed: the kernel only knows numbers).

use std::{
    env,
    ffi::CString,
    fs,
    io::{self, Read as _, Write as _},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, get_str, get_u64, in_vm, is, loginuid, path_str, pid_of, scaled,
    show, util::read_lossy,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "MNSENSOR_FLOOD_CHILD";
const CHILD_TEST: &str = "flood_child";
/// The intruder's uid: named by no policy and by no passwd entry.
const INTRUDER_UID: u32 = 61_234;
const INTRUDER_READS: usize = 20;
const STORM_DATA: &[u8] = b"bulk payroll export line\n";
const SECRET: &[u8] = b"1234-5678-9012 My Number\n";

/// Opens the storm makes at least (it goes on until the last intruder read is done).
fn storm_min() -> u64 {
    if in_vm() { 20_000 } else { 300_000 }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Starts this binary as a flood child with `spec`; its result goes to `spec.out`.
fn spawn_child(spec: &Value) -> ChildGuard {
    let exe = canonical(env::current_exe().expect("current_exe"));
    let mut cmd = Command::new(exe);
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if loginuid().is_some() {
        // The responsible uid is the login uid when set: an inherited one is unset between
        // fork and exec, so the kernel judges each child by its own uid.
        let text = CString::new(u32::MAX.to_string()).expect("no NUL");
        // SAFETY: only async-signal-safe calls (open, write, close) on data made before fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(c"/proc/self/loginuid".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                let n =
                    if fd < 0 { -1 } else { libc::write(fd, text.as_ptr().cast(), text.as_bytes().len()) };
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n < 0 { Err(err) } else { Ok(()) }
            });
        }
    }
    ChildGuard::spawn(&mut cmd)
}

fn result(path: &Path) -> Value {
    let text = read_lossy(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("child result {}: {e}: {text:?}", path.display()))
}

/// Helper mode of this binary: does nothing unless started by [`spawn_child`].
#[test]
#[ignore = "helper: runs only as a child of the flood test"]
fn flood_child() {
    let Ok(spec) = env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).expect("child spec is JSON");
    let field = |k: &str| spec.get(k).unwrap_or_else(|| panic!("spec has no {k:?}: {spec}"));
    // Opened as root, before the privileges go.
    let mut out = fs::File::create(field("out").as_str().expect("out")).expect("create result file");
    let path = PathBuf::from(field("path").as_str().expect("path"));
    if let Some(uid) = spec.get("uid").and_then(Value::as_u64) {
        let uid = u32::try_from(uid).expect("uid fits");
        // SAFETY: plain credential syscalls (the child is single-threaded here).
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups: {}", io::Error::last_os_error());
            assert_eq!(libc::setresgid(uid, uid, uid), 0, "setresgid: {}", io::Error::last_os_error());
            assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid: {}", io::Error::last_os_error());
        }
    }
    let min = field("min").as_u64().expect("min");
    let stop = spec.get("stop").and_then(Value::as_str).map(PathBuf::from);
    let mut opens = 0u64;
    let mut bytes = 0u64;
    let mut buf = [0u8; 256];
    loop {
        let mut f = fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        opens += 1;
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
        drop(f);
        // The stop file is looked at every 1,024 opens once the minimum is done.
        if opens >= min && stop.as_ref().is_none_or(|s| opens.is_multiple_of(1024) && s.exists()) {
            break;
        }
    }
    let res = json!({"pid": std::process::id(), "opens": opens, "bytes": bytes});
    out.write_all(res.to_string().as_bytes()).expect("write result");
}

/// The records of `pid` about `path`, by event name.
fn of(events: &[Value], name: &str, pid: u32, path: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            is(e, name) && pid_of(e) == Some(pid) && e.get("file.path").and_then(Value::as_str) == Some(path)
        })
        .cloned()
        .collect()
}

/// Lost records of (`uid`, `inode`) from `mnsensor.lost.who`: the sum of `field` over the
/// entries of `event` (any event when `None`).
fn lost(events: &[Value], event: Option<&str>, uid: u32, inode: u64, field: &str) -> u64 {
    events
        .iter()
        .filter(|e| is(e, "sensor.event_loss"))
        .flat_map(|e| e.get("mnsensor.lost.who").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter(|w| w["uid"] == json!(uid) && w["inode"] == json!(inode))
        .filter(|w| event.is_none_or(|ev| w["event"] == json!(ev)))
        .map(|w| w[field].as_u64().unwrap_or(0))
        .sum()
}

/// (`file.open` records, folded opens, their folded closes, lost opens) of the storm.
fn storm_tally(events: &[Value], pid: u32, path: &str, inode: u64) -> (u64, u64, u64, u64) {
    let opens = of(events, "file.open", pid, path).len() as u64;
    let folds: Vec<Value> = of(events, "file.close", pid, path)
        .into_iter()
        .filter(|e| get_str(e, "mnsensor.close.reason") == "fold")
        .collect();
    let folded = folds.iter().map(|e| get_u64(e, "mnsensor.fold.count")).sum();
    let closes = folds.iter().map(|e| get_u64(e, "mnsensor.fold.closes")).sum();
    (opens, folded, closes, lost(events, None, 0, inode, "opens"))
}

#[test]
fn storm_does_not_hide_an_intruder() {
    let dir = TempDir::new("flood");
    let data = dir.mkdir("data");
    let policies = dir.mkdir("policies");
    let mut d = data.clone();
    loop {
        chmod(&d, 0o755);
        if d == dir.path() {
            break;
        }
        d = d.parent().expect("parent").to_path_buf();
    }
    let storm = canonical(dir.write("data/bulk.csv", STORM_DATA));
    let secret = canonical(dir.write("data/secret.txt", SECRET));
    chmod(&secret, 0o644);
    let storm_str = path_str(&storm).to_owned();
    let secret_str = path_str(&secret).to_owned();
    let inode = {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&storm).expect("stat").ino()
    };
    // Audit mode: accesses are recorded, never refused; root is the allowed bulk reader.
    fs::write(
        policies.join("payroll.yaml"),
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: payroll}}\nspec:\n  mode: audit\n  protect: [{{path: \"{}\"}}]\n  allow:\n    - name: export\n      subjects: [{{uid: 0}}]\n      operations: [read]\n  default: {{action: alert, severity: high}}\n",
            path_str(&data)
        ),
    )
    .expect("write policy");
    // A small bulk ring: the storm alone could fill it many times over.
    let mut sensor = Sensor::start(&["--ring-buffer-bytes", "65536", "--policy", path_str(&policies)]);

    let stop = dir.join("stop");
    let storm_out = dir.join("storm.json");
    let mut storm_child = spawn_child(&json!({
        "path": storm_str, "out": path_str(&storm_out), "min": storm_min(), "stop": path_str(&stop),
    }));
    let storm_pid = storm_child.pid();
    let mut reads = Vec::new();
    for i in 0..INTRUDER_READS {
        thread::sleep(Duration::from_millis(if in_vm() { 200 } else { 50 }));
        let out = dir.join(format!("intruder{i}.json"));
        let mut c = spawn_child(&json!({
            "path": secret_str, "out": path_str(&out), "min": 1, "uid": INTRUDER_UID,
        }));
        let status = c.wait_timeout(scaled(Duration::from_secs(30)));
        assert!(status.success(), "intruder read {i}: {status}");
        let r = result(&out);
        assert_eq!(r["opens"], 1, "intruder {i}: {r}");
        assert_eq!(r["bytes"], SECRET.len(), "intruder {i}: {r}");
        reads.push(r["pid"].as_u64().expect("pid") as u32);
        // The storm must still be running, or the reads were not in the middle of it.
        assert!(
            storm_child.child_mut().try_wait().expect("try_wait").is_none(),
            "the storm ended before intruder read {i}"
        );
    }
    fs::write(&stop, "").expect("write stop file");
    let status = storm_child.wait_timeout(scaled(Duration::from_secs(600)));
    assert!(status.success(), "storm child: {status}");
    let truth = result(&storm_out);
    assert_eq!(truth["pid"], storm_pid, "{truth}");
    let opens = truth["opens"].as_u64().expect("opens");
    let bytes = truth["bytes"].as_u64().expect("bytes");
    assert!(opens >= storm_min() && bytes == opens * STORM_DATA.len() as u64, "{truth}");

    // The storm child exited, so its last fold window was written by the kernel.
    let complete = |evs: &[Value]| {
        let (o, f, _, l) = storm_tally(evs, storm_pid, &storm_str, inode);
        o + f + l >= opens && reads.iter().all(|&pid| of(evs, "file.close", pid, &secret_str).len() == 1)
    };
    let reached = sensor.try_wait_until(scaled(Duration::from_secs(60)), complete);
    sensor.stop();
    let events = sensor.events().to_vec();
    if !reached {
        let (o, f, c, l) = storm_tally(&events, storm_pid, &storm_str, inode);
        sensor.fail(&format!(
            "records incomplete: storm opens {opens}: file.open {o} + folded {f} (closes {c}) + lost {l}"
        ));
    }

    // Every intruder read: its open and its close with the bytes, under its own uid.
    for (i, &pid) in reads.iter().enumerate() {
        let o = of(&events, "file.open", pid, &secret_str);
        let c = of(&events, "file.close", pid, &secret_str);
        if o.len() != 1 || c.len() != 1 {
            sensor.fail(&format!(
                "intruder read {i} (pid {pid}): {} file.open, {} file.close",
                o.len(),
                c.len()
            ));
        }
        assert_eq!(get_u64(&o[0], "process.user.id"), u64::from(INTRUDER_UID), "{}", show(&o[0]));
        assert_eq!(get_u64(&c[0], "mnsensor.file.bytes_read"), SECRET.len() as u64, "{}", show(&c[0]));
    }

    // The storm adds up exactly.
    let (o, f, c, l) = storm_tally(&events, storm_pid, &storm_str, inode);
    if o + f + l != opens {
        sensor.fail(&format!("storm opens {opens} != file.open {o} + folded {f} + lost {l}"));
    }
    let lost_closes = lost(&events, Some("file.close"), 0, inode, "records");
    eprintln!(
        "storm: {opens} opens, {bytes} bytes; file.open {o}, folded {f} (closed {c}), lost opens {l}, lost closes {lost_closes}"
    );
    assert!(f > 0 && o < opens / 10, "the storm was not folded: file.open {o}, folded {f} of {opens}");
    if lost_closes == 0 {
        // With no storm close lost, every open's bytes are in a record: its own file.close
        // or a fold.
        assert_eq!(c, f, "every folded open was closed before its fold record");
        let closes = of(&events, "file.close", storm_pid, &storm_str);
        let plain = closes.iter().filter(|e| get_str(e, "mnsensor.close.reason") == "close").count() as u64;
        assert_eq!(plain, o, "one file.close per file.open");
        let read: u64 = closes.iter().map(|e| get_u64(e, "mnsensor.file.bytes_read")).sum();
        assert_eq!(read, bytes, "bytes of the storm's file.close records (folds included)");
    }
}
