//! A process that started before the sensor is attributed from /proc.

use std::{fs::OpenOptions, io::Write as _, process::Command, time::Duration};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, find_tool, get_str, get_str_array, get_u64, is, path_str, pid_of,
    scaled, show, test_pid, util::mkfifo,
};
use serde_json::Value;

#[test]
fn process_started_before_the_sensor_is_attributed_from_procfs() {
    let tree = TempDir::new("preexisting");
    let p = tree.mkdir("protected");
    let file = tree.write("protected/held.txt", "held\n");
    let fifo = tree.join("go.fifo");
    mkfifo(&fifo);
    let sh = find_tool("sh");
    let script = r#"read x < "$1"; exec 3< "$2""#;
    let argv = [path_str(&sh), "-c", script, "preexisting", path_str(&fifo), path_str(&file)];
    // Blocks in open(FIFO) until released; spawn returns after the exec.
    let mut child = ChildGuard::spawn(Command::new(&sh).args(&argv[1..]));
    let pid = child.pid();

    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    // Release the shell.
    let mut w = OpenOptions::new().write(true).open(&fifo).expect("open fifo for writing");
    w.write_all(b"go\n").expect("write fifo");
    drop(w);
    let status = child.wait_timeout(scaled(Duration::from_secs(30)));
    assert!(status.success(), "shell: {status}");

    let ev =
        sensor.wait_for(&format!("file.open of {} by the pre-existing shell {pid}", file.display()), |e| {
            is(e, "file.open")
                && pid_of(e) == Some(pid)
                && e.get("file.path").and_then(Value::as_str) == Some(path_str(&file))
        });
    assert_eq!(get_u64(&ev, "process.parent_pid"), u64::from(test_pid()), "parent: {}", show(&ev));
    assert_eq!(get_str(&ev, "process.executable.path"), path_str(&canonical(&sh)), "exe: {}", show(&ev));
    assert_eq!(get_u64(&ev, "process.user.id"), 0, "euid: {}", show(&ev));
    assert_eq!(get_u64(&ev, "process.real_user.id"), 0, "uid: {}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.process.attribution"), "procfs", "attribution: {}", show(&ev));
    // The command line is optional on file records; when given it is the one from /proc.
    if ev.get("process.command_args").is_some() {
        assert_eq!(get_str_array(&ev, "process.command_args"), argv, "argv from /proc: {}", show(&ev));
    }
    assert_eq!(get_str(&ev, "mnsensor.file.access"), "read", "{}", show(&ev));
    sensor.assert_none(&format!("a process.exec of pid {pid} (it exec'ed before the sensor)"), |e| {
        is(e, "process.exec") && pid_of(e) == Some(pid)
    });
    sensor.stop();
}

/// docs/events.md, `mnsensor.observed_by`: a file already open or mapped when the sensor
/// starts is reported once, right after `sensor.start`, with `observed_by: procfs` (and
/// `file.mapped` for a mapping found in `/proc/<pid>/maps`, not as a descriptor).
#[test]
fn files_already_open_or_mapped_at_start_are_reported_from_procfs() {
    use std::os::{fd::AsRawFd as _, unix::fs::MetadataExt as _};
    let tree = TempDir::new("preexisting-open");
    let p = tree.mkdir("protected");
    let held = tree.write("protected/held.txt", "held\n");
    let mapped = tree.write("protected/mapped.bin", vec![7u8; 8192]);
    let fd = std::fs::File::open(&held).expect("open held");
    let map_fd = std::fs::File::open(&mapped).expect("open mapped");
    // SAFETY: a fresh private read-only mapping of our own descriptor, unmapped below.
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ, libc::MAP_PRIVATE, map_fd.as_raw_fd(), 0)
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    // Only the mapping holds the second file now.
    drop(map_fd);

    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();
    let of = |path: &std::path::Path| {
        let path = path_str(path).to_owned();
        move |e: &Value| {
            is(e, "file.open")
                && pid_of(e) == Some(me)
                && e.get("file.path").and_then(Value::as_str) == Some(path.as_str())
        }
    };
    let ev = sensor.wait_for("procfs record of the held descriptor", of(&held));
    assert_eq!(get_str(&ev, "mnsensor.observed_by"), "procfs", "{}", show(&ev));
    assert_eq!(get_u64(&ev, "file.inode"), std::fs::metadata(&held).expect("stat").ino(), "{}", show(&ev));
    assert_ne!(ev.get("mnsensor.file.mapped").and_then(Value::as_bool), Some(true), "{}", show(&ev));
    let ev = sensor.wait_for("procfs record of the mapping", of(&mapped));
    assert_eq!(get_str(&ev, "mnsensor.observed_by"), "procfs", "{}", show(&ev));
    assert_eq!(ev.get("mnsensor.file.mapped").and_then(Value::as_bool), Some(true), "{}", show(&ev));
    // SAFETY: unmaps what we mapped.
    assert_eq!(unsafe { libc::munmap(map, 8192) }, 0);
    drop(fd);
    sensor.stop();
    // Reported once each.
    for path in [&held, &mapped] {
        let n = sensor.matching(of(path)).len();
        assert_eq!(n, 1, "{} reported {n} times at start", path.display());
    }
}
