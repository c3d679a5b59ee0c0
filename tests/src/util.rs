//! Deadlines, temp dirs, child processes and small syscall helpers.

use std::{
    env,
    ffi::CString,
    fs,
    io::{self, Read as _},
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// Base deadline for the sensor to write `sensor.start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Base deadline for one expected record.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Base deadline for a clean shutdown (detach, flush, exit).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Base deadline for a command that should exit by itself (CLI errors, `--version`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often files and children are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `MNSENSOR_TEST_TIMEOUT_SCALE` (default 1): every deadline is multiplied by it.
pub fn timeout_scale() -> f64 {
    match env::var("MNSENSOR_TEST_TIMEOUT_SCALE") {
        Err(_) => 1.0,
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => f,
            _ => panic!("MNSENSOR_TEST_TIMEOUT_SCALE={s:?} is not a positive number"),
        },
    }
}

/// `base` multiplied by [`timeout_scale`].
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(timeout_scale())
}

/// The Cargo workspace (parent of this package's manifest dir).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The sensor binary: `MNSENSOR_BIN` (absolute) or `<workspace>/target/debug/mnsensor`.
pub fn sensor_bin() -> PathBuf {
    let bin = match env::var_os("MNSENSOR_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_absolute(), "MNSENSOR_BIN must be an absolute path, got {}", p.display());
            p
        }
        None => workspace_root().join("target/debug/mnsensor"),
    };
    assert!(
        bin.is_file(),
        "sensor binary {} not found (build it with `cargo build -p sensor` or set MNSENSOR_BIN)",
        bin.display()
    );
    bin
}

/// True inside the minimal test VM (`MNSENSOR_VM=1`).
pub fn in_vm() -> bool {
    env::var("MNSENSOR_VM").is_ok_and(|v| v == "1")
}

/// The test process's pid (thread-group id).
pub fn test_pid() -> u32 {
    std::process::id()
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("gettid returned a negative id")
}

/// The test process's audit login uid, `None` when unset (4294967295) or unsupported.
pub fn loginuid() -> Option<u32> {
    let s = fs::read_to_string("/proc/self/loginuid").ok()?;
    let uid: u32 = s.trim().parse().expect("/proc/self/loginuid is a number");
    (uid != u32::MAX).then_some(uid)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    let rc = unsafe { libc::uname(&mut uts) };
    assert_eq!(rc, 0, "uname: {}", io::Error::last_os_error());
    // SAFETY: the kernel NUL-terminates the fields.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_str().expect("UTF-8 kernel release").to_owned()
}

/// `major:minor` of a `st_dev` value (glibc's encoding of `dev_t`).
pub fn dev_string(dev: u64) -> String {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    format!("{major}:{minor}")
}

/// Absolute path of a tool found on `PATH` (then `/bin`, `/usr/bin`, `/sbin`, `/usr/sbin`),
/// as found, i.e. not canonicalized.
pub fn find_tool(name: &str) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    let fallback = ["/bin", "/usr/bin", "/sbin", "/usr/sbin"].map(PathBuf::from);
    env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .chain(fallback)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or_else(|| panic!("tool {name:?} not found on PATH or in /bin, /usr/bin"))
}

/// `fs::canonicalize`, panicking with the path.
pub fn canonical(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

/// A path as `&str` (all test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

/// A path as a C string.
pub fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private directory under `std::env::temp_dir()`, canonical, removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/mnsensor-test.<pid>.<n>.<label>`.
    pub fn new(label: &str) -> Self {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = canonical(env::temp_dir());
        let path = base.join(format!("mnsensor-test.{}.{n}.{label}", test_pid()));
        if path.exists() {
            // A leftover of an earlier process that had our pid.
            let _ = fs::remove_dir_all(&path);
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates a directory (and its parents) below the temp dir; returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Writes a file (creating parent dirs) below the temp dir; returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl TempDir {
    /// Keeps the directory (no removal on drop); returns its path. For debugging only
    /// (`MNSENSOR_TEST_KEEP_FAILED`).
    pub fn keep(&mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: removing {}: {e}", self.path.display()),
        }
    }
}

/// A child process started by a test: SIGKILLed and reaped on drop if still running.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` (stdin from /dev/null unless the caller set it).
    pub fn spawn(cmd: &mut Command) -> Self {
        let what = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        Self { child: Some(child), what }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child not yet waited for").id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already waited for")
    }

    /// Waits for the child to exit within `timeout` (scaled by the caller); SIGKILLs it and
    /// panics if it does not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("child already waited for");
        wait_deadline(&mut child, timeout, &self.what)
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("child already waited for");
        child.kill().unwrap_or_else(|e| panic!("killing {}: {e}", self.what));
        child.wait().unwrap_or_else(|e| panic!("reaping {}: {e}", self.what))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Polls `child` until it exits or `timeout` passes; on the deadline SIGKILLs and reaps it,
/// then panics.
pub fn wait_deadline(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}; killed it");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The result of [`run_capture`].
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with stdout and stderr captured (through files, so a child that
/// does not exit can be killed at the deadline without pipe deadlocks). Panics (after a
/// SIGKILL) if it has not exited within `timeout`.
pub fn run_capture(cmd: &mut Command, timeout: Duration) -> Output {
    let dir = TempDir::new("capture");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let out = fs::File::create(&out_path).expect("create stdout file");
    let err = fs::File::create(&err_path).expect("create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let status = {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = read_lossy(&err_path);
                panic!("{what} did not exit within {timeout:?} (killed it); stderr:\n{stderr}");
            }
            thread::sleep(POLL_INTERVAL);
        }
    };
    Output { status, stdout: read_lossy(&out_path), stderr: read_lossy(&err_path) }
}

/// A file's contents as (lossy) UTF-8; empty if it cannot be read.
pub fn read_lossy(p: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Forks the test process; the child calls `_exit(code)` immediately (nothing else, so this
/// is safe in the multi-threaded test process). Returns the child's pid; reap it with
/// [`waitpid_status`].
pub fn fork_and_exit(code: i32) -> u32 {
    // SAFETY: the child only calls the async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        // SAFETY: `_exit` is async-signal-safe.
        0 => unsafe { libc::_exit(code) },
        pid => u32::try_from(pid).expect("positive pid"),
    }
}

/// Reaps `pid` (blocking) and returns the raw wait status.
pub fn waitpid_status(pid: u32) -> i32 {
    let mut status = 0;
    let pid = i32::try_from(pid).expect("pid fits in i32");
    loop {
        // SAFETY: valid pointer to an int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "waitpid({pid}): {e}");
    }
}

/// Sends `sig` to `pid` (a process this test started).
pub fn send_signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pid fits in i32");
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// Creates a FIFO.
pub fn mkfifo(p: &Path) {
    let c = c_path(p);
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}: {}", p.display(), io::Error::last_os_error());
}
