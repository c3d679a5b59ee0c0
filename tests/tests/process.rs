//! Process events: exec (identity, executable, argv, cwd), fork, exit code and signal.

use std::{fs, os::unix::fs::MetadataExt as _, process::Command, time::Duration};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, dev_string, find_tool, fork_and_exit, get_str, get_str_array,
    get_u64, has, is, loginuid, path_str, pid_of, scaled, show, test_pid, waitpid_status,
};
use serde_json::Value;

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// The identity every record about a process started by this (root) test carries.
fn assert_identity(ev: &Value) {
    // SAFETY: these getters have no preconditions.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    assert_eq!(get_u64(ev, "process.real_user.id"), u64::from(uid), "real uid: {}", show(ev));
    assert_eq!(get_u64(ev, "process.user.id"), u64::from(euid), "effective uid: {}", show(ev));
    assert_eq!(uid, 0, "these tests run as root");
    assert_eq!(get_u64(ev, "mnsensor.process.group.id"), u64::from(egid), "egid: {}", show(ev));
    assert_eq!(get_u64(ev, "mnsensor.process.real_group.id"), u64::from(gid), "gid: {}", show(ev));
    match loginuid() {
        Some(auid) => {
            assert_eq!(get_u64(ev, "mnsensor.login_user.id"), u64::from(auid), "login uid: {}", show(ev));
        }
        None => assert!(
            !has(ev, "mnsensor.login_user.id"),
            "loginuid is unset (4294967295) but the record has mnsensor.login_user.id: {}",
            show(ev)
        ),
    }
}

#[test]
fn exec_reports_identity_executable_argv_cwd_and_exit_code() {
    let mut sensor = Sensor::start(&[]);
    let cwd = TempDir::new("exec-cwd");
    let sh = find_tool("sh");
    let sh_str = path_str(&sh).to_owned();
    let args = ["-c", "exit 7", "two words", ""];
    let mut child = ChildGuard::spawn(Command::new(&sh).args(args).current_dir(cwd.path()));
    let pid = child.pid();
    let status = child.wait_timeout(scaled(CHILD_TIMEOUT));
    assert_eq!(status.code(), Some(7), "sh -c 'exit 7' exit status");

    let exec = sensor
        .wait_for(&format!("process.exec of pid {pid}"), |e| is(e, "process.exec") && pid_of(e) == Some(pid));
    let exe = canonical(&sh);
    let meta = fs::metadata(&exe).expect("stat the shell");
    assert_eq!(get_u64(&exec, "process.parent_pid"), u64::from(test_pid()), "parent: {}", show(&exec));
    assert_identity(&exec);
    assert_eq!(get_str(&exec, "process.executable.path"), path_str(&exe), "exe (canonical): {}", show(&exec));
    assert_eq!(
        get_str(&exec, "process.executable.name"),
        exe.file_name().unwrap().to_str().unwrap(),
        "exe name: {}",
        show(&exec)
    );
    let mut argv = vec![sh_str];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    assert_eq!(get_str_array(&exec, "process.command_args"), argv, "argv: {}", show(&exec));
    assert_eq!(get_str(&exec, "process.command_line"), argv.join(" "), "command line: {}", show(&exec));
    assert_eq!(get_str(&exec, "process.working_directory"), path_str(cwd.path()), "cwd: {}", show(&exec));
    assert_eq!(get_u64(&exec, "file.inode"), meta.ino(), "exe inode: {}", show(&exec));
    assert_eq!(get_str(&exec, "mnsensor.file.device"), dev_string(meta.dev()), "exe device: {}", show(&exec));
    assert_eq!(get_str(&exec, "mnsensor.process.attribution"), "exec", "{}", show(&exec));
    assert!(!has(&exec, "mnsensor.argv.truncated"), "short argv flagged truncated: {}", show(&exec));

    let exit = sensor
        .wait_for(&format!("process.exit of pid {pid}"), |e| is(e, "process.exit") && pid_of(e) == Some(pid));
    assert_eq!(get_u64(&exit, "process.exit.code"), 7, "exit code: {}", show(&exit));
    assert!(!has(&exit, "mnsensor.process.exit.signal"), "normal exit has a signal: {}", show(&exit));
    assert_eq!(get_u64(&exit, "process.parent_pid"), u64::from(test_pid()), "{}", show(&exit));
    assert_eq!(
        sensor.matching(|e| is(e, "process.exec") && pid_of(e) == Some(pid)).len(),
        1,
        "exactly one exec for pid {pid}"
    );
    sensor.stop();
}

#[test]
fn fork_is_reported_with_parent_and_exit_code() {
    let mut sensor = Sensor::start(&[]);
    let pid = fork_and_exit(5);
    let status = waitpid_status(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5, "forked child status {status:#x}");

    let fork = sensor
        .wait_for(&format!("process.fork of pid {pid}"), |e| is(e, "process.fork") && pid_of(e) == Some(pid));
    assert_eq!(get_u64(&fork, "process.parent_pid"), u64::from(test_pid()), "parent: {}", show(&fork));
    assert_identity(&fork);
    // The child runs the test binary, like its parent (no exec happened).
    let me = canonical(std::env::current_exe().expect("current_exe"));
    assert_eq!(get_str(&fork, "process.executable.path"), path_str(&me), "child's exe: {}", show(&fork));

    let exit = sensor
        .wait_for(&format!("process.exit of pid {pid}"), |e| is(e, "process.exit") && pid_of(e) == Some(pid));
    assert_eq!(get_u64(&exit, "process.exit.code"), 5, "exit code: {}", show(&exit));
    assert!(!has(&exit, "mnsensor.process.exit.signal"), "{}", show(&exit));
    sensor.assert_none(&format!("a process.exec for the forked pid {pid}"), |e| {
        is(e, "process.exec") && pid_of(e) == Some(pid)
    });
    sensor.stop();
}

#[test]
fn sigkill_is_reported_as_exit_signal_9() {
    let mut sensor = Sensor::start(&[]);
    let sleep = find_tool("sleep");
    let mut child = ChildGuard::spawn(Command::new(&sleep).arg("300"));
    let pid = child.pid();
    // Let the sensor see the exec first, so the process is known and alive when killed.
    let exec = sensor.wait_for(&format!("process.exec of sleep pid {pid}"), |e| {
        is(e, "process.exec") && pid_of(e) == Some(pid)
    });
    assert_eq!(get_str(&exec, "process.executable.path"), path_str(&canonical(&sleep)), "{}", show(&exec));
    let status = child.kill();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "sleep killed by SIGKILL");

    let exit = sensor
        .wait_for(&format!("process.exit of pid {pid}"), |e| is(e, "process.exit") && pid_of(e) == Some(pid));
    assert_eq!(get_u64(&exit, "mnsensor.process.exit.signal"), 9, "exit signal: {}", show(&exit));
    assert!(!has(&exit, "process.exit.code"), "killed process has an exit code: {}", show(&exit));
    assert_ne!(
        exit.get("mnsensor.process.exit.core_dumped").and_then(Value::as_bool),
        Some(true),
        "SIGKILL does not dump core: {}",
        show(&exit)
    );
    sensor.stop();
}

/// docs/events.md, record quality flags: a command line longer than 4096 bytes is cut and
/// flagged `mnsensor.argv.truncated`; a short one is not flagged.
#[test]
fn long_command_lines_are_cut_and_flagged() {
    let mut sensor = Sensor::start(&[]);
    let sh = find_tool("sh");
    let long = "x".repeat(3000);
    let mut child = ChildGuard::spawn(Command::new(&sh).args(["-c", "exit 0", &long, &long]));
    let pid = child.pid();
    assert!(child.wait_timeout(scaled(CHILD_TIMEOUT)).success());
    let mut short = ChildGuard::spawn(Command::new(&sh).args(["-c", "exit 0", "short"]));
    let short_pid = short.pid();
    assert!(short.wait_timeout(scaled(CHILD_TIMEOUT)).success());
    let exec = sensor
        .wait_for(&format!("process.exec of pid {pid}"), |e| is(e, "process.exec") && pid_of(e) == Some(pid));
    assert_eq!(exec.get("mnsensor.argv.truncated").and_then(Value::as_bool), Some(true), "{}", show(&exec));
    let line = get_str(&exec, "process.command_line");
    let full = format!("{} -c exit 0 {long} {long}", path_str(&sh));
    assert!(
        line.len() <= 4096 && full.starts_with(line),
        "a cut prefix of the command line: {}",
        show(&exec)
    );
    let exec = sensor.wait_for(&format!("process.exec of pid {short_pid}"), |e| {
        is(e, "process.exec") && pid_of(e) == Some(short_pid)
    });
    assert!(!has(&exec, "mnsensor.argv.truncated"), "{}", show(&exec));
    sensor.stop();
}
