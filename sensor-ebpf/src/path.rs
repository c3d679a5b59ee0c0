//! In-kernel path resolution and protected-tree matching.
//!
//! Both walk a `struct path` upwards: from the dentry through `d_parent` to the root of its
//! mount, then from the mount's mountpoint in the parent mount, until the root of the mount
//! namespace (a mount that is its own parent). Userspace resolved the offsets of `struct
//! mount` (`container_of(vfsmount, struct mount, mnt)`) from BTF.
use aya_ebpf::{helpers::generated::bpf_probe_read_kernel_str, macros::map, maps::HashMap};
use sensor_common::{
    event::{FLAG_PATH_TRUNCATED, FLAG_READ_ERROR},
    path::{InodeKey, NAME_MAX, PATH_DEPTH, PATH_MAX, PROTECT_DEPTH, PROTECT_TREE, Protected},
};

use crate::kread::{dentry_ino_dev, off, ptr};

/// Protected files and directories by identity. Filled by userspace.
#[map]
pub static PROTECTED: HashMap<InodeKey, Protected> = HashMap::with_max_entries(4096, 0);

/// Devices (kernel encoding) that hold a protected file or directory, or a mount inside a
/// protected tree. An open on any other device is unrelated after one lookup, without the
/// ancestry walk.
#[map]
pub static PROTECTED_DEVS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// One step up from `(mount, dentry)`: `Some((mount, dentry))` of the parent, `None` at the
/// namespace root (or an unlinked, detached root).
#[inline(always)]
fn parent(mount: u64, dentry: u64) -> Result<Option<(u64, u64)>, i32> {
    let mut mount = mount;
    let mut dentry = dentry;
    // At most one mount crossing per step keeps the loop body bounded; a stack of mounts on
    // one mountpoint costs one extra step each.
    let root = ptr(mount + u64::from(off!(mount_mnt)), off!(vfsmount_mnt_root))?;
    if dentry == root {
        let up = ptr(mount, off!(mount_mnt_parent))?;
        if up == mount {
            return Ok(None);
        }
        dentry = ptr(mount, off!(mount_mnt_mountpoint))?;
        mount = up;
        return Ok(Some((mount, dentry)));
    }
    let up = ptr(dentry, off!(dentry_d_parent))?;
    if up == dentry {
        return Ok(None);
    }
    Ok(Some((mount, up)))
}

/// `struct mount *` of a `struct vfsmount *`.
#[inline(always)]
pub fn real_mount(vfsmount: u64) -> u64 {
    vfsmount - u64::from(off!(mount_mnt))
}

/// Whether the file at `(vfsmount, dentry)` lies in a protected tree: the matching entry's
/// key and value, if any. The file itself matches any entry; an ancestor only a
/// [`PROTECT_TREE`] entry.
#[inline(always)]
pub fn find_protected(vfsmount: u64, dentry: u64) -> Option<(InodeKey, Protected)> {
    let (_, dev) = dentry_ino_dev(dentry).ok()?;
    // SAFETY: presence check only.
    if unsafe { PROTECTED_DEVS.get(&dev) }.is_none() {
        return None;
    }
    let mut mount = real_mount(vfsmount);
    let mut dentry = dentry;
    let mut first = true;
    for _ in 0..PROTECT_DEPTH {
        if let Ok((ino, dev)) = dentry_ino_dev(dentry) {
            let key = InodeKey { ino, dev, _pad: 0 };
            // SAFETY: the value is copied out before the map can change.
            if let Some(p) = unsafe { PROTECTED.get(key) }
                && (first || p.flags & PROTECT_TREE != 0)
            {
                return Some((key, *p));
            }
        }
        first = false;
        match parent(mount, dentry) {
            Ok(Some((m, d))) => {
                mount = m;
                dentry = d;
            }
            _ => return None,
        }
    }
    None
}

/// Writes the path of `(vfsmount, dentry)` into `buf` as NUL-terminated components, leaf
/// first (see `sensor_common::path`), starting at `*cursor` and advancing it. Writes at most
/// [`PATH_MAX`] bytes. `MASK + 1 + NAME_MAX` must not exceed the buffer. Returns `FLAG_*` bits.
///
/// `cursor` must point into map memory: the verifier then treats the offset as an unknown
/// (masked) scalar, so the states of different iterations can be pruned; a register offset
/// would be tracked precisely and blow the 1M-instruction budget.
#[inline(always)]
pub fn write_path<const MASK: u32>(buf: *mut u8, cursor: *mut u32, vfsmount: u64, dentry: u64) -> u32 {
    // SAFETY (volatile accesses below): `cursor` is valid for the whole call.
    let limit = unsafe { core::ptr::read_volatile(cursor) } + (PATH_MAX - NAME_MAX) as u32;
    let mut mount = real_mount(vfsmount);
    let mut dentry = dentry;
    for _ in 0..PATH_DEPTH {
        let root = match ptr(mount + u64::from(off!(mount_mnt)), off!(vfsmount_mnt_root)) {
            Ok(r) => r,
            Err(_) => return FLAG_READ_ERROR,
        };
        // A mount root contributes no name of its own: its mountpoint does.
        if dentry != root {
            let at = unsafe { core::ptr::read_volatile(cursor) };
            if at > limit {
                return FLAG_PATH_TRUNCATED;
            }
            let name = match ptr(dentry, off!(dentry_d_name) + off!(qstr_name)) {
                Ok(n) => n,
                Err(_) => return FLAG_READ_ERROR,
            };
            // SAFETY: `(at & MASK) + NAME_MAX` stays inside `buf` (caller's contract).
            let n = unsafe {
                bpf_probe_read_kernel_str(
                    buf.add((at & MASK) as usize).cast(),
                    NAME_MAX as u32,
                    name as *const _,
                )
            };
            if n <= 0 {
                return FLAG_READ_ERROR;
            }
            unsafe { core::ptr::write_volatile(cursor, at + n as u32) };
        }
        match parent(mount, dentry) {
            Ok(Some((m, d))) => {
                mount = m;
                dentry = d;
            }
            Ok(None) => return 0,
            Err(_) => return FLAG_READ_ERROR,
        }
    }
    FLAG_PATH_TRUNCATED
}
