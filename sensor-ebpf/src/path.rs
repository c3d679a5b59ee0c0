//! In-kernel path resolution and protected-tree matching.
//!
//! Both walk a `struct path` upwards: from the dentry through `d_parent` to the root of its
//! mount, then from the mount's mountpoint in the parent mount, until the root of the mount
//! namespace (a mount that is its own parent). Userspace resolved the offsets of `struct
//! mount` (`container_of(vfsmount, struct mount, mnt)`) from BTF.
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use sensor_common::{
    event::{FLAG_PATH_TRUNCATED, FLAG_READ_ERROR},
    path::{InodeKey, NAME_MAX, PATH_DEPTH, PATH_MAX, PROTECT_DEPTH, PROTECT_TREE, Protected},
};

use crate::kread::{DentryId, dentry_id, dentry_ino, dentry_ino_dev, off, ptr};

/// Protected files and directories by identity. Filled by userspace.
#[map]
pub static PROTECTED: HashMap<InodeKey, Protected> = HashMap::with_max_entries(4096, 0);

/// Devices (kernel encoding) that hold a protected file or directory, or a mount inside a
/// protected tree. An open on any other device is unrelated after one lookup, without the
/// ancestry walk.
#[map]
pub static PROTECTED_DEVS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// A position in a walk up the tree: a mount, its `mnt_root` (read once per mount, not once
/// per step) and a dentry in it.
#[derive(Clone, Copy)]
struct Walk {
    mount: u64,
    root: u64,
    dentry: u64,
}

impl Walk {
    /// At `dentry` of `mount` (a `struct mount *`).
    #[inline(always)]
    fn at(mount: u64, dentry: u64) -> Result<Self, i32> {
        Ok(Self { mount, root: ptr(mount + u64::from(off!(mount_mnt)), off!(vfsmount_mnt_root))?, dentry })
    }

    /// One step up: `false` at the namespace root (or an unlinked, detached root). At most
    /// one mount crossing per step keeps the callers' loop bodies bounded; a stack of mounts
    /// on one mountpoint costs one extra step each.
    #[inline(always)]
    fn up(&mut self) -> Result<bool, i32> {
        if self.dentry == self.root {
            let up = ptr(self.mount, off!(mount_mnt_parent))?;
            if up == self.mount {
                return Ok(false);
            }
            *self = Self::at(up, ptr(self.mount, off!(mount_mnt_mountpoint))?)?;
            return Ok(true);
        }
        let up = ptr(self.dentry, off!(dentry_d_parent))?;
        if up == self.dentry {
            return Ok(false);
        }
        self.dentry = up;
        Ok(true)
    }
}

/// `struct mount *` of a `struct vfsmount *`.
#[inline(always)]
pub fn real_mount(vfsmount: u64) -> u64 {
    vfsmount - u64::from(off!(mount_mnt))
}

/// Directories `(mount, dentry, inode)` whose ancestry holds no protected tree, as of the
/// [`GENERATION`] stored with them. A busy server opens many files in few directories; with
/// this an unrelated open on a protected device costs a few lookups instead of a walk to the
/// root. Keyed by pointers plus the inode number: a dentry or mount freed and reused for
/// another directory differs in one of them unless a directory was removed or a mount
/// changed, which bumps the generation.
#[map]
static CLEAR_DIRS: LruHashMap<DirKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// Slot 0: bumped by every change that can move a directory under a protected tree or reuse
/// a directory's identity: directory renames (a file's rename does neither), directory
/// removals, mounts (`change.rs`). A [`CLEAR_DIRS`] or [`CLEAR_FILES`] entry from another
/// generation is stale. The tests read it (`tests/tests/dir_cache.rs`). Slot 1: bumped by
/// every rename that does not bump slot 0 (a file's), for the compact closes.
#[map]
static GENERATION: Array<u64> = Array::with_max_entries(2, 0);

/// Files `(mount, dentry, d_parent)` whose ancestry holds no protected tree, as of the
/// [`GENERATION`] stored with them: an unrelated open that hits costs one read and one lookup
/// after its own inode's, instead of a step up and the [`CLEAR_DIRS`] key. The parent pointer
/// in the key makes file renames and reuse safe without a generation bump: a file moved to
/// another directory has another key, and a dentry reused in the same directory has the
/// same ancestry (its own inode is looked up in [`PROTECTED`] before this cache). What
/// changes an ancestry (directory renames and removals, mounts) bumps the generation.
#[map]
static CLEAR_FILES: LruHashMap<FileKey, u64> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct FileKey {
    mount: u64,
    dentry: u64,
    parent: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DirKey {
    mount: u64,
    dentry: u64,
    ino: u64,
}

/// The sum of both [`GENERATION`] slots: it moves with every rename, of a file or a
/// directory, and every other change of an ancestry (compact closes compare it with the
/// open's: a file renamed while open is named again at its close).
#[inline(always)]
pub fn names_generation() -> u64 {
    let slot = |i| GENERATION.get(i).copied().unwrap_or(0);
    slot(0).wrapping_add(slot(1))
}

/// Invalidates every [`CLEAR_DIRS`] entry.
#[inline(always)]
pub fn bump_generation() {
    bump(0);
}

/// A file's rename: the caches stay, the compact closes of files open before it do not.
#[inline(always)]
pub fn bump_renames() {
    bump(1);
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(g) = GENERATION.get_ptr_mut(slot) {
        // SAFETY: map memory; a BPF atomic add, as several CPUs may bump at once.
        unsafe { core::arch::asm!("lock *(u64 *)({p} + 0) += {n}", p = in(reg) g, n = in(reg) 1u64) };
    }
}

/// Whether the file at `(vfsmount, dentry)` lies in a protected tree: the matching entry's
/// key and value, if any. The file itself matches any entry; an ancestor only a
/// [`PROTECT_TREE`] entry.
#[inline(always)]
pub fn find_protected(vfsmount: u64, dentry: u64) -> Option<(InodeKey, Protected)> {
    find_protected_of(vfsmount, dentry, &dentry_id(dentry).ok()?)
}

/// [`find_protected`] for a dentry whose [`DentryId`] the caller has read.
#[inline(always)]
pub fn find_protected_of(vfsmount: u64, dentry: u64, id: &DentryId) -> Option<(InodeKey, Protected)> {
    let (ino, dev) = (id.ino, id.dev);
    // SAFETY: presence check only.
    unsafe { PROTECTED_DEVS.get(dev) }?;
    let own = InodeKey { ino, dev, _pad: 0 };
    // SAFETY: the value is copied out before the map can change.
    if let Some(p) = unsafe { PROTECTED.get(own) } {
        return Some((own, *p));
    }
    // The generation is read before the walk: if the tree changes during it, the entries
    // written below are already stale.
    // SAFETY: plain read of map memory.
    let generation = GENERATION.get(0).copied().unwrap_or(0);
    let file =
        FileKey { mount: real_mount(vfsmount), dentry, parent: ptr(dentry, off!(dentry_d_parent)).ok()? };
    // SAFETY: the value is copied out.
    if unsafe { CLEAR_FILES.get(file) }.is_some_and(|g| *g == generation) {
        return None;
    }
    let mut walk = Walk::at(file.mount, dentry).ok()?;
    if !walk.up().ok()? {
        return None;
    }
    // The key needs only the inode number: two reads on the path every unrelated open takes.
    let dir = DirKey { mount: walk.mount, dentry: walk.dentry, ino: dentry_ino(walk.dentry).unwrap_or(0) };
    // SAFETY: the value is copied out.
    if unsafe { CLEAR_DIRS.get(dir) }.is_some_and(|g| *g == generation) {
        let _ = CLEAR_FILES.insert(file, generation, 0);
        return None;
    }
    for _ in 1..PROTECT_DEPTH {
        if let Ok((ino, dev)) = dentry_ino_dev(walk.dentry) {
            let key = InodeKey { ino, dev, _pad: 0 };
            // SAFETY: the value is copied out before the map can change.
            if let Some(p) = unsafe { PROTECTED.get(key) }
                && p.flags & PROTECT_TREE != 0
            {
                return Some((key, *p));
            }
        }
        match walk.up() {
            Ok(true) => {}
            // The root: nothing above this directory is protected.
            Ok(false) => {
                let _ = CLEAR_DIRS.insert(dir, generation, 0);
                let _ = CLEAR_FILES.insert(file, generation, 0);
                return None;
            }
            Err(_) => return None,
        }
    }
    None
}

/// The last lookup of the `security_file_open` fentry program on this CPU, for the
/// enforcement program of the same open (`lsm.rs`), so that an open is looked up once: a
/// trampoline runs its fentry programs before its `fmod_ret` programs, and
/// `security_file_open` calls the LSM hooks after both. A slot answers only for the same
/// thread, mount and dentry within [`LOOKUP_TTL_NS`]: one left behind by an open that never
/// reached the enforcement program (an earlier LSM refused it) cannot answer for another
/// file, nor after the protected set may have changed.
#[map]
static LAST_LOOKUP: PerCpuArray<LastLookup> = PerCpuArray::with_max_entries(1, 0);

/// A lookup is handed from the fentry program to the enforcement program of the same open
/// within microseconds; after this the enforcement program looks up again.
const LOOKUP_TTL_NS: u64 = 1_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct LastLookup {
    pid_tgid: u64,
    mount: u64,
    dentry: u64,
    time_ns: u64,
    /// 1 when `protected` holds the match.
    found: u32,
    protected: Protected,
}

/// Keeps the result of [`find_protected`] for `(vfsmount, dentry)` for [`recall_lookup`].
#[inline(always)]
pub fn remember_lookup(vfsmount: u64, dentry: u64, found: Option<Protected>) {
    let Some(slot) = LAST_LOOKUP.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU map memory; the programs of one CPU do not run at once.
    let slot = unsafe { &mut *slot };
    slot.pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    slot.mount = vfsmount;
    slot.dentry = dentry;
    slot.time_ns = crate::emit::now();
    slot.found = u32::from(found.is_some());
    slot.protected = found.unwrap_or(Protected { rule: 0, flags: 0 });
}

/// The result [`remember_lookup`] kept for `(vfsmount, dentry)` on this thread just before,
/// if any: `Some(None)` is "not protected".
#[inline(always)]
pub fn recall_lookup(vfsmount: u64, dentry: u64) -> Option<Option<Protected>> {
    // SAFETY: per-CPU map memory, copied out.
    let slot = unsafe { *LAST_LOOKUP.get_ptr(0)? };
    if slot.dentry != dentry
        || slot.mount != vfsmount
        || slot.pid_tgid != aya_ebpf::helpers::bpf_get_current_pid_tgid()
        || crate::emit::now().wrapping_sub(slot.time_ns) > LOOKUP_TTL_NS
    {
        return None;
    }
    Some((slot.found != 0).then_some(slot.protected))
}

/// The mask of a record's path area of [`PATH_MAX`] bytes (plus `NAME_MAX` slack).
pub const PATH_MASK: u32 = PATH_MAX as u32 - 1;

/// [`write_path`] into a record's path area from its start: returns the `FLAG_*` bits and the
/// length written (masked, so the verifier can bound the record's size with it).
#[inline(always)]
pub fn write_record_path(buf: *mut u8, cursor: *mut u32, vfsmount: u64, dentry: u64) -> (u32, u32) {
    // SAFETY: `cursor` points into map memory, valid for the whole call.
    unsafe { core::ptr::write_volatile(cursor, 0) };
    let flags = write_path::<PATH_MASK>(buf, cursor, vfsmount, dentry);
    // SAFETY: as above.
    (flags, unsafe { core::ptr::read_volatile(cursor) } & PATH_MASK)
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
    let Ok(mut walk) = Walk::at(real_mount(vfsmount), dentry) else { return FLAG_READ_ERROR };
    for _ in 0..PATH_DEPTH {
        // A mount root contributes no name of its own: its mountpoint does.
        if walk.dentry != walk.root {
            let at = unsafe { core::ptr::read_volatile(cursor) };
            if at > limit {
                return FLAG_PATH_TRUNCATED;
            }
            let name = match ptr(walk.dentry, off!(dentry_d_name) + off!(qstr_name)) {
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
        match walk.up() {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(_) => return FLAG_READ_ERROR,
        }
    }
    FLAG_PATH_TRUNCATED
}
