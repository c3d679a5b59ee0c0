//! Protected files: every way of reaching a protected file's data is reported as one
//! `file.open` and one `file.close` with the exact byte counts, the canonical path the kernel
//! resolved, the file's inode and the acting process.
//!
//! The I/O runs in a child process: this test binary re-executed with `CHILD_ENV` set, which
//! runs only the ignored helper test [`io_child`]; it performs one operation with raw
//! syscalls (so the syscalls made are exactly the ones written here), writes what it did to
//! a result file outside the protected tree, and exits. Records are then filtered by the
//! child's pid and the file's path, after the sensor has stopped (so every record is in).
//!
//! Local helpers (not in the harness): the child re-exec (`run_child`), a bind-mount guard
//! (`BindMount`), RFC 3339 parsing for pairing a close with its open (`rfc3339_ns`).

use std::{
    env,
    ffi::CString,
    fs,
    io::{self, Read as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::{
        fd::AsRawFd as _,
        unix::{
            ffi::OsStrExt as _,
            fs::{MetadataExt as _, PermissionsExt as _},
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, dev_string, get_str, get_str_array, get_u64, has, in_vm, is, mentions,
    path_str, pid_of, scaled, show, test_pid, util::read_lossy,
};
use serde_json::{Value, json};

/// Selects the helper mode of this binary; its value is the operation (JSON).
const CHILD_ENV: &str = "MNSENSOR_PROTECTED_IO_CHILD";
/// The helper test's name (see [`io_child`]).
const CHILD_TEST: &str = "io_child";
/// Deadline for one child operation (scaled).
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Uid/gid the unprivileged children switch to.
const NOBODY: u32 = 65534;
/// Size of the ordinary test file: not a multiple of any chunk size used.
const SIZE: usize = 100_003;
/// Read chunk of the plain readers.
const CHUNK: usize = 4096;

// ---------------------------------------------------------------------------------------
// Parent side: trees, children, record checks
// ---------------------------------------------------------------------------------------

/// `<tmp>/…/protected` (passed to `--protect`) and `<tmp>/…/outside` (not protected), both
/// readable by [`NOBODY`].
struct Tree {
    dir: TempDir,
    protected: PathBuf,
    outside: PathBuf,
}

impl Tree {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let protected = dir.mkdir("protected");
        let outside = dir.mkdir("outside");
        for d in [dir.path(), &protected, &outside] {
            chmod(d, 0o755);
        }
        Self { dir, protected, outside }
    }

    /// Writes `len` bytes of [`pattern`] below the tree root (mode 0644); returns the path.
    fn file(&self, rel: &str, len: usize) -> PathBuf {
        let p = self.dir.write(rel, pattern(len));
        chmod(&p, 0o644);
        let mut d = p.parent().expect("parent");
        while d != self.dir.path() {
            chmod(d, 0o755);
            d = d.parent().expect("parent");
        }
        p
    }

    fn sensor(&self) -> Sensor {
        Sensor::start(&["--protect", path_str(&self.protected)])
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

fn inode(p: &Path) -> u64 {
    fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).ino()
}

fn device(p: &Path) -> String {
    dev_string(fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).dev())
}

/// One finished child operation.
struct ChildRun {
    pid: u32,
    result: Value,
}

impl ChildRun {
    fn u(&self, key: &str) -> u64 {
        self.result
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("child result has no {key:?}: {}", self.result))
    }

    /// The reason the child could not do the operation (the kernel lacks the feature).
    fn skipped(&self) -> Option<&str> {
        self.result.get("skip").and_then(Value::as_str)
    }
}

/// Runs `op` in a child (this binary in helper mode), as `uid` (after exec, from root) and
/// in `cwd` when given; waits for it and returns its pid and result. Panics with the child's
/// output when it fails.
fn run_child(mut op: Value, uid: Option<u32>, cwd: Option<&Path>, timeout: Duration) -> ChildRun {
    let dir = TempDir::new("pio-child");
    let result_path = dir.join("result.json");
    op["out"] = json!(path_str(&result_path));
    if let Some(uid) = uid {
        op["uid"] = json!(uid);
    }
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let exe = env::current_exe().expect("current_exe");
    let mut cmd = Command::new(&exe);
    cmd.args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, op.to_string())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"));
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = ChildGuard::spawn(&mut cmd);
    let pid = child.pid();
    let status = child.wait_timeout(scaled(timeout));
    let text = fs::read_to_string(&result_path).unwrap_or_default();
    assert!(
        status.success() && !text.is_empty(),
        "child {pid} ({op}) failed: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        read_lossy(&out_path),
        read_lossy(&err_path)
    );
    let result: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("child result is not JSON ({e}): {text}"));
    let run = ChildRun { pid, result };
    assert_eq!(run.u("pid"), u64::from(pid), "the child reports another pid: {}", run.result);
    run
}

/// When the child could not do the operation: in the VM, skips (true); elsewhere panics.
fn skip_unsupported(run: &ChildRun, sensor: &mut Sensor, what: &str) -> bool {
    let Some(reason) = run.skipped() else { return false };
    if in_vm() {
        sensor.stop();
        mnsensor_tests::skip::skip(&format!("{what}: not available in this VM kernel ({reason})"));
        return true;
    }
    panic!("{what}: not available on this host ({reason}); only the VM may skip it");
}

/// Waits until the child's `process.exit` has been delivered: every kernel record of the
/// child (its opens and closes) is then in.
fn wait_exit(sensor: &mut Sensor, pid: u32) {
    sensor.wait_for(&format!("process.exit of child {pid}"), |e| {
        is(e, "process.exit") && pid_of(e) == Some(pid)
    });
}

/// What one use of a protected file (one open, its I/O, its last close) must look like.
#[derive(Clone, Debug)]
struct Use {
    what: String,
    pid: u32,
    uid: u32,
    /// Canonical path at open; also expected on the close record unless `close_path`.
    path: PathBuf,
    close_path: Option<PathBuf>,
    inode: u64,
    device: String,
    protected: PathBuf,
    access: &'static str,
    created: Option<bool>,
    reason: &'static str,
    bytes_read: u64,
    bytes_written: u64,
    read_calls: Option<u64>,
    write_calls: Option<u64>,
    mmap_bytes: u64,
    io: Vec<&'static str>,
    /// `mnsensor.file.fd` of the close record (with reason `close`).
    close_fd: Option<u64>,
}

impl Use {
    /// A read-only use of `path` (canonical; the file exists) that read `bytes` with read(2).
    fn read(what: &str, run: &ChildRun, uid: u32, path: &Path, protected: &Path, bytes: u64) -> Self {
        Self::read_of(what, run, uid, path, (inode(path), device(path)), protected, bytes)
    }

    /// As [`Self::read`], for a file with the given `(inode, device)`.
    fn read_of(
        what: &str,
        run: &ChildRun,
        uid: u32,
        path: &Path,
        (inode, device): (u64, String),
        protected: &Path,
        bytes: u64,
    ) -> Self {
        Self {
            what: what.to_owned(),
            pid: run.pid,
            uid,
            path: path.to_path_buf(),
            close_path: None,
            inode,
            device,
            protected: protected.to_path_buf(),
            access: "read",
            created: Some(false),
            reason: "close",
            bytes_read: bytes,
            bytes_written: 0,
            read_calls: None,
            write_calls: Some(0),
            mmap_bytes: 0,
            io: vec!["read"],
            close_fd: run.result.get("fd").and_then(Value::as_u64),
        }
    }
}

/// The `file.*` records of `pid` (as actor or opener), for messages.
fn records_of(events: &[Value], pid: u32) -> String {
    let lines: Vec<String> = events
        .iter()
        .filter(|e| {
            mnsensor_tests::event::name(e).starts_with("file.")
                && (pid_of(e) == Some(pid)
                    || e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(u64::from(pid)))
        })
        .map(show)
        .collect();
    if lines.is_empty() { "(none)".to_owned() } else { lines.join("\n") }
}

/// Nanoseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn rfc3339_ns(s: &str) -> i128 {
    assert!(mnsensor_tests::event::is_rfc3339_nanos(s), "not RFC 3339 with ns: {s:?}");
    sensor_common::time::parse_rfc3339_ns(s).expect("RFC 3339")
}

/// Checks that `events` hold exactly one `file.open` by `u.pid` and one `file.close` opened
/// by `u.pid` (records for which `ignore` holds aside), and that they match `u`. Returns them.
#[track_caller]
fn check_use(events: &[Value], u: &Use, ignore: impl Fn(&Value) -> bool) -> (Value, Value) {
    let pid = u64::from(u.pid);
    let ctx =
        || format!("{} (child pid {}); its file.* records:\n{}", u.what, u.pid, records_of(events, u.pid));
    let opens: Vec<&Value> =
        events.iter().filter(|e| is(e, "file.open") && pid_of(e) == Some(u.pid) && !ignore(e)).collect();
    assert_eq!(opens.len(), 1, "expected exactly one file.open: {}", ctx());
    let closes: Vec<&Value> = events
        .iter()
        .filter(|e| {
            is(e, "file.close")
                && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(pid)
                && !ignore(e)
        })
        .collect();
    assert_eq!(closes.len(), 1, "expected exactly one file.close: {}", ctx());
    let (open, close) = (opens[0], closes[0]);

    let path = path_str(&u.path);
    assert_eq!(get_str(open, "file.path"), path, "file.open path: {}", ctx());
    assert_eq!(
        get_str(open, "file.name"),
        path_str(Path::new(u.path.file_name().unwrap())),
        "name: {}",
        ctx()
    );
    assert_eq!(get_str(open, "file.directory"), path_str(u.path.parent().unwrap()), "directory: {}", ctx());
    assert_eq!(get_u64(open, "file.inode"), u.inode, "file.open inode: {}", ctx());
    assert_eq!(get_str(open, "mnsensor.file.device"), u.device, "file.open device: {}", ctx());
    assert_eq!(get_str(open, "mnsensor.protected.path"), path_str(&u.protected), "protected path: {}", ctx());
    assert_eq!(get_str(open, "mnsensor.file.access"), u.access, "access: {}", ctx());
    assert_eq!(get_u64(open, "process.user.id"), u64::from(u.uid), "file.open euid: {}", ctx());
    assert_eq!(get_u64(open, "process.parent_pid"), u64::from(test_pid()), "file.open parent: {}", ctx());
    if let Some(created) = u.created {
        assert_eq!(
            open.get("mnsensor.file.created").and_then(Value::as_bool).unwrap_or(false),
            created,
            "created: {}",
            ctx()
        );
    }

    let close_path = path_str(u.close_path.as_deref().unwrap_or(&u.path));
    assert_eq!(get_str(close, "file.path"), close_path, "file.close path: {}", ctx());
    assert_eq!(get_u64(close, "file.inode"), u.inode, "file.close inode: {}", ctx());
    assert_eq!(get_str(close, "mnsensor.file.device"), u.device, "file.close device: {}", ctx());
    assert_eq!(
        get_str(close, "mnsensor.protected.path"),
        path_str(&u.protected),
        "close protected: {}",
        ctx()
    );
    assert_eq!(pid_of(close), Some(u.pid), "file.close process.pid: {}", ctx());
    assert_eq!(get_u64(close, "process.user.id"), u64::from(u.uid), "file.close euid: {}", ctx());
    assert_eq!(get_u64(close, "mnsensor.file.opener.user.id"), u64::from(u.uid), "opener euid: {}", ctx());
    assert_eq!(get_str(close, "mnsensor.close.reason"), u.reason, "close reason: {}", ctx());
    assert_eq!(get_u64(close, "mnsensor.file.bytes_read"), u.bytes_read, "bytes_read: {}", ctx());
    assert_eq!(get_u64(close, "mnsensor.file.bytes_written"), u.bytes_written, "bytes_written: {}", ctx());
    assert_eq!(get_u64(close, "mnsensor.file.mmap_bytes"), u.mmap_bytes, "mmap_bytes: {}", ctx());
    if let Some(n) = u.read_calls {
        assert_eq!(get_u64(close, "mnsensor.file.read_calls"), n, "read_calls: {}", ctx());
    }
    if let Some(n) = u.write_calls {
        assert_eq!(get_u64(close, "mnsensor.file.write_calls"), n, "write_calls: {}", ctx());
    }
    let mut io = get_str_array(close, "mnsensor.file.io");
    io.sort();
    let mut want: Vec<String> = u.io.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(io, want, "mnsensor.file.io: {}", ctx());
    if let (Some(fd), "close") = (u.close_fd, u.reason) {
        assert_eq!(get_u64(close, "mnsensor.file.fd"), fd, "file.close fd: {}", ctx());
    }
    // The close belongs to this open. (Not compared for equality: both times are converted
    // from the kernel's boot-time stamp with a wall-clock offset re-measured every second.)
    let opened_at = rfc3339_ns(get_str(close, "mnsensor.file.opened_at"));
    let open_time = rfc3339_ns(get_str(open, "time"));
    assert!((opened_at - open_time).abs() < 1_000_000, "opened_at is not the open's time: {}", ctx());
    (open.clone(), close.clone())
}

/// Starts a sensor on `tree`, runs `op` in a child (as `uid`), stops the sensor and checks
/// `use_of(run)`. Returns `None` when the VM lacks the feature (skipped).
fn single_use(
    tree: &Tree,
    what: &str,
    op: Value,
    uid: Option<u32>,
    cwd: Option<&Path>,
    use_of: impl FnOnce(&ChildRun) -> Use,
    ignore: impl Fn(&Value) -> bool,
) -> Option<(Value, Value)> {
    single_use_on(tree, what, op, uid, cwd, use_of, ignore).map(|(open, close, _)| (open, close))
}

/// [`single_use`], also returning the file backend of `sensor.start`
/// (`mnsensor.backend.file`: `tracepoint` or `fentry`).
fn single_use_on(
    tree: &Tree,
    what: &str,
    op: Value,
    uid: Option<u32>,
    cwd: Option<&Path>,
    use_of: impl FnOnce(&ChildRun) -> Use,
    ignore: impl Fn(&Value) -> bool,
) -> Option<(Value, Value, String)> {
    let mut sensor = tree.sensor();
    let backend = get_str(sensor.start_event(), "mnsensor.backend.file").to_owned();
    let run = run_child(op, uid, cwd, CHILD_TIMEOUT);
    if skip_unsupported(&run, &mut sensor, what) {
        return None;
    }
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let u = use_of(&run);
    let events = sensor.events().to_vec();
    let (open, close) = check_use(&events, &u, ignore);
    Some((open, close, backend))
}

/// A child, as nobody, reads all `SIZE` bytes of `file` in `CHUNK`s with `op` (the file reached
/// however `op` spells it): one open and one close record, both naming `file`.
fn read_whole_as_nobody(
    tree: &Tree,
    what: &str,
    op: Value,
    cwd: Option<&Path>,
    file: &Path,
    ignore: impl Fn(&Value) -> bool,
) -> Option<(Value, Value)> {
    single_use(
        tree,
        what,
        op,
        Some(NOBODY),
        cwd,
        |run| Use {
            read_calls: Some(read_calls(SIZE, CHUNK)),
            ..Use::read(what, run, NOBODY, file, &tree.protected, SIZE as u64)
        },
        ignore,
    )
}

fn never(_: &Value) -> bool {
    false
}

fn read_op(path: &Path) -> Value {
    json!({"op": "read", "path": path_str(path), "size": SIZE, "chunk": CHUNK})
}

fn read_calls(size: usize, chunk: usize) -> u64 {
    size.div_ceil(chunk) as u64
}

// ---------------------------------------------------------------------------------------
// 1. Reads of a protected file, however it is reached
// ---------------------------------------------------------------------------------------

#[test]
fn read_by_relative_path_from_child_cwd() {
    let tree = Tree::new("pio-relative");
    let file = tree.file("protected/sub/data.bin", SIZE);
    let cwd = tree.protected.join("sub");
    let op = json!({"op": "read", "path": "data.bin", "size": SIZE, "chunk": CHUNK});
    read_whole_as_nobody(&tree, "relative path from the child's cwd", op, Some(&cwd), &file, never);
}

#[test]
fn read_by_openat_with_dirfd() {
    let tree = Tree::new("pio-dirfd");
    let file = tree.file("protected/sub/data.bin", SIZE);
    let sub = tree.protected.join("sub");
    let op =
        json!({"op": "read_dirfd", "dir": path_str(&sub), "name": "data.bin", "size": SIZE, "chunk": CHUNK});
    // The directory itself lies in the tree; whether its open is reported is not checked here.
    read_whole_as_nobody(&tree, "openat(dirfd of a protected directory, name)", op, None, &file, |e| {
        e.get("file.path").and_then(Value::as_str) == Some(path_str(&sub))
    });
}

#[test]
fn read_through_symlink_outside_tree() {
    let tree = Tree::new("pio-symlink");
    let file = tree.file("protected/data.bin", SIZE);
    let link = tree.outside.join("link.bin");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    read_whole_as_nobody(&tree, "symlink outside the tree", read_op(&link), None, &file, never);
}

#[test]
fn read_through_dotdot_path() {
    let tree = Tree::new("pio-dotdot");
    let file = tree.file("protected/data.bin", SIZE);
    tree.file("outside/x/placeholder", 1);
    // Leaves the tree and comes back: outside/x/../../protected/data.bin.
    let spelled = tree.outside.join("x/../../protected/./sub2/../data.bin");
    fs::create_dir(tree.protected.join("sub2")).expect("mkdir sub2");
    chmod(&tree.protected.join("sub2"), 0o755);
    read_whole_as_nobody(&tree, "path with ..", read_op(&spelled), None, &file, never);
}

#[test]
fn read_through_proc_self_root() {
    let tree = Tree::new("pio-procroot");
    let file = tree.file("protected/data.bin", SIZE);
    let spelled = PathBuf::from(format!("/proc/self/root{}", path_str(&file)));
    read_whole_as_nobody(&tree, "/proc/self/root/<absolute path>", read_op(&spelled), None, &file, never);
}

/// A hard link outside the tree, made before the sensor starts (`before`) or after.
fn hard_link_case(label: &str, before: bool) {
    let tree = Tree::new(label);
    let file = tree.file("protected/data.bin", SIZE);
    let link = tree.outside.join("hardlink.bin");
    if before {
        fs::hard_link(&file, &link).expect("hard link");
    }
    let mut sensor = tree.sensor();
    if !before {
        fs::hard_link(&file, &link).expect("hard link");
    }
    assert_eq!(inode(&link), inode(&file), "a hard link shares the inode");
    let run = run_child(read_op(&link), Some(NOBODY), None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    // The kernel resolves the path of the name that was opened: the link's.
    let u = Use {
        read_calls: Some(read_calls(SIZE, CHUNK)),
        ..Use::read("hard link outside the tree", &run, NOBODY, &link, &tree.protected, SIZE as u64)
    };
    check_use(sensor.events(), &u, never);
}

#[test]
fn read_through_hard_link_made_before_start() {
    hard_link_case("pio-hardlink-before", true);
}

#[test]
fn read_through_hard_link_made_after_start() {
    hard_link_case("pio-hardlink-after", false);
}

/// `mount --bind source target`, detached on drop (also when the test panics).
struct BindMount {
    target: PathBuf,
}

impl BindMount {
    fn new(source: &Path, target: &Path) -> Self {
        let (s, t) = (cstr(source), cstr(target));
        // SAFETY: valid NUL-terminated paths; no fs type or data for a bind mount.
        let rc =
            unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        assert_eq!(
            rc,
            0,
            "mount --bind {} {}: {}",
            source.display(),
            target.display(),
            io::Error::last_os_error()
        );
        Self { target: target.to_path_buf() }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let t = cstr(&self.target);
        // SAFETY: valid NUL-terminated path; this guard made the mount.
        let rc = unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!("warning: umount {}: {}", self.target.display(), io::Error::last_os_error());
        }
    }
}

#[test]
fn read_through_bind_mount_of_tree() {
    let tree = Tree::new("pio-bind");
    let file = tree.file("protected/data.bin", SIZE);
    let mnt_dir = TempDir::new("pio-bind-mnt");
    chmod(mnt_dir.path(), 0o755);
    let target = mnt_dir.mkdir("mnt");
    // Declared after both temp dirs: unmounted before they are removed.
    let _mount = BindMount::new(&tree.protected, &target);
    let through = target.join("data.bin");
    assert_eq!(inode(&through), inode(&file), "bind mount shows the same file");
    // The path is the one in the opener's mount namespace: through the bind mount.
    read_whole_as_nobody(&tree, "bind mount of the protected tree", read_op(&through), None, &through, never);
}

#[test]
fn read_reopened_from_o_path_descriptor() {
    let tree = Tree::new("pio-opath");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "read_o_path", "path": path_str(&file), "size": SIZE, "chunk": CHUNK});
    let mut sensor = tree.sensor();
    let run = run_child(op, None, None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let path_fd = run.u("path_fd");
    let u = Use {
        read_calls: Some(read_calls(SIZE, CHUNK)),
        ..Use::read("O_PATH then open(/proc/self/fd/N)", &run, 0, &file, &tree.protected, SIZE as u64)
    };
    // docs/events.md: `O_PATH` descriptors are not reported. So nothing is set aside: an
    // O_PATH open (or a close of the O_PATH descriptor) is an unexpected record.
    let (open, _) = check_use(sensor.events(), &u, |_| false);
    assert!(!get_str_array(&open, "mnsensor.file.flags").iter().any(|f| f == "O_PATH"), "{}", show(&open));
    let o_path: Vec<&Value> = sensor
        .events()
        .iter()
        .filter(|e| pid_of(e) == Some(run.pid))
        .filter(|e| {
            (is(e, "file.open")
                && has(e, "mnsensor.file.flags")
                && get_str_array(e, "mnsensor.file.flags").iter().any(|f| f == "O_PATH"))
                || (is(e, "file.close") && e.get("mnsensor.file.fd").and_then(Value::as_u64) == Some(path_fd))
        })
        .collect();
    assert!(o_path.is_empty(), "O_PATH descriptors are never reported (docs/events.md): {o_path:?}");
}

#[test]
fn read_through_open_by_handle_at() {
    let tree = Tree::new("pio-handle");
    let file = tree.file("protected/data.bin", SIZE);
    // The mount fd: the unprotected tree root, on the same mount.
    let op = json!({"op": "read_handle", "path": path_str(&file), "mount": path_str(tree.dir.path()), "size": SIZE, "chunk": CHUNK});
    single_use(
        &tree,
        "name_to_handle_at + open_by_handle_at",
        op,
        None,
        None,
        |run| Use {
            read_calls: Some(read_calls(SIZE, CHUNK)),
            ..Use::read("open_by_handle_at", run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
}

#[test]
fn pread_and_readv_are_counted() {
    let tree = Tree::new("pio-preadv");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "pread_readv", "path": path_str(&file), "size": SIZE});
    single_use(
        &tree,
        "pread64 then readv",
        op,
        Some(NOBODY),
        None,
        |run| Use {
            read_calls: Some(run.u("calls")),
            ..Use::read("pread/readv", run, NOBODY, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
}

#[test]
fn mmap_counts_mapped_length() {
    let tree = Tree::new("pio-mmap");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "mmap", "path": path_str(&file), "size": SIZE});
    single_use(
        &tree,
        "mmap",
        op,
        Some(NOBODY),
        None,
        |run| Use {
            bytes_read: 0,
            read_calls: Some(0),
            mmap_bytes: SIZE as u64,
            io: vec!["mmap"],
            ..Use::read("mmap", run, NOBODY, &file, &tree.protected, 0)
        },
        never,
    );
}

#[test]
fn sendfile_to_loopback_socket() {
    let tree = Tree::new("pio-sendfile");
    let file = tree.file("protected/data.bin", SIZE);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    listener.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + scaled(CHILD_TIMEOUT);
    let server = thread::spawn(move || -> usize {
        let mut s: TcpStream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking stream");
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)),
        ))
        .expect("read timeout");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("server read");
        assert_eq!(got, pattern(SIZE), "bytes received through sendfile");
        got.len()
    });
    let op = json!({"op": "sendfile", "path": path_str(&file), "size": SIZE, "port": port});
    single_use(
        &tree,
        "sendfile to a loopback TCP socket",
        op,
        None,
        None,
        |run| Use {
            io: vec!["sendfile"],
            read_calls: Some(run.u("calls")),
            ..Use::read("sendfile", run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
    assert_eq!(server.join().expect("server thread"), SIZE);
}

#[test]
fn splice_file_to_pipe() {
    let tree = Tree::new("pio-splice");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "splice", "path": path_str(&file), "size": SIZE});
    single_use(
        &tree,
        "splice file -> pipe",
        op,
        None,
        None,
        |run| Use {
            io: vec!["splice"],
            read_calls: Some(run.u("calls")),
            ..Use::read("splice", run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
}

#[test]
fn copy_file_range_to_file_outside_tree() {
    let tree = Tree::new("pio-cfr");
    let file = tree.file("protected/data.bin", SIZE);
    let dst = tree.outside.join("copy.bin");
    let op = json!({"op": "copy_file_range", "path": path_str(&file), "dst": path_str(&dst), "size": SIZE});
    let (_, close) = single_use(
        &tree,
        "copy_file_range to a file outside the tree",
        op,
        None,
        None,
        |run| Use {
            io: vec!["copy_file_range"],
            read_calls: Some(run.u("calls")),
            ..Use::read("copy_file_range", run, 0, &file, &tree.protected, SIZE as u64)
        },
        // The destination is not protected: any record of it is a failure (not ignored).
        never,
    )
    .expect("copy_file_range is not skipped");
    assert_eq!(fs::read(&dst).expect("read copy"), pattern(SIZE), "copied bytes: {}", show(&close));
}

#[test]
fn io_uring_read() {
    let tree = Tree::new("pio-uring");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "io_uring_read", "path": path_str(&file), "size": SIZE, "open_with_uring": false});
    single_use(
        &tree,
        "io_uring read requests",
        op,
        None,
        None,
        |run| Use {
            io: vec!["io_uring"],
            read_calls: Some(run.u("calls")),
            ..Use::read("io_uring read", run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
}

#[test]
fn io_uring_openat_and_read() {
    let tree = Tree::new("pio-uring-open");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "io_uring_read", "path": path_str(&file), "size": SIZE, "open_with_uring": true});
    let result = single_use_on(
        &tree,
        "io_uring openat and read requests",
        op,
        None,
        None,
        |run| Use {
            io: vec!["io_uring"],
            read_calls: Some(run.u("calls")),
            ..Use::read("io_uring openat + read", run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
    if let Some((open, _, backend)) = result {
        // docs/events.md: the tracepoint backend names the syscall (here the io_uring
        // request); the fentry backend sees the open before it and names none.
        match backend.as_str() {
            "tracepoint" => {
                assert_eq!(get_str(&open, "mnsensor.syscall"), "io_uring_openat", "{}", show(&open))
            }
            "fentry" => assert!(!has(&open, "mnsensor.syscall"), "{}", show(&open)),
            other => panic!("unknown file backend {other:?}"),
        }
    }
}

#[test]
fn read_after_rename_out_of_tree() {
    let tree = Tree::new("pio-rename");
    let file = tree.file("protected/data.bin", SIZE);
    let moved = tree.outside.join("renamed.bin");
    let mut sensor = tree.sensor();
    // Renamed before it is read: protected by its own inode.
    fs::rename(&file, &moved).expect("rename out of the tree");
    let run = run_child(read_op(&moved), Some(NOBODY), None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let u = Use {
        read_calls: Some(read_calls(SIZE, CHUNK)),
        ..Use::read("renamed out of the tree", &run, NOBODY, &moved, &tree.protected, SIZE as u64)
    };
    check_use(sensor.events(), &u, never);
}

// ---------------------------------------------------------------------------------------
// 2. A file created in the tree stays protected
// ---------------------------------------------------------------------------------------

#[test]
fn created_file_stays_protected_after_rename_out() {
    let tree = Tree::new("pio-created");
    let created = tree.protected.join("new.bin");
    let moved = tree.outside.join("new-moved.bin");
    let mut sensor = tree.sensor();
    let op = json!({"op": "create_rename", "path": path_str(&created), "to": path_str(&moved), "size": SIZE});
    let creator = run_child(op, None, None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, creator.pid);
    let reader = run_child(read_op(&moved), None, None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, reader.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    // The creating use: reported at the name in the tree, renamed only after the close.
    let create = Use {
        pid: creator.pid,
        path: created,
        inode: inode(&moved),
        device: device(&moved),
        access: "write",
        created: Some(true),
        bytes_read: 0,
        bytes_written: SIZE as u64,
        read_calls: Some(0),
        write_calls: Some(1),
        io: vec!["write"],
        ..Use::read("creating the file in the tree", &creator, 0, &moved, &tree.protected, 0)
    };
    check_use(&events, &create, never);
    let read = Use {
        read_calls: Some(read_calls(SIZE, CHUNK)),
        ..Use::read(
            "reading the created file after renaming it out",
            &reader,
            0,
            &moved,
            &tree.protected,
            SIZE as u64,
        )
    };
    check_use(&events, &read, never);
}

// ---------------------------------------------------------------------------------------
// 3. Unlinking an open protected file
// ---------------------------------------------------------------------------------------

#[test]
fn unlink_while_open_keeps_records() {
    let tree = Tree::new("pio-unlink");
    let file = tree.file("protected/victim.bin", SIZE);
    let ino = inode(&file);
    let dev = device(&file);
    let mut sensor = tree.sensor();
    let op = json!({"op": "read_unlink", "path": path_str(&file), "size": SIZE, "chunk": CHUNK});
    let run = run_child(op, None, None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    assert!(!file.exists(), "the child unlinked {}", file.display());
    // The path on both records is the name the file had when it was opened.
    let u = Use {
        read_calls: Some(run.u("calls")),
        ..Use::read_of(
            "open, read, unlink, read, close",
            &run,
            0,
            &file,
            (ino, dev),
            &tree.protected,
            SIZE as u64,
        )
    };
    check_use(sensor.events(), &u, never);
}

// ---------------------------------------------------------------------------------------
// 4. 1 GiB read is one record
// ---------------------------------------------------------------------------------------

#[test]
fn sparse_1gib_read_is_one_close_record() {
    const GIB: u64 = 1 << 30;
    const MIB: usize = 1 << 20;
    let tree = Tree::new("pio-sparse");
    let file = tree.protected.join("sparse.bin");
    let f = fs::File::create(&file).expect("create sparse file");
    f.set_len(GIB).expect("ftruncate to 1 GiB");
    drop(f);
    chmod(&file, 0o644);
    let mut sensor = tree.sensor();
    let op = json!({"op": "read", "path": path_str(&file), "size": GIB, "chunk": MIB});
    let run = run_child(op, Some(NOBODY), None, Duration::from_secs(300));
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let u = Use {
        read_calls: Some(GIB / MIB as u64),
        ..Use::read("1 GiB sparse file in 1 MiB reads", &run, NOBODY, &file, &tree.protected, GIB)
    };
    let events = sensor.events().to_vec();
    check_use(&events, &u, never);
    // Nobody else's records of it either: one open, one close in the whole run.
    let path = path_str(&file);
    for name in ["file.open", "file.close"] {
        let n = events
            .iter()
            .filter(|e| is(e, name) && e.get("file.path").and_then(Value::as_str) == Some(path))
            .count();
        assert_eq!(n, 1, "{name} records of {path} in the run");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Writes, dup'd descriptors
// ---------------------------------------------------------------------------------------

#[test]
fn writes_counted_and_reported_at_last_close_of_dup() {
    const FIRST: usize = 70_001;
    const SECOND: usize = 12_345;
    let tree = Tree::new("pio-write");
    let file = tree.file("protected/out.bin", 0);
    chmod(&file, 0o666);
    let op = json!({"op": "write_dup", "path": path_str(&file), "first": FIRST, "second": SECOND});
    single_use(
        &tree,
        "write, dup, pwrite through the dup, close the dup, close",
        op,
        Some(NOBODY),
        None,
        |run| Use {
            access: "write",
            bytes_read: 0,
            bytes_written: (FIRST + SECOND) as u64,
            read_calls: Some(0),
            write_calls: Some(2),
            io: vec!["write"],
            ..Use::read("writes", run, NOBODY, &file, &tree.protected, 0)
        },
        never,
    )
    .expect("not skipped");
    // Exactly one file.close, and it carries the original descriptor (closed last), not the
    // dup's (closed first, not the last reference): checked by `check_use` via `close_fd`.
    assert_eq!(fs::metadata(&file).expect("stat").len(), (FIRST + SECOND) as u64);
}

/// docs/events.md, `file.close`: bytes moved into the file by every write path are counted
/// (`bytes_written`, `write_calls`) and named in `mnsensor.file.io`.
#[test]
fn every_write_path_is_counted() {
    let tree = Tree::new("pio-write-paths");
    let file = tree.file("protected/out.bin", 0);
    let src = tree.outside.join("src.bin");
    fs::write(&src, pattern(6 * 10_000)).expect("write the source");
    let op = json!({"op": "write_paths", "path": path_str(&file), "src": path_str(&src)});
    single_use(
        &tree,
        "writev, pwritev, splice, copy_file_range, sendfile and io_uring into the file",
        op,
        None,
        None,
        |run| Use {
            access: "write",
            bytes_read: 0,
            bytes_written: run.u("bytes"),
            read_calls: Some(0),
            write_calls: Some(run.u("calls")),
            io: vec!["write", "splice", "copy_file_range", "sendfile", "io_uring"],
            ..Use::read("write paths", run, 0, &file, &tree.protected, 0)
        },
        never,
    )
    .expect("not skipped");
    assert_eq!(fs::read(&file).expect("read back"), pattern(6 * 10_000), "the file holds what was written");
}

// ---------------------------------------------------------------------------------------
// 6. Unrelated files
// ---------------------------------------------------------------------------------------

#[test]
fn unrelated_files_are_not_reported() {
    let tree = Tree::new("pio-unrelated");
    let sync = tree.file("protected/sync.bin", SIZE);
    let sibling = TempDir::new("pio-unrelated-sibling");
    chmod(sibling.path(), 0o755);
    let mut files = Vec::new();
    for i in 0..20 {
        let p = sibling.write(format!("f{i}.bin"), pattern(256 * 1024 + i));
        chmod(&p, 0o644);
        files.push(path_str(&p).to_owned());
    }
    let op = json!({"op": "unrelated", "path": path_str(&sync), "size": SIZE, "chunk": CHUNK, "files": files, "rounds": 5});
    let mut sensor = tree.sensor();
    let run = run_child(op, Some(NOBODY), None, CHILD_TIMEOUT);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    // The protected file's counters hold only its own bytes, though unrelated files were
    // read through other descriptors while it was open.
    let u = Use {
        read_calls: Some(read_calls(SIZE / 2, CHUNK) + read_calls(SIZE - SIZE / 2, CHUNK)),
        ..Use::read(
            "protected file read between unrelated reads",
            &run,
            NOBODY,
            &sync,
            &tree.protected,
            SIZE as u64,
        )
    };
    check_use(&events, &u, never);
    let needle = format!("{}/", path_str(sibling.path()));
    let unrelated: Vec<String> = events
        .iter()
        .filter(|e| mnsensor_tests::event::name(e).starts_with("file.") && mentions(e, &needle))
        .map(show)
        .collect();
    assert!(unrelated.is_empty(), "records of unprotected files:\n{}", unrelated.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 7. The opener exits with the file open
// ---------------------------------------------------------------------------------------

#[test]
fn opener_exit_with_file_open_reports_exit_close() {
    const K: usize = 5000;
    let tree = Tree::new("pio-exit");
    let file = tree.file("protected/data.bin", SIZE);
    let op = json!({"op": "read_then_exit", "path": path_str(&file), "size": K, "chunk": CHUNK});
    let mut sensor = tree.sensor();
    let run = run_child(op, Some(NOBODY), None, CHILD_TIMEOUT);
    sensor.wait_for(&format!("file.close (exit) of the file opened by {}", run.pid), |e| {
        is(e, "file.close")
            && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(u64::from(run.pid))
    });
    sensor.stop();
    let u = Use {
        reason: "exit",
        read_calls: Some(read_calls(K, CHUNK)),
        ..Use::read("exit with the file open", &run, NOBODY, &file, &tree.protected, K as u64)
    };
    check_use(sensor.events(), &u, never);
}

// ---------------------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------------------

/// Helper mode: runs only in a child started by [`run_child`] (with `CHILD_ENV` set);
/// without it, does nothing.
/// Linux AIO: `io_submit` of the whole file in two read requests at once, completions reaped
/// with `io_getevents`; buffered, or `O_DIRECT` (aligned requests, the last one short at EOF).
fn aio_case(label: &str, direct: bool) {
    let tree = Tree::new(label);
    let file = tree.file("protected/data.bin", SIZE);
    let what = if direct { "O_DIRECT AIO reads" } else { "buffered AIO reads" };
    let op = json!({"op": "aio", "path": path_str(&file), "size": SIZE, "direct": direct});
    single_use(
        &tree,
        what,
        op,
        None,
        None,
        |run| Use {
            io: vec!["aio"],
            read_calls: Some(run.u("calls")),
            ..Use::read(what, run, 0, &file, &tree.protected, SIZE as u64)
        },
        never,
    );
}

#[test]
fn aio_buffered_read() {
    aio_case("pio-aio", false);
}

#[test]
fn aio_direct_read() {
    aio_case("pio-aio-direct", true);
}

#[test]
fn aio_buffered_write() {
    let tree = Tree::new("pio-aio-write");
    let file = tree.file("protected/out.bin", 0);
    let op = json!({"op": "aio", "path": path_str(&file), "size": SIZE, "direct": false, "write": true});
    single_use(
        &tree,
        "buffered AIO writes",
        op,
        None,
        None,
        |run| Use {
            access: "write",
            bytes_read: 0,
            bytes_written: SIZE as u64,
            read_calls: Some(0),
            write_calls: Some(run.u("calls")),
            io: vec!["aio"],
            ..Use::read("AIO writes", run, 0, &file, &tree.protected, 0)
        },
        never,
    )
    .expect("not skipped");
    assert!(fs::read(&file).expect("read back") == pattern(SIZE), "the AIO writes reached the file");
}

/// A descriptor taken from another process with `pidfd_getfd`: the thief's `file.open`
/// names it (syscall `pidfd_getfd`), its own `file.close` (scope `receiver`) holds exactly
/// what its reads returned, and its reads are counted in the open's totals too.
#[test]
fn pidfd_getfd_thief_is_recorded_with_its_bytes() {
    let tree = Tree::new("pio-pidfd");
    let file = tree.file("protected/data.bin", SIZE);
    let fifo = tree.dir.join("go.fifo");
    mnsensor_tests::util::mkfifo(&fifo);
    let mut sensor = tree.sensor();
    // The victim holds the file open as descriptor 3 and waits (reading nothing).
    let sh = mnsensor_tests::find_tool("sh");
    let mut victim = ChildGuard::spawn(Command::new(&sh).args([
        "-c",
        r#"exec 3< "$1"; read x < "$2""#,
        "victim",
        path_str(&file),
        path_str(&fifo),
    ]));
    let vpid = victim.pid();
    sensor.wait_for(&format!("file.open by the victim {vpid}"), |e| {
        is(e, "file.open") && pid_of(e) == Some(vpid)
    });
    let op = json!({"op": "pidfd_getfd", "pid": vpid, "fd": 3, "size": SIZE, "chunk": CHUNK});
    let run = run_child(op, None, None, CHILD_TIMEOUT);
    let released = fs::OpenOptions::new().write(true).open(&fifo).and_then(|mut w| {
        use std::io::Write as _;
        w.write_all(b"go\n")
    });
    released.expect("release the victim");
    let status = victim.wait_timeout(scaled(CHILD_TIMEOUT));
    if skip_unsupported(&run, &mut sensor, "pidfd_getfd") {
        return;
    }
    assert!(status.success(), "victim: {status}");
    wait_exit(&mut sensor, vpid);
    wait_exit(&mut sensor, run.pid);
    sensor.stop();
    let events = sensor.events().to_vec();
    let thief: Vec<&Value> =
        events.iter().filter(|e| is(e, "file.open") && pid_of(e) == Some(run.pid)).collect();
    assert_eq!(thief.len(), 1, "one file.open for the thief {}:\n{}", run.pid, records_of(&events, run.pid));
    let ctx = show(thief[0]);
    assert_eq!(get_str(thief[0], "file.path"), path_str(&file), "{ctx}");
    assert_eq!(get_str(thief[0], "mnsensor.syscall"), "pidfd_getfd", "{ctx}");
    assert_eq!(get_u64(thief[0], "file.inode"), inode(&file), "{ctx}");
    let of_victims_open = |e: &Value, scope: &str| {
        is(e, "file.close")
            && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(u64::from(vpid))
            && e.get("mnsensor.file.scope").and_then(Value::as_str) == Some(scope)
    };
    let own: Vec<&Value> = events.iter().filter(|e| of_victims_open(e, "receiver")).collect();
    assert_eq!(own.len(), 1, "one own file.close for the thief:\n{}", records_of(&events, run.pid));
    let ctx = show(own[0]);
    assert_eq!(pid_of(own[0]), Some(run.pid), "{ctx}");
    assert_eq!(get_str(own[0], "file.path"), path_str(&file), "{ctx}");
    assert_eq!(get_str(own[0], "mnsensor.close.reason"), "close", "{ctx}");
    assert_eq!(get_u64(own[0], "mnsensor.file.fd"), run.u("fd"), "{ctx}");
    assert_eq!(get_u64(own[0], "mnsensor.file.bytes_read"), run.u("bytes"), "{ctx}");
    assert_eq!(get_u64(own[0], "mnsensor.file.read_calls"), run.u("calls"), "{ctx}");
    // The open's totals (opened by the victim, which read nothing) hold the thief's bytes.
    let close = events
        .iter()
        .find(|e| of_victims_open(e, "open"))
        .unwrap_or_else(|| panic!("no file.close of the victim's open:\n{}", records_of(&events, vpid)));
    assert_eq!(get_u64(close, "mnsensor.file.bytes_read"), run.u("bytes"), "{}", show(close));
    assert_eq!(get_u64(close, "mnsensor.file.read_calls"), run.u("calls"), "{}", show(close));
}

#[test]
#[ignore = "helper: runs in a child process started by the other tests"]
fn io_child() {
    let Ok(spec) = env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).expect("child spec is JSON");
    child_main(&spec);
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn s<'a>(spec: &'a Value, key: &str) -> &'a str {
    spec.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("spec has no {key:?}: {spec}"))
}

fn n(spec: &Value, key: &str) -> usize {
    spec.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("spec has no {key:?}: {spec}")) as usize
}

fn os_err(what: &str) -> ! {
    panic!("{what}: {}", io::Error::last_os_error())
}

fn c_open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).expect("no NUL");
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        os_err(&format!("open {path}"));
    }
    fd
}

fn c_close(fd: i32) {
    // SAFETY: the child owns fd.
    if unsafe { libc::close(fd) } != 0 {
        os_err(&format!("close {fd}"));
    }
}

/// Reads exactly `size` bytes with read(2) in `chunk`s (no read at EOF); returns the calls.
fn read_counted(fd: i32, size: usize, chunk: usize) -> u64 {
    let mut buf = vec![0u8; chunk];
    let mut left = size;
    let mut calls = 0;
    while left > 0 {
        let want = left.min(chunk);
        // SAFETY: buf has at least `want` bytes.
        let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) };
        if got < 0 {
            os_err("read");
        }
        assert_eq!(got as usize, want, "short read ({left} bytes left)");
        left -= want;
        calls += 1;
    }
    calls
}

fn drop_privileges(uid: u32) {
    // SAFETY: plain credential syscalls (glibc applies them to every thread).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            os_err("setgroups");
        }
        if libc::setresgid(uid, uid, uid) != 0 {
            os_err("setresgid");
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            os_err("setresuid");
        }
    }
}

fn child_main(spec: &Value) {
    use std::io::Write as _;
    // Opened before dropping privileges; outside the protected tree.
    let mut out = fs::File::create(s(spec, "out")).expect("create result file");
    if let Some(uid) = spec.get("uid").and_then(Value::as_u64) {
        drop_privileges(uid as u32);
    }
    let mut res = serde_json::Map::new();
    res.insert("pid".into(), json!(std::process::id()));
    // SAFETY: no preconditions.
    res.insert("euid".into(), json!(unsafe { libc::geteuid() }));
    let exit_now = s(spec, "op") == "read_then_exit";
    child_op(spec, &mut res);
    out.write_all(Value::Object(res).to_string().as_bytes()).expect("write result");
    drop(out);
    if exit_now {
        // Exits with the protected file still open: the kernel closes it, not close(2).
        // SAFETY: terminates the process.
        unsafe { libc::_exit(0) };
    }
}

fn child_op(spec: &Value, res: &mut serde_json::Map<String, Value>) {
    let size = spec.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let chunk = spec.get("chunk").and_then(Value::as_u64).unwrap_or(CHUNK as u64) as usize;
    match s(spec, "op") {
        "read" => {
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            res.insert("calls".into(), json!(read_counted(fd, size, chunk)));
            c_close(fd);
            res.insert("fd".into(), json!(fd));
        }
        "read_then_exit" => {
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            res.insert("calls".into(), json!(read_counted(fd, size, chunk)));
            res.insert("fd".into(), json!(fd));
        }
        "read_dirfd" => {
            let dirfd = c_open(s(spec, "dir"), libc::O_RDONLY | libc::O_DIRECTORY);
            let name = CString::new(s(spec, "name")).expect("no NUL");
            // SAFETY: valid dirfd and NUL-terminated name.
            let fd = unsafe { libc::openat(dirfd, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                os_err("openat");
            }
            res.insert("calls".into(), json!(read_counted(fd, size, chunk)));
            c_close(fd);
            c_close(dirfd);
            res.insert("fd".into(), json!(fd));
        }
        "read_o_path" => {
            let pfd = c_open(s(spec, "path"), libc::O_PATH);
            let fd = c_open(&format!("/proc/self/fd/{pfd}"), libc::O_RDONLY);
            c_close(pfd);
            res.insert("calls".into(), json!(read_counted(fd, size, chunk)));
            c_close(fd);
            res.insert("fd".into(), json!(fd));
            res.insert("path_fd".into(), json!(pfd));
        }
        "read_handle" => child_read_handle(spec, size, chunk, res),
        "pread_readv" => {
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            let mut buf = vec![0u8; size];
            let half = size / 2;
            let mut calls = 0u64;
            let mut at = 0;
            while at < half {
                let want = (half - at).min(CHUNK);
                // SAFETY: buf[at..at + want] is in bounds.
                let got = unsafe { libc::pread(fd, buf[at..].as_mut_ptr().cast(), want, at as libc::off_t) };
                assert_eq!(got, want as isize, "pread at {at}: {}", io::Error::last_os_error());
                at += want;
                calls += 1;
            }
            // SAFETY: plain lseek on our fd.
            assert_eq!(unsafe { libc::lseek(fd, half as libc::off_t, libc::SEEK_SET) }, half as libc::off_t);
            while at < size {
                let a = (size - at).min(3000);
                let b = (size - at - a).min(5000);
                let (first, rest) = buf[at..].split_at_mut(a);
                let iov = [
                    libc::iovec { iov_base: first.as_mut_ptr().cast(), iov_len: a },
                    libc::iovec { iov_base: rest.as_mut_ptr().cast(), iov_len: b },
                ];
                // SAFETY: both iovecs point into buf.
                let got = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
                assert_eq!(got, (a + b) as isize, "readv at {at}: {}", io::Error::last_os_error());
                at += a + b;
                calls += 1;
            }
            assert!(buf == pattern(size), "pread/readv read other bytes than the file's");
            c_close(fd);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        "mmap" => {
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            // SAFETY: a fresh private read-only mapping of our fd.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
            if p == libc::MAP_FAILED {
                os_err("mmap");
            }
            // SAFETY: the mapping is `size` bytes long and readable.
            let data = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) };
            assert!(data == pattern(size).as_slice(), "mapped bytes differ from the file's");
            // SAFETY: unmaps what we mapped (drops the mapping's file reference first).
            if unsafe { libc::munmap(p, size) } != 0 {
                os_err("munmap");
            }
            c_close(fd);
            res.insert("fd".into(), json!(fd));
        }
        "sendfile" => {
            let port = n(spec, "port") as u16;
            let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect 127.0.0.1");
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            let mut sent = 0;
            let mut calls = 0u64;
            while sent < size {
                // SAFETY: valid descriptors; offset NULL uses the file position.
                let got = unsafe { libc::sendfile(sock.as_raw_fd(), fd, std::ptr::null_mut(), size - sent) };
                if got <= 0 {
                    os_err(&format!("sendfile returned {got}"));
                }
                sent += got as usize;
                calls += 1;
            }
            c_close(fd);
            drop(sock);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        "splice" => {
            let mut pipe = [0i32; 2];
            // SAFETY: valid array of two ints.
            if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                os_err("pipe2");
            }
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            let mut moved = 0;
            let mut calls = 0u64;
            let mut got_back = Vec::with_capacity(size);
            let mut buf = vec![0u8; 65536];
            while moved < size {
                let want = (size - moved).min(65536);
                // SAFETY: valid descriptors; NULL offsets use the file position.
                let got =
                    unsafe { libc::splice(fd, std::ptr::null_mut(), pipe[1], std::ptr::null_mut(), want, 0) };
                if got <= 0 {
                    os_err(&format!("splice returned {got}"));
                }
                let mut left = got as usize;
                while left > 0 {
                    // SAFETY: buf is 64 KiB.
                    let r = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), left.min(buf.len())) };
                    if r <= 0 {
                        os_err("read pipe");
                    }
                    got_back.extend_from_slice(&buf[..r as usize]);
                    left -= r as usize;
                }
                moved += got as usize;
                calls += 1;
            }
            assert!(got_back == pattern(size), "spliced bytes differ from the file's");
            c_close(fd);
            c_close(pipe[0]);
            c_close(pipe[1]);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        "copy_file_range" => {
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            let dfd = c_open(s(spec, "dst"), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
            let mut copied = 0;
            let mut calls = 0u64;
            while copied < size {
                // SAFETY: valid descriptors; NULL offsets use the file positions.
                let got = unsafe {
                    libc::copy_file_range(
                        fd,
                        std::ptr::null_mut(),
                        dfd,
                        std::ptr::null_mut(),
                        size - copied,
                        0,
                    )
                };
                if got <= 0 {
                    os_err(&format!("copy_file_range returned {got}"));
                }
                copied += got as usize;
                calls += 1;
            }
            c_close(dfd);
            c_close(fd);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        "io_uring_read" => child_io_uring(spec, size, res),
        "aio" => child_aio(spec, size, res),
        "pidfd_getfd" => {
            let (pid, target) = (n(spec, "pid") as libc::c_long, n(spec, "fd") as libc::c_long);
            // SAFETY: plain syscalls on integers.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_long) } as i32;
            if pidfd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOSYS) {
                    res.insert("skip".into(), json!(format!("pidfd_open: {e}")));
                    return;
                }
                panic!("pidfd_open: {e}");
            }
            // SAFETY: as above.
            let fd = unsafe {
                libc::syscall(libc::SYS_pidfd_getfd, pidfd as libc::c_long, target, 0 as libc::c_long)
            } as i32;
            read_from(fd, "pidfd_getfd", pidfd, (size, chunk), res);
        }
        "create_rename" => {
            let path = s(spec, "path");
            let fd = c_open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL);
            let data = pattern(size);
            // SAFETY: data has `size` bytes.
            let got = unsafe { libc::write(fd, data.as_ptr().cast(), size) };
            assert_eq!(got, size as isize, "write: {}", io::Error::last_os_error());
            c_close(fd);
            fs::rename(path, s(spec, "to")).expect("rename out of the tree");
            res.insert("fd".into(), json!(fd));
        }
        "read_unlink" => {
            let path = s(spec, "path");
            let fd = c_open(path, libc::O_RDONLY);
            let mut calls = read_counted(fd, size / 2, chunk);
            fs::remove_file(path).expect("unlink");
            calls += read_counted(fd, size - size / 2, chunk);
            c_close(fd);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        "write_paths" => child_write_paths(spec, res),
        "write_dup" => {
            let (first, second) = (n(spec, "first"), n(spec, "second"));
            let data = pattern(first + second);
            let fd = c_open(s(spec, "path"), libc::O_WRONLY);
            // SAFETY: data has first + second bytes.
            let got = unsafe { libc::write(fd, data.as_ptr().cast(), first) };
            assert_eq!(got, first as isize, "write: {}", io::Error::last_os_error());
            // SAFETY: dup of our fd.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                os_err("dup");
            }
            // SAFETY: data[first..] has `second` bytes.
            let got =
                unsafe { libc::pwrite(dup, data[first..].as_ptr().cast(), second, first as libc::off_t) };
            assert_eq!(got, second as isize, "pwrite: {}", io::Error::last_os_error());
            c_close(dup);
            c_close(fd);
            res.insert("fd".into(), json!(fd));
            res.insert("dup_fd".into(), json!(dup));
        }
        "unrelated" => {
            let files: Vec<&str> =
                spec["files"].as_array().expect("files").iter().map(|v| v.as_str().expect("str")).collect();
            let rounds = n(spec, "rounds");
            let read_all = |files: &[&str]| {
                for f in files {
                    let len = fs::metadata(f).expect("stat unrelated").len() as usize;
                    let ufd = c_open(f, libc::O_RDONLY);
                    read_counted(ufd, len, 65536);
                    c_close(ufd);
                }
            };
            // Before any protected open (the process is not tracked yet)…
            for _ in 0..rounds {
                read_all(&files);
            }
            let fd = c_open(s(spec, "path"), libc::O_RDONLY);
            let mut calls = read_counted(fd, size / 2, chunk);
            // …and while a protected file is open (descriptors of unrelated files are looked up).
            for _ in 0..rounds {
                read_all(&files);
            }
            calls += read_counted(fd, size - size / 2, chunk);
            c_close(fd);
            res.insert("calls".into(), json!(calls));
            res.insert("fd".into(), json!(fd));
        }
        other => panic!("unknown child op {other:?}"),
    }
}

/// `struct file_handle` with room for `MAX_HANDLE_SZ` (128) bytes.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

fn child_read_handle(spec: &Value, size: usize, chunk: usize, res: &mut serde_json::Map<String, Value>) {
    let path = CString::new(s(spec, "path")).expect("no NUL");
    let mut fh = FileHandle { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: i32 = 0;
    // SAFETY: valid path, handle buffer of the size announced, and mount id pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            path.as_ptr(),
            &raw mut fh,
            &raw mut mount_id,
            0,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) {
            res.insert("skip".into(), json!(format!("name_to_handle_at: {e}")));
            return;
        }
        panic!("name_to_handle_at: {e}");
    }
    let mfd = c_open(s(spec, "mount"), libc::O_RDONLY | libc::O_DIRECTORY);
    // SAFETY: valid mount fd and the handle filled in above.
    let fd = unsafe {
        libc::syscall(libc::SYS_open_by_handle_at, mfd, &raw mut fh, libc::O_RDONLY | libc::O_CLOEXEC)
    } as i32;
    read_from(fd, "open_by_handle_at", mfd, (size, chunk), res);
}

/// The descriptor `fd` that `call` returned: reads it whole, then closes it and the helper
/// descriptor `aux` it came through.
fn read_from(
    fd: i32,
    call: &str,
    aux: i32,
    (size, chunk): (usize, usize),
    res: &mut serde_json::Map<String, Value>,
) {
    if fd < 0 {
        os_err(call);
    }
    res.insert("calls".into(), json!(read_counted(fd, size, chunk)));
    // `read_counted` checked that the reads returned `size` bytes in all.
    res.insert("bytes".into(), json!(size));
    c_close(fd);
    c_close(aux);
    res.insert("fd".into(), json!(fd));
}

/// Writes `SEG`-byte segments into the protected file through every write path but plain
/// write(2): writev, pwritev, splice from a pipe, copy_file_range and sendfile from a file
/// outside the tree, and an io_uring write request. Reports the calls that moved bytes.
fn child_write_paths(spec: &Value, res: &mut serde_json::Map<String, Value>) {
    const SEG: usize = 10_000;
    let data = pattern(6 * SEG);
    let fd = c_open(s(spec, "path"), libc::O_WRONLY);
    let src = c_open(s(spec, "src"), libc::O_RDONLY);
    let mut calls = 0u64;
    let mut at = 0usize;
    // writev and pwritev: one call each, two iovecs.
    for positioned in [false, true] {
        let (a, b) = data[at..at + SEG].split_at(SEG / 2);
        let iov = [
            libc::iovec { iov_base: a.as_ptr() as *mut _, iov_len: a.len() },
            libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() },
        ];
        // SAFETY: both iovecs point into `data`.
        let got = unsafe {
            if positioned {
                libc::pwritev(fd, iov.as_ptr(), 2, at as libc::off_t)
            } else {
                libc::writev(fd, iov.as_ptr(), 2)
            }
        };
        assert_eq!(got, SEG as isize, "writev/pwritev: {}", io::Error::last_os_error());
        at += SEG;
        calls += 1;
    }
    // SAFETY: plain lseek past the pwritev segment (pwritev leaves the position alone).
    assert_eq!(unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_SET) }, at as libc::off_t);
    // splice: the segment goes through a pipe.
    let mut pipe = [0i32; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        os_err("pipe2");
    }
    // SAFETY: data[at..] has SEG bytes; a pipe holds 64 KiB.
    assert_eq!(unsafe { libc::write(pipe[1], data[at..].as_ptr().cast(), SEG) }, SEG as isize);
    let mut moved = 0;
    while moved < SEG {
        // SAFETY: valid descriptors; NULL offsets use the positions.
        let got =
            unsafe { libc::splice(pipe[0], std::ptr::null_mut(), fd, std::ptr::null_mut(), SEG - moved, 0) };
        if got <= 0 {
            os_err("splice into the file");
        }
        moved += got as usize;
        calls += 1;
    }
    at += SEG;
    c_close(pipe[0]);
    c_close(pipe[1]);
    // copy_file_range and sendfile from the source (which holds the same pattern).
    for use_sendfile in [false, true] {
        let mut moved = 0;
        while moved < SEG {
            let mut off = (at + moved) as libc::off_t;
            // SAFETY: valid descriptors and offset.
            let got = unsafe {
                if use_sendfile {
                    libc::sendfile(fd, src, &mut off, SEG - moved)
                } else {
                    libc::copy_file_range(src, &mut off, fd, std::ptr::null_mut(), SEG - moved, 0)
                }
            };
            if got <= 0 {
                os_err(if use_sendfile { "sendfile into the file" } else { "copy_file_range into the file" });
            }
            moved += got as usize;
            calls += 1;
        }
        at += SEG;
    }
    // io_uring: one write request at the end.
    {
        use io_uring::{IoUring, opcode, types};
        let mut ring = IoUring::new(4).unwrap_or_else(|e| panic!("io_uring_setup: {e}"));
        let e = opcode::Write::new(types::Fd(fd), data[at..].as_ptr(), SEG as u32).offset(at as u64).build();
        // SAFETY: the buffer outlives the completion waited for here.
        unsafe { ring.submission().push(&e) }.expect("submission queue full");
        ring.submit_and_wait(1).expect("io_uring_enter");
        let got = ring.completion().next().expect("a completion").result();
        assert_eq!(got, SEG as i32, "io_uring write: {}", io::Error::from_raw_os_error(-got));
        calls += 1;
        at += SEG;
    }
    c_close(src);
    c_close(fd);
    res.insert("calls".into(), json!(calls));
    res.insert("bytes".into(), json!(at));
    res.insert("fd".into(), json!(fd));
}

fn child_io_uring(spec: &Value, size: usize, res: &mut serde_json::Map<String, Value>) {
    use io_uring::{IoUring, opcode, types};
    let mut ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP)) => {
            res.insert("skip".into(), json!(format!("io_uring_setup: {e}")));
            return;
        }
        Err(e) => panic!("io_uring_setup: {e}"),
    };
    let mut submit = |entry: io_uring::squeue::Entry| -> i32 {
        // SAFETY: every buffer and path the entry points to outlives the completion waited for here.
        unsafe { ring.submission().push(&entry) }.expect("submission queue full");
        ring.submit_and_wait(1).expect("io_uring_enter");
        ring.completion().next().expect("a completion").result()
    };
    let path = CString::new(s(spec, "path")).expect("no NUL");
    let fd = if spec["open_with_uring"].as_bool() == Some(true) {
        let e = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .flags(libc::O_RDONLY | libc::O_CLOEXEC)
            .build()
            .user_data(1);
        let fd = submit(e);
        assert!(fd >= 0, "io_uring openat: {}", io::Error::from_raw_os_error(-fd));
        fd
    } else {
        c_open(s(spec, "path"), libc::O_RDONLY)
    };
    let mut buf = vec![0u8; size];
    let mut at = 0;
    let mut reqs = 0u64;
    while at < size {
        let want = (size - at).min(65536);
        let e = opcode::Read::new(types::Fd(fd), buf[at..].as_mut_ptr(), want as u32)
            .offset(at as u64)
            .build()
            .user_data(2);
        let got = submit(e);
        assert!(got > 0, "io_uring read at {at}: {}", io::Error::from_raw_os_error(-got));
        at += got as usize;
        reqs += 1;
    }
    assert!(buf == pattern(size), "io_uring read other bytes than the file's");
    // Closed with close(2) while the ring is still alive, then the ring goes.
    c_close(fd);
    drop(ring);
    res.insert("calls".into(), json!(reqs));
    res.insert("fd".into(), json!(fd));
}

/// `struct iocb` (include/uapi/linux/aio_abi.h).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

fn child_aio(spec: &Value, size: usize, res: &mut serde_json::Map<String, Value>) {
    const IOCB_CMD_PREAD: u16 = 0;
    const IOCB_CMD_PWRITE: u16 = 1;
    const CHUNK: usize = 65536;
    let direct = spec["direct"].as_bool() == Some(true);
    let write = spec["write"].as_bool() == Some(true);
    let path = CString::new(s(spec, "path")).expect("no NUL");
    let access = if write { libc::O_WRONLY } else { libc::O_RDONLY };
    let flags = access | libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 };
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if direct && e.raw_os_error() == Some(libc::EINVAL) {
            res.insert("skip".into(), json!(format!("O_DIRECT open: {e}")));
            return;
        }
        panic!("open: {e}");
    }
    let mut ctx: u64 = 0;
    // SAFETY: io_setup writes the context id to `ctx`.
    if unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut ctx) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            res.insert("skip".into(), json!(format!("io_setup: {e}")));
            return;
        }
        panic!("io_setup: {e}");
    }
    // One request per 64 KiB, all submitted at once, into a 4096-aligned buffer (O_DIRECT).
    let chunks = size.div_ceil(CHUNK);
    let mut raw = vec![0u8; chunks * CHUNK + 4096];
    let start = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[start..start + chunks * CHUNK];
    if write {
        buf[..size].copy_from_slice(&pattern(size));
    }
    let mut iocbs: Vec<Iocb> = (0..chunks)
        .map(|i| Iocb {
            data: i as u64,
            opcode: if write { IOCB_CMD_PWRITE } else { IOCB_CMD_PREAD },
            fildes: fd as u32,
            buf: buf[i * CHUNK..].as_mut_ptr() as u64,
            // O_DIRECT reads whole blocks: the last request asks past the end and gets less.
            nbytes: if direct { CHUNK } else { CHUNK.min(size - i * CHUNK) } as u64,
            offset: (i * CHUNK) as i64,
            ..Iocb::default()
        })
        .collect();
    let ptrs: Vec<*mut Iocb> = iocbs.iter_mut().map(|c| c as *mut Iocb).collect();
    // SAFETY: the iocbs and the buffer outlive the completions reaped below.
    let n = unsafe { libc::syscall(libc::SYS_io_submit, ctx, chunks as libc::c_long, ptrs.as_ptr()) };
    assert_eq!(n, chunks as libc::c_long, "io_submit: {}", io::Error::last_os_error());
    let mut events = [[0i64; 4]; 8];
    let (mut reaped, mut total) = (0, 0usize);
    while reaped < chunks {
        // SAFETY: `events` holds 8 `struct io_event`.
        let got = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                ctx,
                1 as libc::c_long,
                8 as libc::c_long,
                events.as_mut_ptr(),
                0usize,
            )
        };
        assert!(got > 0, "io_getevents: {}", io::Error::last_os_error());
        for ev in &events[..got as usize] {
            assert!(
                ev[2] > 0,
                "AIO read request {} failed: {}",
                ev[0],
                io::Error::from_raw_os_error(-ev[2] as i32)
            );
            total += ev[2] as usize;
        }
        reaped += got as usize;
    }
    assert_eq!(total, size, "AIO moved {total} bytes of {size}");
    assert!(write || buf[..size] == pattern(size), "AIO read other bytes than the file's");
    // SAFETY: the context made above; nothing is in flight.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    c_close(fd);
    res.insert("calls".into(), json!(chunks));
    res.insert("fd".into(), json!(fd));
}
