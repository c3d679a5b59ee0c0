//! The fanotify view of the protected trees, next to the kernel programs' view.
//!
//! The kernel programs see opens and bytes through syscalls; fanotify sees the VFS: renames,
//! deletions, attribute changes, and accesses that no syscall record explains (the in-kernel
//! NFS and SMB servers, descriptors passed to other processes). This module keeps a catalog
//! of the protected files' metadata (so a deletion record can say which inode went and its
//! last size), turns namespace events into `file.rename`, `file.delete`, `file.chmod`,
//! `file.chown` and `file.truncate` records, and reports an access the kernel
//! programs did not explain as `file.access` with `mnsensor.observed_by: fanotify`.
//!
//! fanotify events are held for [`SETTLE`] before they are judged, so the ring buffer has been
//! drained past them and the matching kernel records are known.
use std::{
    collections::{HashMap, VecDeque},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sensor_common::path::InodeKey;

use crate::{
    event::{Decoder, Record, attr, file::device, time::Clock},
    fanotify::{FsEvent, FsEventKind},
    protect::kernel_dev,
    scan,
};

/// How long a fanotify event waits for the kernel records that may explain it.
const SETTLE: Duration = Duration::from_millis(150);
/// One `file.access` per process, file and kind within this window.
const ACCESS_WINDOW: Duration = Duration::from_secs(10);
/// Most files whose metadata is remembered.
const MAX_CATALOG: usize = 1 << 20;

/// What was last known about a protected file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::symlink_metadata(path).ok()?;
        m.is_file().then(|| Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }
}

/// The daemon-side state of the fanotify observer.
#[derive(Default)]
pub struct Watch {
    /// The kernel reports renames as one event (`FAN_RENAME`, 5.17+); before that a move out
    /// of the trees is seen only as `MovedFrom`.
    pub has_rename: bool,
    catalog: HashMap<PathBuf, Meta>,
    /// Events with the file's metadata as it was when the event was read.
    pending: VecDeque<(Instant, FsEvent, Option<Meta>)>,
    reported: HashMap<(u32, u64, FsEventKind), Instant>,
    /// Overflows and lost reads since the last loss report.
    pub lost: u64,
}

impl Watch {
    /// Catalogs the regular files below `trees` (and protected single files).
    pub fn new(trees: &[PathBuf], has_rename: bool) -> Self {
        let mut w = Self { has_rename, ..Self::default() };
        for t in trees {
            w.walk(t);
        }
        w
    }

    fn walk(&mut self, path: &Path) {
        if self.catalog.len() >= MAX_CATALOG {
            return;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                    self.walk(&e.path());
                }
            }
            Ok(m) if m.is_file() => {
                if let Some(meta) = Meta::of(path) {
                    self.catalog.insert(path.to_owned(), meta);
                }
            }
            _ => {}
        }
    }

    /// Queues events read from the observer, with a snapshot of the file's metadata taken now
    /// (judging waits for [`SETTLE`]; by then later changes would be mixed in).
    pub fn push(&mut self, events: Vec<FsEvent>) {
        let now = Instant::now();
        self.pending.extend(events.into_iter().map(|e| {
            let meta = match e.kind {
                FsEventKind::Delete | FsEventKind::MovedFrom => None,
                _ => Meta::of(strip_deleted(&e.path)),
            };
            (now, e, meta)
        }));
    }

    /// Judges the events that have settled; returns the records to write.
    pub fn settle(&mut self, d: &mut Decoder, all: bool) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some((at, ..)) = self.pending.front() {
            if !all && at.elapsed() < SETTLE {
                break;
            }
            let Some((_, ev, meta)) = self.pending.pop_front() else { break };
            self.judge(d, ev, meta, &mut out);
        }
        self.reported.retain(|_, t| t.elapsed() < ACCESS_WINDOW);
        out
    }

    fn judge(&mut self, d: &mut Decoder, ev: FsEvent, snapshot: Option<Meta>, out: &mut Vec<Record>) {
        use FsEventKind as K;
        match ev.kind {
            K::Overflow | K::Lost => self.lost += 1,
            K::Unwatched => {
                tracing::error!(path = %ev.path.display(), "Directory in a protected tree is not watched by fanotify.");
            }
            K::Open | K::Access | K::Modify | K::CloseWrite | K::CloseNoWrite => {
                self.content(d, &ev, snapshot, out);
            }
            K::Create | K::MovedTo => {
                if let Some(meta) = snapshot {
                    self.catalog.insert(ev.path.clone(), meta);
                }
            }
            K::Rename => {
                let old = ev.old_path.as_ref().and_then(|p| self.catalog.remove(p));
                let meta = old.or(snapshot);
                if let Some(m) = meta
                    && !ev.path.as_os_str().is_empty()
                {
                    self.catalog.insert(ev.path.clone(), m);
                }
                if d.kernel_reported("file.rename", &ev.path) {
                    return;
                }
                let mut rec = self.record(d, "file.rename", &ev, meta);
                rec.set_opt(attr::FILE_OLD_PATH, ev.old_path.as_ref().map(|p| p.display().to_string()));
                out.push(rec);
            }
            K::MovedFrom => {
                // Without FAN_RENAME (before 5.17) this is the only trace of a move out.
                if !self.has_rename {
                    let meta = self.catalog.remove(&ev.path);
                    let mut rec = self.record(d, "file.rename", &ev, meta);
                    rec.set(attr::FILE_OLD_PATH, ev.path.display().to_string());
                    out.push(rec);
                }
            }
            K::Delete => {
                if ev.is_dir {
                    return;
                }
                let meta = self.catalog.remove(&ev.path);
                if d.kernel_reported("file.delete", &ev.path) {
                    return;
                }
                let mut rec = self.record(d, "file.delete", &ev, meta);
                rec.set_opt(attr::FILE_SIZE, meta.map(|m| m.size));
                out.push(rec);
            }
            K::Attrib => self.attrib(d, &ev, snapshot, out),
            K::DeleteSelf | K::MoveSelf => {}
        }
    }

    /// chmod, chown and size changes, by comparing with the catalog.
    fn attrib(&mut self, d: &mut Decoder, ev: &FsEvent, snapshot: Option<Meta>, out: &mut Vec<Record>) {
        let Some(now) = snapshot else { return };
        let Some(before) = self.catalog.insert(ev.path.clone(), now) else { return };
        if now.mode != before.mode {
            let mut rec = self.record(d, "file.chmod", ev, Some(now));
            rec.set(attr::FILE_MODE, format!("{:04o}", now.mode))
                .set(attr::FILE_OLD_MODE, format!("{:04o}", before.mode));
            out.push(rec);
        }
        if (now.uid, now.gid) != (before.uid, before.gid) {
            let mut rec = self.record(d, "file.chown", ev, Some(now));
            rec.set(attr::FILE_OWNER_ID, now.uid)
                .set(attr::FILE_GROUP_ID, now.gid)
                .set(attr::FILE_OLD_OWNER_ID, before.uid)
                .set(attr::FILE_OLD_GROUP_ID, before.gid);
            out.push(rec);
        }
        self.size_change(d, ev, before, now, out);
    }

    fn size_change(&self, d: &mut Decoder, ev: &FsEvent, before: Meta, now: Meta, out: &mut Vec<Record>) {
        if now.size < before.size && !d.kernel_reported("file.truncate", strip_deleted(&ev.path)) {
            let mut rec = self.record(d, "file.truncate", ev, Some(now));
            rec.set(attr::FILE_SIZE, now.size).set(attr::FILE_OLD_SIZE, before.size);
            out.push(rec);
        }
    }

    /// Content events: keep the catalog current, report what the kernel records do not explain.
    fn content(&mut self, d: &mut Decoder, ev: &FsEvent, snapshot: Option<Meta>, out: &mut Vec<Record>) {
        let (Some(dev), Some(ino)) = (ev.dev, ev.ino) else { return };
        let path = strip_deleted(&ev.path);
        if let Some(now) = snapshot
            && let Some(before) = self.catalog.insert(path.to_owned(), now)
        {
            self.size_change(d, ev, before, now, out);
        }
        // The cheap check first: explaining scans the open files and may read /proc.
        let key = (ev.pid, ino, ev.kind);
        if self.reported.contains_key(&key) || d.explains(ev.pid, kernel_dev(dev), ino) {
            return;
        }
        self.reported.insert(key, Instant::now());
        let mut rec = self.record(d, "file.access", ev, snapshot);
        rec.set(attr::FANOTIFY_EVENT, kind_name(ev.kind));
        out.push(rec);
    }

    /// A record about `ev` with the acting process and the file's identity.
    fn record(&self, d: &mut Decoder, name: &'static str, ev: &FsEvent, meta: Option<Meta>) -> Record {
        let mut rec = Record::new(name, Clock::realtime_ns());
        rec.set(attr::OBSERVED_BY, "fanotify");
        match scan::task_of_pid(ev.pid) {
            Some(task) => {
                d.add_task(&task, &mut rec);
                d.add_program(task.tgid, &mut rec);
            }
            None => {
                rec.set(attr::PROCESS_PID, ev.pid);
                d.add_program(ev.pid, &mut rec);
            }
        }
        let path = strip_deleted(&ev.path).display().to_string();
        if !path.is_empty() {
            let (dir, file) = path.rsplit_once('/').unwrap_or(("", &path));
            rec.set(attr::FILE_PATH, path.as_str())
                .set(attr::FILE_NAME, file)
                .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir });
        }
        let identity = meta.map(|m| (m.dev, m.ino)).or(ev.dev.zip(ev.ino));
        if let Some((dev, ino)) = identity {
            rec.set(attr::FILE_INODE, ino).set(attr::FILE_DEVICE, device(kernel_dev(dev)));
            let key = InodeKey { ino, dev: kernel_dev(dev), _pad: 0 };
            let rule = d.protect.rule_for(key, strip_deleted(&ev.path));
            rec.set_opt(attr::PROTECTED_PATH, rule.and_then(|r| d.protect.rule_path(r)));
        }
        rec
    }
}

/// `/proc/self/fd` shows unlinked files as `path (deleted)`.
fn strip_deleted(path: &Path) -> &Path {
    path.to_str().and_then(|s| s.strip_suffix(" (deleted)")).map_or(path, Path::new)
}

fn kind_name(kind: FsEventKind) -> &'static str {
    match kind {
        FsEventKind::Open => "open",
        FsEventKind::Access => "access",
        FsEventKind::Modify => "modify",
        FsEventKind::CloseWrite => "close_write",
        _ => "close_nowrite",
    }
}
