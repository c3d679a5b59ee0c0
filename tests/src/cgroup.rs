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

/// A protected tree holding one file of `size` bytes, an unprotected directory holding
/// `public.txt` of the same size, and a sensor whose policy protects the tree and has the
/// `egress:` section `egress` (indented below it), with the egress programs on `cg`.
pub struct EgressSetup {
    pub file: PathBuf,
    pub public: PathBuf,
    pub outside: crate::TempDir,
    pub sensor: crate::Sensor,
    // Dropped after the sensor.
    _protected: crate::TempDir,
    _conf: crate::TempDir,
}

impl EgressSetup {
    /// `env`: extra environment variables of the sensor.
    pub fn start(cg: &Cgroup, size: usize, egress: &str, env: &[(&str, &str)]) -> Self {
        let protected = crate::TempDir::new("protected");
        let file = protected.write("mynumber.csv", vec![b'7'; size]);
        let outside = crate::TempDir::new("outside");
        let public = outside.write("public.txt", vec![b'p'; size]);
        let conf = crate::TempDir::new("conf");
        let policy = conf.write(
            "policy.yaml",
            format!(
                "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: egress}}\nspec:\n  mode: audit\n  protect: [{{path: {}}}]\n  default: {{action: audit, severity: low}}\n  egress:\n{egress}",
                path_str(protected.path())
            ),
        );
        let config = conf.write("config.yaml", format!("egress_cgroup: {}\n", path_str(&cg.path)));
        let sensor =
            crate::Sensor::start_env(&["--config", path_str(&config), "--policy", path_str(&policy)], env);
        Self { file, public, outside, sensor, _protected: protected, _conf: conf }
    }
}
