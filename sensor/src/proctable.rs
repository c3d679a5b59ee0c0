//! What the sensor knows about each live process: its program block (executable, command
//! line, attribution, pre-serialised), and the `/proc` readers for processes it has not seen
//! exec.
//!
//! Seeded from `/proc` at start so that processes older than the sensor are attributed,
//! then kept current by exec and fork events (the enrich stage). Bounded by an LRU so a fork
//! storm cannot grow it without limit; exited processes stay until evicted, so late records (a
//! connection closing after its process exited) are still attributed.
use std::{num::NonZeroUsize, sync::Arc};

use lru::LruCache;
use sensor_common::event::Task;

pub use crate::event::subject::{Attribution, Program};

/// Most processes remembered.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// The table.
pub struct ProcTable {
    procs: LruCache<u32, Arc<Program>>,
}

impl Default for ProcTable {
    fn default() -> Self {
        Self { procs: LruCache::new(CAPACITY) }
    }
}

impl ProcTable {
    /// Reads every process in `/proc`; returns how many were recorded.
    pub fn seed(&mut self) -> usize {
        let Ok(all) = procfs::process::all_processes() else {
            return 0;
        };
        let mut n = 0;
        for p in all.flatten() {
            if let Some(info) = read_proc(&p) {
                self.procs.put(p.pid as u32, Arc::new(info));
                n += 1;
            }
        }
        n
    }

    /// A process exec'd `program` (replacing what it ran before).
    pub fn exec(&mut self, tgid: u32, program: Arc<Program>) {
        self.procs.put(tgid, program);
    }

    /// `child` was forked from `parent` and runs the same program.
    pub fn fork(&mut self, parent: u32, child: u32) {
        if let Some(program) = self.get(parent) {
            self.procs.put(child, program);
        }
    }

    /// The program of `tgid`; reads `/proc/<tgid>` on a miss.
    pub fn get(&mut self, tgid: u32) -> Option<Arc<Program>> {
        if let Some(p) = self.procs.get(&tgid) {
            return Some(p.clone());
        }
        let program = Arc::new(procfs::process::Process::new(tgid as i32).ok().and_then(|p| read_proc(&p))?);
        self.procs.put(tgid, program.clone());
        Some(program)
    }
}

fn read_proc(p: &procfs::process::Process) -> Option<Program> {
    let exe: Option<Arc<str>> = p.exe().ok().map(|e| Arc::from(crate::event::path::of_os(&e)));
    let args: Arc<[String]> = p.cmdline().unwrap_or_default().into();
    // Kernel threads have neither; they are still attributed by their kernel fields.
    (exe.is_some() || !args.is_empty()).then(|| Program::new(exe, args, Attribution::Procfs))
}

/// The identity of process `pid` as `/proc` shows it.
pub fn task_of_pid(pid: u32) -> Option<Task> {
    task_of(&procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?)
}

/// The identity of a process as `/proc` shows it.
pub fn task_of(p: &procfs::process::Process) -> Option<Task> {
    let status = p.status().ok()?;
    let mut comm = [0u8; 16];
    for (dst, src) in comm.iter_mut().zip(status.name.bytes().take(15)) {
        *dst = src;
    }
    let sessionid = std::fs::read_to_string(format!("/proc/{}/sessionid", p.pid))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    Some(Task {
        tgid: p.pid as u32,
        tid: p.pid as u32,
        ppid: status.ppid as u32,
        uid: status.ruid,
        gid: status.rgid,
        euid: status.euid,
        egid: status.egid,
        auid: p.loginuid().unwrap_or(u32::MAX),
        sessionid,
        _pad: 0,
        comm,
    })
}

#[cfg(test)]
mod tests {
    use super::{Attribution, ProcTable, task_of_pid};

    #[test]
    fn seeds_self_from_proc() {
        let mut table = ProcTable::default();
        assert!(table.seed() > 0);
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let info = table.get(me).unwrap();
        assert_eq!(info.exe.as_deref(), exe.to_str());
        assert_eq!(info.attribution, Attribution::Procfs);
        table.fork(me, u32::MAX - 1);
        assert_eq!(table.get(u32::MAX - 1).unwrap().exe.as_deref(), exe.to_str());
        let task = task_of_pid(me).unwrap();
        assert_eq!((task.tgid, task.ppid), (me, std::os::unix::process::parent_id()));
    }
}
