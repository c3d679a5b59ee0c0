//! The marked set of a protected tree: inode marks on every directory (and protected single
//! file) in one or more groups, plus a map from each marked object's file handle to its path,
//! kept current as directories are created, moved and deleted.
//!
//! With `files` (the permission responder) every regular file inside the trees is marked too,
//! and its in-tree names are kept by identity ([`Names`]): an inode mark follows the file
//! through every hard link, bind mount, second mount of its filesystem and mount namespace,
//! so a decision can be made for the file whatever name reached it.
use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use super::{FanotifyError, FileHandle, record::FidInfo, sys};

/// One fanotify group and what it wants from the marked objects.
pub(crate) struct Group {
    pub fd: OwnedFd,
    /// Mask for directory marks (0: the group does not mark directories).
    pub dir_mask: u64,
    /// Mask for single-file marks (0: the group does not mark files).
    pub file_mask: u64,
    /// What an `EINVAL` from `fanotify_mark` means for this group: (feature, since).
    pub needs: (&'static str, &'static str),
}

/// A marked object.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub path: PathBuf,
    pub is_dir: bool,
    pub dev: u64,
    pub ino: u64,
}

pub(crate) struct Tree {
    pub groups: Vec<Group>,
    /// The FID group also receives `FAN_RENAME` (5.17+), which then drives directory moves
    /// instead of `FAN_MOVED_TO` (both arrive for one rename; one walk is enough).
    pub rename_events: bool,
    roots: Vec<PathBuf>,
    known: HashMap<FileHandle, Known>,
    /// `st_dev` → fsid, for filesystems seen so far.
    fsids: HashMap<u64, [i32; 2]>,
    /// fsid → (`st_dev`, a directory descriptor on it for `open_by_handle_at`).
    fs: HashMap<[i32; 2], (u64, OwnedFd)>,
    max: usize,
    /// Handles met by the walk in progress (rescan bookkeeping).
    seen: Option<HashSet<FileHandle>>,
    /// Mark every regular file in the trees and keep [`Self::names`].
    files: bool,
    names: Names,
    /// Files left unmarked by the mark limit since the last [`Self::warn_unmarked`].
    unmarked_files: usize,
}

/// A file's identity: (`st_dev`, `st_ino`).
pub(crate) type FileId = (u64, u64);

/// The in-tree names of the marked regular files, by identity and by path. A file is in the
/// index while at least one of its names is inside a tree: a file moved out of the trees, or
/// whose last in-tree name is removed, leaves it (its mark stays until the inode goes away or
/// the group is closed; events for it are then decided by the name used).
#[derive(Default)]
pub(crate) struct Names {
    by_id: HashMap<FileId, Vec<PathBuf>>,
    by_path: HashMap<PathBuf, FileId>,
}

impl Names {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The file's in-tree names, sorted.
    pub fn get(&self, id: FileId) -> Option<&[PathBuf]> {
        self.by_id.get(&id).map(Vec::as_slice)
    }

    pub fn insert(&mut self, id: FileId, path: PathBuf) {
        match self.by_path.get(&path) {
            Some(old) if *old == id => return,
            Some(_) => self.remove(&path),
            None => {}
        }
        self.by_path.insert(path.clone(), id);
        let names = self.by_id.entry(id).or_default();
        names.push(path);
        names.sort();
    }

    pub fn remove(&mut self, path: &Path) {
        let Some(id) = self.by_path.remove(path) else { return };
        if let Some(names) = self.by_id.get_mut(&id) {
            names.retain(|n| n != path);
            if names.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }

    fn under(&self, dir: &Path) -> Vec<PathBuf> {
        self.by_path.keys().filter(|p| p.starts_with(dir)).cloned().collect()
    }

    /// Forgets every name at or below `dir`.
    pub fn remove_under(&mut self, dir: &Path) {
        for p in self.under(dir) {
            self.remove(&p);
        }
    }

    /// A directory moved from `old` to `new`: the names below it follow.
    pub fn rewrite_prefix(&mut self, old: &Path, new: &Path) {
        for p in self.under(old) {
            if let (Some(id), Ok(rest)) = (self.by_path.get(&p).copied(), p.strip_prefix(old)) {
                self.remove(&p);
                self.insert(id, new.join(rest));
            }
        }
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.by_path.keys()
    }
}

/// Whether an error means the object simply went away (or was swapped for a non-directory)
/// while we looked at it: nothing to watch, nothing to report.
fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ESTALE))
}

fn is_dir_mode(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Tree {
    /// Canonicalises `trees`, then marks every directory under each directory root and each
    /// single file (with `files`, every regular file in the trees too). Fails if any root is
    /// unusable or more than `max` objects would be marked.
    pub fn new(
        groups: Vec<Group>,
        rename_events: bool,
        trees: &[PathBuf],
        max: usize,
        files: bool,
    ) -> Result<Self, FanotifyError> {
        let mut roots = Vec::with_capacity(trees.len());
        for t in trees {
            let p = t.canonicalize().map_err(FanotifyError::path("canonicalize", t))?;
            if !roots.contains(&p) {
                roots.push(p);
            }
        }
        let mut tree = Self {
            groups,
            rename_events,
            roots: roots.clone(),
            known: HashMap::new(),
            fsids: HashMap::new(),
            fs: HashMap::new(),
            max,
            seen: None,
            files,
            names: Names::default(),
            unmarked_files: 0,
        };
        for root in &roots {
            let meta = std::fs::symlink_metadata(root).map_err(FanotifyError::path("lstat", root))?;
            if meta.is_dir() {
                tree.walk(root, true)?;
            } else {
                tree.add_file(root)?;
            }
        }
        tree.warn_unmarked();
        Ok(tree)
    }

    /// Says (once per walk) how many files the mark limit left without their own mark.
    fn warn_unmarked(&mut self) {
        let n = std::mem::take(&mut self.unmarked_files);
        if n > 0 {
            tracing::warn!(
                files = n,
                limit = self.max,
                "Protected files beyond the fanotify mark limit are decided through their directories only: opens through hard links outside the tree are not intercepted."
            );
        }
    }

    /// Number of marked objects.
    pub fn len(&self) -> usize {
        self.known.len() + self.names.len()
    }

    /// The in-tree name that a decision about the file `id`, opened as `opened`, applies to:
    /// `opened` itself when it is one of the file's in-tree names (or when nothing better is
    /// known), else the file's first in-tree name. A file not indexed yet (created a moment
    /// ago) reached through another mount of a tree directory is named through its
    /// directory's identity.
    pub fn protected_name(&self, id: FileId, opened: &Path) -> PathBuf {
        if let Some(names) = self.names.get(id) {
            return if names.iter().any(|n| n == opened) { opened.to_path_buf() } else { names[0].clone() };
        }
        if self.roots.iter().any(|r| opened.starts_with(r)) {
            return opened.to_path_buf();
        }
        let dir = opened
            .parent()
            .zip(opened.file_name())
            .and_then(|(dir, name)| Some((sys::lstat(&sys::cstring(dir).ok()?).ok()?, name)))
            .and_then(|(st, name)| {
                self.known
                    .values()
                    .find(|k| k.is_dir && k.dev == st.st_dev && k.ino == st.st_ino)
                    .map(|k| k.path.join(name))
            });
        dir.unwrap_or_else(|| opened.to_path_buf())
    }

    pub fn known(&self, h: &FileHandle) -> Option<&Known> {
        self.known.get(h)
    }

    /// The device of a filesystem we marked something on.
    pub fn dev_of(&self, fsid: &[i32; 2]) -> Option<u64> {
        self.fs.get(fsid).map(|(dev, _)| *dev)
    }

    /// Path of a directory handle: from the map, else through `open_by_handle_at`.
    pub fn dir_path(&self, h: &FileHandle) -> Option<PathBuf> {
        match self.known.get(h) {
            Some(k) => Some(k.path.clone()),
            None => self.resolve_handle(h),
        }
    }

    /// Asks the kernel where a handle's object is now (`open_by_handle_at` + readlink).
    pub fn resolve_handle(&self, h: &FileHandle) -> Option<PathBuf> {
        let (_, mount_fd) = self.fs.get(&h.fsid)?;
        let fd = sys::open_by_handle(mount_fd.as_raw_fd(), h, libc::O_PATH | libc::O_CLOEXEC).ok()?;
        sys::fd_path(fd.as_raw_fd()).ok()
    }

    /// `(st_dev, st_ino, st_size)` of `path`, but only if it is still the object `h` names.
    pub fn identify(&self, path: &Path, h: &FileHandle) -> Option<(u64, u64, u64)> {
        let c = sys::cstring(path).ok()?;
        let st = sys::lstat(&c).ok()?;
        let now = sys::name_to_handle(libc::AT_FDCWD, &c, h.fsid).ok()?;
        (now == *h).then_some((st.st_dev, st.st_ino, st.st_size as u64))
    }

    /// Keeps the marks and the map in step with one namespace event. Returns directories that
    /// should be watched but could not be (mark limit or error).
    pub fn update(&mut self, mask: u64, info: &FidInfo) -> Vec<PathBuf> {
        let mut unwatched = Vec::new();
        let is_dir = mask & libc::FAN_ONDIR != 0;
        let child_of = |t: &Self, dir: &FileHandle, name: &std::ffi::OsStr| {
            t.known.get(dir).filter(|k| k.is_dir).map(|k| k.path.join(name))
        };
        let added = if self.rename_events { libc::FAN_CREATE } else { libc::FAN_CREATE | libc::FAN_MOVED_TO };
        // A directory created or moved in: mark it and everything below it (a known handle at a
        // new path is a move inside the trees: the walk rewrites the paths below it).
        if is_dir
            && mask & added != 0
            && let Some((dh, Some(name))) = &info.dir
            && let Some(p) = child_of(self, dh, name)
        {
            unwatched.extend(self.walk(&p, false).unwrap_or_default());
        }
        // FAN_RENAME carries only the sides whose directory this group watches (the other
        // record is left out), so a missing new side means "moved out of the trees".
        if is_dir && mask & libc::FAN_RENAME != 0 {
            let new = info.new.as_ref().and_then(|(nh, nn)| child_of(self, nh, nn));
            let old = info.old.as_ref().and_then(|(oh, on)| child_of(self, oh, on));
            match (new, old) {
                (Some(p), _) => unwatched.extend(self.walk(&p, false).unwrap_or_default()),
                (None, Some(old)) => self.unmark_under(&old),
                (None, None) => {}
            }
        }
        // A file name removed from or added to a tree directory (removal first: merged events
        // of a name deleted and created again end with the file that exists now).
        if self.files
            && !is_dir
            && let Some((dh, Some(name))) = &info.dir
            && let Some(p) = child_of(self, dh, name)
        {
            if mask & (libc::FAN_DELETE | libc::FAN_MOVED_FROM) != 0 {
                self.names.remove(&p);
            }
            if mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0 {
                match self.add_member(&p) {
                    Ok(()) => {}
                    Err(FanotifyError::Path { source, .. }) if vanished(&source) => {}
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "Cannot mark protected file.");
                        unwatched.push(p);
                    }
                }
            }
        }
        if mask & libc::FAN_DELETE_SELF != 0
            && let Some(h) = &info.fid
        {
            self.known.remove(h);
        }
        if is_dir && mask & libc::FAN_DELETE != 0 {
            match &info.fid {
                Some(h) => {
                    self.known.remove(h);
                }
                None => {
                    if let Some((dh, Some(name))) = &info.dir
                        && let Some(p) = child_of(self, dh, name)
                    {
                        self.known.retain(|_, k| k.path != p);
                    }
                }
            }
        }
        // A marked object moved. Inside the trees the walk above already has the new path;
        // otherwise (a protected root or single file moved, or a directory moved out on a
        // kernel without FAN_RENAME) ask the kernel where it is now.
        if mask & libc::FAN_MOVE_SELF != 0
            && let Some(h) = &info.fid
            && let Some(k) = self.known.get(h)
            && let Some(now) = self.resolve_handle(h)
            && now != k.path
        {
            let (old, dir) = (k.path.clone(), k.is_dir);
            let root = self.roots.iter().position(|r| *r == old);
            if let Some(i) = root {
                self.roots[i] = now.clone();
            }
            if !dir {
                if let Some(k) = self.known.get_mut(h) {
                    k.path = now;
                }
            } else if root.is_some() || self.roots.iter().any(|r| now.starts_with(r)) {
                self.rewrite_prefix(&old, &now);
            } else {
                self.unmark_under(&old);
            }
        }
        self.warn_unmarked();
        unwatched
    }

    /// Walks every root again (after a queue overflow, when creations may have been missed),
    /// and forgets directories that are no longer in any tree. Returns what could not be
    /// watched.
    pub fn rescan(&mut self) -> Vec<PathBuf> {
        self.seen = Some(HashSet::new());
        // The walk names every file that is still there.
        self.names = Names::default();
        let mut unwatched = Vec::new();
        for root in self.roots.clone() {
            match std::fs::symlink_metadata(&root) {
                Ok(m) if m.is_dir() => unwatched.extend(self.walk(&root, false).unwrap_or_default()),
                Ok(_) => {
                    if let Err(e) = self.add_file(&root) {
                        tracing::warn!(path = %root.display(), error = %e, "Cannot mark protected file.");
                        unwatched.push(root);
                    }
                }
                Err(_) => {}
            }
        }
        self.warn_unmarked();
        let seen = self.seen.take().unwrap_or_default();
        let gone: Vec<FileHandle> = self.known.keys().filter(|h| !seen.contains(*h)).cloned().collect();
        for h in gone {
            if let Some(k) = self.known.remove(&h)
                && k.is_dir
            {
                self.unmark_handle(&h);
            }
        }
        unwatched
    }

    /// Removes every mark this tree placed (best effort: paths may be stale; closing the
    /// groups removes whatever is left).
    pub fn unmark_all(&mut self) {
        let files = std::mem::take(&mut self.names);
        for path in files.paths() {
            self.unmark_file(path);
        }
        for (h, k) in std::mem::take(&mut self.known) {
            if k.is_dir {
                self.unmark_handle(&h);
            } else {
                self.unmark_file(&k.path);
            }
        }
    }

    fn unmark_file(&self, path: &Path) {
        let Ok(c) = sys::cstring(path) else { return };
        for g in self.groups.iter().filter(|g| g.file_mask != 0) {
            let flags = libc::FAN_MARK_REMOVE | libc::FAN_MARK_DONT_FOLLOW;
            let _ = sys::fanotify_mark(g.fd.as_fd(), flags, g.file_mask, libc::AT_FDCWD, Some(&c));
        }
    }

    /// Marks `root` and every directory below it (not following symlinks). `strict`: fail on
    /// the first problem (startup); otherwise collect unwatchable directories and go on.
    fn walk(&mut self, root: &Path, strict: bool) -> Result<Vec<PathBuf>, FanotifyError> {
        let mut unwatched = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match self.add_dir(&dir) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "Cannot watch directory.");
                    unwatched.push(dir);
                    continue;
                }
            }
            // The mark is in place before listing: entries created from now on produce events,
            // entries created before are found here.
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if vanished(&e) => continue,
                Err(e) if strict => return Err(FanotifyError::path("read_dir", &dir)(e)),
                Err(_) => {
                    unwatched.push(dir);
                    continue;
                }
            };
            for ent in entries.flatten() {
                // `file_type` does not follow symlinks.
                match ent.file_type() {
                    Ok(t) if t.is_dir() => stack.push(ent.path()),
                    Ok(t) if t.is_file() && self.files => match self.add_member(&ent.path()) {
                        Ok(()) => {}
                        Err(FanotifyError::Path { source, .. }) if vanished(&source) => {}
                        // Still protected through its directory's mark (not through links
                        // elsewhere): counted, said once by the caller.
                        Err(FanotifyError::TooManyMarks { .. }) => self.unmarked_files += 1,
                        Err(e) if strict => return Err(e),
                        Err(e) => {
                            tracing::warn!(path = %ent.path().display(), error = %e, "Cannot mark protected file.");
                            unwatched.push(ent.path());
                        }
                    },
                    _ => {}
                }
            }
        }
        Ok(unwatched)
    }

    fn fsid_for(&mut self, dev: u64, fd: &OwnedFd) -> Result<[i32; 2], io::Error> {
        if let Some(f) = self.fsids.get(&dev) {
            return Ok(*f);
        }
        let fsid = sys::fsid(fd.as_raw_fd(), None)?;
        self.fsids.insert(dev, fsid);
        self.fs.entry(fsid).or_insert((dev, fd.try_clone()?));
        Ok(fsid)
    }

    fn note_seen(&mut self, h: &FileHandle) {
        if let Some(s) = &mut self.seen {
            s.insert(h.clone());
        }
    }

    /// Marks one directory in every group. `Ok(false)`: it is gone or no longer a directory.
    fn add_dir(&mut self, path: &Path) -> Result<bool, FanotifyError> {
        let c = sys::cstring(path).map_err(FanotifyError::path("open", path))?;
        let fd = match sys::open_dir(&c) {
            Ok(fd) => fd,
            Err(e) if vanished(&e) => return Ok(false),
            Err(e) => return Err(FanotifyError::path("open", path)(e)),
        };
        let st = sys::fstat(fd.as_raw_fd()).map_err(FanotifyError::path("fstat", path))?;
        let fsid = self.fsid_for(st.st_dev, &fd).map_err(FanotifyError::path("fstatfs", path))?;
        let h = sys::name_to_handle(fd.as_raw_fd(), c"", fsid).map_err(handle_error(path))?;
        match self.known.get(&h).map(|k| k.path.clone()) {
            Some(old) if old != path => self.rewrite_prefix(&old, path),
            Some(_) => {}
            None if self.known.len() >= self.max => {
                return Err(FanotifyError::TooManyMarks { path: path.to_path_buf(), limit: self.max });
            }
            None => {}
        }
        for g in self.groups.iter().filter(|g| g.dir_mask != 0) {
            let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR;
            sys::fanotify_mark(g.fd.as_fd(), flags, g.dir_mask, fd.as_raw_fd(), None)
                .map_err(|e| mark_error(e, path, g.needs))?;
        }
        self.note_seen(&h);
        self.known
            .insert(h, Known { path: path.to_path_buf(), is_dir: true, dev: st.st_dev, ino: st.st_ino });
        Ok(true)
    }

    /// Marks a regular file inside a tree and indexes its name (never opening it, as
    /// [`Self::add_file`]).
    fn add_member(&mut self, path: &Path) -> Result<(), FanotifyError> {
        let c = sys::cstring(path).map_err(FanotifyError::path("lstat", path))?;
        let st = sys::lstat(&c).map_err(FanotifyError::path("lstat", path))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(());
        }
        let id = (st.st_dev, st.st_ino);
        if self.names.get(id).is_none() && self.len() >= self.max {
            return Err(FanotifyError::TooManyMarks { path: path.to_path_buf(), limit: self.max });
        }
        for g in self.groups.iter().filter(|g| g.file_mask != 0) {
            let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_DONT_FOLLOW;
            sys::fanotify_mark(g.fd.as_fd(), flags, g.file_mask, libc::AT_FDCWD, Some(&c))
                .map_err(|e| mark_error(e, path, g.needs))?;
        }
        self.names.insert(id, path.to_path_buf());
        Ok(())
    }

    /// Marks one protected single file, by path (never opening it: an open could be a
    /// permission event the caller itself must answer).
    fn add_file(&mut self, path: &Path) -> Result<(), FanotifyError> {
        let c = sys::cstring(path).map_err(FanotifyError::path("lstat", path))?;
        let st = sys::lstat(&c).map_err(FanotifyError::path("lstat", path))?;
        if is_dir_mode(&st) {
            return self.add_dir(path).map(|_| ());
        }
        let fsid = match self.fsids.get(&st.st_dev) {
            Some(f) => *f,
            None => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                let pc = sys::cstring(parent).map_err(FanotifyError::path("open", parent))?;
                let pfd = sys::open_dir(&pc).map_err(FanotifyError::path("open", parent))?;
                self.fsid_for(st.st_dev, &pfd).map_err(FanotifyError::path("fstatfs", parent))?
            }
        };
        let h = sys::name_to_handle(libc::AT_FDCWD, &c, fsid).map_err(handle_error(path))?;
        if !self.known.contains_key(&h) && self.known.len() >= self.max {
            return Err(FanotifyError::TooManyMarks { path: path.to_path_buf(), limit: self.max });
        }
        for g in self.groups.iter().filter(|g| g.file_mask != 0) {
            let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_DONT_FOLLOW;
            sys::fanotify_mark(g.fd.as_fd(), flags, g.file_mask, libc::AT_FDCWD, Some(&c))
                .map_err(|e| mark_error(e, path, g.needs))?;
        }
        self.note_seen(&h);
        if self.files {
            self.names.insert((st.st_dev, st.st_ino), path.to_path_buf());
        }
        self.known
            .insert(h, Known { path: path.to_path_buf(), is_dir: false, dev: st.st_dev, ino: st.st_ino });
        Ok(())
    }

    /// A directory moved from `old` to `new`: every path at or below `old` follows.
    fn rewrite_prefix(&mut self, old: &Path, new: &Path) {
        self.names.rewrite_prefix(old, new);
        for k in self.known.values_mut() {
            if let Ok(rest) = k.path.strip_prefix(old) {
                k.path = if rest.as_os_str().is_empty() { new.to_path_buf() } else { new.join(rest) };
            }
        }
    }

    /// Unmarks and forgets every directory at or below `path` (and forgets the file names
    /// there).
    fn unmark_under(&mut self, path: &Path) {
        self.names.remove_under(path);
        let under: Vec<FileHandle> = self
            .known
            .iter()
            .filter(|(_, k)| k.is_dir && k.path.starts_with(path))
            .map(|(h, _)| h.clone())
            .collect();
        for h in under {
            self.unmark_handle(&h);
            self.known.remove(&h);
        }
    }

    /// Removes a directory's marks, reaching it by handle (its path may be unknown now).
    fn unmark_handle(&self, h: &FileHandle) {
        let Some((_, mount_fd)) = self.fs.get(&h.fsid) else {
            return;
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let Ok(fd) = sys::open_by_handle(mount_fd.as_raw_fd(), h, flags) else {
            return;
        };
        for g in self.groups.iter().filter(|g| g.dir_mask != 0) {
            let flags = libc::FAN_MARK_REMOVE | libc::FAN_MARK_ONLYDIR;
            let _ = sys::fanotify_mark(g.fd.as_fd(), flags, g.dir_mask, fd.as_raw_fd(), None::<&CStr>);
        }
    }
}

fn handle_error(path: &Path) -> impl FnOnce(io::Error) -> FanotifyError {
    let path = path.to_path_buf();
    move |e| FanotifyError::Path {
        call: "name_to_handle_at (the filesystem must export file handles)",
        path,
        source: e,
    }
}

fn mark_error(e: io::Error, path: &Path, needs: (&'static str, &'static str)) -> FanotifyError {
    let call = match e.raw_os_error() {
        Some(libc::EINVAL) => {
            return FanotifyError::Unsupported { feature: needs.0, since: needs.1, source: e };
        }
        Some(libc::ENODEV | libc::EOPNOTSUPP | libc::EXDEV) => {
            "fanotify_mark (filesystem has no usable fsid or file handles)"
        }
        Some(libc::ENOSPC) => "fanotify_mark (fs.fanotify.max_user_marks reached)",
        _ => "fanotify_mark",
    };
    FanotifyError::Path { call, path: path.to_path_buf(), source: e }
}
