//! A cgroup v2 child the egress programs attach to in tests (never the root), and the
//! processes of a test run in. Removed on drop.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use crate::{path_str, test_pid};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 child directory.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new() -> Self {
        let root = if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        let path =
            root.join(format!("mnsensor-test.{}.c{}", test_pid(), NEXT.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// Runs `script` with sh inside this cgroup and returns its exit code. Its output goes
    /// to /dev/null: reading what a tainted process wrote would taint this test process (and
    /// every later child of it), which is the point of the sensor.
    pub fn run(&self, script: &str) -> i32 {
        let procs = self.path.join("cgroup.procs");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && {script}", path_str(&procs)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        eprintln!("{script}: {status:?}");
        status.code().unwrap_or(-1)
    }
}

impl Default for Cgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: cgroup {} not removed", self.path.display());
    }
}
