//! Compact `file.close` records (`sensor-ebpf/src/io.rs`, "Compact closes"): a close by the
//! opener's process, with the credentials it opened with, of an open whose record was sent,
//! carries no path and only the identity fields that may have changed; the daemon names the
//! file from the open. These tests make the cases where that would be wrong and check that
//! the record users see is still the full one: the open's record lost in a full ring buffer,
//! the closing thread's credentials changed since the open, and another thread closing.
//!
//! Expected values come from the workload (paths, inodes, bytes read, `gettid`, the uid set).

use std::{
    ffi::CString,
    fs,
    io::Read as _,
    os::{fd::FromRawFd as _, unix::fs::MetadataExt as _},
    time::{Duration, Instant},
};

use mnsensor_tests::{
    Sensor, TempDir, get_str, get_u64, is, path_str, pid_of, scaled, show, test_pid, util::c_path,
};
use serde_json::Value;

const SIZE: usize = 12_345;

fn open_raw(path: &CString) -> i32 {
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path:?}: {}", std::io::Error::last_os_error());
    fd
}

/// Reads `fd` to its end; the bytes read.
fn read_to_end(fd: i32) -> u64 {
    // SAFETY: borrows the descriptor for the read; `forget` keeps it open.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    let n = f.read_to_end(&mut buf).expect("read");
    std::mem::forget(f);
    n as u64
}

fn close_raw(fd: i32) {
    // SAFETY: a descriptor this test opened.
    assert_eq!(unsafe { libc::close(fd) }, 0, "close");
}

/// Whether every thread of `pid` is stopped (`T` in `/proc/PID/task/TID/stat`).
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
            .unwrap_or(false)
    })
}

/// The `file.close` of `path` by this process.
fn close_of(path: &str) -> impl Fn(&Value) -> bool {
    let path = path.to_owned();
    move |e: &Value| {
        is(e, "file.close")
            && pid_of(e) == Some(test_pid())
            && e.get("file.path").and_then(Value::as_str) == Some(path.as_str())
    }
}

/// The fields of a close of `path` (inode `ino`) by this process that the open would have
/// given.
#[track_caller]
fn check_close(close: &Value, path: &std::path::Path, ino: u64, bytes: u64, euid: u32, tid: i32) {
    let ctx = show(close);
    assert_eq!(get_str(close, "file.path"), path_str(path), "{ctx}");
    assert_eq!(get_str(close, "file.name"), path_str(path.file_name().unwrap().as_ref()), "{ctx}");
    assert_eq!(get_str(close, "file.directory"), path_str(path.parent().unwrap()), "{ctx}");
    assert_eq!(get_u64(close, "file.inode"), ino, "{ctx}");
    assert_eq!(get_u64(close, "process.user.id"), u64::from(euid), "{ctx}");
    assert_eq!(get_u64(close, "process.thread.id"), tid as u64, "{ctx}");
    assert_eq!(get_u64(close, "mnsensor.file.opener.pid"), u64::from(test_pid()), "{ctx}");
    assert_eq!(get_str(close, "mnsensor.close.reason"), "close", "{ctx}");
    assert_eq!(get_u64(close, "mnsensor.file.bytes_read"), bytes, "{ctx}");
}

fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() }
}

#[test]
fn a_close_whose_open_record_was_lost_is_sent_in_full() {
    const FILLERS: usize = 64;
    let dir = TempDir::new("compact-lost");
    let protected = dir.mkdir("protected");
    let fillers: Vec<CString> =
        (0..FILLERS).map(|i| c_path(&dir.write(format!("protected/filler-{i:03}.dat"), b"f"))).collect();
    let fillers_ino: Vec<u64> = (0..FILLERS)
        .map(|i| fs::metadata(dir.path().join(format!("protected/filler-{i:03}.dat"))).expect("stat").ino())
        .collect();
    let target = dir.write("protected/target.dat", vec![b't'; SIZE]);
    let ino = fs::metadata(&target).expect("stat").ino();
    let mut sensor = Sensor::start(&["--ring-buffer-bytes", "4096", "--protect", path_str(&protected)]);
    let daemon = sensor.pid();

    // The consumer stopped, 64 open records (~200 bytes each) overflow the 4 KiB ring for
    // certain: the target's open record cannot be written.
    // SAFETY: signals only the sensor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(daemon as i32, libc::SIGSTOP) }, 0, "SIGSTOP the sensor");
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    while !all_stopped(daemon) {
        assert!(Instant::now() < deadline, "the sensor did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held: Vec<i32> = fillers.iter().map(open_raw).collect();
    let fd = open_raw(&c_path(&target));
    let bytes = read_to_end(fd);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(daemon as i32, libc::SIGCONT) }, 0, "SIGCONT the sensor");

    // The loss record names the target's lost file.open (its inode).
    let lost_open = |e: &Value| {
        is(e, "sensor.event_loss")
            && e.get("mnsensor.lost.who").and_then(Value::as_array).is_some_and(|who| {
                who.iter().any(|w| w["event"] == "file.open" && w["inode"].as_u64() == Some(ino))
            })
    };
    sensor.wait_for("the loss record of the target's file.open", lost_open);
    // Every open is delivered or counted lost before the close: the loss record can come
    // before the consumer has drained the records that fit, and a close into a still full
    // ring would be lost too.
    let mut inodes: Vec<u64> = fillers_ino;
    inodes.push(ino);
    sensor.wait_until("every open delivered or counted lost", scaled(Duration::from_secs(60)), |evs| {
        let delivered = evs
            .iter()
            .filter(|e| {
                is(e, "file.open")
                    && e.get("file.inode").and_then(Value::as_u64).is_some_and(|i| inodes.contains(&i))
            })
            .count() as u64;
        let lost: u64 = evs
            .iter()
            .filter(|e| is(e, "sensor.event_loss"))
            .filter_map(|e| e.get("mnsensor.lost.who").and_then(Value::as_array))
            .flatten()
            .filter(|w| w["event"] == "file.open" && w["inode"].as_u64().is_some_and(|i| inodes.contains(&i)))
            .filter_map(|w| w["records"].as_u64())
            .sum();
        delivered + lost == inodes.len() as u64
    });

    // The ring has room again: the close is delivered, in full.
    close_raw(fd);
    let close = sensor.wait_for("file.close of the target", close_of(path_str(&target)));
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    check_close(&close, &target, ino, bytes, euid, gettid());
    assert_eq!(bytes, SIZE as u64);
    sensor.assert_none("a delivered file.open of the target (its record was to be lost)", |e| {
        is(e, "file.open") && e.get("file.inode").and_then(Value::as_u64) == Some(ino)
    });
    for fd in held {
        close_raw(fd);
    }
    sensor.stop();
}

#[test]
fn a_close_after_a_credential_change_or_by_another_thread_has_the_closer() {
    let dir = TempDir::new("compact-creds");
    let protected = dir.mkdir("protected");
    let a = dir.write("protected/a.dat", vec![b'a'; SIZE]);
    let b = dir.write("protected/b.dat", vec![b'b'; SIZE]);
    let (ino_a, ino_b) = (fs::metadata(&a).expect("stat").ino(), fs::metadata(&b).expect("stat").ino());
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);

    // One thread opens a as root, changes only its own effective uid (the raw syscall: the
    // libc wrapper would change every thread's) and closes it: the close is by uid 65534.
    let ca = c_path(&a);
    let (bytes_a, tid_a) = std::thread::spawn(move || {
        let fd = open_raw(&ca);
        let bytes = read_to_end(fd);
        // SAFETY: changes this thread's credentials only; it ends right after.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, -1i64, 65534i64, -1i64) };
        assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        close_raw(fd);
        (bytes, gettid())
    })
    .join()
    .expect("thread");
    // This thread opens b, another thread closes it: the closer's thread id.
    let fd = open_raw(&c_path(&b));
    let bytes_b = read_to_end(fd);
    let tid_b = std::thread::spawn(move || {
        close_raw(fd);
        gettid()
    })
    .join()
    .expect("thread");
    assert_ne!(tid_b, gettid());

    let close_a = sensor.wait_for("file.close of a", close_of(path_str(&a)));
    let close_b = sensor.wait_for("file.close of b", close_of(path_str(&b)));
    sensor.stop();
    check_close(&close_a, &a, ino_a, bytes_a, 65534, tid_a);
    for c in [&close_a, &close_b] {
        assert_eq!(get_str(c, "mnsensor.protected.path"), path_str(&protected), "{}", show(c));
    }
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(get_u64(&close_a, "mnsensor.file.opener.user.id"), u64::from(euid), "{}", show(&close_a));
    check_close(&close_b, &b, ino_b, bytes_b, euid, tid_b);
    assert_eq!((bytes_a, bytes_b), (SIZE as u64, SIZE as u64));
}

/// A file renamed while open (a file's rename keeps the directory caches, `dir_cache.rs`) is
/// closed under its new name: the rename moves the generation compact closes compare.
#[test]
fn a_file_renamed_while_open_is_closed_under_its_new_name() {
    let dir = TempDir::new("compact-rename");
    let protected = dir.mkdir("protected");
    let old = dir.write("protected/old.dat", vec![b'o'; SIZE]);
    let new = protected.join("new.dat");
    let ino = fs::metadata(&old).expect("stat").ino();
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);

    let fd = open_raw(&c_path(&old));
    let bytes = read_to_end(fd);
    // renameat with a one-component name relative to the directory: the form the tracepoint
    // backend proves to be a file's rename.
    let dirfd = open_raw(&c_path(&protected));
    let (o, n) = (CString::new("old.dat").expect("no NUL"), CString::new("new.dat").expect("no NUL"));
    // SAFETY: valid descriptor and NUL-terminated names.
    let r = unsafe { libc::renameat(dirfd, o.as_ptr(), dirfd, n.as_ptr()) };
    assert_eq!(r, 0, "renameat: {}", std::io::Error::last_os_error());
    close_raw(dirfd);
    close_raw(fd);

    let close = sensor.wait_for("file.close under the new name", close_of(path_str(&new)));
    sensor.stop();
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    check_close(&close, &new, ino, bytes, euid, gettid());
    assert!(sensor.matching(close_of(path_str(&old))).is_empty(), "no close under the old name");
}
