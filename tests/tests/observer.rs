//! The fanotify observer's content group next to the kernel programs (docs/events.md,
//! `file.access`; docs/architecture.md, "The fanotify observer").
//!
//! `execve` opens the executable inside the kernel, with no open syscall: the tracepoint
//! backend's programs do not see that open, so the observer's content group (read on the
//! daemon's drain tick) must report it as `file.access` with `observed_by: fanotify`. Where the
//! `fentry` program on `security_file_open` sees every open, there is no content group and the
//! kernel record is a `file.open` of the executable.

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::Command,
};

use mnsensor_tests::{Sensor, TempDir, get_str, get_u64, is, path_str, pid_of, show};
use serde_json::Value;

#[test]
fn open_inside_exec_is_reported_on_every_backend() {
    let tree = TempDir::new("observer-exec");
    let p = tree.mkdir("protected");
    let tool = p.join("payroll-tool");
    fs::copy("/bin/true", &tool).expect("copy /bin/true into the tree");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let start = sensor.start_event().clone();
    let backend = get_str(&start, "mnsensor.backend.file").to_owned();

    // `arg0`: in the VM guest `/bin/true` is busybox, which picks its applet by argv[0].
    let child = Command::new(&tool).arg0("true").spawn().expect("run the protected executable");
    let pid = child.id();
    let status = child.wait_with_output().expect("wait").status;
    assert!(status.success(), "{}: {status}", tool.display());

    let of_tool = |e: &Value| {
        pid_of(e) == Some(pid) && e.get("file.path").and_then(Value::as_str) == Some(path_str(&tool))
    };
    match backend.as_str() {
        "tracepoint" => {
            assert_eq!(get_str(&start, "mnsensor.backend.file_observer"), "fanotify", "{}", show(&start));
            let ev = sensor.wait_for(&format!("file.access of {} by pid {pid}", tool.display()), |e| {
                is(e, "file.access") && of_tool(e)
            });
            assert_eq!(get_str(&ev, "mnsensor.observed_by"), "fanotify", "{}", show(&ev));
            assert_eq!(get_str(&ev, "mnsensor.fanotify.event"), "open", "{}", show(&ev));
            let ino = fs::metadata(&tool).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
            assert_eq!(get_u64(&ev, "file.inode"), ino, "{}", show(&ev));
        }
        "fentry" => {
            sensor.wait_for(&format!("file.open of {} by pid {pid}", tool.display()), |e| {
                is(e, "file.open") && of_tool(e)
            });
            sensor.stop();
            // The kernel record explains the open; with no content group nothing else may.
            assert!(
                sensor.matching(|e| is(e, "file.access") && of_tool(e)).is_empty(),
                "a file.access next to the fentry record"
            );
            return;
        }
        other => panic!("unexpected file backend {other:?}"),
    }
    sensor.stop();
}
