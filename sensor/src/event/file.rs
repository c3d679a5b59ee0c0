//! File events: open and close (kernel half: `sensor-ebpf/src/file.rs` and `io.rs`; decoded
//! in `crate::decode`; opens found in `/proc` at start come from `crate::scan`).
use sensor_common::event::file::{
    CLOSE_EXIT, CLOSE_FOLD, CLOSE_RELEASE, FMODE_CREATED, IO_AIO, IO_COPY_FILE_RANGE, IO_MMAP, IO_READ,
    IO_SENDFILE, IO_SPLICE, IO_URING, IO_WRITE, OPEN_FENTRY, OPEN_IO_URING, OPEN_PIDFD_GETFD,
    OPEN_SCM_RIGHTS, Tracked,
};

use super::{FileRef, Record, Subject, attr, json, time};

/// `file.open`.
#[derive(Clone, Debug)]
pub struct FileOpen {
    pub subject: Subject,
    pub file: FileRef,
    pub fd: Option<i32>,
    pub how: OpenHow,
}

/// Who saw the open, and what they saw.
#[derive(Clone, Copy, Debug)]
pub enum OpenHow {
    /// A kernel program, at the open.
    Kernel {
        /// `f_flags`.
        flags: u32,
        /// `f_mode`.
        fmode: u32,
        /// Syscall number, or `OPEN_IO_URING` / `OPEN_FENTRY`.
        syscall: u32,
        /// `struct file` address (the key of the close).
        file: u64,
        /// Protection rule index.
        rule: u32,
    },
    /// The `/proc` scan at start: open (`mapped` false) or mapped.
    Procfs { mapped: bool },
}

impl FileOpen {
    /// Whether this is a receiver's record: a tracked file's descriptor taken with
    /// `pidfd_getfd` or received over `SCM_RIGHTS`.
    pub fn received(&self) -> bool {
        matches!(self.how, OpenHow::Kernel { syscall: OPEN_PIDFD_GETFD | OPEN_SCM_RIGHTS, .. })
    }

    /// Whether the open created the file.
    pub fn created(&self) -> bool {
        matches!(self.how, OpenHow::Kernel { fmode, .. } if fmode & FMODE_CREATED != 0)
    }

    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        self.file.write(rec);
        match self.how {
            OpenHow::Kernel { flags, fmode, syscall, .. } => {
                let out = rec.body();
                json::pair(out, attr::FILE_ACCESS, access(flags));
                json::key(out, attr::FILE_FLAGS);
                write_flag_names(out, flags);
                json::pair(out, attr::FILE_CREATED, &(fmode & FMODE_CREATED != 0));
                json::opt(out, attr::FILE_FD, self.fd);
                json::opt(out, attr::SYSCALL, syscall_name(syscall));
            }
            OpenHow::Procfs { mapped } => {
                rec.set_opt(attr::FILE_FD, self.fd)
                    .flag(attr::FILE_MAPPED, mapped)
                    .set(attr::OBSERVED_BY, "procfs");
            }
        }
        self.file.write_protected(rec);
    }
}

/// Why a file was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// close(2).
    Close,
    /// The process exited.
    Exit,
    /// The last reference was released (`security_file_free`).
    Release,
    /// Still open when the sensor stopped.
    SensorStop,
    /// A fold record: opens of the file by one thread that had no records of their own
    /// (`sensor-ebpf/src/fold.rs`).
    Fold,
}

impl CloseReason {
    /// The wire reason of a kernel close record.
    pub fn of_wire(reason: u32) -> Self {
        match reason {
            CLOSE_EXIT => Self::Exit,
            CLOSE_RELEASE => Self::Release,
            CLOSE_FOLD => Self::Fold,
            _ => Self::Close,
        }
    }

    /// The `mnsensor.close.reason` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Exit => "exit",
            Self::Release => "release",
            Self::SensorStop => "sensor_stop",
            Self::Fold => "fold",
        }
    }
}

/// `file.close`, from the kernel or written by the daemon for a file the kernel will not
/// report (opener exited, sensor stopping).
#[derive(Clone, Debug)]
pub struct FileClose {
    pub subject: Subject,
    pub file: FileRef,
    /// `struct file` address.
    pub kernel_file: u64,
    pub reason: CloseReason,
    pub fd: Option<i32>,
    pub stats: Tracked,
    /// Wall-clock time of the open (of the receipt, for a receiver's own record).
    pub opened_ns: i128,
    /// The receiver's own bytes (`SCOPE_RECEIVER`), not the open file's totals.
    pub receiver: bool,
}

impl FileClose {
    pub fn write(&self, rec: &mut Record) {
        const IO: [(u32, &str); 8] = [
            (IO_READ, "read"),
            (IO_WRITE, "write"),
            (IO_SENDFILE, "sendfile"),
            (IO_SPLICE, "splice"),
            (IO_COPY_FILE_RANGE, "copy_file_range"),
            (IO_MMAP, "mmap"),
            (IO_URING, "io_uring"),
            (IO_AIO, "aio"),
        ];
        self.subject.write(rec);
        self.file.write(rec);
        let s = &self.stats;
        let out = rec.body();
        json::pair(out, attr::CLOSE_REASON, self.reason.as_str());
        json::opt(out, attr::FILE_FD, self.fd);
        json::pair(out, attr::FILE_BYTES_READ, &s.bytes_read);
        json::pair(out, attr::FILE_BYTES_WRITTEN, &s.bytes_written);
        json::pair(out, attr::FILE_READ_CALLS, &s.read_calls);
        json::pair(out, attr::FILE_WRITE_CALLS, &s.write_calls);
        json::pair(out, attr::FILE_MMAP_BYTES, &s.mmap_bytes);
        json::key(out, attr::FILE_IO);
        json::strings(out, IO.iter().filter(|(bit, _)| s.io & bit != 0).map(|(_, n)| *n));
        json::key(out, attr::FILE_OPENED_AT);
        out.push(b'"');
        time::write_rfc3339(out, self.opened_ns);
        out.push(b'"');
        json::pair(out, attr::FILE_OPENER_PID, &s.opener.tgid);
        json::pair(out, attr::FILE_OPENER_USER_ID, &s.opener.euid);
        if self.reason == CloseReason::Fold {
            // Kernel times are on the boot clock; `opened_ns` is the window start in wall time.
            let wall = |boot: u64| self.opened_ns + i128::from(boot) - i128::from(s.opened_ns);
            json::pair(out, attr::FOLD_COUNT, &s.fold_count);
            json::pair(out, attr::FOLD_CLOSES, &s.fold_closes);
            for (key, boot) in [(attr::FOLD_FIRST, s.fold_first_ns), (attr::FOLD_LAST, s.fold_last_ns)] {
                json::key(out, key);
                out.push(b'"');
                time::write_rfc3339(out, wall(boot));
                out.push(b'"');
            }
        }
        json::pair(out, attr::FILE_SCOPE, if self.receiver { "receiver" } else { "open" });
        self.file.write_protected(rec);
    }
}

/// The policy operations of an open: read and/or write by the access mode, create when the
/// open created the file.
pub fn open_ops(flags: u32, created: bool) -> crate::policy::OpSet {
    use crate::policy::Op;
    let mut ops = crate::policy::OpSet::EMPTY;
    match flags as i32 & libc::O_ACCMODE {
        libc::O_RDONLY => ops.insert(Op::Read),
        libc::O_WRONLY => ops.insert(Op::Write),
        _ => {
            ops.insert(Op::Read);
            ops.insert(Op::Write);
        }
    }
    if created {
        ops.insert(Op::Create);
    }
    ops
}

fn access(flags: u32) -> &'static str {
    match flags as i32 & libc::O_ACCMODE {
        libc::O_RDONLY => "read",
        libc::O_WRONLY => "write",
        _ => "read_write",
    }
}

/// Writes the names of the open flags the kernel keeps in `file.f_flags`, as an array.
fn write_flag_names(out: &mut Vec<u8>, flags: u32) {
    json::strings(out, flag_names(flags));
}

/// Names of the open flags the kernel keeps in `file.f_flags`.
pub fn flag_names(flags: u32) -> impl Iterator<Item = &'static str> {
    const NAMED: [(i32, &str); 9] = [
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_LARGEFILE, "O_LARGEFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_PATH, "O_PATH"),
    ];
    let flags = flags as i32;
    let mode = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    };
    // O_SYNC includes the O_DSYNC bit.
    let sync = flags & libc::O_SYNC == libc::O_SYNC;
    std::iter::once(mode).chain(sync.then_some("O_SYNC")).chain(
        NAMED
            .into_iter()
            .filter(move |(bit, name)| flags & bit != 0 && !(*name == "O_DSYNC" && sync))
            .map(|(_, n)| n),
    )
}

/// The syscall of an open; `None` when the fentry program saw it (any open path).
fn syscall_name(nr: u32) -> Option<&'static str> {
    Some(match nr {
        2 => "open",
        85 => "creat",
        257 => "openat",
        304 => "open_by_handle_at",
        437 => "openat2",
        OPEN_IO_URING => "io_uring_openat",
        OPEN_PIDFD_GETFD => "pidfd_getfd",
        OPEN_SCM_RIGHTS => "recvmsg",
        OPEN_FENTRY => return None,
        _ => "unknown",
    })
}

#[cfg(test)]
mod tests {
    use super::flag_names;

    #[test]
    fn names_flags() {
        let names = |f: i32| flag_names(f as u32).collect::<Vec<_>>();
        assert_eq!(names(0), ["O_RDONLY"]);
        assert_eq!(names(libc::O_WRONLY | libc::O_APPEND), ["O_WRONLY", "O_APPEND"]);
        assert_eq!(names(libc::O_RDWR | libc::O_SYNC), ["O_RDWR", "O_SYNC"]);
    }
}
