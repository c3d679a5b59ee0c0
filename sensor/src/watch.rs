//! The fanotify view of the protected trees, next to the kernel programs' view.
//!
//! The kernel programs see opens and bytes through syscalls; fanotify sees the VFS: renames,
//! deletions, attribute changes, and accesses that no syscall record explains (the in-kernel
//! NFS and SMB servers, descriptors passed to other processes). This module keeps a catalog
//! of the protected files' metadata (so a deletion record can say which inode went and its
//! last size), turns namespace events into typed `file.rename`, `file.delete`, `file.chmod`,
//! `file.chown` and `file.truncate` events, and reports an access the kernel
//! programs did not explain as `file.access` with `mnsensor.observed_by: fanotify`. Its
//! events join the kernel's in the enrich stage.
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
    enrich::Enricher,
    event::{
        Envelope, Event, FileRef, Name, Subject,
        change::{Change, FileAccess, FileChange, ObservedBy},
        path,
        time::Clock,
    },
    fanotify::{FsEvent, FsEventKind},
    proctable,
    protect::kernel_dev,
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

    /// Judges the events that have settled; returns the events to write (not yet enriched).
    pub fn settle(&mut self, d: &Enricher, all: bool) -> Vec<Envelope> {
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

    fn judge(&mut self, d: &Enricher, ev: FsEvent, snapshot: Option<Meta>, out: &mut Vec<Envelope>) {
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
                if d.files.kernel_reported(Name::FileRename, &ev.path) {
                    return;
                }
                let old_path = ev.old_path.as_ref().map(path::of_os);
                out.push(change(d, &ev, meta, Change::Rename { old_path }));
            }
            K::MovedFrom => {
                // Without FAN_RENAME (before 5.17) this is the only trace of a move out.
                if !self.has_rename {
                    let meta = self.catalog.remove(&ev.path);
                    let old_path = Some(path::of_os(&ev.path));
                    out.push(change(d, &ev, meta, Change::Rename { old_path }));
                }
            }
            K::Delete => {
                if ev.is_dir {
                    return;
                }
                let meta = self.catalog.remove(&ev.path);
                if d.files.kernel_reported(Name::FileDelete, &ev.path) {
                    return;
                }
                out.push(change(d, &ev, meta, Change::Delete { size: meta.map(|m| m.size), links: None }));
            }
            K::Attrib => self.attrib(d, &ev, snapshot, out),
            K::DeleteSelf | K::MoveSelf => {}
        }
    }

    /// chmod, chown and size changes, by comparing with the catalog.
    fn attrib(&mut self, d: &Enricher, ev: &FsEvent, snapshot: Option<Meta>, out: &mut Vec<Envelope>) {
        let Some(now) = snapshot else { return };
        let Some(before) = self.catalog.insert(ev.path.clone(), now) else { return };
        if now.mode != before.mode {
            out.push(change(d, ev, Some(now), Change::Chmod { mode: now.mode, old_mode: before.mode }));
        }
        if (now.uid, now.gid) != (before.uid, before.gid) {
            let chown =
                Change::Chown { uid: now.uid, gid: now.gid, old_uid: before.uid, old_gid: before.gid };
            out.push(change(d, ev, Some(now), chown));
        }
        self.size_change(d, ev, before, now, out);
    }

    fn size_change(&self, d: &Enricher, ev: &FsEvent, before: Meta, now: Meta, out: &mut Vec<Envelope>) {
        if now.size < before.size && !d.files.kernel_reported(Name::FileTruncate, strip_deleted(&ev.path)) {
            out.push(change(d, ev, Some(now), Change::Truncate { size: now.size, old_size: before.size }));
        }
    }

    /// Content events: keep the catalog current, report what the kernel records do not explain.
    fn content(&mut self, d: &Enricher, ev: &FsEvent, snapshot: Option<Meta>, out: &mut Vec<Envelope>) {
        let (Some(dev), Some(ino)) = (ev.dev, ev.ino) else { return };
        let path = strip_deleted(&ev.path);
        if let Some(now) = snapshot
            && let Some(before) = self.catalog.insert(path.to_owned(), now)
        {
            self.size_change(d, ev, before, now, out);
        }
        // The cheap check first: explaining scans the open files and may read /proc.
        let key = (ev.pid, ino, ev.kind);
        if self.reported.contains_key(&key) || d.files.explains(ev.pid, kernel_dev(dev), ino) {
            return;
        }
        self.reported.insert(key, Instant::now());
        let access = FileAccess {
            subject: subject(ev.pid),
            file: file(d, ev, snapshot),
            fanotify_event: kind_name(ev.kind),
        };
        out.push(Envelope::new(Clock::realtime_ns(), Event::FileAccess(access)));
    }
}

/// A change `ev` reported.
fn change(d: &Enricher, ev: &FsEvent, meta: Option<Meta>, change: Change) -> Envelope {
    let change = FileChange {
        subject: subject(ev.pid),
        file: file(d, ev, meta),
        change,
        observed_by: ObservedBy::Fanotify,
    };
    Envelope::new(Clock::realtime_ns(), Event::FileChange(change))
}

/// The acting process as `/proc` shows it (only its pid when it is gone).
pub(crate) fn subject(pid: u32) -> Subject {
    proctable::task_of_pid(pid).map_or_else(|| Subject::pid(pid), Subject::of)
}

/// The file of `ev`: its path, identity and protection rule.
fn file(d: &Enricher, ev: &FsEvent, meta: Option<Meta>) -> FileRef {
    let path = strip_deleted(&ev.path);
    let mut file = FileRef { path: path::of_os(path), ..FileRef::default() };
    if let Some((dev, ino)) = meta.map(|m| (m.dev, m.ino)).or(ev.dev.zip(ev.ino)) {
        let key = InodeKey { ino, dev: kernel_dev(dev), _pad: 0 };
        file.id = Some((key.dev, ino));
        file.rule = d.protect.rule_for(key, path);
        file.protected = file.rule.and_then(|r| d.protect.rule_path(r)).map(Into::into);
    }
    file
}

/// `/proc/self/fd` shows unlinked files as `path (deleted)`.
fn strip_deleted(path: &Path) -> &Path {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_os_str().as_bytes();
    bytes.strip_suffix(b" (deleted)").map_or(path, |b| Path::new(std::ffi::OsStr::from_bytes(b)))
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
