//! Changes to protected files (delete, rename, link, truncate, chmod, chown) and accesses only
//! fanotify saw. From the kernel (`sensor-ebpf/src/change.rs`, decoded in
//! `crate::decode`) or from the fanotify observer (`crate::watch`).
use super::{FileRef, Name, Record, Subject, attr, json};

/// What changed.
#[derive(Clone, Debug)]
pub enum Change {
    /// `file.delete`: size and remaining links when known.
    Delete { size: Option<u64>, links: Option<u64> },
    /// `file.rename`: from `old_path`.
    Rename { old_path: Option<String> },
    /// `file.link`: a new name for the file at `old_path` (`None` when the link's name was
    /// resolved by enrich).
    Link { old_path: Option<String>, links: u64 },
    /// `file.truncate`.
    Truncate { size: u64, old_size: u64 },
    /// `file.chmod` (permission bits).
    Chmod { mode: u32, old_mode: u32 },
    /// `file.chown`.
    Chown { uid: u32, gid: u32, old_uid: u32, old_gid: u32 },
    /// A hard link the kernel saw by its syscall's names only (`base` is the directory it
    /// walked, `name` the new name): enrich resolves it to `Link`, or drops it when the inode
    /// is not protected.
    LinkNames { base: String, name: String },
}

/// Which source reported a change or access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedBy {
    Kernel,
    Fanotify,
}

/// A change to a protected file.
#[derive(Clone, Debug)]
pub struct FileChange {
    pub subject: Subject,
    pub file: FileRef,
    pub change: Change,
    pub observed_by: ObservedBy,
}

impl FileChange {
    pub fn name(&self) -> Name {
        match self.change {
            Change::Delete { .. } => Name::FileDelete,
            Change::Rename { .. } => Name::FileRename,
            Change::Link { .. } | Change::LinkNames { .. } => Name::FileLink,
            Change::Truncate { .. } => Name::FileTruncate,
            Change::Chmod { .. } => Name::FileChmod,
            Change::Chown { .. } => Name::FileChown,
        }
    }

    pub fn write(&self, rec: &mut Record) {
        let fanotify = self.observed_by == ObservedBy::Fanotify;
        if fanotify {
            rec.set(attr::OBSERVED_BY, "fanotify");
        }
        self.subject.write(rec);
        self.file.write(rec);
        if fanotify {
            self.file.write_protected(rec);
        }
        let out = rec.body();
        match &self.change {
            Change::Delete { size, links } => {
                json::opt(out, attr::FILE_SIZE, *size);
                json::opt(out, attr::FILE_LINKS, *links);
            }
            Change::Rename { old_path } => write_old_path(out, old_path.as_deref()),
            Change::Link { old_path, links } => {
                write_old_path(out, old_path.as_deref());
                json::pair(out, attr::FILE_LINKS, links);
            }
            Change::Truncate { size, old_size } => {
                json::pair(out, attr::FILE_SIZE, size);
                json::pair(out, attr::FILE_OLD_SIZE, old_size);
            }
            Change::Chmod { mode, old_mode } => {
                json::pair(out, attr::FILE_MODE, &format!("{mode:04o}"));
                json::pair(out, attr::FILE_OLD_MODE, &format!("{old_mode:04o}"));
            }
            Change::Chown { uid, gid, old_uid, old_gid } => {
                json::pair(out, attr::FILE_OWNER_ID, uid);
                json::pair(out, attr::FILE_GROUP_ID, gid);
                json::pair(out, attr::FILE_OLD_OWNER_ID, old_uid);
                json::pair(out, attr::FILE_OLD_GROUP_ID, old_gid);
            }
            // Resolved (or dropped) by enrich; nothing more to say unresolved.
            Change::LinkNames { .. } => {}
        }
        if !fanotify {
            self.file.write_protected(rec);
        }
    }
}

/// `mnsensor.file.old_path`, with its bytes when they are not UTF-8.
fn write_old_path(out: &mut Vec<u8>, old_path: Option<&str>) {
    if let Some(p) = old_path {
        json::pair(out, attr::FILE_OLD_PATH, p);
        super::path::write_bytes(out, attr::FILE_OLD_PATH_BYTES, p);
    }
}

/// `file.access`: fanotify saw an access to a protected file that no kernel record explains
/// (the in-kernel NFS or SMB server, a descriptor passed to another process).
#[derive(Clone, Debug)]
pub struct FileAccess {
    pub subject: Subject,
    pub file: FileRef,
    /// `open`, `access`, `modify`, `close_write` or `close_nowrite`.
    pub fanotify_event: &'static str,
}

impl FileAccess {
    pub fn write(&self, rec: &mut Record) {
        rec.set(attr::OBSERVED_BY, "fanotify");
        self.subject.write(rec);
        self.file.write(rec);
        self.file.write_protected(rec);
        rec.set(attr::FANOTIFY_EVENT, self.fanotify_event);
    }
}
