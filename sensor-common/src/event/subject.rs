//! The subject map: who each process is now, for enforcement decisions without `/proc`
//! (kernel half: `sensor-ebpf/src/subject.rs`; user half: `sensor/src/enforce/subject.rs`).

use super::Task;

/// Entries of the map (least recently used ones are dropped when it is full; a process
/// without an entry is read from `/proc`).
pub const SUBJECT_MAX: u32 = 32_768;

/// One process (key: tgid), as its thread-group leader's credentials are now: written at
/// exec, fork and at the exit of the `set*id` syscalls of the leader, removed at exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Subject {
    /// Identity as in record headers (`uid`, `euid`, login uid, session, ...).
    pub task: Task,
    /// Filesystem uid: what file permission checks (and policy subjects) use.
    pub fsuid: u32,
    /// Device (kernel encoding) of the executable; 0 with `exe_ino` when unknown (the entry
    /// was made at fork from a process without one, or seeded from `/proc`).
    pub exe_dev: u32,
    /// Inode of the executable, 0 when unknown.
    pub exe_ino: u64,
    /// `CLOCK_BOOTTIME` ns of the exec that loaded the image (inherited at fork), or of the
    /// entry's creation when the executable is unknown: with the executable's identity, the
    /// key of the daemon's executable-path cache.
    pub image_ns: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain repr(C) data without padding holes.
    unsafe impl aya::Pod for super::Subject {}
}
