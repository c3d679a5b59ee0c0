//! Wire format of the events the kernel programs put in the ring buffer.
//!
//! Every record starts with a [`Header`]; `Header::kind` says which struct follows. Records
//! with strings end in a `data` array of which only the used prefix is sent.

pub mod egress;
pub mod file;
pub mod net;
pub mod policy;
pub mod process;
pub mod subject;
pub mod tamper;

/// Event kinds. The numbers are part of the wire format between kernel and daemon: never
/// reuse one. They also index the per-CPU loss counters (`LOST`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    FileOpen = 4,
    NetConnect = 5,
    NetAccept = 6,
    NetClose = 7,
    FileClose = 8,
    PolicyDecision = 9,
    FileChange = 10,
    Tamper = 11,
}

/// One more than the largest [`Kind`]: the size of the loss-counter map.
pub const KIND_SLOTS: u32 = 12;

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Self; 11] = [
        Self::Exec,
        Self::Fork,
        Self::Exit,
        Self::FileOpen,
        Self::NetConnect,
        Self::NetAccept,
        Self::NetClose,
        Self::FileClose,
        Self::PolicyDecision,
        Self::FileChange,
        Self::Tamper,
    ];

    /// The kind with this wire number.
    pub fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == n)
    }
}

/// A path in this record was cut at [`crate::path::PATH_MAX`] bytes or
/// [`crate::path::PATH_DEPTH`] components.
pub const FLAG_PATH_TRUNCATED: u32 = 1 << 0;
/// The command line was cut at [`process::ARGV_MAX`] bytes.
pub const FLAG_ARGV_TRUNCATED: u32 = 1 << 1;
/// A kernel read failed while filling this record; some fields may be zero.
pub const FLAG_READ_ERROR: u32 = 1 << 2;

/// The task a record is about, read in the kernel when the record was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Task {
    /// Thread-group id (what userspace calls the pid).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// tgid of `real_parent`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid (`u32::MAX` when unset or when the kernel has no audit support).
    pub auid: u32,
    /// Audit session id (`u32::MAX` when unset).
    pub sessionid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

/// The start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// A [`Kind`] number.
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made (CLOCK_BOOTTIME).
    pub time_ns: u64,
    pub task: Task,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::Task {}
}
