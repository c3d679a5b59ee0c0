//! What the sensor knows about each live process: executable, command line, parent.
//!
//! Seeded from `/proc` at start so that processes older than the sensor are attributed,
//! then kept current by exec, fork and exit records. Bounded by an LRU so a fork storm
//! cannot grow it without limit; exited processes stay until evicted, so late records (a
//! connection closing after its process exited) are still attributed.
use std::{num::NonZeroUsize, sync::Arc};

use lru::LruCache;

/// Most processes remembered.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// Where a process's executable and command line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// Seen exec'ing by the sensor (or forked from such a process).
    Exec,
    /// Read from `/proc` because it predates the sensor (or was missed).
    Procfs,
}

impl Attribution {
    /// The `mnsensor.process.attribution` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Procfs => "procfs",
        }
    }
}

/// One process.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub exe: Option<Arc<str>>,
    pub args: Arc<[String]>,
    pub attribution: Attribution,
}

/// The table.
pub struct ProcTable {
    procs: LruCache<u32, ProcInfo>,
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
                self.procs.put(p.pid as u32, info);
                n += 1;
            }
        }
        n
    }

    /// A process exec'd.
    pub fn exec(&mut self, tgid: u32, exe: Arc<str>, args: Arc<[String]>) {
        self.procs.put(tgid, ProcInfo { exe: Some(exe), args, attribution: Attribution::Exec });
    }

    /// `child` was forked from `parent` and runs the same program.
    pub fn fork(&mut self, parent: u32, child: u32) {
        if let Some(info) = self.get(parent).cloned() {
            self.procs.put(child, info);
        }
    }

    /// What is known about `tgid`; reads `/proc/<tgid>` on a miss.
    pub fn get(&mut self, tgid: u32) -> Option<&ProcInfo> {
        if !self.procs.contains(&tgid) {
            let info = procfs::process::Process::new(tgid as i32).ok().and_then(|p| read_proc(&p))?;
            self.procs.put(tgid, info);
        }
        self.procs.get(&tgid)
    }
}

fn read_proc(p: &procfs::process::Process) -> Option<ProcInfo> {
    let exe = p.exe().ok().map(|e| Arc::from(e.to_string_lossy().as_ref()));
    let args: Arc<[String]> = p.cmdline().unwrap_or_default().into();
    // Kernel threads have neither; they are still attributed by their kernel fields.
    (exe.is_some() || !args.is_empty()).then_some(ProcInfo { exe, args, attribution: Attribution::Procfs })
}

#[cfg(test)]
mod tests {
    use super::{Attribution, ProcTable};

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
    }
}
