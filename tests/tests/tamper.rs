//! `sensor.tamper`: signals, ptrace and bpf(2) calls by other processes are reported with the
//! actor's identity. Each actor is a child this test forks; it only ever targets the sensor
//! this test started.

use std::io;

use mnsensor_tests::{
    Sensor, get_str, get_str_array, get_u64, has, is, pid_of, show, skip, test_pid, waitpid_status,
};
use serde_json::Value;

/// Forks a child that runs `act` (async-signal-safe syscalls only) and exits with its return
/// value; returns the child's pid once it has been reaped.
fn child(act: impl FnOnce() -> i32) -> u32 {
    // SAFETY: the child only makes raw syscalls and `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        0 => {
            let code = act();
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let pid = u32::try_from(pid).expect("positive pid");
            waitpid_status(pid);
            pid
        }
    }
}

/// Why `kind` cannot be tested: this kernel does not watch it (`mnsensor.tamper.off`).
fn unwatched(sensor: &Sensor, kind: &str) -> Option<String> {
    let off = get_str_array(sensor.start_event(), "mnsensor.tamper.off");
    off.iter()
        .any(|k| k == kind)
        .then(|| format!("tamper kind {kind} is not watched on this kernel: {}", show(sensor.start_event())))
}

/// Starts a sensor; skips the test when it does not watch `kind`.
macro_rules! sensor_watching {
    ($kind:expr) => {{
        let sensor = Sensor::start(&[]);
        if let Some(why) = unwatched(&sensor, $kind) {
            skip!("{why}");
        }
        sensor
    }};
}

/// The `sensor.tamper` record of `kind` whose actor is `pid`.
fn wait_tamper(sensor: &mut Sensor, kind: &str, pid: u32, extra: impl Fn(&Value) -> bool) -> Value {
    sensor.wait_for(&format!("sensor.tamper {kind} by pid {pid}"), |e| {
        is(e, "sensor.tamper")
            && pid_of(e) == Some(pid)
            && e.get("mnsensor.tamper.kind").and_then(Value::as_str) == Some(kind)
            && extra(e)
    })
}

/// The actor's identity: the child of this (root) test.
fn assert_actor(ev: &Value) {
    assert_eq!(get_u64(ev, "process.parent_pid"), u64::from(test_pid()), "actor's parent: {}", show(ev));
    assert_eq!(get_u64(ev, "process.user.id"), 0, "actor's uid: {}", show(ev));
    assert!(!get_str(ev, "process.executable.path").is_empty(), "actor's executable: {}", show(ev));
}

#[test]
fn a_signal_to_the_sensor_names_the_sender() {
    let mut sensor = sensor_watching!("signal");
    let target = i32::try_from(sensor.pid()).expect("pid fits");
    // SIGWINCH is ignored by default: the sensor is not disturbed. The kernel reports it
    // `delivered` instead when the target thread has signals blocked at that instant (glibc
    // blocks them all around a spawn; `sig_ignored`,
    // <https://github.com/torvalds/linux/blob/v6.12/kernel/signal.c>), so a few senders
    // may be needed before one sees it ignored; never any other result.
    let mut results = Vec::new();
    for _ in 0..10 {
        // SAFETY (in the child): kill(2) is async-signal-safe.
        let sender = child(|| if unsafe { libc::kill(target, libc::SIGWINCH) } == 0 { 0 } else { 1 });
        let ev = wait_tamper(&mut sensor, "signal", sender, |e| {
            e.get("mnsensor.tamper.signal").and_then(Value::as_u64) == Some(libc::SIGWINCH as u64)
        });
        assert_actor(&ev);
        assert_eq!(get_u64(&ev, "mnsensor.tamper.target_pid"), u64::from(sensor.pid()), "{}", show(&ev));
        let result = get_str(&ev, "mnsensor.tamper.signal_result").to_owned();
        assert!(result == "ignored" || result == "delivered", "{}", show(&ev));
        results.push(result);
        if results.last().is_some_and(|r| r == "ignored") {
            break;
        }
    }
    assert_eq!(results.last().map(String::as_str), Some("ignored"), "results of 10 senders: {results:?}");
    sensor.stop();
}

#[test]
fn sighup_is_reported_and_still_reloads() {
    let mut sensor = sensor_watching!("signal");
    let target = i32::try_from(sensor.pid()).expect("pid fits");
    let reloads = |s: &mut Sensor| s.matching(|e| is(e, "sensor.policy_reloaded")).len();
    let before = reloads(&mut sensor);
    // SAFETY (in the child): kill(2) is async-signal-safe.
    let sender = child(|| if unsafe { libc::kill(target, libc::SIGHUP) } == 0 { 0 } else { 1 });
    let ev = wait_tamper(&mut sensor, "signal", sender, |e| {
        e.get("mnsensor.tamper.signal").and_then(Value::as_u64) == Some(libc::SIGHUP as u64)
    });
    assert_eq!(get_str(&ev, "mnsensor.tamper.signal_result"), "delivered", "{}", show(&ev));
    sensor.wait_until(
        "a policy reload after SIGHUP",
        mnsensor_tests::scaled(std::time::Duration::from_secs(20)),
        |evs| evs.iter().filter(|e| is(e, "sensor.policy_reloaded")).count() > before,
    );
    sensor.stop();
}

#[test]
fn ptrace_of_the_sensor_is_reported() {
    let mut sensor = sensor_watching!("ptrace");
    let target = libc::pid_t::try_from(sensor.pid()).expect("pid fits");
    // PTRACE_SEIZE does not stop the sensor; the tracer's exit detaches it. Whether the kernel
    // allows it (Yama) does not matter: the attempt is what is reported.
    // SAFETY (in the child): ptrace(2) with null addr/data.
    let tracer = child(|| unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            target,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        );
        0
    });
    let ev = wait_tamper(&mut sensor, "ptrace", tracer, |_| true);
    assert_actor(&ev);
    assert_eq!(get_u64(&ev, "mnsensor.tamper.ptrace_request"), libc::PTRACE_SEIZE as u64, "{}", show(&ev));
    assert_eq!(get_u64(&ev, "mnsensor.tamper.target_pid"), u64::from(sensor.pid()), "{}", show(&ev));
    sensor.stop();
}

#[test]
fn process_vm_readv_of_the_sensor_is_reported() {
    let mut sensor = sensor_watching!("process_vm_read");
    let target = libc::pid_t::try_from(sensor.pid()).expect("pid fits");
    let mut buf = [0u8; 8];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // Address 0 is never mapped: the call fails after the entry the sensor watches.
    let remote = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: buf.len() };
    // SAFETY (in the child): the iovecs point at memory copied into the child.
    let reader = child(|| unsafe {
        libc::process_vm_readv(target, &local, 1, &remote, 1, 0);
        0
    });
    let ev = wait_tamper(&mut sensor, "process_vm_read", reader, |_| true);
    assert_actor(&ev);
    assert_eq!(get_u64(&ev, "mnsensor.tamper.target_pid"), u64::from(sensor.pid()), "{}", show(&ev));
    sensor.stop();
}

/// `BPF_PROG_LOAD` of a socket filter that returns 0 (`mov r0, 0; exit`).
fn load_trivial_program() -> i32 {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    // Two instructions: opcode, registers, offset, immediate.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = b"GPL\0";
    // `union bpf_attr` for PROG_LOAD: prog_type, insn_cnt, insns, license; the rest zero.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(BPF_PROG_TYPE_SOCKET_FILTER) | (2u64 << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    // SAFETY: attr points at 128 readable bytes holding valid pointers.
    unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), size_of_val(&attr)) as i32 }
}

#[test]
fn bpf_prog_load_by_another_process_is_reported() {
    let mut sensor = sensor_watching!("bpf");
    // The child exits at once, so its program is unloaded with it.
    let loader = child(|| if load_trivial_program() >= 0 { 0 } else { 1 });
    let ev = wait_tamper(&mut sensor, "bpf", loader, |_| true);
    assert_actor(&ev);
    assert_eq!(get_str(&ev, "mnsensor.tamper.bpf_command"), "BPF_PROG_LOAD", "{}", show(&ev));
    sensor.stop();
}

/// A child that made its change and waits, alive, until dropped (the sensor reads a fanotify
/// actor's identity from `/proc` when it reads the event).
struct Actor {
    pid: u32,
}

impl Actor {
    /// Forks a child that runs `act` (raw syscalls only); exits 1 at once if that failed,
    /// else waits to be killed.
    fn run(act: impl FnOnce() -> bool) -> Self {
        // SAFETY: the child only makes raw syscalls and `_exit`.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", io::Error::last_os_error()),
            0 => {
                if !act() {
                    // SAFETY: `_exit` is async-signal-safe.
                    unsafe { libc::_exit(1) }
                }
                loop {
                    // SAFETY: async-signal-safe; SIGKILL ends it.
                    unsafe { libc::pause() };
                }
            }
            pid => Self { pid: u32::try_from(pid).expect("positive pid") },
        }
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        mnsensor_tests::util::send_signal(self.pid, libc::SIGKILL);
        let status = waitpid_status(self.pid);
        if !std::thread::panicking() {
            assert!(libc::WIFSIGNALED(status), "actor {} failed its change", self.pid);
        }
    }
}

/// The `sensor.tamper` file record by `actor` with `action` on `path`; checks the actor.
fn wait_file(sensor: &mut Sensor, actor: &Actor, role: &str, action: &str, path: &std::path::Path) -> Value {
    let path = path.to_str().expect("UTF-8 path").to_owned();
    let ev = wait_tamper(sensor, "file", actor.pid, |e| {
        e.get("mnsensor.tamper.file_action").and_then(Value::as_str) == Some(action)
            && e.get("file.path").and_then(Value::as_str) == Some(path.as_str())
    });
    assert_eq!(get_str(&ev, "mnsensor.tamper.file_role"), role, "{}", show(&ev));
    assert_actor(&ev);
    ev
}

/// `p` as a C string, made before the fork (the child must not allocate).
fn c(p: &std::path::Path) -> std::ffi::CString {
    mnsensor_tests::util::c_path(p)
}

#[test]
fn changes_to_the_sensors_own_files_name_the_actor() {
    let dir = mnsensor_tests::TempDir::new("tamper-files");
    let config = dir.write("config.yaml", "protect: []\n");
    let pdir = dir.mkdir("policies");
    let policy = pdir.join("10-default.yaml");
    // An audit policy that protects nothing (the VM guest has no workspace to copy one from).
    std::fs::write(
        &policy,
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {name: quiet}\nspec:\n  mode: audit\n  protect: []\n  default: {action: audit, severity: low}\n",
    )
    .expect("write policy");
    let state = dir.join("state");
    let mut sensor = Sensor::start(&[
        "--config",
        mnsensor_tests::path_str(&config),
        "--policy",
        mnsensor_tests::path_str(&pdir),
        "--state-dir",
        mnsensor_tests::path_str(&state),
    ]);
    let mut actors = Vec::new();

    // A write to the configuration (append).
    let cfg = c(&config);
    let line = b"# edited\n";
    // SAFETY (in the child): open/write/close on prepared buffers.
    let writer = Actor::run(|| unsafe {
        let fd = libc::open(cfg.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
        let ok = fd >= 0 && libc::write(fd, line.as_ptr().cast(), line.len()) == line.len() as isize;
        libc::close(fd);
        ok
    });
    wait_file(&mut sensor, &writer, "config", "write", &config);
    actors.push(writer.pid);

    // chmod of the configuration.
    // SAFETY (in the child): chmod(2) on a prepared path.
    let chmodder = Actor::run(|| unsafe { libc::chmod(cfg.as_ptr(), 0o600) == 0 });
    let ev = wait_file(&mut sensor, &chmodder, "config", "chmod", &config);
    assert!(!has(&ev, "mnsensor.file.old_path"), "{}", show(&ev));
    actors.push(chmodder.pid);

    // A truncation of the configuration (O_TRUNC).
    // SAFETY (in the child): open/close on a prepared path.
    let truncator = Actor::run(|| unsafe {
        let fd = libc::open(cfg.as_ptr(), libc::O_WRONLY | libc::O_TRUNC);
        libc::close(fd);
        fd >= 0
    });
    wait_file(&mut sensor, &truncator, "config", "truncate", &config);
    actors.push(truncator.pid);

    // A rename inside the policy directory.
    let renamed = pdir.join("20-default.yaml");
    let (from, to) = (c(&policy), c(&renamed));
    // SAFETY (in the child): rename(2) on prepared paths.
    let renamer = Actor::run(|| unsafe { libc::rename(from.as_ptr(), to.as_ptr()) == 0 });
    let ev = wait_file(&mut sensor, &renamer, "policy", "rename", &renamed);
    assert_eq!(get_str(&ev, "mnsensor.file.old_path"), mnsensor_tests::path_str(&policy), "{}", show(&ev));
    actors.push(renamer.pid);

    // A deletion of a policy file.
    // SAFETY (in the child): unlink(2) on a prepared path.
    let deleter = Actor::run(|| unsafe { libc::unlink(to.as_ptr()) == 0 });
    wait_file(&mut sensor, &deleter, "policy", "delete", &renamed);
    actors.push(deleter.pid);

    // A file created in the state directory (next to the ledger the sensor writes).
    let intruder = state.join("intruder");
    let ipath = c(&intruder);
    // SAFETY (in the child): open/close on a prepared path.
    let creator = Actor::run(|| unsafe {
        let fd = libc::open(ipath.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600);
        libc::close(fd);
        fd >= 0
    });
    wait_file(&mut sensor, &creator, "state", "create", &intruder);
    actors.push(creator.pid);

    // The binary's times set to now (harmless; an attribute change of the running binary).
    // The VM guest runs it from its initramfs, which has no file handles to mark it by.
    let exe =
        mnsensor_tests::canonical(std::fs::read_link(format!("/proc/{}/exe", sensor.pid())).expect("exe"));
    let watched = get_str_array(sensor.start_event(), "mnsensor.tamper.files");
    for want in [
        format!("config={}", config.display()),
        format!("policy={}", pdir.display()),
        format!("state={}", state.display()),
    ] {
        assert!(watched.contains(&want), "{want} not in {watched:?}");
    }
    let toucher = if watched.contains(&format!("binary={}", exe.display())) {
        let exe_c = c(&exe);
        // SAFETY (in the child): utimensat(2) with null times (now).
        let toucher = Actor::run(|| unsafe {
            libc::utimensat(libc::AT_FDCWD, exe_c.as_ptr(), std::ptr::null(), 0) == 0
        });
        wait_file(&mut sensor, &toucher, "binary", "attrib", &exe);
        actors.push(toucher.pid);
        Some(toucher)
    } else {
        assert!(mnsensor_tests::in_vm(), "the binary {} is not watched: {watched:?}", exe.display());
        eprintln!("the binary {} is on a filesystem fanotify cannot mark here: {watched:?}", exe.display());
        None
    };

    // The sensor's own writes (ledger, key, cursors) are never reported; every file record
    // names one of the actors above.
    sensor.assert_none("a file tamper record by anyone but the actors", |e| {
        is(e, "sensor.tamper")
            && e.get("mnsensor.tamper.kind").and_then(Value::as_str) == Some("file")
            && !pid_of(e).is_some_and(|p| actors.contains(&p))
    });
    drop((writer, chmodder, truncator, renamer, deleter, creator, toucher));
    sensor.stop();
}

/// Wall-clock nanoseconds now.
fn now_ns() -> i128 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i128::try_from(d.as_nanos()).expect("fits")
}

fn time_ns(ev: &Value, key: &str) -> i128 {
    sensor_common::time::parse_rfc3339_ns(get_str(ev, key)).unwrap_or_else(|| panic!("{key}: {}", show(ev)))
}

/// The highest `mnsensor.seq` a run wrote.
fn last_seq(sensor: &mut Sensor) -> u64 {
    sensor.events().iter().map(|e| get_u64(e, "mnsensor.seq")).max().expect("records")
}

#[test]
fn every_restart_reports_the_gap_since_the_previous_run() {
    let work = mnsensor_tests::TempDir::new("tamper-restart");
    let state = work.join("state");
    let args = ["--state-dir", mnsensor_tests::path_str(&state)];

    // A clean stop, a pause, a start: the gap runs from the stop to the new start.
    let mut first = Sensor::start(&args);
    let stopping = now_ns();
    first.stop();
    let stopped = now_ns();
    let first_last = last_seq(&mut first);
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let starting = now_ns();
    let mut second = Sensor::start(&args);
    let started = now_ns();
    let gap = second.wait_for("sensor.gap", |e| is(e, "sensor.gap"));
    assert_eq!(mnsensor_tests::get_bool(&gap, "mnsensor.gap.clean"), Some(true), "{}", show(&gap));
    assert_eq!(get_u64(&gap, "mnsensor.gap.last_seq"), first_last, "{}", show(&gap));
    let (start, end) = (time_ns(&gap, "mnsensor.gap.start"), time_ns(&gap, "mnsensor.gap.end"));
    assert!(
        (stopping..=stopped).contains(&start),
        "gap start {start} not within the stop [{stopping}, {stopped}]"
    );
    assert!(
        (starting..=started).contains(&end),
        "gap end {end} not within the start [{starting}, {started}]"
    );
    let seconds = gap.get("mnsensor.gap.seconds").and_then(Value::as_f64).expect("mnsensor.gap.seconds");
    assert!(((end - start) as f64 / 1e9 - seconds).abs() < 1e-3, "seconds {seconds} vs {start}..{end}");
    assert!(seconds >= 1.5, "the pause was 1.5 s: {}", show(&gap));

    // An unclean stop: the gap starts at the last record the killed run wrote (kernel records
    // carry the time of their event, so that is any time after the run began).
    let before = starting;
    let killing = now_ns();
    mnsensor_tests::util::send_signal(second.pid(), libc::SIGKILL);
    let second_last = last_seq(&mut second);
    drop(second);
    let mut third = Sensor::start(&args);
    let gap = third.wait_for("sensor.gap", |e| is(e, "sensor.gap"));
    assert_eq!(mnsensor_tests::get_bool(&gap, "mnsensor.gap.clean"), Some(false), "{}", show(&gap));
    assert!(get_u64(&gap, "mnsensor.gap.last_seq") >= second_last, "{}", show(&gap));
    let start = time_ns(&gap, "mnsensor.gap.start");
    assert!((before..=killing).contains(&start), "gap start {start} not within [{before}, {killing}]");
    third.stop();
}

/// A cgroup v2 child for the egress programs (removed on drop).
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn new() -> Self {
        let root = if std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            std::path::PathBuf::from("/sys/fs/cgroup")
        } else {
            std::path::PathBuf::from("/sys/fs/cgroup/unified")
        };
        let path = root.join(format!("mnsensor-test.{}.tamper", test_pid()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: cgroup {} not removed", self.0.display());
    }
}

#[test]
fn a_detached_program_is_reported_and_attached_again() {
    use mnsensor_tests::bpf::{LINK_TYPE_CGROUP, detach_link, links};
    use std::os::unix::fs::MetadataExt as _;
    let cgroup = Cgroup::new();
    let conf = mnsensor_tests::TempDir::new("tamper-inventory");
    let protected = conf.mkdir("protected");
    let policy = conf.write(
        "policy.yaml",
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: inv}}\nspec:\n  mode: audit\n  protect: [{{path: {}}}]\n  default: {{action: audit, severity: low}}\n  egress:\n    action: alert\n",
            mnsensor_tests::path_str(&protected)
        ),
    );
    let config = conf.write(
        "config.yaml",
        format!("egress_cgroup: {}\ninventory_interval_s: 1\n", mnsensor_tests::path_str(&cgroup.0)),
    );
    let mut sensor = Sensor::start(&[
        "--config",
        mnsensor_tests::path_str(&config),
        "--policy",
        mnsensor_tests::path_str(&policy),
    ]);
    // The sensor's links on the test's cgroup, as the kernel lists them (the cgroup id is the
    // directory's inode number).
    let cgroup_id = std::fs::metadata(&cgroup.0).expect("stat cgroup").ino();
    let ids = sensor.program_ids().to_vec();
    let on_cgroup = |prog: Option<u32>| {
        links()
            .into_iter()
            .filter(|l| {
                l.kind == LINK_TYPE_CGROUP
                    && l.cgroup_id == cgroup_id
                    && ids.contains(&l.prog_id)
                    && prog.is_none_or(|p| p == l.prog_id)
            })
            .collect::<Vec<_>>()
    };
    let before = on_cgroup(None);
    assert!(!before.is_empty(), "no link of the sensor on {}: {before:?}", cgroup.0.display());
    let victim = before[0];
    detach_link(victim.id).expect("BPF_LINK_DETACH");
    // The victim link itself is off the cgroup (the inventory may already have attached the
    // program again with a new link).
    assert!(!on_cgroup(Some(victim.prog_id)).iter().any(|l| l.id == victim.id), "the link is detached");

    let ev = sensor.wait_for("sensor.tamper program_detached", |e| {
        is(e, "sensor.tamper")
            && e.get("mnsensor.tamper.kind").and_then(Value::as_str) == Some("program_detached")
            && e.get("mnsensor.tamper.link_id").and_then(Value::as_u64) == Some(u64::from(victim.id))
    });
    assert_eq!(get_u64(&ev, "mnsensor.tamper.program_id"), u64::from(victim.prog_id), "{}", show(&ev));
    assert_eq!(mnsensor_tests::get_bool(&ev, "mnsensor.tamper.reattached"), Some(true), "{}", show(&ev));
    // Attached again: a new link of the same program on the same cgroup.
    let again = on_cgroup(Some(victim.prog_id));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(get_u64(&ev, "mnsensor.tamper.new_link_id"), u64::from(again[0].id), "{}", show(&ev));
    assert_ne!(again[0].id, victim.id);
    // The detach itself was a bpf(2) call of this test process.
    wait_tamper(&mut sensor, "bpf", test_pid(), |e| {
        e.get("mnsensor.tamper.bpf_command").and_then(Value::as_str) == Some("BPF_LINK_DETACH")
    });
    sensor.stop();
}
