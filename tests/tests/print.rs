//! Printing: a protected file submitted to a CUPS queue with `lp` by an unprivileged user
//! gives one `detection.print` with the user, the file and the job; an unprotected file
//! gives none.
//!
//! The test runs its own cupsd in the foreground with its own configuration, state and spool
//! directories in a temp dir, listening only on a unix socket there, with one raw queue on
//! the built-in `file:` device (`FileDevice Yes`): no system service, no network. The daemon
//! is killed by its pid on drop, also on failure. The egress programs attach only to a child
//! cgroup.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use mnsensor_tests::{
    ChildGuard, TempDir,
    cgroup::{Cgroup, EgressSetup},
    find_tool, get_str, get_str_array, get_u64, is, path_str, run_capture, scaled, show,
};

/// A private cupsd and its queue `q`.
struct Cups {
    socket: PathBuf,
    spool: PathBuf,
    _daemon: ChildGuard,
    // Last: removed after the daemon is gone.
    _dir: TempDir,
}

impl Cups {
    fn start() -> Self {
        let dir = TempDir::new("cups");
        for d in ["root", "spool/tmp", "state", "cache", "log"] {
            dir.mkdir(d);
        }
        let at = |p: &str| path_str(&dir.join(p)).to_owned();
        let files = dir.write(
            "cups-files.conf",
            format!(
                "FileDevice Yes\nServerRoot {}\nRequestRoot {}\nStateDir {}\nCacheDir {}\nTempDir {}\nErrorLog {}\nAccessLog {}\nPageLog {}\nGroup lp\nSystemGroup root\n",
                at("root"),
                at("spool"),
                at("state"),
                at("cache"),
                at("spool/tmp"),
                at("log/error_log"),
                at("log/access_log"),
                at("log/page_log"),
            ),
        );
        let socket = dir.join("cups.sock");
        let conf = dir.write(
            "cupsd.conf",
            format!(
                "Listen {}\nLogLevel info\nWebInterface No\nBrowsing No\nDefaultAuthType None\n<Location />\n  Order allow,deny\n  Allow all\n</Location>\n<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n",
                path_str(&socket)
            ),
        );
        let mut cmd = Command::new(find_tool("cupsd"));
        cmd.arg("-f").arg("-c").arg(&conf).arg("-s").arg(&files).stdout(Stdio::null()).stderr(Stdio::null());
        let daemon = ChildGuard::spawn(&mut cmd);
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "cupsd did not listen on {}: {}", socket.display(), log(&dir));
        let out = dir.join("out.prn");
        let add = run_capture(
            Command::new(find_tool("lpadmin"))
                .arg("-h")
                .arg(&socket)
                .args(["-p", "q", "-E", "-v"])
                .arg(format!("file://{}", path_str(&out))),
            scaled(Duration::from_secs(30)),
        );
        assert!(add.status.success(), "lpadmin: {} {}", add.stderr, log(&dir));
        Self { socket, spool: dir.join("spool"), _daemon: daemon, _dir: dir }
    }

    /// Job data files in the spool directory.
    fn data_files(&self) -> BTreeSet<String> {
        fs::read_dir(&self.spool)
            .expect("spool dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('d'))
            .collect()
    }

    /// Submits `file` to queue `q` with `lp` as user `uid` in `cg`; returns the new job data
    /// file.
    fn print(&self, cg: &Cgroup, uid: u32, file: &Path) -> String {
        let before = self.data_files();
        let code = cg.run(&format!(
            "{} --reuid={uid} --regid={uid} --clear-groups lp -h {} -d q {}",
            path_str(&find_tool("setpriv")),
            path_str(&self.socket),
            path_str(file)
        ));
        assert_eq!(code, 0, "lp {}", file.display());
        for _ in 0..100 {
            if let Some(new) = self.data_files().difference(&before).next() {
                return new.clone();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("no job data file appeared in {}", self.spool.display());
    }
}

fn log(dir: &TempDir) -> String {
    fs::read_to_string(dir.join("log/error_log")).unwrap_or_default()
}

const SIZE: usize = 30_000;

#[test]
fn a_protected_file_printed_with_lp_is_detected_and_an_unprotected_one_is_not() {
    let cg = Cgroup::new();
    let cups = Cups::start();
    let egress = format!("    action: alert\n    print: {{spool: [{}]}}\n", path_str(&cups.spool));
    let mut s = EgressSetup::start(&cg, SIZE, &egress, &[]);
    let (file, public) = (s.file.clone(), s.public.clone());

    // Unprotected first: the server is not tainted yet.
    // A user without privileges submits both (the files are world-readable, the server's
    // socket is open to every local user).
    let user = 65534;
    let public_job = cups.print(&cg, user, &public);
    let job = cups.print(&cg, user, &file);
    let number: u64 = job.trim_start_matches('d').split('-').next().unwrap().parse().unwrap();
    let d = s.sensor.wait_for("print of the protected file", |e| is(e, "detection.print"));
    let source = fs::metadata(&file).unwrap();
    assert_eq!(get_str(&d, "mnsensor.process.comm"), "lp", "{}", show(&d));
    assert_eq!(get_u64(&d, "process.real_user.id"), u64::from(user), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.origin.user.id"), u64::from(user), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.file.inode"), source.ino(), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.bytes_read"), source.len(), "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.print.job"), number, "{}", show(&d));
    let spooled = path_str(&cups.spool.join(&job)).to_owned();
    assert_eq!(get_str_array(&d, "mnsensor.print.spool_files"), vec![spooled], "{}", show(&d));
    if let Some(q) = d.get("mnsensor.print.queue") {
        assert_eq!(q, "q", "{}", show(&d));
    }

    thread::sleep(scaled(Duration::from_secs(4)));
    assert_eq!(
        s.sensor.matching(|e| is(e, "detection.print")).len(),
        1,
        "one detection for one protected job"
    );
    s.sensor.assert_none("the unprotected job", |e| {
        is(e, "detection.print") && show(e).contains(&format!("/{public_job}"))
    });
    s.sensor.stop();
}
