//! Process events: exec, fork, exit (kernel half: `sensor-ebpf/src/process.rs`).

use super::Header;
use crate::path::PATH_MAX;

/// Most bytes of the command line (`argv`, NUL-separated) an exec record carries.
pub const ARGV_MAX: usize = 4096;
/// Capacity of an exec record's string area: executable path, argv and cwd, one after the other.
pub const EXEC_DATA: usize = 16384;
/// Slack after the string area so that a masked offset plus one maximal write stays inside.
pub const EXEC_SLACK: usize = PATH_MAX;

/// `process.exec`: `data` holds the executable path (`exe_len` bytes, see [`crate::path`]),
/// then argv (`argv_len` bytes, NUL-separated), then the working directory (`cwd_len` bytes,
/// a path again).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Exec {
    pub header: Header,
    /// tgid before the exec (differs from the new one when a non-leader thread execs).
    pub old_pid: u32,
    pub exe_len: u16,
    pub argv_len: u16,
    pub cwd_len: u16,
    pub _pad: u16,
    /// Kernel-side write position while the record is built (not meaningful to readers).
    pub cursor: u32,
    /// Device (kernel encoding) and inode of the executable.
    pub exe_dev: u32,
    pub _pad2: u32,
    pub exe_ino: u64,
    pub data: [u8; EXEC_DATA + EXEC_SLACK],
}

/// `process.fork`: the header is the parent (the task that called fork/clone).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fork {
    pub header: Header,
    pub child_tgid: u32,
    pub child_tid: u32,
}

/// `process.exit`: sent when the last thread of a thread group exits.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Exit {
    pub header: Header,
    /// `task_struct.exit_code`: `status << 8` on exit, or the signal number (| 0x80 with core).
    pub exit_code: u32,
    pub _pad: u32,
}
