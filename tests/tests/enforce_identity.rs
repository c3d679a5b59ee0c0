//! Enforcement by file identity (docs/policy.md, "Which file a policy protects"): a policy's
//! decision applies to the protected file whatever name reaches it — a hard link made outside
//! the tree before or after start, a bind mount and a second mount of the filesystem made
//! after start, a private mount namespace, and a file created in the tree after start.
//!
//! The test makes its own ext4 filesystem on a loop device (`mkfs.ext4`, `losetup`; in the
//! busybox VM guest a tmpfs instance, see [`OwnFs`]), mounts it, a bind mount and a second
//! mount only inside its own temporary directory, and unmounts and detaches everything on
//! drop, also when an assertion fails. uid 0 is allowed, 65534 (nobody) is denied, so it also
//! runs in the VM matrix (BPF LSM).

use std::{
    fs, io,
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use mnsensor_tests::{
    ChildGuard, Sensor, TempDir, get_str, get_str_array, get_u64, in_vm, is, path_str, pid_of, run_capture,
    scaled, show,
    util::{COMMAND_TIMEOUT, c_path, read_lossy},
};

const NOBODY: u32 = 65534;
const SECRET: &str = "tanaka,123456789018\n";
/// Decisions are never late here: the fail mode (closed) would otherwise hide a wrong allow.
const CONFIG: &str = "enforcement:\n  deadline_ms: 10000\n  fail_mode: closed\n";

/// A tool from the usual system directories, `None` when absent.
fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn run_ok(cmd: &mut Command) -> String {
    let o = run_capture(cmd, scaled(COMMAND_TIMEOUT));
    assert!(o.status.success(), "{cmd:?}: {}\n{}{}", o.status, o.stdout, o.stderr);
    o.stdout
}

/// Mounts made by this test (unmounted in reverse order on drop) and its loop device
/// (detached on drop).
#[derive(Default)]
struct Mounts {
    points: Vec<PathBuf>,
    loop_dev: Option<PathBuf>,
}

impl Mounts {
    fn mount(&mut self, src: &Path, dst: &Path, fstype: Option<&str>, flags: libc::c_ulong) {
        fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
        let (s, d) = (c_path(src), c_path(dst));
        let t = fstype.map(|t| std::ffi::CString::new(t).expect("no NUL"));
        let tp = t.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), tp, flags, std::ptr::null()) };
        assert_eq!(rc, 0, "mount {} on {}: {}", src.display(), dst.display(), io::Error::last_os_error());
        self.points.push(dst.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(p) = self.points.pop() {
            let c = c_path(&p);
            // SAFETY: valid path; a lazy unmount of a mount this test made.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!("warning: umount {}: {}", p.display(), io::Error::last_os_error());
            }
        }
        if let (Some(dev), Some(losetup)) = (self.loop_dev.take(), tool("losetup")) {
            let o = run_capture(Command::new(losetup).arg("-d").arg(&dev), scaled(COMMAND_TIMEOUT));
            if !o.status.success() {
                eprintln!("warning: losetup -d {}: {}", dev.display(), o.stderr);
            }
        }
    }
}

/// The test's own filesystem, mounted at `at`: a fresh ext4 on a loop device, or, in the
/// busybox VM guest (no `mkfs.ext4`, and Debian's kernels build `loop` and `ext4` as modules
/// the guest does not load), a fresh tmpfs instance.
enum OwnFs {
    Ext4(PathBuf),
    Tmpfs,
}

impl OwnFs {
    fn make(dir: &TempDir, mounts: &mut Mounts, at: &Path) -> Self {
        let (Some(mkfs), Some(losetup)) = (tool("mkfs.ext4"), tool("losetup")) else {
            assert!(
                in_vm(),
                "mkfs.ext4 and losetup are needed (cargo xtask setup installs e2fsprogs and mount)"
            );
            mounts.mount(Path::new("tmpfs"), at, Some("tmpfs"), 0);
            return Self::Tmpfs;
        };
        let img = dir.join("fs.img");
        fs::File::create(&img).and_then(|f| f.set_len(32 << 20)).expect("create the image");
        run_ok(Command::new(mkfs).args(["-q", "-F"]).arg(&img));
        let dev = PathBuf::from(run_ok(Command::new(losetup).args(["--find", "--show"]).arg(&img)).trim());
        mounts.loop_dev = Some(dev.clone());
        mounts.mount(&dev, at, Some("ext4"), 0);
        Self::Ext4(dev)
    }

    /// A second mount of the same filesystem (the same superblock) at `at`: the device
    /// mounted again; a tmpfs has no device, so its root (`first`) is mounted again with
    /// `MS_BIND`, which gives the same new mount of the same superblock.
    fn mount_again(&self, mounts: &mut Mounts, first: &Path, at: &Path) {
        match self {
            Self::Ext4(dev) => mounts.mount(dev, at, Some("ext4"), 0),
            Self::Tmpfs => mounts.mount(first, at, None, libc::MS_BIND),
        }
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// What one read did.
struct Read {
    pid: u32,
    ok: bool,
    data: String,
    stderr: String,
}

/// `cat path` as `uid`; with `ns`, first (as root, in a private mount namespace that only the
/// child has) bind-mounts `ns.0` on `ns.1`.
fn cat_as(uid: u32, path: &Path, ns: Option<(&Path, &Path)>) -> Read {
    let files = TempDir::new("cat");
    let (out_path, err_path) = (files.join("stdout"), files.join("stderr"));
    let mut cmd = Command::new(mnsensor_tests::find_tool("cat"));
    cmd.arg(path)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"));
    let bind = ns.map(|(s, d)| (c_path(s), c_path(d)));
    // SAFETY: the closure makes only async-signal-safe system calls on data prepared before
    // the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
            if let Some((src, dst)) = &bind {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let root = c"/";
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(uid, uid, uid))?;
            check(libc::setresuid(uid, uid, uid))
        });
    }
    let mut child = ChildGuard::spawn(&mut cmd);
    let pid = child.pid();
    let status = child.wait_timeout(scaled(COMMAND_TIMEOUT));
    Read { pid, ok: status.success(), data: read_lossy(&out_path), stderr: read_lossy(&err_path) }
}

/// One name of a protected file: read through `path` (after the bind mount `ns` in a private
/// mount namespace), decided as `in_tree`, inode `ino`.
struct Case<'a> {
    what: &'static str,
    path: PathBuf,
    ns: Option<(&'a Path, &'a Path)>,
    in_tree: PathBuf,
    ino: u64,
}

#[test]
fn policy_follows_the_file_under_every_name() {
    let dir = TempDir::new("enforce-identity");
    chmod(dir.path(), 0o755);
    let mut mounts = Mounts::default();
    let m1 = dir.join("m1");
    let own = OwnFs::make(&dir, &mut mounts, &m1);
    let tree = m1.join("tree");
    let out = m1.join("out");
    for d in [&m1, &tree, &out] {
        fs::create_dir_all(d).expect("mkdir");
        chmod(d, 0o755);
    }
    let file = tree.join("ledger.csv");
    fs::write(&file, SECRET).expect("write the protected file");
    chmod(&file, 0o644);
    let before = out.join("before.csv");
    fs::hard_link(&file, &before).expect("hard link before start");
    let pol = dir.mkdir("policies");
    chmod(&pol, 0o755);
    let text = format!(
        "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: identity}}\nspec:\n  mode: enforce\n  \
         protect: [{{path: \"{}\"}}]\n  allow:\n    - name: root-only\n      subjects: [{{uid: 0}}]\n  \
         default: {{action: deny, severity: high}}\n",
        path_str(&tree)
    );
    chmod(&dir.write("policies/p.yaml", text), 0o644);
    let config = dir.write("config.yaml", CONFIG);
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&pol)]);
    let backends = get_str_array(sensor.start_event(), "mnsensor.policy.backends");
    let backend = backends.iter().find_map(|b| b.strip_prefix("identity=")).unwrap_or("none").to_owned();
    assert!(
        ["fanotify", "bpf-lsm", "fmod_ret"].contains(&backend.as_str()),
        "{}",
        show(sensor.start_event())
    );

    // Names made after start.
    let after = out.join("after.csv");
    fs::hard_link(&file, &after).expect("hard link after start");
    let bind = dir.join("bind");
    mounts.mount(&tree, &bind, None, libc::MS_BIND);
    let m2 = dir.join("m2");
    own.mount_again(&mut mounts, &m1, &m2);
    let fresh = tree.join("new.csv");
    fs::write(&fresh, SECRET).expect("write a file after start");
    chmod(&fresh, 0o644);
    let fresh_link = out.join("new-link.csv");
    fs::hard_link(&fresh, &fresh_link).expect("hard link to the new file");
    let ns_point = dir.mkdir("ns");

    let ino = fs::metadata(&file).expect("stat").ino();
    let fresh_ino = fs::metadata(&fresh).expect("stat").ino();
    let case = |what, path: &Path, ns, in_tree: &Path, ino| Case {
        what,
        path: path.to_path_buf(),
        ns,
        in_tree: in_tree.to_path_buf(),
        ino,
    };
    let cases = [
        case("the file in the tree", &file, None, &file, ino),
        case("a hard link made outside the tree before start", &before, None, &file, ino),
        case("a hard link made outside the tree after start", &after, None, &file, ino),
        case("a bind mount made after start", &bind.join("ledger.csv"), None, &file, ino),
        case(
            "a second mount of the filesystem made after start",
            &m2.join("tree/ledger.csv"),
            None,
            &file,
            ino,
        ),
        case(
            "a bind mount in a private mount namespace",
            &ns_point.join("ledger.csv"),
            Some((&tree, &ns_point)),
            &file,
            ino,
        ),
        case("a file created in the tree after start", &fresh, None, &fresh, fresh_ino),
        case("a hard link to the file created after start", &fresh_link, None, &fresh, fresh_ino),
    ];
    for Case { what, path, ns, in_tree, ino } in &cases {
        let allowed = cat_as(0, path, *ns);
        assert!(
            allowed.ok && allowed.data == SECRET,
            "{what}: root (allowed) could not read: {}",
            allowed.stderr
        );
        let denied = cat_as(NOBODY, path, *ns);
        assert!(
            !denied.ok && denied.data.is_empty() && denied.stderr.contains("Operation not permitted"),
            "{what}: uid {NOBODY} (denied) was not refused: ok={} data={:?} stderr={}",
            denied.ok,
            denied.data,
            denied.stderr
        );
        let d = sensor.wait_for(&format!("{what}: the deny decision"), |e| {
            is(e, "policy.decision") && pid_of(e) == Some(denied.pid)
        });
        let ctx = format!("{what}: {}", show(&d));
        assert_eq!(get_str(&d, "mnsensor.decision"), "deny", "{ctx}");
        assert_eq!(get_str(&d, "mnsensor.policy.name"), "identity", "{ctx}");
        assert_eq!(get_u64(&d, "process.user.id"), u64::from(NOBODY), "{ctx}");
        assert_eq!(get_u64(&d, "file.inode"), *ino, "{ctx}");
        if backend == "fanotify" {
            // The decision is about the protected file, named as in the tree.
            assert_eq!(get_str(&d, "file.path"), path_str(in_tree), "{ctx}");
        }
    }
    sensor.assert_none("a decision for root", |e| {
        is(e, "policy.decision") && get_u64(e, "process.user.id") == 0
    });
    sensor.stop();
}
