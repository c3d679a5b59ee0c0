//! fanotify for protected trees: an [`Observer`] (notification events with the acting pid)
//! and a [`Responder`] (open/exec/read permission decisions under a hard deadline).
//!
//! Everything is marked with **inode marks** only, on the directories of each protected tree
//! (with `FAN_EVENT_ON_CHILD`) and on protected single files; the responder also marks every
//! regular file inside its trees. Never mounts, never filesystems: nothing outside the
//! configured trees is ever watched or intercepted.
//!
//! # Enforcement by file identity
//!
//! An inode mark belongs to the inode, not to a name: it fires for every open of the file,
//! through any hard link, bind mount, second mount of the same filesystem (same superblock)
//! or mount namespace, including ones made after the marks were placed. A directory mark with
//! `FAN_EVENT_ON_CHILD` fires for opens whose parent dentry is that directory, so it too
//! follows the tree into bind mounts and other mounts, but not into hard links elsewhere. So
//! the responder marks every regular file of its trees (and each file created, hard-linked or
//! moved in later, as its `FAN_CREATE`/`FAN_MOVED_TO` is read) and keeps the file's in-tree
//! names by (device, inode); each request carries the in-tree name the decision is about
//! ([`PermissionRequest::path`]) and the name opened ([`PermissionRequest::opened`]).
//!
//! Measured on this project's CI machine kind (Linux 6.18, ext4 on a loop device, 200,000
//! open+close of unrelated files in a sibling directory of the same filesystem, 3 runs): no
//! marks 0.8–1.2 µs; inode marks on 10,000 protected files and their directory 0.8–1.4 µs
//! (no measurable cost: fsnotify only looks at the marks of the opened inode and its parent);
//! one `FAN_MARK_FILESYSTEM` permission mark answered at once by a C loop 4.1–5.5 µs, i.e. a
//! user-space round trip on every open of the filesystem (with the daemon's decision path,
//! which reads `/proc`, far more), and a stalled daemon would stall the whole filesystem.
//! Placing an inode mark costs about 2 µs; a marked inode stays in the inode cache (about
//! 1 KiB of kernel memory per protected file) until the group is closed.
//!
//! # Kernel facts relied on
//!
//! References: fanotify(7) <https://man7.org/linux/man-pages/man7/fanotify.7.html>,
//! fanotify_init(2) <https://man7.org/linux/man-pages/man2/fanotify_init.2.html>,
//! fanotify_mark(2) <https://man7.org/linux/man-pages/man2/fanotify_mark.2.html>,
//! and the kernel source `fs/notify/fanotify/`
//! <https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/tree/fs/notify/fanotify>.
//!
//! | feature | since | used for |
//! |---|---|---|
//! | `fanotify_init`/`fanotify_mark`, `FAN_OPEN`/`ACCESS`/`MODIFY`/`CLOSE_*`, `FAN_EVENT_ON_CHILD`, `FAN_ONDIR`, `FAN_CLASS_CONTENT` + `FAN_OPEN_PERM`/`FAN_ACCESS_PERM` (`CONFIG_FANOTIFY_ACCESS_PERMISSIONS`) | 2.6.37 | content events, permission responder |
//! | `FAN_OPEN_EXEC_PERM` | 5.0 | exec permission |
//! | `FAN_REPORT_FID`; `FAN_CREATE`/`DELETE`/`DELETE_SELF`/`MOVED_FROM`/`MOVED_TO`/`MOVE_SELF`/`ATTRIB` | 5.1 | namespace events |
//! | `FAN_REPORT_DIR_FID`, `FAN_REPORT_NAME` (`FAN_REPORT_DFID_NAME`) | 5.9 | parent directory + entry name (**required**) |
//! | tmpfs has an fsid (FID marks on tmpfs) | 5.13 | — |
//! | `FAN_REPORT_TARGET_FID` (commit d61fd650e9d2), `FAN_RENAME` | 5.17 | the child's own handle on create/delete/move; one event with both names (optional: probed, used when present) |
//!
//! Behaviour this module depends on:
//! * An fd group (no `FAN_REPORT_*FID`) only receives events that carry a *path*; the kernel
//!   opens the file for the reader with `FMODE_NONOTIFY` (no recursion). `chmod`, `chown` and
//!   `truncate` go through `notify_change()`, which reports a dentry, not a path, so they
//!   reach **only** FID groups (`fsnotify_change()` in `include/linux/fsnotify.h`; size
//!   changes are `FAN_MODIFY`, mode/owner/both times `FAN_ATTRIB`). The observer's FID group
//!   therefore also asks for `FAN_MODIFY` (see [`observer`] for de-duplication).
//! * With `FAN_REPORT_DFID_NAME`, events on a directory itself carry that directory's handle
//!   and the name `"."` (commit 929943b38daf, "fanotify: add support for FAN_REPORT_NAME",
//!   <https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/commit/?id=929943b38daf817f2e6d303ea04401651fc3bc05>).
//!   Info records come in no guaranteed order (fanotify(7)). `FAN_RENAME` carries an
//!   `OLD_DFID_NAME` / `NEW_DFID_NAME` record only for the side(s) whose directory the group
//!   watches (verified on 6.18: a move out of the tree has no new-side record).
//! * Events are merged in the queue (same object, same pid, OR-ed masks), except permission
//!   events, which are never merged (fanotify(7)). `pid` is the thread-group id unless
//!   `FAN_REPORT_TID`; it is 0 for a process outside the reader's pid namespace.
//! * The queue holds `/proc/sys/fs/fanotify/max_queued_events` events (16384 before 5.13);
//!   past that events are dropped and one `FAN_Q_OVERFLOW` (fd `FAN_NOFD`) is queued.
//!   **A permission event dropped that way is allowed without asking**: `fanotify_handle_event()`
//!   (`fs/notify/fanotify/fanotify.c`) frees an event it could not queue and returns 0. So the
//!   responder's group uses `FAN_UNLIMITED_QUEUE`: every queued permission event belongs to a
//!   blocked task, which bounds that queue.
//! * Marks are counted per user in `/proc/sys/fs/fanotify/max_user_marks` (5.13+; before,
//!   8192 per group), groups in `max_user_groups` (128). An inode mark goes away with its
//!   inode and with its group.
//! * A denied permission event makes the caller's syscall fail with `EPERM`. Closing a group
//!   answers every outstanding permission event with `FAN_ALLOW` (fanotify(7), "Closing the
//!   fanotify file descriptor"). If creating an event's descriptor fails while reading (for
//!   example `EMFILE`), the kernel denies that permission event (`fanotify_read()` in
//!   `fs/notify/fanotify/fanotify_user.c`); the responder caps held descriptors to avoid it.
//! * Monitoring by directory marks is racy for new subdirectories: events inside a directory
//!   created after start are missed until its mark is added (fanotify(7), "Limitations and
//!   caveats"). We add the mark as soon as the `FAN_CREATE`/`FAN_MOVED_TO`/`FAN_RENAME` event
//!   is read, then list the new directory to mark subdirectories created in the meantime.
//! * `open_by_handle_at(2)` needs `CAP_DAC_READ_SEARCH`; FID marks need a filesystem with an
//!   fsid that can encode handles (`ENODEV`/`EOPNOTSUPP`/`EXDEV` otherwise).
//!
//! Everything here needs `CAP_SYS_ADMIN` (permission classes, `FAN_UNLIMITED_QUEUE`, the pid in
//! events of other processes).
//!
//! # Limits
//!
//! * At most `max_marks` objects (directories + single files, and for the responder every
//!   file in the trees; default [`DEFAULT_MAX_MARKS`] for the observer,
//!   [`responder_mark_limit`] for the responder) per observer or responder: over the limit
//!   at start is an error (for the responder's files: they stay unmarked, decided through
//!   their directory's mark only, and a warning says how many)
//!   ([`FanotifyError::TooManyMarks`]); a directory created later beyond it is reported
//!   (`FsEventKind::Unwatched`, `Notice::Unwatched`) and left unwatched.
//! * Symlinks are never followed while walking; a tree spanning several filesystems works as
//!   long as each can report file handles.
//! * mmap(2) accesses and remote (network filesystem) changes are not reported (fanotify(7)).

pub mod observer;
mod record;
pub mod responder;
mod sys;
mod tree;

#[cfg(test)]
mod tests;

use std::{io, path::PathBuf};

pub use observer::{Content, FsEvent, FsEventKind, Observer, ObserverOptions, next_events};
pub use responder::{
    Decide, DecisionCounts, FailMode, Notice, PermMask, PermissionRequest, Quick, QuickRequest, Responder,
    ResponderOptions, Verdict,
};

/// The default cap on marked objects (directories plus single files) per protected set. It is
/// the per-group limit kernels before 5.13 enforce, so the same configuration works there.
/// The observer uses two groups and the responder two, so each marked directory costs up to
/// four marks against `/proc/sys/fs/fanotify/max_user_marks`; each file in an enforced tree
/// costs one more (the responder's permission group).
pub const DEFAULT_MAX_MARKS: usize = 8192;

/// The responder's default cap on marked objects: half of `fs.fanotify.max_user_marks`
/// (5.13+, a per-user budget that other groups of root share), or [`DEFAULT_MAX_MARKS`] on
/// older kernels, where the limit is per group.
pub fn responder_mark_limit() -> usize {
    std::fs::read_to_string("/proc/sys/fs/fanotify/max_user_marks")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(DEFAULT_MAX_MARKS, |n| (n / 2).max(DEFAULT_MAX_MARKS))
}

/// An opaque file handle as fanotify reports it (`struct file_handle` plus the filesystem id),
/// usable with `open_by_handle_at(2)` and stable across renames.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// `statfs(2)` `f_fsid` of the filesystem.
    pub fsid: [i32; 2],
    /// `handle_type` (filesystem-specific encoding).
    pub handle_type: i32,
    /// `f_handle`.
    pub bytes: Vec<u8>,
}

/// What the running kernel supports beyond the required baseline (5.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// `FAN_REPORT_TARGET_FID` and `FAN_RENAME` (5.17).
    pub target_fid_and_rename: bool,
}

/// A fanotify failure, with the call and the path involved.
#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    /// The kernel lacks a required feature.
    #[error("fanotify: {feature} is not supported by this kernel (needs Linux {since}): {source}")]
    Unsupported { feature: &'static str, since: &'static str, source: io::Error },
    /// A call on a path failed.
    #[error("fanotify: {call} {path}: {source}")]
    Path { call: &'static str, path: PathBuf, source: io::Error },
    /// A call failed.
    #[error("fanotify: {call}: {source}")]
    Sys { call: &'static str, source: io::Error },
    /// A protected set needs more marks than allowed.
    #[error("fanotify: marking {path} would exceed the limit of {limit} marked objects")]
    TooManyMarks { path: PathBuf, limit: usize },
    /// The kernel returned a buffer this code cannot parse.
    #[error("fanotify: malformed event buffer: {0}")]
    Malformed(&'static str),
}

impl FanotifyError {
    pub(crate) fn sys(call: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Sys { call, source }
    }

    pub(crate) fn path(call: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Path { call, path, source }
    }
}

/// Flags of every group: close-on-exec, non-blocking reads.
const BASE_INIT: u32 = libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
/// Flags of the descriptors the kernel opens for fd-group events. `O_NONBLOCK` keeps the
/// kernel's open of a FIFO from waiting for a peer.
const EVENT_F_FLAGS: u32 = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC | libc::O_NONBLOCK) as u32;

/// Maps an `fanotify_init` failure to an error naming the missing feature.
fn init_error(e: io::Error, feature: &'static str, since: &'static str) -> FanotifyError {
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => FanotifyError::Unsupported { feature, since, source: e },
        Some(libc::EPERM) => FanotifyError::Sys { call: "fanotify_init (needs CAP_SYS_ADMIN)", source: e },
        _ => FanotifyError::Sys { call: "fanotify_init", source: e },
    }
}

/// Creates the FID notification group used for namespace events, with
/// `FAN_REPORT_TARGET_FID` when the kernel has it.
pub(crate) fn init_fid_group() -> Result<(std::os::fd::OwnedFd, Features), FanotifyError> {
    let base = BASE_INIT | libc::FAN_CLASS_NOTIF | libc::FAN_REPORT_DFID_NAME | libc::FAN_REPORT_FID;
    match sys::fanotify_init(base | libc::FAN_REPORT_TARGET_FID, 0) {
        Ok(fd) => Ok((fd, Features { target_fid_and_rename: true })),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => sys::fanotify_init(base, 0)
            .map(|fd| (fd, Features { target_fid_and_rename: false }))
            .map_err(|e| init_error(e, "FAN_REPORT_DFID_NAME | FAN_REPORT_FID", "5.9")),
        Err(e) => Err(init_error(e, "fanotify (CONFIG_FANOTIFY)", "2.6.37")),
    }
}

/// Creates a classic fd-reporting group of `class`.
pub(crate) fn init_fd_group(class: u32, extra: u32) -> Result<std::os::fd::OwnedFd, FanotifyError> {
    sys::fanotify_init(BASE_INIT | class | extra, EVENT_F_FLAGS).map_err(|e| {
        if class == libc::FAN_CLASS_CONTENT {
            init_error(
                e,
                "permission events (FAN_CLASS_CONTENT, CONFIG_FANOTIFY_ACCESS_PERMISSIONS)",
                "2.6.37",
            )
        } else {
            init_error(e, "fanotify (CONFIG_FANOTIFY)", "2.6.37")
        }
    })
}

/// Checks that this kernel and these privileges support everything the observer and the
/// responder need, by creating (and closing) one group of each kind. Marks are probed when
/// they are placed: an unsupported event bit (`FAN_OPEN_EXEC_PERM` before 5.0) fails the first
/// mark with [`FanotifyError::Unsupported`].
pub fn probe() -> Result<Features, FanotifyError> {
    let _notif = init_fd_group(libc::FAN_CLASS_NOTIF, 0)?;
    let (_fid, features) = init_fid_group()?;
    let _perm = init_fd_group(libc::FAN_CLASS_CONTENT, libc::FAN_UNLIMITED_QUEUE)?;
    Ok(features)
}
