//! File events: opens inside a protected tree are reported with the canonical path however
//! the path was spelled; opens outside are not.

use std::{
    fs::{self, OpenOptions},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    process::Command,
    time::Duration,
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, canonical, dev_string, find_tool, get_bool, get_str, get_str_array, get_u64,
    is, mentions, path_str, pid_of, scaled, show, test_pid, util::c_path,
};
use serde_json::Value;

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// A `file.open` record of `path` (canonical) opened by `pid`.
fn is_open_of(ev: &Value, path: &Path, pid: u32) -> bool {
    is(ev, "file.open")
        && pid_of(ev) == Some(pid)
        && ev.get("file.path").and_then(Value::as_str) == Some(path_str(path))
}

/// Checks the file attributes of a `file.open` record against the file on disk.
fn assert_file_attrs(ev: &Value, path: &Path, access: &str, protected: &Path) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    assert_eq!(get_str(ev, "file.path"), path_str(path), "path: {}", show(ev));
    assert_eq!(get_str(ev, "file.name"), path.file_name().unwrap().to_str().unwrap(), "name: {}", show(ev));
    assert_eq!(get_str(ev, "file.directory"), path_str(path.parent().unwrap()), "directory: {}", show(ev));
    assert_eq!(get_u64(ev, "file.inode"), meta.ino(), "inode of {}: {}", path.display(), show(ev));
    assert_eq!(get_str(ev, "mnsensor.file.device"), dev_string(meta.dev()), "device: {}", show(ev));
    assert_eq!(get_str(ev, "mnsensor.file.access"), access, "access: {}", show(ev));
    assert_eq!(get_str(ev, "mnsensor.protected.path"), path_str(protected), "protected path: {}", show(ev));
    // Flags may be left out when none apply; when present O_CREAT is not among them.
    if ev.get("mnsensor.file.flags").is_some() {
        let flags = get_str_array(ev, "mnsensor.file.flags");
        assert!(!flags.iter().any(|f| f == "O_CREAT"), "O_CREAT is consumed by the kernel: {}", show(ev));
    }
}

fn wait_open(sensor: &mut Sensor, path: &Path, pid: u32, how: &str) -> Value {
    sensor.wait_for(&format!("file.open of {} by pid {pid} ({how})", path.display()), |e| {
        is_open_of(e, path, pid)
    })
}

fn sys_open(path: &Path, flags: i32) -> i32 {
    let c = c_path(path);
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}: {}", path.display(), io::Error::last_os_error());
    fd
}

fn sys_close(fd: i32) {
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
}

#[test]
fn open_paths_resolve_to_canonical_path() {
    let tree = TempDir::new("files-resolve");
    let p = tree.mkdir("protected");
    let sub = tree.mkdir("protected/sub");
    let outside = tree.mkdir("outside");
    let rel = tree.write("protected/sub/rel.txt", "relative\n");
    let dirfd_file = tree.write("protected/sub/dirfd.txt", "dirfd\n");
    let openat2_file = tree.write("protected/openat2.txt", "openat2\n");
    let sym_target = tree.write("protected/symlink-target.txt", "symlink\n");
    let dotdot = tree.write("protected/dotdot.txt", "dotdot\n");
    let link = outside.join("link-to-protected");
    std::os::unix::fs::symlink(&sym_target, &link).expect("symlink");

    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();

    // 1. Relative path from a changed cwd, in a child shell (chdir would affect other tests).
    let sh = find_tool("sh");
    let mut child =
        ChildGuard::spawn(Command::new(&sh).args(["-c", "cd sub && read x < rel.txt"]).current_dir(&p));
    let sh_pid = child.pid();
    let status = child.wait_timeout(scaled(CHILD_TIMEOUT));
    assert!(status.success(), "sh -c 'cd sub && read x < rel.txt': {status}");
    let ev = wait_open(&mut sensor, &rel, sh_pid, "relative path after cd");
    assert_file_attrs(&ev, &rel, "read", &p);
    assert_eq!(get_str(&ev, "process.executable.path"), path_str(&canonical(&sh)), "{}", show(&ev));
    assert_eq!(get_u64(&ev, "process.parent_pid"), u64::from(me), "{}", show(&ev));

    // 2. openat with a directory fd, read-write.
    let dirfd = sys_open(&sub, libc::O_RDONLY | libc::O_DIRECTORY);
    // SAFETY: valid fd and NUL-terminated name.
    let fd = unsafe { libc::openat(dirfd, c"dirfd.txt".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "openat: {}", io::Error::last_os_error());
    sys_close(fd);
    let ev = wait_open(&mut sensor, &dirfd_file, me, "openat(dirfd)");
    assert_file_attrs(&ev, &dirfd_file, "read_write", &p);
    assert_fd_and_syscall(&sensor, &ev, fd, "openat");
    assert!(get_str_array(&ev, "mnsensor.file.flags").iter().any(|f| f == "O_RDWR"), "flags: {}", show(&ev));

    // 3. openat2 with a dirfd and `..`, write-only append.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how =
        OpenHow { flags: (libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC) as u64, mode: 0, resolve: 0 };
    // SAFETY: valid fd, NUL-terminated path and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c"../openat2.txt".as_ptr(),
            &raw const how,
            size_of::<OpenHow>(),
        )
    } as i32;
    assert!(fd >= 0, "openat2: {}", io::Error::last_os_error());
    sys_close(fd);
    sys_close(dirfd);
    let ev = wait_open(&mut sensor, &openat2_file, me, "openat2(dirfd, ../)");
    assert_file_attrs(&ev, &openat2_file, "write", &p);
    assert_fd_and_syscall(&sensor, &ev, fd, "openat2");
    let flags = get_str_array(&ev, "mnsensor.file.flags");
    assert!(
        flags.iter().any(|f| f == "O_APPEND") && flags.iter().any(|f| f == "O_WRONLY"),
        "flags: {}",
        show(&ev)
    );

    // 4. A symlink outside the tree pointing inside.
    let f = fs::File::open(&link).expect("open via symlink");
    drop(f);
    let ev = wait_open(&mut sensor, &sym_target, me, "symlink outside -> inside");
    assert_file_attrs(&ev, &sym_target, "read", &p);
    assert!(!mentions(&ev, path_str(&link)), "path copied from the syscall argument: {}", show(&ev));

    // 5. A path with `..`, write-only.
    let spelled = sub.join("..").join("dotdot.txt");
    let f = OpenOptions::new().write(true).open(&spelled).expect("open with ..");
    let fd = f.as_raw_fd();
    drop(f);
    let ev = wait_open(&mut sensor, &dotdot, me, "path with ..");
    assert_file_attrs(&ev, &dotdot, "write", &p);
    assert_fd_and_syscall(&sensor, &ev, fd, "openat");
    assert!(
        get_str_array(&ev, "mnsensor.file.flags").iter().any(|f| f == "O_WRONLY"),
        "flags: {}",
        show(&ev)
    );

    // Every test-process open is attributed to the test binary (it predates the sensor).
    let me_exe = canonical(std::env::current_exe().expect("current_exe"));
    assert_eq!(get_str(&ev, "process.executable.path"), path_str(&me_exe), "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.process.attribution"), "procfs", "{}", show(&ev));

    for (path, pid) in
        [(&rel, sh_pid), (&dirfd_file, me), (&openat2_file, me), (&sym_target, me), (&dotdot, me)]
    {
        let n = sensor.matching(|e| is_open_of(e, path, pid)).len();
        assert_eq!(n, 1, "file.open records of {} by {pid}", path.display());
    }
    sensor.stop();
}

#[test]
fn create_inside_protected_tree_is_flagged() {
    let tree = TempDir::new("files-create");
    let p = tree.mkdir("protected");
    let existing = tree.write("protected/existing.txt", "x\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();

    let created = p.join("created.txt");
    let f = OpenOptions::new().write(true).create_new(true).open(&created).expect("create");
    drop(f);
    let ev = wait_open(&mut sensor, &created, me, "O_CREAT|O_EXCL of a new file");
    assert_file_attrs(&ev, &created, "write", &p);
    assert_eq!(get_bool(&ev, "mnsensor.file.created"), Some(true), "created: {}", show(&ev));

    // O_CREAT of an existing file does not create it.
    let f = OpenOptions::new().append(true).create(true).open(&existing).expect("open existing with O_CREAT");
    drop(f);
    let ev = wait_open(&mut sensor, &existing, me, "O_CREAT of an existing file");
    assert_file_attrs(&ev, &existing, "write", &p);
    assert_ne!(
        get_bool(&ev, "mnsensor.file.created"),
        Some(true),
        "existing file reported as created: {}",
        show(&ev)
    );
    sensor.stop();
}

#[test]
fn opens_outside_protected_tree_are_not_reported() {
    let tree = TempDir::new("files-outside");
    let p = tree.mkdir("protected");
    // A sibling whose name starts with the protected dir's name, and an unrelated one.
    let prefix_sibling = tree.mkdir("protected2");
    let outside = tree.mkdir("outside");
    let a = tree.write("protected2/a.txt", "a\n");
    let b = tree.write("outside/b.txt", "b\n");
    let sync = tree.write("protected/sync.txt", "sync\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();

    drop(fs::File::open(&a).expect("open a"));
    drop(OpenOptions::new().write(true).open(&b).expect("open b"));
    drop(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(outside.join("new.txt"))
            .expect("create outside"),
    );
    let fd = sys_open(&outside, libc::O_RDONLY | libc::O_DIRECTORY);
    sys_close(fd);
    // A child process too.
    let cat = find_tool("cat");
    let mut child = ChildGuard::spawn(Command::new(&cat).arg(&b).stdout(std::process::Stdio::null()));
    assert!(child.wait_timeout(scaled(CHILD_TIMEOUT)).success(), "cat {}", b.display());

    // Sync point: a later protected open is delivered, so the earlier ones would have been.
    drop(fs::File::open(&sync).expect("open sync"));
    let ev = wait_open(&mut sensor, &sync, me, "sync point");
    assert_file_attrs(&ev, &sync, "read", &p);
    for dir in [&prefix_sibling, &outside] {
        let needle = format!("{}/", path_str(dir));
        sensor.assert_none(&format!("file.* records mentioning {needle}"), |e| {
            mnsensor_tests::event::name(e).starts_with("file.") && mentions(e, &needle)
        });
    }
    sensor.stop();
}

#[test]
fn protecting_a_single_file() {
    let tree = TempDir::new("files-single");
    let doc = tree.write("doc.txt", "doc\n");
    let sibling = tree.write("sibling.txt", "sibling\n");
    // Given with a non-canonical spelling; reported canonical.
    let spelled = tree.path().join(".").join("doc.txt");
    let mut sensor = Sensor::start(&["--protect", path_str(&spelled)]);
    let me = test_pid();
    assert_eq!(
        get_str_array(sensor.start_event(), "mnsensor.config.protect"),
        vec![path_str(&doc).to_owned()],
        "config.protect: {}",
        show(sensor.start_event())
    );

    drop(fs::File::open(&sibling).expect("open sibling"));
    drop(fs::File::open(tree.path()).expect("open the directory"));
    drop(OpenOptions::new().read(true).write(true).open(&doc).expect("open doc"));
    let ev = wait_open(&mut sensor, &doc, me, "the protected file itself");
    assert_file_attrs(&ev, &doc, "read_write", &doc);
    sensor.assert_none("file.* records of anything but the protected file", |e| {
        mnsensor_tests::event::name(e).starts_with("file.")
            && e.get("file.path").and_then(Value::as_str) != Some(path_str(&doc))
    });
    sensor.stop();
}

/// With the tracepoint backend an open record names the descriptor and the syscall; with the
/// fentry backend (kernels where fentry loads, e.g. the VM matrix) it sees the open before a
/// descriptor exists and names neither.
fn assert_fd_and_syscall(sensor: &Sensor, ev: &Value, fd: i32, syscall: &str) {
    match get_str(sensor.start_event(), "mnsensor.backend.file") {
        "tracepoint" => {
            assert_eq!(get_u64(ev, "mnsensor.file.fd"), fd as u64, "fd: {}", show(ev));
            assert_eq!(get_str(ev, "mnsensor.syscall"), syscall, "{}", show(ev));
        }
        "fentry" => {
            assert!(
                !mnsensor_tests::event::has(ev, "mnsensor.file.fd")
                    && !mnsensor_tests::event::has(ev, "mnsensor.syscall"),
                "{}",
                show(ev)
            );
        }
        other => panic!("unexpected file backend {other:?}"),
    }
}

/// The kernel remembers directories it found outside the protected trees; a directory moved
/// into a tree must be matched at once, and one moved out no longer.
#[test]
fn directory_moved_into_tree_is_protected_at_once() {
    let tree = TempDir::new("files-move-in");
    let p = tree.mkdir("protected");
    tree.mkdir("outside/dir");
    let inner = tree.write("outside/dir/inner.txt", "inner\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();

    // Opened twice while outside: not reported, and the directory is now known as clear.
    for _ in 0..2 {
        drop(fs::File::open(&inner).expect("open while outside"));
    }
    let moved_dir = p.join("dir");
    fs::rename(tree.join("outside/dir"), &moved_dir).expect("move the directory into the tree");
    let moved = moved_dir.join("inner.txt");
    drop(fs::File::open(&moved).expect("open after the move"));
    let ev = wait_open(&mut sensor, &moved, me, "open right after the directory moved in");
    assert_file_attrs(&ev, &moved, "read", &p);
    let outside = path_str(&inner).to_owned();
    sensor.assert_none("records of the file while it was outside", |e| {
        e.get("file.path").and_then(Value::as_str) == Some(outside.as_str())
    });

    // And out again: a file created in the directory after it left the tree is not
    // protected. (Whether files keep their protection outside the tree is documented only
    // for the fentry backend's renames and links, and tested in changes.rs and
    // protected_io.rs.)
    fs::rename(&moved_dir, tree.join("outside/dir")).expect("move the directory out");
    let later = tree.join("outside/dir/created-after.txt");
    fs::write(&later, "l\n").expect("create after the move out");
    drop(fs::File::open(&later).expect("open the file created outside"));
    let sync = tree.write("protected/sync.txt", "sync\n");
    drop(fs::File::open(&sync).expect("open sync"));
    wait_open(&mut sensor, &sync, me, "sync point");
    let later_s = path_str(&later).to_owned();
    sensor.assert_none("records of a file created after the directory left the tree", |e| {
        e.get("file.path").and_then(Value::as_str) == Some(later_s.as_str())
    });
    sensor.stop();
}

/// docs/events.md, record quality flags: a path of more than 64 components is cut (its start
/// is missing) and flagged `mnsensor.path.truncated`.
#[test]
fn deep_paths_are_cut_at_the_start_and_flagged() {
    let tree = TempDir::new("files-deep");
    let p = tree.mkdir("protected");
    let rel: String = (0..70).map(|i| format!("d{i}/")).collect();
    let deep = tree.write(format!("protected/{rel}deep.txt"), "deep\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    drop(fs::File::open(&deep).expect("open the deep file"));
    let me = test_pid();
    let ev = sensor.wait_for("file.open of the deep file", |e| {
        is(e, "file.open")
            && pid_of(e) == Some(me)
            && e.get("file.name").and_then(Value::as_str) == Some("deep.txt")
    });
    assert_eq!(get_bool(&ev, "mnsensor.path.truncated"), Some(true), "{}", show(&ev));
    let path = get_str(&ev, "file.path");
    let full = path_str(&deep);
    assert!(
        path.len() < full.len() && full.ends_with(path.trim_start_matches('/')),
        "the end of the path: {}",
        show(&ev)
    );
    assert_eq!(get_u64(&ev, "file.inode"), fs::metadata(&deep).expect("stat").ino(), "{}", show(&ev));
    sensor.stop();
}

/// The kernel also remembers files found outside the protected trees (by mount, dentry and
/// parent): a file moved into a tree, and a file whose grandparent directory is moved into a
/// tree, after both were opened (and cached) outside, are matched at their next open.
#[test]
fn cached_unrelated_files_are_matched_after_renames() {
    let tree = TempDir::new("files-cache-rename");
    let p = tree.mkdir("protected");
    let deep = tree.write("outside/a/b/deep.txt", "deep\n");
    let single = tree.write("outside/single.txt", "single\n");
    let mut sensor = Sensor::start(&["--protect", path_str(&p)]);
    let me = test_pid();
    for _ in 0..3 {
        drop(fs::File::open(&deep).expect("open deep while outside"));
        drop(fs::File::open(&single).expect("open single while outside"));
    }

    let moved_single = p.join("single.txt");
    fs::rename(&single, &moved_single).expect("move the file into the tree");
    drop(fs::File::open(&moved_single).expect("open the moved file"));
    let ev = wait_open(&mut sensor, &moved_single, me, "open of a cached file moved into the tree");
    assert_file_attrs(&ev, &moved_single, "read", &p);

    fs::rename(tree.join("outside/a"), p.join("a")).expect("move the grandparent into the tree");
    let moved_deep = p.join("a/b/deep.txt");
    drop(fs::File::open(&moved_deep).expect("open the file in the moved tree"));
    let ev = wait_open(&mut sensor, &moved_deep, me, "open in a cached tree moved into the tree");
    assert_file_attrs(&ev, &moved_deep, "read", &p);

    let (deep_s, single_s) = (path_str(&deep).to_owned(), path_str(&single).to_owned());
    sensor.assert_none("records of the files while they were outside", |e| {
        let path = e.get("file.path").and_then(Value::as_str);
        path == Some(deep_s.as_str()) || path == Some(single_s.as_str())
    });
    sensor.stop();
}
