//! Protected files that are already open or mapped when the sensor starts.
//!
//! The kernel programs see opens from the moment they are attached; a file opened before
//! that is found once, here, from `/proc/<pid>/fd` and `/proc/<pid>/maps`, and reported as
//! `file.open` with `mnsensor.observed_by: procfs`.
use std::{os::unix::fs::MetadataExt as _, path::Path};

use sensor_common::{event::Task, path::InodeKey};

use crate::{
    event::{Decoder, Record, attr, file::device, time::Clock},
    protect::{ProtectSet, kernel_dev},
};

/// Records for every protected file open or mapped by a running process.
pub fn open_files(d: &mut Decoder) -> Vec<Record> {
    let mut out = Vec::new();
    if d.protect.is_empty() {
        return out;
    }
    let Ok(all) = procfs::process::all_processes() else { return out };
    let me = std::process::id() as i32;
    let protect = d.protect.clone();
    for p in all.flatten().filter(|p| p.pid != me) {
        let Some(task) = task_of(&p) else { continue };
        for fd in p.fd().into_iter().flatten().flatten() {
            let link = Path::new("/proc").join(p.pid.to_string()).join("fd").join(fd.fd.to_string());
            let (Ok(meta), Ok(target)) = (std::fs::metadata(&link), std::fs::read_link(&link)) else {
                continue;
            };
            if let Some(rec) = record(d, &protect, &task, &target, &meta, Some(fd.fd)) {
                out.push(rec);
            }
        }
        let maps = p.maps().map(|m| m.0).unwrap_or_default();
        let mut seen = Vec::new();
        for m in maps {
            let procfs::process::MMapPath::Path(path) = m.pathname else { continue };
            if m.inode == 0 || seen.contains(&m.inode) {
                continue;
            }
            seen.push(m.inode);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.ino() != m.inode {
                continue; // replaced since it was mapped
            }
            if let Some(rec) = record(d, &protect, &task, &path, &meta, None) {
                out.push(rec);
            }
        }
    }
    out
}

fn record(
    d: &mut Decoder,
    protect: &ProtectSet,
    task: &Task,
    path: &Path,
    meta: &std::fs::Metadata,
    fd: Option<i32>,
) -> Option<Record> {
    if !meta.is_file() {
        return None;
    }
    let key = InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad: 0 };
    let rule = protect.rule_for(key, path)?;
    let mut rec = Record::new("file.open", Clock::realtime_ns());
    d.add_task(task, &mut rec);
    d.add_program(task.tgid, &mut rec);
    let path = path.to_string_lossy();
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
    rec.set(attr::FILE_PATH, path.as_ref())
        .set(attr::FILE_NAME, name)
        .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir })
        .set(attr::FILE_INODE, key.ino)
        .set(attr::FILE_DEVICE, device(key.dev))
        .set_opt(attr::FILE_FD, fd)
        .flag(attr::FILE_MAPPED, fd.is_none())
        .set(attr::OBSERVED_BY, "procfs")
        .set_opt(attr::PROTECTED_PATH, protect.rule_path(rule));
    Some(rec)
}

/// The identity of process `pid` as `/proc` shows it.
pub fn task_of_pid(pid: u32) -> Option<Task> {
    task_of(&procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?)
}

/// The identity of a process as `/proc` shows it.
fn task_of(p: &procfs::process::Process) -> Option<Task> {
    let status = p.status().ok()?;
    let mut comm = [0u8; 16];
    for (dst, src) in comm.iter_mut().zip(status.name.bytes().take(15)) {
        *dst = src;
    }
    let sessionid = std::fs::read_to_string(format!("/proc/{}/sessionid", p.pid))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    Some(Task {
        tgid: p.pid as u32,
        tid: p.pid as u32,
        ppid: status.ppid as u32,
        uid: status.ruid,
        gid: status.rgid,
        euid: status.euid,
        egid: status.egid,
        auid: p.loginuid().unwrap_or(u32::MAX),
        sessionid,
        _pad: 0,
        comm,
    })
}
