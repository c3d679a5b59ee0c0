//! Deletions, renames, hard links and truncations from the kernel (kernel half:
//! `sensor-ebpf/src/change.rs`). Where the fentry change hooks do not load, the fanotify
//! observer (`crate::watch`) reports the same records, and links come from the link
//! syscalls' names, resolved here.
use std::{mem::offset_of, os::unix::fs::MetadataExt as _, path::Path};

use sensor_common::{
    event::file::{
        CHANGE_DELETE, CHANGE_LINK, CHANGE_LINK_NAMES, CHANGE_RENAME, CHANGE_TRUNCATE, Change, FILE_DATA,
    },
    path::InodeKey,
};

use super::{DecodeError, Decoder, Record, attr, file::add_file, path, read_struct_prefix};
use crate::protect::kernel_dev;

/// The record of a kernel change, or `None` for a link whose inode is not protected.
pub fn change(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<bool, DecodeError> {
    let ev: Box<Change> = read_struct_prefix(bytes, offset_of!(Change, data))?;
    let first = area(bytes, &ev, 0, ev.path_len);
    let second = area(bytes, &ev, FILE_DATA, ev.new_path_len);
    let (name, path, ino, dev, old_path) = match ev.op {
        CHANGE_DELETE => ("file.delete", path::from_kernel(first), ev.ino, ev.dev, None),
        CHANGE_TRUNCATE => ("file.truncate", path::from_kernel(first), ev.ino, ev.dev, None),
        CHANGE_RENAME => {
            ("file.rename", path::from_kernel(second), ev.ino, ev.dev, Some(path::from_kernel(first)))
        }
        CHANGE_LINK => {
            ("file.link", path::from_kernel(second), ev.ino, ev.dev, Some(path::from_kernel(first)))
        }
        CHANGE_LINK_NAMES => {
            let Some(link) = linked(d, first, second) else { return Ok(false) };
            rec.set(attr::FILE_LINKS, link.links);
            rec.set_opt(attr::PROTECTED_PATH, d.protect.rule_path(link.rule));
            ("file.link", link.path, link.ino, link.dev, None)
        }
        op => return Err(DecodeError::UnknownOp(op)),
    };
    rec.name = name;
    if ev.op != CHANGE_LINK_NAMES {
        d.note_change(name, &path);
    }
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    add_file(rec, &path, ino, dev);
    rec.set_opt(attr::FILE_OLD_PATH, old_path);
    match ev.op {
        CHANGE_DELETE => {
            rec.set(attr::FILE_SIZE, ev.size).set(attr::FILE_LINKS, ev.nlink.saturating_sub(1));
        }
        CHANGE_TRUNCATE => {
            rec.set(attr::FILE_SIZE, ev.new_size).set(attr::FILE_OLD_SIZE, ev.size);
        }
        CHANGE_LINK => {
            rec.set(attr::FILE_LINKS, ev.nlink + 1);
        }
        _ => {}
    }
    if ev.op != CHANGE_LINK_NAMES {
        rec.set_opt(attr::PROTECTED_PATH, d.protect.rule_path(ev.rule));
    }
    Ok(true)
}

/// The used part of one of the record's two path areas.
fn area<'a>(bytes: &'a [u8], ev: &'a Change, at: usize, len: u16) -> &'a [u8] {
    let start = offset_of!(Change, data) + at;
    let avail = bytes.len().saturating_sub(start);
    &ev.data[at..at + avail.min(len as usize).min(FILE_DATA)]
}

/// A new hard link found protected.
struct Linked {
    path: String,
    ino: u64,
    dev: u32,
    links: u64,
    rule: u32,
}

/// Resolves a new hard link's name (absolute, or relative to the directory the kernel
/// walked while the caller existed) and returns it when its inode is protected. The name is
/// looked up after the fact: a link removed again within milliseconds is not reported.
fn linked(d: &mut Decoder, base: &[u8], name: &[u8]) -> Option<Linked> {
    let name = String::from_utf8_lossy(name);
    let path = match name.starts_with('/') {
        true => name.into_owned(),
        false => format!("{}/{name}", path::from_kernel(base).trim_end_matches('/')),
    };
    // The directory canonical (`..`, symlinks), the last component as linked.
    let p = Path::new(&path);
    let path = match (p.parent().and_then(|dir| std::fs::canonicalize(dir).ok()), p.file_name()) {
        (Some(dir), Some(file)) => dir.join(file).display().to_string(),
        _ => path,
    };
    let meta = std::fs::symlink_metadata(&path).ok()?;
    let dev = kernel_dev(meta.dev());
    let key = InodeKey { ino: meta.ino(), dev, _pad: 0 };
    let rule = d.protect.rule_for(key, Path::new(&path))?;
    Some(Linked { path, ino: meta.ino(), dev, links: meta.nlink(), rule })
}
