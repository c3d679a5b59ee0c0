//! Changes to protected files: `file.delete`, `file.rename`, `file.link`, `file.truncate`,
//! `file.chmod`, `file.chown`, each naming the process, the user and the file's identity.
//!
//! Where fentry programs load (the VM matrix) deletions, renames, links and truncations come
//! from the kernel's `security_path_*` hooks (`mnsensor.backend.file_change: fentry`, no
//! `mnsensor.observed_by`); elsewhere from the fanotify observer (`observed_by: fanotify`)
//! and, for links, from the link syscalls.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use mnsensor_tests::{
    Sensor, TempDir, dev_string, get_str, get_u64, in_vm, is, path_str, pid_of, show, test_pid, util::c_path,
};
use serde_json::Value;

/// A protected tree with one file of known size, an unprotected directory beside it, and a
/// sensor watching the tree.
struct Setup {
    _tree: TempDir,
    protected: PathBuf,
    outside: PathBuf,
    file: PathBuf,
    ino: u64,
    dev: String,
    sensor: Sensor,
}

const SIZE: usize = 5000;

impl Setup {
    fn new(label: &str) -> Self {
        let tree = TempDir::new(label);
        let protected = tree.mkdir("protected");
        let outside = tree.mkdir("outside");
        let file = tree.write("protected/numbers.csv", vec![b'7'; SIZE]);
        let meta = fs::metadata(&file).expect("stat file");
        let sensor = Sensor::start(&["--protect", path_str(&protected)]);
        let change = get_str(sensor.start_event(), "mnsensor.backend.file_change");
        let want = if in_vm() { "fentry" } else { "fanotify" };
        assert_eq!(change, want, "change backend: {}", show(sensor.start_event()));
        Self { _tree: tree, protected, outside, file, ino: meta.ino(), dev: dev_string(meta.dev()), sensor }
    }

    fn kernel_changes(&self) -> bool {
        get_str(self.sensor.start_event(), "mnsensor.backend.file_change") == "fentry"
    }

    /// Waits for `name` about `path` by this test process and checks who and what.
    fn wait(&mut self, name: &str, path: &Path) -> Value {
        let me = test_pid();
        let ev = self.sensor.wait_for(&format!("{name} of {} by {me}", path.display()), |e| {
            is(e, name)
                && pid_of(e) == Some(me)
                && e.get("file.path").and_then(Value::as_str) == Some(path_str(path))
        });
        assert_eq!(get_u64(&ev, "process.user.id"), 0, "user: {}", show(&ev));
        assert_eq!(get_u64(&ev, "file.inode"), self.ino, "inode: {}", show(&ev));
        assert_eq!(get_str(&ev, "mnsensor.file.device"), self.dev, "device: {}", show(&ev));
        ev
    }

    /// One record `name` of `path` (the kernel's and fanotify's views are not both written).
    fn assert_once(&mut self, name: &str, path: &Path) {
        let all = self
            .sensor
            .matching(|e| is(e, name) && e.get("file.path").and_then(Value::as_str) == Some(path_str(path)));
        assert_eq!(all.len(), 1, "{name} records of {}: {all:?}", path.display());
    }

    /// Checks which backend made a record.
    fn assert_source(&self, ev: &Value, from_syscalls: bool) {
        let observed = ev.get("mnsensor.observed_by").and_then(Value::as_str);
        let want = if self.kernel_changes() || from_syscalls { None } else { Some("fanotify") };
        assert_eq!(observed, want, "observed_by: {}", show(ev));
    }
}

fn errno_check(rc: i32, what: &str) {
    assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
}

#[test]
fn delete_names_the_deleter_inode_and_last_size() {
    let mut s = Setup::new("changes-delete");
    let file = s.file.clone();
    // A file outside the tree is deleted too: no record.
    let unrelated = s.outside.join("scratch.txt");
    fs::write(&unrelated, "x").expect("write unrelated");
    fs::remove_file(&unrelated).expect("delete unrelated");
    fs::remove_file(&file).expect("delete protected file");
    let ev = s.wait("file.delete", &file);
    assert_eq!(get_u64(&ev, "file.size"), SIZE as u64, "last size: {}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.protected.path"), path_str(&s.protected), "{}", show(&ev));
    s.assert_source(&ev, false);
    if s.kernel_changes() {
        assert_eq!(get_u64(&ev, "mnsensor.file.links"), 0, "links left: {}", show(&ev));
    }
    let needle = path_str(&unrelated).to_owned();
    s.sensor.assert_none("records of the unrelated file", |e| {
        e.get("file.path").and_then(Value::as_str) == Some(needle.as_str())
    });
    s.sensor.stop();
    s.assert_once("file.delete", &file);
}

#[test]
fn rename_out_of_the_tree_keeps_the_file_protected() {
    let mut s = Setup::new("changes-rename");
    let (old, new) = (s.file.clone(), s.outside.join("moved.csv"));
    fs::rename(&old, &new).expect("rename out of the tree");
    let ev = s.wait("file.rename", &new);
    assert_eq!(get_str(&ev, "mnsensor.file.old_path"), path_str(&old), "old path: {}", show(&ev));
    s.assert_source(&ev, false);
    // Still protected by its inode.
    drop(fs::File::open(&new).expect("open moved file"));
    let me = test_pid();
    let open = s.sensor.wait_for("file.open of the moved file", |e| {
        is(e, "file.open")
            && pid_of(e) == Some(me)
            && e.get("file.path").and_then(Value::as_str) == Some(path_str(&new))
    });
    assert_eq!(get_u64(&open, "file.inode"), s.ino, "{}", show(&open));
    s.sensor.stop();
    s.assert_once("file.rename", &new);
}

#[test]
fn truncation_reports_old_and_new_size() {
    let mut s = Setup::new("changes-truncate");
    let file = s.file.clone();
    let f = fs::OpenOptions::new().write(true).open(&file).expect("open for ftruncate");
    f.set_len(100).expect("ftruncate");
    drop(f);
    let ev = s.wait("file.truncate", &file);
    assert_eq!(get_u64(&ev, "file.size"), 100, "new size: {}", show(&ev));
    assert_eq!(get_u64(&ev, "mnsensor.file.old_size"), SIZE as u64, "old size: {}", show(&ev));
    s.assert_source(&ev, false);

    // truncate(2) by name.
    let c = c_path(&file);
    // SAFETY: valid NUL-terminated path.
    errno_check(unsafe { libc::truncate(c.as_ptr(), 10) }, "truncate");
    let me = test_pid();
    let ev = s.sensor.wait_for("file.truncate to 10 bytes", |e| {
        is(e, "file.truncate")
            && pid_of(e) == Some(me)
            && e.get("file.size").and_then(Value::as_u64) == Some(10)
    });
    assert_eq!(get_u64(&ev, "mnsensor.file.old_size"), 100, "old size: {}", show(&ev));
    s.sensor.stop();
}

#[test]
fn hard_links_made_outside_the_tree_are_reported() {
    let mut s = Setup::new("changes-link");
    let file = s.file.clone();
    let link = s.outside.join("copy.csv");
    fs::hard_link(&file, &link).expect("link(2)");
    let ev = s.wait("file.link", &link);
    assert_eq!(get_u64(&ev, "mnsensor.file.links"), 2, "link count: {}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.protected.path"), path_str(&s.protected), "{}", show(&ev));
    s.assert_source(&ev, true);
    if s.kernel_changes() {
        assert_eq!(get_str(&ev, "mnsensor.file.old_path"), path_str(&file), "old path: {}", show(&ev));
    }

    // linkat(2) with a name relative to a directory descriptor.
    let dir = fs::File::open(&s.outside).expect("open outside dir");
    let (old, name) = (c_path(&file), c_path(Path::new("second.csv")));
    // SAFETY: valid descriptor and NUL-terminated names.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, old.as_ptr(), std::os::fd::AsRawFd::as_raw_fd(&dir), name.as_ptr(), 0)
    };
    errno_check(rc, "linkat");
    let second = s.outside.join("second.csv");
    let ev = s.wait("file.link", &second);
    assert_eq!(get_u64(&ev, "mnsensor.file.links"), 3, "link count: {}", show(&ev));

    // A link of an unrelated file is not reported.
    let other = s.outside.join("other.txt");
    fs::write(&other, "x").expect("write other");
    let other_link = s.outside.join("other-link.txt");
    fs::hard_link(&other, &other_link).expect("link other");
    // Synced on the channel link records take: a link of the protected file made afterwards.
    let third = s.outside.join("third.csv");
    fs::hard_link(&file, &third).expect("sync: link the protected file");
    s.wait("file.link", &third);
    let needle = path_str(&other_link).to_owned();
    s.sensor.assert_none("file.link of an unrelated file", |e| {
        is(e, "file.link") && e.get("file.path").and_then(Value::as_str) == Some(needle.as_str())
    });
    s.sensor.stop();
}

#[test]
fn chmod_and_chown_report_before_and_after() {
    let mut s = Setup::new("changes-attr");
    let file = s.file.clone();
    let before = fs::metadata(&file).expect("stat").mode() & 0o7777;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let ev = s.wait("file.chmod", &file);
    assert_eq!(get_str(&ev, "file.mode"), "0600", "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.file.old_mode"), format!("{before:04o}"), "{}", show(&ev));

    let c = c_path(&file);
    // SAFETY: valid NUL-terminated path.
    errno_check(unsafe { libc::chown(c.as_ptr(), 1, 1) }, "chown");
    let ev = s.wait("file.chown", &file);
    assert_eq!(get_u64(&ev, "file.owner.id"), 1, "{}", show(&ev));
    assert_eq!(get_u64(&ev, "file.group.id"), 1, "{}", show(&ev));
    assert_eq!(get_u64(&ev, "mnsensor.file.old_owner.id"), 0, "{}", show(&ev));
    s.sensor.stop();
}
