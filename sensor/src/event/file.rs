//! File records (kernel half: `sensor-ebpf/src/file.rs`).
use std::mem::offset_of;

use sensor_common::event::file::{FMODE_CREATED, Open};

use super::{DecodeError, Decoder, Record, attr, path, read_struct_prefix};

/// `major:minor` of a kernel-encoded device number (`major << 20 | minor`).
pub fn device(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

/// `file.open`.
pub fn open(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Box<Open> = read_struct_prefix(bytes, offset_of!(Open, data))?;
    let avail = bytes.len() - offset_of!(Open, data);
    let raw = &ev.data[..avail.min(ev.data.len()).min(ev.path_len as usize)];
    let path = path::from_kernel(raw);
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    rec.set(attr::FILE_PATH, path.as_str())
        .set(attr::FILE_NAME, name)
        .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir })
        .set(attr::FILE_INODE, ev.ino)
        .set(attr::FILE_DEVICE, device(ev.dev))
        .set(attr::FILE_ACCESS, access(ev.flags))
        .set(attr::FILE_FLAGS, flag_names(ev.flags))
        .set(attr::FILE_CREATED, ev.fmode & FMODE_CREATED != 0)
        .set(attr::FILE_FD, ev.fd)
        .set(attr::SYSCALL, syscall_name(ev.syscall))
        .set_opt(
            attr::PROTECTED_PATH,
            d.protect.path_of(ev.match_dev, ev.match_ino),
        );
    Ok(())
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

fn syscall_name(nr: u32) -> &'static str {
    match nr {
        2 => "open",
        85 => "creat",
        257 => "openat",
        304 => "open_by_handle_at",
        437 => "openat2",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::{device, flag_names};

    #[test]
    fn names_flags_and_devices() {
        assert_eq!(flag_names(0), ["O_RDONLY"]);
        assert_eq!(
            flag_names((libc::O_WRONLY | libc::O_APPEND) as u32),
            ["O_WRONLY", "O_APPEND"]
        );
        assert_eq!(
            flag_names((libc::O_RDWR | libc::O_SYNC) as u32),
            ["O_RDWR", "O_SYNC"]
        );
        assert_eq!(device((8 << 20) | 1), "8:1");
    }
}
