//! File events (kernel half: `sensor-ebpf/src/file.rs`).

use super::Header;
use crate::path::{NAME_MAX, PATH_MAX};

/// Capacity of a file record's path area plus slack for one maximal component write.
pub const FILE_DATA: usize = PATH_MAX + NAME_MAX;

/// `file.open`: a successful open of a file inside a protected tree.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Open {
    pub header: Header,
    pub ino: u64,
    /// Device of the file (kernel encoding, `major << 20 | minor`).
    pub dev: u32,
    /// `file.f_flags` after the open (O_ACCMODE, O_APPEND, O_DIRECT, …; the kernel clears
    /// O_CREAT, O_EXCL, O_NOCTTY and O_TRUNC).
    pub flags: u32,
    /// `file.f_mode` (`FMODE_*`; [`FMODE_CREATED`] tells whether this open created the file).
    pub fmode: u32,
    /// The returned file descriptor.
    pub fd: i32,
    /// Syscall number of the open (open, openat, openat2, creat, open_by_handle_at), or
    /// [`OPEN_IO_URING`] for an io_uring open request.
    pub syscall: u32,
    /// Kernel address of the `struct file` (joins the open with its `file.close`).
    pub file: u64,
    /// Index of the protection rule that matched (`Protected::rule`).
    pub rule: u32,
    pub _pad0: u32,
    pub path_len: u16,
    pub _pad: u16,
    /// Kernel-side write position while the record is built (not meaningful to readers).
    pub cursor: u32,
    pub data: [u8; FILE_DATA],
}

/// `FMODE_CREATED`: the open created the file
/// (<https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L168>).
pub const FMODE_CREATED: u32 = 0x0010_0000;

/// Per open file (`struct file`) of a protected file: who opened it and what went through it.
/// Lives in the `TRACKED` map from the open until the last reference is closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Tracked {
    pub opener: crate::event::Task,
    pub ino: u64,
    pub dev: u32,
    /// `IO_*` bits: which paths moved bytes.
    pub io: u32,
    pub opened_ns: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub read_calls: u64,
    pub write_calls: u64,
    /// Bytes mapped with mmap (what is read through the mapping is not counted).
    pub mmap_bytes: u64,
    /// A folded open: the start (`FoldSlot::window_ns`) of the fold window it was folded
    /// into; 0 for an open with its own `file.open` record.
    pub fold_window: u64,
    /// In a [`CLOSE_FOLD`] record: the opens folded into it, the closes folded into it, and
    /// the times (boot clock) of the first and the last folded open.
    pub fold_count: u64,
    pub fold_closes: u64,
    pub fold_first_ns: u64,
    pub fold_last_ns: u64,
    /// 1 when the open went to the priority ring (an opener outside the allow list of a
    /// covering policy): its close goes there too.
    pub priority: u32,
    /// Whether the close may be compact (no identity read, no path walk: the daemon takes
    /// both from the open's record, `sensor-ebpf/src/io.rs` "Compact closes"): 0 when the
    /// open's record was not sent (ring full, folded, received); else 1 + the low 32 bits of
    /// the path generation read before the open's path walk, so a rename since then makes
    /// the close send its path again.
    pub close_key: u32,
}

/// [`Tracked::close_key`] of an open whose record was sent at path generation `generation`.
#[inline(always)]
pub const fn close_key(generation: u64) -> u32 {
    (generation as u32).wrapping_add(1)
}

#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for Tracked {}

/// read, readv, pread64, preadv, preadv2.
pub const IO_READ: u32 = 1 << 0;
/// write, writev, pwrite64, pwritev, pwritev2.
pub const IO_WRITE: u32 = 1 << 1;
pub const IO_SENDFILE: u32 = 1 << 2;
pub const IO_SPLICE: u32 = 1 << 3;
pub const IO_COPY_FILE_RANGE: u32 = 1 << 4;
pub const IO_MMAP: u32 = 1 << 5;
/// io_uring read and write requests.
pub const IO_URING: u32 = 1 << 6;
/// Linux AIO (`io_submit`) read and write requests, counted as their completions are reaped
/// by `io_getevents`/`io_pgetevents`.
pub const IO_AIO: u32 = 1 << 7;

/// `file.close`: the last reference to a tracked open file was closed by `close(2)`, or (the
/// fentry backend) released otherwise. (On the tracepoint backend, when the opener exits with
/// the file open, the daemon writes the record from the `TRACKED` map.)
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Close {
    pub header: Header,
    /// Kernel address of the `struct file`.
    pub file: u64,
    pub stats: Tracked,
    pub fd: i32,
    pub path_len: u16,
    /// `SCOPE_*`: whose bytes `stats` holds.
    pub scope: u16,
    /// Kernel-side write position while the record is built.
    pub cursor: u32,
    /// `CLOSE_*`: how the last reference went.
    pub reason: u32,
    pub data: [u8; FILE_DATA],
}

/// `close(2)` of the last descriptor (`Close::fd` is it).
pub const CLOSE_SYSCALL: u32 = 0;
/// The fentry backend's `security_file_free` while the task exits (its descriptors closed).
pub const CLOSE_EXIT: u32 = 1;
/// `security_file_free` otherwise: the last mapping unmapped, a descriptor passed to a
/// process the sensor does not track closed, or a kernel user released the file. No path
/// is walked (the dentry may be gone); `Close::fd` is -1.
pub const CLOSE_RELEASE: u32 = 2;
/// A fold record: `Tracked::fold_count` opens of the file by one thread, within one fold
/// window, that had no records of their own, with the sums of their closes' totals
/// (`sensor-ebpf/src/fold.rs`). `Close::file` is 0 and no path is walked.
pub const CLOSE_FOLD: u32 = 3;

/// The fold window: from the first open of a file by a thread, [`FOLD_WINDOW_NS`] long.
pub const FOLD_WINDOW_NS: u64 = 1_000_000_000;
/// Opens of the same file by the same thread in one window that still get their own
/// records; the later ones are folded.
pub const FOLD_AFTER: u32 = 16;

/// A thread's fold state (`FOLD` map, by thread id): the file it opens repeatedly and the
/// totals of the opens folded in the current window (`stats.fold_*`, `stats.opener`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldSlot {
    pub ino: u64,
    pub dev: u32,
    /// Opens in this window that had their own records.
    pub emitted: u32,
    /// Boot-clock start of the window (the window's identity).
    pub window_ns: u64,
    pub stats: Tracked,
}

#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for FoldSlot {}

/// Key of the kernel's `LOSS_WHO` map: whose records were dropped (`Kind` of the record, the
/// responsible uid: login uid, else effective uid; the file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LossKey {
    pub kind: u32,
    pub uid: u32,
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// Value of `LOSS_WHO`: records dropped, and the opens they stood for (1 per `file.open`,
/// `fold_count` per fold record).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossWho {
    pub records: u64,
    pub opens: u64,
}

#[cfg(feature = "user")]
mod loss_pod {
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::LossKey {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::LossWho {}
}

/// `Close::scope`: the open file's totals (every process that used it).
pub const SCOPE_OPEN: u16 = 0;
/// `Close::scope`: one receiver's own bytes (a descriptor it took with `pidfd_getfd` or
/// received over `SCM_RIGHTS`), written at its close of the descriptor or at its exit;
/// `stats.opener` is the original opener, `stats.opened_ns` when it received it.
pub const SCOPE_RECEIVER: u16 = 1;

/// Key of the kernel's `RECEIVED` map: an open file and a process that received a
/// descriptor of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceivedKey {
    /// Kernel address of the `struct file`.
    pub file: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// Value of the kernel's `RECEIVED` map: the receiver and its own totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Received {
    /// The receiver, as it was when it received the descriptor.
    pub holder: crate::event::Task,
    pub stats: Tracked,
}

#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for ReceivedKey {}
#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for Received {}

/// `Open::syscall` of a file opened by an io_uring `IORING_OP_OPENAT`/`OPENAT2` request.
pub const OPEN_IO_URING: u32 = 0x1_0000;
/// `Open::syscall` of a file seen by the fentry program on `security_file_open`.
pub const OPEN_FENTRY: u32 = 0x2_0000;
/// `Open::syscall` of a tracked file's descriptor taken from another process with
/// `pidfd_getfd(2)` (its x86_64 syscall number): the receiver's `file.open`. The original
/// open's totals go on and count the receiver's bytes too; the receiver's own bytes are
/// kept apart in `RECEIVED` ([`SCOPE_RECEIVER`]).
pub const OPEN_PIDFD_GETFD: u32 = 438;
/// `Open::syscall` of a tracked file's descriptor received over a unix socket
/// (`SCM_RIGHTS`) by `recvmsg(2)` (its x86_64 syscall number): the receiver's `file.open`, as
/// for [`OPEN_PIDFD_GETFD`].
pub const OPEN_SCM_RIGHTS: u32 = 47;

/// `file.delete`, `file.rename`, `file.link`, `file.truncate` from the kernel (the fentry
/// backend: `security_path_*` hooks, confirmed by the exit of the VFS operation), and the
/// link syscalls' names ([`CHANGE_LINK_NAMES`], the tracepoint backend).
///
/// `data` holds two path areas of [`FILE_DATA`] bytes: the file (or, for
/// [`CHANGE_LINK_NAMES`], the directory a relative new name starts from) at 0, and the new
/// path of a rename or link (or the user's new name) at [`FILE_DATA`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Change {
    pub header: Header,
    /// `CHANGE_*`.
    pub op: u32,
    pub dev: u32,
    pub ino: u64,
    /// Kernel address of the inode while the change waits for its result.
    pub inode: u64,
    /// `i_size` before the operation.
    pub size: u64,
    /// `i_size` after it (truncate).
    pub new_size: u64,
    /// `i_nlink` before the operation.
    pub nlink: u32,
    /// `i_mode` (file type and permission bits).
    pub mode: u32,
    /// Index of the protection rule that matched.
    pub rule: u32,
    pub path_len: u16,
    pub new_path_len: u16,
    /// Kernel-side write positions while the record is built.
    pub cursor: u32,
    pub new_cursor: u32,
    pub _pad: u32,
    pub data: [u8; 2 * FILE_DATA],
}

/// `security_path_unlink` then `vfs_unlink` succeeded.
pub const CHANGE_DELETE: u32 = 1;
/// `security_path_rename` then `vfs_rename`.
pub const CHANGE_RENAME: u32 = 2;
/// `security_path_link` then `vfs_link`.
pub const CHANGE_LINK: u32 = 3;
/// `security_path_truncate` / `security_file_truncate` then `do_truncate`.
pub const CHANGE_TRUNCATE: u32 = 4;
/// A successful link(2)/linkat(2) seen at the syscall tracepoints: the new name as the
/// caller gave it and the directory it is relative to. Userspace decides whether the linked
/// inode is protected.
pub const CHANGE_LINK_NAMES: u32 = 5;

/// Slots of the kernel's `BACKEND` map: set to 1 by the daemon once every fentry program of
/// the family is attached. Opens (`security_file_open`).
pub const BACKEND_OPEN: u32 = 0;
/// Changes (the `security_path_*` hooks).
pub const BACKEND_CHANGE: u32 = 1;
