//! File records (kernel half: `sensor-ebpf/src/file.rs`).
use std::mem::offset_of;

use sensor_common::event::{
    Task,
    file::{
        CLOSE_EXIT, CLOSE_RELEASE, Close, FMODE_CREATED, IO_AIO, IO_COPY_FILE_RANGE, IO_MMAP, IO_READ,
        IO_SENDFILE, IO_SPLICE, IO_URING, IO_WRITE, OPEN_FENTRY, OPEN_IO_URING, OPEN_PIDFD_GETFD, Open,
        Tracked,
    },
};

use super::{DecodeError, Decoder, Record, attr, path, read_struct_prefix};

/// What the daemon remembers about a tracked open file.
#[derive(Clone, Debug)]
pub struct OpenFile {
    pub path: String,
    pub protected: Option<String>,
    /// tgid of the opener.
    pub opener: u32,
    pub dev: u32,
    pub ino: u64,
}

/// An open of a protected file, for policy judgement.
#[derive(Clone, Debug)]
pub struct OpenSeen {
    pub task: Task,
    pub path: String,
    /// Userspace `dev_t` of the file.
    pub dev: u64,
    pub ino: u64,
    pub ops: crate::policy::OpSet,
}

/// Most open protected files remembered (the kernel's `TRACKED` map holds 65,536).
const MAX_OPEN_FILES: usize = 65_536;

/// `major:minor` of a kernel-encoded device number (`major << 20 | minor`).
pub fn device(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

/// `file.open`.
pub fn open(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Box<Open> = read_struct_prefix(bytes, offset_of!(Open, data))?;
    let path = kernel_path(bytes, offset_of!(Open, data), &ev.data, ev.path_len);
    let protected = d.protect.rule_path(ev.rule);
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    add_file(rec, &path, ev.ino, ev.dev);
    rec.set(attr::FILE_ACCESS, access(ev.flags))
        .set(attr::FILE_FLAGS, flag_names(ev.flags))
        .set(attr::FILE_CREATED, ev.fmode & FMODE_CREATED != 0)
        .set_opt(attr::FILE_FD, (ev.fd >= 0).then_some(ev.fd))
        .set_opt(attr::SYSCALL, syscall_name(ev.syscall))
        .set_opt(attr::PROTECTED_PATH, protected.as_deref());
    if d.policies.audits() && d.opens.len() < MAX_OPEN_FILES {
        d.opens.push(OpenSeen {
            task: ev.header.task,
            path: path.clone(),
            dev: libc::makedev(ev.dev >> 20, ev.dev & 0xf_ffff),
            ino: ev.ino,
            ops: open_ops(ev.flags, ev.fmode),
        });
    }
    if ev.fmode & FMODE_CREATED != 0 {
        let key = sensor_common::path::InodeKey { ino: ev.ino, dev: ev.dev, _pad: 0 };
        d.protect.learn(key, ev.rule, MAX_OPEN_FILES);
    }
    if d.open_files.len() < MAX_OPEN_FILES {
        d.open_files.insert(
            ev.file,
            OpenFile { path, protected, opener: ev.header.task.tgid, dev: ev.dev, ino: ev.ino },
        );
    }
    Ok(())
}

/// `file.close` from the kernel: the last reference was closed with close(2).
pub fn close(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Box<Close> = read_struct_prefix(bytes, offset_of!(Close, data))?;
    let known = d.open_files.remove(&ev.file);
    // A release (`security_file_free`) walks no path: the one seen at open names the file.
    let path = match ev.path_len {
        0 => known.as_ref().map_or_else(String::new, |k| k.path.clone()),
        len => kernel_path(bytes, offset_of!(Close, data), &ev.data, len),
    };
    d.note_closed(ev.header.task.tgid, ev.stats.dev, ev.stats.ino);
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    add_file(rec, &path, ev.stats.ino, ev.stats.dev);
    let reason = match ev.reason {
        CLOSE_EXIT => "exit",
        CLOSE_RELEASE => "release",
        _ => "close",
    };
    rec.set(attr::CLOSE_REASON, reason).set_opt(attr::FILE_FD, (ev.fd >= 0).then_some(ev.fd));
    add_stats(d, rec, &ev.stats, known.and_then(|k| k.protected));
    Ok(())
}

/// A `file.close` the daemon writes for a tracked file whose opener exited (`reason` `exit`)
/// or that is still open when the sensor stops (`sensor_stop`).
pub fn close_untracked(
    d: &mut Decoder,
    file: u64,
    stats: &Tracked,
    reason: &'static str,
    time_ns: i128,
) -> Record {
    let mut rec = Record::new("file.close", time_ns);
    let known = d.open_files.remove(&file);
    let task: Task = stats.opener;
    d.add_task(&task, &mut rec);
    d.add_program(task.tgid, &mut rec);
    let path = known.as_ref().map_or_else(String::new, |k| k.path.clone());
    add_file(&mut rec, &path, stats.ino, stats.dev);
    rec.set(attr::CLOSE_REASON, reason);
    add_stats(d, &mut rec, stats, known.and_then(|k| k.protected));
    rec
}

fn kernel_path(bytes: &[u8], data_at: usize, data: &[u8], len: u16) -> String {
    let avail = bytes.len() - data_at;
    path::from_kernel(&data[..avail.min(data.len()).min(len as usize)])
}

pub fn add_file(rec: &mut Record, path: &str, ino: u64, dev: u32) {
    if !path.is_empty() {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        rec.set(attr::FILE_PATH, path)
            .set(attr::FILE_NAME, name)
            .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir });
    }
    rec.set(attr::FILE_INODE, ino).set(attr::FILE_DEVICE, device(dev));
}

fn add_stats(d: &Decoder, rec: &mut Record, s: &Tracked, protected: Option<String>) {
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
    let io: Vec<&str> = IO.iter().filter(|(bit, _)| s.io & bit != 0).map(|(_, n)| *n).collect();
    rec.set(attr::FILE_BYTES_READ, s.bytes_read)
        .set(attr::FILE_BYTES_WRITTEN, s.bytes_written)
        .set(attr::FILE_READ_CALLS, s.read_calls)
        .set(attr::FILE_WRITE_CALLS, s.write_calls)
        .set(attr::FILE_MMAP_BYTES, s.mmap_bytes)
        .set(attr::FILE_IO, io)
        .set(attr::FILE_OPENED_AT, super::time::rfc3339(d.clock.wall_ns(s.opened_ns)))
        .set(attr::FILE_OPENER_PID, s.opener.tgid)
        .set(attr::FILE_OPENER_USER_ID, s.opener.euid)
        .set_opt(attr::PROTECTED_PATH, protected);
}

/// The policy operations of an open: read and/or write by the access mode, create when the
/// open created the file.
fn open_ops(flags: u32, fmode: u32) -> crate::policy::OpSet {
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
    if fmode & FMODE_CREATED != 0 {
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

/// Names of the open flags the kernel keeps in `file.f_flags`.
pub fn flag_names(flags: u32) -> Vec<&'static str> {
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
    let mut out = vec![match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    }];
    // O_SYNC includes the O_DSYNC bit.
    if flags & libc::O_SYNC == libc::O_SYNC {
        out.push("O_SYNC");
    }
    out.extend(
        NAMED
            .iter()
            .filter(|(bit, name)| {
                flags & bit != 0 && !(*name == "O_DSYNC" && flags & libc::O_SYNC == libc::O_SYNC)
            })
            .map(|(_, name)| *name),
    );
    out
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
        OPEN_FENTRY => return None,
        _ => "unknown",
    })
}

#[cfg(test)]
mod tests {
    use super::{device, flag_names};

    #[test]
    fn names_flags_and_devices() {
        assert_eq!(flag_names(0), ["O_RDONLY"]);
        assert_eq!(flag_names((libc::O_WRONLY | libc::O_APPEND) as u32), ["O_WRONLY", "O_APPEND"]);
        assert_eq!(flag_names((libc::O_RDWR | libc::O_SYNC) as u32), ["O_RDWR", "O_SYNC"]);
        assert_eq!(device((8 << 20) | 1), "8:1");
    }
}
