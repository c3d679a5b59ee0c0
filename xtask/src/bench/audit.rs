//! auditd as a peer: `-w DIR -p rwa` on the protected directory, only during its configuration.
//!
//! Once audit has been enabled, every new process gets an audit context and pays for it on
//! every syscall, even with no rules (shared/reference/performance.md §4.5). So while this
//! guard lives, the other configurations run under `-a never,task`, which is what a machine
//! that never enabled audit looks like. Only rules added here are removed: the watch carries
//! the key `mnsensor-bench`; `never,task` (which takes no key) is added, and later deleted, only
//! if it was not there already. The enabled flag, backlog limit and wait time are restored, and
//! an auditd started here is stopped by its PID.
use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::host;
use crate::{
    apt,
    cmd::{output, probe, step},
};

const KEY: &str = "mnsensor-bench";

/// Whether `auditctl` runs here.
pub fn installed() -> bool {
    probe(Command::new("auditctl").arg("-v")).ok().flatten().is_some()
}

pub fn install() -> Result<()> {
    apt::install_missing(&["auditd"]).map(drop)
}

#[derive(Clone, Copy, Debug)]
struct Status {
    enabled: u32,
    pid: u32,
    backlog_limit: u32,
    backlog_wait_time: u32,
}

fn status() -> Result<Status> {
    let out = output(Command::new("auditctl").arg("-s"))?;
    let get = |key: &str| -> Result<u32> {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("`auditctl -s` printed no `{key}`"))
    };
    Ok(Status {
        enabled: get("enabled")?,
        pid: get("pid")?,
        backlog_limit: get("backlog_limit")?,
        backlog_wait_time: get("backlog_wait_time")?,
    })
}

fn auditctl(args: &[&str]) -> Result<()> {
    output(Command::new("auditctl").args(args)).map(drop)
}

/// `auditctl ARGS`, where failure means the rule was not there.
fn auditctl_quiet(args: &[&str]) {
    let _ = probe(Command::new("auditctl").args(args));
}

pub struct Audit {
    saved: Status,
    dir: PathBuf,
    /// The auditd this guard started, if any.
    started: Option<u32>,
    watching: bool,
    /// `-a never,task` was there before us: never delete it.
    never_task_preexisting: bool,
}

impl Audit {
    /// Starts auditd unless one is registered with the kernel, then adds `-a never,task`.
    pub fn start(dir: &Path) -> Result<Self> {
        let saved = status()?;
        let rules = output(Command::new("auditctl").arg("-l"))?;
        let never_task_preexisting = rules.lines().any(|l| l.trim() == "-a never,task");
        let mut audit =
            Self { saved, dir: dir.to_owned(), started: None, watching: false, never_task_preexisting };
        if saved.pid == 0 {
            step("bench: starting auditd");
            let daemon = ["/usr/sbin/auditd", "/sbin/auditd"].into_iter().find(|p| Path::new(p).exists());
            crate::cmd::run(&mut Command::new(daemon.context("auditctl is installed but auditd is not")?))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pid = status()?.pid;
                if pid != 0 {
                    audit.started = Some(pid);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("auditd did not register with the kernel within 10 s (see /var/log/audit/)");
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        // auditd enables audit when it starts; the other configurations run as found.
        audit.restore_status()?;
        audit.never_task_on()?;
        Ok(audit)
    }

    /// The auditd configuration: the watch, audit enabled, a large backlog (as in the study).
    pub fn watch_on(&mut self) -> Result<()> {
        let dir = self.dir.to_string_lossy().into_owned();
        self.never_task_off();
        self.watching = true;
        auditctl(&["-b", "8192"])?;
        auditctl(&["--backlog_wait_time", "60000"])?;
        auditctl(&["-w", &dir, "-p", "rwa", "-k", KEY])?;
        auditctl(&["-e", "1"])
    }

    /// Back to the state of the other configurations.
    pub fn watch_off(&mut self) -> Result<()> {
        self.remove_rules();
        self.restore_status()?;
        self.never_task_on()
    }

    fn never_task_on(&self) -> Result<()> {
        if self.never_task_preexisting { Ok(()) } else { auditctl(&["-a", "never,task"]) }
    }

    fn never_task_off(&self) {
        if !self.never_task_preexisting {
            auditctl_quiet(&["-d", "never,task"]);
        }
    }

    /// CPU of auditd and kauditd so far, in ns.
    pub fn cpu_ns(&self) -> u64 {
        let pids = [host::pids_named("auditd"), host::pids_named("kauditd")].concat();
        pids.into_iter().filter_map(|p| host::cpu_ns(p).ok()).sum()
    }

    fn remove_rules(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        if self.watching {
            auditctl_quiet(&["-W", &dir, "-p", "rwa", "-k", KEY]);
            self.watching = false;
        }
        self.never_task_off();
    }

    fn restore_status(&self) -> Result<()> {
        auditctl(&["-e", &self.saved.enabled.to_string()])?;
        auditctl(&["-b", &self.saved.backlog_limit.to_string()])?;
        auditctl(&["--backlog_wait_time", &self.saved.backlog_wait_time.to_string()])
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.remove_rules();
        if let Err(e) = self.restore_status() {
            eprintln!("xtask: bench: could not restore the audit status: {e:#}");
        }
        if let Some(pid) = self.started {
            // SAFETY: plain kill of the auditd this guard started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
            step(format!("bench: stopped auditd (pid {pid})"));
        }
    }
}
