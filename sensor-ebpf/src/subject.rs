//! The subject map (`SUBJECTS`, wire type: `sensor_common::event::subject`): each process's
//! current identity, read by the fanotify responder with one map lookup instead of `/proc`
//! (user half: `sensor/src/enforce/subject.rs`).
//!
//! Written at exec and fork (from `process.rs`), at the exit of the `set*id` syscalls that
//! change uids or gids (credentials are committed before the syscall returns:
//! <https://github.com/torvalds/linux/blob/v6.12/kernel/sys.c#L684>), removed at exit. Only
//! the thread-group leader's changes are written: fanotify names the thread group, and
//! `/proc/<tgid>/status`, which the entry replaces, shows the leader.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use sensor_common::event::{
    Task,
    subject::{SUBJECT_MAX, Subject},
};

use crate::{
    emit::now,
    kread::{current_task, fill_task, off, ptr, read},
};

#[map]
static SUBJECTS: LruHashMap<u32, Subject> = LruHashMap::with_max_entries(SUBJECT_MAX, 0);

/// The filesystem uid of `task`'s subjective credentials.
#[inline(always)]
fn fsuid(task: u64) -> Result<u32, i32> {
    ptr(task, off!(task_struct_cred)).and_then(|cred| read(cred, off!(cred_fsuid)))
}

/// `task` (the current task or a new child) as an entry; `None` when a read failed (the
/// process is then read from `/proc`).
#[inline(always)]
fn of_task(task: u64) -> Option<Subject> {
    let mut s = Subject { task: Task::default(), fsuid: 0, exe_dev: 0, exe_ino: 0, image_ns: 0 };
    if fill_task(task, &mut s.task) != 0 {
        return None;
    }
    s.fsuid = fsuid(task).ok()?;
    Some(s)
}

/// `s` with the image of `tgid`'s entry, or an unknown image made now.
#[inline(always)]
fn with_image_of(tgid: u32, mut s: Subject) -> Subject {
    // SAFETY: a copy out of the map value.
    match unsafe { SUBJECTS.get(tgid) } {
        Some(p) => {
            s.exe_dev = p.exe_dev;
            s.exe_ino = p.exe_ino;
            s.image_ns = p.image_ns;
        }
        None => s.image_ns = now(),
    }
    s
}

#[inline(always)]
fn put(tgid: u32, s: Option<Subject>) {
    let _ = match s {
        Some(s) => SUBJECTS.insert(tgid, s, 0),
        None => SUBJECTS.remove(tgid),
    };
}

/// A new image: its credentials (set-id bits applied) and executable.
#[inline(always)]
pub fn exec(tgid: u32, exe_dev: u32, exe_ino: u64, time_ns: u64) {
    let s = of_task(current_task()).map(|mut s| {
        s.exe_dev = exe_dev;
        s.exe_ino = exe_ino;
        s.image_ns = time_ns;
        s
    });
    put(tgid, s);
}

/// A new process `child` (a `task_struct` pointer) of the current one: the child's
/// credentials, the parent's image. Every new process gets an entry, so an entry left by a
/// reused pid is replaced.
#[inline(always)]
pub fn fork(child: u64, child_tgid: u32) {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    put(child_tgid, of_task(child).map(|s| with_image_of(parent, s)));
}

/// The last thread of `tgid` exited.
#[inline(always)]
pub fn exit(tgid: u32) {
    let _ = SUBJECTS.remove(tgid);
}

/// Attached to the exits of `setuid`, `setreuid`, `setresuid`, `setfsuid` and their gid
/// twins (`sensor/src/bpf.rs`): the leader's entry gets its credentials again (kept for a
/// failed call too: the values are simply the current ones). A process without an entry gets
/// one, so a `/proc` seed made before this change cannot overwrite it.
#[tracepoint]
pub fn subject_creds(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    if tgid != tid {
        return 0;
    }
    put(tgid, of_task(current_task()).map(|s| with_image_of(tgid, s)));
    0
}
