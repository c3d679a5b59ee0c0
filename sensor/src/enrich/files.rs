//! What the enrich stage remembers about files between events: the tracked open files (for
//! the close that names no path, and for closes the daemon writes itself), recent closes and
//! recent kernel change records. The fanotify watcher (`crate::watch`) asks it whether the
//! kernel records already account for what fanotify saw.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::event::Name;

/// How long closes and kernel change records are remembered for the fanotify observer.
const RECENT: Duration = Duration::from_secs(5);
/// Most closers remembered per file.
const MAX_CLOSERS: usize = 16;
/// Most files (closes) and changes remembered.
const MAX_RECENT: usize = 1 << 18;
/// Most open protected files remembered (the kernel's `TRACKED` map holds 65,536).
pub const MAX_OPEN_FILES: usize = 65_536;

/// What is remembered about a tracked open file.
#[derive(Clone, Debug)]
pub struct OpenFile {
    pub path: String,
    pub protected: Option<Arc<str>>,
    /// tgid of the opener.
    pub opener: u32,
    pub dev: u32,
    pub ino: u64,
    /// `FLAG_PATH_TRUNCATED` of the open's record, for the closes named by it.
    pub path_flags: u32,
}

/// A file's last seen path and protecting rule.
type LastPath = (String, Option<Arc<str>>);

/// Open files, recent closes and recent changes.
pub struct Files {
    /// Tracked open files by `struct file` address.
    pub open: HashMap<u64, OpenFile>,
    /// Recent closes by file `(dev, ino)`: `(when, tgid)` of its closers, so that an access
    /// fanotify reports just after the close record was decoded is still explained.
    recent_closes: HashMap<(u32, u64), Vec<(Instant, u32)>>,
    /// Recent change records from the kernel by `(event name, path)`: the fanotify observer
    /// does not report these again (it still reports what the kernel hooks do not see, such
    /// as the in-kernel NFS server's deletions).
    recent_changes: HashMap<(Name, String), Instant>,
    /// When the two maps above were last pruned.
    pruned: Instant,
    /// The path and protecting rule last seen for a file `(dev, ino)` at a close: names the
    /// fold records (`file.close` with reason `fold`), which carry no path.
    last_paths: HashMap<(u32, u64), LastPath>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            recent_closes: HashMap::new(),
            recent_changes: HashMap::new(),
            pruned: Instant::now(),
            last_paths: HashMap::new(),
        }
    }
}

impl Files {
    /// Remembers an open (bounded).
    pub fn opened(&mut self, file: u64, f: OpenFile) {
        if self.open.len() < MAX_OPEN_FILES {
            self.open.insert(file, f);
        }
    }

    /// Remembers the path of a closed file (bounded: forgets all when full).
    pub fn note_path(&mut self, dev: u32, ino: u64, path: &str, protected: Option<&Arc<str>>) {
        if self.last_paths.len() >= MAX_OPEN_FILES {
            self.last_paths.clear();
        }
        match self.last_paths.get_mut(&(dev, ino)) {
            Some((p, _)) if p == path => {}
            _ => {
                self.last_paths.insert((dev, ino), (path.to_owned(), protected.cloned()));
            }
        }
    }

    /// The path and protecting rule last seen for `(dev, ino)`.
    pub fn last_path(&self, dev: u32, ino: u64) -> Option<&LastPath> {
        self.last_paths.get(&(dev, ino))
    }

    /// Remembers a close for [`Self::explains`].
    pub fn note_closed(&mut self, now: Instant, tgid: u32, dev: u32, ino: u64) {
        self.prune(now);
        if self.recent_closes.len() >= MAX_RECENT && !self.recent_closes.contains_key(&(dev, ino)) {
            return;
        }
        let closers = self.recent_closes.entry((dev, ino)).or_default();
        closers.retain(|(t, p)| now.duration_since(*t) < RECENT && *p != tgid);
        if closers.len() < MAX_CLOSERS {
            closers.push((now, tgid));
        }
    }

    /// Remembers a kernel change record for [`Self::kernel_reported`].
    pub fn note_change(&mut self, now: Instant, name: Name, path: &str) {
        self.prune(now);
        if self.recent_changes.len() < MAX_RECENT {
            self.recent_changes.insert((name, path.to_owned()), now);
        }
    }

    /// Forgets closes and changes older than [`RECENT`], at most once a second (both maps are
    /// looked up by file, so their size costs memory, not time).
    fn prune(&mut self, now: Instant) {
        if now.duration_since(self.pruned) < Duration::from_secs(1) {
            return;
        }
        self.pruned = now;
        self.recent_closes.retain(|_, closers| {
            closers.retain(|(t, _)| now.duration_since(*t) < RECENT);
            !closers.is_empty()
        });
        self.recent_changes.retain(|_, t| now.duration_since(*t) < RECENT);
    }

    /// Whether the kernel reported `name` (`file.delete`, …) of `path` in the last seconds.
    pub fn kernel_reported(&self, name: Name, path: &std::path::Path) -> bool {
        let key = (name, crate::event::path::of_os(path));
        self.recent_changes.get(&key).is_some_and(|t| t.elapsed() < RECENT)
    }

    /// Whether the kernel records account for `pid` touching file `(dev, ino)`: it (or an
    /// ancestor, which may have handed it the descriptor) has the file open, or closed it in
    /// the last seconds. Reads `/proc` for the ancestors.
    pub fn explains(&self, pid: u32, dev: u32, ino: u64) -> bool {
        let holders: Vec<u32> = self
            .open
            .values()
            .filter(|f| f.dev == dev && f.ino == ino)
            .map(|f| f.opener)
            .chain(
                self.recent_closes
                    .get(&(dev, ino))
                    .into_iter()
                    .flatten()
                    .filter(|(t, _)| t.elapsed() < RECENT)
                    .map(|(_, tgid)| *tgid),
            )
            .collect();
        if holders.is_empty() {
            return false;
        }
        let mut p = pid;
        for _ in 0..8 {
            if holders.contains(&p) {
                return true;
            }
            match procfs::process::Process::new(p as i32).and_then(|pr| pr.stat()) {
                Ok(stat) if stat.ppid > 0 => p = stat.ppid as u32,
                _ => return false,
            }
        }
        false
    }
}
