//! Who asks, from the kernel's subject map (kernel half: `sensor-ebpf/src/subject.rs`): one
//! map lookup per permission event instead of reading `/proc/<pid>/status`, `loginuid`,
//! `sessionid` and `exe`. A process without an entry (the map was full, a read failed in
//! the kernel) is read from `/proc` by the caller.
use std::{num::NonZeroUsize, path::PathBuf, sync::Mutex};

use aya::maps::{HashMap as BpfHashMap, MapData};
use lru::LruCache;
use sensor_common::event::subject::Subject as KernelSubject;

use super::Subject;

/// Executable paths remembered.
const EXES: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// `BPF_NOEXIST`: insert only when the key is absent.
const BPF_NOEXIST: u64 = 1;

/// An image: (device, inode, exec time, tgid when the executable is unknown). An exec makes
/// a new key, so a cached path is never that of another file reusing the inode.
type ImageKey = (u32, u64, u64, u32);

/// The subject map and the executable paths of the images it names.
pub struct Subjects {
    map: BpfHashMap<MapData, u32, KernelSubject>,
    exes: Mutex<LruCache<ImageKey, Option<PathBuf>>>,
}

impl Subjects {
    pub fn new(map: BpfHashMap<MapData, u32, KernelSubject>) -> Self {
        Self { map, exes: Mutex::new(LruCache::new(EXES)) }
    }

    /// Entries for the processes that were running before the programs were attached, from
    /// `/proc`. An entry the kernel wrote in the meantime (fork, exec, a credential change)
    /// is kept: it is newer than what `/proc` showed. Returns how many were added.
    pub fn seed(&mut self) -> usize {
        let now = boottime_ns();
        let mut added = 0;
        for p in procfs::process::all_processes().into_iter().flatten().flatten() {
            let (Ok(status), Some(task)) = (p.status(), crate::proctable::task_of(&p)) else { continue };
            let entry = KernelSubject { task, fsuid: status.fuid, exe_dev: 0, exe_ino: 0, image_ns: now };
            if self.map.insert(task.tgid, entry, BPF_NOEXIST).is_ok() {
                added += 1;
            }
        }
        added
    }

    /// `pid`'s entry, with its executable's path (read once per image).
    pub fn get(&self, pid: u32) -> Option<Subject> {
        let s = self.map.get(&pid, 0).ok()?;
        let unknown = if s.exe_ino == 0 { pid } else { 0 };
        let key: ImageKey = (s.exe_dev, s.exe_ino, s.image_ns, unknown);
        let cached = self.exes.lock().ok().and_then(|mut c| c.get(&key).cloned());
        let exe = match cached {
            Some(exe) => exe,
            None => {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                if let Ok(mut c) = self.exes.lock() {
                    c.put(key, exe.clone());
                }
                exe
            }
        };
        Some(Subject { task: s.task, fsuid: s.fsuid, exe })
    }
}

/// `CLOCK_BOOTTIME` in ns, the kernel's `bpf_ktime_get_boot_ns`.
fn boottime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
