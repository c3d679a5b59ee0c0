//! Protected files that are already open or mapped when the sensor starts.
//!
//! The kernel programs see opens from the moment they are attached; a file opened before
//! that is found once, here, from `/proc/<pid>/fd` and `/proc/<pid>/maps`, and reported as
//! `file.open` with `mnsensor.observed_by: procfs`.
use std::{os::unix::fs::MetadataExt as _, path::Path};

use sensor_common::{event::Task, path::InodeKey};

use crate::{
    event::{
        Envelope, Event, FileRef, Subject,
        file::{FileOpen, OpenHow},
        time::Clock,
    },
    proctable::task_of,
    protect::{ProtectSet, kernel_dev},
};

/// `file.open` events for every protected file open or mapped by a running process (not yet
/// enriched).
pub fn open_files(protect: &ProtectSet) -> Vec<Envelope> {
    let mut out = Vec::new();
    if protect.is_empty() {
        return out;
    }
    let Ok(all) = procfs::process::all_processes() else { return out };
    let me = std::process::id() as i32;
    for p in all.flatten().filter(|p| p.pid != me) {
        let Some(task) = task_of(&p) else { continue };
        for fd in p.fd().into_iter().flatten().flatten() {
            let link = Path::new("/proc").join(p.pid.to_string()).join("fd").join(fd.fd.to_string());
            let (Ok(meta), Ok(target)) = (std::fs::metadata(&link), std::fs::read_link(&link)) else {
                continue;
            };
            if let Some(rec) = record(protect, &task, &target, &meta, Some(fd.fd)) {
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
            if let Some(rec) = record(protect, &task, &path, &meta, None) {
                out.push(rec);
            }
        }
    }
    out
}

fn record(
    protect: &ProtectSet,
    task: &Task,
    path: &Path,
    meta: &std::fs::Metadata,
    fd: Option<i32>,
) -> Option<Envelope> {
    if !meta.is_file() {
        return None;
    }
    let key = InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad: 0 };
    let rule = protect.rule_for(key, path)?;
    let open = FileOpen {
        subject: Subject::of(*task),
        file: FileRef {
            path: crate::event::path::of_os(path),
            id: Some((key.dev, key.ino)),
            rule: Some(rule),
            protected: protect.rule_path(rule).map(Into::into),
            block: None,
        },
        fd,
        how: OpenHow::Procfs { mapped: fd.is_none() },
    };
    Some(Envelope::new(Clock::realtime_ns(), Event::FileOpen(open)))
}
