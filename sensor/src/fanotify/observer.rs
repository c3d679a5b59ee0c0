//! The observer: notification events on protected trees, with the acting pid.
//!
//! Two groups, both `FAN_CLASS_NOTIF` (never blocking anyone):
//! * a **content** group (classic fd events): `FAN_OPEN`, `FAN_ACCESS`, `FAN_MODIFY`,
//!   `FAN_CLOSE_WRITE`, `FAN_CLOSE_NOWRITE` on files; each event's descriptor gives
//!   `(st_dev, st_ino, size)` and the path, and is closed at once;
//! * a **FID** group (`FAN_REPORT_DFID_NAME | FAN_REPORT_FID`, plus `FAN_REPORT_TARGET_FID`
//!   on 5.17+): `FAN_CREATE`, `FAN_DELETE`, `FAN_DELETE_SELF`, `FAN_MOVED_FROM`,
//!   `FAN_MOVED_TO`, `FAN_MOVE_SELF`, `FAN_RENAME` (5.17+), `FAN_ATTRIB` and `FAN_MODIFY`,
//!   with `FAN_ONDIR`. It also drives the marking of new directories.
//!
//! `FAN_MODIFY` from the FID group exists for `truncate(2)`/`O_TRUNC`, which the content
//! group never sees (no path in the event). A `write(2)` produces `FAN_MODIFY` in both groups;
//! the FID copy is dropped when the content group reported `Modify` for the same pid and path
//! in the same [`Observer::read_events`] call. The FID group is read first, so the content twin
//! of any FID event read is already queued; only a content-queue overflow or the per-call read
//! bound can let a duplicate through.
//!
//! Both groups are registered in an epoll instance, which is what [`AsFd`] returns, so one
//! tokio `AsyncFd` serves both (see [`next_events`]). With
//! [`ObserverOptions::content_on_tick`] only the FID group is: the owner reads the content
//! group on its own clock ([`Observer::read_content`]), so an open never wakes it.
//! [`Content`] chooses the content events, or none.
use std::{
    collections::HashSet,
    ffi::OsStr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use super::{
    DEFAULT_MAX_MARKS, FanotifyError, Features, FileHandle, init_fd_group, init_fid_group,
    record::{self, FidInfo, RawEvent},
    sys,
    tree::{Group, Tree},
};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsEventKind {
    Open,
    Access,
    Modify,
    CloseWrite,
    CloseNoWrite,
    Create,
    Delete,
    DeleteSelf,
    MoveSelf,
    MovedFrom,
    MovedTo,
    /// `FAN_RENAME`: `old_path` → `path` in one event (5.17+). The same rename also produces
    /// `MovedFrom` and/or `MovedTo` events. Moved in from outside the trees: no `old_path`;
    /// moved out: `path` is where the kernel says the object is now (empty if unknown).
    Rename,
    Attrib,
    /// The kernel queue of one group overflowed (`FAN_Q_OVERFLOW`): events were lost. Never
    /// filtered. After an overflow of the FID group the trees are walked again, so directories
    /// created meanwhile get their marks.
    Overflow,
    /// Events were lost while reading: `read(2)` failed (for example `EMFILE` when the kernel
    /// could not create an event's descriptor) or a buffer could not be decoded. Never
    /// filtered.
    Lost,
    /// A directory in a protected tree that could not be marked (mark limit reached, or an
    /// error): events inside it are not seen. `path` names it. Never filtered.
    Unwatched,
}

/// One filesystem event on a protected tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsEvent {
    pub kind: FsEventKind,
    /// The acting process (thread-group id); 0 for `Overflow`/`Lost`/`Unwatched`, or for a
    /// process outside our pid namespace.
    pub pid: u32,
    /// Content events: the file (as `/proc/self/fd` shows it; a deleted file ends in
    /// `" (deleted)"`). Namespace events: directory + entry name (`Rename`: the new name).
    /// Empty for `Overflow` and `Lost`.
    pub path: PathBuf,
    /// `st_dev` of the object: exact for content events, the marked filesystem's device for
    /// namespace events.
    pub dev: Option<u64>,
    /// `st_ino`: exact for content events; for namespace events, known only when the object
    /// still exists at `path` and is the one the event names (checked by file handle), or when
    /// it is a marked object.
    pub ino: Option<u64>,
    /// `st_size` when known (content events: at the time the event was read).
    pub size: Option<u64>,
    pub is_dir: bool,
    /// `Rename`: the old path. `MoveSelf`: where the object was, when its map entry had not
    /// followed the move yet (a protected root or single file).
    pub old_path: Option<PathBuf>,
    /// Namespace events: the object's own file handle (`FAN_EVENT_INFO_TYPE_FID`; for
    /// create/delete/move only with `FAN_REPORT_TARGET_FID`, 5.17+).
    pub handle: Option<FileHandle>,
}

impl FsEvent {
    fn bare(kind: FsEventKind, path: PathBuf) -> Self {
        Self {
            kind,
            pid: 0,
            path,
            dev: None,
            ino: None,
            size: None,
            is_dir: false,
            old_path: None,
            handle: None,
        }
    }
}

/// Which content events the content group reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// No content group: only the FID group's namespace and attribute events.
    Off,
    /// `FAN_OPEN` and `FAN_CLOSE_WRITE`: enough to spot an open no kernel record explains and
    /// to keep sizes current (the daemon counts bytes with its kernel programs).
    Opens,
    /// Every open, read, write and close. A `FAN_ACCESS` per read costs the reading process
    /// about 2 µs here.
    All,
}

/// Observer settings.
#[derive(Clone, Copy, Debug)]
pub struct ObserverOptions {
    /// Most objects (directories + single files) marked; see [`DEFAULT_MAX_MARKS`].
    pub max_marks: usize,
    /// The content events reported.
    pub content: Content,
    /// Leave the content group out of the readiness descriptor ([`AsFd`]): the owner reads it
    /// with [`Observer::read_content`] on its own clock. An opener then never wakes the
    /// reader, and the queued events of one process on one file merge meanwhile; measured
    /// here (a C loop of open+close on a marked file, 2026-12-07) the content group cost the
    /// opener +700 ns per open+close when read on readiness, +350 ns on a 50 ms clock, and
    /// +210 ns with `Content::Opens` on that clock.
    pub content_on_tick: bool,
}

impl Default for ObserverOptions {
    fn default() -> Self {
        Self { max_marks: DEFAULT_MAX_MARKS, content: Content::All, content_on_tick: false }
    }
}

const FID: usize = 0;
const CONTENT: usize = 1;
/// Reads of 64 KiB per group per [`Observer::read_events`] call.
const READS_PER_CALL: usize = 16;
const BUF_WORDS: usize = 64 * 1024 / 8;

const CONTENT_MASK: u64 =
    libc::FAN_OPEN | libc::FAN_ACCESS | libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE | libc::FAN_CLOSE_NOWRITE;
const CONTENT_KINDS: [(u64, FsEventKind); 5] = [
    (libc::FAN_OPEN, FsEventKind::Open),
    (libc::FAN_ACCESS, FsEventKind::Access),
    (libc::FAN_MODIFY, FsEventKind::Modify),
    (libc::FAN_CLOSE_WRITE, FsEventKind::CloseWrite),
    (libc::FAN_CLOSE_NOWRITE, FsEventKind::CloseNoWrite),
];
const DIRENT: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;
const FID_KINDS: [(u64, FsEventKind); 9] = [
    (libc::FAN_CREATE, FsEventKind::Create),
    (libc::FAN_MOVED_FROM, FsEventKind::MovedFrom),
    (libc::FAN_MOVED_TO, FsEventKind::MovedTo),
    (libc::FAN_RENAME, FsEventKind::Rename),
    (libc::FAN_MODIFY, FsEventKind::Modify),
    (libc::FAN_ATTRIB, FsEventKind::Attrib),
    (libc::FAN_MOVE_SELF, FsEventKind::MoveSelf),
    (libc::FAN_DELETE, FsEventKind::Delete),
    (libc::FAN_DELETE_SELF, FsEventKind::DeleteSelf),
];

/// Watches protected trees. See the module documentation.
pub struct Observer {
    tree: Tree,
    epoll: OwnedFd,
    own_pid: u32,
    buf: Vec<u64>,
    features: Features,
    drained: bool,
    content_on_tick: bool,
}

impl Observer {
    /// Watches `trees` (directories, recursively, and single files) with default options.
    pub fn new(trees: &[PathBuf]) -> Result<Self, FanotifyError> {
        Self::with_options(trees, ObserverOptions::default())
    }

    pub fn with_options(trees: &[PathBuf], opts: ObserverOptions) -> Result<Self, FanotifyError> {
        let (fid_fd, features) = init_fid_group()?;
        let mut fid_dir = libc::FAN_CREATE
            | libc::FAN_DELETE
            | libc::FAN_DELETE_SELF
            | libc::FAN_MOVED_FROM
            | libc::FAN_MOVED_TO
            | libc::FAN_MOVE_SELF
            | libc::FAN_ATTRIB
            | libc::FAN_MODIFY
            | libc::FAN_ONDIR
            | libc::FAN_EVENT_ON_CHILD;
        if features.target_fid_and_rename {
            fid_dir |= libc::FAN_RENAME;
        }
        let mut groups = vec![Group {
            fd: fid_fd,
            dir_mask: fid_dir,
            // No dirent bits or FAN_ONDIR on non-directories (ENOTDIR with TARGET_FID).
            file_mask: libc::FAN_ATTRIB | libc::FAN_MODIFY | libc::FAN_DELETE_SELF | libc::FAN_MOVE_SELF,
            needs: ("FID namespace events (FAN_CREATE/FAN_DELETE/FAN_MOVE/FAN_ATTRIB)", "5.1"),
        }];
        let content = match opts.content {
            Content::Off => 0,
            Content::Opens => libc::FAN_OPEN | libc::FAN_CLOSE_WRITE,
            Content::All => CONTENT_MASK,
        };
        if content != 0 {
            groups.push(Group {
                fd: init_fd_group(libc::FAN_CLASS_NOTIF, 0)?,
                dir_mask: content | libc::FAN_EVENT_ON_CHILD,
                file_mask: content,
                needs: ("FAN_EVENT_ON_CHILD content events", "2.6.37"),
            });
        }
        let epoll = sys::epoll_create().map_err(FanotifyError::sys("epoll_create1"))?;
        let on_readiness = if opts.content_on_tick { &groups[..1] } else { &groups[..] };
        for (i, g) in on_readiness.iter().enumerate() {
            sys::epoll_add(epoll.as_fd(), g.fd.as_fd(), i as u64).map_err(FanotifyError::sys("epoll_ctl"))?;
        }
        let tree = Tree::new(groups, features.target_fid_and_rename, trees, opts.max_marks, false)?;
        tracing::debug!(marked = tree.len(), ?features, "fanotify observer ready.");
        Ok(Self {
            tree,
            epoll,
            own_pid: std::process::id(),
            buf: vec![0; BUF_WORDS],
            features,
            drained: true,
            content_on_tick: opts.content_on_tick,
        })
    }

    /// Optional kernel features in use.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Number of marked objects (directories + single files).
    pub fn marked(&self) -> usize {
        self.tree.len()
    }

    /// Whether the last [`read_events`](Self::read_events) emptied the queues it reads (it
    /// stops after a bounded number of reads). Clear an `AsyncFd` readiness only when this is
    /// true.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    /// Reads and decodes what is queued in the groups on readiness (all of them, unless
    /// [`ObserverOptions::content_on_tick`]), without blocking. Events of this process are
    /// dropped; `Overflow`, `Lost` and `Unwatched` never are. Read failures are reported as
    /// `Lost` events, not as errors; the `Result` is kept for future use.
    pub fn read_events(&mut self) -> Result<Vec<FsEvent>, FanotifyError> {
        let groups: &[usize] = if self.content_on_tick { &[FID] } else { &[FID, CONTENT] };
        let (out, drained) = self.read_groups(groups);
        self.drained = drained;
        sys::epoll_flush(self.epoll.as_fd());
        Ok(out)
    }

    /// With [`ObserverOptions::content_on_tick`]: reads what the content group queued since
    /// the last call, without blocking (a bounded number of reads; the rest stays queued for
    /// the next call).
    pub fn read_content(&mut self) -> Vec<FsEvent> {
        if self.content_on_tick { self.read_groups(&[CONTENT]).0 } else { Vec::new() }
    }

    /// The events of `groups`, and whether their queues were emptied.
    fn read_groups(&mut self, groups: &[usize]) -> (Vec<FsEvent>, bool) {
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        let drained = self.read_into(&mut buf, groups, &mut out);
        self.buf = buf;
        (out, drained)
    }

    fn read_into(&mut self, buf: &mut [u64], groups: &[usize], out: &mut Vec<FsEvent>) -> bool {
        let bytes: &mut [u8] = sys::as_bytes(buf);
        let mut drained = true;
        let mut fid_overflow = false;
        let mut content = Vec::new();
        // FID group first: see the module documentation on FAN_MODIFY twins.
        for &gi in groups {
            if gi >= self.tree.groups.len() {
                continue; // no content group
            }
            let mut emptied = false;
            for _ in 0..READS_PER_CALL {
                let fd = self.tree.groups[gi].fd.as_fd();
                let n = match sys::read(fd, bytes) {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        emptied = true;
                        break;
                    }
                    Err(e) => {
                        // EMFILE/ENFILE/ENOMEM while the kernel creates event descriptors: the
                        // event is gone. Report the loss and try again on the next call.
                        tracing::warn!(error = %e, "Reading fanotify events failed.");
                        out.push(FsEvent::bare(FsEventKind::Lost, PathBuf::new()));
                        emptied = true;
                        break;
                    }
                };
                for ev in record::events(&bytes[..n]) {
                    match ev {
                        Ok(ev) if gi == FID => self.fid_event(&ev, out, &mut fid_overflow),
                        Ok(ev) => self.content_event(&ev, &mut content),
                        Err(e) => {
                            tracing::error!(error = %e, "Unparsable fanotify buffer.");
                            out.push(FsEvent::bare(FsEventKind::Lost, PathBuf::new()));
                        }
                    }
                }
            }
            drained &= emptied;
        }
        self.finish_fid_events(out, &content);
        out.append(&mut content);
        if fid_overflow {
            for p in self.tree.rescan() {
                out.push(FsEvent::bare(FsEventKind::Unwatched, p));
            }
        }
        drained
    }

    fn content_event(&self, ev: &RawEvent<'_>, out: &mut Vec<FsEvent>) {
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(FsEvent::bare(FsEventKind::Overflow, PathBuf::new()));
        }
        if ev.fd < 0 {
            return;
        }
        // SAFETY: a descriptor from an event we just read, adopted once, closed on drop.
        let fd = unsafe { sys::adopt(ev.fd) };
        let pid = ev.pid.max(0) as u32;
        if pid == self.own_pid {
            return;
        }
        let st = sys::fstat(fd.as_raw_fd()).ok();
        let path = sys::fd_path(fd.as_raw_fd()).unwrap_or_default();
        drop(fd);
        for (bit, kind) in CONTENT_KINDS {
            if ev.mask & bit != 0 {
                out.push(FsEvent {
                    kind,
                    pid,
                    path: path.clone(),
                    dev: st.map(|s| s.st_dev),
                    ino: st.map(|s| s.st_ino),
                    size: st.map(|s| s.st_size as u64),
                    is_dir: st.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR),
                    old_path: None,
                    handle: None,
                });
            }
        }
    }

    fn fid_event(&mut self, ev: &RawEvent<'_>, out: &mut Vec<FsEvent>, overflow: &mut bool) {
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(FsEvent::bare(FsEventKind::Overflow, PathBuf::new()));
            *overflow = true;
            return;
        }
        if ev.fd >= 0 {
            // Not expected from a FID group; never leak it.
            // SAFETY: as in `content_event`.
            drop(unsafe { sys::adopt(ev.fd) });
        }
        let info = match record::fid_info(ev.info) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, mask = ev.mask, "Unparsable fanotify event.");
                out.push(FsEvent::bare(FsEventKind::Lost, PathBuf::new()));
                return;
            }
        };
        let pid = ev.pid.max(0) as u32;
        // Describe before updating the map: a directory's own move changes it.
        if pid != self.own_pid {
            self.describe(ev.mask, pid, &info, out);
        }
        for p in self.tree.update(ev.mask, &info) {
            out.push(FsEvent::bare(FsEventKind::Unwatched, p));
        }
    }

    /// Turns one FID event into one [`FsEvent`] per event bit.
    fn describe(&self, mask: u64, pid: u32, info: &FidInfo, out: &mut Vec<FsEvent>) {
        let is_dir = mask & libc::FAN_ONDIR != 0;
        let join = |dir: Option<PathBuf>, name: &OsStr| {
            dir.map(|d| d.join(name)).unwrap_or_else(|| PathBuf::from(name))
        };
        // Directory + entry name; "." (or no name) is the directory itself.
        let entry = info.dir.as_ref().map(|(dh, name)| {
            let dir = self.tree.dir_path(dh);
            match name.as_deref() {
                Some(n) if n != "." => join(dir, n),
                _ => dir.unwrap_or_default(),
            }
        });
        let known = info.fid.as_ref().and_then(|h| self.tree.known(h));
        let fsid = info.fid.as_ref().or(info.dir.as_ref().map(|d| &d.0)).or(info.new.as_ref().map(|d| &d.0));
        let dev = fsid.and_then(|h| self.tree.dev_of(&h.fsid));
        for (bit, kind) in FID_KINDS {
            if mask & bit == 0 {
                continue;
            }
            let mut old_path = None;
            let path = if bit == libc::FAN_RENAME {
                // Only the watched side(s) are reported; the other comes from the object's own
                // handle (moved out) or stays unknown (moved in from outside: no old path).
                old_path = info.old.as_ref().map(|(oh, on)| join(self.tree.dir_path(oh), on));
                match &info.new {
                    Some((nh, nn)) => join(self.tree.dir_path(nh), nn),
                    None => info.fid.as_ref().and_then(|h| self.tree.resolve_handle(h)).unwrap_or_default(),
                }
            } else if bit & DIRENT != 0 {
                entry.clone().unwrap_or_default()
            } else if let Some(k) = known {
                if bit == libc::FAN_MOVE_SELF
                    && let Some(now) = info.fid.as_ref().and_then(|h| self.tree.resolve_handle(h))
                    && now != k.path
                {
                    old_path = Some(k.path.clone());
                    now
                } else {
                    k.path.clone()
                }
            } else {
                entry.clone().unwrap_or_default()
            };
            out.push(FsEvent {
                kind,
                pid,
                path,
                dev: known.map(|k| k.dev).or(dev),
                ino: known.map(|k| k.ino),
                size: None,
                is_dir,
                old_path,
                handle: info.fid.clone(),
            });
        }
    }

    /// Drops FID `Modify` events that have a content twin, then fills `(dev, ino, size)` of
    /// the remaining FID events whose object still exists at `path` (checked by file handle).
    fn finish_fid_events(&self, fid: &mut Vec<FsEvent>, content: &[FsEvent]) {
        let twins: HashSet<(u32, &Path)> = content
            .iter()
            .filter(|e| e.kind == FsEventKind::Modify)
            .map(|e| (e.pid, e.path.as_path()))
            .collect();
        fid.retain(|e| {
            e.kind != FsEventKind::Modify || e.pid == 0 || !twins.contains(&(e.pid, e.path.as_path()))
        });
        for e in fid.iter_mut() {
            let live = matches!(
                e.kind,
                FsEventKind::Create
                    | FsEventKind::MovedTo
                    | FsEventKind::Rename
                    | FsEventKind::Modify
                    | FsEventKind::Attrib
                    | FsEventKind::MoveSelf
            );
            if live
                && let Some(h) = &e.handle
                && let Some((dev, ino, size)) = self.tree.identify(&e.path, h)
            {
                e.dev = Some(dev);
                e.ino = Some(ino);
                e.size = Some(size);
            }
        }
    }
}

impl AsFd for Observer {
    /// The epoll instance holding both groups: readable when either group has events.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl AsRawFd for Observer {
    /// The epoll instance (what tokio's `AsyncFd` registers).
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

impl Observer {
    /// Registers the observer with the current tokio runtime's reactor (readable interest),
    /// for [`next_events`]. Must be called within a runtime.
    pub fn into_async(self) -> Result<tokio::io::unix::AsyncFd<Self>, FanotifyError> {
        // SAFETY: `as_raw_fd` returns the epoll descriptor the observer owns; it stays open
        // and is never replaced for the observer's whole life, hence for the AsyncFd's.
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE) }
            .map_err(|e| FanotifyError::sys("register with the tokio reactor")(e.into()))
    }
}

/// Waits (on a tokio runtime) for the next non-empty batch of events, handling readiness
/// correctly: readiness is cleared only once both queues were drained.
pub async fn next_events(
    afd: &mut tokio::io::unix::AsyncFd<Observer>,
) -> Result<Vec<FsEvent>, FanotifyError> {
    loop {
        let mut guard = afd.readable_mut().await.map_err(FanotifyError::sys("epoll readiness"))?;
        let obs = guard.get_inner_mut();
        let events = obs.read_events()?;
        if obs.is_drained() {
            guard.clear_ready();
        }
        if !events.is_empty() {
            return Ok(events);
        }
    }
}
