//! In-kernel policy enforcement with BPF LSM (kernel half: `sensor-ebpf/src/lsm.rs`; user
//! half: `sensor/src/enforce/lsm.rs`).
//!
//! Userspace compiles the `enforce`-mode policies into allow tables at "now" (and again every
//! 30 seconds, so schedules open and close): for each policy, responsible uid and program,
//! which operation combinations the policy allows. The LSM program on `file_open` looks the
//! opening process up, refuses what the tables refuse and records what they mark for `alert`
//! or `audit`.

use super::Header;
use super::file::FILE_DATA;

/// Operation combinations of an open, as bits of the allow masks.
pub const COMBO_READ: u32 = 1 << 0;
pub const COMBO_WRITE: u32 = 1 << 1;
pub const COMBO_READ_WRITE: u32 = 1 << 2;
pub const COMBO_CREATE_WRITE: u32 = 1 << 3;
pub const COMBO_CREATE_READ_WRITE: u32 = 1 << 4;
pub const COMBO_EXEC: u32 = 1 << 5;

/// Allow-table values hold three masks of `COMBO_*` bits, one per level of the verdict:
/// bits 0-7 the combinations not refused, bits 8-15 (`<< UNALERTED_SHIFT`) those neither
/// refused nor alerted, bits 16-23 (`<< UNRECORDED_SHIFT`) those the kernel lets through
/// without a record. A combination in no mask gets the policy's default.
pub const UNALERTED_SHIFT: u32 = 8;
pub const UNRECORDED_SHIFT: u32 = 16;

/// Key of the allow table for any program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    /// Policy id (index + 1 in the compiled set).
    pub policy: u32,
    /// Responsible uid: the login uid when set, else the filesystem uid.
    pub uid: u32,
}

/// Key of the allow table for one program, identified by its executable's device (kernel
/// encoding) and inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowProgramKey {
    pub policy: u32,
    pub uid: u32,
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// What a policy does with an access its tables do not allow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyDefault {
    /// `ACTION_*`.
    pub action: u32,
    pub _pad: u32,
}

pub const ACTION_DENY: u32 = 1;
pub const ACTION_KILL: u32 = 2;
/// The access proceeds and is recorded (`alert`, `audit`).
pub const ACTION_ALERT: u32 = 3;
pub const ACTION_AUDIT: u32 = 4;

/// [`LsmDecision::hook`]: decided by the BPF LSM program on `file_open`.
pub const HOOK_BPF_LSM: u16 = 0;
/// [`LsmDecision::hook`]: decided by the `fmod_ret` program on `security_file_open`.
pub const HOOK_FMOD_RET: u16 = 1;

/// A decision the kernel's enforcement program made (`ACTION_*`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LsmDecision {
    pub header: Header,
    pub policy: u32,
    pub action: u32,
    /// `COMBO_*` bit of the access.
    pub combo: u32,
    pub dev: u32,
    pub ino: u64,
    pub path_len: u16,
    /// The program that decided: `HOOK_BPF_LSM` or `HOOK_FMOD_RET`.
    pub hook: u16,
    /// Kernel-side write position while the record is built.
    pub cursor: u32,
    pub data: [u8; FILE_DATA],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (all): plain repr(C) data.
    unsafe impl aya::Pod for super::AllowKey {}
    unsafe impl aya::Pod for super::AllowProgramKey {}
    unsafe impl aya::Pod for super::PolicyDefault {}
}
