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
    /// Syscall number of the open (open, openat, openat2, creat, open_by_handle_at).
    pub syscall: u32,
    /// Device and inode of the protected ancestor (or the file itself) that matched.
    pub match_dev: u32,
    pub match_ino: u64,
    pub path_len: u16,
    pub _pad: u16,
    /// Kernel-side write position while the record is built (not meaningful to readers).
    pub cursor: u32,
    pub data: [u8; FILE_DATA],
}

/// `FMODE_CREATED`: the open created the file
/// (<https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L168>).
pub const FMODE_CREATED: u32 = 0x0010_0000;
