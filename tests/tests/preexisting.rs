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
