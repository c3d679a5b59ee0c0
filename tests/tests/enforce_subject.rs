//! Enforcement decisions follow a process's current credentials, not those it had at exec:
//! the fanotify responder reads them from the kernel's subject map (`sensor-ebpf/src/subject.rs`,
//! refreshed at the exit of `setuid`, `setresuid`, `setfsuid`, ...; docs/architecture.md).
//!
//! One child process, started as root after its exec, switches between an allowed and a
//! denied uid with `setfsuid(2)` and with `setresuid(2)` (effective uid, which the
//! filesystem uid follows) and opens the protected file after each switch. The uids are
//! numeric (no user database entry is needed): the file is world-readable, so only the
//! policy can refuse an open. Where the BPF LSM enforces (the VM kernels) the kernel reads
//! the credentials itself; the same expectations hold.
use std::{
    env,
    ffi::CString,
    fs,
    io::{self, Read as _},
    os::unix::{fs::PermissionsExt as _, io::AsRawFd as _, process::CommandExt as _},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, get_str, is, loginuid, path_str, pid_of, scaled, show,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "MNSENSOR_SUBJECT_CHILD";
const CHILD_TEST: &str = "subject_child";
/// The policy allows this uid...
const ALLOWED: u32 = 61_001;
/// ...and not this one.
const DENIED: u32 = 61_002;
const SECRET: &str = "個人番号 123456789012 (test data)\n";

/// How a step changes the credentials before its open.
#[derive(Clone, Copy)]
enum Switch {
    /// `setfsuid(uid)`: only the filesystem uid (the effective uid stays root).
    Fsuid,
    /// `setresuid(-1, uid, -1)`: the effective uid, and with it the filesystem uid.
    Euid,
}

/// (switch, uid) of each step, in order: allowed → denied → allowed through both calls.
const STEPS: [(Switch, u32); 6] = [
    (Switch::Fsuid, ALLOWED),
    (Switch::Fsuid, DENIED),
    (Switch::Fsuid, ALLOWED),
    (Switch::Euid, DENIED),
    (Switch::Euid, ALLOWED),
    (Switch::Euid, DENIED),
];

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

#[test]
fn decisions_follow_credentials_changed_after_exec() {
    let dir = TempDir::new("enf-subject");
    let data = dir.mkdir("data");
    let policies = dir.mkdir("policies");
    for d in [dir.path(), &data, &policies] {
        chmod(d, 0o755);
    }
    let file = data.join("mynumber.csv");
    fs::write(&file, SECRET).expect("write the protected file");
    chmod(&file, 0o644);
    let file = canonical(&file);
    let policy = policies.join("p.yaml");
    fs::write(
        &policy,
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: subject}}\nspec:\n  mode: enforce\n  \
             protect: [{{path: \"{}\"}}]\n  allow:\n    - name: one-uid\n      subjects: [{{uid: {ALLOWED}}}]\n  \
             default: {{action: deny, severity: high}}\n",
            path_str(&data)
        ),
    )
    .expect("write the policy");
    chmod(&policy, 0o644);
    let config = dir.write("config.yaml", "enforcement:\n  deadline_ms: 10000\n  fail_mode: closed\n");
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&policies)]);

    let out = dir.join("result.json");
    let spec = json!({"path": path_str(&file), "out": path_str(&out)});
    let exe = canonical(env::current_exe().expect("current_exe"));
    let mut cmd = Command::new(exe);
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec.to_string())
        .stdin(Stdio::null());
    // The login uid, when set, answers before the filesystem uid (docs/policy.md): the child
    // gets none, set between fork and exec.
    if loginuid().is_some() {
        // SAFETY: the closure only makes async-signal-safe calls (open, write, close).
        unsafe {
            cmd.pre_exec(|| {
                let fd = libc::open(c"/proc/self/loginuid".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let text = b"4294967295";
                let n = libc::write(fd, text.as_ptr().cast(), text.len());
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n == text.len() as isize { Ok(()) } else { Err(err) }
            });
        }
    }
    let mut child = ChildGuard::spawn(&mut cmd);
    let status = child.wait_timeout(scaled(Duration::from_secs(60)));
    let text = fs::read_to_string(&out).unwrap_or_default();
    assert!(status.success() && !text.is_empty(), "child failed: {status} result {text:?}");
    let result: Value = serde_json::from_str(&text).expect("child result is JSON");
    let pid = u32::try_from(result["pid"].as_u64().expect("pid")).expect("pid fits");
    let errnos: Vec<i64> =
        result["errnos"].as_array().expect("errnos").iter().map(|v| v.as_i64().expect("errno")).collect();
    let want: Vec<i64> =
        STEPS.iter().map(|(_, uid)| if *uid == ALLOWED { 0 } else { i64::from(libc::EPERM) }).collect();
    assert_eq!(errnos, want, "errno of each open (0: opened and read) after each credential switch");

    // One `deny` decision per refused open, each of this process.
    let denied = want.iter().filter(|e| **e != 0).count();
    let of_pid = |e: &&Value| is(e, "policy.decision") && pid_of(e) == Some(pid);
    sensor.wait_until(&format!("{denied} decisions of {pid}"), scaled(Duration::from_secs(20)), |evs| {
        evs.iter().filter(of_pid).count() >= denied
    });
    let events = sensor.events();
    let decisions: Vec<&Value> = events.iter().filter(of_pid).collect();
    assert_eq!(decisions.len(), denied, "decisions of {pid}: {decisions:?}");
    for d in decisions {
        assert_eq!(get_str(d, "mnsensor.decision"), "deny", "{}", show(d));
        assert_eq!(get_str(d, "file.path"), path_str(&file), "{}", show(d));
    }
}

/// Helper mode: forks once more so that the credential changes are made by a thread-group
/// leader (the test harness runs this function on a thread of its own; `setfsuid` changes
/// only the calling thread), runs [`STEPS`] there and writes what each open returned.
#[test]
#[ignore = "helper: runs only as a child of decisions_follow_credentials_changed_after_exec"]
fn subject_child() {
    let Ok(spec) = env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).expect("child spec is JSON");
    let path = CString::new(spec["path"].as_str().expect("path")).expect("no NUL");
    let results = fs::File::create(dir_of(&spec).join("steps")).expect("create the steps file");
    let fd = results.as_raw_fd();
    // SAFETY: the grandchild makes only async-signal-safe calls (setresuid, setfsuid, open,
    // read, close, write, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let mut buf = [0u8; 256];
        for (switch, uid) in STEPS {
            // SAFETY: see above.
            unsafe {
                let mut ok = libc::setresuid(u32::MAX, 0, u32::MAX) == 0;
                ok &= match switch {
                    Switch::Fsuid => {
                        libc::setfsuid(uid);
                        libc::setfsuid(u32::MAX) == uid as i32
                    }
                    Switch::Euid => libc::setresuid(u32::MAX, uid, u32::MAX) == 0,
                };
                let o = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                let errno: u8 = if !ok {
                    255
                } else if o < 0 {
                    *libc::__errno_location() as u8
                } else {
                    let n = libc::read(o, buf.as_mut_ptr().cast(), buf.len());
                    libc::close(o);
                    if n as usize == SECRET.len() && buf[..SECRET.len()] == *SECRET.as_bytes() {
                        0
                    } else {
                        254
                    }
                };
                libc::write(fd, (&raw const errno).cast(), 1);
            }
        }
        // SAFETY: leaves the forked copy without running the harness's exit path.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the grandchild just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "grandchild status {status}");
    drop(results);
    let mut bytes = Vec::new();
    fs::File::open(dir_of(&spec).join("steps"))
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read steps");
    let errnos: Vec<i64> = bytes.iter().map(|b| i64::from(*b)).collect();
    let res = json!({"pid": pid, "errnos": errnos});
    fs::write(spec["out"].as_str().expect("out"), res.to_string()).expect("write result");
}

fn dir_of(spec: &Value) -> std::path::PathBuf {
    Path::new(spec["out"].as_str().expect("out")).parent().expect("parent").to_path_buf()
}
