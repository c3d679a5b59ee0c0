//! Policy enforcement: `mnsensor run --policy DIR` with `enforce`-mode policies decides every
//! open of a protected file through fanotify permission events (`deny`/`kill` → `EPERM`,
//! `kill` also SIGKILLs the opener), `audit`-mode policies are judged from the kernel's
//! records (`would_deny`), policy files are reloaded while running, and late decisions get
//! the configured fail mode (docs/policy.md, docs/events.md, docs/configuration.md).
//!
//! Every test starts its own sensor on its own temp dirs and creates its own users
//! (`useradd -M -N -s /usr/sbin/nologin mnt_<random>`, removed with `userdel` by a drop
//! guard, also on failure). In the busybox VM (`MNSENSOR_VM=1`, no `useradd`) they use the
//! fixed users `mnt_vm1`..`mnt_vm4` of its initramfs, so every test also runs under the BPF
//! LSM backend there.
//!
//! The opens run in a child process: this test binary re-executed with `CHILD_ENV` set,
//! which runs only the ignored helper test [`enforce_child`]. The child (optionally given a
//! login uid by the parent between fork and exec, as root) opens its result file, drops to
//! the test user, opens the protected file with one `open(2)`, reads it, and writes what
//! happened (errno, data) to the result file. Records are filtered by the child's pid.

use std::{
    env,
    ffi::CString,
    fs,
    io::{self, Read as _, Write as _},
    os::unix::{
        fs::{PermissionsExt as _, symlink},
        process::{CommandExt as _, ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, get_str, get_str_array, get_u64, has, is, loginuid, path_str,
    pid_of, run_capture, scaled, sensor_bin, show,
    users::{TestUser, VM_USERS, test_users, tool, user_tool},
    util::COMMAND_TIMEOUT,
    util::read_lossy,
};
use serde_json::{Value, json};

/// Selects the helper mode of this binary; its value is the child's spec (JSON).
const CHILD_ENV: &str = "MNSENSOR_ENFORCE_CHILD";
/// The helper test's name (see [`enforce_child`]).
const CHILD_TEST: &str = "enforce_child";
/// Deadline for one child (scaled).
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// What the protected files hold.
const SECRET: &str = "個人番号 123456789012 (test data)\n";
/// A schedule that is always open.
const ALWAYS: &str = r#"{timezone: Asia/Tokyo, windows: [{from: "00:00", to: "24:00"}]}"#;
/// The sensor configuration of the decision tests (see the module documentation).
const DECIDE_CONFIG: &str = "enforcement:\n  deadline_ms: 10000\n  fail_mode: closed\n";
/// The unset audit login uid.
const AUID_UNSET: u32 = u32::MAX;

// ---------------------------------------------------------------------------------------
// Fixture: policies, protected data, the sensor
// ---------------------------------------------------------------------------------------

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `<tmp>/…/policies/` (root, 0755) and `<tmp>/…/data/` (0755, readable by everyone).
struct Fixture {
    dir: TempDir,
    policies: PathBuf,
    data: PathBuf,
}

impl Fixture {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let policies = dir.mkdir("policies");
        let data = dir.mkdir("data");
        for d in [dir.path(), &policies, &data] {
            chmod(d, 0o755);
        }
        Self { dir, policies, data }
    }

    /// Writes `data/REL` (mode 0644, parents 0755) with [`SECRET`]; returns its canonical path.
    fn file(&self, rel: &str) -> PathBuf {
        let p = self.data.join(rel);
        let parent = p.parent().expect("parent");
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        let mut d = parent;
        while d != self.dir.path() {
            chmod(d, 0o755);
            d = d.parent().expect("parent");
        }
        fs::write(&p, SECRET).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        chmod(&p, 0o644);
        canonical(&p)
    }

    /// Puts `policies/NAME` in place atomically (written next to the policy directory, then
    /// renamed into it, so the sensor never sees a half-written or extra file), mode 0644.
    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let tmp = self.dir.join(format!("{name}.tmp"));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        chmod(&tmp, 0o644);
        let p = self.policies.join(name);
        fs::rename(&tmp, &p).unwrap_or_else(|e| panic!("rename to {}: {e}", p.display()));
        p
    }

    fn policies(&self) -> &str {
        path_str(&self.policies)
    }

    /// `mnsensor run --config <DECIDE_CONFIG> --policy policies/`.
    fn sensor(&self) -> Sensor {
        let config = self.config();
        Sensor::start(&["--config", path_str(&config), "--policy", self.policies()])
    }

    /// The configuration file of [`Self::sensor`].
    fn config(&self) -> PathBuf {
        self.dir.write("config.yaml", DECIDE_CONFIG)
    }

    /// The policy-set hash of `policies/` (see [`set_hash`]).
    fn check_hash(&self) -> String {
        set_hash(&self.policies)
    }
}

/// The policy-set hash of DIR, recomputed from its documented preimage; `mnsensor policy
/// check DIR` must print the same.
fn set_hash(dir: &Path) -> String {
    let o = run_capture(
        Command::new(sensor_bin()).args(["policy", "check", path_str(dir)]),
        scaled(COMMAND_TIMEOUT),
    );
    assert!(o.status.success(), "policy check failed: {}\n{}{}", o.status, o.stdout, o.stderr);
    let hash = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("policy set sha256: "))
        .unwrap_or_else(|| panic!("no hash in the output of policy check:\n{}", o.stdout))
        .to_owned();
    let want = mnsensor_tests::policy_hash::of_dir(dir);
    assert_eq!(hash, want, "policy check prints another hash than the documented preimage gives");
    want
}

/// A policy document: `mode`, one protected path, `body` (lists and allow, indented by two
/// spaces, may be empty) and the default action with severity high.
fn policy_doc(name: &str, mode: &str, protect: &Path, body: &str, action: &str) -> String {
    format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  protect: [{{path: \"{}\"}}]\n{body}  default: {{action: {action}, severity: high}}\n",
        path_str(protect)
    )
}

/// The canonical path of this test binary (what the kernel reports as its executable).
fn self_exe() -> PathBuf {
    canonical(env::current_exe().expect("current_exe"))
}

/// Copies this test binary to `dst` (mode 0755).
fn copy_self(dst: &Path) -> PathBuf {
    fs::copy(self_exe(), dst).unwrap_or_else(|e| panic!("copy the test binary to {}: {e}", dst.display()));
    chmod(dst, 0o755);
    canonical(dst)
}

/// How the sensor applies `enforce`-mode policy `name`, from `sensor.start`: `fanotify`
/// (permission events), `bpf-lsm` where BPF LSM programs load, or `fmod_ret` where fentry
/// programs load without the BPF LSM (docs/events.md). Never `none` here: these kernels can
/// enforce.
fn enforced_by(sensor: &Sensor, name: &str) -> String {
    let start = sensor.start_event();
    let backends = get_str_array(start, "mnsensor.policy.backends");
    let prefix = format!("{name}=");
    let found: Vec<&str> = backends.iter().filter_map(|b| b.strip_prefix(&prefix)).collect();
    assert!(
        matches!(found[..], ["fanotify" | "bpf-lsm" | "fmod_ret"]),
        "policy {name} must be listed once, enforced by fanotify, bpf-lsm or fmod_ret: {}",
        show(start)
    );
    found[0].to_owned()
}

/// Sends SIGHUP to the sensor.
fn sighup(sensor: &Sensor) {
    let pid = i32::try_from(sensor.pid()).expect("pid fits");
    // SAFETY: plain kill(2) on the sensor this test started.
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill(SIGHUP): {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------

/// What a child does: as `uid`/`gid`, with login uid `auid` (`None`: unset), opens `path`
/// for reading (or reading and writing) with the executable `exe` (this binary by default).
struct Access<'a> {
    path: &'a Path,
    uid: u32,
    gid: u32,
    auid: Option<u32>,
    write: bool,
    exe: Option<&'a Path>,
}

impl<'a> Access<'a> {
    fn read(path: &'a Path, user: &TestUser) -> Self {
        Self { path, uid: user.uid, gid: user.gid, auid: None, write: false, exe: None }
    }
}

/// One finished child.
#[derive(Debug)]
struct ChildRun {
    pid: u32,
    status: ExitStatus,
    /// The result file's contents (empty when the child wrote nothing).
    text: String,
    output: String,
}

impl ChildRun {
    fn result(&self) -> Value {
        assert!(
            self.status.success() && !self.text.is_empty(),
            "child {} failed: {} result {:?}\n{}",
            self.pid,
            self.status,
            self.text,
            self.output
        );
        let v: Value = serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("child result is not JSON ({e}): {}", self.text));
        assert_eq!(v["pid"].as_u64(), Some(u64::from(self.pid)), "the child reports another pid: {v}");
        v
    }

    /// The open succeeded and the child read [`SECRET`].
    #[track_caller]
    fn assert_read(&self, what: &str) {
        let r = self.result();
        assert_eq!(r["ok"], json!(true), "{what}: the open should succeed: {r}");
        assert_eq!(r["data"].as_str(), Some(SECRET), "{what}: data read: {r}");
    }

    /// The open failed with `EPERM` (the policy, not the file mode, refused it).
    #[track_caller]
    fn assert_eperm(&self, what: &str) {
        let r = self.result();
        assert_eq!(r["ok"], json!(false), "{what}: the open should be refused: {r}");
        assert_eq!(r["errno"].as_i64(), Some(i64::from(libc::EPERM)), "{what}: expected EPERM: {r}");
    }

    fn open_ms(&self) -> u64 {
        self.result()["open_ms"].as_u64().unwrap_or(0)
    }
}

/// Runs one child and waits for it (it may be killed: the caller checks `status`).
fn run_child(a: &Access<'_>) -> ChildRun {
    let dir = TempDir::new("enf-child");
    let result_path = dir.join("result.json");
    let spec = json!({
        "path": path_str(a.path),
        "out": path_str(&result_path),
        "uid": a.uid,
        "gid": a.gid,
        "write": a.write,
    });
    let out_path = dir.join("output");
    let out = fs::File::create(&out_path).expect("create output file");
    let exe = a.exe.map_or_else(self_exe, Path::to_path_buf);
    let mut cmd = Command::new(&exe);
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec.to_string())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup output file"))
        .stderr(out);
    // The login uid is set between fork and exec, in the single-threaded child: the whole
    // process (all its later threads) then has it, as after a login. An inherited login uid
    // of the test process is unset the same way when the access wants none.
    let want = a.auid.unwrap_or(AUID_UNSET);
    if a.auid.is_some() || loginuid().is_some() {
        let text = CString::new(want.to_string()).expect("no NUL");
        let file = c"/proc/self/loginuid";
        // SAFETY: the closure only makes async-signal-safe system calls (open, write, close)
        // on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let bytes = text.as_bytes();
                let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n != bytes.len() as isize {
                    return Err(err);
                }
                Ok(())
            });
        }
    }
    let mut child = ChildGuard::spawn(&mut cmd);
    let pid = child.pid();
    let status = child.wait_timeout(scaled(CHILD_TIMEOUT));
    ChildRun { pid, status, text: read_lossy(&result_path), output: read_lossy(&out_path) }
}

/// Helper mode of this binary: does nothing unless started by [`run_child`].
#[test]
#[ignore = "helper: runs only as a child of the enforcement tests"]
fn enforce_child() {
    let Ok(spec) = env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).expect("child spec is JSON");
    let field = |k: &str| spec.get(k).unwrap_or_else(|| panic!("spec has no {k:?}: {spec}"));
    // Opened as root, before the privileges go; outside the protected tree.
    let mut out = fs::File::create(field("out").as_str().expect("out")).expect("create result file");
    let uid = u32::try_from(field("uid").as_u64().expect("uid")).expect("uid fits");
    let gid = u32::try_from(field("gid").as_u64().expect("gid")).expect("gid fits");
    // SAFETY: plain credential syscalls (glibc applies them to every thread).
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups: {}", io::Error::last_os_error());
        assert_eq!(libc::setresgid(gid, gid, gid), 0, "setresgid: {}", io::Error::last_os_error());
        assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid: {}", io::Error::last_os_error());
    }
    let path = CString::new(field("path").as_str().expect("path")).expect("no NUL");
    let flags = if field("write").as_bool() == Some(true) { libc::O_RDWR } else { libc::O_RDONLY };
    let started = Instant::now();
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    let errno = io::Error::last_os_error().raw_os_error();
    let open_ms = started.elapsed().as_millis() as u64;
    let pid = std::process::id();
    let res = if fd < 0 {
        json!({"pid": pid, "ok": false, "errno": errno, "open_ms": open_ms})
    } else {
        // SAFETY: we own the descriptor just opened.
        let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read the protected file");
        json!({"pid": pid, "ok": true, "data": String::from_utf8_lossy(&data), "open_ms": open_ms})
    };
    out.write_all(res.to_string().as_bytes()).expect("write result");
}

// ---------------------------------------------------------------------------------------
// Record checks
// ---------------------------------------------------------------------------------------

fn decisions_of(events: &[Value], pid: u32) -> Vec<Value> {
    events.iter().filter(|e| is(e, "policy.decision") && pid_of(e) == Some(pid)).cloned().collect()
}

fn lines(evs: &[Value]) -> String {
    if evs.is_empty() { "(none)".to_owned() } else { evs.iter().map(show).collect::<Vec<_>>().join("\n") }
}

/// Every record about `pid` (for messages).
fn records_of(events: &[Value], pid: u32) -> String {
    lines(&events.iter().filter(|e| pid_of(e) == Some(pid)).cloned().collect::<Vec<_>>())
}

/// Waits for the child's `process.exit`: its kernel records are then in.
fn wait_exit(sensor: &mut Sensor, pid: u32) -> Value {
    sensor.wait_for(&format!("process.exit of child {pid}"), |e| {
        is(e, "process.exit") && pid_of(e) == Some(pid)
    })
}

/// Exactly one `policy.decision` for `pid`, with `decision`; returned.
#[track_caller]
fn one_decision(events: &[Value], pid: u32, decision: &str, what: &str) -> Value {
    let d = decisions_of(events, pid);
    assert_eq!(
        d.len(),
        1,
        "{what}: expected one policy.decision ({decision}) for child {pid}; its records:\n{}",
        records_of(events, pid)
    );
    assert_eq!(get_str(&d[0], "mnsensor.decision"), decision, "{what}: {}", show(&d[0]));
    d[0].clone()
}

/// The access was allowed: a `file.open` of `path` by `pid`, and no decision record.
#[track_caller]
fn assert_allowed_records(events: &[Value], pid: u32, path: &Path, what: &str) {
    let alerts: Vec<Value> =
        events.iter().filter(|e| is(e, "sensor.alert") && pid_of(e) == Some(pid)).cloned().collect();
    assert!(
        alerts.is_empty(),
        "{what}: the policy did not allow the open of child {pid} in time; the fail mode did:\n{}",
        lines(&alerts)
    );
    let d = decisions_of(events, pid);
    assert!(d.is_empty(), "{what}: an allowed access is not a decision, but child {pid} has:\n{}", lines(&d));
    assert!(
        events.iter().any(|e| is(e, "file.open")
            && pid_of(e) == Some(pid)
            && e.get("file.path").and_then(Value::as_str) == Some(path_str(path))),
        "{what}: no file.open of {} by child {pid}; its records:\n{}",
        path.display(),
        records_of(events, pid)
    );
}

/// The common fields of a decision about `path` by the default of policy `policy` in `mode`.
#[track_caller]
fn assert_decision_fields(d: &Value, policy: &str, path: &Path, mode: &str, enforcement: &str) {
    let ctx = show(d);
    assert_eq!(get_str(d, "mnsensor.policy.name"), policy, "{ctx}");
    assert_eq!(get_str(d, "file.path"), path_str(path), "{ctx}");
    assert_eq!(get_str(d, "file.name"), path_str(Path::new(path.file_name().expect("name"))), "{ctx}");
    assert_eq!(get_str(d, "file.directory"), path_str(path.parent().expect("dir")), "{ctx}");
    assert_eq!(get_str(d, "mnsensor.policy.reason"), "no_entry_matched", "{ctx}");
    assert_eq!(get_str(d, "mnsensor.policy.severity"), "high", "{ctx}");
    assert_eq!(get_str(d, "mnsensor.policy.mode"), mode, "{ctx}");
    assert_eq!(get_str(d, "mnsensor.enforcement"), enforcement, "{ctx}");
    assert!(!has(d, "mnsensor.policy.entry"), "no entry matched, none is named: {ctx}");
}

// ---------------------------------------------------------------------------------------
// 1. Allowed users and programs
// ---------------------------------------------------------------------------------------

#[test]
fn allowed_user_and_program_may_open() {
    let users = test_users("allowed_user_and_program_may_open", 3);
    let (by_name, by_uid, other) = (&users[0], &users[1], &users[2]);
    let f = Fixture::new("enf-allow");
    let file = f.file("mynumber/ledger.csv");
    // World-writable, so that the read-write open below passes the file mode and only the
    // policy can refuse it.
    chmod(&file, 0o666);
    let me = self_exe();
    let body = format!(
        "  lists:\n    staff: {{users: [{}]}}\n    tools: {{programs: [\"{}\"]}}\n  allow:\n    - name: staff-read\n      subjects: [staff, {{uid: {}}}]\n      programs: [tools]\n      operations: [read]\n      schedule: {ALWAYS}\n",
        by_name.name,
        path_str(&me),
        by_uid.uid
    );
    f.policy("10-p.yaml", &policy_doc("ledger", "enforce", &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "ledger");

    let a = run_child(&Access::read(&file, by_name));
    a.assert_read("user allowed by name through a list");
    let b = run_child(&Access::read(&file, by_uid));
    b.assert_read("user allowed by uid");
    // Controls: enforcement is on — another user, and an operation the entry does not allow.
    let c = run_child(&Access::read(&file, other));
    c.assert_eperm("user in no allow entry");
    let d = run_child(&Access { write: true, ..Access::read(&file, by_name) });
    d.assert_eperm("allowed user opening for read and write (entry allows read only)");
    for pid in [a.pid, b.pid, c.pid, d.pid] {
        wait_exit(&mut sensor, pid);
    }
    sensor.stop();
    let events = sensor.events().to_vec();
    assert_allowed_records(&events, a.pid, &file, "allowed by name");
    assert_allowed_records(&events, b.pid, &file, "allowed by uid");
    let dc = one_decision(&events, c.pid, "deny", "other user");
    assert_decision_fields(&dc, "ledger", &file, "enforce", &via);
    assert_eq!(get_u64(&dc, "process.user.id"), u64::from(other.uid), "{}", show(&dc));
    assert_eq!(get_str_array(&dc, "mnsensor.policy.operations"), ["read"], "{}", show(&dc));
    let dd = one_decision(&events, d.pid, "deny", "read-write open");
    assert_decision_fields(&dd, "ledger", &file, "enforce", &via);
    assert_eq!(get_u64(&dd, "process.user.id"), u64::from(by_name.uid), "{}", show(&dd));
    assert_eq!(get_str_array(&dd, "mnsensor.policy.operations"), ["read", "write"], "{}", show(&dd));
}

// ---------------------------------------------------------------------------------------
// 2. Schedules
// ---------------------------------------------------------------------------------------

/// A day of the week that is neither today, yesterday nor tomorrow in Tokyo.
fn a_day_that_is_not_now() -> &'static str {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch").as_secs();
    let days = (secs + 9 * 3600) / 86_400;
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let today = ((days + 3) % 7) as usize;
    DAYS[(today + 3) % 7]
}

fn schedule_case(mode: &str) {
    let what = format!("schedule_outside_the_window_{mode}");
    let users = test_users(&what, 1);
    let user = &users[0];
    let f = Fixture::new(&format!("enf-sched-{mode}"));
    let file = f.file("mynumber/ledger.csv");
    let day = a_day_that_is_not_now();
    let body = format!(
        "  allow:\n    - name: weekly\n      subjects: [{{user: {}}}]\n      schedule: {{timezone: Asia/Tokyo, windows: [{{days: [{day}], from: \"00:00\", to: \"24:00\"}}]}}\n",
        user.name
    );
    f.policy("10-p.yaml", &policy_doc("sched", mode, &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = if mode == "enforce" {
        enforced_by(&sensor, "sched")
    } else {
        let backends = get_str_array(sensor.start_event(), "mnsensor.policy.backends");
        assert_eq!(backends, ["sched=audit"], "{}", show(sensor.start_event()));
        "kernel".to_owned()
    };
    let run = run_child(&Access::read(&file, user));
    if mode == "enforce" {
        run.assert_eperm(&format!("outside the window (only {day})"));
    } else {
        run.assert_read("audit mode only records");
    }
    wait_exit(&mut sensor, run.pid);
    let decision = if mode == "enforce" { "deny" } else { "would_deny" };
    sensor.wait_for(&format!("policy.decision {decision} of child {}", run.pid), |e| {
        is(e, "policy.decision") && pid_of(e) == Some(run.pid)
    });
    sensor.stop();
    let events = sensor.events().to_vec();
    let d = one_decision(&events, run.pid, decision, &what);
    assert_decision_fields(&d, "sched", &file, mode, &via);
    assert_eq!(get_u64(&d, "process.user.id"), u64::from(user.uid), "{}", show(&d));
    if mode == "audit" {
        assert!(
            events.iter().any(|e| is(e, "file.open") && pid_of(e) == Some(run.pid)),
            "audit mode: the access happened and has its file.open; records:\n{}",
            records_of(&events, run.pid)
        );
    }
}

#[test]
fn schedule_outside_the_window_is_denied() {
    schedule_case("enforce");
}

#[test]
fn schedule_outside_the_window_in_audit_mode_would_deny() {
    schedule_case("audit");
}

// ---------------------------------------------------------------------------------------
// 3. A disallowed user: the decision record
// ---------------------------------------------------------------------------------------

#[test]
fn disallowed_user_is_denied_and_recorded() {
    let users = test_users("disallowed_user_is_denied_and_recorded", 2);
    let (staff, outsider) = (&users[0], &users[1]);
    let f = Fixture::new("enf-deny");
    let file = f.file("jinji/mynumber/2026.csv");
    let body = format!("  allow:\n    - name: staff\n      subjects: [{{user: {}}}]\n", staff.name);
    f.policy("10-payroll.yaml", &policy_doc("payroll-mynumber", "enforce", &f.data, &body, "deny"));
    let hash = f.check_hash();
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "payroll-mynumber");
    assert_eq!(get_str(sensor.start_event(), "mnsensor.policy.hash"), hash, "sensor.start hash");
    let ok = run_child(&Access::read(&file, staff));
    ok.assert_read("staff");
    let denied = run_child(&Access::read(&file, outsider));
    denied.assert_eperm("outsider");
    wait_exit(&mut sensor, ok.pid);
    wait_exit(&mut sensor, denied.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    assert_allowed_records(&events, ok.pid, &file, "staff");
    let d = one_decision(&events, denied.pid, "deny", "outsider");
    assert_decision_fields(&d, "payroll-mynumber", &file, "enforce", &via);
    let ctx = show(&d);
    assert_eq!(get_u64(&d, "process.user.id"), u64::from(outsider.uid), "{ctx}");
    assert_eq!(get_str(&d, "process.user.name"), outsider.name, "{ctx}");
    assert_eq!(get_str(&d, "mnsensor.policy.hash"), hash, "the hash `policy check` prints: {ctx}");
    assert_eq!(get_str_array(&d, "mnsensor.policy.operations"), ["read"], "{ctx}");
    assert_eq!(get_str(&d, "process.executable.path"), path_str(&self_exe()), "{ctx}");
    let meta = fs::metadata(&file).expect("stat");
    assert_eq!(get_u64(&d, "file.inode"), std::os::unix::fs::MetadataExt::ino(&meta), "{ctx}");
    if loginuid().is_none() {
        assert!(!has(&d, "mnsensor.login_user.id"), "no login uid was set: {ctx}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. Program identity
// ---------------------------------------------------------------------------------------

#[test]
fn program_is_matched_by_its_real_path() {
    let users = test_users("program_is_matched_by_its_real_path", 1);
    let user = &users[0];
    let f = Fixture::new("enf-prog");
    let file = f.file("mynumber/ledger.csv");
    let bins = f.dir.mkdir("bin");
    for sub in ["a", "b", "c", "d"] {
        let d = bins.join(sub);
        fs::create_dir(&d).expect("mkdir");
        chmod(&d, 0o755);
    }
    chmod(&bins, 0o755);
    let allowed = copy_self(&bins.join("a/payroll-tool"));
    let same_name_copy = copy_self(&bins.join("b/payroll-tool"));
    // A symlink named like the allowed program, pointing to another binary (this one).
    let impostor = bins.join("c/payroll-tool");
    symlink(self_exe(), &impostor).expect("symlink");
    // A symlink to the allowed program itself: exec resolves it to the allowed file.
    let alias = bins.join("d/tool-alias");
    symlink(&allowed, &alias).expect("symlink");
    let body = format!(
        "  allow:\n    - name: tool\n      subjects: [{{uid: {}}}]\n      programs: [\"{}\"]\n      schedule: {ALWAYS}\n",
        user.uid,
        path_str(&allowed)
    );
    f.policy("10-p.yaml", &policy_doc("tool-only", "enforce", &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "tool-only");
    let run = |exe: &Path| run_child(&Access { exe: Some(exe), ..Access::read(&file, user) });
    // The refused ones first, while nothing else is pending.
    let copy = run(&same_name_copy);
    let imp = run(&impostor);
    let ok = run(&allowed);
    let via_alias = run(&alias);
    for pid in [copy.pid, imp.pid, ok.pid, via_alias.pid] {
        wait_exit(&mut sensor, pid);
    }
    sensor.stop();
    let events = sensor.events().to_vec();
    copy.assert_eperm("a copy of the allowed program at another path, same name");
    imp.assert_eperm("a symlink named like the allowed program, to another binary");
    for (run, exe, what) in [(&copy, &same_name_copy, "copy"), (&imp, &self_exe(), "symlinked impostor")] {
        let d = one_decision(&events, run.pid, "deny", what);
        assert_decision_fields(&d, "tool-only", &file, "enforce", &via);
        assert_eq!(get_str(&d, "process.executable.path"), path_str(exe), "{what}: {}", show(&d));
    }
    ok.assert_read("the allowed program");
    via_alias.assert_read("the allowed program through a symlink to it");
    assert_allowed_records(&events, ok.pid, &file, "allowed program");
    assert_allowed_records(&events, via_alias.pid, &file, "symlink to the allowed program");
}

/// Which processes open or read one file: a fanotify notification group marking it.
struct FileWatch {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
    /// (pid, event mask) of every event read so far.
    seen: Vec<(u32, u64)>,
}

impl FileWatch {
    fn new(path: &Path) -> Self {
        use std::os::fd::{AsRawFd as _, FromRawFd as _};
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
        // SAFETY: plain system call.
        let raw = unsafe { libc::fanotify_init(flags, event_flags) };
        assert!(raw >= 0, "fanotify_init: {}", io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let c = CString::new(path_str(path)).expect("no NUL");
        // SAFETY: valid descriptor and NUL-terminated path.
        let rc = unsafe {
            libc::fanotify_mark(
                fd.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN | libc::FAN_ACCESS,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        assert_eq!(rc, 0, "fanotify_mark {}: {}", path.display(), io::Error::last_os_error());
        Self { fd, path: path.to_path_buf(), seen: Vec::new() }
    }

    /// Reads the queued events; returns every (pid, mask) so far.
    fn poll(&mut self) -> &[(u32, u64)] {
        use std::os::fd::AsRawFd as _;
        let meta = size_of::<libc::fanotify_event_metadata>();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "reading fanotify events: {e}");
                break;
            }
            let n = n as usize;
            let mut off = 0;
            while off + meta <= n {
                // SAFETY: a whole metadata record lies at `off` (checked above); unaligned read.
                let m: libc::fanotify_event_metadata =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                if m.fd >= 0 {
                    // SAFETY: the event's descriptor is ours to close.
                    unsafe { libc::close(m.fd) };
                }
                self.seen.push((m.pid as u32, m.mask));
                if m.event_len == 0 {
                    break;
                }
                off += m.event_len as usize;
            }
        }
        &self.seen
    }

    /// The events of process `pid`, for messages.
    fn of(&mut self, pid: u32) -> Vec<String> {
        let path = self.path.display().to_string();
        self.poll()
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, m)| {
                let kind = match (m & libc::FAN_OPEN != 0, m & libc::FAN_ACCESS != 0) {
                    (true, true) => "open and read",
                    (false, true) => "read",
                    _ => "open",
                };
                format!("{kind} {path} (fanotify mask {m:#x})")
            })
            .collect()
    }
}

#[test]
fn program_without_a_pinned_hash_is_not_read() {
    let users = test_users("program_without_a_pinned_hash_is_not_read", 1);
    let user = &users[0];
    let f = Fixture::new("enf-nohash");
    let file = f.file("mynumber/ledger.csv");
    let bins = f.dir.mkdir("bin");
    for d in [bins.clone(), bins.join("plain"), bins.join("pinned")] {
        fs::create_dir_all(&d).expect("mkdir");
        chmod(&d, 0o755);
    }
    let plain = copy_self(&bins.join("plain/tool"));
    let pinned = copy_self(&bins.join("pinned/tool"));
    let hash = sha256_hex(&pinned);
    let body = format!(
        "  allow:\n    - name: by-path\n      subjects: [{{uid: {uid}}}]\n      programs: [\"{}\"]\n    - name: by-hash\n      subjects: [{{uid: {uid}}}]\n      programs: [{{path: \"{}\", sha256: \"{hash}\"}}]\n",
        path_str(&plain),
        path_str(&pinned),
        uid = user.uid
    );
    f.policy("10-p.yaml", &policy_doc("programs", "enforce", &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "programs");
    let mut watch_plain = FileWatch::new(&plain);
    let mut watch_pinned = FileWatch::new(&pinned);
    let a = run_child(&Access { exe: Some(&plain), ..Access::read(&file, user) });
    let b = run_child(&Access { exe: Some(&pinned), ..Access::read(&file, user) });
    wait_exit(&mut sensor, a.pid);
    wait_exit(&mut sensor, b.pid);
    let me = sensor.pid();
    // The watches work: they see the child's exec, and (with fanotify, which decides each
    // open as it comes) the sensor hashing the pinned program. With the BPF LSM the hash is
    // taken when the tables are compiled, at start, before the watches.
    assert!(!watch_plain.of(a.pid).is_empty(), "the watch on {} did not see its exec", plain.display());
    assert!(
        via != "fanotify" || !watch_pinned.of(me).is_empty(),
        "the sensor (pid {me}) never read {}, whose sha256 is pinned; events: {:?}",
        pinned.display(),
        watch_pinned.poll()
    );
    let reads = watch_plain.of(me);
    sensor.stop();
    assert!(
        reads.is_empty(),
        "docs/policy.md: \"Hashes are computed only when an entry with a pinned hash could match\"; \
         entry by-path pins no sha256, yet to decide child {}'s open the sensor (pid {me}) did:\n{}",
        a.pid,
        reads.join("\n")
    );
    let events = sensor.events().to_vec();
    a.assert_read("program allowed by path");
    b.assert_read("program allowed by path and sha256");
    assert_allowed_records(&events, a.pid, &file, "program allowed by path");
    assert_allowed_records(&events, b.pid, &file, "program allowed by path and sha256");
}

// ---------------------------------------------------------------------------------------
// 5. Who is responsible: the login uid
// ---------------------------------------------------------------------------------------

#[test]
fn login_uid_decides_who_is_responsible() {
    let users = test_users("login_uid_decides_who_is_responsible", 2);
    let (allowed, other) = (&users[0], &users[1]);
    let f = Fixture::new("enf-auid");
    let file = f.file("mynumber/ledger.csv");
    let body = format!("  allow:\n    - name: staff\n      subjects: [{{user: {}}}]\n", allowed.name);
    f.policy("10-p.yaml", &policy_doc("auid", "enforce", &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "auid");
    // `other` logged in, then became `allowed` (sudo -u allowed): other answers.
    let su = run_child(&Access { auid: Some(other.uid), ..Access::read(&file, allowed) });
    su.assert_eperm("login user other acting as the allowed user");
    // `allowed` logged in, then became `other`: allowed answers.
    let rev = run_child(&Access { auid: Some(allowed.uid), ..Access::read(&file, other) });
    rev.assert_read("login user allowed acting as another user");
    wait_exit(&mut sensor, su.pid);
    wait_exit(&mut sensor, rev.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    let d = one_decision(&events, su.pid, "deny", "sudo-like switch");
    assert_decision_fields(&d, "auid", &file, "enforce", &via);
    assert_eq!(get_u64(&d, "mnsensor.login_user.id"), u64::from(other.uid), "{}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.login_user.name"), other.name, "{}", show(&d));
    assert_eq!(get_u64(&d, "process.user.id"), u64::from(allowed.uid), "{}", show(&d));
    assert_allowed_records(&events, rev.pid, &file, "login user allowed");
    let open =
        events.iter().find(|e| is(e, "file.open") && pid_of(e) == Some(rev.pid)).expect("checked above");
    assert_eq!(get_u64(open, "mnsensor.login_user.id"), u64::from(allowed.uid), "{}", show(open));
    assert_eq!(get_u64(open, "process.user.id"), u64::from(other.uid), "{}", show(open));
}

// ---------------------------------------------------------------------------------------
// 6. kill
// ---------------------------------------------------------------------------------------

#[test]
fn kill_action_kills_the_opener_before_it_reads() {
    let users = test_users("kill_action_kills_the_opener_before_it_reads", 1);
    let user = &users[0];
    let f = Fixture::new("enf-kill");
    let file = f.file("mynumber/ledger.csv");
    f.policy("10-p.yaml", &policy_doc("no-one", "enforce", &f.data, "", "kill"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "no-one");
    let run = run_child(&Access::read(&file, user));
    assert_eq!(
        run.status.signal(),
        Some(libc::SIGKILL),
        "the opener must be killed (SIGKILL); it exited with {} and wrote {:?}\n{}",
        run.status,
        run.text,
        run.output
    );
    assert!(run.text.is_empty(), "the killed child wrote a result (it got past its open): {:?}", run.text);
    let exit = wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    assert_eq!(get_u64(&exit, "mnsensor.process.exit.signal"), libc::SIGKILL as u64, "{}", show(&exit));
    let d = one_decision(&events, run.pid, "kill", "kill action");
    assert_decision_fields(&d, "no-one", &file, "enforce", &via);
    assert_eq!(get_u64(&d, "process.user.id"), u64::from(user.uid), "{}", show(&d));
    // The open was refused, so the child never got a descriptor and read nothing. With the
    // fentry file backend, `security_file_open` sees the open before the refusal, and the
    // refused open file's release is reported: exactly one such record, with no bytes. The
    // other backends see only opens that succeeded: none.
    let fentry = get_str(sensor.start_event(), "mnsensor.backend.file") == "fentry";
    let closes: Vec<Value> = events
        .iter()
        .filter(|e| {
            is(e, "file.close")
                && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(run.pid.into())
                && e.get("file.path").and_then(Value::as_str) == Some(path_str(&file))
        })
        .cloned()
        .collect();
    let expected = usize::from(fentry);
    assert_eq!(closes.len(), expected, "file.close records of the refused open:\n{}", lines(&closes));
    for c in &closes {
        assert_eq!(get_str(c, "mnsensor.close.reason"), "release", "{}", show(c));
        assert_eq!(get_u64(c, "mnsensor.file.bytes_read"), 0, "the killed child read data: {}", show(c));
    }
}

// ---------------------------------------------------------------------------------------
// 7. Reload
// ---------------------------------------------------------------------------------------

#[test]
fn reload_applies_valid_sets_and_keeps_the_old_one_on_errors() {
    let users = test_users("reload_applies_valid_sets_and_keeps_the_old_one_on_errors", 1);
    let user = &users[0];
    let f = Fixture::new("enf-reload");
    let file = f.file("mynumber/ledger.csv");
    let allow = |uid: u32| format!("  allow:\n    - name: staff\n      subjects: [{{uid: {uid}}}]\n");
    let pfile = f.policy("10-p.yaml", &policy_doc("reload", "enforce", &f.data, &allow(user.uid), "deny"));
    let hash_a = f.check_hash();
    // Cached decisions live for a minute here, so the only way the denial after the reload
    // below can happen on fanotify is the reload dropping the cache.
    let config = f.dir.write("config-reload.yaml", format!("{DECIDE_CONFIG}  decision_cache_ms: 60000\n"));
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", f.policies()]);
    let via = enforced_by(&sensor, "reload");
    assert_eq!(get_str(sensor.start_event(), "mnsensor.policy.hash"), hash_a);
    run_child(&Access::read(&file, user)).assert_read("policy A allows the user");

    // A broken file: the reload fails, A stays in force.
    f.policy("10-p.yaml", "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {name: reload\n");
    let err =
        sensor.wait_for("sensor.policy_error after a broken policy file", |e| is(e, "sensor.policy_error"));
    assert_eq!(get_str(&err, "mnsensor.policy.hash"), hash_a, "the set in force is still A: {}", show(&err));
    let msg = get_str(&err, "mnsensor.policy.error");
    assert!(msg.contains(path_str(&pfile)), "the error names the file: {}", show(&err));
    // Policy B denies the user. Its hash is taken beforehand (file names and places do not
    // change it).
    let text_b = policy_doc("reload", "enforce", &f.data, &allow(0), "deny");
    let dir_b = f.dir.mkdir("hash-b");
    chmod(&dir_b, 0o755);
    fs::write(dir_b.join("10-p.yaml"), &text_b).expect("write B");
    chmod(&dir_b.join("10-p.yaml"), 0o644);
    let hash_b = set_hash(&dir_b);
    assert_ne!(hash_b, hash_a);
    let still = run_child(&Access::read(&file, user));
    still.assert_read("after the failed reload, A still allows the user");
    // The allowed decision is cached now; B replaces A.
    f.policy("10-p.yaml", &text_b);
    sighup(&sensor);
    let rel = sensor.wait_for("sensor.policy_reloaded with the new hash", |e| {
        is(e, "sensor.policy_reloaded")
            && e.get("mnsensor.policy.hash").and_then(Value::as_str) == Some(&hash_b)
    });
    assert_eq!(
        get_str_array(&rel, "mnsensor.policy.files"),
        [path_str(&pfile)],
        "policy files of the new set: {}",
        show(&rel)
    );
    let denied = run_child(&Access::read(&file, user));
    denied.assert_eperm("right after the reload to a set that denies the user (the cache is dropped)");
    wait_exit(&mut sensor, denied.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    let d = one_decision(&events, denied.pid, "deny", "after reload");
    assert_decision_fields(&d, "reload", &file, "enforce", &via);
    assert_eq!(get_str(&d, "mnsensor.policy.hash"), hash_b, "decided by the new set: {}", show(&d));
    let errors: Vec<Value> = events.iter().filter(|e| is(e, "sensor.policy_error")).cloned().collect();
    assert_eq!(errors.len(), 1, "one failed reload, one error record:\n{}", lines(&errors));
    // Every reload record names the set in force: only B was ever reloaded.
    for r in events.iter().filter(|e| is(e, "sensor.policy_reloaded")) {
        assert_eq!(get_str(r, "mnsensor.policy.hash"), hash_b, "{}", show(r));
    }
}

// ---------------------------------------------------------------------------------------
// 8. Deadline and fail mode
// ---------------------------------------------------------------------------------------

/// Size of the slow-to-hash program: the test binary extended with a sparse tail (the ELF
/// loader ignores trailing bytes). Hashing 4 GiB takes over a second on any CPU (SHA-256 runs
/// at most a few GB/s per core), a hundred times the 10 ms deadline of these cases, so the
/// deadline expires whatever the machine's speed.
const BIG: u64 = 4 << 30;
/// The shortest deadline the configuration accepts (docs/configuration.md).
const SHORT_DEADLINE_MS: u64 = 10;

/// SHA-256 (hex) of a file, with `openssl` when present (fast even for the 4 GiB program
/// while this binary is unoptimized), else in this process (the busybox VM has neither).
fn sha256_hex(p: &Path) -> String {
    use sha2::{Digest as _, Sha256};
    if let Some(openssl) = tool("openssl") {
        let o = run_capture(
            Command::new(openssl).args(["dgst", "-sha256", "-r"]).arg(p),
            scaled(Duration::from_secs(120)),
        );
        assert!(o.status.success(), "hashing {}: {}", p.display(), o.stderr);
        let hash = o.stdout.split_whitespace().next().expect("a hash").to_owned();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256: {}",
            o.stdout
        );
        return hash;
    }
    let mut file = fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn deadline_case(fail_mode: &str, user: &TestUser, f: &Fixture, big: &Path, hash: &str) {
    let file = f.file(&format!("{fail_mode}/ledger.csv"));
    let protect = file.parent().expect("dir").to_path_buf();
    let pdir = f.dir.mkdir(format!("policies-{fail_mode}"));
    chmod(&pdir, 0o755);
    let body = format!(
        "  allow:\n    - name: pinned\n      subjects: [{{uid: {}}}]\n      programs: [{{path: \"{}\", sha256: \"{hash}\"}}]\n",
        user.uid,
        path_str(big)
    );
    let p = pdir.join("10-p.yaml");
    fs::write(&p, policy_doc("pinned", "enforce", &protect, &body, "deny")).expect("write policy");
    chmod(&p, 0o644);
    let config = f.dir.write(
        format!("config-{fail_mode}.yaml"),
        format!("enforcement:\n  deadline_ms: {SHORT_DEADLINE_MS}\n  fail_mode: {fail_mode}\n"),
    );
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&pdir)]);
    assert_eq!(enforced_by(&sensor, "pinned"), "fanotify", "the same backend as the probe");
    let run = run_child(&Access { exe: Some(big), ..Access::read(&file, user) });
    let what = format!("fail_mode {fail_mode}: hashing the allowed 4 GiB program outlasts the deadline");
    if fail_mode == "closed" {
        run.assert_eperm(&what);
    } else {
        run.assert_read(&what);
    }
    let alert = sensor.wait_for(&format!("sensor.alert deadline_expired for child {}", run.pid), |e| {
        is(e, "sensor.alert")
            && e.get("mnsensor.alert.kind").and_then(Value::as_str) == Some("deadline_expired")
            && pid_of(e) == Some(run.pid)
    });
    let ctx = format!("{} (open took {} ms)", show(&alert), run.open_ms());
    assert_eq!(get_str(&alert, "file.path"), path_str(&file), "{ctx}");
    let applied = if fail_mode == "closed" { "deny" } else { "allow" };
    assert_eq!(get_str(&alert, "mnsensor.decision"), applied, "what the fail mode applied: {ctx}");
    // The policy itself allows this access: no decision record may say otherwise.
    let d = decisions_of(sensor.events(), run.pid);
    assert!(d.is_empty(), "fail_mode {fail_mode}: decision records for an allowed access:\n{}", lines(&d));
    sensor.stop();
}

/// docs/policy.md: on fanotify the opener waits for the daemon, and a decision later than
/// `enforcement.deadline_ms` gets `enforcement.fail_mode`. The BPF LSM decides in the kernel
/// from the compiled tables: no opener ever waits for the daemon, so there the test stops
/// the daemon (SIGSTOP) and checks that the kernel still allows and refuses exactly as the
/// policy says, that `fail_mode: closed` never applies, and that the records are all there
/// once the daemon runs again.
#[test]
fn late_decisions_get_the_fail_mode() {
    let users = test_users("late_decisions_get_the_fail_mode", 2);
    let user = &users[0];
    let f = Fixture::new("enf-deadline");
    // Only the fanotify backend makes an opener wait for the daemon: find out first, before
    // writing and hashing the big programs.
    f.file("probe/a.csv");
    f.policy("10-probe.yaml", &policy_doc("probe", "enforce", &f.data.join("probe"), "", "deny"));
    let mut probe = f.sensor();
    let via = enforced_by(&probe, "probe");
    probe.stop();
    if via == "bpf-lsm" || via == "fmod_ret" {
        return kernel_decides_while_the_daemon_is_stopped(&f, user, &users[1], &via);
    }
    assert_eq!(via, "fanotify", "the enforcing backends are fanotify, bpf-lsm and fmod_ret");
    let bins = f.dir.mkdir("bin");
    chmod(&bins, 0o755);
    // One program per case (the sensor caches a program's hash by file version).
    let mut bigs = Vec::new();
    for name in ["closed-tool", "open-tool"] {
        let p = copy_self(&bins.join(name));
        fs::OpenOptions::new().write(true).open(&p).expect("open").set_len(BIG).expect("extend (sparse)");
        bigs.push(p);
    }
    // Both copies have the same content, hence the same hash.
    let hash = sha256_hex(&bigs[0]);
    deadline_case("closed", user, &f, &bigs[0], &hash);
    deadline_case("open", user, &f, &bigs[1], &hash);
}

/// The kernel half (BPF LSM or `fmod_ret`, `via`) of [`late_decisions_get_the_fail_mode`]:
/// with the daemon stopped, and
/// with the strictest deadline and `fail_mode: closed`, the allowed user still reads and the
/// outsider is still refused; no deadline alert is ever written.
fn kernel_decides_while_the_daemon_is_stopped(f: &Fixture, staff: &TestUser, outsider: &TestUser, via: &str) {
    let file = f.file("stopped/ledger.csv");
    let protect = file.parent().expect("dir").to_path_buf();
    let pdir = f.dir.mkdir("policies-stopped");
    chmod(&pdir, 0o755);
    let body = format!("  allow:\n    - name: staff\n      subjects: [{{uid: {}}}]\n", staff.uid);
    let p = pdir.join("10-p.yaml");
    fs::write(&p, policy_doc("stopped", "enforce", &protect, &body, "deny")).expect("write policy");
    chmod(&p, 0o644);
    let config = f.dir.write(
        "config-stopped.yaml",
        format!("enforcement:\n  deadline_ms: {SHORT_DEADLINE_MS}\n  fail_mode: closed\n"),
    );
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&pdir)]);
    assert_eq!(enforced_by(&sensor, "stopped"), via, "the same backend as the probe");
    let pid = i32::try_from(sensor.pid()).expect("pid");
    // SAFETY: kill(2) on the sensor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP the sensor");
    let ok = run_child(&Access::read(&file, staff));
    let denied = run_child(&Access::read(&file, outsider));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0, "SIGCONT the sensor");
    ok.assert_read("allowed user while the daemon is stopped, fail_mode closed");
    denied.assert_eperm("outsider while the daemon is stopped");
    wait_exit(&mut sensor, ok.pid);
    wait_exit(&mut sensor, denied.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    assert_allowed_records(&events, ok.pid, &file, "allowed user");
    let d = one_decision(&events, denied.pid, "deny", "outsider");
    assert_decision_fields(&d, "stopped", &file, "enforce", via);
    let late: Vec<Value> = events
        .iter()
        .filter(|e| {
            is(e, "sensor.alert")
                && e.get("mnsensor.alert.kind").and_then(Value::as_str) == Some("deadline_expired")
        })
        .cloned()
        .collect();
    assert!(late.is_empty(), "the kernel decided, nothing can be late:\n{}", lines(&late));
}

// ---------------------------------------------------------------------------------------
// 9. sensor.start
// ---------------------------------------------------------------------------------------

#[test]
fn start_lists_the_enforcement_backend_of_each_policy() {
    let f = Fixture::new("enf-start");
    let enforced = f.file("enforced/a.csv").parent().expect("dir").to_path_buf();
    let audited = f.file("audited/a.csv").parent().expect("dir").to_path_buf();
    let a = f.policy("10-enf.yaml", &policy_doc("strict", "enforce", &enforced, "", "deny"));
    let b = f.policy("20-aud.yaml", &policy_doc("watching", "audit", &audited, "", "deny"));
    let hash = f.check_hash();
    let mut sensor = f.sensor();
    let start = sensor.start_event().clone();
    let ctx = show(&start);
    // fanotify on this kind of host; bpf-lsm or fmod_ret in the kernel (docs/events.md).
    let via = enforced_by(&sensor, "strict");
    let mut backends = get_str_array(&start, "mnsensor.policy.backends");
    backends.sort();
    assert_eq!(backends, [format!("strict={via}"), "watching=audit".to_owned()], "{ctx}");
    let mut files = get_str_array(&start, "mnsensor.policy.files");
    files.sort();
    assert_eq!(files, [path_str(&a), path_str(&b)], "{ctx}");
    assert_eq!(get_str(&start, "mnsensor.policy.hash"), hash, "{ctx}");
    assert_eq!(get_str(&start, "mnsensor.config.source"), path_str(&f.config()), "{ctx}");
    let protect = get_str_array(&start, "mnsensor.config.protect");
    for p in [&enforced, &audited] {
        assert!(protect.iter().any(|x| x == path_str(p)), "{} not protected: {ctx}", p.display());
    }
    // The backend named is the one that refuses: nobody (65534, in every system) reads.
    let file = canonical(enforced.join("a.csv"));
    let run = run_child(&Access { path: &file, uid: 65534, gid: 65534, auid: None, write: false, exe: None });
    run.assert_eperm("strict has no allow entry");
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let d = one_decision(sensor.events(), run.pid, "deny", "strict");
    assert_decision_fields(&d, "strict", &file, "enforce", &via);
}

// ---------------------------------------------------------------------------------------
// 10. The alert and audit actions; groups, globs and several policies on one path
// ---------------------------------------------------------------------------------------

/// docs/policy.md: the `alert` and `audit` actions never refuse: the access proceeds and a
/// `policy.decision` with that decision records it, on either backend (the BPF LSM program
/// writes it in the kernel, the fanotify responder in the daemon).
#[test]
fn alert_and_audit_defaults_let_the_access_through_and_record_it() {
    let users = test_users("alert_and_audit_defaults_let_the_access_through_and_record_it", 1);
    let user = &users[0];
    let f = Fixture::new("enf-alert");
    let alerted = f.file("alerted/a.csv");
    let audited = f.file("audited/a.csv");
    let dir = |p: &Path| p.parent().expect("dir").to_path_buf();
    f.policy("10-alert.yaml", &policy_doc("alerting", "enforce", &dir(&alerted), "", "alert"));
    f.policy("20-audit.yaml", &policy_doc("auditing", "enforce", &dir(&audited), "", "audit"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "alerting");
    assert_eq!(enforced_by(&sensor, "auditing"), via, "both policies are enforced by the same backend");
    let a = run_child(&Access::read(&alerted, user));
    a.assert_read("alert default: the access proceeds");
    let b = run_child(&Access::read(&audited, user));
    b.assert_read("audit default: the access proceeds");
    for run in [&a, &b] {
        wait_exit(&mut sensor, run.pid);
        sensor.wait_for(&format!("policy.decision of child {}", run.pid), |e| {
            is(e, "policy.decision") && pid_of(e) == Some(run.pid)
        });
    }
    sensor.stop();
    let events = sensor.events().to_vec();
    for (run, decision, policy, file) in
        [(&a, "alert", "alerting", &alerted), (&b, "audit", "auditing", &audited)]
    {
        let d = one_decision(&events, run.pid, decision, decision);
        assert_decision_fields(&d, policy, file, "enforce", &via);
        assert_eq!(get_u64(&d, "process.user.id"), u64::from(user.uid), "{}", show(&d));
        assert_eq!(get_str_array(&d, "mnsensor.policy.operations"), ["read"], "{}", show(&d));
    }
}

/// A group of test users, removed on drop (host); in the busybox VM the fixed `mnt_vmgrp`
/// of its initramfs, whose members are `mnt_vm1` and `mnt_vm2`.
struct TestGroup {
    name: String,
    fixed: bool,
}

fn test_group(what: &str, members: &[&TestUser]) -> TestGroup {
    let Some(groupadd) = tool("groupadd") else {
        assert!(
            mnsensor_tests::in_vm(),
            "{what}: groupadd is needed (only the busybox VM has a fixed group)"
        );
        let names: Vec<&str> = members.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, VM_USERS[..2], "{what}: mnt_vmgrp's members are mnt_vm1 and mnt_vm2");
        return TestGroup { name: "mnt_vmgrp".to_owned(), fixed: true };
    };
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").expect("read a random uuid");
    let name = format!("mntg_{}", &uuid.trim().replace('-', "")[..12]);
    let o = user_tool(&groupadd, &[&name], &[0]);
    assert!(o.status.success(), "groupadd {name}: {}\n{}{}", o.status, o.stdout, o.stderr);
    let group = TestGroup { name, fixed: false };
    let usermod = tool("usermod").expect("usermod next to groupadd");
    for m in members {
        let o = user_tool(&usermod, &["-a", "-G", &group.name, &m.name], &[0]);
        assert!(
            o.status.success(),
            "usermod -a -G {} {}: {}\n{}{}",
            group.name,
            m.name,
            o.status,
            o.stdout,
            o.stderr
        );
    }
    group
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if self.fixed {
            return;
        }
        if let Some(groupdel) = tool("groupdel") {
            // 6: no such group.
            let o = user_tool(&groupdel, &[&self.name], &[0, 6]);
            if !matches!(o.status.code(), Some(0 | 6)) {
                eprintln!("warning: groupdel {}: {}\n{}{}", self.name, o.status, o.stdout, o.stderr);
            }
        }
    }
}

/// docs/policy.md: `{group: NAME}` allows the group's members (listed in the group), and
/// no one else.
#[test]
fn group_members_may_open_others_may_not() {
    let users = test_users("group_members_may_open_others_may_not", 3);
    let group = test_group("group_members_may_open_others_may_not", &[&users[0], &users[1]]);
    let f = Fixture::new("enf-group");
    let file = f.file("mynumber/ledger.csv");
    let body = format!("  allow:\n    - name: staff\n      subjects: [{{group: {}}}]\n", group.name);
    f.policy("10-p.yaml", &policy_doc("grouped", "enforce", &f.data, &body, "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "grouped");
    let a = run_child(&Access::read(&file, &users[0]));
    a.assert_read("first member of the group");
    let b = run_child(&Access::read(&file, &users[1]));
    b.assert_read("second member of the group");
    let c = run_child(&Access::read(&file, &users[2]));
    c.assert_eperm("not in the group");
    for pid in [a.pid, b.pid, c.pid] {
        wait_exit(&mut sensor, pid);
    }
    sensor.stop();
    let events = sensor.events().to_vec();
    assert_allowed_records(&events, a.pid, &file, "member");
    assert_allowed_records(&events, b.pid, &file, "member");
    let d = one_decision(&events, c.pid, "deny", "outsider");
    assert_decision_fields(&d, "grouped", &file, "enforce", &via);
    assert_eq!(get_u64(&d, "process.user.id"), u64::from(users[2].uid), "{}", show(&d));
}

/// docs/policy.md: a `glob` protects the files under its base that match it, and only those.
#[test]
fn a_glob_protects_the_matching_files_only() {
    let users = test_users("a_glob_protects_the_matching_files_only", 1);
    let user = &users[0];
    let f = Fixture::new("enf-glob");
    let matching = f.file("share/2026/mynumber-list.csv");
    let other = f.file("share/2026/notes.csv");
    let doc = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: globbed}}\nspec:\n  mode: enforce\n  protect: [{{glob: \"{}/share/**/mynumber-*.csv\"}}]\n  default: {{action: deny, severity: high}}\n",
        path_str(&f.data)
    );
    f.policy("10-p.yaml", &doc);
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "globbed");
    let denied = run_child(&Access::read(&matching, user));
    denied.assert_eperm("a file the glob matches");
    let allowed = run_child(&Access::read(&other, user));
    allowed.assert_read("a file next to it the glob does not match");
    wait_exit(&mut sensor, denied.pid);
    wait_exit(&mut sensor, allowed.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    let d = one_decision(&events, denied.pid, "deny", "glob match");
    assert_decision_fields(&d, "globbed", &matching, "enforce", &via);
    assert!(decisions_of(&events, allowed.pid).is_empty(), "no decision for an unprotected file");
}

/// docs/policy.md, "Several policies on one path": a file under two policies needs both.
#[test]
fn a_file_under_two_policies_needs_both() {
    let users = test_users("a_file_under_two_policies_needs_both", 3);
    // outer_only: allowed by the outer policy only; both: by both; inner_only: by the inner.
    let (outer_only, both, inner_only) = (&users[0], &users[1], &users[2]);
    let f = Fixture::new("enf-overlap");
    let inner_file = f.file("jinji/mynumber/2026.csv");
    let outer_file = f.file("jinji/staff.csv");
    let inner = inner_file.parent().expect("dir").to_path_buf();
    let outer = inner.parent().expect("dir").to_path_buf();
    let allow = |a: &TestUser, b: &TestUser| {
        format!("  allow:\n    - name: staff\n      subjects: [{{uid: {}}}, {{uid: {}}}]\n", a.uid, b.uid)
    };
    f.policy("10-jinji.yaml", &policy_doc("jinji", "enforce", &outer, &allow(outer_only, both), "deny"));
    f.policy("20-payroll.yaml", &policy_doc("payroll", "enforce", &inner, &allow(both, inner_only), "deny"));
    let mut sensor = f.sensor();
    let via = enforced_by(&sensor, "jinji");
    assert_eq!(enforced_by(&sensor, "payroll"), via, "one backend for both");
    let runs = [
        (run_child(&Access::read(&inner_file, both)), true, "in both policies' lists, inner file"),
        (
            run_child(&Access::read(&inner_file, outer_only)),
            false,
            "only the outer policy allows, inner file",
        ),
        (
            run_child(&Access::read(&inner_file, inner_only)),
            false,
            "only the inner policy allows, inner file",
        ),
        (run_child(&Access::read(&outer_file, outer_only)), true, "outer policy allows, outer file"),
        (run_child(&Access::read(&outer_file, inner_only)), false, "outer policy refuses, outer file"),
    ];
    for (run, ok, what) in &runs {
        if *ok {
            run.assert_read(what);
        } else {
            run.assert_eperm(what);
        }
        wait_exit(&mut sensor, run.pid);
    }
    sensor.stop();
    let events = sensor.events().to_vec();
    for (run, ok, what) in &runs {
        if *ok {
            let file = if what.ends_with("inner file") { &inner_file } else { &outer_file };
            assert_allowed_records(&events, run.pid, file, what);
        } else {
            let d = one_decision(&events, run.pid, "deny", what);
            assert_eq!(get_str(&d, "mnsensor.enforcement"), via, "{}", show(&d));
        }
    }
    // Which policy a refusal names: the refusing one (docs/policy.md, "Evaluation").
    let named = |i: usize| {
        get_str(&one_decision(&events, runs[i].0.pid, "deny", runs[i].2), "mnsensor.policy.name").to_owned()
    };
    assert_eq!(named(1), "payroll", "the inner policy refused the outer-only user");
    assert_eq!(named(4), "jinji", "the outer file is the outer policy's alone");
    if via == "fanotify" {
        assert_eq!(named(2), "jinji", "the outer policy refused the inner-only user");
    }
}

/// docs/events.md, `mnsensor.policy.backends`: `NAME=none` for a policy that asks for
/// enforcement this machine cannot give (also logged as an error); its accesses go through.
/// procfs has no file handles, so fanotify cannot mark it; where the BPF LSM enforces, the
/// kernel covers it too and there is nothing to test.
#[test]
fn a_policy_that_cannot_be_enforced_is_listed_as_none() {
    let f = Fixture::new("enf-none");
    let tree = Path::new("/proc/sys/fs/fanotify");
    f.policy("10-p.yaml", &policy_doc("procfs", "enforce", tree, "", "deny"));
    let mut sensor = f.sensor();
    let backends = get_str_array(sensor.start_event(), "mnsensor.policy.backends");
    let kernel = match &backends[..] {
        [b] => b.strip_prefix("procfs=").filter(|v| ["bpf-lsm", "fmod_ret"].contains(v)),
        _ => None,
    };
    if let Some(via) = kernel {
        // The kernel program decides by inode in `security_file_open`, procfs included: the
        // policy is enforced, the read refused and recorded, and nothing is logged as
        // unenforceable.
        let err =
            fs::read_to_string(tree.join("max_queued_events")).expect_err("the kernel refuses the read");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        sensor.stop();
        let me = std::process::id();
        let d = one_decision(sensor.events(), me, "deny", "procfs under the kernel program");
        assert_eq!(get_str(&d, "mnsensor.policy.name"), "procfs", "{}", show(&d));
        assert_eq!(get_str(&d, "mnsensor.enforcement"), via, "{}", show(&d));
        assert!(!sensor.stderr().contains("cannot be enforced here"), "{}", sensor.stderr());
        return;
    }
    assert_eq!(backends, ["procfs=none"], "{}", show(sensor.start_event()));
    let value = fs::read_to_string(tree.join("max_queued_events")).expect("the access is not refused");
    assert!(value.trim().parse::<u64>().is_ok(), "{value:?}");
    sensor.stop();
    let stderr = sensor.stderr();
    assert!(
        stderr.contains("ERROR") && stderr.contains("cannot be enforced here"),
        "logged as an error:\n{stderr}"
    );
}
