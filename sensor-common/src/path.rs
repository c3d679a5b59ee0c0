//! Paths as the kernel programs write them.
//!
//! The kernel walks a `struct path` from the file up to the root of its mount namespace and
//! writes each component as it meets it: leaf first, every component followed by a NUL byte.
//! `/srv/share/a.txt` is sent as `a.txt\0share\0srv\0`. Writing forward keeps every buffer index
//! a masked offset the verifier can check; userspace reverses the components
//! (`sensor/src/event/path.rs`).

/// Longest path the kernel writes, in bytes; longer paths are cut and flagged
/// [`crate::event::FLAG_PATH_TRUNCATED`].
pub const PATH_MAX: usize = 4096;
/// Longest single component (`NAME_MAX` plus its NUL).
pub const NAME_MAX: usize = 256;
/// Most components the kernel walks before it gives up and flags the path truncated.
pub const PATH_DEPTH: u32 = 64;
/// Most ancestors the kernel inspects when it decides whether a file lies in a protected tree.
pub const PROTECT_DEPTH: u32 = 64;

/// Key of the protected-inode map: the identity of a protected file or directory.
///
/// `dev` is the kernel's internal `dev_t` (`major << 20 | minor`, as in `super_block.s_dev`),
/// not the userspace encoding that `stat(2)` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// Value of the protected-inode map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protected {
    /// Index of the protecting rule in userspace's table (for attribution).
    pub rule: u32,
    /// `PROTECT_*` bits.
    pub flags: u32,
}

/// The entry is a directory: everything below it is protected.
pub const PROTECT_TREE: u32 = 1;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain repr(C) data without padding holes that carry meaning.
    unsafe impl aya::Pod for super::InodeKey {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::Protected {}
}
