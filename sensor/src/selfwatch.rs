//! Changes to the sensor's own files by other processes, reported as `sensor.tamper` with
//! `mnsensor.tamper.kind: file` (the record type: `crate::event::tamper`).
//!
//! The files are the running binary (`/proc/self/exe`), the systemd unit when installed, the
//! configuration file, the policy files or directories and the state directory (ledger, key,
//! cursors). A second fanotify observer ([`Observer`], the one that watches the protected
//! trees) marks them: directories recursively, single files by inode (so a rename or an unlink
//! of the binary or the configuration is seen as a move or an attribute change of the file
//! itself). The observer leaves out the sensor's own activity (its ledger and cursor writes)
//! by pid. The actor's identity is read from `/proc` when the event is read, as for the other
//! fanotify records.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use crate::{
    event::{
        Envelope, Event,
        tamper::{FileTamper, Tamper, TamperOp},
        time::Clock,
    },
    fanotify::{Content, FsEvent, FsEventKind, Observer, ObserverOptions},
};

/// Where the packaged unit can be (`packaging/mnsensor.service`; an override in /etc wins).
const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/mnsensor.service",
    "/usr/lib/systemd/system/mnsensor.service",
    "/lib/systemd/system/mnsensor.service",
];
/// One record per process, file and action within this window (a copy is many writes).
const REPEAT_WINDOW: Duration = Duration::from_secs(10);
/// Most files whose metadata is remembered.
const MAX_CATALOG: usize = 1 << 16;

/// The sensor's own files, each with its role (`binary`, `unit`, `config`, `policy`,
/// `state`). Paths that do not exist are left out.
pub fn own_files(
    config: Option<&Path>,
    policies: &[PathBuf],
    state_dir: &Path,
) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    let mut add = |p: &Path, role| {
        if let Ok(p) = p.canonicalize()
            && !out.iter().any(|(q, _)| *q == p)
        {
            out.push((p, role));
        }
    };
    if let Ok(exe) = std::env::current_exe() {
        add(&exe, "binary");
    }
    if let Some(unit) = UNIT_PATHS.iter().map(Path::new).find(|p| p.exists()) {
        add(unit, "unit");
    }
    if let Some(c) = config {
        add(c, "config");
    }
    for p in policies {
        add(p, "policy");
    }
    add(state_dir, "state");
    out
}

/// What was last known about one of the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    ino: u64,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
}

impl Meta {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(Self {
            ino: m.ino(),
            size: m.size(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
        })
    }
}

/// The observer of the sensor's own files and what it knows about them.
pub struct SelfWatch {
    pub observer: AsyncFd<Observer>,
    roots: Vec<(PathBuf, &'static str)>,
    has_rename: bool,
    catalog: HashMap<PathBuf, Meta>,
    recent: HashMap<(u32, PathBuf, &'static str), Instant>,
    /// Overflows and lost reads since the last loss report.
    pub lost: u64,
}

impl SelfWatch {
    /// Starts watching `roots`; a root that cannot be marked (a filesystem without file
    /// handles) is left out and named in the log; `None` (said loudly) where fanotify is
    /// unavailable.
    pub fn start(mut roots: Vec<(PathBuf, &'static str)>) -> Option<Self> {
        // Changes only: opens and closes of the sensor's own files are not judged.
        let opts = ObserverOptions { content: Content::Off, ..ObserverOptions::default() };
        let mut paths: Vec<PathBuf> = roots.iter().map(|(p, _)| p.clone()).collect();
        if Observer::with_options(&paths, opts).is_err() && paths.len() > 1 {
            roots.retain(|(p, role)| match Observer::with_options(std::slice::from_ref(p), opts) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(path = %p.display(), role, error = %e, "Cannot watch this file of the sensor's own; its changes are not reported.");
                    false
                }
            });
            paths = roots.iter().map(|(p, _)| p.clone()).collect();
        }
        match Observer::with_options(&paths, opts).and_then(Observer::into_async) {
            Ok(observer) => {
                let has_rename = observer.get_ref().features().target_fid_and_rename;
                let mut w = Self {
                    observer,
                    roots,
                    has_rename,
                    catalog: HashMap::new(),
                    recent: HashMap::new(),
                    lost: 0,
                };
                for p in paths {
                    w.walk(&p);
                }
                Some(w)
            }
            Err(e) => {
                tracing::error!(error = %e, "fanotify unavailable: changes to the sensor's own files are not reported.");
                None
            }
        }
    }

    /// The files watched, as `role=path`.
    pub fn watched(&self) -> Vec<String> {
        self.roots.iter().map(|(p, role)| format!("{role}={}", p.display())).collect()
    }

    fn walk(&mut self, path: &Path) {
        if self.catalog.len() >= MAX_CATALOG {
            return;
        }
        let Some(meta) = Meta::of(path) else { return };
        self.catalog.insert(path.to_owned(), meta);
        if path.is_dir() && !path.is_symlink() {
            for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                self.walk(&e.path());
            }
        }
    }

    /// The role of the root `path` lies in (the innermost).
    fn role(&self, path: &Path) -> Option<&'static str> {
        self.roots
            .iter()
            .filter(|(r, _)| path.starts_with(r))
            .max_by_key(|(r, _)| r.as_os_str().len())
            .map(|(_, role)| *role)
    }

    fn is_root(&self, path: &Path) -> bool {
        self.roots.iter().any(|(r, _)| r == path)
    }

    /// Turns observer events into `sensor.tamper` records (not yet enriched).
    pub fn judge(&mut self, events: Vec<FsEvent>) -> Vec<Envelope> {
        let mut out = Vec::new();
        self.recent.retain(|_, t| t.elapsed() < REPEAT_WINDOW);
        for ev in events {
            let Some((action, path, old_path)) = self.action(&ev) else { continue };
            let Some(role) = self.role(&path).or_else(|| old_path.as_deref().and_then(|p| self.role(p)))
            else {
                continue;
            };
            let key = (ev.pid, path.clone(), action);
            if self.recent.contains_key(&key) {
                continue;
            }
            self.recent.insert(key, Instant::now());
            let file = FileTamper {
                role,
                action,
                path: path.display().to_string(),
                old_path: old_path.map(|p| p.display().to_string()),
            };
            let tamper = Tamper { subject: crate::watch::subject(ev.pid), op: TamperOp::File(file) };
            out.push(Envelope::new(Clock::realtime_ns(), Event::Tamper(tamper)));
        }
        out
    }

    /// What `ev` did, to which path (and from which, for a rename); `None` for what is not
    /// a change (opens, closes) or is reported by another event of the same change.
    fn action(&mut self, ev: &FsEvent) -> Option<(&'static str, PathBuf, Option<PathBuf>)> {
        use FsEventKind as K;
        let path = ev.path.clone();
        match ev.kind {
            K::Overflow | K::Lost => {
                self.lost += 1;
                None
            }
            K::Unwatched => {
                tracing::error!(path = %path.display(), "A directory of the sensor's own files is not watched.");
                None
            }
            K::Modify => {
                let before = self.catalog.get(&path).copied();
                let now = Meta::of(&path);
                if let Some(m) = now {
                    self.remember(&path, m);
                }
                let shrunk = before.zip(now).is_some_and(|(b, n)| n.size < b.size);
                Some((if shrunk { "truncate" } else { "write" }, path, None))
            }
            K::Create => {
                if let Some(m) = Meta::of(&path) {
                    self.remember(&path, m);
                }
                Some(("create", path, None))
            }
            K::Delete => {
                self.catalog.remove(&path);
                Some(("delete", path, None))
            }
            K::Rename => {
                let old = ev.old_path.clone();
                if let Some(m) = old.as_ref().and_then(|o| self.catalog.remove(o)) {
                    self.remember(&path, m);
                }
                Some(("rename", path, old))
            }
            K::MovedFrom if !self.has_rename => Some(("rename", PathBuf::new(), Some(path))),
            K::MovedTo if !self.has_rename => Some(("rename", path, None)),
            // A marked root itself moved (its parent is not watched).
            K::MoveSelf => {
                let old = ev.old_path.clone().unwrap_or_else(|| path.clone());
                self.is_root(&old).then_some(("rename", path, Some(old)))
            }
            K::Attrib => self.attrib(path),
            _ => None,
        }
    }

    /// chmod, chown, or (for a single file watched by itself, whose directory is not) an
    /// unlink or a replacement, by comparing with what was known.
    fn attrib(&mut self, path: PathBuf) -> Option<(&'static str, PathBuf, Option<PathBuf>)> {
        let before = self.catalog.get(&path).copied();
        let Some(now) = Meta::of(&path) else {
            // Gone: a directory's own `Delete` event reports entries; a root file has none.
            return self.is_root(&path).then_some(("delete", path, None));
        };
        self.remember(&path, now);
        let action = match before {
            Some(b) if b.ino != now.ino => "replace",
            Some(b) if b.mode != now.mode => "chmod",
            Some(b) if (b.uid, b.gid) != (now.uid, now.gid) => "chown",
            Some(b) if now.nlink < b.nlink => "delete",
            _ => "attrib",
        };
        Some((action, path, None))
    }

    fn remember(&mut self, path: &Path, meta: Meta) {
        if self.catalog.len() < MAX_CATALOG || self.catalog.contains_key(path) {
            self.catalog.insert(path.to_owned(), meta);
        }
    }
}
