//! Process events: exec, fork, exit (kernel half: `sensor-ebpf/src/process.rs`; decoded in
//! `crate::decode`).
use std::sync::Arc;

use super::{Record, Subject, attr, json, subject::write_device};

/// `process.exec`.
#[derive(Clone, Debug)]
pub struct Exec {
    pub subject: Subject,
    pub exe: Arc<str>,
    pub args: Arc<[String]>,
    pub cwd: String,
    /// Kernel-encoded device and inode of the executable.
    pub exe_dev: u32,
    pub exe_ino: u64,
    /// The pid before the exec (a non-leader thread's exec takes over the leader's pid).
    pub old_pid: u32,
}

impl Exec {
    pub fn write(&self, rec: &mut Record) {
        self.subject.write_task(rec);
        match &self.subject.program {
            // Enrich built the program block of this exec: its head is these bytes.
            Some(p) => p.write_head(rec.body()),
            None => super::subject::Program::new(
                Some(self.exe.clone()),
                self.args.clone(),
                super::subject::Attribution::Exec,
            )
            .write_head(rec.body()),
        }
        rec.set(attr::PROCESS_WORKING_DIRECTORY, self.cwd.as_str());
        super::path::write_bytes(rec.body(), attr::PROCESS_WORKING_DIRECTORY_BYTES, &self.cwd);
        rec.set(attr::PROCESS_ATTRIBUTION, "exec");
        write_device(rec.body(), self.exe_dev);
        rec.set(attr::FILE_INODE, self.exe_ino);
        if self.old_pid != self.subject.task.tgid {
            rec.set(attr::PROCESS_PREVIOUS_PID, self.old_pid);
        }
    }
}

/// `process.fork`: the subject is the child (its parent is the task that forked).
#[derive(Clone, Debug)]
pub struct Fork {
    pub subject: Subject,
}

/// `process.exit`.
#[derive(Clone, Debug)]
pub struct Exit {
    pub subject: Subject,
    /// The kernel's `exit_code` (status << 8 or signal).
    pub code: u32,
}

impl Exit {
    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        let signal = self.code & 0x7f;
        let out = rec.body();
        if signal == 0 {
            json::pair(out, attr::PROCESS_EXIT_CODE, &((self.code >> 8) & 0xff));
        } else {
            json::pair(out, attr::PROCESS_EXIT_SIGNAL, &signal);
            json::flag(out, attr::PROCESS_EXIT_CORE_DUMPED, self.code & 0x80 != 0);
        }
    }
}
